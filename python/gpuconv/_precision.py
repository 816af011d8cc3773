"""float16 and bfloat16 operands, and the TF32 switch.

16-bit arrays reach the kernels as uint16 views of their bits (`bits_view`), with the logical dtype
carried beside them ("f16" / "bf16", kernels/_half.py): Numba has no bfloat16, and PyTorch exports no
CUDA array interface for it, so a bfloat16 tensor travels as an int16 view of the same memory.

The tensor-core paths (gpu_matmul, gpu_linear, gpu_conv2d's im2col and implicit GEMM,
gpu_conv2d_backward's weight and input gradients), the pooling ops (forward and backward), the depthwise kernel and the activation passes
read the 16-bit data natively (`operand`, `output`, `result`, `kernel_dtype`). Every other op runs
`widened`: its 16-bit inputs are widened into float32 device temporaries
(kernels/convert.py), the float32 op runs on them, and its floating-point results are rounded (to
nearest even) into arrays of the caller's type and 16-bit dtype — float32 arithmetic throughout, one
rounding per result, as PyTorch's half-precision kernels; the cost is the temporaries' memory traffic.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
from numba import cuda

from gpuconv.kernels import convert

from . import _interop, _runtime

F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
HALF_DTYPES = (F16, BF16)
BITS = np.dtype(np.uint16)
_HALF_NAMES = frozenset(("float16", "bfloat16", "torch.float16", "torch.bfloat16"))
_allow_tf32 = False


def fmt(dtype) -> str:
    """The kernels' name of a 16-bit dtype ("f16", "bf16"), or "f32" for float32."""
    dtype = np.dtype(dtype)
    return "f16" if dtype == F16 else ("bf16" if dtype == BF16 else "f32")


def kernel_dtype(dtype):
    """The element dtype a kernel factory that takes 16-bit storage (kernels/_half.py `storage`) is given
    for arrays of `dtype`: float16 / bfloat16 as their kind ("f16", "bf16": uint16 bits, float32
    arithmetic), any other dtype as itself."""
    dtype = np.dtype(dtype)
    return fmt(dtype) if dtype in HALF_DTYPES else dtype


# ----------------------------------------------------------------------------- error bounds

# The precisions `gpuconv bench --precision` runs: float32, 16-bit inputs, float32 with TF32 allowed.
PRECISIONS = ("float32", "float16", "bfloat16", "tf32")
# The unit roundoff of each result's one rounding: float16 2^-11, bfloat16 2^-8; TF32 results are
# float32 (its operand rounding is what the reference on TF32-rounded inputs already sees).
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8, "tf32": 0.0}


def error_bound(precision, k) -> float:
    """The stated bound on ‖out − ref‖ / ‖ref‖ of a result in `precision` ("float16", "bfloat16", "tf32")
    with k float32-accumulated terms per output, against the float64 reference on the same inputs
    rounded to the precision (round_tf32 for "tf32"): u + k·2^-24."""
    return UNIT_ROUNDOFF[precision] + k * 2.0 ** -24


def round_tf32(a):
    """float32 array a rounded as the tensor cores' cvt.rna.tf32.f32 rounds each operand: to the nearest
    10-bit mantissa, ties away from zero; Inf and NaN unchanged. A float32 array of the same shape."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32)
    special = (u & 0x7F800000) == 0x7F800000
    return np.where(special, u, (u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


# ----------------------------------------------------------------------------- TF32


def allow_tf32() -> bool:
    """Whether float32 GEMMs and im2col convolutions run on TF32 tensor cores when a call does not say
    (the `allow_tf32=None` default); off unless set_allow_tf32(True), as torch.backends.cudnn.allow_tf32
    is a process-wide switch."""
    return _allow_tf32


def set_allow_tf32(flag) -> bool:
    """Let (True) or forbid (False) TF32 tensor cores for float32 calls that do not pass allow_tf32=;
    returns the previous setting. TF32 rounds each operand to a 10-bit mantissa (relative error about
    2^-11 per product) and accumulates in float32."""
    global _allow_tf32
    if not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"set_allow_tf32 takes a bool, got {flag!r}")
    old, _allow_tf32 = _allow_tf32, bool(flag)
    return old


def tf32_wanted(flag, dtype) -> bool:
    """A call's allow_tf32 argument (None: the module switch) for a call of this dtype."""
    if flag is None:
        flag = _allow_tf32
    elif not isinstance(flag, (bool, np.bool_)):
        raise TypeError(f"allow_tf32 must be a bool or None, got {flag!r}")
    return bool(flag) and np.dtype(dtype) == np.dtype(np.float32)


def tc_kind(dtype, allow_tf32):
    """The tensor-core GEMM's kind for a call ("f16", "bf16", "tf32"), or None for the CUDA-core GEMM."""
    if np.dtype(dtype) in HALF_DTYPES:
        return fmt(dtype)
    return "tf32" if tf32_wanted(allow_tf32, dtype) else None


