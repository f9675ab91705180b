"""Held-out evaluation of a trained motion model: reconstruction L1/SSIM and a figure.

Usage::

    python -m facecycle.train.evaluate --checkpoint RUN/last.safetensors --data HOLDOUT_DATASET \\
        --train-data TRAIN_DATASET --json eval.json --figure docs/figure.png

Pairs (a, b) are two frames of one held-out track (seeded, ``--pairs`` per
track). Measured in [0, 1] RGB (L1 = mean absolute error, SSIM 11×11 σ 1.5):

* ``cycle``: a → neutral(a) → re-expressed with a's backflow (the motion cycle);
* ``cross``: neutral(b) re-expressed with a's backflow, against a (the training
  objective, on unseen people);
* ``autoencode``: G(a) without a flow;
* baselines ``copy_other_frame`` (predict a by b) and ``train_mean_face`` (predict
  a by the mean training crop).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..losses import denormalize, ssim
from ..preprocess import from_output, to_input
from .visual import save_grid

__all__ = ["held_out_pairs", "reconstruction_metrics", "figure", "main"]


def held_out_pairs(images: np.ndarray, tracks: np.ndarray, per_track: int = 32, seed: int = 0):
    """Seeded (a, b) index pairs within each track -> (ia, ib) int arrays."""
    rng = np.random.default_rng(seed)
    ia, ib = [], []
    for t in np.unique(tracks):
        idx = np.flatnonzero(tracks == t)
        if len(idx) < 2:
            continue
        for _ in range(per_track):
            a, b = rng.choice(idx, 2, replace=False)
            ia.append(a)
            ib.append(b)
    return np.asarray(ia), np.asarray(ib)


def _metrics(pred01: torch.Tensor, tgt01: torch.Tensor) -> Dict[str, float]:
    p = pred01.clamp(0, 1)
    return {"l1": float((p - tgt01).abs().mean()), "ssim": float(ssim(p, tgt01))}


@torch.no_grad()
def reconstruction_metrics(model, images: np.ndarray, tracks: np.ndarray, mean_face: np.ndarray,
                           per_track: int = 32, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """See the module docstring. ``images`` (N, S, S, 3) uint8 RGB; ``mean_face`` (S, S, 3) float in [0, 255]."""
    c = model.config
    model.eval()
    ia, ib = held_out_pairs(images, tracks, per_track, seed)
    xa = torch.from_numpy(to_input(images[ia], c.mean, c.std))
    xb = torch.from_numpy(to_input(images[ib], c.mean, c.std))
    an_a, an_b = model.analyze(xa), model.analyze(xb)
    G = model.Swap_Generator
    na, nb = G(xa, an_a.flow), G(xb, an_b.flow)
    d = lambda t: denormalize(t, c.mean, c.std)  # noqa: E731
    ta = d(xa)
    mf = torch.from_numpy(np.ascontiguousarray(mean_face.transpose(2, 0, 1)[None] / 255.0)).float().expand_as(ta)
    out = {
        "cycle": _metrics(d(G(na, an_a.backflow)), ta),
        "cross": _metrics(d(G(nb, an_a.backflow)), ta),
        "autoencode": _metrics(d(G(xa, None)), ta),
        "copy_other_frame": _metrics(d(xb), ta),
        "train_mean_face": _metrics(mf, ta),
        "flow_intensity_mean": float(an_a.intensity.mean()),
    }
    out["n_pairs"] = int(len(ia))
    return out


@torch.no_grad()
def figure(model, images: np.ndarray, tracks: np.ndarray, path: Path, n: int = 6, seed: int = 0) -> Path:
    """Rows: held-out input, its neutral face, the expression of the next column's input transferred onto it."""
    c = model.config
    model.eval()
    rng = np.random.default_rng(seed)
    uts = np.unique(tracks)
    picks = []
    for i in range(n):
        idx = np.flatnonzero(tracks == uts[i % len(uts)])
        picks.append(rng.choice(idx))
    x = torch.from_numpy(to_input(images[picks], c.mean, c.std))
    an = model.analyze(x)
    neutral = model.Swap_Generator(x, an.flow)
    src = torch.roll(torch.arange(len(picks)), -1)
    transfer = model.Swap_Generator(neutral, an.backflow[src])
    rows = [images[picks], from_output(neutral.numpy(), c.mean, c.std), images[picks][src.numpy()],
            from_output(transfer.numpy(), c.mean, c.std)]
    return save_grid(path, rows, scale=1)


def main(argv: Sequence[str] | None = None) -> int:
    from ..data.pairs import load_track_dataset

    ap = argparse.ArgumentParser(prog="python -m facecycle.train.evaluate")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, nargs="+", help="held-out dataset(s)")
    ap.add_argument("--train-data", nargs="+", default=None, help="training dataset(s) (for the mean-face baseline)")
    ap.add_argument("--pairs", type=int, default=32, help="pairs per held-out track")
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_checkpoint(a.checkpoint)
    s = model.config.image_size
    imgs, tracks = load_track_dataset([Path(p) for p in a.data], s)
    if a.train_data:
        timgs, _ = load_track_dataset([Path(p) for p in a.train_data], s)
        mean_face = timgs.astype(np.float64).mean(0)
    else:
        mean_face = imgs.astype(np.float64).mean(0)
    res = reconstruction_metrics(model, imgs, tracks, mean_face, a.pairs)
    res["checkpoint"] = str(a.checkpoint)
    res["held_out"] = [str(p) for p in a.data]
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2), encoding="utf-8")
    if a.figure:
        figure(model, imgs, tracks, Path(a.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
