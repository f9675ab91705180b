"""Damaged files that `facecycle batch` and `facecycle process` read back: a sidecar of the wrong JSON type, fields
of the wrong type, a folder (or FIFO) where a sidecar or CSV goes. Each gives one clear line or a safe redo: never
an internal error, never a user's file moved or deleted (a probe's findings).

Cost: a batch of two real clips (10 frames each, no video) per case, in this process, with the shipped model.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from facecycle_cli import main as cli_main
from realtime.batch import runner
from realtime.batch.job import PARTIAL_DIR, sidecar_reading, sidecar_well_typed
from realtime.sinks import read_sidecar

from .conftest import one_error_line, shared_video

CLIP = "pyfeat_single_face.mp4"
OPTS = ["--cluster", "none", "--max-frames", "10", "--no-video", "--no-progress"]


def _batch(src: Path, out: Path, *extra: str) -> int:
    return cli_main(["batch", str(src), "--out-dir", str(out), *OPTS, *extra])


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Dict[str, Path]:
    """in/a.mp4, in/b.mp4 and their complete batch outputs (``base``), copied by each test that damages them."""
    root = tmp_path_factory.mktemp("damaged")
    src = root / "in"
    src.mkdir()
    for n in ("a", "b"):
        shutil.copy(shared_video(CLIP), src / f"{n}.mp4")
    assert _batch(src, root / "base") == 0
    return {"src": src, "base": root / "base"}


def _copy(done: Dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(done["base"], out)
    return out


def _summary(out: Path) -> Dict[str, Dict[str, Any]]:
    return {Path(e["rel"]).stem: e for e in json.loads((out / "batch.json").read_text())["inputs"]}


def _edit(**fields: Any) -> Callable[[Dict[str, Any]], Any]:
    def f(d: Dict[str, Any]) -> Dict[str, Any]:
        d.update(fields)
        return d
    return f


def _in_batch(**fields: Any) -> Callable[[Dict[str, Any]], Any]:
    def f(d: Dict[str, Any]) -> Dict[str, Any]:
        d["batch"].update(fields)
        return d
    return f


# ----------------------------------------------------------------------- a sidecar of the wrong JSON type (batch)
@pytest.mark.parametrize("damage", [
    lambda d: [1, 2], lambda d: "complete", lambda d: None, _edit(batch="x"), _edit(batch=[1]),
    _in_batch(csv_bytes="31815"), _in_batch(input=5), _edit(stats=[1]), _edit(summary="x"),
    _edit(status=["complete"]), _edit(fingerprint={"x": 1})],
    ids=["list", "string", "null", "batch-str", "batch-list", "csv_bytes-str", "input-int", "stats-list",
         "summary-str", "status-list", "fingerprint-dict"])
def test_a_sidecar_of_the_wrong_type_is_redone_and_the_batch_goes_on(done, tmp_path, capsys, damage):
    """`[1,2]` in a.json (or `"batch": "x"`, `"stats": [1]`, ...) stopped the whole batch with "internal error:
    AttributeError" before any input ran. It counts as missing: a is redone, b is skipped."""
    out = _copy(done, tmp_path)
    side = out / "a.json"
    side.write_text(json.dumps(damage(json.loads(side.read_text()))))
    capsys.readouterr()
    assert _batch(done["src"], out) == 0
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    s = _summary(out)
    assert s["a"]["status"] == "done" and s["b"]["status"] == "skipped", s
    info = json.loads(side.read_text())
    assert info["status"] == "complete" and isinstance(info["batch"], dict)


def test_a_summary_damaged_inside_gives_no_reading_and_the_input_stays_complete(done, tmp_path, capsys):
    """A complete sidecar whose summary's inner fields were damaged: its outputs are complete (the CSV is as
    recorded), so it is skipped; the reading batch.json lists (summary.clip_reading) is just left out."""
    out = _copy(done, tmp_path)
    side = out / "a.json"
    d = json.loads(side.read_text())
    d["summary"] = {"faces": {"emotion": "happy", "mean_emotions": [1], "rows": 3}}
    side.write_text(json.dumps(d))
    capsys.readouterr()
    assert _batch(done["src"], out) == 0
    assert "internal error" not in capsys.readouterr().err
    s = _summary(out)
    assert s["a"]["status"] == "skipped" and s["a"]["reading"] is None and s["b"]["reading"] is not None


