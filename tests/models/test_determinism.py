"""Entropy parameters do not depend on the thread count (models/determinism.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import small_model

from qvrf_bench.models import determinism


@pytest.mark.parametrize("arch", ["balle", "minnen-mean", "minnen", "cheng2020"])
def test_h_s_runs_with_one_thread_outside_training_and_restores(arch):
    model = small_model(arch)
    seen = []
    model.h_s.register_forward_pre_hook(lambda m, a: seen.append(torch.get_num_threads()))  # after ours
    z = torch.randn(1, model.entropy_bottleneck.channels, 4, 5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            model.h_s(z)
        assert seen[-1] == 1 and torch.get_num_threads() == 2  # one thread inside, restored after
        model.h_s(z)  # gradients on (training): the threads are left alone
        assert seen[-1] == 2
    finally:
        torch.set_num_threads(before)


def test_autoregressive_coder_runs_with_one_thread(monkeypatch):
    model = small_model("minnen")
    seen = []
    orig = model._step

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return orig(*a, **k)

    monkeypatch.setattr(model, "_step", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        y = torch.randn(1, model.M, 3, 4)
        params = torch.randn(1, 2 * model.M, 3, 4)
        strings, y_hat = model.compress_latent(y, params, torch.tensor(1.0))
        dec = model.decompress_latent(strings, params, torch.tensor(1.0))
        assert torch.equal(dec, y_hat) and set(seen) == {1} and torch.get_num_threads() == 2
        monkeypatch.setattr(determinism, "ENABLED", False)
        seen.clear()
        model.compress_latent(y, params, torch.tensor(1.0))
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)
