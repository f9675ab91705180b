#!/usr/bin/env python3
"""Where do the neutral faces' neutrality and detail come from? The independent judge on four images per frame.

On the expressive held-out clips (``benchmarks/heldout_clips.csv``; every 5th of the first 75 frames, as
``eval_expression.py --neutralize``), for the largest face: the input crop at 192 px, the generator's 64-px
neutral face upscaled (``raw``), the shipped sharp neutral face (``sharp``: the raw face plus the detail of the
flow-warped full-resolution crop, :func:`realtime.neutral_detail.sharpen_neutral`) and their average
(``half``). Reports the share the judge (the ``fer`` peer) calls neutral and the detail ratio (variance of the
Laplacian against the input's).

    python scripts/neutral_sources.py [--model DIR] --out neutral_sources.json
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


def main() -> int:
    import cv2
    from eval_expression import lap_var

    from facecycle.probe.peer import FerPeer
    from realtime.analyzer import Analyzer
    from realtime.crops import crop_square
    from realtime.neutral_detail import sharpen_neutral
    from realtime.types import EMOTIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    judge = FerPeer()
    k = EMOTIONS.index("neutral")
    rows = [r for r in csv.DictReader(open(a.clips)) if r["kind"] == "expressive"]
    kinds = ("input", "raw", "sharp", "half")
    judged = {n: [] for n in kinds}
    detail = {n: [] for n in kinds[1:]}
    flows = []
    with Analyzer(a.model, backend="onnxruntime", neutralize=True) as an:
        an.inference.neutral_detail = False  # the generator's own output; the sharp one is made here
        for r in rows:
            n = 0
            for p in an.process_video(a.shared / "data" / r["clip"], max_frames=75):
                n += 1
                if not p.faces or n % 5:
                    continue
                f = p.largest_face
                inp = np.ascontiguousarray(crop_square(p.image, f.crop_box, a.size)[..., ::-1])
                raw = cv2.resize(f.neutral, (a.size, a.size), interpolation=cv2.INTER_CUBIC)
                x = an.inference  # the flow of this face, as the pipeline computed it
                out = x.backend.run("analyze", {"image": _input(x, inp)})
                flow = out["flow"][0]
                flows.append(float(out["intensity"][0]))  # flow_intensity, computed by the graph
                sharp = sharpen_neutral(f.neutral, inp, flow)
                half = np.clip(0.5 * raw.astype(np.float32) + 0.5 * sharp, 0, 255).astype(np.uint8)
                ims = dict(zip(kinds, (inp, raw, sharp, half), strict=True))
                for (name, im), q in zip(ims.items(), judge.predict(np.stack(list(ims.values()))), strict=True):
                    judged[name].append(float(q.argmax() == k))
                    if name in detail:
                        detail[name].append(lap_var(im) / max(1e-6, lap_var(inp)))
    out = {"model": str(a.model), "frames": len(judged["input"]),
           "judged_neutral_share": {n: float(np.mean(v)) for n, v in judged.items()},
           "detail_ratio_median": {n: float(np.median(v)) for n, v in detail.items()},
           "flow_intensity_median": float(np.median(flows))}
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


def _input(stage, crop_rgb: np.ndarray) -> np.ndarray:
    """The model's input for a face crop that is already square and framed: (1, 3, S, S) float32."""
    import cv2

    from facecycle.preprocess import to_input

    small = cv2.resize(crop_rgb, (stage.size, stage.size), interpolation=cv2.INTER_AREA)
    return to_input(small[None], stage.mean, stage.std)


if __name__ == "__main__":
    sys.exit(main())
