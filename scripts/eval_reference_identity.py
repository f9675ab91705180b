#!/usr/bin/env python3
"""Can the track's neutral reference tell another person's face from the person's own? (MODEL_CARD.md, exp. 33)

The track's reference (:mod:`realtime.neutral_reference`) gives a strongly expressive face the neutral face of
a less expressive earlier frame of the same track. If a track passes from one person to another without a
detected scene cut (two people crossing, a dissolve, a missed cut), that would paint the first person's face on
the second. The guard compares the identity codes (the model's ``identity`` graph,
:meth:`realtime.inference.FaceInference.identify`) of the banked neutral face and of the face's own neutral
face. This script measures how well that separates:

- **same person:** every ``--every``-th frame that uses a reference when the pipeline's neutral faces
  (``Analyzer(neutralize=True)``, the reference off) are replayed through ``NeutralReference`` without the
  check, with the reference it uses;
- **another person:** the same frames, each given ``--impostors`` other people's least expressive neutral
  face (as a track that switched people would bank it).

The clips: the expressive held-out clips of ``--clips`` (people never trained on, ``person`` column) up to
``--max-frames``, and the clips of the posed spans of ``training/video_spans.csv`` (people seen unlabelled;
one person per clip) up to their last span frame. Two readings: the whole neutral face, as the guard reads it,
and the face alone (outside its ellipse grey), a harder test, since people of different clips here also differ
in background and light, which two people in one shot share.

Usage::

    python scripts/eval_reference_identity.py --clips benchmarks/heldout_clips.csv --out J
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import run_header, write_result  # noqa: E402
from eval_spans import find_clip, unlabelled_spans  # noqa: E402

from realtime.neutral_reference import NeutralReference, face_mask  # noqa: E402
from realtime.types import FramePacket  # noqa: E402

THRESHOLDS = (0.86, 0.88, 0.9, 0.92, 0.94)


def record(an, path: Path, max_frames: int, size: int) -> list:
    """The largest face of every frame (None where there is none), its neutral face resized to ``size``."""
    out = []
    for p in an.process_video(path, max_frames=max_frames):
        if not p.faces:
            out.append(None)
            continue
        f = p.largest_face
        f.neutral = cv2.resize(f.neutral, (size, size), interpolation=cv2.INTER_AREA)
        out.append((p.timestamp, f))
    return out


def face_only(f) -> np.ndarray:
    """``f.neutral`` with everything outside the face's feathered ellipse grey (128)."""
    m = face_mask(f, f.neutral.shape[0])[..., None]
    return (f.neutral * m + 128.0 * (1.0 - m)).astype(np.uint8)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC: the chance that a random same-person pair scores above a random other-person pair."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def summary(same: np.ndarray, other: np.ndarray, chosen: float) -> dict:
    return {"pairs_same_person": int(len(same)), "pairs_other_person": int(len(other)),
            "auc": round(auc(same, other), 4),
            "same_person_percentiles_1_5_50": np.percentile(same, [1, 5, 50]).round(4).tolist(),
            "other_person_percentiles_50_95_99": np.percentile(other, [50, 95, 99]).round(4).tolist(),
            "at_threshold": {f"{t:.2f}": {"same_person_refused": round(float(np.mean(same < t)), 4),
                                          "other_person_accepted": round(float(np.mean(other >= t)), 4)}
                             for t in sorted(set(THRESHOLDS) | {chosen})}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--clips", type=Path, nargs="+", required=True)
    ap.add_argument("--spans", type=Path, default=ROOT / "training" / "video_spans.csv")
    ap.add_argument("--labels", type=Path, default=ROOT / "training" / "video_labels.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--impostors", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    from realtime.analyzer import Analyzer

    t0 = time.perf_counter()
    sources = []  # (name, person, path, frames)
    for c in a.clips:
        for r in csv.DictReader(c.open()):
            if r["kind"] == "expressive":
                sources.append((r["clip"], r["person"], a.shared / "data" / r["clip"], a.max_frames))
    ends: dict = {}
    for r in unlabelled_spans(a.spans, a.labels):
        ends[r["clip"]] = max(ends.get(r["clip"], 0), int(r["end"]) + 1)
    sources += [(clip, clip, find_clip(a.shared, clip), n) for clip, n in sorted(ends.items())]
    chosen = NeutralReference().min_identity
    recs, frames = {}, 0
    with Analyzer(a.model, backend="onnxruntime", neutralize=True, neutral_reference=False) as an:
        if not an.inference.can_identify:
            raise SystemExit(f"{a.model}: no identity graph")
        size = an.inference.size
        for name, person, path, n in sources:
            recs[name] = (person, record(an, path, n, size))
            frames += len(recs[name][1])
            print(f"{name}: {len(recs[name][1])} frames", flush=True)
        identify = an.inference.identify
        rest = {}  # each person's least expressive face, per clip
        for person, fr in recs.values():
            faces = [r[1] for r in fr if r is not None]
            rest.setdefault(person, []).append(min(faces, key=lambda f: f.intensity))
        rng = np.random.default_rng(0)
        pairs = {"whole": ([], []), "face_only": ([], [])}
        per_clip = {}
        for name, (person, fr) in recs.items():
            nr = NeutralReference()  # no identity check: which frames would use a reference
            others = [f for p, L in rest.items() if p != person for f in L]
            used = 0
            for i, r in enumerate(fr):
                if r is None:
                    continue
                ts, f = r
                g = type(f)(**{**f.__dict__, "track_id": 1, "neutral_from": -1})
                nr(FramePacket(index=i, pts=i, time_base=Fraction(1, 30), timestamp=ts,
                               image=np.zeros((4, 4, 3), np.uint8), faces=[g]))
                if g.neutral_from < 0 or i % a.every:
                    continue
                used += 1
                ref = fr[g.neutral_from][1]
                pick = [others[k] for k in rng.choice(len(others), a.impostors, replace=False)]
                for key, view in (("whole", lambda x: x.neutral), ("face_only", face_only)):
                    codes = identify(np.stack([view(f), view(ref)] + [view(o) for o in pick]))
                    sims = codes[1:] @ codes[0]
                    pairs[key][0].append(float(sims[0]))
                    pairs[key][1].extend(float(s) for s in sims[1:])
            per_clip[name] = {"frames": len(fr), "frames_using_a_reference_sampled": used}
    res = {**run_header(a.model), "min_identity_shipped": chosen, "frames": frames, "clips": per_clip,
           "whole_neutral_face": summary(np.array(pairs["whole"][0]), np.array(pairs["whole"][1]), chosen),
           "face_only": summary(np.array(pairs["face_only"][0]), np.array(pairs["face_only"][1]), chosen)}
    write_result(a.out, res, t0)
    for key in ("whole_neutral_face", "face_only"):
        s = res[key]
        t = s["at_threshold"][f"{chosen:.2f}"]
        print(f"{key}: AUC {s['auc']}, at {chosen}: same person refused {t['same_person_refused']:.3f}, "
              f"other people accepted {t['other_person_accepted']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
