"""`qvrf-bench compare`: BD-rate tables of a run (or a curve file) against anchors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

# Kept in sync with qvrf_bench.rd by a test; not imported here so that --help stays fast.
INTERPOLATIONS = ("akima", "pchip", "cubic")
SENSITIVITY_MODES = ("test", "anchor", "paired", "both", "none")
RUN_KINDS = ("fixed", "qvrf", "vbr", "classical")
RATES = {"file": "bpp_real", "payload": "payload_bpp_real"}

EPILOG = """\
TEST is one of
  a run folder      every *.parquet file below it (per-image rows of the sweep; files or folders whose
                    name starts with '.' and *.tmp files are ignored); each method is one test curve,
                    except the fixed-rate models (kind fixed), which form one curve per architecture,
                    run:fixed:<arch>
  a .parquet file   the same, one file
  a .csv file       columns bpp,psnr[,ms_ssim][,label][,method]: one curve (or one per method)
  a .json file      a CompressAI result JSON, a QVRF RD txt-style JSON or a qvrf-bench anchor file
  an anchor NAME    a published curve itself (e.g. qvrf/kodak/hyper+qvrf)

--anchor (repeatable) is one of
  NAME              a published or user anchor (see `qvrf-bench anchors list`)
  run:KIND          rows of TEST of kind KIND (fixed, qvrf, vbr, classical) counted as ONE curve per
                    architecture; each other method of TEST is compared with the curve of its own arch
                    (e.g. run:fixed = the fixed-rate models of the same run, the usual QVRF anchor)
  run:KIND:ARCH     the same for one architecture, compared with every other method of TEST
  run:M1[+M2...]    methods M1, M2, ... of TEST merged into one curve
  FILE.json|.csv    a curve file, as for TEST

Each test curve is compared with each anchor. BD conventions: negative BD-rate = the test needs fewer
bits; curves are reduced to their monotone upper hull (dominated points dropped and listed); BD is
integrated over the quality overlap, overlap = intersection/union of the quality ranges (warning
below --min-overlap, error when zero); sensitivity = min/median/max BD-rate over every
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
    p.add_argument("-a", "--anchor", action="append", required=True, metavar="ANCHOR", help="see below")
    p.add_argument("--metric", choices=("psnr", "ms-ssim"), default="psnr", help="quality axis (default: psnr)")
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
        choices=SENSITIVITY_MODES,
        default="test",
        help="which curve's subsets: test (default), anchor, paired (same indices, equal counts), both, none",
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
# Reading TEST
# ----------------------------------------------------------------------------------------------


@dataclass
class TestData:
    points: object  # DataFrame: method, rate_point, bpp_real, psnr_rgb, ms_ssim_rgb, ms_ssim_db_rgb[, arch, kind]
    rows: object | None  # per-image rows (parquet) or None
    n_error_rows: int = 0
    notes: tuple[str, ...] = ()


def parquet_files(folder: Path) -> list[Path]:
    """*.parquet below ``folder``, skipping hidden files/folders and temporary files."""
    out = []
    for p in sorted(folder.rglob("*.parquet")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel) or p.name.endswith(".tmp"):
            continue
        out.append(p)
    return out


def read_rows(path: Path):
    """Per-image rows of every parquet file of a run folder (or one file), re-measured rows deduplicated.

    Returns (rows, number of superseded rows dropped).
    """
    import pandas as pd

    from qvrf_bench.errors import QVRFError

    files = parquet_files(path) if path.is_dir() else [path]
    if not files:
        raise QVRFError(f"{path}: no .parquet files found")
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except Exception as exc:  # pyarrow raises many types; the user needs the file name
            raise QVRFError(f"{f}: cannot read parquet ({exc})") from None
    rows = pd.concat(frames, ignore_index=True)
    if {"created_utc", "checkpoint_sha256", "image_sha256"} <= set(rows.columns):
        n = len(rows)
        rows = latest_per_row_key(rows)
        return rows, n - len(rows)
    return rows, 0


