"""gpu_matmul and gpu_linear (our tiled GEMM) against NumPy in float64, over awkward sizes and layouts."""

import numpy as np
import pytest
from numba import cuda

from conftest import ON_GPU, rel_err
from gpuconv import gpu_linear, gpu_matmul
from gpuconv import reference as ref
from gpuconv.reference.activations import activation as ref_activation

TOL = {np.float32: 1e-5, np.float64: 1e-12}
SCALE = 8 if ON_GPU else 1

# (M, K, N): ones, primes, one past a tile (float32 tiles are 128², float64 64²), deep K, tall, wide
SIZES = [(1, 1, 1), (1, 13, 1), (7, 3, 5), (31, 17, 37), (129, 9, 3), (2, 257, 3), (3, 5, 130),
         (65, 11, 66), (17 * SCALE, 19 * SCALE, 23 * SCALE)]


def f64(a):
    return np.asarray(a, dtype=np.float64)


@pytest.mark.parametrize("m, k, n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_sizes(rng, m, k, n, dtype):
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = cuda.to_device(np.full((m, n), np.nan, dtype))
    got = gpu_matmul(cuda.to_device(a), cuda.to_device(b), out=out)
    assert got is out
    assert rel_err(out.copy_to_host(), f64(a) @ f64(b)) < TOL[dtype]


@pytest.mark.parametrize("ta, tb", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_transposed_views(rng, ta, tb, dtype):
    """Transposes are strided device views used in place (the tile loads walk the contiguous axis)."""
    m, k, n = 37, 21, 45
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    da, db = cuda.to_device(a), cuda.to_device(b)
    got = gpu_matmul(da.T if ta else da, db.T if tb else db).copy_to_host()
    assert rel_err(got, (f64(a).T if ta else f64(a)) @ (f64(b).T if tb else f64(b))) < TOL[dtype]


@pytest.mark.parametrize("ba, bb", [(3, 3), (3, 1), (1, 4)])
def test_matmul_batched_broadcast(rng, ba, bb):
    a = rng.standard_normal((ba, 9, 14)).astype(np.float32)
    b = rng.standard_normal((bb, 14, 11)).astype(np.float32)
    got = gpu_matmul(a, b)
    assert got.shape == (max(ba, bb), 9, 11)
    assert rel_err(got, np.matmul(f64(a), f64(b))) < 1e-5


def test_matmul_host_types_and_determinism(rng):
    torch = pytest.importorskip("torch")
    a = torch.from_numpy(rng.standard_normal((9, 150)))         # K = 150: 19 steps of the K loop
    b = torch.from_numpy(rng.standard_normal((150, 7)))
    got = gpu_matmul(a, b)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert rel_err(got.numpy(), a.numpy() @ b.numpy()) < 1e-12
    assert torch.equal(gpu_matmul(a, b), got)


@pytest.mark.parametrize("act", [None, "relu", ("leaky_relu", 0.3), "sigmoid", "tanh", ("elu", 0.7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear(rng, act, dtype):
    x = rng.standard_normal((5, 3, 2, 2)).astype(dtype)          # flattened to (5, 12)
    w = rng.standard_normal((7, 12)).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    out = cuda.to_device(np.full((5, 7), np.nan, dtype))
    gpu_linear(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), activation=act, out=out)
    want = ref_activation(ref.linear(x.reshape(5, 12), w, b), act)
    assert rel_err(out.copy_to_host(), want) < TOL[dtype]


def test_linear_no_bias_host(rng):
    x = rng.standard_normal((130, 20)).astype(np.float32)       # more rows than one tile
    w = rng.standard_normal((3, 20)).astype(np.float32)
    assert rel_err(gpu_linear(x, w), ref.linear(x, w)) < 1e-5


def test_gemm_errors():
    a = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"inner dimensions differ: a \(3, 4\) @ b \(5, 2\)"):
        gpu_matmul(a, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="both 2-D or both 3-D"):
        gpu_matmul(a, np.zeros((1, 4, 2), np.float32))
    with pytest.raises(ValueError, match="batch sizes differ"):
        gpu_matmul(np.zeros((2, 3, 4), np.float32), np.zeros((3, 4, 2), np.float32))
    with pytest.raises(TypeError, match="a must be an array"):
        gpu_matmul([[1.0, 2.0]], np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="out must be an array"):
        gpu_matmul(a, np.zeros((4, 2), np.float32), out=[[0.0] * 2] * 3)
    with pytest.raises(TypeError, match="mixed dtypes"):
        gpu_matmul(a, np.zeros((4, 2), np.float64))
    with pytest.raises(ValueError, match=r"out must have shape \(3, 2\)"):
        gpu_matmul(a, np.zeros((4, 2), np.float32), out=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"weight \(2, 5\) must have 4 columns"):
        gpu_linear(a, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        gpu_linear(a, np.zeros((2, 4), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="activation"):
        gpu_linear(a, np.zeros((2, 4), np.float32), activation="swish")
    with pytest.raises(ValueError, match="cannot be flattened in place"):
        x = cuda.to_device(np.zeros((2, 3, 4, 5), np.float32))
        gpu_linear(x[:, :, :, :2], cuda.to_device(np.zeros((2, 24), np.float32)))


# The kernel's paths: a tile inside M×N runs whole K steps without checks (16-byte vector loads when the
# operand is aligned, scalar loads along the contiguous axis when not), then one checked step for the K
# remainder; edge tiles run a checked loop. A few rows and columns past one tile (and K = 2 steps + 4)
# take all three paths; each operand layout (which axis is contiguous) is a separate build. Rows of 132
# float32 (66 float64) and 20 elements are multiples of 16 bytes, so the aligned operands take vectors.
INTERIOR = {np.float32: (132, 20, 132), np.float64: (66, 20, 66)}


def _operand(rng, rows, cols, dtype, transposed, misaligned):
    """A (rows, cols) device operand: C-contiguous, or a transposed view; shifted off the 16-byte grid
    (a view starting one element into its buffer) when misaligned."""
    shape = (cols, rows) if transposed else (rows, cols)
    base = rng.standard_normal((shape[0], shape[1] + 1)).astype(dtype)
    d = cuda.to_device(base)[:, 1:] if misaligned else cuda.to_device(np.ascontiguousarray(base[:, :-1]))
    host = base[:, 1:] if misaligned else base[:, :-1]
    return (d.T, host.T) if transposed else (d, host)


LAYOUTS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("dtype, ta, tb, misaligned",   # float64's scalar interior path is float32's code
                         [(np.float32, ta, tb, mis) for ta, tb in LAYOUTS for mis in (False, True)]
                         + [(np.float64, ta, tb, False) for ta, tb in LAYOUTS])
def test_interior_edge_and_remainder_paths(rng, dtype, ta, tb, misaligned):
    m, k, n = INTERIOR[dtype]
    da, a = _operand(rng, m, k, dtype, ta, misaligned)
    db, b = _operand(rng, k, n, dtype, tb, misaligned)
    from gpuconv.gemm import _as_batched
    from gpuconv.kernels import gemm as kgemm

    isz = np.dtype(dtype).itemsize
    for d, axis in ((da, 1 if ta else 2), (db, 1 if tb else 2)):     # the path this call takes
        assert kgemm.vector_ok(_as_batched(d, d.shape), axis, isz) == (not misaligned)
    got = gpu_matmul(da, db).copy_to_host()
    assert rel_err(got, f64(a) @ f64(b)) < TOL[dtype]


def test_vector_loads_need_alignment():
    """vector_ok: unit stride along the walked axis, 16-byte data pointer and strides."""
    from gpuconv.kernels import gemm as kgemm

    d = cuda.to_device(np.zeros((2, 8, 12), np.float32))
    assert kgemm.vector_ok(d, 2, 4) and not kgemm.vector_ok(d, 1, 4)       # rows of 12 floats: 48-byte stride
    assert not kgemm.vector_ok(d[:, :, 1:], 2, 4)                           # data pointer 4 bytes off
    assert not kgemm.vector_ok(cuda.to_device(np.zeros((2, 8, 10), np.float32)), 2, 4)   # 40-byte rows
    assert kgemm.vector_ok(cuda.to_device(np.zeros((3, 4, 2), np.float64)), 2, 8)


def test_launch_plan_splits_batches_and_folds_tiles():
    """Past 65,535 products the batch is issued in several launches; tiles of any M go in grid.x. Planned
    only (nothing allocated or run)."""
    from gpuconv.kernels import gemm as kgemm

    launch = kgemm.launch_gemm(np.float32, "matrix", 9_000_000, 7, 20, 70_000, True, True)
    assert launch.grids == [(-(-9_000_000 // 128), 1, 65535), (-(-9_000_000 // 128), 1, 70_000 - 65535)]
    assert all(z <= 65535 and x <= 2**31 - 1 for x, _, z in launch.grids)
    assert sum(z for _, _, z in launch.grids) == 70_000
