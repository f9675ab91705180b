#!/usr/bin/env python3
"""Cheap ways to more FER-2013 accuracy from the shipped model, measured on the probes' validation split.

``python scripts/eval_head_variants.py --fer ../shared/data/fer2013 --out J``; about 8 min on 2 cores. Three
families, none of which retrains the encoder (MODEL_CARD.md, experiment 17):

* **test-time views**: the shipped ``analyze.onnx`` feature (already the mean of the face and its mirror) of the
  image moved by a few pixels or zoomed, averaged over views before the shipped head (the head is linear, so this
  is the mean of the views' logits);
* **a non-linear head**: an MLP (and, as its control, a linear layer) trained by AdamW on the frozen features of
  the FER-2013 train part (the probes' split, 25,837 images);
* **a weight average** ("model soup") of the shipped encoder and head with those of the run they were fine-tuned
  from (``training/rt64w`` at commit 391f02f, read with ``git show``), in torch, with the shipped flip averaging.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIEWS = {"id": (1.0, 0, 0), "zoom_in_1.08": (1.08, 0, 0), "zoom_in_1.15": (1.15, 0, 0), "zoom_out_0.93": (0.93, 0, 0),
         "left_2px": (1.0, -2, 0), "right_2px": (1.0, 2, 0), "up_2px": (1.0, 0, -2), "down_2px": (1.0, 0, 2)}
COMBOS = [["id", "zoom_in_1.08"], ["id", "zoom_out_0.93"], ["id", "zoom_in_1.08", "zoom_out_0.93"],
          ["id", "left_2px", "right_2px", "up_2px", "down_2px"], list(VIEWS)]


def affine(imgs: np.ndarray, s: float, dx: float, dy: float) -> np.ndarray:
    """(N, 64, 64, 3) uint8 zoomed by ``s`` about the centre and moved by (dx, dy) px, borders replicated."""
    import cv2

    n = imgs.shape[1]
    m = np.array([[s, 0, n / 2 * (1 - s) + dx], [0, s, n / 2 * (1 - s) + dy]], np.float32)
    return np.stack([cv2.warpAffine(im, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for im in imgs])


def views(model: Path, x: np.ndarray, y: np.ndarray) -> dict:
    from facecycle.probe.features import OnnxFeatures
    from facecycle.probe.linear import load_head

    ex = OnnxFeatures(model, threads=2)
    head = load_head(model / "expression_head.safetensors")
    feats, single = {}, {}
    for k, v in VIEWS.items():
        feats[k] = ex(x if k == "id" else affine(x, *v))
        single[k] = round(float((head.predict(feats[k]).argmax(1) == y).mean()), 4)
        print(f"view {k}: {single[k]}", flush=True)
    combos = {"+".join(c): round(float((head.predict(np.mean([feats[k] for k in c], 0)).argmax(1) == y).mean()), 4)
              for c in COMBOS}
    return {"single_view": single, "averaged_views": combos}


def heads(model: Path, xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> dict:
    import torch
    import torch.nn as nn

    from facecycle.probe.features import OnnxFeatures

    torch.set_num_threads(2)
    ex = OnnxFeatures(model, threads=2)
    ft, fv = ex(xt), ex(xv)
    mu, sd = ft.mean(0), ft.std(0) + 1e-6
    X, Y, Xv = (torch.tensor((ft - mu) / sd), torch.tensor(yt), torch.tensor((fv - mu) / sd))
    out = {}
    for name, hid, drop, wd in (("linear", 0, 0.0, 1e-4), ("mlp_512", 512, 0.5, 1e-4), ("mlp_1024", 1024, 0.5, 1e-3),
                                ("mlp_256", 256, 0.3, 1e-4)):
        torch.manual_seed(0)
        net = nn.Linear(X.shape[1], 7) if hid == 0 else nn.Sequential(
            nn.Dropout(0.2), nn.Linear(X.shape[1], hid), nn.GELU(), nn.Dropout(drop), nn.Linear(hid, 7))
        opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=wd)
        epochs = 30
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=epochs * (len(X) // 256 + 1))
        curve = []
        for ep in range(epochs):
            net.train()
            perm = torch.randperm(len(X))
            for i in range(0, len(X), 256):
                b = perm[i:i + 256]
                loss = nn.functional.cross_entropy(net(X[b]), Y[b], label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if ep % 5 == 4:
                net.eval()
                with torch.no_grad():
                    curve.append(round(float((net(Xv).argmax(1).numpy() == yv).mean()), 4))
        out[name] = {"val_accuracy_every_5_epochs": curve, "final": curve[-1], "best": max(curve)}
        print(f"head {name}: {curve}", flush=True)
    return out


def soup(x: np.ndarray, y: np.ndarray) -> dict:
    import torch
    from safetensors.torch import load_file

    from facecycle.checkpoint import load_checkpoint
    from facecycle.probe.features import TorchFeatures

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    for f in ("last", "head"):
        data = subprocess.run(["git", "show", f"391f02f:training/rt64w/{f}.safetensors"], cwd=ROOT,
                              capture_output=True, check=True).stdout
        (tmp / f"{f}.safetensors").write_bytes(data)
    fine = ROOT / "training" / "rt64w_vl"
    sa = load_checkpoint(tmp / "last.safetensors").codegeneration.state_dict()
    sb = load_checkpoint(fine / "last.safetensors").codegeneration.state_dict()
    ha, hb = load_file(tmp / "head.safetensors"), load_file(fine / "head.safetensors")
    out = {}
    for a in (0.0, 0.3, 0.5, 1.0):
        m = load_checkpoint(fine / "last.safetensors")
        m.config = m.config.replace(feature_flip=True)  # as shipped (scripts/ship_default.py --feature-flip)
        m.codegeneration.load_state_dict({k: (a * sa[k].float() + (1 - a) * v.float()).to(v.dtype)
                                          if v.is_floating_point() else v for k, v in sb.items()})
        w = a * ha["fc.weight"] + (1 - a) * hb["fc.weight"]
        b = a * ha["fc.bias"] + (1 - a) * hb["fc.bias"]
        f = torch.from_numpy(TorchFeatures(m, threads=2)(x))
        out[f"weight_of_the_17000_step_run_{a}"] = round(float(((f @ w.T + b).argmax(1).numpy() == y).mean()), 4)
        print(f"soup {a}: {out[f'weight_of_the_17000_step_run_{a}']}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, required=True, help="FER-2013 folder (train/<class>/*.png)")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    a = ap.parse_args()
    from facecycle.assets import default_model_dir
    from facecycle.probe.datasets import load_images
    from facecycle.probe.run import expression_items

    t0 = time.time()
    model = default_model_dir()
    va = expression_items(a.fer, "val")
    tr = expression_items(a.fer, "train")
    xv, yv = load_images([p for p, _ in va], 64), np.array([c for _, c in va])
    xt, yt = load_images([p for p, _ in tr], 64), np.array([c for _, c in tr])
    rec = {"what": __doc__.splitlines()[0], "model": str(model), "date": time.strftime("%Y-%m-%d"),
           "val_images": len(yv), "train_images": len(yt), "one_standard_error": round(
               float(np.sqrt(0.68 * 0.32 / len(yv))), 4),
           "views": views(model, xv, yv), "heads_on_frozen_features": heads(model, xt, yt, xv, yv),
           "soup_torch": soup(xv, yv)}
    rec["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"-> {a.out} ({rec['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
