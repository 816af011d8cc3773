"""Static kernel report: every dispatched kernel compiled offline (no GPU) and read back from its machine code.

Each kernel of gpuconv.kernel_specs is compiled with Numba's NVVM to PTX, assembled by `ptxas -v` into
a cubin for each target architecture, and disassembled by `nvdisasm`. From ptxas: registers, static
shared memory, stack and spills. From the SASS (gpuconv.sass): the hot loop's instruction mix. From
both (gpuconv.perf_model): occupancy and the issue-bound ceiling on H100 / H200 (sm_90) and A100
(sm_80). `gpuconv kernels` prints it; `--write DIR` writes `<arch>.md` and `<arch>.json` (the
committed copies live in bench/static/); `--check THRESHOLDS` fails when a dispatched kernel got
worse than the committed thresholds; `--lock THRESHOLDS` writes today's figures as the thresholds.

Compiling needs numba-cuda's NVVM (the cu13 extra) and ptxas/nvdisasm at least as new as it (the
nvidia-cuda-nvcc and nvidia-cuda-nvdisasm wheels of the dev extra; both are pinned there so that the
committed report is reproducible). The simulator cannot compile, so from a simulator process the
report re-runs itself in a child process with the simulator off.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np

from . import _runtime, perf_model, sass
from .kernel_specs import KernelSpec, kernel_specs

ARCHS = ("sm_90", "sm_80")
DTYPES = ("float32", "float64")
REFERENCE_TARGET = {"sm_90": "H200", "sm_80": "A100"}   # the target whose figures thresholds are read on


# ----------------------------------------------------------------------------- tools


def find_tool(name: str) -> str | None:
    """ptxas or nvdisasm: the NVIDIA wheels' copy first (nvidia-cuda-nvcc / -nvdisasm), then PATH."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for sub in ("cu13/bin", "cuda_nvcc/bin", "cuda_nvdisasm/bin", "cu12/bin"):
                p = os.path.join(root, sub, name)
                if os.path.exists(p):
                    return p
    except ImportError:
        pass
    return shutil.which(name)


def find_ptxas() -> str | None:
    return find_tool("ptxas")


def tool_version(path: str | None) -> str | None:
    if not path:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    lines = [ln for ln in out.splitlines() if "release" in ln.lower()]
    return lines[-1].split("release", 1)[1].strip().split(",")[0] if lines else out.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- one kernel


@dataclass
class Row:
    name: str
    dtype: str
    arch: str
    dispatched: bool
    kind: str
    threads: int
    registers: int
    smem: int                          # static shared memory, bytes
    dynamic_smem: int                  # most dynamic shared memory a launch asks for, bytes
    stack: int
    spill_stores: int
    spill_loads: int
    blocks_per_sm: int = 0
    warps_per_sm: int = 0
    occupancy_limit: str = ""
    hot_rule: str = ""
    hot_found: bool = False
    hot_trips: object = 1
    hot_instructions: float = 0
    fma: dict = field(default_factory=dict)            # class -> count in the hot loop
    fma_share: float = 0.0                              # the dtype's FMA class / hot-loop instructions
    shared_loads: dict = field(default_factory=dict)   # bits -> count (LDS)
    ldmatrix: float = 0                                # LDSM (tensor-core fragments from shared memory)
    global_loads: dict = field(default_factory=dict)   # bits -> count (LDG)
    generic_loads: dict = field(default_factory=dict)  # bits -> count (LD: global address space lost)
    shared_stores: dict = field(default_factory=dict)
    global_stores: dict = field(default_factory=dict)
    generic_stores: dict = field(default_factory=dict)
    local_accesses: float = 0                          # LDL + STL in the hot loop
    hot_div64: float = 0                               # 64-bit division sites in the hot loop
    kernel_div64: int = 0                              # ... in the whole kernel
    hot_calls: float = 0
    bytes_per_iteration: float = 0.0                   # memory kernels
    instructions_per_byte: float = 0.0                 # memory kernels
    ceilings: dict = field(default_factory=dict)       # target -> fraction of peak / of HBM bandwidth
    sass: bool = True                                  # False: nvdisasm missing, only ptxas figures

    @property
    def key(self) -> str:
        return f"{self.name}/{self.dtype}"


