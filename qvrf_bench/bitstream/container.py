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

Version 3, the container of a variable-rate method measured through the method contract
(qvrf_bench/methods/; written by :func:`pack_method`, read by :func:`unpack_method`)::

    magic      4s   b"QVRF"
    version    B    3
    arch       B    index into ARCH_IDS, 255 for an architecture outside that frozen table
    method id  B + ASCII   the method's id (1..64 printable characters), e.g. b"qvrf", b"channel-gain"
    fingerprint 8s  first 8 bytes of the method's fingerprint (sha256 of its parameters)
    height, width   I I
    padding    4H   as version 2 (centred, to a multiple of 64)
    side info  H + bytes   what the decoder needs to select the rate (any length up to 65535; the
                    method alone reads it: a level and a float32 gain for QVRF, a level and an
                    interpolation position for a channel-wise gain method, ...)
    n          B    number of strings (1..16), shared ones (e.g. the hyper-latent's) last
    lengths    n*I
    strings

The hyper-latent size is not stored (the decoder derives it from the size, as for version 2).
The QVRF models' own codec (codec.py) still writes version 2, whose recorded byte counts the
shipped model zoo's numbers are measured with.

No torch here, so the CLI can refuse a broken file in milliseconds, before importing the models.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from qvrf_bench.bitstream.gains import MAX_LEVELS, gain_problem
from qvrf_bench.errors import BitstreamError

# The format's architecture ids (a byte in the header): append only, never reorder.
ARCH_IDS = ("balle", "minnen-mean", "minnen", "cheng2020")

MAGIC = b"QVRF"
VERSION = 2
READS = (1, 2)
METHOD_VERSION = 3  # the method contract's container (module docstring)
OTHER_ARCH = 255  # version 3: an architecture outside ARCH_IDS
MAX_METHOD_ID = 64
MAX_STRINGS = 16
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


def _check_total(n_bytes: int, off: int, lengths, name: str) -> None:
    """The strings' lengths after ``off`` add up to the file (every version)."""
    if n_bytes != off + sum(lengths):
        what = "truncated bitstream" if n_bytes < off + sum(lengths) else "corrupt bitstream"
        raise BitstreamError(f"{name}: {what} ({n_bytes} bytes, its header says {off + sum(lengths)})")


def _check_size(h: int, w: int, padding, max_pixels: int, bad) -> None:
    """The image size (not empty, within ``max_pixels``) and a padding that brings it to a multiple of 64."""
    if h < 1 or w < 1:
        raise bad("image size", f"{w}x{h} is empty")
    if h * w > max_pixels:
        raise bad("image size", f"{w}x{h} exceeds the limit of {max_pixels:,} pixels (decode --max-pixels)")
    pl, pr, pt, pb = padding
    for axis, size, a, b in (("left/right", w, pl, pr), ("top/bottom", h, pt, pb)):
        need = -(-size // PAD_MULTIPLE) * PAD_MULTIPLE - size
        if a + b != need:
            raise bad(f"{axis} padding", f"{a}+{b} does not bring {size} px to a multiple of {PAD_MULTIPLE} ({need})")


def _split(data: bytes, off: int, lengths) -> list[bytes]:
    strings = []
    for ln in lengths:
        strings.append(data[off : off + ln])
        off += ln
    return strings


def string_lengths_problem(lengths) -> str | None:
    """What is wrong with the lengths of a y and a z string of the rANS coder (whole 32-bit words,
    at least its two-word flush), or None: format 2's check, which QVRF makes in format 3 too."""
    for label, ln in zip("yz", lengths, strict=True):
        if ln < MIN_STRING or ln % WORD:
            return f"{label} string length {ln} is not a whole number of 32-bit words >= {MIN_STRING} bytes"
    return None


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
    if version == METHOD_VERSION:
        raise BitstreamError(f"{name}: a method container (format {METHOD_VERSION}); decode it with its method "
                             "(qvrf-bench decode --method)")  # fmt: skip
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
    _check_total(n_bytes, off, lengths, name)
    problem = string_lengths_problem(lengths)
    if problem:
        raise BitstreamError(f"{name}: corrupt header: {problem}")
    _check_size(h, w, (pl, pr, pt, pb), max_pixels, bad)
    _, z_shape = latent_shapes(h, w)
    if (zh, zw) != z_shape:
        raise bad(
            "hyper-latent size", f"{zh}x{zw} does not match the {w}x{h} image (expected {z_shape[0]}x{z_shape[1]})"
        )
    problem = gain_problem(gain)
    if problem:
        raise bad("gain", problem)
    if level != NO_LEVEL and level >= MAX_LEVELS:
        raise bad("level", f"{level} is above the format's limit ({MAX_LEVELS} levels; {NO_LEVEL} = a continuous gain)")
    strings = _split(data, off, lengths)
    header = Header(ARCH_IDS[arch_i], None if level == NO_LEVEL else level, gain, fp, h, w,
                    (pl, pr, pt, pb), (zh, zw), tuple(lengths), version)  # fmt: skip
    return header, strings


# --- version 3: the method contract's container -------------------------------------------------

_HEAD3 = struct.Struct(">4sBBB")  # magic, version, arch id, method id length
_MID3 = struct.Struct(">8sII4H")  # fingerprint, height, width, padding


@dataclass
class MethodHeader:
    arch: str  # one of ARCH_IDS, or any name (written as OTHER_ARCH: the method knows its own)
    method_id: str
    fingerprint: bytes
    height: int
    width: int
    padding: tuple[int, int, int, int]
    side_info: bytes
    lengths: tuple[int, ...] = ()

    @property
    def arch_id(self) -> int:
        return ARCH_IDS.index(self.arch) if self.arch in ARCH_IDS else OTHER_ARCH


def _method_id_problem(method_id: str) -> str | None:
    if not 1 <= len(method_id) <= MAX_METHOD_ID or not all(33 <= ord(c) < 127 for c in method_id):
        return f"{method_id!r} is not 1..{MAX_METHOD_ID} printable ASCII characters"
    return None


def pack_method(header: MethodHeader, strings: list[bytes]) -> bytes:
    """A version-3 container (pure)."""
    problem = _method_id_problem(header.method_id)
    if problem:
        raise ValueError(f"method id {problem}")
    if not 1 <= len(strings) <= MAX_STRINGS:
        raise ValueError(f"{len(strings)} strings; a container holds 1..{MAX_STRINGS}")
    if len(header.side_info) > 0xFFFF:
        raise ValueError(f"side information of {len(header.side_info)} bytes; at most 65535")
    mid = header.method_id.encode("ascii")
    return b"".join([
        _HEAD3.pack(MAGIC, METHOD_VERSION, header.arch_id, len(mid)), mid,
        _MID3.pack(header.fingerprint[:8], header.height, header.width, *header.padding),
        struct.pack(">H", len(header.side_info)), header.side_info,
        struct.pack(f">B{len(strings)}I", len(strings), *(len(s) for s in strings)), *strings,
    ])  # fmt: skip


def unpack_method(
    data: bytes, name: str = "bitstream", max_pixels: int = MAX_PIXELS
) -> tuple[MethodHeader, list[bytes]]:
    """Version-3 bytes -> (header, strings), every field checked as :func:`unpack` does; the arch is
    ARCH_IDS' name or '' (OTHER_ARCH). The side information is the method's to check."""
    n_bytes = len(data)
    if n_bytes == 0:
        raise BitstreamError(f"{name}: empty file (0 bytes)")
    if data[:4] != MAGIC[: min(4, n_bytes)]:
        raise BitstreamError(f"{name}: not a qvrf-bench bitstream (no QVRF magic number)")

    def need(size: int) -> None:
        if n_bytes < size:
            raise BitstreamError(f"{name}: truncated bitstream ({n_bytes} bytes; the header alone is {size})")

    def bad(field: str, problem: str) -> BitstreamError:
        return BitstreamError(f"{name}: corrupt header: {field} {problem}")

    need(_HEAD3.size)
    _, version, arch_i, mlen = _HEAD3.unpack_from(data)
    if version != METHOD_VERSION:
        raise BitstreamError(f"{name}: bitstream format version {version}, not a method container ({METHOD_VERSION})")
    if arch_i >= len(ARCH_IDS) and arch_i != OTHER_ARCH:
        raise bad("architecture", f"id {arch_i} is unknown (0..{len(ARCH_IDS) - 1} or {OTHER_ARCH})")
    off = _HEAD3.size
    need(off + mlen + _MID3.size + 2)
    try:
        method_id = data[off : off + mlen].decode("ascii")
    except UnicodeDecodeError:
        method_id = data[off : off + mlen].hex()
    problem = _method_id_problem(method_id)
    if problem:
        raise bad("method id", problem)
    off += mlen
    fp, h, w, pl, pr, pt, pb = _MID3.unpack_from(data, off)
    off += _MID3.size
    (side_len,) = struct.unpack_from(">H", data, off)
    off += 2
    need(off + side_len + 1)
    side = data[off : off + side_len]
    off += side_len
    n = data[off]
    off += 1
    if not 1 <= n <= MAX_STRINGS:
        raise bad("string count", f"is {n}, not 1..{MAX_STRINGS}")
    need(off + WORD * n)
    lengths = struct.unpack_from(f">{n}I", data, off)
    off += WORD * n
    _check_total(n_bytes, off, lengths, name)
    _check_size(h, w, (pl, pr, pt, pb), max_pixels, bad)
    strings = _split(data, off, lengths)
    arch = ARCH_IDS[arch_i] if arch_i < len(ARCH_IDS) else ""
    return MethodHeader(arch, method_id, fp, h, w, (pl, pr, pt, pb), side, tuple(lengths)), strings


def format_version(data: bytes) -> int | None:
    """The container version of ``data`` (None when it is not a qvrf-bench container)."""
    return data[4] if len(data) > 4 and data[:4] == MAGIC else None
