"""What the static kernel report measures: every kernel dispatch uses, with the argument types its
launcher passes, its block size, how its hot loop is chosen, and (memory kernels) the bytes one
hot-loop iteration moves on its standard case.

Standard cases (bytes are per hot-loop iteration, i.e. per thread for the "kernel" rule, with `b` the
dtype's size; DRAM traffic counts each unique input byte once and every output byte):
- pooling 3×3/s2/p1 on the ResNet stem (16, 64, 112, 112) -> 56×56, one thread per output: an output
  reads 4 fresh inputs and writes 1 (max: indices too, 8 B): max 5b + 8, avg 5b (count_include_pad);
  the backward passes, a thread per two 2×2 stride cells (8 inputs): write 8 and read 2 output
  gradients (max: and 2 indices): 10b + 16, 10b;
- global pooling: a thread's slice loop, which NVVM unrolls by 4: 4 elements read, 4b;
- im2col of resnet_3x3_56 (3×3, pad 1), 8 column entries per thread: each written once, the input read
  once for 9 of them: 8·b·(1 + 1/9); col2im (3×3, stride 1) reads 9 column entries per element and
  writes 1: 10b; fold_padding (pad 1 around 56×56) reads and writes one element: 2b; its edge pass,
  per element of the rows and columns padding reads (reflect): at least 2b;
- the activation pass, 4 elements per thread, reads and writes y: 8b (ELU, the costliest activation in
  float32; every activation's ceiling is the same on H200); its gradient reads go and z and writes:
  12b (sigmoid, likewise); the general (strided) variants, one element per thread: 2b and 3b; the bias
  gradient reads one element per iteration: b; fill writes one: b;
- widen / narrow (16-bit <-> float32, b = 2), 4 elements per thread as the activation pass: read one
  element and write one, 2 + 4 bytes: 12b (general variants, one element per thread: 3b); im2col's
  uint16 build moves float16 / bfloat16 columns as bits;
- depthwise 3×3 (16, 256, 56, 56): a block's 16×32 outputs read ~16×32 fresh inputs (the halo comes
  from L2) and write 16×32, over 128 threads: 8b per thread;
- the depthwise kernel and the activation passes are also measured in float16 and bfloat16: their
  16-bit builds (uint16 loads and stores, float32 arithmetic), b = 2;
- Winograd F(m×m, 3×3) transforms, per thread: filter reads 9, writes a² (a = m + 2); input reads
  m² fresh and writes a²; output reads a² and writes m² — F(4×4): 45b, 52b, 52b; F(2×2): 25b, 20b, 20b.
  Their fix-up pass (non-finite tiles only) is measured as a compute kernel, on its direct recomputation.
  The 16-bit builds (`winograd{m}_{part}_f16`, `_bf16`: one dtype each, as their bytes differ) move the
  data in 2 bytes and the float32 workspace in 4 (b = 2): filter 9 + 2a², input m² + 2a², output
  2a² + m² — F(4×4): 81b, 88b, 88b; F(2×2): 41b, 36b, 36b.

The pooling kernels are also measured in their float16 and bfloat16 builds (uint16 bits widened to
float32 where loaded, b = 2; bfloat16 widens by a shift, float16 by a conversion, so they compile
differently).

Kernels with a dense and a general variant (C-contiguous arrays with int32 offsets inside a plane,
against any strides and sizes) are measured in both; the dense one is what runs in the common case.
Specialisations compiled per call (pooling windows, divisor rules, padding modes, activations) are
measured on the standard case's: 3×3 windows, zeros padding, relu for the direct kernels and the
Winograd output transform. The
per-element pooling backward (large strides or windows) is measured on the same geometry, at 1.25b + 2
and 1.25b per input element, its loops counted twice each.
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


_HALF_KINDS = {"float16": "f16", "bfloat16": "bf16"}
ALL_FLOATS = ("float32", "float64", "float16", "bfloat16")     # the builds of kernels with a 16-bit build


def _stored(dtype):
    """(element type of the arrays, type of the float scalars) of a build: 16-bit data as uint16 bits
    with float32 arithmetic (kernels/_half.py), else the dtype's own type for both."""
    from numba import types

    if np.dtype(dtype).name in _HALF_KINDS:
        return types.uint16, types.float32
    t = _numba_t(dtype)
    return t, t


