"""Loose square face crops — ONE definition shared by inference and training data prep.

FaceCycle is trained on VoxCeleb-like crops: a square centred on the face box
whose side is ``scale`` × the longer side of the box (1.7 by default), so the
whole head and a little background is visible. Training data preparation
crops through them too (:mod:`realtime.facetracks`), so both sides crop
identically. numpy / OpenCV only.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["DEFAULT_SCALE", "framing_scale", "loose_square_box", "crop_square", "crop_faces", "paste_square",
           "StillFramer", "FRAMINGS", "WHOLE_ABOVE", "whole_picture_square", "level_angle",
           "LEVEL_FROM_DEG", "LEVEL_FULL_DEG", "outside_share"]

#: crop side / longer side of the detector's face box
DEFAULT_SCALE = 1.7

#: a tilted head's expression is read from its crop turned so that its eyes come out level (realtime.inference): not
#: within ``LEVEL_FROM_DEG`` of roll, fully from ``LEVEL_FULL_DEG``, in between by a share that grows with the roll
#: (no jump where a head crosses a threshold).
#: The model reads a few degrees of tilt as well as none (FER-2013's faces are not levelled: 90 % within 16°), and
#: fails beyond: heads rolled by 30° read another emotion in 8 of 24 held-out clip readings (an angry clip as
#: neutral, neutral ones as happy or angry), 2 of 24 turned (:func:`level_angle`; docs/pipeline.md, "Tilted heads")
LEVEL_FROM_DEG, LEVEL_FULL_DEG = 10.0, 20.0
#: an eye line steeper than this is more likely a bad landmark fit than a head: no turn
MAX_LEVEL_DEG = 60.0


def level_angle(landmarks: Optional[Sequence], level_from: float = LEVEL_FROM_DEG, level_full: float = LEVEL_FULL_DEG
                ) -> float:
    """Degrees to turn a face's crop by (:func:`crop_square`'s ``angle``) so that its eyes come out level.

    Args:
        landmarks: (5, 2) frame pixels (x, y), the first two the eyes on the image's left and right.
        level_from, level_full: the roll (degrees) below which the crop stays upright, and from which it is turned
            by the whole roll; in between by ``roll × (|roll| − level_from) / (level_full − level_from)``.

    Returns:
        The turn, sign as the roll's (``atan2(dy, dx)`` of the eye line, y down); 0 for NaN landmarks, eyes in the
        wrong order or a roll beyond :data:`MAX_LEVEL_DEG`.
    """
    if landmarks is None:
        return 0.0
    lm = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if lm.shape[0] < 2 or not np.isfinite(lm[:2]).all():
        return 0.0
    dx, dy = lm[1] - lm[0]
    if dx <= 0.0:
        return 0.0
    roll = math.degrees(math.atan2(dy, dx))
    r = abs(roll)
    if r <= level_from or r > MAX_LEVEL_DEG:
        return 0.0
    share = min(1.0, (r - level_from) / max(level_full - level_from, 1e-9))
    return math.copysign(r * share, roll)


def framing_scale(scale: float, detector=None) -> float:
    """The crop side over ``detector``'s box side that frames a face as ``scale`` × a CenterFace box does.

    The model's ``crop_scale`` and every training crop were measured and cut on CenterFace's boxes; other detectors
    draw larger ones (``box_scale``: their box side over CenterFace's on the same faces,
    :attr:`realtime.detectors.Detector.box_scale`). ``scale`` unchanged without a detector or a ``box_scale``."""
    return float(scale) / float(getattr(detector, "box_scale", 1.0) or 1.0)


def loose_square_box(box_xyxy: Sequence[float], scale: float = DEFAULT_SCALE) -> Tuple[int, int, int]:
    """The loose square around a face box.

    Args:
        box_xyxy: (x1, y1, x2, y2) face box in pixels.
        scale: side of the square / max(box width, box height).

    Returns:
        (x0, y0, side) integers: the square's top-left corner and side in
        pixels, centred on the box centre. It may extend past the image
        (:func:`crop_square` replicates the border there). side ≥ 1.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy[:4])
    side = max(1, int(round(max(x2 - x1, y2 - y1) * float(scale))))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def outside_share(square: Sequence[float], width: int, height: int) -> float:
    """The share (0–1) of ``square`` (x0, y0, side) that lies outside a ``width``×``height`` frame: the part
    :func:`crop_square` fills by repeating the frame's edge pixels. 0 for a square wholly inside; NaN for a square
    of no area or a frame of no size (nothing is known).

    A face cut by the frame's edge has its box clipped to the visible part, and the square centred on that box
    reaches past the edge: a quarter to a third of such a crop is streaks of edge pixels, on which the readings
    and the pose go wrong (docs/csv.md, ``crop_outside``). Reported, not corrected: training cuts the same crops.
    """
    x0, y0, side = (float(v) for v in square[:3])
    w, h = float(width), float(height)
    if not (side > 0.0 and w > 0.0 and h > 0.0) or not math.isfinite(x0 + y0 + side):
        return math.nan
    inside_x = max(0.0, min(w, x0 + side) - max(0.0, x0))
    inside_y = max(0.0, min(h, y0 + side) - max(0.0, y0))
    # clamped: float rounding must not give a share a hair below 0 for a square that fits exactly
    return min(1.0, max(0.0, 1.0 - (inside_x * inside_y) / (side * side)))


