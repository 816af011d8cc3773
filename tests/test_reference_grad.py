"""Every gradient of the reference against central finite differences (float64, tiny shapes)."""

import numpy as np
import pytest

from gpuconv import reference as ref

EPS = 1e-6


def numgrad(f, a):
    """d sum(f(a) * probe) / da by central differences; f returns an array."""
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + EPS
        fp = f()
        a[i] = old - EPS
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * EPS)
    return g


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("act", [None, "relu", ("leaky_relu", 0.2), "sigmoid", "tanh", ("elu", 0.7), "gelu", "silu"])
@pytest.mark.parametrize("kw", [
    dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2),
    dict(stride=2, padding="same", dilation=1, groups=1),
])
def test_conv2d_backward(rng, mode, act, kw):
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 4 // kw["groups"], 3, 2)), rng.standard_normal(4)
    fwd = lambda: ref.conv2d(x, w, b, padding_mode=mode, activation=act, **kw)  # noqa: E731
    probe = rng.standard_normal(fwd().shape)
    loss = lambda: float(np.sum(fwd() * probe))  # noqa: E731
    gx, gw, gb = ref.conv2d_backward(probe, x, w, padding_mode=mode, bias=b, activation=act, **kw)
    for got, arr in ((gx, x), (gw, w), (gb, b)):
        np.testing.assert_allclose(got, numgrad(loss, arr), rtol=1e-5, atol=1e-6)


def test_conv2d_backward_needs(rng):
    x, w = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((3, 2, 3, 3))
    gx, gw, gb = ref.conv2d_backward(np.ones((1, 3, 2, 2)), x, w, needs=("weight",))
    assert gx is None and gb is None and gw.shape == w.shape
    with pytest.raises(ValueError, match="needs"):
        ref.conv2d_backward(np.ones((1, 3, 2, 2)), x, w, needs=("inputs",))


def test_input_gradient_is_full_correlation_with_rotated_kernel(rng):
    """Stride 1, zero padding 0: grad_x = full correlation of grad_out with the kernel rotated 180°."""
    x, w = rng.standard_normal((1, 3, 6, 5)), rng.standard_normal((2, 3, 3, 2))
    go = rng.standard_normal((1, 2, 4, 4))
    gx, _, _ = ref.conv2d_backward(go, x, w)
    rot = np.flip(w, axis=(2, 3)).transpose(1, 0, 2, 3)     # (C, K, R, S)
    np.testing.assert_allclose(gx, ref.conv2d(go, rot, padding=(2, 2, 1, 1)), rtol=1e-12)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1))])
def test_max_pool_backward(rng, kw):
    x = rng.permutation(60).reshape(1, 2, 5, 6).astype(np.float64)   # distinct values: no ties
    probe = rng.standard_normal(ref.max_pool2d(x, **kw).shape)
    got = ref.max_pool2d_backward(probe, x, **kw)
    np.testing.assert_allclose(got, numgrad(lambda: float(np.sum(ref.max_pool2d(x, **kw) * probe)), x), atol=1e-6)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                                dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
                                dict(kernel_size=2, divisor_override=3)])
def test_avg_pool_backward(rng, kw):
    x = rng.standard_normal((1, 2, 5, 6))
    probe = rng.standard_normal(ref.avg_pool2d(x, **kw).shape)
    got = ref.avg_pool2d_backward(probe, x, **kw)
    np.testing.assert_allclose(got, numgrad(lambda: float(np.sum(ref.avg_pool2d(x, **kw) * probe)), x), atol=1e-6)


def test_global_pool_backward(rng):
    x = rng.permutation(40).reshape(2, 1, 4, 5).astype(np.float64)
    probe = rng.standard_normal((2, 1, 1, 1))
    for fwd, bwd in ((ref.global_max_pool2d, ref.global_max_pool2d_backward),
                     (ref.global_avg_pool2d, ref.global_avg_pool2d_backward)):
        np.testing.assert_allclose(bwd(probe, x), numgrad(lambda: float(np.sum(fwd(x) * probe)), x), atol=1e-6)


@pytest.mark.parametrize("act", ["relu", ("leaky_relu", 0.3), "sigmoid", "tanh", ("elu", 1.5), "gelu", ("gelu", "tanh"),
                                 "silu"])
def test_activation_grads(rng, act):
    z = rng.standard_normal(50) * 3
    z = z[np.abs(z) > 1e-3]                       # keep away from the kinks
    num = (ref.activation(z + EPS, act) - ref.activation(z - EPS, act)) / (2 * EPS)
    np.testing.assert_allclose(ref.activation_grad(z, act), num, rtol=1e-6, atol=1e-8)


def test_linear_and_transpose_grads(rng):
    x, w = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 3, 2, 2))
    probe = rng.standard_normal(ref.conv_transpose2d(x, w, stride=2, padding=1).shape)
    gx = numgrad(lambda: float(np.sum(ref.conv_transpose2d(x, w, stride=2, padding=1) * probe)), x)
    # the input gradient of the transposed conv is the forward conv of its output gradient
    np.testing.assert_allclose(ref.conv2d(probe, w, stride=2, padding=1), gx, atol=1e-6)
