"""`facecycle data prepare`: the pipeline's tracker and crops on drawn frames; real clips: tracks, crops, index,
resume, bad files."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from realtime.detectors import Detector
from realtime.types import Detections
from tests.conftest import MODELS, shared_video


class _MarkDetector(Detector):
    """Finds the faces the test drew: frame k carries k in pixel (0, 0); ``plan[k]`` are its boxes."""

    def __init__(self, plan):
        super().__init__(max_side=None, score_threshold=0.5)
        self.plan = plan

    def _detect(self, image):
        boxes = self.plan.get(int(image[0, 0, 0]), [])
        if not boxes:
            return Detections.empty()
        b = np.asarray(boxes, np.float32)
        lm = np.repeat(((b[:, :2] + b[:, 2:]) / 2)[:, None, :], 5, axis=1)
        return Detections(b, np.full(len(b), 0.9, np.float32), lm)


def test_face_tracks_use_the_pipeline_tracker_and_crops(tmp_path):
    """Training data goes through the pipeline's tracker (a gap longer than max_gap starts a new track),
    min_face filter and loose-square crops (the same squares as inference)."""
    import cv2

    from realtime.crops import crop_faces, loose_square_box
    from realtime.facetracks import face_tracks

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    images = []
    scene = (rng.random((200, 240, 3)) * 255).astype(np.uint8)  # one shot: a scene cut would end every track
    for k in range(12):
        img = scene.copy()
        img[0, 0] = k
        images.append(img)
        cv2.imwrite(str(frames / f"{k:03d}.png"), img)
    a = [(20 + k, 30, 80 + k, 100) for k in range(12)]            # always there, moving right
    plan = {k: [a[k]] for k in range(12)}
    for k in (0, 1, 2, 9, 10, 11):                                 # gone for 6 frames in the middle
        plan[k].append((150, 100, 210, 170))
    plan[5].append((5, 5, 20, 20))                                 # too small: ignored
    tracks = face_tracks(frames, _MarkDetector(plan), size=32, scale=1.5, every=1, min_face=32, max_gap=3)
    assert sorted(len(v) for v in tracks.values()) == [3, 3, 12]
    tid_a = next(t for t, v in tracks.items() if len(v) == 12)
    for fi, sq, crop in tracks[tid_a]:
        x0, y0, side = loose_square_box(a[fi], 1.5)
        assert sq == (x0, y0, x0 + side, y0 + side)
        want, _ = crop_faces(images[fi], np.array([a[fi]], np.float32), 32, 1.5)  # RGB, as inference
        assert crop.shape == (32, 32, 3) and np.array_equal(crop, want[0])
    every2 = face_tracks(frames, _MarkDetector(plan), size=32, scale=1.5, every=2, min_face=32, max_gap=3)
    assert all(fi % 2 == 0 for v in every2.values() for fi, _, _ in v)
    assert sorted(len(v) for v in every2.values()) == [1, 2, 6]   # frames 2 -> 10: 8 > 3 x 2, a new track


def test_face_tracks_end_at_a_scene_cut(tmp_path):
    """A training track is one person: at a cut (another shot, the face in the same place) the pipeline's
    tracker ends the track, as in inference, so the cycle losses never pair two shots."""
    import cv2

    from realtime.facetracks import face_tracks

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    shots = [cv2.GaussianBlur((rng.random((200, 240, 3)) * 255).astype(np.uint8), (0, 0), 6) for _ in range(2)]
    shots = [cv2.normalize(s, None, 0, 255, cv2.NORM_MINMAX) for s in shots]  # full contrast: a clear cut
    for k in range(10):
        img = shots[k // 5].copy()
        img[0, 0] = k
        cv2.imwrite(str(frames / f"{k:03d}.png"), img)
    plan = {k: [(60 + k, 40, 140 + k, 130)] for k in range(10)}
    tracks = face_tracks(frames, _MarkDetector(plan), size=32, scale=1.5, every=1, min_face=32, max_gap=3)
    assert sorted([fi for fi, _, _ in v] for v in tracks.values()) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


@pytest.fixture(scope="module")
def yunet():
    p = MODELS / "face_detection_yunet_2023mar.onnx"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def test_prepare_two_clips_resume_and_bad_file(tmp_path, yunet, capsys):
    from facecycle_cli import main

    clips = [shared_video("liveportrait_driving_d1.mp4"), shared_video("pyfeat_no_face.mp4")]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = tmp_path / "ds"
    args = ["data", "prepare", *map(str, clips), str(bad), "--out", str(out), "--every", "3",
            "--detector", "yunet", "--detector-model", str(yunet), "--min-track", "3", "--no-progress"]
    assert main(args) == 3  # an input failed: the run says so in its exit code, after preparing the others
    msg = capsys.readouterr()
    assert "2 sources prepared" in msg.err and "1 failed" in msg.err and "broken.mp4" in msg.err and not msg.out
    assert msg.err.strip().splitlines()[-1].startswith("facecycle: error: 1 of 3 inputs failed: ")
    rows = list(csv.DictReader(open(out / "index.csv")))
    assert rows and {r["source"] for r in rows} == {str(clips[0].resolve())}  # the cartoon has no face
    tracks = {r["track"] for r in rows}
    assert len(tracks) == 1
    for r in rows:
        assert int(r["frame"]) % 3 == 0 and (out / r["file"]).is_file()
        x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert x1 - x0 == pytest.approx(y1 - y0, abs=0.2) and x1 - x0 > 64
    import cv2

    crop = cv2.imread(str(out / rows[0]["file"]))
    assert crop.shape == (64, 64, 3) and crop.std() > 10
    # resume: everything is recorded in sources.csv, nothing done is redone (the broken file is tried again)
    assert main(args) == 3
    msg = capsys.readouterr().err
    assert "0 sources prepared" in msg and "2 already done, 1 failed" in msg
    assert len(list(csv.DictReader(open(out / "index.csv")))) == len(rows)
    # repaired, it is prepared (it was "already done" for ever, with no tracks)
    import shutil

    shutil.copy(shared_video("tpsmm_driving.mp4"), bad)
    assert main(args) == 0 and "1 sources prepared" in capsys.readouterr().err
    assert {r["source"] for r in csv.DictReader(open(out / "index.csv"))} == {str(clips[0].resolve()),
                                                                             str(bad.resolve())}
    # every detector frames a face alike now (meta.json says so): another detector may extend the dataset
    meta = json.loads((out / "meta.json").read_text())
    assert meta["framing"] == "centerface-box" and meta["detector"] == "yunet"
    other = ["data", "prepare", str(shared_video("tpsmm_driving.mp4")), "--out", str(out), "--every", "3",
             "--min-track", "3", "--no-progress"]  # CenterFace
    assert main(other) == 0 and "1 sources prepared" in capsys.readouterr().err
    # sources sampled otherwise are not mixed in (the data set was of two kinds, meta.json naming the first)
    for flag, value in (("--every", "30"), ("--min-track", "1")):
        odd = other[:]
        odd[odd.index(flag) + 1] = value
        assert main(odd) == 3
        assert f"was prepared with {flag} 3; asked for {flag} {value}" in capsys.readouterr().err
    # one cut on YuNet's own boxes before that (no "framing") is not extended with crops framed otherwise
    del meta["framing"]
    (out / "meta.json").write_text(json.dumps(meta))
    assert main(args) == 3
    assert "4 % larger" in capsys.readouterr().err
    meta["detector"] = "centerface"  # a dataset cut on CenterFace's boxes before that is framed as now
    (out / "meta.json").write_text(json.dumps(meta))
    assert main(args) == 0


def test_a_failed_input_is_said_once_on_stderr_and_fails_the_run(tmp_path):
    """`data prepare GOOD BAD` exited 0 though an input failed (and 1, "internal error", when every input failed:
    process and batch exit 3); its summary and skip lines went to stdout, each skip was said twice (the line and a
    WARNING), and its progress bar filled a log file with carriage-return redraws. Now the good inputs are prepared,
    the skip is one line on stderr, the last line says how many inputs failed, exit 3; no bar where stderr is a file;
    stdout stays empty."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    good = shared_video("pyfeat_single_face.mp4")
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    err = tmp_path / "err.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(err, "w") as f:
        r = subprocess.run([sys.executable, "-m", "facecycle", "data", "prepare", str(good), str(bad), "--out",
                            str(tmp_path / "ds"), "--every", "10", "--min-track", "2"], stdout=subprocess.PIPE,
                           stderr=f, text=True, timeout=300, cwd=tmp_path, env=env)
    text = err.read_text()
    assert r.returncode == 3, text
    assert r.stdout == "", r.stdout
    assert "\r" not in text and "prepare:" not in text, text  # no bar in a file
    lines = text.strip().splitlines()
    skips = [ln for ln in lines if "notes.mp4" in ln and "skipped" in ln]
    assert len(skips) == 1 and "WARNING" not in text, lines  # said once (it was a line and a WARNING)
    assert skips[0].startswith(f"facecycle: error: {bad}: cannot open as a video (") and skips[0].endswith(
        " (skipped; continuing with the other inputs)"), skips
    assert lines[-2].startswith(f"{tmp_path / 'ds'}: 1 sources prepared (1 tracks, ") and lines[-2].endswith(
        " crops), 0 already done, 1 failed"), lines
    assert lines[-1] == (f"facecycle: error: 1 of 2 inputs failed: {bad} (recorded in {tmp_path / 'ds'}/sources.csv; "
                         "the next run tries it again)"), lines
    rows = list(csv.DictReader(open(tmp_path / "ds" / "index.csv")))
    assert rows and {r["source"] for r in rows} == {str(good.resolve())}  # the good input was prepared


