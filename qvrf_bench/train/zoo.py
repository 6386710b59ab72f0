"""How the project-trained model zoo is made: narrow models that ship inside the package, with their
provenance (the catalogue, ``zoo:NAME`` -> file, is qvrf_bench/zoo.py).

How the zoo is made (:data:`RECIPES`, run by ``qvrf-bench zoo train`` / ``nox -s train_zoo``):
per architecture, one **base** -- a fixed-rate model at lambda = 0.18 trained from scratch, which is
also what [QRAF]'s stage 1 is -- then, each starting from the base's final weights, with stated
budgets (:class:`ArchPlan`):

* the 8 fixed-rate anchors (lambda 0.0018 ... 0.18; the 0.18 anchor continues the base), ``steps``
  each, and
* the 8-level QVRF model: stage 2 (noise proxy, learned gains) for 3/4 of ``qvrf_steps``, then
  stage 3 (straight-through rounding) for the last 1/4; for balle also the 11-level model. v1 gave
  it one anchor's steps; v2 gives it the 8 anchors' total (24,000 = 8 x 3,000: one model for eight
  rates gets the eight models' training), with the gain of the base's level pinned
  (``pin_base_level``): balle's QVRF-8 sat +7.3 % from its anchors at one anchor's budget, +4.5 % at
  three, -0.1 % at eight; with [QRAF]'s pinned a_0 the longer runs crossed the two lowest levels
  (README "Model zoo", bench/README "The QVRF fine-tune").

The QVRF models start from the base with gains sqrt(lambda_s / 0.18) (decision 1 with lambda_ref =
0.18), so a_7 = 1 reproduces the base exactly and a_0 = 0.1: the fine-tune starts at the base's
operating point instead of 10x away from it. Continuous "paper" factors are taken relative to a_0
(see sweep.parse_factors). Every run uses one torch thread.

``qvrf-bench zoo pack`` turns the finished runs into the shipped files: training state stripped,
parameters stored as float16 (:data:`STORAGE`; the three architectures' 28 models at float32 would
be ~90 MB at v1 widths; the repository allows the zoo 100 MB), constant masks left out (rebuilt on load), and the
CDF tables built from the rounded parameters and stored, so a bitstream decodes with the file's own
tables on any machine. **The shipped model is the float16-rounded one**: it loads into float32
parameters holding exactly those values, and every number the project reports (the manifest's
check, the README, the main job) is measured from it. Then an entry
in ``zoo.json`` with the file's sha256, the exact commands of its run and of the runs it started
from, steps, wall time, machine, the training data's checksum, the git commit, and one Kodak crop's
real-bitstream bytes and PSNR as a reproducibility check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from qvrf_bench import metrics
from qvrf_bench.errors import QVRFError
from qvrf_bench.files import file_sha256
from qvrf_bench.images import list_images, load_image
from qvrf_bench.results import store
from qvrf_bench.zoo import KODAK_DIR, MANIFEST, ZOO_DIR, read_manifest

STORAGE = "float16"  # how a shipped file stores the parameters (buffers stay as they are)

# The reproducibility check: this crop of this Kodak image, coded at the model's middle level.
CHECK_IMAGE = "kodim23.png"
CHECK_CROP = (128, 256, 256, 448)  # top, bottom, left, right: 128x192 pixels


@dataclass(frozen=True)
class ArchPlan:
    """One architecture's zoo schedule. Steps are optimisation steps of ``batch`` crops of ``patch``."""

    arch: str
    channels: str  # --channels
    base_steps: int
    steps: int  # each anchor's own budget after the base
    qvrf_steps: int | None = None  # each QVRF model's budget after the base (None: ``steps``, one anchor's)
    patch: int = 128
    batch: int = 8
    base_lr: float = 1e-3
    lr: float = 3e-4
    eleven: bool = False
    # the QVRF runs freeze the gain of the base's level (lambda 0.18, gain 1) instead of [QRAF]'s a_0
    # (train --pinned-level; README Decisions 2)
    pin_base_level: bool = False
    precision: str = "bf16"  # train --precision: the transforms under bf16 autocast (README Decisions 14)

    @property
    def qvrf_budget(self) -> int:
        return self.qvrf_steps or self.steps

    @property
    def stage2_steps(self) -> int:
        return self.qvrf_budget * 3 // 4

    @property
    def stage3_steps(self) -> int:
        return self.qvrf_budget - self.stage2_steps


