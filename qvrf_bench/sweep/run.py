"""The sweep runner: every (method, rate point, image) of a dataset through real bitstreams into a
result store (store.py). The "what to measure" half of a sweep; methods/engine.py is the "how fast" half.

Methods measured in one run:

- our checkpoints (``kind`` qvrf or fixed), as QVRF methods (methods/qvrf.py) writing the version-2
  container, through the one engine (methods/engine.py) every method goes through: container bytes,
  decode, metrics. A QVRF checkpoint is measured at its discrete
  levels (``levels``: "all" or a subset) and at continuous gains (``factors``, the official
  ``factor``: 1 / bin size, used directly, never interpolated). A fixed-rate checkpoint has one rate
  point, ``level=0``; ``levels`` and ``factors`` do not apply to it. The method label is
  ``model.config.label`` (e.g. ``balle-qvrf8-192x320``, ``balle-fixed-128x192-l0.0018``); the 8 fixed
  anchors of one arch share ``arch`` and ``kind="fixed"`` so analysis can join them into one curve.
  Two different checkpoints with the same label get ``@<first 8 hex of the file sha256>`` appended.
- classical codecs (``peers``: jpeg, webp, avif, jpeg2000) with their default quality sweeps
  (each codec's ``default_sweep``) unless ``peer_qualities`` overrides them;
- CompressAI's VBR models from local state dicts (``vbr``: ``ARCH=STATEDICT``), at eval_model's
  default quantization steps unless ``peer_qualities[ARCH]`` gives steps.

Factor specs (:func:`parse_factors`): ``paper`` = the 27 factors of the official Inference.py
(in units of each model's a_0, see :func:`paper_factors_for`),
``none``, a list ``1,2.5,4``, or ``START:STOP:COUNT``, COUNT gains log-spaced from START to STOP.
The default, :data:`DEFAULT_FACTORS` = ``0.5:12:24``, is a dense log-spaced sweep over the official
factor range [0.5, 12] (ratio ~1.15 between neighbours). Gains are rounded to 4 decimals, so the
rate_point label ``gain=1.1642`` is the value used (the bitstream then carries its float32).

Measurements: bpp from the bytes (``bpp_real`` = 8 * bytes / (H * W) of the original size, the whole
file; ``payload_bpp_real`` the entropy-coded strings alone); PSNR-RGB and MS-SSIM-RGB of the decoded
8-bit image against the original 8-bit image (metrics.py). MS-SSIM is NaN for images whose shorter
side is <= 160 px (5 scales do not fit); such rows say so in ``notices``.

Work order and resume: each image is loaded once; per image and method, all rate points that are not
done yet go to the engine in one call (a fast engine can share the analysis transform) and their rows
are written as one part. Rerunning the same command after a crash or ``kill -9`` skips the rows the
store already has (``ResultStore.done_keys``; failed rows count as done unless ``retry_failed``);
a part being written at the kill is a hidden temp file the store never reads. Rerunning with another
config into the same folder fails (``ResultStore.start``). The config is what defines the numbers:
dataset content, checkpoint files (sha256) and their rate points, peers and their sweeps. Device,
engine, threads and shard are not part of it (engines agree byte for byte; rows record the device).

Failures never abort the run: an image that cannot be read is listed as skipped with the reason
and put on record in the run folder (run.json's ``skipped``, kept by merge and shown by reports; no
row: its size is unknown, and width/height are required columns); a rate point whose coding,
decoding or metrics fail gets an error row (``error`` set, ``decode_ok`` False). Images with the
same bytes as an earlier one (sorted by path) are measured once, under the first name.

Shards (``shard=(i, N)``) split the images by content hash with store.shard_filter, so every shard
of a given dataset gets the same images on every machine; ``store.merge`` joins them.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qvrf_bench import images, kinds, zoo
from qvrf_bench import peers as peers_mod
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics import Metric, default_metrics, ms_ssim_db, parse_metrics
from qvrf_bench.peers import CLASSICAL, VBR_ARCHS
from qvrf_bench.results.crops import CropWriter
from qvrf_bench.results.store import ResultStore, device_string, parse_shard, sha256_file, shard_filter
from qvrf_bench.sweep import ratecontrol
from qvrf_bench.sweep.crossdecode import CrossDecoder

DEFAULT_FACTORS = "0.5:12:24"
FACTOR_DECIMALS = 4
MAX_FACTORS = 10_000


# --- pure parsing -------------------------------------------------------------------------------


def parse_levels(spec: str | int | Sequence[int] | None) -> str | tuple[int, ...]:
    """``all`` (or None) -> "all"; ``"0,3,7"`` or a sequence -> sorted unique ints >= 0."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return "all"
    if isinstance(spec, int):
        spec = [spec]
    if isinstance(spec, str):
        tokens = [t.strip() for t in spec.split(",")]
        if not all(tokens):
            raise QVRFError(f"--levels {spec!r}: expected 'all' or comma-separated integers, e.g. 0,3,7")
        try:
            values = [int(t) for t in tokens]
        except ValueError:
            raise QVRFError(f"--levels {spec!r}: expected 'all' or comma-separated integers, e.g. 0,3,7") from None
    else:
        values = [int(v) for v in spec]
    if not values:
        raise QVRFError("--levels: no levels given (use 'all')")
    bad = [v for v in values if v < 0]
    if bad:
        raise QVRFError(f"--levels: level {bad[0]} is negative (levels are numbered from 0)")
    return tuple(sorted(set(values)))


def _round_factor(v: float) -> float:
    return round(float(v), FACTOR_DECIMALS)


def parse_checkpoint(spec: str | os.PathLike) -> tuple[str | None, str]:
    """``PATH``, ``zoo:NAME``, ``compressai:NAME-METRIC-Q`` or ``LABEL=PATH`` -> (method label or None,
    what load_model takes: a file path, or the compressai: spec itself).

    A zoo model is labelled ``zoo:NAME``, a CompressAI pretrained one by its spec; ``LABEL=`` names a
    curve in tables and figures (letters, digits and ``+ . _ - :``)."""
    from qvrf_bench.models.pretrained import is_pretrained

    text = os.fspath(spec)
    label = None
    head, sep, tail = text.partition("=")
    if sep and head and all(ch.isalnum() or ch in "+._-:" for ch in head) and not Path(text).exists():
        label, text = head, tail
    if zoo.is_zoo(text):
        return label or text, str(zoo.resolve(text))
    if is_pretrained(text):
        return label or text, text
    return label, text


