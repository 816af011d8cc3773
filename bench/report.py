"""Results -> JSON, a Markdown report with tables, and PNG plots: throughput against each sweep's number
(stride, padding, filter count K, kernel size, batch) on numeric axes, a roofline, and the checks'
relative errors. Every plot's title names the GPU (or the simulator) and the date, and says "no timings"
when the run only checked. Renders only what the results hold: a parity-only run (the simulator) gives
check tables and says that nothing was timed."""

from __future__ import annotations

import json
import math
import os
import re
from numbers import Real

from .harness import PRECISIONS, TOL
from .layers import SWEEP_AXES

SWEEP_TITLES = {"stride": "throughput against stride", "padding": "throughput against padding",
                "filters": "throughput against filter count K", "kernel_size": "throughput against kernel size",
                "batch": "throughput against batch size"}
ERROR_FLOOR = 1e-17      # a relative error of 0 (max pooling, say) is drawn here on the log axis


def results_name(meta) -> str:
    """<date>-<gpu>.json, e.g. 2026-11-21-nvidia-h200.json (simulator runs: <date>-simulator.json)."""
    gpu = meta.get("device", {}).get("name", meta.get("target", "unknown"))
    return f"{meta['date'][:10]}-{re.sub(r'[^a-z0-9]+', '-', gpu.lower()).strip('-')}.json"


def write_json(results, out_dir) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, results_name(results))
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    return path


_KIND_KEYS = {"conv": ("x", "w"), "pool": (), "gemm": (), "dask": ("x", "w", "chunk")}


def validate(results) -> str | None:
    """What is wrong with results read back from a file (None: it has the shape write_json gives), so that
    rendering a foreign JSON fails with a sentence rather than a KeyError."""
    if not isinstance(results, dict):
        return f"expected a JSON object, got {type(results).__name__}"
    for key in ("date", "target", "mode"):
        if not isinstance(results.get(key), str):
            return f"no {key!r} string at the top level"
    cases = results.get("cases")
    if not isinstance(cases, list):
        return "no 'cases' list"
    for i, r in enumerate(cases):
        if not isinstance(r, dict) or r.get("kind") not in _KIND_KEYS or not isinstance(r.get("name"), str):
            return f"case {i} has no kind ({', '.join(_KIND_KEYS)}) and name"
        if _precision_of(r) not in PRECISIONS:
            return f"case {r['name']!r} has precision {r['precision']!r}, not one of {', '.join(PRECISIONS)}"
        missing = [k for k in _KIND_KEYS[r["kind"]] + ("checks",) if k not in r]
        if missing:
            return f"case {r['name']!r} has no {', '.join(missing)}"
        checks = r["checks"]
        if not isinstance(checks, dict) or not all(isinstance(c, dict) and isinstance(c.get("rel_err"), Real)
                                                   and isinstance(c.get("passed"), bool) for c in checks.values()):
            return f"case {r['name']!r}: each check needs a numeric rel_err and a boolean passed"
        if r["kind"] in ("pool", "gemm") and "gpuconv" not in checks:
            return f"case {r['name']!r} has no 'gpuconv' check"
        if r["kind"] == "dask" and not r.get("skipped") and not {"dask_vs_one_call", "one_call_vs_reference"} <= set(checks):
            return f"case {r['name']!r} has neither its checks nor a reason it was skipped"
        timing = r.get("timing", {})
        if not isinstance(timing, dict) or not all(isinstance(t, dict) and isinstance(t.get("median_ms"), Real)
                                                   for t in timing.values()):
            return f"case {r['name']!r}: each timing needs a numeric median_ms"
    return None


def _fmt(v, spec=".3g"):
    return "—" if v is None else format(v, spec)


def _check_cell(check):
    if check is None:
        return "n/a"                                 # not eligible for this layer (e.g. Winograd on 1×1)
    return f"{check['rel_err']:.1e} {'ok' if check['passed'] else 'FAIL'}"


def _conv_algos(rows):
    return sorted({a for r in rows if r["kind"] == "conv" for a in r["checks"]})


