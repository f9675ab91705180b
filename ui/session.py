"""One run of the pipeline for the GUI: a worker thread that consumes the pipeline's frames.

The pipeline runs in its own threads (``realtime``); the session's worker
thread consumes the run, so each frame's ending (overlay, CSV, video: the
run's :class:`~realtime.outputs.RunOutputs`, the same code as ``facecycle
process``) happens in it, and hands each frame to the
:class:`~ui.bridge.FrameBridge`. Nothing here ever waits on the GUI thread, and
the GUI only calls the non-blocking methods below (``pause``, ``resume``,
``stop``, ``set_overlays``, ``record_video``, ``export_csv``): they switch the
run's outputs from the next frame on.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Deque, Optional, Set, Tuple, Union

from facecycle.errors import FaceCycleError

from .bridge import DisplayFrame, FrameBridge, summarize
from .imaging import display_image
from .pipeline_adapter import PipelineStream, open_stream
from .render import annotator_for
from .settings import Overlays, RunConfig

__all__ = ["AnalysisSession", "FILES_NOT_FINISHED"]

#: how the report of a session whose output files could not be finished begins (the app's exit code 4 reads it)
FILES_NOT_FINISHED = "could not finish the output files"

log = logging.getLogger(__name__)


class AnalysisSession:
    """Run ``config`` and stream its frames into ``bridge``.

    Frames of live sources (cameras, files at their own pace) are handed over
    without waiting (the GUI shows the newest, older ones count as display
    drops). For files played as fast as possible the worker waits up to
    ``hand_off_wait`` seconds for the GUI to take the previous frame, so the
    view shows every frame whenever the GUI keeps up. When such a wait times out
    (the GUI thread is starved of CPU), the next ``skip_after_timeout`` frames
    are handed over without waiting, so a starved GUI costs the pipeline at
    most one timed-out wait per ``skip_after_timeout`` frames.

    Args:
        config: what to run.
        bridge: where frames, errors and the end of the run are reported.
        overlays: initial overlay toggles (change with :meth:`set_overlays`).
        video_path, csv_path: start recording / CSV export with the first frame.
    """

    hand_off_wait = 0.05
    notes_every = 0.25  # seconds between looks for the run's notes (a few a second: not every frame's cost)
    skip_after_timeout = 30  # frames handed over without waiting after a wait timed out

    def __init__(self, config: RunConfig, bridge: FrameBridge, overlays: Overlays = Overlays(),
                 video_path: Optional[Union[str, Path]] = None,
                 csv_path: Optional[Union[str, Path]] = None,
                 view_size: Optional[Callable[[], Tuple[int, int, float]]] = None) -> None:
        self.config = config
        self.view_size = view_size  # (w, h, dpr) of the live view, read each frame to pre-scale the image
        self.bridge = bridge
        self.generation = bridge.new_run()  # tags this run's signals
        self.overlays = overlays
        self._video_req = video_path
        self._csv_req = csv_path
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._thread: Optional[threading.Thread] = None
        self._stream: Optional[PipelineStream] = None
        self.frames = 0
        self._recent: Deque[float] = deque(maxlen=60)
        self.t_first: Optional[float] = None
        self.t_last: Optional[float] = None
        self._paused_s = 0.0  # seconds paused since the first frame (not counted in the rates)
        self._t_pause: Optional[float] = None
        self.finished_files: list = []
        self.end_reason: Optional[str] = None
        self.info: dict = {}
        self.error: Optional[FaceCycleError] = None  # the error that ended the run, if any
        self._noted: Set[str] = set()  # the notes (ui.pipeline_adapter.NOTES) already reported: each once per run
        self._notes_due = 0.0  # when the worker next looks for notes (time.monotonic())

    # ---- control (GUI thread; none of these blocks) -----------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="facecycle-ui-worker", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        if self._running.is_set() and self.t_first is not None:
            self._t_pause = time.perf_counter()
        self._running.clear()
        s = self._stream
        if s is not None:
            s.pause()

    def resume(self) -> None:
        s = self._stream
        if s is not None:
            s.resume()
        if self._t_pause is not None:  # the pause is no time the pipeline took: the rates leave it out
            self._paused_s += time.perf_counter() - self._t_pause
            self._t_pause = None
            self._recent.clear()
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self) -> None:
        """Ask the run to end: the worker finishes the frame in hand, closes every file, reports ``finished``."""
        self._stop.set()
        self._running.set()
        s = self._stream
        if s is not None:
            s.request_stop()

    @property
    def outputs(self):
        """The run's :class:`~realtime.outputs.RunOutputs` (None until the run is open)."""
        s = self._stream
        return s.outputs if s is not None else None

    def set_overlays(self, overlays: Overlays) -> None:
        self.overlays = overlays  # one reference assignment: atomic for the worker
        out = self.outputs
        if out is not None:
            out.set_annotator(annotator_for(overlays))

    def record_video(self, path: Optional[Union[str, Path]]) -> None:
        """Record the annotated view to ``path`` from the next frame on (None: stop, finish the file)."""
        self._video_req = path
        out = self.outputs
        if out is not None:
            out.set_video(path)

    def export_csv(self, path: Optional[Union[str, Path]]) -> None:
        """Write the CSV to ``path`` from the next frame on (None: stop, finish the file)."""
        self._csv_req = path
        out = self.outputs
        if out is not None:
            out.set_csv(path)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker (tests and shutdown only — the GUI waits on ``finished`` instead)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.is_alive()

    # ---- statistics (any thread) -------------------------------------------
    def pipeline_fps(self) -> float:
        """Frames out of the pipeline per second (first to last frame, the time paused left out)."""
        if self.t_first is None or self.t_last is None or self.frames < 2:
            return 0.0
        span = self.t_last - self.t_first - self._paused_s
        return (self.frames - 1) / span if span > 0 else 0.0

    def recent_fps(self) -> float:
        """Frames out of the pipeline per second over the last ~60 frames (for the status bar)."""
        r = list(self._recent)
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0

    def source_drops(self) -> int:
        s = self._stream
        return int(getattr(s, "drops", 0) or 0) if s is not None else 0

    # ---- worker thread -----------------------------------------------------
    def _pass_notes(self, stream: PipelineStream) -> None:
        """Report each note the run has found out (the pipeline's threads add them to its info) once, and add it
        to :attr:`info` (the session's copy of the run's description, taken when it started: the sidecar is
        written from the run's own at its end, notes included, not from this)."""
        for name, value in stream.notes().items():
            if name not in self._noted:
                self._noted.add(name)
                self.info[name] = value
                self.bridge.report_note(self.generation, name, value)

    def _run(self) -> None:
        reason = "stopped"
        stream = None
        try:
            stream = open_stream(self.config, neutralize=self.overlays.needs_neutral)
            out = stream.outputs
            # the bridge and generation, not self: a lambda closing over the session made a cycle (session ->
            # stream -> outputs -> on_error -> session) that kept each finished run's model, sessions and 5 threads
            # until the cycle collector ran (a probe: 22 runs in turn, 997 MB and 71 threads)
            bridge, generation = self.bridge, self.generation
            out.on_error = lambda msg: bridge.report_error(generation, msg)
            self._stream = stream  # from here on the GUI's switches go straight to the run's outputs ...
            out.set_annotator(annotator_for(self.overlays))  # ... and what it asked for before is applied
            if self._video_req is not None:
                out.set_video(self._video_req)
            if self._csv_req is not None:
                out.set_csv(self._csv_req)
            if self._stop.is_set():  # stopped while opening
                stream.request_stop()
            self.info = stream.describe()
            self.bridge.report_started(self.generation, self.info)
            reason = "end of input"
            skip_wait = 0
            for packet in stream:
                while not self._running.is_set():
                    self._running.wait(0.1)
                if self._stop.is_set():
                    reason = "stopped"
                    break
                stream.set_neutralize(self.overlays.needs_neutral)
                if time.monotonic() >= self._notes_due:  # the first frame's look, then a few a second (and the end's)
                    self._notes_due = time.monotonic() + self.notes_every
                    self._pass_notes(stream)
                shown = packet.annotated if packet.annotated is not None else packet.image
                image = display_image(shown, self.view_size() if self.view_size is not None else None)
                now = time.perf_counter()
                packet.stats["ui_ready"] = now
                if self.t_first is None:
                    self.t_first = now
                self.t_last = now
                self._recent.append(now)
                self.frames += 1
                wait = 0.0 if stream.live or skip_wait > 0 else self.hand_off_wait
                dropped = self.bridge.offer(DisplayFrame(packet, image), summarize(packet), wait=wait)
                if skip_wait > 0:
                    skip_wait -= 1
                elif dropped and wait > 0:  # the GUI is starved: stop paying for waits for a while
                    skip_wait = self.skip_after_timeout
            else:
                if self._stop.is_set():
                    reason = "stopped"
        except FaceCycleError as e:
            reason = "error"
            self.error = e
            self.bridge.report_error(self.generation, str(e))
        except Exception as e:  # noqa: BLE001 - the app must stay usable: report, never crash the GUI
            reason = "error"
            self.error = FaceCycleError(f"internal error: {type(e).__name__}: {e}")
            log.exception("worker failed")
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.bridge.report_error(self.generation, f"internal error: {type(e).__name__}: {msg}")
        finally:
            try:
                if stream is not None:
                    stream.close()  # the run's end: threads joined, source closed, every file finished
            except Exception as e:  # noqa: BLE001
                reason = "error"
                self.bridge.report_error(self.generation, f"{FILES_NOT_FINISHED}: {e}")
            finally:
                if stream is not None:
                    self.finished_files = list(stream.outputs.finished)
                    try:  # one found on the last frames, before the end is reported; its failure must not keep
                        self._pass_notes(stream)  # the end from being reported (the window said "stopping …")
                    except Exception:  # noqa: BLE001 - a note is advice: the run's end is what matters here
                        log.exception("the run's last notes could not be passed on")
                self.end_reason = reason
                self.bridge.report_finished(self.generation, reason)
