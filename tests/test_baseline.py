"""Person-normalized expression (realtime.baseline) on synthetic tracks; the real-clip check is in
test_expression_quality.py."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from realtime.baseline import NeutralBaseline
from realtime.types import EMOTIONS, Face, FramePacket


def _packet(i: int, t: float, faces):
    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=t,
                       image=np.zeros((8, 8, 3), np.uint8), faces=faces)


def _face(tid: int, intensity: float, emo: np.ndarray, code: np.ndarray) -> Face:
    return Face(box=np.array([0, 0, 4, 4], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                track_id=tid, intensity=intensity, emotions=emo, code=code)


def _emotions(neutral: float, other: str = "happy") -> np.ndarray:
    e = np.zeros(len(EMOTIONS), np.float32)
    e[EMOTIONS.index("neutral")] = neutral
    e[EMOTIONS.index(other)] = 1 - neutral
    return e


def test_rest_then_expression_relative_to_the_persons_own_neutral():
    # a person whose resting face reads 0.3 (a "sad-looking" rest), then smiles (0.9)
    bl = NeutralBaseline(warmup_frames=15, warmup_s=1.0)
    rng = np.random.default_rng(0)
    rest_code = rng.normal(size=16).astype(np.float32)
    smile_code = rest_code + 1.0
    out = []
    for i in range(125):  # 5 s at 25 fps: 3 s rest, 2 s smile
        t = i / 25
        smiling = t >= 3.0
        f = _face(0, 0.9 if smiling else 0.3 + 0.01 * rng.normal(),
                  _emotions(0.1 if smiling else 0.7, "happy" if smiling else "sad"),
                  smile_code if smiling else rest_code)
        bl(_packet(i, t, [f]))
        out.append(f)
    # warm-up: nothing before 15 frames / 1 s
    assert not out[10].baseline_ready and np.isnan(out[10].rel_intensity) and out[10].rel_emotions is None
    assert out[30].baseline_ready
    rest = [f.rel_intensity for f in out[30:75]]
    smile = [f.rel_intensity for f in out[100:]]
    assert max(rest) < 0.05, rest
    assert min(smile) > 0.8, smile  # (0.9 - 0.3) / (1 - 0.3) = 0.857
    # at rest the person's "sad" is their baseline, not an emotion; the smile is
    assert abs(out[60].rel_emotions[EMOTIONS.index("sad")]) < 0.05
    assert out[110].rel_emotions[EMOTIONS.index("happy")] > 0.8
    assert out[60].rel_code_dist < 0.05 < 0.9 < out[110].rel_code_dist


def test_two_people_have_separate_neutrals_and_tracks_are_forgotten():
    bl = NeutralBaseline(warmup_frames=5, warmup_s=0.1, forget_s=2.0)
    code = np.zeros(4, np.float32)
    for i in range(50):
        t = i / 25
        a = _face(0, 0.1, _emotions(0.9), code)
        b = _face(1, 0.6, _emotions(0.4), code)
        bl(_packet(i, t, [a, b]))
    assert a.rel_intensity == pytest.approx(0.0, abs=1e-6) and b.rel_intensity == pytest.approx(0.0, abs=1e-6)
    assert bl.neutral_of(0) == pytest.approx(0.1) and bl.neutral_of(1) == pytest.approx(0.6)
    # track 1 leaves; 3 s later it is forgotten and starts a new warm-up
    for i in range(50, 130):
        bl(_packet(i, i / 25, [_face(0, 0.1, _emotions(0.9), code)]))
    assert bl.neutral_of(1) is None
    b = _face(1, 0.6, _emotions(0.4), code)
    bl(_packet(130, 130 / 25, [b]))
    assert not b.baseline_ready


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        NeutralBaseline(quantile=0)
    with pytest.raises(ValueError):
        NeutralBaseline(warmup_frames=10, window=5)
