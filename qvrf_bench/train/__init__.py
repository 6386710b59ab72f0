"""Training: fixed-rate anchors and the three QVRF stages, resumable, on CUDA or CPU.

Public API (also what ``qvrf-bench train`` calls)::

    from qvrf_bench.train import TrainConfig, train, train_anchors

    final = train(TrainConfig(arch="balle", kind="qvrf", stage=2, dataset="photos/", preset="smoke"))
    anchors = train_anchors(TrainConfig(arch="balle", kind="fixed", dataset="photos/", preset="smoke",
                                        out="runs/balle-anchors"))

``train`` returns the path of the run's ``final.pt``; rerunning it resumes an interrupted run and
returns at once for a finished one. Modules: presets (paper / smoke), config (the dataclass), data
(images, crops, caching), loss, build (fresh or --init-from models), state (RNG, level draw), logs
(CSV and event logs), loop (the one loop, for every method of the contract), stages (the
suite's anchors and QVRF stages: resume rules, initial model, checkpoints).
"""

from qvrf_bench.train.build import initial_model
from qvrf_bench.train.config import TrainConfig, anchor_configs
from qvrf_bench.train.loop import fit, validate
from qvrf_bench.train.loss import rate_distortion
from qvrf_bench.train.presets import PAPER, PRESETS, SMOKE, Preset, get_preset
from qvrf_bench.train.stages import train, train_anchors

__all__ = [
    "PAPER", "PRESETS", "SMOKE", "Preset", "TrainConfig", "anchor_configs", "fit", "get_preset", "initial_model",
    "rate_distortion", "train", "train_anchors", "validate",
]  # fmt: skip
