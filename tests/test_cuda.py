"""CUDA paths: skipped without a CUDA device (``nox -s gpu_check`` runs them on one).

No GPU has been available to this project, so these have never run: they are the prepared check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import small_model

from qvrf_bench import images
from qvrf_bench.methods import codec
from qvrf_bench.methods.engine import MethodEngine
from qvrf_bench.methods.qvrf import QVRFMethod

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]
ARCHS = ["balle", "minnen-mean", "minnen", "cheng2020"]


def _rgb(seed=0, h=64, w=96):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", ARCHS)
def test_engines_agree_on_cuda(arch):
    model = small_model(arch).to("cuda")
    method = QVRFMethod(model, container=2)
    fp = method.fingerprint()
    points = [method.rate_points()[s] for s in (0, 3, 7)] + [method.continuous_point(2.5)]
    fast = MethodEngine("fast").run_image(method, _rgb(), points, fp)  # its self-check: the model's own compress
    serial = MethodEngine("serial").run_image(method, _rgb(), points, fp)
    for f, s in zip(fast, serial, strict=True):
        assert f.data == s.data and np.array_equal(f.rgb, s.rgb) and f.decode_ok and s.decode_ok


@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_bitstream_decodes_on_cpu(arch):
    cpu = small_model(arch)
    gpu = small_model(arch).to("cuda")
    enc = codec.encode_tensor(gpu, images.rgb8_to_tensor(_rgb(1)), level=4)
    _, y_cpu, _ = codec.decode_full(cpu, enc.data)
    a = float(enc.gain)
    assert float((y_cpu - enc.y_hat.cpu()).abs().max()) * a < 0.5  # the CPU decoder recovers the symbols


def test_training_step_on_cuda():
    model = small_model("balle", coding=False).to("cuda").train()
    x = torch.rand(2, 3, 64, 64, device="cuda")
    out = model(x, level=3)
    loss = sum(v.log().sum() for v in out["likelihoods"].values()) + out["x_hat"].mean()
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
