"""``facecycle engine``: build / list / clean inference engines in the user cache."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from facecycle.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engine", help="build, list and clean inference engines (TensorRT, FP16 graphs)")
    esub = p.add_subparsers(dest="engine_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    b = esub.add_parser("build", help="build engines for a model into the user cache")
    b.add_argument("--backend", default="tensorrt", choices=("tensorrt", "onnxruntime"),
                   help="tensorrt: TensorRT engines; onnxruntime: FP16 or INT8 ONNX graphs")
    b.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                   help="int8: ONNX Runtime only, static quantization of analyze/identity (needs --calibration)")
    b.add_argument("--calibration", metavar="SRC",
                   help="int8 calibration face crops: a video of faces or a .npy of (N,S,S,3) uint8 crops")
    b.add_argument("--model", help="exported model directory (default: the shipped default model)")
    b.add_argument("--graphs", default=None, help="comma-separated graphs (default: all)")
    b.add_argument("--max-batch", type=int, default=64, help="profile max batch (default 64)")
    b.add_argument("--opt-batch", type=int, default=8, help="profile opt batch (default 8)")
    b.add_argument("--min-batch", type=int, default=1, help="profile min batch (default 1)")
    b.add_argument("--fp16-mode", choices=("graph", "flag"), default="graph",
                   help="graph: convert the ONNX graph (TensorRT 10 and 11); flag: BuilderFlag.FP16 (TensorRT 10)")
    b.add_argument("--rebuild", action="store_true", help="ignore cached engines")
    b.set_defaults(func=_build)

    ls = esub.add_parser("list", help="list available backends and cached engines")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument("--model", help="also check PyTorch weights of this model directory")
    ls.set_defaults(func=_list)

    c = esub.add_parser("clean", help="delete cached engines, timing caches and FP16 / INT8 graphs (only the "
                                      "cache's own file names; symbolic links are never followed)")
    c.add_argument("--keep-timing", action="store_true", help="keep TensorRT timing caches")
    c.set_defaults(func=_clean)


def _model_dir(arg) -> Path:
    if arg:
        return Path(arg)
    from facecycle.assets import default_model_dir

    return default_model_dir()


def _build(args: argparse.Namespace) -> int:
    from engines import open_backend, read_manifest

    model_dir = _model_dir(args.model)
    man = read_manifest(model_dir)
    graphs = [g.strip() for g in args.graphs.split(",")] if args.graphs else list(man["graphs"])
    bad = [g for g in graphs if g not in man["graphs"]]
    if bad:
        raise UsageError(f"graph(s) {', '.join(bad)} not in {model_dir} (has {', '.join(man['graphs'])})")
    if not 1 <= args.min_batch <= args.opt_batch <= args.max_batch:
        raise UsageError("need 1 <= --min-batch <= --opt-batch <= --max-batch")
    if args.backend == "tensorrt":
        if args.precision == "int8":
            raise UsageError("TensorRT int8 is not supported (use fp16); int8 is for --backend onnxruntime")
        with open_backend(model_dir, "tensorrt", precision=args.precision, fp16_mode=args.fp16_mode,
                          profile=(args.min_batch, args.opt_batch, args.max_batch), rebuild=args.rebuild) as be:
            files = be.build_all(graphs)
            for g in graphs:
                print(f"{g:11s} {files[g]}")
        return 0
    if args.precision == "fp32":
        print("onnxruntime runs the exported FP32 graphs directly; nothing to build")
        return 0
    if args.precision == "int8" and not args.calibration:
        raise UsageError("--precision int8 needs --calibration (a video of faces or a .npy of face crops)")
    with open_backend(model_dir, "onnxruntime", precision=args.precision, calibration=args.calibration) as be:
        for g in graphs:
            be.session(g)
            print(f"{g:11s} {be.graph_path(g)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from engines import available_backends
    from engines.cache import engine_cache_dir, list_converted, list_engines

    backs = available_backends(args.model)
    engines = list_engines()
    converted = list_converted()  # `engine build --backend onnxruntime` writes these; `engine clean` removes them
    if args.json:
        print(json.dumps({"backends": backs, "cache_dir": str(engine_cache_dir()), "engines": engines,
                          "converted": converted}, indent=2))
        return 0
    print("backends (auto order):")
    for b in backs:
        print(f"  {'yes' if b['available'] else 'no ':3s} {b['name']:17s} {b['reason']}")
    print(f"engine cache: {engine_cache_dir()}")
    if not engines:
        print("  (no cached TensorRT engines)")
    for c in converted:
        print(f"  {c['kind']}: {Path(c['path']).name}  {c['bytes'] / 1e6:.1f} MB")
    for e in engines:
        prof = "/".join(str(v) for v in e.get("profile", [])) or "?"
        print(f"  {Path(e['path']).name}  {e['bytes'] / 1e6:.1f} MB  trt {e.get('trt_version', '?')}  "
              f"{e.get('gpu_name', '?')} sm{e.get('compute_capability', '?')}  {e.get('precision', '?')}  "
              f"batch {prof}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from engines.cache import clean_engines, engine_cache_dir

    skipped: list = []  # names that are not the cache's own, and symbolic links: left, and logged one by one
    n, b = clean_engines(timing=not args.keep_timing, skipped=skipped)
    print(f"removed {n} file(s), {b / 1e6:.1f} MB from {engine_cache_dir()}"
          + (f"; left {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} not of the cache's own names, or "
             f"symbolic links: {', '.join(f'{x[0]} ({x[1]})' for x in skipped[:3])}{' …' if len(skipped) > 3 else ''}"
             if skipped else ""))
    return 0