def paper_factors_for(model) -> tuple[float, ...]:
    """The 27 factors of Inference.py in units of the model's a_0 as it started training.

    [QRAF]'s models have a_0 = 1, frozen, so this is the list itself. A QVRF model fine-tuned from a
    fixed model at lambda_ref starts with a_0 = sqrt(lambda_0 / lambda_ref) (decision 1; 0.1 from
    lambda = 0.18): the same relative bin sizes, so the factors span its levels as they span the
    official ones. The starting value, not the learned one: a model that pins another level's gain
    (train --pinned-level) learns a_0, and the factors must not move with it."""
    from qvrf_bench.models.qvrf import PAPER_FACTORS

    a0 = float(model.config.gains_init[0])
    return tuple(sorted({_round_factor(f * a0) for f in PAPER_FACTORS}))


def parse_factors(spec: str | float | Sequence[float] | None) -> tuple[float, ...]:
    """Continuous gains, ascending: ``paper`` (Inference.py's 27), ``none`` (or None / empty), a list
    ``1,2.5,4``, or ``START:STOP:COUNT`` (COUNT gains log-spaced from START to STOP inclusive).

    Values are rounded to 4 decimals (the rate_point label's precision) and deduplicated.
    """
    from qvrf_bench.models.qvrf import PAPER_FACTORS, gain_problem

    where = f"--factors {spec!r}"
    if spec is None:
        return ()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values = [float(spec)]
    elif isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("none", ""):
            return ()
        if text == "paper":
            values = list(PAPER_FACTORS)
        elif ":" in text:
            parts = text.split(":")
            try:
                if len(parts) != 3:
                    raise ValueError
                start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            except ValueError:
                raise QVRFError(f"{where}: expected START:STOP:COUNT, e.g. 0.5:12:24") from None
            if not (math.isfinite(start) and math.isfinite(stop) and 0 < start <= stop):
                raise QVRFError(f"{where}: need 0 < START <= STOP")
            if not 1 <= count <= MAX_FACTORS:
                raise QVRFError(f"{where}: COUNT must be 1..{MAX_FACTORS}")
            values = [start] if count == 1 else list(np.geomspace(start, stop, count))
        else:
            tokens = [t.strip() for t in text.split(",")]
            try:
                if not all(tokens):
                    raise ValueError
                values = [float(t) for t in tokens]
            except ValueError:
                raise QVRFError(f"{where}: expected paper, none, START:STOP:COUNT or a list like 1,2.5,4") from None
    else:
        values = [float(v) for v in spec]
    for v in values:
        if not (math.isfinite(v) and v > 0):
            raise QVRFError(f"{where}: gain {v!r} is not a finite number > 0")
    rounded = sorted({_round_factor(v) for v in values})
    if rounded and rounded[0] <= 0:
        raise QVRFError(f"{where}: gain {values[0]!r} rounds to 0 at {FACTOR_DECIMALS} decimals")
    for v in rounded:  # the values used, after rounding
        problem = gain_problem(v)
        if problem:
            raise QVRFError(f"{where}: gain {problem}")
    return tuple(rounded)


def parse_vbr(spec: str | tuple[str, str]) -> tuple[str, str]:
    """``ARCH=STATEDICT`` -> (arch, path)."""

    if isinstance(spec, tuple):
        arch, path = spec
    else:
        arch, sep, path = str(spec).partition("=")
        if not sep or not arch or not path:
            raise QVRFError(f"--vbr {spec!r}: expected ARCH=STATEDICT, e.g. mbt2018-mean-vbr=weights.pth.tar")
    arch = arch.strip()
    if arch not in VBR_ARCHS:
        raise QVRFError(f"--vbr {spec!r}: unknown VBR model {arch!r}; choose from {', '.join(VBR_ARCHS)}")
    return arch, str(path)


def parse_peer_qualities(spec: str) -> tuple[str, tuple[float, ...]]:
    """``NAME=Q1,Q2,...`` -> (name, qualities). For a VBR arch the values are quantization steps."""
    name, sep, values = str(spec).partition("=")
    name = name.strip()
    try:
        if not sep or not name:
            raise ValueError
        tokens = [t.strip() for t in values.split(",")]
        if not all(tokens):
            raise ValueError
        qualities = tuple(float(t) for t in tokens)
    except ValueError:
        raise QVRFError(f"--peer-qualities {spec!r}: expected NAME=Q1,Q2,..., e.g. jpeg=10,50,90") from None
    return name, qualities


