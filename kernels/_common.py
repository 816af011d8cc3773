"""Device helpers shared by the kernel families: padding-mode index mapping and the fused epilogue.

Codes for padding modes and activations are plain ints passed at launch, so one compiled kernel per
dtype serves every mode and activation (the branch on them is uniform across a launch).
Device functions that need typed constants are made per dtype by a cached factory: a float32 kernel
must not mix in float64 literals, which would promote its arithmetic to float64.
"""

import functools
import math

import numba
import numpy as np
from numba import cuda

# padding modes, as torch.nn.Conv2d's padding_mode
PAD_ZEROS = 0
PAD_REFLECT = 1
PAD_REPLICATE = 2
PAD_CIRCULAR = 3
PAD_CODES = {"zeros": PAD_ZEROS, "reflect": PAD_REFLECT, "replicate": PAD_REPLICATE, "circular": PAD_CIRCULAR}

# activations fused into the epilogue
ACT_NONE = 0
ACT_RELU = 1
ACT_LEAKY_RELU = 2
ACT_SIGMOID = 3
ACT_TANH = 4
ACT_ELU = 5
ACT_CODES = {None: ACT_NONE, "relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU, "sigmoid": ACT_SIGMOID,
             "tanh": ACT_TANH, "elu": ACT_ELU}


@cuda.jit(device=True, inline=True)
def source_index(i, n, mode):
    """Where padded coordinate i (possibly < 0 or >= n) reads from in [0, n), or -1 for zero padding.

    Total for every i: tiles staged in shared memory reach past the padded input (their unused halo),
    so reflect is taken with period 2(n-1) and circular modulo n rather than one reflection or wrap.
    Within the padding the host allows (reflect pads < n, circular pads <= n) this is torch's padding.
    """
    if i >= 0 and i < n:
        return i
    if mode == PAD_ZEROS:
        return -1
    if mode == PAD_REPLICATE:
        return 0 if i < 0 else n - 1
    if mode == PAD_CIRCULAR:
        m = i % n
        return m + n if m < 0 else m
    if n == 1:
        return 0
    period = 2 * (n - 1)
    m = i % period
    if m < 0:
        m += period
    return m if m < n else period - m


@cuda.jit(device=True, inline=True)
def unflatten_nchw(e, C, P, Q):
    """(n, c, p, q) of flat index e into an (N, C, P, Q) array, q fastest (consecutive threads,
    consecutive columns: coalesced)."""
    q = e % Q
    t = e // Q
    p = t % P
    t = t // P
    return t // C, t % C, p, q


@cuda.jit(device=True, inline=True)
def tile_origin(q_tiles, tile_p, tile_q):
    """(p0, q0): the first output row and column of this block's tile (blockIdx.x walks tiles row-major)."""
    return (cuda.blockIdx.x // q_tiles) * tile_p, (cuda.blockIdx.x % q_tiles) * tile_q


# CUDA's grid limits: gridDim.x up to 2**31 - 1 blocks, gridDim.y and gridDim.z up to 65535. A launcher
# whose work could exceed them folds it into x, launches in chunks, or grid-strides (see each launch plan).
MAX_GRID_X = 2**31 - 1
MAX_GRID_YZ = 65535

# Grid-striding 1-D kernels launch at most this many blocks; each thread then strides over the rest.
MAX_STRIDING_BLOCKS = 65535 * 8


def striding_blocks(total, threads):
    """Blocks for a grid-striding 1-D launch over `total` elements: one per `threads`, capped."""
    return max(1, min(-(-int(total) // threads), MAX_STRIDING_BLOCKS))


@functools.cache
def numba_type(dtype):
    return numba.from_dtype(np.dtype(dtype))


@functools.cache
def epilogue(dtype):
    """apply(v, act, alpha): the activation `act` (an ACT_ code) of v, in v's own precision."""
    ZERO = np.dtype(dtype).type(0)
    ONE = np.dtype(dtype).type(1)

    @cuda.jit(device=True, inline=True)
    def apply(v, act, alpha):
        # comparisons written so NaN passes through, as PyTorch's activations let it
        if act == ACT_RELU:
            return ZERO if v < ZERO else v
        if act == ACT_LEAKY_RELU:
            return v * alpha if v < ZERO else v
        if act == ACT_SIGMOID:
            return ONE / (ONE + math.exp(-v))
        if act == ACT_TANH:
            return math.tanh(v)
        if act == ACT_ELU:
            return alpha * math.expm1(v) if v < ZERO else v
        return v

    return apply


@functools.cache
def stage_tile(dtype):
    """stage(sm, base, x, n, c, h0, w0, IH, IW, mode, tid, nthreads): copy x[n, c, h0:h0+IH, w0:w0+IW],
    padded by `mode`, into sm[base : base + IH*IW] (row-major), all threads of the block cooperating.

    Consecutive threads take consecutive columns, so global reads of a row coalesce.
    """
    ZERO = np.dtype(dtype).type(0)

    @cuda.jit(device=True, inline=True)
    def stage(sm, base, x, n, c, h0, w0, IH, IW, mode, tid, nthreads):
        H = x.shape[2]
        W = x.shape[3]
        for e in range(tid, IH * IW, nthreads):
            hs = source_index(h0 + e // IW, H, mode)
            ws = source_index(w0 + e % IW, W, mode)
            v = ZERO
            if hs >= 0 and ws >= 0:
                v = x[n, c, hs, ws]
            sm[base + e] = v

    return stage


@functools.cache
def epilogue_grad(dtype):
    """grad(z, act, alpha): d act / dz at the pre-activation z (1 for no activation), as PyTorch's
    backward formulas (relu's is 0 at z = 0)."""
    ZERO = np.dtype(dtype).type(0)
    ONE = np.dtype(dtype).type(1)

    @cuda.jit(device=True, inline=True)
    def grad(z, act, alpha):
        if act == ACT_RELU:
            return ONE if z > ZERO else ZERO
        if act == ACT_LEAKY_RELU:
            return ONE if z > ZERO else alpha
        if act == ACT_SIGMOID:
            s = ONE / (ONE + math.exp(-z))
            return s * (ONE - s)
        if act == ACT_TANH:
            t = math.tanh(z)
            return ONE - t * t
        if act == ACT_ELU:
            return ONE if z > ZERO else alpha * math.exp(z)
        return ONE

    return grad
