"""Reading a run folder: one compacted part vs one part per (image, method), at paper scale.

Writes ``--rows`` synthetic rows of the result schema (every column filled as a sweep fills it) into
two run folders: one as the sweep now leaves it (rows buffered by ``store.RowBuffer``, then
``compact``: one part), one as 0.2 left it (a part per (image, method) of ``--rows-per-part`` rows),
and times ``ResultStore.read()`` (schema check, dedupe, pandas) on each, median of ``--reps``.

    .venv/bin/python bench/store_read.py [--rows 100000] [--rows-per-part 35] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from qvrf_bench.results.store import ResultStore


def rows(n: int):
    for i in range(n):
        img, pt = divmod(i, 35)
        yield {
            "method": f"m{img % 30}", "arch": "balle", "kind": "qvrf", "engine": "fast", "checkpoint": "ck.pt",
            "checkpoint_sha256": f"{img % 30:064x}", "level": pt % 8, "gain": 1.0 + pt, "rate_point": f"gain={pt}",
            "image": f"img{img // 30}.png", "image_sha256": f"{img // 30:064x}", "width": 768, "height": 512,
            "bytes": 10000 + i % 997, "payload_bytes": 9900 + i % 997, "bpp_real": 0.2 + pt / 35,
            "payload_bpp_real": 0.19 + pt / 35, "psnr_rgb": 28 + pt / 5, "ms_ssim_rgb": 0.95, "ms_ssim_db_rgb": 13.0,
            "enc_s": 0.05, "dec_s": 0.04, "decode_ok": True, "decode_check": "latent",
        }  # fmt: skip


def timed_read(run: Path, reps: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(reps):
        t0 = time.perf_counter()
        n = len(ResultStore(run).read())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rows-per-part", type=int, default=35, help="the 0.2 layout: one part per (image, method)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    prov = {"qvrf_bench_version": "bench", "torch_version": "-", "compressai_version": "-", "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        out = []
        for layout in ("compacted", "part per (image, method)"):
            run = Path(tmp) / layout.split()[0]
            store = ResultStore(run)
            store.start(["bench"], {"bench": layout}, prov=prov)
            t0 = time.perf_counter()
            buf = store.buffered()  # the sweep's writer; 0.2 wrote each (image, method) batch at once
            write = buf.add if layout == "compacted" else store.append
            batch = []
            for r in rows(args.rows):
                batch.append(r)
                if len(batch) == args.rows_per_part:
                    write(batch)
                    batch = []
            write(batch)
            buf.flush()
            if layout == "compacted":
                store.compact()
            write_s = time.perf_counter() - t0
            read_s, n = timed_read(run, args.reps)
            out.append((layout, len(store.parts()), n, write_s, read_s))
    print("| layout | parts | rows read | write [s] | read() [s] |\n|---|--:|--:|--:|--:|")
    for layout, parts, n, w, r in out:
        print(f"| {layout} | {parts} | {n} | {w:.1f} | {r:.2f} |")
    print(f"\nread() ratio, part per (image, method) / compacted: {out[1][4] / out[0][4]:.1f}x")


if __name__ == "__main__":
    main()
