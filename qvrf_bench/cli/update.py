"""`qvrf-bench update CKPT -o OUT`: fix the entropy models and strip training state."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("update", help="build the CDF tables, strip training state, name by sha256",
                       description="As the official update.py: build the entropy coder tables from the "
                       "parameters, drop optimiser/training state, and name the file "
                       "<name>-<first 8 hex of sha256>.pt. Reads any supported checkpoint layout.")  # fmt: skip
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", help="output file, or folder (an existing one, or a path ending in / is created; "
                   "default: beside the input)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    from qvrf_bench.models.checkpoints import update_checkpoint

    out = update_checkpoint(args.checkpoint, args.output)
    print(out)
    return 0
