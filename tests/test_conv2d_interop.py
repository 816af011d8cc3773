"""Array interop of gpu_conv2d: result types, out=, non-contiguous inputs, streams, CuPy/PyTorch."""

import numpy as np
import pytest
from numba import cuda

from conftest import ON_GPU, rel_err
from gpuconv import gpu_conv2d
from gpuconv import reference as ref


@pytest.fixture
def xw(rng):
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    return x, w, ref.conv2d(x, w, padding=1)


def test_numpy_in_numpy_out(xw):
    x, w, want = xw
    y = gpu_conv2d(x, w, padding=1)
    assert type(y) is np.ndarray and y.dtype == np.float32 and rel_err(y, want) < 1e-5


def test_host_out_written_in_place(xw):
    x, w, want = xw
    out = np.full(want.shape, np.nan, dtype=np.float32)
    assert gpu_conv2d(x, w, padding=1, out=out) is out
    assert rel_err(out, want) < 1e-5
    wide = np.full(want.shape[:3] + (want.shape[3] * 2,), np.nan, dtype=np.float32)
    view = wide[..., ::2]                                    # a non-contiguous out
    gpu_conv2d(x, w, padding=1, out=view)
    assert rel_err(view, want) < 1e-5 and np.isnan(wide[..., 1::2]).all()


def test_non_contiguous_inputs(rng):
    big = rng.standard_normal((2, 6, 18, 20)).astype(np.float64)
    x = big[:, ::2, ::2, ::2]
    w = rng.standard_normal((3, 3, 3, 3))[:, :, ::-1]        # negative strides
    got = gpu_conv2d(x, w, padding=1)
    assert rel_err(got, ref.conv2d(x, w, padding=1)) < 1e-12
    d_x = cuda.to_device(np.ascontiguousarray(big))[:, ::2, ::2, ::2]   # a strided device view
    got = gpu_conv2d(d_x, cuda.to_device(np.ascontiguousarray(w)), padding=1)
    assert rel_err(got.copy_to_host(), ref.conv2d(x, w, padding=1)) < 1e-12


def test_numba_device_in_device_out(xw):
    x, w, want = xw
    y = gpu_conv2d(cuda.to_device(x), cuda.to_device(w), padding=1)
    assert not isinstance(y, np.ndarray) and hasattr(y, "copy_to_host")   # a Numba device array
    assert rel_err(y.copy_to_host(), want) < 1e-5


def test_torch_cpu_tensor(xw):
    torch = pytest.importorskip("torch")
    x, w, want = xw
    y = gpu_conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and rel_err(y.numpy(), want) < 1e-5
    out = torch.full(want.shape, float("nan"))
    assert gpu_conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1, out=out) is out
    assert rel_err(out.numpy(), want) < 1e-5


@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
def test_torch_cuda_in_place_on_current_stream(xw):
    torch = pytest.importorskip("torch")
    x, w, want = xw
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        tx, tw = torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda()
        y = gpu_conv2d(tx, tw, padding=1)
    s.synchronize()
    assert isinstance(y, torch.Tensor) and y.is_cuda and rel_err(y.cpu().numpy(), want) < 1e-5
    out = torch.full(want.shape, float("nan"), device="cuda")
    assert gpu_conv2d(tx, tw, padding=1, out=out, stream=torch.cuda.current_stream()) is out
    torch.cuda.synchronize()
    assert rel_err(out.cpu().numpy(), want) < 1e-5


@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")
def test_cupy_in_place(xw):
    cupy = pytest.importorskip("cupy")
    x, w, want = xw
    cx, cw = cupy.asarray(x), cupy.asarray(w)
    y = gpu_conv2d(cx, cw, padding=1)
    assert isinstance(y, cupy.ndarray) and rel_err(cupy.asnumpy(y), want) < 1e-5
    y2 = gpu_conv2d(cx[:, :, ::-1], cw, padding=1)                       # strided CuPy view, no copy
    assert rel_err(cupy.asnumpy(y2), ref.conv2d(x[:, :, ::-1], w, padding=1)) < 1e-5
