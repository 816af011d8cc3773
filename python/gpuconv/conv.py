"""gpu_conv2d: check, allocate, launch. Kernels are gpuconv.kernels.direct's; dispatch picks one per shape."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from numba import cuda

from gpuconv.kernels import _common, direct

from . import _args, _interop, _precision, autotune, im2col, winograd

ALGOS = ("auto", "direct", "im2col", "im2col_cublas", "implicit_gemm", "winograd", "winograd_2x2")
GEMM_ALGOS = ("im2col", "im2col_cublas", "implicit_gemm", "winograd", "winograd_2x2")
_DIRECT_KERNELS = {
    "general": direct.launch_conv2d_general,
    "tiled": direct.launch_conv2d_tiled,
    "depthwise": direct.launch_conv2d_depthwise,
}


geometry = _args.memoized(_args.conv2d_geometry)   # (x_shape, w_shape, stride, ..., bias_shape), checked once


def choose_direct_kernel(g, dtype) -> str:
    """The direct kernel dispatch uses for a shape: depthwise for groups == C with a small channel
    multiplier, the tiled kernel where its tile fits shared memory, else the general kernel."""
    itemsize = np.dtype(dtype).itemsize
    if direct.depthwise_fits(g, itemsize):
        return "depthwise"
    if direct.tiled_channels_per_stage(g, itemsize) >= 1:
        return "tiled"
    return "general"


def _direct_kernel_runs(kernel, g, dtype) -> bool:
    itemsize = max(np.dtype(dtype).itemsize, 4)      # 16-bit data is staged in float32
    if kernel == "depthwise":
        return direct.depthwise_runs(g, itemsize)
    if kernel == "tiled":
        return direct.tiled_channels_per_stage(g, itemsize) >= 1
    return True


@functools.lru_cache(maxsize=1024)
def _launcher(g, dtype, kernel, has_bias, act, alpha):
    """A configured launch closure, built once per (shape, options): calls do no planning.
    kernel None lets dispatch choose (once, here). A 16-bit dtype runs the depthwise kernel on the
    arrays' uint16 bits (the only direct kernel with a 16-bit build; see _native_half)."""
    if np.dtype(dtype) in _precision.HALF_DTYPES:
        if kernel not in (None, "depthwise"):
            raise ValueError(f"the {kernel} kernel has no 16-bit build (float16 / bfloat16 are widened for it)")
        kernel, dtype = "depthwise", _precision.fmt(dtype)
    kernel = kernel or choose_direct_kernel(g, dtype)
    return _DIRECT_KERNELS[kernel](g, dtype, _common.PAD_CODES[g.padding_mode], has_bias,
                                   _common.ACT_CODES[act], alpha)


@functools.lru_cache(maxsize=4)
def _dummy_bias(dtype):
    return cuda.to_device(np.zeros(1, dtype=dtype))


