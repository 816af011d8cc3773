"""Static kernel report: compile every kernel to PTX (no GPU needed) and run `ptxas -v` on it.

Prints registers, static shared memory, stack frame (local memory) and ptxas's own
"N bytes spill stores / N bytes spill loads" per kernel, dtype and target. Compiling needs numba-cuda's
NVVM (the cu13 extra) and a ptxas at least as new as it (the nvidia-cuda-nvcc wheel brings one).
The simulator cannot compile, so from a simulator process the report re-runs itself in a child
process with the simulator off.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

from . import _runtime


@dataclass(frozen=True)
class KernelSpec:
    name: str
    factory: object          # dtype -> numba dispatcher
    args: object             # dtype -> tuple of numba argument types, as the launcher passes them
    dispatched: bool         # used by gpu_conv2d's dispatch (a spill here fails CI)
    dynamic_smem: int        # most dynamic shared memory a launch asks for, bytes (0: none)


def _conv_args(extra_ints):
    def args(dtype):
        from numba import types

        from gpuconv.kernels._common import numba_type

        t = numba_type(dtype)
        a4 = types.Array(t, 4, "C")
        return (a4, a4, types.Array(t, 1, "C"), a4) + (types.int64,) * 7 + \
            (types.int64, types.boolean, types.int64, t) + (types.int64,) * extra_ints
    return args


def _pool_args(kind):
    def args(dtype):
        from numba import types

        from gpuconv.kernels._common import numba_type

        a4 = types.Array(numba_type(dtype), 4, "C")
        i4 = types.Array(types.int64, 4, "C")
        if kind == "max":
            return (a4, a4, i4) + (types.int64,) * 8 + (types.boolean,)
        if kind == "avg":
            return (a4, a4) + (types.int64,) * 6 + (types.boolean, types.int64)
        if kind == "max_backward":
            return (a4, i4, a4) + (types.int64,) * 8
        if kind == "avg_backward":
            return (a4, a4) + (types.int64,) * 6 + (types.boolean, types.int64)
        return (a4, a4, i4, types.boolean, types.boolean, types.int64)
    return args


def _gemm_args(store, implicit=False):
    def args(dtype):
        from numba import types

        from gpuconv.kernels._common import numba_type

        t = numba_type(dtype)
        c = types.Array(t, 4 if store == "nchw" else 3, "A")
        b = types.Array(t, 4 if implicit else 3, "A")
        return (types.Array(t, 3, "A"), b, c, types.Array(t, 1, "C")) + \
            (types.int64,) * 3 + (types.boolean,) * 2 + (types.int64,) * 3 + (t, types.UniTuple(types.int64, 9))
    return args


def _arrays_then(ranks, ints, alpha=False):
    """Args of a kernel taking strided arrays of `ranks`, then `ints` int64 scalars (and a float)."""
    def args(dtype):
        from numba import types

        from gpuconv.kernels._common import numba_type

        t = numba_type(dtype)
        return tuple(types.Array(t, r, "A") for r in ranks) + (types.int64,) * ints + ((t,) if alpha else ())
    return args


def _data_grad_args(dtype):
    from numba import types

    from gpuconv.kernels._common import numba_type

    t = numba_type(dtype)
    a4 = types.Array(t, 4, "A")
    return (a4, a4, types.Array(t, 1, "A"), a4) + (types.int64,) * 9 + (types.boolean,)


def _wino_output_args(dtype):
    from numba import types

    from gpuconv.kernels._common import numba_type

    t = numba_type(dtype)
    a4 = types.Array(t, 4, "A")
    return (types.Array(t, 3, "A"), a4, types.Array(t, 1, "A"), a4, a4) + (types.int64,) * 6 + \
        (types.boolean, types.int64, t)


def kernel_specs() -> list[KernelSpec]:
    from gpuconv.kernels import backward, direct, epilogue, gemm, im2col, implicit_gemm, pool, winograd
    from gpuconv.kernels._common import ACT_LEAKY_RELU, ACT_RELU

    return [
        KernelSpec("conv2d_general", direct.conv2d_general_kernel, _conv_args(0), True, 0),
        KernelSpec("conv2d_tiled", direct.conv2d_tiled_kernel, _conv_args(3), True, direct.SMEM_BUDGET_BYTES),
        KernelSpec("conv2d_depthwise", direct.conv2d_depthwise_kernel, _conv_args(1), True, 48 * 1024),
        KernelSpec("max_pool2d", pool.max_pool2d_kernel, _pool_args("max"), True, 0),
        KernelSpec("avg_pool2d", pool.avg_pool2d_kernel, _pool_args("avg"), True, 0),
        KernelSpec("global_pool2d", pool.global_pool2d_kernel, _pool_args("global"), True, 0),
        KernelSpec("gemm", functools.partial(gemm.gemm_kernel, store="matrix"), _gemm_args("matrix"), True, 0),
        KernelSpec("gemm_nchw_bias_leaky_acc", functools.partial(
            gemm.gemm_kernel, store="nchw", bias_mode=gemm.BIAS_ROW, act=ACT_LEAKY_RELU, accumulate=True),
            _gemm_args("nchw"), True, 0),
        KernelSpec("implicit_gemm_bias_relu", functools.partial(
            implicit_gemm.implicit_gemm_kernel, bias_mode=gemm.BIAS_ROW, act=ACT_RELU),
            _gemm_args("nchw", implicit=True), True, 0),
        *[spec for m in winograd.TILE_SIZES for spec in (
            KernelSpec(f"winograd{m}_filter", functools.partial(winograd.filter_transform_kernel, m=m),
                       _arrays_then((4, 3), 0), True, 0),
            KernelSpec(f"winograd{m}_input", functools.partial(winograd.input_transform_kernel, m=m),
                       _arrays_then((4, 3), 6), True, 0),
            KernelSpec(f"winograd{m}_output", functools.partial(winograd.output_transform_kernel, m=m),
                       _wino_output_args, True, 0))],
        KernelSpec("im2col", im2col.im2col_kernel, _arrays_then((4, 3), 12), True, 0),
        KernelSpec("col2im", im2col.col2im_kernel, _arrays_then((3, 4), 12), True, 0),
        KernelSpec("fold_padding", im2col.fold_padding_kernel, _arrays_then((4, 4), 3), True, 0),
        KernelSpec("activation", epilogue.activation_kernel, _arrays_then((4,), 1, alpha=True), True, 0),
        KernelSpec("activation_grad", epilogue.activation_grad_kernel, _arrays_then((4, 4, 4), 1, alpha=True), True,
                   0),
        KernelSpec("fill", epilogue.fill_kernel, _arrays_then((1,), 0, alpha=True), True, 0),
        KernelSpec("conv2d_data_grad", backward.data_grad_kernel, _data_grad_args, True, 0),
        KernelSpec("conv2d_bias_grad", backward.bias_grad_kernel, _arrays_then((4, 1), 0), True, 0),
        KernelSpec("max_pool2d_backward", pool.max_pool2d_backward_kernel, _pool_args("max_backward"), True, 0),
        KernelSpec("avg_pool2d_backward", pool.avg_pool2d_backward_kernel, _pool_args("avg_backward"), True, 0),
    ]


def find_ptxas() -> str | None:
    """The newest ptxas we can find: the nvidia-cuda-nvcc wheel's first, then PATH."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for sub in ("cu13/bin/ptxas", "cuda_nvcc/bin/ptxas", "cu12/bin/ptxas"):
                p = os.path.join(root, sub)
                if os.path.exists(p):
                    return p
    except ImportError:
        pass
    return shutil.which("ptxas")


