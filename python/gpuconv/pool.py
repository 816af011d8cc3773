"""Pooling wrappers: check, allocate, launch (kernels in gpuconv.kernels.pool). PyTorch's semantics.

float16 and bfloat16 arrays are read and written in place as their 16-bit bits (gpuconv._precision):
the kernels widen each element to float32 where they load it and round once where they store."""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from gpuconv.kernels import pool as kpool

from . import _args, _interop, _precision


_pool_geometry = _args.memoized(_args.pool2d_geometry)   # (x_shape, kernel_size, stride, ...), checked once


# Each cached launcher is built once per (shape, options) and called as launch(x, y, idx, stream); its dtype
# is the kernels' (kernel_dtype: "f16" / "bf16" for 16-bit data).


@functools.lru_cache(maxsize=1024)
def _max_launcher(g, dtype, with_idx):
    launch = kpool.launch_max_pool2d(g, dtype)
    return lambda x, y, idx, s: launch(x, y, idx, with_idx, s)


@functools.lru_cache(maxsize=1024)
def _avg_launcher(g, dtype, count_include_pad, divisor):
    launch = kpool.launch_avg_pool2d(g, dtype, count_include_pad, divisor)
    return lambda x, y, idx, s: launch(x, y, s)


@functools.lru_cache(maxsize=1024)
def _global_launcher(shape, dtype, is_max, with_idx):
    launch = kpool.launch_global_pool2d(*shape, dtype, is_max)
    return lambda x, y, idx, s: launch(x, y, idx, with_idx, s)


@functools.lru_cache(maxsize=2)
def _dummy_indices():
    return cuda.to_device(np.zeros((1, 1, 1, 1), dtype=np.int64))


def _unbatched(fn, x, out):
    """fn(x4, out4) on the (1, C, H, W) view of an unbatched (C, H, W) x, its results (C, P, Q), as PyTorch."""
    return _interop.call_unbatched(fn, [("x", x)], out)


def _check_x(x):
    """(shape, kind, dtype) of the input, checked once per call (float16 and bfloat16 included)."""
    kinds, dtype = _interop.check_operands([("x", x)], half=True)
    return _args.shape_of(x, "x", 4), kinds["x"], dtype


def _run(x, kind, dtype, out, out_shape, launch, with_idx, stream):
    """Shared tail: check out=, views, y (and indices) of the caller's kind, launch, results."""
    okind = None if out is None else _interop.check_out(out, out_shape, dtype, kind)
    s = _interop.resolve_stream(stream, kind, x)
    if out_shape[0] == 0:       # an empty batch: nothing to launch
        y = _precision.empty(out, out_shape, dtype, kind, x, s)
        return (y, _interop.empty(None, out_shape, np.dtype(np.int64), kind, x, s)) if with_idx else y
    dx = _precision.operand(x, kind, dtype, s)
    res, dy = _precision.output(out, okind, out_shape, dtype, kind, x, s, (("x", dx),))
    if with_idx:
        res_i, didx = _interop.output(None, None, out_shape, np.dtype(np.int64), kind, x, s)
    else:
        didx = _dummy_indices()
    launch(dx, dy, didx, s)
    y = _precision.result(res, dy, dtype, kind, out, s)
    return (y, _interop.result(res_i, didx, kind, None, s)) if with_idx else y


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def divisor_code(divisor_override) -> int:
    """The kernels' divisor argument: 0 for PyTorch's counting rules, else the override."""
    if divisor_override is None:
        return 0
    divisor = _args.check_int(divisor_override, "divisor_override")
    if divisor == 0:
        raise ValueError("divisor_override must not be zero")
    return divisor


def gpu_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False,
                   *, out=None, stream=None):
    """Max pooling of x (N, C, H, W) -> (N, C, P, Q) [, int64 flat per-plane indices], as F.max_pool2d.

    A NaN in a window makes its result NaN (its index is the last NaN's); otherwise the first maximum.
    x may be unbatched, (C, H, W) -> (C, P, Q), as F.max_pool2d's; N may be 0 (an empty result). A
    device out= must not overlap x. float32, float64, float16 and bfloat16 (16-bit: compared in float32,
    each result the bits of the element its index names).
    """
    if _interop.ndim(x) == 3:
        return _unbatched(lambda x4, out4: gpu_max_pool2d(x4, kernel_size, stride, padding, dilation, ceil_mode,
                                                          return_indices, out=out4, stream=stream), x, out)
    shape, kind, dtype = _check_x(x)
    g = _pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode)
    with_idx = _check_bool(return_indices, "return_indices")
    return _run(x, kind, dtype, out, g.out_shape, _max_launcher(g, _precision.kernel_dtype(dtype), with_idx),
                with_idx, stream)


def gpu_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None, *, out=None, stream=None):
    """Average pooling of x (N, C, H, W) -> (N, C, P, Q), as F.avg_pool2d (its divisor rules included);
    (C, H, W) and N = 0 as gpu_max_pool2d. 16-bit x: summed in float32, each result rounded once."""
    if _interop.ndim(x) == 3:
        return _unbatched(lambda x4, out4: gpu_avg_pool2d(x4, kernel_size, stride, padding, ceil_mode,
                                                          count_include_pad, divisor_override, out=out4,
                                                          stream=stream), x, out)
    shape, kind, dtype = _check_x(x)
    g = _pool_geometry(shape, kernel_size, stride, padding, 1, ceil_mode)
    cip = _check_bool(count_include_pad, "count_include_pad")
    divisor = divisor_code(divisor_override)
    return _run(x, kind, dtype, out, g.out_shape, _avg_launcher(g, _precision.kernel_dtype(dtype), cip, divisor),
                False, stream)


def _global(x, is_max, return_indices, out, stream):
    if _interop.ndim(x) == 3:
        return _unbatched(lambda x4, out4: _global(x4, is_max, return_indices, out4, stream), x, out)
    shape, kind, dtype = _check_x(x)
    if min(shape[1:]) < 1:
        raise ValueError(f"x {shape} must have no empty dimension but the batch (N = 0 gives an empty result)")
    with_idx = _check_bool(return_indices, "return_indices")
    launch = _global_launcher(shape, _precision.kernel_dtype(dtype), is_max, with_idx)
    return _run(x, kind, dtype, out, shape[:2] + (1, 1), launch, with_idx, stream)


def gpu_global_max_pool2d(x, return_indices=False, *, out=None, stream=None):
    """Max over each plane -> (N, C, 1, 1) [, indices], as F.adaptive_max_pool2d(x, 1) (NaN propagates);
    (C, H, W) -> (C, 1, 1)."""
    return _global(x, True, return_indices, out, stream)


def gpu_global_avg_pool2d(x, *, out=None, stream=None):
    """Mean over each plane -> (N, C, 1, 1), as F.adaptive_avg_pool2d(x, 1); (C, H, W) -> (C, 1, 1)."""
    return _global(x, False, False, out, stream)
