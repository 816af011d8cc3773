"""Direct convolution: a general kernel, a shared-memory tiled kernel, and a depthwise kernel.

All three compute y[n, k, p, q] = act(b[k] + Σ_{c,r,s} x[n, g·Cg + c, p·sh − pt + r·dh, q·sw − pl + s·dw]
· w[k, c, r, s]), with the padding mode applied as the input is read, so no padded copy of x is ever
made. A zero-padded tap is a product 0 · w like any other (as PyTorch's, so a non-finite weight gives NaN
at the border in every kernel and algorithm). The padding mode and the activation are compiled in (one
kernel per pair, built on first use). The depthwise kernel also has 16-bit builds (float16 / bfloat16
bits in and out, float32 inside; see conv2d_depthwise_kernel).

Index math: block and thread indices give a tile's coordinates (one magic-number division of
blockIdx.x per thread, no division in any loop); shared memory is indexed with unsigned integers (no
negative-index wraparound code) and the tiled kernel's weight rows are 16-byte aligned, so its inner
loop reads them with LDS.128. Global arrays are indexed with unsigned 64-bit indices: tensors past
2**31 elements are addressed correctly, in any layout.

`g` below is any object with the fields of gpuconv's ConvGeometry (N, C, H, W, K, R, S, P, Q, stride,
dilation, pads, groups); a launcher returns a `launch(x, w, b, y, stream)` closure built once per
shape, so a call does no planning.
"""

import functools

import numpy as np
from numba import cuda, int32, int64, uint32, uint64

from ._common import (MAX_GRID_YZ, PAD_ZEROS, activation_fn, c_contiguous, divmagic, fits_int32,
                      general_plane_launches, grid_chunks, magic_numbers, numba_type, pad_fold, stage_tile)
from ._flat import load, store
from ._half import codec, storage
from ._vector import SHARED_ALIGN

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
# registers (the register block).
TILE_K = 16
# Dynamic shared memory per block for a staged chunk of input tiles and weights: with 4 blocks per SM
# 24 KiB each uses 96 KiB of an SM's 228 KiB (H100), leaving room for a larger TILE_K later.
SMEM_BUDGET_BYTES = 24 * 1024
# The staged weights start on a 16-byte boundary (each (c, r, s) row of TILE_K weights then is one,
# two or four LDS.128): the input tiles are padded up to a multiple of ALIGN_BYTES.
ALIGN_BYTES = 16
# Output rows per depthwise thread (ty, ty + 8): a 16 × 32 tile, so each thread's share of the staging,
# the prologue and the epilogue serves 4 outputs.
DW_ROWS = 2
DW_TILE_P = BLOCK_Y * DW_ROWS
# Depthwise windows up to this on a side are compiled in, with their strides and dilations (the taps
# unroll and the staged tile's extent is a constant). It also keeps R·S <= NTHREADS (one weight each).
MAX_UNROLLED_WINDOW = 7


def _tile_extent(g, tile_p=TILE_P):
    """Rows and columns of input a tile_p × TILE_Q output tile reads (its halo included)."""
    IH = (tile_p - 1) * g.stride[0] + (g.R - 1) * g.dilation[0] + 1
    IW = (TILE_Q - 1) * g.stride[1] + (g.S - 1) * g.dilation[1] + 1
    return IH, IW


@cuda.jit(device=True, inline=True)
def tile_origin(q_tiles, mag, sft, tile_p):
    """(p0, q0) of this block's tile_p × TILE_Q tile: blockIdx.x walks the tiles row-major; one magic
    division (mag, sft: the magic numbers of q_tiles)."""
    b = int32(cuda.blockIdx.x)
    tp = divmagic(b, mag, sft)
    return int32(tp * tile_p), int32(int32(b - tp * int32(q_tiles)) * TILE_Q)


# ----------------------------------------------------------------------------- general kernel


