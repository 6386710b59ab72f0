"""Which test curve is compared with which anchor.

:func:`default_pairs` is the run's own set of comparisons (the report's BD tables, and ``compare``
without ``--anchor``):
- every QVRF, VBR and contract-method ('variable') curve against the fixed-rate curve of its family;
- every contract method's curve against each QVRF curve of its family (a new method against QVRF);
- every learned curve (QVRF, VBR, variable, fixed) against each classical codec measured in the same run;
- every curve of a family against each published anchor of that family (classical anchors: every
  curve), only when the anchor was measured on the same test set unless ``cross_dataset``.

:func:`spec_pairs` resolves one ``compare --anchor`` spec (see ``qvrf-bench compare --help``).
A curve is never compared with an anchor that contains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qvrf_bench import kinds
from qvrf_bench.analysis import rd
from qvrf_bench.analysis.anchors import load_anchor
from qvrf_bench.analysis.curves import LEVELS_SUFFIX, CurveSpec, family, method_attribute, test_curves
from qvrf_bench.analysis.sources import curve_file
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import all_metrics, metric_names

RUN_KINDS = kinds.KINDS


@dataclass
class AnchorSpec:
    name: str
    fam: str | None  # None: compared with every family (classical codecs)
    curves: dict  # metric -> rd.Curve or None
    rows: pd.DataFrame | None  # per-image rows (run anchors only)
    published: object | None = None  # the Anchor, for published / file curves
    members: tuple[str, ...] = ()  # the source's methods in this anchor


@dataclass
class Pair:
    test: CurveSpec
    anchor: AnchorSpec


def anchor_of_curve(spec: CurveSpec, rate: str) -> AnchorSpec:
    """A run curve used as an anchor (its per-image rows come along for paired statistics)."""
    curves = {mt.name: spec.curve(mt.name, rate) for mt in all_metrics()}
    fam = None if spec.kind == kinds.CLASSICAL else spec.fam
    return AnchorSpec(spec.name, fam, curves, spec.rows, None, tuple(spec.members))


def anchor_of_published(anchor, name: str | None = None) -> AnchorSpec:
    """A published or file curve used as an anchor."""
    curves = {}
    for mt in metric_names():
        try:
            c = anchor.curve(mt)
            curves[mt] = c if name is None else rd.Curve(name, c.rate, c.quality, c.labels, c.metric)
        except QVRFError:
            curves[mt] = None
    fam = None if anchor.kind == "classical" else family(anchor.arch)
    return AnchorSpec(name or anchor.name, fam, curves, None, anchor)


def same_dataset(measured: str | None, published: str | None) -> bool:
    """Whether a measured set and a published curve's set are the same test set, by name."""

    def norm(v):
        return "".join(ch for ch in str(v or "").lower() if ch.isalnum())

    return bool(norm(measured)) and norm(measured) == norm(published)


def _pairs(tests: Sequence[CurveSpec], anchor: AnchorSpec) -> list[Pair]:
    return [Pair(t, anchor) for t in tests if not set(t.members) & set(anchor.members)]


def default_pairs(
    tests: Sequence[CurveSpec],
    fixed: dict[str, CurveSpec],
    published: Sequence = (),
    *,
    rate: str = "bpp_real",
    dataset: str | None = None,
    cross_dataset: bool = False,
) -> tuple[list[Pair], list[str]]:
    """The run's own comparisons (module docstring); returns (pairs, notes)."""
    pairs: list[Pair] = []
    notes: list[str] = []
    for t in tests:
        if kinds.is_variable(t.kind) and t.fam in fixed:
            pairs += _pairs([t], anchor_of_curve(fixed[t.fam], rate))
    whole = [t for t in tests if not t.name.endswith(LEVELS_SUFFIX)]
    for q in (t for t in whole if t.kind == kinds.REFERENCE):
        pairs += _pairs([t for t in whole if t.kind == kinds.VARIABLE and t.fam == q.fam], anchor_of_curve(q, rate))
    learned = [t for t in tests if kinds.is_learned(t.kind)]
    for c in (t for t in tests if t.kind == kinds.CLASSICAL):
        # Same images, same metric code: the first check that a trained model is a codec worth the name.
        pairs += _pairs(learned, anchor_of_curve(c, rate))
    for a in published:
        spec = anchor_of_published(a)
        matched = [t for t in tests if spec.fam is None or t.fam == spec.fam]
        if not matched:
            continue
        if not cross_dataset and not same_dataset(dataset, a.dataset):
            notes.append(f"{a.name}: published on {a.dataset}, measured here on {dataset or 'an unnamed set'}; "
                         "no BD-rate between different test sets (ask with --cross-dataset)")  # fmt: skip
            continue
        pairs += _pairs(matched, spec)
    return pairs, notes


