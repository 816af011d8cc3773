"""Pooling as torch.library custom ops (namespace gpuconv): schemas, fake implementations and autograd.

Arguments arrive normalised by gpuconv.torch (pairs as 2-lists, the stride filled in).

    max_pool2d(x) -> (y, indices)      backward: max_pool2d_backward (scatter of go to the indices)
    max_pool2d_backward(go, x, idx)    linear in go; backward: max_pool2d_gather (gather by the indices)
    max_pool2d_gather(t, idx)          t's value at each index; backward: max_pool2d_backward
    avg_pool2d(x)                      linear; backward avg_pool2d_backward, whose backward is avg_pool2d

The scatter and the gather are each other's adjoints, as are the average pool and its backward, so
derivatives of every order run on these ops (the scatters on gpuconv's deterministic kernels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from . import _args
from ._torch_op import Op, check_grad_out, concrete
from .pool import gpu_avg_pool2d, gpu_max_pool2d
from .pool_backward import gpu_avg_pool2d_backward, gpu_max_pool2d_backward


def _pool_shape(x, kernel, stride, padding, dilation, ceil_mode):
    return tuple(x.shape[:2]) + tuple(
        _args.pool_out_size(x.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i], ceil_mode)
        for i in range(2))


def _check_pool(x, kernel, stride, padding, dilation, ceil_mode, grad_out=None, name="grad_out"):
    """The wrappers' shape checks, at trace time (fake tensors) where the shapes are known; grad_out (or the
    indices) must have the pool's output shape."""
    if concrete(x, grad_out):
        g = _args.pool2d_geometry(tuple(x.shape), tuple(kernel), tuple(stride), tuple(padding), tuple(dilation),
                                  ceil_mode)
        check_grad_out(grad_out, g.out_shape, name)


# ----------------------------------------------------------------------------- max pooling


def _max_pool2d(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], ceil_mode: bool) -> tuple[Tensor, Tensor]:
    """(y, int64 flat per-plane indices of each window's maximum)."""
    return gpu_max_pool2d(x.detach(), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def _max_pool2d_fake(x, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool(x, kernel_size, stride, padding, dilation, ceil_mode)
    shape = _pool_shape(x, kernel_size, stride, padding, dilation, ceil_mode)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


def _max_pool2d_backward(grad_out: Tensor, x: Tensor, indices: Tensor, kernel_size: Sequence[int],
                        stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
                        ceil_mode: bool) -> Tensor:
    """Each grad_out element added to x's element its index names; x is read for its shape only."""
    return gpu_max_pool2d_backward(grad_out.detach(), x.detach(), kernel_size, stride, padding, dilation, ceil_mode,
                                   indices=indices)


def _max_pool2d_backward_fake(grad_out, x, indices, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool(x, kernel_size, stride, padding, dilation, ceil_mode, grad_out)
    return grad_out.new_empty(x.shape)


def _max_pool2d_gather(t: Tensor, indices: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                      padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool) -> Tensor:
    """out[n, c, p, q] = t[n, c] (flattened) at indices[n, c, p, q]: the adjoint of max_pool2d_backward."""
    return torch.gather(t.detach().flatten(2), 2, indices.flatten(2)).view(indices.shape)


def _max_pool2d_gather_fake(t, indices, kernel_size, stride, padding, dilation, ceil_mode):
    _check_pool(t, kernel_size, stride, padding, dilation, ceil_mode, indices, "indices")
    return t.new_empty(indices.shape)


def _max_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], output[1])
    ctx.conf = inputs[1:]


def _max_autograd(ctx, go, _go_indices):
    x, indices = ctx.saved_tensors
    return (max_pool2d_backward(go, x, indices, *ctx.conf),) + (None,) * 5


def _scatter_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1], inputs[2])      # x (its shape), indices
    ctx.conf = inputs[3:]


def _scatter_autograd(ctx, ggx):
    # linear in grad_out, and the indices fix where each element goes: x itself gets no gradient
    _, indices = ctx.saved_tensors
    return (max_pool2d_gather(ggx, indices, *ctx.conf), None, None) + (None,) * 5


def _gather_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])      # t (its shape), indices
    ctx.conf = inputs[2:]


def _gather_autograd(ctx, gg):
    t, indices = ctx.saved_tensors
    return (max_pool2d_backward(gg, t, indices, *ctx.conf), None) + (None,) * 5


max_pool2d = Op("max_pool2d", _max_pool2d, _max_pool2d_fake, _max_setup, _max_autograd)
max_pool2d_backward = Op("max_pool2d_backward", _max_pool2d_backward, _max_pool2d_backward_fake, _scatter_setup,
                         _scatter_autograd)
max_pool2d_gather = Op("max_pool2d_gather", _max_pool2d_gather, _max_pool2d_gather_fake, _gather_setup,
                       _gather_autograd)


# ----------------------------------------------------------------------------- average pooling


def _avg_pool2d(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
               ceil_mode: bool, count_include_pad: bool, divisor_override: Optional[int]) -> Tensor:
    return gpu_avg_pool2d(x.detach(), kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _avg_pool2d_fake(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    _check_pool(x, kernel_size, stride, padding, (1, 1), ceil_mode)
    return x.new_empty(_pool_shape(x, kernel_size, stride, padding, (1, 1), ceil_mode))


def _avg_pool2d_backward(grad_out: Tensor, x: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                        padding: Sequence[int], ceil_mode: bool, count_include_pad: bool,
                        divisor_override: Optional[int]) -> Tensor:
    """Each grad_out element / its divisor, spread over its window; x is read for its shape only."""
    return gpu_avg_pool2d_backward(grad_out.detach(), x.detach(), kernel_size, stride, padding, ceil_mode,
                                   count_include_pad, divisor_override)


def _avg_pool2d_backward_fake(grad_out, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override):
    _check_pool(x, kernel_size, stride, padding, (1, 1), ceil_mode, grad_out)
    return grad_out.new_empty(x.shape)


def _avg_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.conf = inputs[1:]


def _avg_autograd(ctx, go):
    (x,) = ctx.saved_tensors
    return (avg_pool2d_backward(go, x, *ctx.conf),) + (None,) * 6


def _avg_scatter_setup(ctx, inputs, output):
    ctx.conf = inputs[2:]


def _avg_scatter_autograd(ctx, ggx):
    # linear in grad_out, independent of x's values: its adjoint is the average pool itself
    return (avg_pool2d(ggx, *ctx.conf), None) + (None,) * 6


avg_pool2d = Op("avg_pool2d", _avg_pool2d, _avg_pool2d_fake, _avg_setup, _avg_autograd)
avg_pool2d_backward = Op("avg_pool2d_backward", _avg_pool2d_backward, _avg_pool2d_backward_fake, _avg_scatter_setup,
                         _avg_scatter_autograd)
