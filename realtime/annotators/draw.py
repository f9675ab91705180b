"""The annotators: boxes + ids, landmarks, pose axes, emotion bars, intensity meter,
neutral-face thumbnail, and the neutralized view (neutral face pasted back)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..crops import paste_square
from ..pose import euler_to_rotation
from ..types import EMOTIONS
from .base import Annotator, color_for

__all__ = ["BoxAnnotator", "LandmarkAnnotator", "PoseAxesAnnotator", "EmotionBarAnnotator",
           "IntensityAnnotator", "NeutralThumbnailAnnotator", "NeutralizedFaceAnnotator", "InfoAnnotator"]


def _thick(image: np.ndarray) -> int:
    return max(1, int(round(max(image.shape[:2]) / 500)))


def _font(image: np.ndarray) -> float:
    return max(0.35, max(image.shape[:2]) / 1400)


class BoxAnnotator(Annotator):
    """Face boxes with ``#id`` and the top emotion (if any)."""

    def annotate(self, image, packet):
        t, fs = _thick(image), _font(image)
        for f in packet.faces:
            c = color_for(f.track_id)
            x1, y1, x2, y2 = (int(round(v)) for v in f.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), c, t, cv2.LINE_AA)
            label = f"#{f.track_id}" + (f" {f.emotion}" if f.emotion else "")
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            y = max(th + 4, y1)
            cv2.rectangle(image, (x1, y - th - 4), (x1 + tw + 4, y), c, -1)
            cv2.putText(image, label, (x1 + 2, y - 3), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), 1, cv2.LINE_AA)
        return image


class LandmarkAnnotator(Annotator):
    """The 5 landmarks as dots."""

    def annotate(self, image, packet):
        r = max(1, _thick(image) + 1)
        for f in packet.faces:
            if not np.all(np.isfinite(f.landmarks)):  # a detector without landmarks
                continue
            for x, y in f.landmarks:
                cv2.circle(image, (int(round(x)), int(round(y))), r, (0, 255, 255), -1, cv2.LINE_AA)
        return image


class PoseAxesAnnotator(Annotator):
    """Head-pose axes drawn from the nose: x red, y green, z (facing direction) blue."""

    def __init__(self, length: float = 0.5) -> None:
        self.length = length  # fraction of the face box width

    def annotate(self, image, packet):
        t = _thick(image) + 1
        for f in packet.faces:
            if f.pose is None or not np.all(np.isfinite(f.pose)):
                continue
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


class EmotionBarAnnotator(Annotator):
    """Seven horizontal probability bars beside each face (nothing without an expression head)."""

    def annotate(self, image, packet):
        h, w = image.shape[:2]
        fs = _font(image) * 0.9
        bar_h = max(8, int(h / 45))
        bar_w = max(40, int(w / 10))
        for f in packet.faces:
            if f.emotions is None:
                continue
            x = int(f.box[2]) + 6
            if x + bar_w + 70 > w:
                x = max(0, int(f.box[0]) - bar_w - 76)
            y = max(0, int(f.box[1]))
            for i, (name, p) in enumerate(zip(EMOTIONS, f.emotions)):
                yy = y + i * (bar_h + 3)
                if yy + bar_h > h:
                    break
                cv2.rectangle(image, (x, yy), (x + bar_w, yy + bar_h), (40, 40, 40), -1)
                cv2.rectangle(image, (x, yy), (x + int(bar_w * float(p)), yy + bar_h), color_for(f.track_id), -1)
                cv2.putText(image, name[:4], (x + bar_w + 4, yy + bar_h - 1), cv2.FONT_HERSHEY_SIMPLEX, fs,
                            (255, 255, 255), 1, cv2.LINE_AA)
        return image


class IntensityAnnotator(Annotator):
    """A vertical meter left of each face: expression intensity relative to ``full_scale``."""

    def __init__(self, full_scale: float = 0.1) -> None:
        self.full_scale = full_scale

    def annotate(self, image, packet):
        for f in packet.faces:
            if not math.isfinite(f.intensity):
                continue
            x2 = int(f.box[0]) - 4
            x1 = x2 - max(4, int((f.box[2] - f.box[0]) / 14))
            if x1 < 0:
                continue
            y1, y2 = int(f.box[1]), int(f.box[3])
            level = min(1.0, max(0.0, f.intensity / self.full_scale))
            cv2.rectangle(image, (x1, y1), (x2, y2), (40, 40, 40), -1)
            cv2.rectangle(image, (x1, int(y2 - (y2 - y1) * level)), (x2, y2), (0, 165, 255), -1)
        return image


class NeutralThumbnailAnnotator(Annotator):
    """Each face's neutral face as a thumbnail in the top-left corner (needs neutralize)."""

    def __init__(self, size_fraction: float = 0.18) -> None:
        self.size_fraction = size_fraction

    def annotate(self, image, packet):
        h, w = image.shape[:2]
        s = max(32, int(min(h, w) * self.size_fraction))
        x = 4
        for f in packet.faces:
            if f.neutral is None or x + s > w or s + 4 > h:
                continue
            thumb = cv2.resize(f.neutral[..., ::-1], (s, s), interpolation=cv2.INTER_LINEAR)
            image[4:4 + s, x:x + s] = thumb
            cv2.rectangle(image, (x, 4), (x + s, 4 + s), color_for(f.track_id), 2)
            x += s + 4
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
        cv2.putText(image, f"{packet.index}  {packet.timestamp:.2f}s", (6, h - 8), cv2.FONT_HERSHEY_SIMPLEX,
                    _font(image), (255, 255, 255), 1, cv2.LINE_AA)
        return image
