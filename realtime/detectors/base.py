"""The detector interface: ``detect(image_bgr) -> Detections`` in frame coordinates."""
from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from facecycle.errors import UsageError
from facecycle.files import sha256_file

from ..types import Detections

__all__ = ["Detector", "nms", "ort_session", "MIN_SIDE", "SMALL_STILL", "ENLARGE"]

#: The smallest ``max_side`` (``--detect-size``) a detector takes: a 32-px picture still holds a face that fills it.
MIN_SIDE = 32
#: the longer side a large picture is detected at once more, for faces too small at the detector's own size (a
#: video's run at its start, :mod:`realtime.analyzer`; a photo, :meth:`Detector.detect_still`)
LOOK_SIDE = 1280
#: a still whose longer side is at most this many pixels is a small picture, as a data set's aligned face crop is
#: (FER-2013's 48 px, RAF-DB's 100 px): where no face is found it is looked at again enlarged (:data:`ENLARGE`,
#: :meth:`Detector.detect_still`), and where still none is found a (near-)square one is read whole as the face
#: (:meth:`realtime.inference.FaceInference.frame_as_still`). On 1,244 held-out FER-2013 faces enlarged to S px,
#: the enlarged looks found 36 of the 45 missed at 48 px, 26/39 at 64, 12/21 at 96, 7/24 at 128, 12/47 at 160, and
#: none of 30 at 224 (a picture of twice 160 px is past the detector's 320 px: enlarging it adds no pixel)
SMALL_STILL = 160
#: the enlargements (``cv2.INTER_CUBIC``) a small still is looked at, in turn until a face is found: each is
#: :meth:`Detector.detect_still`'s two tries (plain, then inside the grey border) on the enlarged picture. A 48-px
#: face is found by the detector at 96-144 px where it is not at 48 (its border try: 96 px, the face half of it)
ENLARGE = (2, 3)

log = logging.getLogger(__name__)


