"""Python twins of kernels/mma.py's tensor-core helpers, for Numba's CUDA simulator (which cannot run
linked code). Each reproduces the PTX ISA's lane layout: the lanes of a warp write their registers (or
row addresses) to shared memory, a syncthreads, every lane computes its own outputs from the warp's
values, and a second syncthreads before the scratch is reused. Every thread of the block must call a
twin in the same order (as every lane of a warp issues the real instruction).

Shared scratch is allocated once per block per call site (the simulator keys shared arrays by source
line), sized for up to 32 warps (1024 threads). The public twins are simulator device functions
(cuda.jit(device=True)), so that the simulator gives this module its per-thread `cuda` while they run.
"""

import numpy as np
from numba import cuda

MAX_WARPS = 32


def _warp_lane():
    tid = cuda.threadIdx.x + cuda.blockDim.x * (cuda.threadIdx.y + cuda.blockDim.y * cuda.threadIdx.z)
    return tid // 32, tid % 32


def _halves(words, kind):
    """uint32 words -> (low, high) 16-bit values as float32 (f16 or bf16 bits)."""
    lo = (words & 0xFFFF).astype(np.uint16)
    hi = (words >> 16).astype(np.uint16)
    if kind == "f16":
        return lo.view(np.float16).astype(np.float32), hi.view(np.float16).astype(np.float32)
    return ((lo.astype(np.uint32) << 16).view(np.float32), (hi.astype(np.uint32) << 16).view(np.float32))


def _operands(regs, kind):
    """A (16×K) and B (K×8) as float64 from the warp's fragment registers regs (32, 6)."""
    lanes = np.arange(32)
    g, t = lanes // 4, lanes % 4
    if kind == "tf32":
        A = np.zeros((16, 8))
        B = np.zeros((8, 8))
        v = regs.astype(np.uint32).view(np.float32).astype(np.float64)
        A[g, t], A[g + 8, t], A[g, t + 4], A[g + 8, t + 4] = v[:, 0], v[:, 1], v[:, 2], v[:, 3]
        B[t, g], B[t + 4, g] = v[:, 4], v[:, 5]
        return A, B
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for r, (rows, cols) in enumerate(((g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8))):
        lo, hi = _halves(regs[:, r], kind)
        A[rows, cols], A[rows, cols + 1] = lo, hi
    for r, ks in enumerate((2 * t, 2 * t + 8)):
        lo, hi = _halves(regs[:, 4 + r], kind)
        B[ks, g], B[ks + 1, g] = lo, hi
    return A, B


def _mma(kind, a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
    regs = cuda.shared.array((MAX_WARPS, 32, 6), np.uint32)
    accs = cuda.shared.array((MAX_WARPS, 32, 4), np.float32)
    w, lane = _warp_lane()
    regs[w, lane] = (a0, a1, a2, a3, b0, b1)
    accs[w, lane] = (c0, c1, c2, c3)
    cuda.syncthreads()      # the warp's fragments are all written before any lane reads them
    A, B = _operands(regs[w], kind)
    lanes = np.arange(32)
    C = np.zeros((16, 8))
    g, t = lanes // 4, lanes % 4
    C[g, 2 * t], C[g, 2 * t + 1], C[g + 8, 2 * t], C[g + 8, 2 * t + 1] = accs[w].astype(np.float64).T
    D = (A @ B + C).astype(np.float32)
    gl, tl = lane // 4, lane % 4
    out = (D[gl, 2 * tl], D[gl, 2 * tl + 1], D[gl + 8, 2 * tl], D[gl + 8, 2 * tl + 1])
    cuda.syncthreads()      # every lane has read the scratch before the next call overwrites it
    return out


@cuda.jit(device=True)
def mma_f16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
    return _mma("f16", a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)


@cuda.jit(device=True)
def mma_bf16(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
    return _mma("bf16", a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)


@cuda.jit(device=True)
def mma_tf32(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3):
    return _mma("tf32", a0, a1, a2, a3, b0, b1, c0, c1, c2, c3)


def _ldsm(arr, off, trans):
    addrs = cuda.shared.array((MAX_WARPS, 32), np.int64)
    w, lane = _warp_lane()
    addrs[w, lane] = off
    cuda.syncthreads()      # the warp's row addresses are all written before any lane reads them
    words = arr.reshape(-1)
    g, t = lane // 4, lane % 4
    out = []
    for i in range(4):
        rows = addrs[w, 8 * i:8 * i + 8]                  # the 8 rows (4 words each) of matrix i
        if trans:   # rows 2t, 2t + 1 at 16-bit column g: word g // 2, half g % 2
            lo = (int(words[rows[2 * t] + g // 2]) >> (16 * (g % 2))) & 0xFFFF
            hi = (int(words[rows[2 * t + 1] + g // 2]) >> (16 * (g % 2))) & 0xFFFF
            out.append(np.uint32(lo | (hi << 16)))
        else:       # row g, 16-bit columns 2t, 2t + 1: word t
            out.append(np.uint32(words[rows[g] + t]))
    cuda.syncthreads()      # every lane has read the addresses before the next call overwrites them
    return tuple(out)


@cuda.jit(device=True)
def ldsm_x4(arr, off):
    return _ldsm(arr, off, False)


@cuda.jit(device=True)
def ldsm_x4_t(arr, off):
    return _ldsm(arr, off, True)


@cuda.jit(device=True)
def tf32(x):
    """cvt.rna.tf32.f32: round to the nearest 10-bit mantissa, ties away from zero; returns the bits."""
    u = int(np.float32(x).view(np.uint32))
    if (u & 0x7F800000) == 0x7F800000:                   # Inf and NaN pass through
        return np.uint32(u)
    return np.uint32(((u + 0x1000) & 0xFFFFE000) & 0xFFFFFFFF)
