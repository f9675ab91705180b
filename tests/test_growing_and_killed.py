"""A run killed, a disk that fills, an input still being written or cut short (docs/reliability.md, "Outputs" and
"Inputs"):

* ``process``'s annotated MP4 is written as fragments while the run goes and made a plain MP4 when it closes: a
  ``process`` killed with SIGKILL left a video that played nowhere (no ``moov``: "Invalid data");
* FFmpeg's fragmenting muxer says nothing of writes that fail at its close: its missing trailer is taken as a failed
  write (a run under a file size limit exited 0 with a cut video);
* a failed video write says what became of the file (it said "video frames up to 41 were written" of a video it
  then removed);
* a file that grows while it is read (a recording in progress) says so; an MPEG-TS that ends inside a packet is cut
  short (both read as complete, without a word).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import List

import av
import numpy as np
import pytest

from realtime.sinks import VideoSink
from realtime.sources import VideoSource
from realtime.types import FramePacket

from .conftest import ROOT, offset_clip, real_frames, write_video

TB = Fraction(1, 25)


def _packet(i: int, img: np.ndarray) -> FramePacket:
    return FramePacket(index=i, pts=i, time_base=TB, timestamp=i / 25, image=img)


def _decoded(path: Path) -> List[int]:
    """The pts of the frames ``path`` decodes, up to damage (a file cut mid-fragment ends in a cut packet)."""
    pts: List[int] = []
    with av.open(str(path)) as c:
        try:
            for f in c.decode(video=0):
                pts.append(f.pts)
        except av.error.FFmpegError:
            pass
    return pts


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def faces() -> List[np.ndarray]:
    return real_frames(40)


# ------------------------------------------------------------------ 1. a process killed: its video plays
def _csv_frames(path: Path) -> int:
    """The frames whose rows a CSV being written holds (complete lines only)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return 0
    lines = text.split("\n")[1:-1]  # (no header; the last one may be cut)
    return len({ln.split(",", 1)[0] for ln in lines if ln})


def test_a_killed_process_leaves_a_video_that_plays_to_its_last_fragment(model, tmp_path, faces):
    """``process`` killed with SIGKILL mid-run: its CSV kept the frames so far, its MP4 (written with its index at
    the end) played nowhere, "Invalid data". Written as fragments while the run goes, it now decodes every frame up
    to its last fragment (a second at most short of the CSV, and the encoder's frames in hand)."""
    clip = write_video(tmp_path / "long.mp4", faces * 25)  # 1,000 frames, 40 s
    out = tmp_path / "out"
    code = "import sys\nfrom facecycle_cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "process", str(clip), "--model", str(model), "--out-dir",
                             str(out), "--no-progress"], cwd=str(ROOT), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    csv, video = out / "long.csv", out / "long.annotated.mp4"
    try:
        deadline = time.monotonic() + 240
        while _csv_frames(csv) < 150 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stderr:
            proc.stderr.close()
    written = _csv_frames(csv)
    assert 150 <= written < 1000, written
    pts = _decoded(video)  # (it raised InvalidDataError at the open)
    assert len(pts) >= max(25, written - 3 * 25), (len(pts), written)
    # (in order; the fragments' times are the encoder's delay late, 2 frames: the plain file made at the close
    # puts them back, test below)
    assert len(pts) <= written + 1 and pts == sorted(pts) and len(set(pts)) == len(pts)


