"""A face that comes back (uncovered, turned back) gets its rows from its first frame: while a track is lost but
remembered (the tracker's ``lost_buffer``), the pipeline detects on every frame. Before, the detector ran only on
schedule (``detect_every``) or where the optical flow failed, and ``propagate`` has nothing to fail on with no live
track: a face covered on three frames got rows again only at the next scheduled detection (up to ``detect_every`` - 1
frames later). docs/pipeline.md, "Detection while a face is lost"."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pytest

from realtime.tracking import Tracker
from realtime.types import Detections

from .conftest import FACE_CLIP, real_frames

FPS = 30.0


def _analyze(model, frames: List[np.ndarray], detect_every: int = 5) -> Tuple[List[List[int]], Dict[int, np.ndarray],
                                                                          int]:
    """Per frame, the track ids with a row; the first face's box by frame; and the run's detections."""
    from realtime.analyzer import Analyzer

    with Analyzer(model=model, detect_every=detect_every, infer_workers=1) as an:
        run = an.process_video([(f, i / FPS) for i, f in enumerate(frames)])
        packets = list(run)
        ids = [[f.track_id for f in p.faces] for p in packets]
        boxes = {p.index: p.faces[0].box.copy() for p in packets if p.faces}
        return ids, boxes, run.stats.detections


def _one_face_clip():
    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted: the test needs a real face)")
    return real_frames(60, size=(480, 270))


def test_a_face_uncovered_gets_its_rows_from_its_first_frame_back(model):
    frames = _one_face_clip()
    plain, boxes, plain_det = _analyze(model, frames)
    assert all(len(f) == 1 for f in plain), plain  # (the clip: one face on every frame)
    # the face greyed on frames 21-23: the flow fails at 21 (a detection there, the schedule starts over: the next
    # scheduled one at 26); uncovered from 24
    covered = [f.copy() for f in frames]
    for i in (21, 22, 23):
        x0, y0, x1, y1 = boxes[i].astype(int)
        covered[i][max(0, y0 - 20):y1 + 20, max(0, x0 - 20):x1 + 20] = 128
    ids, _, _ = _analyze(model, covered)
    assert ids[21:24] == [[], [], []], ids[18:30]
    assert ids[24] == plain[24], ids[18:30]  # rows again at the first uncovered frame (26 before), the same id
    assert all(f == plain[0] for f in ids[24:]), ids[18:30]
    # an uninterrupted clip: no lost track, detections as before (every 5th frame)
    assert plain_det == 12


class _Scripted:
    """Detections by frame: a box on the frames listed, none elsewhere."""

    def __init__(self, seen: set) -> None:
        self.seen = seen
        self.box = np.array([[100, 60, 180, 160]], np.float32)

    def __call__(self, i: int) -> Detections:
        if i in self.seen:
            return Detections(self.box.copy(), np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32))
        return Detections.empty()


def test_has_lost_says_whether_a_lost_track_is_still_remembered():
    tr = Tracker(lost_buffer=0.4)
    img = np.full((270, 480, 3), 90, np.uint8)
    det = _Scripted({0, 1})
    assert not tr.has_lost(0.0)
    tr.update(img, det(0), 0.0)
    tr.update(img, det(1), 0.05)
    assert not tr.has_lost(0.05)  # live
    tr.update(img, det(2), 0.1)
    assert tr.has_lost(0.1) and tr.has_lost(0.45)  # lost, remembered
    assert not tr.has_lost(0.46)  # past the buffer: forgotten (no detection asked for)


def test_a_one_frame_detection_or_a_long_loss_asks_for_no_detection_on_every_frame():
    """Every lost track for the whole 2-s buffer made every frame a detection frame after each false detection (a
    track of one hit) or each face that left the picture: 60 detections at 30 fps instead of 12."""
    from realtime.tracking import REACQUIRE_S

    img = np.full((270, 480, 3), 90, np.uint8)
    tr = Tracker(lost_buffer=2.0)
    tr.update(img, _Scripted({0})(0), 0.0)  # seen once: a false detection
    tr.update(img, Detections.empty(), 0.04)
    assert not tr.has_lost(0.04)
    tr = Tracker(lost_buffer=2.0)
    for i in range(3):
        tr.update(img, _Scripted({0, 1, 2})(i), 0.04 * i)
    tr.update(img, Detections.empty(), 0.12)  # a face seen 3 times, then gone
    assert tr.has_lost(0.12) and tr.has_lost(0.08 + REACQUIRE_S)
    assert not tr.has_lost(0.09 + REACQUIRE_S)  # still remembered (2 s), but left to the scheduled detections
