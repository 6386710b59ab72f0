"""Any fixed-rate CompressAI model (a ``CompressionModel`` with ``compress`` / ``decompress``) as a
method, with no code from its author: one rate point, no side information, every string per point
(nothing shared; the first is the model's latent size, two big-endian uint16, as CompressAI's
decompress needs it), the decode check ``"decodes"`` (CompressAI's decompress returns the image only,
and its forward is not the decoder for every model, so there is nothing exact to compare with).
"""

from __future__ import annotations

import struct

import torch
from torch import Tensor, nn

from qvrf_bench.errors import BitstreamError, CheckpointError
from qvrf_bench.methods.base import Analysis, Method, Point


class CompressAIFixed(Method):
    method_id = "compressai-fixed"
    decode_check = "decodes"
    batched = False
    n_shared = 0

    def __init__(self, model: nn.Module, name: str, arch: str = "", lmbda: float | None = None):
        self.model = self.module = model.eval()
        self.name, self.arch, self.lmbda = name, arch, lmbda
        self.kind = "fixed"

    def rate_points(self) -> list[Point]:
        return [Point("level=0", 0, None, self.lmbda)]

    def side_info(self, point: Point) -> bytes:
        return b""

    def point_from_side_info(self, data: bytes) -> Point:
        if data:
            raise BitstreamError(f"corrupt header: {len(data)} bytes of side information; this method writes none")
        return self.rate_points()[0]

    def analyse(self, x: Tensor) -> Analysis:
        return Analysis([], x)

    @torch.no_grad()
    def code(self, analysis: Analysis, points: list[Point]):
        out = self.model.compress(analysis.state)
        # CompressAI: one list per latent, one string per batch item, and the shape decompress needs.
        shape = struct.pack(">2H", *(int(v) for v in out["shape"]))
        return [[shape, *(s[0] for s in out["strings"])] for _ in points], [None for _ in points]

    def decode_shared(self, shared: list[bytes], height: int, width: int):
        return None

    @torch.no_grad()
    def decode(self, state, strings: list[list[bytes]], points: list[Point]) -> list[Tensor]:
        out = []
        for own in strings:
            if len(own) < 2 or len(own[0]) != 4:
                raise BitstreamError("corrupt bitstream: no latent size before the strings")
            shape = torch.Size(struct.unpack(">2H", own[0]))
            out.append(self.model.decompress([[s] for s in own[1:]], shape)["x_hat"])
        return out


def make(checkpoint: str | None = None, device: str = "cpu") -> CompressAIFixed:
    """``--method compressai-fixed=STATEDICT``: a CompressAI bmshj2018-hyperprior / mbt2018-mean /
    mbt2018 / cheng2020-attn state dict (a zoo file or your own), architecture read from its keys."""
    from compressai.models import (
        Cheng2020Attention,
        JointAutoregressiveHierarchicalPriors,
        MeanScaleHyperprior,
        ScaleHyperprior,
    )

    from qvrf_bench.models.checkpoints import foreign_state_dict, infer_arch, read_file

    if checkpoint is None:
        raise ValueError("compressai-fixed needs a state dict (compressai-fixed=PATH)")
    try:
        sd = foreign_state_dict(read_file(checkpoint))
        arch, n, m = infer_arch(sd)
    except ValueError as exc:
        raise CheckpointError(f"{checkpoint}: {exc}") from None
    cls = {"balle": ScaleHyperprior, "minnen-mean": MeanScaleHyperprior, "minnen": JointAutoregressiveHierarchicalPriors,
           "cheng2020": Cheng2020Attention}[arch]  # fmt: skip
    model = cls.from_state_dict(sd)
    if model.entropy_bottleneck._quantized_cdf.numel() == 0:
        model.update(force=True)
    from pathlib import Path

    return CompressAIFixed(model.to(device), f"compressai-{arch}-{Path(str(checkpoint)).stem}", arch)