def test_every_input_failing_is_an_input_error(tmp_path, capsys):
    """All inputs bad: exit 3, as process and batch (it was 1, the README's "internal error")."""
    from facecycle_cli import main

    bad = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for b in bad:
        b.write_text("text\n")
    assert main(["data", "prepare", *map(str, bad), "--out", str(tmp_path / "ds"), "--no-progress"]) == 3
    err = capsys.readouterr()
    assert not err.out and err.err.strip().splitlines()[-1] == (
        f"facecycle: error: 2 of 2 inputs failed: {bad[0]}, {bad[1]} (recorded in {tmp_path / 'ds'}/sources.csv; "
        "the next run tries them again)")


def test_prepare_draws_its_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    """The bar redraws its line with carriage returns: drawn where stderr is a terminal, not into a file."""
    import facecycle.data.prepare as prep

    src = tmp_path / "v.mp4"
    src.write_bytes(b"x")
    extract = lambda path: {}  # noqa: E731 - no faces
    opt = prep.PrepareOptions()
    prep.prepare_dataset([str(src)], tmp_path / "ds", extract, opt)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(prep, "stderr_is_terminal", lambda: True)
    prep.prepare_dataset([str(src)], tmp_path / "ds2", extract, opt)
    assert "prepare:" in capsys.readouterr().err
    prep.prepare_dataset([str(src)], tmp_path / "ds3", extract, opt, progress=False)
    assert capsys.readouterr().err == ""


