"""Training a method of the contract (``qvrf-bench train --method WHAT=INIT``) with the suite's one
training loop (train/loop.py): the same data, noise, losses, optimisers, plateau schedule, logs and
resume rules as the suite's own anchors and QVRF stages, with the method deciding the rate point
of each step, the forward and the parameter groups (methods/base.py, "Training").

This file holds only what differs: the settings (:class:`MethodTrainConfig`), how the method is
built (its factory, called with INIT on a fresh run and with ``last.pt`` on a resume) and how it is
written (methods/base.py ``save_method``: ``sweep --method WHAT=OUT/final.pt`` loads it). A folder
holding a run with other settings is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from qvrf_bench.errors import QVRFError
from qvrf_bench.methods.base import read_method_file, save_method
from qvrf_bench.methods.registry import factory, split_spec

# settings that may change between invocations of one run without changing its numbers
_RUN_ONLY = ("out", "device", "precision", "threads", "progress", "max_steps", "workers", "cache", "cache_mb")


@dataclass
class MethodTrainConfig:
    spec: str  # WHAT[=INIT]
    dataset: str
    out: str
    steps: int = 1000
    batch_size: int = 8
    test_batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    plateau_factor: float = 0.5
    plateau_patience: int = 4
    lr_drop_at: float | None = None
    seed: int = 1926
    val: str | None = None
    val_fraction: float = 0.1
    max_val_images: int = 8
    val_every: int = 200
    save_every: int = 100
    keep_every: int | None = None
    log_every: int = 10
    pad_mode: str = "reflect"
    cache: str = "auto"
    cache_mb: int = 2048
    workers: int | None = 0
    device: str = "cpu"
    precision: str = "fp32"  # the training forward's (train/precision.py)
    threads: int | None = None
    progress: bool = True
    max_steps: int | None = None  # stop early (tests: an interrupted run)
    epochs = None  # the loop's alternative to steps: a method run counts steps

    def to_dict(self) -> dict:
        return asdict(self)


def train_method(cfg: MethodTrainConfig) -> Path:
    from qvrf_bench.train.loop import FINAL, LAST, Run, fit, start
    from qvrf_bench.train.state import seed_everything

    out = Path(cfg.out)
    log, device, dd = start(out, cfg.device, cfg.threads, cfg.progress)  # torchrun too, as the suite's runs
    what, init = split_spec(cfg.spec)
    make = factory(what)
    identity = {k: v for k, v in cfg.to_dict().items() if k not in _RUN_ONLY}
    saved = read_method_file(out / LAST) if (out / LAST).is_file() else None
    state = None if saved is None else saved.get("training", {})
    if state is not None:
        diff = sorted(k for k in identity if state.get("config", {}).get(k) != identity[k])
        if diff:
            raise QVRFError(f"{out}: holds a different run ({', '.join(diff)} differ); use another --out")
        if state["step"] >= cfg.steps and (out / FINAL).is_file():
            if dd.main:
                print(f"{out}: already finished ({cfg.steps} steps); final checkpoint: {out / FINAL}")
            return out / FINAL
    seed_everything(cfg.seed)  # before the factory: a fresh method's initial weights are seeded
    if state is not None:
        method = make(str(out / LAST), device=str(device))
    else:
        method = make(init, device=str(device)) if init is not None else make(device=str(device))
    if not method.trainable:
        raise QVRFError(f"--method {cfg.spec}: {method.name} does not say how to train it (trainable = False)")

    def save(path: Path, training: dict) -> None:
        save_method(method, path, cfg.spec, {"training": training})

    return fit(method, Run(out, cfg, identity, save, state, label=method.name), log, device, dd)
