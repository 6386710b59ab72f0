"""How a sweep turns (model, image, rate points) into bitstreams and decoded images.

An engine is the "how fast" half of a sweep (sweep.py is the "what to measure" half). Every engine
returns, per rate point, the real container bytes (codec.py format), the decoded 8-bit image, the
decode check and the timings. Engines must agree byte for byte: :class:`SerialEngine` (one rate
point at a time through codec.encode_tensor / decode_full, the reference) is what every faster
engine is tested against.

Decode check: the decoder's quantized latent must equal the encoder's bit for bit. Equal latents
through the same synthesis on the same device give the same image, so this is the check
"decoded image equals the encoder's own reconstruction" without running g_s twice.

Timing: wall-clock seconds with CUDA synchronised; a warm-up encode/decode runs once per model
before anything is timed. An engine that codes several points at once reports each point's share
of the shared work (documented per engine).

:class:`FastEngine` (``fast``) gives the same bytes, images and decode checks as the serial engine
while doing per image only what depends on the rate. It is the method contract's shared-analysis
path (methods/engine.py ``run_points``) with the model wrapped as a QVRF method that writes this
codec's version-2 container (methods/qvrf.py), so one loop serves the suite's models and a user's:

- Shared per image (models/latent.py): g_a, h_a, the z string and h_s are computed once: QVRF
  never scales z, so the z string is the same at every rate point. That is checked, not assumed:
  at warm-up the model's own ``compress`` at two gains must give one z string, equal to the
  shared one, and every container of an image must carry the same z bytes. The decoder side
  decodes z once from the first container's bytes and runs h_s once.
- Batched over rate points (``max_batch`` points at a time, further bounded by
  ``max_batch_bytes`` of latent-sized tensors, which bounds the per-image peak memory): the
  symbols, indexes and y strings (elementwise for balle and minnen-mean; for minnen and cheng2020
  one loop over the latent positions' wavefront diagonals serving all points, encoder and decoder
  alike), the
  containers (``codec.pack`` with the Header the serial path writes), the y decoding.
- Per point, as the serial path: g_s on the decoded latent (a batch of one: batching the
  synthesis saves no compute on images of this size, and oneDNN's batched convolutions are not
  bitwise equal to batch one), crop, 8-bit conversion.

Batch invariance. Batching is only allowed where an item's numbers cannot depend on the batch:
elementwise operations (scaling, rounding, index building, dequantization), and the
autoregressive step, which models/autoregressive.py defines on fixed tiles of ``TILE`` rows with
64-byte aligned rows, for the one-image coder (``qvrf-bench encode/decode``) as for this engine.
Batched convolutions and plain batched matrix products are not batch invariant on CPU (measured:
oneDNN's 1x1 convolutions and MKL's sgemm change kernel with the batch size; the non-oneDNN
convolution depends on each item's memory alignment), so they are never used across points.
Warm-up checks each model on this machine: the tile invariance of the step
(``tile_invariance_ok``; if it fails the engine codes the autoregressive models one point at a
time, still sharing the analysis, and warns) and a probe image coded by both engines (any
difference raises).

Timing attribution: each point's ``enc_s`` is the shared analysis divided evenly among the
image's points plus its share (1/batch size) of its batch's latent coding and packing; ``dec_s``
is the shared z decoding and h_s divided evenly, plus its share of its batch's y decoding, plus
its own g_s and conversion. The sums over an image's points are the image's wall time. On CUDA,
tensors live on the model's device and every timer is synchronised.
"""

from __future__ import annotations

import time
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qvrf_bench import codec, images
from qvrf_bench.devices import synchronize
from qvrf_bench.models import latent
from qvrf_bench.models.autoregressive import tile_invariance_ok


@dataclass(frozen=True)
class RatePoint:
    """A discrete level (``level`` set, ``gain`` = |gain[level]|) or a continuous gain."""

    level: int | None
    gain: float | None

    @property
    def label(self) -> str:
        return f"level={self.level}" if self.level is not None else f"gain={self.gain:.4f}"


@dataclass
class PointResult:
    point: RatePoint
    data: bytes  # the whole container
    payload_bytes: int
    gain: float  # the float32 gain the bitstream carries
    rgb: np.ndarray  # decoded (H, W, 3) uint8
    decode_ok: bool
    enc_s: float
    dec_s: float
    y_hat: torch.Tensor | None = None  # the encoder's quantized latent (for crossdecode.py)


class SerialEngine:
    """One rate point at a time, the whole model each time: the reference path (as Inference.py)."""

    name = "serial"

    def __init__(self):
        self._warm: set[int] = set()

    def warm_up(self, model: nn.Module, fingerprint: str) -> None:
        if id(model) in self._warm:
            return
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        enc = codec.encode_tensor(model, x, level=0, fingerprint=fingerprint)
        codec.decode_full(model, enc.data, fingerprint=fingerprint)
        self._warm.add(id(model))

    def run_image(
        self, model: nn.Module, rgb: np.ndarray, points: list[RatePoint], fingerprint: str
    ) -> list[PointResult]:
        self.warm_up(model, fingerprint)
        device = codec.model_device(model)
        x = images.rgb8_to_tensor(rgb)
        results = []
        for pt in points:
            synchronize(device)
            t0 = time.perf_counter()
            enc = codec.encode_tensor(model, x, level=pt.level if pt.gain is None else None, gain=pt.gain,
                                      fingerprint=fingerprint)  # fmt: skip
            synchronize(device)
            t1 = time.perf_counter()
            x_dec, y_dec, _ = codec.decode_full(model, enc.data, fingerprint=fingerprint)
            synchronize(device)
            t2 = time.perf_counter()
            ok = bool(torch.equal(y_dec, enc.y_hat))
            results.append(PointResult(pt, enc.data, enc.payload_bytes, enc.gain, images.tensor_to_rgb8(x_dec), ok,
                                       t1 - t0, t2 - t1, enc.y_hat))  # fmt: skip
        return results


