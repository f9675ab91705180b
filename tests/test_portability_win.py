"""Windows behaviour, checked on any OS by making the code believe it runs there (``sys.platform``, ``os.name``):
the engine cache's pid check, its file replacement, stdout in a code page, ``file://`` URLs, output-name lengths, a
CSV open in another program, a YuNet model under a non-ASCII folder, line ends of checksummed files, encodings."""
from __future__ import annotations

import ast
import fnmatch
import io
import os
import shutil
import sys
import time
import types
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import engines.cache as cache
from facecycle.errors import InputError, OutputError

from .conftest import MODELS, ROOT, shared_video

YUNET = MODELS / "face_detection_yunet_2023mar.onnx"


def _old(path: Path) -> None:
    t = time.time() - 7200
    os.utime(path, (t, t))


def _no_kill(pid, sig):
    raise AssertionError(f"os.kill({pid}, {sig}) on Windows: signal 0 is CTRL_C_EVENT there")


# ----------------------------------------------------------------------------------- F1: engine cache pid check
@pytest.mark.parametrize("attr,value", [("platform", "win32"), ("name", "nt")])
def test_pid_alive_on_windows_asks_the_system_and_never_calls_os_kill(monkeypatch, attr, value):
    asked = []
    monkeypatch.setattr(os, "kill", _no_kill)
    monkeypatch.setattr(cache, "_pid_alive_windows", lambda pid: asked.append(pid) or pid == 7)
    with monkeypatch.context() as m:
        m.setattr(sys if attr == "platform" else os, attr, value)
        alive, gone = cache._pid_alive(7), cache._pid_alive(4242)
    assert (alive, gone) == (True, False) and asked == [7, 4242]


def test_stale_temporaries_of_a_dead_process_are_removed_on_windows_without_a_signal(monkeypatch, tmp_path):
    dead = tmp_path / ".abc-fp16.onnx.4242-0123abcd.tmp"
    live = tmp_path / ".abc-fp16.onnx.7-89abcdef.tmp"
    for f in (dead, live):
        f.write_bytes(b"x")
        _old(f)
    monkeypatch.setattr(os, "kill", _no_kill)
    monkeypatch.setattr(cache, "_pid_alive_windows", lambda pid: pid == 7)
    monkeypatch.setattr(sys, "platform", "win32")
    assert cache.remove_stale_temporaries(tmp_path) == 1
    assert not dead.exists() and live.exists()


class _FakeWinapi:
    def __init__(self, open_error=None, code=259):
        self.open_error, self.code, self.closed = open_error, code, []

    def OpenProcess(self, access, inherit, pid):
        assert access == 0x1000 and inherit is False
        if self.open_error is not None:
            e = OSError(22, "OpenProcess failed")
            e.winerror = self.open_error
            raise e
        return 99

    def GetExitCodeProcess(self, h):
        return self.code

    def CloseHandle(self, h):
        self.closed.append(h)


@pytest.mark.parametrize("fake,alive", [
    (_FakeWinapi(open_error=87), False),    # no such process
    (_FakeWinapi(open_error=5), True),      # access denied: someone else's process
    (_FakeWinapi(code=259), True),          # STILL_ACTIVE
    (_FakeWinapi(code=0), False),           # exited; a handle someone kept open outlives it
])
def test_the_windows_pid_check_reads_openprocess_and_the_exit_code(monkeypatch, fake, alive):
    monkeypatch.setitem(sys.modules, "_winapi", fake)
    assert cache._pid_alive_windows(1234) is alive
    assert fake.closed == ([] if fake.open_error is not None else [99])


def test_pid_alive_on_posix_is_unchanged():
    assert sys.platform != "win32"
    assert cache._pid_alive(os.getpid()) is True


