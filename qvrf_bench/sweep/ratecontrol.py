"""Rate control: the gain (or a classical codec's quality) that meets a target rate or quality.

A variable-rate model's point is that one model reaches any rate; this module finds the gain for
"this image at 0.3 bpp" (or N bytes, or 32 dB) with real bytes, so the bitstream's header simply
records the gain used and decoding is unchanged.

What "meets" means (one rule for every method, so matched-rate comparisons are conservative for the
method measured):

- a rate target (bpp, bytes) is met when the file is not larger than the target and at most
  ``tolerance`` (relative, default 1 %) smaller: ``target * (1 - tol) <= achieved <= target``;
- a quality target (PSNR-RGB in dB) is met when the decoded image is not worse and at most
  ``tolerance`` dB (default 0.05) better: ``target <= achieved <= target + tol``.

Search (:func:`search_gain`, pure: it only calls ``measure``): bpp and PSNR grow with the gain in
practice (a larger gain is a finer quantizer), not by construction, so the search keeps a bracket
[low side, high side] and never assumes more than that the bracket contains a crossing. It starts
from the model's trained gains (its lowest and highest level) and, only with ``extrapolate``,
widens the bracket by factors of 4 towards the supported gain range of gains.py. Inside the
bracket it interpolates in (log gain, log rate) or (log gain, PSNR), Illinois-style (the side that
stays twice has its value halved), and bisects in log gain whenever interpolation would land in
the outer tenth of the bracket: bracketing keeps it safe, interpolation makes it take ~4-6 codings
where plain bisection takes ~10-12 (bench/README.md measures both). If the window cannot be hit
(a float32 gain step changes the file by more than the window, as on tiny images), it returns the
best point on the safe side (the largest file not above a rate target, the lowest quality not below
a quality target) and says that the tolerance was missed.

Each try costs only what depends on the gain: the analysis (g_a, h_a, the z string, h_s) is
computed once per image (models/latent.py), a try codes y at one gain and packs the container;
a quality target also runs g_s on the encoder's y_hat. The result's bytes are that container,
byte-identical to ``codec.encode_tensor`` at the same gain (tests/sweep/test_ratecontrol.py checks it).
Every learned codec is searched through its method (:func:`method_to_target`): the suite's
checkpoints as QVRF methods writing the version-2 container, any other method in its own.

Classical codecs (:func:`search_quality`): the integer quality knob, the same rule, bisection on
the integer; a tolerance is reported, not guaranteed (one quality step can move the file by more).
CompressAI's VBR models and JPEG 2000 (:func:`step_to_target`): a continuous knob (quantization step,
compression ratio) searched like a QVRF gain (gain = 1 / knob) within the peer's sweep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qvrf_bench import images, metrics
from qvrf_bench.bitstream.container import PAD_MULTIPLE
from qvrf_bench.bitstream.gains import GAIN_MAX, GAIN_MIN
from qvrf_bench.errors import QVRFError

RATE_KINDS = ("bpp", "bytes")
QUALITY_KINDS = ("psnr",)
DEFAULT_TOLERANCE = {"bpp": 0.01, "bytes": 0.01, "psnr": 0.05}
WIDEN = 4.0  # bracket growth per step when extrapolating
MAX_TRIES = 40


class TargetError(QVRFError):
    """A target outside what the method reaches (the message names the range)."""


@dataclass(frozen=True)
class Target:
    """``kind`` is bpp, bytes or psnr; ``tolerance`` relative for rates, in dB for psnr."""

    kind: str
    value: float
    tolerance: float | None = None

    def __post_init__(self):
        if self.kind not in RATE_KINDS + QUALITY_KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise QVRFError(f"target {self.kind} must be a finite number > 0 (got {self.value!r})")
        tol = self.tol
        if not (math.isfinite(tol) and tol >= 0) or (self.is_rate and tol >= 1):
            raise QVRFError(f"tolerance must be >= 0{' and < 1' if self.is_rate else ''} (got {tol!r})")

    @property
    def tol(self) -> float:
        return DEFAULT_TOLERANCE[self.kind] if self.tolerance is None else float(self.tolerance)

    @property
    def is_rate(self) -> bool:
        return self.kind in RATE_KINDS

    @property
    def window(self) -> tuple[float, float]:
        if self.is_rate:
            return self.value * (1 - self.tol), self.value
        return self.value, self.value + self.tol

    def side(self, achieved: float) -> int:
        """-1 below the window, 0 inside, +1 above."""
        lo, hi = self.window
        return -1 if achieved < lo else (1 if achieved > hi else 0)

    def safe(self, achieved: float) -> bool:
        """On the side a fallback may take: not above a rate target, not below a quality one."""
        return achieved <= self.value if self.is_rate else achieved >= self.value

    def text(self, v: float | None = None) -> str:
        v = self.value if v is None else v
        return {"bpp": f"{v:.4f} bpp", "bytes": f"{v:.0f} bytes", "psnr": f"{v:.2f} dB"}[self.kind]

    def transform(self, v: float) -> float:
        """The scale on which the measure is ~linear in log gain (interpolation only)."""
        return math.log(v) if self.is_rate else v


@dataclass
class Try:
    knob: float  # the gain (models) or quality (classical codecs)
    achieved: float
    payload: object = field(default=None, repr=False)  # whatever measure returned beside the value


@dataclass
class SearchResult:
    target: Target
    best: Try
    tries: list[Try]
    met: bool  # inside the window (else best is the safe-side point closest to it)
    seconds: float = 0.0
    monotone: bool = True  # no pair of tries where a larger knob gave a smaller value

    @property
    def knob(self) -> float:
        return self.best.knob

    @property
    def achieved(self) -> float:
        return self.best.achieved

    def note(self) -> str:
        """One line for the user when the window was missed (empty when met)."""
        if self.met:
            return ""
        lo, hi = self.target.window
        return (f"the window {self.target.text(lo)} .. {self.target.text(hi)} has no point at this knob's "
                f"resolution; kept {self.target.text(self.achieved)}")  # fmt: skip


def _monotone(tries: list[Try]) -> bool:
    pts = sorted((t.knob, t.achieved) for t in tries)
    return all(b[1] >= a[1] for a, b in zip(pts, pts[1:], strict=False))


def _float32(v: float) -> float:
    return float(np.float32(v))


def search_gain(
    measure: Callable[[float], tuple[float, object]],
    target: Target,
    trained: tuple[float, float],
    extrapolate: bool = False,
    what: str = "the model",
    max_tries: int = MAX_TRIES,
    interpolate: bool = True,
) -> SearchResult:
    """The gain whose ``measure(gain) -> (achieved, payload)`` lands in ``target``'s window.

    ``trained`` is the model's gain range (lowest and highest level); only with ``extrapolate`` may
    the search leave it, by factors of :data:`WIDEN`, within [GAIN_MIN, GAIN_MAX]. Gains are float32
    values (what a header stores). Raises :class:`TargetError` naming the reachable range when the
    target lies outside it. ``interpolate=False`` is plain bisection on log gain (for the bench).
    """
    t0 = time.perf_counter()
    tries: list[Try] = []
    cache: dict[float, Try] = {}

    def at(gain: float) -> Try:
        g = _float32(gain)
        if g not in cache:
            if len(tries) >= max_tries:
                raise _Exhausted
            value, payload = measure(g)
            cache[g] = Try(g, float(value), payload)
            tries.append(cache[g])
        return cache[g]

    def result(best: Try, met: bool) -> SearchResult:
        return SearchResult(target, best, tries, met, time.perf_counter() - t0, _monotone(tries))

    g_lo, g_hi = sorted(_float32(g) for g in trained)
    limit_lo, limit_hi = (GAIN_MIN, GAIN_MAX) if extrapolate else (g_lo, g_hi)
    try:
        lo, hi = at(g_lo), at(g_hi)
        for t in (lo, hi):
            if target.side(t.achieved) == 0:
                return result(t, True)
        # Widen (extrapolate only) until the bracket holds the window.
        while target.side(lo.achieved) > 0 and lo.knob > limit_lo:
            lo = at(max(limit_lo, lo.knob / WIDEN))
            if target.side(lo.achieved) == 0:
                return result(lo, True)
        while target.side(hi.achieved) < 0 and hi.knob < limit_hi:
            hi = at(min(limit_hi, hi.knob * WIDEN))
            if target.side(hi.achieved) == 0:
                return result(hi, True)
        if target.side(lo.achieved) > 0 or target.side(hi.achieved) < 0:
            if lo.knob == hi.knob:  # a fixed-rate model, not extrapolating
                reach = f"{what} reaches at its one gain {lo.knob:.4g}: {target.text(lo.achieved)}"
            else:
                reach = (f"{what} reaches: {target.text(lo.achieved)} .. {target.text(hi.achieved)} (gains "
                         f"{lo.knob:.4g} .. {hi.knob:.4g})")  # fmt: skip
            hint = ("" if extrapolate or (lo.knob <= GAIN_MIN and hi.knob >= GAIN_MAX) else
                    "; --extrapolate also searches gains beyond its trained levels (coded exactly, but at a quality "
                    "it was not trained for)")  # fmt: skip
            where = "below" if target.side(lo.achieved) > 0 else "above"
            raise TargetError(f"target {target.text()} is {where} what {reach}{hint}")
        # lo below the window, hi above: Brent's method (scipy) on u = log gain, with f = 0 inside the
        # window, so it stops at the first try that lands there.
        aim = 0.5 * sum(target.transform(v) for v in target.window)  # the window's middle

        def f(u: float) -> float:
            t = at(math.exp(u))
            return 0.0 if target.side(t.achieved) == 0 else target.transform(t.achieved) - aim

        if interpolate:
            from scipy.optimize import brentq

            u = brentq(f, math.log(lo.knob), math.log(hi.knob), xtol=1e-7, maxiter=max_tries, disp=False)
        else:  # plain bisection on log gain (the bench's baseline)
            u_lo, u_hi = math.log(lo.knob), math.log(hi.knob)
            while u_hi - u_lo > 1e-7 and f(u := 0.5 * (u_lo + u_hi)) != 0:
                u_lo, u_hi = (u, u_hi) if f(u) < 0 else (u_lo, u)
        t = at(math.exp(u))
        if target.side(t.achieved) == 0:
            return result(t, True)
        raise _Exhausted  # resolution reached without a point in the window: the safe-side best
    except _Exhausted:
        safe = [t for t in tries if target.safe(t.achieved)]
        if not safe:  # cannot happen after bracketing (its low end is safe); kept for max_tries < 2
            raise TargetError(f"no gain of {what} met {target.text()} in {max_tries} tries") from None
        best = max(safe, key=lambda t: t.achieved) if target.is_rate else min(safe, key=lambda t: t.achieved)
        return result(best, False)


class _Exhausted(Exception):
    pass


def search_quality(
    measure: Callable[[int], tuple[float, object]],
    target: Target,
    qualities: tuple[int, int],
    what: str = "the codec",
) -> SearchResult:
    """A classical codec's integer quality for ``target``: the largest quality whose file is not
    above a rate target (the smallest whose PSNR is not below a quality target), by bisection."""
    t0 = time.perf_counter()
    tries: list[Try] = []

    def at(q: int) -> Try:
        for t in tries:
            if t.knob == q:
                return t
        value, payload = measure(int(q))
        tries.append(Try(int(q), float(value), payload))
        return tries[-1]

    q_lo, q_hi = qualities
    lo, hi = at(q_lo), at(q_hi)
    ok = target.safe  # rate: achieved <= target; quality: achieved >= target
    # The safe end of the range is the low quality for a rate target, the high one for a PSNR target.
    safe, unsafe = (lo, hi) if target.is_rate else (hi, lo)
    if not ok(safe.achieved):
        raise TargetError(f"target {target.text()} is {'below' if target.is_rate else 'above'} what {what} reaches: "
                          f"{target.text(lo.achieved)} .. {target.text(hi.achieved)} at qualities {q_lo} .. {q_hi}")  # fmt: skip
    if ok(unsafe.achieved):
        best = unsafe
    else:
        while abs(unsafe.knob - safe.knob) > 1:  # invariant: safe is safe, unsafe is not
            mid = at((safe.knob + unsafe.knob) // 2)
            safe, unsafe = (mid, unsafe) if ok(mid.achieved) else (safe, mid)
        best = safe
    return SearchResult(target, best, tries, target.side(best.achieved) == 0, time.perf_counter() - t0,
                        _monotone(tries))  # fmt: skip


# --- measuring with real bytes (models and classical codecs) ------------------------------------------


class MethodProbe:
    """One image coded by a method (methods/base.py) at any continuous knob with real bytes, the
    analysis shared between tries: ``probe(value) -> (achieved, container bytes)``, achieved in the
    target's unit; ``point(value)`` is the method's point at that knob."""

    def __init__(self, method, rgb8: np.ndarray, kind: str, fingerprint: str | None = None):
        import torch

        self.method, self.rgb8, self.kind = method, rgb8, kind
        self.fingerprint = fingerprint or method.fingerprint()
        h, w = rgb8.shape[:2]
        self.pixels = h * w
        self.padding = images.padding_for(h, w, PAD_MULTIPLE, method.padding)
        x = images.pad(images.rgb8_to_tensor(rgb8).to(method.device), self.padding)
        with torch.no_grad():
            self.analysis = method.analyse(x)

    def point(self, value: float):
        return self.method.continuous_point(value)

    def __call__(self, value: float) -> tuple[float, bytes]:
        import torch

        point = self.point(value)
        with torch.no_grad():
            (own,), (rebuilt,) = self.method.code(self.analysis, [point])
        h, w = self.rgb8.shape[:2]
        data = self.method.pack(point, [*own, *self.analysis.shared], h, w, self.padding, self.fingerprint)

        def decoded() -> np.ndarray:  # what the decoder will rebuild, without decoding where the method says
            with torch.no_grad():
                if rebuilt is not None and self.method.decode_check == "latent":
                    x_hat = self.method.synthesise(rebuilt).clamp_(0, 1)
                    return images.tensor_to_rgb8(images.crop(x_hat, self.padding))
                from qvrf_bench.methods.engine import decode_bytes

                return images.tensor_to_rgb8(decode_bytes(self.method, data, fingerprint=self.fingerprint)[0])

        return achieved(self.kind, self.rgb8, data, decoded), data


def method_to_target(method, rgb8: np.ndarray, target: Target, what: str = "the method",
                     fingerprint: str | None = None, extrapolate: bool = False,
                     interpolate: bool = True) -> tuple[SearchResult, bytes, object]:  # fmt: skip
    """(search, container bytes, the method's point) at the continuous knob that meets ``target``,
    within the method's ``continuous_range()``: :func:`search_gain` on a positive "gain" g mapped to
    the knob as the method declares (log knob: g = knob, or 1 / knob when the rate falls with it;
    linear knob: g = exp(+-knob)), so the same bracketing and interpolation serve every method. A
    QVRF checkpoint (methods/qvrf.py) searches its gain between its trained levels; ``extrapolate``
    lets the bracket widen beyond them (gains.py's range)."""
    rng = method.continuous_range()
    if rng is None:
        raise TargetError(f"{what} has no continuous rate to search")
    sign = -1.0 if method.rate_falls_with_knob else 1.0
    if method.knob_scale == "linear":
        to_g, from_g = (lambda v: math.exp(sign * v)), (lambda g: sign * math.log(g))
    else:
        to_g, from_g = (lambda v: v**sign), (lambda g: g**sign)
    probe = MethodProbe(method, rgb8, target.kind, fingerprint)
    lo, hi = sorted((to_g(rng[0]), to_g(rng[1])))
    res = search_gain(lambda g: probe(from_g(g)), target, (lo, hi), extrapolate, what, interpolate=interpolate)
    return res, res.best.payload, probe.point(from_g(res.best.knob))


def achieved(kind: str, rgb8: np.ndarray, data: bytes, decoded) -> float:
    """What a file ``data`` of ``rgb8`` achieved, in the unit of a ``kind`` target; ``decoded()``
    gives the decoded image and is called only for a PSNR target."""

    if kind == "bytes":
        return float(len(data))
    if kind == "bpp":
        return metrics.bpp(len(data), *rgb8.shape[:2])
    return metrics.psnr_rgb(rgb8, decoded())


def _peer_measure(peer, rgb8: np.ndarray, kind: str, rate_of):
    """``measure(knob) -> (achieved, file)`` of a peer whose rate argument is ``rate_of(knob)``."""

    def measure(knob) -> tuple[float, bytes]:
        data = peer.encode(rgb8, rate_of(knob))
        return achieved(kind, rgb8, data, lambda: peer.decode(data)), data

    return measure


def peer_to_target(
    peer, rgb8: np.ndarray, target: Target, qualities: tuple[int, int] | None = None
) -> tuple[SearchResult, bytes]:
    """A classical codec's file of ``rgb8`` at the quality that meets ``target``."""
    measure = _peer_measure(peer, rgb8, target.kind, float)
    res = search_quality(measure, target, qualities or peer_quality_range(peer), what=peer.name)
    return res, res.best.payload


def step_to_target(peer, rgb8: np.ndarray, target: Target) -> tuple[SearchResult, bytes]:
    """A peer whose continuous knob falls as the rate grows (CompressAI VBR's quantization step,
    JPEG 2000's compression ratio), at the knob that meets ``target``: the same search as a QVRF
    model's, on gain = 1 / knob, between the peer's sweep's largest and smallest knob."""
    measure = _peer_measure(peer, rgb8, target.kind, lambda g: 1.0 / g)
    steps = peer.rate_points() or list(peer.knob_range)
    res = search_gain(measure, target, (1.0 / max(steps), 1.0 / min(steps)), what=peer.name)
    return res, res.best.payload


def peer_quality_range(peer) -> tuple[int, int]:
    """An integer knob's useful range, as the codec declares it (``Peer.knob_range``)."""
    lo, hi = peer.knob_range
    return (int(lo), int(hi))


def codec_to_target(peer, rgb8: np.ndarray, target: Target) -> tuple[SearchResult, bytes, float]:
    """Any peer at the knob that meets ``target``, by what it declares (``Peer.knob_integer``,
    ``rate_falls_with_knob``): (search result, file, the knob value to pass to ``peer.encode``)."""
    if peer.knob_integer and not peer.rate_falls_with_knob:
        res, data = peer_to_target(peer, rgb8, target)
        return res, data, float(res.knob)
    if peer.rate_falls_with_knob:
        res, data = step_to_target(peer, rgb8, target)
        return res, data, 1.0 / res.knob
    raise QVRFError(f"{peer.name}: a continuous knob that rises with the rate is not searchable yet")
