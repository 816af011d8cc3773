"""Independent, plain-loop formulations of the reference operations, for tiny shapes only.

Written from the definitions, sharing no code with gpuconv.reference, so that the two can disagree.
"""

import math

import numpy as np


def src_index(i, n, mode):
    """Where padded position i (may be < 0 or >= n) reads from, or None for zero padding."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if i < 0 else n - 1
    if mode == "circular":
        return i % n
    if mode == "reflect":
        return -i if i < 0 else 2 * (n - 1) - i
    raise ValueError(mode)


def conv2d(x, w, b, stride, pads, dilation, groups, mode):
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    t, bo, l, r = pads
    P = (H + t + bo - dilation[0] * (R - 1) - 1) // stride[0] + 1
    Q = (W + l + r - dilation[1] * (S - 1) - 1) // stride[1] + 1
    Kg = K // groups
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            g = k // Kg
            for p in range(P):
                for q in range(Q):
                    acc = 0.0 if b is None else float(b[k])
                    for c in range(Cg):
                        for i in range(R):
                            for j in range(S):
                                hi = src_index(p * stride[0] - t + i * dilation[0], H, mode)
                                wi = src_index(q * stride[1] - l + j * dilation[1], W, mode)
                                if hi is not None and wi is not None:
                                    acc += x[n, g * Cg + c, hi, wi] * w[k, c, i, j]
                    y[n, k, p, q] = acc
    return y


def conv_transpose2d(x, w, stride, pad, output_padding, groups, dilation):
    N, Cin, H, W = x.shape
    _, Cog, R, S = w.shape
    Ho = (H - 1) * stride[0] - 2 * pad[0] + dilation[0] * (R - 1) + output_padding[0] + 1
    Wo = (W - 1) * stride[1] - 2 * pad[1] + dilation[1] * (S - 1) + output_padding[1] + 1
    Cig = Cin // groups
    y = np.zeros((N, Cog * groups, Ho, Wo))
    for n in range(N):
        for c in range(Cin):
            g = c // Cig
            for h in range(H):
                for ww in range(W):
                    for o in range(Cog):
                        for i in range(R):
                            for j in range(S):
                                oh = h * stride[0] - pad[0] + i * dilation[0]
                                ow = ww * stride[1] - pad[1] + j * dilation[1]
                                if 0 <= oh < Ho and 0 <= ow < Wo:
                                    y[n, g * Cog + o, oh, ow] += x[n, c, h, ww] * w[c, o, i, j]
    return y


def max_pool2d(x, k, s, p, d, P, Q):
    """PyTorch's CPU loop: first max wins, a NaN wins and the last NaN's index is kept."""
    N, C, H, W = x.shape
    y = np.zeros((N, C, P, Q))
    idx = np.zeros((N, C, P, Q), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(P):
                for ow in range(Q):
                    best, bi = -math.inf, None
                    for i in range(k[0]):
                        for j in range(k[1]):
                            h = oh * s[0] - p[0] + i * d[0]
                            w_ = ow * s[1] - p[1] + j * d[1]
                            if 0 <= h < H and 0 <= w_ < W:
                                v = x[n, c, h, w_]
                                if bi is None:
                                    bi = h * W + w_
                                if v > best or math.isnan(v):
                                    best, bi = v, h * W + w_
                    y[n, c, oh, ow], idx[n, c, oh, ow] = best, bi
    return y, idx


def avg_pool2d(x, k, s, p, P, Q, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    y = np.zeros((N, C, P, Q))
    for oh in range(P):
        for ow in range(Q):
            h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
            pool = (h1 - h0) * (w1 - w0)
            h0c, w0c, h1c, w1c = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            div = divisor_override or (pool if count_include_pad else (h1c - h0c) * (w1c - w0c))
            y[:, :, oh, ow] = x[:, :, h0c:h1c, w0c:w1c].sum(axis=(2, 3)) / div
    return y


def im2col(x, k, d, p, s):
    N, C, H, W = x.shape
    Lh = (H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    Lw = (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    cols = np.zeros((N, C * k[0] * k[1], Lh * Lw))
    for c in range(C):
        for i in range(k[0]):
            for j in range(k[1]):
                row = (c * k[0] + i) * k[1] + j
                for a in range(Lh):
                    for b in range(Lw):
                        h, w_ = a * s[0] - p[0] + i * d[0], b * s[1] - p[1] + j * d[1]
                        if 0 <= h < H and 0 <= w_ < W:
                            cols[:, row, a * Lw + b] = x[:, c, h, w_]
    return cols
