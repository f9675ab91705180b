"""The Python API: :class:`Analyzer` (``from realtime import Analyzer``).

>>> from realtime import Analyzer
>>> an = Analyzer(model="exported_model_dir")            # doctest: +SKIP
>>> for packet in an.process_video("clip.mp4", csv="clip.csv"):   # doctest: +SKIP
...     for face in packet.faces:
...         print(packet.index, face.track_id, face.intensity, face.pose)

``process_video`` returns a :class:`Run`: iterate it to get every frame's
:class:`~realtime.types.FramePacket` in order (faces with boxes, landmarks,
track ids, expression codes, intensity, emotions, pose, neutral faces); it
writes the CSV / JSON sidecar / annotated video while you iterate, and
closes them when the iteration ends, breaks, or fails. ``Run.stop()``,
``pause()`` and ``resume()`` may be called from any thread.
"""
from __future__ import annotations

import atexit
import copy
import heapq
import inspect
import json
import logging
import math
import numbers
import os
import re
import threading
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from facecycle.cpus import cap_threads, release_free_memory, usable_cpus
from facecycle.errors import FaceCycleError, UsageError
from facecycle.files import text_name

from . import baseline as baseline_rule
from .annotators import Annotator, default_annotator
from .backend import open_model
from .baseline import NeutralBaseline
from .crops import framing_scale
from .detectors import create_detector
from .detectors.base import LOOK_SIDE
from .heads import HEAD_FILE, ExpressionHead, model_checksums
from .inference import NEUTRAL_PASSES, FaceInference
from .neutral_reference import NeutralReference
from .outputs import RunOutputs, first_clash
from .pipeline import Pipeline
from .pose import POSE_CAMERAS, POSE_SOURCE, face_turn
from .reid import IdentityReID
from .sinks import csv_columns, versions
from .sinks.video_sink import check_video_threads
from .smoothing import TrackSmoother
from .sources import Source, VideoSource, open_source
from .sources.video import rotate_image
from .tracking import Tracker, detect_faces, iou_matrix
from .types import Detections, Face, FramePacket, as_bgr_image

__all__ = ["Analyzer", "Run", "RunStats"]

log = logging.getLogger(__name__)

#: the most faces (summed over frames) a look-ahead's first pass keeps for the second to replay (each about 8 KB:
#: its feature, code and flow); over it the second pass detects and analyses again
REPLAY_MAX_FACES = 20_000

#: seconds :meth:`Analyzer.close` waits for a run or an :meth:`Analyzer.analyze_image` call in another thread to let
#: go of the Analyzer, and the interpreter's exit for a run read in another thread to end
CLOSE_WAIT_S = 10.0

#: every Run of this process not yet collected (weakly: the set keeps none alive), so that the interpreter's exit can
#: end those still open (:func:`_close_runs_at_exit`); a look-ahead's first pass is its outer run's, not listed
_RUNS: "weakref.WeakSet[Run]" = weakref.WeakSet()
#: guards adding to _RUNS against a snapshot of it (a WeakSet iterated while another thread adds raises "Set changed
#: size during iteration"; entries dropped by the garbage collector meanwhile are deferred by the set itself)
_RUNS_LOCK = threading.Lock()


def _close_runs_at_exit() -> None:
    """End every run still open as ``stopped``, its files finished (sidecar, video, locks), when the interpreter
    exits (a script's end with ``it = iter(run)`` kept in a global, a notebook kernel shut down, a daemon thread
    reading a run). Python runs atexit functions after it has joined the non-daemon threads and before it finalizes:
    a run's pipeline threads are daemon threads, and one ended by the finalization while inside ONNX Runtime's run
    aborted the process (SIGABRT, "terminate called without an active exception") with the sidecar left
    "running", the video unreadable and the lock files in place; one idle then had its files closed during module
    teardown, which failed ("import of time halted"). Cheap where every run is closed (nothing to do); never
    raises."""
    with _RUNS_LOCK:
        runs = list(_RUNS)
    for run in runs:
        if run._closed:
            continue
        try:
            run._close_at_exit()
        except Exception as e:  # noqa: BLE001 - the next run is still closed; the exit code stays the script's
            log.warning("closing a run left open at exit failed: %s", e)


def _forget_runs_in_child() -> None:
    """After a fork, in the child: its parent's runs are not its own (their files are the parent's, which a child
    exiting would have finished under it), and a lock another thread of the parent held stays held here. Each
    inherited run is marked (its Analyzer's close() in the child leaves it alone) and its collection finalizer no
    longer runs at the child's exit. (The child has one thread: the old set is read without its lock.)"""
    global _RUNS, _RUNS_LOCK
    for run in list(_RUNS):
        run._forked_away = True
        try:
            run._finalizer.atexit = False
        except AttributeError:  # (a run made bare)
            pass
    _RUNS, _RUNS_LOCK = weakref.WeakSet(), threading.Lock()


atexit.register(_close_runs_at_exit)
if hasattr(os, "register_at_fork"):  # (POSIX)
    os.register_at_fork(after_in_child=_forget_runs_in_child)


class _Frames(Iterator[FramePacket]):
    """A run's iterator: its generator behind a lock, so that a thread that does not iterate it can close it
    (:meth:`Run.close`) without racing the thread that does (a generator is not thread-safe: a ``next()`` during
    another thread's ``close()`` raises "generator already executing"). ``next()`` in the reading thread waits for
    such a close and then ends the loop."""

    def __init__(self, gen: Iterator[FramePacket]) -> None:
        self._gen = gen
        self._lock = threading.RLock()

    def __iter__(self) -> "_Frames":
        return self

    def __next__(self) -> FramePacket:
        with self._lock:
            return next(self._gen)

    def close(self) -> None:
        """End the iteration (the run's own cleanup: threads joined, files finished, the Analyzer free)."""
        with self._lock:
            self._gen.close()  # type: ignore[attr-defined]

    def close_from_other_thread(self, timeout: float = 10.0) -> None:
        """:meth:`close`, from a thread that is not reading: waits up to ``timeout`` for a ``next()`` in progress
        (the run is stopped first: it ends within a frame); a reader that then calls ``next()`` gets the end."""
        if not self._lock.acquire(timeout=timeout):
            log.warning("the run's reading thread did not return a frame within %.0f s; left to end there", timeout)
            return
        try:
            if inspect.getgeneratorstate(self._gen) == inspect.GEN_SUSPENDED:  # type: ignore[arg-type]
                self._gen.close()  # type: ignore[attr-defined]
        finally:
            self._lock.release()


class RunStats:
    """Counters and timings of one run (thread-safe enough for a status bar to read)."""

    LATENCY_WINDOW = 100_000

    def __init__(self) -> None:
        self.frames = 0
        self.faces = 0
        self.cpu_start = time.process_time()
        self.cpu_end: Optional[float] = None
        self.detections = 0
        self.scene_cuts = 0
        self.drops = 0
        self.errors = 0
        self.stage_time: Dict[str, float] = {}
        # bounded: a camera session runs for hours (p50/p95 cover the last LATENCY_WINDOW frames)
        self.latencies: Deque[float] = deque(maxlen=self.LATENCY_WINDOW)
        self.t_start = time.perf_counter()
        self.t_end: Optional[float] = None
        self._recent: List[float] = []

    def add(self, p: FramePacket) -> None:
        self.frames += 1
        self.faces += len(p.faces)
        self.scene_cuts += bool(p.scene_cut)
        now = time.perf_counter()
        for k, v in p.stats.items():
            if k != "t0":
                self.stage_time[k] = self.stage_time.get(k, 0.0) + v
        if "t0" in p.stats:
            self.latencies.append(now - p.stats["t0"])
        self._recent.append(now)
        if len(self._recent) > 60:
            del self._recent[:-60]

    @property
    def elapsed(self) -> float:
        return (self.t_end or time.perf_counter()) - self.t_start

    @property
    def fps(self) -> float:
        """Average frames per second over the run."""
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def recent_fps(self) -> float:
        """Frames per second over the last ~60 frames (for live displays)."""
        r = self._recent
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0

    @property
    def last_latency(self) -> float:
        """Seconds from the last frame's arrival to its result (NaN before the first)."""
        return self.latencies[-1] if self.latencies else float("nan")

    def __repr__(self) -> str:
        try:
            return (f"RunStats(frames={self.frames}, faces={self.faces}, fps={self.fps:.1f}, "
                    f"elapsed_s={self.elapsed:.2f}, drops={self.drops})")
        except Exception:  # noqa: BLE001 - a repr never raises
            return object.__repr__(self)

    def summary(self) -> Dict[str, Any]:
        """The run's statistics as a JSON-ready dict (the sidecar's ``stats``): ``frames``, ``faces``,
        ``detector_runs``, ``scene_cuts``, ``drops``, ``decode_errors``, ``elapsed_s``, ``fps`` (frames over the
        elapsed time), ``cpu_ms_per_frame``, ``latency_ms_p50`` / ``latency_ms_p95`` (arrival to result, over the
        last :data:`LATENCY_WINDOW` frames; None without frames) and ``stage_ms_per_frame`` (ms per frame by stage:
        ``decode``, ``detect``, ``infer``, ``post``, ``annotate``, ``csv``, ``video``). Safe to call while the run
        goes (a status bar)."""
        lat = sorted(self.latencies)

        def q(p):  # None without frames (JSON has no NaN)
            return round(lat[min(len(lat) - 1, int(p * (len(lat) - 1) + 0.5))] * 1000, 2) if lat else None

        return {"frames": self.frames, "faces": self.faces, "detector_runs": self.detections,
                "scene_cuts": self.scene_cuts, "drops": self.drops,
                "decode_errors": self.errors, "elapsed_s": round(self.elapsed, 3), "fps": round(self.fps, 2),
                "cpu_ms_per_frame": round(((self.cpu_end or time.process_time()) - self.cpu_start)
                                          / self.frames * 1000, 3) if self.frames else None,
                "latency_ms_p50": q(0.5), "latency_ms_p95": q(0.95),
                "stage_ms_per_frame": {k: round(v / max(1, self.frames) * 1000, 3)
                                       for k, v in sorted(self.stage_time.items())}}


#: why an Analyzer or a Run cannot be pickled or copied (its ``__reduce_ex__``, which pickle, copy.copy and
#: copy.deepcopy call)
_NO_PICKLE = ("{what} holds open models/files and cannot be pickled or copied; pickle its results (FramePacket, "
              "Face) or make a new Analyzer in each process")


