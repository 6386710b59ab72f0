"""The HTML report: run folders in, ONE self-contained HTML file out.

Flow: :func:`load_runs` (store.ResultStore per folder, rows concatenated) -> :func:`build_context`
(RD points, BD tables and per-image BD from :mod:`qvrf_bench.analysis.rd`, figures from :mod:`.plots` /
:mod:`.figures`, everything else formatted as strings) -> ``templates/report.html.j2`` (jinja2 with
autoescape on) -> :func:`render_report` writes the file.

The file has inline SVG and inline CSS only: no JavaScript, no network, no external fonts. Every
name from the data is escaped by jinja2; the SVG is matplotlib's, whose text is escaped too (and
:func:`_inline_svg` refuses an SVG holding a script or foreign object, as a second line of defence).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qvrf_bench import analysis, files, kinds
from qvrf_bench.analysis import BDOutput, CurveSpec, matched, rd
from qvrf_bench.analysis.comparisons import with_complexity
from qvrf_bench.analysis.pairs import same_dataset
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import all_metrics, default_metrics, get_metric, quality_axes
from qvrf_bench.report import figures as F
from qvrf_bench.report import plots
from qvrf_bench.results import crops as C
from qvrf_bench.results.store import MANIFEST_NAME, RESULTS_DIR, ResultStore

TEMPLATE = "report.html.j2"


def run_metrics(points: pd.DataFrame) -> tuple[str, ...]:
    """The metrics the report shows: the default set, and every other metric of the table the run
    measured (sweep --metrics), in the table's order."""
    default = {m.name for m in default_metrics()}
    out = []
    for mt in all_metrics():
        axis = mt.axis_of(points)
        if mt.name in default or (axis is not None and np.isfinite(axis).any()):
            out.append(mt.name)
    return tuple(out)


MAX_ERROR_ROWS = 200  # listed one by one; the summary by reason counts them all
MAX_PER_IMAGE_COLUMNS = 16


# ----------------------------------------------------------------------------------------------
# Input
# ----------------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    path: Path
    run_id: str
    manifest: dict
    n_rows: int


def load_runs(run_dirs: Sequence[str | Path]) -> tuple[pd.DataFrame, list[RunInfo]]:
    """Rows of every run folder (latest row per key within each run), concatenated."""

    if not run_dirs:
        raise QVRFError("no run folder given")
    frames, infos, seen = [], [], set()
    for d in run_dirs:
        path = Path(d)
        if not path.is_dir():
            raise QVRFError(f"{path}: no such run folder")
        if path.resolve() in seen:
            raise QVRFError(f"{path}: run folder given twice")
        seen.add(path.resolve())
        store = ResultStore(path)
        rows = store.read()
        if rows.empty:
            raise QVRFError(
                f"{path}: no result rows (a run folder holds {MANIFEST_NAME} and {RESULTS_DIR}/part-*.parquet)"
            )
        frames.append(rows)
        infos.append(RunInfo(path, store.run_id, store.manifest or {}, len(rows)))
    return pd.concat(frames, ignore_index=True), infos


def dataset_of(infos: Sequence[RunInfo]) -> str | None:
    """The dataset named in the runs' configs: the sweep's ``{"name", "images", "sha256"}``, or a
    path / name under 'dataset', 'images' or 'data' (a path's last part)."""
    names = []
    for info in infos:
        cfg = info.manifest.get("config") or {}
        for key in ("dataset", "images", "data"):
            value = cfg.get(key) if isinstance(cfg, dict) else None
            if isinstance(value, dict) and value.get("name"):
                names.append(str(value["name"]))
                break
            if isinstance(value, str) and value:
                names.append(Path(value).name or value)
                break
    names = list(dict.fromkeys(names))
    return ", ".join(names) if names else None


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def fmt(x, digits: int = 2, signed: bool = False) -> str:
    """A number for a table cell ('n/a' for None/NaN/inf); a real minus sign."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    return (f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}").replace("-", "\N{MINUS SIGN}")


def fmt_time(x) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _uniq(values: Iterable) -> list[str]:
    return sorted({str(v) for v in values if v is not None and str(v) not in ("", "nan", "<NA>", "None")})


def _join(values: Iterable, empty: str = "not recorded") -> str:
    u = _uniq(values)
    return "; ".join(u) if u else empty


# ----------------------------------------------------------------------------------------------
# Test curves and anchors
# ----------------------------------------------------------------------------------------------


def test_curves(m: F.Measured) -> tuple[list[CurveSpec], dict[str, CurveSpec]]:
    """(tests, run anchors by family) of the measured points, by :mod:`qvrf_bench.analysis.curves`'s rule."""
    return analysis.test_curves(m.points, m.agg.per_image)