def test_the_readers_check_the_json_type():
    assert sidecar_well_typed({"status": "complete", "batch": {"rows": 3, "csv_bytes": 10}, "stats": {"fps": 2.5}})
    for bad in ([1], "x", {"batch": "x"}, {"stats": {"frames": "10"}}, {"batch": {"rows": True}}, {"summary": [1]}):
        assert not sidecar_well_typed(bad), bad
    assert sidecar_reading({"summary": "x"}) is None and sidecar_reading(None) is None
    assert sidecar_reading({"summary": {"faces": {"emotion": "sad", "mean_emotions": 3}}}) is None


@pytest.mark.parametrize("text", ["[1, 2]", '"complete"', "null", "3", "[" * 100000],
                         ids=["list", "string", "null", "number", "nested-too-deep"])
def test_read_sidecar_returns_an_object_or_none(tmp_path, text):
    p = tmp_path / "a.json"
    p.write_text(text)
    assert read_sidecar(p) is None
    p.write_text('{"status": "complete"}')
    assert read_sidecar(p) == {"status": "complete"}


def test_read_sidecar_of_a_fifo_does_not_wait_for_a_writer(tmp_path):
    """A FIFO at a sidecar's path: reading it waited for a writer for ever (the batch hung at its planning)."""
    p = tmp_path / "a.json"
    os.mkfifo(p)
    got: List[Any] = []
    t = threading.Thread(target=lambda: got.append(read_sidecar(p)), daemon=True)
    t.start()
    t.join(5)
    hung = t.is_alive()
    if hung:  # release the reader, so that the thread ends
        fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(5)
    assert not hung and got == [None]


# ----------------------------------------------------------------------- a folder where an output goes (batch)
def test_a_folder_at_the_sidecars_path_is_never_moved_or_deleted(done, tmp_path, capsys):
    """`mkdir o/a.json; touch o/a.json/userfile`: the batch moved the folder to superseded/, then deleted it with
    rmtree, and exited 0. Now a fails in one line naming the path (a dry run says so too), b is skipped, nothing is
    moved."""
    out = _copy(done, tmp_path)
    (out / "a.json").unlink()
    (out / "a.json").mkdir()
    (out / "a.json" / "userfile").write_text("mine")
    capsys.readouterr()
    assert _batch(done["src"], out, "--dry-run") == 3
    assert "failed" in capsys.readouterr().out
    assert _batch(done["src"], out) == 3
    line = one_error_line(capsys.readouterr().err, "facecycle batch: error:")
    assert f"{out / 'a.json'}: a folder" in line, line
    assert (out / "a.json" / "userfile").read_text() == "mine"
    assert not (out / PARTIAL_DIR).exists()
    s = _summary(out)
    assert s["a"]["status"] == "failed" and s["b"]["status"] == "skipped"
    assert _batch(done["src"], out, "--force") == 3  # --force redoes outputs, never replaces a folder
    assert (out / "a.json" / "userfile").read_text() == "mine"


def test_a_task_checks_its_output_paths_itself(done, tmp_path, capsys, monkeypatch):
    """The task (a worker: the folder made after the planner looked) refuses it too, before moving anything."""
    out = _copy(done, tmp_path)
    (out / "a.json").unlink()
    (out / "a.json").mkdir()
    (out / "a.json" / "userfile").write_text("mine")
    monkeypatch.setattr(runner, "not_a_file", lambda *a, **k: None)  # the planner saw nothing
    capsys.readouterr()
    assert _batch(done["src"], out) == 3
    line = one_error_line(capsys.readouterr().err, "facecycle batch: error:")
    assert f"{out / 'a.json'}: a folder" in line, line
    assert (out / "a.json" / "userfile").read_text() == "mine" and (out / "a.csv").is_file()
    assert _summary(out)["b"]["status"] == "skipped"


def test_a_folder_at_the_csvs_path_is_named_and_the_sidecar_stays(done, tmp_path, capsys):
    """A folder a.csv: the batch stopped (exit 4) blaming the output folder ("o: cannot write a.mp4's outputs
    there"), and a.json had been moved aside. Now the line names o/a.csv; a.json and the folder stay."""
    out = _copy(done, tmp_path)
    before = (out / "a.json").read_bytes()
    (out / "a.csv").unlink()
    (out / "a.csv").mkdir()
    (out / "a.csv" / "keep").write_text("mine")
    capsys.readouterr()
    assert _batch(done["src"], out) == 3
    line = one_error_line(capsys.readouterr().err, "facecycle batch: error:")
    assert f"{out / 'a.csv'}: a folder" in line, line
    assert (out / "a.csv" / "keep").read_text() == "mine" and (out / "a.json").read_bytes() == before