def parse_peers(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``jpeg,webp`` (or a sequence) -> classical peer names, order kept, duplicates dropped."""

    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = []
    for raw in items:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name in VBR_ARCHS:
            raise QVRFError(f"--peers {name}: a CompressAI VBR model needs its weights: use --vbr {name}=STATEDICT")
        if name not in CLASSICAL:
            raise QVRFError(f"--peers: unknown codec {name!r}; choose from {', '.join(CLASSICAL)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def model_rate_points(method, levels, factors: Sequence[float], source: str = "checkpoint"):
    """The methods.base.Point list of one of our checkpoints (a QVRF method): its levels, then its
    continuous gains (ascending). A fixed-rate model has exactly one point, level 0, whatever
    ``levels`` and ``factors`` say."""
    points = method.rate_points()
    if method.kind == kinds.FIXED:
        return points[:1]
    if levels != "all":
        bad = [s for s in levels if s >= len(points)]
        if bad:
            raise QVRFError(f"{source}: has levels 0..{len(points) - 1}; --levels asks for {bad[0]}")
        points = [points[s] for s in levels]
    return points + [method.continuous_point(float(g)) for g in factors]


@dataclass(frozen=True)
class TargetPoint:
    """A matched-rate point (``--target-bpp``): on each image, the gain or quality that meets ``bpp``
    (ratecontrol.py: not above it, within its tolerance below). Level and gain come per image."""

    bpp: float
    level = None
    gain = None
    lmbda = None

    @property
    def label(self) -> str:
        return f"target_bpp={self.bpp:g}"


def parse_target_bpp(spec: str | float | Sequence[float] | None) -> tuple[float, ...]:
    """``"0.125,0.25,0.5"`` (or a sequence) -> sorted unique positive bpp targets; None/"" -> ()."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return ()
    tokens = spec.split(",") if isinstance(spec, str) else list(spec) if not isinstance(spec, (int, float)) else [spec]
    out = []
    for t in tokens:
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise QVRFError(f"--target-bpp {spec!r}: {t!r} is not a number (expected e.g. 0.25,0.5,1)") from None
        if not (math.isfinite(v) and v > 0):
            raise QVRFError(f"--target-bpp {spec!r}: {t!r} is not a rate > 0")
        out.append(v)
    return tuple(sorted(set(out)))


def split_targets(points: list) -> tuple[list, list]:
    """(sweep points, matched-rate points), each in the given order."""
    return [p for p in points if not isinstance(p, TargetPoint)], [p for p in points if isinstance(p, TargetPoint)]


# --- pure rows ----------------------------------------------------------------------------------


@dataclass
class ImageInfo:
    """What a row says about its image."""

    name: str  # relative to the dataset, POSIX separators
    sha256: str
    width: int
    height: int
    notices: tuple[str, ...] = ()


@dataclass
class Measurement:
    """One rate point on one image: what came back from the codec (or why nothing did)."""

    bytes: int | None
    payload_bytes: int | None
    rgb: np.ndarray | None  # decoded (H, W, 3) uint8
    decode_ok: bool  # the decoder rebuilt what the encoder coded (engine check) / decoded at all
    enc_s: float | None
    dec_s: float | None
    error: str = ""
    gain: float | None = None  # the float32 gain a model's bitstream carries
    extra: dict = field(default_factory=dict)  # more columns (a matched-rate row's target, knob, encodes)
    notices: tuple[str, ...] = ()


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: the first line of its message, its type when not ours."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    if not isinstance(exc, QVRFError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_row(
    fields: Mapping[str, Any],
    image: ImageInfo,
    original: np.ndarray,
    m: Measurement,
    measure: Sequence[Metric] | None = None,
) -> dict[str, Any]:
    """The store row of one (method, rate point, image): identity ``fields`` + the measurement.

    Metrics (``measure``, default: the metric table's default set) compare the decoded 8-bit image
    with the original 8-bit image; bpp counts the bytes over the original (unpadded) size. A metric
    that fails turns the row into an error row.
    """
    measure = default_metrics() if measure is None else measure
    row = dict(fields)
    pixels = image.width * image.height
    notices = list(image.notices)
    row.update(
        image=image.name,
        image_sha256=image.sha256,
        width=image.width,
        height=image.height,
        bytes=m.bytes,
        payload_bytes=m.payload_bytes,
        bpp_real=None if m.bytes is None else 8.0 * m.bytes / pixels,
        payload_bpp_real=None if m.payload_bytes is None else 8.0 * m.payload_bytes / pixels,
        enc_s=m.enc_s,
        dec_s=m.dec_s,
        decode_ok=False,
        error=m.error,
    )
    row.update({c: None for metric in measure for c, _ in metric.columns()})  # null until measured
    if m.gain is not None:
        row["gain"] = float(m.gain)
    row.update(m.extra)
    notices += list(m.notices)
    if not m.error and m.rgb is None:
        row["error"] = "no decoded image"
    if not row["error"]:
        try:
            if m.rgb.shape != original.shape:
                raise QVRFError(
                    f"decoded image is {m.rgb.shape[1]}x{m.rgb.shape[0]}, expected {image.width}x{image.height}"
                )
            for metric in measure:
                values = metric.measure(original, m.rgb)
                row.update(values)
                if metric.undefined_notice and math.isnan(values[metric.column]):
                    notices.append(metric.undefined_notice)
            if m.decode_ok:
                row["decode_ok"] = True
            else:
                row["error"] = (
                    "decoded latent differs from the encoder's (the bitstream does not decode to what was coded)"
                )
        except Exception as exc:  # a broken codec output must not stop the run
            row["error"] = f"metrics failed: {one_line(exc)}"
    row["notices"] = "; ".join(notices)
    return row


# --- methods ------------------------------------------------------------------------------------


class _Method:
    """One curve source: a list of rate points, identity columns per point, measure(rgb, points)."""

    name: str
    kind: str
    checkpoint_sha256: str = ""
    cross_decodes = False  # whether a second decoder can check its bitstreams (crossdecode.py)
    cross = None  # the sweep's crossdecode.CrossDecoder, when it asks for the check
    device: str | None = None  # the store's device column, when it differs from the run's
    points: list

    def fields(self, point) -> dict[str, Any]:
        raise NotImplementedError

    def label(self, point) -> str:
        return self.fields(point)["rate_point"]

    def measure(self, rgb: np.ndarray, points: list) -> list[Measurement]:
        """Sweep points in one call (an engine shares work between them), then each matched-rate
        point with its own search."""
        sweep, targets = split_targets(points)
        done = dict(zip(sweep, self._measure_points(rgb, sweep), strict=True)) if sweep else {}
        for tp in targets:
            done[tp] = self._measure_target(rgb, tp)
        return [done[p] for p in points]

    def _measure_points(self, rgb: np.ndarray, points: list) -> list[Measurement]:
        """All points in one ``_run`` call (an engine shares work between them); if that call fails,
        one point at a time, so only the point that breaks becomes an error row."""
        try:
            return self._run(rgb, points)
        except Exception as exc:
            if len(points) == 1:
                return [Measurement(None, None, None, False, None, None, f"coding failed: {one_line(exc)}")]
        out = []
        for pt in points:
            try:
                out.extend(self._run(rgb, [pt]))
            except Exception as exc:
                out.append(Measurement(None, None, None, False, None, None, f"coding failed: {one_line(exc)}"))
        return out

    def _run(self, rgb: np.ndarray, points: list) -> list[Measurement]:
        raise NotImplementedError

    def _matched(self, rgb: np.ndarray, tp: TargetPoint, search) -> Measurement:
        """A matched-rate row: ``search(target) -> (result, bytes, point)`` finds the knob
        (ratecontrol.py), then the point is measured like any other; the engine's bytes must be the
        search's bytes (the same container, coded twice)."""

        extra = {"target_bpp": float(tp.bpp)}
        try:
            res, data, point = search(ratecontrol.Target("bpp", tp.bpp))
        except Exception as exc:
            return Measurement(None, None, None, False, None, None, f"target: {one_line(exc)}", extra=extra)
        extra["target_encodes"] = len(res.tries)
        try:
            (m,) = self._run(rgb, [point])
            if m.bytes != len(data):
                raise RuntimeError("the engine's bitstream differs from the rate search's")
        except Exception as exc:
            return Measurement(None, None, None, False, None, None, f"coding failed: {one_line(exc)}", extra=extra)
        m.extra = {**m.extra, **extra}
        m.notices = (*m.notices, *(() if res.met else (res.note(),)))
        return m

    def _measure_target(self, rgb: np.ndarray, tp: TargetPoint) -> Measurement:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError


def _add_cross(m: Measurement, cols: dict) -> None:
    """A cross-decode check's columns (crossdecode.py) into a measurement; its failure notice into the row's."""
    notice = cols.pop("notice", None)
    m.extra = {**m.extra, **cols}
    if notice:
        m.notices = (*m.notices, notice)


