"""`facecycle batch` and the names users' files have (a probe's F3-F6, F1): `--dry-run` lines stay one line per
input whatever a name holds (a newline, a tab, a backslash); an ``@list`` names files whose names are not UTF-8, and
keeps names that start with ``#`` or with a space (``ls > list.txt``); ``batch.json`` holds such names as the Parquet
``video`` column does (``\\xNN``, no lone surrogates), and a rerun still finds the input complete; a name too long
for the file system is told to be renamed, not to shorten --out-dir.

Short synthetic clips and a tiny random model (no ../shared needed).
"""
from __future__ import annotations

import codecs
import errno
import json
import os
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest

from facecycle.files import text_name
from facecycle_cli import main as cli_main
from realtime.batch import collect_inputs
from realtime.batch import job as jobmod
from realtime.batch.job import PARTIAL_DIR

from .conftest import write_video

posix_only = pytest.mark.skipif(os.name == "nt", reason="names with control characters or non-UTF-8 bytes: POSIX")


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    """An 8-frame clip's bytes, copied under every name a test needs."""
    p = tmp_path_factory.mktemp("clip") / "clip.mp4"
    rng = np.random.default_rng(0)
    write_video(p, [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(8)])
    return p.read_bytes()


@pytest.fixture(scope="module")
def model_dir(tiny_export) -> str:
    return str(tiny_export[1])


