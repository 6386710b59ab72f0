"""`qvrf-bench compare` end to end, in-process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qvrf_bench.analysis import anchors, rd
from qvrf_bench.cli import compare as compare_cli
from qvrf_bench.cli import main

ANCHOR = "compressai/kodak/bmshj2018-hyperprior-mse-cuda"


def test_cli_constants_match_rd():
    assert compare_cli.INTERPOLATIONS == rd.INTERPOLATIONS
    assert compare_cli.SENSITIVITY_MODES == rd.SENSITIVITY_MODES


def write_scaled_csv(path, scale):
    """The anchor's own points with ``scale`` x the bits: a curve with a known BD-rate."""
    pts = anchors.load_anchor(ANCHOR).points
    df = pd.DataFrame({"bpp": [p.bpp * scale for p in pts], "psnr": [p.psnr_rgb for p in pts]})
    df.to_csv(path, index=False)
    return path


def test_csv_against_published_anchor_and_fail_above(tmp_path, capsys):
    csv = write_scaled_csv(tmp_path / "mine.csv", 0.9)
    prefix = tmp_path / "out" / "bd"
    assert main(["compare", str(csv), "--anchor", ANCHOR, "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert "| mine | " + ANCHOR + " | -10.00 |" in out
    table = pd.read_csv(str(prefix) + ".csv")
    assert table.loc[0, "bd_rate_pct"] == pytest.approx(-10.0, abs=1e-6)
    assert table.loc[0, "overlap_pct"] == pytest.approx(100.0)
    assert (table.loc[0, "n_test"], table.loc[0, "n_anchor"], table.loc[0, "sens_n"]) == (8, 8, 70)
    assert "-10.00" in (tmp_path / "out" / "bd.md").read_text()
    assert r"\toprule" in (tmp_path / "out" / "bd.tex").read_text()

    # --fail-above: -10 % is not above -5 % (exit 0) but is above -15 % (exit 1).
    assert main(["compare", str(csv), "--anchor", ANCHOR, "--fail-above", "-5"]) == 0
    assert main(["compare", str(csv), "--anchor", ANCHOR, "--fail-above", "-15"]) == 1
    assert "FAIL: mine vs " + ANCHOR in capsys.readouterr().err
    worse = write_scaled_csv(tmp_path / "worse.csv", 1.2)
    assert main(["compare", str(worse), "--anchor", ANCHOR, "--fail-above", "0", "--sensitivity", "none"]) == 1


def test_errors_are_one_line_exit_2(tmp_path, capsys):
    csv = write_scaled_csv(tmp_path / "mine.csv", 0.9)
    assert main(["compare", str(csv), "--anchor", "compressai/kodak/bmshj2018-hyperprior"]) == 2
    err = capsys.readouterr().err
    assert "unknown anchor" in err and ANCHOR in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(csv), "--anchor", ANCHOR, "--metric", "ms-ssim"]) == 2
    assert "no MS-SSIM" in capsys.readouterr().err
    far = tmp_path / "far.csv"
    far.write_text("bpp,psnr\n3.0,50\n4.0,52\n5.0,54\n")
    assert main(["compare", str(far), "--anchor", ANCHOR]) == 2
    err = capsys.readouterr().err
    assert "no quality overlap" in err and "'far'" in err and ANCHOR in err
    assert main(["compare", str(tmp_path / "nothing"), "--anchor", ANCHOR]) == 2


def test_published_curve_as_test(capsys):
    # The README's numbers come from this form: TEST may be an anchor name.
    assert main(["compare", "qvrf/kodak/cheng2020+qvrf", "--anchor", "qvrf/kodak/retrained-cheng2020"]) == 0
    assert "| -2.07 |" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# A run folder with per-image parquet rows
# ----------------------------------------------------------------------------------------------


def run_rows(method, kind, arch, scale, levels=range(5), noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(6):
        for k in levels:
            psnr = 28.0 + 3.0 * k + 0.4 * i + 0.05 * rng.standard_normal()
            bpp = scale * 0.12 * 2.0 ** (k + 0.4 * i / 3.0) * (1 + noise * rng.standard_normal())
            ms = 1.0 - 10 ** (-(11.0 + 1.5 * k) / 10.0)
            rows.append(
                dict(
                    run_id="r1",
                    method=method(k) if callable(method) else method,
                    arch=arch,
                    kind=kind,
                    rate_point=f"level={k}",
                    image=f"img{i}.png",
                    bpp_real=bpp,
                    psnr_rgb=psnr,
                    ms_ssim_rgb=ms,
                    ms_ssim_db_rgb=-10 * np.log10(1 - ms),
                    decode_ok=True,
                    error="",
                )
            )
    return pd.DataFrame(rows)


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "parts").mkdir(parents=True)
    fixed = run_rows(lambda k: f"balle-fixed-q{k + 1}", "fixed", "balle", 1.0, seed=1)
    qvrf = run_rows("balle-qvrf", "qvrf", "balle", 0.95, seed=2)
    other = run_rows("minnen-qvrf", "qvrf", "minnen", 0.9, seed=3)  # no fixed minnen: no run:fixed pair
    broken = qvrf.iloc[[0]].assign(error="decode failed", psnr_rgb=80.0)
    fixed.to_parquet(run / "parts" / "fixed.parquet")
    pd.concat([qvrf, broken]).to_parquet(run / "parts" / "qvrf.parquet")
    other.to_parquet(run / "minnen.parquet")
    # Ignored: a hidden part being written and a hidden folder.
    qvrf.assign(bpp_real=100.0).to_parquet(run / "parts" / ".part-9.parquet")
    (run / ".staging").mkdir()
    qvrf.assign(bpp_real=100.0).to_parquet(run / ".staging" / "x.parquet")
    return run


