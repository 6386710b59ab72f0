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


def tiny_recipe():
    """A zoo recipe in miniature (N=M=8, a few steps): a base, two anchors and an 8-level model,
    shipped under the names the pipeline looks for."""
    from qvrf_bench.train import zoo as zoo_train

    common = ["--arch", "balle", "--dataset", "{DATA}", "--channels", "8,8", "--patch-size", "64",
              "--batch-size", "2", "--test-batch-size", "2", "--max-val-images", "2", "--val-every", "2",
              "--threads", "1", "--no-progress"]  # fmt: skip
    base = "{RUNS}/balle-base/final.pt"
    return [
        zoo_train.Step("balle-base", ["--kind", "fixed", "--lambda", "0.18", "--steps", "3", "--out", "{RUNS}/balle-base",
                                *common], budget="tiny base"),  # fmt: skip
        *(zoo_train.Step(f"balle-fixed-l{lm}", ["--kind", "fixed", "--lambda", lm, "--steps", "2", "--init-from", base,
                                          "--out", f"{{RUNS}}/balle-fixed-l{lm}", *common],
                   after="balle-base", ships=f"balle-fixed-l{lm}", budget="tiny anchor") for lm in ("0.0018", "0.18")),
        zoo_train.Step("balle-qvrf8-s2", ["--kind", "qvrf", "--stage", "2", "--steps", "2", "--init-from", base, "--out",
                                    "{RUNS}/balle-qvrf8-s2", *common],
                 after="balle-base", ships="balle-qvrf8", budget="tiny qvrf"),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """(photos, runs, zoo folder, recipe): the tiny recipe trained by `zoo train` and packed."""
    import skimage.data
    from PIL import Image

    from qvrf_bench.train import zoo as zoo_train

    root = tmp_path_factory.mktemp("tiny-zoo")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).resize((96, 80)).save(photos / f"{name}.png")
    runs, dest = root / "runs", root / "zoo"
    logs: list[str] = []
    recipe = tiny_recipe()
    assert zoo_train.train_zoo(photos, runs, jobs=2, steps=recipe, log=logs.append) == 0, logs
    zoo_train.pack(photos, runs, dest, steps=recipe, log=logs.append)
    return photos, runs, dest, recipe
