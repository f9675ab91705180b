"""``facecycle process`` (videos/folders → CSV + sidecar + annotated video) and ``facecycle live`` (a camera window)."""
from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from facecycle.errors import BackendUnavailable, InputError, OutputError, UsageError
from facecycle.files import caseless_note, name_key, names_caseless
from facecycle.terminal import note, stderr_is_terminal

from .sigterm import describe, exit_code_of, give_back_signals, record, take_stopping_signals

log = logging.getLogger(__name__)


def backend_name(value: str) -> str:
    """argparse ``type`` of ``--backend``: a known name (or alias), refused at parse time with the choices (exit 2)
    before any input is opened."""
    from engines.select import canonical

    try:
        canonical(value)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _add_analyzer_args(p: argparse.ArgumentParser, lookahead: bool = True) -> None:
    """The analyzer's options; ``lookahead`` False (``live``, which plays a file at its own pace and never reads it
    twice) leaves out the look-ahead options, which could never apply there."""
    from engines.select import BACKEND_NAMES
    from realtime.detectors import DETECTOR_CHOICES
    from realtime.pose import POSE_CAMERAS

    g = p.add_argument_group("model and detection")
    g.add_argument("--model", default=None, metavar="DIR",
                   help="exported model directory (default: the shipped default model)")
    g.add_argument("--backend", default="auto", metavar="NAME", type=backend_name,
                   help=f"inference backend: {', '.join(BACKEND_NAMES)} (default auto: TensorRT, ONNX Runtime "
                        "CUDA, torch CUDA, then the CPU, falling back when one fails)")
    g.add_argument("--detector", default="centerface", choices=DETECTOR_CHOICES, metavar="NAME",
                   help=f"face detector: {', '.join(DETECTOR_CHOICES)} (default centerface, built in; yunet and "
                        "insightface need --detector-model; scrfd = insightface)")
    g.add_argument("--detector-model", default=None, metavar="PATH",
                   help="model for --detector: centerface (optional: a CenterFace .onnx; default the built-in "
                        "one), yunet (.onnx), or insightface (.onnx, a model-pack folder, or a pack name under "
                        "~/.insightface/models)")
    g.add_argument("--detect-every", type=int, default=5, metavar="N",
                   help="run the detector every N frames, optical-flow tracking in between (default 5)")
    g.add_argument("--detect-size", type=int, default=None, metavar="PX",
                   help="shrink frames to this longer side for detection (0 = native). Default 320, and where a "
                        "look at a larger size (twice the size, at least 1280 px; every 2 s, then every 5 s while "
                        "no face or only small ones are found; every 30 s beside large ones) finds faces that the "
                        "size misses or finds under 32 px (small faces in a large frame), a size that shows them at "
                        "32 px from then on, with a warning at each raise; the looks go on after a raise, for "
                        "smaller faces that come later; given, it is kept")
    g.add_argument("--score-threshold", type=float, default=0.5, metavar="P",
                   help="detector confidence threshold in (0, 1) (default 0.5)")
    g.add_argument("--max-faces", type=int, default=None, metavar="N", help="analyse at most N faces per frame")
    g.add_argument("--mirror-detect", action="store_true",
                   help="detect on each frame and on its mirror image and average each face's two boxes, so that a "
                        "mirrored video reads the same (detectors' boxes are not mirror-symmetric); one more "
                        "detection per detection, about 20 %% slower")
    g.add_argument("--rotate", type=int, default=0, choices=(0, 90, 180, 270), metavar="DEG",
                   help="turn every frame DEG degrees clockwise (90, 180, 270) before it is read, after the file's "
                        "own rotation tag: a video that lost its tag, a camera mounted upside down, a person lying "
                        "down (a run whose faces are turned says so, with the value that reads them upright)")
    g.add_argument("--pose-camera", default="frame", choices=POSE_CAMERAS, metavar="WHERE",
                   help="the head pose's camera: frame (default: one camera filmed the frame, its centre the "
                        "camera's axis) or face (each face its own camera, centred on the face: screen recordings, "
                        "video-call galleries, webcam insets, where a tile's place on the screen otherwise reads as "
                        "15-35 degrees of yaw and pitch)")
    g.add_argument("--pose-focal", type=float, default=None, metavar="PX",
                   help="the head pose's camera's focal length in pixels of the frame as read (after --rotate), "
                        "where the camera's is known (a calibration's fx; a crop's scales with the crop); default "
                        "the frame's longer side, which makes yaw and pitch depend on how much of the frame the "
                        "face fills")
    g.add_argument("--neutralize", action="store_true",
                   help="compute neutral faces; the video shows the neutralized view and thumbnails (the CSV has none)")
    g.add_argument("--neutral-passes", type=int, default=None, metavar="N",
                   help="with --neutralize: neutralize N times, each pass on the previous pass's neutral face "
                        "(default 2, realtime.inference.NEUTRAL_PASSES; 1 = the model's single de-expression, "
                        "faster)")
    g.add_argument("--no-neutral-reference", dest="neutral_reference", action="store_false",
                   help="with --neutralize: every face keeps its own frame's neutral face (default: a strongly "
                        "expressive face gets its track's neutral face from its least expressive earlier frame "
                        "in a similar pose, realtime.neutral_reference)")
    if lookahead:
        g.add_argument("--no-neutral-lookahead", dest="neutral_lookahead", action="store_false", default=None,
                       help="with --neutralize, on video files: read each file once, the reference from earlier "
                            "frames only (default: read each file twice, so that a face can also take its track's "
                            "neutral face from a later, less expressive frame; about 1.3 times the time; cameras, "
                            "streams and image folders are always read once)")
        g.add_argument("--neutral-lookahead", dest="neutral_lookahead", action="store_true", default=None,
                       help="the default, spelled out: also warns where an input cannot be read twice")
        g.add_argument("--baseline-lookahead", action="store_true",
                       help="on video files: read each file twice and start each face's person baseline (the rel_* "
                            "columns) from its track's first 30 s (at most 30 frames a second: 900 frames at 30 fps or "
                            "more), later ones included: no warm-up, and a face expressive from the start is measured "
                            "against the person's later rest (default: the running baseline of earlier frames; one "
                            "reading serves this and the neutral look-ahead; cameras, streams and image folders are "
                            "read once)")
    else:
        p.set_defaults(neutral_lookahead=None, baseline_lookahead=False)
    g.add_argument("--reid", action="store_true", help="re-identify faces after occlusions by identity code")
    g.add_argument("--no-smooth", dest="smooth", action="store_false", help="disable One Euro smoothing")
    g.add_argument("--threads", type=int, default=1, metavar="N",
                   help="ONNX Runtime threads per session (default 1)")
    g.add_argument("--infer-workers", type=int, default=None, metavar="N",
                   help="parallel inference threads (default: 2 on >= 2 cores)")
    g.add_argument("--precision", default=None, choices=("fp32", "fp16", "int8"),
                   help="engine precision (default fp32; int8 = ONNX Runtime quantized analyze, needs --calibration)")
    g.add_argument("--calibration", default=None, metavar="VIDEO",
                   help="video of faces (or .npy crops) to calibrate --precision int8")