def markdown(results) -> str:
    meta, rows = results, results["cases"]
    out = [f"# gpuconv benchmark — {device_label(meta)}", "",
           f"- date {meta['date']}, commit `{meta.get('git_commit')}`, mode: **{meta['mode']}**"]
    dev = meta.get("device")
    if dev:
        out.append("- device: " + ", ".join(f"{k} {v}" for k, v in dev.items()))
    base = meta.get("baselines")
    if base:
        out.append(f"- measured copy bandwidth {base['copy']['gb_per_s']:.0f} GB/s, fp32 FMA peak "
                   f"{base['fma_peak']['gflops']:.0f} GFLOP/s")
    out.append(f"- versions: {meta.get('versions')}")
    timed = any("timing" in r for r in rows)
    if not timed:
        out += ["", "**No timings: this run only checked each case against the reference.**"]
    for precision in [p for p in PRECISIONS if any(_precision_of(r) == p for r in rows)]:
        out += _precision_sections(results, [r for r in rows if _precision_of(r) == precision], precision, timed)
    out += _dask_section([r for r in rows if r["kind"] == "dask"])
    if results.get("plots"):
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]]
    out += [""] + [f"Note: {n}" for n in results["notes"]] if results.get("notes") else []
    return "\n".join(out) + "\n"


def _precision_of(row):
    return row.get("precision", "float32")      # results from before --precision: float32


_BOUNDS = {"float16": "u + K·2⁻²⁴, u = 2⁻¹¹", "bfloat16": "u + K·2⁻²⁴, u = 2⁻⁸", "tf32": "K·2⁻²⁴"}


def _precision_sections(results, rows, precision, timed) -> list[str]:
    """The convolution, pooling and GEMM sections of one precision's rows: float32's headings plain, the
    others' headings name the precision, and their convolutions have cuDNN channels-last beside cuDNN."""
    out = []
    suffix = "" if precision == "float32" else f", {precision}" + (" (TF32 allowed)" if precision == "tf32" else "")
    algos = _conv_algos(rows)
    conv = [r for r in rows if r["kind"] == "conv"]
    if conv:
        out += ["", f"## Convolutions{suffix}"]
        if precision != "float32":
            out += ["", f"Inputs drawn in float32 and rounded to {precision}; a check passes at or below "
                    f"{_BOUNDS[precision]} (K terms per output; Winograd, whose TF32 products round its "
                    "transforms, + 2⁻¹⁰ for F(2×2), + 2⁻⁷ for F(4×4)) against the float64 reference on the "
                    "rounded inputs. cuDNN in the same precision, channels-first (NCHW) and channels-last (NHWC)."]
        baselines = [("cudnn", "cuDNN")] + ([("cudnn_channels_last", "cuDNN NHWC")] if precision != "float32" else [])
        if timed:
            head = "| layer | " + " | ".join(f"{a} ms | {a} GFLOP/s | " + " | ".join(f"{a} / {b}" for _, b in baselines)
                                            for a in algos) + \
                " | " + " | ".join(f"{b} ms | {b} GFLOP/s" for _, b in baselines) + " |"
            out += ["", head, "|" + "---|" * ((2 + len(baselines)) * len(algos) + 1 + 2 * len(baselines))]
            for r in conv:
                t = r.get("timing", {})
                cells = []
                for a in algos:
                    ta = t.get(a, {})
                    cells += [_fmt(ta.get("median_ms")), _fmt(ta.get("gflops"), ".0f")]
                    cells += [_fmt(ta.get("ratio_to_" + k), ".2f") for k, _ in baselines]
                for k, _ in baselines:
                    cd = t.get(k, {})
                    cells += [_fmt(cd.get("median_ms")), _fmt(cd.get("gflops"), ".0f")]
                out.append(f"| {r['name']} | " + " | ".join(cells) + " |")
            geo = {a: v for a, v in results.get("summary", {}).items() if v.get("precision", "float32") == precision}
            if geo:
                out += ["", "Geometric mean of time / cuDNN time over the standard set: " +
                        ", ".join(f"{a} {v['geomean_ratio_to_cudnn']:.2f}" +
                                  (f" (NHWC {v['geomean_ratio_to_cudnn_channels_last']:.2f})"
                                   if "geomean_ratio_to_cudnn_channels_last" in v else "") +
                                  f" ({v['layers']} layers)" for a, v in geo.items())]
        scaled = any("gpu_size" in r for r in conv)
        out += ["", f"Checks (relative error, {precision}):", "",
                "| layer | " + ("size run | size on a GPU" if scaled else "size") + " | " + " | ".join(algos) + " |",
                "|" + "---|" * (2 + scaled + len(algos))]
        for r in conv:
            size = r.get("size") or f"{'×'.join(map(str, r['x']))}, w {'×'.join(map(str, r['w']))}"
            out.append(f"| {r['name']} | {size} | " + (f"{r.get('gpu_size', '')} | " if scaled else "") +
                       " | ".join(_check_cell(r["checks"].get(a)) for a in algos) + " |")
    for kind, title, base_name, unit in (("pool", "Pooling", "torch", "gb_per_s"), ("gemm", "GEMM", "cublas", "gflops")):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        out += ["", f"## {title}{suffix}", "", f"| case | size | rel. error | gpuconv ms | {base_name} ms | gpuconv {unit} | "
                f"{base_name} {unit} | % of hardware |", "|---|---|---|---|---|---|---|---|"]
        for r in sel:
            t = r.get("timing", {})
            ours, theirs = t.get("gpuconv", {}), t.get(base_name, {})
            pct = ours.get("pct_copy_bandwidth", ours.get("pct_fma_peak"))
            out.append(f"| {r['name']} | {r.get('size', '')} | {r['checks']['gpuconv']['rel_err']:.1e} | "
                       f"{_fmt(ours.get('median_ms'))} | "
                       f"{_fmt(theirs.get('median_ms'))} | {_fmt(ours.get(unit), '.0f')} | {_fmt(theirs.get(unit), '.0f')} | "
                       f"{_fmt(pct, '.0f')} |")
    return out


