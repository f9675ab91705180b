"""Frame sources: video files/streams (PyAV), cameras (OpenCV), image folders.

Use :func:`open_source` to pick one from a user's input string.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from facecycle.errors import InputError, UsageError

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
    timestamp)`` pairs) -> :class:`FrameSource` (a video's frames; with ``images="stills"`` separate pictures, each
    read on its own as ``Analyzer.analyze_image`` reads it); else a video (a ``file://`` URL is its local path; a
    stream URL's scheme is compared in any case, :func:`is_stream_url`; ``images`` is not used: a single picture is
    a still whatever it says). ``url_timeout``: a URL's seconds without data before its read gives up
    (:class:`VideoSource`'s ``timeout``; None: :data:`realtime.sources.video.URL_TIMEOUT_S`).

    Raises:
        facecycle.errors.InputError: the input is missing or cannot be read.
        facecycle.errors.UsageError: ``images="stills"`` for a camera (its frames are a video).
    """
    if isinstance(spec, int):
        return _camera(spec, images, width=width, height=height, fps=fps)
    if not isinstance(spec, (str, os.PathLike)):
        return FrameSource(spec, fps=fps or 30.0, live=realtime, stills=images == "stills")
    s = os.fspath(spec) if isinstance(spec, os.PathLike) else str(spec)
    if not s.strip():  # Path("") is the current folder: it would be read whole, as an image folder
        raise InputError("an empty path: give a video, an image folder, a URL or a camera")
    s = local_path(s)  # file:///x is the path /x
    if s.startswith("camera:"):
        return _camera(s.split(":", 1)[1], images, width=width, height=height, fps=fps)
    if s.startswith("/dev/video"):
        return _camera(s, images, width=width, height=height, fps=fps)
    if Path(s).is_dir():
        return ImageFolderSource(s, fps=fps or 30.0, reading=images)
    return VideoSource(s, realtime=realtime, timeout=url_timeout)


def _camera(device: Union[int, str], images: str, **kw: Any) -> CameraSource:
    """A :class:`CameraSource`; UsageError for ``images="stills"`` (a camera's frames are a video)."""
    if images == "stills":
        raise UsageError(f"images='stills' cannot apply to a camera ({device}): its frames are a video; stills are "
                         "for an image folder or pictures held in memory")
    return CameraSource(device, **kw)
