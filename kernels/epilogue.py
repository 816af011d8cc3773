"""Stand-alone elementwise passes around an epilogue: y = act(y) in place, for epilogues that cannot
take it fused, the gradient through an activation, go · act'(z), and a fill (zero gradients).

The GEMM's epilogue must unroll for its register block to stay in registers, and the transcendental
activations (sigmoid, tanh, elu, gelu, silu) make it too large to unroll at 8×8 per thread; the GEMM path runs
them here instead, as one read and one write of the output after the product.

Each kernel is compiled per activation (the code of one activation only), in two variants chosen per
call: dense (every array C-contiguous: the arrays are walked flat, PER_THREAD elements per thread,
each a constant offset from the thread's first) and general (any strides: a plane grid, see
gpuconv.kernels._common, one element per thread). The activation passes also take 16-bit data in place
of a dtype, a kind "f16" / "bf16" (gpuconv.kernels._half): every array is then uint16 bits, each element
widened to float32 as it is read and the result rounded once as it is written.
"""

import functools

import numpy as np
from numba import cuda, int32, int64, uint64

from ._common import (activation_fn, activation_grad_fn, c_contiguous, general_coords, general_plane_launches,
                      striding_blocks)
from ._flat import load, store
from ._half import codec, storage

THREADS = 256
# Elements per thread of the dense variant, THREADS apart (a warp's accesses stay coalesced): the
# thread's start and bounds are computed once for all of them.
PER_THREAD = 4


@cuda.jit(device=True, inline=True)
def _dense_start(total):
    """(first flat index of this thread, elements left from it, capped to fit int32)."""
    first = int64(cuda.blockIdx.x) * (THREADS * PER_THREAD) + cuda.threadIdx.x
    return first, int32(min(total - first, int64(THREADS * PER_THREAD)))


def _dense_blocks(total):
    return max(1, -(-int(total) // (THREADS * PER_THREAD)))


class _ElementwiseLauncher:
    """launch(arrays, scalars, stream) of a dense/general kernel pair over arrays of one 4-D shape."""

    def __init__(self, factory, shape):
        N, C, P, Q = shape
        self.dense, self.general = factory(dense=True), factory(dense=False)
        self.blocks = _dense_blocks(N * C * P * Q)
        self.general_plan = general_plane_launches(N, C, P, Q, THREADS)
        self.dense_tail = (np.uint32(0), np.uint32(0), 0, 0, 0, 0)

    def __call__(self, arrays, scalars, stream):
        if c_contiguous(*arrays):
            self.dense[self.blocks, THREADS, stream](*arrays, *scalars, *self.dense_tail)
            return
        for grid, block, tail in self.general_plan:
            self.general[grid, block, stream](*arrays, *scalars, *tail)


@functools.cache
def activation_kernel(dtype, act, dense=True):
    """y = act(y) in place (act an ACT_ code, compiled in; dtype a NumPy dtype or a 16-bit kind). Fills y."""
    arith, kind = storage(dtype)
    widen, narrow = codec(kind)
    apply = activation_fn(arith, act)

    @cuda.jit
    def activation(y,                                   # (N, C, P, Q)
                   alpha,                               # the activation's parameter
                   mag, sft, qblocks, o0, o1, o2):      # general: plane grid (see _common)
        if dense:
            first, left = _dense_start(y.size)
            for k in range(PER_THREAD):
                if k * THREADS < left:
                    i = int64(k * THREADS)
                    store(y, first, i, narrow(apply(widen(load(y, first, i)), alpha)))
        else:
            n, c, p, q = general_coords(mag, sft, qblocks, o0, o1, o2)
            if p < y.shape[2] and q < y.shape[3]:
                n, c, p, q = uint64(n), uint64(c), uint64(p), uint64(q)   # unsigned: no wraparound code
                y[n, c, p, q] = narrow(apply(widen(y[n, c, p, q]), alpha))

    return activation


@functools.lru_cache(maxsize=1024)
def launch_activation(shape, dtype, act, alpha):
    """launch(y, stream): y = act(y) in place, for y of `shape` (N, C, P, Q), any strides (dtype: a NumPy
    dtype, or a 16-bit kind for uint16 bits)."""
    # Launch plan: dense: a 1-D grid of 256-thread blocks, 4 elements per thread (256 apart); general:
    # a plane grid (see _common), one element per thread, q fastest.
    run = _ElementwiseLauncher(functools.partial(activation_kernel, dtype, act), tuple(shape))
    scalars = (storage(dtype)[0].type(alpha),)

    def launch(y, stream):
        run((y,), scalars, stream)

    return launch


@functools.cache
def activation_grad_kernel(dtype, act, dense=True):
    """out = go · act'(z) (act compiled in; with ACT_NONE a copy of go; dtype a NumPy dtype or a 16-bit
    kind, for all three arrays). Fills out."""
    arith, kind = storage(dtype)
    widen, narrow = codec(kind)
    grad = activation_grad_fn(arith, act)

    @cuda.jit
    def activation_grad(go, z, out,                     # all (N, C, P, Q)
                        alpha,
                        mag, sft, qblocks, o0, o1, o2):  # general: plane grid (see _common)
        if dense:
            first, left = _dense_start(out.size)
            for k in range(PER_THREAD):
                if k * THREADS < left:
                    i = int64(k * THREADS)
                    store(out, first, i, narrow(widen(load(go, first, i)) * grad(widen(load(z, first, i)), alpha)))
        else:
            n, c, p, q = general_coords(mag, sft, qblocks, o0, o1, o2)
            if p < out.shape[2] and q < out.shape[3]:
                n, c, p, q = uint64(n), uint64(c), uint64(p), uint64(q)
                out[n, c, p, q] = narrow(widen(go[n, c, p, q]) * grad(widen(z[n, c, p, q]), alpha))

    return activation_grad


def launch_activation_grad(shape, dtype, act, alpha):
    """launch(go, z, out, stream): out = go · act'(z). With act NONE it is a strided -> dense copy (dtype:
    a NumPy dtype, or a 16-bit kind for uint16 bits)."""
    # Launch plan: as the activation pass.
    run = _ElementwiseLauncher(functools.partial(activation_grad_kernel, dtype, act), tuple(shape))
    scalars = (storage(dtype)[0].type(alpha),)

    def launch(go, z, out, stream):
        run((go, z, out), scalars, stream)

    return launch

@functools.cache
def fill_kernel(dtype):
    @cuda.jit
    def fill(y, value):                    # y 1-D: every element = value
        e = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        step = int64(cuda.gridDim.x) * cuda.blockDim.x
        while e < y.shape[0]:              # (a range with a run-time step divides)
            y[uint64(e)] = value
            e += step

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
