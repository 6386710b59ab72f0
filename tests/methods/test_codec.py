"""Real bitstreams: exact reconstruction, continuous gains, container errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import small_model

from qvrf_bench import images
from qvrf_bench.errors import BitstreamError
from qvrf_bench.methods import codec
from qvrf_bench.models import ARCHS, create, prepare_for_coding

SIZES = [(7, 13), (1, 1), (333, 501)]


def photo(h, w, seed=0):
    from skimage import data

    base = data.astronaut()
    rng = np.random.default_rng(seed)
    y0, x0 = rng.integers(0, 512 - min(h, 512)), rng.integers(0, 512 - min(w, 512))
    tile = np.tile(base, (1 + h // 512, 1 + w // 512, 1))
    return np.ascontiguousarray(tile[y0 : y0 + h, x0 : x0 + w])


@pytest.fixture(
    scope="module", params=[(a, k) for a in ARCHS for k in ("fixed", "qvrf")], ids=lambda p: f"{p[0]}-{p[1]}"
)
def model(request):
    arch, kind = request.param
    return small_model(arch, kind)


def own_reconstruction(model, rgb, level=None, gain=None):
    """The model's own hard-quantized reconstruction: forward(quant="round") on the padded image."""
    x = images.rgb8_to_tensor(rgb)
    padding = images.centred_padding(*x.shape[-2:])
    g = model.level_gain(level) if gain is None else torch.tensor(np.float32(gain))
    with torch.no_grad():
        out = model(images.pad(x, padding), gain=g, quant="round")
    return images.crop(out["x_hat"].clamp(0, 1), padding)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_decode_reproduces_the_models_own_reconstruction(model, size):
    rgb = photo(*size)
    level = model.num_levels - 1
    enc = codec.encode_tensor(model, images.rgb8_to_tensor(rgb), level=level, with_reconstruction=True)
    x_dec, header = codec.decode_tensor(model, enc.data)
    assert x_dec.shape[-2:] == size and (header.height, header.width) == size
    # The decoder reproduces the encoder bit for bit (all architectures) ...
    assert torch.equal(x_dec, enc.x_hat)
    # ... and the model's own quantized forward (for the AR models that is the serial loop).
    assert torch.equal(x_dec, own_reconstruction(model, rgb, level=level))
    assert codec.decode(model, enc.data).shape == (*size, 3)


def test_gain_equal_to_a_level_gives_the_same_bytes(model):
    rgb = photo(64, 80)
    for level in range(model.num_levels):
        a = float(model.level_gain(level))
        by_level = codec.encode(model, rgb, level=level)
        by_gain = codec.encode(model, rgb, gain=a)
        # Same entropy-coded payload; only the header's level byte differs.
        assert codec.unpack(by_level)[1] == codec.unpack(by_gain)[1]
        assert len(by_level) == len(by_gain)


def test_bytes_grow_with_gain_and_continuous_gains_decode(model):
    rgb = photo(128, 128)
    sizes = []
    for a in (0.5, 1.0, 2.5, 6.0, 12.0):
        data = codec.encode(model, rgb, gain=a)
        x, h = codec.decode_tensor(model, data)
        assert abs(h.gain - a) < 1e-6 and x.shape[-2:] == (128, 128)
        sizes.append(len(data))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_bpp_counts_real_bytes(model):
    rgb = photo(64, 96)
    enc = codec.encode_tensor(model, images.rgb8_to_tensor(rgb), level=0)
    header, strings = codec.unpack(enc.data)
    assert enc.payload_bytes == sum(len(s) for s in strings) == sum(header.lengths)
    assert len(enc.data) == enc.payload_bytes + 41 + 4 * len(strings)


def test_container_errors():
    torch.manual_seed(0)
    m = prepare_for_coding(create("balle", "qvrf", N=8, M=12))
    data = codec.encode(m, photo(32, 32), level=2)
    with pytest.raises(BitstreamError, match="empty"):
        codec.unpack(b"", "f.bin")
    with pytest.raises(BitstreamError, match="f.bin: not a qvrf-bench bitstream"):
        codec.unpack(b"\x89PNG\r\n\x1a\n" + bytes(60), "f.bin")
    with pytest.raises(BitstreamError, match="truncated"):
        codec.unpack(data[:-5], "f.bin")
    with pytest.raises(BitstreamError, match="version"):
        codec.unpack(data[:4] + bytes([9]) + data[5:], "f.bin")
    torch.manual_seed(1)
    other = prepare_for_coding(create("balle", "qvrf", N=8, M=12))
    with pytest.raises(BitstreamError, match="made by checkpoint"):
        codec.decode(other, data, "f.bin")
    m2 = prepare_for_coding(create("minnen-mean", "qvrf", N=8, M=12))
    with pytest.raises(BitstreamError, match="balle model"):
        codec.decode(m2, data, "f.bin")


def test_header_roundtrip_is_pure():
    h = codec.Header("cheng2020", None, 3.25, bytes(range(8)), 7, 13, (25, 26, 28, 29), (1, 1), (8, 12))
    hdr, strings = codec.unpack(codec.pack(h, [b"abcdefgh", b"0123456789ab"]))
    assert hdr == h and strings == [b"abcdefgh", b"0123456789ab"]


