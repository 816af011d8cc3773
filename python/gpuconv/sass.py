"""Reading sm_XX machine code (SASS, as `nvdisasm` prints it): instructions, control flow, loops, and
the instruction mix of a kernel's hot loop.

Definitions (the offline model's, stated once here; gpuconv.perf_model turns the mix into ceilings):

- A **loop** is the natural loop of a back edge: a branch to a block at or before it in the kernel's
  control-flow graph, and every block that reaches that branch without passing the target (the header).
  Back edges sharing a header make one loop. Loops nest by containment. Subroutines reached by CALL
  (e.g. the 64-bit division slow paths) are not part of any loop: a CALL counts as one instruction
  of its block, and the call site is counted (see `division_sites`, `calls`).
- The **hot loop** of a kernel is chosen by a rule its spec names (gpuconv.kernel_report):
  "fma_inner" — the innermost loop that contains FMA instructions (most FMAs wins a tie): the tap
    loop of a direct convolution;
  "fma_outer" — the outermost loop that contains FMA instructions: a GEMM's K step, with any loop
    left inside it (an un-unrolled `kk` loop) counted `trips` times; among equals, the one with the
    most FMAs, then the fewest instructions (a kernel with a separate, bounds-checked loop for its
    edge tiles is measured on its interior loop);
  "outer" — the outermost loop that reads global memory (the largest, if several): the grid-stride
    loop of an elementwise kernel, one iteration per element, its window loops counted `trips` times
    per nesting level;
  "inner" — the innermost loop that reads global memory (the largest, if several): an element loop
    nested in a per-plane or per-tile loop;
  "kernel" — the whole kernel per thread (one tile or element per thread, no grid-stride loop): code
    outside loops once, each loop `trips` times;
  where no loop matches a rule, the whole kernel is measured with every loop counted once.
- Counts are **static**: every instruction of the hot loop's blocks once (both sides of a branch,
  the call-setup and the inline fast path of a 64-bit division), plus each nested loop's weighted
  count × `trips`. Code for options not taken at run time therefore counts too: a kernel that
  specialises its options at compile time scores better, as it runs better (fewer registers, no
  divergence).
- **FMA** instructions: FFMA (float32), DFMA (float64), HFMA2 (half pairs; not the `HFMA2.MMA` move
  idiom with RZ operands), and tensor-core HMMA/DMMA, counted per class.
- **Loads and stores** by space and width: shared (LDS/STS), global (LDG/STG), generic (LD/ST: the
  global address space was lost), local (LDL/STL: spills or local arrays), constant (LDC), at
  8/16/32/64/128 bits. `.U8`/`.S16`... set the width; no suffix is 32 bits.
- A **64-bit division site** is a CALL to one of CUDA's internal 64-bit integer division or remainder
  routines (`__cuda_sm20_div_s64`, `rem_s64`, `div_u64`, `rem_u64`): Numba's `//` and `%` on int64.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_FUNC = re.compile(r"^\s*\.text\.(\S+):\s*$")
_SUB = re.compile(r"^(\$?[\w$.]+):\s*$")
_LABEL = re.compile(r"^\s*(\.L\w+):\s*$")
_INSTR = re.compile(r"^\s*/\*([0-9a-fA-F]{4,})\*/\s+(.*?)\s*;")
_PRED = re.compile(r"^@(!?U?P[T0-9]+)\s+")
_TARGET = re.compile(r"`\(([^)]+)\)")

DIV64_ROUTINES = ("div_s64", "rem_s64", "div_u64", "rem_u64")
FMA_OPCODES = ("FFMA", "DFMA", "HFMA2", "HMMA", "DMMA")
_WIDTH = {"U8": 8, "S8": 8, "U16": 16, "S16": 16, "64": 64, "128": 128}
_SPACES = {"LDS": ("shared", "load"), "STS": ("shared", "store"), "LDG": ("global", "load"),
           "STG": ("global", "store"), "LD": ("generic", "load"), "ST": ("generic", "store"),
           "LDL": ("local", "load"), "STL": ("local", "store"), "LDC": ("constant", "load"),
           "LDSM": ("shared", "ldmatrix")}


@dataclass(frozen=True)
class Instruction:
    address: int
    text: str                  # the whole instruction, predicate included, without the ';'
    predicate: str | None      # "P0", "!P1", ... or None
    opcode: str                # e.g. "FFMA", "LDG.E.128.CONSTANT", "CALL.REL.NOINC"
    operands: str

    @property
    def base(self) -> str:
        """The opcode without modifiers: "LDG" for "LDG.E.128"."""
        return self.opcode.split(".", 1)[0]

    @property
    def target(self) -> str | None:
        """The label a BRA/CALL goes to, if any."""
        m = _TARGET.search(self.operands)
        return m.group(1) if m else None

    @property
    def is_branch(self) -> bool:
        return self.base in ("BRA", "BRX", "JMP", "JMX")

    @property
    def ends_flow(self) -> bool:
        """Does control never fall through to the next instruction (unconditional branch, exit, return)?"""
        if self.predicate is not None:
            return False
        return self.base in ("BRA", "BRX", "JMP", "JMX", "EXIT", "RET", "KILL")

    @property
    def fma_class(self) -> str | None:
        """"FFMA", "DFMA", "HFMA2", "HMMA" or "DMMA" for a multiply-add doing math, else None."""
        b = self.base
        if b not in FMA_OPCODES:
            return None
        if b == "HFMA2" and ".MMA" in self.opcode and "RZ" in self.operands.replace("-RZ", "RZ").split(", ")[1:3]:
            return None                 # HFMA2.MMA Rd, -RZ, RZ, imm: the compiler's move-immediate idiom
        return b

    @property
    def memory(self) -> tuple[str, str, int] | None:
        """(space, "load"/"store"/"ldmatrix", bits) for a memory instruction, else None."""
        b = self.base
        if b not in _SPACES or (b == "LDC" and self.opcode.startswith("LDCU")):
            return None
        space, kind = _SPACES[b]
        bits = 32
        for mod in self.opcode.split(".")[1:]:
            bits = _WIDTH.get(mod, bits)
        return space, kind, bits

    @property
    def callee(self) -> str | None:
        return self.target if self.base == "CALL" else None

    @property
    def is_div64(self) -> bool:
        c = self.callee
        return c is not None and any(c.endswith(r) for r in DIV64_ROUTINES)


def parse_instruction(address: int, text: str) -> Instruction:
    pred = None
    m = _PRED.match(text)
    if m:
        pred = m.group(1)
        text_body = text[m.end():]
    else:
        text_body = text
    parts = text_body.split(None, 1)
    return Instruction(address, text, pred, parts[0], parts[1] if len(parts) > 1 else "")


@dataclass
class Function:
    """One kernel's code as nvdisasm prints its section: the instructions, and labels by address."""

    name: str
    instructions: list[Instruction]
    labels: dict[str, int]              # label -> address (".L_x_3", "$__internal_0_$__cuda_sm20_div_s64")


