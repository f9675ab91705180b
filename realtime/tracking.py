"""Face tracking: stable ids across frames.

* On detection frames, detections are matched to live and recently lost
  tracks by IoU with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``);
  unmatched detections start new tracks; unmatched tracks become *lost* and are
  kept for ``lost_buffer`` seconds so a face that reappears keeps its id.
* **Fast motion** (``docs/reliability.md``, "Fast motion and camera shake"). A face moving half a box width or more
  between two detections overlapped its old box too little and got a new id at every detection (at 10-15 fps a
  walking person had 22-23 ids in 8 s). On a scheduled detection frame the live tracks are now first moved to it by
  the optical flow (as :meth:`Tracker.propagate` moves them); each track keeps its velocity (px/s, from the moves of
  its box), and a track not moved to the frame is matched by its box moved on by it too; a face faster than the
  flow's reach is looked for near its box (template correlation) and followed from there; and detections the IoU
  matching leaves are matched by centre distance (:meth:`Tracker._match_near`: near as far as the track's speed
  carried it, of a like size, one to one, and never where another face is about as near, so two faces never swap).
* Between detections, :meth:`Tracker.propagate` moves each live track with
  pyramidal Lucas–Kanade optical flow on a small grey frame: its 5 landmarks
  and 9 points over the face (forehead, nose, cheeks, chin) give one
  similarity motion (rotation, scale, shift; a RANSAC fit, so an eye's point
  that follows a glance or the talking mouth does not drag the face), which
  moves the box and the landmarks together; the nose tip shown also slides
  along the eye line by its own flow (a turning head's yaw), which the fit and
  the box do not see. A track whose points fail
  the forward–backward check is dropped to *lost*, and ``propagate`` returns
  ``False`` so the caller can run the detector on that frame. A sudden change
  of the picture (the mean absolute difference of consecutive grey frames above
  ``cut_threshold``) returns ``False`` too, so a face that appears there is found
  at once.
* A **scene cut** is such a change that is also a change of structure: the
  normalized cross-correlation of the two grey frames at 32×32 is below
  ``cut_similarity`` (or the frame size changed), and no camera motion explains it (:func:`camera_motion`, run
  only where the first two tests fire: ORB features agreeing on one shift, turn and zoom). A light switched on or the
  camera's exposure keeps the structure (correlation ≈ 1); another shot does
  not; camera shake and a sharp pan change it but are one motion of the whole picture (they were read as cuts:
  33 in 8 s of a shaken clip, 28 of a fast pan; 7 and 0 now, with every join of two clips still a cut).
  At a cut every track ends, lost ones too: a face after the cut gets a
  new id even where its box overlaps one of the previous shot, so per-track
  state (smoothing, the person baseline, the neutral reference) never mixes two
  people.
* **A face that changes in place** (a video-call gallery reordering its tiles, a newcomer in a participant's tile)
  is no cut: the rest of the picture stays, and the box matching alone continued each track on the other person.
  Each track keeps its face's look (:func:`face_look`: 24×24 grey, and the mean CIELAB a*, b* of the box's middle)
  from where it was last placed; where the flow moves it next, or a detection continues it (one the flow did not
  place on that frame), :func:`face_continuity` compares the two: a correlation below ``same_face`` (0.35), or below
  ``same_face_colour`` (0.8) with the colour moved more than ``colour_shift`` (4), is another face. The flow's track
  is then lost (a detection is asked for); a detection's track ends, and the face starts a new one, where the change
  is local (:meth:`Tracker._local`: at least :data:`STILL_SHARE` of the picture around stayed; a change of the whole
  picture is the frame-level tests'). docs/pipeline.md, "Scene cuts": on the 77 shared clips no track ended by it;
  made tile swaps and newcomers, ids holding two people 29 → 1.
* A **gradual transition** ends every track too (:class:`GradualCut`): a dissolve, where the frame half-way
  through a window of 8–96 frames is a mix of its two ends that differ in structure, or a fade through a
  blank frame. Each frame's step is too small for the cut test.
  :attr:`Tracker.last_cut` says whether the frame just tracked (by
  ``propagate``, ``update`` or both) follows a cut. Measured on the 77 shared
  clips (``scripts/eval_scene_cuts.py``, ``benchmarks/2026-12-05-epyc1/scene_cuts.json``):
  no cut on 21,124 pairs of consecutive frames (a fast head shake and a same-person jump
  cut change the grey levels as much as a cut, but not the structure), and 99.0 % of
  5,852 cuts made by joining two clips. Gradual transitions (MODEL_CARD.md, experiment 34): no
  false one in 21,206 frames; 75–92 % of dissolves made of two clips and every fade through black found
  (``benchmarks/2026-12-05-epyc2/scene_cuts.json``). Both tests read the picture inside letterbox and pillarbox
  bars (:func:`picture_area`; experiment 42): with every clip in a 16:9 frame, 99.1 % of joins (59.4 % before)
  and 93.5 % of 10-frame dissolves (30.5 %) found, no false cut or transition
  (``benchmarks/2026-12-05-epyc5/scene_cuts_pad16x9.json``). A fade is reported once: the cut test's cut
  out of a reported blank is that blank's transition (experiment 46: 10-frame fades reported twice 15–33 % → 0–1 %,
  ``benchmarks/2026-12-05-epyc7/scene_cuts*.json``). Windows of 64 and 96 frames find longer dissolves
  (experiment 47: 50-frame ones 74 → 83.5 %, 100-frame ones 22.5 → 79 %, ``scene_cuts*_windows96.json``).
* A **change of frame size** at the same aspect (a stream switching resolution) is no cut: the tracks are
  rescaled to the new size and a detection is asked for. Another aspect is a cut.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from .types import Detections, Face

__all__ = ["Tracker", "Track", "FaceLook", "GradualCut", "camera_motion", "detect_faces", "face_continuity",
           "face_look", "iou_matrix", "picture_area", "structural_similarity"]

log = logging.getLogger(__name__)

#: letterbox and pillarbox bars are darker than this (grey level): a flat light edge is a wall, not a bar
BAR_DARK = 48.0
#: the side (pixels) of the grey face picture each track keeps for the continuity test (:func:`face_look`)
PATCH_SIDE = 24
#: how far (a share of the box, each way) :func:`face_continuity` shifts the picture to match
PATCH_REACH = 1 / 6
#: a pixel of the tracker's grey frame (longer side 320 px) whose level moved by at most this much stayed
STILL_LEVEL = 2
#: the least share of the picture around a track (outside its box and the detection's, grown twice) that must have
#: stayed for the continuity test to end the track: a change of the face alone, not of the whole picture
STILL_SHARE = 0.15


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of ``a`` (N, 4) and ``b`` (M, 4), xyxy -> (N, M)."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)


@dataclass
class Track:
    id: int
    box: np.ndarray
    landmarks: np.ndarray
    score: float
    last_seen: float  # timestamp of the last detection match
    hits: int = 1
    lost: bool = False
    identity: Optional[np.ndarray] = field(default=None, repr=False)
    #: the box centre's velocity (pixels per unit of the timestamps: px/s in the pipeline), smoothed over the box's
    #: moves (optical flow and detections); None until the box has moved once
    velocity: Optional[np.ndarray] = field(default=None, repr=False)
    speed: float = 0.0  # the larger of the last step's speed and the smoothed velocity's (a face turning back)
    box_ts: Optional[float] = None  # timestamp of ``box`` (its last move, by flow or detection); None: ``last_seen``
    #: the face where the track was last placed and passed the continuity test (:func:`face_look`); None until one
    #: is taken, and while the box is not inside the picture
    look: Optional["FaceLook"] = field(default=None, repr=False)
    checked: Optional[float] = None  # the timestamp the optical flow last moved the track to, its face checked there
    #: (the ``landmarks`` the optical flow set, the landmarks the head's motion alone carried): the flow follows the
    #: second while ``landmarks`` is still the first (:func:`_flow_landmarks`; the nose tip shown slid beside them)
    flow_marks: Optional[Tuple[np.ndarray, np.ndarray]] = field(default=None, repr=False)

    def move(self, box: np.ndarray, timestamp: float, smoothing: float = 0.5) -> None:
        """Put the track's box at ``box`` (xyxy) seen at ``timestamp``; the centre's shift since the last box, over
        the time between them, updates :attr:`velocity` (an exponential mean, weight ``smoothing`` on the new step).
        A second box of one frame (a detection after the flow moved the track there) moves it without a step."""
        since = self.box_ts if self.box_ts is not None else self.last_seen
        dt = float(timestamp) - float(since)
        if dt > 1e-9:
            step = (_centre(box) - _centre(self.box)) / dt
            self.velocity = step if self.velocity is None else (
                (1.0 - smoothing) * self.velocity + smoothing * step).astype(np.float32)
            self.speed = float(max(np.linalg.norm(step), np.linalg.norm(self.velocity)))
        self.box = np.asarray(box, np.float32)
        self.box_ts = float(timestamp)

    def predicted(self, timestamp: float, horizon: float) -> np.ndarray:
        """The box moved on by :attr:`velocity` to ``timestamp`` (at most ``horizon`` past its own time); the box
        itself where the velocity is unknown."""
        since = self.box_ts if self.box_ts is not None else self.last_seen
        dt = min(float(timestamp) - float(since), horizon)
        if self.velocity is None or dt <= 0:
            return self.box
        return (self.box + np.tile(self.velocity * dt, 2)).astype(np.float32)


def _centre(box: np.ndarray) -> np.ndarray:
    """(2,) float32 centre of an xyxy box."""
    return ((np.asarray(box[:2], np.float32) + np.asarray(box[2:4], np.float32)) / 2).astype(np.float32)


#: seconds after its last detection that a lost face is looked for on every frame (:meth:`Tracker.has_lost`)
REACQUIRE_S = 0.5


class Tracker:
    """IoU + Hungarian tracker with a lost-track buffer and optical-flow propagation.

    Args:
        iou_threshold: minimum IoU for a detection to continue a track.
        lost_buffer: seconds a lost track is remembered (re-matched by IoU with its last box).
        flow_side: longer side (pixels) of the grey frame used for optical flow.
        max_fb_error: forward–backward error (pixels at ``flow_side`` scale) above which a point fails.
        cut_threshold: mean absolute grey-level difference (0–255) between consecutive frames above which
            the picture changed: the caller is asked for a detection.
        cut_similarity: normalized cross-correlation (32×32 grey) below which such a change is a scene cut
            that ends every track, unless the camera moved (:func:`camera_motion`).
        motion_similarity: the correlation (32×32 grey, over the area both frames show) of the previous frame moved
            by the camera's motion with this one at or above which a change that the cut test reads as a cut is the
            camera's (shake, a fast pan) and no cut (with at least :data:`MOTION_MIN_INLIERS` features agreeing).
        reach: how far (in box sizes, centre to centre) a detection left over by the IoU matching may be from a
            track's box (or its box moved on by the track's velocity) to continue it: a face that moved about one
            box width between two detections keeps its id.
        reach_lost_s: seconds a lost track may still be continued by ``reach`` (later only by IoU).
        predict_s: the longest time a track's box is moved on by its velocity for the matching.
        same_face: the per-track continuity test (:meth:`_same_face`): the correlation of a track's face (24×24
            grey) with the picture where the flow or a detection places it next, below which it is another person's
            face: the track ends (a detection) or is lost (the flow) and the face there gets a new id.
        same_face_colour, colour_shift: below this correlation, a face whose colour (mean CIELAB a*, b* of the box's
            middle) moved more than ``colour_shift`` is another person's too. A detection ends a track so only where
            the rest of the picture stayed (:meth:`_local`).
    """

    def __init__(self, iou_threshold: float = 0.3, lost_buffer: float = 2.0, flow_side: int = 320,
                 max_fb_error: float = 1.5, cut_threshold: float = 25.0, cut_similarity: float = 0.7,
                 motion_similarity: float = 0.96, reach: float = 1.5, reach_lost_s: float = 0.25,
                 predict_s: float = 0.5, same_face: float = 0.35, same_face_colour: float = 0.8,
                 colour_shift: float = 4.0) -> None:
        self.iou_threshold = float(iou_threshold)
        self.lost_buffer = float(lost_buffer)
        self.flow_side = int(flow_side)
        self.max_fb_error = float(max_fb_error)
        self.cut_threshold = float(cut_threshold)
        self.cut_similarity = float(cut_similarity)
        self.motion_similarity = float(motion_similarity)
        self.reach = float(reach)
        self.reach_lost_s = float(reach_lost_s)
        self.predict_s = float(predict_s)
        self.same_face = float(same_face)
        self.same_face_colour = float(same_face_colour)
        self.colour_shift = float(colour_shift)
        self._flow_ts: Optional[float] = None  # the frame propagate followed last (update follows the others)
        self._update_ts: Optional[float] = None  # the frame update saw last
        self._now: Optional[float] = None  # the timestamp of the frame being tracked
        self._before: Optional[float] = None  # and of the frame before it
        self._features: Optional[Tuple[cv2.ORB, cv2.BFMatcher]] = None  # camera_motion's, made when first needed
        self.tracks: List[Track] = []
        self.next_id = 0
        self._prev_gray: Optional[np.ndarray] = None
        self._scale = 1.0
        #: True when the frame last given to :meth:`propagate` / :meth:`update` follows a scene cut
        #: (every track ended there)
        self.last_cut = False
        self._cut_seen = False  # propagate saw a cut on the frame that update may now be given
        #: dissolves and fades (every track ends there too)
        self.gradual = GradualCut()
        self._seen_ts: Optional[float] = None  # the frame GradualCut saw last (propagate and update share one)
        self._size: Optional[Tuple[int, int]] = None  # the last frame's (H, W)
        #: integral image of the grey frame's pixels that stayed since the frame before (:func:`_still_pixels`)
        self._still: Optional[np.ndarray] = None
        #: the frame size changed on the frame being tracked: "scaled" (same aspect: the same picture at another
        #: resolution, as an adaptive stream switches), "reshaped" (another aspect: a new picture), or None
        self._size_jump: Optional[str] = None
        self._jump_ts: Optional[float] = None

    def _change(self, gray: np.ndarray) -> Tuple[bool, bool]:
        """``(changed, cut)`` between the previous grey frame and ``gray``.

        ``changed``: mean absolute difference > ``cut_threshold`` or another frame size (ask for a
        detection). ``cut``: changed, and the structure too (a new shot: every track ends).
        """
        prev = self._prev_gray
        if prev is None:
            return False, False
        if self._size_jump == "reshaped":
            return True, True
        if prev.shape != gray.shape:
            if self._size_jump != "scaled":
                return True, True
            # the same picture at another resolution: compare (and follow the flow) at the new small size
            prev = self._prev_gray = cv2.resize(prev, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_AREA)
        rows, cols = picture_area(prev, gray)  # inside letterbox / pillarbox bars, which would dilute both tests
        if (rows.stop - rows.start, cols.stop - cols.start) != gray.shape:
            prev, gray = np.ascontiguousarray(prev[rows, cols]), np.ascontiguousarray(gray[rows, cols])
        if cv2.norm(prev, gray, cv2.NORM_L1) / gray.size <= self.cut_threshold:
            return False, False
        if structural_similarity(prev, gray) >= self.cut_similarity:
            return True, False
        # the cut test's cut: unless the camera moved (shake, a sharp pan), which only this rarer check can tell
        if self._features is None:
            self._features = _feature_tools()
        moved = camera_motion(prev, gray, self._features, self.motion_similarity) is not None
        if moved:
            log.debug("a change of the picture that the camera's motion explains: no cut")
        return True, not moved

    def _scene(self, gray: np.ndarray, timestamp: float) -> Tuple[bool, bool]:
        """``(changed, cut)`` for the grey frame ``gray`` against the previous one (:meth:`_change`), where a
        dissolve or fade ending here is a cut too, and the cut test's cut just out of a fade's blank is not
        (:attr:`gradual`, shown each frame once: ``propagate`` and ``update`` may both see one frame)."""
        changed, cut = self._change(gray)
        if self._seen_ts is None or timestamp != self._seen_ts:
            self._seen_ts = timestamp
            self._still = _still_pixels(self._prev_gray, gray)
            # the gradual test sees the cut test's finding: its windows start over at a cut, and a cut out of a
            # blank that it reported is that blank's transition, not a second one
            cut = self.gradual(gray, cut=cut, timestamp=timestamp)
        return changed, cut

    def _resize_check(self, image: np.ndarray, scale: float, timestamp: float) -> bool:
        """Note ``image``'s size; True when it differs from the last frame's. At the same aspect (within 2 %) the
        tracks' boxes and landmarks are rescaled to the new size, so a stream that switches resolution keeps its
        ids; at another aspect the change test reports a cut. Either way the caller asks for a detection."""
        size = (int(image.shape[0]), int(image.shape[1]))
        old, self._size = self._size, size
        if old is None or old == size:
            if timestamp != self._jump_ts:  # (propagate and update may both see the frame of the jump)
                self._size_jump = None
            return self._size_jump is not None
        self._jump_ts = timestamp
        sx, sy = size[1] / old[1], size[0] / old[0]
        self._size_jump = "scaled" if abs(sx / sy - 1.0) <= 0.02 else "reshaped"
        log.debug("frame size %dx%d -> %dx%d (%s)", old[1], old[0], size[1], size[0], self._size_jump)
        if self._size_jump == "scaled":
            k = np.array([sx, sy], np.float32)
            for t in self.tracks:
                t.box = (t.box.reshape(2, 2) * k).reshape(4).astype(np.float32)
                t.landmarks = (t.landmarks * k).astype(np.float32)
                if t.velocity is not None:  # (pixels per second of the new size)
                    t.velocity = (t.velocity * k).astype(np.float32)
                    t.speed *= float(np.sqrt(sx * sy))
            self._scale = scale
        return True

    def _tick(self, timestamp: float) -> None:
        """Note the frame being tracked (``propagate`` and ``update`` may both see one frame)."""
        if timestamp != self._now:
            self._before, self._now = self._now, float(timestamp)

    def _end_all(self, timestamp: float) -> None:
        if self.tracks:
            log.debug("scene cut at %.3f s: %d track(s) end", timestamp, len(self.tracks))
        self.tracks = []

    # --------------------------------------------------------------- frames
    def _gray(self, image: np.ndarray) -> Tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        k = max(1, int(np.ceil(max(h, w) / float(self.flow_side))))  # integer factor: the fast area path
        if k == 1:
            return gray, 1.0
        if h < k or w < k:
            return gray, 1.0
        # drop the last h % k rows / w % k columns so the scale is exactly 1/k on both axes
        small = cv2.resize(gray[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        return small, 1.0 / k

    def update(self, image: np.ndarray, det: Detections, timestamp: float) -> List[Face]:
        """Detection frame: match ``det`` to tracks; returns the faces of this frame (live tracks).

        Where :meth:`propagate` did not see this frame (a scheduled detection), the live tracks are first moved
        by optical flow to it, as :meth:`propagate` moves them; a track not moved to this frame (lost, or the flow
        could not run) is matched by its last box or that box moved on by its velocity, whichever overlaps more.
        Detections are matched by IoU (Hungarian), and those left over by centre distance (:meth:`_match_near`).
        """
        gray, scale = self._gray(image)
        self._tick(timestamp)
        self._resize_check(image, scale, timestamp)
        # after propagate on the same frame, _prev_gray is this frame: propagate's finding counts; so does an
        # earlier update's on the same frame (the pipeline's second look for small faces: FramePacket.scene_cut read
        # False on a cut's frame)
        again = self.last_cut and timestamp == self._update_ts
        cut = self._cut_seen or self._scene(gray, timestamp)[1]
        self._cut_seen = False
        self._update_ts = timestamp
        self.last_cut = cut or again
        if cut:
            self._end_all(timestamp)
        elif self._flow_ts != timestamp:
            self._follow(gray, scale, timestamp, image)  # a face that moved since the last frame is matched there
        self._prev_gray, self._scale = gray, scale
        self.tracks = [t for t in self.tracks if not t.lost or timestamp - t.last_seen <= self.lost_buffer]
        matched_t, matched_d, changed = set(), set(), set()
        if self.tracks and len(det):
            boxes = np.stack([t.box for t in self.tracks])
            ahead = np.stack([t.predicted(timestamp, self.predict_s) for t in self.tracks])
            iou = np.maximum(iou_matrix(boxes, det.boxes), iou_matrix(ahead, det.boxes))
            # live tracks win ties over lost ones
            cost = 1.0 - iou + np.array([0.05 if t.lost else 0.0 for t in self.tracks])[:, None]
            rows, cols = linear_sum_assignment(cost)
            pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.iou_threshold]
            pairs += self._match_near(boxes, ahead, det.boxes, timestamp, {r for r, _ in pairs}, {c for _, c in pairs})
            for r, c in pairs:
                t = self.tracks[r]
                if t.checked == timestamp:  # the flow moved it to this frame, its face checked there
                    t.look = face_look(image, det.boxes[c])
                elif not self._same_face(t, image, det.boxes[c], judge=self._local((t.box, det.boxes[c]))):
                    changed.add(r)  # another person where the track's face was: it ends, the detection starts a new one
                    continue
                t.move(det.boxes[c].copy(), timestamp)
                t.landmarks, t.score = det.landmarks[c].copy(), float(det.scores[c])
                t.last_seen, t.lost = timestamp, False
                t.hits += 1
                matched_t.add(r)
                matched_d.add(c)
        for r, t in enumerate(self.tracks):
            if r not in matched_t:
                t.lost = True
        if changed:
            self.tracks = [t for r, t in enumerate(self.tracks) if r not in changed]
        for c in range(len(det)):
            if c not in matched_d:
                self.tracks.append(Track(self.next_id, det.boxes[c].copy(), det.landmarks[c].copy(),
                                         float(det.scores[c]), timestamp, box_ts=timestamp,
                                         look=face_look(image, det.boxes[c])))
                self.next_id += 1
        return self._faces(detected=True)

    def _match_near(self, boxes: np.ndarray, ahead: np.ndarray, dets: np.ndarray, timestamp: float,
                    taken_t: set, taken_d: set) -> List[Tuple[int, int]]:
        """The second matching stage: (track, detection) pairs among those the IoU stage left, by the distance from
        the track's box (``boxes``: where it was last placed, or ``ahead``: that box moved on by its velocity,
        whichever is nearer) to the detection, centre to centre in box sizes, one to one (Hungarian). A pair must be:

        * near: a track placed on this frame (moved here by the flow), within half a box size of its box; a track
          placed earlier whose velocity is known, within half a box size plus a quarter of the distance its velocity
          carried it since (at most :attr:`reach`) of ``ahead``, where that velocity took it (measured from its last
          box in every direction, a newcomer beside or behind a face that had just left took its id); a track whose
          velocity is not known yet (one box so far) placed on the frame before this one: within :attr:`reach` of
          its box (a face too fast for the optical flow from its first detection on);
        * of sizes within 1.5 times, its track live or lost for at most :attr:`reach_lost_s`;
        * unambiguous: every other track (matched or not) and every other detection at least 1.5 times farther,
          so two faces near each other never swap ids (the later one gets a new id instead).
        """
        free_t = [r for r, t in enumerate(self.tracks) if r not in taken_t
                  and (not t.lost or timestamp - (t.box_ts if t.box_ts is not None else t.last_seen)
                       <= self.reach_lost_s)]
        free_d = [c for c in range(len(dets)) if c not in taken_d]
        if not free_t or not free_d:
            return []
        near = _centre_distance(boxes, dets)  # (tracks, detections), in box sizes
        ahead_d = _centre_distance(ahead, dets)
        dist = np.minimum(near, ahead_d)
        gated = near.copy()  # the distance each track's gate is measured on
        size_t = np.sqrt(np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-3), axis=1))
        size_d = np.sqrt(np.prod(np.maximum(dets[:, 2:] - dets[:, :2], 1e-3), axis=1))
        ratio = np.maximum(size_t[:, None] / size_d[None, :], size_d[None, :] / size_t[:, None])
        gate = np.full(len(self.tracks), self.reach, np.float32)
        for r, t in enumerate(self.tracks):
            placed = t.box_ts if t.box_ts is not None else t.last_seen
            if t.velocity is not None:  # box sizes a face as fast may have gone since its box was placed
                carried = t.speed * min(max(timestamp - placed, 0.0), self.predict_s) / size_t[r]
                gate[r] = min(0.5 + 0.25 * carried, self.reach)
                if placed < timestamp:  # not moved to this frame: from where its velocity took it
                    gated[r] = ahead_d[r]
            elif self._before is None or placed < self._before:
                gate[r] = 0.5
        sub = dist[np.ix_(free_t, free_d)]
        ok = (gated[np.ix_(free_t, free_d)] <= gate[free_t][:, None]) & (ratio[np.ix_(free_t, free_d)] <= 1.5)
        if not ok.any():
            return []
        rows, cols = linear_sum_assignment(np.where(ok, sub, 1e6))
        out = []
        for i, j in zip(rows, cols, strict=True):
            if not ok[i, j]:
                continue
            r, c = free_t[i], free_d[j]
            d = dist[r, c]
            others_t = np.delete(dist[:, c], r)
            others_d = np.delete(dist[r, :], c)
            if (others_t.size and others_t.min() < 1.5 * d) or (others_d.size and others_d.min() < 1.5 * d):
                continue  # another face as near: no guess
            out.append((r, c))
            log.debug("track %d continued by a detection %.2f box sizes from where it was heading",
                      self.tracks[r].id, d)
        return out

    def propagate(self, image: np.ndarray, timestamp: float) -> Tuple[List[Face], bool]:
        """Frame without detection: move live tracks by optical flow.

        Returns:
            (faces, ok): ``ok`` is False when a live track was lost or the picture
            changed (the caller should run the detector on this frame). After a
            scene cut ``faces`` is empty: every track ended.
        """
        gray, s = self._gray(image)
        self._tick(timestamp)
        resized = self._resize_check(image, s, timestamp)
        changed, cut = self._scene(gray, timestamp)
        ok = not (changed or cut or resized)  # the picture changed: ask for a detection on this frame
        self.last_cut = self._cut_seen = cut
        if cut:
            self._end_all(timestamp)
        self._flow_ts = timestamp
        if not self._follow(gray, s, timestamp, image):
            ok = False
        self._prev_gray, self._scale = gray, s
        return self._faces(detected=False), ok

    def has_lost(self, timestamp: float) -> bool:
        """Whether a face seen more than once (``hits`` >= 2: a one-frame false detection does not count) is lost
        since at most :data:`REACQUIRE_S` (and still within :attr:`lost_buffer`) at ``timestamp``: a detection there
        would continue it (read-only; the pipeline detects every frame while one is). After that the scheduled
        detections look for it, as before: every lost track for the whole 2-s buffer made every frame a detection
        frame for 2 s after each false detection or each face that left the picture (a review's finding)."""
        reach = min(self.lost_buffer, REACQUIRE_S)
        return any(t.lost and t.hits >= 2 and timestamp - t.last_seen <= reach for t in self.tracks)

    def _follow(self, gray: np.ndarray, s: float, timestamp: float, image: np.ndarray) -> bool:
        """Move the live tracks from the previous grey frame to ``gray`` (scale ``s`` of the frame ``image``) by
        optical flow; False when a live track was lost: its points failed the forward–backward check, or the picture
        where the flow put it is no longer its face (:meth:`_same_face`: a tile swap, another person in its place)."""
        live = [t for t in self.tracks if not t.lost]
        ok = True
        if live and self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            # points followed by optical flow: the landmarks (or, for a detector without landmarks (NaN), 5
            # points inside the box), and a grid over the face that carries the head's motion
            marks = [_flow_landmarks(t) if np.all(np.isfinite(t.landmarks)) else _box_points(t.box) for t in live]
            pts = [np.concatenate([m, _grid_points(t.box)]) for m, t in zip(marks, live, strict=True)]
            n = 5 + len(_GRID)
            p0 = (np.concatenate(pts) * self._scale).astype(np.float32).reshape(-1, 1, 2)
            lk = dict(winSize=(15, 15), maxLevel=2,
                      criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03))
            p1, good = self._flow(self._prev_gray, gray, p0, None, lk)
            for i, t in enumerate(live):
                if good[i * n: i * n + 5].sum() >= 3:
                    continue
                # a face faster than the flow reaches (about 16 px at this scale): look for it near its box, and
                # follow its points again from there; it asks for a detection all the same
                ok = False
                shift = _search_face(self._prev_gray, gray, t.box * self._scale, self.reach)
                if shift is not None:
                    q0 = p0[i * n:(i + 1) * n]
                    q1, g = self._flow(self._prev_gray, gray, q0, q0 + shift.astype(np.float32), lk)
                    p1[i * n:(i + 1) * n], good[i * n:(i + 1) * n] = q1, g
            p0, p1 = p0.reshape(-1, n, 2) / s, p1.reshape(-1, n, 2) / s
            good = good.reshape(-1, n)
            for i, t in enumerate(live):
                g = good[i]
                if g[:5].sum() < 3:  # the landmarks (or the box's points) lost: as before the grid
                    t.lost = True
                    ok = False
                    continue
                a, b = p0[i][g], p1[i][g]
                m = _head_motion(a, b, t.box)
                box = _move_box(t.box, m)
                if not self._same_face(t, image, box):
                    # another face where the flow would put it (a tile swap): lost where it was, as a track whose
                    # points failed, and only a detection showing its face continues it
                    t.lost = True
                    ok = False
                    continue
                t.move(box, timestamp)
                t.checked = timestamp
                if np.all(np.isfinite(t.landmarks)):
                    # the landmarks move with the head, not each on its own: an eye's window follows the iris
                    # when the person looks aside (up to 20 px off and 11° of pose between detections); the nose
                    # tip shown also slides across the face as the head turns (its yaw: :func:`_move_landmarks`),
                    # while the flow goes on following the head's landmarks (so the box moves as without it)
                    head = _apply(m, marks[i]).astype(np.float32)
                    t.landmarks = _move_landmarks(m, t.landmarks, p0[i][2], p1[i][2] if g[2] else None)
                    t.flow_marks = (t.landmarks, head)
        return ok

    def _still_share(self, boxes: Sequence[np.ndarray]) -> Optional[float]:
        """The share of the grey frame's pixels outside ``boxes`` (xyxy, frame pixels; their bounding box grown to
        twice its size about its centre) whose grey level moved by at most :data:`STILL_LEVEL` since the frame
        before; None where there is no frame before of this size, or the boxes leave under a quarter of the frame."""
        ii = self._still
        if ii is None:
            return None
        h, w = ii.shape[0] - 1, ii.shape[1] - 1
        b = np.asarray(boxes, np.float32).reshape(-1, 4) * self._scale
        if not np.isfinite(b).all():
            return None
        x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        hw, hh = x1 - x0, y1 - y0
        x0, x1 = int(np.clip(x0 - hw / 2, 0, w)), int(np.clip(np.ceil(x1 + hw / 2), 0, w))
        y0, y1 = int(np.clip(y0 - hh / 2, 0, h)), int(np.clip(np.ceil(y1 + hh / 2), 0, h))
        out = h * w - (x1 - x0) * (y1 - y0)
        if out < 0.25 * h * w:
            return None
        inside = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]
        return float(ii[h, w] - inside) / out

    def _local(self, boxes: Sequence[np.ndarray]) -> bool:
        """True where the picture changed only about ``boxes``: at least :data:`STILL_SHARE` of the rest stayed (a
        gallery's other tiles while one changes). Else the change is the whole picture's (a shaking camera, a light
        switched on, another picture throughout), left to the frame-level tests."""
        share = self._still_share(boxes)
        return share is not None and share >= STILL_SHARE

    def _same_face(self, t: Track, image: np.ndarray, box: np.ndarray, judge: bool = True) -> bool:
        """The per-track continuity test: False where the picture of ``box`` in ``image`` is another face than the
        one track ``t`` last showed (:attr:`Track.look`, :func:`face_continuity`): its grey structure correlates
        below :attr:`same_face`, or below :attr:`same_face_colour` while the face's colour moved more than
        :attr:`colour_shift`. True otherwise, and where either picture cannot be taken (a box partly off the frame,
        a flat picture), or not ``judge``; then the track's look becomes this picture's."""
        ncc, shift, now = face_continuity(t.look, image, box)
        if judge and ncc is not None and (ncc < self.same_face or (
                shift is not None and ncc < self.same_face_colour and shift > self.colour_shift)):
            log.debug("track %d: another face in its box (correlation %.2f, colour shift %s)", t.id, ncc,
                      "-" if shift is None else f"{shift:.1f}")
            return False
        t.look = now
        return True

    def _flow(self, prev: np.ndarray, gray: np.ndarray, p0: np.ndarray, guess: Optional[np.ndarray],
              lk: dict) -> Tuple[np.ndarray, np.ndarray]:
        """Pyramidal Lucas–Kanade from ``prev`` to ``gray`` of the points ``p0`` (N, 1, 2), from the start
        ``guess`` (their place in ``gray``; None: where they were), and back: (points in ``gray``, (N,) bool: found
        both ways and back within :attr:`max_fb_error`)."""
        if guess is None:
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, gray, p0, None, **lk)
            p0b, st2, _ = cv2.calcOpticalFlowPyrLK(gray, prev, p1, None, **lk)
        else:
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, gray, p0, guess.copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                                                  **lk)
            p0b, st2, _ = cv2.calcOpticalFlowPyrLK(gray, prev, p1, (p1 - (guess - p0)).astype(np.float32),
                                                   flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **lk)
        fb = np.linalg.norm((p0 - p0b).reshape(-1, 2), axis=1)
        return p1, (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & (fb < self.max_fb_error)

    def _faces(self, detected: bool) -> List[Face]:
        out = []
        for t in self.tracks:
            if not t.lost:
                box = t.box.copy()
                if self._size is not None:  # as the detector's boxes are: clipped to the frame
                    h, w = self._size
                    box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
                    if box[2] - box[0] <= 1 or box[3] - box[1] <= 1:  # moved out of the picture
                        t.lost = True
                        continue
                out.append(Face(box=box, score=t.score, landmarks=t.landmarks.copy(), track_id=t.id,
                                detected=detected))
        out.sort(key=lambda f: f.track_id)
        return out

    def describe(self) -> dict:
        """The tracking settings (for the JSON sidecar)."""
        return {"iou_threshold": self.iou_threshold, "lost_buffer_s": self.lost_buffer,
                "cut_threshold": self.cut_threshold, "cut_similarity": self.cut_similarity,
                "motion_similarity": self.motion_similarity, "reach": self.reach, "reach_lost_s": self.reach_lost_s,
                "predict_s": self.predict_s,
                "camera_motion": {"min_inliers": MOTION_MIN_INLIERS, "sure_inliers": MOTION_SURE_INLIERS,
                                  "sure_similarity": MOTION_SURE_SIMILARITY, "min_shift": MOTION_MIN_SHIFT,
                                  "min_spread": MOTION_MIN_SPREAD},
                "tracks_end_at_cuts": True, "gradual": self.gradual.describe(),
                # per track, the cut rule: a face that is another person where the track's was ends the track
                "tracks_end_at_face_change": {"correlation": self.same_face,
                                              "correlation_with_colour": self.same_face_colour,
                                              "colour_shift": self.colour_shift, "side_px": PATCH_SIDE,
                                              "reach": round(PATCH_REACH, 4), "still_level": STILL_LEVEL,
                                              "still_share": STILL_SHARE},
                # between detections: one similarity motion of the landmarks and the face grid (experiment 50);
                # letterbox / pillarbox bars are dark (experiment 51). Both shape the rows: a batch redoes earlier ones
                "motion": f"similarity of {5 + len(_GRID)} points (RANSAC); nose tip slid along the eye line by "
                          f"its flow (at most {NOSE_STEP} / {NOSE_SPAN} eye distances)", "bars_darker_than": BAR_DARK}

    def reset(self) -> None:
        self.tracks.clear()
        self._prev_gray = None
        self._flow_ts = self._now = self._before = self._update_ts = None
        self._size = self._size_jump = self._jump_ts = None
        self.last_cut = self._cut_seen = False
        self.gradual.reset()
        self._seen_ts = None
        self._still = None


def detect_faces(detector, tracker: Tracker, image: np.ndarray, timestamp: float, still: bool = False,
                 keep: Optional[Callable[[Detections], Detections]] = None) -> List[Face]:
    """One detection step on ``image`` (BGR uint8), the one rule every reader follows (the pipeline's detect stage,
    ``Analyzer.analyze_image``, the training crops' ``face_tracks``).

    A video frame is detected with ``detector.detect`` and its faces matched to the live tracks. A still picture
    (a single photo, an image folder read as stills) is detected afresh with ``detector.detect_still`` (a face that
    fills the picture is looked for inside a border too), and its faces start new tracks: nothing is carried over
    from the picture before. ``keep`` filters the detections before matching.
    """
    if still:
        tracker.reset()
    det = detector.detect_still(image) if still else detector.detect(image)
    if keep is not None:
        det = keep(det)
    return tracker.update(image, det, timestamp)


class GradualCut:
    """Dissolves and fades: scene changes whose every frame-to-frame step is too small for the cut test.

    Fed every frame (grey, any size), it keeps ``max(windows) + 1`` thumbnails of 32×32 and reports a transition
    when, for a window of ``k`` frames ending now:

    * the two ends differ in structure (normalized cross-correlation below ``similarity``), and
    * the frame half-way is a mix of them: a least-squares fit ``mid ≈ α·start + β·end + γ`` leaves less than
      ``residual`` of the middle frame's spread, with both α and β above 0.1 (a dissolve). Motion, a head
      turn or a pan is no such mix;

    or when a frame is blank (mean absolute deviation below ``blank`` grey levels on the thumbnail: uniform,
    as a fade's black or white frame is; the least of any frame of the shared clips is 12.7) after one that was
    not (that is, more than 3 levels): a fade through black or white. Between black bars a picture fading to
    white is uniform only inside them, so the blank test also reads the picture inside the bars of the last frame
    that showed one (experiment 44). Thumbnails are kept only since the last transition or blank frame, and none
    is reported within ``max(windows)`` frames of the last (nor a blank within ``min(windows)``). Where a frame of
    the window's two ends and middle has letterbox or pillarbox bars (:func:`picture_area`), the test reads the
    three inside the bars of all three: bars the two ends share would make them look alike (experiment 42). A
    window whose end is nearly flat (mean absolute deviation under ``picture`` grey levels: a fade's last steps,
    or its first ones out of a blank, whose few grey levels correlate with nothing) is left to the blank test:
    read as a dissolve, the fade-in after a blank was found a second time, and the person fading in got two ids.

    The windows count frames, so they must not reach over a hole in time: where ``timestamp`` is given and the time
    since the last frame exceeds both ``max_gap_s`` seconds and 3 times the usual step (the median of the last 15),
    as a stalled stream or frames cut out leave, the thumbnails are dropped and the windows start over, reporting
    nothing. A 2-s hole in a talking-head clip had read as a dissolve 1.9 s later, which ended the track (a probe's
    finding); a slow source (a 1-fps timelapse) keeps its windows, its steps being its usual ones.

    The thresholds were chosen on the 77 shared clips and on dissolves made of them (MODEL_CARD.md,
    experiment 34): no false transition in 21,206 frames.
    """

    def __init__(self, windows: Sequence[int] = (8, 16, 32, 48, 64, 96), similarity: float = 0.45,
                 residual: float = 0.3, blank: float = 0.5, picture: float = 6.0, max_gap_s: float = 0.5) -> None:
        if not windows or min(windows) < 2:
            raise ValueError("GradualCut: windows must be >= 2 frames")
        self.windows = tuple(sorted(int(k) for k in windows))
        self.similarity = float(similarity)
        self.residual = float(residual)
        self.blank = float(blank)
        self.picture = float(picture)
        self.max_gap_s = float(max_gap_s)
        self._last_ts: Optional[float] = None
        self._steps: Deque[float] = deque(maxlen=15)  # the last steps between frames (s): the usual one
        #: the recent frames: each one's thumbnail, small picture and bars (:class:`_Shown`)
        self._thumbs: Deque[_Shown] = deque(maxlen=self.windows[-1] + 1)
        self._since = 10 ** 9  # frames since the last transition
        self._was_blank = False
        self._reported_blank = False  # the blank now (or just left) was reported as a transition
        #: the bars of the last frame with a picture, as (small copy's shape, area), None when it had none
        self._bars: Optional[Tuple[Tuple[int, int], Tuple[int, int, int, int]]] = None

    def __call__(self, gray: np.ndarray, cut: bool = False, timestamp: Optional[float] = None) -> bool:
        """Show one frame, (H, W) uint8 grey, taken at ``timestamp`` seconds (None: frames come evenly); True when a
        transition ends here: a dissolve ends, a blank starts, or ``cut`` (the tracker's cut test fired on this
        frame: a new shot, where the windows start over) other than the step out of a blank already reported (a
        fast fade's first frame back after black or white differs from the blank by as much as a cut, and a blank
        has no structure: the same transition, reported once)."""
        if timestamp is not None:
            last, self._last_ts = self._last_ts, float(timestamp)
            step = float(timestamp) - last if last is not None else None
            if step is not None and step > 0:
                usual = float(np.median(self._steps)) if self._steps else step
                if step > self.max_gap_s and step > 3.0 * usual:
                    self._thumbs.clear()  # no dissolve reaches over a hole in time: the windows start over
                else:
                    self._steps.append(step)
        full = _thumb(gray)
        self._since += 1
        mad = _mad(full)
        shown = None
        if mad >= self.blank and self._bars is not None:
            # a fade through white (or grey) between black bars is uniform only inside them: read it there, in the
            # bars of the last frame that had a picture
            shown = _Shown(gray, full)
            thumb = shown.inside(*self._bars)
            if thumb is not None:
                mad = min(mad, _mad(thumb))
        if mad < self.blank:
            # a blank just after a dissolve was reported (a fade's last steps can read as one) is the same transition,
            # and so is a cut inside a blank already reported
            covered = self._was_blank and self._reported_blank
            found = not covered and (cut or (not self._was_blank and self._since > self.windows[0]))
            self._reported_blank = covered or found
            self._was_blank = True
            self._thumbs.clear()
            if found:
                self._since = 0
            return found
        if self._was_blank and mad <= 3.0:  # just out of a blank: wait for a picture
            found = cut and not self._reported_blank
            self._reported_blank = self._reported_blank or found
            return found
        if cut and self._was_blank and self._reported_blank:
            cut = False  # the first picture after a reported blank: the blank's transition
        self._was_blank = self._reported_blank = False
        if cut:  # a new shot: the windows start over at it (the bars are read again from its picture below)
            self._thumbs.clear()
            self._since = 10 ** 9
        shown = shown or _Shown(gray, full)
        self._thumbs.append(shown)
        if not shown.whole:
            # bars are taken from a picture: a frame fading to white shows flat light edges that are no bars
            inner = shown.inside(shown.small.shape, shown.area)
            if inner is not None and _mad(inner) >= self.picture:
                self._bars = (shown.small.shape, shown.area)
        elif self._bars is not None and not shown.has_bars(*self._bars):
            self._bars = None  # a picture without bars (a picture fading to white inside its bars keeps them)
        if cut:
            return True
        if self._since <= self.windows[-1]:
            return False
        n = len(self._thumbs)
        for k in self.windows:
            if k >= n:
                break
            a, mid, b = _inside_bars(self._thumbs[n - 1 - k], self._thumbs[n - 1 - k // 2], self._thumbs[n - 1])
            if min(_mad(a), _mad(b)) < self.picture:
                # an end nearly flat (a fade's last steps, or the first ones out of a blank, where the picture's
                # few grey levels correlate with nothing): that is the blank test's to find, not a dissolve
                continue
            if _ncc(a, b) >= self.similarity:
                continue
            if _mix_residual(a, mid, b) < self.residual:
                self._since = 0
                last = self._thumbs[-1]
                self._thumbs.clear()
                self._thumbs.append(last)
                return True
        return False

    def reset(self) -> None:
        self._thumbs.clear()
        self._last_ts = None
        self._steps.clear()
        self._since = 10 ** 9
        self._was_blank = self._reported_blank = False
        self._bars = None

    def describe(self) -> dict:
        return {"windows": list(self.windows), "similarity": self.similarity, "residual": self.residual,
                "blank": self.blank, "picture": self.picture, "max_gap_s": self.max_gap_s}


class _Shown:
    """One frame as :class:`GradualCut` keeps it: its 32×32 thumbnail, a small copy (longer side at most 128 px)
    and its own bars (:func:`picture_area` as (row start, row stop, column start, column stop) of the small copy)."""

    __slots__ = ("thumb", "small", "area", "whole")

    def __init__(self, gray: np.ndarray, thumb: np.ndarray) -> None:
        self.thumb = thumb
        h, w = gray.shape
        f = max(1, int(np.ceil(max(h, w) / 128.0)))
        self.small = cv2.resize(gray, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) if f > 1 else gray
        rows, cols = picture_area(self.small, self.small)
        sh, sw = self.small.shape
        self.area = (rows.start, rows.stop, cols.start, cols.stop)
        self.whole = self.area == (0, sh, 0, sw)

    def inside(self, shape: Tuple[int, int], area: Tuple[int, int, int, int]) -> Optional[np.ndarray]:
        """The thumbnail of this frame's small copy inside ``area`` (another frame's bars) less one pixel at each
        side (the picture's edge blends into the bars when it is scaled), None when the small copies' shapes
        differ or too little is left."""
        r0, r1, c0, c1 = area
        if self.small.shape != tuple(shape) or r1 - r0 < 8 or c1 - c0 < 8:
            return None
        return _thumb(np.ascontiguousarray(self.small[r0 + 1:r1 - 1, c0 + 1:c1 - 1]))

    def has_bars(self, shape: Tuple[int, int], area: Tuple[int, int, int, int], flat: float = 4.0) -> bool:
        """Whether this frame still has bars outside ``area`` (another frame's picture area): every row above and
        below it and every column left and right of it, less the one next to the picture (where the two blend when
        scaled), flat (standard deviation under ``flat`` grey levels) and dark, as :func:`picture_area` finds
        bars."""
        if self.small.shape != tuple(shape):
            return False
        r0, r1, c0, c1 = area
        s = self.small.astype(np.float32)
        rows = [x for x in (s[:max(0, r0 - 1)], s[r1 + 1:]) if x.size]
        cols = [x for x in (s[:, :max(0, c0 - 1)], s[:, c1 + 1:]) if x.size]
        return bool(rows or cols) and all(bool(_bar_lines(x, 1, flat).all()) for x in rows) and all(
            bool(_bar_lines(x, 0, flat).all()) for x in cols)


def _bar_lines(x: np.ndarray, axis: int, flat: float = 4.0, dark: float = BAR_DARK) -> np.ndarray:
    """What bars are made of: per row (``axis`` 1) or column (``axis`` 0) of a grey float image, whether it is flat
    (standard deviation under ``flat`` grey levels) and dark (mean under ``dark``). Boolean (n,)."""
    return (x.std(axis=axis) < flat) & (x.mean(axis=axis) < dark)


def _inside_bars(*shown: _Shown) -> Tuple[np.ndarray, ...]:
    """The thumbnails of ``shown`` frames, each of its picture inside the bars of any of them (their areas'
    intersection), or the whole frames' where none has bars, their sizes differ, or too little is left."""
    if all(s.whole for s in shown) or len({s.small.shape for s in shown}) > 1:
        return tuple(s.thumb for s in shown)
    r0, c0 = max(s.area[0] for s in shown), max(s.area[2] for s in shown)
    r1, c1 = min(s.area[1] for s in shown), min(s.area[3] for s in shown)
    sh, sw = shown[0].small.shape
    if r1 - r0 < sh // 4 or c1 - c0 < sw // 4:
        return tuple(s.thumb for s in shown)
    return tuple(_thumb(np.ascontiguousarray(s.small[r0:r1, c0:c1])) for s in shown)


def _thumb(gray: np.ndarray, side: int = 32) -> np.ndarray:
    """(side, side) float32: ``gray`` shrunk with area interpolation."""
    return cv2.resize(gray, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def _mad(thumb: np.ndarray) -> float:
    """Mean absolute deviation of a thumbnail's grey levels (0: uniform)."""
    return float(np.abs(thumb - thumb.mean()).mean())


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized cross-correlation of two arrays of one shape; 0 when either is flat."""
    va, vb = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb / den) if den > 1e-6 else 0.0


def _mix_residual(a: np.ndarray, mid: np.ndarray, b: np.ndarray) -> float:
    """Residual of ``mid ≈ α·a + β·b + γ`` relative to ``mid``'s spread; ``inf`` unless α, β > 0.1."""
    x = np.stack([a.ravel(), b.ravel(), np.ones(a.size, np.float32)], 1)
    y = mid.ravel()
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    spread = float(np.linalg.norm(y - y.mean()))
    if spread < 1e-6 or coef[0] <= 0.1 or coef[1] <= 0.1:
        return float("inf")
    return float(np.linalg.norm(y - x @ coef)) / spread


def structural_similarity(a: np.ndarray, b: np.ndarray, side: int = 32) -> float:
    """Normalized cross-correlation of two grey frames (H, W) uint8 at ``side``×``side``, in [-1, 1].

    Gain and offset (exposure, a light switched on) leave it at 1; another shot is near 0. A flat frame
    (black) correlates with nothing: 0.
    """
    return _ncc(_thumb(a, side), _thumb(b, side))


#: the shortest side (pixels of the tracker's grey copy) :func:`camera_motion` measures a picture of
MOTION_MIN_SIDE = 48
#: the fewest features that must agree on one camera motion for :func:`camera_motion` to trust it
MOTION_MIN_INLIERS = 8
#: the least motion (the frame centre's shift as a share of the longer side; or a 0.5° turn, a 1 % zoom) that
#: :func:`camera_motion` takes for the camera's: a picture that changed while its features stayed put is another shot
MOTION_MIN_SHIFT = 0.004
#: the least spread of the agreeing features (the 10th to 90th percentile of their places, as a share of the
#: frame's width and of its height)
MOTION_MIN_SPREAD = 0.15
#: features agreeing on one camera motion that need no correlation check: a sharp pan beside a still face leaves the
#: face out of place (correlation about 0.8), but 180-210 of 400 features agree; joins of two clips: at most 49
MOTION_SURE_INLIERS = 80
#: the least correlation of the moved picture with the next (32×32) for :data:`MOTION_SURE_INLIERS` features to
#: be trusted: a sharp pan beside a still face reads about 0.8; half a split screen cutting while the other pans, 0.25
MOTION_SURE_SIMILARITY = 0.6


def _feature_tools() -> Tuple[cv2.ORB, cv2.BFMatcher]:
    """ORB (400 features, tuned for the tracker's small grey frames, ~320 px) and its cross-checked matcher."""
    orb = cv2.ORB_create(nfeatures=400, scaleFactor=1.3, nlevels=4, edgeThreshold=12, patchSize=15, fastThreshold=8)
    return orb, cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)


def camera_motion(a: np.ndarray, b: np.ndarray, tools: Optional[Tuple[cv2.ORB, cv2.BFMatcher]] = None,
                  similarity: float = 0.96) -> Optional[np.ndarray]:
    """The camera's motion from grey frame ``a`` to ``b`` (H, W uint8, one size), as a (2, 3) similarity
    transform, where one explains the change; None where none does (another shot).

    ORB features of both frames, matched one to one (cross-checked), and a RANSAC similarity fit (3 px): a camera
    motion (scale 0.8-1.25, rotation at most 20°) that at least :data:`MOTION_SURE_INLIERS` matches agree on, or at
    least :data:`MOTION_MIN_INLIERS` with ``a`` moved by it correlating at ``similarity`` or more with ``b``
    (32×32, over the area both show); and a motion at all (:data:`MOTION_MIN_SHIFT`), of features spread over the
    picture (:data:`MOTION_MIN_SPREAD`), not a still logo's or a news ticker's, which a cut leaves in place.
    Camera shake (shifts of 15 px and turns of 4° a frame, with motion blur) and a sharp pan read as cuts by
    :meth:`Tracker._change`'s cheap test; this one, run only where that test fires, tells them from cuts. Measured
    (``docs/reliability.md``, "Fast motion and camera shake"): every one of the 5,796 joins of two shared clips
    that the cheap test finds still a cut (the most features two clips of one person on one set
    agreed on: 49; their best correlation: 0.948)."""
    if min(a.shape[:2]) < MOTION_MIN_SIDE or min(b.shape[:2]) < MOTION_MIN_SIDE:
        return None  # (too small a picture for ORB's pyramid: OpenCV raised on a 1×1 video; no motion told, a cut)
    orb, matcher = tools or _feature_tools()
    try:
        ka, da = orb.detectAndCompute(a, None)
        kb, db = orb.detectAndCompute(b, None)
    except cv2.error as e:  # a picture OpenCV's ORB cannot take: no camera motion is told, the cut test's cut stands
        log.debug("camera motion not measured (%s)", e)
        return None
    if da is None or db is None or len(ka) < MOTION_MIN_INLIERS or len(kb) < MOTION_MIN_INLIERS:
        return None
    matches = matcher.match(da, db)
    if len(matches) < MOTION_MIN_INLIERS:
        return None
    p0 = np.float32([ka[m.queryIdx].pt for m in matches])
    p1 = np.float32([kb[m.trainIdx].pt for m in matches])
    m, inl = cv2.estimateAffinePartial2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=500)
    if m is None:
        return None
    k = float(np.hypot(m[0, 0], m[1, 0]))
    turn = abs(float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))))
    n = int(inl.sum())
    if not (0.8 <= k <= 1.25 and turn <= 20.0) or n < MOTION_MIN_INLIERS:
        return None
    h, w = a.shape
    # the camera moved: a change the cheap test found, explained by no motion (a still logo, a news ticker, a
    # caption over a cut: their features stay put), or by features in one band only (a scrolling ticker), is no
    # camera's. Over the 90 joins of ten shared clips under a made logo and ticker, every one was taken for a camera
    # motion without these two checks
    shift = float(np.hypot(*(m @ np.float32([w / 2, h / 2, 1]) - np.float32([w / 2, h / 2]))))
    if shift < MOTION_MIN_SHIFT * max(h, w) and turn < 0.5 and abs(k - 1.0) < 0.01:
        return None
    q = p0[inl.reshape(-1).astype(bool)]
    lo, hi = np.percentile(q, [10, 90], axis=0)  # (a few stray matches elsewhere do not make a band a picture)
    if hi[0] - lo[0] < MOTION_MIN_SPREAD * w or hi[1] - lo[1] < MOTION_MIN_SPREAD * h:
        return None
    moved = _moved_similarity(a, b, m)
    # many features agreeing need less of the picture to follow them, but some: half a split screen panning while
    # the other half cuts had 152 features agree and a moved correlation of 0.25, and the cut was missed
    if (n >= MOTION_SURE_INLIERS and moved >= MOTION_SURE_SIMILARITY) or moved >= similarity:
        return m
    return None


