"""Training presets: ``paper`` (the official set-up) and ``smoke`` (minutes on a laptop CPU).

Every value here is a default only: each one has a :class:`~qvrf_bench.train.config.TrainConfig`
field (and a command-line option) that overrides it.

``paper`` -- [QRAF] train.py and README commands:
    Adam lr 1e-4 on every parameter except the entropy-bottleneck quantiles, aux Adam lr 1e-3 on the
    quantiles (stepped every iteration after the main step), gradient clipping max-norm 1.0,
    ReduceLROnPlateau(min, factor 0.5, patience 20) on the validation loss summed over the levels,
    batch 8 random 256x256 crops, validation batch 64 centre crops, seed 1926.
    Stage lengths are in **epochs** (one epoch = one pass over the training images, i.e.
    ceil(n_images / batch) steps), as the README gives them: stage 1 2000, stage 2 500, stage 3 500.
    A fixed-rate anchor gets the stage-1 length (it is the same kind of training). Validation and a
    checkpoint every epoch, as the official loop does. Widths: CompressAI's (the registry's defaults).
    On the official 8.6k-image set this is ~1075 steps/epoch, i.e. ~2.15M + 0.54M + 0.54M steps.

``smoke`` -- chosen so a balle model learns visibly in a few minutes on 2 CPU cores:
    narrow models (balle / minnen-mean / minnen 32x48, cheng2020 N=32), 64x64 crops (the smallest
    size the hyperprior's 64-pixel stride accepts), batch 8, lr 1e-3 (10x paper: small nets, short
    runs), the same clipping and aux set-up, validation on at most 24 centre crops every 100 steps,
    plateau patience 4 validations. Lengths in **steps**: anchor / stage 1: 800, stage 2: 2400,
    stage 3: 300 (the AR models' serial STE loop makes stage 3 slow). Measured for balle on BSDS500,
    one torch thread of a shared 2-core machine: ~0.06-0.09 s a step, so an anchor takes ~1 min and
    a stage 2 ~3-4 min. PSNR rises from ~5 dB to ~20 dB in the first 600 steps and ~23 dB by 3000
    (lr 3e-3 and 5e-4, no clipping, batch 16, 128px crops and N=M=64 were tried: none is faster per
    unit of wall time; plain CompressAI ScaleHyperprior learns at the same pace). From scratch, the
    8 anchors therefore all end near the same PSNR; bench/smoke_balle.py fine-tunes them (and the
    QVRF model) from one shared lambda=0.18 base instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGE_KEYS = ("fixed", "1", "2", "3")


@dataclass(frozen=True)
class Preset:
    name: str
    lr: float
    aux_lr: float
    batch_size: int
    test_batch_size: int
    patch_size: int
    clip: float
    plateau_factor: float
    plateau_patience: int
    # Length per stage key ("fixed", "1", "2", "3"): exactly one of the two maps is used.
    steps: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, float] = field(default_factory=dict)
    val_every: int | None = None  # steps; None: once per epoch
    save_every: int | None = None  # steps; None: once per epoch
    log_every: int = 1
    max_val_images: int | None = None
    # arch -> (N, M); an arch not listed takes the registry's (CompressAI's) widths.
    channels: dict[str, tuple[int, int]] = field(default_factory=dict)

    def length(self, stage_key: str) -> tuple[int | None, float | None]:
        """(steps, epochs) of a stage; one of them is None."""
        if stage_key in self.steps:
            return self.steps[stage_key], None
        return None, self.epochs[stage_key]


PAPER = Preset(
    name="paper",
    lr=1e-4,
    aux_lr=1e-3,
    batch_size=8,
    test_batch_size=64,
    patch_size=256,
    clip=1.0,
    plateau_factor=0.5,
    plateau_patience=20,
    epochs={"fixed": 2000, "1": 2000, "2": 500, "3": 500},
    val_every=None,
    save_every=None,
    log_every=100,  # 3M steps: one CSV row per 100 steps keeps the log ~10 MB
)

SMOKE = Preset(
    name="smoke",
    lr=1e-3,
    aux_lr=1e-3,
    batch_size=8,
    test_batch_size=24,
    patch_size=64,
    clip=1.0,
    plateau_factor=0.5,
    plateau_patience=4,
    steps={"fixed": 800, "1": 800, "2": 2400, "3": 300},
    val_every=100,
    save_every=100,
    log_every=1,
    max_val_images=24,
    channels={"balle": (32, 48), "minnen-mean": (32, 48), "minnen": (32, 48), "cheng2020": (32, 32)},
)

PRESETS: dict[str, Preset] = {p.name: p for p in (PAPER, SMOKE)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
