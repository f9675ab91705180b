#!/usr/bin/env python3
"""Does the emotion reading depend on which face detector found the face?

The model cuts each face at ``crop_scale`` (1.03) x the longer side of the detector's box, centred on the box: a
framing measured for the default detector, CenterFace, on FER-2013's stills (MODEL_CARD.md, "Framing measured").
YuNet and SCRFD (``--detector yunet`` / ``insightface``) draw their boxes differently, so the same face would reach
the model framed otherwise. For every clip of ``--clips`` (first ``--frames`` frames) this runs the pipeline once
per detector (the shipped model, ONNX Runtime) and reports:

- per detector, against CenterFace on the frames where both found the face (IoU > 0.3): the ratio of the boxes'
  longer sides and the offset of the box centre (in CenterFace box sides, x and y), as medians;
- per detector and clip: the emotion named by the mean of the ``emotion_*`` probabilities (as the acceptance test
  reads a clip), the share of frames whose top emotion is CenterFace's, and whether the clip's label is named.

Usage::

    python scripts/eval_detector_framing.py \\
        --clips benchmarks/heldout_clips.csv benchmarks/trained_expressive_clips.csv \\
        --out benchmarks/DIR/detector_framing.json
"""
from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import write_result  # noqa: E402

from realtime.types import EMOTIONS  # noqa: E402


def read_clip(an, path: Path, frames: int) -> List[Optional[dict]]:
    """Per frame: the largest face's box and emotion probabilities (None where no face)."""
    out: List[Optional[dict]] = []
    for p in an.process_video(str(path), max_frames=frames):
        if not p.faces:
            out.append(None)
            continue
        f = max(p.faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        out.append({"box": np.asarray(f.box[:4], np.float64), "p": np.asarray(f.emotions, np.float64)})
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def geometry(ref: List[Optional[dict]], other: List[Optional[dict]]) -> Dict[str, list]:
    """Side ratios and centre offsets of ``other``'s boxes against ``ref``'s, frame by frame (both found)."""
    ratio, dx, dy = [], [], []
    for r, o in zip(ref, other, strict=False):
        if r is None or o is None or iou(r["box"], o["box"]) <= 0.3:
            continue
        rb, ob = r["box"], o["box"]
        rs, os_ = max(rb[2] - rb[0], rb[3] - rb[1]), max(ob[2] - ob[0], ob[3] - ob[1])
        ratio.append(os_ / rs)
        dx.append(((ob[0] + ob[2]) - (rb[0] + rb[2])) / 2 / rs)
        dy.append(((ob[1] + ob[3]) - (rb[1] + rb[3])) / 2 / rs)
    return {"ratio": ratio, "dx": dx, "dy": dy}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, nargs="+", required=True)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--model", type=Path, default=None, help="exported model folder (default: the shipped one)")
    ap.add_argument("--detectors", default="centerface,yunet,insightface")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    from realtime import Analyzer

    models = {"yunet": a.shared / "models" / "face_detection_yunet_2023mar.onnx",
              "insightface": a.shared / "models" / "scrfd_500m_bnkps.onnx"}
    dets = [d.strip() for d in a.detectors.split(",")]
    clips = []
    for table in a.clips:
        with open(table, newline="") as f:
            clips += [dict(r, table=table.name) for r in csv.DictReader(f)]
    t0 = time.perf_counter()
    reads: Dict[str, Dict[str, List[Optional[dict]]]] = {}
    for d in dets:
        with Analyzer(model=a.model, detector=d, detector_model=models.get(d), threads=2) as an:
            reads[d] = {c["clip"]: read_clip(an, a.shared / "data" / c["clip"], a.frames) for c in clips}
        print(d, "read", flush=True)
    res: dict = {"script": "scripts/eval_detector_framing.py", "machine": platform.machine(),
                 "model": str(a.model or "shipped"), "frames": a.frames, "detectors": dets, "geometry": {},
                 "clips": [], "summary": {}}
    ref = dets[0]
    for d in dets[1:]:
        g = {"ratio": [], "dx": [], "dy": []}
        for c in clips:
            for k, v in geometry(reads[ref][c["clip"]], reads[d][c["clip"]]).items():
                g[k] += v
        res["geometry"][d] = {"frames": len(g["ratio"]), **{f"{k}_median": float(np.median(v)) if v else None
                                                              for k, v in g.items()},
                              "ratio_quartiles": [float(q) for q in np.percentile(g["ratio"], [25, 75])]
                              if g["ratio"] else None}
    for c in clips:
        row = {"clip": c["clip"], "label": c["label"], "table": c["table"]}
        base = reads[ref][c["clip"]]
        for d in dets:
            fr = reads[d][c["clip"]]
            ps = [f["p"] for f in fr if f is not None]
            mean = np.mean(ps, axis=0) if ps else None
            both = [(r, o) for r, o in zip(base, fr, strict=False) if r is not None and o is not None]
            named = EMOTIONS[int(np.argmax(mean))] if mean is not None else None
            row[d] = {"faces": len(ps), "named": named,
                      "mean": None if mean is None else dict(zip(EMOTIONS, np.round(mean, 4).tolist(), strict=True)),
                      "same_top_as_" + ref: float(np.mean([np.argmax(r["p"]) == np.argmax(o["p"]) for r, o in both]))
                      if both else None}
        res["clips"].append(row)
    for d in dets:
        named = [r[d]["named"] == r["label"] for r in res["clips"]]
        agree = [r[d]["same_top_as_" + ref] for r in res["clips"] if r[d]["same_top_as_" + ref] is not None]
        res["summary"][d] = {"clips_named": int(sum(named)), "clips": len(named),
                             "frames_same_top_as_" + ref: float(np.mean(agree)) if agree else None}
        print(d, res["summary"][d], res["geometry"].get(d), flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
