"""gpuconv.dask: chunked convolution and pooling equal one call on the whole array.

Two layers of checks. The chunk plan (which rows each block reads, which outputs it keeps, the padding
at the image border only) is checked over random geometries and chunkings with the float64 reference
as the per-block operation, which is fast. Our kernels on the blocks are checked bit for bit against
one gpu_* call on the whole array, on fewer, chosen cases (the simulator runs them slowly), under the
threaded scheduler and a two-worker dask.distributed cluster.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")

import gpuconv  # noqa: E402
import gpuconv.dask as gd  # noqa: E402
from gpuconv import _tiling, filters, gpu_avg_pool2d, gpu_conv2d, gpu_max_pool2d  # noqa: E402
from gpuconv import reference as ref  # noqa: E402
from gpuconv._args import conv2d_geometry, pool2d_geometry  # noqa: E402

from conftest import ON_GPU, rel_err  # noqa: E402

MODES = ["zeros", "reflect", "replicate", "circular"]


def ref_conv(x, w, b, stride, padding, dilation, groups, padding_mode, activation, algo):
    return ref.conv2d(x, w, b, stride, padding, dilation, groups, padding_mode, activation)


# ----------------------------------------------------------------------------- the chunk plan


@st.composite
def chunks_of(draw, n):
    sizes = []
    while sum(sizes) < n:
        sizes.append(draw(st.integers(1, n - sum(sizes))))
    return tuple(sizes)


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 2]))
    C, K = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H, W = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 3),
                             st.tuples(*[st.integers(0, 3)] * 4)))
    x_shape, w_shape = (2, C, H, W), (K, C // groups, R, S)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=draw(st.sampled_from(MODES)))
    chunks = (draw(st.integers(1, 2)), draw(st.integers(1, C)), draw(chunks_of(H)), draw(chunks_of(W)))
    return x_shape, w_shape, kw, chunks


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conv_cases(), st.booleans(), st.integers(0, 2**31))
def test_conv_plan_over_random_chunkings(case, with_bias, seed):
    """Every geometry, padding form and mode, and any chunking (chunks of one pixel included): the blocks
    stitch to the whole array's result, and a refused geometry is refused before a graph is built."""
    x_shape, w_shape, kw, chunks = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if with_bias else None
    try:
        g = conv2d_geometry(x_shape, w_shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"],
                            kw["padding_mode"])
    except ValueError:
        with pytest.raises(ValueError):
            gd.conv2d(da.from_array(x, chunks=chunks), w, b, **kw)
        return
    y = gd.conv2d(da.from_array(x, chunks=chunks), w, b, activation="tanh", _impl=ref_conv, **kw)
    assert y.shape == g.out_shape and all(c >= 1 for cs in y.chunks for c in cs)
    np.testing.assert_allclose(y.compute(), ref.conv2d(x, w, b, activation="tanh", **kw), rtol=1e-12, atol=1e-12)


@st.composite
def pool_cases(draw):
    H, W = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    chunks = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(chunks_of(H)), draw(chunks_of(W)))
    return (2, 2, H, W), kernel, stride, padding, dilation, draw(st.booleans()), chunks


@settings(max_examples=120, deadline=None)
@given(pool_cases(), st.booleans(), st.sampled_from([None, 3]), st.integers(0, 2**31))
def test_pool_plan_over_random_chunkings(case, count_include_pad, divisor, seed):
    """ceil_mode, padding (the divisor rules at the border), dilation, strides past the kernel size."""
    x_shape, kernel, stride, padding, dilation, ceil_mode, chunks = case
    try:
        pool2d_geometry(x_shape, kernel, stride, padding, dilation, ceil_mode)
        pool2d_geometry(x_shape, kernel, stride, padding, 1, ceil_mode)
    except ValueError:
        return
    x = np.random.default_rng(seed).standard_normal(x_shape)
    dx = da.from_array(x, chunks=chunks)
    got = gd.max_pool2d(dx, kernel, stride, padding, dilation, ceil_mode, _impl=ref.max_pool2d)
    np.testing.assert_array_equal(got.compute(), ref.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode))
    got = gd.avg_pool2d(dx, kernel, stride, padding, ceil_mode, count_include_pad, divisor, _impl=ref.avg_pool2d)
    np.testing.assert_allclose(got.compute(), ref.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad,
                                                             divisor), rtol=1e-12, atol=1e-12)


def test_plan_moves_cuts_to_window_starts_and_merges_small_chunks():
    # stride 2, top padding 1: windows start at rows 1, 3, 5, ... of the image; a 3×3 window needs a
    # halo of 3 − 2 = 1 row of the next chunk
    p = _tiling.plan_axis((4, 4, 4), 12, 1, 3, 2, 6, False)
    assert p.chunks == (5, 4, 3) and p.out_chunks == (3, 2, 1) and p.depth == (0, 1) and p.skip == 0
    # chunks of 2 with an effective kernel of 9 (5 taps, dilation 2): merged into chunks of at least 8
    p = _tiling.plan_axis((2,) * 10, 20, 0, 9, 1, 12, False)
    assert p.depth == (0, 8) and min(p.chunks) >= 8 and sum(p.out_chunks) == 12
    # pooling pads every block on both sides: one row of halo before re-aligns the window grid and the
    # first (1 + 1) / 2 = 1 output of every later block, read from that padding, is dropped
    p = _tiling.plan_axis((5, 5), 10, 1, 3, 2, 5, True)
    assert p.chunks == (5, 5) and p.out_chunks == (3, 2) and p.depth == (1, 1) and p.skip == 1
    # no cut leaves the last block an output and a halo: one block, nothing to overlap
    assert _tiling.plan_axis((3, 3), 6, 0, 5, 1, 2, False) == _tiling.AxisPlan((6,), (2,), (0, 0), 0)


