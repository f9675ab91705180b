"""Outputs removed while a run goes, earlier files left aside by a killed ``--overwrite`` run, a Parquet temporary
left by a killed batch, a full disk for the dataset, and pictures named near the file system's limit
(docs/reliability.md, "Outputs"; probes h80 F1, F4, F5, F9 and h79-A).

* F1: ``process … --out-dir gone`` with ``gone`` deleted mid-run went on to its end, then failed saying ``the CSV is
  complete`` of a deleted CSV. The run now stops (:data:`realtime.outputs.GONE_CHECK_EVERY_S`, lowered here) with
  one line, ``output folder removed while running``.
* F4: ``--overwrite`` SIGKILLed before its first frame left the earlier CSV and sidecar hidden (``.X.replaced``)
  behind a header-only CSV; the next run given the output puts them back.
* F3/F5: a killed batch's ``.NAME.tmp-PID`` dataset stayed for good; the next run holding the lock removes it.
* F9: a dataset that does not fit says ``disk full`` / ``file size limit reached``, as the other outputs do.
* h79-A: a picture named within a few bytes of the limit failed (its hidden temporary's name was longer).

The killed run is a real one: a subprocess that opens the outputs with ``overwrite=True`` and SIGKILLs itself (no
model: a RunOutputs alone). The CLI cases use the tiny model and a short clip of real frames (synthetic where
../shared is absent).
"""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from facecycle.errors import OutputError
from facecycle.files import hidden_name, name_max
from facecycle_cli import main

from .conftest import ROOT, one_error_line, real_frames, write_video

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="output locks use flock (POSIX); Windows locks nothing")


def _packet(i: int):
    from realtime.types import FramePacket

    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                       image=np.zeros((8, 8, 3), np.uint8), faces=[])


def _outputs(code_dim: int = 4, **kw):
    from realtime.outputs import RunOutputs

    return RunOutputs(code_dim, fps=25, describe=lambda: {"input": {"name": "test", "live": False}},
                      stats=lambda: {"frames_analysed": 1}, **kw)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", real_frames(30))


@pytest.fixture
def cli(model, capfd):
    """``facecycle process ARGS --model tiny --no-progress`` in-process: (rc, stderr)."""

    def run(*args: object):
        capfd.readouterr()
        try:
            rc = main(["process", *map(str, args), "--model", str(model), "--no-progress"])
        except SystemExit as e:  # argparse
            rc = e.code
        return rc, capfd.readouterr()[1]

    return run


# ------------------------------------------------------------------------------ F1: the output folder removed
@pytest.fixture
def check_often(monkeypatch):
    import realtime.outputs as outputs

    monkeypatch.setattr(outputs, "GONE_CHECK_EVERY_S", 0.0, raising=False)


def test_a_run_whose_output_folder_is_removed_stops_with_one_line(cli, tmp_path, clip, check_often, monkeypatch,
                                                                   caplog):
    """The probe's ``rm -rf gone`` mid-run: the run stops at the next check (it wrote every frame into deleted
    files, then said "the CSV is complete" of a CSV that was gone), exit 4, one line."""
    from realtime.outputs import RunOutputs

    out = tmp_path / "gone"
    written: List[int] = []
    write = RunOutputs.write

    def write_then_remove(self, packet):
        if packet.index == 5:
            shutil.rmtree(out)
        write(self, packet)
        written.append(packet.index)

    monkeypatch.setattr(RunOutputs, "write", write_then_remove)
    rc, err = cli(clip, "--out-dir", out)
    assert rc == 4, err
    line = one_error_line(err)
    assert "output folder removed while running" in line and "clip.csv" in line, line
    assert "the CSV is complete" not in err + caplog.text
    assert "closing the" not in err  # its consequences (no folder for the sidecar) are not said as more warnings
    assert written == list(range(5)), written  # stopped at the frame after the removal, not at the clip's end
    assert not out.exists()  # nothing made again


