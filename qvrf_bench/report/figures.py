"""The five figures of the QVRF README, from measured per-image rows (the store schema) and,
optionally, published curves drawn beside them.

* :func:`variable_rate`: one QVRF model's discrete levels and continuous sweep (VariableRate.png);
* :func:`qvrf_vs_anchors`: QVRF against the fixed-rate anchors and VBR peers of one architecture
  (Balle.png, Minnen.png, Cheng2020.png);
* :func:`more_lagrange`: the 11-level model against 8 levels (moreLagrangeMultiplier.png);
* :func:`readme_figures`: all five at once, for ``nox -s reproduce_figures``.

Measured data are solid lines with filled markers labelled "measured"; published curves are dashed
with open markers labelled "published (source, dataset)". The subtitle names the device and dataset
of the measurement; ``caption`` (e.g. "smoke-scale model, N=32, trained 200 steps") is printed under
the figure so that a small model is never mistaken for the paper's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qvrf_bench import kinds
from qvrf_bench.analysis import rd
from qvrf_bench.analysis.anchors import Anchor, load_anchor
from qvrf_bench.analysis.curves import family, family_title, fixed_name
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import get_metric, quality_axes
from qvrf_bench.report import plots

#: Published curves the README figures are drawn against: the fixed-rate anchors QVRF used, QVRF's
#: own published curve, and CompressAI's variable-rate model as a peer (none exists for Cheng2020).
PUBLISHED = {
    "balle": (
        "compressai/kodak/bmshj2018-hyperprior-mse-cuda",
        "qvrf/kodak/hyper+qvrf",
        "compressai/kodak/bmshj2018-hyperprior-vbr-mse",
    ),
    "minnen": ("compressai/kodak/mbt2018-mse-cuda", "qvrf/kodak/joint+qvrf", "compressai/kodak/mbt2018-vbr-mse"),
    "minnen-mean": ("compressai/kodak/mbt2018-mean-mse-cuda", "compressai/kodak/mbt2018-mean-vbr-mse"),
    "cheng2020": ("qvrf/kodak/retrained-cheng2020", "qvrf/kodak/cheng2020+qvrf"),
}
README_FIGURES = ("VariableRate", "Balle", "Minnen", "Cheng2020", "moreLagrangeMultiplier")


def published_for(arch: str) -> tuple[str, ...]:
    """Names of the published curves for an architecture's README figure (see :data:`PUBLISHED`)."""
    fam = family(arch)
    if fam not in PUBLISHED:
        raise QVRFError(f"no published curves listed for arch {arch!r}; known: {', '.join(PUBLISHED)}")
    return PUBLISHED[fam]


def load_published(items: Iterable[object] | None, dirs=None) -> list:
    """Anchor objects from anchor names or Anchor objects (names go through anchors.load_anchor)."""

    out = []
    for item in items or ():
        out.append(item if isinstance(item, Anchor) else load_anchor(str(item), dirs))
    return out


# ----------------------------------------------------------------------------------------------
# Measured rows -> series
# ----------------------------------------------------------------------------------------------


@dataclass
class Measured:
    """Aggregated RD points of measured rows (via :func:`qvrf_bench.analysis.rd.aggregate`) plus the facts a
    caption needs."""

    points: pd.DataFrame  # one row per (method, rate_point); 'bpp' = the chosen rate column
    agg: rd.Aggregated
    rate: str
    devices: tuple[str, ...]
    n_images: int
    dataset: str | None

    @property
    def label(self) -> str:
        """'this run: <device>, <dataset> (<n> images)'."""
        dev = "; ".join(self.devices) or "device not recorded"
        data = f"{self.dataset}, {self.n_images} images" if self.dataset else f"{self.n_images} images"
        return f"this run: {dev}, {data}"

    def methods(self, kind: str | None = None, fam: str | None = None) -> list[str]:
        p = self.points
        sel = pd.Series(True, index=p.index)
        if kind is not None:
            sel &= p["kind"].astype(str) == kind
        if fam is not None:
            sel &= p["arch"].map(family) == fam
        return sorted(set(p.loc[sel, "method"].astype(str)))

    def arch_of(self, method: str) -> str:
        return str(self.points.loc[self.points["method"] == method, "arch"].iloc[0])


