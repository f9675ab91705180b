#!/usr/bin/env python3
"""Do face ids end where a reel of clips changes person? (MODEL_CARD.md, experiment 42)

Joins the first ``--frames`` frames of every clip of ``--dir`` into one 640×360 reel, each clip scaled into the
frame between black bars (square and portrait clips get pillarbox bars, as a video player shows them), reads it
with ``facecycle process`` (``Analyzer.process_video``, default settings, no outputs) and counts the joins where
the face before and the face after keep one ``face_id``: the tracker missed the change of shot, and the person
baseline, smoothing and neutral reference of one person run on into the next.

Usage::

    python scripts/eval_reel_ids.py --dir ../shared/data/videos --out benchmarks/DIR/reel_ids.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import write_result  # noqa: E402

W, H = 640, 360


def make_reel(clips: "list[Path]", frames: int, out: Path) -> "list[tuple[str, int]]":
    """Write the reel to ``out``; returns (clip name, first reel frame) for every clip."""
    starts, n = [], 0
    with av.open(str(out), "w") as o:
        s = o.add_stream("libx264", rate=30, options={"crf": "20", "preset": "veryfast"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for c in clips:
            starts.append((c.name, n))
            with av.open(str(c)) as f:
                for _, fr in zip(range(frames), f.decode(video=0), strict=False):
                    img = fr.to_ndarray(format="rgb24")
                    h, w = img.shape[:2]
                    k = min(W / w, H / h)
                    r = cv2.resize(img, (int(w * k) // 2 * 2, int(h * k) // 2 * 2), interpolation=cv2.INTER_AREA)
                    canvas = np.zeros((H, W, 3), np.uint8)
                    y0, x0 = (H - r.shape[0]) // 2, (W - r.shape[1]) // 2
                    canvas[y0: y0 + r.shape[0], x0: x0 + r.shape[1]] = r
                    for pk in s.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                        o.mux(pk)
                    n += 1
        for pk in s.encode():
            o.mux(pk)
    return starts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument("--frames", type=int, default=150, help="frames of each clip (default 150)")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    from realtime.analyzer import Analyzer

    t0 = time.perf_counter()
    clips = sorted(a.dir.glob("*.mp4"))
    with tempfile.TemporaryDirectory() as td:
        reel = Path(td) / "reel.mp4"
        starts = make_reel(clips, a.frames, reel)
        ids, cuts = {}, []
        with Analyzer(a.model, backend="onnxruntime") as an:
            for p in an.process_video(reel):
                ids[p.index] = {f.track_id for f in p.faces}
                if p.scene_cut:
                    cuts.append(p.index)
    kept = []
    for (prev, _), (name, s) in zip(starts[:-1], starts[1:], strict=True):
        if ids.get(s - 1) and ids.get(s) and ids[s - 1] & ids[s]:
            kept.append(f"{prev} -> {name}")
    joins = sum(1 for _, s in starts[1:] if ids.get(s - 1) and ids.get(s))
    res = {"dir": str(a.dir), "clips": len(clips), "frames_per_clip": a.frames, "reel": f"{W}x{H}, black bars",
           "joins_with_faces_on_both_sides": joins, "joins_keeping_a_face_id": len(kept), "kept": kept,
           "scene_cuts": len(cuts)}
    print(f"{len(kept)} of {joins} joins keep a face id: {kept}")
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
