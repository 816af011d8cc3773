"""float16 and bfloat16 through every public op, against the float64 reference on the same inputs
rounded to the dtype.

The bound: float32 accumulation, then one rounding of each result to the dtype, so the relative error
‖out − ref‖ / ‖ref‖ is at most the dtype's unit roundoff u (2^-11 float16, 2^-8 bfloat16) plus float32's
accumulated error K · 2^-24 (K terms per output) — the ops here have K ≤ 200, so u + 200·2^-24 ≈ u.
Max pooling only selects, so it is exact. Tiny shapes: these run in the simulator."""

import ml_dtypes
import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import rel_err
from gpuconv import _precision
from gpuconv import reference as ref

DTYPES = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def bound(name, k=200):
    return _precision.error_bound(name, k)


def tf32(v):
    """float32 v rounded to TF32 as the tensor cores round it, as float64."""
    return _precision.round_tf32(v).astype(np.float64)


def rounded(rng, shape, dt):
    """(the 16-bit array, its values as float64)."""
    h = rng.standard_normal(shape).astype(np.float32).astype(dt)
    return h, h.astype(np.float64)


def f64(a):
    return np.asarray(a).astype(np.float64)


# (name, the op on 16-bit arrays, the reference on float64 arrays, K: terms per output, exact?)
def _conv(x, w, b):
    return gpuconv.gpu_conv2d(x, w, b, padding=1, algo="direct")


def _conv_ref(x, w, b):
    return ref.conv2d(x, w, b, padding=1)


OPS = [
    ("conv2d direct", _conv, _conv_ref),
    ("conv_transpose2d", lambda x, w, b: gpuconv.gpu_conv_transpose2d(x, w.transpose(1, 0, 2, 3).copy(), b, stride=2),
     lambda x, w, b: ref.conv_transpose2d(x, w.transpose(1, 0, 2, 3).copy(), b, stride=2)),
    ("avg_pool2d", lambda x, w, b: gpuconv.gpu_avg_pool2d(x, 3, 2, 1), lambda x, w, b: ref.avg_pool2d(x, 3, 2, 1)),
    ("global_avg_pool2d", lambda x, w, b: gpuconv.gpu_global_avg_pool2d(x), lambda x, w, b: ref.global_avg_pool2d(x)),
    ("max_pool2d", lambda x, w, b: gpuconv.gpu_max_pool2d(x, 3, 2, 1), lambda x, w, b: ref.max_pool2d(x, 3, 2, 1)),
    ("global_max_pool2d", lambda x, w, b: gpuconv.gpu_global_max_pool2d(x), lambda x, w, b: ref.global_max_pool2d(x)),
]


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("op, fn, ref_fn", OPS, ids=[o[0] for o in OPS])
def test_forward_ops(rng, name, op, fn, ref_fn):
    dt = DTYPES[name]
    x, x64 = rounded(rng, (2, 4, 7, 7), dt)
    w, w64 = rounded(rng, (4, 4, 3, 3), dt)
    b, b64 = rounded(rng, (4,), dt)
    y = fn(x, w, b)
    assert isinstance(y, np.ndarray) and y.dtype == dt
    err = rel_err(f64(y), ref_fn(x64, w64, b64))
    assert err == 0 if "max" in op else err <= bound(name)