def compute_bd(
    m: F.Measured,
    anchors: Sequence,
    *,
    interp: str = rd.DEFAULT_INTERP,
    n_boot: int = 200,
    seed: int = rd.DEFAULT_SEED,
    cross_dataset: bool = False,
) -> BDOutput:
    """The run's own comparisons (:func:`qvrf_bench.analysis.default_pairs`), both metrics, PSNR per image.

    The same pairs and numbers as ``qvrf-bench compare RUN`` without ``--anchor``. A BD-rate whose
    quality overlap is below the threshold is kept in the table data but shown as "insufficient
    overlap"; its number goes to the notes."""
    tests, fixed = test_curves(m)
    pairs, notes = analysis.default_pairs(
        tests, fixed, anchors, rate=m.rate, dataset=m.dataset, cross_dataset=cross_dataset
    )
    settings = analysis.Settings(metrics=run_metrics(m.points), rate=m.rate, interp=interp, n_boot=n_boot, seed=seed,
                                 bands=rd.DEFAULT_BANDS,
                                 per_image=("psnr",))  # fmt: skip
    out = analysis.run_pairs(pairs, settings)
    out.notes = list(dict.fromkeys(notes + out.notes))
    return out


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def _inline_svg(fig, salt: str):
    from markupsafe import Markup

    svg = plots.to_svg(fig, salt=salt)
    low = svg.lower()
    # matplotlib escapes text, so these can only appear if that ever changes: refuse, never inline.
    for bad in ("<script", "<foreignobject", "javascript:", "<iframe", "onload="):
        if bad in low:
            raise QVRFError(f"figure {salt}: the SVG holds {bad!r}; refusing to inline it")
    return Markup(svg)


@dataclass
class FigureOut:
    id: str
    title: str
    svg: object
    caption: str
    metric: str | None = None  # RD figures: the metric on the vertical axis (the report's metric switch)


def _series_by_method(m: F.Measured, key_x: str, keys_y: dict[str, str], *, with_fixed: bool = True):
    """One Series per method (fixed-rate models merged per family), x = ``key_x``, y = columns."""
    out = []
    tests, fixed = test_curves(m)
    specs = [t for t in tests if not t.name.endswith(" [levels]")]
    for spec in specs:
        if spec.kind == kinds.FIXED and not with_fixed:
            continue
        p = spec.points
        out.append(
            plots.Series(
                label=spec.name,
                bpp=p[key_x].to_numpy(float),
                quality={k: p[c].to_numpy(float) for k, c in keys_y.items()},
                role=spec.kind if spec.kind in plots.ROLES else "other",
            )
        )
    return out


def build_figures(m: F.Measured, anchors: Sequence, bd: BDOutput, caption: str) -> tuple[list[FigureOut], dict]:
    """All report figures; returns (figures, {section: note when a figure could not be drawn})."""
    figs: list[FigureOut] = []
    missing: dict[str, str] = {}
    learned = sorted({F.family(a) for a in m.points.loc[m.points["kind"] != kinds.CLASSICAL, "arch"]})
    families = learned or ["classical"]
    for fam in families:
        series = F.family_series(m, fam) if fam != "classical" else F.family_series(m, "", with_classical=True)
        pubs = [a for a in anchors if a.kind == "classical" or F.family(a.arch) == fam]
        series += [F.anchor_series(a) for a in pubs]
        if not series:
            continue
        pub_text = f" Published curves: {', '.join(a.name for a in pubs)}." if pubs else " No published curve chosen."
        # One figure per metric: the report shows one metric at a time (its switch), the series'
        # legend entries hide and show them, and every marker has a hover text (plots.draw_series).
        for metric in run_metrics(m.points):
            if not any(s.has(metric) for s in series):
                continue
            fig = plots.rd_figure(series, [metric], rate_label=F.rate_axis_label(m.rate), interactive=True)
            title = f"RD curves: {F.family_title(fam)}, {get_metric(metric).label}"
            n = len(figs)
            figs.append(FigureOut(f"fig-rd-{n}", title, _inline_svg(fig, f"rd{n}"), caption + pub_text, metric))

    variable = [x for k in kinds.VARIABLE_RATE for x in m.methods(k)]
    panels = []
    for method in variable:
        p = m.points.loc[m.points["method"] == method]
        lev = p["level"].notna()
        if not lev.any():
            continue
        levels = F.method_series(m, method, label=f"{method}: levels", only_levels=True)
        sweep = None
        if (~lev).any():
            c = p.loc[~lev]
            sweep = plots.Series(
                label=f"{method}: continuous points",
                bpp=c["bpp"],
                quality=quality_axes(c),
                role="variable",
                discrete=np.zeros(len(c), bool),
            )
        panels.append(plots.SweepPanel(method, levels, sweep))
    if panels:
        fig = plots.levels_figure(panels, "psnr")
        figs.append(
            FigureOut(
                "fig-levels",
                "Discrete levels on the continuous sweep (PSNR-RGB)",
                _inline_svg(fig, "levels"),
                caption + " Large markers: discrete levels s; small dots: continuous points (gains, steps).",
            )
        )
    else:
        missing["levels"] = "No variable-rate method has discrete levels."

    gain_series = []
    for method in variable:  # methods of the contract write no gain: they have none to map
        p = m.points.loc[(m.points["method"] == method) & m.points["gain"].notna()]
        if p.empty:
            continue
        lev = p["level"].notna().to_numpy()
        gain_series.append(
            plots.Series(
                label=method,
                bpp=p["gain"],
                quality={"bpp": p["bpp"]},
                role=kinds.plot_role(m.points.loc[m.points["method"] == method, "kind"].iloc[0]),
                discrete=lev if lev.any() else np.ones(len(p), bool),
                notes=[f"s={int(v)}" if pd.notna(v) else "" for v in p["level"]],
            )
        )
    if gain_series:
        fig = plots.gain_map_figure(gain_series)
        figs.append(
            FigureOut(
                "fig-gain",
                "Gain to bpp map",
                _inline_svg(fig, "gain"),
                caption + " x: the gain used at each rate point (log scale); y: mean bpp over images.",
            )
        )
    else:
        missing["gain"] = "No rate point records a gain."

    dist = {f"{t} vs {a}": df["bd_rate_pct"].to_numpy(float) for t, a, _, df in bd.per_image}
    dist = {k: v for k, v in dist.items() if np.isfinite(v).any()}
    if dist:
        fig = plots.distribution_figure(dist, xlabel="per-image BD-rate [%] (PSNR-RGB); negative = fewer bits")
        figs.append(
            FigureOut(
                "fig-per-image",
                "Per-image BD-rate distribution",
                _inline_svg(fig, "perimage"),
                caption + " Each dot: one image's test curve against the same image's anchor curve; box: quartiles.",
            )
        )
    else:
        missing["per_image"] = "No per-image BD: needs a variable-rate method and fixed-rate models of the same arch."

    timing = _series_by_method(m, "bpp", {"enc_s": "enc_s", "dec_s": "dec_s"})
    if any(s.has("enc_s") or s.has("dec_s") for s in timing):
        fig = plots.timing_figure(timing)
        figs.append(
            FigureOut(
                "fig-timing",
                "Encode and decode time per rate point",
                _inline_svg(fig, "timing"),
                caption + " Mean wall time per image at each rate point (model/codec and container; no image I/O).",
            )
        )
    else:
        missing["timing"] = "No encode/decode times recorded."
    return figs, missing


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


