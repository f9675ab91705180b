"""Person-normalized expression: each tracked face against a running estimate of that person's own neutral.

People differ at rest: a resting face can read a little "sad" or "angry" to any
classifier, and some faces carry a smile. Per track, :class:`NeutralBaseline`
keeps the recent history of the face's expression intensity, emotion
probabilities and expression code, and takes as the person's **neutral** the
mean over their most neutral frames: those whose intensity is at or below the
``quantile`` (20 %) of the track's history. Each face then gets

The neutral intensity is at most :data:`MAX_NEUTRAL` (0.4): a person's rest is not a strong expression, and a
face expressive throughout a clip (crying, shouting) was otherwise measured against itself and read as resting.
Where the cap applies, the neutral's emotion probabilities are mixed with "neutral" itself so that their intensity
is the cap (the code stays the track's own least expressive frames').

* ``rel_intensity`` = (intensity − neutral intensity) / (1 − neutral intensity),
  clipped to [0, 1]: how far the face is from the person's own rest, on the
  intensity scale; only for faces with emotion probabilities (a model with an
  expression head): without one the intensity is the flow's, unbounded and
  about 0.01, on no 0–1 scale, and ``rel_intensity`` stays NaN (the neutral
  frames are still chosen by it, for ``rel_code_dist``);
* ``rel_emotions`` (7,) = emotion probabilities − the neutral's probabilities
  (each in [−1, 1]);
* ``rel_code_dist`` = RMS difference between the expression code and the
  neutral's code.

**Warm-up:** nothing is reported (the fields stay NaN / None and
``baseline_ready`` False) until the track has ``warmup_frames`` frames spanning
at least ``warmup_s`` seconds (defaults: 15 frames and 1.0 s). The history
holds the last ``window`` frames (default 900, about 30 s at 30 fps), so the
neutral follows slow changes (lighting, a new person on a re-used id). A track
unseen for ``forget_s`` seconds (default 10) is forgotten.

**Read ahead** (offline, over a video file: ``Analyzer(baseline_lookahead=True)``, ``--baseline-lookahead``): a
first run over the same file records each track's first ``window`` frames (:attr:`NeutralBaseline.record`,
:meth:`NeutralBaseline.histories`), and the second run starts each track from them
(:meth:`NeutralBaseline.seed`). Until the track has that many frames of its own, its neutral is the mean over the
most neutral of **those** frames, its first ``window`` frames (the whole track if shorter), past and future; from
then on the running estimate above, which at that moment holds exactly the same frames. So there is no warm-up
(a track too short for one, under ``warmup_frames`` or ``warmup_s``, still gets no neutral), and a face that is
expressive from its first frame is measured against a later resting frame instead of against itself. The
pipeline is deterministic over a file, so the second run's tracks are the first's; each is keyed by (track id,
how many times that id began a history in the run). At most ``max_recorded`` frames are recorded (codes at half
precision: about 0.6 KB a frame with a 256-d code); later tracks keep the causal warm-up.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, List, Optional, Tuple

import numpy as np

from .types import EMOTIONS, Face, FramePacket

__all__ = ["NeutralBaseline", "MAX_NEUTRAL"]

log = logging.getLogger(__name__)

#: the highest intensity a person's neutral may have (the head's 0-1 scale). Measured on the shared clips' first
#: 150 frames: people talking with a neutral face rest at 0.13-0.32 (the 20th percentile of their intensity, 33
#: clips), so none is capped; a face expressive throughout a clip (crying, shouting, laughing) was its own neutral
#: and read as resting (rel_intensity medians 0.09-0.17 on four such clips, 0.95-0.97 with the cap)
MAX_NEUTRAL = 0.4


@dataclass
class _Prefix:
    """A track's first frames, as a first run over the same video saw them (see the module doc, "Read ahead")."""
    t0: float
    t1: float = 0.0
    intensity: List[float] = field(default_factory=list)
    emotions: List[np.ndarray] = field(default_factory=list)
    codes: List[np.ndarray] = field(default_factory=list)  # float16: the record's memory is bounded by frames
    #: the neutral estimate over these frames, once computed (they are fixed once the second run uses them)
    estimate: Optional[Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]] = None