def test_a_removal_found_at_the_end_is_not_called_complete(tmp_path):
    """A run that ends before the next check: the error at its close says the folder was removed (it said
    "the final sidecar was not written: it still says running; the CSV is complete")."""
    out = _outputs()
    folder = tmp_path / "o"
    out.open_csv(folder / "a.csv")
    for i in range(3):
        out.write(_packet(i))
    shutil.rmtree(folder)
    err = out.close("complete", raises=True)
    assert isinstance(err, OutputError), err
    assert str(err) == f"{folder / 'a.csv'}: output folder removed while running; the run stopped", err
    assert out.finished == []  # no file finished
    assert not folder.exists()


def test_a_deleted_csv_stops_the_run(tmp_path, check_often):
    out = _outputs()
    out.open_csv(tmp_path / "a.csv")
    out.write(_packet(0))
    (tmp_path / "a.csv").unlink()
    with pytest.raises(OutputError, match=r"a\.csv: deleted while running \(by another program\?\); the run stopped$"):
        out.write(_packet(1))
    assert out.close("failed", out._gone_error) is None  # said once: the run fails with it
    side = json.loads((tmp_path / "a.json").read_text())  # (its folder is there: the sidecar says why)
    assert side["status"] == "failed" and "deleted while running" in side["error"]
    assert not (tmp_path / "a.csv").exists()


def test_a_checkpoint_that_finds_the_folder_gone_stops_the_run(tmp_path, monkeypatch):
    """The periodic checkpoint's failure was a warning ("the run goes on"): where the folder is gone it stops the
    run, even between two of the cheaper checks."""
    import realtime.outputs as outputs

    monkeypatch.setattr(outputs, "GONE_CHECK_EVERY_S", 1e9, raising=False)
    monkeypatch.setattr(outputs, "SIDECAR_EVERY_S", 0.0)
    out = _outputs()
    out.open_csv(tmp_path / "o" / "a.csv")
    out.write(_packet(0))
    out.write(_packet(1))
    shutil.rmtree(tmp_path / "o")
    with pytest.raises(OutputError, match="output folder removed while running"):
        out.write(_packet(2))


def test_the_app_is_told_and_its_csv_export_stops(tmp_path, check_often):
    """With ``on_error`` (the app) the CSV export stops and is said so; the run goes on."""
    from realtime.outputs import CSV_FAILED

    said: List[str] = []
    out = _outputs(on_error=said.append)
    out.open_csv(tmp_path / "o" / "a.csv")
    out.write(_packet(0))
    shutil.rmtree(tmp_path / "o")
    out.write(_packet(1))  # no exception
    assert out.csv is None
    assert len(said) == 1 and said[0].startswith(CSV_FAILED[1] + ": ") and "output folder removed" in said[0], said
    out.write(_packet(2))
    assert out.close() is None


