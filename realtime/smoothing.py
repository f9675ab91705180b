"""One Euro filter (Casiez et al., CHI 2012), vectorised, driven by timestamps.

Little lag on fast motion, strong smoothing when still: the cutoff frequency
rises with the (smoothed) speed of the signal: ``fc = min_cutoff + beta·|dx/dt|``.

A step longer than the filter's typical step (frames dropped, a face missing for a while) is smoothed as that many
typical steps: the old value keeps ``(1 − a)^(dt / dt_typ)`` of its weight, ``a`` the usual weight of one typical
step. The usual ``a = 1 / (1 + τ/dt)`` applied once over a long step kept τ/(τ+dt) of the old value (13 % after a
0.9 s gap, against 0.6 % had the frames come), and then nothing at all once the track's filters were dropped.

Angles (``angles=True``; :class:`TrackSmoother`'s ``pose``, radians) are filtered on the unwrapped scale: a sample
more than π from the filtered value is taken as that value plus their difference wrapped into (−π, π], and the output
is wrapped back into (−π, π]. A roll turning steadily through 180° (an upside-down face: 170°, 175°, 179°, −179°, …)
read 170, 171, 172.7, −67.6, −143.7° as plain numbers averaged, values no frame had; it now reads as the unwrapped
170, 175, 179, 181, 185° would (170, 171, 172.7, 174.7, 177.4°), wrapped. Values that stay within π of the filtered
value and inside (−π, π] are filtered exactly as plain numbers.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Deque, Dict, Iterable, Optional

import numpy as np

__all__ = ["OneEuroFilter", "TrackSmoother", "ANGLES"]

#: the quantities :class:`TrackSmoother` filters as angles (radians, wrapped into (−π, π]): the pose's Rx, Ry, Rz
ANGLES = frozenset({"pose"})

#: how far past ±π an angle may lie and still count as wrapped (a float32 π is 8.7e-8 above π)
_ANGLE_SLACK = 1e-6


#: how many of a filter's latest steps its typical step (their median) is taken from
TYPICAL_STEPS = 9


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def _weight(cutoff: np.ndarray, dt: float, dt_typ: float) -> np.ndarray:
    """The new sample's weight over a step of ``dt`` seconds: :func:`_alpha` for a step up to the typical one
    ``dt_typ`` (exactly as before); a longer one as ``dt / dt_typ`` typical steps, the old value keeping
    ``(1 − a)^(dt / dt_typ)`` (continuous at ``dt_typ``; after a long gap the old value fades as it would have,
    had the frames come)."""
    if dt <= dt_typ * (1.0 + 1e-6):  # (the float noise of a steady frame rate's timestamps stays on the first path)
        return _alpha(cutoff, dt)
    return 1.0 - (1.0 - _alpha(cutoff, dt_typ)) ** (dt / dt_typ)


def _wrap(a: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped into (−π, π]."""
    out = math.pi - np.mod(math.pi - a, 2 * math.pi)
    return np.where(out <= -math.pi, out + 2 * math.pi, out)  # (np.mod's rounding can give 2π itself)


