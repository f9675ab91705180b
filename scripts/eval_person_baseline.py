#!/usr/bin/env python3
"""The person baseline (the ``rel_*`` columns) causal and read ahead, on real clips (MODEL_CARD.md experiment 41).

``realtime.baseline.NeutralBaseline`` measures each face against its track's own neutral. Causally it has a
warm-up (15 frames and 1 s without ``rel_*`` values) and a face that is expressive from its first frame becomes
its own neutral until the person rests. ``Analyzer(baseline_lookahead=True)`` (``--baseline-lookahead``) reads a
file twice and starts each track from its first 900 frames. This script runs both over

* the hand-labelled spans of ``training/video_spans.csv`` (rest and strong expressions of 12 people of the
  training video; the model never had labels for most of them, and the spans test the baseline, not the head):
  per span, the share of its frames with a relative value (``baseline_ready``), the share with
  ``rel_intensity`` >= ``--threshold`` (frames without a value count as below it) and the mean ``rel_intensity``;
* the held-out clips (``benchmarks/heldout_clips.csv``; whole clips up to ``--max-frames``): on people talking
  with a neutral face, ``rel_intensity`` >= the threshold is a false alarm; on clips expressive throughout,
  there is no rest to measure against in either mode.

Every frame of each clip is read whole by ``process_video`` (no neutral faces); the largest face's values are kept.

Usage::

    python scripts/eval_person_baseline.py --out benchmarks/DIR/person_baseline.json
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import run_header, write_result  # noqa: E402
from eval_spans import find_clip  # noqa: E402

MODES = {"causal": False, "ahead": True}


def read_clip(an, path: Path, max_frames: int, ahead: bool) -> dict:
    """Frame index -> (rel_intensity or NaN, baseline_ready, expr_intensity) of the largest face."""
    out = {}
    for n, p in enumerate(an.process_video(path, max_frames=max_frames, baseline_lookahead=ahead)):
        if p.faces:
            f = p.largest_face
            out[n] = (f.rel_intensity if f.baseline_ready else math.nan, bool(f.baseline_ready), f.intensity)
    return out


def span_stats(frames: dict, idx, thr: float) -> dict:
    vals = [frames[i] for i in idx if i in frames]
    rel = np.array([v[0] for v in vals], np.float64)
    ready = np.array([v[1] for v in vals], bool)
    return {"frames": len(vals), "ready_share": round(float(ready.mean()), 4) if len(vals) else None,
            "above_threshold_share": round(float(np.mean(np.nan_to_num(rel, nan=0.0) >= thr)), 4)
            if len(vals) else None,
            "rel_intensity_mean_ready": round(float(np.nanmean(rel)), 4) if ready.any() else None,
            "expr_intensity_mean": round(float(np.mean([v[2] for v in vals])), 4) if len(vals) else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--spans", type=Path, default=ROOT / "training" / "video_spans.csv")
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--max-frames", type=int, default=900, help="frames read per clip (default 900)")
    ap.add_argument("--threshold", type=float, default=0.3, help="rel_intensity counted as an expression")
    ap.add_argument("--no-neutral-cap", action="store_true",
                    help="no cap on a neutral's intensity (realtime.baseline.MAX_NEUTRAL; experiment 54's 'before')")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    from realtime import baseline
    from realtime.analyzer import Analyzer

    if a.no_neutral_cap:
        baseline.MAX_NEUTRAL = None  # read by each run when it starts

    t0 = time.perf_counter()
    spans = [r for r in csv.DictReader(a.spans.open()) if r["start"]]
    clips = list(csv.DictReader(a.clips.open()))
    res = {**run_header(a.model), "what": __doc__.splitlines()[0], "threshold": a.threshold,
           "max_frames": a.max_frames, "max_neutral": baseline.MAX_NEUTRAL}
    with Analyzer(a.model, backend="onnxruntime") as an:
        for mode, ahead in MODES.items():
            t = time.perf_counter()
            read = {}
            for stem in dict.fromkeys(r["clip"] for r in spans):
                read[stem] = read_clip(an, find_clip(a.shared, stem), a.max_frames, ahead)
            rows = []
            for r in spans:
                s, e = int(r["start"]), int(r["end"])
                rows.append({"clip": r["clip"], "label": r["label"], "start": s, "end": e,
                             **span_stats(read[r["clip"]], range(s, e + 1), a.threshold)})
            expressive = [x for x in rows if x["label"] != "neutral" and x["frames"]]
            rest = [x for x in rows if x["label"] == "neutral" and x["frames"]]
            held = []
            for c in clips:
                fr = read_clip(an, a.shared / "data" / c["clip"], a.max_frames, ahead)
                held.append({"clip": c["clip"], "kind": c["kind"],
                             **span_stats(fr, sorted(fr), a.threshold)})
            mean = lambda xs, k: round(float(np.mean([x[k] for x in xs])), 4) if xs else None  # noqa: E731
            res[mode] = {
                "spans_expressive": {"spans": len(expressive), "ready_share": mean(expressive, "ready_share"),
                                     "above_threshold_share": mean(expressive, "above_threshold_share"),
                                     "spans_mostly_above": sum(x["above_threshold_share"] >= 0.5
                                                               for x in expressive)},
                "spans_rest": {"spans": len(rest), "above_threshold_share": mean(rest, "above_threshold_share")},
                "heldout_neutral_talkers_above_threshold_share": mean(
                    [h for h in held if h["kind"] == "neutral"], "above_threshold_share"),
                "heldout_expressive_above_threshold_share": mean(
                    [h for h in held if h["kind"] != "neutral"], "above_threshold_share"),
                "seconds": round(time.perf_counter() - t, 1), "span_rows": rows, "heldout_rows": held}
            print(mode, {k: v for k, v in res[mode].items() if not k.endswith("rows")}, flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
