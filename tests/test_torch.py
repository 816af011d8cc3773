"""gpuconv.torch against torch.nn: forward, backward, gradcheck, state dicts, and training a small CNN.

CPU tensors go through the host path (the CUDA simulator without a GPU), so these run in CI."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402
from gpuconv import reference as ref  # noqa: E402

F = torch.nn.functional


def same_grads(ours, theirs, tol):
    for a, b in zip(ours, theirs):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=1, dilation=(1, 2), groups=2, bias=False),
                                dict(padding=2, padding_mode="reflect"), dict(padding="same"),
                                dict(padding=1, padding_mode="circular", stride=(1, 2))])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv2d_module_matches_torch(kw, dtype):
    torch.manual_seed(0)
    theirs = torch.nn.Conv2d(4, 6, 3, dtype=dtype, **kw)
    ours = gt.Conv2d(4, 6, 3, dtype=dtype, **kw)
    ours.load_state_dict(theirs.state_dict())              # same parameters, unchanged
    x = torch.randn(2, 4, 7, 6, dtype=dtype, requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(y_ours, y_theirs, rtol=tol, atol=tol)
    go = torch.randn_like(y_theirs)
    g_ours = torch.autograd.grad(y_ours, [x, ours.weight] + ([ours.bias] if ours.bias is not None else []), go)
    g_theirs = torch.autograd.grad(y_theirs, [x, theirs.weight] + ([theirs.bias] if theirs.bias is not None else []),
                                   go)
    same_grads(g_ours, g_theirs, tol * 10)


def test_conv2d_extras_beyond_torch():
    """Stride-aware "same", asymmetric padding and a fused activation, against the reference."""
    torch.manual_seed(1)
    m = gt.Conv2d(3, 4, 3, stride=2, padding="same", activation="tanh", dtype=torch.float64)
    x = torch.randn(1, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    y = m(x)
    want = ref.conv2d(x.detach().numpy(), m.weight.detach().numpy(), m.bias.detach().numpy(), stride=2,
                      padding="same", activation="tanh")
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, [x, m.weight], go)
    rx, rw, _ = ref.conv2d_backward(go.numpy(), x.detach().numpy(), m.weight.detach().numpy(), stride=2,
                                    padding="same", bias=m.bias.detach().numpy(), activation="tanh")
    np.testing.assert_allclose(gx.numpy(), rx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gw.numpy(), rw, rtol=1e-10, atol=1e-12)
    m4 = gt.Conv2d(3, 2, 2, padding=(0, 1, 1, 0), dtype=torch.float64)
    assert m4(x).shape == (1, 2, 7, 8)          # (7 + 0 + 1 − 2 + 1, 8 + 1 + 0 − 2 + 1)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1), dict(groups=2, dilation=2)])
def test_conv_transpose2d_module_matches_torch(kw):
    torch.manual_seed(2)
    theirs = torch.nn.ConvTranspose2d(4, 6, 3, dtype=torch.float64, **kw)
    ours = gt.ConvTranspose2d(4, 6, 3, dtype=torch.float64, **kw)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs)
    go = torch.randn_like(y_theirs)
    same_grads(torch.autograd.grad(y_ours, [x, ours.weight, ours.bias], go),
               torch.autograd.grad(y_theirs, [x, theirs.weight, theirs.bias], go), 1e-10)


def test_conv_transpose2d_output_size():
    m = gt.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=torch.float64)
    t = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=torch.float64)
    m.load_state_dict(t.state_dict())
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(m(x, output_size=(8, 8)), t(x, output_size=(8, 8)))


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), ceil_mode=True),
                                dict(kernel_size=2, stride=1, dilation=2)])
def test_max_pool_module_matches_torch(kw):
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    y_ours, y_theirs = gt.MaxPool2d(**kw)(x), torch.nn.MaxPool2d(**kw)(x)
    torch.testing.assert_close(y_ours, y_theirs)
    go = torch.randn_like(y_theirs)
    same_grads(torch.autograd.grad(y_ours, x, go), torch.autograd.grad(y_theirs, x, go), 1e-12)
    y, idx = gt.MaxPool2d(return_indices=True, **kw)(x)
    torch.testing.assert_close(idx, torch.nn.MaxPool2d(return_indices=True, **kw)(x)[1])


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
                                dict(kernel_size=2, ceil_mode=True, padding=1), dict(kernel_size=3, divisor_override=4)])
def test_avg_pool_module_matches_torch(kw):
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    y_ours, y_theirs = gt.AvgPool2d(**kw)(x), torch.nn.AvgPool2d(**kw)(x)
    torch.testing.assert_close(y_ours, y_theirs)
    go = torch.randn_like(y_theirs)
    same_grads(torch.autograd.grad(y_ours, x, go), torch.autograd.grad(y_theirs, x, go), 1e-12)


def test_unbatched_input():
    m = gt.MaxPool2d(2)
    x = torch.randn(3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(m(x), torch.nn.MaxPool2d(2)(x))


def test_gradcheck():
    torch.manual_seed(3)
    d = dict(dtype=torch.float64, requires_grad=True)
    x, w, b = torch.randn(1, 2, 4, 4, **d), torch.randn(2, 1, 2, 2, **d), torch.randn(2, **d)
    assert torch.autograd.gradcheck(lambda *a: gt.conv2d(*a, stride=2, padding=1, groups=2, activation="tanh"),
                                    (x, w, b), fast_mode=True)
    wt = torch.randn(2, 1, 2, 2, **d)
    assert torch.autograd.gradcheck(lambda *a: gt.conv_transpose2d(*a, stride=2, groups=2), (x, wt, b),
                                    fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: gt.avg_pool2d(t, 3, 2, 1, ceil_mode=True), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: gt.max_pool2d(t, 2, 1), (x,), fast_mode=True)


def test_weight_grad_deterministic_through_autograd():
    torch.manual_seed(4)
    m = gt.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    grads = []
    for _ in range(2):
        m.zero_grad()
        m(x).square().sum().backward()
        grads.append(m.weight.grad.clone())
    assert torch.equal(grads[0], grads[1])


def small_cnn(conv, pool):
    torch.manual_seed(5)
    return torch.nn.Sequential(conv(1, 3, 3, padding=1, dtype=torch.float64), torch.nn.ReLU(), pool(2),
                               conv(3, 4, 3, padding=1, dtype=torch.float64), torch.nn.ReLU(), pool(2),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 2, 3, dtype=torch.float64))


def test_swap_modules_and_train_to_the_same_loss():
    """The same CNN with torch.nn's layers and with gpuconv's trains to the same losses, step by step."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=gen)
    labels = torch.randint(0, 3, (3,), generator=gen)
    losses = {}
    for name, conv, pool in (("torch", torch.nn.Conv2d, torch.nn.MaxPool2d), ("gpuconv", gt.Conv2d, gt.MaxPool2d)):
        model = small_cnn(conv, pool)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        losses[name] = []
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    np.testing.assert_allclose(losses["gpuconv"], losses["torch"], rtol=1e-10)
    assert losses["torch"][-1] < losses["torch"][0]


