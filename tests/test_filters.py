import numpy as np
import pytest

from gpuconv import filters, reference


def test_classic_kernels():
    assert filters.identity(3)[1, 1] == 1 and filters.identity(3).sum() == 1
    np.testing.assert_allclose(filters.box(3).sum(), 1.0)
    g = filters.gaussian(5, 1.0)
    np.testing.assert_allclose(g.sum(), 1.0)
    assert g.argmax() == 12 and np.allclose(g, g.T) and np.allclose(g, g[::-1, ::-1])
    assert filters.sharpen().sum() == 1 and filters.laplacian().sum() == 0
    assert filters.sobel_x().sum() == 0 and np.array_equal(filters.sobel_y(), filters.sobel_x().T)


def test_filters_do_what_they_say():
    ramp = np.tile(np.arange(8.0), (8, 1))[None, None]           # rises left to right by 1
    gx = reference.conv2d(ramp, filters.sobel_x()[None, None])
    gy = reference.conv2d(ramp, filters.sobel_y()[None, None])
    np.testing.assert_allclose(gx, 8.0)                           # 1+2+1 rows, difference of 2 columns
    np.testing.assert_allclose(gy, 0.0)
    np.testing.assert_allclose(reference.conv2d(ramp, filters.laplacian()[None, None]), 0.0)
    np.testing.assert_allclose(reference.conv2d(ramp, filters.identity(3)[None, None], padding=1), ramp)
    np.testing.assert_allclose(reference.conv2d(ramp, filters.box(3)[None, None]), ramp[..., 1:-1, 1:-1])


def test_as_weight_and_errors():
    assert filters.as_weight(filters.sobel_x(), 3, 4).shape == (4, 3, 3, 3)
    assert filters.as_weight(filters.sobel_x(), 3, depthwise=True).shape == (3, 1, 3, 3)
    with pytest.raises(ValueError, match="odd"):
        filters.gaussian(4)
    with pytest.raises(ValueError, match="sigma"):
        filters.gaussian(5, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        filters.gaussian(5, float("nan"))
    with pytest.raises(ValueError, match="2-D"):
        filters.as_weight(np.ones(3))
