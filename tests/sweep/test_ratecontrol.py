"""Rate control: the search (pure), real bytes at the found gain, classical codecs, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import run_cli, small_model

from qvrf_bench import images, metrics
from qvrf_bench.bitstream.gains import GAIN_MAX, GAIN_MIN
from qvrf_bench.methods import codec
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models.qvrf import trained_gains
from qvrf_bench.sweep import ratecontrol
from qvrf_bench.sweep.ratecontrol import Target, TargetError, search_gain, search_quality


def smooth(g: float) -> tuple[float, None]:
    """A monotone rate curve, like a model's: bpp grows ~ with log gain."""
    return 0.05 + 0.4 * math.log1p(3 * g), None


# --- the search, pure ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.2, 0.37, 0.5, 0.6])
def test_search_gain_lands_in_the_window_in_few_tries(value):
    t = Target("bpp", value)
    res = search_gain(smooth, t, (0.1, 1.0))
    lo, hi = t.window
    assert res.met and lo <= res.achieved <= hi and res.achieved <= value
    assert res.achieved == pytest.approx(smooth(res.knob)[0])
    plain = search_gain(smooth, t, (0.1, 1.0), interpolate=False)
    assert plain.met and len(res.tries) <= len(plain.tries) and len(res.tries) <= 8


def test_quality_target_is_never_below_and_within_tolerance():
    psnr = lambda g: (24 + 4 * math.log(g * 10), None)  # noqa: E731
    res = search_gain(psnr, Target("psnr", 27.3, 0.02), (0.1, 1.0))
    assert res.met and 27.3 <= res.achieved <= 27.32


def test_unreachable_target_names_the_range_and_extrapolation_reaches_it():
    with pytest.raises(TargetError, match=r"below what M reaches: .*\(gains 0\.1 \.\. 1\).*--extrapolate"):
        search_gain(smooth, Target("bpp", 0.1), (0.1, 1.0), what="M")
    with pytest.raises(TargetError, match="above what M reaches"):
        search_gain(smooth, Target("bpp", 2.0), (0.1, 1.0), what="M")
    res = search_gain(smooth, Target("bpp", 0.1), (0.1, 1.0), extrapolate=True)
    assert res.met and res.knob < 0.1
    res = search_gain(smooth, Target("bpp", 2.0), (0.1, 1.0), extrapolate=True)
    assert res.met and res.knob > 1.0 and res.knob <= GAIN_MAX
    # beyond even the supported range: still one clear error, no extrapolate hint
    with pytest.raises(TargetError) as e:
        search_gain(smooth, Target("bpp", 50.0), (0.1, 1.0), extrapolate=True)
    assert "--extrapolate" not in str(e.value) and f"{GAIN_MAX:.4g}" in str(e.value)
    # a fixed-rate model (one gain) says so
    with pytest.raises(TargetError, match="at its one gain 1"):
        search_gain(smooth, Target("bpp", 0.3), (1.0, 1.0))


def test_a_window_too_narrow_for_the_knob_keeps_the_safe_side():
    steps = lambda g: (round(10 * g) / 10 + 0.05, None)  # jumps of 0.1 bpp  # noqa: E731
    res = search_gain(steps, Target("bpp", 0.5, 0.01), (0.1, 1.0))
    assert not res.met and res.achieved <= 0.5 and res.achieved == pytest.approx(0.45)
    assert "window" in res.note()
    res = search_gain(steps, Target("bpp", 0.5, 0.01), (0.1, 1.0), max_tries=4)
    assert res.achieved <= 0.5 and len(res.tries) == 4


def test_search_quality_integer_knob():
    sizes = {q: 1000 + 40 * q for q in range(0, 101)}
    res = search_quality(lambda q: (float(sizes[q]), q), Target("bytes", 3000), (1, 95))
    assert res.knob == 50 and res.achieved == 3000 and res.met
    res = search_quality(lambda q: (float(sizes[q]), q), Target("bytes", 3030), (1, 95))
    assert res.knob == 50 and res.met  # 3000 is within 1 % below 3030
    res = search_quality(lambda q: (20 + q / 5, q), Target("psnr", 30.1), (0, 100))
    assert res.knob == 51 and res.achieved >= 30.1
    with pytest.raises(TargetError, match="below what jpeg reaches"):
        search_quality(lambda q: (float(sizes[q]), q), Target("bytes", 500), (1, 95), what="jpeg")


@pytest.mark.parametrize("bad", [dict(kind="bpp", value=0), dict(kind="bpp", value=float("nan")),
                                 dict(kind="bpp", value=1, tolerance=1.0), dict(kind="psnr", value=30, tolerance=-1)])  # fmt: skip
def test_bad_targets_are_refused(bad):
    with pytest.raises(Exception, match="target|tolerance"):
        Target(**bad)


# --- real bytes -----------------------------------------------------------------------------------


