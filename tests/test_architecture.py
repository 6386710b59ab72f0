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
