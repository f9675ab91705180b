"""RUN/log.csv (facecycle.train.runlog.RunLog): header widening, trimming on resume."""
from __future__ import annotations

import csv

from facecycle.train.runlog import RunLog


def _rows(p):
    with open(p, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def test_new_keys_widen_the_header_and_keep_every_row(tmp_path):
    p = tmp_path / "log.csv"
    log = RunLog(p)
    for s in range(1, 4):
        log.append({"step": s, "loss": s / 10})
    log.append({"step": 4, "loss": 0.4, "val_acc": 0.5})
    log.append({"step": 5, "loss": 0.5})
    fields, rows = _rows(p)
    assert fields == ["step", "loss", "val_acc"]
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[3]["val_acc"] == "0.5" and rows[0]["val_acc"] == "" and rows[4]["val_acc"] == ""


def test_trim_drops_rows_after_the_step_and_a_new_log_object_continues(tmp_path):
    p = tmp_path / "log.csv"
    log = RunLog(p)
    for s in range(1, 7):
        log.append({"step": s, "loss": 1.0, **({"val": 0.1} if s == 2 else {})})
    again = RunLog(p)  # as after a restart
    again.trim(3)
    again.append({"step": 4, "loss": 2.0})
    fields, rows = _rows(p)
    assert fields == ["step", "loss", "val"]
    assert [(r["step"], r["loss"]) for r in rows] == [("1", "1.0"), ("2", "1.0"), ("3", "1.0"), ("4", "2.0")]
    RunLog(tmp_path / "absent.csv").trim(5)  # nothing to trim is fine
    assert not (tmp_path / "absent.csv").exists()