def test_official_padding_on_request(tmp_path):
    """``--padding official`` pads right/bottom as the official Inference.py does; the header records
    it, so decoding needs nothing; a sweep measures it as a method of its own."""
    import numpy as np
    from helpers import run_cli, small_model
    from PIL import Image

    from qvrf_bench import images
    from qvrf_bench.models.checkpoints import save_checkpoint
    from qvrf_bench.results.store import ResultStore

    assert images.padding_for(50, 70, 64, "official") == (0, 58, 0, 14)
    assert images.padding_for(50, 70, 64, "centred") == images.centred_padding(50, 70) == (29, 29, 7, 7)
    save_checkpoint(tmp_path / "m.pt", small_model("balle"))
    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(data / "a.png")
    for how in ("official", "centred"):
        e = run_cli("encode", "-c", tmp_path / "m.pt", "--level", "3", "--padding", how, data / "a.png",
                    tmp_path / f"{how}.qvrf")  # fmt: skip
        assert e.returncode == 0, e.stderr
        i = run_cli("info", tmp_path / f"{how}.qvrf")
        assert ("padding (0, 58, 0, 14)" if how == "official" else "padding (29, 29, 7, 7)") in i.stdout, i.stdout
        d = run_cli("decode", "-c", tmp_path / "m.pt", tmp_path / f"{how}.qvrf", tmp_path / f"{how}.png")
        assert d.returncode == 0, d.stderr
        assert Image.open(tmp_path / f"{how}.png").size == (70, 50)
    r = run_cli("sweep", "-c", tmp_path / "m.pt", "--dataset", data, "--out", tmp_path / "run", "--levels", "3",
                "--factors", "none", "--padding", "official", "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (row,) = ResultStore(tmp_path / "run").read().to_dict("records")
    assert row["method"].endswith("+official-padding") and row["decode_ok"]
    assert row["bytes"] == (tmp_path / "official.qvrf").stat().st_size  # the same bitstream as encode's


def test_official_padding_reproduces_the_official_inference_bpp(tmp_path):
    """The official Inference.py's bpp on an odd size, for a Balle QVRF model saved in the official
    layout (``module.`` prefix, ``Gain``): zero padding right/bottom to a multiple of 64, the model's
    compress with a = |Gain[s]| (y scaled before coding, z of the unscaled y, scales x a), bpp = 8 x
    (len(y string) + len(z string)) / unpadded pixels. Computed here with CompressAI's own modules of
    the loaded model; ``sweep --padding official`` gives the same payload bpp to the bit, the centred
    padding another."""
    import importlib.util

    import numpy as np
    import torch
    import torch.nn.functional as F
    from helpers import run_cli
    from PIL import Image

    from qvrf_bench.models import create, prepare_for_coding
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.results.store import ResultStore
    from qvrf_bench.zoo import KODAK_DIR

    spec = importlib.util.spec_from_file_location(
        "ckpt_tests", Path(__file__).parents[1] / "models" / "test_checkpoints.py"
    )
    ckpt_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ckpt_tests)
    torch.manual_seed(0)
    m = prepare_for_coding(create("balle", "qvrf", N=16, M=24))
    sd = dict(m.state_dict())
    sd["Gain"] = sd.pop("gain")
    torch.save({f"module.{k}": v for k, v in ckpt_tests.to_old_eb_names(sd).items()}, tmp_path / "official.pth.tar")
    data = tmp_path / "imgs"
    data.mkdir()
    Image.open(KODAK_DIR / "kodim15.png").crop((101, 37, 101 + 147, 37 + 91)).save(data / "odd.png")  # 147 x 91
    level = 5

    model, _ = load_model(tmp_path / "official.pth.tar")
    x = torch.from_numpy(np.asarray(Image.open(data / "odd.png").convert("RGB")).copy()).permute(2, 0, 1)[None] / 255
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (64 - w % 64) % 64, 0, (64 - h % 64) % 64))  # Inference.py: right/bottom, zeros
    a = model.gain[level].abs()
    with torch.no_grad():
        y = model.g_a(xp)
        z = model.h_a(torch.abs(y))
        z_strings = model.entropy_bottleneck.compress(z)
        z_hat = model.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        indexes = model.gaussian_conditional.build_indexes(model.h_s(z_hat) * a)
        y_strings = model.gaussian_conditional.compress(y * a, indexes)
    official_bpp = 8 * (len(y_strings[0]) + len(z_strings[0])) / (h * w)

    bpp = {}
    for how in ("official", "centred"):
        out = tmp_path / f"run-{how}"
        r = run_cli("sweep", "-c", tmp_path / "official.pth.tar", "--dataset", data, "--out", out, "--levels",
                    str(level), "--factors", "none", "--padding", how, "--no-progress")  # fmt: skip
        assert r.returncode == 0, r.stderr
        (row,) = ResultStore(out).read().to_dict("records")
        bpp[how] = row["payload_bpp_real"]
    assert bpp["official"] == official_bpp
    assert bpp["centred"] != official_bpp
