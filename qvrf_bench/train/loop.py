"""The training loop: one run = one fixed-rate anchor or one QVRF stage, in its own run folder.

Stages ([QRAF] train.py; section 3 of the method notes):

- ``kind="fixed"``: the anchor's single level (a = 1), noise proxy, its own lambda.
- stage 1: level L-1 (the largest lambda) with a = gain[0] detached (= 1 with [QRAF]'s gains),
  noise proxy. Validation: that level only, at the same a (the trained objective).
- stage 2: a uniform random level per batch (one draw, seeded), a = gain[s] (a_0 frozen, the others
  learned unless ``fixed_gains``), noise proxy. Validation: every level, losses summed ([QRAF]).
- stage 3: as stage 2 with the straight-through quantizer (``quant="ste"``); the AR models run the
  exact serial STE loop (slow, but what the decoder does).

Optimisation ([QRAF]): Adam on every parameter but the entropy-bottleneck quantiles, an aux Adam on
the quantiles stepped every iteration after the main step, gradient clipping (max-norm over all
parameters), ReduceLROnPlateau on the summed validation loss at every validation. One addition:
the gains are a parameter group of their own with lr ``gain_lr``, by default lr * a_0 -- the
official lr when a_0 = 1, scaled when the gains are normalised otherwise (see
:func:`default_gain_lr`). A gradient spike whose float32 norm overflows (finite gradients) is
zeroed by the clipping, as in the official loop, and noted; NaN/inf loss or gradients stop the run.

Run folder (``out``): ``last.pt`` (resumable: model, both optimisers, scheduler, step, RNG states,
best loss, config; every ``save_every`` steps and at the end, written atomically), ``best.pt``
(lowest validation loss of *this* run, so a new stage starts a new record), ``final.pt`` (the end
model, loadable by ``qvrf-bench encode -c``), ``train_log.csv``, ``val_log.csv``, ``events.log``,
``run.json``, and with ``keep_every`` model-only ``snapshots/step-NNNNNNN.pt``. Rerunning the same command resumes from ``last.pt`` (or returns at once when the run
is finished); a folder holding a *different* run is an error unless ``resume="no"`` (``--restart``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from qvrf_bench.devices import resolve_device
from qvrf_bench.errors import QVRFError
from qvrf_bench.models.checkpoints import load_model, read_file, save_checkpoint
from qvrf_bench.models.qvrf import per_sample_noise
from qvrf_bench.train import data as D
from qvrf_bench.train import distributed
from qvrf_bench.train.build import initial_model
from qvrf_bench.train.config import TrainConfig, anchor_configs, identity_diff
from qvrf_bench.train.logs import STEP_COLUMNS, VAL_COLUMNS, CsvLog, EventLog
from qvrf_bench.train.loss import rate_distortion
from qvrf_bench.train.state import level_for_step, rng_state, seed_everything, set_rng_state

LAST, BEST, FINAL = "last.pt", "best.pt", "final.pt"
SNAPSHOTS = "snapshots"  # model-only checkpoints every keep_every steps (learning curves)


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(main, gain, aux): the EB quantiles go to the aux optimiser; the gain vector (when it trains)
    and every other trainable parameter to the main one, the gain in its own parameter group."""
    main, gain, aux = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else gain if name == "gain" else main).append(p)
    return main, gain, aux


def default_gain_lr(model: nn.Module, lr: float) -> float:
    """lr * a_0 (a_0 = gain[0], frozen). Adam's step does not depend on the gradient's scale, so a
    gain vector normalised to a_0 = c moves c times too fast, relatively, under the main lr. With
    [QRAF]'s a_0 = 1 this is the official lr; from a lambda=0.18 fixed model (decision 1: a_0 = 0.1)
    it is lr / 10, which keeps a level's gain from running into the 1e-4 clamp, where it stops
    training for good."""
    return lr * float(model.gain.detach()[0].abs())


@dataclass
class ValResult:
    rows: list[dict]  # one per evaluated level
    total: float  # summed loss: the plateau / best-checkpoint criterion


