"""Image folders read as a frame sequence (the only reading before 2026-12-06) or as stills (the default for
separate pictures now), through `facecycle process` as a user runs it.

A. FER-2013 faces (the last ``--per-class`` of each class of ../shared's train split: training images of the
   shipped model, so the accuracies are optimistic; what matters is the gap) in one flat folder: faces found and
   faces read as their class, with ``--images sequence`` (tracked, smoothed, plain detection) and ``--images
   stills`` (each on its own, a second detection inside a grey border, a face filling its picture read whole);
   and the same faces through ``probe eval`` (the probes' framing).
B. Twelve photos of one person (evenly spaced frames of a posed clip) in one folder: how many photos each reading
   gives another top emotion than ``Analyzer.analyze_image`` gives the photo alone.

    python scripts/eval_image_folders.py --out benchmarks/DIR/image_folders.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("FACECYCLE_SHARED", ROOT.parent / "shared"))
CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _process(folder: Path, out: Path, reading: str) -> list:
    from facecycle_cli import main

    rc = main(["process", str(folder), "--images", reading, "--no-video", "--no-progress", "--out-dir", str(out),
               "--overwrite"])
    if rc:
        raise SystemExit(f"process failed ({rc})")
    return list(csv.DictReader(open(out / f"{folder.name}.csv", newline="")))


def _best(rows: list, files: list) -> dict:
    """file name -> its most confident face row (files named by the frame index: the sequence reading's CSV)."""
    best = {}
    for r in rows:
        if r["success"] != "1":
            continue
        f = r.get("file") or files[int(r["frame"])].name
        if f not in best or float(r["confidence"]) > float(best[f]["confidence"]):
            best[f] = r
    return best


def fer_part(tmp: Path, per_class: int) -> dict:
    from realtime.sources.images import ImageFolderSource

    flat = tmp / "fer"
    flat.mkdir()
    for c in CLASSES:
        for p in sorted((SHARED / "data" / "fer2013" / "train" / c).glob("*.jpg"))[-per_class:]:
            shutil.copy(p, flat / f"{c}_{p.name}")
    files = ImageFolderSource(flat).files
    res = {"images": len(files)}
    # the same faces through `probe eval` (the probes' framing: FER crops whole), for the gap
    tree = tmp / "fer_tree" / "test"
    for f in files:
        (tree / f.name.split("_")[0]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tree / f.name.split("_")[0] / f.name)
    from facecycle_cli import main

    if main(["probe", "eval", "--task", "expression", "--data", str(tree.parent), "--split", "test", "--json",
             str(tmp / "probe.json")]):
        raise SystemExit("probe eval failed")
    probe = json.loads((tmp / "probe.json").read_text())
    res["probe_eval"] = {k: probe[k] for k in ("accuracy", "n") if k in probe} or probe
    # the detector alone on each picture: as it is, and with the stills' second try inside a grey border
    import cv2

    from realtime import Analyzer

    with Analyzer() as an:
        imgs = [cv2.imread(str(f)) for f in files]
        res["detector"] = {"name": an.detector.name,
                           "pictures_with_a_face_plain": sum(len(an.detector.detect(im)) > 0 for im in imgs),
                           "pictures_with_a_face_detect_still": sum(len(an.detector.detect_still(im)) > 0
                                                                    for im in imgs)}
    for reading in ("sequence", "stills"):
        t = time.perf_counter()
        best = _best(_process(flat, tmp / f"out_fer_{reading}", reading), files)
        right = sum(r["emotion"] == f.split("_")[0] for f, r in best.items())
        res[reading] = {"faces_found": len(best), "read_as_their_class": right,
                        "accuracy_of_found": round(right / max(1, len(best)), 4),
                        "accuracy_of_all": round(right / len(files), 4), "seconds": round(time.perf_counter() - t, 1)}
    return res


def photos_part(tmp: Path, clip: str) -> dict:
    import av
    import cv2
    import numpy as np

    from realtime import Analyzer
    from realtime.sources.images import ImageFolderSource

    with av.open(str(SHARED / "data" / "videos" / clip)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    d = tmp / "photos"
    d.mkdir()
    for k, i in enumerate(np.linspace(0, len(frames) - 1, 12).astype(int)):
        cv2.imwrite(str(d / f"photo_{k:02d}.png"), frames[i])
    files = ImageFolderSource(d).files
    with Analyzer() as an:
        alone = {f.name: an.analyze_image(f) for f in files}
    alone_top = {k: CLASSES[int(np.argmax(p.faces[0].emotions))] for k, p in alone.items() if p.faces}
    res = {"clip": clip, "photos": len(files), "auto_reading": ImageFolderSource(d).reading}
    for reading in ("sequence", "stills"):
        best = _best(_process(d, tmp / f"out_photos_{reading}", reading), files)
        other = sorted(f for f, r in best.items() if f in alone_top and r["emotion"] != alone_top[f])
        res[reading] = {"another_top_emotion_than_alone": len(other), "photos": other,
                        "face_ids": len({r["face_id"] for r in best.values()})}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--clip", default="liveportrait_driving_d0.mp4")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not (SHARED / "data" / "fer2013" / "train").is_dir():
        raise SystemExit(f"{SHARED}/data/fer2013/train is absent")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        res = {"fer2013_train_faces": fer_part(tmp, args.per_class),
               "photos_of_one_person": photos_part(tmp, args.clip)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
