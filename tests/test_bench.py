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


def test_bench_precisions_check_against_their_bounds(tmp_path, capsys):
    """--precision float16 tf32: each case again in those precisions only (no float32 rows), inputs rounded
    to the precision, each check held to the stated bound u + K·2^-24 (K = C·R·S), TF32 only for the
    algorithms allow_tf32 reaches, pooling in 16 bits only; the tables and the report say the precision."""
    from gpuconv import _precision

    assert main(["bench", "--layers", "latency_b1", "vgg_maxpool", "--algo", "direct", "im2col",
                 "--precision", "float16", "tf32", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert [(c["name"], c["precision"]) for c in data["cases"]] == [
        ("latency_b1", "float16"), ("vgg_maxpool", "float16"), ("latency_b1", "tf32")]
    half, pool, tf32 = data["cases"]
    k = half["w"][1] * half["w"][2] * half["w"][3]
    assert set(half["checks"]) == {"direct", "im2col"} and set(tf32["checks"]) == {"im2col"}
    for row, precision in ((half, "float16"), (tf32, "tf32")):
        for c in row["checks"].values():
            assert c["bound"] == _precision.error_bound(precision, k) and c["passed"] and c["rel_err"] <= c["bound"]
    # float16 results really are rounded to float16 (error near 2^-12, far above float32's)
    assert all(2.0 ** -16 < c["rel_err"] for c in half["checks"].values())
    assert pool["checks"]["gpuconv"] == dict(rel_err=0.0, against="reference", bound=0.0, passed=True)
    assert "3 passed, 0 failed" in text
    for title in ("Convolutions: float16 relative error", "Pooling, GEMM, large images: float16 relative error",
                  "Convolutions: tf32 relative error"):
        assert title in text
    assert "float32" not in text
    md = (tmp_path / "report.md").read_text()
    assert "## Convolutions, float16" in md and "## Pooling, float16" in md and "## Convolutions, tf32" in md
    assert "## Convolutions\n" not in md and "## Pooling, tf32" not in md
    assert "| latency_b1 | 1×8×12×12, 8 × 3×3, padding 1 | 1×256×14×14, 256 × 3×3, padding 1 | " \
           f"{tf32['checks']['im2col']['rel_err']:.1e} ok |" in md


def test_check_holds_each_precision_to_its_bound():
    """The pass threshold: float32 below TOL; float16 and bfloat16 at or below u + K·2^-24; TF32 at or
    below K·2^-24; an exact op (max pooling) only at 0."""
    assert harness.check(9e-6, "reference")["passed"] and not harness.check(1e-5, "reference")["passed"]
    for precision, u in (("float16", 2.0 ** -11), ("bfloat16", 2.0 ** -8), ("tf32", 0.0)):
        bound = u + 72 * 2.0 ** -24
        assert harness.check(bound, "reference", precision, 72) == dict(rel_err=bound, against="reference",
                                                                        bound=bound, passed=True)
        assert not harness.check(bound * 1.01, "reference", precision, 72)["passed"]
        assert not harness.check(1e-12, "reference", precision, 4, exact=True)["passed"]


def test_check_gives_winograd_its_tf32_allowance():
    """Winograd on TF32 multiplies TF32-rounded transforms: its checks add the TF32 ceiling of its tile size
    (winograd.TF32_TYPICAL_ERROR) to the bound; 16-bit Winograd (float32 products), other algorithms and
    float32 do not."""
    from gpuconv import winograd

    for algo, m in winograd.ALGOS.items():
        bound = 72 * 2.0 ** -24 + winograd.TF32_TYPICAL_ERROR[m]
        assert harness.check(bound, "reference", "tf32", 72, algo=algo)["bound"] == bound
        assert not harness.check(bound * 1.01, "reference", "tf32", 72, algo=algo)["passed"]
        half = 2.0 ** -11 + 72 * 2.0 ** -24
        assert harness.check(half, "reference", "float16", 72, algo=algo)["bound"] == half
    assert not harness.check(2.0 ** -11 + 73 * 2.0 ** -24, "reference", "float16", 72, algo="im2col")["passed"]
    assert not harness.check(1e-5, "reference", algo="winograd")["passed"]

def test_report_renders_a_precision_section(tmp_path):
    """Renderer only: timing-shaped float16 rows (test data, not measurements) with both cuDNN baselines
    get their own section, ratios to each, and a geometric mean per baseline; float32 rows keep theirs."""
    filters = [c for c in layers.SWEEPS if c.name in ("filters_16", "filters_32")]
    results = _test_results(filters)
    half = json.loads(json.dumps(results["cases"]))
    for r in half:
        r["precision"] = "float16"
        t = r["timing"]
        for v in t.values():
            del v["pct_fma_peak"]                  # the float32 rows' figure, copied with them
        t["cudnn_channels_last"] = _timing(t["cudnn"]["median_ms"] / 2, r["flops"])
        t["direct"]["ratio_to_cudnn_channels_last"] = t["direct"]["median_ms"] / t["cudnn_channels_last"]["median_ms"]
        r["checks"]["direct"].update(rel_err=2e-4, bound=4.9e-4)
    rows = results["cases"] + half
    results = dict(results, cases=rows, summary=harness.summarize(results, rows))
    assert results["summary"]["direct (float16)"]["precision"] == "float16"
    ratios = [r["timing"]["direct"]["ratio_to_cudnn_channels_last"] for r in half]
    assert abs(results["summary"]["direct (float16)"]["geomean_ratio_to_cudnn_channels_last"]
               - (ratios[0] * ratios[1]) ** 0.5) < 1e-12
    assert "pct_fma_peak" not in half[0]["timing"]["direct"]            # the fp32 FMA peak is not its roof
    back = json.loads(json.dumps(results, default=str))
    assert report.validate(back) is None
    text = report.markdown(back)
    f32, f16 = text.split("## Convolutions, float16")
    assert "## Convolutions\n" in f32 and "| direct / cuDNN |" in f32 and "NHWC" not in f32
    assert "| direct ms | direct GFLOP/s | direct / cuDNN | direct / cuDNN NHWC | cuDNN ms | cuDNN GFLOP/s | " \
           "cuDNN NHWC ms | cuDNN NHWC GFLOP/s |" in f16
    assert "| filters_16 | 1 | " in f16 and " | 2.00 | 4.00 | 0.5 | " in f16     # 1 ms: ×2 cuDNN's, ×4 NHWC's
    assert "direct (float16) " in f16 and "(NHWC " in f16 and "Checks (relative error, float16)" in f16
    assert "2.0e-04 ok" in f16
    back["cases"][-1]["precision"] = "fp8"
    assert "has precision 'fp8'" in report.validate(back)
