"""Data-parallel training under torchrun on the CPU (gloo): 2 processes train exactly what one
process trains with the same global batch, and a killed rank is recovered by rerunning the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qvrf_bench.models.checkpoints import read_file

REPO = Path(__file__).resolve().parents[2]


def _cmd(photos, out, *extra):
    return [sys.executable, "-m", "qvrf_bench", "train", "--arch", "balle", "--kind", "qvrf", "--stage", "2",
            "--dataset", str(photos), "--out", str(out), "--channels", "8,8", "--patch-size", "64",
            "--batch-size", "4", "--max-val-images", "2", "--threads", "1", "--no-progress", "--device", "cpu",
            "--seed", "7", *extra]  # fmt: skip


def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _steps(csv: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in csv.read_text().splitlines()[1:]]


@pytest.mark.slow
def test_two_gloo_processes_train_what_one_process_trains(tmp_path, clean_photos):
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"np{nproc}"
        # 12 steps draw level 0 (no gain gradient) at step 11, and validate twice
        cmd = _cmd(clean_photos, out, "--steps", "12", "--save-every", "6", "--val-every", "6", "--nproc", str(nproc))
        done = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[nproc] = out
    one, two = (read_file(runs[n] / "final.pt") for n in (1, 2))
    assert two["training"]["step"] == one["training"]["step"] == 12
    a, b = one["state_dict"], two["state_dict"]
    assert a.keys() == b.keys()
    # Same crops, same noise, same levels: every step's loss and rate agree to 1e-5 (a wrong split --
    # other crops, other noise -- differs at step 1, a missing gradient average from step 2 on).
    rows1 = [r.split(",") for r in (runs[1] / "train_log.csv").read_text().splitlines()[1:]]
    rows2 = [r.split(",") for r in (runs[2] / "train_log.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows2] == [str(s) for s in range(1, 13)]  # rank 0 alone wrote the log
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r1[:4] == r2[:4]  # step, epoch, stage, level
        # lambda, gain, loss, mse, bpp, psnr (the global batch's, as one process logs them)
        assert [float(v) for v in r1[4:10]] == pytest.approx([float(v) for v in r2[4:10]], rel=1e-5)
    # Weights: only the order of float sums differs, but Adam turns near-zero gradients into lr-sized
    # steps of either sign (GDN's gamma), so the weights drift apart a little: measured 2e-4 after 12
    # steps at the smoke lr 1e-3 (6e-8 after 4); bound 1e-3.
    diff = {
        k: (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point() and a[k].numel()
    }
    assert max(diff.values()) < 1e-3, max(diff.items(), key=lambda kv: kv[1])
    assert diff["gain"] < 1e-6
    assert a["gain"].tolist() != [1.0] * 8  # the gains did train
    import json

    assert json.loads((runs[2] / "run.json").read_text())["processes"] == 2


def _ranks(out: Path) -> list[int]:
    """PIDs of the torchrun workers training into ``out`` (not the launcher, not the agent)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if str(out) in text and "qvrf_bench" in text and "--nproc" not in text and "torch.distributed.run" not in text:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_kill_9_of_one_rank_then_resume(tmp_path, clean_photos):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc to find the rank processes")
    out = tmp_path / "killed"
    cmd = _cmd(clean_photos, out, "--steps", "400", "--save-every", "3", "--val-every", "100", "--nproc", "2")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)
        ranks = _ranks(out)
        assert len(ranks) == 2, ranks
        os.kill(ranks[1], signal.SIGKILL)
        proc.wait(timeout=120)  # torchrun stops the other rank and fails
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    saved = read_file(out / "last.pt")["training"]["step"]
    assert 3 <= saved < 400 and saved % 3 == 0
    total = saved + 4  # resume for a short total to keep the test quick
    again = [a if a != "400" else str(total) for a in cmd]
    done = subprocess.run(again, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = read_file(out / "final.pt")
    assert final["training"]["step"] == total
    assert _steps(out / "train_log.csv") == list(range(1, total + 1))  # nothing lost, nothing twice
    assert "resumed from" in (out / "events.log").read_text()
    assert all(torch.isfinite(v.float()).all() for v in final["state_dict"].values() if v.is_floating_point())
