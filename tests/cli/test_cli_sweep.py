"""`qvrf-bench sweep` and `qvrf-bench merge` end to end: bad inputs, --strict, kill -9 and resume,
shards, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_cli
from PIL import Image

from qvrf_bench.models import create
from qvrf_bench.models.checkpoints import save_checkpoint
from qvrf_bench.results.store import ResultStore

VOLATILE = ["enc_s", "dec_s", "created_utc", "run_id", "shard"]


def run(*args):
    """`qvrf-bench ARGS` in this process (fast), output captured."""
    return run_cli(*args)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=VOLATILE).sort_values(["method", "rate_point", "image"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ck") / "q.pt"
    save_checkpoint(path, create("balle", "qvrf", N=8, M=12))
    return path


def noise(h, w, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    """Good, convertible and broken images side by side."""
    d = tmp_path_factory.mktemp("bad")
    Image.fromarray(noise(48, 64)).save(d / "good.png")
    Image.fromarray(noise(40, 48, c=0)).save(d / "gray.png")
    Image.fromarray(noise(32, 40, c=4)).save(d / "rgba.png")
    Image.fromarray(noise(36, 44, c=0).astype(np.uint16) * 257).save(d / "deep16.png")  # 16-bit grayscale
    Image.fromarray(noise(1, 1)).save(d / "one.png")
    Image.fromarray(noise(64, 64, seed=1)).save(d / "full.png")
    data = (d / "full.png").read_bytes()
    (d / "full.png").unlink()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("this is not an image\n")
    return d


def test_bad_inputs_are_measured_or_listed_and_strict_exits_1(ckpt, bad_dataset, tmp_path):
    args = ["sweep", "-c", ckpt, "--dataset", bad_dataset, "--levels", "0,5", "--factors", "none",
            "--peers", "jpeg", "--peer-qualities", "jpeg=50", "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip
    p = run(*args, "--out", tmp_path / "run", "--strict")
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "3 failure(s) (--strict)" in p.stderr
    for name, reason in [("empty.png", "empty file (0 bytes)"), ("notes.png", "not an image file"),
                         ("truncated.png", "truncated image file")]:  # fmt: skip
        assert f"    {name}: {reason}" in p.stdout
    assert "skipped 3 unreadable image(s) (no rows)" in p.stdout
    df = ResultStore(tmp_path / "run").read()
    # 5 readable images x (2 levels + 1 jpeg quality)
    assert len(df) == 15 and df["decode_ok"].all() and (df["error"] == "").all()
    notices = df.drop_duplicates("image").set_index("image")["notices"]
    assert notices["gray.png"].startswith("grayscale image converted to RGB")
    assert notices["rgba.png"].startswith("RGBA image: alpha channel dropped")
    assert notices["deep16.png"].startswith("16-bit grayscale converted to 8-bit RGB")
    one = df[df["image"] == "one.png"]
    assert (one["width"] == 1).all() and (one["bpp_real"] == 8 * one["bytes"]).all()
    assert one["ms_ssim_rgb"].isna().all() and one["psnr_rgb"].notna().all()
    # without --strict the same run (now resumed: nothing left to do) exits 0 and still lists them
    p = run(*args, "--out", tmp_path / "run")
    assert p.returncode == 0 and "15 rows (0 measured now, 15 already done); 3 failure(s)" in p.stdout
    assert "truncated.png: truncated image file" in p.stdout


def test_kill_9_then_resume_equals_uninterrupted(ckpt, tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    for i in range(6):
        Image.fromarray(noise(40, 48, seed=i)).save(ds / f"im{i}.png")
    # one part per image (10 rows): the default buffer (2,000 rows or 30 s) would write none before the kill
    args = ["sweep", "-c", ckpt, "--dataset", ds, "--factors", "1.5,3", "--device", "cpu", "--threads", "1",
            "--flush-rows", "10"]  # fmt: skip
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "qvrf_bench", *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    store = ResultStore(out)
    try:
        deadline = time.monotonic() + 120
        while not store.parts() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.parts(), "no part appeared"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    n_parts = len(store.parts())
    assert 1 <= n_parts < 6, "the sweep finished before the kill: give it more work"
    # a part cut off mid-write stays a hidden temp file; resume must not read it
    (out / "results" / ".part-20990101T000000000000Z-1-deadbeef.parquet.0badf00d.tmp").write_bytes(b"PAR1 half")
    p = run(*args, "--out", out, "--no-progress")
    assert p.returncode == 0, p.stderr
    assert f"60 rows ({60 - 10 * n_parts} measured now, {10 * n_parts} already done)" in p.stdout
    raw = store.read(dedupe=False)
    assert len(raw) == 60  # 10 points x 6 images, none twice
    q = run(*args, "--out", tmp_path / "straight", "--no-progress")
    assert q.returncode == 0, q.stderr
    pd.testing.assert_frame_equal(comparable(raw), comparable(ResultStore(tmp_path / "straight").read()))


def test_shards_merge_to_the_unsharded_run(ckpt, bad_dataset, tmp_path):
    args = ["sweep", "-c", ckpt, "--dataset", bad_dataset, "--levels", "3", "--factors", "none", "--peers", "webp",
            "--peer-qualities", "webp=40", "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip
    assert run(*args, "--out", tmp_path / "all").returncode == 0
    sizes = []
    for i in range(3):
        p = run(*args, "--out", tmp_path / f"s{i}", "--shard", f"{i}/3")
        assert p.returncode == 0, p.stderr
        sizes.append(len(ResultStore(tmp_path / f"s{i}").read()))
    assert sum(sizes) == 10 and all(sizes)  # 5 readable images x 2 methods, spread over 3 shards
    p = run("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m")
    assert p.returncode == 2 and "shard(s) 2/3 missing" in p.stderr and "Traceback" not in p.stderr
    p = run("merge", tmp_path / "s0", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "m")
    assert p.returncode == 0, p.stderr
    assert "merged 3 run(s) into" in p.stdout and "10 rows, 2 method(s)" in p.stdout
    merged = ResultStore(tmp_path / "m").read()
    pd.testing.assert_frame_equal(comparable(merged), comparable(ResultStore(tmp_path / "all").read()))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--factors", "0:1:3"], "--factors '0:1:3': need 0 < START <= STOP"),
        (["--levels", "9"], "has levels 0..7; --levels asks for 9"),
        (["--shard", "3/3"], "shard 3/3: need N >= 1 and 0 <= i < N"),
        (["--peers", "gif"], "unknown codec 'gif'"),
        (["--vbr", "mbt2018-vbr"], "expected ARCH=STATEDICT"),
        (["--vbr", "mbt2018-vbr=missing.pth"], "missing.pth: no such file"),
        (["-c", "nope.pt"], "nope.pt: no such checkpoint file"),
    ],
)
def test_errors_are_one_line(ckpt, bad_dataset, tmp_path, extra, message):
    p = run("sweep", "-c", ckpt, "--dataset", bad_dataset, "--out", tmp_path / "r", "--no-progress", *extra)
    assert p.returncode == 2, p.stdout
    assert message in p.stderr and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("qvrf-bench sweep: error: ")


def test_other_config_into_the_same_run_is_refused(ckpt, bad_dataset, tmp_path):
    args = ["sweep", "-c", ckpt, "--dataset", bad_dataset, "--factors", "none", "--device", "cpu", "--threads", "1",
            "--no-progress", "--out", tmp_path / "r"]  # fmt: skip
    assert run(*args, "--levels", "1").returncode == 0
    p = run(*args, "--levels", "2")
    assert p.returncode == 2 and "the run exists with a different config" in p.stderr
    assert "use a new run folder" in p.stderr and p.stderr.count("\n") == 1


def test_missing_dataset(ckpt, tmp_path):
    p = run("sweep", "-c", ckpt, "--dataset", tmp_path / "none", "--out", tmp_path / "r")
    assert p.returncode == 2 and "none: not a directory" in p.stderr
    (tmp_path / "empty").mkdir()
    p = run("sweep", "-c", ckpt, "--dataset", tmp_path / "empty", "--out", tmp_path / "r")
    assert p.returncode == 2 and "empty: no image files found" in p.stderr


def test_shard_auto_and_out_placeholder(tmp_path, monkeypatch):
    from helpers import run_cli
    from PIL import Image
    from skimage import data

    from qvrf_bench.results.store import ResultStore

    ds = tmp_path / "ds"
    ds.mkdir()
    for k in range(3):
        Image.fromarray(data.astronaut()[k * 40 : k * 40 + 32, :48]).save(ds / f"{k}.png")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    r = run_cli("sweep", "--dataset", ds, "--out", f"{tmp_path}/part-{{shard}}", "--peers", "jpeg",
                "--peer-qualities", "jpeg=50", "--no-progress")  # fmt: skip
    assert r.returncode == 2 and "--shard" in r.stderr  # {shard} without --shard
    r = run_cli("sweep", "--dataset", ds, "--out", f"{tmp_path}/part-{{shard}}", "--shard", "auto", "--peers", "jpeg",
                "--peer-qualities", "jpeg=50", "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    st = ResultStore(tmp_path / "part-1of2")
    assert st.manifest["shard"] == {"index": 1, "count": 2}
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    r = run_cli("sweep", "--dataset", ds, "--out", f"{tmp_path}/x", "--shard", "auto", "--peers", "jpeg",
                "--no-progress")  # fmt: skip
    assert r.returncode == 2 and "no scheduler shard" in r.stderr


def test_a_second_writer_is_refused_and_a_dead_holder_does_not_block(ckpt, bad_dataset, tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    args = ["sweep", "-c", ckpt, "--dataset", bad_dataset, "--factors", "none", "--device", "cpu", "--threads", "1",
            "--no-progress", "--levels", "1", "--out", out]  # fmt: skip
    # another process holds the folder (as a running sweep does, from before its config check)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom qvrf_bench.results.store import ResultStore\n"
                               "with ResultStore(sys.argv[1]).writer_lock():\n    print('held', flush=True)\n"
                               "    time.sleep(120)\n", str(out)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        p = run(*args)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
        assert "another sweep is writing this run folder" in p.stderr and f"pid {holder.pid}" in p.stderr
        assert not (out / "run.json").exists()  # refused before the config check wrote anything
    finally:
        holder.kill()  # SIGKILL: no clean-up ran, the kernel drops the lock
        holder.wait()
    t = time.perf_counter()
    p = run(*args)
    assert p.returncode == 0, p.stderr
    assert time.perf_counter() - t < 60
    df = ResultStore(out).read()
    assert len(df) > 0
    with ResultStore(out).writer_lock():  # released at the end of the sweep
        pass
