"""Pooling kernels: max and average over windows, and global (whole-plane) max and average.

Semantics are PyTorch's (see gpuconv.reference.pool): max pooling takes the first maximum of a window,
and a NaN wins over any number (the last NaN's index is kept, as PyTorch's `v > m || isnan(v)` scan
gives); indices are flat per plane (ih·W + iw). Windows are clipped to the input, so padding never
reads memory.

16-bit data (dtype "f16" / "bf16", see kernels/_half.py) is stored as uint16 bits: each element is
widened to float32 where it is loaded and rounded once where it is stored, float32 arithmetic in
between (as PyTorch's half kernels): max pooling compares widened values and stores the bits of the
element it picked; average pooling and the backward passes sum in float32.

Index math: each thread's coordinates come from the grid (a plane grid, see gpuconv.kernels._common):
no division by a runtime extent in any loop. Windows up to MAX_UNROLLED_WINDOW on a side are compiled
with their size as a constant (fully unrolled taps); larger ones loop. Each kernel has a dense variant
(C-contiguous arrays, int32 offsets inside a plane) and a general one (any strides and sizes, int64).
"""

import functools
import math

import numpy as np
from numba import cuda, int32, int64, uint32, uint64
from numba.np.numpy_support import as_dtype

from ._common import (MAX_GRID_X, c_contiguous, dense_plane_launches, divmagic, fits_int32, general_coords,
                      general_plane_launches, grid_chunks, magic_numbers, plane_coords)
from ._flat import load, store
from ._half import KINDS, element

# Threads per block of the windowed kernels: one thread per output element, q fastest, so a warp's
# window reads overlap in L1 and each input byte comes from DRAM about once; 256 keeps 8 warps/block.
POOL_THREADS = 256
# Threads per block of the global reductions; a plane gets WARPS_PER_PLANE warps (1..8, chosen by its
# size on the host), so small planes pack several to a block and large ones get all 8 warps.
GLOBAL_THREADS = 256
# Windows with both sides up to this are compiled with their size as a constant: the taps unroll, and
# their bounds tests and addresses fold into a few instructions each.
MAX_UNROLLED_WINDOW = 4


def _constant(T, value):
    """value as a scalar of the arithmetic's type T (a float32 kernel's constants must be float32)."""
    return as_dtype(T).type(value)


def compiled_window(kernel, dilation=(1, 1)):
    """The `window` factory argument for a pooling window: (kh, kw, dh, dw), or None (loops, geometry
    from the arguments) for a large one."""
    return tuple(kernel) + tuple(dilation) if max(kernel) <= MAX_UNROLLED_WINDOW else None


def dense_fits(g):
    """Can the dense variant address this geometry with int32 offsets inside a plane (input and output,
    every window coordinate included)?"""
    reach_h = g.H + g.pad[0] + g.stride[0] + (g.kernel[0] - 1) * g.dilation[0]
    reach_w = g.W + g.pad[1] + g.stride[1] + (g.kernel[1] - 1) * g.dilation[1]
    return fits_int32(g.H * g.W, g.P * g.Q, reach_h * g.W, reach_w)


# ----------------------------------------------------------------------------- windowed max / avg


