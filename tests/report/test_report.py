"""The HTML report and the figures, on a small synthetic run (no model, no torch work).

Run as a script to (re)make the committed example: ``python tests/report/test_report.py --example
reports/example`` (synthetic data, labelled so in the report's title and device column).
"""

from __future__ import annotations

import datetime as dt
import html
import re
import sys
from pathlib import Path

import numpy as np
import pytest

EVIL = "<script>alert(1)</script>"
FIXED_BPP = (0.1313, 0.2089, 0.3199, 0.4784, 0.6687, 0.9388, 1.2592, 1.6602)  # CompressAI hyperprior q1..8
LEVEL_GAINS = tuple(float(g) for g in np.geomspace(0.5, 12.0, 8))


# ----------------------------------------------------------------------------------------------
# A synthetic run: Balle-like numbers, per-image spread, one error row, one failed decode
# ----------------------------------------------------------------------------------------------


def _psnr(bpp: float) -> float:
    return 27.58 + 3.55 * np.log2(bpp / 0.1313)  # through CompressAI's hyperprior q1 and q8


def _ms_ssim(psnr: float) -> float:
    return 1.0 - 10 ** (-(10.83 + 0.97 * (psnr - 27.58)) / 10.0)


def _row(method, kind, arch, rate_point, image, i, bpp, psnr, **extra):
    w, h = 96, 64
    ms = _ms_ssim(psnr)
    nbytes = int(round(bpp * w * h / 8))
    return {
        "method": method,
        "arch": arch,
        "kind": kind,
        "rate_point": rate_point,
        "image": image,
        "image_sha256": f"{i:02d}" * 32,
        "width": w,
        "height": h,
        "bytes": nbytes + 12,
        "payload_bytes": nbytes,
        "bpp_real": 8 * (nbytes + 12) / (w * h),
        "payload_bpp_real": 8 * nbytes / (w * h),
        "psnr_rgb": psnr,
        "ms_ssim_rgb": ms,
        "ms_ssim_db_rgb": -10 * np.log10(1 - ms),
        "decode_ok": True,
        "error": "",
        **extra,
    }