def measure(rows: pd.DataFrame, *, rate: str = "bpp_real", dataset: str | None = None) -> Measured:
    """Aggregate per-image rows (error rows are left out by rd.aggregate)."""
    rd.check_rate(rate)
    if rows is None or len(rows) == 0:
        raise QVRFError("no measured rows to plot")
    for col in ("kind", "arch"):
        if col not in rows.columns:
            raise QVRFError(f"measured rows lack the {col!r} column (expected the store schema)")
    agg = rd.aggregate(rows)
    if agg.points.empty:
        raise QVRFError("every measured row has an error or a failed decode; nothing to plot")
    points = agg.points.assign(bpp=agg.points[rate])
    devices = tuple(sorted({str(d) for d in agg.per_image.get("device", pd.Series(dtype=str)) if str(d)}))
    return Measured(points, agg, rate, devices, int(agg.per_image["image"].nunique()), dataset)


def max_level(points: pd.DataFrame) -> int:
    """Highest discrete level among points (-1 when none)."""
    lv = points["level"].dropna() if "level" in points.columns else pd.Series(dtype=float)
    return int(lv.max()) if len(lv) else -1


def _levels(points: pd.DataFrame) -> np.ndarray:
    if "level" not in points.columns:
        return np.zeros(len(points), bool)
    return points["level"].notna().to_numpy()


def method_series(m: Measured, method: str, *, label: str | None = None, only_levels: bool = False) -> plots.Series:
    """A measured method as a Series; discrete = rows with a level (all rows of fixed/classical)."""
    pts = m.points.loc[m.points["method"] == method]
    if pts.empty:
        raise QVRFError(f"no measured points for method {method!r}")
    kind = str(pts["kind"].iloc[0])
    disc = _levels(pts) if kinds.is_variable(kind) else np.ones(len(pts), bool)
    if kinds.is_variable(kind) and not disc.any():
        disc = np.ones(len(pts), bool)  # a rate-point list without levels: every point is "a rate"
    if only_levels:
        pts, disc = pts.loc[disc], disc[disc]
    notes = [f"s={int(v)}" if pd.notna(v) else "" for v in pts["level"]] if "level" in pts else ()
    return plots.Series(
        tips=_tips(pts),
        label=label or f"{method} (measured)",
        bpp=pts["bpp"].to_numpy(float),
        quality=quality_axes(pts),
        role=kinds.plot_role(kind),
        discrete=disc,
        notes=notes if kinds.is_tested(kind) else (),
    )


def _tips(pts: pd.DataFrame) -> list[str]:
    """Hover text of each point: its rate point and over how many images it is the mean."""
    n = pts["n_images"] if "n_images" in pts else [None] * len(pts)
    return [f"rate point {rp}" + (f", mean of {int(k)} images" if pd.notna(k) else "")
            for rp, k in zip(pts["rate_point"].astype(str), n, strict=True)]  # fmt: skip


def fixed_series(m: Measured, fam: str) -> plots.Series | None:
    """The run's fixed-rate models of one family, merged into ONE curve (rd.merge_methods)."""
    methods = m.methods(kinds.FIXED, fam)
    if not methods:
        return None
    arch = m.arch_of(methods[0])
    merged = rd.merge_methods(m.points, methods, fixed_name(arch))
    return plots.Series(
        label=f"{len(methods)} fixed-rate models, {arch} (measured)",
        bpp=merged["bpp"].to_numpy(float),
        quality=quality_axes(merged),
        role="fixed",
        tips=_tips(merged),
    )


