#!/usr/bin/env python3
"""Do readings survive a tilted head or a mirrored video? (docs/pipeline.md, "Tilted heads", "Mirror-averaged
detection")

For each clip of ``--clips`` (default ``benchmarks/heldout_clips.csv``: clip, label), its first ``--frames`` frames
are read by the pipeline (``realtime.Analyzer``, default settings) as they are, then again:

* rolled by ``+deg`` and ``-deg`` about each frame's face-box centre (from the first reading; frames without a face
  about the picture's centre), borders reflected;
* mirrored left-right.

Per clip and condition: the emotion that the mean of the largest face's probabilities names, the labelled class's
mean probability, the median ``expr_intensity``, and ``agree``: the share of frames (a face in both readings) whose
top emotion is the original reading's. Totals: how many (clip, roll) readings changed the clip's named emotion, and
the mirrored frames' agreement. ``--no-level`` reads with upright crops only (the pipeline before tilted heads'
crops were turned); ``--mirror-detect`` with mirror-averaged detection.

Usage::

    python scripts/eval_tilt_mirror.py --out benchmarks/.../tilt_mirror.json [--no-level] [--mirror-detect]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime import Analyzer  # noqa: E402
from realtime.sources import FrameSource  # noqa: E402
from realtime.types import EMOTIONS  # noqa: E402


def read_frames(path: Path, n: int) -> tuple:
    """The first ``n`` frames (BGR) of ``path`` and its frame rate."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or 25)
        out = []
        for fr in c.decode(s):
            out.append(fr.to_ndarray(format="bgr24"))
            if len(out) >= n:
                break
    return out, fps


def read(an: Analyzer, frames: List[np.ndarray], fps: float) -> List[Optional[dict]]:
    """Per frame, the largest face's probabilities, intensity and box (None without a face)."""
    rows: List[Optional[dict]] = []
    for p in an.process_video(FrameSource(frames, fps=fps)):
        if not p.faces:
            rows.append(None)
            continue
        f = p.largest_face
        rows.append({"e": np.asarray(f.emotions, float), "i": float(f.intensity), "box": np.asarray(f.box, float)})
    return rows


def rolled(frames: List[np.ndarray], base: List[Optional[dict]], deg: float) -> List[np.ndarray]:
    out = []
    for f, r in zip(frames, base, strict=True):
        h, w = f.shape[:2]
        c = ((r["box"][0] + r["box"][2]) / 2, (r["box"][1] + r["box"][3]) / 2) if r else (w / 2, h / 2)
        m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), deg, 1.0)
        out.append(cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return out


def summary(rows: List[Optional[dict]], label: str, base: Optional[List[Optional[dict]]] = None) -> Dict:
    ok = [r for r in rows if r is not None]
    if not ok:
        return {"faces": 0}
    m = np.mean([r["e"] for r in ok], 0)
    d = {"faces": len(ok), "named": EMOTIONS[int(m.argmax())], "p_label": round(float(m[EMOTIONS.index(label)]), 4),
         "median_intensity": round(float(np.median([r["i"] for r in ok])), 4)}
    if base is not None:
        pairs = [(a, b) for a, b in zip(base, rows, strict=True) if a is not None and b is not None]
        d["agree"] = round(float(np.mean([a["e"].argmax() == b["e"].argmax() for a, b in pairs])), 4) if pairs \
            else None
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--deg", type=float, default=30.0)
    ap.add_argument("--no-level", action="store_true", help="upright crops only")
    ap.add_argument("--mirror-detect", action="store_true")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    with open(a.clips, newline="") as f:
        clips = [(r["clip"], r["label"]) for r in csv.DictReader(f)]
    t0 = time.time()
    res: Dict[str, Dict] = {}
    with Analyzer(backend="onnxruntime", mirror_detect=a.mirror_detect) as an:
        if a.no_level:
            an.inference.level = (90.0, 90.0)
        settings = {k: an.describe()[k] for k in ("crop_level_deg", "crop_scale", "detect_every")}
        settings["mirror_detect"] = an.detector.mirror_average
        for clip, label in clips:
            path = a.shared / "data" / clip
            if not path.is_file():
                sys.exit(f"{path}: not found (--shared)")
            frames, fps = read_frames(path, a.frames)
            base = read(an, frames, fps)
            res[clip] = {"label": label, "upright": summary(base, label)}
            for name, fs in ((f"roll{a.deg:+g}", rolled(frames, base, a.deg)),
                             (f"roll{-a.deg:+g}", rolled(frames, base, -a.deg)),
                             ("mirror", [np.ascontiguousarray(f[:, ::-1]) for f in frames])):
                res[clip][name] = summary(read(an, fs, fps), label, base)
            print(clip, json.dumps(res[clip]), flush=True)
    if not res:
        sys.exit(f"{a.clips}: no clips listed")
    rolls = [k for k in next(iter(res.values())) if k.startswith("roll")]
    changed = sum(v[k].get("named") != v["upright"].get("named") for v in res.values() for k in rolls)
    mirror = [v["mirror"]["agree"] for v in res.values() if v["mirror"].get("agree") is not None]
    out = {"script": "scripts/eval_tilt_mirror.py", "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
           "frames_per_clip": a.frames, "settings": settings, "seconds": round(time.time() - t0, 1),
           "summary": {"clips": len(res), "named_correctly_upright": sum(v["upright"].get("named") == v["label"]
                                                                         for v in res.values()),
                       "roll_readings": len(res) * len(rolls), "roll_readings_changed": changed,
                       "mirror_agree_min": min(mirror) if mirror else None,
                       "mirror_agree_median": float(np.median(mirror)) if mirror else None},
           "clips": res}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["summary"]))


if __name__ == "__main__":
    main()
