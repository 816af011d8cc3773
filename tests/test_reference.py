"""The float64 reference: hand-computed cases and an independent loop formulation on tiny shapes."""

import itertools

import numpy as np
import pytest

import loops
from gpuconv import reference as ref
from gpuconv._args import resolve_padding, padding_spec


def test_hand_computed_conv():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    # x[i, j] - x[i+1, j+1] = -5 everywhere
    np.testing.assert_array_equal(ref.conv2d(x, w), np.full((1, 1, 3, 3), -5.0))
    y = ref.conv2d(x, np.ones((1, 1, 3, 3)), bias=np.array([1.0]), padding=1)
    assert y[0, 0, 0, 0] == 0 + 1 + 4 + 5 + 1          # corner sees a 2x2 block
    assert y[0, 0, 1, 1] == sum(range(0, 3)) + sum(range(4, 7)) + sum(range(8, 11)) + 1
    # reflect padding of row [0 1 2 3] by 1 is [1 0 1 2 3 2]
    y = ref.conv2d(x[:, :, :1], np.array([[[[1.0, 0.0, 0.0]]]]), padding=(0, 1), padding_mode="reflect")
    np.testing.assert_array_equal(y[0, 0, 0], [1.0, 0.0, 1.0, 2.0])
    y = ref.conv2d(x[:, :, :1], np.array([[[[1.0, 0.0, 0.0]]]]), padding=(0, 1), padding_mode="circular")
    np.testing.assert_array_equal(y[0, 0, 0], [3.0, 0.0, 1.0, 2.0])
    y = ref.conv2d(x[:, :, :1], np.array([[[[0.0, 0.0, 1.0]]]]), padding=(0, 1), padding_mode="replicate")
    np.testing.assert_array_equal(y[0, 0, 0], [1.0, 2.0, 3.0, 3.0])