def anchor_role(anchor) -> str:
    """A published curve's style family: CompressAI's variable-rate curves are the VBR peers'; every
    other variable-rate curve (QVRF's own) is drawn as the measured methods under test are."""
    if anchor.kind == "fixed-rate-set":
        return "fixed"
    if anchor.kind == "classical":
        return "classical"
    return "vbr" if anchor.name.startswith("compressai/") else "variable"


def anchor_source(anchor) -> str:
    """'bytedance/QRAF, kodak': who published the curve and on which dataset (no URL)."""
    who = (anchor.source or {}).get("repo") or anchor.name.split("/")[0]
    return f"{who}, {anchor.dataset}"


def anchor_series(anchor) -> plots.Series:
    """A published curve as a dashed Series labelled 'published (source, dataset)'."""
    pts = anchor.points

    def col(attr):
        return [np.nan if getattr(p, attr) is None else getattr(p, attr) for p in pts]

    return plots.Series(
        label=f"{anchor.name.rsplit('/', 1)[-1]} (published: {anchor_source(anchor)})",
        bpp=[p.bpp for p in pts],
        quality=quality_axes({c: col(c) for c in ("psnr_rgb", "ms_ssim_db_rgb")}),  # an anchor file's two
        role=anchor_role(anchor),
        published=True,
        tips=[f"published point ({anchor_source(anchor)})"] * len(pts),
    )


def rate_axis_label(rate: str) -> str:
    return {
        "bpp_real": "bpp (whole bitstream file, header included)",
        "payload_bpp_real": "bpp (entropy-coded payload, no header)",
    }[rate]


def family_series(m: Measured, fam: str, *, with_classical: bool = True) -> list[plots.Series]:
    """Measured curves of one family: each QVRF method, the fixed-rate set as one curve, VBR peers,
    (``with_classical``) the run's classical codecs, then every other method (of the contract)."""
    out = [method_series(m, x) for x in m.methods(kinds.REFERENCE, fam)]
    fixed = fixed_series(m, fam)
    if fixed is not None:
        out.append(fixed)
    out += [method_series(m, x) for x in m.methods(kinds.VBR, fam)]
    if with_classical:
        out += [method_series(m, x) for x in m.methods(kinds.CLASSICAL)]
    known = {kinds.REFERENCE, kinds.FIXED, kinds.VBR, kinds.CLASSICAL}
    others = sorted(set(m.points.loc[~m.points["kind"].isin(known) & (m.points["arch"].map(family) == fam), "method"]))
    return out + [method_series(m, x) for x in others]


def _subtitle(m: Measured, published: Sequence) -> str:
    sub = f"measured = {m.label}"
    if published:
        sub += "; published = " + ", ".join(sorted({a.dataset for a in published})) + " (see legend)"
    return sub


# ----------------------------------------------------------------------------------------------
# The README figures
# ----------------------------------------------------------------------------------------------


def _pick_qvrf(m: Measured, method: str | None, want) -> str:
    if method is not None:
        if method not in set(m.points["method"]):
            raise QVRFError(f"no measured rows for method {method!r}")
        return method
    candidates = m.methods(kinds.REFERENCE)
    if not candidates:
        raise QVRFError("no QVRF rows (kind 'qvrf') among the measured rows")
    preferred = [x for x in candidates if want(m.points.loc[m.points["method"] == x])]
    return (preferred or candidates)[0]


