"""Complexity counts (qvrf_bench/methods/complexity.py) against an independent counter and a published one.

fvcore (a test-only dependency: pip install -e '.[dev]') traces a module with torch.jit and counts a
convolution's multiply-adds from its own formulas; torch's FlopCounterMode, which the suite uses,
counts dispatched aten ops. The transforms (g_a, g_s: convolutions and GDN) must agree exactly, on
every architecture."""

from __future__ import annotations

import pytest
import torch

from qvrf_bench.methods.complexity import count_model
from qvrf_bench.models import create, prepare_for_coding

ARCHS = [("balle", 32, 48), ("minnen-mean", 32, 48), ("minnen", 32, 48), ("cheng2020", 32, 32)]


def torch_macs(module, x) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(x)
    return fc.get_total_flops() / 2


@pytest.mark.parametrize("arch, n, m", ARCHS, ids=[a for a, _, _ in ARCHS])
def test_transforms_count_as_fvcore_counts_them(arch, n, m):
    fvcore = pytest.importorskip("fvcore.nn", reason="fvcore is a test-only dependency ('.[dev]')")
    model = create(arch, "qvrf", N=n, M=m).eval()
    x = torch.rand(1, 3, 128, 192)
    with torch.no_grad():
        y = model.g_a(x)
    for module, inp in ((model.g_a, x), (model.g_s, y)):
        fa = fvcore.FlopCountAnalysis(module, inp)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        assert torch_macs(module, inp) == pytest.approx(fa.total(), rel=1e-9)


def test_the_hyperprior_decoder_is_the_published_43_5_kmac_per_pixel():
    """C3's baselines registry lists bmshj2018-hyperprior's decoder at 43.5 kMAC/px (fvcore, CompressAI's
    model, N, M = 128, 192); ours counts the whole decompress path (h_s and g_s)."""
    model = prepare_for_coding(create("balle", "fixed", N=128, M=192, lmbda=0.0018)).eval()
    c = count_model(model)
    assert c.dec_kmac_px == pytest.approx(43.5, abs=0.05)
    assert c.enc_kmac_px > c.dec_kmac_px  # g_a + h_a + h_s against h_s + g_s: g_a costs as g_s, h_a more than nothing
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.params_encoder == c.params - sum(p.numel() for p in model.g_s.parameters())
    # per pixel, the count does not depend on the size (multiples of 64)
    assert count_model(model, (128, 320)).dec_kmac_px == pytest.approx(c.dec_kmac_px, rel=1e-9)


def test_a_sweep_records_complexity_and_the_report_shows_it(tmp_path):
    import json

    import numpy as np
    from helpers import run_cli
    from PIL import Image

    from qvrf_bench.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "q.pt", create("balle", "qvrf", N=8, M=12))
    data = tmp_path / "imgs"
    data.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(data / "a.png")
    args = ["sweep", "-c", tmp_path / "q.pt", "--dataset", data, "--out", tmp_path / "run", "--levels", "0,7",
            "--factors", "none", "--peers", "jpeg", "--peer-qualities", "jpeg=50", "--no-progress"]  # fmt: skip
    assert run_cli(*args).returncode == 0
    cx = json.loads((tmp_path / "run" / "run.json").read_text())["complexity"]
    (name,) = cx  # the learned method only; a classical codec says nothing
    model = prepare_for_coding(create("balle", "qvrf", N=8, M=12))
    assert cx[name]["dec_kmac_px"] == pytest.approx(count_model(model).dec_kmac_px)
    assert cx[name]["params"] == sum(p.numel() for p in model.parameters())
    r = run_cli("report", tmp_path / "run", "-o", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text()
    assert "decode [kMAC/px]" in html and f'<td class="num">{cx[name]["dec_kmac_px"]:.1f}</td>' in html


def test_bd_csv_exports_carry_the_counts(tmp_path):
    """compare -o PREFIX and the report's CSV: each side's parameters and kMAC/px from run.json (a
    trained zoo model, so the curves are real), NaN where nothing was counted (Pillow's JPEG)."""
    import json

    import numpy as np
    import pandas as pd
    from helpers import run_cli
    from PIL import Image

    from qvrf_bench.zoo import KODAK_DIR

    data = tmp_path / "imgs"
    data.mkdir()
    Image.open(KODAK_DIR / "kodim23.png").crop((256, 128, 448, 256)).save(data / "crop.png")
    args = ["sweep", "-c", "zoo:balle-qvrf8", "--dataset", data, "--out", tmp_path / "run", "--factors", "none",
            "--peers", "jpeg", "--peer-qualities", "jpeg=10,30,50,70,90", "--no-progress"]  # fmt: skip
    assert run_cli(*args).returncode == 0
    ((name, cx),) = json.loads((tmp_path / "run" / "run.json").read_text())["complexity"].items()
    r = run_cli("compare", tmp_path / "run", "-o", tmp_path / "bd")
    assert r.returncode in (0, 1), r.stderr
    bd = pd.read_csv(tmp_path / "bd.csv")
    row = bd.loc[bd["test"] == name].iloc[0]
    assert row["test_params"] == cx["params"] and row["test_dec_kmac_px"] == pytest.approx(cx["dec_kmac_px"])
    assert row["test_enc_kmac_px"] == pytest.approx(cx["enc_kmac_px"]) and np.isnan(row["anchor_enc_kmac_px"])
    assert run_cli("report", tmp_path / "run", "-o", tmp_path / "r.html").returncode == 0
    csv = (tmp_path / "r.html").read_text().split("table as Markdown, LaTeX and CSV")[1]
    assert "test_enc_kmac_px" in csv and f"{cx['params']}" in csv
