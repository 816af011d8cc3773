"""algo="implicit_gemm" on the tensor cores: float16 / bfloat16 operands gathered as 16-bit bits from x
(nothing widened, no column buffer), float32 ones rounded to TF32 when allowed; against the float64
reference on the inputs rounded to the dtype (TF32: to TF32), within the stated bound u + K·2^-24.

The shapes are small (the simulator runs the mma twin), but each path of the kernel runs: the edge-tile
loop (every tap checked), the interior loop (check-free gather one vector at a time, then the checked
remainder step), the dense tap table and the general one (x's images not dense), zero padding and a
padding mode, groups, the fused epilogue and a late activation."""

import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import rel_err
from gpuconv import _precision
from gpuconv import conv as conv_mod
from gpuconv import im2col as im2col_mod
from gpuconv import reference as ref
from gpuconv.kernels import gemm_tc
from test_half import DTYPES, _t, bound, f64, no_worse_than_torch, rounded, tf32


@pytest.fixture
def tensor_cores_only(monkeypatch):
    """Nothing widened, and no CUDA-core GEMM: the call must run on gemm_tc."""
    def refuse(what):
        return lambda *a, **k: (_ for _ in ()).throw(AssertionError(what))

    monkeypatch.setattr(_precision, "widen", refuse("widened"))
    monkeypatch.setattr(im2col_mod.kimplicit.gemm, "launch_gemm", refuse("CUDA-core GEMM"))
    monkeypatch.setattr(im2col_mod.kgemm, "launch_gemm", refuse("CUDA-core GEMM"))


CASES = [
    # (dtype, x shape, weight shape, options, activation): edge tiles only
    ("float16", (2, 3, 7, 9), (16, 3, 3, 3), dict(padding=1, stride=(1, 2)), "relu"),
    ("bfloat16", (1, 4, 6, 7), (32, 2, 3, 2), dict(padding=(2, 1), dilation=(2, 1), groups=2,
                                                  padding_mode="reflect"), "elu"),
]


@pytest.mark.parametrize("name, xs, ws, opts, act", CASES, ids=["f16-zeros-stride", "bf16-reflect-groups"])
def test_implicit_gemm_16bit(rng, tensor_cores_only, name, xs, ws, opts, act):
    dt = DTYPES[name]
    x, x64 = rounded(rng, xs, dt)
    w, w64 = rounded(rng, ws, dt)
    b, b64 = rounded(rng, (ws[0],), dt)
    y = gpuconv.gpu_conv2d(x, w, b, activation=act, algo="implicit_gemm", **opts)
    assert y.dtype == dt
    want = ref.activation(ref.conv2d(x64, w64, b64, **opts), act)
    k = ws[1] * ws[2] * ws[3]
    err = rel_err(f64(y), want)
    # relu is fused (one rounding); elu runs over the rounded 16-bit result (a second rounding)
    assert err <= (bound(name, k) if act == "relu" else 2 * bound(name, k))
    if act == "relu":
        no_worse_than_torch(err, lambda torch: torch.relu(torch.nn.functional.conv2d(
            _t(torch, x), _t(torch, w), _t(torch, b), stride=opts["stride"], padding=opts["padding"])), want)


def test_implicit_gemm_interior_tile(rng, tensor_cores_only):
    """128 output channels and 144 pixels: one interior 128×128 tile (two check-free K steps of 32, then
    the remainder of 8) beside an edge tile, with the dense table."""
    dt = DTYPES["float16"]
    x, x64 = rounded(rng, (1, 8, 12, 12), dt)
    w, w64 = rounded(rng, (128, 8, 3, 3), dt)
    b, b64 = rounded(rng, (128,), dt)
    y = gpuconv.gpu_conv2d(x, w, b, padding=1, activation="relu", algo="implicit_gemm")
    want = ref.activation(ref.conv2d(x64, w64, b64, padding=1), "relu")
    assert rel_err(f64(y), want) <= bound("float16", 72)


def test_implicit_gemm_strided_input(rng, tensor_cores_only):
    """x's images not dense (a channel slice with padding): the general tap table, 64-bit offsets."""
    dt = DTYPES["bfloat16"]
    big, big64 = rounded(rng, (2, 6, 5, 8), dt)
    x, x64 = big[:, 1:5, :, 1:7], big64[:, 1:5, :, 1:7]
    w, w64 = rounded(rng, (16, 4, 3, 3), dt)
    y = gpuconv.gpu_conv2d(x, w, padding=1, algo="implicit_gemm")
    assert rel_err(f64(y), ref.conv2d(x64, w64, None, padding=1)) <= bound("bfloat16", 36)


def test_implicit_gemm_tf32_build(rng, monkeypatch):
    """The TF32 build (not dispatched by gpu_conv2d yet: it spills on sm_80) against the reference on
    TF32-rounded inputs; gpu_conv2d's float32 implicit GEMM stays on the CUDA cores with TF32 allowed."""
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    conv_mod._plan.cache_clear()            # plans are built once per shape: count this test's launchers
    im2col_mod.implicit_plan.cache_clear()
    launches = []
    real = gemm_tc.launch_gemm_tc
    monkeypatch.setattr(im2col_mod.kimplicit.gemm_tc, "launch_gemm_tc",
                        lambda *a, **k: launches.append(a[0]) or real(*a, **k))
    g = conv_mod.geometry(x.shape, w.shape, 1, 1, 1, 1, "zeros", None)
    dx, dy = cuda.to_device(x), cuda.device_array(g.out_shape, np.float32)
    im2col_mod.implicit_plan(g, np.dtype(np.float32), False, 0, 0.0, "tf32").run(
        dx, cuda.to_device(w), _precision.no_bias(np.dtype(np.float32)), dy, "numba", dx, cuda.default_stream())
    y = dy.copy_to_host()
    assert launches == ["tf32", "tf32"]     # the launchers of a dense x and of any other
    assert rel_err(y, ref.conv2d(tf32(x), tf32(w), None, padding=1)) <= bound("tf32", 27)
    exact = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, padding=1)
    y32 = gpuconv.gpu_conv2d(x, w, padding=1, algo="implicit_gemm", allow_tf32=True)
    assert len(launches) == 2 and rel_err(y32, exact) < 1e-6


def test_implicit_gemm_tc_errors(rng):
    """The tensor-core build needs a gathered B along K, element by element."""
    from gpuconv.kernels import _common, implicit_gemm
    loader = implicit_gemm.tc_gather_loader("f16", _common.PAD_ZEROS, True)
    with pytest.raises(ValueError, match="b_n_contig=False"):
        gemm_tc.gemm_tc_kernel("f16", "nchw", b_n_contig=True, b_gather=loader)