@dataclass
class _History:
    t0: float
    last: float = 0.0
    intensity: Deque[float] = field(default_factory=deque)
    emotions: Deque[np.ndarray] = field(default_factory=deque)
    codes: Deque[np.ndarray] = field(default_factory=deque)
    #: seeded: the track's first frames from a first run (used until the track has as many of its own)
    ahead: Optional[_Prefix] = None
    #: recording (``record``): this run's copy of the track's first ``window`` frames
    first: Optional[_Prefix] = None
    #: its neutral was above the cap at some frame (said once per track)
    capped: bool = False


def _estimate(intensity: np.ndarray, emotions, codes, quantile: float
              ) -> Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]:
    """The neutral of one history: the mean intensity, emotions (7,) and code (D,) over the frames at or below
    the ``quantile`` of ``intensity`` (n,); emotions and code None where some frame lacks them."""
    n = len(intensity)
    sel = np.nonzero(intensity <= np.quantile(intensity, quantile))[0]
    base_e = (np.stack([emotions[i] for i in sel]).astype(np.float32).mean(axis=0)
              if len(emotions) == n else None)
    base_c = (np.stack([codes[i] for i in sel]).astype(np.float32).mean(axis=0)
              if len(codes) == n else None)
    return float(intensity[sel].mean()), base_e, base_c


