"""Portability review h69 (F2, F3, F9, F15): file identity, long paths and Unicode names in `batch`, `process`'s
name clashes and the app's outputs.

macOS and Windows compare names without case (and APFS without Unicode normalization), and Windows limits paths to
260 characters; neither can be made on this Linux machine. They are stood in for by what has the same effect here:
a hard link or a symlinked spelling (one file, two paths that realpath keeps apart), an output folder deep enough
that an attempt's work copies pass Linux's PATH_MAX (4096) while the final outputs do not, and a name near
NAME_MAX (255).
"""
from __future__ import annotations

import errno
import json
import os
import unicodedata
from pathlib import Path

import pytest

from facecycle.errors import UsageError
from facecycle.files import name_key, text_name
from facecycle_cli import main as cli_main
from realtime.batch import collect_inputs
from realtime.batch import job as jobmod
from realtime.batch.job import PARTIAL_DIR, same_input
from realtime.outputs import first_clash

from .conftest import hold_replace

NFC, NFD = unicodedata.normalize("NFC", "Zo\u00eb"), unicodedata.normalize("NFD", "Zo\u00eb")
BATCH = ["--cluster", "none", "--no-video", "--no-progress"]


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _clip(path: Path, frames: int = 3) -> Path:
    from .conftest import real_frames, write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, real_frames(frames), rate=25)


# ------------------------------------------------------------------------------------------ F2: identity
def test_same_input_is_one_file_however_its_path_is_spelled(tmp_path):
    """`same_input` compared real paths: one file under two names (on macOS `Videos/clip.mp4` and
    `videos/clip.mp4`) was two inputs, and every input of a rerun failed as another batch's results."""
    a = _touch(tmp_path / "in" / "a.mp4")
    b = tmp_path / "in" / "b.mp4"
    os.link(a, b)  # one file, a second path realpath does not resolve to the first
    other = _touch(tmp_path / "in" / "c.mp4")
    assert same_input(a, b) and same_input(str(b), str(a))
    assert not same_input(a, other)  # distinct files stay distinct
    # where one does not exist (yet), real paths are compared, as before
    assert same_input(tmp_path / "in" / "x" / ".." / "gone.mp4", tmp_path / "in" / "gone.mp4")
    assert not same_input(a, tmp_path / "in" / "gone.mp4")
    assert same_input("https://h/a.mp4", "https://h/a.mp4") and not same_input("https://h/a.mp4", a)


def test_collect_inputs_finds_one_file_and_the_output_folder_however_spelled(tmp_path):
    """Duplicates were found by real path, and the output folder (and its annotated videos) by path equality:
    a hard link of an input was a second input, and an output folder inside the input folder spelled another way
    (`--out-dir ~/videos/out` for `~/Videos` on macOS) was searched, so a rerun took its own annotated videos as
    inputs (they landed in batch.json and the Parquet dataset)."""
    src = tmp_path / "in"
    a = _touch(src / "a.mp4")
    os.link(a, src / "b.mp4")
    _touch(src / "c.mp4")
    items, dups = collect_inputs([str(src)])
    assert [i.rel.as_posix() for i in items] == ["a.mp4", "c.mp4"]
    assert dups == [{"input": str(a), "count": 2}]
    # the output folder inside the input folder, given by another path to it
    out = src / "out"
    _touch(out / "a.annotated.mp4")
    _touch(out / "sub" / "x.mp4")
    alias = tmp_path / "alias"
    alias.symlink_to(src, target_is_directory=True)
    items, _ = collect_inputs([str(src)], out_dir=alias / "out")
    assert [i.rel.as_posix() for i in items] == ["a.mp4", "c.mp4"], items
    # an annotated video of the output folder named alone (or by a pattern) is not an input either
    items, _ = collect_inputs([str(out / "a.annotated.mp4"), str(src / "c.mp4")], out_dir=alias / "out")
    assert [i.path for i in items] == [src / "c.mp4"], items
    items, _ = collect_inputs([str(out / "*.mp4"), str(src / "c.mp4")], out_dir=alias / "out")
    assert [i.path for i in items] == [src / "c.mp4"], items
    # without an output folder there, nothing changes: a folder named `out` is searched
    items, _ = collect_inputs([str(src)], out_dir=tmp_path / "elsewhere")
    assert [i.rel.as_posix() for i in items] == ["a.mp4", "c.mp4", "out/a.annotated.mp4", "out/sub/x.mp4"], items