@functools.cache
def max_pool2d_kernel(dtype, window=None, dense=True):
    """y[n, c, p, q] = max of the window (first max; NaN wins, last NaN's index); idx likewise. Fills
    y, and idx when with_idx. window: (kh, kw, dh, dw) compiled in, or None (taken from the arguments).
    dtype: float32, float64, or "f16" / "bf16" (uint16 bits compared as float32; the picked element's
    bits are stored, so y holds exactly the input value the index names)."""
    S, T, wide, _ = element(dtype)
    NEG_INF = _constant(T, -np.inf)
    HALF = dtype in KINDS
    RAW_NEG_INF = np.uint16(0xFC00 if dtype == "f16" else 0xFF80)   # the bits of -inf (HALF only)
    KH, KW, DH, DW = window or (0, 0, 0, 0)
    I, U = (int32, uint32) if dense else (int64, uint64)
    coords = plane_coords(dense)

    @cuda.jit
    def max_pool2d(x, y, idx,                                   # arrays: input, output, int64 indices
                   kh, kw, sh, sw, ph, pw, dh, dw,              # window geometry
                   with_idx,
                   mag, sft, qblocks, o0, o1, o2):              # plane grid (see _common)
        H = I(x.shape[2])
        W = I(x.shape[3])
        P = I(y.shape[2])
        Q = I(y.shape[3])
        inside, e, plane, n, c, p, q = coords(P, Q, mag, sft, qblocks, o0, o1, o2)
        if not inside:
            return
        h0 = I(p * sh - ph)
        w0 = I(q * sw - pw)
        best = NEG_INF
        best_raw = S(RAW_NEG_INF) if HALF else NEG_INF     # the picked element as stored
        best_i = I(-1)
        for i in range(KH if KH else kh):
            h = I(h0 + i * (DH if DH else dh))
            row_ok = U(h) < U(H)                # unsigned: one test for 0 <= h < H
            row = I(h * W + w0)
            for j in range(KW if KW else kw):
                dj = I(j * (DW if DW else dw))
                # `&`, not `and`: both tests always run, so the column tests are shared by every row
                if row_ok & (U(w0 + dj) < U(W)):
                    if dense:                   # the row's start once, then constant offsets per tap
                        raw = load(x, plane * (H * W) + row, int64(dj))
                    else:
                        raw = x[n, c, U(h), U(w0 + dj)]
                    v = wide(raw)
                    if best_i < 0 or v > best or v != v:
                        best = v
                        best_i = I(row + dj)
                        if HALF:
                            best_raw = raw
        if not HALF:
            best_raw = best
        if dense:
            store(y, plane * (P * Q), e, best_raw)
            if with_idx:
                store(idx, plane * (P * Q), e, int64(best_i))
        else:
            y[n, c, p, q] = best_raw
            if with_idx:
                idx[n, c, p, q] = best_i

    return max_pool2d


class _PlaneLauncher:
    """Launches a plane-grid kernel pair over an (N, C, P, Q) grid: the dense variant when every array
    of the call is C-contiguous and the shape fits it, else the general one. Built once per shape."""

    def __init__(self, factory, g, N, C, P, Q, dense_ok, threads):
        self.dense = factory(dense=True) if dense_ok else None
        self.general = factory(dense=False)
        self.dense_plan = dense_plane_launches(N * C, P, Q, threads) if dense_ok else None
        self.general_plan = general_plane_launches(N, C, P, Q, threads)

    def __call__(self, arrays, scalars, stream):
        if self.dense is not None and c_contiguous(*arrays):
            kernel, plan = self.dense, self.dense_plan
        else:
            kernel, plan = self.general, self.general_plan
        for grid, block, tail in plan:
            kernel[grid, block, stream](*arrays, *scalars, *tail)


def launch_max_pool2d(g, dtype):
    # Launch plan: a plane grid (see _common) of up to 256-thread blocks, one thread per output element,
    # q fastest (a warp's window reads overlap in L1); the window compiled in when small.
    factory = functools.partial(max_pool2d_kernel, dtype, compiled_window(g.kernel, g.dilation))
    run = _PlaneLauncher(factory, g, g.N, g.C, g.P, g.Q, dense_fits(g), POOL_THREADS)
    geometry = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], g.dilation[0],
                g.dilation[1])

    def launch(x, y, idx, with_idx, stream):
        run((x, y, idx), geometry + (with_idx,), stream)

    return launch


