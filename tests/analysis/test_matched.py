"""Matched-rate rows (sweep --target-bpp), their analysis (matched.py), crops and the report section."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from qvrf_bench.analysis import matched
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models import create
from qvrf_bench.models.checkpoints import load_model, save_checkpoint
from qvrf_bench.models.qvrf import trained_gains
from qvrf_bench.results import crops
from qvrf_bench.results.store import ResultStore
from qvrf_bench.sweep import ratecontrol
from qvrf_bench.sweep import run as sweep
from qvrf_bench.sweep.run import SweepConfig, run_sweep

# --- pure -----------------------------------------------------------------------------------------


def test_quality_at_interpolates_in_log_rate_without_extrapolating():
    r, q = np.array([0.1, 0.2, 0.4, 0.8]), np.array([25.0, 27.0, 29.0, 31.0])  # linear in log2 rate
    assert matched.quality_at(r, q, 0.2) == pytest.approx(27.0)
    assert matched.quality_at(r, q, math.sqrt(0.1 * 0.2)) == pytest.approx(26.0, abs=1e-9)
    assert math.isnan(matched.quality_at(r, q, 0.05)) and math.isnan(matched.quality_at(r, q, 0.9))
    assert matched.quality_at([0.3], [30.0], 0.3) == 30.0 and math.isnan(matched.quality_at([0.3], [30.0], 0.31))
    # unsorted, a duplicate rate (best kept), NaN dropped
    assert matched.quality_at([0.4, 0.1, 0.4, 0.2, 0.3], [29, 25, 28, np.nan, 28], 0.4) == 29


def _rows(method, kind, image, pts, target=None):
    return [dict(method=method, kind=kind, arch="balle", image=image, image_sha256="s" + image, bpp_real=b,
                 psnr_rgb=q, target_bpp=target, decode_ok=True, error="") for b, q in pts]  # fmt: skip


def test_matched_deltas_and_summary():
    rows = []
    for i, off in enumerate([0.5, 1.0, 1.5, -0.2]):
        im = f"im{i}"
        rows += _rows("A", "fixed", im, [(0.1, 25), (0.2, 27), (0.4, 29), (0.8, 31)])
        rows += _rows("Q", "qvrf", im, [(0.2, 27 + off)], target=0.2)  # achieved exactly at the target
    rows += _rows("Q", "qvrf", "im9", [(0.2, 30)], target=0.2)  # no anchor curve on that image
    df = pd.DataFrame(rows)
    d = matched.matched_deltas(df[df.method == "Q"], df[df.method == "A"])
    assert list(d["delta"].round(6)[:4]) == [0.5, 1.0, 1.5, -0.2] and math.isnan(d["delta"].iloc[4])
    (s,) = matched.summarize(d)
    assert (s.n_images, s.n_out_of_range, s.wins, s.losses) == (4, 1, 3, 1)
    assert s.mean_delta == pytest.approx(0.7)
    sd = np.std([0.5, 1.0, 1.5, -0.2], ddof=1)
    half = 3.182446305284263 * sd / 2  # t(0.975, 3)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.7 - half, 0.7 + half))
    # sweep rows of Q (no target) are not matched rows; error rows are ignored on both sides
    df2 = pd.concat([df, pd.DataFrame(_rows("Q", "qvrf", "im0", [(0.3, 40)]))], ignore_index=True)
    df2.loc[(df2.method == "A") & (df2.image == "im1"), "error"] = "broken"
    d2 = matched.matched_deltas(df2[df2.method == "Q"], df2[df2.method == "A"])
    assert len(d2) == 5 and math.isnan(d2.set_index("image").loc["im1", "delta"])


def test_crop_box_finds_the_detail():
    rgb = np.full((200, 300, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    rgb[120:190, 200:290] = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
    top, left, size = crops.crop_box(rgb, 64)
    assert size == 64 and 120 - 16 <= top <= 190 - 64 + 16 and 200 - 16 <= left <= 290 - 64 + 16
    assert crops.crop_box(rgb[:40, :50], 64) == (0, 0, 40)
    assert crops.crop_key("a", "b", "c") != crops.crop_key("a", "b", "d")


# --- a real sweep with targets and crops ----------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("matched")
    torch.manual_seed(0)
    save_checkpoint(d / "q.pt", create("balle", "qvrf", N=8, M=12))
    for lm in (0.0018, 0.18):
        torch.manual_seed(1)
        save_checkpoint(d / f"f{lm}.pt", create("balle", "fixed", N=8, M=12, lmbda=lm))
    ds = d / "ds"
    ds.mkdir()
    Image.fromarray(data.chelsea()[:96, :128]).save(ds / "a.png")
    Image.fromarray(data.astronaut()[100:196, 100:228]).save(ds / "b.png")
    # a target inside the QVRF model's range on image a
    model, _ = load_model(d / "q.pt")
    rgb = np.array(Image.open(ds / "a.png").convert("RGB"))
    probe = ratecontrol.MethodProbe(QVRFMethod(model, container=2), rgb, "bpp")
    lo, hi = (probe(g)[0] for g in trained_gains(model))
    mid = round((lo + hi) / 2, 3)
    cfg = dict(dataset=ds, out=d / "run", checkpoints=[d / "q.pt", d / "f0.0018.pt", d / "f0.18.pt"], levels="all",
               factors="none", peers="jpeg", device="cpu", progress=False, threads=1,
               target_bpp=f"{mid},1.5,0.0001", crops=1)  # fmt: skip
    summary = run_sweep(SweepConfig(**cfg))
    return d, cfg, summary, mid


def test_target_rows(run):
    d, cfg, summary, mid = run
    df = ResultStore(cfg["out"]).read()
    t = df[df["target_bpp"].notna()]
    q = t[(t.kind == "qvrf") & (t.target_bpp == mid)]
    assert set(q["rate_point"]) == {f"target_bpp={mid:g}"} and len(q) == 2
    ok = q[q["decode_ok"]]
    assert len(ok) >= 1 and (ok["bpp_real"] <= mid).all() and (ok["bpp_real"] >= mid * 0.99).all()
    assert ok["gain"].notna().all() and (ok["target_encodes"] >= 2).all() and ok["level"].isna().all()
    # unreachable: an error row naming the range, not a crash; fixed models get no target rows
    low = t[(t.kind == "qvrf") & (t.target_bpp == 0.0001)]
    assert len(low) == 2 and low["error"].str.contains("below what").all() and not low["decode_ok"].any()
    assert not (t.kind == "fixed").any()
    assert t[(t.kind == "qvrf") & (t.target_bpp == 1.5)]["error"].str.contains("above what").all()
    j = t[t.method == "jpeg"]  # tiny images: JPEG cannot go below ~0.55 bpp
    assert len(j) == 6 and j.loc[j.target_bpp == 1.5, "quality"].notna().all()
    assert (j.loc[j.target_bpp == 1.5, "bpp_real"] <= 1.5).all()
    assert j.loc[j.target_bpp < 0.5, "error"].str.contains("below what jpeg reaches").all()
    # RD aggregation leaves matched rows out: the QVRF curve has its 8 levels only
    from qvrf_bench.analysis import rd

    agg = rd.aggregate(df)
    assert set(agg.points.loc[agg.points.method.str.contains("qvrf"), "rate_point"]) == {f"level={i}" for i in range(8)}
    # resume: nothing left to do
    again = run_sweep(SweepConfig(**cfg))
    assert again.rows_written == 0
    assert "--target-bpp" in sweep.command_line(SweepConfig(**cfg))


def test_crops_and_report_section(run):
    d, cfg, summary, mid = run
    stored = crops.read_crops(cfg["out"])
    assert len(stored) == 1  # --crops 1: the first image only
    (entry,) = stored.values()
    assert entry["meta"]["image"] == "a.png" and entry["meta"]["size"] == 96
    assert len(entry["files"]) >= 3  # 2 fixed models + the QVRF and JPEG target rows that decoded
    from qvrf_bench.report import render_report

    html = render_report([cfg["out"]], d / "report.html", n_boot=0).read_text()
    sec = html[html.index('id="matched"') : html.index('id="timing"')]
    assert "Δ PSNR-RGB at the same rate" in sec and "run:fixed:balle" in sec
    assert sec.count("data:image/png;base64,") >= 3 and "nearest anchor" in sec
    assert html.count("<script") == 1  # the report's one inline script (interactive curves) only


def test_shards_keep_their_crops_through_merge(run, tmp_path):
    from qvrf_bench.results.store import merge

    d, cfg, summary, mid = run
    shard_dirs = []
    for i in range(2):
        c = dict(cfg, out=tmp_path / f"s{i}", shard=(i, 2), crops=2, target_bpp=f"{mid}")
        run_sweep(SweepConfig(**c))
        shard_dirs.append(c["out"])
    merged = merge(shard_dirs, tmp_path / "merged")
    assert len(crops.read_crops(merged.run_dir)) == 2
    assert sum(len(crops.read_crops(p)) for p in shard_dirs) == 2  # each image's crops in one shard


def test_jpeg2000_and_webp_targets(tmp_path):
    from skimage import data

    ds = tmp_path / "ds"
    ds.mkdir()
    Image.fromarray(data.astronaut()[:128, :160]).save(ds / "a.png")
    run_sweep(SweepConfig(dataset=ds, out=tmp_path / "run", peers="jpeg2000,webp", device="cpu", progress=False,
                          target_bpp="1.2"))  # fmt: skip
    df = ResultStore(tmp_path / "run").read()
    t = df[df["target_bpp"].notna()].set_index("method")
    assert set(t.index) == {"jpeg2000", "webp"} and t["decode_ok"].all()
    assert (t["bpp_real"] <= 1.2).all()
    assert t.loc["jpeg2000", "bpp_real"] >= 1.2 * 0.99  # a continuous knob meets the 1 % window
