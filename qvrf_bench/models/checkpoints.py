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

import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from qvrf_bench import __version__, zoo
from qvrf_bench.errors import CheckpointError
from qvrf_bench.files import (
    atomic_output,
    clean_stale_temps,
    file_sha256,  # also re-exported: scripts read it here
    output_path,
    read_head,
    sniff,
    temp_name,
)
from qvrf_bench.models import archs
from qvrf_bench.models.qvrf import LAMBDAS_8, gains_problem, initial_gains, lambdas_for_levels
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
    leaves the previous file intact, never a half-written one; a failure leaves no temporary file,
    and the next save of the same name removes those of killed processes (files.atomic_output)."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return path


def save_checkpoint(path, model: nn.Module, training: dict | None = None) -> Path:
    return atomic_save(checkpoint_dict(model, training), path)


def checkpoint_dict(model: nn.Module, training: dict | None = None) -> dict:
    """The own-format checkpoint of ``model`` (module docstring)."""
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": provenance(),
    }
    if training is not None:
        ckpt["training"] = training
    return ckpt


def read_file(path) -> dict:
    """torch.load with weights_only=True and a one-line error for anything unreadable.
    ``zoo:NAME`` reads a shipped zoo model (sha256-checked)."""

    path = zoo.resolve(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles say nothing a user can act on
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsafe globals ... all mean "not loadable"
        raise CheckpointError(f"{path}: {load_failure(path, exc)}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(obj).__name__}, expected a dict)")
    return obj


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
PICKLE_PROTOCOL = 0x80  # torch's legacy format: a pickle stream


def not_named_tensors(sd: dict) -> list:
    """The keys of ``sd`` whose entry is not a tensor under a string name (a state dict has none)."""
    return [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]


def load_failure(path, exc: BaseException) -> str:
    """Why torch.load(weights_only=True) failed, in the user's terms: another kind of file, a cut or
    damaged checkpoint, or a pickle that asks for code (refused: loading never runs it). torch's own
    text is not passed on: it suggests turning the safety off."""
    import re

    text = str(exc)
    unsafe = re.search(r"GLOBAL ([\w.]+)", text)
    if unsafe:
        return (
            f"refused: an unsafe pickle (it asks to import {unsafe.group(1)}, which a checkpoint of weights never "
            "does); nothing from it was run or loaded"
        )
    head = read_head(Path(path))
    kind = sniff(head)
    if kind:
        return f"not a checkpoint: {kind}"
    size = Path(path).stat().st_size
    if head.startswith(ZIP_MAGIC) or (len(head) < 4 and ZIP_MAGIC.startswith(head)):
        return f"truncated or damaged checkpoint (its zip archive is unreadable, {size:,} bytes)"
    if head[:1] == bytes([PICKLE_PROTOCOL]):
        return f"not a PyTorch checkpoint (a pickle that torch.save did not write, or a cut one; {size:,} bytes)"
    return f"not a checkpoint (neither a PyTorch zip archive nor a pickle; {size:,} bytes)"


def gains_problem_text(gains) -> str | None:
    """:func:`qvrf.gains_problem` for a tensor or a list."""
    values = gains.detach().reshape(-1).tolist() if isinstance(gains, torch.Tensor) else list(gains)
    return gains_problem(values)


def check_for_coding(model: nn.Module, path) -> None:
    """Refuse (CheckpointError) a model whose gains or weights cannot code: gains finite, in the
    supported range and increasing (models/qvrf.py), every parameter finite."""
    problem = gains_problem_text(model.gain)
    if problem:
        raise CheckpointError(f"{path}: cannot code with it: {problem}")
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise CheckpointError(f"{path}: cannot code with it: parameter {name} holds NaN or inf")


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
    from compressai.zoo.pretrained import load_pretrained

    # CompressAI's own key conversion: "module." prefixes, old names of its published files
    return load_pretrained(obj)


def infer_arch(sd: dict) -> tuple[str, int, int]:
    """(arch, N, M) from the keys and shapes of a CompressAI-style state dict: the architecture
    table's matchers (models/archs.py; each architecture's file declares how to recognise it)."""
    return archs.infer_arch(sd)


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
    ``compressai:ARCH-METRIC-QUALITY`` loads CompressAI's pretrained model from the torch hub cache
    (models/pretrained.py) as the fixed-rate model of its quality's lambda.
    """
    from qvrf_bench.models import pretrained

    if pretrained.is_pretrained(path):
        p = pretrained.resolve(path)
        return load_model(p.path, device, arch=arch or p.arch, kind=kind or "fixed",
                          lmbda=lmbda if lmbda is not None else p.lmbda, levels=levels, for_coding=for_coding)  # fmt: skip
    obj = read_file(path)
    if is_own(obj):
        if obj.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format {obj['format_version']} is newer than this qvrf-bench")
        try:
            config = ModelConfig.from_dict(obj.get("config"))
            model = build_model(config)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: broken checkpoint config ({exc})") from None
        sd = obj.get("state_dict")
        if not isinstance(sd, dict) or not sd:
            what = "none" if sd is None else f"a {type(sd).__name__}"
            raise CheckpointError(f"{path}: broken checkpoint: its state_dict is {what}, not a dict of tensors")
        bad = not_named_tensors(sd)
        if bad:
            raise CheckpointError(f"{path}: broken checkpoint: state_dict entry {bad[0]!r} is not a named tensor")
        sd = dict(sd)
        storage = obj.get("storage")
        if isinstance(storage, dict) and "gaussian_tables" in storage:
            sd.update(shared_tables(zoo.resolve(path), storage["gaussian_tables"]))
        for key, value in model.state_dict().items():  # constants a file may leave out (the zoo does)
            if key.endswith(DERIVED_BUFFERS):
                sd.setdefault(key, value)
        _fill_coder_tables(model, sd)
        _load_strict(model, sd, path)
    else:
        model = _load_foreign(obj, path, arch, kind, lmbda, levels)
    if not bool(torch.isfinite(model.gain).all()):  # NaN / inf gains are never a usable model
        raise CheckpointError(f"{path}: {gains_problem_text(model.gain)}")
    if for_coding:
        check_for_coding(model, path)
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
        official = True
    else:  # CompressAI zoo layout
        official = False
        kind = kind or "fixed"
        if kind == "fixed":
            if lmbda is None:
                raise CheckpointError(
                    f"{path}: a CompressAI state dict with no Gain and no lambda: give its lambda with "
                    "train --init-lambda L, or measure it as --method compressai-fixed=FILE (sweep, encode, decode)"
                )
            config = make_config(found_arch, "fixed", N=N, M=M, lmbda=lmbda)
        else:
            lmbdas = lambdas_for_levels(levels or 8)
            config = make_config(found_arch, "qvrf", N=N, M=M, lmbdas=list(lmbdas), ref_lmbda=lmbda)
        sd["gain"] = torch.tensor(config.gains_init, dtype=torch.float32)
    model = build_model(config)
    # An official file codes with the official scale table whether it stored CDF tables or not
    # (registry.prepare_for_coding): one model, one bitstream.
    model.official_layout = official
    _fill_coder_tables(model, sd)
    _load_strict(model, sd, path)
    return model


def _fill_coder_tables(model: nn.Module, sd: dict) -> None:
    """The CDF tables are derived from the parameters (update): a file without them, or with only
    some of an entropy model's, loads as one that never had them (empty, as a fresh model's), and
    load_model builds them for coding."""
    fresh = model.state_dict()
    for module in ("entropy_bottleneck", "gaussian_conditional"):
        keys = [k for k in fresh if k.startswith(module + ".") and k.rsplit(".", 1)[-1] in CODER_BUFFERS]
        if any(k not in sd for k in keys):
            sd.update({k: fresh[k] for k in keys})


# Entropy-coder buffers (derived from the parameters by update(); a foreign file may lack them).
CODER_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
# The Gaussian conditional's coder tables depend on the scale table only: a shipped zoo file may keep
# them in one shared file beside it (``storage.gaussian_tables``: file name and sha256), 0.8 MB saved
# per file; stored tables, not recomputed ones, so a bitstream decodes the same on every machine.
SHARED_TABLES = tuple(f"gaussian_conditional.{b}" for b in ("_quantized_cdf", "_offset", "_cdf_length"))


def shared_tables(path: Path, entry) -> dict:
    """The coder tables a checkpoint at ``path`` keeps in its shared tables file (``entry``: the
    checkpoint's ``storage.gaussian_tables``), checked against the sha256 it records."""
    if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str)
            and entry["file"] and "/" not in entry["file"] and "\\" not in entry["file"] and entry["file"] not in (".", "..")):  # fmt: skip
        raise CheckpointError(
            f"{path}: broken checkpoint: its storage.gaussian_tables entry is not a file name and sha256"
        )
    side = path.parent / entry["file"]
    if not side.is_file():
        raise CheckpointError(f"{path}: needs its Gaussian coder tables {entry['file']} beside it (missing)")
    if file_sha256(side) != entry["sha256"]:
        raise CheckpointError(f"{side}: does not match the sha256 that {path.name} records (modified or corrupt)")
    obj = read_file(side)
    if set(obj) != set(SHARED_TABLES) or not_named_tensors(obj):
        raise CheckpointError(f"{side}: not a Gaussian coder tables file")
    return dict(obj)


