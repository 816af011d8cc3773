"""Pooling kernels: max and average over windows, and global (whole-plane) max and average.

Semantics are PyTorch's (see gpuconv.reference.pool): max pooling takes the first maximum of a window,
and a NaN wins over any number (the last NaN's index is kept, as PyTorch's `v > m || isnan(v)` scan
gives); indices are flat per plane (ih·W + iw). Windows are clipped to the input, so padding never
reads memory. Indexing is 64-bit throughout.
"""

import functools
import math

import numpy as np
from numba import cuda, int64

from ._common import numba_type, striding_blocks, unflatten_nchw

# Threads per block of the windowed kernels: one thread per output element, q fastest, so a warp's
# window reads overlap in L1 and each input byte comes from DRAM about once; 256 keeps 8 warps/block.
POOL_THREADS = 256
# Threads per block of the global reductions; a plane gets WARPS_PER_PLANE warps (1..8, chosen by its
# size on the host), so small planes pack several to a block and large ones get all 8 warps.
GLOBAL_THREADS = 256


# ----------------------------------------------------------------------------- windowed max / avg


@functools.cache
def max_pool2d_kernel(dtype):
    """y[n, c, p, q] = max of the window (first max; NaN wins, last NaN's index); idx likewise. Fills
    y, and idx when with_idx."""
    NEG_INF = np.dtype(dtype).type(-np.inf)

    @cuda.jit
    def max_pool2d(x, y, idx,                           # arrays: input, output, int64 indices
                   kh, kw, sh, sw, ph, pw, dh, dw,      # window geometry
                   with_idx):
        N, C, H, W = x.shape
        P = y.shape[2]
        Q = y.shape[3]
        total = int64(N) * C * P * Q
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, p, q = unflatten_nchw(e, C, P, Q)
            h0 = p * sh - ph
            w0 = q * sw - pw
            best = NEG_INF
            best_i = int64(-1)
            for i in range(kh):
                h = h0 + i * dh
                if h >= 0 and h < H:
                    for j in range(kw):
                        ww = w0 + j * dw
                        if ww >= 0 and ww < W:
                            v = x[n, c, h, ww]
                            if best_i < 0 or v > best or math.isnan(v):
                                best = v
                                best_i = h * W + ww
            y[n, c, p, q] = best
            if with_idx:
                idx[n, c, p, q] = best_i

    return max_pool2d


def launch_max_pool2d(g, dtype):
    # Launch plan: 1-D grid of 256-thread blocks, one thread per output element (q fastest),
    # grid-striding past 65535·8 blocks.
    kernel = max_pool2d_kernel(dtype)
    blocks = striding_blocks(g.N * g.C * g.P * g.Q, POOL_THREADS)
    scalars = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], g.dilation[0], g.dilation[1])

    def launch(x, y, idx, with_idx, stream):
        kernel[blocks, POOL_THREADS, stream](x, y, idx, *scalars, with_idx)

    return launch


@cuda.jit(device=True, inline=True)
def _avg_window(p, q, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, divisor):
    """(h0, h1, w0, w1, d): output (p, q)'s window clipped to the input, and its divisor by PyTorch's
    rules (windows stop at the padded edge, so ceil_mode's last window counts only up to it)."""
    h0 = p * sh - ph
    w0 = q * sw - pw
    h1 = min(h0 + kh, H + ph)
    w1 = min(w0 + kw, W + pw)
    pool = (h1 - h0) * (w1 - w0)
    h0 = max(h0, 0)
    w0 = max(w0, 0)
    h1 = min(h1, H)
    w1 = min(w1, W)
    if divisor != 0:
        d = divisor
    elif count_include_pad:
        d = pool
    else:
        d = (h1 - h0) * (w1 - w0)
    return h0, h1, w0, w1, d


@functools.cache
def avg_pool2d_kernel(dtype):
    """y[n, c, p, q] = window sum / divisor, with PyTorch's divisor rules. Fills y."""
    ZERO = np.dtype(dtype).type(0)
    T = numba_type(dtype)

    @cuda.jit
    def avg_pool2d(x, y,                                  # arrays
                   kh, kw, sh, sw, ph, pw,                # window geometry
                   count_include_pad, divisor):           # divisor rule; divisor != 0 overrides
        N, C, H, W = x.shape
        P = y.shape[2]
        Q = y.shape[3]
        total = int64(N) * C * P * Q
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, p, q = unflatten_nchw(e, C, P, Q)
            h0, h1, w0, w1, d = _avg_window(p, q, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)
            acc = ZERO
            for h in range(h0, h1):
                for ww in range(w0, w1):
                    acc += x[n, c, h, ww]
            y[n, c, p, q] = acc / T(d)

    return avg_pool2d


