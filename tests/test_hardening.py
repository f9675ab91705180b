"""Hardening findings (probe h21): resource use bounded by what the pipeline needs, not by what a file declares.

Synthetic pictures and a model-free detector, so the checks run with ../shared absent; the real-detector check on
FER-2013 crops runs where ../shared is present.
"""
from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
import pytest

from realtime.detectors.base import Detector
from realtime.types import Detections

#: the border's grey (detect_still's) and the synthetic picture's background and patch
GREY, DARK, PATCH = 128, 0, 255


class _FramedPatchDetector(Detector):
    """A detector without a model that, like a real one on a face filling its picture, finds nothing without context:
    it answers only where the frame's outermost pixels are the border's grey. It then returns one face: the box is
    the extent of the non-grey pixels (the picture), the 5 landmarks all the intensity-weighted centroid of the
    bright patch inside it (area averaging keeps a centroid where it was, so the mapping back is checked to a
    fraction of a pixel). Records the (H, W) of every frame :meth:`detect` is handed."""

    name = "framed-patch"

    def __init__(self, max_side: Optional[int] = 320) -> None:
        super().__init__(max_side=max_side, score_threshold=0.5)
        self.seen: List[Tuple[int, int]] = []

    def detect(self, image: np.ndarray, max_side: Optional[int] = None) -> Detections:
        self.seen.append(image.shape[:2])
        return super().detect(image, max_side)

    def _detect(self, image: np.ndarray) -> Detections:
        g = image[..., 0].astype(np.float64)  # (H, W) float64, the three channels are equal here
        edge = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
        if np.abs(edge - GREY).max() > 0:
            return Detections.empty()
        ys, xs = np.nonzero(np.abs(g - GREY) > 3)
        if not len(xs):
            return Detections.empty()
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        inner = g[y0 + 2:y1 - 2, x0 + 2:x1 - 2]  # off the picture's edge, where it blends with the border
        yy, xx = np.mgrid[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
        cx = (inner * (xx + 0.5)).sum() / inner.sum()
        cy = (inner * (yy + 0.5)).sum() / inner.sum()
        box = np.array([[x0, y0, x1, y1]], np.float32)
        return Detections(box, np.ones(1, np.float32), np.tile(np.float32([cx, cy]), (1, 5, 1)))


def _picture(w: int, h: int) -> Tuple[np.ndarray, Tuple[float, float]]:
    """(h, w, 3) uint8 BGR: dark, with a bright square (a fifth of the shorter side) off its centre; and the square's
    centre (x, y) in pixels."""
    im = np.full((h, w, 3), DARK, np.uint8)
    a = max(2, min(w, h) // 5)
    x0, y0 = int(0.3 * w), int(0.55 * h)
    im[y0:y0 + a, x0:x0 + a] = PATCH
    return im, (x0 + a / 2, y0 + a / 2)


def _full_size_framing(det: Detector, image: np.ndarray, pad: float = 0.5) -> Detections:
    """The second try as detect_still made it before the fix (the border added to the picture at full size): the
    reference. Faces in ``image`` pixels, those mostly on the picture."""
    h, w = image.shape[:2]
    p = int(round(pad * max(h, w)))
    d = det.detect(cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_CONSTANT, value=(GREY, GREY, GREY)))
    boxes = d.boxes - np.float32(p)
    inside = np.clip(boxes, [0, 0, 0, 0], [w, h, w, h])
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6) * np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    kept = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1]) >= 0.5 * area
    return Detections(inside[kept].astype(np.float32), d.scores[kept],
                      (d.landmarks[kept] - np.float32(p)).astype(np.float32))


