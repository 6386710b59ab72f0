"""Property-based fuzzing of ``qvrf-bench decode`` (and ``info``) on damaged real bitstreams.

Hypothesis builds each case from a real bitstream of every architecture (a level and a
continuous gain, from the narrow test models) and one to three mutations: a header field set to
any value of its type, a new image size with a padding and hyper-latent size that agree with it
(so the payload is decoded at a shape it was not made for), a cut, bit flips, a string filled with
zeros / ones / noise, a string made longer or shorter (lengths kept consistent), bytes appended.

The property: decode ends within CASE_SECONDS with either exit status 2 and exactly one line on
stderr naming the file, or exit status 0 and a PNG of the size the header states; info likewise
(0, or 2 and one line); no traceback, no file left behind, and the process never crashes.

The cases run in one worker process (tests/fuzz_worker.py: the CLI's own entry point, so a case
costs a decode rather than a Python start-up); a segfault or a hang kills the worker, not the
suite: the case fails, the worker restarts, and the case is rerun alone in a fresh
``python -m qvrf_bench decode`` whose outcome the failure message shows. QVRF_FUZZ_EXAMPLES sets the
number of generated cases (default 250, plus the explicit examples of the issue's table).
"""

from __future__ import annotations

import base64
import json
import math
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import HEAD, small_model
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qvrf_bench.bitstream import container
from qvrf_bench.bitstream.gains import GAIN_MAX, GAIN_MIN
from qvrf_bench.errors import BitstreamError
from qvrf_bench.methods import codec
from qvrf_bench.models import ARCHS
from qvrf_bench.models.checkpoints import save_checkpoint

N_EXAMPLES = int(os.environ.get("QVRF_FUZZ_EXAMPLES", "250"))
MAX_PIXELS = 1 << 20  # the worker's --max-pixels: sizes above are refused, so every case stays quick
CASE_SECONDS = 10.0  # "within a few seconds" on a busy 2-core machine; cases take ~0.05-1 s
HANG_SECONDS = 60.0  # the worker is killed when a case has not answered by then
WORKER = Path(__file__).parents[1] / "fuzz_worker.py"

# field -> (index in HEAD's tuple, struct code); lengths are the two uint32 after the header
FIELDS = {
    "version": (1, "B"), "arch": (2, "B"), "level": (3, "B"), "reserved": (4, "B"), "gain": (5, "f"),
    "height": (7, "I"), "width": (8, "I"), "pad_left": (9, "H"), "pad_right": (10, "H"), "pad_top": (11, "H"),
    "pad_bottom": (12, "H"), "z_h": (13, "H"), "z_w": (14, "H"), "n_strings": (15, "B"),
    "len_y": (None, "I"), "len_z": (None, "I"),
}  # fmt: skip
STREAMS = [(arch, rate) for arch in ARCHS for rate in ("level", "gain")]


# --- cases ------------------------------------------------------------------------------------


def values(code: str):
    if code == "B":
        return st.integers(0, 255)
    if code == "H":
        return st.one_of(st.sampled_from([0, 1, 2, 63, 64, 65535]), st.integers(0, 65535))
    if code == "I":
        return st.one_of(
            st.sampled_from([0, 1, 8, 64, 2**31, 2**32 - 1]), st.integers(0, 4096), st.integers(0, 2**32 - 1)
        )
    edge = [0.0, -0.0, GAIN_MIN, GAIN_MAX, float(np.nextafter(np.float32(GAIN_MAX), np.float32(np.inf))), 1e-30, 1e30]
    return st.one_of(st.sampled_from(edge), st.floats(GAIN_MIN, GAIN_MAX, width=32),
                     st.floats(width=32, allow_nan=True, allow_infinity=True))  # fmt: skip


field_op = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda f: st.tuples(st.just("field"), st.just(f), values(FIELDS[f][1]))
)
mutation = st.one_of(
    field_op,
    st.tuples(st.just("resize"), st.integers(1, 1024), st.integers(1, 1024), st.booleans()),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=8)),
    st.tuples(
        st.just("fill"), st.sampled_from("yz"), st.sampled_from(["zeros", "ones", "noise"]), st.integers(0, 2**16)
    ),
    st.tuples(st.just("restring"), st.sampled_from("yz"), st.integers(-3, 3)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
)
cases = st.tuples(st.sampled_from(STREAMS), st.lists(mutation, min_size=1, max_size=3))


