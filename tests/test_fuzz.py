"""Property-based tests (hypothesis): the CSV writer, timestamp handling, and CLI option parsing.

- CSV: arbitrary floats (nan, ±inf, huge, tiny) and face counts always give a file that parses completely
  with the contract's columns, one row per face (or one ``success`` 0 row) per frame, in order; a writer
  killed with SIGKILL mid-stream leaves only complete lines.
- Timestamps: PTS × time base → seconds from the first frame; timestamps are strictly increasing whatever
  the container says (missing, repeated or decreasing PTS are repaired); variable frame rate survives the
  video source → video sink round trip exactly.
- CLI: bad values of ``--max-faces``, ``--detect-every``, ``--threads``, ``--max-frames``,
  ``--score-threshold``, ``--detector`` and ``--backend`` give exit 2 and one line, before anything runs.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from facecycle_cli import main
from realtime.sinks import CsvSink, VideoSink, csv_columns
from realtime.sources.video import VideoSource
from realtime.types import EMOTIONS, Face, FramePacket

from .conftest import ROOT

FUZZ = settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=32)


def _arr(n: int):
    return st.lists(anyfloat, min_size=n, max_size=n).map(lambda v: np.asarray(v, np.float32))


@st.composite
def faces(draw, code_dim: int) -> Face:
    f = Face(box=draw(_arr(4)), score=draw(anyfloat), landmarks=draw(_arr(10)).reshape(5, 2),
             track_id=draw(st.integers(-1, 10 ** 6)))
    f.code = draw(st.none() | _arr(code_dim))
    f.intensity = draw(anyfloat)
    f.emotions = draw(st.none() | _arr(len(EMOTIONS)))
    f.pose = draw(st.none() | _arr(3))
    return f


@st.composite
def packets(draw, code_dim: int) -> List[FramePacket]:
    n = draw(st.integers(1, 5))
    out = []
    t = 0.0
    for i in range(n):
        t += draw(st.floats(0, 10, allow_nan=False))
        p = FramePacket(index=i, pts=None, time_base=Fraction(1, 1000), timestamp=t,
                        image=np.zeros((2, 2, 3), np.uint8))
        p.faces = draw(st.lists(faces(code_dim), max_size=6))
        out.append(p)
    return out


def _parse(path: Path, code_dim: int) -> List[List[str]]:
    text = path.read_text()
    assert text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == csv_columns(code_dim)
    for r in rows[1:]:
        assert len(r) == len(rows[0])
        for name, v in zip(rows[0], r, strict=True):
            if name != "emotion" and v != "":
                float(v)  # every numeric cell parses (nan / inf spelled as Python and pandas read them)
            if name == "emotion":
                assert v == "" or v in EMOTIONS
    return rows


@FUZZ
@given(data=st.data(), code_dim=st.sampled_from([1, 3, 16, 256]))
def test_csv_writer_always_writes_a_parsable_file(tmp_path_factory, data, code_dim):
    pk = data.draw(packets(code_dim))
    path = tmp_path_factory.mktemp("csv") / "f.csv"
    with CsvSink(path, code_dim) as sink:
        for p in pk:
            sink.write(p)
    rows = _parse(path, code_dim)[1:]
    assert len(rows) == sum(max(1, len(p.faces)) for p in pk)
    pairs = [(p, f) for p in pk for f in (p.faces or [None])]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(p.index, -1 if f is None else f.track_id) for p, f in pairs]
    for r, (p, f) in zip(rows, pairs, strict=True):
        assert r[4] == ("0" if f is None else "1")
        assert float(r[2]) == pytest.approx(p.timestamp, abs=1e-6)
        assert all(c == "" or math.isfinite(float(c)) for c in r[5:9]), r[5:9]  # a box cell is a number or empty


_KILL_WRITER = r"""
import sys, numpy as np
from fractions import Fraction
sys.path.insert(0, sys.argv[2])
from realtime.sinks import CsvSink
from realtime.types import Face, FramePacket
rng = np.random.default_rng(0)
with CsvSink(sys.argv[1], 256) as s:
    i = 0
    while True:
        p = FramePacket(index=i, pts=None, time_base=Fraction(1, 1000), timestamp=i / 30,
                        image=np.zeros((2, 2, 3), np.uint8))
        for k in range(int(rng.integers(0, 8))):
            f = Face(box=rng.random(4).astype(np.float32) * 100, score=0.9,
                     landmarks=rng.random((5, 2)).astype(np.float32), track_id=k)
            f.code = rng.standard_normal(256).astype(np.float32)
            f.pose = rng.standard_normal(3).astype(np.float32)
            f.intensity = float(rng.random())
            p.faces.append(f)
        s.write(p)
        if i == 20:
            print("ready", flush=True)
        i += 1
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_csv_killed_mid_write_leaves_complete_lines(tmp_path, delay):
    """SIGKILL (no handler runs) at a few moments: every line in the file is complete."""
    path = tmp_path / "k.csv"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(path), str(ROOT)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # A SIGKILL can cut the write in progress short at a page boundary (the kernel stops copying for a fatal
    # signal), so the one guarantee is: every line but a torn last one (no newline) is complete and in order.
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    path.write_text(text)
    rows = _parse(path, 256)[1:]
    idx = [int(r[0]) for r in rows]
    assert len(idx) > 20 and idx == sorted(idx)
    assert len(set(idx)) in (idx[-1] + 1, idx[-1])  # frames in order, only the last one possibly cut


