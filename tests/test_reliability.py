"""Reliability of ``facecycle process`` / ``facecycle live`` on bad inputs, failing outputs and damaged models.

Every test makes its own bad input (PyAV writes odd formats; truncation and corruption are byte surgery on a
file the test wrote) and checks the documented behaviour (docs/reliability.md): the exit code, a single
``facecycle: error: ...`` line without a traceback, and, where rows were produced, a CSV that parses
completely. Frames with faces come from a real clip in ../shared when present (synthetic otherwise).
Most cases run the CLI in-process (``facecycle_cli.main``) with ``capfd`` (so FFmpeg/OpenCV writes to fd 2
are seen too); a few run it as a subprocess to see exactly what a user sees.
"""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Sequence

import av
import cv2
import numpy as np
import pytest

from facecycle_cli import main

from .conftest import (
    FACE_CLIP,
    ROOT,
    StubCapture,
    decode_count,
    frames_of,
    one_error_line,
    read_csv,
    real_frames,
    write_video,
)


@pytest.fixture(scope="module")
def faces40() -> List[np.ndarray]:
    return real_frames(40)


@pytest.fixture
def cli(model, tmp_path, capfd):
    """Run ``facecycle process INPUT... --model tiny --out-dir tmp/out`` in-process: (rc, stdout, stderr)."""

    def run(*args: str, out: Optional[Path] = None, cmd: str = "process", model_dir: Optional[Path] = None):
        argv = [cmd, *map(str, args)]
        if cmd in ("process", "live"):
            argv += ["--model", str(model_dir or model)]
        if cmd == "process":
            argv += ["--no-progress", "--out-dir", str(out or tmp_path / "out")]
        capfd.readouterr()
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
        o, e = capfd.readouterr()
        return rc, o, e

    return run


def run_subprocess(args: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "facecycle", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT), env=env)


# ------------------------------------------------------------------------------------ 1. bad inputs
def test_missing_path(cli, tmp_path):
    rc, _, err = cli(tmp_path / "nope.mp4")
    assert rc == 3
    assert "no such file" in one_error_line(err)
    assert not (tmp_path / "out" / "nope.csv").exists()


