"""`gpuconv bench`, `tune` and `report`: drive the harness in gpuconv.bench (the repository's bench/,
installed with the package) and print its results as tables."""

from __future__ import annotations

import difflib
import json
import os

import gpuconv

from ._console import CommandError, console
from ._console import table as new_table
from .bench import harness, layers, report


def _available_algos():
    ours = [a for a in harness.CONV_ALGOS if a != "im2col_cublas"]
    if gpuconv.SIMULATOR:
        return ours                            # im2col_cublas needs a device and CuPy
    try:
        import cupy  # noqa: F401
    except ImportError:
        return ours
    return list(harness.CONV_ALGOS)


def _unknown(names, known, what) -> CommandError:
    """One line: the unknown names, close matches, and every name there is."""
    hints = {n: difflib.get_close_matches(n, known, n=1) for n in names}
    said = ", ".join(f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in hints.items())
    return CommandError(f"unknown {what} {said}; the {what}s are: {', '.join(known)} "
                        "(gpuconv bench --list shows their sizes)")


def _select(args):
    """The cases to run: --layers, else the quick set (default), the standard one or the full one."""
    every = layers.every_case()
    if args.layers:
        known = [c.name for _, c in every]
        unknown = [n for n in dict.fromkeys(args.layers) if n not in known]
        if unknown:
            raise _unknown(unknown, known, "case")
        return [(kind, c) for kind, c in every if c.name in args.layers]
    if args.full:
        return every
    if getattr(args, "standard", False):
        standard = {c.name for c in layers.STANDARD + layers.POOLS + layers.GEMMS}
        return [(kind, c) for kind, c in every if c.name in standard]
    quick = layers.quick_names()
    return [(kind, c) for kind, c in every if c.name in quick]


def list_cases() -> int:
    """`gpuconv bench --list`: every case with its kind, GPU size and the sets that hold it."""
    quick = layers.quick_names()
    table = new_table("gpuconv bench cases (--layers NAME ...)")
    for col in ("case", "kind", "size on a GPU", "tags", "in"):
        table.add_column(col, no_wrap=col != "size on a GPU")
    for kind, c in layers.every_case():
        tags = getattr(c, "tags", None) or getattr(getattr(c, "layer", None), "tags", ())
        sets = "quick, full" if c.name in quick else "full"
        table.add_row(c.name, kind, c.describe(), ", ".join(tags), sets + (" (GPU only)" if kind == "dask" else ""))
    console().print(table)
    return 0


# ----------------------------------------------------------------------------- result tables


def _cell(check):
    if check is None:
        return "n/a"                           # not run: the algorithm does not take this layer
    return f"{check['rel_err']:.1e} {'ok' if check['passed'] else 'FAIL'}"


def _size_columns(table, sim):
    table.add_column("size run" if sim else "size")
    if sim:
        table.add_column("size on a GPU")


def _size_cells(r, sim):
    return [r.get("size", "")] + ([r.get("gpu_size", "")] if sim else [])


def precisions(rows) -> list:
    """The precisions the rows were run in, in PRECISIONS order (rows from before --precision: float32)."""
    ran = {r.get("precision", "float32") for r in rows}
    return [p for p in harness.PRECISIONS if p in ran]


def _in(rows, precision):
    return [r for r in rows if r.get("precision", "float32") == precision]


def _threshold(precision):
    if precision == "float32":
        return f"passes below {harness.TOL:.0e}"
    if precision == "tf32":
        return "inputs rounded to TF32; passes at or below K·2^-24, K terms per output (Winograd: + 2^-10 / 2^-7)"
    return (f"inputs rounded to {precision}; passes at or below u + K·2^-24, u = "
            f"2^{'-11' if precision == 'float16' else '-8'}, K terms per output (Winograd: + 2^-10 / 2^-7); "
            "max pooling exact")


def check_tables(rows, sim) -> list:
    """rich Tables of every check, per precision: convolutions with one column per algorithm, then the
    other cases."""
    tables = []
    for precision in precisions(rows):
        tables += _check_tables(_in(rows, precision), sim, precision)
    return tables