class OneEuroFilter:
    """Filter a fixed-shape float array over time.

    Args:
        min_cutoff: cutoff (Hz) at zero speed; lower = smoother when still.
        beta: speed coefficient; higher = less lag on fast changes.
        d_cutoff: cutoff (Hz) of the derivative's low-pass.
        angles: the values are angles in radians, as the pipeline gives them in [−π, π]: filtered on the unwrapped
            scale (a sample more than π from the filtered value is moved by 2π towards it) and the output wrapped into
            (−π, π]. An element that is not such an angle (beyond ±π, where it or the filtered value lies) is
            filtered as a plain number.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0,
                 angles: bool = False) -> None:
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.angles = bool(angles)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t: Optional[float] = None
        self._steps: Deque[float] = deque(maxlen=TYPICAL_STEPS)  # the latest steps (s), for the typical one

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` (any shape, float) taken at time ``t`` seconds; returns float32, same shape."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or x.shape != self._x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.astype(np.float32)
        dt = float(t) - self._t
        if dt <= 0:  # repeated / out-of-order timestamp: keep the state, return the last output
            return self._x.astype(np.float32)
        wrapped = None
        if self.angles:  # the elements that are angles in [-pi, pi], the sample's and the filtered value's alike
            lim = math.pi + _ANGLE_SLACK
            wrapped = (np.abs(x) <= lim) & (np.abs(self._x) <= lim)
            far = wrapped & (np.abs(x - self._x) > math.pi)
            if far.any():  # across the wrap: the sample on the filtered value's side (only there: else x as given)
                x = np.where(far, self._x + _wrap(x - self._x), x)
        dx = (x - self._x) / dt
        dt_typ = statistics.median(self._steps) if self._steps else dt  # (the first step: its own; 0.5 us, numpy's 12)
        self._steps.append(dt)
        a_d = _weight(np.asarray(self.d_cutoff), dt, dt_typ)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _weight(cutoff, dt, dt_typ)
        self._x = a * x + (1 - a) * self._x
        if wrapped is not None:
            out = wrapped & ((self._x > math.pi) | (self._x <= -math.pi))
            if out.any():
                self._x = np.where(out, _wrap(self._x), self._x)
        self._t = float(t)
        return self._x.astype(np.float32)


#: how far another class's (smoothed) probability must lead the held label's before the label changes
#: (:meth:`TrackSmoother.label`). Chosen on 20 shared clips (138 s): the smoothed label's switches 1.05 -> 0.86 a
#: second, back-and-forth blips within 300 ms 0.30 -> 0.18 a second, for a median of one frame (33 ms) more delay
#: on the changes that last, 200 ms at most, and no lasting change missed (MODEL_CARD.md, experiment 55)
LABEL_MARGIN = 0.10

#: seconds a track may be missing (a frame or a few where the tracker lost it) and keep its filters and label
HOLD_S = 1.0


class TrackSmoother:
    """One Euro filters per track id and per named quantity (``pose``, ``code``, ``intensity``, ...), and each
    track's emotion label held with hysteresis (:meth:`label`).

    A filter starts fresh when its track first appears, when it reappears after :meth:`drop`, or after more than
    ``hold_s`` seconds missing (:meth:`keep_only`), so smoothing never mixes two faces. The quantities in
    :data:`ANGLES` (``pose``: Rx, Ry, Rz radians) are filtered as angles (``OneEuroFilter(angles=True)``): a roll
    through ±180° stays near the raw one, in (−π, π].
    """

    def __init__(self, params: Optional[Dict[str, dict]] = None, label_margin: float = LABEL_MARGIN,
                 hold_s: float = HOLD_S) -> None:
        self.label_margin = float(label_margin)
        self.hold_s = float(hold_s)
        self._labels: Dict[int, int] = {}
        self._seen: Dict[int, float] = {}
        self.params = {"pose": dict(min_cutoff=1.0, beta=0.3), "code": dict(min_cutoff=1.5, beta=0.05),
                       "intensity": dict(min_cutoff=1.5, beta=0.5), "emotions": dict(min_cutoff=1.0, beta=0.5),
                       "landmarks": dict(min_cutoff=2.0, beta=0.02)}
        if params:
            self.params.update(params)
        self._f: Dict[int, Dict[str, OneEuroFilter]] = {}

    def __call__(self, track_id: int, name: str, x: np.ndarray, t: float) -> np.ndarray:
        per = self._f.setdefault(track_id, {})
        self._seen[track_id] = max(float(t), self._seen.get(track_id, float("-inf")))
        f = per.get(name)
        if f is None:
            kw = dict(self.params.get(name, {}))
            kw.setdefault("angles", name in ANGLES)
            f = per[name] = OneEuroFilter(**kw)
        return f(x, t)

    def describe(self, names: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, float]]:
        """Each named quantity's One Euro parameters (``min_cutoff``, ``beta``, ``d_cutoff``, the filter's defaults
        filled in), for the JSON sidecar; ``names``: only these (default: every quantity with parameters)."""
        keys = list(self.params) if names is None else list(names)
        out: Dict[str, Dict[str, float]] = {}
        for k in keys:
            f = OneEuroFilter(**self.params.get(k, {}))
            out[k] = {"min_cutoff": f.min_cutoff, "beta": f.beta, "d_cutoff": f.d_cutoff}
        return out

    def drop(self, track_id: int) -> None:
        """Forget a track (its next sample restarts the filters and its label)."""
        self._f.pop(track_id, None)
        self._labels.pop(track_id, None)
        self._seen.pop(track_id, None)

    def label(self, track_id: int, probs: np.ndarray) -> int:
        """The track's emotion label for ``probs`` (the smoothed (7,) probabilities), an index into them: the
        label held so far until another class leads it by ``label_margin`` (hysteresis; a track's first label is
        the most probable class). Two classes nearly level no longer swap the label back and forth."""
        best = int(np.argmax(probs))
        held = self._labels.get(track_id)
        if held is None or held >= len(probs) or float(probs[best]) - float(probs[held]) >= self.label_margin:
            held = best
        self._labels[track_id] = held
        return held

    def keep_only(self, ids: Iterable[int], now: Optional[float] = None) -> None:
        """Forget the tracks not in ``ids``: at once without ``now``; else those not seen for more than ``hold_s``
        seconds before ``now`` (a track the tracker lost for a frame or two and found again goes on smoothly)."""
        ids = set(ids)
        for k in list(self._f.keys() | self._labels.keys()):
            if k in ids:
                continue
            if now is not None and now - self._seen.get(k, float("-inf")) <= self.hold_s:
                continue
            self.drop(k)
