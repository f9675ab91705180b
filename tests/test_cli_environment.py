"""The command line in a hostile environment: stderr closed, full or a pipe whose reader left; SIGHUP (the terminal
closed) and SIGXCPU (a CPU-time limit); a ``--parquet`` path that exists; the batch's end line.

Each test runs ``facecycle`` in a subprocess (``python -m facecycle``) on a small synthetic clip with the tiny model.
The outputs matter more than the messages: a run whose messages cannot be written completes its outputs and exits
with its own code, and a signal leaves the outputs closed (CSV complete, video playable, sidecar ``interrupted``).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Callable, List, Tuple

import pytest

from facecycle_cli import main as cli_main

from .conftest import ROOT, decode_count, frames_of, read_csv, real_frames, write_video
from .test_reliability_signals import _data_lines, _wait

SHORT = 12  # frames of the short clip
LONG = 960  # frames of the long clip: long enough for a signal mid-run


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("env") / "short.mp4", real_frames(SHORT, size=(160, 96)))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    frames = real_frames(60, size=(160, 96))
    return write_video(tmp_path_factory.mktemp("envlong") / "long.mkv", (frames + frames[::-1]) * (LONG // 120))


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "facecycle", *args]


def _close_fd2() -> None:  # in the child, before exec: as `2>&-` in a shell
    os.close(2)


def _run_with_stderr(kind: str, args: List[str], timeout: float = 120.0) -> int:
    """Run the CLI with its stderr ``closed`` (``2>&-``), ``full`` (``2>/dev/full``) or ``pipe`` (a pipe whose
    reader closed it at once, as ``2>&1 | head -c 50`` does after 50 bytes); returns the exit code."""
    if kind == "closed":
        r = subprocess.run(_cmd(*args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, preexec_fn=_close_fd2,
                           timeout=timeout)
        return r.returncode
    if kind == "full":
        with open("/dev/full", "w") as full:
            return subprocess.run(_cmd(*args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=full,
                                  timeout=timeout).returncode
    proc = subprocess.Popen(_cmd(*args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc.stderr.close()  # the reader is gone: every write to stderr fails (EPIPE)
    return proc.wait(timeout=timeout)


def _check_complete(out: Path, stem: str, code_dim: int, frames: int, video: bool = True) -> None:
    rows = read_csv(out / f"{stem}.csv", code_dim)
    assert frames_of(rows) == list(range(frames))
    side = json.loads((out / f"{stem}.json").read_text())
    assert side["status"] == "complete" and not side.get("error"), side.get("error")
    if video:
        assert decode_count(out / f"{stem}.annotated.mp4") == frames


# ------------------------------------------------------------------------------------ finding 2: stderr
@pytest.mark.parametrize("progress", [True, False])
@pytest.mark.parametrize("kind", ["closed", "full", "pipe"])
def test_process_completes_when_stderr_cannot_be_written(model, code_dim, short_clip, tmp_path, kind, progress):
    """With stderr closed the progress bar's first draw raised AttributeError (exit 1, header-only CSV, no video,
    sidecar ``stopped``); with /dev/full or a gone reader, BrokenPipeError / OSError did the same, and with
    --no-progress the outputs were complete but the last line failed the command (exit 1)."""
    out = tmp_path / "out"
    args = ["process", str(short_clip), "--model", str(model), "--out-dir", str(out)]
    rc = _run_with_stderr(kind, args + ([] if progress else ["--no-progress"]))
    assert rc == 0
    _check_complete(out, "short", code_dim, SHORT)


def test_batch_completes_when_stderr_is_closed(model, short_clip, tmp_path):
    """``facecycle batch ... 2>&-`` processed nothing, wrote no batch.json and exited 1."""
    out = tmp_path / "out"
    rc = _run_with_stderr("closed", ["batch", str(short_clip), "--model", str(model), "--out-dir", str(out),
                                     "--cluster", "none", "--no-video"])
    assert rc == 0
    rec = json.loads((out / "batch.json").read_text())
    assert rec["exit_code"] == 0 and [e["status"] for e in rec["inputs"]] == ["done"]
    assert _data_lines(out / "short.csv") >= SHORT


def test_batch_no_progress_exits_0_when_stderr_is_a_gone_pipe(model, short_clip, tmp_path):
    """With --no-progress every output was written but the end line raised BrokenPipeError: exit 1."""
    out = tmp_path / "out"
    rc = _run_with_stderr("pipe", ["batch", str(short_clip), "--model", str(model), "--out-dir", str(out),
                                   "--cluster", "none", "--no-video", "--no-progress"])
    assert rc == 0
    assert json.loads((out / "batch.json").read_text())["exit_code"] == 0


def test_no_progress_redraws_in_a_log_file(model, short_clip, tmp_path):
    """stderr a file or a pipe (``2> run.log``, a job scheduler's log): the bar's carriage-return redraws went into
    it. It is drawn on a terminal only; the end line is still there."""
    out = tmp_path / "out"
    r = subprocess.run(_cmd("process", str(short_clip), "--model", str(model), "--out-dir", str(out)), cwd=ROOT,
                       env=_env(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert b"\r" not in r.stderr, r.stderr
    assert b"short.mp4: 12 frames" in r.stderr, r.stderr


def test_a_closed_stderr_never_lends_its_descriptor_to_an_output(model, long_clip, tmp_path):
    """With descriptor 2 closed the first file opened (the CSV) got descriptor 2, where libraries (FFmpeg, ONNX
    Runtime) write their messages: a closed descriptor 0-2 gets /dev/null first."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc")
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd("process", str(long_clip), "--model", str(model), "--out-dir", str(out),
                                 "--no-progress"), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            preexec_fn=_close_fd2)
    try:
        assert _wait(lambda: _data_lines(out / "long.csv") >= 5, proc), "the run ended early"
        target = os.readlink(f"/proc/{proc.pid}/fd/2")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert target == os.devnull, target
    assert rc == 143


