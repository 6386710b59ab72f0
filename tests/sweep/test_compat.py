"""Run folders written by earlier releases still resume, and today's sweep measures them the same way.

The fixture (tests/fixtures/run-0.2.0, its README says how it was made) is a real sweep of three
checkpoints (shipped beside it) through ``-c`` written by qvrf-bench 0.2.0: its row keys and config are what today's
code must reproduce so that such folders resume without re-measuring anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from helpers import run_cli

from qvrf_bench.results.store import ResultStore
from qvrf_bench.train.zoo import compare_check

FIXTURE = Path(__file__).parents[1] / "fixtures" / "run-0.2.0"
ARGS = ["-c", "checkpoints/balle-qvrf8.pt", "checkpoints/balle-fixed-l0.0483.pt", "checkpoints/minnen-qvrf8.pt",
        "--dataset", "images", "--levels", "0,7", "--factors", "1.5,4", "--target-bpp", "0.3", "--threads", "1",
        "--no-progress"]  # fmt: skip
SAME = ["method", "arch", "kind", "checkpoint_sha256", "level", "gain", "lmbda", "rate_point", "image",
        "image_sha256", "width", "height", "decode_check", "decode_ok", "error", "target_bpp",
        "target_encodes"]  # fmt: skip


def _rows(run: Path) -> pd.DataFrame:
    df = ResultStore(run).read()
    return df.sort_values(["method", "rate_point", "image"]).reset_index(drop=True)


def test_a_0_2_0_run_folder_resumes_without_measuring_anything(tmp_path, monkeypatch):
    work = tmp_path / "fixture"
    shutil.copytree(FIXTURE, work)
    before = _rows(work / "run")
    assert len(before) == 22 and not before["error"].astype(bool).any()
    monkeypatch.chdir(work)
    r = run_cli("sweep", *ARGS, "--out", "run")
    assert r.returncode == 0, r.stderr
    assert "0 measured now, 22 already done" in r.stdout
    pd.testing.assert_frame_equal(_rows(work / "run"), before)


def test_todays_sweep_measures_the_fixture_as_0_2_0_did(tmp_path, monkeypatch):
    work = tmp_path / "fixture"
    shutil.copytree(FIXTURE, work)
    monkeypatch.chdir(work)
    r = run_cli("sweep", *ARGS, "--out", "fresh")
    assert r.returncode == 0, r.stderr
    old, new = _rows(work / "run"), _rows(work / "fresh")
    pd.testing.assert_frame_equal(new[SAME], old[SAME], check_dtype=False)
    # Bytes and PSNR as the zoo's own check compares them (train/zoo.compare_check): the fixture was
    # written on another CPU, whose float kernels give the same streams here but reconstructions that
    # differ by ~1e-4 dB, and may round a latent the other way on a third.
    for (_, a), (_, b) in zip(new.iterrows(), old.iterrows(), strict=True):
        got = {"bytes": a["bytes"], "psnr_rgb": a["psnr_rgb"], "sha256_bitstream": str(a["bytes"])}
        want = {"bytes": b["bytes"], "psnr_rgb": b["psnr_rgb"], "sha256_bitstream": str(b["bytes"])}
        ok, how = compare_check(got, want)
        assert ok, f"{a['method']} {a['rate_point']} {a['image']}: {how}"
