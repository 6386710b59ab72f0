"""Visual crops: small windows of decoded images, kept in the run folder for the report.

A curve says "1 dB better"; a reviewer wants to see it. A sweep with ``crops=N`` keeps, for the
first N images of the dataset (by name, whatever the shard), a ``CROP`` x ``CROP`` window of the
original and of every decoded image that a side-by-side at matched rate needs: each matched-rate
row (``--target-bpp``) and each fixed-rate model's row. The report (report/render.py) puts them side
by side per image and target, as PNG data URIs inside its one HTML file.

The window (:func:`crop_box`, pure) is the one with the most detail (largest mean absolute
gradient of the grey image, on a grid of CROP/4 px steps): coding artefacts show on texture and
edges, not on sky. Same image, same window, on every machine and shard.

Layout, all files written atomically (files.write_bytes), so a killed sweep leaves no half file::

    crops/<first 16 hex of the image sha256>/
        box.json              {"image", "sha256", "top", "left", "size", "width", "height"}
        original.png
        <key>.png             key = crop_key(method, checkpoint_sha256, rate_point)
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from qvrf_bench import files

CROP = 128
DIR = "crops"


def crop_box(rgb8: np.ndarray, size: int = CROP) -> tuple[int, int, int]:
    """(top, left, size) of the most detailed ``size`` window (the whole image when it is smaller)."""
    h, w = rgb8.shape[:2]
    size = int(min(size, h, w))
    grey = rgb8.astype(np.float32).mean(axis=2)
    energy = np.zeros((h, w), np.float32)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    best, box = -1.0, (0, 0)
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            s = (integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left]
                 + integral[top, left])  # fmt: skip
            if s > best:
                best, box = float(s), (top, left)
    return box[0], box[1], size


def cut(rgb8: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    top, left, size = box
    return np.ascontiguousarray(rgb8[top : top + size, left : left + size])


def crop_key(method: str, checkpoint_sha256: str, rate_point: str) -> str:
    """The file stem of one row's crop: a hash, so any method label makes a safe, unique name."""
    text = "\x1f".join((str(method), str(checkpoint_sha256 or ""), str(rate_point)))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def png_bytes(rgb8: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb8, mode="RGB").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def image_dir(run_dir: str | Path, image_sha256: str) -> Path:
    return Path(run_dir) / DIR / str(image_sha256)[:16]


class CropWriter:
    """Saves the crops of one run folder (the sweep's side)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self._boxes: dict[str, tuple[int, int, int]] = {}

    def box(self, name: str, sha256: str, original: np.ndarray) -> tuple[int, int, int]:
        """The image's window; writes box.json and original.png the first time."""

        if sha256 not in self._boxes:
            box = crop_box(original)
            folder = image_dir(self.run_dir, sha256)
            folder.mkdir(parents=True, exist_ok=True)
            meta = {"image": name, "sha256": sha256, "top": box[0], "left": box[1], "size": box[2],
                    "width": int(original.shape[1]), "height": int(original.shape[0])}  # fmt: skip
            files.write_bytes(folder / "original.png", png_bytes(cut(original, box)))
            files.write_bytes(folder / "box.json", json.dumps(meta, indent=1).encode())
            self._boxes[sha256] = box
        return self._boxes[sha256]

    def save(self, name: str, sha256: str, original: np.ndarray, decoded: np.ndarray, method: str,
             checkpoint_sha256: str, rate_point: str) -> Path:  # fmt: skip

        box = self.box(name, sha256, original)
        path = image_dir(self.run_dir, sha256) / f"{crop_key(method, checkpoint_sha256, rate_point)}.png"
        files.write_bytes(path, png_bytes(cut(decoded, box)))
        return path


def read_crops(run_dir: str | Path) -> dict[str, dict]:
    """image sha256 -> {"meta": box.json, "original": PNG bytes, "files": {key: PNG bytes}} (the
    report's side; a folder without a readable box.json or original.png is ignored)."""
    out: dict[str, dict] = {}
    root = Path(run_dir) / DIR
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            meta = json.loads((folder / "box.json").read_text())
            original = (folder / "original.png").read_bytes()
        except (OSError, ValueError):
            continue
        files_ = {p.stem: p.read_bytes() for p in sorted(folder.glob("*.png")) if p.stem != "original"}
        out[str(meta.get("sha256", ""))] = {"meta": meta, "original": original, "files": files_}
    return out
