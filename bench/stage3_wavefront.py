"""Stage-3 training step of the autoregressive models: the serial STE loop by anti-diagonals
(wavefront, what training runs) against one latent position per step (raster: the loop of [QRAF]
and CompressAI, what training ran before), at 256x256, batch 8.

    .venv/bin/python bench/stage3_wavefront.py [--archs minnen,cheng2020] [--channels zoo|paper] \
        [--steps 3] [--threads 1]

Per architecture: seconds per training step (forward with quant="ste" in train mode, loss, backward;
the mean of ``--steps`` timed steps after one warm-up, the two orders alternating) in each order, their ratio, and how far the two
orders' numbers are apart in eval mode (rate term rounded, so both compute the same thing): the
largest |difference| of the reconstruction, the relative difference of the loss and of the gradient.
``--channels zoo`` = the shipped zoo's widths (minnen N,M = 32,48; cheng2020 N = 32); ``paper`` =
the QVRF defaults (192,320 and 192; slow on a CPU).
"""

from __future__ import annotations

import argparse
import time

import torch

from qvrf_bench.models import create
from qvrf_bench.models.qvrf import per_sample_noise
from qvrf_bench.train.loss import rate_distortion

WIDTHS = {"zoo": {"minnen": (32, 48), "cheng2020": (32, 32)}, "paper": {"minnen": (192, 320), "cheng2020": (192, 192)}}


def step(model, x, order: str, seed: int):
    model.serial_order = order
    model.zero_grad(set_to_none=True)
    with per_sample_noise(seed, 0, batch=x.shape[0]):
        out = model(x, gain=model.train_gain(3, stage=3), quant="ste")
    rd = rate_distortion(out, x, 0.013)
    rd["loss"].backward()
    return out["x_hat"].detach(), float(rd["loss"].detach()), torch.cat([p.grad.flatten() for p in model.parameters()
                                                                if p.grad is not None])  # fmt: skip


def loop_only(model, x, order: str, seed: int) -> float:
    """Seconds of the serial loop alone (forward and backward), on the model's own y and params."""
    from qvrf_bench.models.qvrf import ste_round

    with torch.no_grad():
        y = model.g_a(x)
        params = model.h_s(model.entropy_bottleneck(model.h_a(y))[0])
    y.requires_grad_(True)
    a = model.train_gain(3, stage=3)
    with per_sample_noise(seed, 0, batch=x.shape[0]):
        t0 = time.perf_counter()
        y_hat, lik = model._serial_forward(y, params, a, a.detach(), ste_round, order)
        (y_hat.sum() - torch.log(lik).sum()).backward()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="minnen,cheng2020")
    p.add_argument("--channels", default="zoo", choices=tuple(WIDTHS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.size}x{args.size}, batch {args.batch}, "
          f"{args.channels} widths")  # fmt: skip
    print("| arch | N,M | raster s/step | wavefront s/step | speed-up | loop only: raster / wavefront s "
          "| loop speed-up | max abs x_hat diff | loss rel diff | grad rel diff |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch in args.archs.split(","):
        N, M = WIDTHS[args.channels][arch]
        torch.manual_seed(0)
        model = create(arch, "qvrf", N=N, M=M)
        x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
        secs = {"raster": 0.0, "wavefront": 0.0}
        model.train()
        for order in secs:
            step(model, x, order, seed=0)  # warm-up
        for s in range(args.steps):  # the two orders alternate, so both see the same machine load
            for order in secs:
                t0 = time.perf_counter()
                step(model, x, order, seed=s + 1)
                secs[order] += (time.perf_counter() - t0) / args.steps
        loop = {"raster": 0.0, "wavefront": 0.0}
        for s in range(args.steps):
            for order in loop:
                loop[order] += loop_only(model, x, order, seed=s + 1) / args.steps
        model.eval()  # the same computation in both orders: the rate term rounded, not noised
        (xr, lr, gr), (xw, lw, gw) = (step(model, x, o, seed=0) for o in ("raster", "wavefront"))
        dx = float((xr - xw).abs().max())
        dl = abs(lr - lw) / abs(lr)
        dg = float((gr - gw).norm() / gr.norm())
        print(f"| {arch} | {N},{M} | {secs['raster']:.2f} | {secs['wavefront']:.2f} | "
              f"{secs['raster'] / secs['wavefront']:.1f}x | {loop['raster']:.2f} / {loop['wavefront']:.2f} | "
              f"{loop['raster'] / loop['wavefront']:.1f}x | {dx:.1e} | {dl:.1e} | {dg:.1e} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
