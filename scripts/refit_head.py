#!/usr/bin/env python3
"""Refit the shipped emotion head on its frozen features: FER-2013 stills plus span-labelled training video.

``python scripts/refit_head.py --fer ../shared/data/fer2013 --data /work/data/vid1 /work/data/vid2
--labels training/video_spans.csv --out-model DIR --json J`` (MODEL_CARD.md, experiment 21; about 4 min on
2 cores, almost all of it the features; seconds once they are cached).

Only ``expression_head.safetensors`` changes: the encoder, and with it the feature, the code, the flow and the
neutral faces, stay the shipped ones, so every figure but the emotion and intensity columns is unchanged.

* **Features:** the shipped ``analyze.onnx`` ``feature`` output (ONNX Runtime; the face and its mirror read at
  ``detail_px``) of the probes' FER-2013 train part and validation split, and of every crop of the prepared
  training video (``facecycle data prepare`` folders, held-out people left out with
  ``scripts/heldout_prefixes.txt``), cut from the prepared framing to the model's as training cuts it.
  Cached in ``--cache`` (keyed by the model's ``analyze.onnx`` hash and the folders' paths).
* **Fit:** the shipped head's weights are the start and the anchor (an L2 pull towards them, ``--anchor``).
  Each step: 256 stills (cross-entropy, label smoothing 0.1, class weights (median / count) ** 0.3, as the
  semi-supervised stage) plus ``--video-batch`` labelled video crops drawn with class weight count **
  -0.5 (cross-entropy, smoothing 0.2, weight ``--video-weight``: the clip-labelled fine-tune's recipe).
  Dropout 0.3 on the feature, AdamW, cosine learning rate, ``--epochs`` passes over the stills.
* **Writes** a copy of the model folder with the refit head (``--out-model``) and a JSON record: validation
  accuracy after every epoch, per class, and the labelled video crops per class.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _heldout() -> List[str]:
    return [h.strip() for h in (ROOT / "scripts" / "heldout_prefixes.txt").read_text().split(",") if h.strip()]


def _cut(imgs: np.ndarray, frac: float) -> np.ndarray:
    """(N, S, S, 3) crops -> the centre ``frac`` of each, resized back to S (training's zoom without jitter)."""
    from realtime.crops import crop_square

    s = imgs.shape[1]
    c = int(round(s * frac))
    return np.stack([crop_square(im, ((s - c) // 2, (s - c) // 2, c), s) for im in imgs])


def features(model: Path, fer: Path, data: List[Path], cache: Path) -> dict:
    """Frozen features of FER-2013 (train part, val) and of every prepared training-video crop, cached."""
    from facecycle.probe.datasets import load_images
    from facecycle.probe.features import OnnxFeatures
    from facecycle.probe.run import expression_items
    from facecycle.train.semisup import cut_framing, load_video

    ex = OnnxFeatures(model, threads=2)
    key = hashlib.sha256((model / ex.manifest["graphs"]["analyze"]["file"]).read_bytes()).hexdigest()[:12]
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("train", "val"):
        f = cache / f"fer_{split}_{key}.npz"
        if not f.is_file():
            items = expression_items(fer, split)
            t0 = time.time()
            x = ex(load_images([p for p, _ in items], 64))
            print(f"fer {split}: {len(items)} images, {len(items) / (time.time() - t0):.0f} images/s", flush=True)
            np.savez(f, x=x, y=np.array([c for _, c in items], np.int64))
        d = np.load(f)
        out[split] = (d["x"], d["y"])
    f = cache / f"video_{key}_{hashlib.sha256(' '.join(map(str, data)).encode()).hexdigest()[:8]}.npz"
    if not f.is_file():
        imgs, tids, names = load_video(data, 64, exclude=_heldout())
        meta = json.loads((data[0] / "meta.json").read_text())
        t0 = time.time()
        x = ex(_cut(imgs, cut_framing(float(meta.get("scale", 1.3)), ex.crop_scale)))
        print(f"video: {len(x)} crops, {len(x) / (time.time() - t0):.0f} images/s", flush=True)
        np.savez(f, x=x)
    out["video"] = np.load(f)["x"]
    return out


def fit(w0: np.ndarray, b0: np.ndarray, feats: dict, vlab: np.ndarray, a: argparse.Namespace
        ) -> Tuple[np.ndarray, np.ndarray, List[dict]]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    xt, yt = (torch.from_numpy(v) for v in feats["train"])
    xv, yv = feats["val"]
    cnt = torch.bincount(yt, minlength=7).float()
    cw = (cnt.median() / cnt) ** 0.3
    vi = torch.from_numpy(np.nonzero(vlab >= 0)[0])
    vy = torch.from_numpy(vlab[vi.numpy()])
    vx = torch.from_numpy(feats["video"][vi.numpy()])
    vc = torch.bincount(vy, minlength=7).float().clamp(min=1)
    vw = vc[vy] ** -0.5
    W0, B0 = torch.from_numpy(w0.copy()), torch.from_numpy(b0.copy())
    W, B = W0.clone().requires_grad_(True), B0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([W, B], lr=a.lr, weight_decay=0.0)
    bs = 256
    steps = a.epochs * (len(xt) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    curve = []

    def val() -> dict:
        with torch.no_grad():
            p = (torch.from_numpy(xv) @ W.T + B).argmax(1).numpy()
        per = [float((p[yv == k] == k).mean()) for k in range(7)]
        return {"accuracy": round(float((p == yv).mean()), 4), "mean_class": round(float(np.mean(per)), 4)}

    curve.append({"epoch": 0, **val()})
    for ep in range(a.epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt) - bs + 1, bs):
            b = perm[i:i + bs]
            loss = F.cross_entropy(F.dropout(xt[b], 0.3) @ W.T + B, yt[b], weight=cw, label_smoothing=0.1)
            if a.video_batch and len(vi):
                j = torch.multinomial(vw, a.video_batch, replacement=True)
                loss = loss + a.video_weight * F.cross_entropy(F.dropout(vx[j], 0.3) @ W.T + B, vy[j],
                                                               label_smoothing=0.2)
            loss = loss + a.anchor * ((W - W0) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        curve.append({"epoch": ep + 1, **val()})
        print(f"epoch {ep + 1}: {curve[-1]}", flush=True)
    return W.detach().numpy(), B.detach().numpy(), curve


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, required=True, help="FER-2013 folder (train/<class>/*)")
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="prepared training-video folders")
    ap.add_argument("--labels", type=Path, required=True, help="clip/span labels (training/video_spans.csv)")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    ap.add_argument("--out-model", type=Path, required=True, help="where to write the model with the refit head")
    ap.add_argument("--json", type=Path, required=True, help="JSON record to write")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/facecycle_head_cache"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--video-batch", type=int, default=64)
    ap.add_argument("--video-weight", type=float, default=0.5)
    ap.add_argument("--anchor", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    from facecycle.assets import default_model_dir
    from facecycle.probe.linear import Head, load_head, save_head
    from facecycle.train.semisup import EMOTION_CLASSES, label_video, read_clip_labels

    t0 = time.time()
    model = a.model or default_model_dir()
    feats = features(model, a.fer, a.data, a.cache)
    vlab = label_video(a.data, read_clip_labels(a.labels), _heldout())
    if len(vlab) != len(feats["video"]):
        raise SystemExit(f"{len(vlab)} labels for {len(feats['video'])} video crops")
    head = load_head(model / "expression_head.safetensors")
    if np.any(head.mean != 0) or np.any(head.std != 1):
        raise SystemExit("the head standardises its input; this script refits raw-feature heads only")
    w, b, curve = fit(head.weight, head.bias, feats, vlab, a)
    if a.out_model.exists():
        shutil.rmtree(a.out_model)
    shutil.copytree(model, a.out_model)
    meta = dict(head.meta)
    meta["source"] = meta.get("source", "") + (f"; head refit on the frozen feature with {a.labels.name} "
                                               "(scripts/refit_head.py, MODEL_CARD.md experiment 21)")
    save_head(Head(w, b, head.mean, head.std, meta), a.out_model / "expression_head.safetensors")
    with open(a.labels, newline="", encoding="utf-8") as f:
        rows = len(list(csv.DictReader(f)))
    rec = {"what": __doc__.splitlines()[0], "model": str(model), "labels": str(a.labels), "label_rows": rows,
           "video_crops_per_class": {EMOTION_CLASSES[k]: int((vlab == k).sum()) for k in range(7)},
           "options": {k: v for k, v in vars(a).items() if k in ("epochs", "lr", "video_batch", "video_weight",
                                                                    "anchor", "seed")},
           "fer_val_by_epoch": curve, "weight_change_rel": round(float(np.linalg.norm(w - head.weight)
                                                                        / np.linalg.norm(head.weight)), 4),
           "seconds": round(time.time() - t0, 1)}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"-> {a.out_model}, {a.json} ({rec['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