def ort_session(model, threads: int = 1, providers=None):
    """An ONNX Runtime session (``model``: path or serialized bytes), quiet logs, ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # fatal only: our own error line says what failed (errors came out ANSI-coloured)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model if isinstance(model, (bytes, bytearray)) else str(model), so,
                                providers=providers or ["CPUExecutionProvider"])


#: the 5 landmarks' order in a mirror image (left and right eye, nose, left and right mouth corner swap sides)
_MIRRORED_LANDMARKS = [1, 0, 2, 4, 3]


def _mirror_averaged(det: Detections, mirrored: Detections, width: int) -> Detections:
    """The faces of a picture (``det``) and of its mirror image (``mirrored``, detected on the picture flipped
    left-right, ``width`` pixels wide), the mirror's mapped back: a face found in both (matched one to one by IoU >
    0.3, the best total) gets the mean of its two boxes, landmarks and scores; a face found in one only is kept as
    found there. The picture and its mirror give the same faces (the one's are the other's mirrored), best score
    first."""
    from scipy.optimize import linear_sum_assignment

    from ..tracking import iou_matrix

    boxes = mirrored.boxes.astype(np.float32).copy()
    boxes[:, [0, 2]] = width - mirrored.boxes[:, [2, 0]]
    lmk = mirrored.landmarks.astype(np.float32).reshape(-1, 5, 2)[:, _MIRRORED_LANDMARKS].copy()
    lmk[..., 0] = width - lmk[..., 0]
    out_b = det.boxes.astype(np.float32).reshape(-1, 4).copy()
    out_l = det.landmarks.astype(np.float32).reshape(-1, 5, 2).copy()
    out_s = det.scores.astype(np.float32).copy()
    taken = np.zeros(len(boxes), bool)
    if len(out_b) and len(boxes):
        iou = iou_matrix(out_b, boxes)
        for i, j in zip(*linear_sum_assignment(-iou), strict=True):
            if iou[i, j] > 0.3:
                taken[j] = True
                out_b[i] = (out_b[i] + boxes[j]) / 2
                out_l[i] = (out_l[i] + lmk[j]) / 2
                out_s[i] = (out_s[i] + mirrored.scores[j]) / 2
    rest = ~taken
    scores = np.concatenate([out_s, mirrored.scores.astype(np.float32)[rest]])
    order = np.argsort(-scores, kind="stable")
    return Detections(np.concatenate([out_b, boxes[rest]])[order], scores[order],
                      np.concatenate([out_l, lmk[rest]])[order])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.4) -> np.ndarray:
    """Indices kept by non-maximum suppression, best first. boxes: (N, 4) xyxy; scores: (N,)."""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    keep = cv2.dnn.NMSBoxes(xywh.astype(np.float32).tolist(), scores.astype(np.float32).tolist(), 0.0, iou)
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


class Detector(abc.ABC):
    """Finds faces in a BGR frame.

    Args:
        max_side: the frame is shrunk so that its longer side is at most this
            many pixels before detection (None or 0 = native size; else at least
            :data:`MIN_SIDE`, below which no face can be found). Boxes and
            landmarks are returned in the original frame's pixels.
        score_threshold: minimum confidence kept.
        max_faces: keep at most this many faces (the largest), None = all.
    """

    name = "detector"
    #: the longer side of this detector's box over CenterFace's on the same faces (the median over the frames of 19
    #: shared clips where both found the face, ``scripts/eval_detector_framing.py``). Crops are cut at
    #: ``crop_scale / box_scale`` × the box, so that a face reaches the model framed as in training (the model's
    #: ``crop_scale`` and every training crop were measured and cut on CenterFace's boxes) whichever detector found
    #: it: :func:`realtime.crops.framing_scale`.
    box_scale = 1.0
    #: detect on the frame and on its mirror image, and average each face's two boxes and landmarks (the mirror's
    #: mapped back), so that a picture and its mirror give the same faces (``--mirror-detect``). The detectors' boxes
    #: are not mirror-symmetric (CenterFace's width differed by up to 5 % between a frame and its mirror, its height
    #: and top too), and the tight crop turns that into a framing change: on mirrored held-out clips 0-25 % of the
    #: frames read another top emotion (0-1 % with it). Off by default: it costs one more detection per detection
    #: (the pipeline bench: 100 -> 78 fps) and read the held-out clips no better (the same clips named, the labelled
    #: class's mean probability -0.004).
    mirror_average = False
    #: a still picture (:meth:`detect_still`) much larger than ``max_side`` is looked at once more at up to
    #: :data:`LOOK_SIDE` where no face or a small one is found (:meth:`_look_larger`); False keeps ``max_side`` as
    #: given (the Analyzer sets it from ``adapt_detect_size``: off with an explicit ``--detect-size``)
    look_larger = True
    #: a small still (:data:`SMALL_STILL`) where no try of :meth:`detect_still` finds a face is looked at enlarged
    #: (:data:`ENLARGE`). Off for a detector as made (its ``detect_still`` as before: the training crops' face tracks,
    #: ``tests/test_hardening.py``'s framing reference); the Analyzer turns it on for the stills it reads
    #: (``analyze_image``, image folders, a single picture, pictures held in memory read as stills)
    enlarge_small = False

    def __init__(self, max_side: Optional[int] = 320, score_threshold: float = 0.5,
                 max_faces: Optional[int] = None) -> None:
        if max_side is not None and max_side != 0 and max_side < MIN_SIDE:
            # a negative side scaled the frame by a negative factor, and a tiny one finds no face: both ran to the
            # end with no face found, which reads like a video without faces
            raise UsageError(f"detect_size (--detect-size) must be 0 (the frame's own size) or >= {MIN_SIDE}, "
                             f"not {max_side}")
        self.max_side = max_side or None
        self.score_threshold = float(score_threshold)
        self.max_faces = max_faces

    def detect(self, image: np.ndarray, max_side: Optional[int] = None) -> Detections:
        """Detect faces.

        Args:
            image: (H, W, 3) uint8 **BGR**.
            max_side: detect on the picture shrunk to this longer side (None: the detector's ``max_side``).

        Returns:
            :class:`~realtime.types.Detections` in ``image`` pixel coordinates,
            sorted by decreasing score.
        """
        if self._closed:
            raise UsageError(f"this {self.name} detector is closed (its model is released): make a new one")
        h, w = image.shape[:2]
        s = 1.0
        small = image
        side = self.max_side if max_side is None else max_side
        if side and max(h, w) > side:
            s = side / float(max(h, w))
            small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        det = self._detect(small)
        if self.mirror_average:
            det = _mirror_averaged(det, self._detect(np.ascontiguousarray(small[:, ::-1])), small.shape[1])
        keep = det.scores >= self.score_threshold
        det = det.select(keep)
        if len(det) and s != 1.0:
            det = Detections(det.boxes / s, det.scores, det.landmarks / s)
        if len(det):
            det.boxes[:, 0::2] = np.clip(det.boxes[:, 0::2], 0, w)
            det.boxes[:, 1::2] = np.clip(det.boxes[:, 1::2], 0, h)
            ok = (det.boxes[:, 2] - det.boxes[:, 0] > 1) & (det.boxes[:, 3] - det.boxes[:, 1] > 1)
            det = det.select(ok)
        if self.max_faces:
            det = det.largest(self.max_faces)
        return Detections(det.boxes.astype(np.float32), det.scores.astype(np.float32),
                          det.landmarks.astype(np.float32).reshape(-1, 5, 2))

    def detect_still(self, image: np.ndarray, pad: float = 0.5) -> Detections:
        """:meth:`detect` for a picture on its own (a photo, a data set's face crop): where nothing is found, detect
        again on the picture centred in a mid-grey border of ``pad`` × its longer side on each side, and return
        those faces in ``image`` pixels (boxes clipped to it). A face that fills the picture, as an aligned crop's
        does (FER-2013, RAF-DB, AffectNet), has too little context for the detector: 192 of 280 FER-2013 faces were
        found, 266 with the border (``benchmarks/2026-12-06-epyc1/image_folders.json``). Video frames do not take
        this second try (a frame without faces would cost two detections).

        Where the framed picture is larger than ``max_side``, the picture is shrunk to the size it takes inside the
        detector's ``max_side`` square first and the border added to that (``pad`` × the shrunk longer side, in
        whole pixels), so the border costs the detector's pixels, not the picture's: the framed copy at full size
        held four times the picture.

        With :attr:`enlarge_small` (the Analyzer's), a small picture (longer side at most :data:`SMALL_STILL`) where
        neither try finds a face takes both again on the picture enlarged (:data:`ENLARGE`: ×2, then ×3, bicubic),
        its faces mapped back to ``image`` pixels: the detector misses a face that fills a 48-px picture even in the
        border (45 of 1,244 held-out FER-2013 faces) and finds 36 of those enlarged.

        Args:
            image: (H, W, 3) uint8 BGR.
            pad: the border on each side, as a fraction of the picture's longer side.

        Returns:
            :class:`~realtime.types.Detections` in ``image`` pixels: boxes (N, 4) float32 xyxy, scores (N,) float32,
            landmarks (N, 5, 2) float32; empty where no try finds a face.
        """
        det = self._detect_still(image, pad)
        h, w = image.shape[:2]
        if len(det) or not self.enlarge_small or max(h, w) > SMALL_STILL:
            return det
        for k in ENLARGE:
            big = cv2.resize(image, (w * k, h * k), interpolation=cv2.INTER_CUBIC)
            found = self._detect_still(big, pad)
            if len(found):
                log.debug("still %dx%d: %d face(s) found enlarged x%d", w, h, len(found), k)
                boxes = np.clip(found.boxes / k, 0, [w, h, w, h]).astype(np.float32)
                return Detections(boxes, found.scores, (found.landmarks / k).astype(np.float32))
        return det

    def _detect_still(self, image: np.ndarray, pad: float) -> Detections:
        """:meth:`detect_still`'s two tries (and the look at a larger size) on ``image`` as it is."""
        det = self._look_larger(image, self.detect(image))
        if len(det):
            return det
        h, w = image.shape[:2]
        p = int(round(pad * max(h, w)))
        if p < 1:
            return det
        if self.max_side and max(h, w) + 2 * p > self.max_side:
            # Shrink before framing: the border was added at full size (a (H+2p, W+2p) copy, 4x the picture at
            # pad 0.5) that detect() then shrank to max_side. `facecycle process` on a 16000x16000 PNG of 746 KB:
            # 4.75 GB peak RSS and 19.6 s before, 2.0 GB (1.6 GB of it reading the picture) and 9.6 s now; three
            # 629-byte JPEGs declaring 30000x30000 read as stills asked for 10.8 GB (out of memory, exit 7), now
            # they run in 5.5 GB (cv2.imread's decoding of one: 5.2 GB). A 1080p still without a face: 56 -> 43 ms
            # a call. The picture and its border are cut to what detect() would have used (the framed side scaled to
            # max_side, whole pixels, kept within it so that detect() does not shrink again). The faces are the same
            # to 1e-4 px where the picture's edge falls on a detector pixel's edge (a square picture of even side:
            # FER-2013 crops enlarged); elsewhere the picture moves by under a detector pixel, and borderline faces
            # move as they did with the border 1 px wider (tests/test_hardening.py).
            s = self.max_side / float(max(h, w) + 2 * p)
            sw, sh = max(1, round(w * s)), max(1, round(h * s))
            q = max(1, min(int(round(p * s)), (self.max_side - max(sw, sh)) // 2))
            small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            fx, fy = w / float(sw), h / float(sh)
            log.debug("still %dx%d: framed at %dx%d (border %d px) for the second detection", w, h, sw + 2 * q,
                      sh + 2 * q, q)
        else:
            small, q, fx, fy = image, p, 1.0, 1.0
        framed = cv2.copyMakeBorder(small, q, q, q, q, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        det = self.detect(framed)
        if not len(det):
            return det
        # framed pixels -> picture pixels (exact at fx = fy = 1: float32 minus a whole number of pixels)
        boxes = ((det.boxes.astype(np.float64) - q) * np.array([fx, fy, fx, fy])).astype(np.float32)
        landmarks = ((det.landmarks.astype(np.float64) - q) * np.array([fx, fy])).astype(np.float32)
        inside = np.clip(boxes, [0, 0, 0, 0], [w, h, w, h])
        area = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6) * np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
        kept = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1]) >= 0.5 * area  # mostly on the picture
        return Detections(inside[kept].astype(np.float32), det.scores[kept], landmarks[kept])

    def _look_larger(self, image: np.ndarray, det: Detections) -> Detections:
        """A picture much larger than ``max_side`` (over 1.5 times) where ``det`` holds no face, or one under a fifth
        of the picture's height, is detected once more at up to :data:`LOOK_SIDE` px, and the faces found only there
        are added to ``det``: a video's run looks so (``realtime.analyzer``), but a photo had no such look, and faces
        under about 190 px in a 12-MP photo (73-183 px in a 4K one) were missed with no word (a probe's finding).
        The look costs one more detection (here 85 ms on a 640×480 picture, 280 ms on a 1080p or 4K one), so a
        picture whose faces are all large does not take it: a small face beside a large one is found only with a
        larger ``max_side`` (``--detect-size``), where a video's run looks at its start anyway."""
        h, w = image.shape[:2]
        if not self.look_larger or not self.max_side or max(h, w) <= 1.5 * self.max_side:
            return det
        if len(det) and float(np.min(np.maximum(det.boxes[:, 2] - det.boxes[:, 0],
                                                det.boxes[:, 3] - det.boxes[:, 1]))) >= 0.2 * h:
            return det
        big = self.detect(image, max_side=min(max(h, w), LOOK_SIDE))
        if not len(big):
            return det
        if len(det):
            from ..tracking import iou_matrix

            new = ~(iou_matrix(big.boxes, det.boxes) >= 0.3).any(axis=1)
            if not new.any():
                return det
            big = big.select(new)
            log.debug("still %dx%d: %d face(s) found only at %d px", w, h, len(big), min(max(h, w), LOOK_SIDE))
            both = Detections(np.concatenate([det.boxes, big.boxes]), np.concatenate([det.scores, big.scores]),
                              np.concatenate([det.landmarks, big.landmarks]))
            big = both.select(np.argsort(-both.scores, kind="stable"))  # by decreasing score, as detect() gives them
        return big.largest(self.max_faces) if self.max_faces else big

    @abc.abstractmethod
    def _detect(self, image: np.ndarray) -> Detections:
        """Detect on the (possibly shrunk) BGR image; coordinates in its pixels."""

    def describe(self) -> dict:
        return {"detector": self.name, "max_side": self.max_side, "score_threshold": self.score_threshold,
                "box_scale": self.box_scale, "mirror_average": self.mirror_average,
                "landmarks": True}  # 5 points; a model without them says False

    def _model_checksum(self, path: Union[str, Path]) -> Optional[str]:
        """sha256 of the detector's model file (computed once): two files of one name are told apart."""
        cached = getattr(self, "_sha256", None)
        if cached is None or cached[0] != str(path):
            try:
                cached = (str(path), sha256_file(path))
            except OSError:
                cached = (str(path), None)
            self._sha256 = cached
        return cached[1]

    #: set by :meth:`close`
    _closed = False

    def close(self) -> None:
        """Release the detector's model (its ONNX Runtime session or OpenCV net; idempotent); :meth:`detect`
        refuses afterwards."""
        self._closed = True
        self._release()

    def _release(self) -> None:
        """Drop the model's session (subclasses holding one)."""