def bd_rows(table: pd.DataFrame) -> list[dict]:
    out = []
    for _, r in table.iterrows():
        ci = ""
        if pd.notna(r["ci_low_pct"]):
            ci = f"[{fmt(r['ci_low_pct'], 2, True)}, {fmt(r['ci_high_pct'], 2, True)}]"
        sens = ""
        if r["sens_n"]:
            sens = " / ".join(fmt(r[c], 2, True) for c in ("sens_min_pct", "sens_median_pct", "sens_max_pct"))
        dropped = int(r["n_dropped_test"]) + int(r["n_dropped_anchor"])
        low = rd.insufficient_overlap(r["overlap_pct"])
        if low:  # not a result: no number, no win/loss colour (the number is in the notes)
            sens, ci = "", ""
        out.append(
            {
                "test": r["test"],
                "anchor": r["anchor"],
                "bd_rate": f"insufficient overlap ({fmt(r['overlap_pct'], 0)} %)"
                if low
                else fmt(r["bd_rate_pct"], 2, True),
                "bd_quality": fmt(r["bd_quality_db"], 3, True),
                "overlap": fmt(r["overlap_pct"], 0),
                "low_overlap": bool(r["overlap_pct"] < rd.DEFAULT_MIN_OVERLAP_PCT),
                "sens": sens or "n/a",
                "sens_n": int(r["sens_n"]),
                "ci": ci or "n/a",
                "points": f"{int(r['n_test'])}/{int(r['n_anchor'])}" + (f" ({dropped} dropped)" if dropped else ""),
                "better": bool(r["bd_rate_pct"] < 0) if pd.notna(r["bd_rate_pct"]) and not low else None,
            }
        )
    return out


def _cross_text(g: pd.DataFrame) -> str:
    """'mismatches / rows checked (where)' of the cross-decode check (crossdecode.py), '–' if none."""
    if "cross_decode_ok" not in g or not g["cross_decode_ok"].notna().any():
        return "–"
    checked = g["cross_decode_ok"].dropna().astype(bool)
    where = _join(g.loc[g["cross_decode_ok"].notna(), "cross_decode_device"], "")
    inexact = int((g["cross_decode_exact"] == False).sum()) if "cross_decode_exact" in g else 0  # noqa: E712
    extra = f"; {inexact} not bit-exact" if inexact else ""
    return f"{int((~checked).sum())} / {len(checked)} ({where}{extra})"


def run_complexity(infos: Sequence[RunInfo]) -> dict:
    """{method: its parameters and kMAC/px} as the runs' run.json recorded them (failed counts left out)."""
    return {k: v for info in infos for k, v in ((info.manifest or {}).get("complexity") or {}).items()
            if isinstance(v, dict) and "params" in v}  # fmt: skip


def methods_table(rows: pd.DataFrame, m: F.Measured, infos: Sequence[RunInfo] = ()) -> list[dict]:
    bad = rd.error_mask(rows)
    cx = run_complexity(infos)
    out = []
    for method, g in rows.groupby(rows["method"].astype(str), sort=True):
        p = m.points.loc[m.points["method"] == method]
        lev = int(p["level"].notna().sum()) if len(p) else 0
        out.append(
            {
                "method": method,
                "kind": _join(g["kind"], ""),
                "arch": _join(g["arch"], ""),
                "engine": _join(g["engine"], "n/a"),
                "levels": lev,
                "continuous": int(len(p) - lev) if kinds.is_variable(g["kind"].iloc[0]) else 0,
                "points": len(p),
                "targets": int(g["target_bpp"].nunique()) if "target_bpp" in g else 0,
                "cross": _cross_text(g),
                "images": int(g["image"].nunique()),
                "rows": len(g),
                "errors": int(bad.loc[g.index].sum()),
                "runs": _join(g["run_id"], ""),
                **_complexity_cells(cx.get(method)),
            }
        )
    return out


