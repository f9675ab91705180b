"""A running summary of what a CSV holds: per track and for the whole input, the mean emotion probabilities,
the emotion they name, and the distribution of the expression intensity.

This is the reading research users take from a clip ("the mean of the ``emotion_*`` columns over the frames
with a face names the clip's emotion"), computed once, from the same (smoothed) values the CSV rows carry, so
that nobody has to re-derive it with pandas. :class:`ExpressionSummary` is fed every frame by
:class:`~realtime.sinks.CsvSink` and ends up in the JSON sidecar's ``summary`` block (``docs/csv.md``).

The means, the emotion they name and the intensity quantiles are **weighted by time**, as the clip plays: each row
counts for its frame's duration, the time from its frame's timestamp to the next frame's of the input (the next
packet, whether or not the row's track is in it). Phone video is variable-rate (a phone records 60 fps when the
picture moves and 10 when it does not): by rows, the 40 frames of 0.67 s of a smile outweighed the 20 frames of
the 2 s of a neutral face before it (happy 0.52, neutral 0.33; by time happy 0.24, neutral 0.60). A frame's
duration is known only when the next frame comes, so each frame's rows are weighed one frame later; the last frame
(and, in a checkpoint, the latest) counts for the input's typical step, the median of its last :data:`STEPS`
steps. One frame counts for at most :data:`CAP_STEPS` typical steps, or :data:`CAP_MIN_S` where that is longer
(a rate that drops 6-fold, 60 to 10 fps, is not cut while the median catches up): a stall, a paused live
stream, a gap in a file gives its frame a fraction of a second, not minutes. A step that is not positive (a
caller's repeated timestamps) counts as the typical step. On a constant-rate clip every row weighs the same and
the summary is the one by rows; ``rows``, ``top_emotions`` and the quantiles' ``rows`` still count rows, and
``seconds`` gives each group's summed time (``weighted_by``: ``"time"``).

Memory is constant per track (at most about 8 KB): sums for the means, and 1,000-bin 32-bit histograms on
[0, 1] for the intensity quantiles (exact to 0.001), each made when its first value comes, holding time in units
of :data:`UNIT_S` (a bin holds 59 hours before it turns 64-bit), so hours of one face cost what a short clip
does, and the many short tracks of an edited video (every track ends at a scene cut)
cost less. At most :data:`MAX_TRACKS` tracks are kept (a folder of 30,000 photos read as stills has a track per
face): past that, the ended track with the fewest rows is dropped from the list (its rows stay in ``faces``), and
``tracks_total`` counts them all (the ids seen are kept as runs of consecutive ids, :class:`_IdSet`: a track's ids are
given in turn, so a run of days with a million faces keeps a few numbers, where a set of every id kept 130 bytes
each). Only rows with finite
emotion probabilities count in the means and quantiles: without an expression head ``expr_intensity`` is the
unbounded ``flow_intensity`` and nothing but the row counts, times and ``seconds`` is summarised. Where any of a
group's rows was read from a brightened crop (a face too dark to read as it was: ``Face.lift``), ``lifted_rows``
and ``lifted_share`` say how many and what share of its rows.
"""
from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from facecycle.jsonvalues import is_finite, is_int, is_number

from .types import EMOTIONS, Face, FramePacket

__all__ = ["ExpressionSummary", "BINS", "MAX_TRACKS", "NEAR_TIE", "clip_reading"]

#: a clip's reading is a near tie where its top mean emotion leads the runner-up by less than this: the summary's
#: ``near_tie``, and ``facecycle process``'s end line names the runner-up. Harmless changes to a clip (a re-encode at
#: crf 40, brightness x0.6 or x1.4, contrast x0.6, gamma, a 10-degree turn, letterboxing; probe h81, six clips, 18
#: changes) moved its mean probabilities by up to about 0.13 and flipped the summary of the two clips whose margins
#: were 0.011 and 0.09; none of the four with margins of 0.26 or more. It was 0.05
NEAR_TIE = 0.10

#: histogram bins on [0, 1] for intensity quantiles (resolution 1 / BINS)
BINS = 1000

#: the most tracks summarised one by one (about 8 KB each); the rest count in ``faces`` and ``tracks_total``
MAX_TRACKS = 1000

#: the intensity histograms count time in these units (0.1 ms: a 60-fps frame is 167 of them, 0.2 % off)
UNIT_S = 1e-4

#: the typical step of an input: the median of its last STEPS positive steps
STEPS = 31

