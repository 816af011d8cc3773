"""Tensor-core GEMM: C[g] = epilogue(A[g] @ B[g]) on `mma.sync` (kernels/mma.py) with float32 accumulation,
for float16 and bfloat16 operands (m16n8k16) and for float32 operands rounded to TF32 (m16n8k8, when
the caller allows TF32). Output in the operands' dtype, or float32 (out_f32).

A block of 256 threads (8 warps, 2 along M × 4 along N) computes a 128×128 tile of C; each warp a
64×32 tile as 4 × 4 mma tiles of 16×8, 64 float32 accumulators per thread. Each K step stages 128 rows
× 16 words of A and of B in shared memory (32 half elements or 16 TF32 ones per row: a word is two
halves or one TF32), double-buffered with the next step fetched into registers while this one is
multiplied, exactly as kernels/gemm.py does for the CUDA cores. Fragments come from shared memory with
`ldmatrix` (x4: four 8×8 matrices per instruction; its `.trans` form when a 16-bit operand's tile is
stored along M or N, as a contiguous-along-M A or contiguous-along-N B is — the usual B, im2col's
columns). TF32 tiles are always stored along K (the transpose of 32-bit elements is done by the
stores), as `ldmatrix.trans` only moves 16-bit elements. Rows are padded by 4 words, so ldmatrix's 8
row reads hit distinct banks.

Operands and results move as raw words: 16-bit arrays are passed as uint16 views (float16 and bfloat16
alike; `kind` says how the mma reads them), widened to float32 only in the epilogue (kernels/_half.py).
Global loads are 16-byte vectors (8 halves, 4 floats) when the call's operand allows (see
gemm.vector_ok), else elements along the contiguous axis. Tiles inside M×N run a check-free K loop
plus a checked remainder step; edge tiles a checked loop (as kernels/gemm.py). Stores and batches as
kernels/gemm.py ("matrix", "nchw"), with its grid (tiles in x, products in y, launches of ≤ 65,535).

Implicit GEMM (kernels/implicit_gemm.py) replaces B by x gathered through a tap table: each thread
owns one pixel of the tile and gathers 2 vectors of consecutive taps per step (8 halves or 4 TF32 in 4
words, stored along K). The gather's address work needs the registers a prefetch would hold, so that
build fetches a step's tiles after its multiply, B one vector at a time, and leaves the latency to the
SM's other warps. ldmatrix rows are addressed from two per-thread offsets plus compile-time constants.
Its TF32 build has no spill on sm_90 but one register (4 B, outside the K loop) on sm_80, so gpu_conv2d
does not dispatch it yet (float32 implicit GEMM stays on the CUDA cores).
"""

import functools

import numpy as np
from numba import cuda, float32, int32, int64, uint32, uint64

from ._common import ACT_NONE, epilogue
from ._half import from_f32, to_f32
from ._vector import SHARED_ALIGN, ldg, ldg_vec, ldg_words, stg
from .gemm import BIAS_COL, BIAS_NONE, BIAS_ROW, FUSED_ACTS, JIT_OPTIONS, MAX_GRID_X, MAX_GRID_Y, STORES, THREADS
from .mma import ldsm_x4, ldsm_x4_t, mma_bf16, mma_f16, mma_tf32, tf32

KINDS = ("f16", "bf16", "tf32")
BM = 128                    # block tile (M × N) and, in words, its K step
BN = 128
KW = 16                     # words of K per step: 32 halves or 16 TF32 values
WARP_M = 64                 # warp tile: 4 mma tiles of 16 rows × 4 of 8 columns
WARP_N = 32
MT = WARP_M // 16
NT = WARP_N // 8
PAD = 4                     # words of padding per shared row: ldmatrix's 8 rows land on distinct banks
LDK = KW + PAD              # words per row of a tile stored along K (row = one m or one n)
LDMN = BM // 2 + PAD        # words per row of a 16-bit tile stored along M or N (row = one k)
STAGE = max(BM * LDK, 2 * KW * LDMN)   # words of one buffer of one operand
SMEM_WORDS = 2 * STAGE                  # two buffers (a plain constant, for cuda.shared.array)
ROWS_K, ACROSS_K, ROWS_MN = 0, 1, 2     # how a fetched vector is stored (see put)


def elements_per_word(kind) -> int:
    return 1 if kind == "tf32" else 2


