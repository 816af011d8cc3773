#!/usr/bin/env bash
# Build gpuconv's wheel, install it into a fresh virtual environment with no extras (the core
# dependencies: numpy, numba, numba-cuda, rich), and run the installed `gpuconv` from a folder outside
# the checkout, as a user who ran `pip install gpuconv` would: --version, info, shape, bench --quick
# (parity in the simulator without a GPU), report, tune. CI runs it (.ci/run).
# Usage: bash scripts/check_wheel.sh [WORKDIR]    (default: a new temporary folder)
#   PYTHON=python3.X   the interpreter that builds the wheel and the environment (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=${1:-$(mktemp -d)}
mkdir -p "$work" && work=$(cd "$work" && pwd)
rm -rf "$work/dist" "$work/wheel-venv" "$work/run"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$work/dist" .
wheel=$(ls "$work"/dist/gpuconv-*.whl)
echo "built $(basename "$wheel")"
# the harness ships inside the package (gpuconv.bench), the committed report and results do not
"$PY" - "$wheel" <<'PYEOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["gpuconv/cli.py", "gpuconv/kernels/direct.py", "gpuconv/reference/conv.py", "gpuconv/bench/harness.py",
        "gpuconv/bench/layers.py", "gpuconv/bench/report.py"]
missing = [n for n in need if n not in names]
stray = sorted(n for n in names if n.startswith("gpuconv/bench/static") or not (n.startswith("gpuconv/")
               or ".dist-info/" in n))
if missing or stray:
    sys.exit(f"wheel contents: missing {missing}, unexpected {stray}")
PYEOF
"$PY" -m venv "$work/wheel-venv"
"$work/wheel-venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
mkdir -p "$work/run" && cd "$work/run"          # not the checkout: only the installed package can be imported
bin="$work/wheel-venv/bin"
"$bin/python" -c "import gpuconv, sys; assert gpuconv.__file__.startswith(sys.prefix), gpuconv.__file__"
"$bin/gpuconv" --version
"$bin/gpuconv" info
"$bin/gpuconv" shape 3x224x224 'conv 64 7 stride=2 padding=3' 'maxpool 3 stride=2 padding=1' 'conv 128 3 padding=1'
"$bin/gpuconv" bench --quick --out bench
"$bin/gpuconv" report bench/*.json --out report
"$bin/gpuconv" tune --layers resnet_3x3_56 1x1_64_256
echo "wheel check passed: $(basename "$wheel") installed and ran from $work/run"
