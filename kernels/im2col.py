"""im2col and col2im: a convolution's input unfolded into GEMM columns, and the adjoint (fold).

Column layout (images, C·R·S, pixels): cols[b, (c·R + r)·S + s, j] is the input element that kernel
tap (r, s) of channel c reads for output pixel pix0 + j of image img0 + b, padded by the padding mode
as it is read (no padded copy). Channels are the slow part of a row, so for groups the rows of group g
are one contiguous block and cols reshapes to (images·groups, C/groups·R·S, pixels) with no copy.

col2im gathers (one thread per destination element sums its taps in a fixed order): deterministic,
no atomics, no zero fill. For a padding mode other than zeros it gathers into the padded grid and
`fold_padding` adds each padded position into the element it was read from (the adjoint of padding).

Index math: a thread's row of cols (c, r, s) and image come from the grid; a pixel's (p, q) from one
magic-number division of a small index; padding modes are compiled in (one reflection or wrap, no
modulo). Dense variants (C-contiguous arrays whose per-image extents fit int32) address through
gpuconv.kernels._flat; general ones (any strides, any size) use int64 and the arrays' own indexing.
"""

import functools

import numpy as np
from numba import cuda, int32, int64, uint32, uint64

from ._common import (PAD_CIRCULAR, PAD_REFLECT, PAD_REPLICATE, PAD_ZEROS, c_contiguous, dense_coords,
                      dense_plane_launches, divmagic, fits_int32, general_coords, general_plane_launches, grid_chunks,
                      magic_numbers, pad_fold)
from ._flat import load, store

THREADS = 256          # col2im and fold: the fastest axis along threads, coalesced stores
# im2col blocks: 32 × 8 threads, a warp per row of cols (c, r, s) and 8 rows per block; each thread writes
# PER_THREAD entries of its row, 32 apart (a warp's stores coalesce), so small images still fill warps.
BLOCK_PIX = 32
BLOCK_ROWS = 8
PER_THREAD = 8
# col2im windows up to this on a side are compiled in (taps unrolled, stride tests folded).
MAX_UNROLLED_WINDOW = 4


# ----------------------------------------------------------------------------- im2col


@functools.cache
def im2col_kernel(dtype, mode=PAD_ZEROS, dense=True):
    """cols[b, (c·R + r)·S + s, j] = x[img0 + b, c, h, w] padded by `mode` (compiled in), for output
    pixel (p0, q0 + j) of the chunk, counted row-major. Fills cols.

    dense: C-contiguous arrays whose per-image extents (C·H·W, C·R·S·npix) fit int32."""
    ZERO = np.dtype(dtype).type(0)
    I, U = (int32, uint32) if dense else (int64, uint64)
    fold = pad_fold(mode, I)
    ZEROS = mode == PAD_ZEROS

    @cuda.jit
    def im2col(x, cols,                               # x (N, C, H, W); cols (nb, C·R·S, npix)
               R, S, sh, sw, pt, pl, dh, dw,          # geometry; pt, pl: top and left padding
               Q, img0, p0, q0,                       # output width; first image, and first pixel as (p0, q0)
               mags,                                  # magic numbers of R·S, S and Q
               row0, b0):                             # this launch's first row and image of cols
        C = x.shape[1]
        H = I(x.shape[2])
        W = I(x.shape[3])
        rows = I(cols.shape[1])
        npix = I(cols.shape[2])
        row = I(int64(row0) + cuda.blockIdx.y * BLOCK_ROWS + cuda.threadIdx.y)
        if row >= rows:
            return
        b = int64(b0) + cuda.blockIdx.z
        c = divmagic(row, mags[0], mags[1])           # row = (c·R + r)·S + s
        rs = I(row - c * I(R * S))
        r = divmagic(rs, mags[2], mags[3])
        hoff = I(r * dh - pt)
        woff = I((rs - r * S) * dw - pl)
        n = int64(img0) + b
        j0 = I(cuda.blockIdx.x * (BLOCK_PIX * PER_THREAD) + cuda.threadIdx.x)
        if dense:                                     # 64-bit image starts, int32 offsets inside an image
            xplane = n * (C * (H * W)) + I(c * (H * W))
            cthread = b * (rows * npix) + I(I(row * npix) + j0)
        for k in range(PER_THREAD):
            # arithmetic unconditionally, then a predicated load and store: no branch per entry
            j = I(j0 + k * BLOCK_PIX)
            t = I(q0 + j)                             # pixel (p0, q0) + j as (p0 + dp, t − dp·Q)
            dp = divmagic(t, mags[4], mags[5])
            h = I(I(p0 + dp) * sh + hoff)
            w = I(I(t - dp * Q) * sw + woff)
            if ZEROS:
                inside = (U(h) < U(H)) & (U(w) < U(W))
            else:
                h = fold(h, H)
                w = fold(w, W)
                inside = True
            v = ZERO
            if inside & (j < npix):
                if dense:
                    v = load(x, xplane, I(h * W + w))
                else:
                    v = x[uint64(n), uint64(c), uint64(h), uint64(w)]
            if j < npix:
                if dense:
                    store(cols, cthread, int64(k * BLOCK_PIX), v)
                else:
                    cols[uint64(b), uint64(row), uint64(j)] = v

    return im2col


