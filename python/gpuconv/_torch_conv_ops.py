"""The convolutions as gpuconv ops (torch.library custom ops, namespace gpuconv, see _torch_op): schemas,
fake implementations (output shapes from the size formulas, no kernel run) and autograd.

Arguments arrive normalised by gpuconv.torch: pads as (top, bottom, left, right), pairs as 2-lists, the
activation as its name and parameter (None: the default). Ops never mutate or alias their inputs.

    conv2d(x, w, b)             y = act(conv(x, w) + b)
    conv2d_input_grad(g, x, w)  Aᵀ g, A = conv(·, w): the data gradient (x gives only the shape)
    conv2d_weight_grad(g, x, w) Bᵀ g, B = conv(x, ·): the weight gradient (w gives only the shape)
    conv2d_backward             the fused first-order gradient (gpu_conv2d_backward: one recompute of z)
    conv_transpose2d, conv_transpose2d_backward

First-order backward (grad mode off: the usual case, and what torch.compile traces) is one fused op.
A backward that must itself be differentiated (create_graph=True) is built from differentiable ops:
g = go · act'(z) (torch ops on z recomputed by conv2d), conv2d_input_grad(g), conv2d_weight_grad(g) and
Σ g (a torch sum). Those two are linear in each argument and adjoint to conv2d, so their own derivatives
are again conv2d, conv2d_input_grad and conv2d_weight_grad: the convolutions of every order run on
gpuconv's kernels, every padding mode included (the kernels pad and fold by mode; no F.pad).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from . import _args, _torch_activations, conv
from ._torch_op import Op, check_grad_out, concrete
from .backward import gpu_conv2d_backward, gpu_conv_transpose2d, gpu_conv_transpose2d_backward
from .conv import gpu_conv2d

NEEDS = ("input", "weight", "bias")


def activation_arg(name, param):
    """The wrappers' activation argument from the schema's (name, parameter or None)."""
    return name if param is None else (name, param)


def _detached(t):
    # a CUDA tensor that requires grad refuses __cuda_array_interface__; the op runs below autograd anyway
    return None if t is None else t.detach()


def _conv_shape(x, weight, stride, pads, dilation):
    P = _args.out_size(x.shape[2], pads[0], pads[1], weight.shape[2], stride[0], dilation[0])
    Q = _args.out_size(x.shape[3], pads[2], pads[3], weight.shape[3], stride[1], dilation[1])
    return (x.shape[0], weight.shape[0], P, Q)


def _check_conv(x, weight, bias, stride, pads, dilation, groups, padding_mode, grad_out=None):
    """The wrappers' shape checks, at trace time (fake tensors) where the shapes are known."""
    if concrete(x, weight, bias, grad_out):
        g = conv.geometry(tuple(x.shape), tuple(weight.shape), tuple(stride), tuple(pads), tuple(dilation), groups,
                          padding_mode, None if bias is None else tuple(bias.shape))
        check_grad_out(grad_out, g.out_shape)


# ----------------------------------------------------------------------------- conv2d


def _conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int], pads: Sequence[int],
           dilation: Sequence[int], groups: int, padding_mode: str, activation: Optional[str],
           alpha: Optional[float], algo: str) -> Tensor:
    return gpu_conv2d(x.detach(), weight.detach(), _detached(bias), stride, pads, dilation, groups,
                      padding_mode=padding_mode, activation=activation_arg(activation, alpha), algo=algo)


def _conv2d_fake(x, weight, bias, stride, pads, dilation, groups, padding_mode, activation, alpha, algo):
    _check_conv(x, weight, bias, stride, pads, dilation, groups, padding_mode)
    return x.new_empty(_conv_shape(x, weight, stride, pads, dilation))


def _conv2d_backward(grad_out: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
                    pads: Sequence[int], dilation: Sequence[int], groups: int, padding_mode: str,
                    activation: Optional[str], alpha: Optional[float], needs: Sequence[bool]) -> list[Tensor]:
    """[grad_x][, grad_w][, grad_b]: the gradients `needs` (3 flags) asks for, in that order."""
    grads = gpu_conv2d_backward(grad_out.detach(), x.detach(), weight.detach(), stride, pads, dilation, groups,
                                padding_mode, [n for n, f in zip(NEEDS, needs) if f], bias=_detached(bias),
                                activation=activation_arg(activation, alpha))
    return [g for g in grads if g is not None]