def crop_square(image: np.ndarray, square: Tuple[int, int, int], size: int, angle: float = 0.0) -> np.ndarray:
    """Cut the square ``(x0, y0, side)`` out of ``image`` and resize it to ``size``×``size``.

    Parts outside the image are filled by replicating the border pixels.
    Shrinking uses area interpolation (no aliasing), enlarging bilinear.

    Args:
        image: (H, W, C) or (H, W) uint8, any colour order (kept).
        square: (x0, y0, side) from :func:`loose_square_box`.
        size: output side in pixels.
        angle: degrees; the square is turned about its centre by this much (clockwise on the screen, as a line
            through the eyes at ``atan2(dy, dx)`` is, y down) before it is cut, so that such a line comes out
            level. 0: the upright square.

    Returns:
        (size, size, C) / (size, size) uint8, same colour order as ``image``.
    """
    if angle:
        return _turned_square(image, square, size, float(angle))
    h, w = image.shape[:2]
    x0, y0, side = (int(v) for v in square)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if xb <= xa or yb <= ya:  # entirely outside: replicate the nearest edge pixel
        xa, ya = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
        xb, yb = xa + 1, ya + 1
    patch = image[ya:yb, xa:xb]
    top, left = ya - y0, xa - x0
    bottom, right = side - top - (yb - ya), side - left - (xb - xa)
    if top or left or bottom > 0 or right > 0:
        patch = cv2.copyMakeBorder(patch, max(top, 0), max(bottom, 0), max(left, 0), max(right, 0),
                                   cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def _turned_square(image: np.ndarray, square: Tuple[int, int, int], size: int, angle: float) -> np.ndarray:
    """:func:`crop_square` of a square turned by ``angle`` degrees: the upright square that holds it is cut and
    resized first (area interpolation when shrinking, as the upright crop), then turned and halved (bilinear)."""
    x0, y0, side = (int(v) for v in square)
    rad = np.deg2rad(angle)
    reach = float(side) * (abs(np.cos(rad)) + abs(np.sin(rad)))  # the turned square's upright extent
    big = int(np.ceil(reach)) + 2
    big += (big - side) % 2  # centred on the square's own centre
    off = (big - side) // 2
    out_big = max(size, int(round(2 * big * size / float(side))))  # at twice the output's scale: the turn's
    # bilinear halving then averages pixel pairs (at 0° within 0.1-1.2 grey levels of the upright crop on average;
    # at the output's own scale up to 2.2)
    patch = crop_square(image, (x0 - off, y0 - off, big), out_big)
    c = (out_big - 1) / 2.0  # the square's centre in the patch; the rounding of out_big undone by the scale
    m = cv2.getRotationMatrix2D((c, c), angle, size * big / float(side * out_big))
    m[:, 2] += (size - 1) / 2.0 - c
    return cv2.warpAffine(patch, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


#: a still whose face's square covers at least this share of its shorter side already is a face crop (FER-2013,
#: RAF-DB, AffectNet): it is read whole, not re-cropped around a detector box (:class:`StillFramer`, and the
#: pipeline's stills, :func:`whole_picture_square`)
WHOLE_ABOVE = 0.85


def whole_picture_square(shape: Sequence[int], square: Tuple[int, int, int], whole_above: float = WHOLE_ABOVE
                         ) -> Optional[Tuple[int, int, int]]:
    """The picture's own square ``(x0, y0, side)`` where the face's ``square`` covers at least ``whole_above`` of
    the shorter side of a (near-)square picture of ``shape`` (H, W, ...), i.e. the picture already is a face crop;
    else None. A picture more than 10 % from square keeps the face's square (its whole would be distorted)."""
    h, w = int(shape[0]), int(shape[1])
    if square[2] < whole_above * min(h, w) or not _near_square(h, w):
        return None
    return _own_square(h, w)


def _near_square(h: int, w: int) -> bool:
    """Whether a (H, W) picture is within 10 % of square (read whole, it is not visibly distorted)."""
    return max(h, w) <= 1.1 * min(h, w)


def _own_square(h: int, w: int) -> Tuple[int, int, int]:
    """A (H, W) picture's own square ``(x0, y0, side)``: centred, of side min(H, W)."""
    side = min(h, w)
    return ((w - side) // 2, (h - side) // 2, side)


def crop_faces(image_bgr: np.ndarray, boxes: np.ndarray, size: int, scale: float = DEFAULT_SCALE,
               squares: Optional[Sequence[Optional[Tuple[int, int, int]]]] = None) -> Tuple[np.ndarray, list]:
    """Batch of model-ready crops for all faces of a frame.

    Args:
        image_bgr: (H, W, 3) uint8 **BGR** frame.
        boxes: (N, 4) xyxy face boxes.
        size: model input side (the manifest's ``input.size``).
        squares: per face, a square ``(x0, y0, side)`` to use instead of the box's (None entries: the box's).

    Returns:
        crops: (N, size, size, 3) uint8 **RGB**; squares: N (x0, y0, side).
    """
    given = list(squares) if squares is not None else []
    squares = [given[i] if i < len(given) and given[i] is not None else loose_square_box(b, scale)
               for i, b in enumerate(np.asarray(boxes).reshape(-1, 4))]
    if not squares:
        return np.zeros((0, size, size, 3), np.uint8), []
    crops = np.stack([crop_square(image_bgr, sq, size) for sq in squares])
    return crops[..., ::-1].copy(), squares


#: how :class:`StillFramer` frames a still: ``auto`` crops the face unless the image already is a face crop,
#: ``detect`` always crops a found face, ``none`` keeps every image whole
FRAMINGS = ("auto", "detect", "none")


class StillFramer:
    """Frame labelled stills (FER-2013, CK+, JAFFE, photos) the way the pipeline frames video faces.

    The probes and the still-image tools read datasets whose faces come at any framing: FER-2013's are
    tight 48-px crops already at the model's framing, CK+'s a third of a 640×490 frame, JAFFE's half of a
    256-px image. Squashing such an image to the model's input shows the model a small, distorted face.
    The framer finds the face with the pipeline's detector and cuts the same square the pipeline cuts
    (:func:`loose_square_box` at the model's ``crop_scale``, :func:`crop_square`).

    Args:
        detector: anything with ``detect(image_bgr) -> Detections`` (:mod:`realtime.detectors`); the
            largest face is used.
        scale: the model's framing (its config's ``crop_scale``, on CenterFace's boxes: :func:`framing_scale`).
        mode: one of :data:`FRAMINGS`. ``auto`` keeps the image whole when it is (near-)square and the face's
            square would cover at least ``whole_above`` of its shorter side (it already is a face crop:
            re-cropping it with a detector box would only add the box's noise), as the pipeline reads a still
            (:func:`whole_picture_square`). Where no face is found, a (near-)square image is used whole and
            another its centre square (squashing a 16:9 frame into a square distorted its face 1.78 times).
        whole_above: see ``mode``.

    ``__call__(image_bgr)``: (H, W, 3) uint8 **BGR** -> (h, w, 3) uint8 BGR, the face's square or the
    whole image. ``counts`` tallies ``cropped`` / ``whole`` / ``no_face`` over the calls; ``found`` holds, per
    call, whether a face was found.
    """

    def __init__(self, detector, scale: float, mode: str = "auto", whole_above: float = WHOLE_ABOVE) -> None:
        if mode not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, not {mode!r}")
        self.detector = detector
        self.scale = framing_scale(scale, detector)  # the model's framing on this detector's boxes
        self.mode = mode
        self.whole_above = float(whole_above)
        self.counts: Dict[str, int] = {"cropped": 0, "whole": 0, "no_face": 0}
        self.found: List[bool] = []

    def square(self, image_bgr: np.ndarray) -> Optional[Tuple[int, int, int]]:
        """The largest face's square (x0, y0, side) in ``image_bgr``, or None when no face is found."""
        det = self.detector.detect(image_bgr)
        if not len(det):
            return None
        b = det.boxes
        i = int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
        return loose_square_box(b[i], self.scale)

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        if self.mode == "none":
            self.counts["whole"] += 1
            return image_bgr
        sq = self.square(image_bgr)
        self.found.append(sq is not None)
        h, w = image_bgr.shape[:2]
        if sq is None:
            self.counts["no_face"] += 1
            return image_bgr if _near_square(h, w) else _cut(image_bgr, _own_square(h, w))
        own = whole_picture_square(image_bgr.shape, sq, self.whole_above) if self.mode == "auto" else None
        if own is not None:
            # (a 640x360 frame whose face's square covered its height was squashed whole: 34 % where the face's
            # square read 64 %)
            self.counts["whole"] += 1
            return image_bgr if h == w else _cut(image_bgr, own)
        self.counts["cropped"] += 1
        return crop_square(image_bgr, sq, sq[2])

    def describe(self) -> Dict[str, object]:
        """The framing and its tallies, for reports."""
        d = getattr(self.detector, "describe", lambda: {})()
        return {"framing": self.mode, "crop_scale": self.scale, "whole_above": self.whole_above,
                "detector": d.get("detector"), **self.counts}


def _cut(image: np.ndarray, square: Tuple[int, int, int]) -> np.ndarray:
    """``image``'s pixels in ``square`` (x0, y0, side), which lies inside it (a view, no resampling)."""
    x0, y0, side = square
    return image[y0:y0 + side, x0:x0 + side]


def paste_square(image: np.ndarray, patch: np.ndarray, square: Tuple[int, int, int], feather: float = 0.12
                 ) -> np.ndarray:
    """Blend ``patch`` back into ``image`` over ``square`` with a feathered (soft-edged) elliptic mask.

    Args:
        image: (H, W, 3) uint8, modified in place and returned.
        patch: (S, S, 3) uint8 in ``image``'s colour order.
        square: (x0, y0, side) where the patch goes.
        feather: blur width as a fraction of the side.
    """
    h, w = image.shape[:2]
    x0, y0, side = (int(v) for v in square)
    if side < 4:
        return image
    big = cv2.resize(patch, (side, side), interpolation=cv2.INTER_LINEAR)
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.30), int(side * 0.38)), 0, 0, 360, 1.0, -1)
    k = max(3, int(side * feather) | 1)
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if xb <= xa or yb <= ya:
        return image
    sub = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
    m = mask[sub][..., None]
    roi = image[ya:yb, xa:xb].astype(np.float32)
    image[ya:yb, xa:xb] = np.clip(roi * (1 - m) + big[sub].astype(np.float32) * m, 0, 255).astype(np.uint8)
    return image
