"""`qvrf-bench sweep`: measure checkpoints and peers on a dataset (real bitstreams) into a run folder.

See qvrf_bench/sweep/run.py for what is measured, resume, failures and shards.
"""

from __future__ import annotations

import argparse

# Kept equal to qvrf_bench.sweep.run.DEFAULT_FACTORS (a test checks); not imported, so --help stays fast.
DEFAULT_FACTORS = "0.5:12:24"


def register(sub) -> None:
    from qvrf_bench.cli._common import add_device, add_image_limits, add_padding

    p = sub.add_parser(
        "sweep",
        help="measure checkpoints and peers on a dataset into a run folder (resumable)",
        description="Encode, decode and measure every (method, rate point, image): our QVRF / fixed-rate\n"
        "checkpoints through the rate-point engine, classical codecs and CompressAI VBR models through\n"
        "their peers. Rows go to OUT/results as they complete; rerunning the same command resumes.\n"
        "Unreadable images are listed and skipped, failed rate points become error rows; the run\n"
        "always finishes (--strict: exit 1 when anything failed).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  qvrf-bench sweep -c qvrf.pt --dataset kodak --out runs/k --factors paper --peers jpeg,webp\n"
        "  qvrf-bench sweep -c fixed-q*.pt --dataset kodak --out runs/anchors\n"
        "  qvrf-bench sweep -c qvrf.pt --dataset clic --out runs/c0 --shard 0/4   (then: qvrf-bench merge)",
    )
    p.add_argument("-c", "--checkpoint", nargs="+", action="extend", default=[], metavar="CKPT",
                   help="our checkpoints (QVRF or fixed-rate); repeatable")  # fmt: skip
    p.add_argument("--method", action="append", default=[], metavar="WHAT[=CKPT]",
                   help="a variable-rate method of the method contract: a registered name (qvrf, compressai-fixed), "
                   "an entry point of group qvrf_bench.methods, my_pkg.my_module:make or file.py:make; measured at "
                   "its levels and its own continuous points; repeatable")  # fmt: skip
    p.add_argument("--dataset", required=True, help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/<name> (resumed when it exists)")
    p.add_argument("--levels", default="all", help="QVRF levels: all or a list like 0,3,7 (default all)")
    p.add_argument("--factors", default=DEFAULT_FACTORS,
                   help="continuous gains of QVRF checkpoints: paper (the 27 of the official Inference.py), "
                   "none, a list 1,2.5,4, or START:STOP:COUNT log-spaced "
                   f"(default {DEFAULT_FACTORS}: 24 gains over the official range)")  # fmt: skip
    p.add_argument("--target-bpp", default=None, metavar="B1,B2,...",
                   help="matched-rate points: for each QVRF checkpoint and classical codec, one more row per image "
                   "and target at the gain/quality that meets it (not above, within 1%% below); e.g. "
                   "0.125,0.25,0.5,0.75,1")  # fmt: skip
    p.add_argument("--decode-device", default=None, metavar="DEV",
                   help="also decode every bitstream of our checkpoints in a separate process on DEV (cpu, cuda[:i]) "
                   "and record whether its latent equals the encoder's (cross_decode_ok)")  # fmt: skip
    p.add_argument("--decode-threads", type=int, default=None, metavar="N",
                   help="... with N torch threads in that process (on one CPU: a different thread count than the "
                   "encoder's is the check)")  # fmt: skip
    p.add_argument("--crops", type=int, default=0, metavar="N",
                   help="keep a window of the original and of the matched-rate and fixed-rate decoded images of the "
                   "first N images in OUT/crops, for the report's side-by-side view (default 0)")  # fmt: skip
    p.add_argument("--metrics", default=None, metavar="LIST",
                   help="what each row measures besides rate: metric names (psnr-y,psnr-yuv,...: README 'Metrics'), "
                   "'all' (every metric available offline) or 'default' (PSNR-RGB and MS-SSIM-RGB, always measured)")  # fmt: skip
    p.add_argument("--peers", default="", help="classical codecs: jpeg,webp,avif,jpeg2000 (default sweeps)")
    p.add_argument("--peer-qualities", action="append", default=[], metavar="NAME=Q1,Q2,...",
                   help="override a peer's sweep: quality (jpeg/webp/avif), ratio (jpeg2000) or "
                   "quantization step (a --vbr arch); repeatable")  # fmt: skip
    p.add_argument("--vbr", action="append", default=[], metavar="ARCH=STATEDICT",
                   help="a CompressAI VBR model (bmshj2018-hyperprior-vbr, mbt2018-mean-vbr, mbt2018-vbr) "
                   "from a local state dict; repeatable")  # fmt: skip
    add_device(p)
    p.add_argument("--engine", choices=["serial", "fast"], default=None,
                   help="rate-point engine: fast (the analysis once per image, points in batches) or serial (default: fast)")  # fmt: skip
    p.add_argument("--shard", metavar="i/N|auto",
                   help="measure shard i (0-based) of N; auto: the scheduler's (Slurm array task, torchrun rank); "
                   "'{shard}' in --out becomes e.g. 2of8; join with qvrf-bench merge")  # fmt: skip
    add_padding(
        p, "a checkpoint (-c)", "; rows padded the official way are a method of their own, NAME+official-padding"
    )
    p.add_argument("--flush-rows", type=int, default=2000, metavar="N",
                   help="write results every N rows or 30 s, whichever comes first (default 2000): a kill loses "
                   "at most those, which a rerun measures again")  # fmt: skip
    p.add_argument("--strict", action="store_true", help="exit 1 when any row failed or any image was skipped")
    p.add_argument("--retry-failed", action="store_true", help="redo rows that failed in an earlier run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add_image_limits(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    import sys

    from qvrf_bench.files import check_folder
    from qvrf_bench.sweep.run import SweepConfig, parse_peer_qualities, run_sweep

    if args.shard:
        # auto: the scheduler's shard (Slurm array, torchrun); {shard} in --out becomes "iofN"
        from qvrf_bench.results.store import parse_shard

        i, n = parse_shard(args.shard)
        args.shard = f"{i}/{n}"
        args.out = args.out.replace("{shard}", f"{i}of{n}")
    elif "{shard}" in args.out:
        from qvrf_bench.errors import QVRFError

        raise QVRFError("--out has {shard} but no --shard was given")
    check_folder(args.out, "run folder")  # before any work

    qualities: dict[str, tuple[float, ...]] = {}
    for spec in args.peer_qualities:
        name, qs = parse_peer_qualities(spec)
        qualities[name] = qs
    cfg = SweepConfig(
        dataset=args.dataset,
        out=args.out,
        checkpoints=list(args.checkpoint),
        methods=list(args.method),
        levels=args.levels,
        factors=args.factors,
        peers=args.peers,
        peer_qualities=qualities,
        vbr=list(args.vbr),
        device=args.device,
        engine=args.engine,
        shard=args.shard,
        retry_failed=args.retry_failed,
        threads=args.threads,
        progress=not args.no_progress,
        target_bpp=args.target_bpp,
        crops=args.crops,
        decode_device=args.decode_device,
        decode_threads=args.decode_threads,
        max_pixels=args.max_pixels,
        max_image_bytes=args.max_image_bytes,
        metrics=args.metrics,
        flush_rows=args.flush_rows,
        padding=args.padding,
    )
    summary = run_sweep(cfg)
    print(summary.text())
    if args.strict and summary.n_failures:
        print(f"qvrf-bench sweep: {summary.n_failures} failure(s) (--strict)", file=sys.stderr)
        return 1
    return 0
