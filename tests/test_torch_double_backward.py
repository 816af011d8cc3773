"""Second (and third) derivatives through gpuconv.torch: gradgradcheck in float64 for each op and option
family, a gradient penalty against PyTorch, the activations' derivatives, and the first-order fast path.

CPU tensors run the kernels in the CUDA simulator: shapes are tiny and each check is fast_mode."""

import collections

import pytest
from conftest import ON_GPU

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402
from gpuconv import _args, _torch_activations, _torch_conv_ops  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

F = torch.nn.functional
ops = torch.ops.gpuconv


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device"))]


def leaves(*shapes, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=torch.float64, generator=gen).to(device).requires_grad_() for s in shapes]


def gradgradcheck(fn, inputs, **kw):
    return torch.autograd.gradgradcheck(fn, inputs, fast_mode=True, **kw)


# ----------------------------------------------------------------------------- gradgradcheck, per family


def test_gradgradcheck_conv2d_groups_stride_dilation_asymmetric_padding_activation_bias():
    x, w, b = leaves((1, 2, 5, 4), (4, 1, 3, 2), (4,))
    assert gradgradcheck(lambda *a: gt.conv2d(*a, stride=(2, 1), padding=(1, 0, 0, 1), dilation=(1, 2), groups=2,
                                              activation="tanh"), (x, w, b))


@pytest.mark.parametrize("kw", [dict(padding_mode="reflect", padding=(2, 1), stride=(1, 2)),
                                dict(padding_mode="replicate", padding="same", dilation=2),
                                dict(padding_mode="circular", padding=(1, 0, 2, 1))])
def test_gradgradcheck_conv2d_padding_modes(kw):
    x, w = leaves((1, 2, 4, 5), (2, 2, 2, 3), seed=1)
    assert gradgradcheck(lambda *a: gt.conv2d(*a, **kw), (x, w), check_undefined_grad=False)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1, groups=2),
                                # output_padding >= stride (dilation > stride): the gradients' shape fix-up
                                dict(stride=1, output_padding=1, dilation=2)])
def test_gradgradcheck_conv_transpose2d(kw):
    x, w, b = leaves((1, 2, 3, 4), (2, 2, 2, 3), (2 * kw.get("groups", 1),), seed=2)
    assert gradgradcheck(lambda *a: gt.conv_transpose2d(*a, **kw), (x, w, b))


@pytest.mark.parametrize("fn", [lambda t: gt.max_pool2d(t, 3, 2, 1, ceil_mode=True),
                                lambda t: gt.max_pool2d(t, (2, 3), 1, dilation=(2, 1)),
                                lambda t: gt.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                                lambda t: gt.avg_pool2d(t, 2, 1, divisor_override=3)])
def test_gradgradcheck_pools(fn):
    (x,) = leaves((2, 2, 5, 6), seed=3)
    assert gradgradcheck(fn, (x,))


def test_third_order_through_the_linear_pieces():
    """conv2d_input_grad / conv2d_weight_grad (what conv2d's differentiable backward is built from) are
    themselves twice differentiable: conv2d is differentiable to third order."""
    g, x, w = leaves((1, 2, 3, 2), (1, 2, 4, 3), (2, 1, 2, 2), seed=4)
    geo = ([1, 2], [0, 0, 1, 0], [1, 1], 2, "reflect")
    assert gradgradcheck(lambda g, w: ops.conv2d_input_grad(g, x, w, *geo), (g, w), check_undefined_grad=False)
    assert gradgradcheck(lambda g, x: ops.conv2d_weight_grad(g, x, w, *geo), (g, x), check_undefined_grad=False)


def test_fused_backward_ops_are_differentiable():
    """torch.ops.gpuconv.conv2d_backward / conv_transpose2d_backward (the first-order path) have autograd
    too: the vector-Jacobian product of the differentiable composite (two inputs each, to keep it quick)."""
    go, w = leaves((1, 2, 4, 3), (2, 2, 2, 2), seed=5)
    x, b = torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    geo = ([1, 1], [0, 1, 0, 0], [1, 1], 1, "zeros")
    assert torch.autograd.gradcheck(lambda go, w: ops.conv2d_backward(go, x, w, b, *geo, "elu", 0.5,
                                                                      [True, True, True]),
                                    (go, w), fast_mode=True)
    go_t, x_t = leaves((1, 2, 7, 4), (1, 2, 3, 2), seed=6)
    w_t = torch.randn(2, 2, 2, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda go, x: ops.conv_transpose2d_backward(go, x, w_t, [2, 2], [0, 0], [1, 0], 1, [1, 1],
                                                    [True, True, False]),
        (go_t, x_t), fast_mode=True)


# ----------------------------------------------------------------------------- against PyTorch


