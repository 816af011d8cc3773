"""The tensor-core helpers' lane layouts (kernels/mma.py): in the simulator their Python twins run, and
they must reproduce the PTX ISA's per-lane fragments exactly — a layout or indexing bug here would make
every tensor-core product wrong. Checked against a plain matrix product, fragment by fragment."""

import numpy as np
import pytest
from numba import cuda

import gpuconv
from gpuconv.kernels import mma

pytestmark = pytest.mark.skipif(not gpuconv.SIMULATOR, reason="the twins are the simulator's; on a GPU the "
                                                              "tensor-core GEMM tests cover the instructions")

KINDS = {"f16": (np.float16, 16), "bf16": (None, 16), "tf32": (np.float32, 8)}


def operands(rng, kind):
    """A (16×K), B (K×8) exactly representable in the kind, as float32, plus their storage arrays."""
    k = KINDS[kind][1]
    A = rng.standard_normal((16, k)).astype(np.float32)
    B = rng.standard_normal((k, 8)).astype(np.float32)
    if kind == "f16":
        A, B = A.astype(np.float16), B.astype(np.float16)
        return A.astype(np.float32), B.astype(np.float32), A, B
    if kind == "bf16":   # round to bfloat16 (drop the low 16 bits) and keep the bits
        bits = [(M.view(np.uint32) >> 16).astype(np.uint16) for M in (A, B)]
        exact = [(b.astype(np.uint32) << 16).view(np.float32) for b in bits]
        return exact[0], exact[1], bits[0].view(np.float16), bits[1].view(np.float16)
    A = (A.view(np.uint32) & 0xFFFFE000).view(np.float32)     # TF32: 10 mantissa bits
    B = (B.view(np.uint32) & 0xFFFFE000).view(np.float32)
    return A, B, A, B


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_mma_twin_matches_a_matrix_product(rng, kind):
    A, B, As, Bs = operands(rng, kind)
    C = rng.standard_normal((16, 8)).astype(np.float32)
    a_regs, b_regs = mma.reference_fragments(kind, As, Bs)
    lanes = np.arange(32)
    g, t = lanes // 4, lanes % 4
    c_regs = np.stack([C[g, 2 * t], C[g, 2 * t + 1], C[g + 8, 2 * t], C[g + 8, 2 * t + 1]], axis=1)
    fn = {"f16": mma.mma_f16, "bf16": mma.mma_bf16, "tf32": mma.mma_tf32}[kind]

    @cuda.jit
    def kernel(a, b, c, d):
        lane = cuda.threadIdx.x
        r = fn(a[lane, 0], a[lane, 1], a[lane, 2], a[lane, 3], b[lane, 0], b[lane, 1], c[lane, 0], c[lane, 1],
               c[lane, 2], c[lane, 3])
        for i in range(4):
            d[lane, i] = r[i]

    d = np.zeros((32, 4), np.float32)
    kernel[1, 32](a_regs, b_regs, c_regs, d)
    D = np.zeros((16, 8))
    D[g, 2 * t], D[g, 2 * t + 1], D[g + 8, 2 * t], D[g + 8, 2 * t + 1] = d.T
    want = A.astype(np.float64) @ B.astype(np.float64) + C
    np.testing.assert_allclose(D, want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("trans", [False, True])
def test_ldmatrix_twin_lane_layout(trans):
    """Four 8×8 matrices of 16-bit values, each element numbered (matrix, row, column); lane l gives the
    address of row l % 8 of matrix l // 8 (rows 4 words apart, in a random order)."""
    rng = np.random.default_rng(0)
    rows = rng.permutation(32)                                  # row r of matrix i lives at word 4·rows[8i + r]
    halves = np.zeros(256, np.uint16)
    for i in range(4):
        for r in range(8):
            for c in range(8):
                halves[8 * rows[8 * i + r] + c] = 1000 * i + 10 * r + c
    words = halves.view(np.uint32)
    fn = mma.ldsm_x4_t if trans else mma.ldsm_x4

    @cuda.jit
    def kernel(src, out):
        lane = cuda.threadIdx.x
        sm = cuda.shared.array(128, dtype=np.uint32)
        for j in range(4):
            sm[4 * lane + j] = src[4 * lane + j]
        cuda.syncthreads()  # the matrices are in shared memory before the lanes load them
        r = fn(sm, 4 * int(rows[lane]))                         # the simulator runs the closure as Python
        for i in range(4):
            out[lane, i] = r[i]

    out = np.zeros((32, 4), np.uint32)
    kernel[1, 32](words, out)
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for i in range(4):
            lo, hi = int(out[lane, i]) & 0xFFFF, int(out[lane, i]) >> 16
            if trans:       # rows 2t, 2t + 1 of column g
                assert (lo, hi) == (1000 * i + 10 * (2 * t) + g, 1000 * i + 10 * (2 * t + 1) + g)
            else:           # row g, columns 2t, 2t + 1
                assert (lo, hi) == (1000 * i + 10 * g + 2 * t, 1000 * i + 10 * g + 2 * t + 1)


def test_tf32_rounding_twin():
    """cvt.rna.tf32.f32: nearest 10-bit mantissa, ties away from zero; Inf and NaN unchanged."""
    one_ulp = np.float32(2.0 ** -10)
    assert mma.tf32(np.float32(1) + one_ulp / 2).view(np.float32) == np.float32(1) + one_ulp   # a tie: away
    assert mma.tf32(np.float32(1) + one_ulp / 4).view(np.float32) == np.float32(1)
    assert mma.tf32(np.float32(-1) - one_ulp / 2).view(np.float32) == np.float32(-1) - one_ulp
    assert np.isinf(mma.tf32(np.float32(np.inf)).view(np.float32))
    assert np.isnan(mma.tf32(np.float32(np.nan)).view(np.float32))
