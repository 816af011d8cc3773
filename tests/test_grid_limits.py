"""CUDA grid limits (x <= 2**31 - 1, y and z <= 65535) at sizes far past them, without allocating or
running anything: every compiled kernel is replaced by a recorder of its launches (grid, block), and
array arguments are zero-stride views of one element. Each GEMM call must launch exactly one block per
(product, tile) of its extents; a small run with the limit lowered checks, in the simulator, that the
split launches cover every element exactly once."""

import functools
import sys

import numpy as np
import pytest
from numba import cuda

import gpuconv
from conftest import ON_GPU, rel_err
from gpuconv import _interop, autotune
from gpuconv import reference as ref
from gpuconv._args import conv2d_geometry
from gpuconv.kernels import backward, direct, epilogue, im2col, implicit_gemm, pool, winograd
from gpuconv.kernels import gemm as kgemm

pytestmark = pytest.mark.skipif(ON_GPU, reason="launch plans are recorded on simulator arrays")

KERNEL_MODULES = (direct, kgemm, im2col, implicit_gemm, winograd, pool, backward, epilogue)
F32 = np.dtype(np.float32)
GRID_X, GRID_YZ = 2**31 - 1, 65535          # CUDA's limits on gridDim.x and on gridDim.y, gridDim.z


def clear_plan_caches():
    """Forget every cached plan and launcher (they hold the kernels they were built with)."""
    for name, mod in list(sys.modules.items()):
        if name == "gpuconv" or name.startswith("gpuconv."):
            for obj in list(vars(mod).values()):
                if callable(getattr(obj, "cache_clear", None)) and getattr(obj, "__module__", "").startswith(
                        "gpuconv"):
                    obj.cache_clear()


