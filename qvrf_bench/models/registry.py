"""Names to builders: ``balle``, ``minnen-mean``, ``minnen``, ``cheng2020`` x ``fixed`` / ``qvrf``.

A ``kind="fixed"`` model is one lambda (one of the 8 fixed-rate anchors); it is the same class as
the QVRF model with a single, frozen gain of 1, i.e. exactly the CompressAI model. A
``kind="qvrf"`` model has L levels (8 by default, 11 as an option).

Default widths (decision 6): fixed-rate models take CompressAI's zoo widths for the quality whose
lambda they are trained at; QVRF models, which cover every rate with one network, take the widest
zoo config (Balle 192/320 as [QRAF]; Minnen 192/320 as CompressAI's VBR port; Cheng2020 N=192).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from qvrf_bench.models import determinism
from qvrf_bench.models.autoregressive import AutoregressiveMixin
from qvrf_bench.models.balle import QVRFScaleHyperprior
from qvrf_bench.models.cheng2020 import QVRFCheng2020Attention
from qvrf_bench.models.minnen import QVRFJointAutoregressive, QVRFMeanScaleHyperprior
from qvrf_bench.models.qvrf import LAMBDAS_8, initial_gains, lambdas_for_levels, scale_table

ARCHS = ("balle", "minnen-mean", "minnen", "cheng2020")
KINDS = ("fixed", "qvrf")

# arch -> (model class, CompressAI zoo name, number of width arguments)
_CLASSES = {
    "balle": (QVRFScaleHyperprior, "bmshj2018-hyperprior"),
    "minnen-mean": (QVRFMeanScaleHyperprior, "mbt2018-mean"),
    "minnen": (QVRFJointAutoregressive, "mbt2018"),
    "cheng2020": (QVRFCheng2020Attention, "cheng2020-attn"),
}

# The joint autoregressive ones (context model; their y symbol order depends on the codec format).
AUTOREGRESSIVE = tuple(a for a, (cls, _) in _CLASSES.items() if issubclass(cls, AutoregressiveMixin))

# CompressAI 1.2.8 zoo widths by quality 1..8 (cheng2020-attn stops at 6; 7-8 reuse N=192).
_ZOO_WIDTHS = {
    "balle": [(128, 192)] * 5 + [(192, 320)] * 3,
    "minnen-mean": [(128, 192)] * 4 + [(192, 320)] * 4,
    "minnen": [(192, 192)] * 4 + [(192, 320)] * 4,
    "cheng2020": [(128, 128)] * 3 + [(192, 192)] * 5,
}
_QVRF_WIDTHS = {"balle": (192, 320), "minnen-mean": (192, 320), "minnen": (192, 320), "cheng2020": (192, 192)}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored in every checkpoint)."""

    arch: str
    kind: str
    N: int
    M: int
    lmbdas: list[float]
    gains_init: list[float]
    learn_gains: bool = True
    zoo_name: str = field(default="")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def label(self) -> str:
        """A short method name, e.g. ``balle-qvrf-192x320`` or ``balle-fixed-0.0483``."""
        widths = f"{self.N}" if self.arch == "cheng2020" else f"{self.N}x{self.M}"
        if self.kind == "fixed":
            return f"{self.arch}-fixed-{widths}-l{self.lmbdas[0]:g}"
        return f"{self.arch}-qvrf{len(self.lmbdas)}-{widths}"


def default_widths(arch: str, kind: str, lmbda: float | None = None) -> tuple[int, int]:
    if kind == "qvrf":
        return _QVRF_WIDTHS[arch]
    if lmbda in LAMBDAS_8:
        return _ZOO_WIDTHS[arch][LAMBDAS_8.index(lmbda)]
    return _QVRF_WIDTHS[arch]


def make_config(
    arch: str,
    kind: str = "qvrf",
    N: int | None = None,
    M: int | None = None,
    levels: int = 8,
    lmbdas: list[float] | None = None,
    lmbda: float | None = None,
    gains: list[float] | None = None,
    ref_lmbda: float | None = None,
    learn_gains: bool = True,
) -> ModelConfig:
    if arch not in _CLASSES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "fixed":
        if lmbda is None:
            raise ValueError("a fixed-rate model needs its lambda (e.g. --lambda 0.0483)")
        lmbdas, gains, learn_gains = [float(lmbda)], [1.0], False
    else:
        lmbdas = list(lmbdas) if lmbdas is not None else list(lambdas_for_levels(levels))
        gains = list(gains) if gains is not None else initial_gains(lmbdas, ref_lmbda)
    dN, dM = default_widths(arch, kind, lmbdas[0] if kind == "fixed" else None)
    N = int(N or dN)
    M = N if arch == "cheng2020" else int(M or dM)
    return ModelConfig(arch, kind, N, M, [float(v) for v in lmbdas], [float(g) for g in gains],
                       bool(learn_gains), _CLASSES[arch][1])  # fmt: skip


def build_model(config: ModelConfig) -> nn.Module:
    """A fresh (randomly initialised) model for ``config``, with ``model.config`` set."""
    cls = _CLASSES[config.arch][0]
    kwargs = dict(lmbdas=config.lmbdas, gains=config.gains_init, learn_gains=config.learn_gains)
    model = cls(N=config.N, **kwargs) if config.arch == "cheng2020" else cls(N=config.N, M=config.M, **kwargs)
    model.config = config
    model.qvrf_scale_table = scale_table(max(config.gains_init))
    determinism.install(model)  # entropy parameters independent of the thread count
    return model


def create(arch: str, kind: str = "qvrf", **kwargs) -> nn.Module:
    """``create("balle", "qvrf", N=32, M=48)``: config and model in one call."""
    return build_model(make_config(arch, kind, **kwargs))


def prepare_for_coding(model: nn.Module, force: bool = True) -> nn.Module:
    """Build the entropy coder tables (CDFs) from the current parameters; eval mode."""
    table = scale_table(max(float(model.gain.detach().abs().max()), max(model.config.gains_init)))
    model.update(scale_table=table, force=force)
    return model.eval()
