"""gpuconv on dask arrays: convolution and pooling of images larger than one device, chunk by chunk.

    import dask.array as da
    import gpuconv.dask as gd

    x = da.from_zarr(...)                         # (N, C, H, W), chunked over N, H and W
    y = gd.conv2d(x, w, b, padding="same")        # a lazy dask array; y.compute() runs the kernels
    s = gd.filter2d(slide, gpuconv.filters.gaussian(5, 1.5))   # (H, W) or channels-last (H, W, C)

Each block is read with a halo from its neighbours (`dask.array.map_overlap`, derived from the
effective kernel size dilation·(k − 1) + 1) and handed to gpu_conv2d / gpu_max_pool2d /
gpu_avg_pool2d, which return the chunk's own array type: CuPy chunks stay on the GPU, NumPy chunks go
through the host path (the CUDA simulator without a GPU). `x.map_blocks(cupy.asarray)` moves a NumPy-
chunked array to the device.

Chunking: the spatial chunks are moved to window starts so that strided outputs stitch exactly
(gpuconv._tiling explains the plan); chunks smaller than the halo are merged with their neighbour
(automatic rechunk, never an error), and a convolution's channel axis is rechunked to one chunk.
Padding is applied at the image border only: zeros by each border block's own call, reflect /
replicate / circular by `dask.array.pad` on the whole array before the blocks are cut.

Bit for bit: each block runs the same algorithm as one call on the whole array would (algo="auto" is
resolved once, on the whole array's shape, by gpuconv.autotune's rule), so the result equals
gpu_conv2d on the whole array exactly for "direct", "im2col" and "implicit_gemm" (every output is one
fixed-order sum, whatever block it is in), and for both pooling functions. "winograd" and
"winograd_2x2" compute 4×4 / 2×2 output tiles anchored at each block's origin, so they agree only
within their tolerance; "im2col_cublas" leaves the reduction order to cuBLAS. On a GPU, gpu_conv2d's
own algo="auto" times algorithms per shape and may pick another one than this module's rule.
"""

from __future__ import annotations

import functools
import threading

import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array

from . import _args, _interop, _runtime, _tiling, autotune, filters, im2col
from .conv import ALGOS, gpu_conv2d
from .pool import divisor_code, gpu_avg_pool2d, gpu_max_pool2d

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "filter2d"]

_NUMPY_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}   # torch's -> numpy's
_FLOATS = _interop.FLOAT_DTYPES + _interop.HALF_DTYPES
# Numba's CUDA simulator keeps the launch in progress in module state, so two threads launching at once
# (dask's threaded scheduler) break each other's kernels: in the simulator blocks run one at a time.
_SIMULATOR_LOCK = threading.Lock() if _runtime.SIMULATOR else None


# ----------------------------------------------------------------------------- checks


