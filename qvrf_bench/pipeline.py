"""The main job, ``nox -s reproduce_figures``: models, real-bitstream sweep on Kodak, figures, report.

It regenerates the official README's five figures (VariableRate; Balle, Minnen and Cheng2020: QVRF
against its fixed-rate anchors and peers; moreLagrangeMultiplier: the 11-level model) as PNG and SVG
under ``reports/figures/``, the BD tables and the HTML report (``reports/reproduce/index.html``),
with the published curves drawn beside what it measured, labelled as such.

Three sources of models:

* **Default (CPU, ~15 min on 2 cores, nothing downloaded).** The project's zoo (qvrf_bench/zoo.py):
  narrow models trained by ``qvrf-bench train`` for CPU-hours, shipped with the package, 8 anchors
  and the QVRF model(s) of each architecture with equal budgets. They are measured on the 24 Kodak
  images that ship with the package, with Pillow's JPEG and WebP in the same run. A short real
  training also runs (a balle QVRF fine-tune from ``zoo:balle-fixed-l0.18`` on sample photos that
  ship inside installed packages), so the training path is exercised end to end; its curve is its
  own, labelled with its budget. Every caption states the scale.
* ``--preset paper`` with ``--dataset`` (and a GPU): the official schedule. Anchors from scratch;
  QVRF stages 1 -> 2 -> 3 ([QRAF] README lengths), each stage starting from the previous one's final
  checkpoint (best-loss reset at each stage, unlike [QRAF]).
* ``--checkpoints`` measures the given checkpoints (paths, ``zoo:NAME`` or ``LABEL=PATH``), e.g.
  your own paper-scale models, or CompressAI zoo weights converted with ``qvrf-bench update``.

The sweep runs as ``--jobs`` shard processes (content-hash split of the images, one torch thread
each); the report reads all shard folders. Everything is resumable: rerunning continues the
training and the sweep where they stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from qvrf_bench import images, zoo
from qvrf_bench.cli._common import quiet_warnings
from qvrf_bench.errors import QVRFError
from qvrf_bench.report import figures as F
from qvrf_bench.report import plots, render_report
from qvrf_bench.results import store

# Sample photos that ship inside installed packages (no download), for the short training.
TRAIN_PHOTOS = ("coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "camera", "coins")

ARCH_FIGURES = ("balle", "minnen", "cheng2020")  # Balle.png, Minnen.png, Cheng2020.png
# Classical codecs' qualities for the zoo: they span its rates (~0.1-1 bpp on Kodak), so a BD-rate
# against them is integrated over most of both curves (the default sweeps reach ~2 bpp, where a
# union-based overlap with a narrow model's curve falls under the threshold).
ZOO_PEER_QUALITIES = {"jpeg": "5,10,15,20,25,30,40,50,60", "webp": "0,5,10,20,30,40,50,60"}
PUBLISHED_NOTE = ("published curves: full-width models (N=128-192, M=192-320) trained for days on GPUs on "
                  "ImageNet/CLIC-scale data")  # fmt: skip


def write_sample_photos(folder: Path) -> Path:
    """Write the packaged sample photos as PNG under folder/train; return that folder."""
    import numpy as np
    import skimage.data

    train = folder / "train"
    train.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PHOTOS:
        path = train / f"{name}.png"
        if path.exists():
            continue
        arr = getattr(skimage.data, name)()
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        images.save_png(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), path)
    return train


def zoo_checkpoints(archs, log) -> tuple[list[str], dict[str, str]]:
    """``zoo:NAME`` of every shipped model of ``archs`` and a per-arch caption of its scale."""
    from qvrf_bench.train import zoo as zoo_train

    manifest = zoo.read_manifest()["models"]
    ckpts, caption = [], {}
    for arch in archs:
        names = [n for n, e in manifest.items() if e["arch"] == arch]
        if not names:
            log(f"no zoo models of {arch} in this installation: its figure is skipped "
                f"(train them with `qvrf-bench zoo train --archs {arch}`)")  # fmt: skip
            continue
        ckpts += [zoo.PREFIX + n for n in names]
        caption[arch] = zoo_train.budget_caption(arch) if arch in zoo_train.PLANS else f"project zoo ({arch})"
    return ckpts, caption


def short_training(args, train_dir: Path, runs: Path, log) -> tuple[str, str]:
    """A balle QVRF fine-tune from the zoo's lambda=0.18 anchor: (``LABEL=final.pt``, caption)."""
    from qvrf_bench.train import TrainConfig, train
    from qvrf_bench.train import zoo as zoo_train

    plan = zoo_train.PLANS["balle"]
    steps = args.train_steps
    label = f"balle-qvrf8-pipeline-{steps}steps"
    init = zoo.PREFIX + "balle-fixed-l0.18"
    final = train(TrainConfig(arch="balle", kind="qvrf", stage=2, dataset=str(train_dir), init_from=init,
                              preset="smoke", patch_size=plan.patch, batch_size=plan.batch, lr=plan.lr, steps=steps,
                              precision=plan.precision,
                              val_every=max(1, steps // 4), save_every=max(1, steps // 4), val_fraction=0.15,
                              out=str(runs / label), device=args.device, threads=args.threads,
                              progress=not args.quiet))  # fmt: skip
    n = len(TRAIN_PHOTOS) if args.dataset is None else "the --dataset"
    caption = (f"{label}: trained in this run, QVRF stage 2 from {init} for {steps} steps on {n} photos "
               f"({plan.patch}px crops x {plan.batch})")  # fmt: skip
    log(f"short training done: {final}")
    return f"{label}={final}", caption


def train_paper(args, train_dir: Path, runs: Path, log) -> tuple[list[Path], dict[str, str]]:
    """The official schedule (``--preset paper``): anchors from scratch, QVRF stages 1 -> 2 -> 3."""
    from qvrf_bench.models.qvrf import LAMBDAS_8
    from qvrf_bench.train import TrainConfig, train

    ckpts: list[Path] = []
    scale: dict[str, str] = {}
    common = dict(dataset=str(train_dir), device=args.device, progress=not args.quiet, threads=args.threads)
    for arch in args.archs:
        t0 = time.perf_counter()
        paper = dict(common, preset=args.preset)
        for lm in LAMBDAS_8:
            ckpts.append(train(TrainConfig(arch=arch, kind="fixed", lmbda=lm, out=str(runs / f"{arch}-fixed-l{lm:g}"),
                                           **paper)))  # fmt: skip
        prev = None
        for stage in (1, 2, 3):
            prev = train(TrainConfig(arch=arch, kind="qvrf", stage=stage, init_from=str(prev) if prev else None,
                                     out=str(runs / f"{arch}-qvrf8-s{stage}"), **paper))  # fmt: skip
        ckpts.append(prev)
        scale[arch] = f"{args.preset} preset (official schedule), trained on {args.dataset}"
        log(f"trained {arch} in {time.perf_counter() - t0:.0f} s")
    return ckpts, scale


def sweep_shards(
    args, test_dir: Path, ckpts: list[str], out: Path, log, *, factors: str | None = None, name: str = "sweep"
) -> list[Path]:
    """The sweep as ``args.jobs`` shard processes (resumable); returns the shard run folders.

    ``factors``: the continuous gains (default ``args.factors``); ``name``: the run folders' stem.
    Classical peers are measured by the sweep called ``sweep`` only."""
    jobs = max(1, args.jobs)
    dirs = [out / (name if jobs == 1 else f"{name}-{i}of{jobs}") for i in range(jobs)]
    peers = args.peers if name == "sweep" else ""
    base = [sys.executable, "-m", "qvrf_bench", "sweep", "--dataset", str(test_dir), "--levels", "all",
            "--factors", factors or args.factors, "--peers", peers, "--device", args.device,
            "--threads", str(args.threads), "-c", *ckpts]  # fmt: skip
    for spec in args.peer_qualities or () if peers else ():
        base += ["--peer-qualities", spec]
    if args.target_bpp:
        base += ["--target-bpp", args.target_bpp, "--crops", str(args.crops)]
    procs = []
    for i, d in enumerate(dirs):
        cmd = [*base, "--out", str(d)]
        if jobs > 1:
            cmd += ["--shard", f"{i}/{jobs}"]
        if args.quiet or i > 0:  # one progress bar on the console; the others would interleave
            cmd.append("--no-progress")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    failed = []
    for i, p in enumerate(procs):
        text, _ = p.communicate()
        if p.returncode:
            failed.append(f"shard {i} (exit {p.returncode})")
        elif text.strip():
            log(f"sweep shard {i}/{jobs}:\n{text.rstrip()}")
    if failed:
        raise QVRFError(f"sweep failed: {', '.join(failed)}; rerun to resume")
    return dirs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qvrf_bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--test-set", help="test images (default: the 24 Kodak images shipped with the package)")
    p.add_argument("--dataset", help="training images: the short training's (default: sample photos shipped in "
                   "installed packages), or the paper preset's (required there)")  # fmt: skip
    p.add_argument("--preset", default="zoo", choices=["zoo", "paper"],
                   help="zoo: measure the shipped zoo + a short training (default); paper: train the official "
                   "schedule on --dataset")  # fmt: skip
    p.add_argument("--archs", default=",".join(ARCH_FIGURES), help="architectures (default: %(default)s)")
    p.add_argument("--checkpoints", nargs="+", metavar="CKPT",
                   help="measure these instead (paths, zoo:NAME or LABEL=PATH); no training")  # fmt: skip
    p.add_argument("--train-steps", type=int, default=400,
                   help="steps of the short balle QVRF fine-tune in the default job (0: none; default %(default)s)")  # fmt: skip
    p.add_argument(
        "--factors", default="paper", help="continuous gains for the sweep (default: the 27 of Inference.py)"
    )
    p.add_argument("--peers", default="jpeg,webp", help="classical codecs in the sweep (default: %(default)s)")
    p.add_argument("--peer-qualities", action="append", default=None, metavar="NAME=Q1,Q2,...",
                   help="a classical codec's quality sweep (repeatable; default with the zoo: "
                   + "; ".join(f"{k}={v}" for k, v in ZOO_PEER_QUALITIES.items()) + ", the zoo's rate range)")  # fmt: skip
    p.add_argument("--target-bpp", default="", metavar="B1,B2,...",
                   help="matched-rate targets, e.g. 0.5: each QVRF model and peer also coded at the gain/quality that "
                   "meets each target on each image, for the report's matched-rate section and its side-by-side "
                   "crops (default none: 0.5 adds ~3 minutes to the zoo job on 2 cores)")  # fmt: skip
    p.add_argument(
        "--crops",
        type=int,
        default=2,
        help="images whose matched-rate crops the report shows side by side (default %(default)s)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/pipeline", help="training runs and the sweep (default: %(default)s)")
    p.add_argument("--reports", default="reports", help="figures and report go here (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="sweep processes (image shards) at once (default 2)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per process (default 1: narrow models gain nothing from more, and 2 threads "
        "on a 2-core machine stall whenever anything else runs)",
    )
    p.add_argument("--cross-dataset", action="store_true",
                   help="also compute BD-rates against published curves when the test set is not theirs")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    try:
        return run(args)
    except QVRFError as exc:
        print(f"reproduce_figures: error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:

    quiet_warnings()
    import torch

    t_start = time.perf_counter()
    out, reports = Path(args.out), Path(args.reports)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[reproduce_figures {time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    test_dir = Path(args.test_set) if args.test_set else zoo.KODAK_DIR
    if not test_dir.is_dir():
        raise QVRFError(f"--test-set {test_dir}: no such folder")
    dataset_name = "kodak" if args.test_set is None else test_dir.name

    caption: str | dict[str, str]
    levels_only: list[str] = []  # checkpoints swept at their levels only (no --factors)
    if args.checkpoints:
        ckpts = [str(c) for c in args.checkpoints]
        caption = "checkpoints given on the command line"
    elif args.preset == "paper":
        if args.dataset is None:
            raise QVRFError("--preset paper trains on your data: give --dataset DIR")
        paths, caption = train_paper(args, Path(args.dataset), out / "train", log)
        ckpts = [str(c) for c in paths]
    else:
        ckpts, caption = zoo_checkpoints(args.archs, log)
        # The 27 continuous gains where a figure uses them: the VariableRate model (the first
        # architecture's 8-level model). Every other model is measured at its levels, which is all
        # its figure and BD rows need, and keeps the job within its time budget (README "Quick start").
        eight = [c for c in ckpts if zoo.entry(c[len(zoo.PREFIX) :])["levels"] == 8]
        levels_only = [c for c in ckpts if c not in eight[:1]]
        if args.peer_qualities is None:
            args.peer_qualities = [f"{k}={v}" for k, v in ZOO_PEER_QUALITIES.items() if k in args.peers.split(",")]
        if not ckpts:
            raise QVRFError("the zoo has no models of " + ", ".join(args.archs) + "; give --checkpoints or train "
                            "with `qvrf-bench zoo train`")  # fmt: skip
        if args.train_steps > 0 and zoo.PREFIX + "balle-fixed-l0.18" in ckpts:
            train_dir = Path(args.dataset) if args.dataset else write_sample_photos(out / "photos")
            spec, text = short_training(args, train_dir, out / "train", log)
            ckpts.append(spec)
            levels_only.append(spec)
            caption["balle"] = caption.get("balle", "") + " | " + text
        for arch in list(caption):
            caption[arch] += f" | {PUBLISHED_NOTE}"

    dense = [c for c in ckpts if c not in levels_only]
    log(f"sweeping {len(ckpts)} checkpoints on {test_dir} ({args.jobs} shard process(es))")
    t_sweep = time.perf_counter()
    sweep_dirs = sweep_shards(args, test_dir, dense, out, log)
    if levels_only:
        sweep_dirs += sweep_shards(args, test_dir, levels_only, out, log, factors="none", name="sweep-levels")
    log(f"sweep done in {time.perf_counter() - t_sweep:.0f} s")

    import pandas as pd

    rows = pd.concat([store.ResultStore(d).read() for d in sweep_dirs], ignore_index=True)
    figs_dir = reports / "figures"
    figs_dir.mkdir(parents=True, exist_ok=True)
    device = store.device_string(torch.device(args.device if args.device != "auto" else "cpu"))
    figs, skipped = F.readme_figures(rows, published=True, caption=caption, dataset=dataset_name)
    for name, fig in figs.items():
        paths = plots.save(fig, figs_dir / name)
        log(f"figure {name}: {', '.join(str(p) for p in paths)}")
    for name, why in skipped.items():
        log(f"figure {name} skipped: {why}")

    title = ("QVRF reproduction: project zoo" if args.preset == "zoo" and not args.checkpoints
             else f"QVRF reproduction ({args.preset})") + f" on {dataset_name}"  # fmt: skip
    html = render_report(sweep_dirs, reports / "reproduce" / "index.html",
                         anchors=[a for arch in args.archs for a in F.published_for(arch)], title=title,
                         dataset=dataset_name,
                         command=["nox", "-s", "reproduce_figures", "--", *(sys.argv[1:] if argv_is_cli() else [])],
                         figures_dir=figs_dir, cross_dataset=args.cross_dataset)  # fmt: skip
    log(f"report: {html} (device {device})")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("pipeline.py", "__main__.py") or sys.argv[0].endswith("qvrf_bench.pipeline")


if __name__ == "__main__":
    sys.exit(main())