@functools.cache
def conv2d_general_kernel(dtype, pad_mode, act):
    """One thread per output element (a plane grid over y: p from the grid, q from the thread); any
    shape and option. The fallback for what the tiled and depthwise kernels do not take: every tap is
    two global loads for one FMA, so its inner loop is load-bound by design. Fills y."""
    ZERO = np.dtype(dtype).type(0)
    activate = activation_fn(dtype, act)
    fold = pad_fold(pad_mode, int64)

    @cuda.jit
    def conv2d_general(x, w, b, y,                      # arrays: NCHW input, OIHW weight, bias, NKPQ output
                       sh, sw, dh, dw, pt, pl, groups,  # geometry
                       has_bias, alpha,                 # options
                       group_magic,                     # magic numbers of K / groups
                       mag, sft, qblocks, p0, k0, n0):  # grid: (rows × column blocks, channels, images)
        H = x.shape[2]
        W = x.shape[3]
        Cg = w.shape[1]
        R = w.shape[2]
        S = w.shape[3]
        Q = y.shape[3]
        bx = int32(cuda.blockIdx.x)
        pr = divmagic(bx, mag, sft)
        q = int64(bx - pr * qblocks) * cuda.blockDim.x + cuda.threadIdx.x
        p = int64(p0) + pr
        k = int64(k0) + cuda.blockIdx.y
        n = int64(n0) + cuda.blockIdx.z
        if q >= Q:
            return
        c0 = int64(divmagic(int32(k), group_magic[0], group_magic[1])) * Cg   # k's group's first channel
        un, uk = uint64(n), uint64(k)
        acc = ZERO
        for r in range(R):
            ih = fold(p * sh - pt + r * dh, H)
            for s in range(S):
                iw = fold(q * sw - pl + s * dw, W)
                inside = (ih >= 0) & (iw >= 0)
                for c in range(Cg):               # a zero-padded tap is still 0 · w (NaN for a non-finite w)
                    xv = ZERO
                    if inside:
                        xv = x[un, uint64(c0 + c), uint64(ih), uint64(iw)]
                    acc += xv * w[uk, uint64(c), uint64(r), uint64(s)]
        if has_bias:
            acc += b[uk]
        y[un, uk, uint64(p), uint64(q)] = activate(acc, alpha)

    return conv2d_general


