"""16-bit floating-point storage with float32 arithmetic: float16 and bfloat16 move through the kernels as
raw 16-bit patterns (uint16 arrays; NumPy has no bfloat16), are widened to float32 where they are used,
and rounded back (to nearest even) where they are stored, as PyTorch's half-precision kernels do.

`to_f32(bits, kind)` / `from_f32(x, kind)` with kind "f16" or "bf16" (a compile-time constant). Kernels
that take either a dtype or a kind split it with `storage` and convert their loads and stores with
`codec`; `element` gives both at once, with the Numba types.
"""

import functools

import numpy as np
from numba import cuda, float32, from_dtype, uint16, uint32
from numba.types import float16

from ._vector import bf16_bits_rn, bits_f16, bits_f32, f16_bits

KINDS = ("f16", "bf16")


@cuda.jit(device=True, inline=True)
def to_f32(bits, kind):
    if kind == "f16":
        return float32(bits_f16(uint16(bits)))
    return bits_f32(uint32(uint32(bits) << uint32(16)))     # (Numba widens the shift to 64 bits)


@cuda.jit(device=True, inline=True)
def from_f32(x, kind):
    if kind == "f16":
        return f16_bits(float16(x))
    return bf16_bits_rn(float32(x))


def storage(dtype):
    """(arithmetic dtype, 16-bit kind or None) of a kernel factory's `dtype` argument: a kind ("f16",
    "bf16") means uint16 arrays holding that format's bits, with float32 arithmetic; a NumPy dtype is
    both the storage and the arithmetic."""
    if isinstance(dtype, str) and dtype in KINDS:
        return np.dtype(np.float32), dtype
    return np.dtype(dtype), None


@functools.cache
def codec(kind):
    """(widen, narrow) device functions between a stored element and its arithmetic value: for a 16-bit
    kind to_f32 and from_f32 (rounded to nearest even), for None identities."""
    if kind is None:
        @cuda.jit(device=True, inline=True)
        def same(v):
            return v

        return same, same

    @cuda.jit(device=True, inline=True)
    def widen(v):
        return to_f32(v, kind)

    @cuda.jit(device=True, inline=True)
    def narrow(v):
        return from_f32(v, kind)

    return widen, narrow


@functools.cache
def element(dtype):
    """(S, T, wide, narrow) for a kernel's element dtype: S the Numba type arrays store, T the Numba type
    the arithmetic uses, wide(v) an element as T where it is loaded, narrow(x) a T as S where it is
    stored. float32 / float64: S = T and both conversions are the identity; "f16" / "bf16": uint16
    bits, float32 arithmetic, widened exactly and rounded to nearest even."""
    arith, kind = storage(dtype)
    wide, narrow = codec(kind)
    t = from_dtype(arith)
    return (uint16 if kind else t), t, wide, narrow
