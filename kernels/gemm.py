"""Tiled, register-blocked GEMM: C[g] = epilogue(A[g] @ B[g]) for float32 (SGEMM) and float64 (DGEMM).

A block of 256 threads computes a BM×BN tile of C. Each K step stages a BM×BK slice of A and a BK×BN
slice of B in shared memory (double-buffered: the next slices are fetched into registers while this
one is multiplied) and every thread accumulates a TM×TN register block. With VEC = 16 bytes / itemsize
elements per vector (4 float32, 2 float64), BM = BN = 32·VEC and TM = TN = 2·VEC: a thread's rows are
ty·VEC + i and BM/2 + ty·VEC + i (i < VEC), its columns likewise with tx, so each K step of the
multiply reads its A and B fragments with 16-byte shared loads (LDS.128) and does TM·TN FMAs.

Loads: each thread fetches one 16-byte vector of A and one of B per K step (LDG.E.128) when the
operand's contiguous axis has unit stride and its rows are 16-byte aligned (the launcher checks the
call's arrays), else VEC scalar loads along the same axis. Which axis of A and of B is contiguous is a
compile-time specialisation, so the tile loads always walk it with consecutive threads (a transpose is
a free view). Element offsets are computed once per block from the arrays' strides and advanced by a
constant per K step (kernels/_vector.py): no division, no stride multiplication in the K loop.

Edge tiles: a block whose tile lies inside M×N runs a K loop without bounds checks over the whole BK
steps, then one checked step for a K remainder; a block on the edge runs a separate, fully checked K
loop. The offline model measures the interior loop (the one with fewer instructions).

Batches: A and B are (a, rows, cols) and (b, rows, cols); product g uses A[g % a] and B[g % b], so an
extent of 1 is broadcast. Stores, made by the factory's `store`:
- "matrix": C is (batch, M, N), C[g, m, n].
- "nchw": C is a convolution output y (N, K, P, Q) viewed as (N, K, P·Q) (its pixels must merge into one
  axis: the caller makes sure, or writes through a dense temporary); the batch runs over (image, group),
  group fastest, with A's batch the groups: product g writes image img0 + g // groups, channels
  (g % groups)·M + m, and column n is pixel pix0 + n of that image.
B is a matrix by default, or (kernels/implicit_gemm.py) the convolution input gathered in im2col's
layout: `b_gather` replaces the B tile fetch. The epilogue adds a bias (per row = output channel, or per
column for dense layers), applies a fused activation, and writes or adds to C (accumulate: a split
reduction in a fixed order). All of it is compile-time configuration.

Grid: x enumerates the tiles (n fastest, up to 2³¹ − 1), z the products of one launch (≤ 65,535); the
launcher issues as many launches as the batch needs, each with its first product g0.
"""

import functools

import numpy as np
from numba import config, cuda, int64, uint64

from ._common import ACT_LEAKY_RELU, ACT_NONE, ACT_RELU, MAX_GRID_X, MAX_GRID_YZ, epilogue, numba_type
from ._vector import SHARED_ALIGN, VECTOR_BYTES, ldg, ldg_vec, stg

THREADS_X = 16                      # threads along N (tx) and along M (ty): 256 per block, a 1-D block
THREADS_Y = 16
THREADS = THREADS_X * THREADS_Y
BK = 8                              # K depth per step
MAX_GRID_Y = MAX_GRID_YZ            # CUDA's limit on grid.z: products per launch (grid.x: tiles, up to 2**31 - 1)

# Two blocks of 256 threads per SM: ptxas schedules each thread within 128 registers (the 64 accumulators,
# two fragment sets, the prefetched vectors and the offsets fit without spilling). The simulator's jit
# takes no launch bounds.
JIT_OPTIONS = {} if config.ENABLE_CUDASIM else dict(launch_bounds=(THREADS, 2))

BIAS_NONE = 0
BIAS_ROW = 1
BIAS_COL = 2

STORES = ("matrix", "nchw")
# Activations the epilogue takes fused. sigmoid, tanh, elu, gelu and silu inline too much code for NVVM to unroll
# the register block's epilogue (the accumulators then go to local memory), so callers run them after
# the product with gpuconv.kernels.epilogue.
FUSED_ACTS = (ACT_NONE, ACT_RELU, ACT_LEAKY_RELU)


