"""The metric table (qvrf_bench/metrics/table.py): a metric registered from this file, touching no
package file, reaches the rows of a real sweep, the store, `compare` and the report; the built-in
PSNR-Y / PSNR-YUV agree with the BT.709 formula written out independently here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from qvrf_bench import metrics
from qvrf_bench.analysis import rd
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics import Metric, get_metric, parse_metrics, register_metric, unregister_metric
from qvrf_bench.results.store import ResultStore


def mad(ref: np.ndarray, test: np.ndarray) -> float:
    return float(np.abs(ref.astype(float) - test.astype(float)).mean())


@pytest.fixture
def toy():
    m = register_metric(Metric("toy-mad", "mad_rgb_toy", "MAD-RGB (toy) [8-bit units]", mad,
                               "mean absolute difference (toy)", higher_is_better=False, unit="8-bit units",
                               short="MAD"))  # fmt: skip
    yield m
    unregister_metric("toy-mad")


def smooth_images(folder, n=2):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96]
    for i in range(n):
        img = np.stack([np.sin(x / 7 + i) * 60 + 120, np.cos(y / 5) * 50 + 110, (x + y) % 256 * 0.5 + 60], -1)
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")


def test_a_toy_metric_reaches_rows_compare_and_the_report(toy, tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    smooth_images(data)
    run = tmp_path / "run"
    p = run_cli("sweep", "--dataset", data, "--out", run, "-c", "zoo:balle-qvrf8", "--levels", "0,2,4,6,7",
                "--factors", "none", "--peers", "jpeg", "--peer-qualities", "jpeg=10,30,50,70,90",
                "--metrics", "toy-mad", "--threads", "1", "--no-progress")  # fmt: skip
    assert p.returncode == 0, p.stderr
    df = ResultStore(run).read()
    assert len(df) == 20 and df["decode_ok"].all()
    assert df["mad_rgb_toy"].gt(0).all() and df["psnr_y"].isna().all()  # measured; unasked ones stay null
    cfg = json.loads((run / "run.json").read_text())["config"]
    assert cfg["metrics"] == ["psnr", "ms-ssim", "toy-mad"]
    # a lower-is-better metric: its curve axis falls with MAD, so the curves rise with rate
    agg = rd.aggregate(df)
    q = agg.points.loc[agg.points["method"] == "jpeg"].sort_values("bpp_real")["mad_rgb_toy"].to_numpy()
    assert np.all(np.diff(q) < 0)
    c = run_cli("compare", run, "--metric", "toy-mad", "-o", tmp_path / "bd")
    assert c.returncode == 0, c.stderr
    assert "BD--MAD [8-bit units]" in c.stdout and "| zoo:balle-qvrf8 | jpeg |" in c.stdout
    table = (tmp_path / "bd.csv").read_text()
    assert "toy-mad" in table
    r = run_cli("report", run, "-o", tmp_path / "r.html")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text()
    assert "MAD-RGB (toy) [8-bit units]" in html and "BD--MAD" in html


def test_a_run_with_a_metric_not_registered_here_is_refused_by_name(toy, tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    smooth_images(data, 1)
    run = tmp_path / "run"
    p = run_cli("sweep", "--dataset", data, "--out", run, "--peers", "jpeg", "--peer-qualities", "jpeg=50",
                "--metrics", "toy-mad", "--no-progress")  # fmt: skip
    assert p.returncode == 0, p.stderr
    unregister_metric("toy-mad")
    r = run_cli("report", run, "-o", tmp_path / "r.html")
    assert r.returncode == 2 and "mad_rgb_toy of a metric not registered here" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_default_set_and_names():
    assert [m.name for m in parse_metrics(None)] == ["psnr", "ms-ssim"]
    assert [m.name for m in parse_metrics("psnr-y")] == ["psnr", "ms-ssim", "psnr-y"]
    assert {"psnr-y", "psnr-yuv"} <= {m.name for m in parse_metrics("all")}
    with pytest.raises(QVRFError, match="unknown metric 'nope'"):
        parse_metrics("psnr,nope")
    with pytest.raises(ValueError, match="already registered"):
        register_metric(get_metric("psnr"))
    assert get_metric("ms-ssim").quality_column == "ms_ssim_db_rgb"


def bt709(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.709 Y'CbCr, written out (Kr = 0.2126, Kb = 0.0722), 0..255, chroma centred on 127.5."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return np.stack([y, (b - y) / (2 * (1 - 0.0722)) + 127.5, (r - y) / (2 * (1 - 0.2126)) + 127.5], -1)


def test_psnr_y_and_yuv_match_the_formula():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    test = np.clip(ref.astype(int) + rng.integers(-9, 10, ref.shape), 0, 255).astype(np.uint8)
    mse = np.square(bt709(ref) - bt709(test)).reshape(-1, 3).mean(0)
    want = 10 * np.log10(255.0**2 / mse)
    assert metrics.psnr_ycbcr(ref, test) == pytest.approx(tuple(want), rel=1e-12)
    assert metrics.psnr_y(ref, test) == pytest.approx(want[0], rel=1e-12)
    assert metrics.psnr_yuv(ref, test) == pytest.approx((6 * want[0] + want[1] + want[2]) / 8, rel=1e-12)
    assert math.isinf(metrics.psnr_y(ref, ref)) and math.isinf(metrics.psnr_yuv(ref, ref))
    assert np.allclose(metrics.ycbcr_bt709(np.full((1, 1, 3), 128, np.uint8)), [[[128, 127.5, 127.5]]])


def test_ms_ssim_y_is_pytorch_msssim_on_bt709_luma():
    import torch
    from PIL import Image
    from pytorch_msssim import ms_ssim

    from qvrf_bench.zoo import KODAK_DIR

    ref = np.asarray(Image.open(KODAK_DIR / "kodim07.png").convert("RGB"))[:200, :300]
    rng = np.random.default_rng(1)
    for noise in (2, 12):
        test = np.clip(ref.astype(int) + rng.integers(-noise, noise + 1, ref.shape), 0, 255).astype(np.uint8)
        y = lambda a: torch.from_numpy(bt709(a)[..., 0])[None, None]  # noqa: E731
        want = ms_ssim(y(ref).float(), y(test).float(), data_range=255).item()  # float32, as MS-SSIM-RGB
        assert metrics.ms_ssim_y(ref, test) == pytest.approx(want, rel=1e-6)
        assert metrics.ms_ssim_y(ref, test) != pytest.approx(metrics.ms_ssim_rgb(ref, test), abs=1e-5)
    assert math.isnan(metrics.ms_ssim_y(ref[:160], ref[:160]))
    spec = get_metric("ms-ssim-y")
    assert spec.quality_column == "ms_ssim_db_y" and "ms-ssim-y" in {m.name for m in parse_metrics("all")}


def test_ycbcr_is_compressais_rgb2ycbcr():
    import torch
    from compressai.transforms.functional import rgb2ycbcr

    rgb = np.random.default_rng(5).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    want = rgb2ycbcr(torch.from_numpy(rgb / 255.0).permute(2, 0, 1)).permute(1, 2, 0).numpy() * 255
    assert np.abs(metrics.ycbcr_bt709(rgb) - want).max() < 1e-9


PIQ = [("fsim", "fsim", {"chromatic": True}), ("vif", "vif_p", {}), ("gmsd", "gmsd", {}),
       ("iw-ssim", "information_weighted_ssim", {})]  # fmt: skip


@pytest.mark.parametrize("name, fn, kw", PIQ, ids=[p[0] for p in PIQ])
def test_piq_metrics_are_piqs_values_and_order_reconstructions(name, fn, kw):
    """The entries call piq on the 8-bit images / 255 (its own value, checked by calling it directly),
    reach 'identical' at identity and order three noise levels the way the metric's direction says."""
    piq = pytest.importorskip("piq", reason="piq is the optional metrics dependency ('.[metrics]', '.[dev]')")
    import torch

    m = get_metric(name)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:192, 0:224]
    ref = np.stack([x % 256, y % 256, (x * y) % 256], -1).astype(np.uint8)
    noisy = [np.clip(ref.astype(int) + rng.integers(-k, k + 1, ref.shape), 0, 255).astype(np.uint8) for k in (2, 8, 24)]
    t = [torch.tensor(a, dtype=torch.float32).permute(2, 0, 1)[None] / 255 for a in (ref, noisy[1])]
    assert m.per_image(ref, noisy[1]) == pytest.approx(
        float(getattr(piq, fn)(t[1], t[0], data_range=1.0, **kw)), rel=1e-6
    )
    axis = m.axis([m.per_image(ref, n) for n in noisy])
    assert np.all(np.diff(axis) < 0)  # more noise, lower on the curve axis, whichever way the metric points
    perfect = m.per_image(ref, ref)
    assert perfect == pytest.approx(0.0 if not m.higher_is_better else 1.0, abs=1e-5)


def test_psnr_hvs_m_is_the_packages_value_and_orders_noise():
    pytest.importorskip("psnr_hvsm", reason="psnr_hvsm is an optional metrics dependency ('.[metrics]')")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import psnr_hvsm
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    noisy = [np.clip(ref.astype(int) + rng.integers(-k, k + 1, ref.shape), 0, 255).astype(np.uint8) for k in (2, 8, 24)]
    m = get_metric("psnr-hvs-m")
    ya, yb = (psnr_hvsm.bt601ycbcr(a.astype(np.float64) / 255)[0] for a in (ref, noisy[1]))
    assert m.per_image(ref, noisy[1]) == pytest.approx(float(psnr_hvsm.psnr_hvs_hvsm(ya, yb)[1]), rel=1e-12)
    values = [m.per_image(ref, n) for n in noisy]
    assert values[0] > values[1] > values[2] and math.isinf(m.per_image(ref, ref))