def _put(folder: Path, name, data: bytes) -> Path:
    """``data`` as ``folder/name`` (``name`` str or bytes: a name that is not UTF-8); skipped where the file system
    refuses the name (macOS's refuses bytes that are not UTF-8)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(os.fsencode(folder), name) if isinstance(name, bytes) else os.path.join(folder, name)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        pytest.skip(f"this file system refuses the name {name!r} ({e})")
    return Path(os.fsdecode(path))


def _latin1_ok() -> None:
    if sys.getfilesystemencoding().lower().replace("-", "") != "utf8":
        pytest.skip(f"file names are read as {sys.getfilesystemencoding()} here, not UTF-8")


def _argv(inputs: List[str], out: Path, model_dir: str, *extra: str) -> List[str]:
    return ["batch", *inputs, "--out-dir", str(out), "--model", model_dir, "--cluster", "none", "--no-video",
            "--no-progress", *extra]


def _unescape(field: str) -> str:
    """A ``--dry-run`` field's name back (C-style escapes to bytes, then as the file system reads names)."""
    out, i = bytearray(), 0
    while i < len(field):
        c = field[i]
        if c == "\\":
            nxt = field[i + 1]
            if nxt == "x":
                out.append(int(field[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"\\": b"\\", "t": b"\t", "n": b"\n", "r": b"\r"}[nxt]
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return os.fsdecode(bytes(out))


def _dry_run(capsys, argv: List[str], rc: int = 0) -> List[List[str]]:
    capsys.readouterr()
    assert cli_main(argv) == rc, capsys.readouterr().err
    return [ln.split("\t") for ln in capsys.readouterr().out.split("\n") if ln]


# ------------------------------------------------------------------------------------------------ F3: --dry-run
@posix_only
def test_dry_run_lines_stay_one_line_per_input_whatever_the_names(tmp_path, capsys, clip_bytes, model_dir):
    """A name with a newline split its record over two lines, a tab added a column; `--help` promises one
    ``DECISION<TAB>INPUT<TAB>CSV`` line per input. Fields are escaped (``\\\\``, ``\\t``, ``\\n``, ``\\r``, bytes
    that are not UTF-8 as ``\\xNN``), and unescaping gives each path back."""
    src = tmp_path / "in"
    names = ["new\nline.mp4", "ta\tb.mp4", "back\\slash.mp4", "cr\rx.mp4", "plain.mp4", "esc\x1bape.mp4"]
    inputs = [_put(src, n, clip_bytes) for n in names]
    if sys.getfilesystemencoding().lower().replace("-", "") == "utf8":
        inputs.append(_put(src, b"caf\xe9 latin1.mp4", clip_bytes))
    out = tmp_path / "out"
    lines = _dry_run(capsys, _argv([str(src)], out, model_dir, "--dry-run"))
    assert len(lines) == len(inputs), lines
    assert all(len(parts) == 3 for parts in lines), lines
    assert all(what == "run" for what, _, _ in lines), lines
    got = {_unescape(inp): _unescape(csv) for _, inp, csv in lines}
    assert set(got) == {str(p) for p in inputs}, got
    for p in inputs:
        assert got[str(p)] == str(out / (p.stem + ".csv"))
    shown = {inp for _, inp, _ in lines}
    assert f"{src}/new\\nline.mp4" in shown and f"{src}/ta\\tb.mp4" in shown and f"{src}/back\\\\slash.mp4" in shown
    assert f"{src}/esc\\x1bape.mp4" in shown
    if len(inputs) > len(names):  # the Latin-1 name as batch.json and the Parquet column have it
        assert f"{src}/caf\\xe9 latin1.mp4" in shown


# ---------------------------------------------------------------------------------- F4: lists that are not UTF-8
@posix_only
def test_a_list_names_files_whose_names_are_not_utf8(tmp_path, capsys, clip_bytes, model_dir):
    """`find DIR -name '*.mp4' > l.txt` where a name has Latin-1 bytes: the list was refused whole ("cannot read the
    input list ('utf-8' codec can't decode byte 0xe9...)", exit 3), though the folder form read it. Each line is
    read as the file system reads names, so it names that file; CRLF ends and a byte-order mark still work."""
    _latin1_ok()
    src = tmp_path / "in"
    latin = _put(src, b"caf\xe9 latin1.mp4", clip_bytes)
    plain = _put(src, "plain.mp4", clip_bytes)
    lst = tmp_path / "l.txt"
    lst.write_bytes(os.fsencode(latin) + b"\n" + os.fsencode(plain) + b"\n")
    out = tmp_path / "out"
    lines = _dry_run(capsys, _argv([f"@{lst}"], out, model_dir, "--dry-run"))
    assert [(what, _unescape(inp)) for what, inp, _ in lines] == [("run", str(latin)), ("run", str(plain))], lines
    items, _ = collect_inputs([f"@{lst}"], out_dir=out)
    assert [it.path for it in items] == [latin, plain] and not any(it.error for it in items)
    # a BOM and CRLF line ends (Notepad's) with it, relative names too
    lst.write_bytes(codecs.BOM_UTF8 + b"in/caf\xe9 latin1.mp4\r\nin/plain.mp4\r\n")
    items, _ = collect_inputs([f"@{lst}"], out_dir=out)
    assert [it.path for it in items] == [latin, plain] and not any(it.error for it in items)
    # a UTF-16 list (Windows PowerShell's `ls > list.txt`)
    lst.write_bytes(codecs.BOM_UTF16_LE + "in/plain.mp4\r\n".encode("utf-16-le"))
    items, _ = collect_inputs([f"@{lst}"], out_dir=out)
    assert [it.path for it in items] == [plain] and not any(it.error for it in items)


@posix_only
def test_a_list_line_not_utf8_that_names_no_file_says_its_line_and_utf8(tmp_path, capsys, clip_bytes, model_dir):
    """A list saved as Latin-1 naming files whose names are UTF-8: that line's input fails with its line number and
    what to do (save the list as UTF-8); the other lines run."""
    _latin1_ok()
    src = tmp_path / "in"
    _put(src, "café.mp4", clip_bytes)
    plain = _put(src, "plain.mp4", clip_bytes)
    lst = src / "l.txt"
    lst.write_bytes(b"# a comment\nplain.mp4\ncaf\xe9.mp4\n")
    items, _ = collect_inputs([f"@{lst}"], out_dir=tmp_path / "out")
    assert items[0].path == plain and items[0].error is None
    err = items[1].error
    assert err and "line 3 of" in err and "not UTF-8" in err and "save the list as UTF-8" in err, err
    capsys.readouterr()
    assert cli_main(_argv([f"@{lst}"], tmp_path / "out", model_dir, "--dry-run")) == 3
    cap = capsys.readouterr()
    assert "line 3 of" in cap.err and "save the list as UTF-8" in cap.err, cap.err
    assert "\udce9" not in cap.err and "caf\\xe9.mp4" in cap.err  # the byte as batch.json writes it


# ------------------------------------------------------------------------------- F6: lines dropped or altered
def test_list_lines_that_name_files_are_not_comments_and_keep_their_spaces(tmp_path, clip_bytes, caplog):
    """In a list made by `ls > list.txt`, `#1 интервью.mp4` was skipped as a comment without a word, and
    ` lead space.mp4` trimmed, then "no such file". A line is read as the file it names as it stands; otherwise its
    surrounding spaces are dropped and a `#` line is a comment. Blank lines are skipped."""
    src = tmp_path / "in"
    hashed = _put(src, "#1 интервью.mp4", clip_bytes)
    lead = _put(src, " lead space.mp4", clip_bytes)
    trail = _put(src, "trail space.mp4 ", clip_bytes)
    plain = _put(src, "plain.mp4", clip_bytes)
    lst = src / "list.txt"
    lst.write_text("#1 интервью.mp4\n lead space.mp4\ntrail space.mp4 \n\n   \n# a comment\n  # indented comment\n"
                   "plain.mp4   \n", encoding="utf-8")
    items, _ = collect_inputs([f"@{lst}"], out_dir=tmp_path / "out")
    assert [it.path for it in items] == [hashed, lead, trail, plain], items
    assert not any(it.error for it in items)
    # a `#` line that names a file while the name after the `#` does too: read as the file, with a warning
    other = _put(src, "1 интервью.mp4", clip_bytes)
    lst.write_text("#1 интервью.mp4\n1 интервью.mp4\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        items, _ = collect_inputs([f"@{lst}"], out_dir=tmp_path / "out")
    assert [it.path for it in items] == [hashed, other]
    assert any("not as a comment" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------- F5: batch.json's names, the Parquet join
@posix_only
def test_batch_json_names_match_the_parquet_column_and_a_rerun_skips(tmp_path, capsys, clip_bytes, model_dir):
    """batch.json held ``caf\\udce9 latin1.mp4`` (a lone surrogate: jq and Node read U+FFFD) while the Parquet
    ``video`` column held ``caf\\xe9 latin1.mp4``: no join. Every path in batch.json is now UTF-8 text as the column
    has it; the batch itself still opens the file by its real name, and a rerun finds it complete."""
    pq = pytest.importorskip("pyarrow.parquet")
    _latin1_ok()
    src = tmp_path / "in"
    latin = _put(src, b"caf\xe9 latin1.mp4", clip_bytes)
    _put(src, "plain.mp4", clip_bytes)
    out = tmp_path / "out"
    parquet = tmp_path / "all.parquet"
    assert cli_main(_argv([str(src)], out, model_dir, "--parquet", str(parquet))) == 0, capsys.readouterr().err
    raw = (out / "batch.json").read_bytes()
    assert b"\\udc" not in raw, raw  # no lone surrogate anywhere
    rec = json.loads(raw.decode("utf-8"))
    by = {e["rel"]: e for e in rec["inputs"]}
    assert set(by) == {"caf\\xe9 latin1.mp4", "plain.mp4"}, set(by)
    e = by["caf\\xe9 latin1.mp4"]
    assert e["status"] == "done" and e["input"] == text_name(str(latin)) == f"{src}/caf\\xe9 latin1.mp4"
    assert e["csv"] == f"{out}/caf\\xe9 latin1.csv" and e["sidecar"] == f"{out}/caf\\xe9 latin1.json"
    assert os.path.isfile(os.path.join(os.fsencode(out), b"caf\xe9 latin1.csv"))  # written under the real name
    videos = set(pq.read_table(str(parquet), columns=["video"]).column("video").to_pylist())
    assert videos == set(by), videos  # the join holds
    side = json.loads((out / "caf\udce9 latin1.json").read_text(encoding="utf-8"))
    assert side["batch"]["rel"] == "caf\\xe9 latin1.mp4" and side["batch"]["input"] == e["input"]
    # resume: the rerun matches the input by its real path (the sidecar's record is its UTF-8 spelling)
    capsys.readouterr()
    assert cli_main(_argv([str(src)], out, model_dir)) == 0, capsys.readouterr().err
    rec = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert {x["rel"]: x["status"] for x in rec["inputs"]} == {"caf\\xe9 latin1.mp4": "skipped", "plain.mp4": "skipped"}
    assert "2 skipped" in capsys.readouterr().err
    # a sidecar that records the surrogate spelling (written before this version) is the same input too
    side["batch"]["input"] = str(latin)
    (out / "caf\udce9 latin1.json").write_text(json.dumps(side), encoding="utf-8")
    lines = _dry_run(capsys, _argv([str(src)], out, model_dir, "--dry-run"))
    assert sorted(what for what, _, _ in lines) == ["skipped", "skipped"], lines


def test_same_input_takes_the_utf8_spelling_of_a_name(tmp_path):
    """The record ``caf\\xe9.mp4`` (batch.json's, a sidecar's) is the file whose name has the byte 0xE9, not another
    input's; a different name is still another input."""
    if os.name == "nt" or sys.getfilesystemencoding().lower().replace("-", "") != "utf8":
        pytest.skip("names that are not UTF-8: POSIX with UTF-8 file names")
    real = _put(tmp_path, b"caf\xe9.mp4", b"x")
    assert jobmod.same_input(text_name(str(real)), real)
    assert jobmod.same_input(str(real), text_name(str(real)))
    other = _put(tmp_path, "other.mp4", b"x")
    assert not jobmod.same_input(text_name(str(real)), other)


# ----------------------------------------------------------------------- F1: a name too long, not a path
def test_a_name_too_long_is_told_to_rename_not_to_shorten_out_dir(tmp_path, clip_bytes):
    """A name over the file system's limit (here the work folder of a stem of 90 `%`, escaped to 270 bytes) was
    told "give a shorter --out-dir", which cannot help: it is told to rename the input. A path too long as a whole
    is still told to shorten --out-dir."""
    out = tmp_path / "out"
    out.mkdir()
    task = {"input": "/in/x.mp4", "out_dir": str(out)}
    name = OSError(errno.ENAMETOOLONG, "File name too long", str(out / ("n" * 300 + ".csv")))
    msg = jobmod._this_input_only(name, task)
    assert msg and "rename the input" in msg and "300 bytes" not in msg and "304 bytes" in msg, msg
    assert "a shorter --out-dir does not help" in msg and "give a shorter --out-dir" not in msg, msg
    path = OSError(errno.ENAMETOOLONG, "File name too long", str(out / PARTIAL_DIR / "x" / ("d/" * 2100) / "x.csv"))
    msg = jobmod._this_input_only(path, task)
    assert msg and "a path of" in msg and "give a shorter --out-dir" in msg, msg
    # a real one: an input whose work folder's name is too long though its outputs' names fit
    try:
        limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if limit != 255:
        pytest.skip(f"NAME_MAX is {limit} here")
    src = _put(tmp_path / "in", "%" * 90 + ".mp4", clip_bytes)
    res = jobmod.run_task({"input": str(src), "rel": src.name, "out_dir": str(out), "run_id": "20260101T000000-abcdef",
                           "fingerprint": "f"}, jobmod.BatchSettings(video=False))
    assert res["status"] == "failed" and res["exit_code"] == 4, res
    assert "rename the input" in res["error"] and "give a shorter --out-dir" not in res["error"], res["error"]
    assert "(270 bytes; this file system allows 255)" in res["error"], res["error"]
