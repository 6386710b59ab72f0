"""QVRF (and the suite's fixed-rate models) as a method of the contract (methods/base.py).

The rate points are the checkpoint's levels and any gain a > 0 (the official ``factor``); the side
information is the level (255 for a continuous gain) and the float32 gain, five bytes, exactly the
fields the version-2 container carries. The coding is models/latent.py, the same code every
model's compress runs, so a model measured through this method gives the same y and z strings as
through codec.py (tested). ``container=3`` (the default, ``--method qvrf=CKPT``) wraps them in the
method contract's container; ``container=2`` in codec.py's, byte for byte what ``codec.encode``
writes: that is how ``-c CHECKPOINT`` (and ``--method qvrf-v2=CHECKPOINT``) code the suite's own
checkpoints, so their zoo numbers and existing run folders stay byte for byte.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import torch
from torch import Tensor

from qvrf_bench import images
from qvrf_bench.bitstream import rans
from qvrf_bench.bitstream.container import N_STRINGS, string_lengths_problem
from qvrf_bench.bitstream.gains import check_gain, gain_problem
from qvrf_bench.errors import BitstreamError
from qvrf_bench.methods.base import Analysis, Method, Point, Unpacked
from qvrf_bench.models import latent
from qvrf_bench.models.qvrf import trained_gains

_SIDE = struct.Struct(">Bf")
_NO_LEVEL = 255


def level_for_step(kind: str, stage: int, levels: int, seed: int, step: int) -> int:
    """The rate level trained at (0-based) step ``step``.

    Fixed-rate: 0 (its only level). Stage 1: L-1, the largest lambda ([QRAF]). Stages 2-3: uniform
    over 0..L-1, one draw per batch, from a generator seeded with (seed, step) -- the same draw as
    the official ``random.randint`` in distribution, and reproducible across a resume without
    carrying any state.
    """
    if kind == "fixed":
        return 0
    if stage <= 1:
        return levels - 1
    return random.Random(f"qvrf-level:{seed}:{step}").randrange(levels)


class QVRFMethod(Method):
    method_id = "qvrf"
    decode_check = "latent"
    batched = True
    n_shared = 1  # the z string: QVRF never scales z

    def __init__(self, model, name: str | None = None, container: int = 3, padding: str = "centred"):
        if container not in (2, 3):
            raise ValueError(f"container must be 2 or 3 (got {container})")
        if padding not in images.PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(images.PADDINGS)} (got {padding!r})")
        self.container, self.padding = container, padding
        self.model = self.module = model
        self.arch = model.config.arch
        # not the label alone: a run may measure the same file as a checkpoint (-c) too
        self.name = name or f"{model.config.label}-method"
        self.kind = model.config.kind  # qvrf / fixed: what the checkpoint is, via -c or --method

    def complexity(self) -> dict | None:
        from qvrf_bench.methods.complexity import count_model

        return count_model(self.model).to_dict()

    def point_columns(self, point: Point) -> dict:
        return {"gain": self.gain(point)}

    def bytes_per_point(self, analysis: Analysis, pixels: int) -> int:
        # ~8 latent-sized float32 tensors live per point in a batch (y*a, symbols, indexes, y_hat,
        # the decoder's copies); the AR loop adds its padded buffers, of the same order.
        return 8 * analysis.state.y[0].numel() * 4

    def cross_decode_within(self, encoder, decoder, point: Point) -> bool:
        """The second decoder recovered the encoder's quantization symbols: max |y_2 - y_1| * gain <
        1/2, so its latent lies in the encoder's cells (the image differs by float noise at most)."""
        import numpy as np

        return bool(np.max(np.abs(decoder - encoder)) * self.gain(point) < 0.5)

    @torch.no_grad()
    def self_check(self, fingerprint: str) -> int | None:
        """What batching QVRF relies on, checked on this machine on a probe image:

        - the autoregressive step is tile invariant (else: one point per batch, with a warning);
        - the z string does not depend on the gain (QVRF never scales z): the model's own
          ``compress`` at two gains gives the shared string;
        - points coded in a batch give the bytes, images and decode checks of the model's own
          ``compress`` / ``decompress`` (codec.py, the CompressAI path), one point at a time, with
          CompressAI's rANS coder (the batch uses bitstream/rans.py's where it is built).
        """
        import warnings

        from qvrf_bench.methods import codec
        from qvrf_bench.methods.engine import run_points
        from qvrf_bench.models.autoregressive import tile_invariance_ok

        model, limit = self.model, None
        if latent.family(model) == "autoregressive" and not tile_invariance_ok(model):
            warnings.warn(f"{self.arch}: the autoregressive step is not batch invariant on this machine; "
                          "the engine codes one rate point at a time for this model", RuntimeWarning, stacklevel=3)  # fmt: skip
            limit = 1
        rgb = images.probe_image(40, 72)
        x = images.rgb8_to_tensor(rgb)
        padding = images.padding_for(*rgb.shape[:2], how=self.padding)  # as the engine pads for this method
        xp = images.pad(x.to(self.device), padding)
        z = latent.analyse(model, xp).z_string
        top = float(model.level_gain(model.num_levels - 1))
        for gain in (0.5, top):
            if model.compress(xp, torch.tensor(gain, dtype=torch.float32, device=self.device))["strings"][1][0] != z:
                raise RuntimeError(f"{self.arch}: the z string depends on the gain; batching needs it not to")
        points = [self.rate_points()[0], self.continuous_point(0.37), self.continuous_point(top * 1.3)]
        points += [self.continuous_point(0.5 + 0.7 * i) for i in range(latent.rows_per_point(model))]
        got = run_points(self, rgb, points, fingerprint, limit or len(points))
        for pt, r in zip(points, got, strict=True):
            # the reference is the model's own compress/decompress (any registered architecture);
            # container 2 must moreover be byte for byte what codec.encode writes
            g = torch.tensor(self.gain(pt), dtype=torch.float32, device=self.device)
            with rans.compressai_coder("the self-check's reference"):  # and CompressAI's own rANS coder
                ref = model.compress(xp, g)
                dec = model.decompress(ref["strings"], ref["shape"], g)
            u = self.unpack(r.data, "probe", fingerprint)
            same = [*u.strings, *u.shared] == [s[0] for s in ref["strings"]]
            if self.container == 2:
                same = same and r.data == codec.encode_tensor(model, x, level=pt.level if pt.value is None else None,
                                                              gain=pt.value, fingerprint=fingerprint,
                                                              padding=self.padding).data  # fmt: skip
            x_ref = images.crop(dec["x_hat"], padding)
            if not (same and np.array_equal(r.rgb, images.tensor_to_rgb8(x_ref)) and r.decode_ok
                    and torch.equal(dec["y_hat"], ref["y_hat"])):  # fmt: skip
                raise RuntimeError(f"{self.arch}: coding {pt.label} in a batch differs from the model's own "
                                   "compress on this machine; use --engine serial")  # fmt: skip
        return limit

    def rate_points(self) -> list[Point]:
        lm = self.model.config.lmbdas
        return [Point(f"level={s}", s, None, float(lm[s])) for s in range(self.model.num_levels)]

    def continuous_point(self, value: float) -> Point:
        gain = check_gain(float(np.float32(value)), "gain")
        return Point(f"gain={gain:.4f}", None, gain, None)

    def continuous_range(self) -> tuple[float, float]:
        """The trained gains (lowest and highest level): where a rate search looks."""
        return trained_gains(self.model)

    def fingerprint(self) -> str:
        """The checkpoint's fingerprint (codec.py), as every other qvrf-bench tool prints it."""
        from qvrf_bench.methods.codec import model_fingerprint

        return model_fingerprint(self.model)

    def gain(self, point: Point) -> float:
        if point.value is not None:
            return point.value
        return float(np.float32(float(self.model.level_gain(point.level))))

    def side_info(self, point: Point) -> bytes:
        return _SIDE.pack(_NO_LEVEL if point.level is None else point.level, self.gain(point))

    def point_from_side_info(self, data: bytes) -> Point:
        if len(data) != _SIDE.size:
            raise BitstreamError(f"corrupt header: QVRF side information of {len(data)} bytes, not {_SIDE.size}")
        level, gain = _SIDE.unpack(data)
        if level == _NO_LEVEL:
            problem = gain_problem(gain)
            if problem:
                raise BitstreamError(f"corrupt header: gain {problem}")
            return self.continuous_point(gain)
        if level >= self.model.num_levels:
            raise BitstreamError(f"corrupt header: level {level} is not one of 0..{self.model.num_levels - 1}")
        point = self.rate_points()[level]
        if gain != self.gain(point):
            raise BitstreamError(f"corrupt header: gain {gain:.7g} is not level {level}'s")
        return point

    def strings_problem(self, strings: list[bytes]) -> str | None:
        # the checks format 2 makes (container.unpack): y and z, in whole rANS words

        if len(strings) != N_STRINGS:
            return f"string count is {len(strings)}, not {N_STRINGS} (y and z)"
        return string_lengths_problem([len(s) for s in strings])

    def pack(self, point: Point, strings: list[bytes], height: int, width: int, padding, fingerprint: str) -> bytes:
        if self.container == 3:
            return super().pack(point, strings, height, width, padding, fingerprint)
        from qvrf_bench.methods import codec

        header = codec.Header(self.arch, point.level, self.gain(point), bytes.fromhex(fingerprint), height, width,
                              tuple(padding), codec.latent_shapes(height, width)[1], tuple(len(s) for s in strings))  # fmt: skip
        return codec.pack(header, strings)

    def unpack(self, data: bytes, name: str, fingerprint: str, max_pixels: int | None = None) -> Unpacked:
        if self.container == 3:
            return super().unpack(data, name, fingerprint, max_pixels)
        from qvrf_bench.methods import codec

        header, strings = codec.unpack(data, name, max_pixels or codec.MAX_PIXELS)
        codec.check_header(self.model, header, name, fingerprint)
        point = self.rate_points()[header.level] if header.level is not None else self.continuous_point(header.gain)
        return Unpacked(point, strings[:1], strings[1:], header.height, header.width, header.padding)

    def _gains(self, points: list[Point]) -> Tensor:
        return torch.tensor([self.gain(p) for p in points], dtype=torch.float32, device=self.device)

    def analyse(self, x: Tensor) -> Analysis:
        an = latent.analyse(self.model, x)
        return Analysis([an.z_string], an)

    def code(self, analysis: Analysis, points: list[Point]):
        an = analysis.state
        strings, y_hat = latent.code_latent(self.model, an.y, an.params, self._gains(points))
        return [[s] for s in strings], [y_hat[i : i + 1] for i in range(len(points))]

    def decode_shared(self, shared: list[bytes], height: int, width: int):
        return latent.hyper_synthesis(self.model, shared[0], (height // 64, width // 64))

    def decode(self, state, strings: list[list[bytes]], points: list[Point]) -> list[Tensor]:
        y_hat = latent.decode_latent(self.model, [s[0] for s in strings], state, self._gains(points))
        return [y_hat[i : i + 1] for i in range(len(points))]

    def synthesise(self, rebuilt: Tensor) -> Tensor:
        return self.model.g_s(rebuilt)

    def config(self) -> dict:
        cfg = self.model.config.to_dict()
        return cfg if self.padding == "centred" else {**cfg, "padding": self.padding}  # the default: as before

    def prepare(self) -> None:
        from qvrf_bench.models.registry import prepare_for_coding

        prepare_for_coding(self.model)


def make(checkpoint: str | None = None, device: str = "cpu", container: int = 3) -> QVRFMethod:
    """``--method qvrf_bench.methods.qvrf:make=CHECKPOINT`` (or ``--method qvrf=CHECKPOINT``)."""
    from qvrf_bench.models.checkpoints import load_model

    if checkpoint is None:
        raise ValueError("the qvrf method needs a checkpoint (qvrf=PATH or qvrf=zoo:NAME)")
    model, _ = load_model(checkpoint, device=device)
    return QVRFMethod(model, container=container)


def make_v2(checkpoint: str | None = None, device: str = "cpu") -> QVRFMethod:
    """``--method qvrf-v2=CHECKPOINT``: QVRF writing codec.py's version-2 container, as ``-c CHECKPOINT``
    does (and the cross-decode worker's factory for ``-c`` rows)."""
    return make(checkpoint, device, container=2)


class QVRFTraining(QVRFMethod):
    """QVRF's training rules on the contract: one run = one fixed-rate anchor or one QVRF stage.

    - ``kind="fixed"``: the anchor's single level (a = 1), noise proxy, its own lambda.
    - stage 1: level L-1 (the largest lambda) at a = gain[0] detached (= 1 with the official
      gains), noise proxy. Validation: that level only, at the same a (the trained objective).
    - stage 2: a uniform random level per step (one draw from (seed, step): train/state.py), a =
      gain[s] (a_0, or the pinned level's, frozen; the others learned unless the gains are fixed), noise proxy. Validation:
      every level.
    - stage 3: as stage 2 with the straight-through quantizer (``quant="ste"``); the autoregressive
      models run the exact serial STE loop (slow, but what the decoder does).

    The gain vector is a parameter group of its own (``"gain"``) at ``gain_lr`` (default lr * a_0:
    Adam's step ignores the gradient's scale, so a gain vector normalised to a_0 = c would otherwise
    move c times too fast, relatively; with the official a_0 = 1 it is the official lr).
    """

    trainable = True
    knob_name = "gain"

    def __init__(self, model, stage: int = 2, gain_lr_factor: float | None = None, pinned_level: int = 0):
        super().__init__(model, name=model.config.label)
        fixed = model.config.kind == "fixed"
        # the official gain rules' stage: a fixed-rate model trains like stage 1 (a = gain[0])
        self.stage = 1 if fixed else int(stage)
        self.training_stage = 0 if fixed else self.stage
        self.quant = "ste" if self.stage == 3 else "noise"
        self.pinned_level = model.check_level(pinned_level)
        self.gain_lr_factor = gain_lr_factor if gain_lr_factor is not None else float(model.gain.detach()[0].abs())

    def training_point(self, step: int, seed: int) -> Point:
        level = level_for_step(self.kind, self.stage, self.model.num_levels, seed, step)
        return Point(f"level={level}", level, None, float(self.model.lmbdas[level]))

    def validation_points(self) -> list[Point]:
        points = self.rate_points()  # a fixed-rate model has one
        return points[-1:] if self.stage == 1 else points

    def _gain(self, point: Point) -> Tensor:
        if self.model.training:
            return self.model.train_gain(point.level, stage=self.stage, pinned=self.pinned_level)
        # validation: what the step trains (stage 1: a = gain[0]), else the level's inference gain
        return self.model.gain.detach()[0] if self.stage == 1 else self.model.level_gain(point.level)

    def knob(self, point: Point) -> float:
        return float(self._gain(point).detach())

    def training_forward(self, x: Tensor, point: Point) -> dict:
        return self.model(x, gain=self._gain(point), quant=self.quant if self.model.training else "round")

    def parameter_groups(self) -> dict:
        groups = {"main": [], "gain": [], "aux": []}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                groups["aux" if name.endswith(".quantiles") else "gain" if name == "gain" else "main"].append(p)
        return groups

    def lr_factors(self) -> dict[str, float]:
        return {"gain": self.gain_lr_factor}

    def aux_loss(self) -> Tensor:
        return self.model.aux_loss()

    def training_notices(self, validation: list[dict]) -> list[str]:
        if not self.model.gain.requires_grad:
            return []
        gains = self.model.gain.detach().tolist()
        out = [f"gain of level {s} reached the 1e-4 clamp and no longer trains (lower --gain-lr)"
               for s, g in enumerate(gains) if s != self.pinned_level and g <= 1e-4]  # fmt: skip
        for s in range(1, len(gains)):
            if not gains[s] > gains[s - 1]:
                out.append(f"gain of level {s} ({gains[s]:.4g}) is not above level {s - 1}'s ({gains[s - 1]:.4g}): "
                           "the codec refuses gains that do not increase (the rate levels crossed; a shorter "
                           "run, or --pinned-level at the level the model started from, keeps them apart)")  # fmt: skip
        return out
