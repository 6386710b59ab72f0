"""Published RD curves ("anchors"): schema, registry, importers and exporter.

One JSON file per curve. The packaged curves live in ``qvrf_bench/data/anchors/<source>/<dataset>/
<model>.json`` (the single source of truth; the repo's ``anchors/`` folder holds the README, the
``build.py`` that regenerates them from the published files, and a symlink to them). User curves live
in ``./anchors/user`` (the default of ``qvrf-bench anchors import``), in every folder of the
``QVRF_BENCH_ANCHORS`` environment variable (``os.pathsep``-separated), or in folders passed as
``dirs``.

Names are ``<source>/<dataset>/<model>``, lower case, e.g. ``compressai/kodak/bmshj2018-hyperprior-
mse-cuda``, ``qvrf/kodak/hyper+qvrf``, ``user/kodak/my-model``. A curve's identity is the ``name``
field inside its file, not the file's path. Packaged names win over user files with the same name.

Schema (``"schema": "qvrf-bench/anchor/1"``; anchors/README.md documents every field)::

    {"schema", "name", "label", "dataset", "kind": "fixed-rate-set" | "variable-rate" | "classical",
     "arch", "trained_for": "mse" | "ms-ssim" | null,
     "metrics": {"psnr_rgb": "float" | "8bit" | "unknown" | null,
                 "ms_ssim_rgb": "float" | "8bit" | "unknown" | null, "averaging": str},
     "bpp_real": true | false | null, "device": "cpu" | "cuda" | null, "hardware": str | null,
     "source": {"repo", "path", "commit", "url", "original_name", "original_description"},
     "citation": str | null, "notes": str | null,
     "points": [{"label", "bpp", "psnr_rgb", "ms_ssim_rgb", "ms_ssim_db_rgb", "enc_s", "dec_s"}, ...]}

Unknown values are ``null``. ``ms_ssim_db_rgb`` = -10*log10(1 - ms_ssim_rgb) when MS-SSIM is known.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from qvrf_bench.analysis import rd
from qvrf_bench.errors import QVRFError
from qvrf_bench.metrics.table import get_metric

SCHEMA = "qvrf-bench/anchor/1"
KINDS = ("fixed-rate-set", "variable-rate", "classical")
RECONSTRUCTIONS = ("float", "8bit", "unknown")
ENV_DIRS = "QVRF_BENCH_ANCHORS"
DEFAULT_USER_DIR = Path("anchors") / "user"  # relative to the working directory
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+._-]*/[a-z0-9][a-z0-9+._-]*/[a-z0-9][a-z0-9+._-]*$")
_POINT_FIELDS = ("label", "bpp", "psnr_rgb", "ms_ssim_rgb", "ms_ssim_db_rgb", "enc_s", "dec_s")
# CompressAI result keys <-> our point fields.
_CAI_KEYS = {
    "bpp": "bpp",
    "psnr-rgb": "psnr_rgb",
    "ms-ssim-rgb": "ms_ssim_rgb",
    "ms-ssim-db-rgb": "ms_ssim_db_rgb",
    "encoding_time": "enc_s",
    "decoding_time": "dec_s",
}


class AnchorWarning(UserWarning):
    """A user anchor file that was skipped."""


# ----------------------------------------------------------------------------------------------
# Lenient JSON (QVRF's RD files have trailing commas)
# ----------------------------------------------------------------------------------------------


def strip_trailing_commas(text: str) -> str:
    """Remove commas that directly precede ``]`` or ``}`` (outside strings)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_str = False
    while i < n:
        ch = text[i]
        if in_str:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j >= n or text[j] not in "]}":
                out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def parse_lenient_json(text: str, origin: str = "<string>"):
    """``json.loads`` that tolerates trailing commas; errors become :class:`QVRFError` naming ``origin``."""
    try:
        return json.loads(strip_trailing_commas(text))
    except json.JSONDecodeError as exc:
        raise QVRFError(f"{origin}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


# ----------------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------------


def _opt_float(value, what: str, origin: str) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise QVRFError(f"{origin}: {what} is not a number: {value!r}") from None
    return None if math.isnan(x) else x


def ms_ssim_db(ms_ssim: float | None) -> float | None:
    if ms_ssim is None or ms_ssim >= 1.0:
        return None
    return -10.0 * math.log10(1.0 - ms_ssim)


@dataclass(frozen=True)
class AnchorPoint:
    label: str
    bpp: float
    psnr_rgb: float | None = None
    ms_ssim_rgb: float | None = None
    ms_ssim_db_rgb: float | None = None
    enc_s: float | None = None
    dec_s: float | None = None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in _POINT_FIELDS}

    @classmethod
    def from_dict(cls, d: dict, origin: str, index: int) -> AnchorPoint:
        if not isinstance(d, dict):
            raise QVRFError(f"{origin}: point {index} is not an object")
        where = f"point {index}"
        bpp = _opt_float(d.get("bpp"), f"{where} bpp", origin)
        if bpp is None or bpp <= 0:
            raise QVRFError(f"{origin}: {where} needs a positive bpp, got {d.get('bpp')!r}")
        vals = {k: _opt_float(d.get(k), f"{where} {k}", origin) for k in _POINT_FIELDS[2:]}
        if vals["ms_ssim_db_rgb"] is None:
            vals["ms_ssim_db_rgb"] = ms_ssim_db(vals["ms_ssim_rgb"])
        return cls(label=str(d.get("label") or f"p{index + 1}"), bpp=bpp, **vals)