def _moved_similarity(a: np.ndarray, b: np.ndarray, m: np.ndarray, side: int = 32) -> float:
    """Normalized cross-correlation of grey frame ``a`` moved by the (2, 3) transform ``m`` with ``b``, at
    ``side`` px (longer side) over the box around the area both show (outside it inside that box: ``a``'s moved
    pixels on both sides); 0 where they share less than 40 % of the frame."""
    h, w = a.shape
    moved = cv2.warpAffine(a.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.ones((h, w), np.float32), m, (w, h), flags=cv2.INTER_LINEAR) > 0.99
    if valid.mean() < 0.4:
        return 0.0
    ys, xs = np.nonzero(valid)
    r0, r1, c0, c1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    x, inside = moved[r0:r1, c0:c1], valid[r0:r1, c0:c1]
    y = np.where(inside, b[r0:r1, c0:c1].astype(np.float32), x)
    f = side / max(x.shape)
    size = (max(4, round(x.shape[1] * f)), max(4, round(x.shape[0] * f)))
    return _ncc(cv2.resize(x, size, interpolation=cv2.INTER_AREA), cv2.resize(y, size, interpolation=cv2.INTER_AREA))


def _search_face(prev: np.ndarray, gray: np.ndarray, box: np.ndarray, reach: float,
                 min_score: float = 0.6) -> Optional[np.ndarray]:
    """Where the face in ``box`` (xyxy, pixels of the grey frames) of ``prev`` went in ``gray``: (2,) float32
    shift of the best normalized correlation of its picture within ``reach`` box sizes around the box, None where
    the box is too small or off the picture, or no place correlates at ``min_score`` or more."""
    h, w = prev.shape
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    m = int(round(reach * max(x1 - x0, y1 - y0)))
    sx0, sy0, sx1, sy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    score = cv2.matchTemplate(gray[sy0:sy1, sx0:sx1], prev[y0:y1, x0:x1], cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(score)
    if not np.isfinite(best) or best < min_score:
        return None
    return np.array([sx0 + bx - x0, sy0 + by - y0], np.float32)


class FaceLook(NamedTuple):
    """A track's face as the continuity test keeps it (:func:`face_look`)."""

    grey: np.ndarray  #: (PATCH_SIDE, PATCH_SIDE) float32 grey picture of the box
    colour: Optional[np.ndarray]  #: (2,) float32 mean CIELAB a*, b* of the box's middle; None in a grey frame


def _still_pixels(prev: Optional[np.ndarray], gray: np.ndarray) -> Optional[np.ndarray]:
    """(H + 1, W + 1) integral image of the pixels of grey frame ``gray`` whose level moved by at most
    :data:`STILL_LEVEL` since ``prev``; None without a ``prev`` of its size."""
    if prev is None or prev.shape != gray.shape:
        return None
    return cv2.integral((cv2.absdiff(prev, gray) <= STILL_LEVEL).astype(np.uint8))


def _box_picture(image: np.ndarray, box: np.ndarray) -> Optional[Tuple[np.ndarray, Optional[np.ndarray]]]:
    """The picture :func:`face_continuity` compares: ``box`` (xyxy) of ``image`` (BGR or grey) grown by
    :data:`PATCH_REACH` on every side, as ((S, S) float32 grey, S = :data:`PATCH_SIDE` plus the reach on both sides,
    shrunk by area; what lies outside the frame: its edge repeated) and the mean CIELAB a*, b* of the box's middle
    60 % (None in a grey frame). None where the box is under 8 px or less than 90 % of it is inside the frame."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    if not np.isfinite([x0, y0, x1, y1]).all() or min(x1 - x0, y1 - y0) < 8:
        return None
    if min(x1, w) <= max(x0, 0) or min(y1, h) <= max(y0, 0) \
            or (min(x1, w) - max(x0, 0)) * (min(y1, h) - max(y0, 0)) < 0.9 * (x1 - x0) * (y1 - y0):
        return None
    pad = int(round(PATCH_REACH * PATCH_SIDE))
    side = PATCH_SIDE + 2 * pad
    grow = side / PATCH_SIDE
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow, (y1 - y0) * grow
    step = max(1, int(min(bw, bh) // (2 * side)))  # every step-th pixel: two or more per cell of the result
    ys = np.clip(np.arange(int(round(cy - bh / 2)), int(round(cy + bh / 2)), step), 0, h - 1)
    xs = np.clip(np.arange(int(round(cx - bw / 2)), int(round(cx + bw / 2)), step), 0, w - 1)
    crop = np.ascontiguousarray(image[ys[:, None], xs[None, :]])
    colour = None
    if crop.ndim == 3:
        crop = crop[..., :3]
        ch, cw = crop.shape[:2]
        m0, m1 = pad / side + 0.2 * PATCH_SIDE / side, pad / side + 0.8 * PATCH_SIDE / side  # the box's middle 60 %
        mid = crop[int(ch * m0): max(int(ch * m1), int(ch * m0) + 1), int(cw * m0): max(int(cw * m1), int(cw * m0) + 1)]
        lab = cv2.cvtColor(mid.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
        colour = lab.reshape(-1, 3)[:, 1:].mean(axis=0).astype(np.float32)
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    grey = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    return grey, colour


def face_look(image: np.ndarray, box: np.ndarray) -> Optional[FaceLook]:
    """The face in ``box`` (xyxy) of ``image`` as a track keeps it for the continuity test; None where the box is
    under 8 px or less than 90 % of it is inside the frame."""
    got = _box_picture(image, box)
    if got is None:
        return None
    pad = int(round(PATCH_REACH * PATCH_SIDE))
    return FaceLook(np.ascontiguousarray(got[0][pad:pad + PATCH_SIDE, pad:pad + PATCH_SIDE]), got[1])


def face_continuity(look: Optional[FaceLook], image: np.ndarray,
                    box: np.ndarray) -> Tuple[Optional[float], Optional[float], Optional[FaceLook]]:
    """How well a track's face ``look`` (:func:`face_look`) matches the picture of ``box`` in ``image``:
    ``(correlation, colour shift, the box's look)``. The correlation is the best normalized cross-correlation of the
    grey pictures over shifts of up to :data:`PATCH_REACH` of the box each way (the detector's box and the flow's sit
    a few pixels apart); the colour shift is the distance (CIELAB units) between the mean a*, b* of the two boxes'
    middles. Each is None where it cannot be measured (no look, a flat picture, a grey frame)."""
    got = _box_picture(image, box)
    if got is None:
        return None, None, None
    pad = int(round(PATCH_REACH * PATCH_SIDE))
    now = FaceLook(np.ascontiguousarray(got[0][pad:pad + PATCH_SIDE, pad:pad + PATCH_SIDE]), got[1])
    if look is None or float(look.grey.std()) < 1.0 or float(got[0].std()) < 1.0:
        return None, None, now
    score = cv2.matchTemplate(got[0], look.grey, cv2.TM_CCOEFF_NORMED)
    ncc = float(np.nanmax(score)) if np.isfinite(score).any() else None
    shift = None if look.colour is None or now.colour is None else float(np.linalg.norm(look.colour - now.colour))
    return ncc, shift, now


def _centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) distance between the centres of boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy, in box sizes (the mean
    of the two boxes' geometric-mean sides)."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ca, cb = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    sa = np.sqrt(np.prod(np.maximum(a[:, 2:] - a[:, :2], 1e-3), axis=1))
    sb = np.sqrt(np.prod(np.maximum(b[:, 2:] - b[:, :2], 1e-3), axis=1))
    d = np.linalg.norm(ca[:, None, :] - cb[None, :, :], axis=2)
    return d / ((sa[:, None] + sb[None, :]) / 2)


def picture_area(a: np.ndarray, b: np.ndarray, flat: float = 4.0, min_bar: float = 0.08,
                 dark: float = BAR_DARK) -> Tuple[slice, slice]:
    """(rows, columns) of two grey frames (H, W) uint8 inside the bars they share: a run of rows or columns at an
    edge of the frames that is flat in both (standard deviation under ``flat`` grey levels), dark (mean under
    ``dark``), at the same level, and at least ``min_bar`` of the side wide (letterbox and pillarbox bars: a
    portrait phone video or a 4:3 film shown in a 16:9 frame; a narrower flat edge stays in). A flat light edge is
    no bar: a studio's plain backdrop beside a person, taken for bars, left only the moving person to the cut
    tests, and a head moving across it read as scene cuts. The whole side where it has no such bars, or where they
    would leave less than a quarter of it. Give one frame twice for its own bars."""
    fa, fb = a.astype(np.float32), b.astype(np.float32)

    def span(axis: int) -> slice:
        n = a.shape[1 - axis]
        level = np.abs(fa.mean(axis=axis) - fb.mean(axis=axis))
        flat_ = _bar_lines(fa, axis, flat, dark) & _bar_lines(fb, axis, flat, dark) & (level < flat)
        keep = np.flatnonzero(~flat_)
        if keep.size == 0:
            return slice(0, n)
        i0, i1 = int(keep[0]), int(keep[-1]) + 1
        i0 = i0 if i0 >= min_bar * n else 0
        i1 = i1 if n - i1 >= min_bar * n else n
        return slice(i0, i1) if i1 - i0 >= n // 4 else slice(0, n)

    return span(1), span(0)


# where the grid's points sit in a face box (x, y relative to its corner): the forehead, the nose's bridge, the
# cheeks and the chin, none on an eye (whose window follows the gaze) or the mouth's corners
_GRID = np.array([[0.35, 0.18], [0.5, 0.18], [0.65, 0.18], [0.5, 0.42], [0.22, 0.55], [0.78, 0.55],
                  [0.3, 0.68], [0.7, 0.68], [0.5, 0.92]], np.float32)


def _grid_points(box: np.ndarray) -> np.ndarray:
    """(9, 2) float32 points of :data:`_GRID` inside ``box`` (xyxy)."""
    return (box[:2] + _GRID * (box[2:] - box[:2])).astype(np.float32)


def _head_motion(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(2, 3) similarity (rotation, scale in 0.8-1.25, shift) taking points ``a`` to ``b`` (frame pixels).

    A robust fit (RANSAC, 3 % of the face's size) over the face's points, so that the few that move on their own
    (an eye's window on a glance, the mouth, the chin while talking) do not drag the face along; with fewer than 3
    points agreeing, their mean shift and spread (the motion before the grid).
    """
    size = float(max(box[2] - box[0], box[3] - box[1], 1.0))
    m = None
    if len(a) >= 3:
        m, inl = cv2.estimateAffinePartial2D(a.reshape(-1, 1, 2), b.reshape(-1, 1, 2), method=cv2.RANSAC,
                                             ransacReprojThreshold=0.03 * size, maxIters=200, confidence=0.99,
                                             refineIters=10)
        if m is not None and int(inl.sum()) < 3:
            m = None
    if m is None:  # the points' mean shift and spread
        ca, cb = a.mean(0), b.mean(0)
        da = np.linalg.norm(a - ca, axis=1).mean()
        db = np.linalg.norm(b - cb, axis=1).mean()
        k = float(np.clip(db / da, 0.8, 1.25)) if da > 1e-3 else 1.0
        return np.array([[k, 0.0, cb[0] - k * ca[0]], [0.0, k, cb[1] - k * ca[1]]], np.float64)
    k = float(np.hypot(m[0, 0], m[1, 0]))
    if not 0.8 <= k <= 1.25:  # one frame's step: scale as the motion before the grid allowed
        c = np.clip(k, 0.8, 1.25) / k
        centre = a.mean(0)
        moved = m[:, :2] @ centre + m[:, 2]
        m = np.concatenate([m[:, :2] * c, (moved - c * (m[:, :2] @ centre))[:, None]], axis=1)
    return m.astype(np.float64)


def _flow_landmarks(t: "Track") -> np.ndarray:
    """The landmarks the optical flow follows for track ``t``: those moved by the head's motion alone since its last
    detection (kept beside :attr:`Track.landmarks`, whose nose tip also slid: :func:`_move_landmarks`), or its
    landmarks themselves where they were set since (a detection, a new frame size)."""
    kept = t.flow_marks
    return kept[1] if kept is not None and kept[0] is t.landmarks else t.landmarks


#: the most the nose tip may slide along the eye line beyond the head's motion, in eye distances: per frame (about
#: 13° of yaw), and from the eyes' midpoint (about 50° of yaw) unless the detection put it farther
NOSE_STEP, NOSE_SPAN = 0.1, 0.5


def _move_landmarks(m: np.ndarray, landmarks: np.ndarray, nose0: np.ndarray,
                    nose1: Optional[np.ndarray]) -> np.ndarray:
    """(5, 2) float32 landmarks moved by the head's motion ``m`` (:func:`_head_motion`), the nose tip also slid along
    the eye line by the flow of the nose point the head's motion alone carried (``nose0`` -> ``nose1``, frame pixels;
    None: its flow failed) beyond ``m``: at most :data:`NOSE_STEP` of the eye distance a frame, and no farther than
    :data:`NOSE_SPAN` from the eyes' midpoint (unless the detection put it there).

    A similarity cannot turn a head: the nose tip, in front of the eyes, slides sideways across the face as the
    head turns, and the pose (:mod:`realtime.pose`) reads yaw from where it sits between the eyes. Moved by ``m``
    alone, yaw held between detections and jumped at each (76-93 % of its change on detection frames, 5 clips; with
    the slide 51-63 %, 84 % on a fast 65° turn; mean error against detection on every frame 1.64 -> 1.07° on
    KatieHill: tests/test_pose_between_detections.py). Across the eye line
    the nose's own flow is not kept: a smile or the talking mouth drags its window down (pitch off by up to 12° in
    4 frames), and the eyes follow the gaze; so pitch and roll still move only by ``m`` between detections.
    """
    lm = _apply(m, landmarks)
    if nose1 is not None:
        (lx, ly), (rx, ry), (nx, ny) = lm[:3].tolist()
        ux, uy = rx - lx, ry - ly
        eye = (ux * ux + uy * uy) ** 0.5
        if eye > 1e-3:
            ux, uy = ux / eye, uy / eye
            x0, y0 = float(nose0[0]), float(nose0[1])
            r = ((float(nose1[0]) - (m[0, 0] * x0 + m[0, 1] * y0 + m[0, 2])) * ux
                 + (float(nose1[1]) - (m[1, 0] * x0 + m[1, 1] * y0 + m[1, 2])) * uy)
            r = min(max(r, -NOSE_STEP * eye), NOSE_STEP * eye)
            off = (nx - (lx + rx) / 2) * ux + (ny - (ly + ry) / 2) * uy
            lim = max(NOSE_SPAN * eye, abs(off))
            r = min(max(off + r, -lim), lim) - off
            lm[2, 0] += r * ux
            lm[2, 1] += r * uy
    return lm.astype(np.float32)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points moved by the (2, 3) transform ``m``."""
    return pts.astype(np.float64) @ m[:, :2].T + m[:, 2]


def _move_box(box: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The xyxy box moved by ``m``: its centre moved, its sides scaled by ``m``'s scale (kept upright)."""
    k = float(np.hypot(m[0, 0], m[1, 0]))
    c = _apply(m, ((box[:2] + box[2:]) / 2)[None])[0]
    half = (box[2:] - box[:2]) / 2 * k
    return np.concatenate([c - half, c + half]).astype(np.float32)


def _box_points(box: np.ndarray) -> np.ndarray:
    """(5, 2) float32 points spread inside a face box (tracking aid where the detector gives no landmarks)."""
    rel = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)
    return (box[:2] + rel * (box[2:] - box[:2])).astype(np.float32)