def test_prepare_errors(tmp_path, capsys):
    from facecycle_cli import main

    assert main(["data", "prepare", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"),
                 "--detector-model", str(tmp_path / "m.onnx")]) in (2, 3)
    assert "facecycle: error:" in capsys.readouterr().err


def test_face_tracks_of_separate_photos_are_one_face_each(tmp_path):
    """A folder of separate photos (numbered in order, but unlike each other) is read as stills, as the pipeline
    reads it: every face is a track of its own, so the cycle losses never pair two photos. Before, a folder was
    always a video, and photos of one setting at other exposures (a change of light, no cut) joined into one
    track."""
    import cv2

    from realtime.facetracks import face_tracks

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(2)
    scene = cv2.GaussianBlur((rng.random((200, 240, 3)) * 255).astype(np.uint8), (0, 0), 6)
    scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX)
    for k in range(6):
        img = (scene * (0.3 if k % 2 else 1.0)).astype(np.uint8)  # bracketed exposures
        img[0, 0] = k
        cv2.imwrite(str(photos / f"IMG_{100 + k}.png"), img)
    plan = {k: [(60, 40, 140, 130)] for k in range(6)}  # the face in the same place in every photo
    tracks = face_tracks(photos, _MarkDetector(plan), size=32, scale=1.5, every=1, min_face=32, max_gap=3)
    assert sorted(len(v) for v in tracks.values()) == [1] * 6


