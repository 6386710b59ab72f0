"""The rows' kinds, and the rule that the code measuring, training and reporting methods never
names one method's kind."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

from qvrf_bench import kinds

PKG = Path(kinds.__file__).parent
# Every file that must talk to the method contract only (methods/base.py): the engines, the sweep,
# the one training loop, rate control, the analysis and the report.
CONTRACT_ONLY = [
    "methods/engine.py", "train/method.py", "train/loop.py", "sweep/run.py", "sweep/ratecontrol.py",
    *(str(p.relative_to(PKG)) for p in sorted((PKG / "analysis").glob("*.py"))),
    *(str(p.relative_to(PKG)) for p in sorted((PKG / "report").glob("*.py"))),
]  # fmt: skip


def test_kinds():
    assert kinds.KINDS == ("fixed", "qvrf", "vbr", "classical", "variable")  # the store's schema order
    assert [k for k in kinds.KINDS if kinds.is_variable(k)] == ["qvrf", "vbr", "variable"]
    assert [k for k in kinds.KINDS if kinds.is_tested(k)] == ["qvrf", "variable"]
    assert not kinds.is_learned("classical") and kinds.is_learned("fixed")
    assert {kinds.plot_role(k) for k in ("qvrf", "variable")} == {"variable"}
    assert kinds.plot_role("vbr") == "vbr" and kinds.plot_role("something else") == "other"


@pytest.mark.parametrize("name", CONTRACT_ONLY)
def test_no_method_kind_is_spelled_out(name):
    """No "qvrf" string literal in these files: they ask kinds.py or the method, so a user's method is
    handled as the suite's own."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO((PKG / name).read_text()).readline):
        if tok.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):
            continue  # an f-string
        if isinstance(value, str) and value.lower() == kinds.QVRF:
            found.append(f"line {tok.start[0]}: {tok.string}")
    assert not found, f"{name}: " + "; ".join(found)
