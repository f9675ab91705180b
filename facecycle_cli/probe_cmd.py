"""``facecycle probe fit|eval``: linear probes (expression, head pose) on frozen features, with baselines."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from facecycle.errors import OutputError, UsageError
from facecycle.files import json_text

log = logging.getLogger(__name__)

#: the expression split a fit holds out (``--val-frac``, ``--seed``) when not told; eval takes the head's own
SPLIT_DEFAULTS = {"val_frac": 0.1, "seed": 0}
#: ``--split`` when not given, per sub-command (expression; pose data is one folder, read whole)
_SPLIT_DEFAULT = {"fit": "train", "eval": "test"}


def _common(q: argparse.ArgumentParser) -> None:
    q.add_argument("--task", choices=("expression", "pose"), default="expression")
    q.add_argument("--data", required=True, help="expression: <DIR>/<split>/<class>/*.jpg; pose: .jpg+.mat folder "
                                                 "(300W-LP to fit, AFLW2000 to score), read whole or its --split "
                                                 "sub-folder")
    q.add_argument("--val-frac", type=float, default=None,
                   help="expression: fraction of <DIR>/train held out as split 'val' (stratified, seeded; default "
                        "0.1; eval: the head's own, so that val is what its fit held out)")
    q.add_argument("--seed", type=int, default=None, help="split / fit seed (default 0; eval: the head's own)")
    q.add_argument("--checkpoint", default=None, help="FaceCycle checkpoint (torch) to take features from")
    q.add_argument("--model", default=None, help="exported model dir (ONNX; default: the shipped model)")
    q.add_argument("--threads", type=int, default=0, help="CPU threads for feature extraction (0: default)")
    q.add_argument("--framing", choices=("auto", "detect", "none"), default=None,
                   help="how faces are cut out of the images: auto (the default; eval: the framing the head was "
                        "fitted with, auto for the shipped head) finds the face with the pipeline's detector and "
                        "crops it as the pipeline does, unless the image already is a face crop (FER-2013) or no "
                        "face is found; detect always crops a found face; none squashes the whole image to the "
                        "model's input")
    q.add_argument("--detector", default=None, metavar="NAME",
                   help="face detector for --framing (default centerface, built in; eval: the one the head was "
                        "fitted with; see `facecycle process -h`)")
    q.add_argument("--detector-model", default=None, metavar="PATH", help="model file of --detector")
    q.add_argument("--no-progress", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear probes on the frozen FaceCycle feature (paper protocol)")
    ps = p.add_subparsers(dest="probe_command", metavar="SUBCOMMAND")
    f = ps.add_parser("fit", help="fit a linear head on frozen features")
    _common(f)
    f.add_argument("--split", default=None, help="expression: split to fit on (default train = train minus the "
                                                   "held-out val part); pose: a sub-folder of --data (default: all)")
    f.add_argument("--baseline", choices=("pixels", "random-encoder"), default=None,
                   help="fit on a baseline feature instead of the model's")
    f.add_argument("--config", default=None, help="config of the random-encoder baseline (default: the model's)")
    f.add_argument("--max-train", type=int, default=0, help="subsample of the fit split (stratified for "
                                                            "expression, seeded; 0: all)")
    f.add_argument("--no-flips", action="store_true", help="no mirrored copies of the training images")
    f.add_argument("--weight-decays", default="1e-4,1e-3,1e-2,1e-1",
                   help="L2 strengths to choose from on a held-out part of the fit split (comma list)")
    f.add_argument("--out", required=True, help="head file (.safetensors)")
    f.add_argument("--json", default=None, help="write fit info as JSON")
    f.set_defaults(func=_fit)
    e = ps.add_parser("eval", help="evaluate a fitted head")
    _common(e)
    e.add_argument("--split", default=None, help="expression: test (default), val (held out of train) or any <DIR> "
                                                   "sub-folder; pose: a sub-folder of --data (default: all)")
    e.add_argument("--head", default=None, help="head file (default: the --model folder's own head; without "
                                                "--model, the shipped head)")
    e.add_argument("--json", default=None, help="write the report as JSON")
    e.set_defaults(func=_eval)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _extractor(args, meta=None):
    from facecycle.probe.features import OnnxFeatures, PixelFeatures, TorchFeatures, extractor_from_meta, random_encoder

    if meta is not None:
        return extractor_from_meta(meta, Path(args.model) if args.model else None,
                                   Path(args.checkpoint) if args.checkpoint else None, args.threads)
    base = getattr(args, "baseline", None)
    if base == "pixels":
        return PixelFeatures(64)
    model_cfg = None
    if args.checkpoint:
        from facecycle.checkpoint import load_checkpoint

        model = load_checkpoint(args.checkpoint)
        model_cfg = model.config
        if base is None:
            return TorchFeatures(model, threads=args.threads)
    elif base is None or not args.config:
        from facecycle.assets import default_model_dir

        ex = OnnxFeatures(Path(args.model) if args.model else default_model_dir(), args.threads)
        if base is None:
            return ex
        model_cfg = ex.cfg
    cfg = args.config or model_cfg
    if cfg is None:
        raise UsageError("--baseline random-encoder needs --config, --checkpoint or a model")
    return random_encoder(cfg, args.seed, args.threads)


def _framer(args, extractor):
    """The still framer of ``--framing`` (None for ``none``): the pipeline's detector and crops."""
    if args.framing == "none":
        return None
    from realtime.crops import StillFramer
    from realtime.detectors import create_detector

    det = create_detector(args.detector, args.detector_model, max_faces=1,
                          threads=max(1, args.threads or 1))
    return StillFramer(det, extractor.crop_scale, args.framing)


