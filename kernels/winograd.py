"""Winograd convolution F(m×m, 3×3) for 3×3, stride 1, dilation 1 layers: m = 2 (4×4 tiles) or 4 (6×6).

With a = m + 2, an output tile of m×m pixels is Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ) ] A, d the a×a input patch:
  1. filter transform: U[e, k, c] = (G g[k, c] Gᵀ)[e]               (one thread per (k, c))
  2. input transform:  V[e, c, t] = (Bᵀ d[c, t] B)[e]                (one thread per (image, c, tile))
  3. a² batched products on our GEMM: M[e] = U[e] (K×C) @ V[e] (C×tiles)
  4. output transform: y tile = Aᵀ M[·, k, t] A + bias, activation   (one thread per (image, k, tile))
Padding (any form and mode) is applied as the patches are read. The transforms' small matrices live in
constant memory. Float32 error grows with m: F(4×4) loses about one more digit than F(2×2).

Range and non-finite values: the transforms mix every element of a patch into every product, so one
Inf or NaN (or a finite value whose transform overflows, |x| ≳ 1e37 in float32) would make the whole
output tile NaN. The output transform therefore checks each tile: when any of its values is not finite,
the thread recomputes that tile directly from x and the weights (Σ over c, r, s with the padding mode,
as the direct kernels do), so Inf and NaN land exactly where direct convolution puts them. The check
costs one comparison per output; the recomputation runs only for such tiles. Finite inputs keep
Winograd's error, which is relative to the largest magnitude in each patch: a value 1e6 times its
neighbours costs them about six digits.
"""

import functools
import math

import numpy as np
from numba import cuda, int64

from ._common import ACT_NONE, activation_fn, numba_type, source_index, striding_blocks

THREADS = 256
# Transform kernels keep each thread's a×a patch in shared memory (thread index fastest: no bank
# conflicts), which NVVM cannot keep in registers (its loops over the patch are too long to unroll) and
# would otherwise put in local memory: 6·6·128·8 B = 36 KiB at most, under the 48 KiB static limit.
TRANSFORM_THREADS = 128

_BT = {2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
       4: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
           [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]}
_G = {2: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
      4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
          [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]}
_AT = {2: [[1, 1, 1, 0], [0, 1, -1, -1]],
       4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]}
TILE_SIZES = (2, 4)


@functools.cache
def _transforms(dtype, m):
    """(bcol, brow, acol, arow): Bᵀ / Aᵀ applied to column j or row i of an a×a patch, written out per
    tile size so the arithmetic is explicit (no loops over the transform matrices). Constants are typed
    per dtype: an int literal times a float32 would promote the arithmetic to float64."""
    two, four, five, eight = (np.dtype(dtype).type(v) for v in (2, 4, 5, 8))

    @cuda.jit(device=True, inline=True)
    def _bt4(a, b, c, d):                      # Bᵀ of F(2×2, 3×3) on a 4-vector
        return a - c, b + c, c - b, b - d

    @cuda.jit(device=True, inline=True)
    def _bt6(a, b, c, d, e, f):                # Bᵀ of F(4×4, 3×3) on a 6-vector
        return (four * a - five * c + e, -four * b - four * c + d + e, four * b - four * c - d + e,
                -two * b - c + two * d + e, two * b - c - two * d + e, four * b - five * d + f)

    @cuda.jit(device=True, inline=True)
    def _at4(a, b, c, d):                      # Aᵀ of F(2×2, 3×3): 4 -> 2
        return a + b + c, b - c - d

    @cuda.jit(device=True, inline=True)
    def _at6(a, b, c, d, e, f):                # Aᵀ of F(4×4, 3×3): 6 -> 4
        return (a + b + c + d + e, b - c + two * d - two * e, b + c + four * d + four * e,
                b - c + eight * d - eight * e + f)

    if m == 2:
        @cuda.jit(device=True, inline=True)
        def bcol(M, j):
            return _bt4(M[0, j], M[1, j], M[2, j], M[3, j])

        @cuda.jit(device=True, inline=True)
        def brow(M, i):
            return _bt4(M[i, 0], M[i, 1], M[i, 2], M[i, 3])

        @cuda.jit(device=True, inline=True)
        def acol(M, j):
            return _at4(M[0, j], M[1, j], M[2, j], M[3, j])

        @cuda.jit(device=True, inline=True)
        def arow(M, i):
            return _at4(M[i, 0], M[i, 1], M[i, 2], M[i, 3])
    else:
        @cuda.jit(device=True, inline=True)
        def bcol(M, j):
            return _bt6(M[0, j], M[1, j], M[2, j], M[3, j], M[4, j], M[5, j])

        @cuda.jit(device=True, inline=True)
        def brow(M, i):
            return _bt6(M[i, 0], M[i, 1], M[i, 2], M[i, 3], M[i, 4], M[i, 5])

        @cuda.jit(device=True, inline=True)
        def acol(M, j):
            return _at6(M[0, j], M[1, j], M[2, j], M[3, j], M[4, j], M[5, j])

        @cuda.jit(device=True, inline=True)
        def arow(M, i):
            return _at6(M[i, 0], M[i, 1], M[i, 2], M[i, 3], M[i, 4], M[i, 5])
    return bcol, brow, acol, arow


