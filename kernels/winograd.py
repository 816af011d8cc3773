"""Winograd convolution F(m×m, 3×3) for 3×3, stride 1, dilation 1 layers: m = 2 (4×4 tiles) or 4 (6×6).

With a = m + 2, an output tile of m×m pixels is Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d Bᵀᵀ) ] A, d the a×a input patch:
  1. filter transform: U[e, k, c] = (G g[k, c] Gᵀ)[e]               (one thread per (k, c))
  2. input transform:  V[e, c, t] = (Bᵀ d[c, t] B)[e]                (one thread per (c, tile))
  3. a² batched products on our GEMM: M[e] = U[e] (K×C) @ V[e] (C×tiles)
  4. output transform: y tile = Aᵀ M[·, k, t] A + bias, activation   (one thread per (k, tile))
Padding (any form and mode) is applied as the patches are read. The transforms' small matrices are
written out per tile size (the filter transform's G lives in constant memory). Float32 error grows with
m: F(4×4) loses about one more digit than F(2×2).

Index math: the patch transforms' grids put a chunk's tiles in x (tile fastest: neighbouring threads,
neighbouring tiles) and the channel or filter in y, so a thread's (image, tile row, tile column) take
two magic-number divisions and nothing else divides. A thread's patch is a local array indexed by
compile-time constants once NVVM unrolls the loops over it: it stays in registers. The workspace (U, V,
M) is always C-contiguous and addressed through gpuconv.kernels._flat; x and y take a dense variant
(C-contiguous, planes within int32: flat offsets) or a general one (any strides: their own indexing).

Range and non-finite values: the transforms mix every element of a patch into every product, so one
Inf or NaN (or a finite value whose transform overflows, |x| ≳ 1e37 in float32) would make the whole
output tile NaN. The output transform therefore checks each tile: when any of its values is not finite,
it raises a flag in the workspace, and a fix-up pass launched after it recomputes such tiles directly
from x and the weights (Σ over c, r, s with the padding mode, as the direct kernels do), so Inf and
NaN land exactly where direct convolution puts them. The check costs one comparison per output; the
fix-up pass is a flag read per block unless the flag is up. Finite inputs keep Winograd's error, which
is relative to the largest magnitude in each patch: a value 1e6 times its neighbours costs them about
six digits.

16-bit data: every transform also builds for dtype "f16" / "bf16" (kernels/_half.py): x, the weights and
the bias are uint16 bits widened to float32 as they are read (also by the fix-up pass), each value of y
is computed in float32 and rounded once (to nearest even) as it is stored, and the workspace U, V, M and
the flag are float32: transformed values are not exact in 16 bits, and F(4×4)'s input transform grows
values up to 100× (past float16's range for inputs above 655). The caller multiplies that float32
workspace (on TF32 tensor cores: gpuconv.winograd states the error bound).
"""

import functools
import math

import numpy as np
from numba import cuda, int32, int64, uint64

from ._common import (ACT_NONE, PAD_CIRCULAR, PAD_REFLECT, PAD_REPLICATE, PAD_ZEROS, activation_fn, c_contiguous,
                      divmagic, fits_int32, grid_chunks, magic_numbers, numba_type, pad_source)
from ._flat import load, store
from ._half import codec, storage

THREADS = 256
# Patch transforms: a thread's a×a patch is a local array indexed only by constants once NVVM unrolls
# the compile-time loops over it, so it lives in registers (no scratch memory; ≤ 107 registers on
# sm_90, float64 F(4×4)); 128 threads keep small chunks' grids several blocks wide.
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
    """U[e, k, c] = (G g[k, c] Gᵀ)[e]; dtype float32, float64 or a 16-bit kind (w's uint16 bits widened
    as read, U float32)."""
    arith, kind = storage(dtype)
    widen, _ = codec(kind)
    _, G_, _ = matrices(m, arith)
    T = numba_type(arith)
    ZERO = arith.type(0)
    A = m + 2

    @cuda.jit
    def filter_transform(w, U, k0):                # w (K, C, 3, 3) -> U (a², K, C); k0: this launch's first k
        G = cuda.const.array_like(G_)
        K, C = U.shape[1], U.shape[2]
        c = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        if c >= C:
            return
        k = int64(k0) + cuda.blockIdx.y
        tmp = cuda.local.array((A, 3), dtype=T)    # G g
        for i in range(A):
            for j in range(3):
                v = ZERO
                for t in range(3):
                    v += G[i, t] * widen(w[uint64(k), uint64(c), uint64(t), uint64(j)])
                tmp[i, j] = v
        base = k * C + c                           # U[e, k, c] = U.flat[e·K·C + k·C + c]
        KC = int64(K) * C
        for i in range(A):
            for j in range(A):
                v = ZERO
                for t in range(3):
                    v += tmp[i, t] * G[j, t]
                store(U, base, int64(i * A + j) * KC, v)

    return filter_transform


