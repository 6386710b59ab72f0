"""Peers to compare QVRF against, behind one small interface: classical codecs through Pillow and
CompressAI 1.2.8's own variable-rate (VBR) models.

Every peer turns 8-bit RGB into real bytes and back::

    peer = get_peer("webp")                       # or get_peer("mbt2018-mean-vbr", checkpoint=path)
    for rate in peer.rate_points():               # increasing bitrate
        data = peer.encode(rgb8, rate)            # bytes: bpp comes from len(data)
        rec = peer.decode(data)                   # (H, W, 3) uint8
        label = peer.rate_label(rate)             # the store's rate_point, e.g. "q=75"

Classical codecs (Pillow 13; libjpeg-turbo, libwebp, libavif with aom/dav1d, OpenJPEG). Chroma
choices, so that the anchors are the usual ones and the RGB-PSNR comparison is fair:

- ``jpeg``: Pillow defaults, as CompressAI's ``utils.bench`` (and its published jpeg.json) uses them:
  4:2:0 chroma subsampling at every quality, baseline, no Huffman optimisation.
- ``webp``: lossy libwebp, method 4 (Pillow's default); libwebp lossy is always 4:2:0.
- ``avif``: libaom at speed 6 (Pillow's default; speed 4 gains ~0.4 dB but takes 1-3 s a Kodak
  image, speed 6 ~0.3 s), 4:4:4 (beats 4:2:0 by 0.1-0.3 dB RGB-PSNR at equal rate on Kodak),
  full range, **one thread** (more threads change the bitstream: results must not depend on the
  machine's core count).
- ``jpeg2000``: OpenJPEG raw codestream (.j2k, no JP2 box), 9/7 irreversible wavelet with the
  irreversible colour transform (Pillow's defaults, 5/3 and no colour transform, lose 2-6 dB),
  one quality layer at a fixed compression ratio ("rates" mode: ratio r gives ~24/r bpp).

Default sweeps give ~0.1-2 bpp on Kodak (JPEG cannot go below ~0.17 bpp); see ``DEFAULT_SWEEPS``.

CompressAI VBR models (``bmshj2018-hyperprior-vbr``, ``mbt2018-mean-vbr``, ``mbt2018-vbr``;
Kamisli et al., DCC 2024): built with random init and loaded from a local state dict (no download).
The rate parameter is CompressAI's *quantization step* (eval_model's ``--vbr_quantstep``; the model
gain is 1/step), run at ``stage=2`` with quantization offsets, as eval_model does. Default steps are
eval_model's: 10.0, 7.1715, 5.1832, 3.7211, 2.6833, 1.9305, 1.3897, 1.0 (= 1 / the models' 8
initial gains). CompressAI's published Kodak VBR JSON has 16 points whose steps are not recorded.
"""

from __future__ import annotations

import abc
import hashlib
import io
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qvrf_bench.errors import BitstreamError, CheckpointError, QVRFError
from qvrf_bench.files import file_sha256
from qvrf_bench.images import centred_padding, crop, pad, rgb8_to_tensor, tensor_to_rgb8, to_rgb8

# --- the interface ------------------------------------------------------------------------------


