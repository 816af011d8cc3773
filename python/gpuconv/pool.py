"""Pooling wrappers: check, allocate, launch (kernels in gpuconv.kernels.pool). PyTorch's semantics."""

from __future__ import annotations

import functools

import numpy as np

from gpuconv.kernels import pool as kpool

from . import _args, _interop


@functools.lru_cache(maxsize=1024)
def _geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    return _args.pool2d_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode)


def _pool_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    try:
        return _geometry(x_shape, _args.hashable(kernel_size), _args.hashable(stride), _args.hashable(padding),
                         _args.hashable(dilation), ceil_mode)
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
        return _args.pool2d_geometry(x_shape, kernel_size, stride, padding, dilation, ceil_mode)


@functools.lru_cache(maxsize=1024)
def _max_launcher(g, dtype):
    return kpool.launch_max_pool2d(g, dtype)


@functools.lru_cache(maxsize=1024)
def _avg_launcher(g, dtype, count_include_pad, divisor):
    return kpool.launch_avg_pool2d(g, dtype, count_include_pad, divisor)


@functools.lru_cache(maxsize=1024)
def _global_launcher(shape, dtype, is_max):
    return kpool.launch_global_pool2d(*shape, dtype, is_max)


@functools.lru_cache(maxsize=2)
def _dummy_indices():
    from numba import cuda

    return cuda.to_device(np.zeros((1, 1, 1, 1), dtype=np.int64))


def _run(x, out, out_shape, launch_args, launch, with_idx, stream, indices_out=None):
    """Shared tail: views, allocation of y (and indices) of the caller's kind, launch, results."""
    kinds, dtype = _interop.check_operands([("x", x)])
    kind = kinds["x"]
    if out is not None:
        _interop.check_out(out, out_shape, dtype, kind)
    s = _interop.resolve_stream(stream, kind, x)
    dx = _interop.device_view(x, kind, s)
    from numba import cuda

    if _interop.is_device(kind):
        y, dy = (out, _interop.device_view(out, _interop.kind_of(out, "out"), s)) if out is not None \
            else _interop.allocate(out_shape, dtype, kind, x, s)
        if with_idx:
            idx, didx = _interop.allocate(out_shape, np.dtype(np.int64), kind, x, s)
        else:
            idx, didx = None, _dummy_indices()
        launch(dx, dy, didx, *launch_args, stream=s) if launch_args is not None else launch(dx, dy, s)
        return (y, idx) if with_idx else y
    dy = cuda.device_array(out_shape, dtype=dtype, stream=s)
    didx = cuda.device_array(out_shape, dtype=np.int64, stream=s) if with_idx else _dummy_indices()
    launch(dx, dy, didx, *launch_args, stream=s) if launch_args is not None else launch(dx, dy, s)
    y = _interop.finish_host(dy, kind, out, s)
    if not with_idx:
        return y
    return y, _interop.finish_host(didx, kind, None, s)


def _check_x(x):
    _interop.check_operands([("x", x)])
    return _args.shape_of(x, "x", 4)


def gpu_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
                   *, out=None, stream=None):
    """Max pooling of x (N, C, H, W) -> (N, C, P, Q) [, int64 flat per-plane indices], as F.max_pool2d.

    A NaN in a window makes its result NaN (its index is the last NaN's); otherwise the first maximum.
    """
    g = _pool_geometry(_check_x(x), kernel_size, stride, padding, dilation, ceil_mode)
    if not isinstance(return_indices, (bool, np.bool_)):
        raise TypeError(f"return_indices must be a bool, got {return_indices!r}")
    launch = _max_launcher(g, np.dtype(_interop.dtype_of(x, _interop.kind_of(x, "x"))))
    return _run(x, out, g.out_shape, (bool(return_indices),), launch, bool(return_indices), stream)


def gpu_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None, *, out=None, stream=None):
    """Average pooling of x (N, C, H, W) -> (N, C, P, Q), as F.avg_pool2d (its divisor rules included)."""
    g = _pool_geometry(_check_x(x), kernel_size, stride, padding, 1, ceil_mode)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be a bool, got {count_include_pad!r}")
    divisor = 0
    if divisor_override is not None:
        divisor = _args.check_int(divisor_override, "divisor_override")
        if divisor == 0:
            raise ValueError("divisor_override must not be zero")
    dtype = np.dtype(_interop.dtype_of(x, _interop.kind_of(x, "x")))
    launch = _avg_launcher(g, dtype, bool(count_include_pad), divisor)
    return _run(x, out, g.out_shape, None, launch, False, stream)


def _global(x, is_max, return_indices, out, stream):
    shape = _check_x(x)
    if min(shape) < 1:
        raise ValueError(f"x {shape} must have no empty dimension")
    dtype = np.dtype(_interop.dtype_of(x, _interop.kind_of(x, "x")))
    launch = _global_launcher(shape, dtype, is_max)
    return _run(x, out, shape[:2] + (1, 1), (bool(return_indices),), launch, bool(return_indices), stream)


def gpu_global_max_pool2d(x, return_indices=False, *, out=None, stream=None):
    """Max over each plane -> (N, C, 1, 1) [, indices], as F.adaptive_max_pool2d(x, 1) (NaN propagates)."""
    return _global(x, True, return_indices, out, stream)


def gpu_global_avg_pool2d(x, *, out=None, stream=None):
    """Mean over each plane -> (N, C, 1, 1), as F.adaptive_avg_pool2d(x, 1)."""
    return _global(x, False, False, out, stream)
