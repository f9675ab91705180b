"""Per-face model outputs: one batched engine call per frame for all its faces.

For each frame: loose square crops of every face (``realtime.crops``), one
``analyze`` call (code, feature, intensity, flow), the emotion head on the
feature when present, and — only when requested — ``neutralize`` (the neutral
face) and ``identity`` (the identity code).

The neutral face is the model's de-expression applied ``neutral_passes`` times
(default :data:`NEUTRAL_PASSES`): the generator softens an expression more than
it removes it, and a neutral face should be a fixed point of neutralization, so
the first pass's face is analysed and neutralized again (MODEL_CARD.md,
experiment 13: 52 % → 69 % judged neutral on held-out expressive frames).

A tilted head's expression (feature, emotions, intensity, code) is read from its crop turned so that its eyes come
out level (:func:`realtime.crops.level_angle`: from 10° of roll, wholly from 20°), in the same ``analyze`` call as
the upright crops; the flow and the neutral face stay the upright crop's (``Face.crop_box``; the generator's neutral
faces of turned crops were judged neutral less often). Heads rolled by 30° read another emotion in 8 of 24 held-out
clip readings upright (a neutral face as angry, an angry one as neutral; neutral faces doubled their intensity).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional, Tuple

import cv2
import numpy as np

from engines.base import Backend
from facecycle.errors import ModelError, UsageError
from facecycle.preprocess import from_output, to_input

from .crops import (
    DEFAULT_SCALE,
    LEVEL_FROM_DEG,
    LEVEL_FULL_DEG,
    crop_faces,
    crop_square,
    level_angle,
    loose_square_box,
    outside_share,
    whole_picture_square,
)
from .detectors.base import SMALL_STILL
from .heads import ExpressionHead
from .neutral_detail import sharpen_neutral
from .pose import estimate_pose
from .types import EMOTIONS, Face, FramePacket

if TYPE_CHECKING:
    from .tracking import Tracker

__all__ = ["FaceInference", "NEUTRAL_PASSES"]

log = logging.getLogger(__name__)

#: how many times the neutral face is neutralized (1 = the model's single de-expression)
NEUTRAL_PASSES = 2

#: (below, to): a face crop whose middle half's mean level (0-255, over its pixels and channels: the face, not the
#: background) is under ``below`` is scaled so that it is ``to`` before it is read. A face in a dark room (a webcam at
#: a tenth of its light) read "angry" on every probed clip, whatever it showed, and froze there; brightened, it reads
#: as it does lit (scripts/eval_dark.py, docs/reliability.md "Light"). Lit faces' middles are 63-195 on the 77 shared
#: clips: never touched (the whole crop's mean went down to 46 on a lit face against a dark wall)
DARK_LIFT = (50.0, 110.0)
#: the most a dark crop is scaled by (a black crop stays dark rather than becoming noise)
DARK_LIFT_MOST = 10.0


def lift_dark(crops: np.ndarray, below: float = DARK_LIFT[0], to: float = DARK_LIFT[1],
              most: float = DARK_LIFT_MOST) -> Tuple[np.ndarray, np.ndarray]:
    """Brighten the dark ones of ``crops`` (N, S, S, 3) uint8 (any colour order): each whose middle half's mean level
    is under ``below`` scaled so that it is ``to`` (at most ``most`` times). Returns the crops (the same array where
    none is dark) and each one's gain (N,) float32, 1.0 where it is left alone."""
    gains = np.ones(len(crops), np.float32)
    if not len(crops):
        return crops, gains
    s = crops.shape[1]
    # the face's own level: the crop's middle half (the whole crop counts the background: a face against a bright
    # window, or a lit face against a dark wall, read wrongly by it)
    means = crops[:, s // 4: s - s // 4, s // 4: s - s // 4].reshape(len(crops), -1).mean(axis=1)
    dark = np.nonzero(means < below)[0]
    if not len(dark):
        return crops, gains
    gains[dark] = np.minimum(most, to / np.maximum(means[dark], 1.0))
    return brighten(crops, gains), gains


def brighten(crops: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """``crops`` (N, S, S, 3) uint8 each scaled by its gain (N,), rounded and clipped to uint8 (a new array)."""
    g = np.asarray(gains, np.float32)[:, None, None, None]
    return np.clip(crops.astype(np.float32) * g + 0.5, 0, 255).astype(np.uint8)


class FaceInference:
    """Fill the model outputs of every face of a packet.

    Args:
        backend: an open :class:`engines.base.Backend` on an exported model dir.
        head: the expression head (None: emotions stay None).
        neutralize: also compute ``Face.neutral`` (N, N, 3) uint8 RGB (N from S up to ``neutral_size``).
        identity: also compute ``Face.identity`` (needs an ``identity`` graph).
        crop_scale: see :func:`realtime.crops.loose_square_box`; None = the framing
            the model was trained on (its manifest's ``config.crop_scale``, else 1.7).
        neutral_detail: return sharp neutral faces (:mod:`realtime.neutral_detail`) at up to
            ``neutral_size`` pixels instead of the generator's S×S output.
        neutral_passes: neutralize this many times (≥ 1): pass k analyses pass k−1's neutral face and
            neutralizes it with its own flow; the sharp face's crop is warped by every pass's flow in order.
            Each pass after the first costs one ``analyze`` and one ``neutralize`` call.
    """

    def __init__(self, backend: Backend, head: Optional[ExpressionHead] = None, neutralize: bool = False,
                 identity: bool = False, crop_scale: Optional[float] = None, neutral_detail: bool = True,
                 neutral_size: int = 192, neutral_passes: int = NEUTRAL_PASSES) -> None:
        if int(neutral_passes) < 1:
            raise UsageError("neutral_passes (--neutral-passes) must be >= 1")
        self.backend = backend
        man = backend.manifest
        self.size = int(man["input"]["size"])
        self.mean = tuple(man["input"]["mean"])
        self.std = tuple(man["input"]["std"])
        cfg = man.get("config", {})
        self.code_dim = int(cfg.get("code_dim") or _out_dim(backend, "analyze", "code"))
        self.feature_dim = _out_dim(backend, "analyze", "feature")
        if "analyze" not in backend.graphs:
            raise ModelError(f"{backend.model_dir}: no 'analyze' graph")
        if neutralize and "neutralize" not in backend.graphs:
            raise ModelError(f"{backend.model_dir}: no 'neutralize' graph (needed for --neutralize)")
        if identity and "identity" not in backend.graphs:
            raise ModelError(f"{backend.model_dir}: no 'identity' graph (not an identity-stage model)")
        if head is not None and head.feature_dim != self.feature_dim:
            raise ModelError(f"expression head expects {head.feature_dim}-d features, model gives "
                             f"{self.feature_dim}")
        if head is not None and tuple(head.classes) != EMOTIONS:  # its columns are the CSV's emotion_* columns
            raise ModelError(f"expression head: classes {list(head.classes)}, not the {len(EMOTIONS)} emotions "
                             f"{', '.join(EMOTIONS)} in that order")
        self.head = head
        self.neutralize = neutralize
        self.identity = identity
        if crop_scale is None and "crop_scale" not in cfg:
            log.warning("%s: the manifest records no config.crop_scale (the framing the model was trained on); "
                        "cropping faces at the default %g", backend.model_dir, DEFAULT_SCALE)
        self.crop_scale = float(crop_scale if crop_scale is not None else cfg.get("crop_scale", DEFAULT_SCALE))
        self.neutral_detail = bool(neutral_detail)
        self.neutral_size = int(neutral_size)
        self.neutral_passes = int(neutral_passes)
        self.neutral_idx = EMOTIONS.index("neutral")
        #: (from, full) degrees of head roll between which crops are turned towards level (:func:`level_angle`)
        self.level = (LEVEL_FROM_DEG, LEVEL_FULL_DEG)
        #: (below, to) of :func:`lift_dark` for the crops read (None: never brightened)
        self.dark_lift: Optional[Tuple[float, float]] = DARK_LIFT
        #: where the head pose's camera has its principal point (:data:`realtime.pose.POSE_CAMERAS`): ``"frame"``,
        #: the frame's centre; ``"face"``, each face's own box centre (screen recordings, galleries, insets)
        self.pose_camera = "frame"
        #: the head pose's camera's focal length in pixels of the frame as read (after ``rotate`` and the display
        #: shape); None: the frame's longer side (:func:`realtime.pose.camera_matrix`)
        self.pose_focal: Optional[float] = None

    def __call__(self, packet: FramePacket, neutralize: Optional[bool] = None) -> FramePacket:
        """Fill every face's outputs; ``neutralize`` overrides this instance's setting for this packet (the
        look-ahead's first pass analyses without neutral faces, :meth:`neutral_face` makes the few it banks)."""
        t = time.perf_counter()
        faces = packet.faces
        w, h = packet.width, packet.height
        own = self.pose_camera == "face"
        for f in faces:
            f.pose = estimate_pose(f.landmarks, w, h, ((f.box[0] + f.box[2]) / 2.0, (f.box[1] + f.box[3]) / 2.0)
                                   if own else None, self.pose_focal)
        if faces:
            crops, squares = crop_faces(packet.image, np.stack([f.box for f in faces]), self.size, self.crop_scale,
                                        squares=[f.crop_box for f in faces])
            x = to_input(crops, self.mean, self.std)  # the neutral faces and identity codes: the crops as they are
            # a dark face is read brightened (DARK_LIFT): its expression and flow; its neutral face stays as dark as
            # the face, so that it looks like the person there
            lifted, gains = lift_dark(crops, *self.dark_lift) if self.dark_lift else (crops, np.ones(len(faces)))
            xr = x if lifted is crops else to_input(lifted, self.mean, self.std)
            # a tilted head's expression is read from its crop turned level too, in the same call; its flow, hence its
            # neutral face, stays the upright crop's. A face whose square is given keeps its turn (a picture read
            # whole: none; a face analysed before, as the look-ahead's replay has them: its own)
            angles = [level_angle(f.landmarks, *self.level) if f.crop_box is None else f.read_angle for f in faces]
            turned = [i for i, a in enumerate(angles) if a]
            if turned:
                ct = np.stack([crop_square(packet.image, squares[i], self.size, angles[i]) for i in turned])[..., ::-1]
                g = gains[turned]
                if (g > 1.0).any():  # the upright crop's decision and gain (Face.lift says them): one per face
                    ct = brighten(ct, g)
                xt = to_input(ct, self.mean, self.std)
                both = self.backend.run("analyze", {"image": np.concatenate([xr, xt])})
                out = {k: v[:len(faces)].copy() for k, v in both.items()}
                for k in ("feature", "code"):
                    out[k][turned] = both[k][len(faces):]
            else:
                out = self.backend.run("analyze", {"image": xr})
            probs = self.head.predict(out["feature"]) if self.head is not None else None
            neutral = (self._neutral_faces(packet.image, x, out["flow"], squares)
                       if (self.neutralize if neutralize is None else neutralize) else None)
            ident = self.backend.run("identity", {"image": x})["identity"] if self.identity else None
            for i, f in enumerate(faces):
                f.crop_box = squares[i]
                # here, where the square and the frame meet: the edge-filled share of the model's input
                f.crop_outside = outside_share(squares[i], w, h)
                f.read_angle = angles[i]
                f.lift = float(gains[i])
                f.code = out["code"][i]
                f.feature = out["feature"][i]
                f.flow_intensity = float(out["intensity"][i])
                f.flow = out["flow"][i]
                f.emotions = probs[i] if probs is not None else None
                f.intensity = (1.0 - float(probs[i][self.neutral_idx])) if probs is not None else f.flow_intensity
                f.neutral = neutral[i] if neutral is not None else None
                f.identity = ident[i] if ident is not None else None
        packet.stats["infer"] = time.perf_counter() - t
        return packet

    def frame_as_still(self, packet: FramePacket, tracker: Optional["Tracker"] = None) -> FramePacket:
        """For a picture on its own: where its one face fills a (near-)square picture, the face is read from the
        whole picture (``Face.crop_box``), as the probes read FER-2013 (:func:`~realtime.crops.whole_picture_square`):
        an aligned crop re-cropped around a detector box loses the framing the model learnt on. Call before
        :meth:`__call__`; frames of a video are never framed this way.

        Where no face was found in a small (near-)square picture (longer side at most
        :data:`~realtime.detectors.base.SMALL_STILL` px, within 10 % of square: :func:`whole_picture_square`'s
        rule; not a blank of one colour), the picture is taken as a data set's face crop and read whole, as the
        probes read it (:class:`~realtime.crops.StillFramer`): one face of score 0 (the CSV's ``confidence`` 0 with
        ``success`` 1), its box the whole picture, its landmarks NaN (no pose), ``detected`` False, its id the
        ``tracker``'s next (its ``next_id``, advanced; 0 without one). 45 of 1,244 held-out FER-2013 faces had no
        reading, 9 after :meth:`~realtime.detectors.Detector.detect_still`'s enlarged looks: read whole, they get one.
        """
        h, w = packet.image.shape[:2]
        if len(packet.faces) == 1:
            f = packet.faces[0]
            f.crop_box = whole_picture_square(packet.image.shape, loose_square_box(f.box, self.crop_scale))
        elif not packet.faces and 0 < max(h, w) <= SMALL_STILL:
            own = whole_picture_square(packet.image.shape, (0, 0, max(h, w)))  # the picture is the face's square
            if own is not None and not (packet.image == packet.image[:1, :1]).all():  # a blank holds no face
                face_id = tracker.next_id if tracker is not None else 0
                if tracker is not None:
                    tracker.next_id += 1
                packet.faces = [Face(box=np.array([0, 0, w, h], np.float32), score=0.0,
                                     landmarks=np.full((5, 2), np.nan, np.float32), track_id=face_id, detected=False,
                                     crop_box=own)]
        return packet

    def add_neutral_faces(self, packet: FramePacket) -> FramePacket:
        """Give the faces of ``packet`` their neutral faces from their own analyses (``Face.flow``, ``crop_box``,
        left by an earlier :meth:`__call__` on the same frame and faces): the look-ahead's second reading replays
        the first's analyses and only neutralizes, with the same faces as :meth:`__call__` would make."""
        t = time.perf_counter()
        faces = packet.faces
        if faces:
            crops, squares = crop_faces(packet.image, np.stack([f.box for f in faces]), self.size, self.crop_scale,
                                        squares=[f.crop_box for f in faces])
            neutral = self._neutral_faces(packet.image, to_input(crops, self.mean, self.std),
                                          np.stack([f.flow for f in faces]), squares)
            for f, n in zip(faces, neutral, strict=True):
                f.neutral = n
        packet.stats["infer"] = time.perf_counter() - t
        return packet

    def neutral_face(self, image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The neutral face (S', S', 3) uint8 RGB of the face with detector box ``box`` (4,) in ``image_bgr``
        (H, W, 3) uint8 BGR, exactly as :meth:`__call__` makes ``Face.neutral`` (one face, its own batch)."""
        crops, squares = crop_faces(image_bgr, np.asarray(box, np.float32)[None], self.size, self.crop_scale)
        x = to_input(crops, self.mean, self.std)
        lifted = lift_dark(crops, *self.dark_lift)[0] if self.dark_lift else crops  # the flow as __call__ reads it
        xr = x if lifted is crops else to_input(lifted, self.mean, self.std)
        return self._neutral_faces(image_bgr, x, self.backend.run("analyze", {"image": xr})["flow"], squares)[0]

    def _neutral_faces(self, image_bgr: np.ndarray, x: np.ndarray, flow: np.ndarray, squares) -> list:
        """Neutral faces (RGB uint8) of model inputs ``x`` cut from ``image_bgr`` at ``squares`` whose ``analyze``
        gave ``flow``: the passes, then the sharp detail (:mod:`realtime.neutral_detail`) where on."""
        n, flows = self.run_neutral(x, flow)
        neutral = from_output(n, self.mean, self.std)
        if self.neutral_detail:
            return [self._sharp(image_bgr, sq, neutral[i], flows[:, i]) for i, sq in enumerate(squares)]
        return list(neutral)

    def run_neutral(self, x: np.ndarray, flow: np.ndarray) -> tuple:
        """The ``neutral_passes`` neutralization passes of model inputs ``x`` (N, 3, S, S) whose ``analyze``
        gave ``flow`` (N, 2, h, w): (the last pass's neutral faces (N, 3, S, S) in the model's normalised space,
        every pass's flow (passes, N, 2, h, w)), as :func:`realtime.neutral_detail.sharpen_neutral` takes them
        (per face: ``flows[:, i]``)."""
        flows = [flow]
        n = self.backend.run("neutralize", {"image": x, "flow": flow})["neutral"]
        for _ in range(self.neutral_passes - 1):
            n = np.ascontiguousarray(n, np.float32)
            f = self.backend.run("analyze", {"image": n})["flow"]
            n = self.backend.run("neutralize", {"image": n, "flow": f})["neutral"]
            flows.append(f)
        return n, np.stack(flows)

    def _sharp(self, image_bgr: np.ndarray, square: tuple, neutral_rgb: np.ndarray, flow: np.ndarray) -> np.ndarray:
        side = int(square[2])
        hr = min(self.neutral_size, max(self.size, side))  # a face smaller than the model's input: only the border
        crop = crop_square(image_bgr, square, hr)[..., ::-1]
        return sharpen_neutral(neutral_rgb, np.ascontiguousarray(crop), flow)

    def identify(self, images: np.ndarray) -> np.ndarray:
        """Unit identity codes of face images (the neutral faces that :mod:`realtime.neutral_reference` compares).

        Args:
            images: (N, H, W, 3) uint8 **RGB**, any square size (resized to the model's with area interpolation).

        Returns:
            (N, D) float32, L2-normalised rows. Needs an ``identity`` graph (see :attr:`can_identify`).
        """
        imgs = np.asarray(images)
        if imgs.ndim == 3:
            imgs = imgs[None]
        small = np.stack([im if im.shape[0] == self.size else
                          cv2.resize(im, (self.size, self.size), interpolation=cv2.INTER_AREA) for im in imgs])
        v = np.asarray(self.backend.run("identity", {"image": to_input(small, self.mean, self.std)})["identity"],
                       np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    @property
    def can_identify(self) -> bool:
        """Whether the model has an ``identity`` graph (:meth:`identify`)."""
        return "identity" in self.backend.graphs

    def describe(self) -> dict:
        return {"image_size": self.size, "code_dim": self.code_dim, "feature_dim": self.feature_dim,
                "expression_head": self.head is not None, "neutralize": self.neutralize,
                "identity": self.identity, "crop_scale": self.crop_scale,
                "intensity": "1 - P(neutral) of the expression head" if self.head is not None
                else "mean flow length (crop-side units)",
                "neutral_detail": self.neutral_detail if self.neutralize else None,
                "neutral_passes": self.neutral_passes if self.neutralize else None}


def _out_dim(backend: Backend, graph: str, name: str) -> int:
    spec = backend.graphs.get(graph)
    if spec is None:
        raise ModelError(f"{backend.model_dir}: no {graph!r} graph")
    for o in spec.outputs:
        if o["name"] == name:
            return int(o["shape"][1])
    raise ModelError(f"{backend.model_dir}: graph {graph!r} has no output {name!r}")
