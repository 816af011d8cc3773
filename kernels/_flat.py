"""Global loads and stores at a flat element offset: `load(a, base, off)` reads, and
`store(a, base, off, v)` writes, the element `base + off` elements past the data pointer of array `a`
(any rank, any layout: the caller computes the offset, e.g. plane · H·W + h·W + w for a C-contiguous
NCHW array).

Why: Numba computes an array element's address from every index with 64-bit multiplies (and, for
signed indices, negative-index wraparound), and an any-layout array loses the global address space
(generic LD.E). Here `base` is a 64-bit offset (a plane's start, computed once per thread) and `off`
an offset inside it: when `off` is a 32-bit integer (int32 or uint32), the address is one
`mad.wide.{s,u}32` (IMAD.WIDE, or a LEA pair for a power-of-two element size) from the per-thread
base, and the access is always a global one (LDG/STG). The caller guarantees that `off` fits its
type and that `base + off` names an element of `a`.

In Numba's CUDA simulator the intrinsics cannot run; the same names are Python functions there that
read and write the element at that address, and raise IndexError for an address outside the array's
memory (so the simulator also checks the offsets a kernel computes).
"""

import ctypes

import numpy as np
from numba import config, types

if config.ENABLE_CUDASIM:
    def _ndarray(a):
        while not isinstance(a, np.ndarray):
            inner = a.__dict__.get("_item") if hasattr(a, "__dict__") else None
            a = inner if inner is not None else a._ary
        return a

    def _element(a, base, off):
        arr = _ndarray(a)
        data = arr.__array_interface__["data"][0]
        span = [(n - 1) * s for n, s in zip(arr.shape, arr.strides)]
        lo = data + sum(min(0, s) for s in span)
        hi = data + sum(max(0, s) for s in span) + arr.itemsize
        addr = data + (int(base) + int(off)) * arr.itemsize
        if min(arr.shape, default=1) < 1 or not lo <= addr <= hi - arr.itemsize:
            raise IndexError(f"flat offset {int(base)} + {int(off)} is outside the array {arr.shape}")
        return np.frombuffer((ctypes.c_char * arr.itemsize).from_address(addr), arr.dtype)

    def load(a, base, off):
        return _element(a, base, off)[0]

    def store(a, base, off, v):
        _element(a, base, off)[0] = v
else:
    from llvmlite import ir
    from numba.core.extending import intrinsic

    def _address(context, builder, sig, args):
        """The addrspace(1) pointer to element base + off of the array args[0]."""
        aryty, bty, oty = sig.args[:3]
        ary = context.make_array(aryty)(context, builder, args[0])
        size = context.get_abi_sizeof(context.get_value_type(aryty.dtype))
        i64 = ir.IntType(64)
        base = context.cast(builder, args[1], bty, types.intp)
        p = builder.add(builder.ptrtoint(ary.data, i64), builder.mul(base, ir.Constant(i64, size)))
        if oty.bitwidth == 32:
            # opaque to LLVM, which would otherwise widen the 32-bit offset's arithmetic to 64 bits
            op = "mad.wide.s32" if oty.signed else "mad.wide.u32"
            fnty = ir.FunctionType(i64, [ir.IntType(32), i64])
            p = builder.asm(fnty, f"{op} $0, $1, {size}, $2;", "=l,r,l", [args[2], p], side_effect=False)
        else:
            off = context.cast(builder, args[2], oty, types.intp)
            p = builder.add(p, builder.mul(off, ir.Constant(i64, size)))
        return builder.inttoptr(p, ir.PointerType(ary.data.type.pointee, 1))

    def _typed(a, base, off):
        return (isinstance(a, types.Array) and isinstance(base, types.Integer) and isinstance(off, types.Integer)
                and off.bitwidth in (32, 64))

    @intrinsic
    def load(typingctx, a, base, off):
        if not _typed(a, base, off):
            return None

        def codegen(context, builder, sig, args):
            align = context.get_abi_sizeof(context.get_value_type(sig.args[0].dtype))
            return builder.load(_address(context, builder, sig, args), align=align)

        return a.dtype(a, base, off), codegen

    @intrinsic
    def store(typingctx, a, base, off, v):
        if not _typed(a, base, off):
            return None

        def codegen(context, builder, sig, args):
            dtype = sig.args[0].dtype
            value = context.cast(builder, args[3], sig.args[3], dtype)
            align = context.get_abi_sizeof(context.get_value_type(dtype))
            builder.store(value, _address(context, builder, sig, args), align=align)
            return context.get_dummy_value()

        return types.void(a, base, off, v), codegen
