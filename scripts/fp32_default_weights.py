#!/usr/bin/env python3
"""Restore the shipped default's ``model.safetensors`` in float32, the exact weights its ONNX graphs hold.

Until 0.2.1 the default shipped its PyTorch weights in float16 (``scripts/ship_default.py`` cast them to save
5.8 MB) while the graphs hold float32: ``--backend torch`` then ran a rounded model, up to 1.35e-3 off ONNX Runtime
in the feature (probe h78). This rebuilds the float32 weights without retraining or re-exporting:

- E, M and G (``codegeneration``, ``exptoflow``, ``Swap_Generator``) from the committed refit
  ``training/rt64w_nf/last.safetensors`` (float32; each equals the shipped float16 tensor once rounded: checked);
- the identity encoder (``idcodegen``) from ``identity.onnx``'s initializers (the graph was exported from the
  float32 module; each equals the shipped tensor once rounded: checked);
- the identity normalizer (``Swap_Norm``, training only: in no graph) as shipped, widened to float32.

It then exports the rebuilt model into a temporary folder and checks that every graph gives the shipped graph's
outputs (ONNX Runtime, the same random batch), writes ``model.safetensors`` (float32) and records it and the
emotion head (file, sha256, bytes) in ``manifest.json``, so the PyTorch backend checks that it runs the weights
the graphs came from. The graphs themselves are not touched (their bytes and sha256 stay).

Usage: ``python scripts/fp32_default_weights.py [--model facecycle/assets/default] [--check-only]``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper
    from safetensors import safe_open

    from facecycle.checkpoint import load_checkpoint, save_checkpoint
    from facecycle.export import export_onnx
    from facecycle.files import sha256_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle/assets/default")
    ap.add_argument("--refit", type=Path, default=ROOT / "training/rt64w_nf/last.safetensors")
    ap.add_argument("--check-only", action="store_true", help="check and report; write nothing")
    a = ap.parse_args()

    shipped = load_checkpoint(a.model / "model.safetensors").float().eval()
    sd = shipped.state_dict()
    with safe_open(str(a.model / "model.safetensors"), "pt") as f:
        half = {k: f.get_tensor(k) for k in f.keys()}
    full = {}
    with safe_open(str(a.refit), "pt") as f:
        for k in f.keys():
            full[k] = f.get_tensor(k)
    for i in onnx.load(str(a.model / "identity.onnx")).graph.initializer:
        if i.name.startswith("m.idcodegen."):
            full[i.name[2:]] = torch.from_numpy(numpy_helper.to_array(i).copy())
    restored, kept = [], []
    for k in sd:
        if k in full:
            x = full[k]
            if x.dtype != torch.float32 or x.shape != half[k].shape or not torch.equal(x.to(half[k].dtype), half[k]):
                raise SystemExit(f"{k}: the float32 source does not round to the shipped tensor")
            sd[k] = x
            restored.append(k)
        else:
            kept.append(k)
    if any(not k.startswith("Swap_Norm.") for k in kept):
        raise SystemExit(f"no float32 source for {[k for k in kept if not k.startswith('Swap_Norm.')][:5]}")
    shipped.load_state_dict(sd)
    print(f"{len(restored)} tensors from float32 sources, {len(kept)} (Swap_Norm, in no graph) widened")

    man = json.loads((a.model / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(shipped, Path(tmp), source="check")
        fresh = json.loads((Path(tmp) / "manifest.json").read_text())
        for name, spec in man["graphs"].items():
            feeds = {}
            for inp in spec["inputs"]:
                shape = [3 if isinstance(d, str) else d for d in inp["shape"]]
                feeds[inp["name"]] = rng.standard_normal(shape).astype(np.float32)
            ours = ort.InferenceSession(str(a.model / spec["file"]), providers=["CPUExecutionProvider"])
            new = ort.InferenceSession(str(Path(tmp) / fresh["graphs"][name]["file"]),
                                       providers=["CPUExecutionProvider"])
            err = max(float(np.abs(x - y).max()) for x, y in zip(ours.run(None, feeds), new.run(None, feeds),
                                                                   strict=True))
            print(f"{name}: shipped graph against a fresh export of the float32 weights, max abs diff {err:.2e}")
            if err > 1e-5:
                raise SystemExit(f"{name}: the rebuilt weights do not give the shipped graph's outputs")
    if a.check_only:
        return 0
    path = save_checkpoint(shipped, a.model / "model.safetensors")
    man["weights"] = {"file": path.name, "format": "facecycle-rt", "sha256": sha256_file(path),
                      "bytes": path.stat().st_size}
    head = a.model / "expression_head.safetensors"
    man["head"] = {"file": head.name, "sha256": sha256_file(head), "bytes": head.stat().st_size}
    (a.model / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, float32) and the manifest's weights and head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