def parse(text: str) -> list[Function]:
    """The functions (kernel sections) in nvdisasm's text output (`nvdisasm -c cubin`)."""
    funcs: list[Function] = []
    cur = None
    pending: list[str] = []
    for line in text.splitlines():
        m = _FUNC.match(line)
        if m:
            cur = Function(m.group(1), [], {})
            funcs.append(cur)
            pending = []
            continue
        if cur is None:
            continue
        m = _LABEL.match(line) or (_SUB.match(line) if not line.startswith((" ", "\t", "/")) else None)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSTR.match(line)
        if m:
            addr = int(m.group(1), 16)
            for label in pending:
                cur.labels[label] = addr
            pending = []
            cur.instructions.append(parse_instruction(addr, m.group(2)))
    return funcs


# ----------------------------------------------------------------------------- control flow


@dataclass
class Block:
    index: int
    instructions: list[Instruction]
    succ: list[int] = field(default_factory=list)
    pred: list[int] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.instructions[0].address


@dataclass
class Loop:
    header: int                          # block index
    blocks: frozenset[int]
    children: list["Loop"] = field(default_factory=list)
    parent: "Loop | None" = None

    @property
    def depth(self) -> int:
        d, p = 0, self.parent
        while p is not None:
            d, p = d + 1, p.parent
        return d


