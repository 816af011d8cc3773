"""gpu_conv2d's GEMM algorithms: unfold the input into columns, then one batched GEMM per chunk
(im2col), or gather the columns' tiles inside the GEMM (implicit_gemm).

Both also run on the tensor cores (gpuconv.kernels.gemm_tc): float16 / bfloat16 operands are unfolded
(or gathered) as raw 16-bit bits (these only move values; zero padding is the bit pattern 0) and
multiplied with float32 accumulation, the result rounded to the dtype; float32 ones on TF32 when allowed.

algo="im2col" multiplies with our GEMM (gpuconv.kernels.gemm), writing straight into the NCHW output
with the bias and (relu / leaky_relu) activation fused; algo="im2col_cublas" multiplies with CuPy's
matmul (cuBLAS), for comparison. Groups are the GEMM's batch. The column buffer (C·R·S × pixels per
image) is processed in chunks of images, or of pixels when one image's columns alone exceed the limit,
so the workspace never exceeds `workspace_limit()` bytes (default 1 GiB; `set_workspace_limit`).
"""

from __future__ import annotations

import functools

import numpy as np

from gpuconv.kernels import _common, epilogue
from gpuconv.kernels import gemm as kgemm
from gpuconv.kernels import gemm_tc as kgemm_tc
from gpuconv.kernels import im2col as kim2col
from gpuconv.kernels import implicit_gemm as kimplicit

from . import _interop, _precision, _runtime

DEFAULT_WORKSPACE_LIMIT = 1 << 30
_limit = DEFAULT_WORKSPACE_LIMIT


def workspace_limit() -> int:
    """The most bytes the im2col column buffer may take (per call)."""
    return _limit


def set_workspace_limit(nbytes) -> int:
    """Cap the im2col column buffer at nbytes (None: back to the 1 GiB default); returns the old cap."""
    global _limit
    if nbytes is None:
        nbytes = DEFAULT_WORKSPACE_LIMIT
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1:
        raise ValueError(f"workspace limit must be a positive number of bytes, got {nbytes!r}")
    old, _limit = _limit, int(nbytes)
    return old


