"""Every skip on record (issue 13, rows 14 and 19): a sweep's unreadable images go into run.json,
survive merge and show in the report; a refused configuration is a short diff; merge names
duplicates."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from qvrf_bench.models import create
from qvrf_bench.models.checkpoints import save_checkpoint
from qvrf_bench.results import store


def run(*args):
    from qvrf_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("records")
    torch.manual_seed(0)
    save_checkpoint(d / "q.pt", create("balle", "qvrf", N=8, M=12))
    data = d / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)).save(data / f"ok{i}.png")
    good = (data / "ok0.png").read_bytes()
    (data / "cut.png").write_bytes(good[: len(good) // 2])
    (data / "text.png").write_text("not an image\n")
    (data / "empty.png").write_bytes(b"")
    return d


BROKEN = {"cut.png": "truncated image file", "text.png": "not an image file", "empty.png": "empty file (0 bytes)"}


def sweep(setup, out, *extra):
    p = run("sweep", "-c", setup / "q.pt", "--dataset", setup / "data", "--out", out, "--levels", "0",
            "--factors", "none", "--no-progress", "--threads", "1", *extra)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return p


def test_skips_are_recorded_survive_merge_and_are_reported(setup, tmp_path):
    sweep(setup, tmp_path / "whole")
    skipped = {e["image"]: e["reason"] for e in store.ResultStore(tmp_path / "whole").skipped}
    assert set(skipped) == set(BROKEN) and all(BROKEN[k] in v for k, v in skipped.items())
    sweep(setup, tmp_path / "whole")  # a resume skips them again and records nothing twice
    assert len(store.ResultStore(tmp_path / "whole").skipped) == 3

    for i in range(2):
        sweep(setup, tmp_path / f"s{i}", "--shard", f"{i}/2")
    per_shard = [store.ResultStore(tmp_path / f"s{i}").skipped for i in range(2)]
    assert sorted(e["image"] for s in per_shard for e in s) == sorted(BROKEN)  # each in exactly one shard
    p = run("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged")
    assert p.returncode == 0, p.stderr
    merged = store.ResultStore(tmp_path / "merged").skipped
    assert {e["image"]: e["reason"] for e in merged} == skipped
    assert {e["shard"] for e in merged} <= {"0/2", "1/2"}

    p = run("report", tmp_path / "merged", "-o", tmp_path / "report" / "index.html")
    assert p.returncode == 0, p.stderr
    html = (tmp_path / "report" / "index.html").read_text()
    section = html.split('<section id="errors">')[1].split("</section>")[0]
    assert "3 input(s) were skipped" in section
    for name, why in BROKEN.items():
        assert name in section and why in section
    assert 'href="#errors">9 Errors, decode failures and skipped inputs (3)' in html


def test_a_refused_configuration_is_a_short_diff(setup, tmp_path):
    sweep(setup, tmp_path / "r")
    p = run("sweep", "-c", setup / "q.pt", "--dataset", setup / "data", "--out", tmp_path / "r", "--levels", "0,3",
            "--factors", "1,2.5", "--no-progress")  # fmt: skip
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    line = p.stderr.strip()
    assert "the run exists with a different config (methods[balle-qvrf8-8x12].points: 1 -> 4 values; " in line
    assert "new gain=1.0000, gain=2.5000, level=3)" in line
    assert len(line) < 300 and "{" not in line  # not two JSON dumps


def test_config_diff_names_leaves():
    a = {"dataset": {"name": "kodak", "images": 24, "sha256": "a" * 64},
         "methods": [{"method": "m1", "points": ["level=0", "level=1"]}, {"method": "jpeg", "points": ["q=50"]}]}  # fmt: skip
    b = json.loads(json.dumps(a))
    b["dataset"]["sha256"] = "b" * 64
    b["methods"][0]["points"].append("gain=2.0000")
    b["methods"].append({"method": "webp", "points": ["q=75"]})
    text = store.config_diff(a, b)
    assert text.startswith(f"dataset.sha256: {'a' * 37}... in the run, {'b' * 37}... now; ")
    assert "methods: webp only in the new config" in text
    assert "methods[m1].points: 2 -> 3 values; new gain=2.0000" in text
    many = store.config_diff({f"k{i}": i + 1 for i in range(9)}, {f"k{i}": -i - 1 for i in range(9)})
    assert many.endswith("; and 5 more") and many.count(" in the run, ") == 4


def test_merge_names_duplicates(setup, tmp_path):
    for i in range(2):
        sweep(setup, tmp_path / f"s{i}", "--shard", f"{i}/2")
    p = run("merge", tmp_path / "s0", tmp_path / "s0", "--out", tmp_path / "m")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "s0 given twice (duplicate)" in p.stderr, p.stderr
    p = run("merge", tmp_path / "s0", tmp_path / "s1" / ".." / "s0", "--out", tmp_path / "m")
    assert p.returncode == 2 and "given twice (duplicate: the same folder as" in p.stderr, p.stderr
    import shutil

    shutil.copytree(tmp_path / "s1", tmp_path / "s1copy")
    p = run("merge", tmp_path / "s0", tmp_path / "s1", tmp_path / "s1copy", "--out", tmp_path / "m")
    assert p.returncode == 2 and "s1 and" in p.stderr and "s1copy are both shard 1/2 (duplicate)" in p.stderr, p.stderr
    assert not (tmp_path / "m").exists()


def test_a_run_folder_that_is_a_file_is_one_line(setup, tmp_path):
    (tmp_path / "taken").write_text("")
    p = run("sweep", "-c", setup / "q.pt", "--dataset", setup / "data", "--out", tmp_path / "taken", "--no-progress")
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "taken: is a file, not a folder: cannot hold the run folder" in p.stderr
    p = run("merge", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "taken" / "m")
    assert p.returncode == 2 and "cannot be created for the merged run: " in p.stderr and "taken is a file" in p.stderr
