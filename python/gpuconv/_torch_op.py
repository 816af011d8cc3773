"""One gpuconv op for PyTorch: a torch.library custom op, and a direct path for plain tensors in eager mode.

The custom op (torch.ops.gpuconv.<name>: schema, fake implementation, autograd) is what torch.compile,
export, dispatch modes (FlopCounterMode, fake tensors) and tensor subclasses see. Called through the
dispatcher from Python it costs several times our own per-call Python (a conv2d with the kernels stubbed
out, best of 15 × 500 calls on a CPU: ≈ 70 µs per forward and ≈ 140 µs forward + backward through the
dispatcher, ≈ 20 and ≈ 70 µs direct), so for plain tensors in eager mode the same implementation runs
directly, or, when a graph is recorded, as an autograd.Function with the same setup and backward: one
implementation, one autograd formula, two ways in.
"""

from __future__ import annotations

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _tensors(args):
    return [a for a in args if isinstance(a, torch.Tensor)]


def _eager_plain(tensors) -> bool:
    """Plain tensors, outside torch.compile, dispatch modes and functorch transforms?"""
    return not (torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack()
                or torch._C._are_functorch_transforms_active()) and all(type(t) in _PLAIN for t in tensors)


def _forward(impl, setup):
    # the forward(ctx, *args) form: a separate setup_context makes apply() bind default arguments through
    # inspect.signature on every call (most of its cost)
    def forward(ctx, *args):
        output = impl(*args)
        setup(ctx, args, output)
        return output

    return forward


class Op:
    """gpuconv::<name>: impl (annotated: the schema is inferred from it), fake, and optionally autograd
    (setup_context(ctx, inputs, output), backward(ctx, *grads), as torch.library.register_autograd)."""

    def __init__(self, name, impl, fake, setup=None, backward=None):
        self.impl = impl
        self.op = torch.library.custom_op(f"gpuconv::{name}", impl, mutates_args=())
        self.op.register_fake(fake)
        self.function = None
        if backward is not None:
            self.op.register_autograd(backward, setup_context=setup)
            returns = self.op._opoverload._schema.returns
            if not any(str(r.type).endswith("[]") for r in returns):      # autograd.Function: no list outputs
                self.function = type(f"{name}_function", (torch.autograd.Function,), {
                    "forward": staticmethod(_forward(impl, setup)), "backward": staticmethod(backward)})

    def __call__(self, *args):
        tensors = _tensors(args)
        if _eager_plain(tensors):
            if not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
                return self.impl(*args)
            if self.function is not None:
                return self.function.apply(*args)
        return self.op(*args)


def concrete(*tensors) -> bool:
    """Are all shapes plain ints (not torch.compile's symbolic sizes)? Then the fakes run the full checks."""
    return all(isinstance(s, int) for t in tensors if t is not None for s in t.shape)


def check_grad_out(grad_out, out_shape, name="grad_out"):
    """A fake's check that grad_out (or the indices) has the forward's output shape."""
    if grad_out is not None and tuple(grad_out.shape) != tuple(out_shape):
        raise ValueError(f"{name} must have the forward's output shape {tuple(out_shape)}, "
                         f"got {tuple(grad_out.shape)}")
