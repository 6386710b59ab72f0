"""`qvrf-bench`: one console script, one subcommand per user action.

Each subcommand lives in its own module under ``qvrf_bench.cli`` and exposes
``register(subparsers)`` (argparse only: no heavy imports at module top, so ``--help`` is fast)
and ``run(args) -> int``. A :class:`~qvrf_bench.errors.QVRFError` becomes one line on stderr and
exit status 2, never a traceback. A reader that goes away (``qvrf-bench info F | head -1``) ends
the command quietly with status 141, as a SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from qvrf_bench import __version__
from qvrf_bench.errors import QVRFError

# Order is the order shown in --help.
COMMANDS = [
    "init",
    "encode",
    "decode",
    "update",
    "info",
    "zoo",
    "train",
    "sweep",
    "merge",
    "anchors",
    "compare",
    "report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qvrf-bench",
        description="Variable-rate learned image compression (QVRF on CompressAI): models, training, "
        "real-bitstream sweeps, BD-rate analysis and reports.",
    )
    parser.add_argument("--version", action="version", version=f"qvrf-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"qvrf_bench.cli.{name}")
        except ModuleNotFoundError as exc:  # a command not written yet must not break the others
            if exc.name == f"qvrf_bench.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (train --nproc reruns it)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler, not at exit
        return code
    except QVRFError as exc:
        print(f"qvrf-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qvrf-bench {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141  # 128 + SIGPIPE: what `yes | head -1` reports


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests capture stdout)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
