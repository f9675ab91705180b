"""The source interface: an iterable of :class:`~realtime.types.FramePacket` that is a context manager."""
from __future__ import annotations

import abc
from fractions import Fraction
from typing import Iterator, Optional, TypeVar

from ..types import FramePacket

__all__ = ["Source"]


_S = TypeVar("_S", bound="Source")


class Source(abc.ABC):
    """A frame source.

    Attributes:
        name: what to call it in logs and outputs (a path, ``camera:0``).
        live: True for sources that produce frames at their own pace (cameras,
            live stream URLs, files with ``realtime=True``): a slow pipeline drops
            their oldest frames instead of blocking them.
        fps: nominal frame rate (frames per second), or None if unknown.
        time_base: time base of ``FramePacket.pts``.
        frame_count: expected number of frames, or None if unknown.
        width, height: frame size after rotation (0 until known).
        path: the input file for sinks that remux other streams (audio), or None.
        drops: frames this source discarded because the pipeline was behind.
        errors: damaged packets / frames skipped while decoding.
        frame_files: each frame is a file of its own (``FramePacket.file``): the CSV names it in ``file``.
        stills: the frames are separate pictures, not a video: each is analysed on its own (detected, new track
            ids, nothing smoothed or carried over from the frame before).
    """

    name: str = ""
    live: bool = False
    fps: Optional[float] = None
    time_base: Fraction = Fraction(1, 1000)
    frame_count: Optional[int] = None
    width: int = 0
    height: int = 0
    path: Optional[str] = None
    frame_files: bool = False
    stills: bool = False

    def __init__(self) -> None:
        self.drops = 0
        self.errors = 0

    @abc.abstractmethod
    def __iter__(self) -> Iterator[FramePacket]:
        """Yield frames in presentation order; the image is (H, W, 3) uint8 BGR."""

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def paused_for(self, seconds: float) -> None:
        """The reader stopped pulling frames for ``seconds`` (a pause): a source that paces itself (a file played
        at its own pace) moves its clock on by that much, so that it resumes where it was. Others ignore it: a
        camera's frames go on without us."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        return {"name": self.name, "kind": type(self).__name__, "live": self.live, "fps": self.fps,
                "width": self.width, "height": self.height, "frame_count": self.frame_count}
