"""The annotators: boxes + ids, landmarks, pose axes, the face panel (emotion bars, intensity gauge,
neutral-face thumbnail), and the neutralized view (neutral face pasted back)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..crops import paste_square
from ..pose import euler_to_rotation
from ..types import EMOTIONS
from .base import Annotator, color_for
from .layout import place_panel, shade, tag_rect, text_metrics

__all__ = ["BoxAnnotator", "LandmarkAnnotator", "PoseAxesAnnotator", "FacePanelAnnotator",
           "NeutralizedFaceAnnotator", "InfoAnnotator"]


def _thick(image: np.ndarray) -> int:
    return max(1, int(round(max(image.shape[:2]) / 500)))


def _face_thick(image: np.ndarray, box) -> int:
    """A stroke for one face's marks: the frame's (:func:`_thick`), at most a 60th of the face's width. Sized by the
    frame alone, a 105-px face in a 4K frame had 8-px box lines and 20-px landmark dots that hid its eyes."""
    w = float(box[2] - box[0]) if np.all(np.isfinite(box[:4])) else 0.0
    return max(1, min(_thick(image), int(round(w / 60))))


class BoxAnnotator(Annotator):
    """Face boxes with an ``#id`` tag inside the frame (the face panel shows the emotion)."""

    def annotate(self, image, packet):
        m = text_metrics(image)
        for f in packet.faces:
            c = color_for(f.track_id)
            x1, y1, x2, y2 = (int(round(v)) for v in f.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), c, _face_thick(image, f.box), cv2.LINE_AA)
            label = f"#{f.track_id}"
            tx1, ty1, tx2, ty2 = tag_rect(image, f.box, label, m)
            cv2.rectangle(image, (tx1, ty1), (tx2, ty2), c, -1)
            m.put(image, label, (tx1 + m.pad // 2, ty1), (0, 0, 0))
        return image


class LandmarkAnnotator(Annotator):
    """The 5 landmarks as dots."""

    def annotate(self, image, packet):
        for f in packet.faces:
            if not np.all(np.isfinite(f.landmarks)):  # a detector without landmarks
                continue
            r = _face_thick(image, f.box) + 1
            for x, y in f.landmarks:
                cv2.circle(image, (int(round(x)), int(round(y))), r, (0, 255, 255), -1, cv2.LINE_AA)
        return image


class PoseAxesAnnotator(Annotator):
    """Head-pose axes drawn from the nose: x red, y green, z (facing direction) blue."""

    def __init__(self, length: float = 0.5) -> None:
        self.length = length  # fraction of the face box width

    def annotate(self, image, packet):
        for f in packet.faces:
            if f.pose is None or not np.all(np.isfinite(f.pose)):
                continue
            t = _face_thick(image, f.box) + 1
            R = euler_to_rotation(f.pose)
            L = (f.box[2] - f.box[0]) * self.length
            axes = R @ (np.eye(3) * L)  # columns: rotated x, y, z axes (camera coords, pixels at depth f)
            nose = f.landmarks[2]
            for k, col in ((0, (0, 0, 255)), (1, (0, 255, 0)), (2, (255, 0, 0))):
                v = axes[:, k]
                if k == 2:
                    v = -v  # the face looks towards the camera (-z)
                end = (int(round(nose[0] + v[0])), int(round(nose[1] + v[1])))
                cv2.arrowedLine(image, (int(nose[0]), int(nose[1])), end, col, t, cv2.LINE_AA, tipLength=0.15)
        return image


class FacePanelAnnotator(Annotator):
    """One info panel per face: ``#id`` and top emotion, the 7 emotion bars, the intensity gauge and (with
    neutralize) the neutral-face thumbnail, laid out by :mod:`realtime.annotators.layout`.

    The panel keeps a legible text size whatever the face size (at least ~9 px text on a 256-px frame), has
    a translucent dark background so it reads over hair or background, and is placed beside the face where
    it fits, else in the frame corner that covers the least of any face and of the box tags (close-ups).
    Panels of several faces do not overlap each other when there is room.

    Args:
        emotions: the emotion rows (skipped for faces without an expression head).
        intensity: the expression-intensity gauge row, relative to ``full_scale``.
        thumbnail: the neutral face (faces computed with neutralize only).
        full_scale: intensity shown as a full gauge.
    """

    def __init__(self, emotions: bool = True, intensity: bool = True, thumbnail: bool = True,
                 full_scale: float = 1.0) -> None:
        self.emotions = emotions
        self.intensity = intensity
        self.thumbnail = thumbnail
        self.full_scale = full_scale

    #: labels on frames whose shorter side is under 480 px (full names would cover too much of a close-up)
    SHORT = {"angry": "ang", "disgust": "dis", "fear": "fea", "happy": "hap", "neutral": "neu", "sad": "sad",
             "surprise": "sur", "intensity": "int"}

    def _rows(self, f, short: bool) -> list:
        rows = []
        if self.emotions and f.emotions is not None:
            rows += [(name, float(p), None) for name, p in zip(EMOTIONS, f.emotions, strict=True)]
        if self.intensity and math.isfinite(f.intensity):
            rows.append(("intensity", min(1.0, max(0.0, f.intensity / self.full_scale)), (0, 165, 255)))
        return [(self.SHORT[n] if short else n, v, c) for n, v, c in rows]

    def annotate(self, image, packet):
        h, w = image.shape[:2]
        m = text_metrics(image)
        faces = packet.faces
        boxes = [tuple(float(v) for v in f.box) for f in faces]
        occupied = [tag_rect(image, f.box, f"#{f.track_id}", m) for f in faces]
        short = min(h, w) < 480
        for f in faces:
            rows = self._rows(f, short)
            thumb = f.neutral if self.thumbnail and f.neutral is not None else None
            if not rows and thumb is None:
                continue
            col = color_for(f.track_id)
            header = f"#{f.track_id}" + (f" {f.emotion}" if self.emotions and f.emotion else "")
            label_w = max(m.width(r[0]) for r in rows) if rows else 0
            bar_w = max(3 * m.row, 36)
            pw = m.pad * 2 + max(m.width(header), label_w + m.pad + bar_w if rows else 0)
            bar_w = pw - 3 * m.pad - label_w  # bars fill the panel's width
            ts = 0
            if thumb is not None:
                ts = max(32, int(min(h, w) * 0.18))
                ts = min(ts, pw - 2 * m.pad) if rows and pw - 2 * m.pad >= 32 else ts
                pw = max(pw, ts + 2 * m.pad)
            ph = m.pad * 2 + m.row * (1 + len(rows)) + (ts + m.pad if thumb is not None else 0)
            x, y = place_panel((w, h), tuple(float(v) for v in f.box), (pw, ph), boxes, occupied, m.pad)
            occupied.append((x, y, x + pw, y + ph))
            shade(image, (x, y, x + pw, y + ph))
            cv2.rectangle(image, (x, y), (x + pw - 1, y + ph - 1), col, 1, cv2.LINE_AA)
            cy = y + m.pad
            # the header on a strip of the track's colour, dark text, as the box's #id tag: the colour as text on
            # the grey panel was hard to read (blue on blue-grey)
            cv2.rectangle(image, (x, y), (x + pw - 1, cy + m.row - 1), col, -1)
            m.put(image, header, (x + m.pad, cy), (0, 0, 0))
            cy += m.row
            if thumb is not None:
                t = cv2.resize(thumb[..., ::-1], (ts, ts), interpolation=cv2.INTER_AREA)
                x0 = x + m.pad
                y1, x1 = min(h, cy + ts), min(w, x0 + ts)
                if y1 > cy and x1 > x0:  # (clipped when the panel is taller than the frame)
                    image[cy:y1, x0:x1] = t[: y1 - cy, : x1 - x0]
                    cv2.rectangle(image, (x0, cy), (x1 - 1, y1 - 1), col, 1)
                cy += ts + m.pad
            bx = x + m.pad + label_w + m.pad
            for name, v, c in rows:
                m.put(image, name, (x + m.pad, cy), (235, 235, 235))
                y0, y1 = cy + max(1, m.row // 6), cy + m.row - max(2, m.row // 5)
                cv2.rectangle(image, (bx, y0), (bx + bar_w, y1), (70, 70, 70), -1)
                cv2.rectangle(image, (bx, y0), (bx + int(round(bar_w * v)), y1), c or col, -1)
                cy += m.row
        return image


class NeutralizedFaceAnnotator(Annotator):
    """The neutralized view: each face replaced by its neutral face, blended with a feathered mask."""

    def annotate(self, image, packet):
        for f in packet.faces:
            if f.neutral is not None and f.crop_box is not None:
                paste_square(image, np.ascontiguousarray(f.neutral[..., ::-1]), f.crop_box)
        return image


class InfoAnnotator(Annotator):
    """Frame index and timestamp in the bottom-left corner."""

    def annotate(self, image, packet):
        h = image.shape[0]
        m = text_metrics(image)
        m.put(image, f"{packet.index}  {packet.timestamp:.2f}s", (6, h - m.row - 2), (255, 255, 255))
        return image
