"""Training: gpu_conv2d_backward, gpu_conv_transpose2d and its backward, on our own kernels.

- input gradient: kernels.backward's data-gradient gather (strides by skipping taps; no zero-stuffed
  tensor), into the input for zeros padding, else into the padded grid folded back by the mode;
  float16 / bfloat16 on the tensor cores: float32 columns Wᵀ·go (gemm_tc) folded by col2im;
- weight gradient: per image (chunk of pixels), go[img] @ columns[img]ᵀ on our GEMM, the images added
  with the GEMM's accumulate in a fixed order: deterministic, same bits every run. float16 / bfloat16
  on the tensor cores (gemm_tc on 16-bit columns, the sum kept in float32 and rounded once), float32 on
  TF32 when allowed;
- bias gradient: one block per channel, a fixed-order tree.
The activation's gradient is applied first (go · act'(z), z the recomputed pre-activation).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from numba import cuda

from gpuconv.kernels import _common, epilogue
from gpuconv.kernels import backward as kback
from gpuconv.kernels import gemm as kgemm
from gpuconv.kernels import gemm_tc as kgemm_tc
from gpuconv.kernels import im2col as kim2col

from . import _args, _interop, _precision, conv, im2col

NEEDS = ("input", "weight", "bias")


def _check_needs(needs):
    if isinstance(needs, str):
        needs = (needs,)
    try:
        needs = tuple(needs)
    except TypeError:
        raise TypeError(f"needs must be a sequence of {NEEDS}, got {needs!r}") from None
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"needs may hold 'input', 'weight', 'bias'; got {unknown}")
    return frozenset(needs)



class WeightGradPlan:
    """gw (K, C/G, R, S) = Σ over images and pixel chunks of go[img] @ cols[img]ᵀ, per group, in a fixed
    order. `g` is the forward convolution from `inp` (N, C, H, W) to `go` (N, K, P, Q). tc: the
    tensor-core GEMM's kind (_precision.tc_kind) or None; with "f16" / "bf16", go and inp are uint16
    views of their bits and gw is float32 (each product added to it in float32; the caller rounds once)."""

    def __init__(self, g, dtype, limit, tc=None):
        self.g, self.dtype, self.tc = g, np.dtype(dtype), tc
        self.itemsize = self.dtype.itemsize
        self.images, self.pixels = im2col.chunking(g, self.itemsize, limit)
        self.crs_g = g.C // g.groups * g.R * g.S
        self.k_g = g.K // g.groups
        self.im2col = kim2col.launch_im2col(g, im2col._storage(dtype), _common.PAD_CODES[g.padding_mode])
        self._gemms = {}

    def _gemm(self, npix, a_k_contig, accumulate):
        key = (npix, a_k_contig, accumulate)
        if key not in self._gemms and self.tc:
            self._gemms[key] = kgemm_tc.launch_gemm_tc(self.tc, "matrix", self.k_g, self.crs_g, npix, self.g.groups,
                                                       a_k_contig, False, accumulate=accumulate, out_f32=True)
        elif key not in self._gemms:
            self._gemms[key] = kgemm.launch_gemm(self.dtype, "matrix", self.k_g, self.crs_g, npix, self.g.groups,
                                                 a_k_contig, False, accumulate=accumulate)
        return self._gemms[key]

    def run(self, dgo, dinp, dgw, kind, like, s):
        g, isz = self.g, self.itemsize
        crs = g.C * g.R * g.S
        pq = g.P * g.Q
        C3 = _interop.dense_view(dgw, (g.groups, self.k_g, self.crs_g))
        buf = im2col.column_buffer(self.images * crs * self.pixels, self.dtype, kind, like, s)
        sk = dgo.strides[1]
        pix_stride = _interop.merged_strides((g.P, g.Q), dgo.strides[2:])
        no_bias = _precision.no_bias(self.dtype)
        first = True
        for img0 in range(0, g.N, self.images):
            nb = min(self.images, g.N - img0)
            for pix0 in range(0, pq, self.pixels):
                npix = min(self.pixels, pq - pix0)
                shape = (nb, crs, npix)
                cols = _interop.dense_view(buf, shape)
                self.im2col(dinp, cols, img0, pix0, s)
                colsT = _interop.strided_view(buf, (nb, g.groups, npix, self.crs_g),
                                              (crs * npix * isz, self.crs_g * npix * isz, isz, npix * isz))
                for b in range(nb):
                    A = _interop.strided_view(dgo[img0 + b], (g.groups, self.k_g, pq),
                                              (self.k_g * sk, sk, pix_stride))[:, :, pix0:pix0 + npix]
                    self._gemm(npix, kgemm.contiguous_axis_is_last(A), not first)(A, colsT[b], C3, no_bias, 0, 0, s)
                    first = False


@functools.lru_cache(maxsize=1024)
def _weight_plan(g, dtype, limit, tc=None):
    return WeightGradPlan(g, dtype, limit, tc)


class DataGradPlan:
    """gx (N, C, H, W) of the forward g on the tensor cores, in float32: per image and group, the columns
    (C/G·R·S, P·Q) = W[group]ᵀ @ go[img, group] (gemm_tc with a float32 C: each column entry one
    product, unrounded), then col2im's fixed-order gather sums every entry that reads an input element
    (every padding mode), in float32; the caller rounds once. Whole images per chunk of columns."""

    def __init__(self, g, dtype, images):
        self.g, self.dtype, self.images = g, np.dtype(dtype), images
        self.tc = _precision.fmt(dtype)
        self.crs_g = g.C // g.groups * g.R * g.S
        self.k_g = g.K // g.groups
        self.col2im = kim2col.launch_col2im(g, np.float32, _common.PAD_CODES[g.padding_mode])
        self._gemms = {}

    def _gemm(self, a_k_contig, b_n_contig):
        key = (a_k_contig, b_n_contig)
        if key not in self._gemms:
            self._gemms[key] = kgemm_tc.launch_gemm_tc(self.tc, "matrix", self.crs_g, self.g.P * self.g.Q, self.k_g,
                                                       self.g.groups, a_k_contig, b_n_contig, out_f32=True)
        return self._gemms[key]

    def run(self, dgo, dw, gx, kind, like, s):
        """go (N, K, P, Q) with mergeable pixels and weight (as bits), into float32 gx (N, C, H, W)."""
        g = self.g
        pq, crs = g.P * g.Q, g.C * g.R * g.S
        ws = im2col.weight_strides(dw.shape, dw.strides, g)
        # Wᵀ per group as a dense copy (K/G contiguous: the GEMM build reading A along M spills)
        wt = (1, g.groups, self.crs_g, self.k_g)
        A = cuda.device_array(wt, dtype=_precision.BITS, stream=s)
        im2col._copy(wt, self.dtype)(_interop.strided_view(dw, wt, (0, ws[0], ws[2], ws[1])), A, s)
        A = A[0]
        buf = im2col.column_buffer(self.images * crs * pq, np.float32, kind, like, s)
        gp = None
        if g.padding_mode != "zeros":               # col2im's padded-grid scratch
            t, b, l, r = g.pads
            gp = cuda.device_array((self.images, g.C, g.H + t + b, g.W + l + r), dtype=np.float32, stream=s)
        sk = dgo.strides[1]
        pix_stride = _interop.merged_strides((g.P, g.Q), dgo.strides[2:])
        no_bias = _precision.no_bias(self.dtype)
        for img0 in range(0, g.N, self.images):
            nb = min(self.images, g.N - img0)
            cols = _interop.dense_view(buf, (nb * g.groups, self.crs_g, pq))
            for b in range(nb):
                B = _interop.strided_view(dgo[img0 + b], (g.groups, self.k_g, pq), (self.k_g * sk, sk, pix_stride))
                self._gemm(True, kgemm.contiguous_axis_is_last(B))(
                    A, B, cols[b * g.groups:(b + 1) * g.groups], no_bias, 0, 0, s)
            self.col2im(_interop.dense_view(buf, (nb, crs, pq)), gx, gp, img0, s)


@functools.lru_cache(maxsize=1024)
def _data_plan(g, dtype, limit):
    """The tensor-core input gradient's plan, or None where one image's float32 columns pass the
    workspace limit (the widened direct kernel then runs it)."""
    images = limit // (g.C * g.R * g.S * g.P * g.Q * 4)
    return DataGradPlan(g, dtype, min(images, g.N)) if images else None


@functools.lru_cache(maxsize=1024)
def _data_grad(dtype, stride, pads_tl, dilation, groups, origin, has_bias):
    return kback.launch_data_grad(dtype, stride, pads_tl, dilation, groups, origin, has_bias)


# Launchers built once per (shape, options), like every other wrapper's.
_bias_grad = functools.lru_cache(maxsize=1024)(kback.launch_bias_grad)
_activation_grad = functools.lru_cache(maxsize=1024)(epilogue.launch_activation_grad)


@functools.lru_cache(maxsize=1024)
def _fold(g, dtype):
    return kim2col.launch_fold_padding(g, dtype, _common.PAD_CODES[g.padding_mode])


def _input_grad(g, dtype, dgo, dw, dgx, s):
    """gx of the forward g from go: gathered straight into gx (zeros) or via the padded grid (modes)."""
    t, b, l, r = g.pads
    no_bias = conv._dummy_bias(dtype)
    if g.padding_mode == "zeros":
        _data_grad(dtype, g.stride, (t, l), g.dilation, g.groups, (0, 0), False)(dgo, dw, no_bias, dgx, s)
        return
    gp = cuda.device_array((g.N, g.C, g.H + t + b, g.W + l + r), dtype=dtype, stream=s)
    _data_grad(dtype, g.stride, (t, l), g.dilation, g.groups, (-t, -l), False)(dgo, dw, no_bias, gp, s)
    _fold(g, dtype)(gp, dgx, s)


_fill = functools.lru_cache(maxsize=1024)(epilogue.launch_fill)


def _zeros(shape, dtype, kind, like, s):
    """A zero-filled result of the caller's type (a gradient over an empty batch)."""
    if not _interop.is_device(kind):
        return _interop.host_result(np.zeros(shape, dtype), kind)
    res, d = _interop.allocate(shape, dtype, kind, like, s)
    n = int(np.prod(shape))
    _fill(n, dtype)(_interop.dense_view(d, (n,)), s)
    return res


