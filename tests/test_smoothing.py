"""The One Euro filter over gaps: a step longer than the filter's typical one is smoothed as that many typical steps
(the old value fades as it would have, had the frames come), and a steady frame rate is filtered exactly as before."""
from __future__ import annotations

import math

import numpy as np
import pytest

from realtime.smoothing import OneEuroFilter, TrackSmoother


class _OldOneEuro:
    """The filter as it was before the gap rule (one ``1 / (1 + tau/dt)`` step whatever its length): the reference
    for a steady frame rate."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x = self._dx = self._t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t):
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.astype(np.float32)
        dt = float(t) - self._t
        if dt <= 0:
            return self._x.astype(np.float32)
        dx = (x - self._x) / dt
        a_d = self._alpha(np.asarray(self.d_cutoff), dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = float(t)
        return self._x.astype(np.float32)


def _signal(n: int, fps: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    ts = np.arange(n) / fps
    x = np.stack([np.sin(2 * math.pi * 0.7 * ts) + 0.1 * rng.standard_normal(n),
                  np.where(ts > n / fps / 2, 1.0, 0.0) + 0.05 * rng.standard_normal(n),
                  np.cumsum(rng.standard_normal(n)) * 0.05], axis=1)
    return ts, x


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_a_steady_frame_rate_is_filtered_exactly_as_before(fps):
    ts, x = _signal(3 * fps, fps)
    for params in TrackSmoother().params.values():
        new, old = OneEuroFilter(**params), _OldOneEuro(**params)
        for v, t in zip(x, ts, strict=True):
            assert np.array_equal(new(v, t), old(v, t))


def test_after_a_gap_the_old_value_fades_as_if_the_frames_had_come():
    """Zeros for 2 s at 30 fps, then 1.0 after a 0.9 s gap: 0.879 before (the old value kept 12 %), a first-order
    filter keeps about 0.35 %."""
    f, old = OneEuroFilter(min_cutoff=1.0, beta=0.3), _OldOneEuro(min_cutoff=1.0, beta=0.3)
    for i in range(61):
        f(np.array([0.0]), i / 30)
        old(np.array([0.0]), i / 30)
    t = 60 / 30 + 0.9
    assert float(f(np.array([1.0]), t)[0]) >= 0.97
    assert float(old(np.array([1.0]), t)[0]) < 0.9  # (the reference's finding)


def test_the_output_after_a_gap_is_continuous_in_the_gap_length():
    outs = []
    for gap in np.arange(1 / 30, 0.95, 0.01):
        f = OneEuroFilter(min_cutoff=1.5, beta=0.5)
        for i in range(31):
            f(np.array([0.0]), i / 30)
        outs.append(float(f(np.array([1.0]), 1.0 + gap)[0]))
    steps = np.diff(outs)
    assert np.all(steps >= -1e-6)  # a longer gap never keeps more of the old value
    assert np.all(np.diff(steps) <= 1e-6)  # and no jump: each 10 ms more changes the output less than the last
    assert outs[-1] > 0.99


def test_a_step_a_little_longer_than_the_typical_one_differs_little_from_before():
    """Jittery timestamps (a webcam): a step 10 % longer than the median one is near the old rule's."""
    f, old = OneEuroFilter(min_cutoff=1.0, beta=0.3), _OldOneEuro(min_cutoff=1.0, beta=0.3)
    for i in range(31):
        f(np.array([0.0]), i / 30)
        old(np.array([0.0]), i / 30)
    t = 1.0 + 1.1 / 30
    assert abs(float(f(np.array([1.0]), t)[0]) - float(old(np.array([1.0]), t)[0])) < 0.01  # (0.375, 0.368)


def test_a_track_smoother_output_after_a_gap_just_under_and_just_over_hold_s_differ_little():
    """After 0.99 s missing a track's filters are kept, after 1.01 s they start afresh (the new value passes): the
    two outputs differed by ~0.13 (the old value kept ~13 % over the long step); now they agree."""
    for name in TrackSmoother().params:
        outs = []
        for gap in (0.99, 1.01):
            s = TrackSmoother(hold_s=1.0)
            for i in range(61):
                s(0, name, np.zeros(3), i / 30)
            t = 2.0 + gap
            s.keep_only(set(), now=t - 1e-3)  # the frames without the face
            s.keep_only(set(), now=t)
            outs.append(s(0, name, np.ones(3), t))
        assert np.allclose(outs[1], 1.0)  # (a fresh start)
        assert float(np.abs(outs[0] - outs[1]).max()) < 0.03, name


def test_the_typical_step_follows_a_lasting_change_of_frame_rate():
    """At 15 fps after 30 fps, the filter settles on the new step: once its median is 1/15 s, each step is filtered
    as a fresh filter at 15 fps filters it."""
    f = OneEuroFilter(min_cutoff=1.0, beta=0.3)
    ref = _OldOneEuro(min_cutoff=1.0, beta=0.3)
    t = 0.0
    for _ in range(30):
        f(np.array([0.0]), t)
        t += 1 / 30
    ref(np.array([0.0]), t)
    f(np.array([0.0]), t)
    for k in range(1, 40):
        t += 1 / 15
        v = np.array([math.sin(k / 3)])
        a, b = f(v, t), ref(v, t)
    assert abs(float(a[0]) - float(b[0])) < 1e-3


# --- the pose's angles across ±π (a roll through 180°: an upside-down face) ---------------------------------------

