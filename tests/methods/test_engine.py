"""The engine (methods/engine.py): fast equals serial, and both equal the model's own compress /
decompress (codec.py, the CompressAI path), byte for byte and pixel for pixel, for the suite's
checkpoints as ``-c`` codes them (QVRF writing the version-2 container)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import small_model

from qvrf_bench import images
from qvrf_bench.methods import codec
from qvrf_bench.methods import qvrf as qvrf_mod
from qvrf_bench.methods.engine import MethodEngine, get_engine
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models import ARCHS, create, latent, prepare_for_coding
from qvrf_bench.models.autoregressive import tile_invariance_ok
from qvrf_bench.models.latent import TILE

GAINS = (0.5, 1.7, 3.3, 12.0)


def photo(h, w, seed=0):
    from skimage import data

    rng = np.random.default_rng(seed)
    y0, x0 = rng.integers(0, 512 - h), rng.integers(0, 512 - w)
    return np.ascontiguousarray(data.astronaut()[y0 : y0 + h, x0 : x0 + w])


def points_for(method):
    return method.rate_points() + [method.continuous_point(g) for g in GAINS]


def reference(model, rgb, points):
    """The model's own compress and decompress, one point at a time (what 0.2.0's serial engine did)."""
    x = images.rgb8_to_tensor(rgb)
    out = []
    for p in points:
        enc = codec.encode_tensor(model, x, level=p.level if p.value is None else None, gain=p.value)
        out.append((enc, codec.decode(model, enc.data)))
    return out


@pytest.fixture(
    scope="module", params=[(a, k) for a in ARCHS for k in ("qvrf", "fixed")], ids=lambda p: f"{p[0]}-{p[1]}"
)
def coded(request):
    """A model, its points, and both engines' results on an image whose sides are not multiples of 64."""
    arch, kind = request.param
    model = small_model(arch, kind)
    method = QVRFMethod(model, container=2)
    fp = method.fingerprint()
    rgb = photo(70, 131)
    pts = points_for(method)
    # The warm-up self-check is tested below; here the comparison with serial is the test itself.
    fast = MethodEngine("fast", self_check=False).run_image(method, rgb, pts, fp)
    serial = MethodEngine("serial", self_check=False).run_image(method, rgb, pts, fp)
    return model, fp, rgb, pts, fast, serial


def test_fast_equals_serial_bytes_images_and_checks(coded):
    _, _, _, pts, fast, serial = coded
    assert len(fast) == len(serial) == len(pts)
    for f, s in zip(fast, serial, strict=True):
        assert f.point == s.point
        assert f.data == s.data, f.point.label
        assert np.array_equal(f.rgb, s.rgb), f.point.label
        assert f.decode_ok and s.decode_ok
        assert f.payload_bytes == s.payload_bytes
        assert f.enc_s > 0 and f.dec_s > 0


def test_both_equal_the_models_own_compress(coded):
    model, _, rgb, pts, fast, _ = coded
    for f, (enc, rgb_ref) in zip(fast, reference(model, rgb, pts), strict=True):
        assert f.data == enc.data and np.array_equal(f.rgb, rgb_ref) and f.payload_bytes == enc.payload_bytes


def test_fast_bitstreams_decode_with_the_plain_decoder(coded):
    model, _, rgb, pts, fast, _ = coded
    for f in fast:
        assert np.array_equal(codec.decode(model, f.data), f.rgb)
        header, _ = codec.unpack(f.data)
        assert header.level == f.point.level if f.point.value is None else header.level is None
    # One z string for the whole image.
    assert len({codec.unpack(f.data)[1][1] for f in fast}) == 1


@pytest.mark.parametrize("arch", ["balle", "minnen", "cheng2020"])
def test_small_batches_and_other_sizes_give_the_same_results(arch):
    model = small_model(arch, seed=1)
    method = QVRFMethod(model, container=2)
    fp = method.fingerprint()
    rgb = photo(45, 97, seed=2)
    pts = [method.continuous_point(0.4 + 0.6 * i) for i in range(TILE + 3)] + [method.rate_points()[7]]
    eng = MethodEngine()
    ref = eng.run_image(method, rgb, pts, fp)  # with the self-check
    an = method.analyse(torch.zeros(1, 3, 64, 128))
    assert eng.batch_size(method, an, 64 * 128) >= len(pts)  # one batch by default
    for other in (MethodEngine(max_batch=3, self_check=False), MethodEngine(max_batch_bytes=1, self_check=False)):
        out = other.run_image(method, rgb, pts, fp)
        assert [r.data for r in out] == [r.data for r in ref]
        assert all(np.array_equal(a.rgb, b.rgb) and a.decode_ok for a, b in zip(out, ref, strict=True))
    assert MethodEngine(max_batch_bytes=1).batch_size(method, an, 64 * 128) == 1  # the memory bound
    ref3 = reference(model, rgb, pts[:2] + pts[-1:])
    assert [e.data for e, _ in ref3] == [ref[0].data, ref[1].data, ref[-1].data]


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
    import qvrf_bench.models.autoregressive as ar

    torch.manual_seed(0)
    model = prepare_for_coding(create("minnen", "qvrf", N=8, M=12))
    method = QVRFMethod(model, container=2)
    fp = method.fingerprint()
    monkeypatch.setattr(ar, "tile_invariance_ok", lambda m: False)
    eng = MethodEngine()
    with pytest.warns(RuntimeWarning, match="not batch invariant"):
        eng.warm_up(method, fp)
    assert eng.batch(method) == 1
    rgb = photo(32, 40)
    pts = [method.rate_points()[2], method.continuous_point(5.0)]
    assert [r.data for r in eng.run_image(method, rgb, pts, fp)] == [e.data for e, _ in reference(model, rgb, pts)]


def test_warm_up_refuses_an_engine_that_disagrees_with_serial(monkeypatch):
    torch.manual_seed(0)
    model = prepare_for_coding(create("balle", "qvrf", N=8, M=12))
    method = QVRFMethod(model, container=2)
    real = qvrf_mod.latent.code_latent

    def broken(model, y, params, gains):  # the batched y coder drifts from the model's own compress
        return real(model, y, params, gains * 1.01 if gains.dim() and len(gains) > 1 else gains)

    monkeypatch.setattr(qvrf_mod.latent, "code_latent", broken)
    with pytest.raises(RuntimeError, match="differs from the model's own compress"):
        MethodEngine().warm_up(method, method.fingerprint())


def test_registry_and_bad_points():
    assert get_engine("fast").name == "fast" and get_engine("serial").name == "serial"
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("turbo")
    with pytest.raises(ValueError, match="max_batch"):
        MethodEngine(max_batch=0)
    torch.manual_seed(0)
    method = QVRFMethod(prepare_for_coding(create("balle", "qvrf", N=8, M=12)), container=2)
    with pytest.raises(ValueError, match="gain"):
        method.continuous_point(-1.0)
    eng = MethodEngine(self_check=False)
    assert eng.run_image(method, photo(16, 16), [], method.fingerprint()) == []