# Zoo v2 (balle, minnen): N,M = 48,128 in bf16. The v1 widths (32,48, fp32) saturated near 29 dB at
# lambda 0.18; with bf16 (~1.5-1.9x per step on this CPU's matrix units, the same loss per step:
# bench/README "Quality at equal steps") a 48,128 base reaches 32.5 dB at 15k steps (bench/README
# "Zoo learning curve"). cheng2020 stays the v1 model (N = 32, fp32; its plan says how the shipped
# files were made): within the zoo's 100 MB only ~1.25 M parameters a file are left for it, and a
# 32,64 base reached v1's quality, not more (bench/README "cheng2020 within the zoo's size budget").
PLANS: dict[str, ArchPlan] = {
    "balle": ArchPlan(
        "balle", "48,128", base_steps=20000, steps=3000, qvrf_steps=24000, eleven=True, pin_base_level=True
    ),
    "minnen": ArchPlan("minnen", "48,128", base_steps=20000, steps=3000, qvrf_steps=24000, pin_base_level=True),
    "cheng2020": ArchPlan("cheng2020", "32", base_steps=12000, steps=2000, precision="fp32"),
}
BASE_LAMBDA = 0.18  # every base's lambda: the top anchor's, and the QVRF models' starting point
LR_DROP_AT = 0.8  # every run: learning rates x 0.1 for its last 20 % of steps
ZOO_ARCHS = tuple(PLANS)


@dataclass
class Step:
    """One training run of the recipe: a ``qvrf-bench train`` command line."""

    name: str  # run folder name under the zoo's run root; also the shipped name when ``ships``
    argv: list[str]  # arguments after ``qvrf-bench train``, with {DATA} and {RUNS} placeholders
    after: str | None = None  # the step whose final.pt this one starts from
    ships: str | None = None  # the name it ships under
    budget: str = ""  # the schedule in words, for captions and `zoo list`
    requires: list[str] = field(default_factory=list)

    def command(self, data: str | Path, runs: str | Path) -> list[str]:
        return [a.replace("{DATA}", str(data)).replace("{RUNS}", str(runs)) for a in self.argv]


def _common(plan: ArchPlan, out: str, lr: float, steps: int) -> list[str]:
    return ["--arch", plan.arch, "--dataset", "{DATA}", "--preset", "smoke", "--channels", plan.channels,
            "--patch-size", str(plan.patch), "--batch-size", str(plan.batch), "--lr", f"{lr:g}", "--steps",
            str(steps), "--lr-drop-at", f"{LR_DROP_AT:g}", "--val-every", "500", "--save-every", "250",
            "--plateau-patience", "6", "--threads", "1",
            *(["--precision", plan.precision] if plan.precision != "fp32" else []),
            "--out", f"{{RUNS}}/{out}", "--no-progress"]  # fmt: skip


def recipe(archs=ZOO_ARCHS) -> list[Step]:
    """Every training run of the zoo, in an order that respects ``after``."""
    from qvrf_bench.models.qvrf import LAMBDAS_8, lambdas_for_levels

    steps: list[Step] = []
    for arch in archs:
        p = PLANS[arch]
        base = f"{arch}-base"
        base_final = f"{{RUNS}}/{base}/final.pt"
        head = f"{arch} N,M={p.channels}, {p.patch}px crops x {p.batch}, from a shared lambda={BASE_LAMBDA:g} base of {p.base_steps} steps"
        steps.append(Step(base, ["--kind", "fixed", "--lambda", f"{BASE_LAMBDA:g}", "--keep-every", "1000",
                                 *_common(p, base, p.base_lr, p.base_steps)],
                          budget=f"{arch} base: lambda {BASE_LAMBDA:g} from scratch, {p.base_steps} steps"))  # fmt: skip
        for lm in LAMBDAS_8:
            name = f"{arch}-fixed-l{lm:g}"
            steps.append(Step(name, ["--kind", "fixed", "--lambda", f"{lm:g}", "--init-from", base_final,
                                     *_common(p, name, p.lr, p.steps)], after=base, ships=name,
                              budget=f"{head}, then {p.steps} steps at lambda {lm:g}"))  # fmt: skip
        for levels in (8, 11) if p.eleven else (8,):
            s2, s3 = f"{arch}-qvrf{levels}-s2", f"{arch}-qvrf{levels}-s3"
            lv = ["--levels", str(levels)]
            if p.pin_base_level:
                lv += ["--pinned-level", str(lambdas_for_levels(levels).index(BASE_LAMBDA))]
            steps.append(Step(s2, ["--kind", "qvrf", "--stage", "2", *lv, "--init-from", base_final,
                                   *_common(p, s2, p.lr, p.stage2_steps)], after=base))  # fmt: skip
            steps.append(Step(s3, ["--kind", "qvrf", "--stage", "3", *lv, "--init-from", f"{{RUNS}}/{s2}/final.pt",
                                   *_common(p, s3, p.lr, p.stage3_steps)], after=s2, ships=f"{arch}-qvrf{levels}",
                              budget=f"{head}, then {p.stage2_steps} steps stage 2 + {p.stage3_steps} steps stage 3 "
                                     f"({levels} levels)"))  # fmt: skip
    return steps


