"""The y coding of the shipped zoo models (a sweep's coding and decode check): bitstream/rans.py's
C coder vs CompressAI's. Not a test: a measurement.

    .venv/bin/python bench/rans_decode.py [--archs balle,minnen,cheng2020] [--image kodim01.png] [--reps 3]

One Kodak image, the model's 8 levels + the 27 paper factors (35 strings, as a sweep decodes them),
``latent.code_latent`` and ``latent.decode_latent`` with each coder, alternating, one thread, median
of ``--reps``; the strings must be the same bytes and the decoded latents the encoder's. Also reports the y decode alone (the rANS calls) by
timing the same loop with the context step's results fixed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--archs", default="balle,minnen,cheng2020")
    p.add_argument("--dataset", default=str(REPO.parent / "shared/data/kodak"))
    p.add_argument("--image", default="kodim01.png")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    from qvrf_bench import zoo
    from qvrf_bench.bitstream import rans
    from qvrf_bench.images import load_image, pad, padding_for, rgb8_to_tensor
    from qvrf_bench.models import latent
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.sweep.run import paper_factors_for

    assert rans.backend() == "c", rans.backend()
    results = []
    for arch in args.archs.split(","):
        model, _ = load_model(zoo.resolve(f"zoo:{arch}-qvrf8"))
        img = load_image(Path(args.dataset) / args.image)
        x = rgb8_to_tensor(img.rgb)
        x = pad(x, padding_for(x.shape[2], x.shape[3]))
        levels = model.gain.detach().reshape(-1)
        gains = torch.cat([levels, torch.tensor(paper_factors_for(model))])
        with torch.no_grad():
            an = latent.analyse(model, x)
            strings, y_hat = latent.code_latent(model, an.y, an.params, gains)
            times = {f"{k} {n}": [] for k in ("encode", "decode") for n in ("compressai", "c")}
            for _ in range(args.reps):
                for name in ("compressai", "c"):
                    with rans.compressai_coder("bench") if name == "compressai" else contextlib.nullcontext():
                        t = time.perf_counter()
                        got, y_got = latent.code_latent(model, an.y, an.params, gains)
                        times[f"encode {name}"].append(time.perf_counter() - t)
                        t = time.perf_counter()
                        out = latent.decode_latent(model, strings, an.params, gains)
                        times[f"decode {name}"].append(time.perf_counter() - t)
                    assert got == strings and torch.equal(y_got, y_hat), f"{arch}: {name} wrote other bytes"
                    assert torch.equal(out, y_hat), f"{arch}: {name} decoded another latent"
        row = {"arch": arch, "points": len(gains), "H x W": list(x.shape[2:]),
               **{f"{k} ms/point": 1000 * statistics.median(v) / len(gains) for k, v in times.items()}}  # fmt: skip
        for k in ("encode", "decode"):
            row[f"{k} speed-up"] = row[f"{k} compressai ms/point"] / row[f"{k} c ms/point"]
        results.append(row)
        print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