def test_directory_without_images(cli, tmp_path):
    d = tmp_path / "clips.mp4"  # a folder, even one named like a video
    d.mkdir()
    (d / "notes.txt").write_text("x")
    rc, _, err = cli(d)
    assert rc == 3
    assert "no images" in one_error_line(err) and "HEIC" not in one_error_line(err)
    for i in range(3):  # a phone's photos: the line says what the folder holds and what to do
        (d / f"IMG_{i:04d}.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    rc, _, err = cli(d)
    assert rc == 3
    assert "no images" in one_error_line(err) and "3 .heic" in one_error_line(err) \
        and "convert them to JPEG" in one_error_line(err)
    rc, _, err = cli(d / "IMG_0000.HEIC")  # one of them given alone
    assert rc == 3 and "convert it to JPEG" in one_error_line(err)


def test_folder_of_videos_points_to_its_files(cli, tmp_path):
    """A folder of videos given to ``process`` (which reads a folder as an image sequence): one line that says what
    it holds and how to process it, instead of only "no images"."""
    d = tmp_path / "clips"
    d.mkdir()
    for name in ("a.mp4", "b.MOV"):
        (d / name).write_bytes(b"x")
    rc, _, err = cli(d)
    assert rc == 3
    line = one_error_line(err)
    assert "no images" in line and "2 video files" in line and "facecycle batch" in line, line

def test_zero_byte_file(cli, tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    rc, _, err = cli(p)
    assert rc == 3
    assert "empty file" in one_error_line(err)


def test_random_bytes_named_mp4_subprocess(model, tmp_path):
    p = tmp_path / "noise.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    r = run_subprocess(["process", p, "--model", model, "--out-dir", tmp_path / "out", "--no-progress"])
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "cannot open as a video" in one_error_line(r.stderr)
    assert r.stdout == ""
    assert not (tmp_path / "out" / "noise.csv").exists()


def test_truncated_streamable_file_keeps_what_decodes(cli, tmp_path, faces40, code_dim):
    """A Matroska file cut at 60 %: the frames before the cut are processed, the loss is reported."""
    src = write_video(tmp_path / "full.mkv", faces40)
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    rc, _, err = cli(cut)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "frames missing (truncated or damaged file)" in err
    rows = read_csv(tmp_path / "out" / "cut.csv", code_dim)
    frames = frames_of(rows)
    assert frames == list(range(len(frames))) and 5 <= len(frames) < 40
    side = json.loads((tmp_path / "out" / "cut.json").read_text())
    assert side["status"] == "complete"
    assert side["input"]["frames_decoded"] == len(frames)
    assert side["input"]["frames_missing"] == 40 - len(frames)
    assert decode_count(tmp_path / "out" / "cut.annotated.mp4") == len(frames)


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
def test_an_avi_cut_in_half_reports_its_missing_frames(cli, tmp_path, faces40, code_dim, codec):
    """An AVI's header counts its frames, and FFmpeg's duration of a cut AVI is only what its data still holds: the
    smaller of the two hid the cut (an MJPEG AVI cut in half read as complete, 35 frames of 35)."""
    src = write_video(tmp_path / "full.avi", faces40, codec=codec, pix_fmt="yuvj420p" if codec == "mjpeg" else
                      "yuv420p")
    data = src.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    rc, _, err = cli(cut, "--no-video")
    assert rc == 0, err
    assert "frames missing (truncated or damaged file)" in err
    side = json.loads((tmp_path / "out" / "cut.json").read_text())
    n = len(frames_of(read_csv(tmp_path / "out" / "cut.csv", code_dim)))
    assert 1 <= n < 30 and side["input"]["frame_count"] == 40 and side["input"]["frames_missing"] == 40 - n
    rc, _, err = cli(src, "--no-video")  # the whole file: nothing missing
    assert rc == 0 and "missing" not in err, err
    assert json.loads((tmp_path / "out" / "full.json").read_text())["input"]["frames_missing"] == 0


def _encode(path: Path, sizes_pts: Sequence[tuple], fmt: Optional[str] = None) -> Path:
    """A file of mpeg4 streams: one per (width, height, [pts in ms]) of ``sizes_pts``, a moving grey ramp."""
    with av.open(str(path), "w", format=fmt) as out:
        streams = []
        for w, h, _ in sizes_pts:
            st = out.add_stream("mpeg4", rate=25)
            st.width, st.height, st.pix_fmt = w, h, "yuv420p"
            st.codec_context.time_base = Fraction(1, 1000)
            streams.append(st)
        for st, (w, h, pts) in zip(streams, sizes_pts, strict=True):
            for i, t in enumerate(pts):
                img = np.full((h, w, 3), (i * 5) % 255, np.uint8)
                f = av.VideoFrame.from_ndarray(img, format="bgr24")
                f.pts, f.time_base = t, Fraction(1, 1000)
                for pk in st.encode(f):
                    out.mux(pk)
            for pk in st.encode():
                out.mux(pk)
    return path


def _read_whole(path: Path):
    """Read every frame of ``path`` with a VideoSource: (frames read, the closed source)."""
    from realtime.sources.video import VideoSource

    src = VideoSource(str(path))
    try:
        n = sum(1 for _ in src)
    finally:
        src.close()
    return n, src


def test_whole_files_without_a_sample_count_are_judged_complete_by_their_time(tmp_path, caplog):
    """Where a container does not count its samples (Matroska, WebM, MPEG-TS, FLV) the frame count is its duration
    times the nominal rate. A Matroska file starting at 10 s read as 250 of 310 frames missing (its duration
    counts from 0), and a variable-frame-rate one as 18 missing: both were reported truncated. Completeness is now
    judged by the time the frames span; a cut file still says so."""
    read = _read_whole
    late = _encode(tmp_path / "late.mkv", [(160, 120, [10_000 + 40 * i for i in range(60)])])
    vfr = _encode(tmp_path / "vfr.mkv", [(160, 120, list(np.cumsum([0] + [40, 40, 120, 40, 200] * 12)))])
    with caplog.at_level("WARNING", logger="realtime.sources.video"):
        for path, frames in ((late, 60), (vfr, 61)):
            n, src = read(path)
            assert n == frames and src.frames_missing == 0, (path.name, src.frame_count)
        assert "truncated" not in caplog.text
    data = late.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
    n, src = read(tmp_path / "cut.mkv")
    assert n < 45 and src.frames_missing >= 60 - n - 3


@pytest.mark.parametrize("codec", ["flv", "libx264"])
def test_audio_running_on_past_the_last_frame_is_no_missing_frame(tmp_path, caplog, codec):
    """An FLV's video stream states no length of its own, and its container's is its longest stream's: a whole FLV
    (FLV1 video, 75 frames = 2.5 s; MP3 audio of 2.9 s) said "decoded 75 frames over 2.50 of 2.98 s (truncated or
    damaged file; ~14 frames missing)", and its sidecar ``frames_missing`` 14, ``frame_count`` 89; H.264 with
    B-frames and AAC "~3 frames missing". The other streams' packets that run on past the last frame are the
    file's: it is whole. The same FLV cut in half still says what it lacks."""
    frames = [np.full((48, 64, 3), (i * 8) % 256, np.uint8) for i in range(30)]
    path = write_video(tmp_path / "long_audio.flv", frames, codec=codec, fmt="flv", rate=30, audio=True,
                       audio_seconds=1.6, options={"bf": "2"} if codec == "libx264" else None)
    with av.open(str(path)) as c:  # the premise: no length of the video's own, the container's past its end
        v = c.streams.video[0]
        assert not v.duration and len(c.streams.audio) == 1 and c.duration / 1e6 > 1.4
    with caplog.at_level("WARNING", logger="realtime.sources.video"):
        n, src = _read_whole(path)
    assert n == 30 and src.frames_missing == 0 and src.frame_count == 30, (n, src.frames_missing, src.frame_count)
    assert src.describe()["frames_missing"] == 0 and "truncated" not in caplog.text, caplog.text
    # a whole file with no other stream: unchanged, nothing missing
    alone = write_video(tmp_path / "alone.flv", frames, codec=codec, fmt="flv", rate=30)
    n, src = _read_whole(alone)
    assert n == 30 and src.frames_missing == 0 and src.frame_count == 30
    # the long-audio FLV cut mid-file: its streams all end early, and the loss is reported
    data = path.read_bytes()
    (tmp_path / "cut.flv").write_bytes(data[: len(data) // 2])
    caplog.clear()
    with caplog.at_level("WARNING", logger="realtime.sources.video"):
        n, src = _read_whole(tmp_path / "cut.flv")
    assert 3 <= n < 25 and src.frames_missing >= 30 - n - 3, (n, src.frames_missing)
    assert src.frame_count == n + src.frames_missing and "truncated or damaged file" in caplog.text


def test_a_whole_flv_with_longer_audio_has_nothing_missing_in_its_sidecar(cli, tmp_path, faces40):
    """``process`` of a whole FLV whose audio runs 0.5 s past its last frame: no "truncated" line, and the sidecar
    counts the frames decoded (it said ``frame_count`` 89 and ``frames_missing`` 14 of a 75-frame FLV)."""
    path = write_video(tmp_path / "a.flv", faces40[:30], codec="flv", fmt="flv", rate=30, audio=True,
                       audio_seconds=1.5)
    rc, _, err = cli(path, "--no-video", "--csv")
    assert rc == 0, err
    assert "truncated" not in err and "missing" not in err, err
    side = json.loads((tmp_path / "out" / "a.json").read_text())["input"]
    assert side["frames_decoded"] == 30 and side["frame_count"] == 30 and side["frames_missing"] == 0, side


def test_the_largest_picture_is_read_and_a_cover_image_is_no_video(tmp_path):
    """A file with a small proxy stream first read the proxy without a word; an MP3 with cover art was analysed as
    a one-frame video with ~270,000 frames "missing"."""
    from facecycle.errors import InputError
    from realtime.sources.video import VideoSource

    two = _encode(tmp_path / "two.mkv", [(96, 64, [40 * i for i in range(10)]), (192, 128, [40 * i for i in
                                                                                            range(10)])])
    src = VideoSource(str(two))
    try:
        assert (src.width, src.height) == (192, 128) and src.describe()["stream"] == 1
    finally:
        src.close()
    path = tmp_path / "song.mp3"
    try:
        with av.open(str(path), "w") as out:
            a = out.add_stream("libmp3lame", rate=44100)
            a.layout = "mono"
            v = out.add_stream("mjpeg", rate=1)
            v.width, v.height, v.pix_fmt = 64, 64, "yuvj420p"
            v.disposition = av.stream.Disposition.attached_pic
            f = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24").reformat(
                format="yuvj420p")
            f.pts, f.time_base = 0, Fraction(1)
            for pk in [*v.encode(f), *v.encode()]:
                out.mux(pk)
            fmt, n = a.codec_context.format.name, a.codec_context.frame_size or 1152
            dtype = np.float32 if "flt" in fmt else np.int32 if "32" in fmt else np.int16
            for k in range(20):
                af = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype), format=fmt, layout="mono")
                af.sample_rate, af.pts, af.time_base = 44100, k * n, Fraction(1, 44100)
                for pk in a.encode(af):
                    out.mux(pk)
            for pk in a.encode():
                out.mux(pk)
    except (av.error.FFmpegError, ValueError, AttributeError, TypeError) as e:
        pytest.skip(f"this PyAV cannot write an MP3 with cover art here ({e})")
    with pytest.raises(InputError, match="cover image"):
        VideoSource(str(path))


def test_samples_an_edit_list_hides_are_not_missing_frames(caplog):
    """3ddfa_obama.mp4 (a real clip) holds 158 video samples and plays 55: its MP4 edit list starts after the first
    103, which the decoder drops as every player does. Counted as samples, the clip read as truncated: the end
    line said "~103 frames missing (truncated or damaged file)" and the sidecar's ``frames_missing`` said 103."""
    from realtime.sources.video import VideoSource

    from .conftest import shared_video

    path = shared_video("3ddfa_obama.mp4")
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 158  # the samples in the file (the test's premise)
    src = VideoSource(str(path))
    try:
        with caplog.at_level("WARNING", logger="realtime.sources.video"):
            n = sum(1 for _ in src)
    finally:
        src.close()
    assert n == 55 and src.frame_count == 55 and src.frames_missing == 0
    assert "truncated" not in caplog.text

def test_the_main_picture_not_a_cover_image_stream(cli, tmp_path, faces40, code_dim):
    """A Matroska file whose first video stream is a one-frame cover image (MJPEG) and whose second is the video:
    the video is processed (FFmpeg's best stream, as players choose). It used to take the first stream: one frame
    of the cover, no face, exit 0, the 40 frames silently left out."""
    path = tmp_path / "cover_first.mkv"
    with av.open(str(path), "w") as c:
        cover = c.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 96, 96, "yuvj420p"
        video = c.add_stream("libx264", rate=25)
        video.height, video.width = faces40[0].shape[:2]
        video.pix_fmt = "yuv420p"
        grey = av.VideoFrame.from_ndarray(np.full((96, 96, 3), 128, np.uint8), format="rgb24")
        grey = grey.reformat(format="yuvj420p")
        for pkt in [*cover.encode(grey), *cover.encode()]:
            c.mux(pkt)
        for f in faces40:
            for pkt in video.encode(av.VideoFrame.from_ndarray(f, format="bgr24").reformat(format="yuv420p")):
                c.mux(pkt)
        for pkt in video.encode():
            c.mux(pkt)
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "mjpeg"  # the test's premise: the cover comes first
    rc, _, err = cli(path, "--no-video")
    assert rc == 0, err
    frames = frames_of(read_csv(tmp_path / "out" / "cover_first.csv", code_dim))
    assert frames == list(range(40)), frames[:5]

@pytest.fixture
def http_dir(tmp_path):
    """(folder, base URL): a local HTTP server (the standard library's, which answers no range requests) serving a
    folder, for the life of the test."""
    from .conftest import serve_folder

    root = tmp_path / "served"
    root.mkdir()
    with serve_folder(root) as url:
        yield root, url


def test_a_video_file_over_http_is_read_whole(cli, tmp_path, faces40, code_dim, http_dir):
    """An MP4 on a web server (index first, as web video is written) is a file, not a live stream: every frame is
    processed. Stream URLs were all treated as live, which drops the oldest queued frame when the pipeline is
    behind: 135 of a served clip's 169 frames were dropped. A file whose index is at its end cannot stream from a
    server without range requests: one line says why and what to do."""
    root, base = http_dir
    write_video(root / "web.mp4", faces40, container_options={"movflags": "+faststart"})
    # the index at the end (a plain MP4 write), behind lossless noise too large for FFmpeg to read through
    noise = np.random.default_rng(0).integers(0, 256, (40, *faces40[0].shape), dtype=np.uint8)
    tail = write_video(root / "tail.mp4", list(noise), options={"crf": "0"})
    assert tail.stat().st_size > 512 * 1024  # the test's premise
    rc, _, err = cli(f"{base}/web.mp4", "--no-video")
    assert rc == 0, err
    frames = frames_of(read_csv(tmp_path / "out" / "web.csv", code_dim))
    assert frames == list(range(40)), frames
    side = json.loads((tmp_path / "out" / "web.json").read_text())
    assert side["input"]["live"] is False and side["stats"]["drops"] == 0
    # a query (a signed or versioned URL) is not part of the outputs' name: it made "web.mp4?v=1.csv"
    rc, _, err = cli(f"{base}/web.mp4?v=1.2&sig=a%2Fb", "--no-video", "--overwrite")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["web.csv", "web.json"]
    # two cameras' URLs without a path are named after their hosts, not both "stream"
    rc, _, err = cli("rtsp://127.0.0.1:9/", "rtsp://localhost:9", "--no-video")
    assert rc == 3 and "would write the same outputs" not in err, err
    rc, _, err = cli(f"{base}/tail.mp4", "--no-video")
    assert rc == 3
    assert "range requests" in one_error_line(err) and "faststart" in one_error_line(err)

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_named_pipe_is_read_once_in_full(cli, tmp_path, faces40, code_dim, caplog):
    """A named pipe fed by another program (``ffmpeg … -f matroska - > pipe``, or /dev/stdin of a shell pipe): every
    frame is read, once; the look-ahead, which reads a file twice, stays off and says so. A pipe's size is 0, and
    the input used to be refused as an "empty file (0 bytes)"."""
    src = write_video(tmp_path / "src.mkv", faces40)
    fifo = tmp_path / "feed.mkv"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(src.read_bytes())

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    with caplog.at_level("WARNING"):
        rc, _, err = cli(fifo, "--no-video", "--baseline-lookahead")
    t.join(timeout=30)
    assert rc == 0, err
    assert frames_of(read_csv(tmp_path / "out" / "feed.csv", code_dim)) == list(range(40))
    side = json.loads((tmp_path / "out" / "feed.json").read_text())
    assert side["input"]["frames_decoded"] == 40 and side["input"]["errors"] == 0
    assert side["person_baseline"]["lookahead"] is False
    assert "baseline look-ahead needs a video file" in caplog.text

@pytest.mark.skipif(not Path("/dev/stdin").exists(), reason="reading standard input needs /dev/stdin")
def test_a_dash_reads_standard_input(model, tmp_path, faces40, code_dim):
    """``… | facecycle process -``: the conventional name for standard input. It used to be refused as "-: no such
    file or folder". An MPEG-TS piped in is read whole into ``stdin.*``; an MP4 with its index at the end cannot be
    read through a pipe, and the one line says what to pipe instead; a terminal on stdin is refused at once (it
    would wait for ever); ``-`` twice is a usage error."""
    import pty

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out"

    def run(*args: str, data: Optional[bytes] = None, stdin=None, to: Path = out) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "facecycle", "process", *args, "--model", str(model), "--no-progress",
                "--no-video", "--out-dir", str(to)]
        return subprocess.run(argv, input=data, stdin=stdin, capture_output=True, timeout=120, cwd=str(ROOT),
                              env=env)

    ts = write_video(tmp_path / "src.ts", faces40, fmt="mpegts")
    r = run("-", data=ts.read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    assert frames_of(read_csv(out / "stdin.csv", code_dim)) == list(range(40))
    assert json.loads((out / "stdin.json").read_text())["input"]["frames_decoded"] == 40
    # PyAV writes the index at the end; behind lossless noise too large for FFmpeg's buffer to read through
    noise = np.random.default_rng(0).integers(0, 256, (40, *faces40[0].shape), dtype=np.uint8)
    tail = write_video(tmp_path / "tail.mp4", list(noise), options={"crf": "0"})
    assert tail.stat().st_size > 512 * 1024  # the test's premise
    r = run("-", "--overwrite", data=tail.read_bytes())
    assert r.returncode == 3
    line = one_error_line(r.stderr.decode())
    assert "through a pipe" in line and "mpegts" in line, line
    # --overwrite did not cost the earlier result: a run that fails before its first frame replaces nothing
    assert json.loads((out / "stdin.json").read_text())["status"] == "complete"
    assert frames_of(read_csv(out / "stdin.csv", code_dim)) == list(range(40))
    # into a new folder it leaves a failed sidecar; the corrected command needs no --overwrite there: what a run
    # left that failed before its first frame holds no data
    fresh = tmp_path / "fresh"
    assert run("-", data=tail.read_bytes(), to=fresh).returncode == 3
    assert json.loads((fresh / "stdin.json").read_text())["status"] == "failed"
    r = run("-", data=ts.read_bytes(), to=fresh)
    assert r.returncode == 0, r.stderr.decode()
    assert "failed before its first frame" in r.stderr.decode()
    assert frames_of(read_csv(fresh / "stdin.csv", code_dim)) == list(range(40))
    r = run("-", data=ts.read_bytes(), to=fresh)  # a complete run's outputs stay protected
    assert r.returncode == 4 and "--overwrite" in one_error_line(r.stderr.decode())
    # only what the failed run left is replaced: a video another run made there stays protected
    other = tmp_path / "other"
    other.mkdir()
    (other / "stdin.annotated.mp4").write_bytes(b"another run's video")
    assert run("-", data=tail.read_bytes(), to=other).returncode == 3
    argv = [sys.executable, "-m", "facecycle", "process", "-", "--model", str(model), "--no-progress",
            "--out-dir", str(other)]
    r = subprocess.run(argv, input=ts.read_bytes(), capture_output=True, timeout=120, cwd=str(ROOT), env=env)
    assert r.returncode == 4 and "stdin.annotated.mp4: exists" in one_error_line(r.stderr.decode())
    assert (other / "stdin.annotated.mp4").read_bytes() == b"another run's video"
    r = run("-", "-", data=b"")
    assert r.returncode == 2 and "standard input can be given once" in one_error_line(r.stderr.decode())
    master, slave = pty.openpty()
    try:
        r = run("-", stdin=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2 and "standard input is a terminal" in one_error_line(r.stderr.decode())


def test_joined_ts_segments_keep_time_running(cli, tmp_path, faces40, code_dim):
    """Two MPEG-TS segments joined byte for byte (as captures and HLS segments are), each clock starting at 0: the
    CSV's timestamps go on at 25 fps across the join and the sidecar counts the restart. They used to freeze
    (each frame one 90 kHz tick after the last), so per-track time (smoothing, the lost-track buffer, the baseline's
    warm-up) stood still for the rest of the file."""
    parts = [write_video(tmp_path / f"seg{k}.ts", faces40[20 * k: 20 * k + 20], fmt="mpegts") for k in (0, 1)]
    joined = tmp_path / "joined.ts"
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    rc, _, err = cli(joined, "--no-video")
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "joined.csv", code_dim)
    ts = sorted({(int(r["frame"]), float(r["timestamp"])) for r in rows})
    assert [f for f, _ in ts] == list(range(40))
    assert np.allclose(np.diff([t for _, t in ts]), 0.04, atol=1e-6), [t for _, t in ts]
    side = json.loads((tmp_path / "out" / "joined.json").read_text())
    assert side["input"]["timestamp_discontinuities"] == 1
    # the demuxer flags the packet at the join (its continuity count breaks), which decoded: damage read through,
    # not "1 damaged packet skipped", as the end line and `errors` said of every join
    assert side["input"]["errors"] == 0 and side["input"]["damaged"] >= 1, side["input"]
    assert "skipped" not in err.splitlines()[-1] and "segments joined" in err.splitlines()[-1], err

def test_truncated_mp4_without_index_is_a_clear_error(cli, tmp_path, faces40):
    """An MP4 whose writer was killed has no moov atom: nothing decodes; say so (exit 3)."""
    src = write_video(tmp_path / "full.mp4", faces40[:20])
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    rc, _, err = cli(cut)
    assert rc == 3
    assert "moov atom" in one_error_line(err)


@pytest.mark.parametrize("name,data,says", [
    ("page.mp4", b"<!DOCTYPE html>\n<html><body>Not Found</body></html>\n", "holds HTML, not a video"),
    ("notes.avi", "README: caf\u00e9 notes\n".encode() * 40, "holds text, not a video"),
    ("noise.mp4", bytes(range(256)) * 8, "Invalid data"),
    ("photo.jpg", b"just some words\n", "holds text, not a picture or a video")])
def test_a_file_that_is_no_video_says_what_it_holds(cli, tmp_path, name, data, says):
    """A web page saved under a video's name, a README renamed: the error said that a cut recording's index (moov
    atom) was missing, or "corrupt header?"; it now says what the file holds. Bytes that start as no MP4 get no
    moov hint."""
    (tmp_path / name).write_bytes(data)
    rc, _, err = cli(tmp_path / name, "--no-video")
    assert rc == 3, err
    line = one_error_line(err)
    assert says in line and "moov" not in line, line


def test_truncated_faststart_mp4_keeps_what_decodes(cli, tmp_path, faces40, code_dim):
    src = write_video(tmp_path / "fs.mp4", faces40, container_options={"movflags": "faststart"})
    data = src.read_bytes()
    cut = tmp_path / "fscut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    rc, _, err = cli(cut)
    assert rc == 0, err
    assert "frames missing" in err
    frames = frames_of(read_csv(tmp_path / "out" / "fscut.csv", code_dim))
    assert frames == list(range(len(frames))) and 5 <= len(frames) < 40


def _corrupt(path: Path, fracs=(0.4, 0.55, 0.7), share: float = 0.012) -> Path:
    """Overwrite three regions of ``share`` of the file each (at least two 188-byte TS packets) with noise.

    The damage is relative to the file size: the synthetic frames used without ../shared compress ~6x better
    than the real clip, and a fixed byte count wiped a third of such a file (issue 12).
    """
    data = bytearray(path.read_bytes())
    n = max(376, int(len(data) * share))
    rng = np.random.default_rng(1)
    for f in fracs:
        i = int(len(data) * f)
        data[i:i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    out = path.with_name("bad_" + path.name)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("codec,pix_fmt,name,fmt", [("mjpeg", "yuvj420p", "clip.avi", None),
                                                    ("libx264", "yuv420p", "clip.ts", "mpegts")])
def test_corrupt_packets_in_the_middle_are_skipped_and_counted(cli, tmp_path, faces40, code_dim, codec, pix_fmt,
                                                                name, fmt):
    bad = _corrupt(write_video(tmp_path / name, faces40, codec=codec, pix_fmt=pix_fmt, fmt=fmt))
    rc, _, err = cli(bad)
    assert rc == 0, err
    assert "Traceback" not in err
    stem = bad.stem
    frames = frames_of(read_csv(tmp_path / "out" / f"{stem}.csv", code_dim))
    assert frames == list(range(len(frames)))
    # decoded around the damage, up to the end; the decoder may conceal every damaged frame (x264's threaded encode
    # and decode make the count vary from run to run: all 40 came back in about 1 run in 6), so no frame need be lost
    assert 25 <= len(frames) <= 40
    side = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
    # damage counted: packets skipped (`errors`) or read through (`damaged`: frames concealed, packets the demuxer
    # flagged that decoded); the end line says each
    assert side["input"]["errors"] + side["input"]["damaged"] >= 1
    assert side["stats"]["decode_errors"] == side["input"]["errors"]
    assert bool(re.search(r"\d+ damaged packets? skipped", err)) == (side["input"]["errors"] > 0)
    assert bool(re.search(r"damage read through in \d+ places?", err)) == (side["input"]["damaged"] > 0)
    # the frames after the last damaged region were decoded: the last rows are late frames
    assert frames[-1] >= 30


def test_an_image_folder_with_an_unreadable_image_says_so_in_its_own_words(cli, tmp_path, faces40):
    import cv2

    folder = tmp_path / "stills"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), faces40[0])
    (folder / "001.jpg").write_text("not an image")
    rc, _, err = cli(folder)
    assert rc == 0, err
    last = err.strip().splitlines()[-1]
    assert "stills: 1 frame (read as separate pictures" in last and "1 unreadable image skipped" in last
    assert "packets" not in last


