"""Implicit GEMM: the convolution as our tiled GEMM (kernels/gemm.py) whose B tiles are gathered from
the input on the fly in im2col's layout, so the column matrix is never written.

Product g of the batch is (image img0 + g // groups, group g % groups): M = K/groups output channels,
N = P·Q pixels, K = C/groups·R·S taps. Every gpu_conv2d option holds (stride, dilation, asymmetric
padding and every padding mode, groups) and the GEMM's fused NCHW epilogue writes y directly.

The gather does no division in the K loop (CUTLASS's precomputed-offset design): the host builds, once
per geometry, a table of the taps — row k of B is tap (c, r, s), stored with its offset in a dense image
— and each thread owns one pixel of the tile (and VEC consecutive taps of each step), whose window
origin (ih0, iw0) = (p·sh − pt, q·sw − pl) it computes once per block. Element (k, pixel) is then
x[img, c, ih0 + r·dh, iw0 + s·dw]: per element a 16-byte table read (the same for the whole warp), two
adds, a bounds test (zeros padding) or the padding mode's index map (compile-time), and a load. A 1×1 stride-1 unpadded convolution does not gather at all: its B is x itself, a matrix per image
(see gpuconv's implicit plan).
"""

import functools

import numpy as np
from numba import cuda, int32, int64, uint32

from . import gemm, gemm_tc
from ._common import PAD_ZEROS, source_index
from ._vector import ldg, ldg_at, ldg_vec
from .mma import tf32

def tap_table(C_g, R, S, dh, dw, H, W, dense) -> np.ndarray:
    """The taps of im2col's rows, row (c·R + r)·S + s being tap (c, r, s), as int32:
    dense (for x whose images are dense (C, H, W) blocks): (Ktot, 2), (c·H·W + r·dh·W + s·dw, r·dh << 16 |
    s·dw) — the tap's offset in the image and its window offsets in 16 bits each (the wrapper checks
    C/groups·H·W < 2**31 and the dilated kernel < 2**15); else (Ktot, 4), (c, r·dh, s·dw, 0)."""
    c, r, s = np.meshgrid(np.arange(C_g, dtype=np.int64), np.arange(R), np.arange(S), indexing="ij")
    c, rdh, sdw = c.ravel(), (r * dh).ravel(), (s * dw).ravel()
    if dense:
        return np.stack([c * H * W + rdh * W + sdw, (rdh << 16) | sdw], axis=1).astype(np.int32)
    return np.stack([c, rdh, sdw, np.zeros_like(c)], axis=1).astype(np.int32)


