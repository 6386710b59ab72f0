"""The decode fuzz test's worker process (tests/bitstream/test_fuzz_decode.py starts it).

Reads one JSON case per line on stdin: {"id", "arch", "data" (base64)}; writes the bytes to a
file, runs ``qvrf-bench decode`` and ``qvrf-bench info`` on it through the CLI's own entry point,
in this process (so a case costs a decode, not a Python start-up), and answers one JSON line per
case on the protocol pipe: return codes, what went to stdout / stderr, the decoded PNG's size, the
files left in the scratch folder, the time taken. A crash or a hang kills this process, not the
test session: the parent notices, and reruns that case alone in a fresh one.

Usage: python fuzz_worker.py CHECKPOINTS.json SCRATCH_DIR MAX_PIXELS
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path


def run_cli(argv: list[str]) -> dict:
    from qvrf_bench.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # a traceback is a finding: report it, keep serving
            rc, err = None, io.StringIO(err.getvalue() + traceback.format_exc())
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "seconds": time.perf_counter() - t0}


def main() -> None:
    checkpoints = json.loads(Path(sys.argv[1]).read_text())
    scratch = Path(sys.argv[2])
    max_pixels = sys.argv[3]
    # The protocol gets its own copy of stdout; anything a library prints at the C level goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import torch

    torch.set_num_threads(1)
    from qvrf_bench.methods import codec  # noqa: F401  (import once, before the first case is timed)

    print(json.dumps({"ready": True}), file=proto)
    for line in sys.stdin:
        case = json.loads(line)
        for p in scratch.iterdir():
            p.unlink()
        src, out = scratch / "case.qvrf", scratch / "out.png"
        src.write_bytes(base64.b64decode(case["data"]))
        ckpt = checkpoints[case["arch"]]
        dec = run_cli(["decode", "-c", ckpt, "--max-pixels", max_pixels, "--device", "cpu", str(src), str(out)])
        size = None
        if dec["rc"] == 0 and out.is_file():
            from PIL import Image

            with Image.open(out) as im:
                size = list(im.size)
        dec.update(size=size, left=sorted(p.name for p in scratch.iterdir() if p.name not in ("case.qvrf", "out.png")))
        info = run_cli(["info", "--max-pixels", max_pixels, str(src)])
        print(json.dumps({"id": case["id"], "decode": dec, "info": info}), file=proto)


if __name__ == "__main__":
    main()
