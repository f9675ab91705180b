"""Shared fixtures: paths into ../shared (skipped cleanly where absent), tiny models."""
from __future__ import annotations

import contextlib
import csv
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import av
import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACECYCLE_SHARED", ROOT.parent / "shared"))
VIDEOS = SHARED / "data" / "videos"
MODELS = SHARED / "models"
FER = SHARED / "data" / "fer2013"


def pytest_addoption(parser):
    parser.addoption("--cuda", action="store_true", default=False, help="also run device tests on CUDA")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); real-data tests skipped")
    return SHARED


@pytest.fixture(scope="session")
def videos_dir(shared_dir) -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"{VIDEOS} is absent")
    return VIDEOS


def shared_video(name: str) -> Path:
    p = VIDEOS / name
    if not p.is_file():
        pytest.skip(f"{p} is absent (../shared not mounted)")
    return p


@pytest.fixture(scope="session")
def official_layout(shared_dir) -> dict:
    import json

    p = shared_dir / "reference" / "facecycle_official_state_dict.json"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return json.loads(p.read_text())


def _devices(config):
    devs = ["cpu"]
    if config.getoption("--cuda"):
        devs.append("cuda")
    return devs


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", _devices(metafunc.config))


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny random model exported to ONNX: (model, export_dir)."""
    torch = pytest.importorskip("torch")
    from facecycle.export import export_onnx
    from facecycle.model import FaceCycle

    torch.manual_seed(0)
    model = FaceCycle("tiny").eval()
    out = tmp_path_factory.mktemp("tiny_export")
    export_onnx(model, out, source="random:tiny")
    return model, out


def write_video(path: Path, frames: Sequence[np.ndarray], codec: str = "libx264", pix_fmt: str = "yuv420p",
                rate: int = 25, fmt: Optional[str] = None, pts: Optional[Sequence[int]] = None,
                time_base: Optional[Fraction] = None, rotation: Optional[float] = None,
                options: Optional[dict] = None, container_options: Optional[dict] = None,
                audio: Union[bool, str] = False, audio_seconds: Optional[float] = None) -> Path:
    """Encode BGR frames with PyAV (any codec / pixel format / container): optional VFR ``pts`` in ``time_base``,
    display ``rotation``, a 440 Hz ``audio`` track (True: mono AAC; a codec name: stereo in that codec, e.g.
    ``pcm_s16le``) as long as the video or ``audio_seconds``. Returns ``path``."""
    c = av.open(str(path), "w", format=fmt, options=container_options or {})
    s = c.add_stream(codec, rate=rate)
    h, w = frames[0].shape[:2]
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    if options:
        s.options = options
    if time_base is not None:
        s.codec_context.time_base = time_base
    if rotation is not None:
        if not hasattr(s, "set_display_rotation"):  # PyAV 17.0 (the lowest the bounds allow, .ci/lowest)
            c.close()
            pytest.skip(f"PyAV {av.__version__} cannot write a display rotation (Stream.set_display_rotation)")
        s.set_display_rotation(rotation)
    a = None
    if audio:
        a = c.add_stream("aac" if audio is True else audio, rate=16000)
        a.layout = "mono" if audio is True else "stereo"
    for i, img in enumerate(frames):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        f.pts = pts[i] if pts is not None else i
        if time_base is not None:
            f.time_base = time_base
        for p in s.encode(f):
            c.mux(p)
    if a is not None:
        n = int(16000 * (audio_seconds if audio_seconds is not None else len(frames) / rate))
        wave = (np.sin(np.arange(n) / 16000 * 2 * np.pi * 440) * 0.3).astype(np.float32)
        fmt_a = a.format.name  # the encoder's sample format (fltp for AAC, s16 for PCM)
        ch = 1 if audio is True else 2
        for t in range(0, n, 1024):  # frames of 1,024 samples (AAC's)
            chunk = np.repeat(wave[None, t:t + 1024], ch, axis=0)
            if fmt_a == "s16":  # packed: (1, samples x channels)
                chunk = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(chunk, format=fmt_a, layout="mono" if ch == 1 else "stereo")
            af.sample_rate = 16000
            af.pts = t
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode(None):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def run_in_threads(work: Callable[[], object], threads: int, calls: int = 1,
                   timeout: float = 120.0) -> Tuple[List[object], List[BaseException]]:
    """Call ``work()`` ``calls`` times in each of ``threads`` threads at once; returns (results, errors)."""
    results: List[object] = []
    errors: List[BaseException] = []

    def loop():
        try:
            for _ in range(calls):
                results.append(work())
        except Exception as e:  # noqa: BLE001 - reported to the test
            errors.append(e)

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout)
    assert not any(t.is_alive() for t in ts), "a thread is still running"
    return results, errors


#: a real one-face clip (real_frames falls back to synthetic frames without it)
FACE_CLIP = VIDEOS / "pyfeat_single_face.mp4"


def real_frames(n: int = 40, size=(320, 180)) -> List[np.ndarray]:
    """``n`` BGR frames (H, W, 3) uint8 of a real face clip resized to ``size`` (W, H); synthetic if absent."""
    w, h = size
    out: List[np.ndarray] = []
    if FACE_CLIP.is_file():
        with av.open(str(FACE_CLIP)) as c:
            for f in c.decode(video=0):
                out.append(cv2.resize(f.to_ndarray(format="bgr24"), (w, h), interpolation=cv2.INTER_AREA))
                if len(out) >= n:
                    break
    while len(out) < n:  # synthetic filler: moving bars
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : (len(out) * 7) % w + 1] = (40, 120, 220)
        out.append(img)
    return out


def read_csv(path: Path, code_dim: int) -> List[dict]:
    """Parse the whole CSV; every line complete, the contract's columns, frames in order. Returns the rows."""
    text = path.read_text()
    assert text.endswith("\n"), "last line is incomplete"
    from realtime.sinks import csv_columns

    rows = list(csv.reader(text.splitlines()))
    cols = csv_columns(code_dim)
    assert rows[0] == cols
    out = []
    last = -1
    for r in rows[1:]:
        assert len(r) == len(cols), f"row with {len(r)} fields, expected {len(cols)}"
        d = dict(zip(cols, r, strict=True))
        frame = int(d["frame"])
        assert frame >= last, "frames out of order"
        last = frame
        float(d["timestamp"])
        assert d["success"] in ("0", "1")
        out.append(d)
    return out