def _complexity_cells(c: dict | None) -> dict:
    """Parameters (M) and kMAC/px of a learned method, as the sweep recorded them (methods/complexity.py)."""
    if not c or "params" not in c:
        return {"params": "–", "enc_kmac": "–", "dec_kmac": "–"}
    return {
        "params": fmt(c["params"] / 1e6, 2),
        "enc_kmac": fmt(c["enc_kmac_px"], 1),
        "dec_kmac": fmt(c["dec_kmac_px"], 1),
    }


def glance(bd: BDOutput, m: F.Measured) -> list[dict]:
    """The result a reader came for, first: per architecture family, each variable-rate curve of the
    run against its fixed-rate anchors, the classical codecs and the published curves (BD-rate on
    PSNR-RGB with its CI; BD-rate per rate band against the anchors). The same numbers as section 5."""
    table = bd.tables.get("psnr")
    if table is None or table.empty:
        return []
    tests, fixed = test_curves(m)
    bands = bd.bands if bd.bands is not None else pd.DataFrame(columns=["test", "anchor", "band", "bd_rate_pct"])
    out = []
    for fam in sorted({t.fam for t in tests if kinds.is_variable(t.kind)}):
        own = fixed.get(fam)
        rows, anchors = [], []
        for t in (t for t in tests if t.fam == fam and kinds.is_variable(t.kind)):
            sel = table.loc[table["test"] == t.name]
            cells = {}
            for r in bd_rows(sel):
                label = "its fixed-rate anchors" if own is not None and r["anchor"] == own.name else r["anchor"]
                anchors.append(label)
                cells[label] = r
            band_cells = []
            if own is not None:
                b = bands.loc[(bands["test"] == t.name) & (bands["anchor"] == own.name)]
                band_cells = [f"{x.band.split(' ')[0]} {fmt(x.bd_rate_pct, 2, True)}" for x in b.itertuples()]
            rows.append({"test": t.name, "cells": cells, "bands": band_cells})
        # its own anchors first (the band column follows them), then the classical codecs and published curves
        order = sorted(dict.fromkeys(anchors), key=lambda a: a != "its fixed-rate anchors")
        if rows:
            out.append({"family": F.family_title(fam), "anchors": order,
                        "has_bands": order[0] == "its fixed-rate anchors" and any(r["bands"] for r in rows),
                        "rows": [{**r, "cells": [r["cells"].get(a) for a in order]} for r in rows]})  # fmt: skip
    return out


def bands_table(bd: BDOutput) -> dict | None:
    """Per pair: BD-rate in each default band (rd.DEFAULT_BANDS) and the quality range it covers."""
    if bd.bands is None or bd.bands.empty:
        return None
    names = list(dict.fromkeys(bd.bands["band"]))
    rows = []
    for (t, a), g in bd.bands.groupby(["test", "anchor"], sort=False):
        by = g.set_index("band")
        rows.append({
            "test": t, "anchor": a,
            "bd": [fmt(by.loc[b, "bd_rate_pct"], 2, True) for b in names],
            "ranges": [f"{by.loc[b, 'quality_lo_db']:.1f}-{by.loc[b, 'quality_hi_db']:.1f}"
                       if np.isfinite(by.loc[b, "quality_lo_db"]) else "–" for b in names],
        })  # fmt: skip
    return {"bands": names, "rows": rows}


def per_image_bd_table(bd: BDOutput) -> dict | None:
    """image x comparison BD-rate, with mean/median/min/max rows (values from rd.per_image_bd)."""
    if not bd.per_image:
        return None
    cols = [f"{t} vs {a}" for t, a, _, _ in bd.per_image]
    images = sorted({im for _, _, _, df in bd.per_image for im in df["image"]})
    values = {c: df.set_index("image")["bd_rate_pct"] for c, (_, _, _, df) in zip(cols, bd.per_image, strict=True)}
    body = [{"image": im, "cells": [fmt(values[c].get(im), 2, True) for c in cols]} for im in images]
    summary = []
    for label, func in (("mean", np.nanmean), ("median", np.nanmedian), ("min", np.nanmin), ("max", np.nanmax)):
        cells = []
        for c in cols:
            v = values[c].to_numpy(float)
            cells.append(fmt(func(v), 2, True) if np.isfinite(v).any() else "n/a")
        summary.append({"image": label, "cells": cells})
    return {"columns": cols, "rows": body, "summary": summary}


