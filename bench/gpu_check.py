"""The prepared GPU check (``nox -s gpu_check``): everything CUDA that the project claims, in one run.

    .venv/bin/python bench/gpu_check.py [--images 2] [--out gpu_check.json]

Prints one JSON summary (and writes it with ``--out``). Parts, each timed:

1. ``tests``: the tests marked ``cuda`` (tests/test_cuda.py: both engines byte-equal on CUDA, a CUDA
   bitstream decoded on the CPU, a training step);
2. ``train``: 20 training steps per architecture (QVRF stage 2, default widths, batch 8 of 256 px
   crops of the packaged Kodak images), seconds per step;
3. ``sweep``: per architecture one QVRF model at default widths (random weights) on ``--images``
   Kodak images, 8 levels + the 27 paper factors, with the fast and the serial engine: bytes equal,
   time ratio;
4. ``cross_decode``: the same sweep encoded on CUDA and decoded again on the CPU
   (``--decode-device cpu``): rows whose symbols the CPU recovered, bit-exact rows.

Without CUDA the CUDA parts are skipped with one line saying so, and the CPU stand-ins that make
sense run (part 4 with ``--decode-threads 2`` instead of the CPU decode of CUDA bitstreams), so the
script itself is checked on every machine. Budget on one GPU: ~8 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ARCHS = ("balle", "minnen-mean", "minnen", "cheng2020")
ROOT = Path(__file__).resolve().parents[1]


def part_tests() -> dict:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-rs", "tests/test_cuda.py"], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    last = (res.stdout.strip().splitlines() or [""])[-1]
    return {"exit": res.returncode, "summary": last, "seconds": round(time.perf_counter() - t0, 1)}


def part_train(device: str, kodak: Path, tmp: Path) -> dict:
    out = {}
    for arch in ARCHS:
        t0 = time.perf_counter()
        run = tmp / f"train-{arch}"
        cmd = [sys.executable, "-m", "qvrf_bench", "train", "--arch", arch, "--kind", "qvrf", "--stage", "2",
               "--dataset", str(kodak), "--preset", "smoke", "--patch-size", "256", "--batch-size", "8", "--steps",
               "20", "--val-every", "1000", "--device", device, "--out", str(run), "--no-progress"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        out[arch] = {"exit": res.returncode, "wall_s": round(wall, 1)}
        if res.returncode:
            out[arch]["error"] = (res.stderr.strip().splitlines() or [""])[-1][:300]
        log = run / "train_log.csv"
        if log.is_file():
            import pandas as pd

            t = pd.read_csv(log)
            if len(t) > 5:
                out[arch]["s_per_step"] = round(float(t["elapsed_s"].diff().iloc[5:].median()), 4)
    return out


def _sweep(arch: str, device: str, ds: Path, out: Path, engine: str, narrow: bool = False, **kw):
    """(seconds, rows) of one sweep of a random-weight QVRF model: default widths and the paper
    factors, or (``narrow``: the CPU stand-in) N,M = 32,48 at its 8 levels."""
    from qvrf_bench.results.store import ResultStore
    from qvrf_bench.sweep.run import SweepConfig, run_sweep

    ck = out.parent / f"{arch}{'-narrow' if narrow else ''}.pt"
    if not ck.exists():
        from qvrf_bench.models import create, prepare_for_coding
        from qvrf_bench.models.checkpoints import save_checkpoint

        torch.manual_seed(0)
        widths = {"N": 32, "M": 48} if narrow else {}
        save_checkpoint(ck, prepare_for_coding(create(arch, "qvrf", **widths)))
    t0 = time.perf_counter()
    run_sweep(SweepConfig(dataset=ds, out=out, checkpoints=[ck], factors="none" if narrow else "paper", device=device,
                          engine=engine, progress=False, **kw))  # fmt: skip
    return time.perf_counter() - t0, ResultStore(out).read()


def part_sweep(device: str, ds: Path, tmp: Path) -> dict:
    out = {}
    for arch in ARCHS:
        fast_s, fast = _sweep(arch, device, ds, tmp / f"sweep-{arch}-fast", "fast")
        serial_s, serial = _sweep(arch, device, ds, tmp / f"sweep-{arch}-serial", "serial")
        key = ["image", "rate_point"]
        m = fast.merge(serial, on=key, suffixes=("_fast", "_serial"))
        out[arch] = {"rows": len(m), "bytes_equal": bool((m["bytes_fast"] == m["bytes_serial"]).all()),
                     "psnr_equal": bool((m["psnr_rgb_fast"] == m["psnr_rgb_serial"]).all()),
                     "decode_ok": int(fast["decode_ok"].sum()), "fast_s": round(fast_s, 1),
                     "serial_s": round(serial_s, 1), "serial_over_fast": round(serial_s / fast_s, 2)}  # fmt: skip
    return out


def part_cross(device: str, ds: Path, tmp: Path, cuda: bool) -> dict:
    out = {"what": "encode on CUDA, decode again on the CPU" if cuda else
           "CPU stand-in: N,M=32,48 models at 8 levels, encoded with 1 thread, decoded again in another process "
           "with 2 threads"}  # fmt: skip
    for arch in ARCHS:
        kw = {"decode_device": "cpu"} if cuda else {"decode_threads": 2, "threads": 1, "narrow": True}
        _, df = _sweep(arch, device, ds, tmp / f"cross-{arch}", "fast", **kw)
        out[arch] = {"rows": int(df["cross_decode_ok"].notna().sum()), "symbols_ok": int(df["cross_decode_ok"].sum()),
                     "bit_exact": int(df["cross_decode_exact"].sum()),
                     "min_psnr_db": float(df["cross_decode_psnr_db"].astype(float).min())}  # fmt: skip
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--parts", default="tests,train,sweep,cross_decode")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from qvrf_bench import zoo
    from qvrf_bench.results import store

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    summary = {"device": store.device_string(device), "cuda": cuda, "torch": torch.__version__,
               "cuda_version": torch.version.cuda}  # fmt: skip
    if not cuda:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False): CUDA parts skipped, CPU stand-ins run",
              file=sys.stderr)  # fmt: skip
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        ds = zoo.kodak_subset(tmp / "kodak", args.images)
        if "tests" in parts:
            summary["tests"] = part_tests()
        if "train" in parts:
            summary["train"] = part_train(device, ds, tmp) if cuda else "skipped: no CUDA device"
        if "sweep" in parts:
            summary["sweep"] = part_sweep(device, ds, tmp) if cuda else "skipped: no CUDA device"
        if "cross_decode" in parts:
            summary["cross_decode"] = part_cross(device, ds, tmp, cuda)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
