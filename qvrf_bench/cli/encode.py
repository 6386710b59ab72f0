"""`qvrf-bench encode`: one image to a real bitstream, at a level, a gain, or a target rate/quality.

qvrf-bench encode -c CKPT --level 3 IN OUT      # a discrete level
qvrf-bench encode -c CKPT --gain 0.42 IN OUT    # any continuous rate
qvrf-bench encode -c CKPT --bpp 0.3 IN OUT      # the gain that meets 0.3 bpp (ratecontrol.py)
qvrf-bench encode -c CKPT --bytes 20000 IN OUT
qvrf-bench encode -c CKPT --psnr 32 IN OUT
qvrf-bench encode --codec jpeg --bpp 0.3 IN OUT # a classical codec's quality, the same rule
qvrf-bench encode --method qvrf=CKPT --bpp 0.3 IN OUT  # a method's continuous knob, the same rule
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from qvrf_bench.cli._common import add_device, add_image_limits, add_padding, positive_float, positive_int

    p = sub.add_parser("encode", help="encode an image to a bitstream file (a level, a gain, or a target bpp/bytes/PSNR)",
                       description="Encode an image with a checkpoint at a discrete level, any continuous gain (1/bin "
                       "size; the official 'factor'), or a target: --bpp/--bytes find the gain whose file is not above "
                       "the target and at most --tolerance below it (relative, default 1 %%); --psnr the gain whose "
                       "PSNR-RGB is not below the target and at most --tolerance dB above it (default 0.05). The "
                       "header records the gain used, so decoding is unchanged. --codec jpeg|webp|avif|jpeg2000 does "
                       "the same with a classical codec's knob. Non-RGB images are converted to 8-bit RGB with a "
                       "notice.")  # fmt: skip
    p.add_argument("-c", "--checkpoint", help="checkpoint path or zoo:NAME (not with --codec)")
    p.add_argument("--method", metavar="WHAT[=CKPT]",
                   help="a method of the method contract (as sweep --method), at --level, --value or a target "
                   "(--bpp/--bytes/--psnr: its continuous knob, searched as a gain); format 3")  # fmt: skip
    add_padding(p, "a checkpoint (-c)")
    p.add_argument("--codec", metavar="NAME",
                   help="a classical codec (jpeg, webp, avif, jpeg2000 or a registered one) instead of a checkpoint "
                   "(needs a target)")  # fmt: skip
    g = p.add_mutually_exclusive_group()
    g.add_argument("--level", type=int, help="discrete rate level 0..L-1 (default 0)")
    g.add_argument("--gain", type=float,
                   help="continuous rate: the quantization gain a, within the supported range [0.00043, 64]")  # fmt: skip
    g.add_argument("--value", type=float, help="a --method's continuous rate point (its own knob)")
    g.add_argument("--bpp", type=positive_float, help="target rate in bits per pixel (real bytes of the whole file)")
    g.add_argument("--bytes", type=positive_int, help="target file size in bytes")
    g.add_argument("--psnr", type=positive_float, help="target PSNR-RGB in dB")
    p.add_argument("--tolerance", type=float, default=None,
                   help="target window: relative below a --bpp/--bytes target (default 0.01), dB above a --psnr "
                   "target (default 0.05)")  # fmt: skip
    p.add_argument(
        "--extrapolate",
        action="store_true",
        help="let a target search leave the model's trained gains (level 0 .. L-1) for the supported range",
    )
    p.add_argument("input", help="image file (PNG, JPEG, ...)")
    p.add_argument("output", help="bitstream file to write, or a folder (then NAME.qvrf, or NAME.jpg/.webp/.avif with "
                   "--codec, inside it; a path ending in / is created)")  # fmt: skip
    add_device(p)
    add_image_limits(p)
    p.set_defaults(func=run)


def _target(args):
    from qvrf_bench.sweep.ratecontrol import Target

    for kind in ("bpp", "bytes", "psnr"):
        if getattr(args, kind) is not None:
            return Target(kind, float(getattr(args, kind)), args.tolerance)
    return None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qvrf_bench import files
    from qvrf_bench.bitstream.gains import check_gain
    from qvrf_bench.cli._common import method_file
    from qvrf_bench.errors import QVRFError

    # What can be checked without the work goes first, before torch is imported: the arguments,
    # the gain, the output path.
    if args.method:
        return _run_method(args)
    if args.value is not None:
        raise QVRFError("--value is a --method's continuous point; a checkpoint takes --gain")
    if (args.codec is None) == (args.checkpoint is None):
        raise QVRFError("give a checkpoint (-c CKPT) or a classical codec (--codec jpeg|webp|avif|jpeg2000), not both")
    codec = None
    if args.codec:
        from qvrf_bench.peers import CLASSICAL

        if args.codec not in CLASSICAL:
            raise QVRFError(f"--codec {args.codec!r}: unknown codec; choose from {', '.join(CLASSICAL)}")
        codec = CLASSICAL[args.codec]
    target = _target(args)
    if args.codec and target is None:
        raise QVRFError(f"--codec {args.codec} needs a target (--bpp, --bytes or --psnr)")
    if args.codec and (args.level is not None or args.gain is not None or args.extrapolate):
        raise QVRFError("--level, --gain and --extrapolate apply to a checkpoint, not to --codec")
    if target is None and (args.tolerance is not None or args.extrapolate):
        raise QVRFError("--tolerance and --extrapolate apply to a target (--bpp, --bytes or --psnr)")
    if args.gain is not None:
        check_gain(args.gain, "--gain")
    suffix = (codec.suffix or f".{codec.name}") if codec else ".qvrf"
    out = files.output_path(args.output, Path(args.input).stem + suffix, "bitstream",
                            inputs=(args.input, args.checkpoint, method_file(args.method)))  # fmt: skip

    if args.codec:
        return _run_codec(args, target, out)

    from qvrf_bench.cli._common import quiet_warnings, resolve_device

    quiet_warnings()
    import sys
    import time

    from qvrf_bench import images
    from qvrf_bench.methods import codec
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.sweep import ratecontrol

    img = images.load_image(args.input, args.max_pixels, args.max_image_bytes)
    for note in img.notices:
        print(f"notice: {args.input}: {note}", file=sys.stderr)
    model, _ = load_model(args.checkpoint, device=resolve_device(args.device))
    t0 = time.perf_counter()
    if target is not None:
        from qvrf_bench.methods.qvrf import QVRFMethod

        res, data, point = ratecontrol.method_to_target(QVRFMethod(model, container=2, padding=args.padding),
                                                        img.rgb, target,
                                                        f"{args.checkpoint} on {args.input}",
                                                        extrapolate=args.extrapolate)  # fmt: skip
        gain, payload = point.value, _payload(data)
    else:
        level = args.level if args.level is not None or args.gain is not None else 0
        if args.gain is None and not 0 <= level < model.num_levels:
            raise QVRFError(f"--level {level} out of range: {args.checkpoint} has levels 0..{model.num_levels - 1}")
        enc = codec.encode_tensor(model, images.rgb8_to_tensor(img.rgb), level=None if args.gain else level,
                                  gain=args.gain, padding=args.padding)  # fmt: skip
        data, gain, payload = enc.data, enc.gain, enc.payload_bytes
    dt = time.perf_counter() - t0
    files.write_bytes(out, data)
    pixels = img.height * img.width
    line = (f"{args.input} -> {out}: {len(data)} bytes, {8 * len(data) / pixels:.4f} bpp "
            f"(payload {8 * payload / pixels:.4f} bpp), gain {gain:.4f}, {dt:.2f} s")  # fmt: skip
    if target is not None:
        line += _target_text(res)
    print(line)
    if target is not None and not res.met:
        print(f"notice: {args.input}: {res.note()}", file=sys.stderr)
    return 0


def _run_method(args) -> int:
    import sys
    import time
    from pathlib import Path

    from qvrf_bench import files, images
    from qvrf_bench.cli._common import method_file, quiet_warnings, resolve_device
    from qvrf_bench.errors import QVRFError

    if args.checkpoint or args.codec or args.gain is not None:
        raise QVRFError("--method codes at --level, --value or a target (no -c, --codec or --gain)")
    target = _target(args)
    if target is None and (args.tolerance is not None or args.extrapolate):
        raise QVRFError("--tolerance and --extrapolate apply to a target (--bpp, --bytes or --psnr)")
    out = files.output_path(args.output, Path(args.input).stem + ".qvrf", "bitstream",
                            inputs=(args.input, method_file(args.method)))  # fmt: skip
    quiet_warnings()
    from qvrf_bench.methods import make
    from qvrf_bench.methods.engine import encode_image

    img = images.load_image(args.input, args.max_pixels, args.max_image_bytes)
    for note in img.notices:
        print(f"notice: {args.input}: {note}", file=sys.stderr)
    method = make(args.method, device=str(resolve_device(args.device)))
    levels = method.rate_points()
    if target is not None:
        from qvrf_bench.sweep import ratecontrol

        t0 = time.perf_counter()
        try:
            res, data, point = ratecontrol.method_to_target(method, img.rgb, target, f"{method.name} on {args.input}",
                                                            extrapolate=args.extrapolate)  # fmt: skip
        except (ValueError, NotImplementedError) as exc:
            raise QVRFError(f"--method {args.method}: {exc}") from None
        files.write_bytes(out, data)
        print(f"{args.input} -> {out}: {len(data)} bytes, {8 * len(data) / (img.height * img.width):.4f} bpp, "
              f"{method.name} {point.label}, {time.perf_counter() - t0:.2f} s{_target_text(res)}")  # fmt: skip
        if not res.met:
            print(f"notice: {args.input}: {res.note()}", file=sys.stderr)
        return 0
    if args.value is not None:
        try:
            point = method.continuous_point(args.value)
        except (ValueError, NotImplementedError) as exc:
            raise QVRFError(f"--value {args.value}: {exc}") from None
    else:
        level = args.level or 0
        if not 0 <= level < len(levels):
            raise QVRFError(f"--level {level} out of range: {method.name} has levels 0..{len(levels) - 1}")
        point = levels[level]
    t0 = time.perf_counter()
    ((data, _),) = encode_image(method, img.rgb, [point])
    files.write_bytes(out, data)
    print(f"{args.input} -> {out}: {len(data)} bytes, {8 * len(data) / (img.height * img.width):.4f} bpp, "
          f"{method.name} {point.label}, {time.perf_counter() - t0:.2f} s")  # fmt: skip
    return 0


def _payload(data: bytes) -> int:
    from qvrf_bench.bitstream.container import unpack

    _, strings = unpack(data)
    return sum(len(s) for s in strings)


def _target_text(res) -> str:
    psnr = f", {res.achieved:.3f} dB" if res.target.kind == "psnr" else ""
    return f"{psnr}; target {res.target.text()}: {len(res.tries)} encodes, {'met' if res.met else 'tolerance missed'}"


def _run_codec(args, target, out) -> int:
    import sys
    import time

    from qvrf_bench import files, images
    from qvrf_bench.peers import get_peer
    from qvrf_bench.sweep import ratecontrol

    img = images.load_image(args.input, args.max_pixels, args.max_image_bytes)
    for note in img.notices:
        print(f"notice: {args.input}: {note}", file=sys.stderr)
    peer = get_peer(args.codec)
    t0 = time.perf_counter()
    res, data, knob = ratecontrol.codec_to_target(peer, img.rgb, target)
    dt = time.perf_counter() - t0
    files.write_bytes(out, data)
    pixels = img.height * img.width
    print(f"{args.input} -> {out}: {len(data)} bytes, {8 * len(data) / pixels:.4f} bpp, {args.codec} {peer.knob} "
          f"{int(knob) if peer.knob_integer else f'{knob:.4g}'}, {dt:.2f} s{_target_text(res)}")  # fmt: skip
    if not res.met:
        print(f"notice: {args.input}: {res.note()}", file=sys.stderr)
    return 0
