"""Training notices reach the console with and without a progress bar (issue 13, row 15)."""

from __future__ import annotations

from qvrf_bench.train import train
from qvrf_bench.train.logs import EventLog


def test_event_log_prints_without_a_bar_and_logs(tmp_path, capsys):
    log = EventLog(tmp_path / "events.log", echo=False)
    log("resumed from last.pt at step 4 of 8")
    log("skipped unreadable image x.png: empty file", once=True)
    log("skipped unreadable image x.png: empty file", once=True)
    err = capsys.readouterr().err
    assert err.splitlines() == ["notice: resumed from last.pt at step 4 of 8",
                                "notice: skipped unreadable image x.png: empty file"]  # fmt: skip
    assert (tmp_path / "events.log").read_text().count("\n") == 2


def test_no_progress_training_still_prints_its_notices(tiny, photos, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny(dataset=str(photos), out=str(out), val_fraction=0.0, steps=2, progress=False))
    err = capsys.readouterr().err
    for name in ("text.png", "empty.png", "truncated.png"):
        assert f"notice: skipped unreadable image {photos / name}" in err, err
    train(tiny(dataset=str(photos), out=str(out), val_fraction=0.0, steps=4, progress=False))
    assert "notice: resumed from" in capsys.readouterr().err
