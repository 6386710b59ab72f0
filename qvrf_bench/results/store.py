"""The result store: THE per-image result schema (defined once, here), atomic parquet parts, resume,
shards and merge, and provenance.

A run folder looks like::

    runs/<name>/
        run.json                      # manifest: command line, config, shard, provenance, skipped images (atomic)
        results/part-<utc>-<pid>-<rand>.parquet   # one file per append(), written atomically

Every ``append`` writes one new part to a hidden temporary file in ``results/``, fsyncs it and renames
it into place, so a part interrupted by ``kill -9`` or a power cut stays a dot-file that readers never
list (and that the next ``start`` removes, its process being gone). Rows are never rewritten: a
re-measured row is appended again and ``read`` keeps the latest one per row key (see :data:`ROW_KEY`).

Inputs that produced no row (an image that cannot be read: its size, a required column, is unknown)
are on record too: the manifest's ``skipped`` list (:meth:`ResultStore.record_skip`), one entry per
image with the reason, which ``merge`` carries over and reports show.

Column names follow tensorflow-compression's habit of saying what was measured, in which colour space
and whether the bits are real (``psnr_rgb``, ``bpp_real``). :func:`schema_markdown` renders the
column table for the README.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import math
import numbers
import os
import platform
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from qvrf_bench.bitstream import rans
from qvrf_bench.errors import QVRFError
from qvrf_bench.files import atomic_output, file_sha256
from qvrf_bench.files import clean_dead_temps as clean
from qvrf_bench.kinds import KINDS  # the rows' kinds (kinds.py)
from qvrf_bench.metrics.table import metric_columns
from qvrf_bench.results.crops import DIR

SCHEMA_VERSION = 1
RESULTS_DIR = "results"
MANIFEST_NAME = "run.json"
WRITER_LOCK = ".writer.lock"  # ResultStore.writer_lock
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"


class StoreError(QVRFError):
    """A run folder, result part or row that cannot be read or written as asked."""


# --- the schema ---------------------------------------------------------------------------------

_NO_DEFAULT = object()


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    nullable: bool
    description: str
    default: Any = _NO_DEFAULT  # used when a row leaves the column out

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT and not self.nullable


_STR, _I32, _I64, _F64, _BOOL = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
_TS = pa.timestamp("us", tz="UTC")
_FROM_STORE = object()  # default: filled by the store from the run's manifest / provenance

_BASE_COLUMNS: tuple[Column, ...] = (
    Column(
        "run_id",
        _STR,
        False,
        "Name of the run; the same for every row of a run (default: the manifest's "
        "run_id, else the run folder's name). merge() sets it to the merged run's id.",
        _FROM_STORE,
    ),
    Column(
        "method",
        _STR,
        False,
        "What was measured, as reports label it: a model's label (ModelConfig.label, e.g. "
        "'balle-qvrf8-192x320', 'balle-fixed-128x192-l0.0018'), a CompressAI VBR zoo name "
        "('mbt2018-mean-vbr') or a classical codec ('jpeg', 'webp', 'avif', 'jpeg2000').",
    ),
    Column(
        "arch",
        _STR,
        False,
        "Network architecture (e.g. 'balle', 'mbt2018-mean-vbr'); for a classical codec, the codec name.",
    ),
    Column(
        "kind",
        _STR,
        False,
        "One of 'fixed' (one model per rate), 'qvrf' (one QVRF model, rate by level "
        "or gain), 'vbr' (CompressAI's variable-rate models, rate by quantization step), 'classical', "
        "'variable' (a variable-rate method measured through the method contract: sweep --method).",
    ),
    Column(
        "engine",
        _STR,
        False,
        "Code path that made the bitstream: 'serial' or 'fast' (qvrf-bench's engines for its own "
        "models, byte-identical to each other), 'compressai' (CompressAI's VBR compress/decompress in "
        "our container), 'pillow' (classical codecs). Lets a report separate fast paths from reference paths.",
        "",
    ),
    Column("checkpoint", _STR, False, "Checkpoint path as the user gave it; '' for classical codecs.", ""),
    Column(
        "checkpoint_sha256",
        _STR,
        False,
        "SHA-256 of the checkpoint file; '' for classical codecs. Part of "
        "the row key, so a retrained checkpoint at the same path is a different method instance.",
        "",
    ),
    Column(
        "level",
        _I32,
        True,
        "Discrete rate index (QVRF level s, or a fixed model's quality); null when the rate was set continuously.",
    ),
    Column(
        "gain",
        _F64,
        True,
        "Quantization regulator / gain actually used (QVRF a_s, CompressAI VBR "
        "gain = 1 / quantization step); null for classical and fixed models.",
    ),
    Column(
        "lmbda",
        _F64,
        True,
        "Lagrange multiplier the rate point was trained for (CompressAI x255^2 "
        "MSE convention); null when not applicable or interpolated.",
    ),
    Column(
        "quality",
        _F64,
        True,
        "A classical codec's own rate knob: JPEG/WebP/AVIF quality 0..100, "
        "JPEG 2000 compression ratio (OpenJPEG 'rates' mode); null otherwise.",
    ),
    Column(
        "rate_point",
        _STR,
        False,
        "Label of the rate point, unique within a method: 'level=3', "
        "'gain=2.5000', 'qstep=7.1715', 'q=75', 'ratio=48'. Part of the row key.",
    ),
    Column(
        "target_bpp",
        _F64,
        True,
        "Matched-rate rows only (sweep --target-bpp): the rate target; the row's rate_point is "
        "'target_bpp=<value>' and its knob (gain / quality) the one that met it on this image "
        "(not above the target, within 1 % below it unless notices say otherwise). Null for sweep points. "
        "RD curves leave these rows out; the matched-rate analysis uses them.",
    ),
    Column("target_encodes", _I32, True, "Matched-rate rows: how many encodes the rate search took on this image."),
    Column(
        "cross_decode_ok",
        _BOOL,
        True,
        "Decoded again in a separate process (sweep --decode-device / --decode-threads): True when that "
        "decoder recovered the encoder's quantization symbols (its latent within half a bin of the "
        "encoder's; for a method of the contract: what it rebuilds, per decode_check, bit-equal to the "
        "encoder's). Null when not checked (and for peers).",
    ),
    Column(
        "cross_decode_exact",
        _BOOL,
        True,
        "Cross-decode: the second decoder's latent and 8-bit image are bit-identical to the encoder's / the "
        "local decoder's. Null when not checked.",
    ),
    Column(
        "cross_decode_psnr_db",
        _F64,
        True,
        "Cross-decode: PSNR-RGB of the second decoder's image against the local decoder's (inf when "
        "identical). Null when not checked.",
    ),
    Column(
        "cross_decode_device",
        _STR,
        False,
        "Where the cross-decode ran, e.g. 'cpu, 2 threads'; '' when not checked.",
        "",
    ),
    Column("image", _STR, False, "Image name relative to the dataset folder (POSIX separators)."),
    Column(
        "image_sha256",
        _STR,
        False,
        "SHA-256 of the image file's bytes; part of the row key (the name is used instead when this is '').",
        "",
    ),
    Column("width", _I32, False, "Width of the original (unpadded) image in pixels."),
    Column("height", _I32, False, "Height of the original (unpadded) image in pixels."),
    Column(
        "bytes",
        _I64,
        True,
        "Size of the whole bitstream file (container header included): what a user stores. Null when encoding failed.",
    ),
    Column(
        "payload_bytes",
        _I64,
        True,
        "Entropy-coded strings only, no header or shape (CompressAI "
        "eval_model's convention); for classical codecs the whole file (header included).",
    ),
    Column("bpp_real", _F64, True, "8 * bytes / (width * height): real bits per pixel of the whole file."),
    Column(
        "payload_bpp_real",
        _F64,
        True,
        "8 * payload_bytes / (width * height): comparable with CompressAI's and QVRF's published bpp.",
    ),
    # the metric columns (psnr_rgb, ms_ssim_rgb, ...) go here: metrics.table declares them
    Column("enc_s", _F64, True, "Encode wall time in seconds (model/codec plus container; no image I/O)."),
    Column("dec_s", _F64, True, "Decode wall time in seconds."),
    Column(
        "decode_ok",
        _BOOL,
        False,
        "True when the bitstream decoded and, for learned codecs, the decoder's quantized latent equals "
        "the encoder's bit for bit (so the decoded image is the encoder's own reconstruction); for "
        "classical codecs, when it decoded to an image of the right size.",
    ),
    Column(
        "decode_check",
        _STR,
        False,
        "What decode_ok compared: 'latent' (the decoder's quantized latent bit-equal to the encoder's), "
        "'image' (the decoded image bit-equal to the encoder's reconstruction), 'decodes' (it decoded; "
        "nothing to compare with: classical codecs, CompressAI models wrapped as they are); '' in runs "
        "made before the column existed.",
        "",
    ),
    Column(
        "error",
        _STR,
        False,
        "'' when fine; otherwise a one-line reason (the row still counts as done "
        "for resume unless the sweep retries failures).",
        "",
    ),
    Column(
        "notices",
        _STR,
        False,
        "Notices joined with '; ' (image conversions such as 'RGBA image: alpha channel dropped', padding, warnings).",
        "",
    ),
    Column(
        "device",
        _STR,
        False,
        "Where it ran, e.g. 'cpu (2 threads, AMD EPYC)' or 'cuda:0 (NVIDIA H100 80GB HBM3, CUDA 12.8)'.",
        _FROM_STORE,
    ),
    Column("qvrf_bench_version", _STR, False, "qvrf-bench version.", _FROM_STORE),
    Column("torch_version", _STR, False, "torch version.", _FROM_STORE),
    Column("compressai_version", _STR, False, "compressai version.", _FROM_STORE),
    Column(
        "codec_version",
        _STR,
        False,
        "External codec library of a classical codec, e.g. 'Pillow 13.0.0, libjpeg-turbo 3.2.0'; '' otherwise.",
        "",
    ),
    Column(
        "shard",
        _STR,
        False,
        "'i/N' when the row was made by shard i (0-based) of N; '' otherwise.",
        _FROM_STORE,
    ),
    Column(
        "created_utc",
        _TS,
        False,
        "When the row was measured (UTC). read() keeps the latest row per key.",
        _FROM_STORE,
    ),
)

_METRICS_AFTER = "payload_bpp_real"  # metric columns sit after the rates, before the timings


@dataclass(frozen=True)
class Layout:
    """The result schema as it stands: the fixed columns plus every registered metric's columns
    (metrics.table), which are nullable float64 columns marked as metrics in the parquet metadata."""

    columns: tuple[Column, ...]
    names: tuple[str, ...]
    by_name: dict
    descriptions: dict
    schema: pa.Schema


@functools.lru_cache(maxsize=8)
def _layout(metric_cols: tuple[tuple[str, str], ...]) -> Layout:
    cut = [c.name for c in _BASE_COLUMNS].index(_METRICS_AFTER) + 1
    mcols = tuple(Column(n, _F64, True, d) for n, d in metric_cols)
    cols = (*_BASE_COLUMNS[:cut], *mcols, *_BASE_COLUMNS[cut:])
    metric_names = {n for n, _ in metric_cols}
    fields = [
        pa.field(c.name, c.type, nullable=c.nullable,
                 metadata={"description": c.description, **({_METRIC_KEY: "1"} if c.name in metric_names else {})})
        for c in cols
    ]  # fmt: skip
    return Layout(
        cols,
        tuple(c.name for c in cols),
        {c.name: c for c in cols},
        {c.name: c.description for c in cols},
        pa.schema(fields, metadata={"qvrf_bench.schema_version": str(SCHEMA_VERSION)}),
    )


_METRIC_KEY = "qvrf_bench.metric"


def layout() -> Layout:
    """The schema with the metrics registered now (a metric registered later adds its columns)."""
    return _layout(tuple(metric_columns().items()))


def __getattr__(name: str):  # COLUMNS, COLUMN_NAMES, COLUMN_DESCRIPTIONS, SCHEMA follow the metric table
    lay = layout()
    attrs = {"COLUMNS": lay.columns, "COLUMN_NAMES": lay.names, "COLUMN_DESCRIPTIONS": lay.descriptions,
             "SCHEMA": lay.schema}  # fmt: skip
    if name in attrs:
        return attrs[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The row key: one measurement per (method instance, rate point, image). The image part is
#: ``image_sha256`` or, when that is '', ``image``.
ROW_KEY = ("method", "checkpoint_sha256", "rate_point", "image_sha256 or image")


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The key of a row (a dict, or a pandas row): (method, checkpoint_sha256, rate_point, image id)."""
    image_id = row.get("image_sha256") or row.get("image") or ""
    return (
        str(row["method"]),
        str(row.get("checkpoint_sha256") or ""),
        str(row["rate_point"]),
        str(image_id),
    )