def budget_caption(arch: str) -> str:
    """One line for figure captions: the zoo's scale for this architecture."""
    p = PLANS[arch]
    return (f"project zoo, {arch} N,M={p.channels}: shared lambda=0.18 base {p.base_steps} steps, then "
            f"{p.steps} steps each (anchors; QVRF {p.stage2_steps} stage 2 + {p.stage3_steps} stage 3); "
            f"batch {p.batch} of {p.patch}px crops of 500 BSDS500 photos, 1 CPU thread, {p.precision} training")  # fmt: skip


# --- running the recipe ---------------------------------------------------------------------------


def _done(runs: Path, step: Step) -> bool:
    return (runs / step.name / "final.pt").is_file()


def train_zoo(
    data: str | Path,
    runs: str | Path,
    archs=ZOO_ARCHS,
    jobs: int = 2,
    only=None,
    log=print,
    steps: list[Step] | None = None,
) -> int:
    """Run the recipe (``steps``, default :func:`recipe` of ``archs``): up to ``jobs`` ``qvrf-bench
    train`` processes at once, each started when the run it starts from is finished. Resumable:
    finished runs are skipped, interrupted ones resume."""
    runs = Path(runs)
    runs.mkdir(parents=True, exist_ok=True)
    plan = steps if steps is not None else recipe(archs)
    by_name = {s.name: s for s in plan}
    todo = [s for s in plan if only is None or s.name in only or s.ships in only]
    running: dict[str, subprocess.Popen] = {}
    failed: list[str] = []
    t0 = time.perf_counter()
    while todo or running:
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                what = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                log(f"[zoo {time.perf_counter() - t0:6.0f} s] {name}: {what}")
                if proc.returncode:
                    failed.append(name)
        ready = [s for s in todo if s.after is None or _done(runs, by_name[s.after])]
        ready = [s for s in ready if s.after not in failed]
        todo = [s for s in todo if s.after not in failed]
        while ready and len(running) < jobs:
            s = ready.pop(0)
            todo.remove(s)
            if _done(runs, s):
                continue
            cmd = [sys.executable, "-m", "qvrf_bench", "train", *s.command(data, runs)]
            (runs / s.name).mkdir(parents=True, exist_ok=True)
            out = open(runs / f"{s.name}.log", "a")
            log(
                f"[zoo {time.perf_counter() - t0:6.0f} s] start {s.name}: qvrf-bench train {shlex.join(s.command(data, runs))}"
            )
            running[s.name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            out.close()  # the child holds its own descriptor
        if not ready and not running and todo:
            blocked = ", ".join(s.name for s in todo)
            log(f"[zoo] cannot start {blocked}: the runs they start from did not finish")
            return 2
        if running:
            time.sleep(1)
    if failed:
        log(f"[zoo] failed: {', '.join(failed)} (see their .log files in {runs})")
        return 2
    return 0


# --- packing and the manifest -------------------------------------------------------------------


def dataset_checksum(folder: str | Path) -> dict:
    """sha256 over the sorted (relative path, file sha256) list of every image in ``folder``."""

    folder = Path(folder)
    files = list_images(folder)
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.relative_to(folder).as_posix()}\0{file_sha256(f)}\n".encode())
    return {"images": len(files), "sha256": h.hexdigest()}