@cuda.jit(device=True, inline=True)
def tile_coords(tiles, TW, mags):
    """(t, b, th, tw): this thread's tile t of the chunk (int32, may be >= the chunk's tile count, for the
    caller to test), its image b in the chunk, and its tile row and column: t = b·TH·TW + th·TW + tw, by
    magic-number division (mags: those of TH·TW, then of TW)."""
    t = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
    b = divmagic(t, mags[0], mags[1])
    r = int32(t - b * tiles)
    th = divmagic(r, mags[2], mags[3])
    return t, b, th, int32(r - th * TW)


@functools.cache
def input_transform_kernel(dtype, m, mode=PAD_ZEROS, dense=True):
    """V[e, c, t] = (Bᵀ d B)[e] for the a×a input patch d of tile t of channel c, padded by `mode`
    (compiled in). The first thread of the grid also lowers the non-finite flag (output_transform_kernel).

    dense: x is C-contiguous and its planes' offsets fit int32 (read through gpuconv.kernels._flat).
    dtype: float32, float64 or a 16-bit kind (x's uint16 bits widened as read; V and the flag float32)."""
    arith, kind = storage(dtype)
    widen, _ = codec(kind)
    T = numba_type(arith)
    ZERO = arith.type(0)
    A = m + 2
    I = int32 if dense else int64
    source = pad_source(mode, I)
    bcol, brow, _, _ = _transforms(arith, m)

    @cuda.jit
    def input_transform(x, V, flag,               # x (N, C, H, W) -> V (a², C, tiles), tile fastest
                        img0, pt, pl, tiles, TW,  # first image; top, left padding; tiles per image, per row
                        mags, c0):                # magic numbers of TH·TW and TW; this launch's first channel
        if (cuda.blockIdx.x == 0) & (cuda.blockIdx.y == 0) & (cuda.threadIdx.x == 0):
            flag[0] = ZERO                        # ordered after the previous chunk's fix-up (same stream)
        nt = int32(V.shape[2])
        t, b, th, tw = tile_coords(tiles, TW, mags)
        if t >= nt:
            return
        C, H, W = x.shape[1], I(x.shape[2]), I(x.shape[3])
        c = int64(c0) + cuda.blockIdx.y
        n = int64(img0) + b
        h0 = I(I(th) * m - pt)
        w0 = I(I(tw) * m - pl)
        if dense:
            xplane = (n * C + c) * (int64(H) * W)
        d = cuda.local.array((A, A), dtype=T)     # the patch, then Bᵀ d (registers once unrolled)
        for i in range(A):
            hs = source(I(h0 + i), H)
            for j in range(A):
                ws = source(I(w0 + j), W)
                v = ZERO
                if (hs >= 0) & (ws >= 0):
                    if dense:
                        v = widen(load(x, xplane, I(hs * W + ws)))
                    else:
                        v = widen(x[uint64(n), uint64(c), uint64(hs), uint64(ws)])
                d[i, j] = v
        for j in range(A):                        # Bᵀ d, column by column, in place
            col = bcol(d, j)
            for i in range(A):
                d[i, j] = col[i]
        vplane = c * nt                           # V[e, c, t] = V.flat[e·C·tiles + c·tiles + t]
        CT = int64(V.shape[1]) * nt
        for i in range(A):                        # (Bᵀ d) B, row by row, to V
            row = brow(d, i)
            for j in range(A):
                store(V, vplane + (i * A + j) * CT, t, row[j])

    return input_transform