def _precision(dtype: str, fma: dict) -> tuple[str, str]:
    """(the FMA class that is the kernel's useful work, the peak it is measured against)."""
    if fma.get("HMMA") or fma.get("DMMA"):
        return ("HMMA" if fma.get("HMMA") else "DMMA"), "tensor"
    return ("DFMA", "fp64") if dtype == "float64" else ("FFMA", "fp32")


def ptx_of(spec: KernelSpec, dtype: str, arch: str) -> str:
    """The kernel's PTX, compiled as its dispatcher would compile it (launch bounds and fastmath too)."""
    from numba import cuda

    cc = (int(arch[3:-1]), int(arch[-1]))
    dispatcher = spec.factory(np.dtype(dtype))
    opts = {k: v for k, v in getattr(dispatcher, "targetoptions", {}).items() if k in ("launch_bounds", "fastmath")}
    ptx, _ = cuda.compile_ptx(dispatcher.py_func, spec.args(np.dtype(dtype)), cc=cc, **opts)
    return ptx


def _check(result, what):
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {err}")
    return result


def link_lto(spec: KernelSpec, dtype: str, arch: str, workdir: str) -> tuple[str, str]:
    """(cubin path, ptxas -v output) of a kernel that links CUDA C++ helpers (spec.link): the kernel to
    LTO-IR with Numba, each helper to LTO-IR with NVRTC, linked and optimised together by nvJitLink — as
    numba-cuda links it on a GPU with lto=True, so the helpers are inlined."""
    from cuda.bindings import nvjitlink, nvrtc
    from numba import cuda

    cc = (int(arch[3:-1]), int(arch[-1]))
    dispatcher = spec.factory(dtype)
    opts = {k: v for k, v in getattr(dispatcher, "targetoptions", {}).items() if k == "launch_bounds"}
    kernel_ir, _ = cuda.compile(dispatcher.py_func, spec.args(dtype), device=False, output="ltoir", cc=cc,
                                abi="numba", **opts)
    handle = nvjitlink.create(3, ["-lto", f"-arch={arch}", "-Xptxas=-v"])
    nvjitlink.add_data(handle, nvjitlink.InputType.LTOIR, kernel_ir, len(kernel_ir), "kernel")
    for i, source in enumerate(spec.link):
        _, prog = _check(nvrtc.nvrtcCreateProgram(source.encode(), f"helpers{i}.cu".encode(), 0, [], []), "NVRTC")
        flags = [b"-dlto", b"-rdc=true", f"-arch={arch}".encode()]
        if int(nvrtc.nvrtcCompileProgram(prog, len(flags), flags)[0]) != 0:
            _, n = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * n
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f"NVRTC failed on {spec.name}'s helpers:\n{log.decode(errors='replace')}")
        _, n = _check(nvrtc.nvrtcGetLTOIRSize(prog), "NVRTC")
        ir = b" " * n
        _check(nvrtc.nvrtcGetLTOIR(prog, ir), "NVRTC")
        nvjitlink.add_data(handle, nvjitlink.InputType.LTOIR, ir, len(ir), f"helpers{i}")
    try:
        nvjitlink.complete(handle)
    except Exception:
        log = bytearray(nvjitlink.get_error_log_size(handle))
        nvjitlink.get_error_log(handle, log)
        raise RuntimeError(f"nvJitLink failed on {spec.name}:\n{log.decode(errors='replace')}") from None
    info = bytearray(nvjitlink.get_info_log_size(handle))
    nvjitlink.get_info_log(handle, info)
    cubin = bytearray(nvjitlink.get_linked_cubin_size(handle))
    nvjitlink.get_linked_cubin(handle, cubin)
    nvjitlink.destroy(handle)
    path = os.path.join(workdir, "k.cubin")
    with open(path, "wb") as f:
        f.write(cubin)
    return path, info.decode(errors="replace")


