"""Anchors: the packaged curves, the schema, importers, exporter and the registry."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from qvrf_bench.analysis import anchors
from qvrf_bench.cli import main
from qvrf_bench.errors import QVRFError

REPO = Path(__file__).resolve().parents[2]

REQUIRED = {
    # CompressAI zoo, MSE, both devices, plus the 8-bit-decoded runs
    "compressai/kodak/bmshj2018-hyperprior-mse-cuda": 8,
    "compressai/kodak/bmshj2018-hyperprior-mse-cpu": 8,
    "compressai/kodak/mbt2018-mean-mse-cuda": 8,
    "compressai/kodak/mbt2018-mse-cuda": 8,
    "compressai/kodak/mbt2018-mse-cpu": 8,
    "compressai/kodak/cheng2020-attn-mse-cuda": 6,
    "compressai/kodak/cheng2020-attn-mse-cpu": 6,
    "compressai/kodak/cheng2020-anchor-mse-cuda": 6,
    "compressai/kodak/bmshj2018-factorized-mse-cuda": 8,
    "compressai/kodak/bmshj2018-hyperprior-mse-cuda-8bit": 8,
    "compressai/kodak/cheng2020-attn-mse-cuda-8bit": 6,
    # variable rate
    "compressai/kodak/bmshj2018-hyperprior-vbr-mse": 16,
    "compressai/kodak/mbt2018-mean-vbr-mse": 16,
    "compressai/kodak/mbt2018-vbr-mse": 16,
    # classical
    "compressai/kodak/jpeg": 19,
    "compressai/kodak/jpeg2000": 19,
    "compressai/kodak/webp": 19,
    "compressai/kodak/bpg-444-x265-ycbcr": 8,
    "compressai/kodak/hm": 8,
    "compressai/kodak/vtm": 8,
    "compressai/kodak/av1": 12,
    # QVRF
    "qvrf/kodak/hyper+qvrf": 15,
    "qvrf/kodak/joint+qvrf": 15,
    "qvrf/kodak/cheng2020+qvrf": 8,
    "qvrf/kodak/retrained-cheng2020": 8,
    "qvrf/clic-test/joint+qvrf": 15,
    "qvrf/jpegai-test/joint+qvrf": 15,
}


def test_packaged_anchors_are_complete_and_consistent():
    found = {a.name: a for a in anchors.list_anchors(include_user=False)}
    for name, n in REQUIRED.items():
        assert name in found, name
        assert len(found[name].points) == n, name
    root = anchors.packaged_dir()
    for a in found.values():
        # The file's path is its name: one source of truth, no aliasing.
        assert a.path.resolve() == (root / (a.name + ".json")).resolve()
        assert a.kind in anchors.KINDS
        assert a.source.get("repo") and a.source.get("commit") and a.citation
        assert all(p.bpp > 0 for p in a.points)
    a = found["compressai/kodak/cheng2020-attn-mse-cuda-8bit"]
    assert a.metrics["psnr_rgb"] == "8bit" and a.bpp_real is True and a.device == "cuda"
    assert found["compressai/kodak/cheng2020-attn-mse-cuda"].reconstruction == "float"
    # CompressAI's 8bit-decoded *_ms-ssim_* files duplicate the MSE models' numbers: left out.
    assert not [n for n in found if n.endswith("-ms-ssim-cuda-8bit")]
    assert found["compressai/kodak/jpeg"].kind == "classical"
    assert found["qvrf/kodak/hyper+qvrf"].kind == "variable-rate"
    retrained = found["qvrf/kodak/retrained-cheng2020"]
    assert retrained.kind == "fixed-rate-set" and retrained.points[-1].label == "lambda=0.18"
    # The symlink in the repo's anchors/ folder points at the packaged files.
    link = REPO / "anchors" / "published"
    assert link.is_symlink() and link.resolve() == root.resolve()


def test_packaged_values_match_the_method_notes():
    a = anchors.load_anchor("qvrf/kodak/cheng2020+qvrf")
    assert [round(p.bpp, 4) for p in a.points][:3] == [0.1553, 0.2268, 0.3267]
    assert round(a.points[0].psnr_rgb, 3) == 29.436 and a.points[0].label == "level 0"
    h = anchors.load_anchor("COMPRESSAI/kodak/bmshj2018-hyperprior-mse-cuda")  # case-insensitive
    assert round(h.points[0].bpp, 4) == 0.1313 and h.points[-1].label == "q8"
    assert h.points[0].enc_s is not None and h.points[0].ms_ssim_db_rgb is not None
    paper = anchors.load_anchor("compressai/kodak/paper-elic2022-ms-ssim")
    assert paper.points[0].psnr_rgb is None and paper.points[0].ms_ssim_db_rgb is not None
    assert paper.has_metric("ms-ssim") and not paper.has_metric("psnr")
    with pytest.raises(QVRFError, match="no PSNR"):
        paper.curve("psnr")


def test_unknown_name_lists_close_names():
    with pytest.raises(QVRFError, match="unknown anchor.*compressai/kodak/bmshj2018-hyperprior-mse-cuda"):
        anchors.load_anchor("compressai/kodak/bmshj2018-hyperprior-mse")
    with pytest.raises(QVRFError, match="qvrf/kodak/hyper\\+qvrf"):
        anchors.load_anchor("hyper+qvrf")


def test_lenient_json():
    text = '{"a": [1, 2, 3,\n ], "s": "x,]", "b": {"c": 1,\t},\n}'
    assert anchors.parse_lenient_json(text) == {"a": [1, 2, 3], "s": "x,]", "b": {"c": 1}}
    with pytest.raises(QVRFError, match="bad.txt: not JSON"):
        anchors.parse_lenient_json("{oops", "bad.txt")


QVRF_TXT = """{
  "name": "Mine+QVRF",
  "description": "Inference (ans)",
  "results": {
    "psnr-rgb": [
                   29.1,
                    31.0,
                    33.2,
    ],
    "ms-ssim-rgb": [
      \t\t     0.94,
                          0.96,
                          0.97,
    ],
    "bpp": [
      \t            0.2,
                       0.3,
                       0.45
    ],

  }
}
"""


def test_import_qvrf_txt_and_roundtrip(tmp_path):
    src = tmp_path / "Mine+QVRF.txt"
    src.write_text(QVRF_TXT)
    a = anchors.import_curve_file(src, name="user/kodak/mine+qvrf", dataset="kodak", kind="variable-rate")
    assert [p.bpp for p in a.points] == [0.2, 0.3, 0.45]
    assert a.points[1].psnr_rgb == 31.0 and a.points[0].label == "p1"
    assert a.points[0].ms_ssim_db_rgb == pytest.approx(-10 * __import__("math").log10(0.06))
    assert a.source["original_name"] == "Mine+QVRF"

    out = anchors.export_compressai(a, tmp_path / "out.json")
    data = json.loads(out.read_text())  # strict JSON
    assert data["results"]["bpp"] == [0.2, 0.3, 0.45] and "ms-ssim-db-rgb" not in data["results"]
    back = anchors.import_curve_file(out, name="user/kodak/again", dataset="kodak")
    assert back.points == a.points
    assert (back.kind, back.metrics, back.source) == (a.kind, a.metrics, a.source)

    path = anchors.write_anchor(back, tmp_path / "again.json")
    assert anchors.read_anchor(path).points == a.points


def test_csv_import_and_errors(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("label,bpp,psnr,ms_ssim\nq1,0.1,28,0.93\nq2,0.2,30,\n")
    a = anchors.import_curve_file(f, name="user/kodak/c", dataset="kodak")
    assert a.kind == "fixed-rate-set" and a.points[1].ms_ssim_rgb is None and a.points[1].label == "q2"
    f.write_text("rate,quality\n0.1,28\n")
    with pytest.raises(QVRFError, match="needs columns bpp and psnr"):
        anchors.import_curve_file(f, name="user/kodak/c", dataset="kodak")
    g = tmp_path / "g.json"
    g.write_text('{"results": {"bpp": [0.1, 0.2], "psnr-rgb": [30]}}')
    with pytest.raises(QVRFError, match="differ in length"):
        anchors.import_curve_file(g, name="user/kodak/g", dataset="kodak")
    with pytest.raises(QVRFError, match="not a valid anchor name"):
        anchors.check_name("User/Kodak/My Model")
    assert anchors.user_anchor_name("My Model", "Kodak") == "user/kodak/my-model"


def test_cli_import_list_show_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default user folder is ./anchors/user
    monkeypatch.delenv(anchors.ENV_DIRS, raising=False)
    src = tmp_path / "mine.txt"
    src.write_text(QVRF_TXT)
    assert main(["anchors", "import", str(src), "--name", "Mine", "--dataset", "kodak", "--kind", "variable-rate"]) == 0
    assert (tmp_path / "anchors" / "user" / "kodak" / "mine.json").is_file()
    assert main(["anchors", "import", str(src), "--name", "Mine", "--dataset", "kodak"]) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(["anchors", "list", "--dataset", "kodak", "--source", "user"]) == 0
    out = capsys.readouterr().out
    assert "user/kodak/mine" in out and "variable-rate" in out and "1 anchor(s)" in out
    assert main(["anchors", "show", "user/kodak/mine"]) == 0
    assert "0.4500" in capsys.readouterr().out
    assert main(["anchors", "export", "qvrf/kodak/hyper+qvrf", "-o", "h.json"]) == 0
    assert len(json.loads((tmp_path / "h.json").read_text())["results"]["bpp"]) == 15
    assert main(["anchors", "show", "qvrf/kodak/nope"]) == 2
    assert "unknown anchor" in capsys.readouterr().err
    # Another folder, through the environment variable.
    other = tmp_path / "elsewhere"
    assert main(["anchors", "import", str(src), "--name", "x", "--dataset", "clic", "--dir", str(other)]) == 0
    monkeypatch.setenv(anchors.ENV_DIRS, str(other))
    assert anchors.load_anchor("user/clic/x").dataset == "clic"
    # A broken user file is skipped with a warning, not fatal for every lookup.
    (other / "clic" / "broken.json").write_text("{nope")
    with pytest.warns(anchors.AnchorWarning, match="broken.json"):
        assert anchors.load_anchor("qvrf/kodak/hyper+qvrf").kind == "variable-rate"


def test_listing_all(capsys):
    assert main(["anchors", "list"]) == 0
    out = capsys.readouterr().out
    assert "compressai/kodak/cheng2020-attn-mse-cuda" in out and "InterDigitalInc/CompressAI@92d3a6b" in out


def _build_module():
    spec = importlib.util.spec_from_file_location("anchors_build", REPO / "anchors" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_script_reproduces_the_packaged_files(published_dir):
    files = _build_module().build(published_dir)
    root = anchors.packaged_dir()
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.json")}
    assert set(files) == on_disk
    for rel, text in files.items():
        assert (root / rel).read_text(encoding="utf-8") == text, rel


def test_packaged_numbers_equal_the_published_files(published_dir):
    raw = anchors.parse_lenient_json((published_dir / "qvrf" / "kodak" / "Hyper+QVRF.txt").read_text())
    a = anchors.load_anchor("qvrf/kodak/hyper+qvrf")
    assert [p.bpp for p in a.points] == raw["results"]["bpp"]
    assert [p.psnr_rgb for p in a.points] == raw["results"]["psnr-rgb"]
