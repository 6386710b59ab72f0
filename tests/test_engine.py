"""Sweep engines: the fast engine equals the serial reference byte for byte and pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import small_model

from qvrf_bench import codec, engine
from qvrf_bench.engine import FastEngine, RatePoint, SerialEngine, get_engine
from qvrf_bench.models import ARCHS, create, latent, prepare_for_coding
from qvrf_bench.models.autoregressive import tile_invariance_ok
from qvrf_bench.models.latent import TILE

GAINS = (0.5, 1.7, 3.3, 12.0)


def photo(h, w, seed=0):
    from skimage import data

    rng = np.random.default_rng(seed)
    y0, x0 = rng.integers(0, 512 - h), rng.integers(0, 512 - w)
    return np.ascontiguousarray(data.astronaut()[y0 : y0 + h, x0 : x0 + w])


def points_for(model):
    levels = [RatePoint(level, None) for level in range(model.num_levels)]
    return levels + [RatePoint(None, g) for g in GAINS]


@pytest.fixture(
    scope="module", params=[(a, k) for a in ARCHS for k in ("qvrf", "fixed")], ids=lambda p: f"{p[0]}-{p[1]}"
)
def coded(request):
    """A model, its points, and both engines' results on an image whose sides are not multiples of 64."""
    arch, kind = request.param
    model = small_model(arch, kind)
    fp = codec.model_fingerprint(model)
    rgb = photo(70, 131)
    pts = points_for(model)
    # The warm-up self-check is tested below; here the comparison with serial is the test itself.
    fast = FastEngine(self_check=False).run_image(model, rgb, pts, fp)
    return model, fp, rgb, pts, fast, SerialEngine().run_image(model, rgb, pts, fp)


def test_fast_equals_serial_bytes_images_and_checks(coded):
    _, _, _, pts, fast, serial = coded
    assert len(fast) == len(serial) == len(pts)
    for f, s in zip(fast, serial, strict=True):
        assert f.point == s.point
        assert f.data == s.data, f.point.label
        assert np.array_equal(f.rgb, s.rgb), f.point.label
        assert f.decode_ok and s.decode_ok
        assert (f.payload_bytes, f.gain) == (s.payload_bytes, s.gain)
        assert f.enc_s > 0 and f.dec_s > 0


def test_fast_bitstreams_decode_with_the_plain_decoder(coded):
    model, _, rgb, pts, fast, _ = coded
    for f in fast:
        assert np.array_equal(codec.decode(model, f.data), f.rgb)
        header, _ = codec.unpack(f.data)
        assert header.level == f.point.level if f.point.gain is None else header.level is None
    # One z string for the whole image.
    assert len({codec.unpack(f.data)[1][1] for f in fast}) == 1


@pytest.mark.parametrize("arch", ["balle", "minnen", "cheng2020"])
def test_small_batches_and_other_sizes_give_the_same_results(arch):
    model = small_model(arch, seed=1)
    fp = codec.model_fingerprint(model)
    rgb = photo(45, 97, seed=2)
    pts = [RatePoint(None, 0.4 + 0.6 * i) for i in range(TILE + 3)] + [RatePoint(7, None)]
    ref = FastEngine().run_image(model, rgb, pts, fp)
    assert FastEngine().batch_size(model, torch.zeros(1, model.M, 4, 8)) >= len(pts)  # one batch by default
    for eng in (FastEngine(max_batch=3, self_check=False), FastEngine(max_batch_bytes=1, self_check=False)):
        out = eng.run_image(model, rgb, pts, fp)
        assert [r.data for r in out] == [r.data for r in ref]
        assert all(np.array_equal(a.rgb, b.rgb) and a.decode_ok for a, b in zip(out, ref, strict=True))
    serial = SerialEngine().run_image(model, rgb, pts[:2] + pts[-1:], fp)
    assert [r.data for r in serial] == [ref[0].data, ref[1].data, ref[-1].data]


@pytest.mark.parametrize("arch", ["minnen", "cheng2020"])
def test_autoregressive_step_is_batch_invariant(arch):
    model = small_model(arch)
    assert tile_invariance_ok(model)
    # The coder itself: a point coded among others gives the string and latent it gets alone.
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        out = model.compress(x, torch.tensor(2.0))
        an = latent.analyse(model, x)
        y, params = an.y, an.params
        gains = torch.tensor([0.5, 2.0, 7.0])
        strings, y_hat = model.compress_latent(y.expand(3, -1, -1, -1), params, gains)
        assert strings[1] == out["strings"][0][0] and torch.equal(y_hat[1:2], out["y_hat"])
        assert torch.equal(model.decompress_latent(strings[1:2], params, torch.tensor(2.0)), y_hat[1:2])
    # ... and at another thread count (a decoder elsewhere; measured equal at 1, 2, 4 and 8 threads).
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        with torch.no_grad():
            assert torch.equal(model.decompress_latent(strings, params, gains), y_hat)
    finally:
        torch.set_num_threads(threads)


def test_no_tile_invariance_falls_back_to_one_point_at_a_time(monkeypatch):
    torch.manual_seed(0)
    model = prepare_for_coding(create("minnen", "qvrf", N=8, M=12))
    fp = codec.model_fingerprint(model)
    monkeypatch.setattr(engine, "tile_invariance_ok", lambda m: False)
    eng = FastEngine()
    with pytest.warns(RuntimeWarning, match="not batch invariant"):
        eng.warm_up(model, fp)
    assert eng.batch_size(model, torch.zeros(1, 12, 4, 4)) == 1
    rgb = photo(32, 40)
    pts = [RatePoint(2, None), RatePoint(None, 5.0)]
    assert [r.data for r in eng.run_image(model, rgb, pts, fp)] == [
        r.data for r in SerialEngine().run_image(model, rgb, pts, fp)
    ]


def test_warm_up_refuses_an_engine_that_disagrees_with_serial(monkeypatch):
    torch.manual_seed(0)
    model = prepare_for_coding(create("balle", "qvrf", N=8, M=12))
    real = engine.resolve_point

    def broken(model, pt):  # the fast path's own step (the y path is shared with the serial engine)
        level, gain = real(model, pt)
        return level, gain if level is not None else float(np.float32(gain * 1.01))

    monkeypatch.setattr(engine, "resolve_point", broken)
    with pytest.raises(RuntimeError, match="disagrees with the serial engine"):
        FastEngine().warm_up(model, codec.model_fingerprint(model))


def test_registry_and_bad_points():
    assert isinstance(get_engine("fast"), FastEngine) and isinstance(get_engine("serial"), SerialEngine)
    with pytest.raises(ValueError, match="max_batch"):
        FastEngine(max_batch=0)
    torch.manual_seed(0)
    model = prepare_for_coding(create("balle", "qvrf", N=8, M=12))
    fp = codec.model_fingerprint(model)
    eng = FastEngine(self_check=False)
    for pt, msg in ((RatePoint(None, -1.0), "gain must be"), (RatePoint(8, None), "level must be in")):
        with pytest.raises(ValueError, match=msg):
            eng.run_image(model, photo(16, 16), [pt], fp)
    assert eng.run_image(model, photo(16, 16), [], fp) == []
