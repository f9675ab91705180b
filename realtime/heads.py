"""The expression (emotion) probe head: a linear layer over the encoder feature, applied in numpy.

File format — ``expression_head.safetensors`` in the model directory:

* tensors (float32): ``weight`` (7, feature_dim), ``bias`` (7,), and optionally
  ``mean`` (feature_dim,) and ``std`` (feature_dim,) for feature standardisation;
* metadata (strings): ``classes`` = JSON list of the 7 class names in FER order
  ``["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]`` (another order is read by name: each
  of the 7 once, nothing else — the CSV's ``emotion_*`` columns are these);
  optional ``feature`` (name of the analyze output it reads, default
  ``"feature"``), ``source``, ``accuracy``, ``class_bias`` (JSON {class: number}).

Everything is checked when the file is loaded (classes, shapes, finite values; where the folder's manifest records
the head's sha256, that too): a :class:`~facecycle.errors.ModelError` naming the file, never a failure at the first
face.

Probabilities = softmax(W · ((f − mean) / std) + b), f = the ``feature`` output
of the ``analyze`` graph (B, feature_dim).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from facecycle.assets import HEAD_FILE
from facecycle.errors import ModelError
from facecycle.jsonvalues import is_number

from .types import EMOTIONS

__all__ = ["ExpressionHead", "HEAD_FILE", "save_expression_head", "model_checksums"]

log = logging.getLogger(__name__)


def model_checksums(model_dir: Union[str, Path]) -> Dict[str, Optional[str]]:
    """What identifies a model folder's numbers: sha256 of its ``manifest.json`` (which lists every graph's
    sha256) and of its expression head (None where either is absent). The batch fingerprint's ``model`` and the
    sidecar's."""
    from facecycle.files import sha256_file

    d = Path(model_dir)
    manifest, head = d / "manifest.json", d / HEAD_FILE
    return {"manifest_sha256": sha256_file(manifest) if manifest.is_file() else None,
            "head_sha256": sha256_file(head) if head.is_file() else None}


