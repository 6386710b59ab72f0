"""Channel-wise gain vectors (after Cui et al., CVPR 2021), written only against qvrf-bench's method
contract (qvrf_bench/methods/base.py): nothing in qvrf_bench knows this file.

A Balle scale hyperprior whose latent y is quantized as round(y * g) / g with one gain per channel
and level (a matrix G of L x M, stored as log G), where QVRF has one scalar per level. Continuous
rates: t in [0, L-1] between levels s = floor(t) and s + 1 interpolates exponentially,
g = G_s^(1 - l) * G_(s+1)^l with l = t - s (Cui et al.'s rule). One choice differs from Cui et al.:
the decoder's inverse gain is 1 / g, not a second learned matrix, so the entropy model and the
y path are exactly QVRF's with a vector (qvrf_bench.models.latent codes [B, M] gains).
Side information: the level (255 between levels) and t as float32, 5 bytes.

Start from a qvrf-bench Balle checkpoint: from a QVRF model every channel starts at its level's gain
(the method starts exactly at QVRF's rate points), from a fixed-rate one at sqrt(lambda_s / lambda_0).
"""

from __future__ import annotations

import random
import struct

import torch
from torch import Tensor, nn

from qvrf_bench.errors import BitstreamError
from qvrf_bench.methods import Analysis, Method, Point, read_method_file
from qvrf_bench.models import LAMBDAS_8, create, latent
from qvrf_bench.models.qvrf import noise_like, scale_table

SIDE = struct.Struct(">Bf")


class _Net(nn.Module):
    def __init__(self, net: nn.Module, gains: Tensor):
        super().__init__()
        self.net, self.log_gain = net, nn.Parameter(gains.float().log())


