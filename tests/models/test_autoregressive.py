"""The autoregressive entropy path: wavefront scheduling, symbol orders, row invariance fallback."""

from __future__ import annotations

import pytest
import torch
from helpers import small_model

from qvrf_bench.models import autoregressive as ar
from qvrf_bench.models import latent
from qvrf_bench.models.autoregressive import KERNEL, PAD, wavefront
from qvrf_bench.models.registry import AUTOREGRESSIVE


def mask_a_taps():
    mask = torch.ones(KERNEL, KERNEL)
    mask[PAD, PAD:] = 0
    mask[PAD + 1 :] = 0
    return torch.nonzero(mask.reshape(-1)).reshape(-1)


@pytest.mark.parametrize("H, W", [(1, 1), (1, 7), (6, 1), (5, 9), (12, 4)])
def test_wavefront_covers_every_position_once_after_its_context(H, W):
    taps = mask_a_taps()
    groups = wavefront(taps, H, W)
    assert len(groups) == 3 * (H - 1) + W  # k = 3 for the 5x5 mask A
    when = {}
    for t, (hs, ws) in enumerate(groups):
        for h, w in zip(hs.tolist(), ws.tolist(), strict=True):
            assert (h, w) not in when
            when[(h, w)] = t
    assert len(when) == H * W
    offsets = [(int(t) // KERNEL - PAD, int(t) % KERNEL - PAD) for t in taps]
    for (h, w), t in when.items():
        for dh, dw in offsets:
            if (h + dh, w + dw) in when:
                assert when[(h + dh, w + dw)] < t, ((h, w), (dh, dw))


def test_wavefront_refuses_a_non_causal_mask():
    with pytest.raises(NotImplementedError, match="causal"):
        wavefront(torch.tensor([PAD * KERNEL + PAD]), 3, 3)  # the centre tap


@pytest.mark.parametrize("arch", AUTOREGRESSIVE)
def test_both_symbol_orders_code_the_same_symbols(arch):
    model = small_model(arch)
    x = torch.rand(1, 3, 64, 192)
    gains = torch.tensor([0.7, 3.0])
    with torch.no_grad():
        an = latent.analyse(model, x)
        y, params = an.y, an.params
        yb = y.expand(2, -1, -1, -1)
        wave, y_wave = model.compress_latent(yb, params, gains, order="wavefront")
        raster, y_raster = model.compress_latent(yb, params, gains, order="raster")
        assert torch.equal(y_wave, y_raster)
        assert wave != raster  # another order of the same symbols: another string
        assert torch.equal(model.decompress_latent(wave, params, gains, order="wavefront"), y_wave)
        assert torch.equal(model.decompress_latent(raster, params, gains, order="raster"), y_wave)
        # the eval forward (the training loss's exact quantization) reconstructs the same latent
        out = model.compress(x, torch.tensor(3.0))
        assert out["strings"][0][0] == wave[1] and torch.equal(out["y_hat"], y_wave[1:2])
        with pytest.raises(ValueError, match="symbol order"):
            model.compress_latent(yb, params, gains, order="zigzag")


@pytest.mark.parametrize("arch", AUTOREGRESSIVE)
def test_without_row_invariance_positions_are_computed_one_at_a_time_with_the_same_result(arch, monkeypatch):
    model = small_model(arch)
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        want = model.compress(x, torch.tensor(2.0))
        calls = []
        step = model._step
        monkeypatch.setattr(ar, "tile_invariance_ok", lambda m: False)
        monkeypatch.setattr(model, "_step", lambda *a: calls.append(a[3].numel()) or step(*a))
        model.__dict__.pop("_row_invariance", None)
        got = model.compress(x, torch.tensor(2.0))
        assert set(calls) == {1}
        assert got["strings"] == want["strings"] and torch.equal(got["y_hat"], want["y_hat"])
        dec = model.decompress(got["strings"], got["shape"], torch.tensor(2.0))
        assert torch.equal(dec["y_hat"], want["y_hat"])


@pytest.mark.parametrize("arch", AUTOREGRESSIVE)
def test_stage3_training_forward_is_the_same_by_wavefront_and_by_raster(arch):
    """The stage-3 STE loop (and hard-rounding validation) by anti-diagonals gives the raster loop's
    reconstruction, likelihoods and gradients: the same steps, computed several positions at once.
    In eval mode, so that the rate term is rounded, not noised: in training its noise is drawn per
    step of the loop, so the two orders draw it in different pieces (the same distribution)."""
    from qvrf_bench.models.qvrf import per_sample_noise
    from qvrf_bench.train.loss import rate_distortion

    model = small_model(arch).eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    got = {}
    for order in ("raster", "wavefront"):
        model.serial_order = order
        model.zero_grad(set_to_none=True)
        with per_sample_noise(seed=1, step=0, batch=x.shape[0]):
            out = model(x, gain=model.train_gain(3, stage=3), quant="ste")
        rd = rate_distortion(out, x, 0.013)
        rd["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        got[order] = (out["x_hat"].detach(), out["likelihoods"]["y"].detach(), rd["loss"].item(), grads)
    (xr, lr, loss_r, gr), (xw, lw, loss_w, gw) = got["raster"], got["wavefront"]
    assert torch.allclose(xr, xw, atol=1e-5) and torch.allclose(lr, lw, rtol=1e-4, atol=1e-6)
    assert loss_r == pytest.approx(loss_w, rel=1e-5)
    assert gr.keys() == gw.keys() and "gain" in gr
    for n in gr:
        assert torch.allclose(gr[n], gw[n], rtol=1e-3, atol=1e-5 * float(gr[n].abs().max()) + 1e-8), n


@pytest.mark.parametrize("arch", AUTOREGRESSIVE)
def test_compressais_decoder_and_the_c_decoder_decode_the_same_latent(arch, monkeypatch):
    from qvrf_bench.bitstream import rans

    if rans.backend() != "c":
        pytest.skip(f"C rANS decoder not built here: {rans.backend()}")
    model = small_model(arch)
    x = torch.rand(1, 3, 64, 128)
    gains = torch.tensor([0.5, 4.0])
    with torch.no_grad():
        an = latent.analyse(model, x)
        strings, y_hat = model.compress_latent(an.y.expand(2, -1, -1, -1), an.params, gains)
        c = model.decompress_latent(strings, an.params, gains)
        monkeypatch.setattr(rans, "backend", lambda: "compressai (test)")
        ref = model.decompress_latent(strings, an.params, gains)
    assert torch.equal(c, y_hat) and torch.equal(ref, y_hat)