# ------------------------------------------------------------------------------------------ timestamps
class _Frame:
    def __init__(self, pts: Optional[int], dts: Optional[int] = None) -> None:
        self.pts, self.dts = pts, dts
        self.rotation = 0
        self.is_corrupt = False

    def to_ndarray(self, format: str = "bgr24") -> np.ndarray:  # noqa: A002 - PyAV's name
        return np.zeros((4, 6, 3), np.uint8)


class _Reformatter:
    """The source's frame converter (av's VideoReformatter), for the fake frames: they are BGR already."""

    def reformat(self, frame, **kw):
        return frame


class _Packet:
    pos = None  # where in the file (the demuxer may not know)
    size = 0

    def __init__(self, frames) -> None:
        self.frames = frames

    def decode(self):
        return self.frames


class _Container:
    def __init__(self, packets) -> None:
        self.packets = packets

    def demux(self, stream):
        return iter(self.packets)

    def close(self) -> None:
        pass


def _fake_source(pts: List[Optional[int]], tb: Fraction, fps: Optional[float], ts_discont: bool = False,
                 dts: Optional[List[Optional[int]]] = None) -> VideoSource:
    """A VideoSource running its real timestamp code on a fake demuxer that returns frames with ``pts`` (and
    ``dts``: none by default) (``ts_discont``: a format whose clock may jump, MPEG-TS's)."""
    s = object.__new__(VideoSource)
    VideoSource.__bases__[0].__init__(s)
    s.name, s.is_url, s.realtime, s.max_errors = "fake", False, False, 5
    s.time_base, s.fps, s.frame_count, s.rotation = tb, fps, None, 0
    s.span, s.exact_count, s._ts_discont = None, False, ts_discont
    s.display_size = None  # square pixels
    s.still, s.stills, s.path = False, False, None  # a video, not a single picture (set by the real __init__)
    s.frames_decoded = s.frames_missing = s.discontinuities = 0
    s.stream = None
    s.container = _Container([_Packet([_Frame(p, d)]) for p, d in zip(pts, dts or [None] * len(pts), strict=True)])
    s._closed = False
    s._reformatter = _Reformatter()
    s._bytes_read, s.served_size = 0, None
    import threading

    s._lock = threading.Lock()
    return s


@FUZZ
@given(pts=st.lists(st.none() | st.integers(-10 ** 9, 10 ** 9), min_size=1, max_size=40),
       tb=st.sampled_from([Fraction(1, 1000), Fraction(1, 90000), Fraction(1001, 30000), Fraction(1, 12800)]),
       fps=st.none() | st.floats(1, 240))
def test_timestamps_are_strictly_increasing_whatever_the_pts(pts, tb, fps):
    out = list(_fake_source(pts, tb, fps))
    assert [p.index for p in out] == list(range(len(pts)))
    ts = [p.timestamp for p in out]
    assert ts[0] == 0.0
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert all(math.isfinite(t) for t in ts)
    for p in out:  # timestamp = (pts - first pts) * time_base
        assert p.timestamp == pytest.approx(float((p.pts - out[0].pts) * tb), rel=1e-9, abs=1e-9)


@FUZZ
@given(pd=st.lists(st.tuples(st.none() | st.integers(-10 ** 6, 10 ** 6), st.none() | st.integers(-10 ** 6, 10 ** 6)),
                   min_size=1, max_size=40),
       tb=st.sampled_from([Fraction(1, 1000), Fraction(1, 90000)]), fps=st.none() | st.floats(1, 240))