_URL_TIMEOUT_HELP = ("a URL's seconds without data before its read gives up (default 10; a served file's run then "
                     "fails, a live stream ends; an HTTP(S) open waits up to twice this)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="analyse video files / image folders into CSV + annotated video",
                       description="Analyse each INPUT (video file, stream URL or image folder): writes "
                                   "<stem>.csv, <stem>.json (sidecar) and <stem>.annotated.mp4 into --out-dir.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video file, image, stream URL (rtsp://, http://...), folder of images, or - (standard input: "
                        "a piped stream, e.g. MPEG-TS); several allowed")
    p.add_argument("--out-dir", default=".", metavar="DIR", help="output folder (default: current folder)")
    p.add_argument("--csv", dest="csv", action="store_true", default=True, help="write the CSV (default)")
    p.add_argument("--no-csv", dest="csv", action="store_false", help="do not write the CSV")
    p.add_argument("--video", dest="video", action="store_true", default=True,
                   help="write the annotated video (default)")
    p.add_argument("--no-video", dest="video", action="store_false", help="do not write the annotated video")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--realtime", action="store_true",
                   help="play files at their own pace like a camera (frames are dropped when behind)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames per input")
    p.add_argument("--parquet", default=None, metavar="PATH",
                   help="also write every input's CSV rows into one Parquet dataset, with a video column naming the "
                        "input (PATH.parquet: one file; else a folder; needs pyarrow)")
    p.add_argument("--images", choices=("auto", "sequence", "stills"), default="auto",
                   help="an image folder is a video's frames (sequence: tracked and smoothed) or separate pictures "
                        "(stills: each analysed on its own); auto (default): a sequence where the names count up "
                        "(frame_0001.png, ...) and neighbouring images look alike. The CSV's last column, file, "
                        "names each row's image")
    p.add_argument("--fps", type=float, default=None, metavar="FPS",
                   help="frame rate of an image folder read as a sequence (default 30): the CSV's timestamp is the "
                        "image's index / FPS, and the person baseline, smoothing and tracking go by it. Video files "
                        "and streams keep their own clock")
    p.add_argument("--no-audio", dest="audio", action="store_false", help="do not copy audio into the video")
    p.add_argument("--video-preset", default="superfast", metavar="PRESET",
                   help="libx264 preset (default superfast: cheap on a small CPU; veryfast/medium: smaller files)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (it is drawn only where stderr is a terminal)")
    p.add_argument("--url-timeout", type=float, default=None, metavar="S", help=_URL_TIMEOUT_HELP)
    _add_analyzer_args(p)
    p.set_defaults(func=_process)

    lv = sub.add_parser("live", help="analyse a camera (or a file played in real time, or a stream) in an OpenCV "
                                     "window",
                        description="Analyse a camera (or a video file played at its own pace, or a stream URL as it "
                                    "comes) and show the "
                                    "annotated view in an OpenCV window (q or Esc quits). Nothing is written "
                                    "unless --csv / --record name files. Without a display use --no-window: "
                                    "progress (frames, fps, drops) goes to stderr.")
    lv.add_argument("--camera", default="0", metavar="N|DEVICE", help="camera index or device path (default 0)")
    # `facecycle live 5` / `facecycle live clip.mp4`: refused with the option it meant (it was "unrecognized
    # arguments: 5" without a hint)
    lv.add_argument("stray", nargs="?", default=None, help=argparse.SUPPRESS)
    lv.add_argument("--input", default=None, metavar="VIDEO|URL",
                    help="instead of a camera: a video file, played in real time, or a stream URL (rtsp://, udp://, "
                         "an HTTP(S) MJPEG camera or live playlist), read as it comes")
    lv.add_argument("--url-timeout", type=float, default=None, metavar="S", help=_URL_TIMEOUT_HELP)
    lv.add_argument("--width", type=int, default=None, metavar="PX", help="requested camera width")
    lv.add_argument("--height", type=int, default=None, metavar="PX", help="requested camera height")
    lv.add_argument("--fps", type=float, default=None, metavar="FPS", help="requested camera frame rate")
    lv.add_argument("--record", default=None, metavar="VIDEO", help="also record the annotated video here")
    lv.add_argument("--csv", default=None, metavar="CSV", help="also write the CSV here")
    lv.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    lv.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    lv.add_argument("--no-window", dest="window", action="store_false",
                    help="no window (headless): process, print progress to stderr (every 2 s on a terminal; into "
                         "a file or pipe the gaps double up to one a minute), write --csv / --record")
    _add_analyzer_args(lv, lookahead=False)
    lv.set_defaults(func=_live)