def test_prepare_needs_no_download_by_default(tmp_path, capsys):
    """The default detector is the embedded CenterFace, as `process` uses: on a fresh install `data prepare CLIP`
    runs with no model file (it defaulted to YuNet and stopped: "detector 'yunet' needs a model file")."""
    from facecycle_cli import main

    clip = shared_video("liveportrait_driving_d1.mp4")
    assert main(["data", "prepare", str(clip), "--out", str(tmp_path / "ds"), "--every", "10", "--min-track", "2",
                 "--no-progress"]) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / "ds" / "index.csv")))
    assert rows and {r["source"] for r in rows} == {str(clip.resolve())}


def test_every_detector_frames_the_face_as_centerface_does(tmp_path, tiny_export):
    """The model's crop_scale (1.03) and every training crop were measured and cut on CenterFace's boxes. YuNet's
    boxes are 4 % larger, SCRFD's 5 % (scripts/eval_detector_framing.py): with those detectors each face reached the
    model framed 4-5 % looser than in training. Crops are now cut at crop_scale / box_scale on every path that cuts
    one: inference, training data (face_tracks) and the probes' still framer; a crop_scale asked for is kept."""
    import cv2

    from realtime import Analyzer
    from realtime.batch.job import BatchSettings
    from realtime.batch.plan import settings_fingerprint
    from realtime.crops import StillFramer, framing_scale, loose_square_box
    from realtime.detectors import CenterFaceDetector, InsightFaceDetector, YuNetDetector
    from realtime.facetracks import face_tracks

    assert CenterFaceDetector.box_scale == 1.0 and YuNetDetector.box_scale == 1.04
    assert InsightFaceDetector.box_scale == 1.05

    class _Larger(_MarkDetector):
        box_scale = 1.25  # boxes a quarter larger than CenterFace's

    assert framing_scale(1.5, _Larger({})) == 1.2 and framing_scale(1.5, None) == 1.5
    frames = tmp_path / "frames"
    frames.mkdir()
    scene = (np.random.default_rng(0).random((200, 240, 3)) * 255).astype(np.uint8)
    for k in range(4):
        img = scene.copy()
        img[0, 0] = k
        cv2.imwrite(str(frames / f"{k:03d}.png"), img)
    box = (60, 40, 160, 140)
    tracks = face_tracks(frames, _Larger({k: [box] for k in range(4)}), size=32, scale=1.5, min_face=32)
    x0, y0, side = loose_square_box(box, 1.2)  # 1.5 / 1.25
    assert [sq for v in tracks.values() for _, sq, _ in v] == [(x0, y0, x0 + side, y0 + side)] * 4
    assert StillFramer(_Larger({0: [box]}), 1.5).square(cv2.imread(str(frames / "000.png"))) == (x0, y0, side)

    model = tiny_export[1]
    crop = json.loads((model / "manifest.json").read_text())["config"].get("crop_scale", 1.7)
    if (MODELS / "face_detection_yunet_2023mar.onnx").is_file():
        yunet = str(MODELS / "face_detection_yunet_2023mar.onnx")
        with Analyzer(model=model, detector="yunet", detector_model=yunet) as an:
            assert an.inference.crop_scale == pytest.approx(crop / 1.04)
            assert an.describe()["detector"]["box_scale"] == 1.04
        with Analyzer(model=model, detector="yunet", detector_model=yunet, crop_scale=1.5) as an:
            assert an.inference.crop_scale == 1.5  # asked for: the user's own framing
    with Analyzer(model=model) as an:
        assert an.inference.crop_scale == pytest.approx(crop)  # CenterFace: as before
    fp = {d: settings_fingerprint(BatchSettings(analyzer={"model": str(model), "detector": d}))[1]
          for d in ("centerface", "yunet")}
    assert "detector_box_scale" not in fp["centerface"] and fp["yunet"]["detector_box_scale"] == 1.04