ACTS = [("tanh", torch.tanh), (("elu", 0.5), lambda z: F.elu(z, 0.5)), ("sigmoid", torch.sigmoid),
        (("leaky_relu", 0.2), lambda z: F.leaky_relu(z, 0.2)), ("relu", F.relu)]


def torch_conv(x, w, b, stride, pads, dilation, groups, mode, act):
    """What gpuconv's conv2d computes, from torch ops: pad (t, b, l, r) by mode, then a valid convolution."""
    t, bo, l, r = (pads,) * 4 if isinstance(pads, int) else pads
    xp = F.pad(x, (l, r, t, bo), mode="constant" if mode == "zeros" else mode)
    return act(F.conv2d(xp, w, b, stride, 0, dilation, groups))


def penalty_net(x, params, conv, transpose, max_pool, avg_pool, acts):
    # conv(stride 2, "same": pads (1, 1, 0, 1) on 7 × 6) -> conv(reflect, groups 2) -> max pool -> conv(circular,
    # asymmetric) -> conv(replicate, dilated) -> transposed conv -> avg pool -> conv
    layers = [((2, 2), ("same", (1, 1, 0, 1)), (1, 1), 1, "zeros"), ((1, 1), 1, (1, 1), 2, "reflect"),
              ((1, 1), (0, 1, 1, 0), (1, 1), 1, "circular"), ((1, 1), (1, 1, 2, 0), (1, 2), 1, "replicate"),
              ((1, 1), 0, (1, 1), 1, "zeros")]
    h = x
    for i, (layer, act) in enumerate(zip(layers, acts)):
        h = conv(h, params[2 * i], params[2 * i + 1], *layer, act)
        if i == 1:
            h = max_pool(h)
        if i == 3:
            h = avg_pool(transpose(h, params[10], params[11]))
    return h


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_penalty_matches_torch(device):
    """|dL/dx|² through every op and activation, differentiated w.r.t. every weight and bias: the same
    numbers as PyTorch's (a gradient penalty, as WGAN-GP uses). Before double backward was implemented,
    gpuconv.torch returned first-order gradients with no graph here, silently wrong."""
    shapes = [(4, 3, 3, 3), (4,), (4, 2, 3, 3), (4,), (3, 4, 2, 2), (3,), (3, 3, 2, 2), (3,), (2, 3, 1, 1), (2,),
              (3, 3, 2, 2), (3,)]
    x, *params = leaves((2, 3, 7, 6), *shapes, seed=7, device=device)

    def ours(h, w, b, stride, padding, dilation, groups, mode, act):
        padding = padding[0] if isinstance(padding, tuple) and padding[0] == "same" else padding
        return gt.conv2d(h, w, b, stride, padding, dilation, groups, padding_mode=mode, activation=act[0])

    def theirs(h, w, b, stride, padding, dilation, groups, mode, act):
        padding = padding[1] if isinstance(padding, tuple) and padding[0] == "same" else padding
        return torch_conv(h, w, b, stride, padding, dilation, groups, mode, act[1])

    results = []
    for conv, transpose, max_pool, avg_pool in (
            (ours, lambda h, w, b: gt.conv_transpose2d(h, w, b, 2, 1, 1), lambda h: gt.max_pool2d(h, 2, 1),
             lambda h: gt.avg_pool2d(h, 2, 1, 1, count_include_pad=False)),
            (theirs, lambda h, w, b: F.conv_transpose2d(h, w, b, 2, 1, 1), lambda h: F.max_pool2d(h, 2, 1),
             lambda h: F.avg_pool2d(h, 2, 1, 1, count_include_pad=False))):
        y = penalty_net(x, params, conv, transpose, max_pool, avg_pool, ACTS)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), params))
    for ours_g, theirs_g in zip(*results):
        assert ours_g.abs().max() > 0 and ours_g.device.type == device
        torch.testing.assert_close(ours_g, theirs_g, rtol=1e-9, atol=1e-10)


