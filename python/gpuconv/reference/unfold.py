"""im2col / col2im with the semantics of torch.nn.functional.unfold / fold, in float64."""

from __future__ import annotations

import numpy as np

from .._args import out_size, pair
from ._common import as_f64, pad2d, windows


def _geometry(hw, kernel_size, dilation, padding, stride):
    k, d = pair(kernel_size, "kernel_size"), pair(dilation, "dilation")
    p, s = pair(padding, "padding", minimum=0), pair(stride, "stride")
    L = (out_size(hw[0], p[0], p[0], k[0], s[0], d[0]), out_size(hw[1], p[1], p[1], k[1], s[1], d[1]))
    if L[0] < 1 or L[1] < 1:
        raise ValueError(f"kernel_size {k} with dilation {d} does not fit input {tuple(hw)} padded by {p}")
    return k, d, p, s, L


def im2col(x, kernel_size, dilation=1, padding=0, stride=1):
    """x (N, C, H, W) -> columns (N, C·kh·kw, L), rows ordered (c, i, j), as F.unfold."""
    x = as_f64(x, "x", 4)
    N, C, H, W = x.shape
    k, d, p, s, L = _geometry((H, W), kernel_size, dilation, padding, stride)
    xp = pad2d(x, (p[0], p[0], p[1], p[1]))
    win = windows(xp, k, s, d, L)  # N, C, Lh, Lw, kh, kw
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(N, C * k[0] * k[1], L[0] * L[1])


def col2im(cols, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """columns (N, C·kh·kw, L) -> (N, C, H, W), overlapping entries summed, as F.fold."""
    cols = as_f64(cols, "cols", 3)
    H, W = pair(output_size, "output_size")
    k, d, p, s, L = _geometry((H, W), kernel_size, dilation, padding, stride)
    N, CK, nL = cols.shape
    if CK % (k[0] * k[1]) or nL != L[0] * L[1]:
        raise ValueError(
            f"cols {cols.shape} must be (N, C·{k[0]}·{k[1]}, {L[0] * L[1]}) for output_size {(H, W)}, "
            f"kernel_size {k}, dilation {d}, padding {p}, stride {s}"
        )
    C = CK // (k[0] * k[1])
    c = cols.reshape(N, C, k[0], k[1], L[0], L[1])
    out = np.zeros((N, C, H + 2 * p[0], W + 2 * p[1]))
    for i in range(k[0]):
        for j in range(k[1]):
            r0, s0 = i * d[0], j * d[1]
            out[..., r0:r0 + (L[0] - 1) * s[0] + 1:s[0], s0:s0 + (L[1] - 1) * s[1] + 1:s[1]] += c[:, :, i, j]
    return out[..., p[0]:p[0] + H, p[1]:p[1] + W]


__all__ = ["im2col", "col2im"]
