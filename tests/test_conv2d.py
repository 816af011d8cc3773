"""gpu_conv2d against the float64 reference: every kernel, every option, outputs poisoned with NaN.

In the simulator the shapes are small; on a CUDA device the same cases run at larger sizes (SCALE).
"""

import numpy as np
import pytest
from numba import cuda

from conftest import ON_GPU, rel_err
from gpuconv import gpu_conv2d
from gpuconv import reference as ref
from gpuconv.conv import choose_direct_kernel
from gpuconv._args import conv2d_geometry

TOL = {np.float32: 1e-5, np.float64: 1e-12}
SCALE = 4 if ON_GPU else 1


def run_poisoned(x, w, b, **kw):
    """Launch on device arrays writing into a NaN-filled out=, so an unwritten element fails."""
    g = conv2d_geometry(x.shape, w.shape, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                        kw.get("groups", 1), kw.get("padding_mode", "zeros"))
    d_out = cuda.to_device(np.full(g.out_shape, np.nan, dtype=x.dtype))
    db = None if b is None else cuda.to_device(b)
    res = gpu_conv2d(cuda.to_device(x), cuda.to_device(w), db, out=d_out, **kw)
    assert res is d_out
    return d_out.copy_to_host()


def check(rng, dtype, xs, ws, bias=True, act=None, kernel=None, **kw):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    got = run_poisoned(x, w, b, activation=act, _kernel=kernel, **kw)
    want = ref.conv2d(x, w, b, activation=act, **kw)
    assert got.shape == want.shape
    assert got.dtype == dtype
    err = rel_err(got, want)
    assert err < TOL[dtype], f"relative error {err:.2e} (kernel {kernel})"


def S(h):
    return h * SCALE


# (x shape, w shape, options): odd sizes, non-tile multiples, batch 1, C = 1 and 3, every padding form
# and mode, stride 1-3, dilation 1-2, groups.
GRID = [
    ((1, 1, S(5), S(7)), (1, 1, 3, 3), dict()),
    ((2, 3, S(9), S(11)), (5, 3, 3, 3), dict(padding=1)),
    ((1, 3, S(8), S(35)), (18, 3, 3, 3), dict(padding="same")),                      # 2 q-tiles, 2 k-tiles
    ((2, 13, S(6), S(7)), (4, 13, 3, 3), dict(padding=(1, 2))),                      # 2 channel chunks
    ((1, 3, S(9), S(10)), (4, 3, 2, 4), dict(stride=2, padding="same")),             # even kernel, same, s2
    ((1, 2, S(11), S(9)), (3, 2, 3, 3), dict(stride=3, padding="valid")),
    ((1, 4, S(7), S(9)), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2)),
    ((2, 3, S(10), S(8)), (3, 3, 3, 3), dict(padding=2, dilation=2, padding_mode="reflect")),
    ((1, 2, S(6), S(7)), (4, 2, 3, 3), dict(padding=(2, 1), padding_mode="replicate", stride=2)),
    ((1, 2, S(5), S(6)), (2, 2, 3, 3), dict(padding=(0, 3, 1, 2), padding_mode="circular")),
    ((1, 6, S(7), S(7)), (6, 2, 1, 1), dict(groups=3)),                               # 1x1, groups
    ((1, 3, S(12), S(12)), (4, 3, 7, 7), dict(stride=2, padding=3)),                  # stem-like
    ((1, 4, S(6), S(5)), (8, 1, 3, 3), dict(groups=4, padding=1)),                    # depthwise x2
    ((2, 3, S(9), S(7)), (3, 1, 3, 3), dict(groups=3, padding=1, padding_mode="reflect")),  # depthwise
    ((1, 3, S(8), S(9)), (3, 1, 5, 3), dict(groups=3, stride=2, dilation=(1, 2), padding="same")),
]


@pytest.mark.parametrize("kernel", ["general", "tiled", None])
@pytest.mark.parametrize("xs, ws, kw", GRID)
def test_parity_grid_float32(rng, kernel, xs, ws, kw):
    check(rng, np.float32, xs, ws, kernel=kernel, **kw)


@pytest.mark.parametrize("xs, ws, kw", [c for c in GRID if c[2].get("groups", 1) == c[0][1] > 1])
def test_parity_depthwise(rng, xs, ws, kw):
    for dtype in (np.float32, np.float64):
        check(rng, dtype, xs, ws, kernel="depthwise", **kw)


@pytest.mark.parametrize("kernel", ["general", "tiled"])
@pytest.mark.parametrize("xs, ws, kw", GRID[1:12:2])
def test_parity_float64(rng, kernel, xs, ws, kw):
    check(rng, np.float64, xs, ws, kernel=kernel, **kw)


@pytest.mark.parametrize("act", ["relu", ("leaky_relu", 0.2), "sigmoid", "tanh", "elu", ("elu", 0.5)])
@pytest.mark.parametrize("kernel", ["general", "tiled", "depthwise"])
def test_fused_activation(rng, act, kernel):
    check(rng, np.float32, (1, 3, S(6), S(7)), (3, 1, 3, 3), act=act, kernel=kernel, groups=3, padding=1)
    check(rng, np.float64, (1, 3, S(6), S(7)), (3, 1, 3, 3), act=act, kernel=kernel, groups=3, padding=1,
          bias=False)


def test_dispatch_choices():
    g = conv2d_geometry((16, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert choose_direct_kernel(g, np.float32) == "tiled"
    g = conv2d_geometry((16, 256, 56, 56), (256, 1, 3, 3), padding=1, groups=256)
    assert choose_direct_kernel(g, np.float32) == "depthwise"
    g = conv2d_geometry((1, 1, 161, 700), (32, 1, 41, 41))          # tile + halo too big for shared memory
    assert choose_direct_kernel(g, np.float32) == "general"


def test_general_kernel_past_tile_budget(rng):
    """A kernel too large for the tiled path still goes through dispatch (to the general kernel)."""
    x = rng.standard_normal((1, 1, 30, 30)).astype(np.float32)
    w = rng.standard_normal((2, 1, 29, 29)).astype(np.float32)
    got = gpu_conv2d(x, w, padding=1)
    assert rel_err(got, ref.conv2d(x, w, padding=1)) < 1e-5


def test_results_are_nan_free_and_deterministic(rng):
    x = rng.standard_normal((1, 3, S(7), S(9))).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    a = gpu_conv2d(x, w, padding=1)
    b = gpu_conv2d(x, w, padding=1)
    assert np.array_equal(a, b) and np.all(np.isfinite(a))
