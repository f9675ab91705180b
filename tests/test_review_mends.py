"""Mends of a code review (h82):

1. (High) An ``--overwrite`` output that set earlier files aside and was closed before its first frame (its first
   sidecar not written: a full disk, EIO; its first frame not written; switched off or to another file) left them
   aside, and the run's first frame deleted them, though nothing replaced them: the app's folder ended empty. They
   are put back; only the earlier files of an output that is open and has written a frame are deleted.
2. (Low) ``batch.json``'s ``made_with`` "from this machine (no input ran)" showed a backend filled in from the
   inputs, and the guess of the backend ``auto`` runs took the first available (TensorRT) where runs fell back, so
   every skipped input was "made with other software".
3. (Low) Three JSON-text helpers, three rules: under a Latin-1 file-system encoding ``batch.json`` and the sidecar's
   ``batch.input`` wrote ``caf\\xe9`` while its ``input.name`` kept ``café``. One rule now (facecycle.files).
4. (Low) A Parquet temporary ``.NAME.tmp-PID`` named no host: another machine's live one looked dead here and was
   deleted while it was written.

No model except where a batch runs (the tiny random model, short synthetic clips).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

import realtime.outputs as outputs
from facecycle.errors import OutputError

from .conftest import ROOT, batch_argv, real_frames, write_video

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names and locks")


# ----------------------------------------------------------------------- 1: earlier files set aside, put back
def _packet(i: int):
    from realtime.types import FramePacket

    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                       image=np.zeros((8, 8, 3), np.uint8), faces=[], source="x", stats={})


def _outputs(app: bool, said: List[str]):
    return outputs.RunOutputs(4, fps=25, time_base=Fraction(1, 25), overwrite=True,
                              describe=lambda: {"input": {"name": "x", "live": False}},
                              stats=lambda: {"frames_analysed": 1}, on_error=said.append if app else None)


def _earlier_csv(folder: Path) -> Dict[str, bytes]:
    """An earlier export's CSV and sidecar, as bytes by name."""
    (folder / "a.csv").write_bytes(b"frame,face_id\n0,0\n1,0\n")
    (folder / "a.json").write_bytes(b'{"status": "complete", "frames": 2}\n')
    return {n: (folder / n).read_bytes() for n in ("a.csv", "a.json")}


def _earlier_video(folder: Path) -> bytes:
    return write_video(folder / "v.mp4", real_frames(4, size=(64, 48))).read_bytes()