def gpu_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
               activation=None, algo="auto", out=None, stream=None, allow_tf32=None, _kernel=None):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with weight (K, C/groups, R, S) -> (N, K, P, Q).

    The semantics of `torch.nn.functional.conv2d` and `gpuconv.reference.conv2d`, plus:
    padding: int, (ph, pw), (top, bottom, left, right), "valid", or "same" for any stride (output
        ceil(H / stride), the odd pixel of padding bottom/right);
    padding_mode: "zeros", "reflect", "replicate" or "circular", as torch.nn.Conv2d;
    activation: None, "relu", "sigmoid", "tanh", "leaky_relu" / ("leaky_relu", slope), "elu" /
        ("elu", alpha), "gelu" / ("gelu", "tanh") (torch's approximate="tanh"), "silu", fused with the bias
        into the kernel's epilogue;
    algo: "direct" (dispatch picks the depthwise, tiled or general kernel), "im2col" (columns + our
        tiled GEMM, workspace capped by gpuconv.set_workspace_limit), "im2col_cublas" (columns +
        cuBLAS through CuPy, for comparison; needs a device and CuPy), "implicit_gemm" (our GEMM with
        the columns gathered from x tile by tile: no workspace), "winograd" / "winograd_2x2"
        (F(4×4, 3×3) / F(2×2, 3×3) for 3×3 stride-1 dilation-1 ungrouped layers; a tile with a non-finite
        result is recomputed directly, so Inf/NaN land as with "direct"), "auto" (on a GPU the
        fastest eligible algorithm, timed on the first call for a shape and cached on disk; in the
        simulator a documented heuristic: see gpuconv.autotune);
    out: an array of the result's shape, dtype and side to write into;
    stream: a Numba, CuPy or PyTorch stream (default: the current stream of the input's library);
    allow_tf32: float32 "im2col" and Winograd (also when "auto" picks them) multiply on TF32
        tensor cores when True (None: gpuconv.allow_tf32(), off by default).

    float32, float64, float16 and bfloat16; x, weight and bias share one dtype and one side. float16
    and bfloat16 run "im2col" ("auto" means it where tensor_cores_pay) on the tensor cores: the columns
    are unfolded from the 16-bit data, multiplied with float32 accumulation, bias and activation applied
    in float32 and the result rounded to the input's dtype. Where "direct" (or "auto", on a layer the
    tensor cores do not pay for) picks the depthwise kernel, its 16-bit build reads and writes the 16-bit
    data itself, likewise in float32 inside; "winograd" / "winograd_2x2" read and write the 16-bit data
    in their transforms, with a float32 workspace and float32 products (gpuconv.winograd); "implicit_gemm"
    gathers the 16-bit data on the tensor cores. Their other algorithms and direct kernels run the float32
    kernels on float32 copies of the operands (gpuconv._precision), rounding the result once. NumPy in -> NumPy out;
    device arrays (CuPy, PyTorch CUDA, Numba, CUDA array interface, DLPack) are used in place and the
    result has the input's type. x may be unbatched, (C, H, W) -> (K, P, Q), and N may be 0 (an empty
    result, nothing launched). A device out= must not overlap x, weight or bias. Raises
    ValueError/TypeError before anything is allocated or launched.
    """
    half = _precision.any_half(x, weight, bias)
    if half and algo not in ("auto", "im2col", "implicit_gemm", "direct", *winograd.ALGOS):
        return _precision.widened(
            lambda x, w, b, s, o: gpu_conv2d(x, w, b, stride, padding, dilation, groups, padding_mode=padding_mode,
                                             activation=activation, algo=algo, out=o, stream=s, _kernel=_kernel),
            [("x", x), ("weight", weight), ("bias", bias)], out, stream)
    if _interop.ndim(x) == 3:
        return _interop.call_unbatched(
            lambda x4, out4: gpu_conv2d(x4, weight, bias, stride, padding, dilation, groups, padding_mode=padding_mode,
                                        activation=activation, algo=algo, out=out4, stream=stream,
                                        allow_tf32=allow_tf32, _kernel=_kernel),
            [("x", x)], out)
    kinds, dtype = _interop.check_operands([("x", x), ("weight", weight), ("bias", bias)], half=half)
    x_shape = _args.shape_of(x, "x", 4)
    w_shape = _args.shape_of(weight, "weight", 4)
    bias_shape = None if bias is None else _args.shape_of(bias, "bias", 1)
    g = geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode, bias_shape)
    act, alpha = _args.activation_spec(activation)
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)} in this version, got {algo!r}")
    if _kernel is not None:    # private (tests, benchmarks): force one direct kernel, if it can run the shape
        if _kernel not in _DIRECT_KERNELS:
            raise ValueError(f"_kernel must be one of {', '.join(_DIRECT_KERNELS)}, got {_kernel!r}")
        if algo not in ("auto", "direct"):
            raise ValueError(f"_kernel picks a direct kernel; it cannot be combined with algo={algo!r}")
        if not _direct_kernel_runs(_kernel, g, dtype):
            raise ValueError(f"_kernel={_kernel!r} cannot run x {x_shape} with weight {w_shape}, groups={g.groups} "
                             f"(depthwise needs groups == C; both need N and their grid's y extent <= 65535 and "
                             f"their tile in shared memory)")
        algo = "direct"
    kind = kinds["x"]
    okind = None if out is None else _interop.check_out(out, g.out_shape, dtype, kind)
    has_bias, act_code = bias is not None, _common.ACT_CODES[act]
    limit = im2col.workspace_limit()
    tc = _precision.tc_kind(dtype, allow_tf32)
    requested = algo
    if half:
        algo = _native_half(g, algo, _kernel)
        if algo is None:                # no 16-bit kernel for this layer and algorithm: widened, checks done
            return _precision.widened(
                lambda x, w, b, s, o: gpu_conv2d(x, w, b, stride, padding, dilation, groups, padding_mode=padding_mode,
                                                 activation=activation, algo=requested, out=o, stream=s,
                                                 _kernel=_kernel),
                [("x", x), ("weight", weight), ("bias", bias)], out, stream)
    if g.N == 0:                # an empty batch: the algorithm must still accept the layer; nothing runs
        if algo != "auto":
            _plan(algo, dataclasses.replace(g, N=1), dtype, has_bias, act_code, alpha, _kernel, limit, tc)
        return _interop.empty(out, g.out_shape, dtype, kind, x, _interop.resolve_stream(stream, kind, x))
    plan = None if algo == "auto" else _plan(algo, g, dtype, has_bias, act_code, alpha, _kernel, limit, tc)

    s = _interop.resolve_stream(stream, kind, x)
    dw = _precision.operand(weight, kinds["weight"], dtype, s)
    viewable = algo == "direct" or _weight_viewable(dw, g)   # device weights are views: nothing allocated yet
    if half and requested == "auto" and not viewable:       # no im2col for this weight: any algorithm, widened
        return _precision.widened(
            lambda x, w, b, s, o: gpu_conv2d(x, w, b, stride, padding, dilation, groups, padding_mode=padding_mode,
                                             activation=activation, out=o, stream=s),
            [("x", x), ("weight", weight), ("bias", bias)], out, stream)
    if algo in GEMM_ALGOS and not viewable:
        im2col.weight_strides(dw.shape, dw.strides, g)          # raises, naming the weight's strides
    key = None
    if algo == "auto":
        candidates = _candidates(g, dtype, viewable, limit)
        if autotune.can_time():
            key = autotune.key_of(_device_name(), g, dtype, has_bias, act_code, tc)
            algo = autotune.tuner().lookup(key)
        if algo not in candidates:
            algo = None if key else _heuristic(g, dtype, viewable, limit)
        if algo:
            plan = _plan(algo, g, dtype, has_bias, act_code, alpha, None, limit, tc)
    dx = _precision.operand(x, kind, dtype, s)
    db = _precision.no_bias(dtype) if bias is None else _precision.operand(bias, kinds["bias"], dtype, s)
    res, dy = _precision.output(out, okind, g.out_shape, dtype, kind, x, s,
                                (("x", dx), ("weight", dw), ("bias", None if bias is None else db)))
    if plan is None:  # pragma: no cover - needs a CUDA device: time each candidate on this call's arrays
        def timer(name):
            return _time_plan(_plan(name, g, dtype, has_bias, act_code, alpha, None, limit, tc), dx, dw, db, dy,
                              kind, x, s)

        plan = _plan(autotune.tuner().choose(key, candidates, timer), g, dtype, has_bias, act_code, alpha, None,
                     limit, tc)
    plan.run(dx, dw, db, dy, kind, x, s)
    return _precision.result(res, dy, dtype, kind, out, s)


TC_ALGOS = ("im2col", "implicit_gemm")     # the algorithms with a tensor-core build (untimed preference first)


@functools.lru_cache(maxsize=1024)
def _native_half(g, algo, kernel):
    """The algorithm a 16-bit call runs on its 16-bit data (TC_ALGOS on the tensor cores, Winograd: its
    transforms' 16-bit builds, "direct": the depthwise kernel's 16-bit build), or None to widen: TC_ALGOS
    and Winograd as asked, "auto" where tensor_cores_pay (then one of TC_ALGOS: timed on a GPU, else
    "im2col"; see _candidates), else "auto" and "direct" where dispatch (in float32, whose staging the
    16-bit build shares) picks the depthwise kernel or `kernel` forces it."""
    if algo in TC_ALGOS or algo in winograd.ALGOS or (algo == "auto" and tensor_cores_pay(g)):
        return algo
    if (kernel or choose_direct_kernel(g, np.float32)) == "depthwise":
        return "direct"
    return None


def tensor_cores_pay(g) -> bool:
    """Is each group's GEMM at least one mma tile deep and tall (K/groups and C/groups·R·S >= 16)? A
    depthwise-like layer would leave nearly all of every 128×128 tensor-core tile empty."""
    return g.K // g.groups >= 16 and g.C // g.groups * g.R * g.S >= 16


class _DirectPlan:
    def __init__(self, launch):
        self.launch = launch

    def run(self, dx, dw, db, dy, kind, like, s):
        self.launch(dx, dw, db, dy, s)


@functools.lru_cache(maxsize=1024)
def _plan(algo, g, dtype, has_bias, act_code, alpha, kernel, limit, tc=None):
    """The configured plan of one algorithm for one shape, options and workspace limit, built once; tc
    (a tensor-core kind, _precision.tc_kind) applies to "im2col", "implicit_gemm" (16-bit) and (TF32)
    Winograd's products."""
    if algo in winograd.ALGOS:
        return winograd.plan(g, dtype, winograd.ALGOS[algo], has_bias, act_code, alpha, limit, tc)
    if algo == "implicit_gemm":     # (16-bit only: the TF32 build spills on sm_80, see kernels/gemm_tc.py)
        return im2col.implicit_plan(g, dtype, has_bias, act_code, alpha, None if tc == "tf32" else tc)
    if algo in ("im2col", "im2col_cublas"):
        if algo == "im2col_cublas":
            im2col.check_cublas()
        return im2col.plan(g, dtype, has_bias, act_code, alpha, limit, algo == "im2col_cublas",
                           tc if algo == "im2col" else None)
    return _DirectPlan(_launcher(g, dtype, kernel, has_bias, _ACT_NAMES[act_code], alpha))


