#!/usr/bin/env python3
"""Is FaceCycle's motion alive? Flow statistics of checkpoints on prepared face crops.

For each checkpoint: the median ``flow_intensity`` (mean flow length, crop-side units), the largest flow
component, the mean absolute code and the mean absolute activation entering the motion decoder's flow head,
on up to ``--max`` crops of the given prepared datasets (cut to each model's framing). A collapsed motion
decoder gives flows near 0 for every face.

    python scripts/flow_check.py --data runs/default/vid1 runs/default/vid2 --out flow.json \\
        unsup=runs/default/unsupervised_3fbdedb.safetensors shipped=training/rt64w_vl/last.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from facecycle.checkpoint import load_checkpoint
    from facecycle.data.augment import normalize, warp_affine
    from facecycle.nn import flow_intensity
    from facecycle.train.semisup import affine_jitter, cut_framing, load_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="NAME=CHECKPOINT")
    ap.add_argument("--data", nargs="+", type=Path, required=True)
    ap.add_argument("--scale", type=float, default=1.3, help="the --scale the datasets were prepared with")
    ap.add_argument("--max", type=int, default=512)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    imgs, _, names = load_video(a.data, 64)
    idx = np.linspace(0, len(imgs) - 1, min(a.max, len(imgs))).astype(int)
    x0 = torch.from_numpy(imgs[idx]).permute(0, 3, 1, 2).float() / 255.0
    res = {"crops": len(idx), "tracks": len(names), "data": [str(d) for d in a.data], "models": {}}
    for item in a.models:
        name, _, path = item.partition("=")
        m = load_checkpoint(path).float().eval()
        cfg = m.config
        g = torch.Generator().manual_seed(0)
        theta = affine_jitter(x0, g, scale=(1.0, 1.0), rot_deg=0, shift=0.0, flip=False,
                              zoom=cut_framing(a.scale, cfg.crop_scale))
        x = normalize(warp_affine(x0, theta, cfg.image_size), cfg.mean, cfg.std)
        dec = m.exptoflow
        seen = {}  # the activation entering the flow head, caught on its way in (MotionDecoder.forward as is)
        hook = dec.toflow4.register_forward_pre_hook(lambda mod, inp, s=seen: s.__setitem__("h", inp[0]))
        with torch.no_grad():
            _, code = m.codegeneration(x)
            flow, _ = dec(code)
            fi = flow_intensity(flow)
        hook.remove()
        h = seen["h"]
        res["models"][name] = {
            "checkpoint": path, "config": cfg.name,
            "flow_intensity_median": float(fi.median()), "flow_intensity_p90": float(fi.quantile(0.9)),
            "flow_abs_max": float(flow.abs().max()), "code_abs_mean": float(code.abs().mean()),
            "decoder_hidden_abs_mean": float(h.abs().mean()),
            "flow_head_weight_abs_mean": float(dec.toflow4[3].weight.abs().mean())}
        print(name, json.dumps(res["models"][name]), flush=True)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