# ---------------------------------------------------------------------------------------------------
def _shows_faces(args: argparse.Namespace) -> bool:
    """Whether the command writes or shows the annotated video, where neutral faces appear: ``process`` and ``batch``
    without ``--no-video``, ``live`` with its window or ``--record``."""
    if hasattr(args, "record"):  # live
        return bool(getattr(args, "window", False) or args.record)
    return bool(getattr(args, "video", True))


def analyzer_options(args: argparse.Namespace) -> dict:
    """``Analyzer`` keyword arguments from the options of ``_add_analyzer_args`` (``facecycle process``,
    ``live`` and ``batch`` build their analyzer from this one dict). The Analyzer checks the values
    (UsageError, exit 2): there is no second copy of those checks here."""
    passes = {} if args.neutral_passes is None else {"neutral_passes": args.neutral_passes}
    if passes and not args.neutralize:
        log.warning("--neutral-passes has no effect without --neutralize")
    if not args.neutral_reference and not args.neutralize:
        log.warning("--no-neutral-reference has no effect without --neutralize")
    if args.calibration and args.precision != "int8":
        log.warning("--calibration has no effect without --precision int8")
    if args.neutral_lookahead is not None and not (args.neutralize and args.neutral_reference):
        log.warning("--%sneutral-lookahead has no effect without --neutralize and the neutral reference",
                    "" if args.neutral_lookahead else "no-")
    if args.neutralize and not _shows_faces(args):
        log.warning("--neutralize: the neutral faces appear only in the annotated video (%s), not in the CSV; this "
                    "run makes them for nothing, at about a third of the speed (in Python: Face.neutral)",
                    "--record VIDEO or the window" if hasattr(args, "record") else "without --no-video")
    return dict(model=args.model, backend=args.backend, detector=args.detector,
                detector_model=args.detector_model, detect_every=args.detect_every,
                detect_size=320 if args.detect_size is None else (args.detect_size or None),
                adapt_detect_size=args.detect_size is None, score_threshold=args.score_threshold,
                mirror_detect=args.mirror_detect, rotate=args.rotate, pose_camera=args.pose_camera,
                pose_focal=args.pose_focal,
                max_faces=args.max_faces, neutralize=args.neutralize, reid=args.reid, smooth=args.smooth,
                threads=args.threads, infer_workers=args.infer_workers, precision=args.precision,
                calibration=args.calibration, neutral_reference=args.neutral_reference,
                neutral_lookahead=args.neutral_lookahead, baseline_lookahead=args.baseline_lookahead, **passes)


def _analyzer(args: argparse.Namespace):
    from realtime.analyzer import Analyzer

    return Analyzer(**analyzer_options(args))


class _Signals:
    """While active, SIGINT, SIGTERM, SIGHUP and SIGXCPU ask the current run to stop (outputs get flushed and
    closed; the exit code is 128 + the signal's number); a second SIGINT raises KeyboardInterrupt. SIGHUP and
    SIGXCPU only where they are not ignored (``nohup``). Their default action killed the process with the outputs
    open: the sidecar stayed ``running`` and the annotated video had no index."""

    def __init__(self) -> None:
        self.run = None
        self.signum: Optional[int] = None
        self._old = {}

    def __enter__(self) -> "_Signals":
        # (one that came during start-up and was swallowed stops now, before any output is made)
        self._old = take_stopping_signals(self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        first = self.signum is None
        if not first:  # (a repeat: SIGXCPU once a CPU-second, a second SIGTERM) the first one's stop goes on; it
            return     # must not cut short the clean-up the first one started
        self.signum = signum
        code = record(signum)  # (for main(): an error the signal caused, e.g. an open it cut short, is the signal's)
        if self.run is not None:
            self.run.stop()
        elif signum == signal.SIGINT:  # no run yet: an input is opening (a stream's server may take 10-20 s to
            raise KeyboardInterrupt   # answer): stop it where the signal lands, as before a run starts
        else:
            raise SystemExit(code)

    def __exit__(self, *exc) -> None:
        give_back_signals(self._old)  # (the command line ignores them on its way out: facecycle_cli.run)

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.signum if self.signum is not None else signal.SIGINT)

    def stopped(self, where: str) -> int:
        """Say on stderr where the signal stopped the command (``facecycle: terminated<where>``, where begins with
        its own space or semicolon); returns its exit code."""
        print(f"facecycle: {describe(self.exit_code)}{where}", file=sys.stderr)
        return self.exit_code


