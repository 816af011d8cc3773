"""Implicit GEMM: the convolution as our tiled GEMM (kernels/gemm.py) whose B tiles are gathered from
the input on the fly in im2col's layout, so the column matrix is never written.

Product g of the batch is (image img0 + g // groups, group g % groups): M = K/groups output channels,
N = P·Q pixels, K = C/groups·R·S taps. Every gpu_conv2d option holds (stride, dilation, asymmetric
padding and every padding mode, groups) and the GEMM's fused NCHW epilogue writes y directly.
"""

import functools

import numpy as np
from numba import cuda

from . import gemm
from ._common import source_index


@functools.cache
def gather_loader(dtype):
    """load(x, g, kk, n, K, N, groups, img0, pix0, Q, conv): im2col's entry (row kk = (c, r, s) of product
    g's group, column n = pixel pix0 + n of image img0 + g // groups) read from x (N, C, H, W), padded by
    the mode in conv = (R, S, sh, sw, pt, pl, dh, dw, mode); 0 past the product's edge."""
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit(device=True, inline=True)
    def gather(B, g, kk, n, K, N, groups, img0, pix0, Q, conv):
        if kk < K and n < N:
            R = conv[0]
            S = conv[1]
            s = kk % S
            t = kk // S
            r = t % R
            c = (g % groups) * (K // (R * S)) + t // R
            pix = pix0 + n
            p = pix // Q
            q = pix - p * Q
            hs = source_index(p * conv[2] - conv[4] + r * conv[6], B.shape[2], conv[8])
            ws = source_index(q * conv[3] - conv[5] + s * conv[7], B.shape[3], conv[8])
            if hs >= 0 and ws >= 0:
                return B[img0 + g // groups, c, hs, ws]
        return ZERO

    return gather


def implicit_gemm_kernel(dtype, bias_mode=gemm.BIAS_NONE, act=gemm.ACT_NONE):
    return gemm.gemm_kernel(dtype, "nchw", bias_mode, act, False, gather_loader(dtype))


def launch_implicit_gemm(g, dtype, images, mode, bias_mode, act, alpha):
    """launch(A, x, y, bias, img0, stream) for `images` images of geometry g; A is weight viewed as
    (groups, K/groups, C/groups·R·S)."""
    # Launch plan: the GEMM's (ceil(P·Q / BN), ceil(K/groups / BM), images·groups) grid of 16×16 blocks.
    t, _, l, _ = g.pads
    conv = (g.R, g.S, g.stride[0], g.stride[1], t, l, g.dilation[0], g.dilation[1], mode)
    launch = gemm.launch_gemm(dtype, "nchw", g.K // g.groups, g.P * g.Q, g.C // g.groups * g.R * g.S,
                              images * g.groups, True, True, bias_mode, act, alpha,
                              load_b=gather_loader(dtype), conv=conv)
    return lambda A, x, y, bias, img0, stream: launch(A, x, y, bias, img0, 0, stream)
