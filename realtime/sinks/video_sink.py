"""Annotated video through PyAV: H.264 (libx264, yuv420p), the source's timestamps, audio copied.

Colour: frames are converted to YUV with BT.709 from 720 lines up and BT.601 below, limited range, and the
stream is tagged so (a tagged file shows alike in every player; an untagged input is read by mpv's rule,
:func:`realtime.sources.video._colour_of`: BT.709 from 1280 wide or 577 lines). HD used to be converted with BT.601
untagged: players showed red patches 43 levels off. The primaries and transfer are the source's where it states
SDR ones (``colour``: its ``describe()["colour"]``), BT.709 where its HDR was read as SDR, else those of the size
rule: only the matrix is converted here, the pixels keep the source's primaries (a BT.709 SD clip came out tagged
SMPTE 170M primaries, BT.601 HD BT.709 ones). :attr:`VideoSink.colour` says what the file is tagged.

Each frame keeps its source PTS (so variable frame rate survives and the
audio stays in sync) in the source stream's time base, less the first frame's: the video starts at 0, each frame's
time the CSV's ``timestamp`` (a source starting at 10.5 s, as MPEG-TS and Matroska files may, made an MP4 that
declared 10.5 s more than it held, an empty edit shown blank). When the input has an audio stream it is remuxed
(packets copied, not re-encoded), moved by the same seconds (audio from before the first frame dropped) and
interleaved with the video by time; an
audio codec the container cannot hold is skipped with a warning (a channel layout the source leaves unnamed,
Matroska's PCM, gets the standard one for its channel count: the MP4 muxer refused it when the file closed, and
the run failed with an unplayable video). Closing after the source's end copies the audio to its own end;
closing early (``--max-frames``, a stop) cuts it at the last frame. Closing
flushes the encoder and writes the index, so an interrupted run still leaves
a playable file. Where the index cannot be written (a full disk: an MP4 without it plays nowhere), the file is
removed and the error says so (:attr:`VideoSink.removed`); a file that still plays (Matroska, an MP4 written as
fragments) stays, named incomplete. A write that fails so (a full disk, a file size limit) finishes the file at once,
and its error says what became of it: removed, or the frames it keeps (:attr:`VideoSink.kept_frames`); it said
"video frames up to 41 were written" of a video it then removed.

Fragmented (``fragmented=True``: what a live source's recording gets, ``live --record``, the app's Record): an MP4 or
MOV is written as fragments (``movflags`` :data:`FRAGMENTED_MOVFLAGS`), the index of the first fragment's frames up
front and each later fragment's own after it. The muxer otherwise keeps every frame's index entry in memory until the
file closes (72 bytes a frame: 187 MB a day at 30 fps) and writes the index last, so a run killed (SIGKILL, power
loss, the OOM killer) left a file that played nowhere; a fragmented one plays up to its last fragment (one per
keyframe: libx264 makes one at least every 250 frames), each written whole as it is made (``flush_packets``).
FFmpeg's fragmenting muxer says nothing of writes that fail at its close: a file whose trailer (its fragments' index,
``mfra``, last) is not at its end is taken as failed (:meth:`VideoSink._unfinished`).

Any other MP4 or MOV (``process``'s and ``batch``'s video of a file) is written as fragments too while the run goes,
a fragment at least every :data:`INTERIM_FRAGMENT_S` seconds (a keyframe comes only every 250 frames: a run killed
after 246 frames would have kept none), and made a plain MP4 when it closes (its packets copied into a file beside it,
then put in its place: an index of every frame at the end, as before, which every player and editor reads and which
states the duration and frame count). A run killed (SIGKILL, power loss, the OOM killer) leaves a file that plays up
to its last fragment: it used to play nowhere ("Invalid data"). Where the copy cannot be made (a full disk: it needs
the video's size again for a moment) the fragmented file stays, complete, and a warning says so.

Threads: ``threads`` sets the thread count of the encoder and of the colour conversion; 0 leaves them to FFmpeg
(about one per CPU of the process's affinity mask, each). A batch worker passes the CPUs it reserved: FFmpeg sees
every core of the node, not a Ray reservation, so each one-CPU worker on a 64-core node started tens of threads,
the encoder's each with buffers of its own, contending with the inference threads the reservation is for.
"""
from __future__ import annotations

