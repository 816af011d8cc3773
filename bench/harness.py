"""Check every case, then (on a GPU) time it against its baseline in the same run.

Method: each case is checked first — against the float64 reference, or against
cuDNN in float64 where the reference would be too slow — and only a case that passed is timed.
Precisions (PRECISIONS): float32 (below TOL), and float16, bfloat16 and TF32 (float32 with
allow_tf32=True), whose inputs are drawn in float32 and rounded to the precision, the reference run on
the rounded values, and the README's bound u + K·2^-24 the pass threshold (gpuconv._precision); these
are timed against cuDNN in the same precision, channels-first and channels-last.
Timing (bench/timing.py) uses CUDA events after a warm-up, median and p20/p80, the L2 flushed before
each launch, and the host's wall time per call separately. Baselines: cuDNN through PyTorch (TF32
off, cudnn.benchmark on) for convolutions, PyTorch for pooling, cuBLAS through CuPy for GEMMs, and the
measured copy bandwidth and fp32 FMA peak. In the CUDA simulator only the checks run, at
simulator-sized shapes, and no timing exists.
"""

from __future__ import annotations

import math
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import gpuconv
from gpuconv import gpu_avg_pool2d, gpu_conv2d, gpu_matmul, gpu_max_pool2d
from gpuconv import _precision, winograd
from gpuconv import reference as ref
from gpuconv._args import conv2d_geometry, pool2d_geometry

TOL = 1e-5                      # float32, every algorithm here
REFERENCE_FLOP_LIMIT = 2e9      # above this the float64 reference is too slow; check against cuDNN in float64
CONV_ALGOS = ("direct", "im2col", "implicit_gemm", "winograd", "winograd_2x2", "im2col_cublas", "auto")
PRECISIONS = _precision.PRECISIONS
# the algorithms allow_tf32 reaches (the others would repeat float32)
TF32_ALGOS = ("im2col", "winograd", "winograd_2x2", "auto")


def rel_err(out, want):
    out, want = np.asarray(out, np.float64), np.asarray(want, np.float64)
    if out.shape != want.shape or not np.all(np.isfinite(out)):
        return float("inf")
    return float(np.linalg.norm(out - want) / max(np.linalg.norm(want), 1e-300))


def draw(rng, shape, precision="float32"):
    """Standard-normal float32 data rounded to the precision: a float32, float16 or bfloat16 NumPy array
    (TF32: float32 holding TF32 values)."""
    a = rng.standard_normal(shape).astype(np.float32)
    if precision == "tf32":
        return _precision.round_tf32(a)
    return a.astype(_precision.BF16 if precision == "bfloat16" else np.dtype(precision))


def check(err, against, precision="float32", k=0, exact=False, algo=None, **extra):
    """A check's record: float32 passes below TOL; another precision at or below its bound for k
    float32-accumulated terms per output (_precision.error_bound), or at 0 where the op is exact.
    Winograd (algo) on TF32 multiplies TF32-rounded transforms: its bound gains
    winograd.TF32_TYPICAL_ERROR (README, "Half precision and TF32")."""
    if precision == "float32":
        return dict(rel_err=err, against=against, passed=err < TOL, **extra)
    bound = 0.0 if exact else _precision.error_bound(precision, k)
    if algo in winograd.ALGOS and precision == "tf32":
        bound += winograd.TF32_TYPICAL_ERROR[winograd.ALGOS[algo]]
    return dict(rel_err=err, against=against, bound=bound, passed=err <= bound, **extra)


def _torch_dtype(precision):
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision, torch.float32)


def _on_device(a64, precision):  # pragma: no cover - needs a CUDA device
    """A PyTorch CUDA tensor of float64 values a64 (already representable) in the precision's dtype."""
    import torch

    return torch.from_numpy(a64).cuda().to(_torch_dtype(precision))


class _Tf32:  # pragma: no cover - needs a CUDA device
    """PyTorch's TF32 switches (cuDNN and matmul) set for one precision's timing, restored after."""

    def __init__(self, precision):
        self.on = precision == "tf32"

    def __enter__(self):
        import torch

        self.saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = self.on

    def __exit__(self, *exc):
        import torch

        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def _git_commit():
    """The checkout's commit when gpuconv runs from a source checkout (bench/ beside python/gpuconv); None
    from an installed package, whatever repository the current directory is in."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "python" / "gpuconv" / "__init__.py").exists():
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _sizes(case, run):
    """The size a row was run at, and (when the simulator ran a scaled copy) the case's own GPU size."""
    return dict(size=run.describe()) | ({} if run is case else dict(gpu_size=case.describe()))


