#!/usr/bin/env bash
# Set up a virtual environment and run the test suite: the README's test command.
# Needs only Python >= 3.10 with pip and venv. Without a CUDA device the tests run kernels in Numba's
# CUDA simulator at small shapes; with one, on the GPU at larger shapes. Extra arguments go to pytest.
#   GPUCONV_VENV=DIR   where the environment lives (default .venv)
#   GPUCONV_NO_TORCH=1 skip installing PyTorch (its parity tests are then skipped)
#   GPUCONV_TEST_WORKERS=N  pytest-xdist workers (default: one per CPU; the simulator is CPU-bound)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${GPUCONV_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev,bench,dask]"
if [ "${GPUCONV_NO_TORCH:-0}" != 1 ]; then
    # pinned: 2.13.0 is the CPU build the project's machines carry; a range would fetch the newest CUDA build
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
exec "$VENV/bin/python" -m pytest -n "${GPUCONV_TEST_WORKERS:-auto}" "$@"
