"""gpuconv.torch under torch.compile: every op passes torch.library.opcheck, and a small CNN of gpuconv.torch
modules trains under torch.compile(fullgraph=True) to the same losses as eager, with no graph break.

CPU tensors run the kernels in the CUDA simulator (the same custom ops serve CUDA tensors). Most tests
use backend="aot_eager" (dynamo + AOTAutograd, no code generation); one uses inductor, which compiles
C++ for the CPU."""

import pytest
from conftest import ON_GPU

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402
from torch._dynamo.backends.common import aot_autograd  # noqa: E402
from torch._functorch.aot_autograd import make_boxed_func  # noqa: E402

F = torch.nn.functional
ops = torch.ops.gpuconv


def rand(*shape, grad=True, seed=0):
    gen = torch.Generator().manual_seed(seed + sum(shape))
    return torch.randn(shape, dtype=torch.float64, generator=gen).requires_grad_(grad)


def _opcheck_cases():
    x = rand(2, 2, 5, 4)
    geo = ([2, 1], [1, 0, 0, 1], [1, 2], 2, "reflect")            # output (2, 4, 2, 3)
    tconf = ([2, 2], [1, 0], [1, 1], 2, [1, 1])                    # output (2, 6, 10, 9)
    pconf = ([3, 2], [2, 1], [1, 0], [1, 1], True)
    aconf = ([3, 2], [2, 1], [1, 0], True, False, None)
    y, idx = ops.max_pool2d(x, *pconf)
    # the fused first-order backward ops take inputs that need no grad here (their autograd, used only
    # when they themselves are differentiated, is gradchecked in test_torch_double_backward)
    return {
        "conv2d": (ops.conv2d, (x, rand(4, 1, 3, 2), rand(4), *geo, "elu", 0.5, "auto")),
        "conv2d_backward": (ops.conv2d_backward, (rand(2, 4, 2, 3, grad=False), x.detach(),
                                                  rand(4, 1, 3, 2, grad=False), rand(4, grad=False), *geo, "tanh",
                                                  None, [True, True, True])),
        "conv2d_input_grad": (ops.conv2d_input_grad, (rand(2, 4, 2, 3), x, rand(4, 1, 3, 2), *geo)),
        "conv2d_weight_grad": (ops.conv2d_weight_grad, (rand(2, 4, 2, 3), x, rand(4, 1, 3, 2), *geo)),
        "conv_transpose2d": (ops.conv_transpose2d, (x, rand(2, 3, 3, 2), rand(6), *tconf)),
        "conv_transpose2d_backward": (ops.conv_transpose2d_backward,
                                      (rand(2, 6, 10, 9, grad=False), x.detach(), rand(2, 3, 3, 2, grad=False),
                                       *tconf, [True, False, True])),
        "max_pool2d": (ops.max_pool2d, (x, *pconf)),
        "max_pool2d_backward": (ops.max_pool2d_backward, (rand(*y.shape), x, idx, *pconf)),
        "max_pool2d_gather": (ops.max_pool2d_gather, (x, idx, *pconf)),
        "avg_pool2d": (ops.avg_pool2d, (x, *aconf)),
        "avg_pool2d_backward": (ops.avg_pool2d_backward, (rand(2, 2, 3, 3), x, *aconf)),
    }


OPS = sorted(_opcheck_cases())


def test_every_op_is_checked():
    registered = {name for name in dir(ops) if isinstance(getattr(ops, name), torch._ops.OpOverloadPacket)}
    assert registered == set(OPS)


@pytest.mark.parametrize("name", OPS)
def test_opcheck(name):
    """Schema (no mutation, no aliasing), autograd registration, fake tensors against the real kernels,
    and AOT dispatch with dynamic shapes."""
    op, args = _opcheck_cases()[name]
    torch.library.opcheck(op, args)


def small_cnn():
    torch.manual_seed(5)
    d = dict(dtype=torch.float64)
    return torch.nn.Sequential(
        gt.Conv2d(1, 3, 3, stride=2, padding="same", activation="tanh", **d),     # (3, 5, 4)
        gt.MaxPool2d(2, stride=1, ceil_mode=True),                                  # (3, 4, 3)
        gt.ConvTranspose2d(3, 2, 2, stride=2, **d),                                 # (2, 8, 6)
        gt.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", activation=("leaky_relu", 0.1), **d),
        gt.AvgPool2d(2),                                                            # (2, 4, 3)
        torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 3, 3, **d))


def train(model, step, x, labels, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(step(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in model.parameters()]


def data():
    gen = torch.Generator().manual_seed(6)
    return torch.randn(2, 1, 9, 8, dtype=torch.float64, generator=gen), torch.randint(0, 3, (2,), generator=gen)


def capturing_backend(graphs):
    """AOTAutograd with no code generation that keeps the forward and backward graphs' code."""
    def compiler(kind):
        def compile_graph(gm, example_inputs):
            graphs[kind] = gm.code
            return make_boxed_func(gm.forward)
        return compile_graph

    return aot_autograd(fw_compiler=compiler("forward"), bw_compiler=compiler("backward"))


def test_compiled_training_matches_eager_without_graph_breaks():
    x, labels = data()
    eager = small_cnn()
    want, want_params = train(eager, eager, x, labels, 3)

    model = small_cnn()
    graphs = {}                   # fullgraph=True: any graph break is an error
    got, got_params = train(model, torch.compile(model, fullgraph=True, backend=capturing_backend(graphs)), x,
                            labels, 3)
    assert got == pytest.approx(want, rel=1e-12)
    assert got[-1] < got[0]
    for a, e in zip(got_params, want_params):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    # our ops, in the graphs, with the fused first-order backward ops (no differentiable composite)
    for op in ("conv2d", "max_pool2d", "conv_transpose2d", "avg_pool2d"):
        assert f"gpuconv.{op}.default" in graphs["forward"]
    for op in ("conv2d_backward", "max_pool2d_backward", "conv_transpose2d_backward", "avg_pool2d_backward"):
        assert f"gpuconv.{op}.default" in graphs["backward"]
    assert "conv2d_input_grad" not in graphs["backward"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not ON_GPU, reason="needs a CUDA device"))])
def test_inductor_forward_and_backward_match_eager(device):
    x, labels = (t.to(device) for t in data())
    grads = []
    for compiled in (False, True):
        model = small_cnn().to(device)
        step = torch.compile(model, fullgraph=True) if compiled else model
        F.cross_entropy(step(x), labels).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, e in zip(*grads):
        assert a.device.type == device
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_dynamic_shapes():
    """Symbolic sizes go through the fake implementations' size formulas (stride-2 "same" included)."""
    torch.manual_seed(7)
    model = torch.nn.Sequential(gt.Conv2d(2, 3, 3, stride=2, padding="same", dtype=torch.float64),
                                gt.MaxPool2d(2, ceil_mode=True))
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    for shape in ((1, 2, 7, 6), (2, 2, 9, 5)):
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        y = compiled(x)
        torch.testing.assert_close(y, model(x))
        torch.testing.assert_close(torch.autograd.grad(y.sum(), x)[0], torch.autograd.grad(model(x).sum(), x)[0])


def test_bad_arguments_fail_at_trace_time_with_the_wrappers_message():
    m = gt.Conv2d(3, 4, 3)
    with pytest.raises(Exception, match=r"weight \(4, 3, 3, 3\) has 3 input channels per group"):
        torch.compile(m, fullgraph=True, backend="aot_eager")(torch.randn(1, 2, 5, 5))
