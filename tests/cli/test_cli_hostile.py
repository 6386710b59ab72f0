"""The issue-13 table through the CLI: hostile headers and gains, awkward output paths, broken or
foreign files, a closed pipe; every error one line with exit status 2, no traceback, no debris."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import png16, run_cli, small_model, with_fields
from PIL import Image

CLI = [sys.executable, "-m", "qvrf_bench"]


def run(*args, ok=True):
    p = run_cli(*args)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def one_line_error(p, *needles) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in p.stderr, p.stderr
    return p.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("hostile")
    run("init", "--arch", "balle", "--kind", "qvrf", "--channels", "8,12", "-o", d / "ck.pt")
    Image.fromarray(data.chelsea()[:100, :150]).save(d / "photo.png")
    run("encode", "-c", d / "ck.pt", d / "photo.png", d / "a.qvrf")
    return d


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(zh=60000), "hyper-latent size 60000x3 does not match the 150x100 image (expected 2x3)"),  # row 1
        (dict(zh=1000, zw=20), "hyper-latent size 1000x20"),  # row 2
        (dict(zh=14, zw=1000), "hyper-latent size 14x1000"),
        (dict(zh=0, zw=20), "hyper-latent size 0x20"),  # row 3
        (dict(pl=60000), "left/right padding 60000+21"),  # row 4
        (dict(h=0), "image size 150x0 is empty"),
        (dict(gain=float("nan")), "gain is nan, not a finite number"),  # row 5
        (dict(gain=float("inf")), "gain is inf"),
        (dict(gain=0.0), "gain is 0, not > 0"),
        (dict(gain=-3.3), "gain is -3.3, not > 0"),
        (dict(gain=1e30), "gain is 1e+30, outside the supported range [0.0004296875, 64]"),
        (dict(gain=1e-30), "gain is 1e-30, outside the supported range"),
        (dict(level=8), "level 8 is not one of the checkpoint's levels 0..7"),
        (dict(level=200), "level 200 is above the format's limit (64 levels; 255 = a continuous gain)"),
    ],
)
def test_hostile_headers_are_one_line_and_write_nothing(setup, tmp_path, fields, message):
    bad = tmp_path / "bad.qvrf"
    bad.write_bytes(with_fields((setup / "a.qvrf").read_bytes(), **fields))
    p = run("decode", "-c", setup / "ck.pt", bad, tmp_path / "out.png", ok=False)
    one_line_error(p, "bad.qvrf: corrupt header: ", message)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.qvrf"]
    if "level" not in fields:  # info needs no checkpoint: the same line
        one_line_error(run("info", bad, ok=False), message)


def test_a_header_is_refused_in_a_fresh_process_without_importing_torch(setup, tmp_path):
    bad = tmp_path / "bad.qvrf"
    bad.write_bytes(with_fields((setup / "a.qvrf").read_bytes(), zh=60000))
    code = (
        "import sys; from qvrf_bench.cli import main; "
        f"rc = main(['decode', '-c', {str(setup / 'ck.pt')!r}, {str(bad)!r}, {str(tmp_path / 'o.png')!r}]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    one_line_error(p, "hyper-latent size 60000x3")
    assert time.perf_counter() - t0 < 10  # a Python start-up, not a torch import (~6 s here)


def test_gains_outside_the_range_are_refused_before_any_work(setup, tmp_path):  # row 6
    for g in ("1e10", "1e20", "1e30", "nan", "-3", "0", "64.5", "0.0001"):
        p = run("encode", "-c", setup / "ck.pt", "--gain", g, setup / "photo.png", tmp_path / "o.qvrf", ok=False)
        one_line_error(p, "--gain is ")
    assert list(tmp_path.iterdir()) == []
    p = run("encode", "-c", setup / "ck.pt", "--gain", "64", setup / "photo.png", tmp_path / "top.qvrf")
    assert "gain 64.0000" in p.stdout
    run("decode", "-c", setup / "ck.pt", tmp_path / "top.qvrf", tmp_path / "top.png")
    assert Image.open(tmp_path / "top.png").size == (150, 100)


def test_sweep_factors_outside_the_range_are_refused(setup, tmp_path):
    p = run("sweep", "-c", setup / "ck.pt", "--dataset", setup, "--out", tmp_path / "r", "--factors", "1,100", ok=False)
    one_line_error(p, "--factors '1,100': gain is 100, outside the supported range")


def official(path: Path, gain=None, drop_cdfs=False) -> Path:
    sd = dict(small_model("balle").state_dict())
    sd["Gain"] = sd.pop("gain") if gain is None else torch.tensor(gain, dtype=torch.float32)
    if drop_cdfs:
        sd = {k: v for k, v in sd.items() if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length"))}
    torch.save({"state_dict": sd}, path)
    return path


@pytest.mark.parametrize(
    "gain,message",
    [
        ([float("nan")] * 8, "gain of level 0 is nan, not a finite number"),
        ([0.0] * 8, "cannot code with it: gain of level 0 is 0, not > 0"),
        ([-1.0 - i for i in range(8)], "cannot code with it: gain of level 0 is -1, not > 0"),
    ],
)
def test_official_checkpoints_with_broken_gains(setup, tmp_path, gain, message):  # row 7
    ck = official(tmp_path / "official.pt", gain)
    p = run("encode", "-c", ck, "--level", "3", setup / "photo.png", tmp_path / "o.qvrf", ok=False)
    one_line_error(p, "official.pt: ", message)
    assert not (tmp_path / "o.qvrf").exists()


def test_official_checkpoint_without_coder_tables(setup, tmp_path):  # row 8
    ck = official(tmp_path / "bare.pt", drop_cdfs=True)
    assert "balle-qvrf8-8x12" in run("info", ck).stdout
    run("encode", "-c", ck, "--level", "3", setup / "photo.png", tmp_path / "o.qvrf")
    run("decode", "-c", ck, tmp_path / "o.qvrf", tmp_path / "o.png")


def test_output_paths(setup, tmp_path):  # row 9
    ck, photo = setup / "ck.pt", setup / "photo.png"
    run("encode", "-c", ck, photo, tmp_path / "missing" / "deeper" / "a.qvrf")  # parents created
    assert (tmp_path / "missing" / "deeper" / "a.qvrf").is_file()
    run("encode", "-c", ck, photo, tmp_path / "missing")  # an existing folder: inside it, named after the input
    assert (tmp_path / "missing" / "photo.qvrf").is_file()
    run("decode", "-c", ck, tmp_path / "missing" / "photo.qvrf", f"{tmp_path}/pngs/")  # trailing slash: a folder
    assert Image.open(tmp_path / "pngs" / "photo.png").size == (150, 100)
    (tmp_path / "plain").write_text("")
    p = run("encode", "-c", ck, photo, tmp_path / "plain" / "a.qvrf", ok=False)
    one_line_error(p, "plain: is a file, not a folder: cannot hold the bitstream")
    # a failure after the output was checked leaves nothing behind
    (tmp_path / "broken.png").write_bytes(photo.read_bytes()[:300])
    p = run("encode", "-c", ck, tmp_path / "broken.png", tmp_path / "out" / "b.qvrf", ok=False)
    one_line_error(p, "broken.png: truncated image file")
    assert list((tmp_path / "out").iterdir()) == []
    leftovers = [x for x in tmp_path.rglob(".*")]
    assert leftovers == [], leftovers


def test_a_closed_pipe_ends_quietly(setup):  # row 10
    for args in (["info", setup / "ck.pt"], ["info", setup / "a.qvrf"]):
        p = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()  # the reader is gone before the first line
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141 and err == "", err


def test_cut_files_and_other_files_are_named(setup, tmp_path):  # rows 11, 12
    data = (setup / "a.qvrf").read_bytes()
    for n in (1, 3, 4, 20, 40):
        (tmp_path / f"cut{n}.qvrf").write_bytes(data[:n])
        one_line_error(run("info", tmp_path / f"cut{n}.qvrf", ok=False), f"cut{n}.qvrf: truncated bitstream ({n} bytes")
        p = run("decode", "-c", setup / "ck.pt", tmp_path / f"cut{n}.qvrf", tmp_path / "o.png", ok=False)
        one_line_error(p, "truncated bitstream")
    one_line_error(
        run("info", setup / "photo.png", ok=False), "photo.png: a PNG image, not a checkpoint or a qvrf-bench bitstream"
    )
    one_line_error(run("info", tmp_path, ok=False), "is a folder, not a checkpoint or a bitstream")
    p = run("decode", "-c", setup / "ck.pt", setup / "photo.png", tmp_path / "o.png", ok=False)
    one_line_error(p, "photo.png: not a qvrf-bench bitstream")
    p = run("encode", "-c", setup / "photo.png", setup / "photo.png", tmp_path / "o.qvrf", ok=False)
    one_line_error(p, "photo.png: not a checkpoint: a PNG image")


def test_an_unsafe_pickle_is_refused_by_name(setup, tmp_path):  # row 13
    (tmp_path / "evil.pt").write_bytes(
        b"\x80\x02cposix\nsystem\nq\x00X\x10\x00\x00\x00touch /tmp/pwnedq\x01\x85q\x02Rq\x03."
    )
    p = run("info", tmp_path / "evil.pt", ok=False)
    one_line_error(p, "evil.pt: refused: an unsafe pickle (it asks to import posix.system")
    assert "weights_only" not in p.stderr


def test_stale_temporaries_of_killed_writers_are_cleaned(setup, tmp_path):  # row 16
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name in ("a.qvrf", "a.png", "ck.pt"):
        (tmp_path / f".{name}.tmp-{dead.pid}").write_bytes(b"half")
    run("encode", "-c", setup / "ck.pt", setup / "photo.png", tmp_path / "a.qvrf")
    run("decode", "-c", setup / "ck.pt", tmp_path / "a.qvrf", tmp_path / "a.png")
    run("init", "--arch", "balle", "--channels", "8,12", "-o", tmp_path / "ck.pt")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.png", "a.qvrf", "ck.pt"]


def test_a_48_bit_png_gets_its_notice(setup, tmp_path):  # row 17
    png16(tmp_path / "deep.png", (np.arange(40 * 50 * 3).reshape(40, 50, 3) * 20).astype(np.uint16))
    p = run("encode", "-c", setup / "ck.pt", tmp_path / "deep.png", tmp_path / "o.qvrf")
    assert "notice: " in p.stderr and "48-bit RGB converted to 8 bits per sample" in p.stderr


def test_update_into_a_new_folder(setup, tmp_path):  # row 18
    out = Path(run("update", setup / "ck.pt", "-o", f"{tmp_path}/exported/").stdout.strip())
    assert out.parent == tmp_path / "exported" and out.name.startswith("ck-")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["exported"]


def test_unbounded_inputs_are_refused_before_work(setup, tmp_path):
    """A device file, a FIFO and an image over the limits: one line, exit 2, for encode (every
    codec and a rate target) and sweep (a skipped image, the rest measured)."""
    import os

    os.mkfifo(tmp_path / "fifo.png")
    for args in (["-c", setup / "ck.pt"], ["--codec", "jpeg", "--bpp", "0.5"]):
        one_line_error(run("encode", *args, "/dev/zero", tmp_path / "o", ok=False), "/dev/zero: not a regular file")
        one_line_error(run("encode", *args, tmp_path / "fifo.png", tmp_path / "o", ok=False), "not a regular file")
        p = run("encode", *args, "--max-pixels", "14999", setup / "photo.png", tmp_path / "o", ok=False)
        one_line_error(p, "photo.png: 150x100 exceeds the limit of 14,999 pixels (--max-pixels)")
    assert not (tmp_path / "o").exists()
    data = tmp_path / "imgs"
    data.mkdir()
    Image.open(setup / "photo.png").save(data / "a.png")
    Image.open(setup / "photo.png").crop((0, 0, 64, 64)).save(data / "b.png")
    p = run("sweep", "-c", setup / "ck.pt", "--levels", "0", "--factors", "none", "--dataset", data,
            "--max-pixels", "10000", "--out", tmp_path / "run", "--no-progress")  # fmt: skip
    assert "a.png" in p.stdout + p.stderr and "exceeds the limit of 10,000 pixels" in p.stdout + p.stderr
    from qvrf_bench.results.store import ResultStore

    assert list(ResultStore(tmp_path / "run").read()["image"]) == ["b.png"]


def test_damaged_own_files_are_one_line(setup, tmp_path, monkeypatch):
    """Checkpoints, zoo manifests and result parts of our own formats, damaged: one line each (info,
    encode, zoo, compare and report alike); a checkpoint without its coder tables codes as with them."""
    import json
    import shutil

    import pandas as pd

    from qvrf_bench import zoo

    ck = torch.load(setup / "ck.pt", weights_only=True)
    sd = ck["state_dict"]
    cases = {
        "nosd": ({k: v for k, v in ck.items() if k != "state_dict"}, "its state_dict is none, not a dict of tensors"),
        "strsd": ({**ck, "state_dict": "x"}, "its state_dict is a str"),
        "negN": ({**ck, "config": {**ck["config"], "N": -5}}, "N = -5 is not a width"),
        "noarch": ({**ck, "config": {**ck["config"], "arch": "nope"}}, "arch 'nope' is not one of"),
        "lmbdas": ({**ck, "config": {**ck["config"], "lmbdas": "abc"}}, "lmbdas = abc is not a non-empty list"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        one_line_error(run("info", tmp_path / f"{name}.pt", ok=False), f"{name}.pt: broken checkpoint", message)
        p = run("encode", "-c", tmp_path / f"{name}.pt", setup / "photo.png", tmp_path / "o.qvrf", ok=False)
        one_line_error(p, message)
    nocdf = {k: v for k, v in sd.items() if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length"))}
    assert len(nocdf) < len(sd)
    torch.save({**ck, "state_dict": nocdf}, tmp_path / "nocdf.pt")
    run("encode", "-c", tmp_path / "nocdf.pt", setup / "photo.png", tmp_path / "n.qvrf")
    assert (tmp_path / "n.qvrf").read_bytes() == (setup / "a.qvrf").read_bytes()

    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    shutil.copy(setup / "ck.pt", zoo_dir / "ck.pt")
    for manifest, message in (
        ([1, 2], 'expected {"models": {NAME: ENTRY, ...}}'),
        ({"models": {"x": 5}}, "entry 'x' is not an object"),
        ({"models": {"x": {"file": "ck.pt"}}}, "entry 'x' has no 'sha256'"),
    ):
        (zoo_dir / "zoo.json").write_text(json.dumps(manifest))
        monkeypatch.setattr(zoo, "ZOO_DIR", zoo_dir)
        for args in (
            ["zoo", "list"],
            ["zoo", "verify"],
            ["encode", "-c", "zoo:x", setup / "photo.png", tmp_path / "z"],
        ):
            one_line_error(run_cli(*args), "broken zoo manifest", message)
    monkeypatch.undo()
    (tmp_path / "imgs").mkdir()
    shutil.copy(setup / "photo.png", tmp_path / "imgs" / "a.png")
    run("sweep", "-c", setup / "ck.pt", "--levels", "0,7", "--factors", "none", "--dataset", tmp_path / "imgs",
        "--out", tmp_path / "run", "--no-progress")  # fmt: skip
    for change, message in (
        (lambda df: df.assign(zzz=1), "unknown column(s) zzz"),
        (
            lambda df: df.assign(bytes=["9573x"] + [str(b) for b in df["bytes"][1:]]),
            "'9573x' as a scalar of type int64",
        ),
    ):
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(tmp_path / "run", bad)
        part = sorted((bad / "results").glob("*.parquet"))[0]
        change(pd.read_parquet(part)).to_parquet(part)
        for args in (["compare", bad, "-o", tmp_path / "bd"], ["report", bad, "-o", tmp_path / "r.html"]):
            one_line_error(run(*args, ok=False), part.name, message)
