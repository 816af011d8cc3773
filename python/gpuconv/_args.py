"""Argument checking and normalisation shared by the reference and the GPU wrappers.

Everything a user passes is checked here, before anything is allocated or launched, and every error
names the argument and the shapes involved. The results are small frozen dataclasses (hashable, so the
GPU wrappers can key their caches of launch plans on them).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = {
    # name: (default parameter, parameter name); the parameter is ignored where it is None
    "relu": (None, None),
    "leaky_relu": (0.01, "negative_slope"),
    "sigmoid": (None, None),
    "tanh": (None, None),
    "elu": (1.0, "alpha"),
    "gelu": (None, None),           # z·Φ(z); ("gelu", "tanh") is gelu_tanh, as torch's approximate="tanh"
    "gelu_tanh": (None, None),      # ½·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))
    "silu": (None, None),           # z·sigmoid(z)
}
GELU_APPROXIMATE = {"none": "gelu", "tanh": "gelu_tanh"}   # torch's `approximate` -> our name


# --------------------------------------------------------------------------- scalars and pairs


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def check_int(value, name: str, minimum: int | None = None) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a sequence of two ints -> (h, w), each >= minimum."""
    if _is_int(value):
        v = check_int(value, name, minimum)
        return (v, v)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (check_int(value[0], f"{name}[0]", minimum), check_int(value[1], f"{name}[1]", minimum))
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def padding_spec(padding, name: str = "padding"):
    """int | (ph, pw) | (top, bottom, left, right) | "same" | "valid" -> a string or a 4-tuple."""
    if isinstance(padding, str):
        if padding in ("same", "valid"):
            return padding
        raise ValueError(f'{name} must be an int, a tuple, "same" or "valid", got {padding!r}')
    if _is_int(padding):
        p = check_int(padding, name, 0)
        return (p, p, p, p)
    if isinstance(padding, (tuple, list)) and len(padding) in (2, 4):
        vals = tuple(check_int(v, f"{name}[{i}]", 0) for i, v in enumerate(padding))
        if len(vals) == 2:
            return (vals[0], vals[0], vals[1], vals[1])
        return vals
    raise TypeError(
        f"{name} must be an int, (ph, pw), (top, bottom, left, right), 'same' or 'valid', got {padding!r}"
    )


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow-style "same": output ceil(size / stride); the odd pixel goes bottom/right."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return (total // 2, total - total // 2)


def resolve_padding(spec, in_hw, kernel_hw, stride, dilation) -> tuple[int, int, int, int]:
    if spec == "valid":
        return (0, 0, 0, 0)
    if spec == "same":
        t, b = same_padding(in_hw[0], kernel_hw[0], stride[0], dilation[0])
        l, r = same_padding(in_hw[1], kernel_hw[1], stride[1], dilation[1])
        return (t, b, l, r)
    return tuple(spec)


def out_size(size: int, pad_lo: int, pad_hi: int, kernel: int, stride: int, dilation: int) -> int:
    """floor((H + pad_top + pad_bottom - dilation*(R-1) - 1) / stride) + 1 (may be <= 0: caller checks)."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def check_finite(value, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def activation_spec(activation) -> tuple[str | None, float]:
    """None | name | (name, parameter) -> (name, parameter) with the parameter's default filled in."""
    if activation is None:
        return (None, 0.0)
    param = None
    if isinstance(activation, (tuple, list)) and len(activation) == 2:
        activation, param = activation
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be None, a name or (name, parameter), got {activation!r}; "
            f"names: {', '.join(ACTIVATIONS)}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} or None, got {activation!r}")
    if activation == "gelu" and param is not None:
        if not isinstance(param, str) or param not in GELU_APPROXIMATE:
            raise ValueError(f"activation 'gelu' takes approximate 'none' or 'tanh' (as torch's gelu), got {param!r}")
        activation, param = GELU_APPROXIMATE[param], None
    default, pname = ACTIVATIONS[activation]
    if pname is None:
        if param is not None:
            raise ValueError(f"activation {activation!r} takes no parameter, got {param!r}")
        return (activation, 0.0)
    return (activation, default if param is None else check_finite(param, f"activation {pname}"))


