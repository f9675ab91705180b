"""A folder of images, read in natural (numeric-aware) name order: a video's frames, or separate pictures."""
from __future__ import annotations

import logging
import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from facecycle.errors import InputError
from facecycle.files import IMAGE_SUFFIXES, VIDEO_SUFFIXES, unread_pictures, visible_files
from facecycle.imageio import PictureTooLarge, read_image

from ..types import FramePacket
from .base import Source

__all__ = ["ImageFolderSource", "IMAGE_SUFFIXES", "READINGS", "has_capture_time", "sequence_evidence"]

log = logging.getLogger(__name__)

#: how a folder's images are read: ``sequence`` (a video's frames: tracked and smoothed), ``stills`` (separate
#: pictures: each on its own), ``auto`` (:func:`sequence_evidence`)
READINGS = ("auto", "sequence", "stills")

#: the largest median grey-level difference (0-255, at 64 px) between neighbours of a frame sequence. Measured
#: on the 75 shared clips' first 300 frames: neighbours differ by a median of at most 7.5 levels (every 2nd frame:
#: 12.8; every 30th: 12.3 typically, up to 46.6), separate pictures numbered in order by 54 (first frames of 40
#: clips, face-centred 256² crops) and 64 (58 FER-2013 faces)
SEQUENCE_MAX_DIFF = 20.0


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _own_images(d: Path) -> List[Path]:
    """The images directly in the folder ``d``, hidden files (a Mac's ``._x.jpg``) left out."""
    return [p for p in d.iterdir() if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def _list_images(d: Path) -> List[Path]:
    """The folder's images in natural name order; where it holds none itself, those of its subfolders (a data
    set's ``<class>/*.jpg``), in natural order of their paths. Hidden files and folders (macOS's ``._x.jpg``) and
    ``*.annotated`` outputs are skipped; where the folder's own images are read, one warning counts those of its
    subfolders, which are not."""
    def key(p: Path):
        return [_natural_key(Path(part)) for part in p.relative_to(d).parts]

    # hidden files at the top too: a Mac's `._x.jpg` beside `x.jpg` was read and counted as an unreadable image
    # (a class folder with 3 damaged pictures and one `._` file: 4 decode errors, now 3)
    files = sorted(_own_images(d), key=key)
    if files:
        # they were left out without a word (its subfolders' own images counted, not the whole tree below: a
        # photo library's root would be walked only for a warning)
        deeper = 0
        for q in d.iterdir():
            if q.name.startswith(".") or q.name.endswith(".annotated") or not q.is_dir():
                continue
            try:
                deeper += len(_own_images(q))
            except OSError:  # a subfolder that cannot be listed: nothing of it is read either way
                pass
        if deeper:
            log.warning("%s: %d image%s in subfolders %s not read (the folder's own %d are; give a subfolder as "
                        "the input to read its images)", d, deeper, "" if deeper == 1 else "s",
                        "is" if deeper == 1 else "are", len(files))
        return files
    # hidden folders, and our own annotated pictures (`X.annotated/`, where --out-dir is the input folder)
    return sorted((p for p in visible_files(d, skip_dir=lambda n: n.endswith(".annotated"))
                   if p.suffix.lower() in IMAGE_SUFFIXES), key=key)


def _numbered(files: List[Path]) -> Optional[str]:
    """None when the names are one pattern whose last number counts up in equal steps (``frame_0001.png``, …;
    at most 10 % of the steps longer, by whole steps: frames missing), else why not."""
    pats, nums = set(), []
    for f in files:
        runs = list(re.finditer(r"\d+", f.stem))
        if not runs:
            return "names without a frame number"
        m = runs[-1]
        pats.add((f.stem[: m.start()], f.stem[m.end():], f.suffix.lower()))
        nums.append(int(m.group()))
    if len(pats) > 1:
        return "names of more than one pattern"
    steps = np.diff(np.asarray(nums, np.int64))
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[counts.argmax()])
    # equal steps; a few missing frames (a multiple of the step) allowed
    if step < 1 or (steps % step != 0).any() or (steps < step).any() or np.mean(steps == step) < 0.9:
        return "frame numbers that do not count up in equal steps"
    return None