def assemble(ptx: str, arch: str, ptxas: str, workdir: str) -> tuple[str, str]:
    """(cubin path, ptxas -v output)."""
    path = os.path.join(workdir, "k.ptx")
    cubin = os.path.join(workdir, "k.cubin")
    with open(path, "w") as f:
        f.write(ptx)
    proc = subprocess.run([ptxas, "-v", f"-arch={arch}", path, "-o", cubin], capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed:\n{text.strip()}")
    return cubin, text


def disassemble(cubin: str, nvdisasm: str) -> str:
    proc = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nvdisasm failed:\n{proc.stderr.strip()}")
    return proc.stdout


def _ptxas_figures(text: str) -> dict:
    import re

    props = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    used = re.search(r"Used (\d+) registers[^\n]*", text)
    smem = re.search(r"(\d+) bytes smem", used.group(0))
    return dict(registers=int(used.group(1)), smem=int(smem.group(1)) if smem else 0, stack=int(props.group(1)),
                spill_stores=int(props.group(2)), spill_loads=int(props.group(3)))


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def measure(spec: KernelSpec, dtype: str, arch: str, ptxas: str, nvdisasm: str | None,
            ptx: str | None = None) -> Row:
    """Compile one kernel (or take its PTX) and measure it."""
    with tempfile.TemporaryDirectory() as d:
        if spec.link:
            cubin, text = link_lto(spec, dtype, arch, d)
        else:
            cubin, text = assemble(ptx if ptx is not None else ptx_of(spec, dtype, arch), arch, ptxas, d)
        disasm = disassemble(cubin, nvdisasm) if nvdisasm else None
    row = Row(spec.name, dtype, arch, spec.dispatched, spec.kind, spec.threads, dynamic_smem=spec.dynamic_smem,
              **_ptxas_figures(text))
    targets = perf_model.targets_for(arch)
    occ = perf_model.occupancy(row.registers, spec.threads, row.smem + spec.dynamic_smem, targets[0])
    row.blocks_per_sm, row.warps_per_sm, row.occupancy_limit = occ.blocks, occ.warps, occ.limit
    if disasm is None:
        row.sass = False
        return row
    hot, whole = sass.analyse(sass.kernel_function(sass.parse(disasm)), spec.hot, spec.trips)
    mix = hot.mix
    row.hot_rule, row.hot_found, row.hot_trips = hot.rule, hot.found, hot.trips
    row.hot_instructions = mix.instructions
    row.fma = {k: v for k, v in sorted(mix.fma.items())}
    cls, precision = _precision(dtype, row.fma)
    row.fma_share = (row.fma.get(cls, 0) / mix.instructions) if mix.instructions else 0.0
    row.shared_loads, row.global_loads, row.generic_loads = (mix.loads(s) for s in ("shared", "global", "generic"))
    row.ldmatrix = mix.ldmatrix()
    row.shared_stores, row.global_stores, row.generic_stores = (mix.stores(s) for s in ("shared", "global", "generic"))
    row.local_accesses = sum(mix.loads("local").values()) + sum(mix.stores("local").values())
    row.hot_div64, row.kernel_div64, row.hot_calls = mix.division_sites, int(whole.division_sites), mix.calls
    if spec.kind == "memory":
        row.bytes_per_iteration = spec.bytes_per_iteration(_itemsize(dtype))
        row.instructions_per_byte = mix.instructions / row.bytes_per_iteration
        row.ceilings = {t.name: perf_model.memory_ceiling(mix.instructions, row.bytes_per_iteration, t)
                        for t in targets}
    else:
        row.ceilings = {t.name: perf_model.compute_ceiling(row.fma_share, precision, t) for t in targets}
    return row


def _measure_named(name: str, dtype: str, archs, ptxas: str, nvdisasm: str | None) -> list[Row]:
    """measure() of the kernel_specs() entry `name` for each arch: a worker process's unit of work (specs
    hold factories, which are looked up by name rather than pickled)."""
    spec = next(s for s in kernel_specs() if s.name == name)
    return [measure(spec, dtype, arch, ptxas, nvdisasm) for arch in archs]


def default_jobs() -> int:
    """Worker processes for the report: one per CPU this process may use (compiling is CPU-bound)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def report(archs=ARCHS, dtypes=None, specs=None, only=None, jobs=1) -> list[Row]:
    """Measure `specs` (default: every kernel of gpuconv.kernel_specs, or the ones named in `only`), in
    `jobs` worker processes when the specs are kernel_specs()' own (rows in the same order either way)."""
    ptxas, nvdisasm = find_tool("ptxas"), find_tool("nvdisasm")
    if ptxas is None:
        raise RuntimeError("no ptxas found: install the dev extra (pip install -e '.[dev]') or the CUDA toolkit")
    own = specs is None
    specs = kernel_specs() if specs is None else specs
    if only:
        unknown = set(only) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"unknown kernels {sorted(unknown)}; known: {', '.join(s.name for s in specs)}")
        specs = [s for s in specs if s.name in only]
    work = [(spec, dt) for spec in specs for dt in (dtypes or spec.dtypes)]
    if not own or jobs <= 1 or len(work) < 2:
        return [measure(spec, dt, arch, ptxas, nvdisasm) for spec, dt in work for arch in archs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
        parts = pool.map(_measure_named, *zip(*[(spec.name, dt, tuple(archs), ptxas, nvdisasm) for spec, dt in work]))
        return [row for part in parts for row in part]


# ----------------------------------------------------------------------------- presentation


def _widths(d: dict) -> str:
    """{32: 4, 128: 2} -> "4×32 2×128"; "" for none."""
    return " ".join(f"{_num(n)}×{bits}" for bits, n in sorted(d.items()) if n)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _ceiling_text(r: Row, target: str) -> str:
    if not r.sass:
        return "?"
    frac = r.ceilings.get(target)
    if frac is None:
        return ""
    t = perf_model.TARGETS[target]
    if r.kind == "memory":
        return f"{100 * frac:.0f}% ({frac * t.hbm_tb_s:.2f} TB/s)"
    _, precision = _precision(r.dtype, r.fma)
    if precision == "tensor":
        return f"{100 * frac:.0f}% of tensor peak"
    return f"{100 * frac:.0f}% ({frac * t.fp_peak_tflops(precision):.1f} TFLOP/s)"


COLUMNS = ("kernel", "dtype", "regs", "smem (static + dyn)", "stack/spill", "blocks × warps / SM", "hot loop",
           "instr", "FMA (share)", "LDS", "LDG", "LD generic", "div64 hot/sites")


def row_cells(r: Row, targets) -> list[str]:
    smem = f"{r.smem}" + (f" + ≤{r.dynamic_smem}" if r.dynamic_smem else "")
    spill = f"{r.stack}/{r.spill_stores + r.spill_loads}"
    occ = f"{r.blocks_per_sm} × {r.warps_per_sm // max(r.blocks_per_sm, 1)} = {r.warps_per_sm} ({r.occupancy_limit})"
    if not r.sass:
        return [r.name, r.dtype, str(r.registers), smem, spill, occ] + ["?"] * (len(COLUMNS) - 6 + len(targets))
    trips = r.hot_trips if not isinstance(r.hot_trips, (list, tuple)) else ",".join(_num(t) for t in r.hot_trips)
    hot = r.hot_rule + ("" if r.hot_found else " (none: whole kernel)") + (f", trips {trips}" if trips != 1 else "")
    if r.kind == "memory":
        hot += f", {r.instructions_per_byte:.1f} instr/B"
    cls, _ = _precision(r.dtype, r.fma)
    fma = f"{_num(r.fma.get(cls, 0))} ({100 * r.fma_share:.0f}%)"
    div = f"{_num(r.hot_div64)}/{r.kernel_div64}"
    lds = " ".join(x for x in (_widths(r.shared_loads), f"{_num(r.ldmatrix)}×LDSM" if r.ldmatrix else "") if x)
    return [r.name, r.dtype, str(r.registers), smem, spill, occ, hot, _num(r.hot_instructions), fma,
            lds, _widths(r.global_loads), _widths(r.generic_loads), div] + \
        [_ceiling_text(r, t.name) for t in targets]


def markdown(rows: list[Row], arch: str, versions: dict) -> str:
    targets = perf_model.targets_for(arch)
    head = list(COLUMNS) + [f"ceiling {t.name}" for t in targets]
    lines = [f"# Static kernel report: {arch}", "",
             "Generated by `gpuconv kernels --write bench/static` (no GPU needed); CI regenerates it and fails if "
             "it differs from this copy, and checks `thresholds.json`.", "",
             "Tools: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "",
             "How to read it (definitions in `python/gpuconv/sass.py`, assumptions in "
             "`python/gpuconv/perf_model.py`):",
             "- *hot loop*: the rule that picks it (`fma_inner`: innermost loop with FMAs; `fma_outer`: outermost "
             "loop with FMAs, a GEMM's K step; `outer`: the grid-stride loop over elements; `kernel`: the whole "
             "kernel per thread); nested loops count `trips` times; counts are static (both sides of a branch).",
             "- *FMA (share)*: FFMA (float32) or DFMA (float64) in the hot loop, and their share of its "
             "instructions (tensor-core kernels: HMMA, against the tensor peak); *LDS/LDG/LD generic*: loads by width in bits (count×bits); *div64*: 64-bit integer "
             "division calls per hot-loop iteration (nested loops × trips) / call sites in the whole kernel.",
             "- *ceiling*: compute kernels — the FMA share bounds the fraction of FP32 (FP64) peak the issue rate "
             "allows; memory kernels — instructions per byte against the issue rate and HBM bandwidth "
             "(instr/B: per byte of the kernel's standard case, see `python/gpuconv/kernel_specs.py`).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.arch == arch:
            lines.append("| " + " | ".join(c.replace("|", "/") for c in row_cells(r, targets)) + " |")
    return "\n".join(lines) + "\n"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("numba-cuda", "numba"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "?"
    out["ptxas"] = tool_version(find_tool("ptxas")) or "missing"
    out["nvdisasm"] = tool_version(find_tool("nvdisasm")) or "missing"
    return out


def write(rows: list[Row], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    vers = versions()
    paths = []
    for arch in sorted({r.arch for r in rows}):
        md = os.path.join(out_dir, f"{arch}.md")
        with open(md, "w") as f:
            f.write(markdown(rows, arch, vers))
        js = os.path.join(out_dir, f"{arch}.json")
        with open(js, "w") as f:
            json.dump(dict(arch=arch, versions=vers, kernels=[_jsonable(asdict(r)) for r in rows if r.arch == arch]),
                      f, indent=1, sort_keys=True)
            f.write("\n")
        paths += [md, js]
    return paths


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = {str(kk): (round(vv, 6) if isinstance(vv, float) else vv) for kk, vv in v.items()}
        elif isinstance(v, float):
            v = round(v, 6)
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def print_table(rows: list[Row]) -> None:
    from rich.table import Table

    from ._console import console as new_console

    console = new_console()
    for arch in sorted({r.arch for r in rows}, reverse=True):
        targets = perf_model.targets_for(arch)
        table = Table(title=f"static kernel report, {arch}", show_lines=False)
        for c in list(COLUMNS) + [f"ceiling {t.name}" for t in targets]:
            table.add_column(c, overflow="fold")
        for r in rows:
            if r.arch == arch:
                table.add_row(*row_cells(r, targets))
        console.print(table)


# ----------------------------------------------------------------------------- thresholds (the CI ratchet)


def lock(rows: list[Row], arch: str = "sm_90") -> dict:
    """Today's figures of the dispatched kernels on `arch`, as thresholds (shares rounded down, instructions
    per byte rounded up, so the same code always passes)."""
    kernels = {}
    for r in rows:
        if r.arch != arch or not r.dispatched:
            continue
        t = dict(min_warps_per_sm=r.warps_per_sm, max_stack=r.stack, max_spill=r.spill_stores + r.spill_loads,
                 max_hot_div64=r.hot_div64, max_local_accesses=r.local_accesses)
        if r.kind == "memory":
            t["max_instructions_per_byte"] = math.ceil(r.instructions_per_byte * 100) / 100
        else:
            t["min_fma_share"] = math.floor(r.fma_share * 1000) / 1000
        kernels[r.key] = t
    return dict(arch=arch, kernels=dict(sorted(kernels.items())))


def check(rows: list[Row], thresholds: dict, partial: bool = False) -> list[str]:
    """Regressions of the dispatched kernels against the thresholds (empty: none). partial: only the
    kernels in rows are checked (a report of some kernels)."""
    arch = thresholds["arch"]
    found = {r.key: r for r in rows if r.arch == arch and r.dispatched}
    names = {r.name for r in rows}
    problems = []
    for key, t in thresholds["kernels"].items():
        if partial and key.split("/")[0] not in names:
            continue
        r = found.pop(key, None)
        if r is None:
            problems.append(f"{key}: has a threshold but was not measured (renamed or removed? update thresholds)")
            continue
        if not r.sass:
            problems.append(f"{key}: no SASS (nvdisasm missing): cannot check")
            continue
        if r.warps_per_sm < t["min_warps_per_sm"]:
            problems.append(f"{key}: occupancy fell to {r.warps_per_sm} warps/SM (threshold {t['min_warps_per_sm']}; "
                            f"{r.registers} registers, {r.smem + r.dynamic_smem} B shared)")
        if r.stack > t["max_stack"] or r.spill_stores + r.spill_loads > t["max_spill"]:
            problems.append(f"{key}: stack {r.stack} B / spills {r.spill_stores + r.spill_loads} B "
                            f"(threshold {t['max_stack']} / {t['max_spill']})")
        if r.hot_div64 > t["max_hot_div64"]:
            problems.append(f"{key}: {_num(r.hot_div64)} 64-bit division sites in the hot loop "
                            f"(threshold {_num(t['max_hot_div64'])})")
        if r.local_accesses > t.get("max_local_accesses", 0):
            problems.append(f"{key}: {_num(r.local_accesses)} local-memory accesses in the hot loop "
                            f"(threshold {_num(t.get('max_local_accesses', 0))})")
        if "min_fma_share" in t and r.fma_share < t["min_fma_share"]:
            problems.append(f"{key}: hot-loop FMA share fell to {r.fma_share:.3f} (threshold {t['min_fma_share']})")
        if "max_instructions_per_byte" in t and r.instructions_per_byte > t["max_instructions_per_byte"]:
            problems.append(f"{key}: {r.instructions_per_byte:.2f} instructions per byte "
                            f"(threshold {t['max_instructions_per_byte']})")
    for key in sorted(found):
        problems.append(f"{key}: dispatched but has no threshold (add it with `gpuconv kernels --lock`)")
    return problems


# ----------------------------------------------------------------------------- command


def main(archs=ARCHS, fail_on_spill=False, write_dir=None, check_path=None, lock_path=None, quiet=False,
         only=None, jobs=None) -> int:
    if _runtime.SIMULATOR:
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", GPUCONV_SIMULATOR="0")
        cmd = [sys.executable, "-m", "gpuconv.kernel_report", "--arch", *archs]
        cmd += ["--fail-on-spill"] if fail_on_spill else []
        cmd += ["--write", write_dir] if write_dir else []
        cmd += ["--check", check_path] if check_path else []
        cmd += ["--lock", lock_path] if lock_path else []
        cmd += ["--quiet"] if quiet else []
        cmd += ["--only", *only] if only else []
        cmd += ["--jobs", str(jobs)] if jobs else []
        return subprocess.run(cmd, env=env).returncode
    nvdisasm = find_tool("nvdisasm")
    if only and (write_dir or lock_path):
        print("--only measures some kernels: it cannot --write or --lock the report", file=sys.stderr)
        return 2
    try:
        rows = report(archs, only=only, jobs=jobs or default_jobs())
    except (RuntimeError, ValueError) as e:
        print(f"gpuconv kernels: {e}", file=sys.stderr)
        return 2
    if not quiet:
        print_table(rows)
    if nvdisasm is None:
        print("nvdisasm not found: SASS figures (hot loop, FMA share, loads, ceilings) are missing. Install the dev "
              "extra (pip install -e '.[dev]'), which brings nvidia-cuda-nvdisasm.", file=sys.stderr)
    status = 0
    spilling = [r for r in rows if r.dispatched and (r.spill_stores or r.spill_loads or r.stack)]
    if spilling:
        print(f"{len(spilling)} dispatched kernel build(s) spill or use local memory:", file=sys.stderr)
        for r in spilling:
            print(f"  {r.key} {r.arch}: stack {r.stack} B, spills {r.spill_stores}/{r.spill_loads} B", file=sys.stderr)
        status = 1 if fail_on_spill else 0
    if write_dir:
        for p in write(rows, write_dir):
            print(f"wrote {p}")
    if lock_path:
        with open(lock_path, "w") as f:
            json.dump(lock(rows), f, indent=1)
            f.write("\n")
        print(f"wrote {lock_path}")
    if check_path:
        with open(check_path) as f:
            problems = check(rows, json.load(f), partial=bool(only))
        if problems:
            print(f"{len(problems)} regression(s) against {check_path}:", file=sys.stderr)
            for p in problems:
                print(f"  {p}", file=sys.stderr)
            status = 1
        else:
            print(f"no regressions against {check_path}")
    return status


def _parse(argv):
    import argparse

    p = argparse.ArgumentParser(prog="python -m gpuconv.kernel_report")
    p.add_argument("--arch", nargs="+", default=list(ARCHS))
    p.add_argument("--fail-on-spill", action="store_true")
    p.add_argument("--write", default=None)
    p.add_argument("--check", default=None)
    p.add_argument("--lock", default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--only", nargs="+", default=None)
    p.add_argument("--jobs", type=int, default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    a = _parse(sys.argv[1:])
    sys.exit(main(a.arch, a.fail_on_spill, a.write, a.check, a.lock, a.quiet, a.only, a.jobs))