class _PeerMethod(_Method):
    def __init__(self, peer, device: str | None = None, targets=()):
        self.peer = peer
        self.name, self.kind = peer.name, peer.kind
        self.checkpoint_sha256 = peer.checkpoint_sha256
        self.points = list(peer.rate_points())
        if self.kind in (kinds.CLASSICAL, kinds.VBR):  # a quality knob / a quantization step: ratecontrol.py
            self.points += [TargetPoint(b) for b in targets]
        self.device = device
        self._warm = False

    def fields(self, point):
        if isinstance(point, TargetPoint):
            f = self.peer.row_fields(self.peer.rate_points()[0] if self.peer.rate_points() else 50.0)
            f.update(quality=None, rate_point=point.label)  # the quality comes per image
            return f
        return self.peer.row_fields(point)

    def label(self, point):
        return point.label if isinstance(point, TargetPoint) else self.fields(point)["rate_point"]

    def warm_up(self, rate) -> None:
        """One untimed round trip, so the first image's timings do not include lazy set-up (as the engines do)."""
        if not self._warm:
            self._warm = True
            try:
                self.peer.decode(self.peer.encode(np.full((64, 64, 3), 128, np.uint8), rate))
            except Exception:  # a real failure shows up, with its reason, in the measured rows
                pass

    def _measure_target(self, rgb, tp: TargetPoint) -> Measurement:

        extra = {"target_bpp": float(tp.bpp)}
        try:
            res, _, rate = ratecontrol.codec_to_target(self.peer, rgb, ratecontrol.Target("bpp", tp.bpp))
        except Exception as exc:
            return Measurement(None, None, None, False, None, None, f"target: {one_line(exc)}", extra=extra)
        extra.update({"target_encodes": len(res.tries), **self.peer.rate_columns(rate)})
        (m,) = self._measure_points(rgb, [rate])
        m.extra, m.notices = extra, (() if res.met else (res.note(),))
        return m

    def _measure_points(self, rgb, points):
        out = []
        if points:
            self.warm_up(points[0])
        for rate in points:
            t0 = time.perf_counter()
            try:
                data = self.peer.encode(rgb, rate)
            except Exception as exc:
                out.append(Measurement(None, None, None, False, None, None, f"encode failed: {one_line(exc)}"))
                continue
            t1 = time.perf_counter()
            try:
                rec = self.peer.decode(data)
                t2 = time.perf_counter()
                payload = self.peer.payload_size(data)
            except Exception as exc:
                out.append(Measurement(len(data), None, None, False, t1 - t0, None, f"decode failed: {one_line(exc)}"))
                continue
            out.append(Measurement(len(data), payload, rec, True, t1 - t0, t2 - t1))
        return out

    def config(self):
        cfg = dict(self.peer.config())
        targets = [p.label for p in self.points if isinstance(p, TargetPoint)]
        if targets:
            cfg["targets"] = targets
        if self.kind == kinds.VBR:
            cfg["checkpoint"] = Path(self.peer.checkpoint).name  # the file's identity is its sha256
            cfg["sha256"] = self.checkpoint_sha256
        return cfg


class _LearnedMethod(_Method):
    """A learned codec through the method contract (methods/base.py) and its one engine
    (methods/engine.py): one of our checkpoints (``-c``: QVRF, or a fixed-rate model, writing the
    version-2 container; its levels and ``factors``) or a method of the contract (``--method SPEC``:
    its levels and its own continuous points, in its own container). Both give rows of the kind the
    model is (``method.kind``); they differ only in the config that names them in run.json (a
    checkpoint file, or a spec), which is what existing run folders resume on."""

    cross_decodes = True

    def __init__(self, method, engine, spec: str, path: str, sha: str, points: list, targets=(),
                 checkpoint_config: bool = False):  # fmt: skip
        self.method, self.engine, self.spec, self.path = method, engine, spec, str(path)
        self.checkpoint_sha256, self.checkpoint_config = sha, checkpoint_config
        self.name, self.kind = method.name, method.kind
        self.fingerprint = method.fingerprint()
        labels = [p.label for p in points]
        if len(set(labels)) != len(labels):
            raise QVRFError(f"{spec}: two rate points share a label ({labels})")
        self.points = list(points)
        # matched-rate rows need a continuous knob (methods/base.py: continuous_range); a fixed-rate
        # model has one rate: it cannot be steered to a target
        self.searchable = self.kind != kinds.FIXED and method.continuous_range() is not None
        if self.searchable:
            self.points += [TargetPoint(b) for b in targets]

    def _measure_target(self, rgb, tp: TargetPoint) -> Measurement:

        def search(target):
            return ratecontrol.method_to_target(self.method, rgb, target, what=self.name, fingerprint=self.fingerprint)

        return self._matched(rgb, tp, search)

    def fields(self, point):
        own = {} if isinstance(point, TargetPoint) else self.method.point_columns(point)  # QVRF: the float32 gain
        return {
            "method": self.name,
            "arch": self.method.arch,
            "kind": self.kind,
            "engine": self.engine.name,
            "checkpoint": self.path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "level": point.level,
            "gain": own.get("gain"),
            "lmbda": point.lmbda,
            "quality": None,
            "rate_point": point.label,
            "codec_version": "",
            "decode_check": self.method.decode_check,
        }

    def label(self, point):
        return point.label

    def _run(self, rgb, points):
        res = self.engine.run_image(self.method, rgb, list(points), self.fingerprint)
        if [r.point for r in res] != list(points):
            raise RuntimeError(f"the engine returned results for other rate points than asked ({self.name})")
        out = []
        for r in res:
            m = Measurement(len(r.data), r.payload_bytes, r.rgb, r.decode_ok, r.enc_s, r.dec_s)
            m.gain = self.method.point_columns(r.point).get("gain")  # a matched-rate row's comes per image
            if self.cross is not None:
                _add_cross(m, self.cross.check(self.spec, self.method, r.point, r.data, r.rebuilt, r.rgb))
            out.append(m)
        return out

    def config(self):
        points = [p.label for p in self.points]
        if self.checkpoint_config:  # the form 0.2.0 wrote for -c: existing run folders resume on it
            cfg = {"method": self.name, "file": Path(self.path).name, "sha256": self.checkpoint_sha256,
                   "arch": self.method.arch, "kind": self.kind, "points": points}  # fmt: skip
            return cfg if self.method.padding == "centred" else {**cfg, "padding": self.method.padding}
        return {
            "method": self.name,
            "spec": self.spec,
            "method_id": self.method.method_id,
            "sha256": self.checkpoint_sha256,
            "fingerprint": self.fingerprint,
            "arch": self.method.arch,
            "kind": self.kind,
            "points": points,
        }


