"""gpu_max_pool2d / gpu_avg_pool2d / global pools against the reference (PyTorch's semantics)."""

import itertools

import numpy as np
import pytest
from numba import cuda

from conftest import ON_GPU, rel_err
from gpuconv import (gpu_avg_pool2d, gpu_avg_pool2d_backward, gpu_global_avg_pool2d, gpu_global_avg_pool2d_backward,
                     gpu_global_max_pool2d, gpu_global_max_pool2d_backward, gpu_max_pool2d, gpu_max_pool2d_backward)
from gpuconv import reference as ref
from gpuconv._args import pool2d_geometry

SCALE = 8 if ON_GPU else 1


def poisoned(shape, dtype):
    return cuda.to_device(np.full(shape, np.nan, dtype=dtype))


def with_specials(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, 1, 1:3] = np.nan                 # NaN propagates; last NaN's index
    x[-1, -1, :3, :3] = -np.inf
    x[0, -1, 2, :] = x[0, -1, 2, 0]           # ties: first maximum
    return x


MAX_CASES = list(itertools.product([(7 * SCALE, 6 * SCALE + 1)], [2, 3, (2, 3)], [None, 2, (1, 3)], [0, 1],
                                   [1, 2], [False, True]))


@pytest.mark.parametrize("hw, k, s, p, d, ceil", MAX_CASES)
def test_max_pool(rng, hw, k, s, p, d, ceil):
    x = with_specials(rng, (2, 3) + hw, np.float32)
    try:
        g = pool2d_geometry(x.shape, k, s, p, d, ceil)
    except ValueError:
        with pytest.raises(ValueError):
            gpu_max_pool2d(x, k, s, p, d, ceil)
        return
    out = poisoned(g.out_shape, np.float32)
    y, idx = gpu_max_pool2d(cuda.to_device(x), k, s, p, d, ceil, return_indices=True, out=out)
    want, want_idx = ref.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    assert y is out
    np.testing.assert_array_equal(y.copy_to_host(), want.astype(np.float32))
    np.testing.assert_array_equal(idx.copy_to_host(), want_idx)