def _half_aware(factory):
    """A factory that builds float16 / bfloat16 as the kernel's 16-bit storage kind ("f16", "bf16")."""
    def build(dtype):
        return factory(_HALF_KINDS.get(np.dtype(dtype).name, dtype))
    return build


def _conv_args(kind, layout="C"):
    """Args of the direct kernels as their launchers pass them (C-contiguous arrays, the common case)."""
    def args(dtype):
        from numba import types

        e, t = _stored(dtype)
        a4 = types.Array(e, 4, layout)
        head = (a4, a4, types.Array(e, 1, "C"), a4) + (types.int64,) * 7 + (types.boolean, t)
        if kind == "general":
            return head + (types.UniTuple(types.uint32, 2),) + _plane_tail()
        if kind == "tiled":
            return head + (types.int64,) * 4 + (types.UniTuple(types.uint32, 8),)
        return head + (types.int64, types.UniTuple(types.uint32, 4), types.int64)
    return args


def _plane_tail():
    """The trailing plane-grid arguments (gpuconv.kernels._common): magic numbers, column blocks, offsets."""
    from numba import types

    return (types.uint32, types.uint32) + (types.int64,) * 4


def _pool_args(kind, layout="C"):
    def args(dtype):
        from numba import types

        a4 = types.Array(_stored(dtype)[0], 4, layout)
        i4 = types.Array(types.int64, 4, layout)
        if kind == "max":
            return (a4, a4, i4) + (types.int64,) * 8 + (types.boolean,) + _plane_tail()
        if kind == "avg":
            return (a4, a4) + (types.int64,) * 7 + _plane_tail()
        if kind == "max_backward":
            return (a4, i4, a4) + (types.int64,) * 5 + _plane_tail()
        if kind == "avg_backward":
            return (a4, a4, a4) + (types.int64,) * 5 + _plane_tail()
        if kind in ("max_backward_element", "avg_backward_element"):
            idx = i4 if kind.startswith("max") else a4
            return (a4, idx, a4) + (types.int64,) * 9 + \
                (types.UniTuple(types.uint32, 8), types.int64, types.int64) + _plane_tail()
        return (a4, a4, i4, types.boolean, types.int64, types.int64, types.uint32, types.uint32, types.int64,
                types.int64)
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


def _arrays_then(ranks, ints, alpha=False, layout="A", plane_tail=False):
    """Args of a kernel taking arrays of `ranks` (strided, or `layout`), then `ints` int64 scalars (and a
    float), then (plane_tail) the plane-grid arguments."""
    def args(dtype):
        from numba import types

        t = _numba_t(dtype)
        return tuple(types.Array(t, r, layout) for r in ranks) + (types.int64,) * ints + ((t,) if alpha else ()) + \
            (_plane_tail() if plane_tail else ())
    return args


def _im2col_args(layout):
    def args(dtype):
        from numba import types

        t = _numba_t(dtype)
        return (types.Array(t, 4, layout), types.Array(t, 3, "C")) + (types.int64,) * 12 + \
            (types.UniTuple(types.uint32, 6), types.int64, types.int64)
    return args


def _col2im_args(dtype):
    from numba import types

    t = _numba_t(dtype)
    return (types.Array(t, 3, "C"), types.Array(t, 4, "C")) + (types.int64,) * 12 + \
        (types.UniTuple(types.uint32, 4),) + _plane_tail()


def _elementwise_args(arrays, layout="C"):
    def args(dtype):
        from numba import types

        e, t = _stored(dtype)
        return (types.Array(e, 4, layout),) * arrays + (t,) + _plane_tail()
    return args


def _bias_grad_args(layout):
    def args(dtype):
        from numba import types

        e, _ = _stored(dtype)
        return (types.Array(e, 4, layout), types.Array(e, 1, "C"), types.UniTuple(types.uint32, 4)) + \
            (types.int64,) * 4
    return args


def _data_grad_args(dtype):
    from numba import types

    t = _numba_t(dtype)
    a4 = types.Array(t, 4, "C")
    return (a4, a4, types.Array(t, 1, "C"), a4) + (types.int64,) * 9 + (types.boolean,) + (types.int64,) * 2 + \
        (types.UniTuple(types.uint32, 10),) + _plane_tail()


