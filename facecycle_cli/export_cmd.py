"""``facecycle export``: checkpoint -> ONNX graphs + manifest.json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from facecycle.config import get_config
from facecycle.errors import OutputError, UsageError
from facecycle.files import sha256_file
from realtime.heads import HEAD_FILE


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
    head = p.add_mutually_exclusive_group()
    head.add_argument("--head", metavar="PATH", default=None,
                      help="the emotion head to ship with the graphs (as expression_head.safetensors): a model "
                           "folder's expression_head.safetensors or a training run's head.safetensors (default: "
                           "the one in --checkpoint's folder, or beside a --checkpoint file, if any; without a head "
                           "the CSV's emotion columns stay empty)")
    head.add_argument("--no-head", action="store_true", help="export without an emotion head")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    import torch

    from facecycle.export import check_exportable, export_onnx
    from facecycle.model import FaceCycle

    if args.opset < 17:
        raise UsageError("--opset must be >= 17")
    if not args.atol >= 0:
        raise UsageError(f"--atol must be >= 0, not {args.atol:g}")
    if args.config is not None:
        get_config(args.config)  # an unknown name: a usage error (exit 2) before the checkpoint is read
    if args.checkpoint:
        from facecycle.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint, args.config)
        # where it came from, as it will still mean something once the folder is copied elsewhere: the absolute
        # path and the file's checksum (a run's relative "run/last.safetensors" said nothing)
        ck = Path(args.checkpoint).resolve()
        f = ck / "model.safetensors" if ck.is_dir() else ck
        source = f"{ck} (sha256 {sha256_file(f)[:16]})" if f.is_file() else str(ck)
    else:
        cfg = get_config(args.random_config)  # an unknown name: UnknownConfig, a usage error
        torch.manual_seed(args.seed)
        model = FaceCycle(cfg).eval()
        source = f"random:{cfg.name}:seed{args.seed}"
    head_path = None if args.no_head else _head_path(args)
    head = None
    if head_path is not None:  # checked before anything is written
        from facecycle.probe.linear import expression_head_for

        head = expression_head_for(head_path, model.config, source=source)
    graphs = [g.strip() for g in args.graphs.split(",")] if args.graphs else None
    check_exportable(model, graphs)  # a checkpoint of some modules only: refused before the folder is made
    # export_onnx makes --out (and removes it again where it made it and the export fails). The weights go with the
    # graphs (model.safetensors, their sha256 in the manifest): `--backend torch` runs what ONNX Runtime runs, never
    # weights an earlier export left in the folder
    man = export_onnx(model, args.out, graphs=graphs, opset=args.opset, atol=args.atol, source=source,
                      weights=True, head=head)
    for name, v in man.get("validation", {}).items():
        print(f"{name:11s} ok  max|onnxruntime - torch| = {v['max_abs_err']:.2e}")
    out_head = Path(args.out) / HEAD_FILE
    if head is not None:
        bias = json.loads(head.meta.get("class_bias", "{}"))
        print(f"emotion head from {head_path}: {len(head.classes)} classes"
              + (f", class bias {', '.join(f'{c} {b:+g}' for c, b in bias.items())}" if bias else ""))
    else:
        try:
            out_head.unlink(missing_ok=True)  # a head left by an earlier export into this folder belongs to that model
        except OSError as e:
            raise OutputError(f"{out_head}: cannot remove the earlier export's head ({e.strerror or e})") from None
        print("no emotion head (--head PATH adds one): the CSV's emotion columns stay empty"
              + (" (--no-head)" if args.no_head else ""))
    print(f"wrote {Path(args.out) / 'manifest.json'}")
    return 0


def _head_path(args: argparse.Namespace) -> Optional[Path]:
    """``--head``, else the head that goes with ``--checkpoint`` (a model folder's or a training run's): inside it
    where it is a folder (an exported model folder: never a head in the folder above, which belongs to another
    model), beside it where it is a file; else None."""
    if args.head:
        return Path(args.head)
    if not args.checkpoint:
        return None
    ck = Path(args.checkpoint)
    folder = ck if ck.is_dir() else ck.parent
    for name in (HEAD_FILE, "head.safetensors"):
        p = folder / name
        if p.is_file():
            return p
    return None