def _empty_batch_grads(needs, in_shape, w_shape, b_shape, dtype, kind, like, s):
    """Gradients over an empty batch, as PyTorch's: an empty input gradient, zero weight and bias ones."""
    return (_interop.empty(None, in_shape, dtype, kind, like, s) if "input" in needs else None,
            _zeros(w_shape, dtype, kind, like, s) if "weight" in needs else None,
            _zeros(b_shape, dtype, kind, like, s) if "bias" in needs else None)


def _pixels_mergeable(shape, d):
    """Is the NCHW device array d viewable as (images, channels, pixels) (H and W mergeable)?"""
    return _interop.merged_strides(shape[2:], d.strides[2:]) is not None


def gpu_conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
                        needs=NEEDS, *, bias=None, activation=None, stream=None, allow_tf32=None):
    """Gradients of gpu_conv2d -> (grad_input, grad_weight, grad_bias), None for what `needs` leaves out.

    Arguments as gpu_conv2d's (every padding form and mode); with a fused activation pass it and the
    forward's bias, and the pre-activation is recomputed to differentiate it. The weight and bias
    gradients are deterministic (fixed-order reductions, no atomics). Results have the inputs' type.
    grad_out and x may be unbatched (3-D; grad_input is then 3-D too); N = 0 gives an empty grad_input
    and zero grad_weight and grad_bias.

    float16 / bfloat16: when each group's GEMM fills an mma tile (K/groups and C/groups·R·S >= 16) and
    no activation is fused, the weight gradient runs on the tensor cores (16-bit columns, float32
    accumulation over every image and pixel) and so does the input gradient (float32 columns Wᵀ·go
    folded by col2im, while one image's columns fit the workspace limit); the bias gradient runs its
    16-bit build on grad_out; the others otherwise, and every gradient with a fused activation, run the
    float32 kernels on float32 copies. Each result is rounded once.
    allow_tf32: float32 weight gradients on TF32 tensor cores when True (None: gpuconv.allow_tf32(),
    off by default).
    """
    if _precision.any_half(grad_out, x, weight, bias):
        return _half_backward(grad_out, x, weight, bias, (stride, padding, dilation, groups, padding_mode), needs,
                              activation, stream, allow_tf32)
    if _interop.ndim(x) == 3:
        return _interop.call_unbatched(
            lambda go4, x4, _: gpu_conv2d_backward(go4, x4, weight, stride, padding, dilation, groups, padding_mode,
                                                   needs, bias=bias, activation=activation, stream=stream,
                                                   allow_tf32=allow_tf32),
            [("grad_out", grad_out), ("x", x)], batched=(0,))
    kinds, dtype = _interop.check_operands([("grad_out", grad_out), ("x", x), ("weight", weight), ("bias", bias)])
    x_shape = _args.shape_of(x, "x", 4)
    w_shape = _args.shape_of(weight, "weight", 4)
    go_shape = _args.shape_of(grad_out, "grad_out", 4)
    bias_shape = None if bias is None else _args.shape_of(bias, "bias", 1)
    g = conv.geometry(x_shape, w_shape, stride, padding, dilation, groups, padding_mode, bias_shape)
    if go_shape != g.out_shape:
        raise ValueError(f"grad_out must have the forward's output shape {g.out_shape}, got {go_shape}")
    needs = _check_needs(needs)
    act, alpha = _args.activation_spec(activation)
    tc = _precision.tc_kind(dtype, allow_tf32)
    limit = im2col.workspace_limit()
    wplan = _weight_plan(g if g.N else dataclasses.replace(g, N=1), dtype, limit, tc) if "weight" in needs else None
    kind = kinds["grad_out"]                                              # (the plan checks the workspace cap)

    s = _interop.resolve_stream(stream, kind, grad_out)
    if g.N == 0:
        return _empty_batch_grads(needs, x_shape, w_shape, (g.K,), dtype, kind, grad_out, s)
    dgo = _interop.device_view(grad_out, kind, s)
    dx = _interop.device_view(x, kinds["x"], s)
    dw = _interop.device_view(weight, kinds["weight"], s)
    if act is not None or not _pixels_mergeable(go_shape, dgo):
        # go · act'(z) into a dense buffer (with no activation: a dense copy of a strided grad_out)
        z = dgo
        if act is not None:
            z = cuda.device_array(g.out_shape, dtype=dtype, stream=s)
            db = conv._dummy_bias(dtype) if bias is None else _interop.device_view(bias, kinds["bias"], s)
            conv._launcher(g, dtype, None, bias is not None, None, 0.0)(dx, dw, db, z, s)
        dense = cuda.device_array(g.out_shape, dtype=dtype, stream=s)
        _activation_grad(g.out_shape, dtype, _common.ACT_CODES[act], alpha)(dgo, z, dense, s)
        dgo = dense

    results = []
    if "input" in needs:
        res, dgx = _interop.output(None, None, x_shape, dtype, kind, grad_out, s)
        _input_grad(g, dtype, dgo, dw, dgx, s)
        results.append(_interop.result(res, dgx, kind, None, s))
    else:
        results.append(None)
    if "weight" in needs:
        res, dgw = _interop.output(None, None, w_shape, dtype, kind, grad_out, s)
        wplan.run(dgo, dx, dgw, kind, grad_out, s)
        results.append(_interop.result(res, dgw, kind, None, s))
    else:
        results.append(None)
    if "bias" in needs:
        res, dgb = _interop.output(None, None, (g.K,), dtype, kind, grad_out, s)
        _bias_grad(g.K, dtype)(dgo, dgb, s)
        results.append(_interop.result(res, dgb, kind, None, s))
    else:
        results.append(None)
    return tuple(results)


