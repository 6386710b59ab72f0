"""nox sessions: tests, lint, reproduce_figures (the main job), train_zoo, gpu_check, bench.

The sessions run in the Python environment nox itself was installed into (``venv_backend="none"``):
qvrf-bench pins torch, and a second copy of it in a nox-made virtualenv would cost ~6 GB and
minutes per session. Install once (README), then ``.venv/bin/nox -s <session>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
PY = sys.executable


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite (the same command CI runs)."""
    session.run(PY, "-m", "pytest", *session.posargs)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff check + format check + the import contracts (pyproject.toml [tool.importlinter])."""
    session.run(PY, "-m", "ruff", "check", ".")
    session.run(PY, "-m", "ruff", "format", "--check", ".")
    session.run(str(Path(PY).with_name("lint-imports")))  # the venv's console script, beside python


@nox.session(venv_backend="none")
def reproduce_figures(session: nox.Session) -> None:
    """The QVRF README figures, the BD tables and the HTML report, measured for real.

    With no arguments: the whole pipeline at smoke scale on sample photos shipped in installed
    packages (CPU, ~8 min). Pass options through, e.g.
    ``nox -s reproduce_figures -- --dataset /data/train --test-set /data/kodak --preset paper``.
    """
    session.run(PY, "-m", "qvrf_bench.pipeline", *session.posargs)


@nox.session(venv_backend="none")
def gpu_check(session: nox.Session) -> None:
    """The prepared CUDA check (bench/gpu_check.py): CUDA tests, training steps, both engines on CUDA,
    encode on CUDA / decode on CPU; one JSON summary. ~8 min on one GPU; without CUDA it says so in
    one line, skips those parts and runs the CPU stand-ins. Extra options go to the script."""
    session.run(PY, "bench/gpu_check.py", *session.posargs)


@nox.session(venv_backend="none")
def train_zoo(session: nox.Session) -> None:
    """Retrain the shipped model zoo from scratch with its recorded commands, then pack it.

    ``nox -s train_zoo -- --dataset DIR`` with DIR = the 500 BSDS500 photos the zoo was trained on
    (any photo folder works; the manifest records its checksum). Resumable; about 14 CPU-hours
    (7-8 hours on 2 cores; README "Model zoo"). Extra options go to ``qvrf-bench zoo train``,
    e.g. ``--archs balle``. The packed files replace qvrf_bench/data/zoo (check ``git diff``).
    """
    args = list(session.posargs)
    if "--dataset" not in args:
        session.error("give the training photos: nox -s train_zoo -- --dataset DIR")
    data = args[args.index("--dataset") + 1]
    session.run(PY, "-m", "qvrf_bench", "zoo", "train", *args)
    archs = args[args.index("--archs") + 1] if "--archs" in args else "balle,minnen,cheng2020"
    session.run(PY, "-m", "qvrf_bench", "zoo", "pack", "--dataset", data, "--archs", archs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Speed benchmarks (ratios measured in one run): bench/sweep_speed.py."""
    session.run(PY, "bench/sweep_speed.py", *session.posargs)
