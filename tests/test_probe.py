"""Probes: pose .mat loader, head files, fit + eval on a small FER-2013-layout folder (real images)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from facecycle.probe.datasets import (
    EXPRESSION_CLASSES,
    list_expression,
    list_pose,
    load_image,
    read_pose_mat,
    stratified_split,
)
from facecycle.probe.linear import Head, classification_report, fit_regressor, load_head, save_head
from tests.conftest import FER


def test_pose_mat_loader(tmp_path):
    sio = pytest.importorskip("scipy.io")
    import cv2

    # Pose_Para = pitch, yaw, roll (radians), then translation/scale as in 300W-LP
    sio.savemat(tmp_path / "img1.mat", {"Pose_Para": np.array([[0.1, -0.5, 0.25, 10.0, 20.0, 30.0, 1e-3]])})
    cv2.imwrite(str(tmp_path / "img1.jpg"), np.full((40, 40, 3), 128, np.uint8))
    sio.savemat(tmp_path / "img2.mat", {"Pose_Para": np.array([[0.0, 2.0, 0.0]])})  # yaw 114.6°: dropped
    cv2.imwrite(str(tmp_path / "img2.jpg"), np.full((40, 40, 3), 128, np.uint8))
    yaw, pitch, roll = read_pose_mat(tmp_path / "img1.mat")
    assert yaw == pytest.approx(np.degrees(-0.5)) and pitch == pytest.approx(np.degrees(0.1))
    assert roll == pytest.approx(np.degrees(0.25))
    items = list_pose(tmp_path)
    assert [p.name for p, _ in items] == ["img1.jpg"]
    sio.savemat(tmp_path / "bad.mat", {"other": np.zeros(3)})
    from facecycle.errors import InputError

    with pytest.raises(InputError, match="Pose_Para"):
        read_pose_mat(tmp_path / "bad.mat")


def test_ridge_pose_probe_recovers_linear_angles():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((300, 20)).astype(np.float32)
    w = rng.standard_normal((3, 20))
    t = f @ w.T * 5
    head, _ = fit_regressor(f, t, ("yaw", "pitch", "roll"), {"feature": "test"})
    assert np.abs(head.predict(f) - t).mean() < 0.5


def test_head_roundtrip_and_report(tmp_path):
    rng = np.random.default_rng(0)
    h = Head(rng.standard_normal((7, 5)), rng.standard_normal(7), np.zeros(5), np.ones(5),
             {"task": "expression", "classes": json.dumps(list(EXPRESSION_CLASSES)), "feature_dim": "5"})
    p = save_head(h, tmp_path / "h.safetensors")
    g = load_head(p)
    assert g.classes == list(EXPRESSION_CLASSES) and g.weight.dtype == np.float32
    f = rng.standard_normal((10, 5)).astype(np.float32)
    assert np.allclose(g.predict(f), h.predict(f))
    rep = classification_report(np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 1, 2]), ["a", "b", "c"])
    assert rep["accuracy"] == 0.75 and rep["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert rep["per_class_accuracy"]["b"] == 0.5
    assert rep["accuracy_labelled_classes"] is None and rep["labelled_classes"] is None


def test_classification_report_labelled_classes_only():
    """A test set that labels only some classes (CK+'s six for a seven-class head) also gets the argmax over
    those classes: a face whose top score is an unlabelled class counts by its best labelled class."""
    logits = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.6], [0.1, 0.8, 0.3], [0.0, 0.2, 0.9]])
    rep = classification_report(logits, np.array([0, 2, 0, 2]), ["a", "b", "c"])
    assert rep["accuracy"] == 0.5  # rows 1 and 2 pick the unlabelled "b"
    assert rep["labelled_classes"] == ["a", "c"]
    assert rep["accuracy_labelled_classes"] == 0.75  # row 1 -> c (right), row 2 -> c (wrong)


@pytest.fixture(scope="module")
def fer_small(tmp_path_factory):
    """A FER-2013-layout folder with 12 real train images per class (copied to a temp dir)."""
    if not (FER / "train").is_dir():
        pytest.skip(f"{FER} is absent")
    root = tmp_path_factory.mktemp("fer")
    for c in EXPRESSION_CLASSES:
        files = sorted((FER / "train" / c).glob("*.jpg"))[:12]
        for split, part in (("train", files[:8]), ("test", files[8:])):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for f in part:
                shutil.copy(f, root / split / c / f.name)
    return root


def test_fer_layout_split_and_grayscale(fer_small):
    items = list_expression(fer_small, "train")
    assert len(items) == 56 and {c for _, c in items} == set(range(7))
    tr, va = stratified_split(items, 0.25, seed=0)
    assert len(va) == 14 and not set(tr) & set(va)
    assert sorted(c for _, c in va) == sorted(list(range(7)) * 2)
    assert stratified_split(items, 0.25, seed=0) == (tr, va)
    img = load_image(items[0][0], 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_probe_cli_fit_and_eval_with_exported_model(fer_small, tiny_export, tmp_path):
    from facecycle_cli import main

    _, model_dir = tiny_export
    head = tmp_path / "head.safetensors"
    rc = main(["probe", "fit", "--data", str(fer_small), "--model", str(model_dir), "--val-frac", "0",
               "--weight-decays", "1e-2", "--threads", "1", "--out", str(head), "--no-progress"])
    assert rc == 0
    h = load_head(head)
    assert h.weight.shape[0] == 7 and h.meta["feature"] == "facecycle" and h.meta["config_name"] == "tiny"
    out = tmp_path / "rep.json"
    rc = main(["probe", "eval", "--data", str(fer_small), "--split", "test", "--model", str(model_dir),
               "--head", str(head), "--json", str(out), "--no-progress"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["n"] == 28 and 0.0 <= rep["accuracy"] <= 1.0
    # no --head: the model folder's own head (the shipped one was used, and scored the model as chance); a
    # folder without one is refused
    assert main(["probe", "eval", "--data", str(fer_small), "--split", "test", "--model", str(model_dir),
                 "--no-progress"]) == 2
    import shutil

    own = tmp_path / "with_head"
    shutil.copytree(model_dir, own)
    shutil.copy(head, own / "expression_head.safetensors")
    assert main(["probe", "eval", "--data", str(fer_small), "--split", "test", "--model", str(own),
                 "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["head"] == str(own / "expression_head.safetensors")
    assert json.loads(out.read_text())["accuracy"] == rep["accuracy"]
    assert np.array(rep["confusion_matrix"]).sum() == 28 and len(rep["per_class_accuracy"]) == 7
    # the same head through torch (random-encoder of the same seed is a different feature: refit)
    for base in ("pixels", "random-encoder"):
        bh = tmp_path / f"{base}.safetensors"
        cfg = ["--config", "tiny"] if base == "random-encoder" else []  # a pixel baseline has none (refused)
        assert main(["probe", "fit", "--data", str(fer_small), "--baseline", base, *cfg,
                     "--val-frac", "0", "--weight-decays", "1e-3", "--threads", "1", "--out", str(bh),
                     "--no-progress"]) == 0
        assert main(["probe", "eval", "--data", str(fer_small), "--split", "train", "--val-frac", "0",
                     "--head", str(bh), "--json", str(out), "--no-progress"]) == 0
        # fitted on these very images: far above chance (1/7)
        assert json.loads(out.read_text())["accuracy"] > 0.5
    # a head remembers its framing, and eval uses it unless told otherwise
    assert load_head(bh).meta["framing"] == "auto"
    nh = tmp_path / "none.safetensors"
    assert main(["probe", "fit", "--data", str(fer_small), "--baseline", "pixels", "--framing", "none",
                 "--val-frac", "0", "--weight-decays", "1e-3", "--out", str(nh), "--no-progress"]) == 0
    assert main(["probe", "eval", "--data", str(fer_small), "--split", "test", "--head", str(nh),
                 "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["framing"] == {"framing": "none"}


def test_probe_cli_errors(tmp_path, capsys):
    from facecycle_cli import main

    assert main(["probe", "eval", "--data", str(tmp_path), "--head", str(tmp_path / "nope.safetensors")]) == 3
    assert "no such head file" in capsys.readouterr().err


def test_shipped_default_model_and_head_load_without_flags(fer_small, tmp_path):
    """The packaged model + expression head: found with no flags, ONNX features, 7-class report."""
    from facecycle.assets import default_model_dir
    from facecycle_cli import main

    d = default_model_dir()
    man = json.loads((d / "manifest.json").read_text())
    assert {"analyze", "neutralize", "reexpress"} <= set(man["graphs"])
    head = load_head(d / "expression_head.safetensors")
    assert head.classes == list(EXPRESSION_CLASSES)
    assert head.weight.shape == (7, man["graphs"]["analyze"]["outputs"][0]["shape"][-1])
    total = sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    assert total <= 40 * 2 ** 20
    out = tmp_path / "rep.json"
    assert main(["probe", "eval", "--data", str(fer_small), "--split", "test", "--json", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    rep = json.loads(out.read_text())
    assert rep["n"] == 28 and rep["feature"] == "facecycle"
    assert rep["accuracy_labelled_classes"] is None  # all seven labelled


def test_probe_eval_six_class_set_reports_both_accuracies(fer_small, tmp_path, capsys):
    """A CK+-style set without a neutral folder: the shipped head's report keeps the seven-way accuracy and adds
    the six-way one (argmax over the labelled classes), which is never lower."""
    from facecycle_cli import main

    for c in EXPRESSION_CLASSES:
        if c != "neutral":
            shutil.copytree(fer_small / "test" / c, tmp_path / "six" / "test" / c)
    out = tmp_path / "rep.json"
    assert main(["probe", "eval", "--data", str(tmp_path / "six"), "--split", "test", "--json", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    rep = json.loads(out.read_text())
    assert rep["n"] == 24 and rep["labelled_classes"] == [c for c in EXPRESSION_CLASSES if c != "neutral"]
    assert rep["accuracy_labelled_classes"] >= rep["accuracy"]
    assert "choosing among the 6 labelled classes only" in capsys.readouterr().out


class _BoxDetector:
    """A detector double for the framer's decisions: returns the boxes it was given (or none)."""

    def __init__(self, boxes):
        from realtime.types import Detections

        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.det = Detections(b, np.ones(len(b), np.float32), np.zeros((len(b), 5, 2), np.float32))
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        return self.det

    def describe(self):
        return {"detector": "boxes"}


def test_still_framer_crops_loose_faces_and_keeps_face_crops_whole():
    from realtime.crops import StillFramer, crop_square, loose_square_box

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    small = [100, 60, 160, 130]  # a face whose 1.03 square (72 px) is a third of the image
    f = StillFramer(_BoxDetector([small, [10, 10, 20, 22]]), 1.03, "auto")
    out = f(img)
    sq = loose_square_box(small, 1.03)
    assert np.array_equal(out, crop_square(img, sq, sq[2]))  # the largest face, cut as the pipeline cuts it
    big = [5, 2, 230, 238]  # the square covers the whole height: a square picture already is a face crop
    square = img[:, :240]
    assert f.__class__(_BoxDetector([big]), 1.03, "auto")(square) is square
    near = img[:, :256]  # (within 10 % of square: its own centre square, as the pipeline reads a still)
    assert np.array_equal(StillFramer(_BoxDetector([big]), 1.03, "auto")(near), near[:, 8:248])
    # a 4:3 picture is no face crop: it was squashed whole into a square (a 16:9 frame's face 1.78 times
    # too narrow: 34 % on FER faces enlarged in 640x360 frames, 64 % cut out); now the face's square, as `process`
    wide = StillFramer(_BoxDetector([big]), 1.03, "auto")
    sq = loose_square_box(big, 1.03)
    assert np.array_equal(wide(img), crop_square(img, sq, sq[2])) and wide.counts["cropped"] == 1
    g = StillFramer(_BoxDetector([big]), 1.03, "detect")
    assert g(img).shape[:2] == (loose_square_box(big, 1.03)[2],) * 2
    nf = StillFramer(_BoxDetector([]), 1.03, "auto")
    assert nf(square) is square and nf.counts == {"cropped": 0, "whole": 0, "no_face": 1}
    assert np.array_equal(nf(img), img[:, 40:280]) and nf.found == [False, False]  # not squashed: its centre
    none = StillFramer(_BoxDetector([small]), 1.03, "none")
    assert none(img) is img and none.detector.calls == 0
    assert f.counts == {"cropped": 1, "whole": 0, "no_face": 0} and f.found == [True]
    assert f.describe()["framing"] == "auto" and f.describe()["detector"] == "boxes"
    with pytest.raises(ValueError):
        StillFramer(_BoxDetector([]), 1.03, "tight")


@pytest.fixture(scope="module")
def video_stills(tmp_path_factory):
    """Real full frames of the held-out clips (every 25th of the first 300), labelled with their clip's
    emotion, as a `<root>/test/<class>/*.png` still dataset (``scripts/eval_stills.py``'s own frame dump): faces
    at a looser framing than FER-2013's."""
    import csv
    import sys

    from tests.conftest import ROOT, SHARED

    clips = ROOT / "benchmarks" / "heldout_clips.csv"
    if not all((SHARED / "data" / r["clip"]).is_file() for r in csv.DictReader(clips.open())):
        pytest.skip(f"the held-out clips are absent under {SHARED / 'data'}")
    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_stills import dump_frames

    root = tmp_path_factory.mktemp("stills")
    assert dump_frames(clips, SHARED / "data", root, every=25, max_frames=300) > 90
    return root


def test_probe_framing_reads_loose_stills_better(video_stills, tmp_path):
    """`probe eval --framing auto` (the default) cuts the face out as the pipeline does: on real video frames
    the shipped head reads the clips' emotions far better than from the squashed whole frame (measured on the
    full set: 0.65 against 0.49, `benchmarks/2026-12-03-xeon6/stills_framing.json`)."""
    from facecycle_cli import main

    rep = {}
    for fr in ("none", "auto"):
        out = tmp_path / f"{fr}.json"
        assert main(["probe", "eval", "--data", str(video_stills), "--split", "test", "--framing", fr,
                     "--json", str(out), "--no-progress"]) == 0
        rep[fr] = json.loads(out.read_text())
    assert rep["none"]["framing"] == {"framing": "none"}
    fa = rep["auto"]["framing"]
    assert fa["cropped"] >= 0.8 * rep["auto"]["n"] and fa["crop_scale"] == pytest.approx(1.03)
    assert rep["auto"]["accuracy"] >= rep["none"]["accuracy"] + 0.08


def test_probe_auto_framing_keeps_fer_crops_whole(fer_small, tmp_path):
    """FER-2013's faces already are crops at the model's framing: auto framing uses most of them whole."""
    from facecycle_cli import main

    out = tmp_path / "rep.json"
    assert main(["probe", "eval", "--data", str(fer_small), "--split", "test", "--json", str(out),
                 "--no-progress"]) == 0
    fa = json.loads(out.read_text())["framing"]
    assert fa["framing"] == "auto" and fa["whole"] + fa["no_face"] >= 0.75 * 28


def test_expression_layout_reads_tiff_and_pgm_stills(tmp_path):
    """JAFFE ships .tiff, some older sets .pgm: the probe lists and reads them like any image."""
    import cv2

    for c, name in (("happy", "KA.HA1.29.tiff"), ("sad", "KA.SA1.33.tif"), ("neutral", "s1.pgm")):
        (tmp_path / "test" / c).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "test" / c / name), np.full((256, 256), 90, np.uint8))
    items = list_expression(tmp_path, "test")
    assert sorted(c for _, c in items) == [3, 4, 5]
    assert all(load_image(p, 64).shape == (64, 64, 3) for p, _ in items)


