"""The report in a real headless Chromium: it renders, the plots are visible, the console is clean.

Skips when Chromium is absent (Debian: ``apt-get install -y chromium``; or set QVRF_CHROMIUM).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags that keep a headless run offline, quiet and fast (no first-run UI, no updates, no sync).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
WIDTH, HEIGHT = 1280, 9000


def chromium() -> str:
    path = os.environ.get("QVRF_CHROMIUM") or next(filter(None, map(shutil.which, CANDIDATES)), None)
    if not path:
        pytest.skip("headless Chromium not found (apt-get install -y chromium, or set QVRF_CHROMIUM)")
    return path


def _helpers():
    # The synthetic run lives in test_report.py; tests/ is not a package (importlib mode).
    spec = importlib.util.spec_from_file_location("_report_helpers", Path(__file__).with_name("test_report.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp)})


def console_problems(log: str) -> list[str]:
    """Console output of the page: Chromium logs every console message (console.error included, at
    INFO level) as "...:CONSOLE:<line>] ..." and uncaught exceptions as "Uncaught ...". The report's
    one script logs nothing, so any such line is a problem."""
    return [line for line in log.splitlines() if ":CONSOLE" in line or "CONSOLE(" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    browser = chromium()
    from qvrf_bench.report import render_report

    tmp = tmp_path_factory.mktemp("browser")
    runs = _helpers().make_runs(tmp / "runs", n_images=3, n_continuous=6)
    html = render_report(runs, tmp / "report" / "index.html", anchors=["qvrf/kodak/hyper+qvrf"], n_boot=20)
    shot = tmp / "shot.png"
    res = _run(browser, tmp, f"--screenshot={shot}", "--dump-dom", html.resolve().as_uri())
    if not shot.is_file() or res.returncode != 0:
        pytest.fail(f"chromium failed (rc {res.returncode}): {res.stderr[-2000:]}")
    return {"shot": shot, "dom": res.stdout, "log": res.stderr, "html": html, "browser": browser, "tmp": tmp}


def test_console_is_clean(page):
    problems = console_problems(page["log"])
    assert not problems, "\n".join(problems)
    assert "net::ERR" not in page["log"]  # the page asked for nothing over the network


def test_console_check_catches_errors(page):
    # The check above is only worth something if this Chromium reports console errors as parsed.
    bad = page["tmp"] / "bad.html"
    bad.write_text('<html><body><script>console.error("boom"); missingFunction();</script></body></html>')
    res = _run(page["browser"], page["tmp"], "--dump-dom", bad.resolve().as_uri())
    problems = console_problems(res.stderr)
    assert any("boom" in p for p in problems) and any("Uncaught" in p for p in problems), res.stderr[-2000:]


def test_dom_has_visible_plots(page):
    dom = page["dom"]
    assert dom.lower().count("<script") == 1
    svgs = re.findall(r'<svg class="plot" viewBox="0 0 ([\d.]+) ([\d.]+)"', dom)
    assert len(svgs) == 6  # RD for PSNR and for MS-SSIM, levels, gain, per-image BD, timing
    assert all(float(w) > 100 and float(h) > 100 for w, h in svgs)
    assert dom.count("<text") > 100  # axis labels, ticks, legends are real text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_script_ran(page):
    # the DOM after the script: points carry their text as data-tip (the <title> moved there), are
    # focusable, the metric switch shows and the second metric's figure is hidden
    dom = page["dom"]
    assert dom.count('tabindex="0"') == dom.count("data-tip=") > 40 and "</title></use>" not in dom
    assert '<p class="switch" id="metric-switch">' in dom
    assert re.search(r'<figure id="fig-rd-1" class="plot rd" data-metric="ms-ssim" hidden="">', dom)


PROBE = """addEventListener('load', () => {
  const figs = [...document.querySelectorAll('figure.rd')];
  const fig = figs.find(f => !f.hidden), u = fig.querySelector('use[data-tip]');
  u.dispatchEvent(new MouseEvent('mouseenter'));
  const tip = document.getElementById('tip'), box = tip.getBoundingClientRect(), at = u.getBoundingClientRect();
  const shown = !tip.hidden && tip.textContent === u.getAttribute('data-tip') && box.width > 50
    && Math.abs(box.top - at.top) < 20;
  u.dispatchEvent(new MouseEvent('mouseleave'));
  const left = tip.hidden;
  const leg = fig.querySelector('g.qs-leg'), k = leg.getAttribute('data-series');
  const parts = () => [...fig.querySelectorAll('g[data-series="' + k + '"]:not(.qs-leg)')];
  leg.dispatchEvent(new MouseEvent('click'));
  const gone = parts().length > 0 && parts().every(g => getComputedStyle(g).display === 'none')
    && getComputedStyle(leg).opacity < 0.5;
  leg.dispatchEvent(new MouseEvent('click'));
  const back = parts().every(g => getComputedStyle(g).display !== 'none');
  document.querySelector('#metric-switch button[data-metric="ms-ssim"]').click();
  const other = document.querySelector('figure.rd[data-metric="ms-ssim"]');
  const switched = fig.hidden && !other.hidden && other.getBoundingClientRect().height > 100;
  document.title = 'PROBE:' + [figs.length, shown, left, gone, back, switched].join(',');
});"""


def test_hover_legend_and_metric_switch(page):
    """The page's own handlers, driven by events in the browser: a hover shows the point's text next
    to it and leaving hides it; a legend click hides that series (and a second shows it); the metric
    switch shows the other metric's figure."""
    probe = page["tmp"] / "probe.html"
    probe.write_text(page["html"].read_text().replace("</body>", f"<script>{PROBE}</script></body>"))
    res = _run(page["browser"], page["tmp"], "--virtual-time-budget=3000", "--dump-dom", probe.resolve().as_uri())
    title = re.search(r"<title>PROBE:([^<]*)</title>", res.stdout)
    assert title, res.stderr[-2000:]
    assert title.group(1) == "2,true,true,true,true,true"


