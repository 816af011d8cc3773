"""Array interop: what the caller passed -> Numba device views for the launch -> a result of the caller's type.

Host inputs (NumPy arrays, CPU PyTorch tensors, CPU DLPack objects, anything else np.asarray takes that
has a shape) are copied to the device and the result copied back. Device inputs (Numba device arrays,
CuPy arrays, PyTorch CUDA tensors, any `__cuda_array_interface__` object, DLPack device objects through
CuPy) are used in place, with their strides: no copy, no synchronisation, and never a host conversion
(nothing on the device path calls np.asarray, `__array__` or copy_to_host on them); kernels run on the
caller's stream (the stream argument, else the current stream of the caller's library). Every check
happens before anything is allocated or launched.

out= on the device must not overlap any array argument (its byte range, from the pointer, shape and
strides): the kernels would read what they have already written. On the host, inputs are copied to the
device before anything is written back, so there out= may alias an input.
"""

from __future__ import annotations

import contextvars

import ml_dtypes
import numpy as np
from numba import cuda

from . import _runtime

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
HALF_DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))   # (gpuconv._precision routes them)
ACCEPTED = "float32, float64, float16 or bfloat16"
DEVICE_KINDS = frozenset(("numba", "torch", "cupy", "cai", "dlpack"))
_DLPACK_CPU = 1          # DLDeviceType kDLCPU


def _module(a) -> str:
    return type(a).__module__.split(".")[0]


def kind_of(a, name: str) -> str:
    """'host', 'torch_cpu', 'dlpack_cpu', 'numba', 'torch', 'cupy', 'cai' or 'dlpack' (device); TypeError
    for anything else, lists and tuples included (an array must say its shape and dtype)."""
    if isinstance(a, np.ndarray):
        return "host"
    mod = _module(a)
    if mod == "torch":
        return "torch" if a.is_cuda else "torch_cpu"
    if cuda.is_cuda_array(a) if not _runtime.SIMULATOR else _is_sim_device_array(a):
        return "numba" if mod == "numba" or mod == "numba_cuda" else ("cupy" if mod == "cupy" else "cai")
    if hasattr(a, "__dlpack__"):
        return "dlpack_cpu" if _dlpack_on_cpu(a) else "dlpack"
    if hasattr(a, "__array__") and hasattr(a, "shape"):
        return "host"
    raise TypeError(f"{name} must be an array (NumPy, CuPy, PyTorch, Numba, CUDA array interface or DLPack), "
                    f"got {type(a).__name__}")


def _is_sim_device_array(a) -> bool:
    return type(a).__name__ == "FakeCUDAArray" or hasattr(a, "__cuda_array_interface__")


def _dlpack_on_cpu(a) -> bool:
    device = getattr(a, "__dlpack_device__", None)
    return device is not None and int(device()[0]) == _DLPACK_CPU


def dtype_of(a, kind: str) -> np.dtype:
    """The element type, read from the object's own metadata: a device object is never converted."""
    if kind in ("torch", "torch_cpu"):
        try:
            return np.dtype(str(a.dtype).removeprefix("torch."))
        except TypeError:
            raise TypeError(f"unsupported dtype {a.dtype}: gpuconv takes {ACCEPTED}") from None
    if kind == "host":
        return a.dtype if isinstance(a, np.ndarray) else np.asarray(a).dtype   # host: converted anyway
    if kind == "dlpack_cpu":
        return np.from_dlpack(a).dtype                                         # a view, no copy
    dtype = getattr(a, "dtype", None)
    if dtype is None and kind == "cai":
        dtype = a.__cuda_array_interface__["typestr"]
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"cannot tell the dtype of a {type(a).__name__} (dtype {dtype!r})") from None


def is_device(kind: str) -> bool:
    return kind in DEVICE_KINDS