def latest_per_row_key(rows):
    """The latest row per result-schema row key (store.ROW_KEY: method, checkpoint_sha256, rate_point,
    image_sha256 or image), by created_utc, on ties the later row.

    The store appends a re-measured row instead of rewriting it; averaging both would bias the
    curve. Same rule as ResultStore.read, restated on a DataFrame because the TEST folder may hold
    parts of several runs.
    """
    work = rows.reset_index(drop=True)
    image_id = work["image_sha256"].fillna("").astype(str)
    image_id = image_id.where(image_id != "", work["image"].astype(str))
    key = work[["method", "checkpoint_sha256", "rate_point"]].fillna("").astype(str).assign(_image=image_id)
    # Stable sort by time keeps file order among equal times, so "last" is the later row on ties.
    order = work.sort_values("created_utc", kind="stable").index
    latest = order[~key.loc[order].duplicated(keep="last").to_numpy()]
    return work.loc[sorted(latest)].reset_index(drop=True)


def _points_from_anchor(anchor, method: str):
    import pandas as pd

    return pd.DataFrame(
        {
            "method": method,
            "rate_point": [p.label for p in anchor.points],
            "bpp_real": [p.bpp for p in anchor.points],
            # A published curve has one bpp; it serves as both rate definitions.
            "payload_bpp_real": [p.bpp for p in anchor.points],
            "psnr_rgb": [p.psnr_rgb for p in anchor.points],
            "ms_ssim_rgb": [p.ms_ssim_rgb for p in anchor.points],
            "ms_ssim_db_rgb": [p.ms_ssim_db_rgb for p in anchor.points],
        }
    ).astype({"psnr_rgb": float, "ms_ssim_rgb": float, "ms_ssim_db_rgb": float})


def _curve_file(path: Path, name: str | None):
    """(display name, Anchor) of a curve file; the anchor's name is a placeholder."""
    from qvrf_bench.anchors import import_curve_file, slug

    anchor = import_curve_file(path, name=f"user/file/{slug(path.stem)}", dataset="unknown")
    return name or path.stem, anchor


def read_test(path: Path, name: str | None) -> TestData:
    import pandas as pd

    from qvrf_bench import rd
    from qvrf_bench.errors import QVRFError

    if not path.exists():
        if str(path).count("/") == 2 and not path.suffix:  # looks like an anchor name
            from qvrf_bench.anchors import load_anchor

            anchor = load_anchor(str(path))
            return TestData(_points_from_anchor(anchor, name or anchor.name), None)
        raise QVRFError(f"{path}: no such file or folder (nor an anchor name)")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        rows, n_superseded = read_rows(path)
        agg = rd.aggregate(rows)
        notes = []
        if n_superseded:
            notes.append(f"kept the latest of re-measured rows ({n_superseded} older row(s) ignored)")
        if agg.n_error_rows:
            per = ", ".join(f"{m}: {n}" for m, n in sorted(agg.error_rows_by_method.items()))
            notes.append(f"ignored {agg.n_error_rows} row(s) with an error ({per})")
        for m, counts in agg.unequal_image_counts().items():
            notes.append(f"{m}: rate points average different numbers of images {counts}")
        dup = agg.per_image.duplicated(["method", "rate_point", "image"]).sum()
        if dup:
            notes.append(f"{dup} duplicate (method, rate_point, image) row(s) are all averaged in")
        return TestData(agg.points, agg.per_image, agg.n_error_rows, tuple(notes))
    if suffix == ".csv":
        df = pd.read_csv(path)
        cols = {c.strip().lower(): c for c in df.columns}
        if "method" in cols:
            from qvrf_bench.anchors import from_csv_text

            parts = []
            for method, grp in df.groupby(df[cols["method"]].astype(str), sort=True):
                anchor = from_csv_text(
                    grp.drop(columns=[cols["method"]]).to_csv(index=False),
                    name="user/file/x",
                    dataset="unknown",
                    kind="fixed-rate-set",
                    origin=f"{path} (method {method})",
                )
                parts.append(_points_from_anchor(anchor, method))
            return TestData(pd.concat(parts, ignore_index=True), None)
    if suffix in (".csv", ".json", ".txt"):
        display, anchor = _curve_file(path, name)
        return TestData(_points_from_anchor(anchor, display), None)
    raise QVRFError(f"{path}: TEST must be a run folder, .parquet, .csv or .json")


