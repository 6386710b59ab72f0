import io

import numpy as np
import pytest
import torch
from helpers import narrow_vbr
from PIL import Image

from qvrf_bench import peers
from qvrf_bench.errors import BitstreamError, CheckpointError, QVRFError
from qvrf_bench.images import centred_padding, crop, pad, rgb8_to_tensor, tensor_to_rgb8
from qvrf_bench.metrics import bpp, psnr_rgb

CLASSICAL = list(peers.CLASSICAL)


def synthetic(h=64, w=96, seed=0):
    """A gradient plus noise: structure for the transforms, noise so no codec is lossless."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 2 % 256], -1)
    noise = np.random.default_rng(seed).integers(-20, 21, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[128:384, 128:384])  # 256x256 crop: a real photo, fast


# --- classical codecs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_roundtrip_gives_real_bytes(name):
    peer = peers.get_peer(name)
    x = synthetic()
    rate = peer.rate_points()[len(peer.rate_points()) // 2]
    data = peer.encode(x, rate)
    assert isinstance(data, bytes) and len(data) > 0
    rec = peer.decode(data)
    assert rec.shape == x.shape and rec.dtype == np.uint8
    # the bytes are a real file: Pillow alone decodes them to the same pixels
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), rec)
    assert peer.payload_size(data) == len(data)
    assert 0 < bpp(len(data), 64, 96) < 24
    assert 15 < psnr_rgb(x, rec) < 60


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_rate_points_are_ordered_and_labelled(name, photo):
    peer = peers.get_peer(name)
    points = peer.rate_points()
    labels = [peer.rate_label(r) for r in points]
    assert len(set(labels)) == len(points) >= 5
    assert peer.rate_columns(points[0])["quality"] == float(points[0])
    # increasing bitrate and quality along the sweep (ends and middle: enough to catch a reversed list)
    picks = [points[0], points[len(points) // 2], points[-1]]
    sizes, quals = [], []
    for r in picks:
        data = peer.encode(photo, r)
        sizes.append(len(data))
        quals.append(psnr_rgb(photo, peer.decode(data)))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert quals[0] < quals[-1]


def test_labels():
    assert peers.get_peer("jpeg").rate_label(75) == "q=75"
    assert peers.get_peer("jpeg2000").rate_label(48) == "ratio=48"


@pytest.mark.parametrize("name", CLASSICAL)
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (16, 16), (33, 65)])
def test_classical_tiny_and_odd_sizes(name, shape):
    peer = peers.get_peer(name)
    x = synthetic(*shape)
    rec = peer.decode(peer.encode(x, peer.rate_points()[-1]))
    assert rec.shape == x.shape


def test_jpeg2000_hits_the_ratio(photo):
    peer = peers.get_peer("jpeg2000")
    for ratio in (96, 24):
        data = peer.encode(photo, ratio)
        assert bpp(len(data), 256, 256) == pytest.approx(24 / ratio, rel=0.05)


def test_jpeg_options_are_honoured(photo):
    small = peers.get_peer("jpeg").encode(photo, 75)
    full = peers.get_peer("jpeg", subsampling="4:4:4").encode(photo, 75)
    assert len(full) > len(small)  # 4:4:4 keeps all chroma
    with Image.open(io.BytesIO(small)) as im:
        assert im.layer[1][1:3] == (1, 1) and im.layer[0][1:3] == (2, 2)  # 4:2:0 sampling factors


def test_avif_is_deterministic_single_threaded(photo):
    peer = peers.get_peer("avif")
    assert peer.max_threads == 1 and peer.subsampling == "4:4:4"
    assert peer.encode(photo, 45) == peer.encode(photo, 45)


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_bad_data_and_rates(name):
    peer = peers.get_peer(name)
    with pytest.raises(BitstreamError, match=f"{name}: cannot decode a 9-byte bitstream"):
        peer.decode(b"not image")
    with pytest.raises(QVRFError):
        peer.encode(synthetic(), -5)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        peer.encode(synthetic().astype(np.float32), peer.rate_points()[0])


def test_codec_versions_and_config():
    assert "libjpeg-turbo" in peers.get_peer("jpeg").codec_version
    assert "libwebp" in peers.get_peer("webp").codec_version
    assert "libavif" in peers.get_peer("avif").codec_version
    assert "OpenJPEG" in peers.get_peer("jpeg2000").codec_version
    cfg = peers.get_peer("avif", sweep=[10, 20], speed=8).config()
    assert cfg == {"name": "avif", "sweep": [10.0, 20.0], "options": {"speed": 8, "subsampling": "4:4:4",
                                                                      "max_threads": 1}}  # fmt: skip


def test_registry_errors():
    assert set(peers.list_peers()) == set(CLASSICAL) | set(peers.VBR_ARCHS)
    with pytest.raises(QVRFError, match="unknown peer 'bpg'"):
        peers.get_peer("bpg")
    with pytest.raises(QVRFError, match="needs a local checkpoint"):
        peers.get_peer("mbt2018-mean-vbr")
    with pytest.raises(QVRFError, match="bad option"):
        peers.get_peer("jpeg", colour="blue")
    with pytest.raises(QVRFError, match="quality must be an integer"):
        peers.get_peer("webp", sweep=[50.5])


# --- CompressAI VBR models ------------------------------------------------------------------------

VBR_CASES = [
    ("bmshj2018-hyperprior-vbr", True),  # the zoo weights have the variable-rate z bottleneck
    ("bmshj2018-hyperprior-vbr", False),
    ("mbt2018-mean-vbr", True),
    ("mbt2018-vbr", False),
]


def reference_decode(model, x, qstep, vr_z):
    """The model's own compress/decompress at eval_model's settings (same padding), 8-bit rounded."""
    scale = torch.tensor(1.0 / qstep)
    if vr_z:
        model.update(force=True, scale=scale)
    p = centred_padding(x.shape[0], x.shape[1], 64)
    with torch.no_grad():
        out = model.compress(pad(rgb8_to_tensor(x), p), stage=2, s=0, inputscale=scale)
        dec = model.decompress(out["strings"], out["shape"], stage=2, s=0, inputscale=scale)
    return out, tensor_to_rgb8(crop(dec["x_hat"], p))


@pytest.mark.parametrize("arch, vr_z", VBR_CASES)
def test_vbr_roundtrip_equals_the_models_own_decoder(tmp_path, arch, vr_z):
    model = narrow_vbr(arch, vr_z)
    ckpt = tmp_path / "vbr.pth.tar"
    # the layouts eval_model accepts: wrapped, DataParallel prefix
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, ckpt)
    peer = peers.get_peer(arch, checkpoint=ckpt, qsteps=[4.0, 1.0])
    assert peer.rate_points() == [4.0, 1.0] and peer.rate_label(1.0) == "qstep=1.0000"
    assert peer.rate_columns(4.0)["gain"] == 0.25
    x = synthetic(50, 70)  # not a multiple of 64: centred padding and crop
    sizes = []
    for qstep in peer.rate_points():
        data = peer.encode(x, qstep)
        rec = peer.decode(data)
        out, ref = reference_decode(model, x, qstep, vr_z)
        assert np.array_equal(rec, ref)
        (y,), (z,) = out["strings"]
        assert data.endswith(y + z)  # the payload is the model's own strings
        assert peer.payload_size(data) == len(y) + len(z)
        assert len(data) == peer.payload_size(data) + peers.CVBR_HEADER_SIZE == len(y) + len(z) + 36
        sizes.append(len(data))
    assert sizes[0] < sizes[1]  # smaller step, more bits


def test_vbr_default_steps_are_eval_models():
    assert peers.DEFAULT_VBR_QSTEPS == (10.0, 7.1715, 5.1832, 3.7211, 2.6833, 1.9305, 1.3897, 1.0)


def test_vbr_loads_state_dict_saved_before_update(tmp_path):
    model = narrow_vbr("mbt2018-mean-vbr", True, updated=False)
    torch.save(model.state_dict(), tmp_path / "raw.pth")
    peer = peers.get_peer("mbt2018-mean-vbr", checkpoint=tmp_path / "raw.pth")
    x = synthetic()
    assert peer.decode(peer.encode(x, 2.0)).shape == x.shape


def test_vbr_bitstream_checks(tmp_path):
    torch.save(narrow_vbr("bmshj2018-hyperprior-vbr", False).state_dict(), tmp_path / "a.pth")
    torch.save(narrow_vbr("bmshj2018-hyperprior-vbr", False, seed=1).state_dict(), tmp_path / "b.pth")
    a = peers.get_peer("bmshj2018-hyperprior-vbr", checkpoint=tmp_path / "a.pth")
    b = peers.get_peer("bmshj2018-hyperprior-vbr", checkpoint=tmp_path / "b.pth")
    data = a.encode(synthetic(), 2.0)
    with pytest.raises(BitstreamError, match="another bmshj2018-hyperprior-vbr checkpoint"):
        b.decode(data)
    with pytest.raises(BitstreamError, match="truncated"):
        a.decode(data[:-3])
    with pytest.raises(BitstreamError, match="not a CompressAI VBR bitstream"):
        a.decode(b"JUNK" + data[4:])
    with pytest.raises(BitstreamError, match="version 9"):
        a.decode(data[:4] + b"\x09" + data[5:])
    with pytest.raises(QVRFError, match="positive"):
        a.encode(synthetic(), 0.0)


def test_vbr_container_is_pure_and_roundtrips():
    data = peers.vbr_container_pack(2, 2, 0, 7.1715, 50, 70, (3, 3, 7, 7), b"\x01\x02\x03\x04", b"yy", b"zzz")
    c = peers.vbr_container_unpack(data)
    assert c["arch"] == "mbt2018-vbr" and c["height"] == 50 and c["width"] == 70
    assert c["padding"] == (3, 3, 7, 7) and c["y"] == b"yy" and c["z"] == b"zzz"
    assert c["qstep"] == pytest.approx(7.1715, rel=1e-7)


def test_vbr_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: no such file"):
        peers.get_peer("mbt2018-vbr", checkpoint=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"junk.pth: not a checkpoint \(neither a PyTorch zip archive"):
        peers.get_peer("mbt2018-vbr", checkpoint=tmp_path / "junk.pth")
    # a pickled object that is not a tensor: weights_only refuses to run its code, and the message is
    # the checkpoint loader's (never torch's advice to set weights_only=False)
    torch.save({"state_dict": {}, "obj": np.random.default_rng(0)}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match="obj.pth: refused: an unsafe pickle") as e:
        peers.get_peer("mbt2018-vbr", checkpoint=tmp_path / "obj.pth")
    assert "weights_only" not in str(e.value)
    torch.save({"g_a.0.weight": torch.zeros(1)}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="partial.pth: not a mbt2018-vbr state dict .no 'g_a.6.weight'"):
        peers.get_peer("mbt2018-vbr", checkpoint=tmp_path / "partial.pth")
    # the wrong architecture: a hyperprior state dict for the joint model
    torch.save(narrow_vbr("bmshj2018-hyperprior-vbr", False).state_dict(), tmp_path / "hyper.pth")
    with pytest.raises(CheckpointError, match=r"hyper.pth: does not fit mbt2018-vbr \(N=8, M=12\)"):
        peers.get_peer("mbt2018-vbr", checkpoint=tmp_path / "hyper.pth")


def test_row_fields_fit_the_store_schema(tmp_path):
    from qvrf_bench.results import store

    torch.save(narrow_vbr("mbt2018-mean-vbr", True).state_dict(), tmp_path / "m.pth")
    vbr = peers.get_peer("mbt2018-mean-vbr", checkpoint=tmp_path / "m.pth")
    rows = []
    for peer in [peers.get_peer(n) for n in CLASSICAL] + [vbr]:
        rate = peer.rate_points()[0]
        data = peer.encode(synthetic(), rate)
        rows.append(
            dict(
                peer.row_fields(rate),
                image="synthetic.png",
                width=96,
                height=64,
                bytes=len(data),
                payload_bytes=peer.payload_size(data),
                decode_ok=True,
            )
        )
    table = store.rows_to_table(rows, {})
    assert table.column("kind").to_pylist() == ["classical"] * len(CLASSICAL) + ["vbr"]
    assert rows[-1]["checkpoint_sha256"] == store.sha256_file(tmp_path / "m.pth")
    assert rows[-1]["rate_point"] == "qstep=10.0000" and rows[-1]["gain"] == pytest.approx(0.1)
    assert rows[0]["rate_point"] == "q=5" and rows[0]["quality"] == 5.0 and rows[0]["checkpoint"] == ""


# --- a codec registered from this file (no package file touched) --------------------------------


def test_a_toy_codec_reaches_sweep_and_encode(tmp_path):
    """A classical codec is one class: its knob declared on it (range, direction, suffix); sweep --peers,
    encode --codec X --bpp and rate control find it by name."""
    import io as _io

    from helpers import run_cli
    from PIL import Image

    from qvrf_bench.peers import CLASSICAL, PillowCodec, register_codec
    from qvrf_bench.results.store import ResultStore

    @register_codec
    class Posterize(PillowCodec):
        """PNG of the image quantized to ``2 ** bits`` levels per channel: more bits, more bytes."""

        name = arch = "toy-posterize"
        pil_format, suffix, knob, knob_range = "PNG", ".toy.png", "bits", (1, 8)
        default_sweep = (2, 4, 6)

        def encode(self, rgb8, rate):
            step = 2 ** (8 - self._check_rate(rate))
            q = (rgb8 // step) * step + step // 2
            buf = _io.BytesIO()
            Image.fromarray(q.astype(np.uint8)).save(buf, format="PNG")
            return buf.getvalue()

    try:
        rng = np.random.default_rng(1)
        data = tmp_path / "imgs"
        data.mkdir()
        y, x = np.mgrid[0:48, 0:64]
        img = (np.stack([x * 4, y * 5, (x + y) * 2], -1) + rng.normal(0, 3, (48, 64, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(data / "a.png")
        p = run_cli("sweep", "--dataset", data, "--out", tmp_path / "run", "--peers", "toy-posterize", "--no-progress")
        assert p.returncode == 0, p.stderr
        df = ResultStore(tmp_path / "run").read().sort_values("quality")
        assert list(df["rate_point"]) == ["q=2", "q=4", "q=6"] and df["decode_ok"].all()
        assert df["kind"].eq("classical").all() and df["bytes"].is_monotonic_increasing
        assert df["psnr_rgb"].is_monotonic_increasing
        target = float(df["bpp_real"].iloc[1]) * 1.02  # between 4 and 5 bits
        e = run_cli("encode", "--codec", "toy-posterize", "--bpp", target, data / "a.png", f"{tmp_path}/out/")
        assert e.returncode == 0, e.stderr
        (out,) = (tmp_path / "out").iterdir()
        assert out.name == "a.toy.png" and "toy-posterize bits 4," in e.stdout
        assert 8 * out.stat().st_size / (48 * 64) <= target
    finally:
        CLASSICAL.pop("toy-posterize", None)
