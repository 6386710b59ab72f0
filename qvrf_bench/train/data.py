"""Training and validation images: any folder of images, random crops, centre crops, caching.

Choices (recorded here because they change what a run computes):

- **Files**: every image under ``--dataset`` (recursively; PNG, JPEG and the other formats
  :func:`qvrf_bench.images.list_images` knows), read by :func:`qvrf_bench.images.load_image` as
  8-bit RGB. A file that cannot be read (empty, truncated, not an image) is skipped and named in
  the run's log; the run never stops for it. Only when *no* image is readable is it an error.
- **Validation**: ``--val DIR`` (its images are removed from the training list when the folder lies
  inside ``--dataset``), else a seeded random ``--val-fraction`` of the images (at least one;
  with a single image it serves both, with a notice). At most ``max_val_images`` (sorted by path)
  are used. Validation uses one centre crop per image, decoded once.
- **Small images**: an image smaller than the crop in either dimension is padded up to the crop
  size, by reflection (default; no flat borders for the codec to learn) or zeros
  (``--pad-mode zero``), and the count is logged. Nothing is skipped for size.
- **Caching** (``--cache auto|on|off``): ``auto`` decodes every training image once into memory
  when the decoded size (from the file headers, H*W*3 bytes) is at most ``--cache-mb`` (2048 MB
  by default): BSDS500 is ~230 MB and decoding a JPEG per crop costs more than a small model's
  step on 2 cores. Larger sets are read on demand in ``--workers`` data-loader processes.
- **Determinism**: the batch of step t is a pure function of (seed, t): a seeded permutation per
  epoch picks the images, a generator seeded with (seed, t) picks the crop offsets. A resumed run
  therefore sees exactly the batches the uninterrupted run would have, whatever the worker count.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from qvrf_bench.errors import ImageError, QVRFError
from qvrf_bench.images import list_images, load_image

Log = Callable[[str], None]


@dataclass
class ImageList:
    """Image files that look readable (by header), their sizes and, once decoded, their pixels."""

    paths: list[Path]
    sizes: list[tuple[int, int]]  # (height, width) from the header
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    arrays: list[np.ndarray] | None = None  # (H, W, 3) uint8 each, after decode_all()

    @property
    def decoded_bytes(self) -> int:
        return sum(h * w * 3 for h, w in self.sizes)

    def subset(self, index: list[int]) -> ImageList:
        arrays = None if self.arrays is None else [self.arrays[i] for i in index]
        return ImageList([self.paths[i] for i in index], [self.sizes[i] for i in index], [], arrays)

    def decode_all(self, log: Log) -> None:
        """Decode every image into memory; drop (and name) the ones that fail."""
        keep, arrays = [], []
        for i, p in enumerate(self.paths):
            try:
                arrays.append(load_image(p).rgb)
                keep.append(i)
            except ImageError as exc:
                _skip(self, exc, log)
        kept = self.subset(keep)
        self.paths, self.sizes, self.arrays = kept.paths, [a.shape[:2] for a in arrays], arrays


def scan(files: list[Path], log: Log) -> ImageList:
    """Read each file's header (cheap: no pixel decoding); skip and name the unreadable ones.
    A truncated file passes here and is caught when decoded."""
    out = ImageList([], [])
    for p in files:
        try:
            if p.stat().st_size == 0:
                raise ImageError(p, "empty file (0 bytes)")
            with Image.open(p) as img:
                w, h = img.size
            if w == 0 or h == 0:
                raise ImageError(p, "image has zero width or height")
        except ImageError as exc:
            _skip(out, exc, log)
            continue
        except Exception as exc:  # PIL raises many types for non-images
            _skip(out, ImageError(p, f"not a readable image ({exc.__class__.__name__})"), log)
            continue
        out.paths.append(p)
        out.sizes.append((h, w))
    return out


def _skip(lst: ImageList, exc: ImageError, log: Log) -> None:
    lst.skipped.append(str(exc))
    log(f"skipped unreadable image {exc}", once=True)


def find_images(folder: str | os.PathLike) -> list[Path]:
    try:
        files = list_images(folder)
    except ImageError as exc:
        raise QVRFError(f"{folder}: {exc.reason}") from None
    if not files:
        raise QVRFError(f"{folder}: no image files found (PNG, JPEG, ...)")
    return files


def split_train_val(images: ImageList, val_fraction: float, seed: int, log: Log) -> tuple[ImageList, ImageList]:
    """(training, validation) from one scanned list: a seeded random ``val_fraction`` (at least one
    image) is held out; with one image, or a fraction of 0, validation uses the training images."""
    n = len(images.paths)
    if n == 0:
        raise QVRFError("none of the image files could be read (see the log for each file)")
    if n == 1 or val_fraction == 0:
        log("no separate validation images (one image, or --val-fraction 0): validating on training images")
        return images, images
    chosen = set(random.Random(seed).sample(range(n), min(n - 1, max(1, round(n * val_fraction)))))
    return images.subset([i for i in range(n) if i not in chosen]), images.subset(sorted(chosen))


def exclude(images: ImageList, others: list[Path], log: Log) -> ImageList:
    """``images`` without the files in ``others`` (a validation folder inside the dataset)."""
    held = {p.resolve() for p in others}
    keep = [i for i, p in enumerate(images.paths) if p.resolve() not in held]
    if len(keep) < len(images.paths):
        log(f"{len(images.paths) - len(keep)} images of the validation folder left out of training")
    if not keep:
        raise QVRFError("every training image is in the validation folder; nothing to train on")
    return images.subset(keep)


# --- crops --------------------------------------------------------------------------------------


def pad_to(rgb: np.ndarray, size: int, mode: str = "reflect") -> np.ndarray:
    """Pad (H, W, 3) at the bottom/right up to at least size x size (no-op when big enough)."""
    h, w = rgb.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return rgb
    if mode == "zero":
        return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="constant")
    if h == 1 or w == 1:  # reflection needs two pixels; a 1-pixel line is repeated
        return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="reflect")


def random_crop(rgb: np.ndarray, size: int, rng: np.random.Generator, pad_mode: str) -> np.ndarray:
    rgb = pad_to(rgb, size, pad_mode)
    h, w = rgb.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return rgb[top : top + size, left : left + size]


def center_crop(rgb: np.ndarray, size: int, pad_mode: str) -> np.ndarray:
    rgb = pad_to(rgb, size, pad_mode)
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top : top + size, left : left + size]


def to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    """List of (P, P, 3) uint8 -> (B, 3, P, P) float32 in [0, 1]."""
    arr = np.stack(crops).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


# --- training batches ---------------------------------------------------------------------------


class TrainImages(torch.utils.data.Dataset):
    """Item t = the training batch of step t, as ((B, 3, P, P) float tensor, [skipped-file notes]).

    Used through a DataLoader with ``batch_size=None`` over the step numbers, so the batch
    assembly (decoding, when not cached) runs in the loader's worker processes.
    """

    def __init__(self, files: ImageList, batch_size: int, patch_size: int, seed: int, pad_mode: str, log: Log,
                 part: tuple[int, int] = (0, 1)):  # fmt: skip
        self.paths = list(files.paths)
        self.cached = files.arrays  # None: decode on demand
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.seed = seed
        self.pad_mode = pad_mode
        self.bad: set[int] = set()
        self.rank, self.world = part  # this process draws crops rank*B/world .. (rank+1)*B/world - 1
        if batch_size % self.world:
            raise QVRFError(f"--batch-size {batch_size} is the global batch: it must divide evenly over "
                            f"{self.world} processes")  # fmt: skip
        if not self.paths:
            raise QVRFError("none of the training images could be read (see the log for each file)")
        n_small = sum(1 for h, w in files.sizes if h < patch_size or w < patch_size)
        if n_small:
            log(f"{n_small} training image(s) smaller than {patch_size}x{patch_size}: {pad_mode}-padded")

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.paths) / self.batch_size))

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.paths), generator=g).tolist()

    def _image(self, i: int) -> np.ndarray:
        if self.cached is not None:
            return self.cached[i]
        return load_image(self.paths[i]).rgb

    def __getitem__(self, step: int):
        spe = self.steps_per_epoch
        order = self._order(step // spe)
        pos = (step % spe) * self.batch_size
        share = self.batch_size // self.world
        first = self.rank * share
        crops, notes, k, j = [], [], 0, 0
        while j < first + share:
            if k >= len(order) + self.batch_size:
                raise QVRFError("none of the training images could be read (see the log for each file)")
            i = order[(pos + k) % len(order)]
            k += 1
            if i in self.bad:
                continue
            if j < first:  # another process's crop: not decoded here
                j += 1
                continue
            try:
                img = self._image(i)
            except ImageError as exc:  # only on demand (not cached): found at first use
                self.bad.add(i)
                notes.append(str(exc))
                continue
            # Crop j of step t has its own generator: the batch is the same however many processes
            # share it (an unreadable file found by one process shifts only that process's crops).
            crops.append(random_crop(img, self.patch_size, np.random.default_rng([self.seed, step, j]), self.pad_mode))
            j += 1
        return to_tensor(crops), notes


def seed_worker(worker_id: int) -> None:
    """Seed every RNG of a data-loader worker (the batches themselves do not use them)."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def batch_loader(images: TrainImages, start: int, stop: int, workers: int, seed: int):
    """Iterate (batch, notes) for steps start..stop-1."""
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        images,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=g,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )


# --- validation ---------------------------------------------------------------------------------


def validation_crops(files: ImageList, patch_size: int, pad_mode: str, max_images: int | None, log: Log):
    """(N, 3, P, P) uint8 tensor of centre crops (decoded once), skipping unreadable files."""
    crops = []
    for i, p in enumerate(files.paths):
        if max_images is not None and len(crops) >= max_images:
            break
        try:
            rgb = files.arrays[i] if files.arrays is not None else load_image(p).rgb
        except ImageError as exc:
            _skip(files, exc, log)
            continue
        crops.append(center_crop(rgb, patch_size, pad_mode))
    if not crops:
        raise QVRFError("none of the validation images could be read (see the log for each file)")
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def decide_cache(mode: str, files: ImageList, cache_mb: int) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    return files.decoded_bytes <= cache_mb * 2**20
