"""The package's import contracts (pyproject.toml [tool.importlinter]): no cycles, layers kept.

grimp reads every import statement of every module, those inside functions included, so a cycle
hidden behind a function-level import breaks the contract as a module-level one does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")
def test_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([str(LINT), "--no-cache"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def test_the_cycle_contract_sees_imports_inside_functions(tmp_path):
    """A two-module package whose only cycle is a function-level import: the contract breaks."""
    grimp = pytest.importorskip("grimp")
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n")
    (pkg / "b.py").write_text("def f():\n    from cyc import a\n    return a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        g = grimp.build_graph("cyc", cache_dir=None)
        assert g.direct_import_exists(importer="cyc.b", imported="cyc.a")
        assert g.direct_import_exists(importer="cyc.a", imported="cyc.b")
    finally:
        sys.path.remove(str(tmp_path))


def test_at_most_ten_modules_at_the_top_level():
    top = sorted(p.name for p in (ROOT / "qvrf_bench").glob("*.py"))
    assert len(top) <= 10, top


@pytest.mark.parametrize("old, new", [("rd", "analysis.rd"), ("store", "results.store"), ("codec", "methods.codec"),
                                      ("container", "bitstream.container"), ("ratecontrol", "sweep.ratecontrol")])  # fmt: skip
def test_0_2_import_paths_are_the_new_modules_with_a_warning(old, new):
    """One release of grace for scripts: ``import qvrf_bench.rd`` is qvrf_bench.analysis.rd itself."""
    code = (f"import importlib, warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
            f"new = importlib.import_module('qvrf_bench.{new}')\n"
            f"try:\n    importlib.import_module('qvrf_bench.{old}')\nexcept DeprecationWarning as w:\n    print(w)\n"
            f"warnings.simplefilter('ignore')\nimport sys\nprint(importlib.import_module('qvrf_bench.{old}') is new)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"qvrf_bench.{old} moved to qvrf_bench.{new}" in out.stdout and out.stdout.strip().endswith("True")


def test_names_from_the_old_sweep_module_still_import():
    code = ("import warnings\nwarnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from qvrf_bench.sweep import run_sweep\nexcept DeprecationWarning as w:\n    print(w)\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "qvrf_bench.sweep.run_sweep moved to qvrf_bench.sweep.run.run_sweep" in out.stdout, out.stderr[-2000:]
