"""PyTorch drop-ins: autograd functions and nn modules on gpuconv's kernels.

    from gpuconv.torch import Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d

The modules subclass torch.nn's, take the same arguments (plus gpuconv's: `activation`, `algo`, and
padding="same" for any stride or a (top, bottom, left, right) padding on Conv2d) and hold the same
parameters, so `load_state_dict` takes a torch.nn module's state dict unchanged. CUDA tensors stay on
the GPU (used in place, on the current stream); CPU tensors run through the host path (the CUDA
simulator on a machine without a GPU). Importing this module needs PyTorch; `import gpuconv` does not.
"""

from __future__ import annotations

import torch
from torch import nn

from .backward import gpu_conv2d_backward, gpu_conv_transpose2d, gpu_conv_transpose2d_backward
from .conv import gpu_conv2d
from .pool import gpu_avg_pool2d, gpu_max_pool2d
from .pool_backward import gpu_avg_pool2d_backward, gpu_max_pool2d_backward

__all__ = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "Conv2d", "ConvTranspose2d", "MaxPool2d",
           "AvgPool2d"]

_NEEDS = ("input", "weight", "bias")


def _needs(ctx, has_bias):
    flags = ctx.needs_input_grad[:3]
    return tuple(n for n, f in zip(_NEEDS, flags) if f and (n != "bias" or has_bias))


def _detached(t):
    return None if t is None else t.detach()


class _Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, padding_mode, activation, algo):
        ctx.save_for_backward(x, weight, bias)
        ctx.conf = (stride, padding, dilation, groups, padding_mode, activation)
        return gpu_conv2d(x.detach(), weight.detach(), _detached(bias), stride, padding, dilation, groups,
                          padding_mode=padding_mode, activation=activation, algo=algo)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        stride, padding, dilation, groups, padding_mode, activation = ctx.conf
        needs = _needs(ctx, bias is not None)
        grads = (None, None, None)
        if needs:
            grads = gpu_conv2d_backward(grad_out.detach(), x.detach(), weight.detach(), stride, padding, dilation,
                                        groups, padding_mode, needs, bias=_detached(bias), activation=activation)
        return grads + (None,) * 7


class _ConvTranspose2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, output_padding, groups, dilation):
        ctx.save_for_backward(x, weight, bias)
        ctx.conf = (stride, padding, output_padding, groups, dilation)
        return gpu_conv_transpose2d(x.detach(), weight.detach(), _detached(bias), stride, padding, output_padding,
                                    groups, dilation)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        needs = _needs(ctx, bias is not None)
        grads = (None, None, None)
        if needs:
            grads = gpu_conv_transpose2d_backward(grad_out.detach(), x.detach(), weight.detach(), *ctx.conf,
                                                  needs=needs)
        return grads + (None,) * 5


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, idx = gpu_max_pool2d(x.detach(), kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
        ctx.save_for_backward(x, idx)
        ctx.conf = (kernel_size, stride, padding, dilation, ceil_mode)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx, grad_out, _grad_idx):
        x, idx = ctx.saved_tensors
        return (gpu_max_pool2d_backward(grad_out.detach(), x.detach(), *ctx.conf, indices=idx),) + (None,) * 5


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ctx.save_for_backward(x)
        ctx.conf = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return gpu_avg_pool2d(x.detach(), *ctx.conf)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return (gpu_avg_pool2d_backward(grad_out.detach(), x.detach(), *ctx.conf),) + (None,) * 6


# ----------------------------------------------------------------------------- functional


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           activation=None, algo="auto"):
    """F.conv2d on gpuconv's kernels (+ padding_mode, a fused activation and algo), differentiable."""
    return _Conv2d.apply(x, weight, bias, stride, padding, dilation, groups, padding_mode, activation, algo)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """F.conv_transpose2d on gpuconv's kernels, differentiable."""
    return _ConvTranspose2d.apply(x, weight, bias, stride, padding, output_padding, groups, dilation)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """F.max_pool2d on gpuconv's kernels, differentiable (deterministic backward)."""
    y, idx = _MaxPool2d.apply(x, kernel_size, stride, padding, dilation, ceil_mode)
    return (y, idx) if return_indices else y


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """F.avg_pool2d on gpuconv's kernels, differentiable."""
    return _AvgPool2d.apply(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _batched(fn, x, *args):
    """torch.nn modules take unbatched (C, H, W) input too."""
    if x.dim() == 3:
        out = fn(x.unsqueeze(0), *args)
        return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
    return fn(x, *args)


# ----------------------------------------------------------------------------- modules


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d on gpuconv's kernels; extra keywords `activation` (fused) and `algo`.

    padding may also be "same" with any stride or (top, bottom, left, right)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, activation=None, algo="auto"):
        ours_only = (padding == "same" and stride not in (1, (1, 1))) or \
            (isinstance(padding, (tuple, list)) and len(padding) == 4)
        super().__init__(in_channels, out_channels, kernel_size, stride, 0 if ours_only else padding, dilation,
                         groups, bias, padding_mode, device, dtype)
        self.gpu_padding = padding
        self.activation = activation
        self.algo = algo

    def forward(self, x):
        return _batched(lambda t: conv2d(t, self.weight, self.bias, self.stride, self.gpu_padding, self.dilation,
                                         self.groups, padding_mode=self.padding_mode, activation=self.activation,
                                         algo=self.algo), x)

    def extra_repr(self):
        return super().extra_repr() + (f", activation={self.activation!r}" if self.activation else "")


class ConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d on gpuconv's kernels (zeros padding, as torch's)."""

    def forward(self, x, output_size=None):
        output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return _batched(lambda t: conv_transpose2d(t, self.weight, self.bias, self.stride, self.padding,
                                                   tuple(output_padding), self.groups, self.dilation), x)


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d on gpuconv's kernels."""

    def forward(self, x):
        return _batched(lambda t: max_pool2d(t, self.kernel_size, self.stride, self.padding, self.dilation,
                                             self.ceil_mode, self.return_indices), x)


class AvgPool2d(nn.AvgPool2d):
    """torch.nn.AvgPool2d on gpuconv's kernels."""

    def forward(self, x):
        return _batched(lambda t: avg_pool2d(t, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                             self.count_include_pad, self.divisor_override), x)
