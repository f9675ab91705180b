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
previous grey-level test alone (mean absolute difference > ``cut_threshold``). Both measure inside the borders
the two frames share (``realtime.tracking.picture_area``, as the tracker does since experiment 42).

With ``--pad W:H`` every clip is shown as in a W:H frame (16:9: a portrait or square phone clip between black
pillarbox bars, as video players and editors show it): the bars dilute a whole-frame test (experiment 42).

Gradual transitions (MODEL_CARD.md, experiment 34; the tracker's :class:`GradualCut` beside its cut test, every
frame of every clip in order, as the tracker sees them):

- **false transitions**: frames of the clips where either test fires, other than the known shot changes;
- **dissolves**: ``--dissolves`` ordered pairs of two different clips (seeded), the first's frames up to
  ``--join-at`` cross-faded into the second's over L frames (L in ``--lengths``; both keep moving), and
  **fades** through black (L/2 frames out, 2 black, L/2 in) and through white (the picture inside any black bars
  fades to white; the bars stay). Found: either test fires between the
  transition's first frame and 24 frames after its last (``found_twice``: two or more times). The cut test alone is
  scored too.

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
from realtime.tracking import GradualCut, Tracker, picture_area, structural_similarity  # noqa: E402

#: shot changes inside the shared clips, checked by eye (name: frame that starts the new shot)
KNOWN = ["pyfeat_face_noface.mov:72", "pyfeat_face_noface.mov:73", "pyfeat_noface_face.mov:96",
         "pyfeat_noface_face.mov:168", "styletalk_style_clips_furious_talk2_clip1.mp4:30"]


def pad_to(image: np.ndarray, aspect: "float | None") -> np.ndarray:
    """``image`` (H, W, ...) centred in black bars to the width/height ratio ``aspect`` (as is when None)."""
    if not aspect:
        return image
    h, w = image.shape[:2]
    nh, nw = (h, int(round(h * aspect))) if w / h < aspect else (int(round(w / aspect)), w)
    out = np.zeros((nh, nw) + image.shape[2:], image.dtype)
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    out[y0: y0 + h, x0: x0 + w] = image
    return out


