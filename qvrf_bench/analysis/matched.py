"""Matched-rate comparison: per image, the quality of two methods at the same rate (pure functions).

BD-rate summarises whole curves; reviewers also ask "at 0.25 bpp, how much better is it, on how
many images?". A sweep with ``--target-bpp`` gives each QVRF model (and each classical codec) one
row per image and target, at the gain/quality that met the target on that image (ratecontrol.py).
This module compares such rows with another method *on the same image at the same rate*:

- the test method's matched-rate row gives (bpp_test, quality_test) on an image;
- the other method's quality at exactly bpp_test on that image comes from its per-image RD curve
  (its sweep rows on that image; a family's fixed-rate models together form one curve), PCHIP in
  log rate, as BD-rate interpolates. No extrapolation: where bpp_test lies outside the other
  method's range on that image, the pair is left out and counted (``n_out_of_range``).

Interpolating the other side at the test's achieved rate makes the delta a same-rate delta even
where a classical codec's integer quality knob cannot hit the target closely.

The summary per target: images compared, mean delta with a Student-t confidence interval over images
(images are the sampling unit, as in the bootstrap of rd.py), wins/losses, and the mean achieved
rate of the test method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qvrf_bench.analysis.rd import error_mask

DEFAULT_CONFIDENCE = 0.95


def _good(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.loc[~error_mask(rows)]


def matched_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The good matched-rate rows (``target_bpp`` set, decoded, no error)."""
    if "target_bpp" not in rows.columns:
        return rows.iloc[0:0]
    return _good(rows.loc[rows["target_bpp"].notna()])


def sweep_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The good sweep rows (everything but matched-rate rows)."""
    r = rows if "target_bpp" not in rows.columns else rows.loc[rows["target_bpp"].isna()]
    return _good(r)


def quality_at(curve_rate: np.ndarray, curve_quality: np.ndarray, rate: float) -> float:
    """One image's curve (rates, qualities) read at ``rate``: PCHIP in log rate, NaN outside its range.

    Points are sorted by rate; a rate measured twice keeps its best quality; NaN qualities are
    dropped. A curve of one point answers only at that exact rate."""
    from scipy.interpolate import PchipInterpolator

    r = np.asarray(curve_rate, float)
    q = np.asarray(curve_quality, float)
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[keep], q[keep]
    if not len(r) or not (math.isfinite(rate) and rate > 0):
        return float("nan")
    order = np.argsort(r, kind="mergesort")
    r, q = r[order], q[order]
    ur = np.unique(r)
    uq = np.array([q[r == v].max() for v in ur])
    if not ur[0] <= rate <= ur[-1]:
        return float("nan")
    if len(ur) == 1:
        return float(uq[0])
    return float(PchipInterpolator(np.log(ur), uq)(math.log(rate)))


def matched_deltas(test_rows: pd.DataFrame, other_rows: pd.DataFrame, metric: str = "psnr_rgb",
                   rate: str = "bpp_real") -> pd.DataFrame:  # fmt: skip
    """Per (image, target) of ``test_rows``' matched-rate rows: the other method's ``metric`` at the
    test's achieved rate on the same image, and the delta (test minus other).

    ``other_rows``: the other method's rows (sweep rows are used; all its methods form one curve
    per image, so pass a family's fixed-rate models together). Images are matched by content hash
    where both sides have one, else by name."""
    t = matched_rows(test_rows)
    o = sweep_rows(other_rows)
    cols = ["image", "target_bpp", "rate_test", "quality_test", "quality_other", "delta"]
    if t.empty:
        return pd.DataFrame(columns=cols)

    def key(df: pd.DataFrame) -> pd.Series:
        sha = df["image_sha256"].fillna("").astype(str) if "image_sha256" in df else pd.Series("", index=df.index)
        return sha.where(sha != "", df["image"].astype(str))

    curves = {k: (g[rate].to_numpy(float), g[metric].to_numpy(float)) for k, g in o.groupby(key(o), sort=False)}
    out = []
    for k, row in zip(key(t), t.itertuples(index=False), strict=True):
        r_t, q_t = float(getattr(row, rate)), float(getattr(row, metric))
        q_o = quality_at(*curves[k], r_t) if k in curves else float("nan")
        out.append((str(row.image), float(row.target_bpp), r_t, q_t, q_o, q_t - q_o))
    return pd.DataFrame(out, columns=cols).sort_values(["target_bpp", "image"], kind="mergesort").reset_index(drop=True)


@dataclass
class MatchedSummary:
    target_bpp: float
    n_images: int  # compared (the other method's curve covers the test's rate on the image)
    n_out_of_range: int
    mean_rate_test: float
    mean_delta: float
    ci_low: float
    ci_high: float
    wins: int  # images where the test is better
    losses: int


def summarize(deltas: pd.DataFrame, confidence: float = DEFAULT_CONFIDENCE) -> list[MatchedSummary]:
    """Per target: mean delta over the compared images with a Student-t CI (NaN with < 2 images)."""
    from scipy import stats

    out = []
    for target, g in deltas.groupby("target_bpp", sort=True):
        d = g["delta"].to_numpy(float)
        ok = np.isfinite(d)
        dv = d[ok]
        n = int(ok.sum())
        mean = float(dv.mean()) if n else float("nan")
        lo = hi = float("nan")
        if n >= 2:
            sem = float(dv.std(ddof=1) / math.sqrt(n))
            if sem == 0:
                lo = hi = mean
            else:
                lo, hi = (float(v) for v in stats.t.interval(confidence, n - 1, loc=mean, scale=sem))
        out.append(MatchedSummary(float(target), n, int((~ok).sum()), float(g.loc[ok, "rate_test"].mean()) if n else
                                  float("nan"), mean, lo, hi, int((dv > 0).sum()), int((dv < 0).sum())))  # fmt: skip
    return out