def test_a_picture_whose_name_is_not_utf8_is_read_and_named_with_escapes(tmp_path, faces40):
    """``cv2.imread`` crashed the interpreter (exit 139, no message, the sidecar left "running") on a file name that
    is not valid UTF-8; the folder is read, and the CSV's ``file`` column names it with ``\\xNN`` escapes."""
    import subprocess
    import sys

    import cv2

    folder = tmp_path / "stills"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), faces40[0])
    ok, buf = cv2.imencode(".jpg", faces40[5])
    odd = os.path.join(os.fsencode(folder), b"caf\xe9, 1.jpg")
    with open(odd, "wb") as f:
        f.write(buf.tobytes())
    r = subprocess.run([sys.executable, "-m", "facecycle", "process", str(folder), "--no-video", "--no-progress",
                        "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])
    rows = (tmp_path / "out" / "stills.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert {row.rsplit(",", 1)[-1] for row in rows} >= {"a.png"}
    assert any(row.endswith('"caf\\xe9, 1.jpg"') for row in rows)
    assert json.loads((tmp_path / "out" / "stills.json").read_text())["status"] == "complete"
    from realtime import Analyzer

    with Analyzer() as an:  # the Python API reads it too (the picture's own pixels, JPEG aside)
        img = an.analyze_image(os.fsdecode(odd)).image
    assert img.shape == faces40[5].shape and np.abs(img.astype(int) - faces40[5]).mean() < 6


def test_a_file_damaged_midway_with_neutral_faces_gives_the_same_rows_as_when_read_once(model, tmp_path, faces40):
    """With ``--neutralize`` a file is read twice (the neutral look-ahead): a file whose second half is wiped gives
    the same exit code, status and CSV as when read once (the rows before the damage; the damage counted)."""
    clip = write_video(tmp_path / "long.avi", faces40 * 3, codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(clip.read_bytes())
    a, b = len(data) * 4 // 10, len(data) * 9 // 10
    data[a:b] = np.random.default_rng(2).integers(0, 256, b - a, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.avi"
    bad.write_bytes(bytes(data))
    out = {}
    for name, extra in (("ahead", []), ("once", ["--no-neutral-lookahead"])):
        rc = main(["process", str(bad), "--model", str(model), "--out-dir", str(tmp_path / name), "--no-video",
                   "--no-progress", "--neutralize", *extra])
        side = json.loads((tmp_path / name / "damaged.json").read_text())
        out[name] = (rc, side["status"], side["input"]["errors"], (tmp_path / name / "damaged.csv").read_bytes())
    assert out["ahead"] == out["once"]
    assert out["once"][2] >= 1 and 5 < out["once"][3].count(b"\n") < 120  # rows before the damage, damage counted


def test_audio_only_file(cli, tmp_path):
    p = tmp_path / "speech.m4a"
    c = av.open(str(p), "w")
    s = c.add_stream("aac", rate=16000)
    s.layout = "mono"
    f = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
    f.sample_rate, f.pts = 16000, 0
    for pk in s.encode(f):
        c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    rc, _, err = cli(p)
    assert rc == 3
    assert "no video stream" in one_error_line(err)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_still_image_is_one_frame_and_an_annotated_picture(cli, tmp_path, faces40, code_dim, suffix):
    """A still image given as INPUT is one frame of rows, and its annotated output a picture of its kind and size
    (it was a one-frame H.264 video)."""
    p = tmp_path / f"portrait{suffix}"
    cv2.imwrite(str(p), faces40[0])
    rc, _, err = cli(p)
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "portrait.csv", code_dim)
    assert frames_of(rows) == [0]
    if FACE_CLIP.is_file():
        assert rows[0]["success"] == "1"
    assert cv2.imread(str(tmp_path / "out" / f"portrait.annotated{suffix}")).shape == faces40[0].shape
    assert not (tmp_path / "out" / "portrait.annotated.mp4").exists()


def test_one_by_one_video(cli, tmp_path, code_dim):
    frames = [np.full((1, 1, 3), v, np.uint8) for v in range(0, 250, 50)]
    p = write_video(tmp_path / "dot.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    rc, _, err = cli(p)
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "dot.csv", code_dim)
    assert frames_of(rows) == list(range(5)) and all(r["success"] == "0" for r in rows)
    assert decode_count(tmp_path / "out" / "dot.annotated.mp4") == 5


def test_4k_frames(cli, tmp_path, code_dim):
    frames = real_frames(2, size=(3840, 2160))
    p = write_video(tmp_path / "uhd.mp4", frames, options={"preset": "ultrafast"})
    rc, _, err = cli(p, "--video-preset", "ultrafast")
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "uhd.csv", code_dim)
    assert frames_of(rows) == [0, 1]
    if FACE_CLIP.is_file():
        assert sum(r["success"] == "1" for r in rows) >= 1
    with av.open(str(tmp_path / "out" / "uhd.annotated.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (3840, 2160)
        assert sum(1 for _ in c.decode(s)) == 2


@pytest.mark.parametrize("codec,pix_fmt", [("libx264", "yuv420p10le"), ("ffv1", "gray"), ("ffv1", "gray16le")])
def test_high_bit_depth_and_grayscale(cli, tmp_path, faces40, code_dim, codec, pix_fmt):
    p = write_video(tmp_path / f"{pix_fmt}.mkv", faces40[:12], codec=codec, pix_fmt=pix_fmt)
    with av.open(str(p)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
    rc, _, err = cli(p)
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / f"{pix_fmt}.csv", code_dim)
    assert frames_of(rows) == list(range(12))
    if FACE_CLIP.is_file():  # converted to BGR correctly: the face is still found
        assert sum(r["success"] == "1" for r in rows) >= 10


def test_rotated_metadata_is_honoured(cli, tmp_path, faces40, code_dim):
    """Stored sideways with a display matrix saying "rotate back": frames are analysed upright."""
    stored = [cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE) for f in faces40[:12]]  # (320, 180) stored
    p = write_video(tmp_path / "phone.mp4", stored, rotation=90)  # display: 90 deg counter-clockwise
    rc, _, err = cli(p)
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "phone.csv", code_dim)
    assert frames_of(rows) == list(range(12))
    side = json.loads((tmp_path / "out" / "phone.json").read_text())
    assert (side["input"]["width"], side["input"]["height"]) == (320, 180)
    with av.open(str(tmp_path / "out" / "phone.annotated.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (320, 180)
    if FACE_CLIP.is_file():
        assert sum(r["success"] == "1" for r in rows) >= 10


def test_variable_frame_rate_keeps_true_timestamps(cli, tmp_path, faces40, code_dim):
    pts = [0, 40, 80, 200, 210, 220, 500, 540, 1000, 1001, 1500, 1533]  # ms, irregular
    p = write_video(tmp_path / "vfr.mkv", faces40[:12], pts=pts, time_base=Fraction(1, 1000))
    rc, _, err = cli(p)
    assert rc == 0, err
    rows = read_csv(tmp_path / "out" / "vfr.csv", code_dim)
    ts = {int(r["frame"]): float(r["timestamp"]) for r in rows}
    assert [ts[i] for i in range(12)] == pytest.approx([v / 1000 for v in pts], abs=1e-6)
    with av.open(str(tmp_path / "out" / "vfr.annotated.mp4")) as c:
        out = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert out == pytest.approx([v / 1000 for v in pts], abs=2e-3)


def test_camera_index_that_does_not_exist_subprocess(model):
    r = run_subprocess(["live", "--camera", "57", "--no-window", "--model", model])
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # OpenCV's own probing noise is silenced
    assert "camera 57: cannot open" in one_error_line(r.stderr)


class _FakeCapture(StubCapture):
    """Stands in for ``cv2.VideoCapture``: ``n`` real frames paced at 40 ms, then it stops delivering
    (``mode="fail"``: read returns False, as a driver reports an unplugged camera; ``mode="block"``:
    read never returns, as a hung driver does)."""

    frames: List[np.ndarray] = []
    mode = "fail"
    release_event = threading.Event()

    props = {cv2.CAP_PROP_FRAME_WIDTH: 320.0, cv2.CAP_PROP_FRAME_HEIGHT: 180.0, cv2.CAP_PROP_FPS: 25.0}

    def read(self):
        import time

        if self.i < len(self.frames):
            time.sleep(0.04)
            self.i += 1
            return True, self.frames[self.i - 1].copy()
        if self.mode == "block":
            self.release_event.wait(60)
        time.sleep(0.01)
        return False, None


@pytest.mark.parametrize("mode", ["fail", "block"])
def test_camera_that_stops_delivering_frames(cli, tmp_path, monkeypatch, faces40, code_dim, mode):
    import time

    import realtime.sources.camera as camera

    fake = type("Fake", (_FakeCapture,), {"frames": faces40[:8], "mode": mode, "release_event": threading.Event()})
    monkeypatch.setattr(camera.cv2, "VideoCapture", fake)
    defaults = list(camera.CameraSource.__init__.__defaults__)
    defaults[4] = 1.5  # timeout (s): the real timeout code with a short wait
    monkeypatch.setattr(camera.CameraSource.__init__, "__defaults__", tuple(defaults))
    csv_path = tmp_path / "cam.csv"
    t = time.monotonic()
    try:
        rc, _, err = cli("--camera", "0", "--no-window", "--csv", csv_path, "--record", tmp_path / "cam.mp4",
                         cmd="live")
    finally:
        fake.release_event.set()
    assert time.monotonic() - t < 30
    assert rc == 7, err
    assert "no frame for 1.5 s" in one_error_line(err)
    rows = read_csv(csv_path, code_dim)
    side = json.loads(csv_path.with_suffix(".json").read_text())
    assert side["status"] == "failed" and "no frame" in side["error"]
    n = len(frames_of(rows))
    assert n >= 1 and n + side["stats"]["drops"] == 8  # every delivered frame is written or counted as dropped
    assert decode_count(tmp_path / "cam.mp4") == n  # the video was closed properly


# ------------------------------------------------------------------------------------------ 2. outputs
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory, faces40) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", faces40[:10])


def test_output_folder_under_a_regular_file(cli, tmp_path, small_clip):
    f = tmp_path / "a_file"
    f.write_text("x")
    rc, _, err = cli(small_clip, out=f / "sub")
    assert rc == 4
    assert "cannot create folder" in one_error_line(err)
    rc, _, err = cli(small_clip, out=f)
    assert rc == 4
    assert "not a folder" in one_error_line(err)


def test_output_folder_on_a_read_only_filesystem(cli, small_clip):
    target = Path("/proc/facecycle_out")  # /proc refuses new entries, even to root
    rc, _, err = cli(small_clip, out=target)
    assert rc == 4
    one_error_line(err)


def test_existing_output_is_refused_unless_overwrite(cli, tmp_path, small_clip, code_dim):
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.csv").write_text("precious\n")
    rc, _, err = cli(small_clip, out=out)
    assert rc == 4
    assert "exists (use --overwrite" in one_error_line(err)
    assert (out / "clip.csv").read_text() == "precious\n"
    assert not (out / "clip.annotated.mp4").exists()  # nothing was written
    rc, _, err = cli(small_clip, "--overwrite", out=out)
    assert rc == 0, err
    assert frames_of(read_csv(out / "clip.csv", code_dim)) == list(range(10))


def test_an_existing_file_of_the_sidecars_name_is_refused_unless_overwrite(cli, tmp_path, small_clip):
    """A probe's finding: a user's own clip.json beside where clip.csv goes was replaced by the run's sidecar,
    exit 0; only the CSV and the video were checked."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.json").write_text('{"my": "notes"}\n')
    rc, _, err = cli(small_clip, out=out)
    assert rc == 4 and "clip.json: exists (use --overwrite" in one_error_line(err)
    assert (out / "clip.json").read_text() == '{"my": "notes"}\n' and not (out / "clip.csv").exists()
    rc, _, err = cli(small_clip, "--overwrite", out=out)
    assert rc == 0, err


class _FullDiskOs:
    """``os`` for the CSV sink whose ``write`` fails with ENOSPC after ``ok`` calls (the header is call 1)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.calls = 0

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data):
        self.calls += 1
        if self.calls > self.ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)


def test_disk_full_while_writing_the_csv(cli, tmp_path, small_clip, monkeypatch, code_dim):
    import realtime.sinks.csv_sink as csv_sink

    fake = _FullDiskOs(ok=1 + 6)  # header + 6 frames, then the disk is full
    monkeypatch.setattr(csv_sink, "os", fake)
    rc, _, err = cli(small_clip)
    assert rc == 4
    line = one_error_line(err)
    assert "disk full" in line and "frame 5 are complete" in line
    rows = read_csv(tmp_path / "out" / "clip.csv", code_dim)
    assert frames_of(rows) == list(range(6))
    side = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert side["status"] == "failed" and "disk full" in side["error"]
    assert decode_count(tmp_path / "out" / "clip.annotated.mp4") >= 5  # still closed into a playable file


def test_disk_full_for_the_sidecar_too(cli, tmp_path, small_clip, monkeypatch, code_dim):
    """The disk is full for everything at the end, the sidecar's temp file included: the final sidecar is written
    over the "running" one, whose padding reserved the room (JSON allows trailing white space), and no temp file is
    left. It used to stay "running", beside an empty ``clip.json.tmp``."""
    import realtime.sinks.csv_sink as csv_sink
    from realtime.sinks import sidecar

    monkeypatch.setattr(csv_sink, "os", _FullDiskOs(ok=1 + 6))
    real_write_text = Path.write_text

    def full(self, *a, **k):
        if self.name.endswith(".tmp") and "clip.json" in self.name:  # the sidecar's temp file (a name of its own)
            status = json.loads(a[0])["status"] if a else "?"
            if status != "running":
                self.touch()  # as a failed write leaves it
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    rc, _, err = cli(small_clip, "--no-video")
    assert rc == 4
    side_path = tmp_path / "out" / "clip.json"
    side = json.loads(side_path.read_text())
    assert side["status"] == "failed" and "disk full" in side["error"] and side["frames"] == 6
    assert side_path.stat().st_size == sidecar.RESERVE_BYTES  # written in place: the file did not grow
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]
    # a final sidecar larger than the reserve: the error is raised and the running one stays whole
    big = {"status": "complete", "blob": "x" * (2 * sidecar.RESERVE_BYTES)}
    run = tmp_path / "r.json"
    sidecar.write_sidecar(run, {"status": "running"})
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError):
        sidecar.write_sidecar(run, big)
    assert json.loads(run.read_bytes())["status"] == "running"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

