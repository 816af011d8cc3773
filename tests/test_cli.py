"""The `gpuconv` command as a user runs it (a subprocess): --version, and every mistake answered by one
line on stderr and exit status 2, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

import gpuconv
from gpuconv.bench import layers


def gpuconv_cli(*args, cwd=None):
    """Run `python -m gpuconv.cli ARGS` (what the gpuconv script runs) in the simulator."""
    env = dict(os.environ, GPUCONV_SIMULATOR="1")
    return subprocess.run([sys.executable, "-m", "gpuconv.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_version():
    from importlib.metadata import version

    p = gpuconv_cli("--version")
    assert p.returncode == 0 and p.stdout == f"gpuconv {gpuconv.__version__}\n" and p.stderr == ""
    assert version("gpuconv") == gpuconv.__version__          # the package's metadata reads the same attribute


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args, says", [
    ([], "choose a command: info, shape, kernels, bench, report, tune"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["bench", "--quick", "--full"], "not allowed with argument"),
    (["bench", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["bench", "--layers", "nope"], "unknown case 'nope'; the cases are: resnet_stem, "),
    (["bench", "--precision", "float16", "fp8"],
     "argument --precision: invalid choice: 'fp8' (choose from 'float32', 'float16', 'bfloat16', 'tf32')"),
    (["shape", "3x32"], "input shape must be CxHxW or NxCxHxW"),
    (["shape", "3x9x9", "pool 2"], "unknown layer 'pool 2'"),
    (["kernels", "--arch", "sm_75"], "invalid choice: 'sm_75'"),
    (["kernels", "--check", "/no/such/thresholds.json"], "No such file or directory: /no/such/thresholds.json"),
    (["report", "/no/such/results.json"], "No such file or directory: /no/such/results.json"),
    (["report", "{tmp}/notjson.json"], "notjson.json is not a JSON file"),
    (["report", "{tmp}/list.json"], "list.json is not a results file of gpuconv bench: expected a JSON object"),
    (["report", "{tmp}/nocases.json"], "nocases.json is not a results file of gpuconv bench: no 'cases' list"),
    (["report", "{tmp}"], "Is a directory"),
])
def test_every_mistake_is_one_line_and_exit_2(tmp_path, args, says):
    _write(tmp_path, "notjson.json", "date,target\n1,2\n")
    _write(tmp_path, "list.json", "[1, 2]")
    _write(tmp_path, "nocases.json", json.dumps(dict(date="2026-01-01", target="cuda", mode="parity")))
    p = gpuconv_cli(*[a.format(tmp=tmp_path) for a in args])
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("gpuconv"), p.stderr
    assert says in p.stderr and "Traceback" not in p.stderr


def test_bench_list_and_report_from_elsewhere(tmp_path):
    """From a folder that is not the checkout: --list names every case; report renders saved results."""
    p = gpuconv_cli("bench", "--list", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert all(c.name in p.stdout for _, c in layers.every_case())
    results = dict(date="2026-01-01T00:00:00+00:00", target="simulator", mode="parity only", cases=[
        dict(kind="gemm", name="sgemm_1024", M=40, N=40, K=40, flops=128000, size="(40 × 40) · (40 × 40)",
             checks={"gpuconv": dict(rel_err=1.2e-7, against="numpy float64", passed=True)}, passed=True)])
    path = _write(tmp_path, "r.json", json.dumps(results))
    p = gpuconv_cli("report", path, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| sgemm_1024 | (40 × 40) · (40 × 40) | 1.2e-07 |" in text
