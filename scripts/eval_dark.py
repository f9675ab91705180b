"""Faces in poor light: the held-out clips darkened as a webcam in a dim or dark room gives them, read with dark
crops brightened (``realtime.inference.DARK_LIFT``, the default) and as they are.

For each held-out clip (``benchmarks/heldout_clips.csv``) the first ``--frames`` frames are read clean, dim (x0.25,
sensor noise sigma 3) and dark (x0.1, sigma 2), from memory (no re-encoding). Per clip, condition and setting: the
clip's reading (the top mean probability of its largest face), the share of frames whose label is the clean
reading's, and the median ``expr_intensity``. Writes JSON.

    python scripts/eval_dark.py --out benchmarks/DATE/dark.json
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import time
from pathlib import Path
from typing import Dict, List

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONDITIONS = {"clean": (1.0, 0.0), "dim": (0.25, 3.0), "dark": (0.1, 2.0)}


def _frames(path: Path, n: int) -> List[np.ndarray]:
    out: List[np.ndarray] = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="bgr24"))
            if len(out) >= n:
                break
    return out


def _degrade(frames: List[np.ndarray], gain: float, sigma: float) -> List[np.ndarray]:
    rng = np.random.default_rng(1)
    return [np.clip(f.astype(np.float32) * gain + rng.normal(0.0, sigma, f.shape), 0, 255).astype(np.uint8)
            for f in frames]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(ROOT / "benchmarks" / "heldout_clips.csv"))
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    from realtime import EMOTIONS, Analyzer
    from realtime.inference import DARK_LIFT

    clips = list(csv.DictReader(open(a.clips)))
    rows: List[Dict] = []
    t0 = time.perf_counter()
    with Analyzer() as an:
        for c in clips:
            frames = _frames(SHARED / c["clip"], a.frames)
            clean_labels: Dict[int, str] = {}
            for cond, (gain, sigma) in CONDITIONS.items():
                seen = frames if cond == "clean" else _degrade(frames, gain, sigma)
                for setting, lift in (("as_is", None), ("lifted", DARK_LIFT)):
                    an.inference.dark_lift = lift
                    run = an.process_video(seen)
                    probs, inten, gains = [], [], []
                    labels: Dict[int, str] = {}  # by frame index: a frame that loses its face shifts nothing
                    for p in run:
                        if p.faces:
                            f = max(p.faces, key=lambda q: q.area)
                            probs.append(f.emotions)
                            labels[p.index] = f.emotion
                            inten.append(f.intensity)
                            gains.append(f.lift)
                    if cond == "clean" and setting == "as_is":
                        clean_labels = labels
                    top = EMOTIONS[int(np.argmax(np.mean(probs, axis=0)))] if probs else None
                    both = [i for i in labels if i in clean_labels]
                    agree = float(np.mean([labels[i] == clean_labels[i] for i in both])) if both else None
                    rows.append({"clip": c["clip"], "truth": c["label"], "kind": c["kind"], "condition": cond,
                                 "setting": setting, "reading": top, "named": top == c["label"],
                                 "reads_as_lit": None,
                                 "frames_as_clean": None if agree is None else round(agree, 4),
                                 "intensity_median": round(float(np.median(inten)), 4) if inten else None,
                                 "faces": len(labels), "lifted_share": round(float(np.mean(np.array(gains) > 1)), 4)
                                 if gains else None})
                    print(c["clip"], cond, setting, top, rows[-1]["frames_as_clean"], flush=True)
    an.inference.dark_lift = DARK_LIFT
    lit = {r["clip"]: r["reading"] for r in rows if r["condition"] == "clean" and r["setting"] == "as_is"}
    for r in rows:
        r["reads_as_lit"] = r["reading"] == lit.get(r["clip"])
    summary = {}
    for cond in CONDITIONS:
        for setting in ("as_is", "lifted"):
            sel = [r for r in rows if r["condition"] == cond and r["setting"] == setting]
            ex = [r["intensity_median"] for r in sel if r["kind"] == "expressive" and r["intensity_median"] is not None]
            ne = [r["intensity_median"] for r in sel if r["kind"] == "neutral" and r["intensity_median"] is not None]
            summary[f"{cond}/{setting}"] = {
                "clips_named": sum(r["named"] for r in sel), "clips": len(sel),
                "clips_read_as_lit": sum(r["reads_as_lit"] for r in sel),
                "frames_as_clean_median": round(float(np.median([r["frames_as_clean"] for r in sel
                                                                 if r["frames_as_clean"] is not None])), 4),
                "intensity_ratio_expressive_over_neutral": round(float(np.median(ex) / max(np.median(ne), 1e-6)), 3)
                if ex and ne else None,
                "lifted_share_median": round(float(np.median([r["lifted_share"] for r in sel
                                                              if r["lifted_share"] is not None])), 4)}
    out = {"dark_lift": list(DARK_LIFT) if DARK_LIFT else None, "frames": a.frames, "conditions": CONDITIONS,
           "summary": summary, "clips": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
