"""Helpers shared by test modules (importable as ``helpers``: pyproject puts tests/ on the path)."""

from __future__ import annotations

import torch

from qvrf_bench.models import create, prepare_for_coding

# Narrow test models: (N, M) per architecture (cheng2020 has one width).
WIDTHS = {"balle": (8, 12), "minnen-mean": (8, 12), "minnen": (8, 12), "cheng2020": (12, 12)}


def small_model(arch: str, kind: str = "qvrf", *, seed: int = 0, coding: bool = True, **kw):
    """A narrow model with weights from ``seed``; a fixed one is the lambda 0.0483 model unless told;
    ``coding`` prepares it for real bitstreams (CDF tables)."""
    torch.manual_seed(seed)
    N, M = WIDTHS[arch]
    if kind == "fixed":
        kw.setdefault("lmbda", 0.0483)
    model = create(arch, kind, N=N, M=M, **kw)
    return prepare_for_coding(model) if coding else model
