#!/usr/bin/env python3
"""Do the shipped head's `emotion_*` probabilities mean what they say? Calibration on stills and on video.

A research user averages, thresholds and compares the ``emotion_*`` columns, so a probability of 0.8 should be
right about 80 % of the time. This script reads the same faces as ``eval_class_bias.py`` (the pipeline's crops,
the shipped weights and 48-px reading, the head's recorded ``class_bias`` applied, as ``facecycle process``
reads them) once and reports, per set:

- accuracy, mean confidence (the top probability), negative log-likelihood and Brier score;
- the expected calibration error (ECE: 15 equal-width confidence bins, the bins' |accuracy - confidence|
  weighted by their share of faces) and a 5-bin reliability table;
- the temperature ``T`` that minimises FER-2013 validation's NLL (``softmax(log p / T)``; chosen there alone)
  and every set's ECE at that ``T``, to show whether a post-hoc temperature would be worth shipping.

On video the label of a frame is its clip's label (``benchmarks/heldout_clips.csv``), so a frame where the
person pauses in a neutral face counts as an error of the head: video figures are a lower bound on calibration.

Usage::

    python scripts/eval_calibration.py --fer ../shared/data/fer2013 \\
        --clips benchmarks/heldout_clips.csv benchmarks/trained_expressive_clips.csv --out J
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import clip_args, run_header, write_result  # noqa: E402
from eval_logit_adjust import read_sets, softmax  # noqa: E402

from realtime.types import EMOTIONS  # noqa: E402


def softmax_t(logp: np.ndarray, t: float = 1.0) -> np.ndarray:
    """(N, K) log-probabilities -> (N, K) probabilities of ``logp / t``."""
    return softmax(logp / t)


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top class: equal-width confidence bins over (0, 1]."""
    conf, right = p.max(1), p.argmax(1) == y
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum((idx == b).mean() * abs(right[idx == b].mean() - conf[idx == b].mean())
                     for b in range(bins) if (idx == b).any()))


def calibration(p: np.ndarray, y: np.ndarray) -> Dict:
    """Accuracy, mean confidence, NLL, Brier, ECE and a 5-bin reliability table of (N, K) probabilities."""
    n = len(y)
    conf, right = p.max(1), p.argmax(1) == y
    onehot = np.eye(p.shape[1])[y]
    table = []
    for lo, hi in ((0.0, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 0.9), (0.9, 1.01)):
        m = (conf >= lo) & (conf < hi)
        table.append({"confidence": f"{lo:.1f}-{min(hi, 1.0):.1f}", "n": int(m.sum()),
                      "accuracy": round(float(right[m].mean()), 4) if m.any() else None,
                      "mean_confidence": round(float(conf[m].mean()), 4) if m.any() else None})
    return {"n": int(n), "accuracy": round(float(right.mean()), 4), "mean_confidence": round(float(conf.mean()), 4),
            "nll": round(float(-np.log(np.clip(p[np.arange(n), y], 1e-12, 1)).mean()), 4),
            "brier": round(float(((p - onehot) ** 2).sum(1).mean()), 4), "ece": round(ece(p, y), 4),
            "reliability": table}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    clip_args(ap)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    _, _, logp, fy, sets, shipped = read_sets(a)
    shift = np.array([shipped.get(c, 0.0) for c in EMOTIONS], np.float64)
    logp = {k: np.log(softmax_t(v + shift[None])) for k, v in logp.items()}  # the head as shipped
    labels = {"fer2013_val": np.asarray(fy), **{k: np.asarray(d["labels"]) for k, d in sets.items()}}
    temps = np.round(np.arange(0.5, 1.501, 0.05), 2)
    nll = [calibration(softmax_t(logp["fer2013_val"], t), labels["fer2013_val"])["nll"] for t in temps]
    t_fit = float(temps[int(np.argmin(nll))])
    res = {**run_header(a.model), "what": __doc__.splitlines()[0], "shipped_class_bias": shipped, "ece_bins": 15,
           "temperature_fit_on_fer2013_val": t_fit, "sets": {}}
    for name, lp in logp.items():
        rec = calibration(softmax_t(lp), labels[name])
        rec["ece_at_fitted_temperature"] = round(ece(softmax_t(lp, t_fit), labels[name]), 4)
        res["sets"][name] = rec
        print(f"{name:30s} n={rec['n']:5d} acc {rec['accuracy']:.3f} conf {rec['mean_confidence']:.3f} "
              f"ECE {rec['ece']:.3f} (at T={t_fit:g}: {rec['ece_at_fitted_temperature']:.3f})", flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
