"""BD-rate and friends on hand-made curves with known answers."""

from __future__ import annotations

import itertools
import math
import warnings

import bjontegaard
import numpy as np
import pandas as pd
import pytest

from qvrf_bench.analysis import rd
from qvrf_bench.errors import QVRFError

# An anchor whose log-rate is linear in PSNR (3 dB per doubling): every interpolator reproduces it.
ANCHOR_Q = np.array([27.0, 30.0, 33.0, 36.0, 39.0, 42.0])


def rate_at(q, scale=1.0):
    return scale * 0.1 * 2.0 ** ((np.asarray(q, dtype=float) - 27.0) / 3.0)


def anchor_curve(name="anchor"):
    return rd.Curve(name, rate_at(ANCHOR_Q), ANCHOR_Q)


@pytest.mark.parametrize("interp", rd.INTERPOLATIONS)
def test_ten_percent_fewer_bits_is_minus_ten(interp):
    test = rd.Curve("test", rate_at(ANCHOR_Q, 0.9), ANCHOR_Q)
    res = rd.compare(test=test, anchor=anchor_curve(), interp=interp)
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    # 10 % fewer bits at 3 dB per doubling is log2(1/0.9)*3 dB more quality at equal rate.
    assert res.bd_quality == pytest.approx(3 * math.log2(1 / 0.9), abs=1e-6)
    assert res.overlap_pct == pytest.approx(100.0)
    assert (res.n_test, res.n_anchor) == (6, 6)


@pytest.mark.parametrize("interp", rd.INTERPOLATIONS)
def test_unequal_point_counts_and_other_qualities(interp):
    q = np.linspace(28.0, 40.0, 11)  # 11 test points at PSNRs the anchor does not have
    res = rd.compare(test=rd.Curve("t", rate_at(q, 0.9), q), anchor=anchor_curve(), interp=interp)
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    assert (res.n_test, res.n_anchor) == (11, 6)


def test_sign_more_bits_is_positive():
    res = rd.compare(test=rd.Curve("t", rate_at(ANCHOR_Q, 1.25), ANCHOR_Q), anchor=anchor_curve())
    assert res.bd_rate == pytest.approx(25.0, abs=1e-6)
    assert res.bd_quality < 0


def test_shorthands_are_keyword_only():
    t = rd.Curve("t", rate_at(ANCHOR_Q, 0.9), ANCHOR_Q)
    assert rd.bd_rate(test=t, anchor=anchor_curve()) == pytest.approx(-10.0, abs=1e-6)
    assert rd.bd_psnr(test=t, anchor=anchor_curve()) > 0
    with pytest.raises(TypeError):
        rd.bd_rate(t, anchor_curve())  # positional use could swap test and anchor


def test_unsorted_input_gives_the_same_result():
    order = [3, 0, 5, 1, 4, 2]
    q = ANCHOR_Q[order]
    t = rd.Curve("t", rate_at(q, 0.9), q, tuple(f"p{i}" for i in order))
    a = rd.Curve("a", rate_at(ANCHOR_Q[::-1]), ANCHOR_Q[::-1])
    res = rd.compare(test=t, anchor=a)
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    assert res.dropped_test == ()


def test_non_monotone_points_are_dropped_and_reported():
    q = np.append(ANCHOR_Q, 32.0)  # more bits than the 33 dB point for less quality: dominated
    r = np.append(rate_at(ANCHOR_Q, 0.9), rate_at(33.0, 0.9) * 1.01)
    labels = tuple(f"p{i}" for i in range(6)) + ("bad",)
    res = rd.compare(test=rd.Curve("t", r, q, labels), anchor=anchor_curve())
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    assert [(d.label, d.reason) for d in res.dropped_test] == [("bad", "dominated")]
    assert res.n_test == 6
    with pytest.raises(QVRFError, match="not monotone.*bad"):
        rd.compare(test=rd.Curve("t", r, q, labels), anchor=anchor_curve(), hull=False)


def test_invalid_points_are_dropped():
    q = np.append(ANCHOR_Q, [np.nan, 35.0])
    r = np.append(rate_at(ANCHOR_Q, 0.9), [0.5, 0.0])
    res = rd.compare(test=rd.Curve("t", r, q), anchor=anchor_curve())
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    assert sorted(d.reason for d in res.dropped_test) == ["invalid", "invalid"]


