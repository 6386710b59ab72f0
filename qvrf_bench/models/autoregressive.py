"""The QVRF entropy path of the joint autoregressive models (mbt2018 and cheng2020-attn).

Follows [QRAF] Cheng2020Attention.py: the context model always works on the de-scaled y_hat (the
y domain), so it sees the same value range at every level; (mu, sigma) are predicted in the y
domain and the coded residual is (y - mu) * a under scale sigma * a. Symbols are
round((y - mu) * a) and the reconstruction is symbols / a + mu.

Every function here takes a gain of shape [] or [B], one gain per batch item: the same serial loop
then serves several rate points (or images) at once, which is what the fast sweep engine uses.

Wavefront. The 5x5 mask A context of position (h, w) lies in rows h-2..h-1 (columns w-2..w+2) and
at (h, w-2), (h, w-1), so every position with 3h + w = t depends only on positions with smaller t
(:func:`wavefront` derives the slope 3 from the mask). The encoder, which knows y, computes each
such anti-diagonal in one step: 141 steps instead of 1536 for a 512x768 image. The decoder can do
the same only if the string holds the symbols in that order, so codec format 2 does (a group's
symbols are read in one rANS call); format 1, CompressAI's raster order, still decodes, one position
per step. This needs the step to be row invariant (below): where the warm-up probe says it is not,
positions are computed one at a time (same numbers, the old speed).

Encoder and decoder run the *same* step function on the *same* buffer contents (zeros where a
position is not decoded yet), so the decoder reproduces the encoder bit for bit by construction
rather than by the coincidence of two code paths agreeing.

The step is batch invariant: the (scales, means) of one item do not depend on how many items share
the loop, nor on where the item sits in the batch, so a bitstream coded for 35 rate points at once
decodes with the one-image decoder. Measured on CPU (torch 2.14, MKL, oneDNN), neither a batched
convolution nor one batched matrix product is: oneDNN's 1x1 convolutions and MKL's sgemm pick
their kernel and summation order by batch size (B=1 goes to a GEMV); the non-oneDNN
convolution runs one GEMV per item but its result depends on the item's memory alignment (item
offsets of 1066 or 853 floats). So the step is defined on fixed tiles (:func:`tile_linear`):
every linear layer runs as ``F.linear`` on blocks of exactly ``TILE`` rows, zero-padded, with the
reduction width padded to a 64-byte multiple. One shape means one kernel, whatever the batch; an
item's row is computed the same way at any position in its tile (checked by
:func:`tile_invariance_ok`, by the fast engine at warm-up, and by the tests). The per-position
work is the context convolution on its causal taps only (12 of 25 for mask A) and the
entropy-parameter layers; the params half of the first entropy-parameter layer does not depend on
the context, so it is one 1x1 convolution per image (per item, never batched) before the loop.
These are CompressAI's operations in another summation order: means and scales can differ from
CompressAI's in the last bit, so a fixed model's bytes equal CompressAI's except where a value
lands within an ulp of a rounding or scale-table boundary (~1e-7 per symbol; the 64x64 checkpoint
tests see none). The tile costs the one-image coder nothing: a GEMM on 8 rows reads each weight
once, like a GEMV, and the step is faster than CompressAI's per-position convolutions.

Decoding reads each group's symbols of every stream in one call of bitstream/rans.py's decoder
(CompressAI's decode_stream arithmetic over arrays: the tables passed once, not converted from
Python lists on every call). Where it cannot be built, CompressAI's decoder runs, passed only the
CDF rows the group uses (renumbered); the symbols are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qvrf_bench.models.determinism import one_thread
from qvrf_bench.models.latent import TILE, batch_gain, encode_strings, stream_decoder
from qvrf_bench.models.qvrf import check_coder_input, noise_like, ste_round

KERNEL = 5  # context_prediction kernel size
PAD = (KERNEL - 1) // 2
ALIGN = 16  # float32 elements in 64 bytes: every row of every tile starts equally aligned
ORDERS = ("wavefront", "raster")  # the order of the y symbols in the string (codec format 2 / 1)
DEFAULT_ORDER = "wavefront"


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def tile_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.linear`` on consecutive blocks of ``TILE`` rows. ``x`` must already have a multiple of
    TILE rows and ``weight.shape[1]`` columns; every call then has the same shape, whatever the batch."""
    if x.shape[0] == TILE:
        return F.linear(x, weight, bias)
    return torch.cat([F.linear(x[i : i + TILE], weight, bias) for i in range(0, x.shape[0], TILE)])


