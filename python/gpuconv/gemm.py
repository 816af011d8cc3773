"""gpu_matmul and gpu_linear: the tiled GEMM of gpuconv.kernels.gemm behind NumPy/PyTorch-like calls."""

from __future__ import annotations

import functools

import numpy as np

from gpuconv.kernels import _common, epilogue
from gpuconv.kernels import gemm as kgemm

from . import _args, _interop
from .conv import _dummy_bias


def _as_batched(d, shape):
    """A (batch, rows, cols) view of a 2-D or 3-D Numba device array (a matrix gets a batch of 1)."""
    if len(shape) == 3:
        return d
    return _interop.strided_view(d, (1,) + tuple(shape), (0,) + tuple(d.strides))


@functools.lru_cache(maxsize=1024)
def _launcher(dtype, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode, act, alpha):
    fused = act in kgemm.FUSED_ACTS
    gemm = kgemm.launch_gemm(dtype, store, M, N, K, batch, a_k_contig, b_n_contig, bias_mode,
                             act if fused else _common.ACT_NONE, alpha)
    return gemm, (None if fused else act)


def _apply_activation(d_y4, dtype, act, alpha, stream):
    epilogue.launch_activation(d_y4.shape, dtype, act, alpha)(d_y4, stream)


def gpu_matmul(a, b, *, out=None, stream=None):
    """a @ b on our tiled GEMM: (M, K) @ (K, N) -> (M, N), or batched (B, M, K) @ (B, K, N) -> (B, M, N)
    where a batch of 1 is broadcast. Any strides (a transpose is a view, used in place); float32 or
    float64; the same array interop, out= and stream= as gpu_conv2d (a device out= must not overlap a
    or b). Empty extents give an empty result (K = 0: zeros), as np.matmul."""
    kinds, dtype = _interop.check_operands([("a", a), ("b", b)])
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

    s = _interop.resolve_stream(stream, kind, a)
    if 0 in out_shape:
        return _interop.empty(out, out_shape, dtype, kind, a, s)
    da = _as_batched(_interop.device_view(a, kind, s), a_shape)
    db = _as_batched(_interop.device_view(b, kinds["b"], s), b_shape)
    res, dc = _interop.output(out, okind, out_shape, dtype, kind, a, s, (("a", da), ("b", db)))
    launch, _ = _launcher(dtype, "matrix", M, N, K, batch, kgemm.contiguous_axis_is_last(da),
                          kgemm.contiguous_axis_is_last(db), kgemm.BIAS_NONE, _common.ACT_NONE, 0.0)
    launch(da, db, _as_batched(dc, out_shape), _dummy_bias(dtype), 0, 0, s)
    return _interop.result(res, dc, kind, out, s)


def gpu_linear(x, weight, bias=None, activation=None, *, out=None, stream=None):
    """A dense layer, as torch.nn.functional.linear plus a fused activation: x (N, F) or (N, ...) with
    F features after flattening, weight (O, F), bias (O,) -> activation(x @ weight.T + bias), (N, O).

    x must be flattenable in place (C-contiguous trailing axes) when it has more than two dimensions.
    N = 0 gives an empty result; a device out= must not overlap x, weight or bias.
    """
    kinds, dtype = _interop.check_operands([("x", x), ("weight", weight), ("bias", bias)])
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

    s = _interop.resolve_stream(stream, kind, x)
    if N == 0 or O == 0:
        return _interop.empty(out, (N, O), dtype, kind, x, s)
    dx = _interop.device_view(x, kind, s)
    if len(x_shape) > 2:
        fs = _interop.merged_strides(x_shape[1:], dx.strides[1:])
        if fs is None:
            raise ValueError(f"x {x_shape} cannot be flattened in place (its trailing axes are not contiguous)")
        dx = _interop.strided_view(dx, (N, F), (dx.strides[0], fs))
    dw = _interop.device_view(weight, kinds["weight"], s)
    db = _dummy_bias(dtype) if bias is None else _interop.device_view(bias, kinds["bias"], s)
    res, dy = _interop.output(out, okind, (N, O), dtype, kind, x, s,
                              (("x", dx), ("weight", dw), ("bias", None if bias is None else db)))
    A = _as_batched(dx, (N, F))
    B = _interop.strided_view(dw, (1, F, O), (0, dw.strides[1], dw.strides[0]))   # weight.T, in place
    launch, late_act = _launcher(dtype, "matrix", N, O, F, 1, kgemm.contiguous_axis_is_last(A),
                                 kgemm.contiguous_axis_is_last(B), kgemm.BIAS_NONE if bias is None
                                 else kgemm.BIAS_COL, _common.ACT_CODES[act], alpha)
    launch(A, B, _as_batched(dy, (N, O)), db, 0, 0, s)
    if late_act is not None:
        _apply_activation(_interop.strided_view(dy, (N, O, 1, 1), tuple(dy.strides) + (0, 0)), dtype, late_act,
                          alpha, s)
    return _interop.result(res, dy, kind, out, s)
