"""Matplotlib figures for the report and for papers: arrays / DataFrames in, Figures out.

Figures are built with :class:`matplotlib.figure.Figure` directly (no pyplot), so nothing global is
touched and no GUI backend is needed. :func:`to_svg` makes an SVG string to inline in HTML;
:func:`save` writes ``<stem>.png`` and ``<stem>.svg`` for papers.

Visual convention, used by every figure: **measured** data are solid lines with filled markers,
**published** curves dashed lines with open markers, and every legend entry says which it is.
"""

from __future__ import annotations

import functools
import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import get_metric

ROLES = ("variable", "fixed", "vbr", "classical", "other")  # kinds.plot_role

# One palette per role, so a measured variable-rate curve and a published one (QVRF's) share a hue and
# differ only by line style; the n-th curve of a role in one figure takes the n-th colour.
_PALETTES = {
    "variable": ("#1f77b4", "#d62728", "#9467bd", "#17becf", "#e377c2"),
    "fixed": ("#222222", "#8c564b", "#555555"),
    "vbr": ("#2ca02c", "#bcbd22", "#98df8a"),
    "classical": ("#7f7f7f", "#c49c94", "#aaaaaa"),
    "other": ("#ff7f0e", "#e377c2", "#17becf", "#8c564b"),
}
SWEEP_COLOUR = "#8fbfe0"
_MARKERS = {"variable": "o", "fixed": "s", "vbr": "^", "classical": "D", "other": "v"}

STYLE = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica", "Liberation Sans"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "legend.fontsize": 8.0,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # real <text> in inline SVG: searchable, small; see to_svg
}
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


# ----------------------------------------------------------------------------------------------
# Text and colours
# ----------------------------------------------------------------------------------------------


def text(label: object) -> str:
    """A string safe as a matplotlib label: ``$`` would start mathtext (and fail on odd names) and a
    leading ``_`` hides a legend entry."""
    s = str(label).replace("$", r"\$")
    return " " + s if s.startswith("_") else s


def palette(role: str, index: int) -> str:
    colours = _PALETTES.get(role, _PALETTES["other"])
    return colours[index % len(colours)]


# ----------------------------------------------------------------------------------------------
# Series: one curve to draw
# ----------------------------------------------------------------------------------------------


@dataclass
class Series:
    """One curve: ``bpp`` and quality per metric (``psnr``, ``ms-ssim`` in dB), sorted by bpp.

    ``discrete``: True for a point that is a discrete rate (level / fixed model / codec setting),
    False for a point of a continuous sweep (drawn smaller). ``notes``: short text per point shown
    next to it (e.g. level numbers), '' for none.
    """

    label: str
    bpp: np.ndarray
    quality: Mapping[str, np.ndarray]
    role: str = "other"
    published: bool = False
    discrete: np.ndarray | None = None
    notes: Sequence[str] = ()
    colour: str | None = None
    marker: str | None = None
    highlight: np.ndarray | None = None  # points drawn with a star (e.g. the extra lambdas of 11 levels)
    tips: Sequence[str] = ()  # per point: what a hover shows besides label, bpp and quality (rate point, images)

    def __post_init__(self):
        bpp = np.asarray(self.bpp, dtype=float)
        order = np.argsort(bpp, kind="mergesort")
        self.bpp = bpp[order]
        self.quality = {m: np.asarray(q, dtype=float)[order] for m, q in self.quality.items()}
        n = bpp.size
        self.discrete = np.ones(n, bool) if self.discrete is None else np.asarray(self.discrete, bool)[order]
        self.highlight = np.zeros(n, bool) if self.highlight is None else np.asarray(self.highlight, bool)[order]
        notes = list(self.notes) or [""] * n
        if len(notes) != n:
            raise QVRFError(f"series {self.label!r}: {len(notes)} notes for {n} points")
        self.notes = [notes[i] for i in order]
        tips = list(self.tips) or [""] * n
        if len(tips) != n:
            raise QVRFError(f"series {self.label!r}: {len(tips)} tips for {n} points")
        self.tips = [tips[i] for i in order]

    def has(self, metric: str) -> bool:
        q = self.quality.get(metric)
        return q is not None and bool(np.isfinite(q).any())