def test_json_outputs_hold_no_nan(tmp_path):
    """JSON has no NaN or Infinity. Python's json writes them anyway, and JavaScript's JSON.parse, Go and R's jsonlite
    refuse the file: a run stopped before its first frame wrote ``"latency_ms_p50": NaN`` into its sidecar."""
    import numpy as np

    from facecycle.files import json_safe
    from realtime.sinks import sidecar

    obj = {"a": float("nan"), "b": [1, np.float32("inf"), np.array([0.5, np.nan])], "c": (np.int64(3), "x"),
           "d": {"e": -float("inf"), "f": np.float64(2.5)}}
    assert json_safe(obj) == {"a": None, "b": [1, None, [0.5, None]], "c": [3, "x"], "d": {"e": None, "f": 2.5}}
    path = tmp_path / "s.json"
    sidecar.write_sidecar(path, {"status": "complete", **obj})
    strict = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the sidecar"))
    assert strict["a"] is None and strict["b"][2] == [0.5, None] and strict["d"]["f"] == 2.5
    # a run without frames has no latency: the bench's medians skip it (they were median([None]): a TypeError)
    from realtime.bench import _median_of

    runs = [{"x": None}, {"x": 2.0}, {"x": 4.0}]
    assert _median_of(runs, "x", 2) == 3.0 and _median_of([{"x": None}], "x", 2) is None