class NeutralBaseline:
    """Per-track running neutral and the person-relative fields of every face (see the module doc).

    Args:
        warmup_frames: frames a track needs before relative values are reported.
        warmup_s: seconds a track must span before relative values are reported.
        quantile: the most neutral fraction of the history that defines the neutral.
        window: frames of history kept per track.
        forget_s: a track unseen this long is dropped.
        max_neutral: the highest intensity the neutral may have (:data:`MAX_NEUTRAL`; None: no cap).
    """

    #: the keys of :meth:`describe` that count what one run did, not how it was set up
    RUN_COUNTS = ("lookahead_tracks_seeded", "tracks_at_cap")

    def __init__(self, warmup_frames: int = 15, warmup_s: float = 1.0, quantile: float = 0.2,
                 window: int = 900, forget_s: float = 10.0, max_neutral: Optional[float] = MAX_NEUTRAL) -> None:
        if warmup_frames < 1 or not 0 < quantile <= 1 or window < warmup_frames:
            raise ValueError("NeutralBaseline: need warmup_frames >= 1, 0 < quantile <= 1, window >= warmup_frames")
        if max_neutral is not None and not 0 < max_neutral < 1:
            raise ValueError("NeutralBaseline: need 0 < max_neutral < 1 (or None)")
        self.max_neutral = None if max_neutral is None else float(max_neutral)
        self.warmup_frames = int(warmup_frames)
        self.warmup_s = float(warmup_s)
        self.quantile = float(quantile)
        self.window = int(window)
        self.forget_s = float(forget_s)
        self._h: Dict[int, _History] = {}
        #: record each track's first ``window`` frames for :meth:`histories` (a look-ahead's first run)
        self.record = False
        #: the most frames recorded in all (each about 0.6 KB with a 256-d code); later tracks are not recorded
        self.max_recorded = 100_000
        self._recorded: Dict[Tuple[int, int], _Prefix] = {}
        self._n_recorded = 0
        self._seed: Dict[Tuple[int, int], _Prefix] = {}
        self._seeded = 0
        self._began: Dict[int, int] = {}  # histories begun per track id in this run
        self._at_cap = 0  # histories whose neutral was above max_neutral at some frame
        self._capped_ids: List[int] = []  # their track ids, in the order they reached it
        #: say nothing on the log (a look-ahead's first reading of a file: the second reading says it, once)
        self.quiet = False

    def describe(self) -> dict:
        return {"warmup_frames": self.warmup_frames, "warmup_s": self.warmup_s, "quantile": self.quantile,
                "window": self.window, "forget_s": self.forget_s, "max_neutral": self.max_neutral,
                **({"lookahead_tracks_seeded": self._seeded} if self._seed or self._seeded else {}),
                # tracks measured against the cap: their rest read expressive (see _note_cap)
                **({"tracks_at_cap": self._at_cap} if self._at_cap else {})}

    def capped_tracks(self) -> List[int]:
        """The track ids whose neutral went above :attr:`max_neutral` in this run, in the order they did (a copy: the
        app names them while the run goes on); ``describe()["tracks_at_cap"]`` counts them."""
        return list(self._capped_ids)

    def histories(self) -> Dict[Tuple[int, int], _Prefix]:
        """The first ``window`` frames of every track of this run (with :attr:`record`), keyed by (track id, how
        many times that id began a history before); give them to :meth:`seed` of a second run's baseline."""
        return dict(self._recorded)

    def seed(self, histories: Dict[Tuple[int, int], _Prefix]) -> None:
        """Start each track of the coming run from ``histories`` (:meth:`histories` of a first run over the same
        video; see the module doc, "Read ahead"). Call before the run's first frame."""
        if self._h or self._began:
            raise RuntimeError("NeutralBaseline.seed: call it before the run's first frame")
        self._seed = {k: _Prefix(t0=v.t0, t1=v.t1, intensity=list(v.intensity), emotions=list(v.emotions),
                                 codes=list(v.codes)) for k, v in histories.items() if v.intensity}

    def keep_only(self, ids: Iterable[int]) -> None:
        keep = set(ids)
        for k in [k for k in self._h if k not in keep]:
            del self._h[k]

    def __call__(self, packet: FramePacket) -> FramePacket:
        """Update every face's track and fill its ``rel_*`` fields and ``baseline_ready``."""
        ts = float(packet.timestamp)
        for f in packet.faces:
            if f.track_id < 0 or not math.isfinite(f.intensity):
                continue
            h = self._h.get(f.track_id)
            if h is None:
                h = self._h[f.track_id] = self._begin(f.track_id, ts)
            h.last = ts
            h.intensity.append(float(f.intensity))
            if f.emotions is not None:
                h.emotions.append(np.asarray(f.emotions, np.float32))
            if f.code is not None:
                h.codes.append(np.asarray(f.code, np.float32))
            for q in (h.intensity, h.emotions, h.codes):
                while len(q) > self.window:
                    q.popleft()
            if h.first is not None:
                self._note(h.first, ts, f)
            neutral = self._neutral(h)
            if neutral is None:  # warm-up
                continue
            if not h.capped and self.max_neutral is not None and neutral[1] is not None \
                    and neutral[0] > self.max_neutral:
                self._note_cap(h, f, neutral[0], ts)
            base_i, base_e, base_c = self._capped(neutral)
            if f.emotions is not None:  # without a head, intensity is the flow's (unbounded, ~0.01): no 0-1 scale
                f.rel_intensity = float(np.clip((f.intensity - base_i) / max(1e-6, 1.0 - base_i), 0.0, 1.0)) \
                    if base_i < 1.0 else 0.0
            f.baseline_ready = True
            if f.emotions is not None and base_e is not None:
                f.rel_emotions = (np.asarray(f.emotions, np.float32) - base_e).astype(np.float32)
            if f.code is not None and base_c is not None:
                f.rel_code_dist = float(np.sqrt(np.mean((np.asarray(f.code, np.float32) - base_c) ** 2)))
        for k in [k for k, h in self._h.items() if ts - h.last > self.forget_s]:
            del self._h[k]
        return packet

    def _note_cap(self, h: _History, f: Face, level: float, ts: float) -> None:
        """Count, and say once per track, that its neutral is above the cap: the face never rested below it. That
        is the cap's purpose for a face expressive throughout (crying, laughing), but a face that reads expressive
        at rest does it too: a probe measured sunglasses, a hand over the mouth and a shadow over half the face
        raising a resting talker's intensity from 0.17-0.36 to 0.39-0.70, and its ``rel_intensity`` over 0.3 on
        62-83 % of its frames. The user cannot tell the two apart from the rows alone."""
        h.capped = True
        self._at_cap += 1
        self._capped_ids.append(int(f.track_id))
        if not (self.record or self.quiet):  # (a look-ahead's first reading says nothing: the second says it once)
            log.warning("face #%d (from %.1f s): its most neutral frames read %.3f, above the person baseline's cap "
                        "of %.2f: its rel_* columns are measured against the cap. Expected for a face expressive "
                        "throughout; for a face at rest, something makes it read expressive (sunglasses, a hand, "
                        "a shadow, dim light, the frame edge: docs/reliability.md)", f.track_id, h.t0, level,
                        self.max_neutral)

    def _capped(self, neutral: Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]
                ) -> Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]:
        """``neutral`` with its intensity at most :attr:`max_neutral` (on the head's 0-1 scale, where it has emotion
        probabilities): the emotions mixed with "neutral" itself (one-hot) so that their intensity is the cap.
        The code is the track's own."""
        base_i, base_e, base_c = neutral
        if self.max_neutral is None or base_e is None or base_i <= self.max_neutral:
            return neutral
        w = self.max_neutral / base_i
        rest = np.zeros_like(base_e)
        rest[EMOTIONS.index("neutral")] = 1.0
        return self.max_neutral, (w * base_e + (1.0 - w) * rest).astype(np.float32), base_c

    def _neutral(self, h: _History) -> Optional[Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]]:
        """The neutral of history ``h`` as of its last frame (:func:`_estimate`), None during the warm-up: over its
        first frames read ahead while it is seeded and has fewer of its own, else over its own."""
        n = len(h.intensity)
        a = h.ahead
        if a is not None and n < len(a.intensity):
            if len(a.intensity) < self.warmup_frames or a.t1 - a.t0 < self.warmup_s:
                return None
            if a.estimate is None:  # the record is fixed: once
                a.estimate = _estimate(np.asarray(a.intensity, np.float64), a.emotions, a.codes, self.quantile)
            return a.estimate
        h.ahead = None  # its own history now holds the same frames and more
        if n < self.warmup_frames or h.last - h.t0 < self.warmup_s:
            return None
        return _estimate(np.fromiter(h.intensity, np.float64, n), h.emotions, h.codes, self.quantile)

    def _begin(self, track_id: int, ts: float) -> _History:
        """A new history for ``track_id`` at ``ts``: seeded from a first run's record where there is one, and
        recorded for :meth:`histories` with :attr:`record`."""
        key = (track_id, self._began.get(track_id, 0))
        self._began[track_id] = key[1] + 1
        h = _History(t0=ts, ahead=self._seed.pop(key, None))
        self._seeded += h.ahead is not None
        if self.record and self._n_recorded < self.max_recorded:
            h.first = self._recorded[key] = _Prefix(t0=ts)
        return h

    def _note(self, rec: _Prefix, ts: float, f: Face) -> None:
        """Add face ``f`` at ``ts`` to a track's record, up to ``window`` frames and ``max_recorded`` in all."""
        if len(rec.intensity) >= self.window or self._n_recorded >= self.max_recorded:
            return
        self._n_recorded += 1
        rec.t1 = ts
        rec.intensity.append(float(f.intensity))
        if f.emotions is not None:
            rec.emotions.append(np.asarray(f.emotions, np.float32))
        if f.code is not None:
            rec.codes.append(np.asarray(f.code, np.float16))

    def neutral_of(self, track_id: int) -> Optional[float]:
        """The current neutral intensity of a track (None before warm-up)."""
        h = self._h.get(track_id)
        neutral = self._neutral(h) if h is not None else None
        return None if neutral is None else self._capped(neutral)[0]
