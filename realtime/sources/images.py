"""A folder of still images, read in natural (numeric-aware) name order."""
from __future__ import annotations

import logging
import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Union

import cv2
import numpy as np

from facecycle.errors import InputError
from facecycle.files import IMAGE_SUFFIXES, VIDEO_SUFFIXES

from ..types import FramePacket
from .base import Source

__all__ = ["ImageFolderSource", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


class ImageFolderSource(Source):
    """Every image of a folder as one frame; ``timestamp`` = index / ``fps``.

    Unreadable images are skipped and counted in ``errors``.
    """

    def __init__(self, folder: Union[str, Path], fps: float = 30.0) -> None:
        super().__init__()
        d = Path(folder)
        if not d.is_dir():
            raise InputError(f"{folder}: not a folder")
        self.files: List[Path] = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                                        key=_natural_key)
        if not self.files:
            videos = sum(1 for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            hint = (f"; it holds {videos} video file{'s' * (videos != 1)}: give them as inputs ({d / '*'}), or the "
                    f"folder to `facecycle batch`, which searches it") if videos else ""
            raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
        self.name = str(d)
        self.fps = float(fps)
        self.time_base = Fraction(1, 1000)
        self.frame_count = len(self.files)

    def __iter__(self) -> Iterator[FramePacket]:
        index = 0
        for f in self.files:
            t = time.perf_counter()
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                self.errors += 1
                log.warning("%s: unreadable image skipped", f)
                continue
            img = np.ascontiguousarray(img)
            self.height, self.width = img.shape[:2]
            ts = index / self.fps
            yield FramePacket(index=index, pts=int(round(ts * 1000)), time_base=self.time_base, timestamp=ts,
                              image=img, source=str(f), stats={"decode": time.perf_counter() - t})
            index += 1
        if index == 0:
            raise InputError(f"{self.name}: no readable images")
