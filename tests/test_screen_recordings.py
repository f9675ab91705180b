"""Screen recordings and video-call recordings (a probe's findings F2, F3, F4): small faces in a large frame that
come later or sit at the detector's limit, and the head pose of a face in an inset or gallery tile.

The media are real clips' frames scaled into a large canvas (../shared; skipped where it is absent), a few
frames at a low frame rate to keep the runs short on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import math

import av
import numpy as np
import pytest

from facecycle_cli import main as cli_main

from .conftest import VIDEOS, write_video


def _frames(name: str, n: int, side: int) -> list:
    """The first ``n`` frames of a shared clip, resized to ``side`` x ``side`` (BGR)."""
    import cv2

    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared not mounted)")
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="bgr24") for f, _ in zip(c.decode(video=0), range(n), strict=False)]
    frames += frames[::-1] * (n // max(len(frames), 1))  # (a clip shorter than n: back and forth)
    return [cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames[:n]]


def _rows(path) -> list:
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r["success"] == "1"]


@pytest.mark.slow
@pytest.mark.shared
def test_the_detection_size_is_raised_again_for_smaller_faces_that_come_later(tmp_path, caplog, capsys):
    """A desktop recording with a 200-px webcam inset (face about 95 px in 1080p: the size is raised to 672 px),
    then a meeting's screen-share view with four 90-px participant thumbnails (faces of 35-47 px). The run stopped
    looking at its first raise, so the thumbnails were found at 672 px or not at all (the probe: 265 of 800 rows, one
    person none, no warning). The looks go on after a raise: the look at 4 s raises the size again, with a second
    warning, and the sidecar lists both raises."""
    fps, n = 5, 25  # detections every second; looks at 0, 2 and 4 s; the thumbnails from 3 s
    me = _frames("videoretalking_face_2.mp4", n, 200)
    thumbs = [_frames(name, n, 90) for name in ("videoretalking_face_1.mp4", "liveportrait_driving_d10.mp4",
                                                "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
                                                "liveportrait_driving_d14.mp4")]
    frames = []
    for i in range(n):
        img = np.full((1080, 1920, 3), 200, np.uint8)
        img[:60] = 60  # a title bar, a task bar
        img[-40:] = 45
        if i < 3 * fps:
            img[813:1013, 1696:1896] = me[i]
        else:
            img[:, :1700] = 235  # the slide
            for k, t in enumerate(thumbs):
                y = 60 + k * 102
                img[y:y + 90, 1736:1896] = 26
                img[y:y + 90, 1771:1861] = t[i]
        frames.append(img)
    src = write_video(tmp_path / "share.mp4", frames, rate=fps)
    out = tmp_path / "o"
    with caplog.at_level("WARNING"):
        assert cli_main(["process", str(src), "--out-dir", str(out), "--no-video", "--no-progress"]) == 0
    err = capsys.readouterr().err
    # every thumbnail on every frame from the look at 4 s on (frame 20)
    rows = [r for r in _rows(out / "share.csv") if int(r["frame"]) >= 4 * fps and float(r["face_x"]) > 1700]
    per_tile = {k: {int(r["frame"]) for r in rows if 60 + k * 102 <= float(r["face_y"]) + float(r["face_h"]) / 2
                    < 60 + k * 102 + 90} for k in range(4)}
    assert all(v == set(range(4 * fps, n)) for v in per_tile.values()), (per_tile, err)
    said = [m for m in caplog.messages if "detecting at" in m]
    side = json.loads((out / "share.json").read_text())["detect_size"]
    raises = side.get("raises", [])
    assert len(raises) == 2 and len(said) == 2, (side, said, err)
    assert raises[0]["frame"] == 0 and raises[0]["from"] == 320 and raises[0]["size"] > 320
    assert raises[1]["frame"] == 4 * fps and raises[1]["from"] == raises[0]["size"] and raises[1]["size"] > 1280
    assert side["asked"] == 320 and side["used"] == raises[1]["size"]  # the keys as they were: the size at the end


@pytest.mark.slow
@pytest.mark.shared
def test_a_face_found_at_the_detectors_limit_raises_the_detection_size(tmp_path, caplog):
    """A presenter's inset on slides, the face about 150 px in a 1920-px frame: at the default 320 px it is about
    25 px, found, but at the detector's limit (the probe's 16-px face, score 0.53, dropped out for 15 frames at a
    time: 130 of 1200 rows over 40 s). The look counted only faces it found that the detection had missed, so a face
    found on the look's frame never raised the size. Every face the look finds counts now: under 32 px at the
    current size raises it, at the first look."""
    n = 10
    cam = _frames("sadtalker_WDA_KatieHill_000.mp4", n, 300)  # the face about half the picture: about 150 px
    frames = []
    for i in range(n):
        img = np.full((1080, 1920, 3), 245, np.uint8)
        img[100:140, 150:1500] = 40  # a slide's title
        img[756:1056, 1596:1896] = cam[i]
        frames.append(img)
    src = write_video(tmp_path / "slides.mp4", frames, rate=10)
    from realtime import Analyzer

    with Analyzer(backend="onnxruntime") as an:
        # the face is found at 320 (else this would be the old rule, a face missed there)
        found = an.detector.detect(frames[0])
        assert len(found) == 1 and max(found.boxes[0][2:] - found.boxes[0][:2]) * 320 / 1920 < 32
        with caplog.at_level("WARNING"):
            run = an.process_video(src, csv=tmp_path / "slides.csv", video=None)
            faces = [len(p.faces) for p in run]
        side = run.info["detect_size"]
    assert faces == [1] * n
    first = side["raises"][0]
    assert first["frame"] == 0 and first["faces_missed"] == 0 and first["faces_small"] == 1, side
    assert 320 < side["used"] <= 640 and "at the limit of what it finds" in caplog.text
    assert an.detector.max_side == 320  # the next run starts as asked


@pytest.mark.slow
@pytest.mark.shared
def test_pose_camera_face_reads_an_inset_as_its_own_camera(tmp_path):
    """A face pasted into the corner of a 1080p screen recording read about 20 degrees of pitch and 35 of yaw more
    than the same frames in the middle of the screen: the pose's camera was the whole frame's. `pose_camera="face"`
    puts its principal point at each face's own box centre: the corner and the middle read the same; the sidecar
    says which camera."""
    from realtime import Analyzer

    n = 6
    cam = _frames("videoretalking_face_2.mp4", n, 240)
    srcs = {}
    for where, (y, x) in (("middle", (420, 840)), ("corner", (816, 1656))):
        frames = []
        for i in range(n):
            img = np.full((1080, 1920, 3), 180, np.uint8)
            img[y:y + 240, x:x + 240] = cam[i]
            frames.append(img)
        srcs[where] = write_video(tmp_path / f"{where}.mp4", frames, rate=5)
    pose = {}
    for camera in ("frame", "face"):
        # (a fixed detection size: the same boxes and landmarks in both placements, no look at a larger size)
        with Analyzer(backend="onnxruntime", pose_camera=camera, detect_size=640, adapt_detect_size=False,
                      smooth=False) as an:
            assert an.describe()["pose_camera"] == camera
            for where, src in srcs.items():
                run = an.process_video(src, csv=tmp_path / f"{camera}_{where}.csv", video=None)
                pose[camera, where] = np.degrees(np.median([f.pose for p in run for f in p.faces], axis=0))
                assert json.loads((tmp_path / f"{camera}_{where}.json").read_text())["pose_camera"] == camera
    moved = {c: np.abs(pose[c, "corner"] - pose[c, "middle"]) for c in ("frame", "face")}
    assert moved["frame"][:2].max() > 15, pose  # the whole frame's camera: the place reads as a turn
    assert moved["face"].max() < 3, pose
    assert np.abs(pose["face", "middle"] - pose["frame", "middle"]).max() < 4, pose  # at the centre: the same


@pytest.mark.parametrize("angles", [(0, 0, 0), (0.2, -0.3, 0.1)])
def test_the_face_centred_camera_reads_a_face_in_a_corner_as_its_own_camera_saw_it(angles):
    """A face filmed by its own camera (axis through the face), shown in the corner of a 1080p frame: the frame's
    camera reads its place as a turn; the camera centred on the face reads the angles filmed."""
    import cv2

    from realtime.pose import FACE_MODEL_5, camera_matrix, estimate_pose, euler_to_rotation

    centre = (1750.0, 950.0)
    K = camera_matrix(1920, 1080, centre)
    assert K[0, 2] == 1750.0 and K[1, 2] == 950.0 and K[0, 0] == 1920.0
    assert np.array_equal(camera_matrix(640, 480), camera_matrix(640, 480, (320.0, 240.0)))
    rv, _ = cv2.Rodrigues(euler_to_rotation(angles))
    pts, _ = cv2.projectPoints(FACE_MODEL_5, rv, np.array([[0.0], [-30.0], [3000.0]]), K, None)
    pts = pts.reshape(5, 2)
    assert np.allclose(estimate_pose(pts, 1920, 1080, centre), angles, atol=0.03)
    assert np.abs(estimate_pose(pts, 1920, 1080) - angles).max() > 0.3


def test_pose_camera_option_and_fingerprint():
    """`--pose-camera face` reaches the Analyzer; the batch fingerprint tells it from the frame's camera, whose
    fingerprint is as before the option existed (no key); a wrong value is refused."""
    from facecycle.errors import UsageError
    from facecycle_cli.process_cmd import _add_analyzer_args, analyzer_options
    from realtime import Analyzer
    from realtime.batch import BatchSettings, settings_fingerprint
    from realtime.pose import estimate_pose

    ap = argparse.ArgumentParser()
    _add_analyzer_args(ap)
    assert analyzer_options(ap.parse_args([]))["pose_camera"] == "frame"
    assert analyzer_options(ap.parse_args(["--pose-camera", "face"]))["pose_camera"] == "face"
    with pytest.raises(SystemExit):
        ap.parse_args(["--pose-camera", "tile"])
    base = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5}, video=False))
    framed = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "pose_camera": "frame"}, video=False))
    faced = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "pose_camera": "face"}, video=False))
    assert base[0] == framed[0] != faced[0] and "pose_camera" not in base[1] and faced[1]["pose_camera"] == "face"
    assert "adapt_raise" in base[1]  # the raise's rule is fingerprinted
    with pytest.raises(UsageError, match="pose_camera"):
        Analyzer(pose_camera="tile")
    assert np.isnan(estimate_pose(np.zeros((5, 2)), 640, 480, (math.nan, 0.0))).all()


@pytest.mark.parametrize("angles", [(0.1, 0.7, 0.05), (-0.2, -0.6, 0.1)])
def test_a_known_focal_length_reads_the_rotation_a_face_was_filmed_at(angles):
    """`pose_focal`: a face filmed off centre at a large yaw by a camera of focal length 1500 px in a 1920x1080
    frame reads its filmed rotation given that focal length; the default (the frame's longer side, 1920 px) reads
    it degrees off. The default's camera is the one it was (bit-identical), and so is one given the longer side."""
    import cv2

    from realtime.pose import FACE_MODEL_5, camera_matrix, estimate_pose, euler_to_rotation

    F = 1500.0
    K = camera_matrix(1920, 1080, focal=F)
    assert K[0, 0] == K[1, 1] == F and K[0, 2] == 960.0 and K[1, 2] == 540.0
    assert np.array_equal(camera_matrix(1920, 1080), camera_matrix(1920, 1080, focal=1920))
    assert camera_matrix(1080, 1920, (10.0, 20.0), 700)[0, 0] == 700.0
    rv, _ = cv2.Rodrigues(euler_to_rotation(angles))
    pts, _ = cv2.projectPoints(FACE_MODEL_5, rv, np.array([[300.0], [-150.0], [900.0]]), K, None)
    pts = pts.reshape(5, 2)
    assert pts[:, 0].min() > 1300 and pts[:, 1].max() < 450  # up and to the right of the frame's centre
    err = np.degrees(np.abs(estimate_pose(pts, 1920, 1080, focal=F) - angles))
    assert err.max() < 0.5, err
    default = estimate_pose(pts, 1920, 1080)
    assert np.degrees(abs(default[1] - angles[1])) > 2.0, np.degrees(default - angles)  # yaw measurably off
    assert np.array_equal(default, estimate_pose(pts, 1920, 1080, focal=1920.0))
    assert np.array_equal(default, estimate_pose(pts, 1920, 1080, None, None))
    for bad in (0.0, -5.0, math.nan, math.inf):  # no camera: no pose (the Analyzer refuses these first)
        assert np.isnan(estimate_pose(pts, 1920, 1080, focal=bad)).all()


def test_pose_focal_option_and_fingerprint():
    """`--pose-focal PX` reaches the Analyzer as a float (None without it); the batch fingerprint tells one focal
    length from another and from none, whose fingerprint is as before the option existed (no key); a value that is
    not a finite number > 0 is refused by the Analyzer before its model loads."""
    from facecycle.errors import UsageError
    from facecycle_cli.process_cmd import _add_analyzer_args, analyzer_options
    from realtime import Analyzer
    from realtime.batch import BatchSettings, settings_fingerprint

    ap = argparse.ArgumentParser()
    _add_analyzer_args(ap)
    assert analyzer_options(ap.parse_args([]))["pose_focal"] is None
    assert analyzer_options(ap.parse_args(["--pose-focal", "1500"]))["pose_focal"] == 1500.0
    assert analyzer_options(ap.parse_args(["--pose-focal", "-5"]))["pose_focal"] == -5.0  # (the Analyzer refuses it)
    with pytest.raises(SystemExit):
        ap.parse_args(["--pose-focal", "wide"])

    def fp(**kw):
        return settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, **kw}, video=False))

    base, unset, f1500, f1000 = fp(), fp(pose_focal=None), fp(pose_focal=1500.0), fp(pose_focal=1000)
    assert base[0] == unset[0] and "pose_focal" not in base[1]
    assert len({base[0], f1500[0], f1000[0]}) == 3
    assert f1500[1]["pose_focal"] == 1500.0 and f1000[1]["pose_focal"] == 1000.0
    assert fp(pose_focal=1500)[0] == f1500[0]  # 1500 and 1500.0: one camera
    for bad in (0, -5.0, math.nan, math.inf, True, "1500"):
        with pytest.raises(UsageError, match=r"pose_focal \(--pose-focal\)") as e:
            Analyzer(pose_focal=bad)
        assert "\n" not in str(e.value)


