"""`gpuconv bench`: runs the harness in the checkout's bench/ folder (it is not installed with the package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gpuconv


def _bench_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "bench"
    if not (here / "harness.py").exists():
        raise SystemExit("gpuconv bench runs from a source checkout (bench/ not found next to python/gpuconv)")
    return here


def _load(name: str):
    path = _bench_dir() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gpuconv_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(args) -> int:
    layers, harness = _load("layers"), _load("harness")
    cases = layers.FULL if args.full else layers.QUICK
    if args.layers:
        unknown = set(args.layers) - {c.name for c in layers.FULL}
        if unknown:
            print(f"gpuconv bench: unknown layers {sorted(unknown)}", file=sys.stderr)
            return 2
        cases = [c for c in layers.FULL if c.name in args.layers]
    if args.algo and set(args.algo) - {"direct", "auto"}:
        print(f"gpuconv bench: only 'direct'/'auto' exist in this version, got {args.algo}", file=sys.stderr)
        return 2
    if gpuconv.SIMULATOR:
        print("No CUDA device: running the parity checks in Numba's CUDA simulator at simulator-sized shapes.\n"
              "No timings are measured or printed.")
    try:
        from rich.progress import track
    except ImportError:
        track = None
    meta = harness.metadata()
    it = track(cases, description="checking" if gpuconv.SIMULATOR else "checking + timing") if track else cases
    rows = [harness.case_row(case) for case in it]
    failed = [r for r in rows if not r["passed"]]
    for r in rows:
        line = (f"{r['name']:<18} x={'x'.join(map(str, r['x'])):<16} w={'x'.join(map(str, r['w'])):<14} "
                f"kernel={r['kernel']:<10} rel_err={r['rel_err']:.2e} {'ok' if r['passed'] else 'FAIL'}")
        if "timing" in r:
            t = r["timing"]
            line += (f"  {t['gpuconv']['median_ms']:.3f} ms ({t['gpuconv']['gflops']:.0f} GFLOP/s)"
                     f"  cuDNN {t['cudnn']['median_ms']:.3f} ms  ratio {t['ratio_to_cudnn']:.2f}")
        print(line)
    if args.out:
        print(f"results written to {harness.write(args.out, meta, rows)}")
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
