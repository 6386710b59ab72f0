"""`qvrf-bench info FILE`: what a checkpoint or a bitstream holds."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from qvrf_bench.cli._common import add_max_pixels

    p = sub.add_parser("info", help="describe a checkpoint or a bitstream file")
    p.add_argument("file")
    p.add_argument("--no-complexity", action="store_true",
                   help="skip counting a checkpoint's kMAC/px (a compress and a decompress of a 256x256 input)")  # fmt: skip
    add_max_pixels(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qvrf_bench import files, zoo
    from qvrf_bench.bitstream import container as codec
    from qvrf_bench.errors import QVRFError

    # zoo:NAME and compressai:NAME-METRIC-Q work here as wherever a checkpoint path does
    if args.file.startswith("compressai:"):
        from qvrf_bench.models.pretrained import resolve

        path = resolve(args.file).path
    else:
        path = zoo.resolve(args.file) if zoo.is_zoo(args.file) else Path(args.file)
    if path.is_dir():
        raise QVRFError(f"{path}: is a folder, not a checkpoint or a bitstream")
    if not path.is_file():
        raise QVRFError(f"{path}: no such file")
    head = files.read_head(path)
    # A bitstream by its magic number (a cut one too: unpack says "truncated"), an image by its own.
    if head and codec.MAGIC.startswith(head[:4]) and codec.format_version(head) == codec.METHOD_VERSION:
        h, strings = codec.unpack_method(path.read_bytes(), str(path), args.max_pixels)
        print(f"bitstream {path} (format {codec.METHOD_VERSION}): method {h.method_id}, {h.arch or 'another arch'}, "
              f"{h.width}x{h.height}, side information {h.side_info.hex() or 'none'}, method {h.fingerprint.hex()}, "
              f"padding {h.padding}, strings {list(h.lengths)} bytes, "
              f"{8 * path.stat().st_size / (h.width * h.height):.4f} bpp")  # fmt: skip
        return 0
    if head and codec.MAGIC.startswith(head[:4]):
        h, strings = codec.unpack(path.read_bytes(), str(path), args.max_pixels)
        px = h.width * h.height
        print(f"bitstream {path} (format {h.version}): {h.arch}, {h.width}x{h.height}, "
              f"{'level ' + str(h.level) if h.level is not None else 'continuous'} gain {h.gain:.6g}, "
              f"checkpoint {h.fingerprint.hex()}, padding {h.padding}, strings {list(h.lengths)} bytes, "
              f"{8 * path.stat().st_size / px:.4f} bpp")  # fmt: skip
        return 0
    kind = files.sniff(head)
    if kind:
        raise QVRFError(f"{path}: {kind}, not a checkpoint or a qvrf-bench bitstream")
    from qvrf_bench.cli._common import quiet_warnings

    quiet_warnings()
    from qvrf_bench.methods.codec import model_fingerprint
    from qvrf_bench.models.checkpoints import gains_problem_text, load_model

    model, obj = load_model(args.file if args.file.startswith("compressai:") else path, for_coding=False)
    c = model.config
    gains = ", ".join(f"{g:.4f}" for g in model.gain.detach().tolist())
    print(f"checkpoint {path}: {c.label} (arch {c.arch} = CompressAI {c.zoo_name}, kind {c.kind}, N={c.N}, M={c.M})")
    print(f"  lambdas: {c.lmbdas}\n  gains:   [{gains}]")
    problem = gains_problem_text(model.gain)
    if problem:
        print(f"  cannot code: {problem}")
    print(f"  parameters: {sum(p.numel() for p in model.parameters()):,}; fingerprint {model_fingerprint(model)[:16]}")
    if not args.no_complexity and not problem:
        from qvrf_bench.methods.complexity import RULE, count_model
        from qvrf_bench.models.registry import prepare_for_coding

        cx = count_model(prepare_for_coding(model))
        print(f"  complexity: {cx.text()}\n    rule: {RULE}")
    if "training" in obj:
        t = obj["training"]
        print(f"  training state: step {t.get('step')}, stage {t.get('stage')}")
    if "meta" in obj:
        print(f"  made with: {obj['meta']}")
    return 0
