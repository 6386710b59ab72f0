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
    ref = np.asarray(img)
    tests = []
    for q in range(40, 40 + args.reps + 1):  # a new reconstruction per point, as in a sweep
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        tests.append(np.asarray(Image.open(buf).convert("RGB")))
    print(f"per-point cost of each metric: {args.image} ({ref.shape[1]}x{ref.shape[0]}) vs JPEG q=41..{40 + args.reps}"
          f" (q=40 warms up), metrics called in the table's order per point as the sweep calls them, "
          f"{args.threads} thread(s), median of {args.reps}; {store.cpu_model()}, torch {torch.__version__}")  # fmt: skip
    usable = []
    for m in all_metrics():
        why = _problem(m)
        if why:
            print(f"| {m.name} | `{m.column}` | - | not available here ({why.split(':')[0]}) |")
        else:
            usable.append(m)
    times = {m.name: [] for m in usable}
    values = {}
    for i, test in enumerate(tests):
        for m in usable:
            t0 = time.perf_counter()
            v = m.per_image(ref, test)
            if i:  # the first point warms imports and the reference's cached terms
                times[m.name].append(time.perf_counter() - t0)
            values[m.name] = v
    print(f"| metric | column | value (q={40 + args.reps}) | ms per point |")
    print("|---|---|--:|--:|")
    for m in usable:
        print(f"| {m.name} | `{m.column}` | {values[m.name]:.4f} | {1e3 * statistics.median(times[m.name]):.1f} |")


if __name__ == "__main__":
    main()