def _method_points(method, levels) -> list:
    """A ``--method``'s points: its levels (or ``levels`` of them), then its own continuous points."""
    points = method.rate_points()
    if levels != "all" and method.kind != kinds.FIXED:  # as for checkpoints: a fixed-rate model has its one point
        bad = [v for v in levels if not 0 <= v < len(points)]
        if bad:
            raise QVRFError(f"--levels {bad[0]}: {method.name} has levels 0..{len(points) - 1}")
        points = [points[v] for v in levels]
    return points + [method.continuous_point(v) for v in method.continuous_values()]


def _spec_file(arg: str | None) -> Path | None:
    if not arg:
        return None

    try:
        return zoo.resolve(arg)
    except Exception:
        return Path(arg)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class SweepConfig:
    """Everything ``run_sweep`` needs. Specs may be given as CLI strings or as Python values.

    dataset: folder of images (searched recursively, hidden files skipped; see images.list_images).
    out: the run folder (created; an existing run with the same config is resumed).
    checkpoints: our checkpoint files (QVRF or fixed-rate).
    levels: "all" or level numbers (QVRF checkpoints only). factors: see :func:`parse_factors`.
    peers: classical codecs ("jpeg,webp" or a list). vbr: "ARCH=STATEDICT" entries or (arch, path).
    peer_qualities: peer name -> its rate values (quality, JPEG 2000 ratio, VBR quantization step).
    device: auto | cpu | cuda[:i]. engine: methods/engine.py's ``serial`` or ``fast`` (None: fast).
    shard: "i/N" or (i, N). retry_failed: redo rows that failed before (else they count as done).
    threads: torch CPU threads (None: torch's default). progress: a tqdm bar on stderr.
    command: the command line recorded in the manifest (default: rebuilt from this config).
    target_bpp: matched-rate targets ("0.25,0.5,1"): one more row per image and target for each QVRF
    checkpoint, classical codec and VBR peer, at the knob that meets it (ratecontrol.py); fixed-rate
    models get none (a fixed model has one rate).
    crops: for the first ``crops`` images of the dataset (by name), keep a window of the original and
    of each matched-rate and fixed-rate decoded image in OUT/crops (crops.py) for the report's
    side-by-side view. Not part of the config: it changes no number.
    decode_device / decode_threads: decode every bitstream of our checkpoints again in a separate
    process on that device / with that many threads (crossdecode.py); rows get cross_decode_ok.
    methods: method specs ``WHAT[=CHECKPOINT]`` (methods/registry.py): each method's levels (``levels``
    applies) and its own continuous points, in the version-3 container, kind 'variable'.
    metrics: what each row measures besides rate: names from the metric table ("psnr-y,psnr-yuv"),
    "default" or "all" (metrics.parse_metrics); the default set is always measured.
    """

    dataset: str | os.PathLike
    out: str | os.PathLike
    checkpoints: Sequence[str | os.PathLike] = ()
    levels: str | Sequence[int] = "all"
    factors: str | Sequence[float] | None = DEFAULT_FACTORS
    peers: str | Sequence[str] = ()
    peer_qualities: Mapping[str, Sequence[float]] = field(default_factory=dict)
    vbr: Sequence[str | tuple[str, str]] = ()
    device: str = "auto"
    engine: str | None = None
    shard: str | tuple[int, int] | None = None
    retry_failed: bool = False
    threads: int | None = None
    progress: bool = True
    run_id: str | None = None
    command: Sequence[str] | None = None
    target_bpp: str | Sequence[float] | None = None
    crops: int = 0
    decode_device: str | None = None
    decode_threads: int | None = None
    methods: Sequence[str] = ()
    max_pixels: int = images.MAX_PIXELS  # read limits for every image (images.load_image); not config
    max_image_bytes: int = images.MAX_BYTES
    metrics: str | Sequence[str] | None = None  # metric names (metrics.table); None: the default set
    flush_rows: int = 2000  # write results every this many rows or 30 s (store.RowBuffer); not config
    padding: str = "centred"  # images.PADDINGS for the checkpoints (-c); "official": Inference.py's right/bottom


@dataclass
class SweepSummary:
    """What a sweep did (this invocation) and what the run folder holds (all invocations)."""

    run_dir: Path
    engine: str
    device: str
    rows_written: int  # by this invocation
    rows_already_done: int  # skipped because the store had them (resume)
    rows_total: int  # in the run folder after this invocation
    wall_s: float
    points: Any  # pandas DataFrame: one row per (method, rate_point), see summarize()
    methods: Any  # pandas DataFrame: one row per method
    error_rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # method, rate_point, image, error
    skipped_images: list[tuple[str, str]] = field(default_factory=list)  # image, reason
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # image, the earlier image with its bytes

    @property
    def n_failures(self) -> int:
        """Error rows in the run folder plus images that could not be read (``--strict`` fails on > 0)."""
        return len(self.error_rows) + len(self.skipped_images)

    def text(self) -> str:
        return format_summary(self)


def command_line(cfg: SweepConfig) -> list[str]:
    """The ``qvrf-bench sweep`` command that reproduces ``cfg`` (for the manifest)."""
    cmd = ["qvrf-bench", "sweep", "--dataset", str(cfg.dataset), "--out", str(cfg.out)]
    if cfg.checkpoints:
        cmd += ["--checkpoint", *map(str, cfg.checkpoints)]
    for spec in cfg.methods:
        cmd += ["--method", str(spec)]
    levels = parse_levels(cfg.levels)
    cmd += ["--levels", levels if levels == "all" else ",".join(map(str, levels))]
    factors = cfg.factors if isinstance(cfg.factors, str) else ",".join(f"{v:g}" for v in parse_factors(cfg.factors))
    cmd += ["--factors", factors or "none"]
    peer_names = parse_peers(cfg.peers)
    if peer_names:
        cmd += ["--peers", ",".join(peer_names)]
    for name, qs in cfg.peer_qualities.items():
        cmd += ["--peer-qualities", f"{name}={','.join(f'{float(q):g}' for q in qs)}"]
    for spec in cfg.vbr:
        arch, path = parse_vbr(spec)
        cmd += ["--vbr", f"{arch}={path}"]
    cmd += ["--device", cfg.device]
    if cfg.padding != "centred":
        cmd += ["--padding", cfg.padding]
    measured = [m.name for m in _measured(cfg)]
    if measured != [m.name for m in default_metrics()]:
        cmd += ["--metrics", ",".join(measured)]
    if cfg.engine:
        cmd += ["--engine", cfg.engine]
    if cfg.shard is not None:
        cmd += ["--shard", cfg.shard if isinstance(cfg.shard, str) else f"{cfg.shard[0]}/{cfg.shard[1]}"]
    if cfg.retry_failed:
        cmd.append("--retry-failed")
    if cfg.threads:
        cmd += ["--threads", str(cfg.threads)]
    if cfg.crops:
        cmd += ["--crops", str(int(cfg.crops))]
    if cfg.decode_device:
        cmd += ["--decode-device", cfg.decode_device]
    if cfg.decode_threads:
        cmd += ["--decode-threads", str(int(cfg.decode_threads))]
    if cfg.max_pixels != images.MAX_PIXELS:
        cmd += ["--max-pixels", str(int(cfg.max_pixels))]
    if cfg.max_image_bytes != images.MAX_BYTES:
        cmd += ["--max-image-bytes", str(int(cfg.max_image_bytes))]
    targets = parse_target_bpp(cfg.target_bpp)
    if targets:
        cmd += ["--target-bpp", ",".join(f"{v:g}" for v in targets)]
    return cmd