_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?")


@dataclass
class Row:
    name: str
    dtype: str
    arch: str
    registers: int
    smem: int
    stack: int
    spill_stores: int
    spill_loads: int
    dispatched: bool
    dynamic_smem: int


def compile_row(spec: KernelSpec, dtype, arch: str, ptxas: str) -> Row:
    from numba import cuda

    cc = (int(arch[3:-1]), int(arch[-1]))
    ptx, _ = cuda.compile_ptx(spec.factory(dtype).py_func, spec.args(dtype), cc=cc)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas, "-v", f"-arch={arch}", path, "-o", os.path.join(d, "k.cubin")],
                              capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed on {spec.name} ({np.dtype(dtype).name}, {arch}):\n{text.strip()}")
    props, used = _PROPS.search(text), _USED.search(text)
    return Row(spec.name, np.dtype(dtype).name, arch, int(used.group(1)), int(used.group(2) or 0),
               int(props.group(1)), int(props.group(2)), int(props.group(3)), spec.dispatched, spec.dynamic_smem)


def format_row(r: Row) -> str:
    dyn = f" + dynamic <= {r.dynamic_smem} B" if r.dynamic_smem else ""
    return (f"{r.name:<18} {r.dtype:<8} {r.arch:<6} {r.registers:>4} registers  smem {r.smem} B{dyn:<22}  "
            f"stack {r.stack} B  {r.spill_stores} bytes spill stores  {r.spill_loads} bytes spill loads"
            f"{'' if r.dispatched else '  (not dispatched)'}")


def report(archs, dtypes=(np.float32, np.float64)) -> list[Row]:
    ptxas = find_ptxas()
    if ptxas is None:
        raise RuntimeError("no ptxas found: install the cu13 extra (pip install 'gpuconv[cu13]') or the CUDA toolkit")
    return [compile_row(spec, dt, arch, ptxas) for spec in kernel_specs() for dt in dtypes for arch in archs]


def main(archs=("sm_90", "sm_80"), fail_on_spill=False) -> int:
    if _runtime.SIMULATOR:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", GPUCONV_SIMULATOR="0")
        cmd = [sys.executable, "-m", "gpuconv.kernel_report", *archs] + (["--fail-on-spill"] if fail_on_spill else [])
        return subprocess.run(cmd, env=env).returncode
    rows = report(archs)
    print(f"static kernel report (ptxas: {find_ptxas()})")
    for r in rows:
        print(format_row(r))
    spilling = [r for r in rows if r.dispatched and (r.spill_stores or r.spill_loads or r.stack)]
    if spilling:
        print(f"{len(spilling)} dispatched kernel build(s) spill or use local memory:", file=sys.stderr)
        for r in spilling:
            print("  " + format_row(r), file=sys.stderr)
        return 1 if fail_on_spill else 0
    print("no spills and no local memory in dispatched kernels")
    return 0


if __name__ == "__main__":
    argv = sys.argv[1:]
    flag = "--fail-on-spill" in argv
    sys.exit(main([a for a in argv if a != "--fail-on-spill"] or ("sm_90", "sm_80"), fail_on_spill=flag))