def resolve_point(model: nn.Module, pt: RatePoint) -> tuple[int | None, float]:
    """(header level, float32 gain) exactly as the serial engine's ``codec.encode_tensor`` call
    resolves them: a point with a gain is coded by gain (header level 255), else by its level."""
    if pt.gain is None:
        if pt.level is None:
            raise ValueError("give exactly one of level or gain")
        return pt.level, float(np.float32(float(model.level_gain(pt.level))))
    if not (np.isfinite(pt.gain) and pt.gain > 0):
        raise ValueError(f"gain must be a finite number > 0 (got {pt.gain})")
    return None, float(np.float32(pt.gain))


class FastEngine:
    """Per image: the analysis once, the rate points in batches (see the module docstring)."""

    name = "fast"

    def __init__(self, max_batch: int = 64, max_batch_bytes: int = 1 << 30, self_check: bool = True):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 (got {max_batch})")
        self.max_batch = int(max_batch)
        self.max_batch_bytes = int(max_batch_bytes)
        self.self_check = self_check
        # model -> most points per batch it allows, once warm and checked (weak: models come and go)
        self._limit: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def warm_up(self, model: nn.Module, fingerprint: str) -> None:
        if model in self._limit:
            return
        limit = self.max_batch
        if latent.family(model) == "autoregressive" and not tile_invariance_ok(model):
            warnings.warn(
                f"{model.config.arch}: the autoregressive step is not batch invariant on this machine; "
                "the fast engine codes one rate point at a time for this model",
                RuntimeWarning,
                stacklevel=2,
            )
            limit = 1
        self._limit[model] = limit
        if self.self_check:
            try:
                self._check_against_serial(model, fingerprint)
            except Exception:
                del self._limit[model]  # never skip the check next time
                raise

    @torch.no_grad()
    def _check_against_serial(self, model: nn.Module, fingerprint: str) -> None:
        """A probe image through both engines (also the warm-up): any difference is an error."""
        rgb = images.probe_image(40, 72)
        top = float(model.level_gain(model.num_levels - 1))
        points = [RatePoint(0, None), RatePoint(None, 0.37), RatePoint(None, top * 1.3)]
        points += [RatePoint(None, 0.5 + 0.7 * i) for i in range(latent.rows_per_point(model))]
        device = codec.model_device(model)
        xp = images.pad(images.rgb8_to_tensor(rgb).to(device), images.centred_padding(40, 72))
        an = latent.analyse(model, xp)
        for gain in (0.5, top):
            out = model.compress(xp, torch.tensor(gain, dtype=torch.float32, device=device))
            if out["strings"][1][0] != an.z_string:
                raise RuntimeError(
                    f"{model.config.arch}: the z string depends on the gain; the fast engine needs it not to"
                )
        fast = self._run(model, rgb, points, fingerprint)
        serial = SerialEngine().run_image(model, rgb, points, fingerprint)
        for f, s in zip(fast, serial, strict=True):
            if f.data != s.data or not np.array_equal(f.rgb, s.rgb) or f.decode_ok != s.decode_ok:
                raise RuntimeError(
                    f"{model.config.arch}: the fast engine disagrees with the serial engine at {f.point.label} "
                    "on this machine; use the serial engine"
                )

    def batch_size(self, model: nn.Module, y: torch.Tensor) -> int:
        # ~8 latent-sized float32 tensors live per point in a batch (y*a, symbols, indexes, y_hat,
        # the decoder's copies); the AR loop adds its padded buffers, of the same order.
        per_point = 8 * y[0].numel() * 4
        limit = self._limit.get(model, self.max_batch)
        return max(1, min(limit, self.max_batch_bytes // per_point))

    def run_image(
        self, model: nn.Module, rgb: np.ndarray, points: list[RatePoint], fingerprint: str
    ) -> list[PointResult]:
        self.warm_up(model, fingerprint)
        return self._run(model, rgb, points, fingerprint)

    @torch.no_grad()
    def _run(self, model: nn.Module, rgb: np.ndarray, points: list[RatePoint], fingerprint: str) -> list[PointResult]:
        """The method contract's shared-analysis path (methods/engine.py ``run_points``) with QVRF as
        a method writing this codec's version-2 container."""
        from qvrf_bench.methods.engine import run_points
        from qvrf_bench.methods.qvrf import QVRFMethod

        if not points:
            return []
        method = QVRFMethod(model, container=2)
        resolved = [resolve_point(model, pt) for pt in points]
        levels = method.rate_points()
        todo = [levels[lv] if lv is not None else method.continuous_point(g) for lv, g in resolved]
        res = run_points(method, rgb, todo, fingerprint, lambda an: self.batch_size(model, an.state.y))
        return [PointResult(pt, r.data, r.payload_bytes, g, r.rgb, r.decode_ok, r.enc_s, r.dec_s, r.rebuilt)
                for pt, (_, g), r in zip(points, resolved, res, strict=True)]  # fmt: skip


ENGINES = {"serial": SerialEngine, "fast": FastEngine}


def get_engine(name: str):
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}") from None
