"""What the hardware can do, measured in the same run: device-to-device copy bandwidth and fp32 FMA
throughput (our own kernel: independent FMA chains per thread, no memory traffic), plus the device's
description (name, SMs, L2, clocks, driver). GPU only."""

from __future__ import annotations

import subprocess

import numpy as np

FMA_CHAINS = 8          # independent chains per thread: enough to hide the FMA latency
FMA_ITERS = 4096
FMA_THREADS = 256


def copy_bandwidth(nbytes=1 << 30) -> dict:
    """GB/s of a device-to-device copy of nbytes (bytes read + bytes written per second)."""
    import torch

    from .timing import L2Flusher, device_time

    a = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").normal_()
    b = torch.empty_like(a)
    t = device_time(lambda i: b.copy_(a), L2Flusher(), reps=20)
    t["gb_per_s"] = 2 * nbytes / (t["median_ms"] * 1e-3) / 1e9
    return t


def _fma_kernel():
    from numba import cuda, float32

    @cuda.jit
    def fma_peak(out, iters):
        t = cuda.grid(1)
        m = float32(0.999)
        c = float32(0.001)
        a0 = float32(t)
        a1 = a0 + float32(1)
        a2 = a0 + float32(2)
        a3 = a0 + float32(3)
        a4 = a0 + float32(4)
        a5 = a0 + float32(5)
        a6 = a0 + float32(6)
        a7 = a0 + float32(7)
        for _ in range(iters):
            a0 = cuda.fma(a0, m, c)
            a1 = cuda.fma(a1, m, c)
            a2 = cuda.fma(a2, m, c)
            a3 = cuda.fma(a3, m, c)
            a4 = cuda.fma(a4, m, c)
            a5 = cuda.fma(a5, m, c)
            a6 = cuda.fma(a6, m, c)
            a7 = cuda.fma(a7, m, c)
        out[t] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7   # keeps every chain live

    return fma_peak


def fma_peak() -> dict:
    """fp32 GFLOP/s of FMA_CHAINS independent FMA chains in every thread of 16 blocks per SM."""
    import torch
    from numba import cuda

    from .timing import device_time

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    blocks = sms * 16
    out = cuda.device_array(blocks * FMA_THREADS, dtype=np.float32)
    kernel = _fma_kernel()
    t = device_time(lambda i: kernel[blocks, FMA_THREADS](out, FMA_ITERS), lambda: None, reps=20)
    flops = 2 * FMA_CHAINS * FMA_ITERS * blocks * FMA_THREADS
    t["gflops"] = flops / (t["median_ms"] * 1e-3) / 1e9
    return t


def device_info() -> dict:
    import torch

    p = torch.cuda.get_device_properties(0)
    info = dict(name=p.name, sms=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
                l2_bytes=getattr(p, "L2_cache_size", None), capability=f"{p.major}.{p.minor}",
                cuda_runtime=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm,clocks.mem",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        info.update(zip(("driver", "sm_clock", "sm_clock_max", "mem_clock"), [v.strip() for v in q.split(",")]))
    except (OSError, subprocess.SubprocessError):
        pass
    return info