def _wino_args(kind, layout="C"):
    """Args of the Winograd transforms as their launchers pass them: user arrays (w, x, y, bias) of
    `layout` (strided in general; weights and bias always), workspace arrays (U, V, M, flag) C-contiguous;
    16-bit builds: user arrays of uint16 bits, the workspace and alpha float32."""
    def args(dtype):
        from numba import types

        e, t = _stored(dtype)                       # user arrays' elements; workspace and scalars
        a4, ws3, flag = types.Array(e, 4, layout), types.Array(t, 3, "C"), types.Array(t, 1, "C")
        tail = (types.UniTuple(types.uint32, 4), types.int64)
        if kind == "filter":
            return (types.Array(e, 4, "A"), ws3, types.int64)
        if kind == "input":
            return (a4, ws3, flag) + (types.int64,) * 5 + tail
        # output: (M, y, bias, x, w, flag, img0, pt, pl, mode, tiles, TW, has_bias, alpha, mags, k0)
        return (ws3, a4, types.Array(e, 1, "A"), types.Array(e, 4, "A"), types.Array(e, 4, "A"), flag) + \
            (types.int64,) * 6 + (types.boolean, t) + tail
    return args


_TC_KINDS = {"float16": "f16", "bfloat16": "bf16", "float32": "tf32"}


def _tc_args(name, out_f32=False, implicit=False):
    """(A, B or x, C, bias, M, N, K, n_tiles, g0, img0, pix0, alpha, conv, ktab): 16-bit operands as uint16
    views; C float32 with out_f32; ktab implicit GEMM's dense int32 tap table, or (unused) the bias."""
    from numba import types

    el = types.float32 if name == "float32" else types.uint16
    a3 = types.Array(el, 3, "A")
    c3 = types.Array(types.float32, 3, "A") if out_f32 else a3
    bias = types.Array(el, 1, "C")
    b = types.Array(el, 4, "A") if implicit else a3
    ktab = types.Array(types.int32, 2, "C") if implicit else bias
    return (a3, b, c3, bias) + (types.int64,) * 7 + (types.float32, types.UniTuple(types.int64, 9), ktab)


def _tc_factory(name, store="matrix", **options):
    from gpuconv.kernels import gemm_tc

    return gemm_tc.gemm_tc_kernel(_TC_KINDS[str(name)], store, **options)


def _tc_implicit_factory(name, **options):
    """implicit GEMM's tensor-core build: NCHW store, B gathered through the dense tap table."""
    from gpuconv.kernels import gemm_tc, implicit_gemm
    from gpuconv.kernels._common import PAD_ZEROS

    kind = _TC_KINDS[str(name)]
    return gemm_tc.gemm_tc_kernel(kind, "nchw", b_n_contig=False, vec_b=False,
                                  b_gather=implicit_gemm.tc_gather_loader(kind, PAD_ZEROS, True), **options)


def _convert_args(src, dst, layout="C"):
    """(x, y, plane tail) of kernels/convert.py: 4-D views, float32 or 16-bit bits."""
    def args(dtype):
        from numba import types

        def el(side):
            return types.float32 if side == "f32" else types.uint16
        return (types.Array(el(src), 4, layout), types.Array(el(dst), 4, layout)) + _plane_tail()
    return args


def _convert_factory(widen, dense=True):
    def factory(dtype):
        from gpuconv.kernels import convert

        f = _TC_KINDS[np.dtype(dtype).name]
        return convert.convert_kernel(f, "f32", dense=dense) if widen else convert.convert_kernel("f32", f, dense=dense)
    return factory