@pytest.mark.parametrize("kw, err, match", [
    (dict(activation="gelu2"), ValueError, "activation must be one of"),
    (dict(activation=5), TypeError, "activation must be None, a name or"),
    (dict(activation=("relu", 2.0)), ValueError, "takes no parameter"),
    (dict(activation=("elu", float("nan"))), ValueError, "finite"),
    (dict(algo="fast"), ValueError, "algo must be one of"),
    (dict(padding=(1, 2, 3)), TypeError, "padding must be"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding="full"), ValueError, "padding must be"),
    (dict(padding=(0, 1, 0, 1.5)), TypeError, r"padding\[3\] must be an int"),
    (dict(padding_mode="zero"), ValueError, "padding_mode"),
])
def test_conv2d_module_checks_its_arguments_at_construction(kw, err, match):
    with pytest.raises(err, match=match):
        gt.Conv2d(2, 4, 3, **kw)


def test_conv2d_repr_shows_its_real_padding():
    """A state dict holds parameters only: loading torch's padding=1, stride=2 weights into a "same"
    module gives that module's own padding (on a 7 × 7 input: (1, 1) for both, on 8 × 8: torch's (1, 1)
    against "same"'s (0, 1)). The repr says which padding a module has."""
    ours = gt.Conv2d(4, 4, 3, stride=2, padding="same", activation="relu")
    theirs = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
    assert "padding=same" in repr(ours) and "activation='relu'" in repr(ours)
    assert "padding=(1, 1)" in repr(theirs)
    ours.load_state_dict(theirs.state_dict())
    x7, x8 = torch.randn(1, 4, 7, 7), torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(ours(x7), F.relu(theirs(x7)))
    assert not torch.allclose(ours(x8), F.relu(theirs(x8)))
    torch.testing.assert_close(ours(x8), F.relu(F.conv2d(F.pad(x8, (0, 1, 0, 1)), theirs.weight, theirs.bias, 2)))
    four = gt.Conv2d(4, 4, 3, padding=(0, 1, 2, 0), algo="direct")
    assert four.padding == (0, 1, 2, 0) and "padding=(0, 1, 2, 0)" in repr(four) and "algo='direct'" in repr(four)
    assert gt.Conv2d(4, 4, 3, padding=1).padding == (1, 1)                     # torch.nn's own forms unchanged


def test_functional_unbatched_and_argument_types():
    torch.manual_seed(7)
    x, w, b = torch.randn(2, 5, 6, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64), None
    torch.testing.assert_close(gt.conv2d(x, w, b, padding=1), F.conv2d(x, w, b, padding=1))
    wt = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(gt.conv_transpose2d(x, wt, stride=2), F.conv_transpose2d(x, wt, stride=2))
    torch.testing.assert_close(gt.avg_pool2d(x, 2), F.avg_pool2d(x, 2))
    y, idx = gt.max_pool2d(x, 2, return_indices=True)
    assert y.shape == idx.shape == (2, 2, 3)
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        gt.conv2d(x, w.numpy())
    with pytest.raises(ValueError, match=r"weight must be 4-D, got shape \(2, 3, 3\)"):
        gt.conv2d(x, w[0], padding="same")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        gt.max_pool2d(x.numpy(), 2)
    with pytest.raises(ValueError, match=r"x must be 3-D \(C, H, W\) or 4-D"):
        gt.avg_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        gt.avg_pool2d(x, 2, divisor_override=0)