def synthetic_rows(n_images: int = 4, n_continuous: int = 10, seed: int = 0, evil: bool = True):
    """(fixed-rate rows, other rows): 8 fixed Balle models; a QVRF Balle model with 8 levels and a
    continuous gain sweep; a JPEG peer; a VBR method named like a script tag (when ``evil``)."""
    rng = np.random.default_rng(seed)
    images = [f"synthetic-{i + 1:02d}.png" for i in range(n_images)]
    spread = [(0.75 + 0.5 * i / max(n_images - 1, 1), 1.2 - 0.8 * i / max(n_images - 1, 1)) for i in range(n_images)]
    fixed, other = [], []
    for q, b in enumerate(FIXED_BPP, start=1):
        for i, image in enumerate(images):
            k, off = spread[i]
            bpp = b * k * (1 + 0.01 * rng.standard_normal())
            fixed.append(
                _row(
                    f"balle-fixed-q{q}",
                    "fixed",
                    "balle",
                    f"level={q}",
                    image,
                    i,
                    bpp,
                    _psnr(b) + off,
                    level=q,
                    lmbda=[0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18][q - 1],
                    engine="qvrf-bench",
                    checkpoint=f"ckpt/balle-fixed-q{q}.pt",
                    checkpoint_sha256=f"{q:x}" * 64,
                    enc_s=0.35 + 0.02 * q,
                    dec_s=0.45 + 0.02 * q,
                )
            )
    log_g, log_b = np.log(LEVEL_GAINS), np.log(np.array(FIXED_BPP) * 1.04)
    sweep = [g for g in np.geomspace(0.55, 11.0, n_continuous) if min(abs(np.log(g) - log_g)) > 1e-3]
    points = [(f"level={s}", s, g) for s, g in enumerate(LEVEL_GAINS)] + [(f"gain={g:.4f}", None, g) for g in sweep]
    for rate_point, level, gain in points:
        b = float(np.exp(np.interp(np.log(gain), log_g, log_b)))
        penalty = 0.1 + 0.3 * np.log2(b / 0.13) / 3.7 + (0.0 if level is not None else 0.05)
        for i, image in enumerate(images):
            k, off = spread[i]
            other.append(
                _row(
                    "balle-qvrf",
                    "qvrf",
                    "balle",
                    rate_point,
                    image,
                    i,
                    b * k * (1 + 0.01 * rng.standard_normal()),
                    _psnr(b) - penalty + off,
                    level=level,
                    gain=float(gain),
                    engine="qvrf-bench",
                    checkpoint="ckpt/balle-qvrf.pt",
                    checkpoint_sha256="ab" * 32,
                    enc_s=0.42,
                    dec_s=0.55,
                )
            )
    for q in (20, 35, 50, 65, 80, 90):
        b = 0.3 * 1.35 ** ((q - 20) / 10)
        for i, image in enumerate(images):
            k, off = spread[i]
            psnr = 29.0 + 4.2 * np.log2(b / 0.508) - 0.25 * np.log2(b / 0.508) ** 2 + off
            other.append(
                _row(
                    "jpeg",
                    "classical",
                    "jpeg",
                    f"q={q}",
                    image,
                    i,
                    b * k,
                    psnr,
                    quality=float(q),
                    engine="pillow",
                    codec_version="Pillow (synthetic)",
                    enc_s=0.004,
                    dec_s=0.002,
                )
            )
    if evil:
        for qstep in (8.0, 5.0, 3.2, 2.0, 1.3, 1.0):
            b = float(np.exp(np.interp(np.log(1 / qstep), np.log([1 / 8, 1.0]), np.log([0.14, 1.6]))))
            for i, image in enumerate(images):
                k, off = spread[i]
                other.append(
                    _row(
                        EVIL,
                        "vbr",
                        "bmshj2018-hyperprior-vbr",
                        f"qstep={qstep:.4f}",
                        image,
                        i,
                        b * k,
                        _psnr(b) - 0.2 + off,
                        gain=1 / qstep,
                        engine="compressai",
                        enc_s=0.3,
                        dec_s=0.3,
                    )
                )
    # One row with an error and one whose decode check failed without an error text.
    bad = dict(other[0])
    bad.update(
        rate_point="gain=99.0000", gain=99.0, level=None, error="BitstreamError: truncated bitstream", decode_ok=False
    )
    bad.update(psnr_rgb=None, ms_ssim_rgb=None, ms_ssim_db_rgb=None, bpp_real=None, payload_bpp_real=None)
    failed = next(r for r in other if r["method"] == "jpeg" and r["rate_point"] == "q=50")
    failed = dict(failed, rate_point="q=95", quality=95.0, decode_ok=False, psnr_rgb=12.0)
    return fixed, other + [bad, failed]


def make_runs(root: Path, device: str = "cpu (2 threads, synthetic test data)", **kw) -> list[Path]:
    """Two run folders (fixed-rate models in one, the rest in the other), written by ResultStore."""
    from qvrf_bench.results.store import ResultStore

    fixed, other = synthetic_rows(**kw)
    prov = {
        "qvrf_bench_version": "0.1.0",
        "torch_version": "2.14.1",
        "compressai_version": "1.2.8",
        "python_version": "3.11",
        "device": device,
        "platform": "synthetic",
    }
    created = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    runs = []
    for name, rows in (("synthetic-fixed", fixed), ("synthetic-qvrf", other)):
        store = ResultStore(root / name)
        config = {"dataset": {"name": "synthetic-images", "images": kw.get("n_images", 4), "sha256": "0" * 64}}
        store.start(["qvrf-bench", "sweep", "--synthetic", name], config, prov=prov)
        store.append([dict(r, created_utc=created) for r in rows])
        runs.append(store.run_dir)
    return runs


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from qvrf_bench.report import render_report

    root = tmp_path_factory.mktemp("report")
    runs = make_runs(root)
    out = render_report(
        runs,
        root / "out" / "index.html",
        anchors=["qvrf/kodak/hyper+qvrf", "compressai/kodak/bmshj2018-hyperprior-mse-cuda"],
        n_boot=50,
        command=["qvrf-bench", "report", "..."],
    )
    return out, out.read_text(encoding="utf-8")