def fake(shape, dtype=F32):
    """A simulator device array of any shape over one element (never read: the kernels are recorders)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    return FakeCUDAArray(np.broadcast_to(np.zeros((), np.dtype(dtype)), tuple(int(n) for n in shape)))


@pytest.fixture
def recorded(monkeypatch):
    """(launches, gemms): every kernel launch as (kernel, grid, block), and every GEMM launch closure
    call as (M, N, batch, dtype, [its kernel launches])."""
    launches, gemms = [], []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, config):
            grid, block = (tuple(c) if isinstance(c, tuple) else (c,) for c in config[:2])
            return lambda *args: launches.append((self.name, grid + (1,) * (3 - len(grid)),
                                                  block + (1,) * (3 - len(block))))

    for mod in KERNEL_MODULES:
        for name, obj in list(vars(mod).items()):
            if name.endswith("_kernel") and callable(obj):
                monkeypatch.setattr(mod, name, functools.partial(lambda n, *a, **k: Recorder(n), name))
    real_launch_gemm = kgemm.launch_gemm

    def launch_gemm(dtype, store, M, N, K, batch, *args, **kwargs):
        launch = real_launch_gemm(dtype, store, M, N, K, batch, *args, **kwargs)

        def recording(*a):
            start = len(launches)
            launch(*a)
            gemms.append((M, N, batch, np.dtype(dtype), launches[start:]))
        return recording

    monkeypatch.setattr(kgemm, "launch_gemm", launch_gemm)
    monkeypatch.setattr(_interop, "allocate", lambda shape, dtype, kind, like, stream: (fake(shape, dtype),) * 2)
    monkeypatch.setattr(cuda, "device_array", lambda shape, dtype=F32, stream=0: fake(shape, dtype))
    clear_plan_caches()
    yield launches, gemms
    clear_plan_caches()


def check_launches(launches, gemms):
    assert launches
    for name, grid, block in launches:
        assert 1 <= grid[0] <= GRID_X and all(1 <= n <= GRID_YZ for n in grid[1:]), \
            f"{name}: grid {grid}"
        assert np.prod(block) <= 1024, f"{name}: block {block}"
    for M, N, batch, dtype, ls in gemms:
        BM, BN, _ = kgemm.tile(dtype)
        tiles = -(-M // BM) * -(-N // BN)
        assert sum(np.prod(grid) for _, grid, _ in ls) == tiles * batch, \
            f"a {M}×{N} GEMM of batch {batch} launched {[grid for _, grid, _ in ls]}"


# (x shape, weight shape, conv options): the sizes
BIG = {
    "N=70000": ((70000, 1, 4, 4), (2, 1, 3, 3), dict()),
    "groups=32, N=4096": ((4096, 32, 4, 4), (32, 1, 3, 3), dict(groups=32)),
    "groups=70000": ((1, 70000, 3, 3), (70000, 1, 3, 3), dict(groups=70000, padding=1)),
    "winograd, N=70000": ((70000, 2, 3, 3), (2, 2, 3, 3), dict(padding=1)),
}


@pytest.mark.parametrize("case", BIG)
def test_every_eligible_algorithm_launches_within_limits(recorded, case):
    xs, ws, kw = BIG[case]
    g = conv2d_geometry(xs, ws, **kw)
    algos = autotune.eligible(g, F32)
    assert "im2col" in algos and "implicit_gemm" in algos
    for algo in algos:
        gpuconv.gpu_conv2d(fake(xs), fake(ws), fake(ws[:1]), algo=algo, **kw)
    check_launches(*recorded)
    assert any(grid[2] == GRID_YZ for _, grid, _ in recorded[0]), "no launch split at the limit"


@pytest.mark.parametrize("case", ["N=70000", "groups=32, N=4096", "groups=70000"])
def test_gradients_launch_within_limits(recorded, case):
    xs, ws, kw = BIG[case]
    g = conv2d_geometry(xs, ws, **kw)
    if case == "groups=32, N=4096":             # the weight gradient runs per image: keep the record short
        xs, g = (64,) + xs[1:], conv2d_geometry((64,) + xs[1:], ws, **kw)
    gpuconv.gpu_conv2d_backward(fake(g.out_shape), fake(xs), fake(ws), **kw)
    gpuconv.gpu_conv_transpose2d(fake(g.out_shape), fake(ws), **{k: v for k, v in kw.items() if k != "padding"})
    check_launches(*recorded)


def test_linear_with_9m_rows(recorded):
    gpuconv.gpu_linear(fake((9_000_000, 16)), fake((8, 16)), fake((8,)), activation="tanh")
    gpuconv.gpu_matmul(fake((70000, 3, 5)), fake((1, 5, 2)))                     # a batch of 70,000
    check_launches(*recorded)
    assert [(M, N, batch) for M, N, batch, _, _ in recorded[1]] == [(9_000_000, 8, 1), (3, 2, 70000)]


def test_pools_launch_within_limits(recorded):
    x = fake((70000, 300000, 1, 1))                  # 2.1e10 planes, 8 per block: past grid x
    gpuconv.gpu_global_max_pool2d(x, return_indices=True)
    gpuconv.gpu_global_avg_pool2d(x)
    xp = fake((70000, 70000, 4, 4))
    gpuconv.gpu_max_pool2d(xp, 2, return_indices=True)
    gpuconv.gpu_avg_pool2d(xp, 2)
    gpuconv.gpu_avg_pool2d_backward(fake((70000, 70000, 2, 2)), xp, 2)
    check_launches(*recorded)


# ----------------------------------------------------------------------------- split launches, run


@pytest.fixture
def grid_limit_2(monkeypatch):
    """The GEMM launcher's y/z limit lowered to 2, so small batches split into several launches."""
    monkeypatch.setattr(kgemm, "MAX_GRID_YZ", 2)
    clear_plan_caches()
    yield
    clear_plan_caches()


def test_split_gemm_launches_cover_every_element_once(grid_limit_2):
    """C = 0, then C += A @ B with A, B ones and K = 1: an element covered k times reads k."""
    M, N, batch = 70, 5, 5                               # float64 tiles 64×64: 2 tiles, 5 products
    launch = kgemm.launch_gemm(np.float64, "matrix", M, N, 1, batch, True, True, accumulate=True)
    c = cuda.to_device(np.zeros((batch, M, N)))
    launch(cuda.to_device(np.ones((1, M, 1))), cuda.to_device(np.ones((1, 1, N))), c,
           cuda.to_device(np.zeros(1)), 0, 0, 0)
    np.testing.assert_array_equal(c.copy_to_host(), np.ones((batch, M, N)))


@pytest.mark.parametrize("algo", ["im2col", "implicit_gemm"])
def test_split_launches_give_the_reference(grid_limit_2, rng, algo):
    x = rng.standard_normal((3, 3, 5, 5))                # 3 images × 3 groups = 9 products, 5 launches
    w = rng.standard_normal((3, 1, 3, 3))
    b = rng.standard_normal(3)
    got = gpuconv.gpu_conv2d(x, w, b, padding=1, groups=3, algo=algo)
    assert rel_err(got, ref.conv2d(x, w, b, padding=1, groups=3)) < 1e-12
    go = rng.standard_normal(got.shape)
    gw = gpuconv.gpu_conv2d_backward(go, x, w, padding=1, groups=3, needs=("weight",))[1]   # 3 groups: 2 launches
    assert rel_err(gw, ref.conv2d_backward(go, x, w, padding=1, groups=3)[1]) < 1e-12
