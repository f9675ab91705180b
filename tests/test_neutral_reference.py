"""The track's own neutral face (:mod:`realtime.neutral_reference`): a strongly expressive face gets the neutral
face of its track's least expressive earlier frame in a similar pose, aligned by its landmarks. Made-up faces
here (no ../shared, no model); the effect on real clips is checked in ``tests/test_expression_quality.py``."""
from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
import pytest

from realtime.neutral_reference import NeutralReference, crop_landmarks
from realtime.types import Face, FramePacket

S = 128  # neutral face size
LM = np.array([[44, 52], [84, 52], [64, 72], [48, 92], [80, 92]], np.float32)  # in a crop at (0, 0), side S


def _pattern(seed: int) -> np.ndarray:
    """(S, S, 3) uint8 RGB: a smooth random texture (so an alignment error shows)."""
    rng = np.random.default_rng(seed)
    x = cv2.resize(rng.uniform(0, 255, (16, 16, 3)).astype(np.float32), (S, S), interpolation=cv2.INTER_CUBIC)
    return np.clip(x, 0, 255).astype(np.uint8)


def _face(neutral, intensity, shift=(0.0, 0.0), track=1, yaw_deg=0.0, side=float(S), scale=1.0) -> Face:
    """A face whose crop is at (0, 0) with ``side`` pixels; its landmarks are LM moved by ``shift`` (crop pixels
    at size S) and scaled by ``scale`` about the crop centre."""
    k = side / S
    lm = ((LM - S / 2) * scale + S / 2 + np.array(shift, np.float32)) * k
    box = np.array([24, 24, 104, 116], np.float32) * k
    return Face(box=box, score=0.9, landmarks=lm.astype(np.float32), track_id=track, intensity=float(intensity),
                pose=np.array([0.0, math.radians(yaw_deg), 0.0], np.float32), neutral=neutral.copy(),
                crop_box=(0.0, 0.0, side))


def _packet(i: int, *faces: Face, t=None) -> FramePacket:
    return FramePacket(index=i, pts=i, time_base=Fraction(1, 30), timestamp=i / 30 if t is None else t,
                       image=np.zeros((4, 4, 3), np.uint8), faces=list(faces))


