#!/usr/bin/env bash
# Set up a virtual environment and run the main job: `gpuconv bench`. On a machine without a CUDA
# device it checks the quick layer set against the reference in Numba's CUDA simulator, prints no
# timings, and says so. Extra arguments go to `gpuconv bench` (e.g. --full --out bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GPUCONV_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev,bench,dask]"
"$VENV/bin/gpuconv" info
exec "$VENV/bin/gpuconv" bench "$@"
