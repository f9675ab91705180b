"""Layout of the overlays: a legible text size for any frame, box tags kept inside the frame, and the placement
of each face's info panel where it hides the least (beside the face if it fits, else a frame corner), or, where a
panel would cover another face (a crowded video-call gallery), of a compact label attached to the face's box.

All coordinates are frame pixels, rectangles are ``(x1, y1, x2, y2)`` with x2/y2 exclusive, images BGR uint8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["TextMetrics", "text_metrics", "metrics_for_px", "tag_rect", "place_panel", "place_label",
           "panel_candidates", "label_candidates", "fits", "shade", "overlap", "gap", "inset"]

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
    return metrics_for_px(max(MIN_TEXT_PX, int(round(min(h, w) / 48))))


def metrics_for_px(px: int) -> TextMetrics:
    """Metrics for a cap height of ``px`` pixels (at least :data:`MIN_TEXT_PX`)."""
    px = max(MIN_TEXT_PX, int(px))
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


def gap(a: Rect, b: Rect) -> float:
    """Distance between two rectangles (0 when they touch or overlap)."""
    dx = max(0.0, b[0] - a[2], a[0] - b[2])
    dy = max(0.0, b[1] - a[3], a[1] - b[3])
    return float(np.hypot(dx, dy))


def inset(r: Rect, frac: float) -> Rect:
    """``r`` shrunk by ``frac`` of its width and height on each side."""
    dx, dy = frac * (r[2] - r[0]), frac * (r[3] - r[1])
    return r[0] + dx, r[1] + dy, r[2] - dx, r[3] - dy


def _core(f: Rect) -> Rect:
    """The central part of a face box (eyes, nose, mouth)."""
    fw, fh = f[2] - f[0], f[3] - f[1]
    return f[0] + 0.2 * fw, f[1] + 0.25 * fh, f[2] - 0.2 * fw, f[3] - 0.1 * fh


def _overlaps(r: np.ndarray, o: Sequence[Rect]) -> np.ndarray:
    """Intersection areas of the rectangles ``r`` (n, 4) with each of ``o``: (n, len(o))."""
    o = np.asarray(o, np.float64).reshape(-1, 4)
    w = np.minimum(r[:, None, 2], o[None, :, 2]) - np.maximum(r[:, None, 0], o[None, :, 0])
    h = np.minimum(r[:, None, 3], o[None, :, 3]) - np.maximum(r[:, None, 1], o[None, :, 1])
    return np.maximum(w, 0.0) * np.maximum(h, 0.0)


def _gaps(r: np.ndarray, o: Sequence[Rect]) -> np.ndarray:
    """Distances (as :func:`gap`) of the rectangles ``r`` (n, 4) to each of ``o``: (n, len(o))."""
    o = np.asarray(o, np.float64).reshape(-1, 4)
    dx = np.maximum(np.maximum(o[None, :, 0] - r[:, None, 2], r[:, None, 0] - o[None, :, 2]), 0.0)
    dy = np.maximum(np.maximum(o[None, :, 1] - r[:, None, 3], r[:, None, 1] - o[None, :, 3]), 0.0)
    return np.hypot(dx, dy)


def _allowed(r: np.ndarray, box: Rect, avoid: Sequence[Rect] = (), max_gap: Optional[float] = None,
             own_max: Optional[float] = None, rivals: Sequence[Rect] = (), rival_slack: float = 0.0) -> np.ndarray:
    """Which of the rectangles ``r`` (n, 4) keep to the constraints (see :func:`place_panel`): (n,) bool."""
    ok = np.ones(len(r), bool)
    if len(avoid):
        ok &= ~(_overlaps(r, avoid) > 0).any(axis=1)
    own_gap = _gaps(r, [box])[:, 0]
    if max_gap is not None:
        ok &= own_gap <= max_gap
    if own_max is not None:
        ok &= _overlaps(r, [box])[:, 0] <= own_max * max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    if len(rivals):
        ok &= ~(_gaps(r, rivals).min(axis=1) + rival_slack < own_gap)
    return ok


def fits(rect: Rect, box: Rect, avoid: Sequence[Rect] = (), max_gap: Optional[float] = None,
         own_max: Optional[float] = None, rivals: Sequence[Rect] = (), rival_slack: float = 0.0) -> bool:
    """Whether ``rect``, an overlay of the face ``box``, keeps to the constraints of :func:`place_panel`
    (``rival_slack``: how many pixels nearer to a rival than to ``box`` it may be)."""
    return bool(_allowed(np.array([rect], np.float64), box, avoid, max_gap, own_max, rivals, rival_slack)[0])


def _pick(cands, size, faces, occupied, avoid, max_gap, box, strict, own_max=None,
          rivals=(), with_cost=False):
    """The first candidate that hides nothing, else the one that hides the least (faces 1x, their central part 4x,
    occupied rectangles 8x). With ``strict``, candidates over an ``avoid`` rectangle, further than ``max_gap``
    from ``box``, over more than ``own_max`` of ``box`` or nearer to a ``rivals`` box than to ``box`` are out
    (None when none is left). ``with_cost``: also return its cost."""
    pw, ph = size
    r = np.array([(x, y, x + pw, y + ph) for x, y in cands], np.float64)
    ok = _allowed(r, box, avoid, max_gap, own_max, rivals) if strict else np.ones(len(cands), bool)
    cost = np.zeros(len(cands))
    if len(faces):
        cost += _overlaps(r, faces).sum(axis=1) + 3 * _overlaps(r, [_core(f) for f in faces]).sum(axis=1)
    if len(occupied):
        cost += 8 * _overlaps(r, occupied).sum(axis=1)
    best, best_cost = (None if strict else cands[0]), float("inf")
    for k, (x, y) in enumerate(cands):
        if not ok[k]:
            continue
        if cost[k] < best_cost - 1e-6:
            best, best_cost = (x, y), float(cost[k])
            if cost[k] == 0:
                break
    return (best, best_cost) if with_cost else best


def place_panel(frame_wh: Tuple[int, int], box: Rect, size: Tuple[int, int], faces: Sequence[Rect],
                occupied: Sequence[Rect], margin: int = 4, *, avoid: Optional[Sequence[Rect]] = None,
                max_gap: Optional[float] = None, own_max: Optional[float] = None,
                rivals: Sequence[Rect] = ()) -> Optional[Tuple[int, int]]:
    """Top-left corner of a ``size`` (w, h) panel about the face ``box``.

    Candidates, in order of preference: right of the box, left, below, above (each slid into the frame along
    the box edge), then the four frame corners. The first that covers no face and no occupied rectangle
    wins; otherwise the one that hides the least, where the central part of a face (eyes, nose, mouth)
    counts 4x and occupied rectangles (tags, other panels) 8x. The panel is always inside the frame
    (clipped only when it is larger than the frame).

    With ``avoid`` (rectangles the panel must not touch at all: the other faces, their tags, the panels already
    placed), ``max_gap`` (the farthest the panel may be from ``box``: a corner across the frame tells nothing
    about the face), ``own_max`` (the largest share of ``box`` the panel may cover: a panel as large as a small
    face hides it) or ``rivals`` (the other faces' boxes: a panel nearer to one of them than to ``box`` reads as
    theirs), only the candidates that keep to all of these count, more of them beside the box (slid to its
    middle and its other end) are tried after the corners, and None is returned when none is left.
    """
    strict = avoid is not None or max_gap is not None or own_max is not None or bool(rivals)
    cands = panel_candidates(frame_wh, box, size, margin, more=strict)
    return _pick(cands, size, faces, occupied, avoid or (), max_gap, box, strict, own_max, rivals)


def panel_candidates(frame_wh: Tuple[int, int], box: Rect, size: Tuple[int, int], margin: int = 4,
                     more: bool = False) -> List[Tuple[int, int]]:
    """:func:`place_panel`'s candidate top-left corners, in its order of preference (``more``: with the slid ones)."""
    W, H = frame_wh
    pw, ph = size
    x1, y1, x2, y2 = box

    def clamp(x: float, y: float) -> Tuple[int, int]:
        return int(min(max(0, x), max(0, W - pw))), int(min(max(0, y), max(0, H - ph)))

    cands = [clamp(x2 + margin, y1), clamp(x1 - margin - pw, y1), clamp(x1, y2 + margin),
             clamp(x1, y1 - margin - ph), clamp(margin, margin), clamp(W - pw - margin, margin),
             clamp(margin, H - ph - margin), clamp(W - pw - margin, H - ph - margin)]
    if more:
        cy, cx = (y1 + y2 - ph) / 2, (x1 + x2 - pw) / 2
        cands += [clamp(x2 + margin, cy), clamp(x1 - margin - pw, cy), clamp(x2 + margin, y2 - ph),
                  clamp(x1 - margin - pw, y2 - ph), clamp(cx, y2 + margin), clamp(cx, y1 - margin - ph),
                  clamp(x2 - pw, y2 + margin), clamp(x2 - pw, y1 - margin - ph)]
    return cands


