"""gpu_conv2d: check, allocate, launch. Kernels are gpuconv.kernels.direct's; dispatch picks one per shape."""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from gpuconv.kernels import _common, direct

from . import _args, _interop, im2col, winograd

ALGOS = ("auto", "direct", "im2col", "im2col_cublas", "implicit_gemm", "winograd", "winograd_2x2")
GEMM_ALGOS = ("im2col", "im2col_cublas", "implicit_gemm", "winograd", "winograd_2x2")
_DIRECT_KERNELS = {
    "general": direct.launch_conv2d_general,
    "tiled": direct.launch_conv2d_tiled,
    "depthwise": direct.launch_conv2d_depthwise,
}


@functools.lru_cache(maxsize=1024)
def _geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode, bias_shape):
    return _args.conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode, bias_shape)


def choose_direct_kernel(g, dtype) -> str:
    """The direct kernel dispatch uses for a shape: depthwise for groups == C with a small channel
    multiplier, the tiled kernel where its tile fits shared memory, else the general kernel."""
    itemsize = np.dtype(dtype).itemsize
    if direct.depthwise_fits(g, itemsize):
        return "depthwise"
    if direct.tiled_channels_per_stage(g, itemsize) >= 1:
        return "tiled"
    return "general"


@functools.lru_cache(maxsize=1024)
def _launcher(g, dtype, kernel, has_bias, act, alpha):
    """A configured launch closure, built once per (shape, options): calls do no planning.
    kernel None lets dispatch choose (once, here)."""
    kernel = kernel or choose_direct_kernel(g, dtype)
    return _DIRECT_KERNELS[kernel](g, dtype, _common.PAD_CODES[g.padding_mode], has_bias,
                                   _common.ACT_CODES[act], alpha)


@functools.lru_cache(maxsize=4)
def _dummy_bias(dtype):
    return cuda.to_device(np.zeros(1, dtype=dtype))


def gpu_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
               activation=None, algo="auto", out=None, stream=None, _kernel=None):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with weight (K, C/groups, R, S) -> (N, K, P, Q).

    The semantics of `torch.nn.functional.conv2d` and `gpuconv.reference.conv2d`, plus:
    padding: int, (ph, pw), (top, bottom, left, right), "valid", or "same" for any stride (output
        ceil(H / stride), the odd pixel of padding bottom/right);
    padding_mode: "zeros", "reflect", "replicate" or "circular", as torch.nn.Conv2d;
    activation: None, "relu", "sigmoid", "tanh", "leaky_relu" / ("leaky_relu", slope), "elu" /
        ("elu", alpha), fused with the bias into the kernel's epilogue;
    algo: "direct" (dispatch picks the depthwise, tiled or general kernel), "im2col" (columns + our
        tiled GEMM, workspace capped by gpuconv.set_workspace_limit), "im2col_cublas" (columns +
        cuBLAS through CuPy, for comparison; needs a device and CuPy), "implicit_gemm" (our GEMM with
        the columns gathered from x tile by tile: no workspace), "winograd" / "winograd_2x2"
        (F(4×4, 3×3) / F(2×2, 3×3) for 3×3 stride-1 dilation-1 ungrouped layers), "auto" (direct, this
        version);
    out: an array of the result's shape, dtype and side to write into;
    stream: a Numba, CuPy or PyTorch stream (default: the current stream of the input's library).

    float32 and float64; x, weight and bias share one dtype and one side. NumPy in -> NumPy out;
    device arrays (CuPy, PyTorch CUDA, Numba, CUDA array interface, DLPack) are used in place and the
    result has the input's type. Raises ValueError/TypeError before anything is allocated or launched.
    """
    kinds, dtype = _interop.check_operands([("x", x), ("weight", weight), ("bias", bias)])
    x_shape = _args.shape_of(x, "x", 4)
    w_shape = _args.shape_of(weight, "weight", 4)
    bias_shape = None if bias is None else _args.shape_of(bias, "bias", 1)
    try:
        g = _geometry(x_shape, w_shape, _args.hashable(stride), _args.hashable(padding),
                      _args.hashable(dilation), groups, padding_mode, bias_shape)
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
        g = _args.conv2d_geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode, bias_shape)
    act, alpha = _args.activation_spec(activation)
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)} in this version, got {algo!r}")
    if _kernel is not None and _kernel not in _DIRECT_KERNELS:
        raise ValueError(f"_kernel must be one of {', '.join(_DIRECT_KERNELS)}, got {_kernel!r}")
    kind = kinds["x"]
    okind = None if out is None else _interop.check_out(out, g.out_shape, dtype, kind)
    if algo in winograd.ALGOS:
        plan = winograd.plan(g, dtype, winograd.ALGOS[algo], bias is not None, _common.ACT_CODES[act], alpha,
                             im2col.workspace_limit())
    elif algo == "implicit_gemm":
        plan = im2col.implicit_plan(g, dtype, bias is not None, _common.ACT_CODES[act], alpha)
    elif algo.startswith("im2col"):
        if algo == "im2col_cublas":
            im2col.check_cublas()
        plan = im2col.plan(g, dtype, bias is not None, _common.ACT_CODES[act], alpha, im2col.workspace_limit(),
                           algo == "im2col_cublas")
    else:
        launch = _launcher(g, dtype, _kernel, bias is not None, act, alpha)

    s = _interop.resolve_stream(stream, kind, x)
    dw = _interop.device_view(weight, kinds["weight"], s)
    if algo in GEMM_ALGOS:  # device weights are views (no allocation yet); host copies always pass
        im2col.weight_strides(dw.shape, dw.strides, g)
    dx = _interop.device_view(x, kind, s)
    db = _dummy_bias(dtype) if bias is None else _interop.device_view(bias, kinds["bias"], s)
    res, dy = _interop.output(out, okind, g.out_shape, dtype, kind, x, s)
    if algo in GEMM_ALGOS:
        plan.run(dx, dw, db, dy, kind, x, s)
    else:
        launch(dx, dw, db, dy, s)
    return _interop.result(res, dy, kind, out, s)