def metadata(with_device=True):
    """What the run was on: date, commit, target, versions; on a GPU the device, clocks and baselines."""
    sim = gpuconv.SIMULATOR
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), git_commit=_git_commit(),
                gpuconv_version=gpuconv.__version__,
                target="simulator" if sim else "cuda", host=platform.node(), versions=gpuconv._runtime.describe(),
                mode="parity only (CUDA simulator, simulator-sized shapes, no timings)" if sim else "parity + timing")
    if not sim and with_device:
        from . import baselines

        meta["device"] = baselines.device_info()
        meta["baselines"] = dict(copy=baselines.copy_bandwidth(), fma_peak=baselines.fma_peak())
    return meta


# ----------------------------------------------------------------------------- convolution


def _conv_kwargs(case):
    return dict(stride=case.stride, padding=case.padding, groups=case.groups)


def _torch_conv(x, w, case, g):
    """cuDNN through PyTorch with gpuconv's padding (asymmetric "same" padded explicitly)."""
    import torch

    t, b, l, r = g.pads
    if t == b and l == r:
        return torch.nn.functional.conv2d(x, w, None, case.stride, (t, l), 1, case.groups)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (l, r, t, b)), w, None, case.stride, 0, 1,
                                      case.groups)


def _precision_kwargs(precision):
    return dict(allow_tf32=True) if precision == "tf32" else {}


def check_conv(case, algo, seed=0, precision="float32"):
    """Relative error of gpu_conv2d(algo) in the precision on fresh random data (drawn in float32, rounded
    to the precision: `draw`): against the float64 reference on the same values, or (on a GPU, for
    layers too large for it) against cuDNN in float64. TF32 inputs come rounded already, so products
    are exact where the GEMM multiplies the inputs themselves (Winograd's transformed operands are
    rounded again); the kernels' own cvt.rna rounding is tested in tests/test_gemm_tc.py."""
    rng = np.random.default_rng(seed)
    x, w = draw(rng, case.x_shape, precision), draw(rng, case.w_shape, precision)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    kwargs = dict(_conv_kwargs(case), algo=algo, **_precision_kwargs(precision))
    g = conv2d_geometry(case.x_shape, case.w_shape, case.stride, case.padding, 1, case.groups)
    if gpuconv.SIMULATOR or g.flops <= REFERENCE_FLOP_LIMIT:
        return rel_err(gpu_conv2d(x, w, **kwargs).astype(np.float64), ref.conv2d(x64, w64, **_conv_kwargs(case))), \
            "reference"
    import torch

    xt, wt = torch.from_numpy(x64).cuda(), torch.from_numpy(w64).cuda()
    got = gpu_conv2d(_on_device(x64, precision), _on_device(w64, precision), **kwargs).double().cpu().numpy()
    want = _torch_conv(xt, wt, case, g).cpu().numpy()
    return rel_err(got, want), "cudnn_fp64"


def time_conv(case, algos, flush, precision="float32"):  # pragma: no cover - needs a CUDA device
    """Per algorithm and for cuDNN in the same precision (TF32: cuDNN's and gpuconv's TF32 allowed for
    this run only): device-time stats, host µs per call, GFLOP/s. Outside float32 cuDNN runs twice,
    channels-first ("cudnn") and channels-last ("cudnn_channels_last": x and w in
    torch.channels_last), and each algorithm gets its ratio to both."""
    import torch

    from .timing import NBUF, device_time, host_time_us

    torch.backends.cudnn.benchmark = True
    dt = _torch_dtype(precision)
    g = conv2d_geometry(case.x_shape, case.w_shape, case.stride, case.padding, 1, case.groups)
    xs = [torch.randn(case.x_shape, device="cuda", dtype=dt) for _ in range(NBUF)]
    w = torch.randn(case.w_shape, device="cuda", dtype=dt)
    out = torch.empty(g.out_shape, device="cuda", dtype=dt)
    extra = _precision_kwargs(precision)
    fns = {a: (lambda i, a=a: gpu_conv2d(xs[i % NBUF], w, algo=a, out=out, **_conv_kwargs(case), **extra))
           for a in algos}
    fns["cudnn"] = lambda i: _torch_conv(xs[i % NBUF], w, case, g)
    baselines = ["cudnn"]
    if precision != "float32":
        cl = torch.channels_last
        xs_cl, w_cl = [x.contiguous(memory_format=cl) for x in xs], w.contiguous(memory_format=cl)
        fns["cudnn_channels_last"] = lambda i: _torch_conv(xs_cl[i % NBUF], w_cl, case, g)
        baselines.append("cudnn_channels_last")
    res = {}
    with _Tf32(precision):
        for name, fn in fns.items():
            t = device_time(fn, flush)
            t["host_us_per_call"] = host_time_us(fn)
            t["gflops"] = g.flops / (t["median_ms"] * 1e-3) / 1e9
            res[name] = t
    for a in algos:
        for b in baselines:
            res[a]["ratio_to_" + b] = res[a]["median_ms"] / res[b]["median_ms"]
    return res


