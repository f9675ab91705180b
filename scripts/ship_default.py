#!/usr/bin/env python3
"""Turn a training run into the shipped default model directory.

Writes into ``--out`` (``facecycle/assets/default``): the ONNX graphs + manifest
(validated against PyTorch with ONNX Runtime), ``model.safetensors`` (float32, our
checkpoint format, the graphs' own weights) and ``expression_head.safetensors`` (the emotion head trained
with the encoder, in the probes' head format, so ``facecycle probe eval`` and the
pipeline both read it).

Usage::

    python scripts/ship_default.py --checkpoint runs/rt64-id/last.safetensors \\
        --head runs/rt64/head.safetensors --out facecycle/assets/default --note "semisup 10000 steps"
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rebuild(model, config):
    """``model``'s weights in a model built from ``config`` (fields that change buffers or the graph only)."""
    from facecycle.model import FaceCycle

    out = FaceCycle(config, modules=model.module_names).eval()
    out.load_state_dict(model.state_dict())
    return out


def with_identity(model, donor):
    """``model`` (E, M, G) with ``donor``'s identity encoder and normalizer (same config apart from them)."""
    from facecycle.model import ALL_MODULES, IDENTITY_MODULES, FaceCycle

    if not donor.has_identity:
        raise SystemExit("--identity-from: that checkpoint has no identity modules")

    def sizes(c):  # what must agree: everything but the name and the reading (flip, detail)
        return c.replace(name="", feature_flip=False, detail_px=0)

    if sizes(donor.config) != sizes(model.config):
        raise SystemExit("--identity-from: that checkpoint's sizes differ from --checkpoint's")
    out = FaceCycle(model.config, modules=ALL_MODULES).eval()
    sd = dict(model.state_dict())
    sd.update({k: v for k, v in donor.state_dict().items() if k.split(".")[0] in IDENTITY_MODULES})
    out.load_state_dict(sd)
    return out


def main() -> int:
    from facecycle.checkpoint import load_checkpoint
    from facecycle.export import export_onnx
    from facecycle.probe.linear import expression_head_for, parse_class_bias, with_class_bias

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--head", type=Path, required=True, help="RUN/head.safetensors of the semisup run")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default="", help="free text stored as the manifest's source")
    ap.add_argument("--val-acc", type=float, default=None, help="validation accuracy to record in the head")
    ap.add_argument("--feature-flip", action="store_true",
                    help="ship with config.feature_flip (the feature averages the image and its mirror)")
    ap.add_argument("--detail-px", type=int, default=None,
                    help="ship with config.detail_px (the emotion head's feature read low-passed to this many "
                         "pixels; 48 = FER-2013's stills, 0 = sharp; default: the checkpoint's; MODEL_CARD.md "
                         "experiment 19)")
    ap.add_argument("--class-bias", action="append", default=[], metavar="CLASS=B",
                    help="add B to the emotion head's bias of CLASS (repeatable; the shipped head: sad=0.25, "
                         "MODEL_CARD.md experiment 37)")
    ap.add_argument("--identity-from", type=Path, default=None,
                    help="take the identity encoder and normalizer from this checkpoint (e.g. the shipped "
                         "model.safetensors, when --checkpoint is a motion-stage run without them)")
    a = ap.parse_args()

    model = load_checkpoint(a.checkpoint).float().eval()
    if a.identity_from is not None:
        model = with_identity(model, load_checkpoint(a.identity_from).float().eval())
    cfg = {}
    if a.feature_flip:
        cfg["feature_flip"] = True
    if a.detail_px is not None:
        cfg["detail_px"] = int(a.detail_px)
    if cfg:  # config fields that change the graphs, not the weights: rebuild the model with them
        model = rebuild(model, model.config.replace(**cfg))
    tmp = a.out.with_name(a.out.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    head = expression_head_for(a.head, model.config, source=a.note, accuracy=a.val_acc)
    # the weights in float32, the graphs' own (float16 made --backend torch a rounded model, 1.35e-3 off in the
    # feature), recorded in the manifest with the head (file, sha256), which the backends check
    man = export_onnx(model, tmp, source=a.note or f"trained: {a.checkpoint}", weights=True,
                      head=with_class_bias(head, parse_class_bias(a.class_bias)))
    if a.out.exists():
        shutil.rmtree(a.out)
    tmp.rename(a.out)
    total = sum(p.stat().st_size for p in a.out.iterdir())
    print(f"wrote {a.out}: {', '.join(sorted(p.name for p in a.out.iterdir()))}; {total / 1e6:.1f} MB; "
          f"graphs {list(man['graphs'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
