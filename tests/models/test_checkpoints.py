"""Checkpoint formats: own, CompressAI zoo state dicts, the official QVRF layout, update."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from compressai.models import (
    Cheng2020Attention,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)

from qvrf_bench.errors import CheckpointError
from qvrf_bench.methods import codec
from qvrf_bench.models import create, prepare_for_coding
from qvrf_bench.models.checkpoints import load_model, qvrf_from_fixed, save_checkpoint, update_checkpoint
from qvrf_bench.models.registry import AUTOREGRESSIVE

ZOO = {
    "balle": lambda: ScaleHyperprior(8, 12),
    "minnen-mean": lambda: MeanScaleHyperprior(8, 12),
    "minnen": lambda: JointAutoregressiveHierarchicalPriors(8, 12),
    "cheng2020": lambda: Cheng2020Attention(12),
}


def rgb(h=64, w=64, seed=0):
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + h, 150 : 150 + w])


def to_old_eb_names(sd: dict) -> dict:
    """CompressAI 1.2.8 EB names -> the 1.1.5 names the official checkpoints use."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"(.*entropy_bottleneck)\.(matrices|biases|factors)\.(\d+)$", k)
        if m:
            k = f"{m.group(1)}._{ {'matrices': 'matrix', 'biases': 'bias', 'factors': 'factor'}[m.group(2)] }{m.group(3)}"
        out[k] = v
    return out


def test_own_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = create("minnen-mean", "qvrf", N=8, M=12, levels=11)
    with torch.no_grad():
        m.gain[3] = 2.5  # a learned gain must survive
    save_checkpoint(tmp_path / "c.pt", m)
    m2, obj = load_model(tmp_path / "c.pt")
    assert obj["format"] == "qvrf-bench" and m2.config == m.config
    for (k, a), (_, b) in zip(sorted(m.state_dict().items()), sorted(m2.state_dict().items()), strict=False):
        if "cdf" not in k and "offset" not in k and "scale_table" not in k:
            assert torch.equal(a, b), k
    assert codec.model_fingerprint(m) == codec.model_fingerprint(m2)


@pytest.mark.parametrize("arch", list(ZOO))
def test_compressai_zoo_state_dict_loads_and_matches_compressai_bytes(arch, tmp_path):
    """A CompressAI state dict loads into kind=fixed, and our codec then writes exactly the entropy-coded
    strings CompressAI's own compress() writes: the fixed model *is* the CompressAI model."""
    torch.manual_seed(0)
    ref = ZOO[arch]()
    ref.update(force=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "zoo.pth.tar")
    ours, _ = load_model(tmp_path / "zoo.pth.tar", kind="fixed", lmbda=0.0932)
    assert ours.config.arch == arch and ours.config.kind == "fixed" and ours.config.lmbdas == [0.0932]
    x = torch.from_numpy(rgb()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = ref.compress(x)["strings"]
    header, strings = codec.unpack(codec.encode(ours, rgb(), level=0))
    if arch not in AUTOREGRESSIVE:
        assert strings == [want[0][0], want[1][0]]
        return
    # Format 2 holds an autoregressive model's symbols in wavefront order; in CompressAI's raster
    # order (format 1) the string is CompressAI's, and both decode to one image: CompressAI's up to
    # the last bits of the means (our context step sums in another order).
    assert strings[1] == want[1][0]
    with torch.no_grad():
        raster = ours.compress(x, torch.tensor(1.0), order="raster")["strings"][0][0]
        assert raster == want[0][0]
        x_ref = ref.decompress(want, ref.compress(x)["shape"])["x_hat"]
    v1 = codec.pack(replace(header, version=1, lengths=(len(raster), len(strings[1]))), [raster, strings[1]])
    x_v1, _ = codec.decode_tensor(ours, v1)
    x_v2, _ = codec.decode_tensor(ours, codec.encode(ours, rgb(), level=0))
    assert torch.equal(x_v1, x_v2)
    assert torch.allclose(x_v2, x_ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["balle", "cheng2020"])
def test_official_qvrf_layout_loads(arch, tmp_path):
    torch.manual_seed(0)
    N, M = (12, 12) if arch == "cheng2020" else (8, 12)
    m = prepare_for_coding(create(arch, "qvrf", N=N, M=M))
    with torch.no_grad():
        m.gain.mul_(1.1)
    sd = {k: v for k, v in m.state_dict().items()}
    sd["Gain"] = sd.pop("gain")
    sd = to_old_eb_names(sd)
    assert any("_matrix0" in k for k in sd)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "Cheng2020VR.pth.tar")
    loaded, _ = load_model(tmp_path / "Cheng2020VR.pth.tar")
    assert loaded.config.arch == arch and loaded.num_levels == 8
    assert torch.allclose(loaded.gain, m.gain)
    assert codec.encode(loaded, rgb(), level=5) == codec.encode(m, rgb(), level=5)


def test_broken_official_checkpoints_fail_loudly(tmp_path):
    torch.manual_seed(0)
    m = create("balle", "qvrf", N=8, M=12)
    sd = dict(m.state_dict())
    sd["Gain"] = sd.pop("gain")
    missing = {k: v for k, v in sd.items() if k != "h_s.2.weight"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing\.pt.*h_s\.2\.weight"):
        load_model(tmp_path / "missing.pt")
    short = dict(sd, Gain=torch.ones(5))
    torch.save(short, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match=r"short\.pt: Gain has 5 entries"):
        load_model(tmp_path / "short.pt")
    torch.save(sd, tmp_path / "eight.pt")
    with pytest.raises(CheckpointError, match="expected 11 levels"):
        load_model(tmp_path / "eight.pt", levels=11)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: empty file"):
        load_model(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a checkpoint \(neither a PyTorch zip archive"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no Gain and no lambda: give its lambda"):
        torch.save(ScaleHyperprior(8, 12).state_dict(), tmp_path / "zoo.pt")
        load_model(tmp_path / "zoo.pt")


def test_qvrf_from_fixed_keeps_weights_and_operating_point(tmp_path):
    torch.manual_seed(0)
    fixed = create("minnen", "fixed", N=8, M=12, lmbda=0.0483)
    save_checkpoint(tmp_path / "fixed.pt", fixed)
    q = qvrf_from_fixed(tmp_path / "fixed.pt")
    assert q.config.kind == "qvrf" and q.num_levels == 8
    assert abs(float(q.gain.detach()[5]) - 1.0) < 1e-6  # lambda 0.0483 is level 5: gain 1 there
    fsd, qsd = fixed.state_dict(), q.state_dict()
    for k, v in fsd.items():
        if k != "gain":
            assert torch.equal(v, qsd[k]), k


def test_update_fixes_cdfs_strips_training_and_names_by_hash(tmp_path):
    torch.manual_seed(0)
    m = create("balle", "qvrf", N=8, M=12)
    src = save_checkpoint(tmp_path / "ck.pt", m, training={"step": 5, "stage": 2})
    out = update_checkpoint(src, tmp_path)
    assert src.exists() and re.fullmatch(r"ck-[0-9a-f]{8}\.pt", out.name)
    from qvrf_bench.models.checkpoints import file_sha256, read_file

    assert file_sha256(out).startswith(out.name[3:11])
    obj = read_file(out)
    assert "training" not in obj and obj["state_dict"]["entropy_bottleneck._quantized_cdf"].numel() > 0
    updated, _ = load_model(out)
    plain, _ = load_model(src)
    assert codec.encode(updated, rgb(), level=3) == codec.encode(plain, rgb(), level=3)
