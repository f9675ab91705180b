#!/usr/bin/env python3
"""A teacher's emotion probabilities of the FER-2013 training stills, for ``facecycle train --stage semisup
--still-targets FILE --set distill_weight=W`` (MODEL_CARD.md, experiment 18).

The teacher is a model (default: the shipped one) whose features are averaged over views of each still: the still
itself and the still moved by ``--shift`` px left, right, up and down (each view already the mean of the image and
its mirror, ``feature_flip``); the shipped head reads the mean feature. On the validation split that mean is worth
+1.2 points over one view (experiment 17). The stills are those the trainer loads (``load_stills``: the probes'
training part, same order); the file keeps their labels, which the trainer checks.

    python scripts/teacher_targets.py --fer ../shared/data/fer2013 --out runs/teacher_targets.npz
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--shift", type=int, default=2)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch
    from eval_head_variants import affine  # experiment 17's views, the same moves

    from facecycle.assets import default_model_dir
    from facecycle.checkpoint import load_checkpoint
    from facecycle.preprocess import to_input
    from facecycle.probe.linear import load_head
    from facecycle.probe.run import load_stills

    torch.set_num_threads(a.threads)
    t0 = time.time()
    md = a.model or default_model_dir()
    m = load_checkpoint(md / "model.safetensors").eval().float()
    c = m.config
    head = load_head(md / "expression_head.safetensors")
    (xt, yt), (xv, yv) = load_stills(a.fer, c.image_size, a.val_frac, seed=0)
    views = [(0, 0), (-a.shift, 0), (a.shift, 0), (0, -a.shift), (0, a.shift)]

    def feats(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), c.feature_dim), np.float64)
        for dx, dy in views:
            xi = torch.from_numpy(to_input(x if (dx, dy) == (0, 0) else affine(x, 1.0, dx, dy), c.mean, c.std))
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                f = torch.cat([m.features(xi[i:i + 256]).float() for i in range(0, len(xi), 256)])
            out += f.numpy() / len(views)
        return out.astype(np.float32)

    def probs(x: np.ndarray) -> np.ndarray:
        z = head.predict(feats(x))
        z = np.exp(z - z.max(1, keepdims=True))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)

    pv = probs(xv)
    val_acc = float((pv.argmax(1) == yv).mean())
    print(f"teacher on the validation split: {val_acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    pt = probs(xt)
    meta = {"model": str(md), "views": views, "val_accuracy": round(val_acc, 4),
            "train_accuracy": round(float((pt.argmax(1) == yt).mean()), 4), "n": len(yt),
            "mean_max_prob": round(float(pt.max(1).mean()), 4), "seconds": round(time.time() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, targets=pt, labels=np.asarray(yt, np.int64), meta=np.array(json.dumps(meta)))
    print(json.dumps(meta), "->", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
