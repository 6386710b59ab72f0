"""Reading images and turning them into 8-bit RGB; padding and cropping.

The only module that opens image files. Everything downstream sees ``uint8`` arrays of shape
(H, W, 3) or float tensors in [0, 1] of shape (1, 3, H, W).

Conversions (each reported as a notice, never silent): grayscale / palette / CMYK / LA -> RGB,
RGBA -> RGB by dropping alpha (the codecs are RGB codecs; compositing on a colour would invent
pixels), 16-bit grayscale -> 8-bit by round(v / 257) (maps 65535 to 255 exactly). 48-bit RGB and
64-bit RGBA (16 bits per sample) reach us already at 8 bits: Pillow keeps the high byte of each
sample (v >> 8, at most one level below round(v / 257)); that is reported too.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from qvrf_bench.errors import ImageError
from qvrf_bench.files import atomic_output

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass
class LoadedImage:
    """An image as 8-bit RGB plus what was done to it."""

    path: Path
    rgb: np.ndarray  # (H, W, 3) uint8
    sha256: str  # of the file's bytes
    notices: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


def sixteen_bit_colour(img: Image.Image) -> bool:
    """Whether an opened (not yet loaded) image stores 16-bit colour samples that Pillow decodes to
    8 bits (its tile's raw mode, e.g. PNG 'RGB;16B', TIFF 'RGB;16L')."""
    if img.mode not in ("RGB", "RGBA", "RGBX"):
        return False
    for tile in getattr(img, "tile", None) or []:
        args = tile[3] if isinstance(tile, tuple) else getattr(tile, "args", None)
        raw = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def to_rgb8(img: Image.Image, sixteen: bool = False) -> tuple[np.ndarray, list[str]]:
    """Convert a decoded PIL image to (H, W, 3) uint8; return the notices about what changed.
    ``sixteen``: the file held 16-bit colour samples (:func:`sixteen_bit_colour`)."""
    notices: list[str] = []
    if sixteen:
        bits = 16 * len(img.getbands())
        notices.append(f"{bits}-bit {img.mode} converted to 8 bits per sample (high byte kept)")
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        arr = np.asarray(img).astype(np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        notices.append(f"{'16' if hi > 255 else '32'}-bit grayscale converted to 8-bit RGB")
        arr8 = np.clip(np.rint(arr * 255.0 / hi), 0, 255).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2), notices
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        notices.append("floating-point image converted to 8-bit RGB (values clipped to 0..255)")
        arr8 = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, axis=2), notices
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        notices.append(f"{mode} image: alpha channel dropped")
    elif mode == "P":
        notices.append("palette image converted to RGB")
        if "transparency" in img.info:
            notices.append("palette transparency dropped")
    elif mode in ("L", "1"):
        notices.append("grayscale image converted to RGB")
    elif mode == "CMYK":
        notices.append("CMYK image converted to RGB")
    elif mode != "RGB":
        notices.append(f"{mode} image converted to RGB")
    rgb = img.convert("RGB") if mode != "RGB" else img
    return np.array(rgb, dtype=np.uint8), notices


