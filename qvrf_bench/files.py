"""Output paths and atomic files for the CLI's single-file outputs, and what kind a file is.

Every command that writes one file (``encode``, ``decode``, ``update``, checkpoints) goes through
here, so an awkward path fails the same way everywhere, and before any work:

- an existing folder, or a path ending in a separator, is a folder: the file goes inside it under
  a default name (the input's stem); a missing folder is created, as are missing parents;
- a parent that is a file, or a folder that cannot be written, is a one-line error;
- an output that is one of the command's inputs (the same file, a hard link or a symlink to it)
  is refused before any work: writing it would destroy the input;
- files are written under ``.NAME.tmp-PID`` in the target folder, then renamed: a failure removes
  the temporary file, and one left by a killed process (its PID no longer alive on this machine)
  is removed by the next write of the same name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from qvrf_bench.errors import QVRFError

TMP_INFIX = ".tmp-"

# Leading bytes of the files a user may hand to the wrong command.
_MAGICS = (
    (b"QVRF", "a qvrf-bench bitstream"),
    (b"CVBR", "a qvrf-bench CompressAI-VBR bitstream"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
)


def sniff(head: bytes) -> str | None:
    """What a file is by its first bytes ("a PNG image", ...), or None when unknown. WebP and AVIF
    are recognised by their RIFF / ftyp boxes."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "an AVIF/HEIF image"
    for magic, what in _MAGICS:
        if head.startswith(magic):
            return what
    return None


def read_head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def output_path(out: str | os.PathLike, default_name: str, what: str = "output", inputs=()) -> Path:
    """The file to write for ``out`` (see the module docstring), its folder created and checked.

    ``inputs``: the paths the command reads; an output that is one of them is refused.
    Raises QVRFError naming the path and the problem; nothing is written but the folder."""
    text = os.fspath(out)
    path = Path(text)
    if text.endswith((os.sep, "/")) or path.is_dir():
        folder, path = path, path / default_name
    else:
        folder = path.parent
    if path.is_dir():
        raise QVRFError(f"{path}: is a folder; give a file name for the {what}")
    refuse_overwriting_inputs(path, inputs, what)
    make_folder(folder, what)
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (same path after symlinks, or the same inode: hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare what the names resolve to
        return Path(a).resolve() == Path(b).resolve()


def refuse_overwriting_inputs(path: str | os.PathLike, inputs, what: str = "output") -> None:
    """QVRFError when ``path`` is one of ``inputs`` (``None`` entries and non-paths are skipped)."""
    for src in inputs:
        if src is None or (isinstance(src, str) and ":" in src and not Path(src).exists()):
            continue  # a zoo:/compressai: name is not a file of the user's
        if same_file(path, src):
            raise QVRFError(f"{path}: is the input {src}; writing the {what} there would destroy it "
                            f"(give another output name)")  # fmt: skip


def check_folder(folder: str | os.PathLike, what: str = "output") -> Path:
    """QVRFError unless ``folder`` is, or can be created as, a writable folder (nothing is created)."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists() and not p.is_dir():
            if p == folder:
                raise QVRFError(f"{folder}: is a file, not a folder: cannot hold the {what}")
            raise QVRFError(f"{folder}: cannot be created for the {what}: {p} is a file, not a folder")
        if p.is_dir():
            if not os.access(p, os.W_OK | os.X_OK):
                raise QVRFError(f"{folder}: cannot write the {what} there (permission denied in {p})")
            break
    return folder


def make_folder(folder: Path, what: str = "output") -> Path:
    """``folder`` created (with its parents) and writable, or QVRFError."""
    folder = check_folder(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QVRFError(f"{folder}: cannot create the folder for the {what} ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise QVRFError(f"{folder}: cannot write the {what} there (permission denied)")
    return folder


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (unknown counts as alive: never delete a live writer's file)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return True
    return True


_DEAD_TEMP = re.compile(r"^\..+" + re.escape(TMP_INFIX) + r"(\d+)$")


def clean_dead_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the hidden ``.NAME.tmp-PID`` files in ``folder`` whose process is gone (a writer killed
    mid-write: this module's and the store's temporaries); returns them. A live writer's files,
    and anything not named so, are left alone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _DEAD_TEMP.match(p.name)
        if m and p.is_file() and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """:func:`clean_dead_temps` in the folder ``path`` is written to (any name: the resume of a run
    may never rewrite the very file a kill interrupted)."""
    return clean_dead_temps(Path(path).parent)


# The longest file name most file systems take (ext4, xfs, btrfs, tmpfs: 255 bytes).
NAME_MAX = 255


def temp_name(path: str | os.PathLike) -> Path:
    """``.NAME.tmp-PID`` beside ``path``; for a name too long to take the prefix and suffix (any legal
    target name must work), NAME is cut and followed by a digest of the whole name."""
    path = Path(path)
    suffix = f"{TMP_INFIX}{os.getpid()}"
    name = path.name
    if len(f".{name}{suffix}".encode()) > NAME_MAX:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = name.encode("utf-8", "surrogateescape")[:100].decode("utf-8", "ignore") + "-" + digest
    return path.with_name(f".{name}{suffix}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write ``path`` through; on success it is fsynced and renamed into
    place, on any failure (or interrupt) removed. Stale temporaries of dead processes go first."""
    path = Path(path)
    clean_stale_temps(path)
    tmp = temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write (a full disk) names no file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks: checkpoints, images, zoo files."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
