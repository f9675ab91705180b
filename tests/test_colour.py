"""The colour of video inputs (docs/reliability.md, "Inputs"): HDR (PQ, HLG) is read as SDR BT.709, limited-range
grey is stretched to full range, a colour matrix that swscale does not convert is read as the nearest one that it
does, and the sidecar's ``input.colour`` says what was read.

Each clip is made in the test with exact colour maths (BT.2020 matrix, 10-bit limited range, ffv1 lossless), from
real frames of a clip in ../shared when present (synthetic otherwise).
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Tuple

import av
import numpy as np
import pytest

from realtime.sources import VideoSource

from .conftest import real_frames

KR = {"601": (0.299, 0.114), "709": (0.2126, 0.0722), "2020": (0.2627, 0.0593)}
M709_TO_2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def _pq(nits: np.ndarray) -> np.ndarray:
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.power(np.clip(nits / 10000.0, 0, 1), m1)
    return np.power((c1 + c2 * y) / (1 + c3 * y), m2)


def _hlg(e: np.ndarray) -> np.ndarray:
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    e = np.clip(e, 0, 1)
    return np.where(e <= 1 / 12, np.sqrt(3 * e), a * np.log(np.maximum(12 * e - b, 1e-12)) + c)


def _signal(bgr: np.ndarray, kind: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> R'G'B' in 0..1 of ``kind``: sdr (as is), pq (diffuse white at 203 nits, BT.2408) or
    hlg (diffuse white at 75 %), both in BT.2020's primaries."""
    rgb = bgr[..., ::-1].astype(np.float64) / 255.0
    if kind == "sdr":
        return rgb
    lin = np.power(rgb, 2.4) @ M709_TO_2020.T
    return _pq(lin * 203.0) if kind == "pq" else _hlg(lin * 0.2649)


