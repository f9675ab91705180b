"""numpy ⇄ Qt image conversion."""
from __future__ import annotations

import numpy as np
from PyQt6.QtGui import QImage

__all__ = ["bgr_to_qimage", "rgb_to_qimage"]


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