def k_step(kind) -> int:
    """Elements of K per step: 32 (16-bit) or 16 (TF32)."""
    return KW * elements_per_word(kind)


@functools.cache
def gemm_tc_kernel(kind, store, bias_mode=BIAS_NONE, act=ACT_NONE, accumulate=False, a_k_contig=True,
                   b_n_contig=True, vec_a=True, vec_b=True, out_f32=False, b_gather=None):
    """The tensor-core GEMM for one kind ("f16", "bf16", "tf32"), store, epilogue, operand layout and
    load width (see the module docstring). out_f32: C is float32 for 16-bit operands too (read by
    `accumulate` and written without rounding: sums over several products rounded once, by the caller).
    b_gather: None for a matrix B, else implicit GEMM's (fast, checked, setup) device functions
    (kernels/implicit_gemm.py tc_gather_loader): B is the convolution input, each thread gathering the
    taps of one pixel along K (the tile stored along K, as for b_n_contig=False)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if b_gather is not None and (b_n_contig or vec_b):
        raise ValueError("a gathered B is fetched along K (each thread owns one pixel): b_n_contig=False, vec_b=False")
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, got {store!r}")
    if act not in FUSED_ACTS:
        raise ValueError(f"the GEMM epilogue fuses activation codes {FUSED_ACTS}, got {act}")
    HALF = kind != "tf32"
    GATHER = b_gather is not None
    if GATHER:
        gather_fast, gather_checked, gather_setup = b_gather
    C16 = HALF and not out_f32          # C holds 16-bit bits (else float32)
    FENCED = accumulate and out_f32
    EPW = elements_per_word(kind)
    BK = KW * EPW                       # elements of K per step
    VE = 4 * EPW                        # elements per 16-byte vector
    apply = epilogue(np.float32)
    NCHW = store == "nchw"
    ZW = uint32(0)
    # Tile storage in shared memory: "along K" (rows m / n of LDK words) or, for 16-bit operands whose
    # global layout runs along M (A) / N (B), "along M/N" (rows k of LDMN words).
    A_ALONG_K = a_k_contig or not HALF
    B_ALONG_K = (not b_n_contig) or not HALF
    A_PUT = ROWS_K if a_k_contig else (ACROSS_K if not HALF else ROWS_MN)
    B_PUT = ROWS_K if not b_n_contig else (ACROSS_K if not HALF else ROWS_MN)

    if kind == "f16":
        mma = mma_f16
    elif kind == "bf16":
        mma = mma_bf16
    else:
        mma = mma_tf32

    @cuda.jit(device=True, inline=True)
    def fetch(X, off, step_e, r, c, R, Cn, r_step, c_step, checked, vec):
        """One 16-byte vector of an operand as 4 words: VE elements from element offset off, step_e apart
        in memory; element j is at (r + j·r_step, c + j·c_step) of the operand's (rows, cols) = (R, Cn),
        for the bounds checks of an edge tile. TF32 values are rounded here (cvt.rna)."""
        if not checked and vec:
            if HALF:
                return ldg_words(X, off)
            f = ldg_vec(X, off)
            return (tf32(f[0]), tf32(f[1]), tf32(f[2]), tf32(f[3]))
        t = cuda.local.array(4, dtype=uint32)
        if HALF:
            for j in range(4):
                lo = uint32(0)
                hi = uint32(0)
                if not checked or (r + 2 * j * r_step < R and c + 2 * j * c_step < Cn):
                    lo = uint32(ldg(X, off + 2 * j * step_e))
                if not checked or (r + (2 * j + 1) * r_step < R and c + (2 * j + 1) * c_step < Cn):
                    hi = uint32(ldg(X, off + (2 * j + 1) * step_e))
                t[j] = lo | (hi << uint32(16))
            return (t[0], t[1], t[2], t[3])
        for j in range(4):
            v = ZW
            if not checked or (r + j * r_step < R and c + j * c_step < Cn):
                v = tf32(ldg(X, off + j * step_e))
            t[j] = v
        return (t[0], t[1], t[2], t[3])

    @cuda.jit(device=True, inline=True)
    def put(S, base, mode, r, c, w):
        """Store a vector's 4 words in a tile buffer. mode ROWS_K: rows are m (or n) of LDK words, the
        words c .. c + 3 of row r (one STS.128); ACROSS_K: a TF32 vector running along M (N), word c of
        rows r .. r + 3 (the transpose); ROWS_MN: rows are k of LDMN words, words c .. c + 3 of row r."""
        if mode == ROWS_K:
            for j in range(4):
                S[base + uint64(r) * uint64(LDK) + uint64(c + j)] = w[j]
        elif mode == ACROSS_K:
            for j in range(4):
                S[base + uint64(r + j) * uint64(LDK) + uint64(c)] = w[j]
        else:
            for j in range(4):
                S[base + uint64(r) * uint64(LDMN) + uint64(c + j)] = w[j]

    @cuda.jit(device=True, inline=True)
    def ld_bases(tid):
        """The thread's word offsets, in a tile buffer, of the rows it gives ldmatrix for the first (mt, kc)
        fragment of A and the first (pair of nt, kc) of B; every other fragment is at a compile-time
        constant from them (so the loop keeps two offsets live, and the constants go into LDSM's
        immediate), computed once per thread."""
        lane = tid % 32
        wm = (tid // 32) // (BN // WARP_N)
        wn = (tid // 32) % (BN // WARP_N)
        i = lane // 8
        r8 = lane % 8
        if A_ALONG_K:
            a = (wm * WARP_M + lane % 16) * LDK + (lane // 16) * 4
        else:
            a = ((i // 2) * 8 + r8) * LDMN + (wm * WARP_M + (i % 2) * 8) // 2
        if B_ALONG_K:
            b = (wn * WARP_N + (i // 2) * 8 + r8) * LDK + (i % 2) * 4
        else:
            b = ((i % 2) * 8 + r8) * LDMN + (wn * WARP_N + (i // 2) * 8) // 2
        return uint64(a), uint64(b)

    @cuda.jit(device=True, inline=True)
    def multiply(As, Bs, abuf, bbuf, kc, ld, acc):
        """One K chunk (16 halves or 8 TF32: 8 words) of the step: fragments by ldmatrix, 4 × 4 mma."""
        b0 = cuda.local.array(NT, dtype=uint32)
        b1 = cuda.local.array(NT, dtype=uint32)
        for p in range(NT // 2):                 # two n8 tiles per ldmatrix.x4
            nt = 2 * p
            if B_ALONG_K:
                f = ldsm_x4(Bs, bbuf + ld[1] + uint64(nt * 8 * LDK + kc * 8))
            else:
                f = ldsm_x4_t(Bs, bbuf + ld[1] + uint64(kc * 16 * LDMN + nt * 4))
            b0[nt] = f[0]
            b1[nt] = f[1]
            b0[nt + 1] = f[2]
            b1[nt + 1] = f[3]
        for mt in range(MT):
            if A_ALONG_K:
                a = ldsm_x4(As, abuf + ld[0] + uint64(mt * 16 * LDK + kc * 8))
            else:
                a = ldsm_x4_t(As, abuf + ld[0] + uint64(kc * 16 * LDMN + mt * 8))
            for nt in range(NT):
                d = mma(a[0], a[1], a[2], a[3], b0[nt], b1[nt], acc[mt, nt, 0], acc[mt, nt, 1], acc[mt, nt, 2],
                        acc[mt, nt, 3])
                acc[mt, nt, 0] = d[0]
                acc[mt, nt, 1] = d[1]
                acc[mt, nt, 2] = d[2]
                acc[mt, nt, 3] = d[3]

    @cuda.jit(device=True, inline=True)
    def multiply_step(As, Bs, abuf, bbuf, ld, acc):
        multiply(As, Bs, abuf, bbuf, 0, ld, acc)
        multiply(As, Bs, abuf, bbuf, 1, ld, acc)

    @cuda.jit(device=True, inline=True)
    def geo_a(tid, h):
        """Vector h (0, 1) of the thread's share of the A tile (v = tid + 256·h of 512): the (m, k) of its
        first element in the tile, and the (shared row, word) it is stored at. Recomputed where used (a
        few integer operations on tid) rather than kept in registers across the K loop."""
        v = tid + h * THREADS
        if a_k_contig:                                  # 4 vectors per tile row m
            m = v // 4
            k = (v % 4) * VE
            return m, k, m, (v % 4) * 4
        k = v // (BM // VE)                             # BM / VE vectors per tile row k
        m = (v % (BM // VE)) * VE
        if HALF:
            return m, k, k, m // 2
        return m, k, m, k                               # a transposing TF32 store: rows m .. m + 3, word k

    @cuda.jit(device=True, inline=True)
    def geo_b(tid, h):
        """As geo_a for B: (k, n) of the first element, (shared row, word). A gathered B: the thread's one
        pixel n = tid % BN (a warp's lanes, neighbouring pixels), vectors 2·(tid // BN) + h along K."""
        if GATHER:
            j = (tid // BN) * 2 + h
            return j * VE, tid % BN, tid % BN, j * 4
        v = tid + h * THREADS
        if b_n_contig:
            k = v // (BN // VE)
            n = (v % (BN // VE)) * VE
            if HALF:
                return k, n, k, n // 2
            return k, n, n, k
        n = v // 4                                      # 4 vectors per tile row n
        k = (v % 4) * VE
        return k, n, n, (v % 4) * 4

    @cuda.jit(device=True, inline=True)
    def fetch_b(B, offs, steps_e, ktab, st, k0, n0, K, N, tid, h, checked):
        """The thread's vector h of B for the step at k0 (gathered, or fetched from the matrix)."""
        bk, bn, _, _ = geo_b(tid, h)
        if GATHER:
            if checked:
                return gather_checked(B, ktab, st, k0 + bk, n0 + bn, K, N)
            return gather_fast(B, ktab, st, k0 + bk)
        b_rs, b_cs = (0, 1) if b_n_contig else (1, 0)
        return fetch(B, offs[2 + h], steps_e[1], k0 + bk, n0 + bn, K, N, b_rs, b_cs, checked, vec_b)

    @cuda.jit(device=True, inline=True)
    def fetch_a2(A, offs, steps_e, m0, M, K, k0, tid):
        """The thread's two vectors of A for the (check-free) step at k0."""
        a_rs, a_cs = (0, 1) if a_k_contig else (1, 0)      # (row, col) steps of a vector's elements
        am0, ak0, _, _ = geo_a(tid, 0)
        am1, ak1, _, _ = geo_a(tid, 1)
        return (fetch(A, offs[0], steps_e[0], m0 + am0, k0 + ak0, M, K, a_rs, a_cs, False, vec_a),
                fetch(A, offs[1], steps_e[0], m0 + am1, k0 + ak1, M, K, a_rs, a_cs, False, vec_a))

    @cuda.jit(device=True, inline=True)
    def fetch_b2(B, offs, steps_e, ktab, st, n0, K, N, k0, tid):
        """... and of B."""
        return (fetch_b(B, offs, steps_e, ktab, st, k0, n0, K, N, tid, 0, False),
                fetch_b(B, offs, steps_e, ktab, st, k0, n0, K, N, tid, 1, False))

    @cuda.jit(device=True, inline=True)
    def put_a2(As, base, tid, va):
        _, _, ar0, ac0 = geo_a(tid, 0)
        _, _, ar1, ac1 = geo_a(tid, 1)
        put(As, base, A_PUT, ar0, ac0, va[0])
        put(As, base, A_PUT, ar1, ac1, va[1])

    @cuda.jit(device=True, inline=True)
    def put_b(Bs, base, tid, h, w):
        _, _, br, bc = geo_b(tid, h)
        put(Bs, base, B_PUT, br, bc, w)

    @cuda.jit(device=True, inline=True)
    def put_all(As, Bs, base, tid, va, vb):
        put_a2(As, base, tid, va)
        put_b(Bs, base, tid, 0, vb[0])
        put_b(Bs, base, tid, 1, vb[1])

    @cuda.jit(device=True, inline=True)
    def put_gathered(As, Bs, base, tid, A, B, offs, steps_e, ktab, st, m0, M, k0, n0, K, N):
        """Fetch and store the step's A vectors and its gathered B vectors, B one vector at a time (check-free)."""
        va = fetch_a2(A, offs, steps_e, m0, M, K, k0, tid)
        vb = fetch_b(B, offs, steps_e, ktab, st, k0, n0, K, N, tid, 0, False)
        put_a2(As, base, tid, va)
        put_b(Bs, base, tid, 0, vb)
        cuda.threadfence_block()  # a compiler fence: the second vector's loads are not hoisted above the
        #                           first's store (both at once would not fit in registers)
        put_b(Bs, base, tid, 1, fetch_b(B, offs, steps_e, ktab, st, k0, n0, K, N, tid, 1, False))

    @cuda.jit(device=True, inline=True)
    def k_loop(A, B, As, Bs, acc, offs, steps_e, ktab, st, m0, n0, M, N, K, k0, steps, tid):
        """`steps` K steps from k0 (offs at k0, left at the last step): the first fetched and stored, then
        each multiplied while the next is fetched into registers (double-buffered). The fetch is not
        conditional — the last step fetches itself again — because NVVM sinks a conditional fetch below
        the multiply, which then waits for the loads instead of hiding them. With a gathered B the step's
        tiles are fetched after the multiply, B one vector at a time (its table reads, addresses and taps
        would not fit in registers beside the fragments and accumulators; the SM's other warps hide the
        latency)."""
        ld = ld_bases(tid)
        if GATHER:
            put_gathered(As, Bs, uint64(0), tid, A, B, offs, steps_e, ktab, st, m0, M, int32(k0), n0, K, N)
        else:
            put_all(As, Bs, uint64(0), tid, fetch_a2(A, offs, steps_e, m0, M, K, k0, tid),
                    fetch_b2(B, offs, steps_e, ktab, st, n0, K, N, k0, tid))
        cuda.syncthreads()  # the first step's tiles are in shared memory before anyone reads them
        n = int32(steps)    # a 32-bit counter (K < 2**31 steps): one register less than int64
        for step in range(n):
            buf = uint64(step & 1) * uint64(STAGE)
            nxt = uint64((step + 1) & 1) * uint64(STAGE)
            more = step + 1 < n
            if more:
                for h in range(2):
                    offs[h] += steps_e[2]
                    offs[2 + h] += steps_e[3]
            kn = k0 + int64(step + 1 if more else step) * BK
            if not GATHER:
                va = fetch_a2(A, offs, steps_e, m0, M, K, kn, tid)
                vb = fetch_b2(B, offs, steps_e, ktab, st, n0, K, N, kn, tid)
            multiply_step(As, Bs, buf, buf, ld, acc)
            # into the other buffer: its last readers passed the previous sync
            if GATHER:
                # (a 32-bit tap index: the launcher checks K < 2**31; one register less across the loop)
                put_gathered(As, Bs, nxt, tid, A, B, offs, steps_e, ktab, st, m0, M, int32(kn), n0, K, N)
            else:
                put_all(As, Bs, nxt, tid, va, vb)
            cuda.syncthreads()  # the next step's tiles are written, and this step's reads are done

    @cuda.jit(device=True, inline=True)
    def k_loop_checked(A, B, As, Bs, acc, offs, steps_e, ktab, st, m0, n0, M, N, K, k0, steps, tid):
        """`steps` K steps from k0 with every element checked (edge tiles, remainders): fetched straight
        into shared memory (no prefetch: its registers would not fit beside the accumulators)."""
        a_rs, a_cs = (0, 1) if a_k_contig else (1, 0)      # (row, col) steps of a vector's elements
        ld = ld_bases(tid)
        for step in range(steps):
            buf = uint64(step & 1) * uint64(STAGE)
            kk = k0 + step * BK
            # one vector at a time into this buffer (its last readers, two steps ago, passed a sync since);
            # the syncs between keep ptxas from hoisting all 16 or 32 element loads at once, which would
            # not fit in registers beside the accumulators (edge tiles only)
            for h in range(2):
                am, ak, ar, ac = geo_a(tid, h)
                put(As, buf, A_PUT, ar, ac, fetch(A, offs[h], steps_e[0], m0 + am, kk + ak, M, K, a_rs, a_cs, True,
                                                  vec_a))
                cuda.syncthreads()  # (a compiler fence: see above)
                _, _, br, bc = geo_b(tid, h)
                put(Bs, buf, B_PUT, br, bc, fetch_b(B, offs, steps_e, ktab, st, kk, n0, K, N, tid, h, True))
                cuda.syncthreads()  # the step's tiles are written (after the last one) before anyone reads them
            multiply_step(As, Bs, buf, buf, ld, acc)
            for h in range(2):
                offs[h] += steps_e[2]
                offs[2 + h] += steps_e[3]

    @cuda.jit(device=True, inline=True)
    def load_bias(bias, off):
        if HALF:
            return to_f32(ldg(bias, off), kind)
        return ldg(bias, off)

    @cuda.jit(device=True, inline=True)
    def load_out(C, off):
        if C16:
            return to_f32(ldg(C, off), kind)
        return ldg(C, off)

    @cuda.jit(device=True, inline=True)
    def store_out(C, off, v):
        if C16:
            stg(C, off, from_f32(v, kind))
        else:
            stg(C, off, v)

    @cuda.jit(**JIT_OPTIONS)
    def gemm_tc(A, B, C, bias,              # A (ga, M, K), B (gb, K, N) or x (gathered), C by `store`; 16-bit data
                M, N, K, n_tiles, g0, img0, pix0, alpha,   # as uint16 views
                conv, ktab):                # implicit GEMM's geometry and tap table (else unused)
        As = cuda.shared.array(SMEM_WORDS, dtype=uint32, alignment=SHARED_ALIGN)
        Bs = cuda.shared.array(SMEM_WORDS, dtype=uint32, alignment=SHARED_ALIGN)
        acc = cuda.local.array((MT, NT, 4), dtype=float32)
        for mt in range(MT):
            for nt in range(NT):
                for r in range(4):
                    acc[mt, nt, r] = float32(0)
        tid = cuda.threadIdx.x
        # the tile's first row and column, zero-extended from 32 bits (the launcher checks M, N < 2**31):
        # their high words are known zeros, not registers kept to the epilogue
        tile_id = uint32(cuda.blockIdx.x)
        tiles_n = uint32(n_tiles)
        mt_ = uint32(tile_id // tiles_n)
        m0 = int64(uint32(mt_ * uint32(BM)))
        n0 = int64(uint32((tile_id - mt_ * tiles_n) * uint32(BN)))
        g = g0 + int64(cuda.blockIdx.z)
        groups = A.shape[0]
        isz = A.itemsize

        sa_g = A.strides[0] // isz if A.shape[0] > 1 else 0
        sa_m = A.strides[1] // isz
        sa_k = A.strides[2] // isz
        a_base = (g % A.shape[0]) * sa_g
        # element offsets of the two A and two B vectors (a gathered B: none; A's in 32 bits, as the
        # launcher checks: that build has no register to spare)
        offs = cuda.local.array(4, dtype=int32 if GATHER else int64)
        for h in range(2):
            ar, ac, _, _ = geo_a(tid, h)
            offs[h] = a_base + (m0 + ar) * sa_m + ac * sa_k
        if GATHER:      # B's offsets are the gather's: its state for the thread's pixel
            st = gather_setup(B, g, groups, img0, pix0, n0 + tid % BN, conv)
            sb_k = int64(0)
            b_vstep = int64(0)
            offs[2] = int64(0)
            offs[3] = int64(0)
        else:
            st = (int64(0), int32(0), int32(0), int64(0))
            sb_g = B.strides[0] // isz if B.shape[0] > 1 else 0
            sb_k = B.strides[1] // isz
            sb_n = B.strides[2] // isz
            b_base = (g % B.shape[0]) * sb_g
            for h in range(2):
                br, bc, _, _ = geo_b(tid, h)
                offs[2 + h] = b_base + br * sb_k + (n0 + bc) * sb_n
            b_vstep = sb_n if b_n_contig else sb_k
        steps_e = (sa_k if a_k_contig else sa_m, b_vstep, BK * sa_k, BK * sb_k)

        interior = m0 + BM <= M and n0 + BN <= N and K >= BK
        if interior:        # whole K steps without checks, then a checked remainder
            full = K // BK
            k_loop(A, B, As, Bs, acc, offs, steps_e, ktab, st, m0, n0, M, N, K, int64(0), full, tid)
            if K - full * BK > 0:
                for h in range(2):      # past the last whole step
                    offs[h] += steps_e[2]
                    offs[2 + h] += steps_e[3]
                cuda.syncthreads()  # every warp is done with the last step's buffer before it is rewritten
                k_loop_checked(A, B, As, Bs, acc, offs, steps_e, ktab, st, m0, n0, M, N, K, full * BK, 1, tid)
        else:               # an edge tile: every element checked
            k_loop_checked(A, B, As, Bs, acc, offs, steps_e, ktab, st, m0, n0, M, N, K, int64(0), (K + BK - 1) // BK,
                           tid)

        # epilogue: accumulator r of mma tile (mt, nt) is row g + 8·(r // 2), column 2t + r % 2
        isc = C.itemsize                # (A's itemsize may differ: a float32 C of 16-bit operands)
        sc_m = C.strides[1] // isc
        sc_n = C.strides[2] // isc
        if NCHW:
            ch0 = (g % groups) * M
            c_base = (img0 + g // groups) * (C.strides[0] // isc) + ch0 * sc_m + pix0 * sc_n
        else:
            ch0 = int64(0)
            c_base = g * (C.strides[0] // isc)
        lane = tid % 32                 # (computed here, not kept live across the K loop)
        wm = (tid // 32) // (BN // WARP_N)
        wn = (tid // 32) % (BN // WARP_N)
        gq = lane // 4
        tq = lane % 4
        for mt in range(MT):
            for nt in range(NT):
                for r in range(4):
                    m = m0 + wm * WARP_M + mt * 16 + gq + (r // 2) * 8
                    n = n0 + wn * WARP_N + nt * 8 + 2 * tq + r % 2
                    if m < M and n < N:
                        v = acc[mt, nt, r]
                        if bias_mode == BIAS_ROW:
                            v += load_bias(bias, ch0 + m)
                        elif bias_mode == BIAS_COL:
                            v += load_bias(bias, n)
                        off = c_base + m * sc_m + n * sc_n
                        if accumulate:
                            v += load_out(C, off)
                        store_out(C, off, apply(v, act, alpha))
                if FENCED:
                    # a fence per mma tile keeps the compiler from computing the addresses and reads of C for
                    # many tiles ahead of their stores (live 64-bit addresses: a spill on sm_80)
                    cuda.threadfence_block()

    return gemm_tc


def launch_gemm_tc(kind, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode=BIAS_NONE, act=ACT_NONE,
                   alpha=0.0, accumulate=False, out_f32=False, b_gather=None, conv=None):
    """A launch closure launch(A, B, C, bias, img0, pix0, stream, ktab=None) for fixed extents, layouts and
    epilogue; 16-bit operands, outputs and bias are passed as uint16 views (out_f32: C float32, see
    gemm_tc_kernel). b_gather and conv (its 9-tuple of geometry) replace the matrix B (implicit GEMM,
    which passes its tap table as ktab; b_n_contig must then be False). Each call picks the vector or
    element build per operand from the call's arrays."""
    # Launch plan: grid (m_tiles · n_tiles, 1, products per launch) of 256-thread blocks (8 warps), one 128×128
    # tile of C per block; products past 65,535 in further launches, each told its first product g0.
    from .gemm import _NO_CONV, vector_ok

    m_tiles, n_tiles = -(-M // BM), -(-N // BN)
    if max(M, N) >= 2**31:
        raise ValueError(f"the tensor-core GEMM needs M and N below 2**31, got {M}×{N}")
    if m_tiles * n_tiles > MAX_GRID_X:
        raise ValueError(f"a {M}×{N} product needs {m_tiles * n_tiles} tiles, over CUDA's grid.x limit")
    grid_x = m_tiles * n_tiles
    chunks = [(g0, min(MAX_GRID_Y, batch - g0)) for g0 in range(0, batch, MAX_GRID_Y)] if grid_x else []
    alpha = np.float32(alpha)
    isz = 4 if kind == "tf32" else 2
    a_axis = 2 if a_k_contig else 1
    b_axis = 2 if b_n_contig else 1
    gather = b_gather is not None
    conv = tuple(int(v) for v in conv) if conv is not None else _NO_CONV
    kernels = {}

    def launch(A, B, C, bias, img0, pix0, stream, ktab=None):
        key = (vector_ok(A, a_axis, isz), (not gather) and vector_ok(B, b_axis, isz))
        kernel = kernels.get(key)
        if kernel is None:
            kernel = kernels[key] = gemm_tc_kernel(kind, store, bias_mode, act, accumulate, a_k_contig, b_n_contig,
                                                   *key, out_f32=out_f32, b_gather=b_gather)
        tab = ktab if ktab is not None else bias
        for g0, count in chunks:
            kernel[(grid_x, 1, count), THREADS, stream](A, B, C, bias, M, N, K, n_tiles, g0, img0, pix0, alpha, conv,
                                                     tab)

    launch.grids = [(grid_x, 1, count) for _, count in chunks]
    return launch
