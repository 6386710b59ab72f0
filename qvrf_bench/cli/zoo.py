"""`qvrf-bench zoo`: the project-trained models that ship with the package (``-c zoo:NAME``).

Examples::

    qvrf-bench zoo list                       # what ships, with budget and Kodak-crop check
    qvrf-bench zoo show balle-qvrf8           # one model's full provenance
    qvrf-bench zoo verify                     # sha256 + the recorded check, re-measured
    qvrf-bench zoo train --dataset photos/ --runs runs/zoo --jobs 2    # the whole recipe (hours)
    qvrf-bench zoo pack --dataset photos/ --runs runs/zoo              # finished runs -> the zoo
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("zoo", help="the project-trained model zoo: list, show, verify, train, pack",
                       description="Narrow models trained by this project (qvrf-bench train) that ship with "
                       "the package. Use them wherever a checkpoint path goes, as zoo:NAME.")  # fmt: skip
    zs = p.add_subparsers(dest="zoo_command", required=True, metavar="ACTION")
    ls = zs.add_parser("list", help="the shipped models")
    ls.set_defaults(func=run_list)
    sh = zs.add_parser("show", help="one model's manifest entry (provenance, check) as JSON")
    sh.add_argument("name")
    sh.set_defaults(func=run_show)
    ve = zs.add_parser("verify", help="check every shipped file's sha256 and re-measure its recorded check")
    ve.add_argument("names", nargs="*", help="only these (default: all)")
    ve.set_defaults(func=run_verify)
    tr = zs.add_parser("train", help="run the zoo's training recipe (resumable; hours on a CPU)")
    tr.add_argument("--dataset", required=True, metavar="DIR", help="training photos (the zoo used BSDS500)")
    tr.add_argument("--runs", default="runs/zoo", metavar="DIR", help="run folders (default: %(default)s)")
    tr.add_argument("--archs", default="balle,minnen,cheng2020", help="architectures (default: %(default)s)")
    tr.add_argument("--jobs", type=int, default=2, help="training processes at once, one thread each (default 2)")
    tr.add_argument("--only", help="comma-separated run or model names (default: the whole recipe)")
    tr.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    tr.set_defaults(func=run_train)
    pk = zs.add_parser("pack", help="ship the finished runs (CDFs built, training state stripped, manifest)")
    pk.add_argument("--dataset", required=True, metavar="DIR", help="the training photos (for their checksum)")
    pk.add_argument("--runs", default="runs/zoo", metavar="DIR")
    pk.add_argument("--archs", default="balle,minnen,cheng2020")
    pk.add_argument("--dest", help="zoo folder (default: the package's)")
    pk.add_argument("--only", help="comma-separated model names (default: every finished one); the others' "
                    "files and entries stay as they are")  # fmt: skip
    pk.set_defaults(func=run_pack)


def _archs(text: str) -> list[str]:
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.train import zoo as zoo_train

    archs = [a.strip() for a in text.split(",") if a.strip()]
    bad = [a for a in archs if a not in zoo_train.PLANS]
    if bad:
        raise QVRFError(f"--archs: {bad[0]} has no zoo recipe; choose from {', '.join(zoo_train.PLANS)}")
    return archs


def run_list(args: argparse.Namespace) -> int:
    from qvrf_bench import zoo

    models = zoo.read_manifest()["models"]
    if not models:
        print("the zoo is empty")
        return 0
    w = max(len(n) for n in models)
    print(
        f"{'name':<{w}}  {'arch':<9} {'kind':<5} {'lv':>2} {'N,M':>7} {'MB':>5} {'steps':>6} {'CPU h':>5}  check (Kodak crop)"
    )
    for name, e in models.items():
        p, c = e["provenance"], e["check"]
        print(f"{name:<{w}}  {e['arch']:<9} {e['kind']:<5} {e['levels']:>2} {str(e['N']) + ',' + str(e['M']):>7} "
              f"{e['bytes'] / 2**20:5.2f} {p['total_steps']:>6} {p['total_wall_s'] / 3600:5.2f}  "
              f"level {c['level']}: {c['bpp_real']:.4f} bpp, {c['psnr_rgb']:.2f} dB")  # fmt: skip
    print("use as -c zoo:NAME; `qvrf-bench zoo show NAME` for the commands, data checksum and machine")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import json

    from qvrf_bench import zoo

    print(json.dumps({args.name: zoo.entry(args.name)}, indent=1))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    import torch

    from qvrf_bench import zoo
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.train import zoo as zoo_train

    torch.set_num_threads(1)  # the checks were recorded with one thread
    names = args.names or zoo.names()
    bad = 0
    for name in names:
        e = zoo.entry(name)
        try:
            model, _ = load_model(zoo.resolve(zoo.PREFIX + name))
        except QVRFError as exc:
            print(f"{name}: FAIL {exc}")
            bad += 1
            continue
        got, want = zoo_train.measure_check(model), e["check"]
        same, how = zoo_train.compare_check(got, want)
        bad += not same
        print(f"{name}: {'ok' if same else 'FAIL'} (sha256 ok; {got['bytes']} bytes, {got['psnr_rgb']:.6f} dB; "
              f"recorded {want['bytes']} bytes, {want['psnr_rgb']:.6f} dB; {how})")  # fmt: skip
    return 1 if bad else 0


def run_train(args: argparse.Namespace) -> int:
    import shlex

    from qvrf_bench.train import zoo as zoo_train

    archs = _archs(args.archs)
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    if args.dry_run:
        for s in zoo_train.recipe(archs):
            if only is None or s.name in only or s.ships in only:
                print("qvrf-bench train " + shlex.join(s.command(args.dataset, args.runs)))
        return 0
    return zoo_train.train_zoo(args.dataset, args.runs, archs, jobs=args.jobs, only=only)


def run_pack(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    from qvrf_bench import zoo
    from qvrf_bench.train import zoo as zoo_train

    dest = args.dest or zoo.ZOO_DIR
    only = set(args.only.split(",")) if args.only else None
    print(zoo_train.pack(args.dataset, args.runs, dest, _archs(args.archs), only=only))
    return 0