def check_operands(named, float_only=True, half=False):
    """named: [(name, array or None)] -> (kinds, dtype). All on one side (host/device), one float dtype:
    float32 or float64, or with half=True (the 16-bit routes of gpuconv._precision) float16 or bfloat16."""
    kinds, dtypes = {}, {}
    for name, a in named:
        if a is None:
            continue
        kinds[name] = kind_of(a, name)
        dtypes[name] = dtype_of(a, kinds[name])
    sides = {is_device(k) for k in kinds.values()}
    if len(sides) > 1:
        where = ", ".join(f"{n} on {'device' if is_device(k) else 'host'}" for n, k in kinds.items())
        raise TypeError(f"arrays must all be on the host or all on a CUDA device: {where}")
    first = next(iter(dtypes))
    dtype = dtypes[first]
    if float_only and dtype not in FLOAT_DTYPES + (HALF_DTYPES if half else ()):
        raise TypeError(f"{first} must be {ACCEPTED}, got {dtype}")
    for name, dt in dtypes.items():
        if dt != dtype:
            raise TypeError(f"mixed dtypes: {first} is {dtype} but {name} is {dt}")
    torch_devices = {str(a.device) for name, a in named if a is not None and kinds[name] == "torch"}
    if len(torch_devices) > 1:
        raise TypeError(f"arrays are on different devices: {sorted(torch_devices)}")
    return kinds, dtype


# ----------------------------------------------------------------------------- streams

_EXTERNAL_STREAMS: dict[int, object] = {}


def _external(ptr: int):
    s = _EXTERNAL_STREAMS.get(ptr)
    if s is None:
        s = _EXTERNAL_STREAMS[ptr] = cuda.external_stream(ptr)
    return s


# Every op resolves its stream right after its last check and before its first allocation; a probe
# (gpuconv._precision: checking a 16-bit call's arguments before widening them) stops it there.
PROBING = contextvars.ContextVar("gpuconv_probing", default=False)


class ChecksPassed(Exception):
    """Raised by resolve_stream while PROBING: every check of the op passed."""


def resolve_stream(stream, kind: str, like=None):
    """The Numba stream to launch on: `stream` if given (Numba, CuPy or torch stream, or a raw handle),
    else the current stream of the library the input came from, else Numba's default stream."""
    if PROBING.get():
        raise ChecksPassed
    if _runtime.SIMULATOR:
        return 0
    _runtime.require_target()
    if stream is not None:
        if isinstance(stream, int):
            return _external(stream) if stream else cuda.default_stream()
        if _module(stream) in ("numba", "numba_cuda"):
            return stream
        ptr = getattr(stream, "cuda_stream", None) or getattr(stream, "ptr", None)
        if ptr is None:
            raise TypeError(f"stream must be a Numba, CuPy or PyTorch stream or a handle, got {type(stream).__name__}")
        return _external(int(ptr))
    if kind == "torch":
        import torch

        return _external(torch.cuda.current_stream(like.device).cuda_stream)
    if kind == "cupy":
        import cupy

        ptr = cupy.cuda.get_current_stream().ptr
        return _external(ptr) if ptr else cuda.default_stream()
    return cuda.default_stream()


# ----------------------------------------------------------------------------- views and results


def device_view(a, kind: str, stream):
    """A Numba device array over `a` (device inputs: in place) or over a device copy (host inputs)."""
    if kind == "host":
        return cuda.to_device(np.ascontiguousarray(a), stream=stream)
    if kind == "torch_cpu":
        return cuda.to_device(np.ascontiguousarray(a.detach().numpy()), stream=stream)
    if kind == "dlpack_cpu":
        return cuda.to_device(np.ascontiguousarray(np.from_dlpack(a)), stream=stream)
    if kind == "numba":
        return a
    if kind == "dlpack":
        import cupy

        a = cupy.from_dlpack(a)
    if _runtime.SIMULATOR:
        return _sim_view(a)
    return cuda.as_cuda_array(a, sync=False)  # ordering comes from launching on the producer's stream


class _Interface:
    """Holds an object (keeping its memory alive) and presents its CUDA array interface as NumPy's."""

    def __init__(self, owner, iface):
        self.owner = owner
        self.__array_interface__ = iface


