"""The QVRF mechanism on every architecture: gains, training paths, exact quantized forward."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import small_model

from qvrf_bench.models import ARCHS, LAMBDAS_8, LAMBDAS_11, create, initial_gains, prepare_for_coding
from qvrf_bench.models.qvrf import scale_table


def tiny(arch, kind="qvrf", **kw):
    return small_model(arch, kind, coding=False, **kw)


def test_initial_gains_are_sqrt_lambda_ratios():
    g = initial_gains(LAMBDAS_8)
    assert g[0] == 1.0 and math.isclose(g[-1], 10.0)
    assert [round(v, 4) for v in g] == [1.0, 1.3944, 1.9293, 2.6874, 3.7268, 5.1801, 7.1957, 10.0]
    g11 = initial_gains(LAMBDAS_11)
    assert [round(v, 4) for v in g11[8:]] == [14.1421, 20.0, 28.2843]


def test_scale_table_extends_only_past_the_official_factor_range():
    assert len(scale_table(10.0)) == 64 and math.isclose(float(scale_table(12.0)[-1]), 256.0, rel_tol=1e-5)
    big = scale_table(28.2843)
    assert len(big) > 64 and float(big[-1]) >= 256.0 * 28.2843 / 12 * 0.99


@pytest.mark.parametrize("arch", ARCHS)
def test_kinds_and_levels(arch):
    q = tiny(arch)
    assert q.num_levels == 8 and not q.gain.detach()[0].requires_grad
    f = tiny(arch, "fixed")
    assert f.num_levels == 1 and float(f.gain) == 1.0 and not f.gain.requires_grad
    q11 = tiny(arch, levels=11)
    assert q11.num_levels == 11
    with pytest.raises(ValueError, match="level must be in"):
        q.level_gain(8)  # the official off-by-one (QRAF issue #5) is an error here


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("quant", ["noise", "ste"])
def test_training_forward_trains_the_chosen_gain_only(arch, quant):
    m = tiny(arch).train()
    x = torch.rand(2, 3, 64, 64)
    out = m(x, level=3, quant=quant)
    assert out["x_hat"].shape == x.shape
    loss = 0.01 * 255**2 * torch.mean((out["x_hat"] - x) ** 2)
    loss = loss + sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * 2 * 64 * 64)
    loss.backward()
    grad = m.gain.grad
    assert grad is not None and grad[3] != 0
    assert torch.count_nonzero(grad) == 1  # only the level drawn; gain[0] frozen
    m.zero_grad()
    m(x, level=0, quant=quant)["x_hat"].mean().backward()
    assert m.gain.grad is None or torch.count_nonzero(m.gain.grad) == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_stage1_gain_is_gain0_detached(arch):
    m = tiny(arch).train()
    a = m.train_gain(7, stage=1)
    assert float(a) == 1.0 and not a.requires_grad
    assert m.train_gain(7, stage=2).requires_grad


def test_the_pinned_level_is_the_one_gain_that_never_trains():
    m = tiny("balle").train()
    assert not m.train_gain(0).requires_grad and m.train_gain(7).requires_grad  # [QRAF]: a_0
    pinned = m.train_gain(7, pinned=7)
    assert not pinned.requires_grad and pinned.item() == m.gain[7].item()
    assert m.train_gain(0, pinned=7).requires_grad
    assert m.train_gain(7, stage=1, pinned=7).item() == m.gain[0].item()  # stage 1 is [QRAF]'s either way


@pytest.mark.parametrize("arch", ARCHS)
def test_noise_width_is_the_level_bin_size(arch, monkeypatch):
    """Quantization-error-aware noise: the y fed to g_s is y + u/a with u in [-1/2, 1/2], so its
    error reaches exactly 1/(2a) at the level's gain a."""
    import importlib

    m = tiny(arch).train()
    ar = arch in ("minnen", "cheng2020")
    module = importlib.import_module("qvrf_bench.models.autoregressive" if ar else type(m).__module__)
    monkeypatch.setattr(module, "noise_like", lambda t: torch.full_like(t, 0.5))
    seen = {}
    m.g_s.register_forward_pre_hook(lambda mod, inp: seen.setdefault("y_hat", inp[0].detach()))
    x = torch.rand(1, 3, 64, 64)
    level = 6
    m(x, level=level, quant="noise")
    y = m.g_a(x).detach()
    a = float(m.train_gain(level).detach())
    assert torch.allclose(seen["y_hat"] - y, torch.full_like(y, 0.5 / a), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_rate_grows_with_gain_in_eval_forward(arch):
    m = prepare_for_coding(tiny(arch))
    x = torch.rand(1, 3, 64, 64)
    bits = []
    with torch.no_grad():
        for a in (0.5, 2.0, 8.0):
            lk = m(x, gain=a)["likelihoods"]["y"]
            bits.append(float(-torch.log2(lk).sum()))
    assert bits[0] < bits[1] < bits[2]


def test_search_build_indexes_equals_compressais_loop():
    from compressai.entropy_models import GaussianConditional

    from qvrf_bench.models.qvrf import SearchGaussianConditional, scale_table

    table = scale_table(12.0)
    ours, ref = SearchGaussianConditional(table.tolist()), GaussianConditional(table.tolist())
    g = torch.Generator().manual_seed(0)
    scales = torch.cat([
        torch.exp(torch.rand(20000, generator=g) * 12 - 6),  # around and beyond the table
        table, torch.nextafter(table, torch.zeros(())), torch.nextafter(table, torch.full((), 1e9)),
        torch.tensor([0.0, -1.0, 1e-12, 1e30, float("inf")]),
    ]).reshape(1, -1, 1, 1)  # fmt: skip
    got, want = ours.build_indexes(scales), ref.build_indexes(scales)
    assert got.dtype == want.dtype == torch.int32
    assert torch.equal(got, want)
    assert got.min() == 0 and got.max() == len(table) - 1
    assert isinstance(create("minnen", "qvrf", N=8, M=12).gaussian_conditional, SearchGaussianConditional)
