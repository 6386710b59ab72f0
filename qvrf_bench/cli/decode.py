"""`qvrf-bench decode -c CKPT IN OUT.png`: a bitstream back to an image."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from qvrf_bench.cli._common import add_device, add_max_pixels

    p = sub.add_parser("decode", help="decode a bitstream file to a PNG",
                       description="Decode a qvrf-bench bitstream with the checkpoint that encoded it (the "
                       "header carries the gain, the size and a checkpoint fingerprint).")  # fmt: skip
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-c", "--checkpoint", help="the checkpoint that encoded it (format 1-2)")
    g.add_argument("--method", metavar="WHAT[=CKPT]", help="the method that encoded it (format 3; as sweep --method)")
    p.add_argument("input", help="bitstream file")
    p.add_argument("output", help="PNG file to write, or a folder (then NAME.png inside it; a path ending in / is "
                   "created)")  # fmt: skip
    add_max_pixels(p)
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qvrf_bench import files
    from qvrf_bench.bitstream import container
    from qvrf_bench.cli._common import method_file
    from qvrf_bench.errors import BitstreamError

    # The file and the output path first, before torch is even imported: a broken header is one
    # line in milliseconds.
    src = Path(args.input)
    if src.is_dir():
        raise BitstreamError(f"{src}: is a folder, not a bitstream file")
    if not src.is_file():
        raise BitstreamError(f"{src}: no such file")
    data = src.read_bytes()
    if args.method:
        container.unpack_method(data, str(src), args.max_pixels)
    else:
        container.unpack(data, str(src), args.max_pixels)
    out = files.output_path(args.output, src.stem + ".png", "decoded image",
                            inputs=(src, args.checkpoint, method_file(args.method)))  # fmt: skip

    from qvrf_bench.cli._common import quiet_warnings, resolve_device

    quiet_warnings()
    import time

    from qvrf_bench import images
    from qvrf_bench.methods import codec
    from qvrf_bench.models.checkpoints import load_model

    if args.method:
        from qvrf_bench.methods import make
        from qvrf_bench.methods.engine import decode_bytes

        method = make(args.method, device=str(resolve_device(args.device)))
        t0 = time.perf_counter()
        x_hat, _, point = decode_bytes(method, data, str(src))
        images.save_png(images.tensor_to_rgb8(x_hat), out)
        print(f"{args.input} -> {out}: {x_hat.shape[-1]}x{x_hat.shape[-2]}, {method.name} {point.label}, "
              f"{time.perf_counter() - t0:.2f} s")  # fmt: skip
        return 0
    model, _ = load_model(args.checkpoint, device=resolve_device(args.device))
    t0 = time.perf_counter()
    x_hat, header = codec.decode_tensor(model, data, str(src), max_pixels=args.max_pixels)
    images.save_png(images.tensor_to_rgb8(x_hat), out)
    print(f"{args.input} -> {out}: {header.width}x{header.height}, gain {header.gain:.4f}, "
          f"{time.perf_counter() - t0:.2f} s")  # fmt: skip
    return 0
