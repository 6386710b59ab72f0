"""CompressAI's rANS coder over arrays: the y strings of every model, several streams at a time.

CompressAI's ``BufferedRansEncoder`` / ``RansDecoder`` take the symbols, the indexes and the CDF
table as Python lists, and pybind converts them on every call: for a sweep point of a Kodak image
that is 196,608 symbols and indexes each way, and the autoregressive decoder calls it once per
wavefront group and stream (141 groups x 35 rate points per image), so the conversion, not the
arithmetic, was most of the entropy coding's time (bench/README "rans_coder.py"). ``rans.c`` is
the same coder (CompressAI's ``encode_with_indexes`` + ``flush`` and ``decode_stream``, on ryg_rans's
rans64) over numpy arrays: the table goes in once, all streams of a wavefront group are read in one
call, and every read and write is bounds-checked (past a string's end the decoder reads zeros, as
CompressAI's decoder does from the zero padding its callers give it: the same symbols for any bytes).

The same arithmetic: the same bytes from the same symbols, the same symbols from the same bytes.
tests/bitstream/test_rans.py compares both ways with CompressAI's coder on random tables, escape-
coded values included, and every sweep's self-check compares a probe's strings with CompressAI's
(methods/qvrf.py). The C file is compiled on first use with the system's C compiler into a cache
folder (``QVRF_BENCH_CACHE``, else ``$XDG_CACHE_HOME/qvrf-bench``, else ``~/.cache/qvrf-bench``),
keyed by the source's hash. Without a compiler, with ``QVRF_BENCH_RANS=compressai``, or inside
:func:`compressai_coder`, :func:`backend` says so and the callers use CompressAI's coder (the same
bytes, slower).

Torch-free, like the rest of this package.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("rans.c")
_ERRORS = {2: "a table index outside the table (corrupt)", 4: "the output buffer is too small"}  # fmt: skip


class CorruptStreamError(ValueError):
    """Indexes outside the table: a caller's error (any bytes decode to some symbols). Not a
    user-facing error by itself: the caller knows the file's name (methods/engine.py names it)."""


_I64 = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_U64 = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")
_I32 = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_U32 = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")