# ----------------------------------------------------------------------------------------------
# Pairing tests with anchors
# ----------------------------------------------------------------------------------------------


@dataclass
class TestCurve:
    """One test curve: a method of TEST, or (kind ``fixed``) all fixed-rate models of one arch."""

    name: str
    members: list[str]  # methods of TestData.points
    arch: str | None = None
    kind: str | None = None


@dataclass
class Pair:
    test: TestCurve
    anchor_name: str
    anchor_curve: object  # rd.Curve
    anchor_rows: object | None  # per-image rows of the anchor (run anchors only)


def _method_attr(points, column: str) -> dict[str, str]:
    if column not in points.columns:
        return {}
    return points.groupby("method")[column].first().astype(str).to_dict()


def test_curves(data: TestData, patterns: list[str] | None) -> list[TestCurve]:
    """The curves of TEST: each method, except that fixed-rate models (one point each) are grouped
    per arch into ``run:fixed:<arch>``; ``patterns`` (globs) keep curves whose name or a member matches."""
    from fnmatch import fnmatchcase

    kind_of = _method_attr(data.points, "kind")
    arch_of = _method_attr(data.points, "arch")
    curves: dict[str, TestCurve] = {}
    for m in sorted(set(data.points["method"].astype(str))):
        kind, arch = kind_of.get(m), arch_of.get(m)
        key = f"run:fixed:{arch}" if kind == "fixed" else m
        curves.setdefault(key, TestCurve(key, [], arch, kind)).members.append(m)
    out = list(curves.values())
    if patterns:
        out = [c for c in out if any(fnmatchcase(x, p) for p in patterns for x in (c.name, *c.members))]
    return out


def curve_and_rows(data: TestData, tc: TestCurve, metric: str, rate: str):
    """(rd.Curve, per-image rows or None) of a test curve."""
    from qvrf_bench import rd

    if tc.members == [tc.name]:
        curve = rd.curve_from_points(data.points, tc.name, metric, rate=rate)
        rows = data.rows.loc[data.rows["method"] == tc.name] if data.rows is not None else None
        return curve, rows
    curve = rd.curve_from_points(rd.merge_methods(data.points, tc.members, tc.name), None, metric, tc.name, rate)
    rows = rd.merge_methods(data.rows, tc.members, tc.name) if data.rows is not None else None
    return curve, rows


