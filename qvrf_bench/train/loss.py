"""The rate-distortion loss of [QRAF] train.py (RateDistortionLoss).

loss = lambda_s * 255^2 * MSE(x_hat, x) + bpp, where x is in [0, 1], x_hat is **not** clamped (the
decoder output is penalised for leaving [0, 1]) and bpp is the *estimated* rate: the sum over the
likelihood tensors of y and z of -log2 p, divided by B*H*W. The reported PSNR is taken on the
clamped reconstruction, which is what a decoder would output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def estimated_bpp(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    return sum(torch.log(lik).sum() for lik in likelihoods.values()) / (-math.log(2) * num_pixels)


def rate_distortion(out: dict, x: Tensor, lmbda: float) -> dict[str, Tensor]:
    """{"loss", "mse" (x 255^2), "bpp", "psnr"} for one forward output; ``loss`` carries gradients."""
    n, _, h, w = x.shape
    bpp = estimated_bpp(out["likelihoods"], n * h * w)
    mse = F.mse_loss(out["x_hat"], x)
    loss = lmbda * 255.0**2 * mse + bpp
    with torch.no_grad():
        mse_clamped = F.mse_loss(out["x_hat"].clamp(0, 1), x)
        psnr = -10.0 * torch.log10(mse_clamped.clamp_min(1e-10))
    return {"loss": loss, "mse": mse.detach() * 255.0**2, "bpp": bpp.detach(), "psnr": psnr}
