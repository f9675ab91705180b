#!/usr/bin/env python3
"""Does a clip's reading survive the way acted-emotion corpora ship video? CREMA-D, for one, is 480x360 FLV1
(Sorenson H.263) at about 600 kbit/s: small faces and block artefacts.

Each held-out clip's first ``--frames`` frames are cut to 4:3 at the centre and scaled to 480x360, then encoded
twice with PyAV: nearly lossless (H.264, CRF 12, ``.mp4``) and as CREMA-D does (FLV1 at 600 kbit/s, ``.flv``).
Both go through ``facecycle process --csv --no-video`` (ONNX Runtime); reported per clip: the emotion the mean of
the ``emotion_*`` columns names (the sidecar's ``summary``), the largest difference between the two mean
probability vectors, and the share of frames whose top emotion is the same in both.

``--face-scales 1,0.5,0.35`` also measures the face size: at a scale ``s`` < 1 the 480x360 picture is shrunk by
``s`` and centred on a flat grey 480x360 background (CREMA-D's actors sit before a plain backdrop, the face about
a third of the frame high), so the same frames reach the detector and the model as smaller faces, then are
encoded both ways. Each scale's readings are compared with the nearly lossless full-size ones (scale 1, mp4).

    python scripts/eval_codec_robustness.py --out benchmarks/DIR/codec_robustness.json
    python scripts/eval_codec_robustness.py --face-scales 1,0.5,0.35 --out benchmarks/DIR/face_size.json
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def frames(path: Path, n: int) -> List[np.ndarray]:
    """The first ``n`` frames, RGB, cut to 4:3 at the centre and scaled to 480x360."""
    import av
    import cv2

    out = []
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            img = fr.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            tw = min(w, int(h * 4 / 3))
            th = min(h, int(tw * 3 / 4))
            x0, y0 = (w - tw) // 2, (h - th) // 2
            out.append(cv2.resize(img[y0:y0 + th, x0:x0 + tw], (480, 360), interpolation=cv2.INTER_AREA))
            if len(out) >= n:
                break
    return out


def shrink(imgs: List[np.ndarray], scale: float) -> List[np.ndarray]:
    """480x360 RGB frames shrunk by ``scale`` and centred on flat grey (128) 480x360; ``scale`` 1 returns them."""
    import cv2

    if scale >= 1.0:
        return imgs
    w, h = max(2, int(round(480 * scale))), max(2, int(round(360 * scale)))
    x0, y0 = (480 - w) // 2, (360 - h) // 2
    out = []
    for im in imgs:
        c = np.full((360, 480, 3), 128, np.uint8)
        c[y0:y0 + h, x0:x0 + w] = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
        out.append(c)
    return out


def face_height(csv_path: Path) -> float:
    """Median face box height in pixels over the rows with a face of a ``facecycle process`` CSV."""
    with open(csv_path, newline="") as fh:
        hs = [float(r["face_h"]) for r in csv.DictReader(fh) if r["success"] == "1" and r.get("face_h")]
    return float(np.median(hs)) if hs else float("nan")


def encode(path: Path, imgs: List[np.ndarray], kind: str) -> None:
    import av

    with av.open(str(path), "w", format="flv" if kind == "flv" else None) as o:
        if kind == "flv":
            s = o.add_stream("flv", rate=30)
            s.bit_rate = 600_000
        else:
            s = o.add_stream("libx264", rate=30, options={"crf": "12"})
        s.width, s.height, s.pix_fmt = 480, 360, "yuv420p"
        for im in imgs:
            for p in s.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                o.mux(p)
        for p in s.encode():
            o.mux(p)


def run(video: Path, out_dir: Path) -> Dict:
    subprocess.run([sys.executable, "-m", "facecycle", "process", str(video), "--csv", "--no-video", "--out-dir",
                    str(out_dir), "--no-progress", "--overwrite", "--backend", "onnxruntime"], check=True,
                   capture_output=True, cwd=ROOT)
    side = json.loads((out_dir / f"{video.stem}.json").read_text())["summary"]["faces"]
    with open(out_dir / f"{video.stem}.csv", newline="") as fh:
        top = {int(r["frame"]): r["emotion"] for r in csv.DictReader(fh) if r["success"] == "1"}
    return {"emotion": side["emotion"], "mean_emotions": side["mean_emotions"], "face_rows": side["rows"],
            "face_height_px_median": round(face_height(out_dir / f"{video.stem}.csv"), 1), "top": top}


def compare(a: Dict, b: Dict) -> Dict:
    """The largest difference between two runs' mean probability vectors and the share of frames (with a face in
    both) whose top emotion is the same."""
    both = sorted(set(a["top"]) & set(b["top"]))
    same = float(np.mean([a["top"][i] == b["top"][i] for i in both])) if both else None
    diff = max(abs(a["mean_emotions"][e] - b["mean_emotions"][e]) for e in EMOTIONS)
    return {"max_mean_prob_difference": round(diff, 4),
            "frames_same_top_emotion": None if same is None else round(same, 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--face-scales", default="1",
                    help="comma-separated picture scales on a grey 480x360 frame, 1 first")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    scales = [float(x) for x in a.face_scales.split(",")]
    if scales[0] != 1.0 or any(not 0.05 <= x <= 1.0 for x in scales):
        ap.error("--face-scales: the first scale must be 1 (the reference), all within 0.05..1")
    #: (result key, scale, codec) of every encoding of a clip: "mp4", "flv", then "mp4@0.5", "flv@0.5", ...
    runs = [(kind if sc == 1.0 else f"{kind}@{sc:g}", sc, kind) for sc in scales for kind in ("mp4", "flv")]
    t0 = time.time()
    with open(a.clips, newline="") as fh:
        rows = list(csv.DictReader(fh))
    recs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in rows:
            src = a.shared / "data" / r["clip"]
            if not src.is_file():
                print(f"skip {src}: absent", file=sys.stderr)
                continue
            imgs = frames(src, a.frames)
            res = {}
            for key, sc, kind in runs:
                v = tmp / f"{src.stem}.{kind}"
                encode(v, shrink(imgs, sc), kind)
                res[key] = run(v, tmp / key)
                res[key]["kbit_s"] = round(v.stat().st_size * 8 / (len(imgs) / 30) / 1000)
            ref = res["mp4"]
            cmp = {k: compare(ref, x) for k, x in res.items() if k != "mp4"}
            for x in res.values():
                x.pop("top")
            recs.append({"clip": r["clip"], "label": r["label"], "person": r["person"], **res, **cmp["flv"],
                         "against_mp4": cmp})
            print(f"{src.stem[:40]:41s} {r['label']:8s} " + " ".join(f"{k} {x['emotion']}" for k, x in res.items()),
                  flush=True)
    keys = [key for key, _, _ in runs] if recs else []
    named = {k: sum(x[k]["emotion"] == x["label"] for x in recs) for k in keys}
    rec = {"what": __doc__.splitlines()[0], "date": time.strftime("%Y-%m-%d"), "frames_per_clip": a.frames,
           "face_scales": scales, "clips": recs, "named": named,
           "same_clip_reading": sum(x["mp4"]["emotion"] == x["flv"]["emotion"] for x in recs),
           "same_clip_reading_as_mp4": {k: sum(x[k]["emotion"] == x["mp4"]["emotion"] for x in recs) for k in keys},
           "face_height_px_median": {k: float(np.median([x[k]["face_height_px_median"] for x in recs])) for k in keys},
           "n_clips": len(recs), "seconds": round(time.time() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"named: {named} of {len(recs)}; same reading {rec['same_clip_reading']} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