def _run_anchor(
    spec: str, data: TestData, tests: list[TestCurve], metric: str, rate: str
) -> tuple[list[Pair], list[str]]:
    from qvrf_bench import rd
    from qvrf_bench.errors import QVRFError

    sel = spec[len("run:") :]
    pts = data.points
    notes: list[str] = []

    def build(name: str, methods: list[str], candidates: list[TestCurve]) -> list[Pair]:
        curve = rd.curve_from_points(rd.merge_methods(pts, methods, name), None, metric, name, rate)
        rows = rd.merge_methods(data.rows, methods, name) if data.rows is not None else None
        # A curve is not compared with an anchor that contains it.
        return [Pair(t, name, curve, rows) for t in candidates if not set(t.members) & set(methods)]

    head, _, arch = sel.partition(":")
    if head in RUN_KINDS:
        if "kind" not in pts.columns:
            raise QVRFError(f"--anchor {spec}: TEST has no 'kind' column (only run folders/parquet have one)")
        kind_of = _method_attr(pts, "kind")
        arch_of = _method_attr(pts, "arch")
        of_kind = sorted(m for m, k in kind_of.items() if k == head)
        if arch:
            members = [m for m in of_kind if arch_of.get(m) == arch]
            if not members:
                have = sorted({arch_of.get(m, "?") for m in of_kind})
                raise QVRFError(f"--anchor {spec}: no {head} rows of arch {arch!r} (have: {', '.join(have) or 'none'})")
            return build(spec, members, tests), notes
        if not of_kind:
            raise QVRFError(f"--anchor {spec}: TEST has no rows of kind {head!r}")
        pairs: list[Pair] = []
        for a in sorted({arch_of.get(m, "?") for m in of_kind}):
            members = [m for m in of_kind if arch_of.get(m, "?") == a]
            candidates = [t for t in tests if (t.arch or "?") == a and t.kind != head]
            pairs += build(f"run:{head}:{a}", members, candidates)
        covered = {p.test.name for p in pairs}
        lonely = [t.name for t in tests if t.name not in covered and t.kind != head]
        if lonely:
            notes.append(f"--anchor {spec}: no {head} rows of the same arch for {', '.join(lonely)}")
        return pairs, notes
    methods = [m for m in sel.split("+") if m]
    if not methods:
        raise QVRFError(f"--anchor {spec}: name methods after 'run:' or a kind ({', '.join(RUN_KINDS)})")
    return build(spec, methods, tests), notes


def plan_pairs(data: TestData, specs: list[str], args) -> tuple[list[Pair], list[str]]:
    from qvrf_bench.anchors import load_anchor
    from qvrf_bench.errors import QVRFError

    tests = test_curves(data, args.method)
    if not tests:
        raise QVRFError("no test curve left" + (f" after --method {' '.join(args.method)}" if args.method else ""))
    pairs: list[Pair] = []
    notes: list[str] = []
    for spec in specs:
        if spec.startswith("run:"):
            new, more = _run_anchor(spec, data, tests, args.metric, RATES[args.rate])
            pairs += new
            notes += more
            continue
        path = Path(spec)
        if path.suffix.lower() in (".json", ".csv", ".txt") and path.is_file():
            _, anchor = _curve_file(path, None)
            curve = anchor.curve(args.metric)
            curve = type(curve)(spec, curve.rate, curve.quality, curve.labels, curve.metric)
        else:
            anchor = load_anchor(spec, args.dir)
            curve = anchor.curve(args.metric)
            if data.rows is not None and anchor.reconstruction == "float":
                notes.append(
                    f"{anchor.name}: metrics on float reconstructions, the run's on 8-bit-rounded ones "
                    "(CompressAI measured <= 0.07 dB difference; see the -8bit anchors)"
                )
            if data.rows is not None and args.rate == "file" and anchor.kind != "classical":
                notes.append(
                    f"{anchor.name}: its bpp counts the entropy-coded strings only; the run's bpp_real "
                    "includes the container header (--rate payload compares like with like)"
                )
        pairs += [Pair(t, curve.name, curve, None) for t in tests]
    return pairs, notes


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def _caption(args, from_run: bool) -> str:
    metric = {"psnr": "PSNR-RGB", "ms-ssim": "MS-SSIM-RGB in dB"}[args.metric]
    sens = (
        "no subset sensitivity"
        if args.sensitivity == "none"
        else f"{args.subset_size}-point subsets of the {args.sensitivity} curve(s)"
    )
    hull = "no hull" if args.no_hull else "monotone hull"
    rate = {"file": "bpp of whole files", "payload": "bpp of entropy-coded payload"}[args.rate]
    rate = rate if from_run else "bpp as given"  # curve files carry one bpp
    return f"BD-rate ({rate}) on {metric}, {args.interp} interpolation, {hull}, {sens}; negative = fewer bits than the anchor"


