"""Real bitstreams: encode an image with a model into the container of container.py, and back.

The container (layout, versions, the checks every header passes before decoding) is
qvrf_bench/bitstream/container.py, re-exported here. bpp is always counted from bytes: ``bpp_real`` over the
whole file, ``payload_bpp_real`` over the entropy-coded strings alone (the header costs 49 bytes
with its two strings).

Decoding hostile files: the decoder uses the shapes it derives from the checked image size, never
the header's hyper-latent size. CompressAI's rANS decoder reads its string without bounds checks,
so a corrupt string is handed over with zero padding after it (models/latent.py, ``padded``): reading zeros, the
decoder takes at most one 32-bit word per symbol, plus escape chunks that only the real bytes can
ask for, so it never reads past its buffer. The encoder's symbols are checked before CompressAI's
coder sees them (models/qvrf.py, check_coder_input) and its gain against the supported range
(gains.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qvrf_bench import images
from qvrf_bench.bitstream.container import (  # noqa: F401  (re-exported: the format is part of the codec's API)
    ARCH_IDS,
    HEADER_SIZE,
    MAGIC,
    MAX_PIXELS,
    MIN_STRING,
    N_STRINGS,
    NO_LEVEL,
    PAD_MULTIPLE,
    READS,
    VERSION,
    WORD,
    Header,
    latent_shapes,
    pack,
    unpack,
)
from qvrf_bench.bitstream.gains import check_gain
from qvrf_bench.errors import BitstreamError, GainError
from qvrf_bench.models.registry import AUTOREGRESSIVE


def model_fingerprint(model: nn.Module, prefix: bytes = b"") -> str:
    """sha256 over ``prefix`` and the parameters (names, shapes, float32 bytes), in name order.

    Parameters only: the CDF buffers are derived from them by ``update()``, so a checkpoint and its
    updated twin share a fingerprint, while any change to a weight or a gain changes it.
    """
    h = hashlib.sha256(prefix)
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def symbol_order(header: Header) -> dict:
    """Keyword arguments telling an autoregressive model's decompress the y symbol order."""
    if header.arch not in AUTOREGRESSIVE:
        return {}
    return {"order": "raster" if header.version == 1 else "wavefront"}


@dataclass
class Encoded:
    data: bytes  # the whole container
    payload_bytes: int  # entropy-coded strings only
    gain: float  # float32 value actually used
    x_hat: torch.Tensor | None = None  # the encoder's own reconstruction (cropped, clamped), if asked
    y_hat: torch.Tensor | None = None  # the encoder's quantized latent (what the decoder must rebuild)


def _float32(v: float) -> float:
    return float(np.float32(v))


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_tensor(
    model: nn.Module,
    x: torch.Tensor,
    level: int | None = None,
    gain: float | None = None,
    fingerprint: str | None = None,
    with_reconstruction: bool = False,
    padding: str = "centred",
) -> Encoded:
    """Encode a (1, 3, H, W) float tensor in [0, 1]. ``gain`` wins over ``level``; ``padding``:
    images.PADDINGS (the header records it)."""
    if (level is None) == (gain is None):
        raise ValueError("give exactly one of level or gain")
    if gain is None:
        gain = check_gain(float(model.level_gain(level)), f"level {level}: gain")
    elif not (np.isfinite(gain) and gain > 0):
        raise GainError(f"gain must be a finite number > 0 (got {gain})")
    gain = check_gain(_float32(gain))  # the value the header carries is the value the encoder uses
    fingerprint = fingerprint or model_fingerprint(model)
    h, w = x.shape[-2:]
    padding = images.padding_for(h, w, PAD_MULTIPLE, padding)
    device = model_device(model)
    xp = images.pad(x.to(device), padding)
    g = torch.tensor(gain, dtype=torch.float32, device=device)
    out = model.compress(xp, g)
    strings = [s[0] for s in out["strings"]]
    header = Header(model.config.arch, level if level is not None else None, gain, bytes.fromhex(fingerprint),
                    h, w, padding, tuple(int(v) for v in out["shape"]), tuple(len(s) for s in strings))  # fmt: skip
    x_hat = None
    if with_reconstruction:
        x_hat = images.crop(model.g_s(out["y_hat"]).clamp_(0, 1), padding)
    return Encoded(pack(header, strings), sum(len(s) for s in strings), gain, x_hat, out["y_hat"])


