"""gpu_conv2d_backward and gpu_conv_transpose2d (+ backward) against the float64 reference."""

import numpy as np
import pytest
from numba import cuda

from conftest import rel_err
from gpuconv import gpu_conv2d_backward, gpu_conv_transpose2d, gpu_conv_transpose2d_backward
from gpuconv import reference as ref
from test_conv2d import GRID, TOL


def operands(rng, xs, ws, dtype, kw):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    go = rng.standard_normal(ref.conv2d(x, w, **kw).shape).astype(dtype)
    return x, w, b, go


@pytest.mark.parametrize("i", range(len(GRID)))
def test_backward_grid(rng, i):
    """Every forward option in float64, float32 on the cheaper cases (the simulator runs the GEMM's full
    128×128 float32 tiles in Python), a fused activation on most."""
    xs, ws, kw = GRID[i]
    act = (None, "relu", ("leaky_relu", 0.1), "tanh", ("elu", 0.5))[i % 5]
    for dtype in (np.float64, np.float32)[:2 if i in (0, 5, 9) else 1]:
        x, w, b, go = operands(rng, xs, ws, dtype, kw)
        got = gpu_conv2d_backward(go, x, w, bias=b, activation=act, **kw)
        want = ref.conv2d_backward(go, x, w, bias=b, activation=act, **kw)
        for name, a, e in zip(("input", "weight", "bias"), got, want):
            assert a.dtype == dtype
            assert rel_err(a, e) < TOL[dtype] * 10, f"{name}: {rel_err(a, e):.2e}"


def test_backward_needs_and_device_arrays(rng):
    x, w, b, go = operands(rng, (2, 4, 7, 6), (6, 2, 3, 3), np.float32, dict(padding=1, groups=2))
    gx, gw, gb = gpu_conv2d_backward(cuda.to_device(go), cuda.to_device(x), cuda.to_device(w), padding=1, groups=2,
                                     needs=("weight",))
    assert gx is None and gb is None
    want = ref.conv2d_backward(go, x, w, padding=1, groups=2)[1]
    assert rel_err(gw.copy_to_host(), want) < 1e-5


def test_weight_grad_is_deterministic(rng):
    x, w, b, go = operands(rng, (2, 3, 6, 5), (4, 3, 3, 3), np.float32, dict(padding=1))
    first = gpu_conv2d_backward(go, x, w, padding=1)
    second = gpu_conv2d_backward(go, x, w, padding=1)
    for a, c in zip(first, second):
        assert np.array_equal(a, c)          # same bits


def test_weight_grad_under_a_small_workspace(rng):
    import gpuconv

    x, w, b, go = operands(rng, (3, 2, 6, 7), (3, 2, 3, 3), np.float64, dict(padding=1))
    old = gpuconv.set_workspace_limit(8 * 18 * 10)        # 10 pixels of one image per chunk
    try:
        gw = gpu_conv2d_backward(go, x, w, padding=1, needs=("weight",))[1]
    finally:
        gpuconv.set_workspace_limit(old)
    assert rel_err(gw, ref.conv2d_backward(go, x, w, padding=1)[1]) < 1e-12


def test_backward_strided_grad_out(rng):
    """A grad_out whose pixels are not one stride apart is copied dense first."""
    x, w, b, go = operands(rng, (1, 2, 6, 6), (3, 2, 3, 3), np.float64, dict(padding=1))
    big = cuda.to_device(np.ascontiguousarray(np.pad(go, ((0, 0), (0, 0), (0, 0), (0, 3)))))
    got = gpu_conv2d_backward(big[:, :, :, :6], cuda.to_device(x), cuda.to_device(w), padding=1)
    for a, e in zip(got, ref.conv2d_backward(go, x, w, padding=1)):
        assert rel_err(a.copy_to_host(), e) < 1e-12


TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 5, 4), (4, 2, 3, 2), dict(stride=(2, 3), padding=(1, 0), groups=2)),
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(stride=1, dilation=2, output_padding=1, padding=1)),
    ((2, 2, 3, 3), (2, 5, 1, 1), dict()),
]


@pytest.mark.parametrize("xs, ws, kw", TRANSPOSE_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_transpose2d(rng, xs, ws, kw, dtype):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[1] * kw.get("groups", 1)).astype(dtype)
    want = ref.conv_transpose2d(x, w, b, **kw)
    out = cuda.to_device(np.full(want.shape, np.nan, dtype))
    assert gpu_conv_transpose2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), out=out, **kw) is out
    assert rel_err(out.copy_to_host(), want) < TOL[dtype]
    # backward against torch's autograd (float64 on the CPU)
    go = rng.standard_normal(want.shape).astype(dtype)
    t = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b)]
    torch.nn.functional.conv_transpose2d(*t, **kw).backward(torch.tensor(go.astype(np.float64)))
    got = gpu_conv_transpose2d_backward(go, x, w, **kw)
    for a, tt in zip(got, t):
        assert rel_err(a, tt.grad.numpy()) < TOL[dtype] * 10


def test_backward_errors(rng):
    x, w, b, go = operands(rng, (1, 2, 5, 5), (3, 2, 3, 3), np.float32, dict())
    with pytest.raises(ValueError, match=r"grad_out must have the forward's output shape \(1, 3, 3, 3\)"):
        gpu_conv2d_backward(go[:, :, :2], x, w)
    with pytest.raises(ValueError, match="needs may hold"):
        gpu_conv2d_backward(go, x, w, needs=("input", "grads"))
    with pytest.raises(TypeError, match="mixed dtypes"):
        gpu_conv2d_backward(go.astype(np.float64), x, w)
    with pytest.raises(ValueError, match="output_padding"):
        gpu_conv_transpose2d(x, w[:2], stride=1, output_padding=1)
    with pytest.raises(ValueError, match=r"weight \(3, 2, 3, 3\) must have x's 2 input channels"):
        gpu_conv_transpose2d(x, w)
    with pytest.raises(ValueError, match=r"grad_out must have the forward's output shape"):
        gpu_conv_transpose2d_backward(go, x, w[:2])
