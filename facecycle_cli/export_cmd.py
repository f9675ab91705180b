"""``facecycle export``: checkpoint -> ONNX graphs + manifest.json."""
from __future__ import annotations

import argparse
from pathlib import Path

from facecycle.config import get_config
from facecycle.errors import OutputError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export ONNX graphs (analyze, neutralize, reexpress, identity)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint to export (ours or the authors')")
    src.add_argument("--random-config", metavar="NAME",
                     help="export randomly initialised weights of a config (for benchmarks and tests)")
    p.add_argument("--config", default=None, help="config of an authors' checkpoint (default: paper)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--graphs", default=None, help="comma-separated subset of graphs")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--atol", type=float, default=1e-4, help="validation tolerance (max abs)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-config")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    import torch

    from facecycle.export import export_onnx
    from facecycle.model import FaceCycle

    if args.opset < 17:
        raise UsageError("--opset must be >= 17")
    if args.checkpoint:
        from facecycle.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, args.config)
        source = str(args.checkpoint)
    else:
        try:
            cfg = get_config(args.random_config)
        except ValueError as e:
            raise UsageError(str(e)) from None
        torch.manual_seed(args.seed)
        model = FaceCycle(cfg).eval()
        source = f"random:{cfg.name}:seed{args.seed}"
    graphs = [g.strip() for g in args.graphs.split(",")] if args.graphs else None
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{args.out}: {e.strerror or e}") from None
    man = export_onnx(model, args.out, graphs=graphs, opset=args.opset, atol=args.atol, source=source)
    for name, v in man.get("validation", {}).items():
        print(f"{name:11s} ok  max|onnxruntime - torch| = {v['max_abs_err']:.2e}")
    print(f"wrote {Path(args.out) / 'manifest.json'}")
    return 0