def test_16_bit_images_of_8_bit_values_are_read_as_they_are_and_8_bit_ones_as_before(tmp_path):
    """A 16-bit TIFF or PNG holding 0-255 values (8-bit data saved 16-bit) decoded all black (OpenCV's colour read
    shifts 16-bit values right by 8): 70 such FER faces scored 14.3 % (one class), read as 8-bit 64.3 %. Values
    beyond 255 are scaled by 1/257; 8-bit files decode as before; a file's EXIF orientation is still applied."""
    import importlib.util

    import cv2

    from facecycle.imageio import read_image

    g = np.random.default_rng(0).integers(0, 250, (48, 40), dtype=np.uint8)
    for name in ("small.tif", "small.png"):
        cv2.imwrite(str(tmp_path / name), g.astype(np.uint16))
        assert (read_image(tmp_path / name) == g[:, :, None]).all() and (read_image(tmp_path / name, True) == g).all()
    wide = np.arange(48 * 40, dtype=np.uint16).reshape(48, 40) * 34  # up to 65,246
    cv2.imwrite(str(tmp_path / "wide.png"), wide)
    assert (read_image(tmp_path / "wide.png", True) == np.round(wide / 257.0).astype(np.uint8)).all()
    cv2.imwrite(str(tmp_path / "eight.png"), cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))
    img = read_image(tmp_path / "eight.png")
    assert img.dtype == np.uint8 and img.shape == (48, 40, 3) and (img == g[:, :, None]).all()
    (tmp_path / "test" / "happy").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "test" / "happy" / "a.tif"), g.astype(np.uint16))
    items = list_expression(tmp_path, "test")
    assert (load_image(items[0][0], 48)[:, :, 0] == cv2.resize(g, (48, 48), interpolation=cv2.INTER_LINEAR)).all()
    if importlib.util.find_spec("PIL") is not None:  # EXIF orientation 6 (turn 90° clockwise) on a 16-bit file
        from PIL import Image

        band = np.zeros((20, 40), np.uint16)
        band[:, :10] = 200
        Image.fromarray(band).save(tmp_path / "turned.tif", tiffinfo={274: 6})
        turned = read_image(tmp_path / "turned.tif", True)
        assert turned.shape == (40, 20) and (turned[:10] == 200).all() and (turned[10:] == 0).all()


def test_expression_layout_accepts_other_class_names_and_skips_nothing(tmp_path):
    """RAF-DB / AffectNet / CK+ write-ups name folders Anger, Happiness, Surprised...: they map to the classes,
    case-insensitively (a folder `Happy` used to pass the check and then be skipped on a case-sensitive disk)."""
    import cv2

    from facecycle.errors import InputError

    for c in ("Anger", "Happy", "sadness", "SURPRISED"):
        (tmp_path / "test" / c).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(tmp_path / "test" / c / f"{k}.png"), np.full((48, 48), 90, np.uint8))
    items = list_expression(tmp_path, "test")
    assert sorted(c for _, c in items) == [0, 0, 3, 3, 5, 5, 6, 6]
    (tmp_path / "test" / "happiness").mkdir()
    with pytest.raises(InputError, match="both name the class 'happy'"):
        list_expression(tmp_path, "test")
    (tmp_path / "test" / "happiness").rmdir()
    (tmp_path / "test" / "contempt").mkdir()
    with pytest.raises(InputError, match="unknown class folders \\['contempt'\\]"):
        list_expression(tmp_path, "test")
    # CK+48's layout: the class folders at the top, contempt among them, no split folder. It was told "test: no such
    # directory" instead of what to move out
    with pytest.raises(InputError, match="unknown class folders \\['contempt'\\].*move the others out"):
        list_expression(tmp_path / "test", "test")


def test_a_class_bias_shifts_one_class_and_is_relative_to_the_fit(tmp_path):
    from facecycle.errors import InputError
    from facecycle.probe.linear import parse_class_bias, with_class_bias

    rng = np.random.default_rng(0)
    meta = {"task": "expression", "classes": json.dumps(list(EXPRESSION_CLASSES))}
    fit = Head(rng.normal(size=(7, 5)), rng.normal(size=7), np.zeros(5), np.ones(5), meta)
    x = rng.normal(size=(50, 5)).astype(np.float32)
    k = EXPRESSION_CLASSES.index("sad")
    biased = with_class_bias(fit, {"sad": 0.25})
    diff = biased.predict(x) - fit.predict(x)
    assert np.allclose(diff[:, k], 0.25, atol=1e-5) and np.allclose(np.delete(diff, k, 1), 0.0, atol=1e-6)
    assert json.loads(biased.meta["class_bias"]) == {"sad": 0.25}
    save_head(biased, tmp_path / "h.safetensors")
    again = with_class_bias(load_head(tmp_path / "h.safetensors"), {"sad": 0.25})  # twice: no change
    assert np.allclose(again.bias, biased.bias, atol=1e-6)
    restored = with_class_bias(again, {})
    assert np.allclose(restored.bias, fit.bias, atol=1e-6) and "class_bias" not in restored.meta
    with pytest.raises(InputError, match="unknown classes"):
        with_class_bias(fit, {"sadness": 1.0})
    assert parse_class_bias(["sad=0.25", "fear=-1"]) == {"sad": 0.25, "fear": -1.0}
    for bad in ("sad", "sad=", "=0.3", "sad=high"):
        with pytest.raises(InputError, match="expected CLASS=B"):
            parse_class_bias([bad])


def test_the_split_folder_in_any_case_the_split_folder_itself_and_the_official_csv(tmp_path):
    """`--data` as people hold FER-2013: `<data>/Test/<class>`, the `test/` folder itself, or the official
    `fer2013.csv` (emotion 0-6 in its own order, 2,304 pixels, Usage). Each used to end in "no such directory"."""
    import csv

    import cv2

    from facecycle.errors import InputError
    from facecycle.probe.run import expression_items

    rng = np.random.default_rng(0)
    faces = {c: rng.integers(0, 256, (48, 48), dtype=np.uint8) for c in ("happy", "sad", "neutral")}
    for c, img in faces.items():
        (tmp_path / "data" / "Test" / c).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "data" / "Test" / c / "a.png"), img)
    want = [3, 4, 5]
    assert sorted(c for _, c in list_expression(tmp_path / "data", "test")) == want
    assert sorted(c for _, c in list_expression(tmp_path / "data" / "Test", "test")) == want
    with pytest.raises(InputError, match="no such directory"):
        list_expression(tmp_path / "data", "val")
    official = {"happy": 3, "sad": 4, "neutral": 6}  # fer2013.csv's label order differs from the head's
    with open(tmp_path / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for c, img in faces.items():
            w.writerow([official[c], " ".join(map(str, img.reshape(-1))), "PrivateTest"])
            w.writerow([official[c], " ".join(map(str, img.reshape(-1))), "Training"])
        w.writerow([0, " ".join(["7"] * 2304), "PublicTest"])
    items = list_expression(tmp_path / "fer2013.csv", "test")
    assert sorted(c for _, c in items) == [0, *want]
    by_class = {c: load_image(p, 48)[:, :, 0] for p, c in items}
    assert all((by_class[EXPRESSION_CLASSES.index(c)] == img).all() for c, img in faces.items())
    assert len(list_expression(tmp_path / "fer2013.csv", "privatetest")) == 3
    assert len(expression_items(tmp_path / "fer2013.csv", "train", val_frac=0.0)) == 3
    with pytest.raises(InputError, match="not in fer2013.csv"):
        list_expression(tmp_path / "fer2013.csv", "dev")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not the FER-2013 CSV"):
        list_expression(tmp_path / "other.csv", "test")


def test_a_test_set_as_people_keep_it_nested_with_stray_and_damaged_files(tmp_path, caplog):
    """CK+ keeps one folder per subject inside each class (`happy/S005/…png`); folders copied off a Mac or out of
    Jupyter carry `._x.jpg` and `.ipynb_checkpoints`; a download may hold an empty or damaged file. Nested images
    used to be left out without a word (a score on the few top-level ones), a dot-folder stopped the run as an
    unknown class, and one damaged file ended the evaluation with no score at all."""
    import cv2

    from facecycle_cli import main

    rng = np.random.default_rng(0)
    test = tmp_path / "ck" / "test"
    for c in ("Happy", "Sadness", "SU"):  # SU: JAFFE's code for surprise
        for s in ("S005", "S010"):
            (test / c / s).mkdir(parents=True)
            for k in range(2):
                cv2.imwrite(str(test / c / s / f"{k}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    (test / "Happy" / "top.png").write_bytes((test / "Happy" / "S005" / "0.png").read_bytes())
    (test / "Happy" / "._top.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (test / ".ipynb_checkpoints").mkdir()
    (test / "Sadness" / "S005" / ".hidden").mkdir()
    (test / "Sadness" / "S005" / ".hidden" / "x.png").write_bytes(b"")
    (test / "Happy" / "S010" / "anim.gif").write_bytes(b"GIF89a")
    (test / "Happy" / "S010" / "empty.jpg").write_bytes(b"")
    (test / "SU" / "S005" / "text.png").write_text("not a picture")
    with caplog.at_level("WARNING"):
        items = list_expression(tmp_path / "ck", "test")
    assert sorted(c for _, c in items) == [3] * 6 + [5] * 4 + [6] * 5  # 13 pictures + 2 that will not decode
    assert all(not any(part.startswith(".") for part in p.parts[-3:]) for p, _ in items)
    assert ".gif 1" in caplog.text
    out = tmp_path / "rep.json"
    rc = main(["probe", "eval", "--data", str(tmp_path / "ck"), "--split", "test", "--framing", "none",
               "--json", str(out), "--no-progress"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["n"] == 13 and rep["n_unreadable"] == 2
    assert sorted(p.rsplit("/", 1)[-1] for p in rep["unreadable"]) == ["empty.jpg", "text.png"]
    assert np.array(rep["confusion_matrix"]).sum() == 13


def test_images_not_sorted_into_class_folders_or_a_file_as_data_say_what_to_do(tmp_path):
    """JAFFE ships one flat folder (`KA.HA1.29.tiff`), RAF-DB `Image/aligned/` with a label list: both were
    "<data>/test: no such directory"; a `.zip` or one picture given as --data was "no such directory" too."""
    import zipfile

    import cv2

    from facecycle.errors import InputError

    img = np.full((48, 48), 90, np.uint8)
    jaffe = tmp_path / "jaffe"
    jaffe.mkdir()
    for name in ("KA.HA1.29.tiff", "KA.SA1.33.tiff", "KM.NE2.3.tiff"):
        cv2.imwrite(str(jaffe / name), img)
    (jaffe / "README.txt").write_text("labels in the names")
    with pytest.raises(InputError, match=r"jaffe: holds 3 images but no class folders \(and no test/ folder\): sort "
                                         r"the images into <class>/ folders \(angry, "):
        list_expression(jaffe, "test")
    raf = tmp_path / "rafdb"
    (raf / "Image" / "aligned").mkdir(parents=True)
    (raf / "EmoLabel").mkdir()
    (raf / "EmoLabel" / "list_patition_label.txt").write_text("test_0001.jpg 4\ntest_0002.jpg 7\n")
    for k in (1, 2):
        cv2.imwrite(str(raf / "Image" / "aligned" / f"test_000{k}_aligned.jpg"), img)
    with pytest.raises(InputError, match=r"rafdb: holds 2 images \(in Image/aligned/\) but no class folders"):
        list_expression(raf, "test")
    # the split's folder itself unsorted: was "no images found (in no class folder; ...)"
    (tmp_path / "flat" / "test").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "flat" / "test" / "a.png"), img)
    with pytest.raises(InputError, match=r"test: holds 1 image but no class folders: sort the images into <class>/"):
        list_expression(tmp_path / "flat", "test")
    with zipfile.ZipFile(tmp_path / "fer.zip", "w") as z:
        z.write(jaffe / "KA.HA1.29.tiff", "test/happy/KA.HA1.29.tiff")
    for f in (tmp_path / "fer.zip", jaffe / "KA.HA1.29.tiff"):
        with pytest.raises(InputError, match=r"is a file, not a folder \(unpack archives first"):
            list_expression(f, "test")
    with pytest.raises(InputError, match="missing: no such directory"):  # a path that is not there: as before
        list_expression(tmp_path / "missing", "test")


def test_a_symlink_loop_in_a_class_folder_is_read_once(tmp_path, caplog):
    """A link back up inside a class folder (`surprise/sub/up -> ..`) was walked until the path grew too long: its
    3 images read as 123 (41 times), the set of 15 as 135, and the deepest link counted as a stray file."""
    import os

    import cv2

    from facecycle.files import visible_files

    test = tmp_path / "test"
    for c in ("happy", "surprise"):
        (test / c).mkdir(parents=True)
        for k in range(2):
            cv2.imwrite(str(test / c / f"{k}.png"), np.full((48, 48), 40 * k, np.uint8))
    (test / "surprise" / "sub").mkdir()
    cv2.imwrite(str(test / "surprise" / "sub" / "deep.png"), np.zeros((48, 48), np.uint8))
    os.symlink("..", test / "surprise" / "sub" / "up")
    os.symlink(test / "happy", tmp_path / "happy_again")  # outside the set: a second link to a folder
    with caplog.at_level("WARNING"):
        items = list_expression(tmp_path, "test")
    assert sorted(c for _, c in items) == [3, 3, 6, 6, 6]
    assert "sub/up leads to" in caplog.text and "a symlink loop" in caplog.text
    assert caplog.text.count("symlink loop") == 1 and "not read as images" not in caplog.text
    assert len(visible_files(test / "surprise", follow_links=True)) == 3
    assert len(visible_files(tmp_path, follow_links=True)) == 5  # happy_again -> test/happy: read once


def test_the_unreadable_list_in_the_json_is_utf8_for_names_that_are_not(tmp_path):
    """A file name that is not valid UTF-8 (`caf\\xe9.jpg`) went into the JSON's `unreadable` list as a lone
    surrogate (`\\udce9`), which strict JSON readers refuse; it is written as the name's bytes escaped."""
    import os
    from pathlib import Path

    from facecycle.files import json_text
    from facecycle.probe.run import _unreadable_report

    name = Path(os.fsdecode(b"caf\xe9.jpg"))
    rep = json.loads(json_text(_unreadable_report([(Path("ok.jpg"), 3), (name, 4)], [1])))
    assert rep == {"n_unreadable": 1, "unreadable": ["caf\\xe9.jpg"]}
    assert json_text(rep).encode("utf-8") and rep["unreadable"][0].encode("utf-8", "strict")


def test_the_fer_csv_in_its_folder_with_a_byte_order_mark_or_the_challenges_spaced_header(tmp_path):
    """The Kaggle archive unpacks to `fer2013/fer2013.csv`, the challenge's file is `icml_face_data.csv` with the
    header `emotion, Usage, pixels`, and a CSV saved by a spreadsheet may start with a byte-order mark: all read
    as the official CSV (the folder was "no such directory", the other two "not the FER-2013 CSV")."""
    from facecycle.probe.run import expression_items

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, 48 * 48).astype(np.uint8)
    px = " ".join(map(str, img))
    rows = [(3, "PrivateTest"), (4, "PublicTest"), (6, "Training"), (0, "Training")]  # happy, sad, neutral, angry
    (tmp_path / "fer2013").mkdir()
    with open(tmp_path / "fer2013" / "icml_face_data.csv", "w", encoding="utf-8-sig") as f:
        f.write("emotion, Usage, pixels\n")
        for e, u in rows:
            f.write(f"{e}, {u}, {px}\n")
    for data in (tmp_path / "fer2013", tmp_path / "fer2013" / "icml_face_data.csv"):
        items = list_expression(data, "test")
        assert sorted(c for _, c in items) == [3, 5]
        assert (load_image(items[0][0], 48)[:, :, 0] == img.reshape(48, 48)).all()
        assert sorted(c for _, c in expression_items(data, "train", val_frac=0.0)) == [0, 4]


def test_a_fer_csv_with_bad_values_or_lower_case_usage(tmp_path):
    """A pixel value that is no whole number 0-255 ("x", "300", "204.0") ended in "internal error: ValueError" or
    OverflowError; a CSV with lower-case Usage values was "no rows of PublicTest / PrivateTest" (now read), and where
    no row has the split's Usage the values found are named."""
    from facecycle.errors import InputError

    px = " ".join(["7"] * 2304)

    def write(name: str, rows) -> object:
        path = tmp_path / name
        path.write_text("emotion,pixels,Usage\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows))
        return path

    good = [(3, px, "PrivateTest"), (4, px, "Training")]
    for bad in ("7 x " + " ".join(["7"] * 2302), "300 " + " ".join(["7"] * 2303), " ".join(["204.0"] * 2304),
                "-1 " + " ".join(["7"] * 2303), "99999999999999999999 " + " ".join(["7"] * 2303)):
        path = write("bad.csv", [*good, (6, bad, "PublicTest")])
        with pytest.raises(InputError, match=r"bad.csv: line 4: expected an emotion 0-6 and 2,304 pixel values "
                                             r"0-255$"):
            list_expression(path, "test")
    lower = write("lower.csv", [(3, px, "privatetest"), (4, px, "publicTest"), (6, px, "training")])
    assert sorted(c for _, c in list_expression(lower, "test")) == [3, 5]
    other = write("other.csv", [(3, px, "Train"), (4, px, "Train"), (6, px, "Val")])
    with pytest.raises(InputError, match=r"no rows of PublicTest / PrivateTest \(Usage values found: Train 2, Val 1\)"):
        list_expression(other, "test")


def test_the_challenge_archive_folder_reads_its_fer_csv_beside_the_others(tmp_path):
    """The Kaggle challenge's archive holds icml_face_data.csv beside train.csv (emotion, pixels), test.csv
    (pixels) and example_submission.csv: it was refused ("test: no such directory"), as a folder of one CSV only
    was read. The one CSV with emotion, pixels and Usage is read; none or several: one line naming the CSVs."""
    from facecycle.errors import InputError
    from facecycle.probe.run import expression_items

    px = " ".join(["9"] * 2304)
    d = tmp_path / "challenges-in-representation-learning-facial-expression-recognition-challenge"
    d.mkdir()
    (d / "icml_face_data.csv").write_text(f"emotion, Usage, pixels\n3, PrivateTest, {px}\n0, Training, {px}\n")
    (d / "train.csv").write_text(f"emotion,pixels\n0,{px}\n")
    (d / "test.csv").write_text(f"pixels\n{px}\n")
    (d / "example_submission.csv").write_text("id,emotion\n")
    assert [c for _, c in list_expression(d, "test")] == [3]
    assert [c for _, c in expression_items(d, "train", val_frac=0.0)] == [0]
    (d / "icml_face_data.csv").rename(d / "icml.txt")
    with pytest.raises(InputError, match=r"none of its 3 CSVs \(example_submission.csv, test.csv, train.csv\) is the "
                                         r"FER-2013 CSV"):
        list_expression(d, "test")
    (d / "icml.txt").rename(d / "icml_face_data.csv")
    (d / "fer2013.csv").write_text(f"emotion,pixels,Usage\n3,{px},PublicTest\n")
    with pytest.raises(InputError, match=r"2 FER-2013 CSVs \(fer2013.csv, icml_face_data.csv\): give one as --data"):
        list_expression(d, "test")


def test_probe_eval_scores_a_head_on_its_own_split_features_and_class_names(fer_small, tiny_export, tmp_path,
                                                                           caplog):
    """A head fitted with --seed 1 was scored on seed 0's "val" (mostly images it was fitted on); a head fitted on
    one model's features was scored on another's without a word; a head whose rows are in another class order was
    scored by position (75.7 % read 42.9 %); a fit on one class, a negative L2 strength or --val-frac 1 ended in
    a meaningless head or an internal error."""
    from safetensors.numpy import save_file

    from facecycle_cli import main

    _, model_dir = tiny_export
    head = tmp_path / "h.safetensors"
    common = ["--data", str(fer_small), "--model", str(model_dir), "--threads", "1", "--no-progress"]
    assert main(["probe", "fit", *common, "--seed", "1", "--val-frac", "0.25", "--weight-decays", "1e-2",
                 "--out", str(head)]) == 0
    h = load_head(head)
    assert h.meta["seed"] == "1" and h.meta["feature_source"] == str(model_dir) and len(h.meta["feature_sha"]) == 16
    out = tmp_path / "r.json"
    assert main(["probe", "eval", *common, "--split", "val", "--head", str(head), "--json", str(out)]) == 0
    own = json.loads(out.read_text())
    assert own["n"] == 14  # seed 1's 25 %: 2 of each class
    # the same head in another class order, rows and names together: the same score
    perm = [4, 0, 1, 2, 3, 6, 5]
    meta = dict(h.meta, classes=json.dumps([EXPRESSION_CLASSES[i] for i in perm]))
    shuffled = tmp_path / "shuffled.safetensors"
    save_file({"weight": h.weight[perm], "bias": h.bias[perm], "mean": h.mean, "std": h.std}, str(shuffled),
              metadata=meta)
    assert main(["probe", "eval", *common, "--split", "val", "--head", str(shuffled), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["accuracy"] == own["accuracy"]
    # scored on the shipped model's features: said
    caplog.clear()
    with caplog.at_level("WARNING"):
        main(["probe", "eval", "--data", str(fer_small), "--split", "val", "--head", str(head), "--no-progress"])
    assert "fitted on the features of" in caplog.text or "expects" in caplog.text
    # degenerate fits are refused in one line
    one = tmp_path / "one"
    shutil.copytree(fer_small / "train" / "happy", one / "train" / "happy")
    for bad in (["--data", str(one), "--val-frac", "0"], ["--data", str(fer_small), "--weight-decays", "-1"],
                ["--data", str(fer_small), "--val-frac", "1"], ["--data", str(fer_small), "--threads", "-2"]):
        assert main(["probe", "fit", "--model", str(model_dir), "--no-progress", "--out",
                     str(tmp_path / "x.safetensors"), *bad]) in (2, 3), bad  # usage (2) or data (3), one line
        assert not (tmp_path / "x.safetensors").exists()


def test_pose_probe_reads_split_and_max_train_and_counts_what_it_leaves_out(tmp_path, capsys):
    """`--split`, `--val-frac` and `--max-train` were ignored by `--task pose` without a word, and samples beyond
    ±99° were left out uncounted."""
    sio = pytest.importorskip("scipy.io")
    import cv2

    from facecycle_cli import main

    rng = np.random.default_rng(0)
    for sub, n in (("AFW", 12), ("HELEN", 6)):
        (tmp_path / "lp" / sub).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "lp" / sub / f"{i}.jpg"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
            yaw = 2.0 if i == 0 else rng.uniform(-1, 1)  # the first: 115° of yaw, beyond the protocol's ±99°
            sio.savemat(tmp_path / "lp" / sub / f"{i}.mat", {"Pose_Para": np.array([[0.1, yaw, 0.0]])})
    base = ["probe", "fit", "--task", "pose", "--data", str(tmp_path / "lp"), "--baseline", "pixels",
            "--framing", "none", "--no-progress"]
    out = tmp_path / "h.safetensors"
    assert main(base + ["--max-train", "8", "--out", str(out), "--json", str(tmp_path / "fit.json")]) == 0
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["n_images"] == 8 and fit["n_beyond_max_angle"] == 2
    assert "2 image(s) with an angle beyond ±99° left out" in capsys.readouterr().out
    assert main(base + ["--split", "HELEN", "--out", str(out), "--json", str(tmp_path / "fit.json")]) == 0
    assert json.loads((tmp_path / "fit.json").read_text())["n_images"] == 5
    assert main(["probe", "eval", "--task", "pose", "--data", str(tmp_path / "lp"), "--split", "AFW", "--head",
                 str(out), "--no-progress", "--json", str(tmp_path / "ev.json")]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["n"] == 11 and ev["n_beyond_max_angle"] == 1
    capsys.readouterr()
    for extra, says in ((["--val-frac", "0.2"], "--val-frac holds a part of an expression data set out"),
                        (["--split", "LFPW"], "has no such sub-folder"),
                        (["--config", "tiny"], "--config is the random-encoder baseline's")):
        assert main(base + extra + ["--out", str(tmp_path / "x.safetensors")]) == 2
        assert says in capsys.readouterr().err


def test_a_mirror_invariant_feature_is_fitted_without_mirrored_copies(fer_small, tmp_path, caplog):
    """The shipped feature is the mean of a face's and its mirror's: the mirrored training copies `probe fit` added
    had the very same features (twice the extraction time for the same fit)."""
    import logging

    from facecycle.assets import default_model_dir
    from facecycle.probe.features import OnnxFeatures, PixelFeatures
    from facecycle.probe.run import expression_items, fit_expression

    ex = OnnxFeatures(default_model_dir(), threads=1)
    assert ex.mirror_invariant and not PixelFeatures().mirror_invariant
    img = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(ex(img), ex(np.ascontiguousarray(img[:, :, ::-1])), atol=1e-4)  # what makes it so
    items = expression_items(fer_small, "train", 0.0, 0)
    with caplog.at_level(logging.INFO, logger="facecycle.probe.run"):
        head, info = fit_expression(ex, items, flips=True, wds=[1e-3])
    assert info["flips"] is False and head.meta["flips"] == "False" and "mirror-invariant" in caplog.text
    assert info["n_images"] == len(items)
    _, info = fit_expression(PixelFeatures(), items, flips=True, wds=[1e-3])
    assert info["flips"] is True  # a feature that is not mirror-invariant still gets them


def test_the_score_where_a_face_was_found_is_reported_apart(tmp_path):
    """Images without a face found are read whole (or their centre), a guess the headline mixes in: the report
    gives the accuracy over the images where a face was found, `n_face_found` of them (None without a framer)."""
    import cv2

    from facecycle.probe.features import PixelFeatures
    from facecycle.probe.run import eval_expression, fit_expression
    from realtime.crops import StillFramer

    rng = np.random.default_rng(0)

    def picture(name: str, level: int):  # -> Path
        p = tmp_path / f"{name}.png"
        cv2.imwrite(str(p), np.clip(rng.normal(level, 20, (48, 48)), 0, 255).astype(np.uint8))
        return p

    fit = [(picture(f"fit{k}", (40, 200)[k % 2]), (0, 3)[k % 2]) for k in range(12)]
    ex = PixelFeatures(16)
    head, _ = fit_expression(ex, fit, flips=False, wds=[1e-3], classes=("angry", "disgust", "fear", "happy",
                                                                        "neutral", "sad", "surprise"))
    # the images where no face will be found (every second one) look like the other class: read wrong
    items = [(picture(f"ev{k}", (40, 200)[(k // 2 + k % 2) % 2]), (0, 3)[(k // 2) % 2]) for k in range(12)]

    class _EveryOther(_BoxDetector):
        def detect(self, image):
            from realtime.types import Detections

            self.calls += 1
            d = self.det
            return d if self.calls % 2 else Detections(d.boxes[:0], d.scores[:0], d.landmarks[:0])

    framer = StillFramer(_EveryOther([[4, 4, 44, 44]]), 1.03, "auto")
    rep = eval_expression(ex, head, items, framer=framer)
    assert rep["n_face_found"] == 6 and framer.found == [True, False] * 6
    assert rep["accuracy_face_found"] == pytest.approx(1.0) and rep["accuracy"] == pytest.approx(0.5)
    assert eval_expression(ex, head, items)["n_face_found"] is None