def _resolve_device(name: str) -> str:
    from qvrf_bench.devices import resolve_device

    return str(resolve_device(name))


def _list_dataset(folder: Path):
    """[(path, relative name, sha256 or '' when unreadable, read error)] in sorted order."""

    files = images.list_images(folder)
    if not files:
        raise QVRFError(f"{folder}: no image files found (looked for {', '.join(images.IMAGE_SUFFIXES)})")
    out = []
    for p in files:
        try:
            sha, err = sha256_file(p), ""
        except OSError as exc:
            sha, err = "", f"cannot read the file ({exc.strerror or exc})"
        out.append((p, p.relative_to(folder).as_posix(), sha, err))
    return out


def _dataset_identity(folder: Path, listing) -> dict[str, Any]:
    h = hashlib.sha256()
    for _, name, sha, _ in listing:
        h.update(f"{name}\0{sha}\n".encode())
    return {"name": folder.resolve().name, "images": len(listing), "sha256": h.hexdigest()}


def _build_methods(cfg: SweepConfig, device: str, engine) -> list[_Method]:
    from qvrf_bench.methods.qvrf import QVRFMethod
    from qvrf_bench.methods.registry import make as make_method
    from qvrf_bench.methods.registry import split_spec
    from qvrf_bench.models import pretrained
    from qvrf_bench.models.checkpoints import load_model

    levels = parse_levels(cfg.levels)
    factors = parse_factors(cfg.factors)
    targets = parse_target_bpp(cfg.target_bpp)
    peer_names = parse_peers(cfg.peers)
    vbr_specs = [parse_vbr(s) for s in cfg.vbr]
    qualities = {}
    for name, qs in dict(cfg.peer_qualities).items():
        if name not in peer_names and name not in {a for a, _ in vbr_specs}:
            raise QVRFError(f"--peer-qualities {name}: not among the peers of this run (--peers / --vbr)")
        qualities[name] = [float(q) for q in qs]
    if not cfg.checkpoints and not peer_names and not vbr_specs and not cfg.methods:
        raise QVRFError("nothing to measure: give --checkpoint, --method, --peers or --vbr")

    methods: list[_Method] = []
    seen: dict[str, str] = {}
    relative = isinstance(cfg.factors, str) and cfg.factors.strip().lower() == "paper"
    for spec in cfg.checkpoints:
        name, path = parse_checkpoint(spec)
        file = pretrained.resolve(path).path if pretrained.is_pretrained(path) else Path(path)
        if not file.is_file():
            raise QVRFError(f"{path}: no such checkpoint file")
        sha = sha256_file(file)
        if sha in seen:
            raise QVRFError(f"{path}: the same file as {seen[sha]} (given twice)")
        seen[sha] = path
        model, _ = load_model(path, device=device)
        own = factors
        if relative and model.config.kind != kinds.FIXED:  # the paper's factors are per level
            own = paper_factors_for(model)
        label = name or model.config.label
        if cfg.padding != "centred":  # another padding is another method: its own rows and curve
            label = f"{label}+{cfg.padding}-padding"
        method = QVRFMethod(model, name=label, container=2, padding=cfg.padding)
        points = model_rate_points(method, levels, own, source=str(path))
        methods.append(_LearnedMethod(method, engine, f"qvrf-v2={path}", path, sha, points, targets,
                                      checkpoint_config=True))  # fmt: skip
    for spec in cfg.methods:
        method = make_method(str(spec), device=device)
        arg = split_spec(str(spec))[1]
        file = _spec_file(arg)
        sha = sha256_file(file) if file is not None and file.is_file() else method.fingerprint()
        m = _LearnedMethod(method, engine, str(spec), arg or "", sha, _method_points(method, levels), targets)
        methods.append(m)
        if targets and not m.searchable:  # said, not silently dropped
            print(f"notice: --target-bpp: no matched-rate rows for {m.name} (it declares no continuous_range)",
                  file=sys.stderr)  # fmt: skip
    # two different checkpoints with one label would merge into one curve: tell them apart
    labels = [m.name for m in methods]
    for m in methods:
        if labels.count(m.name) > 1:
            m.name = f"{m.name}@{m.checkpoint_sha256[:8]}"

    for arch, path in vbr_specs:
        peer = peers_mod.get_peer(arch, checkpoint=path, device=device, qsteps=qualities.get(arch))
        if any(m.kind == kinds.VBR and m.name == arch for m in methods):
            raise QVRFError(f"--vbr {arch}: given twice (one checkpoint per VBR architecture in a run)")
        methods.append(_PeerMethod(peer, targets=targets))
    cpu = device_string("cpu")
    for name in peer_names:
        # classical codecs run on the CPU whatever --device says
        methods.append(_PeerMethod(peers_mod.get_peer(name, sweep=qualities.get(name)), device=cpu, targets=targets))
    return methods


def _measured(cfg: SweepConfig) -> tuple[Metric, ...]:
    """The metrics each row measures (``cfg.metrics``, metrics.parse_metrics)."""
    return parse_metrics(cfg.metrics if cfg.metrics is None or isinstance(cfg.metrics, str) else ",".join(cfg.metrics))


def run_sweep(cfg: SweepConfig) -> SweepSummary:
    """Measure every (method, rate point, image) of ``cfg`` that the run folder does not hold yet.

    Raises QVRFError for bad settings, unreadable checkpoints or a run folder holding another config;
    per-image and per-point failures become skipped images / error rows (see the module docstring).
    """
    import torch

    if not cfg.threads:
        return _run_sweep(cfg)
    if int(cfg.threads) < 1:
        raise QVRFError(f"--threads {cfg.threads}: need at least 1")
    before = torch.get_num_threads()
    torch.set_num_threads(int(cfg.threads))
    try:
        return _run_sweep(cfg)
    finally:
        torch.set_num_threads(before)  # a library call must not change the caller's torch settings


