"""The annotated video's timeline: it starts at 0 with its first frame, whatever the source's first PTS.

A probe found that a source whose first PTS was 10.5 s (MPEG-TS and Matroska files often start late; a broadcast
capture at 3,600 s) gave an MP4 that kept it: 2 s of video declared 12.5 s, the first 10.5 s an empty edit that
players honouring edit lists showed blank. Each frame's time is now its CSV ``timestamp``, and the copied audio is
moved by the same seconds, so it keeps its place against the frames (audio from before the first frame dropped).
"""
from __future__ import annotations

import csv
import struct
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from .conftest import offset_clip

av = pytest.importorskip("av")

START = 10.5  # the source's first video PTS, seconds
N = 30
RATE = 16000  # the audio's sample rate
AAC_FRAME = 1024 / RATE  # seconds of one AAC packet


def _make_clip(path: Path, fmt: str, tb: Fraction, rate: int, audio_start: Optional[float]) -> Path:
    """``N`` frames whose first PTS is ``START`` s, in ``tb``, at ``rate`` fps; a mono AAC track from
    ``audio_start`` s to a little past the last frame (None: no audio)."""
    return offset_clip(path, fmt, tb, rate, START, N, audio_start, RATE)


def _video_times(path: Path) -> Tuple[List[float], Optional[float]]:
    """The decoded frames' PTS × time base, and the video stream's start_time in seconds."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = None if s.start_time is None else float(s.start_time * s.time_base)
        times = [float(f.pts * f.time_base) for f in c.decode(s)]
    return times, start


def _raw_aac(data: bytes) -> bytes:
    """An AAC packet without its ADTS header (MPEG-TS holds one, MP4 none)."""
    if len(data) > 9 and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
        return data[7 if data[1] & 1 else 9:]
    return data


def _audio_packets(path: Path) -> List[Tuple[float, bytes]]:
    """(time in seconds, raw AAC bytes) of the audio packets, in order."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        a = c.streams.audio[0]
        return [(float((p.pts if p.pts is not None else p.dts) * p.time_base), _raw_aac(bytes(p)))
                for p in c.demux(a) if p.size and p.dts is not None]


def _mp4_declared_seconds(path: Path) -> float:
    """The movie's duration as its ``mvhd`` box declares it (what players show, edit lists included: FFmpeg's
    ``container.duration`` is the last time less the first, which hid the empty edit)."""
    b = path.read_bytes()

    def boxes(off: int, end: int):
        while off + 8 <= end:
            size, kind = struct.unpack(">I4s", b[off:off + 8])
            head = 8
            if size == 1:
                size, head = struct.unpack(">Q", b[off + 8:off + 16])[0], 16
            elif size == 0:
                size = end - off
            yield kind, off + head, off + size
            off += size

    for kind, body, end in boxes(0, len(b)):
        if kind == b"moov":
            for k2, b2, _ in boxes(body, end):
                if k2 == b"mvhd":
                    if b[b2] == 1:
                        scale, dur = struct.unpack(">IQ", b[b2 + 20:b2 + 32])
                    else:
                        scale, dur = struct.unpack(">II", b[b2 + 12:b2 + 20])
                    return dur / scale
    raise AssertionError(f"{path}: no mvhd")


def _csv_times(path: Path) -> List[float]:
    """The CSV's timestamp of each frame, in frame order."""
    by_frame = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            by_frame.setdefault(int(r["frame"]), float(r["timestamp"]))
    return [by_frame[k] for k in sorted(by_frame)]


def _process(clip: Path, out: Path, model: Path, *more: str) -> Path:
    from facecycle_cli import main

    rc = main(["process", str(clip), "--model", str(model), "--backend", "onnxruntime", "--out-dir", str(out),
               "--no-progress", *more])
    assert rc == 0
    return out / (clip.stem + ".annotated.mp4")


CASES = [  # (name, container, time base, fps, audio start in s or None)
    ("ts_noaudio", "mpegts", Fraction(1, 90000), 30, None),
    ("mkv_noaudio", "matroska", Fraction(1, 1000), 25, None),
    ("ts_audio_before", "mpegts", Fraction(1, 90000), 30, 10.18),  # audio 0.32 s before the first frame
    ("mkv_audio_after", "matroska", Fraction(1, 1000), 25, 10.7),  # audio 0.2 s after it
]


@pytest.mark.parametrize("name,fmt,tb,rate,audio_start", CASES, ids=[c[0] for c in CASES])
def test_annotated_video_starts_at_zero_with_the_csv_times_and_audio_in_sync(tmp_path, model, name, fmt, tb,
                                                                              rate, audio_start):
    clip = _make_clip(tmp_path / f"{name}.{'ts' if fmt == 'mpegts' else 'mkv'}", fmt, tb, rate, audio_start)
    src_times, _ = _video_times(clip)
    assert len(src_times) == N and src_times[0] == pytest.approx(START, abs=1e-3)  # (the case: a late start)
    video = _process(clip, tmp_path / "out", model)
    times, start = _video_times(video)
    assert start == pytest.approx(0.0, abs=1e-9)
    assert times[0] == pytest.approx(0.0, abs=1e-9)
    declared = _mp4_declared_seconds(video)
    assert declared < 1.5, declared  # (it was 12.5 s for 1.2 s of video)
    # every frame's time is its CSV timestamp (and the source's spacing: not resampled)
    ts = _csv_times(tmp_path / "out" / f"{name}.csv")
    assert len(ts) == len(times) == N
    assert times == pytest.approx(ts, abs=1e-3)
    assert times == pytest.approx([t - src_times[0] for t in src_times], abs=1e-3)
    src_audio, out_audio = _audio_packets(clip), _audio_packets(video)
    assert bool(out_audio) == (audio_start is not None)
    if not src_audio:
        return
    # the audio's offset to the first frame is the source's (audio from before the first frame is dropped: it
    # then starts within one audio frame of the video)
    src_offset = src_audio[0][0] - src_times[0]
    assert out_audio[0][0] - times[0] == pytest.approx(max(src_offset, 0.0), abs=AAC_FRAME)
    assert out_audio[0][0] >= 0.0
    # and each packet copied is where it was against the frames
    kept = [(t - src_times[0], data) for t, data in src_audio if t - src_times[0] >= -1e-9]
    assert [d for _, d in out_audio] == [d for _, d in kept[:len(out_audio)]]
    assert [t for t, _ in out_audio] == pytest.approx([t for t, _ in kept[:len(out_audio)]], abs=1e-3)
    assert out_audio[-1][0] == pytest.approx(kept[-1][0], abs=1e-3)  # read to its end: all of it copied


def test_max_frames_cuts_the_moved_audio_at_the_last_frame(tmp_path, model):
    """``--max-frames`` still cuts the audio at the last frame and one frame more, on the moved timeline."""
    clip = _make_clip(tmp_path / "mf.ts", "mpegts", Fraction(1, 90000), 30, 10.18)
    video = _process(clip, tmp_path / "out", model, "--max-frames", "10")
    times, start = _video_times(video)
    assert start == pytest.approx(0.0, abs=1e-9) and len(times) == 10
    audio = _audio_packets(video)
    assert audio and 0.0 <= audio[0][0] < AAC_FRAME
    assert times[-1] < audio[-1][0] <= times[-1] + 1 / 30 + 1e-3
    assert _mp4_declared_seconds(video) < 0.5
