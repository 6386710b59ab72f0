"""`qvrf-bench encode -c CKPT (--level N | --gain A) IN OUT`: one image to a real bitstream."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from qvrf_bench.cli._common import add_device

    p = sub.add_parser("encode", help="encode an image to a bitstream file",
                       description="Encode an image with a checkpoint at a discrete level or any continuous "
                       "gain (1/bin size; the official 'factor'). Non-RGB images are converted to 8-bit RGB "
                       "with a notice.")  # fmt: skip
    p.add_argument("-c", "--checkpoint", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--level", type=int, help="discrete rate level 0..L-1 (default 0)")
    g.add_argument("--gain", type=float,
                   help="continuous rate: the quantization gain a, within the supported range [0.00043, 64]")  # fmt: skip
    p.add_argument("input", help="image file (PNG, JPEG, ...)")
    p.add_argument("output", help="bitstream file to write, or a folder (then NAME.qvrf inside it; a path ending in / "
                   "is created)")  # fmt: skip
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qvrf_bench import files
    from qvrf_bench.gains import check_gain

    # What can be checked without the work goes first, before torch is imported: the gain, the
    # output path.
    if args.gain is not None:
        check_gain(args.gain, "--gain")
    out = files.output_path(args.output, Path(args.input).stem + ".qvrf", "bitstream")

    from qvrf_bench.cli._common import quiet_warnings, resolve_device

    quiet_warnings()
    import sys
    import time

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
    files.write_bytes(out, enc.data)
    pixels = img.height * img.width
    print(f"{args.input} -> {out}: {len(enc.data)} bytes, {8 * len(enc.data) / pixels:.4f} bpp "
          f"(payload {8 * enc.payload_bytes / pixels:.4f} bpp), gain {enc.gain:.4f}, {dt:.2f} s")  # fmt: skip
    return 0
