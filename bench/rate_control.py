"""Rate control on a test set: does every image reach each target, in how many encodes, how fast.

    .venv/bin/python bench/rate_control.py -c zoo:balle-qvrf8 [-c CKPT ...] \\
        [--test-set qvrf_bench/data/kodak] [--targets 0.25,0.5,1] [--extrapolate] \\
        [--out bench/results/rate_control.csv]

For every checkpoint, image and target it runs ratecontrol.method_to_target twice: Brent's method
(what ``encode --bpp`` uses) and plain bisection on log gain (the baseline), and records whether the
window was met (not above the target, within 1 % below), the achieved bpp, the number of encodes and
the wall time (the analysis once per image, then y coding per try; model loading excluded). The
container is checked against a plain ``codec.encode_tensor`` at the found gain. A target outside
what the model reaches on an image is a row with ``reached = False`` and the reason.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from qvrf_bench import images
from qvrf_bench.errors import QVRFError
from qvrf_bench.methods import codec
from qvrf_bench.methods.qvrf import QVRFMethod
from qvrf_bench.models.checkpoints import load_model
from qvrf_bench.sweep import ratecontrol

COLUMNS = ("checkpoint", "image", "target_bpp", "method", "reached", "met", "bpp", "gain", "encodes", "seconds",
           "reason")  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--checkpoint", action="append", required=True)
    ap.add_argument("--test-set", default=str(Path(__file__).resolve().parents[1] / "qvrf_bench" / "data" / "kodak"))
    ap.add_argument("--targets", default="0.25,0.5,1")
    ap.add_argument("--extrapolate", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    targets = [float(t) for t in args.targets.split(",")]
    paths = images.list_images(args.test_set)
    rows = []
    for spec in args.checkpoint:
        model, _ = load_model(spec)
        qvrf = QVRFMethod(model, container=2)  # what `sweep -c` and `encode --bpp` search
        fp = qvrf.fingerprint()
        for path in paths:
            rgb = images.load_image(path).rgb
            for t in targets:
                for method, interp in (("brent", True), ("bisection", False)):
                    t0 = time.perf_counter()
                    try:
                        res, data, _ = ratecontrol.method_to_target(qvrf, rgb, ratecontrol.Target("bpp", t), spec, fp,
                                                                    args.extrapolate, interp)  # fmt: skip
                    except QVRFError as exc:
                        rows.append(dict(checkpoint=spec, image=Path(path).name, target_bpp=t, method=method,
                                         reached=False, met=False, reason=str(exc).split(";")[0]))  # fmt: skip
                        continue
                    dt = time.perf_counter() - t0
                    if method == "brent":
                        plain = codec.encode_tensor(model, images.rgb8_to_tensor(rgb), gain=res.knob, fingerprint=fp)
                        assert plain.data == data, "the search's container differs from encode_tensor's"
                    rows.append(dict(checkpoint=spec, image=Path(path).name, target_bpp=t, method=method, reached=True,
                                     met=res.met, bpp=res.achieved, gain=res.knob, encodes=len(res.tries), seconds=dt,
                                     reason=""))  # fmt: skip
            print(f"{spec}: {Path(path).name} done", file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in COLUMNS})
    print(summary(rows))
    return 0


def summary(rows) -> str:
    out = ["| checkpoint | target bpp | method | reached | met | mean encodes | max encodes | mean s / image |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    keys = sorted({(r["checkpoint"], r["target_bpp"], r["method"]) for r in rows}, key=lambda k: (k[0], k[1], k[2]))
    for ck, t, m in keys:
        g = [r for r in rows if (r["checkpoint"], r["target_bpp"], r["method"]) == (ck, t, m)]
        ok = [r for r in g if r["reached"]]
        enc = [r["encodes"] for r in ok]
        sec = [r["seconds"] for r in ok]
        out.append(f"| {ck} | {t:g} | {m} | {len(ok)}/{len(g)} | {sum(r['met'] for r in ok)}/{len(g)} | "
                   f"{np.mean(enc) if enc else float('nan'):.1f} | {max(enc) if enc else '-'} | "
                   f"{np.mean(sec) if sec else float('nan'):.2f} |")  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
