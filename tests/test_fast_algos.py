"""algo="implicit_gemm" is covered with im2col in test_im2col.py; here Winograd F(2×2, 3×3) and
F(4×4, 3×3) over the eligible cases of the forward grid, every padding form and mode, and refusals."""

import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import rel_err
from gpuconv import gpu_conv2d
from gpuconv import reference as ref
from gpuconv._args import conv2d_geometry
from gpuconv import winograd
from gpuconv.kernels import _common
from test_conv2d import GRID, run_poisoned

WINO_TOL = {np.float32: 1e-4, np.float64: 1e-12}     # DESIGN: Winograd's float32 bound is 1e-4


def eligible(xs, ws, kw):
    g = conv2d_geometry(xs, ws, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1),
                        kw.get("padding_mode", "zeros"))
    return winograd.ineligible(g) is None


WINO_GRID = [c for c in GRID if eligible(*c)] + [
    ((2, 5, 9, 11), (6, 5, 3, 3), dict(padding=(0, 2, 1, 0))),
    ((1, 3, 8, 7), (4, 3, 3, 3), dict(padding=2, padding_mode="reflect")),
    ((1, 2, 6, 9), (3, 2, 3, 3), dict(padding="same", padding_mode="replicate")),
    ((1, 2, 7, 6), (2, 2, 3, 3), dict(padding=(1, 2), padding_mode="circular")),
]


@pytest.mark.parametrize("algo", ["winograd_2x2", "winograd"])
@pytest.mark.parametrize("i", range(len(WINO_GRID)))
def test_winograd_parity(rng, algo, i):
    """One dtype per case, alternating (the simulator runs a² batched GEMMs per call in Python)."""
    xs, ws, kw = WINO_GRID[i]
    for dtype, act in [((np.float32, "relu"), (np.float64, "tanh"))[i % 2]]:
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        b = rng.standard_normal(ws[0]).astype(dtype)
        got = run_poisoned(x, w, b, algo=algo, activation=act, **kw)
        err = rel_err(got, ref.conv2d(x, w, b, activation=act, **kw))
        assert err < WINO_TOL[dtype], f"{algo} {dtype.__name__}: {err:.2e}"


def test_winograd_chunks_under_the_workspace_limit(rng):
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float64)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float64)
    # F(2×2): 16·(2 + 3)·9 tiles·8 B = 5760 B per image, U = 16·3·2·8 B = 768 B: room for one image
    old = gpuconv.set_workspace_limit(768 + 5760 + 100)
    try:
        p = winograd.plan(conv2d_geometry(x.shape, w.shape, padding=1), np.dtype(np.float64), 2, False, 0, 0.0,
                          gpuconv.workspace_limit())
        assert p.images == 1
        got = gpu_conv2d(x, w, padding=1, algo="winograd_2x2")
    finally:
        gpuconv.set_workspace_limit(old)
    assert rel_err(got, ref.conv2d(x, w, padding=1)) < 1e-12


def test_winograd_chunks_keep_their_tiles_within_int32():
    """Planned without allocating: the transforms index a chunk's tiles in int32."""
    g = conv2d_geometry((8, 1, 65538, 65538), (1, 1, 3, 3))          # 2**30 F(2×2) tiles per image
    assert winograd.WinogradPlan.workspace_images(g, np.float32, 2, 2**60) == 1
    assert winograd.WinogradPlan.workspace_images(g, np.float32, 4, 2**60) == 7      # 2**28 tiles: 7 fit
    g = conv2d_geometry((1, 1, 2**17 + 2, 2**17 + 2), (1, 1, 3, 3))  # 2**32 tiles: none fits
    with pytest.raises(ValueError, match="tiles per image"):
        winograd.WinogradPlan.workspace_images(g, np.float32, 2, 2**60)


