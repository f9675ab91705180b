"""Labelled datasets for the linear probes.

* Expression: ``<root>/<split>/<class>/*.jpg`` (FER-2013, RAF-DB layout).
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
from ..imageio import read_image

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
    raise InputError(f"{d}: no such directory (expected <data>/<split>/<class>/*.jpg, or fer2013.csv)")


def fer_csv_in(root: Path) -> Optional[Path]:
    """The one CSV of a folder that holds a CSV and no split or class folders (``fer2013/fer2013.csv``,
    ``icml_face_data.csv``); None otherwise."""
    if not root.is_dir():
        return None
    entries = [p for p in root.iterdir() if not _hidden(p)]
    csvs = [p for p in entries if p.is_file() and p.suffix.lower() == ".csv"]
    if len(csvs) != 1 or any(p.is_dir() for p in entries):
        return None
    return csvs[0]


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

    import cv2

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
            if not {"emotion", "pixels", "Usage"} <= set(names):
                raise InputError(f"{path}: not the FER-2013 CSV (needs the columns emotion, pixels, Usage)")
            col = {n: names.index(n) for n in ("emotion", "pixels", "Usage")}
            for i, row in enumerate(reader, start=2):
                if not row:
                    continue
                r = {n: (row[k].strip() if k < len(row) else "") for n, k in col.items()}
                if r["Usage"] not in usage:
                    continue
                px = np.array(r["pixels"].split(), np.uint8)
                if px.size != 48 * 48 or not r["emotion"].isdigit() or int(r["emotion"]) >= len(FER_CSV_LABELS):
                    raise InputError(f"{path}: line {i}: expected an emotion 0-6 and 2,304 pixel values")
                c = d / FER_CSV_LABELS[int(r["emotion"])]
                c.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(c / f"{i:06d}.png"), px.reshape(48, 48))
                n += 1
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: unreadable ({e})") from None
    if not n:
        raise InputError(f"{path}: no rows of {' / '.join(usage)}")
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
