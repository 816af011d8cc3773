"""Output-size formulas, parameter counts and layer-stack summaries.

Conv: P = floor((H + pad_top + pad_bottom − dilation·(R−1) − 1) / stride) + 1, "same" = ceil(H / stride)
for any stride (odd pixel bottom/right). Pooling: PyTorch's rule, ceil_mode included. Shapes are NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from . import _args


def conv2d_output_size(in_hw, kernel_size, stride=1, padding=0, dilation=1) -> tuple[int, int]:
    """(P, Q) of a convolution of an H×W input; raises ValueError if the kernel does not fit."""
    H, W = _args.pair(in_hw, "in_hw")
    R, S = _args.pair(kernel_size, "kernel_size")
    g = _args.conv2d_geometry((1, 1, H, W), (1, 1, R, S), stride, padding, dilation)
    return (g.P, g.Q)


def conv2d_output_shape(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1) -> tuple[int, ...]:
    """(N, K, P, Q) for x (N, C, H, W) and weight (K, C/groups, R, S)."""
    x_shape = _args.shape_of(_Shape(x_shape), "x_shape", 4)
    w_shape = _args.shape_of(_Shape(weight_shape), "weight_shape", 4)
    return _args.conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups).out_shape


def conv_transpose2d_output_size(in_hw, kernel_size, stride=1, padding=0, output_padding=0,
                                 dilation=1) -> tuple[int, int]:
    """(H−1)·stride − 2·padding + dilation·(R−1) + output_padding + 1, per dimension."""
    H, W = _args.pair(in_hw, "in_hw")
    k, s = _args.pair(kernel_size, "kernel_size"), _args.pair(stride, "stride")
    p, d = _args.pair(padding, "padding", 0), _args.pair(dilation, "dilation")
    op = _args.pair(output_padding, "output_padding", 0)
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise ValueError(f"output_padding {op} must be smaller than stride {s} or dilation {d}")
    out = tuple((n - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i, n in enumerate((H, W)))
    if min(out) < 1:
        raise ValueError(f"padding {p} leaves no output for input {(H, W)} and kernel {k}")
    return out


def pool2d_output_size(in_hw, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> tuple[int, int]:
    """(P, Q) of max or average pooling of an H×W input, PyTorch's rule (stride defaults to the kernel
    size; ceil_mode keeps a last window that starts inside the input or its left padding)."""
    H, W = _args.pair(in_hw, "in_hw")
    g = _args.pool2d_geometry((1, 1, H, W), kernel_size, stride, padding, dilation, ceil_mode)
    return (g.P, g.Q)


def conv2d_params(in_channels, out_channels, kernel_size, groups=1, bias=True) -> int:
    """K·(C/groups)·R·S weights, plus K biases."""
    C = _args.check_int(in_channels, "in_channels", 1)
    K = _args.check_int(out_channels, "out_channels", 1)
    R, S = _args.pair(kernel_size, "kernel_size")
    groups = _args.check_int(groups, "groups", 1)
    if C % groups or K % groups:
        raise ValueError(f"groups={groups} must divide in_channels={C} and out_channels={K}")
    return K * (C // groups) * R * S + (K if bias else 0)


def linear_params(in_features, out_features, bias=True) -> int:
    """in_features·out_features weights, plus out_features biases."""
    i = _args.check_int(in_features, "in_features", 1)
    o = _args.check_int(out_features, "out_features", 1)
    return i * o + (o if bias else 0)


class _Shape:
    """Lets shape_of check a plain tuple."""

    def __init__(self, shape):
        if not isinstance(shape, (tuple, list)) or not all(_args._is_int(s) for s in shape):
            raise TypeError(f"a shape must be a tuple of ints, got {shape!r}")
        self.shape = tuple(shape)


# --------------------------------------------------------------------------- layer stacks


@dataclass(frozen=True)
class Conv2d:
    """A convolution layer in a stack (as torch.nn.Conv2d; padding also "same" for any stride)."""
    shown: ClassVar = ("out_channels", "kernel_size")      # always in its description
    out_channels: int
    kernel_size: int | tuple = 3
    stride: int | tuple = 1
    padding: object = 0
    dilation: int | tuple = 1
    groups: int = 1
    bias: bool = True

    def output_shape(self, s):
        """(N, K, P, Q) for an (N, C, H, W) input."""
        N, C, H, W = s
        R, S = _args.pair(self.kernel_size, "kernel_size")
        return conv2d_output_shape((N, C, H, W), (self.out_channels, C // max(self.groups, 1), R, S), self.stride,
                                   self.padding, self.dilation, self.groups)

    def params(self, s):
        """Weights and biases for an input of shape s."""
        return conv2d_params(s[1], self.out_channels, self.kernel_size, self.groups, self.bias)


@dataclass(frozen=True)
class ConvTranspose2d:
    """A transposed convolution layer in a stack (as torch.nn.ConvTranspose2d)."""
    shown: ClassVar = ("out_channels", "kernel_size")
    out_channels: int
    kernel_size: int | tuple = 3
    stride: int | tuple = 1
    padding: int | tuple = 0
    output_padding: int | tuple = 0
    dilation: int | tuple = 1
    groups: int = 1
    bias: bool = True

    def output_shape(self, s):
        hw = conv_transpose2d_output_size(s[2:], self.kernel_size, self.stride, self.padding, self.output_padding,
                                          self.dilation)
        return (s[0], self.out_channels) + hw

    def params(self, s):
        return conv2d_params(s[1], self.out_channels, self.kernel_size, self.groups, self.bias)


@dataclass(frozen=True)
class MaxPool2d:
    """Max pooling in a stack (as torch.nn.MaxPool2d: stride defaults to the kernel size)."""
    shown: ClassVar = ("kernel_size",)
    kernel_size: int | tuple = 2
    stride: int | tuple | None = None
    padding: int | tuple = 0
    dilation: int | tuple = 1
    ceil_mode: bool = False

    def output_shape(self, s):
        return s[:2] + pool2d_output_size(s[2:], self.kernel_size, self.stride, self.padding, self.dilation,
                                          self.ceil_mode)

    def params(self, s):
        return 0


@dataclass(frozen=True)
class AvgPool2d:
    """Average pooling in a stack (as torch.nn.AvgPool2d: stride defaults to the kernel size)."""
    shown: ClassVar = ("kernel_size",)
    kernel_size: int | tuple = 2
    stride: int | tuple | None = None
    padding: int | tuple = 0
    ceil_mode: bool = False

    def output_shape(self, s):
        return s[:2] + pool2d_output_size(s[2:], self.kernel_size, self.stride, self.padding, 1, self.ceil_mode)

    def params(self, s):
        return 0


@dataclass(frozen=True)
class GlobalPool2d:
    """Global max or average pooling ("max" / "avg"): (N, C, H, W) -> (N, C, 1, 1)."""
    shown: ClassVar = ("kind",)
    kind: str = "avg"

    def output_shape(self, s):
        return s[:2] + (1, 1)

    def params(self, s):
        return 0


@dataclass(frozen=True)
class Flatten:
    """(N, ...) -> (N, product of the rest), as torch.nn.Flatten."""
    shown: ClassVar = ()

    def output_shape(self, s):
        n = 1
        for d in s[1:]:
            n *= d
        return (s[0], n)

    def params(self, s):
        return 0


@dataclass(frozen=True)
class Linear:
    """A dense layer on a flat (N, features) input, as torch.nn.Linear."""
    shown: ClassVar = ("out_features",)
    out_features: int
    bias: bool = True

    def output_shape(self, s):
        if len(s) != 2:
            raise ValueError(f"Linear needs a flat (N, features) input, got {s}: put a flatten layer first")
        return (s[0], self.out_features)

    def params(self, s):
        return linear_params(s[1], self.out_features, self.bias)


@dataclass(frozen=True)
class LayerSummary:
    """One layer of a StackSummary: the layer, its input and output shapes, its parameter count."""
    layer: object
    in_shape: tuple
    out_shape: tuple
    params: int


@dataclass
class StackSummary:
    """What summarize() returns: the input shape and one LayerSummary per layer."""
    input_shape: tuple
    rows: list = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def output_shape(self) -> tuple:
        return self.rows[-1].out_shape if self.rows else self.input_shape

    def table(self):
        """A rich Table: one row per layer (its description, output shape, parameters) and the total."""
        from ._console import table as new_table

        table = new_table(show_footer=True)
        table.add_column("layer", footer="total trainable parameters")
        table.add_column("output (N×C×H×W)", justify="right")
        table.add_column("params", justify="right", footer=f"{self.total_params:,}")
        table.add_row("input", _fmt(self.input_shape), "")
        for r in self.rows:
            table.add_row(describe(r.layer), _fmt(r.out_shape), f"{r.params:,}")
        return table

    def format(self) -> str:
        """The table as plain text."""
        from rich.console import Console

        console = Console(width=200, no_color=True, highlight=False)
        with console.capture() as capture:
            console.print(self.table())
        return "\n".join(line.rstrip() for line in capture.get().splitlines())


def summarize(input_shape, layers) -> StackSummary:
    """Shape and parameter count after each layer of a stack; input (C, H, W) or (N, C, H, W)."""
    s = tuple(_Shape(input_shape).shape)
    if len(s) == 3:
        s = (1,) + s
    if len(s) != 4 or min(s) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W) with positive sizes, got {input_shape}")
    summary = StackSummary(s)
    for layer in layers:
        out = layer.output_shape(s)
        summary.rows.append(LayerSummary(layer, s, tuple(out), layer.params(s)))
        s = tuple(out)
    return summary


def _fmt(shape) -> str:
    return "×".join(str(d) for d in shape)


def describe(layer) -> str:
    """'Conv2d(64, 3×3, stride=2, padding=same)': the class name, the fields it always shows (its `shown`:
    output size and kernel, a square kernel as R×R), then the other fields that differ from their defaults."""
    always = ["×".join(map(str, _args.pair(layer.kernel_size, "kernel_size"))) if n == "kernel_size"
              else str(getattr(layer, n)) for n in layer.shown]
    rest = [f"{f.name}={getattr(layer, f.name)}" for f in fields(layer)
            if f.name not in layer.shown and getattr(layer, f.name) != f.default]
    return f"{type(layer).__name__}({', '.join(always + rest)})"


# --------------------------------------------------------------------------- the CLI's layer grammar

_KINDS = {
    "conv": (Conv2d, ("out_channels", "kernel_size")),
    "convt": (ConvTranspose2d, ("out_channels", "kernel_size")),
    "maxpool": (MaxPool2d, ("kernel_size",)),
    "avgpool": (AvgPool2d, ("kernel_size",)),
    "gmaxpool": (lambda: GlobalPool2d("max"), ()),
    "gavgpool": (lambda: GlobalPool2d("avg"), ()),
    "flatten": (Flatten, ()),
    "linear": (Linear, ("out_features",)),
}
LAYER_GRAMMAR = (
    "conv OUT KERNEL [stride= padding= dilation= groups= bias=]; convT OUT KERNEL [stride= padding= "
    "output_padding= dilation= groups= bias=]; maxpool KERNEL [stride= padding= dilation= ceil_mode=]; "
    "avgpool KERNEL [stride= padding= ceil_mode=]; gmaxpool; gavgpool; flatten; linear OUT [bias=]. "
    "Sizes are N or HxW (5x20); padding also 'same', 'valid', or top,bottom,left,right."
)


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("same", "valid"):
        return low
    parts = text.replace("x", ",").split(",")
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"cannot read {text!r}: expected an int, HxW, a,b[,c,d], true/false, same or valid")
    return vals[0] if len(vals) == 1 else vals


def parse_layer(spec: str):
    """'conv 64 7x7 stride=2 padding=3' -> Conv2d(64, (7, 7), stride=2, padding=3). See LAYER_GRAMMAR."""
    tokens = spec.split()
    if not tokens or tokens[0].lower() not in _KINDS:
        raise ValueError(f"unknown layer {spec!r}; layers: {LAYER_GRAMMAR}")
    make, positional = _KINDS[tokens[0].lower()]
    args, kwargs = [], {}
    for tok in tokens[1:]:
        if "=" in tok:
            k, v = tok.split("=", 1)
            kwargs[k] = _value(v)
        else:
            args.append(_value(tok))
    if len(args) != len(positional):
        raise ValueError(f"layer {spec!r} needs {len(positional)} positional value(s): {', '.join(positional) or 'none'}")
    try:
        return make(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"layer {spec!r}: {e}") from None