def kernel_specs() -> list[KernelSpec]:
    from gpuconv.kernels import backward, convert, direct, epilogue, gemm, im2col, implicit_gemm, pool, winograd
    from gpuconv.kernels._common import ACT_ELU, ACT_LEAKY_RELU, ACT_NONE, ACT_RELU, ACT_SIGMOID, PAD_REFLECT, PAD_ZEROS

    P = functools.partial
    H = _half_aware                         # float16 / bfloat16 builds read uint16 bits
    gemm_threads = gemm.THREADS
    bk = 8                                  # the GEMM's K depth per step (both dtypes)
    specs = [
        KernelSpec("conv2d_general", P(direct.conv2d_general_kernel, pad_mode=PAD_ZEROS, act=ACT_RELU),
                   _conv_args("general"), True, 0, 256, "compute", "fma_inner"),
        KernelSpec("conv2d_tiled", P(direct.conv2d_tiled_kernel, pad_mode=PAD_ZEROS, act=ACT_RELU),
                   _conv_args("tiled"), True, direct.SMEM_BUDGET_BYTES, direct.NTHREADS, "compute", "fma_inner"),
        # float16 / bfloat16: the 16-bit build (uint16 loads and stores, float32 staging and arithmetic)
        KernelSpec("conv2d_depthwise", _half_aware(P(direct.conv2d_depthwise_kernel, pad_mode=PAD_ZEROS, act=ACT_RELU,
                                                     window=(3, 3, 1, 1, 1, 1))),
                   _conv_args("depthwise"), True, 48 * 1024, direct.NTHREADS, "memory", "kernel", 1,
                   2 * direct.DW_ROWS * direct.PIX_X, dtypes=ALL_FLOATS),
        KernelSpec("conv2d_depthwise_general",
                   _half_aware(P(direct.conv2d_depthwise_kernel, pad_mode=PAD_ZEROS, act=ACT_RELU,
                                 window=(3, 3, 1, 1, 1, 1), dense=False)),
                   _conv_args("depthwise", "A"), True, 48 * 1024, direct.NTHREADS, "memory", "kernel", 1,
                   2 * direct.DW_ROWS * direct.PIX_X, dtypes=ALL_FLOATS),
        # windows past MAX_UNROLLED_WINDOW: loops (staging: rows, then columns), counted 3 and 1 times
        KernelSpec("conv2d_depthwise_large",
                   _half_aware(P(direct.conv2d_depthwise_kernel, pad_mode=PAD_ZEROS, act=ACT_RELU)),
                   _conv_args("depthwise"), True, 48 * 1024, direct.NTHREADS, "memory", "kernel", (3, 1),
                   2 * direct.DW_ROWS * direct.PIX_X, dtypes=ALL_FLOATS),
        KernelSpec("max_pool2d", H(P(pool.max_pool2d_kernel, window=(3, 3, 1, 1))), _pool_args("max"), True, 0,
                   pool.POOL_THREADS, "memory", "kernel", 1, 5, 8, dtypes=ALL_FLOATS),
        KernelSpec("avg_pool2d", H(P(pool.avg_pool2d_kernel, window=(3, 3, 1, 1))), _pool_args("avg"), True, 0,
                   pool.POOL_THREADS, "memory", "kernel", 1, 5, dtypes=ALL_FLOATS),
        KernelSpec("max_pool2d_general", H(P(pool.max_pool2d_kernel, dense=False)), _pool_args("max", "A"), True, 0,
                   pool.POOL_THREADS, "memory", "kernel", (3, 0), 5, 8, dtypes=ALL_FLOATS),
        KernelSpec("avg_pool2d_general", H(P(pool.avg_pool2d_kernel, dense=False)), _pool_args("avg", "A"), True, 0,
                   pool.POOL_THREADS, "memory", "kernel", (3, 0), 5, dtypes=ALL_FLOATS),
        KernelSpec("global_max_pool2d", H(P(pool.global_pool2d_kernel, is_max=True)), _pool_args("global"), True,
                   0, pool.GLOBAL_THREADS, "memory", "outer", 1, 4, dtypes=ALL_FLOATS),
        KernelSpec("global_avg_pool2d", H(P(pool.global_pool2d_kernel, is_max=False)), _pool_args("global"), True,
                   0, pool.GLOBAL_THREADS, "memory", "outer", 1, 4, dtypes=ALL_FLOATS),
        KernelSpec("global_max_pool2d_general", H(P(pool.global_pool2d_kernel, is_max=True, dense=False)),
                   _pool_args("global", "A"), True, 0, pool.GLOBAL_THREADS, "memory", "outer", 1, 4, dtypes=ALL_FLOATS),
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
        wi, wo = winograd.input_transform_kernel, winograd.output_transform_kernel
        # (name, factory, args, kind, hot rule, bytes per thread: 16-bit data's, then the workspace's elements)
        transforms = [
            # a thread per filter, patch or tile, its loops unrolled: the whole kernel is one iteration
            ("filter", P(winograd.filter_transform_kernel, m=m), _wino_args("filter"), "memory", "kernel", 9, a2),
            ("input", P(wi, m=m), _wino_args("input"), "memory", "kernel", m * m, a2),
            ("input_general", P(wi, m=m, dense=False), _wino_args("input", "A"), "memory", "kernel", m * m, a2),
            ("output", P(wo, m=m, act=ACT_RELU), _wino_args("output"), "memory", "kernel", m * m, a2),
            ("output_general", P(wo, m=m, act=ACT_RELU, dense=False), _wino_args("output", "A"), "memory", "kernel",
             m * m, a2),
            # the fix-up pass: nothing but a flag read unless a tile was not finite; then the direct
            # recomputation's inner loop (a cold path, measured as the general direct kernel is)
            ("fixup", P(wo, m=m, act=ACT_RELU, dense=False, fixup=True), _wino_args("output", "A"), "compute",
             "fma_inner", 0, 0),
        ]
        for part, factory, args, kind, hot, data, work in transforms:
            threads = winograd.THREADS if part == "filter" else winograd.TRANSFORM_THREADS
            specs.append(KernelSpec(f"winograd{m}_{part}", factory, args, True, 0, threads, kind, hot, 1, data + work))
            # the 16-bit builds: 2-byte data, float32 workspace (4 bytes: 2 units of b = 2)
            for name, dt in (("f16", "float16"), ("bf16", "bfloat16")):
                specs.append(KernelSpec(f"winograd{m}_{part}_{name}", H(factory), args, True, 0, threads, kind, hot, 1,
                                        data + 2 * work, dtypes=(dt,)))
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
        # the weight gradient's build: B (the columns) contiguous along K, float32 C summed over images
        KernelSpec("gemm_tc_wgrad_f32acc", P(_tc_factory, b_n_contig=False, accumulate=True, out_f32=True),
                   P(_tc_args, out_f32=True), True, 0, gemm_tc.THREADS, "compute", "fma_outer",
                   dtypes=("float16", "bfloat16"), link=(mma.SOURCE,)),
        # the input gradient's: float32 columns for col2im (A: a dense copy of the weight transposed)
        KernelSpec("gemm_tc_dgrad_f32", P(_tc_factory, out_f32=True), P(_tc_args, out_f32=True),
                   True, 0, gemm_tc.THREADS, "compute", "fma_outer", dtypes=("float16", "bfloat16"),
                   link=(mma.SOURCE,)),
        # implicit GEMM's: B gathered from a dense NCHW x (zeros padding) through the tap table
        KernelSpec("implicit_gemm_tc_bias_relu", P(_tc_implicit_factory, bias_mode=gemm.BIAS_ROW, act=ACT_RELU),
                   P(_tc_args, implicit=True), True, 0, gemm_tc.THREADS, "compute", "fma_outer",
                   dtypes=("float16", "bfloat16"), link=(mma.SOURCE,)),
    ]
    specs += [
        KernelSpec("im2col", im2col.im2col_kernel, _im2col_args("C"), True, 0, im2col.THREADS, "memory", "kernel", 1,
                   (1 + 1 / 9) * im2col.PER_THREAD, dtypes=("float32", "float64", "uint16")),
        KernelSpec("im2col_general", P(im2col.im2col_kernel, dense=False), _im2col_args("A"), True, 0,
                   im2col.THREADS, "memory", "kernel", 1, (1 + 1 / 9) * im2col.PER_THREAD,
                   dtypes=("float32", "float64", "uint16")),
        # float16 / bfloat16 operands of the ops without a 16-bit kernel: widened in, results narrowed out
        KernelSpec("widen", _convert_factory(True), _convert_args("f16", "f32"), True, 0, convert.THREADS, "memory",
                   "kernel", 1, 3 * convert.PER_THREAD, dtypes=("float16", "bfloat16")),
        KernelSpec("narrow", _convert_factory(False), _convert_args("f32", "f16"), True, 0, convert.THREADS,
                   "memory", "kernel", 1, 3 * convert.PER_THREAD, dtypes=("float16", "bfloat16")),
        KernelSpec("widen_general", _convert_factory(True, False), _convert_args("f16", "f32", "A"), True, 0,
                   convert.THREADS, "memory", "kernel", 1, 3, dtypes=("float16", "bfloat16")),
        KernelSpec("narrow_general", _convert_factory(False, False), _convert_args("f32", "f16", "A"), True, 0,
                   convert.THREADS, "memory", "kernel", 1, 3, dtypes=("float16", "bfloat16")),
        KernelSpec("col2im", P(im2col.col2im_kernel, window=(3, 3, 1, 1, 1, 1)), _col2im_args, True, 0,
                   im2col.THREADS, "memory", "kernel", 1, 10),
        KernelSpec("fold_padding", im2col.fold_padding_kernel, _arrays_then((4, 4), 2, layout="C", plane_tail=True),
                   True, 0, im2col.THREADS, "memory", "kernel", 1, 2),
        KernelSpec("fold_padding_edges", P(im2col.fold_padding_edges_kernel, mode=PAD_REFLECT),
                   _arrays_then((4, 4), 11, layout="C", plane_tail=True), True, 0, im2col.THREADS, "memory",
                   "kernel", 1, 2),
        # float16 / bfloat16: the 16-bit builds (the GEMM path's late activation on a 16-bit result)
        KernelSpec("activation", _half_aware(P(epilogue.activation_kernel, act=ACT_ELU)), _elementwise_args(1), True,
                   0, epilogue.THREADS, "memory", "kernel", 1, 2 * epilogue.PER_THREAD, dtypes=ALL_FLOATS),
        KernelSpec("activation_grad", _half_aware(P(epilogue.activation_grad_kernel, act=ACT_SIGMOID)),
                   _elementwise_args(3), True, 0, epilogue.THREADS, "memory", "kernel", 1, 3 * epilogue.PER_THREAD,
                   dtypes=ALL_FLOATS),
        KernelSpec("activation_general", _half_aware(P(epilogue.activation_kernel, act=ACT_ELU, dense=False)),
                   _elementwise_args(1, "A"), True, 0, epilogue.THREADS, "memory", "kernel", 1, 2, dtypes=ALL_FLOATS),
        KernelSpec("activation_grad_general",
                   _half_aware(P(epilogue.activation_grad_kernel, act=ACT_NONE, dense=False)),
                   _elementwise_args(3, "A"), True, 0, epilogue.THREADS, "memory", "kernel", 1, 3, dtypes=ALL_FLOATS),
        KernelSpec("fill", epilogue.fill_kernel, _arrays_then((1,), 0, alpha=True), True, 0, epilogue.THREADS,
                   "memory", "outer", 1, 1),
        KernelSpec("conv2d_data_grad", backward.data_grad_kernel, _data_grad_args, True,
                   backward.WEIGHT_BUDGET_BYTES, backward.THREADS, "compute", "fma_inner"),
        KernelSpec("conv2d_bias_grad", H(backward.bias_grad_kernel), _bias_grad_args("C"), True, 0,
                   backward.BIAS_THREADS, "memory", "outer", 1, 1, dtypes=ALL_FLOATS),
        KernelSpec("conv2d_bias_grad_general", H(P(backward.bias_grad_kernel, dense=False)), _bias_grad_args("A"),
                   True, 0, backward.BIAS_THREADS, "memory", "outer", 1, 1, dtypes=ALL_FLOATS),
        KernelSpec("max_pool2d_backward", H(P(pool.max_pool2d_backward_kernel, geometry=(3, 3, 2, 2, 1, 1))),
                   _pool_args("max_backward"), True, 0, pool.POOL_THREADS, "memory", "kernel", 1,
                   5 * pool.CELLS_PER_THREAD, 8 * pool.CELLS_PER_THREAD, dtypes=ALL_FLOATS),
        KernelSpec("avg_pool2d_backward", H(P(pool.avg_pool2d_backward_kernel, geometry=(3, 3, 2, 2, 1, 1))),
                   _pool_args("avg_backward"), True, 0, pool.POOL_THREADS, "memory", "kernel", 1,
                   5 * pool.CELLS_PER_THREAD, dtypes=ALL_FLOATS),
        KernelSpec("max_pool2d_backward_element", H(pool.max_pool2d_backward_kernel),
                   _pool_args("max_backward_element", "A"), True, 0, pool.POOL_THREADS, "memory", "kernel", 2,
                   1.25, 2, dtypes=ALL_FLOATS),
        KernelSpec("avg_pool2d_backward_element", H(pool.avg_pool2d_backward_kernel),
                   _pool_args("avg_backward_element", "A"), True, 0, pool.POOL_THREADS, "memory", "kernel", 2,
                   1.25, dtypes=ALL_FLOATS),
    ]
    return specs
