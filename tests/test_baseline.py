"""Person-normalized expression (realtime.baseline) on synthetic tracks; the real-clip check is in
test_expression_quality.py."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from realtime.baseline import NeutralBaseline
from realtime.types import EMOTIONS, Face, FramePacket


def _packet(i: int, t: float, faces):
    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=t,
                       image=np.zeros((8, 8, 3), np.uint8), faces=faces)


def _face(tid: int, intensity: float, emo: np.ndarray, code: np.ndarray) -> Face:
    return Face(box=np.array([0, 0, 4, 4], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                track_id=tid, intensity=intensity, emotions=emo, code=code)


def _emotions(neutral: float, other: str = "happy") -> np.ndarray:
    e = np.zeros(len(EMOTIONS), np.float32)
    e[EMOTIONS.index("neutral")] = neutral
    e[EMOTIONS.index(other)] = 1 - neutral
    return e


def test_rest_then_expression_relative_to_the_persons_own_neutral():
    # a person whose resting face reads 0.3 (a "sad-looking" rest), then smiles (0.9)
    bl = NeutralBaseline(warmup_frames=15, warmup_s=1.0)
    rng = np.random.default_rng(0)
    rest_code = rng.normal(size=16).astype(np.float32)
    smile_code = rest_code + 1.0
    out = []
    for i in range(125):  # 5 s at 25 fps: 3 s rest, 2 s smile
        t = i / 25
        smiling = t >= 3.0
        f = _face(0, 0.9 if smiling else 0.3 + 0.01 * rng.normal(),
                  _emotions(0.1 if smiling else 0.7, "happy" if smiling else "sad"),
                  smile_code if smiling else rest_code)
        bl(_packet(i, t, [f]))
        out.append(f)
    # warm-up: nothing before 15 frames / 1 s
    assert not out[10].baseline_ready and np.isnan(out[10].rel_intensity) and out[10].rel_emotions is None
    assert out[30].baseline_ready
    rest = [f.rel_intensity for f in out[30:75]]
    smile = [f.rel_intensity for f in out[100:]]
    assert max(rest) < 0.05, rest
    assert min(smile) > 0.8, smile  # (0.9 - 0.3) / (1 - 0.3) = 0.857
    # at rest the person's "sad" is their baseline, not an emotion; the smile is
    assert abs(out[60].rel_emotions[EMOTIONS.index("sad")]) < 0.05
    assert out[110].rel_emotions[EMOTIONS.index("happy")] > 0.8
    assert out[60].rel_code_dist < 0.05 < 0.9 < out[110].rel_code_dist


def test_two_people_have_separate_neutrals_and_tracks_are_forgotten():
    bl = NeutralBaseline(warmup_frames=5, warmup_s=0.1, forget_s=2.0, max_neutral=None)  # a rest of 0.6 uncapped
    code = np.zeros(4, np.float32)
    for i in range(50):
        t = i / 25
        a = _face(0, 0.1, _emotions(0.9), code)
        b = _face(1, 0.6, _emotions(0.4), code)
        bl(_packet(i, t, [a, b]))
    assert a.rel_intensity == pytest.approx(0.0, abs=1e-6) and b.rel_intensity == pytest.approx(0.0, abs=1e-6)
    assert bl.neutral_of(0) == pytest.approx(0.1) and bl.neutral_of(1) == pytest.approx(0.6)
    # track 1 leaves; 3 s later it is forgotten and starts a new warm-up
    for i in range(50, 130):
        bl(_packet(i, i / 25, [_face(0, 0.1, _emotions(0.9), code)]))
    assert bl.neutral_of(1) is None
    b = _face(1, 0.6, _emotions(0.4), code)
    bl(_packet(130, 130 / 25, [b]))
    assert not b.baseline_ready


def test_a_face_expressive_throughout_is_not_its_own_neutral():
    """Probe finding: a face expressive through the whole clip (crying, shouting) had its own expression as its
    neutral, so its rel_* read as a resting face's (rel_intensity medians 0.09-0.17 on four such shared clips). A
    person's neutral intensity is now at most MAX_NEUTRAL (0.4: people talking with a neutral face rest at
    0.13-0.32), its emotions mixed with "neutral" to that intensity; a resting person under the cap is unchanged."""
    from realtime.baseline import MAX_NEUTRAL

    code = np.zeros(4, np.float32)
    for cap, want_rel, want_sad in ((MAX_NEUTRAL, (0.95 - 0.4) / 0.6, 0.95 - 0.95 * 0.4 / 0.95), (None, 0.0, 0.0)):
        bl = NeutralBaseline(warmup_frames=5, warmup_s=0.1, max_neutral=cap)
        for i in range(50):  # 2 s of crying: sad 0.95 throughout
            crying = _face(0, 0.95, _emotions(0.05, "sad"), code)
            resting = _face(1, 0.3, _emotions(0.7, "sad"), code)  # a sad-looking rest, under the cap
            bl(_packet(i, i / 25, [crying, resting]))
        assert crying.rel_intensity == pytest.approx(want_rel, abs=1e-5), cap
        assert crying.rel_emotions[EMOTIONS.index("sad")] == pytest.approx(want_sad, abs=1e-5)
        assert bl.neutral_of(0) == pytest.approx(0.4 if cap else 0.95)
        assert resting.rel_intensity == pytest.approx(0.0, abs=1e-6) and bl.neutral_of(1) == pytest.approx(0.3)
        assert abs(resting.rel_emotions[EMOTIONS.index("sad")]) < 1e-6
    assert NeutralBaseline().describe()["max_neutral"] == MAX_NEUTRAL
    with pytest.raises(ValueError):
        NeutralBaseline(max_neutral=1.0)



def test_a_track_measured_against_the_cap_is_counted_and_said_once(caplog):
    """Probe finding: a resting face that reads expressive (sunglasses, a hand over the mouth, a shadow over half
    the face) hits the cap too, and its rel_intensity then reads 'expressive' on most frames: nothing told the user.
    Each track whose neutral goes above the cap is said once (a warning naming the face) and counted in the
    sidecar's person_baseline; a track under the cap is neither; a look-ahead's first reading stays silent."""
    code = np.zeros(4, np.float32)
    bl = NeutralBaseline(warmup_frames=5, warmup_s=0.1)
    with caplog.at_level("WARNING", logger="realtime.baseline"):
        for i in range(50):
            bl(_packet(i, i / 25, [_face(0, 0.3, _emotions(0.7, "sad"), code),
                                   _face(3, 0.6, _emotions(0.4, "sad"), code)]))
    said = [r.getMessage() for r in caplog.records if r.name == "realtime.baseline"]
    assert len(said) == 1 and said[0].startswith("face #3 ") and "0.600" in said[0] and "0.40" in said[0], said
    assert bl.describe()["tracks_at_cap"] == 1 and bl.capped_tracks() == [3]  # (the app names the face)
    assert "tracks_at_cap" not in NeutralBaseline().describe()  # (absent where none was: as before it existed)
    assert "tracks_at_cap" in NeutralBaseline.RUN_COUNTS  # a run's own count: not a setting (Parquet, batches)
    caplog.clear()
    first = NeutralBaseline(warmup_frames=5, warmup_s=0.1)
    first.record = True
    with caplog.at_level("WARNING", logger="realtime.baseline"):
        for i in range(50):
            first(_packet(i, i / 25, [_face(3, 0.6, _emotions(0.4, "sad"), code)]))
    assert not [r for r in caplog.records if r.name == "realtime.baseline"]
    assert first.describe()["tracks_at_cap"] == 1

def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        NeutralBaseline(quantile=0)
    with pytest.raises(ValueError):
        NeutralBaseline(warmup_frames=10, window=5)


def _grin_then_rest(bl: NeutralBaseline, frames: int = 125, grin_s: float = 2.0, tid: int = 0):
    """A person who grins (0.9) for ``grin_s`` seconds, then rests (0.2), at 25 fps; the faces, in order."""
    out = []
    for i in range(frames):
        t = i / 25
        grin = t < grin_s
        f = _face(tid, 0.9 if grin else 0.2, _emotions(0.1 if grin else 0.8),
                  np.full(8, 1.0 if grin else 0.0, np.float32))
        bl(_packet(i, t, [f]))
        out.append(f)
    return out


def test_a_baseline_seeded_from_a_first_reading_has_no_warm_up_and_sees_the_later_rest():
    """Read ahead (``record`` / ``histories`` / ``seed``): a face expressive from its first frame is measured
    against the person's later rest; causally it is its own neutral until the rest outnumbers it."""
    causal = _grin_then_rest(NeutralBaseline(max_neutral=None))
    first = NeutralBaseline(max_neutral=None)
    first.record = True
    _grin_then_rest(first)
    second = NeutralBaseline(max_neutral=None)
    second.seed(first.histories())
    ahead = _grin_then_rest(second)
    assert not causal[5].baseline_ready and ahead[0].baseline_ready  # no warm-up
    assert max(f.rel_intensity for f in causal[25:50]) < 0.05  # the grin is the causal neutral (uncapped)
    assert min(f.rel_intensity for f in ahead[:50]) > 0.8  # (0.9 - 0.2) / 0.8 = 0.875
    assert ahead[10].rel_emotions[EMOTIONS.index("happy")] > 0.6 and ahead[10].rel_code_dist > 0.9
    assert max(f.rel_intensity for f in ahead[60:]) < 0.05 and ahead[100].rel_code_dist < 0.01
    assert second.describe()["lookahead_tracks_seeded"] == 1 and "lookahead_tracks_seeded" not in first.describe()
    with pytest.raises(RuntimeError):  # only before the first frame
        second.seed(first.histories())


