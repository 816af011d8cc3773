"""im2col and col2im: a convolution's input unfolded into GEMM columns, and the adjoint (fold).

Column layout (images, C·R·S, pixels): cols[b, (c·R + r)·S + s, j] is the input element that kernel
tap (r, s) of channel c reads for output pixel pix0 + j of image img0 + b, padded by the padding mode
as it is read (no padded copy). Channels are the slow part of a row, so for groups the rows of group g
are one contiguous block and cols reshapes to (images·groups, C/groups·R·S, pixels) with no copy.

col2im gathers (one thread per destination element sums its taps in a fixed order): deterministic,
no atomics, no zero fill. For a padding mode other than zeros it gathers into the padded grid and
`fold_padding` adds each padded position into the element it was read from (the adjoint of padding).
"""

import functools

import numpy as np
from numba import cuda, int64

from ._common import PAD_ZEROS, source_index, striding_blocks, unflatten_nchw

THREADS = 256          # one element per thread, the fastest axis along threads: coalesced stores


@functools.cache
def im2col_kernel(dtype):
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit
    def im2col(x, cols,                               # x (N, C, H, W); cols (nb, C·R·S, npix)
               R, S, sh, sw, pt, pl, dh, dw, mode,    # geometry; mode a PAD_ code
               Q, img0, pix0):                        # output width, first image and pixel
        H = x.shape[2]
        W = x.shape[3]
        nb, rows, npix = cols.shape
        total = int64(nb) * rows * npix
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            j = e % npix
            t = e // npix
            row = t % rows
            b = t // rows
            s = row % S
            r = (row // S) % R
            c = row // (R * S)
            pix = pix0 + j
            p = pix // Q
            q = pix - p * Q
            hs = source_index(p * sh - pt + r * dh, H, mode)
            ws = source_index(q * sw - pl + s * dw, W, mode)
            v = ZERO
            if hs >= 0 and ws >= 0:
                v = x[img0 + b, c, hs, ws]
            cols[b, row, j] = v

    return im2col


def launch_im2col(g, dtype, mode):
    """launch(x, cols, img0, pix0, stream) for geometry g and a cols chunk of any (nb, C·R·S, npix)."""
    # Launch plan: 1-D grid of 256-thread blocks over the chunk's elements, pixel fastest.
    kernel = im2col_kernel(dtype)
    t, _, l, _ = g.pads
    scalars = (g.R, g.S, g.stride[0], g.stride[1], t, l, g.dilation[0], g.dilation[1], mode, g.Q)

    def launch(x, cols, img0, pix0, stream):
        kernel[striding_blocks(cols.size, THREADS), THREADS, stream](x, cols, *scalars, img0, pix0)

    return launch


@functools.cache
def col2im_kernel(dtype):
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit
    def col2im(cols, dst,                             # cols (nb, C·R·S, P·Q); dst (N, C, Hd, Wd)
               R, S, sh, sw, pt, pl, dh, dw,          # geometry of the forward
               P, Q, origin_h, origin_w):             # dst[b, c, i, j] is input coordinate (i+origin_h, ..)
        nb = cols.shape[0]
        C = dst.shape[1]
        Hd = dst.shape[2]
        Wd = dst.shape[3]
        total = int64(nb) * C * Hd * Wd
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            b, c, i, j = unflatten_nchw(e, C, Hd, Wd)
            h = i + origin_h + pt                 # row in the padded input's own coordinates
            w = j + origin_w + pl
            acc = ZERO
            for r in range(R):
                u = h - r * dh
                if u >= 0 and u % sh == 0 and u // sh < P:
                    p = u // sh
                    for s in range(S):
                        v = w - s * dw
                        if v >= 0 and v % sw == 0 and v // sw < Q:
                            acc += cols[b, (c * R + r) * S + s, p * Q + v // sw]
            dst[b, c, i, j] = acc

    return col2im


@functools.cache
def fold_padding_kernel(dtype):
    @cuda.jit
    def fold_padding(gp, gx, pt, pl, mode):   # gp (nb, C, pt+H+pb, pl+W+pr) -> gx (nb, C, H, W)
        nb, C, H, W = gx.shape
        Hp = gp.shape[2]
        Wp = gp.shape[3]
        total = int64(nb) * C * H * W
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, h, w = unflatten_nchw(e, C, H, W)
            acc = gp[n, c, h + pt, w + pl]
            # the padded positions that read (h, w): in the top/bottom bands (any column) or the
            # left/right bands of the interior rows; each position is visited once
            for i in range(Hp):
                if i < pt or i >= pt + H:
                    if source_index(i - pt, H, mode) == h:
                        for j in range(Wp):
                            if source_index(j - pl, W, mode) == w:
                                acc += gp[n, c, i, j]
            for j in range(Wp):
                if j < pl or j >= pl + W:
                    if source_index(j - pl, W, mode) == w:
                        acc += gp[n, c, h + pt, j]
            gx[n, c, h, w] = acc

    return fold_padding


def launch_fold_padding(g, dtype, mode):
    """launch(gp, gx, stream): fold the padded-grid gradient gp into gx (every image)."""
    # Launch plan: 1-D grid of 256-thread blocks, one element of gx per thread, w fastest.
    kernel = fold_padding_kernel(dtype)
    t, _, l, _ = g.pads
    blocks = striding_blocks(g.N * g.C * g.H * g.W, THREADS)

    def launch(gp, gx, stream):
        kernel[blocks, THREADS, stream](gp, gx, t, l, mode)

    return launch


def launch_col2im(g, dtype, mode):
    """launch(cols, gx, gp, img0, stream): fold a chunk of columns (nb images, all pixels) into images
    img0 .. img0+nb of gx. For a padding mode other than zeros, gp is a padded-grid scratch of at least
    nb images, (≥ nb, C, H+t+b, W+l+r)."""
    # Launch plan: zeros padding gathers straight into gx (one thread per element of the chunk's images);
    # other modes gather into the padded grid, then fold it into gx (one thread per element of gx).
    kernel = col2im_kernel(dtype)
    fold = fold_padding_kernel(dtype)
    t, b, l, r = g.pads
    scalars = (g.R, g.S, g.stride[0], g.stride[1], t, l, g.dilation[0], g.dilation[1], g.P, g.Q)
    plane = g.C * g.H * g.W
    padded = g.C * (g.H + t + b) * (g.W + l + r)

    def launch(cols, gx, gp, img0, stream):
        nb = cols.shape[0]
        gx = gx[img0:img0 + nb]
        if mode == PAD_ZEROS:
            kernel[striding_blocks(nb * plane, THREADS), THREADS, stream](cols, gx, *scalars, 0, 0)
            return
        gp = gp[:nb]
        kernel[striding_blocks(nb * padded, THREADS), THREADS, stream](cols, gp, *scalars, -t, -l)
        fold[striding_blocks(nb * plane, THREADS), THREADS, stream](gp, gx, t, l, mode)

    return launch
