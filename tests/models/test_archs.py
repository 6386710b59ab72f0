"""The architecture registry: every class rebuilds from its state dict alone; a toy architecture
registered from this file builds, trains a step and is swept by both engines through the method
contract (its bitstreams in the version-3 container, architecture id OTHER_ARCH)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.layers import GDN
from compressai.models import ScaleHyperprior
from helpers import run_cli, small_model
from PIL import Image
from torch import nn

from qvrf_bench.bitstream import container
from qvrf_bench.methods import codec, register
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models import create, prepare_for_coding
from qvrf_bench.models.archs import register_arch
from qvrf_bench.models.qvrf import GainMixin
from qvrf_bench.models.registry import ARCHS, from_state_dict
from qvrf_bench.results.store import ResultStore


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["qvrf", "fixed"])
def test_from_state_dict_rebuilds_every_architecture(arch, kind):
    model = small_model(arch, kind, lmbda=0.0067) if kind == "fixed" else small_model(arch)
    cls = type(model)
    again = from_state_dict(arch, model.state_dict(), lmbdas=[0.0067] if kind == "fixed" else None)
    assert type(again) is cls and again.config.label == model.config.label
    assert codec.model_fingerprint(again) == codec.model_fingerprint(model)
    with pytest.raises(ValueError, match="does not fit"):
        from_state_dict(arch, {**model.state_dict(), "h_s.0.weight": torch.zeros(1, 1, 1, 1)},
                            lmbdas=[0.0067] if kind == "fixed" else None)  # fmt: skip


def _is_toy(sd):
    """Two convolutions in g_a (indices 0 and 2) and no third: this file's toy."""
    if "g_a.2.weight" not in sd or "g_a.4.weight" in sd or "g_a.0.conv1.weight" in sd:
        return None
    return int(sd["g_a.0.weight"].shape[0]), int(sd["g_a.2.weight"].shape[0])


@register_arch("toy-hyperprior", qvrf_widths=(8, 12), title="Toy hyperprior (a test's)", aliases=("toy",),
               matcher=_is_toy)  # fmt: skip
class ToyHyperprior(GainMixin, ScaleHyperprior):
    """Balle's hyperprior with a two-layer g_a / g_s of stride 4 each (16 in all), defined here only."""

    latent_family = "scale"

    def __init__(self, N: int = 8, M: int = 12, lmbdas=(0.18,), gains=None, learn_gains: bool = True):
        super().__init__(N=N, M=M)
        self.g_a = nn.Sequential(nn.Conv2d(3, N, 5, 4, 2), GDN(N), nn.Conv2d(N, M, 5, 4, 2))
        self.g_s = nn.Sequential(nn.ConvTranspose2d(M, N, 5, 4, 2, 3), GDN(N, inverse=True),
                                 nn.ConvTranspose2d(N, 3, 5, 4, 2, 3))  # fmt: skip
        self.init_gains(lmbdas, gains, learn_gains)

    def hyper_input(self, y):
        return torch.abs(y)

    def forward(self, x, level=0, gain=None, quant=None):
        quant, a, a_det, y, scales, z_lik = self.begin_forward(x, level, gain, quant)
        _, y_lik = self.gaussian_conditional(y * a, scales * a)
        return {"x_hat": self.g_s(torch.round(y * a) / a_det), "likelihoods": {"y": y_lik, "z": z_lik}}


@register("toy-qvrf")
def make_toy(checkpoint=None, device="cpu"):
    torch.manual_seed(0)
    return QVRFMethod(prepare_for_coding(create("toy-hyperprior", "qvrf")).to(device))


def test_a_toy_architecture_registered_here_is_swept_by_both_engines(tmp_path):
    model = create("toy-hyperprior", "qvrf")
    assert (
        model.config.label == "toy-hyperprior-qvrf8-8x12" and model(torch.rand(1, 3, 64, 64))["x_hat"].shape[-1] == 64
    )
    data = tmp_path / "imgs"
    data.mkdir()
    g = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(g.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(data / f"{i}.png")
    runs = {}
    for engine in ("serial", "fast"):
        r = run_cli("sweep", "--dataset", data, "--out", tmp_path / engine, "--method", "toy-qvrf",
                    "--engine", engine, "--no-progress")  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs[engine] = ResultStore(tmp_path / engine).read().sort_values(["image", "rate_point"])
    s, f = runs["serial"], runs["fast"]
    assert len(s) == 2 * 8 and s["decode_ok"].all() and (s["arch"] == "toy-hyperprior").all()
    assert list(s["payload_bytes"]) == list(f["payload_bytes"]) and list(s["psnr_rgb"]) == list(f["psnr_rgb"])
    assert list(f["engine"].unique()) == ["fast"] and list(s["engine"].unique()) == ["serial"]
    from qvrf_bench.methods.engine import encode_image

    method = make_toy()
    ((data_bytes, _),) = encode_image(method, np.zeros((8, 8, 3), np.uint8), method.rate_points()[:1])
    assert data_bytes[5] == container.OTHER_ARCH  # after the magic and the version: the architecture byte


def test_the_architecture_table_is_the_one_place_a_new_architecture_is_described():
    """Families, titles and state-dict recognition come from the table, so the toy declared above
    (its file only) is known everywhere; the built-in ones are recognised as before."""
    from qvrf_bench.analysis.curves import family
    from qvrf_bench.models.checkpoints import infer_arch
    from qvrf_bench.report.figures import family_title

    assert infer_arch(create("toy-hyperprior", "qvrf").state_dict()) == ("toy-hyperprior", 8, 12)
    assert family("toy") == "toy-hyperprior" and family_title("toy-hyperprior") == "Toy hyperprior (a test's)"
    for arch, n, m in (("balle", 16, 24), ("minnen-mean", 16, 24), ("minnen", 16, 24), ("cheng2020", 16, 16)):
        assert infer_arch(create(arch, "qvrf", N=n, M=m).state_dict()) == (arch, n, m)
    assert family("mbt2018-mean-vbr") == "minnen-mean" and family("hyper") == "balle" and family("joint") == "minnen"
    assert family_title("cheng2020") == "Cheng2020 (cheng2020-attn)"
    with pytest.raises(ValueError, match="no architecture of the table"):
        infer_arch({"x.weight": torch.zeros(1)})