def _thumb(path: Path) -> Optional[np.ndarray]:
    try:
        img = read_image(path, grey=True)
    except PictureTooLarge:
        return None
    if img is None:
        return None
    h, w = img.shape
    k = 64.0 / max(h, w)
    return cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def _ifd_tags(tiff: bytes, offset: int, order: str) -> List[Tuple[int, int]]:
    """(tag, value or offset) of the entries of the TIFF IFD at ``offset`` (those inside ``tiff``)."""
    def u(o: int, n: int) -> int:
        return int.from_bytes(tiff[o:o + n], order)  # type: ignore[arg-type]

    if offset + 2 > len(tiff):
        return []
    return [(u(p, 2), u(p + 8, 4)) for p in (offset + 2 + 12 * k for k in range(u(offset, 2))) if p + 12 <= len(tiff)]


def has_capture_time(path: Path) -> bool:
    """True when ``path`` is a JPEG whose EXIF holds a capture time (``DateTimeOriginal`` or ``DateTimeDigitized``):
    a camera's or phone's photo. Frames written out of a video (FFmpeg, OpenCV, PyAV) carry no EXIF."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    if head[:2] != b"\xff\xd8":
        return False
    i = 2
    while i + 4 <= len(head) and head[i] == 0xFF:
        marker, size = head[i + 1], int.from_bytes(head[i + 2:i + 4], "big")
        if marker == 0xE1 and head[i + 4:i + 10] == b"Exif\x00\x00":
            tiff = head[i + 10:i + 2 + size]
            order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
            if order is None or len(tiff) < 8:
                return False
            ifd0 = _ifd_tags(tiff, int.from_bytes(tiff[4:8], order), order)  # type: ignore[arg-type]
            exif = [v for t, v in ifd0 if t == 0x8769]  # the Exif sub-IFD
            return bool(exif) and any(t in (0x9003, 0x9004) for t, _ in _ifd_tags(tiff, exif[0], order))
        if marker in (0xDA, 0xD9):  # image data (or its end): no EXIF before it
            return False
        i += 2 + size
    return False


def sequence_evidence(files: List[Path], pairs: int = 8) -> Tuple[bool, str]:
    """Whether ``files`` (in name order) look like one video's frames: ``(sequence, why)``.

    A sequence needs both: names of one pattern counting up in equal steps, and neighbours that look alike (the
    median grey-level difference of up to ``pairs`` neighbour pairs spread over the folder, at 64 px, at most
    :data:`SEQUENCE_MAX_DIFF`, each pair the same size). Photos named in order by a camera or a data set
    (``IMG_0001.jpg``, ``test_0001.jpg``), of other people or places, fail the second test; a camera's photos
    of one person in one place, which may pass it, are told by the capture time in their EXIF
    (:func:`has_capture_time`).
    """
    if len(files) < 2:
        return False, "a single image"
    why = _numbered(files)
    if why is not None:
        return False, why
    if has_capture_time(files[0]) and has_capture_time(files[len(files) // 2]):
        return False, "photos: numbered names, but a camera's capture time in their EXIF (a video's frames carry none)"
    starts = sorted({int(round(x)) for x in np.linspace(0, len(files) - 2, min(pairs, len(files) - 1))})
    diffs = []
    for i in starts:
        a, b = _thumb(files[i]), _thumb(files[i + 1])
        if a is None or b is None:
            continue
        if a.shape != b.shape:
            return False, f"neighbours of different sizes ({files[i].name}, {files[i + 1].name})"
        diffs.append(float(np.mean(cv2.absdiff(a, b))))
    if not diffs:
        return False, "no readable neighbours"
    med = float(np.median(diffs))
    if med > SEQUENCE_MAX_DIFF:
        return False, f"numbered names, but neighbours differ as separate pictures do, by a median {med:.1f} levels"
    return True, f"numbered names and neighbours alike, differing by a median {med:.1f} levels"


class ImageFolderSource(Source):
    """Every image of a folder as one frame; ``timestamp`` = index / ``fps``; the CSV names each row's image
    (``frame_files``).

    ``reading``: ``sequence`` reads the images as a video's frames (tracked, smoothed, a person baseline);
    ``stills`` as separate pictures, each analysed on its own (``stills``: new track ids per image, nothing
    carried from one to the next); ``auto`` (default) takes ``sequence`` only where the names count up and
    neighbours look alike (:func:`sequence_evidence`). ``reading`` and ``reading_why`` say what was chosen.

    Unreadable images are skipped and counted in ``errors``.
    """

    frame_files = True

    def __init__(self, folder: Union[str, Path], fps: float = 30.0, reading: str = "auto") -> None:
        super().__init__()
        d = Path(folder)
        if not d.is_dir():
            raise InputError(f"{folder}: not a folder")
        self.root = d
        #: the images skipped as unreadable (relative paths, the first 1,000), for the sidecar
        self.unreadable: List[str] = []
        self.files: List[Path] = _list_images(d)
        if not self.files:
            videos = sum(1 for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            hint = (f"; it holds {videos} video file{'s' * (videos != 1)}: give them as inputs ({d / '*'}), or the "
                    f"folder to `facecycle batch`, which searches it") if videos else ""
            other = unread_pictures(d)
            if other:
                kinds = ", ".join(f"{n} {s}" for s, n in other.items())
                hint += (f"; it holds pictures of a kind not read here ({kinds}: a phone's HEIC or a camera's raw "
                         "files): convert them to JPEG or PNG first")
            raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
        if reading not in READINGS:
            raise ValueError(f"reading must be one of {', '.join(READINGS)}, not {reading!r}")
        if reading == "auto":
            seq, self.reading_why = sequence_evidence(self.files)
            self.reading = "sequence" if seq else "stills"
        else:
            self.reading, self.reading_why = reading, "asked for"
        self.stills = self.reading == "stills"
        log.info("%s: %d images read as %s (%s)", d, len(self.files), self.reading, self.reading_why)
        self.name = str(d)
        self.fps = float(fps)
        self.time_base = Fraction(1, 1000)
        self.frame_count = len(self.files)

    def __iter__(self) -> Iterator[FramePacket]:
        videos = sorted(p.name for p in self.root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        if videos:  # the pictures are read: say what is left out
            one = len(videos) == 1
            log.warning("%s: also holds %d video file%s (%s%s), not read with the pictures; give %s as input%s",
                        self.name, len(videos), "" if one else "s", ", ".join(videos[:3]),
                        ", ..." if len(videos) > 3 else "", "it" if one else "them", "" if one else "s")
        index = 0
        for f in self.files:
            t = time.perf_counter()
            try:
                img, why = read_image(f), ""
            except PictureTooLarge as e:  # the folder's other pictures are read
                img, why = None, str(e).removeprefix(f"{f}: ")
            if img is None:
                self.errors += 1
                if len(self.unreadable) < 1000:
                    self.unreadable.append(f.relative_to(self.root).as_posix())
                log.warning("%s: unreadable image skipped%s", f, f" ({why})" if why else "")
                continue
            img = np.ascontiguousarray(img)
            self.height, self.width = img.shape[:2]
            ts = index / self.fps
            yield FramePacket(index=index, pts=int(round(ts * 1000)), time_base=self.time_base, timestamp=ts,
                              image=img, source=str(f), stats={"decode": time.perf_counter() - t},
                              file=f.relative_to(self.root).as_posix())
            index += 1
        if index == 0:
            raise InputError(f"{self.name}: no readable images")

    def describe(self) -> dict:
        d = super().describe()
        d.update(reading=self.reading, reading_why=self.reading_why, errors=self.errors, unreadable=self.unreadable)
        return d
