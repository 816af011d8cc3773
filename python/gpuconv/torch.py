"""PyTorch drop-ins on gpuconv's kernels: functional ops, nn modules, and torch.library custom ops.

    import gpuconv.torch as gt
    model = torch.nn.Sequential(gt.Conv2d(3, 16, 3, padding="same", activation="relu"), gt.MaxPool2d(2))
    torch.compile(model, fullgraph=True)      # custom ops: no graph breaks, forward or backward

The modules subclass torch.nn's, take the same arguments (plus gpuconv's: `activation`, `algo`, and
padding="same" for any stride or a (top, bottom, left, right) padding on Conv2d) and hold the same
parameters, so `load_state_dict` takes a torch.nn module's state dict unchanged — a state dict holds
parameters only, so the padding, stride and activation are the module's own (its repr shows them).

Every op is a custom op in the `gpuconv` namespace (torch.ops.gpuconv.conv2d, ...), with a fake
implementation for torch.compile and autograd formulas whose backward is again gpuconv ops: first
derivatives run the fused backward kernels, and with create_graph=True (gradient penalties, double
backward) the backward is itself differentiable, to any order. CUDA tensors stay on the GPU (used in
place, on the current stream); CPU tensors run through the host path (the CUDA simulator on a machine
without a GPU). Importing this module needs PyTorch; `import gpuconv` does not.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from . import _args, _torch_conv_ops, _torch_pool_ops
from .conv import ALGOS
from .pool import divisor_code

__all__ = ["conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "Conv2d", "ConvTranspose2d", "MaxPool2d",
           "AvgPool2d"]


# ----------------------------------------------------------------------------- argument normalisation
# The custom ops' schemas take plain ints, lists, strings and floats: user arguments are checked and
# normalised here (once per distinct set of arguments in eager mode: the results are cached).


class _ConvOptions(NamedTuple):
    stride: tuple
    padding: object            # a (top, bottom, left, right) tuple, "same" or "valid"
    dilation: tuple
    groups: int
    padding_mode: str
    activation: str | None
    alpha: float | None        # the activation's parameter as given (None: its default)
    algo: str


def _conv_options(stride, padding, dilation, groups, padding_mode, activation, algo) -> _ConvOptions:
    stride, dilation = _args.pair(stride, "stride"), _args.pair(dilation, "dilation")
    groups = _args.check_int(groups, "groups", 1)
    padding = _args.padding_spec(padding)
    if padding_mode not in _args.PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(_args.PADDING_MODES)}, got {padding_mode!r}")
    name, param = _args.activation_spec(activation)
    given = (isinstance(activation, (tuple, list)) and activation[1] is not None
             and _args.ACTIVATIONS[name][1] is not None)     # ("gelu", "tanh") is gelu_tanh, which takes none
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    return _ConvOptions(stride, padding, dilation, groups, padding_mode, name, param if given else None, algo)


def _pool_options(kernel_size, stride, padding, dilation, ceil_mode, count_include_pad=True, divisor_override=None):
    kernel = _args.pair(kernel_size, "kernel_size")
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else _args.pair(stride, "stride")
    padding, dilation = _args.pair(padding, "padding", minimum=0), _args.pair(dilation, "dilation")
    for value, name in ((ceil_mode, "ceil_mode"), (count_include_pad, "count_include_pad")):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}")
    divisor = divisor_code(divisor_override) or None
    return kernel, stride, padding, dilation, ceil_mode, count_include_pad, divisor


_cached_conv_options = _args.memoized(_conv_options)
_cached_pool_options = _args.memoized(_pool_options)


def _normalised(cached, uncached, *args):
    # torch.compile traces the plain function (its results become constants of the graph); eager calls
    # hit the cache
    return uncached(*args) if torch.compiler.is_compiling() else cached(*args)


def _check_tensors(x, *params):
    """x a 3-D or 4-D tensor; params (weight, bias): a tensor and a tensor or None. The ops check the rest."""
    for name, t in zip(("x", "weight", "bias"), (x,) + params):
        if not isinstance(t, torch.Tensor) and not (name == "bias" and t is None):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(f"x must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if params and params[0].dim() != 4:
        raise ValueError(f"weight must be 4-D, got shape {tuple(params[0].shape)}")


def _batched(fn, x, *args):
    """torch.nn.functional takes unbatched (C, H, W) input too: run it as a batch of one."""
    if x.dim() == 3:
        out = fn(x.unsqueeze(0), *args)
        return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)
    return fn(x, *args)


# ----------------------------------------------------------------------------- functional


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           activation=None, algo="auto"):
    """F.conv2d on gpuconv's kernels, differentiable to any order: x (N, C, H, W) or (C, H, W), weight
    (K, C/groups, R, S) -> (N, K, P, Q). Also takes gpu_conv2d's padding forms ("same" for any stride,
    (top, bottom, left, right)), padding_mode, a fused `activation` and `algo`."""
    _check_tensors(x, weight, bias)
    o = _normalised(_cached_conv_options, _conv_options, stride, padding, dilation, groups, padding_mode,
                    activation, algo)

    def run(x):
        pads = _args.resolve_padding(o.padding, x.shape[2:], weight.shape[2:], o.stride, o.dilation)
        return _torch_conv_ops.conv2d(x, weight, bias, o.stride, pads, o.dilation, o.groups, o.padding_mode,
                                      o.activation, o.alpha, o.algo)

    return _batched(run, x)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """F.conv_transpose2d on gpuconv's kernels, differentiable to any order: x (N, C_in, H, W) or
    (C_in, H, W), weight (C_in, C_out/groups, R, S)."""
    _check_tensors(x, weight, bias)
    stride, dilation = _args.pair(stride, "stride"), _args.pair(dilation, "dilation")
    padding = _args.pair(padding, "padding", minimum=0)
    output_padding = _args.pair(output_padding, "output_padding", minimum=0)
    return _batched(_torch_conv_ops.conv_transpose2d, x, weight, bias, stride, padding, output_padding,
                    _args.check_int(groups, "groups", 1), dilation)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """F.max_pool2d on gpuconv's kernels, differentiable to any order (deterministic backward)."""
    _check_tensors(x)
    kernel, stride, padding, dilation, ceil_mode, _, _ = _normalised(
        _cached_pool_options, _pool_options, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = _batched(_torch_pool_ops.max_pool2d, x, kernel, stride, padding, dilation, ceil_mode)
    return (y, idx) if return_indices else y


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """F.avg_pool2d on gpuconv's kernels, differentiable to any order."""
    _check_tensors(x)
    kernel, stride, padding, _, ceil_mode, count_include_pad, divisor = _normalised(
        _cached_pool_options, _pool_options, kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
        divisor_override)
    return _batched(_torch_pool_ops.avg_pool2d, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor)


# ----------------------------------------------------------------------------- modules


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d on gpuconv's kernels; extra keywords `activation` (fused) and `algo`.

    padding may also be "same" with any stride or (top, bottom, left, right); `self.padding` and the repr
    hold it as given. Arguments are checked here, at construction."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, activation=None, algo="auto"):
        spec = _args.padding_spec(padding)                  # checks the form before torch.nn sees it
        ours_only = not isinstance(spec, str) and isinstance(padding, (tuple, list)) and len(padding) == 4
        ours_only |= spec == "same" and _args.pair(stride, "stride") != (1, 1)
        super().__init__(in_channels, out_channels, kernel_size, stride, 0 if ours_only else padding, dilation,
                         groups, bias, padding_mode, device, dtype)
        if ours_only:                                       # torch.nn.Conv2d has no such padding: ours
            self.padding = spec
        self.activation = activation
        self.algo = algo
        _conv_options(self.stride, self.padding, self.dilation, self.groups, self.padding_mode, activation, algo)

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                      padding_mode=self.padding_mode, activation=self.activation, algo=self.algo)

    def extra_repr(self):
        s = super().extra_repr()
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        if self.algo != "auto":
            s += f", algo={self.algo!r}"
        return s


class ConvTranspose2d(nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d on gpuconv's kernels (zeros padding, as torch's)."""

    def forward(self, x, output_size=None):
        output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size, 2,
                                              self.dilation)
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, tuple(output_padding),
                                self.groups, self.dilation)


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d on gpuconv's kernels."""

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                          self.return_indices)


class AvgPool2d(nn.AvgPool2d):
    """torch.nn.AvgPool2d on gpuconv's kernels."""

    def forward(self, x):
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                          self.divisor_override)