@functools.cache
def output_transform_kernel(dtype, m, act=ACT_NONE, dense=True, fixup=False):
    """y[n, k, tile] = act(Aᵀ M[·, k, t] A + bias[k]) for tile t of filter k, the activation compiled in.

    The main pass (fixup=False) writes every tile and raises flag[0] when a tile's value is not finite.
    The fix-up pass (fixup=True), launched after it over the same grid, returns at once unless the flag
    is up; then each thread transforms its tile again (M is still there) and recomputes a non-finite
    one directly from x and w (module docstring). The main pass so carries no recomputation code.

    dense: y is C-contiguous and its planes' offsets fit int32 (written through gpuconv.kernels._flat).
    dtype: float32, float64 or a 16-bit kind: M and the flag float32; bias, x and w uint16 bits widened as
    read; each value of y computed in float32 and rounded once to the kind (kernels/_half.py) as stored."""
    arith, kind = storage(dtype)
    widen, narrow = codec(kind)
    T = numba_type(arith)
    ZERO = arith.type(0)
    ONE = arith.type(1)
    A = m + 2
    f = activation_fn(arith, act)
    _, _, acol, arow = _transforms(arith, m)
    I = int32 if dense else int64
    recompute_tile = _direct_tile(dtype, m, act)

    @cuda.jit
    def output_transform(M, y, bias,              # M (a², K, tiles) -> y (N, K, P, Q); bias (K,)
                         x, w, flag,              # the layer's input and weights, the non-finite flag (1,)
                         img0, pt, pl, mode,      # first image; top, left padding and its mode (fix-up)
                         tiles, TW, has_bias, alpha,
                         mags, k0):               # magic numbers of TH·TW and TW; this launch's first filter
        if fixup:
            if flag[0] == ZERO:
                return
        nt = int32(M.shape[2])
        t, b, th, tw = tile_coords(tiles, TW, mags)
        if t >= nt:
            return
        K, P, Q = M.shape[1], I(y.shape[2]), I(y.shape[3])
        k = int64(k0) + cuda.blockIdx.y
        n = int64(img0) + b
        mplane = k * nt                           # M[e, k, t] = M.flat[e·K·tiles + k·tiles + t]
        KT = int64(K) * nt
        d = cuda.local.array((A, A), dtype=T)     # M's tile, then Aᵀ M in its first m rows
        for i in range(A):
            for j in range(A):
                d[i, j] = load(M, mplane + (i * A + j) * KT, t)
        for j in range(A):                        # Aᵀ M, column by column, into the first m rows
            col = acol(d, j)
            for i in range(m):
                d[i, j] = col[i]
        bk = widen(bias[uint64(k)]) if has_bias else ZERO
        p0 = I(I(th) * m)
        q0 = I(I(tw) * m)
        if dense and not fixup:
            yplane = (n * y.shape[1] + k) * (int64(P) * Q)
        finite = True
        for i in range(m):                        # (Aᵀ M) A, row by row, + bias, activation
            row = arow(d, i)
            p = I(p0 + i)
            for j in range(m):
                q = I(q0 + j)
                if (p < P) & (q < Q):
                    v = row[j] + bk
                    finite = finite and math.isfinite(v)
                    if not fixup:
                        if dense:
                            store(y, yplane, I(p * Q + q), narrow(f(v, alpha)))
                        else:
                            y[uint64(n), uint64(k), uint64(p), uint64(q)] = narrow(f(v, alpha))
        if not fixup:
            if not finite:
                flag[0] = ONE                     # any thread may raise it: all write the same value
        elif not finite:
            # Inf/NaN (or an overflow in the transforms) reached this tile: recompute it directly, so
            # non-finite values land where direct convolution puts them (module docstring).
            recompute_tile(x, w, y, n, k, int64(p0), int64(q0), pt, pl, mode, bk, alpha)

    return output_transform