def _run_sweep(cfg: SweepConfig) -> SweepSummary:
    t_start = time.perf_counter()
    from qvrf_bench.methods.engine import get_engine

    shard = parse_shard(cfg.shard) if isinstance(cfg.shard, str) else (tuple(cfg.shard) if cfg.shard else None)
    engine_name = cfg.engine or "fast"
    try:
        engine = get_engine(engine_name)
    except ValueError as exc:
        raise QVRFError(f"--engine: {exc}") from None
    device = _resolve_device(cfg.device)
    dataset = Path(cfg.dataset)
    listing = _list_dataset(dataset)
    methods = _build_methods(cfg, device, engine)
    cross = None
    if cfg.decode_device or cfg.decode_threads:
        cross = CrossDecoder(_resolve_device(cfg.decode_device or "cpu"), cfg.decode_threads)
        for m in methods:
            if m.cross_decodes:
                m.cross = cross

    # what defines the numbers; each method lists its resolved rate points, so "all" and "0,...,7" agree
    run_config = {
        "sweep_version": 1,
        "dataset": _dataset_identity(dataset, listing),
        "methods": [m.config() for m in methods],
    }
    measure = _measured(cfg)
    if [m.name for m in measure] != [m.name for m in default_metrics()]:
        run_config["metrics"] = [m.name for m in measure]  # absent for the default set: older runs resume
    store = ResultStore(cfg.out)
    # one writer per run folder, taken before the config check (store.writer_lock): two sweeps
    # started together on one --out would otherwise both pass it and mix their rows
    with store.writer_lock():
        store.start(list(cfg.command or command_line(cfg)), run_config, shard=shard, run_id=cfg.run_id, device=device)
        done = store.done_keys(include_failed=not cfg.retry_failed)
        _record_complexity(store, methods)

        # same bytes = same image (the row key is the content hash): measure the first name only
        first_by_sha: dict[str, str] = {}
        duplicates, work = [], []
        for path, name, sha, err in listing:
            if sha and sha in first_by_sha:
                duplicates.append((name, first_by_sha[sha]))
                continue
            if sha:
                first_by_sha[sha] = name
            work.append((path, name, sha, err))
        work_all = list(work)
        if shard is not None:
            # by content: copies land in the same shard, and each machine picks the same images
            work = shard_filter(work, shard[0], shard[1], key=lambda w: w[2] or w[1])

        # crops (crops.py): the first N images of the whole listing, so every shard agrees
        crop_names = {w[1] for w in work_all[: max(0, int(cfg.crops or 0))]}
        writer = None
        if crop_names:
            writer = CropWriter(cfg.out)

        def todo(method: _Method, sha: str, name: str) -> list:
            image_id = sha or name
            return [
                p
                for p in method.points
                if (method.name, method.checkpoint_sha256, method.label(p), image_id) not in done
            ]

        plan = [(w, [(m, todo(m, w[2], w[1])) for m in methods]) for w in work]
        n_todo = sum(len(pts) for _, per in plan for _, pts in per)
        n_all = len(work) * sum(len(m.points) for m in methods)

        skipped: list[tuple[str, str]] = []
        written = 0
        bar = _progress_bar(n_todo, cfg.progress)
        buffer = store.buffered(max_rows=max(1, int(cfg.flush_rows)))  # a kill loses at most the last 30 s of rows
        finished = False
        try:
            for (path, name, sha, err), per_method in plan:
                n_here = sum(len(pts) for _, pts in per_method)
                if n_here == 0:
                    continue  # fully measured before: do not even read the image
                if not err:
                    try:
                        img = images.load_image(path, cfg.max_pixels, cfg.max_image_bytes)
                    except QVRFError as exc:
                        err = getattr(exc, "reason", None) or one_line(exc)
                if err:
                    skipped.append((name, err))
                    store.record_skip(name, err, sha)  # on record in run.json: merge and reports see it
                    bar.update(n_here)
                    continue
                info = ImageInfo(name, img.sha256, img.width, img.height, tuple(img.notices))
                for method, points in per_method:
                    if not points:
                        continue
                    bar.set_description_str(f"{method.name} | {name}", refresh=False)
                    measured = method.measure(img.rgb, points)
                    rows = []
                    for pt, m in zip(points, measured, strict=True):
                        row = build_row(method.fields(pt), info, img.rgb, m, measure)
                        if method.device:
                            row["device"] = method.device
                        rows.append(row)
                        if (
                            writer
                            and name in crop_names
                            and m.rgb is not None
                            and row["decode_ok"]
                            and (isinstance(pt, TargetPoint) or method.kind == kinds.FIXED)
                        ):
                            writer.save(name, info.sha256, img.rgb, m.rgb, row["method"], row["checkpoint_sha256"],
                                        row["rate_point"])  # fmt: skip
                    buffer.add(rows)
                    written += len(rows)
                    bar.update(len(points))
            finished = True
        finally:
            bar.close()
            buffer.flush()  # also on Ctrl-C or an error: what was measured is kept
            if cross is not None:
                cross.close()
        if finished:
            store.compact()  # the finished run as one part (resumes and shards add parts; this folds them)

        df = store.read()
        points, per_method = summarize(df)
        errors = df[~(df["decode_ok"].astype(bool) & (df["error"] == ""))]
        error_rows = [
            (str(r.method), str(r.rate_point), str(r.image), str(r.error) or "decode failed")
            for r in errors.itertuples(index=False)
        ]
        return SweepSummary(
            run_dir=Path(cfg.out),
            engine=getattr(engine, "name", engine_name),
            device=device_string(device),
            rows_written=written,
            rows_already_done=n_all - n_todo,
            rows_total=len(df),
            wall_s=time.perf_counter() - t_start,
            points=points,
            methods=per_method,
            error_rows=error_rows,
            skipped_images=skipped,
            duplicates=duplicates,
        )


def _record_complexity(store, methods) -> None:
    """Each learned method's parameters and kMAC/px in run.json (once: a resume finds them there)."""
    known = (store.manifest or {}).get("complexity") or {}
    found = {}
    for m in methods:
        contract = getattr(m, "method", None)
        if contract is None or m.name in known:
            continue
        try:
            c = contract.complexity()
        except Exception as exc:  # a count that fails must not stop the measurements
            c = {"error": one_line(exc)}
        if c is not None:
            found[m.name] = c
    store.record_complexity(found)


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, disable=not enabled, unit="pt", dynamic_ncols=True, mininterval=0.5 if tty else 10.0,
                file=sys.stderr)  # fmt: skip


