"""Timestamps a file gets wrong, repaired or reported (docs/csv.md, the sidecar's ``input``).

A probe's clips, remade here small: an MP4 whose frame 30 alone had a pts 0.5 s late put every later frame 0.5 s
late (taken for a spliced stream: ``timestamp_discontinuities`` 1); a Matroska file with repeated pts had them
moved one tick on without a word; an MJPEG file that lacked 3 frames (no decoding error) said nothing, and its
``frame`` column skipped them unseen.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterable, List, Optional

import av
import numpy as np
import pytest

from realtime.sources.video import VideoSource, _gap_summary

from .conftest import real_frames

TB90K = Fraction(1, 90000)
STEP = 3000  # one frame at 30 fps in 1/90000 ticks


def _encode(path: Path, n: int, codec: str = "libx264", fmt: Optional[str] = None, pts: Optional[List[int]] = None,
            repts: Optional[Dict[int, int]] = None, redts: bool = False, drop: Iterable[int] = ()) -> Path:
    """``n`` frames at 30 fps (1/90000 ticks, or ``pts``), their packets muxed with ``repts`` (a packet's pts ->
    the pts written; ``redts``: its dts too) and without the packets of the pts in ``drop``."""
    frames = real_frames(n, size=(64, 48))
    c = av.open(str(path), "w", format=fmt)
    s = c.add_stream(codec, rate=30)
    s.width, s.height = 64, 48
    s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    s.codec_context.time_base = TB90K
    if codec == "libx264":
        s.options = {"bf": "0", "preset": "ultrafast"}
    packets = []
    for i, img in enumerate(frames):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        f.pts, f.time_base = (pts[i] if pts is not None else i * STEP), TB90K
        packets += s.encode(f)
    packets += s.encode()
    drop = set(drop)
    for pk in packets:
        if pk.pts in drop:
            continue
        if repts and pk.pts in repts:
            pk.pts = repts[pk.pts]
            if redts:
                pk.dts = pk.pts
        c.mux(pk)
    c.close()
    return path


def _read(path: Path, **kw):
    with VideoSource(path, **kw) as s:
        got = list(s)
        return got, s.describe()


def test_a_lone_late_pts_is_put_back_between_its_neighbours(tmp_path):
    """glitch.mp4: frame 30's pts 0.5 s late (its dts in line). Frames 31-59 came out 0.5 s late, with a warning of a
    joined or spliced stream and ``timestamp_discontinuities`` 1. Frame 30 now lies between 29 and 31 (1.0 s) and
    every later frame keeps its own time; the repair is counted."""
    path = _encode(tmp_path / "glitch.mp4", 60, repts={30 * STEP: 30 * STEP + 45000})
    got, d = _read(path)
    assert [p.index for p in got] == list(range(60))
    assert np.allclose([p.timestamp for p in got], np.arange(60) / 30, atol=1e-6)
    assert d["timestamp_discontinuities"] == 0 and d["timestamps_repaired"] == 1
    assert d["timestamp_gaps"]["count"] == 0 and d["errors"] == 0 and d["frames_missing"] == 0


def test_repeated_pts_are_repaired_and_counted_without_a_false_gap(tmp_path):
    """dup.mkv: frames 20 and 21 share a pts (0.667 s), so do 40 and 41. The second of each pair goes one tick
    after the first, as before, and is now counted in ``timestamps_repaired``; the step from it to the next frame
    is no gap (no frame is missing)."""
    path = _encode(tmp_path / "dup.mkv", 60, fmt="matroska", repts={21 * STEP: 20 * STEP, 41 * STEP: 40 * STEP},
                   redts=True)
    got, d = _read(path)
    ts = [p.timestamp for p in got]
    assert len(got) == 60 and all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert ts[20] == pytest.approx(0.667) and ts[21] == pytest.approx(0.668) and ts[22] == pytest.approx(0.733)
    assert d["timestamps_repaired"] == 2 and d["timestamp_discontinuities"] == 0
    assert d["timestamp_gaps"] == {"count": 0, "frames_est": 0, "largest_s": 0.0, "step_s": pytest.approx(0.033)}


def test_frames_lost_without_an_error_are_reported_as_a_gap(tmp_path):
    """mjpeg_bad.mkv: the packets of frames 30-32 are gone; the 57 left decode without an error, the file's
    length is whole, so nothing said that the ``frame`` column skips 3 frames at 1.0 s."""
    path = _encode(tmp_path / "lost.mkv", 60, codec="mjpeg", fmt="matroska", drop=[30 * STEP, 31 * STEP, 32 * STEP])
    got, d = _read(path)
    assert len(got) == 57 and d["errors"] == 0 and d["frames_missing"] == 0 and d["timestamps_repaired"] == 0
    assert got[30].timestamp == pytest.approx(1.1, abs=1e-3)
    gaps = d["timestamp_gaps"]
    assert gaps["count"] == 1 and gaps["frames_est"] == 3
    assert gaps["largest_s"] == pytest.approx(0.133, abs=2e-3) and gaps["step_s"] == pytest.approx(1 / 30, abs=2e-3)


def test_variable_frame_rate_is_no_gap_and_a_steady_file_has_none(tmp_path):
    """A phone's variable rate (30 fps, a stretch at 60, a 0.3-s stall) has irregular steps of its own: no gaps are
    looked for (``step_s`` null). A steady file reads none, at its own interval."""
    t = [i / 30 for i in range(30)] + [1.0 + i / 60 for i in range(30)] + [1.8 + i / 30 for i in range(20)]
    vfr = _encode(tmp_path / "vfr.mp4", len(t), pts=[int(round(x * 90000)) for x in t])
    got, d = _read(vfr)
    assert len(got) == 80 and d["timestamp_gaps"] == {"count": 0, "frames_est": 0, "largest_s": 0.0, "step_s": None}
    got, d = _read(_encode(tmp_path / "steady.mp4", 30))
    assert d["timestamp_gaps"]["count"] == 0 and d["timestamp_gaps"]["step_s"] == pytest.approx(1 / 30, abs=1e-6)
    assert d["timestamps_repaired"] == 0


def test_the_keys_are_there_before_a_read_and_realtime_does_not_hold_frames(tmp_path):
    """``timestamps_repaired`` and ``timestamp_gaps`` are always in the sidecar's input; a file played at its own
    pace (``realtime``) gets each frame as it is decoded, never one frame late."""
    path = _encode(tmp_path / "a.mp4", 10)
    with VideoSource(path) as s:
        d = s.describe()
        assert d["timestamps_repaired"] == 0 and d["timestamp_gaps"]["count"] == 0
        assert s._holds_frame()
    with VideoSource(path, realtime=True) as s:
        assert not s._holds_frame()


def test_the_rule_for_a_lone_frame():
    """Out of line with both neighbours while the next follows the one before: repaired, early or late. A frame
    one tick back (jitter, a repeat) is left to the one-tick repair; a clock that goes back and stays back (the next
    frame before the one before) is a discontinuity, not repaired here."""
    s = object.__new__(VideoSource)
    s.name, s.time_base, s._faulty = "fake", TB90K, [0, 0]

    def run(pts):
        s.timestamps_repaired = 0
        frames = [(SimpleNamespace(pts=p), 0.0) for p in pts]
        return [f.pts for f, _, _ in s._in_line(iter(frames), STEP)], s.timestamps_repaired

    assert run([0, 3000, 51000, 9000, 12000]) == ([0, 3000, 6000, 9000, 12000], 1)  # late
    assert run([0, 3000, 6000, -40000, 12000]) == ([0, 3000, 6000, 9000, 12000], 1)  # early
    assert run([0, 3000, 3000, 9000]) == ([0, 3000, 3000, 9000], 0)  # a repeat
    assert run([0, 3000, 6000, 5000, 9000]) == ([0, 3000, 6000, 5000, 9000], 0)  # within a frame
    assert run([87000, 90000, 0, 3000, 6000]) == ([87000, 90000, 0, 3000, 6000], 0)  # a restart
    assert run([0, 3000, 99000, 102000]) == ([0, 3000, 99000, 102000], 0)  # a jump ahead that stays
    assert run([0, None, 6000]) == ([0, None, 6000], 0)


def test_gap_summary_needs_a_steady_rate():
    assert _gap_summary(None, TB90K)["step_s"] is None
    assert _gap_summary({(3000, 1): 5}, TB90K)["step_s"] is None  # too few steps to say
    g = _gap_summary({(3000, 1): 50, (12000, 1): 1, (9000, 2): 1}, TB90K)  # 3 frames lost; 1 across a repair
    assert g == {"count": 2, "frames_est": 4, "largest_s": pytest.approx(0.1333, abs=1e-4), "step_s": 0.033333}
    assert _gap_summary({(3000, 1): 40, (1500, 1): 20, (6000, 1): 3}, TB90K)["step_s"] is None  # variable
