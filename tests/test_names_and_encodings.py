"""Names near the file system's limit, names that are not UTF-8, and a stdout that cannot encode a name.

* An input named so that each output's name fits (about 229-241 bytes) passed the up-front check, and then the
  sidecar's hidden temporary (``.NAME.<pid>-<8 hex>.tmp``, about 22 bytes longer) did not: exit 4 with the advice of
  a full disk ("the sidecar reserves 32 KiB"), a warning that "the CSV is complete", and a header-only CSV that made
  the same command fail again ("exists"). The hidden files beside an output (temporary, lock, ``.replaced``) now
  take a short hashed name where theirs would not fit, and a run whose sidecar could not be written at all removes
  the header-only CSV it made.
* The sidecar's ``input.name`` / ``input.path`` (and ``csv``, ``command``) held lone surrogates for a file name that
  is not UTF-8 (``"caf\\udce9.mp4"``), which jq and other JSON readers mangle: now ``\\xNN``, as in Parquet.
* An ASCII stdout (``PYTHONIOENCODING=ascii``) printing a non-ASCII name was "internal error: UnicodeEncodeError"
  after partial output; only Windows' streams were made tolerant.
"""
from __future__ import annotations

import errno
import io
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest

from facecycle_cli import main

from .conftest import one_error_line, real_frames, write_video