def test_screenshot_is_not_blank(page):
    import numpy as np
    from PIL import Image

    full = np.asarray(Image.open(page["shot"]).convert("RGB"))
    assert full.shape == (HEIGHT, WIDTH, 3)
    img = full[::2, ::2].astype(np.int32)  # every other pixel is enough and 4x cheaper
    codes = img[..., 0] * 65536 + img[..., 1] * 256 + img[..., 2]
    assert np.unique(codes).size > 200  # text, lines and markers in many colours, not a blank page

    def present(rgb) -> bool:
        return bool((np.abs(img - np.array(rgb)).max(axis=2) < 30).sum() > 50)

    # The plot colours are on the page: the QVRF blue and the VBR green of the measured curves.
    assert present((0x1F, 0x77, 0xB4)) and present((0x2C, 0xA0, 0x2C))
    # Content reaches far down the page (figures and tables took their space).
    dark_rows = np.flatnonzero((img.min(axis=2) < 200).any(axis=1))
    assert dark_rows.size and 2 * dark_rows.max() > 3000


def test_matched_rate_crops_render(tmp_path):
    """A real sweep with --target-bpp and --crops: the side-by-side crops decode in the browser (every
    <img> of the section loads with its real size) and the page stays script-free."""
    import torch
    from PIL import Image
    from skimage import data

    from qvrf_bench.models import create
    from qvrf_bench.models.checkpoints import save_checkpoint
    from qvrf_bench.report import render_report
    from qvrf_bench.sweep.run import SweepConfig, run_sweep

    browser = chromium()
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "q.pt", create("balle", "qvrf", N=8, M=12))
    save_checkpoint(tmp_path / "f.pt", create("balle", "fixed", N=8, M=12, lmbda=0.0483))
    ds = tmp_path / "ds"
    ds.mkdir()
    Image.fromarray(data.astronaut()[:192, :256]).save(ds / "a.png")
    run_sweep(SweepConfig(dataset=ds, out=tmp_path / "run", checkpoints=[tmp_path / "q.pt", tmp_path / "f.pt"],
                          factors="none", peers="jpeg", device="cpu", progress=False, threads=1,
                          target_bpp="0.3,1", crops=1))  # fmt: skip
    html = render_report([tmp_path / "run"], tmp_path / "report.html", n_boot=0).read_text()
    n = html.count('<div class="tile"><img src="data:image/png;base64,')
    assert n >= 3
    # the check runs in a copy with a probe script
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>addEventListener('load', () => { document.title = 'CROPS:' + "
                     "[...document.querySelectorAll('figure.crops img')].map(i => i.complete && i.naturalWidth === 128 "
                     "&& i.getBoundingClientRect().width === 256 ? 1 : 0).join(''); });</script></body>"))  # fmt: skip
    res = _run(browser, tmp_path, "--virtual-time-budget=3000", "--dump-dom", probe.resolve().as_uri())
    title = re.search(r"<title>CROPS:([01]*)</title>", res.stdout)
    assert title, res.stderr[-2000:]
    assert title.group(1) == "1" * n
