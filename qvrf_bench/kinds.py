"""What a result row's ``kind`` says: how the codec that made it chooses its rate.

=============  ==============================================================================
kind           rows of
=============  ==============================================================================
``fixed``      a fixed-rate model (one rate point per model; a family's models make one curve)
``qvrf``       the suite's QVRF models (``sweep -c``): levels and continuous gains
``vbr``        CompressAI's variable-rate models (``--vbr``): levels and quantization steps
``variable``   any other method of the method contract (``--method``): levels and continuous points
``classical``  JPEG and the other classical codecs (``--peers``): a quality knob
=============  ==============================================================================

The analysis and the report ask this module, never a kind's name: a variable-rate kind gets a
levels-only curve besides its whole one, a levels panel, matched-rate tables and crops, whatever
method made it. ``REFERENCE`` is the one kind with a role of its own: the suite's variable-rate
curve that a method of the contract is compared with (besides the fixed-rate anchors).
"""

from __future__ import annotations

FIXED, QVRF, VBR, VARIABLE, CLASSICAL = "fixed", "qvrf", "vbr", "variable", "classical"
KINDS = (FIXED, QVRF, VBR, CLASSICAL, VARIABLE)  # the store's order
VARIABLE_RATE = (QVRF, VBR, VARIABLE)
LEARNED = (FIXED, *VARIABLE_RATE)
REFERENCE = QVRF
# The variable-rate methods under test: the suite's QVRF models and a user's methods. CompressAI's
# VBR models are peers: drawn and compared as anchors are (no levels-only curve, no matched-rate
# table of their own).
TESTED = (QVRF, VARIABLE)


def is_variable(kind) -> bool:
    """Whether rows of this kind come from one model at many rates (levels and continuous points)."""
    return str(kind) in VARIABLE_RATE


def is_learned(kind) -> bool:
    return str(kind) in LEARNED


def is_tested(kind) -> bool:
    """Whether rows of this kind are a variable-rate method under test (:data:`TESTED`)."""
    return str(kind) in TESTED


def plot_role(kind) -> str:
    """The style family a kind is drawn in (report/plots.py): every variable-rate method of the contract
    is drawn as QVRF is; CompressAI's VBR peers apart, as published peers."""
    kind = str(kind)
    if kind in TESTED:
        return "variable"
    return kind if kind in KINDS else "other"