class Peer(abc.ABC):
    """A codec with a scalar rate parameter. Subclasses set the class attributes."""

    name: str = ""  # registry name; the store's ``method``
    arch: str = ""  # the store's ``arch``
    kind: str = ""  # "classical" | "vbr"
    engine: str = ""  # the store's ``engine``
    checkpoint: str = ""  # the store's ``checkpoint``: '' for codecs without weights
    # The knob, declared (rate control, `encode --codec` and the sweep read these, never the name):
    knob: str = "quality"  # what the rate argument is, in words
    knob_range: tuple[float, float] = (0, 100)  # the useful range rate control searches
    knob_integer: bool = True  # an integer knob is bisected on integers; a continuous one like a gain
    rate_falls_with_knob: bool = False  # True: a larger knob gives fewer bits (a step, a ratio)
    suffix: str = ""  # the file name suffix of its bitstreams, e.g. ".jpg"

    @abc.abstractmethod
    def rate_points(self) -> list[float]:
        """The default sweep, in order of increasing bitrate."""

    @abc.abstractmethod
    def rate_label(self, rate: float) -> str:
        """The store's ``rate_point`` label for ``rate`` (unique within this peer)."""

    @abc.abstractmethod
    def rate_columns(self, rate: float) -> dict[str, Any]:
        """Store columns that describe the rate: ``quality``, ``gain``, ``level``, ``lmbda``."""

    @abc.abstractmethod
    def encode(self, rgb8: np.ndarray, rate: float) -> bytes:
        """(H, W, 3) uint8 -> the complete bitstream."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Bitstream -> (H, W, 3) uint8. Raises BitstreamError for data it cannot decode."""

    def payload_size(self, data: bytes) -> int:
        """Bytes of ``data`` that are entropy-coded payload (the store's ``payload_bytes``)."""
        return len(data)

    @property
    def checkpoint_sha256(self) -> str:
        return ""

    def row_fields(self, rate: float) -> dict[str, Any]:
        """The store columns that identify this peer and rate point (everything but the measurement)."""
        return {
            "method": self.name,
            "arch": self.arch,
            "kind": self.kind,
            "engine": self.engine,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "rate_point": self.rate_label(rate),
            "codec_version": self.codec_version,
            "decode_check": "decodes",  # a peer's decoder is checked by decoding to the right size, no more
            **self.rate_columns(rate),
        }

    @property
    def codec_version(self) -> str:
        """The store's ``codec_version``."""
        return ""

    def config(self) -> dict[str, Any]:
        """Settings that define this peer, for the run manifest."""
        return {"name": self.name}


def _check_rgb8(rgb8: np.ndarray) -> np.ndarray:
    if not isinstance(rgb8, np.ndarray) or rgb8.dtype != np.uint8 or rgb8.ndim != 3 or rgb8.shape[2] != 3:
        desc = f"{getattr(rgb8, 'dtype', type(rgb8).__name__)} {getattr(rgb8, 'shape', '')}"
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {desc}")
    if rgb8.shape[0] == 0 or rgb8.shape[1] == 0:
        raise ValueError(f"empty image {rgb8.shape}")
    return np.ascontiguousarray(rgb8)


def _fmt(value: float) -> str:
    """Short label number: 75 -> '75', 0.5 -> '0.5'."""
    return f"{value:g}"


# --- classical codecs (Pillow) ------------------------------------------------------------------


def _pil_feature_version(feature: str) -> str:
    from PIL import features

    try:
        return features.version(feature) or ""
    except ValueError:  # pragma: no cover - unknown feature name in another Pillow
        return ""


class PillowCodec(Peer):
    """A Pillow image format with an integer quality knob."""

    kind = "classical"
    engine = "pillow"
    pil_format: str = ""
    feature: str = ""  # PIL.features name of the library, for codec_version
    library: str = ""
    label_prefix = "q"
    default_sweep: tuple[float, ...] = ()

    def __init__(self, sweep: Sequence[float] | None = None):
        self.sweep = [float(q) for q in (sweep if sweep is not None else self.default_sweep)]
        for q in self.sweep:
            self._check_rate(q)

    def rate_points(self) -> list[float]:
        return list(self.sweep)

    def rate_label(self, rate: float) -> str:
        return f"{self.label_prefix}={_fmt(rate)}"

    def rate_columns(self, rate: float) -> dict[str, Any]:
        return {"quality": float(rate), "gain": None, "level": None, "lmbda": None}

    def _check_rate(self, rate: float) -> int:
        if not (math.isfinite(rate) and float(rate).is_integer() and 0 <= rate <= 100):
            raise QVRFError(f"{self.name}: quality must be an integer 0..100, got {rate!r}")
        return int(rate)

    def save_options(self, rate: float, height: int, width: int) -> dict[str, Any]:
        return {"quality": self._check_rate(rate)}

    def encode(self, rgb8: np.ndarray, rate: float) -> bytes:
        from PIL import Image

        rgb8 = _check_rgb8(rgb8)
        buf = io.BytesIO()
        Image.fromarray(rgb8, mode="RGB").save(buf, format=self.pil_format, **self.save_options(rate, *rgb8.shape[:2]))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data), formats=[self.pil_format]) as img:
                img.load()
                rgb, _ = to_rgb8(img)
        except Exception as exc:  # Pillow raises many types for bad data
            raise BitstreamError(f"{self.name}: cannot decode a {len(data)}-byte bitstream ({exc})") from None
        return rgb

    @property
    def codec_version(self) -> str:
        from PIL import __version__ as pil_version

        lib = _pil_feature_version(self.feature)
        return f"Pillow {pil_version}, {self.library} {lib}".strip()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sweep": self.rate_points(), "options": self.options()}

    def options(self) -> dict[str, Any]:
        return {}