def _write(path: Path, frames: List[np.ndarray], kind: str, matrix: str, tags: Tuple[int, int, int, int],
           pix_fmt: str = "yuv420p10le") -> Path:
    """ffv1 of ``frames`` as limited-range Y'CbCr of ``matrix`` (``pix_fmt`` yuv420p10le, yuv420p or gray), tagged
    ``tags`` = (matrix, primaries, transfer, range) in FFmpeg's numbers."""
    bits = 10 if "10" in pix_fmt else 8
    dtype = np.uint16 if bits > 8 else np.uint8
    h, w = frames[0].shape[:2]
    c = av.open(str(path), "w")
    s = c.add_stream("ffv1", rate=25)
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    cc = s.codec_context
    cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = tags
    kr, kb = KR[matrix]
    scale = 1 << (bits - 8)
    for i, bgr in enumerate(frames):
        sig = _signal(bgr, kind)
        y = kr * sig[..., 0] + (1 - kr - kb) * sig[..., 1] + kb * sig[..., 2]
        cb = (128 + 224 * (sig[..., 2] - y) / (2 * (1 - kb))) * scale
        cr = (128 + 224 * (sig[..., 0] - y) / (2 * (1 - kr))) * scale
        planes = [(16 + 219 * y) * scale]
        if not pix_fmt.startswith("gray"):
            planes += [(a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4 for a in (cb, cr)]
        f = av.VideoFrame(w, h, pix_fmt)
        for plane, a in zip(f.planes, planes, strict=True):
            a = np.clip(np.rint(a), 0, (1 << bits) - 1).astype(dtype)
            buf = np.zeros((plane.height, plane.line_size // a.itemsize), dtype)
            buf[: a.shape[0], : a.shape[1]] = a
            plane.update(buf.tobytes())
        f.colorspace, f.color_primaries, f.color_trc, f.color_range = tags
        f.pts, f.time_base = i, Fraction(1, 25)
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def _grey(bgr: np.ndarray) -> np.ndarray:
    return bgr.astype(np.float64) @ [0.114, 0.587, 0.299]


def _read(path: Path) -> Tuple[np.ndarray, Optional[dict]]:
    with VideoSource(path) as s:
        images = np.stack([p.image for p in s])
        return images, s.describe()["colour"]


@pytest.fixture(scope="module")
def frames() -> List[np.ndarray]:
    return real_frames(6, size=(160, 128))


@pytest.mark.parametrize("kind, transfer, within", [("pq", 16, 3.0), ("hlg", 18, 15.0)])
def test_hdr_video_is_read_as_sdr(frames, tmp_path, caplog, kind, transfer, within):
    """A PQ or HLG clip (BT.2020) was read as if SDR, with no word: 50 (PQ) and 37 (HLG) grey levels off on
    average, dark and flat, and an angry face read disgust. Its frames now come out as SDR BT.709."""
    from realtime.sources.video import _sdr_table

    p = _write(tmp_path / f"{kind}.mkv", frames, kind, "2020", (9, 9, transfer, 1))
    with caplog.at_level(logging.WARNING, logger="realtime.sources.video"):
        images, colour = _read(p)
    if _sdr_table(transfer, 9) is None:  # PyAV 17 (Python 3.10's newest): read as if SDR, and said
        assert colour["to_sdr"] is False and "read as if SDR" in caplog.text
        pytest.skip(f"this PyAV ({av.__version__}) does not convert HDR; PyAV 18 does")
    off = np.abs(_grey(images) - _grey(np.stack(frames))).mean()
    assert off < within, off
    assert colour["to_sdr"] is True and colour["transfer"] == ("smpte2084" if kind == "pq" else "arib-std-b67")
    assert colour["primaries"] == "bt2020" and colour["pix_fmt"] == "yuv420p10le"
    assert f"HDR video ({kind.upper()}): converted to SDR BT.709" in caplog.text


def test_sdr_video_of_bt2020_primaries_is_no_hdr(frames, tmp_path, caplog):
    """BT.2020 primaries with an SDR transfer were taken for HDR, and the warning said this PyAV could not convert
    it (the review): they are read as they are, without a word."""
    with caplog.at_level(logging.WARNING, logger="realtime.sources.video"):
        images, colour = _read(_write(tmp_path / "sdr2020.mkv", frames, "sdr", "2020", (9, 9, 14, 1)))
    assert colour["to_sdr"] is False and colour["primaries"] == "bt2020" and "HDR" not in caplog.text
    assert np.abs(_grey(images) - _grey(np.stack(frames))).mean() < 3


def test_limited_range_grey_video_is_stretched(frames, tmp_path):
    """swscale reads grey video as full range whatever its tag: a limited-range grey clip came out at 16-235
    (11 levels off on average). It now reads as its full-range twin does."""
    limited, colour = _read(_write(tmp_path / "tv.mkv", frames, "sdr", "709", (1, 1, 1, 1), "gray"))
    assert colour["grey_limited"] is True
    truth = np.stack(frames).astype(np.float64) @ [0.0722, 0.7152, 0.2126]  # the BT.709 luma the clip was made of
    assert np.abs(limited[..., 1] - truth).mean() < 1.5
    assert abs(int(limited.max()) - truth.max()) < 3 and abs(int(limited.min()) - truth.min()) < 3


def test_a_matrix_swscale_does_not_convert_is_read_as_the_nearest(frames, tmp_path, caplog):
    """Frames tagged YCgCo stopped the run at its first frame: "source stage failed: OSError: [Errno 95] Operation
    not supported", exit 7, naming neither the file nor the matrix. They are read as BT.709, with a warning."""
    p = _write(tmp_path / "ycgco.mkv", frames, "sdr", "709", (8, 1, 1, 1), "yuv420p")
    with caplog.at_level(logging.WARNING, logger="realtime.sources.video"):
        images, colour = _read(p)
    assert len(images) == len(frames) and colour["matrix"] == "ycgco" and colour["matrix_read_as"] == "bt709"
    assert "colour matrix ycgco does not convert; read as bt709" in caplog.text
    assert np.abs(_grey(images) - _grey(np.stack(frames))).mean() < 3


def test_sdr_video_reads_as_before_and_says_its_colour(frames, tmp_path):
    """An SDR clip's pixels are what PyAV's own conversion gives (nothing added on the common path), and the
    sidecar names its colour."""
    p = _write(tmp_path / "sdr.mkv", frames, "sdr", "709", (1, 1, 1, 1), "yuv420p")
    images, colour = _read(p)
    with av.open(str(p)) as c:
        plain = np.stack([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])
    assert np.array_equal(images, plain)
    assert colour == {"pix_fmt": "yuv420p", "range": "limited", "matrix": "bt709", "primaries": "bt709",
                      "transfer": "bt709", "to_sdr": False, "grey_limited": False, "matrix_read_as": "bt709",
                      "range_read_as": "limited"}


SATURATED = ((30, 160, 40), (200, 30, 30), (40, 60, 200))  # RGB: green, red, blue


def _blocks(w: int, h: int) -> List[np.ndarray]:
    """Two BGR frames of ``w`` x ``h``: mid grey with a saturated block of each of :data:`SATURATED` (64 px)."""
    img = np.full((h, w, 3), 128, np.uint8)
    for k, rgb in enumerate(SATURATED):
        img[32:96, 32 + 96 * k: 96 + 96 * k] = rgb[::-1]
    return [img, img.copy()]


def _block_error(images: np.ndarray) -> int:
    """The largest channel error of the blocks' centres (16 px in from each edge) in the first image."""
    return max(int(np.abs(images[0, 48:80, 48 + 96 * k: 80 + 96 * k].reshape(-1, 3).mean(0).round()
                          - rgb[::-1]).max()) for k, rgb in enumerate(SATURATED))


def test_untagged_hd_is_read_as_bt709_as_players_read_it(tmp_path):
    """swscale reads an untagged matrix as BT.601 at any size; players (mpv's rule: from 1280 wide or 577 lines up)
    read untagged HD as BT.709, as encoders write it: green (30,160,40) read (40,180,42), red (200,30,30)
    (185,11,31). It now reads as players show it, and the sidecar says what was assumed."""
    images, colour = _read(_write(tmp_path / "hd.mkv", _blocks(1280, 720), "sdr", "709", (2, 2, 2, 0), "yuv420p"))
    assert colour["matrix"] == "unspecified" and colour["range"] == "unspecified"
    assert colour["matrix_read_as"] == "bt709" and colour["range_read_as"] == "limited"
    assert _block_error(images) <= 6, _block_error(images)


def test_untagged_sd_is_still_read_as_bt601(tmp_path):
    """Below HD untagged video stays BT.601 (players' rule and swscale's own), named as FFmpeg names it."""
    images, colour = _read(_write(tmp_path / "sd.mkv", _blocks(640, 360), "sdr", "601", (2, 2, 2, 0), "yuv420p"))
    assert colour["matrix"] == "unspecified" and colour["matrix_read_as"] == "smpte170m"
    assert colour["range_read_as"] == "limited"
    assert _block_error(images) <= 6, _block_error(images)


def test_the_read_as_keys_of_rgb_grey_and_full_range(frames, tmp_path):
    """``matrix_read_as`` and ``range_read_as`` are always written: RGB has no matrix and is full range, grey has no
    matrix and is full range unless tagged limited (stretched then), full-range YUV says so."""
    _, grey = _read(_write(tmp_path / "g.mkv", frames, "sdr", "709", (2, 2, 2, 0), "gray"))
    assert (grey["matrix_read_as"], grey["range_read_as"]) == ("none", "full")
    _, tv = _read(_write(tmp_path / "gtv.mkv", frames, "sdr", "709", (1, 1, 1, 1), "gray"))
    assert (tv["matrix_read_as"], tv["range_read_as"]) == ("none", "limited")
    p = tmp_path / "rgb.mkv"
    with av.open(str(p), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 160, 128, "bgr0"
        for i, bgr in enumerate(frames[:2]):
            f = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="bgr0")
            f.pts, f.time_base = i, Fraction(1, 25)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    _, rgb = _read(p)
    assert (rgb["matrix_read_as"], rgb["range_read_as"]) == ("rgb", "full")


def test_the_annotated_video_keeps_the_sources_primaries_and_transfer(frames, tmp_path):
    """An SD clip tagged BT.709 came out tagged SMPTE 170M primaries and transfer (and HD tagged 601 as 709): only the
    matrix is converted by the video, the pixels keep the source's primaries. The matrix still follows the size;
    the primaries and transfer are the source's SDR ones, and the sidecar says what the video is tagged."""
    import json

    from realtime.outputs import RunOutputs

    clip = _write(tmp_path / "sd709.mkv", real_frames(3, size=(320, 240)), "sdr", "709", (1, 1, 1, 1), "yuv420p")
    with VideoSource(clip) as src:
        out = RunOutputs(8, fps=src.fps, time_base=src.time_base, describe=lambda: {"input": src.describe()})
        out.open_csv(tmp_path / "o.csv", tmp_path / "o.json")
        out.open_video(tmp_path / "o.mp4")
        for p in src:
            out.write(p)
        out.close("complete")
    with av.open(str(tmp_path / "o.mp4")) as c:
        f = next(c.decode(video=0))
    assert (int(f.color_primaries), int(f.color_trc), int(f.colorspace), int(f.color_range)) == (1, 1, 6, 1)
    side = json.loads((tmp_path / "o.json").read_text())
    assert side["video_colour"] == {"matrix": "smpte170m", "range": "limited", "primaries": "bt709",
                                    "transfer": "bt709"}
    assert side["video_size"] == [320, 240]
    read = side["input"]["colour"]
    assert read["matrix_read_as"] == "bt709" and read["range_read_as"] == "limited"


def test_the_annotated_videos_primaries_and_transfer_rule():
    """The source's SDR primaries (1, 5, 6) and transfers (1, 6, 13, 14, 15) are kept, BT.709 after HDR was read as
    SDR, the size rule where unspecified or not SDR (BT.2020 primaries, an HDR transfer not converted)."""
    from realtime.sinks.video_sink import _colour_tags

    assert _colour_tags(None, True) == (1, 1) and _colour_tags(None, False) == (6, 6)
    assert _colour_tags({"primaries": "bt709", "transfer": "bt709"}, False) == (1, 1)
    assert _colour_tags({"primaries": "smpte170m", "transfer": "smpte170m"}, True) == (6, 6)
    assert _colour_tags({"primaries": "bt470bg", "transfer": "iec61966-2-1"}, True) == (5, 13)
    assert _colour_tags({"primaries": "unspecified", "transfer": "unspecified"}, False) == (6, 6)
    assert _colour_tags({"primaries": "bt2020", "transfer": "bt2020-10"}, True) == (1, 14)
    assert _colour_tags({"primaries": "bt2020", "transfer": "arib-std-b67", "to_sdr": True}, False) == (1, 1)
    assert _colour_tags({"primaries": "bt2020", "transfer": "smpte2084", "to_sdr": False}, False) == (6, 6)