@pytest.mark.parametrize("ws, kw, why", [
    ((2, 2, 5, 5), dict(padding=2), "3×3 kernel"),
    ((2, 2, 3, 3), dict(stride=2), "stride 1"),
    ((2, 2, 3, 3), dict(dilation=2), "dilation 1"),
    ((2, 1, 3, 3), dict(groups=2), "groups=1"),
])
def test_winograd_refuses_ineligible(ws, kw, why):
    x = np.zeros((1, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match=why):
        gpu_conv2d(x, np.zeros(ws, np.float32), algo="winograd", **kw)


def test_winograd_workspace_error():
    old = gpuconv.set_workspace_limit(1000)
    try:
        with pytest.raises(ValueError, match="Winograd workspace"):
            gpu_conv2d(np.zeros((1, 4, 16, 16), np.float32), np.zeros((4, 4, 3, 3), np.float32), padding=1,
                       algo="winograd")
    finally:
        gpuconv.set_workspace_limit(old)


def _special(rng, case, algo):
    x = rng.standard_normal((1, 2, 10, 9)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32) * np.float32(0.1)
    kw = dict(padding=1)
    if case == "inf":
        x[0, 0, 5, 5] = np.inf
    elif case == "-inf, reflect":
        x[0, 1, 0, 1] = -np.inf                   # at the border: reflect reads it twice
        kw["padding_mode"] = "reflect"
    elif case == "nan":
        x[0, 1, 7, 2] = np.nan
    elif case == "overflow" and algo == "winograd":   # finite, but F(4×4)'s input transform overflows on it
        x[0, 0, 3, 6] = 1e38
    elif case == "overflow":                          # F(2×2)'s transform sums neighbours: 3e38 + 3e38
        x[0, 0, 3, 4:6] = 3e38                        # (columns 1 and 2 of one 4×4 patch)
    elif case == "inf weight":
        w[1, 0, 2, 2] = np.inf                    # every tile of channel 1 (NaN at the border, as PyTorch)
    return x, w, kw


@pytest.mark.filterwarnings("ignore::RuntimeWarning")        # the simulator's NumPy scalars warn on Inf/NaN
@pytest.mark.parametrize("case", ["inf", "-inf, reflect", "nan", "overflow", "inf weight"])
@pytest.mark.parametrize("algo", ["winograd", "winograd_2x2"])
def test_winograd_non_finite_values_land_where_direct_puts_them(rng, algo, case):
    x, w, kw = _special(rng, case, algo)
    b = rng.standard_normal(3).astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        got = gpu_conv2d(x, w, b, algo=algo, **kw)
        want = gpu_conv2d(x, w, b, algo="direct", **kw)
        exact = ref.conv2d(x.astype(np.float64), w, b, **kw)
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want), err_msg=f"{test.__name__} placement differs")
    assert not np.all(np.isfinite(want)) or case == "overflow"
    finite = np.isfinite(want)
    assert rel_err(got[finite], exact[finite]) < 1e-5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_winograd_one_inf_gives_the_issues_tile():
    """The issue's case: one Inf in a 4×4 output tile gives 9 Inf and 7 finite values (not 16 NaN)."""
    x = np.ones((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.inf
    y = gpu_conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1, algo="winograd")[0, 0]
    assert np.isposinf(y).sum() == 9 and np.isfinite(y).sum() == 7


def _strided(x):
    """A non-contiguous device view holding x (every other element of a wider last axis)."""
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    return cuda.to_device(wide)[..., ::2]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("algo", ["winograd", "winograd_2x2"])
def test_winograd_launch_and_image_chunks(rng, monkeypatch, algo, contiguous):
    """Channels and filters over several grid-y launches (the limit lowered to 2), one image per
    workspace chunk, C-contiguous (dense variants) or strided x and out (general variants), and a NaN
    in the second image only: each chunk's fix-up pass sees its own tiles."""
    monkeypatch.setattr(_common, "MAX_GRID_YZ", 2)
    x = rng.standard_normal((2, 3, 7, 6))
    x[1, 2, 3, 3] = np.nan
    w = rng.standard_normal((3, 3, 3, 3))
    b = rng.standard_normal(3)
    m = winograd.ALGOS[algo]
    g = conv2d_geometry(x.shape, w.shape, padding=1)
    a2, tiles = (m + 2) ** 2, -(-g.P // m) * -(-g.Q // m)
    old = gpuconv.set_workspace_limit(8 * (a2 * 9 + 1 + a2 * 6 * tiles) + 100)    # U, flag, one image's V and M
    try:
        assert winograd.WinogradPlan.workspace_images(g, np.float64, m, gpuconv.workspace_limit()) == 1
        view = cuda.to_device if contiguous else _strided
        out = view(np.full(g.out_shape, -7.0))
        gpu_conv2d(view(x), view(w), view(b), padding=1, activation="tanh", algo=algo, out=out)
    finally:
        gpuconv.set_workspace_limit(old)
    got = out.copy_to_host()
    want = gpu_conv2d(x, w, b, padding=1, activation="tanh", algo="direct")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(want[1]).any() and not np.isnan(want[0]).any()
    finite = ~np.isnan(want)
    assert rel_err(got[finite], ref.conv2d(x, w, b, padding=1, activation="tanh")[finite]) < 1e-12