def _conv2d_backward_fake(grad_out, x, weight, bias, stride, pads, dilation, groups, padding_mode, activation, alpha,
                          needs):
    _check_conv(x, weight, bias, stride, pads, dilation, groups, padding_mode, grad_out)
    shapes = (x.shape, weight.shape, (weight.shape[0],))
    return [grad_out.new_empty(s) for s, f in zip(shapes, needs) if f]


def _conv2d_grads(go, x, weight, bias, conf, needs):
    """[gx, gw, gb] of conv2d (None where `needs` says no), from differentiable ops."""
    stride, pads, dilation, groups, padding_mode, activation, alpha, algo = conf
    geo = (stride, pads, dilation, groups, padding_mode)
    g = go
    if activation is not None:
        z = conv2d(x, weight, bias, *geo, None, None, algo)
        _, a = _args.activation_spec(activation_arg(activation, alpha))
        g = go * _torch_activations.derivative(activation, a, z)
    return [conv2d_input_grad(g, x, weight, *geo) if needs[0] else None,
            conv2d_weight_grad(g, x, weight, *geo) if needs[1] else None,
            g.sum((0, 2, 3)) if needs[2] else None]


def unpack(grads, needs):
    """The list a fused backward op returns -> one entry per flag of `needs`, None where not asked."""
    it = iter(grads)
    return [next(it) if f else None for f in needs]


def vjp(fn, inputs, needs_input, cotangents):
    """The backward of an op whose outputs are fn(*inputs), a composite of differentiable ops: its
    vector-Jacobian product for the cotangents, itself differentiable when grad mode is on."""
    wrt = [t for t, f in zip(inputs, needs_input) if f]
    with torch.enable_grad():
        outs = fn(*inputs)
    pairs = [(o, c) for o, c in zip(outs, cotangents) if c is not None and o.requires_grad]
    if not wrt or not pairs:
        return (None,) * len(inputs)
    grads = iter(torch.autograd.grad([o for o, _ in pairs], wrt, [c for _, c in pairs], allow_unused=True,
                                     create_graph=torch.is_grad_enabled()))
    return tuple(next(grads) if f else None for f in needs_input)


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, *conf = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.conf = conf


def _conv2d_autograd(ctx, go):
    x, weight, bias = ctx.saved_tensors
    needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2])
    if torch.is_grad_enabled():         # create_graph=True: a graph of differentiable ops
        grads = _conv2d_grads(go, x, weight, bias, ctx.conf, needs)
    elif any(needs):                    # first order: one fused op
        grads = unpack(conv2d_backward(go, x, weight, bias, *ctx.conf[:-1], needs), needs)
    else:
        grads = [None, None, None]
    return (*grads,) + (None,) * 8


def _fused_setup(ctx, inputs, output):
    grad_out, x, weight, bias, *conf, needs = inputs
    ctx.save_for_backward(grad_out, x, weight, bias)
    ctx.conf, ctx.needs = conf, needs


def _fused_autograd(ctx, ggrads):
    # only reached when the fused op itself is differentiated (conv2d's own backward builds the composite
    # when a graph is wanted): differentiate the composite, with z recomputed by the direct kernels as here
    grads = vjp(lambda *a: [g for g in _conv2d_grads(*a, ctx.conf + ["direct"], ctx.needs) if g is not None],
                ctx.saved_tensors, ctx.needs_input_grad[:4], ggrads)
    return grads + (None,) * 8


conv2d = Op("conv2d", _conv2d, _conv2d_fake, _conv2d_setup, _conv2d_autograd)
conv2d_backward = Op("conv2d_backward", _conv2d_backward, _conv2d_backward_fake, _fused_setup, _fused_autograd)


# ----------------------------------------------------------------------------- the two linear pieces


