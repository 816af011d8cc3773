"""The reference against PyTorch's own functions (CPU, float64), where PyTorch is installed."""

import itertools

import numpy as np
import pytest

from gpuconv import reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), ((2, 1), (1, 2), (1, 2), 2), (3, 1, 2, 4), (2, 2, 1, 1), (1, (2, 0), (2, 1), 4),
])
def test_conv2d_and_grads_vs_torch(rng, mode, stride, padding, dilation, groups):
    x, w, b = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((8, 4 // groups, 3, 2)), rng.standard_normal(8)
    m = torch.nn.Conv2d(4, 8, (3, 2), stride, padding, dilation, groups, padding_mode=mode).double()
    m.weight.data, m.bias.data = T(w), T(b)
    xt = T(x).requires_grad_()
    yt = m(xt)
    go = rng.standard_normal(yt.shape)
    yt.backward(T(go))
    np.testing.assert_allclose(ref.conv2d(x, w, b, stride, padding, dilation, groups, mode), yt.detach(), atol=1e-12)
    gx, gw, gb = ref.conv2d_backward(go, x, w, stride, padding, dilation, groups, mode, bias=b)
    np.testing.assert_allclose(gx, xt.grad, atol=1e-12)
    np.testing.assert_allclose(gw, m.weight.grad, atol=1e-11)
    np.testing.assert_allclose(gb, m.bias.grad, atol=1e-12)


@pytest.mark.parametrize("R, dilation", [(3, 1), (4, 1), (2, 3), (5, 2)])
def test_same_stride1_vs_torch(rng, R, dilation):
    x, w = rng.standard_normal((1, 2, 7, 6)), rng.standard_normal((3, 2, R, R))
    np.testing.assert_allclose(ref.conv2d(x, w, padding="same", dilation=dilation),
                               F.conv2d(T(x), T(w), padding="same", dilation=dilation), atol=1e-12)


@pytest.mark.parametrize("stride, padding, op, groups, dilation", [
    (1, 0, 0, 1, 1), (2, 1, 1, 2, 1), ((3, 2), (0, 1), (2, 0), 1, (1, 2)), (2, 2, 1, 4, 2),
])
def test_conv_transpose2d_vs_torch(rng, stride, padding, op, groups, dilation):
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 6 // groups if groups != 4 else 2, 3, 3)), None
    y = ref.conv_transpose2d(x, w, b, stride, padding, op, groups, dilation)
    np.testing.assert_allclose(y, F.conv_transpose2d(T(x), T(w), None, stride, padding, op, groups, dilation), atol=1e-12)


POOLS = list(itertools.product([(9, 8), (6, 11)], [2, 3, (3, 2)], [None, 2, (1, 3)], [0, 1], [1, 2], [False, True]))


@pytest.mark.parametrize("hw, k, s, p, d, ceil", POOLS)
def test_max_pool_vs_torch(rng, hw, k, s, p, d, ceil):
    x = rng.standard_normal((2, 3) + hw)
    x[0, 0, 2, 2:4] = np.nan
    x[1, 2] = -np.inf
    xt = T(x).requires_grad_()
    try:
        yt, it = F.max_pool2d(xt, k, s, p, d, ceil, return_indices=True)
    except RuntimeError:
        with pytest.raises(ValueError):
            ref.max_pool2d(x, k, s, p, d, ceil)
        return
    y, i = ref.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(i, it.numpy())
    x2 = rng.permutation(x.size).reshape(x.shape).astype(np.float64)
    xt2 = T(x2).requires_grad_()
    yt2 = F.max_pool2d(xt2, k, s, p, d, ceil)
    go = rng.standard_normal(yt2.shape)
    yt2.backward(T(go))
    np.testing.assert_allclose(ref.max_pool2d_backward(go, x2, k, s, p, d, ceil), xt2.grad, atol=1e-12)


@pytest.mark.parametrize("hw, k, s, p, ceil, cip, div", [
    (hw, k, s, p, c, cip, div) for hw in [(9, 8), (5, 7)] for k in [2, 3, (3, 2)] for s in [None, 2]
    for p in [0, 1] for c in [False, True] for cip in [False, True] for div in [None, 3]
])
def test_avg_pool_vs_torch(rng, hw, k, s, p, ceil, cip, div):
    x = rng.standard_normal((2, 3) + hw)
    xt = T(x).requires_grad_()
    try:
        yt = F.avg_pool2d(xt, k, s, p, ceil, cip, div)
    except RuntimeError:
        with pytest.raises(ValueError):
            ref.avg_pool2d(x, k, s, p, ceil, cip, div)
        return
    np.testing.assert_allclose(ref.avg_pool2d(x, k, s, p, ceil, cip, div), yt.detach(), atol=1e-13)
    go = rng.standard_normal(yt.shape)
    yt.backward(T(go))
    np.testing.assert_allclose(ref.avg_pool2d_backward(go, x, k, s, p, ceil, cip, div), xt.grad, atol=1e-13)


def test_global_pools_activations_unfold_vs_torch(rng):
    x = rng.standard_normal((2, 3, 5, 4))
    x[0, 1, 2, 2] = np.nan
    np.testing.assert_array_equal(ref.global_max_pool2d(x), F.adaptive_max_pool2d(T(x), 1).numpy())
    np.testing.assert_allclose(ref.global_avg_pool2d(x[1:]), F.adaptive_avg_pool2d(T(x[1:]), 1), atol=1e-15)
    z = rng.standard_normal(100) * 4
    for name, tf in (("relu", F.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh)):
        np.testing.assert_allclose(ref.activation(z, name), tf(T(z)), atol=1e-15)
    np.testing.assert_allclose(ref.activation(z, ("leaky_relu", 0.2)), F.leaky_relu(T(z), 0.2), atol=1e-15)
    np.testing.assert_allclose(ref.activation(z, ("elu", 0.5)), F.elu(T(z), 0.5), atol=1e-15)
    cols = ref.im2col(x[1:], (2, 3), (2, 1), (1, 1), (2, 1))
    np.testing.assert_array_equal(cols, F.unfold(T(x[1:]), (2, 3), (2, 1), (1, 1), (2, 1)).numpy())
    np.testing.assert_allclose(ref.col2im(cols, (5, 4), (2, 3), (2, 1), (1, 1), (2, 1)),
                               F.fold(T(cols), (5, 4), (2, 3), (2, 1), (1, 1), (2, 1)), atol=1e-14)
