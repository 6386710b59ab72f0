"""Names to builders: ``balle``, ``minnen-mean``, ``minnen``, ``cheng2020`` x ``fixed`` / ``qvrf``.

A ``kind="fixed"`` model is one lambda (one of the 8 fixed-rate anchors); it is the same class as
the QVRF model with a single, frozen gain of 1, i.e. exactly the CompressAI model. A
``kind="qvrf"`` model has L levels (8 by default, 11 as an option).

Architectures register themselves with ``@register_arch`` (models/archs.py) on their class, with
their default widths (decision 6): fixed-rate models take CompressAI's zoo widths for the quality
whose lambda they are trained at; QVRF models, which cover every rate with one network, take the
widest zoo config (Balle 192/320 as [QRAF]; Minnen 192/320 as CompressAI's VBR port; Cheng2020
N=192).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from torch import nn

from qvrf_bench.bitstream.container import ARCH_IDS
from qvrf_bench.models import balle, cheng2020, determinism, minnen  # noqa: F401  (they register themselves)
from qvrf_bench.models.archs import ARCH_SPECS
from qvrf_bench.models.qvrf import LAMBDAS_8, initial_gains, lambdas_for_levels, scale_table

# Importing the model modules registers them (models/archs.py). ARCHS lists the built-in ones: those
# with a frozen bitstream id (container.ARCH_IDS), in its order (the papers'); a class registered
# later (a user's, a test's) builds like them.
ARCHS = tuple(a for a in ARCH_IDS if a in ARCH_SPECS)
KINDS = ("fixed", "qvrf")

# The joint autoregressive ones (context model; their y symbol order depends on the codec format).
AUTOREGRESSIVE = tuple(a for a, spec in ARCH_SPECS.items() if spec.cls.latent_family == "autoregressive")


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
        """A config from a checkpoint's dict; ValueError naming the first field that cannot be one
        (a damaged file must be one line, not a tensor with a negative size deep in a constructor)."""
        if not isinstance(d, dict):
            raise ValueError(f"config is a {type(d).__name__}, not a dict")
        missing = [k for k in ("arch", "kind", "N", "M", "lmbdas", "gains_init") if k not in d]
        if missing:
            raise ValueError(f"config has no {', '.join(missing)}")
        if d["arch"] not in ARCH_SPECS:
            raise ValueError(f"arch {d['arch']!r} is not one of {', '.join(ARCH_SPECS)}")
        if d["kind"] not in KINDS:
            raise ValueError(f"kind {d['kind']!r} is not one of {', '.join(KINDS)}")
        for k in ("N", "M"):
            if isinstance(d[k], bool) or not isinstance(d[k], int) or not 1 <= d[k] <= 4096:
                raise ValueError(f"{k} = {d[k]!r} is not a width (an integer in 1..4096)")
        for k in ("lmbdas", "gains_init"):
            v = d[k]
            if not isinstance(v, list | tuple) or not v or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in v):  # fmt: skip
                raise ValueError(f"{k} = {str(v)[:80]} is not a non-empty list of positive numbers")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def label(self) -> str:
        """A short method name, e.g. ``balle-qvrf-192x320`` or ``balle-fixed-0.0483``."""
        spec = ARCH_SPECS.get(self.arch)
        widths = f"{self.N}" if spec is not None and spec.one_width and self.M == self.N else f"{self.N}x{self.M}"
        if self.kind == "fixed":
            return f"{self.arch}-fixed-{widths}-l{self.lmbdas[0]:g}"
        return f"{self.arch}-qvrf{len(self.lmbdas)}-{widths}"


def default_widths(arch: str, kind: str, lmbda: float | None = None) -> tuple[int, int]:
    spec = ARCH_SPECS[arch]
    if kind == "fixed" and lmbda in LAMBDAS_8:
        return spec.zoo_widths[LAMBDAS_8.index(lmbda)]
    return spec.qvrf_widths


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
    if arch not in ARCH_SPECS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCH_SPECS)}")
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
    M = int(M or (N if ARCH_SPECS[arch].one_width else dM))
    return ModelConfig(arch, kind, N, M, [float(v) for v in lmbdas], [float(g) for g in gains],
                       bool(learn_gains), ARCH_SPECS[arch].zoo_name)  # fmt: skip


def build_model(config: ModelConfig) -> nn.Module:
    """A fresh (randomly initialised) model for ``config``, with ``model.config`` set."""
    spec = ARCH_SPECS[config.arch]
    kwargs = dict(lmbdas=config.lmbdas, gains=config.gains_init, learn_gains=config.learn_gains)
    model = spec.cls(N=config.N, M=config.M, **kwargs)
    model.config = config
    model.qvrf_scale_table = scale_table(max(config.gains_init))
    determinism.install(model)  # entropy parameters independent of the thread count
    return model


def create(arch: str, kind: str = "qvrf", **kwargs) -> nn.Module:
    """``create("balle", "qvrf", N=32, M=48)``: config and model in one call."""
    return build_model(make_config(arch, kind, **kwargs))


def from_state_dict(arch: str, state_dict: dict, lmbdas: Sequence[float] | None = None) -> nn.Module:
    """A model of architecture ``arch`` from a state dict alone (as CompressAI's ``from_state_dict``,
    kept here so that the model classes never import the registry): the widths from its shapes, the
    levels from its gain vector (8 or 11: the QVRF lambda sets unless ``lmbdas`` says otherwise; 1: a
    fixed-rate model, whose lambda ``lmbdas`` must give; none: a CompressAI state dict, fixed-rate
    likewise). For coding, call :func:`prepare_for_coding`."""
    # widths: the outputs of the first and the last convolution of g_a (every architecture here)
    convs = [v for k, v in state_dict.items() if k.startswith("g_a.") and k.endswith("weight") and v.dim() == 4]
    if not convs:
        raise ValueError(f"not a {arch} state dict (no g_a convolutions)")
    N, M = int(convs[0].shape[0]), int(convs[-1].shape[0])
    gain = state_dict.get("gain")
    levels = 1 if gain is None else int(gain.numel())
    if levels == 1:
        if not lmbdas:
            raise ValueError("a fixed-rate state dict: give its lambda (lmbdas=[0.0483])")
        config = make_config(arch, "fixed", N=N, M=M, lmbda=float(lmbdas[0]))
    else:
        lm = list(lmbdas) if lmbdas else list(lambdas_for_levels(levels))
        config = make_config(arch, "qvrf", N=N, M=M, lmbdas=lm, gains=gain.tolist())
    model = build_model(config)
    try:
        model.load_state_dict(state_dict)  # CompressAI's: resizes the CDF buffers; strict
    except RuntimeError as exc:
        raise ValueError(f"the state dict does not fit a {config.label} model ({str(exc)[:300]})") from None
    return model


def prepare_for_coding(model: nn.Module, force: bool = True) -> nn.Module:
    """Build the entropy coder tables (CDFs) from the current parameters; eval mode.

    The scale table: the suite's rule (models/qvrf.py ``scale_table``: CompressAI's 64 entries,
    extended past a = 12), except for a model loaded from an official QVRF file
    (``model.official_layout``, set by checkpoints.load_model), which always gets the official code's
    table, CompressAI's 64 entries, whatever its gains: so the same official weights code the same
    bitstream whether their file carried CDF tables (update.py's layout) or not (train.py's)."""
    top = 1.0 if getattr(model, "official_layout", False) else max(float(model.gain.detach().abs().max()),
                                                                    max(model.config.gains_init))  # fmt: skip
    table = scale_table(top)
    model.update(scale_table=table, force=force)
    return model.eval()