@plots.styled
def variable_rate(
    rows: pd.DataFrame,
    method: str | None = None,
    *,
    published: Iterable[object] = (),
    metric: str = "psnr",
    caption: str = "",
    dataset: str | None = None,
    rate: str = "bpp_real",
):
    """VariableRate.png: one QVRF model's continuous-rate sweep with its discrete levels on it.

    ``method``: default the first QVRF method that has both levels and continuous points.
    ``published``: anchor names or objects drawn for reference (e.g. qvrf/kodak/cheng2020+qvrf).
    """
    rd.check_metric(metric)
    m = measure(rows, rate=rate, dataset=dataset)
    name = _pick_qvrf(m, method, lambda p: _levels(p).any() and not _levels(p).all())
    pts = m.points.loc[m.points["method"] == name]
    lev = _levels(pts)
    levels = method_series(m, name, label=f"{name}: discrete levels (measured)", only_levels=True)
    sweep = None
    if (~lev).any():
        cont = pts.loc[~lev]
        sweep = plots.Series(
            label=f"{name}: continuous gains (measured)",
            bpp=cont["bpp"].to_numpy(float),
            quality=quality_axes(cont),
            role="variable",
            discrete=np.zeros(len(cont), bool),
        )
    anchors = load_published(published)
    extra = [anchor_series(a) for a in anchors]
    fig, axes = plots.new_figure(1, width=6.4, height=4.4)
    ax = axes[0]
    plots.assign_styles([levels] + extra)
    if sweep is not None:
        sweep.colour, sweep.marker = plots.SWEEP_COLOUR, "."
        plots.draw_series(ax, sweep, metric)
    plots.draw_series(ax, levels, metric, annotate=True, connect=sweep is None)
    for s in extra:
        plots.draw_series(ax, s, metric)
    ax.set_xlabel(plots.text(rate_axis_label(rate)))
    ax.set_ylabel(get_metric(metric).label)
    plots.finish(
        fig,
        title=f"Discrete and continuous variable rate: {name}",
        subtitle=_subtitle(m, anchors),
        caption=caption,
        ncol=1,
    )
    return fig


@plots.styled
def qvrf_vs_anchors(
    arch: str,
    rows: pd.DataFrame,
    *,
    published: Iterable[object] = (),
    metrics: Sequence[str] = ("psnr",),
    caption: str = "",
    dataset: str | None = None,
    rate: str = "bpp_real",
    with_classical: bool = False,
):
    """Balle.png / Minnen.png / Cheng2020.png: QVRF of one architecture against the run's fixed-rate
    models of that architecture (one curve) and its VBR peers, beside ``published`` curves.

    ``arch``: a run arch ('balle', 'minnen', 'minnen-mean', 'cheng2020'), a CompressAI name
    ('bmshj2018-hyperprior', 'mbt2018', ...) or the README's names ('Balle', 'Minnen', 'Cheng2020').
    ``published``: anchor names or objects, e.g. :func:`published_for` (arch).
    """
    fam = family(arch)
    m = measure(rows, rate=rate, dataset=dataset)
    series = family_series(m, fam, with_classical=with_classical)
    if not any(s.role in ("variable", "fixed", "vbr") for s in series):
        have = sorted(set(m.points["arch"].astype(str)))
        raise QVRFError(f"no measured rows of arch {arch!r} (family {fam!r}); the rows have: {', '.join(have)}")
    anchors = load_published(published)
    series += [anchor_series(a) for a in anchors]
    n_fixed = len(m.methods(kinds.FIXED, fam))
    anchor_text = f"{n_fixed} fixed-rate models" if n_fixed else "no fixed-rate models measured"
    return plots.rd_figure(
        series,
        metrics,
        title=f"{family_title(fam)}: QVRF vs {anchor_text}",
        subtitle=_subtitle(m, anchors),
        caption=caption,
        rate_label=rate_axis_label(rate),
    )


