"""gelu (exact, and torch's approximate="tanh") and silu, fused wherever the other activations are: the
reference against torch.nn.functional, every convolution algorithm, gpu_linear and the gradients against
the reference, and gpuconv.torch's modules against torch's."""

import math

import numpy as np
import pytest
from numba import cuda

from conftest import rel_err
from gpuconv import _args, gpu_conv2d_backward, gpu_linear
from gpuconv import reference as ref
from gpuconv.reference import activations as ref_act
from test_conv2d import run_poisoned

NEW = ["gelu", ("gelu", "tanh"), "silu"]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def test_spec_names_and_errors():
    assert _args.activation_spec("gelu") == ("gelu", 0.0)
    assert _args.activation_spec(("gelu", "none")) == ("gelu", 0.0)
    assert _args.activation_spec(("gelu", "tanh")) == ("gelu_tanh", 0.0)
    assert _args.activation_spec("silu") == ("silu", 0.0)
    with pytest.raises(ValueError, match="approximate 'none' or 'tanh'"):
        _args.activation_spec(("gelu", "erf"))
    with pytest.raises(ValueError, match="approximate 'none' or 'tanh'"):
        _args.activation_spec(("gelu", 1.0))
    with pytest.raises(ValueError, match="takes no parameter"):
        _args.activation_spec(("silu", 1.0))


def test_erfc_against_math():
    """The reference's erfc (NumPy has none) against math.erfc, from the centre to the far tails."""
    t = np.concatenate([np.linspace(-27, 27, 54001), np.logspace(-300, 1, 301), -np.logspace(-300, 1, 301)])
    want = np.array([math.erfc(v) for v in t])
    got = ref_act._erfc(t)
    normal = want > 1e-300
    err = np.abs(got[normal] - want[normal]) / want[normal]
    assert err[np.abs(t[normal]) < 6].max() < 1e-14 and err.max() < 1e-12
    np.testing.assert_array_equal(ref_act._erfc(np.array([np.inf, -np.inf, 0.0])), [0.0, 2.0, 1.0])
    assert np.isnan(ref_act._erfc(np.array([np.nan])))[0]


def _torch_fn(act):
    F = pytest.importorskip("torch.nn.functional")
    return {"gelu": F.gelu, ("gelu", "tanh"): lambda z: F.gelu(z, approximate="tanh"), "silu": F.silu}[act]


@pytest.mark.parametrize("act", NEW, ids=str)
def test_reference_against_torch(act):
    """Values and derivatives equal torch's, in the tails and at ±inf and NaN too."""
    torch = pytest.importorskip("torch")
    z = np.concatenate([np.linspace(-40, 40, 8001), [0.0, -0.0, 1e-300, -1e-300, np.inf, -np.inf, np.nan]])
    zt = torch.from_numpy(z).requires_grad_()
    y = _torch_fn(act)(zt)
    (g,) = torch.autograd.grad(y.sum(), zt)
    np.testing.assert_allclose(ref.activation(z, act), y.detach().numpy(), rtol=1e-14, atol=1e-15)
    # the tanh form's ½·(1 + t) cancels where t → −1: both sides round there, within a few ulps of 1
    np.testing.assert_allclose(ref.activation_grad(z, act), g.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("act", NEW, ids=str)
@pytest.mark.parametrize("kernel, groups", [("general", 1), ("tiled", 1), ("depthwise", 3)])
def test_direct_kernels(rng, act, kernel, groups):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((1, 3, 6, 7)).astype(dtype)
        w = rng.standard_normal((3, 3 // groups, 3, 3)).astype(dtype)
        b = rng.standard_normal(3).astype(dtype)
        got = run_poisoned(x, w, b, activation=act, _kernel=kernel, groups=groups, padding=1)
        assert rel_err(got, ref.conv2d(x, w, b, activation=act, groups=groups, padding=1)) < TOL[dtype]


@pytest.mark.parametrize("act", NEW, ids=str)
@pytest.mark.parametrize("algo, tol", [("im2col", 1e-5), ("implicit_gemm", 1e-5), ("winograd", 1e-4),
                                       ("winograd_2x2", 1e-4)])
def test_gemm_and_winograd_paths(rng, act, algo, tol):
    """The GEMM paths apply these activations in their pass after the product; Winograd in its output
    transform."""
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    got = run_poisoned(x, w, b, algo=algo, activation=act, padding=1)
    assert rel_err(got, ref.conv2d(x, w, b, activation=act, padding=1)) < tol


@pytest.mark.parametrize("act", NEW, ids=str)
def test_linear(rng, act):
    x = rng.standard_normal((5, 12))
    w = rng.standard_normal((7, 12))
    b = rng.standard_normal(7)
    out = cuda.to_device(np.full((5, 7), np.nan))
    gpu_linear(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), activation=act, out=out)
    assert rel_err(out.copy_to_host(), ref.activation(ref.linear(x, w, b), act)) < 1e-12


@pytest.mark.parametrize("act", NEW, ids=str)
def test_conv2d_backward(rng, act):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
        w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
        b = rng.standard_normal(4).astype(dtype)
        go = rng.standard_normal((2, 4, 5, 6)).astype(dtype)
        got = gpu_conv2d_backward(go, x, w, padding=1, bias=b, activation=act)
        want = ref.conv2d_backward(go, x, w, padding=1, bias=b, activation=act)
        for g, r in zip(got, want):
            assert rel_err(g, r) < TOL[dtype]


@pytest.mark.parametrize("act", NEW, ids=str)
def test_torch_module_forward_and_backward(act):
    """gt.Conv2d(activation=...) against torch's conv followed by torch's activation: outputs and every
    gradient."""
    torch = pytest.importorskip("torch")
    gt = pytest.importorskip("gpuconv.torch")
    torch.manual_seed(0)
    ours = gt.Conv2d(3, 4, 3, padding=1, activation=act, dtype=torch.float64)
    theirs = torch.nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    ys = [ours(xs[0]), _torch_fn(act)(theirs(xs[1]))]
    torch.testing.assert_close(ys[0], ys[1], rtol=1e-12, atol=1e-12)
    go = torch.randn_like(ys[0])
    for y in ys:
        y.backward(go)
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-12, atol=1e-12)
    assert f"activation={act!r}" in repr(ours)
