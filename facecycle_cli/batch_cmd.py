"""``facecycle batch``: many videos, in this process or on Ray, resumable, one dataset out (realtime.batch)."""
from __future__ import annotations

import argparse
import os

from facecycle.cpus import cap_threads
from facecycle.errors import BackendUnavailable, UsageError, suggest_no_video

from .process_cmd import _add_analyzer_args, analyzer_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "batch", help="analyse many videos (folders, globs, @lists) on Ray workers; resumable; Parquet out",
        description="Analyse every INPUT (video file, folder searched recursively for videos, glob pattern, "
                    "or @list.txt with one path per line) like `facecycle process`, each video as one task on "
                    "Ray workers (or in this process without Ray). Outputs mirror the inputs' folders under "
                    "--out-dir. Re-running skips inputs already complete with the same model and settings.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched for videos), quoted globs, served files' URLs (http(s)://, "
                        "ftp://) and @list.txt files")
    p.add_argument("--out-dir", required=True, metavar="DIR",
                   help="output folder; on a cluster, a path every node can reach (shared filesystem)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="mirror outputs relative to this folder (default: the deepest folder holding every input)")
    g = p.add_argument_group("execution")
    g.add_argument("--cluster", default=None, metavar="WHERE",
                   help="local (a private Ray on this machine; the default when ray is installed), auto (join "
                        "the cluster `ray start` made), ray://HOST:PORT (Ray client), or none (this process, "
                        "one video at a time; the default without ray)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="videos processed at once (default: CPUs // --threads-per-worker)")
    g.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                   help="CPUs each worker reserves; also its ONNX Runtime threads unless --threads, and its video "
                        "encoder's (default 1; with --cluster none the encoder's are FFmpeg's choice unless given)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="GPUs each worker reserves (e.g. 1, or 0.5 to share one; default 0)")
    g.add_argument("--retries", type=int, default=2, metavar="K",
                   help="run a video again up to K times when its worker process dies (default 2); "
                        "undecodable inputs are not retried")
    g.add_argument("--force", action="store_true", help="redo inputs that are already complete")
    g.add_argument("--dry-run", action="store_true",
                   help="write nothing: list, one line per input on stdout, DECISION<TAB>INPUT<TAB>CSV (run, run "
                        "(redo: why), skipped, failed); exit 3 where an input would fail; in each field a backslash "
                        "is \\\\, tab/newline/CR are \\t \\n \\r, other control characters and bytes that are "
                        "not UTF-8 are \\xNN (backslashes are not escaped on Windows)")
    o = p.add_argument_group("outputs")
    o.add_argument("--csv", dest="csv", action="store_true", default=True, help="write the CSV (default)")
    o.add_argument("--no-csv", dest="csv", action="store_false", help="do not write the CSV")
    o.add_argument("--video", dest="video", action="store_true", default=True,
                   help="write the annotated video (default)")
    o.add_argument("--no-video", dest="video", action="store_false", help="do not write the annotated video")
    o.add_argument("--parquet", default=None, metavar="PATH",
                   help="also write every CSV row as one Parquet dataset (PATH.parquet: one file; else a folder)")
    o.add_argument("--summary", default=None, metavar="JSON", help="summary JSON (default: OUT_DIR/batch.json)")
    o.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames per input")
    o.add_argument("--no-audio", dest="audio", action="store_false", help="do not copy audio into the video")
    o.add_argument("--video-preset", default="superfast", metavar="PRESET",
                   help="libx264 preset of the annotated video (default superfast)")
    o.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (it is drawn only where stderr is a terminal)")
    _add_analyzer_args(p)
    p.set_defaults(func=_batch, threads=None, infer_workers=None)
    for a in p._actions:  # the same options as process, with batch's own defaults
        if a.dest == "threads":
            a.help = "ONNX Runtime threads per session (default: --threads-per-worker)"
        elif a.dest == "infer_workers":
            a.help = "inference threads per worker (default 1: the parallelism comes from the workers)"


def _abs(p):
    return os.path.abspath(p) if p else p


def _batch(args: argparse.Namespace) -> int:
    from realtime.batch import BatchSettings, collect_inputs, executors, run_batch
    from realtime.sinks.video_sink import check_x264_preset

    check_x264_preset(args.video_preset)  # once, before any worker starts (each one's outputs check it too)
    if not args.csv and not args.video:
        raise UsageError("nothing to write: both --no-csv and --no-video given")
    if args.parquet and not args.csv:
        raise UsageError("--parquet needs the CSVs (drop --no-csv)")
    for name in ("max_frames", "workers", "threads_per_worker"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.retries < 0:
        raise UsageError("--retries must be >= 0")
    if args.gpus_per_worker < 0:
        raise UsageError("--gpus-per-worker must be >= 0")
    # given: also the in-process worker's encoder threads; else FFmpeg's choice there (one video at a time in this
    # process: a cap of 1 would slow its encoding for nothing), and 1 CPU for each Ray worker
    local_threads = args.threads_per_worker or 0
    if local_threads and (args.cluster == "none" or (args.cluster is None and not executors.ray_available())):
        # in this process: at most its usable CPUs, with one warning, as --threads (`taskset -c 0 ... --cluster none
        # --threads-per-worker 4` encoded with 4 threads, and the sidecar said video_threads 4, on one CPU). A Ray
        # worker's are not capped here: it may run on another node, and the Ray executor warns of contention itself
        local_threads = args.threads_per_worker = cap_threads(local_threads, "--threads-per-worker")
    args.threads_per_worker = args.threads_per_worker or 1
    if args.threads is None:
        args.threads = args.threads_per_worker
    if args.infer_workers is None:
        args.infer_workers = 1  # parallelism comes from the workers; one inference thread each
    suggest_no_video(args.video)  # an out-of-memory error offers --no-video where the annotated video is written
    opts = analyzer_options(args)
    for k in ("model", "detector_model", "calibration"):  # workers may run elsewhere: absolute paths
        opts[k] = _abs(opts[k])
    settings = BatchSettings(analyzer=opts, csv=args.csv, video=args.video, max_frames=args.max_frames,
                             audio=args.audio, video_preset=args.video_preset)
    items, dups = collect_inputs(args.inputs, out_dir=args.out_dir, root=args.root)
    if not items:
        from realtime.batch.plan import read_input_list

        # (an empty list said "folders held no videos"; a list of empty folders, that it named none)
        empty = [s[1:] for s in args.inputs if s.startswith("@") and not read_input_list(s)]
        why = [f"{', '.join(empty)} named none"] if empty else []
        why += ["folders held no videos"] if len(empty) < len(args.inputs) else []
        raise UsageError(f"no inputs ({'; '.join(why)})")
    if not args.dry_run and args.cluster is None and args.workers not in (None, 1) and not executors.ray_available():
        # (make_executor's own words ran two sentences together: "--workers 2 needs ray is not installed; ...")
        raise BackendUnavailable(f"--workers {args.workers} needs Ray, but {executors.RAY_MISSING}")
    executor = None if args.dry_run else executors.make_executor(settings, args.cluster, args.workers,
                                                                 args.threads_per_worker, args.gpus_per_worker,
                                                                 args.retries, local_threads=local_threads)
    res = run_batch(items, args.out_dir, settings, executor, duplicates=dups, parquet=args.parquet,
                    force=args.force, progress=args.progress, summary=args.summary, dry_run=args.dry_run,
                    command=getattr(args, "command_line", None))
    return res.exit_code
