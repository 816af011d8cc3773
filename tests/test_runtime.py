"""Choosing the simulator when numba was imported before gpuconv (fresh processes, no CUDA device)."""

import os
import subprocess
import sys

import pytest

from gpuconv import _runtime

pytestmark = pytest.mark.skipif(_runtime.driver_device_count() > 0, reason="needs a machine without a CUDA device")

CALL = ("import numpy as np; y = gpuconv.gpu_max_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2); "
        "print(gpuconv.SIMULATOR, y.ravel().tolist())")


def run(code):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "GPUCONV_SIMULATOR")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_numba_imported_first_still_gets_the_simulator():
    proc = run("import numba; import gpuconv; " + CALL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "True [5.0, 7.0, 13.0, 15.0]"


def test_numba_cuda_imported_first_says_what_to_do():
    proc = run("import warnings; from numba import cuda; import gpuconv\n"
               "try:\n    " + CALL + "\nexcept RuntimeError as e:\n    print('RuntimeError:', e)")
    assert proc.returncode == 0, proc.stderr
    assert "was imported before gpuconv" in proc.stderr                        # the import-time warning
    assert proc.stdout.startswith("RuntimeError: numba's CUDA target (numba.cuda) was imported before gpuconv")
    assert "NUMBA_ENABLE_CUDASIM=1" in proc.stdout