CLASSICAL: dict[str, type[Peer]] = {}  # the classical codecs, by name: filled by @register_codec


def register_codec(cls: type[Peer]) -> type[Peer]:
    """Class decorator: a classical codec becomes a peer by name (``sweep --peers``, ``encode --codec``,
    rate control). Its class attributes say everything the suite needs (Peer's knob fields)."""
    if not cls.name or cls.name in CLASSICAL and CLASSICAL[cls.name] is not cls:
        raise ValueError(f"codec {cls.name!r}: no name, or the name is taken")
    cls.kind = "classical"
    CLASSICAL[cls.name] = cls
    return cls


@register_codec
class JpegCodec(PillowCodec):
    name = arch = "jpeg"
    pil_format = "JPEG"
    suffix = ".jpg"
    knob_range = (1, 95)  # libjpeg's own advice: above 95 the file grows with no gain
    feature, library = "jpg", "libjpeg-turbo"
    # ~0.22-2.2 bpp on Kodak; quality < 5 saturates at ~0.17 bpp
    default_sweep = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)

    def __init__(self, sweep=None, subsampling: str = "4:2:0", optimize: bool = False):
        super().__init__(sweep)
        if subsampling not in ("4:4:4", "4:2:2", "4:2:0"):
            raise QVRFError(f"jpeg: subsampling must be 4:4:4, 4:2:2 or 4:2:0, got {subsampling!r}")
        self.subsampling, self.optimize = subsampling, bool(optimize)

    def save_options(self, rate, height, width):
        return {"quality": self._check_rate(rate), "subsampling": self.subsampling, "optimize": self.optimize}

    def options(self):
        return {"subsampling": self.subsampling, "optimize": self.optimize}


@register_codec
class WebpCodec(PillowCodec):
    name = arch = "webp"
    pil_format = "WEBP"
    suffix = ".webp"
    feature, library = "webp", "libwebp"
    default_sweep = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90)  # ~0.11-1.8 bpp on Kodak

    def __init__(self, sweep=None, method: int = 4):
        super().__init__(sweep)
        if method not in range(7):
            raise QVRFError(f"webp: method must be 0..6, got {method!r}")
        self.method = int(method)

    def save_options(self, rate, height, width):
        return {"quality": self._check_rate(rate), "lossless": False, "method": self.method}

    def options(self):
        return {"method": self.method, "lossless": False}


@register_codec
class AvifCodec(PillowCodec):
    name = arch = "avif"
    pil_format = "AVIF"
    suffix = ".avif"
    feature, library = "avif", "libavif"
    default_sweep = (8, 15, 25, 35, 45, 55, 65, 75, 85)  # ~0.1-1.9 bpp on Kodak

    def __init__(self, sweep=None, speed: int = 6, subsampling: str = "4:4:4", max_threads: int = 1):
        super().__init__(sweep)
        if speed not in range(11):
            raise QVRFError(f"avif: speed must be 0..10, got {speed!r}")
        if subsampling not in ("4:4:4", "4:2:2", "4:2:0"):
            raise QVRFError(f"avif: subsampling must be 4:4:4, 4:2:2 or 4:2:0, got {subsampling!r}")
        self.speed, self.subsampling, self.max_threads = int(speed), subsampling, int(max_threads)

    def save_options(self, rate, height, width):
        return {
            "quality": self._check_rate(rate),
            "speed": self.speed,
            "subsampling": self.subsampling,
            "max_threads": self.max_threads,
            "range": "full",
        }

    def options(self):
        return {"speed": self.speed, "subsampling": self.subsampling, "max_threads": self.max_threads}

    @property
    def codec_version(self) -> str:
        from PIL import __version__ as pil_version

        try:
            from PIL import _avif

            codecs = _avif.codec_versions()
        except Exception:  # pragma: no cover
            codecs = ""
        return f"Pillow {pil_version}, libavif {_pil_feature_version('avif')} ({codecs})"


