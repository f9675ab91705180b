"""Preview images: flow as colour (HSV) and sample grids."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..imageio import write_image

__all__ = ["flow_to_rgb", "save_grid"]


def flow_to_rgb(flow: np.ndarray, size: int, max_mag: float = 0.25) -> np.ndarray:
    """(B, 2, h, w) flow (grid units) -> (B, size, size, 3) uint8 RGB: hue = direction, value = magnitude."""
    import cv2

    out = []
    for f in np.asarray(flow, np.float32):
        fx, fy = f[0], f[1]
        mag = np.sqrt(fx * fx + fy * fy)
        ang = (np.degrees(np.arctan2(fy, fx)) % 360) / 2  # OpenCV hue 0..180
        hsv = np.stack([ang, np.full_like(ang, 255), np.clip(mag / max_mag, 0, 1) * 255], -1).astype(np.uint8)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        out.append(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST))
    return np.stack(out)


def save_grid(path: Path, rows: Sequence[np.ndarray], scale: int = 2) -> Path:
    """Write rows of (N, S, S, 3) uint8 RGB images as one PNG (rows top to bottom)."""
    import cv2

    grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
    if scale > 1:
        grid = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path
