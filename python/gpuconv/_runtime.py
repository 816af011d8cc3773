"""Decides, before numba's CUDA target is imported, whether kernels run on a CUDA device or in Numba's simulator.

GPUCONV_SIMULATOR=1 forces the simulator, =0 forbids it; unset, the simulator is turned on when the
CUDA driver reports no device. An explicit NUMBA_ENABLE_CUDASIM wins over both. numba itself may have
been imported already (numba.cuda reads the setting when it is first imported). If numba.cuda was
imported before gpuconv its choice stands; on a machine without a device that choice cannot work, so
importing gpuconv warns and every operation raises a RuntimeError saying how to fix it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings


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
    if "numba.cuda" in sys.modules:
        return "numba.cuda imported first"
    forced = os.environ.get("GPUCONV_SIMULATOR", "")
    if forced == "1" or (forced != "0" and driver_device_count() == 0):
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        if "numba" in sys.modules:     # numba read its environment already: let it see the new setting
            from numba.core import config

            config.reload_config()
        return "no CUDA device" if forced != "1" else "GPUCONV_SIMULATOR=1"
    return "CUDA device" if forced != "0" else "GPUCONV_SIMULATOR=0"


REASON = _choose()

from numba import cuda as _cuda  # noqa: E402,F401  (after the environment is settled)


def _simulating() -> bool:
    """What numba.cuda actually chose (numba-cuda keeps its own copy of the setting)."""
    try:
        from numba.cuda.core import config
    except ImportError:   # older numba-cuda reads numba's
        from numba import config
    return bool(config.ENABLE_CUDASIM)


SIMULATOR: bool = _simulating()

# The simulator's block scheduler: greenlets, or OS threads that wait instead of poll (gpuconv._simulator;
# same rules). GPUCONV_STOCK_SIMULATOR=1 keeps numba-cuda's own.
if SIMULATOR and os.environ.get("GPUCONV_STOCK_SIMULATOR", "0") != "1":
    from . import _simulator

    _simulator.install()

# Why no operation can run, or None: numba.cuda was imported first, for a device, and there is none.
UNUSABLE: str | None = None
if not SIMULATOR and REASON == "numba.cuda imported first" and driver_device_count() == 0:
    UNUSABLE = ("numba's CUDA target (numba.cuda) was imported before gpuconv on a machine without a CUDA "
                "device, so gpuconv could not turn on Numba's CUDA simulator. Import gpuconv before numba.cuda "
                "(`import gpuconv` first), or set NUMBA_ENABLE_CUDASIM=1 in the environment before Python starts.")
    warnings.warn(UNUSABLE, RuntimeWarning, stacklevel=2)
elif REASON == "numba.cuda imported first" and os.environ.get("GPUCONV_SIMULATOR") == "1" and not SIMULATOR:
    warnings.warn("GPUCONV_SIMULATOR=1 has no effect: numba.cuda was imported before gpuconv, for a device",
                  RuntimeWarning, stacklevel=2)


def require_target():
    """RuntimeError when no operation can run here (see UNUSABLE)."""
    if UNUSABLE:
        raise RuntimeError(UNUSABLE)


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
    elif UNUSABLE:
        info["device"] = f"unavailable: {UNUSABLE}"
    else:
        try:
            dev = cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
            info["device"] = f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"
            info["driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
        except Exception as e:  # a broken driver is reported, not raised
            info["device"] = f"unavailable: {e}"
    return info
