"""Fixtures for the training tests: a tiny photo folder (with broken files) and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _photos(folder: Path, broken: bool) -> Path:
    import skimage.data as data

    folder.mkdir(parents=True, exist_ok=True)
    # Real photos, shrunk: decoding stays cheap and the crops still have structure to learn.
    for name, size in (("astronaut", (96, 96)), ("coffee", (120, 80)), ("chelsea", (100, 76)),
                       ("rocket", (128, 72))):  # fmt: skip
        Image.fromarray(getattr(data, name)()).resize(size).save(folder / f"{name}.png")
    sub = folder / "more"
    sub.mkdir(exist_ok=True)
    Image.fromarray(data.camera()).resize((48, 40)).save(sub / "small_gray.jpg")  # smaller than a 64 crop
    if broken:
        (folder / "text.png").write_text("this is not an image")
        (folder / "empty.png").write_bytes(b"")
        good = (folder / "coffee.png").read_bytes()
        (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    return folder


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """Five readable images (one grayscale JPEG smaller than the crop) and three broken files."""
    return _photos(tmp_path_factory.mktemp("photos"), broken=True)


@pytest.fixture(scope="session")
def clean_photos(tmp_path_factory) -> Path:
    return _photos(tmp_path_factory.mktemp("clean"), broken=False)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: one thread is faster than two fighting over a shared 2-core machine.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny(tmp_path, clean_photos):
    """A factory of tiny, quiet TrainConfigs writing under tmp_path."""
    from qvrf_bench.train import TrainConfig

    def make(**kw) -> TrainConfig:
        base = dict(arch="balle", kind="qvrf", stage=2, dataset=str(clean_photos), out=str(tmp_path / "run"),
                    N=8, M=8, patch_size=64, batch_size=2, test_batch_size=4, max_val_images=2, steps=2,
                    val_every=2, save_every=2, progress=False, device="cpu", seed=7)  # fmt: skip
        base.update(kw)
        return TrainConfig(**base)

    return make


def rgb_noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
