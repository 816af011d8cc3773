"""im2col / col2im kernels against the reference, gpu_conv2d(algo="im2col" and "implicit_gemm") over the
direct grid, and the workspace cap."""

import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import ON_GPU, rel_err
from gpuconv import _interop, gpu_conv2d
from gpuconv import im2col as conv_im2col
from gpuconv import reference as ref
from gpuconv._args import conv2d_geometry
from gpuconv.kernels import _common
from gpuconv.kernels import im2col as kim2col
from gpuconv.reference._common import pad2d, unpad2d_adjoint
from test_conv2d import GRID, TOL, run_poisoned

UNFOLD_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),
    ((1, 2, 9, 8), (2, 2, 2, 3), dict(stride=(2, 3), padding=(0, 1, 2, 0), dilation=(2, 1))),
    ((2, 2, 6, 7), (2, 2, 3, 3), dict(padding=2, padding_mode="reflect", stride=2)),
    ((1, 3, 5, 6), (3, 3, 3, 2), dict(padding=(2, 1), padding_mode="replicate")),
    ((1, 2, 5, 6), (2, 2, 3, 3), dict(padding=(0, 3, 1, 2), padding_mode="circular", dilation=(1, 2))),
    ((2, 4, 6, 6), (4, 2, 3, 3), dict(groups=2, padding="same", stride=2)),
]


def geometry(xs, ws, kw):
    return conv2d_geometry(xs, ws, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                           kw.get("groups", 1), kw.get("padding_mode", "zeros"))


def reference_cols(x, g):
    """The reference's columns: pad by the mode, then F.unfold semantics."""
    xp = pad2d(x.astype(np.float64), g.pads, g.padding_mode)
    return ref.im2col(xp, (g.R, g.S), g.dilation, 0, g.stride)


