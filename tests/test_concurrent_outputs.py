"""Runs at once on the same outputs (docs/reliability.md, docs/batch.md): the second is refused at its start.

Two ``process --overwrite`` (or ``live --csv/--record --overwrite``, or the app recording) on one output name used
to lose one run's rows without a word: the second set aside and deleted the file the first was still writing, and
the sidecar could describe the other run; both exited 0. Two ``--parquet`` runs on one path (``process`` or
``batch``) each replaced the other's dataset. Each output is now locked while it is written (a ``flock`` on a hidden
``.NAME.lock`` beside it, :func:`facecycle.files.lock_file`), and a second run is refused at once, exit 4, with one
line naming the output and the host and pid of the run writing it.

The first run is held mid-way without timing guesses: ``facecycle process -`` (or a batch of a named pipe) is fed
half of an MPEG-TS made from a real clip's frames, its pipe kept open, while the second run is started in this
process; then it is fed the rest and must end complete with every one of its rows. Skipped where ../shared is
absent. Cost: a few model loads of the default model and 120 small frames per first run.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, List, Optional

import pytest

from facecycle.errors import OutputError
from facecycle_cli import main as cli_main

from .conftest import ROOT, one_error_line, real_frames, shared_video, write_video

CLIP = "pyfeat_single_face.mp4"  # 72 frames
N = 120  # frames of the first run's MPEG-TS
HOST = socket.gethostname()

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32",
                                reason="output locks use flock (POSIX); on Windows nothing is locked")


@pytest.fixture(scope="module")
def ts_bytes(tmp_path_factory) -> bytes:
    """An MPEG-TS of N frames of a real face clip (there and back), 320x180."""
    shared_video(CLIP)  # skips where ../shared is absent
    frames = real_frames(N // 2)
    return write_video(tmp_path_factory.mktemp("ts") / "src.ts", frames + frames[::-1], fmt="mpegts").read_bytes()


@pytest.fixture
def clip(tmp_path) -> Path:
    """The short real clip, named ``stdin.mp4``: its outputs are those of ``process -`` (``stdin.*``)."""
    p = tmp_path / "clips" / "stdin.mp4"
    p.parent.mkdir()
    shutil.copy(shared_video(CLIP), p)
    return p


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _rows(csv: Path) -> int:
    try:
        return max(0, csv.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return -1


def _frames(csv: Path) -> List[int]:
    text = csv.read_text()
    assert text.endswith("\n"), "last line is incomplete"
    return sorted({int(line.split(",", 1)[0]) for line in text.splitlines()[1:]})


def _hidden(folder: Path) -> List[str]:
    """Lock files and set-aside files left in ``folder`` (a run's own temporary names aside)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".lock", ".replaced")))


class _Held:
    """A first run, a subprocess reading a pipe (its stdin, or a named pipe) fed half of ``ts``: it writes the
    rows of those frames and then waits, its outputs open, until :meth:`finish` feeds the rest."""

    def __init__(self, argv: List[str], ts: bytes, log: Path, fifo: Optional[Path] = None) -> None:
        self.ts, self.log = ts, log
        self._err = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "facecycle", *argv],
                                     stdin=subprocess.DEVNULL if fifo else subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=self._err, cwd=str(ROOT), env=_env())
        self.pid = self.proc.pid
        self.feed: IO[bytes] = self._open_fifo(fifo) if fifo else self.proc.stdin  # type: ignore[assignment]
        self.feed.write(ts[: len(ts) // 2])
        self.feed.flush()

    def _open_fifo(self, fifo: Path, timeout: float = 90.0) -> IO[bytes]:
        """The named pipe's writing end, once the run has opened it to read (never blocks for ever)."""
        t = time.monotonic()
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                assert self.proc.poll() is None, f"the first run ended: {self.log.read_text()}"
                assert time.monotonic() - t < timeout, "the first run never opened its named pipe"
                time.sleep(0.05)
                continue
            os.set_blocking(fd, True)
            return os.fdopen(fd, "wb")

    def wait_rows(self, csv: Path, timeout: float = 90.0) -> None:
        """Until the run has written rows to ``csv`` (its outputs are open, its first frame written)."""
        t = time.monotonic()
        while _rows(csv) < 1:
            assert self.proc.poll() is None, f"the first run ended: {self.log.read_text()}"
            assert time.monotonic() - t < timeout, "the first run wrote no row"
            time.sleep(0.05)

    def finish(self, timeout: float = 120.0) -> int:
        """Feed the rest and let the run end; its exit code."""
        self.feed.write(self.ts[len(self.ts) // 2:])
        self.feed.close()
        return self.wait(timeout)

    def wait(self, timeout: float = 120.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._err.close()

    def stop(self) -> None:
        """Kill it where a test failed on the way (never left running)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.feed, self._err):
            try:
                f.close()
            except OSError:
                pass


def _cli(capfd, *argv) -> tuple:
    """``facecycle ARGV`` in this process: (exit code, stderr)."""
    capfd.readouterr()
    rc = cli_main([str(a) for a in argv])
    return rc, capfd.readouterr().err


# ------------------------------------------------------------------------------------------ the shared lock
def test_lock_file_names_its_holder_and_a_killed_holders_file_is_taken(tmp_path):
    """The one lock helper (``batch``'s input lock moved to facecycle.files): Busy carries the holder's JSON; a lock
    file left by a process killed with SIGKILL is simply taken (the OS released its flock); release removes it."""
    from facecycle.files import Busy, lock_file, lock_name, unlock_file

    out = tmp_path / "clip.csv"
    lock = lock_name(out)
    assert lock == tmp_path / ".clip.csv.lock"
    holder = ("import sys, time\n"
              "from facecycle.files import lock_file\n"
              "lock_file(sys.argv[1], {'output': 'clip.csv'})\n"
              "print('locked', flush=True)\n"
              "time.sleep(120)\n")
    other = subprocess.Popen([sys.executable, "-c", holder, str(lock)], stdout=subprocess.PIPE, text=True,
                             cwd=str(ROOT), env=_env())
    try:
        assert other.stdout.readline().strip() == "locked"
        with pytest.raises(Busy) as b:
            lock_file(lock, {"output": "mine"})
        assert b.value.holder["pid"] == other.pid and b.value.holder["output"] == "clip.csv"
        assert b.value.who == f"host {HOST}, pid {other.pid}"
    finally:
        other.kill()  # SIGKILL: no clean-up; the lock file stays
        other.wait()
    assert lock.is_file()
    fd = lock_file(lock, {"output": "mine"})
    assert fd is not None and json.loads(lock.read_text())["pid"] == os.getpid()
    with pytest.raises(Busy):  # another open of the file, in this process too: one writer per output
        lock_file(lock, {})
    unlock_file(lock, fd)
    assert not lock.exists()


def test_a_file_system_without_locks_leaves_outputs_unlocked(tmp_path, monkeypatch):
    """Where flock fails with ENOLCK (an NFS v3 mount without its lock daemon), nothing is locked, as on Windows,
    and no lock file is left: the run goes on (it was an internal error for every input of a batch)."""
    import fcntl

    from facecycle.files import lock_file

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert lock_file(tmp_path / ".x.csv.lock", {}) is None
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ process, live, app
def test_a_second_run_on_the_files_a_run_writes_is_refused_and_locks_go_with_the_run(tmp_path):
    """The Python API (what the app's Record and Export CSV open too): a run given a CSV or a recording that another
    run is writing is refused before it sets anything aside (it used to move the first run's CSV aside and delete
    it at its first frame); the first run ends complete. A run that fails, or is closed mid-way, releases its
    locks: nothing is left that blocks the next run."""
    shared_video(CLIP)
    from realtime.analyzer import Analyzer
    from realtime.outputs import RunOutputs

    frames = real_frames(20)
    out = tmp_path / "out"
    an = Analyzer(threads=1)
    first = an.process_video(iter(frames), csv=out / "x.csv", video=out / "x.mp4")
    rows = iter(first)
    next(rows)
    other = Analyzer(threads=1)  # (one run at a time per Analyzer)
    for kw in ({"csv": out / "x.csv"}, {"csv": out / "y.csv", "video": out / "x.mp4"}):
        with pytest.raises(OutputError) as e:
            other.process_video(iter(frames), overwrite=True, **kw)
        held = kw.get("video") or kw["csv"]
        assert str(e.value) == (f"{held}: being written by another run (host {HOST}, pid {os.getpid()}); wait for it "
                                "to end, or write elsewhere (a Run of this process: read it to its end or call its "
                                "close())")
    assert not (out / "y.csv").exists()  # refused for its recording before its CSV was made
    outs = RunOutputs(an.code_dim, fps=25.0, overwrite=True)  # the app switching its recording on
    with pytest.raises(OutputError, match="x.mp4: being written by another run"):
        outs.open_video(out / "x.mp4")
    outs.close()
    for _ in rows:
        pass
    assert _frames(out / "x.csv") == list(range(20))
    assert json.loads((out / "x.json").read_text())["status"] == "complete"
    assert _hidden(out) == []

    def failing():
        yield from frames[:5]
        raise RuntimeError("the camera went away")

    with pytest.raises(Exception, match="camera went away"):
        an.process_video(failing(), csv=out / "x.csv", video=out / "x.mp4", overwrite=True).run()
    assert _hidden(out) == []
    run = an.process_video(iter(frames), csv=out / "x.csv", video=out / "x.mp4", overwrite=True)
    next(iter(run))
    run.close()  # stopped mid-way
    assert _hidden(out) == [] and json.loads((out / "x.json").read_text())["status"] == "stopped"
    an.process_video(iter(frames), csv=out / "x.csv", overwrite=True).run()
    assert _frames(out / "x.csv") == list(range(20)) and _hidden(out) == []
    an.close()
    other.close()


def test_two_overwrite_runs_on_one_output_name(tmp_path, ts_bytes, clip, capfd):
    """The probe's `process --overwrite` twice at once (and `live --csv/--record --overwrite`): the second is
    refused at once, exit 4, one line naming the output and the run writing it; the first ends with every row and
    its own sidecar (it used to keep writing into a deleted file, both exiting 0)."""
    out = tmp_path / "out"
    a = _Held(["process", "-", "--out-dir", out, "--no-progress", "--threads", "1"], ts_bytes, tmp_path / "A.log")
    try:
        a.wait_rows(out / "stdin.csv")
        rc, err = _cli(capfd, "process", clip, "--out-dir", out, "--overwrite", "--no-progress", "--no-video",
                       "--threads", "1")
        assert rc == 4, err
        assert one_error_line(err) == (f"facecycle: error: {out / 'stdin.csv'}: being written by another run "
                                       f"(host {HOST}, pid {a.pid}); wait for it to end, or write elsewhere")
        rc, err = _cli(capfd, "live", "--input", clip, "--no-window", "--csv", tmp_path / "other.csv", "--record",
                       out / "stdin.annotated.mp4", "--overwrite", "--max-frames", "5", "--threads", "1")
        assert rc == 4, err
        assert f"{out / 'stdin.annotated.mp4'}: being written by another run (host {HOST}, pid {a.pid})" in \
            one_error_line(err)
        assert not (tmp_path / "other.csv").exists()  # refused before any of its outputs was made
        assert a.finish() == 0, a.log.read_text()
    finally:
        a.stop()
    assert _frames(out / "stdin.csv") == list(range(N))
    side = json.loads((out / "stdin.json").read_text())
    assert side["status"] == "complete" and side["frames"] == N and side["rows"] == N
    assert side["input"]["name"] == "/dev/stdin"
    assert _hidden(out) == []  # every lock released (its file removed)


def test_a_killed_or_stopped_run_leaves_nothing_that_blocks_the_next(tmp_path, ts_bytes, clip, capfd):
    """SIGKILL: the OS releases the lock; its file stays and the next run simply takes it (and removes it at its
    end). SIGTERM: the run closes its outputs and releases its locks (exit 143)."""
    for sig, code in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 128 + signal.SIGTERM)):
        out = tmp_path / f"out-{sig.name}"
        a = _Held(["process", "-", "--out-dir", out, "--no-progress", "--threads", "1"], ts_bytes,
                  tmp_path / f"{sig.name}.log")
        try:
            a.wait_rows(out / "stdin.csv")
            a.proc.send_signal(sig)
            assert a.wait() == code, a.log.read_text()
        finally:
            a.stop()
        left = _hidden(out)
        assert left == ([".stdin.annotated.mp4.lock", ".stdin.csv.lock", ".stdin.json.lock"]
                        if sig == signal.SIGKILL else []), left
        rc, err = _cli(capfd, "process", clip, "--out-dir", out, "--overwrite", "--no-progress", "--threads", "1")
        assert rc == 0, err
        assert json.loads((out / "stdin.json").read_text())["status"] == "complete"
        assert _hidden(out) == []


# ------------------------------------------------------------------------------------------ --parquet
def test_process_parquet_of_a_running_process_is_refused_at_start(tmp_path, ts_bytes, clip, capfd):
    """Two `process --parquet SAME` (no --overwrite): the second replaced the first's dataset at its end, both
    exiting 0. Now the path is locked from the start of a run to the end of its write: the second is refused
    before it reads anything."""
    pytest.importorskip("pyarrow")
    import pandas as pd

    pq = tmp_path / "same.parquet"
    a = _Held(["process", "-", "--out-dir", tmp_path / "outA", "--no-video", "--no-progress", "--threads", "1",
               "--parquet", pq], ts_bytes, tmp_path / "A.log")
    try:
        a.wait_rows(tmp_path / "outA" / "stdin.csv")
        rc, err = _cli(capfd, "process", clip, "--out-dir", tmp_path / "outB", "--no-video", "--no-progress",
                       "--threads", "1", "--parquet", pq)
        assert rc == 4, err
        assert one_error_line(err) == (f"facecycle: error: {pq}: being written by another run (facecycle process, "
                                       f"host {HOST}, pid {a.pid}); wait for it to end, or give another --parquet "
                                       "path")
        assert not (tmp_path / "outB").exists()  # refused at its start
        assert a.finish() == 0, a.log.read_text()
    finally:
        a.stop()
    d = pd.read_parquet(pq)
    assert len(d) == N and d.video.unique().tolist() == ["/dev/stdin"]
    assert not (tmp_path / ".same.parquet.lock").exists()


def test_process_parquet_made_while_the_run_went_is_not_replaced(tmp_path, clip, capfd, monkeypatch):
    """A path that did not exist at the start is checked again before the write (without --overwrite): something
    made it meanwhile (another program; facecycle runs are kept out by the lock): not replaced, exit 4."""
    pytest.importorskip("pyarrow")
    import facecycle_cli.process_cmd as pc

    pq = tmp_path / "made.parquet"
    run_one = pc._process_one

    def and_meanwhile(*args, **kwargs):
        code = run_one(*args, **kwargs)
        pq.write_bytes(b"PAR1 another program's dataset")
        return code

    monkeypatch.setattr(pc, "_process_one", and_meanwhile)
    rc, err = _cli(capfd, "process", clip, "--out-dir", tmp_path / "out", "--no-video", "--no-progress",
                   "--threads", "1", "--max-frames", "5", "--parquet", pq)
    assert rc == 4, err
    assert one_error_line(err) == (f"facecycle: error: {pq}: made by another program while this run went; not "
                                   "replaced (the CSVs are written; use --overwrite to replace it, or give another "
                                   "--parquet path)")
    assert pq.read_bytes() == b"PAR1 another program's dataset"
    assert _rows(tmp_path / "out" / "stdin.csv") == 5
    assert not (tmp_path / ".made.parquet.lock").exists()


def test_two_batches_with_one_parquet_the_second_is_refused(tmp_path, ts_bytes, clip, capfd):
    """Two batches given one --parquet each wrote a dataset of its own inputs only (the last one's, half the corpus,
    with rows_expected looking complete). The path is locked for the batch's duration: the second is refused at
    its start. Batches on one --out-dir with their own --parquet still share the work as before."""
    pytest.importorskip("pyarrow")
    import pandas as pd

    (tmp_path / "in").mkdir()
    fifo = tmp_path / "in" / "live.ts"
    os.mkfifo(fifo)
    out, pq = tmp_path / "out", tmp_path / "all.parquet"
    common = ["--out-dir", out, "--cluster", "none", "--no-video", "--no-progress", "--threads-per-worker", "1"]
    a = _Held(["batch", fifo, *common, "--parquet", pq, "--summary", tmp_path / "A.json"], ts_bytes,
              tmp_path / "A.log", fifo=fifo)
    try:
        work = out / ".facecycle-partial" / "live"
        t = time.monotonic()
        while not any(_rows(c) > 0 for c in work.glob("*/live.csv")):
            assert a.proc.poll() is None and time.monotonic() - t < 90, a.log.read_text()
            time.sleep(0.05)
        rc, err = _cli(capfd, "batch", clip, *common, "--parquet", pq, "--summary", tmp_path / "B.json")
        assert rc == 4, err
        assert one_error_line(err) == (f"facecycle: error: {pq}: being written by another run (facecycle batch, "
                                       f"host {HOST}, pid {a.pid}); give each batch its own --parquet "
                                       "(docs/batch.md)")
        assert not (tmp_path / "B.json").exists() and not (out / "stdin.csv").exists()
        # the same --out-dir with a --parquet of its own: not refused, as before
        rc, err = _cli(capfd, "batch", clip, *common, "--parquet", tmp_path / "own.parquet", "--summary",
                       tmp_path / "C.json")
        assert rc == 0, err
        assert len(pd.read_parquet(tmp_path / "own.parquet")) == 72
        assert a.finish() == 0, a.log.read_text()
    finally:
        a.stop()
    summary = json.loads((tmp_path / "A.json").read_text())
    assert summary["counts"]["done"] == 1 and summary["parquet"]["rows"] == summary["parquet"]["rows_expected"] == N
    assert len(pd.read_parquet(pq)) == N
    assert not (tmp_path / ".all.parquet.lock").exists()


def test_two_runs_writing_a_device_are_not_refused(tmp_path):
    """A review's finding: the output locks took /dev/null for a file (its lock made in /dev as root), so two runs
    writing their CSV to /dev/null at once were refused. A device or a pipe is never locked."""
    import os

    from realtime.outputs import RunOutputs

    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null")
    a = RunOutputs(code_dim=4, overwrite=True)
    b = RunOutputs(code_dim=4, overwrite=True)
    try:
        a.open_csv("/dev/null", sidecar=tmp_path / "a.json")
        b.open_csv("/dev/null", sidecar=tmp_path / "b.json")  # refused before the mend
        assert not os.path.exists("/dev/.null.lock")
    finally:
        a.close("stopped")
        b.close("stopped")
