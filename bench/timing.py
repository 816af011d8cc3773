"""Device timing: warm-up, CUDA events, median and p20/p80, L2 flushed
before every timed launch, and the host's wall time per call measured separately.

Everything here needs a CUDA device and PyTorch (its events and allocator); the harness calls it only
when not in the simulator.
"""

from __future__ import annotations

import time

import numpy as np

REPS = 50
WARMUP = 5
NBUF = 4                # input copies rotated between launches (with the L2 flush: cold inputs)


class L2Flusher:
    """Writes a buffer twice the L2 size between timed launches, so no launch finds its inputs in L2."""

    def __init__(self):
        import torch

        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 << 20) or (64 << 20)
        self.buf = torch.empty(2 * l2 // 4, dtype=torch.float32, device="cuda")

    def __call__(self):
        self.buf.zero_()


def stats(times_ms) -> dict:
    t = np.asarray(times_ms, dtype=np.float64)
    return dict(median_ms=float(np.median(t)), p20_ms=float(np.percentile(t, 20)),
                p80_ms=float(np.percentile(t, 80)), reps=int(t.size))


def device_time(fn, flush, reps=REPS, warmup=WARMUP) -> dict:
    """fn(i) timed with CUDA events around each call, the L2 flushed before each; median/p20/p80 in ms."""
    import torch

    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        flush()
        starts[i].record()
        fn(i)
        ends[i].record()
    torch.cuda.synchronize()
    return stats([s.elapsed_time(e) for s, e in zip(starts, ends)])


def host_time_us(fn, reps=REPS) -> float:
    """Host wall time to issue one call (checks, dispatch, launch), averaged over reps issued back to
    back; the device work overlaps and is waited for only at the end."""
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(reps):
        fn(i)
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / reps * 1e6
