"""Rate-distortion analysis: aggregation, monotone hull, BD-rate/BD-PSNR, sensitivity, bootstrap.

Pure functions: numpy arrays / pandas DataFrames in, numbers / DataFrames / strings out. No file I/O.

Conventions (the README's "BD-rate conventions" section says the same):

* **Rate** is bits per pixel from real bitstreams: ``bpp_real`` (the whole file, container header
  included; default) or ``payload_bpp_real`` (entropy-coded strings only, which is what CompressAI and
  QVRF publish), chosen by the ``rate`` argument. **Quality** is PSNR-RGB in dB
  (``metric="psnr"``, default), MS-SSIM-RGB in dB, ``-10*log10(1 - MS-SSIM)`` (``metric="ms-ssim"``), or
  any other metric of the table (metrics/table.py: its axis, rising with quality).
  An RD point averages images: mean PSNR over images (not PSNR of the mean MSE, as CompressAI does);
  for MS-SSIM the mean MS-SSIM over images is converted to dB (as CompressAI's plots do).
* **Sign.** BD-rate < 0: the test needs fewer bits than the anchor at equal quality.
  BD-PSNR > 0: the test has higher quality at equal rate. A test curve with exactly 10 % fewer bits at
  every quality gives BD-rate = -10.0 %.
* **Interpolation** is delegated to the ``bjontegaard`` package (1.3.0): log10(rate) as a function of
  quality, integrated over the quality overlap. ``akima`` (default, the package authors'
  recommendation), ``pchip`` (matches the JCT-VC/JVET CTC spreadsheets) or ``cubic`` (the
  least-squares cubic of VCEG-M33).
* **Hull rule.** Before BD, each curve is sorted by rate and reduced to its monotone upper staircase
  (Pareto front): a point is kept only if its quality is strictly higher than that of every point with
  lower or equal rate. Points with a higher rate but no higher quality than some other point are
  dropped and reported. This is not a convex hull: a convex hull would also drop points that are
  legitimately achievable in concave stretches and change the BD value.
* **Overlap** = length of the intersection of the two curves' quality ranges / length of the
  narrower range, in percent: the share of the shorter curve that the integral covers (``bjontegaard``
  divides by the union instead, which marks a dense curve reaching past its anchor as low overlap
  although the integral over the shared range is sound). Below ``min_overlap_pct`` (default 50 %) a
  :class:`RDWarning` is issued, and also when the shared range is under ``MIN_OVERLAP_DB`` (1 dB); the
  integration range is reported (``quality_range``; the tables' ``quality_lo_db`` / ``quality_hi_db``);
  no overlap at all raises :class:`~qvrf_bench.errors.QVRFError`.

Why not call ``bjontegaard`` bare: it has no default method; ``require_matching_points=True``
(the default) raises for 15 vs 8 points; it only reverses input whose last point is below its first
(with a bare ``assert``) and otherwise leaves it unsorted, so PCHIP/Akima raise on unsorted or
non-monotone input ("x must be strictly increasing") while ``cubic`` silently fits non-monotone data;
``cubic`` with fewer than 4 points is an under-determined fit; disjoint curves give ``nan`` plus a
warning instead of an error; its overlap warning (default 75 %) cannot be read back as a number.
We sort, apply the hull, check point counts and overlap, then call ``bjontegaard.bd_rate`` /
``bd_psnr`` with ``require_matching_points=False, min_overlap=0``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import Metric, all_metrics, default_metrics, get_metric

INTERPOLATIONS = ("akima", "pchip", "cubic")
SENSITIVITY_MODES = ("test", "anchor", "paired", "both", "none")
DEFAULT_INTERP = "akima"
DEFAULT_MIN_OVERLAP_PCT = 50.0
DEFAULT_SUBSET_SIZE = 4  # the QVRF paper's Table 1 used 4 RD points
# A BD-rate integrated over less than this many dB of shared quality is flagged (a note and an
# RDWarning) even when the relative overlap is fine: two narrow curves can share all of a tiny range.
MIN_OVERLAP_DB = 1.0

# A subset pair whose quality ranges overlap on less than this share of the narrower one is not
# counted (NaN, "skipped"): a BD average over a sliver says nothing and can read -100 %.
MIN_SUBSET_OVERLAP = 0.25
DEFAULT_N_BOOT = 1000
DEFAULT_SEED = 0
#: ``rate`` argument values: a per-image column, averaged over images into an RD point.
RATE_COLUMNS = ("bpp_real", "payload_bpp_real")
# Interpolators need this many distinct points (bjontegaard's cubic is a degree-3 least-squares fit).
_MIN_POINTS = {"akima": 2, "pchip": 2, "cubic": 4}
_GROUP_KEYS = ("method", "rate_point")
# Descriptive columns that are constant within a (method, rate_point) group; carried into the points.
_CARRY_COLUMNS = ("arch", "kind", "level", "gain", "lmbda", "quality", "device", "run_id")
_MEAN_COLUMNS = ("bpp_real", "payload_bpp_real", "enc_s", "dec_s")  # + every metric's column (metrics.table)


def __getattr__(name: str):  # METRICS, QUALITY_COLUMNS, METRIC_LABELS: views of the metric table
    views = {
        "METRICS": lambda: tuple(m.name for m in all_metrics()),
        "QUALITY_COLUMNS": lambda: {m.name: m.quality_column for m in all_metrics()},
        "METRIC_LABELS": lambda: {m.name: m.label for m in all_metrics()},
    }
    if name in views:
        return views[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RDWarning(UserWarning):
    """A BD result that is computed but should be read with care (low overlap, dropped points)."""


# ----------------------------------------------------------------------------------------------
# Metrics and aggregation
# ----------------------------------------------------------------------------------------------


def check_metric(metric: str | Metric) -> str:
    """The name of a metric of the table (metrics.table); QVRFError otherwise."""
    return get_metric(metric).name


def check_rate(rate: str) -> str:
    if rate not in RATE_COLUMNS:
        raise QVRFError(f"unknown rate column {rate!r}: use one of {', '.join(RATE_COLUMNS)}")
    return rate


def check_interp(interp: str) -> str:
    if interp not in INTERPOLATIONS:
        raise QVRFError(f"unknown interpolation {interp!r}: use one of {', '.join(INTERPOLATIONS)}")
    return interp


def error_mask(rows: pd.DataFrame) -> pd.Series:
    """True for rows that aggregation must ignore: a non-empty ``error`` or ``decode_ok == False``."""
    bad = pd.Series(False, index=rows.index)
    if "error" in rows.columns:
        err = rows["error"]
        bad |= err.notna() & (err.astype(str).str.strip() != "")
    if "decode_ok" in rows.columns:
        ok = rows["decode_ok"]
        # A broken decode has meaningless metrics even when nobody wrote an error string.
        bad |= ok.notna() & (ok.astype("boolean") == False)  # noqa: E712 (nullable boolean)
    return bad


@dataclass
class Aggregated:
    """RD points plus the per-image rows they came from.

    ``points``: one row per (method, rate_point) with the means ``bpp_real``, ``psnr_rgb``,
    ``ms_ssim_rgb`` (NaN-skipping), ``ms_ssim_db_rgb`` (dB of the mean MS-SSIM), ``n_images``,
    ``n_ms_ssim`` and the descriptive columns (arch, kind, level, gain, lmbda, quality) when present.
    ``per_image``: the rows used (error rows removed). ``n_error_rows``: rows ignored, and
    ``error_rows_by_method`` the same count per method.
    """

    points: pd.DataFrame
    per_image: pd.DataFrame
    n_error_rows: int = 0
    error_rows_by_method: dict[str, int] = field(default_factory=dict)

    def unequal_image_counts(self) -> dict[str, list[int]]:
        """Methods whose rate points average different numbers of images (a mean over a different set
        of images at each point bends the curve)."""
        out = {}
        for method, grp in self.points.groupby("method", sort=True):
            counts = sorted(set(int(n) for n in grp["n_images"]))
            if len(counts) > 1:
                out[str(method)] = counts
        return out


def aggregate(rows: pd.DataFrame) -> Aggregated:
    """Average per-image rows into RD points, one per (method, rate_point)."""
    missing = [c for c in ("method", "rate_point", "image", "bpp_real", "psnr_rgb") if c not in rows.columns]
    if missing:
        raise QVRFError(f"per-image rows lack column(s) {', '.join(missing)}")
    if "target_bpp" in rows.columns:  # matched-rate rows are not sweep points (matched.py uses them)
        rows = rows.loc[rows["target_bpp"].isna()]
    bad = error_mask(rows)
    n_bad = int(bad.sum())
    by_method = {str(k): int(v) for k, v in rows.loc[bad, "method"].value_counts().items()} if n_bad else {}
    good = rows.loc[~bad].copy()
    for m in default_metrics():  # the default set is always there (NaN where a source lacks it)
        if m.column not in good.columns:
            good[m.column] = np.nan
    measured = [m for m in all_metrics() if m.column in good.columns]
    good["method"] = good["method"].astype(str)
    good["rate_point"] = good["rate_point"].astype(str)
    grouped = good.groupby(list(_GROUP_KEYS), sort=True, dropna=False)
    mean_cols = [c for c in _MEAN_COLUMNS if c in good.columns] + [m.column for m in measured]
    means = grouped[mean_cols].mean()  # mean() skips NaN
    means["n_images"] = grouped["image"].nunique()
    means["n_ms_ssim"] = grouped["ms_ssim_rgb"].count()
    carry = [c for c in _CARRY_COLUMNS if c in good.columns]
    if carry:
        means = means.join(grouped[carry].first())
    for m in measured:  # the curve axis of a point: to_axis(mean over images), one rule for all
        if m.quality_column != m.column:
            means[m.quality_column] = m.axis(means[m.column].to_numpy(dtype=float))
    points = means.reset_index()
    points = points.sort_values(["method", "bpp_real"], kind="mergesort").reset_index(drop=True)
    return Aggregated(points=points, per_image=good, n_error_rows=n_bad, error_rows_by_method=by_method)


def merge_methods(frame: pd.DataFrame, methods: Sequence[str], name: str) -> pd.DataFrame:
    """Rows (per-image or aggregated) of several methods relabelled as one method ``name``.

    An anchor made of several fixed-rate models is one curve: BD takes a set of points no matter how
    many checkpoints produced them. ``rate_point`` becomes ``"<method>:<rate_point>"`` so points of
    different methods stay distinct.
    """
    methods = list(dict.fromkeys(methods))
    present = set(frame["method"].astype(str))
    absent = [m for m in methods if m not in present]
    if absent:
        raise QVRFError(
            f"cannot build curve {name!r}: no rows for method(s) {', '.join(absent)}; "
            f"available: {', '.join(sorted(present)) or '(none)'}"
        )
    out = frame.loc[frame["method"].astype(str).isin(methods)].copy()
    out["rate_point"] = out["method"].astype(str) + ":" + out["rate_point"].astype(str)
    out["method"] = name
    return out


# ----------------------------------------------------------------------------------------------
# Curves and the monotone hull
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Curve:
    """An RD curve: rate in bpp, quality in dB of ``metric`` (``psnr`` or ``ms-ssim``), one label a point."""

    name: str
    rate: np.ndarray
    quality: np.ndarray
    labels: tuple[str, ...] = ()
    metric: str = "psnr"

    def __post_init__(self):
        rate = np.asarray(self.rate, dtype=float).reshape(-1)
        quality = np.asarray(self.quality, dtype=float).reshape(-1)
        if rate.shape != quality.shape:
            raise QVRFError(f"curve {self.name!r}: {rate.size} rates but {quality.size} quality values")
        labels = tuple(str(x) for x in self.labels) or tuple(f"p{i + 1}" for i in range(rate.size))
        if len(labels) != rate.size:
            raise QVRFError(f"curve {self.name!r}: {len(labels)} labels for {rate.size} points")
        check_metric(self.metric)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return int(self.rate.size)

    def subset(self, index: Sequence[int]) -> Curve:
        idx = list(index)
        return Curve(self.name, self.rate[idx], self.quality[idx], tuple(self.labels[i] for i in idx), self.metric)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"label": self.labels, "bpp": self.rate, "quality": self.quality})


def curve_from_points(
    points: pd.DataFrame,
    method: str | None = None,
    metric: str = "psnr",
    name: str | None = None,
    rate: str = "bpp_real",
) -> Curve:
    """The curve of one method from an aggregated-points frame (see :func:`aggregate`).

    ``method=None`` takes every row (for a frame already reduced to one curve, e.g. by
    :func:`merge_methods`).
    """
    check_metric(metric)
    check_rate(rate)
    sel = points if method is None else points.loc[points["method"].astype(str) == method]
    if sel.empty:
        raise QVRFError(f"no RD points for method {method!r}")
    spec = get_metric(metric)
    quality = spec.axis_of(sel)
    if quality is None:
        raise QVRFError(f"no {spec.label} values for {method or name!r}")
    if rate not in sel.columns:
        raise QVRFError(f"no {rate} values for {method or name!r}")
    labels = sel["rate_point"].astype(str) if "rate_point" in sel.columns else ()
    return Curve(name or method or "curve", sel[rate].to_numpy(dtype=float), quality, tuple(labels), metric)


def curve_from_rows(rows: pd.DataFrame, metric: str = "psnr", name: str = "curve", rate: str = "bpp_real") -> Curve:
    """Mean curve of per-image rows of ONE curve (grouped by ``rate_point``)."""
    agg = aggregate(rows.assign(method=name))
    return curve_from_points(agg.points, name, metric, rate=rate)


@dataclass(frozen=True)
class DroppedPoint:
    """A point left out of BD: ``reason`` is ``invalid`` (NaN, inf, rate <= 0) or ``dominated``
    (another point has lower-or-equal rate and higher-or-equal quality)."""

    curve: str
    label: str
    rate: float
    quality: float
    reason: str

    def __str__(self) -> str:
        return f"{self.curve}:{self.label} ({self.rate:.4f} bpp, {self.quality:.3f} dB, {self.reason})"


def monotone_hull(rate, quality) -> np.ndarray:
    """Boolean mask of the points on the monotone upper staircase (Pareto front).

    A point is kept iff its quality is strictly higher than that of every point with lower or equal
    rate. Of exact duplicates the first is kept. Inputs need not be sorted; NaN points are not kept.
    """
    rate = np.asarray(rate, dtype=float)
    quality = np.asarray(quality, dtype=float)
    keep = np.zeros(rate.size, dtype=bool)
    finite = np.flatnonzero(np.isfinite(rate) & np.isfinite(quality))
    # Sort by rate ascending, then quality descending, so that of equal rates the best comes first.
    order = finite[np.lexsort((-quality[finite], rate[finite]))]
    best = -np.inf
    for i in order:
        if quality[i] > best:
            keep[i] = True
            best = quality[i]
    return keep


def prepare_curve(curve: Curve, hull: bool = True) -> tuple[Curve, tuple[DroppedPoint, ...]]:
    """Sort by rate, drop invalid points, and (``hull=True``) dominated ones.

    With ``hull=False`` a curve that is not strictly increasing in both rate and quality raises
    :class:`QVRFError` (Akima and PCHIP cannot interpolate it).
    """
    dropped: list[DroppedPoint] = []
    valid = np.isfinite(curve.rate) & np.isfinite(curve.quality) & (curve.rate > 0)
    for i in np.flatnonzero(~valid):
        dropped.append(DroppedPoint(curve.name, curve.labels[i], curve.rate[i], curve.quality[i], "invalid"))
    if hull:
        keep = monotone_hull(np.where(valid, curve.rate, np.nan), curve.quality)
        for i in np.flatnonzero(valid & ~keep):
            dropped.append(DroppedPoint(curve.name, curve.labels[i], curve.rate[i], curve.quality[i], "dominated"))
    else:
        keep = valid
    idx = np.flatnonzero(keep)
    idx = idx[np.lexsort((curve.quality[idx], curve.rate[idx]))]
    out = curve.subset(idx)
    if not hull and len(out) > 1:
        if np.any(np.diff(out.rate) <= 0) or np.any(np.diff(out.quality) <= 0):
            bad = [
                out.labels[i + 1]
                for i in range(len(out) - 1)
                if out.rate[i + 1] <= out.rate[i] or out.quality[i + 1] <= out.quality[i]
            ]
            raise QVRFError(
                f"curve {curve.name!r} is not monotone (rate and quality must both increase) at "
                f"{', '.join(bad)}; use the monotone hull (drop --no-hull) to remove dominated points"
            )
    return out, tuple(dropped)


def range_overlap_pct(a, b) -> float:
    """Intersection of the ranges [min a, max a] and [min b, max b] / the narrower of the two, in
    percent (0 if disjoint): how much of the shorter curve the BD integral covers. Not intersection /
    union: a dense curve that extends past its anchor (QVRF's 27 factors) would read "insufficient"
    although the integral over the shared range is sound (README "BD-rate conventions")."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    narrower = min(a.max() - a.min(), b.max() - b.min())
    inter = min(a.max(), b.max()) - max(a.min(), b.min())
    if narrower <= 0:  # a single value: covered or not
        return 100.0 if inter >= 0 else 0.0
    return max(inter, 0.0) / narrower * 100.0


# ----------------------------------------------------------------------------------------------
# BD-rate / BD-PSNR
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubsetStats:
    """BD-rate over every ``k``-point subset: ``mode`` says of which curve(s) (see :func:`subset_bd_rates`)."""

    mode: str
    k: int
    n: int  # subsets that gave a value
    n_skipped: int  # subsets without quality overlap
    min: float = math.nan
    median: float = math.nan
    max: float = math.nan


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap over images of the BD-rate (``paired``: anchor images resampled alike)."""

    low: float
    high: float
    estimate: float
    level: float
    n_boot: int
    n_ok: int
    n_images: int
    seed: int
    paired: bool


@dataclass(frozen=True)
class BDResult:
    """One test-vs-anchor comparison. Percentages are in %, ``bd_quality`` in dB of ``metric``
    (BD-PSNR for ``psnr``)."""

    test: str
    anchor: str
    metric: str
    interp: str
    bd_rate: float
    bd_quality: float
    overlap_pct: float  # quality-axis overlap, the domain of BD-rate
    overlap_rate_pct: float  # log-rate-axis overlap, the domain of BD-PSNR
    quality_range: tuple[float, float]  # integration interval of BD-rate
    n_test: int  # points used (after the hull)
    n_anchor: int
    dropped_test: tuple[DroppedPoint, ...] = ()
    dropped_anchor: tuple[DroppedPoint, ...] = ()
    hull: bool = True
    min_overlap_pct: float = DEFAULT_MIN_OVERLAP_PCT
    sensitivity: SubsetStats | None = None
    ci: BootstrapCI | None = None
    notes: tuple[str, ...] = ()

    @property
    def bd_psnr(self) -> float:
        return self.bd_quality

    @property
    def low_overlap(self) -> bool:
        return self.overlap_pct < self.min_overlap_pct

    def with_ci(self, ci: BootstrapCI | None) -> BDResult:
        return replace(self, ci=ci)


@dataclass(frozen=True)
class Band:
    """A rate band (``unit="bpp"``) or a quality band (``unit="quality"``, in the metric's axis units)
    that BD is restricted to (:func:`band_bd`)."""

    lo: float
    hi: float
    unit: str = "bpp"
    name: str = ""

    def text(self) -> str:
        hi = "inf" if math.isinf(self.hi) else f"{self.hi:g}"
        what = f"{self.lo:g}-{hi} {'bpp' if self.unit == 'bpp' else 'dB'}"
        return f"{self.name} ({what})" if self.name else what


#: The report's default bands: BD over 0.1-1.5 bpp hides where a method wins (README "BD-rate conventions").
DEFAULT_BANDS = (Band(0.0, 0.4, "bpp", "low"), Band(0.4, 0.8, "bpp", "mid"), Band(0.8, math.inf, "bpp", "high"))


def parse_band(text: str) -> Band:
    """``compare --range``: ``LO:HI`` in bpp (``0.1:0.4``, ``0.8:``) or in dB with a suffix (``30:34dB``)."""
    s = str(text).strip()
    unit = "quality" if s.lower().endswith("db") else "bpp"
    body = s[:-2] if unit == "quality" else s.removesuffix("bpp")
    try:
        lo_s, hi_s = body.split(":")
        lo = float(lo_s) if lo_s.strip() else (0.0 if unit == "bpp" else -math.inf)
        hi = float(hi_s) if hi_s.strip() else math.inf
    except ValueError:
        raise QVRFError(f"--range {text!r}: expected LO:HI in bpp (0.1:0.4) or dB (30:34dB)") from None
    if not lo < hi:
        raise QVRFError(f"--range {text!r}: LO must be below HI")
    return Band(lo, hi, unit)


def band_bd(*, test: Curve, anchor: Curve, band: Band, interp: str = DEFAULT_INTERP, hull: bool = True) -> dict:
    """BD-rate and BD-quality of ``test`` against ``anchor`` over ``band`` only.

    The same interpolants as :func:`compare` (bjontegaard's, on the monotone hulls), integrated over
    the part of the band both curves cover instead of their whole overlap: BD-rate over a quality
    interval, BD-quality over a log-rate interval. A bpp band gives the rate interval directly and
    its quality interval through the anchor's curve (its quality at the band's rates); a quality band
    the other way round. Returns ``bd_rate_pct``, ``bd_quality_db``, the intervals used
    (``quality_lo_db``/``quality_hi_db``, ``bpp_lo``/``bpp_hi``) and ``note`` (why a value is NaN).
    """
    import bjontegaard

    check_interp(interp)
    t, _ = prepare_curve(test, hull)
    a, _ = prepare_curve(anchor, hull)
    _check_points(t, interp, "test")
    _check_points(a, interp, "anchor")
    out = {"band": band.text(), "bd_rate_pct": math.nan, "bd_quality_db": math.nan, "quality_lo_db": math.nan,
           "quality_hi_db": math.nan, "bpp_lo": math.nan, "bpp_hi": math.nan, "note": ""}  # fmt: skip
    kw = {"require_matching_points": False, "min_overlap": 0, "interpolators": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, fa, ft = bjontegaard.bd_rate(a.rate, a.quality, t.rate, t.quality, interp, **kw)  # quality -> log10 rate
        _, ga, gt = bjontegaard.bd_psnr(a.rate, a.quality, t.rate, t.quality, interp, **kw)  # log10 rate -> quality
    q_lo, q_hi = max(a.quality.min(), t.quality.min()), min(a.quality.max(), t.quality.max())
    r_lo, r_hi = (
        max(np.log10(a.rate).min(), np.log10(t.rate).min()),
        min(np.log10(a.rate).max(), np.log10(t.rate).max()),
    )
    a_r = (np.log10(a.rate).min(), np.log10(a.rate).max())
    a_q = (a.quality.min(), a.quality.max())
    if band.unit == "bpp":
        b_lo = np.log10(band.lo) if band.lo > 0 else -math.inf
        b_hi = np.log10(band.hi) if math.isfinite(band.hi) else math.inf
        # the band's quality interval: the anchor's quality at the band's rates (clipped to its curve)
        bq_lo = float(ga(np.clip(b_lo, *a_r))) if b_lo > a_r[0] else -math.inf
        bq_hi = float(ga(np.clip(b_hi, *a_r))) if b_hi < a_r[1] else math.inf
    else:
        bq_lo, bq_hi = band.lo, band.hi
        b_lo = float(fa(np.clip(band.lo, *a_q))) if band.lo > a_q[0] else -math.inf
        b_hi = float(fa(np.clip(band.hi, *a_q))) if band.hi < a_q[1] else math.inf
    lo, hi = max(q_lo, bq_lo), min(q_hi, bq_hi)
    if hi > lo:
        avg = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
        out.update(bd_rate_pct=float((10**avg - 1) * 100), quality_lo_db=float(lo), quality_hi_db=float(hi))
    else:
        out["note"] = f"the curves share no quality inside {band.text()}"
    rlo, rhi = max(r_lo, b_lo), min(r_hi, b_hi)
    if rhi > rlo:
        out.update(bd_quality_db=float((gt.integrate(rlo, rhi) - ga.integrate(rlo, rhi)) / (rhi - rlo)),
                   bpp_lo=float(10**rlo), bpp_hi=float(10**rhi))  # fmt: skip
    elif not out["note"]:
        out["note"] = f"the curves share no rate inside {band.text()}"
    return out


def _interpolate(x: np.ndarray, y: np.ndarray, interp: str):
    # bjontegaard's own interpolator factory, so subsets and bootstrap integrate exactly as bd_rate does.
    from bjontegaard.interpolation import interpolate

    return interpolate(x, y, interp)


def _log_delta(f_anchor, q_anchor, f_test, q_test) -> float:
    """Mean of (test - anchor) over the overlap of the x-ranges; NaN when disjoint."""
    lo = max(q_anchor[0], q_test[0])
    hi = min(q_anchor[-1], q_test[-1])
    if not hi > lo:
        return math.nan
    return (f_test.integrate(lo, hi) - f_anchor.integrate(lo, hi)) / (hi - lo)


def _pct(log_delta: float) -> float:
    return (10.0**log_delta - 1.0) * 100.0


def _check_points(curve: Curve, interp: str, role: str) -> None:
    need = _MIN_POINTS[interp]
    if len(curve) < need:
        raise QVRFError(
            f"{role} curve {curve.name!r} has {len(curve)} usable point(s); "
            f"{interp} interpolation needs at least {need}"
        )


def _range_text(c: Curve) -> str:
    return f"{c.quality.min():.2f}-{c.quality.max():.2f} dB, {c.rate.min():.3f}-{c.rate.max():.3f} bpp"


def compare(
    *,
    test: Curve,
    anchor: Curve,
    interp: str = DEFAULT_INTERP,
    hull: bool = True,
    min_overlap_pct: float = DEFAULT_MIN_OVERLAP_PCT,
    sensitivity: str = "test",
    subset_size: int = DEFAULT_SUBSET_SIZE,
) -> BDResult:
    """BD-rate and BD-PSNR of ``test`` against ``anchor`` (keyword-only, so they cannot be swapped).

    Handles unequal point counts, unsorted input and non-monotone curves (see the module docstring for
    the hull and overlap rules). ``sensitivity`` adds min/median/max of BD-rate over every
    ``subset_size``-point subset (see :func:`subset_bd_rates`); ``"none"`` skips it.
    Raises :class:`QVRFError` when the quality ranges do not overlap.
    """
    import bjontegaard

    check_interp(interp)
    if test.metric != anchor.metric:
        raise QVRFError(f"test {test.name!r} is {test.metric} but anchor {anchor.name!r} is {anchor.metric}")
    if sensitivity not in SENSITIVITY_MODES:
        raise QVRFError(f"unknown sensitivity mode {sensitivity!r}: use one of {', '.join(SENSITIVITY_MODES)}")
    t, dropped_t = prepare_curve(test, hull)
    a, dropped_a = prepare_curve(anchor, hull)
    _check_points(t, interp, "test")
    _check_points(a, interp, "anchor")
    q_overlap = range_overlap_pct(a.quality, t.quality)
    if q_overlap <= 0:
        raise QVRFError(
            f"no quality overlap between test {t.name!r} ({_range_text(t)}) and anchor {a.name!r} "
            f"({_range_text(a)}): BD-rate is undefined"
        )
    r_overlap = range_overlap_pct(np.log10(a.rate), np.log10(t.rate))
    with warnings.catch_warnings():
        # We report overlap ourselves; numpy's RankWarning from a cubic fit is not actionable here.
        warnings.simplefilter("ignore")
        bd_rate = float(
            bjontegaard.bd_rate(
                a.rate, a.quality, t.rate, t.quality, interp, require_matching_points=False, min_overlap=0
            )
        )
        bd_q = math.nan
        if r_overlap > 0:
            bd_q = float(
                bjontegaard.bd_psnr(
                    a.rate, a.quality, t.rate, t.quality, interp, require_matching_points=False, min_overlap=0
                )
            )
    notes = []
    if q_overlap < min_overlap_pct:
        msg = (
            f"{t.name} vs {a.name}: quality overlap {q_overlap:.0f}% is below {min_overlap_pct:.0f}%; "
            "BD-rate covers only the shared range"
        )
        notes.append(msg)
        warnings.warn(msg, RDWarning, stacklevel=2)
    span = min(a.quality.max(), t.quality.max()) - max(a.quality.min(), t.quality.min())
    if q_overlap >= min_overlap_pct and span < MIN_OVERLAP_DB:
        msg = (f"{t.name} vs {a.name}: BD-rate over a shared quality range of only {span:.2f} dB "
               f"(< {MIN_OVERLAP_DB:g} dB): an average over a sliver")  # fmt: skip
        notes.append(msg)
        warnings.warn(msg, RDWarning, stacklevel=2)
    if r_overlap <= 0:
        notes.append(f"{t.name} vs {a.name}: rate ranges do not overlap; BD-PSNR undefined")
    stats = None
    if sensitivity == "paired" and len(t) != len(a):
        # Not an error: a table of many pairs should not die on one with unequal counts.
        stats = SubsetStats("paired", subset_size, 0, 0)
        notes.append(f"{t.name} vs {a.name}: paired subsets need equal point counts ({len(t)} vs {len(a)})")
    elif sensitivity != "none":
        stats = subset_stats(test=t, anchor=a, interp=interp, mode=sensitivity, k=subset_size)
    lo = max(a.quality.min(), t.quality.min())
    hi = min(a.quality.max(), t.quality.max())
    return BDResult(
        test=test.name,
        anchor=anchor.name,
        metric=test.metric,
        interp=interp,
        bd_rate=bd_rate,
        bd_quality=bd_q,
        overlap_pct=q_overlap,
        overlap_rate_pct=r_overlap,
        quality_range=(float(lo), float(hi)),
        n_test=len(t),
        n_anchor=len(a),
        dropped_test=dropped_t,
        dropped_anchor=dropped_a,
        hull=hull,
        min_overlap_pct=min_overlap_pct,
        sensitivity=stats,
        notes=tuple(notes),
    )


def bd_rate(*, test: Curve, anchor: Curve, interp: str = DEFAULT_INTERP, hull: bool = True) -> float:
    """BD-rate in % (negative: test needs fewer bits). Shorthand for :func:`compare`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RDWarning)
        return compare(test=test, anchor=anchor, interp=interp, hull=hull, sensitivity="none").bd_rate


def bd_psnr(*, test: Curve, anchor: Curve, interp: str = DEFAULT_INTERP, hull: bool = True) -> float:
    """BD-PSNR (BD-quality) in dB (positive: test has higher quality). Shorthand for :func:`compare`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RDWarning)
        return compare(test=test, anchor=anchor, interp=interp, hull=hull, sensitivity="none").bd_quality


def _fast_bd_rate(a_rate, a_q, t_rate, t_q, interp: str) -> float:
    """BD-rate in % for sorted, strictly monotone arrays; NaN when disjoint."""
    f_a = _interpolate(a_q, np.log10(a_rate), interp)
    f_t = _interpolate(t_q, np.log10(t_rate), interp)
    return _pct(_log_delta(f_a, a_q, f_t, t_q))


def subset_bd_rates(
    *, test: Curve, anchor: Curve, interp: str = DEFAULT_INTERP, mode: str = "test", k: int = DEFAULT_SUBSET_SIZE
) -> np.ndarray:
    """BD-rate (%) of every ``k``-point subset; NaN where a subset shares no quality range.

    Both curves must already be prepared (sorted, monotone: see :func:`prepare_curve`).
    ``mode``: ``test`` = subsets of the test curve vs the full anchor; ``anchor`` = full test vs
    subsets of the anchor; ``paired`` = the same point indices on both curves (needs equal point
    counts, e.g. 8 QVRF levels vs 8 fixed models, which is how a paper picks "4 lambdas");
    ``both`` = every test subset against every anchor subset (C(n,k)*C(m,k) values).
    A curve with fewer than ``k`` points is used whole. A pair of subsets whose quality ranges
    overlap on less than ``MIN_SUBSET_OVERLAP`` of the narrower range gives NaN too.
    """
    check_interp(interp)
    if mode not in SENSITIVITY_MODES or mode == "none":
        raise QVRFError(f"unknown subset mode {mode!r}: use test, anchor, paired or both")
    if k < _MIN_POINTS[interp]:
        raise QVRFError(f"subset size {k} is too small for {interp} (needs {_MIN_POINTS[interp]})")

    def subsets(c: Curve):
        n = len(c)
        return [tuple(range(n))] if n <= k else list(itertools.combinations(range(n), k))

    def interps(c: Curve, idx_list):
        return [
            (_interpolate(c.quality[list(s)], np.log10(c.rate[list(s)]), interp), c.quality[list(s)]) for s in idx_list
        ]

    def pct(a, t) -> float:
        (fa_, qa), (ft_, qt) = a, t
        overlap = min(qa[-1], qt[-1]) - max(qa[0], qt[0])
        if overlap < MIN_SUBSET_OVERLAP * min(qa[-1] - qa[0], qt[-1] - qt[0]):
            return math.nan
        return _pct(_log_delta(fa_, qa, ft_, qt))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "paired":
            if len(test) != len(anchor):
                raise QVRFError(
                    f"paired subsets need equal point counts; test {test.name!r} has {len(test)}, "
                    f"anchor {anchor.name!r} has {len(anchor)}"
                )
            idx = subsets(test)
            fa, ft = interps(anchor, idx), interps(test, idx)
            values = [pct(a, t) for a, t in zip(fa, ft, strict=True)]
        else:
            fa = interps(anchor, subsets(anchor) if mode in ("anchor", "both") else [tuple(range(len(anchor)))])
            ft = interps(test, subsets(test) if mode in ("test", "both") else [tuple(range(len(test)))])
            values = [pct(a, t) for a in fa for t in ft]
    return np.asarray(values, dtype=float)


def subset_stats(
    *, test: Curve, anchor: Curve, interp: str = DEFAULT_INTERP, mode: str = "test", k: int = DEFAULT_SUBSET_SIZE
) -> SubsetStats:
    """min / median / max of :func:`subset_bd_rates` (subsets without overlap are skipped and counted)."""
    values = subset_bd_rates(test=test, anchor=anchor, interp=interp, mode=mode, k=k)
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return SubsetStats(mode, k, 0, int(values.size))
    return SubsetStats(
        mode, k, int(ok.size), int(values.size - ok.size), float(ok.min()), float(np.median(ok)), float(ok.max())
    )


# ----------------------------------------------------------------------------------------------
# Per-image BD and the bootstrap over images
# ----------------------------------------------------------------------------------------------


def _image_quality(rows: pd.DataFrame, metric: str) -> np.ndarray:
    spec = get_metric(metric)
    if spec.column not in rows.columns:
        raise QVRFError(f"per-image rows lack {spec.column}")
    return spec.axis(rows[spec.column].to_numpy(dtype=float))


def per_image_bd(
    test_rows: pd.DataFrame,
    anchor_rows: pd.DataFrame,
    *,
    metric: str = "psnr",
    interp: str = DEFAULT_INTERP,
    hull: bool = True,
    test_name: str = "test",
    anchor_name: str = "anchor",
    rate: str = "bpp_real",
) -> pd.DataFrame:
    """BD-rate / BD-PSNR per image: each image's test points against the same image's anchor points.

    Rows are per-image rows of ONE curve each (use :func:`merge_methods` for a multi-model anchor);
    error rows are ignored. Images present on one side only are left out. Returns one row per image
    with ``bd_rate_pct``, ``bd_quality_db``, ``overlap_pct``, ``n_test``, ``n_anchor`` and ``note``
    (why a value is NaN).
    """
    check_metric(metric)
    check_interp(interp)
    check_rate(rate)
    t_rows = test_rows.loc[~error_mask(test_rows)]
    a_rows = anchor_rows.loc[~error_mask(anchor_rows)]
    images = sorted(set(t_rows["image"].astype(str)) & set(a_rows["image"].astype(str)))
    t_groups = dict(tuple(t_rows.groupby(t_rows["image"].astype(str))))
    a_groups = dict(tuple(a_rows.groupby(a_rows["image"].astype(str))))
    records = []
    for image in images:
        t, a = t_groups[image], a_groups[image]
        tc = Curve(test_name, t[rate], _image_quality(t, metric), tuple(t["rate_point"].astype(str)), metric)
        ac = Curve(anchor_name, a[rate], _image_quality(a, metric), tuple(a["rate_point"].astype(str)), metric)
        rec = {"image": image, "bd_rate_pct": math.nan, "bd_quality_db": math.nan, "overlap_pct": math.nan}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RDWarning)
                res = compare(test=tc, anchor=ac, interp=interp, hull=hull, sensitivity="none", min_overlap_pct=0)
            rec.update(
                bd_rate_pct=res.bd_rate,
                bd_quality_db=res.bd_quality,
                overlap_pct=res.overlap_pct,
                n_test=res.n_test,
                n_anchor=res.n_anchor,
                note="",
            )
        except QVRFError as exc:
            rec.update(n_test=len(tc), n_anchor=len(ac), note=str(exc))
        records.append(rec)
    cols = ["image", "bd_rate_pct", "bd_quality_db", "overlap_pct", "n_test", "n_anchor", "note"]
    return pd.DataFrame.from_records(records, columns=cols)


def _image_matrices(rows: pd.DataFrame, metric: str, rate: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(images, rate_points, rate[img, pt], quality-input[img, pt]) for complete images only."""
    rows = rows.loc[~error_mask(rows)]
    qcol = get_metric(metric).column
    if qcol not in rows.columns:
        raise QVRFError(f"per-image rows lack {qcol}")
    keys = [rows["image"].astype(str), rows["rate_point"].astype(str)]
    rates = rows.groupby(keys)[rate].mean().unstack()
    qual = rows.groupby(keys)[qcol].mean().unstack()
    complete = rates.notna().all(axis=1) & qual.notna().all(axis=1)
    rates, qual = rates.loc[complete], qual.loc[complete]
    return list(rates.index), list(rates.columns), rates.to_numpy(float), qual.to_numpy(float)


def _quality_from_means(mean_q: np.ndarray, metric: str) -> np.ndarray:
    return get_metric(metric).axis(mean_q)


def _hull_sorted(rate: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = monotone_hull(rate, quality)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(rate[idx], kind="mergesort")]
    return rate[idx], quality[idx]


def bootstrap_ci(
    test_rows: pd.DataFrame,
    anchor: pd.DataFrame | Curve,
    *,
    metric: str = "psnr",
    interp: str = DEFAULT_INTERP,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
    rate: str = "bpp_real",
) -> BootstrapCI:
    """Percentile bootstrap confidence interval of the BD-rate over images.

    ``test_rows``: per-image rows of the test curve. ``anchor``: per-image rows of the anchor curve
    (then the resampling is paired: the same drawn images average both curves, over the images both
    have at every rate point), or a fixed :class:`Curve` such as a published anchor (only the test
    images are resampled; the anchor is taken as exact). Each resample draws n images with
    replacement (numpy ``default_rng(seed)``), averages them into curves, applies the monotone hull
    and computes the BD-rate; resamples without quality overlap are skipped (``n_ok`` counts the
    rest). Only images with a value at every rate point are used (``n_images``).
    """
    check_metric(metric)
    check_interp(interp)
    check_rate(rate)
    if n_boot < 1:
        raise QVRFError("the bootstrap needs at least 1 resample")
    t_img, _, t_rate, t_q = _image_matrices(test_rows, metric, rate)
    paired = isinstance(anchor, pd.DataFrame)
    if paired:
        a_img, _, a_rate, a_q = _image_matrices(anchor, metric, rate)
        common = sorted(set(t_img) & set(a_img))
        t_pos = {im: i for i, im in enumerate(t_img)}
        a_pos = {im: i for i, im in enumerate(a_img)}
        t_rate, t_q = t_rate[[t_pos[i] for i in common]], t_q[[t_pos[i] for i in common]]
        a_rate, a_q = a_rate[[a_pos[i] for i in common]], a_q[[a_pos[i] for i in common]]
        n = len(common)
    else:
        fixed, _ = prepare_curve(anchor, hull=True)
        n = len(t_img)
    if n < 2:
        raise QVRFError(f"the bootstrap needs at least 2 images with complete curves, got {n}")

    def bd_of(weights: np.ndarray) -> float:
        tr, tq = _hull_sorted(weights @ t_rate, _quality_from_means(weights @ t_q, metric))
        if paired:
            ar, aq = _hull_sorted(weights @ a_rate, _quality_from_means(weights @ a_q, metric))
        else:
            ar, aq = fixed.rate, fixed.quality
        if min(len(tr), len(ar)) < _MIN_POINTS[interp]:
            return math.nan
        return _fast_bd_rate(ar, aq, tr, tq, interp)

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    values = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate = bd_of(np.full(n, 1.0 / n))
        for b in range(n_boot):
            values[b] = bd_of(np.bincount(draws[b], minlength=n) / n)
    ok = values[np.isfinite(values)]
    if ok.size == 0:
        return BootstrapCI(math.nan, math.nan, estimate, level, n_boot, 0, n, seed, paired)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(ok, [alpha, 1.0 - alpha])
    return BootstrapCI(float(low), float(high), float(estimate), level, n_boot, int(ok.size), n, seed, paired)


# ----------------------------------------------------------------------------------------------
# Tables and formatters
# ----------------------------------------------------------------------------------------------

TABLE_COLUMNS = [
    "test",
    "anchor",
    "metric",
    "interp",
    "bd_rate_pct",
    "bd_quality_db",
    "overlap_pct",
    "quality_lo_db",
    "quality_hi_db",
    "sens_min_pct",
    "sens_median_pct",
    "sens_max_pct",
    "sens_mode",
    "sens_k",
    "sens_n",
    "ci_low_pct",
    "ci_high_pct",
    "ci_paired",
    "n_test",
    "n_anchor",
    "n_dropped_test",
    "n_dropped_anchor",
    "dropped",
]


def results_table(results: Iterable[BDResult]) -> pd.DataFrame:
    """One row per :class:`BDResult` with the columns in :data:`TABLE_COLUMNS`."""
    rows = []
    for r in results:
        s, ci = r.sensitivity, r.ci
        rows.append(
            {
                "test": r.test,
                "anchor": r.anchor,
                "metric": r.metric,
                "interp": r.interp,
                "bd_rate_pct": r.bd_rate,
                "bd_quality_db": r.bd_quality,
                "overlap_pct": r.overlap_pct,
                "quality_lo_db": r.quality_range[0],
                "quality_hi_db": r.quality_range[1],
                "sens_min_pct": s.min if s else math.nan,
                "sens_median_pct": s.median if s else math.nan,
                "sens_max_pct": s.max if s else math.nan,
                "sens_mode": s.mode if s else "",
                "sens_k": s.k if s else 0,
                "sens_n": s.n if s else 0,
                "ci_low_pct": ci.low if ci else math.nan,
                "ci_high_pct": ci.high if ci else math.nan,
                "ci_paired": ci.paired if ci else None,
                "n_test": r.n_test,
                "n_anchor": r.n_anchor,
                "n_dropped_test": len(r.dropped_test),
                "n_dropped_anchor": len(r.dropped_anchor),
                "dropped": "; ".join(f"{d.curve}:{d.label}" for d in (*r.dropped_test, *r.dropped_anchor)),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def format_csv(table: pd.DataFrame) -> str:
    """All columns at full precision (machine-readable)."""
    return table.to_csv(index=False, lineterminator="\n")


def _num(x: float, digits: int, signed: bool = False, minus: str = "-") -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    s = f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return s.replace("-", minus)


def insufficient_overlap(overlap_pct: float, min_overlap_pct: float = DEFAULT_MIN_OVERLAP_PCT) -> bool:
    """True when a BD-rate's quality overlap is too small for the number to be presented as a result."""
    return not (overlap_pct >= min_overlap_pct)


def _display_rows(table: pd.DataFrame, minus: str = "-") -> tuple[list[str], list[str], list[list[str]]]:
    """Headers, alignment (l/r) and cell strings shared by the Markdown and LaTeX formatters."""
    metrics = set(table["metric"]) if len(table) else {"psnr"}
    if len(metrics) == 1:
        spec = get_metric(next(iter(metrics)))
        q_head = f"BD-{spec.head} [{spec.unit}]"
    else:
        q_head = "BD-Q [axis units]"
    k = int(table["sens_k"].max()) if len(table) and table["sens_k"].max() > 0 else DEFAULT_SUBSET_SIZE
    has_sens = bool(len(table)) and bool(table["sens_n"].gt(0).any())
    has_ci = bool(len(table)) and bool(table["ci_low_pct"].notna().any())
    heads = ["test", "anchor", "BD-rate [%]", q_head, "overlap [%]"]
    align = ["l", "l", "r", "r", "r"]
    if has_sens:
        heads += [f"{k}-pt min [%]", f"{k}-pt median [%]", f"{k}-pt max [%]"]
        align += ["r", "r", "r"]
    if has_ci:
        heads += ["95% CI [%]"]
        align += ["r"]
    heads += ["points (test/anchor)"]
    align += ["r"]
    body = []
    for _, r in table.iterrows():
        # Below the overlap threshold a BD-rate is an extrapolation, not a result: the tables say
        # so instead of printing the number (the CSV keeps it, and the report's notes give it).
        low = insufficient_overlap(r["overlap_pct"])
        cells = [
            str(r["test"]),
            str(r["anchor"]),
            f"insufficient overlap ({_num(r['overlap_pct'], 0)} %)" if low else _num(r["bd_rate_pct"], 2, True, minus),
            _num(r["bd_quality_db"], 3, True, minus),
            _num(r["overlap_pct"], 0),
        ]
        if has_sens:
            cells += ["n/a" if low else _num(r[c], 2, True, minus)
                      for c in ("sens_min_pct", "sens_median_pct", "sens_max_pct")]  # fmt: skip
        if has_ci:
            cells += [
                "n/a" if low else f"[{_num(r['ci_low_pct'], 2, True, minus)}, {_num(r['ci_high_pct'], 2, True, minus)}]"
            ]
        pts = f"{int(r['n_test'])}/{int(r['n_anchor'])}"
        dropped = int(r["n_dropped_test"]) + int(r["n_dropped_anchor"])
        cells += [pts + (f" ({dropped} dropped)" if dropped else "")]
        body.append(cells)
    return heads, align, body


def format_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (rounded: BD-rate 2 decimals, BD-PSNR 3, overlap 0)."""
    heads, align, body = _display_rows(table)

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in heads) + " |"]
    lines.append("|" + "|".join(" ---: " if a == "r" else " --- " for a in align) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def format_latex(table: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs ``tabular`` (wrapped in a ``table`` float when a caption or label is given)."""
    heads, align, body = _display_rows(table, minus="\N{MINUS SIGN}")

    def cell(s: str) -> str:
        # A real minus in math mode; escaping everything else keeps names like hyper+qvrf_v2 safe.
        return latex_escape(s).replace("\N{MINUS SIGN}", "$-$")

    lines = [r"\begin{tabular}{" + "".join(align) + "}", r"\toprule"]
    lines.append(" & ".join(cell(h) for h in heads) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(cell(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(lines) + "\n"
    out = [r"\begin{table}", r"\centering"]
    if caption is not None:
        out.append(r"\caption{" + latex_escape(caption) + "}")
    if label is not None:
        out.append(r"\label{" + label + "}")
    return "\n".join(out + lines + [r"\end{table}"]) + "\n"