# Read limits: an input is read only when it is a regular file of at most MAX_BYTES whose header
# declares at most MAX_PIXELS pixels (the decoder's limit, container.MAX_PIXELS: 8192 x 8192), so a
# device file, a FIFO or a small PNG that inflates to gigabytes is refused before any memory is spent
# on it. Both are overridable (encode / sweep --max-pixels, --max-image-bytes).
MAX_PIXELS = 1 << 26
MAX_BYTES = 1 << 30


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> LoadedImage:
    """Read an image file as 8-bit RGB. Raises :class:`ImageError` naming the file and the problem."""
    import stat

    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as exc:
        raise ImageError(path, exc.strerror or str(exc)) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(path, "not a regular file (a device, FIFO or socket); give an image file")
    if st.st_size > max_bytes:
        raise ImageError(path, f"{st.st_size:,} bytes exceeds the limit of {max_bytes:,} (--max-image-bytes)")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)  # bounded even if the file grows after the check
    if len(data) > max_bytes:
        raise ImageError(path, f"more than {max_bytes:,} bytes (--max-image-bytes)")
    if len(data) == 0:
        raise ImageError(path, "empty file (0 bytes)")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:  # the header's size, before anything is decoded
                raise ImageError(path, f"{img.width}x{img.height} exceeds the limit of {max_pixels:,} pixels "
                                 "(--max-pixels)")  # fmt: skip
            sixteen = sixteen_bit_colour(img)  # the tile says so only before load()
            img.load()  # decode now: a truncated file fails here, not later
            if img.width == 0 or img.height == 0:
                raise ImageError(path, "image has zero width or height")
            rgb, notices = to_rgb8(img, sixteen)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc) or exc.__class__.__name__
        if "truncated" in msg.lower():
            raise ImageError(path, "truncated image file") from None
        raise ImageError(path, f"corrupt image file ({msg})") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"image too large ({exc})") from None
    return LoadedImage(path=path, rgb=np.ascontiguousarray(rgb), sha256=sha, notices=notices)


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (by suffix), sorted by relative path, hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(folder, "not a directory")
    pattern = "**/*" if recursive else "*"
    files = [
        p
        for p in folder.glob(pattern)
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def save_png(rgb: np.ndarray, path: str | os.PathLike) -> None:
    """Write (H, W, 3) uint8 as PNG, atomically (files.atomic_output: no temporary file survives a
    failure, and one left by a killed process is removed)."""

    with atomic_output(path) as tmp:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG")


# --- tensors and padding: pure functions --------------------------------------------------------


def rgb8_to_tensor(rgb: np.ndarray):
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).div(255.0)


def tensor_to_rgb8(x) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded (the CompressAI 1.2.8 convention)."""
    return x.detach().clamp(0, 1).mul(255.0).round().to("cpu").squeeze(0).permute(1, 2, 0).byte().numpy()


def centred_padding(height: int, width: int, multiple: int = 64) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that brings (H, W) up to a multiple, split as evenly
    as CompressAI 1.2.8's eval_model does (the extra pixel goes right/bottom)."""
    new_h = (height + multiple - 1) // multiple * multiple
    new_w = (width + multiple - 1) // multiple * multiple
    left = (new_w - width) // 2
    right = new_w - width - left
    top = (new_h - height) // 2
    bottom = new_h - height - top
    return left, right, top, bottom


#: How an image is padded to the coder's multiple: ``centred`` (CompressAI 1.2.8's eval_model, the
#: suite's default) or ``official`` (the official QVRF Inference.py: right and bottom only). The
#: bitstream header records the padding, so every file decodes whichever was used.
PADDINGS = ("centred", "official")


def padding_for(height: int, width: int, multiple: int = 64, how: str = "centred") -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding up to a multiple, by the convention ``how`` (:data:`PADDINGS`)."""
    if how == "centred":
        return centred_padding(height, width, multiple)
    if how == "official":
        return 0, -width % multiple, 0, -height % multiple
    raise ValueError(f"padding must be one of {', '.join(PADDINGS)} (got {how!r})")


def pad(x, padding: tuple[int, int, int, int]):
    """Zero-pad a (N, C, H, W) tensor by (left, right, top, bottom)."""
    import torch.nn.functional as F

    return F.pad(x, padding, mode="constant", value=0)


def crop(x, padding: tuple[int, int, int, int]):
    """Undo :func:`pad`."""
    left, right, top, bottom = padding
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def probe_image(height: int = 40, width: int = 72) -> np.ndarray:
    """The seeded noise image the engines' self-checks code both ways (not a multiple of 64, so the
    padding is exercised too)."""
    import torch

    g = torch.Generator().manual_seed(0)
    return (torch.rand(height, width, 3, generator=g) * 255).round().to(torch.uint8).numpy()
