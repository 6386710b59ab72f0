"""`qvrf-bench report`: one self-contained HTML report of one or more run folders."""

from __future__ import annotations

import argparse

RATES = {"file": "bpp_real", "payload": "payload_bpp_real"}
INTERPOLATIONS = ("akima", "pchip", "cubic")

EPILOG = """\
The report has: RD curves per architecture (the run's fixed-rate models of an arch counted as one
curve, plus the --anchor curves), discrete levels on the continuous sweep, the gain-to-bpp map, BD
tables (each QVRF/VBR method vs the fixed-rate curve of its arch and vs every --anchor of a matching
arch; PSNR and MS-SSIM; overlap, 4-point sensitivity, bootstrap CI), per-image results, encode/decode
times, errors and decode-check failures, and provenance. Rows with an error are left out of every
curve and listed. The file has inline SVG and CSS only: no scripts, no network.

examples:
  qvrf-bench report runs/kodak-balle -o reports/kodak-balle/index.html \\
      --anchor qvrf/kodak/hyper+qvrf --anchor compressai/kodak/bmshj2018-hyperprior-mse-cuda
  qvrf-bench report runs/a runs/b -o reports/ab/index.html --figures reports/ab/figures
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report (figures, BD tables, errors, provenance) of run folders",
        description="Write one self-contained HTML report of one or more run folders.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder (run.json + results/)")
    p.add_argument("-o", "--output", required=True, metavar="HTML", help="file to write, e.g. reports/NAME/index.html")
    p.add_argument(
        "-a", "--anchor", action="append", default=[], metavar="NAME", help="published curve to draw and compare with"
    )
    p.add_argument("--title", help="report title (default: the run ids)")
    p.add_argument("--dataset", help="dataset name for captions (default: from the runs' configs)")
    p.add_argument(
        "--rate",
        choices=tuple(RATES),
        default="file",
        help="file: bpp of whole bitstream files (bpp_real, default); payload: entropy-coded strings only, "
        "like CompressAI's and QVRF's published bpp",
    )
    p.add_argument("--interp", choices=INTERPOLATIONS, default="akima", help="BD interpolation (default: akima)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        metavar="N",
        help="bootstrap resamples for the BD CI (0: none; default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--figures", metavar="DIR", help="also write each architecture's RD figure as PNG and SVG to DIR")
    p.add_argument("--cross-dataset", action="store_true",
                   help="also compute BD-rates against published curves of another test set (default: only the same set)")  # fmt: skip
    p.add_argument("--dir", action="append", default=[], metavar="DIR", help="extra folder of user anchors")
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> list[str]:
    """The command line as parsed (for the report's provenance; sys.argv is not ours under tests)."""
    cmd = ["qvrf-bench", "report", *args.runs, "-o", args.output]
    for name in args.anchor:
        cmd += ["--anchor", name]
    for flag, value in (("--title", args.title), ("--dataset", args.dataset), ("--figures", args.figures)):
        if value is not None:
            cmd += [flag, value]
    cmd += ["--rate", args.rate, "--interp", args.interp, "--bootstrap", str(args.bootstrap), "--seed", str(args.seed)]
    for d in args.dir:
        cmd += ["--dir", d]
    return cmd


def run(args: argparse.Namespace) -> int:
    import sys

    from qvrf_bench import files
    from qvrf_bench.cli._common import quiet_warnings
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.report import render_report

    quiet_warnings()  # a run's architectures are named through the model table, which imports torch

    if args.bootstrap < 0:
        raise QVRFError("--bootstrap must be 0 or more")
    files.output_path(args.output, "index.html", "report")  # the output's problems first, before any work
    out = render_report(
        args.runs,
        args.output,
        anchors=args.anchor,
        title=args.title,
        dataset=args.dataset,
        rate=RATES[args.rate],
        interp=args.interp,
        n_boot=args.bootstrap,
        seed=args.seed,
        anchor_dirs=args.dir,
        command=_command(args),
        figures_dir=args.figures,
        cross_dataset=args.cross_dataset,
    )
    print(f"wrote {out}", file=sys.stderr)
    return 0
