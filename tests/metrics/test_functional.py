import math

import numpy as np
import pytest

from qvrf_bench import metrics


def _pair(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_matches_definition():
    a, b = _pair()
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert metrics.psnr_rgb(a, b) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-12)
    assert metrics.psnr_rgb(a, b) == metrics.psnr_rgb(b, a)


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    assert metrics.psnr_rgb(a, b) == pytest.approx(0.0)
    c = a.copy()
    c[0, 0, 0] = 1  # MSE = 1/48
    assert metrics.psnr_rgb(a, c) == pytest.approx(10 * math.log10(255**2 * 48))


def test_psnr_identical_is_inf():
    a, _ = _pair()
    assert metrics.psnr_rgb(a, a.copy()) == float("inf")


def test_psnr_rejects_bad_input():
    a, b = _pair()
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr_rgb(a, b[:-1])
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr_rgb(a.astype(np.float32), b)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        metrics.psnr_rgb(a[..., 0], b[..., 0])


def test_ms_ssim_matches_compressai_convention():
    import torch
    from pytorch_msssim import ms_ssim

    a, b = _pair(192, 200)
    ref = ms_ssim(
        torch.from_numpy(a).permute(2, 0, 1)[None].float(),
        torch.from_numpy(b).permute(2, 0, 1)[None].float(),
        data_range=255,
    ).item()
    v = metrics.ms_ssim_rgb(a, b)
    assert v == pytest.approx(ref, abs=1e-6)
    assert 0 < v < 1
    assert metrics.ms_ssim_rgb(a, a) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_kept_reference_gives_pytorch_msssim_values():
    """The reference's blurs are kept between calls: values stay pytorch_msssim's for every test image
    of one reference, odd sizes included (avg-pool padding), and a new reference of the same shape is
    not served from the cache."""
    import torch
    from pytorch_msssim import ms_ssim

    def lib(x, y):
        t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
        return ms_ssim(t(x), t(y), data_range=255).item()

    for h, w in ((171, 203), (192, 256)):
        for seed in range(2):
            a, _ = _pair(h, w, seed=seed)
            for noise in (1, 9, 40):
                rng = np.random.default_rng(noise)
                b = np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)
                assert metrics.ms_ssim_rgb(a, b) == pytest.approx(lib(a, b), abs=1e-6)
    a, b = _pair(192, 192, seed=3)
    first = metrics.ms_ssim_rgb(a, b)
    a2 = a.copy()
    a2[:96] = 255 - a2[:96]  # same shape, different content
    assert metrics.ms_ssim_rgb(a2, b) == pytest.approx(lib(a2, b), abs=1e-6) != pytest.approx(first, abs=1e-3)


def test_ms_ssim_is_the_librarys_on_the_same_tensor_to_the_bit_and_near_it_on_others():
    """The suite's tensor is channels-last with a batch stride oneDNN takes (functional._to_tensor):
    pytorch_msssim on that very tensor gives the same float; on NCHW (CompressAI's ToTensor) or on
    unsqueeze's stride the library itself sums in another order, within 1e-6."""
    from pytorch_msssim import ms_ssim

    from qvrf_bench.metrics.functional import _to_tensor

    a, b = _pair(200, 232, seed=5)
    x, y = _to_tensor(a), _to_tensor(b)
    assert x.stride() == (200 * 232 * 3, 1, 232 * 3, 3) and torch_equal(x.permute(0, 2, 3, 1)[0], a)
    v = metrics.ms_ssim_rgb(a, b)
    assert v == ms_ssim(x, y, data_range=255).item()
    for layout in (lambda t: t.contiguous(), lambda t: t[0].unsqueeze(0)):
        assert v == pytest.approx(ms_ssim(layout(x), layout(y), data_range=255).item(), rel=1e-6)
    # a codec's reconstruction is often a transposed view ((3, H, W) memory): the same value
    view = np.ascontiguousarray(b.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert not view.flags.c_contiguous and metrics.ms_ssim_rgb(a, view) == v
    assert metrics.ms_ssim_rgb(view.copy(), a) == metrics.ms_ssim_rgb(b, a)


def torch_equal(t, a: np.ndarray) -> bool:
    import torch

    return bool(torch.equal(t, torch.tensor(a, dtype=torch.float32)))


def test_ms_ssim_matches_pytorch_msssim_on_kodak():
    """Against the library on real photos (landscape and portrait Kodak images, kodim20 with its flat
    sky where float32 is furthest from exact), from near-lossless to coarse, and at the smallest size
    five scales allow: within 1e-6 relative (the kept reference uses the library's own blurs)."""
    import torch
    from PIL import Image
    from pytorch_msssim import ms_ssim

    from qvrf_bench.zoo import KODAK_DIR

    def lib(x, y):
        t = lambda a: torch.tensor(a).permute(2, 0, 1)[None].float()  # noqa: E731
        return ms_ssim(t(x), t(y), data_range=255).item()

    rng = np.random.default_rng(0)
    for name in ("kodim01.png", "kodim04.png", "kodim20.png"):  # kodim04: portrait
        a = np.asarray(Image.open(KODAK_DIR / name).convert("RGB"))
        for crop in (a, a[:161, :161], a[3:170, 5:])[: 3 if name == "kodim01.png" else 1]:
            for noise in (1, 6, 30):
                b = np.clip(crop.astype(int) + rng.integers(-noise, noise + 1, crop.shape), 0, 255).astype(np.uint8)
                assert metrics.ms_ssim_rgb(crop, b) == pytest.approx(lib(crop, b), rel=1e-6)


@pytest.mark.parametrize("shape", [(160, 400), (400, 160), (64, 96), (1, 1)])
def test_ms_ssim_small_images_are_nan_not_a_crash(shape):
    a, b = _pair(*shape)
    assert math.isnan(metrics.ms_ssim_rgb(a, b))


def test_ms_ssim_smallest_valid_size():
    a, b = _pair(161, 161)
    assert 0 < metrics.ms_ssim_rgb(a, b) <= 1


def test_ms_ssim_accepts_read_only_arrays():
    a, b = _pair(192, 192)
    a.setflags(write=False)
    assert 0 < metrics.ms_ssim_rgb(a, b) < 1


def test_ms_ssim_db():
    assert metrics.ms_ssim_db(0.9) == pytest.approx(10.0)
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(1.0) == float("inf")
    assert math.isnan(metrics.ms_ssim_db(float("nan")))


def test_bpp():
    assert metrics.bpp(1000, 512, 768) == pytest.approx(8000 / 393216)
    assert metrics.bpp(0, 1, 1) == 0.0
    with pytest.raises(ValueError):
        metrics.bpp(10, 0, 5)
    with pytest.raises(ValueError):
        metrics.bpp(-1, 5, 5)
