"""`gpuconv bench` (the README's main job): every case checked; in the simulator, no timings."""

import json

import gpuconv
from gpuconv.cli import main


def test_bench_checks_and_marks_simulator(tmp_path, capsys):
    assert main(["bench", "--layers", "latency_b1", "depthwise_3x3", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    data = json.loads((tmp_path / "results.json").read_text())
    assert [c["name"] for c in data["cases"]] == ["latency_b1", "depthwise_3x3"]
    assert all(c["passed"] and c["rel_err"] < 1e-5 for c in data["cases"])
    assert "2 passed, 0 failed" in text
    if gpuconv.SIMULATOR:
        assert "No timings" in text and " ms" not in text
        assert all("timing" not in c for c in data["cases"])


def test_bench_rejects_unknown_layer(capsys):
    assert main(["bench", "--layers", "nope"]) == 2
    assert "unknown layers" in capsys.readouterr().err
