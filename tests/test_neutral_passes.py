"""Neutral faces from several neutralization passes (``FaceInference(neutral_passes=N)``): pass k analyses and
neutralizes pass k−1's neutral face, and the sharp face's crop is warped by every pass's flow. Runs on the tiny
exported model and a frame made here (no ../shared); the gain in neutrality on real expressive clips is checked
by ``tests/test_expression_quality.py``."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from facecycle.errors import UsageError


def _packet():
    import cv2

    from realtime.types import Face, FramePacket

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(110, 25, (240, 320, 3)), 0, 255).astype(np.uint8)
    cv2.ellipse(img, (160, 120), (45, 60), 0, 0, 360, (120, 150, 190), -1)
    for x in (140, 180):
        cv2.circle(img, (x, 105), 6, (40, 40, 40), -1)
    cv2.ellipse(img, (160, 150), (18, 7), 0, 0, 360, (60, 60, 150), -1)
    lm = np.array([[140, 105], [180, 105], [160, 125], [145, 150], [175, 150]], np.float32)
    face = Face(box=np.array([110, 55, 210, 185], np.float32), score=0.9, landmarks=lm)
    return FramePacket(index=0, pts=0, time_base=Fraction(1, 25), timestamp=0.0, image=img, faces=[face])


@pytest.fixture(scope="module")
def backend(tiny_export):
    from realtime.backend import open_model

    b = open_model(tiny_export[1], backend="onnxruntime")
    yield b
    b.close()


def test_two_passes_neutralize_the_first_passes_neutral_face(backend):
    from facecycle.preprocess import from_output, to_input
    from realtime.crops import crop_faces, crop_square
    from realtime.inference import NEUTRAL_PASSES, FaceInference
    from realtime.neutral_detail import sharpen_neutral

    assert NEUTRAL_PASSES == 2
    faces = {}
    for passes in (1, 2, 3):
        inf = FaceInference(backend, neutralize=True, neutral_passes=passes)
        faces[passes] = inf(_packet()).faces[0]
        assert inf.describe()["neutral_passes"] == passes
    # the reference, graph call by graph call
    p = _packet()
    crops, squares = crop_faces(p.image, np.stack([f.box for f in p.faces]), inf.size, inf.crop_scale)
    x = to_input(crops, inf.mean, inf.std)
    f1 = backend.run("analyze", {"image": x})["flow"]
    n1 = backend.run("neutralize", {"image": x, "flow": f1})["neutral"]
    f2 = backend.run("analyze", {"image": n1})["flow"]
    n2 = backend.run("neutralize", {"image": n1, "flow": f2})["neutral"]
    side = int(squares[0][2])
    hr = np.ascontiguousarray(crop_square(p.image, squares[0], min(192, max(inf.size, side)))[..., ::-1])
    ref1 = sharpen_neutral(from_output(n1, inf.mean, inf.std)[0], hr, f1[0])
    ref2 = sharpen_neutral(from_output(n2, inf.mean, inf.std)[0], hr, np.stack([f1[0], f2[0]]))
    assert np.array_equal(faces[1].neutral, ref1)
    assert np.array_equal(faces[2].neutral, ref2)
    assert not np.array_equal(faces[2].neutral, faces[1].neutral)
    assert not np.array_equal(faces[3].neutral, faces[2].neutral)
    # the other outputs come from the input alone, whatever the passes
    assert np.array_equal(faces[1].code, faces[3].code) and faces[1].flow_intensity == faces[3].flow_intensity


def test_one_faces_neutral_face_on_demand_is_the_pipelines_and_a_packet_may_skip_them(backend):
    """``FaceInference.neutral_face`` (what the look-ahead's first pass calls for the frames it banks) gives
    exactly the ``Face.neutral`` of a packet run; ``__call__(..., neutralize=False)`` leaves them out."""
    from realtime.inference import FaceInference

    inf = FaceInference(backend, neutralize=True)
    p = inf(_packet())
    assert np.array_equal(inf.neutral_face(p.image, p.faces[0].box), p.faces[0].neutral)
    q = inf(_packet(), neutralize=False)
    assert q.faces[0].neutral is None and np.array_equal(q.faces[0].code, p.faces[0].code)


def test_zero_passes_is_a_usage_error(backend, tiny_export):
    from realtime import Analyzer
    from realtime.inference import FaceInference

    with pytest.raises(UsageError, match="--neutral-passes"):
        FaceInference(backend, neutralize=True, neutral_passes=0)
    with pytest.raises(UsageError, match="--neutral-passes"):
        Analyzer(model=tiny_export[1], neutralize=True, neutral_passes=0)


def test_neutral_passes_without_neutralize_warns(caplog):
    import argparse

    from facecycle_cli.process_cmd import _add_analyzer_args, analyzer_options

    ap = argparse.ArgumentParser()
    _add_analyzer_args(ap)
    with caplog.at_level("WARNING"):
        opts = analyzer_options(ap.parse_args(["--neutral-passes", "3"]))
    assert opts["neutral_passes"] == 3 and "no effect without --neutralize" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        opts = analyzer_options(ap.parse_args(["--neutralize"]))
    assert "neutral_passes" not in opts and not caplog.text  # the Analyzer's default applies
