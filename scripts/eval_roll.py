#!/usr/bin/env python3
"""Would levelling the eyes (de-rolling each face crop) read held-out people better? (MODEL_CARD.md, exp. 24)

The pipeline cuts axis-aligned squares around the detector's box; a tilted head reaches the model tilted.
This script measures, with the detector's eye landmarks (CenterFace, as the pipeline runs it):

- the head roll (angle of the line through the eyes) of a seeded sample of FER-2013 train stills (blown up to
  192 px so that the detector finds them) and of the largest face of every ``--every``-th of the first
  ``--max-frames`` frames of each clip of each ``--clips`` CSV;
- the shipped model's reading of those frames cut as the pipeline cuts them, and cut from the frame rotated
  about the crop's centre by ``frac`` × the roll (1 = eyes level), for each ``--fracs`` value: frame accuracy,
  clips named (argmax of the mean probabilities) and FER-2013-style per-clip figures from
  ``eval_detail_px.clip_report``.

Usage::

    python scripts/eval_roll.py --fer ../shared/data/fer2013 \\
        --clips benchmarks/heldout_clips.csv benchmarks/trained_expressive_clips.csv --out J
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import clip_args, clip_report, load_model, probabilities, run_header, write_result  # noqa: E402

from realtime.crops import crop_square  # noqa: E402
from realtime.types import EMOTIONS  # noqa: E402


def roll_deg(landmarks: np.ndarray) -> float:
    """Head roll in degrees from (5, 2) landmarks (x, y; left eye, right eye first): positive when the
    image's right-hand eye sits lower."""
    v = np.asarray(landmarks[1], np.float64) - np.asarray(landmarks[0], np.float64)
    return float(np.degrees(np.arctan2(v[1], v[0])))


def derolled_crop(image: np.ndarray, square: "tuple[int, int, int]", angle: float, size: int) -> np.ndarray:
    """``crop_square`` of ``image`` rotated by ``angle`` degrees (OpenCV's sense) about the square's centre:
    (size, size, C) uint8, the colour order of ``image``; borders replicated."""
    x0, y0, s = (int(v) for v in square)
    m = cv2.getRotationMatrix2D((x0 + s / 2.0, y0 + s / 2.0), angle, 1.0)
    m[:, 2] -= (x0, y0)
    patch = cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)


def fer_rolls(fer: Path, n: int, seed: int = 0) -> np.ndarray:
    from realtime.detectors import create_detector

    det = create_detector("centerface")
    files = sorted((fer / "train").glob("*/*"))
    out = []
    for f in random.Random(seed).sample(files, min(n, len(files))):
        g = cv2.resize(cv2.imread(str(f)), (192, 192), interpolation=cv2.INTER_LINEAR)
        d = det.detect(g)
        if len(d.boxes):
            out.append(roll_deg(d.landmarks[int(np.argmax(d.scores))]))
    det.close()
    return np.array(out)


def collect(model_dir: Path, clips_csv: Path, shared: Path, every: int, max_frames: int, fracs: list) -> dict:
    from realtime.analyzer import Analyzer

    rows = [r for r in csv.DictReader(clips_csv.open()) if (shared / "data" / r["clip"]).is_file()]
    crops = {f: [] for f in fracs}
    labels, clip, rolls = [], [], []
    with Analyzer(model_dir, backend="onnxruntime") as an:
        size = an.inference.size
        for ci, r in enumerate(rows):
            for n, p in enumerate(an.process_video(shared / "data" / r["clip"], max_frames=max_frames)):
                if n % every or not p.faces:
                    continue
                face = p.largest_face
                roll = roll_deg(face.landmarks)
                for f in fracs:
                    c = (crop_square(p.image, face.crop_box, size) if f == 0
                         else derolled_crop(p.image, face.crop_box, f * roll, size))
                    crops[f].append(np.ascontiguousarray(c[..., ::-1]))
                labels.append(EMOTIONS.index(r["label"]))
                clip.append(ci)
                rolls.append(roll)
    return {"crops": {f: np.stack(v) for f, v in crops.items()}, "labels": np.array(labels),
            "clip": np.array(clip), "rows": rows, "rolls": np.array(rolls)}


def abs_stats(r: np.ndarray) -> dict:
    a = np.abs(r)
    return {"n": int(len(r)), "median_abs_deg": round(float(np.median(a)), 2),
            "p75_abs_deg": round(float(np.percentile(a, 75)), 2), "p90_abs_deg": round(float(np.percentile(a, 90)), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    clip_args(ap)
    ap.add_argument("--fer-sample", type=int, default=600)
    ap.add_argument("--fracs", default="0,0.5,1")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    fracs = [float(f) for f in a.fracs.split(",")]
    model, head = load_model(a.model)
    res = {**run_header(a.model), "roll": {"fer2013_train_sample": abs_stats(fer_rolls(a.fer, a.fer_sample))},
           "derolled": {}}
    for c in a.clips:
        d = collect(a.model, c, a.shared, a.every, a.max_frames, fracs)
        res["roll"][c.name] = abs_stats(d["rolls"])
        res["roll"][c.name]["clips"] = {r["clip"]: abs_stats(d["rolls"][d["clip"] == i])
                                        for i, r in enumerate(d["rows"])}
        for f in fracs:
            rep = clip_report(probabilities(model, head, d["crops"][f]), d)
            res["derolled"].setdefault(str(f), {})[c.name] = rep
            print(c.name, f, round(rep["frame_accuracy"], 4), rep["clips_named"], flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
