#!/usr/bin/env bash
# One command for a GPU machine (the device image: numba, numba-cuda, cupy, torch, pytest; no network).
# Installs gpuconv in place without fetching anything, then, writing everything under OUT:
#   tests.txt      the test suite on the GPU (real kernels, larger shapes, CuPy/torch CUDA interop)
#   memcheck.txt   compute-sanitizer --tool memcheck over the kernel tests
#   bench/         gpuconv bench --full: every case checked, then timed against cuDNN / torch / cuBLAS
#                  (results JSON <date>-<gpu>.json, report.md, PNG plots)
#   bench_precision/  gpuconv bench --standard --precision float16 bfloat16 tf32: the standard layers,
#                  pooling and GEMMs again in 16 bits and TF32, against cuDNN / PyTorch / cuBLAS in the same
#                  precision (cuDNN channels-first and channels-last); its time is not measured yet (no GPU
#                  session has run it): steps.txt records it, run it as its own step if a budget is tight
#   micro.json     pytest-benchmark microbenchmarks (pytest bench/ --benchmark-only)
#   kernels.txt    the static kernel report
# Usage: bash scripts/gpu_run.sh OUT [STEPS...]
#   (STEPS: tests memcheck bench precision micro kernels; default all)
# Publish: copy OUT/bench/<date>-<gpu>.json to bench/results/ and OUT/bench/{report.md,*.png} to
# bench/reports/<date>-<gpu>/ (OUT/bench_precision likewise, as <date>-<gpu>-precision), then link the
# report from the README.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_run.sh OUT [steps...]}
shift
STEPS=${*:-tests memcheck bench precision micro kernels}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export GPUCONV_SIMULATOR=0
if ! $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUT/install.txt" 2>&1; then
    # no usable build backend offline: lay the package out by symlinks (python/gpuconv -> gpuconv,
    # kernels/ -> gpuconv.kernels, bench/ -> gpuconv.bench) and put it on PYTHONPATH instead
    echo "pip install failed (see $OUT/install.txt); using a symlinked package tree" | tee -a "$OUT/install.txt"
    PKG="$OUT/pkg/gpuconv"
    rm -rf "$OUT/pkg" && mkdir -p "$PKG"
    for f in python/gpuconv/*; do ln -s "$PWD/$f" "$PKG/"; done
    ln -s "$PWD/kernels" "$PKG/kernels"
    ln -s "$PWD/bench" "$PKG/bench"
    export PYTHONPATH="$OUT/pkg${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY -c "import gpuconv; print(gpuconv._runtime.describe())" | tee "$OUT/info.txt"
status=0
for step in $STEPS; do
    start=$(date +%s)
    case $step in
        tests)    $PY -m pytest -q -p no:cacheprovider -x tests > "$OUT/tests.txt" 2>&1 ;;
        memcheck) compute-sanitizer --tool memcheck --error-exitcode 3 \
                      $PY -m pytest -q -p no:cacheprovider tests/test_conv2d.py tests/test_pool.py tests/test_gemm.py \
                      tests/test_im2col.py tests/test_backward.py > "$OUT/memcheck.txt" 2>&1 ;;
        bench)    $PY -m gpuconv.cli bench --full --out "$OUT/bench" > "$OUT/bench.txt" 2>&1 ;;
        precision) $PY -m gpuconv.cli bench --standard --precision float16 bfloat16 tf32 \
                      --out "$OUT/bench_precision" > "$OUT/bench_precision.txt" 2>&1 ;;
        micro)    $PY -m pytest -q -p no:cacheprovider bench/test_micro.py --benchmark-only \
                      --benchmark-json "$OUT/micro.json" > "$OUT/micro.txt" 2>&1 ;;
        kernels)  $PY -m gpuconv.cli kernels > "$OUT/kernels.txt" 2>&1 ;;
        *)        echo "unknown step $step"; status=2; continue ;;
    esac
    rc=$?
    echo "$step: exit $rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/steps.txt"
    [ $rc -eq 0 ] || status=1
done
exit $status
