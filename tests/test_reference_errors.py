"""Every kind of bad input to the reference gets a ValueError or TypeError naming the argument."""

import numpy as np
import pytest

from gpuconv import reference as ref

X = np.zeros((1, 4, 6, 6))
W = np.zeros((2, 4, 3, 3))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(x=np.zeros((4, 6, 6))), ValueError, "x must be 4-D"),
    (dict(weight=np.zeros((2, 4, 3))), ValueError, "weight must be 4-D"),
    (dict(weight=np.zeros((2, 3, 3, 3))), ValueError, r"weight \(2, 3, 3, 3\) has 3 input channels"),
    (dict(groups=3), ValueError, "groups=3 must divide"),
    (dict(groups=0), ValueError, "groups must be >= 1"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(stride=1.5), TypeError, "stride must be an int"),
    (dict(stride=float("nan")), TypeError, "stride"),
    (dict(stride=True), TypeError, "stride"),
    (dict(dilation=(1, 0)), ValueError, r"dilation\[1\] must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=(1, 2, 3)), TypeError, "padding must be"),
    (dict(padding="full"), ValueError, "padding must be"),
    (dict(padding=6, padding_mode="reflect"), ValueError, "too large for padding_mode='reflect'"),
    (dict(padding=7, padding_mode="circular"), ValueError, "too large for padding_mode='circular'"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode must be one of"),
    (dict(weight=np.zeros((2, 4, 7, 7))), ValueError, r"larger than the padded input.*\(1, 4, 6, 6\)"),
    (dict(dilation=3), ValueError, "larger than the padded input"),
    (dict(bias=np.zeros(3)), ValueError, r"bias must have shape \(2,\)"),
    (dict(x=np.zeros((1, 4, 6, 6), dtype=bool)), TypeError, "x must hold real numbers"),
    (dict(x=np.zeros((1, 4, 6, 6), dtype=complex)), TypeError, "x must hold real numbers"),
    (dict(x=None), TypeError, "x must be an array"),
    (dict(activation="swish"), ValueError, "activation must be one of"),
    (dict(activation=("gelu", "exact")), ValueError, "approximate 'none' or 'tanh'"),
    (dict(activation=("leaky_relu", float("inf"))), ValueError, "negative_slope must be finite"),
    (dict(activation=("relu", 1.0)), ValueError, "takes no parameter"),
    (dict(activation=3), TypeError, "activation must be"),
])
def test_conv2d_errors(kwargs, exc, match):
    args = dict(x=X, weight=W)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        ref.conv2d(**args)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(kernel_size=3, padding=2), ValueError, "at most half of the effective kernel size"),
    (dict(kernel_size=2, stride=(1, 2, 3)), TypeError, "stride must be"),
    (dict(kernel_size=7), ValueError, "larger than the padded input"),
    (dict(kernel_size=2, ceil_mode=1), TypeError, "ceil_mode must be a bool"),
])
def test_pool_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ref.max_pool2d(X, **kwargs)


def test_other_errors():
    with pytest.raises(ValueError, match="divisor_override must not be zero"):
        ref.avg_pool2d(X, 2, divisor_override=0)
    with pytest.raises(TypeError, match="count_include_pad"):
        ref.avg_pool2d(X, 2, count_include_pad="yes")
    with pytest.raises(ValueError, match=r"grad_out must have the forward's output shape \(1, 2, 4, 4\)"):
        ref.conv2d_backward(np.zeros((1, 2, 3, 3)), X, W)
    with pytest.raises(ValueError, match="output_padding"):
        ref.conv_transpose2d(X, np.zeros((4, 2, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="first axis"):
        ref.conv_transpose2d(X, np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="in_features"):
        ref.linear(np.zeros((2, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="cols"):
        ref.col2im(np.zeros((1, 5, 16)), (6, 6), 2)
