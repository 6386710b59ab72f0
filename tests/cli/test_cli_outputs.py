"""Outputs never destroy inputs; temporary names fit beside any legal target name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from helpers import run_cli

from qvrf_bench import files

REPO = Path(__file__).resolve().parents[2]
PHOTO = REPO / "qvrf_bench" / "data" / "kodak" / "kodim23.png"


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path) -> Path:
    p = tmp_path / "k.png"
    p.write_bytes(PHOTO.read_bytes())
    return p


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("codec", [["-c", "zoo:balle-qvrf8", "--level", "1"], ["--codec", "jpeg", "--bpp", "0.5"]])
def test_encode_onto_its_input_is_refused(photo, tmp_path, how, codec):
    before = digest(photo)
    out = photo
    if how == "symlink":
        out = tmp_path / "link.png"
        out.symlink_to(photo)
    elif how == "hardlink":
        out = tmp_path / "hard.png"
        os.link(photo, out)
    r = run_cli("encode", *codec, photo, out)
    assert r.returncode == 2
    assert "would destroy it" in r.stderr and str(out) in r.stderr and "Traceback" not in r.stderr
    assert digest(photo) == before


def test_decode_onto_its_bitstream_is_refused(photo, tmp_path):
    bits = tmp_path / "k.qvrf"
    assert run_cli("encode", "-c", "zoo:balle-qvrf8", "--level", "0", photo, bits).returncode == 0
    before = digest(bits)
    r = run_cli("decode", "-c", "zoo:balle-qvrf8", bits, bits)
    assert r.returncode == 2 and "would destroy it" in r.stderr
    assert digest(bits) == before


def test_a_250_character_output_name_is_written(photo, tmp_path):
    out = tmp_path / ("a" * 250 + ".jpg")
    r = run_cli("encode", "--codec", "jpeg", "--bpp", "0.5", photo, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert [p.name for p in tmp_path.iterdir() if files.TMP_INFIX in p.name] == []


def test_temp_names_fit_and_are_recognised_as_temporaries(tmp_path):
    for n in (1, 200, 243, 255):
        name = files.temp_name(tmp_path / ("b" * n)).name
        assert len(name.encode()) <= files.NAME_MAX and name.startswith(".")
        assert files._DEAD_TEMP.match(name)
    assert files.temp_name(tmp_path / ("b" * 255)) != files.temp_name(tmp_path / ("b" * 254 + "c"))


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(photo, tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    out = tmp_path / "out" / "k.qvrf"
    r = run_cli("encode", "-c", "zoo:balle-qvrf8", "--level", "1", photo, out)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"{out}: No space left on device" in r.stderr  # the file it could not write, named
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor its temporary
    monkeypatch.setenv("QVRF_BENCH_DEBUG", "1")
    with pytest.raises(OSError):
        run_cli("encode", "-c", "zoo:balle-qvrf8", "--level", "1", photo, out)


def test_report_into_a_folder_or_under_a_file(tmp_path):
    from PIL import Image

    ds = tmp_path / "ds"
    ds.mkdir()
    Image.open(PHOTO).crop((0, 0, 128, 96)).save(ds / "a.png")
    run = tmp_path / "run"
    r = run_cli("sweep", "-c", "zoo:balle-qvrf8", "--dataset", ds, "--levels", "0,7", "--factors", "none",
                "--out", run, "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "rep"
    folder.mkdir()
    assert run_cli("report", run, "-o", folder).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["index.html"]
    (tmp_path / "afile").write_text("x")
    r = run_cli("report", run, "-o", tmp_path / "afile" / "x.html")
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("compare", run, "-o", tmp_path / "afile" / "bd")  # refused before any table is computed
    assert r.returncode == 2 and "afile: is a file, not a folder" in r.stderr and r.stdout == ""


def test_info_takes_zoo_names_as_every_command_does():
    r = run_cli("info", "zoo:balle-qvrf8")
    assert r.returncode == 0 and "balle-qvrf8" in r.stdout and "kind qvrf" in r.stdout
    r = run_cli("info", "zoo:no-such-model")
    assert r.returncode == 2 and "no such zoo model" in r.stderr and r.stderr.count("\n") == 1
