"""The suite's own runs: one fixed-rate anchor or one QVRF stage, from a :class:`TrainConfig`.

What this file decides, before the one loop (train/loop.py) runs: the run folder's resume rules
(rerunning the same command resumes ``last.pt``, or returns at once when the run is finished; a
folder holding a *different* run is an error unless ``resume="no"``, ``--restart``), the model a
run starts from (train/build.py: fresh or ``--init-from``), the gain learning rate, and the
checkpoint format (models/checkpoints.py, so ``final.pt`` is what ``qvrf-bench encode -c`` and
``sweep -c`` load). QVRF's training rules (which level a step trains, the gain rules of each stage,
the straight-through quantizer of stage 3) are methods/qvrf.py ``QVRFTraining``; the stages are
described there.
"""

from __future__ import annotations

import math
from pathlib import Path

from qvrf_bench.errors import QVRFError
from qvrf_bench.models.checkpoints import load_model, read_file, save_checkpoint
from qvrf_bench.train.build import initial_model
from qvrf_bench.train.config import TrainConfig, anchor_configs, identity_diff
from qvrf_bench.train.loop import BEST, FINAL, LAST, Run, fit, start
from qvrf_bench.train.state import seed_everything


def default_gain_lr(model, lr: float) -> float:
    """lr * a_0 (a_0 = gain[0], frozen). Adam's step does not depend on the gradient's scale, so a
    gain vector normalised to a_0 = c moves c times too fast, relatively, under the main lr. With
    the official a_0 = 1 this is the official lr; from a lambda=0.18 fixed model (gains a_s =
    sqrt(lambda_s / 0.18), a_0 = 0.1: train/build.py) it is lr / 10, which keeps a level's gain from
    running into the 1e-4 clamp, where it stops training for good."""
    return lr * float(model.gain.detach()[0].abs())


def train(config: TrainConfig) -> Path:
    """Run (or resume, or skip when finished) one training run; returns the ``final.pt`` path.

    With ``config.max_steps`` the run stops abruptly after that many steps, as a kill would (no
    extra checkpoint, no final.pt), and ``last.pt``'s path is returned: a hook for tests.
    """
    from qvrf_bench.methods.qvrf import QVRFTraining

    cfg = config.resolved()
    out = Path(cfg.out)
    log, device, dd = start(out, cfg.device, cfg.threads, cfg.progress)

    seed_everything(cfg.seed)  # before the model is built: a fresh model's initial weights are seeded
    state = _existing_state(out, cfg, log)
    if state is not None:
        # Resuming: the model is the checkpoint's (the --init-from file is no longer needed).
        model, _ = load_model(out / LAST, for_coding=False)
        model.gain.requires_grad_(cfg.kind == "qvrf" and not cfg.fixed_gains)
    else:
        model = initial_model(cfg, log)
    cfg.N, cfg.M = model.config.N, model.config.M
    if state is not None and state["step"] >= _total_hint(state, cfg) and (out / FINAL).exists():
        if dd.main:
            print(f"{out}: already finished ({state['step']} steps); final checkpoint: {out / FINAL}")
        return out / FINAL
    # the gain group's lr: --gain-lr, else lr * a_0 (QVRFTraining's default factor, exactly as the
    # config records it)
    factor = None if cfg.gain_lr is None else cfg.gain_lr / cfg.lr
    if model.gain.requires_grad:
        cfg.gain_lr = cfg.gain_lr or default_gain_lr(model, cfg.lr)
    method = QVRFTraining(model, stage=cfg.stage, gain_lr_factor=factor, pinned_level=cfg.pinned_level)

    def save(path: Path, training: dict) -> Path:
        return save_checkpoint(path, model, training=training)

    run = Run(out, cfg, cfg.to_dict(), save, state, label=model.config.label)
    return fit(method, run, log, device, dd)


def train_anchors(config: TrainConfig, lmbdas=None) -> list[Path]:
    """Train the fixed-rate anchors one after another (each resumable, finished ones skipped)."""
    from qvrf_bench.models.qvrf import LAMBDAS_8

    return [train(c) for c in anchor_configs(config, lmbdas or LAMBDAS_8)]


def _existing_state(out: Path, cfg: TrainConfig, log) -> dict | None:
    """The resumable state in ``out/last.pt`` when it belongs to this run (see module docstring)."""
    last = out / LAST
    if cfg.resume == "no" or not last.exists():
        if cfg.resume == "yes":
            raise QVRFError(f"--resume: no checkpoint to resume in {out}")
        if cfg.resume == "no" and last.exists():
            log(f"--restart: ignoring the run in {out}, starting from step 0")
            for name in (LAST, BEST, FINAL):
                (out / name).unlink(missing_ok=True)
        return None
    obj = read_file(last)
    training = obj.get("training") or {}
    if "optimizer" not in training:
        raise QVRFError(f"{last}: not a resumable training checkpoint")
    # Widths are compared only when given: otherwise they come from the registry or --init-from.
    skip = ("N", "M") if cfg.N is None or cfg.init_from is not None else ()
    diff = identity_diff(training.get("config", {}), cfg.to_dict(), skip=skip)
    if diff:
        raise QVRFError(f"{out} holds another run ({'; '.join(diff)}); use another --out, or --restart to "
                        "start over there")  # fmt: skip
    return training


def _total_hint(state: dict, cfg: TrainConfig) -> float:
    """The step count that finishes the run, known before the data is scanned: the steps asked
    for, or the stored total when the same number of epochs is asked for (else unknown: inf)."""
    if cfg.steps is not None:
        return cfg.steps
    if state.get("config", {}).get("epochs") == cfg.epochs:
        return int(state.get("total_steps", 0))
    return math.inf
