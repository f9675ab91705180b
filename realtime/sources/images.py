"""A folder of images, read in natural (numeric-aware) name order: a video's frames, or separate pictures."""
from __future__ import annotations

import logging
import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from facecycle.errors import InputError
from facecycle.files import IMAGE_SUFFIXES, UNREAD_PICTURE_SUFFIXES, VIDEO_SUFFIXES, text_name, visible_files, walk_once
from facecycle.imageio import PictureTooLarge, read_image

from ..types import FramePacket
from .base import Source

__all__ = ["ImageFolderSource", "IMAGE_SUFFIXES", "READINGS", "has_capture_time", "sequence_evidence",
           "judge_neighbours"]

log = logging.getLogger(__name__)

#: how a folder's images are read: ``sequence`` (a video's frames: tracked and smoothed), ``stills`` (separate
#: pictures: each on its own), ``auto`` (:func:`sequence_evidence`)
READINGS = ("auto", "sequence", "stills")

#: the largest median grey-level difference (0-255, at 64 px) between neighbours of a frame sequence. Measured on
#: the 36 shared clips' frames (up to 450 each) written out as files, at every frame, every 2nd and every 3rd (108
#: folders each: full frames as PNG and JPEG, 256² face crops): a median of 1.4 levels on full frames (at most 15.7),
#: 3.1 on face crops (at most 27.4); separate pictures numbered in order differ by 55-76 (FER-2013 faces)
SEQUENCE_MAX_DIFF = 20.0
#: neighbours that differ by no more than this (median, levels) are a still scene's frames (only noise between
#: them): taken for a sequence without :data:`SEQUENCE_MIN_GROWTH`, which noise does not show
SEQUENCE_STILL_DIFF = 2.5
#: how much more frames two apart differ than neighbours do (median over the triples looked at): a moving scene's
#: frames, close in time, differ more the further apart they are; separate photos differ about as much whatever
#: their distance. On the folders above (those over :data:`SEQUENCE_STILL_DIFF`): 1.66 typically, 1.44 at the 5th
#: percentile, 1.35 at least; FER-2013 faces 1.07, photos of one person every 20th frame of a clip 1.26 (90 %: 1.53)
SEQUENCE_MIN_GROWTH = 1.4
#: triples of neighbours (frames i, i+1, i+2) looked at, spread over the folder
SEQUENCE_TRIPLES = 12
#: files with these suffixes are pictures a folder does not read (no decoder here, or not a photo format): left
#: out, but counted in one warning and named in the sidecar (``input.not_read``), never dropped without a word;
#: ``.gif`` too where this OpenCV does not decode GIF (:func:`reads_gif`)
OTHER_PICTURE_SUFFIXES = UNREAD_PICTURE_SUFFIXES + (".jxl", ".jp2", ".j2k", ".jpf", ".jpx", ".psd", ".ico", ".svg",
                                                    ".exr", ".hdr", ".pbm", ".pnm", ".tga", ".apng")
#: a GIF of one black pixel (35 bytes): :func:`reads_gif` decodes it
_GIF_1PX = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff,\x00\x00\x00\x00\x01\x00\x01\x00"
            b"\x00\x02\x02D\x01\x00;")
_gif_read: Optional[bool] = None  # reads_gif's answer, once decided