class ChannelGain(Method):
    method_id, decode_check, batched, n_shared, trainable = "channel-gain", "latent", True, 1, True

    def __init__(self, net: nn.Module, gains: Tensor, lmbdas=LAMBDAS_8):
        self.module, self.net, self.lmbdas = _Net(net, gains), net, tuple(lmbdas)
        self.arch, self.name = "balle", f"balle-channel-gain{len(lmbdas)}-{net.config.N}x{net.config.M}"

    def rate_points(self) -> list[Point]:
        return [Point(f"level={s}", s, None, lm) for s, lm in enumerate(self.lmbdas)]

    def continuous_point(self, value: float) -> Point:
        t = float(torch.tensor(value, dtype=torch.float32))
        if not 0 <= t <= len(self.lmbdas) - 1:
            raise ValueError(f"t={t} is outside [0, {len(self.lmbdas) - 1}]")
        return Point(f"t={t:.4f}", None, t, None)

    knob_scale = "linear"  # t: a position between levels (for the rate search of sweep --target-bpp)

    def continuous_range(self) -> tuple[float, float]:
        return 0.0, float(len(self.lmbdas) - 1)

    def continuous_values(self) -> list[float]:
        return [i / 4 for i in range(4 * (len(self.lmbdas) - 1)) if i % 4]  # three between each pair of levels

    def side_info(self, point: Point) -> bytes:
        return SIDE.pack(255, point.value) if point.level is None else SIDE.pack(point.level, float(point.level))

    def point_from_side_info(self, data: bytes) -> Point:
        if len(data) != SIDE.size:
            raise BitstreamError(f"corrupt header: {len(data)} bytes of side information, not {SIDE.size}")
        level, t = SIDE.unpack(data)
        if level == 255:
            try:
                return self.continuous_point(t)
            except ValueError as exc:
                raise BitstreamError(f"corrupt header: {exc}") from None
        if level >= len(self.lmbdas) or t != level:
            raise BitstreamError(f"corrupt header: level {level} / t {t} is not one of this method's levels")
        return self.rate_points()[level]

    def gains(self, points: list[Point]) -> Tensor:
        """[B, M]: the level's row of G, or the exponential interpolation between two rows."""
        log_g, rows = self.module.log_gain, []
        for p in points:
            t = float(p.level) if p.level is not None else p.value
            s = min(int(t), len(self.lmbdas) - 2)
            rows.append((1 - (t - s)) * log_g[s] + (t - s) * log_g[s + 1])
        return torch.stack(rows).exp()

    def analyse(self, x: Tensor) -> Analysis:
        an = latent.analyse(self.net, x)
        return Analysis([an.z_string], an)

    def code(self, analysis: Analysis, points: list[Point]):
        an = analysis.state
        strings, y_hat = latent.code_latent(self.net, an.y, an.params, self.gains(points).detach())
        return [[s] for s in strings], [y_hat[i : i + 1] for i in range(len(points))]

    def decode_shared(self, shared: list[bytes], height: int, width: int):
        return latent.hyper_synthesis(self.net, shared[0], (height // 64, width // 64))

    def decode(self, state, strings, points: list[Point]) -> list[Tensor]:
        y_hat = latent.decode_latent(self.net, [s[0] for s in strings], state, self.gains(points).detach())
        return [y_hat[i : i + 1] for i in range(len(points))]

    def synthesise(self, rebuilt: Tensor) -> Tensor:
        return self.net.g_s(rebuilt)

    def prepare(self) -> None:
        top = float(self.module.log_gain.detach().exp().max())
        self.net.update(scale_table=scale_table(max(top, 1.0)), force=True)
        self.module.eval()

    def config(self) -> dict:
        return {"N": self.net.config.N, "M": self.net.config.M, "lmbdas": list(self.lmbdas)}

    def training_point(self, step: int, seed: int) -> Point:
        return self.rate_points()[random.Random(f"channel-gain:{seed}:{step}").randrange(len(self.lmbdas))]

    def training_forward(self, x: Tensor, point: Point) -> dict:
        net, g = self.net, self.gains([point]).reshape(1, -1, 1, 1)
        y = net.g_a(x)
        z_hat, z_lik = net.entropy_bottleneck(net.h_a(torch.abs(y)))
        _, y_lik = net.gaussian_conditional(y * g, net.h_s(z_hat) * g)
        q = y * g + noise_like(y) if self.module.training else torch.round(y * g)
        return {"x_hat": net.g_s(q / g.detach()), "likelihoods": {"y": y_lik, "z": z_lik}}


def make(checkpoint: str | None = None, device: str = "cpu") -> ChannelGain:
    """``--method examples.channel_gain:make=CKPT``: this method's own file, or a Balle checkpoint to start from."""
    from qvrf_bench.models.checkpoints import load_model

    if checkpoint is None:
        raise ValueError("channel-gain starts from a Balle checkpoint: give examples.channel_gain:make=CKPT")
    own = read_method_file(checkpoint, ChannelGain.method_id)
    if own is not None:
        c, sd = own["config"], own["state_dict"]
        net = create("balle", "fixed", N=c["N"], M=c["M"], lmbda=0.18)
        net.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("net.")})  # CompressAI resizes CDFs
        method = ChannelGain(net, sd["log_gain"].exp(), c["lmbdas"])
    else:
        src, _ = load_model(checkpoint, for_coding=False)
        if src.config.arch != "balle":
            raise ValueError(f"{checkpoint}: a {src.config.arch} model; channel-gain is built on balle")
        net = create("balle", "fixed", N=src.config.N, M=src.config.M, lmbda=0.18)
        net.load_state_dict({k: v for k, v in src.state_dict().items() if k != "gain"}, strict=False)
        per_level = src.gain.detach().abs() if src.config.kind == "qvrf" and src.num_levels == 8 else None
        if per_level is None:
            per_level = torch.tensor([(lm / LAMBDAS_8[0]) ** 0.5 for lm in LAMBDAS_8])
        method = ChannelGain(net, per_level[:, None].expand(-1, src.config.M).clone())
    method.module.to(device)
    method.prepare()
    return method
