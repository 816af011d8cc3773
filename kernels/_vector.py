"""Memory access Numba does not emit by itself, as small intrinsics:

- `load4(a, i)`: (a.flat[i], ..., a.flat[i + 3]) of a C-contiguous array through one aligned `<4 x T>`
  load (LDG.E.128 for float32). i is a multiple of 4 and the data pointer is 16-byte aligned.
- `ldg(a, off)` / `stg(a, off, v)`: the element `off` elements away from a's first element (off may be
  negative: negative strides), read or written through the global address space (LDG/STG) whatever a's
  layout — Numba's own indexing of an any-layout array goes through generic LD/ST.
- `ldg_at(a, base, off)`: ldg(a, base + off) with the address of a's element `base` computed apart (once,
  outside a loop, for a loop-invariant base) and each load adding the sign-extended off: one IMAD.WIDE.
- `ldg_vec(a, off)` / `stg_vec(a, off, values)`: 16 bytes at that element, as a tuple of 16 / itemsize
  elements (4 float32, 2 float64, 2 int64) in one LDG.E.128 / STG.E.128; off·itemsize and the data
  pointer must make a 16-byte aligned address.

- `shared_address(a, off)`: the 32-bit shared-memory address of element `off` of a shared array (for
  instructions that take one, such as kernels/mma.py's ldmatrix); the simulator returns off itself.
- `f32_bits(x)` / `bits_f32(u)`: a float32's bits as uint32 and back (bfloat16 is a float32's top half);
  `f16_bits(h)` / `bits_f16(u)`: a float16's bits as uint16 and back; `bf16_bits_rn(x)`: float32 ->
  bfloat16 bits, rounded to nearest even (one cvt.rn.bf16.f32, sm_80+; NaN -> the canonical 0x7FFF).
- `ldg_words(a, off)`: the 16 bytes at element `off` of any array as four uint32 words (one LDG.E.128),
  for kernels that move 16-bit data as raw bits.

The caller computes element offsets from the array's strides (in elements) once, outside its hot loop,
and advances them by constant steps: no per-access stride multiplications, no negative-index
wraparound, no division. All of it is unchecked: the caller owns the bounds.

In Numba's CUDA simulator intrinsics cannot run; the same names are Python functions there that read
and write the array's memory at the same addresses, and raise IndexError for an address outside the
array (so an indexing bug fails the simulator tests instead of reading a neighbour).
"""

from numba import config, types

VECTOR_BYTES = 16
# alignment= for shared arrays read as vectors (LDS.128); the simulator refuses any alignment argument
SHARED_ALIGN = None if config.ENABLE_CUDASIM else VECTOR_BYTES


def lanes(dtype) -> int:
    """Elements in one 16-byte vector of dtype."""
    import numpy as np

    return VECTOR_BYTES // np.dtype(dtype).itemsize


