"""The model zoo: the recipe's stated budgets, train -> pack -> zoo:NAME end to end on a tiny recipe,
and the shipped files themselves (sha256, provenance, the recorded Kodak-crop check to 1e-6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qvrf_bench import zoo
from qvrf_bench.errors import CheckpointError
from qvrf_bench.models.checkpoints import file_sha256, load_model, read_file
from qvrf_bench.models.qvrf import LAMBDAS_8
from qvrf_bench.train import zoo as zoo_train

SHIPPED = zoo.read_manifest()["models"]


# --- the recipe ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", zoo_train.ZOO_ARCHS)
def test_recipe_gives_anchors_and_qvrf_their_stated_budgets_from_one_base(arch):
    steps = {s.name: s for s in zoo_train.recipe([arch])}
    plan = zoo_train.PLANS[arch]

    def own_steps(s) -> int:
        return int(s.argv[s.argv.index("--steps") + 1])

    def chain(s):
        out = [s]
        while out[-1].after:
            out.append(steps[out[-1].after])
        return out

    shipped = [s for s in steps.values() if s.ships]
    anchors = [s for s in shipped if s.ships.startswith(f"{arch}-fixed-")]
    assert sorted(float(a.argv[a.argv.index("--lambda") + 1]) for a in anchors) == sorted(LAMBDAS_8)
    for s in shipped:
        runs = chain(s)
        assert runs[-1].name == f"{arch}-base", "every shipped model starts from the arch's base"
        assert own_steps(runs[-1]) == plan.base_steps
        budget = plan.qvrf_budget if "qvrf" in s.ships else plan.steps
        assert sum(own_steps(r) for r in runs[:-1]) == budget, f"{s.ships}: not its stated budget"
        if "qvrf" in s.ships:  # every stage pins the same level: the base's when the plan says so
            pins = {
                r.argv[r.argv.index("--pinned-level") + 1] if "--pinned-level" in r.argv else None for r in runs[:-1]
            }
            assert pins == ({"7"} if plan.pin_base_level else {None})
        # the same crops, batch and widths everywhere: only lambda / kind / stage differ
        for flag in ("--channels", "--patch-size", "--batch-size", "--threads"):
            assert {r.argv[r.argv.index(flag) + 1] for r in runs} == {s.argv[s.argv.index(flag) + 1]}
    qvrf = [s.ships for s in shipped if "qvrf" in s.ships]
    assert f"{arch}-qvrf8" in qvrf
    assert (f"{arch}-qvrf11" in qvrf) == plan.eleven


def test_zoo_names_resolve_only_when_shipped(tmp_path):
    with pytest.raises(CheckpointError, match="no such zoo model"):
        zoo.resolve("zoo:no-such-model")
    assert zoo.resolve("some/path.pt") == Path("some/path.pt")  # not a zoo name: unchanged


# --- train -> pack -> zoo:NAME, end to end on a tiny recipe ---------------------------------------


@pytest.mark.slow
def test_train_pack_and_load_a_tiny_zoo(tiny_zoo, monkeypatch):
    photos, runs, dest, recipe = tiny_zoo
    logs: list[str] = []
    # resumable: a second call finds everything finished and starts nothing
    assert zoo_train.train_zoo(photos, runs, jobs=2, steps=recipe, log=logs.append) == 0
    assert not any("start" in line for line in logs)

    manifest = json.loads((dest / zoo.MANIFEST).read_text())
    assert set(manifest["models"]) == {"balle-fixed-l0.18", "balle-fixed-l0.0018", "balle-qvrf8"}
    e = manifest["models"]["balle-qvrf8"]
    assert e["sha256"] == file_sha256(dest / e["file"])
    runs_chain = e["provenance"]["runs"]
    assert [r["run"] for r in runs_chain] == ["balle-base", "balle-qvrf8-s2"]
    assert runs_chain[0]["command"].startswith("qvrf-bench train --kind fixed --lambda 0.18")
    assert e["provenance"]["total_steps"] == 3 + 2
    assert e["provenance"]["data"]["images"] == 4
    assert "training" not in read_file(dest / e["file"])  # training state stripped

    monkeypatch.setattr(zoo, "ZOO_DIR", dest)
    model, _ = load_model("zoo:balle-qvrf8")  # through checkpoints.read_file, as every command does
    assert model.num_levels == 8
    assert zoo_train.measure_check(model) == e["check"]
    # re-packing one model leaves the others' files and entries as they were
    before = {n: (dest / m["file"]).read_bytes() for n, m in manifest["models"].items()}
    zoo_train.pack(photos, runs, dest, steps=recipe, only={"balle-qvrf8"}, log=logs.append)
    again = json.loads((dest / zoo.MANIFEST).read_text())["models"]
    for n in ("balle-fixed-l0.18", "balle-fixed-l0.0018"):
        assert again[n] == manifest["models"][n] and (dest / again[n]["file"]).read_bytes() == before[n]
    # a modified file is refused by name
    bad = dest.parent / "zoo-modified"
    shutil.copytree(dest, bad)
    data = bytearray((bad / e["file"]).read_bytes())
    data[-10] ^= 0xFF
    (bad / e["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(zoo, "ZOO_DIR", bad)
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        zoo.resolve("zoo:balle-qvrf8")


def test_shipped_files_share_one_gaussian_tables_file(tiny_zoo, tmp_path, monkeypatch):
    """Packed models keep the Gaussian conditional's coder tables in one file beside them (the same for
    every model with the scale table): each model file is smaller by it, loads with the very tables,
    and a missing or modified tables file is one line naming it."""
    import torch

    from qvrf_bench.models.checkpoints import SHARED_TABLES

    _, _, dest, _ = tiny_zoo
    sides = sorted(dest.glob("gaussian-tables-*.pt"))
    assert len(sides) == 1  # three models, one table file
    for name in ("balle-fixed-l0.18", "balle-qvrf8"):
        obj = read_file(dest / f"{name}.pt")
        assert not set(SHARED_TABLES) & set(obj["state_dict"])
        assert obj["storage"]["gaussian_tables"] == {"file": sides[0].name, "sha256": file_sha256(sides[0])}
    monkeypatch.setattr(zoo, "ZOO_DIR", dest)
    model, _ = load_model("zoo:balle-qvrf8")
    tables = read_file(sides[0])
    for k in SHARED_TABLES:
        assert torch.equal(model.state_dict()[k], tables[k])
    # the same model saved with its tables inside codes the same bytes (zoo checks: identical)
    inside = zoo_train.save_shipped(tmp_path / "inside.pt", model, shared_tables=False)
    assert zoo_train.measure_check(load_model(inside)[0]) == zoo_train.measure_check(model)
    assert (dest / "balle-qvrf8.pt").stat().st_size < inside.stat().st_size - tables[SHARED_TABLES[0]].numel() * 3
    for damage in ("missing", "modified"):
        bad = tmp_path / damage
        shutil.copytree(dest, bad)
        side = bad / sides[0].name
        if damage == "missing":
            side.unlink()
        else:
            side.write_bytes(side.read_bytes()[:-5] + b"xxxxx")
        with pytest.raises(CheckpointError, match="needs its Gaussian coder tables" if damage == "missing"
                           else "does not match the sha256 that balle-qvrf8.pt records"):  # fmt: skip
            load_model(bad / "balle-qvrf8.pt")


# --- the shipped zoo ----------------------------------------------------------------------------


def test_the_zoo_ships_balle():
    assert {"balle-qvrf8", "balle-qvrf11", *(f"balle-fixed-l{lm:g}" for lm in LAMBDAS_8)} <= set(SHIPPED)


def test_shipped_zoo_fits_the_size_budget():
    assert sum(e["bytes"] for e in SHIPPED.values()) <= 100 * 2**20  # the zoo's budget in the repository


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_checkpoint_sha256_and_provenance(name):
    e = SHIPPED[name]
    path = zoo.ZOO_DIR / e["file"]
    assert path.is_file(), f"{path} missing"
    assert file_sha256(path) == e["sha256"]
    assert path.stat().st_size == e["bytes"]
    p = e["provenance"]
    assert p["runs"] and all(r["command"].startswith("qvrf-bench train ") for r in p["runs"])
    assert all(r["steps"] > 0 and r["wall_s"] > 0 for r in p["runs"])
    assert p["total_steps"] == sum(r["steps"] for r in p["runs"])
    assert len(p["data"]["sha256"]) == 64 and p["data"]["images"] == 500
    assert p["machine"]["cpu"] and len(p["git_commit"].split("+")[0]) == 40
    assert {"qvrf_bench", "torch", "compressai"} <= set(p["software"])
    obj = read_file(path)
    assert "training" not in obj and obj["config"]["arch"] == e["arch"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_codes_its_check_crop_as_recorded(name):
    """Real bytes of one Kodak crop: the same bitstream, bpp and PSNR as when it was packed."""
    e = SHIPPED[name]
    model, _ = load_model(zoo.PREFIX + name)
    got = zoo_train.measure_check(model)
    want = e["check"]
    ok, how = zoo_train.compare_check(got, want)
    assert ok, f"{name}: {how}"
    assert got["bpp_real"] == pytest.approx(got["bytes"] * 8 / (128 * 192), abs=1e-9)


def test_the_check_comparison_tells_a_rounding_flip_from_another_model():
    want = {"bytes": 449, "psnr_rgb": 25.0, "sha256_bitstream": "a" * 64}
    assert zoo_train.compare_check(dict(want, psnr_rgb=25.0004), want)[0]
    assert not zoo_train.compare_check(dict(want, psnr_rgb=25.01), want)[0]  # same bytes, other decoder
    flip = dict(want, sha256_bitstream="b" * 64)
    assert zoo_train.compare_check(dict(flip, bytes=450, psnr_rgb=25.03), want)[0]
    assert not zoo_train.compare_check(dict(flip, bytes=470), want)[0]
    assert not zoo_train.compare_check(dict(flip, psnr_rgb=25.2), want)[0]


def test_kodak_ships_intact():
    sums = (zoo.KODAK_DIR / "SHA256SUMS").read_text().split("\n")
    pairs = [line.split() for line in sums if line.strip()]
    assert len(pairs) == 24
    for digest, fname in pairs:
        assert file_sha256(zoo.KODAK_DIR / fname.lstrip("*")) == digest


def test_recipe_commands_have_no_placeholders_left():
    # `zoo train --dry-run` prints commands a user can paste
    for s in zoo_train.recipe():
        assert not any("{" in a for a in s.command("DATA", "RUNS"))
