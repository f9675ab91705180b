"""The Python API as a notebook uses it: finished runs kept in variables (``run``, ``Out[n]``, a kept traceback),
Ctrl-C in the look-ahead's first reading, a cell re-run on the same files, the errors one mistake raises, and the
objects' display (``repr``, ``dir``, pickling)."""
from __future__ import annotations

import copy
import gc
import json
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import numpy as np
import pytest

from .conftest import ROOT, decode_count, real_frames, shared_video, write_video

CLIP = "liveportrait_driving_d6.mp4"  # 480x480 H.264: FFmpeg decodes it on frame threads (av:h264:df*)
SHORT = "pyfeat_single_face.mp4"


@pytest.fixture(scope="module")
def an():
    from realtime import Analyzer

    with Analyzer(threads=1) as a:
        yield a


def _tasks() -> int:
    """The process's native threads (FFmpeg's decoder threads too, which ``threading`` does not see)."""
    return len(os.listdir("/proc/self/task"))


def _settled_tasks(before: int, timeout: float = 3.0) -> int:
    """The thread count once it has come down to ``before`` (threads end shortly after they are released), or as
    it is after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        n = _tasks()
        if n <= before or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------- kept finished runs
def test_a_finished_run_kept_holds_no_decoder_threads_nor_pyav_objects(an):
    """Probe finding: a finished Run still referenced kept its VideoSource's PyAV container, stream (its codec
    context) and frame converter: closed, but not freed, and PyAV frees a decoder's threads and frame pool only when
    they are. Ten kept runs of a 720p clip held 30 ``av:h264`` threads and +388 MB."""
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc/self/task here: native threads cannot be counted")
    clip = shared_video(CLIP)
    an.process_video(clip, max_frames=5).run()  # warm: the model's own threads exist before counting
    gc.collect()
    time.sleep(0.3)
    before = _tasks()
    kept = []
    for _ in range(4):
        run = an.process_video(clip, max_frames=12)
        assert len(list(run)) == 12
        kept.append(run)
    del run
    after = _settled_tasks(before)
    assert after <= before + 1, f"{after - before} native threads more with 4 finished runs kept (before: {before})"
    for run in kept:
        src = run.src
        assert src._closed and src.container is None and src.stream is None
        held = {k: type(v).__module__ for k, v in vars(src).items() if type(v).__module__.split(".")[0] == "av"}
        assert not held, f"the closed source still holds PyAV objects: {held}"
    d = kept[0].src.describe()  # read while the file was open: still there once it is closed
    assert d["codec"] == "h264" and d["stream"] == 0 and d["frames_decoded"] == 12
    with pytest.raises(Exception, match="closed"):  # a closed source is not read again (nor does it crash)
        next(iter(kept[0].src))


def test_a_stopped_lookahead_run_lets_go_of_the_first_readings_record(an):
    """The second reading replays the first's analysed faces (up to 20,000 of about 8 KB); a run stopped before it
    replayed them all (a ``break``, max_frames, a stop) kept the rest for as long as it was referenced."""
    from realtime import Analyzer

    clip = shared_video(SHORT)
    with Analyzer(threads=1, baseline_lookahead=True) as a:
        run = a.process_video(clip, max_frames=20)
        for p in run:
            if p.index == 3:
                break
        assert run.status == "stopped" and run._replay == {} and not run._replayed  # (emptied: it did replay)
        assert run.src.container is None


# ------------------------------------------------------------------------------- Ctrl-C in the first reading
@pytest.mark.parametrize("settings", [{"baseline_lookahead": True}, {"neutralize": True}],
                         ids=["baseline_lookahead", "neutral_lookahead"])
def test_ctrl_c_in_the_lookahead_first_reading_records_interrupted(tmp_path, settings):
    """Probe finding: Ctrl-C during the first of a file's two readings wrote ``{"status": "failed", "error": ""}``;
    docs/pipeline.md says ``interrupted``, as Ctrl-C anywhere else. Made deterministic here: the first reading's
    per-frame callback (``run.on_ahead``, a progress bar's) raises KeyboardInterrupt at its fourth frame."""
    from realtime import Analyzer

    clip = shared_video(SHORT)
    with Analyzer(threads=1, **settings) as a:
        run = a.process_video(clip, csv=tmp_path / "x.csv", max_frames=30)
        assert run.lookahead or run.baseline_ahead  # the file is read twice
        seen = []

        def ctrl_c(p):
            seen.append(p.index)
            if p.index == 3:
                raise KeyboardInterrupt

        run.on_ahead = ctrl_c
        with pytest.raises(KeyboardInterrupt):
            for _ in run:
                pass
        assert seen == [0, 1, 2, 3]
        side = json.loads((tmp_path / "x.json").read_text())
        assert side["status"] == "interrupted" and not side.get("error"), side.get("error")
        assert side["frames"] == 0 and run.status == "interrupted"
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".lock")]
        assert len(a.analyze_image(real_frames(1, (640, 360))[0]).faces) == 1  # the Analyzer is free again

        # any other exception there is a failure, and names it
        run = a.process_video(clip, csv=tmp_path / "y.csv", max_frames=30)
        run.on_ahead = lambda p: 1 / 0
        with pytest.raises(ZeroDivisionError):
            run.run()
        side = json.loads((tmp_path / "y.json").read_text())
        assert side["status"] == "failed" and side["error"] == "division by zero" and run.status == "failed"