def encode(model: nn.Module, rgb: np.ndarray, level: int | None = None, gain: float | None = None) -> bytes:
    """(H, W, 3) uint8 -> container bytes."""
    return encode_tensor(model, images.rgb8_to_tensor(rgb), level=level, gain=gain).data


def check_header(model: nn.Module, header: Header, name: str, fingerprint: str | None = None) -> None:
    if header.arch != model.config.arch:
        raise BitstreamError(f"{name}: made by a {header.arch} model, but the checkpoint is {model.config.arch}")
    fingerprint = fingerprint or model_fingerprint(model)
    if header.fingerprint != bytes.fromhex(fingerprint)[:8]:
        raise BitstreamError(
            f"{name}: made by checkpoint {header.fingerprint.hex()}, not by this one ({fingerprint[:16]}); "
            "decode it with the checkpoint that encoded it"
        )
    if header.level is not None:
        if header.level >= model.num_levels:
            raise BitstreamError(
                f"{name}: corrupt header: level {header.level} is not one of the checkpoint's levels 0..{model.num_levels - 1}"
            )
        expected = _float32(float(model.level_gain(header.level)))
        if header.gain != expected:  # the encoder writes the level's own float32 gain
            raise BitstreamError(
                f"{name}: corrupt header: gain {header.gain:.7g} is not level {header.level}'s gain ({expected:.7g})"
            )


@torch.no_grad()
def decode_tensor(model: nn.Module, data: bytes, name: str = "bitstream", fingerprint: str | None = None,
                  max_pixels: int = MAX_PIXELS):  # fmt: skip
    """Container bytes -> ((1, 3, H, W) float tensor in [0, 1], header)."""
    x_hat, _, header = decode_full(model, data, name, fingerprint, max_pixels)
    return x_hat, header


@torch.no_grad()
def decode_full(model: nn.Module, data: bytes, name: str = "bitstream", fingerprint: str | None = None,
                max_pixels: int = MAX_PIXELS):  # fmt: skip
    """Container bytes -> (image tensor, decoded quantized latent y_hat, header)."""
    header, strings = unpack(data, name, max_pixels)
    check_header(model, header, name, fingerprint)
    device = model_device(model)
    g = torch.tensor(header.gain, dtype=torch.float32, device=device)
    # Shapes derived here from the checked size, never taken from the header; the strings reach the
    # rANS decoder zero-padded (models/latent.py, under every model's decompress).
    _, z_shape = latent_shapes(header.height, header.width)
    try:
        out = model.decompress([[strings[0]], [strings[1]]], torch.Size(z_shape), g, **symbol_order(header))
    except Exception:  # the shapes are ours, so what fails is the payload
        raise BitstreamError(f"{name}: corrupt bitstream payload (its entropy-coded strings do not decode)") from None
    x_hat = images.crop(out["x_hat"], header.padding)
    if tuple(x_hat.shape[-2:]) != (header.height, header.width):  # cannot happen with checked shapes; never write it
        raise BitstreamError(f"{name}: decoded {x_hat.shape[-1]}x{x_hat.shape[-2]}, not {header.width}x{header.height}")
    return x_hat, out["y_hat"], header


def decode(model: nn.Module, data: bytes, name: str = "bitstream", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Container bytes -> (H, W, 3) uint8."""
    x_hat, _ = decode_tensor(model, data, name, max_pixels=max_pixels)
    return images.tensor_to_rgb8(x_hat)
