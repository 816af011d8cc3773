"""Index math without division: magic numbers, plane grids, and launch plans for tensors past 2**31
elements (planned without allocating: the kernels are replaced by recorders)."""

from types import SimpleNamespace

import numpy as np
import pytest
from numba import cuda

from gpuconv import reference as ref
from gpuconv._args import pool2d_geometry
from gpuconv.kernels import _common
from gpuconv.kernels import pool as kpool


def test_magic_numbers_divide_every_31_bit_numerator():
    rng = np.random.default_rng(0)
    divisors = list(range(1, 300)) + [2**k + o for k in range(1, 31) for o in (-1, 0, 1) if 2**k + o < 2**31]
    divisors += list(rng.integers(1, 2**31, 500))
    n = np.concatenate([np.arange(5000), 2**31 - 1 - np.arange(5000), rng.integers(0, 2**31, 5000)]).astype(np.uint64)
    for d in divisors:
        magic, shift = _common.magic_numbers(d)
        assert magic.dtype == np.uint32 and 31 <= shift <= 62
        np.testing.assert_array_equal((n * np.uint64(magic)) >> np.uint64(shift), n // np.uint64(d), err_msg=str(d))
    with pytest.raises(ValueError, match="divisor"):
        _common.magic_numbers(0)
    with pytest.raises(ValueError, match="divisor"):
        _common.magic_numbers(2**31)


def test_divmagic_in_a_kernel():
    @cuda.jit
    def divide(n, d, out, magic, shift):
        i = cuda.grid(1)
        if i < n.size:
            out[i] = _common.divmagic(n[i], magic, shift)

    n = np.array([0, 1, 6, 7, 13, 2**31 - 1, 2**30 + 5], np.int64)
    out = np.zeros_like(n)
    divide[1, 32](n, 7, out, *_common.magic_numbers(7))
    np.testing.assert_array_equal(out, n // 7)


def _covered(plan, general):
    """The (n, c, p) rows, or (plane,) planes, each launch of a plane-grid plan covers, as ranges."""
    spans = []
    for grid, block, (mag, sft, qblocks, o0, o1, o2) in plan:
        assert grid[0] <= _common.MAX_GRID_X and all(g <= _common.MAX_GRID_YZ for g in grid[1:])
        assert block % 32 == 0 and block <= 256
        if general:
            rows = grid[0] // qblocks
            assert grid[0] == rows * qblocks and qblocks * block >= 1
            assert (magic_check(qblocks, mag, sft))
            spans.append(((o2, o2 + grid[2]), (o1, o1 + grid[1]), (o0, o0 + rows)))
        else:
            spans.append(((o2, o2 + grid[1]),))
    return spans


def magic_check(d, mag, sft):
    n = np.array([0, d - 1, d, 5 * d + 3, 2**31 - 1], np.uint64)
    return np.array_equal((n * np.uint64(mag)) >> np.uint64(sft), n // np.uint64(d))


def _union_is(spans, extents):
    """Do the boxes in spans tile the box of `extents` exactly (no gap, no overlap)?"""
    cells = sum(int(np.prod([b - a for a, b in box])) for box in spans)
    inside = all(0 <= a < b <= e for box in spans for (a, b), e in zip(box, extents))
    return inside and cells == int(np.prod(extents))


@pytest.mark.parametrize("N, C, P, Q", [(1, 1, 7, 5), (3, 100_000, 4, 4), (70_000, 3, 2, 1), (1, 1, 3_000_000, 2000),
                                        (2, 70_000, 90_000, 3)])
def test_plane_launches_tile_the_grid(N, C, P, Q):
    dense = _common.dense_plane_launches(N * C, P, Q, 256)
    assert _union_is(_covered(dense, False), (N * C,))
    for grid, block, (mag, sft, *_rest) in dense:
        assert grid[0] * block >= P * Q and magic_check(Q, mag, sft)
    general = _common.general_plane_launches(N, C, P, Q, 256)
    assert _union_is(_covered(general, True), (N, C, P))
    for grid, block, (_m, _s, qblocks, *_o) in general:
        assert qblocks * block >= Q


class _Recorder:
    """Stands in for a compiled kernel: kernel[grid, block, stream](*args) records the launch."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __getitem__(self, config):
        return lambda *args: self.log.append((self.name, config, args))


def _fake(shape, contiguous=True):
    return SimpleNamespace(shape=shape, is_c_contiguous=lambda: contiguous)


@pytest.fixture
def recorded(monkeypatch):
    """Every pooling kernel factory replaced by one returning a recorder named for its variant."""
    log = []

    def factory(kind):
        def make(*args, **kw):
            dense = kw.get("dense", args[2] if len(args) > 2 else True)
            return _Recorder(f"{kind}/{'dense' if dense else 'general'}", log)
        return make

    for name in ("max_pool2d_kernel", "avg_pool2d_kernel", "_backward_cell_kernel"):
        monkeypatch.setattr(kpool, name, factory(name))
    monkeypatch.setattr(kpool, "_backward_element_kernel", lambda *a, **k: _Recorder("element", log))
    monkeypatch.setattr(kpool, "global_pool2d_kernel",
                        lambda dtype, is_max, dense=True: _Recorder(f"global/{'dense' if dense else 'general'}", log))
    return log


def test_pool_planning_past_2_31_elements(recorded):
    # one 50000 x 50000 plane (2.5e9 elements): no int32 offsets inside it, so the general variant runs
    g = pool2d_geometry((1, 1, 50_000, 50_000), 3, 2, 1)
    assert not kpool.dense_fits(g)
    x, y, idx = _fake((1, 1, 50_000, 50_000)), _fake(g.out_shape), _fake(g.out_shape)
    kpool.launch_max_pool2d(g, np.float32)(x, y, idx, True, 0)
    (name, (grid, block, _), args), = recorded
    assert name == "max_pool2d_kernel/general"
    mag, sft, qblocks, p0, c0, n0 = args[-6:]
    assert grid[0] == qblocks * g.P and qblocks * block >= g.Q and (p0, c0, n0) == (0, 0, 0)

    # 16 images x 8192 channels of 128 x 128 (2.1e9 elements): dense, planes split into grid-y chunks
    recorded.clear()
    g = pool2d_geometry((16, 8192, 128, 128), 2)
    assert kpool.dense_fits(g)
    kpool.launch_avg_pool2d(g, np.float32, True, 0)(_fake((16, 8192, 128, 128)), _fake(g.out_shape), 0)
    assert {name for name, *_ in recorded} == {"avg_pool2d_kernel/dense"}
    planes = [(args[-1], config[0][1]) for _, config, args in recorded]
    assert planes == [(z0, min(65535, 16 * 8192 - z0)) for z0 in range(0, 16 * 8192, 65535)]

    # a strided view of it: the general variant, channels in chunks of 65535 (none needed here), all images
    recorded.clear()
    kpool.launch_avg_pool2d(g, np.float32, True, 0)(_fake((16, 8192, 128, 128), False), _fake(g.out_shape), 0)
    assert {name for name, *_ in recorded} == {"avg_pool2d_kernel/general"}
    assert [config[0][1:] for _, config, _ in recorded] == [(8192, 16)]


def test_pool_backward_planning_past_2_31_elements(recorded):
    g = pool2d_geometry((2, 1, 40_000, 40_000), 3, 2, 1)        # 3.2e9 elements; planes of 1.6e9 fit int32
    assert kpool.backward_cell(g) == (3, 3, 2, 2, 1, 1) and kpool.backward_dense_fits(g)
    g = pool2d_geometry((2, 1, 50_000, 50_000), 3, 2, 1)        # planes of 2.5e9 do not
    assert not kpool.backward_dense_fits(g)
    kpool.launch_max_pool2d_backward(g, np.float32)(_fake(g.out_shape), _fake(g.out_shape),
                                                    _fake((2, 1, 50_000, 50_000)), 0)
    (name, (grid, block, _), args), = recorded
    M, Mq = kpool._cells(g)
    assert name == "_backward_cell_kernel/general" and args[5:7] == (M, Mq)
    assert grid == (args[-4] * M, 1, 2) and args[-4] * block >= Mq and M * 2 >= 50_000 + 1

    recorded.clear()                                             # a large stride: per element
    g = pool2d_geometry((1, 1, 50_000, 50_000), 2, 9)
    assert kpool.backward_cell(g) is None
    kpool.launch_avg_pool2d_backward(g, np.float32, True, 0)(_fake(g.out_shape), _fake((1, 1, 50_000, 50_000)), 0)
    (name, (grid, block, _), args), = recorded
    assert name == "element" and grid[0] == args[-4] * 50_000


def test_global_pool_planning(recorded):
    launch = kpool.launch_global_pool2d(3, 100_000, 7, 7, np.float32, True)
    launch(_fake((3, 100_000, 7, 7)), _fake((3, 100_000, 1, 1)), _fake((3, 100_000, 1, 1)), True, 0)
    (name, (grid, block, _), args), = recorded
    assert name == "global/dense" and grid == -(-300_000 // 8) and block == 256     # 8 planes per block
    recorded.clear()
    launch = kpool.launch_global_pool2d(70_000, 2, 50_000, 50_000, np.float64, False)   # 3.5e14 elements
    launch(_fake((70_000, 2, 50_000, 50_000)), _fake((70_000, 2, 1, 1)), _fake((1, 1, 1, 1)), False, 0)
    assert [(name, config[0], args[5]) for name, config, args in recorded] == \
        [("global/general", (2, 65535), 0), ("global/general", (2, 70_000 - 65535), 65535)]


# ----------------------------------------------------------------------------- the general variants, run


@pytest.fixture
def tiny_grids(monkeypatch):
    """Grid limits of 2 in y and z and 5 in x, so that even small shapes take several launches."""
    monkeypatch.setattr(_common, "MAX_GRID_YZ", 2)
    monkeypatch.setattr(_common, "MAX_GRID_X", 5)


def _strided(x):
    """A non-contiguous device view holding x (every other column of a wider array)."""
    wide = np.zeros(x.shape[:3] + (2 * x.shape[3],), x.dtype)
    wide[..., ::2] = x
    return cuda.to_device(wide)[..., ::2]


@pytest.mark.parametrize("k, s, p, d, ceil", [(3, 2, 1, 1, False), (2, 1, 0, 2, True), (5, 3, 2, 1, True)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_max_pool_variants_and_chunks(rng, tiny_grids, k, s, p, d, ceil, contiguous):
    x = rng.standard_normal((2, 3, 11, 9)).astype(np.float32)
    x[0, 1, 2, 3:5] = np.nan
    x[1, 2] = -np.inf
    g = pool2d_geometry(x.shape, k, s, p, d, ceil)
    want, want_idx = ref.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    view = cuda.to_device if contiguous else _strided
    y = view(np.full(g.out_shape, np.nan, np.float32))
    idx = view(np.full(g.out_shape, -7, np.int64))
    kpool.launch_max_pool2d(g, np.float32)(view(x), y, idx, True, 0)
    np.testing.assert_array_equal(y.copy_to_host(), want.astype(np.float32))
    np.testing.assert_array_equal(idx.copy_to_host(), want_idx)


@pytest.mark.parametrize("cip, div", [(True, 0), (False, 0), (True, -3)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_avg_pool_variants_and_chunks(rng, tiny_grids, cip, div, contiguous):
    x = rng.standard_normal((2, 3, 10, 9)).astype(np.float64)
    g = pool2d_geometry(x.shape, 3, 2, 1, 1, True)
    view = cuda.to_device if contiguous else _strided
    out = view(np.full(g.out_shape, np.nan))
    kpool.launch_avg_pool2d(g, np.float64, cip, div)(view(x), out, 0)
    got = out.copy_to_host()
    want = ref.avg_pool2d(x, 3, 2, 1, True, cip, div or None)
    assert np.abs(got - want).max() < 1e-13


@pytest.mark.parametrize("k, s, p, d", [(3, 2, 1, 1), (2, 2, 0, 1), (3, 1, 1, 2), (4, 3, 2, 1), (2, 9, 1, 1)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_pool_backward_variants_and_chunks(rng, tiny_grids, k, s, p, d, contiguous):
    x = rng.standard_normal((2, 2, 11, 10))
    x[0, 0, 2:4, 2:4] = 5.0                                     # ties
    g = pool2d_geometry(x.shape, k, s, p, d, True)
    go = rng.standard_normal(g.out_shape)
    _, idx = ref.max_pool2d(x, k, s, p, d, True, return_indices=True)
    view = cuda.to_device if contiguous else _strided
    gx = view(np.full(x.shape, np.nan))
    kpool.launch_max_pool2d_backward(g, np.float64)(view(go), view(idx), gx, 0)
    assert np.abs(gx.copy_to_host() - ref.max_pool2d_backward(go, x, k, s, p, d, True)).max() < 1e-13
    if d == 1:
        gx = view(np.full(x.shape, np.nan))
        kpool.launch_avg_pool2d_backward(g, np.float64, False, 0)(view(go), gx, 0)
        assert np.abs(gx.copy_to_host() - ref.avg_pool2d_backward(go, x, k, s, p, True, False)).max() < 1e-13


@pytest.mark.parametrize("shape", [(3, 5, 1, 1), (2, 3, 7, 9), (1, 2, 40, 37)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_global_pool_variants_and_chunks(rng, tiny_grids, shape, contiguous):
    x = rng.standard_normal(shape)
    x[0, 0].flat[-1] = np.nan
    x[-1, -1] = -np.inf
    view = cuda.to_device if contiguous else _strided
    y, idx = view(np.full(shape[:2] + (1, 1), np.nan)), cuda.to_device(np.zeros(shape[:2] + (1, 1), np.int64))
    kpool.launch_global_pool2d(*shape, np.float64, True)(view(x), y, idx, True, 0)
    want, want_idx = ref.global_max_pool2d(x, return_indices=True)
    np.testing.assert_array_equal(y.copy_to_host(), want)
    np.testing.assert_array_equal(idx.copy_to_host(), want_idx)
    x = np.nan_to_num(x, neginf=0.0)
    kpool.launch_global_pool2d(*shape, np.float64, False)(view(x), y, idx, False, 0)
    assert np.abs(y.copy_to_host() - ref.global_avg_pool2d(x)).max() < 1e-13


@pytest.mark.parametrize("spec", [None, "relu", ("leaky_relu", 0.2), "sigmoid", "tanh", ("elu", 0.7)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_elementwise_variants_and_chunks(rng, tiny_grids, spec, contiguous):
    from gpuconv._args import activation_spec
    from gpuconv.kernels import _common, epilogue

    name, param = activation_spec(spec)
    act, alpha = _common.ACT_CODES[name], (param if param is not None else 0.0)
    shape = (2, 3, 5, 70)                         # 2100 elements: several dense blocks, a ragged last one
    z = rng.standard_normal(shape)
    z[0, 0, 0, :3] = (np.nan, np.inf, -np.inf)
    go = rng.standard_normal(shape)
    view = cuda.to_device if contiguous else _strided
    out = view(np.full(shape, np.nan))
    epilogue.launch_activation_grad(shape, np.float64, act, alpha)(view(go), view(z), out, 0)
    np.testing.assert_allclose(out.copy_to_host(), go * ref.activation_grad(z, spec), rtol=1e-12, atol=1e-15)
    y = view(z)
    if name is not None:
        epilogue.launch_activation(shape, np.float64, act, alpha)(y, 0)
        np.testing.assert_allclose(y.copy_to_host(), ref.activation(z, spec), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [(3, 4, 2, 3), (2, 3, 17, 19), (1, 2, 1, 300)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_bias_grad_variants(rng, shape, contiguous):
    from gpuconv.kernels import backward as kback

    go = rng.standard_normal(shape)
    gb = cuda.to_device(np.full(shape[1], np.nan))
    kback.launch_bias_grad(shape[1], np.float64)((cuda.to_device if contiguous else _strided)(go), gb, 0)
    np.testing.assert_allclose(gb.copy_to_host(), go.sum(axis=(0, 2, 3)), rtol=1e-13)


FOLD_CASES = [((6, 7), (1, 1, 1, 1)), ((5, 6), (4, 2, 5, 3)), ((1, 4), (0, 0, 3, 2)), ((2, 2), (1, 1, 1, 1)),
              ((3, 9), (2, 0, 0, 8)), ((7, 3), (0, 6, 2, 2))]


@pytest.mark.parametrize("hw, pads", FOLD_CASES)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_fold_padding_every_mode(rng, hw, pads, mode, contiguous):
    """The adjoint of padding, against the reference, for pads up to the mode's limit (reflect < n,
    circular <= n), on dense and strided arrays."""
    from gpuconv.kernels import im2col as kim2col
    from gpuconv.reference._common import unpad2d_adjoint

    (H, W), (t, b, l, r) = hw, pads
    limit = {"reflect": -1, "replicate": None, "circular": 0}[mode]
    if limit is not None and (max(t, b) > H + limit or max(l, r) > W + limit):
        pytest.skip(f"{mode} padding {pads} is over its limit for {hw}")
    g = SimpleNamespace(N=2, C=3, H=H, W=W, pads=pads)
    gp = rng.standard_normal((2, 3, H + t + b, W + l + r))
    view = cuda.to_device if contiguous else _strided
    gx = view(np.full((2, 3, H, W), np.nan))
    kim2col.launch_fold_padding(g, np.float64, _common.PAD_CODES[mode])(view(gp), gx, 0)
    np.testing.assert_allclose(gx.copy_to_host(), unpad2d_adjoint(gp, (H, W), pads, mode), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_im2col_strided_input_and_chunks(rng, tiny_grids, mode):
    from gpuconv._args import conv2d_geometry
    from gpuconv.kernels import im2col as kim2col
    from gpuconv.reference._common import pad2d

    x = rng.standard_normal((3, 4, 7, 6))
    g = conv2d_geometry(x.shape, (2, 4, 3, 2), (2, 1), (2, 1, 1, 1), (1, 2), 1, mode)
    want = ref.im2col(pad2d(x, g.pads, mode), (g.R, g.S), g.dilation, 0, g.stride)
    launch = kim2col.launch_im2col(g, np.float64, _common.PAD_CODES[mode])
    for view in (cuda.to_device, _strided):
        cols = cuda.to_device(np.full((2, g.C * g.R * g.S, 5), np.nan))   # images 1..2, pixels 4..8
        launch(view(x), cols, 1, 4, 0)
        np.testing.assert_array_equal(cols.copy_to_host(), want[1:3, :, 4:9])


@pytest.mark.parametrize("kernel", ["general", "tiled", "depthwise"])
@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_direct_kernels_on_strided_arrays(rng, kernel, mode):
    """The direct kernels' dense and general paths: a strided input and output against a contiguous run."""
    from gpuconv import gpu_conv2d

    groups = 4 if kernel == "depthwise" else 2
    x = rng.standard_normal((2, 4, 9, 11))
    w = rng.standard_normal((8, 4 // groups, 3, 3))
    b = rng.standard_normal(8)
    kw = dict(stride=(1, 2), padding=1, groups=groups, padding_mode=mode, activation=("elu", 0.5))
    want = ref.conv2d(x, w, b, **{k: v for k, v in kw.items() if k != "activation"})
    want = ref.activation(want, ("elu", 0.5))
    dense = gpu_conv2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), _kernel=kernel, **kw)
    out = _strided(np.full(want.shape, np.nan))
    got = gpu_conv2d(_strided(x), cuda.to_device(w), cuda.to_device(b), _kernel=kernel, out=out, **kw)
    assert got is out
    np.testing.assert_allclose(dense.copy_to_host(), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.copy_to_host(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("budget", [16 * 1024, 160, 32])
def test_data_grad_weight_chunks(rng, monkeypatch, budget):
    """The data gradient stages weights in chunks of output channels and taps: with a tiny budget a
    block takes one channel and one tap (float64, 4 weights: 32 bytes) at a time, same result."""
    from gpuconv.kernels import backward as kback

    monkeypatch.setattr(kback, "WEIGHT_BUDGET_BYTES", budget)
    x = rng.standard_normal((2, 6, 7, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    kw = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    y = ref.conv2d(x, w, None, **kw)
    go = rng.standard_normal(y.shape)
    want = ref.conv2d_backward(go, x, w, **kw)[0]
    gx = cuda.to_device(np.full(x.shape, np.nan))
    kback.launch_data_grad(np.float64, (2, 1), (1, 1), (1, 2), 2, (0, 0), False)(
        cuda.to_device(go), cuda.to_device(w), cuda.to_device(np.zeros(1)), gx, 0)
    np.testing.assert_allclose(gx.copy_to_host(), want, rtol=1e-12, atol=1e-12)
