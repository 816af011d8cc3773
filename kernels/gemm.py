"""Tiled, register-blocked GEMM: C[g] = epilogue(A[g] @ B[g]) for float32 (SGEMM) and float64 (DGEMM).

A block computes a BM×BN tile of C. Each K step stages a BM×BK slice of A and a BK×BN slice of B in
shared memory (double-buffered: the next slices are fetched into registers while this one is used),
and each of its 16×16 threads accumulates a TM×TN register block. A thread's rows are ty + 16·i and
its columns tx + 16·j: a warp's 32 threads read shared memory without bank conflicts (two broadcast
A values, 32 consecutive B values) and store consecutive columns of C (coalesced).

Operands are any-strided views (a transpose is a view): the host says which axis of A and of B is
contiguous and the tile loads walk that axis with consecutive threads, so global reads coalesce.
Batches: A and B are (a, rows, cols) and (b, rows, cols); product g uses A[g % a] and B[g % b], so
an extent of 1 is broadcast.
Grid: blockIdx.x numbers the block's tile of C (N tiles fastest, so the launch order is the usual
row of tiles after row of tiles) and blockIdx.z its product, g = g0 + blockIdx.z: x has room for
2**31 - 1 tiles where y has 65535, and a batch over 65535 products runs as several launches, each
told its first product g0.

Stores, made by the factory's `store` argument (one compiled kernel each):
- "matrix": C is (batch, M, N), C[g, m, n].
- "nchw": C is a convolution output y (N, K, P, Q) and the batch runs over (image, group), group
  fastest, with A's batch the groups: product g writes image img0 + g // groups, channels
  (g % groups)·M + m, and its column n is pixel pix0 + n of that image (p = · // Q, q = · % Q).
The B operand is read through a device function given to the factory: a (batch, K, N) matrix by
default, or (kernels/implicit_gemm.py) the convolution input gathered in im2col's layout.
The epilogue adds a bias (per row, i.e. per output channel; or per column, for dense layers), applies
a fused activation, and either writes or adds to C (accumulate: a split reduction in a fixed order).
All of it is compile-time configuration: one kernel per (dtype, store, bias, activation, accumulate).
"""

import functools

import numpy as np
from numba import cuda, int64

from ._common import ACT_LEAKY_RELU, ACT_NONE, ACT_RELU, MAX_GRID_X, MAX_GRID_YZ, epilogue, numba_type

# Tile of C per block (BM×BN) and the K depth staged per step (BK), per dtype, with 16×16 threads.
# float32: 128×128×8, an 8×8 register block per thread (the classic SGEMM shape): 64 accumulators and
# 16 fragments fit the 255-register limit, and the double-buffered tiles take 2·(2·8·132)·4 B = 17 KiB.
# float64: 64×64×8, 4×4 per thread; 8×8 doubles needs more than 255 registers and spills (measured with
# ptxas for sm_90).
TILES = {np.dtype(np.float32): (128, 128, 8), np.dtype(np.float64): (64, 64, 8)}
THREADS_X = 16                      # threads along N (tx) and along M (ty): 256 per block
THREADS_Y = 16
THREADS = THREADS_X * THREADS_Y
SMEM_PAD = 4                        # row padding: k-contiguous tile stores hit 8 distinct banks, not 1

BIAS_NONE = 0
BIAS_ROW = 1
BIAS_COL = 2

STORES = ("matrix", "nchw")
# Activations the epilogue takes fused. sigmoid, tanh and elu inline too much code for NVVM to unroll
# the 8×8 float32 epilogue (the accumulators then go to local memory; ptxas shows a 256 B stack), so
# callers run them after the product with gpuconv.kernels.epilogue.
FUSED_ACTS = (ACT_NONE, ACT_RELU, ACT_LEAKY_RELU)


def tile(dtype):
    """(BM, BN, BK) of the GEMM kernel for dtype."""
    return TILES[np.dtype(dtype)]


@functools.cache
def matrix_loader(dtype):
    """load(B, g, kk, n, K, N, groups, img0, pix0, Q, conv): element (kk, n) of product g's B (batch, K, N)
    operand, or 0 past its edge. Other loaders (kernels/implicit_gemm.py) take the same arguments."""
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit(device=True, inline=True)
    def matrix(B, g, kk, n, K, N, groups, img0, pix0, Q, conv):
        if kk < K and n < N:
            return B[g % B.shape[0], kk, n]
        return ZERO

    return matrix


