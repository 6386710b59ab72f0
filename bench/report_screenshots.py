"""Screenshots of a report in headless Chromium: its first screen, and a hover on an RD point (the
page's own tooltip handler, driven by a mouseenter event, as a pointer would), with one series hidden
through its legend entry. Not a test: pictures for a reviewer.

    .venv/bin/python bench/report_screenshots.py reports/reproduce/index.html --out bench/results/shots

Writes first-screen.png (1280 x 900) and hover.png (1280 x 900, scrolled to the first RD figure).
Chromium: the first of chromium, chromium-browser, google-chrome on PATH, or $QVRF_CHROMIUM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars")  # fmt: skip

# bring the first RD figure to the top (what precedes it is hidden: headless screenshots do not
# follow scrolling), hide its third series by a legend click, hover a point a third of the way along
PROBE = """<script>addEventListener('load', () => {
  const fig = document.querySelector('figure.rd:not([hidden])');
  for (const el of document.querySelectorAll('header, section')) { if (!el.contains(fig)) el.style.display = 'none'; }
  for (const el of fig.parentNode.children) { if (el !== fig) el.style.display = 'none'; }
  const legs = fig.querySelectorAll('g.qs-leg');
  if (legs.length > 2) legs[2].dispatchEvent(new MouseEvent('click'));
  const pts = [...fig.querySelectorAll('use[data-tip]')].filter(u => u.closest('g.qs-pts'));
  pts[Math.floor(pts.length / 3)].dispatchEvent(new MouseEvent('mouseenter'));
});</script></body>"""


def shoot(browser: str, page: Path, png: Path, tmp: Path, size=(1280, 900)) -> None:
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--window-size={size[0]},{size[1]}",
           "--virtual-time-budget=4000", f"--screenshot={png}", page.resolve().as_uri()]  # fmt: skip
    subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp)}, check=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/results/shots"))
    args = ap.parse_args(argv)
    browser = os.environ.get("QVRF_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if not browser:
        raise SystemExit("no Chromium found (set QVRF_CHROMIUM)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        shoot(browser, args.report, args.out / "first-screen.png", tmp)
        probe = tmp / "probe.html"
        probe.write_text(args.report.read_text(encoding="utf-8").replace("</body>", PROBE, 1), encoding="utf-8")
        shoot(browser, probe, args.out / "hover.png", tmp)
    print(f"wrote {args.out / 'first-screen.png'} and {args.out / 'hover.png'}")


if __name__ == "__main__":
    main()
