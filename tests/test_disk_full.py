"""A full disk, a file size limit and a vanished current folder, met while the outputs are written
(docs/reliability.md, "Outputs").

A full disk is simulated without root: the CSV sink's ``os`` (a short write, then ENOSPC), ``Path.write_text``
for the sidecar's temporary file, or ``RLIMIT_FSIZE`` in a subprocess (SIGXFSZ ignored there, so a write past the
limit is cut short, then fails with EFBIG, as on a full disk). Each case checks the exit code, one error line, a
CSV of complete lines only whose sidecar counts match it, and no unplayable video named as written.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence

import av
import numpy as np
import pytest

from facecycle.errors import OutputError

from .conftest import ROOT, frames_of, one_error_line, read_csv, real_frames, write_video

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def faces40() -> List[np.ndarray]:
    return real_frames(40)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, faces40) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", faces40[:10])


def limited(limit: int, argv: Sequence[object]) -> subprocess.CompletedProcess:
    """``facecycle ARGV`` in a subprocess whose files may not grow past ``limit`` bytes (``ulimit -f``), SIGXFSZ
    ignored: a write past it is cut short at the limit, and the next fails with EFBIG."""
    code = ("import resource, signal, sys\n"
            "from facecycle_cli import main\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), hard))\n"
            "sys.exit(main(sys.argv[2:]))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code, str(limit), *map(str, argv)], capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT), env=env)


class _ShortThenFull:
    """``os`` for the CSV sink: ``ok`` writes succeed, the next writes half its data (a short write, as on a disk
    about to fill), and every later one fails with ENOSPC."""

    def __init__(self, ok: int) -> None:
        self.ok, self.calls = ok, 0

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        self.calls += 1
        if self.calls <= self.ok:
            return os.write(fd, data)
        if self.calls == self.ok + 1:
            return os.write(fd, bytes(data)[: max(1, len(data) // 2)])
        raise ENOSPC


def _packet(i: int, image: Optional[np.ndarray] = None):
    from realtime.types import FramePacket

    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                       image=image if image is not None else np.zeros((8, 8, 3), np.uint8))


def _side(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------ 1. the CSV's last row
def test_a_full_disk_mid_row_leaves_complete_rows_only(cli, tmp_path, clip, monkeypatch, code_dim):
    """Half of frame 6's rows reach the disk, then it is full: they are cut off again, so the CSV ends with frame
    5's last line and the sidecar's counts match it (it ended mid-row, 124 of 299 fields, read by pandas as a row of
    empty cells)."""
    import realtime.sinks.csv_sink as csv_sink

    monkeypatch.setattr(csv_sink, "os", _ShortThenFull(ok=1 + 6))  # the header, 6 frames
    rc, err = cli(clip, "--no-video")
    assert rc == 4, err
    assert "clip.csv: disk full (rows up to frame 5 are complete)" in one_error_line(err)
    rows = read_csv(tmp_path / "out" / "clip.csv", code_dim)  # complete lines only
    assert frames_of(rows) == list(range(6))
    side = _side(tmp_path / "out" / "clip.json")
    assert side["status"] == "failed" and side["frames"] == 6 and side["rows"] == len(rows)


def test_a_file_size_limit_mid_row_leaves_complete_rows_only(model, tmp_path, faces40, code_dim):
    """``ulimit -f``: the kernel writes up to the limit, then refuses (EFBIG). The message says so, the cut row is
    removed, and the sidecar counts what the CSV holds (it said 16 frames over 17 rows, the last one cut)."""
    out = tmp_path / "out"
    # above the 32 KiB "running" sidecar; the CSV of 480 frames is larger, also of no-face rows (about 80 bytes
    # each with the tiny model: the frames are synthetic where ../shared is absent)
    limit = 33 * 1024
    long_clip = write_video(tmp_path / "long.mp4", faces40 * 12)
    r = limited(limit, ["process", long_clip, "--model", model, "--out-dir", out, "--no-video", "--no-progress"])
    assert r.returncode == 4, r.stderr
    line = one_error_line(r.stderr)
    assert "long.csv: file size limit reached (rows up to frame " in line, line
    last = int(line.split("rows up to frame ")[1].split()[0])
    rows = read_csv(out / "long.csv", code_dim)
    assert frames_of(rows)[-1] == last and 0 < last < 479
    assert (out / "long.csv").stat().st_size <= limit
    side = _side(out / "long.json")
    assert side["status"] == "failed" and side["frames"] == last + 1 and side["rows"] == len(rows)


def test_no_row_written_is_said_so(tmp_path, code_dim):
    """A write that fails before any frame's rows says "no rows written" (it said "rows up to frame -1 are
    complete"); where even the header fails, the empty CSV made for it is removed (it blocked the next run)."""
    import realtime.sinks.csv_sink as csv_sink

    orig = csv_sink.os
    try:
        csv_sink.os = _ShortThenFull(ok=1)  # the header only
        sink = csv_sink.CsvSink(tmp_path / "a.csv", code_dim)
        with pytest.raises(OutputError, match=r"a\.csv: disk full \(no rows written\)$"):
            sink.write(_packet(0))
        sink.close()
        assert (tmp_path / "a.csv").read_text().count("\n") == 1  # the header, whole
        csv_sink.os = _ShortThenFull(ok=0)  # not even the header
        with pytest.raises(OutputError, match=r"b\.csv: disk full \(no rows written\)$"):
            csv_sink.CsvSink(tmp_path / "b.csv", code_dim)
        assert not (tmp_path / "b.csv").exists()
    finally:
        csv_sink.os = orig


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full absent")
def test_a_csv_on_dev_full_says_no_rows_written(cli, tmp_path, clip):
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.csv").symlink_to("/dev/full")
    rc, err = cli(clip, "--overwrite", "--no-video", out=out)
    assert rc == 4, err
    line = one_error_line(err)
    assert "clip.csv: disk full (no rows written)" in line and "frame -1" not in line


