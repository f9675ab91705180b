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


def test_grey_mosaics_decode_to_the_pixels_of_one_jpeg_per_image(tmp_path):
    import cv2

    rng = np.random.default_rng(3)
    grey = _smooth(70, 64, 4, True)  # 70: one full 8 x 8 mosaic and a padded one
    grey[:, 20:30, 20:30] = rng.integers(0, 255, (70, 10, 10, 1), dtype=np.uint8)  # detail JPEG must keep
    p = tmp_path / "m.npz"
    write_pack(p, (grey, np.arange(70) % 7), (grey[:5], np.arange(5)), (_smooth(2, 64, 5, False), np.zeros(2)))
    z = np.load(p)
    assert int(z["stills_tile"]) == 8 and len(z["stills_off"]) == 3  # two JPEGs for 70 stills
    (s, _), (v, _), _ = read_pack(p)
    one = np.stack([cv2.imdecode(cv2.imencode(".jpg", im[..., 0], [cv2.IMWRITE_JPEG_QUALITY, 92])[1],
                                 cv2.IMREAD_GRAYSCALE) for im in grey])
    assert s.shape == (70, 64, 64, 3) and np.array_equal(s[..., 0], one) and np.array_equal(s[..., 2], one)
    assert np.array_equal(v[..., 0], one[:5])


def test_packs_without_mosaics_still_read(tmp_path):
    """A pack written before the mosaics (one JPEG per image, no *_tile arrays) reads as before."""
    import cv2

    ims = _smooth(3, 48, 6, True)
    arrays = {}
    for name in ("stills", "val", "video"):
        bufs = [cv2.imencode(".jpg", im[..., 0])[1].reshape(-1) for im in ims]
        arrays[f"{name}_jpg"] = np.concatenate(bufs)
        arrays[f"{name}_off"] = np.cumsum([0] + [b.size for b in bufs])
        arrays[f"{name}_y"] = np.arange(3)
    p = tmp_path / "old.npz"
    np.savez(p, **arrays)
    (s, sy), _, (c, _) = read_pack(p)
    assert s.shape == c.shape == (3, 48, 48, 3) and np.abs(s.astype(int) - ims).mean() < 3 and sy.tolist() == [0, 1, 2]


def test_a_truncated_or_inconsistent_pack_is_one_line_naming_it(tmp_path):
    """A --pack cut short (a copy that stopped) is no zip: np.load's BadZipFile was an internal error, as
    read_still_targets already knew. Offsets past the bytes stopped cv2.imdecode with an empty buffer (cv2.error)."""
    stills = (_smooth(4, 16, 0, True), np.arange(4) % 7)
    video = (_smooth(2, 16, 2, False), np.array([0, 1]))
    good = tmp_path / "good.npz"
    write_pack(good, stills, stills, video, video_labels=np.array([1, 2]))
    data = good.read_bytes()
    for name, cut in (("half.npz", data[:len(data) // 2]), ("head.npz", data[:10]), ("empty.npz", b"")):
        p = tmp_path / name
        p.write_bytes(cut)
        for read in (read_pack, read_pack_video_labels):
            with pytest.raises(InputError, match=f"{name}: not a training pack") as e:
                read(p)
            assert "\n" not in str(e.value)
    z = dict(np.load(good))
    bad = tmp_path / "offsets.npz"
    np.savez(bad, **{**z, "video_off": z["video_off"] + 10_000})
    with pytest.raises(InputError, match="offsets.npz: not a training pack \\(its image offsets do not fit"):
        read_pack(bad)
    np.savez(bad, **{**z, "video_y": np.arange(5)})
    with pytest.raises(InputError, match="offsets.npz: not a training pack \\(2 video images for 5 labels"):
        read_pack(bad)
