"""Distortion and rate metrics: pure functions, arrays in, floats out (no files, no state).

The metric *table* (which of these a sweep computes, their columns, labels and aggregation) is
:mod:`qvrf_bench.metrics.table`; this module only computes.

Conventions (those of CompressAI 1.2.8's ``eval_model``, so our numbers are comparable with its
published ``8bit-decoded`` JSON):

- Both images are 8-bit RGB, shape (H, W, 3), dtype uint8. A learned codec's float reconstruction is
  rounded to 8 bit first (:func:`qvrf_bench.images.tensor_to_rgb8`): a user gets an 8-bit image back.
- PSNR-RGB: one MSE over all pixels and all three channels, peak 255. Identical images give
  ``float('inf')`` (not a cap such as 100 dB: a cap is a made-up number that would bias means).
  Aggregation (rd.py) must treat inf explicitly, e.g. drop it from dB means and report how many.
- MS-SSIM-RGB: ``pytorch_msssim.ms_ssim`` with its defaults (5 scales, 11x11 Gaussian window,
  sigma 1.5) on the 0..255 values with ``data_range=255``, as CompressAI does. Five scales need the
  shorter side to be > 160 pixels; below that the metric is undefined and we return NaN.
- PSNR-Y / PSNR-YUV: the 8-bit RGB converted to full-range Y'CbCr with BT.709 coefficients
  (CompressAI's ``rgb2ycbcr``) in float64, not re-quantised; PSNR per channel with peak 255;
  PSNR-YUV = (6 PSNR-Y + PSNR-Cb + PSNR-Cr) / 8, the 6:1:1 weighting of JVET's and JPEG AI's
  common test conditions (4:4:4 here: the codecs code RGB, nothing is subsampled). A channel
  that is identical gives inf and so does the weighted sum (as for PSNR-RGB).
- MS-SSIM in dB: ``-10 log10(1 - v)`` (CompressAI's plot convention); inf at v = 1.
- bpp: ``8 * bytes / (H * W)`` of the *original* (unpadded) image.
"""

from __future__ import annotations

import math

import numpy as np

# pytorch_msssim asserts min(H, W) > (win_size - 1) * 2**4 for its 4 downsamplings.
MS_SSIM_WIN_SIZE = 11
MS_SSIM_MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 2**4 + 1  # 161


def _check_pair(ref: np.ndarray, test: np.ndarray) -> None:
    for name, arr in (("ref", ref), ("test", test)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8:
            raise ValueError(
                f"{name} must be a uint8 numpy array, got {type(arr).__name__} {getattr(arr, 'dtype', '')}"
            )
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"{name} must have shape (H, W, 3), got {arr.shape}")
    if ref.shape != test.shape:
        raise ValueError(f"images differ in shape: {ref.shape} vs {test.shape}")
    if ref.size == 0:
        raise ValueError("empty image")