def grey_frames(path: Path, tracker: Tracker, max_frames: int, aspect: "float | None" = None) -> list:
    """The tracker's grey frames (uint8, optical-flow scale) of the first ``max_frames`` frames of ``path``, shown
    in a frame of ``aspect`` (width / height) where given (:func:`pad_to`)."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for f in c.decode(s):
            out.append(tracker._gray(pad_to(f.to_ndarray(format="bgr24"), aspect))[0])
            if len(out) >= max_frames:
                break
    return out


def scores(a: np.ndarray, b: np.ndarray) -> tuple:
    """(mean absolute grey difference, structural similarity) of two grey frames of one size, inside the borders
    they share (:func:`picture_area`), as :meth:`Tracker._change` measures them."""
    rows, cols = picture_area(a, b)
    a, b = np.ascontiguousarray(a[rows, cols]), np.ascontiguousarray(b[rows, cols])
    return cv2.norm(a, b, cv2.NORM_L1) / a.size, structural_similarity(a, b)


def cuts_of(frames: list, gradual: bool = True) -> list:
    """Indices of the frames where the tracker ends every track: its scene test (``Tracker._scene``: the cut
    test and its :class:`GradualCut`), or with ``gradual`` False the cut test alone."""
    tr, out = Tracker(), []
    for i, g in enumerate(frames):
        tr._prev_gray = frames[i - 1] if i else None
        if (tr._scene(g, float(i)) if gradual else tr._change(g))[1]:
            out.append(i)
    return out


def transition(gx: list, gy: list, k: int, length: int, kind: str, pad: int = 60) -> tuple:
    """Frames of ``gx`` up to ``k`` then ``length`` frames of transition into ``gy`` (scaled to ``gx``'s size), then
    ``gy``: (frames, first transition frame, last transition frame). ``kind``: ``dissolve``, ``fade`` (through
    black) or ``fade_white`` (through white inside the picture: black bars, where the frames have them, stay)."""
    size = gx[0].shape[::-1]
    y = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in gy[: length + pad]]
    y += [y[-1]] * (length + pad - len(y))
    x = gx[max(0, k - pad): k] if k > 0 else gx[:1]
    mid = []
    if kind in ("fade", "fade_white"):
        h = length // 2
        level = np.zeros(gx[0].shape, np.float32)
        if kind == "fade_white":
            rows, cols = picture_area(gx[min(len(gx) - 1, k)], gx[min(len(gx) - 1, k)])
            level[rows, cols] = 255.0

        def toward(f: np.ndarray, a: float) -> np.ndarray:
            return f.astype(np.float32) * (1 - a) + level * a

        mid = [toward(gx[min(len(gx) - 1, k + j)], (j + 1) / (h + 1)) for j in range(h)]
        mid += [level] * 2
        mid += [toward(y[j], 1 - (j + 1) / (h + 1)) for j in range(h)]
        rest = y[h:]
    else:
        for j in range(length):
            a = (j + 1) / (length + 1)
            mid.append(gx[min(len(gx) - 1, k + j)].astype(np.float32) * (1 - a) + y[j].astype(np.float32) * a)
        rest = y[length:]
    mid = [np.clip(np.rint(f), 0, 255).astype(np.uint8) for f in mid]
    return list(x) + mid + list(rest), len(x), len(x) + len(mid) - 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=Path, nargs="+", required=True)
    ap.add_argument("--max-frames", type=int, default=900)
    ap.add_argument("--join-at", type=int, default=150)
    ap.add_argument("--known", nargs="*", default=KNOWN)
    ap.add_argument("--dissolves", type=int, default=200, help="ordered clip pairs for made dissolves and fades")
    ap.add_argument("--lengths", default="10,20,30,50", help="transition lengths in frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pad", default=None, metavar="W:H", help="show every clip in a W:H frame (black bars)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    tr = Tracker()
    clips = sorted(p for d in a.dirs for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        print(f"error: no clips in {' '.join(map(str, a.dirs))}", file=sys.stderr)
        return 2
    known = set(a.known)
    aspect = (lambda w, h: float(w) / float(h))(*a.pad.split(":")) if a.pad else None
    grays = {p.name: grey_frames(p, tr, a.max_frames, aspect) for p in clips}
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
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "clips": len(clips), "pad": a.pad,
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
    # gradual transitions: the tracker's decisions on every clip in order, and on made dissolves and fades
    false = {}
    for name, g in grays.items():
        hits = [i for i in cuts_of(g) if f"{name}:{i}" not in known]
        if hits:
            false[name] = hits
    rng = np.random.default_rng(a.seed)
    pairs = [(x, y) for x in names for y in names if x != y]
    pairs = [pairs[i] for i in rng.choice(len(pairs), min(a.dissolves, len(pairs)), replace=False)]
    made = {}
    for kind in ("dissolve", "fade", "fade_white"):
        for length in (int(v) for v in a.lengths.split(",")):
            found = {"with_gradual": 0, "cut_test_alone": 0, "found_twice": 0}
            for x, y in pairs:
                gx = grays[x]
                frames, s0, s1 = transition(gx, grays[y], min(len(gx) - 1, a.join_at), length, kind)
                for key, grad in (("with_gradual", True), ("cut_test_alone", False)):
                    hits = sum(s0 <= i <= s1 + 24 for i in cuts_of(frames, grad))
                    found[key] += hits > 0
                    if grad:  # one transition ending tracks twice: a face that appears in between gets two ids
                        found["found_twice"] += hits > 1
            made[f"{kind}_{length}"] = {k: round(v / len(pairs), 4) for k, v in found.items()}
            print(f"{kind} over {length} frames: found {made[f'{kind}_{length}']['with_gradual']:.1%} "
                  f"(the cut test alone {made[f'{kind}_{length}']['cut_test_alone']:.1%}) of {len(pairs)}")
    res["gradual"] = {"rule": GradualCut().describe(), "frames": sum(len(g) for g in grays.values()),
                      "false_transitions": sum(len(v) for v in false.values()), "false_transition_frames": false,
                      "pairs": len(pairs), "made_transitions_found": made}
    print(f"gradual: {res['gradual']['false_transitions']} false transitions in {res['gradual']['frames']} frames")
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
