"""``--device auto|cpu|cuda[:i]``: the one place that turns a device name into a torch device."""

from __future__ import annotations

import os

import torch

from qvrf_bench.errors import QVRFError


def resolve_device(name: str) -> torch.device:
    """``auto``: the current CUDA device when torch sees one, else the CPU (never a fixed index, unlike
    the official train.py's hard-coded CUDA_VISIBLE_DEVICES; under torchrun on a multi-GPU node,
    ``cuda:LOCAL_RANK``). Asking for CUDA without one is an error."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        # torchrun / a multi-GPU node: one GPU per local process (LOCAL_RANK), as DDP does
        local = os.environ.get("LOCAL_RANK")
        if local is not None and local.isdigit() and torch.cuda.device_count() > 1:
            return torch.device(f"cuda:{int(local) % torch.cuda.device_count()}")
        return torch.device("cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise QVRFError("--device cuda asked for, but torch sees no CUDA device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise QVRFError(f"unknown device {name!r} (use auto, cpu or cuda[:i])") from None


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously): timings end here."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