@pytest.mark.skipif(sys.platform == "win32", reason="ulimit -f (resource, SIGXFSZ) is POSIX only")
def test_a_crop_that_cannot_be_written_stops_the_run_and_leaves_the_source_to_redo(tmp_path):
    """cv2.imwrite returns False where a crop cannot be written (a full disk, a file size limit): the crop was
    missing, its index row named it and the source was recorded "done"; where an error was raised, a full disk
    counted as a failed input and every later source was tried (and failed) in turn. Now the first crop that
    cannot be written stops the run with an OutputError naming it; the source is not recorded, so the next run
    redoes it. Real writes under ``ulimit -f`` (SIGXFSZ ignored: the write fails with EFBIG)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = """
import json, resource, signal, sys
from pathlib import Path
import numpy as np
import facecycle.data.prepare as prep
from facecycle.errors import OutputError
out, srcs = Path(sys.argv[1]), sys.argv[2:]
rng = np.random.default_rng(0)
def extract(src):  # the second source's third crop is large noise: its PNG passes the file size limit
    big = Path(src).name == "b.mp4"
    return {1: [(i, (0.0, 0.0, 8.0, 8.0), rng.integers(0, 255, (256 if big and i == 2 else 32,) * 2 + (3,),
                                                        dtype=np.uint8)) for i in range(4)]}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    c = prep.prepare_dataset(srcs, out, extract, prep.PrepareOptions(min_track=1), progress=False)
    print(json.dumps(c))
except OutputError as e:
    print("OutputError", e)
"""
    srcs = []
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"x")
        srcs.append(str(tmp_path / name))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ds"), *srcs], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OutputError "), r.stdout
    assert "b_" in r.stdout and r.stdout.strip().endswith(".png: file size limit reached"), r.stdout
    done = {Path(row["source"]).name: row["status"] for row in csv.DictReader(open(tmp_path / "ds" / "sources.csv"))}
    assert done == {"a.mp4": "done"}  # b not recorded (the next run redoes it), c not tried
    rows = list(csv.DictReader(open(tmp_path / "ds" / "index.csv")))
    assert len(rows) == 4 and all((tmp_path / "ds" / row["file"]).stat().st_size > 0 for row in rows)


def _small_dataset(tmp_path):
    """Two sources of one 3-crop track each, prepared with a made-up ``extract`` (no detector): (inputs, dataset,
    prepare(), the dataset's files as bytes)."""
    import facecycle.data.prepare as prep

    srcs = []
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
        srcs.append(str(tmp_path / name))
    rng = np.random.default_rng(0)
    extract = lambda src: {1: [(i, (0.0, 0.0, 8.0, 8.0), rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))  # noqa
                               for i in range(3)]}
    out = tmp_path / "ds"

    def run():
        return prep.prepare_dataset(srcs, out, extract, prep.PrepareOptions(size=16, min_track=1), progress=False)

    assert run()["done"] == 2

    def files():
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    return srcs, out, run, files