def test_monotone_hull_rule():
    rate = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.4, 0.5])
    qual = np.array([28.0, 30.0, 31.0, 31.0, 32.0, 32.0, 31.5])
    keep = rd.monotone_hull(rate, qual)
    # 0.2/30 loses to 0.2/31 (same rate); 0.3/31 adds bits for no quality; duplicate 0.4/32 once;
    # 0.5/31.5 is below 0.4/32.
    assert keep.tolist() == [True, False, True, False, True, False, False]
    perm = np.random.default_rng(1).permutation(rate.size)
    assert rd.monotone_hull(rate[perm], qual[perm]).sum() == 3


def test_zero_overlap_is_a_clear_error():
    q = ANCHOR_Q + 20.0
    with pytest.raises(QVRFError, match="no quality overlap.*'high'.*'anchor'"):
        rd.compare(test=rd.Curve("high", rate_at(q), q), anchor=anchor_curve())


def test_partial_overlap_percentage_and_warning():
    q = np.array([36.0, 39.0, 42.0, 45.0, 48.0, 51.0])  # anchor 27..42, test 36..51: 6 of the narrower 15 dB
    t = rd.Curve("t", rate_at(q, 0.9), q)
    with pytest.warns(rd.RDWarning, match="overlap 40%"):
        res = rd.compare(test=t, anchor=anchor_curve())
    assert res.overlap_pct == pytest.approx(40.0)
    assert res.low_overlap and res.notes
    assert res.quality_range == (36.0, 42.0)
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rd.compare(test=t, anchor=anchor_curve(), min_overlap_pct=20.0)  # no warning


def test_tables_do_not_present_a_low_overlap_bd_rate_as_a_result():
    q = np.array([36.0, 39.0, 42.0, 45.0, 48.0, 51.0])  # 40 % overlap with the anchor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rd.RDWarning)
        low = rd.compare(test=rd.Curve("low", rate_at(q, 0.9), q), anchor=anchor_curve())
    good = rd.compare(test=rd.Curve("good", rate_at(ANCHOR_Q, 0.9), ANCHOR_Q), anchor=anchor_curve())
    table = rd.results_table([low, good])
    md = rd.format_markdown(table)
    low_line = next(line for line in md.splitlines() if line.startswith("| low "))
    good_line = next(line for line in md.splitlines() if line.startswith("| good "))
    assert "insufficient overlap (40 %)" in low_line and "-10.00" not in low_line
    assert "-10.00" in good_line and "insufficient" not in good_line
    assert "insufficient overlap (40 \\%)" in rd.format_latex(table)
    # the machine-readable CSV keeps the number
    csv_low = next(line for line in rd.format_csv(table).splitlines() if line.startswith("low,"))
    assert float(csv_low.split(",")[4]) == pytest.approx(-10.0, abs=1e-6)
    assert rd.insufficient_overlap(49.9) and not rd.insufficient_overlap(50.0)
    assert rd.insufficient_overlap(float("nan"))


def test_too_few_points():
    t = rd.Curve("t", rate_at([30.0, 33.0, 36.0]), [30.0, 33.0, 36.0])
    with pytest.raises(QVRFError, match="cubic interpolation needs at least 4"):
        rd.compare(test=t, anchor=anchor_curve(), interp="cubic")
    res = rd.compare(test=t, anchor=anchor_curve(), interp="akima", min_overlap_pct=0)
    assert res.bd_rate == pytest.approx(0.0, abs=1e-9)


def test_unknown_interp_and_metric():
    with pytest.raises(QVRFError, match="interpolation"):
        rd.compare(test=anchor_curve(), anchor=anchor_curve(), interp="linear")
    with pytest.raises(QVRFError, match="metric"):
        rd.Curve("x", [1.0], [30.0], metric="vmaf")