class CFG:
    """Basic blocks and edges of a function's code reachable from its entry (CALLs fall through)."""

    def __init__(self, func: Function):
        ins = func.instructions
        by_addr = {x.address: i for i, x in enumerate(ins)}
        label_index = {name: by_addr[a] for name, a in func.labels.items() if a in by_addr}
        starts = {0}
        for i, x in enumerate(ins):
            if x.is_branch or x.ends_flow or x.base == "EXIT":
                if i + 1 < len(ins):
                    starts.add(i + 1)
                t = x.target
                if x.is_branch and t in label_index:
                    starts.add(label_index[t])
        for idx in label_index.values():
            starts.add(idx)
        order = sorted(starts)
        block_of = {}
        self.blocks: list[Block] = []
        for n, s in enumerate(order):
            e = order[n + 1] if n + 1 < len(order) else len(ins)
            self.blocks.append(Block(n, ins[s:e]))
            block_of[s] = n
        for b in self.blocks:
            last = b.instructions[-1]
            if last.is_branch and last.target in label_index:
                b.succ.append(block_of[label_index[last.target]])
            if not last.ends_flow and b.index + 1 < len(self.blocks):
                b.succ.append(b.index + 1)
        reach = self._reachable()
        for b in self.blocks:
            b.succ = [s for s in b.succ if s in reach]
            if b.index in reach:
                for s in b.succ:
                    self.blocks[s].pred.append(b.index)
        self.reachable = reach
        self.loops = self._loops()

    def _reachable(self) -> set[int]:
        seen, stack = set(), [0] if self.blocks else []
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            stack.extend(self.blocks[n].succ)
        return seen

    def _loops(self) -> list[Loop]:
        """Natural loops of the back edges (an edge to a block at or before its source), merged by
        header, nested by containment; returns the outermost loops."""
        bodies: dict[int, set[int]] = {}
        for b in self.blocks:
            if b.index not in self.reachable:
                continue
            for s in b.succ:
                if s <= b.index:                           # back edge b -> s
                    body = bodies.setdefault(s, {s})
                    stack = [b.index]
                    while stack:
                        n = stack.pop()
                        if n in body:
                            continue
                        body.add(n)
                        stack.extend(self.blocks[n].pred)
        loops = [Loop(h, frozenset(body)) for h, body in bodies.items()]
        loops.sort(key=lambda L: len(L.blocks))
        for i, inner in enumerate(loops):
            for outer in loops[i + 1:]:
                if inner.blocks < outer.blocks or (inner.blocks <= outer.blocks and inner.header != outer.header):
                    inner.parent = outer
                    outer.children.append(inner)
                    break
        return [L for L in loops if L.parent is None]

    def all_loops(self) -> list[Loop]:
        out, stack = [], list(self.loops)
        while stack:
            L = stack.pop()
            out.append(L)
            stack.extend(L.children)
        return out

    def own_instructions(self, loop: Loop) -> list[Instruction]:
        """The loop's instructions that are not in one of its nested loops."""
        inner = set().union(*(c.blocks for c in loop.children)) if loop.children else set()
        return [x for n in sorted(loop.blocks - inner) for x in self.blocks[n].instructions]


# ----------------------------------------------------------------------------- instruction mix


@dataclass
class Mix:
    """Weighted instruction counts of a region (a hot loop, or a whole kernel)."""

    instructions: float = 0
    fma: Counter = field(default_factory=Counter)          # FFMA/DFMA/HFMA2/HMMA/DMMA -> count
    memory: Counter = field(default_factory=Counter)       # (space, kind, bits) -> count
    division_sites: float = 0
    calls: float = 0
    branches: float = 0
    barriers: float = 0

    def add(self, x: Instruction, w: float = 1.0):
        self.instructions += w
        f = x.fma_class
        if f:
            self.fma[f] += w
        mem = x.memory
        if mem:
            self.memory[mem] += w
        if x.base == "CALL":
            self.calls += w
            if x.is_div64:
                self.division_sites += w
        if x.is_branch:
            self.branches += w
        if x.base in ("BAR", "BARRIER"):
            self.barriers += w

    def merge(self, other: "Mix", w: float):
        self.instructions += other.instructions * w
        for k, v in other.fma.items():
            self.fma[k] += v * w
        for k, v in other.memory.items():
            self.memory[k] += v * w
        self.division_sites += other.division_sites * w
        self.calls += other.calls * w
        self.branches += other.branches * w
        self.barriers += other.barriers * w

    def fma_count(self, classes=("FFMA", "DFMA", "HFMA2")) -> float:
        return sum(self.fma[c] for c in classes)

    def loads(self, space: str) -> dict[int, float]:
        """{bits: count} of loads from `space` ("shared", "global", "generic", "local", "constant"); ldmatrix
        (LDSM) is counted apart (`ldmatrix`)."""
        out: dict[int, float] = {}
        for (sp, kind, bits), n in self.memory.items():
            if sp == space and kind == "load":
                out[bits] = out.get(bits, 0) + n
        return out

    def ldmatrix(self) -> float:
        """LDSM instructions (ldmatrix: 8×8 matrices from shared memory into a warp's fragments)."""
        return sum(n for (sp, kind, _), n in self.memory.items() if kind == "ldmatrix")

    def stores(self, space: str) -> dict[int, float]:
        out: dict[int, float] = {}
        for (sp, kind, bits), n in self.memory.items():
            if sp == space and kind == "store":
                out[bits] = out.get(bits, 0) + n
        return out


def _trips_at(trips, level: int) -> float:
    """Trips of a loop `level` levels below the measured region (1: directly inside it)."""
    if isinstance(trips, (tuple, list)):
        return float(trips[min(level, len(trips)) - 1])
    return float(trips)


