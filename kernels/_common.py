"""Device helpers shared by the kernel families: padding-mode index mapping and the fused epilogue.

Codes for padding modes and activations are plain ints. A padding mode may be passed at launch (one
compiled kernel serves every mode; the branch on it is uniform across a launch); an activation is
compiled into each kernel that applies it (activation_fn, or epilogue with a constant code), since the
transcendental ones (erfc, tanh, exp) would otherwise all be inlined into every build.
Device functions that need typed constants are made per dtype by a cached factory: a float32 kernel
must not mix in float64 literals, which would promote its arithmetic to float64.
"""

import functools
import math

import numba
import numpy as np
from numba import cuda, int32, int64, uint32, uint64

from ._half import codec, storage

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
ACT_GELU = 6                    # exact: z·Φ(z)
ACT_GELU_TANH = 7               # torch's approximate="tanh"
ACT_SILU = 8
ACT_CODES = {None: ACT_NONE, "relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU, "sigmoid": ACT_SIGMOID,
             "tanh": ACT_TANH, "elu": ACT_ELU, "gelu": ACT_GELU, "gelu_tanh": ACT_GELU_TANH, "silu": ACT_SILU}
# GELU's constants: 1/√2, 1/√(2π), √(2/π) and the tanh form's cubic coefficient (as torch's)
_SQRT1_2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044715


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


@functools.cache
def pad_fold(mode, I):
    """fold(i, n) in integer type I: where padded coordinate i reads from in [0, n), or -1 (zeros
    padding, outside), with the padding mode compiled in. One reflection or wrap, no division: valid for
    -n <= i < 2n, which covers every coordinate of a padded input (reflect pads < n, circular <= n)."""
    if mode == PAD_ZEROS:
        @cuda.jit(device=True, inline=True)
        def fold(i, n):
            return i if (i >= 0) & (i < n) else I(-1)
    elif mode == PAD_REPLICATE:
        @cuda.jit(device=True, inline=True)
        def fold(i, n):
            return min(max(i, I(0)), I(n - 1))
    elif mode == PAD_CIRCULAR:
        @cuda.jit(device=True, inline=True)
        def fold(i, n):
            return I(i + n) if i < 0 else (I(i - n) if i >= n else i)
    else:
        @cuda.jit(device=True, inline=True)
        def fold(i, n):
            return I(-i) if i < 0 else (I(2 * n - 2 - i) if i >= n else i)
    return fold


@functools.cache
def pad_source(mode, I):
    """source(i, n) in integer type I: where coordinate i reads from in [0, n), or -1 (zeros padding,
    outside): pad_fold's reflection or wrap, then clamped into the input. A coordinate of the padded
    input gets the mode's value; one past it (a staged tile's or a Winograd patch's unused halo) some
    in-bounds element (zeros padding: zero), so nothing reads outside x."""
    fold = pad_fold(mode, I)
    ZEROS = mode == PAD_ZEROS

    @cuda.jit(device=True, inline=True)
    def source(i, n):
        s = fold(i, n)
        return s if ZEROS else min(max(s, I(0)), I(n - 1))

    return source


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


# ----------------------------------------------------------------------------- index math without division
#
# A division by a runtime extent is a 64-bit division call in Numba (`//` and `%` on int64), and even a
# 32-bit one is a ~20-instruction sequence. Kernels take their coordinates from the grid instead, and
# where one division remains (a flat in-plane index into row and column), it is a multiply by a
# host-computed magic number.

INT32_MAX = 2**31 - 1