def test_first_clash_sees_the_input_under_another_name(tmp_path):
    """The app's guard against recording over its own input compared real paths: `clip.mp4` recorded while reading
    `Clip.mp4` on macOS truncated the input after the save dialog's "Replace"."""
    clip = _touch(tmp_path / "Clip.mp4")
    alias = tmp_path / "clip.mp4"
    os.link(clip, alias)
    msg = first_clash({"annotated video": alias}, {"the input": clip})
    assert msg == f"{alias}: the annotated video would be written over the input", msg
    assert first_clash({"annotated video": tmp_path / "new.mp4", "CSV": tmp_path / "new.csv"},
                       {"the input": clip}) is None
    # paths not made yet are compared as before
    assert first_clash({"CSV": tmp_path / "x.csv", "sidecar": tmp_path / "d" / ".." / "x.csv"}) is not None


# ------------------------------------------------------------------------------------------ F9: NFC / NFD
def test_nfc_and_nfd_names_are_one_name_where_names_are_compared_without_case(tmp_path, monkeypatch):
    """macOS compares `Zoë` composed (NFC) and decomposed (NFD) as one name: two inputs whose names differ only so
    (they can sit side by side on a Linux share) wrote one `Zoë.csv` there. Only that clash key is NFC: recorded
    text keeps the file system's name."""
    from realtime.batch import plan

    assert NFC != NFD
    assert name_key(NFD + ".mp4", True) == name_key(NFC.upper() + ".mp4", True)
    assert name_key(NFD, False) != name_key(NFC, False)  # a case-sensitive file system: two names, as before
    assert text_name(NFD + ".png") == NFD + ".png"  # the CSV's `file` column and the Parquet `video` column: as is
    assert text_name("a\udcff.png") == "a\\xff.png"  # bytes that are not UTF-8, as before
    src = tmp_path / "nf"
    _touch(src / f"{NFC}.mp4")
    _touch(src / f"{NFD}.mp4")
    monkeypatch.setattr(plan, "names_caseless", lambda folder: True)
    with pytest.raises(UsageError, match="would write the same outputs"):
        collect_inputs([str(src)], out_dir=tmp_path / "out")
    monkeypatch.setattr(plan, "names_caseless", lambda folder: False)
    items, _ = collect_inputs([str(src)], out_dir=tmp_path / "out")
    assert len(items) == 2


def test_csv_file_column_keeps_the_file_systems_name(tmp_path):
    """The `file` column is the picture's name as the file system has it (docs/csv.md): an NFD name recorded as NFC
    no longer opened from the column on Linux (ext4 keeps NFC and NFD names apart), and two pictures whose names
    differ only so got one `file` value."""
    from realtime.sinks.csv_sink import _file_field

    class Packet:
        file = f"photos/{NFD}.png"

    class Other:
        file = f"photos/{NFC}.png"

    assert _file_field(Packet()) == f",photos/{NFD}.png" != _file_field(Other())
    pic = _touch(tmp_path / "photos" / f"{NFD}.png")
    assert (tmp_path / _file_field(Packet())[1:]).is_file() and pic.is_file()


