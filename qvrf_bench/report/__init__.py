"""The HTML report and the figures.

* :func:`render_report` (run folders -> one self-contained HTML file) and its parts
  :func:`load_runs`, :func:`build_context`, :func:`render_html` (:mod:`.render`);
* :mod:`.plots`: matplotlib building blocks, :func:`plots.to_svg` (inline SVG) and
  :func:`plots.save` (PNG + SVG for papers);
* :mod:`.figures`: the five QVRF README figures (:func:`figures.variable_rate`,
  :func:`figures.qvrf_vs_anchors`, :func:`figures.more_lagrange`, :func:`figures.readme_figures`).
"""

from qvrf_bench.report import figures, plots
from qvrf_bench.report.render import build_context, load_runs, render_html, render_report, save_figures

__all__ = ["build_context", "figures", "load_runs", "plots", "render_html", "render_report", "save_figures"]
