"""Stream inputs (docs/reliability.md, "Inputs"): files served over HTTP are read as files, every frame; a server
that dies or stalls mid-file fails the run; live streams end without counting damage; URL schemes, output names of
URLs, ``file://``, and what ``live`` does with a file given as a camera or an input given without an option.

Each test serves what it needs from a local HTTP server (the standard library's, on 127.0.0.1, port 0) whose
routes say how a body is sent: whole with its Content-Length (a file), without a length (a stream made as it is
sent), cut short after promising the whole, or stalled. Frames come from a real clip in ../shared when present
(synthetic otherwise).
"""
from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import av
import numpy as np
import pytest

from facecycle.errors import InputError
from facecycle_cli import main

from .conftest import FACE_CLIP, frames_of, one_error_line, read_csv, real_frames, write_video

# ------------------------------------------------------------------------------------------------ helpers


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (body, mode, content_type)``. Modes: ``file`` (the body with its
    Content-Length), ``stream`` (no Content-Length: the body, then the connection closes), ``restart`` (no length: the
    body, 4 s of silence, the body again, as from a restarted sender), ``cut`` (promises the
    whole body, sends half, closes), ``stall`` (promises the whole body, sends half, then nothing until the test
    ends), ``stream_stall`` (no length, half the body, then nothing)."""

    protocol_version = "HTTP/1.0"  # a body without a length ends when the connection closes

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])  # type: ignore[attr-defined]
        if route is None:
            self.send_error(404)
            return
        body, mode, ctype = route
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        if mode in ("file", "cut", "stall"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        try:
            if mode in ("file", "stream"):
                self.wfile.write(body)
                return
            if mode == "restart":  # the body, a 4-s silence, the body again: a sender restarted (its clock at 0)
                self.wfile.write(body)
                self.wfile.flush()
                time.sleep(4.0)
                self.wfile.write(body)
                return
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if mode in ("stall", "stream_stall"):
                self.server.release.wait(30)  # type: ignore[attr-defined]
        except (BrokenPipeError, ConnectionResetError):  # the reader gave up first
            pass


@pytest.fixture
def server() -> Iterator[Tuple[Dict[str, tuple], str]]:
    """(routes, base URL) of a local HTTP server for the life of the test."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.routes = {}  # type: ignore[attr-defined]
    srv.release = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.routes, f"http://127.0.0.1:{srv.server_address[1]}"  # type: ignore[attr-defined]
    finally:
        srv.release.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def frames() -> List[np.ndarray]:
    return real_frames(40, size=(320, 180))


@pytest.fixture(scope="module")
def ts_bytes(frames, tmp_path_factory) -> bytes:
    """An MPEG-TS of 40 frames: no duration when read from a server without range requests."""
    p = tmp_path_factory.mktemp("ts") / "clip.ts"
    return write_video(p, frames, fmt="mpegts", options={"g": "10"}).read_bytes()


