"""The offline performance model: occupancy from registers and shared memory, and an issue-bound
ceiling from a hot loop's instruction mix (gpuconv.sass). Every assumption is in this module.

Assumptions
- One warp instruction issues per clock per SM sub-partition (4 per SM on sm_80 and sm_90; no dual
  issue). A thread-instruction is one lane of it, so an SM issues 4·32 = 128 thread-instructions per
  clock, and a GPU `sms · 128 · clock` per second.
- Compute kernels: a multiply-add is the useful work. A sub-partition's FP32 (FP64) lanes finish one
  warp FFMA (DFMA) every 32 / lanes clocks, so with a fraction f of the hot loop's issue slots being
  FMAs the kernel reaches at most min(1, f · 128 / lanes_per_sm) of that precision's peak. On H100 and
  H200 (128 FP32 and 64 FP64 lanes per SM) that is f for float32 and min(1, 2f) for float64; on A100
  (64 and 32), min(1, 2f) and min(1, 4f).
- Tensor-core kernels: one warp-level mma (HMMA m16n8k16, 4096 flops; TF32 m16n8k8, 2048 at half the
  rate) per `mma_clocks` clocks per sub-partition at the tensor peak; the ceiling is min(1, f ·
  mma_clocks) for an mma share f. Shared-memory bandwidth (ldmatrix) is not modelled: with mma.sync a
  64×32 warp tile reads about 0.05 byte of shared memory per flop, more than an H100 SM delivers at
  its dense peak, so the issue-bound ceiling is optimistic there.
- Memory kernels: each hot-loop iteration moves the bytes its spec states (DRAM traffic of the
  standard case: unique bytes read and written, divided by iterations). With I instructions per
  iteration, the kernel issues I / bytes thread-instructions per byte; the GPU affords
  issue_rate / bandwidth of them per byte at full bandwidth, so the ceiling is
  min(1, (issue_rate / bandwidth) / (I / bytes)) of HBM bandwidth.
- Occupancy: registers are allocated per warp in units of 256 (a thread's count rounded up to a
  multiple of 8), from 65,536 per SM; each block takes its static + dynamic shared memory plus 1 KiB
  the system reserves, from the SM's shared memory; at most 32 blocks and 64 warps (2048 threads) per
  SM. The model reports occupancy; the ceilings above assume enough warps to hide latency, so read
  them together (fewer than 8 warps per SM rarely keeps the pipes fed).
- Static counts over-state instructions on paths not taken (see gpuconv.sass): the ceilings are
  estimates from the machine code, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

THREAD_ISSUE_PER_SM_CLOCK = 128          # 4 sub-partitions × 32 lanes
REG_FILE = 65536
REG_ALLOC_UNIT = 256                     # registers per warp are allocated in these units
MAX_WARPS = 64
MAX_BLOCKS = 32
SMEM_RESERVED_PER_BLOCK = 1024


@dataclass(frozen=True)
class Target:
    """A GPU the model reports ceilings for (public data-sheet figures, boost clock)."""

    name: str
    arch: str
    sms: int
    clock_ghz: float
    hbm_tb_s: float
    fp32_lanes_per_sm: int
    fp64_lanes_per_sm: int
    smem_per_sm: int                     # bytes a kernel's blocks may share on one SM
    mma_clocks: float                    # clocks per warp m16n8k16 HMMA per sub-partition at tensor peak

    @property
    def issue_rate(self) -> float:
        """Thread-instructions per second."""
        return self.sms * THREAD_ISSUE_PER_SM_CLOCK * self.clock_ghz * 1e9

    @property
    def instructions_per_byte(self) -> float:
        """Thread-instructions the GPU can issue per byte at full HBM bandwidth (the break-even)."""
        return self.issue_rate / (self.hbm_tb_s * 1e12)

    def fp_peak_tflops(self, precision: str) -> float:
        lanes = self.fp32_lanes_per_sm if precision == "fp32" else self.fp64_lanes_per_sm
        return self.sms * lanes * 2 * self.clock_ghz / 1e3


# H100 SXM5 and H200 SXM: 132 SMs at 1.98 GHz, 128 FP32 / 64 FP64 lanes per SM (67 / 34 TFLOP/s),
# 228 KiB shared memory per SM, FP16 dense tensor peak ≈ 990 TFLOP/s: 3784 flop per clock per SM, so one
# HMMA.16816 (4096 flop) per 4.3 clocks per sub-partition (TF32: half the rate, one HMMA.1688 of 2048
# flop per 4.3 clocks too); HBM3 3.35 TB/s and HBM3e 4.8 TB/s. A100 SXM 80 GB: 108 SMs at 1.41 GHz,
# 64 / 32 lanes, 164 KiB, FP16 tensor 312 TFLOP/s: 2048 flop per clock per SM, one HMMA.16816 per 8
# clocks per sub-partition; 2.04 TB/s.
TARGETS = {
    "H100": Target("H100", "sm_90", 132, 1.98, 3.35, 128, 64, 228 * 1024, 4.3),
    "H200": Target("H200", "sm_90", 132, 1.98, 4.8, 128, 64, 228 * 1024, 4.3),
    "A100": Target("A100", "sm_80", 108, 1.41, 2.04, 64, 32, 164 * 1024, 8.0),
}


def targets_for(arch: str) -> list[Target]:
    return [t for t in TARGETS.values() if t.arch == arch]


@dataclass(frozen=True)
class Occupancy:
    blocks: int                          # resident blocks per SM
    warps: int                           # resident warps per SM
    limit: str                           # what bounds it: "registers", "shared memory", "warps", "blocks"


def occupancy(registers: int, threads_per_block: int, smem_per_block: int, target: Target) -> Occupancy:
    """Resident blocks and warps per SM of a kernel (see the module docstring for the rules)."""
    warps_per_block = -(-threads_per_block // 32)
    regs_per_warp = -(-max(registers, 1) * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by = {
        "registers": (REG_FILE // regs_per_warp) // warps_per_block,
        "shared memory": target.smem_per_sm // (smem_per_block + SMEM_RESERVED_PER_BLOCK),
        "warps": MAX_WARPS // warps_per_block,
        "blocks": MAX_BLOCKS,
    }
    limit = min(by, key=by.get)
    blocks = by[limit]
    return Occupancy(blocks, blocks * warps_per_block, limit)


def compute_ceiling(fma_share: float, precision: str, target: Target) -> float:
    """Fraction of the precision's FMA peak the issue rate allows (see the module docstring)."""
    if precision == "tensor":
        return min(1.0, fma_share * target.mma_clocks)
    lanes = target.fp32_lanes_per_sm if precision == "fp32" else target.fp64_lanes_per_sm
    return min(1.0, fma_share * THREAD_ISSUE_PER_SM_CLOCK / lanes)


def memory_ceiling(instructions_per_iteration: float, bytes_per_iteration: float, target: Target) -> float:
    """Fraction of HBM bandwidth the issue rate allows a memory-bound kernel."""
    if instructions_per_iteration <= 0:
        return 1.0
    return min(1.0, target.instructions_per_byte * bytes_per_iteration / instructions_per_iteration)
