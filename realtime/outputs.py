"""The end of every frame's path: overlay, CSV (+ JSON sidecar) and annotated video, attached to a run.

:class:`RunOutputs` is the one ending that ``facecycle process``, ``facecycle live`` and the desktop app all
use (:class:`realtime.analyzer.Run` owns one, ``run.outputs``). Each output can be switched on, off, or to
another file **from any thread while the run goes**: :meth:`RunOutputs.set_annotator`,
:meth:`RunOutputs.set_csv` and :meth:`RunOutputs.set_video` only store the request (under a short lock);
the run's consumer thread applies it before the next frame in :meth:`RunOutputs.write`. Sinks are only
ever touched by that thread (or by :meth:`RunOutputs.close` once it has finished).

Order per frame: annotate (``packet.annotated``), then CSV, then video (the video shows the overlay).
A CSV's JSON sidecar is written when the CSV opens (``status: running``), again while the run goes (a checkpoint,
still ``running``, with the frames, rows, summary and statistics so far: every :data:`SIDECAR_EVERY_S` seconds, and
whenever :data:`SIDECAR_TRACKS_STEP` more face tracks are listed in its summary, so that its padding, the room the
final sidecar is written into on a full disk, grows with it) and when it closes (final status, frame/row counts, the
rows' expression summary, run statistics). A final sidecar that cannot be written fails the run
(:class:`~facecycle.errors.OutputError`): it used to be a warning, the run ending with success and its sidecar still
``running``.

A recording of a live source (a camera, a live stream, a file read in real time: ``live --record``, the app's Record)
to MP4 or MOV is written fragmented (:class:`~realtime.sinks.VideoSink`'s ``fragmented``): its memory stays flat and a
killed run's file plays up to its last fragment.

Each output file (CSV, sidecar, video or pictures) is locked while it is written (an advisory ``flock`` on a hidden
file beside it, ``.clip.csv.lock``: :func:`facecycle.files.lock_file`), from before an earlier file is set aside
until the output is finished (and any earlier file put back or deleted). A second run (another process, or another
run of this one) given the same file is refused at once (:class:`~facecycle.errors.OutputError`, naming the host
and pid of the run writing it, or, where that is an earlier run of this process never iterated, saying so): two
``--overwrite`` runs on one name used to lose one run's rows without a word
(the second set aside and deleted the file the first was still writing) and leave a sidecar of the other run.
Where the OS has no ``flock`` (Windows) nothing is locked.

An output folder removed while the run goes (``rm -rf out``), or its CSV deleted, stops the run
(:class:`~facecycle.errors.OutputError`, ``…: output folder removed while running``): checked every
:data:`GONE_CHECK_EVERY_S` seconds and whenever a checkpoint cannot be written. Such a run went on to its end, writing
hours of rows into deleted files, then said that its CSV was complete.

An earlier file that a killed ``--overwrite`` run had set aside (``.X.csv.replaced``: killed before its first frame,
it could not put it back) is put back by the next run given that output (:func:`put_back_replaced`, once its lock
shows that the killed run is gone), where what the killed run left at its name is its own (a header-only CSV, a
``running`` sidecar, a video of no frame, or nothing); it was left hidden for good, and a rerun without
``--overwrite`` said only "exists".
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from facecycle.cpus import codec_threads
from facecycle.errors import FaceCycleError, OutputError
from facecycle.files import (
    VIDEO_SUFFIXES,
    Busy,
    file_id,
    hidden_name,
    json_text_fields,
    lock_file,
    lock_name,
    unlock_file,
    write_failure,
)

from .annotators import Annotator, Compose
from .sinks import CsvSink, ImageSink, VideoSink, check_output_name, is_image_path, write_sidecar
from .sinks.video_sink import VIDEO_OUT_SUFFIXES, check_video_threads, check_x264_preset
from .types import FramePacket

__all__ = ["RunOutputs", "first_clash", "put_back_replaced", "VIDEO_FAILED", "CSV_FAILED", "OUTPUT_FAILED"]

log = logging.getLogger(__name__)

_KEEP = object()  # "no change requested"

#: how ``on_error``'s one-line messages begin (``"recording stopped: X: disk full"``), by output: after one of
#: these the output is off (the app unchecks its button); :data:`OUTPUT_FAILED` adds those of a file that could not
#: be finished (it stays incomplete). The app reads them from here, so the two cannot drift apart
VIDEO_FAILED = ("recording not started", "recording stopped")
CSV_FAILED = ("CSV export not started", "CSV export stopped")
VIDEO_NOT_FINISHED, CSV_NOT_FINISHED = "recording not finished", "CSV export not finished"
OUTPUT_FAILED = VIDEO_FAILED + CSV_FAILED + (VIDEO_NOT_FINISHED, CSV_NOT_FINISHED)

PathLike = Union[str, Path]

#: seconds of wall time between two checkpoints of a CSV's ``running`` sidecar (:meth:`RunOutputs.write`): a run that
#: is killed (power loss, the OOM killer) leaves its frames, rows, summary and statistics as of then
SIDECAR_EVERY_S = 60.0
#: a checkpoint is also written once this many more face tracks (or a quarter more, whichever is more) are listed in
#: the CSV's summary than at the last one: the ``running`` sidecar's padding then keeps room for the final one
#: (:func:`~realtime.sinks.sidecar.reserve_for`)
SIDECAR_TRACKS_STEP = 16
#: seconds between two checks, while the run goes, that its outputs are still there (the CSV's link count, the
#: video's folder; a few system calls): a run whose output folder was removed stops (:meth:`RunOutputs.write`)
GONE_CHECK_EVERY_S = 5.0

#: the output locks this process holds, by lock file (:func:`_lock_key`) -> the RunOutputs holding it (weakly: a
#: collected one holds nothing); for the words of a refusal (:meth:`RunOutputs._busy_message`)
_HELD_HERE: "weakref.WeakValueDictionary[str, RunOutputs]" = weakref.WeakValueDictionary()


def _lock_key(lock: Path) -> str:
    return os.path.abspath(lock)


def first_clash(new: Dict[str, Optional[PathLike]], taken: Optional[Dict[str, Optional[PathLike]]] = None
                ) -> Optional[str]:
    """``"PATH: the ROLE would be written over WHAT"`` for the first of ``new`` (role -> path; None: none) that is
    one file (after links) with one of ``taken`` (what -> path) or with another of ``new`` before it; None where
    all are distinct. The one rule of the Python API's outputs at a run's start and of outputs switched on while it
    goes. Files that exist are compared by identity (device and inode), others by real path: paths alone let a
    recording to ``clip.mp4`` replace the input ``Clip.mp4`` on macOS, where the two names are one file."""
    seen = {_key(p): what for what, p in (taken or {}).items() if p is not None}
    for role, p in new.items():
        if p is None:
            continue
        key = _key(p)
        if key in seen:
            return f"{p}: the {role} would be written over {seen[key]}"
        seen[key] = f"the {role}"
    return None


def _key(path: PathLike) -> Tuple[Any, ...]:
    """What :func:`first_clash` compares: an existing file's identity (:func:`~facecycle.files.file_id`), else its
    real path (:func:`_real`)."""
    ident = file_id(path)
    return ("file", *ident) if ident is not None else ("path", _real(path))


def _real(path: PathLike) -> str:
    """``os.path.realpath(path)``; :class:`OutputError` where a relative path has no folder to start from (the
    current folder was deleted: realpath raised FileNotFoundError, an internal error)."""
    try:
        return os.path.realpath(path)
    except FileNotFoundError:
        raise OutputError(f"{path}: the current folder no longer exists (deleted?); cd to a folder that exists, or "
                          "give the outputs an absolute path (--out-dir)") from None


def put_back_replaced(path: PathLike, locked: bool = False) -> Optional[Path]:
    """Put back the earlier file of the output ``path`` that a killed ``--overwrite`` run set aside (its hidden
    ``.NAME.replaced``, :meth:`RunOutputs._set_aside`: killed before its first frame, that run could not put it back
    itself). A run given ``path`` calls this before it looks at what is there (and before it sets anything aside).

    Only where the run that set it aside is gone: ``locked``, the caller holds ``path``'s lock; else the lock is taken
    here for the moment, and where another run holds it (alive: the file is its own) or nothing can be locked
    (Windows: whether that run is alive cannot be told) nothing is done. The file at ``path`` is replaced only where
    it is the killed run's own (:func:`_left_by_killed_run`: nothing, an empty file, a CSV of a header and at most one
    frame's rows, a ``running`` sidecar of at most one frame, a video of at most one frame); anything else there is
    refused (:class:`OutputError` naming both files), nothing touched: no data is lost either way. Returns ``path``
    where a file was put back, else None."""
    p = Path(path)
    aside = hidden_name(p, ".replaced")
    try:
        if not stat.S_ISREG(os.lstat(aside).st_mode):
            return None
    except (OSError, ValueError):
        return None
    lock, fd = lock_name(p), None
    if not locked:
        try:
            fd = lock_file(lock, {"output": str(p), "put_back": str(aside)}, what=f"the lock of {p}")
        except (Busy, OSError, OutputError):  # its run is alive, or this cannot be told: its files are left alone
            return None
        if fd is None:  # nothing is locked here (Windows): whether the run that set it aside is alive is unknown
            return None
    try:
        if not _left_by_killed_run(p):
            raise OutputError(f"{p}: exists, and an earlier file that a killed --overwrite run had set aside is in "
                              f"{aside}; move one of them away (or delete it), then run again")
        try:
            os.replace(aside, p)
        except OSError as e:
            raise OutputError(f"{p}: the earlier file that a killed --overwrite run had set aside could not be put "
                              f"back ({e.strerror or e}); it is in {aside}") from None
        log.warning("%s: put back (the earlier file that a killed --overwrite run had set aside as %s)", p,
                    aside.name)
        return p
    finally:
        if fd is not None:
            unlock_file(lock, fd)


#: the most of a CSV :func:`_left_by_killed_run` reads: more than a header and one frame's rows of many faces
_ONE_FRAME_MAX = 1 << 20


def _left_by_killed_run(path: Path) -> bool:
    """Whether the file at ``path`` is what a run killed before the end of its first frame leaves at the name of an
    output whose earlier file it had set aside: nothing, an empty file, a CSV of a header and the rows of at most one
    frame, a ``running`` sidecar of at most one frame (a ``.json``), a video of at most one frame (or that does not
    play: an MP4 cut before its index). A folder, a link or anything else is not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if st.st_size == 0:
        return True
    suffix = path.suffix.lower()
    if suffix == ".json":
        from .sinks import read_sidecar

        info = read_sidecar(path)
        frames = info.get("frames") if info is not None else None
        return (info is not None and info.get("status") == "running"
                and (frames is None or (isinstance(frames, int) and not isinstance(frames, bool) and frames <= 1)))
    if suffix in VIDEO_OUT_SUFFIXES or suffix in VIDEO_SUFFIXES:
        return _frames_at_most_one(path)
    if st.st_size > _ONE_FRAME_MAX:
        return False
    try:
        data = path.read_bytes()
    except OSError:
        return False
    lines = data.split(b"\n")
    if not lines[0].startswith(b"frame,"):  # not a CSV this tool writes
        return False
    frames = {line.split(b",", 1)[0] for line in lines[1:-1] if line.strip()}  # (a last line cut short: not read)
    return len(frames) <= 1


