"""The training loop: every stage on every architecture, resume, NaN stop, best-loss reset, init."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from qvrf_bench.errors import CheckpointError, QVRFError
from qvrf_bench.models import LAMBDAS_8, create
from qvrf_bench.models.checkpoints import load_model, read_file, save_checkpoint
from qvrf_bench.train import TrainConfig, initial_model, train
from qvrf_bench.train import loop as loop_module

REPO = Path(__file__).resolve().parents[2]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def steps_of(path: Path) -> list[int]:
    return [int(r["step"]) for r in rows(path)]


RUNS = [("fixed", 1), ("qvrf", 1), ("qvrf", 2), ("qvrf", 3)]


@pytest.mark.parametrize("arch", ["balle", "minnen-mean", "minnen", "cheng2020"])
def test_every_stage_runs(tiny, tmp_path, arch):
    for kind, stage in RUNS:
        # Stage 3 on the AR models runs the serial STE loop: one step on a 4x4 latent.
        steps = 1 if stage == 3 and arch in ("minnen", "cheng2020") else 2
        cfg = tiny(arch=arch, kind=kind, stage=stage, lmbda=0.0130, steps=steps, batch_size=1 if steps == 1 else 2,
                   out=str(tmp_path / f"{kind}{stage}"))  # fmt: skip
        final = train(cfg)
        assert final.name == "final.pt" and final.exists()
        model, obj = load_model(final)  # loadable for coding, like `qvrf-bench encode -c`
        assert model.config.arch == arch and model.config.kind == kind
        assert obj["training"]["step"] == steps
        log = rows(final.parent / "train_log.csv")
        assert [int(r["step"]) for r in log] == list(range(1, steps + 1))
        levels = {int(r["level"]) for r in log}
        if kind == "fixed":
            assert levels == {0} and float(log[0]["lmbda"]) == 0.013
        elif stage == 1:
            assert levels == {7} and float(log[0]["gain"]) == 1.0  # top lambda at a = gain[0]
            assert float(log[0]["lmbda"]) == 0.18
        val = rows(final.parent / "val_log.csv")
        n_levels = 8 if kind == "qvrf" and stage > 1 else 1
        assert len(val) == n_levels and all(math.isfinite(float(r["psnr"])) for r in val)


def test_broken_images_are_named_and_the_run_goes_on(tiny, photos, tmp_path):
    final = train(tiny(dataset=str(photos), out=str(tmp_path / "broken"), val_fraction=0.0))
    events = (final.parent / "events.log").read_text()
    info = json.loads((final.parent / "run.json").read_text())
    for name in ("text.png", "empty.png", "truncated.png"):
        assert name in events
        assert any(name in s for s in info["skipped"])
    assert info["train_images"] == 5 and "smaller than 64x64: reflect-padded" in events


def test_stage2_draws_levels_and_learns_gains(tiny):
    cfg = tiny(steps=12, val_every=12, save_every=12)
    final = train(cfg)
    levels = [int(r["level"]) for r in rows(final.parent / "train_log.csv")]
    assert len(set(levels)) >= 4  # one uniform draw per batch
    model, _ = load_model(final)
    init = torch.tensor(model.config.gains_init)
    gain = model.gain.detach()
    assert gain[0] == init[0]  # a_0 frozen
    assert not torch.equal(gain[1:], init[1:])  # the others learned
    groups = read_file(final.parent / "last.pt")["training"]["optimizer"]["param_groups"]
    assert groups[1]["lr"] == groups[0]["lr"]  # a_0 = 1: the official single lr
    fixed = tiny(steps=4, fixed_gains=True, out=str(Path(cfg.out).parent / "fixedgains"))
    m2, _ = load_model(train(fixed))
    assert torch.equal(m2.gain.detach(), torch.tensor(m2.config.gains_init))
    pin = tiny(steps=12, val_every=12, save_every=12, pinned_level=7, out=str(Path(cfg.out).parent / "pin7"))
    m3, _ = load_model(train(pin))
    gain = m3.gain.detach()
    assert gain[7] == init[7] and gain[0] != init[0]  # the pinned level frozen, a_0 learns
    assert not torch.equal(gain, model.gain.detach())


def test_a_run_made_before_a_new_identity_field_resumes_with_its_old_value():
    from qvrf_bench.train.config import identity_diff

    old = {"arch": "balle", "kind": "qvrf", "levels": 8}  # no pinned_level: made before it existed
    assert identity_diff(old, {**old, "pinned_level": 0}) == []
    assert identity_diff(old, {**old, "pinned_level": 7}) == ["pinned_level: 0 -> 7"]
    with pytest.raises(ValueError, match="pinned-level"):
        TrainConfig(arch="balle", dataset="x", pinned_level=8).check()


def test_resume_after_interruption_continues_at_the_right_step(tiny, tmp_path):
    # The reference: 10 steps without interruption.
    ref = train(tiny(steps=10, save_every=4, val_every=5, out=str(tmp_path / "ref")))
    # Interrupted after step 6 (as a kill would: the last checkpoint is step 4, the log has 6 rows).
    cfg = tiny(steps=10, save_every=4, val_every=5, out=str(tmp_path / "cut"))
    cut = train(replace(cfg, max_steps=6))
    assert cut.name == "last.pt" and read_file(cut)["training"]["step"] == 4
    assert steps_of(cut.parent / "train_log.csv") == list(range(1, 7))
    assert not (cut.parent / "final.pt").exists()
    final = train(cfg)  # the same command again: resumes from step 4
    assert read_file(final)["training"]["step"] == 10
    assert steps_of(final.parent / "train_log.csv") == list(range(1, 11))
    assert steps_of(final.parent / "val_log.csv") == [5] * 8 + [10] * 8  # 8 levels each
    assert "resumed from" in (final.parent / "events.log").read_text()
    # Batches, level draws and RNG states are restored: the resumed run is the uninterrupted one.
    a, b = read_file(ref)["state_dict"], read_file(final)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a if a[k].numel())
    # A finished run returns at once; --resume on an empty folder is an error.
    assert train(cfg) == final
    with pytest.raises(QVRFError, match="no checkpoint"):
        train(tiny(out=str(tmp_path / "nothing"), resume="yes"))


def test_a_folder_holding_another_run_is_refused(tiny, tmp_path):
    out = str(tmp_path / "run")
    train(tiny(out=out))
    with pytest.raises(QVRFError, match="holds another run.*stage"):
        train(tiny(out=out, stage=3))
    final = train(tiny(out=out, stage=3, resume="no"))  # --restart
    assert read_file(final)["training"]["config"]["stage"] == 3


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path, clean_photos):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "qvrf_bench", "train", "--arch", "balle", "--kind", "fixed", "--lambda", "0.0483",
           "--dataset", str(clean_photos), "--out", str(out), "--channels", "8,8", "--patch-size", "64",
           "--batch-size", "2", "--steps", "400", "--save-every", "3", "--val-every", "100",
           "--max-val-images", "2", "--threads", "1", "--no-progress", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = read_file(out / "last.pt")["training"]["step"]
    assert 3 <= saved < 400 and saved % 3 == 0
    # Resume for a short total (the run may be extended or shortened in steps) to keep the test quick.
    total = saved + 4
    done = subprocess.run(cmd[: cmd.index("--steps") + 1] + [str(total)] + cmd[cmd.index("--steps") + 2 :],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "final checkpoint" in done.stdout
    assert read_file(out / "final.pt")["training"]["step"] == total
    assert steps_of(out / "train_log.csv") == list(range(1, total + 1))


def scale_loss_at_step(monkeypatch, step: int, factor: float) -> None:
    """Multiply the training loss of one step by ``factor`` (validation is stubbed out, so the
    calls of rate_distortion are the training steps)."""
    real = loop_module.rate_distortion
    calls = {"n": 0}

    def scaled(out, x, lmbda):
        calls["n"] += 1
        rd = real(out, x, lmbda)
        if calls["n"] == step:
            rd["loss"] = rd["loss"] * factor
        return rd

    monkeypatch.setattr(loop_module, "rate_distortion", scaled)
    monkeypatch.setattr(loop_module, "validate", lambda *a, **k: loop_module.ValResult([], 1.0))


def test_nan_loss_stops_with_the_step_named(tiny, tmp_path, monkeypatch):
    scale_loss_at_step(monkeypatch, 4, float("nan"))
    cfg = tiny(kind="fixed", lmbda=0.0483, steps=6, save_every=2, val_every=100, out=str(tmp_path / "nan"))
    with pytest.raises(QVRFError, match=r"non-finite loss \(nan\) at step 4.*last\.pt \(step 2\)"):
        train(cfg)
    last = read_file(tmp_path / "nan" / "last.pt")
    assert last["training"]["step"] == 2  # the last good checkpoint is kept
    assert all(torch.isfinite(v.float()).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "nan" / "final.pt").exists()
    assert "at step 4" in (tmp_path / "nan" / "events.log").read_text()


def test_a_gradient_spike_is_zeroed_by_clipping_not_fatal(tiny, tmp_path, monkeypatch):
    scale_loss_at_step(monkeypatch, 2, 1e30)  # finite gradients, but their float32 norm overflows
    final = train(tiny(kind="fixed", lmbda=0.0483, steps=3, out=str(tmp_path / "spike")))
    assert read_file(final)["training"]["step"] == 3
    assert "step 2: gradient norm overflowed" in (tmp_path / "spike" / "events.log").read_text()
    assert all(torch.isfinite(v.float()).all() for v in read_file(final)["state_dict"].values() if v.numel())


def test_huge_lr_stops_cleanly(tiny, tmp_path):
    with pytest.raises(QVRFError, match=r"non-finite .* at step \d+"):
        train(tiny(kind="fixed", lmbda=0.18, lr=1e6, aux_lr=1e6, clip=0, steps=30, out=str(tmp_path / "lr")))


def test_a_new_stage_starts_a_new_best_record(tiny, tmp_path):
    s1 = train(tiny(stage=1, out=str(tmp_path / "s1")))
    # Make the previous stage's record unbeatable: it must not carry over.
    obj = read_file(s1.parent / "last.pt")
    obj["training"]["best_loss"] = -1e30
    torch.save(obj, s1.parent / "last.pt")
    s2 = train(tiny(stage=2, init_from=str(s1.parent / "last.pt"), out=str(tmp_path / "s2")))
    val = rows(s2.parent / "val_log.csv")
    assert val[0]["is_best"] == "1" and (s2.parent / "best.pt").exists()
    best = read_file(s2.parent / "best.pt")["training"]["best_loss"]
    assert best == pytest.approx(float(val[0]["total_loss"]), rel=1e-5) and best > 0


def test_init_from_a_fixed_rate_checkpoint_keeps_its_weights(tiny, tmp_path):
    fixed = train(tiny(kind="fixed", lmbda=0.0483, out=str(tmp_path / "anchor")))
    ref = read_file(fixed)["state_dict"]
    cfg = tiny(stage=2, init_from=str(fixed), N=None, M=None, out=str(tmp_path / "vr")).resolved()
    model = initial_model(cfg, lambda *a, **k: None)
    sd = model.state_dict()
    for k, v in ref.items():
        if k != "gain" and v.numel():
            assert torch.equal(sd[k], v), k
    expected = torch.tensor([math.sqrt(lm / 0.0483) for lm in LAMBDAS_8])
    assert torch.allclose(model.gain.detach(), expected)  # decision 1: a = 1 at the anchor's lambda
    assert model.level_gain(LAMBDAS_8.index(0.0483)) == pytest.approx(1.0)
    # A CompressAI-style raw state dict with --init-lambda gives the same model.
    raw = tmp_path / "zoo.pth"
    torch.save({k: v for k, v in ref.items() if k != "gain"}, raw)
    zoo = initial_model(tiny(stage=2, init_from=str(raw), init_lambda=0.0483).resolved(), lambda *a, **k: None)
    assert all(torch.equal(zoo.state_dict()[k], sd[k]) for k in sd if sd[k].numel())
    # And the run itself trains from it, the gains at lr * a_0 (a_0 = sqrt(0.0018 / 0.0483)).
    final = train(tiny(stage=2, init_from=str(fixed), out=str(tmp_path / "vr"), lr=1e-3))
    assert read_file(final)["config"]["kind"] == "qvrf"
    groups = read_file(final.parent / "last.pt")["training"]["optimizer"]["param_groups"]
    assert groups[0]["lr"] == 1e-3 and groups[1]["lr"] == pytest.approx(1e-3 * math.sqrt(0.0018 / 0.0483))
    assert len(groups[1]["params"]) == 1


def test_resume_does_not_need_the_init_file_again(tiny, tmp_path):
    fixed = train(tiny(kind="fixed", lmbda=0.18, out=str(tmp_path / "anchor")))
    moved = tmp_path / "anchor.pt"
    moved.write_bytes(fixed.read_bytes())
    cfg = tiny(init_from=str(moved), N=None, M=None, steps=4, out=str(tmp_path / "vr"))
    train(replace(cfg, max_steps=3))
    moved.unlink()
    final = train(cfg)
    assert read_file(final)["training"]["step"] == 4


def test_init_from_mismatches_are_errors(tiny, tmp_path):
    path = tmp_path / "minnen.pt"
    save_checkpoint(path, create("minnen-mean", "qvrf", N=8, M=8))
    with pytest.raises(CheckpointError, match="minnen-mean"):
        train(tiny(init_from=str(path)))
    with pytest.raises(CheckpointError, match="cannot start a fixed-rate run"):
        train(tiny(arch="minnen-mean", kind="fixed", lmbda=0.0483, init_from=str(path)))
    path11 = tmp_path / "l11.pt"
    save_checkpoint(path11, create("balle", "qvrf", N=8, M=8, levels=11))
    with pytest.raises(CheckpointError, match="11-level"):
        train(tiny(init_from=str(path11)))


def test_cli_anchors_all_and_rerun_skips(tmp_path, clean_photos, capsys):
    from qvrf_bench.cli import main

    args = ["train", "--arch", "balle", "--lambda", "all", "--kind", "fixed", "--dataset", str(clean_photos),
            "--out", str(tmp_path / "anchors"), "--channels", "8", "--steps", "1", "--batch-size", "1",
            "--val-every", "1", "--max-val-images", "1", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    runs = sorted(p.name for p in (tmp_path / "anchors").iterdir())
    assert runs == sorted(f"balle-fixed-l{lm:g}-smoke" for lm in LAMBDAS_8)
    for lm in LAMBDAS_8:
        m, _ = load_model(tmp_path / "anchors" / f"balle-fixed-l{lm:g}-smoke" / "final.pt")
        assert m.config.lmbdas == [lm] and (m.config.N, m.config.M) == (8, 8)
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("already finished") == 8
    assert main(["train", "--arch", "balle", "--kind", "fixed", "--dataset", str(clean_photos)]) == 2
    assert "--lambda" in capsys.readouterr().err
    bad = ["train", "--arch", "balle", "--dataset", str(clean_photos), "--patch-size", "96", "--no-progress"]
    assert main(bad) == 2
    assert "multiple of 64" in capsys.readouterr().err


def test_presets_and_overrides():
    from qvrf_bench.train import TrainConfig

    paper = TrainConfig(arch="balle", dataset="x", preset="paper", stage=1).resolved()
    assert (paper.lr, paper.aux_lr, paper.batch_size, paper.patch_size, paper.clip) == (1e-4, 1e-3, 8, 256, 1.0)
    assert (paper.plateau_factor, paper.plateau_patience, paper.test_batch_size) == (0.5, 20, 64)
    assert paper.epochs == 2000 and paper.steps is None and paper.val_every is None
    assert TrainConfig(arch="balle", dataset="x", preset="paper", stage=3).resolved().epochs == 500
    assert paper.out == str(Path("runs") / "balle-qvrf8-s1-paper")
    smoke = TrainConfig(arch="cheng2020", dataset="x", lr=5e-4, steps=9, N=24).resolved()
    assert (smoke.lr, smoke.steps, smoke.N, smoke.M, smoke.patch_size) == (5e-4, 9, 24, 24, 64)
    with pytest.raises(ValueError, match="stage"):
        TrainConfig(arch="balle", dataset="x", stage=4).resolved()


def test_lr_drop_and_snapshots(tiny, tmp_path):
    """--lr-drop-at lowers every learning rate once (kept across a resume); --keep-every keeps
    model-only snapshots that load and code."""
    from qvrf_bench.models.checkpoints import load_model
    from qvrf_bench.train import train

    cfg = tiny(steps=6, lr=1e-3, lr_drop_at=0.5, keep_every=3, save_every=2, max_steps=4)
    train(cfg)  # stops after step 4, as a kill would (last.pt at step 4)
    final = train(tiny(steps=6, lr=1e-3, lr_drop_at=0.5, keep_every=3, save_every=2))
    lrs = {int(r["step"]): float(r["lr"]) for r in rows(final.parent / "train_log.csv")}
    assert lrs[1] == lrs[2] == pytest.approx(1e-3)
    assert all(lrs[s] == pytest.approx(1e-4) for s in (3, 4, 5, 6))
    snaps = sorted(p.name for p in (final.parent / "snapshots").iterdir())
    assert snaps == ["step-0000003.pt", "step-0000006.pt"]
    model, obj = load_model(final.parent / "snapshots" / "step-0000003.pt")
    assert obj["training"]["step"] == 3 and "optimizer" not in obj["training"]
    with pytest.raises(ValueError, match="lr-drop-at"):
        tiny(lr_drop_at=1.5).resolved()