def test_timestamps_are_strictly_increasing_whatever_the_pts_and_dts(pd, tb, fps):
    """Frames with dts as well (the best-effort choice between the two, as AVI's B-frames need)."""
    out = list(_fake_source([p for p, _ in pd], tb, fps, dts=[d for _, d in pd]))
    ts = [p.timestamp for p in out]
    assert len(out) == len(pd) and ts[0] == 0.0
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False)) and all(math.isfinite(t) for t in ts)


@FUZZ
@given(gaps=st.lists(st.integers(1, 500), min_size=1, max_size=30), start=st.integers(0, 10 ** 6),
       tb=st.sampled_from([Fraction(1, 1000), Fraction(1, 90000)]))
def test_increasing_pts_give_exact_seconds(gaps, start, tb):
    pts = list(np.cumsum([start] + gaps).tolist())
    out = list(_fake_source(pts, tb, 25.0))
    assert [p.pts for p in out] == pts
    assert [p.timestamp for p in out] == [float((v - pts[0]) * tb) for v in pts]


@pytest.mark.parametrize("tb", [Fraction(1, 90000), Fraction(1, 1000)])
def test_a_clock_restart_continues_the_timeline(tb):
    """Two 25 fps segments whose clocks both start at 0 (MPEG-TS segments joined): the second goes on one frame after
    the first, at its own spacing. Repairing each frame to one tick after the last froze the timestamps of the rest
    of the file (50 frames within 0.6 ms)."""
    one = [int(Fraction(i, 25) / tb) for i in range(50)]
    src = _fake_source(one + one, tb, 25.0)
    out = list(src)
    assert [p.timestamp for p in out] == pytest.approx([i / 25 for i in range(100)], abs=1e-9)
    assert src.discontinuities == 1
    # a clock that restarts more than 60 s behind the file's start: FFmpeg's MPEG-TS reader takes it for a wrap
    # and adds 2^33 ticks, so time jumped 26.5 hours ahead (first clock at 70 s); a second segment whose clock is
    # 100 s ahead left a 99 s gap. In a format whose clock may jump, a jump of over 10 s ahead is a restart too
    first = [int(70 / tb) + int(Fraction(i, 25) / tb) for i in range(50)]
    for second in ([2 ** 33 + v for v in one], [int(170 / tb) + v for v in one]):
        src = _fake_source(first + second, tb, 25.0, ts_discont=True)
        out = list(src)
        assert [p.timestamp for p in out] == pytest.approx([i / 25 for i in range(100)], abs=1e-6)
        assert src.discontinuities == 1
    out = list(_fake_source(first + [int(170 / tb) + v for v in one], tb, 25.0))  # an MP4's gap is kept
    assert out[50].timestamp == pytest.approx(100.0, abs=1e-6)
    # a pts one tick out of order is repaired in place, not taken for a restart
    f = int(Fraction(1, 25) / tb)
    out = list(_fake_source([0, f, f, 3 * f], tb, 25.0))
    assert [p.pts for p in out] == [0, f, f + 1, 3 * f]

@settings(deadline=None, max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                               HealthCheck.too_slow])
@given(gaps=st.lists(st.integers(1, 400), min_size=2, max_size=12))
def test_variable_frame_rate_round_trip_source_to_sink(tmp_path_factory, gaps):
    """A real VFR file (ms time base) → VideoSource → VideoSink → decoded again: the same seconds."""
    import av

    d = tmp_path_factory.mktemp("vfr")
    pts = [0] + list(np.cumsum(gaps).tolist())
    tb = Fraction(1, 1000)
    src_path = d / "in.mkv"
    c = av.open(str(src_path), "w")
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.codec_context.time_base = tb
    for i, v in enumerate(pts):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 20) % 255, np.uint8), format="bgr24")
        f.pts, f.time_base = v, tb
        for pk in s.encode(f):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    with VideoSource(src_path) as src:
        got = list(src)
        with VideoSink(d / "out.mp4", fps=src.fps, time_base=src.time_base) as sink:
            for p in got:
                sink.write(p)
    want = [v / 1000 for v in pts]
    assert [p.timestamp for p in got] == pytest.approx(want, abs=1e-9)
    with av.open(str(d / "out.mp4")) as c:
        back = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert back == pytest.approx(want, abs=1.5e-3)