@dataclass(frozen=True)
class Anchor:
    """A published (or user-supplied) RD curve. See the module docstring for the fields."""

    name: str
    dataset: str
    kind: str
    points: tuple[AnchorPoint, ...]
    label: str = ""
    arch: str | None = None
    trained_for: str | None = None
    metrics: dict = field(default_factory=lambda: {"psnr_rgb": "unknown", "ms_ssim_rgb": None})
    bpp_real: bool | None = None
    device: str | None = None
    hardware: str | None = None
    source: dict = field(default_factory=dict)
    citation: str | None = None
    notes: str | None = None
    path: Path | None = field(default=None, compare=False)  # where it was read from

    # -- views ---------------------------------------------------------------------------------
    @property
    def reconstruction(self) -> str:
        return self.metrics.get("psnr_rgb") or "unknown"

    def _values(self, attr: str) -> list[float]:
        return [getattr(p, attr) for p in self.points if getattr(p, attr) is not None]

    @property
    def bpp_range(self) -> tuple[float, float]:
        v = self._values("bpp")
        return (min(v), max(v))

    @property
    def psnr_range(self) -> tuple[float, float] | None:
        v = self._values("psnr_rgb")
        return (min(v), max(v)) if v else None

    def has_metric(self, metric: str) -> bool:
        attr = get_metric(metric).quality_column
        return attr in _POINT_FIELDS and bool(self._values(attr))

    def curve(self, metric: str = "psnr"):
        """The :class:`qvrf_bench.analysis.rd.Curve` of this anchor (points lacking the metric are skipped)."""

        spec = get_metric(metric)
        attr = spec.quality_column  # an anchor file carries PSNR-RGB and MS-SSIM-RGB (its schema)
        pts = [p for p in self.points if getattr(p, attr, None) is not None]
        if not pts:
            raise QVRFError(f"anchor {self.name!r} has no {spec.label} values")
        return rd.Curve(
            self.name, [p.bpp for p in pts], [getattr(p, attr) for p in pts], tuple(p.label for p in pts), metric
        )

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "label": self.label or self.name,
            "dataset": self.dataset,
            "kind": self.kind,
            "arch": self.arch,
            "trained_for": self.trained_for,
            "metrics": self.metrics,
            "bpp_real": self.bpp_real,
            "device": self.device,
            "hardware": self.hardware,
            "source": self.source,
            "citation": self.citation,
            "notes": self.notes,
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, d: dict, origin: str = "<anchor>", path: Path | None = None) -> Anchor:
        if not isinstance(d, dict):
            raise QVRFError(f"{origin}: an anchor must be a JSON object")
        if d.get("schema") != SCHEMA:
            raise QVRFError(f"{origin}: schema is {d.get('schema')!r}, expected {SCHEMA!r}")
        for key in ("name", "dataset", "kind", "points"):
            if not d.get(key):
                raise QVRFError(f"{origin}: missing {key!r}")
        name = str(d["name"])
        check_name(name, origin)
        if d["kind"] not in KINDS:
            raise QVRFError(f"{origin}: kind {d['kind']!r} is not one of {', '.join(KINDS)}")
        if not isinstance(d["points"], list):
            raise QVRFError(f"{origin}: points must be a list")
        points = tuple(AnchorPoint.from_dict(p, origin, i) for i, p in enumerate(d["points"]))
        metrics = dict(d.get("metrics") or {})
        for key in ("psnr_rgb", "ms_ssim_rgb"):
            if metrics.get(key) not in (*RECONSTRUCTIONS, None):
                raise QVRFError(f"{origin}: metrics.{key} must be one of {', '.join(RECONSTRUCTIONS)} or null")
        return cls(
            name=name,
            dataset=str(d["dataset"]),
            kind=str(d["kind"]),
            points=points,
            label=str(d.get("label") or name),
            arch=d.get("arch"),
            trained_for=d.get("trained_for"),
            metrics=metrics,
            bpp_real=d.get("bpp_real"),
            device=d.get("device"),
            hardware=d.get("hardware"),
            source=dict(d.get("source") or {}),
            citation=d.get("citation"),
            notes=d.get("notes"),
            path=path,
        )


