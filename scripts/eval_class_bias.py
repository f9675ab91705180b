#!/usr/bin/env python3
"""Would a bias on one class's score read the weak class (sad) on video without losing the rest? (MODEL_CARD.md,
exp. 37)

The shipped head reads sad poorly on video: the held-out sad clips read neutral and angry, the crying span fear,
while FER-2013 validation's sad recall is 58 %. The clip-labelled fine-tune saw 2 sad clips against 22 neutral
talkers. A post-hoc bias ``b`` added to one class's log-probability (the others unchanged, then renormalised) is
the cheapest correction. This script reads the same faces as ``eval_logit_adjust.py`` (the pipeline's crops, the
shipped weights and reading) once and, per ``b``, reports:

- FER-2013 validation: accuracy, mean class recall and per-class recall;
- each ``--clips`` CSV: frame accuracy, per-class frame recall and clips named (argmax of the mean
  probabilities, as the acceptance test reads a clip's ``emotion_*`` columns);
- the posed spans of training people (``training/video_spans.csv`` rows the shipped fine-tune had no label
  for): frame accuracy and spans named.

Usage::

    python scripts/eval_class_bias.py --fer ../shared/data/fer2013 --class sad \\
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

from eval_detail_px import clip_args, probabilities, run_header, write_result  # noqa: E402
from eval_logit_adjust import read_sets, recalls, softmax, summary_line, sweep_point  # noqa: E402
from eval_spans import collect as collect_spans  # noqa: E402
from eval_spans import report as span_report  # noqa: E402
from eval_spans import unlabelled_spans  # noqa: E402

from realtime.types import EMOTIONS  # noqa: E402


def biased(logp: np.ndarray, k: int, b: float, base: "dict[str, float] | None" = None) -> np.ndarray:
    """(N, 7) log-probabilities -> (N, 7) probabilities with ``b`` added to class ``k``'s score (after ``base``:
    other classes' biases, e.g. the shipped head's, applied first)."""
    z = logp.copy()
    for c, v in (base or {}).items():
        z[:, EMOTIONS.index(c)] += v
    z[:, k] += b
    return softmax(z)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    clip_args(ap)
    ap.add_argument("--class", dest="cls", default="sad", choices=EMOTIONS)
    ap.add_argument("--biases", default="0,0.25,0.5,0.75,1.0,1.5", help="comma-separated; negative lowers the class")
    ap.add_argument("--on-shipped", action="store_true",
                    help="sweep on top of the shipped head's recorded class bias (default: relative to the fit)")
    ap.add_argument("--spans", type=Path, default=ROOT / "training" / "video_spans.csv")
    ap.add_argument("--span-labels", type=Path, default=ROOT / "training" / "video_labels.csv")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    k = EMOTIONS.index(a.cls)
    model, fit, logp, fy, sets, shipped = read_sets(a)
    spans = unlabelled_spans(a.spans, a.span_labels)
    sd = collect_spans(a.model, spans, a.shared)
    spans_logp = np.log(probabilities(model, fit, sd["crops"]))
    base = shipped if a.on_shipped else {}
    res = {**run_header(a.model), "class": a.cls, "shipped_class_bias": shipped, "on_top_of": base, "sweep": {}}
    for b in (float(t) for t in a.biases.split(",")):
        rec = sweep_point(logp, fy, sets, lambda lp, b=b: biased(lp, k, b, base))
        ps = biased(spans_logp, k, b, base)
        rec["spans"] = span_report(ps, sd, spans)
        rec["spans"]["recall"] = recalls(ps, sd["labels"])
        res["sweep"][str(b)] = rec
        print(b, summary_line(rec), {n: v["recall"].get(a.cls) for n, v in rec.items()}, flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