def _framing_report(framer) -> dict:
    if framer is None:
        return {"framing": "none"}
    rep = framer.describe()
    print(f"framing {rep['framing']} ({rep['detector']}, {rep['crop_scale']:g} x the face box): "
          f"{rep['cropped']} cropped, {rep['whole']} used whole, {rep['no_face']} without a face found (used whole, "
          "or their centre square where not square)")
    return rep


def _write_json(path, obj) -> None:
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json_text(obj), encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{path}: {e.strerror or e}") from None


def _fit(args: argparse.Namespace) -> int:
    _check_numbers(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from facecycle.probe.linear import save_head
    from facecycle.probe.run import expression_items, fit_expression, fit_pose, subsample

    for key, default in SPLIT_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    args.detector = args.detector or "centerface"
    ex = _extractor(args)
    args.framing = args.framing or "auto"
    framer = _framer(args, ex)
    if args.task == "expression":
        items = subsample(expression_items(Path(args.data), args.split, args.val_frac, args.seed),
                          args.max_train, args.seed)
        try:
            wds = [float(v) for v in args.weight_decays.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--weight-decays: not a comma list of numbers: {args.weight_decays!r}") from None
        if not wds:
            raise UsageError("--weight-decays is empty")
        if any(not w >= 0 for w in wds):
            raise UsageError(f"--weight-decays: L2 strengths are >= 0, not {args.weight_decays!r}")
        head, info = fit_expression(ex, items, flips=not args.no_flips, seed=args.seed,
                                    progress=not args.no_progress, wds=wds, framer=framer)
        head.meta.update({"data": str(args.data), "split": args.split, "val_frac": str(args.val_frac),
                          "seed": str(args.seed)})
    else:
        head, info = fit_pose(ex, _pose_folder(args), seed=args.seed, progress=not args.no_progress, framer=framer,
                              max_train=args.max_train)
        _say_beyond(info)
        head.meta.update({"data": str(args.data), "split": args.split or "", "seed": str(args.seed)})
    head.meta["framing"] = args.framing
    if args.framing != "none":  # the detector that cut the faces (eval cuts them alike unless told otherwise)
        head.meta["detector"] = args.detector
    head.meta.update(_feature_source(args, head.meta))
    save_head(head, Path(args.out))
    info.update({"head": str(args.out), "feature": head.meta.get("feature"), "framing": _framing_report(framer)})
    _write_json(args.json, info)
    print(f"wrote {args.out} ({head.meta.get('feature')} features, {head.weight.shape[1]}-d; "
          f"fit on {info['n_images']} images)")
    return 0


def _check_numbers(args: argparse.Namespace) -> None:
    """Options checked before any image is read; ``--split``'s default set."""
    if args.task == "pose" and args.val_frac is not None:
        raise UsageError("--val-frac holds a part of an expression data set out; a pose head is fitted on one data "
                         "set (300W-LP) and scored on another (AFLW2000): give that folder to `probe eval`")
    if args.task == "expression" and args.split is None:
        args.split = _SPLIT_DEFAULT[args.probe_command]
    if getattr(args, "config", None) and getattr(args, "baseline", None) != "random-encoder":
        raise UsageError("--config is the random-encoder baseline's (--baseline random-encoder); the features of "
                         "--checkpoint or --model come with their own config")
    if getattr(args, "max_train", 0) < 0:
        raise UsageError(f"--max-train must be >= 0 (0: all), not {args.max_train}")
    if args.val_frac is not None and not 0 <= args.val_frac < 1:
        raise UsageError(f"--val-frac is a fraction in [0, 1), not {args.val_frac}")
    if args.threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: the default), not {args.threads}")
    from facecycle.cpus import cap_threads

    args.threads = cap_threads(args.threads, "--threads")


def _pose_folder(args: argparse.Namespace) -> Path:
    """The pose data: ``--data``, or its ``--split`` sub-folder."""
    root = Path(args.data)
    if args.split is None:
        return root
    sub = root / args.split
    if not sub.is_dir():
        raise UsageError(f"--split {args.split}: {root} has no such sub-folder (pose data is read whole without "
                         "--split)")
    return sub


def _say_beyond(info: dict) -> None:
    n = info.get("n_beyond_max_angle")
    if n:
        print(f"{n} image(s) with an angle beyond ±{info['max_abs_deg']:g}° left out (the AFLW2000 protocol; JSON "
              "n_beyond_max_angle)")


def _feature_source(args: argparse.Namespace, meta: dict) -> dict:
    """What gave a head's features: ``feature_source`` (the path) and ``feature_sha`` (of the checkpoint file, or
    of the model folder's manifest, which holds its graphs' checksums). Empty for the baselines."""
    from facecycle.files import sha256_file

    if meta.get("feature", "facecycle") != "facecycle":
        return {}
    if args.checkpoint:
        p = Path(args.checkpoint)
        f = p / "model.safetensors" if p.is_dir() else p
    else:
        from facecycle.assets import default_model_dir

        p = Path(args.model) if args.model else default_model_dir()
        f = p / "manifest.json"
    return {"feature_source": str(p), "feature_sha": sha256_file(f)[:16]} if f.is_file() else {}


def _eval(args: argparse.Namespace) -> int:
    from facecycle.assets import HEAD_FILE
    from facecycle.probe.linear import load_head
    from facecycle.probe.run import eval_expression, eval_pose, expression_items

    name = HEAD_FILE if args.task == "expression" else "pose_head.safetensors"
    if args.head:
        head_path = Path(args.head)
    elif args.model and (Path(args.model) / name).is_file():
        head_path = Path(args.model) / name  # the model's own head (the shipped one scored it as chance)
    elif args.model:
        raise UsageError(f"{args.model} has no {args.task} head ({name}): the shipped head reads only the shipped "
                         "model's feature; give --head (a head `facecycle probe fit` wrote), or export the model "
                         "with its head")
    else:
        from facecycle.assets import default_model_dir

        head_path = default_model_dir() / name
        if not head_path.is_file():
            raise UsageError(f"no {args.task} head is shipped: give --head (a head `facecycle probe fit --task "
                             f"{args.task}` wrote)")
        if args.checkpoint:
            log.warning("--checkpoint without --head: scored with the shipped %s head, which reads the shipped "
                        "model's feature (right for the shipped model's own training checkpoints only)", args.task)
    head = load_head(head_path)
    if head.meta.get("task", args.task) != args.task:
        raise UsageError(f"{head_path} is a {head.meta.get('task')} head, not {args.task}")
    _check_numbers(args)
    # the split the head's fit held out: its own seed and fraction (a head fitted with --seed 1 was scored on
    # seed 0's "val", 27 of 28 of them images it was fitted on)
    for key, default in SPLIT_DEFAULTS.items():
        cast = type(default)
        own = head.meta.get(key)
        if getattr(args, key) is None:
            setattr(args, key, cast(own) if own is not None else default)
        elif own is not None and cast(own) != getattr(args, key) and args.split in ("val", "train") \
                and head.meta.get("data") == str(args.data):
            log.warning("--%s %s, but the head was fitted with %s: the %s split is not the one its fit held out",
                        key.replace("_", "-"), getattr(args, key), own, args.split)
    src = _feature_source(args, head.meta)
    if head.meta.get("feature_sha") and src.get("feature_sha") != head.meta["feature_sha"]:
        log.warning("the head was fitted on the features of %s, and is scored here on those of %s (other weights: "
                    "give the same --model or --checkpoint)", head.meta.get("feature_source"),
                    src.get("feature_source"))
    ex = _extractor(args, head.meta)
    args.framing = args.framing or head.meta.get("framing", "auto")  # as the head was fitted
    if args.detector is None:
        args.detector = head.meta.get("detector", "centerface")
        if args.detector != "centerface" and not args.detector_model and args.framing != "none":
            raise UsageError(f"{head_path} was fitted on faces cut by {args.detector}: give its --detector-model "
                             "(or --detector centerface)")
    framer = _framer(args, ex)
    if args.task == "expression":
        items = expression_items(Path(args.data), args.split, args.val_frac, args.seed)
        rep = eval_expression(ex, head, items, progress=not args.no_progress, framer=framer)
        rep.update({"split": args.split, "head": str(head_path), "feature": head.meta.get("feature"),
                    "framing": _framing_report(framer)})
        print(f"accuracy {rep['accuracy']:.4f} on {rep['n']} images ({args.split}); "
              f"mean class accuracy {rep['mean_class_accuracy']:.4f}")
        if rep["n_unreadable"]:
            print(f"  {rep['n_unreadable']} more images do not decode and are not scored (JSON: unreadable)")
        if rep["n_face_found"] is not None and rep["n_face_found"] < rep["n"]:
            acc = rep["accuracy_face_found"]
            print(f"  on the {rep['n_face_found']} images where a face was found: "
                  f"{'-' if acc is None else f'{acc:.4f}'} (the others are read whole: JSON accuracy_face_found)")
        if rep["accuracy_labelled_classes"] is not None:
            print(f"  choosing among the {len(rep['labelled_classes'])} labelled classes only "
                  f"({', '.join(rep['labelled_classes'])}): {rep['accuracy_labelled_classes']:.4f} right "
                  f"(the line above chooses among all {len(rep['classes'])}; JSON accuracy_labelled_classes)")
        w = max(len(c) for c in rep["classes"])
        for c, a in rep["per_class_accuracy"].items():
            print(f"  {c:{w}s} {'-' if a is None else f'{a:.3f}'}")
        print("confusion (rows true, cols predicted): " + " ".join(c[:3] for c in rep["classes"]))
        for c, row in zip(rep["classes"], rep["confusion_matrix"], strict=True):
            print(f"  {c[:3]} " + " ".join(f"{v:4d}" for v in row))
    else:
        rep = eval_pose(ex, head, _pose_folder(args), progress=not args.no_progress, framer=framer)
        _say_beyond(rep)
        rep.update({"head": str(head_path), "feature": head.meta.get("feature"), "framing": _framing_report(framer)})
        m = rep["mae_deg"]
        print(f"MAE yaw {m['yaw']:.2f} pitch {m['pitch']:.2f} roll {m['roll']:.2f} deg "
              f"(mean {rep['mae_mean_deg']:.2f}) on {rep['n']} images")
    _write_json(args.json, rep)
    sys.stdout.flush()
    return 0
