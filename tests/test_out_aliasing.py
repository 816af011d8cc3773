"""out= on the device must not overlap any array argument: every op with out= raises ValueError naming
the array before anything is launched (the kernels would read what they had already overwritten; a
race on a GPU). On the host, inputs are copied to the device first, so aliasing is allowed and exact."""

import numpy as np
import pytest
from numba import cuda

import gpuconv as gc
from conftest import CaiArray, to_host

R = np.random.default_rng(3)


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def rand(*shape):
    return R.standard_normal(shape)


def idx_of(x):
    return gc.gpu_max_pool2d(x, 3, 1, 1, return_indices=True)[1]


def conv_weight_in_out():
    """weight and out= carved from one device buffer, overlapping."""
    buf = dev(rand(60))
    return dict(x=dev(rand(1, 2, 5, 5)), weight=buf[:36].reshape(2, 2, 3, 3), out=buf[10:60].reshape(1, 2, 5, 5))


X = rand(1, 2, 5, 5)
# (op, its array arguments on the device, the argument out= overlaps) for every op with out=
CASES = {
    "max_pool2d x": (lambda x, out: gc.gpu_max_pool2d(x, 3, 1, 1, out=out), lambda: dict(x=(d := dev(X)), out=d), "x"),
    "avg_pool2d x": (lambda x, out: gc.gpu_avg_pool2d(x, 3, 1, 1, out=out), lambda: dict(x=(d := dev(X)), out=d), "x"),
    "avg_pool2d x[view]": (lambda x, out: gc.gpu_avg_pool2d(x, 3, 1, 1, out=out),
                           lambda: dict(x=(d := dev(rand(2, 2, 5, 5)))[:1], out=d[1:]), None),
    "global_max_pool2d x": (lambda x, out: gc.gpu_global_max_pool2d(x, out=out),
                            lambda: dict(x=(d := dev(rand(2, 3, 1, 1))), out=d), "x"),
    "global_avg_pool2d x": (lambda x, out: gc.gpu_global_avg_pool2d(x, out=out),
                            lambda: dict(x=(d := dev(rand(2, 3, 1, 1))), out=d), "x"),
    "conv2d x": (lambda x, weight, out: gc.gpu_conv2d(x, weight, padding=1, out=out),
                 lambda: dict(x=(d := dev(X)), weight=dev(rand(2, 2, 3, 3)), out=d), "x"),
    "conv2d weight": (lambda x, weight, out: gc.gpu_conv2d(x, weight, padding=1, out=out), conv_weight_in_out,
                      "weight"),
    "conv2d bias": (lambda x, weight, bias, out: gc.gpu_conv2d(x, weight, bias, padding=1, out=out),
                    lambda: dict(x=dev(X), weight=dev(rand(2, 2, 3, 3)), bias=(d := dev(rand(1, 2, 5, 5)))[0, 0, 0, :2],
                                 out=d), "bias"),
    "conv_transpose2d x": (lambda x, weight, out: gc.gpu_conv_transpose2d(x, weight, padding=1, out=out),
                           lambda: dict(x=(d := dev(X)), weight=dev(rand(2, 2, 3, 3)), out=d), "x"),
    "max_pool2d_backward grad_out": (
        lambda grad_out, x, out: gc.gpu_max_pool2d_backward(grad_out, x, 3, 1, 1, out=out),
        lambda: dict(grad_out=(d := dev(X)), x=dev(X), out=d), "grad_out"),
    "max_pool2d_backward x": (
        lambda grad_out, x, out: gc.gpu_max_pool2d_backward(grad_out, x, 3, 1, 1, out=out),
        lambda: dict(grad_out=dev(X), x=(d := dev(X)), out=d), "x"),
    "max_pool2d_backward indices": (
        lambda grad_out, x, indices, out: gc.gpu_max_pool2d_backward(grad_out, x, 3, 1, 1, indices=indices, out=out),
        lambda: dict(grad_out=dev(X), x=dev(X), indices=(d := dev(idx_of(X))), out=d.view(np.float64)), "indices"),
    "avg_pool2d_backward grad_out": (
        lambda grad_out, x, out: gc.gpu_avg_pool2d_backward(grad_out, x, 3, 1, 1, out=out),
        lambda: dict(grad_out=(d := dev(X)), x=dev(X), out=d), "grad_out"),
    "global_avg_pool2d_backward x": (
        lambda grad_out, x, out: gc.gpu_global_avg_pool2d_backward(grad_out, x, out=out),
        lambda: dict(grad_out=dev(rand(1, 2, 1, 1)), x=(d := dev(X)), out=d), "x"),
    "global_max_pool2d_backward grad_out": (
        lambda grad_out, x, out: gc.gpu_global_max_pool2d_backward(grad_out, x, out=out),
        lambda: dict(grad_out=(d := dev(rand(1, 2, 5, 5)))[:, :, :1, :1], x=dev(X), out=d), "grad_out"),
    "matmul a": (lambda a, b, out: gc.gpu_matmul(a, b, out=out),
                 lambda: dict(a=(d := dev(rand(3, 3))), b=dev(rand(3, 3)), out=d), "a"),
    "matmul b[transposed]": (lambda a, b, out: gc.gpu_matmul(a, b, out=out),
                             lambda: dict(a=dev(rand(3, 3)), b=(d := dev(rand(3, 3))).T, out=d), "b"),
    "linear x": (lambda x, weight, out: gc.gpu_linear(x, weight, out=out),
                 lambda: dict(x=(d := dev(rand(2, 3))), weight=dev(rand(3, 3)), out=d), "x"),
    "linear bias": (lambda x, weight, bias, out: gc.gpu_linear(x, weight, bias, out=out),
                    lambda: dict(x=dev(rand(2, 3)), weight=dev(rand(3, 3)), bias=(d := dev(rand(2, 3)))[1], out=d),
                    "bias"),
}


@pytest.mark.parametrize("case", CASES)
def test_device_out_overlapping_an_input_is_refused(case):
    op, make, name = CASES[case]
    arrays = make()
    before = {k: to_host(v).copy() for k, v in arrays.items()}
    if name is None:                      # separate halves of one buffer: allowed
        op(**arrays)
        return
    with pytest.raises(ValueError, match=rf"out \(.*\) overlaps the memory of {name} "):
        op(**arrays)
    for k, v in arrays.items():           # refused before any launch: nothing was written
        np.testing.assert_array_equal(to_host(v), before[k])


def test_cuda_array_interface_out_aliasing_x():
    d = CaiArray(X)
    with pytest.raises(ValueError, match="overlaps the memory of x"):
        gc.gpu_max_pool2d(d, 3, 1, 1, out=d)


def test_host_aliasing_is_allowed_and_exact():
    """Host inputs are copied to the device before the result is copied back: out= may be an input."""
    for op in (lambda x, out=None: gc.gpu_max_pool2d(x, 3, 1, 1, out=out),
               lambda x, out=None: gc.gpu_conv2d(x, np.ones((2, 2, 3, 3)), padding=1, out=out)):
        x = X.copy()
        want = op(x)
        assert op(x, out=x) is x
        np.testing.assert_array_equal(x, want)
