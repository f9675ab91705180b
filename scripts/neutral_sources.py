#!/usr/bin/env python3
"""Where do the neutral faces' neutrality and detail come from? The independent judge on four images per frame.

On the expressive held-out clips (``benchmarks/heldout_clips.csv``; the frames of ``neutral_compare.py``'s
``report`` set: every 5th of the first 75, as ``eval_expression.py --neutralize``), for the largest face: the
input crop at 192 px, the generator's 64-px neutral face upscaled (``raw``, after the pipeline's
``--neutral-passes``), the shipped sharp neutral face (``sharp``: the raw face plus the detail of the
full-resolution crop warped by every pass's flow, :func:`realtime.neutral_detail.sharpen_neutral`) and their
average (``half``). Reports the share the judge (the ``fer`` peer) calls neutral and the detail ratio
(variance of the Laplacian against the input's). The exported model on ONNX Runtime, as the pipeline runs it.

    python scripts/neutral_sources.py [--model DIR] [--neutral-passes N] --out neutral_sources.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> int:
    import cv2
    from eval_expression import lap_var
    from neutral_compare import frames

    from facecycle.preprocess import from_output, to_input
    from facecycle.probe.peer import FerPeer
    from realtime.backend import open_model
    from realtime.inference import NEUTRAL_PASSES, FaceInference
    from realtime.neutral_detail import sharpen_neutral
    from realtime.types import EMOTIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--neutral-passes", type=int, default=NEUTRAL_PASSES)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    judge = FerPeer()
    k = EMOTIONS.index("neutral")
    big, small, _ = frames(a.clips, a.shared, "report")
    size = big.shape[1]
    kinds = ("input", "raw", "sharp", "half")
    with open_model(a.model, backend="onnxruntime") as backend:
        inf = FaceInference(backend, neutralize=True, neutral_passes=a.neutral_passes)
        if small.shape[1] != inf.size:
            raise SystemExit(f"{a.model}: model input {inf.size} px, frames prepared at {small.shape[1]} px")
        x = to_input(small, inf.mean, inf.std)
        out = backend.run("analyze", {"image": x})
        n, flows = inf.run_neutral(x, out["flow"])
    n64 = from_output(n, inf.mean, inf.std)
    raw = np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC) for g in n64])
    sharp = np.stack([sharpen_neutral(g, c, flows[:, i]) for i, (g, c) in enumerate(zip(n64, big, strict=True))])
    half = np.clip(0.5 * raw.astype(np.float32) + 0.5 * sharp, 0, 255).astype(np.uint8)
    ims = dict(zip(kinds, (big, raw, sharp, half), strict=True))
    res = {"model": str(a.model), "neutral_passes": a.neutral_passes, "frames": len(big),
           "judged_neutral_share": {name: float(np.mean(judge.predict(im).argmax(1) == k)) for name, im in ims.items()},
           "detail_ratio_median": {name: float(np.median([lap_var(o) / max(1e-6, lap_var(c))
                                                          for o, c in zip(im, big, strict=True)]))
                                   for name, im in ims.items() if name != "input"},
           "flow_intensity_median": float(np.median(out["intensity"]))}
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
