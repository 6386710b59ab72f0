"""Cross-decode mismatch table: encode with one thread count, decode in another process with others.

    .venv/bin/python bench/cross_decode.py [--images 6] [--threads 2,4] [--out bench/results/cross_decode.csv]

For each architecture, a model (the shipped zoo model where there is one, else a narrow model with
random weights, N=32, saying so) is swept on the first ``--images`` Kodak images at its 8 levels with
``--threads 1`` and ``--decode-threads T`` for each T (sweep.py + crossdecode.py: the second decoder
is a separate process). The table counts rows tried and rows whose second decoder's latent differed
from the encoder's. The same-thread control (T = 1) must give zero: it checks the check.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import torch

from qvrf_bench import zoo
from qvrf_bench.models import create, prepare_for_coding
from qvrf_bench.models.checkpoints import save_checkpoint
from qvrf_bench.store import ResultStore
from qvrf_bench.sweep import SweepConfig, run_sweep

ARCHS = ("balle", "minnen-mean", "minnen", "cheng2020")


def model_for(arch: str, tmp: Path) -> tuple[str, str]:
    name = f"{arch}-qvrf8"
    if name in zoo.names():
        return f"zoo:{name}", f"zoo:{name} (trained)"
    torch.manual_seed(0)
    path = tmp / f"{arch}.pt"
    save_checkpoint(path, prepare_for_coding(create(arch, "qvrf", N=32, M=48)))
    return str(path), f"{arch} N=32 (random weights)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--threads", default="1,2,4", help="decode thread counts (1 = the control)")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ds = tmp / "kodak"
        ds.mkdir()
        for p in sorted(zoo.KODAK_DIR.glob("*.png"))[: args.images]:
            (ds / p.name).write_bytes(p.read_bytes())
        for arch in args.archs.split(","):
            spec, label = model_for(arch, tmp)
            for threads in (int(v) for v in args.threads.split(",")):
                out = tmp / f"run-{arch}-{threads}"
                run_sweep(SweepConfig(dataset=ds, out=out, checkpoints=[spec], factors="none", device="cpu",
                                      threads=1, decode_threads=threads, progress=False))  # fmt: skip
                df = ResultStore(out).read()
                tried = int(df["cross_decode_ok"].notna().sum())
                bad = int((df["cross_decode_ok"] == False).sum())  # noqa: E712
                rows.append(dict(arch=arch, model=label, encode_threads=1, decode_threads=threads, rows=tried,
                                 mismatches=bad, local_decode_ok=int(df["decode_ok"].sum())))  # fmt: skip
                print(f"{label}: decode threads {threads}: {bad}/{tried} mismatches", file=sys.stderr, flush=True)
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print("| architecture | model | encode threads | decode threads (other process) | rows | mismatches |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arch']} | {r['model']} | 1 | {r['decode_threads']} | {r['rows']} | {r['mismatches']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