@functools.cache
def _direct_tile(dtype, m, act):
    """recompute(x, w, y, n, k, p0, q0, pt, pl, mode, bk, alpha): the m×m tile at (p0, q0) of y[n, k]
    (clipped to y), as direct convolution computes it, + bk and the activation. Runtime loop bounds and
    the padding mode a runtime value keep this cold path small (one fix-up kernel serves every mode).
    A 16-bit kind: x and w widened as read, the sum in float32, each value of y rounded once."""
    arith, kind = storage(dtype)
    widen, narrow = codec(kind)
    ZERO = arith.type(0)
    f = activation_fn(arith, act)
    sources = tuple(pad_source(mode, int64) for mode in (PAD_ZEROS, PAD_REFLECT, PAD_REPLICATE, PAD_CIRCULAR))
    zeros, reflect, replicate, circular = sources

    @cuda.jit(device=True, inline=True)
    def source(i, n, mode):
        if mode == PAD_REFLECT:
            return reflect(i, n)
        if mode == PAD_REPLICATE:
            return replicate(i, n)
        if mode == PAD_CIRCULAR:
            return circular(i, n)
        return zeros(i, n)

    @cuda.jit(device=True, inline=True)
    def recompute(x, w, y, n, k, p0, q0, pt, pl, mode, bk, alpha):
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        R, S = w.shape[2], w.shape[3]
        for i in range(min(int64(m), y.shape[2] - p0)):
            for j in range(min(int64(m), y.shape[3] - q0)):
                acc = ZERO
                for c in range(C):
                    for r in range(R):
                        hs = source(p0 + i - pt + r, H, mode)
                        for s in range(S):
                            ws = source(q0 + j - pl + s, W, mode)
                            xv = ZERO
                            if (hs >= 0) & (ws >= 0):
                                xv = widen(x[uint64(n), uint64(c), uint64(hs), uint64(ws)])
                            acc += xv * widen(w[uint64(k), uint64(c), uint64(r), uint64(s)])
                y[uint64(n), uint64(k), uint64(p0 + i), uint64(q0 + j)] = narrow(f(acc + bk, alpha))

    return recompute


def launch_transforms(dtype, m, pads_tl, mode, TH, TW, has_bias, act, alpha):
    """(filter(w, U, stream), inputs(x, V, flag, img0, stream), outputs(M, y, bias, x, w, flag, img0, stream))
    launchers; flag: a one-element workspace array of the workspace's dtype (the non-finite tiles' signal).
    dtype: float32, float64, or a 16-bit kind ("f16", "bf16": x, w, bias and y are uint16 bits, the
    workspace U, V, M and the flag float32)."""
    # Launch plans. Filter: grid (ceil(C / 256), K) of 256 threads, a thread per (k, c). Patch transforms:
    # grid (ceil(tiles / 128), C or K) of 128 threads, a thread per tile of the chunk (tile fastest: x
    # coordinate) and channel or filter; y in chunks of 65535 launches; the chunk's tiles fit int32 (the
    # plan caps its images). outputs launches the main pass, then the fix-up pass over the same grid.
    alpha = storage(dtype)[0].type(alpha)
    pt, pl = pads_tl
    fk = filter_transform_kernel(dtype, m)
    tiles = TH * TW
    mags = magic_numbers(tiles) + magic_numbers(TW)

    def filters(w, U, stream):
        K, C = U.shape[1], U.shape[2]
        for k0, kc in grid_chunks(K):
            fk[(-(-C // THREADS), kc), THREADS, stream](w, U, k0)

    def inputs(x, V, flag, img0, stream):
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        dense = c_contiguous(x) and fits_int32(H * W)
        ik = input_transform_kernel(dtype, m, mode, dense)
        blocks = -(-V.shape[2] // TRANSFORM_THREADS)
        for c0, cc in grid_chunks(C):
            ik[(blocks, cc), TRANSFORM_THREADS, stream](x, V, flag, img0, pt, pl, tiles, TW, mags, c0)

    def outputs(M, y, bias, x, w, flag, img0, stream):
        K, P, Q = y.shape[1], y.shape[2], y.shape[3]
        dense = c_contiguous(y) and fits_int32(P * Q)
        blocks = -(-M.shape[2] // TRANSFORM_THREADS)
        for fixup in (False, True):
            ok = output_transform_kernel(dtype, m, act, dense and not fixup, fixup)
            for k0, kc in grid_chunks(K):
                ok[(blocks, kc), TRANSFORM_THREADS, stream](M, y, bias, x, w, flag, img0, pt, pl, mode, tiles, TW,
                                                            has_bias, alpha, mags, k0)

    return filters, inputs, outputs
