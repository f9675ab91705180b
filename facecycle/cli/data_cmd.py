"""``facecycle data prepare``: videos / image folders -> face-track crop dataset."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data tools")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    q = dsub.add_parser("prepare", help="decode, detect, track and crop faces into a training dataset")
    q.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders of videos or image folders")
    q.add_argument("--out", required=True, help="dataset directory (created or resumed)")
    q.add_argument("--size", type=int, default=64, choices=(64, 128), help="crop side in pixels")
    q.add_argument("--scale", type=float, default=1.7, help="square crop side / detector box side")
    q.add_argument("--detector", default="yunet", help="yunet (OpenCV) or a realtime.detectors name")
    q.add_argument("--detector-model", default=None, help="detector ONNX file (YuNet needs one)")
    q.add_argument("--score", type=float, default=0.7, help="detector score threshold")
    q.add_argument("--every", type=int, default=1, help="use every N-th frame")
    q.add_argument("--min-track", type=int, default=8, help="drop tracks with fewer crops")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_prepare)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _prepare(args: argparse.Namespace) -> int:
    from ..data.detect import make_detector
    from ..data.prepare import PrepareOptions, prepare_dataset

    if args.every < 1:
        raise UsageError("--every must be >= 1")
    det = make_detector(args.detector, args.detector_model, args.score)
    opt = PrepareOptions(size=args.size, scale=args.scale, every=args.every, min_track=args.min_track)
    c = prepare_dataset(args.inputs, Path(args.out), det, opt, detector_name=args.detector,
                        progress=not args.no_progress)
    print(f"{args.out}: {c['done']} sources prepared ({c['tracks']} tracks, {c['crops']} crops), "
          f"{c['skipped']} already done, {c['failed']} failed")
    return 1 if c["failed"] and not (c["done"] or c["skipped"]) else 0