def _split(data: bytes):
    """(header fields, [y, z]) of an intact container, for the mutations that keep it consistent."""
    head = list(HEAD.unpack_from(data))
    ly, lz = struct.unpack_from(">II", data, HEAD.size)
    body = data[HEAD.size + 8 :]
    return head, [body[:ly], body[ly : ly + lz]]


def _join(head, strings) -> bytes:
    return HEAD.pack(*head) + struct.pack(">II", *(len(s) for s in strings)) + b"".join(strings)


def mutate(data: bytes, ops) -> bytes:
    out = bytearray(data)
    for op in ops:
        kind = op[0]
        if kind == "field":
            _, name, value = op
            index, code = FIELDS[name]
            if index is None:
                off = HEAD.size + (0 if name == "len_y" else 4)
                if len(out) >= off + 4:
                    out[off : off + 4] = struct.pack(">I", value)
            elif len(out) >= HEAD.size:
                head = list(HEAD.unpack_from(out))
                head[index] = value
                out[: HEAD.size] = HEAD.pack(*head)
        elif kind == "resize" and len(out) >= HEAD.size + 8:
            _, w, h, centred = op
            head = list(HEAD.unpack_from(out))
            ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
            left = (pw - w) // 2 if centred else 0
            top = (ph - h) // 2 if centred else 0
            head[7:15] = [h, w, left, pw - w - left, top, ph - h - top, ph // 64, pw // 64]
            out[: HEAD.size] = HEAD.pack(*head)
        elif kind == "truncate":
            del out[op[1] % (len(out) + 1) :]
        elif kind == "flip" and out:
            for pos, bit in op[1]:
                out[pos % len(out)] ^= 1 << bit
        elif kind in ("fill", "restring") and _intact(out):
            head, strings = _split(bytes(out))
            i = "yz".index(op[1])
            if kind == "fill":
                n = len(strings[i])
                rng = np.random.default_rng(op[3])
                strings[i] = {"zeros": bytes(n), "ones": b"\xff" * n, "noise": rng.bytes(n)}[op[2]]
            else:
                k = 4 * op[2]
                strings[i] = strings[i][:k] if k < 0 else strings[i] + bytes(np.random.default_rng(k).bytes(k))
            out = bytearray(_join(head, strings))
        elif kind == "append":
            out += op[1]
    return bytes(out)


def _intact(data) -> bool:
    if len(data) < HEAD.size + 8:
        return False
    ly, lz = struct.unpack_from(">II", data, HEAD.size)
    return len(data) == HEAD.size + 8 + ly + lz


# --- the worker -------------------------------------------------------------------------------


class Worker:
    """tests/fuzz_worker.py, restarted after a crash or a hang."""

    def __init__(self, checkpoints: Path, scratch: Path, log: Path):
        self.argv = [sys.executable, str(WORKER), str(checkpoints), str(scratch), str(MAX_PIXELS)]
        self.log_path = log
        self.proc = None
        self.cases = 0
        self.seconds = 0.0

    def start(self) -> None:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env)  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        first = self.lines.get(timeout=300)
        assert first is not None and json.loads(first)["ready"], f"the fuzz worker did not start; see {self.log_path}"

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)  # EOF: the worker died

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def ask(self, case_id: int, arch: str, data: bytes) -> dict:
        """The worker's answer, or {"crashed": returncode} / {"hung": seconds} (then restarted)."""
        t0 = time.perf_counter()
        msg = json.dumps({"id": case_id, "arch": arch, "data": base64.b64encode(data).decode()})
        try:
            self.proc.stdin.write(msg + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=HANG_SECONDS)
        except (BrokenPipeError, queue.Empty):
            line = "hung" if self.proc.poll() is None else None
        self.cases += 1
        self.seconds += time.perf_counter() - t0
        if line is None or line == "hung":
            if self.proc.poll() is None:
                self.proc.kill()
            rc = self.proc.wait()
            self.log.close()
            self.start()
            return {"hung": HANG_SECONDS} if line == "hung" else {"crashed": rc}
        answer = json.loads(line)
        assert answer["id"] == case_id
        return answer


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """Real bitstreams of every architecture (a level and a continuous gain) and their checkpoints."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("fuzz")
    rgb = np.ascontiguousarray(skdata.astronaut()[100:140, 150:222])  # 72x40: y 8x4, z 2x1 after padding
    ckpts, out = {}, {}
    for arch in ARCHS:
        model = small_model(arch)
        ckpts[arch] = str(save_checkpoint(folder / f"{arch}.pt", model))
        out[(arch, "level")] = codec.encode(model, rgb, level=model.num_levels - 1)
        out[(arch, "gain")] = codec.encode(model, rgb, gain=2.5)
    (folder / "checkpoints.json").write_text(json.dumps(ckpts))
    return folder, out


@pytest.fixture(scope="module")
def worker(streams):
    folder, _ = streams
    (folder / "scratch").mkdir()
    w = Worker(folder / "checkpoints.json", folder / "scratch", folder / "worker-stderr.log")
    w.start()
    yield w
    w.stop()
    print(f"\ndecode fuzz: {w.cases} cases in {w.seconds:.1f} s (worker start-ups not counted)", file=sys.stderr)


def rerun_alone(folder: Path, arch: str, data: bytes) -> str:
    """The case in a fresh ``python -m qvrf_bench decode``: its exit status and stderr, for the report."""
    case = folder / "crash-case.qvrf"
    case.write_bytes(data)
    ckpt = json.loads((folder / "checkpoints.json").read_text())[arch]
    cmd = [sys.executable, "-m", "qvrf_bench", "decode", "-c", ckpt, "--max-pixels", str(MAX_PIXELS), str(case),
           str(folder / "crash-case.png")]  # fmt: skip
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=HANG_SECONDS)
        return f"alone: exit status {p.returncode}, stderr {p.stderr[-2000:]!r}; bytes {data.hex()}"
    except subprocess.TimeoutExpired:
        return f"alone: still running after {HANG_SECONDS} s; bytes {data.hex()}"


def one_error_line(result: dict, command: str) -> None:
    lines = result["stderr"].splitlines()
    assert len(lines) == 1, f"{command}: {len(lines)} lines on stderr: {result['stderr']!r}"
    assert lines[0].startswith(f"qvrf-bench {command}: error: ") and "case.qvrf" in lines[0], lines[0]
    assert "Traceback" not in lines[0]


_ids = iter(range(1 << 62))


@settings(max_examples=N_EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(case=cases)
# The table, rows 1-5 and 11, always among the cases.
@example(case=(("balle", "level"), [("field", "z_h", 60000)]))
@example(case=(("minnen", "gain"), [("field", "z_h", 1000), ("field", "z_w", 20)]))
@example(case=(("cheng2020", "level"), [("field", "z_h", 14), ("field", "z_w", 1000)]))
@example(case=(("minnen-mean", "level"), [("field", "z_h", 0), ("field", "z_w", 20)]))
@example(case=(("balle", "gain"), [("field", "pad_left", 60000)]))
@example(case=(("balle", "gain"), [("field", "height", 0)]))
@example(case=(("minnen", "level"), [("field", "gain", math.nan)]))
@example(case=(("cheng2020", "gain"), [("field", "gain", 1e30)]))
@example(case=(("balle", "level"), [("field", "level", 8)]))
@example(case=(("balle", "level"), [("truncate", 20)]))
@example(case=(("minnen", "gain"), [("resize", 1024, 1024, True), ("fill", "y", "ones", 0)]))
@example(case=(("cheng2020", "level"), [("resize", 777, 333, False), ("fill", "z", "noise", 1)]))
def test_decode_never_crashes_hangs_or_lies(worker, streams, case):
    folder, originals = streams
    (arch, rate), ops = case
    data = mutate(originals[(arch, rate)], ops)
    answer = worker.ask(next(_ids), arch, data)
    assert "crashed" not in answer and "hung" not in answer, f"{answer} on {ops}; {rerun_alone(folder, arch, data)}"
    dec, info = answer["decode"], answer["info"]
    assert dec["rc"] in (0, 2), f"decode exit status {dec['rc']}: {dec['stderr']}"
    assert dec["seconds"] < CASE_SECONDS, f"decode took {dec['seconds']:.1f} s on {ops}"
    assert dec["left"] == [], f"files left behind: {dec['left']}"
    try:
        header, _ = container.unpack(data, "case.qvrf", MAX_PIXELS)
    except BitstreamError:
        header = None
    if dec["rc"] == 2:
        one_error_line(dec, "decode")
    else:
        assert header is not None, "decoded a file whose header does not check out"
        assert dec["size"] == [header.width, header.height], (
            f"decoded {dec['size']}, header {header.width}x{header.height}"
        )
        assert dec["stderr"] == "", dec["stderr"]
    assert info["rc"] in (0, 2) and info["seconds"] < CASE_SECONDS, info
    if info["rc"] == 2:
        one_error_line(info, "info")
    assert (info["rc"] == 0) == (header is not None), "info and the header check disagree"
