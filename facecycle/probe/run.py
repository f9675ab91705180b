"""Probe workflows used by ``facecycle probe``: load a split, extract features, fit / evaluate heads."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from .datasets import EXPRESSION_CLASSES, Framer, list_expression, list_pose, load_images, stratified_split
from .features import FeatureExtractor
from .linear import DEFAULT_WDS, Head, classification_report, fit_classifier, fit_regressor

__all__ = ["expression_items", "load_stills", "extract", "fit_expression", "eval_expression", "fit_pose", "eval_pose",
           "subsample"]

log = logging.getLogger(__name__)


def expression_items(data: Path, split: str, val_frac: float = 0.1, seed: int = 0) -> List[Tuple[Path, int]]:
    """Items of a split. ``train`` excludes the held-out validation part when ``val_frac`` > 0;
    ``val`` is that held-out part of ``<data>/train`` (stratified, seeded); other names are folders."""
    is_csv = Path(data).is_file() and Path(data).suffix.lower() == ".csv"  # the official fer2013.csv
    if split in ("train", "val") and val_frac > 0 and (is_csv or (Path(data) / "train").is_dir()):
        tr, va = stratified_split(list_expression(Path(data), "train"), val_frac, seed)
        return tr if split == "train" else va
    if split == "val" and (is_csv or not (Path(data) / "val").is_dir()):
        raise InputError(f"{data}: no val folder and --val-frac 0")
    return list_expression(Path(data), split)


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
            chunk: int = 2048, progress: bool = False, framer: Optional[Framer] = None) -> np.ndarray:
    """Features of image files (RGB; grayscale converted), optionally followed by those of their mirrors.

    ``framer`` frames each image's face first (:data:`~facecycle.probe.datasets.Framer`); None: whole images.
    """
    from tqdm import tqdm

    out, out_f = [], []
    for i in tqdm(range(0, len(paths), chunk), desc="features", disable=not progress, unit="chunk"):
        imgs = load_images(paths[i:i + chunk], extractor.image_size, framer)
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
    t0 = time.perf_counter()
    f = extract(extractor, paths, flips=flips, progress=progress, framer=framer)
    t_feat = time.perf_counter() - t0
    groups = np.arange(len(y))
    if flips:
        y, groups = np.concatenate([y, y]), np.concatenate([groups, groups])
    t0 = time.perf_counter()
    head, scores = fit_classifier(f, y, classes, extractor.describe(), wds=wds, seed=seed, groups=groups)
    info = {"n_images": len(paths), "flips": flips, "feature_seconds": round(t_feat, 1),
            "fit_seconds": round(time.perf_counter() - t0, 1), "inner_val_accuracy": scores,
            "weight_decay": head.meta["weight_decay"]}
    head.meta["flips"] = str(flips)
    return head, info


def eval_expression(extractor: FeatureExtractor, head: Head, items: Sequence[Tuple[Path, int]],
                    progress: bool = False, framer: Optional[Framer] = None) -> Dict:
    classes = head.classes or list(EXPRESSION_CLASSES)
    f = extract(extractor, [p for p, _ in items], progress=progress, framer=framer)
    y = np.array([c for _, c in items])
    return classification_report(head.predict(f), y, classes)


POSE_NAMES = ("yaw", "pitch", "roll")


def fit_pose(extractor: FeatureExtractor, root: Path, seed: int = 0, progress: bool = False,
             framer: Optional[Framer] = None) -> Tuple[Head, Dict]:
    items = list_pose(root)
    f = extract(extractor, [p for p, _ in items], progress=progress, framer=framer)
    t = np.stack([a for _, a in items])
    head, scores = fit_regressor(f, t, POSE_NAMES, extractor.describe(), seed=seed)
    return head, {"n_images": len(items), "inner_val_mae": scores}


def eval_pose(extractor: FeatureExtractor, head: Head, root: Path, progress: bool = False,
              framer: Optional[Framer] = None) -> Dict:
    items = list_pose(root)
    f = extract(extractor, [p for p, _ in items], progress=progress, framer=framer)
    t = np.stack([a for _, a in items])
    err = np.abs(head.predict(f) - t)
    mae = err.mean(0)
    return {"n": len(items), "mae_deg": {n: float(v) for n, v in zip(POSE_NAMES, mae)},
            "mae_mean_deg": float(mae.mean())}