def vec_of(dtype) -> int:
    """Elements per 16-byte vector: the register block is 2·VEC × 2·VEC, the tile 32·VEC square."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def tile(dtype):
    """(BM, BN, BK) of the GEMM kernel for dtype: 128×128×8 for float32 (an 8×8 register block: 64
    accumulators, under 128 registers with the fragments and the prefetched vectors, so two blocks of 8
    warps share an SM), 64×64×8 for float64 (4×4: 32 registers of accumulators)."""
    v = vec_of(dtype)
    return 32 * v, 32 * v, BK


@functools.cache
def gemm_kernel(dtype, store, bias_mode=BIAS_NONE, act=ACT_NONE, accumulate=False, a_k_contig=True,
                b_n_contig=True, vec_a=True, vec_b=True, b_gather=None):
    """The GEMM kernel for one dtype, store layout, epilogue, operand layout and load width (see the
    module docstring). b_gather: None for a matrix B, else (fast, checked, setup) device functions of
    kernels/implicit_gemm.py that fetch B's elements (b_n_contig and vec_b must be False then).

    The options are compile-time constants: with them folded, the K step and the epilogue unroll and
    the TM×TN accumulators stay in registers."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, got {store!r}")
    if act not in FUSED_ACTS:
        raise ValueError(f"the GEMM epilogue fuses activation codes {FUSED_ACTS}, got {act}")
    if b_gather is not None and (b_n_contig or vec_b):
        raise ValueError("a gathered B is fetched along K (each thread owns one pixel), element by element")
    T = numba_type(dtype)
    ZERO = np.dtype(dtype).type(0)
    ISZ = np.dtype(dtype).itemsize
    apply = epilogue(dtype)
    NCHW = store == "nchw"
    VEC = vec_of(dtype)
    BM, BN, _ = tile(dtype)
    TM = TN = 2 * VEC
    HALF_M = BM // 2
    HALF_N = BN // 2
    LDA = BM + VEC                  # shared row strides: padded by one vector (16-byte rows stay aligned; the
    LDB = BN + VEC                  # transposing stores of a K-contiguous operand spread over the banks)
    A_STAGE = BK * LDA              # elements of one buffer
    B_STAGE = BK * LDB
    A_SMEM = 2 * A_STAGE            # two buffers (shared array sizes must be plain constants)
    B_SMEM = 2 * B_STAGE
    # Which element of a tile each thread fetches: a vector of VEC along the contiguous axis.
    A_ROW_VECS = BK // VEC if a_k_contig else BM // VEC        # vectors per tile row along the contiguous axis
    B_ROW_VECS = BN // VEC if b_n_contig else BK // VEC
    GATHER = b_gather is not None
    if GATHER:
        gather_fast, gather_checked, gather_setup = b_gather

    @cuda.jit(device=True, inline=True)
    def fetch_a(A, off, step_e, m, k, M, K, checked):
        """VEC elements of A from element offset off, along the contiguous axis (step_e apart in memory);
        (m, k) is the first one's position, for the bounds checks of an edge tile."""
        if checked:
            v0 = ZERO
            if m < M and k < K:
                v0 = ldg(A, off)
            if VEC == 2:
                v1 = ZERO
                if (m < M and k + 1 < K) if a_k_contig else (m + 1 < M and k < K):
                    v1 = ldg(A, off + step_e)
                return (v0, v1)
            v1 = ZERO
            v2 = ZERO
            v3 = ZERO
            if a_k_contig:
                if m < M:
                    if k + 1 < K:
                        v1 = ldg(A, off + step_e)
                    if k + 2 < K:
                        v2 = ldg(A, off + 2 * step_e)
                    if k + 3 < K:
                        v3 = ldg(A, off + 3 * step_e)
            elif k < K:
                if m + 1 < M:
                    v1 = ldg(A, off + step_e)
                if m + 2 < M:
                    v2 = ldg(A, off + 2 * step_e)
                if m + 3 < M:
                    v3 = ldg(A, off + 3 * step_e)
            return (v0, v1, v2, v3)
        if vec_a:
            return ldg_vec(A, off)
        if VEC == 2:
            return (ldg(A, off), ldg(A, off + step_e))
        return (ldg(A, off), ldg(A, off + step_e), ldg(A, off + 2 * step_e), ldg(A, off + 3 * step_e))

    @cuda.jit(device=True, inline=True)
    def fetch_b(B, off, step_e, k, n, K, N, checked):
        if checked:
            v0 = ZERO
            if k < K and n < N:
                v0 = ldg(B, off)
            if VEC == 2:
                v1 = ZERO
                if (k < K and n + 1 < N) if b_n_contig else (k + 1 < K and n < N):
                    v1 = ldg(B, off + step_e)
                return (v0, v1)
            v1 = ZERO
            v2 = ZERO
            v3 = ZERO
            if b_n_contig:
                if k < K:
                    if n + 1 < N:
                        v1 = ldg(B, off + step_e)
                    if n + 2 < N:
                        v2 = ldg(B, off + 2 * step_e)
                    if n + 3 < N:
                        v3 = ldg(B, off + 3 * step_e)
            elif n < N:
                if k + 1 < K:
                    v1 = ldg(B, off + step_e)
                if k + 2 < K:
                    v2 = ldg(B, off + 2 * step_e)
                if k + 3 < K:
                    v3 = ldg(B, off + 3 * step_e)
            return (v0, v1, v2, v3)
        if vec_b:
            return ldg_vec(B, off)
        if VEC == 2:
            return (ldg(B, off), ldg(B, off + step_e))
        return (ldg(B, off), ldg(B, off + step_e), ldg(B, off + 2 * step_e), ldg(B, off + 3 * step_e))

    @cuda.jit(device=True, inline=True)
    def put_a(As, base, r, c, v):
        """Store a fetched A vector (first element at m = r, k = c of the tile) into As[k, m] at `base`."""
        if a_k_contig:              # v runs along k: a column of As
            for j in range(VEC):
                As[base + (c + uint64(j)) * uint64(LDA) + r] = v[j]
        else:                       # v runs along m: a row segment (one STS.128)
            for j in range(VEC):
                As[base + c * uint64(LDA) + r + uint64(j)] = v[j]

    @cuda.jit(device=True, inline=True)
    def put_b(Bs, base, r, c, v):
        """Store a fetched B vector (first element at k = r, n = c of the tile) into Bs[k, n] at `base`."""
        if b_n_contig:              # v runs along n: a row segment of Bs[k, n]
            for j in range(VEC):
                Bs[base + r * uint64(LDB) + c + uint64(j)] = v[j]
        else:                       # v runs along k: a column
            for j in range(VEC):
                Bs[base + (r + uint64(j)) * uint64(LDB) + c] = v[j]

    @cuda.jit(device=True, inline=True)
    def multiply(As, Bs, abase, bbase, kk, acc, fa, fb):
        """One k of the step: fragments from shared memory (16-byte loads), TM×TN FMAs."""
        a0 = abase + uint64(kk * LDA)
        b0 = bbase + uint64(kk * LDB)
        for i in range(VEC):
            fa[i] = As[a0 + uint64(i)]
            fa[VEC + i] = As[a0 + uint64(HALF_M + i)]
        for j in range(VEC):
            fb[j] = Bs[b0 + uint64(j)]
            fb[VEC + j] = Bs[b0 + uint64(HALF_N + j)]
        for i in range(TM):
            for j in range(TN):
                acc[i, j] += fa[i] * fb[j]

    @cuda.jit(device=True, inline=True)
    def multiply_step(As, Bs, abase, bbase, acc, fa, fb):
        """The BK = 8 k's of a step, unrolled by hand (NVVM leaves a loop around this body rolled)."""
        multiply(As, Bs, abase, bbase, 0, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 1, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 2, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 3, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 4, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 5, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 6, acc, fa, fb)
        multiply(As, Bs, abase, bbase, 7, acc, fa, fb)

    @cuda.jit(**JIT_OPTIONS)
    def gemm(A, B, C, bias,                   # A (ga, M, K), B (gb, K, N) or x (implicit), C by `store`, bias
             M, N, K,                         # the product's extents (per batch)
             n_tiles, g0,                     # tiles along N; the first product of this launch
             img0, pix0,                      # "nchw": first image and first pixel of this chunk
             alpha,                           # the activation's parameter
             conv, ktab):                     # implicit GEMM's geometry and (c, r·dh, s·dw) table (else unused)
        As = cuda.shared.array(A_SMEM, dtype=T, alignment=SHARED_ALIGN)
        Bs = cuda.shared.array(B_SMEM, dtype=T, alignment=SHARED_ALIGN)
        acc = cuda.local.array((TM, TN), dtype=T)
        fa = cuda.local.array(TM, dtype=T)
        fb = cuda.local.array(TN, dtype=T)
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = ZERO

        tid = cuda.threadIdx.x
        tx = uint64(tid % THREADS_X)
        ty = uint64(tid // THREADS_X)
        tile_id = cuda.blockIdx.x
        mt = tile_id // n_tiles
        nt = tile_id - mt * n_tiles
        m0 = int64(mt) * BM
        n0 = int64(nt) * BN
        g = g0 + int64(cuda.blockIdx.z)
        groups = A.shape[0]

        # element strides (the arrays' byte strides are multiples of the itemsize)
        isz = ISZ
        sa_g = A.strides[0] // isz if A.shape[0] > 1 else 0
        sa_m = A.strides[1] // isz
        sa_k = A.strides[2] // isz
        a_base = (g % A.shape[0]) * sa_g
        # this thread's element of the A tile (a vector along the contiguous axis)
        if a_k_contig:
            a_r = uint64(tid // A_ROW_VECS)                  # m within the tile
            a_c = uint64(tid % A_ROW_VECS) * uint64(VEC)     # k within the step
            a_vstep = sa_k
        else:
            a_c = uint64(tid // A_ROW_VECS)                  # k
            a_r = uint64(tid % A_ROW_VECS) * uint64(VEC)     # m
            a_vstep = sa_m
        a_m = m0 + int64(a_r)
        a_off = a_base + a_m * sa_m + int64(a_c) * sa_k
        a_kstep = BK * sa_k

        if b_n_contig:
            b_r = uint64(tid // B_ROW_VECS)                  # k
            b_c = uint64(tid % B_ROW_VECS) * uint64(VEC)     # n
        else:
            b_c = uint64(tid // B_ROW_VECS)                  # n
            b_r = uint64(tid % B_ROW_VECS) * uint64(VEC)     # k
        b_n = n0 + int64(b_c)
        if GATHER:
            b_state = gather_setup(B, g, groups, img0, pix0, b_n, conv)
            b_off = int64(0)
            b_vstep = int64(1)
            b_kstep = int64(BK)
        else:
            sb_g = B.strides[0] // isz if B.shape[0] > 1 else 0
            sb_k = B.strides[1] // isz
            sb_n = B.strides[2] // isz
            b_vstep = sb_n if b_n_contig else sb_k
            b_off = (g % B.shape[0]) * sb_g + int64(b_r) * sb_k + b_n * sb_n
            b_kstep = BK * sb_k

        abase_t = ty * uint64(VEC)                  # this thread's fragment columns within a row of As / Bs
        bbase_t = tx * uint64(VEC)

        interior = m0 + BM <= M and n0 + BN <= N and K >= BK
        if interior:
            # the tile is inside M×N: whole BK steps without bounds checks, the next one prefetched
            full = K // BK
            va = fetch_a(A, a_off, a_vstep, a_m, int64(a_c), M, K, False)
            if GATHER:
                vb = gather_fast(B, ktab, b_state, int64(b_r), conv)
            else:
                vb = fetch_b(B, b_off, b_vstep, int64(b_r), b_n, K, N, False)
            put_a(As, uint64(0), a_r, a_c, va)
            put_b(Bs, uint64(0), b_r, b_c, vb)
            cuda.syncthreads()  # step 0's tiles are in shared memory before anyone multiplies them
            for step in range(full):
                buf = uint64(step & 1)
                # fetch the next step into registers while this one is multiplied; the last step fetches
                # its own slices again (no branch: a conditional fetch is sunk below the multiply by NVVM,
                # which then waits for the loads instead of hiding them)
                more = step + 1 < full
                if more:
                    a_off += a_kstep
                va = fetch_a(A, a_off, a_vstep, a_m, int64(a_c), M, K, False)
                if not GATHER:
                    if more:
                        b_off += b_kstep
                    vb = fetch_b(B, b_off, b_vstep, int64(b_r), b_n, K, N, False)
                multiply_step(As, Bs, buf * uint64(A_STAGE) + abase_t, buf * uint64(B_STAGE) + bbase_t, acc, fa,
                              fb)
                if GATHER:      # gathered after the multiply: its address work would not fit in registers
                    #             beside the fragments; the other warps of the SM hide its latency
                    vb = gather_fast(B, ktab, b_state, int64(b_r) + (step + 1 if more else step) * BK, conv)
                # into the other buffer: its last readers finished before the previous sync (after the last
                # step nobody reads it until the remainder step rewrites it after the sync below)
                put_a(As, (buf ^ uint64(1)) * uint64(A_STAGE), a_r, a_c, va)
                put_b(Bs, (buf ^ uint64(1)) * uint64(B_STAGE), b_r, b_c, vb)
                cuda.syncthreads()  # the next step's tiles are written, and this step's reads are done
            rest = K - full * BK
            if rest > 0:        # K remainder: one checked step in the next buffer
                buf = uint64(full & 1)
                k0 = full * BK
                a_off += a_kstep
                va = fetch_a(A, a_off, a_vstep, a_m, k0 + int64(a_c), M, K, True)
                if GATHER:
                    vb = gather_checked(B, ktab, b_state, k0 + int64(b_r), b_n, K, N, conv)
                else:
                    b_off += b_kstep
                    vb = fetch_b(B, b_off, b_vstep, k0 + int64(b_r), b_n, K, N, True)
                put_a(As, buf * uint64(A_STAGE), a_r, a_c, va)
                put_b(Bs, buf * uint64(B_STAGE), b_r, b_c, vb)
                cuda.syncthreads()  # the remainder's tiles are written before anyone multiplies them
                multiply_step(As, Bs, buf * uint64(A_STAGE) + abase_t, buf * uint64(B_STAGE) + bbase_t, acc, fa,
                              fb)
        else:
            # an edge tile: every element checked, one buffer per step in turn
            steps = (K + BK - 1) // BK
            for step in range(steps):
                buf = uint64(step & 1)
                k0 = int64(step) * BK
                va = fetch_a(A, a_off, a_vstep, a_m, k0 + int64(a_c), M, K, True)
                if GATHER:
                    vb = gather_checked(B, ktab, b_state, k0 + int64(b_r), b_n, K, N, conv)
                else:
                    vb = fetch_b(B, b_off, b_vstep, k0 + int64(b_r), b_n, K, N, True)
                    b_off += b_kstep
                a_off += a_kstep
                put_a(As, buf * uint64(A_STAGE), a_r, a_c, va)
                put_b(Bs, buf * uint64(B_STAGE), b_r, b_c, vb)
                cuda.syncthreads()  # this step's tiles are written (the buffer's last readers passed the
                #                     previous step's sync) before anyone multiplies them
                multiply_step(As, Bs, buf * uint64(A_STAGE) + abase_t, buf * uint64(B_STAGE) + bbase_t, acc, fa,
                              fb)

        # epilogue: bias, activation, store (or add) each element the thread owns
        sc_m = C.strides[1] // ISZ
        sc_n = C.strides[2] // ISZ
        if NCHW:
            ch0 = (g % groups) * M
            c_base = (img0 + g // groups) * (C.strides[0] // ISZ) + ch0 * sc_m + pix0 * sc_n
        else:
            ch0 = int64(0)
            c_base = g * (C.strides[0] // ISZ)
        for j in range(TN):
            n = n0 + int64(tx * uint64(VEC) + uint64((j // VEC) * HALF_N + j % VEC))
            if n < N:
                col = c_base + n * sc_n
                for i in range(TM):
                    m = m0 + int64(ty * uint64(VEC) + uint64((i // VEC) * HALF_M + i % VEC))
                    if m < M:
                        v = acc[i, j]
                        if bias_mode == BIAS_ROW:
                            v += bias[ch0 + m]
                        elif bias_mode == BIAS_COL:
                            v += bias[n]
                        off = col + m * sc_m
                        if accumulate:
                            v += ldg(C, off)
                        stg(C, off, apply(v, act, alpha))

    return gemm


def contiguous_axis_is_last(a) -> bool:
    """Is the last axis of a 3-D (batch, rows, cols) operand the one its tile loads should walk?"""
    _, rows, cols = a.shape
    _, s_rows, s_cols = a.strides
    if cols == 1 or rows == 1:
        return rows == 1
    return abs(s_cols) <= abs(s_rows)


def _data_ptr(a) -> int:
    sim = getattr(a, "_ary", None)
    if sim is not None:
        return sim.__array_interface__["data"][0]
    return a.device_ctypes_pointer.value or 0


def vector_ok(a, contiguous_axis: int, itemsize: int) -> bool:
    """Can a 3-D operand be read with 16-byte vectors along `contiguous_axis` (1 or 2)? Its elements
    there must be adjacent and every vector's address a multiple of 16: the data pointer and the other
    axes' strides (of axes longer than 1) multiples of 16 bytes."""
    strides, shape = a.strides, a.shape
    if strides[contiguous_axis] != itemsize and shape[contiguous_axis] > 1:
        return False
    for ax in range(3):
        if ax != contiguous_axis and shape[ax] > 1 and strides[ax] % VECTOR_BYTES:
            return False
    return _data_ptr(a) % VECTOR_BYTES == 0


_NO_CONV = (0,) * 9


def launch_gemm(dtype, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode=BIAS_NONE, act=ACT_NONE,
                alpha=0.0, accumulate=False, b_gather=None, conv=None):
    """A launch closure for fixed extents, layouts and epilogue: launch(A, B, C, bias, img0, pix0, stream,
    ktab=None). b_gather and conv (its 9-tuple of geometry) replace the matrix B operand (implicit GEMM,
    which also passes its table as ktab). Each call picks the vector or scalar build per operand from
    the call's arrays (alignment). Any extents work: an empty product launches nothing (K = 0 writes
    the epilogue of zero)."""
    # Launch plan: grid (m_tiles · n_tiles, 1, products per launch) of 256-thread blocks, one BM×BN tile of C
    # per block (tile index n-fastest, so consecutive blocks share A's rows in L2); each thread keeps its
    # TM×TN block of C in registers over the whole K loop. grid.z is at most 65,535: a larger batch is
    # issued as several launches, each told its first product g0.
    dtype = np.dtype(dtype)
    BM, BN, _ = tile(dtype)
    m_tiles, n_tiles = -(-M // BM), -(-N // BN)
    if m_tiles * n_tiles > MAX_GRID_X:
        raise ValueError(f"a {M}×{N} product needs {m_tiles * n_tiles} tiles, over CUDA's grid.x limit")
    grid_x = m_tiles * n_tiles
    chunks = [(g0, min(MAX_GRID_Y, batch - g0)) for g0 in range(0, batch, MAX_GRID_Y)] if grid_x else []
    conv = tuple(int(v) for v in conv) if conv is not None else _NO_CONV
    alpha = dtype.type(alpha)
    isz = dtype.itemsize
    a_axis = 2 if a_k_contig else 1
    b_axis = 2 if b_n_contig else 1
    gather = b_gather is not None
    kernels = {}

    def kernel_for(va, vb):
        k = kernels.get((va, vb))
        if k is None:
            k = kernels[(va, vb)] = gemm_kernel(dtype, store, bias_mode, act, accumulate, a_k_contig, b_n_contig,
                                                va, vb, b_gather)
        return k

    def launch(A, B, C, bias, img0, pix0, stream, ktab=None):
        kernel = kernel_for(vector_ok(A, a_axis, isz), (not gather) and vector_ok(B, b_axis, isz))
        tab = ktab if ktab is not None else bias
        for g0, count in chunks:
            kernel[(grid_x, 1, count), THREADS, stream](A, B, C, bias, M, N, K, n_tiles, g0, img0, pix0, alpha, conv,
                                                     tab)

    launch.grids = [(grid_x, 1, count) for _, count in chunks]       # the launch plan, for tests and reports
    return launch
