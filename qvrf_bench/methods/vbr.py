"""CompressAI's variable-rate models (``bmshj2018-hyperprior-vbr``, ``mbt2018-mean-vbr``,
``mbt2018-vbr``, from a local state dict) as a method: rate = quantization step (gain 1/step plus
CompressAI's quantization offset, inside the model), continuous; the sweep's points are eval_model's
default steps. The side information is the float32 step, 4 bytes. CompressAI's compress runs whole
per point (its z depends on the step when the model has the variable-rate z bottleneck), so nothing
is shared and nothing batched; its decompress returns the image only: the decode check is
``"decodes"``. The loading and the step handling are peers.py's (``--vbr``), which measures the same
model in its own container.
"""

from __future__ import annotations

import struct

import torch
from torch import Tensor

from qvrf_bench.errors import BitstreamError, QVRFError
from qvrf_bench.methods.base import Analysis, Method, Point
from qvrf_bench.peers import VBR_ARCHS, VBR_STAGE, CompressAIVbr

_SIDE = struct.Struct(">f")


class CompressAIVbrMethod(Method):
    method_id = "compressai-vbr"
    decode_check = "decodes"
    batched = False
    n_shared = 0

    def __init__(self, peer):
        self.peer, self.module = peer, peer.model
        self.arch, self.name = peer.arch, f"{peer.arch}-method"

    def rate_points(self) -> list[Point]:
        return [self.continuous_point(q) for q in self.peer.rate_points()]

    rate_falls_with_knob = True  # a quantization step

    def continuous_range(self) -> tuple[float, float]:
        steps = self.peer.rate_points()
        return min(steps), max(steps)

    def continuous_point(self, value: float) -> Point:
        q = self.peer._check_qstep(float(value))
        return Point(f"qstep={q:.4f}", None, q, None)

    def side_info(self, point: Point) -> bytes:
        return _SIDE.pack(point.value)

    def point_from_side_info(self, data: bytes) -> Point:
        if len(data) != _SIDE.size:
            raise BitstreamError(f"corrupt header: {len(data)} bytes of side information, not {_SIDE.size}")
        try:
            return self.continuous_point(_SIDE.unpack(data)[0])
        except QVRFError as exc:
            raise BitstreamError(f"corrupt header: {exc}") from None

    def analyse(self, x: Tensor) -> Analysis:
        return Analysis([], x)

    @torch.no_grad()
    def code(self, analysis: Analysis, points: list[Point]):

        out = []
        for p in points:
            res = self.module.compress(analysis.state, stage=VBR_STAGE, s=0, inputscale=self.peer._scale(p.value))
            out.append([s[0] for s in res["strings"]])
        return out, [None for _ in points]

    def decode_shared(self, shared: list[bytes], height: int, width: int):
        return (height // 64, width // 64)

    @torch.no_grad()
    def decode(self, state, strings: list[list[bytes]], points: list[Point]) -> list[Tensor]:

        out = []
        for own, p in zip(strings, points, strict=True):
            if len(own) != 2:
                raise BitstreamError(f"corrupt bitstream: {len(own)} strings, not 2 (y, z)")
            scale = self.peer._scale(p.value)
            res = self.module.decompress([[own[0]], [own[1]]], state, stage=VBR_STAGE, s=0, inputscale=scale)
            out.append(res["x_hat"])
        return out


def make(checkpoint: str | None = None, device: str = "cpu") -> CompressAIVbrMethod:
    """``--method compressai-vbr=ARCH:STATEDICT``, e.g. ``compressai-vbr=mbt2018-mean-vbr:vbr.pth.tar``."""

    arch, sep, path = (checkpoint or "").partition(":")
    if not sep or arch not in VBR_ARCHS:
        raise QVRFError(f"compressai-vbr needs ARCH:STATEDICT with ARCH one of {', '.join(VBR_ARCHS)}")
    return CompressAIVbrMethod(CompressAIVbr(arch, path, device=device))
