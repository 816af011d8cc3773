"""Bad input to gpu_conv2d: a clear ValueError/TypeError naming the argument, nothing launched."""

import numpy as np
import pytest
from numba import cuda

import gpuconv.conv as conv_mod
from gpuconv import gpu_conv2d

X = np.zeros((1, 4, 6, 6), np.float32)
W = np.zeros((2, 4, 3, 3), np.float32)
READ_ONLY = np.zeros((1, 2, 4, 4), np.float32)
READ_ONLY.setflags(write=False)


@pytest.fixture(autouse=True)
def no_launch(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a launch was planned for bad input")
    monkeypatch.setattr(conv_mod, "_launcher", refuse)
    monkeypatch.setattr(cuda, "to_device", refuse)
    monkeypatch.setattr(cuda, "device_array", refuse)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(x=np.zeros((6, 6), np.float32)), ValueError, r"x must be 4-D, got shape \(6, 6\)"),
    (dict(x=np.zeros((1, 1, 4, 6, 6), np.float32)), ValueError, r"x must be 4-D, got shape \(1, 1, 4, 6, 6\)"),
    (dict(x=[[[[0.0]]]]), TypeError, "x must be an array"),
    (dict(out=[[[[0.0]]]]), TypeError, "out must be an array"),
    (dict(out=READ_ONLY), ValueError, r"out \(1, 2, 4, 4\) is read-only"),
    (dict(weight=np.zeros((2, 2, 3, 3), np.float32), groups=2, _kernel="depthwise"), ValueError,
     "_kernel='depthwise' cannot run x"),
    (dict(_kernel="winograd"), ValueError, "_kernel must be one of"),
    (dict(_kernel="tiled", algo="im2col"), ValueError, "cannot be combined"),
    (dict(weight=np.zeros((2, 3, 3, 3), np.float32)), ValueError, "input channels per group"),
    (dict(weight=np.zeros((2, 4, 3, 3), np.float64)), TypeError, "mixed dtypes: x is float32 but weight is float64"),
    (dict(bias=np.zeros(2, np.float64)), TypeError, "mixed dtypes"),
    (dict(bias=np.zeros(3, np.float32)), ValueError, r"bias must have shape \(2,\)"),
    (dict(x=np.zeros((1, 4, 6, 6), np.int32), weight=np.zeros((2, 4, 3, 3), np.int32)), TypeError,
     "x must be float32, float64, float16 or bfloat16"),
    (dict(weight=np.zeros((2, 4, 3, 3), np.float16)), TypeError, "mixed dtypes: x is float32 but weight is float16"),
    (dict(x=np.zeros((1, 4, 6, 6), np.float16), weight=np.zeros((2, 4, 3, 3), np.float16), groups=3), ValueError,
     "groups=3 must divide"),
    (dict(x="image"), TypeError, "x must be an array"),
    (dict(groups=3), ValueError, "groups=3 must divide"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(padding=-2), ValueError, "padding must be >= 0"),
    (dict(padding=6, padding_mode="reflect"), ValueError, "reflect"),
    (dict(padding_mode="wrap"), ValueError, "padding_mode"),
    (dict(weight=np.zeros((2, 4, 9, 9), np.float32)), ValueError, "larger than the padded input"),
    (dict(dilation=(1, float("nan"))), TypeError, "dilation"),
    (dict(activation="swish"), ValueError, "activation must be one of"),
    (dict(activation=("elu", float("nan"))), ValueError, "alpha must be finite"),
    (dict(algo="fft"), ValueError, "algo must be one of"),
    (dict(out=np.zeros((1, 2, 5, 5), np.float32)), ValueError, r"out must have shape \(1, 2, 4, 4\)"),
    (dict(out=np.zeros((1, 2, 4, 4), np.float64)), TypeError, "out must have dtype float32"),
])
def test_errors(kwargs, exc, match):
    args = dict(x=X, weight=W)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        gpu_conv2d(**args)


def test_mixed_host_and_device(monkeypatch):
    monkeypatch.undo()                          # make the device array first, then forbid launches
    d_w = cuda.to_device(W)
    monkeypatch.setattr(conv_mod, "_launcher", lambda *a, **k: (_ for _ in ()).throw(AssertionError("launched")))
    with pytest.raises(TypeError, match="x on host, weight on device"):
        gpu_conv2d(X, d_w)
    with pytest.raises(TypeError, match="out must be on the host"):
        gpu_conv2d(X, W, out=cuda.to_device(np.zeros((1, 2, 4, 4), np.float32)))
