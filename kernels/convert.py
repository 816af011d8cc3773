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
from numba import cuda, float32, int64, uint64

from ._common import ACT_NONE, activation_fn, general_coords
from ._flat import load as flat_load
from ._flat import store as flat_store
from ._half import from_f32, to_f32
from .epilogue import PER_THREAD, THREADS, _dense_start, _ElementwiseLauncher

FORMATS = ("f32", "f16", "bf16")        # element formats: float32, or 16-bit bits read as _half's kinds


@functools.cache
def convert_kernel(src, dst, act=ACT_NONE, dense=True):
    """dst[i] = act(src[i]) with src read as format `src` and dst written as format `dst` (FORMATS);
    the arithmetic in float32, the activation (an ACT_ code) compiled in. Two variants, as the
    activation pass (kernels/epilogue.py): dense (both arrays C-contiguous, walked flat, PER_THREAD
    elements per thread) and general (any strides, a plane grid; see _common)."""
    if src not in FORMATS or dst not in FORMATS:
        raise ValueError(f"formats must be among {FORMATS}, got {src!r} -> {dst!r}")
    apply = activation_fn(np.float32, act)
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
    def convert(x, y,                               # (N, C, P, Q) both (may be one array: in place)
                alpha,                              # the activation's parameter
                mag, sft, qblocks, o0, o1, o2):     # general: plane grid (see _common)
        if dense:
            first, left = _dense_start(y.size)
            for k in range(PER_THREAD):
                if k * THREADS < left:
                    i = int64(k * THREADS)
                    flat_store(y, first, i, store(apply(load(flat_load(x, first, i)), alpha)))
        else:
            n, c, p, q = general_coords(mag, sft, qblocks, o0, o1, o2)
            if p < y.shape[2] and q < y.shape[3]:
                n, c, p, q = uint64(n), uint64(c), uint64(p), uint64(q)   # unsigned: no wraparound code
                y[n, c, p, q] = store(apply(load(x[n, c, p, q]), alpha))

    return convert


@functools.lru_cache(maxsize=1024)
def launch_convert(shape, src, dst, act=ACT_NONE, alpha=0.0):
    """launch(x, y, stream) for 4-D arrays of `shape`: y = act(x), formats src -> dst (see convert_kernel)."""
    # Launch plan: as the activation pass: dense: a 1-D grid of 256-thread blocks, 4 elements per
    # thread (256 apart); general: a plane grid, one element per thread, q fastest.
    run = _ElementwiseLauncher(functools.partial(convert_kernel, src, dst, act), tuple(int(v) for v in shape))
    scalars = (np.float32(alpha),)

    def launch(x, y, stream):
        run((x, y), scalars, stream)

    return launch
