"""Labelled datasets for the linear probes.

* Expression: ``<root>/<split>/<class>/*.jpg`` (FER-2013's image release), ``<root>/<class>/*.jpg``, or the
  official ``fer2013.csv``. Images must be sorted into class folders: a flat folder (JAFFE's ``KA.HA1.29.tiff``)
  and RAF-DB's own layout (``Image/aligned/`` plus a label list) are refused with what to do.
  :func:`stratified_split` holds out a seeded, stratified validation part of a
  split (FER-2013 ships no validation split).
* Head pose: 300W-LP / AFLW2000 ``.jpg`` + ``.mat`` with ``Pose_Para`` (pitch,
  yaw, roll in radians in the first three entries).

Images are returned as (S, S, 3) uint8 **RGB** (grayscale converted).
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..files import IMAGE_SUFFIXES, visible_files
from ..imageio import read_image, write_image

log = logging.getLogger(__name__)

__all__ = [
    "EXPRESSION_CLASSES", "CLASS_SYNONYMS", "Framer", "list_expression", "stratified_split", "load_image", "load_images",
    "read_pose_mat", "list_pose", "unpack_fer_csv", "fer_csv_in", "FER_CSV_USAGE",
]

#: FER-2013 class names in the head's order
EXPRESSION_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
_IMG = IMAGE_SUFFIXES


#: other names datasets give the seven classes (RAF-DB, AffectNet, CK+ and JAFFE write-ups), case-insensitive
CLASS_SYNONYMS = {
    "anger": "angry", "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "happiness": "happy",
    "sadness": "sad", "surprised": "surprise", "neutrality": "neutral",
    # JAFFE's two-letter codes (KA.HA1.29.tiff), for folders named after them
    "an": "angry", "di": "disgust", "fe": "fear", "ha": "happy", "ne": "neutral", "sa": "sad", "su": "surprise",
}


def _hidden(p: Path) -> bool:
    """A dot-file or dot-folder (``.ipynb_checkpoints``, macOS's ``._name.jpg`` and ``.DS_Store``): never data."""
    return p.name.startswith(".")


def _class_name(folder: str) -> str:
    return CLASS_SYNONYMS.get(folder.lower(), folder.lower())


def _split_dir(root: Path, split: str, classes: Sequence[str]) -> Path:
    """The folder of ``split``: ``root/split``, matched case-insensitively (``Test``), or ``root`` itself where it
    holds the class folders (``--data test/``); an official ``fer2013.csv`` is unpacked first
    (:func:`unpack_fer_csv`)."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return unpack_fer_csv(root, split)
    if root.is_file():  # a .zip or one picture was "no such directory"
        raise InputError(f"{root}: is a file, not a folder (unpack archives first; expected "
                         "<data>/<split>/<class>/*.jpg, or fer2013.csv)")
    csv_file = fer_csv_in(root)
    if csv_file is not None:  # the Kaggle archive unpacked: fer2013/fer2013.csv
        log.info("%s: reading %s", root, csv_file.name)
        return unpack_fer_csv(csv_file, split)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory (expected <data>/<split>/<class>/*.jpg, or fer2013.csv)")
    d = root / split
    if d.is_dir():
        return d
    same = [p for p in root.iterdir() if p.is_dir() and p.name.lower() == split.lower()]
    if len(same) == 1:
        return same[0]
    subs = [p for p in root.iterdir() if p.is_dir() and not _hidden(p)]
    # class folders (some may name no class of ours, as CK+'s "contempt": list_expression then names them)
    if any(_class_name(p.name) in classes for p in subs):
        other = root.name.lower() in ("train", "training", "test", "testing", "val", "valid", "validation") and \
            root.name.lower()[:3] != split.lower()[:3]
        # a split's own folder given as the data set (--data fer/train --split test): said, as it scores the
        # images a head may have been fitted on
        (log.warning if other else log.info)("%s holds the class folders: read as the %s split", root, split)
        return root
    # JAFFE's flat folder, RAF-DB's Image/aligned/: "test: no such directory" said nothing of what to do
    _refuse_flat_images(root, split, classes, f" (and no {split}/ folder)")
    raise InputError(f"{d}: no such directory (expected <data>/<split>/<class>/*.jpg, or fer2013.csv)")


def _refuse_flat_images(folder: Path, split: str, classes: Sequence[str], also: str = "") -> None:
    """Raise InputError where ``folder`` (which has no class folders) holds images: how many, where, and that they
    must be sorted into class folders; return where it holds none."""
    flat = _flat_images(folder, classes)
    if flat is not None:
        n, where = flat
        raise InputError(f"{folder}: holds {n:,} image{'s' * (n != 1)}{where} but no class folders{also}: sort the "
                         f"images into <class>/ folders ({', '.join(classes)}), as <data>/{split}/<class>/*.jpg or "
                         "<data>/<class>/*.jpg")


def _flat_images(root: Path, classes: Sequence[str]) -> Optional[Tuple[int, str]]:
    """(how many images, where: ``""`` for ``root`` itself, else `` (in SUB/, …)``) of a folder that holds images
    outside class folders: its own, else those at any depth below it (RAF-DB's ``Image/aligned/``); None where it
    holds none, or where a folder below it names a class (another split's ``Test/happy/``: the split asked for is
    missing, not the class folders)."""
    own = [p for p in root.iterdir() if not _hidden(p) and p.suffix.lower() in _IMG and p.is_file()]
    if own:
        return len(own), ""
    below = [p for p in visible_files(root) if p.suffix.lower() in _IMG]
    if not below or any(_class_name(part) in classes for p in below for part in p.relative_to(root).parts[:-1]):
        return None
    by: Dict[Path, int] = {}
    for p in below:
        by[p.parent] = by.get(p.parent, 0) + 1
    top = sorted(by, key=lambda q: (-by[q], str(q)))
    names = ", ".join(q.relative_to(root).as_posix() + "/" for q in top[:2]) + (", ..." if len(top) > 2 else "")
    return len(below), f" (in {names})"


def fer_csv_in(root: Path) -> Optional[Path]:
    """The FER-2013 CSV of a folder that holds CSVs and no split or class folders: its one CSV
    (``fer2013/fer2013.csv``), or, of several, the one whose header has ``emotion``, ``pixels`` and ``Usage`` (the
    challenge's archive: ``icml_face_data.csv`` beside ``train.csv``, ``test.csv``, ``example_submission.csv``);
    None where the folder holds no CSV or a folder.

    Raises:
        InputError: several CSVs, and none or more than one of them with those columns.
    """
    if not root.is_dir():
        return None
    entries = [p for p in root.iterdir() if not _hidden(p)]
    csvs = sorted((p for p in entries if p.is_file() and p.suffix.lower() == ".csv"), key=lambda p: p.name)
    if not csvs or any(p.is_dir() for p in entries):
        return None
    if len(csvs) == 1:
        return csvs[0]
    # the challenge's archive holds four CSVs: it was refused as "test: no such directory"
    fer = [p for p in csvs if _fer_columns(_csv_header(p))]
    if len(fer) == 1:
        return fer[0]
    names = ", ".join(p.name for p in csvs)
    if fer:
        raise InputError(f"{root}: {len(fer)} FER-2013 CSVs ({', '.join(p.name for p in fer)}): give one as --data")
    raise InputError(f"{root}: none of its {len(csvs)} CSVs ({names}) is the FER-2013 CSV (needs the columns "
                     "emotion, pixels, Usage)")


def _csv_header(path: Path) -> List[str]:
    """The names of a CSV's first line, stripped (the challenge's ``emotion, Usage, pixels``; a byte-order mark
    dropped); empty where it cannot be read as text."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [n.strip() for n in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _fer_columns(names: Sequence[str]) -> bool:
    """Whether a CSV header has the official FER-2013 CSV's columns (``emotion``, ``pixels``, ``Usage``)."""
    return {"emotion", "pixels", "Usage"} <= set(names)


#: the official ``fer2013.csv``'s ``Usage`` values of each split (``test``: both test parts, as the image release's
#: ``test/`` folder holds them, 7,178 faces)
FER_CSV_USAGE = {"train": ("Training",), "test": ("PublicTest", "PrivateTest"), "publictest": ("PublicTest",),
                 "privatetest": ("PrivateTest",)}
#: the official CSV's label order (0-6) -> our class names
FER_CSV_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def unpack_fer_csv(path: Path, split: str) -> Path:
    """The faces of ``split`` in the official FER-2013 release (``fer2013.csv``: ``emotion``, ``pixels`` (2,304
    grey values), ``Usage``) written as ``<split>/<class>/<row>.png`` into a temporary folder (removed at exit);
    returns the split's folder. Splits: :data:`FER_CSV_USAGE`."""
    import atexit
    import csv
    import shutil
    import tempfile


    usage = FER_CSV_USAGE.get(split.lower())
    if usage is None:
        raise InputError(f"{path}: split {split!r} is not in fer2013.csv; use one of {sorted(FER_CSV_USAGE)}")
    out = Path(tempfile.mkdtemp(prefix="fer2013-"))
    atexit.register(shutil.rmtree, out, True)
    d = out / split
    n = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not part of a name
            reader = csv.reader(f)
            # the challenge's icml_face_data.csv writes "emotion, Usage, pixels": names with spaces
            names = [n.strip() for n in next(reader, [])]
            if not _fer_columns(names):
                raise InputError(f"{path}: not the FER-2013 CSV (needs the columns emotion, pixels, Usage)")
            col = {n: names.index(n) for n in ("emotion", "pixels", "Usage")}
            # Usage in any case: a CSV written with lower-case values was "no rows of PublicTest / PrivateTest"
            wanted = {u.lower() for u in usage}
            found: Dict[str, int] = {}  # the Usage values met, for the error where none is wanted
            for i, row in enumerate(reader, start=2):
                if not row:
                    continue
                r = {n: (row[k].strip() if k < len(row) else "") for n, k in col.items()}
                if r["Usage"].lower() not in wanted:
                    found[r["Usage"]] = found.get(r["Usage"], 0) + 1
                    continue
                # a value that is no whole number 0-255 ("x", "300", "204.0") ended in "internal error: ValueError"
                # or OverflowError
                try:
                    px = np.array(r["pixels"].split(), np.int64)
                except (ValueError, OverflowError):
                    px = np.empty(0, np.int64)
                emotion = int(r["emotion"]) if r["emotion"].isascii() and r["emotion"].isdigit() else -1
                if px.size != 48 * 48 or px.min() < 0 or px.max() > 255 or not 0 <= emotion < len(FER_CSV_LABELS):
                    raise InputError(f"{path}: line {i}: expected an emotion 0-6 and 2,304 pixel values 0-255")
                c = d / FER_CSV_LABELS[emotion]
                c.mkdir(parents=True, exist_ok=True)
                write_image(c / f"{i:06d}.png", px.astype(np.uint8).reshape(48, 48))
                n += 1
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    if not n:
        seen = ", ".join(f"{u or '(empty)'} {k:,}" for u, k in sorted(found.items(), key=lambda t: -t[1])[:6])
        raise InputError(f"{path}: no rows of {' / '.join(usage)}" + (f" (Usage values found: {seen})" if seen else ""))
    log.info("%s: %d faces of %s unpacked", path, n, " + ".join(usage))
    return d


def list_expression(root: Path, split: str, classes: Sequence[str] = EXPRESSION_CLASSES) -> List[Tuple[Path, int]]:
    """(file, class index) for ``root/split/<class>/*``, sorted; classes missing on disk are allowed. ``split``
    matches a folder case-insensitively; ``root`` may be the split's folder itself, or the official
    ``fer2013.csv`` (:func:`unpack_fer_csv`).

    Folder names match the classes case-insensitively, also under the common other names of
    :data:`CLASS_SYNONYMS` (``Anger``, ``happiness``, ``Surprised``, ...). A folder that names no class, or two
    folders naming the same class, is an error: nothing is skipped silently. A class folder's images are found
    at any depth (CK+'s ``happy/S005/…png``); dot-files and dot-folders (``.ipynb_checkpoints``, macOS's
    ``._x.jpg``) are not data, and other files (``.gif``, ``.txt``) are counted in a warning.
    """
    d = _split_dir(Path(root), split, classes)
    folders: Dict[int, Path] = {}
    unknown = []
    for f in sorted(p for p in d.iterdir() if p.is_dir() and not _hidden(p)):
        name = _class_name(f.name)
        if name not in classes:
            unknown.append(f.name)
            continue
        ci = list(classes).index(name)
        if ci in folders:
            raise InputError(f"{d}: folders {folders[ci].name!r} and {f.name!r} both name the class {name!r}")
        folders[ci] = f
    if unknown:
        raise InputError(f"{d}: unknown class folders {unknown}; expected {list(classes)} (or their other names: "
                         f"{', '.join(sorted(CLASS_SYNONYMS))}); move the others out, as a class the head does not "
                         "know cannot be scored")
    out: List[Tuple[Path, int]] = []
    others: Dict[str, int] = {}
    for ci in sorted(folders):
        for p in _files_under(folders[ci]):
            if p.suffix.lower() in _IMG:
                out.append((p, ci))
            else:
                others[p.suffix.lower() or p.name] = others.get(p.suffix.lower() or p.name, 0) + 1
    if others:
        log.warning("%s: %d file(s) not read as images and not scored (%s; images: %s)", d,
                    sum(others.values()), ", ".join(f"{k} {n}" for k, n in sorted(others.items())), " ".join(_IMG))
    if not out and not folders:  # a split's folder of unsorted images was "no images found (in no class folder)"
        _refuse_flat_images(d, split, classes)
    if not out:
        where = ", ".join(sorted(f.name for f in folders.values())) or "no class folder"
        raise InputError(f"{d}: no images found (in {where}; images: {' '.join(_IMG)})")
    return out


def _files_under(folder: Path) -> List[Path]:
    """Every file under ``folder``, at any depth, in sorted path order; dot-files and dot-folders left out."""
    return sorted(visible_files(folder, follow_links=True))


def stratified_split(items: Sequence[Tuple[Path, int]], val_frac: float = 0.1,
                     seed: int = 0) -> Tuple[List[Tuple[Path, int]], List[Tuple[Path, int]]]:
    """Seeded stratified split -> (train, val); deterministic for a given file list."""
    by: Dict[int, List[Tuple[Path, int]]] = {}
    for it in items:
        by.setdefault(it[1], []).append(it)
    rng = random.Random(seed)
    tr: List[Tuple[Path, int]] = []
    va: List[Tuple[Path, int]] = []
    for c in sorted(by):
        lst = sorted(by[c], key=lambda t: str(t[0]))
        rng.shuffle(lst)
        k = int(round(len(lst) * val_frac))
        va.extend(lst[:k])
        tr.extend(lst[k:])
    return tr, va


#: ``framer(image_bgr (H, W, 3) uint8) -> (h, w, 3) uint8 BGR``: cuts the face out of a still
#: (``realtime.crops.StillFramer``, built by the command line; this layer does not detect faces)
Framer = Callable[[np.ndarray], np.ndarray]


def load_image(path: Path, size: int, framer: Optional[Framer] = None) -> np.ndarray:
    """Read an image as (size, size, 3) uint8 RGB (grayscale converted; resized with area/linear).

    ``framer``, when given, first frames the face (see :data:`Framer`); without it the whole image is used.
    Raises :class:`~facecycle.errors.InputError` for a file that does not decode (empty, damaged, not an image).
    """
    import cv2

    img = read_image(path)  # grayscale files come back as 3 equal channels
    if img is None:
        raise InputError(f"{path}: unreadable image")
    if framer is not None:
        img = framer(img)
    if img.shape[0] != size or img.shape[1] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_images(paths: Sequence[Path], size: int, framer: Optional[Framer] = None,
                unreadable: Optional[List[int]] = None) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB (see :func:`load_image`).

    ``unreadable``: when given, a file that does not decode is left black and its index appended (the caller
    drops it); without it, such a file raises :class:`~facecycle.errors.InputError`.
    """
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        try:
            out[i] = load_image(p, size, framer)
        except InputError:
            if unreadable is None:
                raise
            out[i] = 0
            unreadable.append(i)
    return out


def read_pose_mat(path: Path) -> np.ndarray:
    """(yaw, pitch, roll) in degrees from a 300W-LP / AFLW2000 ``.mat`` (``Pose_Para`` = pitch, yaw, roll, … radians)."""
    from scipy.io import loadmat

    try:
        m = loadmat(str(path))
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: unreadable .mat file ({e})") from None
    if "Pose_Para" not in m:
        raise InputError(f"{path}: no Pose_Para in the .mat file")
    pp = np.asarray(m["Pose_Para"], np.float64).reshape(-1)
    if pp.size < 3:
        raise InputError(f"{path}: Pose_Para has {pp.size} entries, need >= 3")
    pitch, yaw, roll = pp[:3]
    return np.degrees(np.array([yaw, pitch, roll]))


def list_pose(root: Path, max_abs_deg: float = 99.0,
              beyond: Optional[List[Path]] = None) -> List[Tuple[Path, np.ndarray]]:
    """(image, [yaw, pitch, roll] degrees) for every ``*.jpg`` with a ``.mat`` beside it (recursive).

    Samples with any angle beyond ±``max_abs_deg`` are dropped (the usual AFLW2000 protocol); ``beyond``, when
    given, receives their images (reports count them: AFLW2000 has 31 of 2,000).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such directory")
    out = []
    for jpg in sorted(root.rglob("*.jpg")):
        mat = jpg.with_suffix(".mat")
        if not mat.is_file():
            continue
        ang = read_pose_mat(mat)
        if np.all(np.abs(ang) <= max_abs_deg):
            out.append((jpg, ang))
        elif beyond is not None:
            beyond.append(jpg)
    if not out:
        raise InputError(f"{root}: no .jpg + .mat pairs found" + (
            f" with every angle within ±{max_abs_deg:g}° ({len(beyond)} beyond)" if beyond else ""))
    return out