def frames_of(rows: List[dict]) -> List[int]:
    return sorted({int(r["frame"]) for r in rows})


def decode_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """The base URL of a local HTTP server (the standard library's, which answers no range requests) serving the
    folder ``root`` while the block runs. Quiet: no request log, and a client that closes early (the pipeline
    reads a served file's first bytes, then closes) is no traceback on stderr."""
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def copyfile(self, source, outputfile) -> None:
            try:
                super().copyfile(source, outputfile)
            except (BrokenPipeError, ConnectionResetError):  # the client had what it wanted
                pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------------------------------ CLI error checks
def one_error_line(err: str, code_word: str = "facecycle: error:") -> str:
    """The single error line of ``err`` (asserts: no traceback, exactly one error line)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith(code_word) or ln.startswith("facecycle process: error:")
            or ln.startswith("facecycle live: error:")]
    assert len(errs) == 1, err
    return errs[0]


def process_blank_picture(tmp_path: Path, capsys, *options: str) -> Tuple[int, str]:
    """``facecycle process`` of a grey 64x64 picture made in ``tmp_path`` with ``options`` (a model folder, a
    detector model) on ONNX Runtime, CSV only: (exit code, stderr)."""
    import cv2

    from facecycle_cli import main

    pic = tmp_path / "blank.png"
    cv2.imwrite(str(pic), np.full((64, 64, 3), 128, np.uint8))
    capsys.readouterr()
    rc = main(["process", str(pic), *options, "--backend", "onnxruntime", "--out-dir", str(tmp_path / "o"),
               "--no-video", "--no-progress"])
    return rc, capsys.readouterr().err


def assert_one_line(err: str, *words: str) -> None:
    """``err`` is one line, no internal error nor traceback, holding each of ``words``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def model(tiny_export) -> Path:
    """The tiny export's folder (a model for the CLI's --model)."""
    return Path(tiny_export[1])


@pytest.fixture(scope="module")
def code_dim(tiny_export) -> int:
    """The tiny model's code size (the CSV's exp_* columns)."""
    return tiny_export[0].config.code_dim