# ------------------------------------------------------------------ 2. while written: fragments; closed: plain
def test_a_files_video_is_fragments_while_written_and_a_plain_mp4_when_closed(tmp_path, faces):
    """A copy taken while the sink writes (what a kill leaves) decodes up to its last fragment (about one a second);
    closed, the file is a plain MP4 as before (no ``moof``, every frame indexed): its frame count, duration, first
    frame at 0 and audio where it was muxed (the fragments move every stream by the encoder's delay, and stretch
    the audio's first packet back to 0: the copy puts them back), seekable in PyAV and OpenCV."""
    import cv2

    src = write_video(tmp_path / "src.mp4", faces * 3, audio=True)  # 120 frames, 4.8 s, AAC
    sink = VideoSink(tmp_path / "v.mp4", fps=25, time_base=TB, audio_from=str(src), preset="superfast")
    assert sink.interim_fragments and not sink.fragmented
    for i, img in enumerate(faces * 3):
        sink.write(_packet(i, img))
        if i == 99:
            shutil.copy(tmp_path / "v.mp4", tmp_path / "killed.mp4")
    got = _decoded(tmp_path / "killed.mp4")
    assert 50 <= len(got) < 100, len(got)
    sink.close(to_end=True)
    assert not sink.fragmented
    data = (tmp_path / "v.mp4").read_bytes()
    assert b"moof" not in data and b"mfra" not in data
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # (the copy replaced it)
    with av.open(str(tmp_path / "v.mp4")) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.frames == 120 and abs(float(v.duration * v.time_base) - 4.8) < 1e-6
        audio = [(p.pts, p.duration) for p in c.demux(a) if p.dts is not None]
    assert audio[0] == (0, 1024) and all(d == 1024 for _, d in audio[:-1])  # (the first was 5,028 samples)
    pts = _decoded(tmp_path / "v.mp4")
    assert len(pts) == 120 and pts[0] == 0
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    try:
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 120
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 60) and cap.read()[0]
        assert cap.get(cv2.CAP_PROP_POS_FRAMES) == 61
    finally:
        cap.release()
    with av.open(str(tmp_path / "v.mp4")) as c:
        v = c.streams.video[0]
        c.seek(int(3.0 / v.time_base), stream=v)
        assert next(c.decode(video=0)).pts * v.time_base <= 3.0


def test_a_recording_of_an_mpeg_ts_with_aac_audio_is_fragmented_and_plays(tmp_path, faces):
    """An MPEG-TS source's audio is ADTS AAC: with ``empty_moov`` (the index written before any packet) the
    fragmenting muxer refused it ("Malformed AAC bitstream detected", EPERM), so a recording of such a file played in
    real time failed at its first audio packet, and so would every ``process`` of a TS written as fragments."""
    clip = offset_clip(tmp_path / "a.ts", "mpegts", Fraction(1, 90000), 30, 10.5, 90, 10.18)
    for name, live in (("live.mp4", True), ("file.mp4", False)):
        with VideoSource(clip) as s:
            sink = VideoSink(tmp_path / name, s.fps, s.time_base, audio_from=s.path, preset="ultrafast",
                             fragmented=live)
            for pkt in s:
                sink.write(pkt)
            sink.close(to_end=True)
        assert sink.fragmented == live
        with av.open(str(tmp_path / name)) as c:
            assert c.streams.audio and sum(1 for p in c.demux(c.streams.audio[0]) if p.size) > 20
        assert len(_decoded(tmp_path / name)) == 90


# ------------------------------------------------------------------ 3. writes that failed: said as they are
_LIMITED = """
import resource, signal, sys
from fractions import Fraction
import numpy as np
from realtime.sinks import VideoSink
from realtime.types import FramePacket
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
fragmented, n = sys.argv[3] == "1", int(sys.argv[4])
sink = VideoSink(sys.argv[2], fps=25, time_base=Fraction(1, 25), preset="ultrafast", fragmented=fragmented)
rng = np.random.default_rng(0)
for i in range(n):
    img = rng.integers(0, 256, (180, 320, 3), np.uint8)
    try:
        sink.write(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25, image=img))
    except Exception as e:
        print("write:", e)
        break
try:
    sink.close()
    print("close: ok")
except Exception as e:
    print("close:", e)
print("removed:", sink.removed, "kept:", sink.kept_frames, "frames:", sink.frames)
"""


