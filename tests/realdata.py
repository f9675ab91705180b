"""Small helpers that pull real face crops out of ../shared clips for tests."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np


def decode_frames(path: Path, n: int, step: int = 7) -> List[np.ndarray]:
    """First ``n`` frames (every ``step``-th) of a video as RGB uint8 arrays, via PyAV."""
    import av

    out: List[np.ndarray] = []
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i % step == 0:
                out.append(fr.to_ndarray(format="rgb24"))
            if len(out) >= n:
                break
    return out


def center_face_crops(path: Path, n: int, size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB loose centre crops of a talking-head clip."""
    import cv2

    crops = []
    for fr in decode_frames(path, n):
        h, w = fr.shape[:2]
        s = int(min(h, w) * 0.8)
        y0, x0 = (h - s) // 2, (w - s) // 2
        crops.append(cv2.resize(fr[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(crops)