@register_codec
class Jpeg2000Codec(PillowCodec):
    """The rate parameter is OpenJPEG's compression ratio (raw 24 bpp / ratio = target bpp)."""

    name = arch = "jpeg2000"
    pil_format = "JPEG2000"
    suffix = ".j2k"
    knob, knob_integer, rate_falls_with_knob = "compression ratio", False, True
    knob_range = (1, 2400)  # ratio 1 = raw 24 bpp; 2400 = 0.01 bpp
    feature, library = "jpg_2000", "OpenJPEG"
    label_prefix = "ratio"
    default_sweep = (240, 160, 120, 96, 64, 48, 32, 24, 16, 12)  # 0.1-2 bpp: 24 / ratio

    def __init__(self, sweep=None, irreversible: bool = True, mct: bool = True):
        super().__init__(sweep)
        self.irreversible, self.mct = bool(irreversible), bool(mct)

    def _check_rate(self, rate: float) -> float:
        if not (math.isfinite(rate) and rate >= 1):
            raise QVRFError(f"jpeg2000: compression ratio must be >= 1, got {rate!r}")
        return float(rate)

    def rate_columns(self, rate):
        return {"quality": float(rate), "gain": None, "level": None, "lmbda": None}

    def save_options(self, rate, height, width):
        # OpenJPEG needs every resolution level to keep >= 1 pixel: fewer levels for tiny images
        levels = max(1, min(6, int(math.log2(min(height, width))) + 1))
        return {
            "quality_mode": "rates",
            "quality_layers": [self._check_rate(rate)],
            "irreversible": self.irreversible,
            "mct": 1 if self.mct else 0,
            "num_resolutions": levels,
            "no_jp2": True,
        }

    def options(self):
        return {"irreversible": self.irreversible, "mct": self.mct, "quality_mode": "rates", "container": "j2k"}


# --- CompressAI VBR models ----------------------------------------------------------------------

VBR_ARCHS = ("bmshj2018-hyperprior-vbr", "mbt2018-mean-vbr", "mbt2018-vbr")
#: compressai.utils.eval_model's default --vbr_quantstep (= 1 / the models' initial Gain), low to high rate
DEFAULT_VBR_QSTEPS = (10.0, 7.1715, 5.1832, 3.7211, 2.6833, 1.9305, 1.3897, 1.0)
VBR_STAGE = 2  # eval_model's default --vbr_tr_stage: the variable-rate code path
PAD_MULTIPLE = 64  # 6 stride-2 layers from x to z

CVBR_MAGIC = b"CVBR"
CVBR_VERSION = 1
# magic, version, arch id, stage, flags, qstep (f32), height, width, pad l/r/t/b, fingerprint,
# y length, z length -- all big-endian; then the y string and the z string.
_CVBR_HEADER = struct.Struct(">4sBBBBfIIBBBB4sII")
CVBR_HEADER_SIZE = _CVBR_HEADER.size  # 36 bytes
_FLAG_VR_Z = 1  # the model codes z with a variable-rate entropy bottleneck


def vbr_container_pack(
    arch_id: int, stage: int, flags: int, qstep: float, height: int, width: int,
    padding: tuple[int, int, int, int], fingerprint: bytes, y: bytes, z: bytes,
) -> bytes:  # fmt: skip
    """Pure: the CVBR container's bytes."""
    head = _CVBR_HEADER.pack(
        CVBR_MAGIC, CVBR_VERSION, arch_id, stage, flags, qstep, height, width, *padding, fingerprint[:4],
        len(y), len(z),
    )  # fmt: skip
    return head + y + z


