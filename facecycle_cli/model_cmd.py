"""``facecycle model info`` and ``facecycle model convert``."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

from facecycle.config import get_config, list_configs
from facecycle.errors import InputError, OutputError, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="model information and checkpoint conversion")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")

    info = msub.add_parser("info", help="what a model is: the shipped default (no option), an exported model "
                                        "folder, a checkpoint or a config",
                           description="Without an option: the model `facecycle process` runs by default (config, "
                                       "parameters per module, graphs and their sizes, the emotion head's classes "
                                       "and bias; no torch needed). --config and --checkpoint need torch.")
    src = info.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="DIR", default=None,
                     help="an exported model folder (manifest.json; default: the shipped model)")
    src.add_argument("--checkpoint", default=None, help="a checkpoint (ours or the authors')")
    info.add_argument("--config", default=None,
                      help=f"config name ({', '.join(list_configs())}): alone, a random model of it; with "
                           "--checkpoint, the config of an authors'-layout checkpoint (default paper; ours record "
                           "their own)")
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


def model_dir_info(model_dir: Path) -> dict:
    """What an exported model folder holds, from its files alone (no torch, no ONNX Runtime session): the config,
    parameters per module (from ``model.safetensors`` where shipped), graphs with their sizes, and the expression
    head's classes and class bias."""
    from safetensors import safe_open

    from engines.base import GraphSpec, graph_file, model_file, read_manifest
    from facecycle.errors import ModelError
    from facecycle.files import check_sha256
    from realtime.heads import HEAD_FILE, ExpressionHead

    man = read_manifest(model_dir)
    cfg = man.get("config") or {}
    graphs = {name: {"file": g.get("file"), "bytes": (model_dir / g["file"]).stat().st_size
                     if g.get("file") and (model_dir / g["file"]).is_file() else None}
              for name, g in man["graphs"].items()}
    out = {"model_dir": str(model_dir), "config": cfg.get("name"), "image_size": cfg.get("image_size"),
           "code_dim": cfg.get("code_dim"), "settings": {k: cfg[k] for k in ("encoder_width", "width", "crop_scale",
                                                                                "gray_input", "feature_flip",
                                                                                "detail_px") if k in cfg},
           "source": man.get("source"), "graphs": graphs, "parameters": None, "total": None, "head": None,
           "bytes": sum(f.stat().st_size for f in model_dir.iterdir() if f.is_file())}
    rec = man.get("weights") or {}
    ckpt = model_dir / (model_file(rec["file"], "weights") if rec.get("file") else "model.safetensors")
    if ckpt.is_file():  # the check the PyTorch backend makes: the weights the graphs were exported from
        check_sha256(ckpt, str(rec.get("sha256") or ""), "weights",
                     "re-export with `facecycle export --checkpoint PATH --out DIR`")
    try:
        if ckpt.is_file():
            counts: dict = {}
            with safe_open(str(ckpt), framework="numpy") as f:
                for k in f.keys():
                    counts[k.split(".")[0]] = counts.get(k.split(".")[0], 0) + int(
                        math.prod(f.get_slice(k).get_shape()))
            out["parameters"], out["total"] = counts, sum(counts.values())
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, ValueError
        raise ModelError(f"{model_dir}: cannot read the model's files ({str(e).splitlines()[0]})") from None
    head = ExpressionHead.find(model_dir)  # the pipeline's own reading of it (a damaged file: a ModelError)
    if head is not None and "analyze" in man["graphs"]:  # and the size check `process` makes
        fdim = next((o["shape"][1] for o in GraphSpec("analyze", man["graphs"]["analyze"]).outputs
                     if o["name"] == "feature" and len(o["shape"]) > 1), None)
        if fdim is not None and fdim != head.feature_dim:
            raise ModelError(f"{model_dir / HEAD_FILE}: the expression head reads {head.feature_dim}-d features; "
                             f"this model's analyze graph gives {fdim}-d (a head of another model?)")
    if head is not None:
        out["head"] = {"classes": list(head.classes), "feature_dim": head.feature_dim,
                       "class_bias": json.loads(head.meta.get("class_bias", "{}")), "fit": head.meta.get("fit")}
    for name, g in man["graphs"].items():  # the check `process` makes when it loads the model
        graph_file(model_dir, GraphSpec(name, g))
    return out


def _check_not_interrupted(model_dir: Path) -> None:
    """A ModelError for a folder an export was interrupted in: no ``manifest.json`` (an export writes it last, after
    removing the earlier one), but graphs, weights or an export's staging folder."""
    from facecycle.errors import ModelError

    if (model_dir / "manifest.json").is_file():
        return
    try:
        left = [f.name for f in model_dir.iterdir()
                if f.suffix == ".onnx" or f.name == "model.safetensors" or f.name.startswith(".export-")]
    except OSError:
        return
    if left:
        raise ModelError(f"{model_dir}: no manifest.json, but {', '.join(sorted(left)[:3])}"
                         f"{' …' if len(left) > 3 else ''}: an interrupted export? re-run facecycle export")


