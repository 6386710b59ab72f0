"""The method contract: QVRF through it gives the codec's own strings; both engines agree; the
version-3 container round-trips and refuses what it did not write; a plain CompressAI model wraps."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import torch
from helpers import small_model

from qvrf_bench.bitstream import container
from qvrf_bench.errors import BitstreamError
from qvrf_bench.methods import codec
from qvrf_bench.methods import engine as M
from qvrf_bench.methods.fixed import CompressAIFixed
from qvrf_bench.methods.qvrf import QVRFMethod


def _rgb(h=40, w=72, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(h, w, 3, generator=g) * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("arch", ["balle", "minnen-mean", "minnen"])
def test_qvrf_through_the_contract_gives_the_codecs_strings_and_images(arch):
    model = small_model(arch)
    method = QVRFMethod(model)
    fp = method.fingerprint()
    points = [method.rate_points()[0], method.rate_points()[5], method.continuous_point(2.345)]
    rgb = _rgb()
    fast = M.MethodEngine("fast").run_image(method, rgb, points, fp)
    serial = M.MethodEngine("serial").run_image(method, rgb, points, fp)
    x = codec.images.rgb8_to_tensor(rgb)
    ref = [
        codec.encode_tensor(model, x, level=0),
        codec.encode_tensor(model, x, level=5),
        codec.encode_tensor(model, x, gain=2.345),
    ]  # fmt: skip  (the model's own compress)
    for f, s, r in zip(fast, serial, ref, strict=True):
        assert f.data == s.data and np.array_equal(f.rgb, s.rgb) and f.decode_ok and s.decode_ok
        _, ref_strings = codec.unpack(r.data)
        _, strings = container.unpack_method(f.data)
        assert strings == ref_strings  # y then z: the same entropy-coded bytes as codec.py writes
        assert np.array_equal(f.rgb, codec.decode(model, r.data))
        assert f.payload_bytes == r.payload_bytes and len(f.data) == len(r.data) + 2  # the v3 header
    # the one-image codec decodes what the engine wrote, to the same point
    x_hat, _, point = M.decode_bytes(method, fast[2].data)
    assert point == points[2] and np.array_equal(codec.images.tensor_to_rgb8(x_hat), fast[2].rgb)


def test_the_container_refuses_other_methods_and_broken_side_information():
    model = small_model("balle")
    method = QVRFMethod(model)
    ((data, _),) = M.encode_image(method, _rgb(), [method.rate_points()[1]])
    header, _ = container.unpack_method(data)
    assert header.method_id == "qvrf" and header.arch == "balle" and len(header.side_info) == 5
    other = QVRFMethod(small_model("balle", seed=1))
    with pytest.raises(BitstreamError, match="fingerprint"):
        M.decode_bytes(other, data)
    with pytest.raises(BitstreamError, match="method container"):
        codec.decode(model, data)  # the version-2 reader names the format it met
    # level 1 with a gain that is not level 1's
    h = container.MethodHeader(
        "balle", "qvrf", header.fingerprint, 40, 72, header.padding, b"\x01" + b"\x3f\x80\x00\x00"
    )
    _, strings = container.unpack_method(data)
    with pytest.raises(BitstreamError, match="not level 1's"):
        M.decode_bytes(method, container.pack_method(h, strings))
    for cut in (3, 10, 30, len(data) - 1):
        with pytest.raises(BitstreamError):
            M.decode_bytes(method, data[:cut])


def test_a_plain_compressai_model_wraps_with_no_code():
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    net = ScaleHyperprior(N=8, M=12)
    net.update(force=True)
    method = CompressAIFixed(net, "plain", "balle")
    (r,) = M.MethodEngine("fast").run_image(method, _rgb(), method.rate_points(), method.fingerprint())
    # the image is CompressAI's own decompress of CompressAI's own compress
    x = codec.images.rgb8_to_tensor(_rgb())
    pad = codec.images.centred_padding(40, 72)
    out = net.compress(codec.images.pad(x, pad))
    ref = net.decompress(out["strings"], out["shape"])["x_hat"]
    assert np.array_equal(r.rgb, codec.images.tensor_to_rgb8(codec.images.crop(ref, pad)))
    assert r.decode_ok and r.payload_bytes == 4 + sum(len(s[0]) for s in out["strings"])


def test_sweep_measures_a_method_spec_with_rows_of_its_own(tmp_path):
    """``sweep --method qvrf=CKPT`` beside ``-c CKPT``: same payload bytes and PSNR per level; the
    both say the kind the model is (qvrf) and decode_check 'latent'; a rerun resumes with nothing to do."""
    from helpers import run_cli
    from PIL import Image

    from qvrf_bench.models.checkpoints import save_checkpoint
    from qvrf_bench.results.store import ResultStore

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, small_model("balle"))
    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(_rgb(48, 64)).save(data / "a.png")
    args = ["sweep", "--dataset", data, "--out", tmp_path / "run", "-c", ckpt, "--method", f"qvrf={ckpt}",
            "--levels", "0,3", "--factors", "none", "--no-progress"]  # fmt: skip
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    df = ResultStore(tmp_path / "run").read()
    assert set(df["kind"]) == {"qvrf"}  # what the model is, however it came in
    contract = df[df["method"].str.endswith("-method")]
    own = df[~df["method"].str.endswith("-method")]
    assert len(own) == 2 and len(contract) == 2
    assert set(contract["decode_check"]) == {"latent"} and set(own["decode_check"]) == {"latent"}
    assert contract["decode_ok"].all() and (df["engine"] == "fast").all()
    for lv in ("level=0", "level=3"):
        a, b = own[own["rate_point"] == lv].iloc[0], contract[contract["rate_point"] == lv].iloc[0]
        assert a["payload_bytes"] == b["payload_bytes"] and a["psnr_rgb"] == b["psnr_rgb"]
    r = run_cli(*args)
    assert r.returncode == 0 and len(ResultStore(tmp_path / "run").read()) == 4
    # matched-rate targets: the method's rate search (its continuous_range) as the checkpoint's; a
    # method without a continuous knob (a wrapped fixed-rate CompressAI model) is said to get none
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    plain = ScaleHyperprior(N=8, M=12)
    plain.update(force=True)
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    target = float(own[own["rate_point"] == "level=3"]["bpp_real"].iloc[0])  # reachable on this image
    r = run_cli(*args[:4], tmp_path / "run-t", *args[5:], "--method", f"compressai-fixed={tmp_path / 'plain.pt'}",
                "--target-bpp", f"{target:.4f}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "no matched-rate rows for compressai-balle-plain" in r.stderr
    df = ResultStore(tmp_path / "run-t").read()
    rows = df[df["target_bpp"].notna()]
    assert sorted(rows["kind"]) == ["qvrf", "qvrf"] and rows["decode_ok"].all(), rows[["kind", "error"]]
    assert (rows["bpp_real"] <= target + 1e-9).all() and (rows["target_encodes"] > 0).all()
    # both searched the trained gains; the version-3 header is 2 bytes longer than version 2's, so
    # the two searches may stop at different gains under the same target
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.models.qvrf import trained_gains

    lo, hi = trained_gains(load_model(ckpt)[0])
    assert rows["gain"].notna().all() and rows["gain"].between(lo * (1 - 1e-6), hi * (1 + 1e-6)).all()


def test_encode_info_decode_with_a_method(tmp_path):
    from helpers import run_cli
    from PIL import Image

    from qvrf_bench.models.checkpoints import save_checkpoint

    save_checkpoint(tmp_path / "m.pt", small_model("balle"))
    Image.fromarray(_rgb(48, 64)).save(tmp_path / "a.png")
    spec = f"qvrf={tmp_path / 'm.pt'}"
    for args in (["--level", 4], ["--value", 3.3]):
        r = run_cli("encode", "--method", spec, *args, tmp_path / "a.png", tmp_path / "a.qvrf")
        assert r.returncode == 0, r.stderr
        r = run_cli("info", tmp_path / "a.qvrf")
        assert r.returncode == 0 and "format 3" in r.stdout and "method qvrf" in r.stdout, r.stdout + r.stderr
        r = run_cli("decode", "--method", spec, tmp_path / "a.qvrf", tmp_path / "a-dec.png")
        assert r.returncode == 0, r.stderr
        label = "level=4" if args[0] == "--level" else "gain=3.3000"
        assert label in r.stdout
    r = run_cli("decode", "-c", tmp_path / "m.pt", tmp_path / "a.qvrf", tmp_path / "x.png")
    assert r.returncode == 2 and "method container" in r.stderr
    # a target through the method's knob: the same search as -c's, and the file meets it
    r = run_cli("encode", "-c", tmp_path / "m.pt", "--level", 3, tmp_path / "a.png", tmp_path / "l3.qvrf")
    assert r.returncode == 0, r.stderr
    target = (tmp_path / "l3.qvrf").stat().st_size * 8 / (48 * 64) + 0.05
    for how in (["--method", spec], ["-c", tmp_path / "m.pt"]):
        r = run_cli("encode", *how, "--bpp", f"{target:.4f}", tmp_path / "a.png", tmp_path / "t.qvrf")
        assert r.returncode == 0, r.stderr
        # never above the target; 1 byte is 0.0026 bpp here, so the 1 % window may hold no point
        assert 0.95 * target <= (tmp_path / "t.qvrf").stat().st_size * 8 / (48 * 64) <= target, r.stdout + r.stderr
        r = run_cli("decode", *how, tmp_path / "t.qvrf", tmp_path / "t.png")
        assert r.returncode == 0, r.stderr
    r = run_cli("encode", "--method", "no.such.module:make", tmp_path / "a.png", tmp_path / "b.qvrf")
    assert r.returncode == 2 and "cannot load it" in r.stderr


def test_compressai_vbr_through_the_contract_is_the_models_own_coding(tmp_path):
    """CompressAI's VBR model (gain + quantization offset) as a method: the same strings and image
    as the --vbr peer codes, in the version-3 container."""
    from helpers import narrow_vbr

    from qvrf_bench import peers
    from qvrf_bench.methods import make

    model = narrow_vbr("mbt2018-mean-vbr", True)
    torch.save(model.state_dict(), tmp_path / "vbr.pt")
    method = make(f"compressai-vbr=mbt2018-mean-vbr:{tmp_path / 'vbr.pt'}")
    peer = peers.get_peer("mbt2018-mean-vbr", checkpoint=tmp_path / "vbr.pt")
    rgb = _rgb(50, 70)
    res = M.MethodEngine("fast").run_image(method, rgb, method.rate_points(), method.fingerprint())
    assert [r.point.value for r in res] == [float(np.float32(q)) for q in peer.rate_points()]  # the stored steps
    for r in res:
        data = peer.encode(rgb, r.point.value)
        assert r.decode_ok and np.array_equal(r.rgb, peer.decode(data))
        assert r.payload_bytes == peer.payload_size(data)
        assert container.unpack_method(r.data)[0].side_info == struct.pack(">f", r.point.value)
    with pytest.raises(Exception, match="ARCH:STATEDICT"):
        make(f"compressai-vbr={tmp_path / 'vbr.pt'}")


def test_a_package_announces_its_method_through_the_entry_point_group(tmp_path, monkeypatch):
    """An installed distribution (a dist-info folder on the path, as pip leaves it) with an entry point
    in group qvrf_bench.methods is found by name."""
    from qvrf_bench.methods import make
    from qvrf_bench.methods.registry import names
    from qvrf_bench.models.checkpoints import save_checkpoint

    pkg = tmp_path / "my_methods"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from qvrf_bench.methods.qvrf import make as qvrf_make\n\n"
        "def make(checkpoint=None, device='cpu'):\n"
        "    m = qvrf_make(checkpoint, device)\n    m.name = 'mine'\n    return m\n"
    )
    info = tmp_path / "my_methods-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-methods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qvrf_bench.methods]\nmy-method = my_methods:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    save_checkpoint(tmp_path / "m.pt", small_model("balle"))
    assert "my-method" in names()
    assert make(f"my-method={tmp_path / 'm.pt'}").name == "mine"


@pytest.mark.parametrize("arch", ["balle", "minnen"])
def test_damaged_method_containers_decode_or_fail_with_one_line(arch):
    """Bit flips anywhere (header, side information, strings), cuts and zeroed strings: decoding a
    format-3 file gives an image of the stated size or a BitstreamError naming the file, never a crash
    (every string reaches the rANS decoder zero-padded)."""
    method = QVRFMethod(small_model(arch))
    fp = method.fingerprint()
    (good, _), (cont, _) = M.encode_image(method, _rgb(), [method.rate_points()[6], method.continuous_point(3.3)], fp)
    g = np.random.default_rng(0)
    cases = [d[:cut] for d in (good, cont) for cut in (5, 20, 44, len(d) // 2, len(d) - 4)]
    for d in (good, cont):
        for pos in g.integers(0, len(d), 25):
            b = bytearray(d)
            b[int(pos)] ^= 1 << int(g.integers(0, 8))
            cases.append(bytes(b))
        header, strings = container.unpack_method(d)
        cases.append(container.pack_method(header, [bytes(len(strings[0])), strings[1]]))
        cases.append(container.pack_method(header, [bytes([255]) * len(strings[0]), strings[1]]))
    outcomes = {"decoded": 0, "refused": 0}
    for data in cases:
        try:
            x_hat, _, _ = M.decode_bytes(method, data, "damaged.qvrf", fp)
        except BitstreamError as exc:
            assert str(exc).startswith("damaged.qvrf: ") and "\n" not in str(exc)
            outcomes["refused"] += 1
        else:
            assert tuple(x_hat.shape[-2:]) == (40, 72)
            outcomes["decoded"] += 1
    assert outcomes["refused"] >= 10 and outcomes["decoded"] >= 1, outcomes


def test_cross_decode_of_a_method_in_a_second_process(tmp_path):
    """``--decode-threads`` on ``--method`` rows: the worker builds the method from the same spec and
    its rebuilt latent is the encoder's, bit for bit; a wrong latent, a cut bitstream and an image-
    checked method are told apart."""
    from PIL import Image

    from qvrf_bench.methods.registry import make
    from qvrf_bench.models.checkpoints import save_checkpoint
    from qvrf_bench.results.store import ResultStore
    from qvrf_bench.sweep.crossdecode import CrossDecoder
    from qvrf_bench.sweep.run import SweepConfig, run_sweep

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, small_model("minnen-mean"))
    spec = f"qvrf={ckpt}"
    method = make(spec)
    rgb = _rgb(40, 56)
    (res,) = M.run_points(method, rgb, method.rate_points()[2:3], method.fingerprint(), 1)
    cross = CrossDecoder("cpu", threads=2)
    try:
        point = method.rate_points()[2]
        good = cross.check(spec, method, point, res.data, res.rebuilt, res.rgb)
        assert (
            good["cross_decode_ok"] and good["cross_decode_exact"] and good["cross_decode_device"] == "cpu, 2 threads"
        )
        wrong = cross.check(spec, method, point, res.data, res.rebuilt + 10, res.rgb)  # other cells
        assert not wrong["cross_decode_ok"] and not wrong["cross_decode_exact"]
        cut = cross.check(spec, method, point, res.data[:20], res.rebuilt, res.rgb)
        assert not cut["cross_decode_ok"] and "cross-decode failed" in cut["notice"]
        decodes = type("Decodes", (), {"decode_check": "decodes"})()
        anyway = cross.check(spec, decodes, point, res.data, None, res.rgb)  # nothing to compare: it decoded
        assert anyway["cross_decode_ok"] and anyway["cross_decode_psnr_db"] == float("inf")
    finally:
        cross.close()

    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(rgb).save(data / "a.png")
    run_sweep(SweepConfig(dataset=data, out=tmp_path / "run", methods=[spec], levels="0,7", factors="none",
                          device="cpu", threads=1, decode_threads=2, progress=False))  # fmt: skip
    df = ResultStore(tmp_path / "run").read()
    assert len(df) == 2 and df["cross_decode_ok"].all() and df["cross_decode_exact"].all(), df["notices"]


def test_format_3_refuses_what_format_2_refuses():
    """QVRF in the method container checks its strings as format 2 does: their count and their rANS
    framing, before any is decoded (before: a garbage image and exit 0)."""
    model = small_model("balle")
    method = QVRFMethod(model)
    fp = method.fingerprint()
    ((data, _),) = M.encode_image(method, _rgb(), method.rate_points()[2:3])
    header, (y, z) = container.unpack_method(data)
    assert method.unpack(data, "ok.qvrf", fp).strings == [y]
    for strings, message in (
        ([y, z, z], "string count is 3, not 2 (y and z)"),
        ([b"", z], "y string length 0 is not a whole number of 32-bit words >= 8 bytes"),
        ([y, z[:3]], "z string length 3 is not a whole number"),
        ([y[:-2], z], f"y string length {len(y) - 2} is not a whole number"),
    ):
        bad = container.pack_method(header, strings)
        with pytest.raises(BitstreamError, match=re.escape(f"bad.qvrf: corrupt header: {message}")):
            method.unpack(bad, "bad.qvrf", fp)
        with pytest.raises(BitstreamError, match="corrupt header"):
            M.decode_bytes(method, bad)