def git_commit(where: Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where or Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where or Path(__file__).parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def check_crop():
    """The (H, W, 3) uint8 crop used for every zoo model's reproducibility check."""

    t, b, l, r = CHECK_CROP
    return load_image(KODAK_DIR / CHECK_IMAGE).rgb[t:b, l:r].copy()


def check_level(model) -> int:
    return 0 if model.config.kind == "fixed" else model.num_levels // 2


# The check is float arithmetic before the entropy coder: the analysis transform's kernels differ by
# CPU (oneDNN picks AMX, AVX-512 or AVX2 code with other summation orders), so a latent that lies on a
# rounding boundary can round the other way on another machine. Seen: the identical bitstream on two
# Intel hosts and an AMD one, but one model whose 449-byte stream differed in content (same length)
# on a fourth CPU; and the reconstruction differing by 5e-5 dB with identical bytes. So the check
# passes on the identical bitstream (PSNR within CHECK_PSNR_TOLERANCE_DB), or, where the bytes differ,
# on a stream within CHECK_BYTES_TOLERANCE of the recorded length whose PSNR is within
# CHECK_FLIP_TOLERANCE_DB: one latent symbol moved by 1 moves this 128x192 crop's PSNR by up to
# 0.036 dB (measured on balle/cheng2020 at lambda 0.0018, the most sensitive models). A different or
# damaged model misses by far more, and its file's sha256 is checked before any of this.
CHECK_PSNR_TOLERANCE_DB = 1e-3
CHECK_FLIP_TOLERANCE_DB = 0.05
CHECK_BYTES_TOLERANCE = 0.01  # relative, and at least CHECK_BYTES_MIN bytes
CHECK_BYTES_MIN = 4


def compare_check(got: dict, want: dict) -> tuple[bool, str]:
    """Whether a re-measured check (:func:`measure_check`) agrees with the recorded one, and how."""
    dpsnr = abs(got["psnr_rgb"] - want["psnr_rgb"])
    if got["sha256_bitstream"] == want["sha256_bitstream"]:
        return dpsnr <= CHECK_PSNR_TOLERANCE_DB, f"identical bitstream, PSNR off by {dpsnr:.2g} dB"
    dbytes = abs(got["bytes"] - want["bytes"])
    ok = dbytes <= max(CHECK_BYTES_MIN, CHECK_BYTES_TOLERANCE * want["bytes"]) and dpsnr <= CHECK_FLIP_TOLERANCE_DB
    return ok, (f"bitstream differs (this CPU's float kernels round a latent otherwise): "
                f"{dbytes} bytes and {dpsnr:.3g} dB from the recorded one")  # fmt: skip


def measure_check(model) -> dict:
    """Code the check crop for real: bytes, bpp and PSNR-RGB of the decoded image."""
    from qvrf_bench.methods import codec

    rgb = check_crop()
    level = check_level(model)
    data = codec.encode(model, rgb, level=level)
    out = codec.decode(model, data)
    h, w = rgb.shape[:2]
    return {"image": CHECK_IMAGE, "crop_tblr": list(CHECK_CROP), "level": level, "bytes": len(data),
            "bpp_real": metrics.bpp(len(data), h, w), "psnr_rgb": metrics.psnr_rgb(rgb, out),
            "sha256_bitstream": hashlib.sha256(data).hexdigest()}  # fmt: skip


def _run_info(runs: Path, name: str) -> dict:
    from qvrf_bench.models.checkpoints import read_file

    final = read_file(runs / name / "final.pt")
    tr = final.get("training") or {}
    run_json = json.loads((runs / name / "run.json").read_text())
    return {"steps": int(tr.get("step", 0)), "wall_s": round(float(tr.get("elapsed_s", float("nan"))), 1),
            "device": run_json.get("device"), "train_images": run_json.get("train_images"),
            "val_images": run_json.get("val_images"), "best_val_loss": tr.get("best_loss"),
            "meta": final.get("meta", {})}  # fmt: skip


def pack(
    data: str | Path,
    runs: str | Path,
    dest: str | Path | None = None,
    archs=ZOO_ARCHS,
    log=print,
    steps: list[Step] | None = None,
    only=None,
) -> Path:
    """Ship every finished model of the recipe (``steps``, default :func:`recipe` of ``archs``; with
    ``only``, those names alone) into ``dest`` and (re)write its manifest. A re-packed file changes
    bytes (its made-with time), so ``only`` keeps the models that did not change as they are."""
    import torch

    from qvrf_bench.methods.codec import model_fingerprint
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.models.registry import prepare_for_coding

    runs, dest = Path(runs), Path(dest if dest is not None else ZOO_DIR)
    dest.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    manifest_path = dest / MANIFEST
    manifest = read_manifest(dest) if manifest_path.exists() else {"format": 1, "models": {}}
    data_id = dataset_checksum(data)
    steps = {s.name: s for s in (steps if steps is not None else recipe(archs))}
    machine = {"cpu": store.cpu_model(), "cpus": os.cpu_count(), "platform": store.provenance()["platform"]}
    commit = git_commit()
    for s in steps.values():
        if not s.ships or not _done(runs, s) or (only is not None and s.ships not in only):
            continue
        chain, cur, software = [], s, None
        while cur is not None:
            info = _run_info(runs, cur.name)
            if software is None:  # the shipped run's own: the first in the walk
                software = info["meta"]
            chain.insert(0, {"run": cur.name, "command": "qvrf-bench train " + shlex.join(cur.command("DATA", "RUNS")),
                             **{k: info[k] for k in ("steps", "wall_s", "device", "train_images", "val_images")}})  # fmt: skip
            cur = steps.get(cur.after) if cur.after else None
        model, _ = load_model(runs / s.name / "final.pt", for_coding=False)
        round_parameters(model)
        prepare_for_coding(model, force=True)  # the tables of the rounded model
        model.eval()
        path = save_shipped(dest / f"{s.ships}.pt", model)
        c = model.config
        manifest["models"][s.ships] = {
            "file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size, "arch": c.arch,
            "kind": c.kind, "levels": len(c.lmbdas), "lmbdas": c.lmbdas, "N": c.N, "M": c.M,
            "gains": [round(float(g), 6) for g in model.gain.detach().tolist()],
            "fingerprint": model_fingerprint(model), "budget": s.budget,
            "provenance": {"runs": chain, "total_steps": sum(r["steps"] for r in chain),
                           "total_wall_s": round(sum(r["wall_s"] for r in chain), 1),
                           "data": {"what": "BSDS500 photos (train/val/test folders, 500 JPEGs); 10 % held out for "
                                            "validation", **data_id}, "machine": machine, "git_commit": commit,
                           "software": software},
            "check": measure_check(load_model(path)[0]),
        }  # fmt: skip
        log(f"packed {s.ships}: {path} ({path.stat().st_size / 2**20:.2f} MB)")
    manifest["models"] = dict(sorted(manifest["models"].items()))
    tmp = manifest_path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return manifest_path


def round_parameters(model) -> None:
    """Round every parameter to :data:`STORAGE` and back, in place: the model that ships."""
    import torch

    dtype = getattr(torch, STORAGE)
    with torch.no_grad():
        for p in model.parameters():
            if not bool(torch.isfinite(p.to(dtype)).all()):
                raise QVRFError(f"a parameter does not fit {STORAGE} (|value| up to {p.abs().max().item():g})")
            p.copy_(p.to(dtype).to(p.dtype))


def save_shipped(path: str | Path, model, shared_tables: bool = True) -> Path:
    """The shipped file: own checkpoint format, parameters as :data:`STORAGE` (exact: they were
    rounded by :func:`round_parameters`), constant masks left out (checkpoints.DERIVED_BUFFERS), and
    with ``shared_tables`` the Gaussian conditional's coder tables in one file beside it, named by
    its content (``gaussian-tables-<sha256[:12]>.pt``; every zoo model with the same scale table
    shares it; checkpoints.SHARED_TABLES)."""
    import hashlib

    import torch

    from qvrf_bench.models.checkpoints import SHARED_TABLES, atomic_save, checkpoint_dict

    obj = checkpoint_dict(model)
    params = {name for name, _ in model.named_parameters()}
    dtype = getattr(torch, STORAGE)
    sd = {}
    for k, v in obj["state_dict"].items():
        if k.endswith(".mask"):
            continue
        if k in params:
            stored = v.to(dtype)
            if not torch.equal(stored.to(v.dtype), v):
                raise QVRFError(f"{k}: not a {STORAGE} value; round the model first (round_parameters)")
            v = stored
        sd[k] = v
    obj["state_dict"] = sd
    obj["storage"] = {"parameters": STORAGE, "masks": "rebuilt on load"}
    if shared_tables:
        tables = {k: sd.pop(k) for k in SHARED_TABLES}
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() + repr((t.dtype, tuple(t.shape))).encode()
                                         for t in tables.values())).hexdigest()  # fmt: skip
        side = Path(path).parent / f"gaussian-tables-{digest[:12]}.pt"
        if not side.is_file():
            atomic_save(tables, side)
        obj["storage"]["gaussian_tables"] = {"file": side.name, "sha256": file_sha256(side)}
    return atomic_save(obj, Path(path))