def loop_mix(cfg: CFG, loop: Loop, trips, level: int = 0) -> Mix:
    """The loop's own instructions once, plus each nested loop's mix × its trips (recursively).
    trips: one count for every level, or a sequence of counts by nesting level below `loop`."""
    mix = Mix()
    for x in cfg.own_instructions(loop):
        mix.add(x)
    for child in loop.children:
        mix.merge(loop_mix(cfg, child, trips, level + 1), _trips_at(trips, level + 1))
    return mix


def kernel_mix(cfg: CFG, trips) -> Mix:
    """The whole kernel per thread: code outside loops once, each outermost loop's mix × its trips."""
    in_loops = set().union(*(L.blocks for L in cfg.loops)) if cfg.loops else set()
    mix = Mix()
    for n in sorted(cfg.reachable - in_loops):
        for x in cfg.blocks[n].instructions:
            mix.add(x)
    for L in cfg.loops:
        mix.merge(loop_mix(cfg, L, trips, 1), _trips_at(trips, 1))
    return mix


def function_mix(func: Function) -> Mix:
    """Every instruction of the function's reachable code once (no weighting)."""
    cfg = CFG(func)
    mix = Mix()
    for n in sorted(cfg.reachable):
        for x in cfg.blocks[n].instructions:
            mix.add(x)
    return mix


HOT_RULES = ("fma_inner", "fma_outer", "outer", "inner", "kernel")


def _fmas(cfg: CFG, loop: Loop) -> float:
    return loop_mix(cfg, loop, 1).fma_count(FMA_OPCODES)


def _reads_global(cfg: CFG, loop: Loop) -> bool:
    mix = loop_mix(cfg, loop, 1)
    return bool(mix.loads("global") or mix.loads("generic"))


def hot_loop(cfg: CFG, rule: str) -> Loop | None:
    """The hot loop by `rule` (see the module docstring); None when there is none to choose (no loop;
    for the FMA rules no loop with an FMA; always for "kernel", which measures the whole kernel)."""
    if rule not in HOT_RULES:
        raise ValueError(f"rule must be one of {HOT_RULES}, got {rule!r}")
    loops = cfg.all_loops()
    if not loops or rule == "kernel":
        return None
    if rule == "outer":
        reading = [L for L in cfg.loops if _reads_global(cfg, L)] or cfg.loops
        return max(reading, key=lambda L: loop_mix(cfg, L, 1).instructions)
    if rule == "inner":
        reading = [L for L in loops if _reads_global(cfg, L)]
        innermost = [L for L in reading if not any(c in reading for c in L.children)] or loops
        return max(innermost, key=lambda L: loop_mix(cfg, L, 1).instructions)
    with_fma = [L for L in loops if _fmas(cfg, L) > 0]
    if not with_fma:
        return None
    if rule == "fma_inner":
        innermost = [L for L in with_fma if not any(c in with_fma for c in L.children)]
        return max(innermost, key=lambda L: (_fmas(cfg, L), -L.depth))
    # outermost first; then most FMAs; then the fewest instructions (a kernel with a separate, checked
    # loop for its edge tiles is measured on its interior loop)
    return min(with_fma, key=lambda L: (L.depth, -_fmas(cfg, L), loop_mix(cfg, L, 1).instructions))


@dataclass
class HotLoop:
    rule: str
    found: bool                 # False: no loop matched the rule; the whole kernel (loops once) was measured
    depth: int                  # nesting depth of the loop (0: outermost)
    nested: int                 # loops inside it (each weighted by trips)
    trips: object
    mix: Mix


def analyse(func: Function, rule: str, trips=1.0) -> tuple[HotLoop, Mix]:
    """(the hot loop's measurements, the whole kernel's unweighted mix) for one kernel."""
    cfg = CFG(func)
    whole = Mix()
    for n in sorted(cfg.reachable):
        for x in cfg.blocks[n].instructions:
            whole.add(x)
    if rule == "kernel":
        return HotLoop(rule, True, 0, len(cfg.all_loops()), trips, kernel_mix(cfg, trips)), whole
    loop = hot_loop(cfg, rule)
    if loop is None:
        return HotLoop(rule, False, 0, len(cfg.all_loops()), trips, kernel_mix(cfg, 1)), whole
    nested = len([L for L in cfg.all_loops() if L.blocks < loop.blocks])
    return HotLoop(rule, True, loop.depth, nested, trips, loop_mix(cfg, loop, trips)), whole


def kernel_function(funcs: list[Function], name_hint: str | None = None) -> Function:
    """The kernel in a disassembly (the one section; or the one whose name contains name_hint)."""
    if name_hint:
        funcs = [f for f in funcs if name_hint in f.name] or funcs
    if len(funcs) != 1:
        raise ValueError(f"expected one kernel in the disassembly, found {[f.name for f in funcs]}")
    return funcs[0]
