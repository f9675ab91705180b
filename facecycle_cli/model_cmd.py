"""``facecycle model info`` and ``facecycle model convert``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from facecycle.config import get_config, list_configs
from facecycle.errors import InputError, OutputError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="model information and checkpoint conversion")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")

    info = msub.add_parser("info", help="parameter counts per module of a config or checkpoint")
    src = info.add_mutually_exclusive_group()
    src.add_argument("--config", default=None, help=f"config name ({', '.join(list_configs())})")
    src.add_argument("--checkpoint", default=None, help="a checkpoint (ours or the authors')")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)

    conv = msub.add_parser("convert", help="convert between our safetensors format and the authors' layout")
    conv.add_argument("input", help="checkpoint to read")
    conv.add_argument("output", help="'.safetensors' (ours) or '.tar'/'.pth'/'.pt' (authors' layout)")
    conv.add_argument("--config", default=None, help="config of an authors' checkpoint (default: paper)")
    conv.add_argument("--to", choices=("facecycle", "official"), default=None,
                      help="output format (default: from the output's extension)")
    conv.add_argument("--fp16", action="store_true", help="store our format in float16")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing output")
    conv.set_defaults(func=_convert)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _info(args: argparse.Namespace) -> int:
    from facecycle.model import FaceCycle

    if args.checkpoint:
        from facecycle.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint)
    else:
        try:
            cfg = get_config(args.config or "paper")
        except ValueError as e:
            raise UsageError(str(e)) from None
        model = FaceCycle(cfg)
    counts = model.parameter_counts()
    out = {"config": model.config.name, "image_size": model.config.image_size,
           "feature_dim": model.config.feature_dim, "code_dim": model.config.code_dim,
           "parameters": counts, "total": sum(counts.values())}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"config {out['config']} ({out['image_size']} px, feature {out['feature_dim']}, code {out['code_dim']})")
        for k, v in counts.items():
            print(f"  {k:16s} {v:>12,d}")
        print(f"  {'total':16s} {out['total']:>12,d}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    import torch

    from facecycle.checkpoint import load_checkpoint, save_checkpoint, save_official

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise InputError(f"{src}: no such file")
    if dst.exists() and not args.overwrite:
        raise OutputError(f"{dst} exists (use --overwrite)")
    fmt = args.to or ("facecycle" if dst.suffix == ".safetensors" else
                      "official" if dst.suffix in (".tar", ".pth", ".pt") else None)
    if fmt is None:
        raise UsageError(f"cannot tell the format of {dst}; use --to facecycle|official")
    model = load_checkpoint(src, args.config)
    try:
        if fmt == "facecycle":
            save_checkpoint(model, dst, dtype=torch.float16 if args.fp16 else None)
        else:
            save_official(model, dst)
    except OSError as e:
        raise OutputError(f"{dst}: {e.strerror or e}") from None
    print(f"wrote {dst} ({fmt}, modules: {', '.join(model.module_names)})")
    return 0
