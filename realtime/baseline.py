"""Person-normalized expression: each tracked face against a running estimate of that person's own neutral.

People differ at rest: a resting face can read a little "sad" or "angry" to any
classifier, and some faces carry a smile. Per track, :class:`NeutralBaseline`
keeps the recent history of the face's expression intensity, emotion
probabilities and expression code, and takes as the person's **neutral** the
mean over their most neutral frames: those whose intensity is at or below the
``quantile`` (20 %) of the track's history. Each face then gets

* ``rel_intensity`` = (intensity − neutral intensity) / (1 − neutral intensity),
  clipped to [0, 1]: how far the face is from the person's own rest, on the
  intensity scale;
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
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, Iterable, Optional

import numpy as np

from .types import FramePacket

__all__ = ["NeutralBaseline"]


@dataclass
class _History:
    t0: float
    last: float = 0.0
    intensity: Deque[float] = field(default_factory=deque)
    emotions: Deque[np.ndarray] = field(default_factory=deque)
    codes: Deque[np.ndarray] = field(default_factory=deque)


class NeutralBaseline:
    """Per-track running neutral and the person-relative fields of every face (see the module doc).

    Args:
        warmup_frames: frames a track needs before relative values are reported.
        warmup_s: seconds a track must span before relative values are reported.
        quantile: the most neutral fraction of the history that defines the neutral.
        window: frames of history kept per track.
        forget_s: a track unseen this long is dropped.
    """

    def __init__(self, warmup_frames: int = 15, warmup_s: float = 1.0, quantile: float = 0.2,
                 window: int = 900, forget_s: float = 10.0) -> None:
        if warmup_frames < 1 or not 0 < quantile <= 1 or window < warmup_frames:
            raise ValueError("NeutralBaseline: need warmup_frames >= 1, 0 < quantile <= 1, window >= warmup_frames")
        self.warmup_frames = int(warmup_frames)
        self.warmup_s = float(warmup_s)
        self.quantile = float(quantile)
        self.window = int(window)
        self.forget_s = float(forget_s)
        self._h: Dict[int, _History] = {}

    def describe(self) -> dict:
        return {"warmup_frames": self.warmup_frames, "warmup_s": self.warmup_s, "quantile": self.quantile,
                "window": self.window, "forget_s": self.forget_s}

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
                h = self._h[f.track_id] = _History(t0=ts)
            h.last = ts
            h.intensity.append(float(f.intensity))
            if f.emotions is not None:
                h.emotions.append(np.asarray(f.emotions, np.float32))
            if f.code is not None:
                h.codes.append(np.asarray(f.code, np.float32))
            for q in (h.intensity, h.emotions, h.codes):
                while len(q) > self.window:
                    q.popleft()
            n = len(h.intensity)
            if n < self.warmup_frames or ts - h.t0 < self.warmup_s:
                continue
            inten = np.fromiter(h.intensity, np.float64, n)
            thr = np.quantile(inten, self.quantile)
            sel = np.nonzero(inten <= thr)[0]
            base_i = float(inten[sel].mean())
            f.rel_intensity = float(np.clip((f.intensity - base_i) / max(1e-6, 1.0 - base_i), 0.0, 1.0)) \
                if base_i < 1.0 else 0.0
            f.baseline_ready = True
            if f.emotions is not None and len(h.emotions) == n:
                base_e = np.stack([h.emotions[i] for i in sel]).mean(axis=0)
                f.rel_emotions = (np.asarray(f.emotions, np.float32) - base_e).astype(np.float32)
            if f.code is not None and len(h.codes) == n:
                base_c = np.stack([h.codes[i] for i in sel]).mean(axis=0)
                f.rel_code_dist = float(np.sqrt(np.mean((np.asarray(f.code, np.float32) - base_c) ** 2)))
        for k in [k for k, h in self._h.items() if ts - h.last > self.forget_s]:
            del self._h[k]
        return packet

    def neutral_of(self, track_id: int) -> Optional[float]:
        """The current neutral intensity of a track (None before warm-up)."""
        h = self._h.get(track_id)
        if h is None or len(h.intensity) < self.warmup_frames:
            return None
        inten = np.asarray(h.intensity, np.float64)
        return float(inten[inten <= np.quantile(inten, self.quantile)].mean())