def check_name(name: str, origin: str = "anchor name") -> str:
    if not NAME_RE.match(name):
        raise QVRFError(
            f"{origin}: {name!r} is not a valid anchor name (<source>/<dataset>/<model>, lower case, "
            "letters, digits and + . _ -)"
        )
    return name


def slug(text: str) -> str:
    """A name component: lower case, runs of spaces/underscores/slashes become '-'."""
    s = re.sub(r"[\s_/\\]+", "-", text.strip().lower())
    s = re.sub(r"[^a-z0-9+._-]", "", s).strip("-.")
    if not s:
        raise QVRFError(f"cannot make a name from {text!r}")
    return s


def dumps_anchor(anchor: Anchor) -> str:
    """Deterministic JSON: 2-space indent, one point per line (small diffs when numbers change)."""
    d = anchor.to_dict()
    points = d.pop("points")
    head = json.dumps(d, indent=2, ensure_ascii=False)
    lines = ",\n".join("    " + json.dumps(p, ensure_ascii=False) for p in points)
    return head[:-2] + ',\n  "points": [\n' + lines + "\n  ]\n}\n"


def read_anchor(path: str | Path) -> Anchor:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QVRFError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return Anchor.from_dict(parse_lenient_json(text, str(path)), str(path), path)


def write_anchor(anchor: Anchor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_anchor(anchor), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return path


# ----------------------------------------------------------------------------------------------
# Importers and exporter
# ----------------------------------------------------------------------------------------------


def from_compressai(
    data: dict,
    *,
    name: str,
    dataset: str,
    kind: str,
    labels: Sequence[str] | None = None,
    origin: str = "<compressai json>",
    **meta,
) -> Anchor:
    """An :class:`Anchor` from a parsed CompressAI result JSON (``{"name", "description", "results":
    {"bpp": [...], "psnr-rgb": [...], ...}}``; QVRF's RD files have the same layout).

    ``meta`` fills the other :class:`Anchor` fields (label, arch, metrics, device, source, ...).
    Point labels come from ``labels``, else from ``meta.qvrf_bench.labels`` (written by
    :func:`to_compressai`), else ``p1..pN``.
    """
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise QVRFError(f"{origin}: not a CompressAI result file (no 'results' object)")
    results = data["results"]
    if "bpp" not in results:
        raise QVRFError(f"{origin}: 'results' has no 'bpp' list")
    lists = {}
    for key, value in results.items():
        if key not in _CAI_KEYS:
            continue
        if not isinstance(value, list):
            raise QVRFError(f"{origin}: results.{key} is not a list")
        lists[_CAI_KEYS[key]] = value
    n = len(lists["bpp"])
    bad = [k for k, v in lists.items() if len(v) != n]
    if bad:
        raise QVRFError(f"{origin}: results lists differ in length ({', '.join(bad)} vs bpp: {n})")
    if n == 0:
        raise QVRFError(f"{origin}: no RD points")
    ours = (data.get("meta") or {}).get("qvrf_bench") or {}
    labels = list(labels) if labels is not None else list(ours.get("labels") or [])
    if labels and len(labels) != n:
        raise QVRFError(f"{origin}: {len(labels)} labels for {n} points")
    points = []
    for i in range(n):
        d = {k: v[i] for k, v in lists.items()}
        d["label"] = labels[i] if labels else f"p{i + 1}"
        points.append(AnchorPoint.from_dict(d, origin, i))
    if kind not in KINDS:
        raise QVRFError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    metrics = meta.pop("metrics", None) or {
        "psnr_rgb": "unknown" if "psnr_rgb" in lists else None,
        "ms_ssim_rgb": "unknown" if ("ms_ssim_rgb" in lists or "ms_ssim_db_rgb" in lists) else None,
        "averaging": "mean over images",
    }
    source = dict(meta.pop("source", None) or {})
    source.setdefault("original_name", data.get("name"))
    source.setdefault("original_description", data.get("description"))
    return Anchor(
        name=check_name(name, origin), dataset=dataset, kind=kind, points=tuple(points), metrics=metrics,
        source=source, **meta,
    )  # fmt: skip


def from_csv_text(text: str, *, name: str, dataset: str, kind: str, origin: str = "<csv>", **meta) -> Anchor:
    """An :class:`Anchor` from CSV with columns bpp, psnr[, ms_ssim][, label] (aliases: bpp_real,
    psnr_rgb, ms_ssim_rgb, ms_ssim_db / ms_ssim_db_rgb)."""
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}

    def col(*names):
        return next((cols[n] for n in names if n in cols), None)

    c_bpp, c_psnr = col("bpp", "bpp_real"), col(*get_metric("psnr").csv_names)
    c_ms, c_msdb = col(*get_metric("ms-ssim").csv_names), col("ms_ssim_db", "ms_ssim_db_rgb")
    c_label = col("label", "rate_point")
    if c_bpp is None or (c_psnr is None and c_ms is None and c_msdb is None):
        raise QVRFError(f"{origin}: a CSV curve needs columns bpp and psnr (and optionally ms_ssim)")
    points = []

    def get(row: dict, c: str | None):
        v = row.get(c) if c else None
        return None if v is None or str(v).strip() in ("", "nan", "NaN") else v

    for i, row in enumerate(reader):
        d = {
            "bpp": get(row, c_bpp),
            "psnr_rgb": get(row, c_psnr),
            "ms_ssim_rgb": get(row, c_ms),
            "ms_ssim_db_rgb": get(row, c_msdb),
        }
        d["label"] = get(row, c_label) or f"p{i + 1}"
        points.append(AnchorPoint.from_dict(d, origin, i))
    if not points:
        raise QVRFError(f"{origin}: no RD points")
    metrics = meta.pop("metrics", None) or {
        "psnr_rgb": "unknown" if c_psnr else None,
        "ms_ssim_rgb": "unknown" if (c_ms or c_msdb) else None,
        "averaging": "mean over images",
    }
    return Anchor(name=check_name(name, origin), dataset=dataset, kind=kind, points=tuple(points),
                  metrics=metrics, **meta)  # fmt: skip


