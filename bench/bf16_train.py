"""bf16 vs fp32 training speed on this CPU, through the suite's own model and loss (one process).

For each width: build a balle QVRF model at lambda 0.18, run ``--steps`` optimisation steps of 8
random 128 px crops (forward + backward + Adam) in each precision, report seconds per step (median
of the steps after a warm-up) and the speed-up. Quality at equal steps is measured by the learning
curve runs (bench/learning_curve.py), not here.

    python bench/bf16_train.py --widths 32,48 64,96 --steps 30 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="balle")
    ap.add_argument("--widths", nargs="+", default=["32,48", "64,96"])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the four transforms (g_a, g_s, h_a, h_s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from qvrf_bench.models.registry import create
    from qvrf_bench.train.loss import rate_distortion
    from qvrf_bench.train.precision import transforms_in

    rows = []
    for w in args.widths:
        N, M = (int(v) for v in w.split(","))
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = create(args.arch, "fixed", N=N, M=M, lmbda=0.18)
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            x = torch.rand(8, 3, 128, 128)
            if args.channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            if args.compile:  # the transforms only: the entropy models' custom ops stay eager
                for name in ("g_a", "g_s", "h_a", "h_s"):
                    setattr(model, name, torch.compile(getattr(model, name)))
            times = []
            for i in range(args.warmup + args.steps):
                t = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                with transforms_in(model, precision, "cpu"):
                    out = model(x, level=0)
                rd = rate_distortion(out, x, 0.18)
                assert out["x_hat"].dtype == torch.float32
                rd["loss"].backward()
                opt.step()
                if i >= args.warmup:
                    times.append(time.perf_counter() - t)
            rows.append(
                {"arch": args.arch, "N": N, "M": M, "precision": precision, "s_per_step": statistics.median(times)}
            )
            print(json.dumps(rows[-1]), flush=True)
    print("\n| N,M | fp32 s/step | bf16 s/step | speed-up |\n|---|--:|--:|--:|")
    for w in args.widths:
        N, M = (int(v) for v in w.split(","))
        f = next(r["s_per_step"] for r in rows if (r["N"], r["M"], r["precision"]) == (N, M, "fp32"))
        b = next(r["s_per_step"] for r in rows if (r["N"], r["M"], r["precision"]) == (N, M, "bf16"))
        print(f"| {N},{M} | {f:.3f} | {b:.3f} | {f / b:.2f}x |")


if __name__ == "__main__":
    main()
