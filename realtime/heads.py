"""The expression (emotion) probe head: a linear layer over the encoder feature, applied in numpy.

File format — ``expression_head.safetensors`` in the model directory:

* tensors (float32): ``weight`` (7, feature_dim), ``bias`` (7,), and optionally
  ``mean`` (feature_dim,) and ``std`` (feature_dim,) for feature standardisation;
* metadata (strings): ``classes`` = JSON list of the 7 class names in FER order
  ``["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]``;
  optional ``feature`` (name of the analyze output it reads, default
  ``"feature"``), ``source``, ``accuracy``.

Probabilities = softmax(W · ((f − mean) / std) + b), f = the ``feature`` output
of the ``analyze`` graph (B, feature_dim).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from facecycle.assets import HEAD_FILE
from facecycle.errors import ModelError

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
        self.weight = np.asarray(weight, np.float32)
        self.bias = np.asarray(bias, np.float32)
        self.classes = tuple(classes)
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ModelError(f"expression head: weight {self.weight.shape} / bias {self.bias.shape} mismatch")
        if len(self.classes) != self.weight.shape[0]:
            raise ModelError(f"expression head: {len(self.classes)} classes but {self.weight.shape[0]} rows")
        d = self.weight.shape[1]
        self.mean = None if mean is None else np.asarray(mean, np.float32).reshape(d)
        self.std = None if std is None else np.maximum(np.asarray(std, np.float32).reshape(d), 1e-8)
        self.feature = feature
        self.meta = dict(meta or {})
        # reorder rows into the CSV's fixed EMOTIONS order when the file lists them differently
        if set(self.classes) == set(EMOTIONS) and self.classes != EMOTIONS:
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
        return cls(t["weight"], t["bias"], classes, t.get("mean"), t.get("std"), meta.get("feature", "feature"),
                   meta)

    @classmethod
    def find(cls, model_dir: Union[str, Path]) -> Optional["ExpressionHead"]:
        """The model folder's head, or None; where its manifest records the head's sha256 (``facecycle export``
        does) and the file differs, a warning: the head was replaced after the export."""
        p = Path(model_dir) / HEAD_FILE
        if not p.is_file():
            return None
        head = cls.load(p)
        want = _recorded_sha(Path(model_dir))
        if want:
            from facecycle.files import sha256_file

            got = sha256_file(p)
            if got != want:
                log.warning("%s: sha256 %s… is not that of the head exported with this model (%s…): it was replaced "
                            "after the export; using it", p, got[:12], want[:12])
        return head

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


def _recorded_sha(model_dir: Path) -> str:
    """The head's sha256 the folder's manifest records ('' where it records none or cannot be read)."""
    try:
        rec = json.loads((model_dir / "manifest.json").read_text()).get("head")
    except (OSError, ValueError, AttributeError):
        return ""
    return str(rec.get("sha256") or "") if isinstance(rec, dict) and rec.get("file") == HEAD_FILE else ""


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