def test_batch_records_nfd_names_as_the_file_system_has_them(tmp_path, capsys):
    """A batch over a macOS-made `Zoe\u0308.mp4` records the NFD name, as the file system has it, in batch.json's
    `rel`, the sidecar and the Parquet `video` column (NFC text named no file on Linux; docs/batch.md says to
    normalise both sides of a join with a label sheet). The outputs keep the input's name."""
    pa = pytest.importorskip("pyarrow.parquet")
    src = tmp_path / "in"
    _clip(src / f"{NFD}.mp4")
    out, pq = tmp_path / "out", tmp_path / "all.parquet"
    assert cli_main(["batch", str(src), "--out-dir", str(out), "--parquet", str(pq), *BATCH]) == 0, \
        capsys.readouterr().err
    rec = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert [e["rel"] for e in rec["inputs"]] == [f"{NFD}.mp4"]
    assert (out / f"{NFD}.csv").is_file() and (out / f"{NFD}.json").is_file()  # the files' names: the input's
    side = json.loads((out / f"{NFD}.json").read_text(encoding="utf-8"))
    assert side["batch"]["rel"] == f"{NFD}.mp4"
    videos = set(pa.read_table(str(pq), columns=["video"]).column("video").to_pylist())
    assert videos == {f"{NFD}.mp4"}, videos
    assert {unicodedata.normalize("NFC", v) for v in videos} == {f"{NFC}.mp4"}  # the join docs/batch.md gives


# ------------------------------------------------------------------------------------------ F3: long paths
def test_an_output_name_over_the_limit_fails_its_input_not_the_batch(tmp_path, capsys):
    """An input named 255 bytes (legal) gives a sidecar `NAME.json` of 256: an output error that stopped the whole
    batch (the other inputs cancelled, exit 4). Now that input fails alone, with one line, before anything is
    made, and the others are done (exit 3)."""
    src = tmp_path / "in"
    long = _clip(src / ("a" * 251 + ".mp4"))
    _clip(src / "b.mp4")
    out = tmp_path / "out"
    assert cli_main(["batch", str(src), "--out-dir", str(out), *BATCH]) == 3
    err = capsys.readouterr().err
    rec = json.loads((out / "batch.json").read_text())
    st = {e["rel"]: e for e in rec["inputs"]}
    assert st["b.mp4"]["status"] == "done" and (out / "b.csv").is_file() and (out / "b.json").is_file()
    bad = st[long.name]
    assert bad["status"] == "failed" and rec["counts"]["failed"] == 1 and rec["counts"].get("cancelled", 0) == 0
    assert bad["error"].startswith(f"{long}: ") and "output file name too long (256 bytes" in bad["error"], bad
    assert "\n" not in bad["error"] and "too long" in err
    assert rec["exit_code"] == 3 and not list(out.glob("a*"))


def _deep_folder(base: Path, length: int) -> Path:
    """A folder under ``base`` whose absolute path is ``length`` characters (made)."""
    p = str(base.resolve())
    while length - len(p) > 202:
        p += "/" + "d" * 200
    p += "/" + "d" * (length - len(p) - 1)
    assert len(p) == length
    os.makedirs(p)
    return Path(p)


def test_a_work_path_too_long_fails_its_input_not_the_batch(tmp_path, capsys):
    """An attempt works in `.facecycle-partial/STEM/RUN.PID/STEM.csv`, about 50 characters plus the stem longer than
    the final output: over the system's limit (Windows' 260 by default; Linux's 4096 here), the write failed with a
    bare "No such file or directory" / "File name too long" as an output folder that cannot be written, and the
    whole batch was cancelled, though the final outputs would have fit. Now that input fails alone, with one line
    naming it and the cause; the others are done."""
    limit = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
    if limit != 4096:
        pytest.skip(f"PATH_MAX is {limit} here")
    stem = "L" * 100
    out = _deep_folder(tmp_path / "o", 3890)  # work copy of STEM: ~4160 characters; final outputs ~4000
    assert len(str(out / f"{stem}.json")) < 4000
    src = tmp_path / "in"
    _clip(src / f"{stem}.mp4")
    _clip(src / "b.mp4")
    assert cli_main(["batch", str(src), "--out-dir", str(out), *BATCH]) == 3
    err = capsys.readouterr().err
    rec = json.loads((out / "batch.json").read_text())
    st = {e["rel"]: e for e in rec["inputs"]}
    assert st["b.mp4"]["status"] == "done" and (out / "b.csv").is_file(), (st, err)
    bad = st[f"{stem}.mp4"]
    assert bad["status"] == "failed" and bad["exit_code"] == 4 and rec["exit_code"] == 3, bad
    assert rec["counts"]["done"] == 1 and rec["counts"]["failed"] == 1 and rec["counts"]["cancelled"] == 0
    assert bad["error"].startswith(f"{src / stem}.mp4: its outputs cannot be written: a path of "), bad["error"]
    assert f"(a work copy, in {PARTIAL_DIR}) is too long (File name too long)" in bad["error"], bad["error"]
    assert "shorter --out-dir" in bad["error"] and "\n" not in bad["error"]
    assert not (out / PARTIAL_DIR).exists() and not (out / f"{stem}.json").exists()


