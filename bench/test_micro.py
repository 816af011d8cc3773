"""pytest-benchmark microbenchmarks of each public kernel on a GPU: `pytest bench/ --benchmark-only`.

Not collected by the default test run (testpaths = tests). Each benchmarked call waits for the device
(torch.cuda.synchronize), so the figure is the wall time of one call including its launch; the
harness (gpuconv bench) gives the event-timed device figures against cuDNN.
"""

import pytest

import gpuconv

if gpuconv.SIMULATOR:
    pytest.skip("microbenchmarks need a CUDA device", allow_module_level=True)

torch = pytest.importorskip("torch")


def synced(fn):
    def call():
        fn()
        torch.cuda.synchronize()
    return call


@pytest.fixture(scope="module")
def layer():
    x = torch.randn(16, 64, 56, 56, device="cuda")
    w = torch.randn(64, 64, 3, 3, device="cuda")
    b = torch.randn(64, device="cuda")
    return x, w, b


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_conv2d(benchmark, layer, algo):
    x, w, b = layer
    benchmark(synced(lambda: gpuconv.gpu_conv2d(x, w, b, padding=1, activation="relu", algo=algo)))


def test_conv2d_depthwise(benchmark):
    x = torch.randn(16, 256, 56, 56, device="cuda")
    w = torch.randn(256, 1, 3, 3, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_conv2d(x, w, padding=1, groups=256)))


def test_conv2d_backward(benchmark, layer):
    x, w, b = layer
    go = torch.randn(16, 64, 56, 56, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_conv2d_backward(go, x, w, padding=1)))


def test_conv_transpose2d(benchmark):
    x = torch.randn(16, 64, 28, 28, device="cuda")
    w = torch.randn(64, 32, 4, 4, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_conv_transpose2d(x, w, stride=2, padding=1)))


def test_max_pool2d(benchmark):
    x = torch.randn(32, 64, 112, 112, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_max_pool2d(x, 3, 2, 1)))


def test_max_pool2d_backward(benchmark):
    x = torch.randn(32, 64, 112, 112, device="cuda")
    y, idx = gpuconv.gpu_max_pool2d(x, 3, 2, 1, return_indices=True)
    go = torch.randn_like(y)
    benchmark(synced(lambda: gpuconv.gpu_max_pool2d_backward(go, x, 3, 2, 1, indices=idx)))


def test_avg_pool2d(benchmark):
    x = torch.randn(16, 128, 56, 56, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_avg_pool2d(x, 3, 2, 1)))


def test_global_avg_pool2d(benchmark):
    x = torch.randn(64, 2048, 7, 7, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_global_avg_pool2d(x)))


def test_matmul(benchmark):
    a = torch.randn(1024, 1024, device="cuda")
    b = torch.randn(1024, 1024, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_matmul(a, b)))


def test_linear(benchmark):
    x = torch.randn(256, 4096, device="cuda")
    w = torch.randn(1000, 4096, device="cuda")
    benchmark(synced(lambda: gpuconv.gpu_linear(x, w, activation="relu")))