def _stdin_input() -> str:
    """The path that reads standard input (``-`` on the command line), after checking that something is piped."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("-: standard input is a terminal; pipe a video into it, e.g. "
                         "`ffmpeg -i IN -f mpegts - | facecycle process -`")
    if not Path("/dev/stdin").exists():
        raise UsageError("-: reading standard input needs /dev/stdin, which this system lacks; give a file")
    return "/dev/stdin"


def _open_folder(path: Path, images: str, fps: Optional[float] = None):
    """The image folder at ``path`` as a source (``fps``: its frame rate, None: 30), or None where it cannot be one
    (the run then says why)."""
    from realtime.sources import ImageFolderSource

    try:
        return ImageFolderSource(path, fps=fps or 30.0, reading=images)
    except (InputError, OSError):
        return None


def _outputs_for(inputs: List[str], args: argparse.Namespace) -> List[dict]:
    from realtime.batch.job import annotated_suffix, not_a_file
    from realtime.batch.plan import url_stem
    from realtime.sinks import check_output_name

    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a folder")
    plans, seen = [], {}
    caseless = names_caseless(out_dir)  # as the output folder's file system compares names
    for inp in inputs:
        p = Path(inp)
        if "://" not in inp and not p.exists():
            raise InputError(f"{inp}: no such file or folder")
        if "://" not in inp and p.name in ("", ".", ".."):  # `.` or `..`: the folder's own name
            p = p.resolve()
        if "://" in inp:  # a URL: its path's last part, without the query ("clip.mp4?v=1.2" -> clip); else its host
            stem = url_stem(inp)
        else:
            stem = p.stem if p.suffix else p.name
        stem = stem or "stream"
        # compared as the platform's file systems compare names: on macOS and Windows `Clip.csv` and `clip.csv`
        # are one file
        if name_key(stem, caseless) in seen:
            raise UsageError(f"inputs {seen[name_key(stem, caseless)]} and {inp} would write the same outputs ({stem}.*"
                             f"{caseless_note(caseless)}); "
                             "process them into different --out-dir folders")
        seen[name_key(stem, caseless)] = inp
        # an image folder is opened (listed, its reading decided) once, here, and the run reads that source
        folder = _open_folder(p, args.images, args.fps) if "://" not in inp and p.is_dir() else None
        plan = {"input": inp, "source": folder, "csv": out_dir / f"{stem}.csv" if args.csv else None,
                "video": (out_dir / f"{stem}.annotated{annotated_suffix(folder or p, args.images)}"
                          if args.video else None)}
        # before any file is made: a name too long for the file system (the sidecar's too), an existing file
        for q in (plan["csv"], plan["video"], out_dir / f"{stem}.json"):
            if q is not None:
                check_output_name(q)
        # a folder at the CSV's or sidecar's path, even with --overwrite: said before any file is made (a CSV was
        # written, then the sidecar failed). (The annotated output of an image folder is a folder: not checked)
        side = out_dir / f"{stem}.json"
        bad = not_a_file({"csv": plan["csv"], "sidecar": side if plan["csv"] is not None else None}, inp,
                         folders_only=True)
        if bad is not None:
            raise OutputError(bad)
        # earlier outputs a killed --overwrite run set aside (.X.replaced) are put back first, where that run is gone
        # and left only its header or first frame: they hold the results (realtime.outputs.put_back_replaced)
        from realtime.outputs import put_back_replaced

        for q in (plan["csv"], side if plan["csv"] is not None else None, plan["video"]):
            if q is not None:
                put_back_replaced(q)
        # what a run left that failed before its first frame (a pipe that sent no picture) holds no data: it is
        # replaced, so that the corrected command runs without --overwrite
        plan["replace"] = not args.overwrite and _failed_before_first_frame(out_dir / f"{stem}.json", plan["csv"])
        for k in ("csv", "video"):  # the failed run made no video (its sidecar names none): one there is another's
            if plan[k] is not None and plan[k].exists() and not (args.overwrite or (plan["replace"] and k == "csv")):
                raise OutputError(f"{plan[k]}: exists (use --overwrite to replace it)")
        # the CSV's sidecar (side): a user's own notes of that name were replaced silently
        if plan["csv"] is not None and side.exists() and not (args.overwrite or plan["replace"]):
            raise OutputError(f"{side}: exists (use --overwrite to replace it)")
        plans.append(plan)
    return plans


def _failed_before_first_frame(sidecar: Path, csv: Optional[Path]) -> bool:
    """Whether ``sidecar`` records a run that failed before writing any frame and ``csv`` (None: not written by this
    run) holds no data: missing, empty, or a facecycle CSV header alone. Both are checked: a damaged sidecar
    (``[1]``) was an internal error, and one that said ``"frames": []`` let a user's CSV be replaced without
    --overwrite."""
    from facecycle.jsonvalues import is_int
    from realtime.sinks import read_sidecar

    info = read_sidecar(sidecar)  # (None: missing, unreadable, or not a JSON object)
    if info is None or info.get("status") != "failed":
        return False
    for k in ("frames", "rows"):  # absent where the CSV never opened; else the counts the run wrote: 0
        v = info.get(k)
        if v is not None and not (is_int(v) and v == 0):
            return False
    return csv is None or _holds_no_rows(csv)


#: more than any CSV header facecycle writes (299 columns with a 256-d code: about 3 KB): a longer file holds rows
_HEADER_MAX = 1 << 20


def _holds_no_rows(csv: Path) -> bool:
    """Whether ``csv`` is missing, empty, or one line that is a header :class:`realtime.sinks.CsvSink` writes
    (``csv_columns`` of its ``exp_*`` count, with or without ``file``): nothing another run may not replace."""
    from realtime.sinks.csv_sink import csv_columns

    if not (csv.exists() or csv.is_symlink()):
        return True
    if not csv.is_file():  # a folder, a FIFO (whose read would wait): not this tool's CSV
        return False
    try:
        with open(csv, "rb") as f:
            data = f.read(_HEADER_MAX + 1)
    except OSError:
        return False
    if not data:
        return True
    if len(data) > _HEADER_MAX or not data.endswith(b"\n") or data.count(b"\n") != 1:
        return False
    cols = data.rstrip(b"\r\n").decode("ascii", errors="replace").split(",")  # (\r\n: an older Windows build)
    mine = csv_columns(sum(c.startswith("exp_") for c in cols), cols[-1] == "file")
    # this version's header, or an earlier one's with fewer columns (before crop_outside): a header alone is no
    # data whichever version wrote it
    return cols == mine or (cols[:5] == mine[:5] and set(cols) <= set(mine))


def _check_parquet_exists(dest: Path, overwrite: bool, since_start: bool = False) -> None:
    """``--parquet`` follows the rule of the other outputs: an existing dataset (a file, or a folder that is not
    empty) is replaced only with ``--overwrite`` (it was replaced without a word, any file named ``.parquet`` too).
    ``facecycle batch`` keeps replacing its dataset whole (docs/batch.md). Checked at the start and again just
    before the write (``since_start``: the path was free at the start, and another program made it since)."""
    if overwrite or not (dest.exists() or dest.is_symlink()):
        return
    try:
        empty_folder = dest.is_dir() and not any(dest.iterdir())
    except OSError:
        empty_folder = False
    if not empty_folder:
        if since_start:
            raise OutputError(f"{dest}: made by another program while this run went; not replaced (the CSVs are "
                              "written; use --overwrite to replace it, or give another --parquet path)")
        raise OutputError(f"{dest}: exists (use --overwrite to replace it)")


def _check_url_timeout(args: argparse.Namespace) -> None:
    """``--url-timeout``: a number of seconds > 0, refused before the model loads (the Analyzer checks it too)."""
    if args.url_timeout is not None and not (math.isfinite(args.url_timeout) and args.url_timeout > 0):
        raise UsageError(f"--url-timeout must be a number of seconds > 0, not {args.url_timeout:g}")


def _check_folder_fps(args: argparse.Namespace) -> None:
    """``process --fps``: a frame rate > 0, refused before any input is read."""
    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= 10000):
        raise UsageError(f"--fps must be a frame rate > 0 and at most 10000 (frames a second), not {args.fps:g}")


def _process(args: argparse.Namespace) -> int:
    if not args.csv and not args.video:
        raise UsageError("nothing to write: both --no-csv and --no-video given")
    from facecycle.errors import suggest_no_video

    suggest_no_video(args.video)  # an out-of-memory error offers --no-video where the annotated video is written
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    if args.inputs.count("-") > 1:
        raise UsageError("-: standard input can be given once")
    _check_url_timeout(args)
    _check_folder_fps(args)
    pq_lock: Optional[int] = None
    if args.parquet:  # refused before any input is read, not after it
        from realtime.batch.parquet import check_parquet_path, lock_parquet, require_pyarrow

        if not args.csv:
            raise UsageError("--parquet needs the CSVs (drop --no-csv)")
        require_pyarrow()
        check_parquet_path(args.parquet, args.out_dir)
        _check_parquet_exists(Path(args.parquet), args.overwrite)
        # held to the end of the dataset's write: a second run given this path is refused now, not replaced later
        pq_lock = lock_parquet(args.parquet, "facecycle process",
                               "wait for it to end, or give another --parquet path")
    try:
        return _process_locked(args)
    finally:
        if pq_lock is not None:
            from realtime.batch.parquet import unlock_parquet

            unlock_parquet(args.parquet, pq_lock)


def _process_locked(args: argparse.Namespace) -> int:
    """:func:`_process` once its options are checked and its ``--parquet`` path locked."""
    from realtime.sources import local_path

    # file:///x.mp4 is the file /x.mp4 (it was checked as a local path named "file:///x.mp4": "no such file")
    plans = _outputs_for([_stdin_input() if i == "-" else local_path(i) for i in args.inputs], args)
    if args.fps is not None and not any(plan["source"] is not None and not plan["source"].stills for plan in plans):
        log.warning("--fps %g applies to image folders read as a sequence: the inputs keep their own clock (or are "
                    "separate pictures)", args.fps)
    analyzer = _analyzer(args)
    failures: List[InputError] = []
    done: List[dict] = []
    with analyzer, _Signals() as sig:
        for plan in plans:
            if sig.signum is not None:  # between two inputs: the next one does not open
                return sig.stopped(f" before {plan['input']}; outputs closed")
            try:
                code = _process_one(analyzer, plan, args, sig)
            except InputError as e:
                if sig.signum is not None:  # an open the signal cut short (FFmpeg gives its own error for it)
                    return sig.stopped(f" while {plan['input']} was opening ({e})")
                if len(plans) == 1:
                    raise
                # one undecodable file must not cost the user the rest of a batch
                print(f"facecycle: error: {e} (skipped; continuing with the other inputs)", file=sys.stderr)
                failures.append(e)
                continue
            if code:
                return code
            done.append(plan)
    if args.parquet and done:
        from realtime.batch.parquet import write_parquet

        # the path did not exist at the start (or --overwrite): something made it since (not another facecycle
        # run: the lock keeps those out): not replaced without --overwrite
        _check_parquet_exists(Path(args.parquet), args.overwrite, since_start=True)
        res = write_parquet([(str(p["input"]), p["csv"]) for p in done], args.parquet)
        note(f"{res['path']}: {_n(res['rows'], 'row')} of {_n(res['videos'], 'input')} (Parquet)")
    if failures:
        print(f"facecycle: error: {len(failures)} of {len(plans)} inputs failed (see above)", file=sys.stderr)
        return failures[0].exit_code
    return 0


def _reading(sidecar: Optional[Path]) -> str:
    """The end line's reading from the sidecar's summary, e.g. ``, read as happy (mean p 0.62 over 120 face rows)``;
    an empty string when there is none (no face, no expression head, no CSV)."""
    from facecycle.jsonvalues import is_int
    from realtime.batch.job import sidecar_reading
    from realtime.sinks import read_sidecar
    from realtime.summary import NEAR_TIE

    info = (read_sidecar(sidecar) if sidecar is not None else None) or {}
    r = sidecar_reading(info)
    if r is None:
        return ""
    counts = r.get("top_emotions") or {}
    source = info.get("input") if isinstance(info.get("input"), dict) else {}
    if source.get("reading") == "stills" and sum(counts.values()) > 1:
        # separate pictures (often of other people): how many faces read as what, not one mean over them all
        most = sorted(((n, e) for e, n in counts.items() if n), reverse=True)
        return ", faces read as " + ", ".join(f"{e} {n}" for n, e in most[:4]) + (", ..." if len(most) > 4 else "")
    # a near tie says so: the runner-up close behind (sad 0.31 with angry 0.28) is as much the clip's reading
    close = (f"; {r['runner_up']} close behind at {r['p'] - r['margin']:.2f}"
             if r.get("runner_up") and r["margin"] < NEAR_TIE else "")  # (realtime.summary.NEAR_TIE)
    line = f", read as {r['emotion']} (mean p {r['p']:.2f} over {_n(r['face_rows'], 'face row')}{close})"
    # several faces that read differently (a group, an interview): each one's own reading, not only the pool of
    # all their rows (9 people, 3 happy, read as neutral). A face counts on 10 % of the frames with a face and on 10
    # frames (a track has one row a frame), or on every frame where the input has fewer than 10 frames (a picture
    # of two people, a short clip): a long video's spurious short tracks stay out. The share is of the frames, not
    # of the face rows: with 11 or more faces on screen alike none had 10 % of the rows, and the part was dropped
    summary = info["summary"]  # (a dict: sidecar_reading read it)
    frames = summary.get("frames")
    least = max(0.1 * _face_frames(summary, r["face_rows"]),
                min(10, frames if is_int(frames) and frames > 0 else 10))
    listed = summary.get("tracks") if isinstance(summary.get("tracks"), list) else []
    tracks = [t for t in listed if isinstance(t, dict) and isinstance(t.get("emotion"), str)
              and is_int(t.get("rows")) and t["rows"] >= least]
    if len({t["emotion"] for t in tracks}) > 1:
        # at most 6 named, in the sidecar's order: those whose reading differs from the pool's first (a gallery of
        # 12, one of them surprised, named the 6 first faces, all neutral), with one that reads as the pool does
        differ = [t for t in tracks if t["emotion"] != r["emotion"]]
        same = [t for t in tracks if t["emotion"] == r["emotion"]]
        picked = (differ[:5] + same[:1] + differ[5:] + same[1:])[:6]
        each = ", ".join(f"#{t['face_id']} {t['emotion']}" for t in tracks if any(t is q for q in picked))
        line += f"; by face: {each}{', ...' if len(tracks) > 6 else ''}"
    return line


def _face_frames(summary: dict, face_rows: object) -> int:
    """The frames of an input with a face, from its sidecar's ``summary`` (``frames_with_face``, else ``frames``),
    for :func:`_reading`'s share of them; a summary with neither (another program's) gives its ``face_rows``."""
    from facecycle.jsonvalues import is_int

    for key in ("frames_with_face", "frames"):
        n = summary.get(key)
        if is_int(n) and n > 0:
            return int(n)
    return int(face_rows) if is_int(face_rows) and face_rows > 0 else 0


def _process_one(analyzer, plan: dict, args: argparse.Namespace, sig: "_Signals") -> int:
    """Process one input into its outputs; returns 0, or the signal exit code after SIGINT/SIGTERM."""
    from realtime.batch.job import analyze_file  # the per-video path `facecycle batch` runs too

    if plan.get("replace"):
        log.warning("%s: replacing the outputs of an earlier run that failed before its first frame", plan["input"])
    sig.run = None  # (the last input's run is over: a signal while this one opens stops the command there)
    try:
        run = analyze_file(analyzer, plan["source"] or plan["input"], csv=plan["csv"], video=plan["video"],
                           neutralize=args.neutralize, overwrite=args.overwrite or plan.get("replace", False),
                           max_frames=args.max_frames,
                           audio=args.audio, video_preset=args.video_preset, realtime=args.realtime,
                           url_timeout=args.url_timeout,
                           images=args.images)
    except (KeyboardInterrupt, SystemExit):  # a signal while the input opened (a stream's server may take 20 s)
        if sig.signum is None:
            raise
        return sig.stopped(f" while {plan['input']} was opening, before any row was written; outputs closed")
    sig.run = run
    if getattr(args, "command_line", None):  # the sidecar says how it was made (batch.json does for a batch)
        run.info["command"] = args.command_line
    if sig.signum is not None:
        run.stop()
    bar = _progress(run, args.progress, plan["input"])
    if bar is not None and (run.lookahead or run.baseline_ahead):  # read twice: the bar counts both passes
        bar.total = 2 * bar.total if bar.total else None
        bar.set_description(f"{bar.desc} (2 passes)")
        run.on_ahead = lambda _p: bar.update(1)
    try:
        for _ in run:
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    s = run.stats.summary()
    side = getattr(run, "sidecar_path", None) or (Path(plan["csv"]).with_suffix(".json") if plan["csv"] else None)
    from realtime.sources.images import ImageFolderSource

    shown = plan["video"] and run.outputs.video_frames > 0 and (  # a run stopped before its first frame made none
        f"{plan['video']}{os.sep}" if Path(plan["video"]).suffix == ".annotated" else str(plan["video"]))  # pictures
    wrote = ", ".join(str(v) for v in (plan["csv"], side, shown) if v and Path(v).exists()) or "nothing written"
    if run.outputs.restored:  # stopped before its first frame: what is there is the earlier run's
        wrote, side = "nothing written (the earlier outputs are kept)", None

    skipped = "unreadable image" if isinstance(run.src, ImageFolderSource) else "damaged packet"
    folder = ""
    if isinstance(run.src, ImageFolderSource):  # say how the folder was read: it changes every row
        what = "separate pictures" if run.src.stills else "a frame sequence"
        folder = (f" (read as {what}, as asked)" if run.src.reading_why == "asked for"
                  else f" (read as {what}: {run.src.reading_why}; --images chooses)")
    # a run cut short by --max-frames says so (the sidecar says complete, and nothing said why the rows end early)
    total = run.src.frame_count or 0
    cut = (f" (stopped at --max-frames {run.max_frames} of {'~' if not getattr(run.src, 'exact_count', True) else ''}"
           f"{total})" if run.max_frames is not None and s["frames"] >= run.max_frames and total > s["frames"] else "")
    note(f"{plan['input']}: {_n(s['frames'], 'frame')}{cut}{folder}, {_n(s['faces'], 'face')}, {s['fps']:.1f} fps"
          + (f", {s['drops']} dropped (a live input: the oldest frames are skipped while the analysis is behind)"
             if s["drops"] else "")
          + (f", {_n(s['decode_errors'], skipped)} skipped" if s["decode_errors"] else "")
          + (f", damage read through in {_n(run.src.damaged, 'place')} (frames with errors concealed, or packets the "
             "demuxer flagged: a gap in the stream, or segments joined)" if getattr(run.src, "damaged", 0) else "")
          + (f", ~{_n(run.src.frames_missing, 'frame')} missing (truncated or damaged file)"
             if getattr(run.src, "frames_missing", 0) else "")
          + (", cut short (an MPEG-TS file that ends inside a packet: frames missing, how many cannot be told)"
             if getattr(run.src, "cut_short", False) else "")
          + (", the file grew while it was read (a recording in progress?): rerun when it ends"
             if getattr(run.src, "grew_while_read", False) else "")
          + _reading(side) + f" -> {wrote}")
    if sig.signum is not None:
        early = (" before any row was written (a file read twice gets its rows in the second reading)"
                 if s["frames"] == 0 and (run.lookahead or run.baseline_ahead) else "")
        return sig.stopped(f"{early}; outputs flushed and closed")
    return 0


def _n(count: int, noun: str) -> str:
    """``"1 frame"``, ``"3 frames"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _progress(run, enabled: bool, name: str):
    """The progress bar, or None: without --no-progress only where stderr is a terminal. A bar redraws its line
    with carriage returns: into a log file (``2> run.log``, a job scheduler's output) that was a line of redraws
    every half second, and with stderr closed its first draw stopped the run."""
    if not enabled or not stderr_is_terminal():
        return None
    from tqdm import tqdm

    total = run.src.frame_count
    if run.max_frames is not None:  # --max-frames: the bar (and its ETA) ends where the run will
        total = min(total, run.max_frames) if total else run.max_frames
    return tqdm(total=total, unit="frame", desc=Path(name).name[:30], dynamic_ncols=True,
                leave=False, file=sys.stderr, mininterval=0.5)


