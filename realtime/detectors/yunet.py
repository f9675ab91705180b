"""YuNet through ``cv2.FaceDetectorYN`` with a user-supplied model file (e.g. face_detection_yunet_2023mar.onnx)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from facecycle.errors import BackendUnavailable, ModelError, UsageError

from ..types import Detections
from .base import Detector

__all__ = ["YuNetDetector"]


class YuNetDetector(Detector):
    """YuNet. YuNet's landmark order (right eye, left eye, nose, right mouth, left mouth, of the
    subject) is image-left first, the same as :class:`~realtime.types.Detections`."""

    name = "yunet"
    #: YuNet 2023mar's boxes are 4.0 % larger than CenterFace's (quartiles 1.01–1.08; 2,327 frames,
    #: ``benchmarks/2026-12-06-epyc3/detector_framing.json``)
    box_scale = 1.04

    def __init__(self, model_path: Optional[str] = None, nms_iou: float = 0.3, top_k: int = 5000, **kw) -> None:
        super().__init__(**kw)
        if not model_path:
            raise UsageError("detector 'yunet' needs a model file: --detector-model PATH "
                                     "(face_detection_yunet_2023mar.onnx from opencv_zoo)")
        if not Path(model_path).is_file():
            raise ModelError(f"{model_path}: YuNet model file not found")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise BackendUnavailable("this OpenCV build has no cv2.FaceDetectorYN")
        self.model_path = str(model_path)
        try:
            data = np.frombuffer(Path(model_path).read_bytes(), np.uint8)
        except OSError as e:
            raise ModelError(f"{model_path}: cannot read the YuNet model ({e.strerror or e})") from None
        # top_k: OpenCV keeps the top_k raw candidates BEFORE NMS, and each face gives several: the 50 this had
        # held about 10 faces (10 of a 4x4 gallery's 16 at detect size 640, 20 of a 7x8 one's 56 at 1152), the rest
        # dropped silently. 5000 is OpenCV's own default; the faces kept are capped only by max_faces (Detector).
        # threshold low here; Detector.detect applies score_threshold. The model's bytes, read by Python: OpenCV
        # opens a path given to it with the ANSI code page's narrow string on Windows, so C:\Users\José\... failed
        try:
            self.det = cv2.FaceDetectorYN.create("onnx", data, np.zeros(0, np.uint8), (320, 320), 0.3, nms_iou, top_k)
        except (cv2.error, TypeError):  # OpenCV < 4.9 has no overload for a buffer: the path, as before
            try:
                self.det = cv2.FaceDetectorYN.create(self.model_path, "", (320, 320), 0.3, nms_iou, top_k)
            except cv2.error as e:
                why = [ln.strip("> ").strip() for ln in str(e).splitlines() if ln.strip("> ").strip()]
                hint = ("; with this OpenCV, move it to a path of ASCII characters"
                        if sys.platform == "win32" and not self.model_path.isascii() else "")
                raise ModelError(f"{model_path}: cannot load it as a YuNet model "
                                 f"({why[-1][:200] if why else e}){hint}") from None
        self._size = (320, 320)

    def _detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        if self._size != (w, h):
            self.det.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self.det.detect(image)
        if faces is None or len(faces) == 0:
            return Detections.empty()
        f = np.asarray(faces, np.float32)
        boxes = np.stack([f[:, 0], f[:, 1], f[:, 0] + f[:, 2], f[:, 1] + f[:, 3]], 1)
        return Detections(boxes, f[:, 14].copy(), f[:, 4:14].reshape(-1, 5, 2).copy())

    def _release(self) -> None:
        self.det = None

    def describe(self) -> dict:
        d = super().describe()
        d["model"] = Path(self.model_path).name
        d["model_sha256"] = self._model_checksum(self.model_path)
        return d