def _half_backward(grad_out, x, weight, bias, conf, needs, activation, stream, allow_tf32):
    """gpu_conv2d_backward for 16-bit operands: every check first (on float32 stand-ins), then the weight
    and input gradients on the tensor cores where gpu_conv2d_backward says, the bias gradient by its
    16-bit build, the rest widened."""
    named = [("grad_out", grad_out), ("x", x), ("weight", weight), ("bias", bias)]

    def float32_op(needs):
        return lambda go, x, w, b, s, _: gpu_conv2d_backward(go, x, w, *conf, needs, bias=b, activation=activation,
                                                             stream=s, allow_tf32=allow_tf32)

    checked = _precision.probe(float32_op(needs), named)
    kinds, dtype, _ = checked
    needs = _check_needs(needs)
    x_shape = _args.shape_of(x, "x", _interop.ndim(x))
    w_shape = _args.shape_of(weight, "weight", 4)
    g = conv.geometry(x_shape if len(x_shape) == 4 else (1,) + x_shape, w_shape, *conf,
                      None if bias is None else _args.shape_of(bias, "bias", 1))
    if activation is not None or g.N == 0:
        return _precision.widened(float32_op(tuple(needs)), named, None, stream, checked)
    kind = kinds["grad_out"]
    s = _interop.resolve_stream(stream, kind, grad_out)
    limit = im2col.workspace_limit()
    tc = conv.tensor_cores_pay(g)
    dplan = dw = None
    if "input" in needs and tc:
        dw = _precision.bits_view(weight, kinds["weight"], s)        # (a device weight: a view, nothing allocated)
        dplan = _data_plan(g, dtype, limit) if conv._weight_viewable(dw, g) else None
    native = needs & {"bias"} | (needs & {"weight"} if tc else set()) | ({"input"} if dplan else set())
    rest = tuple(n for n in NEEDS if n in needs and n not in native)
    gx, gw, _ = _precision.widened(float32_op(rest), named, None, stream, checked) if rest else (None, None, None)

    dgo = _precision.as_4d(_precision.bits_view(grad_out, kind, s))
    if native & {"input", "weight"} and not _pixels_mergeable(g.out_shape, dgo):   # a dense copy the GEMMs walk
        dense = cuda.device_array(g.out_shape, dtype=_precision.BITS, stream=s)
        im2col._copy(g.out_shape, dtype)(dgo, dense, s)
        dgo = dense
    if "input" in native:
        gx32 = cuda.device_array((g.N, g.C, g.H, g.W), dtype=np.float32, stream=s)
        dplan.run(dgo, dw, gx32, kind, grad_out, s)
        gx = _narrowed(gx32, x_shape, dtype, kind, grad_out, s)
    gb = None
    if "bias" in native:                    # the 16-bit bias-gradient build: grad_out read once, no copies
        res, gb_bits = _precision.bits_output(None, None, (g.K,), dtype, kind, grad_out, s)
        _bias_grad(g.K, _precision.kernel_dtype(dtype))(dgo, gb_bits, s)
        gb = _precision.bits_result(res, gb_bits, dtype, kind, None, s)
    if "weight" in native:
        dx = _precision.as_4d(_precision.bits_view(x, kinds["x"], s))
        gw32 = cuda.device_array(w_shape, dtype=np.float32, stream=s)
        _weight_plan(g, dtype, limit, _precision.fmt(dtype)).run(dgo, dx, gw32, kind, grad_out, s)
        gw = _narrowed(gw32, w_shape, dtype, kind, grad_out, s)
    return gx, gw, gb


