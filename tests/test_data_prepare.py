"""`facecycle data prepare` on real clips: tracks, crops, index, resume, bad files; IoU tracker units."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from facecycle.data.tracks import IoUTracker, crop_square, iou, loose_square_box
from tests.conftest import MODELS, shared_video


def test_iou_and_tracker():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    t = IoUTracker(min_iou=0.3, max_gap=2)
    assert t.update(0, [(0, 0, 10, 10), (50, 50, 60, 60)]) == [0, 1]
    assert t.update(1, [(51, 50, 61, 60), (1, 0, 11, 10)]) == [1, 0]   # matched by overlap, not order
    assert t.update(5, [(1, 0, 11, 10)]) == [2]                         # gap too long: a new track


def test_loose_square_box_and_crop():
    b = loose_square_box((10, 20, 30, 60), scale=1.5)  # 20×40 box -> 60×60 square around (20, 40)
    assert b == pytest.approx((-10, 10, 50, 70))
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 40:60] = 255
    c = crop_square(img, (30, 30, 70, 70), 20)  # the white square fills the middle half
    assert c.shape == (20, 20, 3)
    assert c[10, 10, 0] == 255 and c[1, 1, 0] == 0
    big = crop_square(np.full((400, 400, 3), 7, np.uint8), (-50, -50, 450, 450), 16)  # leaves the image
    assert big.shape == (16, 16, 3) and (big == 7).all()


@pytest.fixture(scope="module")
def yunet():
    p = MODELS / "face_detection_yunet_2023mar.onnx"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def test_prepare_two_clips_resume_and_bad_file(tmp_path, yunet, capsys):
    from facecycle.cli import main

    clips = [shared_video("liveportrait_driving_d1.mp4"), shared_video("pyfeat_no_face.mp4")]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = tmp_path / "ds"
    args = ["data", "prepare", *map(str, clips), str(bad), "--out", str(out), "--every", "3",
            "--detector-model", str(yunet), "--min-track", "3", "--no-progress"]
    assert main(args) == 0
    msg = capsys.readouterr()
    assert "2 sources prepared" in msg.out and "1 failed" in msg.out and "broken.mp4" in msg.err + msg.out
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert rows and {r["source"] for r in rows} == {str(clips[0].resolve())}  # the cartoon has no face
    tracks = {r["track"] for r in rows}
    assert len(tracks) == 1
    for r in rows:
        assert int(r["frame"]) % 3 == 0 and (out / r["file"]).is_file()
        x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert x1 - x0 == pytest.approx(y1 - y0, abs=0.2) and x1 - x0 > 64
    import cv2

    crop = cv2.imread(str(out / rows[0]["file"]))
    assert crop.shape == (64, 64, 3) and crop.std() > 10
    # resume: everything is recorded in sources.csv, nothing is redone
    assert main(args) == 0
    assert "0 sources prepared" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(out / "index.csv")))) == len(rows)


def test_prepare_errors(tmp_path, capsys):
    from facecycle.cli import main

    assert main(["data", "prepare", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"),
                 "--detector-model", str(tmp_path / "m.onnx")]) in (2, 3)
    assert "facecycle: error:" in capsys.readouterr().err
