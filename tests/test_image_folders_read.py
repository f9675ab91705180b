"""Image folders read whole, and what is left out said and recorded: class folders that are symbolic links, every
picture kind OpenCV reads (GIF, ``.jfif``, ``.jpe``) and a count of those it does not, a stray picture above a class
tree, numbered photos against a video's frames, a single picture decoded as a folder decodes it, the sidecar's size
of a folder of mixed sizes, multi-page TIFFs (a probe's findings F2, F3, F4, F5, F8, F11)."""
from __future__ import annotations

import csv
import logging
import os
import struct
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from realtime.sources import images as images_mod
from realtime.sources.images import ImageFolderSource, judge_neighbours, reads_gif, sequence_evidence

from .conftest import shared_video


def _picture(path: Path, value: int = 90, size=(40, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*size, 3), value, np.uint8)
    img[:, : size[1] // 2, 2] = 200  # not flat: a colour picture
    assert cv2.imwrite(str(path), img)
    return path


def _link(target: Path, link: Path) -> None:
    try:
        os.symlink(target, link, target_is_directory=target.is_dir())
    except (OSError, NotImplementedError) as e:  # Windows without the privilege
        pytest.skip(f"symbolic links cannot be made here ({e})")


# --- F2: linked class folders ------------------------------------------------------------------------------------

def test_a_class_folder_that_is_a_link_is_read_and_a_link_loop_is_read_once(tmp_path, caplog):
    """A test split built with symbolic links (`happy -> /data/tree/happy`): the linked class was left out without a
    word (11 of 15 pictures read), and a tree of linked classes only was "no images". Links are followed as `probe
    eval` follows them; a link back up the tree is read once, with a warning."""
    real = tmp_path / "real"
    for i in range(3):
        _picture(real / "happy" / f"{i}.png")
    split = tmp_path / "split"
    _picture(split / "sad" / "0.png")
    _link(real / "happy", split / "happy")
    assert [p.relative_to(split).as_posix() for p in ImageFolderSource(split).files] == [
        "happy/0.png", "happy/1.png", "happy/2.png", "sad/0.png"]
    only_links = tmp_path / "only_links"
    only_links.mkdir()
    _link(real / "happy", only_links / "happy")
    assert len(ImageFolderSource(only_links).files) == 3
    _link(split, split / "sad" / "up")  # sad/up -> the split itself: a loop
    with caplog.at_level(logging.WARNING):
        files = ImageFolderSource(split).files
    assert len(files) == 4 and "symlink loop" in caplog.text


# --- F3: every picture kind OpenCV reads, and a count of the others -----------------------------------------------

def _gif(path: Path, colours: List[int]) -> bool:
    """A GIF of one frame per grey level in ``colours`` (animated where more than one); False where none can be
    written here."""
    frames = [np.full((24, 32, 3), c, np.uint8) for c in colours]
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        pics = [Image.fromarray(f) for f in frames]
        pics[0].save(path, save_all=len(pics) > 1, append_images=pics[1:], duration=100)
        return True
    if len(colours) == 1:
        ok, buf = cv2.imencode(".gif", frames[0])
        if ok:
            path.write_bytes(buf.tobytes())
            return True
    return False


def test_gif_jfif_and_jpe_pictures_are_read_and_other_picture_kinds_are_counted(tmp_path, caplog):
    """`.gif` (first frame), `.jfif` (a browser's JPEG download) and `.jpe` were left out of a folder without a word,
    though OpenCV reads them (and `process x.gif` alone read it). Pictures of kinds not read (a phone's HEIC, JPEG
    XL) are named in the sidecar's `input.not_read` and counted in one warning."""
    from facecycle.imageio import read_image

    d = tmp_path / "pics"
    jpeg = cv2.imencode(".jpg", cv2.imread(str(_picture(tmp_path / "x.png"))))[1].tobytes()
    d.mkdir()
    (d / "a.jfif").write_bytes(jpeg)
    (d / "b.JPE").write_bytes(jpeg)
    gif = _gif(d / "c.gif", [30, 220])  # animated: the first frame is read
    (d / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (d / "new.jxl").write_bytes(b"\xff\x0a" + bytes(64))
    (d / "notes.txt").write_text("not a picture")
    gif = gif and reads_gif()  # (OpenCV decodes GIF from 4.12: else it is counted as not read, the next test)
    if gif:
        assert read_image(d / "c.gif") is not None
    with caplog.at_level(logging.WARNING):
        src = ImageFolderSource(d, reading="stills")
        frames = list(src)
    assert [f.file for f in frames] == ["a.jfif", "b.JPE", *(["c.gif"] if gif else [])]
    if gif:
        assert int(frames[2].image[0, 0, 0]) == 30  # its first frame
    info = src.describe()
    if gif or not (d / "c.gif").exists():
        assert info["not_read"] == ["new.jxl", "phone.heic"] and info["not_read_count"] == 2
        assert "2 pictures of a kind not read here left out (1 .heic, 1 .jxl" in caplog.text
    else:  # an OpenCV without GIF: counted with them
        assert info["not_read"] == ["c.gif", "new.jxl", "phone.heic"] and info["not_read_count"] == 3
    assert src.errors == 0 and info["unreadable"] == []
    # in a class tree too
    tree = tmp_path / "tree"
    _picture(tree / "happy" / "1.png")
    (tree / "happy" / "2.heic").write_bytes(b"\x00")
    assert ImageFolderSource(tree).describe()["not_read"] == ["happy/2.heic"]


@pytest.mark.parametrize("decodes", [True, False])
def test_gif_is_read_only_where_opencv_decodes_it(tmp_path, caplog, monkeypatch, decodes):
    """OpenCV decodes GIF from 4.12 (4.11 has a decoder, off in its builds), where pyproject allows 4.8 on. Whether it
    does is decided once per process, from a 1-pixel GIF; where it does not, a folder's `.gif` pictures are counted
    with the kinds not read (`input.not_read`, one warning, the hint to convert them), not read and each counted as
    an unreadable image, and a folder of GIFs only is not "no readable images"."""
    monkeypatch.setattr(images_mod, "_gif_read", None)
    monkeypatch.setattr(images_mod, "_decodes_gif", lambda: decodes)
    assert reads_gif() is decodes and (".gif" in images_mod.folder_suffixes()) is decodes
    assert (".gif" in images_mod.other_picture_suffixes()) is not decodes
    monkeypatch.setattr(images_mod, "_decodes_gif", lambda: not decodes)
    assert reads_gif() is decodes  # decided once
    d = tmp_path / "pics"
    _picture(d / "a.png")
    gif = _gif(d / "b.gif", [30])
    if not gif:
        (d / "b.gif").write_bytes(images_mod._GIF_1PX)
    with caplog.at_level(logging.WARNING):
        src = ImageFolderSource(d, reading="stills")
    info = src.describe()
    if decodes:
        assert [p.name for p in src.files] == ["a.png", "b.gif"] and info["not_read"] == []
    else:
        assert [p.name for p in src.files] == ["a.png"] and info["not_read"] == ["b.gif"]
        assert "1 picture of a kind not read here left out (1 .gif" in caplog.text
        (d / "a.png").unlink()
        from facecycle.errors import InputError

        with pytest.raises(InputError, match=r"no images \(.*; it holds pictures of a kind not read here \(1 \.gif"):
            ImageFolderSource(d)


def test_the_gif_probe_answers_as_opencv_reads_a_gif(tmp_path):
    """The probe's 1-pixel GIF decodes exactly where a real GIF does."""
    from facecycle.imageio import read_image

    if not _gif(tmp_path / "x.gif", [30]):
        pytest.skip("no GIF can be written here")
    assert images_mod._decodes_gif() is (read_image(tmp_path / "x.gif") is not None)
    assert len(images_mod._GIF_1PX) == 35


# --- F4: a stray picture above a class tree ---------------------------------------------------------------------

def test_a_stray_picture_above_a_class_tree_counts_the_whole_tree_left_out_and_records_it(tmp_path, caplog):
    """One `preview.jpg` at the top of a class tree: only it is read (a folder with images of its own is read
    without its subfolders, docs/csv.md). The warning counted only the immediate subfolders' images (33 of 34: not
    the nested CK+ `happy/S005/001/*.png`), said nothing of how to read them, and the sidecar nothing at all."""
    tree = tmp_path / "tree"
    _picture(tree / "preview.jpg")
    _picture(tree / "happy" / "1.png")
    _picture(tree / "happy" / "S005" / "001" / "S005_001_00000011.png")
    _picture(tree / "sad" / "1.png")
    _picture(tree / ".ipynb_checkpoints" / "x.png")  # never read
    _picture(tree / "happy.annotated" / "1.png")  # a previous run's output: never read
    with caplog.at_level(logging.WARNING):
        src = ImageFolderSource(tree)
    assert [p.name for p in src.files] == ["preview.jpg"]
    assert src.describe()["subfolder_images_not_read"] == 3
    assert "3 images in subfolders are not read" in caplog.text and "give the subfolders as inputs" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        src = ImageFolderSource(tree / "happy" / "S005")  # no images of its own: read through its subfolders
    assert len(src.files) == 1 and src.describe()["subfolder_images_not_read"] == 0 and "not read" not in caplog.text


# --- F5: numbered photos against a video's frames -----------------------------------------------------------------

def _texture(seed: int, size=(220, 280)) -> np.ndarray:
    base = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8), (0, 0), 6)
    return cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)


