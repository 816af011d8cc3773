"""`gpuconv bench` (the README's main job), `report` and `tune`: every case checked; in the simulator, no
timings. The report renderer is also driven with timing-shaped test data (labelled as such; never
measurements) to check its tables and plots."""

import json

import pytest

import gpuconv
from gpuconv.bench import harness, layers, report
from gpuconv.cli import main

TEST_DEVICE = "Test GPU (test data, not a measurement)"


def _table_row(text, name):
    """The line of a printed table that starts with a case's name."""
    (line,) = [ln for ln in text.splitlines() if ln.split() and ln.split()[0] == name]
    return line


def test_bench_checks_and_marks_simulator(tmp_path, capsys):
    assert main(["bench", "--layers", "latency_b1", "depthwise_3x3", "vgg_maxpool", "--algo", "direct", "im2col",
                 "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    (results,) = tmp_path.glob("*.json")
    data = json.loads(results.read_text())
    assert [c["name"] for c in data["cases"]] == ["latency_b1", "depthwise_3x3", "vgg_maxpool"]
    for c in data["cases"]:
        assert c["passed"] and all(v["rel_err"] < 1e-5 for v in c["checks"].values())
    assert set(data["cases"][0]["checks"]) == {"direct", "im2col"}
    assert "3 passed, 0 failed" in text
    header = next(ln for ln in text.splitlines() if ln.startswith("case"))
    assert header.split()[-2:] == ["direct", "im2col"]
    report_md = (tmp_path / "report.md").read_text()
    assert "| latency_b1 |" in report_md
    if gpuconv.SIMULATOR:
        assert "No timings" in text and " ms" not in text
        assert all("timing" not in c for c in data["cases"])
        assert "No timings" in report_md
        # the size actually run beside the layer's GPU size, in the terminal and in the report
        row = _table_row(text, "latency_b1")
        assert "1×8×12×12, 8 × 3×3, padding 1" in row and "1×256×14×14, 256 × 3×3, padding 1" in row
        assert row.split()[-4:] == [f"{data['cases'][0]['checks'][a]['rel_err']:.1e}" if i % 2 == 0 else "ok"
                                    for i, a in enumerate(["direct", "direct", "im2col", "im2col"])]
        assert "| latency_b1 | 1×8×12×12, 8 × 3×3, padding 1 | 1×256×14×14, 256 × 3×3, padding 1 |" in report_md
        assert "2×4×13×13, max 2×2, stride 2" in _table_row(text, "vgg_maxpool")
    # gpuconv report re-renders the same report from the saved JSON
    (tmp_path / "report.md").unlink()
    assert main(["report", str(results)]) == 0
    assert (tmp_path / "report.md").read_text() == report_md


def test_bench_list_names_every_case(capsys):
    assert main(["bench", "--list"]) == 0
    text = capsys.readouterr().out
    for kind, case in layers.every_case():
        row = _table_row(text, case.name)
        assert kind in row and case.describe() in row
        assert ("quick" in row) == (case.name in layers.quick_names())
    names = [c.name for _, c in layers.every_case()]
    assert len(names) == len(set(names))


def test_bench_rejects_unknown_layer_and_algo(capsys):
    assert main(["bench", "--layers", "nope", "resnet_stm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown case 'nope', 'resnet_stm' (did you mean 'resnet_stem'?)" in err
    assert all(c.name in err for _, c in layers.every_case())
    if gpuconv.SIMULATOR:
        assert main(["bench", "--algo", "im2col_cublas"]) == 2
        assert "not available here" in capsys.readouterr().err


def _timing(ms, flops):
    """A timing-shaped dict (test data for the renderer, not a measurement)."""
    return dict(median_ms=ms, p20_ms=ms * 0.9, p80_ms=ms * 1.1, reps=50, host_us_per_call=12.0,
                gflops=flops / (ms * 1e-3) / 1e9)


def _test_results(cases):
    """Results of a made-up timed run on TEST_DEVICE of the given layer cases (test data), each tagged standard
    so that the summary covers it."""
    rows = []
    for i, case in enumerate(cases):
        g = gpuconv._args.conv2d_geometry(case.x_shape, case.w_shape, case.stride, case.padding, 1, case.groups)
        t = {"direct": _timing(1.0 + i, g.flops), "cudnn": _timing(0.5 + i, g.flops)}
        t["direct"]["ratio_to_cudnn"] = t["direct"]["median_ms"] / t["cudnn"]["median_ms"]
        rows.append(dict(kind="conv", name=case.name, tags=list(case.tags) + ["standard"], x=case.x_shape, w=case.w_shape,
                         stride=case.stride, padding=case.padding, groups=case.groups, flops=g.flops,
                         size=case.describe(), checks={"direct": dict(rel_err=1e-7, against="reference", passed=True)},
                         passed=True, timing=t))
    meta = dict(date="2026-01-01T00:00:00+00:00", git_commit="abc", target="cuda", mode="parity + timing",
                device=dict(name=TEST_DEVICE),
                baselines=dict(copy=dict(gb_per_s=1000.0), fma_peak=dict(gflops=10000.0)))
    results = dict(meta, cases=rows)
    results["summary"] = harness.summarize(meta, rows)
    return results


def test_report_renders_timings_and_plots(tmp_path):
    """Renderer only: timing-shaped rows (test data, not measurements) give tables, geomean and PNGs."""
    filters = [c for c in layers.SWEEPS if c.name in ("filters_16", "filters_32", "filters_64")]
    results = _test_results(filters)
    rows = results["cases"]
    ratios = [r["timing"]["direct"]["ratio_to_cudnn"] for r in rows]
    expect = (ratios[0] * ratios[1] * ratios[2]) ** (1 / 3)
    assert abs(results["summary"]["direct"]["geomean_ratio_to_cudnn"] - expect) < 1e-12
    assert abs(rows[0]["timing"]["direct"]["pct_fma_peak"] - rows[0]["timing"]["direct"]["gflops"] / 100) < 1e-9
    assert report.validate(json.loads(json.dumps(results, default=str))) is None
    path = report.render(results, str(tmp_path))
    text = open(path).read()
    assert "| filters_16 | 1 |" in text and "Geometric mean" in text
    assert text.startswith(f"# gpuconv benchmark — {TEST_DEVICE}")
    assert results["plots"] == ["sweep_filters.png", "roofline.png", "checks.png"]
    for name in results["plots"]:
        assert (tmp_path / name).stat().st_size > 1000
    assert report.results_name(results) == "2026-01-01-test-gpu-test-data-not-a-measurement.json"


def test_sweep_plots_have_numeric_axes_and_say_where_and_when():
    """Each sweep is plotted against its number (stride, padding, K, kernel size, batch), sorted, and every
    title names the GPU and the date (test data, not measurements)."""
    sweeps = [c for c in layers.SWEEPS if set(c.tags) & set(layers.SWEEP_AXES)]
    results = _test_results(list(reversed(sweeps)))
    figs = {f["file"]: f for f in report.sweep_figures(results)}
    assert set(figs) == {f"sweep_{tag}.png" for tag in layers.SWEEP_AXES}
    want = {"stride": [1, 2, 3, 4], "padding": [0, 1, 2, 3], "filters": [16, 32, 64, 128, 256, 512, 1024],
            "kernel_size": [1, 3, 5, 7], "batch": [1, 16, 64]}
    for tag, xs in want.items():
        f = figs[f"sweep_{tag}.png"]
        assert [x for x, _ in f["series"]["direct"]] == xs and [x for x, _ in f["series"]["cudnn"]] == xs
        assert f["title"].endswith(f"\n{TEST_DEVICE} · 2026-01-01")
        assert f["xlabel"] == layers.SWEEP_AXES[tag][0]
    by_name = {r["name"]: r for r in results["cases"]}
    assert figs["sweep_filters.png"]["series"]["direct"][0][1] == by_name["filters_16"]["timing"]["direct"]["gflops"]


def test_parity_only_plot_says_simulator_and_no_timings(tmp_path):
    """A run without timings gets no sweep plots; its check plot's title says simulator and no timings."""
    row = dict(kind="pool", name="vgg_maxpool", checks={"gpuconv": dict(rel_err=0.0, against="reference", passed=True)},
               passed=True, size="2×4×13×13, max 2×2, stride 2")
    results = dict(date="2026-02-03T04:05:06+00:00", target="simulator", mode="parity only", cases=[row])
    assert report.sweep_figures(results) == []
    f = report.check_figure(results)
    assert f["title"] == "relative error of each check (float32)\nNumba CUDA simulator · 2026-02-03 · no timings"
    assert f["series"] == {"gpuconv": [(0, report.ERROR_FLOOR)]}
    report.render(results, str(tmp_path))
    assert results["plots"] == ["checks.png"]


@pytest.mark.parametrize("results, problem", [
    ([], "expected a JSON object"),
    (dict(date="d", target="cuda", mode="m"), "no 'cases' list"),
    (dict(date="d", target="cuda", mode="m", cases=[dict(kind="conv", name="a", x=[1], w=[1])]), "has no checks"),
    (dict(date="d", target="cuda", mode="m", cases=[dict(kind="pool", name="a", checks={})]), "no 'gpuconv' check"),
    (dict(date="d", target="cuda", mode="m", cases=[dict(kind="gemm", name="a", checks={"gpuconv": {"rel_err": "x"}})]),
     "numeric rel_err"),
])
def test_report_validate_names_the_problem(results, problem):
    assert problem in report.validate(results)


def test_tune_shows_heuristic_in_simulator(capsys):
    if not gpuconv.SIMULATOR:
        pytest.skip("on a GPU gpuconv tune times the layers (scripts/gpu_run.sh runs it)")
    assert main(["tune", "--layers", "resnet_3x3_56", "depthwise_3x3", "1x1_64_256"]) == 0
    out = capsys.readouterr().out
    assert "nothing is cached" in out
    assert _table_row(out, "resnet_3x3_56").split()[-1] == "winograd"
    assert _table_row(out, "depthwise_3x3").split()[-1] == "direct"
    assert _table_row(out, "1x1_64_256").split()[-1] == "implicit_gemm"
    assert main(["tune", "--layers", "nope"]) == 2
    assert "unknown convolution case 'nope'" in capsys.readouterr().err


def test_bench_imports_resolve():
    """The GPU-only paths of bench/ import lazily inside functions that no CPU test runs; check statically
    that every module they name exists (optional GPU libraries aside)."""
    import ast
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench"
    optional = {"torch", "cupy", "matplotlib", "rich", "pytest", "dask"}
    for path in bench.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                for mod in [node.module] if node.module else [a.name for a in node.names]:
                    assert (bench / f"{mod}.py").exists(), f"{path.name}: from .{mod}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for name in names:
                    top = name.split(".")[0]
                    assert top in optional or importlib.util.find_spec(top) is not None, f"{path.name}: {name}"


def test_large_image_dask_case_skips_in_the_simulator(tmp_path, capsys):
    if not gpuconv.SIMULATOR:
        pytest.skip("on a GPU the case runs for real (scripts/gpu_run.sh: gpuconv bench --full)")
    assert main(["bench", "--layers", "large_image_5x5", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "skipped: needs a CUDA device" in _table_row(text, "large_image_5x5")
    assert "0 passed, 0 failed, 1 skipped" in text and " ms" not in text
    report = (tmp_path / "report.md").read_text()
    assert "## Large images: gpuconv.dask against one gpu_conv2d call" in report
    assert "| large_image_5x5 | 1×3×16384×16384 | 8×3×5×5 | 4096 | skipped: needs a CUDA device" in report


def test_report_renders_dask_timings():
    """Renderer only: a timing-shaped dask row (test data, not a measurement)."""
    row = dict(kind="dask", name="large_image_5x5", x=(1, 3, 64, 64), w=(8, 3, 5, 5), chunk=32, passed=True,
               checks=dict(dask_vs_one_call=dict(rel_err=0.0, bitwise=True, passed=True),
                           one_call_vs_reference=dict(rel_err=2e-7, passed=True)),
               timing={"gpuconv.dask": dict(median_ms=3.0, ratio_to_one_call=1.5), "gpu_conv2d": dict(median_ms=2.0)})
    text = report.markdown(dict(date="2026-01-01T00:00:00+00:00", target="cuda", mode="parity + timing", cases=[row]))
    assert "| large_image_5x5 | 1×3×64×64 | 8×3×5×5 | 32 | bit for bit | 2.0e-07 ok | 3 | 2 | 1.50 |" in text


def test_crop_errors_checks_the_corner_and_the_middle():
    """The large-image check compares 64×64 crops with the reference; here 6×6 crops of a small case."""
    import numpy as np

    from gpuconv import reference as ref

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 20, 22)), rng.standard_normal((3, 2, 5, 5))
    y = ref.conv2d(x, w, padding=2)
    assert harness.crop_errors(x, w, y, (2, 2, 2, 2), (5, 5), n=6) < 1e-14
    for p, q in ((0, 0), (5, 5), (7, 8), (12, 13), (15, 2)):   # corner crop rows/cols 0-5, middle 7-12 / 8-13, outside
        bad = y.copy()
        bad[0, 1, p, q] += 1.0
        assert (harness.crop_errors(x, w, bad, (2, 2, 2, 2), (5, 5), n=6) > 1e-3) == ((p, q) != (15, 2))