def test_a_folder_of_pictures_removed_while_running_stops(tmp_path):
    """Pictures: the folder was made again by the next picture's write, holding only the later pictures."""
    from realtime.sinks import ImageSink

    sink = ImageSink(tmp_path / "o" / "photos.annotated")
    sink.write(_packet(0))
    shutil.rmtree(tmp_path / "o")
    with pytest.raises(OutputError, match="output folder removed while running"):
        sink.write(_packet(1))
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------- F4: earlier files set aside by a killed run
_KILLED = textwrap.dedent("""
    import os, signal, sys
    import realtime.outputs as outputs
    from realtime.outputs import RunOutputs
    first_sidecar = sys.argv[2] == "1"
    if not first_sidecar:  # killed between the header-only CSV and its first sidecar (the probe's state)
        outputs.write_sidecar = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    o = RunOutputs(4, describe=lambda: {"input": {"name": "x"}}, overwrite=True)
    o.open_csv(sys.argv[1])
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _killed_overwrite(csv: Path, first_sidecar: bool) -> None:
    """An ``--overwrite`` run of ``csv`` SIGKILLed before its first frame (after its ``running`` sidecar, or before
    it: ``first_sidecar``)."""
    p = subprocess.run([sys.executable, "-c", _KILLED, str(csv), "1" if first_sidecar else "0"], cwd=str(ROOT),
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr


def _earlier(folder: Path) -> dict:
    """A complete earlier CSV of two frames and its sidecar, as bytes by name."""
    out = _outputs()
    out.open_csv(folder / "x.csv")
    out.write(_packet(0))
    out.write(_packet(1))
    assert out.close() is None
    return {n: (folder / n).read_bytes() for n in ("x.csv", "x.json")}


def _hidden(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".replaced"))


@POSIX
@pytest.mark.parametrize("first_sidecar", [False, True])
def test_a_killed_overwrites_earlier_files_are_put_back(tmp_path, first_sidecar, caplog):
    """The probe: the visible CSV was header-only, the good CSV and JSON hidden for good (a rerun without
    --overwrite said only "exists"). The next run given them puts them back, byte for byte, then says "exists"."""
    before = _earlier(tmp_path)
    _killed_overwrite(tmp_path / "x.csv", first_sidecar)
    assert _hidden(tmp_path) == [".x.csv.replaced", ".x.json.replaced"]
    assert (tmp_path / "x.csv").read_text().count("\n") == 1  # the killed run's header
    assert (tmp_path / "x.json").exists() == first_sidecar
    out = _outputs()  # no overwrite
    with pytest.raises(OutputError, match=r"x\.csv: exists"):
        out.open_csv(tmp_path / "x.csv")
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert _hidden(tmp_path) == []
    assert "put back (the earlier file that a killed --overwrite run had set aside" in caplog.text
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())  # its locks released


@POSIX
def test_the_overwrite_rerun_leaves_nothing_aside(cli, tmp_path, clip):
    """The probe's rerun with --overwrite succeeded but kept `.X.json.replaced` for good."""
    out = tmp_path / "out"
    rc, err = cli(clip, "--out-dir", out, "--no-video", "--max-frames", "3")
    assert rc == 0, err
    _killed_overwrite(out / "clip.csv", first_sidecar=False)
    assert _hidden(out) == [".clip.csv.replaced", ".clip.json.replaced"]
    assert not (out / "clip.json").exists()
    rc, err = cli(clip, "--out-dir", out, "--no-video", "--max-frames", "4", "--overwrite")
    assert rc == 0, err
    assert _hidden(out) == []
    assert json.loads((out / "clip.json").read_text())["status"] == "complete"
    assert sorted(p.name for p in out.iterdir()) == ["clip.csv", "clip.json"]


@POSIX
def test_a_live_runs_files_aside_are_left_alone(tmp_path):
    """Set aside by a run that is alive (it holds the lock): not put back, by it or by anyone else."""
    from realtime.outputs import put_back_replaced

    before = _earlier(tmp_path)
    a = _outputs(overwrite=True)
    a.open_csv(tmp_path / "x.csv")  # sets the earlier files aside, holds the locks
    assert _hidden(tmp_path) == [".x.csv.replaced", ".x.json.replaced"]
    assert put_back_replaced(tmp_path / "x.csv") is None
    assert _hidden(tmp_path) == [".x.csv.replaced", ".x.json.replaced"]
    a.close("stopped")  # ended before its first frame: it puts them back itself
    assert {n: (tmp_path / n).read_bytes() for n in before} == before and _hidden(tmp_path) == []


@POSIX
def test_a_file_not_the_killed_runs_is_not_replaced(tmp_path):
    """Where the name holds more than a killed run can have written (rows of two frames: someone's file), nothing
    is put back nor replaced: one line naming both, to choose."""
    _earlier(tmp_path)
    _killed_overwrite(tmp_path / "x.csv", first_sidecar=True)
    (tmp_path / "other").mkdir()
    other = _earlier(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "x.csv", tmp_path / "x.csv")  # two frames' rows: not the killed run's
    for overwrite in (False, True):
        out = _outputs(overwrite=overwrite)
        with pytest.raises(OutputError, match=r"x\.csv: exists, and an earlier file that a killed --overwrite run "
                                              r"had set aside is in .*\.x\.csv\.replaced; move one of them away"):
            out.open_csv(tmp_path / "x.csv")
        assert (tmp_path / "x.csv").read_bytes() == other["x.csv"]
        assert ".x.csv.replaced" in _hidden(tmp_path)


@POSIX
def test_a_video_set_aside_is_put_back_over_a_video_of_no_frame(tmp_path):
    from realtime.outputs import put_back_replaced

    frames = real_frames(4, size=(64, 48))
    video = write_video(tmp_path / "x.mp4", frames)
    good = video.read_bytes()
    aside = hidden_name(video, ".replaced")
    os.replace(video, aside)
    video.write_bytes(good[: len(good) // 3])  # an MP4 cut before its index: no frame to keep
    assert put_back_replaced(video) == video
    assert video.read_bytes() == good and not aside.exists()
    os.replace(video, aside)
    write_video(video, frames[:3])  # three frames: another video, refused
    with pytest.raises(OutputError, match="move one of them away"):
        put_back_replaced(video)
    assert aside.read_bytes() == good


# ------------------------------------------------------------------------------- F3, F9: the Parquet dataset
def _csvs(folder: Path, n: int = 3) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for k in range(n):
        out = _outputs()
        out.open_csv(folder / f"v{k}.csv")
        for i in range(20):
            out.write(_packet(i))
        assert out.close() is None
        pairs.append((f"v{k}.mp4", folder / f"v{k}.csv"))
    return pairs


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@POSIX
def test_a_killed_runs_parquet_temporary_is_removed_by_the_next(tmp_path):
    """The probe: SIGKILL once `kb/.all.parquet.tmp-PID` appeared, then a successful rerun: the temporary (as big
    as the dataset) stayed. The next run holding the path's lock removes those whose process is gone."""
    pytest.importorskip("pyarrow")
    from realtime.batch.parquet import lock_parquet, temporary_path, unlock_parquet, write_parquet

    pairs = _csvs(tmp_path / "csv")
    kb = tmp_path / "kb"
    kb.mkdir()
    dest = kb / "all.parquet"
    dead, dead_dir = _dead_pid(), _dead_pid()
    # (this host's, .all.parquet.tmp-HOST-PID: an older version's .all.parquet.tmp-PID names no host, and is removed
    # only once a day old, tests/test_review_mends.py)
    dead_tmp, dead_dir_tmp = temporary_path(dest, dead), temporary_path(dest, dead_dir)
    dead_tmp.write_bytes(b"PAR1" * 1000)
    dead_dir_tmp.mkdir()
    (dead_dir_tmp / "part-00000.parquet").write_bytes(b"PAR1")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (kb / f".all.parquet.tmp-{alive.pid}").write_bytes(b"PAR1")  # a run writing now (unlocked: Windows-like)
        (kb / ".other.parquet.tmp-1").write_bytes(b"x")  # another dataset's
        fd = lock_parquet(dest, "facecycle batch", "give each batch its own --parquet")
        try:
            left = sorted(p.name for p in kb.iterdir())
            assert left == [".all.parquet.lock", f".all.parquet.tmp-{alive.pid}", ".other.parquet.tmp-1"], left
            dead_tmp.write_bytes(b"PAR1")  # one that appeared since: the write removes it
            res = write_parquet(pairs, dest)
        finally:
            unlock_parquet(dest, fd)
    finally:
        alive.kill()
        alive.wait()
    assert res["rows"] == 60
    assert sorted(p.name for p in kb.iterdir()) == [f".all.parquet.tmp-{alive.pid}", ".other.parquet.tmp-1",
                                                    "all.parquet"]


_LIMITED = textwrap.dedent("""
    import resource, signal, sys
    from facecycle.errors import OutputError
    from realtime.batch.parquet import write_parquet
    pairs = [(f"v{k}.mp4", f"{sys.argv[1]}/v{k}.csv") for k in range(3)]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1500, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        write_parquet(pairs, sys.argv[2])
    except OutputError as e:
        print(e)
""")


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE") or sys.platform == "win32", reason="needs ulimit -f")
def test_a_dataset_past_a_file_size_limit_says_so_in_the_common_words(tmp_path):
    """It said `cannot write (Error writing bytes to file. Detail: [errno 27] File too large)`."""
    pytest.importorskip("pyarrow")
    _csvs(tmp_path / "csv")
    dest = tmp_path / "kb" / "all.parquet"
    p = subprocess.run([sys.executable, "-c", _LIMITED, str(tmp_path / "csv"), str(dest)], cwd=str(ROOT),
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (f"{dest}: file size limit reached (the dataset was not written; its CSVs are "
                                "complete)"), p.stdout + p.stderr
    assert list((tmp_path / "kb").iterdir()) == []  # no temporary left


def test_a_full_disk_for_the_dataset_says_disk_full(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from realtime.batch.parquet import write_parquet

    pairs = _csvs(tmp_path / "csv")

    class Full:
        def __init__(self, *a, **k) -> None:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pq, "ParquetWriter", Full)
    with pytest.raises(OutputError) as e:
        write_parquet(pairs, tmp_path / "all.parquet")
    assert str(e.value) == (f"{tmp_path / 'all.parquet'}: disk full (the dataset was not written; its CSVs are "
                            "complete)")


# --------------------------------------------------------------------- h79-A: pictures named near the limit
def _near_limit(tmp_path: Path) -> None:
    if name_max(tmp_path) < 255:
        pytest.skip("this file system takes names shorter than 255 bytes")


def test_a_picture_named_near_the_limit_is_written(tmp_path):
    """`'表'*78+'abc.png'` (241 bytes) gets `….annotated.png` (251): its temporary `.….annotated.partial.png`
    (260) failed, "File name too long"."""
    from realtime.sinks import ImageSink

    _near_limit(tmp_path)
    path = tmp_path / ("表" * 78 + "abc.annotated.png")
    assert len(os.fsencode(path.name)) == 251
    sink = ImageSink(path)
    sink.write(_packet(0))
    sink.close()
    assert cv2.imread(str(path)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_a_folder_of_pictures_named_near_the_limit_is_written(tmp_path):
    from realtime.sinks import ImageSink

    _near_limit(tmp_path)
    path = tmp_path / ("表" * 79 + "photos.annotated")  # 253 bytes: its `.….partial-PID` does not fit
    sink = ImageSink(path)
    for i in range(2):
        sink.write(_packet(i))
    sink.close()
    assert sorted(p.name for p in path.iterdir()) == ["frame_000000.png", "frame_000001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_process_a_picture_named_near_the_limit(cli, tmp_path):
    """The probe: exit 4 "write failed (File name too long; 0 pictures written)" after the CSV's row was written,
    so that the rerun needed --overwrite."""
    _near_limit(tmp_path)
    pic = tmp_path / "in" / ("表" * 78 + "abc.png")
    pic.parent.mkdir()
    assert cv2.imwrite(str(tmp_path / "p.png"), real_frames(1)[0])
    os.replace(tmp_path / "p.png", pic)
    out = tmp_path / "out"
    rc, err = cli(pic, "--out-dir", out)
    assert rc == 0, err
    stem = "表" * 78 + "abc"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.annotated.png", f"{stem}.csv", f"{stem}.json"]


def test_the_app_is_told_when_a_checkpoint_finds_the_folder_gone(tmp_path, monkeypatch):
    """The checkpoint's way (``on_error``): said once, the export off, and the run's own end not failed by it."""
    import realtime.outputs as outputs

    monkeypatch.setattr(outputs, "GONE_CHECK_EVERY_S", 1e9, raising=False)
    monkeypatch.setattr(outputs, "SIDECAR_EVERY_S", 0.0)
    said: List[str] = []
    out = _outputs(on_error=said.append)
    out.open_csv(tmp_path / "o" / "a.csv")
    out.write(_packet(0))
    shutil.rmtree(tmp_path / "o")
    out.write(_packet(1))
    assert out.csv is None and len(said) == 1 and "output folder removed while running" in said[0], said
    assert out.close() is None