def test_self_contained(report):
    _, text = report
    assert "http://" not in text and "https://" not in text
    # one inline script (hover texts, legend toggles, metric switch): no source, no network call
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.S | re.I)
    assert len(scripts) == 1 and scripts[0][0] == ""
    assert not re.search(r"fetch|XMLHttpRequest|import\(|\beval\b|innerHTML", scripts[0][1])
    assert not re.search(r"\b(src|href)=\"(?!#)", text)  # only in-page links, no external resources
    assert "@import" not in text and not re.search(r"url\((?!#)", text)  # clip paths: url(#id) only


def test_evil_name_is_escaped(report):
    _, text = report
    assert EVIL not in text
    assert html.escape(EVIL, quote=False) in text
    # also inside the SVG: matplotlib wrote it as escaped <text>
    svgs = re.findall(r"<svg\b.*?</svg>", text, re.S)
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in s for s in svgs)


def test_sections_and_figures(report):
    _, text = report
    for section in ("measured", "rd", "levels", "gain", "bd", "per-image", "timing", "errors", "provenance"):
        assert f'<section id="{section}">' in text
    # RD (one family), levels, gain, per-image BD, timing
    figures = re.findall(r'<figure id="fig-[^"]+" class="plot[^"]*"[^>]*>(.*?)</figure>', text, re.S)
    rd_figs = re.findall(r'<figure id="fig-rd-\d+" class="plot rd" data-metric="([^"]+)">', text)
    assert rd_figs == ["psnr", "ms-ssim"]  # one RD figure per metric, switched by the metric buttons
    assert 'data-metric="psnr" aria-pressed="true"' in text and 'data-metric="ms-ssim" aria-pressed="false"' in text
    assert len(figures) == 6 and all(f.count("<svg") == 1 for f in figures)
    assert text.count("<svg") == 6
    assert "BD-rate [%]" in text and "run:fixed:balle" in text
    assert "balle-qvrf [levels]" in text
    assert "qvrf/kodak/hyper+qvrf" in text and "bytedance/QRAF" in text
    assert "ab" * 32 in text  # checkpoint sha256
    assert "qvrf-bench sweep --synthetic synthetic-fixed" in text  # run command line
    assert "dataset: synthetic-images" in text and "cpu (2 threads, synthetic test data)" in text


def test_rd_points_have_hover_texts_and_legend_toggles(report):
    _, text = report
    rd = text.split('<section id="rd">')[1].split("</section>")[0]
    titles = re.findall(r"<use\b[^>]*><title>(.*?)</title></use>", rd, re.S)
    # every marker of every curve (measured and published, both metrics' figures) carries its text
    groups = re.findall(r'class="qs-(?:pts|cont|star)" data-series="\d+">(.*?)(?=<g id=)', rd, re.S)
    assert len(titles) == sum(g.count("<use ") for g in groups) > 100
    measured = [t for t in titles if "(measured)" in t and "PSNR-RGB" in t]
    assert measured and all(re.search(r"\nrate point .+, mean of \d+ images\nbpp: [\d.]+\nPSNR-RGB \[dB\]: [\d.]+$", t)
                            for t in measured)  # fmt: skip
    assert any(t.startswith("hyper+qvrf (published: bytedance/QRAF, kodak)\npublished point") for t in titles)
    # every legend entry names a series whose curve and markers carry the same index
    for fig in re.findall(r'<figure id="fig-rd-\d+".*?</figure>', rd, re.S):
        legend = set(re.findall(r'class="qs-leg" data-series="(\d+)"', fig))
        drawn = set(re.findall(r'class="qs-(?:line|pts|cont|star)" data-series="(\d+)"', fig))
        assert legend and legend == drawn