@functools.cache
def gather_taps(dtype, mode, dense=False, hoisted=False):
    """(setup, pair, checked_one): the device functions a gather loader builds its vectors from, for x
    stored as `dtype` (16-bit floats: uint16 bits, moved unchanged). setup(x, g, groups, img0, pix0, n,
    conv) gives the thread's state for pixel n of product g (x offset of the product's image and group,
    the pixel's window origin ih0, iw0, and, dense, the origin's offset in x); conv = (C/groups, Q, sh, sw, pt, pl, 0, 0, 0). pair(x, ktab, st,
    k) fetches taps k and k + 1 (no checks); checked_one(x, ktab, st, k, n, K, N) tap k, or zero past K
    or N. mode is the padding mode, a compile-time constant (zeros: an unsigned bounds test; others:
    source_index). dense: x's images are dense (C, H, W) blocks, so a tap's offset comes from the table
    and the pixel's in 32 bits; else they are computed from x's strides in 64 bits. hoisted (dense, zero
    padding): each tap's address is the window origin's, computed once, plus the tap's offset (one
    IMAD.WIDE a tap, for a loop with no register to spare for the 32-bit form's operands)."""
    ZERO = np.dtype(dtype).type(0)
    ISZ = np.dtype(dtype).itemsize
    ZEROS = mode == PAD_ZEROS

    @cuda.jit(device=True, inline=True)
    def setup(x, g, groups, img0, pix0, n, conv):
        img = img0 + g // groups
        base = img * (x.strides[0] // ISZ) + (g % groups) * conv[0] * (x.strides[1] // ISZ)
        pix = pix0 + n
        p = pix // conv[1]
        ih0 = int32(p * conv[2] - conv[4])                 # window origin (H, W < 2**31: checked by the wrapper)
        iw0 = int32((pix - p * conv[1]) * conv[3] - conv[5])
        # dense: the offset of the window origin (outside the image where padded), so that a tap in the
        # image is at origin + the tap's table offset: one 64-bit add per tap on a hoisted address
        origin = base + int64(ih0) * x.shape[3] + iw0 if dense and hoisted else int64(0)
        return base, ih0, iw0, origin

    @cuda.jit(device=True, inline=True)
    def one(x, st, off, rs):
        """x at the tap (dense: offset `off` in the image, window offsets packed in rs; else: channel off,
        window offsets rs) of the pixel's window, padded by the mode. 32-bit window arithmetic: the casts
        keep Numba from widening it."""
        base, ih0, iw0, origin = st
        H = x.shape[2]
        W = x.shape[3]
        if dense:
            rdh = int32(rs >> 16)
            sdw = int32(int32(rs << 16) >> 16)
        else:
            rdh = rs[0]
            sdw = rs[1]
        ih = int32(ih0 + rdh)
        iw = int32(iw0 + sdw)
        if ZEROS:
            if uint32(ih) < uint32(H) and uint32(iw) < uint32(W):
                if dense and hoisted:
                    return ldg_at(x, origin, off)
                if dense:          # the in-image offset of the element, in 32 bits
                    return ldg(x, base + int64(int32(off + ih0 * int32(W) + iw0)))
                return ldg(x, base + off * (x.strides[1] // ISZ) + ih * (x.strides[2] // ISZ)
                           + iw * (x.strides[3] // ISZ))
            return ZERO
        hs = source_index(ih, H, mode)
        ws = source_index(iw, W, mode)
        if hs >= 0 and ws >= 0:
            if dense:          # the channel's offset is the tap's minus its window offsets
                return ldg(x, base + int64(int32(off - rdh * int32(W) - sdw + hs * int32(W) + ws)))
            return ldg(x, base + off * (x.strides[1] // ISZ) + hs * (x.strides[2] // ISZ)
                       + ws * (x.strides[3] // ISZ))
        return ZERO

    @cuda.jit(device=True, inline=True)
    def two(x, ktab, st, k):
        """Taps k and k + 1 (dense: one 16-byte table read covers both)."""
        if dense:
            t = ldg_vec(ktab, k * 2)
            return one(x, st, t[0], t[1]), one(x, st, t[2], t[3])
        t0 = ldg_vec(ktab, k * 4)
        t1 = ldg_vec(ktab, (k + 1) * 4)
        return one(x, st, t0[0], (t0[1], t0[2])), one(x, st, t1[0], (t1[1], t1[2]))

    @cuda.jit(device=True, inline=True)
    def checked_one(x, ktab, st, k, n, K, N):
        if k < K and n < N:
            if dense:
                return one(x, st, ldg(ktab, k * 2), ldg(ktab, k * 2 + 1))
            t = ldg_vec(ktab, k * 4)
            return one(x, st, t[0], (t[1], t[2]))
        return ZERO

    return setup, two, checked_one


@functools.cache
def gather_loader(dtype, mode, dense=False):
    """(fast, checked, setup) device functions that fetch one thread's B vector of kernels/gemm.py's tile:
    VEC consecutive taps (k rows) of the one pixel (column) it owns (see gather_taps)."""
    VEC = gemm.vec_of(dtype)
    setup, two, checked_one = gather_taps(np.dtype(dtype), mode, dense)

    @cuda.jit(device=True, inline=True)
    def fast(x, ktab, st, k, conv):
        v0, v1 = two(x, ktab, st, k)
        if VEC == 2:
            return (v0, v1)
        v2, v3 = two(x, ktab, st, k + 2)
        return (v0, v1, v2, v3)

    @cuda.jit(device=True, inline=True)
    def checked(x, ktab, st, k, n, K, N, conv):
        if VEC == 2:
            return (checked_one(x, ktab, st, k, n, K, N), checked_one(x, ktab, st, k + 1, n, K, N))
        return (checked_one(x, ktab, st, k, n, K, N), checked_one(x, ktab, st, k + 1, n, K, N),
                checked_one(x, ktab, st, k + 2, n, K, N), checked_one(x, ktab, st, k + 3, n, K, N))

    return fast, checked, setup


@functools.cache
def tc_gather_loader(kind, mode, dense=False):
    """(fast, checked, setup) for kernels/gemm_tc.py's gathered B: a vector is 4 words of the thread's
    pixel, holding taps k .. k + 7 as 16-bit pairs (kind "f16" / "bf16": x passed as uint16 bits, low
    half first, as mma reads a k-pair) or taps k .. k + 3 rounded to TF32 (kind "tf32": float32 x)."""
    half = kind != "tf32"
    setup, two, checked_one = gather_taps(np.dtype(np.uint16 if half else np.float32), mode, dense, True)

    @cuda.jit(device=True, inline=True)
    def word(lo, hi):
        return uint32(uint32(lo) | uint32(uint32(hi) << uint32(16)))

    @cuda.jit(device=True, inline=True)
    def fast(x, ktab, st, k):
        a0, a1 = two(x, ktab, st, k)
        a2, a3 = two(x, ktab, st, k + 2)
        if not half:
            return (tf32(a0), tf32(a1), tf32(a2), tf32(a3))
        a4, a5 = two(x, ktab, st, k + 4)
        a6, a7 = two(x, ktab, st, k + 6)
        return (word(a0, a1), word(a2, a3), word(a4, a5), word(a6, a7))

    @cuda.jit(device=True, inline=True)
    def checked_word(x, ktab, st, k, n, K, N):
        if half:
            return word(checked_one(x, ktab, st, k, n, K, N), checked_one(x, ktab, st, k + 1, n, K, N))
        return tf32(checked_one(x, ktab, st, k, n, K, N))

    @cuda.jit(device=True, inline=True)
    def checked(x, ktab, st, k, n, K, N):
        e = 2 if half else 1                # taps per word
        return (checked_word(x, ktab, st, k, n, K, N), checked_word(x, ktab, st, k + e, n, K, N),
                checked_word(x, ktab, st, k + 2 * e, n, K, N), checked_word(x, ktab, st, k + 3 * e, n, K, N))

    return fast, checked, setup


def implicit_gemm_kernel(dtype, mode=PAD_ZEROS, bias_mode=gemm.BIAS_NONE, act=gemm.ACT_NONE, vec_a=True,
                         dense=True):
    """The GEMM kernel with the gathered B (the build the launcher uses for an aligned weight and a
    dense NCHW input, by default)."""
    return gemm.gemm_kernel(np.dtype(dtype), "nchw", bias_mode, act, False, True, False, vec_a, False,
                            gather_loader(np.dtype(dtype), mode, dense))


def dense_images(x, itemsize) -> bool:
    """Are x's images dense (C, H, W) blocks (strides H·W, W, 1 in elements; unit axes any)?"""
    _, C, H, W = x.shape
    want = (H * W * itemsize, W * itemsize, itemsize)
    return all(n == 1 or s == w for n, s, w in zip((C, H, W), x.strides[1:], want))


def tap_tables(g):
    """(dense table or None, general table) for geometry g (see tap_table): the dense layout only where
    its 32- and 16-bit fields hold the geometry."""
    C_g = g.C // g.groups
    general = tap_table(C_g, g.R, g.S, g.dilation[0], g.dilation[1], g.H, g.W, False)
    fits = C_g * g.H * g.W < 2**31 and max((g.R - 1) * g.dilation[0], (g.S - 1) * g.dilation[1]) < 2**15
    return (tap_table(C_g, g.R, g.S, g.dilation[0], g.dilation[1], g.H, g.W, True) if fits else None), general


def _span(a) -> int:
    """Elements from a's first element to its last (non-negative strides, as the weight views have)."""
    return sum((n - 1) * (s // a.itemsize) for n, s in zip(a.shape, a.strides)) + 1


def launch_implicit_gemm(g, dtype, images, mode, bias_mode, act, alpha, tc=None):
    """run(A, x, y3, bias, img0, tables, stream) for `images` images of geometry g; A is weight viewed as
    (groups, K/groups, C/groups·R·S), y3 the output viewed as (N, K, P·Q), tables the device copies of
    tap_tables(g). tc: None for kernels/gemm.py in `dtype`, or a tensor-core kind ("f16", "bf16": A, x,
    y3 and bias as uint16 views of their bits; "tf32": float32) for kernels/gemm_tc.py. Each call takes
    the dense build when x's images are dense and the dense table exists."""
    # Launch plan: the GEMM's (m_tiles · n_tiles, images · groups) grid of 256-thread blocks (several
    # launches past 65,535 products); B's tiles gathered from x through the tap table.
    if max(g.H, g.W) >= 2**31:
        raise ValueError(f"implicit GEMM needs H and W below 2**31, got {g.H}×{g.W}")
    t, _, l, _ = g.pads
    conv = (g.C // g.groups, g.Q, g.stride[0], g.stride[1], t, l, 0, 0, 0)
    extents = (g.K // g.groups, g.P * g.Q, g.C // g.groups * g.R * g.S, images * g.groups, True, False, bias_mode, act,
               alpha)
    if tc is None:
        isz = np.dtype(dtype).itemsize
        launches = {dense: gemm.launch_gemm(dtype, "nchw", *extents, b_gather=gather_loader(np.dtype(dtype), mode, dense),
                                            conv=conv)
                    for dense in (False, True)}
    else:
        if extents[2] >= 2**31:
            raise ValueError(f"tensor-core implicit GEMM needs C/groups·R·S below 2**31, got {extents[2]}")
        isz = 4 if tc == "tf32" else 2
        launches = {dense: gemm_tc.launch_gemm_tc(tc, "nchw", *extents, b_gather=tc_gather_loader(tc, mode, dense),
                                                  conv=conv)
                    for dense in (False, True)}

    def run(A, x, y3, bias, img0, tables, stream):
        if tc is not None:
            span = _span(A)
            if span >= 2**31:
                raise ValueError(f"tensor-core implicit GEMM addresses the weight in 32 bits: its {A.shape} view "
                                 f"spans {span} elements")
        dense = tables[0] is not None and dense_images(x, isz)
        launches[dense](A, x, y3, bias, img0, 0, stream, tables[0] if dense else tables[1])

    return run