# ----------------------------------------------------------------------------- detection and bit views


def any_half(*arrays) -> bool:
    """Is any of the arrays float16 or bfloat16? (A cheap look at .dtype; the route then checks all.)"""
    for a in arrays:
        if a is not None and str(getattr(a, "dtype", "")) in _HALF_NAMES:
            return True
    return False


def _host_bits(a, kind):
    """The uint16 bits of a host 16-bit array (NumPy or CPU PyTorch), same memory."""
    if kind == "torch_cpu":
        import torch

        return a.detach().view(torch.int16).numpy().view(BITS)
    if kind == "dlpack_cpu":
        a = np.from_dlpack(a)
    return np.asarray(a).view(BITS)


def retype(d, dtype=BITS):
    """A Numba device array over d's memory, shape and strides, read as `dtype` (same itemsize)."""
    return _interop.strided_view(d, d.shape, d.strides, dtype)


def bits_view(a, kind, s):
    """A uint16 Numba device view of 16-bit operand a: in place on the device, a device copy of the
    host array's bits otherwise."""
    if not _interop.is_device(kind):
        return cuda.to_device(np.ascontiguousarray(_host_bits(a, kind)), stream=s)
    if kind == "torch":
        import torch

        a = a.view(torch.int16)     # PyTorch exports no CUDA array interface for bfloat16
    return retype(_interop.device_view(a, kind, s))


def _torch_dtype(dtype):
    import torch

    return torch.float16 if dtype == F16 else torch.bfloat16


def bits_output(out, okind, shape, dtype, kind, like, s):
    """(what the caller gets, uint16 Numba view to write) for a 16-bit result: out= on the device in
    place, else a fresh array of the caller's type (host callers: a device buffer `bits_result` copies
    back)."""
    if not _interop.is_device(kind):
        return None, cuda.device_array(shape, dtype=BITS, stream=s)
    if out is not None:
        return out, bits_view(out, okind, s)
    if kind == "torch":
        import torch

        t = torch.empty(shape, dtype=_torch_dtype(dtype), device=like.device)
        return t, bits_view(t, "torch", s)
    if kind in ("cupy", "dlpack"):
        import cupy

        c = cupy.empty(shape, dtype=dtype)
        return c, bits_view(c, "cupy", s)
    d = cuda.device_array(shape, dtype=dtype, stream=s)
    return d, retype(d)


def bits_result(res, d_bits, dtype, kind, out, s):
    """After the launches: device callers get res; host callers the device bits copied back, as their
    own type and dtype (into out= when given)."""
    if _interop.is_device(kind):
        return res
    y = d_bits.copy_to_host(stream=s)
    if not _runtime.SIMULATOR and s:
        s.synchronize()                 # the caller reads the copy now
    if out is not None:
        _host_bits(out, _interop.kind_of(out, "out"))[...] = y
        return out
    if kind == "torch_cpu":
        import torch

        return torch.from_numpy(y.view(np.int16)).view(_torch_dtype(dtype))
    return y.view(dtype)


# ----------------------------------------------------------------------------- kernels reading 16-bit data natively


@functools.lru_cache(maxsize=4)
def _dummy(dtype):
    return cuda.to_device(np.zeros(1, dtype=dtype))


def operand(a, kind, dtype, s):
    """The Numba device view a kernel reads: 16-bit operands as their uint16 bits."""
    if np.dtype(dtype) in HALF_DTYPES:
        return bits_view(a, kind, s)
    return _interop.device_view(a, kind, s)


def output(out, okind, shape, dtype, kind, like, s, reads):
    """(what the caller will get, the Numba view the kernel writes): _interop.output, or for a 16-bit
    result its uint16 bits (out= checked for overlap with the operands in `reads`)."""
    if np.dtype(dtype) not in HALF_DTYPES:
        return _interop.output(out, okind, shape, dtype, kind, like, s, reads)
    res, bits = bits_output(out, okind, shape, dtype, kind, like, s)
    if out is not None:
        _interop.check_no_overlap(bits, reads)
    return res, bits


def result(res, d, dtype, kind, out, s):
    """After the launches: the caller's result (_interop.result, or bits_result for a 16-bit one)."""
    if np.dtype(dtype) in HALF_DTYPES:
        return bits_result(res, d, dtype, kind, out, s)
    return _interop.result(res, d, kind, out, s)


def empty(out, shape, dtype, kind, like, s):
    """_interop.empty for any dtype (a fresh 16-bit device result through bits_output: PyTorch exports
    no CUDA array interface for bfloat16)."""
    if np.dtype(dtype) in HALF_DTYPES and out is None and _interop.is_device(kind):
        return bits_output(None, None, shape, dtype, kind, like, s)[0]
    return _interop.empty(out, shape, dtype, kind, like, s)


