"""gpu_matmul and gpu_linear: the tiled GEMM of gpuconv.kernels.gemm behind NumPy/PyTorch-like calls, and
for float16 / bfloat16 operands (and float32 with TF32 allowed) the tensor-core GEMM of
gpuconv.kernels.gemm_tc, reading the 16-bit data in place as uint16 bits."""

from __future__ import annotations

import functools

import numpy as np

from gpuconv.kernels import _common, epilogue
from gpuconv.kernels import gemm as kgemm
from gpuconv.kernels import gemm_tc as kgemm_tc

from . import _args, _interop, _precision


def _as_batched(d, shape):
    """A (batch, rows, cols) view of a 2-D or 3-D Numba device array (a matrix gets a batch of 1)."""
    if len(shape) == 3:
        return d
    return _interop.strided_view(d, (1,) + tuple(shape), (0,) + tuple(d.strides))


@functools.lru_cache(maxsize=1024)
def _launcher(dtype, tc, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode, act, alpha):
    """(the GEMM's launch closure, the activation left for a separate pass or None); tc: tc_kind's."""
    fused = act in kgemm.FUSED_ACTS
    fused_act = act if fused else _common.ACT_NONE
    if tc:
        gemm = kgemm_tc.launch_gemm_tc(tc, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode, fused_act, alpha)
    else:
        gemm = kgemm.launch_gemm(dtype, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode, fused_act, alpha)
    return gemm, (None if fused else act)


@functools.lru_cache(maxsize=256)
def late_activation(shape, dtype, act, alpha):
    """launch(y4, stream): the activation the GEMM's epilogue does not fuse, in place on the 4-D result
    (16-bit results: as bits, computed in float32 and rounded once)."""
    return epilogue.launch_activation(shape, _precision.kernel_dtype(dtype), act, alpha)


def gpu_matmul(a, b, *, out=None, stream=None, allow_tf32=None):
    """a @ b on our tiled GEMM: (M, K) @ (K, N) -> (M, N), or batched (B, M, K) @ (B, K, N) -> (B, M, N)
    where a batch of 1 is broadcast. Any strides (a transpose is a view, used in place); the same array
    interop, out= and stream= as gpu_conv2d (a device out= must not overlap a or b). Empty extents give
    an empty result (K = 0: zeros), as np.matmul.

    float32 and float64 on the CUDA cores; float16 and bfloat16 on the tensor cores (float32
    accumulation, the result rounded to the inputs' dtype); float32 on TF32 tensor cores when
    allow_tf32 is True (None: gpuconv.allow_tf32(), off by default), as PyTorch with TF32 allowed.
    """
    kinds, dtype = _interop.check_operands([("a", a), ("b", b)], half=True)
    a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    if len(a_shape) not in (2, 3) or len(b_shape) != len(a_shape):
        raise ValueError(f"a and b must be both 2-D or both 3-D (batched), got a {a_shape} and b {b_shape}")
    if a_shape[-1] != b_shape[-2]:
        raise ValueError(f"inner dimensions differ: a {a_shape} @ b {b_shape}")
    batch = 1
    if len(a_shape) == 3:
        if a_shape[0] != b_shape[0] and 1 not in (a_shape[0], b_shape[0]):
            raise ValueError(f"batch sizes differ: a {a_shape} and b {b_shape} (one may be 1)")
        batch = b_shape[0] if a_shape[0] == 1 else a_shape[0]
    M, K, N = a_shape[-2], a_shape[-1], b_shape[-1]
    out_shape = (M, N) if len(a_shape) == 2 else (batch, M, N)
    kind = kinds["a"]
    okind = None if out is None else _interop.check_out(out, out_shape, dtype, kind)
    tc = _precision.tc_kind(dtype, allow_tf32)

    s = _interop.resolve_stream(stream, kind, a)
    if 0 in out_shape:
        return _interop.empty(out, out_shape, dtype, kind, a, s)
    da = _as_batched(_precision.operand(a, kind, dtype, s), a_shape)
    db = _as_batched(_precision.operand(b, kinds["b"], dtype, s), b_shape)
    res, dc = _precision.output(out, okind, out_shape, dtype, kind, a, s, (("a", da), ("b", db)))
    launch, _ = _launcher(dtype, tc, "matrix", M, N, K, batch, kgemm.contiguous_axis_is_last(da),
                          kgemm.contiguous_axis_is_last(db), kgemm.BIAS_NONE, _common.ACT_NONE, 0.0)
    launch(da, db, _as_batched(dc, out_shape), _precision.no_bias(dtype), 0, 0, s)
    return _precision.result(res, dc, dtype, kind, out, s)