# ------------------------------------------------------------------------------ 2. the video
def test_an_mp4_that_cannot_be_finished_is_removed_and_not_named(model, tmp_path):
    """The video reaches the file size limit: its index (written last) cannot be written, and an MP4 without it
    plays nowhere ("Invalid data"). It is removed, and the sidecar's ``video`` is null with the reason in its
    ``error`` (the broken file stayed, named in the sidecar as the run's video)."""
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (360, 640, 3), np.uint8) for _ in range(6)]  # no face; megabytes of H.264
    src = write_video(tmp_path / "noise.mp4", noise, options={"crf": "0"})
    out = tmp_path / "out"
    r = limited(48 * 1024, ["process", src, "--model", model, "--out-dir", out, "--no-progress"])
    assert r.returncode == 4, r.stderr
    assert not (out / "noise.annotated.mp4").exists()
    side = _side(out / "noise.json")
    assert side["status"] == "failed" and side["video"] is None
    line = one_error_line(r.stderr)
    assert "noise.annotated.mp4: file size limit reached" in line, line
    assert "could not be finished: removed" in side["error"]
    assert "removed, it would not play" in r.stderr  # the warning says it too


def test_a_video_that_still_plays_is_kept(tmp_path):
    """Closing fails, yet what was written plays: the file stays, called incomplete (only an unplayable one goes)."""
    from realtime.sinks import VideoSink

    sink = VideoSink(tmp_path / "v.mp4", fps=25)
    for i in range(3):
        sink.write(_packet(i, np.full((64, 64, 3), 40 * i, np.uint8)))
    real = sink.container

    class Failing:
        def __getattr__(self, name):
            return getattr(real, name)

        def close(self):
            real.close()  # finished, then an error (as a failing final flush of a network file system)
            raise ENOSPC

    sink.container = Failing()
    with pytest.raises(OutputError, match=r"disk full \(the video is incomplete\)"):
        sink.close()
    assert not sink.removed
    with av.open(str(tmp_path / "v.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3


# ------------------------------------------------------------------------------ 3. no room for the sidecar
def _full_for_running_sidecars(monkeypatch) -> None:
    """The sidecar's temporary file hits a full disk while the padded ``running`` sidecar is written."""
    real = Path.write_text

    def write_text(self, data, *a, **k):
        if self.name.endswith(".tmp") and '"status": "running"' in data:
            real(self, data[:1000], *a, **k)  # what fitted
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)


def test_no_room_for_the_running_sidecar_is_an_output_error(cli, tmp_path, clip, monkeypatch):
    """Under 32 KiB free when the run starts: ``X.json: disk full``, exit 4 (it was ``internal error: OSError``,
    exit 1). The run fails before its first frame: a header-only CSV and a failed sidecar, no temp file."""
    _full_for_running_sidecars(monkeypatch)
    rc, err = cli(clip, "--no-video")
    assert rc == 4, err
    line = one_error_line(err)
    assert "clip.json: disk full" in line and "internal error" not in line
    side = _side(tmp_path / "out" / "clip.json")
    assert side["status"] == "failed" and side["frames"] == 0 and "disk full" in side["error"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_no_room_for_the_running_sidecar_stops_a_batch(cli, tmp_path, clip, monkeypatch):
    """In ``batch`` the same is an output error, which stops the batch (every input would fail alike): exit 4, one
    line, no traceback per input (it was an internal error per input, with its traceback, and the batch went on)."""
    _full_for_running_sidecars(monkeypatch)
    second = tmp_path / "second.mp4"
    second.write_bytes(clip.read_bytes())
    # --cluster none: in this process, where the full disk is made (with Ray installed, auto ran the inputs in workers)
    rc, err = cli(clip, second, "--no-video", "--cluster", "none", cmd="batch", out=tmp_path / "bout")
    assert rc == 4, err
    line = one_error_line(err, "facecycle batch: error:")
    assert "disk full" in line and "internal error" not in err


def test_a_file_size_limit_below_the_sidecar_reserve(model, tmp_path, clip):
    """``ulimit -f 20``: the padded running sidecar (32 KiB) does not fit: a one-line output error."""
    out = tmp_path / "out"
    r = limited(20 * 1024, ["process", clip, "--model", model, "--out-dir", out, "--no-video", "--no-progress"])
    assert r.returncode == 4, r.stderr
    line = one_error_line(r.stderr)
    assert "clip.json: file size limit reached" in line


def test_write_atomic_names_the_file_it_failed_to_write(tmp_path, monkeypatch):
    """A failed write's OSError names no file; ``write_atomic`` names it, so a batch sees that its output folder
    failed (an output error that stops it) rather than an internal error."""
    from facecycle.files import write_atomic

    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError) as e:
        write_atomic(tmp_path / "s.json", "{}")
    assert e.value.filename == str(tmp_path / "s.json")


# ------------------------------------------------------------------------------ 4. the umask
def test_the_csv_follows_the_umask(tmp_path, code_dim):
    """A umask of 002 gives 0664, as for the sidecar and the video (the CSV was made 0644 whatever the umask)."""
    from realtime.sinks import CsvSink, write_sidecar

    old = os.umask(0o002)
    try:
        CsvSink(tmp_path / "a.csv", code_dim).close()
        write_sidecar(tmp_path / "a.json", {"status": "complete"})
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o664


# ------------------------------------------------------------------------------ 5. a deleted current folder
def test_a_deleted_current_folder_is_an_output_error(cli, tmp_path, clip, monkeypatch):
    """Outputs named relative to a current folder that was deleted: exit 4, one line (it was ``internal error:
    FileNotFoundError`` from realpath, exit 1)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    rc, err = cli(clip, "--no-video", out=Path("rel"))
    assert rc == 4, err
    assert "the current folder no longer exists" in one_error_line(err)