# ----------------------------------------------------------------------------- our kernels, bit for bit


CONV_CASES = {
    # name: (x shape, chunks, weight shape, keywords): 2 × 2 blocks or so, every window split somewhere
    "3x3_split_windows": ((1, 3, 9, 10), (1, 3, 5, 6), (4, 3, 3, 3), dict(padding=1, activation="relu")),
    "stride2_chunk5_same": ((2, 3, 10, 11), (1, 3, 5, 5), (4, 3, 3, 3), dict(stride=2, padding="same")),
    "dilated_asymmetric": ((1, 2, 13, 12), (1, 1, 7, 6), (3, 2, 3, 2),
                           dict(stride=(3, 2), dilation=2, padding=(0, 1, 2, 1))),
    "groups": ((1, 4, 8, 9), (1, 2, 4, 5), (6, 2, 3, 3), dict(groups=2, padding=1, activation="tanh")),
    "reflect": ((1, 2, 9, 10), (1, 2, 4, 6), (3, 2, 3, 3), dict(padding=2, padding_mode="reflect", stride=2)),
    "replicate": ((1, 2, 9, 10), (1, 2, 6, 4), (3, 2, 3, 3), dict(padding=(2, 1), padding_mode="replicate")),
    "circular": ((1, 2, 9, 10), (1, 2, 5, 5), (3, 2, 3, 3), dict(padding=(1, 2, 2, 0), padding_mode="circular")),
    "chunks_smaller_than_halo": ((1, 1, 18, 19), (1, 1, 2, 3), (2, 1, 5, 5), dict(dilation=2, padding=4)),
}


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv2d_equals_one_call_bit_for_bit(name, rng):
    x_shape, chunks, w_shape, kw = CONV_CASES[name]
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    y = gd.conv2d(da.from_array(x, chunks=chunks), w, b, algo="direct", **kw)
    assert y.numblocks[2] * y.numblocks[3] > 1        # the case really splits the image
    got = y.compute(scheduler="threads")
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    np.testing.assert_array_equal(got, gpu_conv2d(x, w, b, algo="direct", **kw))


@pytest.mark.parametrize("algo", ["im2col", "implicit_gemm", "auto"])
def test_gemm_algorithms_are_bitwise_stable(algo, rng):
    x = rng.standard_normal((1, 2, 8, 9)).astype(np.float64)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float64)
    got = gd.conv2d(da.from_array(x, chunks=(1, 2, 4, 5)), w, stride=(1, 2), padding=1, algo=algo).compute()
    want = gpu_conv2d(x, w, stride=(1, 2), padding=1, algo=algo)
    if algo == "auto" and ON_GPU:
        assert rel_err(got, want) < 1e-12   # gpu_conv2d times its candidates on a GPU: it may pick another
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="Winograd in the simulator takes seconds per block")
@pytest.mark.parametrize("algo", ["winograd", "winograd_2x2"])
def test_winograd_agrees_within_tolerance(algo, rng):  # pragma: no cover - needs a CUDA device
    x = rng.standard_normal((2, 8, 37, 41)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    got = gd.conv2d(da.from_array(x, chunks=(1, 8, 13, 17)), w, padding=1, algo=algo).compute()
    assert rel_err(got, ref.conv2d(x, w, padding=1)) < 1e-4


def test_pools_equal_one_call_bit_for_bit(rng):
    x = rng.standard_normal((1, 3, 11, 13)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 2, 6, 7))      # channels chunked too: pooling keeps them
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), stride=2, ceil_mode=True),
               dict(kernel_size=2, stride=3, dilation=2, padding=1, ceil_mode=True)):
        y = gd.max_pool2d(dx, **kw)
        assert y.chunks[1] == (2, 1)
        np.testing.assert_array_equal(y.compute(), gpu_max_pool2d(x, **kw))
    for kw in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
               dict(kernel_size=2, stride=3, padding=1, ceil_mode=True), dict(kernel_size=3, divisor_override=4)):
        np.testing.assert_array_equal(gd.avg_pool2d(dx, **kw).compute(), gpu_avg_pool2d(x, **kw))


# ----------------------------------------------------------------------------- image filters


