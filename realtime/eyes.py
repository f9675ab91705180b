"""How open a face's eyes are, from the detector's two eye landmarks: a per-frame score for comparing frames of
one person.

The detectors give eye centres only (5 landmarks), no eyelids. An open eye shows the iris against the white
of the eye and the lids: strong *horizontal* intensity changes across the patch. A closed eye shows a lid and
a line of lashes that run across the eye: the changes there are vertical. So :func:`eye_openness` levels the
eye line, cuts a small patch around each eye centre (``half_width`` × ``half_height`` of the interocular
distance either side; 0.16 × 0.12 by default), resamples it to ``px`` rows and returns the mean absolute
horizontal difference of the grey patch, averaged over both eyes.

The score depends on the person, the light and the camera, so it is only meaningful **relative to the same
track's other frames**: :class:`realtime.neutral_reference.NeutralReference` compares a frame's score with a
high percentile of its track's recent scores. On 350 frames of 19 clips labelled by eye
(``benchmarks/eye_labels.csv``: open, closed, or neither: narrowed, a wink, occluded, blurred), the score
divided by its clip's median separates open from closed eyes with a ROC AUC of 0.998 (0.997 on the held-out
people's clips, 0.999 on the posed-span clips); the pipeline's causal rule (over the 75th percentile of the
track's last 150 scores) calls 98 % of open eyes and 20 % of closed ones open at 0.7, most of those in a clip
that opens with seconds of crying, eyes shut, before the track has seen them open (MODEL_CARD.md, experiment 36;
``scripts/eval_eye_openness.py``).

Colour order: ``image`` is **BGR** uint8 (H, W, 3) as the pipeline's frames are (or (H, W) grey);
``landmarks`` (5, 2) float pixels of that image in the detectors' order (image-left eye, image-right eye,
nose, mouth corners).
"""
from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np

__all__ = ["eye_openness", "UsualEyes"]


class UsualEyes:
    """A track's usual eye openness: the ``percentile`` of its last ``window`` finite :func:`eye_openness` scores
    (the rule :class:`realtime.neutral_reference.NeutralReference` reads frames against)."""

    def __init__(self, window: int = 150, percentile: float = 75.0) -> None:
        self._scores: deque = deque(maxlen=int(window))
        self.percentile = float(percentile)

    def update(self, score: float) -> float:
        """Add ``score`` (NaN is skipped) and return the usual openness so far (NaN before any score)."""
        if math.isfinite(score):
            self._scores.append(score)
        if not self._scores:
            return math.nan
        return float(np.percentile(np.fromiter(self._scores, np.float64, len(self._scores)), self.percentile))


def eye_openness(image: np.ndarray, landmarks: np.ndarray, half_width: float = 0.16, half_height: float = 0.12,
                 px: int = 16) -> float:
    """Mean absolute horizontal grey difference (grey levels per pixel) in two levelled eye patches.

    Args:
        image: (H, W, 3) BGR or (H, W) grey uint8 frame.
        landmarks: (5, 2) pixels of ``image``; rows 0 and 1 are the eye centres.
        half_width, half_height: the patch around each eye centre, as shares of the interocular distance.
        px: patch height in samples (its width follows the aspect).

    Returns:
        The score (≥ 0; higher: more open), or NaN where it cannot be measured (no image, eyes closer than
        4 pixels apart, non-finite landmarks, or an eye patch reaching outside the image).
    """
    if image is None or image.ndim not in (2, 3) or landmarks is None:
        return math.nan
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[0] < 2 or not np.all(np.isfinite(lm[:2])):
        return math.nan
    left, right = lm[0], lm[1]
    d = float(np.hypot(*(right - left)))
    if d < 4.0:
        return math.nan
    h, w = image.shape[:2]
    reach = d * math.hypot(half_width, half_height)
    for e in (left, right):
        if e[0] - reach < 0 or e[1] - reach < 0 or e[0] + reach > w - 1 or e[1] + reach > h - 1:
            return math.nan
    angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
    out_h = int(px)
    out_w = max(2, int(round(px * half_width / half_height)))
    scale = out_h / (2.0 * half_height * d)
    score = 0.0
    for e in (left, right):
        x0, y0 = int(math.floor(e[0] - reach)), int(math.floor(e[1] - reach))
        x1, y1 = int(math.ceil(e[0] + reach)) + 1, int(math.ceil(e[1] + reach)) + 1
        roi = image[y0:y1, x0:x1]
        grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY) if roi.ndim == 3 else roi
        m = cv2.getRotationMatrix2D((float(e[0] - x0), float(e[1] - y0)), angle, scale)
        m[:, 2] += np.array([out_w / 2.0, out_h / 2.0]) - np.array([e[0] - x0, e[1] - y0])
        patch = cv2.warpAffine(grey.astype(np.float32), m, (out_w, out_h),
                               flags=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        score += float(np.abs(np.diff(patch, axis=1)).mean())
    return score / 2.0