def _write(folder: Path, frames: List[np.ndarray], name: str = "{:04d}.png") -> List[Path]:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / name.format(i + 1)), f)
    return ImageFolderSource(folder, reading="stills").files


def test_numbered_photos_of_one_person_after_another_are_stills_and_a_videos_frames_a_sequence(tmp_path):
    """A lab set renamed to running numbers (one person after another, one framing each, photos apart) was read as
    a video: neighbours differ by a median 12 levels, under the 20 allowed, and 8 of 28 labels were smoothed into
    their neighbours'. A video's neighbours differ more two frames apart than next to each other (motion adds up);
    separate photos about as much, and they jump where the person changes."""
    base = _texture(0)
    drift = [np.ascontiguousarray(base[20:200, 2 * i: 2 * i + 200]) for i in range(30)]  # 2 px a frame
    for step in (1, 2, 3):
        files = _write(tmp_path / f"video{step}", drift[::step], "frame_{:05d}.png")
        seq, why = sequence_evidence(files)
        assert seq, why
    rng = np.random.default_rng(1)
    photos = []  # 4 people, 7 photos each, each at its own small shift (not a path through time)
    for person in range(4):
        t = _texture(10 + person)
        for _ in range(7):
            dy, dx = rng.integers(0, 6, 2)
            photos.append(np.ascontiguousarray(t[10 + dy: 190 + dy, 20 + dx: 220 + dx]))
    near = [float(np.mean(cv2.absdiff(a, b))) for a, b in zip(photos, photos[1:], strict=False)]
    assert np.median(near) <= 20  # alike enough for the old rule: read as a video
    seq, why = sequence_evidence(_write(tmp_path / "lab", photos))
    assert not seq and ("jump" in why or "about as much" in why), why
    one_person = photos[:7] * 2  # no jump: told by the growth alone
    seq, why = sequence_evidence(_write(tmp_path / "one", one_person))
    assert not seq and "about as much" in why, why


