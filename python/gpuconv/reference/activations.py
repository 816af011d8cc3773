"""Activation functions and their derivatives (PyTorch's definitions), in float64."""

from __future__ import annotations

import numpy as np

from .._args import activation_spec


def relu(z):
    """max(z, 0)."""
    return np.maximum(z, 0.0)


def leaky_relu(z, negative_slope: float = 0.01):
    """z where z > 0, else negative_slope·z."""
    return np.where(z > 0, z, z * negative_slope)


def sigmoid(z):
    """1 / (1 + exp(−z))."""
    # exp of a non-positive argument only, so neither branch overflows
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(z):
    """The hyperbolic tangent of z."""
    return np.tanh(z)


def elu(z, alpha: float = 1.0):
    """z where z > 0, else alpha·(exp(z) − 1)."""
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


def relu_grad(z):
    """d relu / dz; 0 at z = 0, as torch's threshold_backward."""
    return (z > 0).astype(np.float64)


def leaky_relu_grad(z, negative_slope: float = 0.01):
    """d leaky_relu / dz: 1 where z > 0, else negative_slope."""
    return np.where(z > 0, 1.0, negative_slope)


def sigmoid_grad(z):
    """d sigmoid / dz = s·(1 − s), s = sigmoid(z)."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh_grad(z):
    """d tanh / dz = 1 − tanh(z)²."""
    return 1.0 - np.tanh(z) ** 2


def elu_grad(z, alpha: float = 1.0):
    """d elu / dz: 1 where z > 0, else alpha·exp(z)."""
    return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))


_FORWARD = {"relu": relu, "leaky_relu": leaky_relu, "sigmoid": sigmoid, "tanh": tanh, "elu": elu}
_GRAD = {"relu": relu_grad, "leaky_relu": leaky_relu_grad, "sigmoid": sigmoid_grad, "tanh": tanh_grad,
         "elu": elu_grad}
_HAS_PARAM = ("leaky_relu", "elu")


def activation(z, spec):
    """Apply `spec` (None, a name, or (name, parameter)) to the pre-activation z."""
    name, param = activation_spec(spec)
    if name is None:
        return z
    return _FORWARD[name](z, param) if name in _HAS_PARAM else _FORWARD[name](z)


def activation_grad(z, spec):
    """The derivative of `spec` at the pre-activation z (ones for no activation)."""
    name, param = activation_spec(spec)
    if name is None:
        return np.ones_like(z)
    return _GRAD[name](z, param) if name in _HAS_PARAM else _GRAD[name](z)
