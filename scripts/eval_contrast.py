#!/usr/bin/env python3
"""Would normalising each face's contrast bring video faces closer to FER-2013's? (MODEL_CARD.md, experiment 22)

``python scripts/eval_contrast.py --clips benchmarks/heldout_clips.csv --fer ../shared/data/fer2013 --out J``
(about 3 min on 2 cores).

The pipeline's crops of the held-out clips (every 3rd of the first 300 frames, the largest face, as
``scripts/eval_detail_px.py`` collects them) and the FER-2013 validation split are read by the shipped model
(torch, its ``detail_px``) after one of these per-image transforms of the grey face: none (what ships); the
luma standardised to FER-2013's median mean and contrast; CLAHE (clip 2, 4×4 tiles); a global histogram
equalisation. Reports the brightness and contrast of both sets, and per transform the frames read right, the
clips named (argmax of the mean probabilities) and FER-2013 validation accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import clip_report, collect, fer_val, load_model, probabilities  # noqa: E402


def luma(x: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> (N, S, S) float32 luma (BT.601)."""
    return x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def grey3(g: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, -1)


def transforms(target_mean: float, target_std: float) -> dict:
    import cv2

    clahe = cv2.createCLAHE(2.0, (4, 4))

    def standardise(x: np.ndarray) -> np.ndarray:
        g = luma(x)
        m, s = g.mean((1, 2), keepdims=True), g.std((1, 2), keepdims=True) + 1e-3
        return grey3((g - m) / s * target_std + target_mean)

    return {"none": lambda x: x, "standardise": standardise,
            "clahe": lambda x: grey3(np.stack([clahe.apply(np.clip(g, 0, 255).astype(np.uint8)) for g in luma(x)])),
            "equalise": lambda x: grey3(np.stack([cv2.equalizeHist(np.clip(g, 0, 255).astype(np.uint8))
                                                  for g in luma(x)]))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--clips", type=Path, required=True)
    ap.add_argument("--fer", type=Path, required=True)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model, head = load_model(a.model)
    data = collect(a.model, a.clips, a.shared, 3, 300)
    fx, fy = fer_val(a.fer, model.config.image_size)
    fl, vl = luma(fx), luma(data["crops"])
    stats = {name: {"mean_luma_median": round(float(np.median(g.mean((1, 2)))), 1),
                    "contrast_median": round(float(np.median(g.std((1, 2)))), 1)}
             for name, g in (("fer2013_val", fl), ("video_crops", vl))}
    tr = transforms(stats["fer2013_val"]["mean_luma_median"], stats["fer2013_val"]["contrast_median"])
    res = {"what": __doc__.splitlines()[0], "model": str(a.model), "clips": str(a.clips), "grey_statistics": stats,
           "transforms": {}}
    for name, f in tr.items():
        r = clip_report(probabilities(model, head, f(data["crops"])), data)
        pf = probabilities(model, head, f(fx))
        res["transforms"][name] = {"frame_accuracy": round(r["frame_accuracy"], 4), "clips_named": r["clips_named"],
                                   "fer2013_val": round(float((pf.argmax(1) == fy).mean()), 4),
                                   "clips": [{k: c[k] for k in ("clip", "label", "named", "frame_accuracy")}
                                             for c in r["clips"]]}
        print(name, {k: v for k, v in res["transforms"][name].items() if k != "clips"}, flush=True)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
