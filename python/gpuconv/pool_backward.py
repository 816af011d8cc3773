"""Pooling gradients: check, allocate, launch (gather kernels in gpuconv.kernels.pool).

Each gradient element is computed by one thread summing, in a fixed order, the output gradients of the
windows that hold it: deterministic (the same bits every run) and with no atomics or zero-fill pass.
float16 and bfloat16 operands are read in place as 16-bit bits, the sums are float32 and each gradient
element is rounded once (gpuconv._precision).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from gpuconv.kernels import pool as kpool

from . import _args, _interop, _precision
from .pool import _check_bool, _max_launcher, _pool_geometry, divisor_code

INDEX_DTYPE = np.dtype(np.int64)


@functools.lru_cache(maxsize=1024)
def _max_backward_launcher(g, dtype):
    return kpool.launch_max_pool2d_backward(g, dtype)


@functools.lru_cache(maxsize=1024)
def _avg_backward_launcher(g, dtype, count_include_pad, divisor):
    return kpool.launch_avg_pool2d_backward(g, dtype, count_include_pad, divisor)


def _check_grad(grad_out, x):
    """(kind, dtype, x shape, grad_out shape) of the operands, checked once per call."""
    kinds, dtype = _interop.check_operands([("grad_out", grad_out), ("x", x)], half=True)
    return kinds, dtype, _args.shape_of(x, "x", 4), _args.shape_of(grad_out, "grad_out", 4)


def _check_same_shape(go_shape, g):
    if go_shape != g.out_shape:
        raise ValueError(f"grad_out must have the forward's output shape {g.out_shape} for x "
                         f"{(g.N, g.C, g.H, g.W)}, got {go_shape}")


def _check_indices(indices, kind, g):
    ikind = _interop.kind_of(indices, "indices")
    if _interop.is_device(ikind) != _interop.is_device(kind):
        raise TypeError(f"indices must be on the {'device' if _interop.is_device(kind) else 'host'} like grad_out")
    ishape = _args.shape_of(indices, "indices", 4)
    if ishape != g.out_shape:
        raise ValueError(f"indices must have the forward's output shape {g.out_shape}, got {ishape}")
    if _interop.dtype_of(indices, ikind) != INDEX_DTYPE:
        raise TypeError(f"indices must be int64 (as gpu_max_pool2d returns them), got "
                        f"{_interop.dtype_of(indices, ikind)}")
    return ikind


def gpu_max_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                            indices=None, out=None, stream=None):
    """Gradient of gpu_max_pool2d w.r.t. x: each output's gradient goes to the element its index names
    (PyTorch's max_pool2d backward), summed where windows overlap, in a fixed order (deterministic).

    indices: the int64 indices gpu_max_pool2d returned for x with the same arguments; without them
    they are recomputed from x by one forward pass. An index that names no element of its own window
    contributes nothing. grad_out has the forward's output shape; the result has x's shape, dtype and
    type (NumPy in -> NumPy out; device arrays in place, as gpu_max_pool2d). Unbatched (C, H, W)
    operands and N = 0 as the forward; a device out= must not overlap grad_out, x or indices. 16-bit
    operands: summed in float32, each element rounded once.
    """
    if _interop.ndim(x) == 3:
        return _interop.call_unbatched(
            lambda go4, x4, i4, out4: gpu_max_pool2d_backward(go4, x4, kernel_size, stride, padding, dilation,
                                                              ceil_mode, indices=i4, out=out4, stream=stream),
            [("grad_out", grad_out), ("x", x), ("indices", indices)], out)
    kinds, dtype, x_shape, go_shape = _check_grad(grad_out, x)
    kind = kinds["grad_out"]
    g = _pool_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_same_shape(go_shape, g)
    ikind = None if indices is None else _check_indices(indices, kind, g)
    okind = None if out is None else _interop.check_out(out, x_shape, dtype, kind)
    kdtype = _precision.kernel_dtype(dtype)
    backward = _max_backward_launcher(g, kdtype)

    s = _interop.resolve_stream(stream, kind, grad_out)
    if g.N == 0:
        return _precision.empty(out, x_shape, dtype, kind, grad_out, s)
    dgo = _precision.operand(grad_out, kind, dtype, s)
    checked = out is not None and _interop.is_device(kind)       # out= is checked against every input
    dx = _precision.operand(x, kinds["x"], dtype, s) if indices is None or checked else None
    didx = None if indices is None else _interop.device_view(indices, ikind, s)
    res, dgx = _precision.output(out, okind, x_shape, dtype, kind, grad_out, s,
                                 (("grad_out", dgo), ("x", dx), ("indices", didx)))
    if indices is None:
        forward = _max_launcher(g, kdtype, True)
        didx = cuda.device_array(g.out_shape, INDEX_DTYPE, stream=s)
        forward(dx, cuda.device_array(g.out_shape, dx.dtype, stream=s), didx, s)  # y is discarded
    backward(dgo, didx, dgx, s)
    return _precision.result(res, dgx, dtype, kind, out, s)


def gpu_avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None, *, out=None, stream=None):
    """Gradient of gpu_avg_pool2d w.r.t. x: each output's gradient / its divisor, spread over its
    window (PyTorch's avg_pool2d backward, every divisor rule). Deterministic. x is used for its shape,
    dtype and side only. The result has x's shape and grad_out's dtype and type. Unbatched operands and
    N = 0 as the forward; a device out= must not overlap grad_out or x. 16-bit operands: summed in
    float32, each element rounded once."""
    if _interop.ndim(x) == 3:
        return _interop.call_unbatched(
            lambda go4, x4, out4: gpu_avg_pool2d_backward(go4, x4, kernel_size, stride, padding, ceil_mode,
                                                          count_include_pad, divisor_override, out=out4,
                                                          stream=stream),
            [("grad_out", grad_out), ("x", x)], out)
    kinds, dtype, x_shape, go_shape = _check_grad(grad_out, x)
    kind = kinds["grad_out"]
    g = _pool_geometry(x_shape, kernel_size, stride, padding, 1, ceil_mode)
    _check_same_shape(go_shape, g)
    launch = _avg_backward_launcher(g, _precision.kernel_dtype(dtype),
                                    _check_bool(count_include_pad, "count_include_pad"), divisor_code(divisor_override))
    okind = None if out is None else _interop.check_out(out, x_shape, dtype, kind)

    s = _interop.resolve_stream(stream, kind, grad_out)
    if g.N == 0:
        return _precision.empty(out, x_shape, dtype, kind, grad_out, s)
    dgo = _precision.operand(grad_out, kind, dtype, s)
    checked = out is not None and _interop.is_device(kind)       # out= is checked against every input
    reads = (("grad_out", dgo), ("x", _precision.operand(x, kinds["x"], dtype, s))) if checked else ()
    res, dgx = _precision.output(out, okind, x_shape, dtype, kind, grad_out, s, reads)
    launch(dgo, dgx, s)
    return _precision.result(res, dgx, dtype, kind, out, s)


def _whole_plane(x):
    """The (H, W) window of a global pool over x, (N, C, H, W) or unbatched (C, H, W)."""
    shape = _args.shape_of(x, "x", 3 if _interop.ndim(x) == 3 else 4)
    if min(shape[-3:]) < 1:
        raise ValueError(f"x {shape} must have no empty dimension but the batch (N = 0 gives an empty result)")
    return shape[-2:]


def gpu_global_max_pool2d_backward(grad_out, x, *, indices=None, out=None, stream=None):
    """Gradient of gpu_global_max_pool2d: grad_out (N, C, 1, 1) goes to each plane's max (its index)."""
    return gpu_max_pool2d_backward(grad_out, x, _whole_plane(x), indices=indices, out=out, stream=stream)


def gpu_global_avg_pool2d_backward(grad_out, x, *, out=None, stream=None):
    """Gradient of gpu_global_avg_pool2d: grad_out (N, C, 1, 1) / (H·W) over each plane."""
    return gpu_avg_pool2d_backward(grad_out, x, _whole_plane(x), out=out, stream=stream)