def place_label(frame_wh: Tuple[int, int], box: Rect, size: Tuple[int, int], faces: Sequence[Rect],
                occupied: Sequence[Rect], avoid: Sequence[Rect],
                tag: Optional[Rect] = None) -> Tuple[Tuple[int, int], bool, float]:
    """Top-left corner of a compact ``size`` (w, h) label attached to the face ``box``, whether it keeps off
    every ``avoid`` rectangle, and what it hides (0: nothing; as :func:`place_panel` counts).

    Candidates: under the box (left-aligned, centred, right-aligned), over it (right-aligned, and above the box's
    ``#id`` tag ``tag``), inside its bottom edge (over the chin: the face's own), beside it. The first that keeps off
    ``avoid`` and hides nothing wins, else the one of those that hides the least; where every candidate touches
    ``avoid``, the one that hides the least with ``avoid`` counted as occupied.
    """
    cands = label_candidates(frame_wh, box, size, tag)
    pos, cost = _pick(cands, size, faces, occupied, avoid, None, box, True, with_cost=True)
    if pos is not None:
        return pos, True, cost
    pos, cost = _pick(cands, size, faces, list(occupied) + list(avoid), (), None, box, False, with_cost=True)
    return pos, False, cost


def label_candidates(frame_wh: Tuple[int, int], box: Rect, size: Tuple[int, int],
                     tag: Optional[Rect] = None) -> List[Tuple[int, int]]:
    """:func:`place_label`'s candidate top-left corners, in its order of preference."""
    W, H = frame_wh
    lw, lh = size
    x1, y1, x2, y2 = box

    def clamp(x: float, y: float) -> Tuple[int, int]:
        return int(min(max(0, x), max(0, W - lw))), int(min(max(0, y), max(0, H - lh)))

    cx = (x1 + x2 - lw) / 2
    top = min(y1, tag[1]) if tag is not None else y1
    return [clamp(x1, y2), clamp(cx, y2), clamp(x2 - lw, y2), clamp(x2 - lw, y1 - lh), clamp(x1, top - lh),
            clamp(x1, y2 - lh), clamp(x2, y1), clamp(x1 - lw, y1)]


def shade(image: np.ndarray, rect: Sequence[int], alpha: float = 0.7) -> None:
    """Darken ``rect`` of ``image`` in place (a translucent background that keeps text legible): over white, the
    panels' (235, 235, 235) text is 6.3:1 against it (WCAG AA: 4.5:1; alpha 0.6 gave 4.3:1)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in rect)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 > x1 and y2 > y1:
        roi = image[y1:y2, x1:x2]
        roi[:] = (roi.astype(np.float32) * (1.0 - alpha) + 12 * alpha).astype(np.uint8)
