"""Webcams through OpenCV (``cv2.VideoCapture``): an index or a device path."""
from __future__ import annotations

import logging
import stat
import sys
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

import cv2

from facecycle.errors import InputError, PipelineError

from ..types import FramePacket
from .base import Source

__all__ = ["CameraSource"]

log = logging.getLogger(__name__)

#: at most this long (s; and half the camera's timeout) and this many frames are discarded at the first read: a
#: driver queues a few frames (V4L2 4 by default, a network camera's connection some dozens), and a camera that runs
#: faster than its reported rate looks queued frame after frame (a 66-fps camera reporting 30 lost 1.35 s)
_SKIP_BUFFERED_MAX_S = 3.0
_SKIP_BUFFERED_MAX_FRAMES = 64


def _arrival_clock() -> Tuple[Callable[[], float], str]:
    """The clock a frame's arrival is read from, and its name: ``CLOCK_BOOTTIME`` where the OS has it (Linux), which
    goes on while the machine is suspended, else :func:`time.perf_counter` (``CLOCK_MONOTONIC`` on Linux, which
    stops then: a laptop that slept 2 h with the camera on resumed with its timestamps 2 h behind the time of day,
    and no gap in the timeline)."""
    boot = getattr(time, "CLOCK_BOOTTIME", None)
    if boot is not None:
        try:
            time.clock_gettime(boot)
        except OSError:  # (a kernel or sandbox without it)
            pass
        else:
            return (lambda: time.clock_gettime(boot)), "boottime"
    return time.perf_counter, "perf_counter"


def _utc_now() -> str:
    """The time of day, UTC, ISO 8601 to the millisecond (``2026-01-05T14:03:07.123Z``)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _open_capture(device: Union[int, str]) -> "cv2.VideoCapture":
    """``cv2.VideoCapture(device)`` with OpenCV's own logging silenced while it probes its backends
    (a missing camera otherwise prints a dozen WARN/ERROR lines to stderr; we raise one clear error)."""
    log_api = getattr(getattr(cv2, "utils", None), "logging", None)
    old = None
    if log_api is not None:
        try:
            old = log_api.getLogLevel()
            log_api.setLogLevel(log_api.LOG_LEVEL_SILENT)
        except Exception:  # noqa: BLE001 - logging control is best effort
            old = None
    try:
        return cv2.VideoCapture(device)
    finally:
        if old is not None:
            log_api.setLogLevel(old)


def _open_quietly(device):
    """``cv2.VideoCapture(device)`` without OpenCV's own error lines on stderr (we raise one clear error)."""
    try:
        lg = cv2.utils.logging
        old = lg.getLogLevel()
        lg.setLogLevel(lg.LOG_LEVEL_SILENT)
    except AttributeError:
        return cv2.VideoCapture(device)
    try:
        return cv2.VideoCapture(device)
    finally:
        lg.setLogLevel(old)


def _check_device_path(device: str) -> None:
    """Refuse a device path that is no camera before OpenCV opens it: a missing ``/dev/videoN`` (OpenCV's FFmpeg
    backend printed a line of its own before our error), a regular file (a video given as a camera was played as
    one: frames dropped, then "no frame for 5 s").

    Raises:
        facecycle.errors.InputError: the path is missing or a regular file.
    """
    p = Path(device)
    try:
        st = p.stat()
    except FileNotFoundError:
        if device.startswith("/dev/"):
            raise InputError(f"camera {device!r}: no such device (is the camera plugged in?)") from None
        return  # not a path (an OpenCV pipeline string): OpenCV decides
    except OSError as e:
        raise InputError(f"camera {device!r}: cannot open ({e.strerror or e})") from None
    if stat.S_ISREG(st.st_mode):
        raise InputError(f"{device}: a file, not a camera device; open it as a video (Analyzer.process_video(path) "
                         "or VideoSource in Python; `facecycle live --input` or `facecycle process`)")
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{device}: a folder, not a camera device")