# ----------------------------------------------------------------------------------- F15: engine cache replace
def _flaky_replace(monkeypatch, failures):
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) <= failures:
            raise PermissionError(13, "Access is denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    return calls


def test_engine_cache_write_retries_a_file_held_open_on_windows(monkeypatch, tmp_path):
    calls = _flaky_replace(monkeypatch, 2)
    monkeypatch.setattr(sys, "platform", "win32")
    cache.write_atomic(tmp_path / "e" / "x-fp16.onnx", b"graph")
    assert len(calls) == 3 and (tmp_path / "e" / "x-fp16.onnx").read_bytes() == b"graph"
    assert os.listdir(tmp_path / "e") == ["x-fp16.onnx"]


def test_engine_cache_write_fails_at_once_on_posix_and_leaves_no_temporary(monkeypatch, tmp_path):
    calls = _flaky_replace(monkeypatch, 1)
    with pytest.raises(OutputError, match="cannot write to the engine cache"):
        cache.write_atomic(tmp_path / "x.onnx", b"graph")
    assert len(calls) == 1 and os.listdir(tmp_path) == []


def test_one_retrying_replace_serves_every_atomic_write(monkeypatch, tmp_path):
    """`facecycle.files.replace_retrying` is the one copy of the retried os.replace (it was written three times, two
    ways of telling Windows): it retries a held file on Windows and raises the last PermissionError; elsewhere at
    once. The sidecars' write_atomic, the engine cache's and the batch's moves go through it."""
    from facecycle import files
    from realtime.batch import job

    calls = _flaky_replace(monkeypatch, 9)
    (tmp_path / "a").write_text("x", encoding="utf-8")
    with pytest.raises(PermissionError):
        files.replace_retrying(tmp_path / "a", tmp_path / "b", waits=(0.1, 0.2), retry=True)
    assert len(calls) == 3
    with pytest.raises(PermissionError):
        files.replace_retrying(tmp_path / "a", tmp_path / "b")  # (not Windows: at once)
    assert len(calls) == 4
    used = []
    real = files.replace_retrying
    monkeypatch.setattr(files, "replace_retrying", lambda *a, **k: used.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(cache, "replace_retrying", files.replace_retrying)
    monkeypatch.setattr(job, "replace_retrying", files.replace_retrying)
    monkeypatch.setattr(os, "replace", lambda a, b: os.rename(a, b))
    files.write_atomic(tmp_path / "s.json", "{}")
    cache.write_atomic(tmp_path / "e.onnx", b"graph")
    job._replace(tmp_path / "a", tmp_path / "c")
    assert used == [tmp_path / "s.json", tmp_path / "e.onnx", tmp_path / "c"], used


# ----------------------------------------------------------------------------------- F5: stdout in a code page
def test_redirected_stdout_in_a_code_page_prints_a_name_outside_it(monkeypatch, tmp_path):
    """``engine clean`` prints the cache folder: one named 视频 in a cp1252 stdout (Windows, redirected) was
    "internal error: UnicodeEncodeError"."""
    from facecycle_cli import main

    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="cp1252", newline="\n")
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "视频"))
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "platform", "win32")
    assert main(["engine", "clean"]) == 0
    out.flush()
    text = raw.getvalue().decode("cp1252")
    assert "removed 0 file(s)" in text and "\\u89c6\\u9891" in text


def test_stdout_is_made_tolerant_on_every_platform(monkeypatch):
    """Probe h79 F2: an ASCII stdout elsewhere (PYTHONIOENCODING=ascii, LANG=C on an old Python) crashed `batch
    --dry-run` with a UnicodeEncodeError; every platform's stdout now escapes what it cannot encode."""
    from facecycle_cli import _tolerant_std_streams

    for platform in ("linux", "win32"):
        out = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "platform", platform)
        _tolerant_std_streams()
        assert out.errors == "backslashreplace" and out.encoding == "cp1252"


# ----------------------------------------------------------------------------------- F7: file:// URLs
@pytest.fixture
def windows_urls(monkeypatch):
    import urllib.request

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.14 deprecates the module; its function is Windows'
        import nturl2path
    monkeypatch.setattr(urllib.request, "url2pathname", nturl2path.url2pathname)
    monkeypatch.setattr(sys, "platform", "win32")


@pytest.mark.parametrize("url,path", [
    ("file:///C:/Users/Zo%C3%AB/Videos/my%20clip.mp4", "C:\\Users\\Zoë\\Videos\\my clip.mp4"),
    ("file://localhost/C:/Users/x/a.mp4", "C:\\Users\\x\\a.mp4"),
    ("file:///c|/x/a.mp4", "C:\\x\\a.mp4"),
    ("file://C:/x/a.mp4", "C:\\x\\a.mp4"),
    ("file://server/share/a%20b.mp4", "\\\\server\\share\\a b.mp4"),
    ("file:////server/share/a.mp4", "\\\\server\\share\\a.mp4"),
])
def test_a_file_url_is_a_windows_path_on_windows(windows_urls, url, path):
    from realtime.sources.video import local_path

    assert local_path(url) == path


