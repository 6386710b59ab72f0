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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qvrf_bench import codec, images


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


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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
                                       t1 - t0, t2 - t1))  # fmt: skip
        return results


ENGINES = {"serial": SerialEngine}


def get_engine(name: str):
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}") from None