#: one frame counts for at most CAP_STEPS typical steps, or CAP_MIN_S seconds where that is longer
CAP_STEPS = 4.0
CAP_MIN_S = 0.25

#: a frame's duration where the input has shown no step yet (one frame; or every timestamp the same)
DEFAULT_STEP_S = 1 / 30

_I32_MAX = int(np.iinfo(np.int32).max)

#: what one face row leaves to weigh once its frame's duration is known: its emotion probabilities (float64) and
#: the index of its own emotion, or None (no finite probabilities); and its intensity's and rel_intensity's bins
#: (-1: none)
_Row = Tuple[Optional[np.ndarray], int, int, int]


@dataclass
class _Acc:
    """Sums and histograms of one group of face rows (one track, or all of them). Counts of rows are kept as each
    row comes (:meth:`add`); its time-weighted part when its frame's duration is known (:meth:`weigh`)."""

    rows: int = 0
    emotion_rows: int = 0
    top_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS), np.int64))  # rows per own label
    intensity_rows: int = 0
    rel_rows: int = 0
    seconds: float = 0.0         # every row's duration
    emotion_seconds: float = 0.0  # the rows with finite probabilities
    emotion_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS), np.float64))  # duration-weighted
    top_seconds: np.ndarray = field(default_factory=lambda: np.zeros(len(EMOTIONS), np.float64))  # per own label
    intensity: Optional[np.ndarray] = None      # (BINS,) int32 of UNIT_S, made with the first value
    rel_intensity: Optional[np.ndarray] = None  # (BINS,) int32 of UNIT_S, made with the first value
    first_frame: int = -1
    last_frame: int = -1
    first_time: float = math.nan
    last_time: float = math.nan
    lifted: int = 0  # rows whose face was read brightened (Face.lift > 1: a dark crop, realtime.inference.lift_dark)

    def add(self, p: FramePacket, f: Face, row: _Row) -> None:
        """Count the row of face ``f`` of packet ``p`` (``row``: :func:`_row_of` it, made once for all the groups it
        counts in); its time-weighted part comes with :meth:`weigh`."""
        if self.rows == 0:
            self.first_frame, self.first_time = p.index, p.timestamp
        self.last_frame, self.last_time = p.index, p.timestamp
        self.rows += 1
        if f.lift > 1.0:
            self.lifted += 1
        e, top, ib, rb = row
        if e is None:
            return
        self.top_counts[top] += 1
        self.emotion_rows += 1
        if ib >= 0:
            self.intensity_rows += 1
            if self.intensity is None:
                self.intensity = np.zeros(BINS, np.int32)
        if rb >= 0:
            self.rel_rows += 1
            if self.rel_intensity is None:
                self.rel_intensity = np.zeros(BINS, np.int32)

    def weigh(self, row: _Row, w: float) -> None:
        """Add the time-weighted part of a row :meth:`add` counted, now that its duration ``w`` (s) is known."""
        self.seconds += w
        e, top, ib, rb = row
        if e is None:
            return
        self.emotion_seconds += w
        self.emotion_sum += w * e
        self.top_seconds[top] += w
        units = max(1, int(round(w / UNIT_S)))
        if ib >= 0:
            self.intensity = _add(self.intensity, ib, units)
        if rb >= 0:
            self.rel_intensity = _add(self.rel_intensity, rb, units)

    def copy(self) -> "_Acc":
        return replace(self, top_counts=self.top_counts.copy(), emotion_sum=self.emotion_sum.copy(),
                       top_seconds=self.top_seconds.copy(),
                       intensity=None if self.intensity is None else self.intensity.copy(),
                       rel_intensity=None if self.rel_intensity is None else self.rel_intensity.copy())

    def to_dict(self) -> Dict[str, object]:
        # no rows: every field null alike (first_frame -1 beside a null first_timestamp was a probe's finding)
        out: Dict[str, object] = {"rows": self.rows, "first_frame": self.first_frame if self.rows else None,
                                  "last_frame": self.last_frame if self.rows else None,
                                  "first_timestamp": _round(self.first_time, 6),
                                  "last_timestamp": _round(self.last_time, 6),
                                  "seconds": round(self.seconds, 4)}
        if self.emotion_rows and self.emotion_seconds > 0:
            mean = self.emotion_sum / self.emotion_seconds
            top = int(np.argmax(mean))
            out["mean_emotions"] = {e: round(float(v), 5) for e, v in zip(EMOTIONS, mean, strict=True)}
            out["emotion"] = EMOTIONS[top]
            second = int(np.argsort(mean)[-2])  # the runner-up: how close the reading came to another emotion
            out["runner_up"] = EMOTIONS[second]
            out["emotion_margin"] = round(float(mean[top] - mean[second]), 5)
            out["near_tie"] = bool(mean[top] - mean[second] < NEAR_TIE)  # the runner-up is as much its reading
            out["emotion_top_share"] = round(float(self.top_seconds[top] / self.emotion_seconds), 5)
            out["top_emotions"] = {e: int(n) for e, n in zip(EMOTIONS, self.top_counts, strict=True)}
        else:
            out["mean_emotions"], out["emotion"], out["emotion_top_share"] = None, None, None
            out["runner_up"], out["emotion_margin"], out["near_tie"] = None, None, None
            out["top_emotions"] = None
        out["intensity"] = _quantiles(self.intensity, self.intensity_rows)
        out["rel_intensity"] = _quantiles(self.rel_intensity, self.rel_rows)
        if self.lifted:  # only where a row was read brightened: a lit clip's summary is as it was
            out["lifted_rows"] = self.lifted
            out["lifted_share"] = round(self.lifted / self.rows, 5)
        return out


