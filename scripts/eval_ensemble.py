#!/usr/bin/env python3
"""Would a second model of our own read emotions better beside the shipped head? (MODEL_CARD.md, experiment 30)

The second model is the committed critic of experiment 9 (``training/critic``: a small grey 48-px CNN trained
on the same FER-2013 part as the shipped head, sharing no weights with it). Its probabilities are mixed with the
shipped head's, ``(1 − w)·ours + w·critic`` (``prob``) or as a weighted geometric mean (``log``), for each
``--weights`` value, on:

- FER-2013 validation (``--fer``; the probes' stratified 10 %, the stills blown up as the probes do);
- labelled video (every ``--every``-th of the first ``--max-frames`` frames of each clip of each ``--clips``
  CSV, the largest face cut as the pipeline cuts it, read as the pipeline reads it: ``eval_detail_px.collect``):
  frames read right and clips named (argmax of the mean probabilities).

Usage::

    python scripts/eval_ensemble.py --fer ../shared/data/fer2013 \\
        --clips benchmarks/heldout_clips.csv benchmarks/trained_expressive_clips.csv --out J
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import (  # noqa: E402
    clip_args,
    clip_report,
    collect,
    fer_val,
    load_model,
    probabilities,
    run_header,
    write_result,
)
from judges import CriticJudge  # noqa: E402


def mix(ours: np.ndarray, critic: np.ndarray, w: float, kind: str) -> np.ndarray:
    """(N, 7) probabilities of the two models mixed with weight ``w`` on the critic: ``prob`` (arithmetic) or
    ``log`` (geometric, renormalized)."""
    if kind == "prob":
        return (1.0 - w) * ours + w * critic
    z = (1.0 - w) * np.log(ours + 1e-6) + w * np.log(critic + 1e-6)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    clip_args(ap)
    ap.add_argument("--critic", type=Path, default=ROOT / "training" / "critic" / "critic.safetensors")
    ap.add_argument("--weights", default="0,0.2,0.33,0.5,1")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model, head = load_model(a.model)
    critic = CriticJudge(a.critic)
    sets = {c.name: collect(a.model, c, a.shared, a.every, a.max_frames) for c in a.clips}
    fx, fy = fer_val(a.fer, model.config.image_size)
    probs = {name: (probabilities(model, head, d["crops"]), critic.predict(d["crops"])) for name, d in sets.items()}
    fer = (probabilities(model, head, fx), critic.predict(fx))
    res = {**run_header(a.model), "critic": str(a.critic), "every": a.every, "max_frames": a.max_frames,
           "mixes": {}}
    for w in (float(v) for v in a.weights.split(",")):
        for kind in (("prob",) if w in (0.0, 1.0) else ("prob", "log")):
            rec = {"fer2013_val": {"n": int(len(fy)), "accuracy": float((mix(*fer, w, kind).argmax(1) == fy).mean())}}
            for name, d in sets.items():
                rec[name] = clip_report(mix(*probs[name], w, kind), d)
            key = f"w={w:g} {kind}"
            res["mixes"][key] = rec
            print(key, f"FER-2013 val {rec['fer2013_val']['accuracy']:.4f}",
                  *(f"{n}: frames {rec[n]['frame_accuracy']:.3f}, clips {rec[n]['clips_named']}/{len(rec[n]['clips'])}"
                    for n in sets), sep=" | ", flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