def launch_im2col(g, dtype, mode):
    """launch(x, cols, img0, pix0, stream) for geometry g and a cols chunk of any (nb, C·R·S, npix)."""
    # Launch plan: grid (ceil(npix / 256), ceil(C·R·S / 8), nb images) of 32 × 8 threads (rows and
    # images in chunks of 65535): a warp writes 8 × 32 entries of one row, 32 consecutive per store.
    crs = g.C * g.R * g.S
    mags = magic_numbers(g.R * g.S) + magic_numbers(g.S) + magic_numbers(g.Q)
    scalars = (g.R, g.S, g.stride[0], g.stride[1], g.pads[0], g.pads[2], g.dilation[0], g.dilation[1], g.Q)
    dense_ok = fits_int32(g.C * g.H * g.W, (g.P + 1) * g.Q + BLOCK_PIX * PER_THREAD,
                          crs * (g.P * g.Q + BLOCK_PIX * PER_THREAD))
    dense = im2col_kernel(dtype, mode, True) if dense_ok else None
    general = im2col_kernel(dtype, mode, False)

    @functools.lru_cache(maxsize=16)
    def plan(nb, npix):
        blocks = max(1, -(-npix // (BLOCK_PIX * PER_THREAD)))
        return [((blocks, rc, bc), r0 * BLOCK_ROWS, b0) for b0, bc in grid_chunks(nb)
                for r0, rc in grid_chunks(-(-crs // BLOCK_ROWS))]

    def launch(x, cols, img0, pix0, stream):
        kernel = dense if dense is not None and c_contiguous(x, cols) else general
        p0, q0 = divmod(pix0, g.Q)
        if not fits_int32(g.Q + cols.shape[2]):
            raise ValueError(f"an im2col chunk of {cols.shape[2]} pixels is past 2**31; lower the workspace limit")
        for grid, r0, b0 in plan(cols.shape[0], cols.shape[2]):
            kernel[grid, (BLOCK_PIX, BLOCK_ROWS), stream](x, cols, *scalars, img0, p0, q0, mags, r0, b0)

    return launch


# ----------------------------------------------------------------------------- col2im


def compiled_window(g):
    """col2im's `window` factory argument: (R, S, sh, sw, dh, dw) compiled in, or None (all run time)."""
    if max(g.R, g.S) <= MAX_UNROLLED_WINDOW:
        return (g.R, g.S) + tuple(g.stride) + tuple(g.dilation)
    return None


@functools.cache
def col2im_kernel(dtype, window=None, dense=True):
    """dst[b, c, i, j] = Σ over the taps (r, s) and output pixels (p, q) that read input position
    (i + origin_h, j + origin_w) of cols[b, (c·R + r)·S + s, p·Q + q], in (r, s) order. Fills dst.
    window: (R, S, sh, sw, dh, dw) compiled in (stride 1 needs no divisibility test), or None."""
    ZERO = np.dtype(dtype).type(0)
    KR, KS, SH, SW, DH, DW = window or (0,) * 6
    I, U = (int32, uint32) if dense else (int64, uint64)

    @cuda.jit(device=True, inline=True)
    def output_of(u, ONE, stride, mag, sft, n):
        """(o, ok): the output o whose window starts u before this position along an axis (u = o·stride),
        and whether there is one in [0, n); ONE: the stride compiled in as 1 (no divisibility test)."""
        if ONE == 1:
            return u, U(u) < U(n)
        o = divmagic(max(u, I(0)), mag, sft)
        return o, (u >= 0) & (I(o * stride) == u) & (o < n)

    @cuda.jit
    def col2im(cols, dst,                             # cols (nb, C·R·S, P·Q); dst (nb, C, Hd, Wd)
               R, S, sh, sw, pt, pl, dh, dw,          # geometry of the forward
               P, Q, origin_h, origin_w,              # dst[b, c, i, j] is input coordinate (i+origin_h, ..)
               mags,                                  # magic numbers of sh and sw
               mag, sft, qblocks, o0, o1, o2):        # plane grid over dst (see _common)
        Hd = I(dst.shape[2])
        Wd = I(dst.shape[3])
        rr = KR if KR else R
        ss = KS if KS else S
        if dense:
            e, i, j, plane = dense_coords(Wd, mag, sft, o2)
            if e >= I(Hd * Wd):
                return
            cplane = plane * (I(rr * ss) * I(P * Q))   # dst plane b·C + c: cols rows (b·C + c)·R·S ...
        else:
            b, c, i, j = general_coords(mag, sft, qblocks, o0, o1, o2)
            if i >= Hd or j >= Wd:
                return
        h = I(i + origin_h + pt)                      # row in the padded input's own coordinates
        w = I(j + origin_w + pl)
        acc = ZERO
        for r in range(rr):
            p, p_ok = output_of(I(h - r * (DH if DH else dh)), SH, sh, mags[0], mags[1], P)
            for s in range(ss):
                q, q_ok = output_of(I(w - s * (DW if DW else dw)), SW, sw, mags[2], mags[3], Q)
                if p_ok & q_ok:
                    if dense:
                        acc += load(cols, cplane, I(I(I(r * ss + s) * P + p) * Q + q))
                    else:
                        acc += cols[uint64(b), uint64((c * rr + r) * ss + s), uint64(p * Q + q)]
        if dense:
            store(dst, plane * (Hd * Wd), e, acc)
        else:
            dst[uint64(b), uint64(c), uint64(i), uint64(j)] = acc

    return col2im


# ----------------------------------------------------------------------------- the adjoint of padding
#
# gx[h, w] = Σ gp[i, j] over the padded positions (i, j) whose padding reads (h, w): per axis the
# element's own position plus, within a pad's reach of an edge, its reflections or wraps (replicate:
# the whole pad band for the edge element). So fold_padding copies every element's own position
# (a strided copy), and fold_padding_edges then rewrites the elements near an edge with the full sum.
# Work per element is O(1) (replicate's edge elements: O(pad)), where a scan of the padded plane was
# O(H + W).


@functools.cache
def fold_padding_kernel(dtype, dense=True):
    """gx[n, c, h, w] = gp[n, c, h + pt, w + pl]: every element's own padded position. Fills gx."""
    I = int32 if dense else int64

    @cuda.jit
    def fold_padding(gp, gx,                          # gp (nb, C, pt+H+pb, pl+W+pr) -> gx (nb, C, H, W)
                     pt, pl,
                     mag, sft, qblocks, o0, o1, o2):  # plane grid over gx (see _common)
        H = I(gx.shape[2])
        W = I(gx.shape[3])
        Wp = I(gp.shape[3])
        if dense:
            e, h, w, plane = dense_coords(W, mag, sft, o2)
            if e < I(H * W):
                store(gx, plane * (H * W), e, load(gp, plane * I(gp.shape[2] * Wp), I(I(h + pt) * Wp + w + pl)))
        else:
            n, c, h, w = general_coords(mag, sft, qblocks, o0, o1, o2)
            if h < H and w < W:
                gx[n, c, h, w] = gp[n, c, h + pt, w + pl]

    return fold_padding


@functools.cache
def _preimage(mode):
    """pre(h, n, lo_pad, hi_pad) -> (a0, a1, b0, b1): besides h + lo_pad itself, the padded positions
    [a0, a1) and [b0, b1) (each empty or, but for replicate, one position) whose padding reads
    coordinate h of an axis of n."""
    if mode == PAD_REFLECT:
        @cuda.jit(device=True, inline=True)
        def pre(h, n, lo_pad, hi_pad):
            a = lo_pad - h                            # -h, reflected at the low edge
            b = lo_pad + 2 * n - 2 - h                # 2(n-1) - h, reflected at the high edge
            ok_a = (h >= 1) & (h <= lo_pad)
            ok_b = (h <= n - 2) & (h >= n - 1 - hi_pad)
            return a, a + int64(ok_a), b, b + int64(ok_b)
    elif mode == PAD_CIRCULAR:
        @cuda.jit(device=True, inline=True)
        def pre(h, n, lo_pad, hi_pad):
            a = lo_pad + h - n                        # h - n, wrapped from the high edge into the low pad
            b = lo_pad + h + n                        # h + n, into the high pad
            return a, a + int64(h >= n - lo_pad), b, b + int64(h < hi_pad)
    else:
        @cuda.jit(device=True, inline=True)
        def pre(h, n, lo_pad, hi_pad):
            return int64(0), int64(lo_pad) * (h == 0), lo_pad + n, lo_pad + n + int64(hi_pad) * (h == n - 1)
    return pre


@functools.cache
def fold_padding_edges_kernel(dtype, mode, dense=True):
    """gx[n, c, h, w] = Σ gp[n, c, i, j] over every padded position (i, j) that reads (h, w), in a fixed
    order, for the elements of one edge region. Fills gx there.

    Region: rows h = row0 + k (+ row_jump once k >= row_split) for k below the grid's rows, and columns
    likewise (up to `cols`), so one launch covers the top and bottom bands (every column) or the left
    and right ones (every row; the corners, written by both, get the same sum twice). Reflect and
    circular padding read a position at most once per side: their 3 × 3 candidates are predicated
    loads; replicate's edge elements sum whole pad bands, in loops. dense: C-contiguous planes whose
    offsets fit int32."""
    ZERO = np.dtype(dtype).type(0)
    pre = _preimage(mode)
    SINGLE = mode != PAD_REPLICATE
    I = int32 if dense else int64

    @cuda.jit(device=True, inline=True)
    def at(gp, plane, n, c, i, j):
        """gp[n, c, i, j] (i, j >= 0)."""
        if dense:
            return load(gp, plane, I(I(i) * I(gp.shape[3]) + I(j)))
        return gp[uint64(n), uint64(c), uint64(i), uint64(j)]

    @cuda.jit(device=True, inline=True)
    def add_row(acc, gp, plane, n, c, i, row_ok, ca, ca_ok, w, cb, cb_ok):
        """acc + row i's candidates in column order (the low one, the element's own column, the high one)."""
        if row_ok & ca_ok:
            acc += at(gp, plane, n, c, i, ca)
        if row_ok:
            acc += at(gp, plane, n, c, i, w)
        if row_ok & cb_ok:
            acc += at(gp, plane, n, c, i, cb)
        return acc

    @cuda.jit
    def fold_padding_edges(gp, gx,
                           pt, pb, pl, pr,
                           row0, row_split, row_jump, col0, col_split, col_jump, cols,
                           mag, sft, qblocks, o0, o1, o2):    # plane grid over (nb, C, rows, cols)
        H = I(gx.shape[2])
        W = I(gx.shape[3])
        n, c, k, m = general_coords(mag, sft, qblocks, o0, o1, o2)
        if m >= cols:
            return
        h = I(row0 + k + (row_jump if k >= row_split else 0))
        w = I(col0 + m + (col_jump if m >= col_split else 0))
        plane = (n * gx.shape[1] + c) * (gp.shape[2] * gp.shape[3])
        ra0, ra1, rb0, rb1 = pre(h, H, I(pt), I(pb))
        ca0, ca1, cb0, cb1 = pre(w, W, I(pl), I(pr))
        wp = I(w + pl)
        acc = ZERO
        if SINGLE:
            acc = add_row(acc, gp, plane, n, c, ra0, ra1 > ra0, ca0, ca1 > ca0, wp, cb0, cb1 > cb0)
            acc = add_row(acc, gp, plane, n, c, I(h + pt), True, ca0, ca1 > ca0, wp, cb0, cb1 > cb0)
            acc = add_row(acc, gp, plane, n, c, rb0, rb1 > rb0, ca0, ca1 > ca0, wp, cb0, cb1 > cb0)
        else:
            for band in range(3):                     # rows: the low band, the element's own row, the high band
                i0 = ra0 if band == 0 else (I(h + pt) if band == 1 else rb0)
                i1 = ra1 if band == 0 else (I(h + pt + 1) if band == 1 else rb1)
                for i in range(i0, i1):
                    acc = add_row(acc, gp, plane, n, c, i, True, ca0, ca1 > ca0, wp, cb0, cb1 > cb0)
                    for j in range(ca0 + 1, ca1):     # the rest of a replicated column band
                        acc += at(gp, plane, n, c, i, j)
                    for j in range(cb0 + 1, cb1):
                        acc += at(gp, plane, n, c, i, j)
        if dense:
            store(gx, (n * gx.shape[1] + c) * (H * W), I(h * W + w), acc)
        else:
            gx[uint64(n), uint64(c), uint64(h), uint64(w)] = acc

    return fold_padding_edges


def _bands(n, lo_pad, hi_pad, mode):
    """(first, split, jump, count): the coordinates of an axis of n that padding reads (besides their
    own position), as first + k (+ jump once k >= split) for k < count: the low band, then the high."""
    if mode == PAD_REFLECT:                         # -h for h in [1, lo]; 2(n-1) - h for h in [n-1-hi, n-2]
        low, high = (1, 1 + lo_pad), (n - 1 - hi_pad, n - 1)
    elif mode == PAD_CIRCULAR:                      # h + n into the high pad for h < hi; h - n for h >= n - lo
        low, high = (0, hi_pad), (n - lo_pad, n)
    else:                                           # replicate: the first and last coordinates
        low, high = (0, 1 if lo_pad else 0), (n - 1 if hi_pad else n, n)
    low, high = [(max(0, a), min(n, b)) for a, b in (low, high)]
    low, high = [(a, max(a, b)) for a, b in (low, high)]
    if low[1] == low[0] or high[1] == high[0] or high[0] <= low[1]:
        spans = [sp for sp in (low, high) if sp[1] > sp[0]]
        if not spans:
            return 0, 0, 0, 0
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        return first, last - first, 0, last - first
    return low[0], low[1] - low[0], high[0] - low[1], (low[1] - low[0]) + (high[1] - high[0])


def launch_fold_padding(g, dtype, mode):
    """launch(gp, gx, stream): fold the padded-grid gradient gp into gx (every image)."""
    # Launch plan: fold_padding on a plane grid over gx (one element per thread: a strided copy), then
    # fold_padding_edges over the rows that padding reads (every column) and the columns it reads
    # (every row): O(perimeter · pad) elements, each rewritten with the full sum of what reads it.
    t, b, l, r = g.pads
    Hp, Wp = g.H + t + b, g.W + l + r
    dense_ok = fits_int32(g.H * g.W, Hp * Wp)
    copy_dense = fold_padding_kernel(dtype, True) if dense_ok else None
    copy_general = fold_padding_kernel(dtype, False)
    edges_dense = fold_padding_edges_kernel(dtype, mode, True) if dense_ok else None
    edges_general = fold_padding_edges_kernel(dtype, mode, False)
    r0, rsplit, rjump, rows = _bands(g.H, t, b, mode)
    c0, csplit, cjump, cols = _bands(g.W, l, r, mode)
    # (rows, columns, (row0, row_split, row_jump, col0, col_split, col_jump, columns))
    regions = [(rows, g.W, (r0, rsplit, rjump, 0, g.W, 0, g.W)), (g.H, cols, (0, g.H, 0, c0, csplit, cjump, cols))]
    regions = [reg for reg in regions if reg[0] and reg[1]]
    plans = {}

    def plan(nb):
        if nb not in plans:
            plans[nb] = (dense_plane_launches(nb * g.C, g.H, g.W, THREADS) if dense_ok else None,
                         general_plane_launches(nb, g.C, g.H, g.W, THREADS),
                         [(general_plane_launches(nb, g.C, rs, cs, THREADS), where) for rs, cs, where in regions])
        return plans[nb]

    def launch(gp, gx, stream):
        dense_plan, general_plan, edge_plans = plan(gx.shape[0])
        dense = copy_dense is not None and c_contiguous(gp, gx)
        for grid, block, tail in (dense_plan if dense else general_plan):
            (copy_dense if dense else copy_general)[grid, block, stream](gp, gx, t, l, *tail)
        edges = edges_dense if dense else edges_general
        for launches, where in edge_plans:       # after the copy on the same stream: rewrites the edges
            for grid, block, tail in launches:
                edges[grid, block, stream](gp, gx, t, b, l, r, *where, *tail)

    return launch


def launch_col2im(g, dtype, mode):
    """launch(cols, gx, gp, img0, stream): fold a chunk of columns (nb images, all pixels) into images
    img0 .. img0+nb of gx. For a padding mode other than zeros, gp is a padded-grid scratch of at least
    nb images, (≥ nb, C, H+t+b, W+l+r)."""
    # Launch plan: a plane grid (see _common) over the destination, one element per thread: straight
    # into gx for zeros padding; other modes gather into the padded grid, then fold it into gx.
    t, b, l, r = g.pads
    window = compiled_window(g)
    Hp, Wp = g.H + t + b, g.W + l + r
    if not fits_int32(Hp + g.R * g.dilation[0], Wp + g.S * g.dilation[1]):
        raise ValueError(f"col2im: an axis of the padded input {(Hp, Wp)} is past 2**31")
    dense_ok = fits_int32(Hp * Wp, g.C * g.R * g.S * g.P * g.Q, (Hp + g.R * g.dilation[0]) * Wp)
    dense = col2im_kernel(dtype, window, True) if dense_ok else None
    general = col2im_kernel(dtype, window, False)
    fold = launch_fold_padding(g, dtype, mode)
    scalars = (g.R, g.S, g.stride[0], g.stride[1], t, l, g.dilation[0], g.dilation[1], g.P, g.Q)
    mags = magic_numbers(g.stride[0]) + magic_numbers(g.stride[1])
    plans = {}

    def plan(nb, Hd, Wd):
        if (nb, Hd, Wd) not in plans:
            plans[nb, Hd, Wd] = (dense_plane_launches(nb * g.C, Hd, Wd, THREADS),
                                 general_plane_launches(nb, g.C, Hd, Wd, THREADS))
        return plans[nb, Hd, Wd]

    def gather(cols, dst, origin, stream):
        dense_plan, general_plan = plan(*dst.shape[:1], *dst.shape[2:])
        use_dense = dense is not None and c_contiguous(cols, dst)
        for grid, block, tail in (dense_plan if use_dense else general_plan):
            (dense if use_dense else general)[grid, block, stream](cols, dst, *scalars, *origin, mags, *tail)

    def launch(cols, gx, gp, img0, stream):
        nb = cols.shape[0]
        gx = gx[img0:img0 + nb]
        if mode == PAD_ZEROS:
            gather(cols, gx, (0, 0), stream)
            return
        gp = gp[:nb]
        gather(cols, gp, (-t, -l), stream)
        fold(gp, gx, stream)

    return launch

