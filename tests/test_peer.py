"""The independent judge (``fer``'s mini-Xception via LiteRT): install check, input checks, real FER-2013 faces."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecycle.errors import InputError
from facecycle.probe import peer as peer_mod
from facecycle.probe.peer import PEER_TO_FER2013, FerPeer, peer_model_path

from .conftest import FER

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _peer() -> FerPeer:
    if peer_model_path() is None:
        pytest.skip("the fer peer is not installed (pip install --no-deps fer==25.10.3 && pip install ai-edge-litert)")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    return FerPeer()


def test_reorder_is_a_permutation_to_fer2013_order():
    peer_order = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert [peer_order[i] for i in PEER_TO_FER2013] == list(CLASSES)


def test_missing_install_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(peer_mod, "peer_model_path", lambda: None)
    with pytest.raises(InputError, match="pip install"):
        FerPeer()


def test_probabilities_shape_and_bad_input():
    p = _peer()
    rng = np.random.default_rng(0)
    out = p.predict(rng.integers(0, 255, (3, 50, 40, 3), dtype=np.uint8))
    assert out.shape == (3, 7) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-3)
    grey = p.predict(rng.integers(0, 255, (2, 64, 64), dtype=np.uint8))
    assert grey.shape == (2, 7)
    with pytest.raises(InputError):
        p.predict(np.zeros((2, 64, 64, 4), np.uint8))
    with pytest.raises(InputError):
        p.predict(np.zeros((2, 64, 64), np.float32))


def test_reads_real_fer2013_faces():
    """On real FER-2013 faces the peer is far above chance, and names happy and surprise faces well."""
    p = _peer()
    if not (FER / "train").is_dir():
        pytest.skip(f"{FER} is absent")
    imgs, labels = [], []
    for k, c in enumerate(CLASSES):
        for f in sorted((FER / "train" / c).glob("*.jpg"))[:20]:
            imgs.append(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
            labels.append(k)
    pred = p.predict(np.stack(imgs)).argmax(1)
    labels = np.array(labels)
    assert (pred == labels).mean() >= 0.5  # chance is 1/7
    for c in ("happy", "surprise"):
        k = CLASSES.index(c)
        assert (pred[labels == k] == k).mean() >= 0.6, c
