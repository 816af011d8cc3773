"""Helpers of the float64 reference: input conversion, padding (and its adjoint), sliding windows."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._args import shape_of


def as_f64(a, name: str, ndim: int | None = None) -> np.ndarray:
    """A real numeric array-like -> float64 ndarray; bools, complex and objects are refused."""
    if a is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if ndim is not None:
        shape_of(arr, name, ndim)
    return arr.astype(np.float64, copy=False)


def pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index of each padded position along one axis (-1 where zero padding reads nothing)."""
    idx = np.arange(-lo, n + hi)
    if mode == "zeros":
        return np.where((idx >= 0) & (idx < n), idx, -1)
    if mode == "reflect":
        idx = np.abs(idx)
        return np.where(idx >= n, 2 * (n - 1) - idx, idx)
    if mode == "replicate":
        return np.clip(idx, 0, n - 1)
    if mode == "circular":
        return idx % n
    raise ValueError(f"unknown padding mode {mode!r}")


def pad2d(x: np.ndarray, pads, mode: str = "zeros", fill: float = 0.0) -> np.ndarray:
    """Pad the last two axes by (top, bottom, left, right) as torch.nn.functional.pad does for `mode`."""
    t, b, l, r = pads
    ih = pad_index(x.shape[-2], t, b, mode)
    iw = pad_index(x.shape[-1], l, r, mode)
    out = x[..., np.maximum(ih, 0)[:, None], np.maximum(iw, 0)[None, :]]
    if mode == "zeros":
        out = np.where((ih[:, None] >= 0) & (iw[None, :] >= 0), out, fill)
    return out


def unpad2d_adjoint(gp: np.ndarray, in_hw, pads, mode: str) -> np.ndarray:
    """The adjoint of pad2d: sums each padded position's gradient back into the element it copied."""
    H, W = in_hw
    t, b, l, r = pads
    ih = pad_index(H, t, b, mode)
    iw = pad_index(W, l, r, mode)
    mh = (ih[:, None] == np.arange(H)[None, :]).astype(np.float64)  # (Hp, H) one-hot, zero rows for pad
    mw = (iw[:, None] == np.arange(W)[None, :]).astype(np.float64)
    return mh.T @ gp @ mw


def windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """A read-only view (..., P, Q, R, S) of the R×S windows of xp's last two axes."""
    R, S = kernel
    P, Q = out_hw
    sh, sw = xp.strides[-2:]
    shape = xp.shape[:-2] + (P, Q, R, S)
    strides = xp.strides[:-2] + (sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return as_strided(xp, shape=shape, strides=strides, writeable=False)
