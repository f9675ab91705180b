"""Face detectors with one interface (:class:`Detector`): boxes + 5 landmarks in frame pixels.

===============  ==============================================  ===========================================
name             model                                           needs
===============  ==============================================  ===========================================
``centerface``   CenterFace ONNX vendored in ``assets/`` (MIT)   onnx, onnxruntime (base install)
                 — the default
``yunet``        OpenCV YuNet via ``cv2.FaceDetectorYN``         a model path (``model_path``)
``insightface``  a user's insightface detection model (SCRFD,    ``insightface`` (the ``[insightface]``
                 RetinaFace) run by insightface's model_zoo      extra); an .onnx, a pack folder or a pack
                                                                 name under ~/.insightface/models
``scrfd``        alias of ``insightface`` (older command lines)
===============  ==============================================  ===========================================
"""
from __future__ import annotations

from typing import Optional

from facecycle.errors import UsageError

from .base import Detector, nms
from .centerface import CenterFaceDetector, centerface_model_path
from .insightface import InsightFaceDetector
from .yunet import YuNetDetector

__all__ = ["Detector", "CenterFaceDetector", "YuNetDetector", "InsightFaceDetector", "create_detector",
           "DETECTORS", "DETECTOR_CHOICES", "nms", "centerface_model_path"]

DETECTORS = {"centerface": CenterFaceDetector, "yunet": YuNetDetector, "insightface": InsightFaceDetector,
             "scrfd": InsightFaceDetector}
#: the names a command line offers (``scrfd`` is accepted as an alias of ``insightface``)
DETECTOR_CHOICES = ("centerface", "yunet", "insightface", "scrfd")
#: detectors that take a ``threads`` argument (ONNX Runtime sessions of our own)
_THREADED = (CenterFaceDetector, InsightFaceDetector)


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
    if not issubclass(cls, _THREADED):
        kw.pop("threads", None)
    return cls(model_path=model_path, max_side=max_side, score_threshold=score_threshold,
               max_faces=max_faces, **kw)