def vbr_container_unpack(data: bytes) -> dict[str, Any]:
    """Pure: parse a CVBR container. Raises BitstreamError for anything else."""
    if len(data) < _CVBR_HEADER.size or data[:4] != CVBR_MAGIC:
        raise BitstreamError(f"not a CompressAI VBR bitstream (no {CVBR_MAGIC!r} header)")
    fields = _CVBR_HEADER.unpack_from(data)
    (_, version, arch_id, stage, flags, qstep, height, width, pl, pr, pt, pb, fp, ny, nz) = fields
    if version != CVBR_VERSION:
        raise BitstreamError(f"CVBR container version {version} is not supported (this reader: {CVBR_VERSION})")
    if arch_id >= len(VBR_ARCHS):
        raise BitstreamError(f"CVBR container names an unknown architecture id {arch_id}")
    body = data[_CVBR_HEADER.size :]
    if len(body) != ny + nz:
        raise BitstreamError(f"truncated or padded CVBR bitstream: {len(body)} payload bytes, header says {ny + nz}")
    return {
        "arch": VBR_ARCHS[arch_id], "stage": stage, "flags": flags, "qstep": qstep, "height": height,
        "width": width, "padding": (pl, pr, pt, pb), "fingerprint": fp, "y": body[:ny], "z": body[ny:],
    }  # fmt: skip


def _f32(x: float) -> float:
    """Round to float32, as the container stores it: encoder and decoder then use the same step."""
    return struct.unpack(">f", struct.pack(">f", x))[0]


