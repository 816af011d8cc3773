"""Shared fixtures. Importing gpuconv first turns on Numba's CUDA simulator when there is no device."""

import numpy as np
import pytest

import gpuconv

ON_GPU = not gpuconv.SIMULATOR


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def rel_err(out, ref) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN anywhere in out gives inf, so it never passes."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape or not np.all(np.isfinite(out)):
        return float("inf")
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(out - ref) / (denom if denom > 0 else 1.0))
