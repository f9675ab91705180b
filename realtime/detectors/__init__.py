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

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

from facecycle.errors import FaceCycleError, ModelError, UsageError

from .base import Detector, nms
from .centerface import CenterFaceDetector, centerface_model_path
from .insightface import INSIGHTFACE_HOME, InsightFaceDetector
from .yunet import YuNetDetector

log = logging.getLogger(__name__)

__all__ = ["Detector", "CenterFaceDetector", "YuNetDetector", "InsightFaceDetector", "create_detector",
           "DETECTORS", "DETECTOR_CHOICES", "nms", "centerface_model_path"]

DETECTORS = {"centerface": CenterFaceDetector, "yunet": YuNetDetector, "insightface": InsightFaceDetector,
             "scrfd": InsightFaceDetector}
#: the names a command line offers (``scrfd`` is accepted as an alias of ``insightface``)
DETECTOR_CHOICES = ("centerface", "yunet", "insightface", "scrfd")
#: detectors that take a ``threads`` argument (ONNX Runtime sessions of our own)
_THREADED = (CenterFaceDetector, InsightFaceDetector)
#: the error of a detector that needs a model file and was given none, naming the command line's option and the
#: Python API's argument (``Analyzer(detector_model=...)``, :func:`create_detector`'s ``model_path``): the
#: detectors' own words named only ``--detector-model``, which a notebook user cannot pass
_NEEDS_MODEL = {
    YuNetDetector: "detector 'yunet' needs a model file: --detector-model PATH on the command line, "
                   "Analyzer(detector_model=PATH) in Python (face_detection_yunet_2023mar.onnx from opencv_zoo)",
    InsightFaceDetector: "detector 'insightface' needs --detector-model on the command line, "
                         "Analyzer(detector_model=...) in Python: an .onnx file, a model-pack folder or a pack name "
                         f"under {INSIGHTFACE_HOME}",
}


def create_detector(name: str = "centerface", model_path: Optional[str] = None, max_side: Optional[int] = 320,
                    score_threshold: float = 0.5, max_faces: Optional[int] = None, **kw: Any) -> Detector:
    """Build a detector by name (see the table above).

    Raises:
        UsageError: unknown name. ModelError / BackendUnavailable: model missing or unusable.
    """
    try:
        cls = DETECTORS[name.lower()]
    except KeyError:
        raise UsageError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}") from None
    if not model_path and cls in _NEEDS_MODEL:  # named for both callers: the command line's option, Python's argument
        raise UsageError(_NEEDS_MODEL[cls])
    if not issubclass(cls, _THREADED):
        kw.pop("threads", None)
    with _opencv_quiet():  # OpenCV's own [ERROR] lines about a wrong file would come before the one-line error
        det = cls(model_path=model_path, max_side=max_side, score_threshold=score_threshold, max_faces=max_faces,
                  **kw)
        _try(det, model_path)
    if not getattr(det, "has_landmarks", True):  # said once the file is known to be a detector
        log.warning("%s gives no facial landmarks: landmark and head-pose columns stay empty",
                    Path(str(getattr(det, "model_file", model_path))).name)
    return det


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own error lines (a model it cannot read) kept off stderr for the block: through its log level, or,
    in an OpenCV without ``cv2.utils.logging`` (opencv-python 4.8-4.11, which ``opencv-python>=4.8`` allows), by
    pointing file descriptor 2 at the null device meanwhile (the block is a detector's trial at start-up)."""
    import cv2

    quiet = getattr(getattr(cv2, "utils", None), "logging", None)
    if quiet is None:
        with _stderr_silenced():
            yield
        return
    level = quiet.getLogLevel()
    quiet.setLogLevel(quiet.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        quiet.setLogLevel(level)


_SILENCE_LOCK = threading.Lock()
_silenced = 0  # blocks inside _stderr_silenced now (threads making detectors at once); fd 2 is restored by the last
_saved_fd: Optional[int] = None


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 on the null device for the block (C libraries' own output); as it was where it cannot be
    (stderr closed, no null device). The process has one fd 2: blocks of several threads share one swap, counted,
    and the last to leave restores it (two overlapping swaps could save the null device as the original and leave
    stderr silent for good). Other threads' stderr is silent meanwhile: the block is a detector's trial."""
    global _silenced, _saved_fd
    import os
    import sys

    with _SILENCE_LOCK:
        if _silenced == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                saved = None
            if saved is not None:
                try:
                    null = os.open(os.devnull, os.O_WRONLY)
                    try:
                        os.dup2(null, 2)
                    finally:
                        os.close(null)
                except OSError:
                    os.close(saved)
                    saved = None
            _saved_fd = saved
        _silenced += 1
    try:
        yield
    finally:
        with _SILENCE_LOCK:
            _silenced -= 1
            if _silenced == 0 and _saved_fd is not None:
                os.dup2(_saved_fd, 2)
                os.close(_saved_fd)
                _saved_fd = None


def _try(det: Detector, model_path: Optional[str]) -> None:
    """One detection on a blank picture, so that a model file of another kind (a YuNet file given as SCRFD, a
    recognition model) fails here, naming the file, and not at a run's first frame as a stage failure."""
    import numpy as np

    try:
        det.detect(np.full((96, 128, 3), 128, np.uint8))
    except FaceCycleError:
        det.close()
        raise
    except Exception as e:  # noqa: BLE001 - ONNX Runtime, OpenCV and insightface raise their own types
        det.close()
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ModelError(f"{model_path or det.name}: not a model the {det.name} detector can run "
                         f"({type(e).__name__}: {msg[:200]})") from None