def _photo(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("arch", ["balle", "minnen-mean", "minnen", "cheng2020"])
def test_target_bytes_equal_a_plain_encode_at_the_found_gain(arch):
    model = small_model(arch)
    rgb = _photo()
    lo, hi = trained_gains(model)
    probe = ratecontrol.MethodProbe(QVRFMethod(model, container=2), rgb, "bytes")
    b_lo, b_hi = probe(lo)[0], probe(hi)[0]
    assert b_hi > b_lo
    target = Target("bytes", round((b_lo + b_hi) / 2), 0.05)
    res, data, _ = ratecontrol.method_to_target(QVRFMethod(model, container=2), rgb, target)
    assert res.met and len(data) <= target.value and len(data) == res.achieved
    plain = codec.encode_tensor(model, images.rgb8_to_tensor(rgb), gain=res.knob)
    assert plain.data == data  # the search's container is the serial encoder's
    header, _ = codec.unpack(data)
    assert header.gain == res.knob and header.level is None
    assert codec.decode(model, data).shape == rgb.shape


def test_psnr_and_bpp_targets_on_a_trained_zoo_model():
    """A trained model (the shipped zoo's balle QVRF) on a Kodak crop: quality grows with the gain,
    and the PSNR the search measured is the decoded file's."""
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.train import zoo as zoo_train

    model, _ = load_model("zoo:balle-qvrf8")
    rgb = zoo_train.check_crop()
    lo, hi = trained_gains(model)
    probe = ratecontrol.MethodProbe(QVRFMethod(model, container=2), rgb, "psnr")
    p_lo, p_hi = probe(lo)[0], probe(hi)[0]
    assert p_hi > p_lo + 1
    goal = (p_lo + p_hi) / 2
    res, data, _ = ratecontrol.method_to_target(QVRFMethod(model, container=2), rgb, Target("psnr", goal))
    decoded = metrics.psnr_rgb(rgb, codec.decode(model, data))
    assert res.met and decoded == pytest.approx(res.achieved, abs=1e-9) and goal <= decoded <= goal + 0.05
    res, data, _ = ratecontrol.method_to_target(QVRFMethod(model, container=2), rgb, Target("bpp", 0.5))
    assert res.met and 0.495 <= metrics.bpp(len(data), *rgb.shape[:2]) <= 0.5
    assert len(res.tries) <= 8


def test_classical_codec_target():
    from qvrf_bench.peers import JpegCodec

    rgb = _photo(128, 160, seed=1)
    res, data = ratecontrol.peer_to_target(JpegCodec(), rgb, Target("bpp", 2.0))
    assert metrics.bpp(len(data), 128, 160) == pytest.approx(res.achieved) and res.achieved <= 2.0
    # the next quality up is above the target (the largest quality that fits)
    above = JpegCodec().encode(rgb, res.knob + 1)
    assert metrics.bpp(len(above), 128, 160) > 2.0 or res.knob == 95


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_encode_to_target_and_unreachable(tmp_path):
    from PIL import Image

    from qvrf_bench.models.checkpoints import save_checkpoint

    model = small_model("balle")
    ck = save_checkpoint(tmp_path / "m.pt", model)
    img = tmp_path / "img.png"
    Image.fromarray(_photo()).save(img)
    lo, hi = trained_gains(model)
    probe = ratecontrol.MethodProbe(QVRFMethod(model, container=2), _photo(), "bpp")
    mid = (probe(lo)[0] + probe(hi)[0]) / 2
    r = run_cli("encode", "-c", ck, "--bpp", f"{mid:.4f}", "--tolerance", "0.05", img, f"{tmp_path}/out/")
    assert r.returncode == 0, r.stderr
    assert "encodes, met" in r.stdout and (tmp_path / "out" / "img.qvrf").is_file()
    r = run_cli("decode", "-c", ck, tmp_path / "out" / "img.qvrf", tmp_path / "dec.png")
    assert r.returncode == 0, r.stderr
    r = run_cli("encode", "-c", ck, "--bpp", "0.0001", img, tmp_path / "x.qvrf")
    assert r.returncode == 2 and "below what" in r.stderr and "bpp .." in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.qvrf").exists()
    r = run_cli("encode", "--codec", "jpeg", "--bpp", "3", img, f"{tmp_path}/j/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "j" / "img.jpg").is_file() and "jpeg quality" in r.stdout
    r = run_cli("encode", "--codec", "jpeg", img, f"{tmp_path}/j/")
    assert r.returncode == 2 and "needs a target" in r.stderr
    r = run_cli("encode", "-c", ck, "--codec", "jpeg", "--bpp", "1", img, f"{tmp_path}/j/")
    assert r.returncode == 2 and "not both" in r.stderr


def test_gain_range_constants_bound_the_extrapolation():
    res = search_gain(smooth, Target("bpp", 0.06), (0.1, 1.0), extrapolate=True)
    assert res.met and all(GAIN_MIN <= t.knob <= GAIN_MAX for t in res.tries)