@pytest.mark.parametrize("name", DTYPES)
def test_backward_ops(rng, name):
    """Conv and transposed-conv gradients and the pooling gradients, each result in the dtype."""
    dt = DTYPES[name]
    x, x64 = rounded(rng, (1, 3, 5, 5), dt)
    w, w64 = rounded(rng, (2, 3, 3, 3), dt)
    go, go64 = rounded(rng, (1, 2, 5, 5), dt)
    got = gpuconv.gpu_conv2d_backward(go, x, w, padding=1)
    want = ref.conv2d_backward(go64, x64, w64, padding=1)
    for g, r in zip(got, want):
        assert g.dtype == dt and rel_err(f64(g), r) <= bound(name)
    # transposed convolution of go (2 channels -> 3) with weight w (2, 3, 3, 3): gradients w.r.t. go and w
    got = gpuconv.gpu_conv_transpose2d_backward(x, go, w, padding=1, needs=("input", "weight"))
    y_ref = ref.conv_transpose2d(go64, w64, padding=1)
    assert y_ref.shape == x.shape
    assert got[0].dtype == dt and rel_err(f64(got[0]), ref.conv2d(x64, w64, padding=1)) <= bound(name)
    assert got[2] is None
    y, idx = gpuconv.gpu_max_pool2d(x, 2, return_indices=True)
    assert idx.dtype == np.int64
    pgo, pgo64 = rounded(rng, y.shape, dt)
    gx = gpuconv.gpu_max_pool2d_backward(pgo, x, 2, indices=idx)
    assert gx.dtype == dt and rel_err(f64(gx), ref.max_pool2d_backward(pgo64, x64, 2)) == 0
    gx = gpuconv.gpu_avg_pool2d_backward(pgo, x, 2)
    assert gx.dtype == dt and rel_err(f64(gx), ref.avg_pool2d_backward(pgo64, x64, 2)) <= bound(name)


def test_rounds_to_nearest_even():
    """Results are rounded, not truncated: a global average landing halfway between two bfloat16 values
    goes to the even one, just above halfway goes up."""
    bf = DTYPES["bfloat16"]
    one_up = np.float32(1 + 2.0 ** -7)                          # the bfloat16 after 1.0
    x = np.array([1.0, float(one_up)], np.float32).astype(bf).reshape(1, 1, 1, 2)   # mean: 1 + 2^-8, a tie
    assert float(gpuconv.gpu_global_avg_pool2d(x).item()) == 1.0
    x = np.array([1.0, float(one_up), float(one_up), float(one_up)], np.float32).astype(bf).reshape(1, 1, 2, 2)
    assert float(gpuconv.gpu_global_avg_pool2d(x).item()) == float(one_up)   # 1 + 1.5·2^-8: nearer the upper


def test_interop_and_out(rng):
    """Device arrays stay on the device with the input's dtype; out= is filled in place; PyTorch bfloat16
    tensors come back as PyTorch bfloat16 tensors."""
    x, x64 = rounded(rng, (1, 2, 5, 5), np.float16)
    d = gpuconv.gpu_avg_pool2d(cuda.to_device(x), 2)
    assert hasattr(d, "copy_to_host") and d.dtype == np.float16       # a Numba device array
    out = np.full((1, 2, 2, 2), np.nan, np.float16)
    assert gpuconv.gpu_avg_pool2d(x, 2, out=out) is out
    assert rel_err(f64(out), ref.avg_pool2d(x64, 2)) <= bound("float16")
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    y = gpuconv.gpu_max_pool2d(t, 2)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16
    assert torch.equal(y, torch.nn.functional.max_pool2d(t, 2))


