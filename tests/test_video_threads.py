"""The annotated video's encoder threads: ``VideoSink(threads=N)`` and a batch worker's ``--threads-per-worker``.

libx264 (and the colour conversion before it) left to FFmpeg start about one thread per CPU the process may run on:
a Ray reservation is no affinity mask, so each one-CPU batch worker on a 64-core node started tens of them. A
worker now encodes with the CPUs it reserved; ``facecycle process`` keeps FFmpeg's choice (0).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from facecycle.errors import UsageError
from facecycle_cli import main as cli_main
from realtime.batch import BatchSettings
from realtime.sinks.video_sink import VideoSink, check_video_threads

from .conftest import ROOT, decode_count, real_frames, write_video

#: writes 12 frames with each thread count given, printing ``threads grown thread_count`` per file: the threads the
#: process gained from before the first frame (the encoder and converter open there) to the last
_COUNT_THREADS = textwrap.dedent("""
    import sys
    from fractions import Fraction

    import numpy as np
    import psutil

    from realtime.sinks.video_sink import VideoSink
    from realtime.types import FramePacket

    me = psutil.Process()
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (360, 480, 3), np.uint8) for _ in range(12)]
    for t in map(int, sys.argv[2:]):
        sink = VideoSink(f"{sys.argv[1]}/t{t}.mp4", fps=25, time_base=Fraction(1, 25), threads=t)
        base = peak = me.num_threads()
        for i, img in enumerate(imgs):
            sink.write(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25, image=img))
            peak = max(peak, me.num_threads())
        used = sink._stream.codec_context.thread_count
        sink.close()
        print(t, peak - base, used)
""")


def test_video_sink_with_one_thread_encodes_on_the_calling_thread(tmp_path):
    """threads=1: the codec context says 1, no thread is started while the file is written (FFmpeg's choice
    started one per CPU, for the encoder and the colour conversion each), and the file plays."""
    pytest.importorskip("psutil")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # a process of its own: the test session's other threads (ONNX Runtime pools, servers) do not count
    r = subprocess.run([sys.executable, "-c", _COUNT_THREADS, str(tmp_path), "1", "0"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = {int(t): (int(grown), int(used)) for t, grown, used in (ln.split() for ln in r.stdout.splitlines())}
    assert got[1] == (0, 1), got
    assert got[0][1] == 0  # FFmpeg's choice, as `facecycle process` keeps it
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus >= 2:  # (on one CPU FFmpeg's choice starts none either)
        assert got[0][0] >= 2, got  # the count sees the threads threads=1 leaves out
    for t in (1, 0):
        assert decode_count(tmp_path / f"t{t}.mp4") == 12


def test_video_sink_threads_reach_the_codec_before_it_opens(tmp_path):
    """In this process: the count is set on the codec context when the stream is made (PyAV refuses it once the
    first frame opened the codec), and the thread type stays slice threading (a frame is returned as soon as it is
    encoded: no frame of latency, nor a frame's buffers, per thread)."""
    from realtime.types import FramePacket

    sink = VideoSink(tmp_path / "v.mp4", fps=25, time_base=Fraction(1, 25), threads=3)
    for i, img in enumerate(real_frames(3, size=(96, 64))):
        sink.write(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25, image=img))
    cc = sink._stream.codec_context
    assert (cc.thread_count, cc.thread_type.name) == (3, "SLICE")
    sink.close()
    assert decode_count(tmp_path / "v.mp4") == 3


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, None])
def test_invalid_video_threads_are_refused_before_any_file(tmp_path, bad):
    """Anything but a whole number >= 0 is a UsageError naming the value, before the video file exists (not a
    TypeError from PyAV at the first frame), from the sink and from a run's outputs alike."""
    from realtime.outputs import RunOutputs

    with pytest.raises(UsageError, match=r"threads must be a whole number >= 0 .*not " + re.escape(repr(bad))):
        VideoSink(tmp_path / "v.mp4", threads=bad)
    with pytest.raises(UsageError, match="threads must be a whole number"):
        RunOutputs(8, video_threads=bad)
    assert not (tmp_path / "v.mp4").exists()
    assert check_video_threads(np.int64(2)) == 2 and check_video_threads(0) == 0


