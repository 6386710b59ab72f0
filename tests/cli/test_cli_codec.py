"""`qvrf-bench init / encode / decode / update / info` end to end, in fresh processes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

CLI = [sys.executable, "-m", "qvrf_bench"]


def run_fresh(*args, ok=True):
    """In a fresh Python process, as a user runs it."""
    p = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def run(*args, ok=True):
    """In this process (fast): the same entry point, output captured."""
    p = run_cli(*args)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    run("init", "--arch", "balle", "--kind", "qvrf", "--channels", "8,12", "-o", d / "ck.pt")
    return d / "ck.pt"


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from skimage import data

    p = tmp_path_factory.mktemp("img") / "chelsea.png"
    Image.fromarray(data.chelsea()[:100, :150]).save(p)
    return p


def test_fresh_processes_give_identical_bytes(ckpt, photo, tmp_path):
    run_fresh("encode", "-c", ckpt, "--level", 4, photo, tmp_path / "a.bin")
    run_fresh("encode", "-c", ckpt, "--level", 4, photo, tmp_path / "b.bin")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    # ... and the same as in this process, from the checkpoint file
    from qvrf_bench import images
    from qvrf_bench.methods import codec
    from qvrf_bench.models.checkpoints import load_model

    model, _ = load_model(ckpt)
    assert codec.encode(model, images.load_image(photo).rgb, level=4) == (tmp_path / "a.bin").read_bytes()
    out = run_fresh("decode", "-c", ckpt, tmp_path / "a.bin", tmp_path / "a.png")
    assert "150x100" in out.stdout
    dec = np.array(Image.open(tmp_path / "a.png"))
    assert dec.shape == (100, 150, 3)
    assert np.array_equal(dec, codec.decode(model, (tmp_path / "a.bin").read_bytes()))


def test_continuous_gain_and_update(ckpt, photo, tmp_path):
    p = run("encode", "-c", ckpt, "--gain", "3.3", photo, tmp_path / "g.bin")
    assert "gain 3.3000" in p.stdout
    upd = run("update", ckpt, "-o", tmp_path).stdout.strip()
    run("decode", "-c", upd, tmp_path / "g.bin", tmp_path / "g.png")  # same fingerprint after update
    assert "(format 2): balle" in (out := run("info", tmp_path / "g.bin").stdout) and "continuous gain 3.3" in out
    assert "balle-qvrf8-8x12" in run("info", ckpt).stdout


@pytest.mark.parametrize(
    "mode,notice",
    [("L", "grayscale"), ("P", "palette"), ("RGBA", "alpha"), ("I;16", "16-bit")],
)
def test_non_rgb_images_are_converted_with_a_notice(ckpt, tmp_path, mode, notice):
    from skimage import data

    rgb = data.astronaut()[:40, :50]
    if mode == "I;16":
        img = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode == "P":
        img = Image.fromarray(rgb).quantize(64)
    else:
        img = Image.fromarray(rgb).convert(mode)
    img.save(tmp_path / "in.png")
    p = run("encode", "-c", ckpt, tmp_path / "in.png", tmp_path / "o.bin")
    assert notice in p.stderr and "notice:" in p.stderr
    run("decode", "-c", ckpt, tmp_path / "o.bin", tmp_path / "o.png")
    assert Image.open(tmp_path / "o.png").size == (50, 40)


def _bad_inputs(tmp_path, photo, ckpt):
    good = photo.read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.png").write_text("this is not a picture\n")
    (tmp_path / "empty.png").write_bytes(b"")
    return {
        "trunc.png": "truncated",
        "text.png": "not an image",
        "empty.png": "empty file",
        "missing.png": "no such file",
    }


def test_bad_images_get_one_line_errors(ckpt, photo, tmp_path):
    for name, why in _bad_inputs(tmp_path, photo, ckpt).items():
        runner = run_fresh if name == "trunc.png" else run  # one in a real process: exit code, no traceback
        p = runner("encode", "-c", ckpt, tmp_path / name, tmp_path / "o.bin", ok=False)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert name in p.stderr and why in p.stderr, p.stderr
        assert not (tmp_path / "o.bin").exists()


def test_bad_bitstreams_and_wrong_checkpoint(ckpt, photo, tmp_path):
    run("encode", "-c", ckpt, photo, tmp_path / "a.bin")
    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-10])
    (tmp_path / "empty.bin").write_bytes(b"")
    run("init", "--arch", "balle", "--channels", "8,12", "--seed", "7", "-o", tmp_path / "other.pt")
    cases = [
        (ckpt, "cut.bin", "truncated"),
        (ckpt, "empty.bin", "empty file"),
        (ckpt, photo, "not a qvrf-bench bitstream"),
        (tmp_path / "other.pt", "a.bin", "made by checkpoint"),
    ]
    for ck, name, why in cases:
        p = run("decode", "-c", ck, tmp_path / name, tmp_path / "o.png", ok=False)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        assert why in p.stderr and str(name).split("/")[-1] in p.stderr, p.stderr
    (tmp_path / "bad.pt").write_text("nope")
    p = run("encode", "-c", tmp_path / "bad.pt", photo, tmp_path / "o.bin", ok=False)
    assert p.returncode == 2 and "bad.pt" in p.stderr and "Traceback" not in p.stderr
    p = run("encode", "-c", ckpt, "--level", 8, photo, tmp_path / "o.bin", ok=False)
    assert p.returncode == 2 and "--level 8 out of range" in p.stderr
    p = run("encode", "-c", ckpt, "--gain", "-1", photo, tmp_path / "o.bin", ok=False)
    assert p.returncode == 2 and "--gain is -1, not > 0" in p.stderr and p.stderr.count("\n") == 1
