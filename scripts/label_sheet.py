#!/usr/bin/env python3
"""A contact sheet of one prepared track, each face numbered by its source frame, for labelling spans by eye.

``python scripts/label_sheet.py --data /work/data/vid1 /work/data/vid2 --track liveportrait_driving_d3 --out d3.png``

Reads the track's rows from the ``index.csv`` of ``facecycle data prepare`` folders, decodes the source video
once (OpenCV) and cuts each chosen face again from the full-resolution frame (the box's longer side × 1.3,
``--side`` px, so the sheet is sharper than the 64-px training crops). ``--count`` faces, evenly spaced over the
track. The frame numbers are what ``training/video_spans.csv`` takes as ``start`` and ``end`` (how
experiment 21's spans were chosen, MODEL_CARD.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, nargs="+", required=True, help="prepared folders (facecycle data prepare)")
    ap.add_argument("--track", required=True, help="a track name or its clip's stem (the first track matching)")
    ap.add_argument("--count", type=int, default=48, help="faces on the sheet")
    ap.add_argument("--side", type=int, default=128, help="each face's side in px")
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    a = ap.parse_args()
    import cv2

    from facecycle.data.prepare import read_index

    rows = []
    for d in a.data:
        rows = [r for r in read_index(d) if r["track"] == a.track or r["track"].startswith(a.track + "_")]
        if rows:
            break
    if not rows:
        print(f"error: no track {a.track!r} in {', '.join(map(str, a.data))}", file=sys.stderr)
        return 2
    rows = [r for r in rows if r["track"] == rows[0]["track"]]
    pick = rows[:: max(1, len(rows) // a.count)][: a.count]
    want = {int(r["frame"]): r for r in pick}
    cap = cv2.VideoCapture(rows[0]["source"])
    tiles, f, s = [], 0, a.side
    while want:
        ok, im = cap.read()
        if not ok:
            break
        r = want.pop(f, None)
        if r is not None:
            x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
            half = max(x1 - x0, y1 - y0) * 0.65
            k = s / (2 * half)
            m = np.float32([[k, 0, -((x0 + x1) / 2 - half) * k], [0, k, -((y0 + y1) / 2 - half) * k]])
            t = cv2.warpAffine(im, m, (s, s))
            cv2.putText(t, str(f), (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
            tiles.append(t)
        f += 1
    if not tiles:
        print(f"error: {rows[0]['source']}: no frame decoded", file=sys.stderr)
        return 2
    while len(tiles) % a.cols:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i:i + a.cols]) for i in range(0, len(tiles), a.cols)])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), sheet)
    print(f"{rows[0]['track']}: {len(pick)} faces -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
