"""Minnen et al. 2018 with QVRF gains: mean-scale hyperprior (``mbt2018-mean``) and the joint
autoregressive model (``mbt2018``).

Neither is released by [QRAF]. The joint model takes CompressAI's transforms and applies exactly
the Cheng2020 QVRF entropy path (models/autoregressive.py). The mean-scale model uses the
[STF-Q] pattern: coded residual (y - mu) * a under scale sigma * a.
"""

from __future__ import annotations

import torch
from compressai.models import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior
from torch import Tensor

from qvrf_bench.models.archs import g_a_widths, register_arch
from qvrf_bench.models.autoregressive import AutoregressiveMixin
from qvrf_bench.models.qvrf import GainMixin, noise_like, ste_round


def _is_mean_scale(sd):
    """A 4-conv g_a, no context model, h_s ending in 2M channels (means and scales)."""
    wm = g_a_widths(sd)
    if wm is None or "context_prediction.weight" in sd or "h_s.4.weight" not in sd:
        return None
    return wm if sd["h_s.4.weight"].shape[0] == 2 * wm[1] else None


def _is_joint(sd):
    """A 4-conv g_a and a context model."""
    wm = g_a_widths(sd)
    return wm if wm is not None and "context_prediction.weight" in sd else None


@register_arch(
    "minnen-mean",
    zoo_name="mbt2018-mean",
    zoo_widths=[(128, 192)] * 4 + [(192, 320)] * 4,
    qvrf_widths=(192, 320),
    title="Minnen mean-scale (mbt2018-mean)",
    matcher=_is_mean_scale,
)  # fmt: skip (QVRF widths: CompressAI's VBR port)
class QVRFMeanScaleHyperprior(GainMixin, MeanScaleHyperprior):
    latent_family = "mean-scale"  # compress / decompress: GainMixin's, through models/latent.py

    def __init__(self, N: int = 192, M: int = 320, lmbdas=(0.18,), gains=None, learn_gains: bool = True):
        super().__init__(N=N, M=M)
        self.init_gains(lmbdas, gains, learn_gains)

    def forward(self, x: Tensor, level: int | None = 0, gain=None, quant: str | None = None) -> dict:
        quant, a, a_det, y, params, z_likelihoods = self.begin_forward(x, level, gain, quant)
        scales, means = params.chunk(2, 1)
        _, y_likelihoods = self.gaussian_conditional((y - means) * a, scales * a)
        if quant == "noise":
            # Uncentred noise as [STF-Q]; distributionally the same as centring first.
            y_hat = (y * a + noise_like(y)) / a_det
        elif quant == "ste":
            m = means.detach()
            y_hat = ste_round((y - m) * a) / a_det + m
        else:
            # Centred rounding: exactly what the codec does (decision 3).
            y_hat = torch.round((y - means) * a) / a_det + means
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "gain": a}


@register_arch("minnen", zoo_name="mbt2018", zoo_widths=[(192, 192)] * 4 + [(192, 320)] * 4, qvrf_widths=(192, 320),
               title="Minnen joint autoregressive (mbt2018)", aliases=("joint",), matcher=_is_joint)  # fmt: skip
class QVRFJointAutoregressive(AutoregressiveMixin, GainMixin, JointAutoregressiveHierarchicalPriors):
    latent_family = "autoregressive"

    def __init__(self, N: int = 192, M: int = 320, lmbdas=(0.18,), gains=None, learn_gains: bool = True):
        super().__init__(N=N, M=M)
        self.init_gains(lmbdas, gains, learn_gains)