def no_bias(dtype):
    """The placeholder bias of a call without one (16-bit: a uint16 word)."""
    return _dummy(BITS if np.dtype(dtype) in HALF_DTYPES else dtype)


# ----------------------------------------------------------------------------- widening route


def as_4d(d):
    """A 4-D view of a Numba device array of up to 4 dimensions (leading unit axes), or of more with
    mergeable trailing axes (ValueError otherwise)."""
    shape, strides = tuple(d.shape), tuple(d.strides)
    if len(shape) > 4:
        merged = _interop.merged_strides(shape[3:], strides[3:])
        if merged is None:
            raise ValueError(f"a {len(shape)}-D 16-bit array {shape} needs mergeable trailing axes, "
                             f"got strides {strides}")
        shape, strides = shape[:3] + (int(np.prod(shape[3:])),), strides[:3] + (merged,)
    pad = 4 - len(shape)
    return _interop.strided_view(d, (1,) * pad + shape, (0,) * pad + strides)


def widen(a, kind, dtype, s):
    """A float32 C-contiguous device copy of 16-bit operand a."""
    src = bits_view(a, kind, s)
    dst = cuda.device_array(src.shape, dtype=np.float32, stream=s)
    if dst.size:
        dst4 = as_4d(dst)
        convert.launch_convert(dst4.shape, fmt(dtype), "f32")(as_4d(src), dst4, s)
    return dst


def narrow_into(d32, d_bits, dtype, s):
    """Round the float32 device array d32 into the uint16 bits d_bits (same shape) of a 16-bit dtype."""
    if d32.size:
        src4 = as_4d(d32)
        convert.launch_convert(src4.shape, "f32", fmt(dtype))(src4, as_4d(d_bits), s)


def _adopt(d, kind, like, s):
    """A non-floating result of the float32 op (integer indices, a Numba device array) as
    the caller's type."""
    if not _interop.is_device(kind):
        y = d.copy_to_host(stream=s)
        if not _runtime.SIMULATOR and s:
            s.synchronize()
        return _interop.host_result(y, kind)
    if kind == "torch":
        import torch

        return torch.as_tensor(d, device=like.device)
    if kind in ("cupy", "dlpack"):
        import cupy

        return cupy.asarray(d)
    return d


def _stand_in(shape, dtype=np.float32):
    """A host array of `shape` over one element (every stride 0): what a probe passes for an operand."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), tuple(shape), (0,) * len(shape))


def probe(fn, named, out=None):
    """Every check of a widened call, nothing allocated -> (kinds, dtype, okind) for `widened`: the
    operands' dtype and side here, then everything else by fn itself, called on float32 stand-ins of the
    same shapes (one host element each) and stopped where it would resolve its stream (see
    _interop.PROBING)."""
    kinds, dtype = _interop.check_operands(named, half=True)
    first, _ = named[0]
    okind = None if out is None else _interop.check_out(out, None, dtype, kinds[first])
    token = _interop.PROBING.set(True)
    try:
        fn(*[None if a is None else _stand_in(a.shape) for _, a in named], None,
           None if out is None else _stand_in(out.shape))
    except _interop.ChecksPassed:
        pass
    finally:
        _interop.PROBING.reset(token)
    return kinds, dtype, okind


def widened(fn, named, out=None, stream=None, checked=None):
    """Run the float32 op fn(*arrays, stream, out) for 16-bit operands named [(name, array or None)] and
    return its results in the operands' dtype and the caller's type (out= for the first result).

    Every check comes first (`probe`; `checked`: its result, when the caller probed already). Then the
    operands are widened into float32 device temporaries, fn runs on them, and its float32 results are
    rounded into the caller's arrays; None results stay None and integer ones (indices) keep their
    dtype, as the caller's type."""
    kinds, dtype, okind = checked or probe(fn, named, out)
    first, like = named[0]
    kind = kinds[first]

    s = _interop.resolve_stream(stream, kind, like)
    res = fn(*[None if a is None else widen(a, kinds[name], dtype, s) for name, a in named], s, None)
    results = res if isinstance(res, tuple) else (res,)
    done = []
    for i, r in enumerate(results):
        if r is None or np.dtype(r.dtype) != np.dtype(np.float32):
            done.append(None if r is None else _adopt(r, kind, like, s))
            continue
        o = out if i == 0 else None
        y, d_bits = bits_output(o, okind, r.shape, dtype, kind, like, s)
        narrow_into(r, d_bits, dtype, s)
        done.append(bits_result(y, d_bits, dtype, kind, o, s))
    return tuple(done) if isinstance(res, tuple) else done[0]
