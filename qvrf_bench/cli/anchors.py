"""`qvrf-bench anchors`: list, show, import and export published RD curves."""

from __future__ import annotations

import argparse

KINDS = ("fixed-rate-set", "variable-rate", "classical")
DIR_HELP = "a folder of user anchors to search (repeatable; ./anchors/user and $QVRF_BENCH_ANCHORS are always searched)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "anchors",
        help="list, show, import and export published RD curves",
        description="Published rate-distortion curves (CompressAI zoo, VBR and classical codecs; QVRF's own "
        "curves) and your own. Names are <source>/<dataset>/<model>, e.g. "
        "compressai/kodak/bmshj2018-hyperprior-mse-cuda or qvrf/kodak/hyper+qvrf.",
    )
    sub = p.add_subparsers(dest="anchors_command", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="a table of the known anchors")
    ls.add_argument("--dataset", help="only this dataset (kodak, clic2020-mobile, clic2020-professional, ...)")
    ls.add_argument("--kind", choices=KINDS, help="only this kind")
    ls.add_argument("--source", help="only names starting with SOURCE/ (compressai, qvrf, user)")
    ls.add_argument("--dir", action="append", default=[], metavar="DIR", help=DIR_HELP)
    ls.set_defaults(func=run)

    show = sub.add_parser("show", help="metadata and points of one anchor")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print the anchor file itself")
    show.add_argument("--dir", action="append", default=[], metavar="DIR", help=DIR_HELP)
    show.set_defaults(func=run)

    imp = sub.add_parser(
        "import",
        help="add a curve from a CompressAI result JSON, a QVRF RD txt or a CSV",
        description="Convert FILE (CompressAI result JSON; QVRF RD txt, trailing commas tolerated; an exported "
        "or qvrf-bench anchor JSON; or CSV with columns bpp,psnr[,ms_ssim][,label]) into an anchor file "
        "DIR/<dataset>/<name>.json named user/<dataset>/<name>.",
    )
    imp.add_argument("file")
    imp.add_argument("--name", required=True, help="model name (becomes user/<dataset>/<name>) or a full a/b/c name")
    imp.add_argument("--dataset", required=True, help="e.g. kodak")
    imp.add_argument("--kind", choices=KINDS, help="default: from the file, else fixed-rate-set")
    imp.add_argument("--label", help="display name")
    imp.add_argument(
        "--reconstruction",
        choices=("float", "8bit", "unknown"),
        help="what the metrics were computed on (float or 8-bit-rounded reconstructions)",
    )
    imp.add_argument("--device", help="cpu, cuda, ...")
    imp.add_argument("--citation")
    imp.add_argument("--dir", default="anchors/user", help="where to write (default: ./anchors/user)")
    imp.add_argument("--force", action="store_true", help="overwrite an existing file")
    imp.set_defaults(func=run)

    exp = sub.add_parser("export", help="write an anchor in CompressAI's result JSON format")
    exp.add_argument("name")
    exp.add_argument("-o", "--output", required=True, metavar="OUT.json")
    exp.add_argument("--dir", action="append", default=[], metavar="DIR", help=DIR_HELP)
    exp.set_defaults(func=run)


def text_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]).rstrip() + "\n"


def _source_text(a) -> str:
    src = a.source or {}
    if src.get("repo"):
        return src["repo"] + (f"@{src['commit'][:7]}" if src.get("commit") else "")
    return str(src.get("path") or a.path or "")


