"""Property tests over random valid configurations (hypothesis)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loops
from gpuconv import reference as ref
from gpuconv import shapes
from gpuconv._args import conv2d_geometry

MODES = st.sampled_from(["zeros", "reflect", "replicate", "circular"])


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 2]))
    C = groups * draw(st.integers(1, 2))
    K = groups * draw(st.integers(1, 2))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), st.integers(0, 2),
                             st.tuples(*[st.integers(0, 2)] * 4)))
    return (1, C, H, W), (K, C // groups, R, S), stride, padding, dilation, groups, draw(MODES)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conv_configs(), st.integers(0, 2**31))
def test_conv2d_matches_loops_or_refuses(cfg, seed):
    xs, ws, stride, padding, dilation, groups, mode = cfg
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    try:
        g = conv2d_geometry(xs, ws, stride, padding, dilation, groups, mode)
    except ValueError:
        return  # a refused configuration must be refused by the reference too
    y = ref.conv2d(x, w, None, stride, padding, dilation, groups, mode)
    assert y.shape == g.out_shape == shapes.conv2d_output_shape(xs, ws, stride, padding, dilation, groups)
    np.testing.assert_allclose(y, loops.conv2d(x, w, None, stride, g.pads, dilation, groups, mode), atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(conv_configs(), st.integers(0, 2**31))
def test_backward_is_adjoint(cfg, seed):
    """<conv2d(x), g> is linear in x: <grad_input(g), x> equals it (zero padding, the linear case)."""
    xs, ws, stride, padding, dilation, groups, _ = cfg
    try:
        conv2d_geometry(xs, ws, stride, padding, dilation, groups)
    except ValueError:
        return
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    y = ref.conv2d(x, w, None, stride, padding, dilation, groups)
    g = rng.standard_normal(y.shape)
    gx, gw, _ = ref.conv2d_backward(g, x, w, stride, padding, dilation, groups)
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, gx), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(w, gw), rtol=1e-10, atol=1e-10)