# Average pooling's divisor rules (PyTorch's), compiled into the kernels: the window's size clipped to the
# padded input (count_include_pad; windows stop at the padded edge, so ceil_mode's last window counts
# only up to it), or to the input itself; or divisor_override.
DIV_INCLUDE_PAD = "include_pad"
DIV_EXCLUDE_PAD = "exclude_pad"
DIV_OVERRIDE = "override"


def divisor_rule(count_include_pad, divisor):
    """The compiled rule for the wrappers' (count_include_pad, divisor override or 0)."""
    if divisor != 0:
        return DIV_OVERRIDE
    return DIV_INCLUDE_PAD if count_include_pad else DIV_EXCLUDE_PAD


@functools.cache
def _window_count(I, rule):
    """count(s0, k, n, pad) in integer type I: the taps of a window starting at s0 along an axis of n
    inputs that its divisor counts (the divisor of a 2-D window is the product of its two counts)."""
    if rule == DIV_INCLUDE_PAD:
        @cuda.jit(device=True, inline=True)
        def count(s0, k, n, pad):
            return I(min(I(s0 + k), I(n + pad)) - s0)
    else:
        @cuda.jit(device=True, inline=True)
        def count(s0, k, n, pad):
            return I(min(I(s0 + k), n) - max(s0, I(0)))
    return count


@functools.cache
def avg_pool2d_kernel(dtype, window=None, dense=True, rule=DIV_INCLUDE_PAD):
    """y[n, c, p, q] = window sum / divisor, with the divisor rule `rule` (divisor: the override). Fills y.
    dtype as max_pool2d_kernel's ("f16" / "bf16": summed in float32, the quotient rounded once)."""
    _, T, wide, narrow = element(dtype)
    ZERO = _constant(T, 0)
    KH, KW = window[:2] if window else (0, 0)
    I, U = (int32, uint32) if dense else (int64, uint64)
    coords = plane_coords(dense)
    count = _window_count(I, rule)
    OVERRIDE = rule == DIV_OVERRIDE

    @cuda.jit
    def avg_pool2d(x, y,                                  # arrays
                   kh, kw, sh, sw, ph, pw,                # window geometry
                   divisor,                               # the override (rule DIV_OVERRIDE)
                   mag, sft, qblocks, o0, o1, o2):        # plane grid (see _common)
        H = I(x.shape[2])
        W = I(x.shape[3])
        P = I(y.shape[2])
        Q = I(y.shape[3])
        inside, e, plane, n, c, p, q = coords(P, Q, mag, sft, qblocks, o0, o1, o2)
        if not inside:
            return
        h0 = I(p * sh - ph)
        w0 = I(q * sw - pw)
        acc = ZERO
        for i in range(KH if KH else kh):
            h = I(h0 + i)
            row_ok = U(h) < U(H)                # unsigned: one test for 0 <= h < H
            row = I(h * W + w0)
            for j in range(KW if KW else kw):
                if row_ok & (U(w0 + j) < U(W)):  # `&`: the column tests are shared by every row
                    if dense:
                        acc += wide(load(x, plane * (H * W) + row, int64(j)))
                    else:
                        acc += wide(x[n, c, U(h), U(w0 + j)])
        if OVERRIDE:
            d = I(divisor)
        else:
            d = I(count(h0, I(KH if KH else kh), H, I(ph)) * count(w0, I(KW if KW else kw), W, I(pw)))
        if dense:
            store(y, plane * (P * Q), e, narrow(acc / T(d)))
        else:
            y[n, c, p, q] = narrow(acc / T(d))

    return avg_pool2d


def launch_avg_pool2d(g, dtype, count_include_pad, divisor):
    # Launch plan: as max pooling, one thread per output element, q fastest.
    factory = functools.partial(avg_pool2d_kernel, dtype, compiled_window(g.kernel),
                                rule=divisor_rule(count_include_pad, divisor))
    run = _PlaneLauncher(factory, g, g.N, g.C, g.P, g.Q, dense_fits(g), POOL_THREADS)
    scalars = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], divisor)

    def launch(x, y, stream):
        run((x, y), scalars, stream)

    return launch


