"""The static kernel report's plumbing: ptxas's wording, the committed report's shape, and the specs."""

import json
import os

from gpuconv import kernel_report, sass
from gpuconv.kernel_specs import kernel_specs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parses_ptxas_wording():
    text = ("ptxas info    : Function properties for k\n"
            "    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n"
            "ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]\n")
    assert kernel_report._ptxas_figures(text) == dict(registers=40, smem=2048, stack=8, spill_stores=12,
                                                       spill_loads=16)


def test_every_dispatched_kernel_has_a_committed_threshold_and_report_row():
    """The committed report and thresholds cover exactly the kernels that kernel_specs lists (CI regenerates
    both from the machine code and fails on any difference)."""
    with open(os.path.join(ROOT, "bench", "static", "thresholds.json")) as f:
        thresholds = json.load(f)
    with open(os.path.join(ROOT, "bench", "static", "sm_90.json")) as f:
        committed = json.load(f)
    specs = kernel_specs()
    want = {f"{s.name}/{dt}" for s in specs if s.dispatched for dt in s.dtypes}
    assert set(thresholds["kernels"]) == want
    assert {f"{r['name']}/{r['dtype']}" for r in committed["kernels"]} == {f"{s.name}/{dt}" for s in specs
                                                                          for dt in s.dtypes}
    for s in specs:
        assert s.kind in ("compute", "memory") and s.hot in sass.HOT_RULES
        assert (s.bytes_per_iteration(4) > 0) == (s.kind == "memory"), s.name
