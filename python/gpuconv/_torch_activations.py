"""d act / dz of the fused activations as differentiable torch expressions, for gpuconv.torch's second
derivatives: the kernels apply go · act'(z) in their own epilogue on the first-order path; a graph that
must itself be differentiated needs act'(z) from torch ops, so autograd can take act''(z) too.

Each formula follows the kernels' derivative (gpuconv.kernels._common.activation_grad_fn) exactly: relu's
is 0 at z = 0, a NaN z takes the z <= 0 branch.
"""

from __future__ import annotations

import torch


def _relu(z, alpha):
    return (z > 0).to(z.dtype)


def _leaky_relu(z, alpha):
    return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, alpha))


def _sigmoid(z, alpha):
    s = torch.sigmoid(z)
    return s * (1 - s)


def _tanh(z, alpha):
    t = torch.tanh(z)
    return 1 - t * t


def _elu(z, alpha):
    # exp of min(z, 0): the branch torch.where drops must not overflow, or its zero gradient becomes 0 · inf
    return torch.where(z > 0, torch.ones_like(z), alpha * torch.exp(torch.clamp(z, max=0)))


def _gelu(z, alpha):
    cdf = 0.5 * torch.erfc(-z * 0.7071067811865476)             # Φ(z), accurate in the lower tail
    return cdf + z * torch.exp(-0.5 * z * z) * 0.3989422804014327   # + z·φ(z), φ(z) = exp(−z²/2)/√(2π)


def _gelu_tanh(z, alpha):
    k, c = 0.7978845608028654, 0.044715                          # √(2/π) and the cubic coefficient
    t = torch.tanh(k * (z + c * z * z * z))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * c * z * z)


def _silu(z, alpha):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


DERIVATIVES = {"relu": _relu, "leaky_relu": _leaky_relu, "sigmoid": _sigmoid, "tanh": _tanh, "elu": _elu,
               "gelu": _gelu, "gelu_tanh": _gelu_tanh, "silu": _silu}


def derivative(name: str, alpha: float, z):
    """act'(z) for the activation `name` with its parameter `alpha` (its default already filled in)."""
    try:
        fn = DERIVATIVES[name]
    except KeyError:
        raise NotImplementedError(
            f"gpuconv.torch: second derivatives through the fused activation {name!r} are not implemented "
            f"(available: {', '.join(DERIVATIVES)}); apply it as a separate torch op after the convolution "
            f"to differentiate twice") from None
    return fn(z, alpha)
