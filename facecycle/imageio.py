"""Reading image files with OpenCV under any file name.

``cv2.imread`` takes a ``str`` and crashes the interpreter (a segmentation fault, no error) on a name that is not
valid UTF-8, as Python hands it over (``caf\\udce9.png`` for the bytes ``caf\\xe9.png``): one such picture ended a
whole folder's run with exit 139. The bytes are read by Python and decoded by ``cv2.imdecode`` instead, which
decodes the same formats and applies the same EXIF orientation.

A JPEG whose last bytes are missing (a download cut short: no end-of-image marker) does not decode with
``cv2.imdecode``, where ``cv2.imread`` and FFmpeg read it: it is decoded again with the end marker put back, and kept
where the data reaches the picture's last row (a file cut further, whose bottom rows come out as the decoder's flat
fill, stays unreadable).

A picture larger than FFmpeg reads (:data:`MAX_PIXELS`) is refused from its header, before it is decoded: a 30000²
JPEG of 14 MB took 5.2 GB in OpenCV's decoding alone (a "decompression bomb"), where the same picture given alone,
read by FFmpeg, is refused.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from .errors import InputError, OutputError

__all__ = ["MAX_PIXELS", "PictureTooLarge", "picture_size", "read_image", "too_large", "write_image"]

log = logging.getLogger(__name__)

#: a JPEG's first two bytes (start of image) and its last two (end of image)
_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"

#: the largest picture that is read: FFmpeg's own bound for a frame, ``(width + 128) * (height + 128) < 2**28``
#: (about 260 MP: 16000 x 16000 is read, 16384 x 16384 is not), so that a picture read alone (by FFmpeg) and one in
#: a folder (by OpenCV) are held to one rule. A 16000² picture takes about 1.6 GB to analyse
MAX_PIXELS = 1 << 28


class PictureTooLarge(InputError):
    """A picture over :data:`MAX_PIXELS`, refused from its header before it is decoded."""


def too_large(width: int, height: int) -> Optional[str]:
    """Why a ``width`` x ``height`` picture is not read (see :data:`MAX_PIXELS`), or None where it is."""
    if (width + 128) * (height + 128) < MAX_PIXELS:
        return None
    return (f"a picture of {width}x{height} pixels ({width * height / 1e6:.0f} MP) is too large to read (at most about "
            f"{MAX_PIXELS / 1e6 - 8:.0f} MP, 16000x16000): shrink it first")


def picture_size(source: Union[str, Path, bytes, memoryview]) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from a picture file's header (a path or the file's bytes) without decoding it (the
    ``imagesize`` package: PNG, JPEG, GIF, TIFF, WebP, BMP, JPEG 2000, Netpbm, AVIF), or None where the header is not
    one of those or does not say."""
    import imagesize

    try:
        w, h = imagesize.get(io.BytesIO(source) if isinstance(source, (bytes, memoryview)) else str(source))
    except Exception:  # noqa: BLE001 - a damaged header is the decoder's to report
        return None
    return (int(w), int(h)) if w > 0 and h > 0 else None


def read_image(path: Union[str, Path], grey: bool = False) -> Optional[np.ndarray]:
    """An image file as OpenCV reads it: (H, W, 3) uint8 **BGR** (grey files as three equal channels), or (H, W)
    uint8 with ``grey``; EXIF orientation applied; a 16-bit file as 8-bit (:func:`_eight_bit`). None where the file
    cannot be read or decoded (as ``cv2.imread``).

    Raises:
        PictureTooLarge: a picture over :data:`MAX_PIXELS` (from its header where it has one of the formats
            :func:`picture_size` reads, else after decoding).
    """
    import cv2

    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size:
        return None
    size = picture_size(data.data)  # the bytes read, not a copy of them
    why = too_large(*size) if size else None
    if why:
        raise PictureTooLarge(f"{path}: {why}")
    flags = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    img = _decode(data, flags)
    if img is None and bytes(data[:2]) == _JPEG_SOI and bytes(data[-2:]) != _JPEG_EOI:
        # a JPEG cut short: imdecode gives up at the missing end marker, where imread and FFmpeg read what is there
        # (a probe's finding: such a file, common in scraped sets, was read alone but skipped in a folder)
        img = _decode(np.concatenate([data, np.frombuffer(_JPEG_EOI, np.uint8)]), flags)
        if img is not None and _filled_rows(img):
            return None  # cut inside the picture, not only its last bytes: its bottom rows are the decoder's fill
        if img is not None:
            log.warning("%s: the JPEG ends early (its last bytes are missing): read as far as it goes", path)
    if img is None or not img.size:
        return None
    why = too_large(img.shape[1], img.shape[0])
    if why:  # a format whose header was not read
        raise PictureTooLarge(f"{path}: {why}")
    return _eight_bit(img) if img.dtype == np.uint16 else img


def _decode(data: np.ndarray, flags: int) -> Optional[np.ndarray]:
    """``cv2.imdecode`` of a file's bytes (``flags``: colour or grey), 16-bit values kept; None where it fails."""
    import cv2

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
    return img


def _filled_rows(img: np.ndarray) -> bool:
    """Whether the bottom row of a decoded picture is one flat colour, as a JPEG decoder fills the rows its data
    did not reach (mid-grey). A JPEG missing only its last bytes still has data in its last row of blocks (256-px
    test pictures cut by 2-500 bytes: no flat row; by 2,000: 47 flat rows, half the file: 127)."""
    if not img.size:
        return False
    last = img[-1]
    return bool((last == last[:1]).all())


def _eight_bit(img: np.ndarray) -> np.ndarray:
    """A 16-bit image (H, W[, 3]) uint16 as uint8 of the same shape: values that all lie within 0-255 (8-bit data
    written to a 16-bit file) taken as they are, others scaled by 1/257 (65535 -> 255), rounded."""
    if int(img.max()) <= 255:
        return img.astype(np.uint8)
    return np.round(img / 257.0).astype(np.uint8)


def write_image(path: Union[str, Path], image: np.ndarray) -> None:
    """Write ``image`` (uint8, (H, W) grey or (H, W, 3) **BGR**, OpenCV's order) in the format of ``path``'s
    suffix. Encoded by ``cv2.imencode`` and written by Python: ``cv2.imwrite`` returns False where the disk is full
    or a file size limit is reached (libpng prints to stderr), and a caller that did not check it went on with the
    file missing; it also takes a narrow path on Windows. A failed write raises
    :class:`~facecycle.errors.OutputError` naming the file and why (``disk full``:
    :func:`facecycle.files.write_failure`).
    """
    import cv2

    from .files import write_failure

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise OutputError(f"{path}: OpenCV could not encode the image as {path.suffix or '.png'}")
    try:
        with open(path, "wb") as f:
            f.write(buf.tobytes())
    except OSError as e:
        raise OutputError(f"{path}: {write_failure(e)}") from None
