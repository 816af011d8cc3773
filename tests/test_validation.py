"""Validation that does not depend on call history, empty batches (N = 0) as PyTorch, read-only and
non-array out=, and the checks made before any work."""

import numpy as np
import pytest
from numba import cuda

import gpuconv as gc
from conftest import CaiArray, ON_GPU, to_host
from gpuconv import _args

X = np.random.default_rng(5).standard_normal((1, 2, 6, 6))
W = np.random.default_rng(6).standard_normal((3, 2, 3, 3))


# ----------------------------------------------------------------------------- call history

# (op, argument, a valid value, an equal value of the wrong type)
BAD_PAIRS = [
    ("conv2d", "padding", (1, 1), (1.0, 1)), ("conv2d", "stride", (1, 1), (True, 1)),
    ("conv2d", "dilation", [1, 1], [1, 1.0]), ("conv2d", "padding", (1, 1, 1, 1), (np.float64(1), 1, 1, 1)),
    ("conv2d", "groups", 1, True), ("conv_transpose2d", "stride", (1, 1), (1, 1.0)),
    ("conv_transpose2d", "output_padding", (0, 0), (False, 0)), ("max_pool2d", "kernel_size", (2, 2), (2.0, 2)),
    ("avg_pool2d", "stride", (1, 1), (True, True)),
]
CALLS = {"conv2d": lambda **kw: gc.gpu_conv2d(X, W, **kw),
         "conv_transpose2d": lambda **kw: gc.gpu_conv_transpose2d(X, W.transpose(1, 0, 2, 3).copy(), **kw),
         "max_pool2d": lambda **kw: gc.gpu_max_pool2d(X, **kw),
         "avg_pool2d": lambda **kw: gc.gpu_avg_pool2d(X, 2, **kw)}


@pytest.mark.parametrize("valid_first", [True, False])
@pytest.mark.parametrize("op, arg, good, bad", BAD_PAIRS)
def test_validation_does_not_depend_on_call_history(op, arg, good, bad, valid_first):
    """(1.0, 1) equals (1, 1) and True equals 1: a cache keyed by value alone accepted them after a valid call."""
    for _ in range(2):
        if valid_first:
            CALLS[op](**{arg: good})
        with pytest.raises(TypeError, match="must be an int"):
            CALLS[op](**{arg: bad})
        CALLS[op](**{arg: good})


def test_memoized_keys_by_type():
    calls = []
    f = _args.memoized(lambda *a: calls.append(a) or len(calls))
    assert [f((1, 1)), f((1.0, 1)), f((True, 1)), f([1, 1]), f(((1,), 1)), f(((1.0,), 1)), f((1, 1))] == \
        [1, 2, 3, 4, 5, 6, 1]
    assert f({"unhashable": 1}) == 7 and f({"unhashable": 1}) == 8        # built every time, never cached


# ----------------------------------------------------------------------------- empty batches


@pytest.fixture
def launches(monkeypatch):
    """The grids of every kernel launched (the simulator's kernel objects)."""
    if ON_GPU:
        pytest.skip("counts the simulator's launches")
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    grids = []
    real = FakeCUDAKernel.__getitem__

    def getitem(self, config):
        grids.append(config[0])
        return real(self, config)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", getitem)
    return grids


def empty_cases():
    x0, go0 = np.zeros((0, 2, 6, 6)), np.zeros((0, 3, 6, 6))
    w = W
    xp0, gp0 = np.zeros((0, 2, 6, 6)), np.zeros((0, 2, 3, 3))
    return {
        "conv2d": (lambda: gc.gpu_conv2d(x0, w, np.ones(3), padding=1), [(0, 3, 6, 6)]),
        "conv2d[im2col]": (lambda: gc.gpu_conv2d(x0, w, padding=1, algo="im2col"), [(0, 3, 6, 6)]),
        "conv2d[winograd]": (lambda: gc.gpu_conv2d(x0, w, padding=1, algo="winograd"), [(0, 3, 6, 6)]),
        "conv2d_backward": (lambda: gc.gpu_conv2d_backward(go0, x0, w, padding=1), [(0, 2, 6, 6), w.shape, (3,)]),
        "conv_transpose2d": (lambda: gc.gpu_conv_transpose2d(go0, w, padding=1), [(0, 2, 6, 6)]),
        "conv_transpose2d_backward": (lambda: gc.gpu_conv_transpose2d_backward(x0, go0, w, padding=1),
                                      [(0, 3, 6, 6), w.shape, (2,)]),
        "max_pool2d": (lambda: gc.gpu_max_pool2d(xp0, 2, return_indices=True), [(0, 2, 3, 3), (0, 2, 3, 3)]),
        "avg_pool2d": (lambda: gc.gpu_avg_pool2d(xp0, 2), [(0, 2, 3, 3)]),
        "global_max_pool2d": (lambda: gc.gpu_global_max_pool2d(xp0), [(0, 2, 1, 1)]),
        "global_avg_pool2d": (lambda: gc.gpu_global_avg_pool2d(xp0), [(0, 2, 1, 1)]),
        "max_pool2d_backward": (lambda: gc.gpu_max_pool2d_backward(gp0, xp0, 2), [(0, 2, 6, 6)]),
        "avg_pool2d_backward": (lambda: gc.gpu_avg_pool2d_backward(gp0, xp0, 2), [(0, 2, 6, 6)]),
        "global_avg_pool2d_backward": (lambda: gc.gpu_global_avg_pool2d_backward(gp0[:, :, :1, :1], xp0),
                                       [(0, 2, 6, 6)]),
        "matmul": (lambda: gc.gpu_matmul(np.zeros((0, 3, 4)), np.zeros((1, 4, 5))), [(0, 3, 5)]),
        "linear": (lambda: gc.gpu_linear(np.zeros((0, 4)), np.ones((5, 4)), np.ones(5), activation="relu"),
                   [(0, 5)]),
    }


