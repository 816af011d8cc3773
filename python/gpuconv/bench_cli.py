"""`gpuconv bench` and `gpuconv report`: run the harness in the checkout's bench/ package (it is not
installed with the package) and render its results."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import gpuconv


def _bench():
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "harness.py").exists():
        raise SystemExit("gpuconv bench runs from a source checkout (bench/ not found next to python/gpuconv)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return (importlib.import_module("bench.layers"), importlib.import_module("bench.harness"),
            importlib.import_module("bench.report"))


def _available_algos(harness):
    ours = [a for a in harness.CONV_ALGOS if a != "im2col_cublas"]
    if gpuconv.SIMULATOR:
        return ours                            # im2col_cublas needs a device and CuPy
    try:
        import cupy  # noqa: F401
    except ImportError:
        return ours
    return list(harness.CONV_ALGOS)


def _select(layers, args):
    if args.full:
        convs, pools, gemms, dasks = layers.FULL, layers.POOLS, layers.GEMMS, layers.DASK
    else:
        convs, pools, gemms, dasks = layers.QUICK, layers.QUICK_POOLS, layers.QUICK_GEMMS, []
    if args.layers:
        every = list(layers.FULL) + list(layers.POOLS) + list(layers.GEMMS) + list(layers.DASK)
        unknown = set(args.layers) - {c.name for c in every}
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}")
        convs = [c for c in layers.FULL if c.name in args.layers]
        pools = [c for c in layers.POOLS if c.name in args.layers]
        gemms = [c for c in layers.GEMMS if c.name in args.layers]
        dasks = [c for c in layers.DASK if c.name in args.layers]
    return convs, pools, gemms, dasks


def _line(r):
    if r.get("skipped"):
        return f"{r['kind']:<5} {r['name']:<22} skipped: {r['skipped']}"
    checks = "  ".join(f"{a} {v['rel_err']:.1e} {'ok' if v['passed'] else 'FAIL'}" for a, v in r["checks"].items())
    line = f"{r['kind']:<5} {r['name']:<22} {checks}"
    for name, t in r.get("timing", {}).items():
        figure = f"{t['gflops']:.0f} GFLOP/s" if "gflops" in t else f"{t['gb_per_s']:.0f} GB/s"
        line += f"\n      {name:<14} {t['median_ms']:.3f} ms [{t['p20_ms']:.3f}, {t['p80_ms']:.3f}]  {figure}"
        if "ratio_to_cudnn" in t:
            line += f"  ×{t['ratio_to_cudnn']:.2f} of cuDNN's time"
        if "ratio_to_one_call" in t:
            line += f"  ×{t['ratio_to_one_call']:.2f} of one call's time"
    return line


def main(args) -> int:
    layers, harness, report = _bench()
    try:
        convs, pools, gemms, dasks = _select(layers, args)
    except ValueError as e:
        print(f"gpuconv bench: {e}", file=sys.stderr)
        return 2
    available = _available_algos(harness)
    algos = args.algo or available
    missing = [a for a in algos if a not in available]
    if missing:
        print(f"gpuconv bench: {missing} not available here (available: {available})", file=sys.stderr)
        return 2
    if gpuconv.SIMULATOR:
        print("No CUDA device: running the parity checks in Numba's CUDA simulator at simulator-sized shapes.\n"
              "No timings are measured or printed.")
    from rich.progress import Progress

    meta = harness.metadata()
    flush = None
    if not gpuconv.SIMULATOR:  # pragma: no cover - needs a CUDA device
        from bench.timing import L2Flusher

        flush = L2Flusher()
    jobs = ([(c.name, lambda c=c: harness.conv_row(c, algos, flush)) for c in convs]
            + [(c.name, lambda c=c: harness.pool_row(c, flush)) for c in pools]
            + [(c.name, lambda c=c: harness.gemm_row(c, flush)) for c in gemms]
            + [(c.name, lambda c=c: harness.dask_row(c, flush)) for c in dasks])
    rows = []
    with Progress(transient=True) as progress:
        task = progress.add_task("checking" if gpuconv.SIMULATOR else "checking + timing", total=len(jobs))
        for name, job in jobs:
            progress.update(task, description=name)
            rows.append(job())
            progress.advance(task)
    results = dict(meta, cases=rows)
    results["summary"] = harness.summarize(meta, rows)
    for r in rows:
        print(_line(r))
    for algo, v in results["summary"].items():
        print(f"{algo}: geometric mean of time / cuDNN time over {v['layers']} standard layers: "
              f"{v['geomean_ratio_to_cudnn']:.2f}")
    if args.out:
        print(f"results: {report.write_json(results, args.out)}")
        print(f"report:  {report.render(results, args.out)}")
    failed = [r for r in rows if r["passed"] is not None and not r["passed"]]
    skipped = [r for r in rows if r.get("skipped")]
    print(f"{len(rows) - len(failed) - len(skipped)} passed, {len(failed)} failed"
          + (f", {len(skipped)} skipped" if skipped else ""))
    return 1 if failed else 0


def report_main(args) -> int:
    _, _, report = _bench()
    with open(args.results) as f:
        results = json.load(f)
    out = args.out or os.path.dirname(os.path.abspath(args.results))
    print(f"report: {report.render(results, out)}")
    return 0


def tune_main(args) -> int:
    """Pre-tune algo="auto" for the standard layer set (or --layers): on a GPU each layer's eligible
    algorithms are timed once and the winner cached on disk; in the simulator the heuristic's choices
    are printed and nothing is cached."""
    import numpy as np
    from numba import cuda

    from . import autotune, conv
    from ._args import conv2d_geometry

    layers, _, _ = _bench()
    cases = [c for c in layers.FULL if not args.layers or c.name in args.layers]
    if args.layers and len(cases) != len(set(args.layers)):
        print(f"gpuconv tune: unknown layers {sorted(set(args.layers) - {c.name for c in cases})}", file=sys.stderr)
        return 2
    timing = autotune.can_time()
    if not timing:
        print("No timing available (CUDA simulator or GPUCONV_AUTOTUNE=0): showing the heuristic's choices; "
              "nothing is cached.")
    f32 = np.dtype(np.float32)
    for case in cases:
        g = conv2d_geometry(case.x_shape, case.w_shape, case.stride, case.padding, 1, case.groups)
        if timing:  # pragma: no cover - needs a CUDA device
            rng = np.random.default_rng(0)
            x = cuda.to_device(rng.standard_normal(case.x_shape, dtype=np.float32))
            w = cuda.to_device(rng.standard_normal(case.w_shape, dtype=np.float32))
            conv.gpu_conv2d(x, w, stride=case.stride, padding=case.padding, groups=case.groups, algo="auto")
            cuda.synchronize()
            choice = autotune.tuner().lookup(autotune.key_of(conv._device_name(), g, f32, False, 0))
        else:
            choice = autotune.heuristic(g, f32)
        print(f"{case.name:<22} {choice}")
    if timing:  # pragma: no cover - needs a CUDA device
        print(f"cache: {autotune.cache_path()}")
    return 0