def _narrowed(d32, shape, dtype, kind, like, s):
    """A float32 device result rounded once into a 16-bit result of the caller's type and `shape`."""
    res, d_bits = _precision.bits_output(None, None, shape, dtype, kind, like, s)
    _precision.narrow_into(d32, d_bits, dtype, s)
    return _precision.bits_result(res, d_bits, dtype, kind, None, s)


# ----------------------------------------------------------------------------- transposed convolution


_transpose_geometry = _args.memoized(_args.conv_transpose2d_geometry)


def gpu_conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                         out=None, stream=None):
    """Transposed convolution of x (N, C_in, H, W) with weight (C_in, C_out/groups, R, S), as
    F.conv_transpose2d: output (N, C_out, (H−1)·sh − 2·ph + dh·(R−1) + oph + 1, ...). It is the input
    gradient of a convolution, computed by the same gather kernel; same interop, out= and stream= (a
    device out= must not overlap x, weight or bias), unbatched (C_in, H, W) x and N = 0 as gpu_conv2d."""
    if _precision.any_half(x, weight, bias):
        return _precision.widened(
            lambda x, w, b, s, o: gpu_conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation,
                                                       out=o, stream=s),
            [("x", x), ("weight", weight), ("bias", bias)], out, stream)
    if _interop.ndim(x) == 3:
        return _interop.call_unbatched(
            lambda x4, out4: gpu_conv_transpose2d(x4, weight, bias, stride, padding, output_padding, groups, dilation,
                                                  out=out4, stream=stream), [("x", x)], out)
    kinds, dtype = _interop.check_operands([("x", x), ("weight", weight), ("bias", bias)])
    x_shape = _args.shape_of(x, "x", 4)
    w_shape = _args.shape_of(weight, "weight", 4)
    bias_shape = None if bias is None else _args.shape_of(bias, "bias", 1)
    out_shape, g = _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation, bias_shape)
    kind = kinds["x"]
    okind = None if out is None else _interop.check_out(out, out_shape, dtype, kind)
    launch = _data_grad(dtype, g.stride, (g.pads[0], g.pads[2]), g.dilation, g.groups, (0, 0), bias is not None)

    s = _interop.resolve_stream(stream, kind, x)
    if g.N == 0:
        return _interop.empty(out, out_shape, dtype, kind, x, s)
    dx = _interop.device_view(x, kind, s)
    dw = _interop.device_view(weight, kinds["weight"], s)
    db = conv._dummy_bias(dtype) if bias is None else _interop.device_view(bias, kinds["bias"], s)
    res, dy = _interop.output(out, okind, out_shape, dtype, kind, x, s,
                              (("x", dx), ("weight", dw), ("bias", None if bias is None else db)))
    launch(dx, dw, db, dy, s)
    return _interop.result(res, dy, kind, out, s)