def _limited(tmp_path: Path, limit: int, fragmented: bool, n: int) -> List[str]:
    r = subprocess.run([sys.executable, "-c", _LIMITED, str(limit), str(tmp_path / "v.mp4"), "1" if fragmented
                        else "0", str(n)], capture_output=True, text=True, timeout=120, cwd=str(ROOT), env=_env())
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
def test_a_fragmented_video_whose_end_did_not_fit_is_not_taken_as_finished(tmp_path):
    """A live recording (fragmented) of six frames of noise under a 48 KiB file size limit: its one fragment,
    written at the close, is cut, and FFmpeg's fragmenting muxer said nothing (close: ok, a file of a cut first
    frame). Its missing trailer now fails the close, and the file, which plays nowhere, is removed. (A file's video,
    in fragments until it closes, likewise: tests/test_disk_full.py.)"""
    out = _limited(tmp_path, 48 * 1024, True, 6)
    assert out[0].startswith("close: ") and "file size limit reached (the video could not be finished: removed, it " \
        "would not play)" in out[0], out
    assert out[1].startswith("removed: True"), out
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
def test_a_failed_video_write_says_what_became_of_the_file(tmp_path):
    """A write that fails mid-run (a fragment that does not fit) finishes the file at once, and its error says what
    became of it: the frames it keeps, counted (it said "video frames up to N were written", also of a video then
    removed). The next close says it again, once."""
    out = _limited(tmp_path, 300 * 1024, False, 250)
    assert out[0].startswith("write: ") and "file size limit reached (the video is incomplete: it keeps " in out[0], out
    assert "were written" not in out[0]
    kept, sent = (int(w) for w in out[0].split("it keeps ")[1].split(" frames")[0].split(" of the "))
    assert 0 < kept < sent
    assert out[1] == "close: " + out[0][len("write: "):], out  # (the caller learns of it at its close too)
    assert out[2].startswith(f"removed: False kept: {kept} "), out
    assert len(_decoded(tmp_path / "v.mp4")) == kept


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE")
def test_a_video_removed_after_a_failed_write_is_said_removed(tmp_path):
    """The first fragment does not fit: the write's own error says the video was removed (the removal came later,
    in a warning, after an error line that said frames were written)."""
    out = _limited(tmp_path, 40 * 1024, False, 250)
    assert out[0].startswith("write: ") and out[0].endswith(
        "file size limit reached (the video could not be finished: removed, it would not play)"), out
    assert out[1] == "close: " + out[0][len("write: "):], out
    assert out[2].startswith("removed: True"), out
    assert not (tmp_path / "v.mp4").exists()


