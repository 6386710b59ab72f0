import datetime as dt
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qvrf_bench.errors import QVRFError
from qvrf_bench.results import store
from qvrf_bench.results.store import ResultStore, StoreError

PROV = {
    "qvrf_bench_version": "0.1.0",
    "torch_version": "2.14.1",
    "compressai_version": "1.2.8",
    "device": "cpu (2 threads, test)",
}
CONFIG = {"images": "kodak", "peers": ["jpeg", "webp"], "sweep": {"jpeg": [10, 50]}}


def make_row(image="kodim01.png", q=50, method="jpeg", psnr=30.0, **extra):
    row = dict(
        method=method,
        arch=method,
        kind="classical",
        engine="pillow",
        quality=float(q),
        rate_point=f"q={q}",
        image=image,
        image_sha256="sha-" + image,
        width=768,
        height=512,
        bytes=1000 + q,
        payload_bytes=1000 + q,
        bpp_real=8 * (1000 + q) / (768 * 512),
        payload_bpp_real=8 * (1000 + q) / (768 * 512),
        psnr_rgb=psnr,
        ms_ssim_rgb=0.95,
        ms_ssim_db_rgb=13.0,
        enc_s=0.01,
        dec_s=0.02,
        decode_ok=True,
    )
    row.update(extra)
    return row


def new_store(path, config=CONFIG, shard=None):
    s = ResultStore(path)
    s.start(["qvrf-bench", "sweep"], config, shard=shard, prov=PROV)
    return s


def work_items():
    return [(m, q, f"kodim{i:02d}.png") for m in ("jpeg", "webp") for q in (10, 50, 90) for i in range(1, 6)]


def rows_for(items):
    return [make_row(image=img, q=q, method=m, psnr=20 + q / 10 + len(img) / 100) for m, q, img in items]


# --- append / read --------------------------------------------------------------------------------


def test_append_and_read_roundtrip(tmp_path):
    s = new_store(tmp_path / "run")
    part = s.append([make_row(), make_row(image="kodim02.png", psnr=float("inf"), ms_ssim_rgb=float("nan"))])
    assert part is not None and part.parent == tmp_path / "run" / "results" and part.name.startswith("part-")
    df = s.read()
    assert list(df.columns) == list(store.COLUMN_NAMES)
    assert len(df) == 2
    r = df.iloc[0]
    assert r["run_id"] == "run" and r["device"] == PROV["device"] and r["torch_version"] == "2.14.1"
    assert r["shard"] == "" and r["error"] == "" and r["checkpoint"] == ""
    assert r["width"] == 768 and r["bytes"] == 1050 and bool(r["decode_ok"])
    assert str(df["width"].dtype) == "Int32" and str(df["bytes"].dtype) == "Int64"
    assert df["level"].isna().all()  # nullable int stays an integer column
    assert df.iloc[1]["psnr_rgb"] == float("inf")  # inf (lossless) and NaN (undefined) survive
    assert math.isnan(df.iloc[1]["ms_ssim_rgb"])
    assert df["created_utc"].dt.tz is not None


def test_append_nothing_writes_nothing(tmp_path):
    s = new_store(tmp_path / "run")
    assert s.append([]) is None
    assert s.parts() == []
    assert s.read().empty and list(s.read().columns) == list(store.COLUMN_NAMES)


def test_read_of_a_missing_run_is_empty(tmp_path):
    assert ResultStore(tmp_path / "nothing").read().empty
    assert ResultStore(tmp_path / "nothing").done_keys() == set()