def test_errors_listed(report):
    _, text = report
    errors = text.split('<section id="errors">')[1].split("</section>")[0]
    assert "BitstreamError: truncated bitstream" in errors
    assert "decode check failed (decode_ok = False" in errors
    assert "q=95" in errors and "synthetic-01.png" in errors
    assert "None: every row decoded" not in errors


def test_no_errors_says_none(tmp_path):
    from qvrf_bench.report import build_context, load_runs, render_html

    runs = make_runs(tmp_path, n_images=2, n_continuous=3, evil=False)
    rows, infos = load_runs(runs)
    rows = rows.loc[rows["decode_ok"] & (rows["error"] == "")]
    text = render_html(build_context(rows, infos, n_boot=0))
    assert "None: every row decoded" in text


def test_svg_text_is_escaped():
    from qvrf_bench.report import plots

    fig, axes = plots.new_figure(1)
    axes[0].plot([1, 2], [1, 2], label=plots.text("--><script>alert(1)</script><!-- $x$ & _y"))
    axes[0].legend()
    svg = plots.to_svg(fig)
    assert "<script" not in svg and "&lt;script&gt;" in svg and "$x$" in svg
    assert "http" not in svg and svg.startswith("<svg")


def test_save_writes_png_and_svg(tmp_path):
    from qvrf_bench.report import figures, plots

    fixed, other = synthetic_rows(n_images=2, n_continuous=4)
    import pandas as pd

    fig = figures.qvrf_vs_anchors("Balle", pd.DataFrame(fixed + other), published=figures.published_for("balle"))
    paths = plots.save(fig, tmp_path / "figs" / "balle")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].stat().st_size > 1000


def test_readme_figures_measured_alone_and_with_published():
    import pandas as pd

    from qvrf_bench.report import figures

    fixed, other = synthetic_rows(n_images=2, n_continuous=4)
    rows = pd.DataFrame(fixed + other)
    # an 11-level model: levels 8..10 beyond the 8-level set
    extra = rows.loc[(rows["method"] == "balle-qvrf") & rows["level"].notna()].copy()
    top = extra.loc[extra["level"] >= 5].copy()
    top["level"] = top["level"] + 3
    top["rate_point"] = "level=" + top["level"].astype(int).astype(str)
    top["bpp_real"] *= 1.6
    top["psnr_rgb"] += 2.5
    eleven = pd.concat([extra, top]).assign(method="balle-qvrf-11", checkpoint_sha256="cd" * 32)
    rows = pd.concat([rows, eleven], ignore_index=True)
    caption = "smoke-scale model, N=8, trained 10 steps"
    for published in (False, True):
        figs, skipped = figures.readme_figures(rows, published=published, caption=caption, dataset="synthetic")
        assert set(figs) == {"VariableRate", "Balle", "moreLagrangeMultiplier"}
        assert set(skipped) == {"Minnen", "Cheng2020"} and "no measured rows" in skipped["Minnen"]
        svg = __import__("qvrf_bench.report.plots", fromlist=["to_svg"]).to_svg(figs["Balle"])
        assert "(measured)" in svg and caption in svg
        assert ("(published: bytedance/QRAF, kodak)" in svg) is published
    # Per-architecture captions: each figure states only its own architecture's training.
    figs, _ = figures.readme_figures(rows, caption={"balle": "balle at N=8", "cheng2020": "cheng at N=12"})
    svg = __import__("qvrf_bench.report.plots", fromlist=["to_svg"]).to_svg(figs["Balle"])
    assert "balle: balle at N=8" in svg and "cheng at N=12" not in svg
    with pytest.raises(Exception, match="no QVRF rows"):
        figures.variable_rate(rows.loc[rows["kind"] == "fixed"])


