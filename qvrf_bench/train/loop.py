"""The training loop: one loop for every trainable method of the contract (methods/base.py).

It runs the suite's own runs (one fixed-rate anchor or one QVRF stage: train/stages.py, with
methods/qvrf.py ``QVRFTraining`` holding QVRF's rules) and a user's method (``train --method``:
train/method.py) alike, and knows nothing of either beyond the contract: the method gives the
point of each step, the forward at it, the parameter groups and their learning-rate factors, the aux
loss, the validation points and what the logs say.

Per step: ``point = method.training_point(step, seed)`` (the same on every process), the loss
``lambda * 255^2 * MSE + bpp`` (train/loss.py) at the point's lambda, training noise per sample and
step (models/qvrf.py ``per_sample_noise``: a run is the same whether it ran in one go, resumed, or in
N processes), gradient clipping (max-norm over every parameter), Adam on every group but ``"aux"``
(lr times the method's factor for the group), an aux Adam stepped after the main step, and
ReduceLROnPlateau on the summed validation loss at every validation. A gradient spike whose float32
norm overflows (finite gradients) is zeroed by the clipping, as in the official QVRF loop, and
noted; a NaN/inf loss or gradient stops the run, naming the step and the last good checkpoint.

Run folder: ``last.pt`` (resumable: the method, both optimisers, scheduler, step, RNG states, best
loss, config; every ``save_every`` steps and at the end, written atomically), ``best.pt`` (lowest
validation loss of *this* run), ``final.pt``, ``train_log.csv``, ``val_log.csv``, ``events.log``,
``run.json``, and with ``keep_every`` model-only ``snapshots/step-NNNNNNN.pt``. How the method is
written (the suite's checkpoint format or the contract's) is the caller's ``Run.save``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qvrf_bench.devices import resolve_device
from qvrf_bench.errors import QVRFError
from qvrf_bench.models.qvrf import per_sample_noise
from qvrf_bench.train import data as D
from qvrf_bench.train import distributed
from qvrf_bench.train.logs import CsvLog, EventLog, step_columns, val_columns
from qvrf_bench.train.loss import rate_distortion
from qvrf_bench.train.precision import transforms_in
from qvrf_bench.train.state import rng_state, set_rng_state

LAST, BEST, FINAL = "last.pt", "best.pt", "final.pt"
SNAPSHOTS = "snapshots"  # model-only checkpoints every keep_every steps (learning curves)


@dataclass
class Run:
    """What the loop needs besides the method.

    ``settings`` has the loop's attributes (train/config.py ``TrainConfig`` or train/method.py
    ``MethodTrainConfig``): dataset, val, val_fraction, max_val_images, cache, cache_mb, pad_mode,
    workers, batch_size, test_batch_size, patch_size, lr, aux_lr, clip, plateau_factor,
    plateau_patience, lr_drop_at, steps, epochs, val_every, save_every, keep_every, log_every, seed,
    progress, max_steps. ``save(path, training)`` writes the method with a ``training`` dict.
    ``state``: the training state of ``last.pt`` when resuming (the method already holds its weights).
    """

    out: Path
    settings: Any
    config: dict
    save: Callable[[Path, dict], Any]
    state: dict | None = None
    label: str = "train"


@dataclass
class ValResult:
    rows: list[dict]  # one per validation point
    total: float  # summed loss: the plateau / best-checkpoint criterion


class _Forward(nn.Module):
    """The training forward as a module (what DistributedDataParallel wraps): the method's parameters
    under ``inner``, its ``training_forward`` as ``forward``."""

    def __init__(self, method):
        super().__init__()
        self.inner = method.module
        self.method = method  # not a module: no parameters of its own

    def forward(self, x, point):
        return self.method.training_forward(x, point)


@torch.no_grad()
def validate(method, crops: torch.Tensor, batch_size: int, device: torch.device) -> ValResult:
    """Loss, estimated bpp and PSNR at every validation point, on the centre crops, in eval mode."""
    method.module.eval()
    rows, total = [], 0.0
    n = crops.shape[0]
    try:
        for point in method.validation_points():
            loss = mse = bpp = psnr = 0.0
            for i in range(0, n, batch_size):
                x = crops[i : i + batch_size].to(device).float().div_(255.0)
                out = method.training_forward(x, point)
                rd = rate_distortion(out, x, point.lmbda)
                k = x.shape[0]
                loss += float(rd["loss"]) * k
                mse += float(rd["mse"]) * k
                bpp += float(rd["bpp"]) * k
                per_image = (out["x_hat"].clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
                psnr += float((-10.0 * torch.log10(per_image)).sum())
            row = {"level": point.level, "lmbda": point.lmbda, method.knob_name: method.knob(point), "loss": loss / n,
                   "mse": mse / n, "bpp_est": bpp / n, "psnr": psnr / n}  # fmt: skip
            total += row["loss"]
            rows.append(row)
    finally:
        method.module.train()
    return ValResult(rows, total)


def start(out: Path, device: str, threads: int | None, progress: bool):
    """A run's process set-up, before its method is built: the run folder, torch's CPU threads, the
    process group under torchrun (train/distributed.py), the event log (rank 0 writes it) and the
    device. Returns (log, device, dist)."""
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(int(threads))
    dd = distributed.from_environment()
    log = EventLog(out / "events.log", echo=progress) if dd.main else _silent
    dev = resolve_device(device)
    distributed.init(dd, dev)  # once per process (the CLI shuts the group down at exit)
    return log, dev, dd


def _silent(msg: str, once: bool = False) -> None:
    """The event log of ranks other than 0."""


class _Stop(Exception):
    """Internal: the ``max_steps`` test hook was reached."""


def fit(method, run: Run, log, device: torch.device, dd: distributed.Dist) -> Path:
    """Train ``method`` in ``run.out`` (resuming ``run.state``); returns ``final.pt``'s path, or
    ``last.pt``'s when ``settings.max_steps`` stopped the run early (as a kill would: a test hook)."""
    cfg, out, state = run.settings, Path(run.out), run.state
    if not method.trainable:
        raise QVRFError(f"{method.name} does not say how to train it (trainable = False)")
    pool = D.scan(D.find_images(cfg.dataset), log)
    if cfg.val is not None:
        val_files = D.find_images(cfg.val)
        pool = D.exclude(pool, val_files, log)
        val_list = D.scan(val_files, log)
    cache = D.decide_cache(cfg.cache, pool, cfg.cache_mb)
    if cache:
        if cfg.progress:
            print(f"decoding {len(pool.paths)} training images into memory ({pool.decoded_bytes / 2**20:.0f} MB)",
                  file=sys.stderr)  # fmt: skip
        pool.decode_all(log)
    if cfg.val is None:
        train_list, val_list = D.split_train_val(pool, cfg.val_fraction, cfg.seed, log)
    else:
        train_list = pool
    images = D.TrainImages(train_list, cfg.batch_size, cfg.patch_size, cfg.seed, cfg.pad_mode, log,
                           part=(dd.rank, dd.world))  # fmt: skip
    val_crops = D.validation_crops(val_list, cfg.patch_size, cfg.pad_mode, cfg.max_val_images, log)
    spe = images.steps_per_epoch
    total = cfg.steps if cfg.steps is not None else math.ceil(cfg.epochs * spe)
    val_every = cfg.val_every or spe
    save_every = cfg.save_every or spe
    workers = cfg.workers if cfg.workers is not None else (0 if cache else min(4, max(1, (os.cpu_count() or 2) - 1)))

    module = method.module.to(device)
    groups = method.parameter_groups()
    factors = method.lr_factors()
    main = [{"params": ps, "lr": cfg.lr * factors.get(k, 1.0)} for k, ps in groups.items() if k != "aux" and ps]
    opt = torch.optim.Adam(main, lr=cfg.lr)
    aux_params = groups.get("aux") or []
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr) if aux_params else None
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor,
                                                       patience=cfg.plateau_patience)  # fmt: skip
    step, best, elapsed0 = 0, math.inf, 0.0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        if aux_opt is not None:
            aux_opt.load_state_dict(state["aux_optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best, elapsed0 = int(state["step"]), float(state["best_loss"]), float(state.get("elapsed_s", 0.0))
        set_rng_state(state["rng"])
        log(f"resumed from {out / LAST} at step {step} of {total}")

    skipped = list(dict.fromkeys(pool.skipped + train_list.skipped + val_list.skipped))
    if dd.main:
        _write_run_json(out, run.config, total, spe, len(train_list.paths), val_crops.shape[0], skipped, cache,
                        workers, device, dd.world)  # fmt: skip
    knob = method.knob_name
    resume_at = step if state is not None else None
    step_log = CsvLog(out / "train_log.csv", step_columns(knob), resume_at) if dd.main else None
    val_log = CsvLog(out / "val_log.csv", val_columns(knob), resume_at) if dd.main else None
    # DDP reduces the main groups' gradients; the others (a gain vector some steps leave unused, the
    # aux quantiles) are kept out of it and averaged by hand (train/distributed.py)
    main_ids = {id(p) for k, ps in groups.items() if k == "main" for p in ps}
    others = [p for p in module.parameters() if p.requires_grad and id(p) not in main_ids]
    net = distributed.wrap(_Forward(method), dd, device, others)
    share = cfg.batch_size // dd.world

    def training_state(done: int) -> dict:
        return {"step": done, "total_steps": total, "stage": method.training_stage, "best_loss": best,
                "optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict() if aux_opt else {},
                "scheduler": sched.state_dict(), "rng": rng_state(), "config": run.config,
                "elapsed_s": elapsed0 + time.perf_counter() - t0}  # fmt: skip

    stop = total if cfg.max_steps is None else min(total, cfg.max_steps)
    # the training forward's precision (train/precision.py); validation, checkpoints and every
    # reported number stay float32
    precision = getattr(cfg, "precision", None) or "fp32"
    drop_step = int(total * cfg.lr_drop_at) if cfg.lr_drop_at else None
    t0 = time.perf_counter()
    last_saved = step if state is not None else -1
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc=run.label, unit="step", dynamic_ncols=True,
               disable=not (cfg.progress and dd.main), file=sys.stderr)  # fmt: skip
    report_every = min(cfg.log_every, 10)
    last_val: ValResult | None = None
    if stop <= step < total:  # the test hook, already past
        bar.close()
        _close(step_log, val_log)
        return out / LAST
    module.train()
    try:
        for batch, notes in D.batch_loader(images, step, stop, workers, cfg.seed):
            for note in notes:
                log(f"skipped unreadable image {note}", once=True)
            point = method.training_point(step, cfg.seed)
            if point.lmbda is None:
                raise QVRFError(f"{method.name}: training point {point.label} has no lambda")
            value = method.knob(point)  # before the step changes it
            x = batch.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            if aux_opt is not None:
                aux_opt.zero_grad(set_to_none=True)
            with (
                per_sample_noise(cfg.seed, step, first=dd.rank * share, batch=x.shape[0], total=cfg.batch_size),
                transforms_in(module, precision, device),
            ):
                rd = rate_distortion(net(x, point), x, point.lmbda)
            # the global batch's means (each rank's values are means over its equal share; PSNR from
            # the mean clamped MSE, as one process computes it)
            loss_value, mse_value, bpp_value, mse_clamped = distributed.mean(
                [rd["loss"].detach(), rd["mse"].detach(), rd["bpp"].detach(), 10 ** (-rd["psnr"] / 10)], dd, device
            )
            psnr_value = -10.0 * math.log10(mse_clamped)
            done = step + 1
            if not math.isfinite(loss_value):
                _non_finite(out, log, done, point, "loss", loss_value, last_saved)
            rd["loss"].backward()
            distributed.average_ignored_gradients(others, dd)
            grad_norm = _clip_gradients(module, cfg.clip)
            if not math.isfinite(grad_norm):
                if not _gradients_finite(module):
                    _non_finite(out, log, done, point, "gradient", grad_norm, last_saved)
                # Finite gradients whose float32 norm overflows (a spike, ~1e20+): clipping scales them
                # by max_norm / inf = 0, so this step makes no gradient update -- what the official
                # loop does silently. Say so and go on.
                what = "clipping zeroed this step's gradients" if cfg.clip else "no clipping: applied as is"
                log(f"step {done}: gradient norm overflowed float32 (spike at {point.label}); {what}")
            opt.step()
            aux_loss = method.aux_loss()
            if aux_opt is not None and aux_loss is not None:
                aux_loss.backward()
                aux_opt.step()
            step = done
            if done == drop_step:  # once; a resumed run already carries the lowered rates in opt's state
                for g in opt.param_groups:
                    g["lr"] *= 0.1
                log(f"step {done}: learning rates x 0.1 (--lr-drop-at {cfg.lr_drop_at:g})")

            if done % report_every == 0 or done == total:
                row = {"step": done, "epoch": done / spe, "stage": method.training_stage, "level": point.level,
                       "lmbda": point.lmbda, knob: value, "loss": loss_value, "mse": mse_value, "bpp": bpp_value,
                       "psnr": psnr_value, "aux_loss": math.nan if aux_loss is None else float(aux_loss.detach()),
                       "lr": opt.param_groups[0]["lr"], "grad_norm": grad_norm,
                       "elapsed_s": elapsed0 + time.perf_counter() - t0}  # fmt: skip
                if (done % cfg.log_every == 0 or done == total) and step_log is not None:
                    step_log.write(row)
                bar.set_postfix(point=point.label, loss=f"{loss_value:.4g}", bpp=f"{row['bpp']:.3f}",
                                psnr=f"{row['psnr']:.2f}", refresh=False)  # fmt: skip
            bar.update(1)

            if done % val_every == 0 or done == total:
                # rank 0 validates; every rank's scheduler steps on its loss
                res = last_val = validate(method, val_crops, cfg.test_batch_size, device) if dd.main else None
                val_total = distributed.broadcast(res.total if res is not None else 0.0, dd, device)
                sched.step(val_total)
                is_best = val_total < best
                if is_best:
                    best = val_total
                if res is not None:
                    for r in res.rows:
                        val_log.write({"step": done, "stage": method.training_stage, **r, "total_loss": res.total,
                                       "lr": opt.param_groups[0]["lr"], "is_best": is_best})  # fmt: skip
                    _check_validation(method, res, log)
                    if is_best:
                        run.save(out / BEST, {"step": done, "best_loss": best, "config": run.config})
            if dd.main and cfg.keep_every and done % cfg.keep_every == 0:
                (out / SNAPSHOTS).mkdir(exist_ok=True)
                run.save(out / SNAPSHOTS / f"step-{done:07d}.pt", {"step": done, "config": run.config,
                                                                    "elapsed_s": elapsed0 + time.perf_counter() - t0})  # fmt: skip
            if done % save_every == 0 or done == total:
                if dd.main:
                    run.save(out / LAST, training_state(done))
                last_saved = done
            if done >= stop and done < total:
                raise _Stop
    except _Stop:
        return out / LAST
    finally:
        bar.close()
        _close(step_log, val_log)

    if not dd.main:
        distributed.barrier(dd)  # rank 0 writes final.pt
        return out / FINAL
    if last_saved != step:  # e.g. resumed at the end without final.pt
        run.save(out / LAST, training_state(step))
    run.save(out / FINAL, {"step": step, "total_steps": total, "best_loss": best, "config": run.config, "final": True,
                           "elapsed_s": training_state(step)["elapsed_s"]})  # fmt: skip
    if last_val is not None:
        for r in last_val.rows:
            v = r[knob]
            what = f"lambda {r['lmbda']:g}" + ("" if v is None else f", {knob} {v:.4g}")
            print(f"  level {r['level']} ({what}): bpp_est {r['bpp_est']:.4f}, PSNR {r['psnr']:.2f} dB, "
                  f"loss {r['loss']:.4f}")  # fmt: skip
    print(f"final checkpoint: {out / FINAL}")
    distributed.barrier(dd)
    return out / FINAL


def _close(*logs) -> None:
    for f in logs:
        if f is not None:
            f.close()


def _check_validation(method, res: ValResult, log) -> None:
    """The method's notices, and one for validation points whose estimated rates are out of order
    (each once)."""
    for msg in method.training_notices(res.rows):
        log(msg, once=True)
    bpps = [r["bpp_est"] for r in res.rows]
    if len(bpps) > 1 and any(b <= a for a, b in zip(bpps, bpps[1:], strict=False)):
        log("validation: estimated rates are not increasing with the level", once=True)


def _clip_gradients(model: nn.Module, clip: float | None) -> float:
    """Clip the gradient norm over all parameters (as the official QVRF loop); return the norm before
    clipping. ``clip`` 0/None: no clipping (the norm is still measured, for the log)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip:
        return float(torch.nn.utils.clip_grad_norm_(params, clip))
    return float(torch.nn.utils.get_total_norm([p.grad for p in params]))


def _gradients_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def _non_finite(out: Path, log, step: int, point, what: str, value: float, saved: int):
    where = f"{out / LAST} (step {saved})" if saved > 0 else "none (no checkpoint was written yet)"
    at = point.label if point.level is None else f"level {point.level}"
    msg = (f"non-finite {what} ({value}) at step {step} ({at}, lambda {point.lmbda:g}); training stopped. "
           f"Last good checkpoint: {where}. Lower --lr or check the data.")  # fmt: skip
    log(msg)
    raise QVRFError(msg)


def _write_run_json(out, config, total, spe, n_train, n_val, skipped, cache, workers, device, world=1) -> None:
    info = {"config": config, "total_steps": total, "steps_per_epoch": spe, "train_images": n_train,
            "val_images": n_val, "cached": cache, "workers": workers, "device": str(device), "skipped": skipped,
            "processes": world}  # fmt: skip
    tmp = out / ".run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / "run.json")
