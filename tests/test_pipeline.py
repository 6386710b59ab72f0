"""The main job end to end on a tiny zoo: short training, sharded sweep on real images, the README
figures and the report."""

from __future__ import annotations

import json

import pytest

from qvrf_bench import pipeline


@pytest.mark.slow
def test_default_job_on_a_tiny_zoo(tiny_zoo, tmp_path, monkeypatch):
    from PIL import Image

    from qvrf_bench import zoo

    _, _, dest, _ = tiny_zoo
    monkeypatch.setenv("QVRF_BENCH_ZOO", str(dest))  # the sweep subprocesses read it too
    monkeypatch.setattr(zoo, "ZOO_DIR", dest)
    test_set = tmp_path / "test"
    test_set.mkdir()
    kodak = zoo.KODAK_DIR
    for name in ("kodim03.png", "kodim23.png", "kodim04.png"):
        Image.open(kodak / name).crop((0, 0, 128, 128)).save(test_set / name)
    rc = pipeline.main(["--test-set", str(test_set), "--train-steps", "2", "--factors", "1,2",
                        "--peers", "jpeg", "--jobs", "2", "--out", str(tmp_path / "runs"),
                        "--reports", str(tmp_path / "reports"), "--quiet"])  # fmt: skip
    assert rc == 0
    figs = tmp_path / "reports" / "figures"
    assert (figs / "Balle.png").is_file() and (figs / "VariableRate.svg").is_file()
    html = (tmp_path / "reports" / "reproduce" / "index.html").read_text()
    assert "balle-qvrf8-pipeline-2steps" in html  # the short training's own curve, labelled with its budget
    assert "zoo:balle-qvrf8" in html
    # measured on a folder that is not Kodak: no BD-rate against the published Kodak curves
    assert "no BD-rate between different test sets" in html
    shards = [tmp_path / "runs" / f"sweep-{i}of2" for i in range(2)]
    images = set()
    for d in shards:
        manifest = json.loads((d / "run.json").read_text())
        assert manifest["config"]["dataset"]["images"] == 3
        from qvrf_bench.results.store import ResultStore

        images |= set(ResultStore(d).read()["image"])
    assert images == {"kodim03.png", "kodim23.png", "kodim04.png"}  # the shards cover every image once
    import pandas as pd

    main = pd.concat([ResultStore(d).read() for d in shards])
    dense = main.loc[main["method"] == "zoo:balle-qvrf8"]
    assert dense["level"].isna().sum() == 2 * 3  # the 8-level zoo model: its continuous gains 1 and 2
    # the short fine-tune (and an 11-level model) are swept at their levels only, without peers
    levels = pd.concat([ResultStore(tmp_path / "runs" / f"sweep-levels-{i}of2").read() for i in range(2)])
    assert "balle-qvrf8-pipeline-2steps" in set(levels["method"])
    assert levels["level"].notna().all() and not levels["method"].isin(["jpeg", "webp"]).any()
    assert not main["method"].str.contains("-pipeline-").any()
