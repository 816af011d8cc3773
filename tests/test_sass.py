"""The offline model: the SASS reader on hand-written machine code, the analyser on hand-made kernels
compiled for sm_90 (no GPU: NVVM, ptxas and nvdisasm only), the ceilings' arithmetic, and the CI ratchet
on a kernel made worse on purpose."""

import json
import os
import subprocess
import sys

import pytest

from gpuconv import kernel_report, perf_model, sass

HERE = os.path.dirname(os.path.abspath(__file__))

# A kernel with an outer loop (.L_x_0 .. 0x70) holding an inner one (.L_x_1 .. 0x40), a 64-bit division
# call in the outer body, and the division routine after EXIT (reached only by CALL).
SYNTHETIC = """
//--------------------- .text.k --------------------------
        .section        .text.k,"ax",@progbits
k:
.text.k:
        /*0000*/                   LDC R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   FFMA R2, R3, R4, R2 ;
.L_x_1:
        /*0020*/                   LDS.128 R4, [R5] ;
        /*0030*/                   HFMA2.MMA R6, -RZ, RZ, 0, 0 ;
        /*0040*/               @P0 BRA `(.L_x_1) ;
        /*0050*/                   LDG.E.64 R8, desc[UR4][R2.64] ;
        /*0060*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;
        /*0070*/               @P1 BRA `(.L_x_0) ;
        /*0080*/                   EXIT ;
        .type           $__internal_0_$__cuda_sm20_div_s64,@function
$__internal_0_$__cuda_sm20_div_s64:
        /*0090*/                   IADD3 R1, R1, R1, RZ ;
        /*00a0*/                   RET.REL.NODEC R16 `(k) ;
"""


def synthetic():
    return sass.kernel_function(sass.parse(SYNTHETIC))


def test_parses_instructions_predicates_and_labels():
    f = synthetic()
    assert f.name == "k" and len(f.instructions) == 11
    bra = f.instructions[4]
    assert (bra.predicate, bra.base, bra.target, bra.is_branch, bra.ends_flow) == ("P0", "BRA", ".L_x_1", True, False)
    assert f.instructions[8].ends_flow and f.labels[".L_x_1"] == 0x20
    assert f.instructions[6].is_div64 and f.instructions[6].callee == "$__internal_0_$__cuda_sm20_div_s64"


def test_classifies_fma_and_memory_widths():
    ins = {x.address: x for x in synthetic().instructions}
    assert ins[0x10].fma_class == "FFMA"
    assert ins[0x30].fma_class is None                       # the move-immediate idiom is not math
    assert ins[0x20].memory == ("shared", "load", 128)
    assert ins[0x50].memory == ("global", "load", 64)
    assert ins[0x00].memory == ("constant", "load", 32)
    assert sass.parse_instruction(0, "LD.E.U8 R1, [R2.64]").memory == ("generic", "load", 8)
    assert sass.parse_instruction(0, "STL [R1], R2").memory == ("local", "store", 32)
    assert sass.parse_instruction(0, "HFMA2 R1, R2, R3, R4").fma_class == "HFMA2"


def test_loops_nest_and_weight_by_trips():
    cfg = sass.CFG(synthetic())
    (outer,) = cfg.loops
    (inner,) = outer.children
    assert inner.depth == 1 and inner.blocks < outer.blocks
    mix = sass.loop_mix(cfg, outer, trips=3)
    assert mix.instructions == 4 + 3 * 3                     # FFMA, LDG, CALL, BRA + 3 × (LDS, HFMA2, BRA)
    assert mix.fma["FFMA"] == 1 and mix.loads("shared") == {128: 3} and mix.loads("global") == {64: 1}
    assert mix.division_sites == 1 and mix.calls == 1
    assert sass.loop_mix(cfg, outer, trips=(3, 5)).instructions == 13     # one count per level below
    assert sass.kernel_mix(cfg, 2).instructions == 2 + 2 * (4 + 2 * 3)   # LDC, EXIT + loops × trips


def test_hot_loop_rules():
    f = synthetic()
    for rule in ("fma_inner", "fma_outer", "outer"):           # the inner loop has no FMA and no global load
        hot, whole = sass.analyse(f, rule, trips=2)
        assert hot.found and hot.depth == 0 and hot.nested == 1 and hot.mix.instructions == 4 + 2 * 3
    assert whole.instructions == 9                            # the division routine is not kernel code
    hot, _ = sass.analyse(f, "kernel", trips=1)
    assert hot.mix.instructions == 9
    with pytest.raises(ValueError, match="rule"):
        sass.analyse(f, "hottest")