def test_which_errors_fail_one_input(tmp_path, monkeypatch):
    """The rule behind the above: a path too long (ENAMETOOLONG; on Windows a long path's "not found") or a
    PermissionError of this input's files where the output folder may be written fails the input alone; anything
    else under --out-dir (a read-only output folder, a full disk) still stops the batch."""
    from facecycle.errors import OutputError

    out = tmp_path / "out"
    out.mkdir()
    task = {"input": "/in/x.mp4", "out_dir": str(out)}
    work = out / PARTIAL_DIR / "x" / "r.1" / "x.csv"
    long = OSError(errno.ENAMETOOLONG, "File name too long", str(work))
    assert "a path of" in jobmod._this_input_only(long, task)
    try:  # a sink's output error made from it
        try:
            raise long
        except OSError:
            raise OutputError(f"{work}: cannot be written (File name too long)") from None
    except OutputError as e:
        assert jobmod._this_input_only(e, task).startswith("/in/x.mp4: its outputs cannot be written: a path")
    assert jobmod._this_input_only(OSError(errno.ENAMETOOLONG, "x", "/elsewhere/y"), task) is None  # not an output
    full = OSError(errno.ENOSPC, "No space left on device", str(work))
    assert jobmod._this_input_only(full, task) is None
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", str(out / ("d" * 260) / "x.csv"))
    assert jobmod._this_input_only(gone, task) is None  # Linux: a missing folder is not a long path
    monkeypatch.setattr(jobmod, "_WINDOWS", True)
    msg = jobmod._this_input_only(gone, task)
    assert "characters is too long" in msg and "LongPathsEnabled" in msg, msg
    denied = PermissionError(errno.EACCES, "Permission denied", str(out / "sub" / "x.csv"))
    assert "Permission denied" in jobmod._this_input_only(denied, task)
    monkeypatch.setattr(jobmod, "_WINDOWS", False)
    assert "(" + str(out / "sub" / "x.csv") + ": Permission denied)" in jobmod._this_input_only(denied, task)
    monkeypatch.setattr(jobmod.os, "access", lambda p, mode: False)  # the output folder itself: every input alike
    assert jobmod._this_input_only(denied, task) is None


# ------------------------------------------------------------------------------------------ F15: sidecar aside
def test_a_held_sidecar_fails_its_input_not_the_batch_on_windows(tmp_path, capsys, monkeypatch):
    """An attempt moves the input's old sidecar aside with a bare os.replace: a sidecar an editor or a virus
    scanner held on Windows stopped the whole batch as an output folder that cannot be written. It is retried as
    the other moves are, then fails its input alone."""
    src = tmp_path / "in"
    _clip(src / "a.mp4")
    _clip(src / "b.mp4")
    out = tmp_path / "out"
    o = ["batch", str(src), "--out-dir", str(out), *BATCH]
    assert cli_main(o) == 0, capsys.readouterr().err
    tries = hold_replace(monkeypatch, jobmod, lambda a, b: a if a == str(out / "a.json") else None)
    capsys.readouterr()
    assert cli_main([*o, "--force"]) == 3
    err = capsys.readouterr().err
    assert f"{out / 'a.json'}: cannot be replaced, open in another program?" in err, err
    rec = json.loads((out / "batch.json").read_text())
    st = {e["rel"]: e["status"] for e in rec["inputs"]}
    assert st == {"a.mp4": "failed", "b.mp4": "done"} and len(tries) == 5, (st, err)