def test_a_folder_made_at_the_csvs_path_while_the_input_runs_is_named(done, tmp_path, capsys, monkeypatch):
    """Past both checks (a folder made while the input ran): the move into place fails with EISDIR, which named the
    output folder and stopped the batch. It names the CSV's path, and the input alone fails."""
    from realtime.batch import job

    out = _copy(done, tmp_path)
    (out / "a.csv").unlink()
    (out / "a.csv").mkdir()
    (out / "a.csv" / "keep").write_text("mine")
    monkeypatch.setattr(runner, "not_a_file", lambda *a, **k: None)
    monkeypatch.setattr(job, "not_a_file", lambda *a, **k: None)
    capsys.readouterr()
    assert _batch(done["src"], out) == 3
    line = one_error_line(capsys.readouterr().err, "facecycle batch: error:")
    assert line.startswith(f"facecycle batch: error: {out / 'a.csv'}: a folder"), line
    assert (out / "a.csv" / "keep").read_text() == "mine"
    assert _summary(out)["b"]["status"] == "skipped"


# ----------------------------------------------------------------------- process
def _process(src: Path, out: Path, *extra: str) -> int:
    return cli_main(["process", str(src / "a.mp4"), "--out-dir", str(out), "--max-frames", "3", "--no-video",
                     "--no-progress", *extra])


@pytest.mark.parametrize("sidecar", ["[1]", '"failed"', '{"status": "failed", "frames": []}',
                                     '{"status": "failed", "frames": 0, "rows": 0}'])
def test_process_never_replaces_a_csv_with_rows_after_a_damaged_sidecar(done, tmp_path, capsys, sidecar):
    """`[1]` in p/a.json was "internal error: AttributeError"; `{"status":"failed","frames":[]}` let `process`
    replace a user's a.csv ("keep me") without --overwrite. A CSV is replaced so only where it holds the header
    alone."""
    out = tmp_path / "p"
    out.mkdir()
    (out / "a.json").write_text(sidecar)
    (out / "a.csv").write_text("keep me\n")
    capsys.readouterr()
    assert _process(done["src"], out) == 4
    line = one_error_line(capsys.readouterr().err)
    assert "exists (use --overwrite" in line, line
    assert (out / "a.csv").read_text() == "keep me\n" and (out / "a.json").read_text() == sidecar


def test_process_replaces_what_a_run_that_failed_before_its_first_frame_left(done, tmp_path, caplog):
    """The rule the checks keep: a header-only CSV with a failed sidecar of no frame is replaced without
    --overwrite."""
    out = tmp_path / "p"
    assert _process(done["src"], out) == 0
    header = (out / "a.csv").read_text().splitlines()[0] + "\n"
    (out / "a.csv").write_text(header)
    d = json.loads((out / "a.json").read_text())
    d.update(status="failed", frames=0, rows=0)
    (out / "a.json").write_text(json.dumps(d))
    caplog.clear()
    assert _process(done["src"], out) == 0
    assert "failed before its first frame" in caplog.text
    assert json.loads((out / "a.json").read_text())["status"] == "complete"
    assert len((out / "a.csv").read_text().splitlines()) > 1
    # the header an earlier version wrote (before crop_outside) is no data either (a review: it needed --overwrite)
    (out / "a.csv").write_text(header.replace("face_h,crop_outside,", "face_h,"))
    (out / "a.json").write_text(json.dumps(d))
    caplog.clear()
    assert _process(done["src"], out) == 0 and "failed before its first frame" in caplog.text
    # a one-line file that is not a facecycle header is a user's: kept
    (out / "a.csv").write_text("frame,face_id,timestamp,confidence,success,my_notes\n")
    (out / "a.json").write_text(json.dumps(d))
    assert _process(done["src"], out) == 4
    assert "my_notes" in (out / "a.csv").read_text()