def load_state_dict_file(path: str | Path) -> dict:
    """A local checkpoint's state dict: ``torch.load(weights_only=True)``, unwrapped from
    {"network"|"state_dict"|"model_state_dict": ...} like eval_model, "module." stripped and old key
    names renamed by ``compressai.zoo.load_state_dict``."""
    import torch
    from compressai.zoo import load_state_dict

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # the checkpoint loader's words: torch's own advise turning the safety off
        from qvrf_bench.models.checkpoints import load_failure

        raise CheckpointError(f"{path}: {load_failure(path, exc)}") from None
    if isinstance(obj, Mapping):
        for key in ("network", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: no state dict inside (expected a dict of tensors)")
    from qvrf_bench.models.checkpoints import not_named_tensors

    bad = not_named_tensors(obj)
    if bad:
        raise CheckpointError(f"{path}: not a state dict ({len(bad)} entries are not named tensors, e.g. {bad[0]!r})")
    return load_state_dict(dict(obj))


def build_vbr_model(arch: str, state_dict: Mapping, source: str = "state dict"):
    """A CompressAI VBR model (random init, then ``state_dict`` loaded), in eval mode, updated.

    Width (N, M) and whether z has a variable-rate bottleneck are read from the state dict.
    """
    from compressai.models.utils import update_registered_buffers
    from compressai.zoo.image_vbr import model_architectures

    if arch not in VBR_ARCHS:
        raise QVRFError(f"unknown VBR model {arch!r}: choose from {', '.join(VBR_ARCHS)}")
    sd = dict(state_dict)
    sd.pop("QuantOffset", None)  # as the models' from_state_dict: a leftover of older versions
    for key in ("g_a.0.weight", "g_a.6.weight"):
        if key not in sd:
            raise CheckpointError(f"{source}: not a {arch} state dict (no {key!r})")
    N, M = int(sd["g_a.0.weight"].size(0)), int(sd["g_a.6.weight"].size(0))
    vr_z = any(k.startswith("gayn2zqstep.") for k in sd)
    cls = model_architectures[arch]
    try:
        if arch == "mbt2018-vbr":
            if vr_z:
                raise CheckpointError(f"{source}: has a variable-rate z bottleneck, which {arch} does not have")
            model = cls(N, M)
        else:
            model = cls(N, M, vr_entbttlnck=vr_z)
        # CompressionModel.load_state_dict resizes the CDF buffers of EntropyBottleneck and
        # GaussianConditional but not of EntropyBottleneckVbr: do that one here
        eb_keys = [f"entropy_bottleneck.{b}" for b in ("_quantized_cdf", "_offset", "_cdf_length")]
        if vr_z and all(k in sd for k in eb_keys):
            update_registered_buffers(
                model.entropy_bottleneck, "entropy_bottleneck", ["_quantized_cdf", "_offset", "_cdf_length"], sd
            )
        model.load_state_dict(sd)
    except CheckpointError:
        raise
    except (RuntimeError, KeyError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[:4])[:400]
        raise CheckpointError(f"{source}: does not fit {arch} (N={N}, M={M}): {detail}") from None
    model.eval()
    model.no_quantoffset = False  # eval_model's settings for the VBR code path
    if arch == "mbt2018-vbr":
        model.scl2ctx = True
    if vr_z:
        model.update(force=True, scale=model.Gain[-1].detach())
    else:
        model.update(force=True)
    return model


def parameters_fingerprint(model) -> bytes:
    """SHA-256 over the parameters (names, shapes, float32 bytes): tells checkpoints apart."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict(keep_vars=False).items()):
        if name.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")):
            continue  # recomputed by update(); not part of the model's identity
        t = p.detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.float().numpy().tobytes() if t.is_floating_point() else t.numpy().tobytes())
    return h.digest()


class CompressAIVbr(Peer):
    """A CompressAI 1.2.8 VBR model from a local checkpoint; rate = quantization step (1 / gain)."""

    kind = "vbr"
    engine = "compressai"
    knob, knob_integer, rate_falls_with_knob, suffix = "quantization step", False, True, ".cvbr"

    def __init__(
        self,
        arch: str,
        checkpoint: str | Path,
        device: str = "cpu",
        qsteps: Sequence[float] | None = None,
    ):
        import torch

        if arch not in VBR_ARCHS:
            raise QVRFError(f"unknown VBR model {arch!r}: choose from {', '.join(VBR_ARCHS)}")
        self.name = self.arch = arch
        self.checkpoint = str(checkpoint)
        self.device = torch.device(device)
        self.model = build_vbr_model(arch, load_state_dict_file(checkpoint), source=str(checkpoint)).to(self.device)
        self.vr_z = bool(getattr(self.model, "vr_entbttlnck", False))
        self.fingerprint = parameters_fingerprint(self.model)[:4]
        self.qsteps = [float(q) for q in (qsteps if qsteps is not None else DEFAULT_VBR_QSTEPS)]
        for q in self.qsteps:
            self._check_qstep(q)
        self._z_tables_for: float | None = None  # qstep the variable-rate z tables were built for
        self._sha256: str | None = None

    # rate parameter
    def rate_points(self) -> list[float]:
        return sorted(self.qsteps, reverse=True)  # big step = low rate

    def rate_label(self, rate: float) -> str:
        return f"qstep={_f32(rate):.4f}"

    def rate_columns(self, rate: float) -> dict[str, Any]:
        return {"gain": 1.0 / _f32(rate), "quality": None, "level": None, "lmbda": None}

    def _check_qstep(self, q: float) -> float:
        if not (math.isfinite(q) and q > 0):
            raise QVRFError(f"{self.name}: quantization step must be a positive number, got {q!r}")
        return _f32(q)

    def _scale(self, qstep32: float):
        """The gain tensor eval_model passes as ``inputscale``, on the model's device."""
        import torch

        scale = torch.tensor(1.0 / qstep32, dtype=torch.float32, device=self.device)
        if self.vr_z and self._z_tables_for != qstep32:
            # z's entropy tables depend on the step (eval_model: model.update(force=True, scale=run))
            self.model.update(force=True, scale=scale)
            self._z_tables_for = qstep32
        return scale

    # coding
    def encode(self, rgb8: np.ndarray, rate: float) -> bytes:
        import torch

        rgb8 = _check_rgb8(rgb8)
        h, w = rgb8.shape[:2]
        if h > 0xFFFFFFFF or w > 0xFFFFFFFF:  # pragma: no cover
            raise QVRFError(f"image {w}x{h} too large for the CVBR container")
        qstep = self._check_qstep(rate)
        padding = centred_padding(h, w, PAD_MULTIPLE)
        with torch.no_grad():
            scale = self._scale(qstep)
            x = pad(rgb8_to_tensor(rgb8).to(self.device), padding)
            out = self.model.compress(x, stage=VBR_STAGE, s=0, inputscale=scale)
        (y,), (z,) = out["strings"]
        flags = _FLAG_VR_Z if self.vr_z else 0
        return vbr_container_pack(VBR_ARCHS.index(self.arch), VBR_STAGE, flags, qstep, h, w, padding,
                                  self.fingerprint, y, z)  # fmt: skip

    def decode(self, data: bytes) -> np.ndarray:
        import torch

        c = vbr_container_unpack(bytes(data))
        if c["arch"] != self.arch:
            raise BitstreamError(f"bitstream was made by {c['arch']}, not {self.arch}")
        if c["fingerprint"] != self.fingerprint:
            raise BitstreamError(f"bitstream was made by another {self.arch} checkpoint than {self.checkpoint}")
        if c["stage"] != VBR_STAGE or bool(c["flags"] & _FLAG_VR_Z) != self.vr_z:
            raise BitstreamError(f"bitstream settings (stage {c['stage']}, flags {c['flags']}) do not match the model")
        pl, pr, pt, pb = c["padding"]
        hp, wp = c["height"] + pt + pb, c["width"] + pl + pr
        if hp % PAD_MULTIPLE or wp % PAD_MULTIPLE or max(c["padding"]) >= PAD_MULTIPLE:
            raise BitstreamError(f"corrupt CVBR header: padded size {wp}x{hp} is not a multiple of {PAD_MULTIPLE}")
        shape = (hp // PAD_MULTIPLE, wp // PAD_MULTIPLE)
        try:
            with torch.no_grad():
                scale = self._scale(c["qstep"])
                out = self.model.decompress([[c["y"]], [c["z"]]], shape, stage=VBR_STAGE, s=0, inputscale=scale)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BitstreamError(f"{self.name}: cannot decode the bitstream ({str(exc)[:200]})") from None
        return tensor_to_rgb8(crop(out["x_hat"], c["padding"]))

    def payload_size(self, data: bytes) -> int:
        c = vbr_container_unpack(bytes(data))
        return len(c["y"]) + len(c["z"])

    @property
    def checkpoint_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.checkpoint)
        return self._sha256

    @property
    def codec_version(self) -> str:
        return ""

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": self.checkpoint, "qsteps": self.rate_points(), "stage": VBR_STAGE}


# --- registry -----------------------------------------------------------------------------------


def get_peer(name: str, **options: Any) -> Peer:
    """A peer by registry name. Classical: ``sweep=[...]`` and codec options (e.g. ``speed`` for
    avif); VBR: ``checkpoint=`` (required), ``device=``, ``qsteps=``."""
    if name in CLASSICAL:
        try:
            return CLASSICAL[name](**options)
        except TypeError as exc:
            raise QVRFError(f"{name}: bad option ({exc})") from None
    if name in VBR_ARCHS:
        if not options.get("checkpoint"):
            raise QVRFError(f"{name}: needs a local checkpoint (CompressAI weights cannot be downloaded here)")
        try:
            return CompressAIVbr(name, **options)
        except TypeError as exc:
            raise QVRFError(f"{name}: bad option ({exc})") from None
    raise QVRFError(f"unknown peer {name!r}: choose from {', '.join(list_peers())}")


def list_peers() -> list[str]:
    return [*CLASSICAL, *VBR_ARCHS]


def __getattr__(name: str):  # views of the codec registry, for scripts that read the old constants
    if name == "PEER_NAMES":
        return tuple(list_peers())
    if name == "DEFAULT_SWEEPS":
        return {n: tuple(getattr(c, "default_sweep", ())) for n, c in CLASSICAL.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def roundtrip(peer: Peer, rgb8: np.ndarray, rate: float, clock: Callable[[], float] | None = None):
    """Encode then decode once: (data, reconstruction, enc_s, dec_s)."""
    import time

    clock = clock or time.perf_counter
    t0 = clock()
    data = peer.encode(rgb8, rate)
    t1 = clock()
    rec = peer.decode(data)
    t2 = clock()
    return data, rec, t1 - t0, t2 - t1