def test_run_folder_against_its_fixed_models(run_dir, tmp_path, capsys):
    prefix = tmp_path / "cmp"
    argv = ["compare", str(run_dir), "--anchor", "run:fixed", "--bootstrap", "100", "--per-image", "-o", str(prefix)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    table = pd.read_csv(str(prefix) + ".csv")
    assert table["test"].tolist() == ["balle-qvrf"]
    row = table.iloc[0]
    assert row["anchor"] == "run:fixed:balle" and (row["n_test"], row["n_anchor"]) == (5, 5)
    assert row["bd_rate_pct"] == pytest.approx(-5.0, abs=1.5)
    assert row["ci_low_pct"] < row["bd_rate_pct"] < row["ci_high_pct"]
    assert "ignored 1 row(s) with an error" in captured.err
    assert "no fixed rows of the same arch for minnen-qvrf" in captured.err
    per = pd.read_csv(str(prefix) + ".per_image.csv")
    assert len(per) == 6 and per["bd_rate_pct"].between(-12, 2).all()

    # Explicit methods merged into one anchor; --method filters the tests; a published anchor too.
    merged = "run:" + "+".join(f"balle-fixed-q{k + 1}" for k in range(5))
    argv = ["compare", str(run_dir), "--anchor", merged, "--anchor", ANCHOR, "--method", "*-qvrf", "-o", str(prefix)]
    assert main(argv) == 0
    table = pd.read_csv(str(prefix) + ".csv")
    assert len(table) == 4  # 2 tests x 2 anchors
    same = table.loc[(table["test"] == "balle-qvrf") & (table["anchor"] == merged), "bd_rate_pct"].item()
    assert same == pytest.approx(row["bd_rate_pct"], abs=1e-9)


def test_rate_payload_excludes_the_header(tmp_path, capsys):
    fixed = run_rows(lambda k: f"balle-fixed-q{k + 1}", "fixed", "balle", 1.0, noise=0.0, seed=1)
    qvrf = run_rows("balle-qvrf", "qvrf", "balle", 0.9, noise=0.0, seed=2)
    rows = pd.concat([fixed, qvrf], ignore_index=True)
    # A constant per-file header inflates the whole-file rate of the small files most.
    rows["payload_bpp_real"] = rows["bpp_real"]
    rows["bpp_real"] = rows["bpp_real"] + np.where(rows["kind"] == "qvrf", 0.02, 0.0)
    rows.to_parquet(tmp_path / "rows.parquet")
    prefix = tmp_path / "bd"
    assert main(["compare", str(tmp_path / "rows.parquet"), "--anchor", "run:fixed", "-o", str(prefix)]) == 0
    file_bd = pd.read_csv(str(prefix) + ".csv")["bd_rate_pct"].item()
    argv = ["compare", str(tmp_path / "rows.parquet"), "--anchor", "run:fixed", "--rate", "payload", "-o", str(prefix)]
    assert main(argv) == 0
    assert "entropy-coded payload" in capsys.readouterr().out
    payload_bd = pd.read_csv(str(prefix) + ".csv")["bd_rate_pct"].item()
    assert payload_bd == pytest.approx(-10.0, abs=0.5) and file_bd > payload_bd + 1.0


def test_run_folder_ms_ssim_and_bad_specs(run_dir, capsys):
    assert main(["compare", str(run_dir / "parts" / "qvrf.parquet"), "--anchor", ANCHOR, "--metric", "ms-ssim"]) == 0
    assert "BD-MS-SSIM [dB]" in capsys.readouterr().out
    assert main(["compare", str(run_dir), "--anchor", "run:fixed:minnen"]) == 2
    assert "no fixed rows of arch 'minnen'" in capsys.readouterr().err
    assert main(["compare", str(run_dir), "--anchor", "run:nope"]) == 2
    assert "no rows for method(s) nope" in capsys.readouterr().err


def test_re_measured_rows_keep_the_latest(tmp_path, capsys):
    pytest.importorskip("qvrf_bench.results.store")
    fixed = run_rows(lambda k: f"balle-fixed-q{k + 1}", "fixed", "balle", 1.0, seed=1)
    qvrf = run_rows("balle-qvrf", "qvrf", "balle", 0.9, noise=0.0, seed=2)
    rows = pd.concat([fixed, qvrf], ignore_index=True)
    rows["checkpoint_sha256"] = rows["method"]
    rows["image_sha256"] = ""
    rows["created_utc"] = pd.Timestamp("2025-01-02", tz="UTC")
    stale = rows.loc[rows["method"] == "balle-qvrf"].assign(
        bpp_real=lambda d: d["bpp_real"] * 3, created_utc=pd.Timestamp("2025-01-01", tz="UTC")
    )
    (tmp_path / "run" / "results").mkdir(parents=True)
    stale.to_parquet(tmp_path / "run" / "results" / "part-1.parquet")
    rows.to_parquet(tmp_path / "run" / "results" / "part-2.parquet")
    prefix = tmp_path / "bd"
    assert main(["compare", str(tmp_path / "run"), "--anchor", "run:fixed", "-o", str(prefix)]) == 0
    assert "30 older row(s) ignored" in capsys.readouterr().err
    bd = pd.read_csv(str(prefix) + ".csv")["bd_rate_pct"].item()
    assert bd == pytest.approx(-10.0, abs=0.5)