def mse_rgb(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """Mean squared error over all pixels and channels, in 8-bit units (0..255**2)."""
    _check_pair(ref_rgb8, test_rgb8)
    diff = ref_rgb8.astype(np.int32) - test_rgb8.astype(np.int32)  # exact: no float rounding here
    return float(np.square(diff, dtype=np.int64).sum()) / diff.size


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB; ``inf`` when mse == 0."""
    if mse < 0 or math.isnan(mse):
        raise ValueError(f"invalid MSE {mse}")
    if mse == 0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def psnr_rgb(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """PSNR-RGB (dB) of two (H, W, 3) uint8 images; ``float('inf')`` when they are identical."""
    return psnr_from_mse(mse_rgb(ref_rgb8, test_rgb8))


def ycbcr_bt709(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) float64 full-range Y'CbCr in 0..255: CompressAI's ``rgb2ycbcr``
    (its BT.709 ``YCBCR_WEIGHTS``; Y' = Kr R + Kg G + Kb B, Cb = (B - Y') / (2 (1 - Kb)) and
    Cr = (R - Y') / (2 (1 - Kr)), centred on 127.5), written as CompressAI writes it, in numpy on the
    channel planes (a 3x3 matrix product through BLAS was 4x slower here: its inner dimension is 3)."""
    from compressai.transforms.functional import YCBCR_WEIGHTS

    kr, kg, kb = YCBCR_WEIGHTS["ITU-R_BT.709"]
    rgb = np.asarray(rgb8, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    out = np.empty_like(rgb)
    y = out[..., 0]
    np.multiply(r, kr, out=y)
    y += kg * g
    y += kb * b
    out[..., 1] = (b - y) * (0.5 / (1 - kb)) + 127.5
    out[..., 2] = (r - y) * (0.5 / (1 - kr)) + 127.5
    return out


def psnr_ycbcr(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> tuple[float, float, float]:
    """(PSNR-Y, PSNR-Cb, PSNR-Cr) in dB of two (H, W, 3) uint8 RGB images (module docstring)."""
    _check_pair(ref_rgb8, test_rgb8)
    key = (_digest(ref_rgb8), _digest(test_rgb8))
    for k, v in _YCBCR_LAST:  # PSNR-Y and PSNR-YUV of one point share the conversion
        if k == key:
            return v
    diff = _reference_ycbcr(ref_rgb8, key[0]) - ycbcr_bt709(test_rgb8)
    mse = np.einsum("hwc,hwc->c", diff, diff) / (diff.shape[0] * diff.shape[1])
    # differences below float64's resolution of the conversion are identical pixels
    out = tuple(psnr_from_mse(float(v) if v > 1e-20 else 0.0) for v in mse)
    _YCBCR_LAST[:] = [(key, out), *_YCBCR_LAST[:1]]
    return out  # type: ignore[return-value]


_YCBCR_REF: list = []  # [digest, Y'CbCr] of the last reference
_YCBCR_LAST: list = []  # the last two ((ref digest, test digest), result)


def _reference_ycbcr(ref_rgb8: np.ndarray, digest: bytes | None = None) -> np.ndarray:
    """Y'CbCr of the reference, kept for the next call (a sweep scores dozens of points of one image)."""
    digest = digest or _digest(ref_rgb8)
    if not (_YCBCR_REF and _YCBCR_REF[0] == digest):
        _YCBCR_REF[:] = [digest, ycbcr_bt709(ref_rgb8)]
    return _YCBCR_REF[1]


def _digest(a: np.ndarray) -> bytes:
    import hashlib

    return hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest() + repr(a.shape).encode()


def psnr_y(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """PSNR of the BT.709 luma (dB)."""
    return psnr_ycbcr(ref_rgb8, test_rgb8)[0]


def psnr_yuv(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """PSNR-YUV (dB): (6 PSNR-Y + PSNR-Cb + PSNR-Cr) / 8, BT.709 4:4:4 (module docstring)."""
    y, cb, cr = psnr_ycbcr(ref_rgb8, test_rgb8)
    return (6.0 * y + cb + cr) / 8.0


def ms_ssim_rgb(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """MS-SSIM-RGB in [0, 1] of two (H, W, 3) uint8 images.

    NaN when the shorter side is <= 160 pixels (too small for 5 scales; pytorch_msssim would assert).
    float32 on the CPU like CompressAI (float64 is 8x slower and moves the value by ~1e-7).
    The value is ``pytorch_msssim.ms_ssim``'s (tested to 1e-6; the same arithmetic); the reference image's blurs are kept
    for the next call with the same reference, since a sweep scores dozens of reconstructions of one image.
    """
    _check_pair(ref_rgb8, test_rgb8)
    if min(ref_rgb8.shape[:2]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    return _MsSsimReference.of(ref_rgb8).score(test_rgb8)


def ms_ssim_y(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """MS-SSIM of the BT.709 full-range luma in [0, 1] (JPEG AI's and JVET's MS-SSIM-Y): Y' computed
    as for PSNR-Y (float, 0..255, not re-quantised), then pytorch_msssim's MS-SSIM with the same
    settings as MS-SSIM-RGB (data_range 255). NaN below 161 pixels, as MS-SSIM-RGB."""
    _check_pair(ref_rgb8, test_rgb8)
    if min(ref_rgb8.shape[:2]) < MS_SSIM_MIN_SIDE:
        return float("nan")
    return _MsSsimReference.of(_reference_ycbcr(ref_rgb8)[..., :1]).score(ycbcr_bt709(test_rgb8)[..., :1])


class _MsSsimReference:
    """One reference image's per-scale pyramid, blur and blurred square (pytorch_msssim's ``_ssim`` terms
    that do not depend on the test image): 3 of the 5 Gaussian blurs per scale are left per call.
    Images are (H, W, C) arrays of 0..255 values, any C.

    The blurs are pytorch_msssim's own ``gaussian_filter`` (grouped 1-D convolutions) on the same
    tensors, so every value is the library's to the bit. A blur written as in-place multiply-adds was
    measured 1.6x faster per sweep point (bench/README "ms_ssim_speed.py") but, summing in another
    order, moved values by up to 7e-6 on Kodak (kodim20, whose flat sky makes float32 itself 5e-5
    from exact) and three printed BD cells of the main job: not kept."""

    _cache: list[tuple[bytes, _MsSsimReference]] = []  # the last two references, by content digest
    WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # pytorch_msssim's defaults
    K1, K2, DATA_RANGE = 0.01, 0.03, 255.0

    @classmethod
    def of(cls, ref_rgb8: np.ndarray) -> _MsSsimReference:
        key = _digest(ref_rgb8)
        for k, r in cls._cache:
            if k == key:
                return r
        r = cls(ref_rgb8)
        cls._cache = [(key, r), *cls._cache[:1]]
        return r

    def __init__(self, ref_rgb8: np.ndarray):
        import torch
        from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter

        self._blur = gaussian_filter
        self.win = _fspecial_gauss_1d(MS_SSIM_WIN_SIZE, 1.5).repeat(ref_rgb8.shape[-1], 1, 1, 1)
        x = _to_tensor(ref_rgb8)
        self.scales = []  # per scale: (x, mu1, mu1^2, sigma1^2, avg-pool padding)
        with torch.no_grad():
            for i in range(len(self.WEIGHTS)):
                mu1 = gaussian_filter(x, self.win)
                mu1_sq = mu1.pow(2)
                pad = [s % 2 for s in x.shape[2:]]
                self.scales.append((x, mu1, mu1_sq, gaussian_filter(x * x, self.win) - mu1_sq))
                if i < len(self.WEIGHTS) - 1:
                    x = torch.nn.functional.avg_pool2d(x, kernel_size=2, padding=pad)

    def score(self, test_rgb8: np.ndarray) -> float:
        import torch

        c1, c2 = (self.K1 * self.DATA_RANGE) ** 2, (self.K2 * self.DATA_RANGE) ** 2
        y = _to_tensor(test_rgb8)
        terms = []
        with torch.no_grad():
            for i, (x, mu1, mu1_sq, sigma1_sq) in enumerate(self.scales):
                mu2 = self._blur(y, self.win)
                mu2_sq, mu1_mu2 = mu2.pow(2), mu1 * mu2
                sigma2_sq = self._blur(y * y, self.win) - mu2_sq
                sigma12 = self._blur(x * y, self.win) - mu1_mu2
                cs_map = (2 * sigma12 + c2) / (sigma1_sq + sigma2_sq + c2)
                if i < len(self.scales) - 1:
                    terms.append(torch.relu(torch.flatten(cs_map, 2).mean(-1)))
                    pad = [s % 2 for s in y.shape[2:]]
                    y = torch.nn.functional.avg_pool2d(y, kernel_size=2, padding=pad)
                else:
                    ssim_map = ((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
                    terms.append(torch.relu(torch.flatten(ssim_map, 2).mean(-1)))
            weights = torch.tensor(self.WEIGHTS).view(-1, 1, 1)
            value = torch.prod(torch.stack(terms, dim=0) ** weights, dim=0).mean(1)
        return float(value)


def _to_tensor(a: np.ndarray):
    """(1, C, H, W) float32 over a copy of the (H, W, C) array's memory: channels-last. The size-1 batch
    dim gets the stride C * H * W: unsqueeze would give it C, and oneDNN then leaves its channels-last
    convolution for a path 4x slower (MS-SSIM 82 -> 40 ms a Kodak point; bench/README). The value is
    pytorch_msssim's on this tensor to the bit; other layouts sum in other orders, 1.5e-7 apart."""
    import torch

    # A C-ordered float32 copy whatever the array's strides (a codec's output is often a transposed view,
    # and torch.tensor would keep its strides); a fresh array, so from_numpy does not warn.
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    H, W, C = t.shape
    return t.permute(2, 0, 1).unsqueeze(0).as_strided((1, C, H, W), (C * H * W, 1, W * C, C))


def db_of_similarity(v) -> np.ndarray:
    """``-10 log10(1 - v)`` of an array of similarities in [0, 1] (MS-SSIM, IW-SSIM): +inf at 1, NaN
    stays NaN; the dB axis CompressAI's plots use."""
    x = np.asarray(v, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -10.0 * np.log10(1.0 - x)


def ms_ssim_db(v: float) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - v)``: inf at v >= 1, NaN for NaN."""
    v = float(v)
    if math.isnan(v):
        return float("nan")
    if v >= 1.0:
        return float("inf")
    return -10.0 * math.log10(1.0 - v)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of ``num_bytes`` for an image of ``height`` x ``width`` pixels."""
    if height <= 0 or width <= 0:
        raise ValueError(f"invalid image size {height}x{width}")
    if num_bytes < 0:
        raise ValueError(f"invalid byte count {num_bytes}")
    return 8.0 * num_bytes / (height * width)


# --- full-reference perceptual metrics of piq (an optional dependency: pip install qvrf-bench[metrics]) ---


def piq_metric(name: str, **kwargs):
    """A per-image function (two (H, W, 3) uint8 images -> float) of ``piq.<name>`` on the 0..1 float
    images, with ``kwargs``. NaN where piq refuses the size (its filters need a minimum side)."""

    def per_image(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
        import piq
        import torch

        _check_pair(ref_rgb8, test_rgb8)
        x, y = (
            torch.tensor(a, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0) / 255.0 for a in (test_rgb8, ref_rgb8)
        )
        try:
            with torch.no_grad():
                return float(getattr(piq, name)(x, y, data_range=1.0, **kwargs))
        except (ValueError, AssertionError, RuntimeError) as exc:
            if "size" in str(exc).lower() or "dimension" in str(exc).lower() or "kernel" in str(exc).lower():
                return float("nan")
            raise

    per_image.__name__ = f"piq_{name}"
    return per_image


def psnr_hvs_m(ref_rgb8: np.ndarray, test_rgb8: np.ndarray) -> float:
    """PSNR-HVS-M (dB) of BT.601 luma (the psnr_hvsm package, its numpy backend, on the 8-bit images / 255:
    the usual convention of the metric's authors); ``inf`` for identical images (the package caps at 100)."""
    import contextlib
    import io

    _check_pair(ref_rgb8, test_rgb8)
    if np.array_equal(ref_rgb8, test_rgb8):
        return float("inf")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a note about its torch backend
        import psnr_hvsm
    ya, _, _ = psnr_hvsm.bt601ycbcr(ref_rgb8.astype(np.float64) / 255.0)
    yb, _, _ = psnr_hvsm.bt601ycbcr(test_rgb8.astype(np.float64) / 255.0)
    # flat 8x8 tiles (zero variance) divide by zero inside the package, which np.where then discards:
    # numpy's warning about it says nothing to a user
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(psnr_hvsm.psnr_hvs_hvsm(ya, yb)[1])