def test_filter2d_plane_and_channels_last(rng):
    plane = rng.random((13, 15)).astype(np.float32)
    k = filters.gaussian(5, 1.0)
    got = gd.filter2d(da.from_array(plane, chunks=(6, 7)), k).compute()
    want = gpu_conv2d(plane[None, None], k[None, None].astype(np.float32), padding="same", padding_mode="reflect",
                      algo="direct")[0, 0]
    assert got.shape == plane.shape
    np.testing.assert_array_equal(got, want)
    assert rel_err(got, ref.conv2d(plane[None, None], k[None, None], padding=2, padding_mode="reflect")[0, 0]) < 1e-6

    rgb = rng.random((10, 12, 3)).astype(np.float32)
    got = gd.filter2d(da.from_array(rgb, chunks=(5, 6, 1)), filters.sobel_x(), stride=2, padding_mode="replicate")
    assert got.shape == (5, 6, 3)
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    want = gpu_conv2d(planes, filters.as_weight(filters.sobel_x(), 3, depthwise=True).astype(np.float32), stride=2,
                      padding="same", groups=3, padding_mode="replicate", algo="direct")
    np.testing.assert_array_equal(got.compute(), want[0].transpose(1, 2, 0))


# ----------------------------------------------------------------------------- checks up front


def test_bad_arguments_raise_before_any_graph(rng):
    x = da.from_array(rng.standard_normal((1, 3, 8, 8)).astype(np.float32), chunks=4)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="x must be a dask array"):
        gd.conv2d(x.compute(), w)
    with pytest.raises(TypeError, match="weight must be a NumPy or CuPy array"):
        gd.conv2d(x, da.from_array(w))
    with pytest.raises(TypeError, match="mixed dtypes: x is float32 but weight is float64"):
        gd.conv2d(x, w.astype(np.float64))
    with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
        gd.conv2d(x.astype(np.int32), w)
    with pytest.raises(ValueError, match=r"weight \(4, 2, 3, 3\) has 2 input channels"):
        gd.conv2d(x, w[:, :2])
    with pytest.raises(ValueError, match="larger than the padded input"):
        gd.conv2d(x, rng.standard_normal((4, 3, 9, 9)).astype(np.float32))
    with pytest.raises(ValueError, match="algo must be one of"):
        gd.conv2d(x, w, algo="fft")
    if gpuconv.SIMULATOR:
        with pytest.raises(ValueError, match="algo='im2col_cublas' needs a CUDA device"):
            gd.conv2d(x, w, algo="im2col_cublas")
    with pytest.raises(ValueError, match="x must be 4-D"):
        gd.conv2d(x[0], w)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        gd.conv2d(x[x[:, 0, 0, 0] > 0], w)
    with pytest.raises(ValueError, match="padding .* must be at most half"):
        gd.max_pool2d(x, 2, padding=2)
    with pytest.raises(TypeError, match="count_include_pad must be a bool"):
        gd.avg_pool2d(x, 2, count_include_pad=1)
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        gd.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match=r"image must be 2-D \(H, W\) or channels-last"):
        gd.filter2d(x, filters.box())
    with pytest.raises(ValueError, match="kernel must be 2-D"):
        gd.filter2d(x[0, 0], np.ones((1, 3, 3)))


# ----------------------------------------------------------------------------- the distributed scheduler


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def test_distributed_cluster_gives_the_same_bits(client, rng):
    """Blocks pickled to two worker processes (each runs gpuconv, in the simulator without a GPU)."""
    assert len(client.scheduler_info()["workers"]) == 2
    x = rng.standard_normal((2, 2, 9, 10)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    dx = da.from_array(x, chunks=(1, 2, 5, 5))
    y, m = client.compute([gd.conv2d(dx, w, stride=2, padding=1, padding_mode="circular", algo="direct"),
                           gd.max_pool2d(dx, 3, 2, 1, ceil_mode=True)], sync=True)
    np.testing.assert_array_equal(y, gpu_conv2d(x, w, stride=2, padding=1, padding_mode="circular", algo="direct"))
    np.testing.assert_array_equal(m, gpu_max_pool2d(x, 3, 2, 1, ceil_mode=True))


# ----------------------------------------------------------------------------- CuPy chunks on a GPU


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device and CuPy")
def test_cupy_chunks_stay_on_the_device(rng):  # pragma: no cover - needs a CUDA device
    cupy = pytest.importorskip("cupy")
    x = cupy.asarray(rng.standard_normal((2, 8, 67, 70)).astype(np.float32))
    w = rng.standard_normal((16, 8, 5, 5)).astype(np.float32)        # NumPy: moved to the chunks' side
    y = gd.conv2d(da.from_array(x, chunks=(1, 8, 32, 32), asarray=False), w, stride=2, padding="same",
                  algo="direct")
    assert isinstance(y._meta, cupy.ndarray)
    got = y.compute()
    assert isinstance(got, cupy.ndarray)
    want = gpu_conv2d(x, cupy.asarray(w), stride=2, padding="same", algo="direct")
    assert bool(cupy.array_equal(got, want))
    p = gd.avg_pool2d(da.from_array(x, chunks=(1, 4, 20, 30), asarray=False), 3, 2, 1, ceil_mode=True).compute()
    assert bool(cupy.array_equal(p, gpuconv.gpu_avg_pool2d(x, 3, 2, 1, ceil_mode=True)))
