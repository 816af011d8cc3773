"""16-bit floating-point storage with float32 arithmetic: float16 and bfloat16 move through the kernels as
raw 16-bit patterns (uint16 arrays; NumPy has no bfloat16), are widened to float32 where they are used,
and rounded back (to nearest even) where they are stored, as PyTorch's half-precision kernels do.

`to_f32(bits, kind)` / `from_f32(x, kind)` with kind "f16" or "bf16" (a compile-time constant).
"""

from numba import cuda, float32, uint16, uint32
from numba.types import float16

from ._vector import bits_f16, bits_f32, f16_bits, f32_bits

KINDS = ("f16", "bf16")


@cuda.jit(device=True, inline=True)
def to_f32(bits, kind):
    if kind == "f16":
        return float32(bits_f16(uint16(bits)))
    return bits_f32(uint32(bits) << uint32(16))


@cuda.jit(device=True, inline=True)
def _bf16_bits(x):
    """float32 -> bfloat16 bits, rounded to nearest even; NaN stays a (quiet) NaN."""
    u = f32_bits(x)
    if (u & uint32(0x7FFFFFFF)) > uint32(0x7F800000):
        return uint16((u >> uint32(16)) | uint32(0x40))
    return uint16((u + uint32(0x7FFF) + ((u >> uint32(16)) & uint32(1))) >> uint32(16))


@cuda.jit(device=True, inline=True)
def from_f32(x, kind):
    if kind == "f16":
        return f16_bits(float16(x))
    return _bf16_bits(x)
