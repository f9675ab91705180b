"""Thread options that reach what runs, and out-of-memory cases that keep the one-line error contract.

* ``--threads`` on the torch backend: ``open_model`` passes ``intra_op_threads``, which ``TorchBackend`` dropped
  (the sidecar said ``threads: 2`` for ``--threads 1``).
* ``--threads-per-worker`` with ``--cluster none``: capped at the usable CPUs, with one warning, as ``--threads``.
* Out of memory: "can't start new thread" under ``ulimit -v`` (was "internal error: RuntimeError", exit 1),
  OpenCV's "(-4:Insufficient memory)", ONNX Runtime's own coloured error lines (now fatal only), and ``--no-video``
  offered where the run writes the annotated video.
* ``batch --cluster local`` under a ``ulimit -f`` below Ray's object store: one line at once, not a 35 s timeout.
* ``batch --dry-run``'s help says how its fields are escaped.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import facecycle.errors as errors_mod
from facecycle.errors import BackendUnavailable, OutOfMemory, is_out_of_memory, suggest_no_video
from facecycle_cli import main as cli_main

from .conftest import ROOT, assert_one_line, one_error_line, real_frames, shared_video, write_video


# ------------------------------------------------------------------------------------------ torch threads
@pytest.fixture
def torch_threads():
    """torch's thread count set to 2 for the test (so that 1 is a change), restored after."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield torch
    torch.set_num_threads(before)


@pytest.fixture
def torch_model_dir(tiny_export, tmp_path) -> Path:
    """The tiny export with a ``model.safetensors`` placeholder (the torch backend is then a candidate; the tests
    hand it the module itself)."""
    d = tmp_path / "model"
    shutil.copytree(tiny_export[1], d)
    (d / "model.safetensors").write_bytes(b"")
    return d


def test_open_model_threads_reach_the_torch_backend(torch_threads, torch_model_dir, tiny_export):
    """``open_model(threads=1)`` (``--threads 1``) runs torch on one thread and ``describe()`` (the sidecar's
    ``backend``) says so: ``intra_op_threads`` was ignored by the torch backend, which kept every CPU."""
    from realtime.backend import open_model

    with open_model(torch_model_dir, backend="torch", threads=1, model=tiny_export[0]) as be:
        assert be.name == "torch"
        assert torch_threads.get_num_threads() == 1
        assert be.describe()["threads"] == 1
    # review h82: torch's count is the process's; closed, the backend gives it back (it stayed at 1)
    assert torch_threads.get_num_threads() == 2


def test_torch_backend_takes_both_names_threads_wins(torch_threads, torch_model_dir, tiny_export):
    from engines import open_backend

    with open_backend(torch_model_dir, "torch", intra_op_threads=1, model=tiny_export[0]) as be:
        assert be.describe()["threads"] == 1
    torch_threads.set_num_threads(2)
    with open_backend(torch_model_dir, "torch", threads=1, intra_op_threads=2, model=tiny_export[0]) as be:
        assert be.describe()["threads"] == 1


def test_process_on_torch_records_the_threads_it_ran(torch_threads, tmp_path, capsys):
    """The probe's repro: ``process CLIP --backend torch --threads 1``'s sidecar said ``threads: 2``."""
    clip = shared_video("videoretalking_face_3.mp4")
    out = tmp_path / "x"
    rc = cli_main(["-q", "process", str(clip), "--backend", "torch", "--threads", "1", "--no-video",
                   "--max-frames", "3", "--out-dir", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    side = json.loads((out / "videoretalking_face_3.json").read_text())
    assert side["backend"]["backend"] == "torch" and side["backend"]["threads"] == 1


# ------------------------------------------------------------------------------------------ out of memory
def test_a_thread_that_cannot_start_is_memory_only_under_an_address_space_limit(monkeypatch):
    e = RuntimeError("can't start new thread")
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: None)
    assert not is_out_of_memory(e)  # (ulimit -u: a limit on processes, not memory)
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: 1050000 * 1024)
    assert is_out_of_memory(e)


def test_opencvs_insufficient_memory_is_out_of_memory(monkeypatch):
    e = Exception("OpenCV(4.10.0) /io/opencv/modules/core/src/alloc.cpp:73: error: (-4:Insufficient memory) "
                  "Failed to allocate 6220800 bytes in function 'OutOfMemoryError'")
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: None)
    assert is_out_of_memory(e)
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: 800000 * 1024)
    msg = str(OutOfMemory.while_("running the detect stage", e))
    assert "ulimit -v" in msg and "Insufficient memory" in msg


