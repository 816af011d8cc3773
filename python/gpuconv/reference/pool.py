"""Pooling in float64 NumPy, forward and backward, with PyTorch's semantics (CPU and CUDA agree on them).

Max pooling: padding reads -inf; a window's result is its first maximum, or NaN if it holds a NaN (then
its index is the last NaN's, as PyTorch's `val > max || isnan(val)` scan gives). Indices are flat per
plane: ih·W + iw. Average pooling: PyTorch's divisor rules for ceil_mode, count_include_pad and
divisor_override.
"""

from __future__ import annotations

import numpy as np

from .._args import check_int, pool2d_geometry
from ._common import as_f64, pad2d, windows


def _window_extent(g, axis):
    """Rows (axis 0) or columns (axis 1) the padded input needs so every window fits, ceil_mode's too."""
    size, k, s, p, d = (g.H, g.kernel[0], g.stride[0], g.pad[0], g.dilation[0]) if axis == 0 else \
        (g.W, g.kernel[1], g.stride[1], g.pad[1], g.dilation[1])
    n_out = g.P if axis == 0 else g.Q
    needed = (n_out - 1) * s + d * (k - 1) + 1
    return p, max(needed - size - p, 0)


def _max_pool(x, g):
    """(values, flat per-plane indices) of every window."""
    t, b = _window_extent(g, 0)
    l, r = _window_extent(g, 1)
    xp = pad2d(x, (t, b, l, r), "zeros", fill=-np.inf)
    flat = np.arange(g.H * g.W).reshape(g.H, g.W)
    fp = pad2d(flat, (t, b, l, r), "zeros", fill=-1)
    win = windows(xp, g.kernel, g.stride, g.dilation, (g.P, g.Q)).reshape(g.N, g.C, g.P, g.Q, -1)
    iwin = windows(fp, g.kernel, g.stride, g.dilation, (g.P, g.Q)).reshape(g.P, g.Q, -1)
    valid = iwin >= 0
    isnan = np.isnan(win)
    anynan = isnan.any(axis=-1)
    m = np.where(valid, win, -np.inf).max(axis=-1)
    first_max = np.argmax(valid & (win == m[..., None]), axis=-1)
    kk = win.shape[-1]
    last_nan = kk - 1 - np.argmax(isnan[..., ::-1], axis=-1)
    pos = np.where(anynan, last_nan, first_max)
    idx = np.take_along_axis(np.broadcast_to(iwin, win.shape), pos[..., None], axis=-1)[..., 0]
    return np.where(anynan, np.nan, m), idx.astype(np.int64)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling of x (N, C, H, W) -> (N, C, P, Q) [and int64 flat per-plane indices], as F.max_pool2d."""
    x = as_f64(x, "x", 4)
    g = pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = _max_pool(x, g)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Gradient of max_pool2d w.r.t. x: each output's gradient added to the element its index names."""
    x = as_f64(x, "x", 4)
    g = pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    go = _grad_out(grad_out, g.out_shape)
    _, idx = _max_pool(x, g)
    return _scatter_indices(go, idx, x.shape)


def _scatter_indices(go, idx, x_shape):
    N, C, H, W = x_shape
    planes = np.arange(N * C).reshape(N, C, 1, 1) * (H * W)
    keep = idx >= 0
    flat = (planes + idx)[keep]
    return np.bincount(flat, weights=go[keep], minlength=N * C * H * W).reshape(x_shape)


def _grad_out(grad_out, shape):
    go = as_f64(grad_out, "grad_out", 4)
    if go.shape != tuple(shape):
        raise ValueError(f"grad_out must have the forward's output shape {tuple(shape)}, got {go.shape}")
    return go


def _avg_divisor(g, count_include_pad, divisor_override):
    if divisor_override is not None:
        d = check_int(divisor_override, "divisor_override")
        if d == 0:
            raise ValueError("divisor_override must not be zero")
        return np.full((g.P, g.Q), float(d))
    counts = []
    for size, k, s, p, n_out in ((g.H, g.kernel[0], g.stride[0], g.pad[0], g.P),
                                 (g.W, g.kernel[1], g.stride[1], g.pad[1], g.Q)):
        start = np.arange(n_out) * s - p
        end = np.minimum(start + k, size + p)  # windows stop at the padded edge
        if count_include_pad:
            counts.append(end - start)
        else:
            counts.append(np.minimum(end, size) - np.maximum(start, 0))
    return np.outer(counts[0], counts[1]).astype(np.float64)


def _avg_geometry(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    return pool2d_geometry(x_shape, kernel_size, stride, padding, 1, ceil_mode)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling of x (N, C, H, W) -> (N, C, P, Q), as F.avg_pool2d."""
    x = as_f64(x, "x", 4)
    g = _avg_geometry(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    div = _avg_divisor(g, count_include_pad, divisor_override)
    t, b = _window_extent(g, 0)
    l, r = _window_extent(g, 1)
    xp = pad2d(x, (t, b, l, r), "zeros")
    return windows(xp, g.kernel, g.stride, (1, 1), (g.P, g.Q)).sum(axis=(-2, -1)) / div


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of avg_pool2d w.r.t. x: each output's gradient / divisor spread over its window."""
    x = as_f64(x, "x", 4)
    g = _avg_geometry(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    go = _grad_out(grad_out, g.out_shape) / _avg_divisor(g, count_include_pad, divisor_override)
    t, b = _window_extent(g, 0)
    l, r = _window_extent(g, 1)
    gp = np.zeros((g.N, g.C, g.H + t + b, g.W + l + r))
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            gp[..., i:i + (g.P - 1) * g.stride[0] + 1:g.stride[0], j:j + (g.Q - 1) * g.stride[1] + 1:g.stride[1]] += go
    return gp[..., t:t + g.H, l:l + g.W]


def global_max_pool2d(x, return_indices=False):
    """Max over each plane -> (N, C, 1, 1), as F.adaptive_max_pool2d(x, 1) (NaN propagates)."""
    x = as_f64(x, "x", 4)
    return max_pool2d(x, x.shape[2:], return_indices=return_indices)


def global_avg_pool2d(x):
    """Mean over each plane -> (N, C, 1, 1), as F.adaptive_avg_pool2d(x, 1)."""
    x = as_f64(x, "x", 4)
    return x.mean(axis=(2, 3), keepdims=True)


def global_max_pool2d_backward(grad_out, x):
    """Gradient of global_max_pool2d: each plane's gradient goes to its first maximum (its index)."""
    x = as_f64(x, "x", 4)
    return max_pool2d_backward(grad_out, x, x.shape[2:])


def global_avg_pool2d_backward(grad_out, x):
    """Gradient of global_avg_pool2d: each plane's gradient (N, C, 1, 1) / (H·W) over the plane."""
    x = as_f64(x, "x", 4)
    go = _grad_out(grad_out, x.shape[:2] + (1, 1))
    return np.broadcast_to(go / (x.shape[2] * x.shape[3]), x.shape).copy()