def test_still_is_shrunk_before_its_border_is_added():
    """Finding: detect_still added the grey border to the picture at full size, a copy of (H+2p) x (W+2p) (four
    times the picture at pad 0.5), though the detector shrinks it to max_side: a 16000x16000 PNG of 746 KB took
    4.75 GB, three 629-byte JPEGs declaring 30000x30000 asked for 10.8 GB (out of memory). The border is now added
    to the picture shrunk to the detector's size: nothing larger than max_side is framed, and the call allocates a
    fraction of the picture. (Before the fix: the detector was handed 4200x4800 and the call peaked at 4.85x the
    picture's bytes, now 0.19x.)"""
    det = _FramedPatchDetector(max_side=320)
    im, _ = _picture(2400, 1800)
    found = det.detect_still(im)
    # found on the last try, inside the border (after the picture at 320 px, and at 1280 px: the look for small faces
    # a large picture without a face takes)
    assert len(found) == 1 and len(det.seen) == 3
    assert max(det.seen[-1]) <= 320, f"the framed picture handed to the detector is {det.seen[-1]}"
    det._look_larger = lambda image, d: d  # the framing's own memory (this test detector's float64 copy at 1280 px
    tracemalloc.start()                    # would count otherwise)
    try:
        det.detect_still(im)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * im.nbytes, f"detect_still allocated {peak / im.nbytes:.2f}x the picture"


@pytest.mark.parametrize("size", [(48, 48), (150, 150), (480, 480), (1000, 1000), (487, 487), (1333, 751),
                                  (171, 229), (2000, 90)])
def test_still_faces_come_back_in_the_pictures_pixels(size):
    """The faces of the second try are mapped back to the full-size picture: the box is the picture's extent and
    the landmark the patch's centre, for square, odd, wide and tall pictures, shrunk or not (48 and 150 px framed
    fit in 320 and are not shrunk); within one detector pixel of where the full-size framing put them, and the
    same to 0.01 px where the picture's edge falls on a detector pixel's edge (a square of even side)."""
    w, h = size
    det = _FramedPatchDetector(max_side=320)
    im, (cx, cy) = _picture(w, h)
    got = det.detect_still(im)
    ref = _full_size_framing(det, im)
    assert len(got) == len(ref) == 1
    p = round(0.5 * max(w, h))
    px = max(1.0, (max(w, h) + 2 * p) / 320)  # one detector pixel, in the picture's pixels
    np.testing.assert_allclose(got.boxes[0], [0, 0, w, h], atol=1e-3)
    np.testing.assert_allclose(got.landmarks[0], np.tile([cx, cy], (5, 1)), atol=0.25 * px)
    np.testing.assert_allclose(got.boxes, ref.boxes, atol=px)
    np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=0.25 * px)
    if w == h and w % 2 == 0:  # the border's edge on a detector pixel's edge (framed at 320: at 80 px)
        np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=0.01)
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.01)


def test_still_at_native_size_keeps_the_full_size_border():
    """--detect-size 0 (max_side None) detects at the picture's own size: the border stays at full size, as the
    detector sees it, and the faces are those of the full-size framing."""
    det = _FramedPatchDetector(max_side=None)
    im, _ = _picture(300, 200)
    got = det.detect_still(im)
    assert det.seen[1] == (500, 600)
    ref = _full_size_framing(det, im)
    np.testing.assert_array_equal(got.boxes, ref.boxes)
    np.testing.assert_array_equal(got.landmarks, ref.landmarks)


def test_real_detector_same_faces_on_face_crops():
    """CenterFace on FER-2013 crops (faces that fill the picture, the case the border is for), at 48 px (framed
    96, not shrunk) and enlarged to 480 px (shrunk by 3 before framing): the faces of detect_still are those of the
    full-size framing to 0.01 px."""
    from realtime.detectors import create_detector
    from tests.conftest import FER

    files = sorted((FER / "train" / "happy").glob("*.jpg"))[-40:] if (FER / "train").is_dir() else []
    if not files:
        pytest.skip(f"{FER} is absent")
    det = create_detector("centerface")
    compared = 0
    for f in files:
        small = cv2.imread(str(f))
        for im in (small, cv2.resize(small, (480, 480), interpolation=cv2.INTER_CUBIC)):
            if len(det.detect(im)):
                continue  # found without the border: the second try is not taken
            got, ref = det.detect_still(im), _full_size_framing(det, im)
            assert len(got) == len(ref)
            if len(got):
                compared += 1
                np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.01)
                np.testing.assert_allclose(got.landmarks, ref.landmarks, atol=0.01)
    assert compared >= 2