def _conv2d_input_grad(grad_out: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int], pads: Sequence[int],
                      dilation: Sequence[int], groups: int, padding_mode: str) -> Tensor:
    """Gradient of conv(x, weight) w.r.t. x for output gradient grad_out; x is read for its shape only."""
    return gpu_conv2d_backward(grad_out.detach(), x.detach(), weight.detach(), stride, pads, dilation, groups,
                               padding_mode, ("input",))[0]


def _conv2d_input_grad_fake(grad_out, x, weight, stride, pads, dilation, groups, padding_mode):
    _check_conv(x, weight, None, stride, pads, dilation, groups, padding_mode, grad_out)
    return grad_out.new_empty(x.shape)


def _conv2d_weight_grad(grad_out: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int], pads: Sequence[int],
                       dilation: Sequence[int], groups: int, padding_mode: str) -> Tensor:
    """Gradient of conv(x, weight) w.r.t. weight for output gradient grad_out; weight gives its shape only."""
    return gpu_conv2d_backward(grad_out.detach(), x.detach(), weight.detach(), stride, pads, dilation, groups,
                               padding_mode, ("weight",))[1]


def _conv2d_weight_grad_fake(grad_out, x, weight, stride, pads, dilation, groups, padding_mode):
    _check_conv(x, weight, None, stride, pads, dilation, groups, padding_mode, grad_out)
    return grad_out.new_empty(weight.shape)


def _linear_setup(ctx, inputs, output):
    grad_out, x, weight, *geo = inputs
    ctx.save_for_backward(grad_out, x, weight)
    ctx.geo = geo


def _input_grad_autograd(ctx, ggx):
    # gx = Aᵀ g with A = conv(·, w): d/dg = A ggx = conv(ggx, w); d/dw of <ggx, Aᵀ g> = <conv(ggx, w), g>
    # is the weight gradient of conv(ggx, ·) for g
    g, _, weight = ctx.saved_tensors
    d_g = conv2d(ggx, weight, None, *ctx.geo, None, None, "auto") if ctx.needs_input_grad[0] else None
    d_w = conv2d_weight_grad(g, ggx, weight, *ctx.geo) if ctx.needs_input_grad[2] else None
    return (d_g, None, d_w) + (None,) * 5


def _weight_grad_autograd(ctx, ggw):
    # gw = Bᵀ g with B = conv(x, ·): d/dg = B ggw = conv(x, ggw); d/dx of <conv(x, ggw), g> is the data
    # gradient of conv(·, ggw) for g
    g, x, _ = ctx.saved_tensors
    d_g = conv2d(x, ggw, None, *ctx.geo, None, None, "auto") if ctx.needs_input_grad[0] else None
    d_x = conv2d_input_grad(g, x, ggw, *ctx.geo) if ctx.needs_input_grad[1] else None
    return (d_g, d_x, None) + (None,) * 5


conv2d_input_grad = Op("conv2d_input_grad", _conv2d_input_grad, _conv2d_input_grad_fake, _linear_setup,
                       _input_grad_autograd)
conv2d_weight_grad = Op("conv2d_weight_grad", _conv2d_weight_grad, _conv2d_weight_grad_fake, _linear_setup,
                        _weight_grad_autograd)


# ----------------------------------------------------------------------------- transposed convolution


def _transpose_shape(x, weight, stride, padding, output_padding, groups, dilation):
    return (x.shape[0], weight.shape[1] * groups) + tuple(
        (x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1)
        + output_padding[i] + 1 for i in range(2))


def _check_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation, grad_out=None):
    if concrete(x, weight, bias, grad_out):
        out_shape, _ = _args.conv_transpose2d_geometry(tuple(x.shape), tuple(weight.shape), tuple(stride),
                                                       tuple(padding), tuple(output_padding), groups,
                                                       tuple(dilation), None if bias is None else tuple(bias.shape))
        check_grad_out(grad_out, out_shape)


def _conv_transpose2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
                     padding: Sequence[int], output_padding: Sequence[int], groups: int,
                     dilation: Sequence[int]) -> Tensor:
    return gpu_conv_transpose2d(x.detach(), weight.detach(), _detached(bias), stride, padding, output_padding,
                                groups, dilation)


