"""Tensor-core instructions Numba does not have: warp-level `mma.sync` and `ldmatrix`, as a few lines of
CUDA C++ (inline PTX) declared to Numba with `cuda.declare_device` and linked with LTO, so they are
inlined into our kernels (HMMA in the loop, no call, no local memory). The kernels stay ours and in
Numba; these helpers are the instructions it lacks.

Fragments follow the PTX ISA's per-lane layouts (lane l of a warp, g = l // 4, t = l % 4):
- mma_f16 / mma_bf16, m16n8k16, row.col, float32 accumulate: A (16×16) in 4 registers of two 16-bit
  values (low half first): (g, 2t), (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8), each with column + 1;
  B (16×8) in 2: (k 2t, n g), (k 2t + 8, n g), each with k + 1; C and D (16×8 float32): (g, 2t),
  (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
- mma_tf32, m16n8k8: A (16×8) in 4 registers of one tf32 each: (g, t), (g + 8, t), (g, t + 4),
  (g + 8, t + 4); B (8×8) in 2: (k t, n g), (k t + 4, n g); C and D as above.
- ldsm_x4(arr, off) / ldsm_x4_t: `ldmatrix.m8n8.x4` from a shared uint32 array: lanes 8i .. 8i + 7 give
  the word offsets of the 8 rows (16 bytes each) of matrix i; register i of lane l is matrix i's
  16-bit pair at row g, columns 2t, 2t + 1 (the `.trans` form: rows 2t, 2t + 1 at column g). With
  32-bit elements (tf32) the non-transposed form yields element (g, t) of each 8×4 matrix.

In Numba's CUDA simulator linked code cannot run; every helper has a Python twin, picked at import,
that reproduces the lane layout exactly: the warp's lanes exchange their registers (or row addresses)
through shared memory between two syncthreads, then each lane computes its own outputs. A twin must
therefore be called by every thread of the block in the same order, as the real instructions are by
every lane of a warp.
"""

import numpy as np
from numba import config, cuda, types

SOURCE = r"""
struct f32x4 { float x, y, z, w; };
struct u32x4 { unsigned x, y, z, w; };

extern "C" __device__ int gpuconv_mma_f16(f32x4* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                          unsigned b0, unsigned b1, float c0, float c1, float c2, float c3) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=f"(d->x), "=f"(d->y), "=f"(d->z), "=f"(d->w)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    return 0;
}

extern "C" __device__ int gpuconv_mma_bf16(f32x4* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                           unsigned b0, unsigned b1, float c0, float c1, float c2, float c3) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=f"(d->x), "=f"(d->y), "=f"(d->z), "=f"(d->w)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    return 0;
}

extern "C" __device__ int gpuconv_mma_tf32(f32x4* d, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                           unsigned b0, unsigned b1, float c0, float c1, float c2, float c3) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=f"(d->x), "=f"(d->y), "=f"(d->z), "=f"(d->w)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    return 0;
}

extern "C" __device__ int gpuconv_ldsm_x4(u32x4* r, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r->x), "=r"(r->y), "=r"(r->z), "=r"(r->w) : "r"(addr));
    return 0;
}

extern "C" __device__ int gpuconv_ldsm_x4_t(u32x4* r, unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r->x), "=r"(r->y), "=r"(r->z), "=r"(r->w) : "r"(addr));
    return 0;
}

extern "C" __device__ int gpuconv_tf32(unsigned* r, float x) {
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(*r) : "f"(x));
    return 0;
}
"""

F4 = types.UniTuple(types.float32, 4)
U4 = types.UniTuple(types.uint32, 4)
_MMA_SIG = F4(*([types.uint32] * 6 + [types.float32] * 4))

if config.ENABLE_CUDASIM:
    from ._mma_twin import ldsm_x4, ldsm_x4_t, mma_bf16, mma_f16, mma_tf32, tf32   # noqa: F401
else:
    from ._vector import shared_address

    _LINK = [cuda.CUSource(SOURCE)]
    _mma_f16 = cuda.declare_device("gpuconv_mma_f16", _MMA_SIG, link=_LINK)
    _mma_bf16 = cuda.declare_device("gpuconv_mma_bf16", _MMA_SIG, link=_LINK)
    _mma_tf32 = cuda.declare_device("gpuconv_mma_tf32", _MMA_SIG, link=_LINK)
    _ldsm = cuda.declare_device("gpuconv_ldsm_x4", U4(types.uint32), link=_LINK)
    _ldsm_t = cuda.declare_device("gpuconv_ldsm_x4_t", U4(types.uint32), link=_LINK)
    _tf32 = cuda.declare_device("gpuconv_tf32", types.uint32(types.float32), link=_LINK)

    @cuda.jit(device=True, inline=True)
    def mma_f16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
        return _mma_f16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)

    @cuda.jit(device=True, inline=True)
    def mma_bf16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
        return _mma_bf16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)

    @cuda.jit(device=True, inline=True)
    def mma_tf32(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
        return _mma_tf32(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)

    @cuda.jit(device=True, inline=True)
    def ldsm_x4(arr, off):
        return _ldsm(shared_address(arr, off))

    @cuda.jit(device=True, inline=True)
    def ldsm_x4_t(arr, off):
        return _ldsm_t(shared_address(arr, off))

    @cuda.jit(device=True, inline=True)
    def tf32(x):
        return _tf32(x)


def reference_fragments(kind, A, B):
    """(per-lane A registers, per-lane B registers) of one mma's operands A (16×K) and B (K×8), as the
    hardware expects them (kind "f16", "bf16" or "tf32"); the test of the twins builds fragments with it."""
    lanes = np.arange(32)
    g, t = lanes // 4, lanes % 4
    if kind == "tf32":
        a = np.stack([A[g, t], A[g + 8, t], A[g, t + 4], A[g + 8, t + 4]], axis=1)
        b = np.stack([B[t, g], B[t + 4, g]], axis=1)
        return a.view(np.uint32), b.view(np.uint32)
    bits = A.view(np.uint16).astype(np.uint32), B.view(np.uint16).astype(np.uint32)

    def pair(M, r, c, along_rows=False):
        return M[r, c] | (M[r + 1, c] << 16) if along_rows else M[r, c] | (M[r, c + 1] << 16)

    Ab, Bb = bits
    a = np.stack([pair(Ab, g, 2 * t), pair(Ab, g + 8, 2 * t), pair(Ab, g, 2 * t + 8), pair(Ab, g + 8, 2 * t + 8)],
                 axis=1)
    b = np.stack([pair(Bb, 2 * t, g, True), pair(Bb, 2 * t + 8, g, True)], axis=1)
    return a.astype(np.uint32), b.astype(np.uint32)
