"""Training packs (facecycle.train.pack): one .npz of the semi-supervised run's data for a machine without
../shared. Made-up images here; JPEG is lossy, so images compare within a tolerance."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from facecycle.errors import InputError  # noqa: E402
from facecycle.train.pack import read_pack, read_pack_video_labels, write_pack  # noqa: E402


def _smooth(n: int, size: int, seed: int, grey: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(40, 200, 3)
        chans = [a + 50 * np.sin(6 * xx + b / 40) * np.cos(4 * yy + c / 40)]
        chans = chans * 3 if grey else chans + [np.full_like(xx, b), np.full_like(xx, c)]
        out.append(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))
    return np.stack(out)


def test_round_trip_with_and_without_video_labels(tmp_path):
    stills = (_smooth(6, 48, 0, True), np.arange(6) % 7)
    val = (_smooth(3, 48, 1, True), np.array([1, 2, 3]))
    video = (_smooth(5, 64, 2, False), np.array([0, 0, 1, 1, 1]))
    labels = np.array([4, 4, -1, 3, 3])
    p = tmp_path / "a.npz"
    assert write_pack(p, stills, val, video, video_labels=labels) == p.stat().st_size
    (s, sy), (v, vy), (c, ct) = read_pack(p)
    assert s.shape == (6, 48, 48, 3) and c.shape == (5, 64, 64, 3)
    assert np.abs(s.astype(int) - stills[0]).mean() < 3 and np.abs(c.astype(int) - video[0]).mean() < 3
    assert sy.tolist() == stills[1].tolist() and vy.tolist() == [1, 2, 3] and ct.tolist() == video[1].tolist()
    assert read_pack_video_labels(p).tolist() == labels.tolist()
    q = tmp_path / "b.npz"
    write_pack(q, stills, val, video)
    assert read_pack_video_labels(q) is None
    with pytest.raises(InputError, match="video labels"):
        write_pack(tmp_path / "c.npz", stills, val, video, video_labels=labels[:3])


def test_bad_packs_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no such pack"):
        read_pack(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(InputError, match="not a training pack"):
        read_pack(bad)
