"""Overlay layout (issue 12, finding 7): readable at any face size and position. Synthetic faces, no ../shared.

Checked geometrically: text rows at least as tall as the text, the panel inside the frame, beside the face
when there is room, never over another panel or over a box tag, and off the face's centre on close-ups.
"""
from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest

from realtime.annotators import FacePanelAnnotator, default_annotator
from realtime.annotators.layout import overlap, place_panel, tag_rect, text_metrics
from realtime.types import EMOTIONS, Face, FramePacket


def _face(box, tid=0, neutral=False):
    e = np.full(len(EMOTIONS), 0.02, np.float32)
    e[3] = 1 - e.sum() + 0.02
    x1, y1, x2, y2 = box
    lm = np.array([[x1 + 0.3 * (x2 - x1), y1 + 0.4 * (y2 - y1)], [x1 + 0.7 * (x2 - x1), y1 + 0.4 * (y2 - y1)],
                   [(x1 + x2) / 2, y1 + 0.6 * (y2 - y1)], [x1 + 0.35 * (x2 - x1), y1 + 0.8 * (y2 - y1)],
                   [x1 + 0.65 * (x2 - x1), y1 + 0.8 * (y2 - y1)]], np.float32)
    return Face(box=np.array(box, np.float32), score=0.9, landmarks=lm, track_id=tid, emotions=e,
                intensity=0.05, pose=np.zeros(3, np.float32),
                neutral=np.full((64, 64, 3), 128, np.uint8) if neutral else None)


def _packet(w, h, faces):
    img = np.full((h, w, 3), 90, np.uint8)
    return FramePacket(index=0, pts=0, time_base=Fraction(1, 25), timestamp=0.0, image=img, faces=faces)


def _panels(w, h, faces):
    """Run the panel annotator and return the panel rectangles it placed (recomputed like it does)."""
    a = FacePanelAnnotator()
    seen = []
    import realtime.annotators.draw as draw

    real = draw.place_panel

    def spy(*args, **kw):
        x, y = real(*args, **kw)
        pw, ph = args[2]
        seen.append((x, y, x + pw, y + ph))
        return x, y

    draw.place_panel = spy
    try:
        p = _packet(w, h, faces)
        a.annotate(p.image, p)
    finally:
        draw.place_panel = real
    return seen


@pytest.mark.parametrize("size", [(256, 256), (640, 360), (1280, 720), (1920, 1080)])
def test_text_rows_fit_their_text_and_stay_legible(size):
    img = np.zeros((size[1], size[0], 3), np.uint8)
    m = text_metrics(img)
    (_, th), base = cv2.getTextSize("disgust", cv2.FONT_HERSHEY_SIMPLEX, m.scale, m.thick)
    assert th >= 8 and m.row >= th + base  # no two rows overlap ('angr' over 'disg')
    assert m.width("surprise") < size[0] / 3


def test_closeup_panel_stays_in_the_frame_off_the_face_centre_and_off_the_tag():
    """A 256-px talking head whose box fills the frame (the case of the issue), with neutralize's thumbnail."""
    w = h = 256
    box = (20, 6, 236, 250)
    (panel,) = _panels(w, h, [_face(box, neutral=True)])
    assert 0 <= panel[0] and 0 <= panel[1] and panel[2] <= w and panel[3] <= h
    img = np.zeros((h, w, 3), np.uint8)
    tag = tag_rect(img, box, "#0", text_metrics(img))
    assert overlap(panel, tag) == 0
    core = (box[0] + 0.2 * 216, box[1] + 0.25 * 244, box[2] - 0.2 * 216, box[3] - 0.1 * 244)
    pa = (panel[2] - panel[0]) * (panel[3] - panel[1])
    assert overlap(panel, core) < 0.5 * pa  # mostly over hair/background, not the eyes and mouth


def test_small_face_panel_goes_beside_the_face():
    box = (600, 120, 640, 170)  # a 40-px face in a 1280x720 frame
    (panel,) = _panels(1280, 720, [_face(box)])
    assert panel[0] >= box[2] and overlap(panel, box) == 0


def test_face_at_the_right_edge_puts_the_panel_left():
    box = (1180, 300, 1278, 420)
    (panel,) = _panels(1280, 720, [_face(box)])
    assert panel[2] <= box[0] and overlap(panel, box) == 0