# ----------------------------------------------------------------------------------------- CLI options
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    import av

    p = tmp_path_factory.mktemp("opt") / "c.mp4"
    c = av.open(str(p), "w")
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    for _ in range(3):
        for pk in s.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="bgr24")):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    return p


def _cli(argv: List[str]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, err.getvalue()


def _assert_usage_error(rc, err):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0], err


_INT_OPTS = ["--max-faces", "--detect-every", "--threads", "--max-frames", "--neutral-passes"]


@FUZZ
@given(opt=st.sampled_from(_INT_OPTS), value=st.integers(max_value=0))
def test_non_positive_counts_are_usage_errors(tiny_export, clip, tmp_path_factory, opt, value):
    out = tmp_path_factory.mktemp("o")
    rc, err = _cli(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(out), opt, str(value)])
    _assert_usage_error(rc, err)
    assert opt in err
    assert not any(out.iterdir())  # refused before anything was written


@pytest.mark.parametrize("value", ["0", "-3"])
def test_live_refuses_non_positive_max_frames_before_anything_is_written(tiny_export, clip, tmp_path, value):
    # live used to run "0 frames" with exit 0 and write a header-only CSV and its sidecar
    out = tmp_path / "o"
    rc, err = _cli(["live", "--input", str(clip), "--no-window", "--model", str(tiny_export[1]), "--csv",
                    str(out / "x.csv"), "--max-frames", value])
    _assert_usage_error(rc, err)
    assert "--max-frames" in err
    assert not out.exists()


@FUZZ
@given(opt=st.sampled_from(_INT_OPTS + ["--score-threshold", "--detect-size"]),
       value=st.text(min_size=1, max_size=12).filter(lambda s: not s.lstrip().lstrip("+-").replace(".", "", 1)
                                                     .replace("_", "").isdigit()))
def test_non_numeric_values_are_usage_errors(tiny_export, clip, tmp_path_factory, opt, value):
    assume(not value.startswith("-") and "\x00" not in value and value.strip().lower() not in (
        "nan", "inf", "+inf", "infinity", "+infinity") and not _is_number(value))
    out = tmp_path_factory.mktemp("o")
    rc, err = _cli(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(out), f"{opt}={value}"])
    _assert_usage_error(rc, err)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


@FUZZ
@given(value=st.one_of(st.integers(max_value=-1), st.integers(min_value=1, max_value=31)))
def test_detect_size_negative_or_too_small(tiny_export, clip, tmp_path_factory, value):
    # a negative size scaled the frame by a negative factor and a tiny one finds no face: both used to run to the
    # end and write a CSV without faces
    out = tmp_path_factory.mktemp("o")
    rc, err = _cli(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(out),
                    f"--detect-size={value}"])
    _assert_usage_error(rc, err)
    assert "--detect-size" in err
    assert not any(out.iterdir())


@pytest.mark.parametrize("command", ["process", "batch"])
def test_unknown_video_preset_is_refused_before_anything_is_written(tiny_export, clip, tmp_path, command):
    # libx264 used to refuse it only when the first frame opened the encoder: a one-row CSV and a failed sidecar
    # were left behind (process), every input failed one by one (batch)
    out = tmp_path / "o"
    rc, err = _cli([command, str(clip), "--model", str(tiny_export[1]), "--out-dir", str(out),
                    "--video-preset", "nosuch"])
    _assert_usage_error(rc, err)
    assert "--video-preset" in err and "superfast" in err
    assert not out.exists() or not any(out.iterdir())


@FUZZ
@given(value=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(float("nan"))))
def test_score_threshold_outside_0_1(tiny_export, clip, tmp_path_factory, value):
    out = tmp_path_factory.mktemp("o")
    rc, err = _cli(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(out),
                    f"--score-threshold={value!r}"])
    _assert_usage_error(rc, err)


@FUZZ
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=15))
def test_unknown_backend_and_detector_names(tiny_export, clip, tmp_path_factory, name):
    out = tmp_path_factory.mktemp("o")
    base = ["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(out)]
    rc, err = _cli(base + [f"--backend=nope-{name}"])
    _assert_usage_error(rc, err)
    assert "unknown backend" in err
    assume(name not in ("centerface", "yunet", "insightface", "scrfd"))
    rc, err = _cli(base + [f"--detector={name}"])
    _assert_usage_error(rc, err)
    assert not (out / "c.csv").exists()
