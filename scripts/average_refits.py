#!/usr/bin/env python3
"""Average the weights that differ between checkpoints of one model (a "model soup" of refits).

Refits of M and G that start from the same model and share E, the head and the identity modules differ only in
M's and G's weights; this writes their mean (every other tensor as in the first checkpoint, with its metadata)
and copies the first run's ``head.safetensors`` beside it. MODEL_CARD.md experiment 26 (``soup4``):

    python scripts/average_refits.py --out /work/runs/soup4 training/rt64w_nf/last.safetensors \
        /work/runs/seed0/last.safetensors /work/runs/seed1/last.safetensors /work/runs/seed2/last.safetensors
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> int:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder: last.safetensors (and head.safetensors)")
    a = ap.parse_args()
    if len(a.checkpoints) < 2:
        ap.error("give two checkpoints or more")
    try:
        sds = [load_file(str(p)) for p in a.checkpoints]
    except Exception as e:  # a missing file, or one that is not safetensors (safetensors raises its own types)
        print(f"error: cannot read the checkpoints: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
              file=sys.stderr)
        return 2
    if any(set(s) != set(sds[0]) or any(s[k].shape != v.shape for k, v in sds[0].items()) for s in sds[1:]):
        print("error: the checkpoints are not of one model (their tensors differ in names or shapes)", file=sys.stderr)
        return 2
    with safe_open(str(a.checkpoints[0]), "pt") as f:
        meta = f.metadata()
    out, averaged = {}, set()
    for k, v in sds[0].items():
        if v.dtype.is_floating_point and any(not torch.equal(v, s[k]) for s in sds[1:]):
            out[k] = (sum(s[k].float() for s in sds) / len(sds)).to(v.dtype)
            averaged.add(k.split(".")[0])
        else:
            out[k] = v
    a.out.mkdir(parents=True, exist_ok=True)
    save_file(out, str(a.out / "last.safetensors"), metadata=meta)
    head = a.checkpoints[0].parent / "head.safetensors"
    if head.is_file():
        shutil.copy(head, a.out / "head.safetensors")
    print(f"averaged {len(sds)} checkpoints ({', '.join(sorted(averaged)) or 'nothing differed'}) -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
