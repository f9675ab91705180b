"""The annotator interface: ``annotate(image, packet) -> image`` (BGR uint8, drawn in place)."""
from __future__ import annotations

import abc
from typing import Iterable, List, Tuple

import numpy as np

from ..types import FramePacket

__all__ = ["Annotator", "Compose", "color_for"]

_PALETTE = [(255, 128, 0), (0, 200, 255), (80, 220, 80), (255, 0, 200), (0, 128, 255), (200, 200, 0),
            (128, 0, 255), (0, 255, 128)]


def color_for(track_id: int) -> Tuple[int, int, int]:
    """A stable BGR colour per track id."""
    return _PALETTE[track_id % len(_PALETTE)] if track_id >= 0 else (200, 200, 200)


class Annotator(abc.ABC):
    """Draws something about ``packet`` onto ``image``.

    ``image`` is (H, W, 3) uint8 **BGR**, the frame (or a copy being built up);
    implementations draw in place and return it.
    """

    @abc.abstractmethod
    def annotate(self, image: np.ndarray, packet: FramePacket) -> np.ndarray:
        ...

    def __call__(self, image: np.ndarray, packet: FramePacket) -> np.ndarray:
        return self.annotate(image, packet)


class Compose(Annotator):
    """Apply annotators in order on a copy of the frame; stores the result in ``packet.annotated``."""

    def __init__(self, annotators: Iterable[Annotator]) -> None:
        self.annotators: List[Annotator] = list(annotators)

    def annotate(self, image: np.ndarray, packet: FramePacket) -> np.ndarray:
        out = image.copy()
        for a in self.annotators:
            out = a.annotate(out, packet)
        packet.annotated = out
        return out