import errno
import itertools
import logging
import operator
import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from facecycle.cpus import codec_threads
from facecycle.errors import OutOfMemory, OutputError, UsageError, is_out_of_memory
from facecycle.files import replace_retrying, temp_path, write_failure

from ..types import FramePacket
from .base import Sink, prepare_output

__all__ = ["VideoSink", "X264_PRESETS", "check_x264_preset", "check_video_threads", "VIDEO_OUT_SUFFIXES",
           "FRAGMENTED_MOVFLAGS", "INTERIM_FRAGMENT_S"]

#: containers that hold the H.264 this sink writes (WebM and Ogg do not: they failed at the first frame)
VIDEO_OUT_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".ts", ".flv")

log = logging.getLogger(__name__)

#: the MP4/MOV muxer's ``movflags`` of a fragmented file (:class:`VideoSink`'s ``fragmented``): a fragment starts at
#: each keyframe, each fragment's offsets are its own, and the index up front is written with the first fragment's
#: frames: with ``empty_moov`` (written before any frame) the
#: muxer refused the ADTS AAC of an MPEG-TS source ("Malformed AAC bitstream detected", EPERM: the index was written
#: before the bitstream filter that converts it had seen a packet), and a recording of such a stream failed
FRAGMENTED_MOVFLAGS = "frag_keyframe+default_base_moof"
#: the containers written fragmented where asked (others keep their own layout: Matroska plays when cut anyway)
_FRAGMENTABLE = (".mp4", ".m4v", ".mov")
#: seconds of video at most in a fragment of an MP4 or MOV written as fragments until it closes (a file's video:
#: :class:`VideoSink`'s module doc); a run killed loses about this much, and the encoder's few frames in hand
INTERIM_FRAGMENT_S = 1.0

#: libx264's presets, fastest first (``--video-preset``).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def check_x264_preset(preset: str) -> str:
    """``preset`` if libx264 has it, else :class:`~facecycle.errors.UsageError` (before any file is made)."""
    if preset not in X264_PRESETS:
        raise UsageError(f"unknown video preset {preset!r} (--video-preset); choose from {', '.join(X264_PRESETS)}")
    return preset


def check_video_threads(threads: int) -> int:
    """``threads`` as an int if it is a whole number >= 0 (0: FFmpeg's choice), else
    :class:`~facecycle.errors.UsageError` (before any file is made, not when the first frame opens the encoder)."""
    try:
        if isinstance(threads, bool):  # True would silently mean one thread
            raise TypeError
        n = operator.index(threads)  # ints and numpy ints; not 1.5 or "2"
    except TypeError:
        n = -1
    if n < 0:
        raise UsageError(f"video encoder threads must be a whole number >= 0 (0: FFmpeg's choice), not {threads!r}")
    return n


