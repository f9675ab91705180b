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


def test_a_damaged_log_is_one_line_naming_it_and_left_as_it_was(tmp_path):
    """trim() met a text step with a ValueError and non-UTF-8 bytes with a UnicodeDecodeError (internal errors);
    a directory in the log's place was skipped by trim() and failed later. Each is an InputError naming the file
    now, raised by check() before anything is written; a zero-size log is an empty one."""
    import pytest

    from facecycle.errors import InputError

    p = tmp_path / "log.csv"
    for damage, why in ((b"step,loss\n1,0.5\nx1,2\n", "line 3: step 'x1' is not a step number"),
                        (b"step,loss\n1,0.5\n\xff\xfe\n", "not UTF-8 text at byte 16")):
        p.write_bytes(damage)
        for call in (RunLog(p).check, lambda: RunLog(p).trim(1), lambda: RunLog(p).append({"step": 2})):
            with pytest.raises(InputError, match=f"log.csv: damaged training log \\({why}\\); repair or remove it"):
                call()
        assert p.read_bytes() == damage
    p.unlink()
    p.mkdir()
    with pytest.raises(InputError, match="log.csv: damaged training log \\(cannot read: "):
        RunLog(p).check()
    p.rmdir()
    p.write_bytes(b"")
    RunLog(p).trim(3)
    RunLog(p).append({"step": 1, "loss": 0.5})
    assert _rows(p) == (["step", "loss"], [{"step": "1", "loss": "0.5"}])


def test_a_last_line_cut_short_by_a_killed_run_is_dropped(tmp_path, caplog):
    """A row cut inside its step (``12`` of ``1200``) passed as step 12 and survived trim(); a last line without its
    line end is dropped now, with a warning, as `data prepare` drops one; check() still writes nothing, and the
    next row appended does not join the cut one."""
    p = tmp_path / "log.csv"
    cut = b"step,loss\r\n1100,0.5\r\n1200,0.4\r\n12"
    p.write_bytes(cut)
    with caplog.at_level("WARNING", logger="facecycle.train.runlog"):
        RunLog(p).check()
    assert p.read_bytes() == cut
    assert any("cut short" in r.getMessage() for r in caplog.records)
    RunLog(p).trim(1200)
    assert _rows(p) == (["step", "loss"], [{"step": "1100", "loss": "0.5"}, {"step": "1200", "loss": "0.4"}])
    p.write_bytes(cut)
    RunLog(p).append({"step": 1201, "loss": 0.3})
    assert [r["step"] for r in _rows(p)[1]] == ["1100", "1200", "1201"]


def test_a_log_whose_first_line_is_not_the_header_says_so(tmp_path):
    """A header without ``step`` reported its first row as "line 2: step None is not a step number"."""
    import pytest

    from facecycle.errors import InputError

    p = tmp_path / "log.csv"
    for text in (b"lr,loss\n0.1,2\n", b"lr,loss\n"):
        p.write_bytes(text)
        with pytest.raises(InputError, match="log.csv: damaged training log \\(its first line is not the header: "
                                             "no step column\\)"):
            RunLog(p).check()
        assert p.read_bytes() == text
