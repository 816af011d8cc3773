"""gpuconv._simulator: the simulator's block schedulers (greenlets; OS threads that wait) keep the stock
one's rules (barriers, threads that return early, syncthreads_count, failures named by thread and block,
the next launch unaffected)."""

import numpy as np
import pytest
from conftest import ON_GPU
from numba import cuda

from gpuconv import _simulator

pytestmark = pytest.mark.skipif(ON_GPU, reason="the simulator's scheduler")


def test_installed_in_the_simulator():
    from numba.cuda.simulator import kernel

    assert _simulator.install()
    assert kernel.BlockManager.run.__module__ == kernel.BlockThread.syncthreads.__module__ == _simulator.__name__


@cuda.jit
def _rotate(x, y, rounds):
    # each round: every thread publishes, waits, reads its right neighbour, waits again
    s = cuda.shared.array(64, dtype=np.float64)
    t = cuda.threadIdx.x
    v = x[cuda.blockIdx.x, t]
    for _ in range(rounds):
        s[t] = v
        cuda.syncthreads()              # all published before anyone reads
        v = s[(t + 1) % cuda.blockDim.x]
        cuda.syncthreads()              # all read before the next round overwrites
    y[cuda.blockIdx.x, t] = v


def test_barriers_order_shared_memory_across_rounds():
    x = np.arange(3 * 64, dtype=np.float64).reshape(3, 64)
    y = np.zeros_like(x)
    _rotate[3, 64](x, y, 5)
    np.testing.assert_array_equal(y, np.roll(x, -5, axis=1))


@cuda.jit
def _early_exit(y):
    # threads past the first 8 return at once; the rest meet at barriers, which those returns don't hold
    s = cuda.shared.array(8, dtype=np.int64)
    t = cuda.threadIdx.x
    if t >= 8:
        return
    s[t] = t + 1
    cuda.syncthreads()
    y[t] = s[7 - t] + cuda.syncthreads_count(t % 2 == 0)


def test_threads_that_return_do_not_hold_a_barrier():
    y = np.zeros(8, dtype=np.int64)
    _early_exit[1, 32](y)
    np.testing.assert_array_equal(y, np.arange(8, 0, -1) + 4)


@cuda.jit
def _fails(y):
    t = cuda.threadIdx.x
    cuda.syncthreads()
    if t == 5 and cuda.blockIdx.x == 1:
        y[100] = 1.0                    # out of bounds: the simulator raises IndexError
    cuda.syncthreads()
    y[t] = 1.0


def test_a_failing_thread_is_raised_with_its_thread_and_block_and_the_next_launch_runs():
    y = np.zeros(16)
    with pytest.raises(IndexError, match=r"tid=\[5, 0, 0\] ctaid=\[1, 0, 0\]"):
        _fails[2, 16](y)
    z = np.zeros(3 * 64)
    _rotate[1, 64](np.arange(64.0).reshape(1, 64), z.reshape(3, 64)[:1], 1)
    np.testing.assert_array_equal(z[:64], np.roll(np.arange(64.0), -1))


def test_greenlet_threads_when_greenlet_is_installed():
    pytest.importorskip("greenlet")
    from numba.cuda.simulator import kernelapi

    assert isinstance(kernelapi.threading, _simulator._Threading)


def test_os_thread_scheduler_keeps_the_same_rules():
    """The threaded waiting scheduler (no greenlet, or GPUCONV_SIMULATOR_THREADS=1) passes the same tests."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, GPUCONV_SIMULATOR_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", __file__,
                           "-k", "barriers or return or failing"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout + proc.stderr