@pytest.mark.parametrize("hw, k, s, p, ceil, cip, div", [
    ((9 * SCALE, 8 * SCALE), 2, None, 0, False, True, None), ((7, 7), 3, 2, 1, True, False, None),
    ((7, 5), (3, 2), (2, 1), (1, 1), True, True, None), ((6, 6), 3, 3, 1, True, False, 4),
    ((5, 5), 2, 2, 1, True, False, None), ((4, 9), (2, 4), (1, 3), (0, 2), True, True, -3),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool(rng, hw, k, s, p, ceil, cip, div, dtype):
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    g = pool2d_geometry(x.shape, k, s, p, 1, ceil)
    out = poisoned(g.out_shape, dtype)
    gpu_avg_pool2d(cuda.to_device(x), k, s, p, ceil, cip, div, out=out)
    assert rel_err(out.copy_to_host(), ref.avg_pool2d(x, k, s, p, ceil, cip, div)) < (1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("shape", [(3, 5, 1, 1), (2, 3, 7, 9), (1, 2, 61 * SCALE, 47), (9, 7, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_pools(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    if x.size > 20:
        x[0, 0].flat[[3, 7]] = np.nan
        x[-1, -1].flat[:] = x[-1, -1].flat[0]          # a constant plane: first index wins
    y, idx = gpu_global_max_pool2d(x, return_indices=True)
    want, want_idx = ref.global_max_pool2d(x, return_indices=True)
    np.testing.assert_array_equal(y, want.astype(dtype))
    np.testing.assert_array_equal(idx, want_idx)
    xf = np.nan_to_num(x)
    assert rel_err(gpu_global_avg_pool2d(xf), ref.global_avg_pool2d(xf)) < (1e-6 if dtype == np.float32 else 1e-14)


def test_pool_errors():
    x = np.zeros((1, 2, 6, 6), np.float32)
    with pytest.raises(ValueError, match="at most half"):
        gpu_max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        gpu_avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="count_include_pad"):
        gpu_avg_pool2d(x, 2, count_include_pad=None)
    with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
        gpu_max_pool2d(x.astype(np.int32), 2)
    with pytest.raises(ValueError, match="x must be 4-D"):
        gpu_global_avg_pool2d(x[0, 0])
    with pytest.raises(ValueError, match=r"out must have shape \(1, 2, 3, 3\)"):
        gpu_max_pool2d(x, 2, out=np.zeros((1, 2, 2, 2), np.float32))


# ----------------------------------------------------------------------------- backward

def grad_tol(dtype):
    return 1e-6 if dtype == np.float32 else 1e-14


BACK_CASES = list(itertools.product([(7 * SCALE, 6 * SCALE + 1)], [2, 3, (2, 3)], [None, 1, 2, (1, 3)], [0, 1],
                                    [1, 2], [False, True]))


@pytest.mark.parametrize("hw, k, s, p, d, ceil", BACK_CASES)
def test_max_pool_backward(rng, hw, k, s, p, d, ceil):
    x = with_specials(rng, (2, 3) + hw, np.float32)
    try:
        g = pool2d_geometry(x.shape, k, s, p, d, ceil)
    except ValueError:
        return
    go = rng.standard_normal(g.out_shape).astype(np.float32)
    want = ref.max_pool2d_backward(go, x, k, s, p, d, ceil)
    dx, dgo = cuda.to_device(x), cuda.to_device(go)
    _, idx = gpu_max_pool2d(dx, k, s, p, d, ceil, return_indices=True)
    out = poisoned(x.shape, np.float32)
    got = gpu_max_pool2d_backward(dgo, dx, k, s, p, d, ceil, indices=idx, out=out)
    assert got is out
    assert rel_err(out.copy_to_host(), want) < 1e-6
    # without indices they are recomputed; same result, bit for bit
    np.testing.assert_array_equal(gpu_max_pool2d_backward(go, x, k, s, p, d, ceil), out.copy_to_host())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_backward_dtypes_and_overlap(rng, dtype):
    # stride 1 with a 3x3 window: most elements are the max of several windows, so gradients add up
    x = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    x[1, 2, 4, 4] = 10.0                                         # one element wins nine windows
    go = rng.standard_normal((2, 3, 9, 8)).astype(dtype)
    got = gpu_max_pool2d_backward(go, x, 3, 1, 1)
    want = ref.max_pool2d_backward(go, x, 3, 1, 1)
    assert rel_err(got, want) < grad_tol(dtype)
    assert got[1, 2, 4, 4] == pytest.approx(go[1, 2, 3:6, 3:6].sum(), rel=1e-5)
    np.testing.assert_array_equal(gpu_max_pool2d_backward(go, x, 3, 1, 1), got)   # deterministic


@pytest.mark.parametrize("hw, k, s, p, ceil, cip, div", [
    ((9, 8), 2, None, 0, False, True, None), ((7, 7), 3, 2, 1, True, False, None),
    ((7, 5), (3, 2), (2, 1), (1, 1), True, True, None), ((6, 6), 3, 3, 1, True, False, 4),
    ((5, 5), 2, 2, 1, True, False, None), ((4, 9), (2, 4), (1, 3), (0, 2), True, True, -3),
    ((8, 7), 3, 1, 1, False, False, None), ((8 * SCALE, 7), (3, 1), (2, 1), (1, 0), True, True, None),
    ((6, 7), 4, 3, 2, True, False, None), ((5, 6), 3, (3, 2), 0, True, True, 2),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_avg_pool_backward(rng, hw, k, s, p, ceil, cip, div, dtype):
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    g = pool2d_geometry(x.shape, k, s, p, 1, ceil)
    go = rng.standard_normal(g.out_shape).astype(dtype)
    out = poisoned(x.shape, dtype)
    got = gpu_avg_pool2d_backward(cuda.to_device(go), cuda.to_device(x), k, s, p, ceil, cip, div, out=out)
    assert got is out
    assert rel_err(out.copy_to_host(), ref.avg_pool2d_backward(go, x, k, s, p, ceil, cip, div)) < grad_tol(dtype)


@pytest.mark.parametrize("shape", [(3, 5, 1, 1), (2, 3, 7, 9), (1, 2, 31 * SCALE, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_pool_backward(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    if x.size > 20:
        x[0, 0].flat[[3, 7]] = np.nan
        x[-1, -1].flat[:] = x[-1, -1].flat[0]
    go = rng.standard_normal(shape[:2] + (1, 1)).astype(dtype)
    _, idx = gpu_global_max_pool2d(x, return_indices=True)
    got = gpu_global_max_pool2d_backward(go, x, indices=idx)
    assert rel_err(got, ref.global_max_pool2d_backward(go, x)) < grad_tol(dtype)
    np.testing.assert_array_equal(gpu_global_max_pool2d_backward(go, x), got)
    assert rel_err(gpu_global_avg_pool2d_backward(go, x), ref.global_avg_pool2d_backward(go, x)) < grad_tol(dtype)


def test_pool_backward_host_types(rng):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(rng.standard_normal((1, 2, 6, 5)))
    go = torch.from_numpy(rng.standard_normal((1, 2, 3, 3)))
    got = gpu_avg_pool2d_backward(go, x, 2, ceil_mode=True)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert rel_err(got.numpy(), ref.avg_pool2d_backward(go.numpy(), x.numpy(), 2, ceil_mode=True)) < 1e-14


def test_pool_backward_errors(rng):
    x = np.zeros((1, 2, 6, 6), np.float32)
    go = np.zeros((1, 2, 3, 3), np.float32)
    idx = np.zeros((1, 2, 3, 3), np.int64)
    with pytest.raises(ValueError, match=r"grad_out must have the forward's output shape \(1, 2, 3, 3\)"):
        gpu_max_pool2d_backward(go[:, :, :2], x, 2)
    with pytest.raises(ValueError, match=r"indices must have the forward's output shape \(1, 2, 3, 3\)"):
        gpu_max_pool2d_backward(go, x, 2, indices=idx[:, :1])
    with pytest.raises(TypeError, match="indices must be int64"):
        gpu_max_pool2d_backward(go, x, 2, indices=idx.astype(np.int32))
    with pytest.raises(TypeError, match="indices must be on the host"):
        gpu_max_pool2d_backward(go, x, 2, indices=cuda.to_device(idx))
    with pytest.raises(TypeError, match="mixed dtypes"):
        gpu_avg_pool2d_backward(go.astype(np.float64), x, 2)
    with pytest.raises(TypeError, match="all be on the host or all on a CUDA device"):
        gpu_avg_pool2d_backward(cuda.to_device(go), x, 2)
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        gpu_avg_pool2d_backward(go, x, 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"out must have shape \(1, 2, 6, 6\)"):
        gpu_avg_pool2d_backward(go, x, 2, out=np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="at most half"):
        gpu_avg_pool2d_backward(go, x, 2, padding=2)
    with pytest.raises(ValueError, match=r"grad_out must have the forward's output shape \(1, 2, 1, 1\)"):
        gpu_global_avg_pool2d_backward(go, x)