def assign_styles(series: Sequence[Series]) -> None:
    """Give each series without a colour the next colour of its role's palette (per figure)."""
    used: dict[str, int] = {}
    for s in series:
        if s.colour is None:
            key = f"{s.role}:{'pub' if s.published else 'meas'}"
            s.colour = palette(s.role, used.get(key, 0))
            used[key] = used.get(key, 0) + 1
        if s.marker is None:
            s.marker = _MARKERS.get(s.role, "o")


def plain_log_ticks(axis) -> None:
    """Log-axis ticks as plain numbers (0.2, 0.5, 1, 2), not 2x10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))


def _hover(fig, gid: str, tips: list[str]) -> str:
    """Register the hover text of each marker an artist with ``gid`` draws (:func:`to_svg` turns
    them into SVG ``<title>`` elements); returns ``gid``."""
    if not hasattr(fig, "qvrf_tips"):
        fig.qvrf_tips = {}
    fig.qvrf_tips[gid] = tips
    return gid


def draw_series(
    ax, s: Series, metric: str, *, annotate: bool = False, connect: bool = True, sid: int | None = None
) -> bool:
    """Draw one series on ``ax``; returns False when it has no value for ``metric``.

    With ``sid`` (the series' index in its figure) every artist gets an id naming the series, and
    every marker a hover text (label, rate point, bpp, quality, images): :func:`to_svg` writes them
    into the SVG, and the report's script uses them for tooltips and a legend that hides and shows
    series. Without ``sid`` the figure is the plain static one."""
    if not s.has(metric):
        return False
    q = s.quality[metric]
    ok = np.isfinite(q) & np.isfinite(s.bpp)
    x, y = s.bpp[ok], q[ok]
    disc, hi = s.discrete[ok], s.highlight[ok]
    notes = [n for n, k in zip(s.notes, ok, strict=True) if k]
    tips = [t for t, k in zip(s.tips, ok, strict=True) if k]
    ls = "--" if s.published else "-"
    lw = 1.2 if s.published else 1.6
    face = "white" if s.published else s.colour
    fig = ax.figure
    if sid is not None:
        if not hasattr(fig, "qvrf_series"):
            fig.qvrf_series = {}
        fig.qvrf_series[text(s.label)] = sid

    def gid(part: str, sel=None) -> str | None:
        if sid is None:
            return None
        name, ylabel = f"qs{sid}-{part}-{metric}", get_metric(metric).label
        if sel is None:
            return name
        return _hover(fig, name, [
            "\n".join(filter(None, (s.label, t, f"bpp: {xi:.4f}", f"{ylabel}: {yi:.3f}")))
            for xi, yi, t in zip(x[sel], y[sel], np.asarray(tips, dtype=object)[sel], strict=True)
        ])  # fmt: skip

    if connect and x.size > 1:
        ax.plot(x, y, ls=ls, lw=lw, color=s.colour, zorder=2, label="_nolegend_", gid=gid("line"))
    # the legend handle carries line style and marker together
    ax.plot([], [], ls=ls, lw=lw, color=s.colour, marker=s.marker, mfc=face, mec=s.colour, label=text(s.label))
    big = disc & ~hi
    if big.any():
        ax.plot(x[big], y[big], ls="none", marker=s.marker, ms=5.0, mfc=face, mec=s.colour, mew=1.1, zorder=3,
                gid=gid("pts", big))  # fmt: skip
    if (~disc).any():
        ax.plot(x[~disc], y[~disc], ls="none", marker=".", ms=3.5, color=s.colour, zorder=3, gid=gid("cont", ~disc))
    if hi.any():
        ax.plot(x[hi], y[hi], ls="none", marker="*", ms=9.0, mfc=face, mec=s.colour, mew=1.0, zorder=4,
                gid=gid("star", hi))  # fmt: skip
    if annotate:
        for i, (xi, yi, note) in enumerate(zip(x, y, notes, strict=True)):
            if note:
                ax.annotate(
                    text(note), (xi, yi), xytext=(4, -9), textcoords="offset points", fontsize=7, color=s.colour,
                    gid=gid(f"note{i}"),
                )  # fmt: skip
    return True


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def styled(func):
    """Run a figure builder under :data:`STYLE` (artists read rcParams when they are created)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from matplotlib import rc_context

        with rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float | None = None, height: float = 3.6):
    """A constrained-layout Figure and its axes (always a flat list). Call under :func:`styled`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width or (4.6 * ncols + 0.4), height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def finish(fig, *, title: str = "", subtitle: str = "", caption: str = "", legend_axes=None, ncol: int = 2) -> None:
    """Title (+ subtitle line), one shared legend below the panels, and a caption under it.

    The figure grows to make room for legend and caption (measured after a layout pass), so the
    panels keep their size and nothing is cut off; no ``bbox_inches="tight"`` is needed on saving
    (which would move a figure legend relative to the caption).
    """
    if title or subtitle:
        width_chars = max(40, int(fig.get_figwidth() * 12))  # ~12 characters per inch at 10 pt
        lines = [line for t in (title, subtitle) if t for line in textwrap.wrap(text(t), width_chars)]
        fig.suptitle("\n".join(lines), fontsize=10)
    handles, labels = [], []
    for ax in legend_axes if legend_axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    legend = None
    if handles:
        legend = fig.legend(handles, labels, loc="upper center", ncols=min(ncol, len(labels)), frameon=False)
        ids = getattr(fig, "qvrf_series", {})
        for h, t in zip(legend.legend_handles, legend.get_texts(), strict=True):
            if t.get_text() in ids:  # the entry hides and shows its series (to_svg, the report's script)
                h.set_gid(f"qs{ids[t.get_text()]}-leg-h")
                t.set_gid(f"qs{ids[t.get_text()]}-leg-t")
    cap = None
    if caption:
        width_chars = max(40, int(fig.get_figwidth() * 14))
        wrapped = "\n".join(textwrap.wrap(text(caption), width_chars))
        cap = fig.text(0.5, 0.0, wrapped, ha="center", va="bottom", fontsize=7.5, color="#333333")
    if legend is None and cap is None:
        return
    fig.draw_without_rendering()  # sizes of legend and caption in inches
    dpi = fig.dpi
    leg_w = legend.get_window_extent().width / dpi if legend is not None else 0.0
    leg_h = legend.get_window_extent().height / dpi if legend is not None else 0.0
    cap_h = cap.get_window_extent().height / dpi if cap is not None else 0.0
    pad = 0.06
    if leg_w + 0.2 > fig.get_figwidth():
        fig.set_figwidth(leg_w + 0.2)
    below = leg_h + cap_h + pad * (3 if cap is not None else 1)
    height = fig.get_figheight() + below
    fig.set_figheight(height)
    fig.get_layout_engine().set(rect=(0.0, below / height, 1.0, 1.0 - below / height))
    if legend is not None:
        legend.set_bbox_to_anchor((0.5, below / height), transform=fig.transFigure)
    if cap is not None:
        cap.set_y(pad / height)


@styled
def rd_figure(
    series: Sequence[Series],
    metrics: Sequence[str] = ("psnr", "ms-ssim"),
    *,
    title: str = "",
    subtitle: str = "",
    caption: str = "",
    annotate: bool = False,
    rate_label: str = "bpp (real bitstreams)",
    width: float | None = None,
    interactive: bool = False,
) -> object:
    """RD curves, one panel per metric (quality vs bpp). Metrics no series has are left out.
    ``interactive``: ids and hover texts for the HTML report (:func:`draw_series`)."""
    metrics = [m for m in metrics if any(s.has(m) for s in series)]
    if not metrics:
        raise QVRFError("no RD values to plot (every curve lacks PSNR and MS-SSIM)")
    assign_styles(series)
    fig, axes = new_figure(len(metrics), width=width or (6.4 if len(metrics) == 1 else None))
    for ax, metric in zip(axes, metrics, strict=True):
        for k, s in enumerate(series):
            draw_series(ax, s, metric, annotate=annotate, sid=k if interactive else None)
        ax.set_xlabel(text(rate_label))
        ax.set_ylabel(get_metric(metric).label)
    finish(fig, title=title, subtitle=subtitle, caption=caption, legend_axes=axes[:1], ncol=min(len(metrics), 2))
    return fig


@dataclass
class SweepPanel:
    """One model's discrete levels and continuous sweep (for :func:`levels_figure`)."""

    name: str
    levels: Series
    sweep: Series | None
    extra: list[Series] = field(default_factory=list)  # e.g. a published curve for reference