def test_an_input_name_near_the_limit_is_a_clear_output_error(cli, tmp_path, small_clip):
    """An input named 249 bytes (legal) gives ``NAME.annotated.mp4`` of 259, over the file system's 255: one line,
    exit 4, and nothing is made. It was an internal error (exit 1, a traceback under --debug) after the CSV and its
    sidecar had been created."""
    src = tmp_path / ("a" * 245 + ".mp4")
    src.write_bytes(small_clip.read_bytes())
    out = tmp_path / "fresh"
    rc, _, err = cli(src, "--overwrite", out=out)
    assert rc == 4, err
    line = one_error_line(err)
    assert "output file name too long (259 bytes" in line and "rename the input" in line
    assert not out.exists() or not any(out.iterdir())

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full absent")
@pytest.mark.parametrize("which", ["csv", "video"])
def test_disk_full_on_dev_full(cli, tmp_path, small_clip, which):
    """A real ENOSPC from the kernel: the output is a symlink to /dev/full."""
    out = tmp_path / "out"
    out.mkdir()
    name = "clip.csv" if which == "csv" else "clip.annotated.mp4"
    (out / name).symlink_to("/dev/full")
    flags = ["--no-video"] if which == "csv" else ["--no-csv"]
    rc, _, err = cli(small_clip, "--overwrite", *flags, out=out)
    assert rc == 4, err
    line = one_error_line(err)
    assert "disk full" in line or "No space left" in line


