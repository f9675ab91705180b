"""Layout of the overlays: a legible text size for any frame, box tags kept inside the frame, and the placement
of each face's info panel where it hides the least (beside the face if it fits, else a frame corner).

All coordinates are frame pixels, rectangles are ``(x1, y1, x2, y2)`` with x2/y2 exclusive, images BGR uint8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import cv2
import numpy as np

__all__ = ["TextMetrics", "text_metrics", "tag_rect", "place_panel", "shade", "overlap"]

Rect = Tuple[float, float, float, float]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: smallest cap height (px) drawn: below this HERSHEY letters run together
MIN_TEXT_PX = 9


@dataclass(frozen=True)
class TextMetrics:
    """Font scale and row geometry for one frame size.

    Attributes:
        scale: ``cv2.putText`` font scale. px: cap height in pixels. row: height of one text row
        (text plus spacing). pad: inner padding of panels and tags. thick: stroke thickness.
    """

    scale: float
    px: int
    row: int
    pad: int
    thick: int

    def width(self, text: str) -> int:
        return int(cv2.getTextSize(text, _FONT, self.scale, self.thick)[0][0])

    def put(self, image: np.ndarray, text: str, top_left: Tuple[int, int], color) -> None:
        """Draw ``text`` with its top-left corner (cap top) at ``top_left``, vertically centred in a row."""
        x, y = top_left
        base = y + (self.row + self.px) // 2
        cv2.putText(image, text, (int(x), int(base)), _FONT, self.scale, color, self.thick, cv2.LINE_AA)


def text_metrics(image: np.ndarray) -> TextMetrics:
    """Metrics for ``image``: cap height ``max(9, min(H, W) / 48)`` px (9 px on a 256-px close-up, 15 on 720p)."""
    h, w = image.shape[:2]
    px = max(MIN_TEXT_PX, int(round(min(h, w) / 48)))
    (_, ref), _ = cv2.getTextSize("H", _FONT, 1.0, 1)
    scale = px / float(ref)
    thick = 1 if px < 18 else 2
    # a row holds the tallest glyphs plus descenders as this OpenCV build renders them (4.x and 5.x differ)
    (_, th), base = cv2.getTextSize("Hdgy", _FONT, scale, thick)
    row = max(px + max(4, px // 2), th + base + 1)
    return TextMetrics(scale=scale, px=px, row=row, pad=max(2, px // 3), thick=thick)


def tag_rect(image: np.ndarray, box: Sequence[float], label: str, m: TextMetrics) -> Tuple[int, int, int, int]:
    """Where a box's ``#id`` tag goes: on the box's top-left corner, above the box when there is room, else
    just inside it; always fully inside the frame."""
    h, w = image.shape[:2]
    tw, th = m.width(label) + m.pad, m.row
    x1 = int(min(max(0, round(box[0])), max(0, w - tw)))
    y = int(round(box[1])) - th
    if y < 0:
        y = int(min(max(0, round(box[1])), max(0, h - th)))
    return x1, y, x1 + tw, y + th


def overlap(a: Rect, b: Rect) -> float:
    """Intersection area of two rectangles."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_panel(frame_wh: Tuple[int, int], box: Rect, size: Tuple[int, int], faces: Sequence[Rect],
                occupied: Sequence[Rect], margin: int = 4) -> Tuple[int, int]:
    """Top-left corner of a ``size`` (w, h) panel about the face ``box``.

    Candidates, in order of preference: right of the box, left, below, above (each slid into the frame along
    the box edge), then the four frame corners. The first that covers no face and no occupied rectangle
    wins; otherwise the one that hides the least, where the central part of a face (eyes, nose, mouth)
    counts 4x and occupied rectangles (tags, other panels) 8x. The panel is always inside the frame
    (clipped only when it is larger than the frame).
    """
    W, H = frame_wh
    pw, ph = size
    x1, y1, x2, y2 = box

    def clamp(x: float, y: float) -> Tuple[int, int]:
        return int(min(max(0, x), max(0, W - pw))), int(min(max(0, y), max(0, H - ph)))

    cands = [clamp(x2 + margin, y1), clamp(x1 - margin - pw, y1), clamp(x1, y2 + margin),
             clamp(x1, y1 - margin - ph), clamp(margin, margin), clamp(W - pw - margin, margin),
             clamp(margin, H - ph - margin), clamp(W - pw - margin, H - ph - margin)]
    cores = []
    for f in faces:
        fw, fh = f[2] - f[0], f[3] - f[1]
        cores.append((f[0] + 0.2 * fw, f[1] + 0.25 * fh, f[2] - 0.2 * fw, f[3] - 0.1 * fh))
    best, best_cost = cands[0], float("inf")
    for x, y in cands:
        r = (x, y, x + pw, y + ph)
        cost = sum(overlap(r, f) for f in faces) + 3 * sum(overlap(r, c) for c in cores) \
            + 8 * sum(overlap(r, o) for o in occupied)
        if cost < best_cost - 1e-6:
            best, best_cost = (x, y), cost
            if cost == 0:
                break
    return best


def shade(image: np.ndarray, rect: Sequence[int], alpha: float = 0.7) -> None:
    """Darken ``rect`` of ``image`` in place (a translucent background that keeps text legible): over white, the
    panels' (235, 235, 235) text is 6.3:1 against it (WCAG AA: 4.5:1; alpha 0.6 gave 4.3:1)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in rect)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 > x1 and y2 > y1:
        roi = image[y1:y2, x1:x2]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha) + 12 * alpha).astype(np.uint8)
