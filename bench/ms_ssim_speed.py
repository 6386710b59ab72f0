"""MS-SSIM-RGB per image and per rate point: the library, the suite's kept-reference path (the
library's own grouped-convolution blurs: bit-exact), and an alternative measured and not kept (the
separable blur as in-place multiply-adds); with their agreement with pytorch_msssim on Kodak images.
Not a test: a measurement.

    .venv/bin/python bench/ms_ssim_speed.py [--images 24] [--points 35] [--threads 1]

"per point in a batch of 35": one reference image and 35 reconstructions of it (a sweep's points of
one image), the reference's terms computed once, as the sweep does; reported per reconstruction.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def gaussian_blur_valid(t, taps):
    """The alternative: the separable 'valid' blur as one in-place multiply-add per tap (2 x 11 passes)."""
    import torch

    n = len(taps)
    h, w = t.shape[-2:]
    u = torch.mul(t[..., :, 0 : w - n + 1], taps[0])
    for i in range(1, n):
        u.add_(t[..., :, i : i + w - n + 1], alpha=taps[i])
    v = torch.mul(u[..., 0 : h - n + 1, :], taps[0])
    for i in range(1, n):
        v.add_(u[..., i : i + h - n + 1, :], alpha=taps[i])
    return v


def inplace_score(ref_terms, test, win, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
    """The kept-reference computation with the three test blurs per scale as one batch of in-place passes."""
    import torch

    from qvrf_bench.metrics.functional import _to_tensor

    taps = win[0].flatten().tolist()
    gaussian_filter = lambda t, _w: gaussian_blur_valid(t, taps)  # noqa: E731

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    y = _to_tensor(test)
    terms = []
    with torch.no_grad():
        for i, (x, mu1, mu1_sq, s1) in enumerate(ref_terms):
            mu2 = gaussian_filter(y, win)
            mu2_sq, mu1_mu2 = mu2.pow(2), mu1 * mu2
            s2 = gaussian_filter(y * y, win) - mu2_sq
            s12 = gaussian_filter(x * y, win) - mu1_mu2
            cs = (2 * s12 + c2) / (s1 + s2 + c2)
            if i < 4:
                terms.append(torch.relu(torch.flatten(cs, 2).mean(-1)))
                y = torch.nn.functional.avg_pool2d(y, 2, padding=[s % 2 for s in y.shape[2:]])
            else:
                terms.append(torch.relu(torch.flatten(((2 * mu1_mu2 + c1) / (mu1_sq + mu2_sq + c1)) * cs, 2).mean(-1)))
        w = torch.tensor(weights).view(-1, 1, 1)
        return float(torch.prod(torch.stack(terms, 0) ** w, 0).mean(1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--names", help="comma-separated Kodak file names instead of the first --images")
    ap.add_argument("--points", type=int, default=35)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch
    from PIL import Image
    from pytorch_msssim import ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    from qvrf_bench.metrics import functional as F
    from qvrf_bench.results import store
    from qvrf_bench.zoo import KODAK_DIR

    torch.set_num_threads(args.threads)
    paths = ([KODAK_DIR / n for n in args.names.split(",")] if args.names
             else sorted(KODAK_DIR.glob("*.png"))[: args.images])  # fmt: skip
    rng = np.random.default_rng(0)
    win = _fspecial_gauss_1d(11, 1.5).repeat(3, 1, 1, 1)
    worst = worst_alt = 0.0
    t_lib, t_old, t_new = [], [], []
    for p in paths:
        ref = np.asarray(Image.open(p).convert("RGB"))
        tests = [np.clip(ref.astype(int) + rng.integers(-k, k + 1, ref.shape), 0, 255).astype(np.uint8)
                 for k in np.linspace(1, 40, args.points).round().astype(int)]  # fmt: skip
        F._MsSsimReference._cache = []
        r = F._MsSsimReference.of(ref)  # the reference's terms: the same for the suite and the alternative
        for j, t in enumerate(tests):  # the three alternate point by point (a shared machine is fair to all)
            a = time.perf_counter()
            lib = float(ms_ssim(F._to_tensor(ref), F._to_tensor(t), data_range=255))
            b = time.perf_counter()
            suite = F.ms_ssim_rgb(ref, t)
            c = time.perf_counter()
            alt = inplace_score(r.scales, t, win)
            d = time.perf_counter()
            t_lib.append(b - a)
            t_old.append(c - b)
            t_new.append(d - c)
            if j % 5 == 0 or j == len(tests) - 1:
                worst = max(worst, abs(suite - lib) / lib)
                worst_alt = max(worst_alt, abs(alt - lib) / lib)
    med = lambda v: 1e3 * float(np.median(v))  # noqa: E731
    print(f"MS-SSIM-RGB on {len(paths)} Kodak images x {args.points} reconstructions, {args.threads} thread(s), "
          f"{store.cpu_model()}, torch {torch.__version__}")  # fmt: skip
    print("| path | ms per reconstruction (median) |")
    print("|---|--:|")
    print(f"| pytorch_msssim.ms_ssim (everything per call) | {med(t_lib):.1f} |")
    print(f"| reference kept, the library's blurs (the suite) | {med(t_old):.1f} |")
    print(f"| reference kept, in-place separable blur (not kept) | {med(t_new):.1f} |")
    print(f"largest relative difference from pytorch_msssim: the suite {worst:.2e}, the alternative {worst_alt:.2e}")


if __name__ == "__main__":
    main()