def test_a_file_url_without_a_path_is_refused_on_windows(windows_urls):
    from realtime.sources.video import local_path

    with pytest.raises(InputError, match="without a path"):
        local_path("file://server")


def test_file_urls_on_posix_are_unchanged():
    from realtime.sources.video import local_path

    assert local_path("file:///data/my%20clip.mp4") == "/data/my clip.mp4"
    assert local_path("file://localhost/data/a.mp4") == "/data/a.mp4"
    with pytest.raises(InputError, match="another host"):
        local_path("file://server/share/a.mp4")


# ----------------------------------------------------------------------------------- F11: output-name length
def test_output_name_length_counts_utf16_units_on_windows(monkeypatch, tmp_path):
    from realtime.sinks.base import check_output_name

    name = "访谈" * 50 + ".annotated.mp4"  # 114 characters, 314 UTF-8 bytes
    with pytest.raises(OutputError, match=r"too long \(314 bytes"):
        check_output_name(tmp_path / name)
    monkeypatch.setattr(sys, "platform", "win32")
    assert check_output_name(tmp_path / name).name == name
    with pytest.raises(OutputError, match=r"too long \(256 characters; this file system allows 255\)"):
        check_output_name(tmp_path / ("\U0001f600" * 121 + ".annotated.mp4"))  # astral: 2 units each


# ----------------------------------------------------------------------------------- F15: a CSV open elsewhere
def _csv_locked(monkeypatch, target):
    real = os.open

    def fake_open(path, flags, *a, **k):
        if os.fspath(path) == os.fspath(target):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", fake_open)


def test_a_csv_open_in_another_program_says_so_on_windows(monkeypatch, tmp_path):
    from realtime.sinks.csv_sink import CsvSink

    p = tmp_path / "clip.csv"
    _csv_locked(monkeypatch, p)
    with pytest.raises(OutputError) as e:
        CsvSink(p, 8)
    assert "open in another program" not in str(e.value)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(OutputError) as e:
        CsvSink(p, 8)
    assert str(e.value) == (f"{p}: cannot write (Permission denied); is it open in another program (a spreadsheet, "
                            "a player)? close it and try again")


# ----------------------------------------------------------------------------------- F10: YuNet, non-ASCII folder
@pytest.mark.shared
def test_a_yunet_model_in_a_non_ascii_folder_is_loaded_from_its_bytes(monkeypatch, tmp_path):
    """OpenCV opens a path given to it with the ANSI code page's narrow string on Windows: here any path given to
    it fails, as ``C:\\Users\\José\\模型\\…`` did there; the model still loads, and detects as from its path."""
    if not YUNET.is_file():
        pytest.skip(f"{YUNET} is absent (../shared not mounted)")
    if tuple(int(v) for v in cv2.__version__.split(".")[:2]) < (4, 9):
        pytest.skip(f"OpenCV {cv2.__version__} has no FaceDetectorYN.create from a buffer (4.9 and later)")
    from realtime.detectors import yunet
    from realtime.sources import VideoSource

    frame = None
    with VideoSource(shared_video("pyfeat_WolfgangLanger_Pexels.mp4")) as s:
        for p in s:
            frame = p.image
            break
    want = yunet.YuNetDetector(str(YUNET)).detect(frame)

    folder = tmp_path / "José 模型"
    folder.mkdir()
    model = folder / "人脸.onnx"
    shutil.copyfile(YUNET, model)
    real = cv2.FaceDetectorYN

    class NarrowPaths:
        @staticmethod
        def create(first, *args):
            if isinstance(first, str) and first != "onnx":
                raise cv2.error(f"can't open {first!r} (narrow path)")
            return real.create(first, *args)

    monkeypatch.setattr(yunet, "cv2", types.SimpleNamespace(FaceDetectorYN=NarrowPaths, error=cv2.error))
    d = yunet.YuNetDetector(str(model))
    got = d.detect(frame)
    assert len(got) == len(want) == 1
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    assert d.describe()["model"] == "人脸.onnx"


