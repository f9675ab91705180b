"""Link per-frame face detections into face tracks (greedy IoU matching) and crop them.

Boxes are float ``(x0, y0, x1, y1)`` in pixels of the decoded frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

__all__ = ["iou", "Track", "IoUTracker", "loose_square_box", "crop_square"]

Box = Tuple[float, float, float, float]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


@dataclass
class Track:
    """One face track: its id, the last box and the frame it was last seen in."""

    tid: int
    box: Box
    last_frame: int
    n: int = 0


@dataclass
class IoUTracker:
    """Greedy IoU tracker.

    Each detection joins the live track with the highest IoU above
    ``min_iou`` (seen within ``max_gap`` frames); otherwise it starts a new track.
    """

    min_iou: float = 0.3
    max_gap: int = 10
    tracks: List[Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, frame: int, boxes: Sequence[Box]) -> List[int]:
        """Assign a track id to every box of ``frame``; returns the ids in box order."""
        live = [t for t in self.tracks if frame - t.last_frame <= self.max_gap]
        pairs = sorted(
            ((iou(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(live)), reverse=True
        )
        ids = [-1] * len(boxes)
        used = set()
        for s, i, j in pairs:
            if s < self.min_iou:
                break
            if ids[i] >= 0 or j in used:
                continue
            ids[i] = live[j].tid
            used.add(j)
            live[j].box, live[j].last_frame = tuple(boxes[i]), frame
            live[j].n += 1
        for i, b in enumerate(boxes):
            if ids[i] < 0:
                t = Track(self.next_id, tuple(b), frame, 1)
                self.next_id += 1
                self.tracks.append(t)
                ids[i] = t.tid
        return ids


def loose_square_box(box_xyxy: Sequence[float], scale: float = 1.7) -> Box:
    """The pipeline's loose square (:func:`realtime.crops.loose_square_box`) as an xyxy box.

    Training crops and inference crops come from the same function, so the
    model sees faces framed exactly as it was trained.
    """
    from realtime.crops import loose_square_box as square

    x0, y0, side = square(box_xyxy, scale)
    return (float(x0), float(y0), float(x0 + side), float(y0 + side))


def crop_square(image: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Crop the square xyxy ``box`` (may leave the image: edge replication) and resize to ``size``².

    Delegates to :func:`realtime.crops.crop_square`.

    Args:
        image: (H, W, 3) uint8 (any colour order; kept).
    Returns:
        (size, size, 3) uint8.
    """
    from realtime.crops import crop_square as cut

    x0, y0, x1, _ = (float(v) for v in box)
    return cut(image, (int(round(x0)), int(round(y0)), max(1, int(round(x1 - x0)))), size)
