"""Results -> JSON, a Markdown report with tables, and PNG plots (throughput against stride/padding,
filter count and kernel size, and a roofline). Renders only what the results hold: a parity-only run
(the simulator) gives check tables and says that nothing was timed."""

from __future__ import annotations

import json
import os
import re

FIGURES = (("stride_padding", "throughput against stride / padding (16×64×56×56→64, 3×3)"),
           ("filters", "throughput against filter count K (16×256×14×14, 3×3)"),
           ("kernel_size", "throughput against kernel size (16×128×28×28→128, same)"))


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
    out = [f"# gpuconv benchmark — {meta.get('device', {}).get('name', meta['target'])}", "",
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
    algos = _conv_algos(rows)
    conv = [r for r in rows if r["kind"] == "conv"]
    if conv:
        out += ["", "## Convolutions", ""]
        if timed:
            head = "| layer | " + " | ".join(f"{a} ms | {a} GFLOP/s | {a} / cuDNN" for a in algos) + \
                " | cuDNN ms | cuDNN GFLOP/s |"
            out += [head, "|" + "---|" * (3 * len(algos) + 3)]
            for r in conv:
                t = r.get("timing", {})
                cells = []
                for a in algos:
                    ta = t.get(a, {})
                    cells += [_fmt(ta.get("median_ms")), _fmt(ta.get("gflops"), ".0f"), _fmt(ta.get("ratio_to_cudnn"), ".2f")]
                cd = t.get("cudnn", {})
                out.append(f"| {r['name']} | " + " | ".join(cells) +
                           f" | {_fmt(cd.get('median_ms'))} | {_fmt(cd.get('gflops'), '.0f')} |")
            geo = results.get("summary", {})
            if geo:
                out += ["", "Geometric mean of time / cuDNN time over the standard set: " +
                        ", ".join(f"{a} {v['geomean_ratio_to_cudnn']:.2f} ({v['layers']} layers)" for a, v in geo.items())]
        out += ["", "Checks (relative error, float32):", "", "| layer | x | w | " + " | ".join(algos) + " |",
                "|" + "---|" * (3 + len(algos))]
        for r in conv:
            out.append(f"| {r['name']} | {'×'.join(map(str, r['x']))} | {'×'.join(map(str, r['w']))} | " +
                       " | ".join(_check_cell(r["checks"].get(a)) for a in algos) + " |")
    for kind, title, base_name, unit in (("pool", "Pooling", "torch", "gb_per_s"), ("gemm", "GEMM", "cublas", "gflops")):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        out += ["", f"## {title}", "", f"| case | rel. error | gpuconv ms | {base_name} ms | gpuconv {unit} | "
                f"{base_name} {unit} | % of hardware |", "|---|---|---|---|---|---|---|"]
        for r in sel:
            t = r.get("timing", {})
            ours, theirs = t.get("gpuconv", {}), t.get(base_name, {})
            pct = ours.get("pct_copy_bandwidth", ours.get("pct_fma_peak"))
            out.append(f"| {r['name']} | {r['checks']['gpuconv']['rel_err']:.1e} | {_fmt(ours.get('median_ms'))} | "
                       f"{_fmt(theirs.get('median_ms'))} | {_fmt(ours.get(unit), '.0f')} | {_fmt(theirs.get(unit), '.0f')} | "
                       f"{_fmt(pct, '.0f')} |")
    out += _dask_section([r for r in rows if r["kind"] == "dask"])
    if results.get("plots"):
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]]
    return "\n".join(out) + "\n"


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


def plots(results, out_dir) -> list[str]:
    """PNG plots of the timed sweeps and a roofline; none for a parity-only run."""
    rows = [r for r in results["cases"] if "timing" in r]
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for tag, title in FIGURES:
        sel = [r for r in rows if r["kind"] == "conv" and tag in r.get("tags", ())]
        if not sel:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        names = [r["name"] for r in sel]
        for algo in sorted({a for r in sel for a in r["timing"]}):
            ax.plot(names, [r["timing"].get(algo, {}).get("gflops", float("nan")) for r in sel], marker="o", label=algo)
        ax.set_title(title)
        ax.set_ylabel("GFLOP/s (fp32)")
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
        fig.tight_layout()
        name = f"sweep_{tag}.png"
        fig.savefig(os.path.join(out_dir, name), dpi=110)
        plt.close(fig)
        made.append(name)
    base = results.get("baselines")
    conv = [r for r in rows if r["kind"] == "conv"]
    if base and conv:
        peak, bw = base["fma_peak"]["gflops"], base["copy"]["gb_per_s"]
        fig, ax = plt.subplots(figsize=(7, 5))
        intensities = []
        for algo in sorted({a for r in conv for a in r["timing"]}):
            pts = []
            for r in conv:
                if algo in r["timing"]:
                    n_in = 4 * (_prod(r["x"]) + _prod(r["w"]))
                    out_elems = r["flops"] / (2 * _prod(r["w"][1:]))
                    ai = r["flops"] / (n_in + 4 * out_elems)            # FLOP per compulsory byte
                    pts.append((ai, r["timing"][algo]["gflops"]))
            intensities += [p[0] for p in pts]
            ax.scatter(*zip(*pts), label=algo, s=18)
        lo, hi = min(intensities) / 2, max(intensities) * 2
        xs = [lo * (hi / lo) ** (i / 100) for i in range(101)]
        ax.plot(xs, [min(peak, bw * x) for x in xs], "k--", label="measured roof")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP / compulsory byte)")
        ax.set_ylabel("GFLOP/s")
        ax.set_title("roofline: measured copy bandwidth and fp32 FMA peak")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "roofline.png"), dpi=110)
        plt.close(fig)
        made.append("roofline.png")
    return made


def _prod(shape):
    p = 1
    for v in shape:
        p *= v
    return p


def render(results, out_dir) -> str:
    """report.md (and PNG plots) under out_dir; returns the report's path."""
    os.makedirs(out_dir, exist_ok=True)
    results["plots"] = plots(results, out_dir)
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write(markdown(results))
    return path
