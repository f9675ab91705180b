"""The one hand-off point between the pipeline's worker threads and the GUI thread.

:class:`FrameBridge` keeps a **single** lock-protected slot holding the latest
frame. The worker overwrites it (:meth:`FrameBridge.offer`); a frame that is
overwritten before the GUI took it counts as a display drop. At most one
``frameReady`` signal is in flight at any time (a "pending" flag is set when it
is emitted and cleared when the GUI takes the frame), so Qt's event queue never
piles up however fast the pipeline runs; the GUI thread only ever takes the
newest frame and never waits on the worker.

Small per-frame face summaries (:class:`FaceSample`, for the side panel's
plots) travel in a separate bounded deque so that the plots see every analysed
frame even when the display drops some.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, List, Optional, Tuple

import numpy as np
from PyQt6.QtCore import QObject, Qt, pyqtSignal, pyqtSlot

__all__ = ["FrameBridge", "FaceSample", "DisplayFrame", "summarize"]


@dataclass(frozen=True)
class DisplayFrame:
    """What the worker hands to the GUI: the analysed packet and the image to paint.

    Attributes:
        packet: the :class:`realtime.types.FramePacket` (faces, stats, timestamps).
        image: QImage (RGB32) already scaled to the live view's size by the worker.
    """

    packet: Any
    image: Any


@dataclass(frozen=True)
class FaceSample:
    """What the side panel plots for one face in one frame.

    Attributes:
        timestamp: seconds from the start of the source.
        track_id: the face's track id.
        intensity: expression intensity (NaN when unknown).
        emotions: (7,) float32 probabilities in ``realtime.types.EMOTIONS`` order, or None.
        pose: (3,) float32 (Rx pitch, Ry yaw, Rz roll) radians, or None.
        emotion: the face's emotion label (``Face.emotion``: held with hysteresis, as the CSV's), or None.
    """

    timestamp: float
    track_id: int
    intensity: float
    emotions: Optional[np.ndarray]
    pose: Optional[np.ndarray]
    emotion: Optional[str] = None


def summarize(packet: Any) -> List[FaceSample]:
    """FaceSamples of every face of a :class:`realtime.types.FramePacket`."""
    out = []
    for f in packet.faces:
        out.append(FaceSample(float(packet.timestamp), int(f.track_id), float(f.intensity),
                              None if f.emotions is None else np.asarray(f.emotions, np.float32),
                              None if f.pose is None else np.asarray(f.pose, np.float32), f.emotion))
    return out


class FrameBridge(QObject):
    """Latest-frame hand-off from worker threads to the GUI thread.

    Worker side (any thread): :meth:`offer`, :meth:`report_error`, :meth:`report_started`,
    :meth:`report_note`, :meth:`report_finished`. GUI side: connect to the signals and call :meth:`take` /
    :meth:`take_samples`. Create it in the GUI thread.

    Signals (the ``int`` is the run's generation from :meth:`new_run`, so that a late
    signal of an earlier run is never mistaken for the current one's):
        frameReady(): a new frame is in the slot (never more than one pending).
        errorRaised(int, str): a one-line error message from the worker.
        started(int, dict): the pipeline is running; the dict describes it (model, backend, detector...).
        finished(int, str): the worker ended; the reason ("end of input", "stopped", "error").
        noted(int, str, dict): the run found something out about its input (a note of
            :data:`ui.pipeline_adapter.NOTES`: its name and value), once per note and run.
    """

    frameReady = pyqtSignal()
    errorRaised = pyqtSignal(int, str)
    started = pyqtSignal(int, dict)
    finished = pyqtSignal(int, str)
    noted = pyqtSignal(int, str, dict)
    _error = pyqtSignal(int, str)
    _started = pyqtSignal(int, dict)
    _finished = pyqtSignal(int, str)
    _noted = pyqtSignal(int, str, dict)
    _ready = pyqtSignal()

    def __init__(self, max_samples: int = 4096, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)
        self._slot: Any = None
        self._pending = False
        self._samples: Deque[FaceSample] = deque(maxlen=max_samples)
        self.offered = 0
        self.taken = 0
        self.drops = 0
        self.generation = 0
        # worker threads emit the private signals; queued connections deliver them in the GUI thread
        q = Qt.ConnectionType.QueuedConnection
        self._ready.connect(self.frameReady, q)
        self._error.connect(self.errorRaised, q)
        self._started.connect(self.started, q)
        self._finished.connect(self.finished, q)
        self._noted.connect(self.noted, q)

    # ---- worker side -------------------------------------------------
    def offer(self, item: Any, samples: Optional[List[FaceSample]] = None, wait: float = 0.0) -> bool:
        """Put ``item`` in the slot, replacing (and counting as dropped) an untaken one.

        Args:
            wait: seconds the *worker* may wait for the GUI to take the previous
                frame before replacing it (0 = never wait: live sources). A short
                wait lets files be shown frame by frame when the GUI keeps up on
                average, without ever blocking the GUI thread or queueing more
                than one frame.

        Returns:
            True when an untaken frame was replaced (a display drop).
        """
        with self._lock:
            if self._slot is not None and wait > 0:
                self._taken.wait_for(lambda: self._slot is None, timeout=wait)
            dropped = self._slot is not None
            if dropped:
                self.drops += 1
            self._slot = item
            self.offered += 1
            if samples:
                self._samples.extend(samples)
            emit = not self._pending
            self._pending = True
        if emit:
            self._ready.emit()
        return dropped

    def report_error(self, generation: int, message: str) -> None:
        self._error.emit(int(generation), str(message))

    def report_started(self, generation: int, info: dict) -> None:
        self._started.emit(int(generation), dict(info))

    def report_note(self, generation: int, name: str, value: dict) -> None:
        self._noted.emit(int(generation), str(name), dict(value))

    def report_finished(self, generation: int, reason: str) -> None:
        self._finished.emit(int(generation), str(reason))

    # ---- GUI side ----------------------------------------------------
    @pyqtSlot()
    def take(self) -> Any:
        """The newest frame, or None if there is none since the last take (never blocks for long)."""
        with self._lock:
            item, self._slot = self._slot, None
            self._pending = False
            if item is not None:
                self.taken += 1
                self._taken.notify_all()
            return item

    def take_samples(self) -> List[FaceSample]:
        with self._lock:
            out = list(self._samples)
            self._samples.clear()
            return out

    def counts(self) -> Tuple[int, int, int]:
        """(offered, taken, dropped) frames so far."""
        with self._lock:
            return self.offered, self.taken, self.drops

    def new_run(self) -> int:
        """Clear the slot and the counters for a new run; returns the run's generation number."""
        self.reset()
        with self._lock:
            self.generation += 1
            return self.generation

    def reset(self) -> None:
        with self._lock:
            self._slot = None
            self._pending = False
            self._samples.clear()
            self.offered = self.taken = self.drops = 0
            self._taken.notify_all()
