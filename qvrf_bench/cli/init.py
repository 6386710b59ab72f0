"""`qvrf-bench init`: an untrained checkpoint of any registered architecture and width."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from qvrf_bench.bitstream.container import ARCH_IDS  # torch-free: the built-in architectures
    from qvrf_bench.cli._common import int_list, positive_float

    p = sub.add_parser("init", help="write an untrained (randomly initialised) model checkpoint",
                       description="Write an untrained checkpoint of any registered architecture, for tests, "
                       "benchmarks or as a training starting point.")  # fmt: skip
    p.add_argument("--arch", required=True, choices=ARCH_IDS)
    p.add_argument("--kind", default="qvrf", choices=["fixed", "qvrf"])
    p.add_argument("--channels", type=int_list, default=None, metavar="N[,M]",
                   help="channel widths N,M (cheng2020: N); default: CompressAI's")  # fmt: skip
    p.add_argument("--levels", type=int, default=8, choices=[8, 11], help="QVRF rate levels (default 8)")
    p.add_argument("--lambda", dest="lmbda", type=positive_float, help="lambda of a fixed-rate model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="checkpoint file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    import torch

    from qvrf_bench.errors import QVRFError
    from qvrf_bench.models import create
    from qvrf_bench.models.checkpoints import save_checkpoint

    torch.manual_seed(args.seed)
    ch = args.channels or []
    try:
        model = create(args.arch, args.kind, N=ch[0] if ch else None, M=ch[1] if len(ch) > 1 else None,
                       levels=args.levels, lmbda=args.lmbda)  # fmt: skip
    except ValueError as exc:
        raise QVRFError(str(exc)) from None
    path = save_checkpoint(args.output, model)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {model.config.label}, {n:,} parameters, lambdas {model.config.lmbdas}")
    return 0
