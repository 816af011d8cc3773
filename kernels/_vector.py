"""Vector loads Numba does not emit by itself: four consecutive elements of an array in one instruction
(LDG.E.128 for float32 from global memory, LDS.128 from shared memory; two LDG.E.128 for float64).

`load4(a, i)` returns (a.flat[i], ..., a.flat[i + 3]) as a tuple, read through one aligned
`<4 x T>` load: the caller guarantees that i is a multiple of 4 and that the array's data pointer is
aligned to 4 elements (16 bytes for float32), e.g. a contiguous row whose length is a multiple of 4 in
a buffer from the CUDA allocator (256-byte aligned), or a shared array declared with `alignment=16`.
`a` must be C-contiguous (a typed any-layout array loses the global address space and the load
becomes generic). `i` is a flat element index.

In Numba's CUDA simulator the intrinsic cannot run; the same name is a plain Python function there.
"""

from numba import config, types

if config.ENABLE_CUDASIM:
    def load4(a, i):
        flat = a.reshape(-1) if a.ndim != 1 else a
        return flat[i], flat[i + 1], flat[i + 2], flat[i + 3]
else:
    from llvmlite import ir
    from numba.core.extending import intrinsic

    @intrinsic
    def load4(typingctx, a, i):
        if not isinstance(a, types.Array) or a.layout != "C" or not isinstance(i, types.Integer):
            return None
        sig = types.UniTuple(a.dtype, 4)(a, i)

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = builder.gep(ary.data, [index])
            elem = context.get_value_type(aryty.dtype)
            vec = builder.load(builder.bitcast(ptr, ir.VectorType(elem, 4).as_pointer()),
                               align=4 * context.get_abi_sizeof(elem))
            values = [builder.extract_element(vec, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, signature.return_type, values)

        return sig, codegen