def _floors(name: str) -> List[Tuple[str, Tuple[int, ...]]]:
    """Every requirement on ``name`` in pyproject.toml (base and extras): (the requirement, its ``>=`` floor)."""
    import re

    from tests.conftest import ROOT

    try:
        import tomllib as toml
    except ImportError:  # pragma: no cover - Python 3.10
        toml = pytest.importorskip("tomli")
    project = toml.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    out = []
    for r in reqs:
        m = re.match(rf"^{re.escape(name)}\s*(?:\[[^\]]*\])?\s*(.*)$", r)
        if not m or re.match(r"^[A-Za-z0-9_.-]", m.group(1)):  # another package whose name starts alike
            continue
        floor = re.search(r">=\s*([0-9][0-9.]*)", m.group(1))
        assert floor, f"{r!r} has no floor"
        out.append((r, tuple(int(x) for x in floor.group(1).split("."))))
    return out


def test_torch_and_onnx_floors_exclude_the_vulnerable_releases():
    """torch below 2.6 lets a crafted checkpoint past torch.load(weights_only=True) (CVE-2025-32434), below 2.10
    corrupts memory there (CVE-2026-24747); onnx below 1.16 follows a model's external-data path out of its folder
    (CVE-2024-27318). Every requirement on them, base and extras, has a floor at or above the fix. (Before: torch>=2.3
    in the torch and tensorrt extras, onnx>=1.14 in the base dependencies.)"""
    torch, onnx = _floors("torch"), _floors("onnx")
    assert len(torch) == 2 and len(onnx) == 4, (torch, onnx)
    assert all(f >= (2, 10) for _, f in torch), torch
    assert all(f >= (1, 16) for _, f in onnx), onnx


def test_docs_say_where_file_names_and_batch_urls_need_trust():
    """docs/csv.md: the `file` column holds names as the file system has them, a formula to a spreadsheet where they
    begin with = + - @; docs/batch.md: URLs and lists decide what the nodes fetch, run only trusted ones."""
    from tests.conftest import ROOT

    row = next(line for line in (ROOT / "docs" / "csv.md").read_text().splitlines() if line.startswith("| `file` |"))
    assert "formula" in row and all(f"`{c}`" in row for c in "=+-@") and "pandas" in row
    batch = " ".join((ROOT / "docs" / "batch.md").read_text().split())
    assert "decide what its nodes fetch" in batch and "run only lists and URLs you trust" in batch


def _declaring(tmp_path: Path, name: str, w: int, h: int) -> Path:
    """A small real JPEG (a 64x48 grey ramp) whose frame header (SOF0) is made to declare ``w`` x ``h``: what a
    decoder allocates from before it meets the (short) data, the "decompression bomb" of a few hundred bytes."""
    ok, buf = cv2.imencode(".jpg", np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1)))
    data = bytearray(buf.tobytes())
    i = data.index(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    data[i + 5:i + 7], data[i + 7:i + 9] = h.to_bytes(2, "big"), w.to_bytes(2, "big")
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def test_too_large_a_picture_is_refused_from_its_header(tmp_path, caplog):
    """Finding: OpenCV decoded what a picture's header declared, up to its own bound of 2**30 pixels (a 14-MB JPEG of
    30000x30000 took 5.2 GB), where the same picture given alone was refused by FFmpeg as "video stream has no frame
    size (corrupt header?)". Now one rule, FFmpeg's own bound (read here through PyAV, not restated), refuses it
    from the header before anything is decoded: read alone (exit 3, the size named), through the API (ValueError),
    in a folder (skipped with the reason, the folder's other pictures read). (Before: read_image decoded the
    20000x20000 declared by the 732 bytes made here in 2.3 GB, and the folder read it as a picture.)"""
    import logging

    import av

    from facecycle.imageio import PictureTooLarge, picture_size, read_image, too_large
    from realtime.sources import open_source
    from realtime.sources.images import ImageFolderSource
    from realtime.types import as_bgr_image

    # the bound is FFmpeg's own for a frame (it makes frames up to 16255x16255, not 16256x16256)
    for w, h in ((16000, 16000), (16255, 16255), (16256, 16256), (16384, 16384), (60000, 1000), (65000, 4200)):
        try:
            av.VideoFrame(w, h, "gray")
            fits = True
        except av.error.ArgumentError:
            fits = False
        assert (too_large(w, h) is None) == fits, (w, h, fits)
        assert picture_size(_declaring(tmp_path, f"d{w}x{h}.jpg", w, h)) == (w, h)
    assert (too_large(16255, 16255), too_large(16256, 16256) is not None) == (None, True)
    bomb = _declaring(tmp_path, "bomb.jpg", 20000, 20000)
    with pytest.raises(PictureTooLarge, match="20000x20000 pixels .* too large to read"):
        read_image(bomb)
    with pytest.raises(ValueError, match="too large to read"):
        as_bgr_image(bomb)
    with pytest.raises(PictureTooLarge, match="bomb.jpg: a picture of 20000x20000 pixels"):
        open_source(str(bomb))
    folder = tmp_path / "pictures"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((48, 64, 3), 90, np.uint8))
    bomb.rename(folder / "b.jpg")
    src = ImageFolderSource(folder, reading="stills")
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert [f.file for f in frames] == ["a.jpg"] and src.unreadable == ["b.jpg"] and src.errors == 1
    assert any("b.jpg: unreadable image skipped (a picture of 20000x20000" in r.getMessage() for r in caplog.records)


