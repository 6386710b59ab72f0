"""Real bitstreams: a small versioned container around CompressAI's entropy-coded strings.

Layout (big-endian), version 2::

    magic      4s   b"QVRF"
    version    B    2 (1 is read too)
    arch       B    index into models.ARCHS
    level      B    the discrete level, 255 for a continuous gain
    reserved   B    0
    gain       f    float32: the decoder needs no side information for any continuous rate
    fingerprint 8s  first 8 bytes of the checkpoint fingerprint (sha256 of the parameters)
    height, width   I I   the original image size
    padding    4H   left, right, top, bottom zero padding (centred, to a multiple of 64)
    z_h, z_w   H H  the hyper-latent size
    n          B    number of entropy-coded strings (2: y then z)
    lengths    n*I
    strings    the entropy-coded bytes

Versions differ only in the autoregressive models' (minnen, cheng2020) y string: version 2 holds
its symbols in wavefront order (models/autoregressive.py: the decoder computes a whole anti-diagonal
of latent positions per step, 141 steps instead of 1536 at Kodak size), version 1 in raster order
(CompressAI's order, one position per step). The symbols themselves, hence the decoded image, are
the same; the encoder writes version 2, the decoder reads both.

bpp is always counted from bytes: ``bpp_real`` over the whole file, ``payload_bpp_real`` over the
entropy-coded strings alone (the header costs 49 bytes with its two strings).

Padding (decision 9): centred zero padding to a multiple of 64, as CompressAI 1.2.8's eval_model
does ([QRAF] pads right/bottom); the amounts are in the header, so either would decode.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qvrf_bench import images
from qvrf_bench.errors import BitstreamError
from qvrf_bench.models.registry import ARCHS, AUTOREGRESSIVE

MAGIC = b"QVRF"
VERSION = 2
READS = (1, 2)
PAD_MULTIPLE = 64
_HEAD = struct.Struct(">4sBBBBf8sII4HHHB")
NO_LEVEL = 255


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the parameters (names, shapes, float32 bytes), in name order.

    Parameters only: the CDF buffers are derived from them by ``update()``, so a checkpoint and its
    updated twin share a fingerprint, while any change to a weight or a gain changes it.
    """
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class Header:
    arch: str
    level: int | None
    gain: float
    fingerprint: bytes
    height: int
    width: int
    padding: tuple[int, int, int, int]
    z_shape: tuple[int, int]
    lengths: tuple[int, ...]
    version: int = VERSION


def symbol_order(header: Header) -> dict:
    """Keyword arguments telling an autoregressive model's decompress the y symbol order."""
    if header.arch not in AUTOREGRESSIVE:
        return {}
    return {"order": "raster" if header.version == 1 else "wavefront"}


def pack(header: Header, strings: list[bytes]) -> bytes:
    """Header + strings -> container bytes (pure)."""
    if header.version not in READS:
        raise ValueError(f"cannot write format version {header.version}")
    if len(strings) > 255:
        raise ValueError("too many strings")
    level = NO_LEVEL if header.level is None else int(header.level)
    head = _HEAD.pack(
        MAGIC, header.version, ARCHS.index(header.arch), level, 0, float(header.gain), header.fingerprint[:8],
        header.height, header.width, *header.padding, *header.z_shape, len(strings),
    )  # fmt: skip
    lengths = struct.pack(f">{len(strings)}I", *(len(s) for s in strings))
    return head + lengths + b"".join(strings)


def unpack(data: bytes, name: str = "bitstream") -> tuple[Header, list[bytes]]:
    """Container bytes -> (header, strings), with a clear error for anything that is not ours."""
    if len(data) == 0:
        raise BitstreamError(f"{name}: empty file (0 bytes)")
    if len(data) < _HEAD.size or data[:4] != MAGIC:
        raise BitstreamError(f"{name}: not a qvrf-bench bitstream (bad magic number)")
    magic, version, arch_i, level, _, gain, fp, h, w, pl, pr, pt, pb, zh, zw, n = _HEAD.unpack_from(data)
    if version not in READS:
        raise BitstreamError(
            f"{name}: bitstream format version {version}, this qvrf-bench reads {', '.join(map(str, READS))}"
        )
    if arch_i >= len(ARCHS):
        raise BitstreamError(f"{name}: unknown architecture id {arch_i}")
    off = _HEAD.size
    if len(data) < off + 4 * n:
        raise BitstreamError(f"{name}: truncated bitstream (header cut short)")
    lengths = struct.unpack_from(f">{n}I", data, off)
    off += 4 * n
    if len(data) != off + sum(lengths):
        raise BitstreamError(
            f"{name}: truncated or corrupt bitstream ({len(data)} bytes, header says {off + sum(lengths)})"
        )
    strings = []
    for ln in lengths:
        strings.append(data[off : off + ln])
        off += ln
    header = Header(ARCHS[arch_i], None if level == NO_LEVEL else level, gain, fp, h, w,
                    (pl, pr, pt, pb), (zh, zw), tuple(lengths), version)  # fmt: skip
    return header, strings


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
) -> Encoded:
    """Encode a (1, 3, H, W) float tensor in [0, 1]. ``gain`` wins over ``level``."""
    if (level is None) == (gain is None):
        raise ValueError("give exactly one of level or gain")
    if gain is None:
        gain = float(model.level_gain(level))
    elif not (np.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a finite number > 0 (got {gain})")
    gain = _float32(gain)  # the value the header carries is the value the encoder uses
    fingerprint = fingerprint or model_fingerprint(model)
    h, w = x.shape[-2:]
    padding = images.centred_padding(h, w, PAD_MULTIPLE)
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


@torch.no_grad()
def decode_tensor(model: nn.Module, data: bytes, name: str = "bitstream", fingerprint: str | None = None):
    """Container bytes -> ((1, 3, H, W) float tensor in [0, 1], header)."""
    x_hat, _, header = decode_full(model, data, name, fingerprint)
    return x_hat, header


@torch.no_grad()
def decode_full(model: nn.Module, data: bytes, name: str = "bitstream", fingerprint: str | None = None):
    """Container bytes -> (image tensor, decoded quantized latent y_hat, header)."""
    header, strings = unpack(data, name)
    check_header(model, header, name, fingerprint)
    device = model_device(model)
    g = torch.tensor(header.gain, dtype=torch.float32, device=device)
    try:
        out = model.decompress([[s] for s in strings], torch.Size(header.z_shape), g, **symbol_order(header))
    except Exception as exc:  # a corrupt payload can make the rANS decoder or shapes fail
        raise BitstreamError(f"{name}: corrupt bitstream payload ({exc.__class__.__name__}: {exc})") from None
    return images.crop(out["x_hat"], header.padding), out["y_hat"], header


def decode(model: nn.Module, data: bytes, name: str = "bitstream") -> np.ndarray:
    """Container bytes -> (H, W, 3) uint8."""
    x_hat, _ = decode_tensor(model, data, name)
    return images.tensor_to_rgb8(x_hat)