def _pad_linear(weight: Tensor, bias: Tensor | None, rows: int, cols: int):
    """A 1x1 conv or linear weight zero-padded to [rows, cols] (padded outputs are exactly 0)."""
    w = weight.reshape(weight.shape[0], -1)
    w = F.pad(w, (0, cols - w.shape[1], 0, rows - w.shape[0]))
    b = None if bias is None else F.pad(bias, (0, rows - bias.shape[0]))
    return w, b


@dataclass
class StepWeights:
    """The step's weights, laid out for :func:`tile_linear` (built per call: they follow training)."""

    taps: Tensor  # flat indexes of the causal taps in the KERNEL x KERNEL window
    ctx: tuple  # (weight [2M_p, taps*M_p], bias)
    params: tuple  # the params half of entropy_parameters[0], as a 1x1 conv (weight, bias), padded out
    layers: list  # [(weight, bias, negative_slope or None)]: the ctx half of layer 0, then the rest
    out: int  # 2M: scales and means

    def in_width(self) -> int:
        return self.ctx[0].shape[1]


def tile_invariance_ok(model, batch: int = 2 * TILE + 3, seed: int = 0) -> bool:
    """Whether the step gives every row the same (scales, means) alone as among others, for this
    model's shapes, on this machine and device (one random probe; the kernels do not branch on
    data): items of a batch at one position (the fast engine's points), and several positions of
    one item (the wavefront encoder's diagonals)."""
    sw = model._step_weights()
    M = model.M
    dev = sw.ctx[0].device
    g = torch.Generator().manual_seed(seed)
    buf = torch.randn(batch, M, KERNEL, KERNEL + 2, generator=g).to(dev)
    params = torch.randn(1, sw.params[0].shape[1], 1, 3, generator=g).to(dev)
    at = torch.tensor([0], device=dev)
    with torch.no_grad():
        p0 = model._params_pre(sw, params)
        cases = [(buf, at, at), (buf[:3], torch.tensor([0, 0, 0], device=dev), torch.tensor([0, 1, 2], device=dev))]
        for b, hs, ws in cases:
            scales, means = model._step(sw, b, p0, hs, ws)  # [B, M, P]
            for i in range(b.shape[0]):
                for j in range(hs.numel()):
                    s1, m1 = model._step(sw, b[i : i + 1].clone(), p0, hs[j : j + 1], ws[j : j + 1])
                    if not (torch.equal(s1[0, :, 0], scales[i, :, j]) and torch.equal(m1[0, :, 0], means[i, :, j])):
                        return False
    return True