#: seconds between progress lines of ``live --no-window`` (on a terminal, and the first gap into a file)
_LIVE_REPORT_S = 2.0
#: the most seconds between progress lines into a file or a pipe: each gap doubles up to it (a line every 2 s was
#: 43,000 lines a day in a service's log)
_LIVE_REPORT_MAX_S = 60.0


def next_report_gap(gap: float, terminal: bool) -> float:
    """Seconds to the next progress line of ``live --no-window`` after a gap of ``gap``: ``_LIVE_REPORT_S`` on a
    terminal (a person watches); into a log, twice ``gap`` up to ``_LIVE_REPORT_MAX_S`` (2, 4, 8, … 60 s)."""
    if terminal:
        return _LIVE_REPORT_S
    return min(max(_LIVE_REPORT_MAX_S, _LIVE_REPORT_S), 2.0 * gap)

_WINDOW_PROBE = ("import cv2, numpy as np; cv2.namedWindow('facecycle-probe'); "
                 "cv2.imshow('facecycle-probe', np.zeros((8, 8, 3), np.uint8)); cv2.waitKey(1); "
                 "cv2.destroyAllWindows()")


def window_problem(timeout: float = 30.0) -> Optional[str]:
    """Why an OpenCV window cannot open here (None if it can).

    Probed in a child process: OpenCV's Qt backend aborts the whole process (SIGABRT, exit 134, a multi-line
    Qt message) when there is no display, which no ``try`` can catch.
    """
    try:
        r = subprocess.run([sys.executable, "-c", _WINDOW_PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "opening a test window did not finish"
    if r.returncode == 0:
        return None
    err = r.stderr
    if "not implemented" in err or "Rebuild the library" in err:
        return "this OpenCV build has no GUI support (is opencv-python-headless installed over opencv-python?)"
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not display:
        return "no display (DISPLAY is not set)"
    return f"cannot open a window on display {display!r} (OpenCV's GUI backend failed to start)"


def _check_live_source(args: argparse.Namespace) -> None:
    """Refuse what ``live`` would misread, with the option meant: an input given without an option (``live 5``), a
    regular file given as ``--camera`` (it was played as a camera: frames dropped, then "no frame for 5 s")."""
    if args.stray is not None:
        x = args.stray
        meant = (f"--camera {x}" if x.isdigit() or x.startswith(("/dev/", "camera:"))
                 else f"--input {x}" if args.input is None else None)
        raise UsageError(f"live: unexpected argument {x!r}" + (f"; did you mean `facecycle live {meant}`?" if meant
                                                               else " (the input is --camera N or --input FILE)"))
    cam = str(args.camera)
    if args.input is None and not cam.isdigit() and Path(cam).is_file():
        raise UsageError(f"--camera {cam}: a file, not a camera; play a video file with `facecycle live --input "
                         f"{cam}`")


def _live(args: argparse.Namespace) -> int:
    import cv2

    from realtime.sources import CameraSource, VideoSource, is_stream_url

    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames must be >= 1")
    _check_url_timeout(args)
    _check_live_source(args)
    if args.window:  # before the camera and the model are opened: fail in a second, with one line
        why = window_problem()
        if why:
            raise BackendUnavailable(f"cannot show the live window: {why}; use --no-window (progress on "
                                     "stderr; --csv/--record to save) or `facecycle app`")
    # the model loads before a live input is read. A file or a camera is opened first (a missing one fails in a
    # second, with one line): a file waits for its first read, and what a camera queues meanwhile is discarded at
    # its first read (CameraSource). A stream URL is opened after the model: the frames it sent while the model
    # loaded came in one burst, late, their timestamps behind
    src = None
    if not args.input:
        src = CameraSource(args.camera, width=args.width, height=args.height, fps=args.fps)
    elif not is_stream_url(args.input):
        src = VideoSource(args.input, realtime=True)  # played at its own pace as if it were live
    try:
        analyzer = _analyzer(args)
    except BaseException:
        if src is not None:
            src.close()
        raise
    if src is None:
        try:
            # a live stream is not paced: it comes at its own pace
            src = VideoSource(args.input, realtime=True, timeout=args.url_timeout)
        except BaseException:
            analyzer.close()
            raise
    title = f"facecycle live - {src.name} (q to quit)"
    from realtime.annotators import default_annotator

    with analyzer, _Signals() as sig:
        run = analyzer.process_video(src, csv=args.csv, video=args.record, overwrite=args.overwrite,
                                     annotate=default_annotator(neutralized=args.neutralize,
                                                                thumbnail=args.neutralize)
                                     if args.window or args.record else False,
                                     max_frames=args.max_frames)
        sig.run = run
        if getattr(args, "command_line", None):  # the sidecar says how it was made, as `process`'s does
            run.info["command"] = args.command_line
        window = args.window
        outs = [str(v) for v in (args.csv, getattr(run, "sidecar_path", None), args.record) if v]
        if not window:
            note(f"{src.name}: analysing without a window; "
                 + (f"writing {', '.join(outs)}" if outs else "writing nothing (add --csv FILE / --record VIDEO)")
                 + "; Ctrl-C stops")
        terminal = stderr_is_terminal()
        gap = _LIVE_REPORT_S
        next_report = time.monotonic() + gap
        try:
            for p in run:
                if not window:
                    now = time.monotonic()
                    if now >= next_report:
                        gap = next_report_gap(gap, terminal)
                        next_report = now + gap
                        note(f"{src.name}: {_n(run.stats.frames, 'frame')}, {run.stats.recent_fps:.1f} fps, "
                             f"{run.stats.drops} dropped, {_n(len(p.faces), 'face')}")
                    continue
                img = p.annotated if p.annotated is not None else p.image
                cv2.putText(img, f"{run.stats.recent_fps:.0f} fps  drops {run.stats.drops}", (6, 22),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 1, cv2.LINE_AA)
                try:
                    cv2.imshow(title, img)
                    key = cv2.waitKey(1) & 0xFF
                except cv2.error:
                    run.stop()
                    raise BackendUnavailable("this OpenCV build cannot open windows (opencv-python-headless?); "
                                             "use --no-window or `facecycle app`") from None
                if key in (ord("q"), 27):
                    run.stop()
        finally:
            if window:
                try:
                    cv2.destroyAllWindows()
                except cv2.error:
                    pass
        s = run.stats.summary()
        side = getattr(run, "sidecar_path", None)
        if run.outputs.restored:  # stopped before its first frame: what is there is the earlier run's
            side, outs = None, ["nothing written (the earlier outputs are kept)"]
        note(f"{src.name}: {_n(s['frames'], 'frame')}, {s['fps']:.1f} fps, {s['drops']} dropped"
             + (_reading(Path(side)) if side else "") + (f" -> {', '.join(outs)}" if outs else ""))
        if sig.signum is not None:
            return sig.exit_code
    return 0