def test_a_seeded_track_joins_the_running_estimate_once_it_has_as_many_frames_of_its_own():
    """The record holds a track's first ``window`` frames; from then on a seeded track's neutral is the running
    one, which at that moment holds the same frames: the two readings agree from there on."""
    first = NeutralBaseline(window=40)
    first.record = True
    _grin_then_rest(first, frames=100, grin_s=1.0)
    rec = first.histories()[(0, 0)]
    assert len(rec.intensity) == 40 and rec.codes[0].dtype == np.float16
    second = NeutralBaseline(window=40)
    second.seed(first.histories())
    causal = _grin_then_rest(NeutralBaseline(window=40), frames=100, grin_s=1.0)
    seeded = _grin_then_rest(second, frames=100, grin_s=1.0)
    assert seeded[0].baseline_ready and seeded[10].rel_intensity > 0.8 and not causal[20].baseline_ready
    for a, b in zip(causal[40:], seeded[40:], strict=True):
        assert a.rel_intensity == pytest.approx(b.rel_intensity, abs=1e-6)
    assert second.neutral_of(0) == pytest.approx(0.2)


def test_the_record_is_keyed_by_each_history_of_an_id_and_bounded():
    """An id forgotten and seen again begins a second history: it is recorded and seeded apart. A track too
    short for the warm-up gets no neutral read ahead either, and ``max_recorded`` bounds the record."""
    code = np.zeros(4, np.float32)
    first = NeutralBaseline(warmup_frames=5, warmup_s=0.1, forget_s=1.0, max_neutral=None)
    first.record = True
    for i in range(20):  # id 0 grins, then leaves for 2 s and comes back at rest
        first(_packet(i, i / 25, [_face(0, 0.9, _emotions(0.1), code)]))
    first(_packet(60, 60 / 25, []))  # a frame without a face: id 0 is forgotten
    for i in range(70, 90):
        first(_packet(i, i / 25, [_face(0, 0.2, _emotions(0.8), code)]))
    first(_packet(90, 90 / 25, [_face(1, 0.5, _emotions(0.5), code)]))  # one frame of id 1
    h = first.histories()
    assert sorted(h) == [(0, 0), (0, 1), (1, 0)] and len(h[(0, 0)].intensity) == 20
    second = NeutralBaseline(warmup_frames=5, warmup_s=0.1, forget_s=1.0, max_neutral=None)
    second.seed(h)
    f0 = _face(0, 0.9, _emotions(0.1), code)
    second(_packet(0, 0.0, [f0]))
    assert f0.baseline_ready and f0.rel_intensity == pytest.approx(0.0)  # its first history was all grin
    f1 = _face(1, 0.5, _emotions(0.5), code)
    second(_packet(1, 0.04, [f1]))
    assert not f1.baseline_ready  # one frame: too short for a neutral, read ahead or not
    small = NeutralBaseline()
    small.record, small.max_recorded = True, 30
    _grin_then_rest(small, frames=60)
    assert sum(len(r.intensity) for r in small.histories().values()) == 30