def motion_blur(img: np.ndarray, k: int, angle: float) -> np.ndarray:
    """``img`` (HxWx3 uint8) blurred along a line of ``k`` px at ``angle`` degrees (a camera's motion blur)."""
    ker = np.zeros((k, k), np.float32)
    ker[k // 2, :] = 1.0
    ker = cv2.warpAffine(ker, cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), angle, 1.0), (k, k))
    return cv2.filter2D(img, -1, ker / max(float(ker.sum()), 1e-6))


def hand_held(frames: Sequence[np.ndarray], shift: float, turn: float, seed: int, blur: bool = False,
              rng: Optional[np.random.Generator] = None) -> List[np.ndarray]:
    """``frames`` as a hand-held camera films them: a random walk of the picture (each frame's step ``shift`` px and
    ``turn`` degrees standard deviation, pulled back to the middle, zoomed 6 % so no border shows), with the motion
    blur of each step where ``blur``."""
    rng = rng or np.random.default_rng(seed)
    x = y = a = 0.0
    out = []
    for f in frames:
        h, w = f.shape[:2]
        dx, dy, da = rng.normal(0, shift), rng.normal(0, shift), rng.normal(0, turn)
        x, y, a = 0.8 * x + dx, 0.8 * y + dy, 0.8 * a + da
        m = cv2.getRotationMatrix2D((w / 2, h / 2), a, 1.06)
        m[:, 2] += (x, y)
        g = cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        out.append(motion_blur(g, max(3, int(np.hypot(dx, dy)) | 1), float(np.degrees(np.arctan2(dy, dx))))
                   if blur else g)
    return out


class StubCapture:
    """Stands in for ``cv2.VideoCapture`` (subclass and give ``read``): opened, every ``set`` taken, ``get`` from
    ``props`` (0 for the rest)."""

    props: dict = {}

    def __init__(self, device, *a) -> None:
        self.i = 0

    def isOpened(self) -> bool:
        return True

    def set(self, *a) -> bool:
        return True

    def get(self, prop) -> float:
        return float(self.props.get(prop, 0.0))

    def release(self) -> None:
        pass


def hold_replace(monkeypatch, job, held: Callable[[str, str], Optional[str]]) -> List[str]:
    """Make ``job.os.replace`` fail as Windows does on a file another program holds open, where ``held(src, dst)``
    names the path (the move goes through otherwise), with ``job`` on its Windows path and its retry waits
    skipped. Returns the list the failed tries are appended to."""
    real_replace, tries = os.replace, []

    def replace(a, b, *args, **kw):
        name = held(str(a), str(b))
        if name is not None:
            tries.append(name)
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", name)
        return real_replace(a, b, *args, **kw)

    monkeypatch.setattr(job, "_WINDOWS", True)
    monkeypatch.setattr(job.time, "sleep", lambda s: None)
    monkeypatch.setattr(job.os, "replace", replace)
    return tries


def offset_clip(path: Path, fmt: str, tb: Fraction, rate: int, start: float, frames: int,
                audio_start: Optional[float], audio_rate: int = 16000) -> Path:
    """A clip of ``frames`` 64x48 frames at ``rate`` fps whose first PTS is ``start`` s, in time base ``tb``, in the
    container ``fmt`` (``mpegts``, ``matroska``: files that start at an offset); a mono AAC track at ``audio_rate`` from
    ``audio_start`` s to a little past the last frame (None: no audio)."""
    c = av.open(str(path), "w", format=fmt)
    s = c.add_stream("libx264", rate=rate)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.codec_context.time_base = tb
    s.options = {"preset": "ultrafast"}
    a = None
    if audio_start is not None:
        a = c.add_stream("aac", rate=audio_rate)
        a.layout = "mono"
    step = int(round(Fraction(1, rate) / tb))
    first = int(round(start / tb))
    for i in range(frames):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 8) % 256, np.uint8), format="bgr24")
        f.pts, f.time_base = first + i * step, tb
        for pk in s.encode(f):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    if a is not None:
        t0 = int(round(audio_start * audio_rate))
        n = int(round((start + frames / rate + 0.2 - audio_start) * audio_rate))
        wave = np.sin(np.arange(n) / audio_rate * 2 * np.pi * 440) * 0.3 * np.linspace(0.2, 1.0, n)
        wave = wave.astype(np.float32)
        for t in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(wave[None, t:t + 1024], format=a.format.name, layout="mono")
            af.sample_rate, af.pts, af.time_base = audio_rate, t0 + t, Fraction(1, audio_rate)
            for pk in a.encode(af):
                c.mux(pk)
        for pk in a.encode(None):
            c.mux(pk)
    c.close()
    return path


