"""Person-normalized expression: each tracked face against a running estimate of that person's own neutral.

People differ at rest: a resting face can read a little "sad" or "angry" to any
classifier, and some faces carry a smile. Per track, :class:`NeutralBaseline`
keeps the recent history of the face's expression intensity, emotion
probabilities and expression code, and takes as the person's **neutral** the
mean over their most neutral frames: those whose intensity is at or below the
``quantile`` (20 %) of the track's history. Each face then gets

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

The neutral intensity is at most :data:`MAX_NEUTRAL` (0.4): a person's rest is not a strong expression, and a
face expressive throughout a clip (crying, shouting) was otherwise measured against itself and read as resting.
Where the cap applies, the neutral's emotion probabilities are mixed with "neutral" itself so that their intensity
is the cap (the code stays the track's own least expressive frames').

**Seconds, not frames:** the history, the warm-up and the look-ahead's record are measured in seconds of the
frames' timestamps, so a person's ``rel_*`` read the same at any frame rate. A track's frames join its history
at most ``max_rate`` (30) times a second: a frame joins when it falls in a later 1/``max_rate``-s slot (counted
from the track's first frame, rounded to the nearest) than the last frame that joined. At 30 fps or less every
frame of a file joins (of a camera's unevenly timed frames a few in a hundred fall in one slot with the
frame before and are left out); at 60 fps every other one, at 240 fps one in eight. The most-neutral quantile
thus sees the same density of frames at any rate, and the history's memory is bounded (at most ``window``
frames, 900 by default: ``window_s`` × ``max_rate``). Every frame still gets its ``rel_*`` fields, measured
against the neutral of the history as of the last frame that joined.

**Warm-up:** nothing is reported (the fields stay NaN / None and ``baseline_ready`` False) until the track spans
at least ``warmup_s`` seconds (1.0 s) and its history holds at least ``warmup_frames`` frames (5: from 4 fps
up the track is ready at 1.0 s, ``warmup_s`` deciding). The history holds the frames of the last ``window_s``
seconds (30 s: 900 frames at 30 fps and above, 150 at 5 fps), so the neutral follows slow changes (lighting, a
new person on a re-used id); at any frame rate, a smile held through more than 80 % of the history (1 −
``quantile``: 24 s of the last 30 s) becomes the person's neutral. A track unseen for ``forget_s`` seconds
(default 10) is forgotten.

**Read ahead** (offline, over a video file: ``Analyzer(baseline_lookahead=True)``, ``--baseline-lookahead``): a
first run over the same file records each track's first ``window_s`` seconds (the frames that joined its
history: :attr:`NeutralBaseline.record`, :meth:`NeutralBaseline.histories`), and the second run starts each track
from them (:meth:`NeutralBaseline.seed`). Until as many frames have joined the track's own history, its neutral is
the mean over the most neutral of **those** frames, its first ``window_s`` seconds (the whole track if shorter),
past and future; from then on the running estimate above, which at that moment holds exactly the same frames. So
there is no warm-up (a track too short for one, under ``warmup_frames`` or ``warmup_s``, still gets no neutral),
and a face that is expressive from its first frame is measured against a later resting frame instead of against
itself. The pipeline is deterministic over a file, so the second run's tracks are the first's; each is keyed by
(track id, how many times that id began a history in the run). At most ``max_recorded`` frames are recorded (codes
at half precision: about 0.6 KB a frame with a 256-d code); later tracks keep the causal warm-up.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple, cast

import numpy as np

from .types import EMOTIONS, Face, FramePacket

__all__ = ["NeutralBaseline", "MAX_NEUTRAL", "CAP_TRACKS_SAID"]

log = logging.getLogger(__name__)

#: the most faces whose neutral reached the cap that are each said at WARNING level; later ones are said at INFO,
#: counted (a day of edited video had about 12,000 such warnings; the sidecar's ``person_baseline.tracks_at_cap``
#: counts them all, and the app names them)
CAP_TRACKS_SAID = 3

#: the highest intensity a person's neutral may have (the head's 0-1 scale). Measured on the shared clips' first
#: 150 frames: people talking with a neutral face rest at 0.13-0.32 (the 20th percentile of their intensity, 33
#: clips), so none is capped; a face expressive throughout a clip (crying, shouting, laughing) was its own neutral
#: and read as resting (rel_intensity medians 0.09-0.17 on four such clips, 0.95-0.97 with the cap)
MAX_NEUTRAL = 0.4


@dataclass
class _Prefix:
    """A track's first ``window_s`` seconds (the frames that joined its history), as a first run over the same
    video saw them (see the module doc, "Read ahead"). ``emotions`` and ``codes`` are aligned with ``intensity``
    (None where a frame had none)."""
    t0: float
    #: the last frame seen while the record was open (frames that did not join the history included)
    t1: float = 0.0
    intensity: List[float] = field(default_factory=list)
    emotions: List[Optional[np.ndarray]] = field(default_factory=list)
    codes: List[Optional[np.ndarray]] = field(default_factory=list)  # float16: the record's memory is bounded
    #: the neutral estimate over these frames, once computed (they are fixed once the second run uses them)
    estimate: Optional[Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]] = None


@dataclass
class _History:
    """One track's history: the frames that joined it (their timestamps, intensities and, aligned, emotions and
    codes, None where a frame had none) within the last ``window_s`` seconds."""
    t0: float
    last: float = 0.0
    times: Deque[float] = field(default_factory=deque)
    intensity: Deque[float] = field(default_factory=deque)
    emotions: Deque[Optional[np.ndarray]] = field(default_factory=deque)
    codes: Deque[Optional[np.ndarray]] = field(default_factory=deque)
    #: the origin of the 1/max_rate-s slots and the slot of the last frame that joined (-1: none yet)
    slot0: float = 0.0
    slot: int = -1
    #: frames that joined the history since the track began (pruned ones included)
    joined: int = 0
    #: how many of the history's frames have no emotions, no code
    no_emotions: int = 0
    no_codes: int = 0
    #: the neutral of the current history, once computed (reset when a frame joins)
    estimate: Optional[Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]] = None
    #: seeded: the track's first frames from a first run (used until as many frames joined its own history)
    ahead: Optional[_Prefix] = None
    #: recording (``record``): this run's copy of the track's first ``window_s`` seconds
    first: Optional[_Prefix] = None
    #: its neutral was above the cap at some frame (said once per track)
    capped: bool = False


def _estimate(intensity: np.ndarray, emotions: Optional[Sequence[np.ndarray]], codes: Optional[Sequence[np.ndarray]],
              quantile: float) -> Tuple[float, Optional[np.ndarray], Optional[np.ndarray]]:
    """The neutral of one history: the mean intensity, emotions (7,) and code (D,) over the frames at or below
    the ``quantile`` of ``intensity`` (n,); ``emotions`` and ``codes`` are aligned with ``intensity``, None where
    some frame lacks them (and then so is the neutral's)."""
    sel = np.nonzero(intensity <= np.quantile(intensity, quantile))[0]
    base_e = np.stack([emotions[i] for i in sel]).astype(np.float32).mean(axis=0) if emotions is not None else None
    base_c = np.stack([codes[i] for i in sel]).astype(np.float32).mean(axis=0) if codes is not None else None
    return float(intensity[sel].mean()), base_e, base_c


def _whole(items: Sequence[Optional[np.ndarray]]) -> Optional[Sequence[np.ndarray]]:
    """``items`` where none is None, else None (:func:`_estimate`)."""
    return cast(Sequence[np.ndarray], items) if all(x is not None for x in items) else None


class NeutralBaseline:
    """Per-track running neutral and the person-relative fields of every face (see the module doc).

    Times are the frames' timestamps, in seconds; what is counted in frames is said so.

    Args:
        warmup_frames: the fewest frames a track's history must hold before relative values are reported (a
            minimum, so that a very low frame rate is not ready on one or two frames; ``warmup_s`` decides from
            about ``warmup_frames / warmup_s`` fps up).
        warmup_s: seconds a track must span before relative values are reported.
        quantile: the most neutral fraction of the history that defines the neutral.
        window: the most frames of history kept per track (None: ``window_s`` × ``max_rate``, 900 by default; a
            smaller one cuts the history to that many frames whatever their span).
        forget_s: seconds: a track unseen this long is dropped.
        max_neutral: the highest intensity the neutral may have (:data:`MAX_NEUTRAL`; None: no cap).
        window_s: seconds of history kept per track (30).
        max_rate: the most frames a second that join a track's history (30; a higher frame rate is sampled down).
    """

    #: the keys of :meth:`describe` that count what one run did, not how it was set up
    RUN_COUNTS = ("lookahead_tracks_seeded", "tracks_at_cap")

    def __init__(self, warmup_frames: int = 5, warmup_s: float = 1.0, quantile: float = 0.2,
                 window: Optional[int] = None, forget_s: float = 10.0, max_neutral: Optional[float] = MAX_NEUTRAL,
                 window_s: float = 30.0, max_rate: float = 30.0) -> None:
        if not (window_s > 0 and max_rate > 0 and math.isfinite(window_s) and math.isfinite(max_rate)):
            raise ValueError("NeutralBaseline: need window_s > 0 and max_rate > 0")
        if window is None:
            window = max(1, int(round(window_s * max_rate)))
        if warmup_frames < 1 or not 0 < quantile <= 1 or window < warmup_frames:
            raise ValueError("NeutralBaseline: need warmup_frames >= 1, 0 < quantile <= 1, window >= warmup_frames")
        if max_neutral is not None and not 0 < max_neutral < 1:
            raise ValueError("NeutralBaseline: need 0 < max_neutral < 1 (or None)")
        self.max_neutral = None if max_neutral is None else float(max_neutral)
        self.warmup_frames = int(warmup_frames)
        self.warmup_s = float(warmup_s)
        self.quantile = float(quantile)
        self.window = int(window)
        self.window_s = float(window_s)
        self.max_rate = float(max_rate)
        self.forget_s = float(forget_s)
        #: a frame older than this (seconds before the newest) leaves the history: ``window_s`` less half a slot,
        #: so that a history at ``max_rate`` fps holds ``window_s`` × ``max_rate`` frames whatever the rounding of
        #: the timestamps
        self._span = self.window_s - 0.5 / self.max_rate
        self._h: Dict[int, _History] = {}
        #: record each track's first ``window_s`` seconds for :meth:`histories` (a look-ahead's first run)
        self.record = False
        #: the most frames recorded in all (each about 0.6 KB with a 256-d code); later tracks are not recorded
        self.max_recorded = 100_000
        self._recorded: Dict[Tuple[int, int], _Prefix] = {}
        self._n_recorded = 0
        self._seed: Dict[Tuple[int, int], _Prefix] = {}
        self._seeded = 0
        #: histories begun per track id in this run, for the keys of a record or seed (:meth:`_begin`): an id's count
        #: is forgotten with its history unless one is kept or used (:meth:`_drop`)
        self._began: Dict[int, int] = {}
        self._begun = 0  # histories begun in this run
        self._seed_ids: set = set()  # the track ids of the seed's keys
        self._at_cap = 0  # histories whose neutral was above max_neutral at some frame
        self._capped_ids: List[int] = []  # their track ids, in the order they reached it
        #: say nothing on the log (a look-ahead's first reading of a file: the second reading says it, once)
        self.quiet = False

    def describe(self) -> dict:
        """The settings (the sidecar's ``person_baseline``; a batch's fingerprint) and this run's counts
        (:attr:`RUN_COUNTS`, where any). ``warmup_s``, ``window_s`` and ``forget_s`` are seconds, ``max_rate``
        frames a second, ``warmup_frames`` and ``window`` frames."""
        return {"warmup_frames": self.warmup_frames, "warmup_s": self.warmup_s, "quantile": self.quantile,
                "window_s": self.window_s, "max_rate": self.max_rate, "window": self.window,
                "forget_s": self.forget_s, "max_neutral": self.max_neutral,
                **({"lookahead_tracks_seeded": self._seeded} if self._seed or self._seeded else {}),
                # tracks measured against the cap: their rest read expressive (see _note_cap)
                **({"tracks_at_cap": self._at_cap} if self._at_cap else {})}

    def capped_tracks(self) -> List[int]:
        """The track ids whose neutral went above :attr:`max_neutral` in this run, in the order they did (a copy: the
        app names them while the run goes on); ``describe()["tracks_at_cap"]`` counts them."""
        return list(self._capped_ids)

    def histories(self) -> Dict[Tuple[int, int], _Prefix]:
        """The first ``window_s`` seconds of every track of this run (with :attr:`record`: the frames that joined
        its history, at most ``window``), keyed by (track id, how many times that id began a history before); give
        them to :meth:`seed` of a second run's baseline."""
        return dict(self._recorded)

    def seed(self, histories: Dict[Tuple[int, int], _Prefix]) -> None:
        """Start each track of the coming run from ``histories`` (:meth:`histories` of a first run over the same
        video; see the module doc, "Read ahead"). Call before the run's first frame."""
        if self._h or self._began or self._begun:
            raise RuntimeError("NeutralBaseline.seed: call it before the run's first frame")
        self._seed = {k: _Prefix(t0=v.t0, t1=v.t1, intensity=list(v.intensity), emotions=list(v.emotions),
                                 codes=list(v.codes)) for k, v in histories.items() if v.intensity}
        self._seed_ids = {k[0] for k in self._seed}

    def keep_only(self, ids: Iterable[int]) -> None:
        """Forget every track but ``ids``."""
        keep = set(ids)
        for k in [k for k in self._h if k not in keep]:
            self._drop(k)

    def _drop(self, track_id: int) -> None:
        """Forget a track's history, and its count of histories begun unless a record (:attr:`record`) or a seed
        keys on it: memory per track id seen stays bounded over days (94 bytes a gone id were kept for good)."""
        del self._h[track_id]
        if not self.record and track_id not in self._seed_ids:
            self._began.pop(track_id, None)

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
            joins = self._join(h, ts, f)
            if h.first is not None:
                self._note(h.first, ts, f, joins)
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
            self._drop(k)
        return packet

    def _join(self, h: _History, ts: float, f: Face) -> bool:
        """Add face ``f`` at ``ts`` to history ``h`` where it falls in a later 1/:attr:`max_rate`-s slot than the
        last frame that joined (every frame at :attr:`max_rate` fps or less), dropping the frames older than
        :attr:`window_s` seconds and beyond :attr:`window` frames; whether it joined."""
        if h.times and ts < h.times[-1]:  # the clock went back (a restarted stream): slots from here
            h.slot0, h.slot = ts, -1
        slot = math.floor((ts - h.slot0) * self.max_rate + 0.5)
        if slot <= h.slot:
            return False
        h.slot = slot
        h.joined += 1
        h.estimate = None
        h.times.append(ts)
        h.intensity.append(float(f.intensity))
        h.emotions.append(None if f.emotions is None else np.asarray(f.emotions, np.float32))
        h.codes.append(None if f.code is None else np.asarray(f.code, np.float32))
        h.no_emotions += f.emotions is None
        h.no_codes += f.code is None
        oldest = ts - self._span
        while h.times and (h.times[0] <= oldest or len(h.times) > self.window):
            h.times.popleft()
            h.intensity.popleft()
            h.no_emotions -= h.emotions.popleft() is None
            h.no_codes -= h.codes.popleft() is None
        return True

    def _note_cap(self, h: _History, f: Face, level: float, ts: float) -> None:
        """Count, and say once per track, that its neutral is above the cap: the face never rested below it. That
        is the cap's purpose for a face expressive throughout (crying, laughing), but a face that reads expressive
        at rest does it too: a probe measured sunglasses, a hand over the mouth and a shadow over half the face
        raising a resting talker's intensity from 0.17-0.36 to 0.39-0.70, and its ``rel_intensity`` over 0.3 on
        62-83 % of its frames. The user cannot tell the two apart from the rows alone."""
        h.capped = True
        self._at_cap += 1
        self._capped_ids.append(int(f.track_id))
        if self.record or self.quiet:  # (a look-ahead's first reading says nothing: the second says it once)
            return
        if self._at_cap <= CAP_TRACKS_SAID:
            log.warning("face #%d (from %.1f s): its most neutral frames read %.3f, above the person baseline's cap "
                        "of %.2f: its rel_* columns are measured against the cap. Expected for a face expressive "
                        "throughout; for a face at rest, something makes it read expressive (sunglasses, a hand, "
                        "a shadow, dim light, the frame edge: docs/reliability.md)%s", f.track_id, h.t0, level,
                        self.max_neutral, " (further such faces are said at INFO level; the sidecar's "
                        "person_baseline.tracks_at_cap counts them all)" if self._at_cap == CAP_TRACKS_SAID else "")
        else:  # one line each, at INFO: a long edited video has hundreds
            log.info("face #%d (from %.1f s): its most neutral frames read %.3f, above the person baseline's cap of "
                     "%.2f too (%d faces at the cap so far)", f.track_id, h.t0, level, self.max_neutral, self._at_cap)

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
        """The neutral of history ``h`` as of the last frame that joined it (:func:`_estimate`), None during the
        warm-up: over its first frames read ahead while it is seeded and fewer frames joined its own history, else
        over its own."""
        a = h.ahead
        if a is not None and h.joined < len(a.intensity):
            if len(a.intensity) < self.warmup_frames or a.t1 - a.t0 < self.warmup_s:
                return None
            if a.estimate is None:  # the record is fixed: once
                a.estimate = _estimate(np.asarray(a.intensity, np.float64), _whole(a.emotions), _whole(a.codes),
                                       self.quantile)
            return a.estimate
        h.ahead = None  # its own history now holds the same frames, and later more
        n = len(h.intensity)
        if n < self.warmup_frames or h.last - h.t0 < self.warmup_s:
            return None
        if h.estimate is None:  # the history changes only when a frame joins it
            h.estimate = _estimate(np.fromiter(h.intensity, np.float64, n), None if h.no_emotions else h.emotions,
                                   None if h.no_codes else h.codes, self.quantile)
        return h.estimate

    def _begin(self, track_id: int, ts: float) -> _History:
        """A new history for ``track_id`` at ``ts``: seeded from a first run's record where there is one, and
        recorded for :meth:`histories` with :attr:`record`."""
        key = (track_id, self._began.get(track_id, 0))
        self._began[track_id] = key[1] + 1
        self._begun += 1
        h = _History(t0=ts, slot0=ts, ahead=self._seed.pop(key, None))
        self._seeded += h.ahead is not None
        if self.record and self._n_recorded < self.max_recorded:
            h.first = self._recorded[key] = _Prefix(t0=ts)
        return h

    def _note(self, rec: _Prefix, ts: float, f: Face, joined: bool) -> None:
        """Add face ``f`` at ``ts`` to a track's record where it ``joined`` the history, while the record is open:
        its first :attr:`window_s` seconds, up to ``window`` frames and ``max_recorded`` in all (the frames the
        track's history holds when its last recorded frame joins)."""
        if len(rec.intensity) >= self.window or self._n_recorded >= self.max_recorded or ts - rec.t0 >= self._span:
            return
        rec.t1 = ts
        if not joined:
            return
        self._n_recorded += 1
        rec.intensity.append(float(f.intensity))
        rec.emotions.append(None if f.emotions is None else np.asarray(f.emotions, np.float32))
        rec.codes.append(None if f.code is None else np.asarray(f.code, np.float16))

    def neutral_of(self, track_id: int) -> Optional[float]:
        """The current neutral intensity of a track (None before warm-up)."""
        h = self._h.get(track_id)
        neutral = self._neutral(h) if h is not None else None
        return None if neutral is None else self._capped(neutral)[0]