def test_gradient_penalty_module():
    """The issue's case: a gt.Conv2d module's weight gradient of a gradient penalty equals torch.nn's."""
    theirs = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    ours = gt.Conv2d(3, 4, 3, stride=2, padding=1, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    (x,) = leaves((2, 3, 6, 6), seed=8)
    norms = []
    for m in (ours, theirs):
        (gx,) = torch.autograd.grad(m(x).square().sum(), x, create_graph=True)
        norms.append(torch.autograd.grad(gx.square().sum(), m.weight)[0])
    torch.testing.assert_close(norms[0], norms[1], rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- the activations' derivatives


TORCH_ACTS = {"relu": lambda z, a: F.relu(z), "leaky_relu": lambda z, a: F.leaky_relu(z, a), "sigmoid":
              lambda z, a: torch.sigmoid(z), "tanh": lambda z, a: torch.tanh(z), "elu": lambda z, a: F.elu(z, a),
              "gelu": lambda z, a: F.gelu(z), "gelu_tanh": lambda z, a: F.gelu(z, approximate="tanh"),
              "silu": lambda z, a: F.silu(z)}


def test_every_activation_has_a_differentiable_derivative():
    """A fused activation added to gpuconv needs its torch derivative here, or second derivatives through
    it raise NotImplementedError."""
    assert set(_args.ACTIVATIONS) <= set(_torch_activations.DERIVATIVES)


@pytest.mark.parametrize("name", sorted(TORCH_ACTS))
def test_activation_derivatives_match_torch(name):
    """act'(z) and act''(z) as torch's autograd takes them from torch's own activation, at random points
    (away from relu's kink) and at large |z|, where a careless formula overflows."""
    _, alpha = _args.activation_spec(name)
    z = torch.cat([torch.randn(50, dtype=torch.float64), torch.tensor([-800.0, 800.0], dtype=torch.float64)])
    z = z.requires_grad_()
    ones = torch.ones_like(z)
    (d1,) = torch.autograd.grad(TORCH_ACTS[name](z, alpha), z, ones, create_graph=True)
    ours = _torch_activations.derivative(name, alpha, z)
    torch.testing.assert_close(ours, d1, rtol=1e-12, atol=1e-12)
    (want,) = torch.autograd.grad(d1, z, ones, allow_unused=True, materialize_grads=True)
    got = torch.autograd.grad(ours, z, ones)[0] if ours.requires_grad else torch.zeros_like(z)   # relu's: constant
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(got).all()


def test_missing_activation_derivative_raises_when_a_second_derivative_is_requested(monkeypatch):
    monkeypatch.delitem(_torch_activations.DERIVATIVES, "tanh")
    x, w = leaves((1, 1, 3, 3), (1, 1, 2, 2), seed=9)
    y = gt.conv2d(x, w, activation="tanh")
    torch.autograd.grad(y.sum(), w, retain_graph=True)                    # first order: no need for it
    with pytest.raises(NotImplementedError, match="tanh"):
        torch.autograd.grad(y.sum(), w, create_graph=True)


# ----------------------------------------------------------------------------- the first-order fast path


def test_first_order_backward_is_one_fused_call(monkeypatch):
    """Without create_graph the backward is one gpu_conv2d_backward call (z recomputed inside it), as
    before; the differentiable composite (separate pieces) is built only when a graph is requested."""
    calls = collections.Counter()
    for name in ("gpu_conv2d", "gpu_conv2d_backward"):
        real = getattr(_torch_conv_ops, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(_torch_conv_ops, name, counted)
    x, w, b = leaves((1, 2, 4, 4), (2, 2, 3, 3), (2,), seed=10)
    y = gt.conv2d(x, w, b, padding=1, activation="sigmoid")
    grads = torch.autograd.grad(y.sum(), (x, w, b), retain_graph=True)
    assert calls == {"gpu_conv2d": 1, "gpu_conv2d_backward": 1}
    assert not any(g.requires_grad for g in grads)
    calls.clear()
    grads_graph = torch.autograd.grad(y.sum(), (x, w, b), create_graph=True)
    assert calls == {"gpu_conv2d": 1, "gpu_conv2d_backward": 2}           # z, then input and weight pieces
    assert all(g.requires_grad for g in grads_graph[:2])
    for a, e in zip(grads_graph, grads):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


class SeenOps(TorchDispatchMode):
    """Records the ops that reach the dispatcher below autograd, and runs them unchanged."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


def test_dispatcher_path_matches_the_direct_path():
    """Plain tensors in eager mode skip the custom-op dispatcher (its Python overhead); under a dispatch
    mode (as under torch.compile, FlopCounterMode, fake tensors) the same math goes through
    torch.ops.gpuconv and the custom ops' own autograd, second derivatives included."""
    x, w, b = leaves((1, 2, 5, 4), (2, 2, 3, 3), (2,), seed=11)

    def penalty_grads():
        y = gt.max_pool2d(gt.conv2d(x, w, b, padding=1, activation="tanh"), 2, 1)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (w, b))

    direct = penalty_grads()
    mode = SeenOps()
    with mode:
        dispatched = penalty_grads()
    assert {"gpuconv.conv2d.default", "gpuconv.conv2d_input_grad.default", "gpuconv.conv2d_weight_grad.default",
            "gpuconv.max_pool2d.default", "gpuconv.max_pool2d_backward.default",
            "gpuconv.max_pool2d_gather.default"} <= mode.seen
    for a, e in zip(dispatched, direct):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