def _files(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _run(o, frames: int = 2, raises: bool = False) -> None:
    """Write ``frames`` frames; in CLI mode a failing frame ends the run (failed), as ``process`` does."""
    try:
        for i in range(frames):
            o.write(_packet(i))
    except OutputError as e:
        assert raises, e
        o.close("failed", e)
        return
    assert not raises
    o.close()


def _eio(*a, **k):
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _full(*a, **k):
    raise OutputError("disk full")


@pytest.mark.parametrize("app", [True, False], ids=["app", "cli"])
def test_a_csv_whose_first_sidecar_fails_keeps_the_earlier_files(tmp_path, monkeypatch, app):
    """The review's repro: ``set_csv`` (the app) or ``open_csv`` (``process``) over an earlier a.csv/a.json, the
    first ``running`` sidecar fails (EIO): the folder ended empty in the app. (CLI mode: the run fails before its
    first frame; it kept them before too.)"""
    before, said = _earlier_csv(tmp_path), []
    monkeypatch.setattr(outputs, "write_sidecar", _eio)
    o = _outputs(app, said)
    if app:
        o.set_csv(tmp_path / "a.csv")
        _run(o)
        assert said and said[0].startswith("CSV export not started") and "Input/output error" in said[0], said
    else:
        with pytest.raises(OutputError, match="Input/output error"):
            o.open_csv(tmp_path / "a.csv")
        o.close("failed", OutputError("x"))
    assert _files(tmp_path) == before  # byte for byte; nothing hidden (.replaced) or locked (.lock) is left
    assert str(tmp_path / "a.csv") not in o.finished


@pytest.mark.parametrize("app", [True, False], ids=["app", "cli"])
@pytest.mark.parametrize("kind", ["csv", "video"])
def test_an_output_whose_first_frame_fails_keeps_the_earlier_files(tmp_path, monkeypatch, app, kind):
    """The first frame's rows (or picture) cannot be written (a full disk): the app's export (recording) is off and
    the run goes on, and its first frame deleted the earlier files; ``process`` fails (it kept them before too)."""
    from realtime.sinks import CsvSink, VideoSink

    before = _earlier_csv(tmp_path) if kind == "csv" else {"v.mp4": _earlier_video(tmp_path)}
    said: List[str] = []
    o = _outputs(app, said)
    if kind == "csv":
        o.open_csv(tmp_path / "a.csv")
    else:
        o.open_video(tmp_path / "v.mp4")
    monkeypatch.setattr(CsvSink if kind == "csv" else VideoSink, "write", _full)
    _run(o, raises=not app)
    stopped = outputs.CSV_FAILED[1] if kind == "csv" else outputs.VIDEO_FAILED[1]
    assert not app or said == [f"{stopped}: disk full"], said
    assert _files(tmp_path) == before


@pytest.mark.parametrize("app", [True, False], ids=["app", "cli"])
@pytest.mark.parametrize("to", ["off", "other"])
def test_a_csv_switched_off_before_its_first_frame_keeps_the_earlier_files(tmp_path, app, to):
    """Opened over a.csv, then switched off (or to b.csv) before any frame: a header-only a.csv replaced the
    earlier one for good at the first frame."""
    before, said = _earlier_csv(tmp_path), []
    o = _outputs(app, said)
    o.open_csv(tmp_path / "a.csv")
    o.set_csv(None if to == "off" else tmp_path / "b.csv")
    _run(o)
    assert not said
    got = _files(tmp_path)
    assert {n: got.get(n) for n in before} == before
    assert sorted(got) == (["a.csv", "a.json"] if to == "off" else ["a.csv", "a.json", "b.csv", "b.json"])
    if to == "other":  # (the new export has the frames)
        assert json.loads(got["b.json"])["frames"] == 2 and str(tmp_path / "b.csv") in o.finished
    assert str(tmp_path / "a.csv") not in o.finished


@pytest.mark.parametrize("app", [True, False], ids=["app", "cli"])
def test_a_video_switched_off_before_its_first_frame_keeps_the_earlier_video(tmp_path, app):
    before, said = _earlier_video(tmp_path), []
    o = _outputs(app, said)
    o.open_video(tmp_path / "v.mp4")
    o.set_video(None)
    _run(o)
    assert not said
    assert _files(tmp_path) == {"v.mp4": before}
    assert o.video_frames == 0 and str(tmp_path / "v.mp4") not in o.finished


def test_only_the_earlier_files_of_an_output_that_wrote_a_frame_are_deleted(tmp_path, monkeypatch):
    """The app: the CSV export and the recording both over earlier files; the recording fails at the first frame,
    the CSV writes it. The CSV's earlier files are replaced (deleted); the earlier video is kept."""
    from realtime.sinks import VideoSink

    _earlier_csv(tmp_path)
    video, said = _earlier_video(tmp_path), []
    o = _outputs(True, said)
    o.open_csv(tmp_path / "a.csv")
    o.open_video(tmp_path / "v.mp4")
    monkeypatch.setattr(VideoSink, "write", _full)
    _run(o, frames=3)
    assert said == ["recording stopped: disk full"], said
    got = _files(tmp_path)
    assert sorted(got) == ["a.csv", "a.json", "v.mp4"], sorted(got)
    assert got["v.mp4"] == video
    side = json.loads(got["a.json"])
    assert side["status"] == "complete" and side["frames"] == 3  # the new export's


# ------------------------------------------------------------------- 2: batch.json's made_with, the prediction
def _settings(backend: str = "auto"):
    from realtime.batch.job import BatchSettings

    return BatchSettings(analyzer={"backend": backend, "model": "/nonexistent-model"})


def _machine(monkeypatch, available: List[str]) -> None:
    """This machine has the backends ``available`` (engines.select.check stood in for)."""
    import engines.select as select

    monkeypatch.setattr(select, "check", lambda name, *a, **k: (name in available, "stood in"))


def _skipped(backend: str) -> List[dict]:
    from realtime.sinks import versions

    v = versions()
    mw = {"backend": backend, "precision": "fp32", **{k: v[k] for k in ("facecycle", "facecycle_source",
                                                                       "onnxruntime") if isinstance(v.get(k), str)}}
    return [{"status": "skipped", "made_with": dict(mw)} for _ in range(3)]


def test_auto_with_gpu_backends_predicts_no_backend_and_raises_no_false_alarm(monkeypatch, capsys):
    """TensorRT installed, the runs fell back to ONNX Runtime CUDA: every skipped input was reported
    "backend onnxruntime-cuda -> tensorrt". Which backend `auto` opens is not known before it does: left out."""
    from realtime.batch.runner import _predicted_backend, _provenance

    _machine(monkeypatch, ["tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "torch-cpu"])
    assert _predicted_backend(_settings()) is None
    assert _predicted_backend(_settings("onnxruntime")) == "onnxruntime-cpu"  # an explicit one: its name
    result: dict = {}
    _provenance(result, _skipped("onnxruntime-cuda"), _settings(), executor=None)
    assert result["mixed_provenance"] is None, result
    assert result["made_with"]["from"] == "this machine (no input ran)" and "backend" not in result["made_with"]
    assert "other software" not in capsys.readouterr().err
    # where only CPU backends are here, the first is the one that runs: a skipped input of another is reported
    _machine(monkeypatch, ["onnxruntime-cpu", "torch-cpu"])
    assert _predicted_backend(_settings()) == "onnxruntime-cpu"
    result = {}
    _provenance(result, _skipped("onnxruntime-cuda"), _settings(), executor=None)
    assert result["mixed_provenance"]["differ"]["backend"] == {"this_run": "onnxruntime-cpu",
                                                               "others": {"onnxruntime-cuda": 3}}


def test_this_machines_record_holds_no_backend_filled_in_from_the_inputs(monkeypatch, capsys):
    """Ray and `--backend auto`: the backend is left out of this machine's record (docs/batch.md), but was filled in
    from the inputs, under "from": "this machine (no input ran)"."""
    from realtime.batch.runner import _provenance

    _machine(monkeypatch, ["onnxruntime-cpu"])
    result: dict = {}
    _provenance(result, _skipped("onnxruntime-cuda"), _settings(), executor=object())  # (not in-process)
    assert result["made_with"]["from"] == "this machine (no input ran)"
    assert "backend" not in result["made_with"], result["made_with"]
    assert result["mixed_provenance"] is None
    # the inputs' own stand in where this machine is not looked up (a signal's way out): said so
    result = {}
    _provenance(result, _skipped("onnxruntime-cuda"), _settings(), executor=object(), probe=False)
    assert result["made_with"]["from"] == "the inputs (no input ran)"
    assert result["made_with"]["backend"] == "onnxruntime-cuda"


# --------------------------------------------------------------------------- 3: one rule for text in JSON
@pytest.fixture
def latin1(monkeypatch):
    """A machine whose file names are read as Latin-1, as Python's name codec sees it (``os.fsencode`` encodes to
    Latin-1; the files themselves keep their UTF-8 names here)."""

    def fsencode(p):
        p = os.fspath(p)
        return p.encode("latin-1", "surrogateescape") if isinstance(p, str) else p

    monkeypatch.setattr(os, "fsencode", fsencode)


def test_one_rule_keeps_valid_text_and_escapes_only_undecodable_bytes(latin1, tmp_path):
    """Under Latin-1 the runner's helper (and the job's) wrote ``caf\\xe9`` for ``café`` while the sidecar's
    ``input.name`` kept ``café``."""
    from facecycle.files import json_text_fields, text_name
    from realtime.batch.runner import _write_json, dry_run_field

    assert text_name("café.mp4") == "café.mp4"
    assert text_name("caf\udce9.mp4") == "caf\\xe9.mp4"  # a byte that is not UTF-8 (on a UTF-8 machine)
    assert text_name("x\ud800") == "x\\ud800"  # a surrogate no byte made
    assert json_text_fields({"café": [Path("caf\udce9"), ("é", 1)]}) == {"café": ["caf\\xe9", ["é", 1]]}
    assert dry_run_field("café\t.mp4") == "café\\t.mp4"
    _write_json(tmp_path / "batch.json", {"input": "/in/café.mp4", "rel": "café.mp4"})
    assert json.loads((tmp_path / "batch.json").read_text(encoding="utf-8")) == {"input": "/in/café.mp4",
                                                                                 "rel": "café.mp4"}
    o = outputs.RunOutputs(4, describe=lambda: {"input": {"name": "café.mp4"}, "command": ["café\udce9"]})
    o.open_csv(tmp_path / "café.csv")
    o.write(_packet(0))
    assert o.close() is None
    side = json.loads((tmp_path / "café.json").read_text(encoding="utf-8"))
    assert side["input"]["name"] == "café.mp4" and side["csv"] == str(tmp_path / "café.csv")
    assert side["command"] == ["café\\xe9"]


@pytest.fixture(scope="module")
def latin1_env(tmp_path_factory) -> dict:
    """The environment of a process whose locale is ISO-8859-1 (file names read as Latin-1), made with localedef
    into a folder of its own (LOCPATH); skipped where it cannot be made."""
    if sys.platform != "linux":
        pytest.skip("a Latin-1 locale made with glibc's localedef")
    loc = tmp_path_factory.mktemp("locale")
    try:
        subprocess.run(["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(loc / "en_US.ISO-8859-1")],
                       capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"localedef: {e}")
    env = dict(os.environ, LOCPATH=str(loc), LC_ALL="en_US.ISO-8859-1", PYTHONUTF8="0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONIOENCODING", None)
    got = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"], env=env,
                         capture_output=True, text=True, timeout=60).stdout.strip()
    if got.lower().replace("-", "").replace("_", "") not in ("iso88591", "latin1"):
        pytest.skip(f"no Latin-1 locale here (the file system encoding came out {got!r})")
    return env


def _batch_in(env: dict, argv: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from facecycle_cli import main; sys.exit(main())",
                           *argv], env=env, cwd=str(ROOT), capture_output=True, timeout=600)


def test_a_batch_under_latin1_spells_a_name_alike_everywhere_and_resumes_either_spelling(latin1_env, tmp_path,
                                                                                          tiny_export):
    """A batch of ``café.mp4`` where names are read as Latin-1 (its name's bytes ``caf\\xe9.mp4``): batch.json's
    ``input``/``rel`` and the sidecar's ``batch.input``/``batch.rel`` said ``caf\\xe9`` while the sidecar's
    ``input.name`` said ``café``; all say ``café`` now, as the Parquet ``video`` column does (the join). A sidecar
    of an earlier version, which recorded ``caf\\xe9``, is still the same input (skipped, not "another input's")."""
    pq = pytest.importorskip("pyarrow.parquet")
    src, out, parquet = tmp_path / "in", tmp_path / "out", tmp_path / "all.parquet"
    src.mkdir()
    rng = np.random.default_rng(0)
    clip = write_video(tmp_path / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(6)])
    os.rename(clip, os.path.join(os.fsencode(src), b"caf\xe9.mp4"))  # Latin-1 bytes: "café.mp4" there
    argv = batch_argv(src, out, tiny_export[1])
    p = _batch_in(latin1_env, [*argv, "--parquet", str(parquet)])
    assert p.returncode == 0, p.stderr.decode("latin-1")
    rec = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    (e,) = rec["inputs"]
    assert (e["input"], e["rel"], e["status"]) == (f"{src}/café.mp4", "café.mp4", "done"), e
    assert e["csv"] == f"{out}/café.csv"
    side_path = os.path.join(os.fsencode(out), b"caf\xe9.json")
    with open(side_path, encoding="utf-8") as f:
        side = json.load(f)
    assert side["batch"]["input"] == side["input"]["name"] == e["input"] and side["batch"]["rel"] == e["rel"]
    assert side["csv"] == e["csv"]
    assert pq.read_table(str(parquet), columns=["video"]).column("video").to_pylist()[0] == e["rel"]  # the join
    side["batch"]["input"] = f"{src}/caf\\xe9.mp4"  # as an earlier version wrote it under Latin-1
    with open(side_path, "w", encoding="utf-8") as f:
        json.dump(side, f)
    p = _batch_in(latin1_env, argv)
    assert p.returncode == 0, p.stderr.decode("latin-1")
    assert b"0 processed, 1 skipped" in p.stderr, p.stderr.decode("latin-1")


# ------------------------------------------------------------------------------ 4: Parquet temporaries' host
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    for p in [path, *(path.iterdir() if path.is_dir() else [])]:
        os.utime(p, (t, t))


def test_a_temporary_names_its_host_sanitised_and_short(monkeypatch):
    from realtime.batch import parquet

    dest = Path("/data/all.parquet")
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu-node7")
    assert parquet.temporary_path(dest, 42) == Path("/data/.all.parquet.tmp-gpu-node7-42")
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu-node7.cluster.example.org")
    fqdn = parquet.temporary_path(dest, 42).name
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu-node7.other.example.org")
    other = parquet.temporary_path(dest, 42).name
    assert fqdn.startswith(".all.parquet.tmp-gpu-node7_") and fqdn.endswith("-42") and fqdn != other
    monkeypatch.setattr(socket, "gethostname", lambda: "Tom's PC/" + "x" * 80)
    name = parquet.temporary_path(dest, 42).name
    assert len(name) <= len(".all.parquet.tmp--42") + 24 and "/" not in name and "'" not in name, name


@POSIX
def test_another_hosts_live_temporary_is_left_alone(tmp_path):
    """Where locks are per machine (flock on shared storage, Windows), a second machine's live ``.NAME.tmp-PID``
    (its pid is dead here) was deleted while it was written. Another host's, and an older version's (no host),
    are removed only once untouched for a day; this host's dead ones at once."""
    pytest.importorskip("pyarrow")
    from realtime.batch import parquet

    kb = tmp_path / "kb"
    kb.mkdir()
    dest = kb / "all.parquet"
    dead, dead2 = _dead_pid(), _dead_pid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    day = parquet.STALE_ELSEWHERE_S
    try:
        made = {
            "this host, dead": (parquet.temporary_path(dest, dead), 0, False),
            "this host, alive": (parquet.temporary_path(dest, alive.pid), day * 2, True),
            "this process": (parquet.temporary_path(dest), day * 2, True),
            "another host, live": (kb / f".all.parquet.tmp-othernode-{dead}", 60, True),
            "another host, a day old": (kb / f".all.parquet.tmp-othernode-{alive.pid}", day + 600, False),
            "old form, live elsewhere": (kb / f".all.parquet.tmp-{dead}", 60, True),
            "old form, a day old": (kb / f".all.parquet.tmp-{dead2}", day + 600, False),
            "old form, its pid alive here": (kb / f".all.parquet.tmp-{alive.pid}", day * 2, True),
            "not a temporary": (kb / ".all.parquet.tmp-othernode-x", day * 2, True),
        }
        for what, (p, age, _) in made.items():
            if "another host, live" in what:  # a folder of parts, one written just now
                p.mkdir()
                (p / "part-00000.parquet").write_bytes(b"PAR1")
            else:
                p.write_bytes(b"PAR1")
            _age(p, age)
        t = time.time() - 2 * day
        os.utime(made["another host, live"][0], (t, t))  # (its folder old, a part in it new: it is written)
        removed = parquet.remove_stale_temporaries(dest)
        left = {p.name for p in kb.iterdir()}
        for what, (p, _, kept) in made.items():
            assert (p.name in left) == kept, what
        assert removed == sum(not kept for _, _, kept in made.values())
    finally:
        alive.kill()
        alive.wait()


@POSIX
def test_the_dataset_is_written_through_a_temporary_naming_this_host(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    from realtime.batch import parquet

    csv = tmp_path / "v.csv"
    o = outputs.RunOutputs(4, describe=lambda: {"input": {"name": "v.mp4"}})
    o.open_csv(csv)
    for i in range(3):
        o.write(_packet(i))
    assert o.close() is None
    moved = []
    real = os.replace
    monkeypatch.setattr(parquet.os, "replace", lambda a, b: (moved.append((Path(a), Path(b))), real(a, b))[1])
    dest = tmp_path / "kb" / "all.parquet"
    assert parquet.write_parquet([("v.mp4", csv)], dest)["rows"] == 3
    assert moved[-1] == (parquet.temporary_path(dest), dest)
    assert moved[-1][0].name == f".all.parquet.tmp-{parquet._host_tag()}-{os.getpid()}"
