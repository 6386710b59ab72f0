"""Test curves from aggregated points: the one grouping rule of every BD table.

- every method of kind qvrf, vbr, classical (or unknown) is one curve;
- a QVRF method that has both discrete levels and continuous gains also gives ``"<method> [levels]"``,
  its levels alone (the paper's curve: continuous points would weigh the integral towards wherever
  the sweep was densest);
- the fixed-rate models of one architecture family are ONE curve, ``run:fixed:<arch>``: BD needs a set
  of points, not one checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qvrf_bench import kinds
from qvrf_bench.analysis import rd
from qvrf_bench.errors import QVRFError

# Run archs (qvrf_bench.models) and the CompressAI / QVRF names of the same network, to one family.
LEVELS_SUFFIX = " [levels]"


def family(arch: object) -> str:
    """The architecture family of a run arch or a published arch name ('' stays '')."""
    a = str(arch or "").strip().lower()
    return families().get(a, a)


def _arch_table():
    """models.archs, its table filled: read when first needed, since it imports the model classes
    (torch), which compare and the report on result files do not otherwise need."""
    from qvrf_bench.models import archs
    from qvrf_bench.models.registry import ARCHS  # noqa: F401  (importing it fills the table)

    return archs


def families() -> dict[str, str]:
    """Every name of an architecture family -> the family (the architecture table, models/archs.py)."""
    return _arch_table().families()


def family_title(fam: str) -> str:
    """The architecture table's title of a family, else the name itself."""
    spec = _arch_table().ARCH_SPECS.get(fam)
    return spec.title if spec else fam


def fixed_name(arch: str) -> str:
    """The curve name of a run's fixed-rate models of one arch."""
    return f"run:fixed:{arch}"


@dataclass
class CurveSpec:
    """One test curve: its aggregated points (``method`` = ``name``) and per-image rows (None for a curve file)."""

    name: str
    fam: str
    kind: str  # qvrf, vbr, fixed, classical, other
    points: pd.DataFrame
    rows: pd.DataFrame | None
    arch: str = ""
    members: list[str] = field(default_factory=list)  # the source's methods in this curve

    def curve(self, metric: str, rate: str) -> rd.Curve | None:
        """The rd.Curve for ``metric``; None when the points have no finite value of it."""
        try:
            c = rd.curve_from_points(self.points, None, metric, self.name, rate)
        except QVRFError:
            return None
        return c if np.isfinite(c.quality).any() else None


def method_attribute(points: pd.DataFrame, column: str) -> dict[str, str]:
    """{method: its first value of ``column``} ({} when the column is absent)."""
    if column not in points.columns:
        return {}
    return points.groupby("method")[column].first().astype(str).to_dict()


def test_curves(points: pd.DataFrame, rows: pd.DataFrame | None) -> tuple[list[CurveSpec], dict[str, CurveSpec]]:
    """(test curves, the fixed-rate curve of each family) of aggregated ``points`` (rd.aggregate) and
    their per-image ``rows`` (None for curve files). Sources without kind/arch columns give one
    curve per method, of kind ``other``."""
    kind_of, archs = method_attribute(points, "kind"), method_attribute(points, "arch")
    tests: list[CurveSpec] = []
    fixed_members: dict[str, list[str]] = {}
    for method in sorted(set(points["method"].astype(str))):
        kind, arch = kind_of.get(method, "other"), archs.get(method, "")
        fam = family(arch)
        if kind == kinds.FIXED:
            fixed_members.setdefault(fam, []).append(method)
            continue
        p = points.loc[points["method"].astype(str) == method]
        r = None if rows is None else rows.loc[rows["method"].astype(str) == method]
        tests.append(CurveSpec(method, fam, kind, p, r, arch, [method]))
        lev = p["level"].notna() if "level" in p.columns else pd.Series(False, index=p.index)
        if kinds.is_tested(kind) and lev.any() and not lev.all():
            name = method + LEVELS_SUFFIX
            r_lev = None if r is None else r.loc[r["level"].notna()].assign(method=name)
            tests.append(CurveSpec(name, fam, kind, p.loc[lev].assign(method=name), r_lev, arch, [method]))
    fixed: dict[str, CurveSpec] = {}
    for fam, members in sorted(fixed_members.items()):
        arch = archs.get(members[0], "")
        name = fixed_name(arch)
        merged_rows = None if rows is None else rd.merge_methods(rows, members, name)
        spec = CurveSpec(name, fam, kinds.FIXED, rd.merge_methods(points, members, name), merged_rows, arch, members)
        fixed[fam] = spec
        tests.append(spec)
    return tests, fixed
