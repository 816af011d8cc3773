"""Classic image-processing kernels as float64 (R, S) arrays, for use as convolution weights.

They are written for cross-correlation (what gpu_conv2d and F.conv2d compute): sobel_x responds
positively to intensity rising left to right, sobel_y to intensity rising top to bottom.
"""

from __future__ import annotations

import numpy as np

from ._args import check_finite, check_int


def _odd_size(size, name="size"):
    size = check_int(size, name, 1)
    if size % 2 == 0:
        raise ValueError(f"{name} must be odd so the filter has a centre, got {size}")
    return size


def identity(size: int = 3) -> np.ndarray:
    """size×size zeros with 1 at the centre (size odd): the convolution that returns its input."""
    size = _odd_size(size)
    k = np.zeros((size, size))
    k[size // 2, size // 2] = 1.0
    return k


def box(size: int = 3) -> np.ndarray:
    """Mean filter: size×size ones / size²."""
    size = check_int(size, "size", 1)
    return np.full((size, size), 1.0 / (size * size))


def gaussian(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """Sampled Gaussian exp(−(i² + j²) / 2σ²) on a size×size grid centred at 0, normalised to sum 1."""
    size = _odd_size(size)
    sigma = check_finite(sigma, "sigma")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma * sigma))
    return g / g.sum()


def sharpen() -> np.ndarray:
    """3×3 sharpening: 5 at the centre, −1 at its four neighbours (the identity minus the Laplacian)."""
    return np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]])


def sobel_x() -> np.ndarray:
    """3×3 Sobel derivative along x (columns): positive where intensity rises left to right."""
    return np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_y() -> np.ndarray:
    """3×3 Sobel derivative along y (rows): positive where intensity rises top to bottom."""
    return sobel_x().T.copy()


def laplacian() -> np.ndarray:
    """3×3 discrete Laplacian (4-neighbour): −4 at the centre, 1 at its four neighbours."""
    return np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def as_weight(kernel, in_channels: int = 1, out_channels: int = 1, depthwise: bool = False) -> np.ndarray:
    """Tile a 2-D filter into an OIHW weight: (out, in, R, S), or (C, 1, R, S) applied per channel."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise ValueError(f"kernel must be 2-D (R, S), got shape {k.shape}")
    cin = check_int(in_channels, "in_channels", 1)
    if depthwise:
        return np.broadcast_to(k, (cin, 1) + k.shape).copy()
    cout = check_int(out_channels, "out_channels", 1)
    return np.broadcast_to(k, (cout, cin) + k.shape).copy()


__all__ = ["identity", "box", "gaussian", "sharpen", "sobel_x", "sobel_y", "laplacian", "as_weight"]