def test_errors_before_any_allocation(rng, monkeypatch):
    """A 16-bit call is checked whole (dtype, side and every shape) before anything is widened."""
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float16)
    w = rng.standard_normal((2, 4, 3, 3)).astype(np.float16)
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    monkeypatch.setattr(cuda, "device_array", lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated")))
    with pytest.raises(TypeError, match="mixed dtypes: x is float16 but weight is float32"):
        gpuconv.gpu_conv2d(x, w.astype(np.float32))
    with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16, got int16"):
        gpuconv.gpu_conv2d(x.view(np.int16), w.view(np.int16))
    with pytest.raises(ValueError, match="has 2 input channels per group"):
        gpuconv.gpu_conv2d(x, w[:, :2])
    with pytest.raises(ValueError, match=r"out must have shape \(1, 2, 4, 4\)"):
        gpuconv.gpu_conv2d(x, w, out=np.zeros((1, 2, 3, 3), np.float16))
    with pytest.raises(TypeError, match="out must have dtype float16"):
        gpuconv.gpu_conv2d(x, w, out=np.zeros((1, 2, 4, 4), np.float32))
    wd = w[:1].reshape(4, 1, 3, 3)[:, :, :2]                    # depthwise: the 16-bit kernel's route
    with pytest.raises(ValueError, match=r"out must have shape \(1, 4, 5, 4\)"):
        gpuconv.gpu_conv2d(x, wd, groups=4, algo="direct", out=np.zeros((1, 4, 4, 4), np.float16))
    with pytest.raises(TypeError, match="out must have dtype float16"):
        gpuconv.gpu_conv2d(x, wd, groups=4, out=np.zeros((1, 4, 5, 4), np.float32))
    with pytest.raises(ValueError, match="_kernel='depthwise' cannot run"):
        gpuconv.gpu_conv2d(x, w, _kernel="depthwise")
    with pytest.raises(ValueError, match="grad_out must have the forward's output shape"):
        gpuconv.gpu_conv2d_backward(x, x, w)
    with pytest.raises(TypeError, match="indices must be int64"):
        gpuconv.gpu_max_pool2d_backward(x[:, :, :3, :3], x, 2, indices=np.zeros((1, 4, 3, 3), np.int32))


# ----------------------------------------------------------------------------- tensor cores
# gpu_matmul, gpu_linear and gpu_conv2d's im2col read 16-bit data natively (gemm_tc); these tests forbid
# the widening route so they fail if a call falls back to it. One or two 128×128 blocks each (the
# simulator runs gemm_tc's 256 threads in Python: ~10 s a block and K step of 32). Each is also held to
# PyTorch's CPU result in the same dtype: no worse than twice its error.


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(_precision, "widen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("widened")))


def no_worse_than_torch(err, torch_fn, want):
    """err within twice PyTorch's CPU error in the dtype (its result from torch_fn()), where PyTorch runs it."""
    torch = pytest.importorskip("torch")
    try:
        got = torch_fn(torch)
    except RuntimeError:                 # an op this PyTorch build has no CPU kernel for in the dtype
        return
    assert err <= 2 * rel_err(got.float().numpy(), want) + 2.0 ** -24


def _t(torch, a):
    """A PyTorch CPU tensor of 16-bit NumPy array a, same dtype."""
    if a.dtype == DTYPES["bfloat16"]:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


@pytest.mark.parametrize("name", ["float16"])
def test_matmul_tensor_cores(rng, native, name):
    """b a transposed view (the other operand layout)."""
    dt = DTYPES[name]
    a, a64 = rounded(rng, (20, 30), dt)
    bt, bt64 = rounded(rng, (24, 30), dt)
    c = gpuconv.gpu_matmul(a, bt.T)
    assert c.dtype == dt
    want = a64 @ bt64.T
    err = rel_err(f64(c), want)
    assert err <= bound(name, 30)
    no_worse_than_torch(err, lambda torch: _t(torch, a) @ _t(torch, bt).T, want)


@pytest.mark.parametrize("name, activation", [("bfloat16", "sigmoid")])
def test_linear_tensor_cores(rng, native, name, activation):
    """Bias fused in the epilogue, sigmoid in the pass over the 16-bit result (two roundings: the
    product's, then the activation's, as PyTorch's linear then sigmoid)."""
    dt = DTYPES[name]
    x, x64 = rounded(rng, (6, 2, 3, 4), dt)
    w, w64 = rounded(rng, (10, 24), dt)
    b, b64 = rounded(rng, (10,), dt)
    y = gpuconv.gpu_linear(x, w, b, activation)
    assert y.dtype == dt and y.shape == (6, 10)
    want = ref.activation(ref.linear(x64.reshape(6, 24), w64, b64), activation)
    assert rel_err(f64(y), want) <= 2 * bound(name, 24)


@pytest.mark.parametrize("name, kwargs", [
    ("float16", dict(padding=1, padding_mode="reflect", activation="relu")),        # fused epilogue; "auto"
    ("bfloat16", dict(padding=(1, 0), stride=2, groups=2, activation="elu", algo="im2col")),   # two GEMMs; late elu
])
def test_conv2d_im2col_tensor_cores(rng, native, name, kwargs):
    dt = DTYPES[name]
    groups = kwargs.get("groups", 1)
    x, x64 = rounded(rng, (1, 2 * groups, 6, 6), dt)                     # C/groups·R·S = 18: one K step
    w, w64 = rounded(rng, (16 * groups, 2, 3, 3), dt)                    # "auto" picks im2col: 16 rows a group
    b, b64 = rounded(rng, (16 * groups,), dt)
    act = kwargs.pop("activation")
    algo = kwargs.pop("algo", "auto")
    y = gpuconv.gpu_conv2d(x, w, b, activation=act, algo=algo, **kwargs)
    assert y.dtype == dt
    z = ref.conv2d(x64, w64, b64, **kwargs)
    err = rel_err(f64(y), ref.activation(z, act))
    assert err <= (bound(name, 18) if act == "relu" else 2 * bound(name, 18))
    if act == "relu":
        no_worse_than_torch(err, lambda torch: torch.relu(torch.nn.functional.conv2d(
            torch.nn.functional.pad(_t(torch, x), (1, 1, 1, 1), mode="reflect"), _t(torch, w), _t(torch, b))),
            ref.activation(z, act))


@pytest.fixture
def no_cuda_cores(monkeypatch):
    """Forbid the gradients' float32 CUDA-core kernels: the GEMM (kernels/gemm.py) and the data-gradient
    gather (kernels/backward.py)."""
    from gpuconv import backward

    def refuse(what):
        return lambda *a, **k: (_ for _ in ()).throw(AssertionError(what))

    monkeypatch.setattr(backward.kgemm, "launch_gemm", refuse("CUDA-core GEMM"))
    monkeypatch.setattr(backward, "_data_grad", refuse("CUDA-core data gradient"))


@pytest.mark.parametrize("name, n, mode, needs", [("float16", 2, "zeros", ("weight",)),
                                                  ("bfloat16", 1, "reflect", ("input", "weight"))])
def test_gradients_on_tensor_cores(rng, native, no_cuda_cores, name, n, mode, needs):
    """Weight gradient on gemm_tc from 16-bit columns, input gradient as col2im of gemm_tc's float32
    columns: nothing widened, no CUDA-core kernel. Each sum (weight: over images — float16 has two, so
    the GEMM's float32 accumulate — and pixels; input: over the columns' products) is rounded once, so
    within u + K·2^-24 of the reference (K = N·P·Q terms for the weight, K·R·S for the input), and no
    worse than twice PyTorch's CPU error."""
    dt = DTYPES[name]
    x, x64 = rounded(rng, (n, 2, 4, 4), dt)
    w, w64 = rounded(rng, (16, 2, 3, 3), dt)                 # K = 16, C·R·S = 18: each fills an mma tile
    go, go64 = rounded(rng, (n, 16, 4, 4), dt)
    gx, gw, gb = gpuconv.gpu_conv2d_backward(go, x, w, padding=1, padding_mode=mode, needs=needs)
    want = ref.conv2d_backward(go64, x64, w64, padding=1, padding_mode=mode)
    assert gb is None and gw.dtype == dt and gw.shape == w.shape
    err = rel_err(f64(gw), want[1])
    assert err <= bound(name, n * 16)
    if mode == "zeros":
        no_worse_than_torch(err, lambda torch: torch.nn.grad.conv2d_weight(_t(torch, x), w.shape, _t(torch, go),
                                                                           padding=1), want[1])
    if "input" in needs:
        assert gx.dtype == dt and gx.shape == x.shape and rel_err(f64(gx), want[0]) <= bound(name, 16 * 9)
    else:
        assert gx is None


def test_backward_tensor_cores_and_16bit_bias(rng, native, no_cuda_cores):
    """All three gradients of unbatched float16 device arrays, stride 2: input and weight gradients on the
    tensor cores (the CUDA-core kernels are forbidden), the bias gradient by its 16-bit build (nothing
    widened); each a device array in the dtype, within its bound (terms per result: K·R·S = 144 for the
    input, P·Q = 4 for the others). grad_out is a view whose pixels do not merge into one axis (copied
    densely for the GEMMs; the bias gradient reads it in place)."""
    dt = DTYPES["float16"]
    x, x64 = rounded(rng, (2, 4, 4), dt)
    w, w64 = rounded(rng, (16, 2, 3, 3), dt)
    wide, wide64 = rounded(rng, (16, 2, 4), dt)
    go, go64 = wide[:, :, :2], wide64[:, :, :2]
    dgo = cuda.to_device(wide)[:, :, :2]
    got = gpuconv.gpu_conv2d_backward(dgo, cuda.to_device(x), cuda.to_device(w), stride=2, padding=1)
    want = ref.conv2d_backward(go64[None], x64[None], w64, stride=2, padding=1)
    for g, r, k in zip(got, (want[0][0], want[1], want[2]), (144, 4, 4)):
        assert hasattr(g, "copy_to_host") and g.dtype == dt
        assert rel_err(f64(g.copy_to_host()), r) <= bound("float16", k)


# ----------------------------------------------------------------------------- 16-bit depthwise, activation passes
# The depthwise kernel and the activation passes read and write the 16-bit data themselves (float32
# inside, each result rounded once); `native` makes any fallback to the widening route fail. Two
# output channels of a one-tile image per call (the simulator runs the kernel's 128 threads in Python).

DEPTHWISE = [   # (dtype, x shape, weight shape, keyword arguments)
    ("float16", (1, 2, 6, 7), (2, 1, 3, 3), dict(padding=1, activation="relu")),          # "auto" picks it
    ("bfloat16", (1, 2, 7, 6), (2, 1, 3, 3), dict(padding=1, stride=2, padding_mode="reflect",
                                                   activation="silu", algo="direct")),
    ("float16", (1, 2, 7, 7), (2, 1, 3, 2), dict(padding=(2, 1), dilation=2, padding_mode="replicate",
                                                  activation=("gelu", "tanh"), algo="direct")),
    ("bfloat16", (1, 1, 5, 6), (2, 1, 3, 3), dict(padding=1, padding_mode="circular", activation="tanh",
                                                   groups=1, algo="direct")),                  # multiplier 2
    ("float16", (1, 2, 9, 9), (2, 1, 9, 9), dict(padding=4, activation=("elu", 0.5))),    # a window not compiled in
]


@pytest.mark.parametrize("name, x_shape, w_shape, kwargs", DEPTHWISE,
                         ids=[f"{c[0]}-{c[3].get('padding_mode', 'zeros')}-{c[2][2]}x{c[2][3]}" for c in DEPTHWISE])
def test_depthwise_16bit(rng, native, name, x_shape, w_shape, kwargs):
    """Every padding mode, strides, dilation, a channel multiplier, fused activations, compiled and
    runtime windows; host arrays in and out. One rounding of a float32 result: within bound(R·S + 1)."""
    dt = DTYPES[name]
    kwargs = dict(kwargs, groups=kwargs.get("groups", x_shape[1]))
    x, x64 = rounded(rng, x_shape, dt)
    w, w64 = rounded(rng, w_shape, dt)
    b, b64 = rounded(rng, w_shape[:1], dt)
    y = gpuconv.gpu_conv2d(x, w, b, **kwargs)
    act = kwargs.pop("activation")
    kwargs.pop("algo", None)
    want = ref.activation(ref.conv2d(x64, w64, b64, **kwargs), act)
    assert y.dtype == dt and y.shape == want.shape
    assert rel_err(f64(y), want) <= bound(name, w_shape[2] * w_shape[3] + 1)


def test_depthwise_16bit_device(rng, native, host_copies):
    """Device arrays used in place (no host copy): a strided x (the kernel's general variant), out= a
    strided device array, unbatched."""
    x, x64 = rounded(rng, (2, 5, 8), np.float16)
    w, w64 = rounded(rng, (2, 1, 3, 3), np.float16)
    wide = np.zeros((2, 5, 16), np.float16)
    wide[:, :, ::2] = x                                    # x[c, h, w] at column 2·w: not C-contiguous
    dx = cuda.to_device(wide)[:, :, ::2]
    dout = cuda.to_device(np.full((2, 2, 3, 8), np.nan, np.float16))[:, 0]
    dw = cuda.to_device(w)
    gpuconv.gpu_conv2d(dx, dw, groups=2, padding=(0, 1), algo="direct")     # warm-up: placeholders made on first use
    with host_copies() as count:
        y = gpuconv.gpu_conv2d(dx, dw, groups=2, padding=(0, 1), algo="direct", out=dout)
    assert not count, dict(count)
    assert y is dout
    want = ref.conv2d(x64[None], w64, groups=2, padding=(0, 1))[0]
    assert rel_err(f64(y.copy_to_host()), want) <= bound("float16", 9)


def test_depthwise_16bit_host_out(rng, native):
    """A host out= gets the result in place."""
    x, x64 = rounded(rng, (1, 2, 5, 5), ml_dtypes.bfloat16)
    w, w64 = rounded(rng, (2, 1, 3, 3), ml_dtypes.bfloat16)
    out = np.full((1, 2, 3, 3), np.nan, ml_dtypes.bfloat16)
    assert gpuconv.gpu_conv2d(x, w, groups=2, out=out) is out
    assert rel_err(f64(out), ref.conv2d(x64, w64, groups=2)) <= bound("bfloat16", 9)


def test_im2col_late_activation_into_strided_out(rng, native):
    """im2col on the tensor cores into a device out= whose pixels do not merge: the product goes to a
    dense temporary, is copied into out= by the activation-gradient pass's 16-bit build, then tanh runs
    in the activation pass's 16-bit build (general variants: out= is strided)."""
    x, x64 = rounded(rng, (1, 2, 5, 5), np.float16)
    w, w64 = rounded(rng, (16, 2, 3, 3), np.float16)
    dout = cuda.to_device(np.full((1, 16, 10, 5), np.nan, np.float16))[:, :, ::2]   # every other row
    y = gpuconv.gpu_conv2d(cuda.to_device(x), cuda.to_device(w), padding=1, activation="tanh", out=dout)
    assert y is dout
    want = ref.activation(ref.conv2d(x64, w64, padding=1), "tanh")
    assert rel_err(f64(y.copy_to_host()), want) <= 2 * bound("float16", 18)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_bias_gradient_16bit_beside_widened_gradients(rng, monkeypatch, name):
    """A depthwise layer (no tensor cores): the input and weight gradients widened, the bias gradient by
    its 16-bit build from grad_out itself (asked alone, nothing is widened), each sum rounded once."""
    dt = DTYPES[name]
    x, x64 = rounded(rng, (2, 2, 5, 5), dt)
    w, w64 = rounded(rng, (2, 1, 3, 3), dt)
    go, go64 = rounded(rng, (2, 2, 5, 5), dt)
    got = gpuconv.gpu_conv2d_backward(go, x, w, padding=1, groups=2)
    want = ref.conv2d_backward(go64, x64, w64, padding=1, groups=2)
    for g, r, k in zip(got, want, (9, 50, 50)):
        assert g.dtype == dt and rel_err(f64(g), r) <= bound(name, k)
    monkeypatch.setattr(_precision, "widen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("widened")))
    gx, gw, gb = gpuconv.gpu_conv2d_backward(go, x, w, padding=1, groups=2, needs=("bias",))
    assert gx is None and gw is None
    np.testing.assert_array_equal(gb.view(np.uint16), got[2].view(np.uint16))


def test_other_direct_kernels_still_widen(rng, monkeypatch):
    """Only the depthwise kernel has a 16-bit build: a grouped layer it does not take is widened."""
    widened = []
    real = _precision.widen
    monkeypatch.setattr(_precision, "widen", lambda *a, **k: widened.append(1) or real(*a, **k))
    x, x64 = rounded(rng, (1, 4, 4, 4), np.float16)
    w, w64 = rounded(rng, (2, 2, 3, 3), np.float16)
    y = gpuconv.gpu_conv2d(x, w, groups=2, algo="direct")
    assert widened and y.dtype == np.float16
    assert rel_err(f64(y), ref.conv2d(x64, w64, groups=2)) <= bound("float16", 18)


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("strided", [False, True], ids=["dense", "general"])
def test_activation_passes_16bit(rng, name, strided):
    """The activation pass and its gradient on 16-bit bits: act(y) and go · act'(z) in float32, rounded
    once (within the unit roundoff of the float64 result on the same values); with no activation the
    gradient pass copies the bits exactly."""
    from gpuconv.kernels import _common, epilogue

    dt = DTYPES[name]
    kind = _precision.fmt(dt)
    shape = (1, 2, 3, 5)
    y, y64 = rounded(rng, shape, dt)
    go, go64 = rounded(rng, shape, dt)

    def dev(a):
        """uint16 device bits of a (a strided view for the general variant)."""
        if not strided:
            return cuda.to_device(a.view(np.uint16))
        wide = np.zeros(shape[:3] + (2 * shape[3],), np.uint16)
        wide[..., ::2] = a.view(np.uint16)
        return cuda.to_device(wide)[..., ::2]

    d = dev(y)
    epilogue.launch_activation(shape, kind, _common.ACT_ELU, 0.7)(d, 0)
    assert rel_err(f64(d.copy_to_host().view(dt)), ref.activation(y64, ("elu", 0.7))) <= bound(name, 4)
    out = dev(np.full(shape, np.nan, dt))
    epilogue.launch_activation_grad(shape, kind, _common.ACT_SIGMOID, 0.0)(dev(go), dev(y), out, 0)
    want = go64 * ref.activation_grad(y64, "sigmoid")
    assert rel_err(f64(out.copy_to_host().view(dt)), want) <= bound(name, 8)
    epilogue.launch_activation_grad(shape, kind, _common.ACT_NONE, 0.0)(dev(go), dev(go), out, 0)
    assert np.array_equal(out.copy_to_host(), go.view(np.uint16))


def test_tf32(rng):
    """TF32 only when asked (keyword, or the module switch, which the keyword overrides): against a
    reference on TF32-rounded inputs (cvt.rna: 10-bit mantissa) the products are exact in float32, so
    only float32 accumulation remains; the exact-input reference sees the operand rounding."""
    a = rng.standard_normal((20, 16)).astype(np.float32)                       # K = 16: one TF32 K step
    b = rng.standard_normal((16, 24)).astype(np.float32)
    exact, rounded_ref = a.astype(np.float64) @ b, tf32(a) @ tf32(b)
    assert gpuconv.allow_tf32() is False
    assert rel_err(gpuconv.gpu_matmul(a, b), exact) < 1e-6                      # default: float32 FMA
    old = gpuconv.set_allow_tf32(True)
    try:
        assert old is False and gpuconv.allow_tf32() is True
        c = gpuconv.gpu_matmul(a, b)
        assert rel_err(c, rounded_ref) < 20 * 2.0 ** -24
        assert 2.0 ** -14 < rel_err(c, exact) < 2.0 ** -10                     # TF32's operand rounding
        assert rel_err(gpuconv.gpu_matmul(a, b, allow_tf32=False), exact) < 1e-6
    finally:
        gpuconv.set_allow_tf32(old)
    with pytest.raises(TypeError, match="allow_tf32 must be a bool"):
        gpuconv.gpu_matmul(a, b, allow_tf32="yes")


def test_weight_grad_tf32(rng):
    """gpu_conv2d_backward(allow_tf32=True): the float32 weight gradient on TF32 tensor cores, against
    the reference on TF32-rounded inputs (float32 accumulation only: K·2^-24, K = P·Q = 16 terms)."""
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = rng.standard_normal((16, 2, 3, 3)).astype(np.float32)
    go = rng.standard_normal((1, 16, 4, 4)).astype(np.float32)
    exact = ref.conv2d_backward(go.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=1)[1]
    rounded_ref = ref.conv2d_backward(tf32(go), tf32(x), w.astype(np.float64), padding=1)[1]
    _, gw, _ = gpuconv.gpu_conv2d_backward(go, x, w, padding=1, needs=("weight",), allow_tf32=True)
    assert gw.dtype == np.float32
    assert rel_err(gw, rounded_ref) < 16 * 2.0 ** -24
    assert 2.0 ** -14 < rel_err(gw, exact) < 2.0 ** -10                        # TF32's operand rounding
    with pytest.raises(TypeError, match="allow_tf32 must be a bool"):
        gpuconv.gpu_conv2d_backward(go, x, w, padding=1, allow_tf32="yes")


def test_torch_modules(rng):
    """gpuconv.torch in bfloat16: forward and autograd (the direct convolution widened, pooling native),
    against PyTorch in float64 on the same bfloat16 values."""
    torch = pytest.importorskip("torch")
    import gpuconv.torch as gt

    torch.manual_seed(0)
    conv = gt.Conv2d(2, 3, 3, padding=1, algo="direct").to(torch.bfloat16)
    x = torch.randn(1, 2, 5, 5).to(torch.bfloat16).requires_grad_()
    y = gt.MaxPool2d(2)(conv(x))
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    x64 = x.detach().double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    y64 = torch.nn.functional.max_pool2d(torch.nn.functional.conv2d(x64, w64, conv.bias.detach().double(), padding=1), 2)
    y64.square().sum().backward()
    assert rel_err(y.detach().double().numpy(), y64.detach().numpy()) <= bound("bfloat16", 18)
    # gradients: grad_out 2·y is itself rounded to bfloat16, so two roundings
    assert x.grad.dtype == torch.bfloat16 and conv.weight.grad.dtype == torch.bfloat16
    assert rel_err(x.grad.double().numpy(), x64.grad.numpy()) <= 3 * bound("bfloat16", 27)
    assert rel_err(conv.weight.grad.double().numpy(), w64.grad.numpy()) <= 3 * bound("bfloat16", 25)


def test_device_path_makes_no_host_copies(rng, host_copies):
    """16-bit device arrays stay on the device through the native pooling route and the widening route
    (the direct convolution): no copy either way."""
    x, x64 = rounded(rng, (1, 2, 4, 4), np.float16)
    d = cuda.to_device(x)
    dw = cuda.to_device(rounded(rng, (2, 2, 3, 3), np.float16)[0])
    gpuconv.gpu_avg_pool2d(d, 2)                    # warm-up: cached placeholders are made on first use
    gpuconv.gpu_conv2d(d, dw, padding=1, algo="direct")
    with host_copies() as count:
        y, idx = gpuconv.gpu_max_pool2d(d, 2, return_indices=True)
        g = gpuconv.gpu_max_pool2d_backward(y, d, 2, indices=idx)
        c = gpuconv.gpu_conv2d(d, dw, padding=1, algo="direct")
    assert not count, dict(count)
    assert c.dtype == np.float16 and hasattr(c, "copy_to_host")
    assert y.dtype == np.float16 and idx.dtype == np.int64 and g.dtype == np.float16
    assert rel_err(f64(y.copy_to_host()), ref.max_pool2d(x64, 2)) == 0


def test_dask_chunks(rng):
    """gpuconv.dask in float16: chunk by chunk, the same bits as one call on the whole array."""
    da = pytest.importorskip("dask.array")
    import gpuconv.dask as gd

    x, _ = rounded(rng, (1, 2, 12, 12), np.float16)
    w, _ = rounded(rng, (3, 2, 3, 3), np.float16)
    y = gd.conv2d(da.from_array(x, chunks=(1, 2, 6, 6)), w, padding=1, algo="direct")
    assert y.dtype == np.float16
    assert np.array_equal(y.compute().view(np.uint16),
                          gpuconv.gpu_conv2d(x, w, padding=1, algo="direct").view(np.uint16))