class Analyzer:
    """Face detection, tracking and FaceCycle analysis of videos, streams, cameras and images.

    Args:
        model: exported model directory (``manifest.json`` + ONNX graphs);
            None = ``facecycle.assets.default_model_dir()``.
        backend: inference backend name (``auto``, ``onnxruntime``, ``tensorrt``, ``torch``).
        detector: ``centerface`` (default), ``yunet`` or ``insightface`` (``scrfd`` is an alias).
        detector_model: model for ``yunet`` (.onnx) / ``insightface`` (.onnx, model-pack folder or a
            pack name under ~/.insightface/models).
        detect_every: run the detector every N frames; optical-flow tracking
            in between (a tracking failure triggers a detection at once). For files, image folders and frames in
            memory, also a file played at its own pace (``realtime``), the frames whose index is a multiple of N
            (or the first one after such a frame that was dropped), whatever detections came in between: a run
            that drops frames detects on the frames a full reading detects. Cameras and live streams: every N
            frames processed since the last detection.
        detect_size: longer side the frame is shrunk to for detection.
        adapt_detect_size: where the frame is shrunk for detection and may hide faces (none found, or a small one),
            look at a larger size (twice the detection size, at least 1280 px): every 2 s for the first 3 looks,
            then every 5 s (every 30 s after the first where every face found is large: small ones may stand
            beside it; within 2 s where a face at the detector's limit is lost at a detection); where faces show
            there that ``detect_size`` misses or finds at its limit (under 32 px there: small faces in a large
            frame), detect at a size that shows them at 32 px from then on (a warning says so at each raise; the
            sidecar's ``detect_size``, every raise in its ``raises``). The looks go on after a raise (smaller faces
            may come later) until the size reaches its maximum (1920 px or the frame's own).
            False keeps ``detect_size`` (the CLI: an explicit ``--detect-size``).
        score_threshold: detector confidence threshold.
        mirror_detect: detect on each frame and on its mirror image and average each face's boxes and landmarks
            (:attr:`realtime.detectors.Detector.mirror_average`): a video and its mirror read the same. Off by
            default: one more detection per detection (about 20 % slower).
        max_faces: analyse at most this many faces per frame: the largest, keeping those already analysed unless
            another is clearly larger (1.25 times the area), so that faces of about one size do not take turns.
        neutralize: compute neutral faces (slower: one more graph call per frame,
            two more per pass after the first).
        identity: compute identity codes (needs an identity-stage model).
        reid: re-identify a face after an occlusion by its identity code
            (implies ``identity``).
        rotate: turn every frame by this many degrees clockwise (0, 90, 180 or 270) before anything reads it, after
            the file's own rotation tag: a video without its tag, a camera mounted upside down, a person lying
            down. Boxes, landmarks, pose and the annotated video are in the turned frame. A run whose faces are
            turned by a right angle says so once, with the value that reads them upright (:data:`TURN_HINT_FACES`).
        pose_camera: where the head pose's camera has its principal point (:data:`realtime.pose.POSE_CAMERAS`):
            ``"frame"`` (default) at the frame's centre, one camera filmed the frame; ``"face"`` at each face's own
            box centre, each face its own camera: screen recordings, video-call galleries and picture-in-picture
            insets, whose place on the screen otherwise reads as 15-35° of yaw and pitch (the sidecar's
            ``pose_camera``). A face off the centre of a real camera's frame reads as if it were at the centre.
        pose_focal: the head pose's camera's focal length, in pixels of the frame as read (after ``rotate`` and
            the display shape: the packet's image); None (default) = the frame's longer side. Given the real
            camera's (a calibration's fx), a face's pose no longer depends on the frame's size; a crop's focal
            length scales with the crop (f × crop's side in pixels of the output over its side in the original).
            A finite number > 0 (the sidecar's ``pose_focal``).
        smooth: One Euro smoothing of pose, intensity, emotions and codes per track.
        threads: ONNX Runtime intra-op threads per model session (1 keeps the stages
            from fighting over a small CPU). The detector's session always runs on one thread: its outputs
            depend on the thread count (boxes moved by up to 0.04 px at 2 threads, changing the CSV), and the
            model's do not, so that threads change speed, never numbers.
        infer_workers: threads running the model in parallel on successive
            frames (results stay in order); default: 2 with ONNX Runtime on a CPU of
            ≥ 2 cores (its sessions are thread-safe), else 1.
        precision: engine precision (``fp32`` default; ``int8`` = ONNX Runtime static
            quantization of ``analyze``, calibrated on ``calibration``, a video of faces).
        queue_size: capacity of the queues between stages.
        crop_scale: crop side / face box side (see ``realtime.crops``); None = the
            framing the model was trained on (from its manifest), divided by the detector's
            ``box_scale`` (its boxes' size against CenterFace's, on which that framing was measured).
        neutral_passes: with ``neutralize``, neutralize this many times, each pass on the
            previous pass's neutral face (:class:`realtime.inference.FaceInference`); None = the
            pipeline's default, :data:`realtime.inference.NEUTRAL_PASSES`.
        neutral_reference: in runs over videos and cameras, give a strongly expressive face the neutral face of
            its track's least expressive earlier frame in a similar head pose, aligned to it
            (:class:`realtime.neutral_reference.NeutralReference`; ``Face.neutral_from`` tells which frame);
            False = every face keeps its own frame's neutral face; a dict = on, with these
            :class:`~realtime.neutral_reference.NeutralReference` settings (e.g. ``{"hysteresis": 0.0}``). No
            effect without neutral faces or on :meth:`analyze_image`.
        neutral_lookahead: with neutral faces and the track reference, over a video file read at full speed: read
            the file twice. The first pass (no outputs) banks each track's neutral faces over the whole clip, the
            second starts from those banks, so a face can also take the neutral face of a later, less expressive
            frame (:meth:`NeutralReference.seed`; about 1.3 times the time of a run with neutral faces read once,
            the second reading replaying the first's analyses; emotions, intensity and every CSV column are
            unchanged; MODEL_CARD.md experiments 38 and 41). None (the default): on for
            such files, off for cameras, streams, image folders and ``realtime`` playback, where there is no
            second reading; True: the same, with a warning where it cannot be; False: causal everywhere (the
            desktop app, which shows frames as they come). :meth:`process_video` may override it per run.
        baseline_lookahead: over a video file read at full speed, start each track's person baseline (the ``rel_*``
            fields, :mod:`realtime.baseline`) from its first 30 s (900 frames at 30 fps) as a first reading of the
            file saw them: no warm-up, and a face expressive from its first frame is measured against the person's
            later rest instead of against itself. It reads the file twice (one reading serves this and the neutral
            look-ahead); only the ``rel_*`` fields and ``baseline_ready`` change. False (the default): the
            running, causal baseline everywhere. :meth:`process_video` may override it per run.

    One Analyzer runs one video at a time (its backend and detector are reused across runs): a run
    started while another is in progress, in any thread, raises :class:`~facecycle.errors.UsageError`
    at its first frame, and so does :meth:`analyze_image`. Use one Analyzer per concurrent video.
    """

    def __init__(self, model: Optional[Union[str, Path]] = None, backend: str = "auto",
                 detector: str = "centerface", detector_model: Optional[str] = None, detect_every: int = 5,
                 detect_size: Optional[int] = 320, score_threshold: float = 0.5, max_faces: Optional[int] = None,
                 neutralize: bool = False, identity: bool = False, reid: bool = False, smooth: bool = True,
                 threads: int = 1, queue_size: int = 4, crop_scale: Optional[float] = None,
                 infer_workers: Optional[int] = None, precision: Optional[str] = None,
                 calibration: Optional[str] = None, neutral_passes: Optional[int] = None,
                 neutral_reference: Union[bool, Dict[str, Any]] = True,
                 neutral_lookahead: Optional[bool] = None, baseline_lookahead: bool = False,
                 adapt_detect_size: bool = True, mirror_detect: bool = False, rotate: int = 0,
                 pose_camera: str = "frame", pose_focal: Optional[float] = None) -> None:
        # the one place these are checked (the CLI passes its options straight through; neutral_passes is checked
        # by FaceInference, which every entry point builds)
        if detect_every < 1:
            raise UsageError("detect_every (--detect-every) must be >= 1")
        if isinstance(rotate, bool) or rotate not in (0, 90, 180, 270):
            raise UsageError(f"rotate (--rotate) must be 0, 90, 180 or 270 (degrees clockwise), not {rotate!r}")
        if max_faces is not None and max_faces < 1:
            raise UsageError("max_faces (--max-faces) must be >= 1")
        if pose_camera not in POSE_CAMERAS:
            raise UsageError(f"pose_camera (--pose-camera) must be one of {', '.join(POSE_CAMERAS)}, "
                             f"not {pose_camera!r}")
        if pose_focal is not None and (isinstance(pose_focal, bool) or not isinstance(pose_focal, numbers.Real)
                                       or not (math.isfinite(pose_focal) and pose_focal > 0)):
            raise UsageError(f"pose_focal (--pose-focal) must be a finite number of pixels > 0 (the camera's focal "
                             f"length), not {pose_focal!r}")
        if threads < 1:
            raise UsageError("threads (--threads) must be >= 1")
        if infer_workers is not None and infer_workers < 1:
            raise UsageError("infer_workers (--infer-workers) must be >= 1")
        threads = cap_threads(threads, "threads (--threads)")
        if infer_workers is not None:
            infer_workers = cap_threads(infer_workers, "infer_workers (--infer-workers)")
        if not 0.0 < score_threshold < 1.0:
            raise UsageError("score_threshold (--score-threshold) must be in (0, 1)")
        if isinstance(neutral_reference, dict):
            try:
                NeutralReference(**neutral_reference)
            except (TypeError, ValueError) as e:
                raise UsageError(f"neutral_reference settings: {e}") from None
        # load (and run once) every graph while opening: a corrupt or truncated graph fails here, with one
        # clear ModelError, before any output file is created; under backend "auto" a GPU backend that fails
        # to build or run falls back to the next (engines.open_backend); it also takes the first-call cost
        # off frame 1
        # (the track's neutral reference checks the person with the identity graph where the model has one)
        graphs = ["analyze"] + (["neutralize"] if neutralize else []) + (
            ["identity"] if identity or reid or (neutralize and neutral_reference is not False) else [])
        self.backend = open_model(model, backend, threads=threads, precision=precision, calibration=calibration,
                                  warmup=graphs)
        if crop_scale is not None and not (math.isfinite(crop_scale) and crop_scale > 0):
            self.backend.close()
            raise UsageError(f"crop_scale must be > 0 (the crop's side over the face box's), not {crop_scale}")
        try:
            self.head = ExpressionHead.find(self.backend.model_dir)
            self.inference = FaceInference(self.backend, self.head, neutralize=neutralize,
                                           identity=identity or reid, crop_scale=crop_scale,
                                           neutral_passes=NEUTRAL_PASSES if neutral_passes is None
                                           else neutral_passes)
            self.detector = create_detector(detector, detector_model, max_side=detect_size,
                                            score_threshold=score_threshold, threads=1)  # max_faces: below
            self.detector.mirror_average = bool(mirror_detect)
            self.inference.pose_camera = pose_camera
            self.inference.pose_focal = None if pose_focal is None else float(pose_focal)
            if crop_scale is None:  # the model's framing, measured on CenterFace's boxes: the same for every detector
                self.inference.crop_scale = framing_scale(self.inference.crop_scale, self.detector)
        except BaseException:
            self.backend.close()
            raise
        self.detect_every = int(detect_every)
        self.rotate = int(rotate)
        self.adapt_detect_size = bool(adapt_detect_size)
        # a photo's look at a larger size (Detector.detect_still) follows the same choice: an explicit
        # --detect-size is kept as given there too (a review's finding: photos took the look regardless)
        self.detector.look_larger = self.adapt_detect_size
        self.detector.enlarge_small = True  # a small still without a face found is looked at enlarged (detect_still)
        #: the model-without-a-head warning was given (once per analyzer, when its first run starts)
        self.warned_no_head = False
        self.max_faces = max_faces
        self.reid = reid
        self.smooth = smooth
        #: the track reference's NeutralReference settings ({} = its defaults), None when it is off
        self.neutral_reference_settings: Optional[Dict[str, Any]] = (
            dict(neutral_reference) if isinstance(neutral_reference, dict) else {} if neutral_reference else None)
        #: read video files once ahead for the track reference (process_video's default; None = where possible)
        self.neutral_lookahead = None if neutral_lookahead is None else bool(neutral_lookahead)
        #: start each track's person baseline from a first reading of a video file (process_video's default)
        self.baseline_lookahead = bool(baseline_lookahead)
        self.queue_size = queue_size
        if infer_workers:
            self.infer_workers = int(infer_workers)
        else:  # parallel calls only where the backend is known to be thread-safe (ORT on the CPU)
            cpu_ort = self.backend.name == "onnxruntime" and str(self.backend.device).startswith("cpu")
            self.infer_workers = min(2, usable_cpus()) if cpu_ort else 1  # the CPUs it may use (taskset)
        self._lock = threading.Lock()  # guards _active only; never held while frames are processed
        self._active: Optional[object] = None  # the Run (or analyze_image call) using the detector now
        # notified when _active is let go: close() waits on it for a run or an analyze_image call in another thread
        # (closed under a call in flight, the model's session was made again by that call and outlived the close)
        self._freed = threading.Condition(self._lock)
        #: the runs this Analyzer made, weakly: close() finishes those never iterated (their files stayed open and
        #: locked, the sidecar "running", until each was collected)
        self._runs: "weakref.WeakSet[Run]" = weakref.WeakSet()
        #: the frame sizes (width, height, detection size) a live run warmed the engines for (Run._warm_up)
        self._warm_sizes: set = set()
        self._closed = False

    _BUSY = ("this Analyzer is already running a video: one run at a time per Analyzer (finish or close that run "
             "first, or use a second Analyzer)")

    def _claim(self, user: object) -> None:
        """Mark the Analyzer busy for ``user``; a second user fails at once with a clear UsageError."""
        with self._lock:
            self._check_free()
            self._active = user

    def _check_free(self) -> None:
        """UsageError when this Analyzer is closed or in use (call with ``_lock`` held)."""
        if self._closed:
            raise UsageError("this Analyzer is closed (its model and detector are released): make a new one")
        if self._active is not None:
            raise UsageError(self._BUSY if isinstance(self._active, Run) else
                             "this Analyzer is analysing another image: one call at a time per Analyzer (use one "
                             "Analyzer per thread)")

    def _release(self, user: object) -> None:
        with self._lock:
            if self._active is user:
                self._active = None
                self._freed.notify_all()

    def _wait_released(self, user: object, what: str) -> None:
        """Wait up to :data:`CLOSE_WAIT_S` for ``user`` (a run, an :meth:`analyze_image` call) to let go of the
        Analyzer: :meth:`close` must not release the model under it (a call in flight made its session again)."""
        with self._freed:
            if self._freed.wait_for(lambda: self._active is not user, timeout=CLOSE_WAIT_S):
                return
        log.warning("%s in another thread did not end within %.0f s of close(); closing the model anyway", what,
                    CLOSE_WAIT_S)

    @property
    def code_dim(self) -> int:
        """The length of each face's expression code (``Face.code``, shape (code_dim,); the CSV's ``exp_*``
        columns), from the model's manifest (256 for the shipped model)."""
        return self.inference.code_dim

    def __repr__(self) -> str:
        try:
            be = self.backend
            config = (be.manifest.get("config") or {}).get("name")
            flags = [f"neutralize={self.inference.neutralize}"] + (["closed"] if self._closed else []) + (
                ["running a video"] if isinstance(self._active, Run) else [])
            return (f"Analyzer(model={be.model_dir.name!r}{f' ({config})' if config else ''}, "
                    f"backend={be.name!r} on {be.device}, detector={self.detector.name!r}, {', '.join(flags)})")
        except Exception:  # noqa: BLE001 - a repr never raises (a half-made or closed analyzer)
            return object.__repr__(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(_NO_PICKLE.format(what="an Analyzer"))

    # --------------------------------------------------------------- runs
    def process_video(self, source: Union[str, Path, int, Source, Iterable[Any]], *, realtime: bool = False,
                      csv: Optional[Union[str, Path]] = None, video: Optional[Union[str, Path]] = None,
                      annotate: Union[bool, Annotator, None] = None, overwrite: bool = False,
                      max_frames: Optional[int] = None, audio: bool = True, video_preset: str = "superfast",
                      sidecar: Optional[Union[str, Path]] = None,
                      neutral_lookahead: Optional[bool] = None,
                      baseline_lookahead: Optional[bool] = None, images: str = "auto",
                      video_threads: int = 0, url_timeout: Optional[float] = None,
                      fps: Optional[float] = None) -> "Run":
        """Analyse every frame of ``source`` (path, URL, camera index, folder, :class:`Source`, or frames held in
        memory: an iterable of BGR images or of ``(image, timestamp)`` pairs, :class:`~realtime.sources.FrameSource`).

        Args:
            realtime: play a file at its own pace, dropping frames when behind; for frames held in memory, take
                them as live (a generator fed by a camera): the oldest waiting frame is dropped when behind.
            csv: write the per-frame CSV here (and a JSON sidecar next to it).
            video: write the annotated video here.
            annotate: True/None = the default overlay when ``video`` is set; an
                :class:`Annotator` to use; False = none (``packet.annotated`` stays None).
            overwrite: replace existing outputs.
            max_frames: stop after this many frames.
            audio: copy the input's audio into ``video``.
            sidecar: JSON sidecar path (default: ``csv`` with ``.json``).
            neutral_lookahead: read a video file once ahead for the track reference (see the class's
                ``neutral_lookahead``); None = the Analyzer's setting.
            baseline_lookahead: start each track's person baseline from a first reading of a video file (see the
                class's ``baseline_lookahead``); None = the Analyzer's setting.
            images: a folder's images are ``sequence`` (a video's frames), ``stills`` (separate pictures, each
                analysed on its own) or ``auto`` (:class:`~realtime.sources.ImageFolderSource`).
            video_threads: the thread count of the video's encoder (libx264 and its colour conversion); 0
                (default) = FFmpeg's choice, about one per CPU this process may run on (its affinity mask:
                ``taskset``, a cgroup CPU set). A process held to a CPU reservation FFmpeg does not see (a
                ``facecycle batch`` worker on Ray) gives the CPUs it reserved. Recorded in the sidecar
                (``video_threads``).
            url_timeout: seconds a URL's read waits for data before it gives up (a served file's run then fails, a
                live stream ends; an HTTP(S) open waits up to twice this: the server's answer, then FFmpeg's); None:
                :data:`realtime.sources.video.URL_TIMEOUT_S` (10 s). Ignored for a :class:`Source` given open.
            fps: the frame rate of an image folder read as a sequence, or of frames held in memory given without
                timestamps (a frame's ``timestamp`` is its index / ``fps``; the person baseline, smoothing and
                tracking go by it); None: 30. A camera is asked for this rate; a video file or stream keeps its own
                clock. Ignored for a :class:`Source` given open.

        Raises :class:`~facecycle.errors.UsageError` at once, before any output is made, while another run of this
        Analyzer is going (the run claims the Analyzer when it is iterated), after :meth:`close`, for ``max_frames``
        under 1, ``video_threads`` not a whole number >= 0, and where two outputs (or an output and the input) are
        one file.
        """
        with self._lock:
            self._check_free()
        if max_frames is not None and int(max_frames) < 1:
            raise UsageError(f"max_frames must be >= 1 (got {max_frames}); None reads every frame")
        check_video_threads(video_threads)
        if url_timeout is not None and not (isinstance(url_timeout, (int, float)) and not isinstance(url_timeout, bool)
                                            and math.isfinite(url_timeout) and url_timeout > 0):
            raise UsageError(f"url_timeout must be a number of seconds > 0 (got {url_timeout!r}); None: 10 s")
        if images not in ("auto", "sequence", "stills"):
            raise UsageError(f"images must be auto, sequence or stills, not {images!r}")
        if fps is not None:  # (any real number: numpy's, a Fraction such as PyAV's average_rate)
            if not (isinstance(fps, numbers.Real) and not isinstance(fps, bool) and math.isfinite(float(fps))
                    and 0 < float(fps) <= 10000):
                raise UsageError(f"fps must be a frame rate > 0 and at most 10000 (got {fps!r}); None: 30")
            fps = float(fps)
        _check_distinct(source, csv, video, sidecar)
        return Run(self, source, realtime=realtime, csv=csv, video=video, annotate=annotate, overwrite=overwrite,
                   max_frames=max_frames, audio=audio, video_preset=video_preset, sidecar=sidecar, images=images,
                   video_threads=video_threads, url_timeout=url_timeout, fps=fps,
                   neutral_lookahead=self.neutral_lookahead if neutral_lookahead is None else neutral_lookahead,
                   baseline_lookahead=self.baseline_lookahead if baseline_lookahead is None else baseline_lookahead)

    def analyze_image(self, image: Union[np.ndarray, str, Path], timestamp: float = 0.0,
                      index: int = 0) -> FramePacket:
        """Analyse one image synchronously (detection always runs; no tracking history).

        ``image``: a BGR uint8 array (H, W, 3), grey (H, W) or BGRA (H, W, 4), or an image file's path
        (:func:`realtime.types.as_bgr_image`); anything else raises :class:`~realtime.types.ImageTypeError` /
        :class:`~realtime.types.ImageValueError` (a TypeError / ValueError that is also an InputError, as a run over
        such frames raises) with the reason (a PIL image: the line that converts it). With
        :attr:`rotate`, the packet's image is the turned picture and the faces' boxes and landmarks are in it.
        """
        from fractions import Fraction

        img = as_bgr_image(image)
        if self.rotate:
            img = turn_clockwise(img, self.rotate)  # (a new array)
        elif isinstance(image, np.ndarray) and np.shares_memory(img, image):
            img = img.copy()  # the packet keeps its own pixels when the caller refills their array
        p = FramePacket(index=index, pts=None, time_base=Fraction(1, 1000), timestamp=timestamp, image=img)
        token = object()
        self._claim(token)  # the detector is not shared with a run in progress
        try:
            p.faces = detect_faces(self.detector, Tracker(), p.image, timestamp, still=True,
                                   keep=(lambda d: d.largest(self.max_faces)) if self.max_faces else None)
            return self.inference(self.inference.frame_as_still(p))
        finally:
            self._release(token)

    def _model_checksums(self) -> Dict[str, Optional[str]]:
        """sha256 of the model folder's ``manifest.json`` (it lists every graph's sha256) and of the expression head
        file this analyzer loaded (None without one): the batch fingerprint's ``model`` (``settings_fingerprint``),
        with the same helper. Hashed once per analyzer."""
        sums = getattr(self, "_checksums", None)
        if sums is None:
            sums = self._checksums = model_checksums(self.backend.model_dir)
            if self.head is None:  # a head file this analyzer did not load (none was found) gave no number
                sums["head_sha256"] = None
        return sums

    def describe(self) -> Dict[str, Any]:
        """What produced the numbers (for the JSON sidecar)."""
        man = self.backend.manifest
        return {"model": {"dir": str(self.backend.model_dir), "config": man.get("config", {}).get("name"),
                          "source": man.get("source"), "image_size": self.inference.size,
                          "code_dim": self.code_dim, "feature_dim": self.inference.feature_dim,
                          "expression_head": (_typed_meta(self.head.meta) if self.head is not None else None),
                          **self._model_checksums()},
                "backend": self.backend.describe(), "detector": self.detector.describe(),
                "detect_every": self.detect_every, "adapt_detect_size": self.adapt_detect_size,
                # frames turned clockwise before reading (the key is absent when 0, as before it existed)
                **({"rotate": self.rotate} if self.rotate else {}),
                "max_faces": self.max_faces, "pose_source": POSE_SOURCE,
                # where the pose's camera has its principal point: the frame's centre or each face's own
                "pose_camera": self.inference.pose_camera,
                # the pose's camera's focal length in pixels (null: the frame's longer side)
                "pose_focal": self.inference.pose_focal,
                "smoothing": "one-euro" if self.smooth else None,
                "smoothing_params": TrackSmoother().describe(SMOOTHED) if self.smooth else None, "reid": self.reid,
                "neutralize": self.inference.neutralize,
                "neutral_passes": self.inference.neutral_passes if self.inference.neutralize else None,
                "neutral_reference": (self.neutral_reference_settings is not None) if self.inference.neutralize
                else None,
                "neutral_lookahead": ("auto" if self.neutral_lookahead is None else self.neutral_lookahead)
                if self.inference.neutralize else None,
                "baseline_lookahead": self.baseline_lookahead,
                "crop_scale": self.inference.crop_scale, "crop_level_deg": list(self.inference.level),
                # a crop darker than [0] is read brightened to [1] (null: never)
                "dark_lift": list(self.inference.dark_lift) if self.inference.dark_lift else None,
                # how the rows are read from the file and over time (the batch fingerprint's, the same dict)
                "reading_rule": reading_rule()}

    def close(self) -> None:
        """Release the model and the detector (idempotent). A run still open is closed first (its threads joined,
        its files finished), and so is every run this Analyzer made that was never iterated: its files are finished
        ``stopped`` and let go (a second run may write them), and iterating it gives no frames. An
        :meth:`analyze_image` call in progress in another thread is waited for (up to :data:`CLOSE_WAIT_S`, as a run
        read there is), so that no model session outlives the close. The Analyzer cannot be used afterwards: a call
        raises :class:`~facecycle.errors.UsageError`."""
        with self._lock:
            active, self._closed = self._active, True
            made = [r for r in self._runs if r is not active and not r._closed and not r._forked_away]
        try:
            for run in made:  # made, never iterated (one that starts now fails its claim: the Analyzer is closed)
                try:
                    run.close()
                except Exception as e:  # noqa: BLE001 - the other runs and the model are still closed
                    log.warning("closing a run of this Analyzer failed: %s", e)
            if isinstance(active, Run):
                active.close()  # (a file that could not be finished raises here, after the model is closed below)
                self._wait_released(active, "a run")  # a run iterated in another thread ends there, after stop()
            elif active is not None:
                self._wait_released(active, "an analyze_image() call")
        finally:
            self.detector.close()
            self.backend.close()
            release_free_memory()

    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        active = self._active
        if isinstance(active, Run) and _is_interrupt(exc_type):  # Ctrl-C in a loop over its run: an interrupt
            active.stop()
        self.close()


#: bytes of frames the queues between a run's stages may hold in all: at 8K (100 MB a frame) each holds one
QUEUE_BYTES = 512 << 20


def queue_size_for(asked: int, width: Optional[int], height: Optional[int], queues: int = 3) -> int:
    """The capacity of each of ``queues`` queues between stages for frames of ``width`` x ``height`` (RGB): the one
    asked, lowered so that full queues hold at most :data:`QUEUE_BYTES` (at least 1). At 8K, four frames a queue
    (1.2 GB of frames queued, beside the encoder's own) took a run with an annotated video to 4.9 GB; at 4K and
    below nothing changes."""
    if not width or not height:
        return asked
    fit = QUEUE_BYTES // max(1, int(width) * int(height) * 3 * max(1, queues))
    return max(1, min(int(asked), int(fit)))


#: a run looks at how far its first this many faces are turned from upright (their landmarks), and says once where
#: 80 % of them are turned by one right angle (upside down, on their side): the model reads them wrongly
TURN_HINT_FACES = 30


def turn_clockwise(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` (H, W, C) turned by ``degrees`` (a multiple of 90) clockwise: the ``rotate`` option."""
    return rotate_image(image, -degrees)


#: seconds between a run's first looks at a larger size for small faces (adapt_detect_size), how many, and
#: seconds between the looks after them (one detection at 1280 px: about 60 ms here, once per 5 s); where every
#: face found is large (a small face may stand beside it), seconds between looks after the first
LOOK_FIRST_S, LOOKS_FIRST, LOOK_AGAIN_S, LOOK_BESIDE_S = 2.0, 3, 5.0, 30.0
#: the largest detection size a raise gives (never beyond the frame's own longer side), and the side (px at the
#: detection size) a raise makes of the smallest face a look finds: a face under it at the current size is at the
#: detector's limit, found on some frames only (a presenter's inset of 16 px at 320, score 0.53, lost 11 % of its
#: rows in runs of 15 frames), and raises the size as a face missed there does
DETECT_SIDE_MAX, FACE_PX_AT_SIZE = 1920, 32
#: a look detects at twice the current size (at least LOOK_SIDE, at most the frame's side and DETECT_SIDE_MAX); where
#: that is under LOOK_GAIN times the current size the size has reached its maximum and the run stops looking. A raise
#: after the first grows the size by at least RAISE_AGAIN_GAIN (a face a little smaller at a later look neither
#: raises nor warns at every look)
LOOK_GAIN, RAISE_AGAIN_GAIN = 1.25, 1.25


def reading_rule() -> Dict[str, Any]:
    """How the rows are read from the file and over time: untagged HD read as BT.709 as players show it, a lone
    out-of-line pts mended between its neighbours, a smoothing step after a gap counted in typical steps (the median
    of the filter's latest ``smoothing_gap_steps``), every frame detected while a face is lost, the scheduled
    detections on the frame index's grid (``detect_schedule``: ``index % detect_every == 0`` for files, folders and
    frames in memory, a detection the tracker asks for in between not moving it; :meth:`Run._scheduled`). One
    definition for the sidecar's ``reading_rule`` (so the Parquet ``facecycle_settings``) and the batch fingerprint's
    (:func:`realtime.batch.plan.settings_fingerprint`)."""
    from . import smoothing  # (read when called: the module's value as it is then)

    return {"untagged_hd": "bt709", "lone_pts": "mended", "smoothing_gap_steps": smoothing.TYPICAL_STEPS,
            "detect_while_lost": True, "detect_schedule": "index_grid"}


#: the quantities a run smooths per track (Run._post), in the sidecar's ``smoothing_params``
SMOOTHED = ("pose", "code", "intensity", "emotions")

#: the most faces (tracks) the sidecar's ``dark_faces.tracks`` lists one by one, those with the most rows read
#: brightened (``tracks_total`` counts them all: a folder of 30,000 dark photos has a track per face)
DARK_TRACKS_LISTED = 100
#: the most pictures read whole (no face found in a small picture) the sidecar's ``input.read_whole_first`` names,
#: as CSV ``file`` names (frame indices where the input names no files); ``input.read_whole`` counts them all
READ_WHOLE_LISTED = 1000
#: the most face ids the once-per-run "too dark" warning names ("and N more" after them), and the most faces
#: brightened later in the run that are each said at INFO level
DARK_TRACKS_SAID = 5

_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)")
_CHECKSUM = re.compile(r"(^|_)(sha\d*|md5|hash)($|_)")  # a hex digest of digits only is still a digest


def _typed_meta(meta: Dict[str, Any]) -> Dict[str, Any]:
    """An expression head's metadata (safetensors stores only strings) with JSON lists and objects decoded and
    numbers as numbers, for the sidecar: ``classes`` a list, ``config`` and ``class_bias`` objects, ``image_size``
    64. Other text, and a checksum's value (``feature_sha``, ``*_sha256``, ``hash``), stays text."""
    out: Dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, str) and not _CHECKSUM.search(k.lower()):
            t = v.strip()
            try:
                if t[:1] in ("[", "{"):
                    v = json.loads(t)
                elif _INT.fullmatch(t):
                    v = int(t)
                elif _FLOAT.fullmatch(t):
                    v = float(t)
            except ValueError:  # json.JSONDecodeError included: not JSON after all, kept as text
                pass
        out[k] = v
    return out


def _name_faces(ids: List[int], most: int = DARK_TRACKS_SAID) -> str:
    """Faces named by their ``face_id`` for a log line, as the baseline's warnings and the app name them: "face #3",
    "faces #1, #2 and #4", "faces #1, #2, #3, #4, #5 and 7 more"."""
    if len(ids) == 1:
        return f"face #{ids[0]}"
    shown = [f"#{i}" for i in ids[:most]]
    if len(ids) > most:
        return f"faces {', '.join(shown)} and {len(ids) - most} more"
    return f"faces {', '.join(shown[:-1])} and {shown[-1]}"


def _weak_describe(run: "Run") -> Callable[[], dict]:
    """``run.describe`` without holding the run: the outputs (which its finalizer closes) must not keep it alive. A
    run collected before its outputs close is described as it was when they opened."""
    ref = weakref.WeakMethod(run.describe)
    opened: Dict[str, Any] = {}

    def describe() -> dict:
        m = ref()
        if m is not None:
            d = m()
            opened.clear()
            opened.update(d)
            return d
        return dict(opened)
    return describe


def _is_interrupt(exc_type: Optional[type]) -> bool:
    """``exc_type`` (a ``with`` block's exception) is Ctrl-C's, or a signal's ``SystemExit`` (as :func:`_ending`
    reads them)."""
    return exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))


def _ending(e: BaseException) -> Tuple[str, Optional[BaseException]]:
    """How a run that ``e`` ends is recorded: the sidecar's ``status`` and the error it names. Ctrl-C
    (``KeyboardInterrupt``) and a signal's ``SystemExit`` (the CLI's SIGTERM, SIGHUP and SIGXCPU handlers raise it)
    are ``interrupted``, with no error (``str(KeyboardInterrupt())`` is ""); anything else is ``failed``, naming
    it. The one rule of every place a run ends on an exception: while its outputs open, during the look-ahead's
    first reading, and in its main loop."""
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        return "interrupted", None
    return "failed", e if isinstance(e, Exception) else None


def _close_dropped_run(outputs: RunOutputs, src: Source) -> None:
    """The finalizer of a :class:`Run` collected without being iterated or closed (never raises)."""
    try:
        src.close()
    except Exception:  # noqa: BLE001 - a finalizer must not raise
        pass
    try:
        outputs.close("stopped")
    except Exception as e:  # noqa: BLE001
        log.warning("closing a dropped run's outputs failed: %s", e)


def _local_file(src: Source) -> Optional[Path]:
    """The source's file on this machine (None for a camera, a stream, a pipe or frames in memory)."""
    path = getattr(src, "path", None)
    if isinstance(path, (str, Path)) and "://" not in str(path) and Path(path).is_file():
        return Path(path)
    return None


def _check_distinct(source: Any, csv: Optional[Union[str, Path]], video: Optional[Union[str, Path]],
                    sidecar: Optional[Union[str, Path]]) -> None:
    """UsageError where two outputs of a run, or an output and its input file, are one file (the CSV at
    ``x.json`` was overwritten by its own sidecar; ``video=`` the input replaced the input)."""
    outs = {"csv": csv, "video": video,
            "sidecar": sidecar if sidecar is not None else Path(csv).with_suffix(".json") if csv is not None else None}
    src = _local_file(source) if isinstance(source, Source) else source  # an open VideoSource's file
    is_file = isinstance(src, (str, Path)) and "://" not in str(src) and Path(src).is_file()
    msg = first_clash(outs, {"the input": src if is_file else None})
    if msg is not None:
        raise UsageError(f"{msg}; give each output its own file")


class Run:
    """One pass over a source: iterable of :class:`FramePacket`, context manager, stoppable from any thread."""

    #: how the scheduled detections (every ``detect_every``) are placed (:meth:`_scheduled`): True, on the frame
    #: index's grid (``index % detect_every == 0``: files, image folders, frames held in memory, a file played at its
    #: own pace); False, every ``detect_every`` frames processed (cameras, live streams, live frames). Set per run in
    #: ``__init__`` (class defaults for a run made bare)
    _by_index = False
    #: with ``_by_index``: the grid cell (``index // detect_every``) of the last frame detected or tracked (None
    #: before the first): a frame in another cell is a scheduled detection, also where the grid's own frame was
    #: dropped (a file played at its pace) or is missing
    _grid_cell: Optional[int] = None
    #: ended by the interpreter's exit (:func:`_close_runs_at_exit`), not by a stop() of the caller's: recorded
    #: ``stopped`` (the consumer stopped reading), not ``interrupted``
    _exit_stop = False
    #: a run of the parent process, seen in a forked child (:func:`_forget_runs_in_child`): not the child's to close
    _forked_away = False

    def __init__(self, analyzer: Analyzer, source, *, realtime: bool, csv, video, annotate, overwrite: bool,
                 max_frames: Optional[int], audio: bool, video_preset: str, sidecar,
                 neutral_lookahead: Optional[bool] = None, baseline_lookahead: bool = False,
                 images: str = "auto", video_threads: int = 0, url_timeout: Optional[float] = None,
                 fps: Optional[float] = None) -> None:
        self.analyzer = analyzer
        self.stats = RunStats()
        self.src = (source if isinstance(source, Source)
                    else open_source(source, realtime=realtime, images=images, url_timeout=url_timeout, fps=fps))
        self.csv_path = Path(csv) if csv else None
        self.video_path = Path(video) if video else None
        self.sidecar_path = Path(sidecar) if sidecar else (self.csv_path.with_suffix(".json") if csv else None)
        self.max_frames = max_frames
        self.interrupted = False
        self.error: Optional[BaseException] = None
        #: where the run is: ``"not started"`` (not iterated yet), ``"running"``, then how it ended, as its sidecar
        #: records it: ``"complete"``, ``"stopped"``, ``"interrupted"`` or ``"failed"``
        self.status = "not started"
        #: extra keys for the JSON sidecar (the app adds ``"app"``)
        self.info: dict = {}
        self._pipeline: Optional[Pipeline] = None
        self._iterated = False
        self._closed = False
        #: the iteration (__iter__), closed by close(); a weak reference, so that a consumer's `break` still ends
        #: it at once (the generator refers to this run: a strong reference would keep both alive)
        self._gen: Optional["weakref.ref[Iterator[FramePacket]]"] = None
        self._iter_thread: Optional[int] = None  # the thread iterating it (close() from another one stops it)
        self._frames_it: Optional["weakref.ref[_Frames]"] = None  # the iterator handed out (its lock orders next()
        # and a close() from another thread)
        # per-run state
        self.tracker = Tracker()
        self.smoother = TrackSmoother() if analyzer.smooth else None
        # the module's cap as it is when the run starts (scripts/eval_person_baseline.py --no-neutral-cap unsets it)
        self.baseline = NeutralBaseline(max_neutral=baseline_rule.MAX_NEUTRAL)
        #: the track's own neutral face (acts only on faces that have a neutral face: the app switches it live)
        settings = analyzer.neutral_reference_settings
        self.neutral_ref = (NeutralReference(**settings, identify=analyzer.inference.identify
                                             if analyzer.inference.can_identify else None)
                            if settings is not None else None)
        self.reid = IdentityReID() if analyzer.reid else None
        self._since_detect = 10 ** 9  # frames processed since the last detection (the schedule where not _by_index)
        # a file (also one played at its own pace: `live --input`, `process --realtime`), a folder, frames in memory:
        # each frame's index is its place in the source, so the detections fall on the frames `process` detects,
        # also after a dropped frame (counted in frames processed, a drop moved every later detection: up to 15 px
        # of face_x, as much as --detect-every 5 -> 1). A camera, a live stream or live frames keep counting the
        # frames processed: their index counts frames that came, and where the run is behind (dropping frames) a
        # detection every detect_every of those would detect more often per frame processed, and drop more
        self._by_index = (not self.src.live) or bool(getattr(self.src, "realtime", False))
        self._kept_faces: set = set()  # the track ids analysed on the last frame (max_faces)
        #: the detection size the run starts with (put back at its end); whether the run still looks at a larger
        #: size for faces it misses (adapt_detect_size), and how many looks it took
        self._detect_side = analyzer.detector.max_side
        self._looking = bool(analyzer.adapt_detect_size and self._detect_side)
        #: how far the first faces are turned from upright (:meth:`_note_turns`); None once decided
        self._turns: Optional[List[float]] = []
        self._looks_done = 0
        self._size_look_ts = -math.inf
        #: the tracks of the last frame whose faces are at the detector's limit (under FACE_PX_AT_SIZE at the
        #: detection size): one of them lost at a detection brings the next look forward
        self._small_ids: set = set()
        #: whether one of them was lost at a detection since the last look: the next look comes within
        #: LOOK_FIRST_S of the one before, however soon after it the loss came
        self._lost_small = False
        #: every face brightened before it was read (:meth:`_note_dark`): track id -> [rows, first frame, last frame,
        #: largest gain]; whether the sidecar's ``dark_faces.tracks`` lags it (over DARK_TRACKS_LISTED faces it is
        #: made again when the sidecar is written, not every frame); how many later faces were said at INFO level
        self._dark_tracks: Dict[int, List[Any]] = {}
        self._dark_stale = False
        self._dark_later_said = 0
        #: small pictures with no face found, read whole as the face (FaceInference.frame_as_still): how many, and the
        #: first READ_WHOLE_LISTED's files (frame indices where the source names none), the sidecar's input.read_whole
        self._read_whole = 0
        self._read_whole_first: List[Any] = []
        #: read the file once ahead for the track reference (see Analyzer.process_video)
        active = self.neutral_ref is not None and analyzer.inference.neutralize
        # a video file read at full speed; never a single picture (one frame: nothing later to take a neutral
        # face or a baseline from; it was read twice)
        possible = (isinstance(self.src, VideoSource) and self.src.path is not None and not self.src.live
                    and not self.src.stills)
        self.lookahead = bool(active and possible and neutral_lookahead is not False)
        if neutral_lookahead and active and not possible:
            log.warning("%s: the neutral look-ahead needs a video file read at full speed; the reference stays "
                        "causal", self.src.name)
        #: start each track's person baseline from the first reading (see Analyzer's baseline_lookahead)
        self.baseline_ahead = bool(baseline_lookahead and possible)
        if baseline_lookahead and not possible:
            log.warning("%s: the baseline look-ahead needs a video file read at full speed; the person baseline "
                        "stays causal", self.src.name)
        #: called with each frame of the look-ahead's first pass (a progress bar)
        self.on_ahead: Optional[Callable[[FramePacket], None]] = None
        self._ahead: Optional[Run] = None  # the look-ahead's first pass while it runs
        #: the look-ahead's first pass of an outer run: it holds no claim on the analyzer (the outer run does) and
        #: analyses without neutral faces (its reference makes them for the frames it banks)
        self._first_pass = False
        #: a first pass's record for the second to replay: frame index -> (analysed faces before smoothing, scene cut,
        #: whether the detector ran); None = not recording (or over REPLAY_MAX_FACES)
        self._record: Optional[Dict[int, tuple]] = None
        self._recorded_faces = 0
        self._detected: set = set()  # frames of the first pass where the detector ran (for its record)
        #: the second pass: the first's record, replayed instead of detecting (and, without neutral faces,
        #: analysing) again; the frames replayed and waiting for the infer stage
        self._replay: Optional[Dict[int, tuple]] = None
        self._replayed: set = set()
        #: the end of every frame's path: overlay, CSV + sidecar, video (switchable while the run goes)
        self.outputs = RunOutputs(analyzer.code_dim, fps=self.src.fps, time_base=self.src.time_base,
                                  audio_from=self.src.path if audio else None, describe=_weak_describe(self),
                                  stats=self.stats.summary, overwrite=overwrite, video_preset=video_preset,
                                  file_column=self.src.frame_files, stills=self.src.stills,
                                  input_path=_local_file(self.src), video_threads=video_threads)
        if annotate is None or annotate is True:
            self.outputs.annotator = default_annotator(neutralized=False) if (video or annotate) else None
        elif annotate is not False:
            self.outputs.annotator = annotate
        try:
            if self.video_path is not None:  # a name that cannot be a video fails before the CSV exists
                self.outputs.check_video_path(self.video_path)
            if self.csv_path is not None:
                self.outputs.open_csv(self.csv_path, self.sidecar_path)
            elif self.sidecar_path is not None:
                self.outputs.sidecar_path = self.sidecar_path
            if self.video_path is not None:
                self.outputs.open_video(self.video_path)
        except BaseException as e:
            self.src.close()
            # (Ctrl-C or a signal's SystemExit while the outputs opened: interrupted, as once the run goes)
            self.outputs.close(*_ending(e))
            self.status = _ending(e)[0]  # (once the files are finished: another thread may be reading it)
            raise
        # a run dropped without being iterated or closed: its files are finished ("stopped") and its source closed
        # when it is collected (a CSV's descriptor stayed open for the process's life, its sidecar "running", and
        # the files an overwrite set aside stayed hidden); detached where the run closes itself
        self._finalizer = weakref.finalize(self, _close_dropped_run, self.outputs, self.src)
        # known (weakly) to its Analyzer, whose close() finishes it where it was never iterated, and to the
        # interpreter's exit, which ends it where it is still open (a look-ahead's first pass is taken off again)
        with analyzer._lock:  # (close() takes its snapshot under this lock)
            closed = analyzer._closed
            if not closed:
                analyzer._runs.add(self)
        if closed:  # closed while this run was made (after process_video's check): its files let go at once
            self._iterated = self._closed = True
            self.status = "stopped"
            self._finalizer()
            raise UsageError("this Analyzer is closed (its model and detector are released): make a new one")
        with _RUNS_LOCK:
            _RUNS.add(self)
        if analyzer.head is None and not analyzer.warned_no_head:  # once, when a run starts (not before a bad input's
            analyzer.warned_no_head = True                          # one-line error): the CSV would only show empties
            log.warning("%s has no emotion head (%s): the emotion columns stay empty and expr_intensity is the "
                        "flow's length (facecycle export --head adds one)", analyzer.backend.model_dir, HEAD_FILE)

    @property
    def annotator(self) -> Optional[Annotator]:
        """The overlay drawn on each frame (``run.outputs.set_annotator`` switches it while the run goes)."""
        return self.outputs.annotator

    # ------------------------------------------------------------ control
    def stop(self) -> None:
        """Stop after the frame in hand (any thread, signal handlers too)."""
        self.interrupted = True
        if self._ahead is not None:
            self._ahead.stop()
        if self._pipeline is not None:
            self._pipeline.stop()

    def pause(self) -> None:
        """Stop reading new frames until :meth:`resume` (any thread); frames already read still come out. A file
        played with ``realtime=True`` resumes where it was (the pause is not dropped as lateness). No effect before
        the run's iteration starts or after it ends."""
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.pause()

    def resume(self) -> None:
        """Read frames again after :meth:`pause` (any thread)."""
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.resume()

    @property
    def paused(self) -> bool:
        """Whether the run is paused (:meth:`pause`)."""
        return bool(self._pipeline and self._pipeline.paused)

    def __repr__(self) -> str:
        try:
            src = getattr(self, "src", None)
            name = getattr(src, "name", "?")
            total = getattr(src, "frame_count", None)
            done = f"{self.stats.frames}" + (f" of {total}" if total and self.status != "complete" else "")
            outs = "".join(f", {k}={str(v)!r}" for k, v in (("csv", self.csv_path), ("video", self.video_path)) if v)
            return f"Run(input={str(name)!r}, status={self.status!r}, frames={done}{outs})"
        except Exception:  # noqa: BLE001 - a repr never raises (a half-made run)
            return object.__repr__(self)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(_NO_PICKLE.format(what="a Run"))

    # ------------------------------------------------------------- stages
    def _detect_stage(self, p: FramePacket) -> FramePacket:
        t = time.perf_counter()
        if self.analyzer.rotate:  # (the first stage: every later one, the outputs included, sees the turned frame)
            p.image = turn_clockwise(p.image, self.analyzer.rotate)
        rec = self._replay.pop(p.index, None) if self._replay is not None else None
        if rec is not None:  # the look-ahead's first pass saw this frame: its faces, tracks and cut, as they were
            p.faces, p.scene_cut, ran = rec
            self.stats.detections += ran
            self._replayed.add(p.index)
            p.stats["detect"] = time.perf_counter() - t
            return p
        an = self.analyzer
        # separate pictures: each is detected afresh, its faces new tracks (ids go on rising)
        run_det = self._scheduled(p.index) or self.src.stills
        # while a face is lost but its track remembered (the tracker's lost_buffer), every frame is detected: a face
        # that comes back (uncovered, turned back) gets its rows from its first frame, not the next scheduled one
        run_det = run_det or self.tracker.has_lost(p.timestamp)
        if not run_det:
            faces, ok = self.tracker.propagate(p.image, p.timestamp)
            run_det = not ok
        if run_det:
            faces = detect_faces(an.detector, self.tracker, p.image, p.timestamp, still=self.src.stills)
            if self._looking and not self.src.stills:
                due = self._look_interval(faces, p.image)
                if self._small_ids - {f.track_id for f in faces}:  # a face at the detector's limit lost here: soon
                    self._lost_small = True  # (until a look takes it in: the loss may come just after a look)
                if self._lost_small:
                    due = min(due, LOOK_FIRST_S)
                if (self._looking and p.timestamp - self._size_look_ts >= due
                        and self._look_for_small_faces(p.image, faces, p.timestamp, p.index)):
                    # the size was raised: this frame's faces again, at the new size (the tracks found stay theirs)
                    faces = detect_faces(an.detector, self.tracker, p.image, p.timestamp)
            self._since_detect = 0
            self.stats.detections += 1
        self._since_detect += 1
        if self._looking:
            scale = float(an.detector.max_side or 0) / max(p.image.shape[:2])
            self._small_ids = {f.track_id for f in faces
                               if max(f.box[2] - f.box[0], f.box[3] - f.box[1]) * scale < FACE_PX_AT_SIZE}
        if an.max_faces and len(faces) > an.max_faces:
            # the largest, those kept before counted 1.25 times their size: four faces of about one size took turns
            # (9 changes in 60 frames, each person cut into 5-frame pieces)
            kept = self._kept_faces
            faces = sorted(faces, key=lambda f: -f.area * (1.25 if f.track_id in kept else 1.0))[: an.max_faces]
            faces.sort(key=lambda f: f.track_id)
        self._kept_faces = {f.track_id for f in faces}
        p.faces = faces
        if self._turns is not None and faces and not self.src.stills:
            self._note_turns(faces)
        if self.src.stills:  # a face that fills its picture is read from the whole picture, as the probes read it
            found = bool(p.faces)
            an.inference.frame_as_still(p, self.tracker)
            if p.faces and not found:  # a small picture with no face found, read whole: the sidecar counts them
                self._read_whole += 1
                if len(self._read_whole_first) < READ_WHOLE_LISTED:
                    self._read_whole_first.append(text_name(p.file) if p.file else p.index)
        p.scene_cut = self.tracker.last_cut
        if self._record is not None and run_det:
            self._detected.add(p.index)
        p.stats["detect"] = time.perf_counter() - t
        return p

    def _scheduled(self, index: int) -> bool:
        """Whether the frame of ``index`` is a scheduled detection (every ``detect_every``). With ``_by_index``: the
        first frame, and every frame in another cell of the index's grid than the frame before it (``index %
        detect_every == 0``, or the first frame after that one where it was dropped). A detection the tracker asks
        for in between (a face lost, the flow failed, a scene cut, a resize) does not move the grid: the next
        scheduled one is still on it, as in a run that read every frame. Otherwise every ``detect_every`` frames
        processed since the last detection of any kind."""
        if not self._by_index:
            return self._since_detect >= self.analyzer.detect_every
        cell = int(index) // self.analyzer.detect_every
        due = self._grid_cell is None or cell != self._grid_cell  # (an index that went back: detected afresh)
        self._grid_cell = cell
        return due

    def _warm_up(self) -> None:
        """Run the detector (at the detection size, and at the larger size a look takes) and the model (one face) once
        on a blank frame of the source's size, before a live source's clock starts (the pipeline's reader starts it
        at the first frame it reads): the first detection and analysis paid their warm-up (sessions, shapes,
        allocations) on frame 0, slower than real time, and a file played at its pace dropped its first frames (2 of
        125 with ``live --input``, 3 with ``process --realtime``). Nothing it computes is kept: it only warms the
        engines (once per analyzer and frame size)."""
        an = self.analyzer
        w, h = int(self.src.width or 640), int(self.src.height or 480)
        if an.rotate in (90, 270):
            w, h = h, w
        done = getattr(an, "_warm_sizes", None)
        if done is None:  # (an analyzer made bare): kept on it, so that the next run of this size skips this
            done = an._warm_sizes = set()
        if (w, h, an.detector.max_side) in done:
            return
        t = time.perf_counter()
        blank = np.zeros((h, w, 3), np.uint8)
        an.detector.detect(blank)
        look = self._look_side(blank) if self._looking else 0
        if look:
            an.detector.detect(blank, max_side=look)
        side = 0.4 * min(w, h)  # a face in the middle, its landmarks where a frontal face's are
        x0, y0 = (w - side) / 2, (h - side) / 2
        lm = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.72], [0.62, 0.72]], np.float32)
        face = Face(box=np.array([x0, y0, x0 + side, y0 + side], np.float32), score=1.0,
                    landmarks=(lm * side + [x0, y0]).astype(np.float32), track_id=-1)
        an.inference(FramePacket(index=-1, pts=0, time_base=self.src.time_base, timestamp=0.0, image=blank,
                                 faces=[face], source=self.src.name))
        # and a tracker of its own (not the run's) over two frames: the first calls of its colour conversions,
        # picture tests and optical flow (about 80 ms of frame 0's detect stage)
        tracker = Tracker()
        tracker.update(blank, Detections(face.box[None], np.ones(1, np.float32), face.landmarks[None]), 0.0)
        tracker.propagate(blank, 1.0 / float(self.src.fps or 30.0))
        done.add((w, h, an.detector.max_side))
        log.debug("%s: detector and model warmed up in %.0f ms before the clock starts", self.src.name,
                  1000 * (time.perf_counter() - t))

    def _note_turns(self, faces: List[Face]) -> None:
        """Collect how far the first faces are turned from upright (:func:`face_turn`); once
        :data:`TURN_HINT_FACES` are in, say once where most are turned by the same right angle (upside down, on
        their side), with the ``rotate`` that reads them upright, and record it in the sidecar (``orientation``).
        The model reads a face rolled beyond 60° as another emotion (no crop is levelled that far: a neutral talker
        turned upside down read "sad" at p 0.72, every frame detected)."""
        for f in faces:
            turn = face_turn(f.landmarks)
            if turn is not None:
                self._turns.append(turn)
        if len(self._turns) < TURN_HINT_FACES:
            return
        turns, self._turns = self._turns, None  # decided
        quarters = [int(round(t / 90.0)) % 4 for t in turns if abs((t + 45.0) % 90.0 - 45.0) <= 30.0]
        k = max(range(4), key=quarters.count)
        share = quarters.count(k) / len(turns)
        if k == 0 or share < 0.8:
            return
        fix = (self.analyzer.rotate - 90 * k) % 360  # the --rotate, all told, that reads them upright
        what = "upside down" if k == 2 else f"turned 90° {'clockwise' if k == 1 else 'anti-clockwise'}"
        self.info["orientation"] = {"faces_turned_deg": 90 * k, "share": round(share, 3), "faces": len(turns),
                                    "rotate_upright": fix}
        log.warning("%s: %d of the first %d faces are %s (the model reads turned faces wrongly, and their landmarks "
                    "and head pose with them: a video without its rotation tag, a camera mounted turned, a person "
                    "lying down?): --rotate %d reads them upright", self.src.name, quarters.count(k), len(turns),
                    what, fix)

    def _look_side(self, image: np.ndarray) -> int:
        """The size a look at this frame detects at (:meth:`_look_for_small_faces`): twice the detection size, at
        least :data:`LOOK_SIDE`, at most the frame's longer side and :data:`DETECT_SIDE_MAX`; 0 where a look can
        find nothing more: the size has reached its maximum (the look would be under :data:`LOOK_GAIN` times it),
        or the size asked barely shrinks the frame (at most 1.5 times)."""
        side = int(self.analyzer.detector.max_side or 0)
        long = max(image.shape[:2])
        if not side or (side == self._detect_side and long <= 1.5 * side):
            return 0
        look = min(long, DETECT_SIDE_MAX, max(LOOK_SIDE, 2 * side))
        return look if look >= LOOK_GAIN * side else 0

    def _look_interval(self, faces: List[Face], image: np.ndarray) -> float:
        """Seconds after the last look at a larger size (:meth:`_look_for_small_faces`) that this frame may get one:
        none (inf, and the run stops looking) where a look can find nothing more (:meth:`_look_side`); where the
        detection found no face or one under a fifth of the frame's height, every :data:`LOOK_FIRST_S` for the
        first :data:`LOOKS_FIRST` looks, then every :data:`LOOK_AGAIN_S`; where every face it found is larger, a
        look at the start and then every :data:`LOOK_BESIDE_S` (small faces beside a large one were never looked
        for: two people of 90 px behind a 640-px face in a 1080p frame were never found). The schedule goes on
        after a raise of the size: a screen-share's thumbnails of 33-47 px after a webcam inset of 95 px (raised to
        672 px) were never found (265 of 800 rows, one person none, no warning)."""
        if not self._look_side(image):  # the size reached its maximum: nothing more to find
            self._looking = False
            return math.inf
        h = image.shape[0]
        if not faces or min(max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces) < 0.2 * h:
            return LOOK_FIRST_S if self._looks_done < LOOKS_FIRST else LOOK_AGAIN_S
        return LOOK_FIRST_S if self._looks_done < 1 else LOOK_BESIDE_S

    def _look_for_small_faces(self, image: np.ndarray, faces: List[Face], ts: float, index: int = -1) -> bool:
        """Detect the frame once more at a larger size (:meth:`_look_side`); where the smallest face found there,
        found at the current size or not, would be under :data:`FACE_PX_AT_SIZE` px at the current size (small
        faces in a large frame: 9 people of 67-104 px in a 1080p frame lost 22 % of their rows at 320, three of
        130 px in a 3840-px frame all of them, and nothing said so; a face found at 320 at 16 px dropped out for
        0.5 s at a time), raise the detection size to one that shows it at that side (at most
        :data:`DETECT_SIDE_MAX`; a raise after the first by at least :data:`RAISE_AGAIN_GAIN`), with a warning at
        each raise and each raise in the sidecar's ``detect_size.raises``; returns whether it did. The run goes on
        looking after a raise (:meth:`_look_interval`) until the size reaches its maximum."""
        det = self.analyzer.detector
        side, long = int(det.max_side or 0), max(image.shape[:2])
        look = self._look_side(image)
        self._looks_done += 1
        self._size_look_ts = ts
        self._lost_small = False
        if not look:
            return False
        big = det.detect(image, max_side=look)
        if not len(big):
            return False
        boxes = np.array([f.box for f in faces], np.float32).reshape(-1, 4)
        iou = iou_matrix(big.boxes, boxes) if len(boxes) else np.zeros((len(big), 0))
        extra = [b for b, row in zip(big.boxes, iou, strict=True) if not (row >= 0.3).any()]
        sizes = [float(max(b[2] - b[0], b[3] - b[1])) for b in big.boxes]
        px = min(sizes)  # every face found: one found here at the detector's limit is as much at risk as one missed
        need = min(long, DETECT_SIDE_MAX, int(math.ceil(long * FACE_PX_AT_SIZE / max(px, 1.0) / 32.0) * 32))
        ds = self.info.get("detect_size")
        small = sum(1 for x in sizes if x * side / long < FACE_PX_AT_SIZE)
        if need <= side or not (extra or small) or (ds is not None and need < RAISE_AGAIN_GAIN * side):
            return False
        det.max_side = need
        raise_ = {"frame": int(index), "time": round(float(ts), 3), "from": side, "size": need,
                  "faces_missed": len(extra), "faces_small": small, "smallest_face_px": round(px, 1)}
        # the first raise's keys as they were (used: the size now), and every raise in order
        self.info["detect_size"] = {"asked": self._detect_side, "used": need, "faces_missed": len(extra),
                                    "smallest_face_px": round(px, 1),
                                    "raises": [*(ds or {}).get("raises", []), raise_]}
        when = f" at {ts:.1f} s" if ds is not None else ""
        what = ("are missed" if extra else
                "are at the limit of what it finds (found on some frames only)")
        log.warning("%s: %d face(s) as small as %.0f px %s at detect size %d%s: detecting at %d px for this input "
                    "(slower; --detect-size %d keeps it)", self.src.name, len(extra) or small, px, what, side, when,
                    need, self._detect_side)
        return True

    def _infer_stage(self, p: FramePacket) -> FramePacket:
        inference = self.analyzer.inference
        if p.index in self._replayed:  # the replayed faces are analysed already: at most their neutral faces
            self._replayed.discard(p.index)
            if not inference.neutralize:
                return p
            if all(f.flow is not None for f in p.faces):
                return inference.add_neutral_faces(p)
        # None: the inference's own setting (the app switches it live)
        return inference(p, neutralize=False if self._first_pass else None)

    def _keep(self, p: FramePacket) -> None:
        """Record ``p``'s analysed faces (before smoothing changes them) for the second pass to replay."""
        ran = p.index in self._detected
        self._detected.discard(p.index)
        if self._record is None:
            return
        self._recorded_faces += len(p.faces)
        if self._recorded_faces > REPLAY_MAX_FACES:
            log.info("%s: over %d faces: the second reading detects and analyses again", self.src.name,
                     REPLAY_MAX_FACES)
            self._record = None
            return
        self._record[p.index] = (copy.deepcopy(p.faces), p.scene_cut, int(ran))  # smoothing changes p's

    def _post(self, p: FramePacket) -> None:
        t = time.perf_counter()
        if self._first_pass:
            self._keep(p)
        if self.reid is not None:
            self.reid(p)
        sm = self.smoother if not self.src.stills else None  # separate pictures: no time between them to smooth over
        if sm is not None:
            ts = p.timestamp
            for f in p.faces:
                tid = f.track_id
                if f.pose is not None and np.all(np.isfinite(f.pose)):
                    f.pose = sm(tid, "pose", f.pose, ts)
                if f.code is not None:
                    f.code = sm(tid, "code", f.code, ts)
                if math.isfinite(f.intensity):
                    f.intensity = float(sm(tid, "intensity", np.array([f.intensity]), ts)[0])
                if f.emotions is not None:
                    e = np.clip(sm(tid, "emotions", f.emotions, ts), 0, None)
                    f.emotions = e / max(float(e.sum()), 1e-8)
                    f.label = sm.label(tid, f.emotions)
            sm.keep_only({f.track_id for f in p.faces}, now=ts)
        if not self.src.stills:  # each picture reads on its own, as analyze_image reads it (with --reid too)
            self.baseline(p)
            if self.neutral_ref is not None:
                self.neutral_ref(p)
        if not self._first_pass:
            self._note_dark(p)
        p.stats["post"] = time.perf_counter() - t
        self.outputs.write(p)

    def _note_dark(self, p: FramePacket) -> None:
        """Count the face rows read brightened (``Face.lift``, a crop darker than ``dark_lift``'s level) in the
        sidecar's ``dark_faces``, per face (``tracks``: the CSV's ``face_id``, its rows, first and last frame and
        largest gain), and say it once per run, naming the faces: such a face read "angry" whatever it showed, and a
        user should know which rows were read from a dark picture. Faces first brightened after that warning are
        said at INFO level (the first :data:`DARK_TRACKS_SAID`)."""
        lifted = [f for f in p.faces if f.lift > 1.0]
        if not lifted:
            return
        tally = self._dark_tracks
        new: List[int] = []
        for f in lifted:
            tid = int(f.track_id)
            t = tally.get(tid)
            if t is None:
                tally[tid] = [1, p.index, p.index, float(f.lift)]
                new.append(tid)
            else:
                t[0] += 1
                t[2] = p.index
                t[3] = max(t[3], float(f.lift))
        d = self.info.get("dark_faces")
        if d is None:
            d = self.info["dark_faces"] = {"rows": 0, "first_frame": p.index, "gain_max": 1.0}
            log.warning("%s: faces too dark to read as they are (from frame %d): %s brightened before %s "
                        "expression is read (the sidecar's dark_faces counts their rows, per face; "
                        "docs/reliability.md, 'Light')", self.src.name, p.index, _name_faces(new),
                        "its" if len(new) == 1 else "their")
        elif new and self._dark_later_said < DARK_TRACKS_SAID:
            said = new[:DARK_TRACKS_SAID - self._dark_later_said]
            self._dark_later_said += len(said)
            log.info("%s: %s too dark as well (from frame %d): brightened before %s expression is read%s",
                     self.src.name, _name_faces(said), p.index, "its" if len(said) == 1 else "their",
                     "" if self._dark_later_said < DARK_TRACKS_SAID else " (further ones: the sidecar's dark_faces)")
        d["rows"] += len(lifted)
        d["gain_max"] = round(max(d["gain_max"], max(f.lift for f in lifted)), 3)
        self._dark_stale = True
        if len(tally) <= DARK_TRACKS_LISTED:  # a few faces: listed as they go (the app reads the run's info)
            self._list_dark()

    def _list_dark(self) -> None:
        """Make the sidecar's ``dark_faces.tracks`` (the :data:`DARK_TRACKS_LISTED` faces with the most rows read
        brightened, most first, then by id) and ``tracks_total`` (every such face) from the run's tally."""
        d = self.info.get("dark_faces")
        if d is None or not self._dark_stale:
            return
        top = heapq.nsmallest(DARK_TRACKS_LISTED, self._dark_tracks.items(), key=lambda kv: (-kv[1][0], kv[0]))
        d["tracks"] = [{"face_id": tid, "rows": rows, "first_frame": first, "last_frame": last,
                        "gain_max": round(gain, 3)} for tid, (rows, first, last, gain) in top]
        d["tracks_total"] = len(self._dark_tracks)
        self._dark_stale = False

    def describe(self) -> Dict[str, Any]:
        """What produced the numbers: the JSON sidecar's body (without status and statistics)."""
        self._list_dark()  # (over DARK_TRACKS_LISTED dark faces, listed here rather than every frame)
        return {"input": {**self.src.describe(), **({"read_whole": self._read_whole,
                                                     "read_whole_first": list(self._read_whole_first)}
                                                    if self.src.stills else {})},
                "columns": {"count": len(csv_columns(self.analyzer.code_dim, self.src.frame_files)),
                            "code_dim": self.analyzer.code_dim, "emotions": self.analyzer.head is not None,
                            "file": self.src.frame_files},
                "max_frames": self.max_frames,
                **self.analyzer.describe(),
                # what this run smooths (separate pictures: nothing)
                "smoothing_params": (self.smoother.describe(SMOOTHED)
                                     if self.smoother is not None and not self.src.stills else None),
                # how the emotion column is chosen from the (smoothed) probabilities
                "emotion_label": ({"rule": "hysteresis", "margin": self.smoother.label_margin,
                                   "hold_s": self.smoother.hold_s}
                                  if self.smoother is not None and not self.src.stills else {"rule": "argmax"}),
                "tracker": self.tracker.describe(),
                "person_baseline": {**self.baseline.describe(), "lookahead": self.baseline_ahead},
                **({"neutral_reference": {**self.neutral_ref.describe(), "lookahead": self.lookahead}}
                   if self.neutral_ref is not None and self.analyzer.inference.neutralize else {}),
                "versions": versions(),
                **self.info}

    # ----------------------------------------------------------- iterate
    def __iter__(self) -> Iterator[FramePacket]:
        if self._iterated:
            if self._closed and self._gen is None:  # closed before it was iterated (run.close(), Analyzer.close()):
                return iter(())  # nothing to read, as after stop(); its files are finished, its status stays
            raise RuntimeError("a Run can be iterated once")
        self._iterated = True
        gen = self._frames()
        self._gen = weakref.ref(gen)
        frames = _Frames(gen)
        self._frames_it = weakref.ref(frames)  # (weak: an abandoned iterator, collected, still ends the run)
        return frames

    def _frames(self) -> Iterator[FramePacket]:
        self._iter_thread = threading.get_ident()  # close() from another thread stops it instead of closing it
        self.outputs.started = True  # (a run given the same files now says "being written", not "not iterated")
        self.status = "running"
        # started, the generator's own cleanup finishes the run (when it ends, is closed or is collected): the
        # finalizer, run at the interpreter's exit too, must not close a source another thread still reads
        self._finalizer.detach()
        try:  # one run at a time per Analyzer: a second one fails here at once (never waits)
            if not self._first_pass:
                self.analyzer._claim(self)
            if (self.lookahead or self.baseline_ahead) and not self.interrupted:
                try:
                    self._read_ahead()
                except BaseException:
                    self.analyzer._release(self)
                    raise
            # a live source (a camera, a file played at its pace): its clock starts at the first frame the pipeline's
            # reader reads, below; the engines' first calls are made before it
            if self.src.live and not self.src.stills and not self.interrupted:
                try:
                    self._warm_up()
                except Exception as e:  # noqa: BLE001 - the first frame meets it again, said as its stage's error
                    log.debug("%s: warm-up failed: %s", self.src.name, e)
                except BaseException:  # Ctrl-C, a signal's SystemExit: interrupted, as in the look-ahead
                    self.analyzer._release(self)
                    raise
        except BaseException as e:  # (Ctrl-C in the look-ahead's first reading: interrupted, as in the main loop)
            self.error = e
            self.src.close()
            self.outputs.close(*_ending(e))
            self.status = _ending(e)[0]
            self._closed = True
            raise
        self._pipeline = Pipeline(self.src, [("detect", self._detect_stage),
                                             ("infer", self._infer_stage, self.analyzer.infer_workers)],
                                  queue_size=queue_size_for(self.analyzer.queue_size, self.src.width,
                                                            self.src.height, queues=3),
                                  max_frames=self.max_frames)
        if self.interrupted:
            self._pipeline.stop()
        status, recorded = "complete", None  # (recorded: the error the sidecar names)
        try:
            for p in self._pipeline:
                self._post(p)
                self.stats.add(p)
                self.stats.drops = self._pipeline.drops
                yield p
        except GeneratorExit:  # the consumer stopped iterating; after stop() (a signal, the app's Stop) that is an
            # interrupt, as csv.md says (not the stop the interpreter's exit makes: the consumer stopped reading)
            status = "interrupted" if self.interrupted and not self._exit_stop else "stopped"
            raise
        except BaseException as e:
            self.error = e
            status, recorded = _ending(e)
            raise
        finally:
            try:
                self._pipeline.stop()
                self.stats.t_end = time.perf_counter()
                self.stats.cpu_end = time.process_time()
                self.stats.drops = self._pipeline.drops
                self.stats.errors = self.src.errors
                if self.interrupted and status == "complete":
                    status = "stopped" if self._exit_stop else "interrupted"
                # read to the source's end (not cut by max_frames): the annotated video keeps all of its audio
                # (frames read, dropped ones included: a live run that drops frames stops at max_frames read)
                ended = status == "complete" and (self.max_frames is None
                                                    or self.stats.frames + self.stats.drops < self.max_frames)
                # (an error it returns is this run's, raised below: said once, not also as a warning)
                close_error = self.outputs.close(status, recorded, source_ended=ended,
                                                 raises=status in ("complete", "interrupted"))
                # set once the files are finished (another thread may watch it); failed where they could not be,
                # as the sidecar then says
                self.status = "failed" if close_error is not None else status
                if close_error is not None and status in ("complete", "interrupted"):
                    self.error = close_error
                else:
                    close_error = None  # another error is already on its way out
                self._closed = True
            finally:
                # the pipeline's stages are this run's own methods: a cycle that kept each finished run (its
                # source, video writer, codec threads and per-track state) until a full garbage collection, and a
                # batch grew by about 80 MB every 40 videos
                self._pipeline.stages = []
                # what the first reading left for frames this one did not reach (max_frames, a stop): up to
                # REPLAY_MAX_FACES faces of about 8 KB, kept by a finished run for as long as it was referenced
                # (emptied, not dropped: ``_replay is not None`` still tells that the run replayed a first reading)
                if self._replay is not None:
                    self._replay.clear()
                self._replayed.clear()
                self.analyzer.detector.max_side = self._detect_side  # the next run starts as asked
                if not self._first_pass:
                    self.analyzer._release(self)
            if close_error is not None:  # e.g. the disk filled up while the video was flushed
                raise close_error

    def _read_ahead(self) -> None:
        """The look-ahead's first pass: the same file and settings, no outputs; this run's reference then starts
        each track from the bank that pass left (NeutralReference.banks / seed), and with ``baseline_ahead`` its
        person baseline each track from the frames that pass recorded (NeutralBaseline.histories / seed)."""
        t = time.perf_counter()
        what = " and ".join(w for w, on in (("neutral", self.lookahead), ("baseline", self.baseline_ahead)) if on)
        log.info("%s: %s look-ahead, reading the video once ahead", self.src.name, what)
        first = Run(self.analyzer, open_source(self.src.path), realtime=False, csv=None, video=None, annotate=False,
                    overwrite=False, max_frames=self.max_frames, audio=False, video_preset="superfast", sidecar=None,
                    neutral_lookahead=False)
        first._first_pass = True
        with self.analyzer._lock:  # this run's own: closed with it, never on its own
            self.analyzer._runs.discard(first)
        with _RUNS_LOCK:
            _RUNS.discard(first)
        if self.lookahead:
            first.neutral_ref.keep_banks = True
            first.neutral_ref.make_neutral = lambda p, f: self.analyzer.inference.neutral_face(p.image, f.box)
        first.baseline.record = self.baseline_ahead
        first.baseline.quiet = True  # its warnings are this run's: said once, by this reading
        first._record = {}
        self._ahead = first
        try:
            first.run(self.on_ahead)
        except FaceCycleError as e:  # e.g. a file undecodable midway: read it once, keeping the rows before it
            log.warning("%s: the %s look-ahead stopped (%s); it stays causal", self.src.name, what, e)
            return
        finally:
            self._ahead = None
            if first._turns is None:  # the first reading decided (and said) whether the faces are turned: not twice,
                self._turns = None    # also where it stopped early
                if "orientation" in first.info:
                    self.info["orientation"] = first.info["orientation"]
        if not self.interrupted:
            if self.lookahead:
                self.neutral_ref.seed(first.neutral_ref.banks())
            if self.baseline_ahead:
                self.baseline.seed(first.baseline.histories())
            self._replay = first._record
        if "detect_size" in first.info:  # the first reading raised it: this one detects (and says) the same
            self.info["detect_size"] = first.info["detect_size"]
            self.analyzer.detector.max_side = first.info["detect_size"]["used"]
            self._looking = False
        log.info("%s: look-ahead done in %.1f s (%d frames)", self.src.name, time.perf_counter() - t,
                 first.stats.frames)

    def run(self, callback: Optional[Callable[[FramePacket], Any]] = None) -> RunStats:
        """Consume the whole run (``callback(packet)`` per frame); returns the stats."""
        frames = iter(self)  # (held here: a loop's own reference is dropped as an exception leaves the loop, and
        try:                 # the iteration would end "stopped" before the handler below could say why)
            for p in frames:
                if callback is not None:
                    callback(p)
        except (KeyboardInterrupt, SystemExit):  # in the callback: "interrupted", as a signal's stop() ends it
            self.stop()
            self.close()
            raise
        except BaseException:  # another error in the callback: the run ends ("stopped") now, its threads joined and
            self.close()       # its files finished, not whenever the error (which holds the iterator) is let go
            raise
        return self.stats

    def close(self) -> None:
        """Stop and close the outputs (when the run was never iterated or iterated partly): the pipeline's threads
        are joined, the source closed, the files finished and the Analyzer free again (idempotent). From a thread
        other than the one reading the run: where that thread is inside ``next()``, the run is stopped and that
        thread's loop ends it (its end finishes the files); where it is between two frames, or holds the iterator
        without reading on, the run is stopped and finished here, and that thread's next ``next()`` gets the end (a
        file that could not be finished raises here then). A reader that abandoned the loop finishes the files when
        the iterator is collected, or at the latest when the interpreter exits (:func:`_close_runs_at_exit`). A run
        closed before it was iterated gives no frames when it is iterated (as after :meth:`stop`)."""
        was_interrupted = self.interrupted  # (before the stop() below: how a run cut short is recorded)
        gen = self._gen() if self._gen is not None else None
        state = inspect.getgeneratorstate(gen) if gen is not None else None
        frames = self._frames_it() if self._frames_it is not None else None
        if state == inspect.GEN_SUSPENDED and self._iter_thread not in (None, threading.get_ident()):
            # another thread iterates it, between two frames, or holds it without reading on (a paused reader):
            # stopped, then closed here under the iterator's lock, so that thread's next() waits for the cleanup
            # and gets the end (closed bare, that next() raced it: "generator already executing"); before, a
            # reader that did not read on kept the files open and Analyzer.close() waited 10 s for it
            self.stop()
            if frames is not None:
                frames.close_from_other_thread()
            return
        if state == inspect.GEN_SUSPENDED:  # iterated partly, here, between two frames
            try:
                gen.close()  # the iteration's own cleanup: threads joined, files finished, the Analyzer free
                return
            except ValueError:  # it just started running in another thread
                state = inspect.GEN_RUNNING
        self.stop()
        if state == inspect.GEN_RUNNING:  # another thread is inside it: stop() ends it there, with its cleanup
            return
        if gen is not None:  # asked for but never started: it must not start after this (under the iterator's
            try:             # lock: a first next() in another thread waits, then gets the end)
                frames.close() if frames is not None else gen.close()
            except ValueError:  # that next() was already inside: stopped, it ends the run there
                return
        if not self._closed:
            # never started; or started and its own cleanup cut short (a second Ctrl-C, the CLI's force-quit, inside
            # it: the interpreter's exit finishes the files then), recorded as that iteration ended: interrupted
            # where it had been stopped (a signal), as its sidecar would have said
            cut = self.status == "running" and was_interrupted and not self._exit_stop
            status = "interrupted" if cut else "stopped"
            self._iterated = self._closed = True
            self.status = status
            self._finalizer.detach()
            self.src.close()
            self.stats.t_end = time.perf_counter()
            self.outputs.close(status)

    def _close_at_exit(self, timeout: float = CLOSE_WAIT_S) -> None:
        """:meth:`close` at the interpreter's exit (:func:`_close_runs_at_exit`), recorded ``stopped`` unless the
        run was stopped before; where another thread (a daemon) is inside ``next()``, waits up to ``timeout`` for
        its loop to end the run: after the atexit functions the interpreter finalizes, and a pipeline thread still
        inside ONNX Runtime then aborts the process."""
        if not self.interrupted:
            self._exit_stop = True
        self.close()
        deadline = time.monotonic() + timeout
        while not self._closed and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._closed:
            log.warning("%s: the run read in another thread did not end within %.0f s of the interpreter's exit",
                        getattr(self.src, "name", "?"), timeout)
        else:
            log.debug("%s: the run left open at exit ended %s", getattr(self.src, "name", "?"), self.status)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if _is_interrupt(exc_type):  # Ctrl-C in the loop's body: "interrupted", not a consumer's "stopped" (where
            self.stop()              # the caller holds the iterator: a loop's own is closed as the exception leaves it)
        self.close()