REAL_TEST = (
    [0.2034, 0.2473, 0.2965, 0.3386, 0.4148, 0.5050, 0.5720, 0.6820, 0.7731, 0.9112],
    [29.127, 29.962, 30.761, 31.373, 32.351, 33.344, 33.990, 34.929, 35.607, 36.511],
)
REAL_ANCHOR = (
    [0.1313, 0.2089, 0.3199, 0.4784, 0.6687, 0.9388, 1.2592, 1.6602],
    [27.582, 29.197, 30.972, 32.838, 34.526, 36.743, 38.584, 40.557],
)


@pytest.mark.parametrize("interp", rd.INTERPOLATIONS)
def test_agrees_with_bjontegaard_on_real_curves(interp):
    t, a = rd.Curve("t", *REAL_TEST), rd.Curve("a", *REAL_ANCHOR)
    res = rd.compare(test=t, anchor=a, interp=interp, sensitivity="none")
    kw = dict(require_matching_points=False, min_overlap=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert res.bd_rate == pytest.approx(bjontegaard.bd_rate(*REAL_ANCHOR, *REAL_TEST, interp, **kw), abs=1e-9)
        assert res.bd_quality == pytest.approx(bjontegaard.bd_psnr(*REAL_ANCHOR, *REAL_TEST, interp, **kw), abs=1e-9)


def test_subset_fast_path_matches_bjontegaard():
    t, a = rd.Curve("t", *REAL_TEST), rd.Curve("a", *REAL_ANCHOR)
    values = rd.subset_bd_rates(test=t, anchor=a, mode="test", k=4)
    combos = list(itertools.combinations(range(len(t)), 4))
    assert values.size == len(combos) == math.comb(10, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in (0, 17, 101, len(combos) - 1):
            s = list(combos[i])
            ref = bjontegaard.bd_rate(
                a.rate, a.quality, t.rate[s], t.quality[s], "akima", require_matching_points=False, min_overlap=0
            )
            assert values[i] == pytest.approx(ref, abs=1e-9)


def test_subsets_that_barely_overlap_are_skipped_not_counted():
    # Anchor 30..40 dB; the test curve's low subsets end where the anchor starts: the first 4-point
    # subset overlaps the anchor on 0.2 dB of its 3 dB, which must not become a BD-rate.
    anchor = rd.Curve("a", rate_at([30.0, 32.5, 35.0, 37.5, 40.0], 1.0), [30.0, 32.5, 35.0, 37.5, 40.0])
    q = [27.2, 28.2, 29.2, 30.2, 34.0, 38.0]
    test = rd.Curve("t", rate_at(q, 0.8), q)
    values = rd.subset_bd_rates(test=test, anchor=anchor, mode="test", k=4)
    assert math.isnan(values[0])  # subset (0, 1, 2, 3): overlap 0.2 of 3.0 dB
    finite = values[np.isfinite(values)]
    assert finite.size > 0 and np.all(np.abs(finite + 20.0) < 1.0)  # the others see the true -20 %


def test_sensitivity_modes_and_counts():
    t, a = rd.Curve("t", *REAL_TEST), rd.Curve("a", *REAL_ANCHOR)
    assert rd.subset_stats(test=t, anchor=a, mode="test").n == math.comb(10, 4)
    assert rd.subset_stats(test=t, anchor=a, mode="anchor").n == math.comb(8, 4)
    both = rd.subset_stats(test=t, anchor=a, mode="both")
    assert both.n + both.n_skipped == math.comb(10, 4) * math.comb(8, 4)
    res = rd.compare(test=t, anchor=a)
    s = res.sensitivity
    assert s.mode == "test" and s.k == 4
    assert s.min <= res.bd_rate <= s.max or s.min <= s.median <= s.max
    # Paired needs equal counts: not an error inside compare (a note), but an error when asked directly.
    res = rd.compare(test=t, anchor=a, sensitivity="paired")
    assert res.sensitivity.n == 0 and any("paired" in n for n in res.notes)
    with pytest.raises(QVRFError, match="equal point counts"):
        rd.subset_bd_rates(test=t, anchor=a, mode="paired")
    exact = rd.Curve("e", rate_at(ANCHOR_Q, 0.9), ANCHOR_Q)
    paired = rd.compare(test=exact, anchor=anchor_curve(), sensitivity="paired").sensitivity
    assert paired.n == math.comb(6, 4)
    assert paired.min == pytest.approx(-10.0, abs=1e-6) and paired.max == pytest.approx(-10.0, abs=1e-6)
    # A curve shorter than k is used whole.
    short = rd.Curve("s", rate_at([30.0, 33.0, 36.0], 0.9), [30.0, 33.0, 36.0])
    assert rd.subset_stats(test=short, anchor=anchor_curve(), mode="test").n == 1


# ----------------------------------------------------------------------------------------------
# Per-image rows
# ----------------------------------------------------------------------------------------------

IMAGES = [f"img{i:02d}" for i in range(6)]


def image_rows(method, kind, scale=1.0, levels=range(6), arch="balle", noise=0.0, seed=0):
    """Per image, log-rate is linear in PSNR; the test is ``scale`` x the anchor's bits at equal PSNR."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, image in enumerate(IMAGES):
        for k in levels:
            psnr = 27.0 + 3.0 * k + 0.5 * i
            bpp = scale * 0.1 * 2.0 ** (k + 0.5 * i / 3.0) * (1.0 + noise * rng.standard_normal())
            ms = 1.0 - 10 ** (-(10.0 + 1.5 * k + 0.2 * i) / 10.0)
            m = method(k) if callable(method) else method
            rows.append(
                dict(
                    method=m,
                    arch=arch,
                    kind=kind,
                    rate_point=f"level={k}",
                    image=image,
                    bpp_real=bpp,
                    psnr_rgb=psnr,
                    ms_ssim_rgb=ms,
                    ms_ssim_db_rgb=-10 * np.log10(1 - ms),
                    error="",
                    decode_ok=True,
                )
            )
    return pd.DataFrame(rows)


def test_aggregate_means_errors_and_ms_ssim_db():
    rows = image_rows("q", "qvrf")
    bad = rows.iloc[[0]].assign(error="decode failed", psnr_rgb=99.0)
    broken = rows.iloc[[1]].assign(decode_ok=False, psnr_rgb=99.0)
    agg = rd.aggregate(pd.concat([rows, bad, broken], ignore_index=True))
    assert agg.n_error_rows == 2 and agg.error_rows_by_method == {"q": 2}
    pts = agg.points
    assert len(pts) == 6 and (pts["n_images"] == 6).all()
    p0 = pts.loc[pts["rate_point"] == "level=0"].iloc[0]
    assert p0["psnr_rgb"] == pytest.approx(27.0 + 0.5 * np.mean(range(6)))
    sub = rows.loc[rows["rate_point"] == "level=0"]
    assert p0["ms_ssim_db_rgb"] == pytest.approx(-10 * np.log10(1 - sub["ms_ssim_rgb"].mean()))
    assert p0["arch"] == "balle" and p0["kind"] == "qvrf"
    assert len(agg.per_image) == len(rows)
    assert agg.unequal_image_counts() == {}
    short = rd.aggregate(rows.drop(index=[0]))
    assert short.unequal_image_counts() == {"q": [5, 6]}


def test_merge_methods_makes_one_curve_of_fixed_models():
    fixed = image_rows(lambda k: f"balle-fixed-q{k + 1}", "fixed")
    pts = rd.aggregate(fixed).points
    merged = rd.merge_methods(pts, [f"balle-fixed-q{k + 1}" for k in range(6)], "fixed-set")
    curve = rd.curve_from_points(merged, None, "psnr", "fixed-set")
    assert len(curve) == 6 and curve.labels[0] == "balle-fixed-q1:level=0"
    with pytest.raises(QVRFError, match="no rows for method.*nope"):
        rd.merge_methods(pts, ["balle-fixed-q1", "nope"], "x")


def test_per_image_bd_and_bootstrap():
    test_rows = image_rows("balle-qvrf", "qvrf", scale=0.9)
    fixed = image_rows(lambda k: f"balle-fixed-q{k + 1}", "fixed")
    anchor_rows = rd.merge_methods(fixed, sorted(set(fixed["method"])), "run:fixed")
    per = rd.per_image_bd(test_rows, anchor_rows)
    assert list(per["image"]) == IMAGES
    assert np.allclose(per["bd_rate_pct"], -10.0, atol=1e-6)
    ci = rd.bootstrap_ci(test_rows, anchor_rows, n_boot=50, seed=3)
    assert ci.paired and ci.n_ok == 50 and ci.n_images == 6
    assert ci.low == pytest.approx(-10.0, abs=1e-6) and ci.high == pytest.approx(-10.0, abs=1e-6)

    noisy = image_rows("balle-qvrf", "qvrf", scale=0.9, noise=0.05, seed=7)
    a = rd.bootstrap_ci(noisy, anchor_rows, n_boot=200, seed=11)
    b = rd.bootstrap_ci(noisy, anchor_rows, n_boot=200, seed=11)
    assert (a.low, a.high) == (b.low, b.high)  # seeded
    assert a.low < a.estimate < a.high and a.low < -10.0 + 5 and a.high > -10.0 - 5
    # Against a fixed (published-style) curve only the test images are resampled.
    anchor_curve_ = rd.curve_from_rows(anchor_rows, name="fixed")
    c = rd.bootstrap_ci(noisy, anchor_curve_, n_boot=100, seed=0)
    assert not c.paired and c.low < c.high


def test_ms_ssim_metric_from_rows():
    test_pts = rd.aggregate(image_rows("t", "qvrf", scale=0.8)).points
    anchor_pts = rd.aggregate(image_rows("a", "fixed")).points
    t = rd.curve_from_points(test_pts, "t", "ms-ssim")
    a = rd.curve_from_points(anchor_pts, "a", "ms-ssim")
    res = rd.compare(test=t, anchor=a)
    assert res.metric == "ms-ssim" and res.bd_rate < 0
    with pytest.raises(QVRFError, match="is ms-ssim but anchor"):
        rd.compare(test=t, anchor=rd.curve_from_points(anchor_pts, "a", "psnr"))


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def test_table_and_formatters():
    r1 = rd.compare(test=rd.Curve("hyper+qvrf_v2", rate_at(ANCHOR_Q, 0.9), ANCHOR_Q), anchor=anchor_curve("a&b"))
    r2 = rd.compare(test=rd.Curve("t2", rate_at(ANCHOR_Q, 1.05), ANCHOR_Q), anchor=anchor_curve("a&b"))
    table = rd.results_table([r1, r2])
    assert list(table.columns) == rd.TABLE_COLUMNS
    assert table["bd_rate_pct"].tolist() == pytest.approx([-10.0, 5.0], abs=1e-6)
    csv = rd.format_csv(table)
    assert csv.splitlines()[0].startswith("test,anchor,metric,interp,bd_rate_pct")
    md = rd.format_markdown(table)
    assert "| hyper+qvrf_v2 | a&b | -10.00 |" in md and "| t2 | a&b | +5.00 |" in md
    assert "4-pt median [%]" in md and "CI" not in md
    tex = rd.format_latex(table, caption="QVRF 100%", label="tab:bd")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"hyper+qvrf\_v2 & a\&b & $-$10.00" in tex and r"\caption{QVRF 100\%}" in tex
    assert "\N{MINUS SIGN}" not in tex
    with_ci = rd.results_table([r1.with_ci(rd.BootstrapCI(-11, -9, -10, 0.95, 10, 10, 6, 0, True))])
    assert "[-11.00, -9.00]" in rd.format_markdown(with_ci)


def test_overlap_is_the_share_of_the_narrower_curve():
    """A dense curve reaching far past its anchor on both sides covers the whole anchor: 100 %, no
    warning (intersection / union would say 50 % here); a shared range under 1 dB is flagged."""
    q = np.linspace(19.5, 49.5, 31)  # 30 dB around the anchor's 27..42
    wide = rd.Curve("wide", rate_at(q, 0.9), q)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = rd.compare(test=wide, anchor=anchor_curve())
    assert res.overlap_pct == pytest.approx(100.0) and res.quality_range == (27.0, 42.0)
    assert res.bd_rate == pytest.approx(-10.0, abs=1e-6)
    assert rd.range_overlap_pct([0, 10], [5, 30]) == pytest.approx(50.0)  # 5 of the narrower 10
    assert rd.range_overlap_pct([0, 10], [20, 30]) == 0.0
    qa, qt = np.array([30.0, 30.2, 30.4, 30.6]), np.array([30.1, 30.3, 30.5, 30.7])
    with pytest.warns(rd.RDWarning, match="shared quality range of only 0.50 dB"):
        res = rd.compare(test=rd.Curve("t", rate_at(qt), qt), anchor=rd.Curve("a", rate_at(qa), qa))
    assert res.overlap_pct == pytest.approx(500 / 6)
    table = rd.results_table([res])
    assert table.loc[0, "quality_lo_db"] == pytest.approx(30.1) and table.loc[0, "quality_hi_db"] == pytest.approx(30.6)


# --- an independent implementation's test vectors, and BD per band ---------------------------------


@pytest.mark.parametrize("anchor, test, want", [
    ([(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
     [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
     -0.00465215420752807),
    ([(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
     [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
     -0.018779823450567612),
])  # fmt: skip
def test_pchip_bd_rate_matches_the_jctvc_vectors_netflix_vmaf_is_tested_on(anchor, test, want):
    """Netflix vmaf's BDrateCalculator (JCT-VC's piecewise cubic) is validated on these pairs
    (python/test/bd_rate_calculator_test.py, values as fractions); ours with pchip must agree."""
    a = rd.Curve("anchor", [r for r, _ in anchor], [q for _, q in anchor])
    t = rd.Curve("test", [r for r, _ in test], [q for _, q in test])
    assert rd.compare(test=t, anchor=a, interp="pchip", sensitivity="none").bd_rate == pytest.approx(
        want * 100, abs=1e-9
    )


def test_band_bd_over_everything_is_the_whole_bd_and_bands_show_where_a_method_wins():
    rate = np.geomspace(0.1, 1.6, 9)
    quality = 26 + 4 * np.log2(rate / 0.1)
    anchor = rd.Curve("a", rate, quality)
    # 10 % fewer bits below 0.4 bpp, the same bits above 0.8 bpp (a smooth blend between)
    factor = np.interp(np.log(rate), np.log([0.4, 0.8]), [0.9, 1.0])
    test = rd.Curve("t", rate * factor, quality)
    full = rd.compare(test=test, anchor=anchor, sensitivity="none")
    whole = rd.band_bd(test=test, anchor=anchor, band=rd.Band(0, math.inf))
    assert whole["bd_rate_pct"] == pytest.approx(full.bd_rate, abs=1e-12)
    assert whole["bd_quality_db"] == pytest.approx(full.bd_quality, abs=1e-12)
    low, mid, high = (rd.band_bd(test=test, anchor=anchor, band=b) for b in rd.DEFAULT_BANDS)
    assert low["bd_rate_pct"] == pytest.approx(-10.0, abs=0.3) and high["bd_rate_pct"] == pytest.approx(0.0, abs=0.3)
    assert low["bd_rate_pct"] < mid["bd_rate_pct"] < high["bd_rate_pct"]
    assert high["bpp_hi"] == pytest.approx(1.6) and low["quality_lo_db"] == pytest.approx(26.0)  # the shared range
    # a quality band: its quality interval is used as given (within the overlap)
    q = rd.band_bd(test=test, anchor=anchor, band=rd.parse_band("30:34dB"))
    assert (q["quality_lo_db"], q["quality_hi_db"]) == (30.0, 34.0)
    none = rd.band_bd(test=test, anchor=anchor, band=rd.parse_band("5:6"))
    assert math.isnan(none["bd_rate_pct"]) and "share no quality" in none["note"]


@pytest.mark.parametrize("text, want", [("0.1:0.4", rd.Band(0.1, 0.4, "bpp")), ("0.8:", rd.Band(0.8, math.inf, "bpp")),
                                        ("30:34dB", rd.Band(30, 34, "quality"))])  # fmt: skip
def test_parse_band(text, want):
    assert rd.parse_band(text) == want


@pytest.mark.parametrize("text", ["0.4", "0.4:0.1", "a:b", "1:2:3"])
def test_parse_band_refuses(text):
    with pytest.raises(QVRFError, match="--range"):
        rd.parse_band(text)
