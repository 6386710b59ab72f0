"""The run folder's logs: per-step CSV, validation CSV, and a plain-text event log.

CSV files are appended and flushed row by row (a kill loses at most the row being written). On a
resume from a checkpoint at step k, rows with step > k -- written after that checkpoint by the
interrupted process -- are dropped first, so the log never holds a step twice.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

STEP_COLUMNS = ("step", "epoch", "stage", "level", "lmbda", "gain", "loss", "mse", "bpp", "psnr", "aux_loss",
                "lr", "grad_norm", "elapsed_s")  # fmt: skip
VAL_COLUMNS = ("step", "stage", "level", "lmbda", "gain", "loss", "mse", "bpp_est", "psnr", "total_loss", "lr",
               "is_best")  # fmt: skip


def step_columns(knob: str = "gain") -> tuple[str, ...]:
    """train_log.csv's columns: the knob's column is named by the method (QVRF: ``gain``)."""
    return tuple(knob if c == "gain" else c for c in STEP_COLUMNS)


def val_columns(knob: str = "gain") -> tuple[str, ...]:
    return tuple(knob if c == "gain" else c for c in VAL_COLUMNS)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def truncate_csv(path: Path, max_step: int) -> int:
    """Keep the header and the rows with step <= max_step (atomic rewrite); returns rows dropped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    col = header.index("step")
    kept = []
    for r in body:
        try:
            if len(r) == len(header) and int(float(r[col])) <= max_step:
                kept.append(r)
        except ValueError:  # a half-written last line
            pass
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(kept)
    os.replace(tmp, path)
    return len(body) - len(kept)


class CsvLog:
    """Append-only CSV with a fixed header. ``resume_step=None`` starts a fresh file."""

    def __init__(self, path: Path, columns: tuple[str, ...], resume_step: int | None):
        self.path = Path(path)
        self.columns = columns
        fresh = resume_step is None or not self.path.exists() or self.path.stat().st_size == 0
        if fresh:
            self._f = open(self.path, "w", newline="")
            csv.writer(self._f).writerow(columns)
            self._f.flush()
        else:
            truncate_csv(self.path, resume_step)
            self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)

    def write(self, row: dict) -> None:
        self._w.writerow([_fmt(row.get(c, "")) for c in self.columns])
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class EventLog:
    """Notices (skipped files, resume, stop reasons): appended to ``events.log`` and always printed
    on stderr as ``notice: ...``, with or without a progress bar. ``echo`` says whether a tqdm bar
    is live (the training loop passes its ``progress``): then notices go through ``tqdm.write`` so
    they do not break the bar; without one they are printed plainly (``--no-progress`` hides the
    bar, never the notices)."""

    def __init__(self, path: Path, echo: bool = True):
        self.path = Path(path)
        self.echo = echo  # a progress bar is live: write through tqdm
        self.seen: set[str] = set()

    def __call__(self, msg: str, once: bool = False) -> None:
        if once:
            if msg in self.seen:
                return
            self.seen.add(msg)
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
        if self.echo:
            from tqdm import tqdm

            tqdm.write(f"notice: {msg}", file=sys.stderr)
        else:
            print(f"notice: {msg}", file=sys.stderr, flush=True)