def import_curve_file(path: str | Path, *, name: str, dataset: str, kind: str | None = None, **meta) -> Anchor:
    """Read a CompressAI result JSON, a QVRF RD txt (trailing commas), one of our anchor files or a
    CSV (bpp,psnr[,ms_ssim][,label]) into an :class:`Anchor` called ``name``.

    Metadata saved by :func:`to_compressai` (or in an anchor file) is kept; ``kind`` and ``meta``
    override it. ``kind`` defaults to ``fixed-rate-set`` for files that do not say.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QVRFError(f"{path}: cannot read ({exc.strerror or exc})") from None
    overrides = dict(meta, name=check_name(name, str(path)), dataset=dataset)
    if kind is not None:
        overrides["kind"] = kind
    if path.suffix.lower() == ".csv":
        overrides.setdefault("kind", "fixed-rate-set")
        overrides.setdefault("source", {"path": str(path)})
        return from_csv_text(text, origin=str(path), **overrides)
    data = parse_lenient_json(text, str(path))
    base = None
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        base = Anchor.from_dict(data, str(path), path)
    elif isinstance(data, dict):
        base = from_exported_compressai(data, str(path))
    if base is not None:
        if overrides.get("kind", base.kind) not in KINDS:
            raise QVRFError(f"kind {overrides['kind']!r} is not one of {', '.join(KINDS)}")
        return replace(base, path=None, **overrides)
    overrides.setdefault("kind", "fixed-rate-set")
    overrides.setdefault("source", {"path": str(path)})
    return from_compressai(data, origin=str(path), **overrides)


def to_compressai(anchor: Anchor) -> dict:
    """CompressAI's result JSON layout. A results list is written only when every point has the value
    (CompressAI's tools expect parallel lists of numbers); our metadata goes under ``meta.qvrf_bench``."""
    results: dict[str, list[float]] = {}
    for key, attr in _CAI_KEYS.items():
        values = [getattr(p, attr) for p in anchor.points]
        if attr == "ms_ssim_db_rgb" and all(p.ms_ssim_rgb is not None for p in anchor.points):
            continue  # derivable from ms-ssim-rgb; CompressAI files carry one or the other
        if all(v is not None for v in values):
            results[key] = values
    meta = {k: v for k, v in anchor.to_dict().items() if k not in ("points", "schema")}
    meta["labels"] = [p.label for p in anchor.points]
    return {
        "name": anchor.label or anchor.name,
        "description": (anchor.source or {}).get("original_description") or anchor.name,
        "meta": {"qvrf_bench": meta, "dataset": anchor.dataset},
        "results": results,
    }


def export_compressai(anchor: Anchor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_compressai(anchor), indent=2) + "\n", encoding="utf-8")
    return path