def _frames_at_most_one(path: Path) -> bool:
    """Whether the video at ``path`` holds at most one frame, or does not play at all."""
    import av

    try:
        with av.open(str(path)) as c:
            n = 0
            for packet in c.demux(video=0):
                n += packet.size > 0
                if n > 1:
                    return False
    except Exception:  # noqa: BLE001 - unreadable (an MP4 cut before its index): no frame to keep
        return True
    return True


class RunOutputs:
    """Overlay + CSV + video of one run, switchable from any thread.

    Args:
        code_dim: expression code size (the CSV's ``exp_*`` columns).
        fps, time_base: the source's nominal rate and pts time base (for the video).
        audio_from: input file whose audio is copied into a video that starts with the run's first frame.
        describe: ``() -> dict``, what produced the numbers (model, backend, input, ...): the sidecar's body.
        stats: ``() -> dict``, the run's statistics so far (added to the sidecar when a CSV closes).
        overwrite: replace existing files.
        video_preset: libx264 preset.
        video_threads: the video encoder's threads (:class:`~realtime.sinks.VideoSink`'s ``threads``); 0 =
            FFmpeg's choice.
        on_error: None = a sink that fails raises (the run fails: ``process``); a callable = the failing
            sink is closed and dropped, ``on_error(one-line message)`` is called and the run goes on (the app).
        file_column: the CSV ends each row with its frame's file name (sources whose frames are files).
        stills: the frames are separate pictures: a video path without a video suffix is a folder of pictures.
        input_path: the run's input file, which no output may be written over (nor may two outputs be one
            file), however the outputs are switched while the run goes (the app's Record and Export CSV).
        live: the source makes frames at its own pace (a camera, a live stream, a file read in real time): a video
            to MP4 or MOV is then written fragmented (flat memory, playable when cut). None (default): what
            ``describe()["input"]["live"]`` says.
    """

    def __init__(self, code_dim: int, *, fps: Optional[float] = None, time_base: Optional[Fraction] = None,
                 audio_from: Optional[str] = None, describe: Optional[Callable[[], dict]] = None,
                 stats: Optional[Callable[[], dict]] = None, overwrite: bool = False,
                 video_preset: str = "superfast", on_error: Optional[Callable[[str], None]] = None,
                 file_column: bool = False, stills: bool = False,
                 input_path: Optional[PathLike] = None, video_threads: int = 0,
                 live: Optional[bool] = None) -> None:
        self.code_dim = int(code_dim)
        #: the source is live (a camera, a stream, a file read in real time): an MP4/MOV recording is fragmented.
        #: None: ``describe()["input"]["live"]``, read when a video opens
        self.live = live
        self.input_path = Path(input_path) if input_path is not None else None
        self.file_column = bool(file_column)
        self.stills = bool(stills)
        self.fps = fps
        self.time_base = time_base
        self.audio_from = audio_from
        self.describe = describe
        self.stats = stats
        self.overwrite = overwrite
        self.video_preset = check_x264_preset(video_preset)
        self.video_threads = check_video_threads(video_threads)
        self.on_error = on_error
        self.annotator: Optional[Annotator] = None
        self.csv: Optional[CsvSink] = None
        self.video: Optional[Union[VideoSink, ImageSink]] = None
        self.sidecar_path: Optional[Path] = None
        self.video_path: Optional[Path] = None  # the last video opened (named in the sidecar)
        #: frames written to that video (0: none; it is then not named as written, even if a file of that name
        #: is there from an earlier run)
        self.video_frames = 0
        self.video_size: Optional[Tuple[int, int]] = None  # the annotated video's frame size, once it has a frame
        self.video_colour: Optional[dict] = None  # the annotated video's colour tags, once it has a frame
        self.finished: List[str] = []  # files closed so far
        self._lock = threading.Lock()
        self._req_annotator: object = _KEEP
        self._req_csv: object = _KEEP
        self._req_video: object = _KEEP
        self._frames_seen = 0
        #: earlier files that ``overwrite`` replaces, moved aside before the run's first frame: (path, hidden name,
        #: the output replacing it, "csv" or "video"). Deleted once that output, still open, has written a frame;
        #: put back where it is closed (failed, switched off or to another file) before it wrote one, and where the
        #: run ends before its first frame (failed, interrupted, stopped: ``restored`` is then set)
        self._aside: List[Tuple[Path, Path, str]] = []
        self.restored = False
        #: output path -> (its lock file, the descriptor holding it; None where nothing is locked)
        self._locks: Dict[Path, Tuple[Path, Optional[int]]] = {}
        #: the output paths each open output writes ("csv": the CSV and its sidecar, "video"): their locks are held
        self._in_use: Dict[str, List[Path]] = {}
        #: the run writing these outputs has begun reading its input (:class:`~realtime.analyzer.Run` sets it when
        #: it is iterated): a second run refused for its files is told to wait, not to close an unread run
        self.started = False
        #: the open CSV's last sidecar checkpoint: when (time.monotonic) and how many tracks its summary listed
        self._checkpoint_at = 0.0
        self._checkpoint_tracks = 0
        self._checkpoint_warned = False
        #: the open CSV was made by this run (no file was at its path once an earlier one was set aside), and its
        #: sidecar has been written by this run (the file at its path is this run's): what a run that wrote no frame
        #: and could not write its sidecar removes again (:meth:`_close_csv`)
        self._csv_made = False
        self._sidecar_made = False
        #: the error of the open CSV's first ``running`` sidecar, where it could not be written
        self._sidecar_error: Optional[BaseException] = None
        #: when (time.monotonic) the outputs were last checked to be there (:meth:`_check_gone`), and the error of an
        #: output found removed while the run went (the run stops with it)
        self._gone_at = 0.0
        self._gone_error: Optional[OutputError] = None
        #: the open video's folder, as an absolute path taken when it opened (a removed folder stops the run)
        self._video_dir: Optional[str] = None

    # ---------------------------------------------------------------- any thread
    def set_annotator(self, annotator: Optional[Annotator]) -> None:
        """Draw with ``annotator`` from the next frame on (None: no overlay, ``packet.annotated`` stays None)."""
        with self._lock:
            self._req_annotator = annotator

    def set_csv(self, path: Optional[PathLike], sidecar: Optional[PathLike] = None) -> None:
        """Write the CSV to ``path`` from the next frame on (None: finish the open CSV). The sidecar goes to
        ``sidecar`` (default: ``path`` with ``.json``)."""
        with self._lock:
            self._req_csv = None if path is None else (Path(path), Path(sidecar) if sidecar else None)

    def set_video(self, path: Optional[PathLike]) -> None:
        """Record the annotated video to ``path`` from the next frame on (None: finish the open video)."""
        with self._lock:
            self._req_video = None if path is None else Path(path)

    # --------------------------------------------------------- consumer thread
    def open_csv(self, path: PathLike, sidecar: Optional[PathLike] = None) -> None:
        """Open the CSV now (raises :class:`~facecycle.errors.OutputError`); used before the first frame."""
        self._close_csv("stopped")
        side = Path(sidecar) if sidecar else Path(path).with_suffix(".json")
        self._check_clash({"CSV": Path(path), "CSV's sidecar": side})
        check_output_name(side)  # before any file is made (a CSV's own name is checked as it opens)
        try:  # before anything is set aside: a file another run still writes is refused, untouched
            self._take_lock(Path(path))
            self._take_lock(side)
            self._in_use["csv"] = [Path(path), side]
            for p in (Path(path), side):  # an earlier file that a killed --overwrite run left aside: put back
                self._put_back_stale(p)
        except BaseException:
            self._in_use.pop("csv", None)
            self._release_idle()
            raise
        self._set_aside(Path(path), "csv")
        self._set_aside(side, "csv")
        made = not os.path.lexists(path)
        try:
            self.csv = CsvSink(path, self.code_dim, overwrite=self.overwrite, file_column=self.file_column)
        except BaseException:
            self._in_use.pop("csv", None)
            self._put_back_for("csv")  # no new file will replace them
            raise
        self.sidecar_path = side
        self._csv_made, self._sidecar_made, self._sidecar_error = made, False, None
        try:
            self.write_sidecar("running")
        except BaseException as e:  # the run fails; closing it writes a `failed` sidecar where it can
            self._sidecar_error = e
            raise
        self._checkpoint_at, self._checkpoint_tracks, self._checkpoint_warned = time.monotonic(), 0, False

    def _check_clash(self, new: Dict[str, Path]) -> None:
        """OutputError where a file about to be opened is the input, an output still open, or another of ``new``
        (the app recorded over the video it was reading, and a CSV named ``x.json`` was replaced by its sidecar)."""
        taken = {"the input": self.input_path if self.input_path is not None and self.input_path.is_file() else None,
                 "the CSV being written": self.csv.path if self.csv is not None else None,
                 "the CSV's sidecar": self.sidecar_path,
                 "the recording": self.video.path if self.video is not None else None}
        msg = first_clash(new, taken)
        if msg is not None:
            raise OutputError(f"{msg}; choose another file")

    def _pictures(self, path: PathLike) -> bool:
        return is_image_path(path) or (self.stills and Path(path).suffix.lower() not in VIDEO_SUFFIXES)

    def check_video_path(self, path: PathLike) -> None:
        """Raise :class:`~facecycle.errors.OutputError` where ``path`` can be neither a video (.mp4, .mkv, …) nor
        pictures (:meth:`open_video`), or where another run is writing it (its lock is taken here and kept for
        :meth:`open_video`, or until :meth:`close`: a run refused for its video leaves no CSV behind); nothing but
        the hidden lock file is created."""
        if not self._pictures(path) and Path(path).suffix.lower() not in VIDEO_OUT_SUFFIXES:
            raise OutputError(f"{path}: not a video file name this writer can fill with H.264 "
                              f"(use {', '.join(VIDEO_OUT_SUFFIXES)})")
        if self.video is None:
            self._take_lock(Path(path))
            self._in_use["video"] = [Path(path)]
            self._release_idle()  # (one reserved before for another name)

    def open_video(self, path: PathLike) -> None:
        """Open the video now (raises :class:`~facecycle.errors.OutputError`). Audio is copied only when the
        recording starts with the run's first frame (it would be out of sync otherwise). An image file's path
        (``.png``, ``.jpg``, …) is one picture (:class:`~realtime.sinks.ImageSink`); for ``stills``, a path without
        a video suffix is a folder of pictures (``photos.annotated``); anything else is a video."""
        self._close_video()
        self._check_clash({"recording": Path(path)})
        self._take_lock(Path(path))  # before anything is set aside: a file another run still writes is refused
        self._in_use["video"] = [Path(path)]
        self._release_idle()  # (one reserved by check_video_path for another name)
        if self._pictures(path):
            try:
                self.video = ImageSink(path, overwrite=self.overwrite)
            except BaseException:
                self._in_use.pop("video", None)
                self._release_idle()
                raise
        else:
            audio = self.audio_from if self._frames_seen == 0 else None
            live = self._source_live()
            try:  # an earlier video that a killed --overwrite run left aside: put back first
                self._put_back_stale(Path(path))
            except BaseException:
                self._in_use.pop("video", None)
                self._release_idle()
                raise
            self._set_aside(Path(path), "video")
            try:
                self.video = VideoSink(path, fps=self.fps, time_base=self.time_base, audio_from=audio,
                                       preset=self.video_preset, overwrite=self.overwrite,
                                       threads=self.video_threads, fragmented=live, colour=self._source_colour)
            except BaseException:
                self._in_use.pop("video", None)
                self._put_back_for("video")  # no new file will replace it
                raise
        self.video_path = self.video.path
        self.video_frames, self.video_size, self.video_colour = 0, None, None
        self._video_dir = os.path.dirname(os.path.abspath(self.video.path))

    def _source_colour(self) -> Optional[dict]:
        """The source's colour (``describe()``'s ``input.colour``), or None: read by the video when its first frame
        opens it (the source reads it at its first frame), for the primaries and transfer it is tagged with."""
        try:
            inp = self.describe().get("input") if self.describe is not None else None
            colour = inp.get("colour") if isinstance(inp, dict) else None
        except Exception as e:  # noqa: BLE001 - the size rule's tags
            log.debug("the source's colour is unknown (%s)", e)
            return None
        return colour if isinstance(colour, dict) else None

    def _source_live(self) -> bool:
        """Whether the source is live (:attr:`live`, else read once from ``describe()``'s ``input``)."""
        if self.live is None:
            try:
                inp = self.describe().get("input") if self.describe is not None else None
                self.live = bool(inp.get("live")) if isinstance(inp, dict) else False
            except Exception as e:  # noqa: BLE001 - a recording as before
                log.debug("whether the source is live is unknown (%s)", e)
                self.live = False
        return bool(self.live)

    def _apply_requests(self) -> None:
        with self._lock:
            ann, self._req_annotator = self._req_annotator, _KEEP
            csv, self._req_csv = self._req_csv, _KEEP
            video, self._req_video = self._req_video, _KEEP
        if ann is not _KEEP:
            self.annotator = None if isinstance(ann, Compose) and not ann.annotators else ann
        if csv is not _KEEP:
            self._guard(CSV_NOT_FINISHED, self._close_csv, "complete")
            if csv is not None and not self._guard(CSV_FAILED[0], self.open_csv, *csv) and self.csv is not None:
                # opened, but its first sidecar could not be written: the export is off (said so), not going on
                # unseen; a `failed` sidecar where it can be written, else the header-only CSV is removed
                self._quietly(self._close_csv, "failed", self._sidecar_error)
        if video is not _KEEP:
            self._guard(VIDEO_NOT_FINISHED, self._close_video)
            if video is not None:
                self._guard(VIDEO_FAILED[0], self.open_video, video)

    def _guard(self, what: str, fn, *args) -> bool:
        """Run ``fn``; with ``on_error``, a FaceCycleError is reported as "``what``: message" (False)."""
        if self.on_error is None:
            fn(*args)
            return True
        try:
            fn(*args)
            return True
        except FaceCycleError as e:
            self.on_error(f"{what}: {e}")
            return False

    @staticmethod
    def _quietly(fn, *args) -> None:
        """Finish a sink that already failed (its error was reported): a second error is only logged."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            log.warning("closing a failed output: %s", e)

    def write(self, packet: FramePacket) -> None:
        """Apply pending switches, then annotate ``packet`` and write it to the open sinks (consumer thread)."""
        self._apply_requests()
        if (self.csv is not None or self.video is not None) and \
                time.monotonic() - self._gone_at >= GONE_CHECK_EVERY_S:
            self._check_gone()
        if self.annotator is not None:
            t = time.perf_counter()
            self.annotator.annotate(packet.image, packet)
            packet.stats["annotate"] = time.perf_counter() - t
        if self.csv is not None:
            t = time.perf_counter()
            if not self._guard(CSV_FAILED[1], self._write_csv, packet):  # (with on_error: said, the export off)
                self._quietly(self._close_csv, "failed", self._gone_error)
                self._gone_error = None  # (a CSV deleted: the run's own end is not failed by it)
            packet.stats["csv"] = time.perf_counter() - t
        if self.video is not None:
            t = time.perf_counter()
            if self._guard(VIDEO_FAILED[1], self.video.write, packet):
                self.video_frames += 1
                if self.video_frames == 1:  # its frame size: a small picture's is enlarged, an odd size padded
                    self.video_size = getattr(self.video, "size", None)
                    self.video_colour = getattr(self.video, "colour", None)
            else:
                self._quietly(self._close_video)
            packet.stats["video"] = time.perf_counter() - t
        self._frames_seen += 1
        if self._aside:  # the run has written its first frame: the earlier files are replaced for good
            self._drop_aside()

    def _write_csv(self, packet: FramePacket) -> None:
        assert self.csv is not None
        self.csv.write(packet)
        self._checkpoint()

    def _csv_gone(self) -> Optional[OutputError]:
        """The error of an open CSV that is no longer in its folder: deleted (its link count is 0: ``rm``, or its
        folder removed, ``rm -rf out``); None where it is there, or where this cannot be told (a pipe, a device)."""
        c = self.csv
        fd = getattr(c, "_fd", None) if c is not None else None
        if c is None or fd is None:
            return None
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 0:
            return None
        try:  # (a file system that counts no links: the name still leads to the file)
            if os.path.samestat(st, os.stat(c.path)):
                return None
        except OSError:
            pass
        if not os.path.isdir(os.path.dirname(os.path.abspath(c.path))):
            return OutputError(f"{c.path}: output folder removed while running; the run stopped")
        return OutputError(f"{c.path}: deleted while running (by another program?); the run stopped")

    def _video_gone(self) -> Optional[OutputError]:
        """The error of an open video whose folder was removed; None where it is there (pictures: their sink
        finds its own folder gone)."""
        v = self.video
        if not isinstance(v, VideoSink) or self._video_dir is None or os.path.isdir(self._video_dir):
            return None
        return OutputError(f"{v.path}: output folder removed while running; the run stopped")

    def _check_gone(self) -> None:
        """Stop an output that was removed while the run went (:data:`GONE_CHECK_EVERY_S`): raises its
        :class:`OutputError` (the run stops: ``process``), or with ``on_error`` says it and closes that output.
        A run whose folder was removed went on to its end, writing every frame into deleted files."""
        self._gone_at = time.monotonic()
        csv, video = self._csv_gone(), self._video_gone()
        for gone, what in ((csv, CSV_FAILED[1]), (video, VIDEO_FAILED[1])):
            if gone is None:
                continue
            self._gone_error = self._gone_error or gone
            if self.on_error is None:
                raise gone
            self.on_error(f"{what}: {gone}")  # (the app: that output is off, the run goes on)
            if gone is csv:
                self._quietly(self._close_csv, "failed", gone)
            else:
                self._quietly(self._close_video)
            self._gone_error = None  # said and that output off: the run's own end is not failed by it

    def _checkpoint(self) -> None:
        """Rewrite the open CSV's ``running`` sidecar (frames, rows, summary and statistics so far) every
        :data:`SIDECAR_EVERY_S` seconds, and as face tracks accumulate (:data:`SIDECAR_TRACKS_STEP`), so that its
        padding keeps room for the final one. Atomic; one that fails (a full disk) is said once and the run goes on
        (the final sidecar, written at the end, fails the run where it cannot be written), except where the CSV was
        deleted (its folder removed): that stops the run (:meth:`_csv_gone`)."""
        if self.csv is None or self.sidecar_path is None:
            return
        listed = len(self.csv.summary.tracks)
        if (listed < self._checkpoint_tracks + max(SIDECAR_TRACKS_STEP, self._checkpoint_tracks // 4)
                and time.monotonic() - self._checkpoint_at < SIDECAR_EVERY_S):
            return
        self._checkpoint_at, self._checkpoint_tracks = time.monotonic(), listed
        try:
            self.write_sidecar("running", with_stats=True)
        except Exception as e:  # noqa: BLE001 - the rows go on; the final sidecar is what counts
            gone = self._csv_gone()  # (no such folder: it was removed; the run stops, where it went on to its end)
            if gone is not None:
                self._gone_error = self._gone_error or gone
                raise gone from None
            if not self._checkpoint_warned:
                self._checkpoint_warned = True
                log.warning("%s: the sidecar's checkpoint was not written (%s); the run goes on", self.sidecar_path, e)

    # ------------------------------------------------------------------ locks
    def _take_lock(self, path: Path) -> None:
        """Lock the output ``path`` for this run (:func:`facecycle.files.lock_file`, its hidden lock file beside it)
        until it is finished; :class:`OutputError` naming the run that writes it (host, pid) where another holds
        it. A lock file that cannot be made (a read-only folder, a name at the file system's limit) leaves the file
        unlocked: the output's own error, where it cannot be written either, is the one to report."""
        if path in self._locks:
            return
        try:  # a device or a pipe (/dev/null, /dev/stdout, a FIFO) is no file a run replaces: nothing to lock (two
            mode = path.stat().st_mode  # runs writing /dev/null were refused, its lock file made in /dev as root)
        except OSError:
            mode = 0
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            return
        lock = lock_name(path)
        try:
            fd = lock_file(lock, {"output": str(path),
                                  "input": str(self.input_path) if self.input_path is not None else None},
                           what=f"the lock of {path}")
        except Busy as b:
            raise OutputError(self._busy_message(path, lock, b)) from None
        except OSError as e:
            log.debug("%s: not locked (%s)", path, e)
            return
        self._locks[path] = (lock, fd)
        _HELD_HERE[_lock_key(lock)] = self

    @staticmethod
    def _busy_message(path: Path, lock: Path, b: Busy) -> str:
        """What a run refused ``path`` (its lock ``lock`` held, :class:`Busy` ``b``) is told. Where the holder is
        an earlier run of this very process that was never iterated (a notebook cell ``run =
        an.process_video(..., csv=X)`` run again before the first run was read: "being written by another run
        (host vm, pid <this pid>); wait for it to end" sent users looking for another process), it says so, and
        how to let go of it."""
        holder = _HELD_HERE.get(_lock_key(lock))
        mine = str(b.holder.get("pid")) == str(os.getpid())
        if mine and holder is not None and not holder.started and not holder._frames_seen:
            return (f"{path}: still held by an earlier Run in this process (pid {os.getpid()}) that was not iterated "
                    "to its end or closed; call that run's close() (or iterate it) first, or write elsewhere")
        # a run of this process partly read (a notebook's `it = iter(run); next(it)`) ends only when it is read on
        # or closed: said, not left for the user to wait on
        here = " (a Run of this process: read it to its end or call its close())" if mine and holder is not None else ""
        return f"{path}: being written by another run ({b.who}); wait for it to end, or write elsewhere{here}"

    def _release_idle(self) -> None:
        """Release the locks of outputs no longer written: neither open nor waiting to be put back or deleted (an
        earlier file set aside stays locked until then: another run must not start on the name meanwhile)."""
        busy = {p for paths in self._in_use.values() for p in paths} | {p for p, _, _ in self._aside}
        for path in [p for p in self._locks if p not in busy]:
            lock, fd = self._locks.pop(path)
            if _HELD_HERE.get(_lock_key(lock)) is self:
                del _HELD_HERE[_lock_key(lock)]
            unlock_file(lock, fd)

    # ------------------------------------------------------- replaced files
    def _set_aside(self, path: Path, role: str) -> None:
        """Before the run's first frame, move an earlier file that ``overwrite`` replaces to a hidden name beside
        it (``.x.csv.replaced``), so that a run failing before its first frame does not cost the earlier result.
        ``role``: the output that is to replace it ("csv": the CSV and its sidecar, "video"); the file is deleted
        only once that output has written a frame (:meth:`_drop_aside`), and put back where it is closed before
        (:meth:`_put_back_for`)."""
        if not self.overwrite or self._frames_seen or not path.is_file():
            return
        aside = hidden_name(path, ".replaced")  # (.<12 hex>.replaced for a name near the file system's limit)
        try:
            os.replace(path, aside)
        except OSError as e:  # replaced in place, as before
            log.warning("%s: not kept aside while the run starts (%s)", path, e)
            return
        self._aside.append((path, aside, role))

    def _put_back_stale(self, path: Path) -> None:
        """Put back the earlier file of ``path`` that a killed run left aside (:func:`put_back_replaced`), where this
        run holds ``path``'s lock (the run that set it aside is then gone; unlocked, as on Windows, nothing is done)
        and did not set it aside itself."""
        held = self._locks.get(path)
        if held is None or held[1] is None or any(p == path for p, _, _ in self._aside):
            return
        put_back_replaced(path, locked=True)

    def _has_written(self, role: str) -> bool:
        """Whether the output ``role`` ("csv", "video") is open and has written a frame: it has replaced the
        earlier files set aside for it."""
        if role == "csv":
            return self.csv is not None and self.csv.frames > 0
        return self.video is not None and self.video_frames > 0

    def _drop_aside(self) -> None:
        """Delete the earlier files set aside whose replacement is open and has written a frame; the others stay
        aside (to be put back where their output is closed before it writes one: no data is lost)."""
        keep = []
        for path, aside, role in self._aside:
            if not self._has_written(role):
                keep.append((path, aside, role))
                continue
            try:
                aside.unlink(missing_ok=True)
            except OSError as e:
                log.warning("%s: not removed (%s)", aside, e)
        self._aside = keep
        self._release_idle()

    def _put_back_for(self, role: str) -> None:
        """Put back the earlier files set aside for the output ``role`` ("csv", "video"), which is being closed (or
        could not open) before it wrote a frame: nothing replaced them. (Once it has written one they are gone:
        :meth:`_drop_aside`.)"""
        paths = [p for p, _, r in self._aside if r == role]
        self._put_back(paths)  # (and the locks of what is no longer written released)
        if paths:
            log.info("%s: the earlier %s kept (the new one was closed before its first frame)",
                     " and ".join(p.name for p in paths), "file is" if len(paths) == 1 else "files are")

    def _put_back(self, paths: Optional[List[Path]] = None) -> None:
        """Put the earlier files back (``paths``: only those; default all); they are then not this run's
        (:attr:`finished` leaves them out)."""
        keep = []
        for path, aside, role in reversed(self._aside):
            if paths is not None and path not in paths:
                keep.append((path, aside, role))
                continue
            try:
                path.unlink(missing_ok=True)
                os.replace(aside, path)
            except OSError as e:
                log.warning("%s: the earlier file could not be put back; it is in %s (%s)", path, aside, e)
            self.finished = [f for f in self.finished if Path(f) != path]
        self._aside = keep[::-1]
        self._release_idle()

    # ------------------------------------------------------------------ closing
    def write_sidecar(self, status: str, error: Optional[BaseException] = None, with_stats: bool = False) -> None:
        """(Re)write the open CSV's JSON sidecar with ``status`` (no-op without a CSV or ``describe``); a final one
        (and a ``running`` checkpoint: ``with_stats``) with the run's statistics."""
        if self.sidecar_path is None or self.describe is None:
            return
        info = dict(self.describe())
        info["status"] = status
        info["csv"] = str(self.csv.path) if self.csv is not None else None
        # a video that never got a frame (stopped before the first) was never made: not named as written
        made = self.video_path is not None and (status == "running" or self.video_frames > 0)
        info["video"] = str(self.video_path) if made else None
        # the annotated video's (width, height): CSV pixels times width / input.width, from its top left (an odd size
        # is padded at the right or bottom)
        info["video_size"] = list(self.video_size) if made and self.video_size else None
        # the annotated video's colour tags (matrix, range, primaries, transfer by FFmpeg's names; null for pictures)
        info["video_colour"] = dict(self.video_colour) if made and self.video_colour else None
        # the encoder's thread count, a count of this run's (0: FFmpeg's choice; null without a video or for pictures;
        # under a CPU quota the count 0 became: facecycle.cpus.codec_threads)
        info["video_threads"] = (codec_threads(self.video_threads)
                                 if made and not self._pictures(self.video_path) else None)  # type: ignore
        if self.csv is not None:
            info.update(frames=self.csv.frames, rows=self.csv.rows, summary=self.csv.summary.to_dict())
        if (status != "running" or with_stats) and self.stats is not None:
            info["stats"] = self.stats()
        if error is not None:
            info["error"] = str(error)
        try:  # names as UTF-8 text, bytes that are not UTF-8 as \xNN (input.name, input.path, csv, video, command)
            write_sidecar(self.sidecar_path, json_text_fields(info))
        except OSError as e:  # a full disk, a file size limit (the padded "running" one needs 32 KiB): one line
            room = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # (not a name too long, a folder, ...)
            raise OutputError(f"{self.sidecar_path}: {write_failure(e)}"
                              + (" (the sidecar reserves 32 KiB when the run starts)"
                                 if room and status == "running" and not with_stats else "")) from None
        self._sidecar_made = True

    def _close_csv(self, status: str, error: Optional[BaseException] = None) -> None:
        """Finish the CSV and write its sidecar's final state (raises the close error, after the sidecar). Earlier
        files it was to replace that are still aside (it wrote no frame) are put back, over what it made: an export
        switched off, or failed (its first sidecar not written, its first frame not written) before its first frame
        had them deleted at the run's first frame, though nothing replaced them."""
        if self.csv is None:
            return
        try:
            self._finish_csv(status, error)
        finally:
            self._put_back_for("csv")

    def _finish_csv(self, status: str, error: Optional[BaseException]) -> None:
        c = self.csv
        assert c is not None
        # a CSV deleted while the run went (its folder removed): never called complete; the run fails with it
        said = error is not None and error is self._gone_error  # (the error the run already fails with)
        gone = self._csv_gone()
        if gone is not None:
            self._gone_error = self._gone_error or gone
            if error is None or status in ("complete", "interrupted"):
                status, error = "failed", gone
        failed: Optional[BaseException] = None
        try:
            c.close()
        except Exception as e:  # noqa: BLE001 - recorded in the sidecar, then raised
            failed = e
            status, error = "failed", e
        side, unwritten = self.sidecar_path, None
        try:
            self.write_sidecar(status, error)
        except Exception as e:  # noqa: BLE001 - the CSV itself is complete; raised below, once it is finished
            unwritten = e
        self.csv, self.sidecar_path = None, None
        removed = (self._remove_unmarked(c, side) if unwritten is not None and failed is None and gone is None
                   else [])
        self._in_use.pop("csv", None)
        self._release_idle()
        if gone is not None:  # its rows went with it: no file finished, no sidecar that can say so (its folder gone)
            log.debug("%s: deleted while the run went; the final sidecar: %s", c.path, unwritten or "written")
            if failed is not None:
                raise failed
            if not said:
                raise gone
            return
        if not removed:
            self.finished.append(str(c.path))
            log.info("CSV finished: %s (%d frames)", c.path, c.frames)
        if failed is not None:
            raise failed
        if unwritten is None:
            return
        # the run's reading and counts are missing: a failure, never a silent success
        msg = str(unwritten) if isinstance(unwritten, OutputError) else f"{side}: {unwritten}"
        if removed:  # nothing of the run is left: no file that blocks the corrected command
            gone = " and ".join(p.name for p in removed)
            if error is not None and error is self._sidecar_error:  # the very error the run fails with: said once
                log.info("%s: removed (this run's, holding no rows; no sidecar could be written)", gone)
                return
            raise OutputError(f"{msg} (the final sidecar was not written; this run's {gone}, holding no rows, "
                              "removed)")
        said = ("it still says running" if self._sidecar_made and side is not None and side.is_file()
                else "no sidecar was written")
        raise OutputError(f"{msg} (the final sidecar was not written: {said}; the CSV is complete)")

    def _remove_unmarked(self, c: CsvSink, side: Optional[Path]) -> List[Path]:
        """Where the run wrote no row and no final sidecar could be written, remove what this run made of the CSV
        (a header alone) and of its sidecar (a ``running`` one of no frame): a header-only CSV without a ``failed``
        sidecar beside it blocked the corrected command ("exists"). An earlier file set aside is put back by the
        caller; a file that was there before this run, or one that holds rows, is kept. Returns what was removed
        (nothing, where the CSV stays)."""
        if c.rows or c.frames or not self._csv_made:
            return []
        removed: List[Path] = []
        try:
            if not stat.S_ISREG(os.lstat(c.path).st_mode):  # (a device, a pipe: never this run's file)
                return []
            os.unlink(c.path)
            removed.append(c.path)
        except OSError as e:
            log.warning("%s: the CSV of no rows was not removed (%s)", c.path, e)
            return []
        if side is not None and self._sidecar_made:
            try:
                os.unlink(side)
                removed.append(side)
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("%s: the sidecar of no frame was not removed (%s)", side, e)
        self._csv_made = self._sidecar_made = False
        return removed

    def _close_video(self, to_end: bool = False) -> None:
        """Finish the video; an earlier video it was to replace, still aside (it wrote no frame: switched off, or
        failed at its first frame), is put back."""
        if self.video is None:
            return
        try:
            self._finish_video(to_end)
        finally:
            self._put_back_for("video")

    def _finish_video(self, to_end: bool) -> None:
        v, self.video = self.video, None
        assert v is not None
        try:
            if isinstance(v, VideoSink):
                v.close(to_end=to_end)
            else:  # a picture has no audio
                v.close()
        except BaseException:
            if getattr(v, "removed", False):  # it could not be finished and is gone: the sidecar names no video
                self.video_path, self.video_frames = None, 0
            raise
        finally:
            self._in_use.pop("video", None)
            self._release_idle()
        if isinstance(v, VideoSink) and self._video_dir is not None and not os.path.isdir(self._video_dir):
            log.debug("%s: its folder was removed while the run went", v.path)  # (a file of no folder: not finished)
            return
        self.finished.append(str(v.path))
        log.info("video finished: %s (%d frames)", v.path, v.frames)

    def close(self, status: str = "complete", error: Optional[BaseException] = None,
              source_ended: bool = False, raises: bool = False) -> Optional[BaseException]:
        """Finish every file (idempotent). The CSV's sidecar gets ``status``; returns the first error of a
        sink that could not be finished (its file is incomplete), None when all are complete. ``source_ended``: the
        source was read to its end (the video then takes the source's audio to its own end). ``raises``: the
        caller raises the error returned (the run's error, said once as such): it is logged at DEBUG only, where
        a WARNING said it a second time on stderr; an error not returned (a second one) is always a WARNING."""
        first: Optional[BaseException] = None
        # ended before its first frame: the earlier files are put back (each output's close puts back its own)
        restoring = self._frames_seen == 0 and bool(self._aside)
        # an output removed while the run went (its folder deleted), found now or before: the run fails with that
        # (not "the CSV is complete"), and what the files then cannot do (a sidecar with no folder) is its doing
        gone = self._gone_error or self._csv_gone() or self._video_gone()
        if gone is not None:
            self._gone_error = gone
            if status in ("complete", "interrupted"):
                status, error, first = "failed", gone, gone

        def say(what: str, e: BaseException) -> None:
            quiet = (raises and first is None) or (gone is not None and e is not gone)
            log.log(logging.DEBUG if quiet else logging.WARNING, "closing the %s failed: %s", what, e)

        try:
            self._close_video(to_end=source_ended)
        except Exception as e:  # noqa: BLE001 - keep closing the CSV
            say("video", e)
            first = first or e
            if gone is not None:  # the sidecar says that: the video's error is its doing
                pass
            elif status in ("complete", "interrupted"):
                status, error = "failed", e
            elif error is not None and str(e) not in str(error):  # the sidecar says what became of the video too
                error = OutputError(f"{error}; {e}")
        try:
            if self.csv is not None:
                self._close_csv(status, error)
            elif self.sidecar_path is not None:  # a sidecar without a CSV (Analyzer.process_video(sidecar=...))
                self.write_sidecar(status, error)
                self.sidecar_path = None
        except Exception as e:  # noqa: BLE001
            say("CSV", e)
            first = first or e
        if self._aside:  # (none is left: whatever is still aside was replaced by no frame)
            self._put_back()
        if restoring:  # failed, stopped or an input of no frame: nothing replaced them
            self.restored = True
            log.warning("the run ended before its first frame: the earlier outputs it was to replace are kept")
        self._in_use.clear()  # whatever could not be closed is not written any more either
        self._release_idle()
        return first

    @property
    def recording(self) -> bool:
        return self.video is not None
