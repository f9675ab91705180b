"""Annotated pictures for stills: one image file (a single picture's input), or a folder of them (an image folder
read as stills), where a video of unrelated pictures at 30 frames per second would be no use."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Union

import cv2

from facecycle.errors import OutputError
from facecycle.files import IMAGE_SUFFIXES, hidden_name, name_length, name_max

from ..types import FramePacket
from .base import Sink, check_output_name, prepare_output

__all__ = ["ImageSink", "is_image_path", "picture_suffix"]

log = logging.getLogger(__name__)

#: what OpenCV writes well for each input suffix (lossy in, lossy out; anything else as PNG)
_KEEP = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_path(path: Union[str, Path]) -> bool:
    """True for a path that names one image file (by its suffix)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def picture_suffix(suffix: str) -> str:
    """The annotated picture's suffix for an input image of ``suffix``: its own where OpenCV writes it well, else
    ``.png``."""
    s = suffix.lower()
    return s if s in _KEEP else ".png"


def _partial_name(out: Path) -> Path:
    """The hidden temporary a picture ``out`` is written to: ``.STEM.partial.SUFFIX``, or where that is longer
    than the file system allows, ``.<12 hex>.partial.SUFFIX`` (:func:`facecycle.files.hidden_name`)."""
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    if name_length(tmp.name) <= name_max(out.parent):
        return tmp
    return hidden_name(out, f".partial{out.suffix}")


class ImageSink(Sink):
    """Write each packet's annotated image (else its image), BGR uint8 (H, W, 3), at the frame's own size.

    Args:
        path: an image file (``photo.annotated.jpg``: every frame replaces it; for a single picture), or a folder
            (``photos.annotated/``: each frame as ``<folder>/<FramePacket.file>``, sub-folders kept, the suffix
            kept where OpenCV writes it well, else ``.png``).
        overwrite: replace existing files (else an existing file or a non-empty folder is refused up front).

    Each file is written whole (a temporary file renamed into place): an interrupted run leaves only complete
    pictures. A folder is written aside (``.NAME.partial-PID``) and moved into place by :meth:`close`, replacing
    what an earlier run left there. Where such a hidden name would be longer than the file system allows (a name near
    its limit), it is ``.<12 hex>…`` instead (:func:`facecycle.files.hidden_name`): a 251-byte picture name failed
    with "File name too long" after its CSV row was written. A folder of pictures removed while the run goes (the
    output folder deleted) stops the run; its pictures were written into a folder made again.
    """

    def __init__(self, path: Union[str, Path], overwrite: bool = False) -> None:
        self.single = is_image_path(path)
        if self.single:
            self.path = prepare_output(path, overwrite)
        else:
            self.path = check_output_name(path)
            if self.path.exists() and not self.path.is_dir():
                raise OutputError(f"{self.path}: exists and is not a folder")
            if self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
                raise OutputError(f"{self.path}: exists (use --overwrite, or overwrite=True in Python, to replace it)")
            # written aside and moved into place at the end: an overwritten folder keeps no picture of the last
            # run, and a folder of this run's pictures appears whole
            self._work = hidden_name(self.path, f".partial-{os.getpid()}")
            try:
                if self._work.exists():
                    shutil.rmtree(self._work)
                self._work.mkdir(parents=True)
            except OSError as e:
                raise OutputError(f"{self.path}: cannot create folder ({e.strerror or e})") from None
        self.frames = 0
        self._closed = False

    def _target(self, packet: FramePacket) -> Path:
        if self.single:
            return self.path
        rel = Path(packet.file or f"frame_{packet.index:06d}.png")
        if rel.suffix.lower() not in _KEEP:
            rel = rel.with_suffix(".png")
        return self._work / rel

    def write(self, packet: FramePacket) -> None:
        if self._closed:
            raise OutputError(f"{self.path}: already closed")
        if not self.single and not self._work.is_dir():  # (made when the sink opened: removed since)
            raise OutputError(f"{self.path}: output folder removed while running ({self.frames} pictures written "
                              "went with it); the run stopped")
        img = packet.annotated if packet.annotated is not None else packet.image
        out = self._target(packet)
        tmp = _partial_name(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            # encoded here and written by Python: cv2.imwrite takes a narrow path on Windows, where a name outside
            # the system's code page (C:\\Users\\Иван\\…) failed or was written under another name
            ok, buf = cv2.imencode(out.suffix, img)
            if not ok:
                raise OSError("OpenCV could not encode the image")
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, out)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise OutputError(f"{out}: write failed ({e.strerror or e}; {self.frames} pictures written)") from None
        self.frames += 1

    def close(self) -> None:
        """Finish (idempotent): a folder's pictures move into place, replacing the folder's earlier contents."""
        if self._closed:
            return
        self._closed = True
        if self.single:
            return
        try:
            if self.path.is_dir():
                shutil.rmtree(self.path)
            os.replace(self._work, self.path)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot move the pictures into place ({e.strerror or e}; they are in "
                              f"{self._work})") from None
