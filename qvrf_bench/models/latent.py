"""The y path, written once: the analysis once per image, the latent coded for a batch of gains.

This module is the models' public building block for coding (as CompressAI's latent codecs): the
functions below, the gain-broadcast helpers (:func:`batch_gain`, :func:`gain_batch`) and
:class:`CodingMixin`, every hyperprior model's ``compress`` / ``decompress``. It imports no model.

Every model's ``compress`` / ``decompress`` (GainMixin's, for the hyperprior models), the fast
engine, rate control and the method contract's QVRF method all code through these functions:
:func:`analyse` is everything before the gain (g_a, h_a, the z string, h_s), which QVRF never
scales, and :func:`code_latent` / :func:`decode_latent` code y for a batch of gains.

Each model class says which entropy model its y has (``latent_family``): ``"scale"`` (Balle: h_s
gives scales), ``"mean-scale"`` (h_s gives scales and means), ``"autoregressive"`` (h_s's output
and a masked-convolution context give both, position by position: models/autoregressive.py's batch
invariant ``compress_latent`` / ``decompress_latent``). The hyperprior latent coding is elementwise,
so an item of a batch is computed exactly as alone.

Gains are [B] (one scalar per item: QVRF) or [B, M] (one per channel: a channel-wise method). The
entropy coder runs on the CPU: symbols and indexes move there in one transfer per batch. y strings
are written by :func:`encode_strings` and read by :func:`stream_decoder` (CompressAI's bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from qvrf_bench.bitstream import rans

FAMILIES = ("scale", "mean-scale", "autoregressive")
TILE = 8  # rows per matrix product in the autoregressive step: one shape, one kernel, at any batch size
WORD = 4  # the rANS coder's word size (container.WORD)


def padded(string: bytes, symbols: int) -> bytes:
    """``string`` with zeros after it, so CompressAI's rANS decoder (which reads its buffer without
    bounds checks) stays inside it whatever a corrupt string says: from zeros it takes at most one
    32-bit word per symbol, and escape chunks read from the real bytes can ask for at most 30
    more 4-bit chunks per byte (two chunks of 15 per byte), 15 bytes at 8 chunks per word."""
    return string + bytes(WORD * symbols + 16 * len(string) + 1024)


@dataclass
class Analysis:
    y: Tensor  # [1, M, H, W], unscaled
    z_string: bytes
    z_shape: tuple[int, int]
    params: Tensor  # h_s(z_hat): scales (scale), scales|means (mean-scale), context params (autoregressive)


def family(model: nn.Module) -> str:
    fam = getattr(model, "latent_family", None)
    if fam not in FAMILIES:
        raise TypeError(f"no batched coder for {type(model).__name__} (latent_family {fam!r})")
    return fam


def rows_per_point(model: nn.Module) -> int:
    """The batch granularity that costs nothing extra (the AR step computes whole tiles)."""
    return TILE if family(model) == "autoregressive" else 1


def _scales_means(model: nn.Module, params: Tensor) -> tuple[Tensor, Tensor | None]:
    return (params, None) if family(model) == "scale" else params.chunk(2, 1)


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
    n_z = int(model.entropy_bottleneck.channels) * int(z_shape[0]) * int(z_shape[1])
    z_hat = model.entropy_bottleneck.decompress([padded(z_string, n_z)], torch.Size(z_shape))
    return model.h_s(z_hat)


@torch.no_grad()
def code_latent(model: nn.Module, y: Tensor, params: Tensor, gains: Tensor, **kw) -> tuple[list[bytes], Tensor]:
    """y [1, M, H, W] at B gains -> (B y strings, the encoder's y_hat [B, M, H, W]): the scaled
    residual round(a * (y - mu)) under scale sigma * a, rebuilt as symbols / a + mu (mu = 0 without
    means). ``kw``: the autoregressive models' symbol ``order``."""
    if family(model) == "autoregressive":
        return model.compress_latent(y.expand(gain_batch(gains), -1, -1, -1), params, gains, **kw)
    gc = model.gaussian_conditional
    a = batch_gain(gains, gain_batch(gains))
    scales, means = _scales_means(model, params)
    symbols = torch.round(y * a if means is None else (y - means) * a)
    indexes = gc.build_indexes(scales * a)
    B = symbols.shape[0]
    strings = encode_strings(gc, symbols.reshape(B, -1).cpu(), indexes.reshape(B, -1).cpu())
    y_hat = symbols / a if means is None else symbols / a + means
    return strings, y_hat


@torch.no_grad()
def decode_latent(model: nn.Module, y_strings: list[bytes], params: Tensor, gains: Tensor, **kw) -> Tensor:
    """B y strings at their B gains, with the decoder's shared ``params`` -> y_hat [B, M, H, W]."""
    if family(model) == "autoregressive":
        return model.decompress_latent(y_strings, params, gains, **kw)
    gc = model.gaussian_conditional
    a = batch_gain(gains, gain_batch(gains))
    scales, means = _scales_means(model, params)
    indexes = gc.build_indexes(scales * a)
    B = len(y_strings)
    decode = stream_decoder(gc, y_strings, indexes[0].numel())
    symbols = torch.from_numpy(decode(indexes.reshape(B, -1).cpu().numpy()))
    symbols = symbols.to(device=params.device, dtype=params.dtype).reshape(indexes.shape)
    return symbols / a if means is None else symbols / a + means


def encode_strings(gc, symbols: Tensor, indexes: Tensor) -> list[bytes]:
    """[B, n] symbols (integer-valued) under [B, n] CDF indexes of ``gc`` -> B strings: CompressAI's
    bytes, from bitstream/rans.py's encoder where it is built (the tables and the arrays passed
    once), else from CompressAI's ``RansEncoder`` (its ``EntropyModel.compress``). The caller has
    checked that the symbols are codable (models/qvrf.py ``check_coder_input``)."""
    if rans.backend() == "c":
        return rans.encode(symbols.numpy().astype(np.int32, copy=False), indexes.numpy(), *_coder_tables(gc))
    from compressai.ans import RansEncoder

    tables = [t.tolist() for t in _coder_tables(gc)]
    enc = RansEncoder()
    return [enc.encode_with_indexes(symbols[i].int().tolist(), indexes[i].int().tolist(), *tables)
            for i in range(symbols.shape[0])]  # fmt: skip


def _coder_tables(gc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``gc``'s rANS tables as arrays: quantized CDF rows [K, L], their lengths [K], offsets [K]."""
    return gc.quantized_cdf.cpu().numpy(), gc.cdf_length.reshape(-1).cpu().numpy(), gc.offset.reshape(-1).cpu().numpy()


def stream_decoder(gc, y_strings: list[bytes], symbols: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function from indexes ([B, n] int32: n more symbols of each string) to their symbols
    ([B, n] int32), the B strings advancing together; ``symbols`` is how many each string holds.
    bitstream/rans.py's decoder (all strings in one call, ``gc``'s tables passed once, zeros read
    past a string's end) where it is built, else CompressAI's, one call per string, on the string
    zero-padded (:func:`padded`) and passed only the CDF rows the call uses: pybind converts every
    row it is given on every call. The same arithmetic on the same bytes: the same symbols either
    way, for any bytes (a truncated or damaged string included)."""
    if rans.backend() == "c":
        return rans.StreamsDecoder(y_strings, *_coder_tables(gc)).decode
    from compressai.ans import RansDecoder

    cdf, cdf_len, offsets = (t.tolist() for t in _coder_tables(gc))
    decoders = []
    for s in y_strings:
        d = RansDecoder()
        d.set_stream(padded(s, symbols))
        decoders.append(d)

    def decode(idx: np.ndarray) -> np.ndarray:
        out = np.empty_like(idx, dtype=np.int32)
        for i, d in enumerate(decoders):
            rows, local = np.unique(idx[i], return_inverse=True)
            rows = rows.tolist()
            tables = [cdf[r] for r in rows], [cdf_len[r] for r in rows], [offsets[r] for r in rows]
            out[i] = d.decode_stream(local.reshape(-1).tolist(), *tables)
        return out

    return decode


def batch_gain(gain: Tensor, batch: int) -> Tensor:
    """Gains as [B, 1, 1, 1] or [B, C, 1, 1]: a scalar gain ([] or [B], QVRF) or one gain per channel
    ([C] for the whole batch or [B, C], channel-wise methods); 1/gain is the bin size either way."""
    if gain.dim() == 2:
        if gain.shape[0] == 1:
            gain = gain.expand(batch, -1)
        if gain.shape[0] != batch:
            raise ValueError(f"{gain.shape[0]} gain vectors for a batch of {batch}")
        return gain.reshape(batch, -1, 1, 1)
    gain = gain.reshape(-1)
    if gain.numel() == 1:
        gain = gain.expand(batch)
    if gain.numel() != batch:
        raise ValueError(f"{gain.numel()} gains for a batch of {batch}")
    return gain.reshape(batch, 1, 1, 1)


def gain_batch(gain: Tensor) -> int:
    """How many items a gain tensor describes: [] -> 1, [B] -> B, [B, C] -> B."""
    return 1 if gain.dim() == 0 else int(gain.shape[0])


class CodingMixin:
    """``compress`` / ``decompress`` of a QVRF model, written once for every entropy model: the
    analysis and the y path of models/py, which pads every string it decodes."""

    @torch.no_grad()
    def compress(self, x: Tensor, gain: Tensor, **kw) -> dict:
        """``kw``: the autoregressive models' symbol ``order``."""
        an = analyse(self, x)
        y_strings, y_hat = code_latent(self, an.y, an.params, gain, **kw)
        return {"strings": [y_strings, [an.z_string]], "shape": torch.Size(an.z_shape), "y_hat": y_hat}

    @torch.no_grad()
    def decompress(self, strings: list, shape, gain: Tensor, **kw) -> dict:
        params = hyper_synthesis(self, strings[1][0], tuple(shape))
        y_hat = decode_latent(self, strings[0], params, gain, **kw)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1), "y_hat": y_hat}
