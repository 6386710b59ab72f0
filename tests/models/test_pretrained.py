"""``compressai:ARCH-METRIC-QUALITY``: CompressAI's pretrained models from the torch hub cache, by name
(models/pretrained.py). The cache here is a temporary TORCH_HOME holding a file written by the test
under CompressAI's own file name, in the key layout of CompressAI's published files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.models import ScaleHyperprior
from compressai.zoo.image import model_urls
from helpers import run_cli
from PIL import Image

from qvrf_bench.errors import CheckpointError
from qvrf_bench.models import pretrained
from qvrf_bench.models.checkpoints import load_model
from qvrf_bench.results.store import ResultStore


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    sd = ScaleHyperprior(16, 24).state_dict()
    # the layout of CompressAI's published v1 files: the entropy bottleneck's parameters in lists
    old = {}
    for k, v in sd.items():
        for new in ("biases", "matrices", "factors"):  # 1.2.8: matrices.0; the published files: _matrices.0
            k = k.replace(f"entropy_bottleneck.{new}.", f"entropy_bottleneck._{new}.")
        old[k] = v
    name = model_urls["bmshj2018-hyperprior"]["mse"][3].rsplit("/", 1)[-1]
    torch.save(old, folder / name)
    return folder / name, sd


def test_a_cached_pretrained_model_loads_by_name_as_its_fixed_rate_model(hub):
    path, sd = hub
    p = pretrained.resolve("compressai:bmshj2018-hyperprior-mse-3")
    assert p.path == path and (p.arch, p.metric, p.quality, p.lmbda) == ("balle", "mse", 3, 0.0067)
    model, _ = load_model("compressai:bmshj2018-hyperprior-mse-3")
    c = model.config
    assert (c.arch, c.kind, c.N, c.M, c.lmbdas) == ("balle", "fixed", 16, 24, [0.0067])
    assert torch.equal(model.g_a[0].weight, sd["g_a.0.weight"])
    assert torch.equal(model.entropy_bottleneck.matrices[0], sd["entropy_bottleneck.matrices.0"])


def test_sweep_and_info_take_the_name(hub, tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(data / "a.png")
    r = run_cli("sweep", "-c", "compressai:bmshj2018-hyperprior-mse-3", "--dataset", data, "--out", tmp_path / "run",
                "--factors", "none", "--no-progress")  # fmt: skip
    assert r.returncode == 0, r.stderr
    (row,) = ResultStore(tmp_path / "run").read().to_dict("records")
    assert row["method"] == "compressai:bmshj2018-hyperprior-mse-3" and row["kind"] == "fixed"
    assert row["lmbda"] == 0.0067 and row["decode_ok"]
    i = run_cli("info", "compressai:bmshj2018-hyperprior-mse-3", "--no-complexity")
    assert i.returncode == 0 and "balle-fixed-16x24-l0.0067" in i.stdout


@pytest.mark.parametrize("spec, why", [
    ("compressai:bmshj2018-hyperprior-mse-4", "is not in the torch hub cache; fetch it"),
    ("compressai:bmshj2018-factorized-mse-1", "expected compressai:ARCH-METRIC-QUALITY"),
    ("compressai:mbt2018-psnr-1", "expected compressai:ARCH-METRIC-QUALITY"),
])  # fmt: skip
def test_what_is_not_there_is_one_line(hub, spec, why):
    with pytest.raises(CheckpointError, match=why):
        pretrained.resolve(spec)
    r = run_cli("info", spec)
    assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr
