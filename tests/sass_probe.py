"""Hand-made kernels whose machine code we know, measured by the static model (run as a script, with
Numba's simulator off: compiling needs NVVM, ptxas and nvdisasm, not a GPU). Prints one JSON object:
{name: Row as a dict}. tests/test_sass.py runs it once and checks each figure.

Kernels:
- fma_chain: a loop whose body is 8 dependent FFMAs (hand-unrolled): 8 FFMA per iteration, no loads;
- div_loop: a grid-stride loop reading x[e // k] with int64 e and k: one 64-bit division site;
- div_free: the same loop over a 2-D grid (row from blockIdx.y): no division;
- vector_global: four floats per thread through kernels._vector.load4 (one LDG.E.128);
- vector_shared: four consecutive reads of a shared array declared with alignment=16 (one LDS.128);
- generic_load: the same read as vector_global's but of an any-layout array, elementwise (generic LD);
- local_array: a large, runtime-indexed local array (local memory: STL/LDL);
- worse_activation: gpuconv's (dense, ELU) activation kernel with a 64-bit division added per element,
  measured under the real kernel's name and checked against the committed thresholds (must fail).
"""

import json
import os
import sys
from dataclasses import asdict

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
os.environ["GPUCONV_SIMULATOR"] = "0"

import numpy as np  # noqa: E402
from numba import cuda, float32, int64, types, uint64  # noqa: E402

from gpuconv import kernel_report  # noqa: E402
from gpuconv.kernel_specs import KernelSpec  # noqa: E402
from gpuconv.kernels._vector import load4  # noqa: E402


def fma_chain(out, a, b, n):
    x = a[cuda.threadIdx.x]
    y = b[cuda.threadIdx.x]
    for _ in range(n):
        x = x * y + y
        x = x * y + y
        x = x * y + y
        x = x * y + y
        x = x * y + y
        x = x * y + y
        x = x * y + y
        x = x * y + y
    out[cuda.threadIdx.x] = x


def div_loop(x, y, k):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for e in range(start, y.size, int64(cuda.gridDim.x) * cuda.blockDim.x):
        y[e] = x[e // k]


def div_free(x, y, k):
    row = cuda.blockIdx.y
    for c in range(cuda.threadIdx.x, k, cuda.blockDim.x):
        y[row, c] = x[row]


def vector_global(x, y):
    i = (cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x) * 4
    a, b, c, d = load4(x, i)
    y[i // 4] = a + b + c + d


def vector_shared(x, y):
    sm = cuda.shared.array(1024, dtype=float32, alignment=16)
    t = cuda.threadIdx.x
    sm[t] = x[t]
    cuda.syncthreads()  # the tile is written before anyone reads it
    i = uint64(t % 256) * uint64(4)           # unsigned: no negative-index wraparound between the reads
    y[t] = sm[i] + sm[i + uint64(1)] + sm[i + uint64(2)] + sm[i + uint64(3)]


def generic_load(x, y):
    i = cuda.threadIdx.x * 4
    y[cuda.threadIdx.x] = x[i] + x[i + 1] + x[i + 2] + x[i + 3]


def local_array(x, y, k):
    buf = cuda.local.array(512, dtype=float32)  # too large for registers, indexed at run time: local memory
    for i in range(512):
        buf[i] = x[i]
    buf[k % 512] = x[cuda.threadIdx.x]
    y[cuda.threadIdx.x] = buf[(k * 7) % 512]


f32, i64 = types.float32, types.int64
C1, A1, C2 = types.Array(f32, 1, "C"), types.Array(f32, 1, "A"), types.Array(f32, 2, "C")
PROBES = {
    "fma_chain": (fma_chain, (C1, C1, C1, i64), "fma_inner", "compute"),
    "div_loop": (div_loop, (C1, C1, i64), "outer", "memory"),
    "div_free": (div_free, (C1, C2, i64), "outer", "memory"),
    "vector_global": (vector_global, (C1, C1), "kernel", "memory"),
    "vector_shared": (vector_shared, (C1, C1), "kernel", "memory"),
    "generic_load": (generic_load, (A1, C1), "kernel", "memory"),
    "local_array": (local_array, (C1, C1, i64), "kernel", "memory"),
}


def _spec(name, func, args, hot, kind, bytes_per_item=8.0):
    return KernelSpec(name, lambda dtype, f=func: cuda.jit(f), lambda dtype, a=args: a, True, 0, 256, kind, hot,
                      1.0, bytes_per_item if kind == "memory" else 0.0)


def main():
    ptxas, nvdisasm = kernel_report.find_tool("ptxas"), kernel_report.find_tool("nvdisasm")
    out = {}
    for name, (func, args, hot, kind) in PROBES.items():
        row = kernel_report.measure(_spec(name, func, args, hot, kind), "float32", "sm_90", ptxas, nvdisasm)
        out[name] = asdict(row)

    # a worse build of a dispatched kernel, checked against the committed thresholds
    from gpuconv.kernels import _common, epilogue
    from gpuconv.kernels._flat import load as flat_load
    from gpuconv.kernels._flat import store as flat_store

    apply = _common.activation_fn(np.float32, _common.ACT_ELU)

    @cuda.jit
    def activation(y, alpha, mag, sft, qblocks, o0, o1, o2):  # gpuconv's dense pass, plus a division per element
        first, left = epilogue._dense_start(y.size)
        for k in range(epilogue.PER_THREAD):
            if k * epilogue.THREADS < left:
                i = int64(k * epilogue.THREADS)
                flat_store(y, first, i, apply(flat_load(y, first, i), alpha) + (first + i) // qblocks)

    real = {s.name: s for s in kernel_report.kernel_specs()}["activation"]
    worse = KernelSpec("activation", lambda dtype: activation, real.args, True, 0, real.threads, real.kind, real.hot,
                       real.trips, real.bytes_per_item)
    good_row = kernel_report.measure(real, "float32", "sm_90", ptxas, nvdisasm)
    worse_row = kernel_report.measure(worse, "float32", "sm_90", ptxas, nvdisasm)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "bench", "static", "thresholds.json")) as f:
        thresholds = json.load(f)
    only = dict(thresholds, kernels={k: v for k, v in thresholds["kernels"].items() if k == "activation/float32"})
    out["_check"] = dict(good=kernel_report.check([good_row], only), worse=kernel_report.check([worse_row], only))
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main()
