"""The metric table: every distortion metric the suite measures, and what each of its readers needs.

A metric is its per-image function (pure: two (H, W, 3) uint8 RGB images in, a float out) plus one
:class:`Metric` entry, registered with :func:`register_metric`. Everything downstream iterates this
table and names no metric itself: the sweep's rows (``sweep --metrics``), the result schema (a
registered metric's columns are nullable float64 columns of the store), RD aggregation and BD
(``rd``), ``compare --metric``, the anchors' CSV columns and the report. So a new metric touches no
package file: see tests/metrics/test_table.py, which registers a toy one from the test.

Aggregation (one rule for all): an RD point's quality is ``to_axis(mean over images of column)``,
NaN-skipping. For PSNR ``to_axis`` is the identity (mean PSNR over images, not the PSNR of the mean
MSE); for MS-SSIM it is the dB of the mean MS-SSIM, ``-10 log10(1 - v)`` (CompressAI's plots). The
curve axis always rises with quality: a lower-is-better metric's ``to_axis`` must turn it round
(the default negates, and the label says so), so the monotone hull and BD treat every metric alike;
BD-quality is then in axis units, positive = the test is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics import functional as F
from qvrf_bench.metrics import learned

PerImage = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Derived:
    """A per-image column computed from the metric's value (e.g. MS-SSIM in dB)."""

    column: str
    fn: Callable[[float], float]
    description: str