def _run_anchor(spec: str, tests: Sequence[CurveSpec], source, rate: str) -> tuple[list[Pair], list[str]]:
    """``run:KIND``, ``run:KIND:ARCH`` or ``run:M1+M2...``: anchors made of the source's own rows."""

    pts = source.points
    sel = spec[len("run:") :]
    head, _, arch = sel.partition(":")
    notes: list[str] = []
    if head in RUN_KINDS:
        if "kind" not in pts.columns:
            raise QVRFError(f"--anchor {spec}: TEST has no 'kind' column (only run folders/parquet have one)")
        kinds, archs = method_attribute(pts, "kind"), method_attribute(pts, "arch")
        of_kind = sorted(m for m, k in kinds.items() if k == head)
        if not of_kind:
            raise QVRFError(f"--anchor {spec}: TEST has no rows of kind {head!r}")
        if arch:
            members = [m for m in of_kind if archs.get(m) == arch or family(archs.get(m)) == family(arch)]
            if not members:
                have = sorted({archs.get(m, "?") for m in of_kind})
                raise QVRFError(f"--anchor {spec}: no {head} rows of arch {arch!r} (have: {', '.join(have) or 'none'})")
            return _pairs(tests, _merged(spec, members, source, rate, head)), notes
        # One anchor curve per family (per codec for classical ones, which span every family),
        # built by the same grouping rule as the test curves.
        sub = pts.loc[pts["method"].isin(of_kind)]
        sub_rows = None if source.rows is None else source.rows.loc[source.rows["method"].isin(of_kind)]
        groups, fixed = test_curves(sub, sub_rows)
        anchors = list(fixed.values()) if head == "fixed" else [g for g in groups if not g.name.endswith("]")]
        pairs: list[Pair] = []
        for g in anchors:
            a = anchor_of_curve(g, rate)
            pairs += _pairs([t for t in tests if t.kind != head and (a.fam is None or t.fam == a.fam)], a)
        covered = {p.test.name for p in pairs}
        lonely = [t.name for t in tests if t.name not in covered and t.kind != head]
        if lonely:
            notes.append(f"--anchor {spec}: no {head} rows of the same arch for {', '.join(lonely)}")
        return pairs, notes
    methods = [m for m in sel.split("+") if m]
    if not methods:
        raise QVRFError(f"--anchor {spec}: name methods after 'run:' or a kind ({', '.join(RUN_KINDS)})")
    return _pairs(tests, _merged(spec, methods, source, rate, "other")), notes


def _merged(name: str, methods: list[str], source, rate: str, kind: str) -> AnchorSpec:
    points = rd.merge_methods(source.points, methods, name)
    rows = None if source.rows is None else rd.merge_methods(source.rows, methods, name)
    return anchor_of_curve(CurveSpec(name, "", kind, points, rows, "", list(methods)), rate)


def spec_pairs(
    spec: str, tests: Sequence[CurveSpec], source, *, rate: str = "bpp_real", dirs=None
) -> tuple[list[Pair], list[str]]:
    """The pairs of one ``--anchor`` spec: ``run:...`` (the source's own rows), a curve file, or an
    anchor name; a published or file anchor is compared with every test curve. Returns (pairs, notes)."""
    if spec.startswith("run:"):
        return _run_anchor(spec, tests, source, rate)

    notes: list[str] = []
    path = Path(spec)
    if path.suffix.lower() in (".json", ".csv", ".txt") and path.is_file():
        _, anchor = curve_file(path, None)
        a = anchor_of_published(anchor, name=spec)
    else:
        anchor = load_anchor(spec, dirs)
        a = anchor_of_published(anchor)
        if source.rows is not None and anchor.reconstruction == "float":
            notes.append(f"{anchor.name}: metrics on float reconstructions, the run's on 8-bit-rounded ones "
                         "(CompressAI measured <= 0.07 dB difference; see the -8bit anchors)")  # fmt: skip
        if source.rows is not None and rate == "bpp_real" and anchor.kind != "classical":
            notes.append(f"{anchor.name}: its bpp counts the entropy-coded strings only; the run's bpp_real "
                         "includes the container header (--rate payload compares like with like)")  # fmt: skip
    return [Pair(t, a) for t in tests], notes