def matrices(m, dtype=np.float64):
    """(Bᵀ, G, Aᵀ) of F(m×m, 3×3) as arrays."""
    return (np.array(_BT[m], dtype=dtype), np.array(_G[m], dtype=dtype), np.array(_AT[m], dtype=dtype))


@functools.cache
def filter_transform_kernel(dtype, m):
    _, G_, _ = matrices(m, dtype)
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    A = m + 2

    @cuda.jit
    def filter_transform(w, U):                    # w (K, C, 3, 3) -> U (a², K, C)
        G = cuda.const.array_like(G_)
        K, C = w.shape[0], w.shape[1]
        tmp = cuda.local.array((A, 3), dtype=T)    # G g
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, int64(K) * C, int64(cuda.gridDim.x) * cuda.blockDim.x):
            k = e // C
            c = e - k * C
            for i in range(A):
                for j in range(3):
                    v = ZERO
                    for t in range(3):
                        v += G[i, t] * w[k, c, t, j]
                    tmp[i, j] = v
            for i in range(A):
                for j in range(A):
                    v = ZERO
                    for t in range(3):
                        v += tmp[i, t] * G[j, t]
                    U[i * A + j, k, c] = v

    return filter_transform


@functools.cache
def input_transform_kernel(dtype, m):
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    A = m + 2

    bcol, brow, _, _ = _transforms(dtype, m)

    @cuda.jit
    def input_transform(x, V, img0, pt, pl, mode, TH, TW):   # V (a², C, nb·TH·TW)
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        tiles = V.shape[2]
        total = int64(C) * tiles
        patches = cuda.shared.array((A, A, TRANSFORM_THREADS), dtype=T)
        d = patches[:, :, cuda.threadIdx.x]        # this thread's patch (no other thread touches it)
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            c = e // tiles
            t = e - c * tiles                      # tile fastest: neighbouring threads, neighbouring tiles
            b = t // (TH * TW)
            th = (t // TW) % TH
            tw = t % TW
            n = img0 + b
            for i in range(A):
                hs = source_index(th * m - pt + i, H, mode)
                for j in range(A):
                    ws = source_index(tw * m - pl + j, W, mode)
                    d[i, j] = x[n, c, hs, ws] if hs >= 0 and ws >= 0 else ZERO
            for j in range(A):                     # Bᵀ d, column by column, in place
                col = bcol(d, j)
                for i in range(A):
                    d[i, j] = col[i]
            for i in range(A):                     # (Bᵀ d) B, row by row, to V
                row = brow(d, i)
                for j in range(A):
                    V[i * A + j, c, t] = row[j]

    return input_transform


@functools.cache
def output_transform_kernel(dtype, m, act=ACT_NONE):
    """The output transform for one dtype, tile size and activation (an ACT_ code, compiled in: one
    activation's code only, as the direct kernels)."""
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    A = m + 2
    apply = activation_fn(dtype, act)

    _, _, acol, arow = _transforms(dtype, m)

    @cuda.jit
    def output_transform(M, y, bias,                     # M (a², K, tiles) -> y (N, K, P, Q); bias (K,)
                         x, w,                           # the layer's input and weights (non-finite tiles)
                         img0, TH, TW, pt, pl, mode,     # first image, tiles per image, padding (top, left, mode)
                         has_bias, alpha):
        K, P, Q = y.shape[1], y.shape[2], y.shape[3]
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        tiles = M.shape[2]
        total = int64(K) * tiles
        patches = cuda.shared.array((A, A, TRANSFORM_THREADS), dtype=T)
        d = patches[:, :, cuda.threadIdx.x]
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            k = e // tiles
            t = e - k * tiles
            b = t // (TH * TW)
            th = (t // TW) % TH
            tw = t % TW
            for i in range(A):
                for j in range(A):
                    d[i, j] = M[i * A + j, k, t]
            for j in range(A):                     # Aᵀ M, column by column, into the first m rows
                col = acol(d, j)
                for i in range(m):
                    d[i, j] = col[i]
            bk = bias[k] if has_bias else ZERO
            finite = True
            for i in range(m):                     # (Aᵀ M) A, row by row, + bias, activation
                row = arow(d, i)
                p = th * m + i
                for j in range(m):
                    q = tw * m + j
                    if p < P and q < Q:
                        v = row[j] + bk
                        finite = finite and math.isfinite(v)
                        y[img0 + b, k, p, q] = apply(v, alpha)
            if not finite:
                # Inf/NaN (or an overflow in the transforms) reached this tile: recompute it directly, so
                # non-finite values land where direct convolution puts them (module docstring). Runtime
                # loop bounds keep this cold path rolled (ptxas, sm_90, float32: 80 registers; unrolled, 106).
                n = img0 + b
                R, S = w.shape[2], w.shape[3]
                for i in range(min(m, P - th * m)):
                    for j in range(min(m, Q - tw * m)):
                        acc = ZERO
                        for c in range(C):
                            for r in range(R):
                                hs = source_index(th * m + i - pt + r, H, mode)
                                for s in range(S):
                                    ws = source_index(tw * m + j - pl + s, W, mode)
                                    xv = ZERO
                                    if hs >= 0 and ws >= 0:
                                        xv = x[n, c, hs, ws]
                                    acc += xv * w[k, c, r, s]
                        y[n, k, th * m + i, tw * m + j] = apply(acc + bk, alpha)

    return output_transform


def launch_transforms(dtype, m, pads_tl, mode, TH, TW, has_bias, act, alpha):
    """(filter(w, U, stream), inputs(x, V, img0, stream), outputs(M, y, bias, x, w, img0, stream)) launchers."""
    # Launch plans: 1-D grids of 256 (filter) or 128 (patch transforms) threads, one thread per (k, c) filter,
    # per (c, tile) input patch (tile fastest), per (k, tile) output tile, grid-striding past 65535·8 blocks.
    fk = filter_transform_kernel(dtype, m)
    ik = input_transform_kernel(dtype, m)
    ok = output_transform_kernel(dtype, m, act)
    alpha = np.dtype(dtype).type(alpha)
    pt, pl = pads_tl

    def filters(w, U, stream):
        fk[striding_blocks(U.shape[1] * U.shape[2], THREADS), THREADS, stream](w, U)

    def inputs(x, V, img0, stream):
        ik[striding_blocks(V.shape[1] * V.shape[2], TRANSFORM_THREADS), TRANSFORM_THREADS, stream](
            x, V, img0, pt, pl, mode, TH, TW)

    def outputs(M, y, bias, x, w, img0, stream):
        ok[striding_blocks(M.shape[1] * M.shape[2], TRANSFORM_THREADS), TRANSFORM_THREADS, stream](
            M, y, bias, x, w, img0, TH, TW, pt, pl, mode, has_bias, alpha)

    return filters, inputs, outputs
