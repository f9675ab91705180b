"""Linear probes on frozen features: a softmax classifier (expression) and a linear regressor (pose).

The paper trains one Linear layer by SGD for 300 epochs with augmentation.
On a 2-core CPU we use an equivalent convex fit: features are extracted once
(optionally with horizontally flipped copies of the training images),
standardised, and the linear layer is fitted full-batch with L-BFGS
(cross-entropy + L2), the L2 strength chosen on a seeded held-out part of the
training data, then refitted on all of it. Pose uses ridge regression in
closed form, its λ chosen the same way.

Head file (safetensors): ``weight`` (K, D), ``bias`` (K,), ``mean``/``std``
(D,) float32 — logits = ((feature − mean) / std) · weightᵀ + bias; metadata:
``task``, ``classes`` (JSON list), ``feature`` (facecycle | pixels |
random-encoder), ``config`` (JSON), ``config_name``, ``feature_dim``,
``image_size`` and the fit's settings; ``class_bias`` (JSON {class: b}) where :func:`with_class_bias` added
``b`` to classes' biases after the fit.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..files import match_umask

__all__ = ["expression_head_for", "Head", "fit_classifier", "fit_regressor", "save_head", "load_head", "with_class_bias",
           "parse_class_bias", "classification_report", "DEFAULT_WDS", "DEFAULT_RIDGE"]

log = logging.getLogger(__name__)

DEFAULT_WDS = (1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_RIDGE = (1e-2, 1e-1, 1.0, 10.0, 100.0)


class Head:
    """A fitted linear head: ``predict(features (N, D)) -> (N, K)`` logits or regression outputs."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 meta: Dict[str, str]) -> None:
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.meta = dict(meta)

    @property
    def classes(self) -> List[str]:
        return json.loads(self.meta.get("classes", "[]"))

    def predict(self, feats: np.ndarray) -> np.ndarray:
        feats = np.asarray(feats, np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.weight.shape[1]:  # (before the arithmetic, which fails first)
            raise InputError(f"features are {feats.shape[-1]}-d, the head expects {self.weight.shape[1]}-d")
        z = (feats - self.mean) / self.std
        return z @ self.weight.T + self.bias


def save_head(head: Head, path: Path) -> Path:
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": head.weight, "bias": head.bias, "mean": head.mean, "std": head.std}, str(path),
              metadata={k: str(v) for k, v in head.meta.items()})
    match_umask(path)  # safetensors writes through a private (0600) temporary file
    return path


def load_head(path: Path) -> Head:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such head file")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{path}: unreadable head file ({e})") from None
    if "weight" not in t or "bias" not in t:
        raise InputError(f"{path}: a head needs 'weight' and 'bias' tensors")
    w, b = t["weight"], t["bias"]
    d = w.shape[1] if w.ndim == 2 else 0
    mean, std = t.get("mean", np.zeros(d, np.float32)), t.get("std", np.ones(d, np.float32))
    _check_head(path, w, b, mean, std, meta)
    return Head(w, b, mean, std, meta)


def _check_head(path: Path, w: np.ndarray, b: np.ndarray, mean: np.ndarray, std: np.ndarray,
                meta: Dict[str, str]) -> None:
    """An :class:`~facecycle.errors.InputError` naming ``path`` where a head's tensors do not fit one another
    (weight (K, D), bias (K,), mean and std (D,)), hold NaN or inf, or its ``classes`` metadata is no JSON list of
    K names: found when it is read, not as a TypeError or a wrong column later."""
    if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1 or b.shape != (w.shape[0],):
        raise InputError(f"{path}: weight {tuple(w.shape)} / bias {tuple(b.shape)} mismatch (a head has a weight "
                         "(classes, feature size) and a bias (classes,))")
    for name, v in (("mean", mean), ("std", std)):
        if v.shape != (w.shape[1],):
            raise InputError(f"{path}: {name} has shape {tuple(v.shape)}, the weight reads {w.shape[1]}-d features")
    bad = [n for n, v in (("weight", w), ("bias", b), ("mean", mean), ("std", std))
           if not np.isfinite(np.asarray(v, np.float64)).all()]
    if bad:
        raise InputError(f"{path}: non-finite weights (NaN or inf in {', '.join(bad)})")
    if not (np.asarray(std) > 0).all():
        raise InputError(f"{path}: std must be > 0 (it divides the feature)")
    if "classes" in meta:
        try:
            classes = json.loads(meta["classes"])
        except (TypeError, ValueError):
            classes = None
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            raise InputError(f"{path}: metadata 'classes' is not a JSON list of class names")
        if len(classes) != w.shape[0] or len(set(classes)) != len(classes):
            raise InputError(f"{path}: metadata 'classes' names {len(classes)} classes"
                             f"{' (some twice)' if len(set(classes)) != len(classes) else ''}, the weight has "
                             f"{w.shape[0]} rows")


