"""What the one-thread entropy path costs (models/determinism.py): encode + decode with the entropy
parameters (h_s and the autoregressive step loop) on one thread, against letting them use every thread.

    .venv/bin/python bench/entropy_threads_cost.py [-c zoo:balle-qvrf8 -c zoo:minnen-qvrf8] [--images 4] \
        [--threads 2] [--repeats 3]

For each model and Kodak image, one encode (codec.encode at level 4) and one decode, in both settings,
the settings alternating image by image so that both see the same machine load; per setting the sum
over images of the fastest of ``--repeats`` runs. The ratio is the remedy's cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from qvrf_bench import zoo
from qvrf_bench.images import load_image
from qvrf_bench.methods import codec
from qvrf_bench.models import determinism
from qvrf_bench.models.checkpoints import load_model


def one_run(model, rgb) -> float:
    t0 = time.perf_counter()
    data = codec.encode(model, rgb, level=4)
    codec.decode(model, data)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--checkpoint", action="append", default=None)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = [load_image(q).rgb for q in sorted(zoo.KODAK_DIR.glob("*.png"))[: args.images]]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.images} Kodak images, encode + decode at level 4")
    print("| model | entropy on one thread (s) | entropy threaded (s) | cost |")
    print("| --- | --- | --- | --- |")
    for spec in args.checkpoint or ["zoo:balle-qvrf8", "zoo:minnen-qvrf8"]:
        model, _ = load_model(zoo.resolve(spec))
        total = {True: 0.0, False: 0.0}
        for rgb in images:
            for enabled in (True, False):
                determinism.ENABLED = enabled
                total[enabled] += min(one_run(model, rgb) for _ in range(args.repeats))
        determinism.ENABLED = True
        print(
            f"| {spec} | {total[True]:.2f} | {total[False]:.2f} | {total[True] / total[False] - 1:+.0%} |", flush=True
        )


if __name__ == "__main__":
    main()