def _check_x(x, ndim=4, name="x"):
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask array (dask.array.from_array(...) wraps a NumPy or CuPy one), "
                        f"got {type(x).__name__}")
    if any(np.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(f"{name} {x.shape} has unknown chunk sizes: call {name}.compute_chunk_sizes() first")
    _args.shape_of(x, name, ndim)
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be {_interop.ACCEPTED}, got {x.dtype}")


def _on_chunks_side(a, name, x):
    """A small operand (weight, bias) as an array of x's chunk type (NumPy or CuPy), same dtype as x."""
    if a is None:
        return None
    if isinstance(a, da.Array):
        raise TypeError(f"{name} must be a NumPy or CuPy array, not a dask array (it is small: compute it)")
    on_gpu = type(x._meta).__module__.split(".")[0] == "cupy"
    if on_gpu:
        import cupy

        a = cupy.ascontiguousarray(cupy.asarray(a))
    else:
        a = np.ascontiguousarray(a.get() if type(a).__module__.split(".")[0] == "cupy" else a)
    if a.dtype != x.dtype:
        raise TypeError(f"mixed dtypes: x is {x.dtype} but {name} is {a.dtype}")
    return a


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


# ----------------------------------------------------------------------------- blocks


def _run_block(block, *, op, plan_h, plan_w, block_id):
    """One block (halo included) -> the outputs it owns. op(block, edges) with edges = (first row of
    blocks, last row, first column, last column) says where the block touches the image border."""
    ih, iw = block_id[2], block_id[3]
    edges = (ih == 0, ih == len(plan_h.chunks) - 1, iw == 0, iw == len(plan_w.chunks) - 1)
    if _SIMULATOR_LOCK is None:
        y = op(block, edges)
    else:
        with _SIMULATOR_LOCK:
            y = op(block, edges)
    h0 = 0 if ih == 0 else plan_h.skip
    w0 = 0 if iw == 0 else plan_w.skip
    return y[:, :, h0:h0 + plan_h.out_chunks[ih], w0:w0 + plan_w.out_chunks[iw]]


def _windowed(x, op, plan_h, plan_w, out_channels):
    """map_overlap of op over x rechunked to the plans: halos only on the spatial axes, none past the
    image (boundary "none": the ops pad the border themselves), the output chunks known up front."""
    x = x.rechunk({2: plan_h.chunks, 3: plan_w.chunks})
    return da.map_overlap(_run_block, x, depth={0: 0, 1: 0, 2: plan_h.depth, 3: plan_w.depth}, boundary="none",
                          trim=False, allow_rechunk=False, align_arrays=False,
                          chunks=(x.chunks[0], out_channels, plan_h.out_chunks, plan_w.out_chunks),
                          meta=meta_from_array(x, ndim=4), dtype=x.dtype, op=op, plan_h=plan_h, plan_w=plan_w)


def _conv_block(block, edges, *, impl, weight, bias, stride, pads, dilation, groups, activation, algo):
    first_h, last_h, first_w, last_w = edges
    t, b, l, r = pads
    return impl(block, weight, bias, stride, (t if first_h else 0, b if last_h else 0, l if first_w else 0,
                                              r if last_w else 0), dilation, groups, padding_mode="zeros",
                activation=activation, algo=algo)


def _pool_block(block, edges, *, impl, args):
    return impl(block, *args)


# ----------------------------------------------------------------------------- convolution


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           activation=None, algo="auto", _impl=None):
    """gpu_conv2d on a dask array x (N, C, H, W) with weight (K, C/groups, R, S) -> a dask array (N, K, P, Q).

    Arguments as gpu_conv2d's (padding: int, pair, (top, bottom, left, right), "valid" or "same");
    weight and bias are NumPy or CuPy arrays of x's dtype, moved to x's chunk type. Chunks over N, H and
    W are kept (moved to window starts, merged where smaller than the halo); C becomes one chunk.
    algo="auto" is resolved once from the whole array's shape (see the module docstring for which
    algorithms equal one gpu_conv2d call bit for bit). Raises ValueError/TypeError before building
    anything. _impl: a function with gpu_conv2d's signature to run on each block (tests).
    """
    _check_x(x)
    w_shape = _args.shape_of(weight, "weight", 4)
    bias_shape = None if bias is None else _args.shape_of(bias, "bias", 1)
    g = _args.conv2d_geometry(x.shape, w_shape, stride, padding, dilation, groups, padding_mode, bias_shape)
    _args.activation_spec(activation)
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {algo!r}")
    if algo == "im2col_cublas":
        im2col.check_cublas()
    weight, bias = _on_chunks_side(weight, "weight", x), _on_chunks_side(bias, "bias", x)
    if algo == "auto":
        algo = autotune.heuristic(g, x.dtype)
    pads = g.pads
    x = x.rechunk({1: -1})
    chunks_h, chunks_w = x.chunks[2], x.chunks[3]
    if g.padding_mode != "zeros":   # the other modes read across the image: pad the whole array once
        t, b, l, r = pads
        x = da.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), mode=_NUMPY_PAD_MODES[g.padding_mode])
        chunks_h, chunks_w = _widen(chunks_h, t, b), _widen(chunks_w, l, r)   # the caller's cuts, shifted
        pads = (0, 0, 0, 0)
    eff_h, eff_w = g.dilation[0] * (g.R - 1) + 1, g.dilation[1] * (g.S - 1) + 1
    plan_h = _tiling.plan_axis(chunks_h, x.shape[2], pads[0], eff_h, g.stride[0], g.P, False)
    plan_w = _tiling.plan_axis(chunks_w, x.shape[3], pads[2], eff_w, g.stride[1], g.Q, False)
    op = functools.partial(_conv_block, impl=_impl or gpu_conv2d, weight=weight, bias=bias, stride=g.stride,
                           pads=pads, dilation=g.dilation, groups=g.groups, activation=activation, algo=algo)
    return _windowed(x, op, plan_h, plan_w, (g.K,))


