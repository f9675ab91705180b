#!/usr/bin/env python3
"""Does a clip's reading survive the way acted-emotion corpora ship video? CREMA-D, for one, is 480x360 FLV1
(Sorenson H.263) at about 600 kbit/s: small faces and block artefacts.

Each held-out clip's first ``--frames`` frames are cut to 4:3 at the centre and scaled to 480x360, then encoded
twice with PyAV: nearly lossless (H.264, CRF 12, ``.mp4``) and as CREMA-D does (FLV1 at 600 kbit/s, ``.flv``).
Both go through ``facecycle process --csv --no-video`` (ONNX Runtime); reported per clip: the emotion the mean of
the ``emotion_*`` columns names (the sidecar's ``summary``), the largest difference between the two mean
probability vectors, and the share of frames whose top emotion is the same in both.

    python scripts/eval_codec_robustness.py --out benchmarks/DIR/codec_robustness.json
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
    return {"emotion": side["emotion"], "mean_emotions": side["mean_emotions"], "face_rows": side["rows"], "top": top}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path, default=ROOT / "benchmarks" / "heldout_clips.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
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
            for kind in ("mp4", "flv"):
                v = tmp / f"{src.stem}.{kind}"
                encode(v, imgs, kind)
                res[kind] = run(v, tmp / kind)
                res[kind]["kbit_s"] = round(v.stat().st_size * 8 / (len(imgs) / 30) / 1000)
            top_mp4, top_flv = res["mp4"].pop("top"), res["flv"].pop("top")
            both = sorted(set(top_mp4) & set(top_flv))
            same = float(np.mean([top_mp4[i] == top_flv[i] for i in both])) if both else float("nan")
            diff = max(abs(res["mp4"]["mean_emotions"][e] - res["flv"]["mean_emotions"][e]) for e in EMOTIONS)
            recs.append({"clip": r["clip"], "label": r["label"], "person": r["person"], **res,
                         "max_mean_prob_difference": round(diff, 4),
                         "frames_same_top_emotion": round(same, 4) if both else None})
            print(f"{src.stem[:40]:41s} {r['label']:8s} mp4 {res['mp4']['emotion']:8s} flv {res['flv']['emotion']:8s} "
                  f"max diff {diff:.3f} same top {same:.2f}", flush=True)
    named = {k: sum(x[k]["emotion"] == x["label"] for x in recs) for k in ("mp4", "flv")}
    rec = {"what": __doc__.splitlines()[0], "date": time.strftime("%Y-%m-%d"), "frames_per_clip": a.frames,
           "clips": recs, "named": named, "same_clip_reading": sum(x["mp4"]["emotion"] == x["flv"]["emotion"]
                                                                    for x in recs),
           "n_clips": len(recs), "seconds": round(time.time() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"named: {named} of {len(recs)}; same reading {rec['same_clip_reading']} -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