def _fmt(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _list(args) -> int:
    from qvrf_bench.analysis.anchors import list_anchors

    items = list_anchors(args.dir, dataset=args.dataset)
    if args.kind:
        items = [a for a in items if a.kind == args.kind]
    if args.source:
        items = [a for a in items if a.name.startswith(args.source.rstrip("/").lower() + "/")]
    rows = []
    for a in items:
        lo, hi = a.bpp_range
        pr = a.psnr_range
        rows.append(
            [
                a.name,
                a.dataset,
                a.kind,
                str(len(a.points)),
                f"{lo:.3f}-{hi:.3f}",
                f"{pr[0]:.2f}-{pr[1]:.2f}" if pr else "-",
                _source_text(a),
            ]
        )
    headers = ["name", "dataset", "kind", "points", "bpp", "PSNR [dB]", "source"]
    print(text_table(headers, rows, right={3}), end="")
    print(f"{len(rows)} anchor(s)")
    return 0


def _show(args) -> int:
    from qvrf_bench.analysis.anchors import dumps_anchor, load_anchor

    a = load_anchor(args.name, args.dir)
    if args.json:
        print(dumps_anchor(a), end="")
        return 0
    src = a.source or {}
    lines = [
        f"name:        {a.name}",
        f"label:       {a.label}",
        f"dataset:     {a.dataset}",
        f"kind:        {a.kind}",
        f"arch:        {a.arch or '-'} (trained for {a.trained_for or '?'})",
        f"metrics:     PSNR-RGB on {a.metrics.get('psnr_rgb') or '-'} reconstructions, "
        f"MS-SSIM-RGB on {a.metrics.get('ms_ssim_rgb') or '-'}; {a.metrics.get('averaging', '')}",
        f"bpp_real:    {a.bpp_real}",
        f"device:      {a.device or '-'}" + (f" ({a.hardware})" if a.hardware else ""),
        f"source:      {src.get('repo', '-')} {src.get('path', '')} @ {src.get('commit', '-')}",
        f"citation:    {a.citation or '-'}",
        f"notes:       {a.notes or '-'}",
        f"file:        {a.path}",
        "",
    ]
    print("\n".join(lines))
    headers = ["label", "bpp", "PSNR-RGB", "MS-SSIM", "MS-SSIM [dB]", "enc [s]", "dec [s]"]
    rows = [
        [
            p.label,
            _fmt(p.bpp, 4),
            _fmt(p.psnr_rgb, 3),
            _fmt(p.ms_ssim_rgb, 5),
            _fmt(p.ms_ssim_db_rgb, 3),
            _fmt(p.enc_s, 3),
            _fmt(p.dec_s, 3),
        ]
        for p in a.points
    ]
    print(text_table(headers, rows, right={1, 2, 3, 4, 5, 6}), end="")
    return 0


def _import(args) -> int:
    from pathlib import Path

    from qvrf_bench.analysis.anchors import (
        import_curve_file,
        list_anchors,
        user_anchor_name,
        user_anchor_path,
        write_anchor,
    )
    from qvrf_bench.errors import QVRFError

    dataset = args.dataset.strip().lower()
    name = user_anchor_name(args.name, dataset)
    if any(a.name == name for a in list_anchors(include_user=False)):
        raise QVRFError(f"{name!r} is a packaged anchor; choose another --name")
    meta = {}
    if args.label:
        meta["label"] = args.label
    if args.device:
        meta["device"] = args.device
    if args.citation:
        meta["citation"] = args.citation
    anchor = import_curve_file(Path(args.file), name=name, dataset=dataset, kind=args.kind, **meta)
    if args.reconstruction:
        from dataclasses import replace

        metrics = dict(anchor.metrics, psnr_rgb=args.reconstruction)
        if metrics.get("ms_ssim_rgb") is not None:
            metrics["ms_ssim_rgb"] = args.reconstruction
        anchor = replace(anchor, metrics=metrics)
    target = user_anchor_path(name, args.dir)
    if target.exists() and not args.force:
        raise QVRFError(f"{target} exists (use --force to overwrite)")
    write_anchor(anchor, target)
    print(f"wrote {target}: {name} ({len(anchor.points)} points)")
    return 0


def _export(args) -> int:
    from qvrf_bench.analysis.anchors import export_compressai, load_anchor

    a = load_anchor(args.name, args.dir)
    path = export_compressai(a, args.output)
    print(f"wrote {path}: {a.name} ({len(a.points)} points, CompressAI result JSON)")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "show": _show, "import": _import, "export": _export}[args.anchors_command](args)
