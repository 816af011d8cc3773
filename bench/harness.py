"""Check every case against the reference, then (on a GPU) time it against cuDNN in the same run.

Method (shared/DESIGN.md): each case is checked first (float64 reference, or cuDNN in float64 where the
reference would be too slow); timing uses CUDA events after a warm-up, reports median and p20/p80 over
REPS launches with the input rotated between NBUF copies so L2 does not hold it, and the host wall
time per call separately. In the CUDA simulator only the parity checks run, at simulator-sized
shapes, and no timing is printed.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from datetime import datetime, timezone

import numpy as np

import gpuconv
from gpuconv import gpu_conv2d
from gpuconv import reference as ref
from gpuconv.conv import choose_direct_kernel
from gpuconv._args import conv2d_geometry

REPS = 50
WARMUP = 5
NBUF = 4
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def rel_err(out, want):
    out, want = np.asarray(out, np.float64), np.asarray(want, np.float64)
    if not np.all(np.isfinite(out)):
        return float("inf")
    return float(np.linalg.norm(out - want) / max(np.linalg.norm(want), 1e-300))


def check_case(case, dtype=np.float32, seed=0):
    """Relative error of gpu_conv2d against the float64 reference on fresh random data."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape).astype(dtype)
    w = rng.standard_normal(case.w_shape).astype(dtype)
    b = rng.standard_normal(case.K).astype(dtype)
    kw = dict(stride=case.stride, padding=case.padding, groups=case.groups)
    return rel_err(gpu_conv2d(x, w, b, **kw), ref.conv2d(x, w, b, **kw))


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return None


def time_case(case, dtype=np.float32):  # pragma: no cover - needs a CUDA device
    """Median / p20 / p80 milliseconds of gpu_conv2d and of cuDNN (PyTorch, TF32 off), and host µs/call."""
    import torch

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    g = conv2d_geometry(case.x_shape, case.w_shape, case.stride, case.padding, 1, case.groups)
    xs = [torch.randn(case.x_shape, device="cuda", dtype=getattr(torch, np.dtype(dtype).name)) for _ in range(NBUF)]
    w = torch.randn(case.w_shape, device="cuda", dtype=xs[0].dtype)
    out = torch.empty(g.out_shape, device="cuda", dtype=xs[0].dtype)
    pads = g.pads
    pad_same = pads[0] == pads[1] and pads[2] == pads[3]

    def ours(i):
        gpu_conv2d(xs[i % NBUF], w, None, case.stride, case.padding, 1, case.groups, out=out)

    def cudnn(i):
        xi = xs[i % NBUF]
        if not pad_same:
            xi = torch.nn.functional.pad(xi, (pads[2], pads[3], pads[0], pads[1]))
        torch.nn.functional.conv2d(xi, w, None, case.stride, (pads[0], pads[2]) if pad_same else 0, 1, case.groups)

    res = {}
    for name, fn in (("gpuconv", ours), ("cudnn", cudnn)):
        for i in range(WARMUP):
            fn(i)
        torch.cuda.synchronize()
        times = []
        for i in range(REPS):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn(i)
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(REPS):
            fn(i)
        host_us = (time.perf_counter() - t0) / REPS * 1e6
        torch.cuda.synchronize()
        med = float(np.median(times))
        res[name] = dict(median_ms=med, p20_ms=float(np.percentile(times, 20)),
                         p80_ms=float(np.percentile(times, 80)), host_us_per_call=host_us,
                         gflops=g.flops / (med * 1e-3) / 1e9)
    res["ratio_to_cudnn"] = res["gpuconv"]["median_ms"] / res["cudnn"]["median_ms"]
    return res


def metadata():
    """What the run was on: date, commit, target, versions (device and driver on a GPU)."""
    sim = gpuconv.SIMULATOR
    return dict(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), git_commit=_git_commit(),
        target="simulator" if sim else "cuda", host=platform.node(), versions=gpuconv._runtime.describe(),
        mode="parity only (CUDA simulator, simulator-sized shapes, no timings)" if sim else "parity + timing",
    )


def case_row(case):
    """One case: checked against the reference first, then (on a GPU, if it passed) timed."""
    sim = gpuconv.SIMULATOR
    c = case.scaled() if sim else case
    g = conv2d_geometry(c.x_shape, c.w_shape, c.stride, c.padding, 1, c.groups)
    row = dict(name=c.name, x=c.x_shape, w=c.w_shape, stride=c.stride, padding=c.padding, groups=c.groups,
               kernel=choose_direct_kernel(g, np.float32), flops=g.flops)
    row["rel_err"] = check_case(c)
    row["passed"] = row["rel_err"] < TOL[np.float32]
    if not sim and row["passed"]:
        row["timing"] = time_case(c)
    return row


def write(out_dir, meta, rows) -> str:
    """results.json under out_dir: the run's metadata and every case's figures."""
    import os

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    with open(path, "w") as f:
        json.dump(dict(meta, cases=rows), f, indent=1, default=str)
    return path


def run(cases, out_dir=None):
    """Check (and on a GPU, time) each case; returns metadata with the rows, written to out_dir if given."""
    meta, rows = metadata(), [case_row(c) for c in cases]
    if out_dir:
        meta["path"] = write(out_dir, meta, rows)
    return dict(meta, cases=rows)
