#!/usr/bin/env python3
"""Teach the identity encoder to tell people apart (MODEL_CARD.md, experiment 32).

The shipped identity code comes from 300 steps of FaceCycle's identity cycle, which asks it to carry whatever
the normalizer needs to rebuild a face, not to separate people; ``--reid`` needs the latter. This script trains
the identity encoder (``idcodegen``) alone, everything else frozen and unchanged, as a face-recognition
embedding: a cosine classifier with an additive margin (CosFace, Wang et al. 2018) over the people of the
prepared training video (``facecycle data prepare`` folders), one class per person. People who appear in
several clips are one class (``eval_reid.PEOPLE``); clips of held-out people (``--exclude``, the expression
evaluation's held-out prefixes) are left out, so they can measure it.

Crops are the prepared 1.3×-box squares, cut down to the model's own framing (``config.crop_scale``) by the
affine jitter's zoom, with flips, small moves, rotations, brightness and contrast changes, blur and random
erasing, so that a person's background and light are not enough. Each step takes ``--people`` people and
``--per-person`` crops of each. The learning rate follows a cosine over ``--minutes`` of wall time. Writes
``OUT/model.safetensors`` (the ``--init`` model with the new identity encoder) and ``OUT/log.csv``.

Usage::

    python scripts/train_identity_metric.py --data WORK/vid1 WORK/vid2 --minutes 20 --out runs/identity_metric
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_reid import person  # noqa: E402


def load_crops(dirs: list, exclude: list) -> "tuple[np.ndarray, np.ndarray, list]":
    """(N, 64, 64, 3) uint8 RGB crops, (N,) person index, person names, from prepared dataset folders."""
    crops, who, names = [], [], {}
    for d in dirs:
        for r in csv.DictReader(open(d / "index.csv")):
            clip = Path(r["source"]).stem
            if any(clip.startswith(p) for p in exclude):
                continue
            img = cv2.imread(str(d / r["file"]), cv2.IMREAD_COLOR)
            if img is None:
                continue
            crops.append(img[..., ::-1])
            who.append(names.setdefault(person(clip), len(names)))
    return np.stack(crops), np.array(who), list(names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True)
    ap.add_argument("--init", type=Path, default=ROOT / "facecycle" / "assets" / "default" / "model.safetensors")
    ap.add_argument("--exclude", type=Path, default=ROOT / "scripts" / "heldout_prefixes.txt")
    ap.add_argument("--data-scale", type=float, default=1.3, help="box scale of the prepared crops")
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--people", type=int, default=16)
    ap.add_argument("--per-person", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--margin", type=float, default=0.25)
    ap.add_argument("--scale", type=float, default=16.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from facecycle.checkpoint import load_checkpoint, save_checkpoint
    from facecycle.data.augment import affine_jitter, brightness_contrast, normalize, random_erase, warp_affine

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    exclude = [p for p in a.exclude.read_text().replace("\n", ",").split(",") if p.strip()]
    crops, who, names = load_crops(a.data, exclude)
    by_person = [np.nonzero(who == k)[0] for k in range(len(names))]
    print(f"{len(crops)} crops of {len(names)} people (held-out prefixes left out: {len(exclude)})", flush=True)

    model = load_checkpoint(a.init).float().eval()
    enc = model.idcodegen.train()
    cfg = model.config
    zoom = cfg.crop_scale / a.data_scale
    w = torch.nn.Parameter(F.normalize(torch.randn(len(names), cfg.code_dim), dim=1))
    opt = torch.optim.AdamW([*enc.parameters(), w], lr=a.lr, weight_decay=5e-4)
    a.out.mkdir(parents=True, exist_ok=True)
    log = open(a.out / "log.csv", "w", newline="")
    lw = csv.writer(log)
    lw.writerow(["step", "seconds", "lr", "loss", "accuracy", "images_per_s"])
    t0 = time.perf_counter()
    step, seen, t_log = 0, 0, t0
    budget = a.minutes * 60.0
    while time.perf_counter() - t0 < budget:
        frac = (time.perf_counter() - t0) / budget
        lr = a.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        for pg in opt.param_groups:
            pg["lr"] = lr
        ppl = rng.choice(len(names), size=min(a.people, len(names)), replace=False)
        idx = np.concatenate([rng.choice(by_person[p], size=a.per_person) for p in ppl])
        x = torch.from_numpy(crops[idx]).permute(0, 3, 1, 2).float() / 255.0
        x = warp_affine(x, affine_jitter(x, g, scale=(0.9, 1.1), rot_deg=10.0, shift=0.06, zoom=zoom), cfg.image_size)
        x = brightness_contrast(x, g, 0.15, 0.3)
        if rng.random() < 0.3:
            x = F.avg_pool2d(x, 3, 1, 1)
        x = random_erase(x, g, p=0.3)
        y = torch.from_numpy(who[idx]).long()
        f = F.normalize(enc(normalize(x, cfg.mean, cfg.std))[1], dim=1)
        cos = f @ F.normalize(w, dim=1).T
        logits = a.scale * (cos - a.margin * F.one_hot(y, len(names)))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        seen += len(idx)
        if step % 25 == 0:
            now = time.perf_counter()
            ips = seen / (now - t_log)
            acc = float((cos.argmax(1) == y).float().mean())
            lw.writerow([step, round(now - t0, 1), f"{lr:.2e}", round(loss.item(), 4), round(acc, 3), round(ips, 1)])
            log.flush()
            print(f"step {step} {now - t0:.0f}s lr {lr:.1e} loss {loss.item():.3f} acc {acc:.2f} {ips:.0f} img/s",
                  flush=True)
            seen, t_log = 0, now
    log.close()
    model.idcodegen.eval()
    save_checkpoint(model, a.out / "model.safetensors")
    print(f"wrote {a.out / 'model.safetensors'} after {step} steps, {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