def _row_of(f: Face) -> _Row:
    """What one face row leaves to count and weigh (:data:`_Row`): a copy of its emotion probabilities, its own
    label's index, its intensity's and rel_intensity's bins; (None, -1, -1, -1) without finite probabilities (no
    expression head: intensity is the unbounded flow_intensity, not summarised; one bad row must not turn the
    whole input's means into NaN)."""
    if f.emotions is None:
        return (None, -1, -1, -1)
    e = np.array(f.emotions, np.float64)  # (a copy: the row as it was written)
    if not np.isfinite(e).all():
        return (None, -1, -1, -1)
    top = EMOTIONS.index(f.emotion) if f.emotion is not None else int(np.argmax(e))  # its own label
    return (e, top, _bin_of(f.intensity), _bin_of(f.rel_intensity) if f.baseline_ready else -1)


def _bin_of(v: float) -> int:
    """The histogram bin of ``v`` (clipped to [0, 1]), or -1 where it is not finite."""
    v = float(v)
    return min(BINS - 1, max(0, int(v * BINS))) if math.isfinite(v) else -1


def _add(hist: np.ndarray, b: int, units: int) -> np.ndarray:
    """Add ``units`` to bin ``b``; a bin that would pass the int32 range (59 hours of one bin) turns the histogram
    64-bit. Returns the histogram."""
    if hist.dtype == np.int32 and int(hist[b]) > _I32_MAX - units:
        hist = hist.astype(np.int64)
    hist[b] += units
    return hist


def _round(v: float, nd: int) -> Optional[float]:
    return round(v, nd) if math.isfinite(v) else None


