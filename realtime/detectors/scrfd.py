"""InsightFace SCRFD (an ``.onnx`` path or an insightface model-pack folder), decoded here with ONNX Runtime.

``insightface`` itself is not needed. The network takes RGB, (x − 127.5)/128,
NCHW float32; we feed the (shrunk) frame padded to a multiple of 32 (SCRFD's
input is dynamic). Outputs per stride s ∈ {8, 16, 32}: scores (N, 1),
distances to the box sides (N, 4) and 5 keypoint offsets (N, 10), in units of
s, for ``num_anchors`` anchors at every grid cell.

InsightFace's pretrained models are licensed for non-commercial research only:
this detector is an option, never a default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from facecycle.errors import ModelError

from ..types import Detections
from .base import Detector, nms, ort_session

__all__ = ["SCRFDDetector", "find_scrfd_model"]


def find_scrfd_model(path: str) -> Path:
    """An .onnx file, or the SCRFD file (``det_*.onnx`` / ``scrfd*.onnx``) of an insightface model pack."""
    p = Path(path).expanduser()
    if p.is_dir():
        cands = sorted(list(p.glob("det_*.onnx")) + list(p.glob("scrfd*.onnx")))
        if not cands:
            raise ModelError(f"{path}: no SCRFD detector (det_*.onnx / scrfd*.onnx) in this model pack")
        return cands[0]
    if not p.is_file():
        raise ModelError(f"{path}: SCRFD model file not found")
    return p


class SCRFDDetector(Detector):
    name = "scrfd"

    def __init__(self, model_path: Optional[str] = None, threads: int = 1, nms_iou: float = 0.4, **kw) -> None:
        super().__init__(**kw)
        if not model_path:
            raise ModelError("detector 'scrfd' needs --detector-model PATH (.onnx or insightface model pack)")
        self.model_path = str(find_scrfd_model(model_path))
        try:
            self.sess = ort_session(self.model_path, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several types
            raise ModelError(f"{self.model_path}: cannot load SCRFD ({str(e).splitlines()[0]})") from None
        self.input_name = self.sess.get_inputs()[0].name
        self.output_names = [o.name for o in self.sess.get_outputs()]
        n = len(self.output_names)
        if n not in (6, 9):
            raise ModelError(f"{self.model_path}: unexpected SCRFD outputs ({n}); expected 6 or 9")
        self.fmc = 3
        self.strides = (8, 16, 32)
        self.has_kps = n == 9
        self.num_anchors = 2
        self.nms_iou = nms_iou
        self._centers: Dict[Tuple[int, int, int], np.ndarray] = {}

    def _anchor_centers(self, hh: int, ww: int, stride: int) -> np.ndarray:
        key = (hh, ww, stride)
        if key not in self._centers:
            c = np.stack(np.mgrid[:hh, :ww][::-1], axis=-1).astype(np.float32)
            c = (c * stride).reshape(-1, 2)
            if self.num_anchors > 1:
                c = np.repeat(c, self.num_anchors, axis=0)
            self._centers[key] = c
        return self._centers[key]

    def _detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        hn, wn = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
        canvas = np.zeros((hn, wn, 3), np.uint8)
        canvas[:h, :w] = image
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128, (wn, hn), (127.5, 127.5, 127.5), swapRB=True)
        outs = self.sess.run(self.output_names, {self.input_name: blob})
        boxes_l, scores_l, kps_l = [], [], []
        for i, s in enumerate(self.strides):
            sc = outs[i][0] if outs[i].ndim == 3 else outs[i]
            bb = (outs[i + self.fmc][0] if outs[i + self.fmc].ndim == 3 else outs[i + self.fmc]) * s
            centers = self._anchor_centers(hn // s, wn // s, s)
            sc = sc.reshape(-1)
            pos = np.nonzero(sc >= min(self.score_threshold, 0.3))[0]
            if len(pos) == 0:
                continue
            c = centers[pos]
            d = bb[pos]
            boxes_l.append(np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], 1))
            scores_l.append(sc[pos])
            if self.has_kps:
                o = outs[i + 2 * self.fmc]
                k = (o[0] if o.ndim == 3 else o)[pos].reshape(-1, 5, 2) * s
                kps_l.append(k + c[:, None, :])
        if not boxes_l:
            return Detections.empty()
        boxes = np.concatenate(boxes_l)
        scores = np.concatenate(scores_l)
        if kps_l:
            kps = np.concatenate(kps_l)
        else:  # no keypoints: rough guesses from the box so pose/crops still work
            kps = _kps_from_boxes(boxes)
        keep = nms(boxes, scores, self.nms_iou)
        return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                          kps[keep].astype(np.float32))

    def describe(self) -> dict:
        d = super().describe()
        d["model"] = Path(self.model_path).name
        return d


def _kps_from_boxes(boxes: np.ndarray) -> np.ndarray:
    rel = np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.58], [0.38, 0.75], [0.62, 0.75]], np.float32)
    wh = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    return boxes[:, None, :2] + rel[None] * wh
