"""Cross-device decode check: decode every bitstream again in another process, on another device or
with another thread count, and compare the decoded latent with the encoder's.

The failure learned codecs are best known for is a bitstream that decodes to garbage elsewhere: the
entropy parameters (h_s output; for autoregressive models also the context model) must be bit-equal
on both sides, and floating-point kernels differ between devices, libraries and thread counts. A
sweep decodes on the device that encoded (methods/engine.py's decode check); ``sweep --decode-device DEV``
and/or ``--decode-threads N`` adds a second decoder in a separate process, started once per sweep,
and records per row ``cross_decode_ok`` (the latent that process decoded equals the encoder's, bit
for bit) and ``cross_decode_device`` (where it ran).

What a row records (sweep.py): ``cross_decode_ok`` -- the second decoder recovered the encoder's
quantization symbols (max |y_2 - y_1| * gain < 1/2: the decoded latent lies in the encoder's
quantization cells, so the image differs at most by floating-point noise); ``cross_decode_exact``
-- its latent and its 8-bit image are bit-identical to the encoder's and the local decoder's;
``cross_decode_psnr_db`` -- PSNR of its image against the local decoder's (inf when identical).
A mean-scale model whose h_s rounds differently under another thread count gives ok and not exact
(the means move by an ulp); wrong symbols (the entropy parameters picked another table) give not ok
and an image that is garbage.

Every learned codec is a method (``-c CKPT`` is QVRF writing the version-2 container, the spec
``qvrf-v2=CKPT``), decoded by its own factory in the worker from the same spec. Its quantization
cells are its own business (``Method.cross_decode_within``): QVRF's is the test above; another
method's by default bit equality of what the second decoder rebuilt (the latent, or the image: the
method's ``decode_check``) with what the encoder says it must rebuild; for ``decodes`` methods,
that the bitstream decoded at all.

Protocol (this module is also the worker: ``python -m qvrf_bench.sweep.crossdecode --device D --threads N``):
one JSON line per request ``{"method": SPEC, "n": LEN}`` (a ``-c`` checkpoint's spec is ``qvrf-v2=PATH``)
followed by LEN bytes of container on stdin; per answer one JSON line ``{"y": [SHAPE], "image": [H,
W]}`` followed by the float32 latent (what a method rebuilt; shape null when it rebuilds nothing to
compare) and the uint8 image as raw bytes, or ``{"error": TEXT}``. The worker keeps each method loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from qvrf_bench import images, metrics


def describe(device: str, threads: int | None) -> str:
    return f"{device}, {threads} thread{'s' if threads != 1 else ''}" if threads else device


class CrossDecoder:
    """The sweep's side: one worker process for the whole sweep."""

    def __init__(self, device: str = "cpu", threads: int | None = None):
        self.device, self.threads = device, threads
        cmd = [sys.executable, "-m", "qvrf_bench.sweep.crossdecode", "--device", device]
        if threads:
            cmd += ["--threads", str(int(threads))]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.where = describe(device, threads)

    def decode(self, method: str, data: bytes) -> dict:
        """The worker's answer for one container of the method ``method`` (a ``--method`` spec; a
        ``-c`` checkpoint is ``qvrf-v2=PATH``): {"y": float32 array or None, "image": uint8 array}
        or {"error": ...}."""
        if self.proc.poll() is not None:
            return {"error": f"the cross-decode worker exited (status {self.proc.returncode})"}
        try:
            self.proc.stdin.write(json.dumps({"method": str(method), "n": len(data)}).encode() + b"\n")
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            if not line:
                return {"error": "the cross-decode worker exited"}
            head = json.loads(line)
            if "error" in head:
                return head
            y_shape, (h, w) = head["y"], head["image"]
            y = None
            if y_shape is not None:
                y = np.frombuffer(self.proc.stdout.read(4 * int(np.prod(y_shape))), np.float32).reshape(y_shape)
            img = np.frombuffer(self.proc.stdout.read(h * w * 3), np.uint8).reshape(h, w, 3)
        except (BrokenPipeError, OSError, ValueError) as exc:
            return {"error": f"the cross-decode worker is gone ({exc})"}
        return {"y": y, "image": img}

    def check(self, spec: str, method, point, data: bytes, rebuilt, rgb_local: np.ndarray) -> dict:
        """The row's columns for one container of ``method`` (built from ``spec``) at ``point``, plus
        ``notice`` on failure: ok is the method's ``cross_decode_within`` (QVRF: the latent lies in
        the encoder's quantization cells; by default bit equality; nothing to compare for a
        ``decodes`` method: decoding is the check)."""
        enc = None if method.decode_check == "decodes" else rebuilt
        return self._compare(self.decode(spec, data), enc, rgb_local,
                             lambda y1, y2: method.cross_decode_within(y1, y2, point))  # fmt: skip

    def _compare(self, answer: dict, enc, rgb_local: np.ndarray, within) -> dict:
        """The columns from the worker's answer: ``within(encoder's, second)`` decides ok; exact is
        bit equality of the latent (when there is one to compare) and of the image."""

        out = {"cross_decode_device": self.where}
        if "error" in answer:
            return {**out, "cross_decode_ok": False, "cross_decode_exact": False,
                    "notice": f"cross-decode failed: {answer['error']}"}  # fmt: skip
        img = answer["image"]
        same_shape = img.shape == rgb_local.shape
        if enc is None:
            ok = same_latent = True
        else:
            y1 = (enc.detach().to("cpu").float() + 0.0).numpy()
            y2 = answer["y"]
            comparable = y2 is not None and y1.shape == y2.shape
            y2 = y2 + np.float32(0.0) if comparable else y2
            ok, same_latent = comparable and within(y1, y2), comparable and bool(np.array_equal(y1, y2))
        ok = same_shape and bool(ok)
        exact = same_shape and same_latent and bool(np.array_equal(img, rgb_local))
        psnr = metrics.psnr_rgb(rgb_local, img) if same_shape else float("nan")
        return {**out, "cross_decode_ok": ok, "cross_decode_exact": exact, "cross_decode_psnr_db": psnr}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _serve(device: str, threads: int | None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from qvrf_bench.devices import resolve_device
    from qvrf_bench.methods.engine import decode_bytes
    from qvrf_bench.methods.registry import make

    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    methods: dict[str, object] = {}
    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0
        req = json.loads(line)
        data = stdin.read(int(req["n"]))
        try:
            if req["method"] not in methods:
                methods[req["method"]] = make(req["method"], device=str(dev))
            x_hat, y_hat, _ = decode_bytes(methods[req["method"]], data)
            y = None if y_hat is None else y_hat.detach().to("cpu").float().contiguous().numpy()
            img = np.ascontiguousarray(images.tensor_to_rgb8(x_hat))
        except Exception as exc:  # a row's failure, reported to the sweep, never the worker's end
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            out.write(json.dumps({"error": error}).encode() + b"\n")
            out.flush()
            continue
        out.write(
            json.dumps({"y": None if y is None else list(y.shape), "image": list(img.shape[:2])}).encode() + b"\n"
        )
        if y is not None:
            out.write(y.tobytes())
        out.write(img.tobytes())
        out.flush()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="cross-decode worker (see qvrf_bench/sweep/crossdecode.py)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    sys.exit(_serve(a.device, a.threads))
