"""Elementwise passes between 16-bit storage and float32: widen (float16 / bfloat16 bits -> float32) and
narrow (float32 -> 16-bit, rounded to nearest even).

They carry float16 and bfloat16 through the ops whose kernels are float32-only (see
gpuconv._precision): inputs are widened into float32 temporaries, the float32 kernels run, results are
narrowed into the caller's 16-bit arrays. (An activation over 16-bit data is the activation pass's
16-bit build, kernels/epilogue.py.)

16-bit data moves as raw uint16 bits (kernels/_half.py); every array is a 4-D view, any strides.
"""

import functools

from numba import cuda, int64, uint64

from ._common import general_coords
from ._flat import load as flat_load
from ._flat import store as flat_store
from ._half import codec
from .epilogue import PER_THREAD, THREADS, _dense_start, _ElementwiseLauncher

FORMATS = ("f32", "f16", "bf16")        # element formats: float32, or 16-bit bits read as _half's kinds


@functools.cache
def convert_kernel(src, dst, dense=True):
    """dst[i] = src[i] with src read as format `src` and dst written as format `dst` (FORMATS), through
    float32. Two variants, as the activation pass (kernels/epilogue.py): dense (both arrays
    C-contiguous, walked flat, PER_THREAD elements per thread) and general (any strides, a plane grid;
    see _common)."""
    if src not in FORMATS or dst not in FORMATS:
        raise ValueError(f"formats must be among {FORMATS}, got {src!r} -> {dst!r}")
    load = codec(None if src == "f32" else src)[0]
    store = codec(None if dst == "f32" else dst)[1]

    @cuda.jit
    def convert(x, y,                               # (N, C, P, Q) both
                mag, sft, qblocks, o0, o1, o2):     # general: plane grid (see _common)
        if dense:
            first, left = _dense_start(y.size)
            for k in range(PER_THREAD):
                if k * THREADS < left:
                    i = int64(k * THREADS)
                    flat_store(y, first, i, store(load(flat_load(x, first, i))))
        else:
            n, c, p, q = general_coords(mag, sft, qblocks, o0, o1, o2)
            if p < y.shape[2] and q < y.shape[3]:
                n, c, p, q = uint64(n), uint64(c), uint64(p), uint64(q)   # unsigned: no wraparound code
                y[n, c, p, q] = store(load(x[n, c, p, q]))

    return convert


@functools.lru_cache(maxsize=1024)
def launch_convert(shape, src, dst):
    """launch(x, y, stream) for 4-D arrays of `shape`: y = x, formats src -> dst (see convert_kernel)."""
    # Launch plan: as the activation pass: dense: a 1-D grid of 256-thread blocks, 4 elements per
    # thread (256 apart); general: a plane grid, one element per thread, q fastest.
    run = _ElementwiseLauncher(functools.partial(convert_kernel, src, dst), tuple(int(v) for v in shape))
    def launch(x, y, stream):
        run((x, y), (), stream)

    return launch
