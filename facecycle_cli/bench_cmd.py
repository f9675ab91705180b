"""``facecycle bench``: benchmarks writing JSON records.

Sub-commands: ``bench engines`` (:mod:`engines.bench`), ``bench pipeline``, ``bench soak`` and
``bench detectors`` (:mod:`realtime.bench`).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
from pathlib import Path
from typing import Callable, Optional

from facecycle.errors import OutputError, UsageError
from facecycle.files import json_text
from realtime.detectors import DETECTOR_CHOICES

from .process_cmd import backend_name

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
    p = sub.add_parser("bench", help="benchmarks (engines, pipeline, soak, detectors) writing JSON")
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

    # ---- bench pipeline / soak / detectors (realtime.bench) --------------------------------------
    pp = bsub.add_parser("pipeline", help="end-to-end pipeline fps / latency / stage times (median of runs)")
    pp.add_argument("video_in", metavar="VIDEO")
    pp.add_argument("--frames", type=int, default=300, help="frames per run (at most the clip's length)")
    pp.add_argument("--runs", type=int, default=3, help="runs; the median is reported (default 3)")
    _pipeline_args(pp)
    pp.set_defaults(func=_bench_realtime("bench_pipeline"))

    s = bsub.add_parser("soak", help="long run over looped clips: RSS memory and throughput per window")
    s.add_argument("videos", nargs="*", metavar="VIDEO",
                   help="clips to loop (default: three clips of ../shared/data/videos, see realtime/soak.py)")
    s.add_argument("--frames", type=int, default=20000, help="frames in total (default 20000)")
    s.add_argument("--window", type=int, default=1000, help="frames per throughput/memory sample (1000)")
    _pipeline_args(s)
    s.set_defaults(func=_bench_realtime("bench_soak", _check_soak))

    d = bsub.add_parser("detectors", help="detection rate and speed of the face detectors on clips")
    d.add_argument("videos", nargs="+", metavar="VIDEO")
    d.add_argument("--detectors", default=None,
                   help="comma-separated name@max_side (default: centerface@320,centerface@640, and yunet@320,"
                        "yunet@640 with --yunet-model, scrfd@320 with --scrfd-model)")
    d.add_argument("--yunet-model", default=None, help="YuNet .onnx (needed by yunet entries)")
    d.add_argument("--scrfd-model", default=None,
                   help="insightface detector (.onnx or pack), needed by scrfd/insightface entries")
    d.add_argument("--step", type=int, default=5, help="use every N-th frame (default 5)")
    d.add_argument("--json", required=True, metavar="OUT")
    d.set_defaults(func=_bench_realtime("bench_detectors", _check_detectors))


def _pipeline_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, metavar="DIR", help="exported model dir (default: shipped model)")
    src.add_argument("--config", default=None, metavar="NAME",
                     help="random weights of a config (e.g. paper) exported to a temp dir (needs torch)")
    p.add_argument("--backend", default="auto", type=backend_name)
    p.add_argument("--detector", default="centerface", choices=DETECTOR_CHOICES)
    p.add_argument("--detector-model", default=None)
    p.add_argument("--detect-every", type=int, default=5)
    p.add_argument("--detect-size", type=int, default=None,
                   help="as process --detect-size (default 320, raised for an input where small faces show only "
                        "at 1280 px; given, it is kept)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--infer-workers", type=int, default=None)
    p.add_argument("--precision", default=None, choices=("fp32", "fp16", "int8"))
    p.add_argument("--calibration", default=None, help="faces video for --precision int8")
    p.add_argument("--video", action="store_true", help="also write the annotated video")
    p.add_argument("--neutralize", action="store_true", help="also compute neutral faces (as process --neutralize)")
    p.add_argument("--neutral-passes", type=int, default=None, metavar="N",
                   help="with --neutralize: neutralization passes (default: the pipeline's, 2)")
    p.add_argument("--no-neutral-reference", dest="neutral_reference", action="store_false",
                   help="with --neutralize: no track reference (as process --no-neutral-reference)")
    p.add_argument("--no-neutral-lookahead", dest="neutral_lookahead", action="store_false", default=None,
                   help="with --neutralize: read the video once (as process --no-neutral-lookahead; default: "
                        "twice, the look-ahead, which the fps then include)")
    p.add_argument("--baseline-lookahead", action="store_true",
                   help="read the video twice for the person baseline (as process --baseline-lookahead; the fps "
                        "include both readings)")
    p.add_argument("--json", required=True, metavar="OUT", help="write the record here ('-' = stdout)")


def _bench_realtime(name: str, check: Optional[Callable[[argparse.Namespace], None]] = None):
    """The ``func`` of a realtime benchmark: ``check(args)``, then run ``realtime.bench.<name>(args)`` and write its
    record."""
    def run(args: argparse.Namespace) -> int:
        import realtime.bench

        if check is not None:  # before any clip is read or model loaded
            check(args)
        _write(getattr(realtime.bench, name)(args), args.json)
        return 0

    return run


def _check_detectors(args: argparse.Namespace) -> None:
    """``bench detectors``: every ``name@size`` known and sized, every model it needs given (an entry without its
    model was skipped without a word, and --step 0 divided by zero)."""
    from realtime.bench import detector_model_options
    from realtime.detectors import DETECTORS

    if args.step < 1:
        raise UsageError("--step must be >= 1")
    if args.detectors is None:  # the detectors whose files were given
        args.detectors = ",".join(["centerface@320", "centerface@640"]
                                  + (["yunet@320", "yunet@640"] if args.yunet_model else [])
                                  + (["scrfd@320"] if args.scrfd_model else []))
    models = detector_model_options(args)
    for item in args.detectors.split(","):
        name, _, size = item.strip().partition("@")
        if name not in DETECTORS:
            raise UsageError(f"--detectors {item.strip()!r}: unknown detector; choose from {', '.join(DETECTORS)}")
        if size and not (size.isdigit() and int(size) >= 16):
            raise UsageError(f"--detectors {item.strip()!r}: the size after @ is a frame side in pixels, >= 16")
        need = models.get(name)
        if need is not None and not need[0]:
            raise UsageError(f"--detectors {item.strip()!r} needs {need[1]} (or leave {name} out of --detectors)")


def _check_soak(args: argparse.Namespace) -> None:
    """``bench soak``: at least two windows, or its verdict compares nothing (a run of one window passed)."""
    if args.window < 1 or args.frames < 2 * args.window:
        raise UsageError(f"--frames must be at least two --window's ({2 * max(args.window, 1)}): the memory and "
                         "throughput verdict compares windows after the first")



def _write(rec, out: str) -> None:
    """Write a JSON record to ``out`` ('-' = stdout)."""
    text = json_text(rec) + "\n"
    if out == "-":
        print(text, end="")
        return
    p = Path(out)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{out}: cannot write ({e.strerror or e})") from None


def _bench_engines(args: argparse.Namespace) -> int:
    from engines.bench import bench_engines, temp_export

    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:  # as process: -1 reached the JSON as a thread count
        raise UsageError("--threads must be >= 1")
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
        from facecycle.cpus import cap_threads

        args.threads = cap_threads(args.threads, "--threads")
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
        from facecycle.config import get_config

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
            from facecycle.assets import default_model_dir

            model_dir = default_model_dir()
        records = run(model_dir, str(model_dir))
    _write(records, args.json)
    for r in records:
        print(f"{r['variant']:22s} {r['graph']:10s} b={r['batch']:<3d} {r['faces_per_s']:9.1f} faces/s  "
              f"p50 {r['latency_ms_p50']:8.2f} ms  p95 {r['latency_ms_p95']:8.2f} ms  "
              f"x{r['speedup_vs_baseline']:.2f} vs {r['baseline']}",
              file=__import__("sys").stderr if out is None else __import__("sys").stdout)
    return 0