# ------------------------------------------------------------------ 4. an input still being written
def _ts(path: Path, faces: List[np.ndarray], n: int) -> Path:
    return write_video(path, (faces * (n // len(faces) + 1))[:n], fmt="mpegts")


def test_a_file_that_grows_while_read_says_so(tmp_path, faces, caplog):
    """An MPEG-TS appended to while it is read (a recording in progress) read as complete: the frames of its start,
    ``frames_missing`` 0, no word. Its size at the end is held against its size at open."""
    whole = _ts(tmp_path / "whole.ts", faces, 200).read_bytes()
    g = tmp_path / "growing.ts"
    g.write_bytes(whole[: len(whole) // 2 // 188 * 188])
    caplog.set_level(logging.WARNING, logger="realtime.sources.video")
    with VideoSource(g) as s:
        n = 0
        for _ in s:
            n += 1
            if n == 10:  # (the writer goes on)
                with open(g, "ab") as f:
                    f.write(whole[len(whole) // 2 // 188 * 188:])
        assert s.grew_while_read and not s.cut_short
        d = s.describe()
    assert d["grew_while_read"] is True and "cut_short" not in d  # (each there only where true)
    said = [r.getMessage() for r in caplog.records if "grew" in r.getMessage()]
    assert len(said) == 1, said
    assert "the file grew while it was read (a recording in progress?): rerun when it ends" in said[0]
    with VideoSource(tmp_path / "whole.ts") as s:  # read alone, whole: nothing said
        assert sum(1 for _ in s) == 200 and not s.grew_while_read and not s.cut_short


def test_a_ts_written_while_process_reads_it_is_said_to_have_grown(model, tmp_path, faces, capfd, caplog):
    """A writer process copies a TS in chunks with pauses while ``process`` reads it: the run says the file grew,
    and its sidecar's ``input.grew_while_read`` is true."""
    from facecycle_cli import main

    src = _ts(tmp_path / "src.ts", faces, 400)
    g = tmp_path / "rec.ts"
    writer = ("import sys, time\nd = open(sys.argv[1], 'rb').read()\nwith open(sys.argv[2], 'wb') as f:\n"
              "    for i in range(0, len(d), 16384):\n        f.write(d[i:i + 16384]); f.flush(); time.sleep(0.1)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(src), str(g)])
    try:
        while (not g.exists() or g.stat().st_size < 100_000) and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the writer ended before the run began"
        capfd.readouterr()
        caplog.set_level(logging.WARNING, logger="realtime.sources.video")
        rc = main(["process", str(g), "--model", str(model), "--out-dir", str(tmp_path / "out"), "--no-video",
                   "--no-progress"])
        err = capfd.readouterr()[1]
    finally:
        proc.wait(120)
    assert rc == 0, err
    said = [r.getMessage() for r in caplog.records if "grew" in r.getMessage()]
    assert said and "rec.ts: the file grew while it was read (a recording in progress?): rerun when it ends" in said[0]
    side = json.loads((tmp_path / "out" / "rec.json").read_text())
    assert side["input"]["grew_while_read"] is True
    end = [ln for ln in err.splitlines() if " -> " in ln]  # the run's end line says it too
    assert end and "the file grew while it was read" in end[-1], err


# ------------------------------------------------------------------ 5. an MPEG-TS cut short
def test_a_ts_cut_inside_a_packet_is_cut_short(tmp_path, faces, caplog):
    """``head -c 600000 x.ts``: a TS ending inside a packet read as complete (at most "damage read through"). It is
    now said to be cut short, without a made-up count of frames missing (a TS states no length); a TS cut between
    packets, or whole, is not; nor is an M2TS (192-byte packets) that is whole."""
    whole = _ts(tmp_path / "whole.ts", faces, 200).read_bytes()
    assert len(whole) % 188 == 0
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole[: len(whole) // 2 + 92 - (len(whole) // 2) % 188])  # 92 bytes of a last packet
    caplog.set_level(logging.WARNING, logger="realtime.sources.video")
    with VideoSource(cut) as s:
        n = sum(1 for _ in s)
        assert 0 < n < 200 and s.cut_short and not s.grew_while_read and s.frames_missing == 0
        assert s.describe()["cut_short"] is True
    said = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert len(said) == 1 and "its last MPEG-TS packet holds 92 of 188 bytes" in said[0], said
    between = tmp_path / "between.ts"
    between.write_bytes(whole[: len(whole) // 2 // 188 * 188])
    m2ts = tmp_path / "whole.m2ts"
    m2ts.write_bytes(b"".join(b"\0\0\0\0" + whole[i:i + 188] for i in range(0, len(whole), 188)))
    for p in (tmp_path / "whole.ts", between, m2ts):
        with VideoSource(p) as s:
            assert sum(1 for _ in s) > 0 and not s.cut_short, p.name
    m2cut = tmp_path / "cut.m2ts"
    m2cut.write_bytes(m2ts.read_bytes()[:-50])
    with VideoSource(m2cut) as s:
        assert sum(1 for _ in s) > 0 and s.cut_short


def test_a_cut_ts_reaches_the_sidecar(model, tmp_path, faces, capfd, caplog):
    from facecycle_cli import main

    whole = _ts(tmp_path / "w.ts", faces, 120).read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(whole[: len(whole) * 2 // 3 // 188 * 188 + 100])
    capfd.readouterr()
    caplog.set_level(logging.WARNING, logger="realtime.sources.video")
    rc = main(["process", str(cut), "--model", str(model), "--out-dir", str(tmp_path / "out"), "--no-video",
               "--no-progress"])
    err = capfd.readouterr()[1]
    assert rc == 0, err
    said = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
    assert said and "cut.ts: cut short (truncated file: its last MPEG-TS packet holds 100 of 188 bytes)" in said[0]
    side = json.loads((tmp_path / "out" / "cut.json").read_text())
    assert side["input"]["cut_short"] is True and "grew_while_read" not in side["input"]
    end = [ln for ln in err.splitlines() if " -> " in ln]  # the run's end line says it too
    assert end and "cut short (an MPEG-TS file that ends inside a packet" in end[-1], err