def test_the_verdict_on_neighbours():
    assert judge_neighbours([1.0] * 16, [1.0] * 8)[0]  # a still scene: noise alone between frames
    ok, why = judge_neighbours([8.0] * 16, [1.8] * 8)
    assert ok and "1.8 times that two apart" in why and "--images stills" in why
    ok, why = judge_neighbours([8.0] * 16, [1.1] * 8)
    assert not ok and "about as much" in why
    ok, why = judge_neighbours([8.0] * 14 + [60.0, 64.0], [1.8] * 8)  # two jumps: a next person, twice
    assert not ok and "2 of the 16 neighbours looked at jump" in why
    assert judge_neighbours([8.0] * 15 + [60.0], [1.8] * 8)[0]  # one jump: a video's cut
    assert not judge_neighbours([25.0] * 16, [1.8] * 8)[0]  # differ as separate pictures do
    assert not judge_neighbours([8.0], [])[0]  # two pictures that differ: too few to tell


def test_when_auto_reads_a_folder_as_a_sequence_it_warns_and_says_how_to_read_stills(tmp_path, caplog):
    base = _texture(0)
    _write(tmp_path / "video", [np.ascontiguousarray(base[20:200, 2 * i: 2 * i + 200]) for i in range(12)],
           "frame_{:05d}.png")
    with caplog.at_level(logging.WARNING):
        src = ImageFolderSource(tmp_path / "video")
    assert src.reading == "sequence" and "--images stills" in src.reading_why
    assert "read as a video's frame sequence" in caplog.text and "--images stills" in caplog.text