# ----------------------------------------------------------------------------- global reductions


@functools.cache
def global_pool2d_kernel(dtype, is_max, dense=True):
    """One plane per `wpp` warps: each thread reduces a strided slice, then a tree in shared memory
    combines the plane's threads in a fixed order (deterministic). Max keeps (value, index) with
    PyTorch's rule, made order-free: NaN beats numbers (larger index among NaNs), larger value beats
    smaller, equal values keep the smaller index. Fills y (and idx for max with with_idx).

    dense: C-contiguous planes of fewer than 2**31 elements, walked by flat int32 offsets. Otherwise
    (any strides, any size) each thread walks its slice by (row, column) counters advanced by the
    host's (dh, dw) = divmod(slice stride, W): no division per element.

    dtype as max_pool2d_kernel's: "f16" / "bf16" elements are widened as they are read, the sums and
    comparisons are float32; max carries the winner's stored bits beside it (y gets exactly the value
    its index names), average rounds the mean once."""
    S, T, wide, narrow = element(dtype)
    ZERO = _constant(T, 0)
    NEG_INF = _constant(T, -np.inf)
    HALF = dtype in KINDS
    RAW = is_max and HALF                       # keep the winner's bits (a third shared array)
    I = int32 if dense else int64

    @cuda.jit(device=True, inline=True)
    def better(v, i, bv, bi):
        """Does (v, i) beat (bv, bi) under PyTorch's first-max / last-NaN rule?"""
        if bi < 0:
            return i >= 0
        if i < 0:
            return False
        if math.isnan(v):
            return (not math.isnan(bv)) or i > bi
        if math.isnan(bv):
            return False
        return v > bv or (v == bv and i < bi)

    @cuda.jit
    def global_pool2d(x, y, idx,                # arrays: input (N, C, H, W), output (N, C, 1, 1), indices
                      with_idx, lg, n0,         # log2(threads per plane); first plane (dense) or image
                      mag, sft, dh, dw):        # general: W's magic numbers; divmod(threads per plane, W)
        C = x.shape[1]
        H = x.shape[2]
        W = x.shape[3]
        HW = I(H * W)
        t = int32(cuda.threadIdx.x)
        seg = int32(1) << lg                    # threads per plane
        local = t & (seg - 1)                   # rank within the plane's segment of the block
        slot = int64(cuda.blockIdx.x) * (GLOBAL_THREADS >> lg) + (t >> lg)
        if dense:
            plane = int64(n0) + slot
            valid = plane < x.shape[0] * C
        else:
            n = int64(n0) + cuda.blockIdx.y
            c = slot
            valid = c < C
        sv = cuda.shared.array(GLOBAL_THREADS, dtype=T)
        si = cuda.shared.array(GLOBAL_THREADS, dtype=int64)
        sr = cuda.shared.array(GLOBAL_THREADS if RAW else 1, dtype=S)
        acc = NEG_INF if is_max else ZERO
        acc_raw = S(0)
        acc_i = I(-1)
        if valid:
            # A thread's slice is scanned in increasing index order, so PyTorch's own scan rule holds in
            # it (take v if v > acc or v is NaN); the slice's first element seeds it, index and all.
            e = I(local)
            if dense:
                while e < HW:
                    raw = load(x, plane * HW, e)
                    v = wide(raw)
                    if is_max:
                        if v > acc or v != v or acc_i < 0:
                            acc = v
                            acc_i = e
                            if RAW:
                                acc_raw = raw
                    else:
                        acc += v
                    e += seg
            else:
                h = int64(divmagic(local, mag, sft))
                w = local - h * W
                while e < HW:
                    raw = x[n, c, uint64(h), uint64(w)]
                    v = wide(raw)
                    if is_max:
                        if v > acc or v != v or acc_i < 0:
                            acc = v
                            acc_i = e
                            if RAW:
                                acc_raw = raw
                    else:
                        acc += v
                    e += seg
                    h += dh
                    w += dw
                    if w >= W:
                        w -= W
                        h += 1
        sv[t] = acc
        si[t] = acc_i
        if RAW:
            sr[t] = acc_raw
        off = seg >> 1
        while off > 0:  # tree over the plane's segment: a fixed order, so the same bits every run
            cuda.syncthreads()  # the previous level's partials are written before this level reads them
            if local < off:
                ov = sv[t + off]
                oi = si[t + off]
                if is_max:
                    if better(ov, oi, sv[t], si[t]):
                        sv[t] = ov
                        si[t] = oi
                        if RAW:
                            sr[t] = sr[t + off]
                else:
                    sv[t] += ov
            off >>= 1
        if local == 0 and valid:
            if RAW:
                v = sr[t]
            else:
                v = narrow(sv[t] if is_max else sv[t] / T(HW))
            if dense:
                store(y, plane, 0, v)
                if with_idx:
                    store(idx, plane, 0, si[t])
            else:
                y[n, c, 0, 0] = v
                if with_idx:
                    idx[n, c, 0, 0] = si[t]

    return global_pool2d


