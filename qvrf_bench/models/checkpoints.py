"""Checkpoints: the project's own format, CompressAI zoo state dicts, the official QVRF layout.

Own format (a dict, saved with ``torch.save`` and read with ``weights_only=True``)::

    {"format": "qvrf-bench", "format_version": 1,
     "config": ModelConfig.to_dict(),          # arch, kind, widths, lambdas, initial gains
     "state_dict": {...},                     # weights, the "gain" vector, entropy-model buffers
     "training": {...} | absent,              # optimisers, scheduler, step, RNG states, best loss
     "meta": {"qvrf_bench": ..., "torch": ..., "compressai": ..., "created_utc": ...}}

Foreign layouts are recognised by their keys: a state dict with ``Gain`` is an official [QRAF]
checkpoint; one without is a CompressAI (zoo) state dict. Both may sit under "state_dict" or
"network" and carry a "module." prefix. Unlike [QRAF]'s shape filter, which silently drops what
does not fit, every key must load (strict), and a gain vector of the wrong length is an error.
CompressAI 1.1.5 entropy-bottleneck names (``_matrix0`` ...) are remapped by CompressAI 1.2.8's own
``CompressionModel.load_state_dict``, which also resizes the CDF buffers.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch
from torch import nn

from qvrf_bench import __version__
from qvrf_bench.errors import CheckpointError
from qvrf_bench.models.qvrf import LAMBDAS_8, initial_gains, lambdas_for_levels
from qvrf_bench.models.registry import ModelConfig, build_model, make_config, prepare_for_coding

FORMAT = "qvrf-bench"
FORMAT_VERSION = 1


def provenance() -> dict:
    import compressai

    return {
        "qvrf_bench": __version__,
        "torch": str(torch.__version__),
        "compressai": str(compressai.__version__),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename: a kill during a save
    leaves the previous file intact, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_checkpoint(path, model: nn.Module, training: dict | None = None) -> Path:
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": provenance(),
    }
    if training is not None:
        ckpt["training"] = training
    return atomic_save(ckpt, path)


def read_file(path) -> dict:
    """torch.load with weights_only=True and a one-line error for anything unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsafe globals ... all mean "not loadable"
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [exc.__class__.__name__]
        # torch's weights_only message puts the useful part on a later line.
        why = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0])
        raise CheckpointError(f"{path}: not a loadable checkpoint ({why[:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(obj).__name__}, expected a dict)")
    return obj


def is_own(obj: dict) -> bool:
    return obj.get("format") == FORMAT


def foreign_state_dict(obj: dict) -> dict:
    """The state dict inside a foreign checkpoint, with any "module." prefix stripped."""
    for key in ("state_dict", "network", "model"):
        if key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("no state dict of tensors found")
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in obj.items()}


def infer_arch(sd: dict) -> tuple[str, int, int]:
    """(arch, N, M) from the keys and shapes of a CompressAI-style state dict."""
    if "g_a.0.conv1.weight" in sd:
        n = sd["g_a.0.conv1.weight"].shape[0]
        return "cheng2020", n, n
    if "g_a.0.weight" not in sd or "g_a.6.weight" not in sd:
        raise ValueError("not a bmshj2018-hyperprior / mbt2018 / cheng2020-attn state dict (no g_a.0 weights)")
    N, M = sd["g_a.0.weight"].shape[0], sd["g_a.6.weight"].shape[0]
    if "context_prediction.weight" in sd:
        return "minnen", N, M
    if "h_s.4.weight" in sd and sd["h_s.4.weight"].shape[0] == 2 * M:
        return "minnen-mean", N, M
    return "balle", N, M


def _load_strict(model: nn.Module, sd: dict, path) -> None:
    try:
        # CompressionModel.load_state_dict: remaps 1.1.5 EB names, resizes CDF buffers, then strict.
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:4]) if len(lines) > 1 else lines[0]
        raise CheckpointError(
            f"{path}: state dict does not fit a {model.config.label} model ({detail[:400]})"
        ) from None


def load_model(
    path,
    device: str | torch.device = "cpu",
    arch: str | None = None,
    kind: str | None = None,
    lmbda: float | None = None,
    levels: int | None = None,
    for_coding: bool = True,
) -> tuple[nn.Module, dict]:
    """Load any supported checkpoint. Returns (model, raw checkpoint dict).

    Own checkpoints rebuild themselves from their config. Foreign ones need to know what they are:
    - official [QRAF] (has ``Gain``): a QVRF model with len(Gain) levels (8 or 11);
    - CompressAI zoo: ``kind="fixed"`` needs its lambda; ``kind="qvrf"`` builds a QVRF model around
      the loaded weights for fine-tuning, gains sqrt(lambda_s / lambda_ref) with lambda_ref the
      checkpoint's lambda when given (decision 1), so the loaded operating point sits at a = 1.
    ``for_coding`` builds the CDF tables (only where the file has none, so stored tables are used
    as they are and a bitstream decodes on any device that shares them) and sets eval mode.
    """
    obj = read_file(path)
    if is_own(obj):
        if obj.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format {obj['format_version']} is newer than this qvrf-bench")
        try:
            config = ModelConfig.from_dict(obj["config"])
            model = build_model(config)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: broken checkpoint config ({exc})") from None
        _load_strict(model, obj["state_dict"], path)
    else:
        model = _load_foreign(obj, path, arch, kind, lmbda, levels)
    model = model.to(device)
    if for_coding:
        eb = model.entropy_bottleneck
        if eb._quantized_cdf.numel() == 0 or model.gaussian_conditional._quantized_cdf.numel() == 0:
            prepare_for_coding(model)
        model.eval()
    return model, obj


