"""Where one sweep point's time goes, by stage, for each shipped zoo architecture (issue "A sweep at
the floor"). Not a test: a measurement.

    .venv/bin/python bench/sweep_profile.py [--archs balle,minnen,cheng2020] [--images 2] [--out r.json]

A real ``run_sweep`` (fast engine, one thread, the default metrics PSNR-RGB and MS-SSIM-RGB, decode
check and storage as in every sweep) of ``zoo:ARCH-qvrf8`` at its 8 levels and the 27 paper factors
(35 points) on the first ``--images`` Kodak images, under cProfile. A stage's time is the cumulative
time of the functions that do it (the method contract's ``analyse``, ``code``, ``pack``,
``decode_shared``/``decode``, ``synthesise``; the metric functions; ``build_row``; the row buffer
and part writer). "rest" is the sweep's wall time minus the stages and the per-method set-up (load,
self-check, warm-up): Python glue, tensor conversions, the progress bar. cProfile adds a little to
Python-heavy stages; the ratio column (point / synthesis) is the figure of merit.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# stage -> (file suffix, function name) pairs whose cumulative times add up to the stage
STAGES = {
    "analysis (g_a, h_a, once per image)": [("methods/qvrf.py", "analyse")],
    "coding (quantise, entropy-code)": [("methods/qvrf.py", "code")],
    "packing (container)": [("methods/qvrf.py", "pack")],
    "decode check (unpack, entropy-decode)": [
        ("methods/qvrf.py", "unpack"),
        ("methods/qvrf.py", "decode_shared"),
        ("methods/qvrf.py", "decode"),
    ],
    "synthesis (g_s)": [("methods/qvrf.py", "synthesise")],
    "metrics: PSNR-RGB": [("metrics/functional.py", "psnr_rgb")],
    "metrics: MS-SSIM-RGB": [("metrics/functional.py", "ms_ssim_rgb")],
    "row building (without its metrics)": [("sweep/run.py", "build_row")],
    "storage (buffer, parts, compaction)": [
        ("results/store.py", "add"),
        ("results/store.py", "flush"),
        ("results/store.py", "compact"),
    ],
}
SETUP = [("sweep/run.py", "_build_methods"), ("methods/qvrf.py", "self_check"), ("methods/engine.py", "warm_up")]


def cum(stats: pstats.Stats, pairs) -> float:
    total = 0.0
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        if any(file.endswith(f) and name == n for f, n in pairs):
            total += ct
    return total


def profile_arch(arch: str, n_images: int) -> dict:
    import torch

    from qvrf_bench.sweep.run import SweepConfig, run_sweep
    from qvrf_bench.zoo import kodak_subset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = kodak_subset(Path(tmp) / "kodak", n_images)
        cfg = SweepConfig(dataset=data, out=Path(tmp) / "run", checkpoints=[f"zoo:{arch}-qvrf8"], factors="paper",
                          device="cpu", progress=False, threads=1)  # fmt: skip
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        summary = run_sweep(cfg)
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    rows = summary.n_rows if hasattr(summary, "n_rows") else None
    points = 35 * n_images
    stages = {k: cum(stats, v) for k, v in STAGES.items()}
    metric_keys = [k for k in stages if k.startswith("metrics:")]
    stages["row building (without its metrics)"] -= sum(stages[k] for k in metric_keys)  # build_row calls them
    setup = cum(stats, SETUP)
    per_point = (wall - setup) / points
    out = {k: v / points * 1e3 for k, v in stages.items()}
    out["rest (glue, conversions)"] = per_point * 1e3 - sum(out.values())
    return {"arch": arch, "images": n_images, "points": points, "rows": rows, "wall_s": round(wall, 2),
            "setup_s": round(setup, 2), "per_point_ms": round(per_point * 1e3, 1),
            "stages_ms": {k: round(v, 1) for k, v in out.items()},
            "point_over_gs": round(per_point * 1e3 / out["synthesis (g_s)"], 2)}  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default="balle,minnen,cheng2020")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import torch

    from qvrf_bench.results import store

    results = [profile_arch(a, args.images) for a in args.archs.split(",")]
    archs = [r["arch"] for r in results]
    print(f"one sweep point by stage, ms (zoo:ARCH-qvrf8, 35 points x {args.images} Kodak images, 1 thread; "
          f"{store.cpu_model()}, torch {torch.__version__})")  # fmt: skip
    print("| stage | " + " | ".join(archs) + " |")
    print("|---|" + "--:|" * len(archs))
    for k in results[0]["stages_ms"]:
        print(f"| {k} | " + " | ".join(f"{r['stages_ms'][k]:.1f}" for r in results) + " |")
    print("| **one point, all stages** | " + " | ".join(f"**{r['per_point_ms']:.1f}**" for r in results) + " |")
    print("| point / synthesis | " + " | ".join(f"{r['point_over_gs']:.2f}x" for r in results) + " |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
