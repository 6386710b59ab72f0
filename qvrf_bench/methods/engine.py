"""A method (methods/base.py) through real bitstreams: encode, write the version-3 container, decode
it from its bytes alone, check what was rebuilt.

:func:`encode_image` / :func:`decode_bytes` are the one-image codec; :class:`MethodEngine` measures
one image at many points the way engine.py does for the suite's own models: ``serial`` codes one
point at a time through the whole method; ``fast`` (methods with ``batched = True``) runs the
analysis once per image, codes the points in batches, decodes the shared strings once. Before the
fast path serves a method it codes a probe image both ways and requires identical bytes, images and
checks (a method whose ``batched`` promise does not hold on this machine is refused, with the
point where it broke). Timings: each point's ``enc_s`` and ``dec_s`` include its share of the
shared work, as engine.py.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from qvrf_bench import images
from qvrf_bench.container import PAD_MULTIPLE, MethodHeader, pack_method, unpack_method
from qvrf_bench.engine import synchronize
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


def _header(method: Method, fp: bytes, point: Point, h: int, w: int, padding) -> MethodHeader:
    return MethodHeader(method.arch, method.method_id, fp, h, w, tuple(padding), method.side_info(point))


def check_header(method: Method, header: MethodHeader, name: str, fingerprint: str) -> None:
    if header.method_id != method.method_id:
        raise BitstreamError(f"{name}: made by method {header.method_id!r}, not {method.method_id!r}")
    if header.arch and header.arch != method.arch:
        raise BitstreamError(f"{name}: made by a {header.arch} model, this method is {method.arch or 'another'}")
    if header.fingerprint != bytes.fromhex(fingerprint)[:8]:
        raise BitstreamError(
            f"{name}: made by a method with fingerprint {header.fingerprint.hex()}, not this one "
            f"({fingerprint[:16]}); decode it with the checkpoint that encoded it"
        )


@torch.no_grad()
def encode_image(method: Method, rgb: np.ndarray, points: list[Point], fingerprint: str | None = None):
    """(H, W, 3) uint8 at ``points`` -> [(container bytes, what the decoder must rebuild)]."""
    fingerprint = fingerprint or method.fingerprint()
    x = images.rgb8_to_tensor(rgb)
    h, w = x.shape[-2:]
    padding = images.centred_padding(h, w, PAD_MULTIPLE)
    an = method.analyse(images.pad(x.to(method.device), padding))
    strings, rebuilt = method.code(an, list(points))
    fp = bytes.fromhex(fingerprint)
    out = []
    for pt, own, r in zip(points, strings, rebuilt, strict=True):
        out.append((pack_method(_header(method, fp, pt, h, w, padding), [*own, *an.shared]), r))
    return out


def _parse(method: Method, data: bytes, name: str, fingerprint: str):
    header, strings = unpack_method(data, name)
    check_header(method, header, name, fingerprint)
    if len(strings) < method.n_shared + 1:
        raise BitstreamError(f"{name}: corrupt header: {len(strings)} strings, the method writes more")
    point = method.point_from_side_info(header.side_info)
    k = len(strings) - method.n_shared
    return header, point, strings[:k], strings[k:]


@torch.no_grad()
def decode_bytes(method: Method, data: bytes, name: str = "bitstream", fingerprint: str | None = None):
    """Container bytes -> (the (1, 3, H, W) reconstruction in [0, 1], what was rebuilt, point)."""
    fingerprint = fingerprint or method.fingerprint()
    header, point, own, shared = _parse(method, data, name, fingerprint)
    ph, pw = header.height + sum(header.padding[2:]), header.width + sum(header.padding[:2])
    try:
        state = method.decode_shared(shared, ph, pw)
        (rebuilt,) = method.decode(state, [own], [point])
        x_hat = method.synthesise(rebuilt).clamp(0, 1)
    except BitstreamError:
        raise
    except Exception as exc:
        raise BitstreamError(f"{name}: corrupt bitstream payload ({type(exc).__name__}: {exc})") from None
    return images.crop(x_hat, header.padding), rebuilt, point


def _same(a, b) -> bool:
    return a is None or b is None or (a.shape == b.shape and bool(torch.equal(a.to(b.device), b)))


class MethodEngine:
    """``serial``, or ``fast`` where the method is batched (module docstring)."""

    def __init__(self, name: str = "fast", max_batch: int = 64, self_check: bool = True):
        if name not in ("serial", "fast"):
            raise ValueError(f"unknown engine {name!r}; choose serial or fast")
        self.name, self.max_batch, self.self_check = name, int(max_batch), self_check
        self._checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def batch(self, method: Method) -> int:
        return self.max_batch if self.name == "fast" and method.batched else 1

    def run_image(self, method: Method, rgb: np.ndarray, points: list[Point], fingerprint: str) -> list[MethodResult]:
        if self.batch(method) > 1 and self.self_check and method not in self._checked:
            self._check(method, fingerprint)
            self._checked[method] = True
        return self._run(method, rgb, points, fingerprint, self.batch(method))

    def _check(self, method: Method, fingerprint: str) -> None:
        g = torch.Generator().manual_seed(0)
        rgb = (torch.rand(40, 72, 3, generator=g) * 255).round().to(torch.uint8).numpy()
        points = method.rate_points()
        probe = [points[0], points[-1], *points[1:-1][:2]]
        batched = self._run(method, rgb, probe, fingerprint, self.max_batch)
        alone = self._run(method, rgb, probe, fingerprint, 1)
        for b, a in zip(batched, alone, strict=True):
            if b.data != a.data or not np.array_equal(b.rgb, a.rgb) or b.decode_ok != a.decode_ok:
                raise RuntimeError(
                    f"{method.name}: coding {b.point.label} in a batch differs from coding it alone on this "
                    "machine (the method says batched = True); use --engine serial"
                )

    @torch.no_grad()
    def _run(self, method: Method, rgb: np.ndarray, points: list[Point], fingerprint: str, size: int):
        n = len(points)
        if n == 0:
            return []
        device = method.device
        x = images.rgb8_to_tensor(rgb)
        h, w = x.shape[-2:]
        padding = images.centred_padding(h, w, PAD_MULTIPLE)
        ph, pw = h + sum(padding[2:]), w + sum(padding[:2])
        xp = images.pad(x.to(device), padding)
        fp = bytes.fromhex(fingerprint)
        enc_s, dec_s = [0.0] * n, [0.0] * n
        results: list[MethodResult | None] = [None] * n
        an = state = None
        for start in range(0, n, size):
            batch = list(range(start, min(start + size, n)))
            k = len(batch)
            synchronize(device)
            t0 = time.perf_counter()
            if an is None or size == 1:  # the serial path runs the whole method for every point
                an = method.analyse(xp)
                synchronize(device)
                t_an = time.perf_counter() - t0
                for i in batch if size == 1 else range(n):
                    enc_s[i] += t_an / (1 if size == 1 else n)
                t0 = time.perf_counter()
            strings, rebuilt = method.code(an, [points[i] for i in batch])
            datas = [pack_method(_header(method, fp, points[i], h, w, padding), [*strings[j], *an.shared])
                     for j, i in enumerate(batch)]  # fmt: skip
            synchronize(device)
            for i in batch:
                enc_s[i] += (time.perf_counter() - t0) / k

            t0 = time.perf_counter()
            parsed = [_parse(method, d, "bitstream", fingerprint) for d in datas]
            if state is None or size == 1:
                state = method.decode_shared(parsed[0][3], ph, pw)
                synchronize(device)
                t_s = time.perf_counter() - t0
                for i in batch if size == 1 else range(n):
                    dec_s[i] += t_s / (1 if size == 1 else n)
                first_shared = parsed[0][3]
                t0 = time.perf_counter()
            if any(p[3] != first_shared for p in parsed):
                raise RuntimeError(f"{method.name}: the shared strings differ between rate points of one image")
            got = method.decode(state, [p[2] for p in parsed], [p[1] for p in parsed])
            synchronize(device)
            for i in batch:
                dec_s[i] += (time.perf_counter() - t0) / k
            for j, i in enumerate(batch):
                t0 = time.perf_counter()
                x_hat = images.crop(method.synthesise(got[j]).clamp(0, 1), padding)
                rgb_dec = images.tensor_to_rgb8(x_hat)
                synchronize(device)
                dec_s[i] += time.perf_counter() - t0
                ok = parsed[j][1] == points[i] and _same(got[j], rebuilt[j])
                payload = sum(len(s) for s in strings[j]) + sum(len(s) for s in an.shared)
                results[i] = MethodResult(points[i], datas[j], payload, rgb_dec, ok, 0.0, 0.0)
        for i, r in enumerate(results):
            r.enc_s, r.dec_s = enc_s[i], dec_s[i]
        return results
