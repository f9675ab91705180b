"""Turned pictures: a video without its rotation tag, a camera mounted upside down, a person lying down.

The detector finds such faces (every frame of a neutral talker turned upside down) and the model then reads them
wrongly ("sad" on every frame): a run says so once, with the ``rotate`` that reads them upright, and ``rotate``
turns every frame before anything reads it."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import List

import av
import cv2
import numpy as np
import pytest

from facecycle.errors import UsageError
from realtime.pose import face_turn

from .conftest import shared_video

#: a neutral talker (read "neutral" on every one of its first 100 frames upright)
TALKER = "videoretalking_face_2.mp4"


def _frames(n: int = 60) -> List[np.ndarray]:
    out = []
    with av.open(str(shared_video(TALKER))) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="bgr24"))
            if len(out) >= n:
                break
    return out


def _turned(frames: List[np.ndarray], code: int) -> List[np.ndarray]:
    return [cv2.rotate(f, code) for f in frames]


def _read(frames: List[np.ndarray], rotate: int = 0):
    from realtime import Analyzer

    with Analyzer(rotate=rotate) as an:
        run = an.process_video(frames)
        faces = [(p.image.shape, f) for p in run for f in p.faces]
    return run, faces


def test_face_turn_is_the_faces_own_turn_whatever_the_eye_order():
    up = np.array([[40, 40], [60, 40], [50, 50], [42, 60], [58, 60]], np.float64)
    c = np.array([50.0, 50.0])
    for deg in (0, 30, 90, 180, -90, -45):
        t = math.radians(deg)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])  # clockwise on screen (y down)
        lm = (up - c) @ rot.T + c
        assert face_turn(lm) == pytest.approx(deg if deg != -180 else 180, abs=1e-6), deg
        assert face_turn(lm[[1, 0, 2, 4, 3]]) == pytest.approx(face_turn(lm), abs=1e-6)  # eyes in either order
    assert face_turn(None) is None and face_turn(np.full((5, 2), np.nan)) is None


def test_an_upside_down_video_is_said_once_and_rotate_reads_it_upright(caplog):
    upright = _frames()
    flipped = _turned(upright, cv2.ROTATE_180)
    with caplog.at_level(logging.WARNING, logger="realtime.analyzer"):
        run, faces = _read(flipped)
    said = [r.getMessage() for r in caplog.records if r.name == "realtime.analyzer" and "upright" in r.getMessage()]
    assert len(said) == 1 and "upside down" in said[0] and "--rotate 180" in said[0], said
    assert run.info["orientation"]["rotate_upright"] == 180 and run.info["orientation"]["faces_turned_deg"] == 180
    wrong = np.mean([f.emotion == "neutral" for _, f in faces])
    assert len(faces) == len(flipped) and wrong < 0.5  # why it matters: the talker does not read neutral so

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="realtime.analyzer"):
        run, faces = _read(flipped, rotate=180)
    assert not [r for r in caplog.records if "upright" in r.getMessage()]
    assert "orientation" not in run.info
    assert len(faces) == len(flipped) and np.mean([f.emotion == "neutral" for _, f in faces]) >= 0.9
    h, w = flipped[0].shape[:2]
    shape, f = faces[0]
    assert shape[:2] == (h, w)  # (180°: the same size) and the boxes are the turned frame's: the face upright
    assert abs(face_turn(f.landmarks)) < 30


def test_a_face_on_its_side_gets_the_quarter_turn_that_reads_it_upright(caplog):
    upright = _frames()
    side = _turned(upright, cv2.ROTATE_90_CLOCKWISE)  # the head's top towards the frame's right
    run, _ = _read(side)
    assert run.info["orientation"]["faces_turned_deg"] == 90 and run.info["orientation"]["rotate_upright"] == 270
    run, faces = _read(side, rotate=270)
    assert "orientation" not in run.info
    assert faces[0][0][:2] == upright[0].shape[:2]  # turned back: the upright frame's size
    assert np.mean([f.emotion == "neutral" for _, f in faces]) >= 0.9
    # a run already turned, but not enough: the hint is the whole turn from the file's frames
    run, _ = _read(_turned(upright, cv2.ROTATE_180), rotate=90)
    assert run.info["orientation"]["rotate_upright"] == 180


def test_an_upright_video_gets_no_hint_and_rotate_is_recorded():
    run, faces = _read(_frames(40))
    assert faces and "orientation" not in run.info and "rotate" not in run.describe()
    run, _ = _read(_frames(40), rotate=90)
    assert run.describe()["rotate"] == 90


@pytest.mark.parametrize("bad", [45, -90, 360, True, "180", None])
def test_invalid_rotate_is_refused(bad):
    from realtime import Analyzer

    with pytest.raises(UsageError, match="rotate"):
        Analyzer(rotate=bad)


def test_analyze_image_turns_the_picture_too():
    from realtime import Analyzer

    img = cv2.rotate(_frames(1)[0], cv2.ROTATE_180)
    with Analyzer(rotate=180) as an:
        p = an.analyze_image(img)
    assert p.faces and abs(face_turn(p.faces[0].landmarks)) < 30
    assert np.array_equal(p.image, cv2.rotate(img, cv2.ROTATE_180))


def test_the_cli_says_the_turn_and_rotate_reads_it_upright(tmp_path):
    """`process` prints the hint on stderr and records it; --rotate 180 reads the file upright, says so in the
    sidecar, and a batch fingerprints it (a batch with another turn redoes its inputs)."""
    import json
    import subprocess
    import sys

    from realtime.batch.job import BatchSettings
    from realtime.batch.plan import settings_fingerprint

    from .conftest import write_video

    clip = write_video(tmp_path / "upside.mp4", _turned(_frames(45), cv2.ROTATE_180))

    def process(*extra: str):
        out = tmp_path / f"out{len(extra)}"
        r = subprocess.run([sys.executable, "-m", "facecycle", "process", str(clip), "--no-video", "--out-dir",
                            str(out), *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stderr, json.loads((out / "upside.json").read_text()), (out / "upside.csv").read_text()

    err, side, _ = process()
    assert "--rotate 180 reads them upright" in err and side["orientation"]["rotate_upright"] == 180
    assert "rotate" not in side
    err, side, csv = process("--rotate", "180")
    assert "upright" not in err and "orientation" not in side and side["rotate"] == 180
    rows = [dict(zip(csv.splitlines()[0].split(","), line.split(","), strict=True)) for line in csv.splitlines()[1:]]
    assert len(rows) == 45 and sum(r["emotion"] == "neutral" for r in rows) >= 40
    fps = {settings_fingerprint(BatchSettings(analyzer={"rotate": k}))[0] for k in (0, 90, 180)}
    assert len(fps) == 3
    assert settings_fingerprint(BatchSettings(analyzer={"rotate": 0}))[1].get("rotate") is None  # as before


def test_a_file_read_twice_says_each_warning_once(caplog):
    """With neutral faces a file is read twice (the look-ahead): the turn hint and the person baseline's cap warning
    (the upside-down talker reads 'sad' throughout, above the cap) come once each, and the sidecar's record is the
    second reading's (a review found the cap warning said twice)."""
    from realtime import Analyzer

    flipped = _turned(_frames(40), cv2.ROTATE_180)
    import tempfile

    from .conftest import write_video

    with tempfile.TemporaryDirectory() as d:
        clip = write_video(Path(d) / "upside.mp4", flipped)
        with caplog.at_level(logging.WARNING), Analyzer(neutralize=True) as an:
            run = an.process_video(str(clip))
            for _ in run:
                pass
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("upright" in m for m in said) == 1, said
    assert sum("above the person baseline's cap" in m for m in said) == 1, said
    assert run.info["orientation"]["rotate_upright"] == 180
    assert run.describe()["person_baseline"]["tracks_at_cap"] == 1