def _load_foreign(obj, path, arch, kind, lmbda, levels) -> nn.Module:
    try:
        sd = foreign_state_dict(obj)
        found_arch, N, M = infer_arch(sd)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if arch is not None and arch != found_arch:
        raise CheckpointError(f"{path}: holds a {found_arch} model (N={N}, M={M}), not {arch}")
    if "Gain" in sd or "gain" in sd:  # official QVRF layout
        gain = sd.pop("Gain") if "Gain" in sd else sd.pop("gain")
        if gain.dim() != 1:
            raise CheckpointError(f"{path}: Gain must be a vector, got shape {tuple(gain.shape)}")
        n = gain.numel()
        if levels is not None and n != levels:
            raise CheckpointError(f"{path}: Gain has {n} entries, expected {levels} levels")
        try:
            lmbdas = lambdas_for_levels(n)
        except ValueError:
            raise CheckpointError(f"{path}: Gain has {n} entries; only 8- or 11-level QVRF models are known") from None
        config = make_config(found_arch, "qvrf", N=N, M=M, lmbdas=list(lmbdas), gains=initial_gains(lmbdas))
        sd["gain"] = gain.float()
    else:  # CompressAI zoo layout
        kind = kind or "fixed"
        if kind == "fixed":
            if lmbda is None:
                raise CheckpointError(f"{path}: a CompressAI state dict; say which lambda it was trained at (--lambda)")
            config = make_config(found_arch, "fixed", N=N, M=M, lmbda=lmbda)
        else:
            lmbdas = lambdas_for_levels(levels or 8)
            config = make_config(found_arch, "qvrf", N=N, M=M, lmbdas=list(lmbdas), ref_lmbda=lmbda)
        sd["gain"] = torch.tensor(config.gains_init, dtype=torch.float32)
    model = build_model(config)
    _load_strict(model, sd, path)
    return model


def lambda_of_quality(quality: int) -> float:
    """CompressAI's MSE lambda for zoo quality 1..8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be 1..8 (got {quality})")
    return LAMBDAS_8[quality - 1]


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def update_checkpoint(path, out=None) -> Path:
    """Fix the entropy models (CDFs from the current parameters), strip training state, and name the
    file ``<stem>-<first 8 hex of its sha256>.pt``, as the official update.py does."""
    model, _ = load_model(path, for_coding=False)
    prepare_for_coding(model, force=True)
    path = Path(path)
    stem = path.name.split(".")[0]
    if out is not None and Path(out).is_dir():
        folder = Path(out)
    elif out is not None:
        folder, stem = Path(out).parent, Path(out).name.split(".")[0]
    else:
        folder = path.parent
    # Write under a temporary name first: the input is never overwritten, even when out == input.
    tmp = save_checkpoint(folder / f".{stem}.update-{os.getpid()}.pt", model)
    final = folder / f"{stem}-{file_sha256(tmp)[:8]}.pt"
    os.replace(tmp, final)
    return final


def qvrf_from_fixed(path, levels: int = 8, lmbda: float | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A QVRF model whose every weight comes from a fixed-rate checkpoint (own or CompressAI zoo),
    to start stage 2 from it ([QRAF] --loadFromPretrainedSinglemodel, but strict).

    Gains start at sqrt(lambda_s / lambda_ref), lambda_ref being the fixed model's lambda
    (decision 1): the loaded operating point is reproduced exactly at a = 1.
    """
    obj = read_file(path)
    if is_own(obj):
        fixed, _ = load_model(path, for_coding=False)
        if fixed.config.kind != "fixed":
            raise CheckpointError(f"{path}: a {fixed.config.kind} checkpoint, not a fixed-rate one")
        ref = fixed.config.lmbdas[0]
    else:
        fixed, _ = load_model(path, kind="fixed", lmbda=lmbda, for_coding=False)
        ref = lmbda
    c = fixed.config
    config = make_config(c.arch, "qvrf", N=c.N, M=c.M, levels=levels, ref_lmbda=ref)
    model = build_model(config)
    sd = fixed.state_dict()
    sd["gain"] = model.gain.detach().clone()
    _load_strict(model, sd, path)
    return model.to(device)