def type_signature(v):
    """The types of v and, recursively, of every element of its tuples and lists: with the value it keys a
    cache so that (1, 1), (1.0, 1), (True, 1) and [1, 1] (equal, or equal-hashing) stay four entries."""
    t = type(v)
    if t is tuple or t is list:
        ts = tuple(map(type, v))
        if tuple in ts or list in ts:       # nested: recurse (flat tuples, the usual case, stop here)
            ts = tuple(map(type_signature, v))
        return (t, ts)
    return t


def memoized(build, maxsize=1024):
    """build(*args), cached on its arguments' values and types (see type_signature), so a call is accepted
    exactly when a fresh process would accept it; arguments that cannot be hashed go to build uncached,
    so its own checks and messages apply. Exceptions are never cached. At most `maxsize` entries (the
    oldest is dropped first); safe from several threads (a race builds an entry twice, never a wrong one)."""
    cache: dict = {}

    def call(*args):
        try:
            key = (args, tuple(map(type_signature, args)))
            hit = cache.get(key)
        except TypeError:        # an unhashable argument: its own check will name it
            return build(*args)
        if hit is None:
            hit = build(*args)
            if len(cache) >= maxsize:
                try:
                    del cache[next(iter(cache))]
                except (KeyError, RuntimeError, StopIteration):   # another thread changed it meanwhile
                    pass
            cache[key] = hit
        return hit

    call.cache_clear = cache.clear
    return call


# --------------------------------------------------------------------------- arrays


def shape_of(a, name: str, ndim: int) -> tuple[int, ...]:
    shape = getattr(a, "shape", None)
    if shape is None:
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {shape}")
    return shape


# --------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about one convolution that its kernels and formulas need, already checked."""

    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    groups: int
    padding_mode: str

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.K, self.P, self.Q)

    @property
    def flops(self) -> int:
        """2·N·K·P·Q·(C/groups)·R·S: multiply-adds of the convolution, counted twice."""
        return 2 * self.N * self.K * self.P * self.Q * (self.C // self.groups) * self.R * self.S


def check_padding_mode(padding_mode, pads, H, W, x_shape) -> str:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
    t, b, l, r = pads
    if padding_mode == "reflect" and (max(t, b) >= H or max(l, r) >= W):
        raise ValueError(
            f"padding {pads} (top, bottom, left, right) is too large for padding_mode='reflect' on input "
            f"{x_shape}: each pad must be smaller than the padded dimension"
        )
    if padding_mode == "circular" and (max(t, b) > H or max(l, r) > W):
        raise ValueError(
            f"padding {pads} (top, bottom, left, right) is too large for padding_mode='circular' on input "
            f"{x_shape}: each pad must be at most the padded dimension"
        )
    return padding_mode


def conv2d_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                    bias_shape=None) -> ConvGeometry:
    """Check a forward convolution's arguments (NCHW input, OIHW weight) and size its output."""
    N, C, H, W = x_shape
    K, Cg, R, S = w_shape
    stride = pair(stride, "stride")
    dilation = pair(dilation, "dilation")
    groups = check_int(groups, "groups", 1)
    if C % groups or K % groups:
        raise ValueError(
            f"groups={groups} must divide both input channels and output channels: "
            f"x {tuple(x_shape)} has C={C}, weight {tuple(w_shape)} has K={K}"
        )
    if Cg * groups != C:
        raise ValueError(
            f"weight {tuple(w_shape)} has {Cg} input channels per group but x {tuple(x_shape)} with "
            f"groups={groups} needs C/groups = {C // groups}"
        )
    if min(C, H, W, K, R, S) < 1 or N < 0:
        raise ValueError(f"x {tuple(x_shape)} and weight {tuple(w_shape)} must have no empty dimension but the "
                         f"batch (N = 0 gives an empty result)")
    if bias_shape is not None and tuple(bias_shape) != (K,):
        raise ValueError(f"bias must have shape ({K},) for weight {tuple(w_shape)}, got {tuple(bias_shape)}")
    spec = padding_spec(padding)
    pads = resolve_padding(spec, (H, W), (R, S), stride, dilation)
    padding_mode = check_padding_mode(padding_mode, pads, H, W, tuple(x_shape))
    P = out_size(H, pads[0], pads[1], R, stride[0], dilation[0])
    Q = out_size(W, pads[2], pads[3], S, stride[1], dilation[1])
    if P < 1 or Q < 1:
        raise ValueError(
            f"kernel {R}x{S} with dilation {dilation} is larger than the padded input: x {tuple(x_shape)} "
            f"padded by {pads} (top, bottom, left, right) gives "
            f"{H + pads[0] + pads[1]}x{W + pads[2] + pads[3]}, weight {tuple(w_shape)}"
        )
    return ConvGeometry(N, C, H, W, K, R, S, P, Q, stride, dilation, pads, groups, padding_mode)