@torch.no_grad()
def validate(model: nn.Module, crops: torch.Tensor, cfg: TrainConfig, device: torch.device) -> ValResult:
    """Per-level loss, estimated bpp and PSNR on the centre crops, with rounding (``quant="round"``)."""
    model.eval()
    L = model.num_levels
    if cfg.kind == "fixed":
        plan = [(0, model.gain.detach()[0])]
    elif cfg.stage == 1:
        plan = [(L - 1, model.gain.detach()[0])]  # what stage 1 trains: top lambda at a = gain[0]
    else:
        plan = [(s, model.level_gain(s)) for s in range(L)]
    rows, total = [], 0.0
    n = crops.shape[0]
    for level, gain in plan:
        lmbda = model.lmbdas[level]
        loss = mse = bpp = psnr = 0.0
        for i in range(0, n, cfg.test_batch_size):
            x = crops[i : i + cfg.test_batch_size].to(device).float().div_(255.0)
            out = model(x, gain=gain, quant="round")
            rd = rate_distortion(out, x, lmbda)
            k = x.shape[0]
            loss += float(rd["loss"]) * k
            mse += float(rd["mse"]) * k
            bpp += float(rd["bpp"]) * k
            per_image = (out["x_hat"].clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
            psnr += float((-10.0 * torch.log10(per_image)).sum())
        row = {"level": level, "lmbda": lmbda, "gain": float(gain), "loss": loss / n, "mse": mse / n,
               "bpp_est": bpp / n, "psnr": psnr / n}  # fmt: skip
        total += row["loss"]
        rows.append(row)
    model.train()
    return ValResult(rows, total)


class _Stop(Exception):
    """Internal: the ``max_steps`` test hook was reached."""


def train(config: TrainConfig) -> Path:
    """Run (or resume, or skip when finished) one training run; returns the ``final.pt`` path.

    With ``config.max_steps`` the run stops abruptly after that many steps, as a kill would (no
    extra checkpoint, no final.pt), and ``last.pt``'s path is returned: a hook for tests.
    """
    cfg = config.resolved()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dd = distributed.from_environment()  # torchrun: one process per device (train/distributed.py)
    log = EventLog(out / "events.log", echo=cfg.progress) if dd.main else _silent
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    distributed.init(dd, device)  # once per process (the CLI shuts the group down at exit)
    return _train(cfg, out, log, device, dd)


def _silent(msg: str, once: bool = False) -> None:
    """The event log of ranks other than 0 (rank 0 writes the run's log)."""


def _train(cfg: TrainConfig, out: Path, log, device: torch.device, dd: distributed.Dist) -> Path:

    seed_everything(cfg.seed)
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

    model = model.to(device)
    main_params, gain_params, aux_params = split_parameters(model)
    groups = [{"params": main_params, "lr": cfg.lr}]
    if gain_params:
        cfg.gain_lr = cfg.gain_lr or default_gain_lr(model, cfg.lr)
        groups.append({"params": gain_params, "lr": cfg.gain_lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=cfg.aux_lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor,
                                                       patience=cfg.plateau_patience)  # fmt: skip
    step, best, elapsed0 = 0, math.inf, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, best, elapsed0 = int(state["step"]), float(state["best_loss"]), float(state.get("elapsed_s", 0.0))
        set_rng_state(state["rng"])
        log(f"resumed from {out / LAST} at step {step} of {total}")

    skipped = list(dict.fromkeys(pool.skipped + train_list.skipped + val_list.skipped))
    if dd.main:
        _write_run_json(out, cfg, total, spe, len(train_list.paths), val_crops.shape[0], skipped, cache, workers,
                        device, dd.world)  # fmt: skip
    step_log = CsvLog(out / "train_log.csv", STEP_COLUMNS, step if state is not None else None) if dd.main else None
    val_log = CsvLog(out / "val_log.csv", VAL_COLUMNS, step if state is not None else None) if dd.main else None
    net = distributed.wrap(model, dd, device)  # the training forward/backward; everything else uses model
    share = cfg.batch_size // dd.world

    def training_state(done: int) -> dict:
        return {"step": done, "total_steps": total, "stage": cfg.stage, "kind": cfg.kind, "best_loss": best,
                "optimizer": opt.state_dict(), "aux_optimizer": aux_opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": rng_state(), "config": cfg.to_dict(),
                "elapsed_s": elapsed0 + time.perf_counter() - t0}  # fmt: skip

    stop = total if cfg.max_steps is None else min(total, cfg.max_steps)
    drop_step = int(total * cfg.lr_drop_at) if cfg.lr_drop_at else None
    t0 = time.perf_counter()
    last_saved = step if state is not None else -1
    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc=model.config.label, unit="step", dynamic_ncols=True,
               disable=not (cfg.progress and dd.main), file=sys.stderr)  # fmt: skip
    quant = "ste" if cfg.kind == "qvrf" and cfg.stage == 3 else "noise"
    gain_stage = 1 if cfg.kind == "fixed" else cfg.stage
    report_every = min(cfg.log_every, 10)
    last_val: ValResult | None = None
    if stop <= step < total:  # the test hook, already past
        bar.close()
        _close(step_log, val_log)
        return out / LAST
    model.train()
    try:
        for batch, notes in D.batch_loader(images, step, stop, workers, cfg.seed):
            for note in notes:
                log(f"skipped unreadable image {note}", once=True)
            level = level_for_step(cfg.kind, cfg.stage, model.num_levels, cfg.seed, step)
            lmbda = model.lmbdas[level]
            x = batch.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            aux_opt.zero_grad(set_to_none=True)
            a = model.train_gain(level, stage=gain_stage)
            with per_sample_noise(cfg.seed, step, first=dd.rank * share, batch=x.shape[0], total=cfg.batch_size):
                rd = rate_distortion(net(x, gain=a, quant=quant), x, lmbda)
            # the global batch's means (each rank's values are means over its equal share; PSNR from
            # the mean clamped MSE, as one process computes it)
            loss_value, mse_value, bpp_value, mse_clamped = distributed.mean(
                [rd["loss"].detach(), rd["mse"].detach(), rd["bpp"].detach(), 10 ** (-rd["psnr"] / 10)], dd, device
            )
            psnr_value = -10.0 * math.log10(mse_clamped)
            done = step + 1
            if not math.isfinite(loss_value):
                _non_finite(out, log, done, level, lmbda, "loss", loss_value, last_saved)
            rd["loss"].backward()
            distributed.average_ignored_gradients(model, dd)
            grad_norm = _clip_gradients(model, cfg.clip)
            if not math.isfinite(grad_norm):
                if not _gradients_finite(model):
                    _non_finite(out, log, done, level, lmbda, "gradient", grad_norm, last_saved)
                # Finite gradients whose float32 norm overflows (a spike, ~1e20+): clipping scales them
                # by max_norm / inf = 0, so this step makes no gradient update -- what the official
                # loop does silently. Say so and go on.
                what = "clipping zeroed this step's gradients" if cfg.clip else "no clipping: applied as is"
                log(f"step {done}: gradient norm overflowed float32 (spike at level {level}); {what}")
            opt.step()
            aux_loss = model.aux_loss()
            aux_loss.backward()
            aux_opt.step()
            step = done
            if done == drop_step:  # once; a resumed run already carries the lowered rates in opt's state
                for g in opt.param_groups:
                    g["lr"] *= 0.1
                log(f"step {done}: learning rates x 0.1 (--lr-drop-at {cfg.lr_drop_at:g})")

            if done % report_every == 0 or done == total:
                row = {"step": done, "epoch": done / spe, "stage": cfg.stage if cfg.kind == "qvrf" else 0,
                       "level": level, "lmbda": lmbda, "gain": float(a.detach()), "loss": loss_value,
                       "mse": mse_value, "bpp": bpp_value, "psnr": psnr_value,
                       "aux_loss": float(aux_loss.detach()), "lr": opt.param_groups[0]["lr"],
                       "grad_norm": grad_norm, "elapsed_s": elapsed0 + time.perf_counter() - t0}  # fmt: skip
                if (done % cfg.log_every == 0 or done == total) and step_log is not None:
                    step_log.write(row)
                bar.set_postfix(lvl=level, loss=f"{loss_value:.4g}", bpp=f"{row['bpp']:.3f}",
                                psnr=f"{row['psnr']:.2f}", refresh=False)  # fmt: skip
            bar.update(1)

            if done % val_every == 0 or done == total:
                # rank 0 validates; every rank's scheduler steps on its loss
                res = last_val = validate(model, val_crops, cfg, device) if dd.main else None
                val_total = distributed.broadcast(res.total if res is not None else 0.0, dd, device)
                sched.step(val_total)
                is_best = val_total < best
                if is_best:
                    best = val_total
                if res is not None:
                    for r in res.rows:
                        val_log.write({"step": done, "stage": cfg.stage if cfg.kind == "qvrf" else 0, **r,
                                       "total_loss": res.total, "lr": opt.param_groups[0]["lr"], "is_best": is_best})  # fmt: skip
                    _check_levels(model, res, log)
                    if is_best:
                        save_checkpoint(out / BEST, model, training={"step": done, "best_loss": best,
                                                                     "config": cfg.to_dict()})  # fmt: skip
            if dd.main and cfg.keep_every and done % cfg.keep_every == 0:
                (out / SNAPSHOTS).mkdir(exist_ok=True)
                save_checkpoint(out / SNAPSHOTS / f"step-{done:07d}.pt", model,
                                training={"step": done, "config": cfg.to_dict(),
                                          "elapsed_s": elapsed0 + time.perf_counter() - t0})  # fmt: skip
            if done % save_every == 0 or done == total:
                if dd.main:
                    save_checkpoint(out / LAST, model, training=training_state(done))
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
        save_checkpoint(out / LAST, model, training=training_state(step))
    final = save_checkpoint(out / FINAL, model, training={"step": step, "total_steps": total, "best_loss": best,
                                                          "config": cfg.to_dict(), "final": True,
                                                          "elapsed_s": training_state(step)["elapsed_s"]})  # fmt: skip
    if last_val is not None:
        for r in last_val.rows:
            print(f"  level {r['level']} (lambda {r['lmbda']:g}, gain {r['gain']:.4g}): "
                  f"bpp_est {r['bpp_est']:.4f}, PSNR {r['psnr']:.2f} dB, loss {r['loss']:.4f}")  # fmt: skip
    print(f"final checkpoint: {final}")
    distributed.barrier(dd)
    return final


def _close(*logs) -> None:
    for f in logs:
        if f is not None:
            f.close()


def train_anchors(config: TrainConfig, lmbdas=None) -> list[Path]:
    """Train the fixed-rate anchors one after another (each resumable, finished ones skipped)."""
    from qvrf_bench.models.qvrf import LAMBDAS_8

    return [train(c) for c in anchor_configs(config, lmbdas or LAMBDAS_8)]


# --- helpers ------------------------------------------------------------------------------------


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
    training["model"] = obj["state_dict"]
    return training


def _total_hint(state: dict, cfg: TrainConfig) -> float:
    """The step count that finishes the run, known before the data is scanned: the steps asked
    for, or the stored total when the same number of epochs is asked for (else unknown: inf)."""
    if cfg.steps is not None:
        return cfg.steps
    if state.get("config", {}).get("epochs") == cfg.epochs:
        return int(state.get("total_steps", 0))
    return math.inf


def _check_levels(model: nn.Module, res: ValResult, log) -> None:
    """Notices (once each) for a learned gain stuck at the training clamp, and for levels whose
    estimated rates are out of order."""
    if model.gain.requires_grad:
        for s, g in enumerate(model.gain.detach().tolist()):
            if s > 0 and g <= 1e-4:
                log(f"gain of level {s} reached the 1e-4 clamp and no longer trains (lower --gain-lr)", once=True)
    bpps = [r["bpp_est"] for r in res.rows]
    if len(bpps) > 1 and any(b <= a for a, b in zip(bpps, bpps[1:], strict=False)):
        log("validation: estimated rates are not increasing with the level", once=True)


def _clip_gradients(model: nn.Module, clip: float | None) -> float:
    """Clip the gradient norm over all parameters (as [QRAF]); return the norm before clipping.
    ``clip`` 0/None: no clipping (the norm is still measured, for the log)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip:
        return float(torch.nn.utils.clip_grad_norm_(params, clip))
    return float(torch.nn.utils.get_total_norm([p.grad for p in params]))


def _gradients_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def _non_finite(out: Path, log, step: int, level: int, lmbda: float, what: str, value: float, saved: int):
    where = f"{out / LAST} (step {saved})" if saved > 0 else "none (no checkpoint was written yet)"
    msg = (f"non-finite {what} ({value}) at step {step} (level {level}, lambda {lmbda:g}); training stopped. "
           f"Last good checkpoint: {where}. Lower --lr or check the data.")  # fmt: skip
    log(msg)
    raise QVRFError(msg)


def _write_run_json(out, cfg, total, spe, n_train, n_val, skipped, cache, workers, device, world=1) -> None:
    info = {"config": cfg.to_dict(), "total_steps": total, "steps_per_epoch": spe, "train_images": n_train,
            "val_images": n_val, "cached": cache, "workers": workers, "device": str(device), "skipped": skipped,
            "processes": world}  # fmt: skip
    tmp = out / ".run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out / "run.json")