def run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    import pandas as pd

    from qvrf_bench import rd
    from qvrf_bench.errors import QVRFError

    if args.per_image and not args.output:
        raise QVRFError("--per-image needs -o PREFIX")
    if args.subset_size < 2:
        raise QVRFError("--subset-size must be at least 2")
    data = read_test(Path(args.test), args.name)
    if args.metric == "ms-ssim" and data.points["ms_ssim_db_rgb"].isna().all():
        raise QVRFError(f"{args.test}: no MS-SSIM values (use --metric psnr)")
    pairs, notes = plan_pairs(data, args.anchor, args)
    notes = list(data.notes) + notes
    if not pairs:
        raise QVRFError("nothing to compare: no (test, anchor) pair")

    results, per_image = [], []
    cache: dict[str, tuple] = {}
    for pair in pairs:
        tc = pair.test
        if tc.name not in cache:
            cache[tc.name] = curve_and_rows(data, tc, args.metric, RATES[args.rate])
        test_curve, test_rows = cache[tc.name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rd.RDWarning)  # the same text is in result.notes
            try:
                res = rd.compare(
                    test=test_curve,
                    anchor=pair.anchor_curve,
                    interp=args.interp,
                    hull=not args.no_hull,
                    min_overlap_pct=args.min_overlap,
                    sensitivity=args.sensitivity,
                    subset_size=args.subset_size,
                )
            except QVRFError as exc:
                # One short curve (a single rate point) or, with --skip-disjoint, one disjoint pair
                # should not sink a table of many pairs.
                if "usable point" in str(exc) or (args.skip_disjoint and "no quality overlap" in str(exc)):
                    notes.append(f"skipped: {exc}")
                    continue
                raise
        notes += list(res.notes)
        notes += [f"dropped (dominated/invalid): {d}" for d in (*res.dropped_test, *res.dropped_anchor)]
        if args.bootstrap > 0:
            if test_rows is None:
                notes.append(f"{tc.name}: no per-image rows, no bootstrap CI")
            else:
                anchor = pair.anchor_rows if pair.anchor_rows is not None else pair.anchor_curve
                try:
                    ci = rd.bootstrap_ci(
                        test_rows,
                        anchor,
                        metric=args.metric,
                        interp=args.interp,
                        n_boot=args.bootstrap,
                        seed=args.seed,
                        rate=RATES[args.rate],
                    )
                    res = res.with_ci(ci)
                except QVRFError as exc:
                    notes.append(f"{tc.name} vs {pair.anchor_name}: no bootstrap CI ({exc})")
        if args.per_image:
            if pair.anchor_rows is None or test_rows is None:
                notes.append(f"{tc.name} vs {pair.anchor_name}: no per-image anchor data, no per-image BD")
            else:
                df = rd.per_image_bd(
                    test_rows,
                    pair.anchor_rows,
                    metric=args.metric,
                    interp=args.interp,
                    hull=not args.no_hull,
                    test_name=tc.name,
                    anchor_name=pair.anchor_name,
                    rate=RATES[args.rate],
                )
                per_image.append(df.assign(test=tc.name, anchor=pair.anchor_name))
        results.append(res)
    if not results:
        for note in dict.fromkeys(notes):
            print(f"note: {note}", file=sys.stderr)
        raise QVRFError("no comparison could be computed (all pairs skipped; see the notes above)")

    table = rd.results_table(results)
    caption = _caption(args, data.rows is not None)
    md = rd.format_markdown(table)
    print(caption + "\n")
    print(md, end="")
    for note in dict.fromkeys(notes):
        print(f"note: {note}", file=sys.stderr)
    if args.output:
        prefix = Path(args.output)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        written = []
        for ext, text in (
            (".csv", rd.format_csv(table)),
            (".md", caption + "\n\n" + md),
            (".tex", f"% {caption}\n" + rd.format_latex(table)),
        ):
            out = prefix.with_name(prefix.name + ext)
            out.write_text(text, encoding="utf-8")
            written.append(str(out))
        if per_image:
            out = prefix.with_name(prefix.name + ".per_image.csv")
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
            pd.concat(per_image, ignore_index=True)[cols].to_csv(out, index=False)
            written.append(str(out))
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
