#!/usr/bin/env python3
"""At which detail should the emotion head read a face? A sweep of ``config.detail_px`` (MODEL_CARD.md, exp. 19).

The encoder and head learned emotions from FER-2013's 48-px stills, blown up to the 64-px input; video crops
reach it sharp. This script reads the same faces with the shipped weights at several ``detail_px`` values (0 =
the sharp 64-px input; 48 = FER-2013's detail) and reports, per value:

- labelled video frames (every ``--every``-th of the first ``--max-frames`` frames of each clip of each
  ``--clips`` CSV, the largest face, cut as the pipeline cuts it): per-frame accuracy against the clip's label,
  the clip reading (argmax of the mean probabilities) and the clip's median ``1 − P(neutral)``;
- FER-2013 validation (``--fer``; the probes' stratified 10 %): accuracy, to show what the low-pass costs on
  the stills themselves.

Only the ``feature`` changes with ``detail_px``; the weights are the shipped ones (torch, from
``model.safetensors``). ``--variants`` also measures, at ``--variant-px``, other mixes of views that cost two
encoder passes per face (the shipped reading costs three: the sharp face for the code, and the face and its
mirror at ``detail_px`` for the feature; before ``detail_px`` it was two): the face sharp with its mirror at
``detail_px``, the face sharp and at ``detail_px``, the face at ``detail_px`` alone, and the face sharp alone.

Usage::

    python scripts/eval_detail_px.py --clips benchmarks/heldout_clips.csv benchmarks/trained_expressive_clips.csv \\
        --fer ../shared/data/fer2013 --out benchmarks/DIR/detail_px_sweep.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval_expression import run_header  # noqa: E402  (re-exported for the other eval scripts)

from realtime.types import EMOTIONS  # noqa: E402


def collect(model_dir: Path, clips_csv: Path, shared: Path, every: int, max_frames: int) -> dict:
    """The pipeline's crops of the largest face: (N, S, S, 3) uint8 RGB, labels, clip index, clip rows."""
    from realtime.analyzer import Analyzer
    from realtime.crops import crop_square

    rows = [r for r in csv.DictReader(clips_csv.open()) if (shared / "data" / r["clip"]).is_file()]
    crops, labels, clip = [], [], []
    with Analyzer(model_dir, backend="onnxruntime") as an:
        size = an.inference.size
        for ci, r in enumerate(rows):
            for n, p in enumerate(an.process_video(shared / "data" / r["clip"], max_frames=max_frames)):
                if n % every or not p.faces:
                    continue
                crops.append(np.ascontiguousarray(crop_square(p.image, p.largest_face.crop_box, size)[..., ::-1]))
                labels.append(EMOTIONS.index(r["label"]))
                clip.append(ci)
    return {"crops": np.stack(crops), "labels": np.array(labels), "clip": np.array(clip), "rows": rows}


def load_model(model_dir: Path):
    """The torch model (fp32, eval) and the emotion head of an exported model folder."""
    from facecycle.checkpoint import load_checkpoint
    from facecycle.probe.linear import load_head

    return (load_checkpoint(model_dir / "model.safetensors").float().eval(),
            load_head(model_dir / "expression_head.safetensors"))


def fer_val(fer: Path, size: int) -> "tuple[np.ndarray, np.ndarray]":
    """The probes' FER-2013 validation split (stratified 10 %, seed 0): (N, size, size, 3) uint8 (the 48-px
    stills blown up as the probes do), (N,) class indices."""
    from facecycle.probe.features import resize_batch
    from facecycle.probe.run import expression_items, load_images

    items = expression_items(fer, "val", 0.1, 0)
    return resize_batch(load_images([p for p, _ in items], 48), size), np.array([c for _, c in items])


