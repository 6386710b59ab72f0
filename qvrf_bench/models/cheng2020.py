"""Cheng et al. 2020 with attention (CompressAI ``cheng2020-attn``) with QVRF gains.

[QRAF] Cheng2020Attention.py is the reference; module names are CompressAI's, so both a zoo
cheng2020-attn state dict and the official QVRF checkpoint load key for key (M = N).

A latent width M other than N is this suite's extension (README "Decisions"): CompressAI's class has
one width, so its latent has as many channels as its transforms; a narrow model (the project's zoo)
then has too few latent channels to reach high rates. With M != N only the layers that touch the
latent change width (g_a's last conv and attention, g_s's first attention and residual block, h_a's
first conv, h_s's last conv, the context model and the entropy parameters, sized from M as in
CompressAI's mbt2018); every other layer and every module name stay CompressAI's.
"""

from __future__ import annotations

from compressai.layers import AttentionBlock, MaskedConv2d, ResidualBlock, conv3x3
from compressai.models import Cheng2020Attention
from torch import nn

from qvrf_bench.models.archs import register_arch
from qvrf_bench.models.autoregressive import AutoregressiveMixin
from qvrf_bench.models.qvrf import GainMixin


def _is_cheng(sd):
    """Residual-block g_a (its first block's conv1); M from g_a's last plain conv (index 7)."""
    w = sd.get("g_a.0.conv1.weight")
    if w is None:
        return None
    last = sd.get("g_a.7.weight")
    return int(w.shape[0]), int(last.shape[0]) if last is not None else int(w.shape[0])


# cheng2020-attn's zoo stops at quality 6; 7-8 reuse N=192.
@register_arch("cheng2020", zoo_name="cheng2020-attn", zoo_widths=[(128, 128)] * 3 + [(192, 192)] * 5,
               qvrf_widths=(192, 192), one_width=True, title="Cheng2020 (cheng2020-attn)",
               aliases=("cheng2020-anchor", "cheng"), matcher=_is_cheng)  # fmt: skip
class QVRFCheng2020Attention(AutoregressiveMixin, GainMixin, Cheng2020Attention):
    latent_family = "autoregressive"

    def __init__(self, N: int = 192, M: int | None = None, lmbdas=(0.18,), gains=None, learn_gains: bool = True):
        super().__init__(N=N)
        M = N if M is None else int(M)
        if M != N:
            self._widen_latent(N, M)
        self.init_gains(lmbdas, gains, learn_gains)

    def _widen_latent(self, N: int, M: int) -> None:
        self.M = M
        self.g_a[7], self.g_a[8] = conv3x3(N, M, stride=2), AttentionBlock(M)
        self.g_s[0], self.g_s[1] = AttentionBlock(M), ResidualBlock(M, N)
        self.h_a[0] = conv3x3(M, N)
        self.h_s[-1] = conv3x3(N * 3 // 2, M * 2)
        self.context_prediction = MaskedConv2d(M, 2 * M, kernel_size=5, padding=2, stride=1)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(M * 12 // 3, M * 10 // 3, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(M * 10 // 3, M * 8 // 3, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(M * 8 // 3, M * 6 // 3, 1),
        )
