"""gpuconv.torch under DistributedDataParallel: examples/ddp_train.py run by torchrun with two processes.

Each process trains on its half of every global batch; the example's --check has rank 0 also train one
model on the whole batches and compare losses and parameters, and every replica compare its parameters
with rank 0's. On the CPU (gloo) the layers
run through the host path (the CUDA simulator without a GPU); with CUDA and NCCL, on the GPU.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

from conftest import ON_GPU  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"


def torchrun(nproc, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(EXAMPLE),
           "--check", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_process_gloo_training_matches_single_process():
    run = torchrun(2)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "DDP over 2 processes (gloo, cpu)" in out
    assert "rank 0: DDP matches single-process training on the global batch" in out, out
    for rank in (0, 1):
        assert f"rank {rank}: replica identical to rank 0's" in out, out


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU or not torch.cuda.is_available() or not dist.is_nccl_available(),
                    reason="needs CUDA devices and NCCL")
def test_nccl_training_on_cuda_tensors_matches_single_process():  # pragma: no cover - needs a CUDA device
    nproc = min(2, torch.cuda.device_count())      # NCCL wants one device per process
    run = torchrun(nproc, "--backend", "nccl")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert f"DDP over {nproc} processes (nccl, cuda)" in out
    assert "rank 0: DDP matches single-process training on the global batch" in out, out
    for rank in range(nproc):
        assert f"rank {rank}: replica identical to rank 0's" in out, out
