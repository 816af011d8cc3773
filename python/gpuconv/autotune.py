"""algo="auto": the fastest eligible algorithm for a shape on this device, measured once and cached.

On a CUDA device the first call with a new (device, shape, options) key times every eligible algorithm
on the call's own arrays (CUDA events on the caller's stream, after one warm-up launch each; this one
call waits for the device) and keeps the winner in memory and in an on-disk JSON cache, so later
processes skip the timing. The cache lives in the user cache directory (platformdirs: ~/.cache/gpuconv
on Linux; GPUCONV_CACHE_DIR overrides it). The file is rewritten whole under an exclusive lock
(filelock) from a fresh read, through a temporary file and an atomic rename: concurrent writers never
lose each other's entries or leave a torn file. Every entry is validated as it is read (a known
algorithm's name, a dict of finite timings): malformed ones are dropped with one warning and the rest
kept; a file that is not JSON of the expected layout (or nests too deeply to parse) is set aside as
*.corrupt and rebuilt. The in-memory table is shared by threads (one lookup or store is atomic under
the GIL; two threads may both time the same new key, and the last store wins).

Without timing (the CUDA simulator, or GPUCONV_AUTOTUNE=0) a documented heuristic decides; it has not
been calibrated by measurement yet:
- depthwise or other grouped layers -> direct (its depthwise kernel; the GEMMs batch small groups);
- 3×3, stride 1, dilation 1, ungrouped, C ≥ 32 and K ≥ 32 and an output of ≥ 8×8 -> winograd (F(4×4));
- ungrouped with C·R·S ≥ 64 and K ≥ 32 -> implicit_gemm;
- everything else (small channel counts, where the GEMM tiles would be mostly empty) -> direct.
"im2col_cublas" is never chosen: it is a comparison path.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import warnings

from . import _runtime, im2col, winograd

CANDIDATES = ("direct", "implicit_gemm", "im2col", "winograd", "winograd_2x2")
CACHE_VERSION = 1


def eligible(g, dtype, weight_viewable=True) -> list[str]:
    """The algorithms that can run geometry g (in this order: direct first)."""
    out = ["direct"]
    if weight_viewable:
        out.append("implicit_gemm")
        try:
            im2col.chunking(g, dtype.itemsize, im2col.workspace_limit())
            out.append("im2col")
        except ValueError:
            pass
        if winograd.ineligible(g) is None:
            for name, m in winograd.ALGOS.items():
                try:
                    winograd.WinogradPlan.workspace_images(g, dtype, m, im2col.workspace_limit())
                    out.append(name)
                except ValueError:
                    pass
    return out


def heuristic(g, dtype, weight_viewable=True) -> str:
    """The rule used when nothing can be timed (see the module docstring)."""
    ok = eligible(g, dtype, weight_viewable)
    if g.groups == 1 and "winograd" in ok and g.C >= 32 and g.K >= 32 and g.P >= 8 and g.Q >= 8:
        return "winograd"
    if g.groups == 1 and "implicit_gemm" in ok and g.C * g.R * g.S >= 64 and g.K >= 32:
        return "implicit_gemm"
    return "direct"


def key_of(device, g, dtype, has_bias, act, tc=None) -> str:
    """The cache key of one layer's choice; tc "tf32" (float32 on TF32 tensor cores allowed) is part of
    it, as it changes what im2col costs."""
    precision = f"{dtype}+tf32" if tc == "tf32" else dtype
    return "|".join(map(str, (device, g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.stride, g.dilation, g.pads, g.groups,
                              g.padding_mode, precision, has_bias, act)))


def cache_dir() -> str:
    """GPUCONV_CACHE_DIR, else the platform's user cache directory for gpuconv."""
    root = os.environ.get("GPUCONV_CACHE_DIR")
    if root:
        return root
    try:
        import platformdirs
    except ImportError:  # an offline image without it: the XDG default
        return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "gpuconv")
    return platformdirs.user_cache_dir("gpuconv", appauthor=False)


def cache_path() -> str:
    return os.path.join(cache_dir(), "autotune.json")


@contextlib.contextmanager
def _locked(path):
    from filelock import FileLock

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with FileLock(path + ".lock"):
        yield


def valid_entry(entry) -> bool:
    """Is a cache entry {"algo": a known algorithm, "times_ms": {algorithm: finite milliseconds}}?"""
    if not isinstance(entry, dict) or entry.get("algo") not in CANDIDATES:
        return False
    times = entry.get("times_ms")
    return isinstance(times, dict) and all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for k, v in times.items())


def _read(path, quiet=False) -> dict:
    """The cache's valid entries. A missing file is empty; a file that is not the expected JSON is renamed
    *.corrupt and treated as empty; malformed entries are dropped (one warning names how many, unless
    quiet: a store drops them again from the file it rewrites, after the lookup before it warned)."""
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or \
                not isinstance(data.get("entries"), dict):
            raise ValueError("unknown layout")
    except FileNotFoundError:
        return {}
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        warnings.warn(f"gpuconv: autotune cache {path} is unreadable ({type(e).__name__}: {str(e)[:80]}); "
                      f"starting a new one", stacklevel=3)
        with contextlib.suppress(OSError):
            os.replace(path, path + ".corrupt")
        return {}
    entries = {k: v for k, v in data["entries"].items() if valid_entry(v)}
    dropped = len(data["entries"]) - len(entries)
    if dropped and not quiet:
        warnings.warn(f"gpuconv: dropped {dropped} malformed entr{'y' if dropped == 1 else 'ies'} of the autotune "
                      f"cache {path}; the rest are kept", stacklevel=3)
    return entries


class Tuner:
    """Winners per key, in memory and on disk. `timer(algo) -> milliseconds` measures one algorithm."""

    def __init__(self, path=None):
        self.path = path or cache_path()
        self.memory: dict[str, str] = {}
        self._loaded = False

    def lookup(self, key):
        if key not in self.memory and not self._loaded:
            self._loaded = True
            with contextlib.suppress(OSError):
                self.memory.update({k: v["algo"] for k, v in _read(self.path).items() if k not in self.memory})
        return self.memory.get(key)

    def store(self, key, algo, times_ms):
        self.memory[key] = algo
        try:
            with _locked(self.path):
                entries = _read(self.path, quiet=True)
                entries[key] = dict(algo=algo, times_ms=times_ms)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), suffix=".tmp")
                with os.fdopen(fd, "w") as f:
                    json.dump(dict(version=CACHE_VERSION, entries=entries), f, indent=0)
                os.replace(tmp, self.path)
        except OSError as e:   # a read-only home still tunes, in memory
            warnings.warn(f"gpuconv: cannot write the autotune cache {self.path}: {e}", stacklevel=3)

    def choose(self, key, candidates, timer):
        """The cached winner for key, else time every candidate with timer(algo) and keep the fastest."""
        hit = self.lookup(key)
        if hit in candidates:
            return hit
        times = {a: float(timer(a)) for a in candidates}
        best = min(times, key=times.get)
        self.store(key, best, times)
        return best


_TUNER = None


def tuner() -> Tuner:
    global _TUNER
    if _TUNER is None or _TUNER.path != cache_path():
        _TUNER = Tuner()
    return _TUNER


def can_time() -> bool:
    return not _runtime.SIMULATOR and os.environ.get("GPUCONV_AUTOTUNE", "1") != "0"
