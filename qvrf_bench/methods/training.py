"""Training a method of the contract (``qvrf-bench train --method WHAT=INIT``): the same data, noise,
losses, logs and resume rules as the QVRF loop (train/loop.py), with the method deciding the rate
point of each step, the forward and the parameter groups.

Per step: ``point = method.training_point(step, seed)``; the loss is ``lambda * 255^2 * MSE + bpp``
(train/loss.py) at the point's lambda; Adam on each non-aux group (lr times the method's factor for
that group), an aux Adam on ``"aux"`` stepped after the main step; gradients clipped (max-norm);
training noise per sample and step (models/qvrf.py ``per_sample_noise``), so a run is the same
whether it ran in one go or resumed. Validation every ``val_every`` steps: every level of
``rate_points()`` on centre crops of held-out images, in eval mode (rounding), logged.

Run folder: ``last.pt`` (the method's checkpoint, methods/base.py ``save_method``, plus the
optimisers, step and config: rerunning the command resumes from it; a different config is refused),
``final.pt`` (the method alone: ``sweep --method WHAT=OUT/final.pt``), ``train_log.csv``,
``val_log.csv``, ``events.log``. The factory is called with INIT on a fresh run (what to start from,
the method's business) and with ``last.pt`` on a resume.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from qvrf_bench.errors import QVRFError
from qvrf_bench.methods.base import read_method_file, save_method
from qvrf_bench.methods.registry import factory, split_spec

STEP_COLUMNS = ("step", "level", "value", "lmbda", "loss", "mse", "bpp", "psnr", "aux_loss", "grad_norm", "elapsed_s")
VAL_COLUMNS = ("step", "level", "lmbda", "loss", "bpp_est", "psnr")
# settings that may change between invocations of one run without changing its numbers
_RUN_ONLY = ("out", "device", "threads", "progress", "max_steps")


@dataclass
class MethodTrainConfig:
    spec: str  # WHAT[=INIT]
    dataset: str
    out: str
    steps: int = 1000
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    seed: int = 1926
    val_fraction: float = 0.1
    max_val_images: int = 8
    val_every: int = 200
    save_every: int = 100
    log_every: int = 10
    pad_mode: str = "reflect"
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True
    max_steps: int | None = None  # stop early (tests: an interrupted run)


def train_method(cfg: MethodTrainConfig) -> Path:
    from qvrf_bench.devices import resolve_device
    from qvrf_bench.models.qvrf import per_sample_noise
    from qvrf_bench.train import data as D
    from qvrf_bench.train.logs import CsvLog, EventLog
    from qvrf_bench.train.loss import rate_distortion
    from qvrf_bench.train.state import seed_everything

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = EventLog(out / "events.log", echo=cfg.progress)
    device = str(resolve_device(cfg.device))
    what, init = split_spec(cfg.spec)
    make = factory(what)
    identity = {k: v for k, v in asdict(cfg).items() if k not in _RUN_ONLY}
    state = read_method_file(out / "last.pt") if (out / "last.pt").is_file() else None
    if state is not None:
        saved = state.get("training", {}).get("config", {})
        diff = sorted(k for k in identity if saved.get(k) != identity[k])
        if diff:
            raise QVRFError(f"{out}: holds a different run ({', '.join(diff)} differ); use another --out")
        method = make(str(out / "last.pt"), device=device)
    else:
        method = make(init, device=device) if init is not None else make(device=device)
    if not method.trainable:
        raise QVRFError(f"--method {cfg.spec}: {method.name} does not say how to train it (trainable = False)")
    total, step = int(cfg.steps), 0
    if state is not None and state["training"]["step"] >= total and (out / "final.pt").is_file():
        print(f"{out}: already finished ({total} steps); final checkpoint: {out / 'final.pt'}")
        return out / "final.pt"

    seed_everything(cfg.seed)
    pool = D.scan(D.find_images(cfg.dataset), log)
    if D.decide_cache("auto", pool, 2048):  # as the QVRF loop's default: decode once when under 2 GB
        pool.decode_all(log)
    train_list, val_list = D.split_train_val(pool, cfg.val_fraction, cfg.seed, log)
    images = D.TrainImages(train_list, cfg.batch_size, cfg.patch_size, cfg.seed, cfg.pad_mode, log)
    val = D.validation_crops(val_list, cfg.patch_size, cfg.pad_mode, cfg.max_val_images, log).float().div(255)

    groups = method.parameter_groups()
    factors = method.lr_factors()
    main = [{"params": ps, "lr": cfg.lr * factors.get(k, 1.0)} for k, ps in groups.items() if k != "aux" and ps]
    opt = torch.optim.Adam(main, lr=cfg.lr)
    aux = groups.get("aux") or []
    aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None
    elapsed0 = 0.0
    if state is not None:
        tr = state["training"]
        opt.load_state_dict(tr["optimizer"])
        if aux_opt is not None:
            aux_opt.load_state_dict(tr["aux_optimizer"])
        step, elapsed0 = int(tr["step"]), float(tr["elapsed_s"])
        log(f"resumed from {out / 'last.pt'} at step {step} of {total}")
    step_log = CsvLog(out / "train_log.csv", STEP_COLUMNS, step if state is not None else None)
    val_log = CsvLog(out / "val_log.csv", VAL_COLUMNS, step if state is not None else None)
    t0 = time.perf_counter()

    def save(path: Path, done: int, with_state: bool) -> None:
        tr = {"step": done, "config": identity, "elapsed_s": elapsed0 + time.perf_counter() - t0}
        if with_state:
            tr.update(optimizer=opt.state_dict(), aux_optimizer=aux_opt.state_dict() if aux_opt else {})
        save_method(method, path, cfg.spec, {"training": tr})

    from tqdm import tqdm

    stop = total if cfg.max_steps is None else min(total, cfg.max_steps)
    bar = tqdm(total=total, initial=step, desc=method.name, unit="step", disable=not cfg.progress, file=sys.stderr)
    method.module.train()
    try:
        for batch, notes in D.batch_loader(images, step, stop, 0, cfg.seed):
            for note in notes:
                log(f"skipped unreadable image {note}", once=True)
            point = method.training_point(step, cfg.seed)
            x = batch.to(device)
            opt.zero_grad(set_to_none=True)
            with per_sample_noise(cfg.seed, step, batch=x.shape[0], total=cfg.batch_size):
                rd = rate_distortion(method.training_forward(x, point), x, point.lmbda)
            if not math.isfinite(float(rd["loss"].detach())):
                raise QVRFError(f"step {step + 1}: loss is {float(rd['loss'].detach())} at {point.label}; stopped "
                                f"(last good checkpoint: {out / 'last.pt'})")  # fmt: skip
            rd["loss"].backward()
            params = [p for g in opt.param_groups for p in g["params"]]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip)) if cfg.clip else math.nan
            opt.step()
            aux_loss = method.aux_loss()
            if aux_opt is not None and aux_loss is not None:
                aux_opt.zero_grad(set_to_none=True)
                aux_loss.backward()
                aux_opt.step()
            step += 1
            if step % cfg.log_every == 0 or step == total:
                step_log.write({"step": step, "level": point.level, "value": point.value, "lmbda": point.lmbda,
                                "loss": float(rd["loss"].detach()), "mse": float(rd["mse"]), "bpp": float(rd["bpp"]),
                                "psnr": float(rd["psnr"]), "aux_loss": math.nan if aux_loss is None else float(aux_loss.detach()), "grad_norm": grad_norm,
                                "elapsed_s": elapsed0 + time.perf_counter() - t0})  # fmt: skip
            bar.set_postfix(point=point.label, loss=f"{float(rd['loss'].detach()):.4g}", refresh=False)
            bar.update(1)
            if step % cfg.val_every == 0 or step == total:
                _validate(method, val.to(device), step, val_log)
            if step % cfg.save_every == 0 or step == total:
                save(out / "last.pt", step, True)
            if step >= stop and step < total:
                return out / "last.pt"
    finally:
        bar.close()
        step_log.close()
        val_log.close()
    save(out / "final.pt", step, False)
    print(f"final checkpoint: {out / 'final.pt'}")
    return out / "final.pt"


@torch.no_grad()
def _validate(method, crops: torch.Tensor, step: int, val_log) -> None:
    from qvrf_bench.train.loss import rate_distortion

    method.module.eval()
    try:
        for pt in method.rate_points():
            rd = rate_distortion(method.training_forward(crops, pt), crops, pt.lmbda)
            val_log.write({"step": step, "level": pt.level, "lmbda": pt.lmbda, "loss": float(rd["loss"]),
                           "bpp_est": float(rd["bpp"]), "psnr": float(rd["psnr"])})  # fmt: skip
    finally:
        method.module.train()