def _rest_then_smile(fps: float, seconds: float, bl: NeutralBaseline, rest_s: float = 4.0,
                     jitter: float = 0.0) -> list:
    """One face at ``fps``: at rest (0.15) for ``rest_s`` seconds, then a mild smile (0.38) held to ``seconds``; the
    faces, in order (timestamps moved by up to ``jitter`` seconds, as a camera's)."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(int(round(seconds * fps))):
        t = i / fps + (rng.uniform(-jitter, jitter) if jitter and i else 0.0)
        level = 0.15 if t < rest_s else 0.38
        f = _face(0, level, _emotions(1 - level), np.full(8, level, np.float32))
        bl(_packet(i, t, [f]))
        out.append(f)
    return out


def test_the_same_face_reads_the_same_at_any_frame_rate():
    """Probe finding: the history window and the warm-up counted frames, so rel_* depended on the frame rate: a
    smile held after 4 s at rest read 0.271 at 30 fps for its whole 16 s, but at 240 fps (900 frames: 3.75 s) fell
    to 0.069 3 s into it and to 0 from 8 s, the held smile taken for the person's neutral. The history is now the
    last window_s seconds, its frames sampled to at most max_rate a second: 30 and 240 fps read the same."""
    at = [round(0.25 * k, 2) for k in range(4, 96)]  # every 0.25 s from 1 s to 23.75 s: a 20-s held smile
    reads = {}
    for fps in (30, 240):
        faces = _rest_then_smile(fps, 24.0, NeutralBaseline())
        assert all(f.baseline_ready for f in faces[fps:]), fps
        reads[fps] = [(i / fps, f.rel_intensity, f.rel_emotions[EMOTIONS.index("happy")])
                      for i, f in enumerate(faces) if f.baseline_ready]
    # at each time, 240 fps reads what 30 fps reads at that time or within 0.2 s of it: the history's frames are
    # 1/30 s apart at both rates but not at the same instants, so where the neutral jumps (the rest's frames
    # falling under the 20 % quantile, near 20 s) it jumps within a few frames of 30 fps
    for s in at:
        near = [r for r in reads[30] if abs(r[0] - s) <= 0.2]
        here = min(reads[240], key=lambda r: abs(r[0] - s))
        assert min(abs(here[1] - r[1]) for r in near) < 0.01, (s, here, near)
        assert min(abs(here[2] - r[2]) for r in near) < 0.01, (s, here, near)
    same = [abs(a[1] - b[1]) < 1e-3 for a in reads[30] for b in [min(reads[240], key=lambda r: abs(r[0] - a[0]))]]
    assert np.mean(same) > 0.98  # and at almost every time the same value
    smile = [r[1] for r in reads[240] if 4.5 <= r[0] <= 19.5]
    assert min(smile) == pytest.approx((0.38 - 0.15) / 0.85, abs=0.01), min(smile)  # 0.271, as at 30 fps


def test_a_low_frame_rate_track_is_ready_after_about_a_second():
    """Probe finding: the warm-up needed 15 frames, 3 s at 5 fps (a real 5-fps clip was ready on 65 % of its frames
    against 87.5 %). It is now 1 s at any rate, with at least 5 frames."""
    for fps in (5, 10, 30, 240):
        faces = _rest_then_smile(fps, 3.0, NeutralBaseline())
        ready = next(i for i, f in enumerate(faces) if f.baseline_ready)
        assert ready / fps == pytest.approx(1.0, abs=1e-9), fps
        assert all(f.baseline_ready for f in faces[ready:])
    faces = _rest_then_smile(2, 5.0, NeutralBaseline())  # 2 fps: the 5-frame minimum decides (2 s)
    assert [f.baseline_ready for f in faces].index(True) == 4
    described = NeutralBaseline().describe()
    assert {k: described[k] for k in ("warmup_frames", "warmup_s", "window_s", "max_rate", "window")} == \
        {"warmup_frames": 5, "warmup_s": 1.0, "window_s": 30.0, "max_rate": 30.0, "window": 900}


def test_the_history_and_the_record_span_seconds_and_stay_bounded_at_a_high_frame_rate():
    """The history holds the last 30 s at any rate, at most 30 frames a second (every frame at 30 fps, jittered
    as a camera's or not: 900 frames; one in eight at 240 fps), and the look-ahead's record is a track's first 30 s
    (it was its first 900 frames: 3.75 s at 240 fps); a seeded track joins the running estimate after them."""
    for fps, jitter in ((30, 0.0), (30, 0.008), (240, 0.0), (10, 0.0)):
        first = NeutralBaseline(max_neutral=None)
        first.record = True
        causal = _rest_then_smile(fps, 40.0, first, rest_s=2.0, jitter=jitter)
        rec = first.histories()[(0, 0)]
        assert len(rec.intensity) == min(900, 30 * fps) and rec.t1 - rec.t0 == pytest.approx(30.0 - 1 / fps, abs=0.06)
        assert len(first._h[0].intensity) == min(900, 30 * fps)  # memory bounded
        second = NeutralBaseline(max_neutral=None)
        second.seed(first.histories())
        seeded = _rest_then_smile(fps, 40.0, second, rest_s=2.0, jitter=jitter)
        assert seeded[0].baseline_ready and not causal[0].baseline_ready
        late = int(31 * fps)
        for a, b in zip(causal[late:], seeded[late:], strict=True):
            assert a.rel_intensity == pytest.approx(b.rel_intensity, abs=1e-6)
    with pytest.raises(ValueError):
        NeutralBaseline(window_s=0)
    with pytest.raises(ValueError):
        NeutralBaseline(max_rate=0)