def _limit(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _name_of(folder: Path, n: int, suffix: str = "") -> str:
    """A name of ``n`` bytes (CJK characters, 3 bytes each, then ``x`` to fill) ending ``suffix``."""
    room = n - len(suffix.encode())
    return "表" * (room // 3) + "x" * (room % 3) + suffix


@pytest.fixture(scope="module")
def frames() -> List[np.ndarray]:
    return real_frames(6, size=(160, 90))


def _hidden(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- F1: hidden names near the limit
def test_a_temporary_beside_a_name_near_the_limit_fits(tmp_path):
    from engines.cache import is_temporary, remove_stale_temporaries
    from facecycle.files import temp_path, write_atomic

    limit = _limit(tmp_path)
    long = tmp_path / _name_of(tmp_path, limit - 5, ".json")
    tmp = temp_path(long)
    assert len(os.fsencode(tmp.name)) <= limit and tmp.parent == tmp_path
    assert tmp.name.startswith(".") and tmp.name.endswith(".tmp") and f".{os.getpid()}-" in tmp.name
    assert temp_path(long) != tmp  # still one of its own per writer
    assert is_temporary(tmp.name)  # the engine cache's cleanup still knows it for a writer's temporary
    write_atomic(long, "{}\n")  # was "File name too long"
    assert long.read_text() == "{}\n" and _hidden(tmp_path) == []
    short = tmp_path / "clip.json"
    assert temp_path(short).name.startswith(".clip.json.")  # the usual name wherever it fits
    # a killed writer's hashed temporary is removed like any other
    dead = tmp_path / temp_path(long).name.replace(f".{os.getpid()}-", ".999999999-")
    dead.write_text("half")
    os.utime(dead, (0, 0))
    assert remove_stale_temporaries(tmp_path) == 1 and not dead.exists()


def test_a_lock_and_a_set_aside_file_beside_a_name_near_the_limit_fit(tmp_path):
    from facecycle.files import hidden_name, lock_file, lock_name, unlock_file

    limit = _limit(tmp_path)
    out = tmp_path / _name_of(tmp_path, limit - 2, ".mp4")
    lock = lock_name(out)
    assert lock == lock_name(out) and lock.name.startswith(".") and lock.name.endswith(".lock")  # one per output
    assert len(os.fsencode(lock.name)) <= limit
    assert lock_name(tmp_path / "clip.csv") == tmp_path / ".clip.csv.lock"
    fd = lock_file(lock, {"output": str(out)})
    assert lock.exists()
    unlock_file(lock, fd)
    aside = hidden_name(out, ".replaced")
    assert len(os.fsencode(aside.name)) <= limit and aside.name.startswith(".")


def test_outputs_named_near_the_limit_are_written_and_rerun(cli, tmp_path, frames):
    """The probe's case: each output's name fits, the sidecar's temporary did not (exit 4, a header-only CSV, and
    the rerun failed with "exists"). Now every output is written, and an --overwrite rerun replaces them."""
    limit = _limit(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    # the annotated video's name is the longest (NAME.annotated.mp4): 3 bytes short of the limit
    clip = write_video(src / _name_of(src, limit - 3 - len(".annotated"), ".mp4"), frames)
    out = tmp_path / "o"
    rc, err = cli(clip, "--max-frames", "4", out=out)
    assert rc == 0, err
    assert "closing the CSV failed" not in err and "too long" not in err
    stem = clip.stem
    side = json.loads((out / f"{stem}.json").read_text())
    assert side["status"] == "complete" and side["frames"] == 4
    assert (out / f"{stem}.annotated.mp4").is_file() and _hidden(out) == []
    rc, err = cli(clip, "--max-frames", "4", "--overwrite", out=out)
    assert rc == 0, err
    assert "not kept aside" not in err and _hidden(out) == []  # the earlier files were set aside and dropped


# ------------------------------------------------------------------- F1: a sidecar that cannot be written at all
def _unwritable_sidecars(monkeypatch, code: int, calls: Optional[list] = None) -> None:
    import realtime.outputs as outputs

    def write_sidecar(path, info):
        if calls is not None:
            calls.append(info["status"])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs, "write_sidecar", write_sidecar)


def test_a_sidecar_never_written_leaves_no_csv_that_blocks_the_rerun(cli, tmp_path, frames, monkeypatch, caplog):
    """No sidecar could be written (neither ``running`` nor ``failed``): the header-only CSV this run made is
    removed, the error is one line without a full disk's advice nor "the CSV is complete", and the same command
    runs once the cause is gone (it failed with "exists")."""
    clip = write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "o"
    calls: list = []
    _unwritable_sidecars(monkeypatch, errno.EIO, calls)
    rc, err = cli(clip, "--no-video", "--max-frames", "3", out=out)
    assert rc == 4, err
    line = one_error_line(err)
    assert "clip.json" in line and "reserves 32 KiB" not in line, line
    assert "closing the CSV failed" not in err + caplog.text and "the CSV is complete" not in err + caplog.text
    assert calls == ["running", "failed"]  # the failed sidecar was tried too
    assert not (out / "clip.csv").exists() and not (out / "clip.json").exists() and _hidden(out) == []
    monkeypatch.undo()
    rc, err = cli(clip, "--no-video", "--max-frames", "3", out=out)
    assert rc == 0, err


def test_a_full_disk_for_the_first_sidecar_still_says_so(cli, tmp_path, frames, monkeypatch):
    clip = write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "o"
    _unwritable_sidecars(monkeypatch, errno.ENOSPC)
    rc, err = cli(clip, "--no-video", out=out)
    assert rc == 4, err
    assert "clip.json: disk full (the sidecar reserves 32 KiB when the run starts)" in one_error_line(err)
    assert not (out / "clip.csv").exists()


def test_a_sidecar_never_written_puts_the_earlier_outputs_back(cli, tmp_path, frames, monkeypatch, caplog):
    """With --overwrite the earlier CSV and sidecar are set aside; a run that could write no sidecar removes only
    its own header-only CSV and puts them back as they were: no data lost."""
    clip = write_video(tmp_path / "clip.mp4", frames)
    out = tmp_path / "o"
    rc, err = cli(clip, "--no-video", "--max-frames", "3", out=out)
    assert rc == 0, err
    before = {n: (out / n).read_bytes() for n in ("clip.csv", "clip.json")}
    _unwritable_sidecars(monkeypatch, errno.EIO)
    rc, err = cli(clip, "--no-video", "--overwrite", out=out)
    assert rc == 4, err
    assert "reserves 32 KiB" not in one_error_line(err)  # no full disk's advice for another error
    assert "closing the CSV failed" not in err + caplog.text  # one error, said once
    assert {n: (out / n).read_bytes() for n in before} == before and _hidden(out) == []


def test_the_final_sidecar_alone_unwritten_says_no_sidecar_was_written(tmp_path, code_dim, monkeypatch):
    """The Python API: where the first sidecar failed and the caller goes on, a final one that fails too says that
    no sidecar was written (it said "it still says running" of a sidecar that did not exist), and a CSV with rows is
    kept."""
    from facecycle.errors import OutputError
    from realtime.outputs import RunOutputs
    from realtime.types import FramePacket

    _unwritable_sidecars(monkeypatch, errno.EIO)
    o = RunOutputs(code_dim, describe=lambda: {"input": {"name": "x"}})
    with pytest.raises(OutputError, match=r"a\.json: Input/output error$"):
        o.open_csv(tmp_path / "a.csv")
    o.write(FramePacket(index=0, pts=0, time_base=None, timestamp=0.0, image=np.zeros((8, 8, 3), np.uint8),
                        faces=[], source="x", stats={}))
    with pytest.raises(OutputError, match="no sidecar was written; the CSV is complete"):
        o._close_csv("complete")
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 2  # the header and the frame's row: kept


def test_the_apps_csv_export_whose_sidecar_cannot_be_written_is_off(tmp_path, code_dim, monkeypatch, caplog):
    """The app (``on_error``): "CSV export not started" was said, the button unchecked, and the CSV went on being
    written unseen. Now it is closed; with no sidecar at all its header-only CSV is removed."""
    from realtime.outputs import CSV_FAILED, RunOutputs
    from realtime.types import FramePacket

    _unwritable_sidecars(monkeypatch, errno.EIO)
    said: List[str] = []
    o = RunOutputs(code_dim, describe=lambda: {"input": {"name": "x"}}, on_error=said.append)
    o.set_csv(tmp_path / "a.csv")
    for i in range(2):
        o.write(FramePacket(index=i, pts=i, time_base=None, timestamp=i / 25, image=np.zeros((8, 8, 3), np.uint8),
                            faces=[], source="x", stats={}))
    assert len(said) == 1 and said[0].startswith(CSV_FAILED[0]) and "a.json" in said[0], said
    assert o.csv is None and not o.recording
    assert o.close() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and "closing a failed output" not in caplog.text


# --------------------------------------------------------------------------- F5: the sidecar's names as text
def test_the_sidecars_names_that_are_not_utf8_are_text(cli, tmp_path, frames):
    if sys.platform in ("darwin", "win32"):
        pytest.skip("file names there are Unicode")
    src = tmp_path / "in"
    src.mkdir()
    made = write_video(src / "made.mp4", frames)
    clip = Path(os.fsdecode(os.fsencode(str(src)) + b"/caf\xe9 latin1.mp4"))
    try:
        os.rename(made, clip)
    except OSError:
        pytest.skip("this file system takes no name that is not UTF-8")
    out = tmp_path / "o"
    rc, err = cli(clip, "--no-video", "--max-frames", "2", out=out)
    assert rc == 0, err
    side = next(out.glob("*.json"))
    raw = side.read_text(encoding="utf-8")
    assert "\\udc" not in raw  # no lone surrogate escape anywhere
    info = json.loads(raw)
    assert info["input"]["name"].endswith("caf\\xe9 latin1.mp4")
    assert info["input"]["path"] == str(src) + "/caf\\xe9 latin1.mp4"
    assert info["csv"].endswith("caf\\xe9 latin1.csv")
    assert any(a.endswith("caf\\xe9 latin1.mp4") for a in info["command"])


# ------------------------------------------------------------------------------ F2: a stdout in ASCII
def _ascii_stdout(monkeypatch) -> io.BytesIO:
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii", newline="\n"))
    return raw


def test_an_ascii_stdout_is_made_tolerant_on_every_platform(monkeypatch):
    from facecycle_cli import _tolerant_std_streams

    raw = _ascii_stdout(monkeypatch)
    _tolerant_std_streams()
    assert sys.stdout.errors == "backslashreplace" and sys.stdout.encoding == "ascii"
    from facecycle_cli.probe_cmd import _say_beyond  # its literal ± and °, as escapes

    _say_beyond({"n_beyond_max_angle": 2, "max_abs_deg": 99})
    sys.stdout.flush()
    assert "2 image(s) with an angle beyond \\xb199\\xb0 left out" in raw.getvalue().decode("ascii")


def test_batch_dry_run_prints_a_non_ascii_name_to_an_ascii_stdout(monkeypatch, tmp_path, frames, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "clïp 視.mp4", frames[:2])
    raw = _ascii_stdout(monkeypatch)
    rc = main(["batch", str(src), "--out-dir", str(tmp_path / "b"), "--cluster", "none", "--dry-run"])
    sys.stdout.flush()
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "internal error" not in err
    assert "cl\\xefp \\u8996.mp4" in raw.getvalue().decode("ascii")


def test_engine_clean_prints_a_non_ascii_cache_folder_to_an_ascii_stdout(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "hömé"))
    raw = _ascii_stdout(monkeypatch)
    rc = main(["engine", "clean"])
    sys.stdout.flush()
    assert rc == 0, capsys.readouterr().err
    assert "h\\xf6m\\xe9" in raw.getvalue().decode("ascii")