def test_hand_computed_pool_and_activations():
    x = np.array([[[[1.0, 5.0, 2.0], [7.0, 3.0, 9.0], [4.0, 8.0, 6.0]]]])
    y, i = ref.max_pool2d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [[7.0, 9.0], [8.0, 9.0]])
    np.testing.assert_array_equal(i[0, 0], [[3, 5], [7, 5]])
    np.testing.assert_array_equal(ref.avg_pool2d(x, 2, stride=1)[0, 0], [[4.0, 4.75], [5.5, 6.5]])
    # padded corner window with count_include_pad=False averages the one real element
    assert ref.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=False)[0, 0, 0, 0] == 1.0
    assert ref.avg_pool2d(x, 2, stride=2, padding=1, count_include_pad=True)[0, 0, 0, 0] == 0.25
    assert ref.global_max_pool2d(x).item() == 9.0 and ref.global_avg_pool2d(x).item() == 5.0
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(ref.relu(z), [0, 0, 3])
    np.testing.assert_array_equal(ref.leaky_relu(z, 0.1), [-0.2, 0, 3])
    np.testing.assert_allclose(ref.elu(z, 2.0), [2 * (np.exp(-2) - 1), 0, 3])
    np.testing.assert_allclose(ref.sigmoid(np.array([0.0, 800.0, -800.0])), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(ref.relu_grad(z), [0, 0, 1])


CONV_CASES = [
    # x shape, w shape, stride, padding, dilation, groups
    ((1, 1, 5, 5), (1, 1, 3, 3), 1, 0, 1, 1),
    ((2, 3, 6, 7), (4, 3, 3, 2), (2, 1), (1, 2), 1, 1),
    ((1, 4, 7, 5), (6, 2, 2, 3), 1, (0, 1, 2, 0), (2, 1), 2),
    ((1, 3, 6, 6), (3, 1, 3, 3), 2, "same", 1, 3),
    ((1, 2, 7, 6), (2, 2, 4, 2), 3, "same", (1, 2), 1),
    ((2, 2, 5, 6), (3, 2, 3, 3), 1, "valid", 1, 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_against_loops(rng, case, mode):
    xs, ws, stride, padding, dilation, groups = case
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    pads = resolve_padding(padding_spec(padding), xs[2:], ws[2:], s, d)
    if mode == "reflect" and (max(pads[:2]) >= xs[2] or max(pads[2:]) >= xs[3]):
        pytest.skip("reflect needs pad < size")
    got = ref.conv2d(x, w, b, stride, padding, dilation, groups, padding_mode=mode)
    np.testing.assert_allclose(got, loops.conv2d(x, w, b, s, pads, d, groups, mode), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xs, ws, stride, pad, op, groups, dil", [
    ((1, 2, 3, 4), (2, 3, 3, 3), 1, 0, 0, 1, 1),
    ((2, 4, 3, 3), (4, 1, 2, 3), (2, 3), (1, 0), (1, 2), 2, (1, 1)),
    ((1, 2, 4, 3), (2, 2, 3, 2), 2, 1, (0, 1), 1, (2, 2)),
])
def test_conv_transpose2d_against_loops(rng, xs, ws, stride, pad, op, groups, dil):
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    got = ref.conv_transpose2d(x, w, None, stride, pad, op, groups, dil)
    want = loops.conv_transpose2d(x, w, pair(stride), pair(pad), pair(op), groups, pair(dil))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


POOL_CASES = list(itertools.product([(5, 6), (7, 7)], [2, 3, (2, 3)], [None, 1, 2], [0, 1], [1, 2], [False, True]))


@pytest.mark.parametrize("hw, k, s, p, d, ceil", POOL_CASES)
def test_max_pool_against_loops(rng, hw, k, s, p, d, ceil):
    from gpuconv._args import pool2d_geometry

    x = rng.standard_normal((2, 2) + hw)
    x[0, 0, 1, 1] = np.nan
    x[1, 1, 2:4, 1:3] = np.nan
    x[1, 0] = -np.inf
    try:
        g = pool2d_geometry(x.shape, k, s, p, d, ceil)
    except ValueError:
        pytest.skip("not a valid pooling configuration")
    y, idx = ref.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    wy, widx = loops.max_pool2d(x, g.kernel, g.stride, g.pad, g.dilation, g.P, g.Q)
    np.testing.assert_array_equal(y, wy)
    np.testing.assert_array_equal(idx, widx)


@pytest.mark.parametrize("hw, k, s, p, ceil, cip, div", [
    ((5, 6), 2, None, 0, False, True, None), ((7, 7), 3, 2, 1, True, False, None),
    ((7, 5), (3, 2), (2, 1), (1, 1), True, True, None), ((6, 6), 3, 3, 1, True, False, 4),
    ((5, 5), 2, 2, 1, True, False, None), ((4, 9), (2, 4), (1, 3), (0, 2), True, True, -3),
])
def test_avg_pool_against_loops(rng, hw, k, s, p, ceil, cip, div):
    from gpuconv._args import pool2d_geometry

    x = rng.standard_normal((2, 3) + hw)
    g = pool2d_geometry(x.shape, k, s, p, 1, ceil)
    got = ref.avg_pool2d(x, k, s, p, ceil, cip, div)
    np.testing.assert_allclose(got, loops.avg_pool2d(x, g.kernel, g.stride, g.pad, g.P, g.Q, cip, div), rtol=1e-13)


@pytest.mark.parametrize("k, d, p, s", [(2, 1, 0, 1), ((2, 3), (2, 1), (1, 0), (1, 2)), (3, 1, 1, 2)])
def test_im2col_col2im(rng, k, d, p, s):
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    x = rng.standard_normal((2, 3, 6, 7))
    cols = ref.im2col(x, k, d, p, s)
    np.testing.assert_array_equal(cols, loops.im2col(x, pair(k), pair(d), pair(p), pair(s)))
    # col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)>
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, ref.col2im(c, (6, 7), k, d, p, s)), rtol=1e-12)


def test_linear(rng):
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    np.testing.assert_allclose(ref.linear(x, w, b), np.einsum("ni,oi->no", x, w) + b)


def test_transposed_is_adjoint_of_forward(rng):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>: the transposed conv is the forward's adjoint."""
    x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 2, 3, 2))
    y = ref.conv2d(x, w, stride=2, padding=1, dilation=(1, 2), groups=2)
    g = rng.standard_normal(y.shape)
    back = ref.conv_transpose2d(g, w, stride=2, padding=1, dilation=(1, 2), groups=2,
                                output_padding=(x.shape[2] - ((y.shape[2] - 1) * 2 - 2 + 2 + 1),
                                                x.shape[3] - ((y.shape[3] - 1) * 2 - 2 + 2 + 1)))
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, back), rtol=1e-12)