def launch_global_pool2d(N, C, H, W, dtype, is_max):
    # Launch plan: warps per plane wpp = min(8, ceil(H·W / 256)) rounded to a power of two, so a plane
    # of ≥ 2048 elements gets a whole 256-thread block and small planes share one (8 / wpp per block).
    # Dense grid: ceil(N·C / planes per block) blocks (in launches of at most 2**31 − 1); general:
    # (ceil(C / planes per block), images), images in chunks of 65535. No atomics: one thread writes each
    # plane's result.
    need = -(-(H * W) // 256)
    wpp = 1
    while wpp < min(8, need):
        wpp *= 2
    lg = (wpp * 32).bit_length() - 1
    per_block = GLOBAL_THREADS // 32 // wpp
    dense_ok = fits_int32(H * W + GLOBAL_THREADS)
    dense = global_pool2d_kernel(dtype, is_max, True) if dense_ok else None
    general = global_pool2d_kernel(dtype, is_max, False)
    dense_plan = [(count, b0 * per_block) for b0, count in grid_chunks(-(-(N * C) // per_block), MAX_GRID_X)]
    mag, sft = magic_numbers(W)
    dh, dw = divmod(wpp * 32, W)
    general_plan = [((max(1, -(-C // per_block)), count), n0) for n0, count in grid_chunks(N)]

    def launch(x, y, idx, with_idx, stream):
        if dense is not None and c_contiguous(x, y, idx):
            for blocks, plane0 in dense_plan:
                dense[blocks, GLOBAL_THREADS, stream](x, y, idx, with_idx, lg, plane0, mag, sft, dh, dw)
            return
        for grid, n0 in general_plan:
            general[grid, GLOBAL_THREADS, stream](x, y, idx, with_idx, lg, n0, mag, sft, dh, dw)

    return launch


# ----------------------------------------------------------------------------- backward (gather)
#
# Both backward kernels gather: a thread sums, in a fixed (p, q) order, the gradients of the outputs
# whose windows hold each of its input elements. No atomics, so the result is the same bits every run,
# and each gradient element is written exactly once (no zero-fill pass).
#
# Cells: output p's window starts at row p·sh − ph, so input row h lies in cell m = (h + ph) // sh, the
# sh rows starting at m·sh − ph. A window p holds row h = m·sh − ph + r (0 <= r < sh) exactly when
# p = m − a with 0 <= a and r + a·sh = i·dh for a tap 0 <= i < kh; so the outputs that may hold any row
# of cell m are m − A .. m with A = (kh − 1)·dh // sh. A thread takes one cell (sh × sw inputs): it
# reads each candidate output's gradient (and index) once for all of them, and its coordinates come
# straight from the grid. With the geometry compiled in, which (row, candidate) pairs meet is decided
# at compile time. Geometries with large strides or windows (more than CELL_MAX inputs or candidates
# per side) use a per-element kernel with the same rule, tested at run time.

CELL_MAX = 4
# Cells a thread takes along a row: two halve the reads and divisions of the outputs neighbouring cells
# share (2 × 2 cells of a 3×3/s2 window share 3 × 2 candidates instead of 4 + 4).
CELLS_PER_THREAD = 2


def backward_cell(g):
    """The compiled geometry (kh, kw, sh, sw, dh, dw) of the cell kernels for g, or None (per-element)."""
    A = (g.kernel[0] - 1) * g.dilation[0] // g.stride[0]
    B = (g.kernel[1] - 1) * g.dilation[1] // g.stride[1]
    if max(g.stride) <= CELL_MAX and max(A, B) < CELL_MAX:
        return tuple(g.kernel) + tuple(g.stride) + tuple(g.dilation)
    return None


def _cells(g):
    """(M, Mq): cell rows per plane, enough to hold every input row, and threads per cell row."""
    Mw = (g.W - 1 + g.pad[1]) // g.stride[1] + 1
    return (g.H - 1 + g.pad[0]) // g.stride[0] + 1, -(-Mw // CELLS_PER_THREAD)


def backward_dense_fits(g):
    """Can the dense cell kernels address g with int32 offsets inside a plane?"""
    M, Mq = _cells(g)
    return fits_int32(g.H * g.W, g.P * g.Q, M * Mq, (M + 1) * g.stride[0] * g.W + (Mq + 1) * CELLS_PER_THREAD *
                      g.stride[1] + g.P * g.Q)


def _meets(r, a, k, s, d):
    """Does the window a cells back hold row r of a cell (compile-time constants after unrolling)?"""
    c = r + a * s
    return c <= (k - 1) * d and c % d == 0


@functools.cache
def _backward_cell_kernel(dtype, geometry, dense, is_max, rule=DIV_INCLUDE_PAD):
    """The cell kernel of max (is_max) or average pooling's backward (divisor rule `rule`) for one
    compiled geometry: a thread takes CELLS_PER_THREAD neighbouring cells of a row, so the candidate
    outputs they share are read (and divided) once. dtype as max_pool2d_kernel's ("f16" / "bf16":
    gradients widened as read, summed in float32, each element of gx rounded once)."""
    _, T, wide, narrow = element(dtype)
    ZERO = _constant(T, 0)
    KH, KW, SH, SW, DH, DW = geometry
    A = (KH - 1) * DH // SH
    B = (KW - 1) * DW // SW
    CQ = CELLS_PER_THREAD
    CW = CQ * SW                                         # input columns per thread
    I, U = (int32, uint32) if dense else (int64, uint64)
    coords = plane_coords(dense)
    meets = cuda.jit(device=True, inline=True)(_meets)
    count = _window_count(I, rule)
    OVERRIDE = rule == DIV_OVERRIDE

    @cuda.jit
    def pool2d_backward(go, idx, gx,                     # arrays: grad of y, indices (max), grad of x
                        ph, pw, M, Mq,                   # padding of the forward; cell rows, thread columns
                        divisor,                         # average: the override (rule DIV_OVERRIDE)
                        mag, sft, qblocks, o0, o1, o2):  # plane grid over M × Mq (see _common)
        H = I(gx.shape[2])
        W = I(gx.shape[3])
        P = I(go.shape[2])
        Q = I(go.shape[3])
        inside, e, plane, n, c, m, mq = coords(I(M), I(Mq), mag, sft, qblocks, o0, o1, o2)
        if not inside:
            return
        h0 = I(m * SH - ph)                              # the cells' first row and column
        q0 = I(mq * CQ - B)                              # the first candidate output column
        w0 = I(mq * CW - pw)
        acc = cuda.local.array((SH, CW), T)
        for r in range(SH):
            for t in range(CW):
                acc[r, t] = ZERO
        for a in range(A, -1, -1):                       # candidates in (p, q) order
            p = I(m - a)
            row = I(p * Q + q0)
            rows = count(I(p * SH - ph), I(KH), H, I(ph))    # average: the divisor's row factor
            for jq in range(B + CQ):
                q = I(q0 + jq)
                if (U(p) < U(P)) & (U(q) < U(Q)):
                    if dense:                            # the row's start, then constant offsets
                        g = wide(load(go, plane * (P * Q) + row, int64(jq)))
                    else:
                        g = wide(go[n, c, U(p), U(q)])
                    if is_max:
                        if dense:
                            target = load(idx, plane * (P * Q) + row, int64(jq))
                        else:
                            target = idx[n, c, U(p), U(q)]
                    elif OVERRIDE:
                        g = g / T(divisor)
                    else:
                        g = g / T(I(rows * count(I(q * SW - pw), I(KW), W, I(pw))))
                    for k in range(CQ):                  # cell k sees this output b cells back
                        b = B - jq + k
                        if b >= 0 and b <= B:
                            for r in range(SH):
                                if meets(r, a, KH, SH, DH):
                                    for t in range(SW):
                                        if meets(t, b, KW, SW, DW):
                                            if is_max:
                                                me = I(I(h0 + r) * W + I(w0 + k * SW + t))
                                                if target == int64(me):
                                                    acc[r, k * SW + t] += g
                                            else:
                                                acc[r, k * SW + t] += g
        for r in range(SH):
            h = I(h0 + r)
            row_ok = U(h) < U(H)
            for t in range(CW):
                if row_ok & (U(w0 + t) < U(W)):
                    if dense:
                        store(gx, plane * (H * W) + I(h * W + w0), int64(t), narrow(acc[r, t]))
                    else:
                        gx[n, c, U(h), U(w0 + t)] = narrow(acc[r, t])

    return pool2d_backward


@functools.cache
def _backward_element_kernel(dtype, is_max, rule=DIV_INCLUDE_PAD):
    """Per-element backward for any geometry (general strides, int64): the cell rule, tested at run time
    with magic-number divisions (mags: the magic numbers of sh, sw, dh, dw). dtype as the cell kernel's."""
    _, T, wide, narrow = element(dtype)
    ZERO = _constant(T, 0)
    count = _window_count(int64, rule)
    OVERRIDE = rule == DIV_OVERRIDE

    @cuda.jit
    def pool2d_backward(go, idx, gx,                                 # arrays
                        kh, kw, sh, sw, ph, pw, dh, dw,              # geometry of the forward
                        divisor,                                     # average: the override
                        mags, A, B,                                  # magic numbers; candidates - 1
                        mag, sft, qblocks, o0, o1, o2):              # plane grid over gx (see _common)
        H = gx.shape[2]
        W = gx.shape[3]
        P = go.shape[2]
        Q = go.shape[3]
        n, c, h, w = general_coords(mag, sft, qblocks, o0, o1, o2)
        if h >= H or w >= W:
            return
        m = divmagic(h + ph, mags[0], mags[1])               # the cell and the offset in it
        r = h + ph - m * sh
        mw = divmagic(w + pw, mags[2], mags[3])
        t = w + pw - mw * sw
        acc = ZERO
        for ia in range(A + 1):
            a = A - ia
            p = m - a
            ch = r + a * sh
            if p >= 0 and p < P and ch <= (kh - 1) * dh and ch == divmagic(ch, mags[4], mags[5]) * dh:
                for ib in range(B + 1):
                    b = B - ib
                    q = mw - b
                    cw = t + b * sw
                    if q >= 0 and q < Q and cw <= (kw - 1) * dw and cw == divmagic(cw, mags[6], mags[7]) * dw:
                        if is_max:
                            if idx[n, c, uint64(p), uint64(q)] == h * W + w:
                                acc += wide(go[n, c, uint64(p), uint64(q)])
                        else:
                            d = divisor if OVERRIDE else count(p * sh - ph, kh, H, ph) * count(q * sw - pw, kw, W, pw)
                            acc += wide(go[n, c, uint64(p), uint64(q)]) / T(d)
        gx[n, c, h, w] = narrow(acc)

    return pool2d_backward


def max_pool2d_backward_kernel(dtype, geometry=None, dense=True):
    """gx[n, c, h, w] = sum of go[n, c, p, q] over the outputs whose index names (h, w), in (p, q)
    order. Fills gx. geometry (kh, kw, sh, sw, dh, dw): the cell kernel for it, else the per-element one."""
    if geometry is None:
        return _backward_element_kernel(dtype, True)
    return _backward_cell_kernel(dtype, geometry, dense, True)


def avg_pool2d_backward_kernel(dtype, geometry=None, dense=True, rule=DIV_INCLUDE_PAD):
    """gx[n, c, h, w] = sum of go[n, c, p, q] / divisor(p, q) over the windows holding (h, w), with the
    forward's divisor rule, in (p, q) order. Fills gx. geometry as max_pool2d_backward_kernel's."""
    if geometry is None:
        return _backward_element_kernel(dtype, False, rule)
    return _backward_cell_kernel(dtype, geometry, dense, False, rule)


def _backward_launcher(g, dtype, is_max, rule, divisor):
    """launch(go, idx, gx, stream) of max (is_max) or average pooling's backward for geometry g."""
    cell = backward_cell(g)
    if cell is not None:
        factory = functools.partial(_backward_cell_kernel, dtype, cell, is_max=is_max, rule=rule)
        run = _PlaneLauncher(factory, g, g.N, g.C, *_cells(g), backward_dense_fits(g), POOL_THREADS)
        scalars = (g.pad[0], g.pad[1]) + _cells(g) + (divisor,)
    else:
        if not fits_int32(g.H + g.pad[0], g.W + g.pad[1], (g.kernel[0] - 1) * g.dilation[0] + g.stride[0],
                          (g.kernel[1] - 1) * g.dilation[1] + g.stride[1]):
            raise ValueError(f"pooling geometry {g} is too large to differentiate (coordinates past 2**31)")
        run = _PlaneLauncher(lambda dense: _backward_element_kernel(dtype, is_max, rule), g, g.N, g.C, g.H, g.W,
                             False, POOL_THREADS)
        mags = sum((magic_numbers(v) for v in (g.stride[0], g.stride[1], g.dilation[0], g.dilation[1])), ())
        A = (g.kernel[0] - 1) * g.dilation[0] // g.stride[0]
        B = (g.kernel[1] - 1) * g.dilation[1] // g.stride[1]
        scalars = (g.kernel[0], g.kernel[1], g.stride[0], g.stride[1], g.pad[0], g.pad[1], g.dilation[0],
                   g.dilation[1], divisor, mags, A, B)

    def launch(go, idx, gx, stream):
        run((go, idx, gx), scalars, stream)

    return launch


def launch_max_pool2d_backward(g, dtype):
    # Launch plan: a plane grid (see _common) over the cells of gx (sh × sw inputs each, one thread per
    # cell, so its candidate outputs' gradients and indices are read once for all of them), or over
    # gx's elements for large strides or windows. No atomics: every element is written by one thread.
    return _backward_launcher(g, dtype, True, DIV_INCLUDE_PAD, 0)


def launch_avg_pool2d_backward(g, dtype, count_include_pad, divisor):
    # Launch plan: as max pooling's backward.
    launch = _backward_launcher(g, dtype, False, divisor_rule(count_include_pad, divisor), divisor)

    def run(go, gx, stream):
        launch(go, go, gx, stream)             # no indices: go stands in (unread)

    return run