def _cache_dir() -> Path:
    if os.environ.get("QVRF_BENCH_CACHE"):
        return Path(os.environ["QVRF_BENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qvrf-bench"


def _compile(source: Path) -> Path:
    """The shared library for ``source``, compiled once per source hash (atomic: parallel shard
    processes may compile at the same moment; the last rename wins, the files are the same)."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    flags = ["-O2", "-shared", "-fPIC", "-std=c99"]
    where = f"{sys.platform} {platform.machine()}".encode()
    key = hashlib.sha256(source.read_bytes() + " ".join(cc + flags).encode() + where).hexdigest()[:16]
    suffix = ".dll" if sys.platform == "win32" else ".so"
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / "qvrf-bench"):
        target = folder / f"rans-{key}{suffix}"
        if target.exists():
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=suffix, dir=folder)
            os.close(fd)
        except OSError:
            continue  # not writable: the next folder
        try:
            subprocess.run([*cc, *flags, "-o", tmp, str(source)], check=True, capture_output=True, timeout=120)
            os.replace(tmp, target)
            return target
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise OSError("no writable cache folder")


@lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL | None, str]:
    if os.environ.get("QVRF_BENCH_RANS", "").lower() == "compressai":
        return None, "compressai (QVRF_BENCH_RANS=compressai)"
    try:
        try:
            lib = ctypes.CDLL(str(_compile(SOURCE)))
        except OSError:  # a damaged file in the cache: built again, once
            Path(_compile(SOURCE)).unlink(missing_ok=True)
            lib = ctypes.CDLL(str(_compile(SOURCE)))
    except (OSError, subprocess.SubprocessError) as e:
        detail = e.stderr.decode(errors="replace").strip().splitlines()[:1] if getattr(e, "stderr", None) else [str(e)]
        return None, f"compressai (the C coder did not build: {detail[0] if detail else type(e).__name__})"
    lib.rans_init.argtypes = [ctypes.c_int, _U32, _I64, _I64, _U64, _I64]
    lib.rans_init.restype = ctypes.c_int
    lib.rans_decode.argtypes = [ctypes.c_int, _U32, _I64, _U64, _I64, ctypes.c_int64, _I32, _I32, ctypes.c_int64,
                                _I32, _I32, ctypes.c_int32, _I32, ctypes.POINTER(ctypes.c_int32)]  # fmt: skip
    lib.rans_decode.restype = ctypes.c_int
    lib.rans_encode.argtypes = [ctypes.c_int64, _I32, _I32, _I32, ctypes.c_int64, _I32, _I32, ctypes.c_int32, _U32,
                                ctypes.c_int64, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]  # fmt: skip
    lib.rans_encode.restype = ctypes.c_int
    return lib, "c"


_forced: list[str] = []  # compressai_coder() nesting


def backend() -> str:
    """'c' when the C coder is in use, else 'compressai (why)'."""
    if _forced:
        return _forced[-1]
    return _library()[1]


@contextmanager
def compressai_coder(why: str = "asked for"):
    """CompressAI's coder inside the block (a reference to compare with; not thread-safe)."""
    _forced.append(f"compressai ({why})")
    try:
        yield
    finally:
        _forced.pop()


def _loaded() -> ctypes.CDLL:
    lib, why = _library()
    if lib is None:
        raise RuntimeError(f"the C rANS coder is not available: {why}")
    return lib


def _tables(cdf, cdf_length, offset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tables as the C functions take them: int32, C-ordered; CDF rows [K, L], lengths and offsets [K]."""
    cdf, length, offset = (np.ascontiguousarray(a, dtype=np.int32) for a in (cdf, cdf_length, offset))
    return cdf, length.reshape(-1), offset.reshape(-1)


def encode(symbols: np.ndarray, indexes: np.ndarray, cdf: np.ndarray, cdf_length: np.ndarray,
           offset: np.ndarray) -> list[bytes]:  # fmt: skip
    """One string per row of ``symbols`` / ``indexes`` ([B, n] int32): for each row the bytes of
    CompressAI's ``BufferedRansEncoder.encode_with_indexes`` then ``flush``. The caller checks that
    the symbols are codable (models/qvrf.py ``check_coder_input``), as with CompressAI's encoder."""
    lib = _loaded()
    sym = np.ascontiguousarray(symbols, dtype=np.int32)
    idx = np.ascontiguousarray(indexes, dtype=np.int32)
    if sym.shape != idx.shape or sym.ndim != 2:
        raise ValueError(f"symbols and indexes must be [B, n] alike, got {list(sym.shape)} and {list(idx.shape)}")
    cdf, length, off = _tables(cdf, cdf_length, offset)
    n = sym.shape[1]
    # at most one word per coded part: a symbol and up to 1 + 8 escape parts, then the final state
    words = np.empty(10 * n + 2, dtype=np.uint32)
    first, failed = ctypes.c_int64(0), ctypes.c_int64(-1)
    out = []
    for b in range(sym.shape[0]):
        err = lib.rans_encode(n, sym[b], idx[b], cdf, cdf.shape[1], length, off, len(length), words, len(words),
                              ctypes.byref(first), ctypes.byref(failed))  # fmt: skip
        if err:
            raise ValueError(f"rANS encoder, string {b}: {_ERRORS.get(err, f'error {err}')} (symbol {failed.value})")
        out.append(words[first.value :].astype("<u4", copy=False).tobytes())
    return out


class StreamsDecoder:
    """Decoders for several streams that advance together: ``decode(indexes)`` reads
    ``indexes.shape[1]`` symbols from every stream, as one ``RansDecoder.decode_stream`` per stream
    would. ``cdf`` is CompressAI's ``quantized_cdf`` ([K, L] int32), ``cdf_length`` and ``offset``
    its [K] companions. Past a string's end it reads zeros (module docstring), so any bytes decode as CompressAI's
    decoder decodes them zero-padded; raises :class:`CorruptStreamError` on an index outside the table."""

    def __init__(self, strings: list[bytes], cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray):
        self._lib = lib = _loaded()
        # CompressAI reads a stream as 32-bit words; its encoder writes whole words.
        padded = [s + b"\0" * (-len(s) % 4) for s in strings]
        self._words = np.frombuffer(b"".join(padded), dtype="<u4").astype(np.uint32, copy=False)
        sizes = np.array([len(s) // 4 for s in padded], dtype=np.int64)
        self._end = np.cumsum(sizes).astype(np.int64)
        start = (self._end - sizes).astype(np.int64)
        self._state = np.zeros(len(strings), dtype=np.uint64)
        self._next = np.zeros(len(strings), dtype=np.int64)
        self._cdf, self._cdf_length, self._offset = _tables(cdf, cdf_length, offset)
        lib.rans_init(len(strings), self._words, start, self._end, self._state, self._next)

    def decode(self, indexes: np.ndarray) -> np.ndarray:
        idx = np.ascontiguousarray(indexes, dtype=np.int32)
        if idx.ndim != 2 or idx.shape[0] != len(self._state):
            raise ValueError(f"indexes must be [{len(self._state)}, n], got {list(idx.shape)}")
        out = np.empty_like(idx)
        failed = ctypes.c_int32(-1)
        err = self._lib.rans_decode(
            len(self._state), self._words, self._end, self._state, self._next, idx.shape[1], idx, self._cdf,
            self._cdf.shape[1], self._cdf_length, self._offset, len(self._cdf_length), out, ctypes.byref(failed),
        )  # fmt: skip
        if err:
            raise CorruptStreamError(f"y string {failed.value}: {_ERRORS.get(err, f'decoder error {err}')}")
        return out
