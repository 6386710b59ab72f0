"""Distributed data-parallel training: one process per device under torchrun, the global batch split.

``torchrun --nproc-per-node N -m qvrf_bench train ...`` (or ``qvrf-bench train --nproc N``, which
launches it) runs the ordinary training loop in N processes: NCCL between GPUs, gloo between CPU
processes. What each piece does, and why:

- **Batch.** ``--batch-size`` is the *global* batch; rank r draws crops r*B/N .. (r+1)*B/N - 1 of
  it. Every crop has its own generator, seeded by (seed, step, crop index), and so does the training
  noise of every sample (models/qvrf.py ``per_sample_noise``): N processes train on exactly the
  batches and noise of one process, and the result does not depend on N beyond float rounding.
- **Rate point.** The method's point of a step comes from (seed, step) (``training_point``; QVRF's
  level draw: train/state.py), the same on every rank: the gains are one parameter and every rank
  must train the same level in a step, or the averaged gradient would mix levels with one lambda.
- **Gradients.** torch DistributedDataParallel averages the gradients of the method's ``"main"``
  parameter group. Every other trainable parameter is kept out of it and handled here: QVRF's gain
  vector (its gradient is averaged by hand, since in stage 1 it gets none, which DDP would wait for)
  and the entropy-bottleneck quantiles (the aux loss depends on no data, so every rank computes the
  same aux gradient; nothing to average).
- **Validation, logs, checkpoints.** Rank 0 validates and broadcasts the loss, so every rank's
  ReduceLROnPlateau steps alike; rank 0 alone writes logs and checkpoints (atomically). A resume
  reads ``last.pt`` on every rank. If one process dies, torchrun stops the others; rerunning the
  command resumes from the last checkpoint.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_environment() -> Dist:
    """The process group torchrun describes in RANK / WORLD_SIZE (a single process without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return Dist(int(os.environ.get("RANK", "0") or 0), world) if world > 1 else Dist()


def init(d: Dist, device: torch.device) -> None:
    import torch.distributed as dist

    if not d.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(d: Dist) -> None:
    import torch.distributed as dist

    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, device: torch.device, ignored: Sequence[nn.Parameter] = ()) -> nn.Module:
    """The module for the training forward: DDP under torchrun (``ignored`` kept out of its
    reduction), the module itself otherwise."""
    if not d.active:
        return model
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = {id(p) for p in ignored}
    names = [n for n, p in model.named_parameters() if id(p) in ids]
    with torch.no_grad():  # DDP broadcasts the others from rank 0; these too, so all ranks start equal
        for p in ignored:
            dist.broadcast(p.data, src=0)
    # DDP names a parameter "<module>.<name>": ".gain" for one of the root module.
    DDP._set_params_and_buffers_to_ignore_for_model(model, [n if "." in n else "." + n for n in names])
    # Buffers (CDF tables, scale tables) are not trained: no need to broadcast them every step.
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


def average_ignored_gradients(params: Sequence[nn.Parameter], d: Dist) -> None:
    """Average the gradients DDP does not reduce over the ranks (a gain vector's; the aux
    quantiles have none yet when this runs, and the same one on every rank after the aux loss)."""
    if not d.active:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(d.world)


def mean(values: Sequence[float], d: Dist, device: torch.device) -> list[float]:
    """Per-rank scalars averaged over ranks (each rank's loss is the mean over its equal share)."""
    if not d.active:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / d.world).tolist()


def broadcast(value: float, d: Dist, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank."""
    if not d.active:
        return float(value)
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()


def launch(train_argv: Sequence[str], nproc: int) -> int:
    """``torchrun --standalone --nproc-per-node nproc -m qvrf_bench train ARGV``; its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "qvrf_bench", "train", *train_argv]  # fmt: skip
    return subprocess.call(cmd)
