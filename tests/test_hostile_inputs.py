"""Hostile numbers and broken files, library level: header checks, the supported gain range, the
coder's symbol guard, checkpoint gains and messages, output paths and temporary files, 16-bit PNGs.
(The CLI's side is tests/cli/test_cli_hostile.py; random damage is tests/bitstream/test_fuzz_decode.py.)"""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import HEAD, png16, small_model, with_fields
from PIL import Image

from qvrf_bench import files, images
from qvrf_bench.bitstream import container, gains
from qvrf_bench.errors import BitstreamError, CheckpointError, CoderRangeError, GainError, QVRFError
from qvrf_bench.methods import codec
from qvrf_bench.models import ARCHS
from qvrf_bench.models.checkpoints import load_model, save_checkpoint, update_checkpoint
from qvrf_bench.models.qvrf import check_coder_input, scale_table


def photo(h=40, w=72):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 150 : 150 + w])


@pytest.fixture(scope="module")
def balle():
    model = small_model("balle")
    return model, codec.encode(model, photo(), level=3)


def resized(data: bytes, w: int, h: int) -> bytes:
    """The header claims a w x h image, with the padding and hyper-latent size that agree with it."""
    ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
    return with_fields(data, w=w, h=h, pl=(pw - w) // 2, pr=pw - w - (pw - w) // 2, pt=(ph - h) // 2,
                       pb=ph - h - (ph - h) // 2, zh=ph // 64, zw=pw // 64)  # fmt: skip


# --- header fields ----------------------------------------------------------------------------

BAD_HEADERS = [
    (dict(zh=60000), "hyper-latent size 60000x2 does not match the 72x40 image (expected 1x2)"),
    (dict(zh=1000, zw=20), "hyper-latent size 1000x20"),
    (dict(zh=14, zw=1000), "hyper-latent size 14x1000"),
    (dict(zh=0, zw=20), "hyper-latent size 0x20"),
    (dict(pl=60000), "left/right padding 60000+28 does not bring 72 px to a multiple of 64 (56)"),
    (dict(pt=3), "top/bottom padding 3+12"),
    (dict(h=0), "image size 72x0 is empty"),
    (dict(w=0), "image size 0x40 is empty"),
    (dict(gain=math.nan), "gain is nan, not a finite number"),
    (dict(gain=math.inf), "gain is inf, not a finite number"),
    (dict(gain=0.0), "gain is 0, not > 0"),
    (dict(gain=-3.3), "gain is -3.3, not > 0"),
    (dict(gain=1e30), "gain is 1e+30, outside the supported range"),
    (dict(gain=1e-30), "gain is 1e-30, outside the supported range"),
    (dict(reserved=7), "reserved byte is 7, not 0"),
    (dict(n=3), "string count is 3, not 2"),
    (dict(arch=9), "architecture id 9 is unknown"),
]


@pytest.mark.parametrize(
    "fields,message", BAD_HEADERS, ids=[m.split(" is")[0].split(" does")[0] for _, m in BAD_HEADERS]
)
def test_every_header_field_is_checked_before_decoding(balle, fields, message):
    model, data = balle
    bad = with_fields(data, **fields)
    with pytest.raises(BitstreamError) as info:
        container.unpack(bad, "f.qvrf")
    assert str(info.value).startswith("f.qvrf: ") and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(BitstreamError, match=message.split(" (")[0].replace("+", r"\+")):
        codec.decode(model, bad, "f.qvrf")


def test_levels_and_lengths_are_checked_against_the_checkpoint(balle):
    model, data = balle
    for level in (8, 63):
        with pytest.raises(BitstreamError, match=f"level {level} is not one of the checkpoint's levels 0..7"):
            codec.decode(model, with_fields(data, level=level), "f.qvrf")
    for level in (64, 200, 254):  # above any model's levels: refused by the header alone, no checkpoint needed
        with pytest.raises(BitstreamError, match=f"f.qvrf: corrupt header: level {level} is above the format's limit"):
            container.unpack(with_fields(data, level=level), "f.qvrf")
    with pytest.raises(ValueError, match="65 levels; a model has at most 64"):
        small_model("balle", lmbdas=[0.001 * (i + 1) for i in range(65)])
    with pytest.raises(BitstreamError, match="gain 2 is not level 3's gain"):
        codec.decode(model, with_fields(data, gain=2.0), "f.qvrf")
    ly, lz = struct.unpack_from(">II", data, HEAD.size)
    bad = data[: HEAD.size] + struct.pack(">II", ly - 1, lz + 1) + data[HEAD.size + 8 :]
    with pytest.raises(BitstreamError, match=f"y string length {ly - 1} is not a whole number of 32-bit words"):
        container.unpack(bad, "f.qvrf")


def test_cuts_say_truncated_and_other_files_say_not_a_bitstream(balle):
    _, data = balle
    for n in (1, 3, 4, 20, 40, 45, len(data) - 3):
        with pytest.raises(BitstreamError, match=r"f.qvrf: truncated bitstream \("):
            container.unpack(data[:n], "f.qvrf")
    with pytest.raises(BitstreamError, match="corrupt bitstream"):
        container.unpack(data + b"xx", "f.qvrf")
    for other in (b"\x89PNG\r\n\x1a\n" + bytes(60), b"X", b"QVRX" + bytes(60)):
        with pytest.raises(BitstreamError, match="not a qvrf-bench bitstream"):
            container.unpack(other, "f.qvrf")


@pytest.mark.parametrize("arch", ARCHS)
def test_a_size_the_payload_was_not_made_for_decodes_to_the_headers_size(arch):
    """A consistent header for a bigger image over a small image's strings: the decoder runs out of
    real bytes (it reads the zero padding), never out of its buffer, and the image has the header's
    size; --max-pixels refuses it."""
    model = small_model(arch)
    data = resized(codec.encode(model, photo(), gain=3.0), 700, 333)
    assert codec.decode(model, data).shape == (333, 700, 3)
    with pytest.raises(BitstreamError, match=r"image size 700x333 exceeds the limit of 100,000 pixels"):
        codec.decode(model, data, max_pixels=100_000)


def test_max_pixels_defaults_agree():
    from qvrf_bench.cli import _common

    assert _common.MAX_PIXELS == container.MAX_PIXELS == codec.MAX_PIXELS == images.MAX_PIXELS
    assert _common.MAX_IMAGE_BYTES == images.MAX_BYTES


def test_image_reads_are_bounded(tmp_path):
    """Special files are refused before a byte is read; the size in the header is checked before
    the pixels are decoded (a 4 KB PNG of 10000 x 8000 pixels); the byte limit too."""
    with pytest.raises(QVRFError, match=r"/dev/zero: not a regular file"):
        images.load_image("/dev/zero")
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(QVRFError, match=r"fifo.png: not a regular file"):
        images.load_image(tmp_path / "fifo.png")  # would block forever if it were opened
    Image.new("RGB", (10000, 8000)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 400_000
    with pytest.raises(QVRFError, match=r"big.png: 10000x8000 exceeds the limit of 67,108,864 pixels"):
        images.load_image(tmp_path / "big.png")
    Image.fromarray(photo()).save(tmp_path / "p.png")
    assert images.load_image(tmp_path / "p.png", max_pixels=40 * 72).rgb.shape == (40, 72, 3)
    with pytest.raises(QVRFError, match=r"p.png: 72x40 exceeds the limit of 2,879 pixels \(--max-pixels\)"):
        images.load_image(tmp_path / "p.png", max_pixels=40 * 72 - 1)
    size = (tmp_path / "p.png").stat().st_size
    with pytest.raises(QVRFError, match=r"exceeds the limit of 100 \(--max-image-bytes\)"):
        images.load_image(tmp_path / "p.png", max_bytes=100)
    assert images.load_image(tmp_path / "p.png", max_bytes=size).sha256 == files.file_sha256(tmp_path / "p.png")


def test_the_formats_arch_ids_are_the_registrys():
    assert container.ARCH_IDS == ARCHS  # append-only: an id never changes meaning


# --- the supported gain range -----------------------------------------------------------------


def test_gain_range_bounds_are_float32_and_derived():
    f32 = np.float32
    assert float(f32(gains.GAIN_MIN)) == gains.GAIN_MIN and float(f32(gains.GAIN_MAX)) == gains.GAIN_MAX
    assert math.isclose(gains.GAIN_MIN, 0.11 / 256, rel_tol=1e-7)
    # the top scale of the table at GAIN_MAX still leaves the 16-bit coder room for its Gaussian ...
    top = float(scale_table(gains.GAIN_MAX)[-1])
    bins = 2 * math.ceil(6.1094102 * top) + 2
    assert top >= 256 * gains.GAIN_MAX / 12 and bins < 2**16 / 3
    # ... and a table beyond the range is never built
    for g in (gains.GAIN_MAX * 1.01, math.inf, math.nan):
        with pytest.raises(GainError):
            scale_table(g)


def test_gain_problems_are_named():
    assert gains.gain_problem(1.0) is None and gains.gain_problem(gains.GAIN_MIN) is None
    assert gains.gain_problem(gains.GAIN_MAX) is None
    assert "outside the supported range" in gains.gain_problem(64.01)
    assert gains.gains_problem([1, 2, 3]) is None
    assert gains.gains_problem([1, math.nan]) == "gain of level 1 is nan, not a finite number"
    assert gains.gains_problem([0, 1]) == "gain of level 0 is 0, not > 0"
    assert gains.gains_problem([-1, 1]) == "gain of level 0 is -1, not > 0"
    assert gains.gains_problem([1, 100]).startswith("gain of level 1 is 100, outside the supported range")
    assert gains.gains_problem([2, 2]).startswith("gains do not increase with the level")
    with pytest.raises(GainError, match=r"--gain is 1e\+10, outside the supported range \[0.0004296875, 64\]"):
        gains.check_gain(1e10, "--gain")


@pytest.mark.parametrize("arch", ARCHS)
def test_the_ends_of_the_range_code_exactly_and_beyond_is_an_error(arch):
    model = small_model(arch)
    x = images.rgb8_to_tensor(photo())
    for g in (gains.GAIN_MIN, gains.GAIN_MAX):
        enc = codec.encode_tensor(model, x, gain=g, with_reconstruction=True)
        x_dec, y_dec, header = codec.decode_full(model, enc.data)
        assert header.gain == g and torch.equal(y_dec, enc.y_hat) and torch.equal(x_dec, enc.x_hat)
    for g in (gains.GAIN_MAX * 1.5, 1e10, gains.GAIN_MIN / 2):
        with pytest.raises(GainError, match="outside the supported range"):
            codec.encode_tensor(model, x, gain=g)


def test_the_coders_symbol_guard():
    cdf_length = torch.tensor([5, 9], dtype=torch.int32)  # max values 3 and 7
    offset = torch.tensor([-1, -3], dtype=torch.int32)
    n = 1000
    idx = torch.ones(1, n, dtype=torch.int32)
    check_coder_input(torch.zeros(1, n), idx, cdf_length, offset)  # in the table
    # the table of index 1 covers -3..3 (offset -3, top 7): escapes up to raw 2^28 - 1 are the last safe
    check_coder_input(torch.full((1, n), 2.0**27 + 3.0, dtype=torch.float64), idx, cdf_length, offset)  # raw 2^28 - 2
    check_coder_input(torch.full((1, n), -(2.0**27) - 3.0, dtype=torch.float64), idx, cdf_length, offset)  # 2^28 - 1
    for v in (2.0**27 + 4.0, -(2.0**27) - 4.0, 1e9, -1e12):  # would never terminate (or overflow int32)
        with pytest.raises(CoderRangeError, match="escape limit of 134217728"):
            check_coder_input(torch.full((1, n), v, dtype=torch.float64), idx, cdf_length, offset)
    with pytest.raises(CoderRangeError, match="non-finite"):
        check_coder_input(torch.full((1, n), math.nan), idx, cdf_length, offset)


def test_gaussian_conditional_refuses_symbols_it_cannot_code():
    model = small_model("balle")
    gc = model.gaussian_conditional
    y = torch.full((1, model.M, 4, 4), 1e9)
    with pytest.raises(CoderRangeError):
        gc.compress(y, gc.build_indexes(torch.ones_like(y)))


# --- checkpoints ------------------------------------------------------------------------------


def official(tmp_path, name, gain=None, drop_cdfs=False):
    model = small_model("balle")
    sd = dict(model.state_dict())
    sd["Gain"] = sd.pop("gain") if gain is None else torch.tensor(gain, dtype=torch.float32)
    if drop_cdfs:
        sd = {
            k: v for k, v in sd.items() if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table"))
        }
    torch.save({"state_dict": sd}, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize(
    "gain,message",
    [
        ([math.nan] * 8, "gain of level 0 is nan, not a finite number"),
        ([0.0] * 8, "gain of level 0 is 0, not > 0"),
        ([-1.0 - i for i in range(8)], "gain of level 0 is -1, not > 0"),
        ([1.0, 2, 3, 4, 5, 6, 7, 1e10], "gain of level 7 is 1e+10, outside the supported range"),
        ([1.0, 3, 2, 4, 5, 6, 7, 8], "gains do not increase with the level (level 1: 3, level 2: 2)"),
    ],
)
def test_checkpoint_gains_are_checked_on_load(tmp_path, gain, message):
    path = official(tmp_path, "g.pt", gain)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)
    with pytest.raises(CheckpointError):
        update_checkpoint(path, tmp_path / "out/")
    if not any(map(math.isnan, gain)):  # info can still show it (and says it cannot code)
        model, _ = load_model(path, for_coding=False)
        assert model.gain.tolist() == pytest.approx(gain)


def test_an_official_checkpoint_without_coder_tables_loads_and_codes(tmp_path):
    full, bare = official(tmp_path, "full.pt"), official(tmp_path, "bare.pt", drop_cdfs=True)
    a, _ = load_model(full)
    b, _ = load_model(bare)
    assert codec.encode(a, photo(), level=5) == codec.encode(b, photo(), level=5)


@pytest.mark.parametrize("levels", [8, 11])
def test_one_official_model_codes_one_bitstream_whichever_layout(tmp_path, levels):
    """Official weights saved as update.py does (CDF tables built with CompressAI's 64-entry scale
    table) and as train.py does (no tables): the same bytes at every level. The 11-level gains reach
    28.3, past where the suite's own rule would extend the table (before: +7 % bytes without tables)."""
    from compressai.models.base import get_scale_table

    from qvrf_bench.models import create
    from qvrf_bench.models.qvrf import LAMBDAS_8, LAMBDAS_11

    torch.manual_seed(0)
    lm = LAMBDAS_11 if levels == 11 else LAMBDAS_8
    model = create("balle", "qvrf", N=8, M=12, lmbdas=lm, gains=[math.sqrt(v / lm[0]) for v in lm])
    assert (max(model.gain.tolist()) > 12) == (levels == 11)
    model.update(scale_table=get_scale_table(), force=True)  # what the official update.py stores
    sd = dict(model.state_dict())
    sd["Gain"] = sd.pop("gain")
    torch.save({"state_dict": sd}, tmp_path / "update.pt")
    bare = {k: v for k, v in sd.items() if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table"))}
    torch.save({"state_dict": bare}, tmp_path / "train.pt")
    a, b = load_model(tmp_path / "update.pt")[0], load_model(tmp_path / "train.pt")[0]
    assert torch.equal(b.gaussian_conditional.scale_table, get_scale_table().float())
    for level in (0, levels // 2, levels - 1):
        assert (
            codec.unpack(codec.encode(a, photo(), level=level))[1]
            == codec.unpack(codec.encode(b, photo(), level=level))[1]
        )


def test_unsafe_pickles_are_refused_by_name_and_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "evil.pt")
    text = str(info.value)
    assert "refused: an unsafe pickle (it asks to import posix.system" in text and "nothing from it was run" in text
    assert "weights_only" not in text and "\n" not in text and not marker.exists()


def test_other_files_are_named_for_what_they_are(tmp_path, balle):
    _, data = balle
    cases = {
        "photo.pt": (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a checkpoint: a PNG image"),
        "stream.pt": (data, "not a checkpoint: a qvrf-bench bitstream"),
        "two.pt": (b"PK", "truncated or damaged checkpoint (its zip archive is unreadable, 2 bytes)"),
        "text.pt": (b"hello\n", "not a checkpoint (neither a PyTorch zip archive nor a pickle; 6 bytes)"),
    }
    save_checkpoint(tmp_path / "good.pt", small_model("balle"))
    cases["cut.pt"] = ((tmp_path / "good.pt").read_bytes()[:3000], "truncated or damaged checkpoint")
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{name}: {message}".replace("(", r"\(").replace(")", r"\)")):
            load_model(tmp_path / name)
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_model(tmp_path)


# --- output paths and temporary files ---------------------------------------------------------


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_output_path_semantics(tmp_path):
    assert files.output_path(tmp_path / "new" / "deeper" / "a.qvrf", "x.qvrf") == tmp_path / "new" / "deeper" / "a.qvrf"
    assert (tmp_path / "new" / "deeper").is_dir()
    assert files.output_path(tmp_path, "x.qvrf") == tmp_path / "x.qvrf"  # an existing folder: inside it
    assert files.output_path(f"{tmp_path}/made/", "x.qvrf") == tmp_path / "made" / "x.qvrf"  # trailing slash
    assert (tmp_path / "made").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(QVRFError, match="file: is a file, not a folder: cannot hold the output"):
        files.output_path(tmp_path / "file" / "a.qvrf", "x.qvrf")
    with pytest.raises(QVRFError, match=r"file/sub: cannot be created for the output: .*file is a file, not a folder"):
        files.output_path(tmp_path / "file" / "sub" / "a.qvrf", "x.qvrf")
    (tmp_path / "x.qvrf").mkdir()
    with pytest.raises(QVRFError, match="is a folder; give a file name"):
        files.output_path(tmp_path, "x.qvrf")


def test_a_failed_write_leaves_nothing_and_stale_temps_are_cleaned(tmp_path):
    target = tmp_path / "last.pt"
    pid = dead_pid()
    stale = tmp_path / f".last.pt.tmp-{pid}"
    other = tmp_path / f".best.pt.tmp-{pid}"  # another file of the folder: a resume may never rewrite it
    live = tmp_path / f".last.pt.tmp-{os.getppid()}"  # a live process's: left alone
    for p in (stale, other, live):
        p.write_bytes(b"half")
    (tmp_path / "notes.tmp-1").write_text("not ours: no leading dot")
    with pytest.raises(RuntimeError, match="disk on fire"), files.atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk on fire")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "notes.tmp-1"]
    save_checkpoint(target, small_model("balle"))  # checkpoints write through it too
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "last.pt", "notes.tmp-1"]


def test_save_png_is_atomic(tmp_path):
    stale = tmp_path / f".o.png.tmp-{dead_pid()}"
    stale.write_bytes(b"x")
    images.save_png(photo(), tmp_path / "o.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]
    with pytest.raises(ValueError):  # PIL refuses an empty image half way: nothing may be left
        images.save_png(np.zeros((0, 5, 3), np.uint8), tmp_path / "empty.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_update_output_folder_with_a_trailing_slash_is_created(tmp_path):
    save_checkpoint(tmp_path / "ck.pt", small_model("balle"))
    out = update_checkpoint(tmp_path / "ck.pt", f"{tmp_path}/exported/")
    assert out.parent == tmp_path / "exported" and out.name.startswith("ck-") and out.suffix == ".pt"
    named = update_checkpoint(tmp_path / "ck.pt", tmp_path / "new" / "model.pt")
    assert named.parent == tmp_path / "new" and named.name.startswith("model-")
    assert not [p for p in (tmp_path / "exported").iterdir() if p.name.startswith(".")]


# --- 16-bit colour --------------------------------------------------------------------------


def test_48_and_64_bit_pngs_are_converted_with_a_notice(tmp_path):
    rgb16 = (np.arange(6 * 7 * 3).reshape(6, 7, 3) * 311).astype(np.uint16)
    png16(tmp_path / "rgb48.png", rgb16)
    img = images.load_image(tmp_path / "rgb48.png")
    assert img.notices == ["48-bit RGB converted to 8 bits per sample (high byte kept)"]
    assert np.array_equal(img.rgb, (rgb16 >> 8).astype(np.uint8))
    png16(tmp_path / "rgba64.png", np.concatenate([rgb16, np.full((6, 7, 1), 65535, np.uint16)], axis=2))
    notices = images.load_image(tmp_path / "rgba64.png").notices
    assert "64-bit RGBA converted to 8 bits per sample (high byte kept)" in notices and any(
        "alpha" in n for n in notices
    )
    Image.fromarray(photo()).save(tmp_path / "plain.png")
    assert images.load_image(tmp_path / "plain.png").notices == []
