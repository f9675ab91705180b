"""Reading image files with OpenCV under any file name.

``cv2.imread`` takes a ``str`` and crashes the interpreter (a segmentation fault, no error) on a name that is not
valid UTF-8, as Python hands it over (``caf\\udce9.png`` for the bytes ``caf\\xe9.png``): one such picture ended a
whole folder's run with exit 139. The bytes are read by Python and decoded by ``cv2.imdecode`` instead, which
decodes the same formats and applies the same EXIF orientation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["read_image"]


def read_image(path: Union[str, Path], grey: bool = False) -> Optional[np.ndarray]:
    """An image file as OpenCV reads it: (H, W, 3) uint8 **BGR** (grey files as three equal channels), or (H, W)
    uint8 with ``grey``; EXIF orientation applied. None where the file cannot be read or decoded (as
    ``cv2.imread``)."""
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size:
        return None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    return img if img is not None and img.size else None