def gpu_conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
                                  needs=NEEDS, *, stream=None):
    """Gradients of gpu_conv_transpose2d -> (grad_input, grad_weight, grad_bias), None where not needed.

    grad_input is the forward convolution of grad_out with the same weight; grad_weight the
    convolution's weight gradient with the roles of input and output exchanged (deterministic).
    Unbatched operands and N = 0 as gpu_conv2d_backward."""
    if _precision.any_half(grad_out, x, weight):
        return _precision.widened(
            lambda go, x, w, s, _: gpu_conv_transpose2d_backward(go, x, w, stride, padding, output_padding, groups,
                                                              dilation, needs, stream=s),
            [("grad_out", grad_out), ("x", x), ("weight", weight)], None, stream)
    if _interop.ndim(x) == 3:
        return _interop.call_unbatched(
            lambda go4, x4, _: gpu_conv_transpose2d_backward(go4, x4, weight, stride, padding, output_padding, groups,
                                                             dilation, needs, stream=stream),
            [("grad_out", grad_out), ("x", x)], batched=(0,))
    kinds, dtype = _interop.check_operands([("grad_out", grad_out), ("x", x), ("weight", weight)])
    x_shape = _args.shape_of(x, "x", 4)
    w_shape = _args.shape_of(weight, "weight", 4)
    go_shape = _args.shape_of(grad_out, "grad_out", 4)
    out_shape, g = _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, groups, dilation, None)
    if go_shape != out_shape:
        raise ValueError(f"grad_out must have the forward's output shape {out_shape}, got {go_shape}")
    needs = _check_needs(needs)
    limit = im2col.workspace_limit()
    wplan = _weight_plan(g if g.N else dataclasses.replace(g, N=1), dtype, limit) if "weight" in needs else None
    kind = kinds["grad_out"]

    s = _interop.resolve_stream(stream, kind, grad_out)
    if g.N == 0:
        return _empty_batch_grads(needs, x_shape, w_shape, (g.C,), dtype, kind, grad_out, s)
    dgo = _interop.device_view(grad_out, kind, s)
    dx = _interop.device_view(x, kinds["x"], s)
    dw = _interop.device_view(weight, kinds["weight"], s)
    results = [None, None, None]
    if "input" in needs:
        res, dgx = _interop.output(None, None, x_shape, dtype, kind, grad_out, s)
        conv._launcher(g, dtype, None, False, None, 0.0)(dgo, dw, conv._dummy_bias(dtype), dgx, s)
        results[0] = _interop.result(res, dgx, kind, None, s)
    if "weight" in needs:
        if not _pixels_mergeable(x_shape, dx):
            dense = cuda.device_array(x_shape, dtype=dtype, stream=s)
            _activation_grad(x_shape, dtype, _common.ACT_NONE, 0.0)(dx, dx, dense, s)
            dx = dense
        res, dgw = _interop.output(None, None, w_shape, dtype, kind, grad_out, s)
        wplan.run(dx, dgo, dgw, kind, grad_out, s)      # x plays the convolution's output gradient
        results[1] = _interop.result(res, dgw, kind, None, s)
    if "bias" in needs:
        res, dgb = _interop.output(None, None, (g.C,), dtype, kind, grad_out, s)
        _bias_grad(g.C, dtype)(dgo, dgb, s)
        results[2] = _interop.result(res, dgb, kind, None, s)
    return tuple(results)
