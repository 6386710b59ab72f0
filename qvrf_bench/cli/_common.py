"""Small helpers shared by the CLI modules (argument types, device choice)."""

from __future__ import annotations

import argparse
import warnings


def quiet_warnings() -> None:
    # compressai imports trigger torch.jit deprecation warnings that say nothing to a user.
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch")
    warnings.filterwarnings("ignore", message=".*torch.jit.*")


def resolve_device(name: str) -> str:
    """The device name as torch spells it (see :func:`qvrf_bench.devices.resolve_device`)."""
    from qvrf_bench.devices import resolve_device as resolve

    return str(resolve(name))


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda[:i] (default: auto)")


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text!r}")
    return v


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    # kept equal to codec.MAX_PIXELS (a test checks); not imported, so --help stays fast
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS, metavar="N",
                   help=f"refuse bitstreams whose header claims more pixels (default {MAX_PIXELS:,} = 8192 x 8192)")  # fmt: skip


MAX_PIXELS = 1 << 26
MAX_IMAGE_BYTES = 1 << 30  # = images.MAX_BYTES (a test checks)


def add_padding(p: argparse.ArgumentParser, what: str, note: str = "") -> None:
    """``--padding``: images.PADDINGS, spelled here so that ``--help`` imports nothing heavy."""
    p.add_argument("--padding", choices=("centred", "official"), default="centred",
                   help=f"how {what} pads images to a multiple of 64: centred (CompressAI's eval_model, default) or "
                   "official (right/bottom, as the official QVRF Inference.py); the bitstream header records it, "
                   "decoding needs nothing" + note)  # fmt: skip


def add_image_limits(p: argparse.ArgumentParser) -> None:
    """Read limits for input images (images.load_image): larger inputs are refused before decoding."""
    p.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS, metavar="N",
                   help=f"refuse input images larger than N pixels (default {MAX_PIXELS:,} = 8192 x 8192)")  # fmt: skip
    p.add_argument("--max-image-bytes", type=positive_int, default=MAX_IMAGE_BYTES, metavar="N",
                   help=f"refuse input image files larger than N bytes (default {MAX_IMAGE_BYTES:,})")  # fmt: skip


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return v


def method_file(spec: str | None) -> str | None:
    """The file of ``--method WHAT=FILE`` (an input the output must not overwrite), if any."""
    return spec.split("=", 1)[1] if spec and "=" in spec else None
