"""Every (test, anchor) pair through :mod:`qvrf_bench.analysis.rd`: BD-rate and BD-quality, subset sensitivity,
a bootstrap CI over images and per-image BD, collected into tables and notes."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from qvrf_bench.analysis import rd
from qvrf_bench.analysis.pairs import Pair
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import get_metric

# Point-selection sensitivity needs C(n, k) BD computations; a dense sweep of 50 points would need
# 230,300 (12 points: 495). Above this many subsets "auto" leaves the column empty (a note says why).
MAX_SUBSETS = 500


BAND_COLUMNS = ("band", "bd_rate_pct", "bd_quality_db", "quality_lo_db", "quality_hi_db", "bpp_lo", "bpp_hi", "note")


COMPLEXITY_COLUMNS = ("params", "enc_kmac_px", "dec_kmac_px")  # run.json's keys, prefixed test_ / anchor_


def with_complexity(table, complexity: dict, curves: Sequence) -> object:
    """The BD table with each side's parameters and encoder/decoder kMAC/px (``test_params``,
    ``anchor_dec_kmac_px``, ...; NaN where not counted: classical codecs, published curves).
    ``complexity``: method -> run.json's count; ``curves``: the CurveSpecs, whose ``members`` name
    the methods of a curve (a fixed-rate set's models share one architecture and width, so one
    count; when they differ the cell is NaN rather than one model's)."""
    members = {c.name: (c.members or [c.name]) for c in curves}
    out = table.copy()

    def count(name: str, key: str) -> float:
        values = {complexity.get(m, {}).get(key) for m in members.get(name, [name])}
        return float(values.pop()) if len(values) == 1 and None not in values else math.nan

    for side in ("test", "anchor"):
        for key in COMPLEXITY_COLUMNS:
            out[f"{side}_{key}"] = [count(str(n), key) for n in out[side]]
    return out


def format_bands(df) -> str:
    """The per-band BD table as Markdown (NaN with its reason)."""
    lines = ["| test | anchor | band | BD-rate [%] | BD-quality [dB] | quality range [dB] | rate range [bpp] |",
             "| --- | --- | --- | ---: | ---: | --- | --- |"]  # fmt: skip
    for r in df.itertuples(index=False):
        if math.isfinite(r.bd_rate_pct):
            q = f"{r.quality_lo_db:.2f}-{r.quality_hi_db:.2f}"
            bd = f"{r.bd_rate_pct:+.2f}"
        else:
            q, bd = "-", f"n/a ({r.note})"
        rate = f"{r.bpp_lo:.3f}-{r.bpp_hi:.3f}" if math.isfinite(r.bpp_lo) else "-"
        bq = f"{r.bd_quality_db:+.3f}" if math.isfinite(r.bd_quality_db) else "n/a"
        lines.append(f"| {r.test} | {r.anchor} | {r.band} | {bd} | {bq} | {q} | {rate} |")
    return "\n".join(lines) + "\n"


@dataclass
class Settings:
    metrics: tuple[str, ...] = ("psnr",)
    rate: str = "bpp_real"  # or payload_bpp_real
    interp: str = rd.DEFAULT_INTERP
    hull: bool = True
    min_overlap: float = rd.DEFAULT_MIN_OVERLAP_PCT
    # "auto": the test curve's subsets when there are at most MAX_SUBSETS of them, else none
    sensitivity: str = "auto"
    subset_size: int = rd.DEFAULT_SUBSET_SIZE
    n_boot: int = 0  # bootstrap resamples of the images (0: no CI)
    seed: int = rd.DEFAULT_SEED
    per_image: tuple[str, ...] = ()  # metrics that also get per-image BD (run anchors only)
    # strict: a pair that cannot be computed is an error (``compare``); otherwise it is skipped with a
    # note (the report). Curves with too few usable points are skipped either way.
    strict: bool = False
    bands: tuple = ()  # rd.Band: BD also per band (rate or quality range), first metric only


@dataclass
class BDOutput:
    tables: dict = field(default_factory=dict)  # metric -> rd.results_table DataFrame
    notes: list = field(default_factory=list)
    per_image: list = field(default_factory=list)  # (test, anchor, metric, DataFrame), run anchors only
    bands: object = None  # DataFrame: test, anchor, metric, band, BD per band (rd.band_bd), when asked
    n_pairs: int = 0


def _sensitivity(s: Settings, n_points: int) -> str:
    if s.sensitivity != "auto":
        return s.sensitivity
    return "test" if math.comb(n_points, s.subset_size) <= MAX_SUBSETS else "none"


def run_pairs(pairs: Sequence[Pair], s: Settings) -> BDOutput:
    """BD of every pair for every metric of ``s``; tables keep pair order."""
    out = BDOutput(n_pairs=len(pairs))
    results: dict[str, list] = {mt: [] for mt in s.metrics}
    curves: dict[tuple[str, str], rd.Curve | None] = {}
    band_rows: list[dict] = []
    for pair in pairs:
        t, a = pair.test, pair.anchor
        for mt in s.metrics:
            if (t.name, mt) not in curves:
                curves[(t.name, mt)] = t.curve(mt, s.rate)
            tc, ac = curves[(t.name, mt)], a.curves.get(mt)
            if tc is None or ac is None:
                if s.strict:
                    raise QVRFError(f"{t.name} vs {a.name}: no {get_metric(mt).label} values on one side")
                out.notes.append(f"{t.name} vs {a.name}: no {get_metric(mt).label} values on one side; skipped")
                continue
            sens = _sensitivity(s, len(tc))
            if sens == "none" and s.sensitivity == "auto" and mt == s.metrics[0]:
                out.notes.append(f"{t.name}: {len(tc)} points, too many for {s.subset_size}-point subset "
                                 f"sensitivity (> {MAX_SUBSETS} subsets); see its [levels] row where there is one")  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rd.RDWarning)  # the same text is in res.notes
                try:
                    res = rd.compare(test=tc, anchor=ac, interp=s.interp, hull=s.hull, min_overlap_pct=s.min_overlap,
                                     sensitivity=sens, subset_size=s.subset_size)  # fmt: skip
                except QVRFError as exc:
                    if s.strict and "usable point" not in str(exc):
                        raise
                    out.notes.append(f"skipped {t.name} vs {a.name} ({mt}): {exc}")
                    continue
            out.notes += list(res.notes)
            out.notes += [f"dropped (dominated/invalid): {d}" for d in (*res.dropped_test, *res.dropped_anchor)]
            if s.n_boot > 0:
                if t.rows is None:
                    out.notes.append(f"{t.name}: no per-image rows, no bootstrap CI")
                else:
                    try:
                        ci = rd.bootstrap_ci(t.rows, a.rows if a.rows is not None else ac, metric=mt,
                                             interp=s.interp, n_boot=s.n_boot, seed=s.seed, rate=s.rate)  # fmt: skip
                        res = res.with_ci(ci)
                    except QVRFError as exc:
                        out.notes.append(f"{t.name} vs {a.name} ({mt}): no bootstrap CI ({exc})")
            if rd.insufficient_overlap(res.overlap_pct, s.min_overlap):
                out.notes.append(f"{t.name} vs {a.name} ({mt}): BD-rate {res.bd_rate:+.2f} % not shown as a result: "
                                 f"quality overlap {res.overlap_pct:.0f} % < {s.min_overlap:.0f} %")  # fmt: skip
            results[mt].append(res)
            if s.bands and mt == s.metrics[0]:
                for band in s.bands:
                    band_rows.append({"test": t.name, "anchor": a.name, "metric": mt,
                                      **rd.band_bd(test=tc, anchor=ac, band=band, interp=s.interp, hull=s.hull)})  # fmt: skip
            if mt in s.per_image:
                if t.rows is None or a.rows is None:
                    if a.published is None or s.strict:
                        out.notes.append(f"{t.name} vs {a.name}: no per-image anchor data, no per-image BD")
                    continue
                df = rd.per_image_bd(t.rows, a.rows, metric=mt, interp=s.interp, hull=s.hull, test_name=t.name,
                                     anchor_name=a.name, rate=s.rate)  # fmt: skip
                out.per_image.append((t.name, a.name, mt, df))
    out.tables = {mt: rd.results_table(results[mt]) for mt in s.metrics if results[mt]}
    if s.bands:
        import pandas as pd

        out.bands = pd.DataFrame(band_rows, columns=["test", "anchor", "metric", *BAND_COLUMNS])
    out.notes = list(dict.fromkeys(out.notes))
    return out