def fit_into(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` (H, W, 3) scaled to fit ``width`` × ``height`` at its own aspect, centred on black: a stream that
    changes size, or a folder of pictures of many sizes, keeps its proportions in a video of the first frame's
    size (it used to be stretched to it)."""
    import cv2

    h, w = img.shape[:2]
    k = min(width / w, height / h)
    nw, nh = max(1, min(width, round(w * k))), max(1, min(height, round(h * k)))
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    out[y: y + nh, x: x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    return out


#: the SDR primaries and transfers passed on from the source's colour (FFmpeg's AVCOL_PRI_* / AVCOL_TRC_* by the
#: names of the sidecar's ``input.colour``); anything else (unspecified, BT.2020 primaries, HDR) is not
_SDR_PRIMARIES = {"bt709": 1, "bt470bg": 5, "smpte170m": 6}
_SDR_TRANSFERS = {"bt709": 1, "smpte170m": 6, "iec61966-2-1": 13, "bt2020-10": 14, "bt2020-12": 15}
_MATRIX_NAMES = {1: "bt709", 6: "smpte170m"}


def _can_map(n: int) -> bool:
    """Whether ``n`` bytes of address space can be had now (an anonymous mapping, made and let go untouched: it
    uses no memory, but counts against ``ulimit -v`` and a strict overcommit limit)."""
    import mmap

    try:
        mmap.mmap(-1, n).close()
    except (OSError, MemoryError, ValueError, OverflowError):
        return False
    return True


def _colour_tags(colour: Optional[dict], hd: bool) -> Tuple[int, int]:
    """The (primaries, transfer) tags of a video whose source's colour is ``colour`` (``describe()["colour"]``, or
    None): the source's where they are SDR ones, BT.709 where its HDR was read as SDR (``to_sdr``), else the size
    rule's (BT.709 for HD, SMPTE 170M below), each on its own."""
    size_rule = 1 if hd else 6
    if not isinstance(colour, dict):
        return size_rule, size_rule
    if colour.get("to_sdr"):
        return 1, 1
    return (_SDR_PRIMARIES.get(str(colour.get("primaries")), size_rule),
            _SDR_TRANSFERS.get(str(colour.get("transfer")), size_rule))


class VideoSink(Sink):
    """Write packets' ``annotated`` image (else ``image``), BGR, to an H.264 file.

    Args:
        path: output file (``.mp4``, ``.mkv``, ``.mov``).
        fps: nominal frame rate (used when packets have no pts).
        time_base: the packets' pts time base.
        audio_from: input file whose audio stream is copied (None: no audio).
        preset, crf: libx264 speed/quality.
        overwrite: replace an existing file.
        threads: the encoder's (and the colour conversion's) thread count; 0 (default) = FFmpeg's choice (about
            one per CPU this process may run on; under a CPU quota, its CPUs: FFmpeg's count is the host's).
            :class:`~facecycle.errors.UsageError` for anything but a whole number >= 0.
        fragmented: write an MP4 or MOV as fragments (see the module doc: flat memory, playable when cut); other
            containers are written as they are.
        colour: the source's colour (its ``describe()["colour"]``), or a function giving it when the first frame
            opens the video (a source reads it at its first frame): the primaries and transfer the video is tagged
            with (module doc); None: those of the size rule.
    """

    def __init__(self, path: Union[str, Path], fps: Optional[float] = 30.0, time_base: Optional[Fraction] = None,
                 audio_from: Optional[str] = None, preset: str = "superfast", crf: int = 23,
                 overwrite: bool = False, codec: str = "libx264", threads: int = 0, fragmented: bool = False,
                 colour: Union[dict, Callable[[], Optional[dict]], None] = None) -> None:
        if codec == "libx264":
            check_x264_preset(preset)  # before the file exists, not when the first frame opens the encoder
        self.threads = codec_threads(check_video_threads(threads))  # 0 under a CPU quota: the quota's CPUs
        self.path = prepare_output(path, overwrite)
        self.fps = Fraction(fps).limit_denominator(1001 * 1000) if fps else Fraction(30)
        self.time_base = time_base or Fraction(1, 90000)
        self.preset, self.crf, self.codec = preset, int(crf), codec
        self.audio_from = audio_from
        self._source_colour = colour
        #: the video's colour tags by FFmpeg's names (``matrix``, ``range``, ``primaries``, ``transfer``), once its
        #: first frame opened it: the sidecar's ``video_colour``
        self.colour: Optional[Dict[str, str]] = None
        self.frames = 0
        self._first_pts: Optional[int] = None
        self._shift = 0
        #: seconds added to the copied audio's times: minus the source time of the video's first frame (the same
        #: shift as the video's, so the audio keeps its place against the frames)
        self._audio_shift = Fraction(0)
        self._audio_ticks: Optional[int] = None  # that shift in the audio's time base (set at its first packet)
        self._last_pts: Optional[int] = None
        self._stream = None
        self._size: Optional[Tuple[int, int]] = None
        self._fitted = False  # a frame of another size was fitted in (warned once)
        self._audio_in = None
        self._audio_iter = None
        self._audio_out = None
        self._pending_audio = None
        self._closed = False
        self._broken = False
        #: the file could not be finished and was removed (it would not play): no video to name
        self.removed = False
        #: the frames the file keeps where it could not be finished but still plays (counted then), else None
        self.kept_frames: Optional[int] = None
        self._close_error: Optional[BaseException] = None  # a close's error, said again by the next close()
        self._first_dts: Dict[int, Fraction] = {}  # each stream's first dts (s) as muxed (_make_plain)
        #: the file is fragmented (an MP4 or MOV asked ``fragmented``; one written as fragments only until it closes
        #: is too where it could not be made a plain one)
        self.fragmented = bool(fragmented) and self.path.suffix.lower() in _FRAGMENTABLE
        #: an MP4 or MOV of a file: written as fragments while the run goes, made a plain one when it closes
        self.interim_fragments = not self.fragmented and self.path.suffix.lower() in _FRAGMENTABLE
        options = None
        # (flush_packets: each fragment reaches the file whole when it is made, not its last 32 KB with the next)
        if self.fragmented:
            options = {"movflags": FRAGMENTED_MOVFLAGS, "flush_packets": "1"}
        elif self.interim_fragments:
            options = {"movflags": FRAGMENTED_MOVFLAGS, "frag_duration": str(int(INTERIM_FRAGMENT_S * 1e6)),
                       "flush_packets": "1"}
        try:
            self.container = av.open(str(self.path), "w", options=options)
        except ValueError:  # FFmpeg knows no container for the name: say so before anything is written
            raise OutputError(f"{self.path}: not a video file name (use .mp4, .mkv or .mov)") from None
        except (av.error.FFmpegError, OSError) as e:
            raise OutputError(f"{self.path}: cannot create video ({e})") from None
        self._format = self.container.format.name  # (the plain file made at the close is of the same muxer)

    # -------------------------------------------------------------- setup
    def _open_streams(self, width: int, height: int) -> None:
        try:
            s = self.container.add_stream(self.codec, rate=self.fps)
        except (av.error.FFmpegError, ValueError) as e:
            raise OutputError(f"{self.path}: encoder {self.codec} unavailable ({e})") from None
        s.width, s.height = width, height
        self._size = (int(width), int(height))  # (kept: the stream is not read once the file is closed)
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = self.time_base
        from av.video.reformatter import VideoReformatter  # (looked up when a file opens: tests count them)

        self._reformatter = VideoReformatter()
        hd = height >= 720
        self._colorspace = Colorspace.ITU709 if hd else Colorspace.ITU601
        cc = s.codec_context  # tags: 1 = BT.709; 6 = SMPTE 170M (BT.601, 525 lines); range 1 = limited (tv)
        cc.colorspace = 1 if hd else 6  # (the matrix this sink converts with)
        cc.color_primaries, cc.color_trc = _colour_tags(self._read_source_colour(), hd)
        cc.color_range = 1
        self.colour = {"matrix": _MATRIX_NAMES[cc.colorspace], "range": "limited",
                       "primaries": {v: k for k, v in _SDR_PRIMARIES.items()}[cc.color_primaries],
                       "transfer": {v: k for k, v in _SDR_TRANSFERS.items()}[cc.color_trc]}
        s.options = {"preset": self.preset, "crf": str(self.crf)}
        # (the codec opens at the first encode; PyAV refuses a thread count after that). The thread type stays
        # PyAV's slice threading: libx264 then splits each frame among its threads and returns it at once, with no
        # frame of latency per thread (the app records live) nor a frame buffer per thread; one thread is one slice
        cc.thread_count = self.threads
        self._stream = s
        if self.audio_from:
            self._open_audio()

    def _read_source_colour(self) -> Optional[dict]:
        """The source's colour (``colour``, called where a function), None where unknown or its reading failed."""
        colour = self._source_colour
        if callable(colour):
            try:
                colour = colour()
            except Exception as e:  # noqa: BLE001 - the size rule's tags, as before
                log.debug("%s: the source's colour is unknown (%s)", self.path, e)
                colour = None
        return colour if isinstance(colour, dict) else None

    def _open_audio(self) -> None:
        try:
            self._audio_in = av.open(self.audio_from)
            if not self._audio_in.streams.audio:
                self._audio_in.close()
                self._audio_in = None
                return
            ain = self._audio_in.streams.best("audio") or self._audio_in.streams.audio[0]  # the default track
            name = ain.codec_context.name
            if name not in self.container.supported_codecs:
                log.warning("%s: audio not copied (%s cannot hold %s audio)", self.path,
                            self.container.format.name.split(",")[0], name)
                self._close_audio_in()
                return
            self._audio_out = self.container.add_stream_from_template(ain)
            layout = ain.codec_context.layout
            if layout.name.endswith("channels"):  # unnamed ("2 channels"): the MP4 muxer fails on it at the end
                n = len(layout.channels)
                std = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}.get(n)
                if std is None:
                    raise ValueError(f"an unnamed layout of {n} channels")
                self._audio_out.codec_context.layout = std
            self._audio_iter = self._audio_in.demux(ain)
        except Exception as e:  # noqa: BLE001 - audio is best effort
            log.warning("%s: audio not copied (%s)", self.path, e)
            self._close_audio_in()

    def _close_audio_in(self) -> None:
        if self._audio_in is not None:
            try:
                self._audio_in.close()
            except Exception:  # noqa: BLE001
                pass
        self._audio_in = self._audio_iter = None

    def _mux_audio_until(self, t: float) -> None:
        """Copy audio packets whose time is before ``t`` seconds (from the video's start). Each is moved by the
        video's shift (:attr:`_audio_shift`); those then before 0 (audio that began before the first frame) are
        dropped, so the first kept one is where it was against the frames (within one audio frame of 0)."""
        if self._audio_iter is None:
            return
        try:
            while True:
                pk = self._pending_audio
                if pk is None:
                    pk = next(self._audio_iter)
                    if pk.dts is None:  # the demuxer's final empty packet
                        continue
                    if self._audio_ticks is None:
                        self._audio_ticks = int(round(self._audio_shift / pk.time_base))
                    if pk.pts is not None:
                        pk.pts += self._audio_ticks
                    pk.dts += self._audio_ticks
                    if (pk.pts if pk.pts is not None else pk.dts) < 0 or pk.dts < 0:  # before the video's start
                        continue
                pt = float((pk.pts if pk.pts is not None else pk.dts) * pk.time_base)
                if pt > t:
                    self._pending_audio = pk
                    return
                self._pending_audio = None
                pk.stream = self._audio_out
                self._mux(pk, self._audio_out)
        except StopIteration:
            self._close_audio_in()
        except av.error.FFmpegError as e:
            if getattr(e, "errno", None) in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):  # the output failed
                self._broken = True
                self._close_audio_in()
                if self._closed:  # (closing: close() says what became of the file)
                    raise
                raise self._write_failed("write failed" if e.errno == errno.EIO else write_failure(e)) from None
            log.warning("%s: audio copy stopped (%s)", self.path, e)
            self._close_audio_in()

    def _write_failed(self, what: str) -> OutputError:
        """The error of a write that failed (``what``: "disk full", …; the muxer is not used again): the file is
        finished now, so that the words say what became of it (they said "video frames up to 41 were written" of a
        video then removed): removed, or the frames it keeps. Where closing failed, the next :meth:`close` raises
        this error once more (the caller learns of the removal there)."""
        self._broken = True
        try:
            self.close()
        except Exception as e:  # noqa: BLE001 - said below, and again by the next close()
            self._close_error = e
        if not self.removed and self._close_error is None:  # finished after all (the close's writes fitted)
            self._playable()  # (counts what it keeps: the encoder's frames in hand were lost)
        if self.removed:
            tail = "the video could not be finished: removed, it would not play"
        elif self.kept_frames is None:  # unplayable (and could not be removed), or of no frame
            tail = ("the video could not be finished and does not play" if self._close_error is not None
                    else "no video frame written")
        elif self.kept_frames < self.frames:
            tail = f"the video is incomplete: it keeps {self.kept_frames} of the {self.frames} frames sent to it"
        else:
            tail = f"video frames up to {self.frames - 1} were written"
        err = OutputError(f"{self.path}: {what} ({tail})")
        if self._close_error is not None:  # (the next close() says it in these words, not in the close's own)
            self._close_error = err
        return err

    @property
    def size(self) -> Optional[Tuple[int, int]]:
        """The video's (width, height), once its first frame opened it (the frames' size, made even)."""
        return self._size

    # -------------------------------------------------------------- write
    def write(self, packet: FramePacket) -> None:
        if self._closed:
            raise OutputError(f"{self.path}: already closed")
        img = packet.annotated if packet.annotated is not None else packet.image
        h, w = img.shape[:2]
        if h % 2 or w % 2:  # yuv420p needs even sizes: replicate the last row / column
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            h, w = img.shape[:2]
        if self._stream is None:
            self._open_streams(w, h)
        elif (w, h) != (self._stream.width, self._stream.height):
            if not self._fitted:  # once: the CSV's pixels are the new frames', the video's stay the first size
                self._fitted = True
                log.warning("%s: the frames changed size (%dx%d, the video's %dx%d) at frame %d: fitted into the "
                            "video from here (the CSV's pixels are the new frames')", self.path, w, h,
                            self._stream.width, self._stream.height, self.frames)
            img = fit_into(img, self._stream.width, self._stream.height)
        pts = packet.pts
        if pts is None or packet.time_base != self.time_base:
            pts = int(round(packet.timestamp / self.time_base))
        if self._first_pts is None:
            # the video starts at 0 with its first frame (its time is the CSV's timestamp): a source whose first pts
            # was 10.5 s (MPEG-TS, Matroska) made an MP4 declaring 12.5 s for 2 s, the first 10.5 s an empty edit
            # (blank where players honour edit lists). The copied audio is moved by the same seconds (_mux_audio_until)
            self._first_pts = pts
            self._shift = -pts
            src = packet.pts * packet.time_base if packet.pts is not None else pts * self.time_base
            self._audio_shift = -Fraction(src)
        pts += self._shift
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        # one converter for the file (VideoFrame.reformat makes one, with threads of its own, per call); its threads
        # are capped as the encoder's (0, auto, is one per CPU FFmpeg sees: as many again). The pixels are the same
        # at any count (tested)
        try:
            frame = self._reformatter.reformat(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24"),
                                               format="yuv420p", dst_colorspace=self._colorspace,
                                               dst_color_range=ColorRange.MPEG, threads=self.threads)
        except (MemoryError, av.error.FFmpegError, OSError) as e:  # (av.error.MemoryError is both)
            # under a limit on the address space a 1080p frame's conversion failed: "internal error: MemoryError",
            # exit 1 (a batch printed its traceback)
            if is_out_of_memory(e, eagain=True):
                raise OutOfMemory.while_(f"converting frame {self.frames} for the video {self.path}", e) from None
            raise
        frame.pts = pts
        frame.time_base = self.time_base
        self._mux_audio_until(float(pts * self.time_base))
        try:
            for p in self._stream.encode(frame):
                self._mux(p, self._stream)
        except (MemoryError, av.error.FFmpegError, OSError) as e:
            self._broken = True  # FFmpeg's muxer must not be used again (muxing after a failed write crashes)
            if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise self._write_failed(write_failure(e)) from None
            if self._out_of_memory(e):  # (the encoder opens at the first encode: PyAV names avcodec_open2)
                what = f"opening the video encoder {self.codec}" if "avcodec_open2" in str(e) else "encoding the video"
                raise OutOfMemory.while_(f"{what} for {self.path}", e) from None
            raise OutputError(f"{self.path}: video write failed ({e})") from None
        self.frames += 1

    def _mux(self, packet: "av.Packet", stream) -> None:
        """Mux ``packet`` of ``stream``, noting each stream's first dts (s: :meth:`_make_plain`)."""
        if stream.index not in self._first_dts and packet.dts is not None and packet.time_base:
            self._first_dts[stream.index] = Fraction(packet.dts) * packet.time_base
        self.container.mux(packet)

    def _out_of_memory(self, e: BaseException) -> bool:
        """Whether the encoder's error ``e`` was memory: it says so (ENOMEM, a MemoryError), or it is FFmpeg's
        error where the memory an encoder needs cannot be had now. libx264 that cannot allocate says only
        "Generic error in an external library" (at its open, ``avcodec_open2``, or at a frame,
        ``avcodec_send_frame``; its log "malloc of size N failed", or nothing where a thread could not start):
        under ``ulimit -v`` a batch stopped as an output error, exit 4. Asked of the address space: a mapping
        (never touched) of what an encoder of this size needs, 64 MiB and 32 frames."""
        if is_out_of_memory(e, eagain=True):
            return True
        if not isinstance(e, av.error.FFmpegError) or self._size is None:
            return False
        w, h = self._size
        return not _can_map(64 * 2**20 + 32 * w * h * 3 // 2)

    def close(self, to_end: bool = False) -> None:
        """Flush and finish the file. ``to_end``: the source was read to its end, so its audio is copied to its own
        end (audio that outlasted the last frame was cut: 5 s of audio under 2 s of video kept 2 s); else the audio
        stops at the last frame (``--max-frames``, a stop). A file written as fragments until now (an MP4 or MOV
        of a file) is made a plain one. Raises where the file is incomplete (a second call: the error again, once;
        a failed write finishes the file at once, and its caller learns of a removal here)."""
        if self._closed:
            e, self._close_error = self._close_error, None
            if e is not None:
                raise e
            return
        self._closed = True
        failed: Optional[BaseException] = None
        try:
            if self._stream is not None and not self._broken:
                for p in self._stream.encode():
                    self._mux(p, self._stream)
                if self._last_pts is not None:
                    self._mux_audio_until(float("inf") if to_end else
                                          float((self._last_pts + 1) * self.time_base) + 1.0 / float(self.fps))
        except Exception as e:  # noqa: BLE001 - still close the container
            log.warning("%s: flushing failed (%s)", self.path, e)
            failed = e
        finally:
            self._close_audio_in()
            try:
                self.container.close()
            except Exception as e:  # noqa: BLE001
                log.warning("%s: closing failed (%s)", self.path, e)
                failed = failed or e
        if failed is None and (self.fragmented or self.interim_fragments) and self._stream is not None:
            failed = self._unfinished()
        if failed is not None:  # the file is incomplete: say so (disk full, I/O error), never exit 0 silently
            disk = getattr(failed, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            what = write_failure(failed) if disk else f"writing the video failed ({failed})"
            err: Callable[[str], Exception] = lambda tail: OutputError(f"{self.path}: {what} ({tail})")  # noqa: E731
            if not disk and is_out_of_memory(failed, eagain=True):  # exit 7, as in write()
                oom = OutOfMemory.while_(f"finishing the video {self.path}", failed)
                err = lambda tail: OutOfMemory(f"{oom} ({tail})")  # noqa: E731
            if self._playable():
                self.fragmented = self.fragmented or self.interim_fragments  # (as left: fragments)
                raise err("the video is incomplete")
            # an MP4 whose index (written last) did not fit plays nowhere ("Invalid data"): not left as an output
            try:
                self.path.unlink(missing_ok=True)
                self.removed = True
            except OSError as e:
                log.warning("%s: the unplayable video was not removed (%s)", self.path, e)
                raise err("the video could not be finished and does not play") from None
            raise err("the video could not be finished: removed, it would not play")
        if self.interim_fragments and self._stream is not None:
            if self._broken:  # (a write failed: the file is incomplete as it is, and the disk likely full)
                self.fragmented = True
            else:
                self._make_plain()

    def _make_plain(self) -> None:
        """Make the finished file, written as fragments, a plain MP4 (MOV): its packets copied, as they are, into a
        file beside it (an index of every frame at its end), which then replaces it. The times are put back where
        they were muxed: fragments hold no time below 0, so every stream was moved later by the encoder's delay
        (its dts start below 0 where it reorders frames: 2 frames, 0.083 s at 24 fps, as in a live recording), and
        each track's first sample stretched back to 0 (the first AAC frame 5,028 samples long); the plain file
        gets an edit list instead, as one written plain did. Where it cannot be made (a full disk), the fragmented
        file stays: complete, it plays (a warning says so)."""
        tmp = temp_path(self.path)
        try:
            with av.open(str(self.path)) as src, av.open(str(tmp), "w", format=self._format) as out:
                to = {s.index: out.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
                packets = (pk for pk in src.demux(*[src.streams[i] for i in to]) if pk.dts is not None)
                head, first = [], {}  # the first packets, until each stream's first dts (s) in the file is known
                for pk in packets:
                    head.append(pk)
                    first.setdefault(pk.stream.index, Fraction(pk.dts) * pk.time_base)
                    if len(first) == len(to) or len(head) >= 1024:
                        break
                # the shift: the most any stream's first sample moved (a stretched one moved less)
                shift = max([t - self._first_dts.get(i, t) for i, t in first.items()] + [Fraction(0)])
                ticks = {i: int(round(shift / src.streams[i].time_base)) for i in to}
                seen = set()
                for pk in itertools.chain(head, packets):
                    i = pk.stream.index
                    move = ticks[i]
                    if i not in seen:  # the first sample: where it was muxed (not before: stretched back to 0)
                        seen.add(i)
                        if i in self._first_dts:
                            move = min(move, pk.dts - int(round(self._first_dts[i] / src.streams[i].time_base)))
                    if pk.pts is not None:
                        pk.pts -= move
                    pk.dts -= move
                    pk.stream = to[i]
                    out.mux(pk)
            replace_retrying(tmp, self.path)
        except BaseException as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if not isinstance(e, Exception):  # (an interrupt: the fragmented file stays, complete)
                raise
            self.fragmented = True
            log.warning("%s: kept as a fragmented MP4 (making it a plain one failed: %s); it is complete and plays",
                        self.path, write_failure(e))

    def _unfinished(self) -> Optional[OSError]:
        """The error of a fragmented file whose end is not in it, else None. Its trailer (the ``mfra`` index of its
        fragments, last) is not there where writes failed: FFmpeg's fragmenting muxer says nothing of a write that
        failed at its close (a run under a file size limit exited 0 with a video of a cut first frame)."""
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 16))
                tail = f.read(16)
                n = int.from_bytes(tail[-4:], "big") if len(tail) == 16 else 0
                if tail[4:8] == b"mfro" and 16 <= n <= size:
                    f.seek(size - n + 4)
                    if f.read(4) == b"mfra":
                        return None
        except OSError as e:
            return e
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            if soft != resource.RLIM_INFINITY and size >= soft:
                return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        except (ImportError, OSError, ValueError):  # (no such limit: Windows)
            pass
        import shutil

        try:
            if shutil.disk_usage(self.path.parent).free < 2**20:
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            pass
        return OSError(errno.EIO, "its last part was not written")

    def _playable(self) -> bool:
        """Whether the file as left opens and decodes a first frame from a whole packet (a cut Matroska file, or an
        MP4 written as fragments, does; an MP4 without its index does not, nor a file whose first frame was cut).
        Where it does, :attr:`kept_frames` counts the video packets it holds whole."""
        n, playable = 0, False
        try:
            with av.open(str(self.path)) as c:
                if not c.streams.video:
                    return False
                cc = c.streams.video[0].codec_context
                try:
                    for pk in c.demux(video=0):
                        if pk.dts is None or not pk.size or pk.is_corrupt:  # (one cut short: not whole)
                            continue
                        n += 1
                        if not playable:
                            try:
                                playable = bool(pk.decode())
                            except av.error.FFmpegError:
                                pass
                except av.error.FFmpegError:  # the rest is damage: counted up to it
                    pass
                if not playable and n:
                    try:
                        playable = bool(cc.decode(None))  # (frames the decoder holds back)
                    except av.error.FFmpegError:
                        pass
        except Exception:  # noqa: BLE001 - any failure to read it back: not playable
            return False
        if playable:
            self.kept_frames = n
        return playable
