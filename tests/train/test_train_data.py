"""Training data: scanning, broken files, splits, crops, padding, caching, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qvrf_bench.errors import QVRFError
from qvrf_bench.train import data as D


class Log(list):
    def __call__(self, msg: str, once: bool = False) -> None:
        if not (once and msg in self):
            self.append(msg)


def test_broken_files_are_skipped_and_named(photos):
    log = Log()
    pool = D.scan(D.find_images(photos), log)
    names = {p.name for p in pool.paths}
    assert {"text.png", "empty.png"}.isdisjoint(names)
    assert "truncated.png" in names  # its header is fine: caught when decoded
    pool.decode_all(log)
    assert {p.name for p in pool.paths} == {"astronaut.png", "coffee.png", "chelsea.png", "rocket.png",
                                            "small_gray.jpg"}  # fmt: skip
    text = "\n".join(log)
    for name, why in (("text.png", "not a readable image"), ("empty.png", "empty file"),
                      ("truncated.png", "truncated")):  # fmt: skip
        assert any(name in m and why in m for m in log), text
    assert len(pool.skipped) == 3


def test_on_demand_loading_skips_a_truncated_file(photos):
    log = Log()
    pool = D.scan(D.find_images(photos), log)  # not decoded: the truncated file is found at first use
    images = D.TrainImages(pool, batch_size=len(pool.paths), patch_size=64, seed=0, pad_mode="reflect", log=log)
    batch, notes = images[0]
    assert batch.shape == (len(pool.paths), 3, 64, 64)
    assert any("truncated.png" in n for n in notes)
    assert any("smaller than 64x64" in m for m in log)


def test_no_readable_image_is_an_error(tmp_path):
    (tmp_path / "a.png").write_text("nope")
    log = Log()
    pool = D.scan(D.find_images(tmp_path), log)
    with pytest.raises(QVRFError, match="could be read"):
        D.split_train_val(pool, 0.1, 0, log)
    with pytest.raises(QVRFError, match="not a directory"):
        D.find_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QVRFError, match="no image files"):
        D.find_images(tmp_path / "empty")


def test_split_is_seeded_and_disjoint(clean_photos):
    pool = D.scan(D.find_images(clean_photos), Log())
    tr1, va1 = D.split_train_val(pool, 0.4, 3, Log())
    tr2, va2 = D.split_train_val(pool, 0.4, 3, Log())
    assert tr1.paths == tr2.paths and va1.paths == va2.paths
    assert len(va1.paths) == 2 and not set(tr1.paths) & set(va1.paths)
    log = Log()
    kept = D.exclude(pool, va1.paths, log)
    assert set(kept.paths) == set(tr1.paths) and "left out of training" in log[0]


def test_padding_and_crops():
    small = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    for mode in ("reflect", "zero"):
        out = D.pad_to(small, 8, mode)
        assert out.shape == (8, 8, 3)
        assert np.array_equal(out[:2, :3], small)
    assert D.pad_to(np.ones((1, 1, 3), np.uint8), 4).shape == (4, 4, 3)  # a single pixel
    assert np.all(D.pad_to(small, 8, "zero")[2:] == 0)
    img = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    c = D.center_crop(img, 64, "reflect")
    assert np.array_equal(c, img[3:67, 13:77])
    rng = np.random.default_rng(1)
    assert D.random_crop(img, 64, rng, "reflect").shape == (64, 64, 3)


def test_batches_depend_only_on_seed_and_step(clean_photos):
    pool = D.scan(D.find_images(clean_photos), Log())
    pool.decode_all(Log())
    a = D.TrainImages(pool, 3, 64, seed=5, pad_mode="reflect", log=Log())
    b = D.TrainImages(pool, 3, 64, seed=5, pad_mode="reflect", log=Log())
    assert torch.equal(a[7][0], b[7][0])
    assert not torch.equal(a[7][0], a[8][0])
    loaded = [x for x, _ in D.batch_loader(a, 6, 9, workers=0, seed=5)]
    assert len(loaded) == 3 and torch.equal(loaded[1], a[7][0])
    assert a[0][0].dtype == torch.float32 and 0 <= float(a[0][0].min()) and float(a[0][0].max()) <= 1


def test_cache_decision(clean_photos):
    pool = D.scan(D.find_images(clean_photos), Log())
    assert D.decide_cache("auto", pool, 1)
    assert not D.decide_cache("off", pool, 10_000)
    big = D.ImageList(pool.paths, [(20_000, 20_000)] * len(pool.paths))
    assert not D.decide_cache("auto", big, 2048) and D.decide_cache("on", big, 1)


def test_validation_crops(clean_photos):
    pool = D.scan(D.find_images(clean_photos), Log())
    crops = D.validation_crops(pool, 64, "reflect", 3, Log())
    assert crops.shape == (3, 3, 64, 64) and crops.dtype == torch.uint8