def test_ctrl_c_in_the_main_loop_records_interrupted_without_an_empty_error(an, tmp_path):
    """The main loop's rule is the same one (one mapping): a KeyboardInterrupt that reaches it (here from the
    frames' own generator, as a camera SDK's callback would raise it) is ``interrupted``, and no ``"error": ""``
    (``str(KeyboardInterrupt())``) is written."""
    frames = real_frames(5)

    def camera():
        yield from frames[:3]
        raise KeyboardInterrupt

    run = an.process_video(camera(), csv=tmp_path / "x.csv")
    with pytest.raises(KeyboardInterrupt):
        for _ in run:
            pass
    side = json.loads((tmp_path / "x.json").read_text())
    assert side["status"] == "interrupted" and "error" not in side and run.status == "interrupted"
    assert side["frames"] == 3


# ---------------------------------------------------------------------------------- a cell run again
def test_a_cell_run_again_is_told_that_an_earlier_run_of_this_process_holds_the_file(an, tmp_path):
    """Probe finding: ``run = an.process_video(..., csv=X, overwrite=True)`` run again before the first run was
    iterated said "X: being written by another run (host vm, pid <its own pid>); wait for it to end", and nothing
    would end it. It now says that an earlier Run of this process holds X, and how to let it go."""
    from realtime import OutputError

    clip = shared_video(SHORT)
    out = tmp_path / "rerun.csv"
    run = an.process_video(clip, csv=out, overwrite=True)
    with pytest.raises(OutputError) as e:
        an.process_video(clip, csv=out, overwrite=True, max_frames=5)
    msg = str(e.value)
    assert msg.startswith(f"{out}: ") and "earlier Run in this process" in msg and f"pid {os.getpid()}" in msg
    assert "close()" in msg and "wait for it to end" not in msg and "\n" not in msg
    run.close()
    run = an.process_video(clip, csv=out, overwrite=True, max_frames=5)
    assert run.run().frames == 5

    # a run that is being read (started, not finished) is another matter: that one ends by itself
    first = an.process_video(real_frames(8), csv=out, overwrite=True)
    rows = iter(first)
    next(rows)
    from realtime import Analyzer

    with Analyzer(threads=1) as other, pytest.raises(OutputError, match="being written by another run"):
        other.process_video(real_frames(3), csv=out, overwrite=True)
    for _ in rows:
        pass
    assert json.loads(out.with_suffix(".json").read_text())["status"] == "complete"


# --------------------------------------------------------------------------------------------- errors
def test_one_image_mistake_raises_one_type_from_analyze_image_and_process_video(an):
    """Probe finding: a float image raised TypeError from analyze_image, but facecycle.errors.InputError (no
    TypeError) from process_video([...]). Both now raise one type that is both (the CLI's InputError, exit 3, and
    the TypeError / ValueError analyze_image always raised)."""
    import realtime
    from facecycle import errors
    from realtime.types import ImageTypeError, ImageValueError

    assert realtime.InputError is errors.InputError and realtime.OutputError is errors.OutputError
    assert realtime.UsageError is errors.UsageError and realtime.FaceCycleError is errors.FaceCycleError
    img = real_frames(1, (320, 180))[0]
    for bad, kind, words in [(img.astype(np.float32) / 255, TypeError, "expected a uint8 image"),
                             (img[:, :, :2], ValueError, "expected an image of shape")]:
        with pytest.raises(kind, match=words) as one:
            an.analyze_image(bad)
        with pytest.raises(kind, match=f"frames: frame 1: {words}") as many:
            list(an.process_video([img, bad]))
        assert type(one.value) is type(many.value) and type(one.value) in (ImageTypeError, ImageValueError)
        for e in (one.value, many.value):
            assert isinstance(e, realtime.InputError) and e.exit_code == 3 and "\n" not in str(e)
    # the frames' other mistakes stay InputErrors as they were
    with pytest.raises(realtime.InputError, match="timestamps must increase") as e:
        list(an.process_video([(img, 1.0), (img, 0.5)]))
    assert not isinstance(e.value, (TypeError, ValueError))


