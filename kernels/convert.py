"""Elementwise passes between 16-bit storage and float32: widen (float16 / bfloat16 bits -> float32),
narrow (float32 -> 16-bit, rounded to nearest even) and an activation applied to 16-bit data in place.

They carry float16 and bfloat16 through the ops whose kernels are float32-only (see
gpuconv._precision): inputs are widened into float32 temporaries, the float32 kernels run, results are
narrowed into the caller's 16-bit arrays. The activation pass is the GEMM path's late activation
(sigmoid, tanh, elu, ...) on a 16-bit output, computed in float32 and rounded once.

16-bit data moves as raw uint16 bits (kernels/_half.py); every array is a 4-D view, any strides.
"""

import functools

import numpy as np
from numba import cuda, float32, int64

from ._common import ACT_NONE, epilogue, striding_blocks, unflatten_nchw
from ._half import from_f32, to_f32

THREADS = 256
FORMATS = ("f32", "f16", "bf16")        # element formats: float32, or 16-bit bits read as _half's kinds


@functools.cache
def convert_kernel(src, dst):
    """dst[i] = act(src[i]) with src read as format `src` and dst written as format `dst` (FORMATS);
    the arithmetic in float32."""
    if src not in FORMATS or dst not in FORMATS:
        raise ValueError(f"formats must be among {FORMATS}, got {src!r} -> {dst!r}")
    apply = epilogue(np.float32)
    WIDE_IN = src == "f32"
    WIDE_OUT = dst == "f32"

    @cuda.jit(device=True, inline=True)
    def load(v):
        if WIDE_IN:
            return float32(v)
        return to_f32(v, src)

    @cuda.jit(device=True, inline=True)
    def store(v):
        if WIDE_OUT:
            return v
        return from_f32(v, dst)

    @cuda.jit
    def convert(x, y, act, alpha):              # x, y (N, C, P, Q), any strides (may be one array: in place)
        N, C, P, Q = y.shape
        total = int64(N) * C * P * Q
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, p, q = unflatten_nchw(e, C, P, Q)
            y[n, c, p, q] = store(apply(load(x[n, c, p, q]), act, alpha))

    return convert


def launch_convert(shape, src, dst, act=ACT_NONE, alpha=0.0):
    """launch(x, y, stream) for 4-D arrays of `shape`: y = act(x), formats src -> dst (see convert_kernel)."""
    # Launch plan: 1-D grid of 256-thread blocks, one element per thread (q fastest: coalesced),
    # grid-striding past 65535·8 blocks.
    kernel = convert_kernel(src, dst)
    blocks = striding_blocks(np.prod(shape), THREADS)
    alpha = np.float32(alpha)

    def launch(x, y, stream):
        kernel[blocks, THREADS, stream](x, y, act, alpha)

    return launch