def _dask_section(rows) -> list[str]:
    """Large images through gpuconv.dask against one gpu_conv2d call (host wall time: dask schedules on
    the host), or why the case was skipped."""
    if not rows:
        return []
    out = ["", "## Large images: gpuconv.dask against one gpu_conv2d call", "",
           "| case | x | w | chunk | dask = one call | one call vs reference | dask ms | one call ms | dask / one call |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['name']} | {'×'.join(map(str, r['x']))} | {'×'.join(map(str, r['w']))} | {r['chunk']} |"
        if r.get("skipped"):
            out.append(f"{head} skipped: {r['skipped']} | | | | |")
            continue
        same, vs_ref = r["checks"]["dask_vs_one_call"], r["checks"]["one_call_vs_reference"]
        t = r.get("timing", {})
        ours, one = t.get("gpuconv.dask", {}), t.get("gpu_conv2d", {})
        out.append(f"{head} {'bit for bit' if same['bitwise'] else _check_cell(same)} | {_check_cell(vs_ref)} | "
                   f"{_fmt(ours.get('median_ms'))} | {_fmt(one.get('median_ms'))} | "
                   f"{_fmt(ours.get('ratio_to_one_call'), '.2f')} |")
    return out


def device_label(results) -> str:
    """The GPU's name, or "Numba CUDA simulator", or the target."""
    if results.get("target") == "simulator":
        return "Numba CUDA simulator"
    return results.get("device", {}).get("name") or results.get("target", "unknown device")


def title(results, what) -> str:
    """A plot's title: what it shows, then the GPU (or simulator), the run's date, and "no timings" for a run
    that only checked."""
    notes = [device_label(results), results["date"][:10]]
    if not any(r.get("timing") for r in results["cases"]):
        notes.append("no timings")
    return f"{what}\n{' · '.join(notes)}"


def sweep_figures(results) -> list[dict]:
    """One figure per timed sweep: x the sweep's number (SWEEP_AXES), one series of (x, GFLOP/s) per
    implementation, sorted by x."""
    figs = []
    for tag, (xlabel, x_of, fixed, log2) in SWEEP_AXES.items():
        sel = [r for r in results["cases"] if r["kind"] == "conv" and tag in r.get("tags", ()) and r.get("timing")
               and _precision_of(r) == "float32"]
        if not sel:
            continue
        series = {}
        for r in sorted(sel, key=x_of):
            for impl, t in r["timing"].items():
                if "gflops" in t:
                    series.setdefault(impl, []).append((x_of(r), t["gflops"]))
        figs.append(dict(file=f"sweep_{tag}.png", title=title(results, f"{SWEEP_TITLES[tag]} ({fixed})"),
                         xlabel=xlabel, ylabel="GFLOP/s (fp32)", series=series, log2_x=log2))
    return figs


def check_figure(results) -> dict | None:
    """Every check's relative error (log scale) per case and implementation, against the tolerance."""
    points = {}
    names = []
    for r in results["cases"]:
        if not r["checks"]:
            continue
        names.append(r["name"] if _precision_of(r) == "float32" else f"{r['name']} ({_precision_of(r)})")
        for impl, c in r["checks"].items():
            impl = impl if _precision_of(r) == "float32" else f"{impl} ({_precision_of(r)})"
            points.setdefault(impl, []).append((len(names) - 1, max(c["rel_err"], ERROR_FLOOR)))
    if not names:
        return None
    said = ", ".join(p for p in PRECISIONS if any(_precision_of(r) == p for r in results["cases"]))
    return dict(file="checks.png", title=title(results, f"relative error of each check ({said})"), cases=names,
                series=points)


def plots(results, out_dir) -> list[str]:
    """PNG plots: the timed sweeps and a roofline (GPU runs), the checks' errors (every run). Without
    matplotlib none, and results["notes"] says so."""
    try:
        import matplotlib
    except ImportError:
        results.setdefault("notes", []).append("no plots: matplotlib is not installed (pip install 'gpuconv[bench]')")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for f in sweep_figures(results):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for impl, pts in sorted(f["series"].items()):
            ax.plot(*zip(*pts), marker="o", label=impl)
        xs = sorted({x for pts in f["series"].values() for x, _ in pts})
        if f["log2_x"]:
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set(title=f["title"], xlabel=f["xlabel"], ylabel=f["ylabel"])
        ax.legend()
        made.append(_save(fig, plt, out_dir, f["file"]))
    roof = _roofline(results, plt)
    if roof is not None:
        made.append(_save(roof, plt, out_dir, "roofline.png"))
    f = check_figure(results)
    if f is not None:
        fig, ax = plt.subplots(figsize=(max(7, 0.35 * len(f["cases"]) + 2), 4.5))
        for impl, pts in sorted(f["series"].items()):
            ax.scatter(*zip(*pts), label=impl, s=18)
        ax.axhline(TOL, color="k", linestyle="--", label=f"float32 tolerance {TOL:g}")
        ax.set_yscale("log")
        ax.set_xticks(range(len(f["cases"])), f["cases"], rotation=60, ha="right", fontsize=7)
        ax.set(title=f["title"], ylabel=f"relative error (0 drawn at {ERROR_FLOOR:g})")
        ax.legend(fontsize=7)
        made.append(_save(fig, plt, out_dir, f["file"]))
    return made


def _save(fig, plt, out_dir, name) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name), dpi=110)
    plt.close(fig)
    return name