def schema_markdown() -> str:
    """The column table as Markdown, for the README / docs (generated, so it never drifts)."""
    lines = [
        f"Result schema v{SCHEMA_VERSION}: one row per (method instance, rate point, image). "
        f"Row key: ({', '.join(ROW_KEY)}).",
        "",
        "| column | type | null | description |",
        "| --- | --- | --- | --- |",
    ]
    for c in layout().columns:
        desc = c.description.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | {desc} |")
    return "\n".join(lines) + "\n"


# --- validation: rows (dicts) -> arrow table ----------------------------------------------------


def _now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _convert(col: Column, value: Any) -> Any:
    """One value to the Python type pyarrow wants for ``col``; raises ValueError with the reason."""
    # None / pandas NA are null; a float NaN is null too except in float columns, where NaN is a value
    # (an undefined metric) distinct from null (not measured)
    if _is_null(value) or (col.type != _F64 and isinstance(value, float) and math.isnan(value)):
        if col.nullable:
            return None
        raise ValueError("is missing (null) but the column is not nullable")
    t = col.type
    if t == _STR:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
        return value
    if t in (_I32, _I64):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")
        if isinstance(value, numbers.Integral):
            return int(value)
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"expected an integer, got {value!r}")
    if t == _F64:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)  # NaN and +-inf are legitimate values (undefined metric, lossless)
    if t == _BOOL:
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return bool(value)
        raise ValueError(f"expected True/False, got {type(value).__name__} {value!r}")
    if t == _TS:
        return _to_utc(value)
    raise AssertionError(f"unhandled type {t}")  # pragma: no cover