@dataclass(frozen=True)
class Metric:
    """One row of the metric table."""

    name: str  # CLI name: sweep --metrics, compare --metric (e.g. "psnr", "ms-ssim", "psnr-y")
    column: str  # per-image column of result rows: metric and colour space (psnr_rgb, ms_ssim_rgb)
    label: str  # curve axis label with its unit, e.g. "PSNR-RGB [dB]"
    per_image: PerImage
    description: str  # the result column's description (store.schema_markdown shows it)
    axis_column: str = ""  # aggregated-points column of the curve axis (default: ``column``)
    to_axis: Callable[[np.ndarray], np.ndarray] | None = None  # mean value -> axis (None: identity)
    higher_is_better: bool = True
    unit: str = "dB"  # of the axis (BD-quality is in this unit)
    short: str = ""  # short name for table heads, e.g. "PSNR" in "BD-PSNR [dB]" (default: label's first word)
    default: bool = False  # computed by a plain ``sweep`` (the default set stays cheap)
    derived: tuple[Derived, ...] = ()
    csv_names: tuple[str, ...] = ()  # its column names in a CSV curve (anchors.from_csv_text), by preference
    undefined_notice: str = ""  # the row notice when the value is NaN (e.g. image too small)
    requires: str = ""  # what it needs beyond the base install, for `--metrics all` to skip it when absent
    unavailable: Callable[[], str | None] | None = None  # why it cannot run here (e.g. a weights file absent)

    @property
    def quality_column(self) -> str:
        return self.axis_column or self.column

    @property
    def head(self) -> str:
        """For table heads: "PSNR" in "BD-PSNR [dB]"; a negated lower-is-better metric reads "-MAD"."""
        head = self.short or self.label.split(" [")[0]
        return head if self.higher_is_better or self.to_axis is not None else f"-{head}"

    def axis(self, values) -> np.ndarray:
        """Values of ``column`` (per image or means over images) on the curve axis (rising with quality)."""
        x = np.asarray(values, dtype=float)
        if self.to_axis is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(self.to_axis(x), dtype=float)
        return x if self.higher_is_better else -x

    def axis_of(self, frame) -> np.ndarray | None:
        """The curve axis from a table of points (aggregated, or per image): its axis column when it
        has one of its own, else ``axis`` of its value column; None when the table has neither."""
        if self.quality_column != self.column and self.quality_column in frame:
            return np.asarray(frame[self.quality_column], dtype=float)
        if self.column in frame:
            return self.axis(frame[self.column])
        return None

    def columns(self) -> tuple[tuple[str, str], ...]:
        """(column, description) of every per-image column this metric writes."""
        return ((self.column, self.description), *((d.column, d.description) for d in self.derived))

    def measure(self, ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> dict[str, float]:
        """This metric's per-image columns for one reconstruction."""
        v = float(self.per_image(ref_rgb8, test_rgb8))
        return {self.column: v, **{d.column: float(d.fn(v)) for d in self.derived}}


_TABLE: dict[str, Metric] = {}


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to the table (a decorator-free registry: a metric is data). A name or column
    already taken by another metric is refused unless ``replace``."""
    if not replace:
        for m in _TABLE.values():
            if m.name == metric.name:
                raise ValueError(f"metric {metric.name!r} is already registered")
            taken = {c for c, _ in m.columns()}
            clash = taken & {c for c, _ in metric.columns()}
            if clash:
                raise ValueError(f"metric {metric.name!r}: column(s) {', '.join(sorted(clash))} belong to {m.name!r}")
    _TABLE[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    _TABLE.pop(name, None)


def metric_names() -> tuple[str, ...]:
    return tuple(_TABLE)


def all_metrics() -> tuple[Metric, ...]:
    return tuple(_TABLE.values())


def get_metric(name: str | Metric) -> Metric:
    """The table entry of ``name``; :class:`QVRFError` listing the names otherwise."""
    if isinstance(name, Metric):
        return name
    try:
        return _TABLE[name]
    except (KeyError, TypeError):
        raise QVRFError(f"unknown metric {name!r}: use one of {', '.join(_TABLE)}") from None


def default_metrics() -> tuple[Metric, ...]:
    return tuple(m for m in _TABLE.values() if m.default)


def metric_columns() -> dict[str, str]:
    """Every per-image column of every registered metric -> its description."""
    return {c: d for m in _TABLE.values() for c, d in m.columns()}


def quality_axes(frame) -> dict[str, np.ndarray]:
    """{metric name: its curve axis} for every metric of the table that ``frame`` has (plots' Series)."""
    out = {}
    for m in _TABLE.values():
        v = m.axis_of(frame)
        if v is not None:
            out[m.name] = v
    return out


def _problem(m: Metric) -> str | None:
    """Why ``m`` cannot be computed here, or None."""
    import importlib.util

    if m.requires and importlib.util.find_spec(m.requires) is None:
        return f"metric {m.name!r} needs the Python package {m.requires!r}, which is not installed"
    return m.unavailable() if m.unavailable is not None else None


def _usable(m: Metric) -> bool:
    return _problem(m) is None


def parse_metrics(spec: str | None) -> tuple[Metric, ...]:
    """``sweep --metrics``: comma-separated names, ``default`` (the cheap set) or ``all`` (every
    metric computable offline here). The default set is always included: rows, curves and the
    report rest on it."""
    if spec is None or not str(spec).strip() or str(spec).strip() == "default":
        return default_metrics()
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if names == ["all"]:
        return tuple(m for m in _TABLE.values() if m.default or _usable(m))
    chosen = {m.name: m for m in default_metrics()}
    for n in names:
        m = get_metric(n)
        why = _problem(m)
        if why:
            raise QVRFError(why)
        chosen[m.name] = m
    return tuple(m for m in _TABLE.values() if m.name in chosen)


# --- the built-in metrics -----------------------------------------------------------------------

PSNR = register_metric(Metric(
    "psnr", "psnr_rgb", "PSNR-RGB [dB]", F.psnr_rgb,
    "PSNR (dB) over R, G, B of the 8-bit-rounded reconstruction (one MSE over all channels, peak "
    "255). +inf for a lossless result; null when decoding failed.",
    short="PSNR", default=True, csv_names=("psnr", "psnr_rgb", "psnr-rgb")))  # fmt: skip

MS_SSIM = register_metric(Metric(
    "ms-ssim", "ms_ssim_rgb", "MS-SSIM-RGB [dB]", F.ms_ssim_rgb,
    "MS-SSIM (pytorch_msssim, 5 scales, data_range 255) of the 8-bit reconstruction; NaN when the "
    "image's shorter side is <= 160 px.",
    axis_column="ms_ssim_db_rgb", to_axis=F.db_of_similarity, short="MS-SSIM", default=True,
    derived=(Derived("ms_ssim_db_rgb", F.ms_ssim_db, "-10 log10(1 - ms_ssim_rgb); +inf at 1."),),
    csv_names=("ms_ssim", "ms_ssim_rgb", "ms-ssim", "ms-ssim-rgb"),
    undefined_notice=f"MS-SSIM undefined: shorter side < {F.MS_SSIM_MIN_SIDE} px"))  # fmt: skip

PSNR_Y = register_metric(Metric(
    "psnr-y", "psnr_y", "PSNR-Y [dB]", F.psnr_y,
    "PSNR (dB) of BT.709 full-range luma computed in float64 from the 8-bit RGB (CompressAI's "
    "rgb2ycbcr), peak 255; null when not measured (sweep --metrics).",
    short="PSNR-Y"))  # fmt: skip

PSNR_YUV = register_metric(Metric(
    "psnr-yuv", "psnr_yuv", "PSNR-YUV 6:1:1 [dB]", F.psnr_yuv,
    "(6 PSNR-Y + PSNR-Cb + PSNR-Cr) / 8 (dB), BT.709 full-range 4:4:4 from the 8-bit RGB (JVET / "
    "JPEG AI weighting); null when not measured (sweep --metrics).",
    short="PSNR-YUV"))  # fmt: skip

MS_SSIM_Y = register_metric(Metric(
    "ms-ssim-y", "ms_ssim_y", "MS-SSIM-Y [dB]", F.ms_ssim_y,
    "MS-SSIM of BT.709 full-range luma (float Y' as for PSNR-Y; pytorch_msssim, 5 scales, data_range "
    "255); NaN when the shorter side is <= 160 px; null when not measured (sweep --metrics).",
    axis_column="ms_ssim_db_y", to_axis=F.db_of_similarity, short="MS-SSIM-Y",
    derived=(Derived("ms_ssim_db_y", F.ms_ssim_db, "-10 log10(1 - ms_ssim_y); +inf at 1."),),
    undefined_notice=f"MS-SSIM-Y undefined: shorter side < {F.MS_SSIM_MIN_SIDE} px"))  # fmt: skip

# Full-reference perceptual metrics from piq (well-kept, no downloaded weights), on request
# (``sweep --metrics fsim,vif,gmsd,iw-ssim`` or ``all``). piq works on luma for VIF, GMSD and IW-SSIM
# (Y of YIQ, BT.601 weights) and on Y, I, Q for FSIMc; inputs are the 8-bit images / 255.
_PIQ = "piq 0.8 on the 8-bit images / 255"
FSIM = register_metric(Metric(
    "fsim", "fsimc_yiq", "FSIMc (YIQ)", F.piq_metric("fsim", chromatic=True),
    f"FSIMc, feature similarity with chroma ({_PIQ}); 1 = identical; null when not measured.",
    unit="index", short="FSIMc", requires="piq"))  # fmt: skip
VIF = register_metric(Metric(
    "vif", "vif_p_y", "VIF-p (Y)", F.piq_metric("vif_p"),
    f"VIF, pixel-domain visual information fidelity of luma ({_PIQ}); 1 = identical; null when not measured.",
    unit="index", short="VIF", requires="piq"))  # fmt: skip
GMSD = register_metric(Metric(
    "gmsd", "gmsd_y", "GMSD (Y), negated [higher is better]", F.piq_metric("gmsd"),
    f"GMSD, gradient magnitude similarity deviation of luma ({_PIQ}); 0 = identical, lower is better; "
    "null when not measured.", higher_is_better=False, unit="index", short="GMSD", requires="piq"))  # fmt: skip
IW_SSIM = register_metric(Metric(
    "iw-ssim", "iw_ssim_y", "IW-SSIM (Y) [dB]", F.piq_metric("information_weighted_ssim"),
    f"IW-SSIM, information-weighted SSIM of luma ({_PIQ}); null when not measured or the image is too small.",
    to_axis=F.db_of_similarity, short="IW-SSIM", requires="piq",
    undefined_notice="IW-SSIM undefined: image too small for its 5 scales"))  # fmt: skip

# Learned metrics from local weights files only (metrics/learned.py): on request, never downloaded.
_LEARNED = "piq 0.8 on the 8-bit images / 255, VGG16 features, weights from local files (metrics/learned.py)"
LPIPS = register_metric(Metric(
    "lpips", "lpips_vgg_rgb", "LPIPS (VGG), negated [higher is better]", learned.learned_metric("lpips"),
    f"LPIPS distance ({_LEARNED}); 0 = identical, lower is better; null when not measured.",
    higher_is_better=False, unit="index", short="LPIPS", requires="piq",
    unavailable=lambda: learned.problem("lpips")))  # fmt: skip
DISTS = register_metric(Metric(
    "dists", "dists_rgb", "DISTS, negated [higher is better]", learned.learned_metric("dists"),
    f"DISTS as piq returns it, 1 - similarity ({_LEARNED}; shorter side resized to 256); 0 = identical, "
    "lower is better; null when not measured.",
    higher_is_better=False, unit="index", short="DISTS", requires="piq",
    unavailable=lambda: learned.problem("dists")))  # fmt: skip

PSNR_HVS_M = register_metric(Metric(
    "psnr-hvs-m", "psnr_hvs_m_y", "PSNR-HVS-M (Y) [dB]", F.psnr_hvs_m,
    "PSNR-HVS-M (dB) of BT.601 luma, the psnr_hvsm package on the 8-bit images / 255; +inf for identical "
    "images; null when not measured.", short="PSNR-HVS-M", requires="psnr_hvsm"))  # fmt: skip
