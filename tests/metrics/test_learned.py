"""LPIPS and DISTS from local weights files: found where the user put them, never downloaded, one
line when absent, and the values piq's own classes give with the same files.

The files here are made by the test (random VGG16 features; the classifier, which neither metric
uses, as zero-stride tensors so the file stays small): the plumbing is under test, not the published
weights' values."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("piq")


def write_weights(folder, seed: int = 0):
    import torch
    import torchvision

    g = torch.Generator().manual_seed(seed)
    sd = torchvision.models.vgg16(weights=None).state_dict()
    small = {}
    for k, v in sd.items():
        if k.startswith("features."):  # the layers LPIPS and DISTS use: real random values
            small[k] = (torch.randn(v.shape, generator=g) * (0.5 / max(1, v[0].numel()) ** 0.5)).to(v.dtype)
        else:  # 480 MB of classifier nobody reads: one value, broadcast (torch.save keeps the stride)
            small[k] = torch.zeros(1, dtype=v.dtype).expand(v.shape)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(small, folder / "vgg16-397923af.pth")
    chans = [64, 128, 256, 512, 512]
    torch.save([torch.rand(1, c, 1, 1, generator=g) for c in chans], folder / "lpips_weights.pt")
    n = 3 + sum(chans)
    a, b = torch.rand(1, n, 1, 1, generator=g), torch.rand(1, n, 1, 1, generator=g)
    s = a.sum() + b.sum()  # DISTS' weights sum to 1: identical images score 1 - 1 = 0
    torch.save({"alpha": a / s, "beta": b / s}, folder / "dists_weights.pt")
    assert (folder / "vgg16-397923af.pth").stat().st_size < 80e6


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metric-weights")
    write_weights(folder)
    return folder


def _images():
    from PIL import Image

    from qvrf_bench.zoo import KODAK_DIR

    ref = np.asarray(Image.open(KODAK_DIR / "kodim05.png").convert("RGB"))[:96, :128]
    rng = np.random.default_rng(0)
    noisy = [np.clip(ref.astype(int) + rng.integers(-k, k + 1, ref.shape), 0, 255).astype(np.uint8) for k in (4, 40)]
    return ref, noisy


def test_absent_files_are_one_line_and_all_leaves_them_out(tmp_path, monkeypatch):
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.metrics import parse_metrics

    monkeypatch.setenv("QVRF_BENCH_METRIC_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(QVRFError) as e:
        parse_metrics("psnr-y,lpips")
    msg = str(e.value)
    assert (
        "\n" not in msg and "lpips_weights.pt" in msg and str(tmp_path / "empty") in msg and "downloads nothing" in msg
    )
    assert not {"lpips", "dists"} & {m.name for m in parse_metrics("all")}


def test_local_files_give_piqs_values_without_any_download(weights, tmp_path, monkeypatch):
    import piq
    import torch

    from qvrf_bench.metrics import get_metric, learned, parse_metrics

    def no_network(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("QVRF_BENCH_METRIC_WEIGHTS", str(weights))
    assert {"lpips", "dists"} <= {m.name for m in parse_metrics("all")}
    ref, (mild, strong) = _images()
    # piq's classes themselves, finding the same files in a torch hub cache
    hub = tmp_path / "torch-home" / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    for f in ("vgg16-397923af.pth", "lpips_weights.pt", "dists_weights.pt"):
        (hub / "checkpoints" / f).write_bytes((weights / f).read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(hub.parent))
    hub_dir_before = torch.hub._hub_dir
    t = lambda a: torch.tensor(a, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0  # noqa: E731
    for name, cls in (("lpips", piq.LPIPS), ("dists", piq.DISTS)):
        spec = get_metric(name)
        assert not spec.higher_is_better
        fn = spec.per_image
        with torch.no_grad():
            want = [float(cls(reduction="none")(t(x), t(ref))) for x in (mild, strong)]
        got = [fn(ref, mild), fn(ref, strong)]
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)
        assert fn(ref, ref) == pytest.approx(0.0, abs=1e-6) and got[0] < got[1]
    assert len(learned._NETS) >= 2
    assert torch.hub._hub_dir == hub_dir_before  # building the networks left torch.hub's folder as it was


def test_a_sweep_measures_lpips(weights, tmp_path, monkeypatch):
    import pandas as pd
    from helpers import run_cli
    from PIL import Image

    ref, _ = _images()
    (tmp_path / "imgs").mkdir()
    Image.fromarray(ref).save(tmp_path / "imgs" / "a.png")
    monkeypatch.setenv("QVRF_BENCH_METRIC_WEIGHTS", str(weights))
    base = ["sweep", "--dataset", tmp_path / "imgs", "--peers", "jpeg", "--peer-qualities", "jpeg=20,80",
            "--metrics", "lpips", "--no-progress"]  # fmt: skip
    r = run_cli(*base, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "run" / "results")
    assert rows["lpips_vgg_rgb"].notna().all()
    assert rows.sort_values("quality")["lpips_vgg_rgb"].is_monotonic_decreasing
    monkeypatch.setenv("QVRF_BENCH_METRIC_WEIGHTS", str(tmp_path / "none"))
    r = run_cli(*base, "--out", tmp_path / "run2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "lpips_weights.pt" in r.stderr
    assert not (tmp_path / "run2").exists()  # refused before anything was written
