"""Convolution in float64 NumPy: forward, transposed, and gradients. The oracle every kernel is checked against.

Layouts are PyTorch's: activations NCHW, conv weights OIHW = (K, C/groups, R, S), transposed-conv weights
(C_in, C_out/groups, R, S). Loops run over kernel taps only, never over pixels or channels.
"""

from __future__ import annotations

import numpy as np

from .._args import check_int, conv2d_geometry, conv_transpose2d_output_padding_check, pair
from ._common import as_f64, pad2d, unpad2d_adjoint, windows
from . import activations as _act


def _bias(bias, K):
    if bias is None:
        return None
    b = as_f64(bias, "bias", 1)
    if b.shape != (K,):
        raise ValueError(f"bias must have shape ({K},), got {b.shape}")
    return b


def _operands(x, weight, bias):
    x = as_f64(x, "x", 4)
    weight = as_f64(weight, "weight", 4)
    return x, weight, (None if bias is None else as_f64(bias, "bias", 1))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
           activation=None):
    """Cross-correlation of x (N, C, H, W) with weight (K, C/groups, R, S) -> (N, K, P, Q), as F.conv2d.

    `padding` is an int, (ph, pw), (top, bottom, left, right), "valid", or "same" for any stride
    (output ceil(H / stride), the odd pixel bottom/right). `activation` (None, a name or
    (name, parameter)) is applied after the bias.
    """
    x, weight, bias = _operands(x, weight, bias)
    g = conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                        None if bias is None else bias.shape)
    G, Cg, Kg = g.groups, g.C // g.groups, g.K // g.groups
    xp = pad2d(x, g.pads, g.padding_mode)
    win = windows(xp, (g.R, g.S), g.stride, g.dilation, (g.P, g.Q)).reshape(g.N, G, Cg, g.P, g.Q, g.R, g.S)
    wg = weight.reshape(G, Kg, Cg, g.R, g.S)
    y = np.einsum("ngcpqrs,gkcrs->ngkpq", win, wg, optimize=True).reshape(g.N, g.K, g.P, g.Q)
    if bias is not None:
        y = y + bias[None, :, None, None]
    return _act.activation(y, activation)


def _scatter_taps(src, wg, out_hw, kernel, stride, dilation):
    """sum over taps (r, s): out[..., r·dh + p·sh, s·dw + q·sw] += Σ_k src[n,g,k,p,q] · wg[g,k,c,r,s].

    src is (N, G, Kin, P, Q), wg (G, Kin, Cout, R, S); returns (N, G·Cout, *out_hw). This is the
    transposed convolution, and the data-gradient of the forward one (the full correlation with the
    kernel rotated 180°) written as a scatter so strides need no zero-stuffed tensor.
    """
    N, G, _, P, Q = src.shape
    Cout = wg.shape[2]
    out = np.zeros((N, G, Cout) + tuple(out_hw))
    for r in range(kernel[0]):
        for s in range(kernel[1]):
            r0, s0 = r * dilation[0], s * dilation[1]
            out[..., r0:r0 + (P - 1) * stride[0] + 1:stride[0], s0:s0 + (Q - 1) * stride[1] + 1:stride[1]] += \
                np.einsum("ngkpq,gkc->ngcpq", src, wg[..., r, s], optimize=True)
    return out.reshape((N, G * Cout) + tuple(out_hw))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, R, S), as F.conv_transpose2d.

    Output (N, C_out, (H-1)·sh − 2·ph + dh·(R−1) + oph + 1, ...). `padding` is an int or (ph, pw).
    """
    x, weight, bias = _operands(x, weight, bias)
    N, Cin, H, W = x.shape
    Cin_w, Cog, R, S = weight.shape
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pad = pair(padding, "padding", minimum=0)
    groups = check_int(groups, "groups", 1)
    op = conv_transpose2d_output_padding_check(output_padding, stride, dilation)
    if Cin % groups or Cin_w != Cin:
        raise ValueError(
            f"weight {weight.shape} must have x's {Cin} input channels in its first axis, divisible by groups={groups}"
        )
    Cout = Cog * groups
    bias = _bias(bias, Cout)
    full = ((H - 1) * stride[0] + dilation[0] * (R - 1) + 1 + op[0],
            (W - 1) * stride[1] + dilation[1] * (S - 1) + 1 + op[1])
    Ho, Wo = full[0] - 2 * pad[0], full[1] - 2 * pad[1]
    if Ho < 1 or Wo < 1:
        raise ValueError(f"padding {pad} leaves no output for x {x.shape} and weight {weight.shape}")
    src = x.reshape(N, groups, Cin // groups, H, W)
    wg = weight.reshape(groups, Cin // groups, Cog, R, S)
    y = _scatter_taps(src, wg, full, (R, S), stride, dilation)[..., pad[0]:pad[0] + Ho, pad[1]:pad[1] + Wo]
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                    needs=("input", "weight", "bias"), *, bias=None, activation=None):
    """Gradients of conv2d (with its activation, if any) -> (grad_input, grad_weight, grad_bias).

    Entries not named in `needs` come back as None. With an activation, pass the forward's `bias` too:
    the pre-activation is recomputed to differentiate the activation.
    """
    x, weight, bias = _operands(x, weight, bias)
    g = conv2d_geometry(x.shape, weight.shape, stride, padding, dilation, groups, padding_mode,
                        None if bias is None else bias.shape)
    go = as_f64(grad_out, "grad_out", 4)
    if go.shape != g.out_shape:
        raise ValueError(f"grad_out must have the forward's output shape {g.out_shape}, got {go.shape}")
    unknown = set(needs) - {"input", "weight", "bias"}
    if unknown:
        raise ValueError(f"needs may hold 'input', 'weight', 'bias'; got {sorted(unknown)}")
    if activation is not None:
        z = conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode)
        go = go * _act.activation_grad(z, activation)
    G, Cg, Kg = g.groups, g.C // g.groups, g.K // g.groups
    go_g = go.reshape(g.N, G, Kg, g.P, g.Q)
    gx = gw = gb = None
    if "input" in needs:
        padded_hw = (g.H + g.pads[0] + g.pads[1], g.W + g.pads[2] + g.pads[3])
        gxp = _scatter_taps(go_g, weight.reshape(G, Kg, Cg, g.R, g.S), padded_hw, (g.R, g.S), g.stride, g.dilation)
        gx = unpad2d_adjoint(gxp, (g.H, g.W), g.pads, g.padding_mode)
    if "weight" in needs:
        xp = pad2d(x, g.pads, g.padding_mode)
        win = windows(xp, (g.R, g.S), g.stride, g.dilation, (g.P, g.Q)).reshape(g.N, G, Cg, g.P, g.Q, g.R, g.S)
        gw = np.einsum("ngcpqrs,ngkpq->gkcrs", win, go_g, optimize=True).reshape(g.K, Cg, g.R, g.S)
    if "bias" in needs:
        gb = go.sum(axis=(0, 2, 3))
    return gx, gw, gb


def linear(x, weight, bias=None):
    """Dense layer: x (..., in_features) @ weight (out_features, in_features).T + bias, as F.linear."""
    x = as_f64(x, "x")
    weight = as_f64(weight, "weight", 2)
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x {x.shape} must end in weight's in_features {weight.shape[1]} (weight {weight.shape})")
    y = x @ weight.T
    if bias is not None:
        y = y + _bias(bias, weight.shape[0])
    return y
