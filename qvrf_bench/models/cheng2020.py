"""Cheng et al. 2020 with attention (CompressAI ``cheng2020-attn``) with QVRF gains.

[QRAF] Cheng2020Attention.py is the reference; module names are CompressAI's (M = N), so both a
zoo cheng2020-attn state dict and the official QVRF checkpoint load key for key.
"""

from __future__ import annotations

from compressai.models import Cheng2020Attention

from qvrf_bench.models.archs import register_arch
from qvrf_bench.models.autoregressive import AutoregressiveMixin
from qvrf_bench.models.qvrf import GainMixin


# cheng2020-attn's zoo stops at quality 6; 7-8 reuse N=192.
def _is_cheng(sd):
    """Residual-block g_a (its first block's conv1); N = M."""
    w = sd.get("g_a.0.conv1.weight")
    return (int(w.shape[0]), int(w.shape[0])) if w is not None else None


@register_arch("cheng2020", zoo_name="cheng2020-attn", zoo_widths=[(128, 128)] * 3 + [(192, 192)] * 5,
               qvrf_widths=(192, 192), one_width=True, title="Cheng2020 (cheng2020-attn)",
               aliases=("cheng2020-anchor", "cheng"), matcher=_is_cheng)  # fmt: skip
class QVRFCheng2020Attention(AutoregressiveMixin, GainMixin, Cheng2020Attention):
    latent_family = "autoregressive"

    def __init__(self, N: int = 192, lmbdas=(0.18,), gains=None, learn_gains: bool = True):
        super().__init__(N=N)
        self.init_gains(lmbdas, gains, learn_gains)