def test_batch_worker_encodes_its_video_with_its_reserved_cpus(tmp_path, capsys, monkeypatch):
    """`--threads-per-worker 2`, in this process: the annotated video is encoded with 2 threads and the sidecar
    records it; the count is not in the fingerprint, so a run with another count redoes nothing."""
    from realtime.sinks import video_sink

    used: List[int] = []
    opened = video_sink.VideoSink._open_streams

    def spy(self: VideoSink, width: int, height: int) -> None:
        opened(self, width, height)
        used.append(self._stream.codec_context.thread_count)

    monkeypatch.setattr(video_sink.VideoSink, "_open_streams", spy)
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", real_frames(4), rate=25)
    out = tmp_path / "out"
    o = ["--out-dir", str(out), "--cluster", "none", "--no-progress"]
    assert cli_main(["batch", str(src), *o, "--threads-per-worker", "2"]) == 0, capsys.readouterr().err
    assert used == [2]
    side = json.loads((out / "a.json").read_text())
    assert side["status"] == "complete" and side["video_threads"] == 2
    assert decode_count(out / "a.annotated.mp4") == 4
    assert cli_main(["batch", str(src), *o]) == 0  # (1 thread per worker)
    rec = json.loads((out / "batch.json").read_text())
    assert [e["status"] for e in rec["inputs"]] == ["skipped"] and used == [2]
    # not given, in this process (one video at a time): FFmpeg's choice, as process leaves it (a review: a cap of
    # the default 1 CPU slowed a Ray-less batch's encoding for nothing)
    assert cli_main(["batch", str(src), *o, "--force"]) == 0
    assert used == [2, 0] and json.loads((out / "a.json").read_text())["video_threads"] == 0


def test_ray_tasks_get_the_threads_their_workers_reserve(monkeypatch):
    """The Ray path, without starting Ray: each task is handed the CPUs it reserves (``num_cpus``), and the task's
    entry gives them to the run as its encoder's threads."""
    from realtime.batch import executors

    if not executors.ray_available():
        pytest.skip('ray is not installed (pip install "facecycle-rt[cluster]")')
    calls: List[tuple] = []

    class _Remote:
        def remote(self, *args: Any) -> str:
            calls.append(args)
            return "ref"

    ex = executors.RayExecutor(BatchSettings(), cluster="local", threads=3)
    ex._remote, ex._settings_ref, ex._board = _Remote(), {}, None
    ex.submit({"input": "a.mp4", "rel": "a.mp4"})
    assert calls[0][3] == 3
    seen: Dict[str, Any] = {}

    def run_task(task: Dict[str, Any], settings: Dict[str, Any], progress=None, **kw: Any) -> Dict[str, Any]:
        seen.update(kw)
        return {"status": "done"}

    monkeypatch.setattr(executors, "run_task", run_task)
    assert executors._ray_entry(*calls[0]) == {"status": "done"} and seen == {"video_threads": 3}
    # in this process: the encoder's threads only where given (local_threads), else FFmpeg's choice
    assert executors.make_executor(BatchSettings(), "none", None, 4, 0.0, 0, local_threads=4).threads == 4
    assert executors.make_executor(BatchSettings(), "none", None, 4, 0.0, 0).threads == 0


def test_process_keeps_ffmpegs_choice(tmp_path):
    """An Analyzer's run, as `facecycle process` makes it, leaves the count to FFmpeg (0) unless given."""
    from realtime.batch.job import analyze_file

    class _Analyzer:
        def process_video(self, src: str, **kw: Any) -> Dict[str, Any]:
            return kw

    kw = analyze_file(_Analyzer(), tmp_path / "a.mp4", csv=None, video=tmp_path / "v.mp4")
    assert kw["video_threads"] == 0
    assert analyze_file(_Analyzer(), Path("a.mp4"), csv=None, video=None, video_threads=2)["video_threads"] == 2
