"""Activation functions and their derivatives (PyTorch's definitions), in float64."""

from __future__ import annotations

import math

import numpy as np

from .._args import activation_spec

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715          # the cubic coefficient of GELU's tanh approximation (as torch's)
_ERFC_SWITCH = 1.0                   # |t| below: erf's positive series; above: erfc's continued fraction
_ERFC_SERIES_TERMS = 40              # at |t| < 1 the series' terms fall below 1e-17 of its sum by then
_ERFC_FRACTION_TERMS = 200           # at |t| = 1 the continued fraction has converged to 3e-15 by then


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


def _erfc(t):
    """erfc(t) = 1 − erf(t), elementwise in float64 (NumPy has no erf): relative error under 1e-14 for
    |t| < 6 and under 1e-13 beyond (exp(−a²) of a rounded a²), measured against math.erfc. |t| < 1: 1 − erf(|t|) from erf's series of positive terms,
    erf(a) = 2/√π · exp(−a²) · Σₙ a·(2a²)ⁿ / (1·3·…·(2n+1)). |t| ≥ 1: the continued fraction
    erfc(a) = exp(−a²)/√π / (a + ½/(a + 1/(a + (3/2)/(a + …)))), evaluated from its tail, which keeps the
    relative accuracy where erfc is tiny (1 − erf would lose it). Negative t: 2 − erfc(−t)."""
    t = np.asarray(t, dtype=np.float64)
    a = np.abs(t)
    small = a < _ERFC_SWITCH
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = np.where(small, a, 0.0)                   # each branch runs on every element: keep both finite
        term = s.copy()
        total = s.copy()
        for n in range(1, _ERFC_SERIES_TERMS):
            term = term * (2.0 * s * s) / (2 * n + 1)
            total = total + term
        erf_small = 2.0 / math.sqrt(math.pi) * np.exp(-s * s) * total
        b = np.where(small, _ERFC_SWITCH, a)
        f = b.copy()
        for k in range(_ERFC_FRACTION_TERMS, 0, -1):
            f = b + (0.5 * k) / f
        erfc_large = np.exp(-b * b) / math.sqrt(math.pi) / f
        out = np.where(small, 1.0 - erf_small, erfc_large)
    return np.where(t < 0, 2.0 - out, out)


def _normal_cdf(z):
    """Φ(z), the standard normal CDF: erfc(−z/√2) / 2 (accurate in the lower tail too)."""
    return 0.5 * _erfc(-np.asarray(z, dtype=np.float64) / math.sqrt(2.0))


def _gelu_tanh_inner(z):
    return _SQRT_2_OVER_PI * (z + _GELU_TANH_CUBIC * z * z * z)


def gelu(z, approximate: str = "none"):
    """GELU, as torch's: z·Φ(z) (Φ the standard normal CDF), or with approximate="tanh"
    ½·z·(1 + tanh(√(2/π)·(z + 0.044715·z³)))."""
    if approximate == "tanh":
        with np.errstate(over="ignore", invalid="ignore"):
            return 0.5 * z * (1.0 + np.tanh(_gelu_tanh_inner(z)))
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    with np.errstate(invalid="ignore"):              # −inf · Φ(−inf) = −inf · 0: NaN, as torch's
        return z * _normal_cdf(z)


def silu(z):
    """SiLU (swish): z·sigmoid(z)."""
    with np.errstate(invalid="ignore"):              # −inf · 0: NaN, as torch's
        return z * sigmoid(z)


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


def gelu_grad(z, approximate: str = "none"):
    """d gelu / dz, as torch's gelu_backward: Φ(z) + z·φ(z) (φ the standard normal density), or for the tanh
    approximation, with t = tanh(√(2/π)·(z + 0.044715·z³)):
    ½·(1 + t) + ½·z·(1 − t²)·√(2/π)·(1 + 3·0.044715·z²)."""
    if approximate == "tanh":
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.tanh(_gelu_tanh_inner(z))
            return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * _GELU_TANH_CUBIC * z * z)
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    with np.errstate(over="ignore", invalid="ignore"):
        return _normal_cdf(z) + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def silu_grad(z):
    """d silu / dz = s·(1 + z·(1 − s)), s = sigmoid(z)."""
    s = sigmoid(z)
    with np.errstate(invalid="ignore"):              # z = −inf: 0 · (−inf), NaN as torch's
        return s * (1.0 + z * (1.0 - s))


_FORWARD = {"relu": relu, "leaky_relu": leaky_relu, "sigmoid": sigmoid, "tanh": tanh, "elu": elu, "gelu": gelu,
            "gelu_tanh": lambda z: gelu(z, "tanh"), "silu": silu}
_GRAD = {"relu": relu_grad, "leaky_relu": leaky_relu_grad, "sigmoid": sigmoid_grad, "tanh": tanh_grad,
         "elu": elu_grad, "gelu": gelu_grad, "gelu_tanh": lambda z: gelu_grad(z, "tanh"), "silu": silu_grad}
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
