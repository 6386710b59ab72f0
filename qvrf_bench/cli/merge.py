"""`qvrf-bench merge SHARD_DIR... --out DIR`: join shard runs of one sweep into one run folder."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="join the shard runs of a sweep into one run folder",
        description="Join run folders made by `qvrf-bench sweep --shard i/N` (same config) into a new "
        "run folder; rows are deduplicated on the row key (latest wins). All N shards must be there "
        "unless --allow-incomplete.",
    )
    p.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="run folders of the shards")
    p.add_argument("--out", required=True, help="new run folder to write")
    p.add_argument("--allow-incomplete", action="store_true", help="merge even when shards are missing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.files import check_folder
    from qvrf_bench.results.store import merge
    from qvrf_bench.sweep.run import format_points_table, summarize

    check_folder(args.out, "merged run")  # before any work
    command = ["qvrf-bench", "merge", *args.shards, "--out", args.out]
    if args.allow_incomplete:
        command.append("--allow-incomplete")
    out = merge(args.shards, args.out, command=command, allow_incomplete=args.allow_incomplete)
    df = out.read()
    points, methods = summarize(df)
    if len(methods):
        print(format_points_table(points, methods))
    print(f"merged {len(args.shards)} run(s) into {out.run_dir}: {len(df)} rows, {len(methods)} method(s)")
    return 0
