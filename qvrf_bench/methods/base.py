"""The variable-rate method contract: what a method must say and do to be swept, checked and trained.

A *method* is one trained codec whose rate is chosen at coding time (QVRF's gain, a channel-wise
gain vector, CompressAI VBR's quantization step) or a fixed-rate model with a single rate point.
The suite measures it with real bitstreams in the version-3 container (container.py); nothing in
the sweep, the engine or the training loop of this package looks inside a method.

What a method offers (:class:`Method`):

Rate points
    :meth:`rate_points` the discrete points a default sweep measures (levels), and
    :meth:`continuous_point` any point between them, from one float (a method without continuous
    rates raises), and :meth:`continuous_values`, the floats a default sweep measures between levels;
    :meth:`continuous_range`, ``knob_scale`` and ``rate_falls_with_knob`` let the rate search
    (``sweep --target-bpp``) find the point that meets a target. A :class:`Point` carries a label unique within the
    method (the result rows' ``rate_point``), its level (or None) and continuous value (or None), and
    the lambda it was trained for (None between levels).
Side information
    :meth:`side_info` the bytes a point puts in the bitstream, of any length (up to 65535), and
    :meth:`point_from_side_info` back (to an equal Point: the engine checks it); the decoder knows nothing else about the rate. It must raise
    :class:`~qvrf_bench.errors.BitstreamError` for bytes it did not write.
Coding, split so an engine can share the rate-independent work
    :meth:`analyse` (once per image: everything the rate does not change, e.g. g_a, the hyper-latent
    string and h_s; ``n_shared`` strings that every point shares, 0 if none), :meth:`code` (a list of points -> per point its strings and what the decoder
    must rebuild), :meth:`decode_shared` (once per image on the decoder side, from the shared
    strings), :meth:`decode` (a list of points -> what was rebuilt) and :meth:`synthesise`.
    ``decode_check`` says what "rebuilt" is: ``"latent"`` (the quantized latent; the check is bit
    equality with the encoder's, as the suite's own models), ``"image"`` (the reconstruction, bit
    equality with the encoder's) or ``"decodes"`` (nothing to compare: the row says the bitstream
    decoded, no more). ``batched = True`` promises that one call with many points gives each point
    exactly what a call with that point alone gives (so the fast engine may batch them); the engine
    tests it on a probe image before it relies on it.
Container
    :meth:`pack` / :meth:`unpack`: the version-3 container (container.py) unless the method has
    a format of its own (QVRF can write the version-2 one its zoo numbers are recorded with).
Identity
    ``method_id`` (stable; written in every bitstream), ``name`` (the rows' ``method``), ``arch`` (the
    rows' ``arch``: one of the built-in architectures to be compared with their anchors), and
    :meth:`fingerprint` (sha256 of everything that decides the bytes: a bitstream is only decoded by
    the method that wrote it).
Training (optional, ``trainable = True``)
    :meth:`training_point` the point of a step (seeded: the same for every process of a run),
    :meth:`training_forward` the differentiable forward at that point (CompressAI's dict with
    ``x_hat`` and ``likelihoods``), the lambda from the point, :meth:`parameter_groups`
    (``"main"``, optional ``"aux"`` and any other named group with its own learning-rate factor,
    :meth:`lr_factors`), :meth:`aux_loss`, :meth:`validation_points`, what the logs say
    (``knob_name``, :meth:`knob`, ``training_stage``, :meth:`training_notices`), and
    :meth:`state_dict` / :meth:`load_state_dict`. train/loop.py is the one loop that runs it, for
    the suite's own anchors and QVRF stages (methods/qvrf.py ``QVRFTraining``) as for a user's method.

The images a method sees are (1, 3, H, W) float tensors in [0, 1], padded (centred, zeros) to a
multiple of 64; the engine crops and rounds to 8 bits.

A factory ``make(checkpoint=None, device="cpu") -> Method`` is how the CLI builds one
(``--method my_pkg.my_module:make[=CHECKPOINT]``, or a name in the ``qvrf_bench.methods`` entry-point
group); methods/registry.py resolves both. :func:`save_method` / :func:`read_method_file` give a
method a checkpoint file (loaded with ``weights_only=True``) without writing its own format.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from qvrf_bench.bitstream.container import MAX_PIXELS, MethodHeader, pack_method, unpack_method
from qvrf_bench.errors import BitstreamError, CheckpointError

DECODE_CHECKS = ("latent", "image", "decodes")
METHOD_FILE = "qvrf-bench-method"  # the format tag of save_method files


@dataclass(frozen=True)
class Point:
    """One rate point of a method."""

    label: str  # unique within the method: the rows' rate_point ("level=3", "t=2.5000")
    level: int | None = None
    value: float | None = None  # the continuous knob, None for a level
    lmbda: float | None = None  # the lambda a level was trained for


@dataclass
class Unpacked:
    """A container read back: the point its side information names, the point's own strings and the
    shared ones, and the original size with its padding."""

    point: Point
    strings: list[bytes]
    shared: list[bytes]
    height: int
    width: int
    padding: tuple[int, int, int, int]


@dataclass
class Analysis:
    """The rate-independent half of encoding one image."""

    shared: list[bytes]  # strings every point of the image shares (they go last in each container)
    state: Any  # the method's own (e.g. y and h_s's output)


class Method(ABC):
    """A variable-rate method (module docstring). Subclasses set the class attributes and implement
    the abstract methods; training ones also set ``trainable`` and implement the training part."""

    method_id: str = ""
    name: str = ""
    arch: str = ""
    decode_check: str = "latent"
    padding: str = "centred"  # images.PADDINGS: how the engine pads the image to the coder's multiple
    batched: bool = False
    n_shared: int = 1  # how many strings every point of an image shares (they go last in a container)
    trainable: bool = False
    module: nn.Module | None = None  # the method's parameters, if any (device, fingerprint, state dict)

    # --- rate points ----------------------------------------------------------------------------

    @abstractmethod
    def rate_points(self) -> list[Point]: ...

    def continuous_point(self, value: float) -> Point:
        raise NotImplementedError(f"{self.name}: no continuous rate points")

    def continuous_values(self) -> list[float]:
        """The continuous points a default sweep measures (none by default)."""
        return []

    # What a rate search (``sweep --target-bpp``; ratecontrol.py) needs of the continuous knob: its
    # range (None: no search), its scale ("log": a gain or a step; "linear": a position between
    # levels) and its direction (the rate grows with the knob, unless it is a quantization step).
    knob_scale: str = "log"
    rate_falls_with_knob: bool = False

    def continuous_range(self) -> tuple[float, float] | None:
        return None

    @abstractmethod
    def side_info(self, point: Point) -> bytes: ...

    @abstractmethod
    def point_from_side_info(self, data: bytes) -> Point: ...

    # --- coding ---------------------------------------------------------------------------------

    @abstractmethod
    def analyse(self, x: Tensor) -> Analysis: ...

    @abstractmethod
    def code(self, analysis: Analysis, points: list[Point]) -> tuple[list[list[bytes]], list[Tensor | None]]: ...

    @abstractmethod
    def decode_shared(self, shared: list[bytes], height: int, width: int) -> Any:
        """The decoder's rate-independent state from the shared strings; ``height``/``width`` are the
        padded size (the method derives its latent sizes from them)."""

    @abstractmethod
    def decode(self, state: Any, strings: list[list[bytes]], points: list[Point]) -> list[Tensor]: ...

    def synthesise(self, rebuilt: Tensor) -> Tensor:
        """What was rebuilt -> the padded reconstruction in [0, 1]; the identity for image methods."""
        return rebuilt

    # --- the container (version 3; a method with a format of its own overrides both) -------------

    def pack(self, point: Point, strings: list[bytes], height: int, width: int, padding, fingerprint: str) -> bytes:
        """One point's container: its own strings, then the shared ones."""

        header = MethodHeader(self.arch, self.method_id, bytes.fromhex(fingerprint), height, width, tuple(padding),
                              self.side_info(point))  # fmt: skip
        return pack_method(header, strings)

    def unpack(self, data: bytes, name: str, fingerprint: str, max_pixels: int | None = None) -> Unpacked:
        """Every header check, then the point from the side information (BitstreamError otherwise)."""

        header, strings = unpack_method(data, name, max_pixels or MAX_PIXELS)
        if header.method_id != self.method_id:
            raise BitstreamError(f"{name}: made by method {header.method_id!r}, not {self.method_id!r}")
        if header.arch and header.arch != self.arch:
            raise BitstreamError(f"{name}: made by a {header.arch} model, this method is {self.arch or 'another'}")
        if header.fingerprint != bytes.fromhex(fingerprint)[:8]:
            raise BitstreamError(
                f"{name}: made by a method with fingerprint {header.fingerprint.hex()}, not this one "
                f"({fingerprint[:16]}); decode it with the checkpoint that encoded it"
            )
        if len(strings) < self.n_shared + 1:
            raise BitstreamError(f"{name}: corrupt header: {len(strings)} strings, the method writes more")
        problem = self.strings_problem(strings)
        if problem:
            raise BitstreamError(f"{name}: corrupt header: {problem}")
        try:
            point = self.point_from_side_info(header.side_info)
        except BitstreamError as exc:
            raise BitstreamError(f"{name}: {exc}") from None
        k = len(strings) - self.n_shared
        return Unpacked(point, strings[:k], strings[k:], header.height, header.width, header.padding)

    def strings_problem(self, strings: list[bytes]) -> str | None:
        """What is wrong with a container's strings before any of them is decoded (their count, their
        lengths), or None. A method that knows its coder's framing says so here, so that the
        version-3 container refuses what its own format would (QVRF: format 2's checks)."""
        return None

    # --- what an engine asks before it batches, and what a row says --------------------------------

    kind: str = "variable"  # the rows' kind: what the model is (kinds.py), however it came in

    def point_columns(self, point: Point) -> dict:
        """Extra row columns of a point (QVRF: the float32 ``gain`` its bitstream carries)."""
        return {}

    def self_check(self, fingerprint: str) -> int | None:
        """Checks this machine must pass before an engine batches the method (raise if one fails);
        returns the most points per batch it allows (None: no limit of its own). Runs once per
        method, untimed, so it is also the warm-up."""
        return None

    def complexity(self) -> dict | None:
        """Parameters and kMAC/px of the encoder and decoder side (methods/complexity.py's rule), or
        None when the method does not say (the sweep records what it says in run.json)."""
        return None

    def bytes_per_point(self, analysis: Analysis, pixels: int) -> int:
        """Memory one point adds to a batch (the engine's bound): by default ~8 float32 tensors of
        the padded image's size; methods that know better (a latent) say so."""
        return 8 * 3 * pixels * 4

    def cross_decode_within(self, encoder: Any, decoder: Any, point: Point) -> bool:
        """Whether what a second decoder rebuilt (numpy) is what the encoder coded: bit equality by
        default; a latent method may accept any value in the encoder's quantization cells."""
        import numpy as np

        return bool(np.array_equal(encoder, decoder))

    # --- identity -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        if self.module is None:
            return torch.device("cpu")
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def fingerprint(self) -> str:
        """sha256 over the method id and ``module``'s parameters (codec.model_fingerprint's hash)."""
        from qvrf_bench.methods.codec import model_fingerprint

        if self.module is None:
            return hashlib.sha256(self.method_id.encode()).hexdigest()
        return model_fingerprint(self.module, self.method_id.encode())

    def config(self) -> dict:
        """JSON-able settings that rebuild the method with its factory (stored in checkpoints)."""
        return {}

    def prepare(self) -> None:
        """Make the entropy coder's tables from the current parameters (after training or loading);
        CompressAI's ``update(force=True)`` by default."""
        update = getattr(self.module, "update", None)
        if update is not None:
            update(force=True)
        if self.module is not None:
            self.module.eval()

    # --- training -------------------------------------------------------------------------------

    def training_point(self, step: int, seed: int) -> Point:
        raise NotImplementedError(f"{self.name}: not trainable")

    def training_forward(self, x: Tensor, point: Point) -> dict:
        """The differentiable forward at ``point``; in eval mode (validation) with rounding."""
        raise NotImplementedError(f"{self.name}: not trainable")

    # What the training logs say of a point: a column named ``knob_name`` with :meth:`knob`, and a
    # ``stage`` column with ``training_stage`` (0 for a method trained in one go).
    knob_name: str = "value"
    training_stage: int = 0

    def knob(self, point: Point) -> float | None:
        return point.value

    def validation_points(self) -> list[Point]:
        """The points validation measures (in rate order), every level by default."""
        return self.rate_points()

    def training_notices(self, validation: list[dict]) -> list[str]:
        """Warnings after a validation (its rows: level, lmbda, loss, bpp_est, psnr ...), logged once each."""
        return []

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"main": [...], "aux": [...]}`` by default: CompressAI's quantiles go to the aux optimiser."""
        if self.module is None:
            return {"main": []}
        aux = [p for n, p in self.module.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
        ids = {id(p) for p in aux}
        return {"main": [p for p in self.module.parameters() if p.requires_grad and id(p) not in ids], "aux": aux}

    def lr_factors(self) -> dict[str, float]:
        """Learning rate of each non-aux group as a factor of the run's lr (default 1)."""
        return {}

    def aux_loss(self) -> Tensor:
        """CompressAI's aux loss: the sum over every EntropyBottleneck in ``module`` (None: there is none)."""
        from compressai.entropy_models import EntropyBottleneck

        losses = [
            m.loss()
            for m in (self.module.modules() if self.module is not None else ())
            if isinstance(m, EntropyBottleneck)
        ]
        return sum(losses) if losses else None

    def state_dict(self) -> dict:
        return {} if self.module is None else self.module.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        if self.module is not None:
            self.module.load_state_dict(sd)


def save_method(method: Method, path, spec: str, extra: dict | None = None) -> None:
    """A method checkpoint: its factory spec, config and state dict (plain types and tensors only)."""
    from qvrf_bench.models.checkpoints import atomic_save, provenance

    obj = {"format": METHOD_FILE, "spec": spec, "method_id": method.method_id, "config": method.config(),
           "state_dict": method.state_dict(), "provenance": provenance(), **(extra or {})}  # fmt: skip
    atomic_save(obj, path)


def read_method_file(path, method_id: str | None = None) -> dict | None:
    """A :func:`save_method` file's dict (read with weights_only, ``zoo:NAME`` too), None when the
    file is another checkpoint (e.g. a model to start from); ``method_id``: refuse another method's."""
    from qvrf_bench.models.checkpoints import read_file

    obj = read_file(path)
    if obj.get("format") != METHOD_FILE:
        return None
    if method_id is not None and obj.get("method_id") != method_id:
        raise CheckpointError(f"{path}: a checkpoint of method {obj.get('method_id')!r}, not {method_id!r}")
    return obj
