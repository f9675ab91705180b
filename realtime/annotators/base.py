"""The annotator interface: ``annotate(image, packet) -> image`` (BGR uint8, drawn in place)."""
from __future__ import annotations

import abc
from dataclasses import replace
from typing import Iterable, List, Tuple

import numpy as np

from ..types import FramePacket

__all__ = ["Annotator", "Compose", "color_for", "MIN_ANNOTATED_SIDE"]

#: 16 colours (BGR), each light enough for the black ``#id`` text drawn on it (at least 4.9:1): a 4x4 video-call
#: gallery had two faces per colour with the first 8 alone; the 8 added keep every pair at least 29 CIELAB units apart
#: (the first 8: 32). The id is printed beside each colour all the same.
_PALETTE = [(255, 128, 0), (0, 200, 255), (80, 220, 80), (255, 0, 200), (0, 128, 255), (200, 200, 0),
            (128, 0, 255), (0, 255, 128),
            (200, 150, 255), (255, 220, 140), (140, 235, 255), (200, 255, 200), (80, 90, 255), (120, 170, 215),
            (255, 255, 255), (255, 120, 230)]


def color_for(track_id: int) -> Tuple[int, int, int]:
    """A stable BGR colour per track id (16 distinct ones, then they repeat)."""
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


#: a frame whose longer side is under this many pixels is enlarged (by a whole factor) before the overlay is drawn:
#: on a 48-px face picture no label or panel fits, and one drawn at that size is unreadable once shown larger
MIN_ANNOTATED_SIDE = 320


def _enlarged(image: np.ndarray, packet: FramePacket, k: int) -> Tuple[np.ndarray, FramePacket]:
    """``image`` and a copy of ``packet`` ``k`` times larger: the faces' boxes, landmarks and crops scaled alike."""
    import cv2

    big = cv2.resize(image, (image.shape[1] * k, image.shape[0] * k), interpolation=cv2.INTER_CUBIC)
    faces = [replace(f, box=f.box * k, landmarks=f.landmarks * k,
                     crop_box=None if f.crop_box is None else tuple(v * k for v in f.crop_box))
             for f in packet.faces]
    return big, replace(packet, image=big, faces=faces, annotated=None)


class Compose(Annotator):
    """Apply annotators in order on a copy of the frame; stores the result in ``packet.annotated``.

    A frame under :data:`MIN_ANNOTATED_SIDE` pixels (a face data set's 48-px picture) is enlarged by a whole factor
    first, so ``packet.annotated`` is then larger than ``packet.image``; every other frame keeps its size."""

    def __init__(self, annotators: Iterable[Annotator]) -> None:
        self.annotators: List[Annotator] = list(annotators)

    def annotate(self, image: np.ndarray, packet: FramePacket) -> np.ndarray:
        side = max(image.shape[:2])
        if self.annotators and 0 < side < MIN_ANNOTATED_SIDE:
            out, view = _enlarged(image, packet, -(-MIN_ANNOTATED_SIDE // side))
        else:
            out, view = image.copy(), packet
        for a in self.annotators:
            out = a.annotate(out, view)
        packet.annotated = out
        return out
