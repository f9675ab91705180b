#!/usr/bin/env python3
"""How well the shipped identity code tells people apart, on held-out clips of people never trained on.

For every held-out clip (``benchmarks/heldout_clips.csv``: 12 clips, 8 people, three of them in two or three
clips), every ``--every``-th of the first ``--max-frames`` frames: the largest face's identity code (the
pipeline's ``--reid`` / ``identity`` output) and, as baselines, the HOG of its 64-px grey crop (the crude
same-person check of ``eval_expression.py``) and its 32-px grey pixels. Pairs of frames from *different clips*
are scored by cosine similarity. Frames of one clip are near copies and would make any feature look good, so
those pairs are left out. Reported: ROC AUC (same person vs different people), the equal error rate, and the
rate of same-person pairs accepted at the threshold that accepts 1 % of different-person pairs.

    python scripts/identity_check.py --out benchmarks/DIR/identity_check.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def collect(clips: Path, shared: Path, max_frames: int, every: int, model: "Path | None" = None):
    """(identity codes, HOG features, pixel features, person, clip index) of the largest face per kept frame."""
    import cv2
    from eval_expression import hog_feature

    from realtime.analyzer import Analyzer
    from realtime.crops import crop_square

    ids, hogs, pix, who, clip = [], [], [], [], []
    rows = list(csv.DictReader(open(clips)))
    with Analyzer(model, backend="onnxruntime", identity=True) as an:
        for c, r in enumerate(rows):
            for n, p in enumerate(an.process_video(shared / "data" / r["clip"], max_frames=max_frames)):
                if not p.faces or n % every:
                    continue
                f = p.largest_face
                if f.identity is None:
                    raise SystemExit("the default model has no identity code")
                rgb = np.ascontiguousarray(crop_square(p.image, f.crop_box, 64)[..., ::-1])
                ids.append(f.identity)
                hogs.append(hog_feature(rgb))
                g = cv2.cvtColor(cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
                pix.append(g.astype(np.float32).ravel() - g.mean())
                who.append(r["person"])
                clip.append(c)
    return np.stack(ids), np.stack(hogs), np.stack(pix), np.array(who), np.array(clip)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC = P(a random positive scores above a random negative), ties count half (Mann-Whitney)."""
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def scores(feat: np.ndarray, who: np.ndarray, clip: np.ndarray) -> dict:
    """Verification figures of cosine similarity between frames of different clips."""
    f = feat / np.maximum(np.linalg.norm(feat, axis=1, keepdims=True), 1e-9)
    sim = f @ f.T
    iu = np.triu_indices(len(f), 1)
    cross = clip[iu[0]] != clip[iu[1]]
    same = (who[iu[0]] == who[iu[1]])[cross]
    s = sim[iu][cross]
    pos, neg = s[same], s[~same]
    thr = np.sort(neg)[::-1]
    far = np.arange(1, len(thr) + 1) / len(thr)
    frr = np.searchsorted(np.sort(pos), thr, side="left") / len(pos)  # same-person pairs below each threshold
    k = int(np.argmin(np.abs(far - frr)))
    t1 = np.quantile(neg, 0.99)
    return {"auc": auc(pos, neg), "eer": float((far[k] + frr[k]) / 2),
            "tar_at_far_1pct": float((pos > t1).mean()),
            "same_person_pairs": int(len(pos)), "different_person_pairs": int(len(neg))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="exported model folder (default: the shipped one)")
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--max-frames", type=int, default=200)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    ids, hogs, pix, who, clip = collect(a.clips, a.shared, a.max_frames, a.every, a.model)
    res = {"what": __doc__.splitlines()[0], "model": str(a.model or "shipped default"),
           "frames": int(len(ids)), "people": int(len(set(who))),
           "clips": int(len(set(clip.tolist()))), "every": a.every, "max_frames": a.max_frames,
           "identity_code": scores(ids, who, clip), "hog_baseline": scores(hogs, who, clip),
           "pixels_baseline": scores(pix, who, clip)}
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
