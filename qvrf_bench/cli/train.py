"""`qvrf-bench train`: fixed-rate anchors and the three QVRF stages (resumable; CUDA or CPU).

Examples::

    qvrf-bench train --arch balle --kind fixed --lambda 0.0483 --dataset photos/ --preset smoke
    qvrf-bench train --arch balle --kind fixed --lambda all --dataset photos/ --out runs/anchors
    qvrf-bench train --arch balle --kind qvrf --stage 1 --dataset photos/
    qvrf-bench train --arch balle --kind qvrf --stage 2 --dataset photos/ --init-from runs/s1/final.pt
    qvrf-bench train --arch cheng2020 --kind qvrf --stage 2 --dataset photos/ --preset paper \\
        --init-from cheng2020-attn-6.pth.tar --init-lambda 0.0483
"""

from __future__ import annotations

import argparse
import os


def _lambda(text: str):
    if text == "all":
        return "all"
    from qvrf_bench.cli._common import positive_float

    return positive_float(text)


def register(sub) -> None:
    from qvrf_bench.bitstream.container import ARCH_IDS  # torch-free: the built-in architectures
    from qvrf_bench.cli._common import add_device, positive_float

    p = sub.add_parser("train", help="train fixed-rate anchors or a QVRF model (stages 1-3), resumable",
                       description="Train one fixed-rate anchor (--kind fixed --lambda L), all 8 anchors "
                       "(--lambda all), or one QVRF stage (--kind qvrf --stage 1|2|3). Each run lives in its own "
                       "folder (--out) and resumes from its last checkpoint when the command is rerun. Every "
                       "preset value can be overridden.")  # fmt: skip
    p.add_argument("--arch", choices=ARCH_IDS,
                   help="the architecture (required unless --method)")  # fmt: skip
    p.add_argument("--method", metavar="WHAT[=INIT]",
                   help="train a method of the method contract instead (as sweep --method; INIT: what its factory "
                   "starts from) with the same training loop; takes its data, optimisation and run-control "
                   "options, --steps (not --epochs), --out (required), --nproc; not --arch, --kind, --stage, "
                   "--levels, --preset, --init-from, --channels, --gain-lr; resumable")  # fmt: skip
    p.add_argument("--kind", default="qvrf", choices=["fixed", "qvrf"])
    p.add_argument("--stage", type=int, default=2, choices=[1, 2, 3],
                   help="QVRF stage: 1 top lambda at a=1, 2 all levels + noise, 3 all levels + STE (default 2)")  # fmt: skip
    p.add_argument("--lambda", dest="lmbda", type=_lambda, metavar="L|all",
                   help="fixed-rate lambda, or 'all' for the 8 anchors 0.0018..0.18")  # fmt: skip
    p.add_argument("--anchors", action="store_true", help="same as --kind fixed --lambda all")
    p.add_argument("--levels", type=int, default=8, choices=[8, 11], help="QVRF levels (default 8)")
    p.add_argument("--fixed-gains", action="store_true",
                   help="freeze every gain (as CompressAI's VBR) instead of learning a_1..a_{L-1}")  # fmt: skip
    p.add_argument("--pinned-level", type=int, default=0, metavar="S",
                   help="the level whose gain stays frozen and pins the scale of y; the others learn "
                   "(default 0, as [QRAF]; the zoo pins its base's level: README Decisions 2)")  # fmt: skip
    p.add_argument("--preset", default="smoke", choices=["smoke", "paper"],
                   help="smoke: narrow nets, 64px crops, minutes on a CPU; paper: the official set-up (default smoke)")  # fmt: skip
    p.add_argument("--dataset", required=True, metavar="DIR", help="folder of training images (recursive)")
    p.add_argument("--val", metavar="DIR", help="folder of validation images (default: hold out --val-fraction)")
    p.add_argument(
        "--val-fraction", type=float, default=0.1, metavar="F", help="held-out fraction without --val (default 0.1)"
    )
    p.add_argument("--max-val-images", type=int, metavar="N", help="use at most this many validation images")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<arch>-<kind>...-<preset>)")
    p.add_argument("--init-from", metavar="CKPT",
                   help="start from these weights: an earlier stage, a fixed-rate checkpoint or a CompressAI state dict")  # fmt: skip
    p.add_argument("--init-lambda", type=positive_float, metavar="L",
                   help="lambda of a CompressAI --init-from state dict (sets the gains around it)")  # fmt: skip
    o = p.add_argument_group("optimisation (default: the preset's)")
    o.add_argument("--channels", metavar="N[,M]", help="widths N,M (N alone: M = N)")
    o.add_argument("--lr", type=positive_float, metavar="LR", help="main Adam learning rate")
    o.add_argument("--aux-lr", type=positive_float, metavar="LR", help="aux Adam (EB quantiles) learning rate")
    o.add_argument("--gain-lr", type=positive_float, metavar="LR",
                   help="learning rate of the QVRF gains (default: lr * a_0, i.e. lr with [QRAF]'s a_0 = 1)")  # fmt: skip
    o.add_argument("--batch-size", type=int, metavar="B")
    o.add_argument("--test-batch-size", type=int, metavar="B", help="validation batch size")
    o.add_argument("--patch-size", type=int, metavar="P", help="crop size, a multiple of 64")
    o.add_argument("--clip", type=float, metavar="NORM", help="gradient clipping max-norm (0: off)")
    o.add_argument("--plateau-patience", type=int, metavar="N", help="ReduceLROnPlateau patience, in validations")
    o.add_argument("--plateau-factor", type=positive_float, metavar="F", help="ReduceLROnPlateau factor")
    o.add_argument("--lr-drop-at", type=float, metavar="F",
                   help="multiply the learning rates by 0.1 once, after this fraction of the steps (e.g. 0.8)")  # fmt: skip
    length = o.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, metavar="N", help="run length in optimisation steps")
    length.add_argument(
        "--epochs", type=positive_float, metavar="E", help="run length in passes over the training images"
    )
    o.add_argument(
        "--val-every", type=int, metavar="N", help="validate every N steps (default: preset; paper: every epoch)"
    )
    o.add_argument(
        "--save-every", type=int, metavar="N", help="checkpoint every N steps (default: preset; paper: every epoch)"
    )
    o.add_argument("--keep-every", type=int, metavar="N",
                   help="also keep a model snapshot every N steps in <out>/snapshots (for learning curves)")  # fmt: skip
    o.add_argument("--log-every", type=int, metavar="N", help="one CSV row every N steps")
    r = p.add_argument_group("run control")
    r.add_argument("--seed", type=int, default=1926)
    add_device(r)
    r.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (per process)")
    # the choices repeat train/precision.PRECISIONS: importing it (torch) would slow --help
    r.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="the training forward's precision: bf16 runs the transforms under autocast (CPU AMX / "
                   "AVX-512-BF16 units, or CUDA), likelihoods, loss and optimiser in float32; inference and "
                   "every reported number stay float32 (default fp32)")  # fmt: skip
    r.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel processes on this machine (launches torchrun; one per GPU, or gloo "
                   "processes on the CPU); --batch-size is the global batch, split evenly (default 1)")  # fmt: skip
    r.add_argument(
        "--workers", type=int, metavar="N", help="data-loader processes (default: 0 when cached, else up to 4)"
    )
    r.add_argument("--cache", default="auto", choices=["auto", "on", "off"],
                   help="decode training images once into memory (auto: when under --cache-mb)")  # fmt: skip
    r.add_argument(
        "--cache-mb", type=int, default=2048, metavar="MB", help="cache limit for --cache auto (default 2048)"
    )
    r.add_argument("--pad-mode", default="reflect", choices=["reflect", "zero"],
                   help="how images smaller than the crop are padded")  # fmt: skip
    g = r.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="require a checkpoint to resume (default: resume if present)")
    g.add_argument("--restart", action="store_true", help="ignore a checkpoint in --out and start from step 0")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of the parsed arguments (``lmbda`` may be "all")."""
    from qvrf_bench.cli._common import int_list
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.train import TrainConfig

    kind = "fixed" if args.anchors else args.kind
    lmbda = "all" if args.anchors and args.lmbda is None else args.lmbda
    ch: list[int] = []
    if args.channels:
        try:
            ch = int_list(args.channels)
        except argparse.ArgumentTypeError as exc:
            raise QVRFError(f"--channels: {exc}") from None
    return TrainConfig(
        arch=args.arch, dataset=args.dataset, kind=kind, stage=args.stage,
        lmbda=None if lmbda == "all" else lmbda, levels=args.levels, fixed_gains=args.fixed_gains,
        pinned_level=args.pinned_level,
        preset=args.preset, out=args.out, init_from=args.init_from, init_lambda=args.init_lambda,
        val=args.val, val_fraction=args.val_fraction, max_val_images=args.max_val_images, cache=args.cache,
        cache_mb=args.cache_mb, pad_mode=args.pad_mode, workers=args.workers,
        N=ch[0] if ch else None, M=ch[1] if len(ch) > 1 else None, lr=args.lr, aux_lr=args.aux_lr,
        gain_lr=args.gain_lr, batch_size=args.batch_size, test_batch_size=args.test_batch_size, patch_size=args.patch_size,
        clip=args.clip, plateau_factor=args.plateau_factor, plateau_patience=args.plateau_patience,
        lr_drop_at=args.lr_drop_at,
        steps=args.steps, epochs=args.epochs, val_every=args.val_every, save_every=args.save_every, keep_every=args.keep_every,
        log_every=args.log_every, seed=args.seed, device=args.device, threads=args.threads,
        precision=args.precision, resume="yes" if args.resume else "no" if args.restart else "auto", progress=not args.no_progress,
    ), lmbda == "all"  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.train import train, train_anchors

    if args.method:
        return _train_method(args)
    if not args.arch:
        raise QVRFError("--arch is required (or --method)")
    config, all_anchors = config_from_args(args)
    if config.kind == "fixed" and config.lmbda is None and not all_anchors:
        raise QVRFError("--kind fixed needs --lambda L (or --lambda all / --anchors for the 8 anchors)")
    if args.nproc < 1:
        raise QVRFError(f"--nproc {args.nproc}: need at least 1")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch_torchrun(args.argv, args.nproc)
    from qvrf_bench.train import distributed

    try:
        if all_anchors:  # with --init-from, every anchor starts from that checkpoint
            paths = train_anchors(config)
            print("anchors:")
            for path in paths:
                print(f"  {path}")
        else:
            train(config)
    except ValueError as exc:  # an invalid combination of settings, found by TrainConfig.check
        raise QVRFError(str(exc)) from None
    finally:
        distributed.shutdown(distributed.from_environment())
    return 0


def _train_method(args: argparse.Namespace) -> int:
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.train.method import MethodTrainConfig, train_method

    if not args.out:
        raise QVRFError("--method needs --out (the run folder)")
    if args.nproc < 1:
        raise QVRFError(f"--nproc {args.nproc}: need at least 1")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch_torchrun(args.argv, args.nproc)
    from qvrf_bench.train import distributed

    if args.epochs is not None:
        raise QVRFError("--method runs count steps: give --steps")
    names = ("steps", "lr", "aux_lr", "batch_size", "test_batch_size", "patch_size", "clip", "plateau_factor",
             "plateau_patience", "lr_drop_at", "val", "val_every", "save_every", "keep_every", "log_every",
             "max_val_images", "workers")  # fmt: skip
    given = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    cfg = MethodTrainConfig(args.method, args.dataset, args.out, seed=args.seed, val_fraction=args.val_fraction,
                            pad_mode=args.pad_mode, cache=args.cache, cache_mb=args.cache_mb, device=args.device,
                            precision=args.precision, threads=args.threads, progress=not args.no_progress, **given)  # fmt: skip
    try:
        train_method(cfg)
    finally:
        distributed.shutdown(distributed.from_environment())
    return 0


def launch_torchrun(argv: list[str], nproc: int) -> int:
    """Rerun this very command under ``torchrun --nproc-per-node nproc`` (without --nproc)."""
    from qvrf_bench.train import distributed

    argv = argv[argv.index("train") + 1 :]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return distributed.launch(out, nproc)