def test_a_detector_without_its_model_names_the_python_argument_too():
    """Probe finding: ``Analyzer(detector="yunet")`` said "--detector-model PATH", an option a notebook cannot pass.
    The message names both (the command line prints the same line)."""
    from realtime import UsageError
    from realtime.detectors import create_detector

    for name in ("yunet", "insightface", "scrfd"):
        with pytest.raises(UsageError) as e:
            create_detector(name)
        assert "--detector-model" in str(e.value) and "detector_model=" in str(e.value)


# ----------------------------------------------------------------------------------------------- display
def test_reprs_are_short_informative_and_never_raise(an):
    from realtime import Analyzer, Run, RunStats

    r = repr(an)
    assert r.startswith("Analyzer(") and "onnxruntime" in r and "'centerface'" in r and an.backend.model_dir.name in r
    run = an.process_video(real_frames(6), max_frames=4)
    assert repr(run) == "Run(input='frames', status='not started', frames=0 of 6)"
    stats = run.run()
    assert repr(run) == "Run(input='frames', status='complete', frames=4)"
    s = repr(stats)
    # (faces: 4 on the shared clip's frames, 0 on the made ones a clone without ../shared gets)
    assert s.startswith(f"RunStats(frames=4, faces={stats.faces}, fps=") and "elapsed_s=" in s and len(s) < 100
    for half_made in (object.__new__(Analyzer), object.__new__(Run)):  # a constructor that failed midway
        assert type(half_made).__name__ in repr(half_made)
    assert "frames=0" in repr(RunStats())
    for obj in (Analyzer.code_dim, Run.pause, Run.resume, RunStats.summary):
        assert (obj.__doc__ or "").strip(), obj


def test_an_analyzer_or_a_run_cannot_be_pickled_and_says_what_to_pickle(an):
    run = an.process_video(real_frames(3))
    for obj, what in ((an, "an Analyzer"), (run, "a Run")):
        for do in (pickle.dumps, copy.deepcopy, copy.copy):
            with pytest.raises(TypeError) as e:
                do(obj)
            assert str(e.value).startswith(f"{what} holds open models/files and cannot be pickled")
            assert "FramePacket, Face" in str(e.value)
    run.close()
    p = an.analyze_image(real_frames(1, (640, 360))[0])
    q = pickle.loads(pickle.dumps(p))  # the results can (a face where ../shared gives the real frames)
    assert q.index == p.index and [f.emotion for f in q.faces] == [f.emotion for f in p.faces]
    assert np.array_equal(q.image, p.image)


def test_the_package_lists_its_public_names_only():
    """Tab completion on ``realtime.`` listed ``Any``, ``List``, ``TYPE_CHECKING``, ``annotations`` and ``_lazy``."""
    import realtime
    import realtime.sources  # noqa: F401 - a submodule imported is listed too (the package's doc names it)

    names = dir(realtime)
    assert set(realtime.__all__) <= set(names) and "sources" in names
    assert all(n in realtime.__all__ or isinstance(getattr(realtime, n), type(realtime)) for n in names), names
    for name in ("Any", "List", "TYPE_CHECKING", "annotations", "_lazy"):
        assert name not in dir(realtime) and name not in vars(realtime)
    for name in realtime.__all__:  # every name still resolves (lazily)
        assert getattr(realtime, name) is not None
    for name in ("InputError", "OutputError", "UsageError", "ModelError", "BackendUnavailable", "PipelineError",
                 "OutOfMemory", "FaceCycleError"):
        assert name in realtime.__all__
    with pytest.raises(AttributeError):
        realtime.Analyser  # noqa: B018 - a typo is no name