def write_result(out: Path, res: dict, t0: float) -> None:
    """Add the wall time since ``t0`` (``time.perf_counter()``) to ``res`` and write it to ``out`` as JSON."""
    res["seconds"] = round(time.perf_counter() - t0, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


#: two-pass mixes of views (name -> feature of normalised (B, 3, S, S) ``x`` from the expression encoder ``e``)
VARIANTS = {
    "sharp face + mirror at detail_px": lambda e, x: 0.5 * (e.trunk(x) + e.trunk(e.low(x.flip(-1)))),
    "sharp face + face at detail_px": lambda e, x: 0.5 * (e.trunk(x) + e.trunk(e.low(x))),
    "face at detail_px alone": lambda e, x: e.trunk(e.low(x)),
    "sharp face alone": lambda e, x: e.trunk(x),
}


def probabilities(model, head, images: np.ndarray, variant: "str | None" = None) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> (N, 7) emotion probabilities of ``model``'s feature (or a
    :data:`VARIANTS` mix of views) and ``head``."""
    import torch

    from facecycle.preprocess import to_input

    out = []
    with torch.no_grad():
        for i in range(0, len(images), 256):
            x = torch.from_numpy(to_input(images[i:i + 256], model.config.mean, model.config.std))
            f = model.features(x) if variant is None else VARIANTS[variant](model.codegeneration, x)
            out.append(head.predict(f.numpy()))
    z = np.concatenate(out)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def clip_report(p: np.ndarray, data: dict) -> dict:
    k = EMOTIONS.index("neutral")
    clips = []
    for ci, r in enumerate(data["rows"]):
        m = data["clip"] == ci
        if not m.any():
            continue
        mean = p[m].mean(0)
        clips.append({"clip": r["clip"], "label": r["label"], "frames": int(m.sum()),
                      "named": EMOTIONS[int(mean.argmax())],
                      "frame_accuracy": float((p[m].argmax(1) == data["labels"][m]).mean()),
                      "median_intensity": float(np.median(1.0 - p[m][:, k]))})
    return {"frames": int(len(p)), "frame_accuracy": float((p.argmax(1) == data["labels"]).mean()),
            "clips_named": int(sum(c["named"] == c["label"] for c in clips)), "clips": clips}


def clip_args(ap: "argparse.ArgumentParser", fer_required: bool = True) -> None:
    """The options every evaluation on labelled clips and FER-2013 validation shares: ``--model``, ``--clips``,
    ``--shared``, ``--fer``, ``--every``, ``--max-frames`` and ``--out``."""
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--clips", type=Path, nargs="+", required=True)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--fer", type=Path, required=fer_required, default=None)
    ap.add_argument("--every", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--out", type=Path, required=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    clip_args(ap, fer_required=False)
    ap.add_argument("--px", default="0,48,40,32", help="detail_px values (0 = sharp)")
    ap.add_argument("--variants", action="store_true", help="also the two-pass mixes of views (VARIANTS)")
    ap.add_argument("--variant-px", type=int, default=48)
    a = ap.parse_args()

    import torch

    from facecycle.model import FaceCycle

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    base, head = load_model(a.model)
    sets = {c.name: collect(a.model, c, a.shared, a.every, a.max_frames) for c in a.clips}
    fer = fer_val(a.fer, base.config.image_size) if a.fer else None
    res = {**run_header(a.model), "every": a.every, "max_frames": a.max_frames, "sweep": {}}
    runs = [(str(int(v)), int(v), None) for v in a.px.split(",")]
    if a.variants:
        res["variants"] = {}
        runs += [(name, a.variant_px, name) for name in VARIANTS]
    for key, px, variant in runs:
        m = FaceCycle(base.config.replace(detail_px=px), modules=base.module_names).eval()
        m.load_state_dict(base.state_dict())
        rec = {name: clip_report(probabilities(m, head, d["crops"], variant), d) for name, d in sets.items()}
        if fer is not None:
            pf = probabilities(m, head, fer[0], variant)
            rec["fer2013_val"] = {"n": int(len(pf)), "accuracy": float((pf.argmax(1) == fer[1]).mean())}
        if variant is None:
            res["sweep"][key] = rec
        else:
            res["variants"][key] = {"detail_px": px, **rec}
        print(key, json.dumps({k: (v["frame_accuracy"], v["clips_named"]) if "clips" in v else v["accuracy"]
                               for k, v in rec.items()}), flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