def test_ceilings_and_occupancy_arithmetic():
    h200, a100 = perf_model.TARGETS["H200"], perf_model.TARGETS["A100"]
    assert h200.instructions_per_byte == pytest.approx(132 * 128 * 1.98e9 / 4.8e12)     # ≈ 7
    assert perf_model.compute_ceiling(0.34, "fp32", h200) == pytest.approx(0.34)
    assert perf_model.compute_ceiling(0.34, "fp64", h200) == pytest.approx(0.68)         # half-rate FP64
    assert perf_model.compute_ceiling(0.34, "fp32", a100) == pytest.approx(0.68)         # 64 FP32 lanes per SM
    assert perf_model.compute_ceiling(0.8, "fp64", h200) == 1.0
    assert perf_model.memory_ceiling(7 * 8, 8, h200) == pytest.approx(h200.instructions_per_byte / 7)
    # 230 registers: 7424 per warp -> 8 warps -> one 256-thread block; 127 -> 128 -> 16 warps, 2 blocks
    assert perf_model.occupancy(230, 256, 17 * 1024, h200) == perf_model.Occupancy(1, 8, "registers")
    assert perf_model.occupancy(127, 256, 17 * 1024, h200) == perf_model.Occupancy(2, 16, "registers")
    assert perf_model.occupancy(32, 128, 100 * 1024, h200).limit == "shared memory"
    assert perf_model.occupancy(16, 256, 0, h200) == perf_model.Occupancy(8, 64, "warps")


def _row(**kw):
    base = dict(name="k", dtype="float32", arch="sm_90", dispatched=True, kind="compute", threads=256,
                registers=64, smem=0, dynamic_smem=0, stack=0, spill_stores=0, spill_loads=0, warps_per_sm=32,
                fma_share=0.5, hot_div64=0)
    base.update(kw)
    return kernel_report.Row(**base)


def test_ratchet_catches_each_kind_of_regression():
    thresholds = kernel_report.lock([_row(), _row(name="m", kind="memory", instructions_per_byte=3.0)])
    assert kernel_report.check([_row(), _row(name="m", kind="memory", instructions_per_byte=3.0)], thresholds) == []
    worse = [_row(warps_per_sm=16, fma_share=0.4, hot_div64=2, stack=8, local_accesses=3),
             _row(name="m", kind="memory", instructions_per_byte=3.5)]
    problems = "\n".join(kernel_report.check(worse, thresholds))
    for word in ("occupancy", "FMA share", "division", "stack", "local-memory", "instructions per byte"):
        assert word in problems
    assert "no threshold" in "".join(kernel_report.check([_row(), _row(name="new")], dict(thresholds, kernels={
        "k/float32": thresholds["kernels"]["k/float32"]})))
    assert "not measured" in "".join(kernel_report.check([_row()], thresholds))
    assert kernel_report.check([_row()], thresholds, partial=True) == []


@pytest.fixture(scope="module")
def probe():
    """Every hand-made kernel of tests/sass_probe.py, compiled and measured in a child process."""
    if kernel_report.find_tool("ptxas") is None or kernel_report.find_tool("nvdisasm") is None:
        pytest.skip("no ptxas/nvdisasm (install the dev extra)")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "sass_probe.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_fma_chain(probe):
    r = probe["fma_chain"]
    ffma = r["fma"]["FFMA"]
    assert ffma >= 8 and ffma % 8 == 0                        # 8 per source iteration (NVVM may unroll by 4)
    assert r["fma_share"] > 0.5 and not r["global_loads"] and not r["shared_loads"] and r["hot_div64"] == 0


def test_division_sites(probe):
    r = probe["div_loop"]
    assert r["hot_div64"] >= 1 and r["hot_div64"] == sum(r["global_loads"].values())   # one per element
    assert probe["div_free"]["hot_div64"] == 0


def test_vector_and_generic_loads(probe):
    assert probe["vector_global"]["global_loads"] == {"128": 1}
    assert probe["vector_shared"]["shared_loads"] == {"128": 1}
    g = probe["generic_load"]
    assert g["generic_loads"] == {"32": 4} and not g["global_loads"]


def test_local_memory(probe):
    r = probe["local_array"]
    assert r["stack"] > 0 and r["local_accesses"] > 0


def test_ratchet_fails_a_worse_build_of_a_dispatched_kernel(probe):
    assert probe["_check"]["good"] == []
    assert any("division" in p for p in probe["_check"]["worse"])


def test_cli_checks_one_kernel_against_the_committed_thresholds():
    if kernel_report.find_tool("ptxas") is None or kernel_report.find_tool("nvdisasm") is None:
        pytest.skip("no ptxas/nvdisasm (install the dev extra)")
    root = os.path.dirname(HERE)
    # two kernels in two worker processes: the parallel report path, rows checked against the thresholds
    proc = subprocess.run([sys.executable, "-m", "gpuconv.cli", "kernels", "--arch", "sm_90", "--only", "activation",
                           "fill", "--jobs", "2", "--quiet", "--check",
                           os.path.join(root, "bench", "static", "thresholds.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no regressions" in proc.stdout
