"""`qvrf-bench encode -c CKPT (--level N | --gain A) IN OUT`: one image to a real bitstream."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from qvrf_bench.cli._common import add_device, positive_float

    p = sub.add_parser("encode", help="encode an image to a bitstream file",
                       description="Encode an image with a checkpoint at a discrete level or any continuous "
                       "gain (1/bin size; the official 'factor'). Non-RGB images are converted to 8-bit RGB "
                       "with a notice.")  # fmt: skip
    p.add_argument("-c", "--checkpoint", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--level", type=int, help="discrete rate level 0..L-1 (default 0)")
    g.add_argument("--gain", type=positive_float, help="continuous rate: the quantization gain a > 0")
    p.add_argument("input", help="image file (PNG, JPEG, ...)")
    p.add_argument("output", help="bitstream file to write")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qvrf_bench.cli._common import quiet_warnings, resolve_device

    quiet_warnings()
    import os
    import sys
    import time
    from pathlib import Path

    from qvrf_bench import codec, images
    from qvrf_bench.errors import QVRFError
    from qvrf_bench.models.checkpoints import load_model

    img = images.load_image(args.input)
    for note in img.notices:
        print(f"notice: {args.input}: {note}", file=sys.stderr)
    model, _ = load_model(args.checkpoint, device=resolve_device(args.device))
    level = args.level if args.level is not None or args.gain is not None else 0
    if args.gain is None and not 0 <= level < model.num_levels:
        raise QVRFError(f"--level {level} out of range: {args.checkpoint} has levels 0..{model.num_levels - 1}")
    t0 = time.perf_counter()
    enc = codec.encode_tensor(model, images.rgb8_to_tensor(img.rgb), level=None if args.gain else level,
                              gain=args.gain)  # fmt: skip
    dt = time.perf_counter() - t0
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(enc.data)
    os.replace(tmp, out)
    pixels = img.height * img.width
    print(f"{args.input} -> {args.output}: {len(enc.data)} bytes, {8 * len(enc.data) / pixels:.4f} bpp "
          f"(payload {8 * enc.payload_bytes / pixels:.4f} bpp), gain {enc.gain:.4f}, {dt:.2f} s")  # fmt: skip
    return 0
