#!/usr/bin/env bash
# Set up a virtual environment and run the main job: `gpuconv bench`. On a machine without a CUDA
# device it checks the quick layer set against the reference in Numba's CUDA simulator, prints no
# timings, and says so. Extra arguments go to `gpuconv bench` (e.g. --full --out bench/out).
# Installs only what the job needs: gpuconv and its core dependencies, plus matplotlib (the bench extra,
# for the report's plots); where nvidia-smi reports a driver, also the CUDA bindings and CuPy of the
# driver's CUDA major version (the cu12 / cu13 extra), PyTorch (cuDNN, the timing baseline) and dask
# (the large-image case). No test tools, no compiler chain (those are scripts/test.sh's).
#   GPUCONV_VENV=DIR       where the environment lives (default .venv)
#   GPUCONV_EXTRAS=LIST    the extras to install instead, e.g. "bench,cu12,torch"
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GPUCONV_VENV:-.venv}
extras=bench
if driver=$(nvidia-smi 2>/dev/null) && cuda=$(sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' <<< "$driver" | head -n1) \
        && [ -n "$cuda" ]; then
    extras="bench,cu$cuda,torch,dask"
fi
extras=${GPUCONV_EXTRAS:-$extras}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
"$VENV/bin/gpuconv" info
exec "$VENV/bin/gpuconv" bench "$@"
