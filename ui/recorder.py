"""Recording the annotated video and the CSV from the worker thread, switched on/off from the GUI.

The GUI calls :meth:`Recorder.request_video` / :meth:`Recorder.request_csv`
(cheap, thread-safe: they only store a request); the worker applies requests
between frames in :meth:`Recorder.write`, so sinks are only ever touched by
the worker thread and every file is finished by :meth:`Recorder.close`.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, List, Optional, Union

from facecycle.errors import FaceCycleError

from realtime.sinks import CsvSink, VideoSink, write_sidecar

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

_KEEP = object()


class Recorder:
    """Optional video + CSV sinks fed with every analysed frame.

    Args:
        code_dim: expression code size (CSV ``exp_*`` columns).
        fps, time_base: the source's nominal rate and pts time base (for the video).
        audio_from: input file whose audio is copied when a recording starts at frame 0.
        describe: called when a CSV closes; returns the JSON sidecar's content.
        overwrite: replace existing files (the GUI asks the user before).
    """

    def __init__(self, code_dim: int, fps: Optional[float] = None, time_base=None,
                 audio_from: Optional[str] = None, describe: Optional[Callable[[], dict]] = None,
                 overwrite: bool = True) -> None:
        self.code_dim = int(code_dim)
        self.fps = fps
        self.time_base = time_base
        self.audio_from = audio_from
        self.describe = describe
        self.overwrite = overwrite
        self._lock = threading.Lock()
        self._video_req: object = _KEEP
        self._csv_req: object = _KEEP
        self.video: Optional[VideoSink] = None
        self.csv: Optional[CsvSink] = None
        self.finished: list = []  # paths of files closed so far

    # ---- GUI side ----------------------------------------------------
    def request_video(self, path: Optional[Union[str, Path]]) -> None:
        """Start recording to ``path`` from the next frame (None: stop and finish the file)."""
        with self._lock:
            self._video_req = None if path is None else str(path)

    def request_csv(self, path: Optional[Union[str, Path]]) -> None:
        """Write the CSV to ``path`` from the next frame (None: stop and finish it)."""
        with self._lock:
            self._csv_req = None if path is None else str(path)

    # ---- worker side -------------------------------------------------
    def write(self, packet) -> List[str]:
        """Apply pending requests, then write ``packet`` to the open sinks (worker thread only).

        Returns:
            One-line error messages of sinks that failed (those sinks are closed and
            dropped; the run goes on without them).
        """
        errors: List[str] = []
        with self._lock:
            vreq, self._video_req = self._video_req, _KEEP
            creq, self._csv_req = self._csv_req, _KEEP
        if vreq is not _KEEP:
            self._close_video()
            if vreq is not None:
                audio = self.audio_from if packet.index == 0 else None  # audio stays in sync only from the start
                try:
                    self.video = VideoSink(vreq, fps=self.fps, time_base=self.time_base, audio_from=audio,
                                           overwrite=self.overwrite)
                except FaceCycleError as e:
                    errors.append(f"recording not started: {e}")
        if creq is not _KEEP:
            self._close_csv()
            if creq is not None:
                try:
                    self.csv = CsvSink(creq, self.code_dim, overwrite=self.overwrite)
                except FaceCycleError as e:
                    errors.append(f"CSV export not started: {e}")
        if self.video is not None:
            try:
                self.video.write(packet)
            except FaceCycleError as e:
                errors.append(f"recording stopped: {e}")
                self._close_video()
        if self.csv is not None:
            try:
                self.csv.write(packet)
            except FaceCycleError as e:
                errors.append(f"CSV export stopped: {e}")
                self._close_csv()
        return errors

    def _close_video(self) -> None:
        if self.video is not None:
            v, self.video = self.video, None
            v.close()
            self.finished.append(str(v.path))
            log.info("video finished: %s (%d frames)", v.path, v.frames)

    def _close_csv(self) -> None:
        if self.csv is not None:
            c, self.csv = self.csv, None
            c.close()
            if self.describe is not None:
                try:
                    info = dict(self.describe())
                    info.update(csv=str(c.path), frames=c.frames, rows=c.rows)
                    write_sidecar(Path(str(c.path)).with_suffix(".json"), info)
                except Exception as e:  # noqa: BLE001 - the CSV itself is complete
                    log.warning("%s: sidecar not written (%s)", c.path, e)
            self.finished.append(str(c.path))
            log.info("CSV finished: %s (%d frames)", c.path, c.frames)

    @property
    def recording(self) -> bool:
        return self.video is not None

    def close(self) -> None:
        """Finish every open file (idempotent; worker thread, or any thread once the worker ended)."""
        try:
            self._close_video()
        finally:
            self._close_csv()