def _clip_frames(name: str, n: int) -> List[np.ndarray]:
    import av

    with av.open(str(shared_video(name))) as c:
        return [f.to_ndarray(format="bgr24") for _, f in zip(range(n), c.decode(video=0), strict=False)]


def _face_crop(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = int(0.6 * min(h, w))
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(cv2.cvtColor(img[y:y + s, x:x + s], cv2.COLOR_BGR2GRAY), (256, 256), interpolation=cv2.INTER_AREA)


def test_real_frame_dumps_are_sequences_and_a_posed_set_of_their_people_is_stills(tmp_path):
    """On the shared clips: frames written out at the native rate and at every 2nd and 3rd frame (10-15 fps), as
    PNG and JPEG, are sequences; the probe's stand-in for a lab set (4 people, one framing each, a photo every 20th
    frame, 256² grey, renamed 0001.png…) is stills."""
    lab: List[np.ndarray] = []
    for clip, count in (("liveportrait_driving_d3.mp4", 12), ("liveportrait_driving_d0.mp4", 4),
                        ("pyfeat_single_face.mp4", 4), ("liveportrait_driving_d5.mp4", 8)):
        lab += [_face_crop(img) for img in _clip_frames(clip, 20 * count)[::20][:count]]
    seq, why = sequence_evidence(_write(tmp_path / "lab", lab))
    assert not seq, why
    for clip in ("sadtalker_WDA_KatieHill_000.mp4", "liveportrait_driving_d3.mp4"):
        frames = [cv2.resize(f, (320, 320 * f.shape[0] // f.shape[1]), interpolation=cv2.INTER_AREA)
                  for f in _clip_frames(clip, 90)]
        for step in (1, 2, 3):
            for ext in ("png", "jpg"):
                seq, why = sequence_evidence(_write(tmp_path / f"{clip}{step}{ext}", frames[::step],
                                                    "frame_{:04d}." + ext))
                assert seq, (clip, step, ext, why)


# --- F8: a single picture decoded as in a folder -----------------------------------------------------------------

def _with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an EXIF block holding only an Orientation tag (0x0112)."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM" + struct.pack(">HI", 42, 8) + ifd
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_a_single_picture_is_decoded_as_a_folder_decodes_it(tmp_path):
    """A picture given alone was decoded by FFmpeg, in a folder (and by analyze_image) by OpenCV: colour JPEG
    pixels differed by up to 12 levels, and 1 of 30 FER faces read another label. docs/csv.md says both are read
    the same way; now they are, EXIF orientation included."""
    import av

    from facecycle.imageio import read_image
    from realtime.sources import open_source

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 2)
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    for name, data in (("plain.jpg", jpeg), ("turned.jpg", _with_orientation(jpeg, 6))):
        p = tmp_path / name
        p.write_bytes(data)
        with av.open(str(p)) as c:  # FFmpeg's own decode differs (the test means something)
            ffmpeg = next(c.decode(video=0)).to_ndarray(format="bgr24")
        with open_source(str(p)) as src:
            assert src.stills
            alone = next(iter(src)).image
            folder = read_image(p)
            assert alone.shape == folder.shape and np.array_equal(alone, folder), name
            assert (src.describe()["width"], src.describe()["height"]) == (folder.shape[1], folder.shape[0])
        if name == "plain.jpg" and ffmpeg.shape == folder.shape:
            assert np.abs(ffmpeg.astype(int) - folder).max() > 0
    assert read_image(tmp_path / "turned.jpg").shape[:2] == (160, 120)  # turned upright


def test_the_same_jpeg_alone_and_in_a_folder_gives_the_same_emotions(tmp_path):
    from facecycle_cli import main

    from .conftest import FACE_CLIP, real_frames

    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted): no real face to read")
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, f in enumerate(real_frames(12, size=(640, 360))[::4]):
        cv2.imwrite(str(folder / f"face{i}.jpg"), f, [cv2.IMWRITE_JPEG_QUALITY, 85])
    out = tmp_path / "out"
    alone = sorted(folder.iterdir())
    assert main(["process", *map(str, alone), str(folder), "--images", "stills", "--out-dir", str(out),
                 "--no-video", "--no-progress"]) == 0

    def rows(p: Path) -> List[dict]:
        with open(p, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    in_folder = {r["file"]: r for r in rows(out / "faces.csv")}
    found = 0
    for p in alone:
        (one,) = rows(out / f"{p.stem}.csv")
        other = in_folder[p.name]
        cols = [c for c in one if c.startswith("emotion")] + ["success", "face_x", "face_y", "face_w", "face_h"]
        assert {c: one[c] for c in cols} == {c: other[c] for c in cols}, p.name
        found += one["success"] == "1"
    assert found >= 1


# --- F11: the sidecar's size of a folder of mixed sizes; multi-page TIFFs ---------------------------------------

def test_a_folder_of_mixed_sizes_gives_the_first_pictures_size_and_says_mixed(tmp_path):
    _picture(tmp_path / "mixed" / "a.png", size=(40, 48))
    _picture(tmp_path / "mixed" / "b.png", size=(300, 200))
    src = ImageFolderSource(tmp_path / "mixed", reading="stills")
    list(src)
    info = src.describe()
    assert (info["width"], info["height"], info["mixed_sizes"]) == (48, 40, True)  # it was the last one's, 200x300
    _picture(tmp_path / "same" / "a.png")
    _picture(tmp_path / "same" / "b.png")
    src = ImageFolderSource(tmp_path / "same", reading="stills")
    list(src)
    assert src.describe()["mixed_sizes"] is False


def test_a_multi_page_tiff_is_read_from_its_first_page_and_says_so(tmp_path, caplog):
    d = tmp_path / "tiffs"
    d.mkdir()
    pages = [np.full((32, 32, 3), 40, np.uint8), np.full((64, 64, 3), 200, np.uint8)]
    assert cv2.imwritemulti(str(d / "two.tif"), pages)
    _picture(d / "one.tif")
    with caplog.at_level(logging.WARNING):
        frames = list(ImageFolderSource(d, reading="stills"))
    assert [f.file for f in frames] == ["one.tif", "two.tif"] and int(frames[1].image[0, 0, 0]) == 40
    assert "two.tif: a TIFF of several pages: only its first page is read" in caplog.text
    assert "one.tif: a TIFF" not in caplog.text