def wavefront(taps: Tensor, H: int, W: int) -> list[tuple[Tensor, Tensor]]:
    """The latent positions in groups that can be computed together: group t holds the (h, w)
    with k*h + w = t, where k is the smallest slope for which every causal tap (dh, dw) of the
    mask has k*dh + dw < 0 (k = 3 for CompressAI's 5x5 mask A). Every position's context then lies
    in earlier groups, so H*W serial steps become k*(H-1) + W (141 instead of 1536 at Kodak size).
    Returns (hs, ws) index tensors per group, in order."""
    offs = [(int(t) // KERNEL - PAD, int(t) % KERNEL - PAD) for t in taps]
    if any(dh > 0 or (dh == 0 and dw >= 0) for dh, dw in offs):
        raise NotImplementedError("the context mask must be causal in raster order")
    k = max([0] + [dw // -dh + 1 for dh, dw in offs if dh < 0])
    groups = []
    for t in range(k * (H - 1) + W):
        hs = [h for h in range(H) if 0 <= t - k * h < W]
        groups.append((torch.tensor(hs), torch.tensor([t - k * h for h in hs])))
    return groups


class AutoregressiveMixin:
    """forward / compress / decompress for QVRF models with a masked-conv context model."""

    def _step_weights(self) -> StepWeights:
        cp = self.context_prediction
        mask = cp.mask[0, 0].reshape(-1)
        if not torch.equal(cp.mask, mask.reshape(1, 1, KERNEL, KERNEL).expand_as(cp.mask)):
            raise NotImplementedError("the context mask must be the same for every channel pair")
        taps = torch.nonzero(mask).reshape(-1)
        M2 = cp.weight.shape[0]  # 2M
        M2p = _round_up(M2, ALIGN)
        w = cp.weight.flatten(2)[:, :, taps].flatten(1)  # masked taps only: the others are zeros
        ctx = _pad_linear(w, cp.bias, M2p, _round_up(w.shape[1], ALIGN))
        convs = list(self.entropy_parameters)
        first = convs[0]
        if not (isinstance(first, nn.Conv2d) and first.kernel_size == (1, 1) and first.in_channels == 2 * M2):
            raise NotImplementedError("entropy_parameters must start with a 1x1 conv on cat(params, ctx)")
        c1p = _round_up(first.out_channels, ALIGN)
        wp, bp = _pad_linear(first.weight[:, :M2], first.bias, c1p, M2)
        params = (wp.reshape(c1p, M2, 1, 1), bp)
        layers = [(*_pad_linear(first.weight[:, M2:], None, c1p, M2p), None)]
        cols = c1p
        for mod in convs[1:]:
            if isinstance(mod, nn.LeakyReLU):
                w_, b_, _ = layers[-1]
                layers[-1] = (w_, b_, mod.negative_slope)
            elif isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1):
                rows = _round_up(mod.out_channels, ALIGN)
                layers.append((*_pad_linear(mod.weight, mod.bias, rows, cols), None))
                cols = rows
            else:
                raise NotImplementedError(f"entropy_parameters layer {mod} is not a 1x1 conv or LeakyReLU")
        return StepWeights(taps.to(cp.weight.device), ctx, params, layers, M2)

    def _params_pre(self, sw: StepWeights, params: Tensor) -> Tensor:
        """params [Bp, 2M, H, W] -> the params half of entropy_parameters[0] (with its bias) as
        [Bp, H, W, C1_p]: one 1x1 conv per item on a fresh tensor, so batching never changes it."""
        w, b = sw.params
        pre = [F.conv2d(params[i : i + 1].clone(), w, b) for i in range(params.shape[0])]
        return torch.cat(pre).permute(0, 2, 3, 1).contiguous()

    def _step(self, sw: StepWeights, buf: Tensor, pre: Tensor, hs: Tensor, ws: Tensor):
        """Gaussian (scales, means) at the P latent positions (hs[j], ws[j]), each [B, M, P];
        ``pre`` from :meth:`_params_pre` with 1 or B items. Every (item, position) is one row of
        the tiles, computed alone (batch invariant)."""
        B, M = buf.shape[:2]
        P = hs.numel()
        rows = _round_up(B * P, TILE)
        # The taps straight from the flat buffer (one gather, no copy of the whole window); rows are
        # item-major, and each row is channel-major, tap-minor like the ctx weight.
        row = buf.shape[-1]
        offsets = ((sw.taps // KERNEL) * row + sw.taps % KERNEL)[None, :] + (hs * row + ws)[:, None]  # [P, T]
        x = buf.flatten(2)[:, :, offsets].transpose(1, 2).reshape(B * P, -1)
        x = F.pad(x, (0, sw.in_width() - x.shape[1], 0, rows - B * P))
        x = tile_linear(x, *sw.ctx)
        p = pre[:, hs, ws]  # [1 or B, P, C1_p]
        p = F.pad(p.expand(B, -1, -1).reshape(B * P, -1), (0, 0, 0, rows - B * P))
        for i, (weight, bias, slope) in enumerate(sw.layers):
            x = tile_linear(x, weight, bias)
            if i == 0:
                x = x + p
            if slope is not None:
                x = F.leaky_relu(x, slope)
        scales, means = x[: B * P, : sw.out].reshape(B, P, sw.out).transpose(1, 2).chunk(2, 1)
        return scales, means

    def _row_invariant(self, device) -> bool:
        """:func:`tile_invariance_ok` for this model on ``device``, probed once (it depends on the
        shapes and the kernels, not on the weights' values)."""
        cache = self.__dict__.setdefault("_row_invariance", {})
        key = str(device)
        if key not in cache:
            cache[key] = tile_invariance_ok(self)
        return cache[key]

    def _groups(self, sw: StepWeights, H: int, W: int, device, order: str) -> list[tuple[Tensor, Tensor]]:
        """The latent positions as (hs, ws) groups in ``order``: 'wavefront' diagonals or 'raster'
        singletons."""
        if order == "wavefront":
            groups = wavefront(sw.taps.cpu(), H, W)
        elif order == "raster":
            groups = [(torch.tensor([h]), torch.tensor([w])) for h in range(H) for w in range(W)]
        else:
            raise ValueError(f"unknown symbol order {order!r}; one of {', '.join(ORDERS)}")
        return [(hs.to(device), ws.to(device)) for hs, ws in groups]

    def _step_group(self, sw: StepWeights, buf: Tensor, pre: Tensor, hs: Tensor, ws: Tensor, together: bool):
        """:meth:`_step` on a group of positions: in one call where the step is row invariant
        (``together``), else position by position; the numbers are the same either way."""
        if together or hs.numel() == 1:
            return self._step(sw, buf, pre, hs, ws)
        parts = [self._step(sw, buf, pre, hs[j : j + 1], ws[j : j + 1]) for j in range(hs.numel())]
        return torch.cat([q[0] for q in parts], 2), torch.cat([q[1] for q in parts], 2)

    # --- training / evaluation forward ----------------------------------------------------------

    def forward(self, x: Tensor, level: int | None = 0, gain=None, quant: str | None = None) -> dict:
        quant, a, a_det, y, params, z_likelihoods = self.begin_forward(x, level, gain, quant)
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
            y_hat, y_likelihoods = self._serial_forward(y, params, a, a_det, rounder, self.serial_order)
        x_hat = self.g_s(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "gain": a}

    # The serial loop's order in training and evaluation: "wavefront" (whole anti-diagonals at once, as
    # the codec) or "raster" (one position per step, the loop of [QRAF] and CompressAI); the same
    # numbers either way (tests/models/test_autoregressive.py), the speed in bench/stage3_wavefront.py.
    serial_order = "wavefront"

    def _serial_forward(self, y: Tensor, params: Tensor, a: Tensor, a_det: Tensor, rounder, order="wavefront"):
        B, M, H, W = y.shape
        a = batch_gain(a, B).reshape(B, -1, 1)
        a_det = batch_gain(a_det, B).reshape(B, -1, 1)
        buf = y.new_zeros(B, M, H + 2 * PAD, W + 2 * PAD)
        likelihoods = y.new_zeros(B, M, H, W)
        sw = self._step_weights()
        pre = self._params_pre(sw, params)
        together = self._row_invariant(y.device)
        for hs, ws in self._groups(sw, H, W, y.device, order):
            scales, means = self._step_group(sw, buf, pre, hs, ws, together)  # [B, M, P]
            y_c = y[:, :, hs, ws]
            _, lik = self.gaussian_conditional((y_c - means) * a, scales * a)
            likelihoods[:, :, hs, ws] = lik
            # Means detached in the reconstruction, as [QRAF] (with STE the gradient w.r.t. mu
            # would cancel anyway).
            m = means.detach()
            buf[:, :, hs + PAD, ws + PAD] = rounder((y_c - m) * a) / a_det + m
        return buf[:, :, PAD : PAD + H, PAD : PAD + W], likelihoods

    # --- real bitstreams ------------------------------------------------------------------------

    # compress / decompress: CodingMixin's (models/qvrf.py), which code y through compress_latent /
    # decompress_latent below (models/latent.py); ``order=`` reaches them from there.

    @torch.no_grad()
    def compress_latent(
        self, y: Tensor, params: Tensor, gain: Tensor, order: str = DEFAULT_ORDER
    ) -> tuple[list[bytes], Tensor]:
        """Code y ([B, M, H, W]; may be an expanded view) with one gain per item; one string per
        item. ``params`` has B items or 1 shared by all. The encoder knows y, so it always computes
        by wavefront diagonals; ``order`` is only the order the symbols go into the string
        ('raster' is CompressAI's)."""
        with one_thread():  # the entropy parameters must not depend on the thread count (determinism.py)
            return self._compress_latent(y, params, gain, order)

    def _compress_latent(self, y: Tensor, params: Tensor, gain: Tensor, order: str) -> tuple[list[bytes], Tensor]:
        B, M, H, W = y.shape
        a = batch_gain(gain, B).reshape(B, -1, 1)
        gc = self.gaussian_conditional
        buf = y.new_zeros(B, M, H + 2 * PAD, W + 2 * PAD)
        sw = self._step_weights()
        pre = self._params_pre(sw, params)
        symbols = torch.zeros(B, H, W, M, dtype=torch.int32, device=y.device)
        rounded = torch.zeros(B, H, W, M, dtype=y.dtype, device=y.device)  # before int32: checked for the coder
        indexes = torch.zeros(B, H, W, M, dtype=torch.int32, device=y.device)
        together = self._row_invariant(y.device)
        groups = self._groups(sw, H, W, y.device, "wavefront")
        for hs, ws in groups:
            scales, means = self._step_group(sw, buf, pre, hs, ws, together)  # [B, M, P]
            sym = torch.round((y[:, :, hs, ws] - means) * a)
            buf[:, :, hs + PAD, ws + PAD] = sym / a + means
            rounded[:, hs, ws] = sym.transpose(1, 2)
            symbols[:, hs, ws] = sym.transpose(1, 2).to(torch.int32)
            indexes[:, hs, ws] = gc.build_indexes(scales * a).transpose(1, 2)
        # A symbol far outside its table is escape-coded, and rANS never ends past 2^28: refuse it.
        check_coder_input(rounded.reshape(B, -1), indexes.reshape(B, -1), gc._cdf_length, gc._offset)
        symbols, indexes = symbols.reshape(B, H * W, M), indexes.reshape(B, H * W, M)
        if order != "raster":
            stream = self._groups(sw, H, W, y.device, order)
            perm = torch.cat([hs * W + ws for hs, ws in stream])
            symbols, indexes = symbols[:, perm], indexes[:, perm]
        sym_all, idx_all = symbols.reshape(B, -1).cpu(), indexes.reshape(B, -1).cpu()  # position-major
        return encode_strings(gc, sym_all, idx_all), buf[:, :, PAD : PAD + H, PAD : PAD + W]

    @torch.no_grad()
    def decompress_latent(
        self, y_strings: list[bytes], params: Tensor, gain: Tensor, order: str = DEFAULT_ORDER
    ) -> Tensor:
        """Decode one string per item; ``params`` has one item per string or 1 shared by all. The
        decoder follows the string's ``order``: a wavefront group's symbols are read in one call."""
        with one_thread():  # as the encoder (determinism.py)
            return self._decompress_latent(y_strings, params, gain, order)

    def _decompress_latent(self, y_strings: list[bytes], params: Tensor, gain: Tensor, order: str) -> Tensor:
        B = len(y_strings)
        _, _, H, W = params.shape
        M = self.M
        a = batch_gain(gain, B).reshape(B, -1, 1)
        gc = self.gaussian_conditional
        streams = stream_decoder(gc, y_strings, M * H * W)
        buf = params.new_zeros(B, M, H + 2 * PAD, W + 2 * PAD)
        sw = self._step_weights()
        pre = self._params_pre(sw, params)
        together = self._row_invariant(params.device)
        for hs, ws in self._groups(sw, H, W, params.device, order):
            P = hs.numel()
            scales, means = self._step_group(sw, buf, pre, hs, ws, together)  # [B, M, P]
            idx = gc.build_indexes(scales * a).transpose(1, 2).reshape(B, P * M).cpu().numpy()
            sym = torch.from_numpy(streams(idx)).to(device=params.device, dtype=torch.float32)
            buf[:, :, hs + PAD, ws + PAD] = sym.reshape(B, P, M).transpose(1, 2) / a + means
        return buf[:, :, PAD : PAD + H, PAD : PAD + W]