def test_a_pil_image_gets_the_line_that_converts_it(an):
    Image = pytest.importorskip("PIL.Image")
    from realtime import as_bgr_image

    bgr = real_frames(1, (320, 180))[0]
    pil = Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))  # what Image.open gives: RGB
    with pytest.raises(TypeError) as e:
        an.analyze_image(pil)
    msg = str(e.value)
    assert "PIL image" in msg and 'np.asarray(img.convert("RGB"))[:, :, ::-1]' in msg and "BGR" in msg
    img = pil
    converted = np.asarray(img.convert("RGB"))[:, :, ::-1]  # the hint, as written, gives the BGR image
    assert np.array_equal(as_bgr_image(converted), bgr)
    with pytest.raises(TypeError, match=r"frames: frame 0: .*PIL image \(Image\)"):
        list(an.process_video([pil]))


# ------------------------------------------------------------------------------ closing: the exit, the Analyzer
#: a script that opens a run, reads some of it and exits with it open (argv: model, clip, output folder, how it reads)
_EXIT_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from realtime import Analyzer
    model, clip, out, mode = sys.argv[1:5]
    an = Analyzer(model=model)
    run = an.process_video(clip, csv=out + "/x.csv", video=out + "/x.mp4")
    if mode == "global":  # the iterator kept in a global, partly read, when the script ends
        it = iter(run)
        for _ in range(10):
            next(it)
    else:  # a daemon thread reading the run (slowly) when the main thread ends
        going = threading.Event()
        def read():
            for p in run:
                if p.index >= 5:
                    going.set()
                time.sleep(0.02)
        threading.Thread(target=read, daemon=True).start()
        assert going.wait(60)
    print("exiting with the run", run.status, flush=True)
""")


@pytest.mark.parametrize("mode", ["global", "daemon"])
def test_a_run_left_open_when_the_interpreter_exits_ends_stopped_with_its_files_finished(tiny_export, tmp_path,
                                                                                         mode):
    """Probe finding: a script that ended with a run partly read (``it = iter(run)`` kept in a global, or a daemon
    thread reading it) aborted (exit 134, "terminate called without an active exception": a pipeline thread ended
    by the finalization inside ONNX Runtime's run), or, the pipeline idle, closed the files during module teardown,
    which failed: the sidecar said "running", the video was missing or 28 bytes, the lock files stayed. The run is
    now ended ``stopped`` by an atexit function, its files finished, and the exit code is the script's own."""
    _, model = tiny_export
    frames = real_frames(60, size=(160, 96))
    clip = write_video(tmp_path / "c.mp4", (frames + frames[::-1]) * 2, rate=25)  # 240 frames: still going at exit
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "exit_with_a_run.py"
    script.write_text(_EXIT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, str(script), str(model), str(clip), str(out), mode], capture_output=True,
                       text=True, timeout=240, cwd=str(ROOT), env=env)
    assert r.returncode == 0 and "exiting with the run running" in r.stdout, (r.returncode, r.stdout, r.stderr)
    assert "terminate called" not in r.stderr and "failed" not in r.stderr, r.stderr
    side = json.loads((out / "x.json").read_text())
    assert side["status"] == "stopped", side["status"]
    rows = (out / "x.csv").read_bytes().count(b"\n") - 1
    assert (10 if mode == "global" else 6) <= side["frames"] < 240 and rows == side["frames"], (rows, side["frames"])
    assert decode_count(out / "x.mp4") == rows  # a plain, readable video of the CSV's frames
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no lock (or hidden) file left