# ------------------------------------------------------------------------------------- 3. model files
def _copy_model(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncated_onnx", "garbage_onnx", "missing_onnx", "garbage_manifest",
                                    "no_manifest", "empty_dir"])
def test_damaged_model_directory(cli, model, tmp_path, small_clip, damage):
    d = _copy_model(model, tmp_path / "model")
    onnx = d / "analyze.onnx"
    if damage == "truncated_onnx":
        data = onnx.read_bytes()
        onnx.write_bytes(data[: len(data) // 3])
    elif damage == "garbage_onnx":
        onnx.write_bytes(b"\x08\x07garbage" * 100)
    elif damage == "missing_onnx":
        onnx.unlink()
    elif damage == "garbage_manifest":
        (d / "manifest.json").write_text('{"graphs": [1, 2')
    elif damage == "no_manifest":
        (d / "manifest.json").unlink()
    else:
        for f in d.iterdir():
            f.unlink()
    rc, _, err = cli(small_clip, model_dir=d)
    assert rc == 5, err
    line = one_error_line(err)
    assert str(d) in line or "manifest" in line or "model" in line
    assert not (tmp_path / "out" / "clip.csv").exists()


def test_damaged_model_directory_subprocess(model, tmp_path, small_clip):
    d = _copy_model(model, tmp_path / "model")
    data = (d / "analyze.onnx").read_bytes()
    (d / "analyze.onnx").write_bytes(data[: len(data) // 2])
    r = run_subprocess(["process", small_clip, "--model", d, "--out-dir", tmp_path / "out", "--no-progress"])
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and "analyze.onnx" in one_error_line(r.stderr)
    assert not (tmp_path / "out" / "clip.csv").exists()  # no half-made outputs from a model that never loaded


def test_truncated_safetensors_model_info(cli, tmp_path):
    torch = pytest.importorskip("torch")
    from facecycle.checkpoint import save_checkpoint
    from facecycle.model import FaceCycle

    torch.manual_seed(0)
    p = save_checkpoint(FaceCycle("tiny"), tmp_path / "t.safetensors")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    rc, out, err = cli("info", "--checkpoint", p, cmd="model")
    assert rc == 5, err
    assert "safetensors" in one_error_line(err)


def test_model_info_checks_the_graphs_as_process_does(cli, tmp_path, model):
    """`model info --model` on a folder whose analyze.onnx was cut short printed "analyze (0.0 MB)" and exit 0,
    where `process` refuses the same folder on its checksum."""
    import shutil

    d = tmp_path / "m"
    shutil.copytree(model, d)
    rc, _, err = cli("info", "--model", d, cmd="model")
    assert rc == 0, err
    g = d / "analyze.onnx"
    g.write_bytes(g.read_bytes()[:1000])
    rc, _, err = cli("info", "--model", d, cmd="model")
    assert rc == 5 and "does not match the manifest" in one_error_line(err)


class _Evil:
    """Unpickling this runs ``exec`` (creating ``_Evil.marker``): it must never happen."""

    marker = ""

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_pickled_checkpoint_is_never_executed_by_the_cli(cli, tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = str(marker)
    payload = tmp_path / "evil.tar"  # the authors' torch.save layout, with a code-running object inside
    torch.save({"codegeneration": {"conv1.0.weight": torch.zeros(1), "x": evil}}, payload)
    assert payload.is_file() and not marker.exists()
    for args, cmd in ((["info", "--checkpoint", payload], "model"),
                      (["convert", payload, tmp_path / "out.safetensors"], "model"),
                      (["--checkpoint", payload, "--out", tmp_path / "exp"], "export")):
        rc, _, err = cli(*args, cmd=cmd)
        assert rc == 5, (args, err)
        assert "weights-only" in one_error_line(err)
        assert not marker.exists(), f"{cmd} {args[0]} executed pickled code"
    assert not (tmp_path / "out.safetensors").exists()


# ------------------------------------------------------------------------------------------- 4. soak
@pytest.mark.parametrize("argv,says", [
    (["soak", "{clip}", "--frames", "10", "--window", "20"], "at least two --window's"),
    (["detectors", "{clip}", "--step", "0"], "--step must be >= 1"),
    (["detectors", "{clip}", "--detectors", "yunet@abc"], "frame side in pixels"),
    (["detectors", "{clip}", "--detectors", "nosuch@320"], "unknown detector"),
    (["detectors", "{clip}", "--detectors", "yunet@320"], "needs --yunet-model")])
def test_bench_soak_and_detectors_refuse_what_they_cannot_measure(tmp_path, small_clip, capfd, argv, says):
    """A soak shorter than two windows passed its verdict on nothing; `bench detectors` divided by a --step of 0
    (internal error), took `yunet@abc` for a traceback, and skipped an unknown name or a detector without its model
    file, writing an empty record with exit 0."""
    out = tmp_path / "b.json"
    rc = main(["bench", *[a.format(clip=small_clip) for a in argv], "--json", str(out)])
    assert rc == 2
    assert says in one_error_line(capfd.readouterr().err)
    assert not out.exists()


def test_bench_soak_record(model, tmp_path, small_clip, capfd):
    """`bench soak` (short here; the 20000-frame figures are in docs/reliability.md): windows, RSS, verdict."""
    out = tmp_path / "soak.json"
    rc = main(["bench", "soak", str(small_clip), str(small_clip), "--model", str(model), "--frames", "45",
               "--window", "15", "--json", str(out)])
    assert rc == 0, capfd.readouterr().err
    rec = json.loads(out.read_text())
    assert rec["frames_processed"] == 45 and rec["loops"] >= 2  # a 10-frame clip, looped
    assert [w["end_frame"] for w in rec["windows"]] == [15, 30, 45]
    for w in rec["windows"]:
        assert w["fps"] > 0 and w["rss_mb"] > 0 and "cpu_fps" in w
    assert rec["rss_mb_start"] > 0 and rec["rss_mb_end"] > 0
    assert rec["rss_growth_after_first_window_mb"] == pytest.approx(rec["rss_mb_end"] - rec["windows"][0]["rss_mb"],
                                                                    abs=0.11)
    assert set(rec["verdict"]) >= {"memory_growth_under_50mb", "throughput_no_decay", "pass"}
    assert rec["drops"] == 0 and rec["decode_errors"] == 0


def test_bad_input_in_a_batch_does_not_stop_the_others(cli, tmp_path, faces40, code_dim):
    """Several inputs: an undecodable one is reported and skipped, the others are processed; exit 3."""
    good1 = write_video(tmp_path / "a.mp4", faces40[:12])
    bad = tmp_path / "b.mp4"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    good2 = write_video(tmp_path / "c.mp4", faces40[12:24])
    rc, _, err = cli(good1, bad, good2, "--no-video")
    assert rc == 3, err
    assert "Traceback" not in err
    assert "b.mp4" in err and "continuing with the other inputs" in err and "1 of 3 inputs failed" in err
    out = tmp_path / "out"
    assert len(read_csv(out / "a.csv", code_dim)) >= 12
    assert len(read_csv(out / "c.csv", code_dim)) >= 12
    assert not (out / "b.csv").exists()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".pgm", ".bmp", ".tiff", ".webp", ".avif"])
def test_a_single_picture_of_any_kind_is_a_still(tmp_path, suffix):
    """A picture given as INPUT is analysed as a still (detected afresh, a second try inside a border); .pgm and
    the other kinds were read as a one-frame video, with plain detection."""
    from realtime.sources import VideoSource

    p = tmp_path / f"x{suffix}"
    if suffix == ".avif" and not cv2.haveImageWriter(str(p)):
        pytest.skip("this OpenCV build has no AVIF codec")
    assert cv2.imwrite(str(p), np.full((30, 40) if suffix == ".pgm" else (30, 40, 3), 90, np.uint8))
    with VideoSource(p) as s:
        assert s.stills
    with VideoSource(write_video(tmp_path / "two.mp4", [np.zeros((32, 32, 3), np.uint8)] * 2)) as s:
        assert not s.stills


@pytest.mark.parametrize("name", ["rec", "rec.webm", "rec.ogv"])
def test_a_recording_name_that_cannot_hold_h264_is_refused_before_any_file(cli, tmp_path, faces40, name):
    """`--record rec` (no suffix) ended in "internal error: ValueError: Could not determine output format"; WebM
    and Ogg failed at the first frame, after the CSV had been started. Now one line, exit 4, and no file made."""
    src = write_video(tmp_path / "in.mp4", faces40[:5])
    out = tmp_path / "o"
    out.mkdir()
    rc, _, err = cli("--input", src, "--no-window", "--csv", out / "x.csv", "--record", out / name, cmd="live")
    assert rc == 4
    assert "not a video file name" in one_error_line(err) and ".mp4" in one_error_line(err)
    assert list(out.iterdir()) == []


def test_an_overwrite_that_fails_before_its_first_frame_keeps_the_earlier_outputs(cli, tmp_path, faces40, code_dim,
                                                                                 caplog):
    """`--overwrite` with an input that turns out to hold no decodable frame (a Matroska header whose clusters were
    lost) used to truncate the earlier, complete CSV to its header and mark its sidecar failed before the error: the
    earlier result was gone. The files it replaces now wait aside until the run's first frame."""
    for d in "abc":
        (tmp_path / d).mkdir()
    good = write_video(tmp_path / "a" / "x.mkv", faces40[:6], fmt="matroska")
    rc, _, err = cli(good)
    assert rc == 0, err
    out = tmp_path / "out"
    before = {q.name: q.read_bytes() for q in out.iterdir()}
    assert sorted(before) == ["x.annotated.mp4", "x.csv", "x.json"]
    data = good.read_bytes()
    first = next(av.open(str(good)).demux(video=0)).pos  # where the first cluster starts
    (tmp_path / "b" / "x.mkv").write_bytes(data[:first])
    rc, _, err = cli(tmp_path / "b" / "x.mkv", "--overwrite")
    assert rc == 3, err
    one_error_line(err)
    assert "earlier outputs it was to replace are kept" in caplog.text
    assert {q.name: q.read_bytes() for q in out.iterdir()} == before  # byte for byte, nothing left aside
    # an overwrite that writes frames replaces them, and leaves nothing aside either
    rc, _, err = cli(write_video(tmp_path / "c" / "x.mkv", faces40[:3], fmt="matroska"), "--overwrite", "--no-video")
    assert rc == 0, err
    assert frames_of(read_csv(out / "x.csv", code_dim)) == [0, 1, 2]
    assert sorted(q.name for q in out.iterdir()) == ["x.annotated.mp4", "x.csv", "x.json"]
    assert json.loads((out / "x.json").read_text())["status"] == "complete"


def test_a_run_that_cannot_open_its_video_leaves_a_failed_sidecar_with_the_reason(cli, tmp_path, faces40):
    """The CSV opens first; where the video then cannot be made (its folder is a file), the sidecar says
    `failed` and why (its `error` was empty)."""
    src = write_video(tmp_path / "in.mp4", faces40[:5])
    (tmp_path / "blocker").write_text("a file where the video's folder should be")
    out = tmp_path / "o"
    out.mkdir()
    rc, _, err = cli("--input", src, "--no-window", "--csv", out / "x.csv", "--record",
                     tmp_path / "blocker" / "rec.mp4", cmd="live")
    assert rc == 4, err
    side = json.loads((out / "x.json").read_text())
    assert side["status"] == "failed" and "blocker" in side["error"]


def test_live_counts_in_words_that_agree(cli, tmp_path, faces40):
    """`live --input picture.png` ended with "1 frames"."""
    p = tmp_path / "one.png"
    cv2.imwrite(str(p), faces40[0])
    rc, _, err = cli("--input", p, "--no-window", "--csv", tmp_path / "x.csv", cmd="live")
    assert rc == 0, err
    assert f"{p}: 1 frame, " in err.strip().splitlines()[-1]


def test_soak_without_clips_in_an_installed_package_says_where_clips_are_found(tmp_path, monkeypatch):
    """An installed package looked for its default clips beside site-packages ("not in .../lib/python3.11/shared")."""
    from facecycle.errors import UsageError
    from realtime import soak

    monkeypatch.delenv("FACECYCLE_SHARED", raising=False)
    monkeypatch.setattr(soak, "__file__", str(tmp_path / "venv" / "lib" / "site-packages" / "realtime" / "soak.py"))
    with pytest.raises(UsageError, match="found only in a clone beside ../shared or where FACECYCLE_SHARED points"):
        soak.default_clips()
    monkeypatch.setenv("FACECYCLE_SHARED", str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="nowhere"):
        soak.default_clips()


def _video_beside_others(path: Path, fmt: str, audio_first: bool, attachment: bool = False, n: int = 30) -> Path:
    """An H.264 clip (2 B-frames) of ``n`` frames with AAC audio 1.6 s long, the audio stream first where
    ``audio_first``, and (Matroska) a font attachment."""
    c = av.open(str(path), "w", format=fmt)
    a = None
    if audio_first:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
    s = c.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt, s.options = 64, 48, "yuv420p", {"bf": "2"}
    if a is None:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
    if attachment:
        c.add_attachment("font.ttf", "application/x-truetype-font", b"\0" * 100)
    packets = []
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 8) % 256, np.uint8), format="bgr24")
        f.pts = i
        packets += s.encode(f)
    packets += s.encode()
    wave = (np.sin(np.arange(25600) / 16000 * 2 * np.pi * 440) * 0.3).astype(np.float32)
    for t in range(0, wave.size, 1024):
        af = av.AudioFrame.from_ndarray(wave[None, t:t + 1024], format=a.format.name, layout="mono")
        af.sample_rate, af.pts = 16000, t
        packets += a.encode(af)
    packets += a.encode(None)
    for p in packets:
        c.mux(p)
    c.close()
    return path