# Buffers that are constants of the architecture (the masked convolutions' masks): a file may omit them.
DERIVED_BUFFERS = (".mask",)


def lambda_of_quality(quality: int) -> float:
    """CompressAI's MSE lambda for zoo quality 1..8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be 1..8 (got {quality})")
    return LAMBDAS_8[quality - 1]


def update_checkpoint(path, out=None) -> Path:
    """Fix the entropy models (CDFs from the current parameters), strip training state, and name the
    file ``<stem>-<first 8 hex of its sha256>.pt``, as the official update.py does."""

    path = Path(path)
    stem = path.name.split(".")[0]
    # The output first, before any work: an existing folder or a path ending in "/" is a folder
    # (created), anything else names the file (its folder created).
    folder = path.parent
    if out is not None:
        # never the input: the final name carries the new file's hash
        target = output_path(out, f"{stem}.pt", "updated checkpoint")
        folder, stem = target.parent, target.name.split(".")[0] or stem
    model, _ = load_model(path, for_coding=False)
    check_for_coding(model, path)
    prepare_for_coding(model, force=True)
    # Written under a temporary name first (the sha names the file): the input is never
    # overwritten, even when out == input, and a failure leaves nothing behind.
    work = folder / f"{stem}.update.pt"
    clean_stale_temps(work)
    tmp = temp_name(work)
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint_dict(model), f)
            f.flush()
            os.fsync(f.fileno())
        final = folder / f"{stem}-{file_sha256(tmp)[:8]}.pt"
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
