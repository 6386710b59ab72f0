"""A method (methods/base.py) through real bitstreams: encode, write the version-3 container, decode
it from its bytes alone, check what was rebuilt.

:func:`encode_image` / :func:`decode_bytes` are the one-image codec; :class:`MethodEngine` measures
one image at many points: the one engine of the sweep, for the suite's checkpoints (``-c``: QVRF
writing the version-2 container) as for any method. ``serial`` codes one point at a time through
the whole method; ``fast`` (methods with ``batched = True``) runs the analysis once per image
(g_a, h_a, the z string, h_s for QVRF), codes the points in batches (the autoregressive models on
the wavefront, models/autoregressive.py), decodes the shared strings once, and runs the synthesis
per point (a batch of one: oneDNN's batched convolutions are not bitwise equal to batch one).
Before the fast path serves a method it runs the method's self-check and codes a probe image both
ways, and requires identical bytes, images and checks (a method whose ``batched`` promise does not
hold on this machine is refused, with the point where it broke).

Batch invariance: batching is only allowed where an item's numbers cannot depend on the batch
(elementwise operations, and the autoregressive step on fixed tiles); batched convolutions and
plain batched matrix products are not batch invariant on CPU, so they are never used across points.

Decode check: each point is decoded from its bytes alone and what was rebuilt (the quantized latent
for QVRF) must equal, bit for bit, what the encoder says it coded; equal latents through the same
synthesis on the same device give the same image, so this is "decoded image equals the encoder's
reconstruction" without running g_s twice.

Timings (wall clock, CUDA synchronised): each point's ``enc_s`` is the shared analysis divided
evenly among the image's points plus its share (1/batch size) of its batch's coding and packing;
``dec_s`` the shared decoding divided evenly, plus its share of its batch's decoding, plus its own
synthesis and 8-bit conversion. The sums over an image's points are the image's wall time.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from qvrf_bench import images
from qvrf_bench.bitstream.container import PAD_MULTIPLE
from qvrf_bench.devices import synchronize
from qvrf_bench.errors import BitstreamError
from qvrf_bench.methods.base import Method, Point


@dataclass
class MethodResult:
    point: Point
    data: bytes  # the whole container
    payload_bytes: int  # the strings alone
    rgb: np.ndarray  # decoded (H, W, 3) uint8
    decode_ok: bool
    enc_s: float
    dec_s: float
    rebuilt: torch.Tensor | None = None  # what the encoder says the decoder must rebuild


@torch.no_grad()
def encode_image(method: Method, rgb: np.ndarray, points: list[Point], fingerprint: str | None = None):
    """(H, W, 3) uint8 at ``points`` -> [(container bytes, what the decoder must rebuild)]."""
    fingerprint = fingerprint or method.fingerprint()
    x = images.rgb8_to_tensor(rgb)
    h, w = x.shape[-2:]
    padding = images.padding_for(h, w, PAD_MULTIPLE, method.padding)
    an = method.analyse(images.pad(x.to(method.device), padding))
    strings, rebuilt = method.code(an, list(points))
    out = []
    for pt, own, r in zip(points, strings, rebuilt, strict=True):
        out.append((method.pack(pt, [*own, *an.shared], h, w, padding, fingerprint), r))
    return out


@torch.no_grad()
def decode_bytes(method: Method, data: bytes, name: str = "bitstream", fingerprint: str | None = None):
    """Container bytes -> (the (1, 3, H, W) reconstruction in [0, 1], what was rebuilt, point)."""
    fingerprint = fingerprint or method.fingerprint()
    u = method.unpack(data, name, fingerprint)
    ph, pw = u.height + sum(u.padding[2:]), u.width + sum(u.padding[:2])
    try:
        state = method.decode_shared(u.shared, ph, pw)
        (rebuilt,) = method.decode(state, [u.strings], [u.point])
        x_hat = method.synthesise(rebuilt).clamp(0, 1)
    except BitstreamError:
        raise
    except Exception as exc:
        raise BitstreamError(f"{name}: corrupt bitstream payload ({type(exc).__name__}: {exc})") from None
    return images.crop(x_hat, u.padding), rebuilt, u.point


def _same(a, b) -> bool:
    return a is None or b is None or (a.shape == b.shape and bool(torch.equal(a.to(b.device), b)))


class MethodEngine:
    """``serial``, or ``fast`` where the method is batched (module docstring).

    Before the first image of a method it runs, untimed, the method's own :meth:`Method.self_check`
    (QVRF: tile invariance, z independent of the gain, batched coding equal to the model's own
    compress) and, on the fast path, a probe coded in a batch and alone (any difference raises).
    A batch is bounded by ``max_batch`` points and by ``max_batch_bytes`` of what the method says a
    point costs (:meth:`Method.bytes_per_point`), which bounds the per-image peak memory.
    """

    def __init__(self, name: str = "fast", max_batch: int = 64, max_batch_bytes: int = 1 << 30,
                 self_check: bool = True):  # fmt: skip
        if name not in ("serial", "fast"):
            raise ValueError(f"unknown engine {name!r}; choose serial or fast")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 (got {max_batch})")
        self.name, self.max_batch, self.max_batch_bytes = name, int(max_batch), int(max_batch_bytes)
        self.self_check = self_check
        # method -> most points per batch it allows, once warm and checked (weak: methods come and go)
        self._limit: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def warm_up(self, method: Method, fingerprint: str) -> None:
        if method in self._limit:
            return
        limit = self.max_batch if self.name == "fast" and method.batched else 1
        if self.self_check:
            own = method.self_check(fingerprint)
            limit = min(limit, own) if own else limit
            if limit > 1:
                self._check(method, fingerprint, limit)
        else:  # the warm-up alone: lazy set-up out of the first image's timings
            run_points(method, images.probe_image(), method.rate_points()[:1], fingerprint, 1)
        self._limit[method] = limit

    def batch(self, method: Method) -> int:
        return self._limit.get(method, self.max_batch if self.name == "fast" and method.batched else 1)

    def batch_size(self, method: Method, analysis, pixels: int) -> int:
        per_point = max(1, int(method.bytes_per_point(analysis, pixels)))
        return max(1, min(self.batch(method), self.max_batch_bytes // per_point))

    def run_image(self, method: Method, rgb: np.ndarray, points: list[Point], fingerprint: str) -> list[MethodResult]:
        self.warm_up(method, fingerprint)
        h, w = rgb.shape[:2]
        pixels = (h + (-h) % PAD_MULTIPLE) * (w + (-w) % PAD_MULTIPLE)
        return run_points(method, rgb, points, fingerprint, lambda an: self.batch_size(method, an, pixels))

    def _check(self, method: Method, fingerprint: str, limit: int) -> None:
        rgb = images.probe_image()
        points = method.rate_points()
        probe = [points[0], points[-1], *points[1:-1][:2]]
        batched = run_points(method, rgb, probe, fingerprint, limit)
        alone = run_points(method, rgb, probe, fingerprint, 1)
        for b, a in zip(batched, alone, strict=True):
            if b.data != a.data or not np.array_equal(b.rgb, a.rgb) or b.decode_ok != a.decode_ok:
                raise RuntimeError(
                    f"{method.name}: coding {b.point.label} in a batch differs from coding it alone on this "
                    "machine (the method says batched = True); use --engine serial"
                )


ENGINES = {"serial": lambda: MethodEngine("serial"), "fast": lambda: MethodEngine("fast")}


def get_engine(name: str) -> MethodEngine:
    try:
        return ENGINES[name]()
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}") from None


@torch.no_grad()
def run_points(method: Method, rgb: np.ndarray, points: list[Point], fingerprint: str, size) -> list[MethodResult]:
    """One image at ``points``, ``size`` points per batch (an int, or a function of the image's
    Analysis: a memory bound); 1 is the serial path (the whole method per point)."""
    n = len(points)
    if n == 0:
        return []
    device = method.device
    x = images.rgb8_to_tensor(rgb)
    h, w = x.shape[-2:]
    padding = images.padding_for(h, w, PAD_MULTIPLE, method.padding)
    ph, pw = h + sum(padding[2:]), w + sum(padding[:2])
    xp = images.pad(x.to(device), padding)
    enc_s, dec_s = [0.0] * n, [0.0] * n
    results: list[MethodResult | None] = [None] * n

    synchronize(device)
    t0 = time.perf_counter()
    an = method.analyse(xp)
    synchronize(device)
    size = max(1, int(size(an) if callable(size) else size))
    serial = size == 1
    t_an = time.perf_counter() - t0
    state = first_shared = None
    for start in range(0, n, size):
        batch = list(range(start, min(start + size, n)))
        k = len(batch)
        t0 = time.perf_counter()
        if serial and start > 0:  # the serial path runs the whole method for every point
            an = method.analyse(xp)
            synchronize(device)
            t_an = time.perf_counter() - t0
            t0 = time.perf_counter()
        for i in batch if serial else (range(n) if start == 0 else ()):
            enc_s[i] += t_an if serial else t_an / n
        strings, rebuilt = method.code(an, [points[i] for i in batch])
        datas = [method.pack(points[i], [*strings[j], *an.shared], h, w, padding, fingerprint)
                 for j, i in enumerate(batch)]  # fmt: skip
        synchronize(device)
        for i in batch:
            enc_s[i] += (time.perf_counter() - t0) / k

        # Decode the batch from its bytes alone.
        t0 = time.perf_counter()
        parsed = [method.unpack(d, "bitstream", fingerprint) for d in datas]
        if state is None or serial:
            state = method.decode_shared(parsed[0].shared, ph, pw)
            synchronize(device)
            t_s = time.perf_counter() - t0
            for i in batch if serial else range(n):
                dec_s[i] += t_s if serial else t_s / n
            first_shared = parsed[0].shared
            t0 = time.perf_counter()
        if any(u.shared != first_shared for u in parsed):
            raise RuntimeError(f"{method.name}: the shared strings differ between rate points of one image")
        got = method.decode(state, [u.strings for u in parsed], [u.point for u in parsed])
        synchronize(device)
        for i in batch:
            dec_s[i] += (time.perf_counter() - t0) / k
        for j, i in enumerate(batch):
            t0 = time.perf_counter()
            x_hat = images.crop(method.synthesise(got[j]).clamp(0, 1), padding)
            rgb_dec = images.tensor_to_rgb8(x_hat)
            synchronize(device)
            dec_s[i] += time.perf_counter() - t0
            ok = parsed[j].point == points[i] and _same(got[j], rebuilt[j])
            payload = sum(len(s) for s in strings[j]) + sum(len(s) for s in an.shared)
            results[i] = MethodResult(points[i], datas[j], payload, rgb_dec, ok, 0.0, 0.0, rebuilt[j])
    for i, r in enumerate(results):
        r.enc_s, r.dec_s = enc_s[i], dec_s[i]
    return results
