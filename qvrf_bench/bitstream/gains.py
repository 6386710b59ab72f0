"""The supported range of the QVRF gain a (1 / bin size): what CompressAI's entropy coder can code.

Supported gains: GAIN_MIN = 0.11/256 ~ 0.00043 <= a <= GAIN_MAX = 64, enforced for ``encode --gain``,
``--factors``, checkpoint gains (finite, > 0, strictly increasing with the level) and bitstream
headers. Where the bounds come from (CompressAI 1.2.8's GaussianConditional and rANS coder):

- The coded scale is sigma*a, looked up in the scale table, whose entries run from the lower bound
  0.11 (``scale_bound``; smaller scales are raised to it) to a top entry. Each entry's Gaussian is
  coded over 2*ceil(6.109*s) + 1 bins (6.109 = the tail-mass 1e-9 quantile) plus an escape bin, in
  16-bit precision, every bin getting at least 1 of the 65,536 frequency units.
- Low end: CompressAI's table spans 0.11 ... 256, so once a < 0.11/256 every scale the table covers
  maps to its bottom entry and every symbol rounds to 0: smaller gains code the same bitstream
  (the rate floor). Below that, a gain distinguishes nothing.
- High end: a model's table top is 256 * max(1, a_max/12) (models/qvrf.py, scale_table). Its Gaussian
  needs 2*ceil(6.109*256*a/12) + 2 frequency units; at a = 64 that is 16,688 (a quarter of the
  16-bit range goes to the one-unit floor of the tails), and at a ~ 251 it is all 65,536: the
  coder can no longer represent the distribution at all. 64 leaves that cliff far away, keeps the
  CDF table (which CompressAI converts to Python lists on every call) at ~1.3M entries, and is
  2.26x the largest initial gain of any level set here (28.3, the 11-level set).
- Symbols: CompressAI codes a symbol outside its table by escape ("bypass") coding, 4 bits per
  chunk, each chunk one more entry in the coder's buffer: costly (up to 16 + 4*(chunks + 2) bits)
  but safe, up to a point: an escape value >= 2^28 never terminates (the chunk-count loop shifts
  a uint32 by 32: the reported hang of ``--gain 1e10``, whose symbols reach ~1e9), and below -2^30
  the int32 arithmetic overflows. With a <= 64 a trained model's symbols stay orders of magnitude
  inside (|y - mu| would have to reach 2^27/64 ~ 2e6); models/qvrf.py's check_coder_input still
  checks every symbol before GaussianConditional's coder sees it and refuses what would hang.
Inside the range coding is exact: the decoder repeats the encoder's float32 operations on the same
gain (the header stores the float32 value).

No torch here: the CLI checks a bitstream header or a ``--gain`` before importing the models.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from qvrf_bench.errors import GainError

# CompressAI's Gaussian scale table spans [0.11, 256] (its lower bound is GaussianConditional's scale_bound).
SCALES_MIN, SCALES_MAX = 0.11, 256.0

# The supported range (module docstring): the rate floor of the scale table, and the top
# where the extended table still leaves the 16-bit coder room for the distribution.
# Both as float32 values, since headers store the gain as float32 (0.11/256 itself is not one).
GAIN_MIN = struct.unpack(">f", struct.pack(">f", SCALES_MIN / SCALES_MAX))[0]  # 0.00042968749767...
GAIN_MAX = 64.0
# The most discrete levels (gains) a model may have: the official sets have 8 and 11, a user's lambda
# set may have more. A bound the format can check without the checkpoint: a header's level byte
# (255 = a continuous gain) above it is refused by `info` and `decode` before torch loads.
MAX_LEVELS = 64
# CompressAI's rANS: an escape value needs fewer than 2^28 (7 chunks of 4 bits) to terminate.
ESCAPE_LIMIT = 1 << 27


def gain_range_text() -> str:
    return f"[{GAIN_MIN:.7g}, {GAIN_MAX:g}]"


def gain_problem(value) -> str | None:
    """Why ``value`` is not a supported gain (None when it is)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return f"is {value!r}, not a number"
    if not math.isfinite(v):
        return f"is {v}, not a finite number"
    if v <= 0:
        return f"is {v:g}, not > 0"
    if not GAIN_MIN <= v <= GAIN_MAX:
        return f"is {v:g}, outside the supported range {gain_range_text()}"
    return None


def check_gain(value, what: str = "gain") -> float:
    """``value`` as a float, or GainError naming ``what`` and the supported range."""
    problem = gain_problem(value)
    if problem:
        raise GainError(f"{what} {problem}" + ("" if "range" in problem else f" (supported: {gain_range_text()})"))
    return float(value)


def gains_problem(gains: Sequence[float]) -> str | None:
    """Why a model's gain vector cannot code (None when it can): every gain finite and in range,
    strictly increasing with the level (the levels are ordered by lambda)."""
    values = [float(g) for g in gains]
    for s, g in enumerate(values):
        problem = gain_problem(g)
        if problem:
            return f"gain of level {s} {problem}"
    for s in range(1, len(values)):
        if not values[s] > values[s - 1]:
            return f"gains do not increase with the level (level {s - 1}: {values[s - 1]:g}, level {s}: {values[s]:g})"
    return None
