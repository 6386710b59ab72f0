"""Mixed-precision training: the transforms in bfloat16, everything that is a probability in float32.

``train --precision bf16`` runs each *transform* of the model (g_a, g_s, h_a, h_s and the context
models: every direct child that is not an entropy model) under ``torch.autocast`` with bfloat16, on
the CPU (AMX / AVX-512-BF16 units) as on CUDA, and casts its output back to float32 at the child's
boundary. So the gain multiplication, the quantization noise, the entropy models' likelihoods (the
EntropyBottleneck's cumulative logits and quantiles, the GaussianConditional's erfc), the loss and
Adam's state stay float32, and the parameters themselves stay float32 (autocast casts copies per
op). Autocast around the whole forward would run the EntropyBottleneck's matmuls in bfloat16 and
hand bfloat16 scales to the Gaussian likelihood, which then loses ~3 significant digits of bpp.

Inference, bitstreams and every reported number stay float32: the precision is a training choice
only, recorded in the run's config (``precision``) and in the zoo's provenance. bench/README.md
(`bf16_train.py`) has the measured speed and quality against float32.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from compressai.entropy_models import EntropyModel
from torch import nn

PRECISIONS = ("fp32", "bf16")
DEFAULT = "fp32"


def transform_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The children that run under autocast: every direct child with parameters that is not an
    entropy model (CompressAI's EntropyBottleneck / GaussianConditional)."""
    return [(n, m) for n, m in model.named_children()
            if not isinstance(m, EntropyModel) and any(True for _ in m.parameters())]  # fmt: skip


def _to_float(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple):
        return tuple(_to_float(o) for o in out)
    if isinstance(out, list):
        return [_to_float(o) for o in out]
    return out


def _autocast_forward(forward, device_type: str):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return _to_float(out)

    return run


@contextlib.contextmanager
def transforms_in(model: nn.Module, precision: str, device: torch.device | str):
    """Within the block, ``model``'s transforms run in ``precision`` (module docstring).

    The wrapped forwards are instance attributes, removed on exit: the state dict, the class and
    the saved checkpoints are untouched (a bf16-trained model is an ordinary float32 model).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    if precision == "fp32":
        yield model
        return
    device_type = torch.device(device).type
    patched = []  # (child, the instance forward it had before, if any)
    try:
        for _, child in transform_children(model):
            patched.append((child, child.__dict__.get("forward")))
            child.forward = _autocast_forward(child.forward, device_type)
        yield model
    finally:
        for child, before in patched:
            if before is None:
                del child.forward  # back to the class's forward
            else:
                child.forward = before
