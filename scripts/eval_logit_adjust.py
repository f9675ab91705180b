#!/usr/bin/env python3
"""Does a post-hoc logit adjustment of the shipped emotion head read held-out people better? (MODEL_CARD.md, exp. 23)

The head's class scores carry the training set's class balance: FER-2013 train is a quarter happy and 1.5 %
disgust, and the clip-labelled fine-tune's video was mostly neutral talkers. Logit adjustment (Menon et al.,
"Long-tail learning via logit adjustment", ICLR 2021) subtracts ``tau * log(prior)`` from the scores, which
turns a classifier of the training mix into one of balanced classes, as acted material is. This script reads
the same faces as ``eval_detail_px.py`` (the pipeline's crops, the shipped weights and reading; the head as
fitted, without the ``class_bias`` it may record, MODEL_CARD.md exp. 37) once and, per ``tau``, reports:

- FER-2013 validation (the probes' stratified 10 %): accuracy and mean class recall;
- each ``--clips`` CSV: frame accuracy, per-class frame recall and clips named (argmax of the mean
  probabilities, as the acceptance test reads a clip's ``emotion_*`` columns).

``tau`` is chosen on FER-2013 validation's mean class recall alone (the video sets only report), so the
held-out clips stay a test.

Usage::

    python scripts/eval_logit_adjust.py --fer ../shared/data/fer2013 \\
        --clips benchmarks/heldout_clips.csv benchmarks/trained_expressive_clips.csv --out J
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

from realtime.types import EMOTIONS  # noqa: E402


def train_prior(fer: Path) -> np.ndarray:
    """(7,) class frequencies of the FER-2013 training part the head learned from (train minus the 10 %)."""
    from facecycle.probe.run import expression_items

    counts = np.bincount([c for _, c in expression_items(fer, "train", 0.1, 0)], minlength=len(EMOTIONS))
    return counts / counts.sum()


def softmax(z: np.ndarray) -> np.ndarray:
    """(N, K) scores -> (N, K) probabilities (row-wise softmax, the post-hoc sweeps' one normalisation)."""
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def adjust(logp: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """(N, 7) log-probabilities -> (N, 7) probabilities of the scores minus ``tau * log(prior)``."""
    return softmax(logp - tau * np.log(prior)[None])


def recalls(p: np.ndarray, y: np.ndarray) -> dict:
    """Per-class recall of the labelled classes (``classification_report``'s, rounded to 4 places)."""
    from facecycle.probe.linear import classification_report

    per = classification_report(p, y, EMOTIONS)["per_class_accuracy"]
    return {c: round(v, 4) for c, v in per.items() if v is not None}


def read_sets(a: "argparse.Namespace") -> "tuple[object, object, dict, np.ndarray, dict, dict]":
    """Read the faces once with the model of ``a.model`` and its emotion head as fitted (a ``class_bias`` the
    shipped head records taken off, so sweeps are relative to the fit): (model, that head, log-probabilities by
    set name,
    FER-2013 validation labels, the ``--clips`` sets as :func:`eval_detail_px.collect` gives them, the head's
    recorded ``class_bias``)."""
    from facecycle.probe.linear import with_class_bias

    model, head = load_model(a.model)
    shipped = json.loads(head.meta.get("class_bias", "{}"))
    head = with_class_bias(head, {})
    fx, fy = fer_val(a.fer, model.config.image_size)
    logp = {"fer2013_val": np.log(probabilities(model, head, fx))}
    sets = {c.name: collect(a.model, c, a.shared, a.every, a.max_frames) for c in a.clips}
    for name, d in sets.items():
        logp[name] = np.log(probabilities(model, head, d["crops"]))
    return model, head, logp, fy, sets, shipped


def sweep_point(logp: dict, fy: np.ndarray, sets: dict, transform) -> dict:
    """One point of a post-hoc sweep: ``transform`` ((N, 7) log-probabilities -> (N, 7) probabilities) applied to
    FER-2013 validation (accuracy, mean class recall, recall) and to each clip set (:func:`clip_report` and
    recall)."""
    pf = transform(logp["fer2013_val"])
    rec = {"fer2013_val": {"n": int(len(fy)), "accuracy": float((pf.argmax(1) == fy).mean()),
                           "mean_class_recall": float(np.mean(list(recalls(pf, fy).values()))),
                           "recall": recalls(pf, fy)}}
    for name, d in sets.items():
        p = transform(logp[name])
        rep = clip_report(p, d)
        rep["recall"] = recalls(p, d["labels"])
        rec[name] = rep
    return rec


def summary_line(rec: dict) -> str:
    """Frame accuracy and clips (or spans) named per set; accuracy and mean class recall for FER-2013."""
    return json.dumps({k: (round(v["frame_accuracy"], 4), v.get("clips_named", v.get("spans_named")))
                       if "frame_accuracy" in v else (round(v["accuracy"], 4), round(v["mean_class_recall"], 4))
                       for k, v in rec.items()})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    clip_args(ap)
    ap.add_argument("--taus", default="0,0.25,0.5,0.75,1.0")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    _, _, logp, fy, sets, shipped = read_sets(a)
    prior = train_prior(a.fer)
    res = {**run_header(a.model), "prior": dict(zip(EMOTIONS, np.round(prior, 4).tolist(), strict=True)),
           "shipped_class_bias": shipped, "sweep": {}}
    for tau in (float(t) for t in a.taus.split(",")):
        rec = sweep_point(logp, fy, sets, lambda lp, tau=tau: adjust(lp, prior, tau))
        res["sweep"][str(tau)] = rec
        print(tau, summary_line(rec), flush=True)
    res["chosen_tau_by_fer_val_mean_recall"] = max(
        res["sweep"], key=lambda t: res["sweep"][t]["fer2013_val"]["mean_class_recall"])
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
