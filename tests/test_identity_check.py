"""The verification figures of scripts/identity_check.py, on features made in the test."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
pytest.importorskip("scipy", reason="identity_check needs scipy (a scikit-image dependency)")

from identity_check import auc, scores  # noqa: E402


def _people(spread: float, seed: int = 0):
    """4 people x 3 clips x 5 frames: a person's frames share a direction, ``spread`` is the noise around it."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 16))
    feat, who, clip = [], [], []
    for p in range(4):
        for c in range(3):
            for _ in range(5):
                feat.append(centres[p] + spread * rng.normal(size=16))
                who.append(f"p{p}")
                clip.append(p * 3 + c)
    return np.array(feat), np.array(who), np.array(clip)


def test_auc_is_the_mann_whitney_statistic_with_half_ties():
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([1.0, 3.0]), np.array([2.0])) == 0.5


def test_separable_people_score_perfectly_and_noise_scores_chance():
    r = scores(*_people(0.05))
    assert r["auc"] == 1.0 and r["eer"] < 0.02 and r["tar_at_far_1pct"] == 1.0
    # only pairs across clips: 4 people x C(3, 2) clip pairs x 25 frame pairs are same-person
    assert r["same_person_pairs"] == 4 * 3 * 25
    assert r["same_person_pairs"] + r["different_person_pairs"] == (60 * 59) // 2 - 12 * 10
    rng = np.random.default_rng(1)
    _, who, clip = _people(0.05)
    noise = scores(rng.normal(size=(60, 16)), who, clip)
    assert 0.35 < noise["auc"] < 0.65 and noise["eer"] > 0.3
