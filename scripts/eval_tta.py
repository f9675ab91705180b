#!/usr/bin/env python3
"""Does reading a face from several crops help the emotion head? (MODEL_CARD.md, experiment 43.)

The pipeline reads each face once, from the square the model was trained on (``crop_scale`` 1.03 × the
detector's box), already averaged with its mirror image (``feature_flip``). A detector box jitters from frame
to frame and from person to person, and video faces are framed a little differently from FER-2013's. This
script reads the same faces from several squares at once (other scales and small shifts of the pipeline's
square) and averages the head's probabilities over them, as a test-time augmentation would.

Faces, each read through the shipped ``analyze.onnx`` and head (ONNX Runtime, the class bias included):

- ``heldout``: every ``--every``-th of the first ``--max-frames`` frames of the clips of
  ``benchmarks/heldout_clips.csv`` (people never trained on), largest face, the pipeline's box;
- ``trained``: the same for ``benchmarks/trained_expressive_clips.csv`` (people of the clip-labelled fine-tune);
- ``spans``: every frame of the unlabelled expressive spans of ``training/video_spans.csv`` (``eval_spans.py``);
- ``fer_val``: FER-2013's stratified 10 % validation split, framed as ``probe eval`` frames it (``auto``).

Per view set: frame accuracy, clip / span readings (argmax of the mean probabilities, as the acceptance test
reads a clip) and the time the extra reads cost.

Usage::

    python scripts/eval_tta.py --fer ../shared/data/fer2013 --out benchmarks/DIR/tta.json
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import write_result  # noqa: E402
from eval_spans import find_clip, unlabelled_spans  # noqa: E402

from realtime.crops import crop_square  # noqa: E402
from realtime.types import EMOTIONS  # noqa: E402

#: the loose crop kept per face: LOOSE × the pipeline's square, LOOSE_PX pixels
LOOSE, LOOSE_PX = 1.6, 176

#: view sets: (scale relative to the pipeline's square, shift x, shift y as fractions of its side)
VIEW_SETS: Dict[str, List[Tuple[float, float, float]]] = {
    "shipped": [(1.0, 0.0, 0.0)],
    "scales_0.9_1.1": [(1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0)],
    "scales_0.85_1.2": [(1.0, 0.0, 0.0), (0.85, 0.0, 0.0), (1.2, 0.0, 0.0)],
    "shifts_0.04": [(1.0, 0.0, 0.0), (1.0, 0.04, 0.0), (1.0, -0.04, 0.0), (1.0, 0.0, 0.04), (1.0, 0.0, -0.04)],
    "scales_shifts": [(1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0), (1.0, 0.04, 0.0), (1.0, -0.04, 0.0),
                      (1.0, 0.0, 0.04), (1.0, 0.0, -0.04)],
    "only_0.9": [(0.9, 0.0, 0.0)],
    "only_1.1": [(1.1, 0.0, 0.0)],
}


def loose_of(image_bgr: np.ndarray, square: Tuple[int, int, int]) -> np.ndarray:
    """The LOOSE × ``square`` around its centre, LOOSE_PX pixels, BGR."""
    x0, y0, s = square
    side = int(round(s * LOOSE))
    c = (x0 + s / 2.0, y0 + s / 2.0)
    return crop_square(image_bgr, (int(round(c[0] - side / 2)), int(round(c[1] - side / 2)), side), LOOSE_PX)


def view(loose: np.ndarray, scale: float, dx: float, dy: float, size: int) -> np.ndarray:
    """One view (size × size, the loose crop's colour order) of the pipeline's square scaled and shifted."""
    base = LOOSE_PX / LOOSE
    side = base * scale
    cx, cy = LOOSE_PX / 2 + dx * base, LOOSE_PX / 2 + dy * base
    return crop_square(loose, (int(round(cx - side / 2)), int(round(cy - side / 2)), max(1, int(round(side)))), size)


def video_faces(clips: Sequence[Tuple[str, int, int, int]], shared: Path, every: int) -> dict:
    """Loose crops (N, LOOSE_PX, LOOSE_PX, 3) BGR of the largest face, labels, group index.
    ``clips``: (path, label index, first frame, last frame)."""
    from realtime.analyzer import Analyzer

    loose, labels, group = [], [], []
    with Analyzer(backend="onnxruntime") as an:
        for gi, (path, lab, start, end) in enumerate(clips):
            for n, p in enumerate(an.process_video(path, max_frames=end + 1)):
                if n < start or (n - start) % every or not p.faces:
                    continue
                loose.append(loose_of(p.image, p.largest_face.crop_box))
                labels.append(lab)
                group.append(gi)
    return {"loose": np.stack(loose), "labels": np.array(labels), "group": np.array(group)}


def fer_faces(fer: Path) -> dict:
    """FER-2013 validation, framed as ``probe eval`` frames it (``auto``), as loose crops."""
    import cv2

    from facecycle.probe.run import expression_items
    from realtime.crops import StillFramer
    from realtime.detectors import create_detector

    items = expression_items(fer, "val")
    framer = StillFramer(create_detector("centerface", max_faces=1), 1.03, "auto")
    loose, labels = [], []
    for path, c in items:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        sq = framer.square(img)
        if sq is None or sq[2] >= framer.whole_above * min(h, w):
            sq = (0, 0, min(h, w))  # the whole (square) still is the model's square
        loose.append(loose_of(img, sq))
        labels.append(c)
    return {"loose": np.stack(loose), "labels": np.array(labels), "group": np.arange(len(labels))}


def read(backend, head, loose: np.ndarray, views: List[Tuple[float, float, float]], size: int, mean, std,
         batch: int = 64) -> Tuple[np.ndarray, float]:
    """Mean head probabilities (N, 7) over ``views`` of each loose crop, and the seconds it took."""
    from facecycle.preprocess import to_input

    t = time.perf_counter()
    out = np.zeros((len(loose), len(EMOTIONS)), np.float64)
    for v in views:
        for i in range(0, len(loose), batch):
            crops = np.stack([view(x, *v, size) for x in loose[i:i + batch]])[..., ::-1]
            x = to_input(np.ascontiguousarray(crops), mean, std)
            out[i:i + batch] += head.predict(backend.run("analyze", {"image": x})["feature"])
    return out / len(views), time.perf_counter() - t


def report(p: np.ndarray, d: dict) -> dict:
    right = p.argmax(1) == d["labels"]
    groups = sorted(set(d["group"].tolist()))
    named = [int(p[d["group"] == g].mean(0).argmax() == d["labels"][d["group"] == g][0]) for g in groups]
    return {"frames": int(len(right)), "frame_accuracy": round(float(right.mean()), 4),
            "named": int(sum(named)), "groups": len(groups), "named_each": named}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--fer", default=None, help="FER-2013 root: also its validation split")
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--views", nargs="*", default=list(VIEW_SETS))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from engines import open_backend
    from facecycle.assets import default_model_dir
    from realtime.heads import ExpressionHead

    shared = Path(a.shared)
    t0 = time.perf_counter()
    sets: Dict[str, dict] = {}
    for name, table in (("heldout", ROOT / "benchmarks" / "heldout_clips.csv"),
                        ("trained", ROOT / "benchmarks" / "trained_expressive_clips.csv")):
        rows = [r for r in csv.DictReader(table.open()) if (shared / "data" / r["clip"]).is_file()]
        sets[name] = video_faces([(str(shared / "data" / r["clip"]), EMOTIONS.index(r["label"]), 0,
                                   a.max_frames - 1) for r in rows], shared, a.every)
        sets[name]["names"] = [r["clip"] for r in rows]
    spans = unlabelled_spans(ROOT / "training" / "video_spans.csv", ROOT / "training" / "video_labels.csv")
    sets["spans"] = video_faces([(str(find_clip(shared, r["clip"])), EMOTIONS.index(r["label"]), int(r["start"]),
                                  int(r["end"])) for r in spans], shared, 1)
    sets["spans"]["names"] = [f"{r['clip']}:{r['start']}" for r in spans]
    if a.fer:
        sets["fer_val"] = fer_faces(Path(a.fer))
    print("faces:", {k: len(v["labels"]) for k, v in sets.items()}, f"({time.perf_counter() - t0:.0f} s)", flush=True)

    model = default_model_dir()
    res: dict = {"script": "scripts/eval_tta.py", "model": str(model), "loose": [LOOSE, LOOSE_PX],
                 "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "views": {}, "results": {}}
    with open_backend(model, "onnxruntime-cpu", intra_op_threads=2) as be:
        man = be.manifest
        size, mean, std = int(man["input"]["size"]), tuple(man["input"]["mean"]), tuple(man["input"]["std"])
        head = ExpressionHead.find(model)
        for vs in a.views:
            res["views"][vs] = VIEW_SETS[vs]
            r: dict = {}
            for name, d in sets.items():
                p, secs = read(be, head, d["loose"], VIEW_SETS[vs], size, mean, std)
                r[name] = {**report(p, d), "seconds": round(secs, 1)}
            res["results"][vs] = r
            print(f"{vs:16s} " + "  ".join(f"{k} {v['frame_accuracy']:.4f} ({v['named']}/{v['groups']})"
                                           if k != "fer_val" else f"{k} {v['frame_accuracy']:.4f}"
                                           for k, v in r.items()), flush=True)
    res["names"] = {k: v.get("names") for k, v in sets.items() if k != "fer_val"}
    write_result(Path(a.out), res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
