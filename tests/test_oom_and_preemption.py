"""Out of memory while the annotated video is written, and a batch stopped mid-run (a probe's findings F3, F5).

F3: under ``ulimit -v 2G`` a 1080p ``process`` failed in the video's frame conversion with "internal error:
MemoryError", exit 1; a ``batch`` printed a 30-line traceback for its first input, and its next input's encoder
failed to open ("video write failed ... avcodec_open2 libx264"), exit 4. Each is now out of memory (exit 7, one
line), made here by making the conversion or the encoder fail as they failed there.

F5: batch.json was written only after the executor was cancelled and shut down, so a SIGTERM to every process of
a Ray batch (as Slurm sends it), or a SIGKILL after the grace time, left none. It is now written while the batch
goes (after inputs finish) and at once when the stop signal comes, before the executor is cancelled.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
from pathlib import Path
from typing import List, Optional

import av
import pytest

from facecycle_cli import main

from .conftest import one_error_line, real_frames, write_video

ENOMEM = av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory")
#: the encoder's open failing so (PyAV opens it at the first encode, and names the call)
OPEN_ENOMEM = av.error.MemoryError(errno.ENOMEM, "Cannot allocate memory", 'avcodec_open2("libx264", {})')
#: what libx264 that could not allocate says at its open, and at a frame (nothing of memory): under ulimit -v 1.6G
#: and 1.7G a 1080p batch's first input failed so
EXTERNAL_OPEN = av.error.ExternalError(542398533, "Generic error in an external library",
                                       'avcodec_open2("libx264", {\'preset\': \'superfast\', \'crf\': \'23\'})')
EXTERNAL_FRAME = av.error.ExternalError(542398533, "Generic error in an external library", "avcodec_send_frame()")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> List[Path]:
    """Three tiny clips (6 frames each) in one folder."""
    d = tmp_path_factory.mktemp("clips")
    frames = real_frames(6, size=(160, 96))
    return [write_video(d / f"c{i}.mp4", frames) for i in range(3)]


@pytest.fixture
def cli(model, tmp_path, capfd, caplog):
    """``facecycle CMD ARGS --model tiny --no-progress [--out-dir tmp/out]`` in-process: (rc, stderr); asserts that
    nothing was logged with a traceback at the default level (the CLI's handler is pytest's here)."""

    def run(*args: object, cmd: str = "process", out: Optional[Path] = None):
        argv = [cmd, *map(str, args), "--model", str(model), "--no-progress",
                "--out-dir", str(out if out is not None else tmp_path / "out")]
        capfd.readouterr()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            rc = main(argv)
        err = capfd.readouterr()[1]
        traced = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
        assert not traced, traced[0].getMessage()
        return rc, err

    return run


class _AvWith:
    """The sink's ``av`` with ``VideoFrame.from_ndarray`` failing for the video's BGR frames (as under ``ulimit
    -v``: ``copy_array_to_plane`` raised MemoryError, the frame's allocation av.error.MemoryError)."""

    def __init__(self, error: BaseException) -> None:
        real = av.VideoFrame

        class VideoFrame:
            @staticmethod
            def from_ndarray(array, format="rgb24", **kw):
                if format == "bgr24":
                    raise error
                return real.from_ndarray(array, format=format, **kw)

        self.VideoFrame = VideoFrame

    def __getattr__(self, name):
        return getattr(av, name)


class _FailingStream:
    """A video stream whose first encode (the encoder's open) fails with ``error``."""

    def __init__(self, stream, error: BaseException) -> None:
        self._s, self._error = stream, error

    def encode(self, frame=None):
        raise self._error

    def __getattr__(self, name):
        return getattr(self._s, name)


def _encoder_fails(monkeypatch, error: BaseException) -> None:
    from realtime.sinks.video_sink import VideoSink

    opened = VideoSink._open_streams

    def open_streams(self, width, height):
        opened(self, width, height)
        self._stream = _FailingStream(self._stream, error)

    monkeypatch.setattr(VideoSink, "_open_streams", open_streams)


# ------------------------------------------------------------------------------ F3: process
@pytest.mark.parametrize("error", [MemoryError(), ENOMEM], ids=["MemoryError", "av.error.MemoryError"])
def test_out_of_memory_converting_a_frame_is_exit_7(cli, clips, monkeypatch, error):
    import realtime.sinks.video_sink as video_sink

    monkeypatch.setattr(video_sink, "av", _AvWith(error))
    rc, err = cli(clips[0])
    assert rc == 7, err
    line = one_error_line(err)
    assert "out of memory while converting frame 0 for the video" in line and "internal error" not in err, err


@pytest.mark.parametrize("error, what", [(OPEN_ENOMEM, "opening the video encoder libx264"),
                                         (ENOMEM, "encoding the video"), (MemoryError(), "encoding the video")],
                         ids=["open-ENOMEM", "ENOMEM", "MemoryError"])
def test_the_encoder_failing_for_memory_is_exit_7(cli, clips, monkeypatch, error, what):
    _encoder_fails(monkeypatch, error)
    rc, err = cli(clips[0])
    assert rc == 7, err
    assert f"out of memory while {what} for " in one_error_line(err), err


@pytest.mark.parametrize("error, what", [(EXTERNAL_OPEN, "opening the video encoder libx264"),
                                         (EXTERNAL_FRAME, "encoding the video")], ids=["open", "frame"])
def test_libx264s_generic_error_is_memory_only_where_memory_is_short(cli, clips, monkeypatch, tmp_path, error, what):
    """libx264 that cannot allocate says "Generic error in an external library" and nothing more: out of memory
    where the address space for an encoder of this size cannot be had, else an output error as before."""
    import realtime.sinks.video_sink as video_sink

    _encoder_fails(monkeypatch, error)
    monkeypatch.setattr(video_sink, "_can_map", lambda n: False)
    rc, err = cli(clips[0])
    assert rc == 7, err
    assert f"out of memory while {what} for " in one_error_line(err), err
    monkeypatch.setattr(video_sink, "_can_map", lambda n: True)
    rc, err = cli(clips[0], out=tmp_path / "out2")
    assert rc == 4, err
    assert "video write failed" in one_error_line(err), err


def test_can_map_asks_the_address_space():
    import resource
    import subprocess
    import sys

    from realtime.sinks.video_sink import _can_map

    assert _can_map(1 << 20)
    code = ("import resource, sys\n"
            "from realtime.sinks.video_sink import _can_map\n"
            "vm = [ln for ln in open('/proc/self/status') if ln.startswith('VmSize')][0].split()[1]\n"
            "resource.setrlimit(resource.RLIMIT_AS, (int(vm) * 1024 + (64 << 20), resource.RLIM_INFINITY))\n"
            "sys.exit(0 if (_can_map(16 << 20), _can_map(256 << 20)) == (True, False) else 1)\n")
    if not Path("/proc/self/status").is_file() or resource.getrlimit(resource.RLIMIT_AS)[1] != resource.RLIM_INFINITY:
        pytest.skip("Linux's /proc and a raisable address-space limit")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 0, r.stderr


def test_a_memory_error_anywhere_is_exit_7_one_line(cli, clips, monkeypatch):
    """The command line's last resort: a MemoryError no stage named is out of memory, not an internal error."""
    import facecycle_cli.process_cmd as process_cmd

    def boom(args):
        raise MemoryError()

    monkeypatch.setattr(process_cmd, "_process_locked", boom)
    rc, err = cli(clips[0])
    assert rc == 7, err
    line = one_error_line(err)
    assert "out of memory while running facecycle process" in line and "internal error" not in err, err


# ------------------------------------------------------------------------------ F3: batch
def test_out_of_memory_in_a_batch_is_one_line_and_stops_it(cli, clips, monkeypatch, tmp_path):
    """It was an internal error with a 30-line traceback for the input, and the batch went on to the next, whose
    encoder then failed to open (exit 4). Out of memory stops the batch (every input would fail alike), exit 7."""
    import realtime.batch.job as job
    import realtime.sinks.video_sink as video_sink

    monkeypatch.setattr(job, "address_space_limited", lambda: True)  # (ulimit -v, h_vmem)
    monkeypatch.setattr(video_sink, "av", _AvWith(MemoryError()))
    out = tmp_path / "bout"
    rc, err = cli(*clips, "--cluster", "none", cmd="batch", out=out)
    assert rc == 7, err
    line = one_error_line(err, "facecycle batch: error:")
    assert "out of memory while converting frame 0 for the video" in line, err
    assert ".facecycle-partial" not in line and "internal error" not in err, err
    rec = json.loads((out / "batch.json").read_text())
    assert rec["exit_code"] == 7
    assert [e["status"] for e in rec["inputs"]] == ["failed", "cancelled", "cancelled"]
    assert rec["inputs"][0]["error_type"] == "OutOfMemory" and rec["inputs"][0]["exit_code"] == 7


def test_a_memory_error_no_stage_named_in_a_batch_is_one_line(cli, clips, monkeypatch, tmp_path):
    """A MemoryError from anywhere in an input's run (here its analysis) is one line, no traceback, exit 7."""
    import realtime.batch.job as job

    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(job, "address_space_limited", lambda: True)
    monkeypatch.setattr(job, "analyze_file", boom)
    out = tmp_path / "bout"
    rc, err = cli(*clips, "--cluster", "none", "--no-video", cmd="batch", out=out)
    assert rc == 7, err
    line = one_error_line(err, "facecycle batch: error:")
    assert "out of memory while processing" in line and "c0.mp4" in line and "internal error" not in err, err
    rec = json.loads((out / "batch.json").read_text())
    assert rec["inputs"][0]["error_type"] == "OutOfMemory"


def test_without_a_memory_limit_one_input_out_of_memory_fails_alone(cli, clips, monkeypatch, tmp_path):
    """Without a limit on the address space one input too large for the machine (an 8K video with its annotated
    copy) must not stop a batch of smaller ones (a review's finding): it fails, one line, and the others are done."""
    import realtime.batch.job as job

    real = job.analyze_file

    def big_first(analyzer, source, *a, **k):
        if str(source).endswith("c0.mp4"):
            raise MemoryError()
        return real(analyzer, source, *a, **k)

    monkeypatch.setattr(job, "address_space_limited", lambda: False)
    monkeypatch.setattr(job, "analyze_file", big_first)
    out = tmp_path / "bout"
    rc, err = cli(*clips, "--cluster", "none", "--no-video", cmd="batch", out=out)
    assert rc != 0 and "internal error" not in err and "Traceback" not in err, err
    rec = json.loads((out / "batch.json").read_text())
    assert [e["status"] for e in rec["inputs"]] == ["failed", "done", "done"], rec["inputs"]
    assert rec["inputs"][0]["error_type"] == "OutOfMemory" and rec["inputs"][0]["exit_code"] == 7


# ------------------------------------------------------------------------------ F5: batch.json while it goes
def _read(p: Path) -> dict:
    return json.loads(p.read_text())


@pytest.mark.parametrize("how", ["SIGTERM", "KeyboardInterrupt"])
def test_batch_json_is_written_while_the_batch_goes_and_at_the_stop(cli, clips, monkeypatch, tmp_path, how):
    """After the first input finished, batch.json lists it as done while the batch still goes; the stop signal
    rewrites it (the input in flight interrupted, the exit code) before the executor is cancelled and shut down."""
    import realtime.batch.executors as executors
    from facecycle_cli import sigterm

    monkeypatch.setattr(sigterm, "_received", None)  # (the command line's record of a signal: this test's own)
    out = tmp_path / "bout"
    summary = out / "batch.json"
    seen = {}
    real_run, real_cancel = executors.run_task, executors.LocalExecutor.cancel

    def run_task(task, *a, **k):
        if task["rel"] == "c1.mp4":  # the second input: the first is done
            seen["during"] = _read(summary)
            if how == "KeyboardInterrupt":
                raise KeyboardInterrupt
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # the batch's own handler
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler raises at the next bytecode
                pass
        return real_run(task, *a, **k)

    def cancel(self):
        seen["at_cancel"] = _read(summary)
        return real_cancel(self)

    monkeypatch.setattr(executors, "run_task", run_task)
    monkeypatch.setattr(executors.LocalExecutor, "cancel", cancel)
    rc, err = cli(*clips, "--cluster", "none", "--no-video", cmd="batch", out=out)
    code = 143 if how == "SIGTERM" else 130
    assert rc == code, err
    during = seen["during"]
    assert during["state"] == "running" and during["exit_code"] is None, during
    assert [e["status"] for e in during["inputs"]] == ["done", "pending", "pending"]  # (written before c1 went)
    assert during["counts"]["done"] == 1 and during["inputs"][0]["frames"] == 6
    at_cancel = seen["at_cancel"]  # (written by the signal's handler; for Ctrl-C where the exception arrived)
    assert "state" not in at_cancel and at_cancel["exit_code"] == code, at_cancel
    # (c2 never started: cancelled, as the end line counts it; c1 was in flight: interrupted)
    assert [e["status"] for e in at_cancel["inputs"]] == ["done", "interrupted", "cancelled"]
    final = _read(summary)
    assert "state" not in final and final["exit_code"] == code and final["finished"]
    assert [e["status"] for e in final["inputs"]] == ["done", "interrupted", "cancelled"]
    assert final["counts"]["cancelled"] == 2 and "1 processed, 0 skipped, 0 failed, 2 cancelled" in err, err
    assert (out / "c0.csv").is_file() and not (out / "c1.csv").exists()


def test_batch_json_progress_writes_are_spaced(cli, clips, monkeypatch, tmp_path):
    """Written after the first input at once, then at most every _SAVE_EVERY_S seconds (a corpus of thousands of
    short inputs must not rewrite a large batch.json after each); the end's write is the complete one."""
    import realtime.batch.runner as runner

    writes: List[dict] = []
    real = runner._write_json

    def record(path, data):
        writes.append(json.loads(json.dumps(data, default=str)))
        real(path, data)

    monkeypatch.setattr(runner, "_write_json", record)
    monkeypatch.setattr(runner, "_SAVE_EVERY_S", 3600.0)
    out = tmp_path / "bout"
    rc, err = cli(*clips, "--cluster", "none", "--no-video", cmd="batch", out=out)
    assert rc == 0, err
    assert len(writes) == 2, [w.get("state") for w in writes]
    assert writes[0]["state"] == "running" and [e["status"] for e in writes[0]["inputs"]] == ["done", "pending",
                                                                                               "pending"]
    assert "state" not in writes[1] and writes[1]["exit_code"] == 0 and writes[1]["counts"]["done"] == 3
    assert _read(out / "batch.json") == json.loads(json.dumps(writes[1]))


def test_out_of_memory_flushing_the_video_at_its_close_is_out_of_memory(tmp_path):
    """The encoder's flush at the close failing for memory: OutOfMemory (exit 7), the video said incomplete (or
    removed where it would not play), as a full disk's is (it was "writing the video failed (MemoryError)", an
    output error)."""
    from fractions import Fraction

    import numpy as np

    from facecycle.errors import OutOfMemory
    from realtime.sinks import VideoSink
    from realtime.types import FramePacket

    sink = VideoSink(tmp_path / "v.mp4", fps=25, time_base=Fraction(1, 25), preset="ultrafast")
    for i in range(3):
        sink.write(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                               image=np.full((64, 64, 3), 40 * i, np.uint8)))
    sink._stream = _FailingStream(sink._stream, MemoryError())
    with pytest.raises(OutOfMemory, match=r"out of memory while finishing the video .*v\.mp4 \(MemoryError\)") as e:
        sink.close()
    if sink.removed:
        assert "removed, it would not play" in str(e.value) and not (tmp_path / "v.mp4").exists()
    else:
        assert str(e.value).endswith("(the video is incomplete)") and (tmp_path / "v.mp4").is_file()