def test_process_whose_threads_cannot_start_under_a_limit_is_one_oom_line(monkeypatch, tmp_path, capsys, model):
    """Under ``ulimit -v 1050000`` the pipeline's ``Thread.start`` raised "can't start new thread": the run ended
    "internal error: RuntimeError", exit 1. Now out of memory, exit 7, one line naming the limit."""
    from realtime import pipeline

    def starved(self):
        raise RuntimeError("can't start new thread")
        yield  # a generator, as Pipeline.__iter__

    monkeypatch.setattr(pipeline.Pipeline, "__iter__", starved)
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: 1050000 * 1024)
    clip = write_video(tmp_path / "c.mp4", real_frames(3), rate=25)
    capsys.readouterr()
    rc = cli_main(["process", str(clip), "--model", str(model), "--backend", "onnxruntime", "--no-video",
                   "--out-dir", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 7, err
    line = one_error_line(err)
    assert "out of memory" in line and "can't start new thread" in line and "ulimit -v" in line, line


def test_the_oom_hint_offers_no_video_where_the_video_is_written(monkeypatch):
    monkeypatch.setattr(errors_mod, "_no_video_hint", False)
    e = MemoryError()
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: 1 << 30)
    assert "--no-video" not in str(OutOfMemory.while_("decoding a.mp4", e))
    suggest_no_video()
    msg = str(OutOfMemory.while_("decoding a.mp4", e))
    assert msg.endswith("(ulimit -v): raise the limit or try --no-video"), msg
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: None)
    msg = str(OutOfMemory.while_("decoding a.mp4", e))
    assert msg.endswith("; free memory, process smaller inputs or try --no-video"), msg
    suggest_no_video(False)
    assert "--no-video" not in str(OutOfMemory.while_("decoding a.mp4", e))


@pytest.mark.parametrize("video", [True, False])
def test_batch_offers_no_video_when_it_writes_video(monkeypatch, tmp_path, capsys, video):
    monkeypatch.setattr(errors_mod, "_no_video_hint", not video)
    clip = write_video(tmp_path / "c.mp4", real_frames(2), rate=25)
    args = ["batch", str(clip), "--out-dir", str(tmp_path / "o"), "--cluster", "none", "--dry-run"]
    assert cli_main(args + ([] if video else ["--no-video"])) == 0, capsys.readouterr().err
    assert errors_mod._no_video_hint is video
    assert ("--no-video" in str(OutOfMemory.while_("x", MemoryError()))) is video


def test_each_command_sets_the_no_video_hint_afresh(monkeypatch, tmp_path, capsys, model):
    """Review h82: the hint was the process's, so a batch that wrote video left it on for a later command that did
    not (a notebook, a test session), and ``process`` never set it. Each command now starts with it off; ``process``
    and ``batch`` turn it on where they write the annotated video."""
    clip = write_video(tmp_path / "c.mp4", real_frames(2), rate=25)
    monkeypatch.setattr(errors_mod, "_no_video_hint", False)
    batch = ["batch", str(clip), "--out-dir", str(tmp_path / "b"), "--cluster", "none", "--dry-run"]
    assert cli_main(batch) == 0 and errors_mod._no_video_hint
    assert cli_main(["model", "info"]) == 0 and not errors_mod._no_video_hint  # (a command with no video)
    process = ["process", str(clip), "--out-dir", str(tmp_path / "p"), "--model", str(model), "--no-progress"]
    assert cli_main(process + ["--max-frames", "1"]) == 0 and errors_mod._no_video_hint
    assert cli_main(process + ["--no-video", "--overwrite"]) == 0 and not errors_mod._no_video_hint
    capsys.readouterr()


def test_onnxruntime_sessions_log_fatal_errors_only(tiny_export):
    """At severity 3 every ONNX Runtime out-of-memory printed its own ANSI-coloured ``[E:onnxruntime:...]`` lines
    before facecycle's one error line, into a log file too."""
    pytest.importorskip("onnxruntime")
    from engines.onnxruntime_backend import OnnxRuntimeBackend
    from realtime.detectors.base import ort_session

    be = OnnxRuntimeBackend(tiny_export[1], intra_op_threads=1)
    try:
        assert be.session_options().log_severity_level == 4
    finally:
        be.close()
    sess = ort_session(tiny_export[1] / "analyze.onnx")
    assert sess.get_session_options().log_severity_level == 4