def matched_comparisons(rows: pd.DataFrame, m: F.Measured, metric: str = "psnr_rgb") -> list[dict]:
    """Every variable-rate method under test (kinds.py: QVRF, a method of the contract) with
    matched-rate rows against its family's fixed-rate models (one curve per image) and each classical
    codec of the run: per target, the mean delta of ``metric`` at the method's achieved rate on each
    image (matched.py), with its CI and wins/losses, plus the per-image deltas."""

    mr = matched.matched_rows(rows)
    if mr.empty:
        return []
    kind_of = rows.groupby("method")["kind"].first().astype(str)
    archs = rows.groupby("method")["arch"].first().astype(str)
    out = []
    for test in sorted(set(mr.loc[mr["kind"].map(kinds.is_tested), "method"].astype(str))):
        fam = F.family(archs[test])
        others = []
        fixed = [x for x in kind_of.index if kind_of[x] == kinds.FIXED and F.family(archs[x]) == fam]
        if fixed:
            others.append((F.fixed_name(archs[fixed[0]]), fixed))
        others += [(c, [c]) for c in kind_of.index if kind_of[c] == kinds.CLASSICAL]
        for name, members in others:
            d = matched.matched_deltas(rows.loc[rows["method"] == test], rows.loc[rows["method"].isin(members)],
                                       metric=metric, rate=m.rate)  # fmt: skip
            summ = matched.summarize(d)
            if not summ:
                continue
            table = [{
                "target": f"{s.target_bpp:g}", "images": f"{s.n_images}" + (f" (+{s.n_out_of_range} out of range)"
                                                                            if s.n_out_of_range else ""),
                "rate": fmt(s.mean_rate_test, 4), "delta": fmt(s.mean_delta, 2, True),
                "better": None if not np.isfinite(s.ci_low) or s.ci_low <= 0 <= s.ci_high else bool(s.mean_delta > 0),
                "ci": "n/a" if not np.isfinite(s.ci_low) else f"[{s.ci_low:+.2f}, {s.ci_high:+.2f}]",
                "wins": f"{s.wins} / {s.losses}",
            } for s in summ]  # fmt: skip
            targets = [f"{s.target_bpp:g}" for s in summ]
            per = d.pivot_table(index="image", columns="target_bpp", values="delta", aggfunc="first", dropna=False)
            per_rows = [{"image": str(im), "cells": [fmt(per.loc[im].get(float(t)), 2, True) for t in targets]}
                        for im in per.index]  # fmt: skip
            out.append({"test": test, "other": name, "rows": table, "targets": targets, "per_image": per_rows})
    return out


MAX_CROP_SETS = 12  # (image, target) groups shown side by side