def _sim_view(a):
    """Simulator only: a FakeCUDAArray over the memory a's __cuda_array_interface__ describes (there,
    "device" pointers are host addresses), in place, as cuda.as_cuda_array is on a device."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    if type(a).__name__ == "FakeCUDAArray":
        return a
    cai = a.__cuda_array_interface__
    shape, dtype = tuple(cai["shape"]), np.dtype(cai["typestr"])
    if 0 in shape:
        return FakeCUDAArray(np.empty(shape, dtype))
    iface = dict(shape=shape, typestr=dtype.str, data=tuple(cai["data"]), strides=cai.get("strides"), version=3)
    return FakeCUDAArray(np.asarray(_Interface(a, iface)))


def allocate(shape, dtype, kind: str, like, stream):
    """(result object of the caller's type, Numba view of it) for a fresh output."""
    if kind == "torch":
        import torch

        t = torch.empty(shape, dtype=getattr(torch, dtype.name), device=like.device)
        return t, cuda.as_cuda_array(t, sync=False)
    if kind in ("cupy", "dlpack"):
        import cupy

        c = cupy.empty(shape, dtype=dtype)
        return c, (c if _runtime.SIMULATOR else cuda.as_cuda_array(c, sync=False))
    d = cuda.device_array(shape, dtype=dtype, stream=stream)
    return d, d


def check_out(out, shape, dtype, kind: str):
    """Validate a caller's out= against the result's shape (unless None), dtype, side and writability
    (before any launch); returns its kind."""
    okind = kind_of(out, "out")
    if is_device(okind) != is_device(kind):
        raise TypeError(f"out must be on the {'device' if is_device(kind) else 'host'} like the inputs")
    if okind == "host" and not isinstance(out, np.ndarray) or okind == "dlpack_cpu":
        raise TypeError("a host out must be a NumPy array or a CPU PyTorch tensor")
    if shape is not None and tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if dtype_of(out, okind) != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {dtype_of(out, okind)}")
    if _read_only(out, okind):
        raise ValueError(f"out {tuple(out.shape)} is read-only")
    return okind


def _read_only(a, kind) -> bool:
    if kind == "host":
        return not a.flags.writeable
    if kind == "torch_cpu":
        import torch

        t = a.detach()
        return not (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().flags.writeable
    if kind == "numba" and _runtime.SIMULATOR:
        return not a._ary.flags.writeable
    if kind == "cai":
        return bool(a.__cuda_array_interface__["data"][1])
    return False


def byte_range(d):
    """[lo, hi) of the device bytes the Numba view d spans (from its pointer, shape and strides), or None
    when it has no elements."""
    if _runtime.SIMULATOR:
        d = d._ary                                    # the simulator's "device" memory is this NumPy array
        lo = d.__array_interface__["data"][0]
    else:
        lo = d.device_ctypes_pointer.value
    if d.size == 0:
        return None
    hi = lo + d.dtype.itemsize
    for n, st in zip(d.shape, d.strides):
        if st < 0:
            lo += (n - 1) * st
        else:
            hi += (n - 1) * st
    return lo, hi


def check_no_overlap(d_out, reads):
    """ValueError before any launch if out= (Numba view d_out) overlaps an array argument: reads is
    [(name, Numba view or None)]. Ranges are compared whole, so a view interleaved with an input counts."""
    mine = byte_range(d_out)
    if mine is None:
        return
    for name, d in reads:
        theirs = None if d is None else byte_range(d)
        if theirs is not None and mine[0] < theirs[1] and theirs[0] < mine[1]:
            raise ValueError(f"out {tuple(d_out.shape)} overlaps the memory of {name} {tuple(d.shape)}: "
                             f"out= must not alias an input on the device (pass a separate array)")


def output(out, okind, shape, dtype, kind: str, like, stream, reads=()):
    """(what the caller will get back, the Numba view to launch into) for a result of `shape`.

    Device callers get `out` or a fresh array of their own type (out= checked against the Numba views
    of the array arguments in `reads`, [(name, view)], for overlap); host callers get a device buffer
    that `result` copies back.
    """
    if not is_device(kind):
        return None, cuda.device_array(shape, dtype=dtype, stream=stream)
    if out is not None:
        d_out = device_view(out, okind, stream)
        check_no_overlap(d_out, reads)
        return out, d_out
    return allocate(shape, dtype, kind, like, stream)


def result(res, d_y, kind: str, out, stream):
    """After the launch: device callers get `res` as is; host callers get d_y copied back."""
    return res if is_device(kind) else finish_host(d_y, kind, out, stream)


def finish_host(d_y, kind: str, out, stream):
    """Copy a device result back for a host caller, into `out` if given; returns the caller's type."""
    if out is not None:
        target = out.detach().numpy() if _module(out) == "torch" else out
        if target.flags.c_contiguous:
            d_y.copy_to_host(target, stream=stream)
        else:
            target[...] = d_y.copy_to_host(stream=stream)
        _wait(stream)
        return out
    y = d_y.copy_to_host(stream=stream)
    _wait(stream)
    return host_result(y, kind)


def _wait(stream):
    """A host caller needs its result now: wait for the copy (a pageable copy may still be in flight)."""
    if not _runtime.SIMULATOR and stream:
        stream.synchronize()


def empty(out, shape, dtype, kind: str, like, stream):
    """The result of an op with nothing to compute (an empty batch): out, or a fresh array of the caller's
    type; nothing is launched."""
    if out is not None:
        return out
    if is_device(kind):
        return allocate(shape, dtype, kind, like, stream)[0]
    y = np.empty(shape, dtype)
    return host_result(y, kind)


def host_result(y, kind):
    if kind == "torch_cpu":
        import torch

        if y.dtype == HALF_DTYPES[1]:            # PyTorch does not take NumPy's bfloat16: move the bits
            return torch.from_numpy(y.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(y)
    return y


# ----------------------------------------------------------------------------- unbatched (C, H, W) input


def ndim(a):
    shape = getattr(a, "shape", None)
    return None if shape is None else len(shape)


def add_batch_axis(a, name: str):
    """A (1, ...) view of a, of the caller's own type where it has views (NumPy, PyTorch, CuPy), else a
    Numba device view; no copy, nothing converted on the device."""
    kind = kind_of(a, name)
    if kind == "host":
        return np.asarray(a)[None]
    if kind in ("torch", "torch_cpu"):
        return a.unsqueeze(0)
    if kind == "dlpack_cpu":
        return np.from_dlpack(a)[None]
    if kind in ("cupy", "dlpack"):
        import cupy

        return cupy.from_dlpack(a)[None] if kind == "dlpack" else a[None]
    d = device_view(a, kind, 0)                          # numba, cai: in place
    return strided_view(d, (1,) + tuple(d.shape), (0,) + tuple(d.strides))


def call_unbatched(fn, named, out=None, batched=None):
    """Run fn(*views, out_view) on (1, ...) views of the unbatched (3-D) arrays in named [(name, array or
    None)], as PyTorch runs an unbatched (C, H, W) input, and drop the batch axis again from the results
    (all of them, or those at the indices in `batched` of a tuple result); out= comes back as is."""
    for name, a in named + [("out", out)]:
        if a is None:
            continue
        kind_of(a, name)                                    # a TypeError for what is not an array
        if ndim(a) != 3:
            raise ValueError(f"{name} must be 3-D (unbatched) like the other operands, got shape {tuple(a.shape)}")
    views = [None if a is None else add_batch_axis(a, name) for name, a in named]
    out_view = None if out is None else add_batch_axis(out, "out")
    res = fn(*views, out_view)

    def drop(r):
        return out if r is out_view and out is not None else (None if r is None else r[0])

    if isinstance(res, tuple):
        return tuple(drop(r) if batched is None or i in batched else r for i, r in enumerate(res))
    return drop(res)


# ----------------------------------------------------------------------------- views


def strided_view(a, shape, strides, dtype=None):
    """A view of Numba device array `a` (same memory, no copy) with the given shape and byte strides:
    a 3-D view of a matrix (stride 0 on a batch of 1), a transpose, or a merge of contiguous axes;
    `dtype` (of a's itemsize) reads the same bytes as another type (16-bit data as uint16 bits)."""
    shape, strides = tuple(int(v) for v in shape), tuple(int(v) for v in strides)
    if _runtime.SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        base = a._ary if dtype is None else a._ary.view(dtype)
        return FakeCUDAArray(np.lib.stride_tricks.as_strided(base, shape, strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape, strides, a.dtype if dtype is None else dtype, stream=a.stream, gpu_data=a.gpu_data)


def merged_strides(shape, strides):
    """The byte stride of axes `shape` merged into one, or None where their strides do not allow it."""
    axes = [(n, st) for n, st in zip(shape, strides) if n != 1]   # unit axes may have any stride
    if not axes:
        return int(strides[-1])
    for (_, s0), (n1, s1) in zip(axes, axes[1:]):
        if s0 != s1 * n1:
            return None
    return int(axes[-1][1])


def c_strides(shape, itemsize):
    """Byte strides of a C-contiguous array of `shape` (for views of a flat workspace buffer)."""
    strides, acc = [], itemsize
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def dense_view(buf, shape):
    """A C-contiguous view of `shape` over the start of device buffer buf (a flat workspace)."""
    return strided_view(buf, shape, c_strides(shape, buf.dtype.itemsize))