def _check_tables(rows, sim, precision) -> list:
    tables = []
    conv = [r for r in rows if r["kind"] == "conv"]
    if conv:
        ran = {a for r in conv for a in r["checks"]}
        algos = [a for a in harness.CONV_ALGOS if a in ran] + sorted(ran - set(harness.CONV_ALGOS))
        t = new_table(f"Convolutions: {precision} relative error against {_against(conv)} "
                      f"({_threshold(precision)})")
        t.add_column("case", no_wrap=True)
        _size_columns(t, sim)
        for a in algos:
            t.add_column(a, no_wrap=True)
        for r in conv:
            t.add_row(r["name"], *_size_cells(r, sim), *[_cell(r["checks"].get(a)) for a in algos])
        tables.append(t)
    other = [r for r in rows if r["kind"] != "conv"]
    if other:
        t = new_table(f"Pooling, GEMM, large images: {precision} relative error ({_threshold(precision)})")
        t.add_column("case", no_wrap=True)
        _size_columns(t, sim)
        t.add_column("against")
        t.add_column("result")
        for r in other:
            if r.get("skipped"):
                t.add_row(r["name"], *_size_cells(r, sim), "", f"skipped: {r['skipped']}")
            for i, (what, check) in enumerate(r["checks"].items()):
                against = str(check.get("against", ""))
                t.add_row(r["name"] if i == 0 else "", *(_size_cells(r, sim) if i == 0 else [""] * (1 + sim)),
                          against if what == "gpuconv" else f"{what}: {against}", _cell(check))
        tables.append(t)
    return tables


def _against(conv_rows):
    against = sorted({v["against"] for r in conv_rows for v in r["checks"].values()})
    if not against:
        return "the reference"
    return {"reference": "the float64 reference", "cudnn_fp64": "cuDNN in float64"}.get(
        against[0], against[0]) if len(against) == 1 else " / ".join(against)


def timing_tables(rows) -> list:
    """rich Tables of every timing (a GPU run), one per precision: median and p20–p80 of device time, host
    µs per call, throughput and the ratio to the case's baseline(s)."""
    return [t for p in precisions(rows) for t in [timing_table(_in(rows, p), p)] if t is not None]


_RATIOS = (("ratio_to_cudnn", "cuDNN's time"), ("ratio_to_cudnn_channels_last", "cuDNN channels-last's"),
           ("ratio_to_one_call", "one call's time"), ("fraction_of_cublas", "of cuBLAS's speed"))


def timing_table(rows, precision="float32"):
    """The timings of rows of one precision as a rich Table, or None if none was timed."""
    timed = [r for r in rows if r.get("timing")]
    if not timed:
        return None
    t = new_table(f"Device time, {precision}" + (" (TF32 allowed, gpuconv and cuDNN)" if precision == "tf32" else "")
                  + " (CUDA events, L2 flushed before each launch)")
    for col in ("case", "implementation", "median ms", "p20 – p80 ms", "host µs/call", "throughput", "relative"):
        t.add_column(col, justify="left" if col in ("case", "implementation") else "right", no_wrap=True)
    for r in timed:
        for i, (name, v) in enumerate(r["timing"].items()):
            figure = f"{v['gflops']:.0f} GFLOP/s" if "gflops" in v else f"{v['gb_per_s']:.0f} GB/s"
            rel = ", ".join(f"×{v[k]:.2f} {what}" for k, what in _RATIOS if k in v)
            spread = f"{v['p20_ms']:.3f} – {v['p80_ms']:.3f}" if "p20_ms" in v else ""
            host = f"{v['host_us_per_call']:.1f}" if "host_us_per_call" in v else ""
            t.add_row(r["name"] if i == 0 else "", name, f"{v['median_ms']:.3f}", spread, host, figure, rel)
    return t


# ----------------------------------------------------------------------------- commands