def test_an_expressive_face_gets_its_tracks_earlier_neutral_face_aligned_to_it():
    ref, own = _pattern(0), _pattern(1)
    nr = NeutralReference(match_colour=False)
    f0 = _face(ref, 0.05)
    nr(_packet(0, f0))
    assert f0.neutral_from == -1 and np.array_equal(f0.neutral, ref)  # the first frame keeps its own
    f1 = _face(own, 0.9, shift=(6.0, -4.0))
    nr(_packet(1, f1))
    assert f1.neutral_from == 0
    # inside the face: the reference moved with the landmarks; the crop's corner: this frame's own neutral face
    expect = cv2.warpAffine(ref, np.float32([[1, 0, 6], [0, 1, -4]]), (S, S), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    centre = (slice(50, 90), slice(45, 85))
    assert np.abs(f1.neutral[centre] - expect[centre]).mean() < 2.0
    assert np.abs(f1.neutral[centre].astype(np.float64) - own[centre]).mean() > 20.0
    assert np.array_equal(f1.neutral[:6, :6], own[:6, :6])


def test_scale_follows_the_landmarks():
    ref = _pattern(2)
    nr = NeutralReference(match_colour=False)
    nr(_packet(0, _face(ref, 0.0)))
    f = _face(_pattern(3), 0.8, scale=1.2)
    nr(_packet(1, f))
    m = cv2.getRotationMatrix2D((S / 2, S / 2), 0, 1.2)
    expect = cv2.warpAffine(ref, m, (S, S), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    centre = (slice(55, 85), slice(50, 80))
    assert f.neutral_from == 0
    assert np.abs(f.neutral[centre].astype(np.float64) - expect[centre]).mean() < 3.0


def test_a_face_not_much_more_expressive_than_the_reference_keeps_its_own():
    nr = NeutralReference(gap=0.2)
    nr(_packet(0, _face(_pattern(0), 0.3)))
    own = _pattern(1)
    f = _face(own, 0.45)  # 0.15 above the reference: within the gap
    nr(_packet(1, f))
    assert f.neutral_from == -1 and np.array_equal(f.neutral, own)
    g = _face(own, 0.55)  # 0.25 above it
    nr(_packet(2, g))
    assert g.neutral_from == 0


def test_the_reference_is_the_least_expressive_frame_in_a_near_pose_and_tracks_do_not_mix():
    nr = NeutralReference(max_pose_deg=15.0, bin_deg=10.0)
    nr(_packet(0, _face(_pattern(0), 0.4)))
    nr(_packet(1, _face(_pattern(1), 0.1)))  # more neutral: replaces frame 0 in the same pose bin
    nr(_packet(2, _face(_pattern(2), 0.3, yaw_deg=35.0)))  # another pose bin
    f = _face(_pattern(3), 0.9)
    turned = _face(_pattern(4), 0.9, yaw_deg=32.0)
    other = _face(_pattern(5), 0.9, track=2)
    far = _face(_pattern(6), 0.95, yaw_deg=-60.0)
    nr(_packet(3, f))
    nr(_packet(4, turned))
    nr(_packet(5, other))
    nr(_packet(6, far))
    assert f.neutral_from == 1
    assert turned.neutral_from == 2  # frame 1 is 32 degrees away; frame 2 is 3 degrees away
    assert other.neutral_from == -1  # another person's track has no bank yet
    assert far.neutral_from == -1  # no reference within 15 degrees


def test_small_crops_do_not_enter_the_bank_and_unseen_tracks_are_forgotten():
    nr = NeutralReference(min_size=0.8, forget_s=2.0)
    nr(_packet(0, _face(_pattern(0), 0.5, side=200.0)))
    nr(_packet(1, _face(_pattern(1), 0.0, side=100.0)))  # more neutral, but far away (half the size): not banked
    f = _face(_pattern(2), 0.95, side=200.0)
    nr(_packet(2, f))
    assert f.neutral_from == 0
    nr(_packet(3, _face(_pattern(3), 0.5, track=7), t=10.0))  # track 1 unseen for > 2 s: forgotten
    g = _face(_pattern(4), 0.95, side=200.0)
    nr(_packet(4, g, t=10.1))
    assert g.neutral_from == -1


def test_hysteresis_keeps_the_choice_steady():
    nr = NeutralReference(gap=0.2, hysteresis=0.1, bin_deg=10.0, max_pose_deg=15.0)
    nr(_packet(0, _face(_pattern(0), 0.10)))
    nr(_packet(1, _face(_pattern(1), 0.08, yaw_deg=20.0)))  # two bins away: a little more neutral
    used = []
    # the intensity hovers around reference + gap, the head turns between the two bins
    for i, (inten, yaw) in enumerate([(0.5, 0.0), (0.28, 4.0), (0.33, 6.0), (0.5, 9.0), (0.5, 11.0), (0.18, 12.0)],
                                     start=2):
        f = _face(_pattern(i), inten, yaw_deg=yaw)
        nr(_packet(i, f))
        used.append(f.neutral_from)
    # starts at 0.5 (0.4 above frame 0), keeps the reference down to 0.28 (> 0.2 - 0.1 above it), stays with
    # frame 0 once the head turns within 15 degrees of frame 1 (0.08 is within 0.1 of 0.10), lets go at 0.18
    assert used == [0, 0, 0, 0, 0, -1], used
    plain = NeutralReference(gap=0.2, hysteresis=0.0)
    plain(_packet(0, _face(_pattern(0), 0.10)))
    plain(_packet(1, _face(_pattern(1), 0.08, yaw_deg=20.0)))
    seen = []
    for i, (inten, yaw) in enumerate([(0.5, 0.0), (0.28, 4.0), (0.5, 6.0)], start=2):
        f = _face(_pattern(i), inten, yaw_deg=yaw)
        plain(_packet(i, f))
        seen.append(f.neutral_from)
    assert seen == [0, -1, 1], seen  # without hysteresis: off at 0.18 above, and a switch to frame 1


def test_every_bank_starts_over_at_a_scene_cut():
    nr = NeutralReference()
    nr(_packet(0, _face(_pattern(0), 0.0), _face(_pattern(1), 0.0, track=2)))
    f = _face(_pattern(2), 0.9)
    nr(_packet(1, f))
    assert f.neutral_from == 0
    cut = _packet(2, _face(_pattern(3), 0.9), _face(_pattern(4), 0.9, track=2))
    cut.scene_cut = True  # the same ids after a cut may be other people
    nr(cut)
    assert [g.neutral_from for g in cut.faces] == [-1, -1]
    g = _face(_pattern(5), 0.95)
    nr(_packet(3, g))
    assert g.neutral_from == -1  # frame 2 (0.9) is not 0.2 below 0.95: no earlier reference survived the cut


def _by_seed_parity(images: np.ndarray) -> np.ndarray:
    """A stand-in identity code: the sign of the first pixel's red channel minus 128 (the made-up "person")."""
    sign = np.where(np.asarray(images)[:, 0, 0, 0].astype(np.int32) >= 128, 1.0, -1.0)
    return np.stack([sign, np.zeros_like(sign)], 1).astype(np.float32)


def _person(seed: int, bright: bool) -> np.ndarray:
    img = _pattern(seed)
    img[0, 0, 0] = 200 if bright else 50
    return img


def test_another_persons_neutral_face_is_refused_and_leaves_the_bank():
    """The same track passes from one person to another without a scene cut (two people crossing, a dissolve):
    the first person's banked neutral face is not painted on the second; refused ``drop_after`` times in a row it
    leaves the bank, which refills with the second person. A single refusal does not drop an entry."""
    calls = []

    def identify(images):
        calls.append(len(images))
        return _by_seed_parity(images)

    nr = NeutralReference(identify=identify, match_colour=False, drop_after=2)
    nr(_packet(0, _face(_person(0, True), 0.0)))
    same = _face(_person(1, True), 0.9)
    nr(_packet(1, same))
    assert same.neutral_from == 0  # the same person: used
    other = _face(_person(2, False), 0.9)
    nr(_packet(2, other))
    assert other.neutral_from == -1 and nr.refused == 1  # another person: refused once, the entry kept
    again = _face(_person(3, True), 0.9)
    nr(_packet(3, again))
    assert again.neutral_from == 0  # the first person again: used, and the count of refusals starts over
    seen = []
    for i in (4, 5):  # the second person for good: refused twice in a row, the entry leaves the bank
        g = _face(_person(i, False), 0.9)
        nr(_packet(i, g))
        seen.append(g.neutral_from)
    assert seen == [-1, -1] and nr.refused == 3
    nr(_packet(6, _face(_person(6, False), 0.1)))  # the second person at rest: banked (the track started over)
    later = _face(_person(7, False), 0.9)
    nr(_packet(7, later))
    assert later.neutral_from == 6
    d = nr.describe()
    assert d["identity_check"] is True and d["min_identity"] == 0.9 and d["references_refused"] == 3
    # codes only when a reference would be used, an entry's once: entry 0 + own, then own (x4), entry 6 + own
    assert calls == [2, 1, 1, 1, 1, 2]
    plain = NeutralReference(match_colour=False)  # no identify function: no check
    plain(_packet(0, _face(_person(0, True), 0.0)))
    g = _face(_person(2, False), 0.9)
    plain(_packet(1, g))
    assert g.neutral_from == 0 and plain.describe()["identity_check"] is False


def test_a_banked_neutral_face_takes_its_resting_frames_own_detail():
    """A banked neutral face keeps the generator's picture below ``detail_px`` and takes the detail above from
    its own frame's input crop (experiment 35); the identity check still reads the generator's face."""
    rng = np.random.default_rng(7)
    fine = rng.uniform(0, 255, (S, S, 3)).astype(np.uint8)  # the frame: fine texture (BGR)
    smooth = cv2.GaussianBlur(_pattern(0), (0, 0), 4.0)  # the generator's neutral face: smooth (RGB)
    seen = []

    def identify(images):
        seen.append(np.asarray(images).copy())
        return np.ones((len(images), 2), np.float32) / np.sqrt(2)

    def run(px):
        nr = NeutralReference(match_colour=False, detail_px=px, identify=identify)
        rest = FramePacket(index=0, pts=0, time_base=Fraction(1, 30), timestamp=0.0, image=fine,
                           faces=[_face(smooth, 0.0)])
        nr(rest)
        f = _face(_pattern(1), 0.9)
        nr(_packet(1, f))
        assert f.neutral_from == 0
        return f.neutral[50:90, 45:85].astype(np.float32)

    def high(x):
        return x - cv2.GaussianBlur(x, (0, 0), 2.0)

    with_detail, without = run(56), run(0)
    frame_high = high(fine[..., ::-1].astype(np.float32))[50:90, 45:85]
    corr = np.corrcoef(high(with_detail).ravel(), frame_high.ravel())[0, 1]
    # the generator's face alone is smooth; with the transfer the frame's own texture is there
    assert np.abs(high(with_detail)).mean() > 3 * np.abs(high(without)).mean() and corr > 0.8, \
        (np.abs(high(with_detail)).mean(), np.abs(high(without)).mean(), corr)
    # the low frequencies stay the generator's
    low = cv2.GaussianBlur(with_detail, (0, 0), 6.0) - cv2.GaussianBlur(smooth[50:90, 45:85].astype(np.float32),
                                                                         (0, 0), 6.0)
    assert np.abs(low[10:30, 10:30]).mean() < 12.0
    # the identity check read the generator's face (the entry's code), not the detailed one
    assert any(np.array_equal(batch[0], smooth) for batch in seen)


def test_the_colour_is_matched_to_this_frames_light():
    ref = np.full((S, S, 3), 100, np.uint8)
    own = np.full((S, S, 3), 140, np.uint8)
    nr = NeutralReference(match_colour=True)
    nr(_packet(0, _face(ref, 0.0)))
    f = _face(own, 0.9)
    nr(_packet(1, f))
    assert f.neutral_from == 0
    assert abs(float(f.neutral[64, 64].mean()) - 140) <= 2


def test_faces_without_a_neutral_face_or_track_are_left_alone_and_settings_are_checked():
    nr = NeutralReference()
    a = _face(_pattern(0), 0.0)
    a.neutral = None
    b = _face(_pattern(1), 0.0, track=-1)
    nr(_packet(0, a, b))
    c = _face(_pattern(2), 0.9, track=-1)  # an untracked face is never banked, so never given another's face
    nr(_packet(1, c))
    assert a.neutral is None and b.neutral_from == -1 and c.neutral_from == -1
    assert crop_landmarks(_face(_pattern(0), 0.0, side=256.0), S).round(3).tolist() == LM.tolist()
    for bad in ({"gap": 1.0}, {"gap": -0.1}, {"bin_deg": 0}, {"max_pose_deg": -1}, {"min_size": 1.5},
                {"gap": 0.1, "hysteresis": 0.2}, {"min_identity": 1.5},
                {"drop_after": 0}, {"detail_px": -1}):
        with pytest.raises(ValueError):
            NeutralReference(**bad)
    assert NeutralReference().describe()["max_pose_deg"] == 15.0


def _first_pass(frames, **kw) -> NeutralReference:
    """A reference run over ``frames`` (lists of faces per frame, index = position) keeping its banks."""
    nr = NeutralReference(match_colour=False, **kw)
    nr.keep_banks = True
    for i, faces in enumerate(frames):
        p = _packet(i, *faces)
        p.scene_cut = any(getattr(f, "_cut", False) for f in faces)
        nr(p)
    return nr


def test_a_second_pass_seeded_with_the_first_gives_early_faces_a_later_resting_frames_neutral_face():
    """The look-ahead (``banks`` / ``seed``): a clip that opens with a grin and rests only at its end. Causally the
    grin keeps its own neutral face; seeded from a first pass over the same frames it takes the resting frame's."""
    clip = lambda: [[_face(_pattern(i), 0.9)] for i in range(4)] + [[_face(_pattern(4), 0.05)]]  # noqa: E731
    causal = NeutralReference(match_colour=False)
    first = [f for faces in clip() for f in faces]
    for i, f in enumerate(first):
        causal(_packet(i, f))
    assert [f.neutral_from for f in first] == [-1, -1, -1, -1, -1]
    banks = _first_pass(clip()).banks()
    assert list(banks) == [(0, 1)] and len(banks[(0, 1)].bank) == 1
    second = NeutralReference(match_colour=False)
    second.seed(banks)
    again = [f for faces in clip() for f in faces]
    for i, f in enumerate(again):
        second(_packet(i, f))
    # every grin takes frame 4's neutral face; frame 4 itself is the resting frame and keeps its own
    assert [f.neutral_from for f in again] == [4, 4, 4, 4, -1]
    assert np.abs(again[0].neutral[50:90, 45:85].astype(np.float64) - _pattern(4)[50:90, 45:85]).mean() < 2.0
    assert second.describe()["lookahead_tracks_seeded"] == 1
    with pytest.raises(RuntimeError):  # seeding once the run has begun would mix two passes
        second.seed(banks)


def test_seeded_banks_stay_in_their_shot_and_ended_tracks_are_kept_only_when_asked():
    """Banks are keyed by (shot, track id): after a scene cut the same id may be someone else, so the second
    shot's faces never take the first shot's resting face. Without ``keep_banks`` (every live run) the banks of
    ended tracks are let go at once."""
    cut = _face(_pattern(2), 0.9)
    cut._cut = True
    frames = [[_face(_pattern(0), 0.9)], [_face(_pattern(1), 0.0)], [cut], [_face(_pattern(3), 0.9)],
              [_face(_pattern(4), 0.3)]]
    first = _first_pass(frames)
    banks = first.banks()
    assert sorted(banks) == [(0, 1), (1, 1)]
    assert [e.index for e in banks[(0, 1)].bank.values()] == [1] and min(
        e.intensity for e in banks[(1, 1)].bank.values()) == 0.3
    second = NeutralReference(match_colour=False)
    second.seed(banks)
    faces = [_face(_pattern(0), 0.9), _face(_pattern(1), 0.0), _face(_pattern(2), 0.9), _face(_pattern(3), 0.9)]
    for i, f in enumerate(faces):
        p = _packet(i, f)
        p.scene_cut = i == 2
        second(p)
    assert [f.neutral_from for f in faces] == [1, -1, 4, 4]  # shot 2 uses its own frame 4, never frame 1
    plain = NeutralReference(match_colour=False)
    for i, faces_i in enumerate(frames):
        p = _packet(i, *faces_i)
        p.scene_cut = i == 2
        plain(p)
    assert sorted(plain.banks()) == [(1, 1)]  # only the live track: shot 1's bank went with the cut


def test_a_bank_only_first_pass_makes_neutral_faces_for_the_frames_it_banks_alone():
    """The look-ahead's first pass analyses without neutral faces: with ``make_neutral`` the reference banks as
    usual, makes a neutral face only when a frame enters the bank, and never uses a reference. Its banks seed a
    second pass exactly as a pass with every neutral face would."""
    made = []

    def make(packet, face):
        made.append(packet.index)
        return _pattern(packet.index)

    intensities = [0.9, 0.5, 0.95, 0.4, 0.9, 0.1, 0.9]
    nr = NeutralReference(match_colour=False)
    nr.keep_banks, nr.make_neutral = True, make
    faces = []
    for i, v in enumerate(intensities):
        f = _face(_pattern(i), v)
        f.neutral = None
        nr(_packet(i, f))
        faces.append(f)
    assert made == [0, 1, 3, 5]  # each new least expressive frame, no other
    assert all(f.neutral is None and f.neutral_from == -1 for f in faces)  # nothing used, nothing painted
    full = _first_pass([[_face(_pattern(i), v)] for i, v in enumerate(intensities)])
    banks, full_banks = nr.banks(), full.banks()
    assert [e.index for e in banks[(0, 1)].bank.values()] == [e.index for e in full_banks[(0, 1)].bank.values()] == [5]
    assert np.array_equal(banks[(0, 1)].bank[(0, 0, True)].neutral, full_banks[(0, 1)].bank[(0, 0, True)].neutral)
