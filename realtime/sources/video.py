"""Video files and network streams through PyAV, with true timestamps.

Every decoded frame is yielded once, in presentation order, with its PTS and
the stream's time base (variable frame rate is preserved). Rotation metadata
(the display matrix, read back by PyAV as ``VideoFrame.rotation``,
counter-clockwise degrees) is applied, so images are in display orientation.
Damaged packets are skipped and counted in ``errors``.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple, Union

import av
import cv2
import numpy as np

from facecycle.errors import InputError
from facecycle.files import IMAGE_SUFFIXES, UNREAD_PICTURE_SUFFIXES

from ..types import FramePacket
from .base import Source

__all__ = ["VideoSource", "rotate_image"]

log = logging.getLogger(__name__)

_STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def rotate_image(image: np.ndarray, degrees_ccw: float) -> np.ndarray:
    """Rotate (H, W, C) by a multiple of 90° counter-clockwise (other angles round to the nearest)."""
    k = int(round(float(degrees_ccw) / 90.0)) % 4
    if k == 0:
        return image
    code = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}[k]
    return cv2.rotate(image, code)


class VideoSource(Source):
    """Decode a video file or stream.

    Args:
        path: file path or stream URL.
        realtime: play at the file's own pace as if it were a camera (a slow
            consumer makes it drop frames, counted in ``drops``; see
            :class:`realtime.pipeline.Pipeline`).
        threads: decoder threads (0 = FFmpeg's choice).
        max_errors: give up (InputError) after this many damaged packets in a row.
    """

    def __init__(self, path: Union[str, Path], realtime: bool = False, threads: int = 0,
                 max_errors: int = 50) -> None:
        super().__init__()
        spath = str(path)
        self.is_url = spath.startswith(_STREAM_PREFIXES)
        #: a named pipe or /dev/stdin fed by a pipe (``ffmpeg ... -f matroska - | facecycle process /dev/stdin``):
        #: read once, in order, every frame (the writer waits for us: nothing is dropped), never re-opened
        self.is_pipe = False
        if not self.is_url:
            p = Path(spath)
            if not p.exists():
                raise InputError(f"{spath}: no such file")
            if p.is_dir():
                raise InputError(f"{spath}: is a directory, not a video file")
            st = p.stat()
            self.is_pipe = stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode)
            if st.st_size == 0 and not self.is_pipe:
                raise InputError(f"{spath}: empty file (0 bytes)")
            if not os.access(spath, os.R_OK):
                raise InputError(f"{spath}: permission denied")
        self.name = spath
        # the file, for what reads it again (the look-ahead's second pass, the audio copied into the video): not a
        # URL, not a pipe
        self.path = None if self.is_url or self.is_pipe else spath
        self.realtime = bool(realtime)
        self.max_errors = max_errors
        try:
            self.container = av.open(spath, "r", timeout=10.0 if self.is_url else None)
        except (av.error.FFmpegError, OSError, ValueError) as e:
            hint = ""
            a_file = not (self.is_url or self.is_pipe)  # a pipe's bytes must not be read here
            kind = _not_media(spath) if isinstance(e, av.error.InvalidDataError) and a_file else ""
            if kind:
                hint = f"; the file holds {kind}, not a video"
            elif (isinstance(e, av.error.InvalidDataError) and Path(spath).suffix.lower() in (".mp4", ".mov", ".m4v")
                  and (not a_file or _starts_as_mp4(spath))):
                hint = "; if the recording was cut short, its index (moov atom) is missing"
            elif Path(spath).suffix.lower() in UNREAD_PICTURE_SUFFIXES:
                hint = "; a phone's HEIC or a camera's raw picture is not read here: convert it to JPEG or PNG first"
            raise InputError(f"{spath}: cannot open as a video ({_msg(e)}{hint})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{spath}: no video stream (audio-only or not a video)")
        self.stream = _pick_video_stream(self.container, spath)
        if self.stream is None:  # an audio file's cover art: one picture stored as a "video" stream
            self.container.close()
            raise InputError(f"{spath}: no video stream (audio-only: its only picture is a cover image)")
        self.stream_index = int(self.stream.index)  # (read now: a closed container's streams are gone)
        # live: frames come at the sender's pace and the oldest queued one is dropped when the pipeline is behind. A
        # live stream is: RTSP, RTMP, UDP, SRT, TCP, or HTTP(S) without a known duration (a live HLS playlist, an
        # MJPEG camera). A file over HTTP(S) (an MP4 on a web server or object store, an HLS VOD playlist) has a
        # duration and is read as a file: every frame (it used to be live: 135 of 169 frames of a served MP4 dropped)
        self.live = bool(realtime) or (self.is_url and (not spath.startswith(("http://", "https://"))
                                                        or not self.container.duration))
        self.stream.thread_type = "AUTO"
        if threads:
            self.stream.thread_count = threads
        cc = self.stream.codec_context
        self.time_base = self.stream.time_base or Fraction(1, 1000)
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps = float(rate) if rate else None
        self.rate = rate
        # the stream's sample count, or its duration times the rate, whichever is fewer: an MP4 edit list can hide
        # samples from playback (3ddfa_obama.mp4 holds 158 and plays 55, its first 103 before the list's start), and
        # the decoder drops them, as every player does; counted as samples they read as a truncated file
        counts = [int(self.stream.frames or 0)]
        if self.stream.duration and self.fps:
            counts.append(int(round(float(self.stream.duration * self.time_base) * self.fps)))
        self.frame_count = min((n for n in counts if n > 0), default=None)
        if "avi" in self.container.format.name.split(",") and counts[0] > 0:
            # an AVI's header counts its frames; FFmpeg's duration of a cut AVI is what its data still holds, so the
            # smaller one hid the cut (half a file read as complete). AVI has no edit lists
            self.frame_count = counts[0]
        # how long the file says it is (s): what the decoded frames must span for the file to be complete. From
        # the stream's duration, else the container's (Matroska's counts from 0, not from the first frame: a file
        # starting at 10 s read as 5 times its length); an AVI's from its header's frame count (see above)
        self.span = _span(self.container, self.stream, self.time_base)
        if "avi" in self.container.format.name.split(",") and counts[0] > 0 and self.fps:
            self.span = counts[0] / self.fps
        # the sample count is exact where the container indexes its samples (MP4, MOV) and is no AVI (whose header
        # counts the empty chunks of dropped frames); elsewhere the count is the span times the nominal rate, an
        # estimate (variable frame rate), and completeness is judged by the time the frames span instead
        self.exact_count = counts[0] > 0 and "avi" not in self.container.format.name.split(",")
        if self.frame_count is None and self.span and self.fps and not self.is_url:
            self.frame_count = int(round(self.span * self.fps))
        # MPEG-TS, FLV and the like may restart or jump their clock (joined segments, a broadcast capture): a jump of
        # more than 10 s either way is a discontinuity there, as FFmpeg's own tools take it
        self._ts_discont = bool(int(self.container.format.flags) & 512)  # AVFMT_TS_DISCONT
        self.frames_decoded = 0
        self._paused_s = 0.0  # time the reader was paused, not yet added to the pacing clock
        self.frames_missing = 0
        self.discontinuities = 0  # times the timestamps jumped back (the timeline was continued across them)
        self.rotation = 0
        self.width, self.height = int(cc.width or 0), int(cc.height or 0)
        #: non-square pixels (anamorphic DV, some broadcast and phone files): frames are stretched to the picture's
        #: display shape, as players show them, or every face would be read squeezed
        self.stored_size = (self.width, self.height)
        self.display_size = _display_size(self.width, self.height, cc.sample_aspect_ratio
                                          or self.stream.sample_aspect_ratio)
        if self.width <= 0 or self.height <= 0:
            self.container.close()
            kind = "" if self.is_url or self.is_pipe else _not_media(spath)
            why = _index_hint(spath, self._pipe_format()) or ("the stream sent no picture size" if self.is_url
                                                              else f"the file holds {kind}, not a picture or a video"
                                                              if kind else "corrupt header?")
            raise InputError(f"{spath}: video stream has no frame size ({why})")
        if self.display_size is not None:
            log.info("%s: pixels of aspect %s: frames shown at %dx%d (stored %dx%d)", spath,
                     cc.sample_aspect_ratio or self.stream.sample_aspect_ratio, *self.display_size, *self.stored_size)
            self.width, self.height = self.display_size
        self.still = len(self.container.streams) == 1 and (self.frame_count or 0) <= 1 and (
            cc.name in _STILL_CODECS or Path(spath).suffix.lower() in IMAGE_SUFFIXES)  # AVIF: one AV1 frame
        self.stills = self.still  # a single picture: analysed as a still (Source.stills)
        self._closed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------------
    def __iter__(self) -> Iterator[FramePacket]:
        t0_wall: Optional[float] = None
        first_pts: Optional[int] = None
        index = 0
        last_pts: Optional[int] = None
        bad_in_row = 0
        tb = self.time_base
        step = max(1, int(round(1 / (self.fps * tb)))) if self.fps else 1  # one frame, in time-base ticks
        offset = 0  # added to the stream's pts since its clock restarted (see below)
        for packet in self._demux():
            if getattr(packet, "is_corrupt", False):  # the demuxer saw damage (e.g. MPEG-TS continuity errors)
                self.errors += 1
                log.warning("%s: damaged packet (flagged by the demuxer)", self.name)
            try:
                frames = packet.decode()
                bad_in_row = 0
            except av.error.FFmpegError as e:
                self.errors += 1
                bad_in_row += 1
                log.warning("%s: damaged packet skipped (%s)", self.name, _msg(e))
                if bad_in_row >= self.max_errors:
                    raise InputError(f"{self.name}: undecodable ({bad_in_row} damaged packets in a row)") from None
                continue
            for frame in frames:
                t = time.perf_counter()
                if getattr(frame, "is_corrupt", False):  # decoded with errors concealed
                    self.errors += 1
                pts = frame.pts
                if pts is None:  # no timestamps: synthesise from the nominal rate
                    pts = (last_pts + 1) if last_pts is not None and not self.fps else (
                        int(round(index / (self.fps * tb))) if self.fps else index)
                else:
                    pts += offset
                if (self._ts_discont and last_pts is not None and self.fps
                        and (pts - last_pts) * tb > _MAX_JUMP_S):
                    # the clock jumped ahead (a restart that FFmpeg took for a wrap, or a second segment's own
                    # clock): time goes on from the previous frame, one frame later
                    offset -= pts - (last_pts + step)
                    self.discontinuities += 1
                    log.warning("%s: timestamps jump %.3f s ahead at frame %d (a restarted clock in a joined or "
                                "spliced stream): the timeline continues from the previous frame", self.name,
                                float((pts - last_pts) * tb), index)
                    pts = last_pts + step
                if last_pts is not None and pts <= last_pts:
                    if last_pts - pts > step:
                        # the stream's clock restarted (MPEG-TS segments joined, a spliced or re-muxed capture): time
                        # goes on from the previous frame, one frame later, and the rest keeps its own spacing
                        # (each frame one tick after the last froze the timestamps for the rest of the file)
                        offset += last_pts + step - pts
                        self.discontinuities += 1
                        log.warning("%s: timestamps jump back %.3f s at frame %d (joined or spliced stream): the "
                                    "timeline continues from the previous frame", self.name,
                                    float((last_pts - pts) * tb), index)
                        pts = last_pts + step
                    else:  # repair a non-increasing pts
                        pts = last_pts + 1
                last_pts = pts
                if first_pts is None:
                    first_pts = pts
                ts = float((pts - first_pts) * tb)
                img = self._to_bgr(frame)
                pkt = FramePacket(index=index, pts=pts, time_base=tb, timestamp=ts, image=img,
                                  source=self.name, stats={"decode": time.perf_counter() - t})
                if self.realtime:  # pace like a camera
                    now = time.perf_counter()
                    if t0_wall is None:
                        t0_wall = now - ts  # (a pause before the first frame is behind us: not added again)
                    else:
                        t0_wall += self._paused_s  # a pause moves the clock on: the file resumes where it was
                    self._paused_s = 0.0
                    wait = t0_wall + ts - now
                    if wait > 0:
                        time.sleep(wait)
                index += 1
                self.frames_decoded = index
                yield pkt
        if index == 0:
            hint = _index_hint(self.name, self._pipe_format())
            raise InputError(f"{self.name}: no decodable video frames{f' ({hint})' if hint else ''}")
        if self.is_url and self.live:
            return
        if self.discontinuities and not self.exact_count:
            self.frame_count = index  # a duration across a restarted clock says nothing: the count is what was read
        if self.exact_count:
            expected = self.frame_count or 0
            if expected and expected - index > max(2, 0.02 * expected):
                self.frames_missing = expected - index
                log.warning("%s: decoded %d of ~%d frames (truncated or damaged file)", self.name, index, expected)
        elif self.span and self.fps and not self.discontinuities and first_pts is not None and last_pts is not None:
            # the time the frames span (the last one shown for one nominal frame) against the file's length
            short = self.span - (float((last_pts - first_pts) * tb) + 1 / self.fps)
            missing = int(round(short * self.fps))
            if missing > max(2, 0.02 * self.span * self.fps):
                self.frames_missing = missing
                log.warning("%s: decoded %d frames over %.2f of %.2f s (truncated or damaged file; ~%d frames "
                            "missing)", self.name, index, self.span - short, self.span, missing)

    def _demux(self):
        try:
            for packet in self.container.demux(self.stream):
                yield packet
        except av.error.FFmpegError as e:  # truncated / corrupt container: stop, keep what was decoded
            self.errors += 1
            log.warning("%s: demuxing stopped early (%s)", self.name, _msg(e))
            return
        # the final flush packet (packet.size 0) is yielded by demux itself

    def _pipe_format(self) -> str:
        return (self.container.format.name or "") if self.is_pipe else ""

    def _to_bgr(self, frame: "av.VideoFrame") -> np.ndarray:
        rot = getattr(frame, "rotation", 0) or 0
        self.rotation = rot
        if self.display_size is not None and (frame.width, frame.height) == self.stored_size:
            w, h = self.display_size
            img = frame.to_ndarray(format="bgr24", width=w, height=h)
        else:
            img = frame.to_ndarray(format="bgr24")
        if rot:
            img = rotate_image(img, rot)
        self.height, self.width = img.shape[:2]
        return img

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self.container.close()
                except Exception:  # noqa: BLE001 - closing must not raise
                    pass

    def paused_for(self, seconds: float) -> None:
        self._paused_s += max(0.0, float(seconds))

    def describe(self) -> dict:
        d = super().describe()
        d.update(codec=self.stream.codec_context.name, stream=self.stream_index, time_base=str(self.time_base),
                 rotation=self.rotation,
                 errors=self.errors, frames_decoded=self.frames_decoded, frames_missing=self.frames_missing,
                 timestamp_discontinuities=self.discontinuities)
        return d


_MAX_JUMP_S = 10.0  # a forward timestamp jump that is a discontinuity in MPEG-TS-like formats (FFmpeg's default)
_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC: a cover image stored as a video stream


def _pick_video_stream(container: Any, name: str) -> Any:
    """The video stream to read: of the streams that are not cover images, the largest picture (ties: FFmpeg's own
    choice, av_find_best_stream); None when every video stream is a cover image. A second video stream (a proxy,
    a thumbnail track, a second camera) is said in the log."""
    videos = [v for v in container.streams.video if not int(getattr(v, "disposition", 0) or 0) & _ATTACHED_PIC]
    if not videos:
        return None
    best = container.streams.best("video")
    chosen = max(videos, key=lambda v: ((v.codec_context.width or 0) * (v.codec_context.height or 0), v is best))
    if len(videos) > 1:
        log.info("%s: %d video streams; reading stream %d (%dx%d, the largest picture)", name, len(videos),
                 chosen.index, chosen.codec_context.width or 0, chosen.codec_context.height or 0)
    return chosen


def _span(container: Any, stream: Any, tb: Fraction) -> Optional[float]:
    """The file's length in seconds from the first frame, or None where it does not say."""
    if stream.duration:
        return float(stream.duration * tb)
    if not container.duration:
        return None
    span = container.duration / 1e6  # microseconds
    if container.start_time and {"matroska", "webm"} & set(container.format.name.split(",")):
        span -= container.start_time / 1e6  # Matroska's duration is the end's time, counted from 0
    return span if span > 0 else None


def _display_size(width: int, height: int, sar: Optional[Fraction]) -> Optional[Tuple[int, int]]:
    """The (width, height) that shows pixels of aspect ``sar`` (width / height of one pixel) square, stretching one
    side (no pixel is lost); None for square or unknown pixels. Sizes stay even (the annotated video's yuv420p)."""
    if not sar or sar <= 0 or sar == 1 or width <= 0 or height <= 0:
        return None
    if sar > 1:
        width = int(round(width * sar / 2)) * 2
    else:
        height = int(round(height / sar / 2)) * 2
    return width, height


#: decoders of single pictures (a file of one frame decoded by one of these is a still, :attr:`Source.stills`)
_STILL_CODECS = ("mjpeg", "png", "bmp", "webp", "tiff", "pgm", "ppm", "pbm", "pam", "gif", "qoi", "jpeg2000",
                 "jpegls")


def _index_hint(spath: str, pipe_format: str = "") -> str:
    """For an MP4 / MOV over HTTP(S) or through a pipe: why it may not stream (else ""). Its index (moov atom) is
    often at the end of the file, which FFmpeg can reach only where the server answers range requests (a plain
    ``python -m http.server`` does not), and never through a pipe. ``pipe_format``: the demuxer's name for a pipe's
    contents (``mov,mp4,m4a,3gp,3g2,mj2``)."""
    if "mp4" in pipe_format or "mov" in pipe_format:
        return ("an MP4 whose index (moov atom) is at its end cannot be read through a pipe: give the file itself, "
                "pipe MPEG-TS or Matroska (`ffmpeg -i IN -c copy -f mpegts -`), or remux it with "
                "`ffmpeg -i IN -c copy -movflags +faststart OUT`")
    if not spath.startswith(("http://", "https://")):
        return ""
    if Path(spath.split("?", 1)[0]).suffix.lower() not in (".mp4", ".mov", ".m4v"):
        return ""
    return ("an MP4 whose index (moov atom) is at its end streams only from a server that answers range requests: "
            "download it, or remux it with `ffmpeg -i IN -c copy -movflags +faststart OUT`")


def _starts_as_mp4(spath: str) -> bool:
    """Whether the file's first box is one an MP4 / MOV starts with (``ftyp``, or ``mdat`` / ``wide`` / ``free`` of an
    old QuickTime file): only then can a missing index be why it does not open."""
    try:
        with open(spath, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"mdat", b"moov", b"wide", b"free", b"skip")


def _not_media(spath: str) -> str:
    """``"text"`` or ``"HTML"`` where the file starts as one (a page saved under a video's name, a README renamed):
    words for the error instead of a hint about cut recordings; "" otherwise (binary: maybe damaged media)."""
    try:
        with open(spath, "rb") as f:
            head = f.read(4096)
    except OSError:
        return ""
    if not head or b"\0" in head:
        return ""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a character cut at the end of the block
            return ""
        text = head[:e.start].decode("utf-8")
    start = text.lstrip().lower()
    return "HTML" if start.startswith(("<!doctype html", "<html")) else "text"


def _msg(e: BaseException) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return s.strip().splitlines()[0] if s.strip() else type(e).__name__