def expression_head_for(path: Path, config, source: str = "", accuracy: Optional[float] = None) -> Head:
    """The emotion head at ``path`` in the shipped format (``expression_head.safetensors`` of a model folder), for
    a model of ``config`` (a :class:`~facecycle.config.FaceCycleConfig`): either a head already in that format
    (``weight``, ``bias``; copied as it is, class bias included) or a training run's ``head.safetensors`` (the
    ``fc.weight``/``fc.bias`` that ``facecycle train --stage semisup`` writes beside ``last.safetensors``, in the
    FER-2013 classes' order), given the metadata the pipeline and ``probe eval`` read. An
    :class:`~facecycle.errors.InputError` where the file is unreadable, neither, or made for another feature size."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such head file")
    try:
        with safe_open(str(path), framework="np") as f:
            keys = set(f.keys())
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise InputError(f"{path}: unreadable head file ({str(e).splitlines()[0]})") from None
    from .datasets import EXPRESSION_CLASSES

    if {"weight", "bias"} <= keys:
        head = load_head(path)
        if head.meta.get("task", "expression") != "expression" or sorted(head.classes) != sorted(EXPRESSION_CLASSES):
            raise InputError(f"{path}: not an emotion head (task {head.meta.get('task', '?')}, classes "
                             f"{head.classes}); the pipeline reads the 7 FER-2013 classes")
    elif {"fc.weight", "fc.bias"} <= keys:
        with safe_open(str(path), framework="np") as f:
            w, b = f.get_tensor("fc.weight").astype(np.float32), f.get_tensor("fc.bias").astype(np.float32)
        if w.ndim != 2 or w.shape[0] != len(EXPRESSION_CLASSES):
            raise InputError(f"{path}: fc.weight {tuple(w.shape)}; a training run's head has the 7 FER-2013 "
                             "classes")
        meta = {"task": "expression", "feature": "facecycle", "config": config.to_json(), "config_name": config.name,
                "image_size": str(config.image_size), "feature_dim": str(config.feature_dim),
                "classes": json.dumps(list(EXPRESSION_CLASSES)),
                "fit": "trained end to end with the encoder (facecycle train --stage semisup)", "source": source}
        if accuracy is not None:
            meta["accuracy"] = f"{accuracy:.4f}"
        d = w.shape[1]
        _check_head(path, w, b, np.zeros(d, np.float32), np.ones(d, np.float32), meta)
        head = Head(w, b, np.zeros(d, np.float32), np.ones(d, np.float32), meta)
    else:
        raise InputError(f"{path}: not an emotion head (no 'weight'/'bias' nor a training run's 'fc.weight'/'fc.bias')")
    if head.weight.shape[1] != config.feature_dim:
        raise InputError(f"{path}: the head reads {head.weight.shape[1]}-d features; config {config.name}'s feature "
                         f"is {config.feature_dim}-d (a head of another model?)")
    return head


def with_class_bias(head: Head, bias: Dict[str, float]) -> Head:
    """``head`` with ``bias[c]`` added to class ``c``'s bias (a post-hoc shift of its log-odds against every
    other class), relative to the fit: a bias recorded in the head's ``class_bias`` metadata is taken off first,
    so applying it again changes nothing. ``{}`` restores the fit. Classes not named keep theirs."""
    names = head.classes
    unknown = sorted(set(bias) - set(names))
    if unknown:
        raise InputError(f"class bias: unknown classes {unknown} (the head's: {names})")
    old = json.loads(head.meta.get("class_bias", "{}"))
    b = head.bias.copy()
    for c, v in old.items():
        b[names.index(c)] -= np.float32(v)
    for c, v in bias.items():
        b[names.index(c)] += np.float32(v)
    meta = dict(head.meta)
    if bias:
        meta["class_bias"] = json.dumps({c: float(v) for c, v in sorted(bias.items())})
    else:
        meta.pop("class_bias", None)
    return Head(head.weight, b, head.mean, head.std, meta)


def parse_class_bias(items: Sequence[str]) -> Dict[str, float]:
    """``["sad=0.25", ...]`` (command-line ``CLASS=B`` items) -> ``{"sad": 0.25, ...}``; a malformed item is an
    :class:`~facecycle.errors.InputError` naming it."""
    out: Dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"class bias {item!r}: expected CLASS=B, e.g. sad=0.25") from None
    return out


def _standardise(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def _lbfgs_softmax(z: np.ndarray, y: np.ndarray, k: int, wd: float, iters: int = 100,
                   w0: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    import torch

    zt = torch.from_numpy(z)
    yt = torch.from_numpy(y.astype(np.int64))
    lin = torch.nn.Linear(z.shape[1], k)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        if w0 is not None:
            lin.weight.copy_(torch.from_numpy(w0[0]))
            lin.bias.copy_(torch.from_numpy(w0[1]))
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(zt), yt) + 0.5 * wd * (lin.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()


def _split_idx(y: np.ndarray, frac: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        k = max(1, int(round(len(idx) * frac))) if len(idx) > 1 else 0
        va.extend(idx[:k])
        tr.extend(idx[k:])
    return np.sort(np.asarray(tr, int)), np.sort(np.asarray(va, int))


def fit_classifier(feats: np.ndarray, labels: np.ndarray, classes: Sequence[str], meta: Dict[str, str],
                   wds: Sequence[float] = DEFAULT_WDS, inner_frac: float = 0.15, seed: int = 0,
                   iters: int = 100, groups: Optional[np.ndarray] = None) -> Tuple[Head, Dict[str, float]]:
    """Fit a softmax probe; returns (head, {wd: inner validation accuracy}).

    ``groups`` (N,) ties augmented copies to their source image so that the
    inner split never separates them.
    """
    x = np.asarray(feats, np.float32)
    y = np.asarray(labels)
    k = len(classes)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    ug, first = np.unique(g, return_index=True)
    gtr, gva = _split_idx(y[first], inner_frac, seed)
    in_va = np.isin(g, ug[gva])
    tr, va = np.flatnonzero(~in_va), np.flatnonzero(in_va)
    mean, std = _standardise(x[tr])
    ztr, zva = (x[tr] - mean) / std, (x[va] - mean) / std
    scores: Dict[str, float] = {}
    for wd in (wds if len(wds) > 1 else []):  # one value: nothing to choose
        w, b = _lbfgs_softmax(ztr, y[tr], k, wd, iters)
        scores[f"{wd:g}"] = float(((zva @ w.T + b).argmax(1) == y[va]).mean()) if len(va) else 0.0
        log.info("probe wd %g: inner val acc %.4f", wd, scores[f"{wd:g}"])
    best = max(wds, key=lambda v: (scores[f"{v:g}"], v)) if scores else wds[0]
    mean, std = _standardise(x)
    w, b = _lbfgs_softmax((x - mean) / std, y, k, best, iters)
    m = dict(meta)
    m.update({"task": "expression", "classes": json.dumps(list(classes)), "weight_decay": f"{best:g}",
              "inner_val": json.dumps(scores), "n_train": str(len(y)), "fit": "L-BFGS softmax, standardised"})
    return Head(w, b, mean, std, m), scores


def fit_regressor(feats: np.ndarray, targets: np.ndarray, names: Sequence[str], meta: Dict[str, str],
                  lambdas: Sequence[float] = DEFAULT_RIDGE, inner_frac: float = 0.15,
                  seed: int = 0) -> Tuple[Head, Dict[str, float]]:
    """Ridge regression on standardised features; returns (head, {λ: inner MAE mean})."""
    x = np.asarray(feats, np.float64)
    t = np.asarray(targets, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    k = max(1, int(round(len(x) * inner_frac)))
    va, tr = idx[:k], idx[k:]

    def solve(xs, ts, lam):
        mean, std = _standardise(xs)
        z = (xs - mean) / std
        tm = ts.mean(0)
        c = lam * len(z) / max(1, z.shape[1])
        if len(z) < z.shape[1]:  # fewer samples than features (pixels, 4,096-d): the same ridge in its n × n form
            w = z.T @ np.linalg.solve(z @ z.T + c * np.eye(len(z)), ts - tm)
        else:
            w = np.linalg.solve(z.T @ z + c * np.eye(z.shape[1]), z.T @ (ts - tm))
        return w.T, tm, mean, std

    scores: Dict[str, float] = {}
    for lam in lambdas:
        w, b, mean, std = solve(x[tr], t[tr], lam)
        pred = ((x[va] - mean) / std) @ w.T + b
        scores[f"{lam:g}"] = float(np.abs(pred - t[va]).mean())
    best = min(lambdas, key=lambda v: scores[f"{v:g}"])
    w, b, mean, std = solve(x, t, best)
    m = dict(meta)
    m.update({"task": "pose", "classes": json.dumps(list(names)), "ridge": f"{best:g}",
              "inner_val_mae": json.dumps(scores), "n_train": str(len(x)), "fit": "ridge, standardised"})
    return Head(w.astype(np.float32), b.astype(np.float32), mean, std, m), scores


def classification_report(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Dict:
    """Accuracy, per-class accuracy (recall) and confusion matrix (rows: true, columns: predicted).

    ``accuracy`` is the argmax over all ``classes``. When the labels use only some of them (CK+'s six basic
    emotions for a seven-class head), ``accuracy_labelled_classes`` adds the argmax over the labelled classes
    only, the usual score of a cross-dataset test, and ``labelled_classes`` names them; both are ``None``
    when every class is labelled.
    """
    z = np.asarray(logits)
    pred = z.argmax(1)
    y = np.asarray(labels)
    k = len(classes)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    per = {c: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i, c in enumerate(classes)}
    vals = [v for v in per.values() if v is not None]
    present = np.unique(y)
    sub = None
    if 0 < len(present) < k:
        sub = float((present[z[:, present].argmax(1)] == y).mean())
    return {"accuracy": float((pred == y).mean()) if len(y) else 0.0, "n": int(len(y)),
            "mean_class_accuracy": float(np.mean(vals)) if vals else None,
            "per_class_accuracy": per, "confusion_matrix": cm.tolist(), "classes": list(classes),
            "labelled_classes": [classes[i] for i in present] if sub is not None else None,
            "accuracy_labelled_classes": sub}
