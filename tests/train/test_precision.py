"""bf16 training: the transforms in bfloat16, the likelihoods, loss and parameters in float32."""

from __future__ import annotations

import math

import pytest
import torch
from compressai.entropy_models import EntropyModel

from qvrf_bench.models import create
from qvrf_bench.models.checkpoints import load_model
from qvrf_bench.train import train
from qvrf_bench.train.loss import rate_distortion
from qvrf_bench.train.precision import transform_children, transforms_in


@pytest.mark.parametrize("arch", ["balle", "minnen", "cheng2020"])
def test_transforms_run_in_bf16_and_probabilities_in_fp32(arch):
    torch.manual_seed(0)
    model = create(arch, "qvrf", N=16, M=16).train()
    names = {n for n, _ in transform_children(model)}
    assert {"g_a", "g_s", "h_a", "h_s"} <= names
    assert not any(isinstance(m, EntropyModel) for _, m in transform_children(model))
    seen = {}

    def conv_dtype(name):
        def hook(module, args, out):
            seen[name] = out.dtype

        return hook

    first_conv = next(m for m in model.g_a.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(conv_dtype("g_a conv"))
    model.gaussian_conditional.register_forward_pre_hook(
        lambda m, args: seen.__setitem__("gaussian input", args[0].dtype)
    )
    x = torch.rand(2, 3, 64, 64)
    with transforms_in(model, "bf16", "cpu"):
        out = model(x, level=3, quant="noise")
    assert seen == {"g_a conv": torch.bfloat16, "gaussian input": torch.float32}
    assert out["x_hat"].dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # the block leaves nothing behind: the class's forward again, the same state dict keys
    assert not any("forward" in m.__dict__ for _, m in transform_children(model))
    seen.clear()
    model(x, level=3, quant="noise")
    assert seen["g_a conv"] == torch.float32


def test_bf16_loss_is_the_fp32_loss_within_bf16_precision():
    torch.manual_seed(0)
    model = create("balle", "fixed", N=32, M=32, lmbda=0.0483).eval()
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        ref = rate_distortion(model(x, level=0, quant="round"), x, 0.0483)
        with transforms_in(model, "bf16", "cpu"):
            low = rate_distortion(model(x, level=0, quant="round"), x, 0.0483)
    for k in ("mse", "bpp"):
        assert math.isclose(float(low[k]), float(ref[k]), rel_tol=0.05), k
    assert float(low["mse"]) != float(ref["mse"])  # it did run in another precision


def test_unknown_precision_is_refused():
    model = create("balle", "fixed", N=8, M=8, lmbda=0.0483)
    with pytest.raises(ValueError, match="precision"):
        with transforms_in(model, "fp8", "cpu"):
            pass


def test_a_bf16_run_trains_saves_float32_and_records_its_precision(tiny, tmp_path):
    cfg = tiny(kind="fixed", lmbda=0.0483, steps=3, precision="bf16", out=str(tmp_path / "bf16"))
    final = train(cfg)
    model, obj = load_model(final)
    assert obj["training"]["config"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ValueError, match="precision"):
        train(tiny(kind="fixed", lmbda=0.0483, precision="half", out=str(tmp_path / "bad")))