def _widen(chunks, lo, hi):
    """Chunk sizes with padding added to the first and last chunk."""
    return (chunks[0] + lo,) + chunks[1:-1] + (chunks[-1] + hi,) if len(chunks) > 1 else (chunks[0] + lo + hi,)


# ----------------------------------------------------------------------------- pooling


def _pool(x, g, impl, args):
    eff = [(k - 1) * d + 1 for k, d in zip(g.kernel, g.dilation)]
    plan_h = _tiling.plan_axis(x.chunks[2], g.H, g.pad[0], eff[0], g.stride[0], g.P, True)
    plan_w = _tiling.plan_axis(x.chunks[3], g.W, g.pad[1], eff[1], g.stride[1], g.Q, True)
    return _windowed(x, functools.partial(_pool_block, impl=impl, args=args), plan_h, plan_w, x.chunks[1])


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, _impl=None):
    """gpu_max_pool2d on a dask array x (N, C, H, W) -> a dask array (N, C, P, Q), equal to one call on
    the whole array bit for bit (F.max_pool2d's semantics; no indices). Any chunking over N, C, H, W."""
    _check_x(x)
    g = _args.pool2d_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _pool(x, g, _impl or gpu_max_pool2d, (g.kernel, g.stride, g.pad, g.dilation, g.ceil_mode))


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, _impl=None):
    """gpu_avg_pool2d on a dask array x (N, C, H, W) -> a dask array (N, C, P, Q), equal to one call on
    the whole array bit for bit (F.avg_pool2d's divisor rules at the image border). Any chunking."""
    _check_x(x)
    g = _args.pool2d_geometry(x.shape, kernel_size, stride, padding, 1, ceil_mode)
    cip = _check_bool(count_include_pad, "count_include_pad")
    divisor_code(divisor_override)
    return _pool(x, g, _impl or gpu_avg_pool2d, (g.kernel, g.stride, g.pad, g.ceil_mode, cip, divisor_override))


# ----------------------------------------------------------------------------- image filters


def filter2d(image, kernel, *, stride=1, padding="same", dilation=1, padding_mode="reflect", algo="auto",
             _impl=None):
    """One 2-D filter (R, S) over a dask image (H, W) or channels-last (H, W, C), each channel alike.

    A depthwise convolution (kernel cast to the image's dtype; gpuconv.filters has the classic ones);
    defaults for image processing: output the size of the input ("same"), borders mirrored without
    repeating the edge pixel ("reflect", OpenCV's default border). Returns (P, Q) or (P, Q, C).
    """
    if getattr(image, "ndim", None) not in (2, 3):
        raise ValueError(f"image must be 2-D (H, W) or channels-last 3-D (H, W, C), got shape "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    _check_x(image, image.ndim, "image")
    k = np.asarray(kernel.get() if type(kernel).__module__.split(".")[0] == "cupy" else kernel)
    if k.ndim != 2:
        raise ValueError(f"kernel must be 2-D (R, S), got shape {k.shape}")
    planes = image[None, None] if image.ndim == 2 else image.transpose(2, 0, 1)[None]
    C = planes.shape[1]
    weight = filters.as_weight(k, C, depthwise=True).astype(image.dtype)
    y = conv2d(planes, weight, None, stride, padding, dilation, C, padding_mode=padding_mode, algo=algo,
               _impl=_impl)
    return y[0, 0] if image.ndim == 2 else y[0].transpose(1, 2, 0)