@pytest.mark.parametrize("xs, ws, kw", UNFOLD_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_kernel(rng, xs, ws, kw, dtype):
    x = rng.standard_normal(xs).astype(dtype)
    g = geometry(xs, ws, kw)
    want = reference_cols(x, g)
    launch = kim2col.launch_im2col(g, dtype, _common.PAD_CODES[g.padding_mode])
    cols = cuda.to_device(np.full((g.N, g.C * g.R * g.S, g.P * g.Q), np.nan, dtype))
    launch(cuda.to_device(x), cols, 0, 0, 0)
    np.testing.assert_array_equal(cols.copy_to_host(), want.astype(dtype))
    # a chunk: image 1 (or 0), pixels 3 .. 3+5
    img0 = g.N - 1
    part = cuda.to_device(np.full((1, g.C * g.R * g.S, 5), np.nan, dtype))
    launch(cuda.to_device(x), part, img0, 3, 0)
    np.testing.assert_array_equal(part.copy_to_host()[0], want[img0][:, 3:8].astype(dtype))


@pytest.mark.parametrize("xs, ws, kw", UNFOLD_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_col2im_kernel(rng, xs, ws, kw, dtype):
    g = geometry(xs, ws, kw)
    t, b, l, r = g.pads
    cols = rng.standard_normal((g.N, g.C * g.R * g.S, g.P * g.Q)).astype(dtype)
    folded = ref.col2im(cols.astype(np.float64), (g.H + t + b, g.W + l + r), (g.R, g.S), g.dilation, 0, g.stride)
    want = unpad2d_adjoint(folded, (g.H, g.W), g.pads, g.padding_mode)
    launch = kim2col.launch_col2im(g, dtype, _common.PAD_CODES[g.padding_mode])
    gx = cuda.to_device(np.full(xs, np.nan, dtype))
    gp = cuda.to_device(np.full((g.N, g.C, g.H + t + b, g.W + l + r), np.nan, dtype))
    for img0 in range(g.N):              # one image per chunk, as the workspace cap may ask
        launch(cuda.to_device(cols[img0:img0 + 1]), gx, gp, img0, 0)
    assert rel_err(gx.copy_to_host(), want) < TOL[dtype]


@pytest.mark.parametrize("algo", ["im2col", "implicit_gemm"])
@pytest.mark.parametrize("i", range(len(GRID)))
def test_conv_gemm_parity(rng, i, algo):
    xs, ws, kw = GRID[i]
    for dtype, act in ((np.float32, "relu"), (np.float64, None))[:2 if i % 3 == 0 else 1]:
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        got = run_poisoned(x, w, b, algo=algo, activation=act, **kw)
        assert rel_err(got, ref.conv2d(x, w, b, activation=act, **kw)) < TOL[dtype]


@pytest.mark.parametrize("algo", ["im2col", "implicit_gemm"])
@pytest.mark.parametrize("act", [("leaky_relu", 0.2), "sigmoid", "tanh", ("elu", 0.5)])
def test_conv_gemm_activations(rng, act, algo):
    x = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    got = run_poisoned(x, w, b, algo=algo, activation=act, padding=1)
    assert rel_err(got, ref.conv2d(x, w, b, activation=act, padding=1)) < 1e-5


@pytest.fixture
def small_workspace():
    old = gpuconv.set_workspace_limit(None)
    yield gpuconv.set_workspace_limit
    gpuconv.set_workspace_limit(old)


@pytest.fixture
def allocations(monkeypatch):
    sizes = []
    real = _interop.allocate

    def recording(shape, dtype, kind, like, stream):
        if len(shape) == 1:           # the column workspace (outputs are 4-D)
            sizes.append(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        return real(shape, dtype, kind, like, stream)

    monkeypatch.setattr(_interop, "allocate", recording)
    return sizes


@pytest.mark.parametrize("limit, chunks", [(4 * 27 * 48 * 2 + 7, (2, 48)), (4 * 27 * 48 + 100, (1, 48)),
                                           (4 * 27 * 20, (1, 20))])
def test_workspace_cap_chunks(rng, small_workspace, allocations, limit, chunks):
    """Full columns: 3 images × 27 rows × 48 pixels × 4 B = 15552 B; every cap here is smaller."""
    x = rng.standard_normal((3, 3, 6, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    small_workspace(limit)
    g = conv2d_geometry(x.shape, w.shape, padding=1)
    assert conv_im2col.chunking(g, 4, limit) == chunks
    got = gpu_conv2d(cuda.to_device(x), cuda.to_device(w), padding=1, algo="im2col").copy_to_host()
    assert rel_err(got, ref.conv2d(x, w, padding=1)) < 1e-5
    assert allocations and max(allocations) <= limit < 3 * 27 * 48 * 4


def test_workspace_limit_errors(rng, small_workspace):
    x = rng.standard_normal((1, 3, 6, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    small_workspace(4 * 27 - 1)
    with pytest.raises(ValueError, match="smaller than one column"):
        gpu_conv2d(x, w, algo="im2col")
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="workspace limit"):
            gpuconv.set_workspace_limit(bad)


def test_im2col_rejects_unviewable_weight(rng):
    x = cuda.to_device(rng.standard_normal((1, 2, 5, 5)).astype(np.float32))
    base = cuda.to_device(rng.standard_normal((3, 3, 2, 3)).astype(np.float32))
    st = base.strides
    w = _interop.strided_view(base, (3, 2, 3, 3), (st[0], st[2], st[1], st[3]))   # (C, R) swapped: no merge
    with pytest.raises(ValueError, match=r"contiguous \(C/groups, R, S\) axes"):
        gpu_conv2d(x, w, algo="im2col")
    got = gpu_conv2d(x, w, algo="direct").copy_to_host()      # the direct kernels take any strides
    assert rel_err(got, ref.conv2d(x.copy_to_host(), w.copy_to_host())) < 1e-5


@pytest.mark.skipif(not ON_GPU, reason="cuBLAS through CuPy needs a CUDA device")
def test_im2col_cublas(rng):
    x = rng.standard_normal((2, 4, 12, 11)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    got = gpu_conv2d(x, w, b, padding=1, groups=2, algo="im2col_cublas", activation="relu")
    assert rel_err(got, ref.conv2d(x, w, b, padding=1, groups=2, activation="relu")) < 1e-5


@pytest.mark.skipif(ON_GPU, reason="the simulator refuses the cuBLAS path")
def test_im2col_cublas_refused_in_simulator():
    with pytest.raises(ValueError, match="needs a CUDA device"):
        gpu_conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 3, 3), np.float32), algo="im2col_cublas")