@styled
def levels_figure(panels: Sequence[SweepPanel], metric: str = "psnr", *, title: str = "", caption: str = ""):
    """Discrete levels as markers on the continuous sweep, one panel per model."""
    if not panels:
        raise QVRFError("no model with discrete levels to plot")
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(ncols, nrows)
    for ax, p in zip(axes, panels, strict=False):
        assign_styles([p.levels] + list(p.extra))
        if p.sweep is not None:
            p.sweep.colour = SWEEP_COLOUR  # the sweep is the backdrop the levels sit on
            p.sweep.marker = "."
            draw_series(ax, p.sweep, metric)
        draw_series(ax, p.levels, metric, annotate=True, connect=p.sweep is None)
        for s in p.extra:
            draw_series(ax, s, metric)
        ax.set_title(text(p.name), fontsize=9)
        ax.set_xlabel("bpp (real bitstreams)")
        ax.set_ylabel(get_metric(metric).label)
        ax.legend(loc="lower right", frameon=False, fontsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    finish(fig, title=title, caption=caption, legend_axes=[])
    return fig


@styled
def gain_map_figure(series: Sequence[Series], *, title: str = "", caption: str = ""):
    """Gain (log x) against mean bpp (log y), per model. ``Series.bpp`` holds the gains and
    ``quality['bpp']`` the mean bpp (a Series is reused as an x/y container)."""
    if not series:
        raise QVRFError("no rate points with a gain to plot")
    assign_styles(series)
    fig, axes = new_figure(1, width=6.2, height=3.8)
    ax = axes[0]
    for s in series:
        draw_series(ax, s, "bpp", annotate=True)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("gain (quantization regulator; VBR: 1 / quantization step), log scale")
    ax.set_ylabel("mean bpp (real bitstreams), log scale")
    finish(fig, title=title, caption=caption, ncol=2)
    return fig


@styled
def timing_figure(series: Sequence[Series], *, title: str = "", caption: str = ""):
    """Encode and decode wall time per rate point against bpp (log y). ``quality`` holds ``enc_s``
    and ``dec_s``."""
    usable = [s for s in series if s.has("enc_s") or s.has("dec_s")]
    if not usable:
        raise QVRFError("no encode/decode times to plot")
    assign_styles(usable)
    fig, axes = new_figure(2)
    for ax, key, name in zip(axes, ("enc_s", "dec_s"), ("encode", "decode"), strict=True):
        for s in usable:
            draw_series(ax, s, key)
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
        ax.set_xlabel("bpp (real bitstreams)")
        ax.set_ylabel(f"{name} time per image [s], log scale")
    finish(fig, title=title, caption=caption, legend_axes=axes[:1], ncol=3)
    return fig


@styled
def distribution_figure(values: Mapping[str, Sequence[float]], *, xlabel: str, title: str = "", caption: str = ""):
    """Horizontal box plot with the individual values (e.g. per-image BD-rates), one row per name."""
    items = [(k, np.asarray(v, float)[np.isfinite(np.asarray(v, float))]) for k, v in values.items()]
    items = [(k, v) for k, v in items if v.size]
    if not items:
        raise QVRFError("no finite values to plot")
    fig, axes = new_figure(1, width=7.0, height=0.9 + 0.55 * len(items))
    ax = axes[0]
    positions = np.arange(len(items))[::-1]
    ax.boxplot(
        [v for _, v in items],
        positions=positions,
        orientation="horizontal",
        widths=0.5,
        showfliers=False,
        medianprops={"color": "#d62728"},
    )
    rng = np.random.default_rng(0)  # fixed jitter: the same report twice is the same file
    for pos, (_, v) in zip(positions, items, strict=True):
        ax.plot(v, pos + rng.uniform(-0.12, 0.12, v.size), ls="none", marker="o", ms=3, color="#1f77b4", alpha=0.7)
    ax.axvline(0.0, color="#444444", lw=0.8)
    ax.set_yticks(positions, [text(k) for k, _ in items])
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(text(xlabel))
    finish(fig, title=title, caption=caption, legend_axes=[])
    return fig


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

_XML_HEAD = re.compile(r"^\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)
_SVG_OPEN = re.compile(r"<svg\b[^>]*>")


_SERIES_GROUP = re.compile(r'<g id="qs(\d+)-([a-z]+)([^"]*)">')
_USE = re.compile(r"<use\b[^>]*?/>")


def _interactive(svg: str, tips: dict[str, list[str]], salt: str) -> str:
    """Hover texts as ``<title>`` of each marker (native tooltips; the report's script shows them at
    once), and the series' groups marked for the legend toggle: ``data-series`` = the series' index,
    class ``qs-line`` / ``qs-pts`` / ``qs-leg`` ..., ids made unique per figure with ``salt``. An
    artist whose marker count differs from its texts (matplotlib drops markers outside the canvas)
    gets no titles rather than wrong ones."""
    from html import escape

    out, pos = [], 0
    for m in _SERIES_GROUP.finditer(svg):
        gid = f"qs{m[1]}-{m[2]}{m[3]}"
        nxt = svg.find('<g id="', m.end())
        body = svg[m.end() : nxt if nxt >= 0 else None]
        texts = tips.get(gid)
        uses = _USE.findall(body)
        end = nxt if nxt >= 0 else len(svg)
        if texts is not None and len(uses) == len(texts):
            pieces = _USE.split(body)  # text around the markers, in order: one title per marker
            body = pieces[0] + "".join(
                u[:-2] + f"><title>{escape(t, quote=False)}</title></use>" + rest
                for u, t, rest in zip(uses, texts, pieces[1:], strict=True)
            )
        out += [svg[pos : m.start()], f'<g id="{salt}-{gid}" class="qs-{m[2]}" data-series="{m[1]}">', body]
        pos = end
    return "".join(out) + svg[pos:]


def to_svg(fig, *, salt: str = "fig") -> str:
    """The figure as an ``<svg>`` element ready to inline in HTML5.

    Text stays text (``svg.fonttype=none``; matplotlib escapes it, so a label cannot inject markup).
    The XML declaration, DOCTYPE, metadata and namespace declarations are dropped (HTML needs none
    of them and they hold the only http:// strings); the element scales to the page width up to its
    natural size. ``salt`` makes the clip-path/marker ids unique per figure and the output
    deterministic.
    """
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({**STYLE, "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata=_SVG_METADATA)
    svg = _interactive(_XML_HEAD.sub("", buf.getvalue()), getattr(fig, "qvrf_tips", {}), salt)
    head = _SVG_OPEN.search(svg)
    if head is None:  # pragma: no cover - matplotlib always writes one
        raise QVRFError("matplotlib wrote no <svg> element")
    tag = head.group(0)
    width = re.search(r'\bwidth="([\d.]+)pt"', tag)
    viewbox = re.search(r'\bviewBox="([^"]+)"', tag)
    max_w = f"max-width:{float(width.group(1)) * 4 / 3:.0f}px;" if width else ""
    new_tag = (
        f'<svg class="plot" viewBox="{viewbox.group(1) if viewbox else ""}" version="1.1" role="img" '
        f'style="{max_w}width:100%;height:auto">'
    )
    return svg[: head.start()] + new_tag + svg[head.end() :].strip() + "\n"


def save(fig, path_stem: str | Path, *, dpi: int = 200, salt: str = "fig") -> list[Path]:
    """Write ``<path_stem>.png`` and ``<path_stem>.svg`` (text as paths: the SVG looks the same
    everywhere, for papers). Returns the two paths."""
    from matplotlib import rc_context

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with rc_context({**STYLE, "svg.fonttype": "path", "svg.hashsalt": salt}):
        for ext in ("png", "svg"):
            path = stem.with_name(stem.name + "." + ext)
            meta = _SVG_METADATA if ext == "svg" else {"Software": None}
            fig.savefig(path, format=ext, dpi=dpi, metadata=meta)
            out.append(path)
    return out
