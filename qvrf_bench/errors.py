"""The one exception type the CLI turns into a one-line message (no traceback)."""


class QVRFError(Exception):
    """A user-facing error: bad input, a wrong checkpoint, a broken file.

    The message must name the file (where there is one) and the problem, in one line.
    """


class ImageError(QVRFError):
    """An image file that cannot be read or converted."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class BitstreamError(QVRFError):
    """A bitstream that is not ours, truncated, or made by another checkpoint."""


class CheckpointError(QVRFError):
    """A checkpoint that cannot be loaded into the requested model."""


class GainError(QVRFError, ValueError):
    """A gain outside the supported range (models/qvrf.py); a ValueError too, for library callers."""


class CoderRangeError(QVRFError, ValueError):
    """Symbols that CompressAI's rANS encoder cannot code safely (see models/qvrf.py)."""