if config.ENABLE_CUDASIM:
    import ctypes

    import numpy as np

    try:
        from numpy.lib.array_utils import byte_bounds as _byte_bounds
    except ImportError:                       # NumPy < 2
        _byte_bounds = np.byte_bounds

    def _host(a):
        return getattr(a, "_ary", a)

    def _at(a, off, count=1):
        a = _host(a)
        lo, hi = _byte_bounds(a)
        addr = a.__array_interface__["data"][0] + int(off) * a.itemsize
        if addr < lo or addr + count * a.itemsize > hi:
            raise IndexError(f"element offset {off} (+{count}) is outside the array of shape {a.shape}, "
                             f"strides {a.strides}")
        buf = (ctypes.c_char * (count * a.itemsize)).from_address(addr)
        return np.frombuffer(buf, dtype=a.dtype, count=count)

    def load4(a, i):
        flat = _host(a).reshape(-1)
        return flat[i], flat[i + 1], flat[i + 2], flat[i + 3]

    def ldg(a, off):
        return _at(a, off)[0]

    def ldg_at(a, base, off):
        return _at(a, base + off)[0]

    def stg(a, off, v):
        _at(a, off)[0] = v

    def ldg_vec(a, off):
        n = VECTOR_BYTES // _host(a).itemsize
        return tuple(_at(a, off, n))

    def stg_vec(a, off, values):
        _at(a, off, len(values))[:] = values

    def shared_address(a, off):
        return off

    def f32_bits(x):
        return np.float32(x).view(np.uint32)

    def bits_f32(u):
        return np.uint32(u).view(np.float32)

    def f16_bits(h):
        return np.float16(h).view(np.uint16)

    def bits_f16(u):
        return np.uint16(u).view(np.float16)

    def bf16_bits_rn(x):
        u = int(np.float32(x).view(np.uint32))
        if (u & 0x7FFFFFFF) > 0x7F800000:
            return np.uint16(0x7FFF)                       # the canonical NaN, as cvt.rn.bf16.f32
        return np.uint16((u + 0x7FFF + ((u >> 16) & 1)) >> 16)

    def ldg_words(a, off):
        host = _host(a)
        raw = _at(a, off, VECTOR_BYTES // host.itemsize)
        return tuple(raw.view(np.uint32))
else:
    from llvmlite import ir
    from numba.core.extending import intrinsic

    def _element_ptr(context, builder, aryty, ary_value, off_value, offty, addrspace):
        ary = context.make_array(aryty)(context, builder, ary_value)
        off = context.cast(builder, off_value, offty, types.intp)
        ptr = builder.gep(ary.data, [off])
        elem = context.get_value_type(aryty.dtype)
        if addrspace:
            ptr = builder.addrspacecast(ptr, ir.PointerType(elem, addrspace))
        return ptr, elem

    @intrinsic
    def load4(typingctx, a, i):
        if not isinstance(a, types.Array) or a.layout != "C" or not isinstance(i, types.Integer):
            return None
        sig = types.UniTuple(a.dtype, 4)(a, i)

        def codegen(context, builder, signature, args):
            ptr, elem = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 0)
            vec = builder.load(builder.bitcast(ptr, ir.VectorType(elem, 4).as_pointer()),
                               align=4 * context.get_abi_sizeof(elem))
            values = [builder.extract_element(vec, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, signature.return_type, values)

        return sig, codegen

    @intrinsic
    def ldg(typingctx, a, off):
        if not isinstance(a, types.Array) or not isinstance(off, types.Integer):
            return None
        sig = a.dtype(a, off)

        def codegen(context, builder, signature, args):
            ptr, _ = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 1)
            return builder.load(ptr)

        return sig, codegen

    @intrinsic
    def ldg_at(typingctx, a, base, off):
        """ldg(a, base + off) as two address steps, a's data + base then + off (sign-extended), so that a
        loop-invariant base's address is computed once, outside the loop, and each load adds one offset."""
        if not isinstance(a, types.Array) or not isinstance(base, types.Integer) or not isinstance(off, types.Integer):
            return None
        sig = a.dtype(a, base, off)

        def codegen(context, builder, signature, args):
            origin, elem = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 1)
            # through an opaque move: LLVM would otherwise fold the two steps back into data + (base + off)
            i64 = ir.IntType(64)
            moved = builder.asm(ir.FunctionType(i64, [i64]), "mov.b64 $0, $1;", "=l,l",
                                [builder.ptrtoint(origin, i64)], False)
            step = context.cast(builder, args[2], signature.args[2], types.intp)
            return builder.load(builder.gep(builder.inttoptr(moved, origin.type), [step]))

        return sig, codegen

    @intrinsic
    def stg(typingctx, a, off, v):
        if not isinstance(a, types.Array) or not isinstance(off, types.Integer):
            return None
        sig = types.void(a, off, a.dtype)

        def codegen(context, builder, signature, args):
            ptr, _ = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 1)
            value = context.cast(builder, args[2], signature.args[2], signature.args[0].dtype)
            builder.store(value, ptr)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def ldg_vec(typingctx, a, off):
        if not isinstance(a, types.Array) or not isinstance(off, types.Integer):
            return None
        n = VECTOR_BYTES * 8 // a.dtype.bitwidth
        sig = types.UniTuple(a.dtype, n)(a, off)

        def codegen(context, builder, signature, args):
            ptr, elem = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 1)
            vec = builder.load(builder.bitcast(ptr, ir.PointerType(ir.VectorType(elem, n), 1)), align=VECTOR_BYTES)
            values = [builder.extract_element(vec, ir.Constant(ir.IntType(32), k)) for k in range(n)]
            return context.make_tuple(builder, signature.return_type, values)

        return sig, codegen

    @intrinsic
    def stg_vec(typingctx, a, off, values):
        if not isinstance(a, types.Array) or not isinstance(off, types.Integer) or \
                not isinstance(values, types.UniTuple):
            return None
        n = VECTOR_BYTES * 8 // a.dtype.bitwidth
        if values.count != n:
            return None
        sig = types.void(a, off, values)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ptr, elem = _element_ptr(context, builder, aryty, args[0], args[1], signature.args[1], 1)
            vec = ir.Constant(ir.VectorType(elem, n), ir.Undefined)
            for k in range(n):
                v = context.cast(builder, builder.extract_value(args[2], k), signature.args[2].dtype, aryty.dtype)
                vec = builder.insert_element(vec, v, ir.Constant(ir.IntType(32), k))
            builder.store(vec, builder.bitcast(ptr, ir.PointerType(ir.VectorType(elem, n), 1)), align=VECTOR_BYTES)
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def shared_address(typingctx, a, off):
        if not isinstance(a, types.Array) or not isinstance(off, types.Integer):
            return None
        sig = types.uint32(a, off)

        def codegen(context, builder, signature, args):
            ptr, elem = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 3)
            return builder.ptrtoint(ptr, ir.IntType(32))

        return sig, codegen

    @intrinsic
    def f32_bits(typingctx, x):
        if x != types.float32:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))

        return types.uint32(x), codegen

    @intrinsic
    def bits_f32(typingctx, u):
        if not isinstance(u, types.Integer) or u.bitwidth != 32:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return types.float32(u), codegen

    @intrinsic
    def f16_bits(typingctx, h):
        if h != types.float16:
            return None

        def codegen(context, builder, signature, args):
            held = context.get_value_type(types.float16)     # numba-cuda holds a float16 as i16 already
            return args[0] if held == ir.IntType(16) else builder.bitcast(args[0], ir.IntType(16))

        return types.uint16(h), codegen

    @intrinsic
    def bf16_bits_rn(typingctx, x):
        if x != types.float32:
            return None

        def codegen(context, builder, signature, args):
            fn = ir.InlineAsm(ir.FunctionType(ir.IntType(16), [ir.FloatType()]), "cvt.rn.bf16.f32 $0, $1;", "=h,f")
            return builder.call(fn, [args[0]])

        return types.uint16(x), codegen

    @intrinsic
    def bits_f16(typingctx, u):
        if not isinstance(u, types.Integer) or u.bitwidth != 16:
            return None

        def codegen(context, builder, signature, args):
            held = context.get_value_type(types.float16)     # i16 in numba-cuda: its float16 casts take i16
            return args[0] if held == args[0].type else builder.bitcast(args[0], held)

        return types.float16(u), codegen

    @intrinsic
    def ldg_words(typingctx, a, off):
        if not isinstance(a, types.Array) or not isinstance(off, types.Integer):
            return None
        sig = types.UniTuple(types.uint32, 4)(a, off)

        def codegen(context, builder, signature, args):
            ptr, _ = _element_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1], 1)
            vty = ir.VectorType(ir.IntType(32), 4)
            vec = builder.load(builder.bitcast(ptr, ir.PointerType(vty, 1)), align=VECTOR_BYTES)
            values = [builder.extract_element(vec, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, signature.return_type, values)

        return sig, codegen
