"""Cross-decode mismatch table: encode with one thread count, decode in another process with others.

    .venv/bin/python bench/cross_decode.py [--images 6] [--threads 1,2,4] [--entropy one,threaded] \
        [--out bench/results/cross_decode.csv]

For each architecture, a model (the shipped zoo model where there is one, else a narrow model with
random weights, N=32, saying so) is swept on the first ``--images`` Kodak images at its 8 levels with
``--threads 1`` and ``--decode-threads T`` for each T (sweep.py + crossdecode.py: the second decoder
is a separate process). The table counts rows tried, rows whose second decoder did not recover the
encoder's symbols (a broken bitstream), rows not bit-exact (latent or image differ by floating-point
noise), and the lowest PSNR of a cross-decoded image against the local decode. The same-thread
control (T = 1) must be exact: it checks the check.

``--entropy``: ``one`` is the shipped behaviour (h_s and the autoregressive step loop with one thread,
models/determinism.py); ``threaded`` lets them use the decoder's threads (QVRF_BENCH_THREADED_ENTROPY=1,
inherited by the decoder process): what the remedy prevents. ``sweep_s`` is each sweep's wall time
(encode with one thread plus the local decode), for the remedy's cost.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from qvrf_bench import zoo
from qvrf_bench.models import create, prepare_for_coding
from qvrf_bench.models.checkpoints import save_checkpoint
from qvrf_bench.results.store import ResultStore
from qvrf_bench.sweep.run import SweepConfig, run_sweep

ARCHS = ("balle", "minnen-mean", "minnen", "cheng2020")


def model_for(arch: str, tmp: Path) -> tuple[str, str]:
    name = f"{arch}-qvrf8"
    if name in zoo.names():
        return f"zoo:{name}", f"zoo:{name} (trained)"
    torch.manual_seed(0)
    path = tmp / f"{arch}.pt"
    save_checkpoint(path, prepare_for_coding(create(arch, "qvrf", N=32, M=48)))
    return str(path), f"{arch} N,M=32,48 (random weights)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--threads", default="1,2,4", help="decode thread counts (1 = the control)")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--entropy", default="one,threaded", help="one (shipped), threaded (without the remedy)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", nargs=4, metavar=("SPEC", "DS", "OUT", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:  # one sweep in this process (its environment says which entropy mode)
        spec, ds, out, threads = args.worker
        t0 = time.perf_counter()
        run_sweep(SweepConfig(dataset=ds, out=out, checkpoints=[spec], factors="none", device="cpu", threads=1,
                              decode_threads=int(threads), progress=False))  # fmt: skip
        print(f"{time.perf_counter() - t0:.3f}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ds = zoo.kodak_subset(tmp / "kodak", args.images)
        for arch in args.archs.split(","):
            spec, label = model_for(arch, tmp)
            for mode in args.entropy.split(","):
                env = {**os.environ, "QVRF_BENCH_THREADED_ENTROPY": "1" if mode == "threaded" else "0"}
                for threads in (int(v) for v in args.threads.split(",")):
                    out = tmp / f"run-{arch}-{mode}-{threads}"
                    res = subprocess.run([sys.executable, __file__, "--worker", spec, str(ds), str(out), str(threads)],
                                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
                    sweep_s = float(res.stdout.strip().splitlines()[-1])
                    df = ResultStore(out).read()
                    tried = int(df["cross_decode_ok"].notna().sum())
                    bad = int((df["cross_decode_ok"] == False).sum())  # noqa: E712
                    inexact = int((df["cross_decode_exact"] == False).sum())  # noqa: E712
                    psnr = df["cross_decode_psnr_db"].astype(float)
                    rows.append(dict(arch=arch, model=label, entropy=mode, encode_threads=1, decode_threads=threads,
                                     rows=tried, mismatches=bad, not_bit_exact=inexact, min_psnr_db=float(psnr.min()),
                                     sweep_s=round(sweep_s, 2)))  # fmt: skip
                    print(f"{label} [{mode}]: decode threads {threads}: {bad}/{tried} symbol mismatches, {inexact} not "
                          f"bit-exact, min PSNR vs local decode {psnr.min():.1f} dB, sweep {sweep_s:.1f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    print("| architecture | model | entropy path | decode threads (other process) | rows | symbol mismatches "
          "| not bit-exact | min PSNR vs local decode | sweep s |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arch']} | {r['model']} | {r['entropy']} | {r['decode_threads']} | {r['rows']} | "
              f"{r['mismatches']} | {r['not_bit_exact']} | {r['min_psnr_db']:.1f} dB | {r['sweep_s']:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
