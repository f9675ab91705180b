"""The track's own neutral face: each face's neutral face drawn from the person's most neutral frame so far.

FaceCycle's neutral face belongs to the person, not to the frame: every frame of a
clip should give the same one (the paper's cycle rebuilds one frame from another
frame's neutral face). The generator neutralizes a mild expression well and a
strong one (a broad smile with teeth, a shout) only partly (MODEL_CARD.md,
"Neutral faces"). So, per track, :class:`NeutralReference` keeps a small bank of
the person's own neutral faces, the pipeline's neutral face (``Face.neutral``) of
the track's least expressive frame in each head-pose bin, and gives a strongly
expressive frame the banked neutral face of the nearest pose instead of its own:

* **bank:** one entry per (yaw, pitch) bin of ``bin_deg`` degrees (roll is undone
  by the alignment); an entry is replaced by a later frame of lower
  ``Face.intensity`` (the smoothed 1 − P(neutral) of the expression head) in the
  same bin. Only frames whose crop is at least ``min_size`` of the largest crop
  seen in the track enter (a far, small face would be blurred when enlarged).
* **use:** the least expressive entry within ``max_pose_deg`` degrees of the face's
  yaw and pitch, when its intensity is below the face's by more than ``gap``
  (otherwise the face keeps its own neutral face: a mild expression is already
  neutralized well by the generator, and a reference no more neutral than the
  face would only add alignment error).
* **steadiness:** against flicker, a track keeps the entry it uses while that entry
  is within ``hysteresis`` of the least expressive one near the pose, and keeps
  using a reference until the face's intensity is no more than ``gap - hysteresis``
  above it.
* **same person:** with an ``identify`` function (the model's identity code; the
  :class:`~realtime.analyzer.Analyzer` passes it when the model has an ``identity``
  graph), an entry is used only when the identity codes of its neutral face and of
  the face's own neutral face agree (cosine ≥ ``min_identity``); otherwise the face
  keeps its own neutral face. An entry refused ``drop_after`` times in a row means
  another person: the track's bank starts over from that face, as at a scene cut (a
  single refusal, which a strong grimace of the same person can cause, does not
  cost the track its reference). A track that passes from one person to another
  without a detected scene cut (two people crossing, a dissolve, a missed cut) thus
  does not paint the first person's face on the second, and the bank refills with
  the new person's frames.
* **the resting frame's own detail:** a banked neutral face keeps what the
  generator made below ``detail_px`` pixels of resolution and takes the detail above
  from the frame's own input crop, which is at rest there (the generator's fine
  texture and contour lines read less neutral than real skin; MODEL_CARD.md,
  experiment 35). The identity check reads the generator's face as it was.
* **open eyes:** a blink reads as little expression, so the least expressive
  frame is often one with the eyes closed (a blink, a squint, crying), which would
  then be painted on every later face. So each bin keeps two entries: the least
  expressive frame with the eyes open and the one with them closed, open meaning
  at least ``min_eyes`` of the track's usual (the ``eyes_percentile`` of its last
  ``eyes_window`` scores of :func:`realtime.eyes.eye_openness`). A face uses an
  open-eyed entry whenever one is less expressive than the face by the gap, and a
  closed-eyed one only where none is (a closed-eyed resting face is still more
  neutral than a grin). Openness is judged again at each use against the track's
  usual then, so an entry banked before the track had seen the eyes open loses its
  place to the first open-eyed frame. Where the score cannot be measured (an eye
  near the image border) the frame counts as open (MODEL_CARD.md, experiment 36).
* **composite:** the entry's neutral face is aligned to the face by the
  similarity transform (rotation, uniform scale, shift; OpenCV's
  ``estimateAffinePartial2D``) between the two frames' five landmarks, and
  replaces the face's own neutral face inside a feathered ellipse on the face
  box (hair, background and shoulders stay this frame's). The mean colour inside
  the ellipse is matched to this frame's neutral face (lighting changes).

``Face.neutral_from`` tells which frame a neutral face came from: the frame index
of the reference, or -1 for the face's own. A clip that never shows the person
less expressive than now, a new track and an unseen pose all keep the face's own
neutral face. Within one run the reference is causal (only earlier frames), so a live
camera gives the same faces as a file read once. Measured in MODEL_CARD.md (experiment 28).

**The whole clip (look-ahead, files only):** :meth:`NeutralReference.banks` gives every
track's bank at the end of a run, keyed by (shot, track id), and :meth:`NeutralReference.seed`
starts a second run over the same video from them, so a face can also take the neutral face of a
*later*, less expressive frame of its track (a clip that opens with a grin and rests at its end).
The pipeline is deterministic over a file, so the second run's shots and track ids are the first's;
the identity check still guards each use. With ``make_neutral`` set the first run only banks, making a
neutral face just for the frames that enter a bank. The :class:`~realtime.analyzer.Analyzer` runs the two
passes over video files by default (``neutral_lookahead``; MODEL_CARD.md, experiment 38). A track unseen
for ``forget_s`` seconds is forgotten (brief misses keep the bank), and every bank starts
over at a scene cut (``FramePacket.scene_cut``; the tracker ends every track there too,
so no face borrows a neutral face from the previous shot).

Colour order: ``Face.neutral`` is **RGB** uint8 (S, S, 3) as everywhere in the pipeline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from .crops import crop_square
from .eyes import UsualEyes, eye_openness
from .types import Face, FramePacket

__all__ = ["NeutralReference"]


@dataclass
class _Entry:
    intensity: float
    neutral: np.ndarray  # (S, S, 3) uint8 RGB, the frame's own neutral face (the generator's)
    landmarks: np.ndarray  # (5, 2) float32 in the neutral face's pixels
    yaw_pitch: np.ndarray  # (2,) radians
    index: int  # frame index
    crop: Optional[np.ndarray] = None  # (S, S, 3) uint8 RGB input crop, until its detail is transferred
    picture: Optional[np.ndarray] = None  # ``neutral`` with ``crop``'s detail, made when first used
    code: Optional[np.ndarray] = None  # (D,) unit identity code of ``neutral``, computed when first needed
    refusals: int = 0  # identity refusals in a row
    eyes: float = math.nan  # :func:`realtime.eyes.eye_openness` of the frame (NaN: not measured)


@dataclass
class _Track:
    last: float
    max_side: float = 0.0
    bank: Dict[Tuple[int, int, bool], _Entry] = field(default_factory=dict)  # (yaw bin, pitch bin, eyes open)
    using: Optional[Tuple[int, int, bool]] = None  # the bin whose entry the last face used (None: its own)
    eyes: UsualEyes = field(default_factory=UsualEyes)  # the track's recent eye-openness scores


def crop_landmarks(face: Face, size: int) -> np.ndarray:
    """``face.landmarks`` (5, 2) frame pixels -> (5, 2) float32 pixels of its crop resized to ``size``."""
    x0, y0, side = face.crop_box
    return ((np.asarray(face.landmarks, np.float32) - np.array([x0, y0], np.float32)) * (size / float(side))
            ).astype(np.float32)


def face_mask(face: Face, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: a feathered ellipse on ``face.box`` inside its crop."""
    x0, y0, side = face.crop_box
    s = size / float(side)
    bx0, by0, bx1, by1 = (float(v) for v in face.box)
    cx, cy = ((bx0 + bx1) / 2 - x0) * s, ((by0 + by1) / 2 - y0) * s
    ax, ay = (bx1 - bx0) / 2 * s * 1.05, (by1 - by0) / 2 * s * 1.05
    m = np.zeros((size, size), np.float32)
    cv2.ellipse(m, (int(round(cx)), int(round(cy))), (max(1, int(round(ax))), max(1, int(round(ay)))),
                0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), size / 24.0)


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (S, S, 3) at ``size`` × ``size`` (area interpolation; the image itself when already that size)."""
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _detail_from(neutral: np.ndarray, crop: np.ndarray, px: int) -> np.ndarray:
    """``neutral`` (S, S, 3) uint8 below ``px`` pixels of resolution plus ``crop``'s (S, S, 3) detail above it
    (area down to ``px``, cubic back up: the same low-pass for both)."""
    s = neutral.shape[0]

    def low(im: np.ndarray) -> np.ndarray:
        return cv2.resize(cv2.resize(im, (px, px), interpolation=cv2.INTER_AREA), (s, s), interpolation=cv2.INTER_CUBIC)

    n, c = neutral.astype(np.float32), np.ascontiguousarray(crop).astype(np.float32)
    return np.clip(low(n) + (c - low(c)) + 0.5, 0, 255).astype(np.uint8)


class NeutralReference:
    """Per-track bank of the person's own neutral faces by head pose (see the module doc).

    Args:
        gap: a banked neutral face replaces the face's own only when its intensity is lower by more than this.
        bin_deg: size of the (yaw, pitch) bins of the bank, degrees.
        max_pose_deg: largest yaw or pitch difference between a face and the entry it may use, degrees.
        min_size: a frame enters the bank only if its crop side is at least this share of the track's largest.
        forget_s: a track unseen this long is dropped.
        match_colour: shift the reference's mean colour inside the face ellipse to this frame's neutral face.
        hysteresis: against flicker, a track keeps the entry it uses while that entry is within this of the
            least expressive one near the pose, and keeps using a reference until the face's intensity falls to
            ``gap - hysteresis`` above it.
        identify: (N, S, S, 3) uint8 RGB faces -> (N, D) unit identity codes
            (:meth:`realtime.inference.FaceInference.identify`); None: no same-person check.
        min_identity: the least cosine between the identity codes of an entry's neutral face and the face's own
            for the entry to be used (0.9: on the shipped model, 0.2 % of the same person's references refused
            and 84 % of other people's, MODEL_CARD.md experiment 33).
        drop_after: an entry refused this many times in a row starts the track's bank over from that face.
        detail_px: a banked neutral face takes its frame's input detail above this resolution (pixels across the
            face crop; 0: none). 56 lifted the judged-neutral share and the detail on posed spans
            (MODEL_CARD.md, experiment 35).
        min_eyes: a frame's eyes count as open at this share of its track's usual openness or more; open-eyed
            entries are used first (0: no eye check). 0.7 calls 98 % of open eyes and 20 % of closed ones open
            on 350 frames labelled by eye (MODEL_CARD.md, experiment 36).
        eyes_percentile: the track's usual eye openness is this percentile of its recent scores.
        eyes_window: how many recent frames of the track that percentile is taken over.
        eyes_fallback: use a closed-eyed entry where no open-eyed one is less expressive than the face by the gap
            (False: never; on the posed spans that left more grins, experiment 36).
    """

    #: the keys of :meth:`describe` that count what one run did, not how it was set up
    RUN_COUNTS = ("references_refused", "lookahead_tracks_seeded")

    def __init__(self, gap: float = 0.2, bin_deg: float = 10.0, max_pose_deg: float = 15.0,
                 min_size: float = 0.8, forget_s: float = 10.0, match_colour: bool = True,
                 hysteresis: float = 0.1, min_identity: float = 0.9, drop_after: int = 3, detail_px: int = 56,
                 min_eyes: float = 0.7, eyes_percentile: float = 75.0, eyes_window: int = 150,
                 eyes_fallback: bool = True,
                 identify: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> None:
        if (not 0.0 <= gap < 1.0 or bin_deg <= 0 or max_pose_deg < 0 or not 0.0 <= min_size <= 1.0
                or not 0.0 <= hysteresis <= gap or not -1.0 <= min_identity <= 1.0 or int(drop_after) < 1
                or int(detail_px) < 0 or not 0.0 <= min_eyes < 1.0 or not 0.0 <= eyes_percentile <= 100.0
                or int(eyes_window) < 1):
            raise ValueError("NeutralReference: need 0 <= gap < 1, bin_deg > 0, max_pose_deg >= 0, 0 <= min_size <= 1, "
                             "0 <= hysteresis <= gap, -1 <= min_identity <= 1, drop_after >= 1, detail_px >= 0, "
                             "0 <= min_eyes < 1, 0 <= eyes_percentile <= 100, eyes_window >= 1")
        self.gap = float(gap)
        self.bin = math.radians(bin_deg)
        self.max_pose = math.radians(max_pose_deg)
        self.min_size = float(min_size)
        self.forget_s = float(forget_s)
        self.match_colour = bool(match_colour)
        self.hysteresis = float(hysteresis)
        self.min_identity = float(min_identity)
        self.drop_after = int(drop_after)
        self.detail_px = int(detail_px)
        self.min_eyes = float(min_eyes)
        self.eyes_percentile = float(eyes_percentile)
        self.eyes_window = int(eyes_window)
        self.eyes_fallback = bool(eyes_fallback)
        self.identify = identify
        #: entries refused because their identity code did not match the face's (another person's face)
        self.refused = 0
        #: keep the banks of ended tracks for :meth:`banks` (a first pass over a file sets it), at most
        #: ``max_kept`` entries (each holds one neutral face, about 0.1 MB at 180 px; beyond it the earliest
        #: ended tracks' banks are let go)
        self.keep_banks = False
        self.max_kept = 5000
        #: ``make_neutral(packet, face) -> (S, S, 3) uint8 RGB``: when set, bank only (never use a reference) and
        #: make a face's neutral face only when it enters the bank (the look-ahead's first pass, whose faces have
        #: none: most frames never enter a bank, so the generator runs on few)
        self.make_neutral: Optional[Callable[[FramePacket, Face], np.ndarray]] = None
        self._t: Dict[int, _Track] = {}
        self._shot = 0  # scene cuts seen in this run
        self._ended: Dict[Tuple[int, int], _Track] = {}  # banks of ended tracks, by (shot, track id)
        self._seed: Dict[Tuple[int, int], _Track] = {}  # banks a track starts from (a first pass's, see seed())
        #: tracks started from a seeded bank (look-ahead)
        self.seeded = 0

    def describe(self) -> dict:
        return {"gap": self.gap, "bin_deg": round(math.degrees(self.bin), 3),
                "max_pose_deg": round(math.degrees(self.max_pose), 3), "min_size": self.min_size,
                "forget_s": self.forget_s, "match_colour": self.match_colour, "hysteresis": self.hysteresis,
                "identity_check": self.identify is not None,
                "min_identity": self.min_identity, "drop_after": self.drop_after, "detail_px": self.detail_px,
                "min_eyes": self.min_eyes, "eyes_percentile": self.eyes_percentile, "eyes_window": self.eyes_window,
                "eyes_fallback": self.eyes_fallback,
                "references_refused": self.refused, "lookahead_tracks_seeded": self.seeded}

    def __call__(self, packet: FramePacket) -> FramePacket:
        """Bank every face's own neutral face and replace it by its track's reference where that is more
        neutral (sets ``Face.neutral`` and ``Face.neutral_from``)."""
        ts = float(packet.timestamp)
        if packet.scene_cut:  # a new shot: every bank starts over (the tracker ended every track there too)
            for k in list(self._t):
                self._end(k)
            self._shot += 1
        bank_only = self.make_neutral is not None
        for f in packet.faces:
            if ((f.neutral is None and not bank_only) or f.crop_box is None or f.track_id < 0
                    or not math.isfinite(f.intensity) or f.landmarks is None):
                continue
            t = self._t.get(f.track_id)
            if t is None:
                t = self._t[f.track_id] = self._seed.pop((self._shot, f.track_id), None) or self._track(ts)
                self.seeded += bool(t.bank)
            t.last = ts
            yp = (np.array([f.pose[1], f.pose[0]], np.float64)
                  if f.pose is not None and np.all(np.isfinite(f.pose[:2])) else np.zeros(2))
            side = float(f.crop_box[2])
            t.max_side = max(t.max_side, side)
            eyes, usual = self._eyes(t, packet, f)
            # one entry per pose bin with the eyes open and one with them closed (as this frame's track saw them)
            key = (int(round(yp[0] / self.bin)), int(round(yp[1] / self.bin)), self._open(eyes, usual))
            held = t.bank.get(key)
            banked = side >= self.min_size * t.max_side and (held is None or f.intensity < held.intensity or (
                key[2] and not self._open(held.eyes, usual)))  # banked as open before the track's usual was known
            if banked:  # the look-ahead's first pass makes the neutral face for banked frames alone
                t.bank[key] = self._entry(f, packet, yp, eyes, self.make_neutral(packet, f) if bank_only else f.neutral)
            if bank_only:  # bank only: its faces have no neutral face to replace
                continue
            size = int(f.neutral.shape[0])
            lm = crop_landmarks(f, size)
            near = {k: e for k, e in t.bank.items() if float(np.max(np.abs(e.yaw_pitch - yp))) <= self.max_pose}
            gap = self.gap - (self.hysteresis if t.using is not None else 0.0)
            # open eyes first: the closed-eyed entries only where no open-eyed one is less expressive by the gap
            opened = {k: e for k, e in near.items() if self._open(e.eyes, usual)}
            if not self.eyes_fallback or (opened and f.intensity - min(e.intensity for e in opened.values()) > gap):
                near = opened
            ref_key = min(near, key=lambda k: near[k].intensity) if near else None
            kept = near.get(t.using) if t.using is not None else None
            if kept is not None and kept.intensity <= near[ref_key].intensity + self.hysteresis:
                ref_key = t.using  # hysteresis: no switching between near-equal entries as the head moves
            ref = near.get(ref_key) if ref_key is not None else None
            t.using = None
            if ref is None or ref.index == packet.index or f.intensity - ref.intensity <= gap:
                continue
            if self.identify is not None:
                if not self._same_person(ref, f.neutral):
                    self.refused += 1
                    ref.refusals += 1
                    if ref.refusals >= self.drop_after:
                        # another person on this track: it starts over with this face, as at a scene cut (the
                        # bank, and the largest crop seen, which a smaller new face must not be measured against)
                        t = self._t[f.track_id] = self._track(ts, max_side=side)
                        t.eyes.update(eyes)
                        t.bank[key] = self._entry(f, packet, yp, eyes, f.neutral)
                    continue
                ref.refusals = 0
            out = self._composite(ref, self._picture(ref), f, lm, size, self.match_colour)
            if out is not None:
                f.neutral = out
                f.neutral_from = ref.index
                t.using = ref_key
        for k in [k for k, t in self._t.items() if ts - t.last > self.forget_s]:
            self._end(k)
        return packet

    def _end(self, track_id: int) -> None:
        """Drop a track from the live ones, keeping its bank for :meth:`banks` (within ``max_kept`` entries)."""
        t = self._t.pop(track_id)
        if not self.keep_banks or not t.bank:
            return
        for e in t.bank.values():  # compact: the picture and the identity code are all a later use needs
            if self.identify is not None and e.code is None:  # the check reads the generator's face, as live
                e.code = self.identify(e.neutral[None])[0]
            e.neutral = self._picture(e)
        self._ended[(self._shot, track_id)] = t
        kept = sum(len(x.bank) for x in self._ended.values())
        while kept > self.max_kept and len(self._ended) > 1:
            kept -= len(self._ended.pop(next(iter(self._ended))).bank)

    def banks(self) -> Dict[Tuple[int, int], "_Track"]:
        """Every track's bank as this run leaves it, by (shot, track id): the ended tracks' and the live ones'.
        Give them to :meth:`seed` of the reference of a second run over the same video."""
        return {**self._ended, **{(self._shot, k): t for k, t in self._t.items() if t.bank}}

    def seed(self, banks: Dict[Tuple[int, int], "_Track"]) -> None:
        """Start each track of the coming run from ``banks`` (:meth:`banks` of a first run over the same video):
        the track (shot, id) begins with that bank, its largest crop and its usual eye openness, so its faces can
        use neutral faces of its later frames too. Call before the run's first frame."""
        if self._t or self._shot:
            raise RuntimeError("NeutralReference.seed: call it before the run's first frame")
        self._seed = {}
        for k, t in banks.items():
            for e in t.bank.values():
                e.refusals = 0
            self._seed[k] = _Track(last=t.last, max_side=t.max_side, bank=dict(t.bank), eyes=t.eyes)

    def _track(self, ts: float, max_side: float = 0.0) -> _Track:
        """A new track seen at ``ts``, with this reference's eye rule."""
        return _Track(last=ts, max_side=max_side, eyes=UsualEyes(self.eyes_window, self.eyes_percentile))

    def _eyes(self, t: _Track, packet: FramePacket, f: Face) -> Tuple[float, float]:
        """The face's eye openness, added to its track's recent scores, and the track's usual openness (the
        ``eyes_percentile`` of those scores); NaN where not measured or the check is off."""
        if self.min_eyes <= 0 or packet.image is None:
            return math.nan, math.nan
        v = eye_openness(packet.image, f.landmarks)
        return v, t.eyes.update(v)

    def _open(self, eyes: float, usual: float) -> bool:
        """Whether eyes scored ``eyes`` are open enough against the track's ``usual`` (True when either is unknown
        or the check is off)."""
        if self.min_eyes <= 0 or not math.isfinite(eyes) or not math.isfinite(usual) or usual <= 0.0:
            return True
        return eyes >= self.min_eyes * usual

    def _entry(self, f: Face, packet: FramePacket, yp: np.ndarray, eyes: float, neutral: np.ndarray) -> _Entry:
        """A bank entry of face ``f`` of ``packet`` with its neutral face ``neutral`` (S, S, 3) RGB: its landmarks
        in that face's pixels, and the frame's input crop for the detail transfer, which :meth:`_picture` makes
        only if the entry is used (most are replaced first)."""
        size = int(neutral.shape[0])
        crop = (crop_square(packet.image, f.crop_box, size)[..., ::-1]
                if 0 < self.detail_px < size and packet.image is not None and packet.image.ndim == 3 else None)
        return _Entry(float(f.intensity), neutral, crop_landmarks(f, size), yp, int(packet.index), crop=crop,
                      eyes=float(eyes))

    def _picture(self, ref: _Entry) -> np.ndarray:
        """The entry's neutral face with its frame's own detail above ``detail_px`` (see the module doc)."""
        if ref.picture is None:
            ref.picture = ref.neutral if ref.crop is None else _detail_from(ref.neutral, ref.crop, self.detail_px)
            ref.crop = None
        return ref.picture

    def _same_person(self, ref: _Entry, own: np.ndarray) -> bool:
        """Whether ``ref``'s neutral face and the face's own neutral face ``own`` show the same person (cosine of
        their identity codes ≥ ``min_identity``; the entry's code is computed once)."""
        if ref.code is None:
            codes = self.identify(np.stack([ref.neutral, _resized(own, ref.neutral.shape[0])]))
            ref.code, mine = codes[0], codes[1]
        else:
            mine = self.identify(own[None])[0]
        return float(np.dot(ref.code, mine)) >= self.min_identity

    @staticmethod
    def _composite(ref: _Entry, picture: np.ndarray, face: Face, lm: np.ndarray, size: int,
                   match_colour: bool) -> Optional[np.ndarray]:
        """``picture`` (``ref``'s neutral face) aligned to ``face`` by the two frames' landmarks and laid over its
        own inside the face ellipse; None when the landmarks give no transform."""
        m, _ = cv2.estimateAffinePartial2D(ref.landmarks, lm)
        if m is None or not np.all(np.isfinite(m)):
            return None
        warped = cv2.warpAffine(picture, m, (size, size), flags=cv2.INTER_CUBIC,
                                borderMode=cv2.BORDER_REPLICATE)
        own = np.ascontiguousarray(face.neutral)
        mask = face_mask(face, size)
        inside = (mask > 0.5).astype(np.uint8)
        if match_colour and inside.any():  # the mean colour inside the ellipse (the light may have changed since)
            shift = np.subtract(cv2.mean(own, inside)[:3], cv2.mean(warped, inside)[:3])
            warped = cv2.add(warped, (*shift.tolist(), 0.0))  # saturating
        return cv2.blendLinear(warped, own, mask, 1.0 - mask)