def test_the_other_streams_read_along_never_take_the_videos_last_frames(tmp_path):
    """Review finding: the flush packets ``demux()`` ends with (one a stream) all say stream index 0, so where the
    other streams were read along (an FLV's), a video that is not the first stream had its own flush dropped, and
    lost the frames still in its decoder (26 of 30 read, nothing said), and a Matroska file whose tracks state no
    length of their own, with a font attachment first in line for a flush, failed at its end ("'AttachmentStream'
    object has no attribute 'decode'"). Each packet is now told by its own stream."""
    audio_first = _video_beside_others(tmp_path / "audio_first.flv", "flv", audio_first=True)
    with av.open(str(audio_first)) as c:
        assert c.streams[0].type == "audio" and c.streams.video[0].index == 1
    n, src = _read_whole(audio_first)
    assert (n, src.frames_missing, src.frame_count) == (30, 0, 30)
    mkv = _video_beside_others(tmp_path / "attached.mkv", "matroska", audio_first=False, attachment=True)
    data = mkv.read_bytes()
    assert b"DURATION" in data
    untagged = tmp_path / "untagged.mkv"
    untagged.write_bytes(data.replace(b"DURATION", b"DURATIOX"))  # (no track lengths: shared)
    n, src = _read_whole(untagged)
    assert (n, src.frames_missing, src.frame_count) == (30, 0, 30)
