"""What each metric of the table costs per rate point: one Kodak image (768 x 512) against a JPEG
reconstruction of it, the metric's per-image function as the sweep calls it (a reference's cached
terms warm, as for the 2nd..35th point of an image), median of --reps. Not a test: a measurement.

    .venv/bin/python bench/metric_costs.py [--image kodim01.png] [--reps 5] [--threads 1]

Metrics whose package or weights are absent are listed as such (``--metrics all`` leaves them out).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="kodim01.png")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch
    from PIL import Image

    from qvrf_bench.metrics import all_metrics
    from qvrf_bench.metrics.table import _problem
    from qvrf_bench.results import store
    from qvrf_bench.zoo import KODAK_DIR

    torch.set_num_threads(args.threads)
    img = Image.open(KODAK_DIR / args.image).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=50)
    ref, test = np.asarray(img), np.asarray(Image.open(buf).convert("RGB"))
    print(f"per-point cost of each metric: {args.image} ({ref.shape[1]}x{ref.shape[0]}) vs its JPEG q=50, "
          f"{args.threads} thread(s), median of {args.reps}; {store.cpu_model()}, torch {torch.__version__}")  # fmt: skip
    print("| metric | column | value | ms per point |")
    print("|---|---|--:|--:|")
    for m in all_metrics():
        why = _problem(m)
        if why:
            print(f"| {m.name} | `{m.column}` | - | not available here ({why.split(':')[0]}) |")
            continue
        value = m.per_image(ref, test)  # warm: imports, a reference's cached terms
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            m.per_image(ref, test)
            times.append(time.perf_counter() - t0)
        print(f"| {m.name} | `{m.column}` | {value:.4f} | {1e3 * statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