def magic_numbers(d):
    """(magic, shift) with (n · magic) >> shift == n // d for every 0 <= n < 2**31 (1 <= d < 2**31).

    Granlund and Montgomery's round-up method: with 2**l >= d, magic = ceil(2**(31 + l) / d) < 2**32,
    and the error magic·d − 2**(31+l) < d <= 2**l keeps every quotient of a 31-bit n exact."""
    d = int(d)
    if not 1 <= d <= INT32_MAX:
        raise ValueError(f"divisor must be in [1, 2**31), got {d}")
    shift = 31 + (d - 1).bit_length()
    return np.uint32(-(-(1 << shift) // d)), np.uint32(shift)


@cuda.jit(device=True, inline=True)
def divmagic(n, magic, shift):
    """n // d for 0 <= n < 2**31, given (magic, shift) = magic_numbers(d) as uint32: one 32×32 -> 64-bit
    multiply and a shift."""
    return int32((uint64(uint32(n)) * uint64(magic)) >> uint64(shift))


def grid_chunks(n, limit=None):
    """[(start, count)] covering range(n) in pieces of at most `limit` (default MAX_GRID_YZ: grid y and
    z stop at 65535)."""
    limit = MAX_GRID_YZ if limit is None else limit
    return [(s, min(limit, n - s)) for s in range(0, max(int(n), 0), limit)]


# ----------------------------------------------------------------------------- plane grids
#
# A kernel over the elements of an (N, C, P, Q) array takes each thread's coordinates from the grid, in
# one of two variants compiled from the same source (a `dense` flag of its factory) and chosen per call:
# - dense: every array C-contiguous and every plane's offsets within int32 (the wrapper proves it for
#   the shape). Blocks walk a plane's P·Q elements flat (grid x) and the planes (grid y); (p, q) come
#   from one magic-number division; offsets inside a plane are int32 from a 64-bit plane start, read
#   and written through gpuconv.kernels._flat.
# - general: any strides and any size. Blocks walk (row, column block) pairs (grid x: one magic
#   division per thread, uniform across the block), channels (y) and images (z); int64 arithmetic and
#   the arrays' own indexing. Extents past the grid's limits are split into several launches.
# Both take the same trailing arguments (mag, sft, qblocks, o0, o1, o2): the magic numbers of the
# division, the column blocks per row (general), and the offsets of this launch's chunk (general:
# first row, channel and image; dense: first plane in o2).


@cuda.jit(device=True, inline=True)
def dense_coords(Q, mag, sft, o2):
    """(e, p, q, plane): this thread's flat in-plane index (int32; may be past the plane's end, for the
    caller to test), its row and column, and its plane (int64)."""
    e = int32(cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x)
    p = divmagic(e, mag, sft)
    return e, p, int32(e - p * Q), int64(o2) + cuda.blockIdx.y


@cuda.jit(device=True, inline=True)
def general_coords(mag, sft, qblocks, o0, o1, o2):
    """(n, c, p, q) of this thread in a general plane grid (int64; q may be past the row's end)."""
    b = int32(cuda.blockIdx.x)
    r = divmagic(b, mag, sft)
    q = int64(b - r * qblocks) * cuda.blockDim.x + cuda.threadIdx.x
    return int64(o2) + cuda.blockIdx.z, int64(o1) + cuda.blockIdx.y, int64(o0) + r, q


@functools.cache
def plane_coords(dense):
    """coords(P, Q, mag, sft, qblocks, o0, o1, o2) -> (inside, e, plane, n, c, p, q) of this thread in a
    plane grid over P × Q planes: dense: e, plane, p, q (int32 but plane) set, n = c = 0; general: n, c,
    p, q (int64) set, e = plane = 0. inside: whether (p, q) lies in the plane."""
    I = int32 if dense else int64

    @cuda.jit(device=True, inline=True)
    def coords(P, Q, mag, sft, qblocks, o0, o1, o2):
        if dense:
            e, p, q, plane = dense_coords(Q, mag, sft, o2)
            return e < I(P * Q), e, plane, int64(0), int64(0), p, q
        n, c, p, q = general_coords(mag, sft, qblocks, o0, o1, o2)
        return (p < P) & (q < Q), I(0), int64(0), n, c, p, q

    return coords


def plane_block(extent, threads):
    """Threads per block for rows of `extent` elements: `threads`, or fewer (whole warps) for small ones."""
    return max(32, min(threads, 32 * -(-int(extent) // 32)))


def dense_plane_launches(planes, P, Q, threads):
    """[(grid, block, tail)] of a dense plane grid over `planes` planes of P×Q elements."""
    block = plane_block(P * Q, threads)
    mag, sft = magic_numbers(Q)
    return [((-(-(P * Q) // block), count), block, (mag, sft, 0, 0, 0, z0)) for z0, count in grid_chunks(planes)]


def general_plane_launches(N, C, P, Q, threads):
    """[(grid, block, tail)] of a general plane grid over (N, C, P, Q)."""
    block = plane_block(Q, threads)
    qblocks = -(-Q // block)
    mag, sft = magic_numbers(qblocks)
    rows = max(1, MAX_GRID_X // qblocks)
    return [((qblocks * pc, cc, nc), block, (mag, sft, qblocks, p0, c0, n0))
            for n0, nc in grid_chunks(N) for c0, cc in grid_chunks(C) for p0, pc in grid_chunks(P, rows)]


def fits_int32(*extents):
    """Do all these (non-negative) extents, offsets or products stay below 2**31 − 1024 (headroom for the
    block that runs past a plane's end)?"""
    return all(0 <= int(v) < INT32_MAX - 1024 for v in extents)


def c_contiguous(*arrays):
    """Are all these device arrays C-contiguous (the dense variant's precondition, checked per call)?"""
    return all(a.is_c_contiguous() for a in arrays)


@functools.cache
def numba_type(dtype):
    return numba.from_dtype(np.dtype(dtype))


def _typed(dtype, *values):
    """values as dtype's scalars: constants a float32 kernel uses must be float32 (a float64 one promotes)."""
    return tuple(np.dtype(dtype).type(v) for v in values)


@functools.cache
def _activations(dtype):
    """{ACT_ code: f(v, alpha)}: each activation as its own device function, in v's own precision."""
    ZERO, HALF, ONE, SQRT1_2, SQRT_2_OVER_PI, GELU_CUBIC = _typed(dtype, 0, 0.5, 1, _SQRT1_2, _SQRT_2_OVER_PI,
                                                                  _GELU_CUBIC)

    # comparisons written so NaN passes through, as PyTorch's activations let it
    @cuda.jit(device=True, inline=True)
    def relu(v, alpha):
        return ZERO if v < ZERO else v

    @cuda.jit(device=True, inline=True)
    def leaky_relu(v, alpha):
        return v * alpha if v < ZERO else v

    @cuda.jit(device=True, inline=True)
    def sigmoid(v, alpha):
        return ONE / (ONE + math.exp(-v))

    @cuda.jit(device=True, inline=True)
    def tanh(v, alpha):
        return math.tanh(v)

    @cuda.jit(device=True, inline=True)
    def elu(v, alpha):
        return alpha * math.expm1(v) if v < ZERO else v

    # GELU and SiLU as torch's formulas (gelu(-inf) and silu(-inf) are -inf·0: NaN, as torch's), except that
    # Φ(v) is erfc(-v/√2)/2, which keeps its relative accuracy in the lower tail where 1 + erf(v/√2) cancels
    @cuda.jit(device=True, inline=True)
    def gelu(v, alpha):
        return v * (HALF * math.erfc(-v * SQRT1_2))

    @cuda.jit(device=True, inline=True)
    def gelu_tanh(v, alpha):
        return HALF * v * (ONE + math.tanh(SQRT_2_OVER_PI * (v + GELU_CUBIC * v * v * v)))

    @cuda.jit(device=True, inline=True)
    def silu(v, alpha):
        return v / (ONE + math.exp(-v))

    @cuda.jit(device=True, inline=True)
    def identity(v, alpha):
        return v

    return {ACT_NONE: identity, ACT_RELU: relu, ACT_LEAKY_RELU: leaky_relu, ACT_SIGMOID: sigmoid, ACT_TANH: tanh,
            ACT_ELU: elu, ACT_GELU: gelu, ACT_GELU_TANH: gelu_tanh, ACT_SILU: silu}


def activation_fn(dtype, act):
    """f(v, alpha): the activation `act` (an ACT_ code) compiled in, for kernels specialised per activation."""
    return _activations(dtype)[act]


def _dispatch(f):
    """g(v, act, alpha) = f[act](v, alpha) for an act known only at launch (uniform across it: no divergence);
    with act a compile-time constant the branches fold to the one taken."""
    relu, leaky_relu, sigmoid, tanh, elu, gelu, gelu_tanh, silu, identity = (
        f[a] for a in (ACT_RELU, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_TANH, ACT_ELU, ACT_GELU, ACT_GELU_TANH, ACT_SILU,
                       ACT_NONE))

    @cuda.jit(device=True, inline=True)
    def apply(v, act, alpha):
        if act == ACT_RELU:
            return relu(v, alpha)
        if act == ACT_LEAKY_RELU:
            return leaky_relu(v, alpha)
        if act == ACT_SIGMOID:
            return sigmoid(v, alpha)
        if act == ACT_TANH:
            return tanh(v, alpha)
        if act == ACT_ELU:
            return elu(v, alpha)
        if act == ACT_GELU:
            return gelu(v, alpha)
        if act == ACT_GELU_TANH:
            return gelu_tanh(v, alpha)
        if act == ACT_SILU:
            return silu(v, alpha)
        return identity(v, alpha)

    return apply


@functools.cache
def epilogue(dtype):
    """apply(v, act, alpha): the activation `act` (an ACT_ code) of v, in v's own precision."""
    return _dispatch(_activations(dtype))


@functools.cache
def stage_tile(dtype, mode):
    """stage(sm, base, x, n, c, h0, w0, IH, IW, ty, tx, ny, nx): copy x[n, c, h0:h0+IH, w0:w0+IW], padded
    by `mode` (compiled in), into sm[base : base + IH*IW] (row-major), the block's ny × nx threads
    cooperating: thread (ty, tx) takes rows ty, ty + ny, ... and in them columns tx, tx + nx, ...
    (consecutive threads, consecutive columns: a row's global reads coalesce). No division.

    A tile may reach past the padded input (rows and columns no output uses): those read a clamped,
    in-bounds element (or zero, for zeros padding), so every coordinate that is used gets the mode's
    value from one reflection or wrap (pad_fold) and none reads outside x. dtype may be a 16-bit kind
    (gpuconv.kernels._half.storage): x is then uint16 bits, widened to float32 as they are staged."""
    arith, kind = storage(dtype)
    ZERO = arith.type(0)
    widen = codec(kind)[0]
    source = pad_source(mode, int64)

    @cuda.jit(device=True, inline=True)
    def stage(sm, base, x, n, c, h0, w0, IH, IW, ty, tx, ny, nx):
        H = x.shape[2]
        W = x.shape[3]
        xn, xc = uint64(n), uint64(c)
        for ih in range(int64(ty), IH, ny):
            hs = source(int64(h0 + ih), H)
            row = uint64(base + ih * IW)
            for iw in range(int64(tx), IW, nx):
                ws = source(int64(w0 + iw), W)
                v = ZERO
                if (hs >= 0) & (ws >= 0):
                    v = widen(x[xn, xc, uint64(hs), uint64(ws)])
                sm[row + uint64(iw)] = v

    return stage


@functools.cache
def _activation_grads(dtype):
    """{ACT_ code: f'(z, alpha)}: each activation's derivative at the pre-activation z, as PyTorch's
    backward formulas (relu's is 0 at z = 0)."""
    ZERO, HALF, ONE, SQRT1_2, INV_SQRT_2PI, SQRT_2_OVER_PI, GELU_CUBIC, GELU_CUBIC3 = _typed(
        dtype, 0, 0.5, 1, _SQRT1_2, _INV_SQRT_2PI, _SQRT_2_OVER_PI, _GELU_CUBIC, 3 * _GELU_CUBIC)

    @cuda.jit(device=True, inline=True)
    def relu(z, alpha):
        return ONE if z > ZERO else ZERO

    @cuda.jit(device=True, inline=True)
    def leaky_relu(z, alpha):
        return ONE if z > ZERO else alpha

    @cuda.jit(device=True, inline=True)
    def sigmoid(z, alpha):
        s = ONE / (ONE + math.exp(-z))
        return s * (ONE - s)

    @cuda.jit(device=True, inline=True)
    def tanh(z, alpha):
        t = math.tanh(z)
        return ONE - t * t

    @cuda.jit(device=True, inline=True)
    def elu(z, alpha):
        return ONE if z > ZERO else alpha * math.exp(z)

    @cuda.jit(device=True, inline=True)
    def gelu(z, alpha):
        # Φ(z) + z·φ(z), φ(z) = exp(−z²/2)/√(2π); at z = −inf, −inf·0: NaN, as torch's gelu_backward
        return HALF * math.erfc(-z * SQRT1_2) + z * math.exp(-HALF * z * z) * INV_SQRT_2PI

    @cuda.jit(device=True, inline=True)
    def gelu_tanh(z, alpha):
        # ½·(1 + t) + ½·z·(1 − t²)·√(2/π)·(1 + 3·0.044715·z²), in torch's order of operations
        t = math.tanh(SQRT_2_OVER_PI * (z + GELU_CUBIC * z * z * z))
        return HALF * (ONE + t) + HALF * z * (ONE - t * t) * SQRT_2_OVER_PI * (ONE + GELU_CUBIC3 * z * z)

    @cuda.jit(device=True, inline=True)
    def silu(z, alpha):
        s = ONE / (ONE + math.exp(-z))
        return s * (ONE + z * (ONE - s))

    @cuda.jit(device=True, inline=True)
    def identity(z, alpha):
        return ONE

    return {ACT_NONE: identity, ACT_RELU: relu, ACT_LEAKY_RELU: leaky_relu, ACT_SIGMOID: sigmoid, ACT_TANH: tanh,
            ACT_ELU: elu, ACT_GELU: gelu, ACT_GELU_TANH: gelu_tanh, ACT_SILU: silu}


def activation_grad_fn(dtype, act):
    """f'(z, alpha) of the activation `act` compiled in."""
    return _activation_grads(dtype)[act]


@functools.cache
def epilogue_grad(dtype):
    """grad(z, act, alpha): d act / dz at the pre-activation z (1 for no activation), as PyTorch's
    backward formulas (relu's is 0 at z = 0)."""
    return _dispatch(_activation_grads(dtype))
