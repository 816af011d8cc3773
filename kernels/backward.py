"""Convolution backward kernels: the data gradient (also the transposed convolution) and the bias gradient.

The weight gradient is a GEMM over im2col columns (gpuconv.kernels.gemm with accumulate, images added
in a fixed order); it has no kernel of its own.

Everything here gathers: each output element is computed by one thread (or one block) summing in a
fixed order, so results are the same bits on every run, with no atomics and no zero-fill pass.
"""

import functools

import numpy as np
from numba import cuda, int32, int64, uint64

from ._common import INT32_MAX, c_contiguous, divmagic, magic_numbers, numba_type, striding_blocks, unflatten_nchw
from ._flat import load

THREADS = 256           # data gradient: one element per thread, the fastest axis along threads
BIAS_THREADS = 256      # bias gradient: one block per channel, a fixed-shape tree over its threads


@functools.cache
def data_grad_kernel(dtype):
    """dst[n, c, i, j] = Σ_{k, r, s} go[n, k, p, q] · w[k, c mod Cg, r, s] over the taps (r, s) and output
    pixels (p, q) that read input position (i + origin_h, j + origin_w), k over c's group (+ bias[c]).

    That is the input gradient of conv2d (the correlation with the kernel rotated 180°, strides taken
    by skipping the taps that land between output pixels, so no zero-stuffed tensor is made) and the
    transposed convolution. origin is (0, 0) when dst is the input itself, (−pt, −pl) when it is the
    padded grid (for padding modes other than zeros, folded afterwards)."""
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit
    def data_grad(go, w, bias, dst,                    # go (N, K, P, Q), w (K, Cg, R, S), bias (C,), dst (N, C, Hd, Wd)
                  sh, sw, pt, pl, dh, dw,              # the convolution's stride, padding (top, left), dilation
                  origin_h, origin_w, groups, has_bias):
        N, C, Hd, Wd = dst.shape
        K, Cg, R, S = w.shape
        P = go.shape[2]
        Q = go.shape[3]
        Kg = K // groups
        total = int64(N) * C * Hd * Wd
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, i, j = unflatten_nchw(e, C, Hd, Wd)
            h = i + origin_h + pt                # row in the padded input's own frame
            x = j + origin_w + pl
            g = c // Cg
            cg = c - g * Cg
            acc = ZERO
            for r in range(R):
                u = h - r * dh
                if u >= 0 and u % sh == 0 and u // sh < P:
                    p = u // sh
                    for s in range(S):
                        v = x - s * dw
                        if v >= 0 and v % sw == 0 and v // sw < Q:
                            q = v // sw
                            for kk in range(Kg):
                                k = g * Kg + kk
                                acc += go[n, k, p, q] * w[k, cg, r, s]
            if has_bias:
                acc += bias[c]
            dst[n, c, i, j] = acc

    return data_grad


def launch_data_grad(dtype, stride, pads_tl, dilation, groups, origin, has_bias):
    """launch(go, w, bias, dst, stream) over every element of dst."""
    # Launch plan: 1-D grid of 256-thread blocks, one dst element per thread (column fastest: coalesced
    # stores, and neighbouring threads read neighbouring output pixels), grid-striding past 65535·8 blocks.
    kernel = data_grad_kernel(dtype)
    scalars = (stride[0], stride[1], pads_tl[0], pads_tl[1], dilation[0], dilation[1], origin[0], origin[1],
               groups, has_bias)

    def launch(go, w, bias, dst, stream):
        kernel[striding_blocks(dst.size, THREADS), THREADS, stream](go, w, bias, dst, *scalars)

    return launch


@functools.cache
def bias_grad_kernel(dtype, dense=True):
    """gb[k] = Σ_{n, p, q} go[n, k, p, q]: one block per channel. Thread t sums the elements of flat
    (image, pixel) index t, t + 256, ... in order, stepping by counters (no division per element); then
    a tree in shared memory adds the threads' sums in a fixed order. Both variants visit the same
    elements in the same order: dense (C-contiguous go) keeps a flat 64-bit offset, general (any
    strides) an (n, p, q) counter."""
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)

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
                acc += load(go, f, 0)
                f += step
                e += de
                if e >= PQ:
                    e -= PQ
                    f += (K - 1) * PQ
        else:
            p = int64(divmagic(int32(e), magic[2], magic[3]))
            q = e - p * Q
            while n < N:
                acc += go[uint64(n), uint64(k), uint64(p), uint64(q)]
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
            gb[k] = part[0]

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