def _conv_transpose2d_fake(x, weight, bias, stride, padding, output_padding, groups, dilation):
    _check_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation)
    return x.new_empty(_transpose_shape(x, weight, stride, padding, output_padding, groups, dilation))


def _conv_transpose2d_backward(grad_out: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int],
                              padding: Sequence[int], output_padding: Sequence[int], groups: int,
                              dilation: Sequence[int], needs: Sequence[bool]) -> list[Tensor]:
    """[grad_x][, grad_w][, grad_b]: the gradients `needs` (3 flags) asks for, in that order."""
    grads = gpu_conv_transpose2d_backward(grad_out.detach(), x.detach(), weight.detach(), stride, padding,
                                          output_padding, groups, dilation,
                                          [n for n, f in zip(NEEDS, needs) if f])
    return [g for g in grads if g is not None]


def _conv_transpose2d_backward_fake(grad_out, x, weight, stride, padding, output_padding, groups, dilation,
                                    needs):
    _check_transpose(x, weight, None, stride, padding, output_padding, groups, dilation, grad_out)
    shapes = (x.shape, weight.shape, (grad_out.shape[1],))
    return [grad_out.new_empty(s) for s, f in zip(shapes, needs) if f]


def _transpose_grads(go, x, weight, conf, needs):
    """[gx, gw, gb] of conv_transpose2d (None where `needs` says no), from differentiable ops.

    y = Aᵀ x with A the convolution from y's shape to x's: gx = A go, gw its weight gradient with x as the
    output gradient. An output_padding >= stride (allowed when dilation > stride) gives A
    output_padding // stride more rows (columns) than x has: cut them from gx, pad x with zeros for gw."""
    stride, padding, output_padding, groups, dilation = conf
    geo = (stride, (padding[0], padding[0], padding[1], padding[1]), dilation, groups, "zeros")
    extra = [output_padding[i] // stride[i] for i in range(2)]
    gx = gw = None
    if needs[0]:
        gx = conv2d(go, weight, None, *geo, None, None, "auto")
        if any(extra):
            gx = gx[:, :, :x.shape[2], :x.shape[3]]
    if needs[1]:
        xg = torch.nn.functional.pad(x, (0, extra[1], 0, extra[0])) if any(extra) else x
        gw = conv2d_weight_grad(xg, go, weight, *geo)
    return [gx, gw, go.sum((0, 2, 3)) if needs[2] else None]


def _transpose_setup(ctx, inputs, output):
    x, weight, bias, *conf = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None
    ctx.conf = conf


def _transpose_autograd(ctx, go):
    x, weight = ctx.saved_tensors
    needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2])
    if torch.is_grad_enabled():         # create_graph=True: a graph of differentiable ops
        grads = _transpose_grads(go, x, weight, ctx.conf, needs)
    elif any(needs):                    # first order: one fused op
        grads = unpack(conv_transpose2d_backward(go, x, weight, *ctx.conf, needs), needs)
    else:
        grads = [None, None, None]
    return (*grads,) + (None,) * 5


def _fused_transpose_setup(ctx, inputs, output):
    grad_out, x, weight, *conf, needs = inputs
    ctx.save_for_backward(grad_out, x, weight)
    ctx.conf, ctx.needs = conf, needs


def _fused_transpose_autograd(ctx, ggrads):
    grads = vjp(lambda *a: [g for g in _transpose_grads(*a, ctx.conf, ctx.needs) if g is not None],
                ctx.saved_tensors, ctx.needs_input_grad[:3], ggrads)
    return grads + (None,) * 6


conv_transpose2d = Op("conv_transpose2d", _conv_transpose2d, _conv_transpose2d_fake, _transpose_setup,
                      _transpose_autograd)
conv_transpose2d_backward = Op("conv_transpose2d_backward", _conv_transpose2d_backward,
                               _conv_transpose2d_backward_fake, _fused_transpose_setup, _fused_transpose_autograd)