def test_closing_the_analyzer_during_analyze_image_in_another_thread_waits_and_holds_no_session(tiny_export):
    """Probe finding: ``Analyzer.close()`` did not wait for an ``analyze_image()`` in progress in another thread, and
    that call then made the model's ONNX Runtime session again (9 closed Analyzers in 10 still held one). close()
    now waits for the call (bounded, as for a run), no session is held afterwards, and a later call is refused."""
    from facecycle.errors import UsageError
    from realtime import Analyzer
    from realtime.types import FramePacket

    _, model = tiny_export
    an = Analyzer(model=model)
    if an.backend.name != "onnxruntime":
        an.close()
        pytest.skip(f"the session cache checked is ONNX Runtime's, not {an.backend.name}'s")
    img = real_frames(1, size=(320, 180))[0]
    inside, go_on = threading.Event(), threading.Event()
    detect = an.detector.detect

    def held(image, max_side=None):  # the face detected, the model's call still to come
        found = detect(image, max_side=max_side)
        inside.set()
        go_on.wait(20)
        return found

    an.detector.detect = held
    result: list = []

    def call():
        try:
            result.append(an.analyze_image(img))
        except UsageError as e:
            result.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    assert inside.wait(20)
    closer = threading.Thread(target=an.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "close() returned while analyze_image() was still running in another thread"
    go_on.set()
    caller.join(20)
    closer.join(20)
    assert not caller.is_alive() and not closer.is_alive()
    assert len(result) == 1 and isinstance(result[0], (FramePacket, UsageError)), result
    assert not an.backend._sessions, sorted(an.backend._sessions)  # none made again by the call in flight
    with pytest.raises(UsageError, match="Analyzer is closed"):
        an.analyze_image(img)
    spec = an.backend.graphs["analyze"]
    with pytest.raises(UsageError, match="closed"):  # the closed backend does not make a session again either
        an.backend.run("analyze", {i["name"]: np.zeros([1] + [int(d) for d in i["shape"][1:]], np.float32)
                                   for i in spec.inputs})
    assert not an.backend._sessions


def test_a_run_closed_before_it_was_iterated_gives_no_frames(tiny_export, tmp_path):
    """Probe finding: ``run.close()`` and then a loop over the run raised ``RuntimeError: a Run can be iterated
    once`` (it never was, and it is no FaceCycleError), where ``run.stop()`` then a loop gave no frames. A closed
    run now gives none either, its files finished ``stopped`` as close() left them."""
    from realtime import Analyzer

    _, model = tiny_export
    with Analyzer(model=model) as a:
        run = a.process_video(real_frames(10), csv=tmp_path / "c.csv")
        run.close()
        assert list(run) == [] and list(run) == []
        assert run.status == "stopped" and run.stats.frames == 0
        assert json.loads((tmp_path / "c.json").read_text())["status"] == "stopped"
        assert run.run().frames == 0
        assert len(list(a.process_video(real_frames(3), csv=tmp_path / "c.csv", overwrite=True))) == 3


def test_closing_the_analyzer_finishes_the_runs_it_made_that_were_never_iterated(tiny_export, tmp_path):
    """Probe finding: after ``run = an.process_video(A, csv=..., video=...); an.close()`` the run stayed "not
    started" holding its files (5 descriptors, 3 lock files, the sidecar "running"), and a second Analyzer writing
    the same CSV was refused ("still held by an earlier Run ... not iterated"). close() now finishes such runs
    (``stopped``, files let go); the Analyzer knows its runs weakly: one dropped is still collected."""
    from realtime import Analyzer

    _, model = tiny_export
    clip = write_video(tmp_path / "c.mp4", real_frames(20, size=(160, 96)), rate=25)
    out = tmp_path / "out"
    out.mkdir()
    an = Analyzer(model=model)
    dropped = weakref.ref(an.process_video(clip))
    gc.collect()
    assert dropped() is None  # neither the Analyzer nor the exit's list keeps a run alive
    run = an.process_video(clip, csv=out / "x.csv", video=out / "x.mp4")
    an.close()
    assert run.status == "stopped"
    assert json.loads((out / "x.json").read_text())["status"] == "stopped"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # its lock files let go
    assert list(run) == []
    with Analyzer(model=model) as other:  # the same files, written by another Analyzer
        assert len(list(other.process_video(clip, csv=out / "x.csv", overwrite=True, max_frames=3))) == 3
    assert json.loads((out / "x.json").read_text())["status"] == "complete"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork (POSIX)")
def test_a_forked_child_leaves_its_parents_runs_alone(tiny_export, tmp_path):
    """Review finding: a child of ``os.fork()`` that exits normally ran its parent's runs' finalizers (finishing
    the parent's files ``stopped`` under it), and its Analyzer's ``close()`` would close them too. Inherited runs
    are marked in the child now: neither touches them."""
    import atexit

    from realtime import Analyzer

    _, model = tiny_export
    clip = write_video(tmp_path / "c.mp4", real_frames(10, size=(160, 96)), rate=25)
    with Analyzer(model=model) as an:
        run = an.process_video(clip, csv=tmp_path / "x.csv")
        assert json.loads((tmp_path / "x.json").read_text())["status"] == "running"
        pid = os.fork()
        if pid == 0:  # the child: its Analyzer closed, then what a normal exit runs
            code = 0
            try:
                an.close()
                atexit._run_exitfuncs()
            except BaseException:  # noqa: BLE001 - report through the exit code
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert json.loads((tmp_path / "x.json").read_text())["status"] == "running"  # still the parent's
        assert len(list(run)) == 10
    assert json.loads((tmp_path / "x.json").read_text())["status"] == "complete"
