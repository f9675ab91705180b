"""Frame sources: video files/streams (PyAV), cameras (OpenCV), image folders.

Use :func:`open_source` to pick one from a user's input string.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from facecycle.errors import InputError

from .base import Source
from .camera import CameraSource
from .frames import FrameSource
from .images import ImageFolderSource
from .video import VideoSource, is_stream_url, local_path

__all__ = ["Source", "VideoSource", "CameraSource", "ImageFolderSource", "FrameSource", "open_source",
           "is_stream_url", "local_path"]


def open_source(spec: Union[str, int, Path, Iterable[Any]], realtime: bool = False, width: Optional[int] = None,
                height: Optional[int] = None, fps: Optional[float] = None, images: str = "auto",
                url_timeout: Optional[float] = None) -> Source:
    """Open ``spec``: an int / ``camera:N`` / ``/dev/videoN`` -> camera; a folder -> images (read as ``images``:
    ``auto``, ``sequence`` or ``stills``, :class:`ImageFolderSource`); an iterable of images (or of ``(image,
    timestamp)`` pairs) -> :class:`FrameSource`; else a video (a ``file://`` URL is its local path; a stream URL's
    scheme is compared in any case, :func:`is_stream_url`). ``url_timeout``: a URL's seconds without data before its
    read gives up (:class:`VideoSource`'s ``timeout``; None: :data:`realtime.sources.video.URL_TIMEOUT_S`).

    Raises:
        facecycle.errors.InputError: the input is missing or cannot be read.
    """
    if isinstance(spec, int):
        return CameraSource(spec, width=width, height=height, fps=fps)
    if not isinstance(spec, (str, os.PathLike)):
        return FrameSource(spec, fps=fps or 30.0, live=realtime)
    s = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if not s.strip():  # Path("") is the current folder: it would be read whole, as an image folder
        raise InputError("an empty path: give a video, an image folder, a URL or a camera")
    s = local_path(s)  # file:///x is the path /x
    if s.startswith("camera:"):
        return CameraSource(s.split(":", 1)[1], width=width, height=height, fps=fps)
    if s.startswith("/dev/video"):
        return CameraSource(s, width=width, height=height, fps=fps)
    if Path(s).is_dir():
        return ImageFolderSource(s, fps=fps or 30.0, reading=images)
    return VideoSource(s, realtime=realtime, timeout=url_timeout)