def conv_row(case, algos, flush=None, precision="float32"):
    sim = gpuconv.SIMULATOR
    c = case.scaled() if sim else case
    g = conv2d_geometry(c.x_shape, c.w_shape, c.stride, c.padding, 1, c.groups)
    algos = [a for a in algos if not (a.startswith("winograd") and winograd.ineligible(g))]
    tf32_less = precision == "tf32" and algos and not set(algos) & set(TF32_ALGOS)
    algos = [a for a in algos if precision != "tf32" or a in TF32_ALGOS]
    row = dict(kind="conv", name=c.name, precision=precision, tags=list(c.tags), x=c.x_shape, w=c.w_shape,
               stride=c.stride, padding=c.padding, groups=c.groups, flops=g.flops, checks={}, **_sizes(case, c))
    if tf32_less:
        row.update(skipped=f"none of the chosen algorithms uses TF32 (those that do: {', '.join(TF32_ALGOS)})",
                   passed=None)
        return row
    # with TF32 allowed "auto" may pick Winograd (on TF32 products): it is held to F(4×4)'s bound there
    auto_as = "winograd" if precision == "tf32" and not winograd.ineligible(g) else "auto"
    for a in algos:
        row["checks"][a] = check(*check_conv(c, a, precision=precision), precision, c.C // c.groups * c.R * c.S,
                                 algo=auto_as if a == "auto" else a)
    row["passed"] = all(v["passed"] for v in row["checks"].values())
    if not sim:
        timed = [a for a in algos if row["checks"][a]["passed"]]        # never time a case that failed
        row["timing"] = time_conv(c, timed, flush, precision)
    return row


# ----------------------------------------------------------------------------- pooling


def _pool(case, x):
    if case.op == "max":
        return gpu_max_pool2d(x, case.kernel, case.stride, case.padding)
    return gpu_avg_pool2d(x, case.kernel, case.stride, case.padding)


def pool_row(case, flush=None, precision="float32"):
    """Pooling in float32, float16 or bfloat16 (max pooling only selects: exact in 16 bits), checked, then
    timed against PyTorch in the same dtype."""
    sim = gpuconv.SIMULATOR
    c = case.scaled() if sim else case
    g = pool2d_geometry(c.x_shape, c.kernel, c.stride, c.padding)
    x = draw(np.random.default_rng(1), c.x_shape, precision)
    nbytes = x.itemsize * (int(np.prod(c.x_shape)) + int(np.prod(g.out_shape)))
    row = dict(kind="pool", name=c.name, precision=precision, op=c.op, x=c.x_shape, kernel=c.kernel,
               stride=c.stride, padding=c.padding, bytes=nbytes, **_sizes(case, c))
    x64 = x.astype(np.float64)
    want = (ref.max_pool2d if c.op == "max" else ref.avg_pool2d)(x64, c.kernel, c.stride, c.padding)
    err = rel_err(_pool(c, x).astype(np.float64), want)
    row["checks"] = {"gpuconv": check(err, "reference", precision, c.kernel ** 2, exact=c.op == "max")}
    row["passed"] = row["checks"]["gpuconv"]["passed"]
    if not sim and row["passed"]:  # pragma: no cover - needs a CUDA device
        import torch

        from .timing import device_time, host_time_us

        xt = _on_device(x64, precision)
        out = torch.empty(g.out_shape, device="cuda", dtype=xt.dtype)
        f = torch.nn.functional.max_pool2d if c.op == "max" else torch.nn.functional.avg_pool2d
        fns = {"gpuconv": lambda i: (gpu_max_pool2d if c.op == "max" else gpu_avg_pool2d)(
                   xt, c.kernel, c.stride, c.padding, out=out),
               "torch": lambda i: f(xt, c.kernel, c.stride, c.padding)}
        row["timing"] = {}
        for name, fn in fns.items():
            t = device_time(fn, flush)
            t["host_us_per_call"] = host_time_us(fn)
            t["gb_per_s"] = nbytes / (t["median_ms"] * 1e-3) / 1e9
            row["timing"][name] = t
    return row


# ----------------------------------------------------------------------------- GEMM


