"""Direct convolution: a general kernel, a shared-memory tiled kernel, and a depthwise kernel.

All three compute y[n, k, p, q] = act(b[k] + Σ_{c,r,s} x[n, g·Cg + c, p·sh − pt + r·dh, q·sw − pl + s·dw]
· w[k, c, r, s]), with padding applied by `source_index` (zeros, reflect, replicate, circular) as the
input is read, so no padded copy of x is ever made. A zero-padded tap is a product 0 · w like any other
(as PyTorch's, so a non-finite weight gives NaN at the border in every kernel and algorithm). Arrays are indexed with 64-bit arithmetic, so
tensors past 2**31 elements are addressed correctly.

`g` below is any object with the fields of gpuconv's ConvGeometry (N, C, H, W, K, R, S, P, Q, stride,
dilation, pads, groups); a launcher returns a `launch(x, w, b, y, stream)` closure built once per
shape, so a call does no planning.
"""

import functools

import numpy as np
from numba import cuda, int64

from ._common import (MAX_GRID_YZ, epilogue, numba_type, source_index, stage_tile, striding_blocks, tile_origin,
                      unflatten_nchw)

# ----------------------------------------------------------------------------- tile constants

# Threads per block of the tiled and depthwise kernels: 16 × 8 = 128 threads, 4 warps. Each warp
# covers two output rows of 16 consecutive columns, so global stores of y coalesce.
BLOCK_X = 16
BLOCK_Y = 8
NTHREADS = BLOCK_X * BLOCK_Y
# Each thread computes PIX_X output columns (tx, tx + 16, ...) of one row: the block's tile of output
# pixels is TILE_P × TILE_Q = 8 × 32. Wider tiles waste work on 7×7 and 14×14 layers.
PIX_X = 2
TILE_P = BLOCK_Y
TILE_Q = BLOCK_X * PIX_X
# Output channels per block of the tiled kernel; every thread keeps PIX_X × TILE_K = 32 accumulators in
# registers (the register block). ptxas (sm_90) gives the kernel 128 registers in float32, 163 in
# float64, and no local memory: registers bound occupancy at 4 blocks (16 warps) per SM in float32.
TILE_K = 16
# Dynamic shared memory per block for a staged chunk of input tiles and weights. With 4 blocks per SM
# (above) 24 KiB each uses 96 KiB of an SM's 228 KiB (H100), leaving room for a larger TILE_K later.
SMEM_BUDGET_BYTES = 24 * 1024


def _tile_extent(g):
    """Rows and columns of input a TILE_P × TILE_Q output tile reads (its halo included)."""
    IH = (TILE_P - 1) * g.stride[0] + (g.R - 1) * g.dilation[0] + 1
    IW = (TILE_Q - 1) * g.stride[1] + (g.S - 1) * g.dilation[1] + 1
    return IH, IW


# ----------------------------------------------------------------------------- general kernel


@functools.cache
def conv2d_general_kernel(dtype):
    """One thread per output element, grid-stride over all of y; any option. Fills y."""
    ZERO = np.dtype(dtype).type(0)
    activate = epilogue(dtype)

    @cuda.jit
    def conv2d_general(x, w, b, y,                      # arrays: NCHW input, OIHW weight, bias, NKPQ output
                       sh, sw, dh, dw, pt, pl, groups,  # geometry
                       pad_mode, has_bias, act, alpha):  # options
        N, C, H, W = x.shape
        K, Cg, R, S = w.shape
        P = y.shape[2]
        Q = y.shape[3]
        Kg = K // groups
        total = int64(N) * K * P * Q
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        step = int64(cuda.gridDim.x) * cuda.blockDim.x
        for e in range(start, total, step):
            n, k, p, q = unflatten_nchw(e, K, P, Q)
            c0 = (k // Kg) * Cg
            acc = ZERO
            for c in range(Cg):
                for r in range(R):
                    ih = source_index(p * sh - pt + r * dh, H, pad_mode)
                    for s in range(S):
                        iw = source_index(q * sw - pl + s * dw, W, pad_mode)
                        xv = ZERO
                        if ih >= 0 and iw >= 0:
                            xv = x[n, c0 + c, ih, iw]
                        acc += xv * w[k, c, r, s]
            if has_bias:
                acc += b[k]
            y[n, k, p, q] = activate(acc, act, alpha)

    return conv2d_general


def launch_conv2d_general(g, dtype, pad_mode, has_bias, act, alpha):
    # Launch plan: 1-D grid of 256-thread blocks, one thread per output element (q fastest, so loads of
    # x and stores of y coalesce), capped at 65535·8 blocks and grid-striding past that.
    kernel = conv2d_general_kernel(dtype)
    total = g.N * g.K * g.P * g.Q
    threads = 256
    blocks = striding_blocks(total, threads)
    scalars = (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1], g.pads[0], g.pads[2], g.groups,
               pad_mode, has_bias, act, np.dtype(dtype).type(alpha))

    def launch(x, w, b, y, stream):
        kernel[blocks, threads, stream](x, w, b, y, *scalars)

    return launch


