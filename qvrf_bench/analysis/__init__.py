"""One analysis path, from sources to BD tables, shared by ``qvrf-bench compare`` and the report.

* :mod:`.sources`: per-image rows (run folder, parquet) or curves (CSV, JSON, an anchor name) in;
* :mod:`.curves`: the test curves, by one grouping rule (each method; a QVRF model's discrete levels
  alone as well; a family's fixed-rate models as ONE curve);
* :mod:`.pairs`: which curve is compared with which anchor (the run's own pairs, or ``--anchor`` specs);
* :mod:`.comparisons`: every pair through :mod:`qvrf_bench.analysis.rd` (BD, subset sensitivity, bootstrap CI,
  per-image BD) into tables and notes.

``compare`` prints what :func:`run_pairs` returns and the report renders it, so one run gives one BD table.
"""

from qvrf_bench.analysis.comparisons import BDOutput, Settings, run_pairs
from qvrf_bench.analysis.curves import CurveSpec, family, test_curves
from qvrf_bench.analysis.pairs import AnchorSpec, Pair, default_pairs, spec_pairs
from qvrf_bench.analysis.sources import Source, read_source

__all__ = [
    "AnchorSpec",
    "BDOutput",
    "CurveSpec",
    "Pair",
    "Settings",
    "Source",
    "default_pairs",
    "family",
    "read_source",
    "run_pairs",
    "spec_pairs",
    "test_curves",
]
