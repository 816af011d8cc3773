"""Device inputs are used in place by every public op: a CUDA-array-interface object whose __array__
refuses (as CuPy's does) works everywhere, and on the device path nothing is converted or copied between
host and device (the host_copies guard counts copy_to_host, __array__, NumPy's array interfaces and
cuda.to_device). Results equal the same op on NumPy inputs."""

import numpy as np
import pytest
from numba import cuda

import gpuconv as gc
from conftest import CaiArray, to_host

R = np.random.default_rng(7)
DT = np.float64             # float64: its 64×64 GEMM tile makes the simulator ~3× faster than float32's


def rand(*shape, dtype=DT):
    return R.standard_normal(shape).astype(dtype)


def nan(*shape):
    return np.full(shape, np.nan, DT)


X, W, B = rand(2, 3, 5, 5), rand(4, 3, 3, 3), rand(4)          # a 3×3 layer every algorithm takes
GO = rand(2, 4, 5, 5)                                          # its grad_out (padding=1)
WT = rand(3, 2, 3, 3)                                          # conv_transpose2d: C_in 3 -> C_out 2
XP = rand(2, 3, 7, 7)                                          # pooling input
GP = rand(2, 3, 4, 4)                                          # max/avg pool 3, 2, 1 -> 4×4
IDX = gc.gpu_max_pool2d(XP, 3, 2, 1, return_indices=True)[1]
A, BM = rand(9, 13), rand(13, 6)

# name: (inputs, call(**inputs)) for every public op; inputs named out are NaN-filled out= arrays
OPS = {
    **{f"conv2d[{algo}]": (dict(x=X, w=W, b=B, out=nan(2, 4, 5, 5)),
                           lambda x, w, b, out, algo=algo: gc.gpu_conv2d(x, w, b, padding=1, activation="relu",
                                                                         algo=algo, out=out))
       for algo in ("direct", "im2col", "implicit_gemm", "winograd", "winograd_2x2", "auto")},
    "conv2d_backward": (dict(go=GO, x=X, w=W, b=B),
                        lambda go, x, w, b: gc.gpu_conv2d_backward(go, x, w, padding=1, bias=b, activation="tanh")),
    "conv_transpose2d": (dict(x=X, w=WT, out=nan(2, 2, 9, 9)),
                         lambda x, w, out: gc.gpu_conv_transpose2d(x, w, stride=2, padding=1, out=out)),
    "conv_transpose2d_backward": (dict(go=rand(2, 2, 9, 9), x=X, w=WT),
                                  lambda go, x, w: gc.gpu_conv_transpose2d_backward(go, x, w, stride=2, padding=1)),
    "max_pool2d": (dict(x=XP, out=nan(2, 3, 4, 4)),
                   lambda x, out: gc.gpu_max_pool2d(x, 3, 2, 1, return_indices=True, out=out)),
    "avg_pool2d": (dict(x=XP, out=nan(2, 3, 4, 4)), lambda x, out: gc.gpu_avg_pool2d(x, 3, 2, 1, out=out)),
    "global_max_pool2d": (dict(x=XP, out=nan(2, 3, 1, 1)),
                          lambda x, out: gc.gpu_global_max_pool2d(x, return_indices=True, out=out)),
    "global_avg_pool2d": (dict(x=XP, out=nan(2, 3, 1, 1)), lambda x, out: gc.gpu_global_avg_pool2d(x, out=out)),
    "max_pool2d_backward": (dict(go=GP, x=XP, idx=IDX, out=nan(*XP.shape)),
                            lambda go, x, idx, out: gc.gpu_max_pool2d_backward(go, x, 3, 2, 1, indices=idx, out=out)),
    "max_pool2d_backward[recompute]": (dict(go=GP, x=XP),
                                       lambda go, x: gc.gpu_max_pool2d_backward(go, x, 3, 2, 1)),
    "avg_pool2d_backward": (dict(go=GP, x=XP, out=nan(*XP.shape)),
                            lambda go, x, out: gc.gpu_avg_pool2d_backward(go, x, 3, 2, 1, out=out)),
    "global_max_pool2d_backward": (dict(go=GP[:, :, :1, :1], x=XP),
                                   lambda go, x: gc.gpu_global_max_pool2d_backward(go, x)),
    "global_avg_pool2d_backward": (dict(go=GP[:, :, :1, :1], x=XP, out=nan(*XP.shape)),
                                   lambda go, x, out: gc.gpu_global_avg_pool2d_backward(go, x, out=out)),
    "matmul": (dict(a=A, b=BM, out=nan(9, 6)), lambda a, b, out: gc.gpu_matmul(a, b, out=out)),
    "linear": (dict(x=A, w=BM.T.copy(), b=rand(6), out=nan(9, 6)),
               lambda x, w, b, out: gc.gpu_linear(x, w, b, activation="sigmoid", out=out)),
}

MAKERS = {"cuda_array_interface": CaiArray, "numba": lambda a: cuda.to_device(np.ascontiguousarray(a))}


def results(r):
    return [to_host(v) for v in (r if isinstance(r, tuple) else (r,))]


# Every op on both kinds, but Winograd (slow in the simulator; its interop is the other algorithms') on one.
CASES = [(name, maker) for name in OPS for maker in MAKERS if "winograd" not in name or maker != "numba"]


@pytest.mark.parametrize("name, maker", CASES)
def test_device_inputs_in_place_without_host_copies(host_copies, name, maker):
    inputs, call = OPS[name]
    # the host call is also the warm-up: it fills the first-call caches (plans, the dummy bias)
    want = results(call(**{k: (v.copy() if k == "out" else v) for k, v in inputs.items()}))
    dev = {k: MAKERS[maker](v) for k, v in inputs.items()}
    with host_copies() as count:
        got = call(**dev)
    assert sum(count.values()) == 0, f"{name} on {maker} inputs copied between host and device: {dict(count)}"
    got = results(got)
    if "out" in dev:
        assert got[0] is None or np.array_equal(got[0], to_host(dev["out"]), equal_nan=True)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_cai_result_is_a_device_array():
    y = gc.gpu_conv2d(CaiArray(X), CaiArray(W), padding=1)
    assert not isinstance(y, np.ndarray) and hasattr(y, "copy_to_host")


def test_cai_without_dtype_attribute_reads_the_interface():
    class Bare:
        def __init__(self, a):
            self._inner = CaiArray(a)
            self.shape = a.shape

        @property
        def __cuda_array_interface__(self):
            return self._inner.__cuda_array_interface__

    y = gc.gpu_max_pool2d(Bare(XP), 2)
    np.testing.assert_array_equal(to_host(y), gc.gpu_max_pool2d(XP, 2))


def test_cpu_dlpack_object_goes_through_numpy():
    """A CPU array that offers only DLPack (a JAX CPU array, say) is a host input: no CuPy needed."""

    class CpuDlpack:
        def __init__(self, a):
            self._a = a
            self.shape, self.dtype = a.shape, a.dtype

        def __dlpack__(self, **kwargs):
            return self._a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    y = gc.gpu_conv2d(CpuDlpack(X), CpuDlpack(W), CpuDlpack(B), padding=1)
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, gc.gpu_conv2d(X, W, B, padding=1))
    with pytest.raises(TypeError, match="host out must be a NumPy array"):
        gc.gpu_max_pool2d(XP, 2, out=CpuDlpack(np.zeros((2, 3, 3, 3), DT)))
