"""Data-parallel training on gpuconv's layers with PyTorch's DistributedDataParallel.

    torchrun --nproc-per-node=2 examples/ddp_train.py                   # CPU processes, gloo
    torchrun --nproc-per-node=4 examples/ddp_train.py --backend nccl    # one GPU per process

Every process holds a replica of a small CNN built from gpuconv.torch's Conv2d, MaxPool2d and
AvgPool2d, and trains it on its own shard of each global batch; DDP averages the gradients over the
processes (all-reduce) during backward, so every replica takes the step that one process training
on the whole batch would. With --check rank 0 also trains that single-process model on the full
batches and compares: losses and final parameters must agree to rounding (float64), and every
replica must hold rank 0's parameters exactly; else it exits 1.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import gpuconv.torch as gt


def make_model(device):
    """The same initial parameters in every process (DDP also broadcasts rank 0's at wrap time)."""
    torch.manual_seed(0)
    d = dict(device=device, dtype=torch.float64)
    return nn.Sequential(gt.Conv2d(1, 4, 3, padding=1, **d), nn.ReLU(), gt.MaxPool2d(2),      # 8×8 -> 4×4
                         gt.Conv2d(4, 6, 3, padding="same", activation="relu", **d),           # fused relu
                         gt.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 3, **d))          # -> 3 classes


def batches(steps, global_batch, device):
    """The global batches, identical in every process: (images (B, 1, 8, 8), labels (B,)) per step."""
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(global_batch, 1, 8, 8, dtype=torch.float64, generator=gen).to(device),
             torch.randint(0, 3, (global_batch,), generator=gen).to(device)) for _ in range(steps)]


def train(model, data, lr):
    """SGD on each (x, y); returns the losses (the mean over the batch the model saw)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for x, y in data:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()               # under DDP: gradients all-reduced (averaged) across processes here
        opt.step()
        losses.append(loss.detach())
    return losses


def check(model, losses, data, lr, device, rank):
    """Every replica holds rank 0's parameters exactly, and rank 0's match one process trained on the
    whole batches (to rounding: the reductions are summed in another order)."""
    for name, p in model.named_parameters():
        p0 = p.detach().clone()
        dist.broadcast(p0, 0)
        assert torch.equal(p, p0), f"replica's {name} differs from rank 0's"
    if rank == 0:
        single = make_model(device)
        torch.testing.assert_close(losses, torch.stack(train(single, data, lr)), rtol=1e-10, atol=1e-12,
                                   msg=lambda m: f"losses differ from single-process training: {m}")
        for (name, p), q in zip(model.named_parameters(), single.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12,
                                       msg=lambda m, name=name: f"{name} differs from single-process training: {m}")
        print("rank 0: DDP matches single-process training on the global batch")
    print(f"rank {rank}: replica identical to rank 0's")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("gloo", "nccl"), default="gloo",
                    help="gloo: CPU tensors; nccl: CUDA tensors, one GPU per process")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--per-process-batch", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--check", action="store_true", help="compare with single-process training on the full batches")
    args = ap.parse_args(argv)

    dist.init_process_group(args.backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    b = args.per_process_batch
    data = batches(args.steps, b * world, device)
    shard = [(x[rank * b:(rank + 1) * b], y[rank * b:(rank + 1) * b]) for x, y in data]

    ddp = DistributedDataParallel(make_model(device), device_ids=[device.index] if device.type == "cuda" else None)
    losses = torch.stack(train(ddp, shard, args.lr))
    dist.all_reduce(losses)           # equal shards: the global batch's mean loss is the mean of the shards'
    losses /= world
    if rank == 0:
        print(f"DDP over {world} processes ({args.backend}, {device.type}): losses "
              + " ".join(f"{v:.6f}" for v in losses.tolist()))

    failed = 0
    if args.check:
        try:
            check(ddp.module, losses, data, args.lr, device, rank)
        except AssertionError as e:
            print(f"rank {rank}: {e}")
            failed = 1
    dist.destroy_process_group()
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
