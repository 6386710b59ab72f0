"""Sources of an analysis: per-image rows of a run, or RD curves from files and anchor names.

A source is one of
- a run folder: every ``*.parquet`` below it (hidden files/folders and ``*.tmp`` ignored), re-measured
  rows reduced to the latest one per row key;
- a ``.parquet`` file: the same, one file;
- a ``.csv`` file: columns bpp,psnr[,ms_ssim][,label][,method] (one curve, or one per method);
- a ``.json``/``.txt`` file: a CompressAI result JSON, a QVRF RD file or a qvrf-bench anchor file;
- an anchor name (e.g. ``qvrf/kodak/hyper+qvrf``): the published curve itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qvrf_bench.analysis import rd
from qvrf_bench.analysis.anchors import from_csv_text, import_curve_file, load_anchor, slug
from qvrf_bench.errors import QVRFError
from qvrf_bench.results.store import MANIFEST_NAME, read_part


@dataclass
class Source:
    points: pd.DataFrame  # method, rate_point, bpp_real, psnr_rgb, ms_ssim_rgb, ms_ssim_db_rgb[, arch, kind, level]
    rows: pd.DataFrame | None  # per-image rows (run folders and parquet) or None
    n_error_rows: int = 0
    notes: tuple[str, ...] = ()
    complexity: dict = field(default_factory=dict)  # method -> run.json's complexity (methods/complexity.py)


def parquet_files(folder: Path) -> list[Path]:
    """*.parquet below ``folder``, skipping hidden files/folders and temporary files."""
    out = []
    for p in sorted(folder.rglob("*.parquet")):
        rel = p.relative_to(folder).parts
        if any(part.startswith(".") for part in rel) or p.name.endswith(".tmp"):
            continue
        out.append(p)
    return out


def read_rows(path: Path) -> tuple[pd.DataFrame, int]:
    """Per-image rows of every parquet file of a run folder (or one file), re-measured rows deduplicated.

    Returns (rows, number of superseded rows dropped).
    """
    files = parquet_files(path) if path.is_dir() else [path]
    if not files:
        raise QVRFError(f"{path}: no .parquet files found")

    # the store's one schema check: columns may be missing here (a table a user assembled), but
    # those present must be the result schema's, of its types (report and resume read the same way)
    frames = [read_part(f, partial=True).to_pandas() for f in files]
    rows = pd.concat(frames, ignore_index=True)
    if {"created_utc", "checkpoint_sha256", "image_sha256"} <= set(rows.columns):
        n = len(rows)
        rows = latest_per_row_key(rows)
        return rows, n - len(rows)
    return rows, 0


def latest_per_row_key(rows: pd.DataFrame) -> pd.DataFrame:
    """The latest row per result-schema row key (store.ROW_KEY: method, checkpoint_sha256, rate_point,
    image_sha256 or image), by created_utc, on ties the later row.

    The store appends a re-measured row instead of rewriting it; averaging both would bias the
    curve. Same rule as ResultStore.read, restated on a DataFrame because a folder may hold parts of
    several runs.
    """
    work = rows.reset_index(drop=True)
    image_id = work["image_sha256"].fillna("").astype(str)
    image_id = image_id.where(image_id != "", work["image"].astype(str))
    key = work[["method", "checkpoint_sha256", "rate_point"]].fillna("").astype(str).assign(_image=image_id)
    # Stable sort by time keeps file order among equal times, so "last" is the later row on ties.
    order = work.sort_values("created_utc", kind="stable").index
    latest = order[~key.loc[order].duplicated(keep="last").to_numpy()]
    return work.loc[sorted(latest)].reset_index(drop=True)


def points_from_anchor(anchor, method: str) -> pd.DataFrame:
    """An Anchor's points as an aggregated-points frame named ``method``."""
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


def curve_file(path: Path, name: str | None):
    """(display name, Anchor) of a curve file; the anchor's name is a placeholder."""

    anchor = import_curve_file(path, name=f"user/file/{slug(path.stem)}", dataset="unknown")
    return name or path.stem, anchor


def from_rows(rows: pd.DataFrame, n_superseded: int = 0) -> Source:
    """A source of per-image rows (error rows left out of the points, counted in the notes)."""

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
    return Source(agg.points, agg.per_image, agg.n_error_rows, tuple(notes))


def run_complexity(folder: Path | str) -> dict:
    """{method: its parameters and kMAC/px} from every run.json at or below ``folder`` (a run, its
    shards, or a folder of runs), as the sweep recorded them; {} when none holds any."""
    out: dict = {}
    for p in sorted(Path(folder).rglob(MANIFEST_NAME)):
        try:
            found = json.loads(p.read_text(encoding="utf-8")).get("complexity") or {}
        except (OSError, ValueError, AttributeError):
            continue  # the run folder's reader reports broken manifests; this is an extra column
        if isinstance(found, dict):
            out.update({k: v for k, v in found.items() if isinstance(v, dict) and "params" in v})
    return out


def read_source(path: Path | str, name: str | None = None) -> Source:
    """The source at ``path`` (see the module docstring); ``name`` names a single-curve file's curve."""
    path = Path(path)
    if not path.exists():
        if str(path).count("/") == 2 and not path.suffix:  # looks like an anchor name
            anchor = load_anchor(str(path))
            return Source(points_from_anchor(anchor, name or anchor.name), None)
        raise QVRFError(f"{path}: no such file or folder (nor an anchor name)")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".parquet":
        src = from_rows(*read_rows(path))
        src.complexity = run_complexity(path if path.is_dir() else path.parent)
        return src
    if suffix == ".csv":
        df = pd.read_csv(path)
        cols = {c.strip().lower(): c for c in df.columns}
        if "method" in cols:
            parts = []
            for method, grp in df.groupby(df[cols["method"]].astype(str), sort=True):
                anchor = from_csv_text(
                    grp.drop(columns=[cols["method"]]).to_csv(index=False),
                    name="user/file/x",
                    dataset="unknown",
                    kind="fixed-rate-set",
                    origin=f"{path} (method {method})",
                )
                parts.append(points_from_anchor(anchor, method))
            return Source(pd.concat(parts, ignore_index=True), None)
    if suffix in (".csv", ".json", ".txt"):
        display, anchor = curve_file(path, name)
        return Source(points_from_anchor(anchor, display), None)
    raise QVRFError(f"{path}: a source must be a run folder, .parquet, .csv or .json")