def test_a_zero_size_sources_csv_is_started_with_its_header(tmp_path):
    """A zero-byte sources.csv (created, never written) was appended to without a header: the run exited 0, and
    the next one failed with "internal error: KeyError 'source'". It is a new table now: header first."""
    _, out, run, _ = _small_dataset(tmp_path)
    (out / "sources.csv").write_bytes(b"")
    assert run()["done"] == 2  # nothing recorded: every source again
    assert (out / "sources.csv").read_text().splitlines()[0] == "source,status,tracks,crops,message"
    assert run() == {"done": 0, "skipped": 2, "failed": 0, "crops": 0, "tracks": 0}
    assert len(list(csv.DictReader(open(out / "index.csv")))) == 6


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_text("".join(p.read_text().splitlines(True)[1:])), "not the header"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\xff\xfe\n"), "not UTF-8"),
    (lambda p: p.write_text(p.read_text().replace(",done,", ",dune,", 1)), "status 'dune'"),
    (lambda p: (p.unlink(), p.mkdir()), "cannot read"),
])
def test_a_damaged_sources_csv_stops_the_run_and_keeps_the_finished_sources(tmp_path, damage, why):
    """A damaged sources.csv (or a directory in its place) read as no source done: the run deleted index.csv,
    removed the tracks and redid every source, or failed with an internal error. It is one InputError naming the
    file now, before anything is written: the index, the crops and the table stay as they were."""
    from facecycle.errors import InputError

    _, out, run, files = _small_dataset(tmp_path)
    damage(out / "sources.csv")
    before = files()
    with pytest.raises(InputError, match=f"sources.csv: damaged .*{why}") as e:
        run()
    assert "\n" not in str(e.value)
    assert files() == before


@pytest.mark.parametrize("table", ["sources.csv", "index.csv"])
def test_a_last_line_cut_short_by_a_killed_run_is_dropped_and_its_source_prepared_again(tmp_path, table, caplog):
    """A run killed while it appended a row (a time limit) leaves a last line without its line end: the rows of a
    source that never reached sources.csv are dropped, as those of an interrupted source are, and the line is cut
    off the file, so that the next row does not join it; the finished sources are kept."""
    _, out, run, files = _small_dataset(tmp_path)
    p = out / table
    whole = p.read_bytes()
    last = whole[: whole.rstrip(b"\n").rfind(b"\n") + 1]  # the table without its last row ...
    p.write_bytes(last + whole[len(last):len(last) + 7])  # ... and the first 7 bytes of that row, as a kill left them
    if table == "index.csv":  # (the source's row in sources.csv comes after its index rows: the kill came before it)
        src = out / "sources.csv"
        src.write_text("".join(src.read_text().splitlines(True)[:-1]))
    with caplog.at_level("WARNING", logger="facecycle.data.prepare"):
        counts = run()
    assert any("cut short" in r.getMessage() for r in caplog.records)
    assert counts["done"] == 1 and counts["skipped"] == 1  # the source of the cut row again, the other kept
    assert p.read_bytes().endswith(b"\n") and all(len(line.split(b",")) == len(whole.splitlines()[0].split(b","))
                                                    for line in p.read_bytes().splitlines())
    assert run() == {"done": 0, "skipped": 2, "failed": 0, "crops": 0, "tracks": 0}


