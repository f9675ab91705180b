"""Faces in a dark room: their crops are brightened before their expression is read (a dark face read "angry"
whatever it showed, and froze there); lit faces are never touched."""
from __future__ import annotations

import logging
from typing import List

import av
import numpy as np
import pytest

from realtime.inference import DARK_LIFT, lift_dark

from .conftest import shared_video

#: a neutral talker: "neutral" on every one of its first frames, lit
TALKER = "videoretalking_face_2.mp4"


def test_lift_dark_brightens_only_dark_crops_and_says_by_how_much():
    rng = np.random.default_rng(0)
    lit = rng.integers(60, 200, (2, 16, 16, 3), dtype=np.uint8)
    out, gains = lift_dark(lit)
    assert out is lit and gains.tolist() == [1.0, 1.0]  # nothing copied where nothing is dark
    dark = np.concatenate([lit[:1], (lit[1:] // 10).astype(np.uint8), np.zeros((1, 16, 16, 3), np.uint8)])
    out, gains = lift_dark(dark)
    assert np.array_equal(out[0], dark[0]) and gains[0] == 1.0
    assert gains[1] > 1.0 and abs(float(out[1].mean()) - DARK_LIFT[1]) < 3.0  # scaled to the target level
    assert gains[2] == 10.0 and not out[2].any()  # black stays black: the gain is capped, nothing made up
    assert out.dtype == np.uint8 and not np.shares_memory(out, dark)
    assert lift_dark(np.zeros((0, 16, 16, 3), np.uint8))[1].shape == (0,)


def test_the_faces_own_level_decides_not_the_background():
    """The crop's middle half decides: a face against a bright window is lifted, a lit face against a dark wall is
    not (the whole crop's mean went down to 46 on a lit shared clip; lit faces' middles are 63 and up)."""
    backlit = np.full((1, 16, 16, 3), 240, np.uint8)
    backlit[:, 4:12, 4:12] = 25
    out, gains = lift_dark(backlit)
    assert gains[0] > 1.0 and abs(float(out[0, 4:12, 4:12].mean()) - DARK_LIFT[1]) < 3.0
    dark_wall = np.full((1, 16, 16, 3), 10, np.uint8)
    dark_wall[:, 4:12, 4:12] = 90
    assert float(dark_wall.mean()) < DARK_LIFT[0] and lift_dark(dark_wall)[1][0] == 1.0


def _dark_talker(n: int = 40) -> List[np.ndarray]:
    rng = np.random.default_rng(1)
    out = []
    with av.open(str(shared_video(TALKER))) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="bgr24").astype(np.float32) * 0.1 + rng.normal(0, 2.0, (f.height, f.width, 3))
            out.append(np.clip(img, 0, 255).astype(np.uint8))
            if len(out) >= n:
                break
    return out


def test_a_dark_talker_reads_as_lit_and_the_run_says_so(caplog):
    from realtime import Analyzer

    frames = _dark_talker()
    with Analyzer() as an:
        with caplog.at_level(logging.WARNING, logger="realtime.analyzer"):
            run = an.process_video(frames)
            faces = [f for p in run for f in p.faces]
        said = [r.getMessage() for r in caplog.records if "too dark" in r.getMessage()]
        assert len(said) == 1 and "from frame 0" in said[0], said
        assert run.info["dark_faces"]["rows"] == len(faces) == len(frames)
        assert run.info["dark_faces"]["gain_max"] > 5 and run.describe()["dark_lift"] == list(DARK_LIFT)
        assert all(f.lift > 1.0 for f in faces)
        lifted = np.mean([f.emotion == "neutral" for f in faces])
        an.inference.dark_lift = None  # as before: read as it is
        run = an.process_video(frames)
        as_is = np.mean([f.emotion == "neutral" for p in run for f in p.faces])
        assert "dark_faces" not in run.info and run.describe()["dark_lift"] is None
    assert lifted >= 0.9 and as_is <= 0.2, (lifted, as_is)


def test_a_lit_clip_is_never_brightened():
    from realtime import Analyzer

    with av.open(str(shared_video(TALKER))) as c:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(20), c.decode(video=0), strict=False)]
    with Analyzer() as an:
        run = an.process_video(frames)
        assert all(f.lift == 1.0 for p in run for f in p.faces)
    assert "dark_faces" not in run.info


@pytest.mark.parametrize("neutralize", [True])
def test_a_dark_faces_neutral_face_stays_as_dark_as_the_face(neutralize):
    """The expression is read brightened; the neutral face is the crop's as it was, so that it looks like the
    person there (not a bright face pasted into a dark frame)."""
    from realtime import Analyzer

    frames = _dark_talker(6)
    with Analyzer(neutralize=neutralize) as an:
        faces = [f for p in an.process_video(frames) for f in p.faces]
    assert faces and all(f.neutral is not None for f in faces)
    assert max(float(f.neutral.mean()) for f in faces) < DARK_LIFT[0]