@functools.cache
def gemm_kernel(dtype, store, bias_mode=BIAS_NONE, act=ACT_NONE, accumulate=False, load_b=None):
    """The GEMM kernel for one dtype, store layout and epilogue (see the module docstring). load_b is the
    device function that fetches B's elements (default: matrix_loader; implicit GEMM passes its gather).

    The epilogue's options are compile-time constants: with them folded, NVVM unrolls the epilogue
    loops and the TM×TN accumulators stay in registers (a runtime switch over five activations makes
    the loop body too large to unroll, and the accumulators go to local memory)."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, got {store!r}")
    if act not in FUSED_ACTS:
        raise ValueError(f"the GEMM epilogue fuses activation codes {FUSED_ACTS}, got {act}")
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    apply = epilogue(dtype)
    NCHW = store == "nchw"
    load_b = load_b or matrix_loader(dtype)
    BM, BN, BK = tile(dtype)
    TM = BM // THREADS_Y            # register block: TM rows × TN columns per thread
    TN = BN // THREADS_X
    LOADS_A = BM * BK // THREADS    # elements of each tile a thread fetches per K step
    LOADS_B = BK * BN // THREADS
    AS_COLS = BM + SMEM_PAD         # shared tiles: As[buffer, k, m], Bs[buffer, k, n]
    BS_COLS = BN + SMEM_PAD

    @cuda.jit
    def gemm(A, B, C, bias,                   # A (ga, M, K), B (gb, K, N), C by `store`, bias (M·batch or N)
             M, N, K,                         # the product's extents (per batch)
             a_k_contig, b_n_contig,          # which axis of A / B is contiguous (tile-load order)
             img0, pix0,                      # "nchw": first image and first pixel of this chunk
             g0,                              # this launch's first product (blockIdx.z counts from it)
             alpha,                           # the activation's parameter
             conv):                           # load_b's extra: implicit GEMM's (R, S, sh, sw, pt, pl, dh, dw, mode)
        As = cuda.shared.array((2, BK, AS_COLS), dtype=T)
        Bs = cuda.shared.array((2, BK, BS_COLS), dtype=T)
        acc = cuda.local.array((TM, TN), dtype=T)
        fa = cuda.local.array(TM, dtype=T)
        fb = cuda.local.array(TN, dtype=T)
        ra = cuda.local.array(LOADS_A, dtype=T)
        rb = cuda.local.array(LOADS_B, dtype=T)

        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * THREADS_X + tx
        g = g0 + cuda.blockIdx.z        # the grid as launch_gemm folds it (see the module docstring)
        ga = g % A.shape[0]             # a batch of 1 is broadcast; "nchw": A's batch is the groups
        groups = A.shape[0]
        Q = C.shape[C.ndim - 1]
        n_tiles = (N + BN - 1) // BN
        m_tile = int64(cuda.blockIdx.x) // n_tiles
        m0 = m_tile * BM
        n0 = (int64(cuda.blockIdx.x) - m_tile * n_tiles) * BN

        for i in range(TM):
            for j in range(TN):
                acc[i, j] = ZERO

        steps = (K + BK - 1) // BK
        # prologue: fetch K step 0 into registers
        for r in range(LOADS_A):
            e = tid + r * THREADS
            mm = e % BM if not a_k_contig else e // BK
            kk = e // BM if not a_k_contig else e % BK
            ra[r] = A[ga, m0 + mm, kk] if m0 + mm < M and kk < K else ZERO
        for r in range(LOADS_B):
            e = tid + r * THREADS
            kk = e // BN if b_n_contig else e % BK
            nn = e % BN if b_n_contig else e // BK
            rb[r] = load_b(B, g, kk, n0 + nn, K, N, groups, img0, pix0, Q, conv)

        for step in range(steps):
            buf = step % 2
            # registers -> shared buffer `buf` (its last readers finished before the previous sync)
            for r in range(LOADS_A):
                e = tid + r * THREADS
                mm = e % BM if not a_k_contig else e // BK
                kk = e // BM if not a_k_contig else e % BK
                As[buf, kk, mm] = ra[r]
            for r in range(LOADS_B):
                e = tid + r * THREADS
                kk = e // BN if b_n_contig else e % BK
                nn = e % BN if b_n_contig else e // BK
                Bs[buf, kk, nn] = rb[r]
            cuda.syncthreads()  # the step's tiles are in shared memory before anyone multiplies them
            if step + 1 < steps:  # fetch the next step while this one is multiplied
                k0 = (step + 1) * BK
                for r in range(LOADS_A):
                    e = tid + r * THREADS
                    mm = e % BM if not a_k_contig else e // BK
                    kk = k0 + (e // BM if not a_k_contig else e % BK)
                    ra[r] = A[ga, m0 + mm, kk] if m0 + mm < M and kk < K else ZERO
                for r in range(LOADS_B):
                    e = tid + r * THREADS
                    kk = k0 + (e // BN if b_n_contig else e % BK)
                    nn = e % BN if b_n_contig else e // BK
                    rb[r] = load_b(B, g, kk, n0 + nn, K, N, groups, img0, pix0, Q, conv)
            for kk in range(BK):
                for i in range(TM):
                    fa[i] = As[buf, kk, ty + i * THREADS_Y]
                for j in range(TN):
                    fb[j] = Bs[buf, kk, tx + j * THREADS_X]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += fa[i] * fb[j]
            # No second sync: the next step writes the other buffer, and the one after this step's
            # buffer only after the next step's sync, which every thread reaches after this multiply.

        if NCHW:
            img = img0 + g // A.shape[0]
            ch0 = (g % A.shape[0]) * M
            Q = C.shape[3]
        for j in range(TN):
            n = n0 + tx + j * THREADS_X
            if NCHW:
                p = (pix0 + n) // Q
                q = (pix0 + n) - p * Q
            for i in range(TM):
                m = m0 + ty + i * THREADS_Y
                if m < M and n < N:
                    v = acc[i, j]
                    if bias_mode == BIAS_ROW:
                        v += bias[(ch0 if NCHW else 0) + m]
                    elif bias_mode == BIAS_COL:
                        v += bias[n]
                    if NCHW:
                        if accumulate:
                            v += C[img, ch0 + m, p, q]
                        C[img, ch0 + m, p, q] = apply(v, act, alpha)
                    else:
                        if accumulate:
                            v += C[g, m, n]
                        C[g, m, n] = apply(v, act, alpha)

    return gemm


def contiguous_axis_is_last(a) -> bool:
    """Is the last axis of a 3-D (batch, rows, cols) operand the one its tile loads should walk?"""
    _, rows, cols = a.shape
    _, s_rows, s_cols = a.strides
    if cols == 1 or rows == 1:
        return rows == 1
    return abs(s_cols) <= abs(s_rows)


def launch_gemm(dtype, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode=BIAS_NONE, act=ACT_NONE,
                alpha=0.0, accumulate=False, load_b=None, conv=None):
    """A launch closure for fixed extents and epilogue: launch(A, B, C, bias, img0, pix0, stream).
    load_b and conv (its 9-tuple of extra arguments) replace the matrix B operand (implicit GEMM).
    Any extents work: an empty product launches nothing (K = 0 writes the epilogue of zero)."""
    # Launch plan: grid (ceil(M / BM) · ceil(N / BN), 1, ≤ 65535) of 16×16-thread blocks, one BM×BN tile of C
    # per block, its tile number in blockIdx.x (N fastest) and its product g0 + blockIdx.z; batches over
    # 65535 products launch once per 65535 (g0 = 0, 65535, ...). Each thread keeps its TM×TN block of C in
    # registers over the whole K loop.
    kernel = gemm_kernel(dtype, store, bias_mode, act, accumulate, load_b)
    conv = tuple(int(v) for v in conv) if conv is not None else (0,) * 9
    BM, BN, _ = tile(dtype)
    tiles = -(-M // BM) * -(-N // BN)
    if tiles > MAX_GRID_X:
        raise ValueError(f"a {M}×{N} product has {tiles} tiles of {BM}×{BN}, over the grid's {MAX_GRID_X}")
    grids = [((tiles, 1, min(MAX_GRID_YZ, batch - g0)), g0) for g0 in range(0, batch, MAX_GRID_YZ)] if tiles else []
    block = (THREADS_X, THREADS_Y)
    alpha = np.dtype(dtype).type(alpha)

    def launch(A, B, C, bias, img0, pix0, stream):
        for grid, g0 in grids:
            kernel[grid, block, stream](A, B, C, bias, M, N, K, a_k_contig, b_n_contig, img0, pix0, g0, alpha, conv)

    return launch
