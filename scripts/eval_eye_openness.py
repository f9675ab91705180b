#!/usr/bin/env python3
"""Does the eye-openness score tell open eyes from closed ones, and does the neutral reference stop using closed-eyed
frames? (MODEL_CARD.md, experiment 36)

1. **Labels** (``benchmarks/eye_labels.csv``: 350 frames of the 7 expressive held-out clips and the 12 posed-span
   clips, labelled by eye from levelled strips of both eyes: ``open`` (iris shown), ``closed`` (no iris), ``neither``
   (narrowed, a wink, occluded, blurred)). Each clip runs through the pipeline (detector, tracker; no model
   needed for the landmarks) and :func:`realtime.eyes.eye_openness` scores its largest face on every frame.
   Reported, per set and together: the ROC AUC of open against closed and of open against the rest, for the
   score divided by its clip's median (all frames read) and for the pipeline's causal rule (divided by the
   ``eyes_percentile`` of the track's last ``eyes_window`` scores so far); and the share of each label kept at
   several ``min_eyes``.
2. **References** (with ``--neutralize``): the same clips (held-out ones to ``--max-frames``, span clips to the
   end of their last span) through the pipeline with ``--neutralize``, once with the eye check off
   (``min_eyes`` 0) and once as shipped. For each reference frame used (``Face.neutral_from``), its score over
   its clip's median; a reference below ``--closed-below`` (0.75; label-free, from part 1) counts as closed-eyed.
   Reported: references used, closed-eyed ones, and frames that used them.

Usage::

    python scripts/eval_eye_openness.py [--neutralize] --out J
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import run_header, write_result  # noqa: E402
from eval_reference_identity import auc  # noqa: E402
from eval_spans import find_clip, unlabelled_spans  # noqa: E402

from realtime.eyes import UsualEyes, eye_openness  # noqa: E402
from realtime.neutral_reference import NeutralReference  # noqa: E402

THRESHOLDS = (0.6, 0.65, 0.7, 0.75, 0.8)


def causal(scores: "list[float]", window: int, q: float) -> np.ndarray:
    """Each score over its track's usual openness so far (:class:`realtime.eyes.UsualEyes`, the pipeline's rule;
    NaN where the score is NaN)."""
    usual = UsualEyes(window, q)
    return np.array([v / u if np.isfinite(v) else np.nan for v, u in ((v, usual.update(v)) for v in scores)])


def label_report(ratio: np.ndarray, eyes: np.ndarray) -> dict:
    ok = np.isfinite(ratio)
    r, e = ratio[ok], eyes[ok]
    rep = {"frames": int(len(r)), "open": int((e == "open").sum()), "closed": int((e == "closed").sum()),
           "neither": int((e == "neither").sum()), "not_measured": int((~ok).sum())}
    if rep["open"] and rep["closed"]:
        rep["auc_open_vs_closed"] = round(auc(r[e == "open"], r[e == "closed"]), 4)
        rep["auc_open_vs_rest"] = round(auc(r[e == "open"], r[e != "open"]), 4)
    rep["kept_at_min_eyes"] = {f"{t:.2f}": {k: round(float(np.mean(r[e == k] >= t)), 4)
                                            for k in ("open", "closed", "neither") if (e == k).any()}
                               for t in THRESHOLDS}
    return rep


def scores_of(an, path: Path, n: int) -> "tuple[list[float], list]":
    """Eye openness of the largest face on each of the first ``n`` frames (NaN: no face), and the faces."""
    sc, faces = [], []
    for p in an.process_video(path, max_frames=n):
        f = p.largest_face if p.faces else None
        sc.append(eye_openness(p.image, f.landmarks) if f is not None else np.nan)
        faces.append(f)
    return sc, faces


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--labels", type=Path, default=ROOT / "benchmarks" / "eye_labels.csv")
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--spans", type=Path, default=ROOT / "training" / "video_spans.csv")
    ap.add_argument("--span-labels", type=Path, default=ROOT / "training" / "video_labels.csv")
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--neutralize", action="store_true", help="also count closed-eyed references used (part 2)")
    ap.add_argument("--closed-below", type=float, default=0.75)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    from realtime.analyzer import Analyzer

    t0 = time.perf_counter()
    if not (a.shared / "data").is_dir():
        raise SystemExit(f"{a.shared}: no shared data")
    rule = NeutralReference()
    labels = list(csv.DictReader(a.labels.open()))
    length: dict = {}
    for r in labels:
        length[r["clip"]] = max(length.get(r["clip"], 0), int(r["frame"]) + 1)
    with Analyzer(a.model, backend="onnxruntime") as an:
        scores = {c: scores_of(an, a.shared / "data" / c, n)[0] for c, n in sorted(length.items())}
    over_median = {c: np.array(sc) / np.nanmedian(sc) for c, sc in scores.items()}  # once per clip
    live = {c: causal(sc, rule.eyes_window, rule.eyes_percentile) for c, sc in scores.items()}
    sets: dict = {}
    for r in labels:
        n = int(r["frame"])
        for key in (r["set"], "all"):
            s = sets.setdefault(key, {"median": [], "causal": [], "eyes": []})
            s["median"].append(over_median[r["clip"]][n])
            s["causal"].append(live[r["clip"]][n])
            s["eyes"].append(r["eyes"])
    res = {**run_header(a.model), "rule": {"min_eyes": rule.min_eyes, "eyes_percentile": rule.eyes_percentile,
                                           "eyes_window": rule.eyes_window}, "labels": {}}
    for key, s in sets.items():
        e = np.array(s["eyes"])
        res["labels"][key] = {"over_clip_median": label_report(np.array(s["median"]), e),
                              "causal_rule": label_report(np.array(s["causal"]), e)}
        print(key, "AUC open/closed: clip median", res["labels"][key]["over_clip_median"].get("auc_open_vs_closed"),
              "causal", res["labels"][key]["causal_rule"].get("auc_open_vs_closed"), flush=True)

    if a.neutralize:
        clips = [(r["clip"], a.shared / "data" / r["clip"], a.max_frames)
                 for r in csv.DictReader(a.clips.open()) if r["kind"] == "expressive"]
        ends: dict = {}
        for r in unlabelled_spans(a.spans, a.span_labels):
            ends[r["clip"]] = max(ends.get(r["clip"], 0), int(r["end"]) + 1)
        clips += [(c, find_clip(a.shared, c), n) for c, n in sorted(ends.items())]
        res["references"] = {"closed_below": a.closed_below}
        for name, settings in (("eye_check_off", {"min_eyes": 0.0}), ("shipped", {})):
            used: Counter = Counter()
            frames = 0
            with Analyzer(a.model, backend="onnxruntime", neutralize=True, neutral_reference=settings) as an:
                for clip, path, n in clips:
                    sc, faces = scores_of(an, path, n)
                    med = np.nanmedian(sc)
                    for f in faces:
                        if f is not None and f.neutral_from >= 0:
                            used[(clip, f.neutral_from, round(float(sc[f.neutral_from] / med), 3))] += 1
                    frames += len(faces)
            closed = {k: c for k, c in used.items() if k[2] < a.closed_below}
            res["references"][name] = {
                "frames": frames, "references_used": len(used), "frames_using_a_reference": int(sum(used.values())),
                "closed_eyed_references": len(closed), "frames_using_them": int(sum(closed.values())),
                "closed_eyed": [{"clip": k[0], "frame": k[1], "ratio": k[2], "frames": c} for k, c in closed.items()]}
            print(name, {k: v for k, v in res["references"][name].items() if k != "closed_eyed"}, flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
