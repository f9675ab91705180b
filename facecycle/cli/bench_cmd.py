"""``facecycle bench``: benchmarks writing JSON records.

Sub-commands: ``bench engines`` (here); ``bench pipeline`` and ``bench soak``
are registered by :mod:`realtime.bench` (``register_bench(bench_sub)``) when
that module exists — see ``register`` below.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path

from ..errors import OutputError, UsageError

log = logging.getLogger(__name__)


def _int_list(s: str):
    try:
        vals = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {s!r}")
    return vals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (engines, pipeline, soak) writing JSON")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", parser_class=type(p))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    # ---- bench engines (engines helper) --------------------------------------------------------
    e = bsub.add_parser("engines", help="faces/s and latency per backend, graph and batch size")
    src = e.add_mutually_exclusive_group()
    src.add_argument("--model", help="exported model directory (default: the shipped default model)")
    src.add_argument("--config", metavar="NAME",
                     help="bench random weights of a config (paper, small, ...) exported to a temp dir (needs torch)")
    e.add_argument("--backend", default="onnxruntime",
                   help="comma-separated backends: onnxruntime, torch, torch-cuda, torch-cuda+graphs, tensorrt, "
                        "onnxruntime-cuda, auto; a ':fp16' / ':int8' suffix sets that backend's precision "
                        "(default: onnxruntime)")
    e.add_argument("--baseline", default="torch",
                   help="backend measured alongside as the ratio baseline (default: torch, i.e. PyTorch eager CPU; "
                        "'none' to use the first backend)")
    e.add_argument("--batch", type=_int_list, default=[1, 8, 32], help="batch sizes (default 1,8,32)")
    e.add_argument("--graphs", default="analyze", help="comma-separated graphs (default analyze)")
    e.add_argument("--repeats", type=int, default=10, help="timed calls per case (default 10)")
    e.add_argument("--warmup", type=int, default=3, help="untimed calls per case first (default 3)")
    e.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="int8: ONNX Runtime static quantization (needs --calibration)")
    e.add_argument("--calibration", metavar="SRC",
                   help="int8 calibration face crops: a video of faces or a .npy of (N,S,S,3) uint8 crops")
    e.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op / torch CPU threads")
    e.add_argument("--max-batch", type=int, default=None, help="largest batch per call (TensorRT profile max)")
    e.add_argument("--json", required=True, metavar="OUT", help="write the records here ('-' for stdout)")
    e.set_defaults(func=_bench_engines)

    # ---- bench pipeline / bench soak: registered by the pipeline helper ------------------------
    # realtime/bench.py provides register_bench(bsub) adding "pipeline" and "soak" to this group.
    try:
        from realtime.bench import register_bench  # type: ignore[import-not-found]
    except ImportError as err:
        if getattr(err, "name", "") not in ("realtime", "realtime.bench") and "register_bench" not in str(err):
            raise
    else:
        register_bench(bsub)


def _bench_engines(args: argparse.Namespace) -> int:
    from engines.bench import bench_engines, temp_export

    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be >= 1 and --warmup >= 0")
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    baseline = None if args.baseline.lower() in ("none", "") else args.baseline
    out = None if args.json == "-" else Path(args.json)
    if out is not None and out.parent and not out.parent.exists():
        raise OutputError(f"{out.parent}: directory does not exist")
    opts = {"precision": args.precision}
    if args.precision == "int8" or any(b.endswith(":int8") for b in backends):
        if not args.calibration:
            raise UsageError("--precision int8 needs --calibration (a video of faces or a .npy of face crops)")
        opts["calibration"] = args.calibration
    if args.threads:
        opts.update(intra_op_threads=args.threads, threads=args.threads)
    if args.max_batch:
        opts["max_batch"] = args.max_batch
    meta = {"host_cpus": os.cpu_count(), "host": platform.node(), "machine": platform.machine()}

    def run(model_dir: Path, label: str):
        from engines import read_manifest

        man = read_manifest(model_dir)
        for g in graphs:
            if g not in man["graphs"]:
                raise UsageError(f"graph {g!r} not in {label} (has {', '.join(man['graphs'])})")
        return bench_engines(model_dir, backends, args.batch, graphs, args.repeats, args.warmup, baseline,
                             opts=opts, meta={**meta, "model": label,
                                              "config": (man.get("config") or {}).get("name")})

    if args.config:
        from ..config import get_config

        try:
            get_config(args.config)
        except ValueError as err:
            raise UsageError(str(err)) from None
        with temp_export(args.config, graphs) as d:
            records = run(d, f"random:{args.config}")
    else:
        if args.model:
            model_dir = Path(args.model)
        else:
            from ..assets import default_model_dir

            model_dir = default_model_dir()
        records = run(model_dir, str(model_dir))
    text = json.dumps(records, indent=2)
    if out is None:
        print(text)
    else:
        try:
            out.write_text(text + "\n")
        except OSError as err:
            raise OutputError(f"{out}: {err.strerror or err}") from None
    for r in records:
        print(f"{r['variant']:22s} {r['graph']:10s} b={r['batch']:<3d} {r['faces_per_s']:9.1f} faces/s  "
              f"p50 {r['latency_ms_p50']:8.2f} ms  p95 {r['latency_ms_p95']:8.2f} ms  "
              f"x{r['speedup_vs_baseline']:.2f} vs {r['baseline']}",
              file=__import__("sys").stderr if out is None else __import__("sys").stdout)
    return 0