def test_process_refuses_a_folder_at_the_sidecars_path_before_writing(done, tmp_path, capsys):
    """With --overwrite the CSV was written, then the sidecar failed ("Is a directory (the sidecar reserves 32 KiB
    ...)"): one line naming the folder now, before any file is made."""
    out = tmp_path / "p"
    (out / "a.json").mkdir(parents=True)
    (out / "a.json" / "userfile").write_text("mine")
    capsys.readouterr()
    assert _process(done["src"], out, "--overwrite") == 4
    line = one_error_line(capsys.readouterr().err)
    assert f"{out / 'a.json'}: a folder" in line, line
    assert (out / "a.json" / "userfile").read_text() == "mine" and not (out / "a.csv").exists()


@pytest.mark.parametrize("damage, why", [
    (lambda h, row: (h + row.replace(",", ";", 3)).encode(), "damaged"),  # a row short of fields
    (lambda h, row: (h + row.replace("0.5000", "x.5000", 1)).encode(), "damaged"),  # letters in a number column
    (lambda h, row: b"\xff\xfe" + (h + row).encode(), "not UTF-8"),  # bytes that are no text in the header
])
def test_a_damaged_csv_stops_the_parquet_dataset_with_one_line_naming_it(tmp_path, damage, why):
    """The Parquet writer reads every input's CSV back: a damaged one (its size unchanged, so batch took it as
    complete) was an internal error (ArrowInvalid, UnicodeDecodeError); the dataset is not written, nothing is left."""
    pytest.importorskip("pyarrow")
    from facecycle.errors import InputError
    from realtime.batch.parquet import write_parquet
    from realtime.sinks.csv_sink import csv_columns

    cols = csv_columns(4)
    header = ",".join(cols) + "\n"
    row = ",".join("0.5000" if c not in ("frame", "face_id", "success", "baseline_ready", "emotion") else
                   ("happy" if c == "emotion" else "1") for c in cols) + "\n"
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(header + row)
    bad.write_bytes(damage(header, row))
    with pytest.raises(InputError, match=rf"bad\.csv: .*{why}") as e:
        write_parquet([("good.mp4", good), ("bad.mp4", bad)], tmp_path / "ds.parquet")
    assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir() if "ds" in p.name] == []
    write_parquet([("good.mp4", good)], tmp_path / "ds.parquet")  # the good one alone is a dataset


def test_damaged_input_lists_are_one_line_each(tmp_path):
    """`batch @list`: a NUL byte in a line, a name too long for the file system and an empty list were an internal
    error, an internal error printing the 5,000-character name, and "folders held no videos"."""
    import subprocess
    import sys

    def batch(listing: bytes) -> subprocess.CompletedProcess:
        (tmp_path / "list.txt").write_bytes(listing)
        return subprocess.run([sys.executable, "-m", "facecycle", "batch", f"@{tmp_path / 'list.txt'}", "--out-dir",
                               str(tmp_path / "o"), "--cluster", "none", "--dry-run"], capture_output=True, text=True,
                              timeout=120)

    r = batch(b"a\0b.mp4\n")
    assert r.returncode == 3 and "line 1 holds a NUL byte" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = batch(b"")
    assert r.returncode == 2 and "no inputs (" in r.stderr and "list.txt named none)" in r.stderr, r.stderr
    r = batch(b"x" * 5000 + b".mp4\n")
    line = next(ln for ln in r.stderr.splitlines() if "too long" in ln)
    assert " characters): " in line and len(line) < 500 and "internal error" not in r.stderr, r.stderr


def test_a_damaged_csv_in_a_batchs_parquet_keeps_batch_json(done, tmp_path, capfd):
    """`batch --parquet`: a complete input's CSV damaged without changing its size (so it is skipped as complete)
    stops the dataset with one line naming it (exit 3), and batch.json still records the inputs and the error (the
    error left the batch without its batch.json)."""
    pytest.importorskip("pyarrow")
    out = _copy(done, tmp_path)
    csv = out / "a.csv"
    text = csv.read_text()
    row = text.splitlines()[1]
    cell = next(c for c in row.split(",")[5:] if c[:1].isdigit())
    csv.write_text(text.replace(row, row.replace(cell, "x" + cell[1:], 1), 1))  # the same size
    (out / "batch.json").unlink()
    assert _batch(done["src"], out, "--parquet", str(out / "ds.parquet")) == 3
    err = capfd.readouterr().err
    assert "a.csv: damaged" in one_error_line(err) and "Traceback" not in err
    result = json.loads((out / "batch.json").read_text())
    assert "a.csv: damaged" in result["error"] and len(result["inputs"]) == 2
    assert not (out / "ds.parquet").exists()