def test_cli(tmp_path, capsys):
    from qvrf_bench.cli import main

    runs = make_runs(tmp_path, n_images=2, n_continuous=3)
    out = tmp_path / "r" / "index.html"
    argv = ["report", *map(str, runs), "-o", str(out), "--title", "T <b>", "--bootstrap", "0"]
    assert main(argv + ["--figures", str(tmp_path / "figs")]) == 0
    text = out.read_text(encoding="utf-8")
    assert "<title>T &lt;b&gt;</title>" in text
    assert (tmp_path / "figs" / "rd-balle.png").is_file() and (tmp_path / "figs" / "rd-balle.svg").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "-o", str(tmp_path / "x.html")]) == 2
    assert "no result rows" in capsys.readouterr().err
    assert main(["report", str(runs[0]), "-o", str(tmp_path / "x.html"), "--anchor", "nope/x/y"]) == 2
    assert "unknown anchor" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# The committed example
# ----------------------------------------------------------------------------------------------


def make_example(folder: Path) -> Path:
    """reports/example/index.html from synthetic data (6 images, a 16-point sweep)."""
    import shutil
    import tempfile

    from qvrf_bench.report import render_report

    tmp = Path(tempfile.gettempdir()) / "qvrf-bench-example"  # a stable name: it shows in the provenance
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        runs = make_runs(tmp, device="synthetic data (no measurement)", n_images=6, n_continuous=16)
        return render_report(
            runs,
            Path(folder) / "index.html",
            anchors=["qvrf/kodak/hyper+qvrf", "compressai/kodak/bmshj2018-hyperprior-mse-cuda"],
            title="Example report (SYNTHETIC data, not a measurement)",
            n_boot=200,
            command=["python", "tests/report/test_report.py", "--example", str(folder)],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--example":
        print(make_example(Path(sys.argv[2])))
    else:
        sys.exit("usage: python tests/report/test_report.py --example FOLDER")


def test_bd_against_another_test_set_only_when_asked_and_low_overlap_uncoloured(tmp_path):
    """Measured on 'synthetic-images', published on Kodak: no BD pair unless cross_dataset; and a
    pair whose overlap is below the threshold shows no number and no win/loss colour."""
    from qvrf_bench.report import figures as F
    from qvrf_bench.report.render import bd_rows, build_context, load_runs, same_dataset

    rows, infos = load_runs(make_runs(tmp_path))
    anchors = F.load_published(["compressai/kodak/bmshj2018-hyperprior-mse-cuda"])
    ctx = build_context(rows, infos, anchors=anchors, n_boot=0)
    anchors_in_bd = {r["anchor"] for rs in ctx["bd"].values() for r in rs}
    assert "compressai/kodak/bmshj2018-hyperprior-mse-cuda" not in anchors_in_bd
    # the run's own classical codec is an anchor for every learned curve (the fixed set included)
    vs_jpeg = {r["test"] for rs in ctx["bd"].values() for r in rs if r["anchor"] == "jpeg"}
    assert "run:fixed:balle" in vs_jpeg and any("qvrf" in t for t in vs_jpeg)
    assert any("no BD-rate between different test sets" in n for n in ctx["bd_notes"])
    cross = build_context(rows, infos, anchors=anchors, n_boot=0, cross_dataset=True)
    assert "compressai/kodak/bmshj2018-hyperprior-mse-cuda" in {r["anchor"] for rs in cross["bd"].values() for r in rs}
    assert same_dataset("Kodak", "kodak") and not same_dataset("held-out sample photos", "kodak")
    assert not same_dataset(None, "kodak")

    import pandas as pd

    from qvrf_bench.analysis import rd

    table = pd.DataFrame([{c: 0 for c in rd.TABLE_COLUMNS} | {"test": "t", "anchor": "a", "bd_rate_pct": -96.17,
                          "bd_quality_db": 1.0, "overlap_pct": 5.0, "ci_low_pct": float("nan"),
                          "ci_high_pct": float("nan")}])  # fmt: skip
    (row,) = bd_rows(table)
    assert row["bd_rate"] == "insufficient overlap (5 %)" and row["better"] is None
    assert "96" not in row["bd_rate"]


def test_a_method_of_the_contract_is_reported_as_qvrf_is(tmp_path):
    """A user's variable-rate method (kind "variable") gets what a QVRF model gets: a levels-only
    curve, a panel in the levels figure, levels-only per-image tables, its matched-rate table, the
    variable-rate style in the RD figure, and a BD-rate against QVRF as well as the anchors."""
    import pandas as pd

    from qvrf_bench import analysis
    from qvrf_bench.report import figures as F
    from qvrf_bench.report import render, render_report
    from qvrf_bench.results.store import ResultStore

    fixed, other = synthetic_rows(n_images=2, n_continuous=4, evil=False)
    mine = [dict(r, method="my-method", kind="variable", gain=None, checkpoint_sha256="ef" * 32,
                 rate_point=r["rate_point"].replace("gain=", "t="), psnr_rgb=r["psnr_rgb"] + 0.3)
            for r in other if r["method"] == "balle-qvrf" and not r["error"]]  # fmt: skip
    targets = [dict(r, rate_point="target=0.5", target_bpp=0.5, level=None, bpp_real=0.5 + 0.01 * i)
               for i, r in enumerate(x for x in mine if x["rate_point"] == "level=4")]  # fmt: skip
    rows = pd.DataFrame(fixed + other + mine + targets)
    m = F.measure(rows)
    series = F.method_series(m, "my-method")
    assert series.role == "variable" and "s=0" in series.notes and not series.discrete.all()
    tests, fixed_curves = analysis.test_curves(m.points, rows)
    assert {"my-method", "my-method [levels]"} <= {t.name for t in tests}
    pairs = {(p.test.name, p.anchor.name) for p in analysis.default_pairs(tests, fixed_curves)[0]}
    assert {("my-method", "balle-qvrf"), ("my-method [levels]", "run:fixed:balle"), ("my-method", "jpeg")} <= pairs
    per_image = {p["name"]: p for p in render.per_image_results(m)}
    assert "discrete levels only" in per_image["my-method"]["note"]
    matched = render.matched_comparisons(rows, m)
    assert {"my-method"} == {t["test"] for t in matched} and {t["other"] for t in matched} >= {"run:fixed:balle"}

    store = ResultStore(tmp_path / "run")
    prov = {"qvrf_bench_version": "0.1.0", "torch_version": "2.14.1", "compressai_version": "1.2.8",
            "python_version": "3.11", "device": "cpu (synthetic test data)", "platform": "synthetic"}  # fmt: skip
    store.start(["qvrf-bench", "sweep"], {"dataset": {"name": "synthetic-images", "images": 2, "sha256": "0" * 64}},
                prov=prov)  # fmt: skip
    created = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    store.append([{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))} | {"created_utc": created}
                  for r in rows.to_dict("records")])  # fmt: skip
    text = render_report([store.run_dir], tmp_path / "out.html", n_boot=0).read_text(encoding="utf-8")
    levels = text.split('<section id="levels">')[1].split("</section>")[0]
    assert "my-method: levels" in levels and "balle-qvrf: levels" in levels
    bd = text.split('<section id="bd">')[1].split("</section>")[0]
    assert "my-method [levels]" in bd


def test_the_report_opens_with_the_result(report):
    """'At a glance' comes first and holds the QVRF-vs-its-anchors numbers of the BD table (section 5),
    with the per-band BD-rates."""
    _, text = report
    glance = text.index('<section id="glance">')
    assert glance < text.index('<section id="measured">')
    part = text[glance : text.index("</section>", glance)]
    assert "Balle (bmshj2018-hyperprior)" in part and "vs its fixed-rate anchors" in part
    bd = text[text.index('<section id="bd">') :]
    row = re.search(
        r'<td class="name">balle-qvrf \[levels\]</td><td class="name">run:fixed:balle</td><td class="num[^"]*">([^<]+)</td>',
        bd,
    )
    assert row, "the [levels] vs anchors row of the BD table"
    assert re.search(
        r'<td class="name glance">balle-qvrf \[levels\]</td><td class="num[^"]*">' + re.escape(row.group(1)), part
    )
    assert "low " in part and "high " in part  # the bands of the anchor comparison
    assert "by rate band" in bd
