"""A user's InsightFace detector (SCRFD, RetinaFace) through insightface's own API: an adapter into ``Detections``.

``--detector insightface --detector-model M`` where ``M`` is

* an ``.onnx`` file (e.g. ``scrfd_500m_bnkps.onnx`` or ``det_10g.onnx``),
* a model-pack folder (``buffalo_l/``, ``buffalo_s/`` ...): its detection model is picked, by the pack's
  naming (``det_*.onnx``, ``scrfd*.onnx``, ``retinaface*.onnx``) first, else by insightface's own routing
  (``model.taskname == "detection"``),
* or a pack NAME under ``~/.insightface/models/`` (where insightface keeps the packs it downloads).

The model is loaded with ``insightface.model_zoo.get_model`` (ONNX Runtime CPU session), prepared with
``prepare(ctx_id=-1, input_size=..., det_thresh=...)`` and run with ``detect(img, input_size=...)``:
insightface does the pre-processing, the anchor decoding and the NMS. This module only resolves the path and
converts the result: ``det`` (N, 5) xyxy+score and ``kpss`` (N, 5, 2) become :class:`Detections`.

Models without keypoints (``kpss`` is None, e.g. SCRFD without ``kps``) give **NaN landmarks**: nothing is
invented from the box. ``describe()["landmarks"]`` is then False (the JSON sidecar records it), head pose is
not computed and the CSV's ``lmk_*`` / ``pose_*`` columns stay empty.

InsightFace's pretrained models are licensed for non-commercial research only: this detector is an option,
never a default. ``pip install "facecycle-rt[insightface]"``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from facecycle.errors import BackendUnavailable, ModelError, UsageError

from ..types import Detections
from .base import Detector

__all__ = ["InsightFaceDetector", "resolve_insightface_model", "INSIGHTFACE_HOME"]

log = logging.getLogger(__name__)

#: where insightface keeps its model packs (``FaceAnalysis(name=...)`` / ``get_model`` look here)
INSIGHTFACE_HOME = Path("~/.insightface/models")

_DET_PATTERNS = ("det_*.onnx", "scrfd*.onnx", "retinaface*.onnx")


def resolve_insightface_model(spec: str) -> Path:
    """The ``.onnx`` file or pack folder that ``spec`` names (a path, else a pack name under ~/.insightface/models).

    Raises:
        ModelError: nothing there.
    """
    p = Path(spec).expanduser()
    if p.exists():
        return p
    home = INSIGHTFACE_HOME.expanduser() / spec
    if "/" not in spec and home.exists():
        return home
    raise ModelError(f"{spec}: no such .onnx file or insightface model pack (also looked in {home})")


def _import_model_zoo():
    try:
        from insightface import model_zoo
    except ImportError as e:
        raise BackendUnavailable(f"detector 'insightface' needs the insightface package ({e}); "
                                 "pip install \"facecycle-rt[insightface]\"") from None
    return model_zoo


def _load(model_zoo, path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # fatal only, as our other sessions: our own error line says what failed
    try:  # sess_options is honoured by insightface >= 0.7.3's router (ignored by older ones)
        return model_zoo.get_model(str(path), providers=["CPUExecutionProvider"], sess_options=so)
    except Exception as e:  # noqa: BLE001 - onnxruntime / insightface raise many types
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: insightface cannot load it ({why})") from None


def _pick_detection_model(model_zoo, pack: Path, threads: int):
    named = []
    for pat in _DET_PATTERNS:
        named += sorted(pack.glob(pat))
    others = sorted(set(pack.glob("*.onnx")) - set(named))
    for f in named + others:
        try:
            m = _load(model_zoo, f, threads)
        except ModelError as e:
            log.debug("skipping %s: %s", f, e)
            continue
        if m is not None and getattr(m, "taskname", None) == "detection":
            return f, m
    raise ModelError(f"{pack}: no detection model in this insightface model pack "
                     f"(looked at {len(named) + len(others)} .onnx files)")


class InsightFaceDetector(Detector):
    """Faces from an insightface detection model (SCRFD / RetinaFace), run by insightface.

    Args:
        model_path: ``.onnx`` file, pack folder or pack name (see the module doc).
        threads: ONNX Runtime intra-op threads.
        nms_iou: insightface's NMS threshold (``nms_thresh``).
    """

    name = "insightface"
    #: SCRFD-500M's boxes are 5.1 % larger than CenterFace's (quartiles 1.02–1.09; 2,327 frames,
    #: ``benchmarks/2026-12-06-epyc3/detector_framing.json``); other packs' SCRFD and RetinaFace models are taken to
    #: draw them alike (not measured here)
    box_scale = 1.05

    def __init__(self, model_path: Optional[str] = None, threads: int = 1, nms_iou: float = 0.4, **kw) -> None:
        super().__init__(**kw)
        if not model_path:
            raise UsageError("detector 'insightface' needs --detector-model (an .onnx file, a model-pack folder "
                             f"or a pack name under {INSIGHTFACE_HOME})")
        p = resolve_insightface_model(model_path)
        model_zoo = _import_model_zoo()
        if p.is_dir():
            self.model_file, self.model = _pick_detection_model(model_zoo, p, threads)
        else:
            self.model_file, self.model = p, _load(model_zoo, p, threads)
            if self.model is None or getattr(self.model, "taskname", None) != "detection":
                raise ModelError(f"{p}: not an insightface detection model "
                                 f"(insightface routes it to {getattr(self.model, 'taskname', None)!r})")
        self.pack = str(p) if p.is_dir() else None
        self.nms_iou = float(nms_iou)
        self.has_landmarks = bool(getattr(self.model, "use_kps", True))
        self._prepared_for = None  # (a model without landmarks is said by create_detector, once it has run)

    def _input_size(self, h: int, w: int):
        """(W, H) fed to the network: a fixed-size model's own size, else the frame padded to a multiple of 32."""
        shape = self.model.session.get_inputs()[0].shape
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            return (shape[3], shape[2])
        return (int(np.ceil(w / 32) * 32), int(np.ceil(h / 32) * 32))

    def _detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        size = self._input_size(h, w)
        if self._prepared_for != size:
            self.model.prepare(ctx_id=-1, input_size=size, det_thresh=min(self.score_threshold, 0.3),
                               nms_thresh=self.nms_iou)
            self._prepared_for = size
        det, kpss = self.model.detect(image, input_size=size)
        if det is None or len(det) == 0:
            return Detections.empty()
        det = np.asarray(det, np.float32)
        if kpss is None:
            lm = np.full((len(det), 5, 2), np.nan, np.float32)
        else:
            lm = np.asarray(kpss, np.float32).reshape(len(det), 5, 2)
        order = np.argsort(-det[:, 4], kind="stable")
        return Detections(det[order, :4].copy(), det[order, 4].copy(), lm[order])

    def _release(self) -> None:
        self.model = None

    def describe(self) -> dict:
        d = super().describe()
        import insightface

        d.update(model=self.model_file.name, model_sha256=self._model_checksum(self.model_file), pack=self.pack,
                 landmarks=self.has_landmarks,
                 runner=f"insightface {getattr(insightface, '__version__', '?')} model_zoo."
                        f"{type(self.model).__name__}")
        return d