def test_running_out_of_memory_is_said_not_blamed_on_the_input(tmp_path, monkeypatch):
    """Probe finding: under a limit on the address space (`ulimit -v`, a scheduler's h_vmem) a good file failed as
    "frames of matrix bt709 do not convert to RGB (Cannot allocate memory)" or "undecodable (50 damaged packets in a
    row)" (exit 3: the input's fault), or as "detect stage failed: ... Failed to allocate memory". Each now says
    out of memory, and the limit where there is one (exit 7). Allocation failures are made here, where they occur."""
    import errno

    import av

    from facecycle.errors import OutOfMemory, is_out_of_memory
    from realtime.pipeline import Pipeline
    from realtime.sources import open_source
    from realtime.sources.frames import FrameSource

    from .conftest import real_frames, write_video

    assert is_out_of_memory(MemoryError()) and is_out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert is_out_of_memory(RuntimeError("bfc_arena.cc:360 Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(OSError(errno.EAGAIN, "Resource temporarily unavailable"))  # only where limited
    # the loader's words are memory only under a limit on the address space (else: a library on a noexec mount)
    import facecycle.errors as errors_mod

    mapped = ImportError("x.so: failed to map segment from shared object")
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: None)
    assert not is_out_of_memory(mapped)
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: 1 << 30)
    assert is_out_of_memory(mapped)
    monkeypatch.undo()
    assert not is_out_of_memory(ValueError("bad value")) and OutOfMemory.exit_code == 7
    clip = write_video(tmp_path / "good.mp4", real_frames(4), rate=25)

    class Starved:  # the frame converter when its allocation fails
        def reformat(self, *a, **k):
            raise av.error.FFmpegError(errno.ENOMEM, "Cannot allocate memory")

    src = open_source(str(clip))
    src._reformatter = Starved()
    with pytest.raises(OutOfMemory, match=r"out of memory while converting .*good.mp4's frames .*Cannot allocate"):
        list(src)
    # a decoder's ENOMEM: without a limit on the address space one may be a damaged packet's bogus size (skipped
    # as damage); every packet failing so is the machine's memory (a review's finding)
    src = open_source(str(clip))
    monkeypatch.setattr(av.Packet, "decode", lambda self: (_ for _ in ()).throw(
        av.error.FFmpegError(errno.ENOMEM, "Cannot allocate memory")))
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: None)
    src.max_errors = 3
    with pytest.raises(OutOfMemory, match="out of memory while decoding"):
        list(src)
    monkeypatch.undo()
    calls = []

    def one_bad(self):  # the first packet's allocation fails, the rest decode
        calls.append(1)
        if len(calls) == 1:
            raise av.error.FFmpegError(errno.ENOMEM, "Cannot allocate memory")
        return real_decode(self)

    real_decode = av.Packet.decode
    intra = write_video(tmp_path / "intra.avi", real_frames(4), rate=25, codec="mjpeg", pix_fmt="yuvj420p")
    src = open_source(str(intra))
    monkeypatch.setattr(av.Packet, "decode", one_bad)
    monkeypatch.setattr(errors_mod, "_address_space_limit", lambda: None)
    assert len(list(src)) == 3 and src.errors == 1  # read on, the packet counted as damage
    monkeypatch.undo()

    def starved(p):
        raise MemoryError()

    frames = FrameSource([np.zeros((8, 8, 3), np.uint8)] * 3)
    with pytest.raises(OutOfMemory, match="out of memory while running the detect stage"):
        list(Pipeline(frames, [("detect", starved)]))