# --- summary ------------------------------------------------------------------------------------


def _finite_mean(values) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def summarize(df):
    """Per (method, rate_point): images, mean bpp_real / payload_bpp_real / PSNR / MS-SSIM (dB of the
    mean MS-SSIM, over the images where it is defined), mean enc/dec ms; error rows left out of the
    means. PSNR means skip +inf (lossless images) and count them in ``n_lossless``. Per method: rows,
    failures, rate points, images, summed coding time. Both sorted by method, then rate."""
    import pandas as pd

    cols = ["method", "arch", "kind", "rate_point", "gain", "lmbda", "n_images", "bpp_real", "payload_bpp_real",
            "psnr_rgb", "ms_ssim_db_rgb", "n_lossless", "enc_ms", "dec_ms"]  # fmt: skip
    mcols = ["method", "arch", "kind", "rows", "failures", "rate_points", "images", "coding_s"]
    if df.empty:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=mcols)
    ok = df["decode_ok"].astype(bool) & (df["error"] == "")
    good = df[ok]
    pts = []
    for (method, rp), g in good.groupby(["method", "rate_point"], sort=False):
        psnr = g["psnr_rgb"].to_numpy(dtype=float)
        ms = g["ms_ssim_rgb"].to_numpy(dtype=float)
        ms = ms[np.isfinite(ms)]
        pts.append({
            "method": method, "arch": g["arch"].iloc[0], "kind": g["kind"].iloc[0], "rate_point": rp,
            "n_images": int(g["image_sha256"].nunique()),
            "bpp_real": float(g["bpp_real"].mean()),
            "payload_bpp_real": float(g["payload_bpp_real"].mean()),
            "psnr_rgb": _finite_mean(psnr),
            "ms_ssim_db_rgb": ms_ssim_db(float(ms.mean())) if ms.size else float("nan"),
            "gain": g["gain"].iloc[0], "lmbda": g["lmbda"].iloc[0],
            "n_lossless": int(np.isposinf(psnr).sum()),
            "enc_ms": 1000 * float(g["enc_s"].mean()), "dec_ms": 1000 * float(g["dec_s"].mean()),
        })  # fmt: skip
    points = pd.DataFrame(pts, columns=cols)
    if not points.empty:
        # equal rates (e.g. gains below the model's useful range) fall back to the gain's order
        points = points.sort_values(["method", "bpp_real", "gain"], kind="mergesort").reset_index(drop=True)
    meth = []
    for method, g in df.groupby("method", sort=True):
        meth.append({
            "method": method, "arch": g["arch"].iloc[0], "kind": g["kind"].iloc[0], "rows": len(g),
            "failures": int((~ok[g.index]).sum()), "rate_points": int(g["rate_point"].nunique()),
            "images": int(g["image"].nunique()),
            "coding_s": float(g["enc_s"].fillna(0).sum() + g["dec_s"].fillna(0).sum()),
        })  # fmt: skip
    return points, pd.DataFrame(meth, columns=mcols)


def _num(v: float, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, fmt)


def format_points_table(points, methods) -> str:
    """The per-method RD table (one block per method, points sorted by rate), with a legend."""
    lines = []
    for m in methods.itertuples(index=False):
        lines.append(
            f"{m.method}  [{m.kind}, {m.arch}]  {m.rate_points} rate points x {m.images} images = {m.rows} rows, "
            f"{m.failures} failed, coding time {m.coding_s:.1f} s"
        )
        sub = points[points["method"] == m.method]
        if sub.empty:
            lines.append("    (no successful rows)")
            continue
        with_gain = sub["gain"].notna().any()
        head = f"    {'rate point':<16}" + (f" {'gain':>8} {'lambda':>7}" if with_gain else "")
        lines.append(head + f" {'images':>6} {'bpp':>8} {'payload':>8} {'PSNR dB':>8} {'MS-SSIM dB':>10} "
                     f"{'enc ms':>8} {'dec ms':>8}")  # fmt: skip
        for p in sub.itertuples(index=False):
            lossless = f"  ({p.n_lossless} lossless, left out of the PSNR mean)" if p.n_lossless else ""
            gain = f" {_num(p.gain, '.4f'):>8} {_num(p.lmbda, 'g'):>7}" if with_gain else ""
            lines.append(
                f"    {p.rate_point:<16}{gain} {p.n_images:>6} {_num(p.bpp_real, '.4f'):>8} "
                f"{_num(p.payload_bpp_real, '.4f'):>8} {_num(p.psnr_rgb, '.2f'):>8} "
                f"{_num(p.ms_ssim_db_rgb, '.2f'):>10} {_num(p.enc_ms, '.1f'):>8} {_num(p.dec_ms, '.1f'):>8}{lossless}"
            )
    lines.append(
        "means over images, error rows left out; bpp = 8*bytes/pixels of the whole file, payload = the "
        "entropy-coded strings only; PSNR = mean of per-image PSNR-RGB (8-bit); MS-SSIM dB = -10log10(1 - mean "
        "MS-SSIM), '-' where images are too small (<= 160 px)"
    )
    return "\n".join(lines)


def format_summary(s: SweepSummary, max_listed: int = 20) -> str:
    """The closing report: the RD table, then failures, then totals."""
    out = [format_points_table(s.points, s.methods)] if len(s.methods) else ["(no rows)"]
    if s.skipped_images:
        out.append(f"skipped {len(s.skipped_images)} unreadable image(s) (no rows):")
        out += [f"    {name}: {reason}" for name, reason in s.skipped_images[:max_listed]]
        if len(s.skipped_images) > max_listed:
            out.append(f"    ... and {len(s.skipped_images) - max_listed} more")
    if s.error_rows:
        out.append(f"{len(s.error_rows)} error row(s):")
        out += [f"    {m} {rp} {img}: {err}" for m, rp, img, err in s.error_rows[:max_listed]]
        if len(s.error_rows) > max_listed:
            out.append(f"    ... and {len(s.error_rows) - max_listed} more")
    if s.duplicates:
        out.append(f"{len(s.duplicates)} image(s) with the same bytes as an earlier one, measured once:")
        out += [f"    {name} = {first}" for name, first in s.duplicates[:max_listed]]
    out.append(
        f"{s.run_dir}: {s.rows_total} rows ({s.rows_written} measured now, {s.rows_already_done} already done); "
        f"{s.n_failures} failure(s); engine {s.engine}, {s.device}; wall time {s.wall_s:.1f} s"
    )
    return "\n".join(out)
