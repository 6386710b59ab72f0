"""One analysis path: `qvrf-bench compare RUN` (no --anchor) and the HTML report's BD tables are the
same pairs with the same numbers, on a run with fixed, QVRF (levels + continuous), VBR and classical rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qvrf_bench import analysis
from qvrf_bench.cli import main


def _rows(method, kind, arch, scale, points, seed):
    """Per-image rows of one method; ``points``: (rate_point, level or None, k) with quality rising in k."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(5):
        for rate_point, level, k in points:
            psnr = 27.0 + 2.5 * k + 0.3 * i + 0.05 * rng.standard_normal()
            ms = 1.0 - 10 ** (-(10.0 + 1.4 * k + 0.1 * i) / 10.0)
            out.append(dict(
                method=method(k) if callable(method) else method, arch=arch, kind=kind, rate_point=rate_point,
                level=level, image=f"img{i}.png", bpp_real=scale * 0.1 * 2.0 ** (k + 0.3 * i / 4) * (1 + 0.02 * rng.standard_normal()),
                psnr_rgb=psnr, ms_ssim_rgb=ms, ms_ssim_db_rgb=-10 * np.log10(1 - ms), decode_ok=True, error="",
            ))  # fmt: skip
    return out


@pytest.fixture
def mixed_run(tmp_path):
    levels = [(f"level={k}", float(k), k) for k in range(5)]
    rows = _rows(lambda k: f"balle-fixed-q{k}", "fixed", "balle", 1.0, [(f"level={k}", None, k) for k in range(5)], 1)
    cont = [(f"gain={g:.2f}", None, k) for g, k in ((1.3, 0.5), (2.1, 1.5), (3.4, 2.5), (5.0, 3.5))]
    rows += _rows("zoo:balle-qvrf8", "qvrf", "balle", 0.96, levels + cont, 2)
    # A CompressAI VBR peer: its arch name is not the run's, its family is (bmshj2018-hyperprior-vbr -> balle).
    rows += _rows("bmshj2018-hyperprior-vbr", "vbr", "bmshj2018-hyperprior-vbr", 0.9, levels, 3)
    rows += _rows("jpeg", "classical", "jpeg", 1.8, [(f"q={k}", None, k) for k in range(5)], 4)
    rows += _rows("webp", "classical", "webp", 1.4, [(f"q={k}", None, k) for k in range(5)], 5)
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(run / "results" / "part-0.parquet")
    return run


def test_compare_and_report_give_the_same_bd_numbers(mixed_run, tmp_path, capsys):
    from qvrf_bench.report import figures as F
    from qvrf_bench.report import render

    source = analysis.read_source(mixed_run)
    bd = render.compute_bd(F.measure(source.rows), (), n_boot=0)
    for metric in ("psnr", "ms-ssim"):
        prefix = tmp_path / metric
        assert main(["compare", str(mixed_run), "--metric", metric, "-o", str(prefix)]) == 0
        cli = pd.read_csv(str(prefix) + ".csv").set_index(["test", "anchor"])
        report = bd.tables[metric].set_index(["test", "anchor"])
        assert sorted(cli.index) == sorted(report.index)
        for col in ("bd_rate_pct", "bd_quality_db", "overlap_pct", "sens_median_pct"):
            np.testing.assert_allclose(cli.loc[report.index, col].to_numpy(float), report[col].to_numpy(float),
                                       rtol=0, atol=1e-12, err_msg=f"{metric} {col}")  # fmt: skip
    capsys.readouterr()
    pairs = set(bd.tables["psnr"].set_index(["test", "anchor"]).index)
    # QVRF (all points and its levels alone) and the VBR peer against the run's fixed-rate curve of their family
    for test in ("zoo:balle-qvrf8", "zoo:balle-qvrf8 [levels]", "bmshj2018-hyperprior-vbr"):
        assert (test, "run:fixed:balle") in pairs
    # every learned curve against each classical codec; no classical codec against another
    for test in ("zoo:balle-qvrf8", "bmshj2018-hyperprior-vbr", "run:fixed:balle"):
        assert {(test, "jpeg"), (test, "webp")} <= pairs
    assert ("jpeg", "webp") not in pairs and ("webp", "jpeg") not in pairs
    assert len(pairs) == 3 + 4 * 2


def test_run_kind_anchors_group_by_family(mixed_run, tmp_path, capsys):
    """``--anchor run:fixed`` pairs the VBR peer (arch bmshj2018-hyperprior-vbr) with the balle fixed
    curve, as the report does; ``run:classical`` is each codec against every other curve."""
    prefix = tmp_path / "bd"
    assert (
        main(["compare", str(mixed_run), "--anchor", "run:fixed", "--anchor", "run:classical", "-o", str(prefix)]) == 0
    )
    capsys.readouterr()
    pairs = set(pd.read_csv(str(prefix) + ".csv").set_index(["test", "anchor"]).index)
    assert ("bmshj2018-hyperprior-vbr", "run:fixed:balle") in pairs
    assert {("run:fixed:balle", "jpeg"), ("zoo:balle-qvrf8 [levels]", "webp")} <= pairs
    assert not any(a in ("jpeg", "webp") and t in ("jpeg", "webp") for t, a in pairs)


def test_compare_and_report_give_the_same_band_numbers(mixed_run, tmp_path, capsys):
    """``compare --range bands`` and the report's band table: the same pairs, the same numbers
    (rd.band_bd on the same curves)."""
    from qvrf_bench.analysis import rd
    from qvrf_bench.report import figures as F
    from qvrf_bench.report import render

    source = analysis.read_source(mixed_run)
    bd = render.compute_bd(F.measure(source.rows), (), n_boot=0)
    prefix = tmp_path / "bd"
    assert main(["compare", str(mixed_run), "--range", "bands", "-o", str(prefix)]) == 0
    out = capsys.readouterr().out
    assert "BD within bands" in out and "| low (0-0.4 bpp) |" in out
    cli = pd.read_csv(str(prefix) + ".bands.csv").set_index(["test", "anchor", "band"])
    report = bd.bands.set_index(["test", "anchor", "band"])
    assert sorted(cli.index) == sorted(report.index) and len(report) == 3 * bd.tables["psnr"].shape[0]
    np.testing.assert_allclose(cli.loc[report.index, "bd_rate_pct"].to_numpy(float),
                               report["bd_rate_pct"].to_numpy(float), rtol=0, atol=1e-12)  # fmt: skip
    assert set(report.reset_index()["band"]) == {b.text() for b in rd.DEFAULT_BANDS}
