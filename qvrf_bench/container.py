"""Real bitstreams: a small versioned container around CompressAI's entropy-coded strings.

Layout (big-endian), version 2::

    magic      4s   b"QVRF"
    version    B    2 (1 is read too)
    arch       B    index into ARCH_IDS (below)
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

Hostile files. Every header field is checked before anything is decoded (:func:`unpack`), each
failure one line naming the field and its value: the size (at least 1x1, at most ``max_pixels``,
default :data:`MAX_PIXELS`), the padding (left + right, top + bottom must be exactly what brings
the size to a multiple of 64), the hyper-latent size (redundant: it must equal the padded size /
64), the gain (finite, inside the supported range of gains.py), the level (< 255 here, < L
against the checkpoint, and then the gain must be that level's), two strings, each a whole number
of the coder's 32-bit words and at least its 8-byte flush, their lengths adding up to the file.
The decoder (codec.py) then uses the shapes it derives itself, never the header's.

No torch here, so the CLI can refuse a broken file in milliseconds, before importing the models.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from qvrf_bench.errors import BitstreamError
from qvrf_bench.gains import gain_problem

# The format's architecture ids (a byte in the header): append only, never reorder.
ARCH_IDS = ("balle", "minnen-mean", "minnen", "cheng2020")

MAGIC = b"QVRF"
VERSION = 2
READS = (1, 2)
PAD_MULTIPLE = 64
_HEAD = struct.Struct(">4sBBBBf8sII4HHHB")
HEADER_SIZE = _HEAD.size  # 41
NO_LEVEL = 255
N_STRINGS = 2  # y, then z
WORD = 4  # the rANS coder writes 32-bit words ...
MIN_STRING = 8  # ... and at least its two-word flush
# The largest image a header may claim (2^26 = 8192 x 8192); decode --max-pixels overrides it.
MAX_PIXELS = 1 << 26


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


def pack(header: Header, strings: list[bytes]) -> bytes:
    """Header + strings -> container bytes (pure)."""
    if header.version not in READS:
        raise ValueError(f"cannot write format version {header.version}")
    if len(strings) > 255:
        raise ValueError("too many strings")
    level = NO_LEVEL if header.level is None else int(header.level)
    head = _HEAD.pack(
        MAGIC, header.version, ARCH_IDS.index(header.arch), level, 0, float(header.gain), header.fingerprint[:8],
        header.height, header.width, *header.padding, *header.z_shape, len(strings),
    )  # fmt: skip
    lengths = struct.pack(f">{len(strings)}I", *(len(s) for s in strings))
    return head + lengths + b"".join(strings)


def latent_shapes(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(y, z) spatial sizes of an image after padding to a multiple of 64 (y: /16, z: /64)."""
    ph = -(-height // PAD_MULTIPLE) * PAD_MULTIPLE
    pw = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    return (ph // 16, pw // 16), (ph // PAD_MULTIPLE, pw // PAD_MULTIPLE)


def unpack(data: bytes, name: str = "bitstream", max_pixels: int = MAX_PIXELS) -> tuple[Header, list[bytes]]:
    """Container bytes -> (header, strings); every field checked (module docstring), so anything
    that is not a whole, sane qvrf-bench bitstream is one BitstreamError line naming the problem."""
    n_bytes = len(data)
    if n_bytes == 0:
        raise BitstreamError(f"{name}: empty file (0 bytes)")
    if data[:4] != MAGIC[: min(4, n_bytes)]:
        raise BitstreamError(f"{name}: not a qvrf-bench bitstream (no QVRF magic number)")
    if n_bytes < HEADER_SIZE:
        raise BitstreamError(f"{name}: truncated bitstream ({n_bytes} bytes; the header alone is {HEADER_SIZE})")
    magic, version, arch_i, level, reserved, gain, fp, h, w, pl, pr, pt, pb, zh, zw, n = _HEAD.unpack_from(data)
    if version not in READS:
        raise BitstreamError(
            f"{name}: bitstream format version {version}, this qvrf-bench reads {', '.join(map(str, READS))}"
        )

    def bad(field: str, problem: str) -> BitstreamError:
        return BitstreamError(f"{name}: corrupt header: {field} {problem}")

    if arch_i >= len(ARCH_IDS):
        raise bad("architecture", f"id {arch_i} is unknown (0..{len(ARCH_IDS) - 1})")
    if reserved != 0:
        raise bad("reserved byte", f"is {reserved}, not 0")
    if n != N_STRINGS:
        raise bad("string count", f"is {n}, not {N_STRINGS} (y and z)")
    off = HEADER_SIZE + WORD * n
    if n_bytes < off:
        raise BitstreamError(f"{name}: truncated bitstream ({n_bytes} bytes; the header alone is {off})")
    lengths = struct.unpack_from(f">{n}I", data, HEADER_SIZE)
    if n_bytes != off + sum(lengths):
        what = "truncated bitstream" if n_bytes < off + sum(lengths) else "corrupt bitstream"
        raise BitstreamError(f"{name}: {what} ({n_bytes} bytes, its header says {off + sum(lengths)})")
    for label, ln in zip("yz", lengths, strict=True):
        if ln < MIN_STRING or ln % WORD:
            raise bad(f"{label} string length", f"{ln} is not a whole number of 32-bit words >= {MIN_STRING} bytes")
    if h < 1 or w < 1:
        raise bad("image size", f"{w}x{h} is empty")
    if h * w > max_pixels:
        raise bad("image size", f"{w}x{h} exceeds the limit of {max_pixels:,} pixels (decode --max-pixels)")
    for axis, size, a, b in (("left/right", w, pl, pr), ("top/bottom", h, pt, pb)):
        need = -(-size // PAD_MULTIPLE) * PAD_MULTIPLE - size
        if a + b != need:
            raise bad(f"{axis} padding", f"{a}+{b} does not bring {size} px to a multiple of {PAD_MULTIPLE} ({need})")
    _, z_shape = latent_shapes(h, w)
    if (zh, zw) != z_shape:
        raise bad(
            "hyper-latent size", f"{zh}x{zw} does not match the {w}x{h} image (expected {z_shape[0]}x{z_shape[1]})"
        )
    problem = gain_problem(gain)
    if problem:
        raise bad("gain", problem)
    strings = []
    for ln in lengths:
        strings.append(data[off : off + ln])
        off += ln
    header = Header(ARCH_IDS[arch_i], None if level == NO_LEVEL else level, gain, fp, h, w,
                    (pl, pr, pt, pb), (zh, zw), tuple(lengths), version)  # fmt: skip
    return header, strings