def _angle_diff(a, b):
    """a − b wrapped into (−π, π] (radians)."""
    return math.pi - np.mod(math.pi - (np.asarray(a, np.float64) - np.asarray(b, np.float64)), 2 * math.pi)


def _in_range(v):
    """Within (−π, π] as a float32 output can be (float32's π is a little above π)."""
    v = np.asarray(v, np.float32)
    return bool(np.all((v >= -np.float32(math.pi)) & (v <= np.float32(math.pi))))


def test_the_probes_roll_through_180_degrees_reads_as_the_unwrapped_roll_would():
    """170, 175, 179, -179, -175, -170° read 170, 171, 172.7, -67.6, -143.7, -161.8° (the angles averaged as plain
    numbers); now as the unwrapped 170 ... 190° would, wrapped."""
    roll = np.array([170, 175, 179, -179, -175, -170, -168], np.float64)
    s, plain = TrackSmoother(), OneEuroFilter(**TrackSmoother().params["pose"])
    unwrapped = np.where(roll < 0, roll + 360, roll)
    for i, (r, u) in enumerate(zip(roll, unwrapped, strict=True)):
        out = s(0, "pose", np.radians([0.0, 0.0, r]).astype(np.float32), i / 30)
        ref = plain(np.radians([0.0, 0.0, u]), i / 30)
        assert _in_range(out)
        assert abs(math.degrees(float(_angle_diff(out[2], ref[2])))) < 1e-3, (i, np.degrees(out[2]), np.degrees(ref[2]))
        assert abs(math.degrees(float(_angle_diff(out[2], np.radians(r))))) < 10.0  # (the filter's lag: 9° at most)


@pytest.mark.parametrize("axis", [0, 2])
def test_a_pose_angle_turning_through_180_degrees_stays_near_the_raw_one_and_in_range(axis):
    """A roll (or pitch) turning at 1° a frame (30°/s at 30 fps) through ±180°, in radians as the pipeline gives it
    (float32, in (−π, π]): each smoothed value within a few degrees of the raw one (the filter's lag), never a value
    no frame had."""
    deg = 150.0 + np.arange(61)  # 150 ... 210°: through 180° at frame 30
    raw = np.radians((deg + 180.0) % 360.0 - 180.0)
    s = TrackSmoother()
    for i, r in enumerate(raw):
        pose = np.array([0.05, -0.1, 0.02], np.float64)
        pose[axis] = r
        out = s(3, "pose", pose.astype(np.float32), i / 30)
        assert _in_range(out)
        assert abs(math.degrees(float(_angle_diff(out[axis], r)))) < 5.0, (i, math.degrees(r), np.degrees(out))
        others = [k for k in range(3) if k != axis]
        assert np.allclose(out[others], pose[others], atol=1e-6)  # (the other angles, constant, are untouched)


def test_a_still_upside_down_face_jittering_about_180_degrees_reads_about_180():
    """Roll 180° ± 1.5° of noise, its sign flipping from frame to frame: the plain average read near 0°."""
    rng = np.random.default_rng(4)
    roll = np.radians(180.0 + 1.5 * rng.standard_normal(90))
    roll = np.where(roll > math.pi, roll - 2 * math.pi, roll)
    s = TrackSmoother()
    for i, r in enumerate(roll):
        out = s(0, "pose", np.array([0.0, 0.0, r], np.float32), i / 30)
        assert _in_range(out)
        assert abs(math.degrees(float(_angle_diff(out[2], math.pi)))) < 3.0, (i, np.degrees(out[2]))


@pytest.mark.parametrize("fps", [25, 30])
def test_a_pose_that_never_crosses_the_wrap_is_filtered_exactly_as_plain_numbers(fps):
    """The pose's filter (angles) gives the plain filter's output bit for bit where no angle crosses ±π: the test
    signal, and a roll from 150° to 179.9° and back."""
    ts, x = _signal(3 * fps, fps)
    near = np.radians(np.concatenate([np.linspace(150.0, 179.9, len(ts) // 2),
                                      np.linspace(179.9, 150.0, len(ts) - len(ts) // 2)]))
    for sig in (x, np.stack([x[:, 0], -near, near], axis=1)):
        s, plain = TrackSmoother(), OneEuroFilter(**TrackSmoother().params["pose"])
        for v, t in zip(sig.astype(np.float32), ts, strict=True):
            assert np.array_equal(s(0, "pose", v, t), plain(v, t))


def test_only_the_pose_is_filtered_as_angles_and_other_values_pass_as_plain_numbers():
    """The codes, intensities and probabilities are plain numbers (a code element may go beyond ±π), and a value
    beyond ±π given as a pose (not an angle as the pipeline gives it) is filtered as a plain number too."""
    s = TrackSmoother()
    for name in s.params:
        s(0, name, np.full(3, 3.1), 0.0)
        out = s(0, name, np.full(3, -3.1), 1 / 30)
        if name == "pose":
            assert _in_range(out) and np.all(np.abs(out) > 3.0)  # (across ±π: near ±3.1, not near 0)
        else:
            assert np.all(np.abs(out) < 3.0)  # (averaged as numbers, through 0)
    f = OneEuroFilter(angles=True)
    assert np.allclose(f(np.full(2, 7.0), 0.0), 7.0)  # (a fresh filter passes its first sample unchanged)
    g = OneEuroFilter()
    g(np.full(2, 7.0), 0.0)
    assert np.array_equal(f(np.full(2, 0.5), 0.1), g(np.full(2, 0.5), 0.1))
