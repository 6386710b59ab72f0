"""The main job, ``nox -s reproduce_figures``: train, sweep with real bitstreams, draw, report.

It regenerates the official README's five figures (VariableRate; Balle, Minnen and Cheng2020: QVRF
against its fixed-rate anchors and peers; moreLagrangeMultiplier: the 11-level model) as PNG and SVG
under ``reports/figures/``, the BD tables and the HTML report (``reports/reproduce/index.html``),
with the published curves drawn beside what it measured, labelled as such.

Two scales:

* ``--preset smoke`` (the default; CPU, ~15 min on 2 cores, nothing downloaded): narrow models
  trained briefly on sample photos that ship inside installed packages (scikit-image, matplotlib),
  measured on held-out sample photos. Every figure's caption states the scale. Schedule, chosen to
  get the most RD quality per CPU second: per architecture the top anchor (lambda 0.18) trains
  from scratch, the other 7 anchors fine-tune from it, and the 8-level QVRF model starts stage 2
  from the lambda 0.0018 anchor (decision 1 with lambda_ref = lambda_0: gains start at the
  official 1 ... 10, so the paper's 27 factors span the levels). The 11-level model is a Balle
  model started the same way.
* ``--preset paper`` with ``--dataset`` (and a GPU): the official schedule. Anchors from scratch;
  QVRF stages 1 -> 2 -> 3 ([QRAF] README lengths), each stage starting from the previous one's final
  checkpoint (best-loss reset at each stage, unlike [QRAF]).

``--checkpoints`` skips training and measures the given checkpoints (e.g. your own paper-scale
models, or CompressAI zoo weights converted with ``qvrf-bench update``).

Everything is resumable: rerunning continues the trainings and the sweep where they stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qvrf_bench.errors import QVRFError

# Sample photos that ship inside installed packages (no download). Train and test are disjoint.
TRAIN_PHOTOS = ("coffee", "rocket", "hubble_deep_field", "retina", "immunohistochemistry", "camera", "coins")
TEST_PHOTOS = ("astronaut", "chelsea", "grace_hopper")

ARCH_FIGURES = ("balle", "minnen", "cheng2020")  # Balle.png, Minnen.png, Cheng2020.png


@dataclass
class Budget:
    """Smoke-scale steps. Tuned so the default pipeline fits ~15 min on 2 CPU cores."""

    top_anchor: int = 600
    other_anchor: int = 150
    qvrf: int = 900
    qvrf11: int = 600
    batch_size: int = 8
    patch_size: int = 64
    # cheng2020's attention blocks cost ~3x a Balle step: fewer, smaller batches.
    per_arch_batch: dict[str, int] = field(default_factory=lambda: {"cheng2020": 4})


def write_sample_photos(folder: Path) -> tuple[Path, Path]:
    """Write the packaged sample photos as PNG under folder/{train,test}; return both folders."""
    import numpy as np
    from matplotlib import cbook
    from PIL import Image

    from qvrf_bench import images

    train, test = folder / "train", folder / "test"
    for sub in (train, test):
        sub.mkdir(parents=True, exist_ok=True)

    def load(name: str):
        if name == "grace_hopper":
            with cbook.get_sample_data("grace_hopper.jpg") as f:
                return np.array(Image.open(f).convert("RGB"))
        import skimage.data

        return getattr(skimage.data, name)()

    for names, sub in ((TRAIN_PHOTOS, train), (TEST_PHOTOS, test)):
        for name in names:
            path = sub / f"{name}.png"
            if path.exists():
                continue
            arr = load(name)
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
            images.save_png(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), path)
    return train, test


def train_all(args, train_dir: Path, runs: Path, log) -> tuple[list[Path], dict[str, str]]:
    """Train what the figures need; return the checkpoints and a per-arch caption of the scale."""
    from qvrf_bench.models.qvrf import LAMBDAS_8
    from qvrf_bench.train import TrainConfig, train

    b = Budget()
    if args.scale != 1.0:  # for a quick look at the whole flow; figures then say so via the caption
        for name in ("top_anchor", "other_anchor", "qvrf", "qvrf11"):
            setattr(b, name, max(2, round(getattr(b, name) * args.scale)))
    ckpts: list[Path] = []
    scale: dict[str, str] = {}
    common = dict(
        dataset=str(train_dir), device=args.device, progress=not args.quiet, val_fraction=0.15, threads=args.threads
    )
    for arch in args.archs:
        t0 = time.perf_counter()
        if args.preset == "smoke":
            bs = b.per_arch_batch.get(arch, b.batch_size)
            small = dict(common, preset="smoke", batch_size=bs, patch_size=b.patch_size)
            top = train(TrainConfig(arch=arch, kind="fixed", lmbda=LAMBDAS_8[-1], steps=b.top_anchor,
                                    out=str(runs / f"{arch}-fixed-l0.18"), **small))  # fmt: skip
            anchors = [top]
            for lm in LAMBDAS_8[:-1]:
                anchors.append(train(TrainConfig(arch=arch, kind="fixed", lmbda=lm, steps=b.other_anchor,
                                                 init_from=str(top), out=str(runs / f"{arch}-fixed-l{lm:g}"),
                                                 **small)))  # fmt: skip
            # QVRF starts from the lambda_0 anchor: gains sqrt(lambda_s / lambda_0) = 1 ... 10, the
            # official convention, so the paper's 27 factors (0.5 ... 12) span the levels as in its figure.
            low = anchors[1]
            qvrf = train(TrainConfig(arch=arch, kind="qvrf", stage=2, steps=b.qvrf, init_from=str(low),
                                     out=str(runs / f"{arch}-qvrf8-s2"), **small))  # fmt: skip
            ckpts += anchors + [qvrf]
            from qvrf_bench.train.presets import SMOKE

            N, M = SMOKE.channels[arch]
            scale[arch] = (f"smoke scale: N={N}, M={M}; anchor 0.18 {b.top_anchor} steps from scratch, other "
                           f"anchors {b.other_anchor} steps from it, QVRF {b.qvrf} steps from the 0.0018 anchor; batch {bs} of "
                           f"{b.patch_size}px crops from {len(TRAIN_PHOTOS)} sample photos")  # fmt: skip
            if arch == "balle" and args.eleven:
                q11 = train(TrainConfig(arch=arch, kind="qvrf", stage=2, levels=11, steps=b.qvrf11,
                                        init_from=str(low), out=str(runs / f"{arch}-qvrf11-s2"), **small))  # fmt: skip
                ckpts.append(q11)
        else:
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qvrf_bench.pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", help="training images (default: sample photos shipped in installed packages)")
    p.add_argument("--test-set", help="test images, e.g. Kodak (default: held-out sample photos)")
    p.add_argument("--preset", default="smoke", choices=["smoke", "paper"])
    p.add_argument("--archs", default=",".join(ARCH_FIGURES), help="architectures to train (default: %(default)s)")
    p.add_argument("--checkpoints", nargs="+", help="measure these checkpoints instead of training")
    p.add_argument("--no-eleven", dest="eleven", action="store_false", help="skip the 11-level model")
    p.add_argument(
        "--factors", default="paper", help="continuous gains for the sweep (default: the 27 of Inference.py)"
    )
    p.add_argument("--peers", default="jpeg,webp", help="classical codecs in the sweep (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/pipeline", help="training runs and the sweep (default: %(default)s)")
    p.add_argument("--reports", default="reports", help="figures and report go here (default: %(default)s)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: narrow models gain nothing from more, and 2 threads on a "
        "2-core machine stall whenever anything else runs)",
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply the smoke step counts (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    try:
        return run(args)
    except QVRFError as exc:
        print(f"reproduce_figures: error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    import torch

    from qvrf_bench import store
    from qvrf_bench.report import figures as F
    from qvrf_bench.report import plots, render_report
    from qvrf_bench.sweep import SweepConfig, run_sweep

    t_start = time.perf_counter()
    out, reports = Path(args.out), Path(args.reports)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[reproduce_figures {time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    if args.dataset is None or args.test_set is None:
        train_dir, test_dir = write_sample_photos(out / "photos")
        log(f"sample photos: train {train_dir} ({len(TRAIN_PHOTOS)}), test {test_dir} ({len(TEST_PHOTOS)})")
    train_dir = Path(args.dataset) if args.dataset else train_dir
    test_dir = Path(args.test_set) if args.test_set else test_dir
    dataset_name = "held-out sample photos" if args.test_set is None else test_dir.name

    if args.checkpoints:
        ckpts, scale = [Path(c) for c in args.checkpoints], {}
        caption = "checkpoints given on the command line"
    else:
        ckpts, scale = train_all(args, train_dir, out / "train", log)
        caption = scale  # each figure states only its own architecture's schedule

    log(f"sweeping {len(ckpts)} checkpoints on {test_dir}")
    summary = run_sweep(SweepConfig(dataset=test_dir, out=out / "sweep", checkpoints=[str(c) for c in ckpts],
                                    levels="all", factors=args.factors, peers=args.peers, device=args.device,
                                    threads=args.threads, progress=not args.quiet))  # fmt: skip
    log(
        f"sweep: {summary.rows_total} rows ({summary.rows_written} new) in {summary.wall_s:.0f} s, engine {summary.engine}"
    )

    rows = store.ResultStore(out / "sweep").read()
    figs_dir = reports / "figures"
    figs_dir.mkdir(parents=True, exist_ok=True)
    device = store.device_string(torch.device(args.device if args.device != "auto" else "cpu"))
    figs, skipped = F.readme_figures(rows, published=True, caption=caption, dataset=dataset_name)
    for name, fig in figs.items():
        paths = plots.save(fig, figs_dir / name)
        log(f"figure {name}: {', '.join(str(p) for p in paths)}")
    for name, why in skipped.items():
        log(f"figure {name} skipped: {why}")

    html = render_report([out / "sweep"], reports / "reproduce" / "index.html",
                         anchors=[a for arch in args.archs for a in F.published_for(arch)],
                         title=f"QVRF reproduction ({args.preset} scale) on {dataset_name}", dataset=dataset_name,
                         command=["nox", "-s", "reproduce_figures", "--", *(sys.argv[1:] if argv_is_cli() else [])],
                         figures_dir=figs_dir)  # fmt: skip
    log(f"report: {html} (device {device})")
    log(f"done in {time.perf_counter() - t_start:.0f} s")
    return 0


def argv_is_cli() -> bool:
    return Path(sys.argv[0]).name in ("pipeline.py", "__main__.py") or sys.argv[0].endswith("qvrf_bench.pipeline")


if __name__ == "__main__":
    sys.exit(main())
