"""Optional re-identification after an occlusion, by identity code.

When a new track id appears (after an occlusion longer than the tracker's lost
buffer, or after a scene cut, where every track ends), its identity code is
compared (cosine) with the running mean identity codes of ids that disappeared
less than ``window`` seconds ago; above ``threshold`` the new track takes
the old id (for the rest of its life). Needs ``Face.identity`` (the analyzer
computes it when ``reid=True``).

The threshold is strict because the shipped identity code is weak and a false
match mixes two people in one id's smoothing, person baseline and neutral
reference. Measured through the pipeline on 62 shared clips
(``scripts/eval_reid.py``, ``benchmarks/2026-12-05-epyc1/reid.json``): at 0.97 a
person coming back in the same shot gets their id back 74 % of the time, from
another clip of them 17 %, and another person takes it in 0.35 % of 3,728
pairs (at the former 0.8: 100 %, 83 % and 39 %).

Memory is bounded over days: the gallery forgets a person unseen for ``window`` seconds, and a tracker id's mapping
is forgotten once the tracker has ended that track: at a scene cut (``FramePacket.scene_cut``: the tracker ends every
track there), or when it has been out of the frames for more than :data:`FORGET_S` seconds (at least ``window``) and
:data:`FORGET_FRAMES` frames (the tracker drops a lost track after 2 s; a track kept through a jump in time, present
on the frames either side of it, keeps its id). The one exception: a face that ``max_faces`` kept out of the output
for that long while the tracker still followed it comes back as a new face (it would have taken its old id back).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from .types import FramePacket

__all__ = ["IdentityReID", "FORGET_S", "FORGET_FRAMES"]

#: a tracker id out of the frames for longer than this many seconds (or ``window``, if longer) and
#: :data:`FORGET_FRAMES` frames has ended in the tracker: its mapping is forgotten
FORGET_S = 60.0
FORGET_FRAMES = 100


class IdentityReID:
    def __init__(self, threshold: float = 0.97, window: float = 10.0) -> None:
        self.threshold = float(threshold)
        self.window = float(window)
        self._map: Dict[int, int] = {}          # tracker id -> reported id
        self._codes: Dict[int, np.ndarray] = {}  # reported id -> mean unit identity code
        self._last: Dict[int, float] = {}        # reported id -> last time seen
        #: tracker id -> (the last time, the frame count) it was seen: its mapping is forgotten once it has ended
        self._seen: Dict[int, Tuple[float, int]] = {}
        self._frames = 0  # frames seen
        self._max_id = -1  # the largest id reported so far (ids are never reused, also after pruning)
        self._pruned_at = -math.inf
        self._tracks_pruned_at = 0

    def __call__(self, p: FramePacket) -> None:
        self._frames += 1
        if p.scene_cut:  # the tracker ended every track: those before the cut never come back
            here = {f.track_id for f in p.faces}
            for tid in [t for t in self._seen if t not in here]:
                self._forget(tid)
        elif self._frames - self._tracks_pruned_at > FORGET_FRAMES:
            self._prune_tracks(p.timestamp)
        if p.timestamp - self._pruned_at > self.window:
            self._prune(p.timestamp)
        present = {self._map[f.track_id] for f in p.faces if f.track_id in self._map}
        for f in p.faces:
            tid = f.track_id
            if tid not in self._seen:
                self._map[tid] = self._match(f.identity, p.timestamp, exclude=present) if f.identity is not None \
                    else tid
            self._seen[tid] = (p.timestamp, self._frames)
            rid = self._map.get(tid, tid)
            self._max_id = max(self._max_id, rid)
            f.track_id = rid
            present.add(rid)
            if f.identity is not None:
                v = np.asarray(f.identity, np.float32)
                v = v / max(float(np.linalg.norm(v)), 1e-8)
                old = self._codes.get(rid)
                self._codes[rid] = v if old is None else 0.9 * old + 0.1 * v
            self._last[rid] = p.timestamp
        p.faces.sort(key=lambda f: f.track_id)

    def _match(self, ident, t: float, exclude) -> int:
        v = np.asarray(ident, np.float32)
        v = v / max(float(np.linalg.norm(v)), 1e-8)
        best, best_sim = None, self.threshold
        for rid, code in self._codes.items():
            if rid in exclude or t - self._last.get(rid, -1e9) > self.window:
                continue
            sim = float(code @ v / max(float(np.linalg.norm(code)), 1e-8))
            if sim > best_sim:
                best, best_sim = rid, sim
        return best if best is not None else self._fresh_id()

    def _fresh_id(self) -> int:
        return self._max_id + 1  # above every id reported so far (tracker ids kept included)

    def _forget(self, tid: int) -> None:
        self._seen.pop(tid, None)
        self._map.pop(tid, None)

    def _prune_tracks(self, t: float) -> None:
        """Forget the tracker ids out of the frames for more than :data:`FORGET_S` (or ``window``) seconds and
        :data:`FORGET_FRAMES` frames: the tracker has ended them (see the module doc)."""
        self._tracks_pruned_at = self._frames
        after = max(FORGET_S, self.window)
        for tid in [tid for tid, (last, n) in self._seen.items()
                    if t - last > after and self._frames - n > FORGET_FRAMES]:
            self._forget(tid)

    def _prune(self, t: float) -> None:
        """Forget the people unseen for longer than the window (they can never be matched again): the gallery
        kept every person of a run, and each new track was compared with all of them (274 after 10 minutes of
        people coming and going, and growing for as long as a camera ran). Tracker ids stay mapped until the tracker
        has ended them (:meth:`_prune_tracks`), so that a track the tracker kept across a jump in time keeps its id."""
        self._pruned_at = t
        gone = {rid for rid, last in self._last.items() if t - last > self.window}
        if not gone:
            return
        for rid in gone:  # the gallery only: a track kept across a jump in time keeps its id (its _map entry)
            self._codes.pop(rid, None)
            self._last.pop(rid, None)