def test_half_written_temp_files_are_never_read(tmp_path):
    s = new_store(tmp_path / "run")
    s.append([make_row()])
    results = tmp_path / "run" / "results"
    # what a kill -9 during a write leaves behind: a hidden, truncated temp file
    good = s.parts()[0].read_bytes()
    (results / ".part-20990101T000000000000Z-1-deadbeef.parquet.1234abcd.tmp").write_bytes(good[: len(good) // 2])
    (results / ".part-x.parquet").write_bytes(b"PAR1 garbage")
    (results / "part-y.parquet.tmp").write_bytes(b"garbage")
    assert len(s.parts()) == 1
    assert len(s.read()) == 1


def test_failed_write_leaves_no_part(tmp_path, monkeypatch):
    s = new_store(tmp_path / "run")

    def broken_write(table, f, **kw):
        f.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(store.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        s.append([make_row()])
    assert s.parts() == []
    assert list((tmp_path / "run" / "results").iterdir()) == []  # temp file cleaned up


def test_kill_9_during_write_is_never_read(tmp_path):
    run = tmp_path / "run"
    s = new_store(run)
    s.append([make_row(image="before.png")])
    script = textwrap.dedent(
        f"""
        import time
        from qvrf_bench.results import store
        def slow(f):
            f.write(b"PAR1" + b"x" * 1000)
            f.flush()
            time.sleep(60)  # killed here, half-written
        store.atomic_write(store.Path({str(run / "results" / "part-99999999T999999999999Z-0-0.parquet")!r}), slow)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not any(".tmp-" in p.name for p in (run / "results").iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None, "writer did not start"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    debris = [p for p in (run / "results").iterdir() if p.name.startswith(".")]
    assert [p.name for p in debris] == [f".part-99999999T999999999999Z-0-0.parquet.tmp-{proc.pid}"]
    df = s.read()
    assert list(df["image"]) == ["before.png"]
    # the next start of the run removes the debris of the dead writer, and nothing else
    (run / "results" / f".part-x.parquet.tmp-{os.getpid()}").write_bytes(b"a live writer's")
    new_store(run)
    assert sorted(p.name for p in (run / "results").iterdir() if p.name.startswith(".")) == [
        f".part-x.parquet.tmp-{os.getpid()}"
    ]
    assert list(s.read()["image"]) == ["before.png"]


def test_corrupt_part_names_the_file(tmp_path):
    s = new_store(tmp_path / "run")
    s.append([make_row()])
    bad = tmp_path / "run" / "results" / "part-zzzz.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(StoreError, match="part-zzzz.parquet: corrupt result part"):
        s.read()


def test_old_part_without_new_nullable_column_still_reads(tmp_path):
    s = new_store(tmp_path / "run")
    table = store.rows_to_table([make_row()], {"run_id": "run", **PROV})
    table = table.drop_columns(["codec_version", "lmbda"])
    (tmp_path / "run" / "results").mkdir(exist_ok=True)
    pq.write_table(table, tmp_path / "run" / "results" / "part-0.parquet")
    df = s.read()
    assert df.iloc[0]["codec_version"] == "" and math.isnan(df.iloc[0]["lmbda"])


# --- dedupe and resume ----------------------------------------------------------------------------


def test_reappend_keeps_latest(tmp_path):
    s = new_store(tmp_path / "run")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    s.append([make_row(psnr=30.0, created_utc=t0 + dt.timedelta(seconds=1)), make_row(image="b.png")])
    s.append([make_row(psnr=31.0, created_utc=t0 + dt.timedelta(seconds=2))])
    # an older measurement written later does not win
    s.append([make_row(psnr=29.0, created_utc=t0)])
    df = s.read()
    assert len(df) == 2
    assert df.set_index("image").loc["kodim01.png", "psnr_rgb"] == 31.0
    assert len(s.read(dedupe=False)) == 4


def test_same_time_ties_go_to_the_later_write(tmp_path):
    s = new_store(tmp_path / "run")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    s.append([make_row(psnr=1.0, created_utc=t)])
    s.append([make_row(psnr=2.0, created_utc=t)])
    assert list(s.read()["psnr_rgb"]) == [2.0]


def test_done_keys_for_resume(tmp_path):
    s = new_store(tmp_path / "run")
    s.append(
        [
            make_row(),
            make_row(image="nosha.png", image_sha256=""),
            make_row(image="broken.png", decode_ok=False, error="decode failed", psnr=None),
            make_row(method="vbr", checkpoint="ck.pth", checkpoint_sha256="c0ffee", kind="vbr", quality=None),
        ]
    )
    keys = s.done_keys()
    assert ("jpeg", "", "q=50", "sha-kodim01.png") in keys
    assert ("jpeg", "", "q=50", "nosha.png") in keys  # the name stands in for a missing hash
    assert ("vbr", "c0ffee", "q=50", "sha-kodim01.png") in keys
    assert ("jpeg", "", "q=50", "sha-broken.png") in keys
    assert ("jpeg", "", "q=50", "sha-broken.png") not in s.done_keys(include_failed=False)
    assert store.row_key(make_row()) in keys


def test_start_twice_resumes_and_records_it(tmp_path):
    s = new_store(tmp_path / "run")
    s.start(["qvrf-bench", "sweep", "--resume"], dict(CONFIG), prov=PROV)
    m = s.manifest
    assert m["config"] == store._canonical(CONFIG)
    assert m["command"] == ["qvrf-bench", "sweep"]
    assert len(m["resumed"]) == 1 and m["resumed"][0]["command"][-1] == "--resume"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # atomic, no debris


def test_start_with_other_config_refuses(tmp_path):
    new_store(tmp_path / "run")
    with pytest.raises(StoreError, match=r"run\.json: the run exists with a different config \(peers"):
        ResultStore(tmp_path / "run").start(["x"], {**CONFIG, "peers": ["avif"]}, prov=PROV)
    with pytest.raises(StoreError, match="shard"):
        ResultStore(tmp_path / "run").start(["x"], CONFIG, shard=(0, 2), prov=PROV)


def test_unreadable_manifest(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(StoreError, match="run.json: unreadable run manifest"):
        _ = ResultStore(tmp_path / "run").manifest


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, r"row 0: unknown column\(s\) 'bogus'"),
        ({"width": "wide"}, "row 0: column 'width' expected an integer, got str 'wide'"),
        ({"width": 7.5}, "row 0: column 'width' expected an integer, got 7.5"),
        ({"psnr_rgb": "high"}, "row 0: column 'psnr_rgb' expected a number"),
        ({"decode_ok": 1}, "row 0: column 'decode_ok' expected True/False"),
        ({"kind": "neural"}, "row 0: column 'kind': 'neural' is not one of fixed, qvrf, vbr, classical"),
        ({"method": None}, "row 0: column 'method' is missing .null. but the column is not nullable"),
        ({"rate_point": ""}, "row 0: column 'rate_point' is empty"),
        ({"height": 0}, "row 0: column 'height': 0 is not a positive size"),
        ({"bytes": -1}, "row 0: column 'bytes': -1 is negative"),
        ({"created_utc": dt.datetime(2026, 1, 1)}, "naive datetime"),
    ],
)
def test_schema_validation_errors_are_clear(tmp_path, change, message):
    s = new_store(tmp_path / "run")
    with pytest.raises(StoreError, match=message) as info:
        s.append([make_row(**change)])
    assert str(tmp_path / "run") in str(info.value)
    assert isinstance(info.value, QVRFError)
    assert s.parts() == []


def test_missing_required_column(tmp_path):
    s = new_store(tmp_path / "run")
    row = make_row()
    del row["width"]
    with pytest.raises(StoreError, match="row 1: required column 'width' is missing"):
        s.append([make_row(), row])  # nothing written when any row is bad
    assert s.parts() == []


def test_casting_of_numpy_and_pandas_values(tmp_path):
    import numpy as np
    import pandas as pd

    s = new_store(tmp_path / "run")
    s.append(
        [
            make_row(
                width=np.int64(768),
                level=np.int32(3),
                gain=np.float32(2.5),
                decode_ok=np.bool_(True),
                lmbda=pd.NA,
                checkpoint=tmp_path / "ck.pth",
                created_utc="2026-01-02T03:04:05Z",
            )
        ]
    )
    r = s.read().iloc[0]
    assert r["level"] == 3 and r["gain"] == 2.5 and r["checkpoint"] == str(tmp_path / "ck.pth")
    assert r["created_utc"] == pd.Timestamp("2026-01-02T03:04:05Z")


# --- schema documentation -------------------------------------------------------------------------


def test_schema_is_defined_once_and_documented():
    assert store.SCHEMA.names == list(store.COLUMN_NAMES)
    assert set(store.COLUMN_DESCRIPTIONS) == set(store.COLUMN_NAMES)
    for required in (
        "run_id method arch kind checkpoint checkpoint_sha256 level gain lmbda quality rate_point image "
        "image_sha256 width height bytes payload_bytes bpp_real payload_bpp_real psnr_rgb ms_ssim_rgb "
        "ms_ssim_db_rgb enc_s dec_s decode_ok error notices device qvrf_bench_version torch_version "
        "compressai_version created_utc"
    ).split():
        assert required in store.COLUMN_NAMES
    md = store.schema_markdown()
    for name in store.COLUMN_NAMES:
        assert f"| `{name}` |" in md
    assert all(store.SCHEMA.field(n).metadata[b"description"] for n in store.COLUMN_NAMES)


# --- shards and merge -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 40])
def test_shard_filter_partitions_exactly(n):
    items = work_items()
    shards = [store.shard_filter(items, i, n) for i in range(n)]
    flat = [x for sh in shards for x in sh]
    assert sorted(flat) == sorted(items)  # every item in exactly one shard
    sizes = [len(sh) for sh in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shard_filter_is_deterministic_and_order_free():
    items = work_items()
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    for i in range(3):
        a = store.shard_filter(items, i, 3)
        b = store.shard_filter(shuffled, i, 3)
        assert sorted(a) == sorted(b)
        assert b == [x for x in shuffled if x in a]  # keeps input order
    # a known assignment, so a change of the rule (which would break resumes across versions) is seen
    assert store.shard_filter(["a", "b", "c", "d", "e"], 1, 2) == ["b", "d"]


def test_shard_filter_key_and_duplicates():
    items = [{"img": "a", "try": 1}, {"img": "b", "try": 1}, {"img": "a", "try": 2}]
    got = [store.shard_filter(items, i, 2, key=lambda d: d["img"]) for i in range(2)]
    assert got == [[items[0], items[2]], [items[1]]]


@pytest.mark.parametrize("i, n", [(2, 2), (-1, 2), (0, 0)])
def test_shard_filter_rejects_bad_shards(i, n):
    with pytest.raises(QVRFError, match="shard"):
        store.shard_filter([1, 2], i, n)


def test_parse_shard():
    assert store.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/4/2", "-1/3"):
        with pytest.raises(QVRFError, match="shard"):
            store.parse_shard(bad)


def test_merge_of_shards_equals_unsharded(tmp_path):
    items = work_items()
    whole = new_store(tmp_path / "whole")
    whole.append(rows_for(items))
    shard_dirs = []
    for i in range(3):
        d = tmp_path / f"shard{i}"
        s = new_store(d, shard=(i, 3))
        mine = store.shard_filter(items, i, 3)
        half = len(mine) // 2  # written in two appends, as a sweep would
        s.append(rows_for(mine[:half]))
        s.append(rows_for(mine[half:]))
        shard_dirs.append(d)
    merged = store.merge(shard_dirs, tmp_path / "merged", command=["qvrf-bench", "merge"])

    ignore = ["run_id", "shard", "created_utc"]
    key = ["method", "rate_point", "image"]
    a = whole.read().drop(columns=ignore).sort_values(key).reset_index(drop=True)
    b = merged.read().drop(columns=ignore).sort_values(key).reset_index(drop=True)
    assert len(b) == len(items)
    assert a.equals(b)
    m = merged.manifest
    assert m["config"] == whole.manifest["config"] and m["shard"] is None
    assert [x["shard"]["index"] for x in m["merged_from"]] == [0, 1, 2]
    assert set(merged.read()["shard"]) == {"0/3", "1/3", "2/3"}  # where each row came from
    assert set(merged.read()["run_id"]) == {"merged"}


def test_merge_dedupes_overlapping_shards(tmp_path):
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    a, b = new_store(tmp_path / "a"), new_store(tmp_path / "b")
    a.append([make_row(psnr=1.0, created_utc=t), make_row(image="x.png")])
    b.append([make_row(psnr=2.0, created_utc=t + dt.timedelta(seconds=5))])
    merged = store.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m").read()
    assert len(merged) == 2
    assert merged.set_index("image").loc["kodim01.png", "psnr_rgb"] == 2.0


def test_merge_refuses_disagreeing_configs(tmp_path):
    new_store(tmp_path / "a", shard=(0, 2)).append([make_row()])
    new_store(tmp_path / "b", config={**CONFIG, "sweep": {"jpeg": [10]}}, shard=(1, 2))
    with pytest.raises(StoreError, match=r"a and .*b disagree on the run config \(sweep"):
        store.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_missing_shards_unless_asked(tmp_path):
    for i in (0, 2):
        new_store(tmp_path / f"s{i}", shard=(i, 3)).append([make_row(image=f"{i}.png")])
    dirs = [tmp_path / "s0", tmp_path / "s2"]
    with pytest.raises(StoreError, match="shard.s. 1/3 missing"):
        store.merge(dirs, tmp_path / "m")
    assert len(store.merge(dirs, tmp_path / "m", allow_incomplete=True).read()) == 2


def test_merge_refuses_bad_folders(tmp_path):
    new_store(tmp_path / "a").append([make_row()])
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="empty: not a run folder"):
        store.merge([tmp_path / "a", tmp_path / "empty"], tmp_path / "m")
    with pytest.raises(StoreError, match="cannot also be an input"):
        store.merge([tmp_path / "a"], tmp_path / "a")
    store.merge([tmp_path / "a"], tmp_path / "m")
    with pytest.raises(StoreError, match="already holds a run"):
        store.merge([tmp_path / "a"], tmp_path / "m")
    with pytest.raises(StoreError, match="no shard folders"):
        store.merge([], tmp_path / "m2")


# --- provenance -----------------------------------------------------------------------------------


def test_provenance():
    p = store.provenance()
    for k in ("qvrf_bench_version", "torch_version", "compressai_version", "python_version", "numpy_version",
              "pillow_version", "device"):  # fmt: skip
        assert p[k], k
    assert p["compressai_version"] == "1.2.8"
    assert p["device"].startswith("cpu (") and "thread" in p["device"]


def test_sha256_file(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    assert store.sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_table_from_rows_matches_schema():
    t = store.rows_to_table([make_row()], {"run_id": "r", **PROV})
    assert t.schema.equals(store.SCHEMA, check_metadata=False)
    assert isinstance(t, pa.Table)


def test_merge_keeps_nan_and_null_apart(tmp_path):
    new_store(tmp_path / "a").append([make_row(ms_ssim_rgb=float("nan"), psnr_rgb=None)])
    merged = store.merge([tmp_path / "a"], tmp_path / "m")
    col = merged.read_table().column("ms_ssim_rgb")
    assert col.null_count == 0 and math.isnan(col[0].as_py())
    assert merged.read_table().column("psnr_rgb").null_count == 1


def test_compact_rewrites_parts_as_one(tmp_path):
    s = new_store(tmp_path / "run")
    for q in (10, 50, 50, 90):
        s.append([make_row(q=q, psnr=q)])
    before = s.read()
    part = s.compact()
    assert s.parts() == [part]
    assert s.read().equals(before)
    assert s.compact() == part  # nothing to do


def test_device_string_names_threads_and_cpu():
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert store.device_string(torch.device("cpu")).startswith("cpu (1 thread, ")
        torch.set_num_threads(2)
        assert store.device_string(torch.device("cpu")).startswith("cpu (2 threads, ")
    finally:
        torch.set_num_threads(threads)


def test_shard_auto_from_the_scheduler_environment():
    from qvrf_bench.errors import QVRFError

    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert store.parse_shard("auto", slurm) == (2, 4)  # --array=1-4: task 3 is shard 2 of 4
    assert store.parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}) == (0, 2)
    assert store.parse_shard("auto", {"RANK": "1", "WORLD_SIZE": "3"}) == (1, 3)
    assert store.parse_shard("auto", {**slurm, "RANK": "0", "WORLD_SIZE": "8"}) == (2, 4)  # Slurm first
    with pytest.raises(QVRFError, match="no scheduler shard"):
        store.parse_shard("auto", {})
    with pytest.raises(QVRFError, match="step 2"):
        store.parse_shard("auto", {**slurm, "SLURM_ARRAY_TASK_STEP": "2"})
    with pytest.raises(QVRFError, match="need N >= 1"):
        store.parse_shard("auto", {"RANK": "4", "WORLD_SIZE": "4"})
    assert store.parse_shard("1/3") == (1, 3)


# --- buffered writes ----------------------------------------------------------------------------


def test_row_buffer_writes_a_part_per_flush_and_validates_at_once(tmp_path):
    s = new_store(tmp_path / "run")
    now = [0.0]
    buf = store.RowBuffer(s, max_rows=5, max_seconds=30.0, clock=lambda: now[0])
    buf.add([make_row(f"i{k}.png") for k in range(3)])
    assert s.parts() == [] and buf.pending == 3  # below both limits: nothing written yet
    buf.add([make_row(f"i{k}.png") for k in range(3, 6)])  # 6 >= 5 rows: one part
    assert len(s.parts()) == 1 and buf.pending == 0
    buf.add([make_row("late.png")])
    now[0] = 31.0
    buf.add([])  # 30 s since the last write: the waiting row goes out
    assert len(s.parts()) == 2 and len(s.read()) == 7
    with pytest.raises(store.StoreError, match="row 0: unknown column"):
        buf.add([dict(make_row(), bogus=1)])  # refused when added, not at the next flush
    buf.add([make_row("x.png")])
    buf.flush()
    assert len(s.parts()) == 3 and buf.parts_written == 3
    s.compact()
    assert len(s.parts()) == 1 and len(s.read()) == 8


def test_a_finished_sweep_leaves_one_part(tmp_path):
    from helpers import run_cli
    from PIL import Image

    data = tmp_path / "imgs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(data / f"{i}.png")
    p = run_cli("sweep", "--dataset", data, "--out", tmp_path / "run", "--peers", "jpeg,webp",
                "--peer-qualities", "jpeg=20,80", "--peer-qualities", "webp=50", "--no-progress")  # fmt: skip
    assert p.returncode == 0, p.stderr
    s = ResultStore(tmp_path / "run")
    assert len(s.parts()) == 1 and len(s.read()) == 9  # 3 images x (2 jpeg + 1 webp), one file
