"""Probe workflows used by ``facecycle probe``: load a split, extract features, fit / evaluate heads."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..files import text_name
from ..terminal import stderr_is_terminal
from .datasets import EXPRESSION_CLASSES, Framer, fer_csv_in, list_expression, list_pose, load_images, stratified_split
from .features import FeatureExtractor
from .linear import DEFAULT_WDS, Head, classification_report, fit_classifier, fit_regressor

__all__ = ["expression_items", "load_stills", "extract", "fit_expression", "eval_expression", "fit_pose", "eval_pose",
           "subsample"]

log = logging.getLogger(__name__)


def expression_items(data: Path, split: str, val_frac: float = 0.1, seed: int = 0) -> List[Tuple[Path, int]]:
    """Items of a split. ``train`` excludes the held-out validation part when ``val_frac`` > 0;
    ``val`` is that held-out part of ``<data>/train`` (stratified, seeded); other names are folders."""
    # the official fer2013.csv, or a folder holding it alone
    is_csv = (Path(data).is_file() and Path(data).suffix.lower() == ".csv") or fer_csv_in(Path(data)) is not None
    # a data set's own validation folder (AffectNet's, RAF-DB's) is its val split: a part of train is held out
    # only where it has none (one used to be shadowed by 10 % of train)
    val_dir = None if is_csv or not Path(data).is_dir() else next(
        (p.name for p in sorted(Path(data).iterdir()) if p.is_dir() and p.name.lower() in _VAL_NAMES), None)
    if split in ("train", "val") and val_frac > 0 and val_dir is None and (is_csv or (Path(data) / "train").is_dir()):
        tr, va = stratified_split(list_expression(Path(data), "train"), val_frac, seed)
        return tr if split == "train" else va
    if split == "val":
        if val_dir is not None:
            return list_expression(Path(data), val_dir)
        raise InputError(f"{data}: no val folder, and " + ("--val-frac 0" if val_frac <= 0 else
                                                           "no train folder to hold a val part out of"))
    return list_expression(Path(data), split)


_VAL_NAMES = ("val", "valid", "validation")


def load_stills(root: Path, size: int, val_frac: float = 0.1, seed: int = 0
                ) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """FER-2013-layout ``root/train/<class>/*`` -> ((train images, labels), (val images, labels)).

    The validation part is the probes' stratified split (``facecycle probe ... --split val``), so the
    figures of both agree. Images are (N, size, size, 3) uint8 RGB.
    """
    tr = expression_items(Path(root), "train", val_frac, seed)
    va = expression_items(Path(root), "val", val_frac, seed)
    xt = load_images([p for p, _ in tr], size)
    xv = load_images([p for p, _ in va], size)
    return (xt, np.array([c for _, c in tr], np.int64)), (xv, np.array([c for _, c in va], np.int64))


def subsample(items: Sequence, n: int, seed: int = 0) -> List:
    """Seeded stratified subsample of (path, label) items to about ``n`` (all when n <= 0)."""
    if n <= 0 or n >= len(items):
        return list(items)
    frac = 1.0 - n / len(items)
    keep, _ = stratified_split(items, frac, seed + 1)
    return keep


def extract(extractor: FeatureExtractor, paths: Sequence[Path], flips: bool = False,
            chunk: int = 2048, progress: bool = False, framer: Optional[Framer] = None,
            unreadable: Optional[List[int]] = None) -> np.ndarray:
    """Features of image files (RGB; grayscale converted), optionally followed by those of their mirrors.

    ``framer`` frames each image's face first (:data:`~facecycle.probe.datasets.Framer`); None: whole images.
    ``unreadable``: when given, files that do not decode get the feature of a black image and their indices are
    appended (:func:`~facecycle.probe.datasets.load_images`); else they raise InputError.
    """
    from tqdm import tqdm

    out, out_f = [], []
    # the bar only where stderr is a terminal: into a file its carriage-return redraws were a line of noise
    for i in tqdm(range(0, len(paths), chunk), desc="features", disable=not (progress and stderr_is_terminal()),
                  unit="chunk", file=sys.stderr):
        bad: Optional[List[int]] = None if unreadable is None else []
        imgs = load_images(paths[i:i + chunk], extractor.image_size, framer, unreadable=bad)
        if bad:
            unreadable.extend(i + k for k in bad)
        out.append(extractor(imgs))
        if flips:
            out_f.append(extractor(np.ascontiguousarray(imgs[:, :, ::-1])))
    feats = np.concatenate(out)
    return np.concatenate([feats, np.concatenate(out_f)]) if flips else feats


def fit_expression(extractor: FeatureExtractor, items: Sequence[Tuple[Path, int]], flips: bool = True,
                   seed: int = 0, progress: bool = False, classes: Sequence[str] = EXPRESSION_CLASSES,
                   wds: Sequence[float] = DEFAULT_WDS, framer: Optional[Framer] = None) -> Tuple[Head, Dict]:
    paths = [p for p, _ in items]
    y = np.array([c for _, c in items])
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise InputError(f"the fit split holds {len(y)} images of {len(present)} class(es): a classifier needs two "
                         "or more")
    missing = [classes[i] for i in range(len(classes)) if i not in present]
    if missing:
        log.warning("no fit images of %s: the head will never predict %s, and scores them 0", ", ".join(missing),
                    "it" if len(missing) == 1 else "them")
    if flips and getattr(extractor, "mirror_invariant", False):
        # a mirrored copy has the very feature of its image: extracting it doubled the time for an identical fit
        # (every sample twice leaves the mean loss as it was)
        log.info("the feature is mirror-invariant (feature_flip): fitted without mirrored copies, which would add "
                 "the same features")
        flips = False
    t0 = time.perf_counter()
    bad: List[int] = []
    f = extract(extractor, paths, flips=flips, progress=progress, framer=framer, unreadable=bad)
    t_feat = time.perf_counter() - t0
    keep = _readable(items, bad)
    f = np.concatenate([f[:len(y)][keep], f[len(y):][keep]]) if flips else f[keep]
    y, paths = y[keep], [paths[i] for i in keep]
    groups = np.arange(len(y))
    if flips:
        y, groups = np.concatenate([y, y]), np.concatenate([groups, groups])
    t0 = time.perf_counter()
    head, scores = fit_classifier(f, y, classes, extractor.describe(), wds=wds, seed=seed, groups=groups)
    info = {"n_images": len(paths), **_unreadable_report(items, bad), "flips": flips,
            "feature_seconds": round(t_feat, 1),
            "fit_seconds": round(time.perf_counter() - t0, 1), "inner_val_accuracy": scores,
            "weight_decay": head.meta["weight_decay"]}
    head.meta["flips"] = str(flips)
    return head, info


def eval_expression(extractor: FeatureExtractor, head: Head, items: Sequence[Tuple[Path, int]],
                    progress: bool = False, framer: Optional[Framer] = None) -> Dict:
    names = list(head.classes or EXPRESSION_CLASSES)
    unknown = [c for c in names if c not in EXPRESSION_CLASSES]
    if unknown or len(names) != head.weight.shape[0]:
        raise InputError(f"the head's classes {names} are not {head.weight.shape[0]} of "
                         f"{', '.join(EXPRESSION_CLASSES)}: it cannot be scored on these labels")
    bad: List[int] = []
    found = getattr(framer, "found", None)  # per framed image, whether a face was found (StillFramer)
    start = len(found) if found is not None else 0
    f = extract(extractor, [p for p, _ in items], progress=progress, framer=framer, unreadable=bad)
    keep = _readable(items, bad)
    y = np.array([c for _, c in items])[keep]
    # the head's rows by name (a head in another class order was scored by position: 75.7 % read 42.9 %)
    scores = head.predict(f[keep])
    ordered = np.full((len(scores), len(EXPRESSION_CLASSES)), -np.inf, np.float32)
    ordered[:, [EXPRESSION_CLASSES.index(c) for c in names]] = scores
    rep = {**classification_report(ordered, y, list(EXPRESSION_CLASSES)), **_unreadable_report(items, bad)}
    # the score where a face was found: images without one are read whole (or their centre), a guess that the
    # headline mixes in (640x480 frames: 0.60 on 52 faces found, 0.17 on 18 without)
    rep["n_face_found"] = rep["accuracy_face_found"] = None
    if found is not None and len(found) - start == len(y):
        hit = np.asarray(found[start:], bool)
        rep["n_face_found"] = int(hit.sum())
        if hit.any():
            rep["accuracy_face_found"] = float((ordered[hit].argmax(1) == y[hit]).mean())
    return rep


def _readable(items: Sequence[Tuple[Path, int]], bad: Sequence[int]) -> np.ndarray:
    """Indices of the items that decoded; one warning names the others (a damaged file in a test set is left out
    of the score, not the end of it); InputError when none did."""
    if bad:
        log.warning("%d of %d images do not decode and are not scored (first: %s); the JSON lists them "
                    "(unreadable)", len(bad), len(items), items[bad[0]][0])
    keep = np.setdiff1d(np.arange(len(items)), np.asarray(bad, np.int64))
    if not keep.size:
        raise InputError(f"none of the {len(items)} images decodes (first: {items[0][0]})")
    return keep


def _unreadable_report(items: Sequence[Tuple[Path, int]], bad: Sequence[int]) -> Dict:
    """``n_unreadable`` and the first 1,000 ``unreadable`` paths, as UTF-8 text (:func:`~facecycle.files.text_name`:
    a name that is not valid UTF-8 was written as lone surrogates, a JSON file strict readers refuse)."""
    return {"n_unreadable": len(bad), "unreadable": [text_name(str(items[i][0])) for i in bad[:1000]]}


POSE_NAMES = ("yaw", "pitch", "roll")


#: the usual AFLW2000 protocol: samples with an angle beyond this are left out of fits and scores
POSE_MAX_ABS_DEG = 99.0


def fit_pose(extractor: FeatureExtractor, root: Path, seed: int = 0, progress: bool = False,
             framer: Optional[Framer] = None, max_train: int = 0) -> Tuple[Head, Dict]:
    """A ridge head for (yaw, pitch, roll) on every ``.jpg`` + ``.mat`` under ``root`` (or a seeded random
    ``max_train`` of them)."""
    beyond: List[Path] = []
    items = list_pose(root, POSE_MAX_ABS_DEG, beyond)
    if 0 < max_train < len(items):
        pick = np.sort(np.random.default_rng(seed).choice(len(items), max_train, replace=False))
        items = [items[i] for i in pick]
    f = extract(extractor, [p for p, _ in items], progress=progress, framer=framer)
    t = np.stack([a for _, a in items])
    head, scores = fit_regressor(f, t, POSE_NAMES, extractor.describe(), seed=seed)
    return head, {"n_images": len(items), "n_beyond_max_angle": len(beyond), "max_abs_deg": POSE_MAX_ABS_DEG,
                  "inner_val_mae": scores}


def eval_pose(extractor: FeatureExtractor, head: Head, root: Path, progress: bool = False,
              framer: Optional[Framer] = None) -> Dict:
    beyond: List[Path] = []
    items = list_pose(root, POSE_MAX_ABS_DEG, beyond)
    f = extract(extractor, [p for p, _ in items], progress=progress, framer=framer)
    t = np.stack([a for _, a in items])
    err = np.abs(head.predict(f) - t)
    mae = err.mean(0)
    return {"n": len(items), "n_beyond_max_angle": len(beyond), "max_abs_deg": POSE_MAX_ABS_DEG,
            "mae_deg": {n: float(v) for n, v in zip(POSE_NAMES, mae, strict=True)},
            "mae_mean_deg": float(mae.mean())}