# ----------------------------------------------------------------------------- tiled kernel


@functools.cache
def conv2d_tiled_kernel(dtype):
    """Block = TILE_P × TILE_Q output pixels × TILE_K output channels of one image and one group.

    Input channels are taken `cc` at a time: the input tile with its halo (cc × IH × IW) and the weights
    (cc × R × S × TILE_K, k fastest so a warp reads one broadcast word) are staged in dynamic shared
    memory, then each thread accumulates its PIX_X pixels × TILE_K channels in registers; the epilogue
    (bias, activation) runs from the same shared buffer. Fills y.
    """
    NBT = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    activate = epilogue(dtype)
    stage = stage_tile(dtype)

    @cuda.jit
    def conv2d_tiled(x, w, b, y,                           # arrays
                     sh, sw, dh, dw, pt, pl, groups,       # geometry
                     pad_mode, has_bias, act, alpha,       # options
                     cc, k_tiles, q_tiles):                # plan: channels per stage, tiles per group / row
        K, Cg, R, S = w.shape
        P = y.shape[2]
        Q = y.shape[3]
        Kg = K // groups
        RS = R * S
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * BLOCK_X + tx
        p0, q0 = tile_origin(q_tiles, TILE_P, TILE_Q)
        grp = cuda.blockIdx.y // k_tiles
        k0 = grp * Kg + (cuda.blockIdx.y % k_tiles) * TILE_K
        k_end = grp * Kg + Kg
        n = cuda.blockIdx.z
        IH = (TILE_P - 1) * sh + (R - 1) * dh + 1
        IW = (TILE_Q - 1) * sw + (S - 1) * dw + 1
        in_size = cc * IH * IW
        h0 = p0 * sh - pt
        w0 = q0 * sw - pl
        sm = cuda.shared.array(0, dtype=NBT)
        acc = cuda.local.array((PIX_X, TILE_K), dtype=NBT)
        for j in range(PIX_X):
            for kl in range(TILE_K):
                acc[j, kl] = ZERO
        for c0 in range(0, Cg, cc):
            ncc = min(cc, Cg - c0)
            for cl in range(ncc):
                stage(sm, cl * IH * IW, x, n, grp * Cg + c0 + cl, h0, w0, IH, IW, pad_mode, tid, NTHREADS)
            for e in range(tid, TILE_K * ncc * RS, NTHREADS):
                kl = e // (ncc * RS)  # e runs along w's contiguous (c, r, s) for one k: coalesced reads
                rem = e % (ncc * RS)
                v = ZERO
                if k0 + kl < k_end:
                    v = w[k0 + kl, c0 + rem // RS, (rem % RS) // S, rem % S]
                sm[in_size + rem * TILE_K + kl] = v
            cuda.syncthreads()  # the input tile and weights of this chunk are staged before anyone reads
            for cl in range(ncc):
                for r in range(R):
                    row = cl * IH * IW + (ty * sh + r * dh) * IW
                    for s in range(S):
                        wb = in_size + ((cl * R + r) * S + s) * TILE_K
                        for j in range(PIX_X):
                            xv = sm[row + (tx + j * BLOCK_X) * sw + s * dw]
                            for kl in range(TILE_K):
                                acc[j, kl] += xv * sm[wb + kl]
            cuda.syncthreads()  # all reads of this chunk are done before the next chunk overwrites it
        # Epilogue through shared memory: the copy-out loop is simple enough for NVVM to unroll, which
        # keeps acc in registers (a bias/activation body in it would not unroll and would put acc in
        # local memory), and the cooperative store below writes 32 consecutive columns per row.
        for j in range(PIX_X):
            for kl in range(TILE_K):
                sm[(kl * TILE_P + ty) * TILE_Q + tx + j * BLOCK_X] = acc[j, kl]
        cuda.syncthreads()  # the block's output tile is in shared memory before anyone stores it
        for e in range(tid, TILE_K * TILE_P * TILE_Q, NTHREADS):
            k = k0 + e // (TILE_P * TILE_Q)
            p = p0 + (e // TILE_Q) % TILE_P
            q = q0 + e % TILE_Q
            if k < k_end and p < P and q < Q:
                v = sm[e]
                if has_bias:
                    v += b[k]
                y[n, k, p, q] = activate(v, act, alpha)

    return conv2d_tiled


def tiled_channels_per_stage(g, itemsize):
    """Input channels the tiled kernel stages at once under SMEM_BUDGET_BYTES (0: it does not fit)."""
    if g.N > MAX_GRID_YZ or g.groups * -(-(g.K // g.groups) // TILE_K) > MAX_GRID_YZ:
        return 0  # grid y and z are limited to 65535: the general kernel takes these
    IH, IW = _tile_extent(g)
    per_channel = (IH * IW + g.R * g.S * TILE_K) * itemsize
    return min(g.C // g.groups, SMEM_BUDGET_BYTES // per_channel)


def launch_conv2d_tiled(g, dtype, pad_mode, has_bias, act, alpha):
    # Launch plan: grid (P/8 · Q/32 tiles, groups · ceil(K/groups / 16) channel tiles, N images) of
    # 16 × 8 threads, each thread 2 pixels × 16 channels; cc channels' input tiles and weights in
    # dynamic shared memory (cc chosen so they fit SMEM_BUDGET_BYTES). No atomics: every output element
    # is owned by exactly one thread, which sums its whole reduction in a fixed order.
    kernel = conv2d_tiled_kernel(dtype)
    itemsize = np.dtype(dtype).itemsize
    cc = tiled_channels_per_stage(g, itemsize)
    if cc < 1:
        raise ValueError("the tiled kernel cannot run this shape (its tile does not fit the shared-memory budget, "
                         "or N or groups · ceil(K/groups / 16) is over the grid's 65535)")
    IH, IW = _tile_extent(g)
    # the same buffer holds the staged chunk, then the block's output tile for the epilogue
    shmem = max(cc * IH * IW + cc * g.R * g.S * TILE_K, TILE_K * TILE_P * TILE_Q) * itemsize
    q_tiles = -(-g.Q // TILE_Q)
    k_tiles = -(-(g.K // g.groups) // TILE_K)
    grid = (-(-g.P // TILE_P) * q_tiles, g.groups * k_tiles, g.N)
    scalars = (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1], g.pads[0], g.pads[2], g.groups,
               pad_mode, has_bias, act, np.dtype(dtype).type(alpha), cc, k_tiles, q_tiles)

    def launch(x, w, b, y, stream):
        kernel[grid, (BLOCK_X, BLOCK_Y), stream, shmem](x, w, b, y, *scalars)

    return launch


# ----------------------------------------------------------------------------- depthwise kernel


@functools.cache
def conv2d_depthwise_kernel(dtype):
    """groups == C (K = C·m): block = one TILE_P × TILE_Q tile of one output channel of one image.

    The input plane's tile with its halo and the channel's R × S weights are staged in shared memory;
    each thread computes PIX_X pixels. Fills y.
    """
    NBT = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    activate = epilogue(dtype)
    stage = stage_tile(dtype)

    @cuda.jit
    def conv2d_depthwise(x, w, b, y,                          # arrays
                         sh, sw, dh, dw, pt, pl, groups,      # geometry
                         pad_mode, has_bias, act, alpha,      # options
                         q_tiles):                            # plan
        K, _, R, S = w.shape
        P = y.shape[2]
        Q = y.shape[3]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * BLOCK_X + tx
        p0, q0 = tile_origin(q_tiles, TILE_P, TILE_Q)
        k = cuda.blockIdx.y
        n = cuda.blockIdx.z
        c = k // (K // groups)
        IH = (TILE_P - 1) * sh + (R - 1) * dh + 1
        IW = (TILE_Q - 1) * sw + (S - 1) * dw + 1
        sm = cuda.shared.array(0, dtype=NBT)
        stage(sm, 0, x, n, c, p0 * sh - pt, q0 * sw - pl, IH, IW, pad_mode, tid, NTHREADS)
        for e in range(tid, R * S, NTHREADS):
            sm[IH * IW + e] = w[k, 0, e // S, e % S]
        cuda.syncthreads()  # the plane's tile and the channel's weights are staged before anyone reads
        p = p0 + ty
        if p < P:
            for j in range(PIX_X):
                q = q0 + tx + j * BLOCK_X
                if q < Q:
                    acc = ZERO
                    for r in range(R):
                        row = (ty * sh + r * dh) * IW + (tx + j * BLOCK_X) * sw
                        for s in range(S):
                            acc += sm[row + s * dw] * sm[IH * IW + r * S + s]
                    if has_bias:
                        acc += b[k]
                    y[n, k, p, q] = activate(acc, act, alpha)

    return conv2d_depthwise


def depthwise_runs(g, itemsize):
    """Can the depthwise kernel run g: one input channel per group, a grid within y, z <= 65535 (K
    channels, N images), the tile in the 48 KiB of dynamic shared memory a block gets without opting in."""
    IH, IW = _tile_extent(g)
    return (g.groups == g.C and g.N <= MAX_GRID_YZ and g.K <= MAX_GRID_YZ
            and (IH * IW + g.R * g.S) * itemsize <= 48 * 1024)


def depthwise_fits(g, itemsize):
    """Does dispatch choose the depthwise kernel: it can run g, with a channel multiplier of at most 4
    (larger multipliers reuse each staged tile enough for the tiled kernel)."""
    return depthwise_runs(g, itemsize) and g.K // g.groups <= 4


def launch_conv2d_depthwise(g, dtype, pad_mode, has_bias, act, alpha):
    # Launch plan: grid (P/8 · Q/32 tiles, K channels, N images) of 16 × 8 threads, 2 pixels each; one
    # input tile with halo plus R·S weights in dynamic shared memory. Every input element of a tile is
    # read from global memory once per output channel that uses it (once, for multiplier 1).
    kernel = conv2d_depthwise_kernel(dtype)
    IH, IW = _tile_extent(g)
    shmem = (IH * IW + g.R * g.S) * np.dtype(dtype).itemsize
    q_tiles = -(-g.Q // TILE_Q)
    if not depthwise_runs(g, np.dtype(dtype).itemsize):
        raise ValueError("the depthwise kernel cannot run this shape (groups == C, N and K <= 65535, tile in 48 KiB)")
    grid = (-(-g.P // TILE_P) * q_tiles, g.K, g.N)
    scalars = (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1], g.pads[0], g.pads[2], g.groups,
               pad_mode, has_bias, act, np.dtype(dtype).type(alpha), q_tiles)

    def launch(x, w, b, y, stream):
        kernel[grid, (BLOCK_X, BLOCK_Y), stream, shmem](x, w, b, y, *scalars)

    return launch