def gemm_row(case, flush=None, precision="float32"):
    """A GEMM in the precision, checked, then timed against cuBLAS: through CuPy in float32, through
    PyTorch in the other precisions (CuPy has no bfloat16; TF32 allowed for that run only)."""
    sim = gpuconv.SIMULATOR
    c = case.scaled() if sim else case
    rng = np.random.default_rng(2)
    row = dict(kind="gemm", name=c.name, precision=precision, M=c.M, N=c.N, K=c.K, flops=2 * c.M * c.N * c.K,
               **_sizes(case, c))
    small = c if c.M * c.N * c.K <= 2e8 else c.scaled(512)      # NumPy float64 checks a slice-sized product
    a, b = draw(rng, (small.M, small.K), precision), draw(rng, (small.K, small.N), precision)
    err = rel_err(gpu_matmul(a, b, **_precision_kwargs(precision)).astype(np.float64),
                  a.astype(np.float64) @ b.astype(np.float64))
    row["checks"] = {"gpuconv": check(err, f"numpy float64 at {small.M}x{small.N}x{small.K}", precision, small.K)}
    row["passed"] = row["checks"]["gpuconv"]["passed"]
    if not sim and row["passed"]:  # pragma: no cover - needs a CUDA device
        from .timing import device_time, host_time_us

        if precision == "float32":
            import cupy

            A = cupy.random.standard_normal((c.M, c.K), dtype=cupy.float32)
            B = cupy.random.standard_normal((c.K, c.N), dtype=cupy.float32)
            C = cupy.empty((c.M, c.N), dtype=cupy.float32)
            fns = {"gpuconv": lambda i: gpu_matmul(A, B, out=C), "cublas": lambda i: cupy.matmul(A, B, out=C)}
        else:
            import torch

            dt = _torch_dtype(precision)
            A, B = (torch.randn(shape, device="cuda", dtype=dt) for shape in ((c.M, c.K), (c.K, c.N)))
            C = torch.empty((c.M, c.N), device="cuda", dtype=dt)
            fns = {"gpuconv": lambda i: gpu_matmul(A, B, out=C, **_precision_kwargs(precision)),
                   "cublas": lambda i: torch.matmul(A, B, out=C)}
        row["timing"] = {}
        with _Tf32(precision):
            for name, fn in fns.items():
                t = device_time(fn, flush)
                t["host_us_per_call"] = host_time_us(fn)
                t["gflops"] = row["flops"] / (t["median_ms"] * 1e-3) / 1e9
                row["timing"][name] = t
        row["timing"]["gpuconv"]["fraction_of_cublas"] = \
            row["timing"]["cublas"]["median_ms"] / row["timing"]["gpuconv"]["median_ms"]
    return row


# ----------------------------------------------------------------------------- large images through dask


def dask_skip_reason():
    """Why the gpuconv.dask cases cannot run here, or None."""
    if gpuconv.SIMULATOR:
        return "needs a CUDA device (a 16384² image is far beyond the CUDA simulator)"
    try:
        import cupy  # noqa: F401
        import dask.array  # noqa: F401
    except ImportError as e:
        return f"needs CuPy and dask[array] (pip install 'gpuconv[dask]'): {e}"
    return None


