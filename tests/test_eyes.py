"""Eye openness from the two eye landmarks (:mod:`realtime.eyes`) and the neutral reference's open-eyes rule
(:mod:`realtime.neutral_reference`). Made-up eyes here; real clips in ``tests/test_expression_quality.py``."""
from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
import pytest

from realtime.eyes import eye_openness
from realtime.neutral_reference import NeutralReference
from realtime.types import Face, FramePacket

S = 128
LM = np.array([[44, 52], [84, 52], [64, 72], [48, 92], [80, 92]], np.float32)


def _eyes_image(open_: bool, size: int = S, lm: np.ndarray = LM, skin: int = 170) -> np.ndarray:
    """(size, size, 3) uint8 BGR: skin with two eyes at ``lm[:2]``: an open eye is a white almond with a dark
    iris; a closed one a dark lid line with lashes across the eye."""
    img = np.full((size, size, 3), skin, np.uint8)
    d = float(np.hypot(*(lm[1] - lm[0])))
    for x, y in lm[:2]:
        c = (int(round(x)), int(round(y)))
        if open_:
            cv2.ellipse(img, c, (int(0.14 * d), int(0.06 * d)), 0, 0, 360, (235, 235, 235), -1)
            cv2.circle(img, c, int(0.055 * d), (40, 40, 40), -1)
            cv2.ellipse(img, c, (int(0.14 * d), int(0.06 * d)), 0, 0, 360, (60, 60, 60), 1)
        else:
            cv2.ellipse(img, c, (int(0.14 * d), int(0.02 * d)), 0, 0, 180, (60, 60, 60), 2)
    return cv2.GaussianBlur(img, (0, 0), 0.7)


def test_open_eyes_score_higher_than_closed_ones_at_any_roll_and_size():
    # drawn eyes: 1.56-6.6 times (the smallest, rotated, the least: the lid line's steps add horizontal edges)
    for angle in (0.0, 15.0, -25.0):
        for scale in (0.75, 1.0, 2.5):
            size = int(S * scale)
            m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
            lm = LM * scale
            lm_r = (np.c_[lm, np.ones(len(lm))] @ m.T).astype(np.float32)
            scores = {}
            for open_ in (True, False):
                img = cv2.warpAffine(_eyes_image(open_, size, lm), m, (size, size), borderMode=cv2.BORDER_REPLICATE)
                scores[open_] = eye_openness(img, lm_r)
            assert scores[True] > 1.4 * scores[False] > 0, (angle, scale, scores)


def test_grey_and_colour_frames_give_the_same_score():
    img = _eyes_image(True)
    assert eye_openness(img, LM) == pytest.approx(eye_openness(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), LM), rel=0.02)


def test_unmeasurable_faces_give_nan():
    img = _eyes_image(True)
    assert math.isnan(eye_openness(None, LM))
    assert math.isnan(eye_openness(img, None))
    assert math.isnan(eye_openness(img, LM - np.array([40, 0], np.float32)))  # an eye at the image border
    near = LM.copy()
    near[1] = near[0] + 2.0  # eyes 2 px apart
    assert math.isnan(eye_openness(img, near))
    bad = LM.copy()
    bad[0, 0] = np.nan
    assert math.isnan(eye_openness(img, bad))
    assert math.isnan(eye_openness(np.zeros((4, 4, 3), np.uint8), LM))


def _face(intensity: float, seed: int) -> Face:
    rng = np.random.default_rng(seed)
    neutral = cv2.resize(rng.uniform(0, 255, (16, 16, 3)).astype(np.float32), (S, S)).clip(0, 255).astype(np.uint8)
    return Face(box=np.array([24, 24, 104, 116], np.float32), score=0.9, landmarks=LM.copy(), track_id=1,
                intensity=float(intensity), pose=np.zeros(3, np.float32), neutral=neutral,
                crop_box=(0.0, 0.0, float(S)))


def _run(nr: NeutralReference, frames) -> list:
    """``frames``: (eyes open?, intensity) per frame -> each face's ``neutral_from``."""
    out = []
    for i, (open_, intensity) in enumerate(frames):
        f = _face(intensity, i)
        nr(FramePacket(index=i, pts=i, time_base=Fraction(1, 30), timestamp=i / 30, image=_eyes_image(open_),
                       faces=[f]))
        out.append(f.neutral_from)
    return out


def test_an_open_eyed_resting_frame_is_preferred_to_a_blink():
    # open eyes at 0.3, a blink reading least expressive (0.05), then a strong expression
    frames = [(True, 0.3)] * 10 + [(False, 0.05)] + [(True, 0.9)] * 5
    assert _run(NeutralReference(min_eyes=0.0), frames)[-1] == 10  # without the check: the blink
    got = _run(NeutralReference(), frames)
    assert got[-5:] == [0] * 5, got  # with it: the least expressive frame with open eyes


def test_a_blink_is_used_only_where_no_open_eyed_frame_is_less_expressive_by_the_gap():
    # open eyes only while expressive (0.8), one blink at rest (0.05), then a stronger expression (0.9): the
    # open-eyed entries are within the gap (0.2) of the face, so the blink's neutral face is better than its own
    frames = [(True, 0.8)] * 10 + [(False, 0.05)] + [(True, 0.9)] * 3
    got = _run(NeutralReference(), frames)
    assert got[-3:] == [10] * 3, got


def test_a_closed_eyed_entry_banked_before_the_tracks_usual_was_known_is_dropped_later():
    # the track starts with a blink (nothing to compare with yet: banked), then open eyes
    frames = [(False, 0.05)] + [(True, 0.3)] * 10 + [(True, 0.9)] * 3
    nr = NeutralReference()
    got = _run(nr, frames)
    assert 0 not in got, got
    assert got[-3:] == [1] * 3, got  # the first open-eyed frame replaced the blink in its bin
    assert nr.describe()["min_eyes"] == 0.7


def test_eye_settings_are_checked():
    for bad in ({"min_eyes": 1.0}, {"min_eyes": -0.1}, {"eyes_percentile": 101}, {"eyes_window": 0}):
        with pytest.raises(ValueError):
            NeutralReference(**bad)


def test_without_the_fallback_a_blink_is_never_used():
    frames = [(True, 0.8)] * 10 + [(False, 0.05)] + [(True, 0.9)] * 3
    got = _run(NeutralReference(eyes_fallback=False), frames)
    assert 10 not in got, got