def test_two_faces_panels_do_not_overlap_each_other_or_the_faces():
    faces = [_face((150, 100, 330, 320), 0), _face((420, 90, 600, 310), 1)]
    panels = _panels(960, 540, faces)
    assert len(panels) == 2 and overlap(panels[0], panels[1]) == 0
    for p in panels:
        assert all(overlap(p, tuple(f.box)) == 0 for f in faces)


def test_tag_is_inside_the_frame_at_the_top_edge():
    img = np.zeros((256, 256, 3), np.uint8)
    r = tag_rect(img, (0, 0, 256, 256), "#12", text_metrics(img))
    assert r[0] >= 0 and r[1] >= 0 and r[2] <= 256 and r[3] <= 256


def test_place_panel_prefers_free_space_and_reports_inside_positions():
    x, y = place_panel((300, 200), (100, 50, 160, 120), (80, 60), [(100, 50, 160, 120)], [])
    assert (x, y) == (164, 50)


def test_default_annotator_draws_without_a_head_or_landmarks():
    f = _face((50, 50, 150, 170))
    f.emotions = None
    f.landmarks = np.full((5, 2), np.nan, np.float32)
    f.pose = np.full(3, np.nan, np.float32)
    p = _packet(320, 240, [f])
    out = default_annotator(neutralized=False, thumbnail=False).annotate(p.image, p)
    assert out.shape == (240, 320, 3) and not np.array_equal(out, p.image)


def test_a_small_picture_is_annotated_enlarged_so_that_its_overlay_can_be_read():
    """A face data set's 48-px picture was annotated at 48 px: the id tag and the panel covered the face, in
    letters a few pixels high. Under MIN_ANNOTATED_SIDE the frame is enlarged by a whole factor first, the faces'
    coordinates with it; the packet's own image and faces stay as they were; larger frames keep their size."""
    from realtime.annotators.base import MIN_ANNOTATED_SIDE

    def packet(side: int) -> FramePacket:
        img = np.full((side, side, 3), 90, np.uint8)
        s = side / 48
        f = Face(box=np.array([6, 4, 42, 46], np.float32) * s, score=0.9, track_id=0,
                 landmarks=np.array([[17, 20], [31, 20], [24, 28], [19, 36], [29, 36]], np.float32) * s,
                 emotions=np.array([0.05, 0.05, 0.05, 0.6, 0.15, 0.05, 0.05], np.float32), intensity=0.85,
                 pose=np.zeros(3, np.float32), crop_box=(0, 0, side))
        return FramePacket(index=0, pts=0, time_base=Fraction(1, 25), timestamp=0.0, image=img, faces=[f])

    small = packet(48)
    box = small.faces[0].box.copy()
    out = default_annotator()(small.image, small)
    k = -(-MIN_ANNOTATED_SIDE // 48)
    assert out.shape == (48 * k, 48 * k, 3) and small.annotated is out
    assert small.image.shape == (48, 48, 3) and np.array_equal(small.faces[0].box, box)
    big = packet(48 * k)  # the same scene drawn at that size: the same overlay
    ref = default_annotator()(big.image, big)
    assert np.mean(np.abs(out.astype(int) - ref.astype(int)) > 40) < 0.02
    assert (np.abs(out.astype(int) - 90) > 40).mean() > 0.05  # something was drawn
    frame = packet(480)
    assert default_annotator()(frame.image, frame).shape == (480, 480, 3)


def test_a_small_face_in_a_large_frame_keeps_its_eyes_visible():
    """Probe finding: marks were sized by the frame alone: a 105-px face in a 4K frame had 8-px box lines and
    20-px landmark dots that hid its eyes. Now a face's strokes are at most a 60th of its width: the dots drawn on
    the small face cover a small share of the area between its eyes, and a large face keeps the frame's size."""
    from realtime.annotators import LandmarkAnnotator

    def dot_pixels(w, h, box):
        p = _packet(w, h, [_face(box)])
        out = LandmarkAnnotator().annotate(p.image.copy(), p)
        return int((np.any(out != p.image, axis=2)).sum())

    small = dot_pixels(3840, 2160, (1800, 1000, 1905, 1130))  # 105-px face
    assert small <= 400, small  # five dots of radius 3, about 57 px each (radius 9 before: about 1,400 in all)
    big = dot_pixels(3840, 2160, (1000, 500, 2000, 1700))  # a close-up keeps the frame's stroke
    assert big >= 1000, big