def chunking(g, itemsize, limit):
    """(images, pixels) per chunk: whole images while they fit the limit, else pixels of one image."""
    col_bytes = g.C * g.R * g.S * itemsize           # one pixel's column
    pq = g.P * g.Q
    if col_bytes > limit:
        raise ValueError(f"the im2col workspace limit ({limit} B) is smaller than one column of "
                         f"C·R·S = {g.C}·{g.R}·{g.S} elements ({col_bytes} B); raise it with "
                         f"gpuconv.set_workspace_limit")
    if col_bytes * pq <= limit:
        return min(g.N, limit // (col_bytes * pq)), pq
    pixels = limit // col_bytes
    if pixels > kgemm.tile(np.float32)[1]:
        pixels -= pixels % kgemm.tile(np.float32)[1]  # whole GEMM tiles per chunk
    return 1, pixels


def weight_strides(w_shape, w_strides, g):
    """Byte strides of weight viewed as (groups, K/groups, C/groups·R·S); ValueError if not viewable."""
    merged = _interop.merged_strides(w_shape[1:], w_strides[1:])
    if merged is None:
        raise ValueError(f"the GEMM algorithms need weight {tuple(w_shape)} with contiguous (C/groups, R, S) axes, "
                         f"got strides {tuple(w_strides)}")
    kg = g.K // g.groups
    return (kg * w_strides[0], w_strides[0], merged)



@functools.lru_cache(maxsize=16)
def _copy(shape, dtype):
    """copy(src, dst, stream): a strided -> strided device copy (the activation-gradient pass with none;
    16-bit data: bits through float32 and back, which is exact)."""
    launch = epilogue.launch_activation_grad(shape, _precision.kernel_dtype(dtype), _common.ACT_NONE, 0.0)
    return lambda src, dst, stream: launch(src, src, dst, stream)


def nchw_target(dy, g, dtype, s):
    """(y3, copy_back) for the GEMM's "nchw" store: dy (N, K, P, Q) viewed as (N, K, P·Q), or, when its
    pixels do not merge into one axis (an out= with odd strides), a dense temporary that copy_back()
    copies into dy after the products."""
    merged = _interop.merged_strides((g.P, g.Q), dy.strides[2:])
    if merged is not None:
        return _interop.strided_view(dy, (g.N, g.K, g.P * g.Q), (dy.strides[0], dy.strides[1], merged)), None
    tmp = _interop.allocate(g.out_shape, np.dtype(_storage(dtype)), "numba", None, s)[1]
    y3 = _interop.dense_view(tmp, (g.N, g.K, g.P * g.Q))
    return y3, (lambda: _copy(g.out_shape, np.dtype(dtype))(tmp, dy, s))


def _storage(dtype):
    """The dtype kernels move a dtype's elements as: 16-bit floats as uint16 bits."""
    return _precision.BITS if np.dtype(dtype) in _precision.HALF_DTYPES else np.dtype(dtype)


def column_buffer(n, dtype, kind, like, s):
    """A flat device workspace of n elements for columns of `dtype`, from the caller's library (kind):
    16-bit columns as int16 memory (every library has it) read as uint16 bits."""
    if np.dtype(dtype) in _precision.HALF_DTYPES:
        return _precision.retype(_interop.allocate((n,), np.dtype(np.int16), kind, like, s)[1])
    return _interop.allocate((n,), np.dtype(dtype), kind, like, s)[1]


class Im2colPlan:
    """Everything about one (shape, dtype, options, limit) that does not change between calls; tc: the
    tensor-core GEMM's kind ("f16", "bf16", "tf32") or None (16-bit operands, outputs and bias are
    then uint16 views of their bits)."""

    def __init__(self, g, dtype, has_bias, act, alpha, limit, cublas, tc=None):
        self.g, self.dtype, self.cublas, self.tc = g, np.dtype(dtype), cublas, tc
        self.itemsize = self.dtype.itemsize
        self.images, self.pixels = chunking(g, self.itemsize, limit)
        self.crs_g = g.C // g.groups * g.R * g.S
        self.k_g = g.K // g.groups
        self.im2col = kim2col.launch_im2col(g, _storage(dtype), _common.PAD_CODES[g.padding_mode])
        fused = act in kgemm.FUSED_ACTS and not cublas
        self.bias_mode = kgemm.BIAS_ROW if has_bias else kgemm.BIAS_NONE
        self.act = act if fused else _common.ACT_NONE
        self.alpha = alpha
        late = None if fused or act == _common.ACT_NONE else act
        self.late = None if late is None else epilogue.launch_activation(g.out_shape, _precision.kernel_dtype(dtype), late, alpha)
        self._gemms = {}

    def _gemm(self, nb, npix):
        key = (nb, npix)
        if key not in self._gemms and self.tc:  # at most 4: full and last chunk, along images and pixels
            self._gemms[key] = kgemm_tc.launch_gemm_tc(self.tc, "nchw", self.k_g, npix, self.crs_g,
                                                       nb * self.g.groups, True, True, self.bias_mode, self.act,
                                                       self.alpha)
        elif key not in self._gemms:
            self._gemms[key] = kgemm.launch_gemm(self.dtype, "nchw", self.k_g, npix, self.crs_g, nb * self.g.groups,
                                                 True, True, self.bias_mode, self.act, self.alpha)
        return self._gemms[key]

    def chunks(self):
        g = self.g
        for img0 in range(0, g.N, self.images):
            for pix0 in range(0, g.P * g.Q, self.pixels):
                yield img0, min(self.images, g.N - img0), pix0, min(self.pixels, g.P * g.Q - pix0)

    def run(self, dx, dw, db, dy, kind, like, s):
        g = self.g
        A = _interop.strided_view(dw, (g.groups, self.k_g, self.crs_g), weight_strides(dw.shape, dw.strides, g))
        ws_kind = "cupy" if self.cublas else kind
        buf = column_buffer(self.images * g.C * g.R * g.S * self.pixels, self.dtype, ws_kind, like, s)
        y3, copy_back = (None, None) if self.cublas else nchw_target(dy, g, self.dtype, s)
        for img0, nb, pix0, npix in self.chunks():
            shape = (nb, g.C * g.R * g.S, npix)
            cols = _interop.dense_view(buf, shape)
            self.im2col(dx, cols, img0, pix0, s)
            bshape = (nb * g.groups, self.crs_g, npix)
            B = _interop.dense_view(buf, bshape)
            if self.cublas:
                _cublas_chunk(A, B, db if self.bias_mode else None, dy, g, img0, nb, pix0, npix, s)
            else:
                self._gemm(nb, npix)(A, B, y3, db, img0, pix0, s)
        if copy_back is not None:
            copy_back()
        if self.late is not None:
            self.late(dy, s)


@functools.lru_cache(maxsize=1024)
def plan(g, dtype, has_bias, act, alpha, limit, cublas, tc=None):
    return Im2colPlan(g, dtype, has_bias, act, alpha, limit, cublas, tc)


class ImplicitGemmPlan:
    """algo="implicit_gemm": the GEMM with its B tiles gathered from x (no workspace), one launch over
    every (image, group) (the launcher splits batches past CUDA's grid limit). A pointwise layer (1×1,
    stride 1, no padding) needs no gather: B is x itself, (images·groups, C/groups, H·W), when x's
    strides allow that view. tc: as Im2colPlan's (the tensor-core GEMM, gathering 16-bit bits or
    TF32-rounded floats)."""

    def __init__(self, g, dtype, has_bias, act, alpha, tc=None):
        self.g, self.dtype = g, np.dtype(dtype)
        self.crs_g = g.C // g.groups * g.R * g.S
        self.k_g = g.K // g.groups
        fused = act in kgemm.FUSED_ACTS
        bias_mode = kgemm.BIAS_ROW if has_bias else kgemm.BIAS_NONE
        act_fused = act if fused else _common.ACT_NONE
        mode = _common.PAD_CODES[g.padding_mode]
        self.pointwise = (g.R, g.S, g.stride, g.pads) == (1, 1, (1, 1), (0, 0, 0, 0))
        if self.pointwise:
            extents = (self.k_g, g.P * g.Q, self.crs_g, g.N * g.groups, True, True, bias_mode, act_fused, alpha)
            self.matrix = (kgemm_tc.launch_gemm_tc(tc, "nchw", *extents) if tc else
                           kgemm.launch_gemm(dtype, "nchw", *extents))
        self.gather = kimplicit.launch_implicit_gemm(g, dtype, g.N, mode, bias_mode, act_fused, alpha, tc)
        self._tables = None
        late = None if fused or act == _common.ACT_NONE else act
        self.late = None if late is None else epilogue.launch_activation(g.out_shape, _precision.kernel_dtype(dtype),
                                                                         late, alpha)

    def tables(self):
        """The tap tables on the device, made on first use (one per plan)."""
        if self._tables is None:
            from numba import cuda

            self._tables = tuple(None if t is None else cuda.to_device(t) for t in kimplicit.tap_tables(self.g))
        return self._tables

    def _pointwise_b(self, dx):
        """x as (images·groups, C/groups, H·W) for a pointwise layer, or None if its strides don't allow it."""
        g = self.g
        s0, s1 = dx.strides[0], dx.strides[1]
        pix = _interop.merged_strides((g.H, g.W), dx.strides[2:])
        if pix is None or (g.N > 1 and s0 != g.C * s1):
            return None
        return _interop.strided_view(dx, (g.N * g.groups, g.C // g.groups, g.H * g.W), (s1 * (g.C // g.groups), s1, pix))

    def run(self, dx, dw, db, dy, kind, like, s):
        g = self.g
        A = _interop.strided_view(dw, (g.groups, self.k_g, self.crs_g), weight_strides(dw.shape, dw.strides, g))
        y3, copy_back = nchw_target(dy, g, self.dtype, s)
        B = self._pointwise_b(dx) if self.pointwise else None
        if B is not None:
            self.matrix(A, B, y3, db, 0, 0, s)
        else:
            self.gather(A, dx, y3, db, 0, self.tables(), s)
        if copy_back is not None:
            copy_back()
        if self.late is not None:
            self.late(dy, s)


@functools.lru_cache(maxsize=1024)
def implicit_plan(g, dtype, has_bias, act, alpha, tc=None):
    return ImplicitGemmPlan(g, dtype, has_bias, act, alpha, tc)


def check_cublas():
    """algo='im2col_cublas' needs CuPy on a real device; say so before anything is allocated."""
    if _runtime.SIMULATOR:
        raise ValueError("algo='im2col_cublas' needs a CUDA device (cuBLAS through CuPy); this run is on "
                         "the CUDA simulator")
    try:
        import cupy  # noqa: F401
    except ImportError:
        raise ValueError("algo='im2col_cublas' needs CuPy (pip install 'gpuconv[cu12]' or cupy)") from None


def _cublas_chunk(A, B, db, dy, g, img0, nb, pix0, npix, s):
    """One chunk through cupy.matmul on stream s: y[img0:img0+nb, :, pixels] = W @ cols (+ bias)."""
    import cupy

    with cupy.cuda.ExternalStream(s.handle.value if hasattr(s.handle, "value") else int(s.handle)):
        w = cupy.asarray(A)                                       # (G, K/G, C/G·R·S)
        cols = cupy.asarray(B).reshape(nb, g.groups, w.shape[2], npix)
        prod = cupy.matmul(w, cols).reshape(nb, g.K, npix)        # (nb, K, npix)
        if db is not None:
            prod += cupy.asarray(db)[None, :, None]
        y = cupy.asarray(dy)
        if not y.flags.c_contiguous:
            raise ValueError("algo='im2col_cublas' needs a C-contiguous output")
        y.reshape(g.N, g.K, g.P * g.Q)[img0:img0 + nb, :, pix0:pix0 + npix] = prod
