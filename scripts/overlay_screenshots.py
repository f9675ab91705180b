"""Screenshots of the overlays on a close-up, a small face and two faces (issue 12), from ../shared clips.

Usage: ``python scripts/overlay_screenshots.py OUT_DIR [--shared ../shared] [--frame 40] [--app]``

Writes ``closeup.png`` (a 256x256 talking head, with --neutralize: neutralized view and thumbnail),
``smallface.png`` (a full-body shot), ``twofaces.png`` (two clips side by side, made here) as the annotated
video draws them, and with ``--app`` ``app_closeup.png`` (the desktop app's window on the close-up).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {
    "closeup": ("data/videos_more/styletalk_style_clips_surprisegirl_clip2.mp4", True),
    "smallface": ("data/videos/liveportrait_source_s13.mp4", False),
}


def _frames(path: Path, n: int):
    from realtime.sources import VideoSource

    out = []
    with VideoSource(path) as s:
        for p in s:
            out.append(p.image)
            if len(out) >= n:
                break
    return out


def two_face_clip(shared: Path, out: Path, n: int) -> Path:
    """Two talking heads side by side (each 360 px tall) as an H.264 file."""
    import av

    a = _frames(shared / "data/videos/pyfeat_WolfgangLanger_Pexels.mp4", n)
    b = _frames(shared / "data/videos/videoretalking_face_2.mp4", n)
    frames = []
    for x, y in zip(a, b, strict=False):  # the shorter clip sets the length
        x = cv2.resize(x, (int(x.shape[1] * 360 / x.shape[0]) // 2 * 2, 360))
        y = cv2.resize(y, (int(y.shape[1] * 360 / y.shape[0]) // 2 * 2, 360))
        frames.append(np.ascontiguousarray(np.hstack([x, y])))
    c = av.open(str(out), "w")
    s = c.add_stream("libx264", rate=25)
    s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    for f in frames:
        for pk in s.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
            c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    return out


def shot(clip: Path, png: Path, frame: int, neutralize: bool) -> None:
    from realtime.analyzer import Analyzer
    from realtime.annotators import default_annotator

    with Analyzer(neutralize=neutralize) as an:
        ann = default_annotator(neutralized=neutralize, thumbnail=neutralize)
        for p in an.process_video(clip, annotate=ann, max_frames=frame + 1):
            if p.index == frame:
                cv2.imwrite(str(png), p.annotated)
                print(f"{png}: {p.width}x{p.height}, {len(p.faces)} faces")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--frame", type=int, default=40)
    ap.add_argument("--app", action="store_true")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    for name, (rel, neutral) in CASES.items():
        shot(a.shared / rel, a.out / f"{name}.png", a.frame, neutral)
    with tempfile.TemporaryDirectory() as td:
        two = two_face_clip(a.shared, Path(td) / "two.mp4", a.frame + 1)
        shot(two, a.out / "twofaces.png", a.frame, False)
    if a.app:
        env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
        subprocess.run([sys.executable, "-m", "facecycle", "app", "--input", str(a.shared / CASES["closeup"][0]),
                        "--exit-after", str(a.frame), "--screenshot", str(a.out / "app_closeup.png"),
                        "--neutral-thumbnail", "--size", "1000x560"], check=True, env=env, cwd=str(ROOT))
        print(a.out / "app_closeup.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
