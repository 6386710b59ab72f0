"""Balle et al. 2018 scale hyperprior (CompressAI ``bmshj2018-hyperprior``) with QVRF gains.

Transforms and module names are CompressAI's, so a zoo state dict loads key for key. [QRAF]
ScaleHyperprior.py is the reference: h_a sees |y| of the *unscaled* y, so z and its bits are the
same at every level; the scales from h_s are multiplied by a; no means.
"""

from __future__ import annotations

import torch
from compressai.models import ScaleHyperprior
from torch import Tensor

from qvrf_bench.models.archs import g_a_widths, register_arch
from qvrf_bench.models.qvrf import GainMixin, noise_like, ste_round


# Default widths (decision 6): fixed-rate models take CompressAI 1.2.8's zoo widths for the quality
# whose lambda they are trained at; QVRF models, which cover every rate with one network, the widest.
def _is_balle(sd):
    """A 4-conv g_a, no context model, and no h_s ending in 2M channels (scales only)."""
    wm = g_a_widths(sd)
    if wm is None or "context_prediction.weight" in sd:
        return None
    return None if "h_s.4.weight" in sd and sd["h_s.4.weight"].shape[0] == 2 * wm[1] else wm


@register_arch("balle", zoo_name="bmshj2018-hyperprior", zoo_widths=[(128, 192)] * 5 + [(192, 320)] * 3,
               qvrf_widths=(192, 320), title="Balle (bmshj2018-hyperprior)", aliases=("hyper",),
               matcher=_is_balle)  # fmt: skip
class QVRFScaleHyperprior(GainMixin, ScaleHyperprior):
    latent_family = "scale"  # compress / decompress: GainMixin's, through models/latent.py

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