def detect_stage(tracker, frames: Sequence[np.ndarray], detect: Callable[[np.ndarray, int], object], every: int,
                 fps: float) -> Iterator[list]:
    """The pipeline's detect stage over ``frames`` (BGR) at ``fps``: ``detect(image, index)`` (a ``Detections``) every
    ``every`` frames and wherever ``tracker.propagate`` asks for one, ``tracker.update`` then; else the flow's move.
    Yields each frame's faces (the tracker's state is read between frames: ``last_cut``)."""
    since = every
    for i, image in enumerate(frames):
        t = i / fps
        run_det = since >= every
        if not run_det:
            faces, ok = tracker.propagate(image, t)
            run_det = not ok
        if run_det:
            faces = tracker.update(image, detect(image, i), t)
            since = 0
        since += 1
        yield faces


def narrow_window(window, qtbot, font, width: int, widgets: Sequence) -> List:
    """Set ``font`` on the app's ``window``, check that it can be made ``width`` logical pixels wide, make it so, and
    check that every one of ``widgets`` ends inside the window at no less than its size hint. Returns the widgets'
    rectangles in window coordinates (Qt objects; the module needs no Qt import)."""
    window.setFont(font)
    window.centralWidget().layout().activate()
    assert window.minimumSizeHint().width() <= width, window.minimumSizeHint()
    window.resize(width, 640)
    qtbot.waitUntil(lambda: window.width() == width, timeout=5000)
    qtbot.wait(50)
    right = window.width() - 6
    rects = []
    for w in widgets:
        r = w.rect().translated(w.mapTo(window, w.rect().topLeft()))
        assert r.right() <= right and w.width() >= w.sizeHint().width(), (w.accessibleName(), r)
        rects.append(r)
    return rects


def batch_argv(src: Path, out: Path, model_dir, *extra: str) -> List[str]:
    """``facecycle batch`` of the folder ``src`` into ``out`` with ``model_dir``, one process, no video."""
    return ["batch", str(src), "--out-dir", str(out), "--model", str(model_dir), "--cluster", "none", "--no-video",
            "--no-progress", *extra]


def finished_batch(tmp: Path, model_dir, names: Sequence[str], seed: int) -> Tuple[Path, Path, Path]:
    """(inputs folder, a finished batch's output folder, the model folder): an 8-frame noise clip per name in
    ``tmp/in``, batched into ``tmp/out``."""
    from facecycle_cli import main as cli_main

    src = tmp / "in"
    src.mkdir()
    rng = np.random.default_rng(seed)
    for n in names:
        write_video(src / f"{n}.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(8)])
    out = tmp / "out"
    assert cli_main(batch_argv(src, out, model_dir)) == 0
    return src, out, Path(model_dir)


def copy_outputs(out: Path, tmp_path: Path, name: str) -> Path:
    """A copy of the output folder ``out`` as ``tmp_path/name``."""
    import shutil

    dst = tmp_path / name
    shutil.copytree(out, dst)
    return dst


@pytest.fixture
def cli(model, tmp_path, capfd):
    """``facecycle CMD ARGS --model tiny --no-progress [--out-dir OUT]`` in-process: (rc, stderr); ``process`` writes
    into ``tmp/out`` unless ``out`` is given. A test module may define a ``cli`` of its own."""

    from facecycle_cli import main

    def run(*args: object, out: Optional[Path] = None, cmd: str = "process"):
        argv = [cmd, *map(str, args), "--model", str(model), "--no-progress"]
        if cmd == "process" or out is not None:
            argv += ["--out-dir", str(out if out is not None else tmp_path / "out")]
        capfd.readouterr()
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
        return rc, capfd.readouterr()[1]

    return run


def shown_window(qtbot):
    """The app's main window with no settings (nothing remembered, nothing read), 1180x640, shown and exposed."""
    from ui.main_window import MainWindow

    w = MainWindow(model_dir=None)
    qtbot.addWidget(w)
    w.resize(1180, 640)
    w.show()
    qtbot.waitExposed(w)
    return w
