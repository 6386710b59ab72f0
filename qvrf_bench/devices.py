"""``--device auto|cpu|cuda[:i]``: the one place that turns a device name into a torch device."""

from __future__ import annotations

import torch

from qvrf_bench.errors import QVRFError


def resolve_device(name: str) -> torch.device:
    """``auto``: the current CUDA device when torch sees one, else the CPU (never a fixed index, unlike
    the official train.py's hard-coded CUDA_VISIBLE_DEVICES). Asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise QVRFError("--device cuda asked for, but torch sees no CUDA device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise QVRFError(f"unknown device {name!r} (use auto, cpu or cuda[:i])") from None
