"""The static kernel report: kernels compile to PTX without a GPU and ptxas's figures are parsed."""

import subprocess
import sys

import pytest

from gpuconv import kernel_report


def test_parses_ptxas_wording():
    text = ("ptxas info    : Function properties for k\n"
            "    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n"
            "ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 400 bytes cmem[0]\n")
    props, used = kernel_report._PROPS.search(text), kernel_report._USED.search(text)
    assert props.groups() == ("8", "12", "16") and used.groups() == ("40", "2048")


@pytest.mark.skipif(kernel_report.find_ptxas() is None, reason="no ptxas (install the cu13 extra)")
def test_report_compiles_every_kernel_without_a_gpu():
    """Run in a child process with the simulator off: compile_ptx needs NVVM only, no device."""
    code = ("import numpy as np; from gpuconv import kernel_report as k; "
            "rows = k.report(['sm_90'], dtypes=(np.float32,)); "
            "print('\\n'.join(k.format_row(r) for r in rows))")
    env = {"GPUCONV_SIMULATOR": "0", "NUMBA_ENABLE_CUDASIM": "0"}
    import os
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert {ln.split()[0] for ln in lines} == {s.name for s in kernel_report.kernel_specs()}
    for ln in lines:
        assert "registers" in ln and "bytes spill stores" in ln and "bytes spill loads" in ln
