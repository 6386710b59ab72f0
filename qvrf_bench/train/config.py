"""The training run's configuration: one dataclass, filled from a preset, stored in every checkpoint.

Fields left at ``None`` take the preset's value when :meth:`TrainConfig.resolved` runs. A resolved
config is what a run folder's checkpoints carry; :func:`identity_diff` decides whether an existing
checkpoint belongs to the same run (and may be resumed) or to another one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from qvrf_bench.models.qvrf import LAMBDAS_8, lambdas_for_levels
from qvrf_bench.models.registry import ARCHS, KINDS
from qvrf_bench.train.precision import PRECISIONS
from qvrf_bench.train.presets import get_preset

STAGES = (1, 2, 3)
RESUME_MODES = ("auto", "yes", "no")
CACHE_MODES = ("auto", "on", "off")
PAD_MODES = ("reflect", "zero")

# Fields that define what a run computes: a checkpoint whose config differs in one of these belongs
# to another run. Everything else (length, cadence, device, workers, paths) may change on resume,
# e.g. ``--steps`` can be raised to extend a finished run.
IDENTITY_FIELDS = (
    "arch", "kind", "stage", "lmbda", "levels", "N", "M", "fixed_gains", "pinned_level", "seed", "batch_size",
    "patch_size", "lr", "aux_lr", "init_from",
)  # fmt: skip
# identity fields added after runs were made: an old run's config lacks them and had this value
IDENTITY_DEFAULTS = {"pinned_level": 0}


@dataclass
class TrainConfig:
    """One training run (one anchor or one QVRF stage).

    Required: ``arch``, ``dataset``. ``kind="fixed"`` needs ``lmbda``; ``kind="qvrf"`` needs ``stage``.
    ``out`` defaults to ``runs/<default name>`` (see :meth:`default_name`).
    """

    arch: str
    dataset: str | Path | None = None
    kind: str = "qvrf"
    stage: int = 2
    lmbda: float | None = None
    levels: int = 8
    fixed_gains: bool = False
    # the level whose gain stays frozen and pins the scale of y (README Decisions 2): 0 as [QRAF]
    pinned_level: int = 0
    preset: str = "smoke"
    out: str | Path | None = None
    # init
    init_from: str | Path | None = None
    init_lambda: float | None = None
    # data
    val: str | Path | None = None
    val_fraction: float = 0.1
    max_val_images: int | None = None
    cache: str = "auto"
    cache_mb: int = 2048
    pad_mode: str = "reflect"
    workers: int | None = None
    # optimisation (None: preset)
    N: int | None = None
    M: int | None = None
    lr: float | None = None
    aux_lr: float | None = None
    gain_lr: float | None = None  # None: lr * a_0 (see stages.default_gain_lr)
    batch_size: int | None = None
    test_batch_size: int | None = None
    patch_size: int | None = None
    clip: float | None = None
    plateau_factor: float | None = None
    plateau_patience: int | None = None
    # Multiply every learning rate by 0.1 once, after this fraction of the run's steps (None: never).
    # Short CPU runs end far from a plateau, so ReduceLROnPlateau alone never anneals them.
    lr_drop_at: float | None = None
    steps: int | None = None
    epochs: float | None = None
    val_every: int | None = None
    save_every: int | None = None
    keep_every: int | None = None  # also keep snapshots/step-NNNNNNN.pt every N steps (learning curves)
    log_every: int | None = None
    # run control
    seed: int = 1926
    device: str = "auto"
    # training forward in "fp32" or "bf16" (train/precision.py); not an identity field: a run may
    # resume in the other precision, as on another device
    precision: str = "fp32"
    threads: int | None = None  # torch CPU threads (None: torch's default)
    resume: str = "auto"
    progress: bool = True
    max_steps: int | None = None  # stop (checkpointed) after this many steps in this call; for tests

    # --- derived --------------------------------------------------------------------------------

    @property
    def stage_key(self) -> str:
        return "fixed" if self.kind == "fixed" else str(self.stage)

    @property
    def lmbdas(self) -> tuple[float, ...]:
        return (float(self.lmbda),) if self.kind == "fixed" else lambdas_for_levels(self.levels)

    def default_name(self) -> str:
        """``balle-fixed-l0.0483-smoke``, ``balle-qvrf8-s2-smoke`` ..."""
        if self.kind == "fixed":
            core = f"{self.arch}-fixed-l{float(self.lmbda):g}"
        else:
            core = f"{self.arch}-qvrf{self.levels}-s{self.stage}" + ("-fixedgains" if self.fixed_gains else "")
        return f"{core}-{self.preset}"

    def check(self) -> None:
        """Raise ValueError on a config that cannot run (before any file is touched)."""
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind == "fixed":
            if self.lmbda is None or not (self.lmbda > 0 and math.isfinite(self.lmbda)):
                raise ValueError("a fixed-rate run needs --lambda L (a number > 0, or 'all' for the 8 anchors)")
        elif self.stage not in STAGES:
            raise ValueError(f"stage must be 1, 2 or 3 (got {self.stage})")
        lambdas_for_levels(self.levels)
        if not 0 <= self.pinned_level < self.levels:
            raise ValueError(f"--pinned-level must be a level in [0, {self.levels}) (got {self.pinned_level})")
        if self.dataset is None:
            raise ValueError("no training images: give --dataset DIR")
        if self.resume not in RESUME_MODES:
            raise ValueError(f"resume must be one of {RESUME_MODES}")
        if self.cache not in CACHE_MODES:
            raise ValueError(f"cache must be one of {CACHE_MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"pad mode must be one of {PAD_MODES}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        for name in ("batch_size", "test_batch_size", "patch_size", "steps", "val_every", "save_every",
                     "keep_every", "log_every", "plateau_patience", "N", "M"):  # fmt: skip
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 (got {v})")
        for name in ("lr", "aux_lr", "gain_lr", "epochs", "plateau_factor"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number > 0 (got {v})")
        if self.lr_drop_at is not None and not 0 < self.lr_drop_at < 1:
            raise ValueError(f"--lr-drop-at must be a fraction in (0, 1) (got {self.lr_drop_at})")
        if self.clip is not None and self.clip < 0:
            raise ValueError(f"clip must be >= 0 (0 disables clipping; got {self.clip})")
        if self.patch_size is not None and self.patch_size % 64:
            raise ValueError(f"patch size must be a multiple of 64 (the hyperprior's stride; got {self.patch_size})")

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` optimisation field taken from the preset, and ``out`` set.

        ``steps``/``epochs``: an explicit one wins; when both are None the preset's stage length
        is used. ``val_every``/``save_every`` may stay None (= once per epoch, known only when the
        dataset size is).
        """
        self.check()
        p = get_preset(self.preset)
        c = replace(self)
        for name in ("lr", "aux_lr", "batch_size", "test_batch_size", "patch_size", "clip",
                     "plateau_factor", "plateau_patience", "val_every", "save_every", "log_every",
                     "max_val_images"):  # fmt: skip
            if getattr(c, name) is None:
                setattr(c, name, getattr(p, name))
        if c.steps is None and c.epochs is None:
            c.steps, c.epochs = p.length(c.stage_key)
        if c.N is None and c.M is None and c.arch in p.channels:
            c.N, c.M = p.channels[c.arch]
        elif c.N is not None and c.M is None:
            c.M = c.N  # "--channels 16" means N = M = 16
        elif c.N is None and c.arch in p.channels:
            c.N = p.channels[c.arch][0]
        if c.out is None:
            c.out = Path("runs") / c.default_name()
        c.out = str(c.out)
        for name in ("dataset", "val", "init_from"):
            if getattr(c, name) is not None:
                setattr(c, name, str(getattr(c, name)))
        if c.kind == "fixed":
            c.lmbda = float(c.lmbda)
            c.stage = 1
        c.check()
        return c

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def identity_diff(a: dict, b: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """The identity fields in which two (resolved) config dicts differ, as ``name: old -> new``."""
    out = []
    for k in IDENTITY_FIELDS:
        if k in skip:
            continue
        va, vb = a.get(k, IDENTITY_DEFAULTS.get(k)), b.get(k, IDENTITY_DEFAULTS.get(k))
        if isinstance(va, float) or isinstance(vb, float):
            same = va is not None and vb is not None and math.isclose(float(va), float(vb), rel_tol=1e-9)
        else:
            same = va == vb
        if not same:
            out.append(f"{k}: {va!r} -> {vb!r}")
    return out


def anchor_configs(base: TrainConfig, lmbdas=LAMBDAS_8) -> list[TrainConfig]:
    """One fixed-rate config per lambda. With an explicit ``base.out``, the anchors go in
    ``<out>/<default name>``; otherwise each takes its own default ``runs/<name>``."""
    out = []
    for lm in lmbdas:
        c = replace(base, kind="fixed", lmbda=float(lm))
        if base.out is not None:
            c.out = str(Path(base.out) / c.default_name())
        out.append(c)
    return out
