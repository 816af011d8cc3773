"""Host time of one gpu_conv2d call on device arrays, split into the wrapper's own work and the launch.

On a CUDA device it times whole calls (launch included, asynchronous, no synchronize inside the loop).
Anywhere it also times the wrapper alone (checks, cached plan lookup, views) with the kernel launch
replaced by a no-op, which is what the wrapper adds on top of Numba's own launch cost.
"""

import time

import gpuconv  # first: it picks device or simulator before numba is imported
import gpuconv.conv as conv
import numpy as np
from numba import cuda

REPS = 2000


def per_call_us(fn, reps=REPS):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


class _NoLaunch:
    def run(self, *args):
        pass


def main():
    x = cuda.to_device(np.zeros((16, 64, 56, 56), np.float32))
    w = cuda.to_device(np.zeros((64, 64, 3, 3), np.float32))
    out = cuda.device_array((16, 64, 56, 56), np.float32)
    for algo in ("direct", "auto"):
        call = lambda: gpuconv.gpu_conv2d(x, w, None, 1, 1, out=out, algo=algo)  # noqa: E731
        if not gpuconv.SIMULATOR:
            cuda.synchronize()
            print(f"{algo}: whole call, launch included: {per_call_us(call, 200):.1f} us/call")
            cuda.synchronize()
        real = conv._plan
        conv._plan = lambda *a: _NoLaunch()
        try:
            print(f"{algo}: wrapper alone (launch replaced by a no-op): {per_call_us(call):.1f} us/call "
                  f"({'simulator' if gpuconv.SIMULATOR else 'device'} arrays)")
        finally:
            conv._plan = real


if __name__ == "__main__":
    main()
