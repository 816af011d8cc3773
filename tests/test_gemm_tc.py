"""The tensor-core GEMM (kernels/gemm_tc.py) against a float64 product of the same rounded inputs: float16
and bfloat16 (m16n8k16) and TF32 (m16n8k8), every operand layout, the interior, remainder and edge
paths. In the simulator the mma and ldmatrix twins run (tests/test_mma.py checks them lane by lane).

Shapes (the simulator runs a block's 256 threads in Python, so one block each): 128 × 128 outputs (one
interior tile) with K = 40 (16-bit: one step of 32 plus a remainder of 8; TF32: two steps of 16 plus
8), rows of 40 and 128 elements being multiples of 16 bytes (16-byte vector loads); and 20 × 24 × 20,
an edge tile (every element checked)."""

import numpy as np
import pytest
from numba import cuda

from conftest import rel_err
from gpuconv._precision import round_tf32
from gpuconv.kernels import gemm_tc



def bf16_bits(x):
    """float32 -> bfloat16 bits, rounded to nearest even (as kernels/_half.py)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bits_f32(b):
    return (np.asarray(b, np.uint32) << 16).view(np.float32)


def rounded(rng, shape, kind):
    """(the values the kernel multiplies, as float64; the array the kernel reads)."""
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "f16":
        h = x.astype(np.float16)
        return h.astype(np.float64), h.view(np.uint16)
    if kind == "bf16":
        b = bf16_bits(x)
        return bits_f32(b).astype(np.float64), b
    return round_tf32(x).astype(np.float64), x                     # TF32 as cvt.rna rounds it


def device(a, transposed):
    """A 3-D (1, rows, cols) device view of a, or of the transpose of a's transpose (same values, the
    other axis contiguous)."""
    d = cuda.to_device(np.ascontiguousarray(a.T)).T if transposed else cuda.to_device(np.ascontiguousarray(a))
    from gpuconv.gemm import _as_batched

    return _as_batched(d, d.shape)


def result(c, kind):
    return bits_f32(c).astype(np.float64) if kind == "bf16" else (
        c.view(np.float16).astype(np.float64) if kind == "f16" else c.astype(np.float64))


@pytest.mark.parametrize("kind, ta, tb, shape", [("f16", False, False, (128, 40, 128)),     # ldmatrix A, .trans B
                                                 ("bf16", True, True, (128, 40, 128)),      # .trans A, ldmatrix B
                                                 ("tf32", False, False, (128, 40, 128)),    # B transposed by stores
                                                 ("tf32", True, True, (128, 40, 128)),      # A transposed by stores
                                                 ("f16", False, False, (20, 20, 24))])      # an edge tile
def test_tensor_core_gemm(rng, kind, ta, tb, shape):
    M, K, N = shape
    a, a_store = rounded(rng, (M, K), kind)
    b, b_store = rounded(rng, (K, N), kind)
    out_dtype = np.float32 if kind == "tf32" else np.uint16
    c = cuda.to_device(np.zeros((1, M, N), out_dtype))
    bias = cuda.to_device(np.zeros(1, out_dtype))
    launch = gemm_tc.launch_gemm_tc(kind, "matrix", M, N, K, 1, not ta, not tb)
    launch(device(a_store, ta), device(b_store, tb), c, bias, 0, 0, 0)
    got = result(c.copy_to_host()[0], kind)
    # float32 accumulation, then (16-bit kinds) one rounding of the result to the output type
    tol = {"f16": 1e-3, "bf16": 8e-3, "tf32": 1e-5}[kind]
    assert rel_err(got, a @ b) < tol


def test_float32_output_accumulates_unrounded(rng):
    """out_f32 with accumulate (the weight gradient's build: B contiguous along K): C = C0 + A @ B in
    float32, C0 not representable in bfloat16 — a 16-bit store or load of C would be off by ~2^-9, far
    past the float32 bound checked here."""
    M, K, N = 20, 20, 24                    # an edge tile (every element checked), one K step
    a, a_store = rounded(rng, (M, K), "bf16")
    b, b_store = rounded(rng, (K, N), "bf16")
    c0 = rng.standard_normal((1, M, N)).astype(np.float32)
    c = cuda.to_device(c0)
    bias = cuda.to_device(np.zeros(1, np.uint16))
    launch = gemm_tc.launch_gemm_tc("bf16", "matrix", M, N, K, 1, True, False, accumulate=True, out_f32=True)
    launch(device(a_store, False), device(b_store, True), c, bias, 0, 0, 0)
    want = c0[0].astype(np.float64) + a @ b
    assert rel_err(c.copy_to_host()[0], want) < 50 * 2.0 ** -24
