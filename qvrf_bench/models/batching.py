"""One image at many gains: the analysis once, the latent coding as a batch of gains.

The model's own ``compress``/``decompress`` split in two: :func:`analyse` is everything before the
gain (g_a, h_a, the z string, h_s), which QVRF never scales, and :func:`code_latent` /
:func:`decode_latent` code y for a batch of gains with the same operations the models use (the
tests check byte equality with them). The hyperprior models' latent coding is elementwise (an item
of the batch is computed exactly as alone); the autoregressive models use their own batch
invariant ``compress_latent``/``decompress_latent`` (models/autoregressive.py).

The entropy coder runs on the CPU: symbols and indexes move there in one transfer per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qvrf_bench.models.autoregressive import TILE, AutoregressiveMixin
from qvrf_bench.models.balle import QVRFScaleHyperprior
from qvrf_bench.models.minnen import QVRFMeanScaleHyperprior


@dataclass
class Analysis:
    y: Tensor  # [1, M, H, W], unscaled
    z_string: bytes
    z_shape: tuple[int, int]
    params: Tensor  # h_s(z_hat): scales (scale), scales|means (mean-scale), context params (autoregressive)


def family(model: nn.Module) -> str:
    if isinstance(model, AutoregressiveMixin):
        return "autoregressive"
    if isinstance(model, QVRFMeanScaleHyperprior):
        return "mean-scale"
    if isinstance(model, QVRFScaleHyperprior):
        return "scale"
    raise TypeError(f"no batched coder for {type(model).__name__}")


def rows_per_point(model: nn.Module) -> int:
    """The batch granularity that costs nothing extra (the AR step computes whole tiles)."""
    return TILE if family(model) == "autoregressive" else 1


@torch.no_grad()
def analyse(model: nn.Module, x: Tensor) -> Analysis:
    """The gain-independent half of ``model.compress`` on a padded (1, 3, H, W) image."""
    y = model.g_a(x)
    z = model.h_a(model.hyper_input(y))  # balle's h_a sees |y| (GainMixin.hyper_input)
    shape = z.size()[-2:]
    z_strings = model.entropy_bottleneck.compress(z)
    z_hat = model.entropy_bottleneck.decompress(z_strings, shape)
    return Analysis(y, z_strings[0], (int(shape[0]), int(shape[1])), model.h_s(z_hat))


@torch.no_grad()
def hyper_synthesis(model: nn.Module, z_string: bytes, z_shape: tuple[int, int]) -> Tensor:
    """The decoder's h_s(z_hat) from the z string (the first half of ``model.decompress``)."""
    z_hat = model.entropy_bottleneck.decompress([z_string], torch.Size(z_shape))
    return model.h_s(z_hat)


@torch.no_grad()
def code_latent(model: nn.Module, y: Tensor, params: Tensor, gains: Tensor) -> tuple[list[bytes], Tensor]:
    """y [1, M, H, W] at B gains -> (B y strings, the encoder's y_hat [B, M, H, W])."""
    fam = family(model)
    if fam == "autoregressive":
        return model.compress_latent(y.expand(gains.numel(), -1, -1, -1), params, gains)
    gc = model.gaussian_conditional
    a = gains.reshape(-1, 1, 1, 1)
    if fam == "scale":
        scales, means = params, None
        symbols = torch.round(y * a)
    else:
        scales, means = params.chunk(2, 1)
        symbols = torch.round((y - means) * a)
    indexes = gc.build_indexes(scales * a)
    strings = gc.compress(symbols.cpu(), indexes.cpu())
    y_hat = symbols / a if means is None else symbols / a + means
    return strings, y_hat


@torch.no_grad()
def decode_latent(model: nn.Module, y_strings: list[bytes], params: Tensor, gains: Tensor) -> Tensor:
    """B y strings at their B gains, with the decoder's shared ``params`` -> y_hat [B, M, H, W]."""
    fam = family(model)
    if fam == "autoregressive":
        return model.decompress_latent(y_strings, params, gains)
    gc = model.gaussian_conditional
    a = gains.reshape(-1, 1, 1, 1)
    scales, means = (params, None) if fam == "scale" else params.chunk(2, 1)
    indexes = gc.build_indexes(scales * a)
    symbols = gc.decompress(y_strings, indexes.cpu(), params.dtype).to(params.device)
    return symbols / a if means is None else symbols / a + means
