"""``crop_outside``: the share of a face's crop square that lies outside the frame (filled with edge pixels).

A probe cut real clips so that 40 % of the face was out of the picture: the box is clipped to the visible part, the
crop square centred on it, and 25-33 % of the model's input became streaks of repeated edge pixels; the yaw went
wrong by 25-36° and labels flipped, with nothing in the CSV to tell those rows from good ones (docs/csv.md).
"""
from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path
from typing import List

import numpy as np
import pytest

from realtime.crops import crop_square, outside_share
from realtime.sinks.csv_sink import csv_columns, format_rows
from realtime.types import Face, FramePacket
from tests.conftest import FACE_CLIP, real_frames, write_video


def _packet(i: int, faces: List[Face]) -> FramePacket:
    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                       image=np.zeros((8, 8, 3), np.uint8), faces=faces)


def _cells(line: str, code_dim: int) -> dict:
    cols = csv_columns(code_dim)
    vals = line.rstrip("\n").split(",")
    assert len(vals) == len(cols)
    return dict(zip(cols, vals, strict=True))


# ------------------------------------------------------------------------------------------ the computation
def test_the_share_of_a_square_at_a_corner_is_the_part_past_both_edges():
    # 100-px square 20 px past the left edge and 10 px past the top: 80 × 90 px inside
    assert outside_share((-20, -10, 100), 640, 480) == pytest.approx(1 - 80 * 90 / 100 ** 2)  # 0.28
    # the same at the bottom-right corner of the frame
    assert outside_share((640 - 80, 480 - 90, 100), 640, 480) == pytest.approx(0.28)
    assert outside_share((0, 0, 100), 640, 480) == 0.0  # touching the edges from inside: nothing outside
    assert outside_share((540, 380, 100), 640, 480) == 0.0
    assert outside_share((700, 10, 50), 640, 480) == 1.0  # wholly outside
    assert outside_share((-10, -10, 1000), 640, 480) == pytest.approx(1 - 640 * 480 / 1000 ** 2)  # holds the frame
    for unknown in ((0, 0, 0), (math.nan, 0, 10)):
        assert math.isnan(outside_share(unknown, 640, 480))
    assert math.isnan(outside_share((0, 0, 10), 0, 480))


def test_the_share_is_the_part_of_the_crop_that_crop_square_fills_with_edge_pixels():
    """At the crop's own scale (side = size: no resampling) the pixels that do not come from the frame itself are
    exactly the share: the definition and the crop agree."""
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, (60, 80, 3), dtype=np.uint8)  # no 0 anywhere
    square = (-12, 30, 48)  # 12 px past the left edge, 18 px past the bottom
    marked = np.zeros((60 + 96, 80 + 96, 3), np.uint8)  # the frame inside a border of 0: what lies outside is 0
    marked[48:108, 48:128] = image
    outside = (crop_square(marked, (square[0] + 48, square[1] + 48, square[2]), 48) == 0).all(axis=2)
    assert outside_share(square, 80, 60) == pytest.approx(outside.mean()) == pytest.approx(1 - 36 * 30 / 48 ** 2)
    # and the real crop there is the edge pixels repeated (the crops themselves are unchanged)
    crop = crop_square(image, square, 48)
    assert (crop[:, :12] == crop[:, 12:13]).all() and (crop[30:] == crop[29:30]).all()


# ------------------------------------------------------------------------------------------ the CSV
def test_the_header_has_crop_outside_right_after_face_h():
    for code_dim, file_column in ((0, False), (8, False), (256, True)):
        cols = csv_columns(code_dim, file_column)
        assert cols[cols.index("face_h") + 1] == "crop_outside" and cols.count("crop_outside") == 1
    assert len(csv_columns(256)) == 43 + 256  # docs/csv.md's count


def test_a_face_row_writes_crop_outside_with_4_decimals_and_a_no_face_row_leaves_it_empty():
    f = Face(box=np.array([0, 20, 40, 90], np.float32), score=0.9, landmarks=np.ones((5, 2), np.float32), track_id=0)
    f.crop_outside = 0.283456
    row = _cells(format_rows(_packet(0, [f]), 4), 4)
    assert row["crop_outside"] == "0.2835" and row["face_h"] == "70.00" and row["lmk_x_0"] == "1.00"
    g = Face(box=np.array([0, 20, 40, 90], np.float32), score=0.9, landmarks=np.ones((5, 2), np.float32))
    assert _cells(format_rows(_packet(0, [g]), 4), 4)["crop_outside"] == ""  # NaN: not known (before inference)
    none = _cells(format_rows(_packet(1, []), 4), 4)
    assert none["crop_outside"] == "" and none["baseline_ready"] == "0" and none["success"] == "0"
    cols = csv_columns(4)
    assert all(none[c] == "" for c in cols[cols.index("success") + 1:] if c != "baseline_ready")


def test_a_batch_made_with_the_old_header_is_redone(monkeypatch):
    """The batch fingerprint holds the CSV's header (before the code): a batch whose CSVs lack the column redoes
    them rather than mixing two headers in one dataset (the Parquet writer refuses CSVs whose columns differ)."""
    import realtime.sinks.csv_sink as sink
    from realtime.batch import BatchSettings, settings_fingerprint

    fp, detail = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5}, video=False))
    assert "crop_outside" in detail["csv_columns"].split(",") and "exp_0" not in detail["csv_columns"]
    no_csv = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5}, video=True, csv=False))[1]
    assert "csv_columns" not in no_csv  # no CSV, nothing to mix: such a batch keeps its fingerprint
    new = sink.csv_columns
    monkeypatch.setattr(sink, "csv_columns", lambda d, f=False: [c for c in new(d, f) if c != "crop_outside"])
    assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5}, video=False))[0] != fp


# ------------------------------------------------------------------------------------------ a real clip
def _face_rows(path: Path) -> List[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0])[9] == "crop_outside"
    return [r for r in rows if r["success"] == "1"]


def test_a_real_face_cut_by_the_frame_edge_has_crop_outside_over_0_2_and_the_whole_clip_0(tmp_path):
    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted)")
    from realtime.analyzer import Analyzer

    frames = real_frames(20)  # 320 × 180
    with Analyzer(threads=1) as an:
        an.process_video(iter(frames), csv=tmp_path / "whole.csv").run()
        whole = _face_rows(tmp_path / "whole.csv")
        assert len(whole) >= 15
        assert all(float(r["crop_outside"]) == 0.0 for r in whole)
        # cut the frames through the middle of the face (half of it out of the picture), as a camera framing it
        # badly would, and read the clip back from a file
        x = float(np.median([float(r["face_x"]) for r in whole]))
        w = float(np.median([float(r["face_w"]) for r in whole]))
        cut = int(round(x + 0.5 * w))
        width = (frames[0].shape[1] - cut) // 2 * 2  # even: yuv420p
        clip = write_video(tmp_path / "cut.mp4", [np.ascontiguousarray(f[:, cut:cut + width]) for f in frames],
                           options={"crf": "16"})
        an.process_video(clip, csv=tmp_path / "cut.csv").run()
    cut_rows = _face_rows(tmp_path / "cut.csv")
    assert len(cut_rows) >= 10, "the half face was not found"
    shares = [float(r["crop_outside"]) for r in cut_rows]
    assert min(shares) > 0.2 and max(shares) < 0.6, shares
