"""Complexity of a learned codec as papers report it: parameters and kMAC per pixel, encoder and decoder.

The counting rule (numbers from other tools differ by their rule, so it is stated in every output):

* **MACs** are torch's own count (``torch.utils.flop_counter.FlopCounterMode``, no extra dependency)
  of the real coding path: ``compress`` (encoder side: g_a, h_a, the hyper synthesis the encoder
  needs, the context model) and ``decompress`` (decoder side: h_s, the context model, g_s), at the
  highest rate level, divided by 2 (torch counts a multiply-add as 2 FLOPs). Counted: convolutions,
  transposed convolutions and matrix products, GDN included (CompressAI computes it as a 1x1
  convolution). Not counted: elementwise operations, rounding, and entropy coding (rANS runs outside
  torch).
* **Per pixel**: MACs / (H x W) of the input, not x 3. Counted on a 256 x 256 input: every layer is
  convolutional, so per-pixel counts do not depend on the size for sizes that are multiples of 64
  (the padding multiple); a sweep's images are padded to one.
* **Parameters**: all of the model (gains and entropy models included); the encoder side is every
  parameter but g_s's, the decoder side every parameter but g_a's and h_a's.
* The autoregressive models' decoder is counted as it runs here: the context model on the wavefront
  (models/autoregressive.py), which evaluates the masked convolution on each position's 5 x 5
  window; CompressAI's serial loop does the same per position.

Checked against an independent counter (ptflops, a test-only dependency) in tests/methods/test_complexity.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

COUNT_SIZE = (256, 256)
TOOL = "torch.utils.flop_counter"
RULE = ("MACs = torch FLOP count / 2 of conv, transposed conv and matmul on the real compress / decompress path "
        "at the top rate, per input pixel (H x W), on 256x256; elementwise ops and entropy coding not counted")  # fmt: skip


@dataclass(frozen=True)
class Complexity:
    """Parameters and kMAC/px of one model (the module docstring's rule)."""

    params: int
    params_encoder: int
    params_decoder: int
    enc_kmac_px: float
    dec_kmac_px: float
    size: tuple[int, int] = COUNT_SIZE
    tool: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = f"{self.size[1]}x{self.size[0]}"
        return d

    def text(self) -> str:
        return (f"{self.params / 1e6:.2f} M parameters (encoder {self.params_encoder / 1e6:.2f} M, decoder "
                f"{self.params_decoder / 1e6:.2f} M); {self.enc_kmac_px:.1f} kMAC/px to encode, {self.dec_kmac_px:.1f} "
                f"kMAC/px to decode ({self.tool}, {self.size[1]}x{self.size[0]} input)")  # fmt: skip


def _params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def count_model(model: nn.Module, size: tuple[int, int] = COUNT_SIZE) -> Complexity:
    """Count ``model`` (one of the suite's QVRF / fixed-rate models, prepared for coding) at its top gain."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = size
    device = next(model.parameters()).device
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    gain = model.level_gain(model.num_levels - 1).detach()
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            out = model.compress(x, gain)
        enc = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            model.decompress(out["strings"], out["shape"], gain)
        dec = fc.get_total_flops()
    total = _params(model)
    g_a, h_a, g_s = (getattr(model, n, None) for n in ("g_a", "h_a", "g_s"))
    return Complexity(
        params=total,
        params_encoder=total - _params(g_s),
        params_decoder=total - _params(g_a) - _params(h_a),
        enc_kmac_px=enc / 2 / (h * w) / 1e3,
        dec_kmac_px=dec / 2 / (h * w) / 1e3,
        size=(h, w),
        tool=f"{TOOL} (torch {torch.__version__.split('+')[0]})",
    )