def test_reading_an_index_with_a_cut_last_line_leaves_the_dataset_as_it_was(tmp_path, caplog):
    """read_index (training, the scripts) cut the line off the file: reading a dataset changed it, and a read-only
    one failed. It leaves the line out and says so now; `data prepare` cuts it off only once every table has passed
    its checks (a damaged index.csv left sources.csv cut before it was refused)."""
    from facecycle.data.prepare import read_index
    from facecycle.errors import InputError

    _, out, run, files = _small_dataset(tmp_path)
    p = out / "index.csv"
    whole = p.read_bytes()
    p.write_bytes(whole[:-5])  # the last row without its end
    before = files()
    with caplog.at_level("WARNING", logger="facecycle.data.prepare"):
        rows = read_index(out)
    assert len(rows) == len(whole.splitlines()) - 2  # the header and the cut row left out
    assert files() == before
    assert any("cut short" in r.getMessage() and "prepared again" not in r.getMessage() for r in caplog.records)
    src = out / "sources.csv"
    src.write_bytes(src.read_bytes()[:-3])  # sources.csv cut too, and index.csv damaged otherwise as well
    p.write_bytes(b"source,track\n" + p.read_bytes())
    before = files()
    with pytest.raises(InputError, match="index.csv: damaged .*not the header"):
        run()
    assert files() == before


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(p.read_bytes() + b"\xff\xfe\n"), "not UTF-8"),
    (lambda p: p.write_text("".join(p.read_text().splitlines(True)[1:])), "not the header"),
    (lambda p: p.write_text(p.read_text().replace(",0,", ",zero,", 1)), "frame 'zero'"),
    (lambda p: p.write_text(p.read_text() + "a,b,1,0,0,1,1,x.png,extra\n"), "more values than columns"),
])
def test_a_damaged_index_csv_is_one_line_naming_it(tmp_path, damage, why):
    """index.csv read back by `data prepare` and by training: a non-UTF-8 one or one without its header was an
    internal error (UnicodeDecodeError, KeyError)."""
    from facecycle.data.prepare import read_index
    from facecycle.errors import InputError

    _, out, run, files = _small_dataset(tmp_path)
    damage(out / "index.csv")
    before = files()
    with pytest.raises(InputError, match=f"index.csv: damaged .*{why}"):
        run()
    with pytest.raises(InputError, match=f"index.csv: damaged .*{why}"):
        read_index(out)
    assert files() == before


@pytest.mark.parametrize("text, why", [
    ("[]", "a JSON list, not an object"),
    ("", "not JSON"),
    ('{"size": 16, "sca', "not JSON"),
    (b"\xff{}", "not JSON"),
    ('{"size": 16, "scale": "abc"}', "'scale' must be a finite number > 0, not \"abc\""),
    ('{"size": 16, "scale": NaN}', "'scale' must be a finite number > 0, not NaN"),
    ('{"size": true, "scale": 1.7}', "'size' must be an integer > 0"),
    ('{"size": 16, "scale": 1.7, "framing": "mtcnn-box"}', "'framing' must be one of centerface-box"),
    ('{"size": 16, "scale": 1.7, "every": "2"}', "'every' must be an integer >= 1"),
    ('{"scale": 1.7}', "no 'size'"),
    (None, "cannot read"),
])
def test_a_damaged_meta_json_is_one_line_naming_it(tmp_path, text, why):
    """meta.json read back on every later run: a list was an AttributeError, a cut, empty or non-UTF-8 file a
    JSONDecodeError / UnicodeDecodeError, a text scale a ValueError; a NaN scale or an unknown framing was taken
    (exit 0). One guarded reader now: an InputError naming the file, the dataset untouched."""
    from facecycle.errors import InputError

    _, out, run, files = _small_dataset(tmp_path)
    meta = out / "meta.json"
    if text is None:
        meta.unlink()
        meta.mkdir()
    else:
        meta.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = files()
    with pytest.raises(InputError, match=f"meta.json: .*{why}".replace("(", r"\(")):
        run()
    assert files() == before


def test_a_damaged_meta_json_is_exit_3_on_the_command_line(tmp_path, capsys):
    from facecycle_cli import main

    (tmp_path / "a.mp4").write_text("text\n")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "meta.json").write_text("[]")
    assert main(["data", "prepare", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "ds"), "--no-progress"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"facecycle: error: {tmp_path / 'ds' / 'meta.json'}: damaged dataset settings (a JSON list, not "
                   "an object)"], err