def from_exported_compressai(data: dict, origin: str = "<compressai json>") -> Anchor | None:
    """The anchor a :func:`to_compressai` file came from (full metadata), or None for other files."""
    ours = (data.get("meta") or {}).get("qvrf_bench") if isinstance(data, dict) else None
    if not ours or not ours.get("name"):
        return None
    meta = {k: v for k, v in ours.items() if k not in ("name", "dataset", "kind", "labels", "path")}
    return from_compressai(
        data, name=ours["name"], dataset=ours.get("dataset", "unknown"), kind=ours.get("kind", "fixed-rate-set"),
        labels=ours.get("labels"), origin=origin, **meta,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------


def packaged_dir() -> Path:
    """Folder of the curves shipped with the package (``qvrf_bench/data/anchors``)."""
    from importlib.resources import files

    return Path(str(files("qvrf_bench") / "data" / "anchors"))


def user_dirs(extra: Iterable[str | Path] | None = None) -> list[Path]:
    """Folders searched for user curves, in order: ``extra``, ``$QVRF_BENCH_ANCHORS``, ``./anchors/user``."""
    dirs = [Path(d) for d in (extra or [])]
    env = os.environ.get(ENV_DIRS, "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs.append(DEFAULT_USER_DIR)
    seen, out = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            out.append(d)
    return out


def _scan(root: Path, strict: bool = True) -> list[Anchor]:
    """Anchors in ``root``. ``strict=False`` (user folders) skips unreadable files with a warning, so
    that one bad user file does not hide every other curve."""
    out = []
    for p in sorted(root.rglob("*.json")):
        if p.name.startswith("."):
            continue
        try:
            out.append(read_anchor(p))
        except QVRFError as exc:
            if strict:
                raise
            warnings.warn(f"skipping {exc}", AnchorWarning, stacklevel=3)
    return out


@lru_cache(maxsize=1)
def _packaged() -> tuple[Anchor, ...]:
    root = packaged_dir()
    return tuple(_scan(root)) if root.is_dir() else ()


def list_anchors(
    dirs: Iterable[str | Path] | None = None, *, dataset: str | None = None, include_user: bool = True
) -> list[Anchor]:
    """All anchors (packaged first, then user folders), sorted by name; optionally of one dataset.

    A user file whose name is already taken is skipped (packaged names are stable references).
    """
    found: dict[str, Anchor] = {a.name: a for a in _packaged()}
    if include_user:
        for d in user_dirs(dirs):
            for a in _scan(d, strict=False):
                found.setdefault(a.name, a)
    out = sorted(found.values(), key=lambda a: a.name)
    if dataset:
        out = [a for a in out if a.dataset == dataset.lower()]
    return out


def anchor_names(dirs: Iterable[str | Path] | None = None) -> list[str]:
    return [a.name for a in list_anchors(dirs)]


def close_names(name: str, names: Sequence[str], n: int = 6) -> list[str]:
    """Names similar to ``name``: difflib matches on the full name and on the last component, plus
    names containing it."""
    low = name.lower()
    out = difflib.get_close_matches(low, names, n=n, cutoff=0.6)
    tails = {nm.rsplit("/", 1)[-1]: nm for nm in names}
    out += [tails[t] for t in difflib.get_close_matches(low.rsplit("/", 1)[-1], list(tails), n=n, cutoff=0.6)]
    out += [nm for nm in names if low in nm]
    return list(dict.fromkeys(out))[:n]


def load_anchor(name: str, dirs: Iterable[str | Path] | None = None) -> Anchor:
    """The anchor called ``name`` (case-insensitive); :class:`QVRFError` listing close names if none."""
    anchors = list_anchors(dirs)
    by_name = {a.name: a for a in anchors}
    key = name.strip().lower()
    if key in by_name:
        return by_name[key]
    hint = close_names(key, list(by_name))
    msg = f"unknown anchor {name!r}"
    msg += f"; did you mean: {', '.join(hint)}" if hint else "; see `qvrf-bench anchors list`"
    raise QVRFError(msg)


def user_anchor_name(name: str, dataset: str) -> str:
    """``NAME`` -> ``user/<dataset>/<name>``; a full ``a/b/c`` name is kept (after validation)."""
    if "/" in name:
        return check_name(name.strip().lower())
    return check_name(f"user/{slug(dataset)}/{slug(name)}")


def user_anchor_path(name: str, directory: str | Path = DEFAULT_USER_DIR) -> Path:
    """Where a user anchor is written: ``<dir>/<dataset>/<model>.json`` for ``user/...`` names, else
    ``<dir>/<source>/<dataset>/<model>.json``."""
    rel = name[len("user/") :] if name.startswith("user/") else name
    return Path(directory) / (rel + ".json")
