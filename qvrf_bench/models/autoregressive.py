"""The QVRF entropy path of the joint autoregressive models (mbt2018 and cheng2020-attn).

Follows [QRAF] Cheng2020Attention.py: the context model always works on the de-scaled y_hat (the
y domain), so it sees the same value range at every level; (mu, sigma) are predicted in the y
domain and the coded residual is (y - mu) * a under scale sigma * a. Symbols are
round((y - mu) * a) and the reconstruction is symbols / a + mu.

Every function here takes a gain of shape [] or [B], one gain per batch item: the same serial loop
then serves several rate points (or images) at once, which is what the fast sweep engine uses.

Encoder and decoder run the *same* step function on the *same* buffer contents (zeros where a
position is not decoded yet, masked weights), so the decoder reproduces the encoder bit for bit
by construction rather than by the coincidence of two code paths agreeing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder
from torch import Tensor

from qvrf_bench.models.qvrf import noise_like, ste_round

KERNEL = 5  # context_prediction kernel size
PAD = (KERNEL - 1) // 2


def batch_gain(gain: Tensor, batch: int) -> Tensor:
    """A gain of shape [] or [B] as [B, 1, 1, 1]."""
    gain = gain.reshape(-1)
    if gain.numel() == 1:
        gain = gain.expand(batch)
    if gain.numel() != batch:
        raise ValueError(f"{gain.numel()} gains for a batch of {batch}")
    return gain.reshape(batch, 1, 1, 1)


class AutoregressiveMixin:
    """forward / compress / decompress for QVRF models with a masked-conv context model."""

    def _masked_weight(self) -> Tensor:
        return self.context_prediction.weight * self.context_prediction.mask

    def _step_params(self, buf: Tensor, params: Tensor, h: int, w: int, weight: Tensor):
        """Gaussian (scales, means) at latent position (h, w), each [B, M, 1, 1]."""
        crop = buf[:, :, h : h + KERNEL, w : w + KERNEL].clone()  # clone: buf is written later
        ctx = F.conv2d(crop, weight, bias=self.context_prediction.bias)
        gp = self.entropy_parameters(torch.cat((params[:, :, h : h + 1, w : w + 1], ctx), dim=1))
        scales, means = gp.chunk(2, 1)
        return scales, means

    # --- training / evaluation forward ----------------------------------------------------------

    def forward(self, x: Tensor, level: int | None = 0, gain=None, quant: str | None = None) -> dict:
        quant = self.resolve_quant(quant, self.training)
        a = self.resolve_gain(level, gain)
        a_det = a.detach()
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        params = self.h_s(self.z_for_synthesis(z, z_hat, quant))
        if quant == "noise":
            # [QRAF] noise path: y_tilde = (a*y + U(-.5,.5)) / a feeds both the context and g_s.
            y_hat = (y * a + noise_like(y)) / a_det
            ctx = self.context_prediction(y_hat)
            gp = self.entropy_parameters(torch.cat((params, ctx), dim=1))
            scales, means = gp.chunk(2, 1)
            _, y_likelihoods = self.gaussian_conditional((y - means) * a, scales * a)
        else:
            # Exact serial quantization (decision 4): what the codec does, position by position;
            # with quant="ste" gradients pass straight through the rounding ([QRAF] stage 3).
            rounder = ste_round if quant == "ste" else torch.round
            y_hat, y_likelihoods = self._serial_forward(y, params, a, a_det, rounder)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "gain": a}

    def _serial_forward(self, y: Tensor, params: Tensor, a: Tensor, a_det: Tensor, rounder):
        B, M, H, W = y.shape
        a = batch_gain(a, B)
        a_det = batch_gain(a_det, B)
        buf = y.new_zeros(B, M, H + 2 * PAD, W + 2 * PAD)
        likelihoods = y.new_zeros(B, M, H, W)
        weight = self._masked_weight()
        for h in range(H):
            for w in range(W):
                scales, means = self._step_params(buf, params, h, w, weight)
                y_c = y[:, :, h : h + 1, w : w + 1]
                _, lik = self.gaussian_conditional((y_c - means) * a, scales * a)
                likelihoods[:, :, h : h + 1, w : w + 1] = lik
                # Means detached in the reconstruction, as [QRAF] (with STE the gradient w.r.t. mu
                # would cancel anyway).
                m = means.detach()
                buf[:, :, h + PAD : h + PAD + 1, w + PAD : w + PAD + 1] = rounder((y_c - m) * a) / a_det + m
        return buf[:, :, PAD : PAD + H, PAD : PAD + W], likelihoods

    # --- real bitstreams ------------------------------------------------------------------------

    def _hyper_compress(self, x: Tensor):
        y = self.g_a(x)
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        return y, z, z_strings, self.h_s(z_hat)

    @torch.no_grad()
    def compress(self, x: Tensor, gain: Tensor) -> dict:
        y, z, z_strings, params = self._hyper_compress(x)
        y_strings, y_hat = self.compress_latent(y, params, gain)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:], "y_hat": y_hat}

    @torch.no_grad()
    def compress_latent(self, y: Tensor, params: Tensor, gain: Tensor) -> tuple[list[bytes], Tensor]:
        """Serially code y ([B, M, H, W]) with one gain per item; one string per item."""
        B, M, H, W = y.shape
        a = batch_gain(gain, B)
        gc = self.gaussian_conditional
        buf = y.new_zeros(B, M, H + 2 * PAD, W + 2 * PAD)
        weight = self._masked_weight()
        symbols, indexes = [], []
        for h in range(H):
            for w in range(W):
                scales, means = self._step_params(buf, params, h, w, weight)
                idx = gc.build_indexes(scales * a)
                sym = torch.round((y[:, :, h : h + 1, w : w + 1] - means) * a)
                buf[:, :, h + PAD : h + PAD + 1, w + PAD : w + PAD + 1] = sym / a + means
                symbols.append(sym.reshape(B, M))
                indexes.append(idx.reshape(B, M))
        sym_all = torch.stack(symbols, 1).to(torch.int32).cpu()  # [B, H*W, M]: position-major
        idx_all = torch.stack(indexes, 1).cpu()
        cdf, cdf_len, offsets = self._coder_tables()
        strings = []
        for i in range(B):
            enc = BufferedRansEncoder()
            enc.encode_with_indexes(
                sym_all[i].reshape(-1).tolist(), idx_all[i].reshape(-1).tolist(), cdf, cdf_len, offsets
            )
            strings.append(enc.flush())
        return strings, buf[:, :, PAD : PAD + H, PAD : PAD + W]

    def _coder_tables(self):
        gc = self.gaussian_conditional
        return gc.quantized_cdf.tolist(), gc.cdf_length.reshape(-1).tolist(), gc.offset.reshape(-1).tolist()

    @torch.no_grad()
    def decompress(self, strings: list, shape, gain: Tensor) -> dict:
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        params = self.h_s(z_hat)
        y_hat = self.decompress_latent(strings[0], params, gain)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "y_hat": y_hat}

    @torch.no_grad()
    def decompress_latent(self, y_strings: list[bytes], params: Tensor, gain: Tensor) -> Tensor:
        B = len(y_strings)
        _, _, H, W = params.shape
        M = self.M
        a = batch_gain(gain, B)
        gc = self.gaussian_conditional
        cdf, cdf_len, offsets = self._coder_tables()
        decoders = []
        for s in y_strings:
            d = RansDecoder()
            d.set_stream(s)
            decoders.append(d)
        buf = params.new_zeros(B, M, H + 2 * PAD, W + 2 * PAD)
        weight = self._masked_weight()
        for h in range(H):
            for w in range(W):
                scales, means = self._step_params(buf, params, h, w, weight)
                idx = gc.build_indexes(scales * a).reshape(B, M).cpu().tolist()
                rv = [decoders[i].decode_stream(idx[i], cdf, cdf_len, offsets) for i in range(B)]
                sym = torch.tensor(rv, dtype=torch.float32, device=params.device).reshape(B, M, 1, 1)
                buf[:, :, h + PAD : h + PAD + 1, w + PAD : w + PAD + 1] = sym / a + means
        return buf[:, :, PAD : PAD + H, PAD : PAD + W]
