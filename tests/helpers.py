"""Helpers shared by test modules (importable as ``helpers``: pyproject puts tests/ on the path)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch

from qvrf_bench.models import create, prepare_for_coding

# Narrow test models: (N, M) per architecture (cheng2020 has one width).
WIDTHS = {"balle": (8, 12), "minnen-mean": (8, 12), "minnen": (8, 12), "cheng2020": (12, 12)}


def small_model(arch: str, kind: str = "qvrf", *, seed: int = 0, coding: bool = True, **kw):
    """A narrow model with weights from ``seed``; a fixed one is the lambda 0.0483 model unless told;
    ``coding`` prepares it for real bitstreams (CDF tables)."""
    torch.manual_seed(seed)
    N, M = WIDTHS[arch]
    if kind == "fixed":
        kw.setdefault("lmbda", 0.0483)
    model = create(arch, kind, N=N, M=M, **kw)
    return prepare_for_coding(model) if coding else model


def png16(path, arr: np.ndarray) -> None:
    """A PNG with 16 bits per sample (48-bit RGB or 64-bit RGBA), written by hand: Pillow cannot."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# The container header as the tests craft it (an independent copy of codec's layout: a change there
# must be made here on purpose), and its field names in order.
HEAD = struct.Struct(">4sBBBBf8sII4HHHB")
HEAD_FIELDS = ("magic", "version", "arch", "level", "reserved", "gain", "fp", "h", "w", "pl", "pr", "pt", "pb",
               "zh", "zw", "n")  # fmt: skip


def with_fields(data: bytes, **kw) -> bytes:
    """A bitstream with some header fields replaced (names: HEAD_FIELDS)."""
    f = list(HEAD.unpack_from(data))
    for k, v in kw.items():
        f[HEAD_FIELDS.index(k)] = v
    return HEAD.pack(*f) + data[HEAD.size :]


def run_cli(*args):
    """`qvrf-bench ARGS` in this process (fast), stdout and stderr captured, as a CompletedProcess."""
    import contextlib
    import io
    import subprocess

    from qvrf_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def narrow_vbr(arch, vr_z, seed=0, updated=True):
    """A randomly initialised narrow VBR model whose latents are big enough to cost bits."""
    from compressai.zoo.image_vbr import model_architectures

    torch.manual_seed(seed)
    cls = model_architectures[arch]
    model = cls(8, 12, vr_entbttlnck=True) if vr_z else cls(8, 12)
    with torch.no_grad():
        model.g_a[6].weight.mul_(30.0)
    model.eval()
    if updated:
        model.update(force=True, scale=model.Gain[-1].detach()) if vr_z else model.update(force=True)
    return model
