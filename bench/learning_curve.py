"""Learning curve: Kodak PSNR and real-bitstream bpp of training snapshots, beside Pillow's JPEG.

Train with ``--keep-every N`` (snapshots in ``<run>/snapshots/step-NNNNNNN.pt``), then::

    .venv/bin/python bench/learning_curve.py runs/lc-balle-32x48 runs/lc-balle-64x96 \\
        --test-set qvrf_bench/data/kodak --out bench/results/learning_curve.csv

For every snapshot (and ``final.pt``) of every run folder it encodes each test image at the model's
level 0 (a fixed-rate model's only level), writes the real bytes, decodes them and measures
PSNR-RGB. The JPEG column is Pillow's JPEG PSNR at the same mean bpp, interpolated (PCHIP) on a
quality sweep of the same images: the gap "learned minus JPEG" at equal rate is what the budget has
to close. Snapshots already in the output CSV are skipped, so the script can run beside training.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qvrf_bench import images, metrics
from qvrf_bench.methods import codec
from qvrf_bench.models.checkpoints import load_model, read_file
from qvrf_bench.peers import JpegCodec

COLUMNS = ("run", "step", "N", "M", "lmbda", "images", "bpp", "psnr_rgb", "jpeg_psnr_rgb_same_bpp", "gap_db",
           "wall_s", "train_elapsed_s")  # fmt: skip


def jpeg_curve(rgbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean bpp and mean PSNR-RGB of Pillow's JPEG over the images, per quality 5..95."""
    jpeg = JpegCodec()
    qs = list(range(5, 96, 5))
    bpp, psnr = np.zeros(len(qs)), np.zeros(len(qs))
    for rgb in rgbs:
        h, w = rgb.shape[:2]
        for i, q in enumerate(qs):
            data = jpeg.encode(rgb, q)
            bpp[i] += metrics.bpp(len(data), h, w) / len(rgbs)
            psnr[i] += metrics.psnr_rgb(rgb, jpeg.decode(data)) / len(rgbs)
    return bpp, psnr


def jpeg_psnr_at(bpp_curve, psnr_curve, rate: float) -> float:
    from scipy.interpolate import PchipInterpolator

    if not bpp_curve[0] <= rate <= bpp_curve[-1]:
        return float("nan")
    return float(PchipInterpolator(bpp_curve, psnr_curve)(rate))


def evaluate(path: Path, rgbs: list[np.ndarray]) -> tuple[float, float, dict]:
    model, obj = load_model(path)
    bpps, psnrs = [], []
    for rgb in rgbs:
        data = codec.encode(model, rgb, level=0)
        out = codec.decode(model, data)
        h, w = rgb.shape[:2]
        bpps.append(metrics.bpp(len(data), h, w))
        psnrs.append(metrics.psnr_rgb(rgb, out))
    return float(np.mean(bpps)), float(np.mean(psnrs)), obj


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="training run folders")
    ap.add_argument("--test-set", type=Path, required=True, help="folder of test images (e.g. Kodak)")
    ap.add_argument("--images", type=int, help="use only the first N test images")
    ap.add_argument("--out", type=Path, default=Path("bench/results/learning_curve.csv"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figure", type=Path, help="also draw the CSV's curves into this PNG (after measuring)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    files = images.list_images(args.test_set)[: args.images]
    rgbs = [images.load_image(f).rgb for f in files]
    jb, jp = jpeg_curve(rgbs)
    done = set()
    if args.out.exists():
        with open(args.out) as f:
            done = {(r["run"], int(r["step"])) for r in csv.DictReader(f)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with open(args.out, "a", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        if new:
            w.writeheader()
        for run in args.runs:
            snaps = [(int(re.search(r"step-(\d+)", p.name).group(1)), p)
                     for p in sorted((run / "snapshots").glob("step-*.pt"))]  # fmt: skip
            if (run / "final.pt").is_file():  # a run without snapshots (a fine-tune) still has its end
                final_step = int((read_file(run / "final.pt").get("training") or {}).get("step", 0))
                if final_step not in {s for s, _ in snaps}:
                    snaps.append((final_step, run / "final.pt"))
            for step, snap in snaps:
                if (run.name, step) in done:
                    continue
                t0 = time.perf_counter()
                bpp, psnr, obj = evaluate(snap, rgbs)
                cfg = obj.get("config", {})
                tr = obj.get("training") or {}
                j = jpeg_psnr_at(jb, jp, bpp)
                row = {"run": run.name, "step": step, "N": cfg.get("N"), "M": cfg.get("M"),
                       "lmbda": (tr.get("config") or {}).get("lmbda"), "images": len(rgbs), "bpp": f"{bpp:.4f}",
                       "psnr_rgb": f"{psnr:.3f}", "jpeg_psnr_rgb_same_bpp": f"{j:.3f}", "gap_db": f"{psnr - j:.3f}",
                       "wall_s": f"{time.perf_counter() - t0:.1f}", "train_elapsed_s": tr.get("elapsed_s", "")}  # fmt: skip
                w.writerow(row)
                f.flush()
                print(", ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr)
    if args.figure:
        figure(args.out, args.figure, [r.name for r in args.runs])
    return 0


def figure(csv_path: Path, png: Path, runs: list[str]) -> None:
    """Kodak PSNR-RGB (real bytes) of each run's snapshots against steps and against training
    CPU-hours (the run's own elapsed time: one thread), with the JPEG PSNR at the same bpp dashed."""
    import pandas as pd
    from matplotlib.figure import Figure

    df = pd.read_csv(csv_path)
    df = df[df["run"].isin(runs)].sort_values(["run", "step"])
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    for i, (run, g) in enumerate(df.groupby("run", sort=False)):
        c = f"C{i}"
        label = f"{run} (N,M = {int(g['N'].iloc[0])},{int(g['M'].iloc[0])})"
        hours = pd.to_numeric(g["train_elapsed_s"], errors="coerce") / 3600
        ax1.plot(g["step"], g["psnr_rgb"], "o-", ms=3, color=c, label=label)
        ax1.plot(g["step"], g["jpeg_psnr_rgb_same_bpp"], "--", lw=1, color=c, alpha=0.6)
        ax2.plot(hours, g["psnr_rgb"], "o-", ms=3, color=c, label=label)
    ax1.set_xlabel("training steps (8 crops of 128 px each)")
    ax2.set_xlabel("training hours (wall time of a one-thread run; other jobs shared the CPU at times)")
    ax1.set_ylabel("PSNR-RGB on Kodak [dB] (real bitstreams)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.35)
    ax1.legend(fontsize=8, loc="lower right")
    n = int(df["images"].max()) if len(df) else 0
    fig.suptitle(f"Learning curves at lambda 0.18: mean over {n} Kodak images, level 0; dashed: Pillow JPEG at "
                 "the same mean bpp", fontsize=10)  # fmt: skip
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    print(f"figure: {png}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
