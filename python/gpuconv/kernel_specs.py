"""What the static kernel report measures: every kernel dispatch uses, with the argument types its
launcher passes, its block size, how its hot loop is chosen, and (memory kernels) the bytes one
hot-loop iteration moves on its standard case.

Standard cases (bytes are per hot-loop iteration, i.e. per element a thread handles, with `b` the
dtype's size; DRAM traffic counts each unique input byte once and every output byte):
- pooling 3×3/s2/p1 on the ResNet stem (16, 64, 112, 112) -> 56×56: an output reads 4 fresh inputs
  and writes 1 (max: indices too, 8 B): max 5b + 8, avg 5b; the backward passes, per input element,
  write 1 and read a quarter output gradient (max: and a quarter index): 1.25b + 2, 1.25b;
- im2col of resnet_3x3_56 (3×3, pad 1): a column element is written once, the input read once for 9
  of them: b·(1 + 1/9); col2im reads 9 column entries per element and writes 1: 10b; fold_padding
  (pad 1 around 56×56) reads and writes one element: 2b;
- the activation pass reads and writes y: 2b; its gradient reads go and z and writes: 3b; the bias
  gradient reads one element: b; fill writes one: b;
- widen / narrow (16-bit <-> float32, b = 2): read one element and write one: 2 + 4 bytes, 3b; im2col's
  uint16 build moves float16 / bfloat16 columns as bits;
- depthwise 3×3 (16, 256, 56, 56): a block's 8×32 outputs read ~8×32 fresh inputs (the halo comes
  from L2) and write 8×32, over 128 threads: 4b per thread;
- Winograd F(m×m, 3×3) transforms, per thread: filter reads 9, writes a² (a = m + 2); input reads
  m² fresh and writes a²; output reads a² and writes m² — F(4×4): 45b, 52b, 52b; F(2×2): 25b, 20b, 20b.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelSpec:
    name: str
    factory: object                # dtype -> numba dispatcher
    args: object                   # dtype -> tuple of numba argument types, as the launcher passes them
    dispatched: bool               # used by dispatch: a spill or a regression here fails CI
    dynamic_smem: int              # most dynamic shared memory a launch asks for, bytes (0: none)
    threads: int                   # threads per block of its launches
    kind: str                      # "compute" (FMA-bound) or "memory" (bandwidth-bound)
    hot: str                       # hot-loop rule (gpuconv.sass): "fma_inner", "fma_outer", "outer", "kernel"
    trips: object = 1.0            # iterations assumed for a loop nested in the hot loop: one count, or one per
                                   # nesting level (1st: directly inside). NVVM unrolls runtime-bounded loops
                                   # by 4 with the remainder in the parent: a 3-wide window never enters the
                                   # unrolled body, so that level gets 0.
    bytes_per_item: float = 0.0    # memory kernels: bytes per hot-loop iteration, in units of the dtype's size
    bytes_fixed: float = 0.0       # ... plus bytes that do not scale with the dtype (int64 indices)
    dtypes: tuple = ("float32", "float64")   # the builds measured
    link: tuple = ()               # CUDA C++ helper sources linked with LTO (tensor cores): factory and args then
                                   # take the dtype's name, and the build goes through nvJitLink

    def bytes_per_iteration(self, itemsize: int) -> float:
        return self.bytes_per_item * itemsize + self.bytes_fixed


def _numba_t(dtype):
    from gpuconv.kernels._common import numba_type

    return numba_type(dtype)


def _conv_args(extra_ints):
    def args(dtype):
        from numba import types

        t = _numba_t(dtype)
        a4 = types.Array(t, 4, "C")
        return (a4, a4, types.Array(t, 1, "C"), a4) + (types.int64,) * 7 + \
            (types.int64, types.boolean, types.int64, t) + (types.int64,) * extra_ints
    return args


def _pool_args(kind):
    def args(dtype):
        from numba import types

        a4 = types.Array(_numba_t(dtype), 4, "C")
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
    """(A, B or x, C, bias, M, N, K, n_tiles, g0, img0, pix0, alpha, conv, ktab), as gemm.launch_gemm passes
    them: operands are strided views (any layout), the bias C-contiguous; ktab is implicit GEMM's int32
    tap table, or (unused) the bias again."""
    def args(dtype):
        from numba import types

        t = _numba_t(dtype)
        c = types.Array(t, 3, "A")                  # "nchw": y viewed as (N, K, P·Q)
        b = types.Array(t, 4 if implicit else 3, "A")
        bias = types.Array(t, 1, "C")
        ktab = types.Array(types.int32, 2, "C") if implicit else bias    # the dense (Ktot, 2) tap table
        return (types.Array(t, 3, "A"), b, c, bias) + (types.int64,) * 7 + (t, types.UniTuple(types.int64, 9), ktab)
    return args


def _arrays_then(ranks, ints, alpha=False):
    """Args of a kernel taking strided arrays of `ranks`, then `ints` int64 scalars (and a float)."""
    def args(dtype):
        from numba import types

        t = _numba_t(dtype)
        return tuple(types.Array(t, r, "A") for r in ranks) + (types.int64,) * ints + ((t,) if alpha else ())
    return args


def _data_grad_args(dtype):
    from numba import types

    t = _numba_t(dtype)
    a4 = types.Array(t, 4, "A")
    return (a4, a4, types.Array(t, 1, "A"), a4) + (types.int64,) * 9 + (types.boolean,)


def _wino_output_args(dtype):
    """(M, y, bias, x, w, img0, TH, TW, pt, pl, mode, has_bias, act, alpha): x and w recompute a tile whose
    result is not finite."""
    from numba import types

    t = _numba_t(dtype)
    a4 = types.Array(t, 4, "A")
    return (types.Array(t, 3, "A"), a4, types.Array(t, 1, "A"), a4, a4) + (types.int64,) * 6 + \
        (types.boolean, types.int64, t)


_TC_KINDS = {"float16": "f16", "bfloat16": "bf16", "float32": "tf32"}


def _tc_args(name):
    """(A, B, C, bias, M, N, K, n_tiles, g0, img0, pix0, alpha): 16-bit operands as uint16 views."""
    from numba import types

    el = types.float32 if name == "float32" else types.uint16
    a3 = types.Array(el, 3, "A")
    return (a3, a3, a3, types.Array(el, 1, "C")) + (types.int64,) * 7 + (types.float32,)


def _tc_factory(name, store="matrix", **options):
    from gpuconv.kernels import gemm_tc

    return gemm_tc.gemm_tc_kernel(_TC_KINDS[str(name)], store, **options)


def _convert_args(src, dst):
    """(x, y, act, alpha) of kernels/convert.py: 4-D strided views, float32 or 16-bit bits."""
    def args(dtype):
        from numba import types

        def el(side):
            return types.float32 if side == "f32" else types.uint16
        return (types.Array(el(src), 4, "A"), types.Array(el(dst), 4, "A"), types.int64, types.float32)
    return args


def _convert_factory(widen):
    def factory(dtype):
        from gpuconv.kernels import convert

        f = _TC_KINDS[np.dtype(dtype).name]
        return convert.convert_kernel(f, "f32") if widen else convert.convert_kernel("f32", f)
    return factory


def kernel_specs() -> list[KernelSpec]:
    from gpuconv.kernels import backward, convert, direct, epilogue, gemm, im2col, implicit_gemm, pool, winograd
    from gpuconv.kernels._common import ACT_LEAKY_RELU, ACT_RELU

    P = functools.partial
    gemm_threads = gemm.THREADS
    bk = 8                                  # the GEMM's K depth per step (both dtypes)
    specs = [
        KernelSpec("conv2d_general", direct.conv2d_general_kernel, _conv_args(0), True, 0, 256, "compute",
                   "fma_inner"),
        KernelSpec("conv2d_tiled", direct.conv2d_tiled_kernel, _conv_args(3), True, direct.SMEM_BUDGET_BYTES,
                   direct.NTHREADS, "compute", "fma_inner"),
        KernelSpec("conv2d_depthwise", direct.conv2d_depthwise_kernel, _conv_args(1), True, 48 * 1024,
                   direct.NTHREADS, "memory", "kernel", (3, 3, 0), 4),
        KernelSpec("max_pool2d", pool.max_pool2d_kernel, _pool_args("max"), True, 0, pool.POOL_THREADS, "memory",
                   "outer", (3, 0), 5, 8),
        KernelSpec("avg_pool2d", pool.avg_pool2d_kernel, _pool_args("avg"), True, 0, pool.POOL_THREADS, "memory",
                   "outer", (3, 0), 5),
        KernelSpec("global_pool2d", pool.global_pool2d_kernel, _pool_args("global"), True, 0, pool.GLOBAL_THREADS,
                   "memory", "inner", 1, 2),     # the element loop; NVVM unrolls it by 2 (2 loads per iteration)
        KernelSpec("gemm", P(gemm.gemm_kernel, store="matrix"), _gemm_args("matrix"), True, 0, gemm_threads,
                   "compute", "fma_outer", bk),
        KernelSpec("gemm_nchw_bias_leaky_acc", P(gemm.gemm_kernel, store="nchw", bias_mode=gemm.BIAS_ROW,
                                                 act=ACT_LEAKY_RELU, accumulate=True),
                   _gemm_args("nchw"), True, 0, gemm_threads, "compute", "fma_outer", bk),
        KernelSpec("implicit_gemm_bias_relu", P(implicit_gemm.implicit_gemm_kernel, bias_mode=gemm.BIAS_ROW,
                                                act=ACT_RELU),
                   _gemm_args("nchw", implicit=True), True, 0, gemm_threads, "compute", "fma_outer", bk),
    ]
    for m in winograd.TILE_SIZES:
        a2 = (m + 2) ** 2
        specs += [
            # grid-striding: one filter / patch / tile per iteration of the outer loop; loops inside it (the
            # output transform's cold recomputation of a non-finite tile among them) count once
            KernelSpec(f"winograd{m}_filter", P(winograd.filter_transform_kernel, m=m), _arrays_then((4, 3), 0),
                       True, 0, winograd.THREADS, "memory", "outer", 1, 9 + a2),
            KernelSpec(f"winograd{m}_input", P(winograd.input_transform_kernel, m=m), _arrays_then((4, 3), 6),
                       True, 0, winograd.TRANSFORM_THREADS, "memory", "outer", 1, m * m + a2),
            KernelSpec(f"winograd{m}_output", P(winograd.output_transform_kernel, m=m), _wino_output_args,
                       True, 0, winograd.TRANSFORM_THREADS, "memory", "outer", 1, a2 + m * m),
        ]
    from gpuconv.kernels import gemm_tc, mma

    # tensor cores: m16n8k16 for float16 / bfloat16, m16n8k8 TF32 for float32 (on request)
    specs += [
        KernelSpec("gemm_tc", _tc_factory, _tc_args, True, 0, gemm_tc.THREADS, "compute", "fma_outer",
                   dtypes=("float16", "bfloat16"), link=(mma.SOURCE,)),
        KernelSpec("gemm_tc_tf32", _tc_factory, _tc_args, True, 0, gemm_tc.THREADS, "compute", "fma_outer",
                   dtypes=("float32",), link=(mma.SOURCE,)),
        # im2col's build: the NCHW store with the bias and relu fused (16-bit loads of the bias in the epilogue)
        KernelSpec("gemm_tc_nchw_bias_relu", P(_tc_factory, store="nchw", bias_mode=gemm.BIAS_ROW, act=ACT_RELU),
                   _tc_args, True, 0, gemm_tc.THREADS, "compute", "fma_outer", dtypes=("float16", "bfloat16"),
                   link=(mma.SOURCE,)),
    ]
    specs += [
        KernelSpec("im2col", im2col.im2col_kernel, _arrays_then((4, 3), 12), True, 0, im2col.THREADS, "memory",
                   "outer", 1, 1 + 1 / 9, dtypes=("float32", "float64", "uint16")),
        # float16 / bfloat16 operands of the ops without a 16-bit kernel: widened in, results narrowed out
        KernelSpec("widen", _convert_factory(True), _convert_args("f16", "f32"), True, 0, convert.THREADS, "memory",
                   "outer", 1, 3, dtypes=("float16", "bfloat16")),
        KernelSpec("narrow", _convert_factory(False), _convert_args("f32", "f16"), True, 0, convert.THREADS,
                   "memory", "outer", 1, 3, dtypes=("float16", "bfloat16")),
        KernelSpec("col2im", im2col.col2im_kernel, _arrays_then((3, 4), 12), True, 0, im2col.THREADS, "memory",
                   "outer", (3, 0), 10),
        KernelSpec("fold_padding", im2col.fold_padding_kernel, _arrays_then((4, 4), 3), True, 0, im2col.THREADS,
                   "memory", "outer", (58, 2), 2),  # every padded row tested; 2 band rows walk a padded row
        KernelSpec("activation", epilogue.activation_kernel, _arrays_then((4,), 1, alpha=True), True, 0,
                   epilogue.THREADS, "memory", "outer", 1, 2),
        KernelSpec("activation_grad", epilogue.activation_grad_kernel, _arrays_then((4, 4, 4), 1, alpha=True),
                   True, 0, epilogue.THREADS, "memory", "outer", 1, 3),
        KernelSpec("fill", epilogue.fill_kernel, _arrays_then((1,), 0, alpha=True), True, 0, epilogue.THREADS,
                   "memory", "outer", 1, 1),
        KernelSpec("conv2d_data_grad", backward.data_grad_kernel, _data_grad_args, True, 0, backward.THREADS,
                   "compute", "fma_inner"),
        KernelSpec("conv2d_bias_grad", backward.bias_grad_kernel, _arrays_then((4, 1), 0), True, 0,
                   backward.BIAS_THREADS, "memory", "outer", 1, 1),
        KernelSpec("max_pool2d_backward", pool.max_pool2d_backward_kernel, _pool_args("max_backward"), True, 0,
                   pool.POOL_THREADS, "memory", "outer", (2, 0), 1.25, 2),
        KernelSpec("avg_pool2d_backward", pool.avg_pool2d_backward_kernel, _pool_args("avg_backward"), True, 0,
                   pool.POOL_THREADS, "memory", "outer", (2, 0), 1.25),
    ]
    return specs