def gpu_linear(x, weight, bias=None, activation=None, *, out=None, stream=None, allow_tf32=None):
    """A dense layer, as torch.nn.functional.linear plus a fused activation: x (N, F) or (N, ...) with
    F features after flattening, weight (O, F), bias (O,) -> activation(x @ weight.T + bias), (N, O).

    x must be flattenable in place (C-contiguous trailing axes) when it has more than two dimensions.
    N = 0 gives an empty result; a device out= must not overlap x, weight or bias. dtypes and
    allow_tf32 as gpu_matmul (16-bit: bias and activation applied in float32, the result rounded once).
    """
    kinds, dtype = _interop.check_operands([("x", x), ("weight", weight), ("bias", bias)], half=True)
    x_shape = tuple(x.shape)
    w_shape = _args.shape_of(weight, "weight", 2)
    if len(x_shape) < 2:
        raise ValueError(f"x must be (N, features) or (N, ...), got shape {x_shape}")
    F = int(np.prod(x_shape[1:]))
    O = w_shape[0]
    if w_shape[1] != F:
        raise ValueError(f"weight {w_shape} must have {F} columns, the features of x {x_shape}")
    if bias is not None and _args.shape_of(bias, "bias", 1) != (O,):
        raise ValueError(f"bias must have shape ({O},) for weight {w_shape}, got {tuple(bias.shape)}")
    act, alpha = _args.activation_spec(activation)
    N = x_shape[0]
    kind = kinds["x"]
    okind = None if out is None else _interop.check_out(out, (N, O), dtype, kind)
    tc = _precision.tc_kind(dtype, allow_tf32)

    s = _interop.resolve_stream(stream, kind, x)
    if N == 0 or O == 0:
        return _interop.empty(out, (N, O), dtype, kind, x, s)
    dx = _precision.operand(x, kind, dtype, s)
    if len(x_shape) > 2:
        fs = _interop.merged_strides(x_shape[1:], dx.strides[1:])
        if fs is None:
            raise ValueError(f"x {x_shape} cannot be flattened in place (its trailing axes are not contiguous)")
        dx = _interop.strided_view(dx, (N, F), (dx.strides[0], fs))
    dw = _precision.operand(weight, kinds["weight"], dtype, s)
    db = _precision.no_bias(dtype) if bias is None else _precision.operand(bias, kinds["bias"], dtype, s)
    res, dy = _precision.output(out, okind, (N, O), dtype, kind, x, s,
                            (("x", dx), ("weight", dw), ("bias", None if bias is None else db)))
    A = _as_batched(dx, (N, F))
    B = _interop.strided_view(dw, (1, F, O), (0, dw.strides[1], dw.strides[0]))   # weight.T, in place
    launch, late_act = _launcher(dtype, tc, "matrix", N, O, F, 1, kgemm.contiguous_axis_is_last(A),
                                 kgemm.contiguous_axis_is_last(B), kgemm.BIAS_NONE if bias is None
                                 else kgemm.BIAS_COL, _common.ACT_CODES[act], alpha)
    launch(A, B, _as_batched(dy, (N, O)), db, 0, 0, s)
    if late_act is not None:
        late_activation((N, O, 1, 1), dtype, late_act, alpha)(
            _interop.strided_view(dy, (N, O, 1, 1), tuple(dy.strides) + (0, 0)), s)
    return _precision.result(res, dy, dtype, kind, out, s)
