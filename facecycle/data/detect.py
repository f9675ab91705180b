"""Face detectors for dataset preparation (a build-time tool).

``make_detector(name, model_path)`` returns a callable ``frame_bgr (H, W, 3)
uint8 -> (N, 5) float32 [x0, y0, x1, y1, score]``. It prefers the pipeline's
detectors (``realtime.detectors``) when that package provides them and falls
back to OpenCV's YuNet (``cv2.FaceDetectorYN``) with a user-supplied ONNX file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import InputError, UsageError

__all__ = ["make_detector", "YuNetDetector"]

log = logging.getLogger(__name__)

Detector = Callable[[np.ndarray], np.ndarray]


class YuNetDetector:
    """OpenCV YuNet. Input BGR uint8 (H, W, 3); returns (N, 5) xyxy+score, float32.

    Frames are downscaled so that the longer side is at most ``max_side``
    (faces in talking-head clips are large), boxes are mapped back.
    """

    def __init__(self, model_path: str, score: float = 0.7, max_side: int = 640) -> None:
        import cv2

        if not Path(model_path).is_file():
            raise InputError(f"{model_path}: YuNet model file not found")
        self._cv2 = cv2
        self.max_side = max_side
        self.det = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score, 0.3, 5000)
        self._size = None

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        h, w = frame_bgr.shape[:2]
        f = min(1.0, self.max_side / max(h, w))
        img = frame_bgr if f == 1.0 else self._cv2.resize(frame_bgr, (int(round(w * f)), int(round(h * f))),
                                                          interpolation=self._cv2.INTER_AREA)
        size = (img.shape[1], img.shape[0])
        if size != self._size:
            self.det.setInputSize(size)
            self._size = size
        _, faces = self.det.detect(img)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 5), np.float32)
        x, y, bw, bh, s = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3], faces[:, 14]
        out = np.stack([x, y, x + bw, y + bh, s], axis=1) / np.array([f, f, f, f, 1.0])
        return out.astype(np.float32)


def _realtime_detector(name: str, model_path: Optional[str]) -> Optional[Detector]:
    try:
        from realtime import detectors as rd  # type: ignore
    except Exception:  # noqa: BLE001 - package not built yet / optional
        return None
    make = getattr(rd, "make_detector", None) or getattr(rd, "create_detector", None)
    if make is None:
        return None
    try:
        det = make(name, model_path=model_path) if model_path else make(name)
    except Exception as e:  # noqa: BLE001
        log.info("realtime.detectors could not build %s (%s); using the local adapter", name, e)
        return None

    def run(frame_bgr: np.ndarray) -> np.ndarray:
        res = det(frame_bgr) if callable(det) else det.detect(frame_bgr)
        boxes = getattr(res, "boxes", res)
        scores = getattr(res, "scores", None)
        arr = np.asarray(boxes, np.float32).reshape(-1, 4 if scores is not None else 5)
        if scores is not None:
            arr = np.concatenate([arr, np.asarray(scores, np.float32).reshape(-1, 1)], axis=1)
        return arr

    return run


def make_detector(name: str = "yunet", model_path: Optional[str] = None, score: float = 0.7) -> Detector:
    """Build a detector by name (``yunet``; others through ``realtime.detectors``)."""
    if name == "yunet":
        if not model_path:
            raise UsageError("--detector yunet needs --detector-model PATH (face_detection_yunet_*.onnx)")
        return YuNetDetector(model_path, score=score)
    det = _realtime_detector(name, model_path)
    if det is None:
        raise UsageError(f"detector {name!r} is not available (try --detector yunet --detector-model PATH)")
    return det