# ------------------------------------------------------------------------------- finding 1: SIGHUP, SIGXCPU
def _pty_stderr():
    """A pseudo-terminal (80 columns) for the child's stderr, so that the progress bar is drawn: (master, slave)."""
    import pty

    m, s = pty.openpty()
    fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    return m, s


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGXCPU])
def test_sighup_and_sigxcpu_close_the_outputs(model, code_dim, long_clip, tmp_path, sig):
    """SIGHUP (the terminal closed; here the terminal is gone before the signal, so the last lines cannot be
    written) and SIGXCPU (``ulimit -t``) killed the run with their default action: exit 129 / 152 without a word,
    the sidecar ``running`` with 0 frames, the annotated video without its index. They end it as SIGTERM does."""
    out = tmp_path / "out"
    master, slave = _pty_stderr()
    proc = subprocess.Popen(_cmd("process", str(long_clip), "--model", str(model), "--out-dir", str(out)),
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    try:
        import threading

        drain = threading.Thread(target=_drain, args=(master,), daemon=True)
        drain.start()
        assert _wait(lambda: _data_lines(out / "long.csv") >= 10, proc), "the run ended before the signal"
        if sig == signal.SIGHUP:
            os.close(master)  # the terminal is gone: every write to stderr fails from now on
            master = -1
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master >= 0:
            os.close(master)
    assert rc == 128 + sig
    frames = frames_of(read_csv(out / "long.csv", code_dim))
    assert frames == list(range(len(frames))) and 10 <= len(frames) < LONG
    side = json.loads((out / "long.json").read_text())
    assert side["status"] == "interrupted" and side["frames"] == len(frames)
    assert decode_count(out / "long.annotated.mp4") == len(frames)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def _signal_mid_run(args: List[str], sig: int, rows_at: Callable[[], int], preexec=None) -> Tuple[int, str]:
    """Run ``facecycle ARGS`` (stderr captured), send ``sig`` once ``rows_at()`` counts 5 rows (failing where the
    run ended first) and wait for it: (exit code, stderr)."""
    proc = subprocess.Popen(_cmd(*args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec)
    try:
        assert _wait(lambda: rows_at() >= 5, proc), "the run ended before the signal"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigterm_message_names_the_signal(model, long_clip, tmp_path):
    """The last line says which signal stopped the run (SIGXCPU: the CPU time limit)."""
    out = tmp_path / "out"
    rc, err = _signal_mid_run(["process", str(long_clip), "--model", str(model), "--out-dir", str(out),
                               "--no-progress", "--no-video"], signal.SIGXCPU, lambda: _data_lines(out / "long.csv"))
    assert rc == 152 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("facecycle: terminated by SIGXCPU"), err


def test_sighup_ignored_by_nohup_stays_ignored(model, code_dim, long_clip, tmp_path):
    """Under ``nohup`` (SIGHUP ignored) the run goes on to the end when the terminal closes (a guard: the handler
    must not replace an ignored SIGHUP). The signal is sent mid-run (the long clip: a run that ended first used to
    let the test pass without sending it)."""
    out = tmp_path / "out"

    def ignore_hup() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    rc, err = _signal_mid_run(["process", str(long_clip), "--model", str(model), "--out-dir", str(out),
                               "--no-progress", "--no-video"], signal.SIGHUP, lambda: _data_lines(out / "long.csv"),
                              preexec=ignore_hup)
    assert rc == 0, err
    side = json.loads((out / "long.json").read_text())
    assert side["status"] == "complete" and side["frames"] == LONG
    assert frames_of(read_csv(out / "long.csv", code_dim)) == list(range(LONG))


def test_sighup_stops_a_batch_cleanly(model, long_clip, tmp_path):
    """SIGHUP killed a batch: no batch.json and a stale ``.facecycle-partial`` lock. Now as SIGTERM: batch.json
    written (exit_code 129, the input ``interrupted``), the work folder removed, exit 129."""
    out = tmp_path / "out"
    rc, err = _signal_mid_run(["batch", str(long_clip), "--model", str(model), "--out-dir", str(out), "--cluster",
                               "none", "--no-video", "--no-progress"], signal.SIGHUP,
                              lambda: max([_data_lines(p) for p in out.glob(".facecycle-partial/*/*/long.csv")]
                                          or [-1]))
    assert rc == 129 and "Traceback" not in err, err
    rec = json.loads((out / "batch.json").read_text())
    assert rec["exit_code"] == 129 and rec["inputs"][0]["status"] == "interrupted"
    assert not list(out.rglob(".facecycle-partial")), list(out.rglob("*"))
    assert "1 cancelled" in err and "terminated by SIGHUP" in err, err


# ------------------------------------------------------------------------------ finding 3: --parquet exists
def test_process_parquet_refuses_an_existing_file_without_overwrite(model, short_clip, tmp_path):
    """``process --parquet PATH`` replaced an existing file at PATH without --overwrite (a text file named .parquet
    too), where the CSV, video and sidecar refuse (exit 4). Refused before any frame is read."""
    pytest.importorskip("pyarrow")
    old = tmp_path / "old.parquet"
    old.write_text("OLD\n")
    out = tmp_path / "out"
    args = ["process", str(short_clip), "--model", str(model), "--out-dir", str(out), "--no-progress", "--no-video",
            "--parquet", str(old)]
    r = subprocess.run(_cmd(*args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip() == f"facecycle: error: {old}: exists (use --overwrite to replace it)"
    assert old.read_text() == "OLD\n" and not (out / "short.csv").exists()
    r = subprocess.run(_cmd(*args, "--overwrite"), cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert old.read_bytes()[:4] == b"PAR1"


# ------------------------------------------------------------------------- finding 4: the batch's end line
def test_batch_end_line_counts_cancelled_inputs(tmp_path, capsys):
    """A model error stops the batch and cancels the other inputs: the end line said "0 processed, 0 skipped,
    1 failed" and left the cancelled input out (batch.json counted it)."""
    clips = []
    for name in ("v.mp4", "w.mp4"):
        (tmp_path / name).write_bytes(b"x")
        clips.append(str(tmp_path / name))
    bad = tmp_path / "bad_model"
    bad.mkdir()
    capsys.readouterr()
    assert cli_main(["batch", *clips, "--out-dir", str(tmp_path / "o"), "--model", str(bad), "--cluster", "none",
                     "--no-progress"]) == 5
    err = capsys.readouterr().err
    end = [ln for ln in err.splitlines() if ln.startswith("facecycle batch: ") and " processed" in ln]
    assert len(end) == 1 and ", 1 cancelled" in end[0], err


def test_process_refuses_two_inputs_whose_names_differ_only_in_case(tmp_path, capsys, monkeypatch):
    """Portability review: `Clip.mp4` and `clip.mov` write `Clip.csv` and `clip.csv`, one file on macOS and
    Windows, where the second input's outputs replaced the first's: refused before any work there (stood in for
    here; on Linux they are two files)."""
    import facecycle_cli.process_cmd
    from facecycle_cli import main

    monkeypatch.setattr(facecycle_cli.process_cmd, "names_caseless", lambda folder: True)

    from .conftest import real_frames, write_video

    a = write_video(tmp_path / "Clip.mp4", real_frames(2), rate=25)
    b = write_video(tmp_path / "clip.mov", real_frames(2), rate=25)
    assert main(["process", str(a), str(b), "--out-dir", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "would write the same outputs" in err and "without case" in err, err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_repeated_sigxcpu_does_not_interrupt_the_clean_up(monkeypatch):
    """A review's finding: past a soft CPU-time limit the kernel sends SIGXCPU again every CPU-second, and each one
    raised SystemExit, so the second broke off the clean-up the first had started (batch.json, the video's index).
    A repeat is let pass, by the command line's handler and by the batch driver's."""
    from facecycle_cli import sigterm
    from realtime.batch.runner import _SigtermSeen

    monkeypatch.setattr(sigterm, "_received", None)
    with pytest.raises(SystemExit) as first:
        sigterm._on_sigterm(signal.SIGXCPU, None)
    assert first.value.code == 152
    sigterm._on_sigterm(signal.SIGXCPU, None)  # the repeat: nothing raised
    with pytest.raises(SystemExit):  # another signal still ends it
        sigterm._on_sigterm(signal.SIGTERM, None)
    seen = _SigtermSeen()
    old = signal.getsignal(signal.SIGXCPU)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # the driver's own: it raises (the CLI's, if installed, would too)
    seen.watch()
    try:
        handler = signal.getsignal(signal.SIGXCPU)
        with pytest.raises(SystemExit):
            handler(signal.SIGXCPU, None)
        handler(signal.SIGXCPU, None)
        assert seen.code == 152
        seen.unwatch()  # from Python (the default action found): repeats are ignored for the clean-up still to come
        assert signal.getsignal(signal.SIGXCPU) == signal.SIG_IGN
    finally:
        seen.unwatch()
        signal.signal(signal.SIGXCPU, old)


def test_a_full_non_blocking_stderr_loses_a_message_not_the_rest():
    """A review's finding: a write that would block (a non-blocking terminal or pipe, full for now) made SafeStream
    drop every later message and point descriptor 2 at /dev/null, so the run's one-line error could vanish. Only
    that write is lost now."""
    from facecycle_cli.stderr import SafeStream

    class Busy:
        def __init__(self) -> None:
            self.got, self.block = [], True

        def write(self, s: str) -> int:
            if self.block:
                self.block = False
                raise BlockingIOError(11, "Resource temporarily unavailable")
            self.got.append(s)
            return len(s)

        def flush(self) -> None:
            pass

    busy = Busy()
    safe = SafeStream(busy)  # type: ignore[arg-type]
    safe.write("progress\n")
    safe.write("facecycle: error: the last line\n")
    assert not safe.failed and busy.got == ["facecycle: error: the last line\n"]