def _print_dir_info(out: dict) -> None:
    mb = out["bytes"] / 1e6
    print(f"model {out['model_dir']} ({mb:.1f} MB)")
    st = ", ".join(f"{k} {v}" for k, v in out["settings"].items())
    print(f"config {out['config']} ({out['image_size']} px, code {out['code_dim']}{', ' + st if st else ''})")
    if out["source"]:
        print(f"trained: {out['source']}")
    if out["parameters"]:
        for k, v in out["parameters"].items():
            print(f"  {k:16s} {v:>12,d}")
        print(f"  {'total':16s} {out['total']:>12,d}")
    print("graphs: " + ", ".join(f"{n} ({g['bytes'] / 1e6:.1f} MB)" if g["bytes"] is not None else f"{n} (missing)"
                                 for n, g in out["graphs"].items()))
    h = out["head"]
    if h is None:
        print("emotion head: none (the CSV's emotion columns stay empty)")
    else:
        bias = ", ".join(f"{c} {b:+g}" for c, b in h["class_bias"].items())
        print(f"emotion head: {len(h['classes'] or [])} classes ({', '.join(h['classes'] or [])}) on the "
              f"{h['feature_dim']}-d feature" + (f"; class bias {bias}" if bias else ""))


def _info(args: argparse.Namespace) -> int:
    if args.model and args.config:
        raise UsageError("--config describes a checkpoint or a random model, not an exported --model folder")
    if not (args.config or args.checkpoint):
        from facecycle.assets import default_model_dir

        d = Path(args.model) if args.model else default_model_dir()
        if d.is_file():
            raise InputError(f"{d}: a file; --model takes the exported model's folder ({d.parent}?)")
        if not d.is_dir():
            raise InputError(f"{d}: no such folder")
        _check_not_interrupted(d)
        out = model_dir_info(d)
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            _print_dir_info(out)
        return 0

    from facecycle.model import FaceCycle

    if args.checkpoint:
        model = _load(args.checkpoint, args.config)
    else:
        model = FaceCycle(get_config(args.config))  # an unknown name: UnknownConfig, a usage error
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


def _load(path, config: Optional[str]):
    """A checkpoint; an unknown config name a usage error (:class:`facecycle.config.UnknownConfig`), checked before
    the file is read. A checkpoint that does not fit the config it is read with names the configs it fits
    (:func:`facecycle.checkpoint.load_checkpoint` does, for every command)."""
    from facecycle.checkpoint import load_checkpoint

    if config is not None:
        get_config(config)
    return load_checkpoint(path, config)


_SUFFIXES = {"facecycle": (".safetensors",), "official": (".tar", ".pth", ".pt")}


def _convert(args: argparse.Namespace) -> int:
    import torch

    from facecycle.checkpoint import save_checkpoint, save_official

    src, dst = Path(args.input), Path(args.output)
    if not src.exists():
        raise InputError(f"{src}: no such file")
    if dst.exists() and not args.overwrite:
        raise OutputError(f"{dst} exists (use --overwrite)")
    by_suffix = next((f for f, sfx in _SUFFIXES.items() if dst.suffix in sfx), None)
    if args.to and by_suffix and args.to != by_suffix:
        # `--to official x.safetensors` wrote a torch.save file our tools then refused to read as safetensors
        raise UsageError(f"{dst.name}: a {dst.suffix} name is for the {by_suffix} format, not --to {args.to}; "
                         f"name it {dst.stem}{_SUFFIXES[args.to][0]}")
    fmt = args.to or by_suffix
    if fmt is None:
        raise UsageError(f"cannot tell the format of {dst}; use --to facecycle|official")
    if args.fp16 and fmt != "facecycle":
        raise UsageError("--fp16 stores our .safetensors format in float16; the authors' layout is written in float32")
    model = _load(src, args.config)
    try:
        if fmt == "facecycle":
            save_checkpoint(model, dst, dtype=torch.float16 if args.fp16 else None)
        else:
            save_official(model, dst)
    except OSError as e:
        raise OutputError(f"{dst}: {e.strerror or e}") from None
    print(f"wrote {dst} ({fmt}, modules: {', '.join(model.module_names)})")
    if fmt == "official":
        print(f"config {model.config.name} recorded in the file (facecycle reads it back); the authors' code ignores "
              f"it, and a tool that reads the layout alone needs --config {model.config.name}"
              + (" and our settings" if model.config != _registered(model.config.name) else ""))
    return 0


def _registered(name: str):
    try:
        return get_config(name)
    except ValueError:
        return None
