"""The model a run starts from: fresh, or ``--init-from`` a checkpoint (weights only).

``--init-from`` loads weights only: optimisers, scheduler, step and best loss start fresh, so a
new stage never inherits the previous stage's best-loss record (the [QRAF] ``--refresh`` pitfall).
What can start what:

=====================  ==============  ====================================================
run                    checkpoint      result
=====================  ==============  ====================================================
qvrf (any stage)       own qvrf        its weights and (learned) gains; level count must match
qvrf (any stage)       own fixed       ``checkpoints.qvrf_from_fixed``
qvrf (any stage)       CompressAI zoo  ``checkpoints.qvrf_from_fixed`` (``--init-lambda``: its lambda)
qvrf (any stage)       official QRAF   its weights and Gain (8 or 11 levels)
fixed                  own fixed / zoo its weights, trained on at the run's own lambda
=====================  ==============  ====================================================

Decision 1 (stage-1 gain convention), for a fixed-rate start: the gains are initialised to
a_s = sqrt(lambda_s / lambda_ref), lambda_ref = the checkpoint's lambda, so the loaded operating
point sits at a = 1 and the other levels start around it (for lambda_ref = 0.18: 0.1 .. 1). A zoo
state dict without ``--init-lambda`` falls back to [QRAF]'s lambda_ref = lambda_0 (1 .. 10), with
a notice. A QVRF stage-1 checkpoint keeps [QRAF]'s gains (stage 1 trains at a = gain[0] = 1).
The checkpoint's widths win over the preset's (a notice says so).
"""

from __future__ import annotations

from torch import nn

from qvrf_bench.errors import CheckpointError, QVRFError
from qvrf_bench.models.checkpoints import is_own, load_model, qvrf_from_fixed, read_file
from qvrf_bench.models.registry import build_model, create, make_config
from qvrf_bench.train.config import TrainConfig


def _retarget_fixed(model: nn.Module, lmbda: float) -> nn.Module:
    """The same fixed-rate weights under a config for another lambda."""
    c = model.config
    new = build_model(make_config(c.arch, "fixed", N=c.N, M=c.M, lmbda=lmbda))
    new.load_state_dict(model.state_dict(), strict=True)
    return new


def initial_model(cfg: TrainConfig, log) -> nn.Module:
    """The model for a resolved config, before any resumed state is loaded (on CPU)."""
    if cfg.init_from is None:
        try:
            model = create(cfg.arch, cfg.kind, N=cfg.N, M=cfg.M, levels=cfg.levels, lmbda=cfg.lmbda,
                           learn_gains=not cfg.fixed_gains)  # fmt: skip
        except ValueError as exc:
            raise QVRFError(str(exc)) from None
    else:
        model = _from_checkpoint(cfg, log)
    if cfg.kind == "qvrf":
        # Decision 2: --fixed-gains freezes every gain (CompressAI's VBR); default learns a_1..a_{L-1}.
        model.gain.requires_grad_(not cfg.fixed_gains)
        model.config.learn_gains = not cfg.fixed_gains
    return model


def _has_official_gain(obj: dict) -> bool:
    sd = obj.get("state_dict", obj.get("network", obj))
    return isinstance(sd, dict) and any(str(k).split(".")[-1] == "Gain" for k in sd)


def _from_checkpoint(cfg: TrainConfig, log) -> nn.Module:
    path = cfg.init_from
    obj = read_file(path)
    own = is_own(obj)
    src_kind = obj.get("config", {}).get("kind") if own else ("qvrf" if _has_official_gain(obj) else "fixed")
    if cfg.kind == "fixed":
        if src_kind != "fixed":
            raise CheckpointError(f"{path}: a QVRF checkpoint cannot start a fixed-rate run")
        lmbda = cfg.init_lambda if cfg.init_lambda is not None else cfg.lmbda
        model, _ = load_model(path, arch=cfg.arch, kind="fixed", lmbda=lmbda, for_coding=False)
        model = _retarget_fixed(model, cfg.lmbda)
    elif src_kind == "fixed" and not own and cfg.init_lambda is None:
        # Only the gain initialisation needs the lambda: fall back to the [QRAF] convention, say so.
        log(f"{path}: no --init-lambda for this CompressAI state dict: gains start at sqrt(lambda_s/lambda_0)")
        model, _ = load_model(path, arch=cfg.arch, kind="qvrf", levels=cfg.levels, for_coding=False)
    elif src_kind == "fixed":
        model = qvrf_from_fixed(path, levels=cfg.levels, lmbda=cfg.init_lambda)
        log("initialised from a fixed-rate model: gains " + ", ".join(f"{g:.4g}" for g in model.config.gains_init))
    else:
        model, _ = load_model(path, arch=cfg.arch, levels=cfg.levels, for_coding=False)
        if model.num_levels != cfg.levels:
            raise CheckpointError(f"{path}: a {model.num_levels}-level model, but this run has --levels {cfg.levels}")
    if model.config.arch != cfg.arch:
        raise CheckpointError(f"{path}: holds a {model.config.arch} model, but this run trains {cfg.arch}")
    if (cfg.N, cfg.M) != (model.config.N, model.config.M):
        log(f"widths from {path}: N={model.config.N}, M={model.config.M}")
    return model