class _MjpegCamera(http.server.BaseHTTPRequestHandler):
    """An IP camera: ``multipart/x-mixed-replace`` JPEGs (what FFmpeg's ``mpjpeg`` reader reads) at ``server.fps``,
    after ``server.burst`` frames sent at once (what a camera's connection queued), pausing ``server.stall`` =
    (after frame k, seconds). Frames are ``server.jpegs`` in a loop, until the client goes or the test ends."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        t0, k = time.monotonic(), 0
        stall_at, stall_s = srv.stall  # type: ignore[attr-defined]
        try:
            while not srv.done.is_set():  # type: ignore[attr-defined]
                due = t0 + max(0, k - srv.burst) / srv.fps + (stall_s if k > stall_at else 0.0)  # type: ignore
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                b = srv.jpegs[k % len(srv.jpegs)]  # type: ignore[attr-defined]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(b)
                                 + b + b"\r\n")
                self.wfile.flush()
                k += 1
        except (BrokenPipeError, ConnectionResetError):  # the reader is gone
            pass


@contextlib.contextmanager
def mjpeg_camera(frames: List[np.ndarray], fps: float = 30.0, burst: int = 0,
                 stall: Tuple[int, float] = (1 << 30, 0.0)) -> Iterator[str]:
    """The URL of an MJPEG-over-HTTP camera (:class:`_MjpegCamera`) sending ``frames`` while the block runs."""
    import cv2

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegCamera)
    srv.daemon_threads = True
    srv.jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes() for f in frames]  # type: ignore
    srv.fps, srv.burst, srv.stall, srv.done = fps, burst, stall, threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/stream.mjpg"
    finally:
        srv.done.set()  # type: ignore[attr-defined]
        srv.shutdown()
        srv.server_close()


def _read_all(url: str, **kw) -> Tuple[int, "object"]:
    from realtime.sources.video import VideoSource

    src = VideoSource(url, **kw)
    with src:
        n = sum(1 for _ in src)
    return n, src


@pytest.fixture
def cli(model, tmp_path, capfd):
    """``facecycle CMD ARGS --model tiny`` in-process (``process`` also writes to tmp/out): (rc, stderr)."""
    def run(*args: str, cmd: str = "process") -> Tuple[int, str]:
        argv = [cmd, *map(str, args), "--model", str(model)]
        if cmd == "process":
            argv += ["--no-progress", "--out-dir", str(tmp_path / "out")]
        capfd.readouterr()
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
        return rc, capfd.readouterr().err

    return run


# ------------------------------------------------------------------------------ 1. a served file is a file
def test_a_served_mpegts_is_read_as_a_file_and_a_stream_without_length_as_live(server, ts_bytes):
    """An MPEG-TS on a web server without range requests has no duration there: it was taken for a live stream
    (frames dropped when behind: 124 of 472 analysed, exit 0). A response with a Content-Length is a file; one
    without (an HTTP camera, an IPTV channel) stays live."""
    routes, base = server
    routes["/clip.ts"] = (ts_bytes, "file", "video/mp2t")
    routes["/live"] = (ts_bytes, "stream", "video/mp2t")
    n, src = _read_all(f"{base}/clip.ts")
    assert src.live is False and src.served_size == len(ts_bytes)
    assert n == 40 and src.errors == 0
    assert src.describe()["frame_count"] == 40  # the count is what was read where the file did not say
    _, live = _read_all(f"{base}/live")
    assert live.live is True


def test_process_reads_a_served_mpegts_whole(cli, server, ts_bytes, tmp_path, code_dim):
    """End to end: every frame in the CSV, the sidecar says a file (not live), nothing dropped."""
    routes, base = server
    routes["/clip.ts"] = (ts_bytes, "file", "video/mp2t")
    rc, err = cli(f"{base}/clip.ts", "--no-video")
    assert rc == 0, err
    assert frames_of(read_csv(tmp_path / "out" / "clip.csv", code_dim)) == list(range(40))
    side = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert side["status"] == "complete"
    assert side["input"]["live"] is False and side["stats"]["drops"] == 0 and side["input"]["frame_count"] == 40
    assert "dropped" not in err


def test_the_end_line_says_why_frames_were_dropped(cli, frames, tmp_path):
    """A live input drops the oldest frames while the analysis is behind: the end line says so and why (the
    sidecar's stats.drops counts them)."""
    clip = write_video(tmp_path / "fast.mp4", frames[:30], rate=1000)  # 1000 fps played in real time: behind
    rc, err = cli(clip, "--no-video", "--realtime")
    assert rc == 0, err
    side = json.loads((tmp_path / "out" / "fast.json").read_text())
    assert side["input"]["live"] is True and side["stats"]["drops"] > 0
    end = [ln for ln in err.splitlines() if ln.startswith(str(clip))][-1]
    assert f"{side['stats']['drops']} dropped (a live input" in end, end


# ------------------------------------------------------------- 2. a server that dies or stalls mid-file
def test_a_served_file_cut_short_by_the_connection_fails(server, ts_bytes):
    """The connection closed before the bytes the server promised: the part read was reported as a complete
    result (exit 0). Now an InputError says how far it got."""
    routes, base = server
    routes["/cut.ts"] = (ts_bytes, "cut", "video/mp2t")
    with pytest.raises(InputError) as ei:
        _read_all(f"{base}/cut.ts")
    msg = str(ei.value)
    assert "the connection ended after about" in msg and f"of {len(ts_bytes):,} bytes" in msg, msg
    assert "\n" not in msg


def test_a_served_file_that_stalls_fails_after_the_timeout(server, ts_bytes, monkeypatch):
    """A server that stops sending mid-file (stalls until the read timeout): it was the end of a truncated file."""
    monkeypatch.setattr("realtime.sources.video.URL_TIMEOUT_S", 1.0, raising=False)  # 10 s in use
    routes, base = server
    routes["/stall.ts"] = (ts_bytes, "stall", "video/mp2t")
    with pytest.raises(InputError, match=r"no data for 1 s$"):
        _read_all(f"{base}/stall.ts")


def test_process_and_batch_fail_a_served_file_cut_short(cli, server, ts_bytes, tmp_path, model):
    """``process``: exit 3, one line, the sidecar ``failed`` (not ``complete``). ``batch``: the input is failed and
    has no complete sidecar, so the next batch run does it again."""
    routes, base = server
    routes["/cut.ts"] = (ts_bytes, "cut", "video/mp2t")
    rc, err = cli(f"{base}/cut.ts", "--no-video")
    assert rc == 3, err
    assert "the connection ended after" in one_error_line(err)
    side = json.loads((tmp_path / "out" / "cut.json").read_text())
    assert side["status"] == "failed" and "connection ended" in side["error"]
    out = tmp_path / "batch"
    rc = main(["batch", f"{base}/cut.ts", "--out-dir", str(out), "--cluster", "none", "--model", str(model),
               "--no-video"])
    assert rc != 0
    sides = [p for p in out.rglob("cut.json") if ".facecycle-partial" not in p.parts]
    assert all(json.loads(p.read_text()).get("status") != "complete" for p in sides), sides


# ------------------------------------------------------------------------- 3. output names of stream URLs
def test_output_names_of_urls_without_a_path_keep_host_and_port():
    """``udp://127.0.0.1:9999`` was named ``127.0.0`` (the address's last part taken for a suffix, the port lost),
    and two cameras at 10.0.0.5 and 10.0.0.6 wrote the same files."""
    from realtime.batch.plan import url_stem as _url_stem

    assert _url_stem("udp://127.0.0.1:9999") == "127.0.0.1_9999"
    assert _url_stem("rtsp://10.0.0.5:554") == "10.0.0.5_554"
    assert _url_stem("rtsp://10.0.0.6:554/") == "10.0.0.6_554"
    assert _url_stem("rtsp://cam1.local/") == "cam1.local"
    assert _url_stem("https://h/a/clip.mp4?v=1.2") == "clip"  # a path's name still loses its suffix
    assert _url_stem("rtsp://[::1]:8554") == "__1_8554"


# ---------------------------------------------------------------------- 4. schemes: case, ftp, file://
def test_schemes_are_case_insensitive_ftp_is_a_url_and_file_urls_are_paths(server, ts_bytes, tmp_path, frames):
    """``HTTP://`` and ``ftp://`` were checked as local paths ("no such file"); ``file:///x`` too."""
    from realtime.sources import open_source
    from realtime.sources.video import VideoSource

    routes, base = server
    routes["/clip.ts"] = (ts_bytes, "file", "video/mp2t")
    n, src = _read_all(base.replace("http://", "HTTP://") + "/clip.ts")
    assert n == 40 and src.is_url and not src.live
    with pytest.raises(InputError) as ei:  # nothing listens there: FFmpeg's error, not "no such file"
        VideoSource("ftp://127.0.0.1:1/clip.mp4")
    assert "no such file" not in str(ei.value) and "cannot open as a video" in str(ei.value)
    clip = write_video(tmp_path / "my clip.mp4", frames[:5])
    with open_source("file://" + str(clip).replace(" ", "%20")) as s:
        assert s.path == str(clip) and sum(1 for _ in s) == 5
    with pytest.raises(InputError, match="another host"):
        VideoSource("file://server/share/clip.mp4")


def test_process_takes_a_file_url(cli, tmp_path, frames, code_dim):
    clip = write_video(tmp_path / "c.mp4", frames[:5])
    rc, err = cli(f"file://{clip}", "--no-video")
    assert rc == 0, err
    assert frames_of(read_csv(tmp_path / "out" / "c.csv", code_dim)) == list(range(5))


# ------------------------------------------------------------ 5, 10. what `live` does with a file or a bare input
def test_live_refuses_a_file_given_as_a_camera(cli, tmp_path, frames):
    """A video file given as ``--camera`` was played as a camera (frames dropped, then "no frame for 5 s", exit 7)."""
    from realtime.sources import CameraSource

    clip = write_video(tmp_path / "c.mp4", frames[:5])
    rc, err = cli("--camera", clip, "--no-window", cmd="live")
    assert rc == 2, err
    line = one_error_line(err)
    assert f"--input {clip}" in line, line
    with pytest.raises(InputError, match="not a camera device"):
        CameraSource(str(clip))


def test_live_with_a_bare_input_suggests_the_option(cli, tmp_path):
    """``facecycle live 5`` was "unrecognized arguments: 5" without a hint."""
    rc, err = cli("5", "--no-window", cmd="live")
    assert rc == 2 and "--camera 5" in one_error_line(err), err
    rc, err = cli(tmp_path / "clip.mp4", "--no-window", cmd="live")
    assert rc == 2 and f"--input {tmp_path / 'clip.mp4'}" in one_error_line(err), err


# ------------------------------------------------------------------------------- 6. a web page, not a video
def test_a_web_page_served_as_a_video_is_named_so(server):
    """An HTML page (a login page, an expired link) served under a video's name got the hint about a cut
    recording's missing moov atom."""
    routes, base = server
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Please sign in</body></html>\n"
    routes["/clip.mp4"] = (page, "file", "text/html; charset=utf-8")
    with pytest.raises(InputError) as ei:
        _read_all(f"{base}/clip.mp4")
    msg = str(ei.value)
    assert "the server sent a web page (HTML), not a video" in msg and "moov" not in msg, msg


# --------------------------------------------------------------------------------- 7. a missing device path
def test_a_missing_camera_device_is_one_line(capfd):
    """A missing /dev/videoN printed a line of OpenCV's / FFmpeg's before the error."""
    from realtime.sources import CameraSource

    dev = next(f"/dev/video{i}" for i in range(90, 200) if not Path(f"/dev/video{i}").exists())
    capfd.readouterr()
    with pytest.raises(InputError, match="no such device"):
        CameraSource(dev)
    out, err = capfd.readouterr()
    assert not out.strip() and not err.strip(), err


# ----------------------------------------------------------------- 8. counts of fragmented and streamed files
def test_a_streamed_fragmented_mp4s_frame_count_is_what_was_read(server, tmp_path, frames):
    """Read from a server without range requests, a fragmented MP4's duration is its first fragment's: the sidecar's
    frame_count said 30 of the 40 frames read."""
    routes, base = server
    clip = write_video(tmp_path / "frag.mp4", frames, options={"g": "10"},
                       container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
    routes["/frag.mp4"] = (clip.read_bytes(), "file", "video/mp4")
    n, src = _read_all(f"{base}/frag.mp4")
    assert n == 40 and not src.live
    assert src.describe()["frame_count"] == 40


# ------------------------------------------------------------------------ 9. a live stream's end is no damage
def test_a_live_streams_end_is_not_damage(server, ts_bytes, caplog, monkeypatch, tmp_path):
    """A live stream that stops sending ended with "demuxing stopped early (Immediate exit requested)" and
    "1 damaged packet skipped"."""
    monkeypatch.setattr("realtime.sources.video.URL_TIMEOUT_S", 1.0, raising=False)  # 10 s in use
    routes, base = server
    routes["/live"] = (ts_bytes, "stream_stall", "video/mp2t")
    with caplog.at_level("WARNING", logger="realtime.sources.video"):
        n, src = _read_all(f"{base}/live")
    assert src.live is True and n > 0
    assert src.errors == 0
    assert "no data for 1 s (the stream ended?)" in caplog.text and "Immediate exit" not in caplog.text
    assert src.ended == "no data for 1 s" and src.describe()["ended"] == "no data for 1 s"  # (the sidecar says why)
    # every frame that came: those the decoder still held at the end were lost (15 of 19 were read)
    sent = tmp_path / "sent.ts"
    sent.write_bytes(ts_bytes[: len(ts_bytes) // 2])
    with av.open(str(sent)) as c:
        assert n == sum(1 for _ in c.decode(video=0))



# ---------------------------------------------------------- 10. an MJPEG camera, live inputs read as they come
def test_an_mjpeg_camera_is_a_video_timed_by_when_its_frames_come(frames):
    """An MJPEG-over-HTTP camera has an unknown frame count: it was taken for one picture and every frame read as a
    still (a new face id and a detection on each). FFmpeg's reader numbers its frames at 25 fps: a 30-fps camera's
    timestamps fell behind (5 s after 25 s) and a stall of 0.6 s showed as 0.04 s. Its frames are timed by their
    arrival, as a camera's, and its rate is the one measured."""
    from realtime.sources.video import VideoSource

    with mjpeg_camera(frames, fps=30.0, stall=(20, 0.6)) as url:
        src = VideoSource(url)
        with src:
            assert src.live and not src.stills and src.clock == "arrival"
            ts = []
            for p in src:
                ts.append(p.timestamp)
                if len(ts) == 60:
                    break
    gaps = np.diff(ts)
    assert ts[0] == 0.0 and np.all(gaps > 0)
    assert 0.45 < gaps[20] < 1.2, gaps[18:23]  # the stall (0.04 s at 25 fps)
    # 59 frames at 30 fps and the stall: 2.57 s (59 / 25 = 2.36 s without the stall)
    assert ts[-1] == pytest.approx(59 / 30 + 0.6, abs=0.3)
    d = src.describe()
    assert d["clock"] == "arrival" and d["time_base"] == "1/1000000" and 15 < d["fps"] < 35


def test_process_reads_an_mjpeg_camera_as_a_video(cli, tmp_path, code_dim):
    """`facecycle process http://cam/stream.mjpg`: one face id through the clip, detection not on every frame,
    the baseline ready; timestamps by arrival (the sidecar says so)."""
    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted): no face to track")
    with mjpeg_camera(real_frames(40, size=(320, 180)), fps=30.0) as url:
        rc, err = cli(url, "--no-video", "--max-frames", "45")
    assert rc == 0, err
    rows = [r for r in read_csv(tmp_path / "out" / "stream.csv", code_dim) if r["success"] == "1"]
    side = json.loads((tmp_path / "out" / "stream.json").read_text())
    assert len(rows) >= 20
    assert len({r["face_id"] for r in rows}) <= 2, sorted({r["face_id"] for r in rows})
    assert side["stats"]["detector_runs"] < side["stats"]["frames"]
    assert side["input"]["live"] is True and side["input"]["clock"] == "arrival"
    assert side["input"]["fps"] != 25.0


def test_a_live_stream_is_not_paced_by_its_timestamps(server, ts_bytes, frames):
    """`live --input URL` opened a live stream with realtime=True, and it was paced by its timestamps as a file
    played as if live is: a camera's queued frames came at 25 fps instead of at once, and its latency grew (2 s, then
    6 s after 20 s). A live stream's own timestamps (MPEG-TS's) are kept."""
    from realtime.sources.video import VideoSource

    routes, base = server
    routes["/live.ts"] = (ts_bytes, "stream", "video/mp2t")  # no Content-Length: live; 40 frames, 1.6 s at 25 fps
    src = VideoSource(f"{base}/live.ts", realtime=True)
    t = time.perf_counter()
    with src:
        ts = [p.timestamp for p in src]
    assert time.perf_counter() - t < 1.0 and src.live and not src.realtime and src.clock == "stream"
    # (a live stream's end loses what the decoder still held)
    assert len(ts) >= 30 and ts == pytest.approx([i / 25 for i in range(len(ts))], abs=1e-6)
    with mjpeg_camera(frames, fps=30.0, burst=30) as url:  # 30 queued frames, then 30 fps
        src = VideoSource(url, realtime=True)
        t = time.perf_counter()
        with src:
            for n, _ in enumerate(src, 1):
                if n == 30:
                    break
        assert time.perf_counter() - t < 0.8  # 1.2 s paced at 25 fps



def test_a_live_streams_restarted_sender_keeps_the_outage_in_the_timeline(server, ts_bytes):
    """Probe finding: where a live stream's sender restarted (its clock back at 0), the timeline went on one frame
    after the last frame, hiding the outage (8 s of wall clock became 0.1 s): rows could not be lined up with other
    recordings. Now it goes on by the time that passed between the two frames' packets (a file keeps one frame)."""
    from realtime.sources.video import VideoSource

    routes, base = server
    routes["/restart.ts"] = (ts_bytes, "restart", "video/mp2t")
    with VideoSource(f"{base}/restart.ts") as src:
        ts = [p.timestamp for p in src]
    assert src.live and src.clock == "stream" and src.discontinuities == 1
    jumps = [b - a for a, b in zip(ts[:-1], ts[1:], strict=True)]
    assert all(j > 0 for j in jumps)
    big = max(jumps)
    # the 4-s silence, less the time the reader took over the first body's 40 frames, which came at once (the
    # arrival is when a packet is read: a loaded machine's slower reader shortens the gap it sees)
    assert 2.5 < big < 5.5, big
    assert sorted(jumps)[-2] < 0.2  # every other step is a frame's


def test_a_server_that_never_answers_fails_saying_so(monkeypatch):
    """Probe finding: a server that accepts and never answers ended "cannot open as a video (Immediate exit
    requested)". It now says what happened. (It takes the server probe's timeout and FFmpeg's: a server slow to send
    its first bytes gets both.)"""
    from facecycle.errors import InputError
    from realtime.sources.video import VideoSource

    monkeypatch.setattr("realtime.sources.video.URL_TIMEOUT_S", 1.0)
    with _silent_server() as port:
        t = time.monotonic()
        with pytest.raises(InputError, match=r"cam\.mjpg: cannot open as a video \(no data within 1 s\)$"):
            VideoSource(f"http://127.0.0.1:{port}/cam.mjpg")
        assert time.monotonic() - t < 4.0


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A local TCP server that accepts every connection and never sends a byte: its port."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held = []

    def serve() -> None:
        try:
            while True:
                held.append(srv.accept())
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
        for c, _ in held:
            c.close()


def test_live_loads_the_model_before_it_opens_a_stream(monkeypatch, tmp_path):
    """`live` opened its input, then loaded the model: a stream's (or a camera's) frames queued meanwhile came in one
    burst (40 dropped in the first second, frame 0 1.8 s late). A stream URL is opened after the model; a file is
    still checked first (a missing one fails at once), as a camera is."""
    import facecycle_cli.process_cmd as pc
    import realtime.sources as sources

    order: List[str] = []

    class _Analyzer:
        def close(self) -> None:
            order.append("closed")

    def analyzer(args):
        order.append("model")
        return _Analyzer()

    def video(spec, realtime=False, timeout=None):
        order.append("source")
        raise InputError(f"{spec}: stop here")

    monkeypatch.setattr(pc, "_analyzer", analyzer)
    monkeypatch.setattr(sources, "VideoSource", video)
    assert main(["live", "--input", "http://127.0.0.1:9/stream.mjpg", "--no-window"]) == 3
    assert order == ["model", "source", "closed"]
    order.clear()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    assert main(["live", "--input", str(clip), "--no-window"]) == 3
    assert order == ["source"]


def test_live_help_says_input_takes_stream_urls(capsys):
    with pytest.raises(SystemExit):
        main(["live", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "stream URL" in out and "VIDEO|URL" in out


# --------------------------------------------------------------- 12. local playlists and names FFmpeg reads as more
def test_a_local_playlist_reads_only_its_own_folder(tmp_path, frames, cli, code_dim):
    """A local HLS playlist read any local video it named (`file:///…/other.ts`, `../private/other.ts`, through a
    nested playlist, an unquoted `URI=`, a link, after a megabyte of padding, or as a later segment) into the CSV and
    the annotated video: an uploaded playlist could read other files on a cluster node. Every file FFmpeg opens
    for it must lie in its folder: refused in one line (exit 3); a playlist of its own folder's segments (a saved
    stream) is read as before."""
    private = tmp_path / "private"
    private.mkdir()
    write_video(private / "other.ts", frames[:10], fmt="mpegts")
    up = tmp_path / "upload"
    up.mkdir()
    write_video(up / "seg0.ts", frames[:10], fmt="mpegts")
    head = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:0.4,\n"
    (up / "sub").mkdir()
    (up / "sub" / "var.m3u8").write_text(head + "../../private/other.ts\n#EXT-X-ENDLIST\n")
    (up / "link.ts").symlink_to(private / "other.ts")
    own = "#EXTINF:0.4,\nseg0.ts\n"
    for name, body in (("rel", head + "../private/other.ts\n"), ("abs", head + f"file://{private / 'other.ts'}\n"),
                       ("path", head + str(private / "other.ts") + "\n"),
                       ("nested", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nsub/var.m3u8\n"),
                       ("unquoted", head.replace("#EXTINF", "#EXT-X-MAP:URI=../private/other.ts\n#EXTINF")
                        + "seg0.ts\n"),
                       ("padded", head + "#c\n" * 300_000 + "../private/other.ts\n"),
                       ("symlink", head + "link.ts\n"),
                       ("late", head + "seg0.ts\n" + own * 2 + "#EXTINF:0.4,\n../private/other.ts\n")):
        (up / f"{name}.m3u8").write_text(body + ("#EXT-X-ENDLIST\n" if name != "nested" else ""))
        rc, err = cli(str(up / f"{name}.m3u8"), "--no-video")
        assert rc == 3 and "an HLS playlist naming a file outside its folder" in err, (name, err)
    (up / "own.m3u8").write_text(head + "seg0.ts\n#EXT-X-ENDLIST\n")
    rc, err = cli(str(up / "own.m3u8"), "--no-video")
    assert rc == 0, err


def test_a_file_name_with_a_percent_pattern_is_that_file(tmp_path, frames, cli, code_dim):
    """`process 'img%03d.jpg'` read the neighbours img001.jpg … img003.jpg as FFmpeg's image pattern, three rows
    from three other files; it is the one file given."""
    import cv2

    for i in range(1, 4):
        cv2.imwrite(str(tmp_path / f"img{i:03d}.jpg"), frames[i])
    cv2.imwrite(str(tmp_path / "img%03d.jpg"), frames[0])
    rc, err = cli(str(tmp_path / "img%03d.jpg"), "--no-video")
    assert rc == 0, err
    assert len(read_csv(tmp_path / "out" / "img%03d.csv", code_dim)) == 1


def test_url_timeout_is_the_users_to_choose(tmp_path):
    """`process --url-timeout S`: a silent server fails the input after S seconds (twice S over HTTP: the server's
    answer, then FFmpeg's) instead of the fixed 10 s (20 s over HTTP); 0 and negative values are refused."""
    import subprocess
    import sys

    with _silent_server() as port:
        url = f"http://127.0.0.1:{port}/clip.mp4"
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "facecycle", "process", url, "--url-timeout", "1", "--no-video",
                            "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t
        assert r.returncode == 3 and "no data within 1 s" in r.stderr, r.stderr
        assert took < 10.0 + 8.0  # (start-up and the model's load are in it; the default alone waited 20 s)
        for bad in ("0", "-2", "nan"):
            r = subprocess.run([sys.executable, "-m", "facecycle", "process", url, "--url-timeout", bad,
                                "--no-video", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 2 and "--url-timeout must be" in r.stderr and "Traceback" not in r.stderr, r.stderr
