"""Cross-device decode check: decode every bitstream again in another process, on another device or
with another thread count, and compare the decoded latent with the encoder's.

The failure learned codecs are best known for is a bitstream that decodes to garbage elsewhere: the
entropy parameters (h_s output; for autoregressive models also the context model) must be bit-equal
on both sides, and floating-point kernels differ between devices, libraries and thread counts. A
sweep decodes on the device that encoded (engine.py's decode check); ``sweep --decode-device DEV``
and/or ``--decode-threads N`` adds a second decoder in a separate process, started once per sweep,
and records per row ``cross_decode_ok`` (the latent that process decoded equals the encoder's, bit
for bit) and ``cross_decode_device`` (where it ran).

Protocol (this module is also the worker: ``python -m qvrf_bench.crossdecode --device D --threads N``):
one JSON line per request ``{"checkpoint": PATH, "n": LEN}`` followed by LEN bytes of container on
stdin; one JSON line per answer on stdout, ``{"y": DIGEST, "image": DIGEST}`` or ``{"error": TEXT}``.
The worker keeps each checkpoint loaded. Digests are sha256 over the float32 latent / the 8-bit image.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np


def latent_digest(y_hat) -> str:
    """sha256 of a latent tensor's float32 values on the CPU: equal values, equal digest (-0.0, which
    the encoder's rounding makes and the decoder's integer symbols do not, counts as 0.0, as
    ``torch.equal`` has it)."""
    t = (y_hat.detach().to("cpu").float() + 0.0).contiguous()
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def image_digest(rgb8: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rgb8).tobytes()).hexdigest()


def describe(device: str, threads: int | None) -> str:
    return f"{device}, {threads} thread{'s' if threads != 1 else ''}" if threads else device


class CrossDecoder:
    """The sweep's side: one worker process for the whole sweep."""

    def __init__(self, device: str = "cpu", threads: int | None = None):
        self.device, self.threads = device, threads
        cmd = [sys.executable, "-m", "qvrf_bench.crossdecode", "--device", device]
        if threads:
            cmd += ["--threads", str(int(threads))]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.where = describe(device, threads)

    def decode(self, checkpoint: str, data: bytes) -> dict:
        """The worker's answer for one container: {"y": ..., "image": ...} or {"error": ...}."""
        if self.proc.poll() is not None:
            return {"error": f"the cross-decode worker exited (status {self.proc.returncode})"}
        try:
            self.proc.stdin.write(json.dumps({"checkpoint": str(checkpoint), "n": len(data)}).encode() + b"\n")
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            return {"error": f"the cross-decode worker is gone ({exc})"}
        if not line:
            return {"error": "the cross-decode worker exited"}
        return json.loads(line)

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

    from qvrf_bench import codec, images
    from qvrf_bench.devices import resolve_device
    from qvrf_bench.models.checkpoints import load_model

    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    models: dict[str, object] = {}
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        line = stdin.readline()
        if not line:
            return 0
        req = json.loads(line)
        data = stdin.read(int(req["n"]))
        try:
            if req["checkpoint"] not in models:
                models[req["checkpoint"]] = load_model(req["checkpoint"], device=str(dev))[0]
            model = models[req["checkpoint"]]
            x_hat, y_hat, _ = codec.decode_full(model, data)
            answer = {"y": latent_digest(y_hat), "image": image_digest(images.tensor_to_rgb8(x_hat))}
        except Exception as exc:  # a row's failure, reported to the sweep, never the worker's end
            answer = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="cross-decode worker (see qvrf_bench/crossdecode.py)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    sys.exit(_serve(a.device, a.threads))
