"""The sweep runner: pure parsing and rows, then small real sweeps (narrow models, tiny images)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from qvrf_bench.errors import QVRFError
from qvrf_bench.methods import engine as engine_mod
from qvrf_bench.methods.engine import MethodEngine
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models import PAPER_FACTORS, create
from qvrf_bench.models.checkpoints import save_checkpoint
from qvrf_bench.results.store import ResultStore, sha256_file
from qvrf_bench.sweep import run as sweep
from qvrf_bench.sweep.run import ImageInfo, Measurement, SweepConfig, build_row, run_sweep

# --- pure parts ---------------------------------------------------------------------------------


def test_parse_levels():
    assert sweep.parse_levels("all") == "all" and sweep.parse_levels(None) == "all"
    assert sweep.parse_levels("7,0,3,3") == (0, 3, 7)
    assert sweep.parse_levels([2]) == (2,)
    for bad in ("", "1,,2", "x", "-1"):
        with pytest.raises(QVRFError, match="--levels"):
            sweep.parse_levels(bad)


def test_paper_factors_are_in_units_of_the_starting_a0_not_the_learned_one():
    from qvrf_bench.models.qvrf import LAMBDAS_8, initial_gains

    model = create("balle", "qvrf", N=8, M=12, gains=initial_gains(LAMBDAS_8, 0.18))  # a_0 = 0.1
    with torch.no_grad():
        model.gain[0] = 0.055  # learned, as with train --pinned-level 7
    factors = sweep.paper_factors_for(model)
    assert factors[0] == pytest.approx(0.1 * PAPER_FACTORS[0]) and factors[-1] == pytest.approx(0.1 * PAPER_FACTORS[-1])


def test_parse_factors():
    assert sweep.parse_factors("paper") == PAPER_FACTORS and len(PAPER_FACTORS) == 27
    assert sweep.parse_factors("none") == () and sweep.parse_factors(None) == ()
    assert sweep.parse_factors("4, 1,2.5,1") == (1.0, 2.5, 4.0)
    dense = sweep.parse_factors(sweep.DEFAULT_FACTORS)
    assert len(dense) == 24 and dense[0] == 0.5 and dense[-1] == 12.0
    ratios = np.diff(np.log(dense))
    assert np.allclose(ratios, ratios[0], atol=2e-4)  # log-spaced (up to the 4-decimal rounding)
    assert sweep.parse_factors("2:2:1") == (2.0,)
    for bad in ("0,1", "1:0.5:3", "1:2", "1:2:0", "a", "1,,2", "inf"):
        with pytest.raises(QVRFError, match="--factors"):
            sweep.parse_factors(bad)


def test_cli_default_factors_match():
    from qvrf_bench.cli import sweep as cli_sweep

    assert cli_sweep.DEFAULT_FACTORS == sweep.DEFAULT_FACTORS


def test_parse_peers_vbr_qualities():
    assert sweep.parse_peers("jpeg, webp,jpeg") == ("jpeg", "webp")
    with pytest.raises(QVRFError, match="use --vbr mbt2018-vbr=STATEDICT"):
        sweep.parse_peers("mbt2018-vbr")
    with pytest.raises(QVRFError, match="unknown codec 'png'"):
        sweep.parse_peers("png")
    assert sweep.parse_vbr("mbt2018-mean-vbr=a=b.pth") == ("mbt2018-mean-vbr", "a=b.pth")
    with pytest.raises(QVRFError, match="ARCH=STATEDICT"):
        sweep.parse_vbr("weights.pth")
    assert sweep.parse_peer_qualities("jpeg=10,50") == ("jpeg", (10.0, 50.0))
    with pytest.raises(QVRFError, match="NAME=Q1"):
        sweep.parse_peer_qualities("jpeg=")


def test_model_rate_points():
    torch.manual_seed(0)
    q = QVRFMethod(create("balle", "qvrf", N=8, M=12), container=2)
    pts = sweep.model_rate_points(q, (0, 7), (1.5,))
    assert [(p.level, p.value) for p in pts] == [(0, None), (7, None), (None, 1.5)]
    assert [p.label for p in pts] == ["level=0", "level=7", "gain=1.5000"]
    assert len(sweep.model_rate_points(q, "all", PAPER_FACTORS)) == 35
    fixed = QVRFMethod(create("balle", "fixed", N=8, M=12, lmbda=0.0483), container=2)
    assert [p.label for p in sweep.model_rate_points(fixed, (3, 5), (2.0,))] == ["level=0"]
    with pytest.raises(QVRFError, match="q.pt: has levels 0..7; --levels asks for 8"):
        sweep.model_rate_points(q, (1, 8), (), source="q.pt")


def test_build_row_pure():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    info = ImageInfo("sub/a.png", "abc", 50, 40, ("grayscale image converted to RGB",))
    fields = {"method": "m", "arch": "balle", "kind": "qvrf", "rate_point": "level=1", "level": 1, "gain": None}
    row = build_row(fields, info, orig, Measurement(123, 80, orig.copy(), True, 0.1, 0.2, gain=1.3944))
    assert row["bpp_real"] == 8 * 123 / (40 * 50) and row["payload_bpp_real"] == 8 * 80 / (40 * 50)
    assert row["psnr_rgb"] == math.inf and math.isnan(row["ms_ssim_rgb"]) and row["decode_ok"]
    assert row["gain"] == 1.3944 and row["error"] == "" and row["image"] == "sub/a.png"
    assert row["notices"] == "grayscale image converted to RGB; MS-SSIM undefined: shorter side < 161 px"
    bad = build_row(fields, info, orig, Measurement(123, 80, orig[:20], True, 0.1, 0.2))
    assert not bad["decode_ok"] and "decoded image is 50x20, expected 50x40" in bad["error"]
    assert bad["bpp_real"] == 8 * 123 / 2000 and bad["psnr_rgb"] is None
    mismatch = build_row(fields, info, orig, Measurement(123, 80, orig, False, 0.1, 0.2))
    assert not mismatch["decode_ok"] and "latent differs" in mismatch["error"] and mismatch["psnr_rgb"] == math.inf
    failed = build_row(fields, info, orig, Measurement(None, None, None, False, None, None, "coding failed: X"))
    assert failed["bytes"] is None and failed["bpp_real"] is None and failed["error"] == "coding failed: X"


def test_checkpoint_fields():
    torch.manual_seed(0)
    q = QVRFMethod(create("balle", "qvrf", N=8, M=12), name="balle-qvrf8-8x12", container=2)
    m = sweep._LearnedMethod(q, MethodEngine("serial"), "qvrf-v2=c.pt", "c.pt", "sha", sweep.model_rate_points(q, "all", (1.1,)),
                             checkpoint_config=True)  # fmt: skip
    f = m.fields(m.points[3])
    assert (f["level"], f["lmbda"], f["gain"], f["rate_point"]) == (
        3,
        0.013,
        float(np.float32(q.model.level_gain(3))),
        "level=3",
    )
    assert f["method"] == "balle-qvrf8-8x12" and f["engine"] == "serial" and f["kind"] == "qvrf"
    f = m.fields(m.points[-1])
    assert f["level"] is None and f["lmbda"] is None and f["gain"] == float(np.float32(1.1))
    assert m.config() == {"method": "balle-qvrf8-8x12", "file": "c.pt", "sha256": "sha", "arch": "balle",
                          "kind": "qvrf", "points": [p.label for p in m.points]}  # fmt: skip


# --- real sweeps --------------------------------------------------------------------------------

VOLATILE = ["enc_s", "dec_s", "created_utc", "run_id", "shard"]


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=VOLATILE)
    return df.sort_values(["method", "rate_point", "image"]).reset_index(drop=True)


class CountingEngine(MethodEngine):
    """The serial engine, recording every run_image call."""

    calls: list = []

    def __init__(self):
        super().__init__("serial")

    def run_image(self, method, rgb, points, fingerprint):
        type(self).calls.append((method.name, tuple(p.label for p in points), rgb.shape))
        return super().run_image(method, rgb, points, fingerprint)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("sweep")
    torch.manual_seed(0)
    save_checkpoint(d / "q.pt", create("balle", "qvrf", N=8, M=12))
    save_checkpoint(d / "f.pt", create("balle", "fixed", N=8, M=12, lmbda=0.0018))
    ds = d / "ds"
    (ds / "sub").mkdir(parents=True)
    Image.fromarray(data.chelsea()[:64, :60]).save(ds / "a.png")
    Image.fromarray(data.astronaut()[100:148, 100:164]).save(ds / "sub" / "b.png")
    Image.fromarray(data.camera()[:32, :56]).save(ds / "g.png")  # grayscale
    return d


def config(setup, out, **kw):
    base = dict(dataset=setup / "ds", out=out, checkpoints=[setup / "q.pt", setup / "f.pt"], levels="0,7",
                factors="2", peers="jpeg", peer_qualities={"jpeg": [10, 50]}, device="cpu", progress=False, threads=1)  # fmt: skip
    base.update(kw)
    return SweepConfig(**base)


@pytest.fixture(scope="module")
def baseline(setup):
    CountingEngine.calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(engine_mod.ENGINES, "counting", CountingEngine)
        summary = run_sweep(config(setup, setup / "runs" / "base", engine="counting"))
    return summary, list(CountingEngine.calls)


def test_sweep_rows(setup, baseline):
    summary, calls = baseline
    df = ResultStore(summary.run_dir).read()
    # methods x points x images: (qvrf 3 + fixed 1 + jpeg 2) x 3
    assert len(df) == summary.rows_total == summary.rows_written == 18 and summary.n_failures == 0
    assert df.groupby("method").size().to_dict() == {"balle-qvrf8-8x12": 9, "balle-fixed-8x12-l0.0018": 3, "jpeg": 6}
    assert (df["bpp_real"] == 8 * df["bytes"] / (df["width"] * df["height"])).all()
    assert (df["payload_bpp_real"] == 8 * df["payload_bytes"] / (df["width"] * df["height"])).all()
    assert df["decode_ok"].all() and (df["error"] == "").all()
    assert set(df["image"]) == {"a.png", "sub/b.png", "g.png"}
    # each image once per checkpoint, all its points in one engine call
    assert sorted(c[:2] for c in calls) == sorted(
        [("balle-fixed-8x12-l0.0018", ("level=0",))] * 3 + [("balle-qvrf8-8x12", ("level=0", "level=7", "gain=2.0000"))] * 3
    )  # fmt: skip
    q = df[df["method"] == "balle-qvrf8-8x12"].set_index(["rate_point", "image"])
    assert q.loc[("level=7", "a.png"), "lmbda"] == 0.18 and q.loc[("level=7", "a.png"), "gain"] == 10.0
    assert pd.isna(q.loc[("gain=2.0000", "a.png"), "lmbda"]) and q.loc[("gain=2.0000", "a.png"), "gain"] == 2.0
    assert q.loc[("level=0", "a.png"), "level"] == 0 and pd.isna(q.loc[("gain=2.0000", "a.png"), "level"])
    assert (q["checkpoint_sha256"] == sha256_file(setup / "q.pt")).all() and (q["kind"] == "qvrf").all()
    assert (q["engine"] == "serial").all() and (q["image_sha256"].str.len() == 64).all()
    f = df[df["kind"] == "fixed"]
    assert (f["arch"] == "balle").all() and (f["lmbda"] == 0.0018).all() and (f["gain"] == 1.0).all()
    j = df[df["method"] == "jpeg"]
    assert set(j["rate_point"]) == {"q=10", "q=50"} and (j["engine"] == "pillow").all()
    assert (j["checkpoint"] == "").all() and j["codec_version"].str.startswith("Pillow").all()
    g = df[df["image"] == "g.png"]
    assert g["notices"].str.startswith("grayscale image converted to RGB").all()
    assert (df["width"].isin([60, 64, 56])).all() and df["ms_ssim_rgb"].isna().all()  # < 161 px: NaN
    # the closing table: every method, sorted by rate, with row counts
    text = summary.text()
    assert "balle-qvrf8-8x12  [qvrf, balle]  3 rate points x 3 images = 9 rows, 0 failed" in text
    assert "18 rows (18 measured now, 0 already done); 0 failure(s); engine serial" in text
    pts = summary.points[summary.points["method"] == "balle-qvrf8-8x12"]
    assert list(pts["bpp_real"]) == sorted(pts["bpp_real"])
    manifest = ResultStore(summary.run_dir).manifest
    assert manifest["config"]["dataset"]["images"] == 3 and manifest["command"][:2] == ["qvrf-bench", "sweep"]


class Crash(BaseException):
    """Stands in for kill -9: not an Exception, so the sweep cannot turn it into error rows."""


def test_resume_after_crash_equals_uninterrupted(setup, baseline, monkeypatch):
    class CrashingEngine(MethodEngine):
        left = 3

        def __init__(self):
            super().__init__("serial")

        def run_image(self, method, rgb, points, fingerprint):
            type(self).left -= 1
            if type(self).left < 0:
                raise Crash
            return super().run_image(method, rgb, points, fingerprint)

    monkeypatch.setitem(engine_mod.ENGINES, "crashing", CrashingEngine)
    out = setup / "runs" / "crash"
    with pytest.raises(Crash):
        run_sweep(config(setup, out, engine="crashing"))
    before = ResultStore(out).read()
    assert 0 < len(before) < 18
    resumed = run_sweep(config(setup, out, engine="serial"))
    assert resumed.rows_already_done == len(before) and resumed.rows_written == 18 - len(before)
    raw = ResultStore(out).read(dedupe=False)
    assert len(raw) == 18  # nothing measured twice
    pd.testing.assert_frame_equal(comparable(raw), comparable(ResultStore(baseline[0].run_dir).read()))
    n_parts = len(ResultStore(out).parts())
    again = run_sweep(config(setup, out))  # all done: measures nothing, writes nothing
    assert again.rows_written == 0 and again.rows_already_done == 18 and len(ResultStore(out).parts()) == n_parts


def test_different_config_into_same_run_fails(setup, baseline):
    with pytest.raises(QVRFError, match="different config"):
        run_sweep(config(setup, baseline[0].run_dir, levels="0"))


def test_failing_point_becomes_an_error_row(setup, monkeypatch):
    class Flaky(MethodEngine):
        def __init__(self):
            super().__init__("serial")

        def run_image(self, method, rgb, points, fingerprint):
            if any(p.value == 2.0 for p in points) and rgb.shape[0] == 64:
                raise RuntimeError("rANS decoder exploded\nsecond line")
            return super().run_image(method, rgb, points, fingerprint)

    monkeypatch.setitem(engine_mod.ENGINES, "flaky", Flaky)
    out = setup / "runs" / "flaky"
    only_q = dict(checkpoints=[setup / "q.pt"], peers="", peer_qualities={})
    s = run_sweep(config(setup, out, engine="flaky", **only_q))
    df = ResultStore(out).read()
    assert len(df) == 9
    bad = df[df["error"] != ""]
    assert list(zip(bad["rate_point"], bad["image"], strict=True)) == [("gain=2.0000", "a.png")]
    assert bad["error"].iloc[0] == "coding failed: RuntimeError: rANS decoder exploded"
    assert not bad["decode_ok"].iloc[0] and pd.isna(bad["bytes"].iloc[0])
    assert s.error_rows == [
        ("balle-qvrf8-8x12", "gain=2.0000", "a.png", "coding failed: RuntimeError: rANS decoder exploded")
    ]
    assert s.n_failures == 1 and "1 error row(s):" in s.text()
    # a later run with --retry-failed redoes it (here successfully, with the plain engine)
    s2 = run_sweep(config(setup, out, retry_failed=True, **only_q))
    assert s2.rows_written == 1 and s2.n_failures == 0


def vbr_state_dict(path):
    """A narrow CompressAI bmshj2018-hyperprior-vbr (random weights) saved as a state dict."""
    from compressai.zoo.image_vbr import model_architectures

    torch.manual_seed(0)
    torch.save(model_architectures["bmshj2018-hyperprior-vbr"](8, 12).state_dict(), path)
    return path


def test_vbr_peer_in_the_same_run(setup, tmp_path):
    vbr_state_dict(tmp_path / "vbr.pth")
    ds = tmp_path / "ds"
    ds.mkdir()
    Image.open(setup / "ds" / "a.png").save(ds / "a.png")
    s = run_sweep(SweepConfig(ds, tmp_path / "run", vbr=[f"bmshj2018-hyperprior-vbr={tmp_path / 'vbr.pth'}"],
                              peer_qualities={"bmshj2018-hyperprior-vbr": [10, 1]}, device="cpu", progress=False, threads=1))  # fmt: skip
    df = ResultStore(s.run_dir).read()
    assert sorted(df["rate_point"]) == ["qstep=1.0000", "qstep=10.0000"] and df["decode_ok"].all()
    assert (df["kind"] == "vbr").all() and (df["checkpoint_sha256"] == sha256_file(tmp_path / "vbr.pth")).all()
    assert (df["payload_bytes"] < df["bytes"]).all()


def test_nothing_to_measure_and_bad_checkpoint(setup, tmp_path):
    with pytest.raises(QVRFError, match="nothing to measure"):
        run_sweep(SweepConfig(setup / "ds", tmp_path / "r", progress=False))
    with pytest.raises(QVRFError, match="nope.pt: no such checkpoint file"):
        run_sweep(SweepConfig(setup / "ds", tmp_path / "r", checkpoints=[tmp_path / "nope.pt"], progress=False))
    with pytest.raises(QVRFError, match="given twice"):
        run_sweep(config(setup, tmp_path / "r", checkpoints=[setup / "q.pt", setup / "q.pt"]))
    with pytest.raises(QVRFError, match="--peer-qualities webp: not among the peers"):
        run_sweep(config(setup, tmp_path / "r", peer_qualities={"webp": [50]}))
    assert not (tmp_path / "r").exists()  # settings are checked before the run folder is made


def test_vbr_peer_matched_rate(setup, tmp_path):
    """A VBR peer's quantization step searched to a target between its largest and smallest step."""
    vbr_state_dict(tmp_path / "vbr.pth")
    ds = tmp_path / "ds"
    ds.mkdir()
    from skimage import data

    Image.fromarray(data.astronaut()[:128, :192]).save(ds / "a.png")
    spec = f"bmshj2018-hyperprior-vbr={tmp_path / 'vbr.pth'}"
    s = run_sweep(SweepConfig(ds, tmp_path / "run", vbr=[spec], peer_qualities={"bmshj2018-hyperprior-vbr": [10, 0.2]},
                              device="cpu", progress=False, threads=1))  # fmt: skip
    df = ResultStore(s.run_dir).read().set_index("rate_point")
    lo, hi = df.loc["qstep=10.0000", "bpp_real"], df.loc["qstep=0.2000", "bpp_real"]
    assert hi > lo
    target = round(float(lo + hi) / 2, 4)
    s = run_sweep(SweepConfig(ds, tmp_path / "run2", vbr=[spec], peer_qualities={"bmshj2018-hyperprior-vbr": [10, 0.2]},
                              device="cpu", progress=False, threads=1, target_bpp=str(target)))  # fmt: skip
    t = ResultStore(s.run_dir).read()
    t = t[t["target_bpp"].notna()]
    assert len(t) == 1, t[["rate_point", "error"]]
    t = t.iloc[0]
    assert t["decode_ok"], t["error"] and t["bpp_real"] <= target and 0.1 < t["gain"] < 5.0
