"""Frames a caller already holds in memory: their own camera SDK, a decoder of their own, a stack of arrays."""
from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any, Iterable, Iterator

import numpy as np

from facecycle.errors import InputError, UsageError

from ..types import FramePacket, ImageTypeError, ImageValueError, as_bgr_image
from .base import Source

__all__ = ["FrameSource"]


class FrameSource(Source):
    """Any iterable of images, or of ``(image, timestamp)`` pairs, as a source: tracked, smoothed and written like
    a video's frames (``Analyzer.process_video(FrameSource(frames))``, or the iterable itself).

    Each image is (H, W, 3) BGR uint8 (OpenCV's order; grey (H, W) and BGRA (H, W, 4) are taken too,
    :func:`~realtime.types.as_bgr_image`); a (N, H, W, 3) array is N frames, a (N, H, W) one N grey frames. Each
    image is copied where it is the caller's own buffer, so a caller may refill one array for every frame.
    ``timestamp`` is in seconds and must increase; it is counted from the first frame's (wall-clock or a
    device's clock: the first frame is at 0, as a video's; the CSV's ``timestamp`` is seconds from the start);
    without one, frame ``i`` is at ``i / fps`` (``live``: the seconds since frame 0 arrived, as a camera's).
    ``pts`` counts thousandths of a frame (``time_base`` 1 / (1000 fps): frame ``i`` is ``i * 1000``). The
    iterable is read once, lazily: a generator fed by a camera works.

    Args:
        frames: the images (or pairs).
        fps: frame rate for frames without timestamps, and the annotated video's rate.
        name: what to call the source in logs and the sidecar.
        live: True for frames that arrive at their own pace (a camera callback): a slow pipeline then drops the
            oldest instead of waiting.
        stills: the images are separate pictures, not a video's frames (:attr:`Source.stills`): each is read on its
            own, as ``Analyzer.analyze_image`` reads it (detected afresh with the still's second tries, new face ids,
            nothing smoothed or carried over; ``process_video(images, images="stills")`` sets it).

    Raises:
        facecycle.errors.InputError (while iterating): an item that is not an image, or a timestamp that does not
        increase (the message names the frame).
    """

    def __init__(self, frames: Iterable[Any], fps: float = 30.0, name: str = "frames", live: bool = False,
                 stills: bool = False) -> None:
        super().__init__()
        if isinstance(frames, (str, bytes)) or not hasattr(frames, "__iter__"):
            raise UsageError(f"frames must be an iterable of images, not {type(frames).__name__}")
        if (isinstance(frames, np.ndarray) and frames.ndim < 4 and frames.dtype != object
                and not (frames.ndim == 3 and frames.shape[2] not in (1, 3, 4))):
            # (N, H, W) with W not 1, 3 or 4 is N grey frames; (H, W, 3) and the like are one image
            raise UsageError(f"an array of shape {frames.shape} is one image, not frames: use Analyzer.analyze_image, "
                             "or stack frames as (N, H, W, 3) (or grey ones as (N, H, W))")
        if (isinstance(frames, tuple) and len(frames) == 2 and isinstance(frames[0], np.ndarray)
                and isinstance(frames[1], (int, float, np.number)) and not isinstance(frames[1], bool)):
            # one (image, seconds) pair was read as two frames: the image, then "frame 1: ... got float"
            raise UsageError("frames is one (image, seconds) pair: give an iterable of them, [(image, seconds)], "
                             "or use Analyzer.analyze_image(image, timestamp=seconds)")
        if not fps or fps <= 0:
            raise UsageError(f"fps must be > 0, not {fps}")
        self._frames = frames
        self.fps = float(fps)
        self.name = name
        self.live = bool(live)
        self.stills = bool(stills)
        self.frame_count = len(frames) if hasattr(frames, "__len__") else None  # type: ignore[arg-type]
        # decided before frame 0 (the sinks read it): 1/1000 of a frame, so that frame i is pts i*1000 exactly and
        # a caller's timestamp is kept to that precision
        self._rate = Fraction(self.fps).limit_denominator(1001)
        self.time_base = 1 / (self._rate * 1000)

    def __iter__(self) -> Iterator[FramePacket]:
        last = None
        t0 = 0.0  # when frame 0 arrived (live frames are timed from it)
        first: Any = None  # the first pair's own timestamp: the others are counted from it
        for index, item in enumerate(self._frames):
            t = time.perf_counter()
            try:
                if isinstance(item, tuple):
                    if len(item) != 2:
                        raise ValueError(f"expected an image or (image, timestamp), got a tuple of {len(item)}")
                    image, ts = as_bgr_image(item[0]), float(item[1])
                else:
                    image = as_bgr_image(item)
                    # a live source's frame is timed when it arrives (as a camera's), others by their index
                    ts = (time.perf_counter() - t0 if index else 0.0) if self.live else float(index / self._rate)
                    if index == 0:
                        t0 = time.perf_counter()  # (monotonic ticks in 15.6 ms on Windows before 3.13)
                raw = item[0] if isinstance(item, tuple) else item
                if isinstance(raw, np.ndarray) and np.shares_memory(image, raw):
                    # the caller's own buffer: a camera SDK or cv2's cap.read(buf) refills it with the next frame
                    # while this one still waits in the pipeline's queues
                    image = image.copy()
                if not math.isfinite(ts):
                    raise ValueError(f"the timestamp is {ts}")
                if last is not None and not ts > last:
                    raise ValueError(f"timestamps must increase ({ts} s after {last} s)")
            except (TypeError, ValueError) as e:  # one line naming the frame, not a pipeline failure
                # an item that is no image raises what analyze_image raises for it (a TypeError or ValueError that
                # is also an InputError); a timestamp's mistake, an InputError
                kind = type(e) if isinstance(e, (ImageTypeError, ImageValueError)) else InputError
                raise kind(f"{self.name}: frame {index}: {e}") from None
            last = ts
            if isinstance(item, tuple):
                first = ts if first is None else first
                ts = ts - first
            self.height, self.width = image.shape[:2]
            yield FramePacket(index=index, pts=int(round(ts / self.time_base)), time_base=self.time_base, timestamp=ts,
                              image=image, source=self.name, stats={"decode": time.perf_counter() - t})