@plots.styled
def more_lagrange(
    rows: pd.DataFrame,
    method: str | None = None,
    *,
    published: Iterable[object] = (),
    metric: str = "psnr",
    caption: str = "",
    dataset: str | None = None,
    rate: str = "bpp_real",
):
    """moreLagrangeMultiplier.png: the 11-level QVRF model (lambdas up to 1.44) against the 8-level
    models and fixed-rate anchors of its architecture. Levels 8.. (the extra lambdas) are stars.

    ``method``: default the first QVRF method with more than 8 levels.
    """
    rd.check_metric(metric)
    m = measure(rows, rate=rate, dataset=dataset)
    name = _pick_qvrf(m, method, lambda p: max_level(p) >= 8)
    if method is None and max_level(m.points.loc[m.points["method"] == name]) < 8:
        raise QVRFError("no QVRF model with more than 8 levels among the measured rows (the 11-level model)")
    fam = family(m.arch_of(name))
    main = method_series(m, name, label=f"{name}: levels (measured)", only_levels=True)
    main.highlight = np.array([n.startswith("s=") and int(n[2:]) >= 8 for n in main.notes], bool)
    series = [main]
    for other in m.methods(kinds.REFERENCE, fam):
        if other != name:
            series.append(method_series(m, other, label=f"{other}: levels (measured)", only_levels=True))
    fixed = fixed_series(m, fam)
    if fixed is not None:
        series.append(fixed)
    anchors = load_published(published)
    series += [anchor_series(a) for a in anchors]
    fig = plots.rd_figure(
        series,
        (metric,),
        title=f"More Lagrange multipliers: {name}, {family_title(fam)} (stars: levels 8 and up)",
        subtitle=_subtitle(m, anchors),
        caption=caption,
        annotate=False,
        rate_label=rate_axis_label(rate),
    )
    return fig


def readme_figures(
    rows: pd.DataFrame,
    *,
    published: bool = True,
    caption: str | Mapping[str, str] = "",
    dataset: str | None = None,
    metric: str = "psnr",
    rate: str = "bpp_real",
) -> tuple[dict[str, object], dict[str, str]]:
    """All five README figures that the rows allow: ``({name: Figure}, {name: why it was skipped})``.

    Names are :data:`README_FIGURES`. ``published=True`` draws :data:`PUBLISHED` beside the measured
    curves (VariableRate and moreLagrangeMultiplier use the curves of their model's architecture).
    ``caption``: one text for every figure, or ``{arch: text}`` (how each architecture was trained),
    of which each figure shows only its own architecture's.
    """
    m = measure(rows, rate=rate, dataset=dataset)
    figs: dict[str, object] = {}
    skipped: dict[str, str] = {}

    def pub(arch: str) -> tuple[str, ...]:
        return PUBLISHED.get(family(arch), ()) if published else ()

    def cap(arch: str) -> str:
        if isinstance(caption, str):
            return caption
        return " | ".join(f"{a}: {text}" for a, text in caption.items() if family(a) == family(arch))

    def attempt(name: str, build) -> None:
        try:
            figs[name] = build()
        except QVRFError as exc:
            skipped[name] = str(exc)

    qvrf = m.methods(kinds.REFERENCE)
    # VariableRate is the paper's 8-level model: prefer one (the 11-level one has its own figure).
    eight = [x for x in qvrf if max_level(m.points.loc[m.points["method"] == x]) < 8]
    # the shipped model before a run's own fine-tune; among those, the one with the continuous points
    eight.sort(key=lambda x: (not x.startswith("zoo:"), -int((m.points["method"] == x).sum())))
    vr_method = (eight or qvrf or [None])[0]
    vr_arch = m.arch_of(vr_method) if vr_method else ""
    attempt(
        "VariableRate",
        lambda: variable_rate(
            rows,
            method=vr_method,
            published=pub(vr_arch),
            metric=metric,
            caption=cap(vr_arch),
            dataset=dataset,
            rate=rate,
        ),  # fmt: skip
    )
    for name, arch in (("Balle", "balle"), ("Minnen", "minnen"), ("Cheng2020", "cheng2020")):
        attempt(
            name,
            lambda arch=arch: qvrf_vs_anchors(
                arch,
                rows,
                published=pub(arch),
                metrics=(metric,),
                caption=cap(arch),
                dataset=dataset,
                rate=rate,
                with_classical=True,  # a trained learned codec is read against JPEG measured in the same run
            ),
        )
    many = [x for x in qvrf if max_level(m.points.loc[m.points["method"] == x]) >= 8]
    ml_arch = m.arch_of(many[0]) if many else ""
    attempt(
        "moreLagrangeMultiplier",
        lambda: more_lagrange(
            rows, published=pub(ml_arch), metric=metric, caption=cap(ml_arch), dataset=dataset, rate=rate
        ),
    )
    return figs, skipped
