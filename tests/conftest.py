"""Shared fixtures. Tests may read ../shared (Kodak, published curves) and skip with a reason where
it is absent; the product never depends on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("QVRF_SHARED", REPO.parent / "shared"))
KODAK = SHARED / "data" / "kodak"
PUBLISHED = SHARED / "data" / "published"


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    # The test models are narrow: one thread codes them ~10x faster than two on a busy 2-core
    # machine (thread start-up dominates tiny convolutions), and never oversubscribes it.
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def kodak_dir() -> Path:
    if not KODAK.is_dir():
        pytest.skip(f"Kodak images not found at {KODAK} (set QVRF_SHARED to the shared/ folder)")
    return KODAK


@pytest.fixture
def published_dir() -> Path:
    if not PUBLISHED.is_dir():
        pytest.skip(f"published RD files not found at {PUBLISHED} (set QVRF_SHARED)")
    return PUBLISHED
