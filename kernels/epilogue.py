"""Stand-alone elementwise passes around an epilogue: y = act(y) in place, for epilogues that cannot
take it fused, the gradient through an activation, go · act'(z), and a fill (zero gradients).

The GEMM's epilogue must unroll for its register block to stay in registers, and the transcendental
activations (sigmoid, tanh, elu) make it too large to unroll at 8×8 per thread; the GEMM path runs
them here instead, as one read and one write of the output after the product.
"""

import functools

import numpy as np
from numba import cuda, int64

from ._common import epilogue, epilogue_grad, striding_blocks, unflatten_nchw

THREADS = 256


@functools.cache
def activation_kernel(dtype):
    apply = epilogue(dtype)

    @cuda.jit
    def activation(y, act, alpha):          # y (N, C, P, Q), any strides; act an ACT_ code
        N, C, P, Q = y.shape
        total = int64(N) * C * P * Q
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, p, q = unflatten_nchw(e, C, P, Q)
            y[n, c, p, q] = apply(y[n, c, p, q], act, alpha)

    return activation


def launch_activation(shape, dtype, act, alpha):
    # Launch plan: 1-D grid of 256-thread blocks, one element per thread (q fastest: coalesced),
    # grid-striding past 65535·8 blocks.
    kernel = activation_kernel(dtype)
    blocks = striding_blocks(np.prod(shape), THREADS)
    alpha = np.dtype(dtype).type(alpha)

    def launch(y, stream):
        kernel[blocks, THREADS, stream](y, act, alpha)

    return launch


@functools.cache
def activation_grad_kernel(dtype):
    grad = epilogue_grad(dtype)

    @cuda.jit
    def activation_grad(go, z, out, act, alpha):   # out = go · act'(z); all (N, C, P, Q), any strides
        N, C, P, Q = out.shape
        total = int64(N) * C * P * Q
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, total, int64(cuda.gridDim.x) * cuda.blockDim.x):
            n, c, p, q = unflatten_nchw(e, C, P, Q)
            out[n, c, p, q] = go[n, c, p, q] * grad(z[n, c, p, q], act, alpha)

    return activation_grad


def launch_activation_grad(shape, dtype, act, alpha):
    """launch(go, z, out, stream): out = go · act'(z). With act NONE it is a strided -> dense copy."""
    # Launch plan: as the activation pass, one element per thread, q fastest.
    kernel = activation_grad_kernel(dtype)
    blocks = striding_blocks(np.prod(shape), THREADS)
    alpha = np.dtype(dtype).type(alpha)

    def launch(go, z, out, stream):
        kernel[blocks, THREADS, stream](go, z, out, act, alpha)

    return launch


@functools.cache
def fill_kernel(dtype):
    @cuda.jit
    def fill(y, value):                    # y 1-D: every element = value
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for e in range(start, y.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
            y[e] = value

    return fill


def launch_fill(n, dtype, value=0):
    """launch(y, stream): y (n,) = value; the gradients of an empty batch are zeros."""
    # Launch plan: 1-D grid of 256-thread blocks, one element per thread, grid-striding past 65535·8 blocks.
    kernel = fill_kernel(dtype)
    value = np.dtype(dtype).type(value)
    blocks = striding_blocks(n, THREADS)

    def launch(y, stream):
        if n:
            kernel[blocks, THREADS, stream](y, value)

    return launch