def test_bench_figures_need_neither_a_load_average_nor_proc(monkeypatch):
    """Portability review: `facecycle bench` read os.getloadavg(), which Windows lacks (AttributeError: an internal
    error), and without psutil the memory from /proc/self/status, which macOS and Windows lack. Both are now
    optional figures (None / NaN). Stood in for here by removing them."""
    import builtins
    import math
    import os
    import sys

    from realtime import bench, soak

    monkeypatch.delattr(os, "getloadavg")
    assert bench._load() is None
    monkeypatch.setitem(sys.modules, "psutil", None)  # not installed
    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    assert math.isnan(soak.rss_mb())


def test_a_batch_run_from_a_deleted_folder_is_an_output_error(tmp_path):
    """A fixer's note: `facecycle batch X --out-dir rel` in a folder that was deleted was `internal error:
    FileNotFoundError`, exit 1 (process was mended alike): one line, exit 4."""
    import subprocess
    import sys

    gone = tmp_path / "gone"
    gone.mkdir()
    code = (f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); from facecycle_cli import main; "
            f"sys.exit(main(['batch', {str(tmp_path / 'x.mp4')!r}, '--out-dir', 'out', '--cluster', 'none']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and "the current folder no longer exists" in lines[-1], r.stderr


@pytest.mark.parametrize("name,data,says", [
    ("t.jpg", b"hello world\nthis is text\n", "cannot open as a picture (Invalid data found when processing input; "
                                              "the file holds text, not a picture or a video)"),
    ("page.png", b"<!DOCTYPE html>\n<html><body>Not Found</body></html>\n",
     "cannot open as a picture (Invalid data found when processing input; the file holds HTML, not a picture or a "
     "video)"),
    ("notes.heic", b"some notes\n", "cannot open as a picture (Invalid data found when processing input; the file "
                                    "holds text, not a picture or a video)"),
    ("words.gif", b"some words\n", "cannot open as a video (End of file; the file holds text, not a video)"),
    ("notes.mp4", b"some notes\n", "cannot open as a video (Invalid data found when processing input; the file holds "
                                   "text, not a video)")])
def test_a_text_file_named_as_a_picture_cannot_be_opened_as_one(tmp_path, name, data, says):
    """A docs-audit finding: text named `.jpg` said "video stream has no frame size (the file holds text, ...)" (FFmpeg
    opens it by its name alone, as a picture without a size), where the same text named `.mp4` said "cannot open as a
    video (...; the file holds text, not a video)"; a `.gif` of text said only "cannot open as a video (End of file)".
    Exit 3, as before."""
    import subprocess
    import sys

    from facecycle.errors import InputError
    from realtime.sources import open_source

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as ei:
        open_source(str(path))
    assert str(ei.value) == f"{path}: {says}"
    r = subprocess.run([sys.executable, "-m", "facecycle", "process", name, "--out-dir", "out", "--no-video"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [f"facecycle: error: {name}: {says}"], r.stderr


def test_a_binary_file_named_as_a_picture_still_names_its_header(tmp_path):
    from facecycle.errors import InputError
    from realtime.sources import open_source

    path = tmp_path / "noise.jpg"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="noise.jpg: video stream has no frame size \\(corrupt header\\?\\)"):
        open_source(str(path))