class CameraSource(Source):
    """A live camera. Timestamps are wall-clock seconds since the first frame (its arrival: the read returning it),
    on a clock that counts a system suspend where the OS has one (``CLOCK_BOOTTIME`` on Linux; elsewhere
    :func:`time.perf_counter`); :meth:`describe` gives the first frame's time of day (``started_at``, UTC) and the
    clock (``arrival_clock``). Frames the camera queued before the first read (while a model loaded) are discarded,
    counted in ``skipped``.

    Args:
        device: camera index (``0``) or device path (``/dev/video2``).
        width, height: requested resolution (the driver may pick another).
        fps: requested frame rate.
        timeout: seconds without a frame before the camera counts as stopped
            (:class:`~facecycle.errors.PipelineError`).
        max_frames: stop after this many frames (None = until stopped).
    """

    live = True
    time_base = Fraction(1, 1000000)

    def __init__(self, device: Union[int, str] = 0, width: Optional[int] = None, height: Optional[int] = None,
                 fps: Optional[float] = None, timeout: float = 5.0, max_frames: Optional[int] = None) -> None:
        super().__init__()
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        self.device = device
        self.name = f"camera:{device}"
        self.timeout = float(timeout)
        self.max_frames = max_frames
        #: frames queued before the first read (while the model loaded), discarded (:meth:`_skip_buffered`)
        self.skipped = 0
        #: the first frame's arrival, time of day (UTC, ISO 8601); None before it
        self.started_at: Optional[str] = None
        self._clock, self._clock_name = _arrival_clock()
        if isinstance(device, str):
            _check_device_path(device)
        self.cap = _open_capture(device)
        if not self.cap.isOpened():
            self.cap.release()
            # macOS asks for the camera once per app, and only from the main thread (the desktop app opens it from
            # a worker): until it is allowed, every open fails alike
            mac = ("; on macOS, allow this terminal (or Python) to use the camera in System Settings > Privacy & "
                   "Security > Camera" if sys.platform == "darwin" else "")
            raise InputError(f"camera {device!r}: cannot open (no such camera or it is busy{mac})")
        if width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
        if height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))
        if fps:
            self.cap.set(cv2.CAP_PROP_FPS, float(fps))
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0) or (float(fps) if fps else 30.0)

    def _skip_buffered(self) -> bool:
        """Discard the frames the driver (or a network camera's connection) queued before the first read: the camera
        was opened before the model loaded, and what it sent meanwhile came in one burst (40 frames dropped in the
        first second, frame 0 analysed 1.8 s late, timestamps 1.6 s behind). Frames are grabbed while they come at
        once; the first that the camera had to send (a grab that waited for it) is kept, and True says one is
        grabbed for the first read to retrieve. A capture without ``grab`` is left as it is."""
        grab = getattr(self.cap, "grab", None)
        if grab is None or not hasattr(self.cap, "retrieve"):
            return False
        fresh = 0.5 / (self.fps or 30.0)  # a grab that took this long waited for the camera
        end = time.monotonic() + min(_SKIP_BUFFERED_MAX_S, self.timeout / 2.0)
        while True:
            t = time.perf_counter()
            if not grab():
                return False
            if (time.perf_counter() - t >= fresh or time.monotonic() >= end
                    or self.skipped + 1 >= _SKIP_BUFFERED_MAX_FRAMES):
                return True  # this one is kept
            self.skipped += 1

    def __iter__(self) -> Iterator[FramePacket]:
        index = 0
        t0: Optional[float] = None
        last_ok = time.monotonic()
        grabbed = self._skip_buffered()
        if self.skipped:
            log.info("%s: skipped %d frames queued before the first read", self.name, self.skipped)
        while self.max_frames is None or index < self.max_frames:
            t = time.perf_counter()
            if grabbed:
                grabbed = False
                ok, img = self.cap.retrieve()
            else:
                ok, img = self.cap.read()
            if not ok or img is None:
                if time.monotonic() - last_ok > self.timeout:
                    raise PipelineError(f"{self.name}: no frame for {self.timeout:g} s (camera stopped?)")
                time.sleep(0.01)
                continue
            last_ok = time.monotonic()
            done = time.perf_counter()
            now = self._clock()
            if t0 is None:
                t0 = now
                self.started_at = _utc_now()
            ts = now - t0
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            self.height, self.width = img.shape[:2]
            yield FramePacket(index=index, pts=int(round(ts * 1e6)), time_base=self.time_base, timestamp=ts,
                              image=img, source=self.name, stats={"decode": done - t})
            index += 1

    def describe(self) -> dict:
        d = super().describe()
        d["skipped_at_start"] = self.skipped
        # the first frame's time of day (timestamp 0 of the CSV), and the clock of the timestamps after it
        d["started_at"] = self.started_at
        d["arrival_clock"] = self._clock_name
        return d

    def close(self) -> None:
        try:
            self.cap.release()
        except Exception:  # noqa: BLE001
            pass