def launch_conv2d_general(g, dtype, pad_mode, has_bias, act, alpha):
    # Launch plan: grid (P rows × ceil(Q / block) column blocks, K channels, N images), chunked past
    # CUDA's grid limits; one thread per output element, q fastest (loads of x and stores of y coalesce).
    kernel = conv2d_general_kernel(dtype, pad_mode, act)
    plan = general_plane_launches(g.N, g.K, g.P, g.Q, 256)
    scalars = (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1], g.pads[0], g.pads[2], g.groups,
               has_bias, np.dtype(dtype).type(alpha), magic_numbers(g.K // g.groups))

    def launch(x, w, b, y, stream):
        for grid, block, tail in plan:
            kernel[grid, block, stream](x, w, b, y, *scalars, *tail)

    return launch


# ----------------------------------------------------------------------------- tiled kernel


@functools.cache
def conv2d_tiled_kernel(dtype, pad_mode, act):
    """Block = TILE_P × TILE_Q output pixels × TILE_K output channels of one image and one group.

    Input channels are taken `cc` at a time: the input tile with its halo (cc × IH × IW, padded to a
    16-byte boundary) and the weights (cc × R × S × TILE_K, k fastest: a warp reads one broadcast row,
    16-byte aligned) are staged in dynamic shared memory, then each thread accumulates its PIX_X pixels
    × TILE_K channels in registers; the epilogue (bias, activation) runs from the same shared buffer.
    Fills y.
    """
    NBT = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    activate = activation_fn(dtype, act)
    stage = stage_tile(dtype, pad_mode)
    VEC = ALIGN_BYTES // np.dtype(dtype).itemsize     # elements per 16 bytes

    @cuda.jit
    def conv2d_tiled(x, w, b, y,                           # arrays
                     sh, sw, dh, dw, pt, pl, groups,       # geometry
                     has_bias, alpha,                      # options
                     cc, k_tiles, q_tiles, Kg,             # plan: channels per stage, tiles per group / row; K/groups
                     mags):                                # magic numbers of q_tiles, k_tiles, R·S and S
        _, Cg, R, S = w.shape
        P = y.shape[2]
        Q = y.shape[3]
        RS = int32(R * S)
        tx = int32(cuda.threadIdx.x)                      # int32: a uint64 would turn int arithmetic into float
        ty = int32(cuda.threadIdx.y)
        tid = int32(ty * BLOCK_X + tx)
        p0, q0 = tile_origin(q_tiles, mags[0], mags[1], TILE_P)
        by = int32(cuda.blockIdx.y)
        grp = divmagic(by, mags[2], mags[3])
        k0 = int64(grp) * Kg + (by - grp * k_tiles) * TILE_K
        k_end = int64(grp) * Kg + Kg
        n = cuda.blockIdx.z
        IH = int32((TILE_P - 1) * sh + (R - 1) * dh + 1)
        IW = int32((TILE_Q - 1) * sw + (S - 1) * dw + 1)
        in_size = (uint64(cc * IH * IW) + uint64(VEC - 1)) & ~uint64(VEC - 1)   # weights: 16-byte aligned
        h0 = p0 * sh - pt
        w0 = q0 * sw - pl
        sm = cuda.shared.array(0, dtype=NBT, alignment=SHARED_ALIGN)   # LDS.128 reads
        acc = cuda.local.array((PIX_X, TILE_K), dtype=NBT)
        for j in range(PIX_X):
            for kl in range(TILE_K):
                acc[j, kl] = ZERO
        xcol = uint64(ty * (sh * IW) + tx * sw)           # this thread's first input of a channel's tile
        xnext = uint64(BLOCK_X * sw)                      # ... and of its second pixel
        c0 = int64(0)
        while c0 < Cg:                                    # (a range with a run-time step divides)
            ncc = min(cc, Cg - c0)
            for cl in range(ncc):
                stage(sm, cl * IH * IW, x, n, grp * Cg + c0 + cl, h0, w0, IH, IW, ty, tx, BLOCK_Y, BLOCK_X)
            for kl in range(ty, TILE_K, BLOCK_Y):         # weights: rows k0 + kl, along w's (c, r, s)
                k = k0 + kl
                for e in range(tx, ncc * RS, BLOCK_X):
                    cl = divmagic(e, mags[4], mags[5])
                    rs = e - cl * RS
                    r = divmagic(rs, mags[6], mags[7])
                    v = ZERO
                    if k < k_end:
                        v = w[uint64(k), uint64(c0 + cl), uint64(r), uint64(rs - r * S)]
                    sm[in_size + uint64(e * TILE_K + kl)] = v
            cuda.syncthreads()  # the input tiles and weights of this chunk are staged before anyone reads
            for cl in range(ncc):
                for r in range(R):
                    xr = uint64(cl * IH * IW + r * dh * IW) + xcol
                    wr = in_size + uint64((cl * R + r) * S * TILE_K)
                    for s in range(S):
                        xa = sm[xr + uint64(s * dw)]
                        xb = sm[xr + uint64(s * dw) + xnext]
                        ws = wr + uint64(s * TILE_K)
                        for kl in range(TILE_K):
                            wv = sm[ws + uint64(kl)]
                            acc[0, kl] += xa * wv
                            acc[1, kl] += xb * wv
            cuda.syncthreads()  # all reads of this chunk are done before the next chunk overwrites it
            c0 += cc
        # Epilogue through shared memory: the copy-out loop is simple enough for NVVM to unroll, which
        # keeps acc in registers (a bias/activation body in it would not unroll and would put acc in
        # local memory), and the cooperative store below writes 32 consecutive columns per row.
        for j in range(PIX_X):
            for kl in range(TILE_K):
                sm[uint64((kl * TILE_P + ty) * TILE_Q + tx + j * BLOCK_X)] = acc[j, kl]
        cuda.syncthreads()  # the block's output tile is in shared memory before anyone stores it
        for e in range(tid, TILE_K * TILE_P * TILE_Q, NTHREADS):
            k = k0 + (e >> 8)                             # e = (kl · TILE_P + pl) · TILE_Q + ql
            p = p0 + ((e >> 5) & (TILE_P - 1))
            q = q0 + (e & (TILE_Q - 1))
            if k < k_end and p < P and q < Q:
                v = sm[uint64(e)]
                if has_bias:
                    v += b[uint64(k)]
                y[uint64(n), uint64(k), uint64(p), uint64(q)] = activate(v, alpha)

    return conv2d_tiled


def tiled_channels_per_stage(g, itemsize):
    """Input channels the tiled kernel stages at once under SMEM_BUDGET_BYTES (0: it does not fit)."""
    if g.N > MAX_GRID_YZ or g.groups * -(-(g.K // g.groups) // TILE_K) > MAX_GRID_YZ:
        return 0  # grid y and z are limited to 65535: the general kernel takes these
    IH, IW = _tile_extent(g)
    per_channel = (IH * IW + g.R * g.S * TILE_K) * itemsize
    return min(g.C // g.groups, (SMEM_BUDGET_BYTES - ALIGN_BYTES) // per_channel)


def launch_conv2d_tiled(g, dtype, pad_mode, has_bias, act, alpha):
    # Launch plan: grid (P/8 · Q/32 tiles, groups · ceil(K/groups / 16) channel tiles, N images) of
    # 16 × 8 threads, each thread 2 pixels × 16 channels; cc channels' input tiles and weights in
    # dynamic shared memory (cc chosen so they fit SMEM_BUDGET_BYTES). No atomics: every output element
    # is owned by exactly one thread, which sums its whole reduction in a fixed order.
    kernel = conv2d_tiled_kernel(dtype, pad_mode, act)
    itemsize = np.dtype(dtype).itemsize
    cc = tiled_channels_per_stage(g, itemsize)
    if cc < 1:
        raise ValueError("the tiled kernel cannot run this shape (its tile does not fit the shared-memory budget, "
                         "or N or groups · ceil(K/groups / 16) is over the grid's 65535)")
    IH, IW = _tile_extent(g)
    # the same buffer holds the staged chunk, then the block's output tile for the epilogue
    tile = -(-(cc * IH * IW * itemsize) // ALIGN_BYTES) * ALIGN_BYTES
    shmem = max(tile + cc * g.R * g.S * TILE_K * itemsize, TILE_K * TILE_P * TILE_Q * itemsize)
    q_tiles = -(-g.Q // TILE_Q)
    k_tiles = -(-(g.K // g.groups) // TILE_K)
    grid = (-(-g.P // TILE_P) * q_tiles, g.groups * k_tiles, g.N)
    mags = magic_numbers(q_tiles) + magic_numbers(k_tiles) + magic_numbers(g.R * g.S) + magic_numbers(g.S)
    scalars = (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1], g.pads[0], g.pads[2], g.groups,
               has_bias, np.dtype(dtype).type(alpha), cc, k_tiles, q_tiles, g.K // g.groups, mags)

    def launch(x, w, b, y, stream):
        kernel[grid, (BLOCK_X, BLOCK_Y), stream, shmem](x, w, b, y, *scalars)

    return launch


# ----------------------------------------------------------------------------- depthwise kernel


@functools.cache
def conv2d_depthwise_kernel(dtype, pad_mode, act, window=None, dense=True):
    """groups == C (K = C·m): block = one DW_TILE_P × TILE_Q tile of one output channel of one image.

    The input plane's tile with its halo and the channel's R × S weights are staged in shared memory;
    each thread computes DW_ROWS × PIX_X pixels. window: (R, S, sh, sw, dh, dw) compiled in (the tile's
    extent is then a constant: each thread stages a fixed few elements, and the taps unroll), or None.
    dense: C-contiguous x and y whose planes fit int32 offsets (through gpuconv.kernels._flat); else any
    strides. dtype may be a 16-bit kind ("f16", "bf16"; gpuconv.kernels._half): x, w, b and y are then
    uint16 bits, widened to float32 where they are loaded (the staged tile and weights are float32),
    accumulated and activated in float32, and each output rounded once. Fills y.
    """
    arith, kind = storage(dtype)
    widen, narrow = codec(kind)
    NBT = numba_type(arith)
    ZERO = arith.type(0)
    activate = activation_fn(arith, act)
    stage = stage_tile(dtype, pad_mode)
    fold = pad_fold(pad_mode, int32)
    ZEROS = pad_mode == PAD_ZEROS
    KR, KS, SH, SW, DH, DW = window or (0,) * 6
    if window:
        TIH = (DW_TILE_P - 1) * SH + (KR - 1) * DH + 1
        TIW = (TILE_Q - 1) * SW + (KS - 1) * DW + 1
    else:
        TIH = TIW = 0
    STAGED = -(-(TIH * TIW) // NTHREADS)                # tile elements per thread (compiled window)
    TMAG, TSFT = magic_numbers(max(TIW, 1))             # e // TIW and e // S as a multiply and a shift
    SMAG, SSFT = magic_numbers(max(KS, 1))
    I = int32 if dense else int64

    @cuda.jit
    def conv2d_depthwise(x, w, b, y,                          # arrays
                         sh, sw, dh, dw, pt, pl, groups,      # geometry
                         has_bias, alpha,                     # options
                         q_tiles, mags, k0):                  # plan: magic numbers of q_tiles and K/groups
        R = KR if KR else w.shape[2]
        S = KS if KS else w.shape[3]
        sh_, sw_, dh_, dw_ = (SH, SW, DH, DW) if KR else (sh, sw, dh, dw)
        P = I(y.shape[2])
        Q = I(y.shape[3])
        tx = int32(cuda.threadIdx.x)                      # int32: a uint64 would turn int arithmetic into float
        ty = int32(cuda.threadIdx.y)
        tid = int32(ty * BLOCK_X + tx)
        p0, q0 = tile_origin(q_tiles, mags[0], mags[1], DW_TILE_P)
        k = int32(int64(k0) + cuda.blockIdx.y)
        c = divmagic(k, mags[2], mags[3])                # k's input channel: k // (K / groups)
        n = cuda.blockIdx.z
        IH = int32((DW_TILE_P - 1) * sh_ + (R - 1) * dh_ + 1)
        IW = int32((TILE_Q - 1) * sw_ + (S - 1) * dw_ + 1)
        h0 = int32(p0 * sh_ - pt)
        w0 = int32(q0 * sw_ - pl)
        sm = cuda.shared.array(0, dtype=NBT)
        if KR:                                           # a constant extent: STAGED elements per thread
            H = int32(x.shape[2])
            W = int32(x.shape[3])
            xplane = (int64(n) * x.shape[1] + c) * (H * W)
            for j in range(STAGED):
                e = tid + j * NTHREADS
                ih = divmagic(e, TMAG, TSFT)
                hs = int32(h0 + ih)
                ws = int32(w0 + e - ih * TIW)
                if ZEROS:
                    inside = (uint32(hs) < uint32(H)) & (uint32(ws) < uint32(W))
                else:                                    # rows and columns no output uses: stay in bounds
                    hs = min(max(fold(hs, H), int32(0)), int32(H - 1))
                    ws = min(max(fold(ws, W), int32(0)), int32(W - 1))
                    inside = True
                v = ZERO
                if inside & (e < TIH * TIW):
                    if dense:
                        v = widen(load(x, xplane, int32(hs * W + ws)))
                    else:
                        v = widen(x[uint64(n), uint64(c), uint64(hs), uint64(ws)])
                if e < TIH * TIW:
                    sm[uint64(e)] = v
            if tid < KR * KS:
                r = divmagic(tid, SMAG, SSFT)
                sm[uint64(TIH * TIW + tid)] = widen(w[uint64(k), uint64(0), uint64(r), uint64(tid - r * KS)])
        else:
            stage(sm, 0, x, n, c, h0, w0, IH, IW, ty, tx, BLOCK_Y, BLOCK_X)
            for r in range(ty, R, BLOCK_Y):
                for s in range(tx, S, BLOCK_X):
                    sm[uint64(IH * IW + r * S + s)] = widen(w[uint64(k), uint64(0), uint64(r), uint64(s)])
        cuda.syncthreads()  # the plane's tile and the channel's weights are staged before anyone reads
        wbase = uint64(IH * IW)
        xrow = uint64(ty * (sh_ * IW) + tx * sw_)
        down = uint64(BLOCK_Y * sh_ * IW)                # the second row's inputs
        right = uint64(BLOCK_X * sw_)                    # the second column's
        acc = cuda.local.array((DW_ROWS, PIX_X), dtype=NBT)
        for i in range(DW_ROWS):
            for j in range(PIX_X):
                acc[i, j] = ZERO
        for r in range(R):
            xr = xrow + uint64(r * dh_ * IW)
            wr = wbase + uint64(r * S)
            for s in range(S):
                wv = sm[wr + uint64(s)]
                xs = xr + uint64(s * dw_)
                for i in range(DW_ROWS):
                    for j in range(PIX_X):                # (uint64 · uint64: an int64 factor would make it a float)
                        acc[i, j] += sm[xs + uint64(i) * down + uint64(j) * right] * wv
        bias = widen(b[uint64(k)]) if has_bias else ZERO
        q = I(q0 + tx)
        for i in range(DW_ROWS):
            p = I(p0 + ty + i * BLOCK_Y)
            if dense:
                yrow = (int64(n) * y.shape[1] + k) * I(P * Q) + I(p * Q + q)
            for j in range(PIX_X):
                if (p < P) & (q + j * BLOCK_X < Q):
                    v = narrow(activate(acc[i, j] + bias, alpha))
                    if dense:
                        store(y, yrow, j * BLOCK_X, v)
                    else:
                        y[uint64(n), uint64(k), uint64(p), uint64(q + j * BLOCK_X)] = v

    return conv2d_depthwise


def depthwise_runs(g, itemsize):
    """Can the depthwise kernel run g: one input channel per group, N <= 65535 (grid z; K channels are
    launched in chunks of 65535), the tile in the 48 KiB of dynamic shared memory a block gets without
    opting in."""
    IH, IW = _tile_extent(g, DW_TILE_P)
    return (g.groups == g.C and g.N <= MAX_GRID_YZ
            and (IH * IW + g.R * g.S) * itemsize <= 48 * 1024)


def depthwise_fits(g, itemsize):
    """Does dispatch choose the depthwise kernel: it can run g, with a channel multiplier of at most 4
    (larger multipliers reuse each staged tile enough for the tiled kernel)."""
    return depthwise_runs(g, itemsize) and g.K // g.groups <= 4


def launch_conv2d_depthwise(g, dtype, pad_mode, has_bias, act, alpha):
    # Launch plan: grid (P/16 · Q/32 tiles, K channels in chunks of 65535, N images) of 16 × 8 threads,
    # 2 rows × 2 columns each; one input tile with halo plus R·S weights in dynamic shared memory. Every
    # input element of a tile is read from global memory once per output channel that uses it (once, for
    # multiplier 1).
    window = (g.R, g.S) + tuple(g.stride) + tuple(g.dilation) if max(g.R, g.S) <= MAX_UNROLLED_WINDOW else None
    dense_ok = fits_int32(g.H * g.W, (g.P + DW_TILE_P) * g.Q + TILE_Q)
    dense = conv2d_depthwise_kernel(dtype, pad_mode, act, window, True) if dense_ok else None
    general = conv2d_depthwise_kernel(dtype, pad_mode, act, window, False)
    arith = storage(dtype)[0]                  # 16-bit kinds: staged and computed in float32
    IH, IW = _tile_extent(g, DW_TILE_P)
    shmem = (IH * IW + g.R * g.S) * arith.itemsize
    q_tiles = -(-g.Q // TILE_Q)
    if not depthwise_runs(g, arith.itemsize):
        raise ValueError("the depthwise kernel cannot run this shape (groups == C, N <= 65535, tile in 48 KiB)")
    tiles = -(-g.P // DW_TILE_P) * q_tiles
    mags = magic_numbers(q_tiles) + magic_numbers(g.K // g.groups)
    scalars = (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1], g.pads[0], g.pads[2], g.groups,
               has_bias, arith.type(alpha), q_tiles, mags)
    plan = [((tiles, kc, g.N), k0) for k0, kc in grid_chunks(g.K)]

    def launch(x, w, b, y, stream):
        kernel = dense if dense is not None and c_contiguous(x, y) else general
        for grid, k0 in plan:
            kernel[grid, (BLOCK_X, BLOCK_Y), stream, shmem](x, w, b, y, *scalars, k0)

    return launch