def main(args) -> int:
    """`gpuconv bench`: check every selected case, time it on a GPU, print tables, write --out."""
    if args.list:
        return list_cases()
    cases = _select(args)
    available = _available_algos()
    algos = args.algo or available
    missing = [a for a in algos if a not in available]
    if missing:
        raise CommandError(f"algorithm(s) {', '.join(missing)} not available here (available: {', '.join(available)})")
    sim = gpuconv.SIMULATOR
    if sim:
        print("No CUDA device: running the parity checks in Numba's CUDA simulator at simulator-sized shapes.\n"
              "No timings are measured or printed.")
    from rich.progress import Progress

    meta = harness.metadata()
    flush = None
    if not sim:  # pragma: no cover - needs a CUDA device
        from .bench.timing import L2Flusher

        flush = L2Flusher()
    run = dict(conv=lambda c, p: harness.conv_row(c, algos, flush, p), pool=lambda c, p: harness.pool_row(c, flush, p),
               gemm=lambda c, p: harness.gemm_row(c, flush, p), dask=lambda c, p: harness.dask_row(c, flush))
    # pooling multiplies nothing (TF32 changes nothing), the large-image case is float32 only
    todo = [(kind, case, p) for p in dict.fromkeys(args.precision or ["float32"]) for kind, case in cases
            if p == "float32" or kind in ("conv", "gemm") or (kind, p) == ("pool", "float16")
            or (kind, p) == ("pool", "bfloat16")]
    rows = []
    with Progress(transient=True) as progress:
        task = progress.add_task("checking" if sim else "checking + timing", total=len(todo))
        for kind, case, p in todo:
            progress.update(task, description=f"{case.name} ({p})")
            rows.append(run[kind](case, p))
            progress.advance(task)
    results = dict(meta, cases=rows)
    results["summary"] = harness.summarize(meta, rows)
    out = console()
    for table in check_tables(rows, sim) + timing_tables(rows):
        out.print(table)
    for name, v in results["summary"].items():
        print(f"{name}: geometric mean of time / cuDNN time over {v['layers']} standard layers: "
              f"{v['geomean_ratio_to_cudnn']:.2f}" + (f" (channels-last cuDNN: {v['geomean_ratio_to_cudnn_channels_last']:.2f})"
                                                     if "geomean_ratio_to_cudnn_channels_last" in v else ""))
    if args.out:
        print(f"results: {report.write_json(results, args.out)}")
        print(f"report:  {report.render(results, args.out)}")
        for note in results.get("notes", []):
            print(note)
    failed = [r for r in rows if r["passed"] is not None and not r["passed"]]
    skipped = [r for r in rows if r.get("skipped")]
    print(f"{len(rows) - len(failed) - len(skipped)} passed, {len(failed)} failed"
          + (f", {len(skipped)} skipped" if skipped else ""))
    return 1 if failed else 0


def load_results(path) -> dict:
    """A results JSON written by `gpuconv bench --out`, checked: CommandError (one line) if the file is not
    JSON or not of that shape."""
    try:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CommandError(f"{path} is not a JSON file ({e})") from None
    problem = report.validate(results)
    if problem:
        raise CommandError(f"{path} is not a results file of gpuconv bench: {problem}")
    return results


def report_main(args) -> int:
    """`gpuconv report RESULTS.json [--out DIR]`: re-render report.md and the plots."""
    results = load_results(args.results)
    out = args.out or os.path.dirname(os.path.abspath(args.results))
    print(f"report: {report.render(results, out)}")
    for note in results.get("notes", []):
        print(note)
    return 0


def tune_main(args) -> int:
    """Pre-tune algo="auto" for the standard layer set (or --layers): on a GPU each layer's eligible
    algorithms are timed once and the winner cached on disk; in the simulator the heuristic's choices
    are printed and nothing is cached."""
    import numpy as np
    from numba import cuda

    from . import _precision, autotune, conv
    from ._args import conv2d_geometry

    known = [c.name for c in layers.FULL]
    unknown = [n for n in dict.fromkeys(args.layers or ()) if n not in known]
    if unknown:
        raise _unknown(unknown, known, "convolution case")
    cases = [c for c in layers.FULL if not args.layers or c.name in args.layers]
    timing = autotune.can_time()
    if not timing:
        print("No timing available (CUDA simulator or GPUCONV_AUTOTUNE=0): showing the heuristic's choices; "
              "nothing is cached.")
    table = new_table("algo='auto' per layer (float32)" + ("" if timing else ": the untimed heuristic"))
    for col in ("case", "layer", "algorithm"):
        table.add_column(col, no_wrap=col != "layer")
    f32 = np.dtype(np.float32)
    for case in cases:
        g = conv2d_geometry(case.x_shape, case.w_shape, case.stride, case.padding, 1, case.groups)
        if timing:  # pragma: no cover - needs a CUDA device
            rng = np.random.default_rng(0)
            x = cuda.to_device(rng.standard_normal(case.x_shape, dtype=np.float32))
            w = cuda.to_device(rng.standard_normal(case.w_shape, dtype=np.float32))
            conv.gpu_conv2d(x, w, stride=case.stride, padding=case.padding, groups=case.groups, algo="auto")
            cuda.synchronize()
            choice = autotune.tuner().lookup(autotune.key_of(conv._device_name(), g, f32, False, 0,
                                                                  _precision.tc_kind(f32, None)))
        else:
            choice = autotune.heuristic(g, f32)
        table.add_row(case.name, case.describe(), str(choice))
    console().print(table)
    if timing:  # pragma: no cover - needs a CUDA device
        print(f"cache: {autotune.cache_path()}")
    return 0
