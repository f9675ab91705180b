"""A running summary of what a CSV holds: per track and for the whole input, the mean emotion probabilities,
the emotion they name, and the distribution of the expression intensity.

This is the reading research users take from a clip ("the mean of the ``emotion_*`` columns over the frames
with a face names the clip's emotion"), computed once, from the same (smoothed) values the CSV rows carry, so
that nobody has to re-derive it with pandas. :class:`ExpressionSummary` is fed every frame by
:class:`~realtime.sinks.CsvSink` and ends up in the JSON sidecar's ``summary`` block (``docs/csv.md``).

Memory is constant per track (at most about 8 KB): sums for the means, and 1,000-bin 32-bit histograms on
[0, 1] for the intensity quantiles (exact to 0.001), each made when its first value comes, so hours of one face
cost what a short clip does, and the many short tracks of an edited video (every track ends at a scene cut)
cost less. At most :data:`MAX_TRACKS` tracks are kept (a folder of 30,000 photos read as stills has a track per
face): past that, the ended track with the fewest rows is dropped from the list (its rows stay in ``faces``), and
``tracks_total`` counts them all (the ids seen are kept as runs of consecutive ids, :class:`_IdSet`: a track's ids are
given in turn, so a run of days with a million faces keeps a few numbers, where a set of every id kept 130 bytes
each). Only rows with finite
emotion probabilities count in the means and quantiles: without an expression head ``expr_intensity`` is the
unbounded ``flow_intensity`` and nothing but the row counts and times is summarised. Where any of a group's rows
was read from a brightened crop (a face too dark to read as it was: ``Face.lift``), ``lifted_rows`` and
``lifted_share`` say how many and what share of its rows.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from facecycle.jsonvalues import is_finite, is_int, is_number

from .types import EMOTIONS, Face, FramePacket

__all__ = ["ExpressionSummary", "BINS", "MAX_TRACKS", "clip_reading"]

#: histogram bins on [0, 1] for intensity quantiles (resolution 1 / BINS)
BINS = 1000

#: the most tracks summarised one by one (about 8 KB each); the rest count in ``faces`` and ``tracks_total``
MAX_TRACKS = 1000


@dataclass
class _Acc:
    """Sums and histograms of one group of face rows (one track, or all of them)."""

    rows: int = 0
    emotion_rows: int = 0
    emotion_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS), np.float64))
    top_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS), np.int64))
    intensity: Optional[np.ndarray] = None      # (BINS,) int32, made with the first value
    rel_intensity: Optional[np.ndarray] = None  # (BINS,) int32, made with the first value
    first_frame: int = -1
    last_frame: int = -1
    first_time: float = math.nan
    last_time: float = math.nan
    lifted: int = 0  # rows whose face was read brightened (Face.lift > 1: a dark crop, realtime.inference.lift_dark)

    def add(self, p: FramePacket, f: Face) -> None:
        if self.rows == 0:
            self.first_frame, self.first_time = p.index, p.timestamp
        self.last_frame, self.last_time = p.index, p.timestamp
        self.rows += 1
        if f.lift > 1.0:
            self.lifted += 1
        if f.emotions is None:  # no expression head: intensity is the unbounded flow_intensity, not summarised
            return
        e = np.asarray(f.emotions, np.float64)
        if not np.isfinite(e).all():  # one bad row must not turn the whole input's means into NaN
            return
        self.emotion_sum += e
        self.top_counts[EMOTIONS.index(f.emotion) if f.emotion is not None else int(np.argmax(e))] += 1  # its label
        self.emotion_rows += 1
        self.intensity = _bin(self.intensity, f.intensity)
        if f.baseline_ready:
            self.rel_intensity = _bin(self.rel_intensity, f.rel_intensity)

    def to_dict(self) -> Dict[str, object]:
        # no rows: every field null alike (first_frame -1 beside a null first_timestamp was a probe's finding)
        out: Dict[str, object] = {"rows": self.rows, "first_frame": self.first_frame if self.rows else None,
                                  "last_frame": self.last_frame if self.rows else None,
                                  "first_timestamp": _round(self.first_time, 6),
                                  "last_timestamp": _round(self.last_time, 6)}
        if self.emotion_rows:
            mean = self.emotion_sum / self.emotion_rows
            top = int(np.argmax(mean))
            out["mean_emotions"] = {e: round(float(v), 5) for e, v in zip(EMOTIONS, mean, strict=True)}
            out["emotion"] = EMOTIONS[top]
            second = int(np.argsort(mean)[-2])  # the runner-up: how close the reading came to another emotion
            out["runner_up"] = EMOTIONS[second]
            out["emotion_margin"] = round(float(mean[top] - mean[second]), 5)
            out["emotion_top_share"] = round(float(self.top_counts[top]) / self.emotion_rows, 5)
            out["top_emotions"] = {e: int(n) for e, n in zip(EMOTIONS, self.top_counts, strict=True)}
        else:
            out["mean_emotions"], out["emotion"], out["emotion_top_share"] = None, None, None
            out["runner_up"], out["emotion_margin"] = None, None
            out["top_emotions"] = None
        out["intensity"] = _quantiles(self.intensity)
        out["rel_intensity"] = _quantiles(self.rel_intensity)
        if self.lifted:  # only where a row was read brightened: a lit clip's summary is as it was
            out["lifted_rows"] = self.lifted
            out["lifted_share"] = round(self.lifted / self.rows, 5)
        return out


def _bin(hist: Optional[np.ndarray], v: float) -> Optional[np.ndarray]:
    """Count ``v`` (clipped to [0, 1]) in ``hist``, made on the first finite value; returns the histogram."""
    v = float(v)
    if math.isfinite(v):
        if hist is None:
            hist = np.zeros(BINS, np.int32)
        hist[min(BINS - 1, max(0, int(v * BINS)))] += 1
    return hist


def _round(v: float, nd: int) -> Optional[float]:
    return round(v, nd) if math.isfinite(v) else None


def _quantiles(hist: Optional[np.ndarray]) -> Optional[Dict[str, float]]:
    """Median, 10th and 90th percentile of a [0, 1] histogram (bin centres), with the row count; None if empty."""
    if hist is None:
        return None
    cdf = np.cumsum(hist, dtype=np.int64)
    n = int(cdf[-1])
    if n == 0:
        return None
    # the smallest bin holding the (p·n)-th value, for the three at once (a sidecar checkpoint at the summary's 1,000
    # tracks spent a third of its time in one search each)
    i10, i50, i90 = (round((min(int(i), BINS - 1) + 0.5) / BINS, 4)
                     for i in np.searchsorted(cdf, _QS * n, side="left"))
    return {"rows": n, "p10": i10, "median": i50, "p90": i90}


_QS = np.array([0.1, 0.5, 0.9])


class _IdSet:
    """A set of ints kept as sorted runs of consecutive ones (``[start, end)``): track ids are given in turn, so the
    ids of a whole run are a run or a few, whatever their number."""

    def __init__(self) -> None:
        self._starts: List[int] = []
        self._ends: List[int] = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def runs(self) -> int:
        return len(self._starts)

    def add(self, x: int) -> bool:
        """Add ``x``; whether it was new."""
        i = bisect.bisect_right(self._starts, x) - 1  # the run starting at or before x
        if i >= 0 and x < self._ends[i]:
            return False
        self.count += 1
        left = i >= 0 and self._ends[i] == x
        right = i + 1 < len(self._starts) and self._starts[i + 1] == x + 1
        if left and right:  # x joins two runs
            self._ends[i] = self._ends[i + 1]
            del self._starts[i + 1], self._ends[i + 1]
        elif left:
            self._ends[i] = x + 1
        elif right:
            self._starts[i + 1] = x
        else:
            self._starts.insert(i + 1, x)
            self._ends.insert(i + 1, x + 1)
        return True


class ExpressionSummary:
    """Per-track and whole-input summary of the faces written (see the module doc).

    ``add(packet)`` after each frame is written; ``to_dict()`` at any time. Frames without a face count in
    ``frames`` only.
    """

    def __init__(self, max_tracks: int = MAX_TRACKS) -> None:
        self.frames = 0
        self.frames_with_face = 0
        self.all = _Acc()
        self.tracks: Dict[int, _Acc] = {}
        self.max_tracks = int(max_tracks)
        #: every track id (a track dropped from the list and seen again counts once), as runs of consecutive ids
        self._seen = _IdSet()

    def add(self, packet: FramePacket) -> None:
        self.frames += 1
        if packet.faces:
            self.frames_with_face += 1
        for f in packet.faces:
            self.all.add(packet, f)
            tid = int(f.track_id)
            acc = self.tracks.get(tid)
            if acc is None:
                acc = self.tracks[tid] = _Acc()
                self._seen.add(tid)
            acc.add(packet, f)
        if len(self.tracks) > self.max_tracks:
            here = {int(f.track_id) for f in packet.faces}
            gone = [(a.rows, t) for t, a in self.tracks.items() if t not in here]
            for _, t in sorted(gone)[: len(self.tracks) - self.max_tracks]:
                del self.tracks[t]

    def to_dict(self) -> Dict[str, object]:
        """``{frames, frames_with_face, faces: {...}, tracks: [{face_id, ...}, ...], tracks_total}``; ``faces``
        summarises every face row (all tracks), each track's entry its own rows; tracks are ordered by rows, most
        first, at most ``max_tracks`` of the ``tracks_total`` seen."""
        tracks: List[Dict[str, object]] = []
        for tid, acc in sorted(self.tracks.items(), key=lambda kv: (-kv[1].rows, kv[0])):
            tracks.append({"face_id": tid, **acc.to_dict()})
        return {"frames": self.frames, "frames_with_face": self.frames_with_face, "faces": self.all.to_dict(),
                "tracks": tracks, "tracks_total": len(self._seen)}

    @property
    def tracks_total(self) -> int:
        """Every track seen, listed or not."""
        return len(self._seen)


def clip_reading(summary: Optional[Dict[str, object]]) -> Optional[Dict[str, object]]:
    """The compact per-input reading of a sidecar's ``summary`` (all faces): ``{emotion, p, runner_up, margin,
    face_rows, intensity_median, mean_emotions, top_emotions}``, or None when no face row carried emotions.
    ``batch.json`` lists it per input, ``facecycle process`` prints it and the app shows it. A summary read back
    from a file that is not as a run wrote it (another program's JSON, a damaged sidecar) gives None too: its
    fields were indexed as written, and a ``"summary": "x"`` stopped a whole batch with an internal error."""
    faces = summary.get("faces") if isinstance(summary, dict) else None
    if not isinstance(faces, dict) or not faces.get("emotion"):
        return None
    name = faces["emotion"]
    means = faces.get("mean_emotions")
    if (not isinstance(name, str) or not isinstance(means, dict) or name not in means or len(means) < 2
            or not all(is_finite(v) for v in means.values()) or not is_int(faces.get("rows"))):
        return None
    means = dict(means)
    inten = faces.get("intensity")
    median = inten.get("median") if isinstance(inten, dict) else None
    runner = faces.get("runner_up")
    if not isinstance(runner, str) or runner not in means or runner == name:  # ([] raised TypeError: unhashable)
        runner = max((e for e in means if e != name), key=lambda e: means[e])
    top = faces.get("top_emotions")
    return {"emotion": name, "p": means[name], "runner_up": runner, "margin": round(means[name] - means[runner], 5),
            "face_rows": faces["rows"],
            "intensity_median": median if is_number(median) else None,
            "mean_emotions": means,
            "top_emotions": top if isinstance(top, dict) and all(is_int(v) for v in top.values()) else None}