def launch_avg_pool2d(g, dtype, count_include_pad, divisor):
    # Launch plan: as max pooling, one thread per output element, q fastest.
    kernel = avg_pool2d_kernel(dtype)
    blocks = striding_blocks(g.N * g.C * g.P * g.Q, POOL_THREADS)
    scalars = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], count_include_pad, divisor)

    def launch(x, y, stream):
        kernel[blocks, POOL_THREADS, stream](x, y, *scalars)

    return launch


# ----------------------------------------------------------------------------- global reductions


@functools.cache
def global_pool2d_kernel(dtype):
    """One plane per `wpp` warps: each thread reduces a strided slice, then a tree in shared memory
    combines the plane's threads in a fixed order (deterministic). Max keeps (value, index) with
    PyTorch's rule, made order-free: NaN beats numbers (larger index among NaNs), larger value beats
    smaller, equal values keep the smaller index. Fills y (and idx for max with with_idx)."""
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    NEG_INF = np.dtype(dtype).type(-np.inf)

    @cuda.jit(device=True, inline=True)
    def better(v, i, bv, bi):
        """Does (v, i) beat (bv, bi) under PyTorch's first-max / last-NaN rule?"""
        if bi < 0:
            return i >= 0
        if i < 0:
            return False
        if math.isnan(v):
            return (not math.isnan(bv)) or i > bi
        if math.isnan(bv):
            return False
        return v > bv or (v == bv and i < bi)

    @cuda.jit
    def global_pool2d(x, y, idx,          # arrays: input (N, C, H, W), output (N, C, 1, 1), indices
                      is_max, with_idx, wpp):
        N, C, H, W = x.shape
        HW = int64(H) * W
        planes = int64(N) * C
        per_block = GLOBAL_THREADS // 32 // wpp
        sv = cuda.shared.array(GLOBAL_THREADS, dtype=T)
        si = cuda.shared.array(GLOBAL_THREADS, dtype=int64)
        t = cuda.threadIdx.x
        local = t % (wpp * 32)                        # rank within the plane's segment of the block
        # grid-striding over groups of planes: every thread of a block makes the same number of passes
        for group in range(int64(cuda.blockIdx.x), (planes + per_block - 1) // per_block, cuda.gridDim.x):
            plane = group * per_block + t // (wpp * 32)
            acc = NEG_INF if is_max else ZERO
            acc_i = int64(-1)
            if plane < planes:
                n = plane // C
                c = plane % C
                for e in range(int64(local), HW, wpp * 32):
                    v = x[n, c, e // W, e % W]
                    if is_max:
                        if better(v, e, acc, acc_i):
                            acc = v
                            acc_i = e
                    else:
                        acc += v
            cuda.syncthreads()  # the previous pass's tree has read its partials before they are overwritten
            sv[t] = acc
            si[t] = acc_i
            off = wpp * 16
            while off > 0:  # tree over the plane's segment: a fixed order, so the same bits every run
                cuda.syncthreads()  # the previous level's partials are written before this level reads them
                if local < off:
                    ov = sv[t + off]
                    oi = si[t + off]
                    if is_max:
                        if better(ov, oi, sv[t], si[t]):
                            sv[t] = ov
                            si[t] = oi
                    else:
                        sv[t] += ov
                off //= 2
            if local == 0 and plane < planes:
                n = plane // C
                c = plane % C
                y[n, c, 0, 0] = sv[t] if is_max else sv[t] / T(HW)
                if with_idx:
                    idx[n, c, 0, 0] = si[t]

    return global_pool2d


def launch_global_pool2d(N, C, H, W, dtype, is_max):
    # Launch plan: warps per plane wpp = min(8, ceil(H·W / 256)) rounded to a power of two, so a plane
    # of ≥ 2048 elements gets a whole 256-thread block and small planes share one (8 / wpp per block).
    # Grid: ceil(N·C / planes per block) blocks, capped at 65535·8 and grid-striding past that. No
    # atomics: one thread writes each plane's result.
    kernel = global_pool2d_kernel(dtype)
    need = -(-(H * W) // 256)
    wpp = 1
    while wpp < min(8, need):
        wpp *= 2
    per_block = GLOBAL_THREADS // 32 // wpp
    blocks = striding_blocks(-(-(N * C) // per_block), 1)

    def launch(x, y, idx, with_idx, stream):
        kernel[blocks, GLOBAL_THREADS, stream](x, y, idx, is_max, with_idx, wpp)

    return launch


# ----------------------------------------------------------------------------- backward (gather)
#
# Both backward kernels gather: one thread per input element sums, in a fixed (p, q) order, the
# gradients of the outputs whose windows hold it. No atomics, so the result is the same bits every run,
# and each gradient element is written exactly once (no zero-fill pass). Window p holds row h when
# h = p·sh − ph + i·dh for some 0 <= i < kh, so p runs over [ceil((h + ph − (kh−1)·dh) / sh),
# floor((h + ph) / sh)] ∩ [0, P), about (kh−1)·dh / sh + 1 candidates.


@cuda.jit(device=True, inline=True)
def _window_range(h, pad, k, s, d, n_out):
    """[lo, hi) of the outputs along one axis whose window may hold input coordinate h."""
    top = h + pad
    low = top - (k - 1) * d
    lo = 0 if low <= 0 else (low + s - 1) // s
    hi = min(top // s + 1, n_out)
    return lo, hi


@functools.cache
def max_pool2d_backward_kernel(dtype):
    """gx[n, c, h, w] = sum of go[n, c, p, q] over the outputs whose index names (h, w). Fills gx."""
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit
    def max_pool2d_backward(go, idx, gx,                       # arrays: grad of y, indices, grad of x
                            kh, kw, sh, sw, ph, pw, dh, dw):   # window geometry of the forward
        N, C, H, W = gx.shape
        P = go.shape[2]
        Q = go.shape[3]
        total = int64(N) * C * H * W
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, h, w = unflatten_nchw(e, C, H, W)
            me = h * W + w
            p0, p1 = _window_range(h, ph, kh, sh, dh, P)
            q0, q1 = _window_range(w, pw, kw, sw, dw, Q)
            acc = ZERO
            for p in range(p0, p1):
                if (h + ph - p * sh) % dh == 0:  # on the dilated grid (skips loads; the index test decides)
                    for q in range(q0, q1):
                        if (w + pw - q * sw) % dw == 0 and idx[n, c, p, q] == me:
                            acc += go[n, c, p, q]
            gx[n, c, h, w] = acc

    return max_pool2d_backward


def launch_max_pool2d_backward(g, dtype):
    # Launch plan: 1-D grid of 256-thread blocks, one thread per input element (w fastest, so a warp's
    # gradient stores coalesce), grid-striding past 65535·8 blocks.
    kernel = max_pool2d_backward_kernel(dtype)
    blocks = striding_blocks(g.N * g.C * g.H * g.W, POOL_THREADS)
    scalars = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], g.dilation[0], g.dilation[1])

    def launch(go, idx, gx, stream):
        kernel[blocks, POOL_THREADS, stream](go, idx, gx, *scalars)

    return launch


@functools.cache
def avg_pool2d_backward_kernel(dtype):
    """gx[n, c, h, w] = sum of go[n, c, p, q] / divisor(p, q) over the windows holding (h, w), with the
    forward's divisor rules. Fills gx."""
    ZERO = np.dtype(dtype).type(0)
    T = numba_type(dtype)

    @cuda.jit
    def avg_pool2d_backward(go, gx,                                # arrays: grad of y, grad of x
                            kh, kw, sh, sw, ph, pw,                # window geometry of the forward
                            count_include_pad, divisor):           # divisor rule; divisor != 0 overrides
        N, C, H, W = gx.shape
        P = go.shape[2]
        Q = go.shape[3]
        total = int64(N) * C * H * W
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, h, w = unflatten_nchw(e, C, H, W)
            p0, p1 = _window_range(h, ph, kh, sh, 1, P)
            q0, q1 = _window_range(w, pw, kw, sw, 1, Q)
            acc = ZERO
            for p in range(p0, p1):
                for q in range(q0, q1):
                    d = _avg_window(p, q, H, W, kh, kw, sh, sw, ph, pw, count_include_pad, divisor)[4]
                    acc += go[n, c, p, q] / T(d)
            gx[n, c, h, w] = acc

    return avg_pool2d_backward


def launch_avg_pool2d_backward(g, dtype, count_include_pad, divisor):
    # Launch plan: as max pooling's backward, one thread per input element, w fastest.
    kernel = avg_pool2d_backward_kernel(dtype)
    blocks = striding_blocks(g.N * g.C * g.H * g.W, POOL_THREADS)
    scalars = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], count_include_pad, divisor)

    def launch(go, gx, stream):
        kernel[blocks, POOL_THREADS, stream](go, gx, *scalars)

    return launch