def _roofline(results, plt):
    """Measured GFLOP/s of every timed convolution against its arithmetic intensity, under the roof of the
    run's measured copy bandwidth and FMA peak; None without baselines or timings."""
    base = results.get("baselines")
    conv = [r for r in results["cases"] if r["kind"] == "conv" and r.get("timing") and _precision_of(r) == "float32"]
    if not base or not conv:
        return None
    peak, bw = base["fma_peak"]["gflops"], base["copy"]["gb_per_s"]
    fig, ax = plt.subplots(figsize=(7, 5))
    intensities = []
    for impl in sorted({a for r in conv for a in r["timing"]}):
        pts = []
        for r in conv:
            if "gflops" in r["timing"].get(impl, {}):
                n_in = 4 * (math.prod(r["x"]) + math.prod(r["w"]))
                out_elems = r["flops"] / (2 * math.prod(r["w"][1:]))
                pts.append((r["flops"] / (n_in + 4 * out_elems), r["timing"][impl]["gflops"]))  # FLOP per byte
        intensities += [p[0] for p in pts]
        if pts:
            ax.scatter(*zip(*pts), label=impl, s=18)
    lo, hi = min(intensities) / 2, max(intensities) * 2
    xs = [lo * (hi / lo) ** (i / 100) for i in range(101)]
    ax.plot(xs, [min(peak, bw * x) for x in xs], "k--", label="measured roof")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / compulsory byte)", ylabel="GFLOP/s",
           title=title(results, "roofline: measured copy bandwidth and fp32 FMA peak"))
    ax.legend()
    return fig


def render(results, out_dir) -> str:
    """report.md (and PNG plots) under out_dir; returns the report's path."""
    os.makedirs(out_dir, exist_ok=True)
    results["plots"] = plots(results, out_dir)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(markdown(results))
    return path
