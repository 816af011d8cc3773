"""On a CUDA device: every algorithm, the GEMM entries, the gradients and gpuconv.torch on PyTorch CUDA
tensors, used in place (results are CUDA tensors). Skipped without a device; scripts/gpu_run.sh runs them."""

import numpy as np
import pytest

from conftest import ON_GPU, rel_err
import gpuconv
from gpuconv import reference as ref

pytestmark = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def cuda_tensor(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


@pytest.mark.parametrize("algo", ["direct", "im2col", "implicit_gemm", "winograd", "winograd_2x2", "auto"])
def test_every_algo_on_torch_cuda(torch, rng, algo):
    x = rng.standard_normal((4, 32, 20, 18)).astype(np.float32)
    w = rng.standard_normal((48, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    y = gpuconv.gpu_conv2d(cuda_tensor(torch, x), cuda_tensor(torch, w), cuda_tensor(torch, b), padding=1,
                           activation="relu", algo=algo)
    assert isinstance(y, torch.Tensor) and y.is_cuda
    tol = 1e-4 if algo.startswith("winograd") else 1e-5
    assert rel_err(y.cpu().numpy(), ref.conv2d(x, w, b, padding=1, activation="relu")) < tol


def test_matmul_and_linear_on_torch_cuda(torch, rng):
    a = rng.standard_normal((300, 129)).astype(np.float32)
    b = rng.standard_normal((129, 257)).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    c = gpuconv.gpu_matmul(cuda_tensor(torch, a), cuda_tensor(torch, b))
    assert c.is_cuda and rel_err(c.cpu().numpy(), want) < 1e-5
    bt = cuda_tensor(torch, b.T).t()                       # (129, 257), a transposed CUDA view, used in place
    assert not bt.is_contiguous()
    assert rel_err(gpuconv.gpu_matmul(cuda_tensor(torch, a), bt).cpu().numpy(), want) < 1e-5
    w = rng.standard_normal((10, 129)).astype(np.float32)
    y = gpuconv.gpu_linear(cuda_tensor(torch, a), cuda_tensor(torch, w), activation="tanh")
    assert rel_err(y.cpu().numpy(), np.tanh(a.astype(np.float64) @ w.T.astype(np.float64))) < 1e-5


def test_gradients_on_torch_cuda(torch, rng):
    x = rng.standard_normal((3, 8, 12, 11)).astype(np.float64)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float64)
    go = rng.standard_normal((3, 6, 6, 6)).astype(np.float64)
    kw = dict(stride=2, padding=1, groups=2)
    got = gpuconv.gpu_conv2d_backward(cuda_tensor(torch, go), cuda_tensor(torch, x), cuda_tensor(torch, w), **kw)
    for a, e in zip(got, ref.conv2d_backward(go, x, w, **kw)):
        assert a.is_cuda and rel_err(a.cpu().numpy(), e) < 1e-12
    xp = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    y, idx = gpuconv.gpu_max_pool2d(cuda_tensor(torch, xp), 3, 2, 1, return_indices=True)
    gy = torch.randn_like(y)
    gx = gpuconv.gpu_max_pool2d_backward(gy, cuda_tensor(torch, xp), 3, 2, 1, indices=idx)
    want = ref.max_pool2d_backward(gy.cpu().numpy(), xp, 3, 2, 1)
    assert gx.is_cuda and rel_err(gx.cpu().numpy(), want) < 1e-6


def test_torch_modules_on_cuda(torch):
    import gpuconv.torch as gt

    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(8, 16, 3, padding=1).cuda()
    ours = gt.Conv2d(8, 16, 3, padding=1).cuda()
    ours.load_state_dict(theirs.state_dict())
    torch.backends.cudnn.allow_tf32 = False
    x = torch.randn(2, 8, 10, 10, device="cuda", requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-4, atol=1e-4)
    go = torch.randn_like(y_theirs)
    for a, b in zip(torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], go),
                    torch.autograd.grad(y_theirs, [x, theirs.weight, theirs.bias], go)):
        assert a.is_cuda
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
