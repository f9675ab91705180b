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
    """A square box centred on ``box_xyxy`` with side ``scale`` × its longer side (VoxCeleb-like)."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = max(x1 - x0, y1 - y0) * scale / 2
    return (cx - s, cy - s, cx + s, cy + s)


def crop_square(image: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Crop ``box`` (may leave the image: padded with edge replication) and resize to ``size``².

    Args:
        image: (H, W, 3) uint8 (any colour order; kept).
    Returns:
        (size, size, 3) uint8.
    """
    import cv2

    x0, y0, x1, y1 = box
    side = max(x1 - x0, 1e-3)
    # affine map: box -> [0, size)
    a = size / side
    m = np.array([[a, 0, -x0 * a], [0, a, -y0 * a]], np.float32)
    interp = cv2.INTER_AREA if a < 1 else cv2.INTER_LINEAR
    if a < 0.5:  # shrink first for proper anti-aliasing
        ix0, iy0 = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
        ix1, iy1 = int(min(image.shape[1], np.ceil(x1))), int(min(image.shape[0], np.ceil(y1)))
        if ix1 > ix0 and iy1 > iy0:
            sub = image[iy0:iy1, ix0:ix1]
            f = 2.0 * a
            sub = cv2.resize(sub, (max(1, int(round(sub.shape[1] * f))), max(1, int(round(sub.shape[0] * f)))),
                             interpolation=cv2.INTER_AREA)
            m = np.array([[0.5, 0, (ix0 - x0) * a], [0, 0.5, (iy0 - y0) * a]], np.float32)
            m[0, 0] = a * (ix1 - ix0) / sub.shape[1]
            m[1, 1] = a * (iy1 - iy0) / sub.shape[0]
            return cv2.warpAffine(sub, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(image, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
