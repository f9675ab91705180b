"""Video files and network streams through PyAV, with true timestamps.

Every decoded frame is yielded once, in presentation order, with its PTS and
the stream's time base (variable frame rate is preserved). Rotation metadata
(the display matrix, read back by PyAV as ``VideoFrame.rotation``,
counter-clockwise degrees) is applied, so images are in display orientation.
Damaged packets are skipped and counted in ``errors``.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import re
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import av
import cv2
import numpy as np

from facecycle.errors import InputError, OutOfMemory, UsageError, address_space_limited, is_out_of_memory
from facecycle.files import IMAGE_SUFFIXES, UNREAD_PICTURE_SUFFIXES, VIDEO_SUFFIXES
from facecycle.imageio import PictureTooLarge, picture_size, read_image, too_large

from ..types import FramePacket
from .base import Source

__all__ = ["VideoSource", "rotate_image", "STREAM_SCHEMES", "url_scheme", "is_stream_url", "local_path"]

log = logging.getLogger(__name__)

#: URL schemes read as streams by FFmpeg's protocols (compared case-insensitively: ``HTTP://`` is ``http://``)
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "ftp", "udp", "tcp", "srt")
#: schemes of live streams: frames come at the sender's pace (http, https and ftp serve files, or, for http(s), a
#: live playlist or camera: decided from the stream, :func:`_http_live`)
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: seconds without data before a URL's read gives up (FFmpeg's interrupt callback: ``av.error.ExitError``)
URL_TIMEOUT_S = 10.0
#: errors of a connection, not of the data: a URL's file that ends with one was not read to its end
_NETWORK_ERRNOS = {errno.EIO, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE, errno.ENETDOWN,
                   errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOTCONN}


def url_scheme(spec: Union[str, Path]) -> str:
    """The lower-case scheme of a URL (``"http"`` of ``HTTP://host/x``), or "" for a path."""
    m = _SCHEME.match(str(spec))
    return m.group(1).lower() if m else ""


def is_stream_url(spec: Union[str, Path]) -> bool:
    """Whether ``spec`` is a URL that FFmpeg reads (:data:`STREAM_SCHEMES`), not a local path."""
    return url_scheme(spec) in STREAM_SCHEMES


def local_path(spec: str) -> str:
    """The local path of a ``file://`` URL (percent-decoded: ``file:///data/my%20clip.mp4`` is
    ``/data/my clip.mp4``); anything else as given. On Windows the path is the system's
    (``urllib.request.url2pathname``): ``file:///C:/Users/Zo%C3%AB/a.mp4`` is ``C:\\Users\\Zoë\\a.mp4``, and a URL
    of another host is its UNC path (``file://server/share/a.mp4`` is ``\\\\server\\share\\a.mp4``).

    Raises:
        facecycle.errors.InputError: a file URL of another host (``file://server/share/x.mp4``) except on Windows, or
            one that is no path there.
    """
    if url_scheme(spec) != "file":
        return spec
    import sys
    from urllib.parse import unquote, urlsplit

    u = urlsplit(spec)
    if sys.platform == "win32":
        from urllib.request import url2pathname

        netloc, upath = u.netloc, u.path
        if re.fullmatch(r"[A-Za-z][:|]", netloc):  # file://C:/x.mp4 (one slash short): the drive, not a host
            netloc, upath = "", f"/{netloc}{upath}"
        try:
            path = url2pathname(upath) if upath else ""
        except OSError as e:  # "Bad URL" (a colon that is no drive's)
            raise InputError(f"{spec}: not a file URL of a Windows path ({e})") from None
        if path and netloc.lower() not in ("", "localhost"):
            path = "\\\\" + netloc + (path if path.startswith("\\") else "\\" + path)
    else:
        if u.netloc not in ("", "localhost"):
            raise InputError(f"{spec}: a file URL of another host ({u.netloc}) cannot be read here; give a local path")
        path = unquote(u.path)
    if not path:
        raise InputError(f"{spec}: a file URL without a path")
    return path


#: FFmpeg's options for a local file: its name is the file's (``img%03d.jpg`` was read as the pattern, the
#: neighbours img001.jpg ... img003.jpg, not the file given)
_LOCAL_OPTIONS = {"pattern_type": "none"}
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


class _PlaylistGuard:
    """``io_open`` for a local HLS playlist (a file that starts ``#EXTM3U``): every file FFmpeg opens for it (the
    playlist, nested playlists, segments, init sections) must lie in the playlist's own folder, by its real path,
    and no URL is opened. FFmpeg read any local video a playlist named (``file:///…/other.ts``,
    ``../private/other.ts``, through a nested playlist, an unquoted ``URI=``, or after a megabyte of padding) into
    the outputs, so an uploaded playlist could read other files of a cluster node. ``refused``: the first URL
    refused."""

    def __init__(self, path: str) -> None:
        self.root = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        self.refused: Optional[str] = None

    def __call__(self, url: str, flags: int, options: dict) -> Any:
        name = url[5:] if url.startswith("file:") else url
        real = None if _URI_SCHEME.match(name) else os.path.realpath(name)
        if real is None or not real.startswith(self.root + os.sep) or flags & 2:  # 2: AVIO_FLAG_WRITE
            self.refused = self.refused or url
            raise PermissionError(f"{url}: outside the playlist's folder")
        return open(real, "rb")

    def error(self, path: str) -> InputError:
        return InputError(f"{path}: an HLS playlist naming a file outside its folder ({str(self.refused)[:200]}): not "
                          "read (a local playlist may name only files in its own folder)")


def _playlist_guard(path: str) -> Optional[_PlaylistGuard]:
    """A :class:`_PlaylistGuard` where the local file ``path`` is an HLS playlist; None otherwise (other files are
    opened by FFmpeg itself: a guard reads every byte through Python)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return None
    return _PlaylistGuard(path) if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"#EXTM3U") else None


def _ffmpeg_url(spec: str) -> str:
    """``spec`` with its scheme in lower case (FFmpeg knows ``http``, not ``HTTP``)."""
    m = _SCHEME.match(spec)
    return m.group(1).lower() + spec[len(m.group(1)):] if m else spec


@dataclass(frozen=True)
class _Served:
    """What an HTTP(S) server answered for a URL (a GET whose first bytes are read, then closed)."""

    length: Optional[int]  # Content-Length: the bytes the server promises (a file), or None (a stream, chunked)
    content_type: str
    head: bytes  # the body's first bytes


def _probe_http(url: str, timeout: float) -> Optional[_Served]:
    """The server's answer for ``url`` (:class:`_Served`), or None where the request fails (FFmpeg then says why,
    or reads it where we could not: a certificate Python does not trust)."""
    import http.client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "facecycle"}),
                                    timeout=timeout) as r:
            n = r.headers.get("Content-Length")
            length = int(n) if n and n.strip().isdigit() and not r.headers.get("Content-Encoding") else None
            return _Served(length, (r.headers.get("Content-Type") or "").split(";")[0].strip().lower(), r.read(512))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        # (a timeout too: FFmpeg tries once more with its own, so a server slow to send its first bytes, a cold
        # CDN or a relay waiting for its publisher, gets twice the time; a silent one then ends "no data within")
        log.debug("%s: probing the server failed (%s)", url, e)
        return None


#: demuxers of a playlist (HLS, DASH): their streams are fetched apart, each one's only where it is read
_PLAYLIST_FORMATS = frozenset({"hls", "applehttp", "dash"})


def _http_live(url: str, served: Optional[_Served], formats: set, duration: Optional[int]) -> bool:
    """Whether an HTTP(S) input is live (frames at the sender's pace, dropped when behind) rather than a served file
    (read whole, every frame). A playlist (HLS, DASH) is live where it has no end (no duration: a live playlist);
    a multipart MJPEG camera is live; a response with a Content-Length is a file (an MPEG-TS or fragmented MP4 on a
    plain web server has no duration there, and was read as live: 124 of 472 frames analysed); a response without
    one is a stream being made as it is sent (an HTTP camera, an IPTV channel ``/live.ts``), live where it has no
    duration. Where the server could not be asked, a path with a video file's suffix is a file."""
    if formats & _PLAYLIST_FORMATS:
        return not duration
    if "mpjpeg" in formats or (served is not None and served.content_type.startswith("multipart/")):
        return True
    if served is not None:
        return served.length is None and not duration
    from urllib.parse import unquote, urlsplit

    if Path(unquote(urlsplit(url).path)).suffix.lower() in VIDEO_SUFFIXES:
        return False
    return not duration


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
        timeout: seconds without data before a URL's read gives up (default :data:`URL_TIMEOUT_S`): a served
            file's run then fails (InputError), a live stream ends.
    """

    #: how frames are timed (set by ``__init__``; see there): ``"stream"`` or ``"arrival"``
    clock = "stream"
    #: a live stream URL (set by ``__init__``): frames come at the sender's pace
    live_stream = False
    #: how a live stream ended, in words (``"no data for 10 s"``, ``"the connection ended after …"``); None where
    #: it was read to its end (or is not over yet). The sidecar's ``input.ended``
    ended: Optional[str] = None
    _dts_clock = False  # frames timed by their dts (AVI: _best_effort)
    _guard: Optional["_PlaylistGuard"] = None  # a local HLS playlist's io_open (_PlaylistGuard)
    _colour: Optional[dict] = None  # the frames' colour tags and what their reading does (_colour_of)
    _lut: Optional[np.ndarray] = None  # the converted frame's values -> the pixels read (_colour_of)
    _convert: dict = {}  # reformat()'s arguments for a matrix it does not convert (replaced, never changed in place)
    #: the open file's PyAV container and video stream; None once closed (:meth:`close` lets go of them)
    container: Any = None
    stream: Any = None
    _format_name = ""  # the demuxer's name(s), read at open (``mov,mp4,m4a,3gp,3g2,mj2``)
    codec_name: Optional[str] = None
    creation_time: Optional[str] = None
    #: the first audio packet's time (s) on the file's clock, as the container states it (the default audio track's
    #: start_time x time_base, read at open); None without audio or where unknown. The sidecar's ``input.audio_start_s``
    audio_start_s: Optional[float] = None
    #: frames whose pts was repaired in place (the sidecar's ``input.timestamps_repaired``): a lone frame out of line
    #: with both neighbours put between them (:meth:`_in_line`), a repeated pts put one tick after the last
    timestamps_repaired = 0
    #: a file's steps between frames, for the gaps of frames it lacks (set by ``__iter__``; :func:`_gap_summary`)
    _steps: Optional["Counter[Tuple[int, int]]"] = None
    #: a local file's size (bytes) when it was opened, held against its size when read to its end; None for a URL
    #: or a pipe
    _size_at_open: Optional[int] = None
    #: the file grew while it was read (a recording in progress): what was read is not all of it. The sidecar's
    #: ``input.grew_while_read`` (there only where true); set when it is read to its end
    grew_while_read = False
    #: the file ends inside a packet (an MPEG-TS whose last packet is partial: a download or a copy cut short, a
    #: writer killed). The sidecar's ``input.cut_short`` (there only where true); set when it is read to its end
    cut_short = False
    #: :attr:`span` is the container's length where the video stream states none of its own, and the container
    #: holds other streams (FLV's, a Matroska file's without DURATION tags): its longest stream's, not the video's
    #: (set by ``__init__``; see :func:`_span_shared`)
    _span_shared = False
    #: the other streams' packets are read along with the video's (:meth:`_demux`), for where they end
    _reads_along = False
    #: the end (s, on the file's clock) of the last packet of the other streams read along; None before one is read
    _others_end: Optional[float] = None

    def __init__(self, path: Union[str, Path], realtime: bool = False, threads: int = 0,
                 max_errors: int = 50, timeout: Optional[float] = None) -> None:
        super().__init__()
        spath = local_path(str(path))  # file:///x.mp4 is the file /x.mp4
        self.scheme = url_scheme(spath)
        self.is_url = self.scheme in STREAM_SCHEMES
        #: seconds without data before a URL's read gives up (default :data:`URL_TIMEOUT_S`). Not named ``timeout``:
        #: the pipeline's watchdog takes a live source's ``timeout`` for a camera's and would fail the run itself
        self.url_timeout = float(URL_TIMEOUT_S if timeout is None else timeout)
        #: a served file's size in bytes (HTTP's Content-Length), None where unknown (:attr:`live` streams)
        self.served_size: Optional[int] = None
        self._reformatter: Any = None  # av's VideoReformatter, made at the first frame (_to_bgr)
        self._bytes_read = 0  # the demuxed packets' extent in the input (bytes): how far a URL's file was read
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
        self._size_at_open = int(st.st_size) if self.path is not None else None
        self.max_errors = max_errors
        served = _probe_http(spath, self.url_timeout) if self.scheme in ("http", "https") else None
        if served is not None:
            self.served_size = served.length
        local = not (self.is_url or self.is_pipe)
        self._guard = _playlist_guard(spath) if local else None
        try:
            self.container = av.open(_ffmpeg_url(spath), "r", timeout=self.url_timeout if self.is_url else None,
                                     options=_LOCAL_OPTIONS if local else None,
                                     **({"io_open": self._guard} if self._guard is not None else {}))
        except (av.error.FFmpegError, OSError, ValueError) as e:
            if self._guard is not None and self._guard.refused:
                raise self._guard.error(spath) from None
            hint = ""
            # (what a local file holds: a pipe's bytes must not be read here)
            kind = _not_media(spath) if isinstance(e, av.error.FFmpegError) and local else ""
            page = served is not None and (served.content_type in ("text/html", "application/xhtml+xml")
                                           or _text_kind(served.head) == "HTML")
            if kind:  # (a .gif of text ends as "End of file", not as "Invalid data")
                raise InputError(f"{spath}: cannot open as a {_what(spath)} ({_msg(e)}; the file holds {kind}, "
                                 f"{_not_what(spath)})") from None
            elif page:  # a login page, an error page with status 200, an expired share link
                hint = "; the server sent a web page (HTML), not a video (a login page or an expired link?)"
            elif (isinstance(e, av.error.InvalidDataError) and Path(spath).suffix.lower() in (".mp4", ".mov", ".m4v")
                  and (not local or _starts_as_mp4(spath))):
                hint = "; if the recording was cut short, its index (moov atom) is missing"
            elif Path(spath).suffix.lower() in UNREAD_PICTURE_SUFFIXES:
                hint = "; a phone's HEIC or a camera's raw picture is not read here: convert it to JPEG or PNG first"
            if isinstance(e, av.error.ExitError) and self.is_url:  # FFmpeg's interrupt callback: the timeout
                raise InputError(f"{spath}: cannot open as a video (no data within {self.url_timeout:g} s)") from None
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
        # live stream is: RTSP, RTMP, UDP, SRT, TCP, or over HTTP(S) a live playlist, an MJPEG camera or a response
        # made as it is sent (_http_live). A served file (FTP; over HTTP(S) an MP4 / MPEG-TS / Matroska on a web
        # server or object store, an HLS VOD playlist) is read as a file: every frame (a served MPEG-TS, which has
        # no duration there, used to be live: 348 of its 472 frames dropped)
        self._format_name = str(self.container.format.name or "")  # (read now: close() lets go of the container)
        formats = set(self._format_name.split(","))
        #: the decoder's name and the recording time the file states (its ``creation_time`` tag), read while open
        self.codec_name: Optional[str] = self.stream.codec_context.name
        self.creation_time = _creation_time(self.container, self.stream)
        self.audio_start_s = _audio_start(self.container)
        if self.is_url:  # a live stream URL (live_stream, False by default): frames come at the sender's pace
            if self.scheme in ("http", "https"):
                self.live_stream = _http_live(spath, served, formats, self.container.duration)
            else:
                self.live_stream = self.scheme in _LIVE_SCHEMES
        self.live = self.live_stream or bool(realtime)
        # pacing is for a file played as if it were live: a live stream already comes at its own pace, and pacing it
        # by its timestamps too made it fall further behind the longer it ran (2 s, then 6 s after 20 s)
        self.realtime = bool(realtime) and not self.live_stream
        self.stream.thread_type = "AUTO"  # (an arrival clock's: slices, below)
        from facecycle.cpus import codec_threads  # 0 (FFmpeg's choice) counts the host's CPUs, not a CPU quota's

        if not threads and codec_threads(0):  # under a quota its CPUs, for the colour conversion's threads too
            self._convert = {**self._convert, "threads": codec_threads(0)}  # (FFmpeg's 0 started 15 on 64 CPUs)
        threads = codec_threads(threads)
        if threads:
            self.stream.thread_count = threads
        cc = self.stream.codec_context
        self.time_base = self.stream.time_base or Fraction(1, 1000)
        #: how frames are timed: ``"stream"`` (the stream's own timestamps) or ``"arrival"`` (a live stream whose
        #: format has no clock, :func:`_clockless`: wall-clock seconds since the first frame came, as a camera's)
        self.clock = "arrival" if self.live_stream and _clockless(formats, self.stream) else "stream"
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self._dts_clock = "avi" in formats
        if formats & _CLOCKLESS_FORMATS and not self.live_stream:
            # a raw stream (.h264, .hevc, .m2v): its demuxer's rate is a default (25) and its frames have no pts;
            # the rate the stream itself holds (H.264's VUI) timed a 30-fps file 20 % slow (frame 59 at 2.36 s)
            own = cc.framerate
            if own and 0 < float(own) < 1000:
                rate = own
            else:
                log.warning("%s: a raw video stream that holds no frame rate: times assume %s fps", self.name,
                            f"{float(rate):g}" if rate else "one frame per time-base tick")
        if self.clock == "arrival":  # the demuxer's rate is a guess (FFmpeg's MJPEG reader says 25 fps for any camera)
            rate = None
            self.time_base = _ARRIVAL_TIME_BASE
            # no frame threads: they hold each frame back until later packets came, and it would get their time
            self.stream.thread_type = "SLICE"
        self.fps = float(rate) if rate else None  # an arrival clock's: measured as frames come (None until then)
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
        self._span_shared = self.span is not None and _span_shared(self.container, self.stream, self.time_base)
        if "avi" in self.container.format.name.split(",") and counts[0] > 0 and self.fps:
            self.span, self._span_shared = counts[0] / self.fps, False
        # a shared span is an upper bound of the video's length, no estimate of its frames (an FLV with audio 0.4 s
        # past the last frame counted 89 frames for 75). Where the file is read whole, its other streams' packets
        # are read along, for where the file's data end (the time it spans, judged once it is read): a whole
        # file's reach its length, a truncated one's all end early. Not a live stream (no length), nor a playlist
        # (each rendition read along would be fetched)
        self._reads_along = self._span_shared and not self.live_stream and not formats & _PLAYLIST_FORMATS
        # the sample count is exact where the container indexes its samples (MP4, MOV) and is no AVI (whose header
        # counts the empty chunks of dropped frames); elsewhere the count is the span times the nominal rate, an
        # estimate (variable frame rate), and completeness is judged by the time the frames span instead
        self.exact_count = counts[0] > 0 and "avi" not in self.container.format.name.split(",")
        if self.frame_count is None and self.span and self.fps and not self.is_url and not self._span_shared:
            self.frame_count = int(round(self.span * self.fps))
        # MPEG-TS, FLV and the like may restart or jump their clock (joined segments, a broadcast capture): a jump of
        # more than 10 s either way is a discontinuity there, as FFmpeg's own tools take it
        self._ts_discont = bool(int(self.container.format.flags) & 512)  # AVFMT_TS_DISCONT
        self.frames_decoded = 0
        #: damage read through (``errors`` counts what was skipped): frames the decoder made with errors concealed,
        #: and packets the demuxer flagged as damaged that decoded. They were counted as "damaged packets skipped",
        #: which they were not: a file of two MPEG-TS segments joined said so of its join
        self.damaged = 0
        #: the first frame's pts (time-base ticks; the CSV's timestamps count from it), None before one is read
        self.first_pts: Optional[int] = None
        self._paused_s = 0.0  # time the reader was paused, not yet added to the pacing clock
        self.frames_missing = 0
        self.discontinuities = 0  # times the timestamps jumped back (the timeline was continued across them)
        self.rotation = 0
        self.width, self.height = int(cc.width or 0), int(cc.height or 0)
        #: non-square pixels (anamorphic DV, some broadcast and phone files): frames are stretched to the picture's
        #: display shape, as players show them, or every face would be read squeezed
        self.stored_size = (self.width, self.height)
        sar = cc.sample_aspect_ratio or self.stream.sample_aspect_ratio
        #: the stored pixels' aspect (width over height of one pixel; 1: square), read here: the stream is not
        #: touched once closed (describe() runs after it is: PyAV then reads freed memory)
        self.pixel_aspect = Fraction(sar) if sar and sar > 0 else Fraction(1)
        self.display_size = _display_size(self.width, self.height, sar)
        if self.width <= 0 or self.height <= 0:
            self.container.close()
            # FFmpeg leaves a picture over its size bound without a size: "corrupt header?" sent users hunting for
            # damage in a 20000x20000 JPEG
            size = None if self.is_url or self.is_pipe else picture_size(spath)
            if size and too_large(*size):
                raise PictureTooLarge(f"{spath}: {too_large(*size)}")
            kind = "" if self.is_url or self.is_pipe else _not_media(spath)
            if kind:  # text or a web page under a picture's name (FFmpeg's image2 opens it by its name alone)
                raise InputError(f"{spath}: cannot open as a {_what(spath)} ({_decode_error(spath)}; the file holds "
                                 f"{kind}, {_not_what(spath)})")
            why = _index_hint(spath, self._pipe_format()) or ("the stream sent no picture size" if self.is_url
                                                              else "corrupt header?")
            raise InputError(f"{spath}: video stream has no frame size ({why})")
        if self.display_size is not None:
            log.info("%s: pixels of aspect %s: frames shown at %dx%d (stored %dx%d)", spath,
                     cc.sample_aspect_ratio or self.stream.sample_aspect_ratio, *self.display_size, *self.stored_size)
            self.width, self.height = self.display_size
        # a single picture: known to hold one frame. Never a live stream (an MJPEG camera's frames are a video: read
        # as stills, every frame was a new face id, detected afresh, never smoothed), never a pipe (its frames are
        # not known before they are read); a local file whose format does not count its frames (a raw MJPEG or PNG
        # stream) has them counted (up to two), a served one is a picture where it is served as one
        self.still = (len(self.container.streams) == 1 and not self.live_stream and not self.is_pipe
                      and (cc.name in _STILL_CODECS or Path(spath).suffix.lower() in IMAGE_SUFFIXES)  # AVIF: one AV1
                      and self._one_frame(spath, served))
        self.stills = self.still  # a single picture: analysed as a still (Source.stills)
        self._closed = False
        self._lock = threading.Lock()

    @staticmethod
    def _gap(step: int, least_lag: Optional[float], t_came: float, last_pts: int, first_pts: Optional[int],
             tb: Fraction) -> int:
        """Ticks from the previous frame (``last_pts``) to this one across a live stream's clock restart: where this
        frame lies on the timeline had the sender gone on with the least lag it had (``least_lag``: arrival less
        stream time), so an outage shows as the time it lasted; at least one frame (``step``)."""
        if least_lag is None or first_pts is None:
            return step
        at = first_pts + int(round((t_came - least_lag) / tb))
        return max(step, at - last_pts)

    def _one_frame(self, spath: str, served: Optional[_Served]) -> bool:
        """Whether the input is known to hold a single frame (see :attr:`still`)."""
        if self.frame_count is not None:
            return self.frame_count <= 1
        if self.is_url:  # a served file, not read twice: a picture where the server or its name says so
            return served is not None and served.length is not None and (
                served.content_type.startswith("image/")
                or Path(spath.split("?", 1)[0]).suffix.lower() in IMAGE_SUFFIXES)
        try:  # a local file: count its packets, up to two
            with av.open(spath, "r", options=_LOCAL_OPTIONS,  # (a playlist: opened guarded again)
                         **({"io_open": _PlaylistGuard(spath)} if self._guard is not None else {})) as c:
                n = 0
                for packet in c.demux(video=0):
                    n += packet.size > 0
                    if n > 1:
                        return False
                return n == 1
        except (av.error.FFmpegError, OSError, ValueError):
            return False

    # ------------------------------------------------------------------
    def _refuse_closed(self) -> None:
        """Raise :class:`UsageError` where this source was closed (its container let go of)."""
        if self.container is None:
            raise UsageError(f"{self.name}: this VideoSource is closed; open the file again to read it")

    def __iter__(self) -> Iterator[FramePacket]:
        self._refuse_closed()  # said before anything the open file's describe() keeps is reset
        t0_wall: Optional[float] = None
        self.first_pts = None
        index = 0
        last_pts: Optional[int] = None
        tb = self.time_base
        step = max(1, int(round(1 / (self.fps * tb)))) if self.fps else 1  # one frame, in time-base ticks
        offset = 0  # added to the stream's pts since its clock restarted (see below)
        arrival = self.clock == "arrival"
        t0_arrival: Optional[float] = None
        # a live stream on its own clock: when each packet came (by pts), so that where its clock restarts (a
        # sender restarted) the timeline goes on by the time that really passed (a frame leaves the decoder up to a
        # few packets after its own came in: the packet's time, not the frame's)
        came: Dict[int, List[float]] = {}  # (a list per pts: a restarted sender sends the same pts again)
        # the least lag (arrival less stream time, s) of the frames since the clock last restarted: a sender keeps
        # it where it sends as it records; a frame held up (the demuxer gives a PES packet out only when the next
        # one begins; a network hiccup) lags more, never less
        least_lag: Optional[float] = None
        timed = self.live_stream and not arrival
        self._faulty = [0, 0]  # pts, dts that went backwards (_best_effort)
        self._last_raw: Tuple[Optional[int], Optional[int]] = (None, None)
        self._dts_step, self._dts_seen = 1, False
        self.timestamps_repaired = 0
        # a file's steps between frames with timestamps of their own, for the gaps of frames it lacks
        # (_gap_summary): (ticks, frames) -> how often; a frame whose pts was repaired lends no step of its own
        self._steps = steps = Counter() if not (self.live_stream or arrival) else None
        anchor: Optional[int] = None  # the last frame with a timestamp of its own (steps), and frames since
        between = 0

        def decoded() -> Iterator[Tuple["av.VideoFrame", float]]:
            """The decoded frames in order, each with when its packet came."""
            bad_in_row = oom_in_row = 0
            for packet in self._demux():
                t_arrival = time.perf_counter()  # (the packet is here: an arrival clock's time for its frame)
                if timed and packet is not None and packet.pts is not None:
                    came.setdefault(int(packet.pts), []).append(t_arrival)
                    if len(came) > 256:  # (frames that never came out: their packets' times go)
                        del came[next(iter(came))]
                flagged = bool(getattr(packet, "is_corrupt", False))  # the demuxer saw damage (MPEG-TS continuity
                try:  # errors: lost packets, or segments joined end to end, which break the count at each join)
                    frames = packet.decode() if packet is not None else self._flush()
                    bad_in_row = oom_in_row = 0
                    if flagged:  # read: counted as damage read through, not as a packet skipped
                        self.damaged += 1
                        log.warning("%s: packet flagged as damaged by the demuxer, decoded (a gap in the stream, or "
                                    "segments joined end to end)", self.name)
                except av.error.FFmpegError as e:
                    # under a limit on the address space a good file was "undecodable (50 damaged packets in a
                    # row)"; without one, ENOMEM may be a damaged packet's bogus size (over FFmpeg's largest
                    # allocation)
                    oom = is_out_of_memory(e, eagain=True)
                    if oom and address_space_limited():
                        raise OutOfMemory.while_(f"decoding {self.name}", e) from None
                    self.errors += 1
                    bad_in_row += 1
                    oom_in_row = oom_in_row + 1 if oom else 0
                    log.warning("%s: damaged packet skipped (%s)", self.name, _msg(e))
                    if bad_in_row >= self.max_errors:
                        if oom_in_row >= bad_in_row:  # every one of them was memory: the machine's, not the file's
                            raise OutOfMemory.while_(f"decoding {self.name}", e) from None
                        raise InputError(f"{self.name}: undecodable ({bad_in_row} damaged packets in a row)") from None
                    continue
                for frame in frames:
                    yield frame, t_arrival

        # a file (not live, not played at its pace, on a clock that cannot restart) is read one frame ahead, so
        # that a lone frame whose pts is out of line is put back between its neighbours (_in_line); elsewhere each
        # frame goes on as it is decoded
        if self._holds_frame():
            frames_in: Iterator[Tuple[Any, float, bool]] = self._in_line(decoded(), step)
        else:
            frames_in = ((f, ta, False) for f, ta in decoded())
        for frame, t_arrival, mended in frames_in:
            t = time.perf_counter()
            if getattr(frame, "is_corrupt", False):  # decoded with errors concealed: read, not skipped
                self.damaged += 1
            t_came = t_arrival
            if timed and frame.pts is not None and came.get(int(frame.pts)):
                # the latest packet of that pts: pts repeat only across a restart, and a packet whose frame
                # never came out (before the first keyframe) must not lend its time to the restarted one's
                t_came = came[int(frame.pts)].pop()
                if not came[int(frame.pts)]:
                    del came[int(frame.pts)]
            pts = self._best_effort(frame)
            if arrival:  # a live stream without a clock: when the frame came, as a camera's
                if t0_arrival is None:
                    t0_arrival = t_arrival
                pts = int(round((t_arrival - t0_arrival) / tb))
                if last_pts is not None and pts <= last_pts:  # (frames of one packet)
                    pts = last_pts + 1
                if pts > 0:  # the rate measured so far (what the source describes)
                    self.fps = round(index / float(pts * tb), 3)
            elif pts is None:  # no timestamps: synthesise from the nominal rate
                pts = (last_pts + 1) if last_pts is not None and not self.fps else (
                    int(round(index / (self.fps * tb))) if self.fps else index)
            else:
                pts += offset
            cut = False  # the timeline was continued across a restarted clock at this frame
            if (self._ts_discont and not arrival and last_pts is not None and self.fps
                    and (pts - last_pts) * tb > _MAX_JUMP_S):
                # the clock jumped ahead (a restart that FFmpeg took for a wrap, or a second segment's own
                # clock): time goes on from the previous frame, one frame later (live: by the time that passed)
                go_on = self._gap(step, least_lag, t_came, last_pts, self.first_pts, tb) if timed else step
                self._restarted(f"{float((pts - last_pts) * tb):.3f} s ahead at frame {index} (a restarted clock in "
                                "a joined or spliced stream)", go_on > step)
                offset, least_lag, pts, cut = offset + last_pts + go_on - pts, None, last_pts + go_on, True
            if last_pts is not None and pts <= last_pts:
                if last_pts - pts > step:
                    # the stream's clock restarted (MPEG-TS segments joined, a spliced or re-muxed capture): time
                    # goes on from the previous frame, one frame later, and the rest keeps its own spacing
                    # (each frame one tick after the last froze the timestamps for the rest of the file). A live
                    # stream (a sender restarted) goes on by the time that passed: it hid a 8-s outage
                    go_on = self._gap(step, least_lag, t_came, last_pts, self.first_pts, tb) if timed else step
                    self._restarted(f"back {float((last_pts - pts) * tb):.3f} s at frame {index} (joined or spliced "
                                    "stream)", go_on > step)
                    offset, least_lag, pts, cut = offset + last_pts + go_on - pts, None, last_pts + go_on, True
                else:  # repair a non-increasing pts (a repeated one): one tick after the last
                    pts = last_pts + 1
                    if not arrival:  # (an arrival clock's frames of one packet: no timestamp of the file's)
                        mended = True
                        self._repaired("its pts repeated, or back by up to one frame: one tick after the last", index)
            if steps is not None:
                if cut or anchor is None:
                    anchor, between = pts, 0
                elif mended:  # no time of its own: the step is taken over it, to the next frame with one
                    between += 1
                else:
                    steps[(pts - anchor, between + 1)] += 1
                    anchor, between = pts, 0
            last_pts = pts
            if self.first_pts is None:
                self.first_pts = pts
            if timed:
                lag = t_came - float((pts - self.first_pts) * tb)
                least_lag = lag if least_lag is None else min(least_lag, lag)
            ts = float((pts - self.first_pts) * tb)
            img = self._to_bgr(frame)
            if self.still and self.path is not None:
                img = self._as_folder_reads(img)
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
        self._judge_end()
        if not self.exact_count:
            # an estimate (a duration times the rate), or none: a stream, a growing file or a fragmented MP4 (whose
            # first fragment's duration FFmpeg gives) hold more than it says; the sidecar's count is what was read
            self.frame_count = index if self.discontinuities else max(self.frame_count or 0, index)
        if self.is_url and self.live:
            return
        if self.exact_count:
            expected = self.frame_count or 0
            if expected and expected - index > max(2, 0.02 * expected):
                self.frames_missing = expected - index
                log.warning("%s: decoded %d of ~%d frames (truncated or damaged file)", self.name, index, expected)
        elif (self.span and self.fps and not self.discontinuities and self.first_pts is not None
              and last_pts is not None):
            # the time the frames span (the last one shown for one nominal frame) against the file's length
            spanned = float((last_pts - self.first_pts) * tb) + 1 / self.fps
            if self._others_end is not None:
                # a length that is the longest stream's (_span_shared): the time the file's data span, the other
                # streams' packets that run on past the last frame (audio) included. A truncated file's all end
                # early; a whole one's reach its length
                spanned = max(spanned, self._others_end - float(self.first_pts * tb))
            short = self.span - spanned
            missing = int(round(short * self.fps))
            if missing > max(2, 0.02 * self.span * self.fps):
                self.frames_missing = missing
                if self._span_shared:  # (no estimate was made of a shared span: the frames read and those lacking)
                    self.frame_count = index + missing
                log.warning("%s: decoded %d frames over %.2f of %.2f s (truncated or damaged file; ~%d frames "
                            "missing)", self.name, index, self.span - short, self.span, missing)
        if not self.frames_missing:  # read whole: the count is the frames read (a variable-rate MKV's duration
            self.frame_count = index  # times its nominal rate said 85 for 60; an MP4's sample count 93 for 95)

    def _judge_end(self) -> None:
        """A local file read to its end: where it grew while it was read (its size now above its size at open: a
        recording in progress, 399 of its 472 frames read as complete) say so (:attr:`grew_while_read`); else an
        MPEG-TS that ends inside a packet is cut short (:attr:`cut_short`): it read as complete, or as "damage read
        through in 1 place". How many frames a cut TS lacks cannot be told honestly (it states no length: its
        duration is the span of what is left), so none is counted missing."""
        if self._size_at_open is None or self.path is None:
            return
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return
        if size > self._size_at_open:
            self.grew_while_read = True
            log.warning("%s: the file grew while it was read (a recording in progress?): rerun when it ends (%d bytes "
                        "when opened, %d at the end of reading)", self.name, self._size_at_open, size)
            return
        if "mpegts" in self._format_name.split(","):
            partial = _ts_partial_tail(self.path, size)
            if partial is not None:
                self.cut_short = True
                log.warning("%s: cut short (truncated file: its last MPEG-TS packet holds %d of %d bytes); the frames "
                            "after the cut are missing, how many cannot be told (an MPEG-TS states no length)",
                            self.name, *partial)

    def _holds_frame(self) -> bool:
        """Whether frames are read one ahead (:meth:`_in_line`): a file read whole, on a clock that cannot restart
        (not MPEG-TS or FLV, whose restarts are discontinuities) and timed by its pts (not an AVI's dts). A live
        stream, an arrival clock and a file played at its own pace (``realtime``) get each frame as it is decoded."""
        return not (self.live or self.live_stream or self.realtime or self._ts_discont or self._dts_clock
                    or self.clock == "arrival")

    def _in_line(self, frames: Iterator[Tuple[Any, float]], step: int) -> Iterator[Tuple[Any, float, bool]]:
        """``frames`` (frame, when its packet came) one frame late, each with whether its pts was repaired: a lone
        frame whose pts is out of line with both neighbours, while the next one follows the one before in order,
        is given a pts halfway between them. An MP4 whose frame 30 alone was 0.5 s late put every later frame 0.5 s
        late (the next frame's pts went back, taken for a restarted clock). Out of line: more than one frame
        (``step`` ticks) back from the frame before, or more than one frame ahead of the next; less is a repeat or
        a tick of jitter, repaired in ``__iter__`` as before. A clock that goes back and stays back has the next
        frame before the one before: not repaired here (a discontinuity)."""
        before: Optional[int] = None  # the pts of the frame before the held one, as passed on
        held: Optional[Tuple[Any, float]] = None
        n = 0
        for item in frames:
            if held is not None:
                a, b, c = before, held[0].pts, item[0].pts
                mend = (a is not None and b is not None and c is not None and c - a >= 2
                        and ((b < a and a - b > step) or (b > c and b - c > step))
                        and self._faulty[0] <= self._faulty[1])  # (pts are the clock, not dts: _best_effort)
                if mend:
                    held[0].pts = a + (c - a) // 2
                    tb = self.time_base
                    self._repaired(f"out of line with both neighbours: {float((b - a) * tb):+.3f} s from the frame "
                                   f"before, the next {float((c - b) * tb):+.3f} s from it; put between them", n)
                yield held[0], held[1], mend
                n += 1
                before = held[0].pts
            held = item
        if held is not None:
            yield held[0], held[1], False

    def _restarted(self, jump: str, after_gap: bool) -> None:
        """Count and say a restarted clock that the timeline continues across (``timestamp_discontinuities``):
        ``jump`` as the warning gives it ("0.433 s ahead at frame N (…)", "back 0.433 s at frame N (…)");
        ``after_gap``: it goes on after the time that passed (a live stream), not one frame later."""
        self.discontinuities += 1
        log.warning("%s: timestamps jump %s: the timeline continues from the previous frame%s", self.name, jump,
                    _AFTER_GAP if after_gap else "")

    def _repaired(self, why: str, index: int) -> None:
        """Count a frame's pts repaired in place (``timestamps_repaired``); the first one is logged."""
        self.timestamps_repaired += 1
        if self.timestamps_repaired == 1:
            log.warning("%s: frame %d's timestamp repaired (%s); the sidecar's input.timestamps_repaired counts "
                        "such frames", self.name, index, why)

    def _best_effort(self, frame: "av.VideoFrame") -> Optional[int]:
        """The frame's timestamp: in an AVI its dts (the chunk's number: AVI stores no pts, and FFmpeg's guess of
        an H.264 frame's pts is the next chunk's, a frame ahead, across the gap of dropped frames too: B-frame video
        came out 1, 4, 3, 5, 2, …, and a frame before a 5-frame gap 167 ms late); elsewhere as FFmpeg's
        ``best_effort_timestamp`` (which PyAV does not give): the frame's pts, unless its pts have gone backwards
        more often than its dts. The frames a flush gives have no dts: one frame after the last."""
        pts, dts = frame.pts, frame.dts
        last_pts, last_dts = self._last_raw
        if self._dts_clock:
            if dts is None and last_dts is not None:
                dts = last_dts + self._dts_step
            if dts is not None and last_dts is not None and dts > last_dts:
                self._dts_step = dts - last_dts
            self._last_raw = (last_pts, dts if dts is not None else last_dts)
            return dts if dts is not None else pts
        if dts is None and self._faulty[0] > self._faulty[1] and self._dts_seen:
            dts = last_dts + self._dts_step  # the frames a flush gives have none: one frame on
        self._dts_seen = dts is not None  # (its own, or one on from the last frame's)
        if dts is not None:
            self._faulty[1] += last_dts is not None and dts <= last_dts
            if last_dts is not None and dts > last_dts:
                self._dts_step = dts - last_dts
            last_dts = dts
        elif pts is not None:
            last_dts = pts
        if pts is not None:
            self._faulty[0] += last_pts is not None and pts <= last_pts
            last_pts = pts
        elif dts is not None:
            last_pts = dts
        self._last_raw = (last_pts, last_dts)
        if pts is not None and (self._faulty[0] <= self._faulty[1] or dts is None):
            return pts
        return dts

    def _demux(self) -> Iterator[Optional["av.Packet"]]:
        """The stream's packets; ``None`` where demuxing ended on an error: flush the decoder. Where the other
        streams are read along (:attr:`_reads_along`), where their packets end is kept (:attr:`_others_end`) and
        they go no further."""
        self._refuse_closed()
        assert self.container is not None
        along = self._reads_along
        self._others_end = None
        try:
            for packet in self.container.demux() if along else self.container.demux(self.stream):
                if packet.pos is not None and packet.pos >= 0:
                    self._bytes_read = max(self._bytes_read, int(packet.pos) + int(packet.size))
                # (the packet's own stream: the flush packets demux() ends with, one a stream, all say stream_index
                # 0, so a video not first lost its decoder's last frames, and an attachment's flush was decoded)
                if along and packet.stream is not self.stream:
                    if packet.pts is not None and packet.size and packet.time_base:
                        end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                        self._others_end = end if self._others_end is None else max(self._others_end, end)
                    continue
                yield packet
        except PermissionError:  # a local playlist's later segment outside its folder (_PlaylistGuard)
            if self._guard is not None and self._guard.refused:
                raise self._guard.error(self.name) from None
            raise
        except av.error.FFmpegError as e:
            network = isinstance(e, av.error.ExitError) or getattr(e, "errno", None) in _NETWORK_ERRNOS
            # (an MP4 whose index is at its end, on a server without range requests: FFmpeg cannot go back to its
            # samples; nothing is read, and the end of the run says why, not the connection)
            if self.is_url and network and not (self.frames_decoded == 0 and _index_hint(self.name)):
                why = self._network_end(e)
                if self.live:  # a live stream's end (the sender stopped, the connection closed): not damage
                    log.warning("%s: %s (the stream ended?)", self.name, why)
                    self.ended = why
                    yield None  # the frames still in the decoder (4 of a 40-frame MPEG-TS were lost)
                    return
                # a served file the connection lost before its end (the server died, stalled, a proxy cut it): what
                # was read is no complete result, and the run fails so that nothing takes it for one
                raise InputError(f"{self.name}: {why}") from None
            # a truncated / corrupt container: stop, keep what was decoded
            self.errors += 1
            log.warning("%s: demuxing stopped early (%s)", self.name, _msg(e))
            yield None  # the frames still in the decoder
            return
        # the final flush packet (packet.size 0) is yielded by demux itself

    def _flush(self) -> List["av.VideoFrame"]:
        """The frames the decoder still holds, where demuxing ended without its own flush packet (an error)."""
        stream = self.stream
        if stream is None:  # closed meanwhile (from another thread): nothing to flush
            return []
        try:
            return list(stream.codec_context.decode(None))
        except av.error.EOFError:  # (flushed already)
            return []

    def _network_end(self, e: BaseException) -> str:
        """Words for a URL's read that ended with the network error ``e``."""
        if isinstance(e, av.error.ExitError):  # FFmpeg's interrupt callback: no data for the timeout
            return f"no data for {self.url_timeout:g} s"
        got = f"about {self._bytes_read:,}" if self._bytes_read else "0"
        if self.served_size:
            return f"the connection ended after {got} of {self.served_size:,} bytes ({_msg(e)})"
        return f"the connection ended after {got} bytes ({_msg(e)})"

    def _pipe_format(self) -> str:
        return self._format_name if self.is_pipe else ""

    def _to_bgr(self, frame: "av.VideoFrame") -> np.ndarray:
        rot = getattr(frame, "rotation", 0) or 0
        self.rotation = rot
        # one converter for the source (frame.to_ndarray(format=...) made a new one per frame, with 2 threads of
        # its own: 100 threads started and ended a second); the same pixels, the frame's colour tags read alike
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
        if self._colour is None:  # read at the first frame: what the frames' colour tags ask of the conversion
            self._colour, self._lut = _colour_of(frame, self.name)
            if self._colour["matrix"] == "unspecified" and self._colour["matrix_read_as"] == "bt709":  # untagged HD
                self._convert = {**self._convert, "src_colorspace": 1}  # (swscale's own reading is BT.601)
        kw = self._convert
        if self.display_size is not None and (frame.width, frame.height) == self.stored_size:
            kw = {**kw, "width": self.display_size[0], "height": self.display_size[1]}
        fmt = "bgr48le" if self._lut is not None and self._lut.size > 256 else "bgr24"
        try:
            img = self._reformatter.reformat(frame, format=fmt, **kw).to_ndarray()
        except (OSError, av.error.FFmpegError) as e:
            if is_out_of_memory(e, eagain=True):  # it said "frames of matrix bt709 do not convert to RGB", exit 3
                raise OutOfMemory.while_(f"converting {self.name}'s frames", e) from None
            # a matrix swscale does not convert (YCgCo, ICtCp, BT.2020 constant luminance, ...): the run stopped at
            # its first frame with "source stage failed: OSError: [Errno 95] Operation not supported", exit 7
            near = _NEAR_MATRIX.get(int(getattr(frame, "colorspace", 2) or 2))
            if near is None or "src_colorspace" in kw:
                raise InputError(f"{self.name}: frames of matrix {self._colour.get('matrix')} do not convert to "
                                 f"RGB ({_msg(e)})") from None
            self._convert = {**self._convert, "src_colorspace": near}
            self._colour["matrix_read_as"] = _name(_ENUMS["matrix"], near)
            log.warning("%s: colour matrix %s does not convert; read as %s (colours approximate)", self.name,
                        self._colour.get("matrix"), self._colour["matrix_read_as"])
            kw = {**kw, "src_colorspace": near}
            img = self._reformatter.reformat(frame, format=fmt, **kw).to_ndarray()
        if self._lut is not None:  # HDR to SDR and/or limited-range grey to full (_colour_of)
            img = self._lut[img]
        if rot:
            img = rotate_image(img, rot)
        self.height, self.width = img.shape[:2]
        return img

    def _as_folder_reads(self, img: np.ndarray) -> np.ndarray:
        """A single picture's pixels as an image folder and ``Analyzer.analyze_image`` decode the file
        (:func:`facecycle.imageio.read_image`: OpenCV, its EXIF orientation applied), so that a picture given alone
        and in a folder give the same rows: FFmpeg's decode of a colour JPEG or WebP differs by up to 12 levels
        (another IDCT and YUV conversion), and 1 of 30 FER faces read another label alone. ``img`` (FFmpeg's)
        where OpenCV does not decode the file."""
        try:
            mine = read_image(self.path) if self.path is not None else None
        except (PictureTooLarge, OSError):  # (FFmpeg read it: its size was within the bound)
            mine = None
        if mine is None:
            log.debug("%s: decoded by FFmpeg (OpenCV does not read it)", self.name)
            return img
        self.height, self.width = mine.shape[:2]
        return np.ascontiguousarray(mine)

    def close(self) -> None:
        """Close the input and let go of every PyAV object (idempotent): the container, its streams (their codec
        contexts) and the frame converter are dropped, not only closed. PyAV frees a decoder's threads (FFmpeg's
        ``av:h264:df*`` and its frame pool) only when those objects are freed, so a finished run that stayed
        referenced (a notebook's ``run``, ``Out[n]``, a kept traceback) held 3 decoder threads and tens of MB each.
        What :meth:`describe` reports afterwards was read while the file was open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            container = getattr(self, "container", None)
            self.container = self.stream = self._reformatter = None
            try:
                if container is not None:
                    container.close()
            except Exception:  # noqa: BLE001 - closing must not raise
                pass

    def paused_for(self, seconds: float) -> None:
        self._paused_s += max(0.0, float(seconds))

    def describe(self) -> dict:
        d = super().describe()
        d.update(codec=self.codec_name, stream=self.stream_index, time_base=str(self.time_base),
                 clock=self.clock, rotation=self.rotation,
                 errors=self.errors, damaged=self.damaged, frames_decoded=self.frames_decoded,
                 frames_missing=self.frames_missing,
                 timestamp_discontinuities=self.discontinuities, timestamps_repaired=self.timestamps_repaired,
                 timestamp_gaps=_gap_summary(_snapshot(self._steps), self.time_base), colour=self._colour,
                 # where the CSV's time 0 lies on the file's own clock (a player's), and when the file says it was
                 # recorded: to line rows up with other recordings
                 first_pts=self.first_pts,
                 start_s=None if self.first_pts is None or self.clock == "arrival"
                 else round(float(self.first_pts * self.time_base), 6),
                 creation_time=self.creation_time,
                 # where the audio starts on that clock: audio_start_s - start_s is the audio's lead on the frames
                 audio_start_s=None if self.clock == "arrival" else self.audio_start_s,
                 # the frame as the file stores it (before non-square pixels are stretched and rotation applied):
                 # CSV pixels map back to it by width / height and the rotation
                 stored_size=list(self.stored_size), pixel_aspect=str(self.pixel_aspect),
                 **({"ended": self.ended} if self.live_stream else {}),
                 # (each only where true: a file that grew while it was read, an MPEG-TS cut inside a packet)
                 **({"grew_while_read": True} if self.grew_while_read else {}),
                 **({"cut_short": True} if self.cut_short else {}))
        if self.path is not None:  # which file exactly (the name is as given: maybe relative)
            d.update(_file_record(self.path))
        return d


#: MPEG-TS packet sizes, each with where its sync byte (0x47) lies: 188 bytes; 192 (M2TS, AVCHD: a 4-byte time code
#: first); 204 (16 bytes of Reed-Solomon parity last)
_TS_PACKETS = ((188, 0), (192, 4), (204, 0))


def _ts_partial_tail(path: Union[str, Path], size: int) -> Optional[Tuple[int, int]]:
    """(bytes of its partial last packet, the packet size) of an MPEG-TS file of ``size`` bytes that ends inside a
    packet; None where it ends with a whole one, or where its packets cannot be told (no run of sync bytes at its
    start, or none at its end). The end is judged by the sync bytes of its last whole packets, not by the size
    alone: a file may start with bytes that are no packet."""
    try:
        with open(path, "rb") as f:
            head = f.read(6 * 204)
            sizes = [(n, lead) for n, lead in _TS_PACKETS  # (5 sync bytes in a row near its start)
                     if any(all(head[o + k * n] == 0x47 for k in range(5)) for o in range(min(n, len(head) - 4 * n)))]
            if not sizes:
                return None
            n, lead = sizes[0]
            f.seek(max(0, size - 5 * n))
            tail = f.read(5 * n)
    except OSError:
        return None
    for t in range(n):  # the last whole packet ends t bytes before the end
        at = [len(tail) - t - k * n + lead for k in (1, 2, 3)]
        if at[-1] >= 0 and all(tail[i] == 0x47 for i in at):
            return (t, n) if t else None
    return None


def _file_record(path: Union[str, Path]) -> dict:
    """``{"path", "size_bytes", "modified"}`` of a local file: its absolute path, size and modification time
    (ISO 8601 UTC), so that a result can be tied to the exact file it was made from; empty where it cannot be read."""
    import datetime

    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return {}
    return {"path": os.path.abspath(path), "size_bytes": st.st_size,
            "modified": datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")}


def _audio_start(container: "av.container.InputContainer") -> Optional[float]:
    """The default audio track's first packet time in seconds on the file's clock (its ``start_time`` x
    ``time_base``, as the container states it; the track the annotated video copies), or None: no audio, or a start
    the container does not state. Nothing is decoded."""
    try:
        audio = container.streams.audio
        if not audio:
            return None
        a = container.streams.best("audio") or audio[0]
        if a.start_time is None or not a.time_base:
            return None
        return round(float(a.start_time * a.time_base), 6)
    except Exception:  # noqa: BLE001 - a record, never a reason to fail the open
        return None


def _creation_time(container: "av.container.InputContainer", stream: "av.stream.Stream") -> Optional[str]:
    """The recording time the file states (its ``creation_time`` tag, the container's else the stream's, as the
    file has it: usually ISO 8601 UTC), or None."""
    for meta in (getattr(container, "metadata", None), getattr(stream, "metadata", None)):
        value = (meta or {}).get("creation_time")
        if value:
            return str(value)
    return None


#: FFmpeg's colour tags (AVCOL_*) by their names in the sidecar's ``input.colour``
_ENUMS = {
    "range": {0: "unspecified", 1: "limited", 2: "full"},
    "matrix": {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
               8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
               13: "chroma-derived-c", 14: "ictcp", 15: "ipt-c2"},
    "primaries": {1: "bt709", 2: "unspecified", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                  8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"},
    "transfer": {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m",
                 8: "linear", 9: "log", 10: "log-sqrt", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
                 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"},
}
#: HDR transfers (PQ, HLG): converted to SDR BT.709 for reading
_HDR_TRC = {16: "PQ", 18: "HLG"}
#: matrices swscale does not convert, and the nearest one it does (read as that, with a warning)
_NEAR_MATRIX = {8: 1, 10: 9, 11: 1, 12: 1, 13: 1, 14: 9, 15: 9}
#: limited-range grey (16-235) to full range
_GREY_LIMITED_LUT = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)


def _name(names: dict, value: int) -> str:
    return names.get(int(value), str(int(value)))


def _colour_of(frame: "av.VideoFrame", name: str) -> Tuple[dict, Optional[np.ndarray]]:
    """The colour of ``frame`` (its pixel format and tags, by name, for the sidecar's ``input.colour``) and the
    table its converted values are read through, or None: for HDR (a PQ or HLG transfer) the (65536,) table that
    reads 16-bit values as SDR BT.709 (with a warning), for limited-range grey the (256,) one that stretches it to
    full range, or both in one. HDR was read as if SDR: a PQ clip came out 50 grey levels off on average (dark and
    flat), and its angry face read disgust."""
    tags = {k: int(getattr(frame, a, 2) or 0) for k, a in (("range", "color_range"), ("matrix", "colorspace"),
                                                        ("primaries", "color_primaries"), ("transfer", "color_trc"))}
    fmt = str(getattr(getattr(frame, "format", None), "name", "") or "")
    colour: dict = {"pix_fmt": fmt, **{k: _name(_ENUMS[k], v) for k, v in tags.items()}, "to_sdr": False,
                    "grey_limited": fmt.startswith("gray") and tags["range"] == 1 and not _grey_range_read()}
    # what the pixels are read as (the sidecar's matrix_read_as, range_read_as): untagged YUV as players read it
    # (mpv: BT.709 from 1280 wide or 577 lines up, else BT.601; swscale alone took BT.601 for every size, and an
    # untagged HD clip's green (30,160,40) read (40,180,42)); the range as swscale reads it (JPEG's yuvj always full;
    # grey full unless tagged limited, stretched then)
    vf = getattr(frame, "format", None)
    rgb = bool(getattr(vf, "is_rgb", False) or getattr(vf, "has_palette", False)) or fmt.startswith(
        ("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr", "pal"))
    grey = fmt.startswith(("gray", "ya", "mono"))
    if rgb or grey:
        colour["matrix_read_as"] = "rgb" if rgb else "none"
        colour["range_read_as"] = "limited" if grey and tags["range"] == 1 else "full"
    else:
        matrix = tags["matrix"]
        if matrix == 2 and fmt and not fmt.startswith(("xyz", "bayer")):
            w, h = int(getattr(frame, "width", 0) or 0), int(getattr(frame, "height", 0) or 0)
            matrix = 1 if w >= 1280 or h > 576 else 6
        colour["matrix_read_as"] = _name(_ENUMS["matrix"], matrix)
        colour["range_read_as"] = "full" if tags["range"] == 2 or fmt.startswith("yuvj") else "limited"
    lut = None
    if tags["transfer"] in _HDR_TRC:  # (BT.2020's primaries with an SDR transfer: read as they are, greys exact)
        lut = _sdr_table(tags["transfer"], tags["primaries"])
        colour["to_sdr"] = lut is not None
        what = _HDR_TRC[tags["transfer"]]
        if lut is not None:
            log.warning("%s: HDR video (%s): converted to SDR BT.709 for reading", name, what)
        else:
            log.warning("%s: HDR video (%s) read as if SDR: this PyAV's FFmpeg (libswscale %s) does not convert it "
                        "(PyAV 18 does); its readings may be off", name, what,
                        ".".join(map(str, av.library_versions.get("libswscale", ()))))
    if colour["grey_limited"]:  # (FFmpeg 8's swscale reads grey as full range whatever its tag)
        lut = _GREY_LIMITED_LUT if lut is None else _GREY_LIMITED_LUT[lut]
    return colour, lut


@functools.lru_cache(maxsize=1)
def _grey_range_read() -> bool:
    """Whether this swscale reads a grey frame's range tag (FFmpeg 8's does not: limited-range grey 16 comes out
    16, not 0); where it does, :func:`_colour_of` stretches nothing itself."""
    from av.video.reformatter import VideoReformatter

    f = av.VideoFrame.from_ndarray(np.full((2, 2), 16, np.uint8), format="gray")
    f.color_range = 1
    return int(VideoReformatter().reformat(f, format="bgr24").to_ndarray()[0, 0, 0]) < 8


@functools.lru_cache(maxsize=8)  # (made once per process: a batch of phone videos paid 1-1.5 s for each)
def _sdr_table(transfer: int, primaries: int) -> Optional[np.ndarray]:
    """(65536,) uint8: a 16-bit code value of HDR video read as RGB without conversion (``transfer``,
    ``primaries``: FFmpeg's tags) -> its SDR BT.709 value, as swscale's colour management maps a grey ramp (PyAV
    18's FFmpeg); None where this PyAV's FFmpeg does not convert (PyAV 17 takes the tags as labels only). One
    table for the three channels: greys exact, colours less saturated (BT.2020's wider primaries are not mapped:
    mean saturation 27 against the original's 37 on a test clip; the default model reads grey). swscale converting
    each frame itself was 3.4 times
    slower (53 against 15.5 ms for a 1080p frame here) for a grey 1.5 levels nearer on a PQ clip (0.6 against 1.5
    mean; both 1-1.5 s to set up at the first frame)."""
    from av.video.reformatter import VideoReformatter

    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    f = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.repeat(ramp[..., None], 3, axis=2)), format="rgb48le")
    f.color_trc, f.color_primaries = transfer, primaries
    try:
        out = VideoReformatter().reformat(f, format="rgb24", dst_color_trc=1, dst_color_primaries=1).to_ndarray()
    except (TypeError, ValueError, OSError, av.error.FFmpegError):  # an older PyAV without those arguments
        return None
    table = np.ascontiguousarray(out[..., 1].reshape(-1))
    plain = np.round(np.arange(65536) / 257.0)
    if np.abs(table.astype(np.float64) - plain).max() <= 8:  # the 16 bits only cut to 8: nothing converted
        return None
    table.flags.writeable = False  # (shared by every source of these tags)
    return table


#: steps between a file's frames needed to judge its rate steady (:func:`_gap_summary`)
_GAP_MIN_STEPS = 8


def _snapshot(steps: Optional["Counter[Tuple[int, int]]"]) -> Optional[Dict[Tuple[int, int], int]]:
    """A copy of a file's step tally, taken in one step (``dict`` of a dict copies under the GIL): ``describe()`` runs
    on the outputs thread (a sidecar checkpoint, the video's colour) while the source thread adds to it, and a loop
    over the live tally could stop at "dictionary changed size during iteration" (a review's finding)."""
    return dict(steps) if steps is not None else None


def _gap_summary(steps: Optional[Mapping[Tuple[int, int], int]], tb: Fraction) -> dict:
    """The sidecar's ``input.timestamp_gaps``: where a file's frame rate is steady, the steps between frames longer
    than 1.5 of its frame intervals, frames it does not hold (dropped by the camera or encoder, or lost without a
    decoding error: an MJPEG file that lacked 3 frames said nothing, and its ``frame`` column skipped them).
    ``count``: such gaps; ``frames_est``: the frames they lack, about (each gap's length over the interval, less
    one); ``largest_s``: the longest, in seconds (0.0 where none); ``step_s``: the frame interval they are measured
    against (the median step, s), null where gaps were not looked for: a live stream or an arrival clock, fewer
    than :data:`_GAP_MIN_STEPS` steps, or a rate not steady (under 80 % of the steps within 10 % of the median: a
    variable-frame-rate phone video, whose irregular steps are its own). ``steps``: (ticks, frames) -> how often,
    the ticks from a frame with a timestamp of its own to the next, over that many frames (more than one across
    frames whose pts was repaired); steps across a discontinuity are not in it."""
    out: Dict[str, Any] = {"count": 0, "frames_est": 0, "largest_s": 0.0, "step_s": None}
    if not steps:
        return out
    per = sorted((ticks / n, n * k) for (ticks, n), k in steps.items() if n > 0)
    total = sum(w for _, w in per)
    if total < _GAP_MIN_STEPS:
        return out
    seen, median = 0, per[-1][0]
    for v, w in per:
        seen += w
        if 2 * seen >= total:
            median = v
            break
    if median <= 0:
        return out
    steady = sum(w for v, w in per if abs(v - median) <= max(0.1 * median, 1) and v <= 1.5 * median)
    if steady < 0.8 * total:
        return out
    out["step_s"] = round(float(median * tb), 6)
    largest = 0.0
    for (ticks, n), k in steps.items():
        if ticks > (n + 0.5) * median:
            out["count"] += k
            out["frames_est"] += k * max(1, int(round(ticks / median)) - n)
            largest = max(largest, ticks - (n - 1) * median)
    out["largest_s"] = round(float(largest * tb), 6)
    return out


#: what a live stream's restarted clock adds to its warning: the gap is kept
_AFTER_GAP = ", after the time that passed between them (a live stream: its sender restarted)"
_MAX_JUMP_S = 10.0  # a forward timestamp jump that is a discontinuity in MPEG-TS-like formats (FFmpeg's default)
_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC: a cover image stored as a video stream


def _disposition(stream: Any) -> int:
    """A stream's disposition flags as an int: PyAV 17.0 gives a plain ``enum.Flag``, which ``int()`` refuses (every
    file failed as an internal error there, a probe's finding on the lowest versions ``av>=17`` allows); 17.1 on an
    ``IntFlag``."""
    d = getattr(stream, "disposition", 0) or 0
    return int(getattr(d, "value", d) or 0)


def _pick_video_stream(container: Any, name: str) -> Any:
    """The video stream to read: of the streams that are not cover images, the largest picture (ties: FFmpeg's own
    choice, av_find_best_stream); None when every video stream is a cover image. A second video stream (a proxy,
    a thumbnail track, a second camera) is said in the log."""
    videos = [v for v in container.streams.video if not _disposition(v) & _ATTACHED_PIC]
    if not videos:
        return None
    best = container.streams.best("video")
    chosen = max(videos, key=lambda v: ((v.codec_context.width or 0) * (v.codec_context.height or 0), v is best))
    if len(videos) > 1:
        log.info("%s: %d video streams; reading stream %d (%dx%d, the largest picture)", name, len(videos),
                 chosen.index, chosen.codec_context.width or 0, chosen.codec_context.height or 0)
    return chosen


def _own_span(stream: Any, tb: Fraction) -> Optional[float]:
    """The video stream's own length in seconds from its first frame, None where it states none (FLV's never does;
    a Matroska file's where it has no DURATION tag)."""
    if stream.duration:
        return float(stream.duration * tb)
    tag = _tag_seconds((stream.metadata or {}).get("DURATION"))
    if tag:  # Matroska's own length of the track (the container's is its longest track's: audio that ran on past
        # the last frame read as "~38 frames missing (truncated or damaged file)"); as the container's, the end's
        # time counted from 0
        tag -= float(stream.start_time * tb) if stream.start_time else 0.0
        if tag > 0:
            return tag
    return None


def _span_shared(container: Any, stream: Any, tb: Fraction) -> bool:
    """Whether the length :func:`_span` gives is the container's (the video stream states none of its own) in a
    container that holds other streams: it is then its longest stream's, and audio that ran on past the last frame
    read as frames missing (an FLV of 75 frames and 0.4 s more audio: "~14 frames missing (truncated or damaged
    file)"), as Matroska's did before its tracks' own lengths were read."""
    return _own_span(stream, tb) is None and len(container.streams) > 1


def _span(container: Any, stream: Any, tb: Fraction) -> Optional[float]:
    """The file's length in seconds from the first frame, or None where it does not say."""
    own = _own_span(stream, tb)
    if own is not None:
        return own
    if not container.duration:
        return None
    span = container.duration / 1e6  # microseconds
    if container.start_time and {"matroska", "webm"} & set(container.format.name.split(",")):
        span -= container.start_time / 1e6  # Matroska's duration is the end's time, counted from 0
    return span if span > 0 else None


def _tag_seconds(text: Optional[str]) -> Optional[float]:
    """Seconds of a Matroska ``DURATION`` tag (``00:00:01.000000000``), None where absent or unreadable."""
    if not text:
        return None
    try:
        h, m, sec = str(text).strip().split(":")
        v = int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None
    return v if v > 0 else None


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


#: the time base of an arrival clock's timestamps (microseconds, as a camera's)
_ARRIVAL_TIME_BASE = Fraction(1, 1000000)
#: demuxers that number frames at a guessed rate instead of timing them: a multipart MJPEG camera (``mpjpeg``,
#: 25 fps whatever the camera sends), raw JPEG / H.264 / HEVC / MPEG video sent as it is made
_CLOCKLESS_FORMATS = {"mpjpeg", "mjpeg", "image2pipe", "h264", "hevc", "mpegvideo", "m4v", "cavsvideo", "vc1",
                      "rawvideo", "obu"}


def _clockless(formats: set, stream: Any) -> bool:
    """Whether a live stream's timestamps are no clock: a demuxer of :data:`_CLOCKLESS_FORMATS` (or any ``*_pipe``
    one: ``jpeg_pipe``), or a stream without an average rate whose time base is coarser than a millisecond (frames
    numbered at a guessed rate; MPEG-TS and RTP count 1/90000 s, FLV and RTMP milliseconds)."""
    if formats & _CLOCKLESS_FORMATS or any(f.endswith("_pipe") for f in formats):
        return True
    tb = stream.time_base
    return not stream.average_rate and (tb is None or tb > Fraction(1, 1000))


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
    if url_scheme(spath) not in ("http", "https"):
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
    return _text_kind(head)


def _text_kind(head: bytes) -> str:
    """``"HTML"``, ``"text"`` or "" (binary) for a file's or a response's first bytes (see :func:`_not_media`)."""
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


def _what(spath: str) -> str:
    """``"picture"`` for a file named as one (``.jpg``, ``.png``, a phone's ``.heic``), else ``"video"``: the word of an
    error about a file that is neither."""
    suffix = Path(spath).suffix.lower()
    return "picture" if suffix in IMAGE_SUFFIXES or suffix in UNREAD_PICTURE_SUFFIXES else "video"


def _not_what(spath: str) -> str:
    """``"not a video"``, or for a file named as a picture ``"not a picture or a video"`` (it is read as either)."""
    return "not a picture or a video" if _what(spath) == "picture" else "not a video"


def _decode_error(spath: str) -> str:
    """What FFmpeg says when it decodes the first frame of a file it opened without a frame size (a text file named
    ``.jpg``: "Invalid data found when processing input"), for the error's words."""
    try:
        with av.open(spath, "r", options=_LOCAL_OPTIONS) as c:
            for _ in c.decode(video=0):
                break
    except (av.error.FFmpegError, OSError, ValueError) as e:
        return _msg(e)
    return "no frame size"


def _msg(e: BaseException) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return s.strip().splitlines()[0] if s.strip() else type(e).__name__