def _two_faces_clip(tmp_path, n: int = 3):
    """A short clip of the repo's picture of two faces (1000x360, the faces off the frame's centre)."""
    from pathlib import Path

    import cv2

    img = cv2.imread(str(Path(__file__).resolve().parents[1] / "docs" / "overlays_twofaces.jpg"))
    assert img is not None
    return write_video(tmp_path / "twofaces.mp4", [img] * n, rate=5), img.shape


@pytest.mark.parametrize("value", ["0", "-5", "nan"])
def test_a_pose_focal_that_is_not_a_focal_length_is_a_usage_error_in_one_line(cli, tmp_path, value):
    from .conftest import assert_one_line

    clip = write_video(tmp_path / "grey.mp4", [np.full((48, 64, 3), 128, np.uint8)] * 2)
    rc, err = cli(clip, "--pose-focal", value, "--no-video", "--backend", "onnxruntime")
    assert rc == 2, err
    assert_one_line(err, "--pose-focal", "> 0")
    assert not (tmp_path / "out" / "grey.csv").exists()


def test_pose_focal_changes_the_pose_columns_only_and_the_sidecar_says_which(model, cli, tmp_path):
    """On a clip of two real faces: a run without `pose_focal` and one with `pose_focal=None` (and one given the
    frame's longer side, the default's focal length) write byte-identical CSVs; a run with another focal length
    changes every face row's pose_* columns and nothing else, and its sidecar records the focal length (null
    without one). The CLI's `--pose-focal` reaches the sidecar."""
    from realtime import Analyzer

    clip, (h, w, _) = _two_faces_clip(tmp_path)
    texts, sides = {}, {}
    for name, kw in (("default", {}), ("none", {"pose_focal": None}), ("longer", {"pose_focal": float(max(w, h))}),
                     ("f400", {"pose_focal": 400.0})):
        with Analyzer(model=model, backend="onnxruntime", infer_workers=1, **kw) as an:
            for _ in an.process_video(clip, csv=tmp_path / f"{name}.csv", video=None):
                pass
        texts[name] = (tmp_path / f"{name}.csv").read_bytes()
        sides[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert texts["default"] == texts["none"] == texts["longer"]
    assert sides["default"]["pose_focal"] is None and sides["none"]["pose_focal"] is None
    assert sides["longer"]["pose_focal"] == float(max(w, h)) and sides["f400"]["pose_focal"] == 400.0
    base, f400 = _rows(tmp_path / "default.csv"), _rows(tmp_path / "f400.csv")
    assert len(base) == len(f400) >= 3  # a face in every frame
    pose = ("pose_Rx", "pose_Ry", "pose_Rz")
    for a, b in zip(base, f400, strict=True):
        assert {k: v for k, v in a.items() if k not in pose} == {k: v for k, v in b.items() if k not in pose}
        assert a["pose_Ry"] and b["pose_Ry"]
        assert max(abs(float(a[k]) - float(b[k])) for k in pose) > 0.01, (a, b)
    rc, err = cli(clip, "--pose-focal", "400", "--no-video", "--backend", "onnxruntime", out=tmp_path / "cli")
    assert rc == 0, err
    assert json.loads((tmp_path / "cli" / "twofaces.json").read_text())["pose_focal"] == 400.0


def test_a_small_face_lost_soon_after_a_look_brings_the_next_look_within_2_s(monkeypatch):
    """A face at the detector's limit (16 px at 320) lost at a detection brings the next look at a larger size
    forward, to 2 s after the last one. The loss was noticed on its own detection frame only: one coming under 2 s
    after a look (here 1 s) was forgotten on the next frame, and the next look came on the 5-s schedule. The loss is
    kept until a look takes it in; the look after that is on the schedule again."""
    from types import SimpleNamespace

    import realtime.analyzer as analyzer_mod
    from realtime.analyzer import LOOK_AGAIN_S, LOOK_FIRST_S, LOOKS_FIRST, Run, RunStats
    from realtime.types import Face

    image = np.zeros((1080, 1920, 3), np.uint8)
    small = np.array([900, 500, 996, 596], np.float32)  # 96 px in 1920: 16 px at 320

    def detect(detector, tracker, img, ts, still=False):
        if ts < 1.0 - 1e-9:  # the face is lost at 1 s, a second after the first look
            return [Face(box=small.copy(), score=0.55, landmarks=np.zeros((5, 2), np.float32), track_id=1)]
        return []

    monkeypatch.setattr(analyzer_mod, "detect_faces", detect)
    looks = []
    detector = SimpleNamespace(max_side=320, detect=lambda img, max_side: looks.append(ts) or [])
    run = object.__new__(Run)
    run.analyzer = SimpleNamespace(rotate=0, detect_every=1, detector=detector, max_faces=0,
                                   adapt_detect_size=True)
    run.src = SimpleNamespace(stills=False, name="inset.mp4")
    run.tracker = SimpleNamespace(last_cut=False)
    run.stats, run.info = RunStats(), {}
    run._replay, run._record, run._turns, run._kept_faces, run._since_detect = None, None, None, set(), 10 ** 9
    run._detected = set()
    run._detect_side, run._looking = 320, True
    run._looks_done, run._size_look_ts, run._small_ids = LOOKS_FIRST, -math.inf, set()  # past the first looks
    run._lost_small = False
    for i in range(70):  # 10 frames a second, each detected
        ts = i / 10
        run._detect_stage(SimpleNamespace(index=i, timestamp=ts, image=image, stats={}, faces=[]))
    # the look at 0 s, the loss at 1 s brings one at 2 s (not 5 s); then the schedule again (7 s)
    assert looks == [0.0, LOOK_FIRST_S], looks
    assert LOOK_FIRST_S + LOOK_AGAIN_S == 7.0
