"""Pooling reads and writes float16 / bfloat16 natively (kernels/pool.py with 16-bit element kinds).

Every test here forbids the widening route (gpuconv._precision.widen raises; `no_float32` also refuses
any float32 device array inside the 16-bit calls it wraps), so a pooling call that fell back to
widening fails. The result must be the
float32 op's result on the widened values rounded once (max pooling: the very bits of the element its
index names, NaN payloads included), and within one rounding of the float64 reference. Tiny shapes:
these run in the simulator."""

import contextlib

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import rel_err
from gpuconv import reference as ref

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
UNIT = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
# a quiet NaN with a payload and a negative NaN: max pooling must keep their bits (not canonicalise them)
ODD_NANS = {"float16": (0x7E01, 0xFE00), "bfloat16": (0x7FC1, 0xFFC0)}


def bound(name, k=50):
    """One rounding to the dtype plus float32 accumulation of k terms (see tests/test_half.py)."""
    return UNIT[name] + k * 2.0 ** -24


@pytest.fixture(autouse=True)
def native(monkeypatch):
    """Fail on the widening route (the float32 ops the tests compare with never widen)."""
    from gpuconv import _precision

    monkeypatch.setattr(_precision, "widen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("widened")))


@pytest.fixture
def no_float32(monkeypatch):
    """A context manager inside which allocating a float32 device array fails."""
    real, strict = cuda.device_array, [False]

    def device_array(shape, dtype=np.float64, *args, **kwargs):
        assert not (strict[0] and np.dtype(dtype) == np.float32), "a float32 device temporary was allocated"
        return real(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(cuda, "device_array", device_array)

    @contextlib.contextmanager
    def inside():
        strict[0] = True
        try:
            yield
        finally:
            strict[0] = False

    return inside


def specials(rng, shape, name):
    """Random 16-bit values with NaNs (odd payloads), -inf and ties: (array, as float64)."""
    dt = DTYPES[name]
    x = rng.standard_normal(shape).astype(np.float32).astype(dt)
    bits = x.view(np.uint16)
    bits[0, 0, 1, 1], bits[0, 0, 1, 2] = ODD_NANS[name]    # NaN wins; the last NaN's index
    x[-1, -1, :3, :3] = -np.inf
    x[0, -1, 2, :] = x[0, -1, 2, 0]                        # ties: the first maximum
    return x, x.astype(np.float64)


def bits(a):
    return np.asarray(a).view(np.uint16)


def picked(x, idx):
    """The bits of x's element each flat per-plane index names."""
    n, c = x.shape[:2]
    return np.take_along_axis(bits(x).reshape(n, c, -1), np.asarray(idx).reshape(n, c, -1), 2).reshape(idx.shape)


def rounded_f32(y32, dt):
    """The float32 op's result rounded once (to nearest even) to the 16-bit dtype."""
    return np.asarray(y32, np.float32).astype(dt)


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("args", [(3, 2, 1), (5, 1, 2, 2)], ids=["3x3s2p1", "5x5d2-loop"])
def test_max_pool_picks_the_bits(rng, no_float32, name, args):
    """Compiled (3×3) and looping (5×5, dilated) windows: y is the bits of the element its index names,
    the indices are the float32 op's, the values the reference's (NaN where it has NaN)."""
    x, x64 = specials(rng, (1, 2, 7, 8), name)
    with no_float32():
        y, idx = gpuconv.gpu_max_pool2d(x, *args, return_indices=True)
    assert y.dtype == DTYPES[name] and idx.dtype == np.int64
    np.testing.assert_array_equal(bits(y), picked(x, idx))
    _, idx32 = gpuconv.gpu_max_pool2d(cuda.to_device(x.astype(np.float32)), *args, return_indices=True)
    np.testing.assert_array_equal(idx, idx32.copy_to_host())
    want, want_idx = ref.max_pool2d(x64, *args, return_indices=True)
    np.testing.assert_array_equal(y.astype(np.float64), want)
    np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("name", DTYPES)
def test_global_max_pool_picks_the_bits(rng, name):
    """Dense planes and a strided device view (the general kernel): NaN payloads and ties kept."""
    x, x64 = specials(rng, (2, 2, 6, 9), name)
    y, idx = gpuconv.gpu_global_max_pool2d(x, return_indices=True)
    np.testing.assert_array_equal(bits(y), picked(x, idx))
    np.testing.assert_array_equal(y.astype(np.float64), ref.global_max_pool2d(x64))
    strided = cuda.to_device(x)[:, :, :, ::2]                      # not C-contiguous: the general kernel
    xs = np.ascontiguousarray(x[:, :, :, ::2])
    ys, idxs = gpuconv.gpu_global_max_pool2d(strided, return_indices=True)
    assert ys.dtype == DTYPES[name]
    np.testing.assert_array_equal(bits(ys.copy_to_host()), picked(xs, idxs.copy_to_host()))
    _, idx32 = gpuconv.gpu_global_max_pool2d(xs.astype(np.float32), return_indices=True)
    np.testing.assert_array_equal(idxs.copy_to_host(), idx32)


@pytest.mark.parametrize("name", DTYPES)
def test_avg_pools_are_the_float32_result_rounded_once(rng, name):
    """Every divisor rule, the global average, and a strided device input with a strided device out=."""
    dt = DTYPES[name]
    x = rng.standard_normal((1, 2, 7, 6)).astype(np.float32).astype(dt)
    x32, x64 = x.astype(np.float32), x.astype(np.float64)
    for kwargs in (dict(padding=1), dict(padding=1, ceil_mode=True, count_include_pad=False),
                   dict(divisor_override=5)):
        y = gpuconv.gpu_avg_pool2d(x, 3, 2, **kwargs)
        assert y.dtype == dt
        np.testing.assert_array_equal(bits(y), bits(rounded_f32(gpuconv.gpu_avg_pool2d(x32, 3, 2, **kwargs), dt)))
        assert rel_err(y.astype(np.float64), ref.avg_pool2d(x64, 3, 2, **kwargs)) <= bound(name)
    y = gpuconv.gpu_global_avg_pool2d(x)
    np.testing.assert_array_equal(bits(y), bits(rounded_f32(gpuconv.gpu_global_avg_pool2d(x32), dt)))
    # general kernels: a strided view in, a strided out= (every other column of a poisoned array)
    d = cuda.to_device(x)[:, :, ::2, :]
    holder = cuda.to_device(np.full((1, 2, 2, 6), np.nan, np.float32).astype(dt))
    out = holder[:, :, :, ::2]
    assert gpuconv.gpu_avg_pool2d(d, 2, out=out) is out
    want = rounded_f32(gpuconv.gpu_avg_pool2d(np.ascontiguousarray(x32[:, :, ::2, :]), 2), dt)
    np.testing.assert_array_equal(bits(out.copy_to_host()), bits(want))
    assert np.isnan(holder.copy_to_host()[:, :, :, 1::2].astype(np.float32)).all()   # only out= was written


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("args", [(3, 2, 1), (2, 5)], ids=["cells", "per-element"])
def test_backward_rounded_once(rng, no_float32, name, args):
    """Max (given indices, and recomputed) and average gradients, through the cell kernels (3×3/s2) and
    the per-element ones (stride 5): the float32 op's gradient rounded once, and near the reference."""
    dt = DTYPES[name]
    x, x64 = specials(rng, (1, 2, 7, 8), name)
    y, idx = gpuconv.gpu_max_pool2d(x, *args, return_indices=True)
    go = rng.standard_normal(y.shape).astype(np.float32).astype(dt)
    go32, go64 = go.astype(np.float32), go.astype(np.float64)
    with no_float32():
        gx = gpuconv.gpu_max_pool2d_backward(go, x, *args, indices=idx)
    want32 = gpuconv.gpu_max_pool2d_backward(go32, x.astype(np.float32), *args, indices=idx)
    assert gx.dtype == dt
    np.testing.assert_array_equal(bits(gx), bits(rounded_f32(want32, dt)))
    np.testing.assert_array_equal(bits(gpuconv.gpu_max_pool2d_backward(go, x, *args)), bits(gx))   # recomputed
    assert rel_err(gx.astype(np.float64), ref.max_pool2d_backward(go64, x64, *args)) <= bound(name)
    xf = np.nan_to_num(x32 := x.astype(np.float32), nan=0.0, neginf=0.0).astype(dt)
    with no_float32():
        gx = gpuconv.gpu_avg_pool2d_backward(go, xf, *args, count_include_pad=False)
    want32 = gpuconv.gpu_avg_pool2d_backward(go32, x32, *args, count_include_pad=False)
    np.testing.assert_array_equal(bits(gx), bits(rounded_f32(want32, dt)))
    assert rel_err(gx.astype(np.float64), ref.avg_pool2d_backward(go64, x64, *args, count_include_pad=False)) \
        <= bound(name)


def test_device_callers_and_empty_batches(rng):
    """Numba device arrays in and out (out= in place, overlap refused), global backward, N = 0."""
    dt = DTYPES["bfloat16"]
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32).astype(dt)
    d = cuda.to_device(x)
    out = cuda.to_device(np.zeros((1, 2, 2, 2), dt))
    y, idx = gpuconv.gpu_max_pool2d(d, 2, return_indices=True, out=out)
    assert y is out and hasattr(idx, "copy_to_host")
    np.testing.assert_array_equal(bits(y.copy_to_host()), picked(x, idx.copy_to_host()))
    with pytest.raises(ValueError, match="overlaps the memory of x"):
        gpuconv.gpu_avg_pool2d(d, 1, out=d)
    go = cuda.to_device(np.ones((1, 2, 1, 1), dt))
    g = gpuconv.gpu_global_avg_pool2d_backward(go, d)
    np.testing.assert_array_equal(g.copy_to_host().astype(np.float32), np.full(x.shape, 1 / 16, np.float32))
    empty = np.zeros((0, 2, 4, 4), dt)
    assert gpuconv.gpu_max_pool2d(empty, 2).shape == (0, 2, 2, 2)
    got = gpuconv.gpu_avg_pool2d(cuda.to_device(empty), 2)
    assert got.shape == (0, 2, 2, 2) and got.dtype == dt
    assert gpuconv.gpu_avg_pool2d_backward(np.zeros((0, 2, 2, 2), dt), empty, 2).dtype == dt


def test_checks_before_anything_is_allocated(rng, monkeypatch):
    """A 16-bit pooling call is checked whole (dtypes, sides, shapes, out=) before any allocation."""
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float16)
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    monkeypatch.setattr(cuda, "device_array", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    with pytest.raises(TypeError, match="out must have dtype float16"):
        gpuconv.gpu_max_pool2d(x, 2, out=np.zeros((1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(1, 2, 2, 2\)"):
        gpuconv.gpu_avg_pool2d(x, 2, out=np.zeros((1, 2, 3, 3), np.float16))
    with pytest.raises(TypeError, match="mixed dtypes: grad_out is bfloat16 but x is float16"):
        gpuconv.gpu_avg_pool2d_backward(np.zeros((1, 2, 2, 2), DTYPES["bfloat16"]), x, 2)
    with pytest.raises(ValueError, match="grad_out must have the forward's output shape"):
        gpuconv.gpu_max_pool2d_backward(x, x, 2)
    with pytest.raises(TypeError, match="indices must be on the host"):
        gpuconv.gpu_max_pool2d_backward(x[:, :, :2, :2], x, 2, indices=cuda.device_array_like(x))


def test_torch_autograd_bfloat16(rng):
    """gpuconv.torch's pooling on CPU bfloat16 tensors: values and gradients as PyTorch's own bfloat16
    pooling (non-overlapping max windows: each gradient moves unchanged; average: one rounding)."""
    torch = pytest.importorskip("torch")
    import gpuconv.torch as gt

    x = torch.from_numpy(rng.standard_normal((1, 2, 4, 6)).astype(np.float32)).to(torch.bfloat16)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    y = gt.max_pool2d(a, 2)
    want = torch.nn.functional.max_pool2d(b, 2)
    assert y.dtype == torch.bfloat16 and torch.equal(y, want)
    go = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(np.float32)).to(torch.bfloat16)
    y.backward(go)
    want.backward(go)
    assert torch.equal(a.grad, b.grad)
    a.grad = None
    y = gt.avg_pool2d(a, 3, 1, 1)
    y.backward(go.new_ones(y.shape))
    x64 = x.double().requires_grad_()
    y64 = torch.nn.functional.avg_pool2d(x64, 3, 1, 1)
    y64.backward(torch.ones_like(y64))
    assert y.dtype == torch.bfloat16 and a.grad.dtype == torch.bfloat16
    assert rel_err(y.detach().double().numpy(), y64.detach().numpy()) <= bound("bfloat16", 9)
    assert rel_err(a.grad.double().numpy(), x64.grad.numpy()) <= bound("bfloat16", 9)