# ------------------------------------------------------------------------------------------ batch threads
def test_threads_per_worker_in_this_process_is_capped_at_the_usable_cpus(monkeypatch, tmp_path, capsys, caplog,
                                                                          model):
    """``taskset -c 0 facecycle batch X --cluster none --threads-per-worker 4``: the sidecar said video_threads 4
    on one CPU, without a warning. Now 1, with one warning naming the option."""
    import facecycle.cpus as cpus

    monkeypatch.setattr(cpus, "usable_cpus", lambda: 1)
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", real_frames(3), rate=25)
    out = tmp_path / "out"
    capsys.readouterr()
    with caplog.at_level("WARNING"):
        rc = cli_main(["batch", str(src), "--out-dir", str(out), "--cluster", "none", "--threads-per-worker", "4",
                       "--model", str(model), "--backend", "onnxruntime", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    side = json.loads((out / "a.json").read_text())
    assert side["video_threads"] == 1, side.get("video_threads")
    warned = [r.getMessage() for r in caplog.records if "--threads-per-worker 4" in r.getMessage()]
    assert len(warned) == 1 and "using 1" in warned[0], warned


# ------------------------------------------------------------------------------------------ Ray under ulimit -f
def _ray_executor():
    from realtime.batch import BatchSettings, executors

    if not executors.ray_available():
        pytest.skip('ray is not installed (pip install "facecycle-rt[cluster]")')
    return executors, executors.RayExecutor(BatchSettings(), cluster="local", workers=1)


def test_local_ray_fails_at_once_under_a_file_size_limit_below_its_object_store(monkeypatch):
    """Ray's 128 MiB object store (a file in /dev/shm) cannot be written under ``ulimit -f 100``: ``ray.init``
    waited ~35 s and said "Ray did not start (... timed out ...); set RAY_TMPDIR ...". Now one line at once,
    naming the limit, exit 6; Ray is not started."""
    import resource

    executors, ex = _ray_executor()
    import ray

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit",
                        lambda which: (100 * 1024, resource.RLIM_INFINITY) if which == resource.RLIMIT_FSIZE
                        else real(which))
    started = []

    def init(*a, **k):
        started.append(k)
        raise RuntimeError("Ray timed out (the test's stand-in)")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with pytest.raises(BackendUnavailable) as ei:
        ex.start()
    msg = str(ei.value)
    assert_one_line(msg, "ulimit -f: 100 KiB", "--cluster none", "object store")
    assert ei.value.exit_code == 6 and not started


def test_local_ray_file_size_check_passes_where_the_store_fits(monkeypatch):
    import resource

    executors, _ = _ray_executor()
    real = resource.getrlimit
    for soft in (executors.OBJECT_STORE_BYTES, resource.RLIM_INFINITY):
        monkeypatch.setattr(resource, "getrlimit",
                            lambda which, s=soft: (s, resource.RLIM_INFINITY) if which == resource.RLIMIT_FSIZE
                            else real(which))
        executors.check_object_store_fits()  # no error


@pytest.mark.skipif(sys.platform == "win32", reason="ulimit -f is POSIX")
def test_batch_under_ulimit_f_ends_at_once_with_one_line(tmp_path):
    """The probe's repro, for real: ``(ulimit -f 100; facecycle batch in --out-dir br --workers 1)``."""
    _ray_executor()
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", real_frames(2), rate=25)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = (f'ulimit -f 100; exec "{sys.executable}" -m facecycle batch "{src}" --out-dir "{tmp_path / "br"}" '
           "--workers 1 --no-progress")
    p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 6, p.stderr
    line = one_error_line(p.stderr)
    assert "ulimit -f" in line and "--cluster none" in line, line  # (sh's blocks: 512 bytes, bash's 1024)


# ------------------------------------------------------------------------------------------ --dry-run help
def test_dry_run_help_says_how_fields_are_escaped(capsys):
    with pytest.raises(SystemExit):
        cli_main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("in each field a backslash is \\\\, tab/newline/CR are \\t \\n \\r, other control characters and bytes "
            "that are not UTF-8 are \\xNN (backslashes are not escaped on Windows)") in text, text
