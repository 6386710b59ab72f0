"""The example method end to end on a tiny model: it starts exactly at QVRF's rate points, trains and
resumes through ``qvrf-bench train --method``, and is swept and compared through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, small_model
from PIL import Image

from qvrf_bench.bitstream import container
from qvrf_bench.methods import make
from qvrf_bench.methods.engine import MethodEngine
from qvrf_bench.models.checkpoints import save_checkpoint

SPEC = f"{Path(__file__).with_name('channel_gain.py')}:make"


def _images(folder: Path, n: int, size=(96, 80)) -> Path:
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(n):  # smooth images: a codec has something to learn
        base = g.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(base).resize(size, Image.BILINEAR).save(folder / f"{i}.png")
    return folder


def test_it_starts_at_qvrf_and_codes_in_batches_as_alone(tmp_path):
    save_checkpoint(tmp_path / "q.pt", small_model("balle"))
    cg, q = make(f"{SPEC}={tmp_path / 'q.pt'}"), make(f"qvrf={tmp_path / 'q.pt'}")
    rgb = np.asarray(Image.open(_images(tmp_path / "i", 1) / "0.png"))
    pts = cg.rate_points() + [cg.continuous_point(v) for v in cg.continuous_values()[:4]]
    fast = MethodEngine("fast").run_image(cg, rgb, pts, cg.fingerprint())
    serial = MethodEngine("serial").run_image(cg, rgb, pts, cg.fingerprint())
    assert all(f.data == s.data and f.decode_ok for f, s in zip(fast, serial, strict=True))
    ref = MethodEngine("fast").run_image(q, rgb, q.rate_points(), q.fingerprint())
    for a, b in zip(fast, ref, strict=False):  # every channel at its level's QVRF gain: QVRF's strings
        assert container.unpack_method(a.data)[1] == container.unpack_method(b.data)[1]
    rates = [r.payload_bytes for r in fast[:8]]
    assert rates == sorted(rates) and rates[0] < rates[-1]
    # the rate search finds the interpolation position t that meets a rate between two levels
    from qvrf_bench.sweep.ratecontrol import Target, method_to_target

    bpp = 8 * (len(fast[5].data) + len(fast[6].data)) / 2 / (rgb.shape[0] * rgb.shape[1])
    res, data, point = method_to_target(cg, rgb, Target("bpp", bpp))
    assert 5 <= point.value <= 6 and 8 * len(data) / (rgb.shape[0] * rgb.shape[1]) <= bpp


def test_train_resume_sweep_and_compare(tmp_path):
    from qvrf_bench.train.method import MethodTrainConfig, train_method

    save_checkpoint(tmp_path / "q.pt", small_model("balle"))
    for lm in (0.0018, 0.18):
        save_checkpoint(tmp_path / f"f{lm}.pt", small_model("balle", "fixed", lmbda=lm))
    data = _images(tmp_path / "train", 6)
    out = tmp_path / "run"
    args = ["train", "--method", f"{SPEC}={tmp_path / 'q.pt'}", "--dataset", data, "--out", out, "--steps", 6,
            "--batch-size", 2, "--patch-size", 64, "--val-every", 3, "--save-every", 2, "--log-every", 1,
            "--no-progress"]  # fmt: skip
    cfg = MethodTrainConfig(f"{SPEC}={tmp_path / 'q.pt'}", str(data), str(out), steps=6, batch_size=2, patch_size=64,
                            val_every=3, save_every=2, log_every=1, progress=False, max_steps=3)  # fmt: skip
    train_method(cfg)  # stops after step 3 (saved at 2)
    before = make(f"{SPEC}={out / 'last.pt'}").module.log_gain.detach().clone()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in (out / "events.log").read_text()
    steps = [int(line.split(",")[0]) for line in (out / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]
    trained = make(f"{SPEC}={out / 'final.pt'}")
    assert not torch.equal(trained.module.log_gain.detach(), before)  # the gain vectors train

    test = _images(tmp_path / "test", 2, (64, 64))
    r = run_cli("sweep", "--dataset", test, "--out", tmp_path / "sw", "--method", f"{SPEC}={out / 'final.pt'}",
                "-c", tmp_path / "q.pt", tmp_path / "f0.0018.pt", tmp_path / "f0.18.pt", "--factors", "none",
                "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    from qvrf_bench.results.store import ResultStore

    df = ResultStore(tmp_path / "sw").read()
    mine = df[df["kind"] == "variable"]
    assert len(mine) == 2 * (8 + 21) and mine["decode_ok"].all() and set(mine["decode_check"]) == {"latent"}
    # compare pairs the method with QVRF and with the run's anchors (untrained tiny models have too few
    # hull points for a BD number, so the pairs show up as skipped with that reason)
    r = run_cli("compare", tmp_path / "sw")
    text = r.stdout + r.stderr
    for anchor in ("balle-qvrf8-8x12", "run:fixed:balle"):
        assert any(trained.name in ln and anchor in ln for ln in text.splitlines()), text


@pytest.mark.slow
def test_it_trains_in_two_processes_as_in_one(tmp_path):
    """The one training loop serves a user's method under torchrun too: ``--nproc 2`` (gloo on the
    CPU) trains the same steps, with the global batch's losses equal to one process's."""
    import csv
    import json
    import os
    import subprocess
    import sys

    save_checkpoint(tmp_path / "q.pt", small_model("balle"))
    data = _images(tmp_path / "train", 6)
    logs = {}
    for nproc in (1, 2):
        out = tmp_path / f"np{nproc}"
        cmd = [sys.executable, "-m", "qvrf_bench", "train", "--method", f"{SPEC}={tmp_path / 'q.pt'}", "--dataset",
               str(data), "--out", str(out), "--steps", "4", "--batch-size", "4", "--patch-size", "64",
               "--val-every", "4", "--save-every", "4", "--log-every", "1", "--threads", "1", "--device", "cpu",
               "--no-progress", "--nproc", str(nproc)]  # fmt: skip
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(cmd, cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        with open(out / "train_log.csv", newline="") as f:
            logs[nproc] = list(csv.DictReader(f))
    assert json.loads((tmp_path / "np2" / "run.json").read_text())["processes"] == 2
    assert [r["step"] for r in logs[2]] == ["1", "2", "3", "4"]  # rank 0 alone wrote the log
    for r1, r2 in zip(logs[1], logs[2], strict=True):
        assert (r1["level"], r1["lmbda"], r1["value"]) == (r2["level"], r2["lmbda"], r2["value"])
        measured = ("loss", "mse", "bpp", "psnr")  # the global batch's, as one process logs them
        assert [float(r1[k]) for k in measured] == pytest.approx([float(r2[k]) for k in measured], rel=1e-5)
