"""``facecycle data prepare``: videos / image folders -> face-track crop dataset.

The faces are found by the pipeline's own pieces (:func:`realtime.facetracks.face_tracks`: decoder,
detector, tracker, crops) and written by :func:`facecycle.data.prepare.prepare_dataset`. As ``process`` and ``batch``:
an input that fails is said in one line on stderr and skipped, the others are prepared, and the run ends with exit 3
(one line: how many failed); the summary goes to stderr, and the bar is drawn only where stderr is a terminal.
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path
from typing import List, Sequence

from facecycle.errors import InputError, UsageError
from facecycle.terminal import note
from realtime.detectors import DETECTOR_CHOICES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data tools")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    q = dsub.add_parser("prepare", help="decode, detect, track and crop faces into a training dataset")
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders of videos or image folders")
    q.add_argument("--out", required=True, help="dataset directory (created or resumed)")
    q.add_argument("--size", type=int, default=64, choices=(64, 128), help="crop side in pixels")
    q.add_argument("--scale", type=float, default=1.7,
                   help="square crop side / a CenterFace box's side (other detectors' boxes, which are larger, are "
                        "divided by their box_scale first: every detector frames a face alike)")
    q.add_argument("--detector", default="centerface", choices=DETECTOR_CHOICES,
                   help="face detector, as in `facecycle process` (default centerface, embedded, as process; yunet "
                        "needs --detector-model)")
    q.add_argument("--detector-model", default=None, help="detector model file (YuNet needs one)")
    q.add_argument("--score", type=float, default=None,
                   help="detector score threshold (default 0.7 for yunet, 0.5 for the others)")
    q.add_argument("--detect-size", type=int, default=None, metavar="PX",
                   help="shrink frames to this longer side for detection (default 640 for yunet, 320 for the others)")
    q.add_argument("--every", type=int, default=1, help="use every N-th frame")
    q.add_argument("--min-track", type=int, default=8, help="drop tracks with fewer crops")
    q.add_argument("--no-progress", action="store_true", help="no progress bar (one is drawn only on a terminal)")
    q.set_defaults(func=_prepare)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


#: detector -> (detection size, score threshold) defaults of ``data prepare``
_DETECT_DEFAULTS = {"yunet": (640, 0.7)}

#: the failed inputs the last line of a run names (the others: "and N more")
_NAMED = 3


def _failed_line(failed: Sequence[Path], total: int, out: str) -> str:
    """The run's last line where inputs failed: how many, which, and what happens to them."""
    names = ", ".join(str(f) for f in failed[:_NAMED]) + (
        f" and {len(failed) - _NAMED} more" if len(failed) > _NAMED else "")
    return (f"{len(failed)} of {total} inputs failed: {names} (recorded in {Path(out) / 'sources.csv'}; the next run "
            f"tries {'it' if len(failed) == 1 else 'them'} again)")


def _prepare(args: argparse.Namespace) -> int:
    from facecycle.data.prepare import PrepareOptions, iter_sources, prepare_dataset
    from realtime.detectors import DETECTORS, create_detector
    from realtime.facetracks import face_tracks

    if args.every < 1:
        raise UsageError("--every must be >= 1")
    if not (math.isfinite(args.scale) and args.scale > 0):  # 0 or less cut 1-pixel crops, with exit 0
        raise UsageError(f"--scale must be > 0 (the crop's side over the face box's), not {args.scale:g}")
    if args.min_track < 1:
        raise UsageError("--min-track must be >= 1")
    # the defaults the two earlier detector paths of data prep had, so datasets stay comparable
    size, score = _DETECT_DEFAULTS.get(args.detector, (320, 0.5))
    size = args.detect_size if args.detect_size is not None else size
    score = args.score if args.score is not None else score
    if not 0.0 < score < 1.0:
        raise UsageError("--score must be in (0, 1)")
    if size < 16:
        raise UsageError("--detect-size must be >= 16")
    opt = PrepareOptions(size=args.size, scale=args.scale, every=args.every, min_track=args.min_track)
    iter_sources(args.inputs)  # a missing input fails before the detector loads
    det = create_detector(args.detector, args.detector_model, max_side=size, score_threshold=score)
    failed: List[Path] = []

    def skipped(src: Path, msg: str) -> None:  # as process says an input it skips: one line, on stderr
        failed.append(src)
        what = msg if msg.startswith(f"{src}:") else f"{src}: {msg}"
        print(f"facecycle: error: {what} (skipped; continuing with the other inputs)", file=sys.stderr)

    try:
        extract = functools.partial(face_tracks, detector=det, size=opt.size, scale=opt.scale, every=opt.every,
                                    min_face=opt.min_face, min_iou=opt.min_iou, max_gap=opt.max_gap)
        c = prepare_dataset(args.inputs, Path(args.out), extract, opt, detector_name=args.detector,
                            progress=not args.no_progress,
                            box_scales={name: cls.box_scale for name, cls in DETECTORS.items()}, on_failure=skipped)
    finally:
        det.close()
    note(f"{args.out}: {c['done']} sources prepared ({c['tracks']} tracks, {c['crops']} crops), "
         f"{c['skipped']} already done, {c['failed']} failed")
    if failed:  # the good inputs are prepared; the run still failed, as process and batch say it (exit 3)
        raise InputError(_failed_line(failed, c["done"] + c["skipped"] + c["failed"], args.out))
    return 0
