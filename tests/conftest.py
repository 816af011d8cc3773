"""Shared fixtures. Importing gpuconv first turns on Numba's CUDA simulator when there is no device."""

import numpy as np
import pytest

import gpuconv
from numba import cuda

ON_GPU = not gpuconv.SIMULATOR


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def rel_err(out, ref) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN anywhere in out gives inf, so it never passes."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return float("inf")
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(out - ref) / (denom if denom > 0 else 1.0))


class CaiArray:
    """A device array that offers only the CUDA array interface, as CuPy's ndarray does: its __array__
    raises TypeError (CuPy refuses implicit host conversion), so an op that converts a device input on
    the host fails. In the simulator its "device" memory is a private NumPy array (pointers there are
    host addresses); on a device, a Numba device array's."""

    def __init__(self, host, readonly=False):
        host = np.asarray(host)
        self._mem = cuda.to_device(np.ascontiguousarray(host)) if ON_GPU else np.array(host)
        self._readonly = readonly

    @property
    def __cuda_array_interface__(self):
        if ON_GPU:
            return dict(self._mem.__cuda_array_interface__, data=(self._mem.device_ctypes_pointer.value,
                                                                  self._readonly))
        m = self._mem
        return {"shape": m.shape, "strides": m.strides, "typestr": m.dtype.str,
                "data": (m.ctypes.data, self._readonly), "version": 3}

    shape = property(lambda self: tuple(self._mem.shape))
    dtype = property(lambda self: self._mem.dtype)
    strides = property(lambda self: tuple(self._mem.strides))

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (CaiArray)")

    def get(self):
        """The test's own read-back (never called by gpuconv)."""
        return self._mem.copy_to_host() if ON_GPU else self._mem.copy()


def to_host(a):
    """A result of any device kind (or a NumPy array) as a NumPy array, for the test's checks."""
    if a is None or isinstance(a, np.ndarray):
        return a
    if isinstance(a, CaiArray):
        return a.get()
    return a.copy_to_host()


@pytest.fixture
def host_copies(monkeypatch):
    """A context manager counting device -> host conversions (copy_to_host, __array__, NumPy's array
    interfaces of a simulator device array, which stand for the copy a real device array makes) and
    host -> device copies (cuda.to_device) made inside it: the device path must make none."""
    import contextlib
    from collections import Counter

    count = Counter()
    active = [False]

    def counting(kind, real):
        def wrapper(*args, **kwargs):
            if active[0]:
                count[kind] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(cuda, "to_device", counting("to_device", cuda.to_device))
    if not ON_GPU:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        monkeypatch.setattr(FakeCUDAArray, "copy_to_host", counting("copy_to_host", FakeCUDAArray.copy_to_host),
                            raising=False)
        monkeypatch.setattr(FakeCUDAArray, "__array__",
                            counting("__array__", lambda self, *a, **k: np.array(self._ary)), raising=False)
        for attr in ("__array_interface__", "__array_struct__"):
            monkeypatch.setattr(FakeCUDAArray, attr, property(counting(attr, lambda self, attr=attr: getattr(
                self._ary, attr))), raising=False)
    else:  # pragma: no cover - on a device: Numba's DeviceNDArray
        from numba.cuda.cudadrv.devicearray import DeviceNDArray

        monkeypatch.setattr(DeviceNDArray, "copy_to_host", counting("copy_to_host", DeviceNDArray.copy_to_host))

    @contextlib.contextmanager
    def guard():
        count.clear()
        active[0] = True
        try:
            yield count
        finally:
            active[0] = False

    return guard
