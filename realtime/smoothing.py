"""One Euro filter (Casiez et al., CHI 2012), vectorised, driven by timestamps.

Little lag on fast motion, strong smoothing when still: the cutoff frequency
rises with the (smoothed) speed of the signal: ``fc = min_cutoff + beta·|dx/dt|``.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Optional

import numpy as np

__all__ = ["OneEuroFilter", "TrackSmoother"]


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filter a fixed-shape float array over time.

    Args:
        min_cutoff: cutoff (Hz) at zero speed; lower = smoother when still.
        beta: speed coefficient; higher = less lag on fast changes.
        d_cutoff: cutoff (Hz) of the derivative's low-pass.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged."""
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t: Optional[float] = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` (any shape, float) taken at time ``t`` seconds; returns float32, same shape."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or x.shape != self._x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.astype(np.float32)
        dt = float(t) - self._t
        if dt <= 0:  # repeated / out-of-order timestamp: keep the state, return the last output
            return self._x.astype(np.float32)
        dx = (x - self._x) / dt
        a_d = _alpha(np.asarray(self.d_cutoff), dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = float(t)
        return self._x.astype(np.float32)


class TrackSmoother:
    """One Euro filters per track id and per named quantity (``pose``, ``code``, ``intensity``, ...).

    A filter starts fresh when its track first appears (or reappears after
    :meth:`drop`), so smoothing never mixes two faces.
    """

    def __init__(self, params: Optional[Dict[str, dict]] = None) -> None:
        self.params = {"pose": dict(min_cutoff=1.0, beta=0.3), "code": dict(min_cutoff=1.5, beta=0.05),
                       "intensity": dict(min_cutoff=1.5, beta=0.5), "emotions": dict(min_cutoff=1.0, beta=0.5),
                       "landmarks": dict(min_cutoff=2.0, beta=0.02)}
        if params:
            self.params.update(params)
        self._f: Dict[int, Dict[str, OneEuroFilter]] = {}

    def __call__(self, track_id: int, name: str, x: np.ndarray, t: float) -> np.ndarray:
        per = self._f.setdefault(track_id, {})
        f = per.get(name)
        if f is None:
            f = per[name] = OneEuroFilter(**self.params.get(name, {}))
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
        """Forget a track (its next sample restarts the filters)."""
        self._f.pop(track_id, None)

    def keep_only(self, ids) -> None:
        for k in list(self._f):
            if k not in ids:
                del self._f[k]
