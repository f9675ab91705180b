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
    uint8 with ``grey``; EXIF orientation applied; a 16-bit file as 8-bit (:func:`_eight_bit`). None where the file
    cannot be read or decoded (as ``cv2.imread``)."""
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size:
        return None
    flags = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    try:
        # IMREAD_ANYDEPTH keeps a 16-bit file's values (the plain flags shift them right by 8: 70 FER faces saved
        # as 16-bit TIFFs of their 0-255 values read all black, 14.3 % accuracy, now 64.3 % as the 8-bit files); the
        # EXIF orientation is applied as with the plain flags (IMREAD_UNCHANGED would not), 8-bit files decode to
        # the same bytes
        img = cv2.imdecode(data, flags | cv2.IMREAD_ANYDEPTH)
        if img is not None and img.dtype != np.uint8 and img.dtype != np.uint16:  # float, 32-bit: as before
            img = cv2.imdecode(data, flags)
    except cv2.error:
        return None
    if img is None or not img.size:
        return None
    return _eight_bit(img) if img.dtype == np.uint16 else img


def _eight_bit(img: np.ndarray) -> np.ndarray:
    """A 16-bit image (H, W[, 3]) uint16 as uint8 of the same shape: values that all lie within 0-255 (8-bit data
    written to a 16-bit file) taken as they are, others scaled by 1/257 (65535 -> 255), rounded."""
    if int(img.max()) <= 255:
        return img.astype(np.uint8)
    return np.round(img / 257.0).astype(np.uint8)
