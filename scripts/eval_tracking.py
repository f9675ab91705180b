"""How far the tracked frames' geometry drifts from what the detector finds on the same frames.

Between detections (``detect_every`` N, default 5) :meth:`realtime.tracking.Tracker.propagate` moves each face by
optical flow. This reads each clip twice with the shipped model, smoothing off: with the detector on every frame
(the reference) and with the default ``detect_every``, and compares, on the frames the second run tracked (the
detector did not run), the landmarks (error over the inter-ocular distance), the head pose (degrees, the largest
of the three angles) and the box centre (over the box's side); and the emotion probabilities (the per-clip mean,
and the top emotion's agreement frame by frame). One face per clip (the largest).

Usage: python scripts/eval_tracking.py CLIP... [--frames 150] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime import Analyzer  # noqa: E402


def _read(clip: str, detect_every: int, frames: int) -> dict:
    rows = {}
    with Analyzer(detect_every=detect_every, smooth=False, neutral_reference=False) as an:
        for p in an.process_video(clip, max_frames=frames):
            if not p.faces:
                continue
            f = max(p.faces, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
            rows[p.index] = dict(lm=f.landmarks.copy(), box=f.box.copy(), pose=np.degrees(f.pose),
                                 emo=f.emotions.copy(), detected=bool(f.detected))
    return rows


def compare(clip: str, frames: int, detect_every: int) -> dict:
    t = time.perf_counter()
    ref = _read(clip, 1, frames)
    got = _read(clip, detect_every, frames)
    secs = time.perf_counter() - t
    both = sorted(set(ref) & set(got))
    tracked = [i for i in both if not got[i]["detected"]]
    lm, pose, centre, jump = [], [], [], []
    for i in tracked:
        r, g = ref[i], got[i]
        iod = float(np.linalg.norm(r["lm"][0] - r["lm"][1])) or 1.0
        lm.append(float(np.linalg.norm(g["lm"] - r["lm"], axis=1).mean() / iod))
        pose.append(float(np.abs(g["pose"] - r["pose"]).max()))
        side = float(max(r["box"][2] - r["box"][0], r["box"][3] - r["box"][1])) or 1.0
        centre.append(float(np.linalg.norm((g["box"][:2] + g["box"][2:] - r["box"][:2] - r["box"][2:]) / 2) / side))
    for a, b in zip(both[:-1], both[1:], strict=True):
        if b == a + 1:
            jump.append(float(np.abs(got[b]["pose"] - got[a]["pose"]).max()))
    mean_ref = np.mean([ref[i]["emo"] for i in both], 0) if both else np.zeros(7)
    mean_got = np.mean([got[i]["emo"] for i in both], 0) if both else np.zeros(7)
    agree = float(np.mean([ref[i]["emo"].argmax() == got[i]["emo"].argmax() for i in both])) if both else None

    def q(x, p):
        return round(float(np.percentile(x, p)), 4) if x else None
    return {"clip": Path(clip).name, "frames": len(both), "tracked": len(tracked),
            "landmark_err_iod_median": q(lm, 50), "landmark_err_iod_p95": q(lm, 95),
            "pose_err_deg_median": q(pose, 50), "pose_err_deg_p95": q(pose, 95), "pose_err_deg_max": q(pose, 100),
            "centre_err_side_median": q(centre, 50), "centre_err_side_p95": q(centre, 95),
            "pose_jump_deg_p90": q(jump, 90), "pose_jump_deg_max": q(jump, 100),
            "emotion_mean_max_diff": round(float(np.abs(mean_ref - mean_got).max()), 4),
            "top_emotion_agreement": None if agree is None else round(agree, 4), "seconds": round(secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = []
    for c in a.clips:
        r = compare(c, a.frames, a.detect_every)
        print(json.dumps(r), flush=True)
        out.append(r)
    keys = [k for k in out[0] if k.startswith(("landmark", "pose", "centre", "emotion", "top"))]
    summary = {k: round(float(np.median([r[k] for r in out if r[k] is not None])), 4) for k in keys}
    print("median over clips:", json.dumps(summary))
    if a.json:
        Path(a.json).write_text(json.dumps({"frames": a.frames, "detect_every": a.detect_every, "clips": out,
                                            "median_over_clips": summary}, indent=1))


if __name__ == "__main__":
    main()
