"""`qvrf-bench compare`: BD-rate tables of a run (or a curve file) against anchors."""

from __future__ import annotations

import argparse
from fnmatch import fnmatchcase
from pathlib import Path

# Kept in sync with qvrf_bench.analysis.rd by a test; not imported here so that --help stays fast.
INTERPOLATIONS = ("akima", "pchip", "cubic")
SENSITIVITY_MODES = ("test", "anchor", "paired", "both", "none")
RATES = {"file": "bpp_real", "payload": "payload_bpp_real"}

EPILOG = """\
TEST is one of
  a run folder      every *.parquet file below it (per-image rows of the sweep; files or folders whose
                    name starts with '.' and *.tmp files are ignored); each method is one test curve,
                    a QVRF model with continuous gains also '<method> [levels]' (its levels alone),
                    and the fixed-rate models (kind fixed) form one curve per architecture family,
                    run:fixed:<arch>
  a .parquet file   the same, one file
  a .csv file       columns bpp,psnr[,ms_ssim][,label][,method]: one curve (or one per method)
  a .json file      a CompressAI result JSON, a QVRF RD txt-style JSON or a qvrf-bench anchor file
  an anchor NAME    a published curve itself (e.g. qvrf/kodak/hyper+qvrf)

--anchor (repeatable; without it, the run's own comparisons, the same pairs and numbers as the HTML
report: each QVRF/VBR curve against run:fixed of its family, each learned curve against each
classical codec of the run) is one of
  NAME              a published or user anchor (see `qvrf-bench anchors list`)
  run:KIND          rows of TEST of kind KIND (fixed, qvrf, vbr, classical) counted as ONE curve per
                    architecture family; each other curve of TEST is compared with the curve of its own
                    family (e.g. run:fixed = the fixed-rate models of the same run, the usual QVRF
                    anchor); run:classical = each classical codec, compared with every other curve
  run:KIND:ARCH     the same for one architecture, compared with every other method of TEST
  run:M1[+M2...]    methods M1, M2, ... of TEST merged into one curve
  FILE.json|.csv    a curve file, as for TEST

Each test curve is compared with each anchor. BD conventions: negative BD-rate = the test needs fewer
bits; curves are reduced to their monotone upper hull (dominated points dropped and listed); BD is
integrated over the quality overlap, overlap = intersection of the quality ranges / the narrower
range (below --min-overlap: "insufficient overlap"; a shared range under 1 dB: a warning; none: an
error; README "BD-rate conventions"); sensitivity = min/median/max BD-rate over every
--subset-size-point subset (of the test curve by default, as the QVRF paper used 4 points).

Outputs: the table on stdout; with -o PREFIX also PREFIX.csv (all columns, full precision), PREFIX.md
and PREFIX.tex (booktabs), and with --per-image PREFIX.per_image.csv. Exit status 1 when
--fail-above PCT is given and some BD-rate exceeds PCT; 2 on errors.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="BD-rate / BD-PSNR of a run or curve against anchors",
        description="Bjontegaard deltas (via the bjontegaard package) of every test curve against every anchor.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("test", metavar="TEST", help="run folder, .parquet, .csv or .json (see below)")
    p.add_argument("-a", "--anchor", action="append", metavar="ANCHOR",
                   help="see below (default: the run's own comparisons, the same as the report's)")  # fmt: skip
    p.add_argument("--metric", default="psnr", metavar="NAME",
                   help="quality axis: a metric of the table, e.g. psnr (default), ms-ssim, psnr-y, psnr-yuv "
                   "(README 'Metrics')")  # fmt: skip
    p.add_argument("--range", action="append", default=[], metavar="LO:HI",
                   help="also BD within a band: bpp (0.1:0.4, 0.8:) or quality (30:34dB); 'bands' = low / mid / "
                   "high (<0.4, 0.4-0.8, >=0.8 bpp); repeatable. Printed after the main table; with -o also "
                   "PREFIX.bands.csv")  # fmt: skip
    p.add_argument("--interp", choices=INTERPOLATIONS, default="akima", help="interpolation (default: akima)")
    p.add_argument(
        "--rate",
        choices=tuple(RATES),
        default="file",
        help="file: bpp of the whole bitstream file, header included (bpp_real, default); payload: "
        "entropy-coded strings only (payload_bpp_real), like CompressAI's and QVRF's published bpp",
    )
    p.add_argument("--fail-above", type=float, metavar="PCT", help="exit 1 if any BD-rate is above PCT percent")
    p.add_argument("-o", "--output", metavar="PREFIX", help="write PREFIX.csv, PREFIX.md and PREFIX.tex")
    p.add_argument(
        "--method", action="append", metavar="PATTERN", help="only test methods matching PATTERN (glob; repeatable)"
    )
    p.add_argument("--name", help="curve name for a single-curve TEST file (default: the file name)")
    p.add_argument(
        "--min-overlap", type=float, default=50.0, metavar="PCT", help="warn below this quality overlap (default: 50)"
    )
    p.add_argument("--no-hull", action="store_true", help="do not drop dominated points (non-monotone curves fail)")
    p.add_argument(
        "--sensitivity",
        choices=("auto", *SENSITIVITY_MODES),
        default="auto",
        help="which curve's subsets: auto (default: test, unless the test curve has more than 500 subsets), "
        "test, anchor, paired (same indices, equal counts), both, none",
    )
    p.add_argument("--subset-size", type=int, default=4, metavar="K", help="points per subset (default: 4)")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="add a 95%% CI from N bootstrap resamples of the images (per-image TEST only; e.g. 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument(
        "--per-image",
        action="store_true",
        help="also write PREFIX.per_image.csv: BD per image (anchors from the run only)",
    )
    p.add_argument("--skip-disjoint", action="store_true", help="skip pairs without quality overlap (default: error)")
    p.add_argument("--dir", action="append", default=[], metavar="DIR", help="extra folder of user anchors")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def _caption(args, from_run: bool) -> str:
    from qvrf_bench.metrics import get_metric

    metric = get_metric(args.metric).label
    sens = (
        "no subset sensitivity"
        if args.sensitivity == "none"
        else f"{args.subset_size}-point subsets of the test curve (where at most 500)"
        if args.sensitivity == "auto"
        else f"{args.subset_size}-point subsets of the {args.sensitivity} curve(s)"
    )
    hull = "no hull" if args.no_hull else "monotone hull"
    rate = {"file": "bpp of whole files", "payload": "bpp of entropy-coded payload"}[args.rate]
    rate = rate if from_run else "bpp as given"  # curve files carry one bpp
    return f"BD-rate ({rate}) on {metric}, {args.interp} interpolation, {hull}, {sens}; negative = fewer bits than the anchor"


def run(args: argparse.Namespace) -> int:
    import sys

    import pandas as pd

    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()  # a run's architectures are named through the model table, which imports torch

    from qvrf_bench import analysis
    from qvrf_bench.analysis import rd
    from qvrf_bench.errors import QVRFError

    if args.per_image and not args.output:
        raise QVRFError("--per-image needs -o PREFIX")
    if args.subset_size < 2:
        raise QVRFError("--subset-size must be at least 2")
    outputs = []
    if args.output:  # checked before any work: a bad -o is one line, not a traceback after the tables
        from qvrf_bench import files

        prefix = Path(args.output)
        files.check_folder(prefix.parent, "BD tables")
        outputs = [prefix.with_name(prefix.name + ext)
                   for ext in (".csv", ".md", ".tex", ".per_image.csv", ".bands.csv")]  # fmt: skip
        for out in outputs:
            if out.is_dir():
                raise QVRFError(f"{out}: is a folder; give another -o PREFIX")
            files.refuse_overwriting_inputs(out, [args.test, *(args.anchor or [])], "BD table")
    from qvrf_bench.metrics import get_metric

    spec = get_metric(args.metric)
    source = analysis.read_source(Path(args.test), args.name)
    if spec.quality_column not in source.points or source.points[spec.quality_column].isna().all():
        raise QVRFError(f"{args.test}: no {spec.label} values (measure them with sweep --metrics {spec.name}, "
                        "or use --metric psnr)")  # fmt: skip
    tests, fixed = analysis.test_curves(source.points, source.rows)
    if args.method:
        tests = [c for c in tests if any(fnmatchcase(x, p) for p in args.method for x in (c.name, *c.members))]
    if not tests:
        raise QVRFError("no test curve left" + (f" after --method {' '.join(args.method)}" if args.method else ""))
    rate = RATES[args.rate]
    notes = list(source.notes)
    if args.anchor:
        pairs = []
        for spec in args.anchor:
            new, more = analysis.spec_pairs(spec, tests, source, rate=rate, dirs=args.dir)
            pairs += new
            notes += more
    else:  # the run's own comparisons, exactly the report's
        kept = {t.name for t in tests}
        pairs, more = analysis.default_pairs(tests, {f: c for f, c in fixed.items() if c.name in kept}, rate=rate)
        notes += more
    if not pairs:
        raise QVRFError("nothing to compare: no (test, anchor) pair")
    bands = []
    for spec in args.range:
        bands += list(rd.DEFAULT_BANDS) if spec.strip() == "bands" else [rd.parse_band(spec)]
    settings = analysis.Settings(
        bands=tuple(bands), metrics=(args.metric,), rate=rate, interp=args.interp, hull=not args.no_hull, min_overlap=args.min_overlap,
        sensitivity=args.sensitivity, subset_size=args.subset_size, n_boot=args.bootstrap, seed=args.seed,
        per_image=(args.metric,) if args.per_image else (), strict=not args.skip_disjoint,
    )  # fmt: skip
    bd = analysis.run_pairs(pairs, settings)
    notes += bd.notes
    per_image = [df.assign(test=t, anchor=a) for t, a, _, df in bd.per_image]
    if args.metric not in bd.tables:
        for note in dict.fromkeys(notes):
            print(f"note: {note}", file=sys.stderr)
        raise QVRFError("no comparison could be computed (all pairs skipped; see the notes above)")

    table = bd.tables[args.metric]
    caption = _caption(args, source.rows is not None)
    md = rd.format_markdown(table)
    print(caption + "\n")
    print(md, end="")
    if bd.bands is not None:
        from qvrf_bench.analysis.comparisons import format_bands

        print(f"\nBD within bands ({args.interp}, the same curves and hulls; a bpp band's quality range is the "
              "anchor's quality at its rates):\n")  # fmt: skip
        print(format_bands(bd.bands), end="")
    for note in dict.fromkeys(notes):
        print(f"note: {note}", file=sys.stderr)
    if args.output:
        files.make_folder(prefix.parent, "BD tables")
        written = []
        from qvrf_bench.analysis.comparisons import with_complexity

        # the CSV carries each side's parameters and kMAC/px where the run counted them (run.json)
        csv_table = with_complexity(table, source.complexity, [*tests, *fixed.values()]) if source.complexity else table
        texts = (rd.format_csv(csv_table), caption + "\n\n" + md, f"% {caption}\n" + rd.format_latex(table))
        for out, text in zip(outputs[:3], texts, strict=True):
            files.write_bytes(out, text.encode("utf-8"))
            written.append(str(out))
        if per_image:
            out = outputs[3]
            cols = [
                "test",
                "anchor",
                "image",
                "bd_rate_pct",
                "bd_quality_db",
                "overlap_pct",
                "n_test",
                "n_anchor",
                "note",
            ]
            files.write_bytes(out, pd.concat(per_image, ignore_index=True)[cols].to_csv(index=False).encode("utf-8"))
            written.append(str(out))
        if bd.bands is not None:
            files.write_bytes(outputs[4], bd.bands.to_csv(index=False).encode("utf-8"))
            written.append(str(outputs[4]))
        print("wrote " + ", ".join(written), file=sys.stderr)
    if args.fail_above is not None:
        over = table.loc[table["bd_rate_pct"] > args.fail_above]
        if len(over):
            for _, r in over.iterrows():
                print(
                    f"FAIL: {r['test']} vs {r['anchor']}: BD-rate {r['bd_rate_pct']:+.2f}% > {args.fail_above:+.2f}%",
                    file=sys.stderr,
                )
            return 1
    return 0