_ACT_NAMES = {v: k for k, v in _common.ACT_CODES.items()}


@functools.lru_cache(maxsize=1024)
def _candidates(g, dtype, viewable, limit):
    """The algorithms "auto" may pick: for 16-bit inputs only the tensor-core ones (see _native_half)."""
    ok = autotune.eligible(g, dtype, viewable)
    return tuple(a for a in ok if a in TC_ALGOS) if dtype in _precision.HALF_DTYPES else tuple(ok)


@functools.lru_cache(maxsize=1024)
def _heuristic(g, dtype, viewable, limit):
    if dtype in _precision.HALF_DTYPES:     # untimed: im2col (its GEMM's loads are 16-byte vectors)
        return next(a for a in TC_ALGOS if a in _candidates(g, dtype, viewable, limit))
    return autotune.heuristic(g, dtype, viewable)


def _weight_viewable(dw, g) -> bool:
    try:
        im2col.weight_strides(dw.shape, dw.strides, g)
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def _device_name() -> str:  # pragma: no cover - needs a CUDA device
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return f"{name} sm_{dev.compute_capability[0]}{dev.compute_capability[1]}"


def _time_plan(plan, dx, dw, db, dy, kind, like, s, reps=3):  # pragma: no cover - needs a CUDA device
    """Median milliseconds of `reps` launches of plan after one warm-up, with CUDA events on stream s."""
    plan.run(dx, dw, db, dy, kind, like, s)
    times = []
    for _ in range(reps):
        start, end = cuda.event(timing=True), cuda.event(timing=True)
        start.record(s)
        plan.run(dx, dw, db, dy, kind, like, s)
        end.record(s)
        end.synchronize()
        times.append(cuda.event_elapsed_time(start, end))
    return sorted(times)[len(times) // 2]
