"""Convolution backward kernels: the data gradient (also the transposed convolution) and the bias gradient.

The weight gradient is a GEMM over im2col columns (gpuconv.kernels.gemm with accumulate, images added
in a fixed order); it has no kernel of its own.

Everything here gathers: each output element is computed by one thread (or one block) summing in a
fixed order, so results are the same bits on every run, with no atomics and no zero-fill pass.
"""

import functools

import numpy as np
from numba import cuda, int32, int64, uint64

from ._common import (INT32_MAX, c_contiguous, divmagic, general_coords, general_plane_launches,
                      magic_numbers, numba_type)
from ._flat import load
from ._half import element, storage
from ._vector import SHARED_ALIGN

THREADS = 256           # data gradient: up to 256 columns of one row per block, the fastest axis along threads
BIAS_THREADS = 256      # bias gradient: one block per channel, a fixed-shape tree over its threads


# Input channels per data-gradient thread: each output gradient it loads serves CB of them, with their
# CB weights one 16-byte shared-memory read (LDS.128 in float32), so the tap loop is mostly FMAs.
CB = 4
# Dynamic shared memory per data-gradient block for a chunk of weights: (taps, output channels, CB).
WEIGHT_BUDGET_BYTES = 16 * 1024


def data_grad_chunk(R, S, Kg, itemsize):
    """(KC, TC): output channels of a group, and taps, whose weights (CB channels each) a block stages at
    once: every tap of as many channels as fit WEIGHT_BUDGET_BYTES, or for a huge window one channel
    and as many taps as fit."""
    KC = max(1, min(Kg, WEIGHT_BUDGET_BYTES // (R * S * CB * itemsize)))
    return KC, max(1, min(R * S, WEIGHT_BUDGET_BYTES // (KC * CB * itemsize)))


@functools.cache
def data_grad_kernel(dtype):
    """dst[n, c, i, j] = Σ_{k, r, s} go[n, k, p, q] · w[k, c mod Cg, r, s] over the taps (r, s) and output
    pixels (p, q) that read input position (i + origin_h, j + origin_w), k over c's group (+ bias[c]).

    That is the input gradient of conv2d (the correlation with the kernel rotated 180°, strides taken
    by skipping the taps that land between output pixels, so no zero-stuffed tensor is made) and the
    transposed convolution. origin is (0, 0) when dst is the input itself, (−pt, −pl) when it is the
    padded grid (for padding modes other than zeros, folded afterwards).

    A thread takes CB channels of one group at one position: grid x walks (row, column block) pairs of
    dst, y blocks of CB channels, z images. The block stages the weights of KC output channels and TC
    taps at a time in shared memory as (tap, channel, CB), then each thread runs its taps: which land
    on an output pixel is decided with magic-number divisions (none in the channel loop), and go is
    read at a flat offset stepped by its channel stride (in elements)."""
    ZERO = np.dtype(dtype).type(0)
    T = numba_type(dtype)
    SIZE = np.dtype(dtype).itemsize

    @cuda.jit
    def data_grad(go, w, bias, dst,                    # go (N, K, P, Q), w (K, Cg, R, S), bias (C,), dst (N, C, Hd, Wd)
                  sh, sw, pt, pl, dh, dw,              # the convolution's stride, padding (top, left), dilation
                  origin_h, origin_w, Kg, has_bias,    # ...; output channels per group
                  KC, TC, mags,                        # weight chunk: channels, taps; magic numbers of sh, sw,
                                                       # channel blocks per group, S and KC
                  mag, sft, qblocks, o0, o1, o2):      # grid: (rows × column blocks, channel blocks, images)
        Hd = dst.shape[2]
        Wd = dst.shape[3]
        Cg = w.shape[1]
        R = w.shape[2]
        S = w.shape[3]
        RS = int32(R * S)
        P = go.shape[2]
        Q = go.shape[3]
        n, cb, i, j = general_coords(mag, sft, qblocks, o0, o1, o2)
        valid = (i < Hd) & (j < Wd)                    # no early exit: the block stages weights together
        cpg = (Cg + CB - 1) // CB                      # channel blocks per group
        g = divmagic(int32(cb), mags[4], mags[5])
        cg0 = (cb - g * cpg) * CB
        sm = cuda.shared.array(0, dtype=T, alignment=SHARED_ALIGN)   # LDS.128 reads
        tid = int32(cuda.threadIdx.x)
        nthreads = int32(cuda.blockDim.x)
        gs = go.strides                                # element strides (the launcher checks they divide)
        gsk = gs[1] // SIZE
        h = i + origin_h + pt                          # row in the padded input's own frame
        x = j + origin_w + pl
        acc = cuda.local.array(CB, T)
        for t in range(CB):
            acc[t] = ZERO
        k0 = int64(0)
        while k0 < Kg:                                 # chunks of KC output channels ...
            kcn = min(KC, Kg - k0)
            t0 = int32(0)
            while t0 < RS:                             # ... and of TC taps, so that any window fits
                tcn = min(TC, RS - t0)
                e = tid
                while e < TC * KC * CB:                # sm[(tl · KC + kk) · CB + t] for tap t0 + tl
                    rest = e >> 2
                    tl = divmagic(rest, mags[8], mags[9])
                    kk = rest - tl * KC
                    rs = t0 + tl
                    r = divmagic(rs, mags[6], mags[7])
                    t = e & (CB - 1)
                    v = ZERO
                    if (kk < kcn) & (tl < tcn) & (cg0 + t < Cg):
                        v = w[uint64(g * Kg + k0 + kk), uint64(cg0 + t), uint64(r), uint64(rs - r * S)]
                    sm[uint64(e)] = v
                    e += nthreads
                cuda.syncthreads()  # this chunk's weights are staged before anyone reads them
                if valid:
                    gbase = n * (gs[0] // SIZE) + (g * Kg + k0) * gsk
                    for tl in range(tcn):
                        rs = t0 + tl
                        r = divmagic(rs, mags[6], mags[7])
                        u = h - r * dh
                        v = x - (rs - r * S) * dw
                        p = int64(divmagic(int32(max(u, 0)), mags[0], mags[1]))
                        q = int64(divmagic(int32(max(v, 0)), mags[2], mags[3]))
                        if (u >= 0) & (p * sh == u) & (p < P) & (v >= 0) & (q * sw == v) & (q < Q):
                            go_off = gbase + p * (gs[2] // SIZE) + q * (gs[3] // SIZE)
                            wk = uint64(tl * KC * CB)
                            wend = wk + uint64(kcn * CB)
                            while wk < wend:           # counters only: an offset each, no multiply
                                gv = load(go, go_off, 0)
                                for t in range(CB):
                                    acc[t] += gv * sm[wk + uint64(t)]
                                go_off += gsk
                                wk += uint64(CB)
                cuda.syncthreads()  # every thread is done with this chunk before the next overwrites it
                t0 += TC
            k0 += KC
        if valid:
            for t in range(CB):
                if cg0 + t < Cg:
                    c = g * Cg + cg0 + t
                    v = acc[t]
                    if has_bias:
                        v += bias[uint64(c)]
                    dst[uint64(n), uint64(c), uint64(i), uint64(j)] = v

    return data_grad


def launch_data_grad(dtype, stride, pads_tl, dilation, groups, origin, has_bias):
    """launch(go, w, bias, dst, stream) over every element of dst (any strides that are whole elements)."""
    # Launch plan: grid (Hd rows × column blocks of up to 256, groups × ceil(Cg / 4) channel blocks, N
    # images), chunked past CUDA's grid limits; one thread per (position, 4 channels), column fastest
    # (coalesced stores, and neighbouring threads read neighbouring output pixels); KC output channels'
    # weights per block in dynamic shared memory.
    kernel = data_grad_kernel(dtype)
    itemsize = np.dtype(dtype).itemsize
    scalars = (stride[0], stride[1], pads_tl[0], pads_tl[1], dilation[0], dilation[1], origin[0], origin[1])

    @functools.lru_cache(maxsize=64)
    def plan(dst_shape, w_shape):
        N, _, Hd, Wd = dst_shape
        K, Cg, R, S = w_shape
        Kg = K // groups
        KC, TC = data_grad_chunk(R, S, Kg, itemsize)
        cpg = -(-Cg // CB)
        mags = (magic_numbers(stride[0]) + magic_numbers(stride[1]) + magic_numbers(cpg) + magic_numbers(S) +
                magic_numbers(KC))
        shmem = TC * KC * CB * itemsize
        return (Kg, has_bias, KC, TC, mags), shmem, general_plane_launches(N, groups * cpg, Hd, Wd, THREADS)

    def launch(go, w, bias, dst, stream):
        for name, a in (("grad_out", go), ("weight", w)):
            if any(st % itemsize for st in a.strides):
                raise ValueError(f"{name} strides {a.strides} must be whole elements of {itemsize} bytes")
        more, shmem, launches = plan(tuple(dst.shape), tuple(w.shape))
        for grid, block, tail in launches:
            kernel[grid, block, stream, shmem](go, w, bias, dst, *scalars, *more, *tail)

    return launch


@functools.cache
def bias_grad_kernel(dtype, dense=True):
    """gb[k] = Σ_{n, p, q} go[n, k, p, q]: one block per channel. Thread t sums the elements of flat
    (image, pixel) index t, t + 256, ... in order, stepping by counters (no division per element); then
    a tree in shared memory adds the threads' sums in a fixed order. Both variants visit the same
    elements in the same order: dense (C-contiguous go) keeps a flat 64-bit offset, general (any
    strides) an (n, p, q) counter. dtype may be a 16-bit kind ("f16", "bf16": uint16 go and gb, float32
    sums, the result rounded once; kernels/_half.py)."""
    _, T, wide, narrow = element(dtype)
    ZERO = np.dtype(storage(dtype)[0]).type(0)

    @cuda.jit
    def bias_grad(go, gb,                         # go (N, K, P, Q), gb (K,)
                  magic,                          # magic numbers of P·Q (capped at 2**31 − 1) and Q
                  de, dn, dq, dp):                # a step of 256 flat indices as (pixels, images), (columns, rows)
        N, K, P, Q = go.shape
        k = int64(cuda.blockIdx.x)
        t = int32(cuda.threadIdx.x)
        part = cuda.shared.array(BIAS_THREADS, dtype=T)
        n = int64(divmagic(t, magic[0], magic[1]))   # this thread's first (image, pixel)
        e = t - n * (P * Q)
        acc = ZERO
        if dense:
            PQ = int64(P) * Q
            f = (n * K + k) * PQ + e              # flat offset of go[n, k] + pixel e
            limit = int64(N) * K * PQ
            step = dn * K * PQ + de
            while f < limit:
                acc += wide(load(go, f, 0))
                f += step
                e += de
                if e >= PQ:
                    e -= PQ
                    f += (K - 1) * PQ
        else:
            p = int64(divmagic(int32(e), magic[2], magic[3]))
            q = e - p * Q
            while n < N:
                acc += wide(go[uint64(n), uint64(k), uint64(p), uint64(q)])
                n += dn
                p += dp
                q += dq
                if q >= Q:
                    q -= Q
                    p += 1
                if p >= P:
                    p -= P
                    n += 1
        part[t] = acc
        off = BIAS_THREADS // 2
        while off > 0:
            cuda.syncthreads()  # the previous level's partial sums are written before this level reads them
            if t < off:
                part[t] += part[t + off]
            off //= 2
        if t == 0:
            gb[k] = narrow(part[0])

    return bias_grad


def launch_bias_grad(K, dtype):
    """launch(go, gb, stream): gb = go summed over images and pixels, for go of K channels."""
    # Launch plan: K blocks (one per output channel) of 256 threads; a fixed-order reduction, no atomics.
    dense, general = bias_grad_kernel(dtype, True), bias_grad_kernel(dtype, False)

    @functools.lru_cache(maxsize=64)
    def steps(P, Q):
        PQ = P * Q
        dn, de = divmod(BIAS_THREADS, PQ)
        dp, dq = divmod(de, Q)
        return (magic_numbers(min(PQ, INT32_MAX)) + magic_numbers(Q), de, dn, dq, dp)

    def launch(go, gb, stream):
        kernel = dense if c_contiguous(go) else general
        kernel[K, BIAS_THREADS, stream](go, gb, *steps(go.shape[2], go.shape[3]))

    return launch
