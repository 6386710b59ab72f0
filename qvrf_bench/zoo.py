"""The project-trained model zoo's catalogue: ``zoo:NAME`` -> the shipped file, checked against its
recorded sha256. Torch-free (``info`` and ``--help`` stay fast); how the zoo is trained and packed is
qvrf_bench/train/zoo.py.

``zoo:NAME`` works wherever a checkpoint path does (``qvrf-bench encode -c zoo:balle-qvrf8``,
``sweep --checkpoint``, ``info``, ``--init-from``). ``qvrf-bench zoo list`` shows what ships.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qvrf_bench.errors import CheckpointError, QVRFError
from qvrf_bench.files import file_sha256

# The shipped zoo; QVRF_BENCH_ZOO points every command (and zoo:NAME) at another zoo folder instead.
ZOO_DIR = Path(os.environ.get("QVRF_BENCH_ZOO") or Path(__file__).resolve().parent / "data" / "zoo")
MANIFEST = "zoo.json"
PREFIX = "zoo:"
KODAK_DIR = Path(__file__).resolve().parent / "data" / "kodak"


def kodak_subset(folder: str | Path, n: int) -> Path:
    """A test set of the first ``n`` packaged Kodak images, copied into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(KODAK_DIR.glob("*.png"))[:n]:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def read_manifest(folder: str | Path | None = None) -> dict:
    path = Path(folder if folder is not None else ZOO_DIR) / MANIFEST
    if not path.is_file():
        return {"format": 1, "models": {}}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise QVRFError(f"{path}: broken zoo manifest ({exc})") from None
    problem = manifest_problem(manifest)
    if problem:
        raise QVRFError(f"{path}: broken zoo manifest ({problem})")
    return manifest


_NUM = (int, float)
# What every reader of an entry uses (resolve, zoo list / show / verify), with its type.
ENTRY_FIELDS = {"file": str, "sha256": str, "arch": str, "kind": str, "levels": int, "N": int, "M": int,
                "bytes": int, "provenance": dict, "check": dict}  # fmt: skip
PROVENANCE_FIELDS = {"total_steps": int, "total_wall_s": _NUM}
CHECK_FIELDS = {"level": int, "bytes": int, "bpp_real": _NUM, "psnr_rgb": _NUM, "sha256_bitstream": str}


def manifest_problem(manifest) -> str | None:
    """What makes a parsed zoo.json unusable, or None: its shape, and per entry the fields every
    command reads (a file name inside the zoo folder, a sha256, the check's numbers)."""

    def wrong(where: dict, fields: dict, what: str) -> str | None:
        for key, typ in fields.items():
            v = where.get(key)
            if v is None or isinstance(v, bool) or not isinstance(v, typ):
                return f"{what} has no {key!r}" if v is None else f"{what}: {key!r} is {v!r:.60}"
        return None

    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        return 'expected {"models": {NAME: ENTRY, ...}}'
    for name, e in manifest["models"].items():
        if not isinstance(e, dict):
            return f"entry {name!r} is not an object"
        problem = (wrong(e, ENTRY_FIELDS, f"entry {name!r}") or wrong(e["provenance"], PROVENANCE_FIELDS,
                   f"entry {name!r} provenance") or wrong(e["check"], CHECK_FIELDS, f"entry {name!r} check"))  # fmt: skip
        if problem:
            return problem
        if Path(e["file"]).name != e["file"] or e["file"] in ("", ".", ".."):
            return f"entry {name!r}: file {e['file']!r} is not a file name inside the zoo folder"
        if len(e["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in e["sha256"]):
            return f"entry {name!r}: sha256 {e['sha256']!r:.70} is not 64 hex digits"
    return None


def names(folder: str | Path | None = None) -> list[str]:
    return list(read_manifest(folder)["models"])


def entry(name: str, folder: str | Path | None = None) -> dict:
    models = read_manifest(folder)["models"]
    if name not in models:
        have = ", ".join(models) or "none (the zoo is empty)"
        raise CheckpointError(f"{PREFIX}{name}: no such zoo model; shipped: {have}")
    return models[name]


def resolve(spec: str | os.PathLike, folder: str | Path | None = None) -> Path:
    """``zoo:NAME`` -> the shipped file (checked against its recorded sha256); any other path as is."""
    text = os.fspath(spec)
    if not text.startswith(PREFIX):
        return Path(text)
    folder = Path(folder) if folder is not None else ZOO_DIR
    name = text[len(PREFIX) :]
    e = entry(name, folder)
    path = folder / e["file"]
    if not path.is_file():
        raise CheckpointError(f"{text}: {path} is missing from this installation")
    if file_sha256(path) != e["sha256"]:
        raise CheckpointError(f"{text}: {path} does not match the sha256 in {MANIFEST} (modified or corrupt)")
    return path


def is_zoo(spec) -> bool:
    return os.fspath(spec).startswith(PREFIX)