class ExpressionHead:
    """Linear softmax head. ``predict(features (B, D)) -> (B, 7)`` float32 probabilities."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, classes: Sequence[str] = EMOTIONS,
                 mean: Optional[np.ndarray] = None, std: Optional[np.ndarray] = None,
                 feature: str = "feature", meta: Optional[dict] = None) -> None:
        """A :class:`~facecycle.errors.ModelError` (one line, "expression head: …") for a head the pipeline cannot
        use: classes other than the 7 of :data:`EMOTIONS` each once (any order: rows are put in that order by
        name), weight/bias/mean/std of shapes that do not fit one another, non-finite values, a std not > 0."""
        self.weight = _floats(weight, "weight")
        self.bias = _floats(bias, "bias")
        self.classes = _class_names(classes)
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ModelError(f"expression head: weight {self.weight.shape} / bias {self.bias.shape} mismatch (a "
                             "weight (classes, feature size) and a bias (classes,))")
        if len(self.classes) != self.weight.shape[0]:
            raise ModelError(f"expression head: {len(self.classes)} classes but {self.weight.shape[0]} weight rows")
        _check_emotions(self.classes)
        d = self.weight.shape[1]
        if d < 1:
            raise ModelError("expression head: weight reads a 0-d feature")
        self.mean = None if mean is None else _vector(mean, "mean", d)
        self.std = None if std is None else _vector(std, "std", d)
        bad = [n for n, a in (("weight", self.weight), ("bias", self.bias), ("mean", self.mean), ("std", self.std))
               if a is not None and not np.isfinite(a).all()]
        if bad:
            raise ModelError(f"expression head: non-finite weights (NaN or inf in {', '.join(bad)})")
        if self.std is not None:
            if not (self.std > 0).all():
                raise ModelError("expression head: std must be > 0 (it divides the feature)")
            self.std = np.maximum(self.std, 1e-8)
        self.feature = feature
        self.meta = dict(meta or {})
        _check_class_bias(self.meta, self.classes)
        # reorder rows into the CSV's fixed EMOTIONS order when the file lists them differently
        if self.classes != EMOTIONS:
            order = [self.classes.index(c) for c in EMOTIONS]
            self.weight, self.bias, self.classes = self.weight[order], self.bias[order], EMOTIONS

    @property
    def feature_dim(self) -> int:
        return int(self.weight.shape[1])

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ExpressionHead":
        from safetensors import safe_open

        try:
            with open(path, "rb"):  # safetensors reports an unreadable file as a bad one
                pass
        except PermissionError:
            raise ModelError(f"{path}: permission denied reading the expression head") from None
        except OSError as e:
            raise ModelError(f"{path}: cannot read the expression head ({e.strerror or e})") from None
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise ModelError(f"{path}: corrupt expression head ({str(e).splitlines()[0]})") from None
        if "weight" not in t or "bias" not in t:
            raise ModelError(f"{path}: expression head needs 'weight' and 'bias' tensors")
        try:
            classes = json.loads(meta.get("classes", json.dumps(list(EMOTIONS))))
        except json.JSONDecodeError:
            raise ModelError(f"{path}: metadata 'classes' is not a JSON list") from None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ModelError(f"{path}: metadata 'classes' is not a JSON list of class names (it is "
                             f"{_short(meta.get('classes'))})")
        try:
            return cls(t["weight"], t["bias"], classes, t.get("mean"), t.get("std"), meta.get("feature", "feature"),
                       meta)
        except ModelError as e:
            raise ModelError(f"{path}: {e}") from None

    @classmethod
    def find(cls, model_dir: Union[str, Path]) -> Optional["ExpressionHead"]:
        """The model folder's head, or None where it has none. Where its manifest records the head (file and
        sha256: ``facecycle export`` does), the file must be there and have that sha256, as the graphs and the
        weights must: a :class:`~facecycle.errors.ModelError` otherwise (the head was replaced after the export,
        or is truncated or corrupt)."""
        p = Path(model_dir) / HEAD_FILE
        recorded, want = _recorded_sha(Path(model_dir))
        if not p.is_file():
            if recorded:
                raise ModelError(f"{p}: the expression head the manifest records is missing from the model "
                                 "directory — re-export the model")
            return None
        from facecycle.files import check_sha256

        check_sha256(p, want, "expression head", "re-export the model (facecycle export --head HEAD), or, to use a "
                     "head of your own here, remove the manifest's \"head\" entry")
        return cls.load(p)

    def predict(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, np.float32).reshape(len(features), -1)
        if f.shape[1] != self.feature_dim:
            raise ModelError(f"expression head expects features of size {self.feature_dim}, got {f.shape[1]}")
        if self.mean is not None:
            f = f - self.mean
        if self.std is not None:
            f = f / self.std
        z = f @ self.weight.T + self.bias
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _recorded_sha(model_dir: Path) -> Tuple[bool, str]:
    """(whether the folder's manifest records the head, the sha256 it records: '' where none). A manifest that
    cannot be read records nothing here: the backend that opens the folder says what is wrong with it."""
    try:
        rec = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8")).get("head")
    except (OSError, ValueError, AttributeError):
        return False, ""
    if not (isinstance(rec, dict) and rec.get("file") == HEAD_FILE):
        return False, ""
    sha = rec.get("sha256")
    return True, sha if isinstance(sha, str) else ""


def _short(value: object, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n - 1] + "…"


def _floats(a: object, name: str) -> np.ndarray:
    try:
        return np.asarray(a, np.float32)
    except (TypeError, ValueError) as e:
        raise ModelError(f"expression head: {name} is not an array of numbers ({e})") from None


def _vector(a: object, name: str, d: int) -> np.ndarray:
    v = _floats(a, name)
    if v.size != d:
        raise ModelError(f"expression head: {name} has shape {v.shape}; the weight reads {d}-d features, so "
                         f"{name} must be ({d},)")
    return v.reshape(d)


def _class_names(classes: object) -> Tuple[str, ...]:
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or not all(isinstance(c, str)
                                                                                     for c in classes):
        raise ModelError(f"expression head: 'classes' is not a list of class names (it is {_short(classes)})")
    return tuple(classes)


def _check_emotions(classes: Tuple[str, ...]) -> None:
    """The head's classes must be :data:`EMOTIONS` (the CSV's emotion columns), each once, in any order."""
    if sorted(classes) == sorted(EMOTIONS):
        return
    parts = []
    unknown = [c for c in dict.fromkeys(classes) if c not in EMOTIONS]
    repeated = [c for c in dict.fromkeys(classes) if classes.count(c) > 1]
    lacking = [c for c in EMOTIONS if c not in classes]
    if unknown:
        parts.append("unknown " + ", ".join(map(repr, unknown[:7])) + (" …" if len(unknown) > 7 else ""))
    if repeated:
        parts.append("repeats " + ", ".join(map(repr, repeated)))
    if lacking:
        parts.append("lacks " + ", ".join(lacking))
    raise ModelError(f"expression head: {len(classes)} classes ({'; '.join(parts)}); the emotion columns need the "
                     f"{len(EMOTIONS)} classes {', '.join(EMOTIONS)}, each once, in any order")


def _check_class_bias(meta: dict, classes: Tuple[str, ...]) -> None:
    """``class_bias`` metadata (what :func:`facecycle.probe.linear.with_class_bias` records): a JSON object of
    {class: number}, every class one of the head's."""
    if "class_bias" not in meta:
        return
    try:
        cb = json.loads(meta["class_bias"])
    except (TypeError, ValueError):
        cb = None
    if not (isinstance(cb, dict) and all(k in classes and is_number(v) for k, v in cb.items())):
        raise ModelError(f"expression head: metadata 'class_bias' is not a JSON object of {{class: number}} over "
                         f"its classes (it is {_short(meta['class_bias'])})")


def save_expression_head(path: Union[str, Path], weight: np.ndarray, bias: np.ndarray,
                         mean: Optional[np.ndarray] = None, std: Optional[np.ndarray] = None,
                         classes: Sequence[str] = EMOTIONS, **meta: str) -> None:
    """Write a head in the format above (used by the probe trainer and tests)."""
    from safetensors.numpy import save_file

    t = {"weight": np.ascontiguousarray(weight, np.float32), "bias": np.ascontiguousarray(bias, np.float32)}
    if mean is not None:
        t["mean"] = np.ascontiguousarray(mean, np.float32)
    if std is not None:
        t["std"] = np.ascontiguousarray(std, np.float32)
    md = {"classes": json.dumps(list(classes))}
    md.update({k: str(v) for k, v in meta.items()})
    save_file(t, str(path), metadata=md)
