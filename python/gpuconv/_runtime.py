"""Decides, before numba is imported, whether kernels run on a CUDA device or in Numba's simulator.

GPUCONV_SIMULATOR=1 forces the simulator, =0 forbids it; unset, the simulator is turned on when the
CUDA driver reports no device. An explicit NUMBA_ENABLE_CUDASIM wins over both. If numba was imported
before gpuconv, its own setting stands.
"""

from __future__ import annotations

import ctypes
import os
import sys


def driver_device_count() -> int:
    """CUDA devices the driver sees, asked through libcuda itself (0 where there is no driver)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            n = ctypes.c_int(0)
            return n.value if lib.cuDeviceGetCount(ctypes.byref(n)) == 0 else 0
        except AttributeError:
            return 0
    return 0


def _choose() -> str:
    if "NUMBA_ENABLE_CUDASIM" in os.environ:
        return "environment"
    if "numba" in sys.modules:
        return "numba imported first"
    forced = os.environ.get("GPUCONV_SIMULATOR", "")
    if forced == "1" or (forced != "0" and driver_device_count() == 0):
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        return "no CUDA device" if forced != "1" else "GPUCONV_SIMULATOR=1"
    return "CUDA device" if forced != "0" else "GPUCONV_SIMULATOR=0"


REASON = _choose()

from numba import config as _numba_config  # noqa: E402  (after the environment is settled)

SIMULATOR: bool = bool(_numba_config.ENABLE_CUDASIM)


def describe() -> dict:
    """What `gpuconv info` prints: the execution target and the versions that matter."""
    import numba
    import numpy

    info = {"target": "simulator" if SIMULATOR else "cuda", "reason": REASON,
            "python": sys.version.split()[0], "numpy": numpy.__version__, "numba": numba.__version__}
    try:
        from importlib.metadata import version

        info["numba-cuda"] = version("numba-cuda")
    except Exception:  # not installed under that name
        info["numba-cuda"] = "?"
    from numba import cuda

    if SIMULATOR:
        info["device"] = "Numba CUDA simulator (kernels run on the CPU; no timings)"
    else:
        try:
            dev = cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
            info["device"] = f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"
            info["driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
        except Exception as e:  # a broken driver is reported, not raised
            info["device"] = f"unavailable: {e}"
    return info
