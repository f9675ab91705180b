"""numpy ⇄ Qt image conversion."""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np
from PyQt6.QtGui import QImage

__all__ = ["bgr_to_qimage", "rgb_to_qimage", "display_image", "fit_size"]


def _to_qimage(arr: np.ndarray, fmt: QImage.Format) -> QImage:
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    img = QImage(arr.data, w, h, int(arr.strides[0]), fmt)
    img._keep = arr  # QImage does not own the buffer: keep the array alive with it
    return img


def bgr_to_qimage(arr: np.ndarray) -> QImage:
    """Wrap an (H, W, 3) uint8 **BGR** array as a QImage without copying the pixels.

    The array is kept alive by the returned image; do not modify it afterwards.
    """
    return _to_qimage(arr, QImage.Format.Format_BGR888)


def rgb_to_qimage(arr: np.ndarray) -> QImage:
    """Wrap an (H, W, 3) uint8 **RGB** array (e.g. a neutral face) as a QImage, no copy."""
    return _to_qimage(arr, QImage.Format.Format_RGB888)


def fit_size(img_w: int, img_h: int, area_w: int, area_h: int) -> Tuple[int, int]:
    """The largest (w, h) of aspect ``img_w:img_h`` inside ``area_w`` × ``area_h`` (at least 1×1)."""
    if img_w <= 0 or img_h <= 0 or area_w <= 0 or area_h <= 0:
        return max(1, img_w), max(1, img_h)
    s = min(area_w / img_w, area_h / img_h)
    return max(1, int(img_w * s)), max(1, int(img_h * s))


def display_image(bgr: np.ndarray, area: Optional[Tuple[int, int, float]] = None) -> QImage:
    """The frame as the live view paints it: scaled to fit ``area`` (w, h in device pixels,
    device pixel ratio) and in QImage's native 32-bit format, so that painting is a plain copy.

    Runs in the worker thread (OpenCV releases the GIL), keeping the GUI thread's
    per-frame work to a blit. ``bgr``: (H, W, 3) uint8 BGR.
    """
    h, w = bgr.shape[:2]
    dpr = float(area[2]) if area is not None and len(area) > 2 else 1.0
    if area is not None:
        tw, th = fit_size(w, h, int(area[0]), int(area[1]))
        if (tw, th) != (w, h):
            interp = cv2.INTER_AREA if tw < w else cv2.INTER_LINEAR
            bgr = cv2.resize(bgr, (tw, th), interpolation=interp)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)  # little-endian BGRA bytes == QImage RGB32
    img = QImage(bgra.data, bgra.shape[1], bgra.shape[0], int(bgra.strides[0]), QImage.Format.Format_RGB32)
    img._keep = bgra
    if dpr != 1.0:
        img.setDevicePixelRatio(dpr)
    return img