@pytest.mark.parametrize("name", list(empty_cases()))
def test_empty_batch_gives_an_empty_result_and_launches_no_empty_grid(launches, name):
    call, shapes = empty_cases()[name]
    got = call()
    got = got if isinstance(got, tuple) else (got,)
    assert [tuple(g.shape) for g in got] == [tuple(s) for s in shapes]
    for g in got:
        assert isinstance(g, np.ndarray) and (g.size == 0 or not g.any())     # weight and bias gradients: zeros
    assert all(np.prod(grid) > 0 for grid in launches), launches


def test_empty_batch_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x0 = torch.zeros(0, 2, 6, 6, dtype=torch.float64)
    w = torch.from_numpy(W)
    assert gc.gpu_conv2d(x0, w, padding=1).shape == F.conv2d(x0, w, padding=1).shape
    assert gc.gpu_max_pool2d(x0, 3, 2, 1).shape == F.max_pool2d(x0, 3, 2, 1).shape
    assert gc.gpu_linear(torch.zeros(0, 4, dtype=torch.float64), torch.ones(5, 4, dtype=torch.float64)).shape == \
        F.linear(torch.zeros(0, 4, dtype=torch.float64), torch.ones(5, 4, dtype=torch.float64)).shape
    assert type(gc.gpu_avg_pool2d(x0, 2)) is torch.Tensor


def test_empty_batch_on_the_device_keeps_the_type():
    y = gc.gpu_conv2d(cuda.to_device(np.zeros((0, 2, 6, 6))), cuda.to_device(W), padding=1)
    assert not isinstance(y, np.ndarray) and tuple(y.shape) == (0, 3, 6, 6)
    gx, gw, gb = gc.gpu_conv2d_backward(cuda.to_device(np.zeros((0, 3, 6, 6))), cuda.to_device(np.zeros((0, 2, 6, 6))),
                                        cuda.to_device(W), padding=1)
    assert tuple(gx.shape) == (0, 2, 6, 6) and not to_host(gw).any() and not to_host(gb).any()


def test_empty_batch_still_checks_the_algorithm():
    with pytest.raises(ValueError, match="3×3 kernel"):
        gc.gpu_conv2d(np.zeros((0, 2, 6, 6)), np.zeros((3, 2, 5, 5)), algo="winograd")
    with pytest.raises(ValueError, match="no empty dimension"):
        gc.gpu_conv2d(np.zeros((1, 0, 6, 6)), np.zeros((3, 0, 3, 3)))


# ----------------------------------------------------------------------------- out= and inputs


def test_read_only_out_is_refused_before_any_work(monkeypatch):
    ro = np.zeros((1, 2, 3, 3))
    ro.setflags(write=False)
    monkeypatch.setattr(cuda, "to_device", lambda *a, **k: pytest.fail("work started for a read-only out"))
    with pytest.raises(ValueError, match="read-only"):
        gc.gpu_max_pool2d(X, 2, out=ro)
    with pytest.raises(ValueError, match="read-only"):
        gc.gpu_avg_pool2d_backward(np.zeros((1, 2, 3, 3)), X, 2, out=np.broadcast_to(np.zeros(1), X.shape))
    monkeypatch.undo()
    with pytest.raises(ValueError, match="read-only"):
        gc.gpu_max_pool2d(CaiArray(X), 2, out=CaiArray(np.zeros((1, 2, 3, 3)), readonly=True))


@pytest.mark.parametrize("call", [
    lambda: gc.gpu_matmul([[1.0]], np.ones((1, 1))),
    lambda: gc.gpu_matmul(np.ones((1, 1)), (1.0,)),
    lambda: gc.gpu_linear([[1.0]], np.ones((1, 1))),
    lambda: gc.gpu_max_pool2d(X, 2, out=[0.0]),
    lambda: gc.gpu_conv2d(X, W, out=[[0.0]]),
    lambda: gc.gpu_conv2d_backward(np.zeros((1, 3, 4, 4)).tolist(), X, W),
])
def test_lists_are_type_errors(call):
    with pytest.raises(TypeError, match="must be an array"):
        call()


def test_memoized_from_many_threads():
    """Entries built, hit and evicted (maxsize 8) from 8 threads at once: never an error or a wrong value."""
    import threading

    f = _args.memoized(lambda a, b: (a, b, a * b), maxsize=8)
    errors = []

    def work(t):
        try:
            for i in range(3000):
                a = (i * 7 + t) % 23
                assert f(a, (a, 1)) == (a, (a, 1), a * (a, 1))
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