def _data_uri(png: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def visual_crops(rows: pd.DataFrame, infos: Sequence[RunInfo]) -> list[dict]:
    """Side-by-side crops at matched rate (crops.py): per image with crops and per target, the
    original, each method under test (QVRF, a method of the contract) at the target, per family the
    fixed-rate model closest in bpp to that family's first such method on that image ("nearest
    anchor": nearest rate, not best quality), and each classical codec at the target; each with its
    bpp and PSNR. Images as PNG data URIs."""

    stored: dict[str, dict] = {}
    for info in infos:
        for sha, c in C.read_crops(info.path).items():
            entry = stored.setdefault(sha, {"meta": c["meta"], "original": c["original"], "files": {}})
            entry["files"].update(c["files"])
    if not stored:
        return []
    mr = matched.matched_rows(rows)
    fixed_rows = matched.sweep_rows(rows.loc[rows["kind"].astype(str) == kinds.FIXED])

    def tile(r, label: str) -> dict | None:
        entry = stored.get(str(r.image_sha256))
        png = entry and entry["files"].get(C.crop_key(r.method, r.checkpoint_sha256, r.rate_point))
        if not png:
            return None
        return {"label": label, "src": _data_uri(png), "bpp": fmt(r.bpp_real, 3), "psnr": fmt(r.psnr_rgb, 2)}

    out = []
    for sha, entry in sorted(stored.items(), key=lambda kv: str(kv[1]["meta"].get("image", ""))):
        here = mr.loc[mr["image_sha256"].astype(str) == sha]
        meta = entry["meta"]
        for target in sorted(set(here["target_bpp"].astype(float))):
            t_rows = here.loc[here["target_bpp"].astype(float) == target]
            qv = t_rows.loc[t_rows["kind"].map(kinds.is_tested)].sort_values("method")
            if qv.empty:
                continue
            tiles = [{"label": "original", "src": _data_uri(entry["original"]), "bpp": "", "psnr": ""}]
            tiles += [t for r in qv.itertuples(index=False) if (t := tile(r, str(r.method)))]
            seen_fams = set()
            for first in qv.itertuples(index=False):  # per family: the anchor nearest its first method
                fam = F.family(first.arch)
                if fam in seen_fams:
                    continue
                seen_fams.add(fam)
                f = fixed_rows.loc[(fixed_rows["image_sha256"].astype(str) == sha)
                                   & (fixed_rows["arch"].map(F.family) == fam)]  # fmt: skip
                if not f.empty:
                    best = f.iloc[int(np.argmin(np.abs(f["bpp_real"].to_numpy(float) - float(first.bpp_real))))]
                    t = tile(best, f"nearest anchor: {best['method']}")
                    if t:
                        tiles.append(t)
            cl = t_rows.loc[t_rows["kind"].astype(str) == kinds.CLASSICAL].sort_values("method")
            tiles += [t for r in cl.itertuples(index=False) if (t := tile(r, f"{r.method} q={r.quality:g}"))]
            out.append({"image": str(meta.get("image", sha[:12])), "target": f"{target:g}",
                        "box": f"{meta.get('size')} px at ({meta.get('left')}, {meta.get('top')})", "tiles": tiles})  # fmt: skip
            if len(out) >= MAX_CROP_SETS:
                return out
    return out


def per_image_results(m: F.Measured) -> list[dict]:
    """Per curve: image x discrete rate point, cells 'bpp / PSNR' (continuous sweeps left out)."""
    tests, _ = test_curves(m)
    out = []
    for spec in tests:
        if spec.name.endswith(" [levels]"):
            continue
        r = spec.rows
        if kinds.is_tested(spec.kind) and r["level"].notna().any():
            r = r.loc[r["level"].notna()]
        pts = spec.points.set_index("rate_point")
        order = [rp for rp in pts.sort_values("bpp").index if rp in set(r["rate_point"])]
        shown = order[:MAX_PER_IMAGE_COLUMNS]
        note = ""
        if len(order) > len(shown):
            note = f"first {len(shown)} of {len(order)} rate points (by bpp)"
        if kinds.is_tested(spec.kind) and len(r) < len(spec.rows):
            note = (note + "; " if note else "") + "discrete levels only (continuous points are in the figures)"
        idx = r.set_index(["image", "rate_point"])
        body = []
        for image in sorted(set(r["image"].astype(str))):
            cells = []
            for rp in shown:
                if (image, rp) in idx.index:
                    row = idx.loc[(image, rp)]
                    row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
                    cells.append(f"{fmt(row[m.rate], 3)} / {fmt(row['psnr_rgb'], 2)}")
                else:
                    cells.append("–")
            body.append({"image": image, "cells": cells})
        out.append({"name": spec.name, "columns": shown, "rows": body, "note": note})
    return out


def timing_table(m: F.Measured) -> list[dict]:
    tests, _ = test_curves(m)
    out = []
    for spec in tests:
        if spec.name.endswith(" [levels]"):
            continue
        p, r = spec.points, spec.rows
        enc, dec = p["enc_s"].to_numpy(float), p["dec_s"].to_numpy(float)

        def summary(v):
            v = v[np.isfinite(v)]
            if not v.size:
                return "n/a", "n/a"
            return fmt_time(v.mean()), f"{fmt_time(v.min())} – {fmt_time(v.max())}"

        e_mean, e_range = summary(enc)
        d_mean, d_range = summary(dec)
        out.append(
            {
                "name": spec.name,
                "engine": _join(r["engine"], "n/a"),
                "device": _join(r["device"]),
                "points": len(p),
                "images": int(r["image"].nunique()),
                "enc_mean": e_mean,
                "enc_range": e_range,
                "dec_mean": d_mean,
                "dec_range": d_range,
            }
        )
    return out


def error_rows(rows: pd.DataFrame) -> tuple[list[dict], list[dict], int]:
    """(listed rows, summary by method and reason, total) of rows left out of the curves."""
    bad = rows.loc[rd.error_mask(rows)].copy()
    if bad.empty:
        return [], [], 0

    def reason(r) -> str:
        err = str(r["error"] or "").strip()
        if err:
            return err
        return "decode check failed (decode_ok = False; no error text)"

    bad["reason"] = bad.apply(reason, axis=1)
    listed = [
        {
            "run": r["run_id"],
            "method": r["method"],
            "rate_point": r["rate_point"],
            "image": r["image"],
            "checkpoint": r["checkpoint"] or "–",
            "decode_ok": "yes" if bool(r["decode_ok"]) else "NO",
            "reason": r["reason"],
        }
        for _, r in bad.sort_values(["method", "rate_point", "image"]).head(MAX_ERROR_ROWS).iterrows()
    ]
    summary = [
        {"method": k[0], "reason": k[1], "count": int(v)}
        for k, v in bad.groupby(["method", "reason"]).size().sort_index().items()
    ]
    return listed, summary, len(bad)


def skipped_inputs(infos: Sequence[RunInfo]) -> list[dict]:
    """Inputs the runs skipped (no rows: an unreadable image), from each manifest's ``skipped``."""
    return [
        {
            "run": info.run_id,
            "image": str(e.get("image", "")),
            "reason": str(e.get("reason", "")),
            "shard": str(e.get("shard") or ""),
        }
        for info in infos
        for e in info.manifest.get("skipped") or []
        if isinstance(e, dict)
    ]


def provenance(rows: pd.DataFrame, infos: Sequence[RunInfo], anchors: Sequence, dataset: str | None) -> dict:
    runs = []
    for info in infos:
        man = info.manifest
        cmd = man.get("command") or []
        resumed = man.get("resumed") or []
        runs.append(
            {
                "run_id": info.run_id,
                "path": str(info.path),
                "created": man.get("created_utc") or "not recorded",
                "command": shlex.join(map(str, cmd)) if cmd else "not recorded (no run.json)",
                "resumed": [shlex.join(map(str, x.get("command") or [])) + f"  ({x.get('utc', '')})" for x in resumed],
                "shard": man.get("shard"),
                "merged_from": [f"{x.get('run_id')} ({x.get('dir')})" for x in man.get("merged_from") or []],
                "provenance": sorted((man.get("provenance") or {}).items()),
                "config": json.dumps(man.get("config"), indent=2, sort_keys=True, default=str),
                "n_rows": info.n_rows,
            }
        )
    vcols = ["device", "engine", "qvrf_bench_version", "torch_version", "compressai_version", "codec_version"]
    versions = [
        {**{c: (str(k[i]) or "–") for i, c in enumerate(vcols)}, "rows": int(n)}
        for k, n in rows.groupby(vcols, dropna=False).size().items()
    ]
    ck = rows.loc[rows["checkpoint_sha256"].astype(str) != ""]
    checkpoints = [
        {"method": k[0], "checkpoint": k[1], "sha256": k[2]}
        for k in sorted(set(zip(ck["method"], ck["checkpoint"], ck["checkpoint_sha256"], strict=True)))
    ]
    imgs = rows.drop_duplicates(["image", "image_sha256"]).sort_values("image")
    images = [
        {"image": r["image"], "sha256": r["image_sha256"] or "–", "size": f"{r['width']}×{r['height']}"}
        for _, r in imgs.iterrows()
    ]
    pubs = [
        {
            "name": a.name,
            "label": a.label,
            "dataset": a.dataset,
            "kind": a.kind,
            "source": " ".join(
                x
                for x in (
                    (a.source or {}).get("repo") or "",
                    (a.source or {}).get("path") or "",
                    f"@ {(a.source or {}).get('commit', '')[:12]}" if (a.source or {}).get("commit") else "",
                )
                if x
            ),
            "measured": f"PSNR on {a.reconstruction} reconstructions; device {a.device or 'not stated'}",
            "citation": a.citation or "",
            "notes": a.notes or "",
        }
        for a in anchors
    ]
    return {
        "runs": runs,
        "versions": versions,
        "checkpoints": checkpoints,
        "images": images,
        "dataset": dataset or "not recorded in the run configs",
        "anchors": pubs,
    }


# ----------------------------------------------------------------------------------------------
# Context and rendering
# ----------------------------------------------------------------------------------------------


RATE_TEXT = {
    "bpp_real": "bpp of whole bitstream files (container header included)",
    "payload_bpp_real": "bpp of the entropy-coded payload (no header), like published bpp",
}


def measured_caption(m: F.Measured) -> str:
    """The caption line every figure and table carries: what, where, with which versions."""
    good = m.agg.per_image
    return (
        f"Measured ({m.label}); rate = {RATE_TEXT[m.rate]}; engine: {_join(good['engine'], 'n/a')}; "
        f"qvrf-bench {_join(good['qvrf_bench_version'])}, torch {_join(good['torch_version'])}, "
        f"compressai {_join(good['compressai_version'])}."
    )


def conventions(m: F.Measured) -> str:
    return (
        "Each RD point is the mean over images at one rate point: mean PSNR-RGB, and MS-SSIM-RGB in dB "
        "(-10 log10(1 - mean MS-SSIM)); both on 8-bit-rounded reconstructions of real bitstreams. "
        f"Rate = {RATE_TEXT[m.rate]}. Rows with an error or a failed decode check are left out of every "
        "curve and listed in section 9. Complexity of learned methods: parameters, and multiply-adds per "
        "input pixel of the real compress (encode) and decompress (decode) path as torch.utils.flop_counter "
        "counts them (conv, transposed conv, matmul; elementwise ops and entropy coding not counted), "
        "counted on a 256x256 input at the top rate."
    )


def build_context(
    rows: pd.DataFrame,
    infos: Sequence[RunInfo],
    *,
    anchors: Sequence = (),
    title: str | None = None,
    dataset: str | None = None,
    rate: str = "bpp_real",
    interp: str = rd.DEFAULT_INTERP,
    n_boot: int = 200,
    seed: int = rd.DEFAULT_SEED,
    command: Sequence[str] | None = None,
    cross_dataset: bool = False,
) -> dict:
    """Everything the template shows, as strings, lists and inline SVG."""
    from qvrf_bench import __version__

    rd.check_interp(interp)
    dataset = dataset or dataset_of(infos)
    m = F.measure(rows, rate=rate, dataset=dataset)
    caption = measured_caption(m)
    notes = []
    if m.agg.n_error_rows:
        per = ", ".join(f"{k}: {v}" for k, v in sorted(m.agg.error_rows_by_method.items()))
        notes.append(f"{m.agg.n_error_rows} row(s) with an error or a failed decode left out of the curves ({per})")
    dup = int(m.agg.per_image.duplicated(["method", "checkpoint_sha256", "rate_point", "image"]).sum())
    if dup:
        notes.append(f"{dup} (method, rate point, image) row(s) appear in more than one run; all are averaged in")
    for method, counts in m.agg.unequal_image_counts().items():
        notes.append(f"{method}: rate points average different numbers of images {counts}")
    if anchors and rate == "bpp_real":
        notes.append(
            "published bpp counts the entropy-coded strings only; the measured bpp here includes the container "
            "header (render with --rate payload to compare like with like)"
        )
    if cross_dataset and anchors and dataset and any(not same_dataset(dataset, a.dataset) for a in anchors):
        notes.append(
            f"the measured dataset ({dataset}) differs from the published curves' "
            f"({', '.join(sorted({a.dataset for a in anchors}))}): compare shapes, not absolute values"
        )
    bd = compute_bd(m, anchors, interp=interp, n_boot=n_boot, seed=seed, cross_dataset=cross_dataset)
    tests, fixed = test_curves(m)
    cx = run_complexity(infos)
    figs, missing = build_figures(m, anchors, bd, caption)
    errors, error_summary, n_errors = error_rows(rows)
    bd_caption = (
        f"BD via the bjontegaard package ({interp}), monotone hull, integrated over the shared quality range; "
        f"overlap = shared range / the narrower curve's range (below {rd.DEFAULT_MIN_OVERLAP_PCT:.0f} %: not a result); "
        f"sensitivity = min / median / max BD-rate over every {rd.DEFAULT_SUBSET_SIZE}-point subset of the test "
        f"curve; CI = 95% percentile bootstrap over images ({n_boot} resamples, seed {seed}; paired for run "
        "anchors). Negative BD-rate = fewer bits than the anchor. The same pairs and numbers as `qvrf-bench compare "
        "RUN` (without --anchor). " + caption
    )
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return {
        "title": title or "qvrf-bench report: " + ", ".join(i.run_id for i in infos),
        "created": now,
        "version": __version__,
        "command": shlex.join(command) if command else "",
        "python": sys.version.split()[0],
        "caption": caption,
        "conventions": conventions(m),
        "summary": {
            "runs": [i.run_id for i in infos],
            "methods": len(set(rows["method"])),
            "images": m.n_images,
            "rows": len(rows),
            "errors": n_errors,
            "devices": "; ".join(m.devices) or "not recorded",
            "dataset": dataset or "not recorded",
            "anchors": [a.name for a in anchors],
        },
        "notes": notes,
        "methods": methods_table(rows, m, infos),
        "figures": figs,
        "rd_figures": [f for f in figs if f.id.startswith("fig-rd")],
        "rd_metrics": [
            {"name": mt, "label": get_metric(mt).label}
            for mt in dict.fromkeys(f.metric for f in figs if f.id.startswith("fig-rd") and f.metric)
        ],
        "figure": {f.id: f for f in figs},
        "missing": missing,
        "bd": {mt: bd_rows(t) for mt, t in bd.tables.items()},
        "bd_text": {
            mt: {
                "markdown": rd.format_markdown(t),
                "latex": rd.format_latex(t),
                "csv": rd.format_csv(with_complexity(t, cx, [*tests, *fixed.values()]) if cx else t),
            }
            for mt, t in bd.tables.items()
        },
        "bd_notes": bd.notes,
        "bd_caption": bd_caption,
        "metric_labels": rd.METRIC_LABELS,
        "per_image_bd": per_image_bd_table(bd),
        "bd_bands": bands_table(bd),
        "glance": glance(bd, m),
        "metric_heads": {mt.name: f"BD-{mt.head} [{mt.unit}]" for mt in all_metrics()},
        "per_image": per_image_results(m),
        "matched": matched_comparisons(rows, m),
        "crops": visual_crops(rows, infos),
        "timing": timing_table(m),
        "errors": errors,
        "error_summary": error_summary,
        "n_errors": n_errors,
        "skipped": skipped_inputs(infos),
        "max_error_rows": MAX_ERROR_ROWS,
        "provenance": provenance(rows, infos, anchors, dataset),
    }


def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True,  # every name from the data is escaped; only the checked SVG is Markup
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(context: dict) -> str:
    return environment().get_template(TEMPLATE).render(**context)


def render_report(
    runs: Sequence[str | Path],
    output: str | Path,
    *,
    anchors: Sequence[object] = (),
    title: str | None = None,
    dataset: str | None = None,
    rate: str = "bpp_real",
    interp: str = rd.DEFAULT_INTERP,
    n_boot: int = 200,
    seed: int = rd.DEFAULT_SEED,
    anchor_dirs: Sequence[str | Path] | None = None,
    command: Sequence[str] | None = None,
    figures_dir: str | Path | None = None,
    cross_dataset: bool = False,
) -> Path:
    """Write the report of one or more run folders to ``output`` (one self-contained HTML file).

    ``anchors``: published curves (names or Anchor objects). ``figures_dir``: also write each
    figure as PNG and SVG there (for papers). Returns the path written.
    """
    rows, infos = load_runs(runs)
    published = F.load_published(anchors, anchor_dirs)
    ctx = build_context(
        rows,
        infos,
        anchors=published,
        title=title,
        dataset=dataset,
        rate=rate,
        interp=interp,
        n_boot=n_boot,
        seed=seed,
        command=command,
        cross_dataset=cross_dataset,
    )
    html = render_html(ctx)

    # a folder (existing, or ending in /) gets index.html; a reader never sees half a report, and a
    # failed write (full disk) leaves no temporary behind
    out = files.write_bytes(files.output_path(output, "index.html", "report"), html.encode("utf-8"))
    if figures_dir is not None:
        save_figures(rows, figures_dir, anchors=published, dataset=ctx["summary"]["dataset"], rate=rate)
    return out


def save_figures(rows: pd.DataFrame, folder: str | Path, *, anchors: Sequence = (), dataset=None, rate="bpp_real"):
    """The RD figure of each family as ``rd-<family>.png/.svg`` in ``folder``; returns the paths."""
    m = F.measure(rows, rate=rate, dataset=dataset)
    paths = []
    for fam in sorted({F.family(a) for a in m.points.loc[m.points["kind"] != kinds.CLASSICAL, "arch"]}):
        pubs = [a for a in anchors if a.kind == "classical" or F.family(a.arch) == fam]
        fig = F.qvrf_vs_anchors(fam, rows, published=pubs, metrics=run_metrics(m.points), dataset=dataset, rate=rate)
        paths += plots.save(fig, Path(folder) / f"rd-{fam}", salt=fam)
    return paths
