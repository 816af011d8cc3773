"""Unbatched (C, H, W) input wherever PyTorch takes it: conv2d, conv_transpose2d, the pools and the
global (adaptive 1×1) pools, and our backward functions consistently; on host and device arrays,
with out=."""

import numpy as np
import pytest
from numba import cuda

import gpuconv as gc
from conftest import CaiArray, to_host

R = np.random.default_rng(11)
X3 = R.standard_normal((2, 7, 6))
W = R.standard_normal((3, 2, 3, 3))
B = R.standard_normal(3)


def batched(fn, *arrays):
    """The same op on (1, ...) inputs, batch axis dropped from its batched results."""
    return fn(*(a[None] for a in arrays))


# name: (op(x, make, out), result shape); make puts the op's other arrays on x's side
FORWARD = {
    "conv2d": (lambda x, m, out=None: gc.gpu_conv2d(x, m(W), m(B), padding=1, out=out), (3, 7, 6)),
    "conv_transpose2d": (lambda x, m, out=None: gc.gpu_conv_transpose2d(x, m(W.transpose(1, 0, 2, 3).copy()),
                                                                        stride=2, out=out), (3, 15, 13)),
    "max_pool2d": (lambda x, m, out=None: gc.gpu_max_pool2d(x, 3, 2, 1, out=out), (2, 4, 3)),
    "avg_pool2d": (lambda x, m, out=None: gc.gpu_avg_pool2d(x, 2, ceil_mode=True, out=out), (2, 4, 3)),
    "global_max_pool2d": (lambda x, m, out=None: gc.gpu_global_max_pool2d(x, out=out), (2, 1, 1)),
    "global_avg_pool2d": (lambda x, m, out=None: gc.gpu_global_avg_pool2d(x, out=out), (2, 1, 1)),
}


@pytest.mark.parametrize("name", FORWARD)
def test_forward_takes_unbatched_input(name):
    op, shape = FORWARD[name]

    def host(a):
        return a

    y = op(X3, host)
    assert isinstance(y, np.ndarray) and y.shape == shape
    np.testing.assert_array_equal(y, op(X3[None], host)[0])
    out = np.full(shape, np.nan)
    assert op(X3, host, out=out) is out
    np.testing.assert_array_equal(out, y)
    d_out = cuda.to_device(np.full(shape, np.nan))
    assert op(CaiArray(X3), CaiArray, out=d_out) is d_out
    np.testing.assert_allclose(to_host(d_out), y, rtol=1e-12)
    d_y = op(cuda.to_device(X3), cuda.to_device)
    assert tuple(d_y.shape) == shape
    np.testing.assert_allclose(to_host(d_y), y, rtol=1e-12)


def test_forward_matches_torch_functional():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = torch.from_numpy(X3), torch.from_numpy(W), torch.from_numpy(B)
    pairs = [(gc.gpu_conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1)),
             (gc.gpu_conv_transpose2d(x, w.transpose(0, 1).contiguous(), stride=2),
              F.conv_transpose2d(x, w.transpose(0, 1).contiguous(), stride=2)),
             (gc.gpu_max_pool2d(x, 3, 2, 1, return_indices=True)[1], F.max_pool2d(x, 3, 2, 1, return_indices=True)[1]),
             (gc.gpu_avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(x, 2, ceil_mode=True)),
             (gc.gpu_global_max_pool2d(x), F.adaptive_max_pool2d(x, 1)),
             (gc.gpu_global_avg_pool2d(x), F.adaptive_avg_pool2d(x, 1))]
    for ours, theirs in pairs:
        assert isinstance(ours, torch.Tensor) and ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs)


def test_backward_takes_unbatched_operands():
    go = R.standard_normal((3, 7, 6))
    for got, want in [
        (gc.gpu_conv2d_backward(go, X3, W, padding=1), batched(lambda g, x: gc.gpu_conv2d_backward(g, x, W, padding=1),
                                                               go, X3)),
        (gc.gpu_conv_transpose2d_backward(X3, go, W, padding=1),
         batched(lambda g, x: gc.gpu_conv_transpose2d_backward(g, x, W, padding=1), X3, go)),
    ]:
        assert got[0].shape == want[0].shape[1:] and got[1].shape == W.shape
        np.testing.assert_array_equal(got[0], want[0][0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[2], want[2])
    gp = R.standard_normal((2, 4, 3))
    _, idx = gc.gpu_max_pool2d(X3, 3, 2, 1, return_indices=True)
    for got, want in [
        (gc.gpu_max_pool2d_backward(gp, X3, 3, 2, 1, indices=idx), gc.gpu_max_pool2d_backward(gp[None], X3[None], 3, 2,
                                                                                              1)[0]),
        (gc.gpu_max_pool2d_backward(gp, X3, 3, 2, 1), gc.gpu_max_pool2d_backward(gp[None], X3[None], 3, 2, 1)[0]),
        (gc.gpu_avg_pool2d_backward(gp, X3, 2, ceil_mode=True),
         gc.gpu_avg_pool2d_backward(gp[None], X3[None], 2, ceil_mode=True)[0]),
        (gc.gpu_global_avg_pool2d_backward(gp[:, :1, :1], X3),
         gc.gpu_global_avg_pool2d_backward(gp[None, :, :1, :1], X3[None])[0]),
        (gc.gpu_global_max_pool2d_backward(gp[:, :1, :1], X3),
         gc.gpu_global_max_pool2d_backward(gp[None, :, :1, :1], X3[None])[0]),
    ]:
        assert got.shape == X3.shape
        np.testing.assert_array_equal(got, want)
    d = gc.gpu_conv2d_backward(cuda.to_device(go), cuda.to_device(X3), cuda.to_device(W), padding=1)
    assert tuple(d[0].shape) == X3.shape and tuple(d[1].shape) == W.shape


def test_unbatched_operands_must_agree():
    with pytest.raises(ValueError, match=r"grad_out must be 3-D \(unbatched\) like the other operands, got shape "
                                         r"\(1, 2, 4, 3\)"):
        gc.gpu_avg_pool2d_backward(R.standard_normal((1, 2, 4, 3)), X3, 2)
    with pytest.raises(ValueError, match=r"out must be 3-D \(unbatched\)"):
        gc.gpu_max_pool2d(X3, 2, out=np.zeros((1, 2, 3, 3)))
    with pytest.raises(TypeError, match="grad_out must be an array"):
        gc.gpu_avg_pool2d_backward(np.zeros((2, 4, 3)).tolist(), X3, 2)
