"""`qvrf-bench info FILE`: what a checkpoint or a bitstream holds."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a checkpoint or a bitstream file")
    p.add_argument("file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    from pathlib import Path

    from qvrf_bench import codec
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.models.checkpoints import load_model

    path = Path(args.file)
    if not path.is_file():
        raise QVRFError(f"{path}: no such file")
    head = path.read_bytes()[:4]
    if head == codec.MAGIC:
        h, strings = codec.unpack(path.read_bytes(), str(path))
        px = h.width * h.height
        print(f"bitstream {path} (format {h.version}): {h.arch}, {h.width}x{h.height}, "
              f"{'level ' + str(h.level) if h.level is not None else 'continuous'} gain {h.gain:.6g}, "
              f"checkpoint {h.fingerprint.hex()}, padding {h.padding}, strings {list(h.lengths)} bytes, "
              f"{8 * path.stat().st_size / px:.4f} bpp")  # fmt: skip
        return 0
    model, obj = load_model(path, for_coding=False)
    c = model.config
    gains = ", ".join(f"{g:.4f}" for g in model.gain.detach().tolist())
    print(f"checkpoint {path}: {c.label} (arch {c.arch} = CompressAI {c.zoo_name}, kind {c.kind}, N={c.N}, M={c.M})")
    print(f"  lambdas: {c.lmbdas}\n  gains:   [{gains}]")
    print(
        f"  parameters: {sum(p.numel() for p in model.parameters()):,}; fingerprint {codec.model_fingerprint(model)[:16]}"
    )
    if "training" in obj:
        t = obj["training"]
        print(f"  training state: step {t.get('step')}, stage {t.get('stage')}")
    if "meta" in obj:
        print(f"  made with: {obj['meta']}")
    return 0