def crop_errors(x, w, y, pads, eff, n=64):
    """Relative errors of a stride-1 convolution's result y against the float64 reference on n × n output
    crops: the top-left corner (its padding included) and one across the middle of the image."""
    H, W = x.shape[2:]
    errs = []
    for p0, q0 in ((0, 0), (y.shape[2] // 2 - n // 2, y.shape[3] // 2 - n // 2)):
        lo_h, hi_h = p0 - pads[0], p0 + n - 1 - pads[0] + eff[0]
        lo_w, hi_w = q0 - pads[2], q0 + n - 1 - pads[2] + eff[1]
        crop = _host(x[:, :, max(lo_h, 0):min(hi_h, H), max(lo_w, 0):min(hi_w, W)])
        want = ref.conv2d(crop, w, padding=(max(-lo_h, 0), max(hi_h - H, 0), max(-lo_w, 0), max(hi_w - W, 0)))
        errs.append(rel_err(_host(y[:, :, p0:p0 + n, q0:q0 + n]), want))
    return max(errs)


def _host(a):
    """A NumPy copy of a NumPy or CuPy array (slice first: only the slice crosses)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _wall_time(fn, sync, reps=5):  # pragma: no cover - needs a CUDA device
    """Host wall time of fn() between two device synchronisations, after a warm-up: dask's scheduling is
    host work, so CUDA events alone would not see it. Median/p20/p80 of reps, in ms."""
    from .timing import stats

    fn()
    sync()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return stats(times)


def dask_row(case, flush=None):
    """gpuconv.dask.conv2d (direct kernel, CuPy chunks, threaded scheduler) against one gpu_conv2d call:
    checked first (bit for bit against the call, the call against the reference on crops), then timed.
    Skipped, saying why, where there is no CUDA device, CuPy or dask."""
    c, chunk = case.layer, case.chunk
    g = conv2d_geometry(c.x_shape, c.w_shape, 1, c.padding)
    row = dict(kind="dask", name=c.name, x=c.x_shape, w=c.w_shape, padding=c.padding, chunk=chunk, flops=g.flops,
               checks={}, size=case.describe())
    reason = dask_skip_reason()
    if reason:
        row.update(skipped=reason, passed=None)
        return row
    import cupy  # pragma: no cover - needs a CUDA device
    import dask.array as da

    import gpuconv.dask as gd

    rng = cupy.random.default_rng(0)
    x = rng.standard_normal(c.x_shape, dtype=cupy.float32)
    w = np.random.default_rng(1).standard_normal(c.w_shape).astype(np.float32)
    dw = cupy.asarray(w)
    dx = da.from_array(x, chunks=(c.N, c.C, chunk, chunk), asarray=False)
    lazy = gd.conv2d(dx, dw, padding=c.padding, algo="direct")
    whole = gpu_conv2d(x, dw, padding=c.padding, algo="direct")
    got = lazy.compute(scheduler="threads")
    same = bool(cupy.array_equal(got, whole))
    err = 0.0 if same else float(cupy.linalg.norm((got - whole).ravel()) / cupy.linalg.norm(whole.ravel()))
    del got
    row["checks"]["dask_vs_one_call"] = dict(rel_err=err, against="gpu_conv2d on the whole array", bitwise=same,
                                             passed=same)
    eff = (c.R, c.S)
    ref_err = crop_errors(x, w, whole, g.pads, eff)
    row["checks"]["one_call_vs_reference"] = dict(rel_err=ref_err, against="reference on 64×64 crops",
                                                  passed=ref_err < TOL)
    row["passed"] = same and ref_err < TOL
    if row["passed"]:
        sync = cupy.cuda.runtime.deviceSynchronize
        out = cupy.empty_like(whole)
        del whole
        t = {"gpuconv.dask": _wall_time(lambda: lazy.compute(scheduler="threads"), sync),
             "gpu_conv2d": _wall_time(lambda: gpu_conv2d(x, dw, padding=c.padding, algo="direct", out=out), sync)}
        for v in t.values():
            v["gflops"] = g.flops / (v["median_ms"] * 1e-3) / 1e9
        t["gpuconv.dask"]["ratio_to_one_call"] = t["gpuconv.dask"]["median_ms"] / t["gpu_conv2d"]["median_ms"]
        row["timing"] = t
        row["blocks"] = int(np.prod(lazy.numblocks))
    return row


# ----------------------------------------------------------------------------- summary


def summarize(meta, rows):
    """Derived figures: % of the fp32 FMA peak (float32 rows: not the tensor cores' roof) / of copy
    bandwidth per timing, and per algorithm and precision ("im2col", "im2col (float16)")
    the geometric mean of the ratio to cuDNN (and, outside float32, to cuDNN channels-last)."""
    base = meta.get("baselines")
    if base:
        peak, bw = base["fma_peak"]["gflops"], base["copy"]["gb_per_s"]
        for r in rows:
            for t in r.get("timing", {}).values():
                if "gflops" in t and r.get("precision", "float32") == "float32":
                    t["pct_fma_peak"] = 100 * t["gflops"] / peak
                if "gb_per_s" in t:
                    t["pct_copy_bandwidth"] = 100 * t["gb_per_s"] / bw
    geo = {}
    for r in rows:
        if r["kind"] != "conv" or "standard" not in r.get("tags", ()):
            continue
        precision = r.get("precision", "float32")
        for algo, t in r.get("timing", {}).items():
            for key in ("ratio_to_cudnn", "ratio_to_cudnn_channels_last"):
                if key in t:
                    name = algo if precision == "float32" else f"{algo} ({precision})"
                    geo.setdefault((name, precision), {}).setdefault(key, []).append(math.log(t[key]))
    summary = {}
    for (name, precision), ratios in geo.items():
        summary[name] = dict(layers=len(ratios["ratio_to_cudnn"]), precision=precision)
        for key, v in ratios.items():
            summary[name]["geomean_" + key] = math.exp(sum(v) / len(v))
    return summary
