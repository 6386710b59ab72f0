"""Balle et al. 2018 scale hyperprior (CompressAI ``bmshj2018-hyperprior``) with QVRF gains.

Transforms and module names are CompressAI's, so a zoo state dict loads key for key. [QRAF]
ScaleHyperprior.py is the reference: h_a sees |y| of the *unscaled* y, so z and its bits are the
same at every level; the scales from h_s are multiplied by a; no means.
"""

from __future__ import annotations

import torch
from compressai.models import ScaleHyperprior
from torch import Tensor

from qvrf_bench.models.qvrf import GainMixin, noise_like, ste_round


class QVRFScaleHyperprior(GainMixin, ScaleHyperprior):
    def __init__(self, N: int = 192, M: int = 320, lmbdas=(0.18,), gains=None, learn_gains: bool = True):
        super().__init__(N=N, M=M)
        self.init_gains(lmbdas, gains, learn_gains)

    def hyper_input(self, y: Tensor) -> Tensor:
        return torch.abs(y)

    def forward(self, x: Tensor, level: int | None = 0, gain=None, quant: str | None = None) -> dict:
        quant, a, a_det, y, scales, z_likelihoods = self.begin_forward(x, level, gain, quant)
        ya = y * a
        # Rate: CompressAI's GaussianConditional draws its own noise in training (separate draw).
        _, y_likelihoods = self.gaussian_conditional(ya, scales * a)
        if quant == "noise":
            y_hat = (ya + noise_like(ya)) / a_det
        elif quant == "ste":
            y_hat = ste_round(ya) / a_det
        else:
            y_hat = torch.round(ya) / a_det
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "gain": a}

    @torch.no_grad()
    def compress(self, x: Tensor, gain: Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(torch.abs(y))
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales = self.h_s(z_hat)
        a = gain.reshape(-1, 1, 1, 1)  # one gain, or one per batch item
        indexes = self.gaussian_conditional.build_indexes(scales * a)
        symbols = torch.round(y * a)
        y_strings = self.gaussian_conditional.compress(symbols, indexes)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:], "y_hat": symbols / a}

    @torch.no_grad()
    def decompress(self, strings: list, shape, gain: Tensor) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales = self.h_s(z_hat)
        a = gain.reshape(-1, 1, 1, 1)
        indexes = self.gaussian_conditional.build_indexes(scales * a)
        symbols = self.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)
        y_hat = symbols / a
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "y_hat": y_hat}
