"""Implicit GEMM's paths against the float64 reference: interior tiles (more than one GEMM tile of output
channels and of pixels, K = C/groups·R·S with a remainder), every padding mode, dense and strided
inputs (the tap table's two layouts), groups, stride and dilation, the pointwise (1×1) matrix path and
its gather fallback, and an out= whose pixels do not merge (written through a dense temporary).

The shapes are the smallest that reach each path in the simulator: float32 tiles are 128 channels ×
128 pixels, float64 tiles 64 × 64."""

import numpy as np
import pytest
from numba import cuda

from conftest import rel_err
from gpuconv import gpu_conv2d
from gpuconv import reference as ref

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def strided(rng, shape, dtype):
    """A device array of `shape` whose images are not dense (every other column of a wider buffer)."""
    n, c, h, w = shape
    big = rng.standard_normal((n, c, h, 2 * w)).astype(dtype)
    return cuda.to_device(big)[:, :, :, ::2], big[:, :, :, ::2]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("dense", [True, False])
def test_interior_tiles_every_padding_mode(rng, mode, dense):
    shape = (1, 2, 12, 12)                                     # 144 pixels: one interior tile of 128
    if dense:
        x = rng.standard_normal(shape).astype(np.float32)
        dx = cuda.to_device(x)
    else:
        dx, x = strided(rng, shape, np.float32)
    w = rng.standard_normal((130, 2, 3, 3)).astype(np.float32)    # 130 channels, K = 18 = 2 steps + 2
    b = rng.standard_normal(130).astype(np.float32)
    got = gpu_conv2d(dx, cuda.to_device(w), cuda.to_device(b), padding=1, padding_mode=mode, activation="relu",
                     algo="implicit_gemm").copy_to_host()
    want = ref.conv2d(x, w, b, padding=1, padding_mode=mode, activation="relu")
    assert rel_err(got, want) < TOL[np.float32]


def test_interior_with_vector_weight_rows_groups_stride_dilation(rng):
    """C/groups·R·S = 36: weight rows of 144 bytes take 16-byte loads; 2 groups, stride 2, dilation 2,
    asymmetric padding."""
    x = rng.standard_normal((2, 8, 26, 25)).astype(np.float32)
    w = rng.standard_normal((260, 4, 3, 3)).astype(np.float32)
    kw = dict(stride=2, padding=(2, 1, 3, 2), dilation=2, groups=2)
    got = gpu_conv2d(cuda.to_device(x), cuda.to_device(w), algo="implicit_gemm", **kw).copy_to_host()
    assert rel_err(got, ref.conv2d(x, w, **kw)) < TOL[np.float32]


def test_float64_interior(rng):
    x = rng.standard_normal((1, 3, 9, 9))
    w = rng.standard_normal((66, 3, 3, 3))
    got = gpu_conv2d(cuda.to_device(x), cuda.to_device(w), padding=1, padding_mode="reflect",
                     algo="implicit_gemm").copy_to_host()
    assert rel_err(got, ref.conv2d(x, w, padding=1, padding_mode="reflect")) < TOL[np.float64]


@pytest.mark.parametrize("dense", [True, False])
def test_pointwise(rng, dense):
    """1×1 stride 1: B is x itself (dense images) or gathered (strided x)."""
    shape = (2, 12, 11, 12)
    if dense:
        x = rng.standard_normal(shape).astype(np.float32)
        dx = cuda.to_device(x)
    else:
        dx, x = strided(rng, shape, np.float32)
    w = rng.standard_normal((130, 12, 1, 1)).astype(np.float32)
    got = gpu_conv2d(dx, cuda.to_device(w), algo="implicit_gemm").copy_to_host()
    assert rel_err(got, ref.conv2d(x, w)) < TOL[np.float32]


def test_out_whose_pixels_do_not_merge(rng):
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    big = cuda.to_device(np.full((2, 5, 7, 12), np.nan, np.float32))
    out = big[:, :, :, ::2]                                     # P·Q cannot be one axis: q stride 2, p stride 12
    for algo in ("implicit_gemm", "im2col"):
        gpu_conv2d(cuda.to_device(x), cuda.to_device(w), padding=1, out=out, algo=algo)
        host = big.copy_to_host()
        assert rel_err(host[..., ::2], ref.conv2d(x, w, padding=1)) < TOL[np.float32]
        assert np.isnan(host[..., 1::2]).all()                # the columns between stay untouched