def _quantiles(hist: Optional[np.ndarray], rows: int) -> Optional[Dict[str, float]]:
    """Median, 10th and 90th percentile of a [0, 1] histogram of time (bin centres), with the count of ``rows`` it
    holds; None if empty."""
    if hist is None or rows <= 0:
        return None
    cdf = np.cumsum(hist, dtype=np.int64)
    total = int(cdf[-1])
    if total <= 0:
        return None
    # the smallest bin holding the p-th share of the time, for the three at once (a sidecar checkpoint at the
    # summary's 1,000 tracks spent a third of its time in one search each), on a scale of rows: where every row
    # weighs the same (a constant frame rate), cdf / (total / rows) is each bin's count of rows exactly, and the
    # quantiles are those of the rows, to the last bit
    scaled = cdf / (total / rows)
    i10, i50, i90 = (round((min(int(i), BINS - 1) + 0.5) / BINS, 4)
                     for i in np.searchsorted(scaled, _QS * rows, side="left"))
    return {"rows": rows, "p10": i10, "median": i50, "p90": i90}


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

    ``add(packet)`` after each frame is written; ``to_dict()`` at any time (it changes nothing: a checkpoint's
    summary counts the latest frame for the typical step, as the end does). Frames without a face count in
    ``frames`` only, and end the duration of the frame before them.
    """

    def __init__(self, max_tracks: int = MAX_TRACKS) -> None:
        self.frames = 0
        self.frames_with_face = 0
        self.all = _Acc()
        self.tracks: Dict[int, _Acc] = {}
        self.max_tracks = int(max_tracks)
        #: every track id (a track dropped from the list and seen again counts once), as runs of consecutive ids
        self._seen = _IdSet()
        #: the input's last STEPS positive steps between frames (s), for its typical step
        self._steps: Deque[float] = deque(maxlen=STEPS)
        #: the latest frame's timestamp and its rows (track id, the track's sums, the row), weighed when the next
        #: frame says how long it lasted
        self._pending: Optional[Tuple[float, List[Tuple[int, _Acc, _Row]]]] = None

    def typical_step(self) -> float:
        """The input's typical step between frames (s): the median of its last :data:`STEPS` positive steps, or
        :data:`DEFAULT_STEP_S` before it has any."""
        return statistics.median(self._steps) if self._steps else DEFAULT_STEP_S

    def add(self, packet: FramePacket) -> None:
        self.frames += 1
        t = float(packet.timestamp)
        if self._pending is not None:  # the frame before lasted until this one
            t0, rows = self._pending
            step = t - t0
            # the typical step of the steps before this one (a stall after the first frame was its own median, so
            # one frame of a paused stream weighed 10 minutes: a review's finding)
            typical = self.typical_step()
            if math.isfinite(step) and step > 0:
                self._steps.append(step)
            w = step if math.isfinite(step) and step > 0 else typical
            w = min(w, max(CAP_STEPS * typical, CAP_MIN_S))
            for _, acc, row in rows:
                self.all.weigh(row, w)
                acc.weigh(row, w)
        if packet.faces:
            self.frames_with_face += 1
        pending: List[Tuple[int, _Acc, _Row]] = []
        for f in packet.faces:
            row = _row_of(f)
            self.all.add(packet, f, row)
            tid = int(f.track_id)
            acc = self.tracks.get(tid)
            if acc is None:
                acc = self.tracks[tid] = _Acc()
                self._seen.add(tid)
            acc.add(packet, f, row)
            pending.append((tid, acc, row))
        self._pending = (t, pending)
        if len(self.tracks) > self.max_tracks:
            here = {int(f.track_id) for f in packet.faces}
            gone = [(a.rows, k) for k, a in self.tracks.items() if k not in here]
            for _, k in sorted(gone)[: len(self.tracks) - self.max_tracks]:
                del self.tracks[k]

    def to_dict(self) -> Dict[str, object]:
        """``{weighted_by, frames, frames_with_face, faces: {...}, tracks: [{face_id, ...}, ...], tracks_total}``;
        ``faces`` summarises every face row (all tracks), each track's entry its own rows; tracks are ordered by
        rows, most first, at most ``max_tracks`` of the ``tracks_total`` seen. The latest frame's rows count for the
        typical step (:meth:`typical_step`), on copies of their sums: nothing here changes."""
        whole, tracks_now = self.all, self.tracks
        if self._pending is not None and self._pending[1]:
            w = self.typical_step()
            whole, tracks_now = self.all.copy(), dict(self.tracks)
            copies: Dict[int, _Acc] = {}
            for tid, acc, row in self._pending[1]:
                if tid not in copies:
                    copies[tid] = acc.copy()
                    if tracks_now.get(tid) is acc:
                        tracks_now[tid] = copies[tid]
                whole.weigh(row, w)
                copies[tid].weigh(row, w)
        tracks: List[Dict[str, object]] = []
        for tid, acc in sorted(tracks_now.items(), key=lambda kv: (-kv[1].rows, kv[0])):
            tracks.append({"face_id": tid, **acc.to_dict()})
        return {"weighted_by": "time", "frames": self.frames, "frames_with_face": self.frames_with_face,
                "faces": whole.to_dict(), "tracks": tracks, "tracks_total": len(self._seen)}

    @property
    def tracks_total(self) -> int:
        """Every track seen, listed or not."""
        return len(self._seen)


def clip_reading(summary: Optional[Dict[str, object]]) -> Optional[Dict[str, object]]:
    """The compact per-input reading of a sidecar's ``summary`` (all faces): ``{emotion, p, runner_up, margin,
    face_rows, intensity_median, mean_emotions, top_emotions, weighted_by}``, or None when no face row carried
    emotions. ``weighted_by`` is the summary's (``"time"``), or ``"rows"`` for a summary without the key: an earlier
    FaceCycle's, whose means weighed every row alike (on a constant frame rate the same; not on variable-rate video).
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
            "top_emotions": top if isinstance(top, dict) and all(is_int(v) for v in top.values()) else None,
            "weighted_by": summary.get("weighted_by") if summary.get("weighted_by") in ("time", "rows") else "rows"}