# ----------------------------------------------------------------------------------- F16: line ends of checksums
def test_checksummed_and_binary_files_are_never_converted_by_git():
    """A Windows clone (core.autocrlf=true) checked manifest.json out with CRLF: another sha256 for one model."""
    ga = ROOT / ".gitattributes"
    if not ga.is_file() and not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    rules = [ln.split() for ln in ga.read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"]

    def exact(rel: str) -> bool:
        verdict = False
        for pattern, *attrs in rules:
            hit = fnmatch.fnmatch(rel, pattern) if "/" in pattern else fnmatch.fnmatch(rel.rsplit("/", 1)[-1],
                                                                                       pattern)
            if hit:
                if "-text" in attrs or "binary" in attrs:
                    verdict = True
                elif any(a.startswith("text") for a in attrs):
                    verdict = False
        return verdict

    assets = [p.relative_to(ROOT).as_posix() for p in (ROOT / "facecycle" / "assets").rglob("*") if p.is_file()]
    assert "facecycle/assets/default/manifest.json" in assets
    for rel in assets + ["benchmarks/x/result.json", "training/video_spans.csv", "realtime/detectors/assets/c.onnx",
                         "training/critic/critic.safetensors"]:
        assert exact(rel), rel
    assert not exact("realtime/pipeline.py") and not exact("docs/reliability.md")


# ----------------------------------------------------------------------------------- F20: explicit encodings
#: modules whose ``open`` is no text file's (``av.open`` a container, ``os.open`` a descriptor, …)
_NOT_TEXT_OPENS = {"av", "os", "tarfile", "zipfile", "gzip", "bz2", "lzma", "webbrowser", "wave", "Image", "h5py"}
#: bare text opens kept, by file and call: /proc's text is ASCII in every locale (Linux only)
_BARE_ALLOWED = {("realtime/soak.py", "open('/proc/self/status')")}


def _bare_text_calls(tree: ast.AST) -> list:
    """``read_text()`` / ``write_text(data)`` and text-mode ``open(...)`` / ``Path.open(...)`` calls without
    ``encoding=`` (binary modes, with a ``b``, need none): (line, call) each."""
    bare = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call) or any(k.arg == "encoding" for k in n.keywords):
            continue
        f = n.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if name in ("read_text", "write_text"):
            if len(n.args) < (2 if name == "write_text" else 1):  # (encoding given by position)
                bare.append((n.lineno, ast.unparse(n)))
        elif name == "open":
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in _NOT_TEXT_OPENS:
                continue
            at = 0 if isinstance(f, ast.Attribute) else 1  # Path.open(mode), open(file, mode)
            mode = next((k.value for k in n.keywords if k.arg == "mode"),
                        n.args[at] if len(n.args) > at else ast.Constant("r"))
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" in mode.value:
                continue
            if len(n.args) > at + 3:  # (encoding given by position)
                continue
            bare.append((n.lineno, ast.unparse(n)))
    return bare


@pytest.mark.parametrize("rel", ["facecycle", "engines", "realtime", "ui", "facecycle_cli"])
def test_text_reads_and_writes_name_their_encoding(rel):
    """Without one, Windows reads and writes in the ANSI code page: a user's manifest.json in UTF-8 misread. Every
    module of the package is scanned (a hand-picked seven left bare calls elsewhere uncaught)."""
    bare = []
    for f in sorted((ROOT / rel).rglob("*.py")):
        name = f.relative_to(ROOT).as_posix()
        calls = _bare_text_calls(ast.parse(f.read_text(encoding="utf-8")))
        bare += [f"{name}:{line} {call}" for line, call in calls if (name, call) not in _BARE_ALLOWED]
    assert bare == [], bare


def test_the_encoding_scan_sees_bare_calls_and_leaves_binary_ones():
    src = ("Path(p).read_text()\nPath(p).write_text(t)\nopen(p)\nopen(p, 'w')\np.open(mode='a')\n"
           "open(p, 'rb')\np.open('wb')\nav.open(p)\nos.open(p, 0)\nopen(p, encoding='utf-8')\n"
           "p.read_text('utf-8')\np.write_text(t, 'utf-8')\n")
    assert [line for line, _ in _bare_text_calls(ast.parse(src))] == [1, 2, 3, 4, 5]
