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
    except BrokenPipeError:
        _silence_stdout()
        return 141  # 128 + SIGPIPE: what `yes | head -1` reports
    except OSError as exc:
        # The file system's errors (no space, name too long, is a folder, permission, not a folder)
        # are the user's environment, not a bug: one line naming the file, exit 2. The writers
        # (files.atomic_output, the store's parts) remove their temporaries on the way out.
        # QVRF_BENCH_DEBUG=1 shows the traceback instead.
        if _debug():
            raise
        print(f"qvrf-bench {args.command}: error: {os_error_text(exc)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # torch.save reports a failed write (e.g. a full disk) as a RuntimeError from its zip writer
        text = str(exc)
        if _debug() or not ("PytorchStreamWriter" in text or "inline_container" in text):
            raise
        print(f"qvrf-bench {args.command}: error: writing a checkpoint failed (is the disk full?): "
              f"{text.splitlines()[0][:200]}", file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print(f"qvrf-bench {args.command}: interrupted", file=sys.stderr)
        return 130


def _debug() -> bool:
    import os

    return os.environ.get("QVRF_BENCH_DEBUG", "") not in ("", "0")


def os_error_text(exc: OSError) -> str:
    """``FILE: what went wrong`` for an OSError, in one line."""
    what = exc.strerror or str(exc) or type(exc).__name__
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(str(n) for n in names)}: {what}" if names else what


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
