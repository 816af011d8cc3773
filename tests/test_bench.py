"""`gpuconv bench` (the README's main job) and `gpuconv report`: every case checked; in the simulator,
no timings. The report renderer is also driven with timing-shaped rows to check its tables and plots."""

import json

import pytest

import gpuconv
from gpuconv.cli import main


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
    report = (tmp_path / "report.md").read_text()
    assert "| latency_b1 |" in report
    if gpuconv.SIMULATOR:
        assert "No timings" in text and " ms" not in text
        assert all("timing" not in c for c in data["cases"])
        assert "No timings" in report
    # gpuconv report re-renders the same report from the saved JSON
    (tmp_path / "report.md").unlink()
    assert main(["report", str(results)]) == 0
    assert (tmp_path / "report.md").read_text() == report


def test_bench_rejects_unknown_layer_and_algo(capsys):
    assert main(["bench", "--layers", "nope"]) == 2
    assert "unknown layers" in capsys.readouterr().err
    if gpuconv.SIMULATOR:
        assert main(["bench", "--algo", "im2col_cublas"]) == 2
        assert "not available here" in capsys.readouterr().err


def test_report_renders_timings_and_plots(tmp_path):
    """Renderer only: timing-shaped rows (test data, not measurements) give tables, geomean and PNGs."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import harness, report

    def timing(ms, flops):
        return dict(median_ms=ms, p20_ms=ms * 0.9, p80_ms=ms * 1.1, reps=50, host_us_per_call=12.0,
                    gflops=flops / (ms * 1e-3) / 1e9)

    rows = []
    for i, k in enumerate((16, 32, 64)):
        flops = 2 * 16 * k * 14 * 14 * 256 * 9
        t = {"direct": timing(1.0 + i, flops), "cudnn": timing(0.5 + i, flops)}
        t["direct"]["ratio_to_cudnn"] = t["direct"]["median_ms"] / t["cudnn"]["median_ms"]
        rows.append(dict(kind="conv", name=f"filters_{k}", tags=["filters", "standard"], x=(16, 256, 14, 14),
                         w=(k, 256, 3, 3), flops=flops, checks={"direct": dict(rel_err=1e-7, passed=True)},
                         passed=True, timing=t))
    meta = dict(date="2026-01-01T00:00:00+00:00", git_commit="abc", target="cuda", mode="parity + timing",
                device=dict(name="Test GPU"),
                baselines=dict(copy=dict(gb_per_s=1000.0), fma_peak=dict(gflops=10000.0)))
    results = dict(meta, cases=rows)
    results["summary"] = harness.summarize(meta, rows)
    ratios = [r["timing"]["direct"]["ratio_to_cudnn"] for r in rows]
    expect = (ratios[0] * ratios[1] * ratios[2]) ** (1 / 3)
    assert abs(results["summary"]["direct"]["geomean_ratio_to_cudnn"] - expect) < 1e-12
    assert abs(rows[0]["timing"]["direct"]["pct_fma_peak"] - rows[0]["timing"]["direct"]["gflops"] / 100) < 1e-9
    path = report.render(results, str(tmp_path))
    text = open(path).read()
    assert "| filters_16 | 1 |" in text and "Geometric mean" in text
    assert (tmp_path / "sweep_filters.png").stat().st_size > 1000
    assert (tmp_path / "roofline.png").stat().st_size > 1000
    assert report.results_name(results) == "2026-01-01-test-gpu.json"


def test_tune_shows_heuristic_in_simulator(capsys):
    if not gpuconv.SIMULATOR:
        pytest.skip("on a GPU gpuconv tune times the layers (scripts/gpu_run.sh runs it)")
    assert main(["tune", "--layers", "resnet_3x3_56", "depthwise_3x3", "1x1_64_256"]) == 0
    out = capsys.readouterr().out
    assert "nothing is cached" in out
    assert "resnet_3x3_56          winograd" in out and "depthwise_3x3          direct" in out
    assert "1x1_64_256             implicit_gemm" in out
    assert main(["tune", "--layers", "nope"]) == 2


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
    assert "large_image_5x5        skipped: needs a CUDA device" in text
    assert "0 passed, 0 failed, 1 skipped" in text and " ms" not in text
    report = (tmp_path / "report.md").read_text()
    assert "## Large images: gpuconv.dask against one gpu_conv2d call" in report
    assert "| large_image_5x5 | 1×3×16384×16384 | 8×3×5×5 | 4096 | skipped: needs a CUDA device" in report


def test_report_renders_dask_timings():
    """Renderer only: a timing-shaped dask row (test data, not a measurement)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import report

    row = dict(kind="dask", name="large_image_5x5", x=(1, 3, 64, 64), w=(8, 3, 5, 5), chunk=32, passed=True,
               checks=dict(dask_vs_one_call=dict(rel_err=0.0, bitwise=True, passed=True),
                           one_call_vs_reference=dict(rel_err=2e-7, passed=True)),
               timing={"gpuconv.dask": dict(median_ms=3.0, ratio_to_one_call=1.5), "gpu_conv2d": dict(median_ms=2.0)})
    text = report.markdown(dict(date="2026-01-01T00:00:00+00:00", target="cuda", mode="parity + timing", cases=[row]))
    assert "| large_image_5x5 | 1×3×64×64 | 8×3×5×5 | 32 | bit for bit | 2.0e-07 ok | 3 | 2 | 1.50 |" in text


def test_crop_errors_checks_the_corner_and_the_middle():
    """The large-image check compares 64×64 crops with the reference; here 6×6 crops of a small case."""
    import sys
    from pathlib import Path

    import numpy as np

    from gpuconv import reference as ref

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import harness

    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 20, 22)), rng.standard_normal((3, 2, 5, 5))
    y = ref.conv2d(x, w, padding=2)
    assert harness.crop_errors(x, w, y, (2, 2, 2, 2), (5, 5), n=6) < 1e-14
    for p, q in ((0, 0), (5, 5), (7, 8), (12, 13), (15, 2)):   # corner crop rows/cols 0-5, middle 7-12 / 8-13, outside
        bad = y.copy()
        bad[0, 1, p, q] += 1.0
        assert (harness.crop_errors(x, w, bad, (2, 2, 2, 2), (5, 5), n=6) > 1e-3) == ((p, q) != (15, 2))