# --------------------------------------------------------------------------- pooling


def conv_transpose2d_output_padding_check(output_padding, stride, dilation):
    op = pair(output_padding, "output_padding", minimum=0)
    for i in range(2):
        if op[i] >= max(stride[i], dilation[i]):
            raise ValueError(
                f"output_padding {op} must be smaller than stride {stride} or dilation {dilation} in each dimension"
            )
    return op


def conv_transpose2d_geometry(x_shape, w_shape, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                              bias_shape=None):
    """(out_shape, g): the transposed convolution's output shape, and the ConvGeometry of the forward
    convolution it is the data gradient of (from an input of out_shape to x's shape: g.P, g.Q = H, W)."""
    N, Cin, H, W = x_shape
    Cin_w, Cog, R, S = w_shape
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    pad = pair(padding, "padding", minimum=0)
    groups = check_int(groups, "groups", 1)
    op = conv_transpose2d_output_padding_check(output_padding, stride, dilation)
    if Cin % groups or Cin_w != Cin:
        raise ValueError(f"weight {tuple(w_shape)} must have x's {Cin} input channels in its first axis, "
                         f"divisible by groups={groups}")
    if min(tuple(x_shape[1:]) + tuple(w_shape)) < 1 or N < 0:
        raise ValueError(f"x {tuple(x_shape)} and weight {tuple(w_shape)} must have no empty dimension but the "
                         f"batch (N = 0 gives an empty result)")
    Cout = Cog * groups
    if bias_shape is not None and tuple(bias_shape) != (Cout,):
        raise ValueError(f"bias must have shape ({Cout},) for weight {tuple(w_shape)} and groups={groups}, "
                         f"got {tuple(bias_shape)}")
    Ho = (H - 1) * stride[0] - 2 * pad[0] + dilation[0] * (R - 1) + op[0] + 1
    Wo = (W - 1) * stride[1] - 2 * pad[1] + dilation[1] * (S - 1) + op[1] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"padding {pad} leaves no output for x {tuple(x_shape)} and weight {tuple(w_shape)}")
    g = ConvGeometry(N, Cout, Ho, Wo, Cin, R, S, H, W, stride, dilation, (pad[0], pad[0], pad[1], pad[1]), groups,
                     "zeros")
    return (N, Cout, Ho, Wo), g


def pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape: with ceil_mode the last window must start inside input + left pad."""
    num = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolGeometry:
    N: int
    C: int
    H: int
    W: int
    P: int
    Q: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (self.N, self.C, self.P, self.Q)


def pool2d_geometry(x_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> PoolGeometry:
    N, C, H, W = x_shape
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else pair(stride, "stride")
    pad = pair(padding, "padding", minimum=0)
    dilation = pair(dilation, "dilation")
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode must be a bool, got {ceil_mode!r}")
    eff = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
    if pad[0] > eff[0] // 2 or pad[1] > eff[1] // 2:
        raise ValueError(
            f"padding {pad} must be at most half of the effective kernel size {eff} (kernel_size {kernel}, "
            f"dilation {dilation}), for input {tuple(x_shape)}"
        )
    if min(C, H, W) < 1 or N < 0:
        raise ValueError(f"x {tuple(x_shape)} must have no empty dimension but the batch (N = 0 gives an empty "
                         f"result)")
    P = pool_out_size(H, kernel[0], stride[0], pad[0], dilation[0], bool(ceil_mode))
    Q = pool_out_size(W, kernel[1], stride[1], pad[1], dilation[1], bool(ceil_mode))
    if P < 1 or Q < 1:
        raise ValueError(
            f"kernel_size {kernel} with dilation {dilation} is larger than the padded input: x {tuple(x_shape)} "
            f"with padding {pad} gives output {P}x{Q}"
        )
    return PoolGeometry(N, C, H, W, P, Q, kernel, stride, pad, dilation, bool(ceil_mode))
