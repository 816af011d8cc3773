"""gelu (exact, and torch's approximate="tanh") and silu, fused wherever the other activations are: the
reference against torch.nn.functional, every convolution algorithm, gpu_linear and the gradients against
the reference, and gpuconv.torch's modules against torch's."""

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from numba import cuda

from conftest import ON_GPU, rel_err
from gpuconv import _args, gpu_conv2d_backward, gpu_linear, kernel_report
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


@pytest.mark.parametrize("act", NEW, ids=str)
def test_float32_passes_at_the_extremes(act):
    """The float32 activation pass and its gradient pass at ±inf, NaN, ±0, denormals, the tails and where
    float32 intermediates overflow (tanh-GELU's z³): NaN and ±inf exactly where torch's float32 ops put them
    (but gelu(inf) = inf, as torch's float64 and the reference), finite values within float32 rounding of
    the float64 reference (torch's own float32 exact GELU loses the lower tail to 1 + erf cancelling).
    Large negative z only on a device: there exp(−z) overflows to inf, in the simulator math.exp raises."""
    torch = pytest.importorskip("torch")
    from gpuconv.kernels import _common, epilogue

    z = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40, -1e-40, 1e-30, 3.0, -3.0, 5.5, -5.5, 10.0, -10.0, -20.0, 88.0,
         100.0, -100.0, 1e38, 1e20, 1e13]
    if ON_GPU:
        z += [-88.5, -89.0, -1e13, -1e20, -1e38]
    z = np.array(z, dtype=np.float32)
    shape = (1, 1, 1, z.size)
    name, _ = _args.activation_spec(act)
    code = _common.ACT_CODES[name]
    zt = torch.from_numpy(z.copy()).requires_grad_()
    yt = _torch_fn(act)(zt)
    (gt,) = torch.autograd.grad(yt.sum(), zt)
    y = cuda.to_device(z.reshape(shape))
    g = cuda.to_device(np.full(shape, np.nan, dtype=np.float32))
    with warnings.catch_warnings():               # the simulator's NumPy scalars warn where the device is silent
        warnings.simplefilter("ignore", RuntimeWarning)
        epilogue.launch_activation(shape, np.float32, code, 0.0)(y, 0)
        epilogue.launch_activation_grad(shape, np.float32, code, 0.0)(
            cuda.to_device(np.ones(shape, np.float32)), cuda.to_device(z.reshape(shape)), g, 0)
    z64 = z.astype(np.float64)
    # the tanh form's ½·(1 + t) cancels where t -> -1 (in torch's float32 as here): absolute error ~ eps·|z|
    slack = 4 * np.finfo(np.float32).eps * np.maximum(1, np.abs(z64)) * (name == "gelu_tanh")
    for i, (ours, theirs, want) in enumerate(((y, yt, ref.activation(z64, act)),
                                              (g, gt, ref.activation_grad(z64, act)))):
        ours, theirs = ours.copy_to_host().ravel(), theirs.detach().numpy().copy()
        if name == "gelu" and i == 0:
            theirs[z == np.inf] = np.inf    # torch's float32 CPU gelu(inf) is NaN; its float64 one's and ours inf
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"NaN where torch's: z = {z}")
        inf = np.isinf(theirs)
        np.testing.assert_array_equal(ours[inf], theirs[inf])
        finite = np.isfinite(ours)
        np.testing.assert_array_equal(finite, np.isfinite(theirs))
        err = np.abs(ours[finite] - want[finite])
        bound = 2e-6 * np.abs(want[finite]) + np.finfo(np.float32).tiny + slack[finite]
        assert np.all(err <= bound), (z[finite], ours[finite], want[finite])


_PTX_PROBE = """
import dataclasses, functools, json, os, re
os.environ["NUMBA_ENABLE_CUDASIM"] = "0"; os.environ["GPUCONV_SIMULATOR"] = "0"
from gpuconv import kernel_report
from gpuconv.kernels import _common, epilogue, winograd
specs = {s.name: s for s in kernel_report.kernel_specs()}
found = {}
for act in ("ACT_GELU", "ACT_GELU_TANH", "ACT_SILU"):
    code = getattr(_common, act)
    for name, factory in (("activation", epilogue.activation_kernel),
                          ("activation_grad", epilogue.activation_grad_kernel),
                          ("winograd2_output", functools.partial(winograd.output_transform_kernel, m=2))):
        spec = dataclasses.replace(specs[name], factory=functools.partial(factory, act=code))
        ptx = kernel_report.ptx_of(spec, "float32", "sm_90")
        found[f"{name}/{act}"] = sorted(set(re.findall(r"\\b[a-z]+(?:\\.[a-z0-9]+)*\\.f64\\b", ptx)))
print(json.dumps(found))
"""


def test_float32_builds_stay_in_float32():
    """The float32 builds of the new activations and their derivatives have no float64 instruction in their
    PTX (a float64 constant would promote the arithmetic: erfc, tanh and exp run in double then).
    Compiled in a child process with the simulator off (NVVM only, no GPU)."""
    if kernel_report.find_tool("ptxas") is None:
        pytest.skip("no CUDA compiler tools (install the dev extra)")
    proc = subprocess.run([sys.executable, "-c", _PTX_PROBE], capture_output=True, text=True,
                          env=dict(os.environ, NUMBA_ENABLE_CUDASIM="0", GPUCONV_SIMULATOR="0"))
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(found) == 9 and found == {k: [] for k in found}