def _is_null(value: Any) -> bool:
    return value is None or type(value).__name__ in ("NAType", "NaTType")


def _to_utc(value: Any) -> _dt.datetime:
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expected an ISO-8601 time, got {value!r}") from None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    if not isinstance(value, _dt.datetime):
        raise ValueError(f"expected a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: give a timezone-aware (UTC) time")
    return value.astimezone(_dt.timezone.utc)


def _check_row(row: dict[str, Any]) -> None:
    if row["kind"] not in KINDS:
        raise ValueError(f"column 'kind': {row['kind']!r} is not one of {', '.join(KINDS)}")
    for name in ("method", "rate_point", "image"):
        if not row[name]:
            raise ValueError(f"column {name!r} is empty")
    for name in ("width", "height"):
        if row[name] <= 0:
            raise ValueError(f"column {name!r}: {row[name]} is not a positive size")
    for name in ("bytes", "payload_bytes"):
        if row[name] is not None and row[name] < 0:
            raise ValueError(f"column {name!r}: {row[name]} is negative")


def rows_to_table(rows: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any], where: str = "") -> pa.Table:
    """Validate rows and cast them to :data:`SCHEMA`. ``defaults`` fills the store-provided columns.

    Raises :class:`StoreError` naming ``where`` (the run folder), the row number and the column.
    """
    prefix = f"{where}: " if where else ""
    lay = layout()
    data: dict[str, list] = {name: [] for name in lay.names}
    for i, raw in enumerate(rows):
        if not isinstance(raw, Mapping):
            raise StoreError(f"{prefix}row {i}: expected a dict, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(lay.names))
        if unknown:
            raise StoreError(
                f"{prefix}row {i}: unknown column(s) {', '.join(map(repr, unknown))} "
                f"(the schema is defined in qvrf_bench/results/store.py, metric columns in qvrf_bench/metrics/table.py)"
            )
        row: dict[str, Any] = {}
        for col in lay.columns:
            if col.name in raw:
                value = raw[col.name]
            elif col.default is _FROM_STORE:
                value = defaults.get(col.name)
                if value is None:
                    value = _now_utc() if col.name == "created_utc" else ""
            elif col.default is not _NO_DEFAULT:
                value = col.default
            elif col.nullable:
                value = None
            else:
                raise StoreError(f"{prefix}row {i}: required column {col.name!r} is missing")
            try:
                row[col.name] = _convert(col, value)
            except ValueError as exc:
                raise StoreError(f"{prefix}row {i}: column {col.name!r} {exc}") from None
        try:
            _check_row(row)
        except ValueError as exc:
            raise StoreError(f"{prefix}row {i}: {exc}") from None
        for name, value in row.items():
            data[name].append(value)
    return pa.Table.from_pydict(data, schema=lay.schema)


def _conform(table: pa.Table, where: str, partial: bool = False) -> pa.Table:
    """Bring a table read from disk to :data:`SCHEMA` (older parts may lack newer nullable columns):
    the one check every reader of result files makes (resume, merge, report through
    :meth:`ResultStore.read_table`; compare through :func:`read_part` with ``partial``, where
    columns may be missing but those present must be the schema's, of its types)."""
    lay = layout()
    unknown = sorted(set(table.column_names) - set(lay.names))
    metric_cols = [n for n in unknown if (table.schema.field(n).metadata or {}).get(_METRIC_KEY.encode())]
    if metric_cols:
        raise StoreError(f"{where}: column(s) {', '.join(metric_cols)} of a metric not registered here: "
                         "register it (qvrf_bench.metrics.register_metric) before reading this run")  # fmt: skip
    if unknown:
        raise StoreError(f"{where}: unknown column(s) {', '.join(unknown)}: not a qvrf-bench result part")
    arrays, names = [], []
    for col in lay.columns:
        if col.name in table.column_names:
            arrays.append(table.column(col.name))
        elif partial:
            continue
        elif col.nullable or (col.default is not _NO_DEFAULT and col.type == _STR):
            # a column added to the schema after the part was written
            fill = None if col.nullable else (col.default if col.default is not _FROM_STORE else "")
            arrays.append(pa.array([fill] * table.num_rows, type=col.type))
        else:
            raise StoreError(f"{where}: required column {col.name!r} missing")
        names.append(col.name)
    schema = pa.schema([lay.schema.field(n) for n in names], metadata=lay.schema.metadata)
    try:
        return pa.Table.from_arrays(arrays, names=names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise StoreError(f"{where}: columns do not match the result schema ({exc})") from None


def read_part(path: str | os.PathLike, partial: bool = False) -> pa.Table:
    """One parquet file of results, checked against :data:`SCHEMA` (see :func:`_conform`)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(
            f"{path}: corrupt result part ({exc}); move it away and resume the run to redo its rows"
        ) from None
    # pandas' to_parquet stores a non-default index as columns: not results
    index = [n for n in table.column_names if n.startswith("__index_level_") and n.endswith("__")]
    return _conform(table.drop_columns(index) if index else table, str(path), partial)


def table_to_frame(table: pa.Table):
    """Arrow table -> pandas DataFrame; integer columns become nullable (Int32/Int64) so their dtype
    does not flip to float when a value is missing."""
    import pandas as pd

    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=mapping.get)


def latest_indices(table: pa.Table) -> list[int]:
    """Row numbers of the latest row per :data:`ROW_KEY` (by created_utc; on ties the later row), in
    table order. Works on Arrow so that values round-trip exactly (pandas would turn NaN into null)."""
    if table.num_rows == 0:
        return []
    cols = ["method", "checkpoint_sha256", "rate_point", "image", "image_sha256", "created_utc"]
    work = table.select(cols).to_pandas()
    work["_order"] = range(len(work))
    work["_image_id"] = work["image_sha256"].where(work["image_sha256"] != "", work["image"])
    key = ["method", "checkpoint_sha256", "rate_point", "_image_id"]
    work = work.sort_values(["created_utc", "_order"], kind="stable").drop_duplicates(subset=key, keep="last")
    return sorted(work["_order"].tolist())


def dedupe_table(table: pa.Table) -> pa.Table:
    """``table`` with only the latest row per key (see :func:`latest_indices`)."""
    return table.take(pa.array(latest_indices(table), type=pa.int64()))


# --- atomic files -------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` via ``write(fileobj)`` through files.atomic_output (a hidden temp file in the
    same folder, fsync, rename; removed on any failure, a killed writer's by the next start), then
    fsync the folder so the rename survives a power cut."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        write(f)
    _fsync_dir(path.parent)


def clean_dead_temps(folder: Path) -> list[Path]:
    """Remove the hidden ``.NAME.tmp-PID`` files in ``folder`` whose process is gone (a writer killed
    mid-write); returns them. A live writer's files are left alone."""

    return clean(folder)


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _canonical(obj: Any) -> Any:
    """JSON round trip, so configs compare the same before and after being written."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


# --- provenance ---------------------------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def cpu_model() -> str:
    """The CPU's model name ('' when unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_string(device: Any = None) -> str:
    """Human-readable device: 'cpu (2 threads, AMD EPYC)' or 'cuda:0 (NVIDIA H100 ..., CUDA 12.8)'."""
    import torch

    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''}, {cpu_model()})"
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}, CUDA {torch.version.cuda})"
    return str(dev)


