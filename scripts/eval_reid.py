#!/usr/bin/env python3
"""How often would ``--reid`` give a face back its own id, and how often another person's? (MODEL_CARD.md, exp. 31)

``realtime.reid.IdentityReID`` gives a new track the id of a face gone for less than ``window`` seconds when the
new face's identity code (its first frame) and the old id's running code (an exponential mean, 0.9 / 0.1) have a
cosine above ``threshold``. A new track starts after an occlusion longer than the tracker's lost buffer and
after every scene cut, so a false match mixes two people in one id's smoothing, person baseline and neutral
reference. This script measures both kinds of answer on real clips, through the pipeline (the shipped model's
identity graph, the largest face of each of the first ``--max-frames`` frames of every clip of ``--dirs`` with
at least ``--min-frames`` faces):

- **same shot**: a clip's running code over its first 60 faces against its last face (the person comes back in
  the same shot, as after an occlusion or a cut back);
- **same person, another clip**: against the first face of another clip of the same person (``PEOPLE``: groups
  checked by eye; the shared clips carry no person labels, so clips outside a group count as different people);
- **different people**: against the first face of every clip of another person.

Usage::

    python scripts/eval_reid.py --dirs ../shared/data/videos ../shared/data/videos_more --out J
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import write_result  # noqa: E402

from facecycle.files import VIDEO_SUFFIXES  # noqa: E402

#: people seen in more than one shared clip (a clip belongs to the group whose key its name contains)
PEOPLE = {"obama": ["obama"], "andrew": ["andrew"], "feifeili": ["feifeili"],
          "happyenglish": ["happyenglish", "edtalk_expression_source"], "furious": ["furious_talk"]}


def person(name: str) -> str:
    low = name.lower()
    return next((g for g, keys in PEOPLE.items() if any(k in low for k in keys)), name)


def unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-8)


def codes(clips: list, max_frames: int, model: "Path | None" = None) -> dict:
    """Clip name -> (N, D) identity codes of the largest face of each frame with a face."""
    from realtime.analyzer import Analyzer

    out = {}
    with Analyzer(model, backend="onnxruntime", identity=True, smooth=False) as an:
        for c in clips:
            out[c.name] = np.array([np.asarray(p.largest_face.identity, np.float32)
                                    for p in an.process_video(c, max_frames=max_frames) if p.faces])
    return out


def running(code_rows: np.ndarray) -> np.ndarray:
    """The reid's running code of an id: exponential mean (0.9 old, 0.1 new) of the unit codes, unit length."""
    c = None
    for v in code_rows:
        c = unit(v) if c is None else 0.9 * c + 0.1 * unit(v)
    return unit(c)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dirs", type=Path, nargs="+", required=True)
    ap.add_argument("--model", type=Path, default=None, help="exported model folder (default: the shipped one)")
    ap.add_argument("--only", type=Path, default=None,
                    help="a clips CSV (column clip): keep only those clips (e.g. the held-out people)")
    ap.add_argument("--max-frames", type=int, default=240)
    ap.add_argument("--min-frames", type=int, default=90)
    ap.add_argument("--thresholds", default="0.8,0.9,0.95,0.96,0.97,0.98")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    clips = sorted(p for d in a.dirs for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        print(f"error: no clips in {' '.join(map(str, a.dirs))}", file=sys.stderr)
        return 2
    if a.only is not None:
        keep = {Path(r["clip"]).name for r in csv.DictReader(open(a.only))}
        clips = [c for c in clips if c.name in keep]
    cs = {n: c for n, c in codes(clips, a.max_frames, a.model).items() if len(c) >= a.min_frames}
    old = {n: running(c[:60]) for n, c in cs.items()}
    same_shot = np.array([old[n] @ unit(c[-1]) for n, c in cs.items()])
    same_person, different = [], []
    for x, y in itertools.permutations(sorted(cs), 2):
        (same_person if person(x) == person(y) else different).append(float(old[x] @ unit(cs[y][0])))
    same_person, different = np.array(same_person), np.array(different)
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "model": str(a.model or "shipped default"),
           "only": str(a.only) if a.only else None, "clips": len(cs),
           "max_frames": a.max_frames, "pairs": {"same_shot": len(same_shot), "same_person_other_clip":
                                                 len(same_person), "different_people": len(different)},
           "cosine_percentiles": {k: dict(zip(("p1", "p5", "p50", "p95", "p99"),
                                              np.percentile(v, [1, 5, 50, 95, 99]).round(4).tolist(), strict=True))
                                  for k, v in (("same_shot", same_shot), ("same_person_other_clip", same_person),
                                               ("different_people", different))},
           "thresholds": {}}
    for t in (float(v) for v in a.thresholds.split(",")):
        r = {"same_shot_matched": round(float((same_shot > t).mean()), 4),
             "same_person_other_clip_matched": round(float((same_person > t).mean()), 4),
             "different_people_matched": round(float((different > t).mean()), 4)}
        res["thresholds"][f"{t:g}"] = r
        print(f"threshold {t:g}: {json.dumps(r)}", flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