def _decodes_gif() -> bool:
    """Whether ``cv2.imdecode`` decodes GIF: OpenCV has a GIF decoder from 4.11, off by default in that version's
    builds (``WITH_IMGCODEC_GIF``) and on from 4.12, where pyproject allows 4.8 on."""
    try:
        img = cv2.imdecode(np.frombuffer(_GIF_1PX, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return False
    return img is not None and img.shape[:2] == (1, 1)


def reads_gif() -> bool:
    """Whether a folder reads its ``.gif`` pictures (their first frame): where this OpenCV decodes GIF
    (:func:`_decodes_gif`, decided once per process). Elsewhere they are counted with the kinds not read."""
    global _gif_read
    if _gif_read is None:
        _gif_read = _decodes_gif()
    return _gif_read


def folder_suffixes() -> Tuple[str, ...]:
    """The suffixes of the pictures a folder reads: :data:`~facecycle.files.IMAGE_SUFFIXES`, and ``.gif`` where
    OpenCV decodes it (:func:`reads_gif`; a folder left GIFs out without a word)."""
    return IMAGE_SUFFIXES + ((".gif",) if reads_gif() else ())


def other_picture_suffixes() -> Tuple[str, ...]:
    """The suffixes of the pictures a folder counts but does not read: :data:`OTHER_PICTURE_SUFFIXES`, and ``.gif``
    where OpenCV does not decode it (:func:`reads_gif`)."""
    return OTHER_PICTURE_SUFFIXES + (() if reads_gif() else (".gif",))


#: files looked at when counting the images of a folder's subfolders that are not read (a photo library's root)
_COUNT_AT_MOST = 200_000


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _own_images(d: Path) -> Tuple[List[Path], List[Path]]:
    """The images directly in the folder ``d``, and its files of other picture kinds (not read), hidden files (a
    Mac's ``._x.jpg``) left out."""
    images, other = [], []
    read, others = folder_suffixes(), other_picture_suffixes()
    for p in d.iterdir():
        if p.name.startswith("."):
            continue
        s = p.suffix.lower()
        if (s in read or s in others) and p.is_file():
            (images if s in read else other).append(p)
    return images, other


def _skip_dir(name: str) -> bool:
    """Folders never read: our own annotated pictures (``X.annotated/``, where --out-dir is the input folder)."""
    return name.endswith(".annotated")


def _images_below(d: Path) -> Tuple[int, bool]:
    """How many images the subfolders of ``d`` hold at any depth (links followed, each real folder once; hidden and
    ``*.annotated`` folders left out), and whether the count stopped at :data:`_COUNT_AT_MOST` files looked at."""
    n = seen = 0
    read = folder_suffixes()
    for i, (_top, dirs, files) in enumerate(walk_once(d, follow_links=True)):
        dirs[:] = [x for x in dirs if not x.startswith(".") and not _skip_dir(x)]
        if i == 0:  # the folder's own files: read
            continue
        n += sum(1 for f in files if not f.startswith(".") and Path(f).suffix.lower() in read)
        seen += len(files)
        if seen >= _COUNT_AT_MOST:
            return n, True
    return n, False


def _list_images(d: Path) -> Tuple[List[Path], List[Path], int]:
    """The folder's images in natural name order; where it holds none itself, those of its subfolders at any depth
    (a data set's ``<class>/*.jpg``; linked folders followed, each real folder once), in natural order of their
    paths. Hidden files and folders (macOS's ``._x.jpg``) and ``*.annotated`` outputs are skipped. Also the files
    of other picture kinds among them (:func:`other_picture_suffixes`, not read), and how many images subfolders
    hold that are not read (where the folder's own are: one warning counts them, the whole tree below)."""
    def key(p: Path):
        return [_natural_key(Path(part)) for part in p.relative_to(d).parts]

    # hidden files at the top too: a Mac's `._x.jpg` beside `x.jpg` was read and counted as an unreadable image
    # (a class folder with 3 damaged pictures and one `._` file: 4 decode errors, now 3)
    own, other = _own_images(d)
    if own:
        # they were left out without a word; then only the immediate subfolders' images were counted (a class
        # tree's nested `happy/S005/001/*.png` not), and nothing was recorded: the sidecar has the count now
        deeper, cut = _images_below(d)
        if deeper:
            log.warning("%s: %s%d image%s in subfolders %s not read (the folder's own %d are: a folder with images "
                        "of its own is read without its subfolders); to read them, give the subfolders as inputs, "
                        "or move the folder's own images into a subfolder of their own and give the folder again",
                        d, "at least " if cut else "", deeper, "" if deeper == 1 else "s",
                        "is" if deeper == 1 and not cut else "are", len(own))
        return sorted(own, key=key), sorted(other, key=key), deeper
    # hidden folders, and our own annotated pictures; linked class folders too (a test split made of symlinks:
    # its linked classes were left out without a word, as `probe eval` read them)
    images, other = [], []
    read, others = folder_suffixes(), other_picture_suffixes()
    for p in visible_files(d, skip_dir=_skip_dir, follow_links=True):
        s = p.suffix.lower()
        if s in read:
            images.append(p)
        elif s in others:
            other.append(p)
    return sorted(images, key=key), sorted(other, key=key), 0


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


def sequence_evidence(files: List[Path], pairs: int = SEQUENCE_TRIPLES) -> Tuple[bool, str]:
    """Whether ``files`` (in name order) look like one video's frames: ``(sequence, why)``.

    A sequence needs names of one pattern counting up in equal steps, no camera's capture time in their EXIF
    (:func:`has_capture_time`: a camera's photos of one person in one place look alike too), and neighbours that
    look like a moving scene's frames, judged on up to ``pairs`` triples of neighbours (frames i, i+1, i+2) spread
    over the folder, at 64 px, grey (:func:`judge_neighbours`). Photos named in order by a camera or a data set
    (``IMG_0001.jpg``, ``test_0001.jpg``) of other people or places differ too much; a lab's photos of one person
    after another renamed to running numbers (``0001.png``, …) differ about as much two apart as next to each other,
    and jump where the person changes.
    """
    if len(files) < 2:
        return False, "a single image"
    why = _numbered(files)
    if why is not None:
        return False, why
    if has_capture_time(files[0]) and has_capture_time(files[len(files) // 2]):
        return False, "photos: numbered names, but a camera's capture time in their EXIF (a video's frames carry none)"
    n = len(files)
    span = 2 if n >= 3 else 1
    starts = sorted({int(round(x)) for x in np.linspace(0, n - 1 - span, min(pairs, n - span))})
    thumbs: Dict[int, Optional[np.ndarray]] = {}  # (triples overlap in a small folder: each read once)

    def thumb(j: int) -> Optional[np.ndarray]:
        if j not in thumbs:
            thumbs[j] = _thumb(files[j])
        return thumbs[j]

    near: Dict[int, float] = {}  # i -> the difference of frames i and i+1
    growth = []
    for i in starts:
        group = [thumb(i + k) for k in range(span + 1)]
        if any(g is None for g in group):
            continue
        for k in range(span):
            if group[k].shape != group[k + 1].shape:
                return False, f"neighbours of different sizes ({files[i + k].name}, {files[i + k + 1].name})"
        ds = [float(np.mean(cv2.absdiff(group[k], group[k + 1]))) for k in range(span)]
        near.update((i + k, x) for k, x in enumerate(ds))
        if span == 2:
            growth.append(float(np.mean(cv2.absdiff(group[0], group[2]))) / max((ds[0] + ds[1]) / 2, 0.5))
    if not near:
        return False, "no readable neighbours"
    return judge_neighbours(list(near.values()), growth)


def judge_neighbours(near: List[float], growth: List[float]) -> Tuple[bool, str]:
    """:func:`sequence_evidence`'s verdict on numbered pictures from their neighbours: ``near``, the mean grey-level
    differences (0-255, 64 px) of the neighbour pairs looked at; ``growth``, for each triple (i, i+1, i+2) the
    difference of i and i+2 over the mean of its two neighbour differences. A sequence where the neighbours differ
    by a median of at most :data:`SEQUENCE_MAX_DIFF`, at most one of them jumps (to over 2.5 times the median and 25
    levels above it: where a lab set's next person begins), and either they hardly differ at all
    (:data:`SEQUENCE_STILL_DIFF`) or frames two apart differ :data:`SEQUENCE_MIN_GROWTH` times as much (median)."""
    med = float(np.median(near))
    if med > SEQUENCE_MAX_DIFF:
        return False, f"numbered names, but neighbours differ as separate pictures do, by a median {med:.1f} levels"
    jump = max(2.5 * med, med + 25)
    jumps = sum(x > jump for x in near)
    if jumps > 1:
        return False, (f"numbered names, but {jumps} of the {len(near)} neighbours looked at jump to over "
                       f"{jump:.0f} levels (a median {med:.1f}): pictures of several people or places, not one "
                       "video's frames")
    override = "; if they are separate photos, --images stills reads them so"
    if med <= SEQUENCE_STILL_DIFF:
        return True, (f"numbered names and neighbours alike, differing by a median {med:.1f} levels (a still "
                      f"scene's frames){override}")
    if not growth:
        return False, f"numbered names, but two pictures differing by {med:.1f} levels: too few to tell frames"
    g = float(np.median(growth))
    if g < SEQUENCE_MIN_GROWTH:
        return False, (f"numbered names and neighbours differing by a median {med:.1f} levels, but frames two apart "
                       f"differ about as much ({g:.2f} times; a video's: {SEQUENCE_MIN_GROWTH} or more): separate "
                       "photos, not a moving scene's frames")
    return True, (f"numbered names and neighbours alike, differing by a median {med:.1f} levels, {g:.1f} times that "
                  f"two apart (a moving scene's frames){override}")


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
        self.files: List[Path]
        other: List[Path]
        self.files, other, deeper = _list_images(d)
        #: files of picture kinds that are not read (:func:`other_picture_suffixes`: a phone's HEIC, JPEG XL, …)
        #: among those the folder's reading covers (relative paths, the first 1,000), and how many there are
        self.not_read: List[str] = [text_name(p.relative_to(d).as_posix()) for p in other[:1000]]
        self.not_read_count = len(other)
        #: images in the subfolders of a folder with images of its own, which are not read (the whole tree below)
        self.subfolder_images_not_read = deeper
        #: whether the pictures read were not all of one size (``width``, ``height``: the first one's)
        self.mixed_sizes = False
        kinds = _kinds(other)
        if not self.files:
            videos = sum(1 for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            hint = (f"; it holds {videos} video file{'s' * (videos != 1)}: give them as inputs ({d / '*'}), or the "
                    f"folder to `facecycle batch`, which searches it") if videos else ""
            if other:
                hint += (f"; it holds pictures of a kind not read here ({kinds}: a phone's HEIC or a camera's raw "
                         "files): convert them to JPEG or PNG first")
            raise InputError(f"{folder}: no images ({', '.join(folder_suffixes())}){hint}")
        if other:  # left out of a folder that is read: said once, and named in the sidecar (input.not_read)
            log.warning("%s: %d picture%s of a kind not read here left out (%s; the sidecar's input.not_read names "
                        "them): convert them to JPEG or PNG to read them", d, len(other),
                        "" if len(other) == 1 else "s", kinds)
        if reading not in READINGS:
            raise ValueError(f"reading must be one of {', '.join(READINGS)}, not {reading!r}")
        if reading == "auto":
            seq, self.reading_why = sequence_evidence(self.files)
            self.reading = "sequence" if seq else "stills"
        else:
            self.reading, self.reading_why = reading, "asked for"
        self.stills = self.reading == "stills"
        if reading == "auto" and not self.stills:  # it changes every row: smoothed and held from one to the next
            log.warning("%s: %d images read as a video's frame sequence (tracked and smoothed from one to the next: "
                        "%s)", d, len(self.files), self.reading_why)
        else:
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
        first_size: Optional[Tuple[int, int]] = None
        paged: List[str] = []
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
            if first_size is None:  # the sidecar's width and height: the first picture's (it was the last one's)
                first_size = img.shape[:2]
                self.height, self.width = first_size
            elif img.shape[:2] != first_size:
                self.mixed_sizes = True
            if f.suffix.lower() in (".tif", ".tiff") and _tiff_pages(f) > 1:
                paged.append(f.relative_to(self.root).as_posix())
                if len(paged) == 1:
                    log.warning("%s: a TIFF of several pages: only its first page is read", f)
            ts = index / self.fps
            yield FramePacket(index=index, pts=int(round(ts * 1000)), time_base=self.time_base, timestamp=ts,
                              image=img, source=str(f), stats={"decode": time.perf_counter() - t},
                              file=f.relative_to(self.root).as_posix())
            index += 1
        if len(paged) > 1:
            log.warning("%s: %d TIFFs of several pages in all, each read from its first page only", self.name,
                        len(paged))
        if index == 0:
            raise InputError(f"{self.name}: no readable images")

    def describe(self) -> dict:
        d = super().describe()
        d.update(reading=self.reading, reading_why=self.reading_why, errors=self.errors, unreadable=self.unreadable,
                 not_read=self.not_read, not_read_count=self.not_read_count,
                 subfolder_images_not_read=self.subfolder_images_not_read, mixed_sizes=self.mixed_sizes)
        return d


def _kinds(files: List[Path]) -> str:
    """``2 .heic, 1 .jxl``: how many of ``files`` there are of each suffix."""
    counts: Dict[str, int] = {}
    for p in files:
        counts[p.suffix.lower()] = counts.get(p.suffix.lower(), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def _tiff_pages(path: Path) -> int:
    """1, or 2 where the TIFF at ``path`` holds more than one page (its first directory links to a next one); 1
    where it cannot be told (a BigTIFF, a damaged header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            order = {b"II": "little", b"MM": "big"}.get(head[:2])
            if order is None or len(head) < 8 or int.from_bytes(head[2:4], order) != 42:  # type: ignore[arg-type]
                return 1
            f.seek(int.from_bytes(head[4:8], order))  # type: ignore[arg-type]
            entries = int.from_bytes(f.read(2), order)  # type: ignore[arg-type]
            f.seek(12 * entries, 1)
            nxt = f.read(4)
    except (OSError, ValueError):
        return 1
    return 2 if len(nxt) == 4 and int.from_bytes(nxt, order) else 1  # type: ignore[arg-type]
