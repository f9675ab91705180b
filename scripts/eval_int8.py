#!/usr/bin/env python3
"""How far does ``--precision int8`` move the shipped model's readings from FP32? (docs/engines.md)

Runs the pipeline (``realtime.Analyzer``, as ``facecycle process`` does) on each clip of ``--clips`` twice in one
process, FP32 and INT8 (ONNX Runtime static quantization, ``engines/quantize.py``, calibrated on ``--calibration``,
a clip of another person), and reports per clip: frames whose top emotion agrees, the largest and median
difference of the emotion probabilities and of ``expr_intensity``, the cosine of the expression codes and of the
neutralizing flows (what ``--neutralize`` warps with), the clip's reading (argmax of the mean ``emotion_*``) both
ways; and the pipeline's frames per second both ways (one run each, alternating clip by clip; the spread shows
across clips).

Usage::

    python scripts/eval_int8.py --clips benchmarks/heldout_clips.csv \\
        --calibration ../shared/data/videos/videoretalking_face_3.mp4 --max-frames 150 --out J
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime import Analyzer  # noqa: E402
from realtime.types import EMOTIONS  # noqa: E402


def read_clip(an: Analyzer, path: Path, max_frames: int) -> dict:
    """Per frame, the largest face's emotions, intensity, code and flow (frames without a face skipped)."""
    emo, inten, code, flow, frames = [], [], [], [], []
    t = time.perf_counter()
    n = 0
    for p in an.process_video(str(path), max_frames=max_frames):
        n += 1
        f = p.largest_face
        if f is None or f.emotions is None:
            continue
        frames.append(p.index)
        emo.append(f.emotions)
        inten.append(f.intensity)
        code.append(f.code)
        flow.append(f.flow.ravel())
    return {"frames": frames, "emotions": np.array(emo), "intensity": np.array(inten), "code": np.array(code),
            "flow": np.array(flow), "fps": n / (time.perf_counter() - t)}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine of the rows of two (N, D) arrays."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", required=True, help="CSV with clip (relative to --shared/data) and label columns")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--calibration", required=True, help="video of faces for the int8 calibration")
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import onnxruntime

    data = Path(args.shared) / "data"
    rows = list(csv.DictReader(open(args.clips)))
    fp32 = Analyzer(precision="fp32")
    int8 = Analyzer(precision="int8", calibration=args.calibration)
    clips = []
    with fp32, int8:
        read_clip(int8, data / rows[0]["clip"], 10)  # quantize (or load from the cache) before timing
        for r in rows:
            a = read_clip(fp32, data / r["clip"], args.max_frames)
            b = read_clip(int8, data / r["clip"], args.max_frames)
            both = sorted(set(a["frames"]) & set(b["frames"]))
            ia = [a["frames"].index(i) for i in both]
            ib = [b["frames"].index(i) for i in both]
            ea, eb = a["emotions"][ia], b["emotions"][ib]
            cos, fcos = (cosine(a[k][ia], b[k][ib]) for k in ("code", "flow"))
            dp = np.abs(ea - eb)
            di = np.abs(a["intensity"][ia] - b["intensity"][ib])
            clips.append({
                "clip": r["clip"], "label": r["label"], "frames_compared": len(both),
                "top_emotion_agrees": float(np.mean(ea.argmax(1) == eb.argmax(1))),
                "emotion_prob_diff_max": float(dp.max()), "emotion_prob_diff_median": float(np.median(dp)),
                "intensity_diff_max": float(di.max()), "intensity_diff_median": float(np.median(di)),
                "code_cosine_min": float(cos.min()), "code_cosine_median": float(np.median(cos)),
                "flow_cosine_min": float(fcos.min()), "flow_cosine_median": float(np.median(fcos)),
                "reading_fp32": EMOTIONS[int(ea.mean(0).argmax())], "reading_int8": EMOTIONS[int(eb.mean(0).argmax())],
                "fps_fp32": a["fps"], "fps_int8": b["fps"]})
            c = clips[-1]
            print(f"{Path(r['clip']).name}: agree {c['top_emotion_agrees']:.3f}, "
                  f"|dp| max {c['emotion_prob_diff_max']:.3f}, code cos min {c['code_cosine_min']:.4f}, "
                  f"flow cos min {c['flow_cosine_min']:.4f}, {c['reading_fp32']} / {c['reading_int8']}, "
                  f"{c['fps_fp32']:.1f} / {c['fps_int8']:.1f} fps", flush=True)
    out = {
        "what": "the shipped model read through the pipeline at fp32 and int8 (ONNX Runtime CPU), same frames",
        "onnxruntime": onnxruntime.__version__, "python": platform.python_version(), "machine": platform.processor(),
        "calibration": args.calibration, "max_frames": args.max_frames,
        "clips": clips,
        "summary": {
            "frames_top_emotion_agrees": float(np.average([c["top_emotion_agrees"] for c in clips],
                                                          weights=[c["frames_compared"] for c in clips])),
            "clips_read_the_same": sum(c["reading_fp32"] == c["reading_int8"] for c in clips),
            "clips": len(clips),
            "emotion_prob_diff_max": max(c["emotion_prob_diff_max"] for c in clips),
            "code_cosine_min": min(c["code_cosine_min"] for c in clips),
            "flow_cosine_min": min(c["flow_cosine_min"] for c in clips),
            "flow_cosine_median": float(np.median([c["flow_cosine_median"] for c in clips])),
            "fps_fp32_median": float(np.median([c["fps_fp32"] for c in clips])),
            "fps_int8_median": float(np.median([c["fps_int8"] for c in clips])),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