def provenance(device: Any = None) -> dict[str, str]:
    """Versions and device, for the manifest and the rows' provenance columns."""
    from qvrf_bench import __version__

    return {
        "qvrf_bench_version": __version__,
        "torch_version": _version("torch"),
        "compressai_version": _version("compressai"),
        "python_version": platform.python_version(),
        "numpy_version": _version("numpy"),
        "pillow_version": _version("pillow"),
        "pyarrow_version": _version("pyarrow"),
        "platform": platform.platform(),
        "device": device_string(device),
        # which rANS coder wrote and read the y strings (bitstream/rans.py): the same bytes, other enc_s/dec_s
        "rans_coder": rans.backend(),
    }


# --- the store ----------------------------------------------------------------------------------


class ResultStore:
    """Per-image results of one run folder: ``append`` rows, ``read`` them back, resume, manifest."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.results_dir = self.run_dir / RESULTS_DIR
        self.manifest_path = self.run_dir / MANIFEST_NAME
        self._defaults: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"ResultStore({str(self.run_dir)!r})"

    # manifest
    @property
    def manifest(self) -> dict[str, Any] | None:
        """The run's manifest (run.json) or None when there is none yet."""
        if not self.manifest_path.exists():
            return None
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.manifest_path}: unreadable run manifest ({exc})") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.manifest_path}: run manifest is not a JSON object")
        return data

    @property
    def run_id(self) -> str:
        m = self.manifest
        return str(m.get("run_id") or self.run_dir.name) if m else self.run_dir.name

    @contextlib.contextmanager
    def writer_lock(self):
        """Hold the run folder's writer lock for the block: a second writer (another process, or
        this one) is refused with :class:`StoreError` naming the folder and the holder.

        An OS file lock (``filelock``, flock on POSIX) on ``.writer.lock``: the kernel releases it
        when the holder's process ends however it ends, so the lock of a killed sweep never blocks
        a resume. The holder's PID, host and start time go to ``.writer.lock.holder`` for the message.
        """
        from filelock import FileLock, Timeout

        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.run_dir / WRITER_LOCK), timeout=0, thread_local=False, is_singleton=False)
        holder_file = self.run_dir / (WRITER_LOCK + ".holder")
        try:
            lock.acquire()
        except Timeout:
            try:
                holder = holder_file.read_text(encoding="utf-8").strip() or "another writer"
            except OSError:
                holder = "another writer"
            raise StoreError(f"{self.run_dir}: another sweep is writing this run folder ({holder}); "
                             "wait for it to end, or use another --out") from None  # fmt: skip
        try:
            with contextlib.suppress(OSError):
                holder_file.write_text(f"pid {os.getpid()} on {socket.gethostname()}, since "
                                       f"{_now_utc().isoformat(timespec='seconds')}\n", encoding="utf-8")  # fmt: skip
            yield self
        finally:
            lock.release()

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write run.json atomically (low level; :meth:`start` is the usual entry point)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.manifest_path, dict(manifest))
        self._defaults = None

    def start(
        self,
        command: Sequence[str],
        config: Mapping[str, Any],
        *,
        shard: tuple[int, int] | None = None,
        run_id: str | None = None,
        device: Any = None,
        prov: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create the run (write run.json) or resume it.

        Resuming with a different config or shard raises :class:`StoreError`: the rows already there
        would silently mix two experiments. A resume is recorded in the manifest's ``resumed`` list.
        """
        config = _canonical(dict(config))
        shard_obj = None if shard is None else {"index": int(shard[0]), "count": int(shard[1])}
        for folder in (self.run_dir, self.results_dir):  # debris of writers killed mid-write
            clean_dead_temps(folder)
        prov = dict(prov) if prov is not None else provenance(device)
        now = _now_utc().isoformat()
        existing = self.manifest
        if existing is None:
            manifest = {
                "schema": "qvrf-bench run",
                "schema_version": SCHEMA_VERSION,
                "run_id": run_id or self.run_dir.name,
                "created_utc": now,
                "command": list(command),
                "config": config,
                "shard": shard_obj,
                "provenance": prov,
                "resumed": [],
            }
        else:
            old = existing.get("config")
            if _canonical(old) != config:
                diff = config_diff(old or {}, config)
                raise StoreError(
                    f"{self.manifest_path}: the run exists with a different config ({diff}); "
                    "use a new run folder, or rerun with the same settings to resume"
                )
            if existing.get("shard") != shard_obj:
                raise StoreError(
                    f"{self.manifest_path}: the run exists as shard {_shard_text(existing.get('shard'))}, "
                    f"not {_shard_text(shard_obj)}"
                )
            if run_id is not None and existing.get("run_id") != run_id:
                raise StoreError(f"{self.manifest_path}: the run exists with run_id {existing.get('run_id')!r}")
            manifest = dict(existing)
            manifest["resumed"] = list(existing.get("resumed") or []) + [
                {"utc": now, "command": list(command), "provenance": prov}
            ]
        self.write_manifest(manifest)
        return manifest

    # skipped inputs
    @property
    def skipped(self) -> list[dict[str, str]]:
        """The run's skipped inputs: [{"image", "image_sha256", "reason", "shard"}] (module docstring)."""
        m = self.manifest or {}
        return [dict(e) for e in m.get("skipped") or [] if isinstance(e, dict)]

    def record_skip(self, image: str, reason: str, image_sha256: str = "") -> None:
        """Put a skipped input on record in run.json (atomic; the entry for ``image`` is replaced, so a
        resume that skips it again adds nothing)."""
        m = self.manifest
        if m is None:
            raise StoreError(f"{self.run_dir}: no run to record a skip in (start() first)")
        entry = {"image": str(image), "image_sha256": str(image_sha256), "reason": str(reason),
                 "shard": _shard_text(m.get("shard"), empty="")}  # fmt: skip
        m["skipped"] = [e for e in m.get("skipped") or [] if e.get("image") != entry["image"]] + [entry]
        self.write_manifest(m)

    def record_complexity(self, by_method: Mapping[str, Mapping[str, Any]]) -> None:
        """Put each method's complexity (methods/complexity.py) on record in run.json, under
        ``complexity``; not part of the config (it changes no number), so a resume keeps its run."""
        m = self.manifest
        if m is None:
            raise StoreError(f"{self.run_dir}: no run to record complexity in (start() first)")
        if by_method:
            m["complexity"] = {**(m.get("complexity") or {}), **{k: dict(v) for k, v in by_method.items()}}
            self.write_manifest(m)

    def _row_defaults(self) -> dict[str, Any]:
        if self._defaults is None:
            m = self.manifest or {}
            # the latest resume's provenance describes the machine that is writing now
            resumed = m.get("resumed") or []
            prov = (resumed[-1].get("provenance") if resumed else None) or m.get("provenance") or provenance()
            self._defaults = {
                "run_id": str(m.get("run_id") or self.run_dir.name),
                "shard": _shard_text(m.get("shard"), empty=""),
                **{
                    k: str(prov.get(k, ""))
                    for k in ("device", "qvrf_bench_version", "torch_version", "compressai_version")
                },
            }
        return self._defaults

    # results
    def parts(self) -> list[Path]:
        """Complete part files, oldest first (by name; names start with a UTC time)."""
        if not self.results_dir.is_dir():
            return []
        return sorted(
            p
            for p in self.results_dir.iterdir()
            if p.name.startswith(PART_PREFIX) and p.name.endswith(PART_SUFFIX) and p.is_file()
        )

    def append(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Validate ``rows`` against the schema and write them as one new part. Returns its path
        (None for no rows). Unknown columns, missing required columns or wrong types raise StoreError."""
        rows = list(rows)
        if not rows:
            return None
        table = rows_to_table(rows, self._row_defaults(), where=str(self.run_dir))
        return self._write_table(table)

    def buffered(self, max_rows: int = 2000, max_seconds: float = 30.0) -> RowBuffer:
        """A :class:`RowBuffer` writing to this store: rows validated now, written a few parts at a time."""
        return RowBuffer(self, max_rows, max_seconds)

    def _write_table(self, table: pa.Table) -> Path:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = _now_utc().strftime("%Y%m%dT%H%M%S%fZ")
        path = self.results_dir / f"{PART_PREFIX}{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}{PART_SUFFIX}"
        atomic_write(path, lambda f: pq.write_table(table, f, compression="zstd"))
        return path

    def read_table(self) -> pa.Table:
        """All complete parts as one Arrow table (not deduplicated), in part order."""
        tables = []
        for part in self.parts():
            tables.append(read_part(part))
        if not tables:
            return layout().schema.empty_table()
        return pa.concat_tables(tables)

    def read(self, dedupe: bool = True):
        """All rows as a pandas DataFrame with the schema's columns; by default the latest row per key."""
        table = self.read_table()
        return table_to_frame(dedupe_table(table) if dedupe else table)

    def compact(self) -> Path | None:
        """Rewrite all parts as one (latest row per key); returns the new part. Safe to interrupt:
        the new part is complete before any old one is removed, and duplicates are resolved on read."""
        old_parts = self.parts()
        if len(old_parts) <= 1:
            return old_parts[0] if old_parts else None
        new_part = self._write_table(dedupe_table(self.read_table()))
        for part in old_parts:
            part.unlink()
        _fsync_dir(self.results_dir)
        return new_part

    def done_keys(self, include_failed: bool = True) -> set[tuple[str, str, str, str]]:
        """Row keys already measured, for resume. ``include_failed=False`` leaves out rows whose
        decode failed, so that a resume retries them."""
        df = self.read()
        if not include_failed:
            df = df[df["decode_ok"].astype(bool)]
        return {
            row_key(r)
            for r in df[["method", "checkpoint_sha256", "rate_point", "image", "image_sha256"]].to_dict("records")
        }


# --- config comparison, shards, merge -----------------------------------------------------------


class RowBuffer:
    """Rows validated as they come (a bad row fails at once, naming it) and written as one part when
    ``max_rows`` are waiting or ``max_seconds`` have passed since the last write, and on
    :meth:`flush`. A kill (SIGKILL, power) loses at most the rows of the last ``max_seconds``
    (default 30 s) or ``max_rows``, which a rerun measures again; nothing written is ever lost or
    duplicated (parts are atomic, the row key dedupes). One part per flush instead of one per
    (image, method): a sweep leaves a few parts, and a finished one compacts them into one."""

    def __init__(self, store: ResultStore, max_rows: int = 2000, max_seconds: float = 30.0, clock=None):
        import time

        self.store, self.max_rows, self.max_seconds = store, int(max_rows), float(max_seconds)
        self.clock = clock or time.monotonic
        self._tables: list[pa.Table] = []
        self._n = 0
        self._since = self.clock()
        self.parts_written = 0

    @property
    def pending(self) -> int:
        return self._n

    def add(self, rows: Sequence[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if rows:
            self._tables.append(rows_to_table(rows, self.store._row_defaults(), where=str(self.store.run_dir)))
            self._n += len(rows)
        if self._n >= self.max_rows or (self._n and self.clock() - self._since >= self.max_seconds):
            self.flush()

    def flush(self) -> Path | None:
        path = None
        if self._tables:
            path = self.store._write_table(pa.concat_tables(self._tables))
            self._tables, self._n = [], 0
            self.parts_written += 1
        self._since = self.clock()
        return path


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 4) -> str:
    """Short text naming the fields where config ``a`` (the run's) and ``b`` (the new one) differ:
    dotted paths to the leaves that differ, methods named by their label, lists of values as what
    was added and dropped. At most ``limit`` fields, then a count."""
    diffs = _diff(_canonical(dict(a)), _canonical(dict(b)), "")
    more = f"; and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def _short(v: Any, width: int = 40) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _key_of(item: Any) -> str | None:
    if isinstance(item, dict):
        for k in ("method", "name", "label"):
            if isinstance(item.get(k), str):
                return item[k]
    return None


def _diff(a: Any, b: Any, path: str) -> list[str]:
    here = path or "config"
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            sub = f"{path}.{k}" if path else str(k)
            if k not in a:
                out.append(f"{sub}: only in the new config ({_short(b[k])})")
            elif k not in b:
                out.append(f"{sub}: only in the run ({_short(a[k])})")
            else:
                out += _diff(a[k], b[k], sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        ka, kb = [_key_of(x) for x in a], [_key_of(x) for x in b]
        if all(ka) and all(kb) and len(set(ka)) == len(ka) and len(set(kb)) == len(kb):
            da, db = dict(zip(ka, a, strict=True)), dict(zip(kb, b, strict=True))
            out = [f"{here}: {k} only in the new config" for k in kb if k not in da]
            out += [f"{here}: {k} only in the run" for k in ka if k not in db]
            return out + [d for k in ka if k in db for d in _diff(da[k], db[k], f"{here}[{k}]")]
        if all(not isinstance(x, (dict, list)) for x in a + b):
            sa, sb = {json.dumps(x) for x in a}, {json.dumps(x) for x in b}
            added, dropped = sorted(sb - sa), sorted(sa - sb)
            parts = [f"{len(a)} -> {len(b)} values"] if len(a) != len(b) else []
            for word, values in (("new", added), ("not", dropped)):
                if values:
                    shown = ", ".join(_short(json.loads(x), 24) for x in values[:3])
                    parts.append(f"{word} {shown}" + (f" (+{len(values) - 3})" if len(values) > 3 else ""))
            return [f"{here}: {'; '.join(parts) or 'same values, another order'}"]
        if len(a) == len(b):
            return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{here}[{i}]")]
        return [f"{here}: {len(a)} -> {len(b)} entries"]
    return [f"{here}: {_short(a)} in the run, {_short(b)} now"]


def _shard_text(shard: Any, empty: str = "none") -> str:
    if not shard:
        return empty
    return f"{shard['index']}/{shard['count']}"


def shard_from_environment(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """The shard a scheduler gave this process, or None: a Slurm array task
    (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``: ``--array=1-4``
    numbers tasks from 1, shards from 0), else torchrun's ``RANK`` of ``WORLD_SIZE``."""
    env = os.environ if env is None else env
    try:
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            i = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            n = int(env["SLURM_ARRAY_TASK_COUNT"])
            step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
            if step != 1:
                raise QVRFError(f"--shard auto: a Slurm array with step {step} (use --array=0-N or give --shard i/N)")
        elif "RANK" in env and "WORLD_SIZE" in env:
            i, n = int(env["RANK"]), int(env["WORLD_SIZE"])
        else:
            return None
    except ValueError as exc:
        raise QVRFError(f"--shard auto: the scheduler's shard variables are not integers ({exc})") from None
    _check_shard(i, n)
    return i, n


def parse_shard(text: str, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """'i/N' (0-based i) -> (i, N); 'auto' -> the scheduler's (:func:`shard_from_environment`).
    Raises QVRFError for anything else."""
    if str(text).strip().lower() == "auto":
        shard = shard_from_environment(env)
        if shard is None:
            raise QVRFError("--shard auto: no scheduler shard in the environment (Slurm's SLURM_ARRAY_TASK_ID and "
                            "SLURM_ARRAY_TASK_COUNT, or torchrun's RANK and WORLD_SIZE); give --shard i/N")  # fmt: skip
        return shard
    try:
        i_text, n_text = str(text).split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise QVRFError(f"--shard {text!r}: expected i/N, e.g. 0/4 (shards are numbered from 0)") from None
    _check_shard(i, n)
    return i, n


def _check_shard(i: int, n: int) -> None:
    if n < 1 or not 0 <= i < n:
        raise QVRFError(f"shard {i}/{n}: need N >= 1 and 0 <= i < N (shards are numbered from 0)")


T = TypeVar("T")


def _canonical_key(item: Any) -> str:
    return json.dumps(item, sort_keys=True, default=str, separators=(",", ":"), ensure_ascii=True)


def shard_filter(items: Iterable[T], i: int, n: int, key: Callable[[T], Any] | None = None) -> list[T]:
    """The items of shard ``i`` of ``n`` (0-based), in their input order.

    Deterministic across machines and input orders: the distinct keys (``key(item)``, default the item
    itself, rendered as canonical JSON) are sorted and dealt round-robin, so shards differ in size by
    at most one key and items with equal keys land in the same shard.
    """
    _check_shard(i, n)
    items = list(items)
    keys = [_canonical_key(key(x) if key else x) for x in items]
    rank = {k: r for r, k in enumerate(sorted(set(keys)))}
    return [x for x, k in zip(items, keys, strict=True) if rank[k] % n == i]


def merge(
    shard_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    command: Sequence[str] | None = None,
    allow_incomplete: bool = False,
) -> ResultStore:
    """Join shard runs into one run in ``out_dir`` (deduplicated on the row key, latest wins).

    Raises StoreError when a folder is not a run, when two shards disagree on the run config, when
    shards of an N-way split are missing (unless ``allow_incomplete``), or when ``out_dir`` already
    holds a run.
    """
    if not shard_dirs:
        raise StoreError("merge: no shard folders given")
    stores = [ResultStore(d) for d in shard_dirs]
    out = ResultStore(out_dir)
    out_resolved = out.run_dir.resolve()
    seen: dict[Path, Path] = {}
    for s in stores:
        if s.run_dir.resolve() == out_resolved:
            raise StoreError(f"{s.run_dir}: the output folder cannot also be an input")
        first = seen.get(s.run_dir.resolve())
        if first is not None:
            same = "" if str(first) == str(s.run_dir) else f": the same folder as {first}"
            raise StoreError(f"merge: {s.run_dir} given twice (duplicate{same})")
        seen[s.run_dir.resolve()] = s.run_dir
    if out.manifest_path.exists() or out.parts():
        raise StoreError(f"{out.run_dir}: already holds a run; merge into a new folder")

    manifests = []
    for s in stores:
        m = s.manifest
        if m is None:
            raise StoreError(f"{s.run_dir}: not a run folder (no {MANIFEST_NAME})")
        manifests.append(m)
    first_cfg = _canonical(manifests[0].get("config"))
    for s, m in zip(stores[1:], manifests[1:], strict=True):
        if _canonical(m.get("config")) != first_cfg:
            raise StoreError(
                f"{stores[0].run_dir} and {s.run_dir} disagree on the run config "
                f"({config_diff(manifests[0].get('config') or {}, m.get('config') or {})})"
            )
    shards = [m.get("shard") for m in manifests]
    if any(shards) and not allow_incomplete:
        counts = {sh["count"] for sh in shards if sh}
        if len(counts) > 1:
            raise StoreError(f"merge: shards come from different splits (N = {sorted(counts)})")
        (count,) = counts
        by_index: dict[int, Path] = {}
        for st, sh in zip(stores, shards, strict=True):
            if sh and sh["index"] in by_index:
                raise StoreError(
                    f"merge: {by_index[sh['index']]} and {st.run_dir} are both shard {sh['index']}/{count} (duplicate)"
                )
            if sh:
                by_index[sh["index"]] = st.run_dir
        missing = sorted(set(range(count)) - set(by_index))
        if missing:
            raise StoreError(
                f"merge: shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing "
                "(pass allow_incomplete / --allow-incomplete to merge anyway)"
            )
    run_ids = {str(m.get("run_id") or s.run_dir.name) for s, m in zip(stores, manifests, strict=True)}
    run_id = run_ids.pop() if len(run_ids) == 1 else out.run_dir.name

    table = dedupe_table(pa.concat_tables([s.read_table() for s in stores]))
    run_ids_col = pa.array([run_id] * table.num_rows, pa.string())
    lay = layout()
    table = table.set_column(lay.names.index("run_id"), lay.schema.field("run_id"), run_ids_col)
    if table.num_rows:  # rows first: the manifest, written last, marks a finished merge
        out._write_table(table)
    _merge_crops(stores, out.run_dir)
    by_image: dict[str, dict] = {}  # every shard's skipped inputs; an image is in one shard (first entry wins)
    for s in stores:
        for e in s.skipped:
            by_image.setdefault(e.get("image", ""), e)
    skipped = list(by_image.values())
    prov = provenance()
    out.write_manifest(
        {
            "schema": "qvrf-bench run",
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "created_utc": _now_utc().isoformat(),
            "command": list(command) if command is not None else [sys.argv[0], "merge"],
            "config": first_cfg,
            "shard": None,
            "provenance": prov,
            "resumed": [],
            "skipped": skipped,
            "merged_from": [
                {
                    "dir": str(s.run_dir),
                    "run_id": m.get("run_id"),
                    "shard": m.get("shard"),
                    "provenance": m.get("provenance"),
                }
                for s, m in zip(stores, manifests, strict=True)
            ],
        }
    )
    return out


def _merge_crops(stores: Sequence[ResultStore], out_dir: Path) -> None:
    """The shards' crops/ folders (crops.py) into the merged run; a file already there is kept
    (crops of one image come from the one shard that measured it)."""

    for s in stores:
        root = s.run_dir / DIR
        if not root.is_dir():
            continue
        for src in sorted(root.rglob("*")):
            if not src.is_file() or src.name.startswith("."):
                continue
            dst = out_dir / DIR / src.relative_to(root)
            if dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
            tmp.write_bytes(src.read_bytes())
            os.replace(tmp, dst)


sha256_file = file_sha256  # checkpoint_sha256 / image_sha256 (one definition: files.file_sha256)
