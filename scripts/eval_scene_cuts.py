#!/usr/bin/env python3
"""How well does the tracker's scene-cut test tell a new shot from motion? (MODEL_CARD.md, experiment 29)

At a scene cut the tracker ends every track (a face after it gets a new id), so a missed cut mixes two people
in one track's smoothing, person baseline and neutral reference, and a false cut splits one person's track.
This script measures both with the tracker's own grey frames (``Tracker._gray``, the optical-flow scale) and
its own test (``Tracker._change``):

- **false cuts**: every pair of consecutive frames of every clip of ``--dirs`` (the first ``--max-frames``).
  Frames listed in ``--known`` (``NAME:FRAME``) are real shot changes and are counted apart.
- **missed cuts**: every ordered pair of two different clips, joined as an editor would (frame
  ``--join-at`` of the first, or its last, followed by the second's first frame, scaled to the first's size).
  Two clips of one person count too: they are two shots.

Each rule is scored: the shipped one (``cut_threshold`` and ``cut_similarity`` of :class:`Tracker`) and the
previous grey-level test alone (mean absolute difference > ``cut_threshold``).

Usage::

    python scripts/eval_scene_cuts.py --dirs ../shared/data/videos ../shared/data/videos_more --out J
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import write_result  # noqa: E402

from facecycle.files import VIDEO_SUFFIXES  # noqa: E402
from realtime.tracking import Tracker, structural_similarity  # noqa: E402

#: shot changes inside the shared clips, checked by eye (name: frame that starts the new shot)
KNOWN = ["pyfeat_face_noface.mov:72", "pyfeat_face_noface.mov:73", "pyfeat_noface_face.mov:96",
         "pyfeat_noface_face.mov:168", "styletalk_style_clips_furious_talk2_clip1.mp4:30"]


def grey_frames(path: Path, tracker: Tracker, max_frames: int) -> list:
    """The tracker's grey frames (uint8, optical-flow scale) of the first ``max_frames`` frames of ``path``."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            out.append(tracker._gray(f.to_ndarray(format="bgr24"))[0])
            if len(out) >= max_frames:
                break
    return out


def scores(a: np.ndarray, b: np.ndarray) -> tuple:
    """(mean absolute grey difference, structural similarity) of two grey frames of one size."""
    return cv2.norm(a, b, cv2.NORM_L1) / a.size, structural_similarity(a, b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=Path, nargs="+", required=True)
    ap.add_argument("--max-frames", type=int, default=900)
    ap.add_argument("--join-at", type=int, default=150)
    ap.add_argument("--known", nargs="*", default=KNOWN)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    tr = Tracker()
    clips = sorted(p for d in a.dirs for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        print(f"error: no clips in {' '.join(map(str, a.dirs))}", file=sys.stderr)
        return 2
    known = set(a.known)
    grays = {p.name: grey_frames(p, tr, a.max_frames) for p in clips}
    within, real = [], []
    for name, g in grays.items():
        for i in range(1, len(g)):
            (real if f"{name}:{i}" in known else within).append((name, i) + scores(g[i - 1], g[i]))
    joins = []
    names = [n for n, g in grays.items() if len(g) > 1]
    for x in names:
        gx = grays[x]
        k = min(len(gx) - 1, a.join_at)
        for y in names:
            if x != y:
                gy = cv2.resize(grays[y][0], gx[k].shape[::-1], interpolation=cv2.INTER_AREA)
                joins.append((x, y) + scores(gx[k], gy))
    rules = {
        "shipped: difference > %g and similarity < %g" % (tr.cut_threshold, tr.cut_similarity):
            lambda m, s: m > tr.cut_threshold and s < tr.cut_similarity,
        "previous: difference > %g" % tr.cut_threshold: lambda m, s: m > tr.cut_threshold,
    }
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "clips": len(clips),
           "frame_pairs": len(within), "known_shot_changes": len(real), "joins": len(joins), "rules": {}}
    for rule, f in rules.items():
        false = [(n, i, round(m, 1), round(s, 3)) for n, i, m, s in within if f(m, s)]
        missed = [(x, y, round(m, 1), round(s, 3)) for x, y, m, s in joins if not f(m, s)]
        res["rules"][rule] = {
            "false_cuts": len(false), "false_cut_frames": false,
            "known_shot_changes_found": sum(f(m, s) for _, _, m, s in real),
            "joins_found": round(1 - len(missed) / len(joins), 4), "joins_missed": len(missed),
            "missed_examples": sorted(missed, key=lambda r: -r[3])[:10]}
        print(f"{rule}: {len(false)} false cuts in {len(within)} frame pairs, "
              f"{res['rules'][rule]['known_shot_changes_found']}/{len(real)} known shot changes, "
              f"{res['rules'][rule]['joins_found']:.2%} of {len(joins)} joins")
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
