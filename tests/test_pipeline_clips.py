"""End-to-end acceptance of the pipeline on every real clip in ../shared/data/videos, the annotated video,
SIGINT/SIGTERM safety, the CLI's errors and `bench pipeline`.

Cost control (2 CPU cores): the all-clips run uses the tiny model, detection every 15 frames (optical-flow
tracking in between, detection forced at scene cuts and tracking failures), no smoothing and no video.
"""
from __future__ import annotations

import collections
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from facecycle_cli import main as cli_main

from .conftest import ROOT, shared_video

pytestmark = [pytest.mark.slow, pytest.mark.shared]

NO_FACE = "pyfeat_no_face.mp4"
TRANSITIONS = {"pyfeat_face_noface.mov": "face_then_none", "pyfeat_noface_face.mov": "none_then_face"}


def decoded_frames(path: Path) -> int:
    """Independent count of decodable frames (PyAV, no conversion)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def scene_cuts(path: Path, factor: float = 20.0) -> list:
    """Frames that start a new shot: mean abs grey difference to the previous frame far above the median."""
    diffs, prev = [], None
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            g = f.to_ndarray(format="gray").astype(np.float32)[::4, ::4]
            if prev is not None:
                diffs.append(np.abs(g - prev).mean())
            prev = g
    d = np.array(diffs)
    return [int(i) + 1 for i in np.nonzero(d > factor * max(np.median(d), 0.5))[0]]


def read_csv(path: Path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def all_clips(tiny_export, tmp_path_factory, videos_dir):
    from realtime.analyzer import Analyzer

    _, model_dir = tiny_export
    out = tmp_path_factory.mktemp("clips")
    clips = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".avi"))
    assert len(clips) >= 30
    res = {}
    with Analyzer(model=model_dir, detect_every=15, smooth=False, infer_workers=1) as an:
        for p in clips:
            run = an.process_video(p, csv=out / f"{p.stem}.csv", annotate=False)
            run.run()
            res[p.name] = (p, out / f"{p.stem}.csv", out / f"{p.stem}.json")
    return res


def test_every_decoded_frame_appears_once_in_order(all_clips):
    for name, (clip, csv_path, side) in all_clips.items():
        rows = read_csv(csv_path)
        frames = [int(r["frame"]) for r in rows]
        # one row per face: a frame may repeat only on consecutive rows with distinct face ids
        uniq = list(dict.fromkeys(frames))
        assert uniq == list(range(decoded_frames(clip))), name
        assert frames == sorted(frames), name
        by_frame = collections.defaultdict(list)
        for r in rows:
            by_frame[int(r["frame"])].append(r)
        for fr, rs in by_frame.items():
            ids = [r["face_id"] for r in rs]
            assert len(set(ids)) == len(ids), (name, fr)
            if "-1" in ids:
                assert len(rs) == 1 and rs[0]["success"] == "0", (name, fr)
        ts = [float(r["timestamp"]) for r in rows]
        assert all(b >= a for a, b in zip(ts, ts[1:], strict=False)), name
        meta = json.loads(side.read_text())
        assert meta["status"] == "complete" and meta["pose_source"] == "landmarks-pnp"
        assert meta["stats"]["frames"] == len(uniq)


def test_single_person_clips_keep_one_face_id(all_clips):
    checked = 0
    for name, (_, csv_path, _) in all_clips.items():
        if name == NO_FACE:
            continue
        rows = [r for r in read_csv(csv_path) if r["success"] == "1"]
        face_frames = {r["frame"] for r in rows}
        assert face_frames, name
        top_id, n = collections.Counter(r["face_id"] for r in rows).most_common(1)[0]
        covered = {r["frame"] for r in rows if r["face_id"] == top_id}
        assert len(covered) / len(face_frames) >= 0.95, (name, len(covered), len(face_frames))
        checked += 1
    assert checked >= 30


def test_no_face_clip_has_no_successes(all_clips):
    _, csv_path, _ = all_clips[NO_FACE]
    rows = read_csv(csv_path)
    assert sum(r["success"] == "0" for r in rows) / len(rows) >= 0.95


def test_face_presence_switches_at_the_cut(all_clips):
    for name, kind in TRANSITIONS.items():
        clip, csv_path, _ = all_clips[name]
        succ = {}
        for r in read_csv(csv_path):
            succ[int(r["frame"])] = succ.get(int(r["frame"]), 0) | int(r["success"])
        s = np.array([succ[i] for i in range(len(succ))])
        cut = scene_cuts(clip)[0]  # the shot boundary, found without any detector
        before, after = s[:cut], s[cut:cut + 60]
        if kind == "face_then_none":
            assert before.mean() >= 0.95 and after.mean() <= 0.05, (name, cut, s)
        else:
            assert before.mean() <= 0.05 and after.mean() >= 0.95, (name, cut, s)
        # the switch happens within one frame of the cut (detection is forced at scene cuts)
        change = int(np.nonzero(np.diff(s))[0][0]) + 1
        assert abs(change - cut) <= 1, (name, change, cut)


# --------------------------------------------------------------------------------------------- video
@pytest.mark.parametrize("name", ["pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_face_noface.mov"])
def test_annotated_video_matches_input_frames_and_duration(tiny_export, tmp_path, name):
    clip = shared_video(name)
    _, model_dir = tiny_export
    rc = cli_main(["process", str(clip), "--model", str(model_dir), "--out-dir", str(tmp_path), "--no-progress",
                   "--neutralize", "--max-faces", "2"])
    assert rc == 0
    out = tmp_path / f"{clip.stem}.annotated.mp4"

    def info(p):
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            fr = [f for f in c.decode(s)]
            has_audio = len(c.streams.audio) > 0
            times = [float(f.pts * f.time_base) for f in fr]
        rate = 1.0 / np.median(np.diff(times))
        return len(fr), times[-1] - times[0] + 1.0 / rate, rate, has_audio, fr[0].width, fr[0].height

    n_in, dur_in, rate_in, audio_in, w, h = info(clip)
    n_out, dur_out, rate_out, audio_out, w2, h2 = info(out)
    assert abs(n_out - n_in) <= 1 and abs(dur_out - dur_in) <= 1.0 / rate_in + 1e-6
    assert (w2, h2) == (w + w % 2, h + h % 2) and audio_out == audio_in
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    rows = read_csv(tmp_path / f"{clip.stem}.csv")
    assert len({r["frame"] for r in rows}) == n_in


# --------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_file_leaves_complete_csv_and_playable_video(tiny_export, tmp_path, sig, code):
    clip = shared_video("liveportrait_driving_d6.mp4")  # 1008 frames: still running when signalled
    _, model_dir = tiny_export
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "facecycle", "process", str(clip), "--model", str(model_dir),
                             "--out-dir", str(tmp_path), "--no-progress"], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    csv_path = tmp_path / f"{clip.stem}.csv"
    t0 = time.time()
    while time.time() - t0 < 120:
        if csv_path.exists() and csv_path.read_text().count("\n") > 40:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    text = csv_path.read_text()
    assert text.endswith("\n")
    lines = text.splitlines()
    header = lines[0].split(",")
    assert all(len(line.split(",")) == len(header) for line in lines[1:])
    frames = [int(line.split(",", 1)[0]) for line in lines[1:]]
    assert frames == list(range(len(frames))) and 40 <= len(frames) < 1008
    with av.open(str(tmp_path / f"{clip.stem}.annotated.mp4")) as c:
        n_video = sum(1 for _ in c.decode(video=0))
    assert n_video == len(frames)
    meta = json.loads((tmp_path / f"{clip.stem}.json").read_text())
    assert meta["status"] == "interrupted" and meta["stats"]["frames"] == len(frames)


# --------------------------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line_with_exit_codes(tiny_export, tmp_path, capsys):
    _, model_dir = tiny_export
    clip = shared_video("pyfeat_single_face.mp4")
    m = ["--model", str(model_dir), "--no-progress"]
    cases = [
        (["process", str(tmp_path / "missing.mp4"), *m], 3),
        (["process", str(clip), "--no-csv", "--no-video", *m], 2),
        (["process", str(clip), "--model", str(tmp_path), "--no-progress"], 5),
        (["process", str(clip), "--detector", "scrfd", "--detector-model", str(tmp_path / "x.onnx"),
          "--out-dir", str(tmp_path / "o"), *m], 5),
    ]
    for argv, code in cases:
        assert cli_main(argv) == code, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("facecycle: error:"), err
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "pyfeat_single_face.csv").write_text("precious")
    assert cli_main(["process", str(clip), "--out-dir", str(tmp_path / "o2"), *m]) == 4
    assert (tmp_path / "o2" / "pyfeat_single_face.csv").read_text() == "precious"
    capsys.readouterr()


def test_bench_pipeline_writes_a_record(tiny_export, tmp_path):
    clip = shared_video("pyfeat_WolfgangLanger_Pexels.mp4")
    _, model_dir = tiny_export
    out = tmp_path / "b.json"
    assert cli_main(["bench", "pipeline", str(clip), "--model", str(model_dir), "--frames", "40", "--runs", "2",
                     "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["frames_per_run"] == 40 and len(rec["fps_runs"]) == 2 and rec["fps_median"] > 0
    assert rec["baseline"]["fps_median"] > rec["fps_median"] > 0
    assert 0 < rec["ratio_to_baseline"] < 1
    assert rec["latency_ms_p95"] >= rec["latency_ms_p50"] > 0
    assert {"decode", "detect", "infer", "csv"} <= set(rec["stage_ms_per_frame"])


def test_live_plays_a_file_in_real_time_headless(tiny_export, tmp_path, capsys):
    """`facecycle live --input FILE` paces the file like a camera (dropping when behind) and writes its CSV."""
    clip = shared_video("pyfeat_single_face.mp4")  # 72 frames at 30 fps: about 2.4 s of real time
    _, model_dir = tiny_export
    t = time.perf_counter()
    rc = cli_main(["live", "--input", str(clip), "--no-window", "--model", str(model_dir),
                   "--csv", str(tmp_path / "live.csv")])
    wall = time.perf_counter() - t
    assert rc == 0
    assert wall >= 2.0  # real-time pacing, not as fast as possible
    rows = read_csv(tmp_path / "live.csv")
    frames = [int(r["frame"]) for r in rows]
    meta = json.loads((tmp_path / "live.json").read_text())
    assert frames == sorted(set(frames)) and frames[-1] == 71  # dropped frames are absent, never reordered
    assert len(frames) + meta["stats"]["drops"] == 72
    capsys.readouterr()
    assert cli_main(["live", "--camera", "97", "--no-window", "--model", str(model_dir)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "camera" in err[0]


def _more_clips(names, n: int, size=None) -> list:
    """The first ``n`` BGR frames of each of ../shared/data/videos_more's ``names`` (resized to ``size``), or a
    skip where they are absent."""
    import cv2

    from .conftest import SHARED

    more = SHARED / "data" / "videos_more"
    if not all((more / name).is_file() for name in names):
        pytest.skip(f"{more} is absent (../shared not mounted)")
    clips = []
    for name in names:
        with av.open(str(more / name)) as c:
            frames = [f.to_ndarray(format="bgr24") for f, _ in zip(c.decode(video=0), range(n), strict=False)]
        clips.append([cv2.resize(f, size) for f in frames] if size else frames)
    return clips


def test_the_end_line_reads_each_face_where_the_faces_differ(tmp_path, capsys):
    """Two people side by side, one smiling and one talking calmly: the end line pooled their rows into one
    reading (9 people, 3 of them happy, read as neutral). Where faces read differently, it names each face's own."""
    from .conftest import write_video

    clips = _more_clips(("styletalk_style_clips_happyenglish_clip1.mp4", "styletalk_source_video_feifeili_clip1.mp4"),
                        30, (256, 256))
    grid = write_video(tmp_path / "two.mp4", [np.hstack([a, b]) for a, b in zip(*clips, strict=False)], rate=25)
    assert cli_main(["process", str(grid), "--out-dir", str(tmp_path / "o"), "--no-video", "--no-progress"]) == 0
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "; by face: #0 " in line and "happy" in line.split("by face:")[1], line


def test_small_faces_beside_a_large_one_are_found(tmp_path, capsys, caplog):
    """Two people of about 90 px behind one of 640 px in a 1080p frame: the look at a larger size happened only
    where no face or a small one was found, so the two were never found (20 faces in 20 frames, not a word). A
    look at the start (and every 30 s) now finds them and raises the detection size for the input."""
    import cv2

    from .conftest import write_video

    clips = _more_clips(("styletalk_style_clips_happyenglish_clip1.mp4", "styletalk_source_video_feifeili_clip1.mp4",
                         "styletalk_style_clips_sad_emotion_clip1.mp4"), 20)
    frames = []
    for a, b, c in zip(*clips, strict=False):
        canvas = np.full((1080, 1920, 3), 40, np.uint8)
        canvas[220:860, 640:1280] = cv2.resize(a, (640, 640))
        canvas[500:650, 150:300] = cv2.resize(b, (150, 150))  # (the face itself about 90 px)
        canvas[500:650, 1620:1770] = cv2.resize(c, (150, 150))
        frames.append(canvas)
    src = write_video(tmp_path / "beside.mp4", frames, rate=25)
    out = tmp_path / "o"
    with caplog.at_level("WARNING"):
        assert cli_main(["process", str(src), "--out-dir", str(out), "--no-video", "--no-progress"]) == 0
    err = capsys.readouterr().err
    with open(out / "beside.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len({r["face_id"] for r in rows}) == 3 and len(rows) == 60, err
    assert "missed at detect size 320" in caplog.text + err
    side = json.loads((out / "beside.json").read_text())["detect_size"]
    assert side["asked"] == 320 and side["used"] > 320 and side["faces_missed"] == 2


def test_small_faces_in_a_large_photo_are_found(tmp_path):
    """A 4K photo with a face of about 110 px and a 12-MP one with faces of about 90 and 300 px: a video's run
    looks at a larger size, but a photo had no such look, and `analyze_image` (and a picture given to `process`)
    found none of the small faces, with no word (a probe's finding). A large picture without a face, or with a small
    one, now gets that look; a picture whose faces are all large does not (the look's cost)."""
    import cv2

    from realtime.analyzer import Analyzer

    a, b = (c[0] for c in _more_clips(("styletalk_source_video_feifeili_clip1.mp4",
                                       "styletalk_style_clips_happyenglish_clip1.mp4"), 1))
    four_k = np.full((2160, 3840, 3), 90, np.uint8)
    four_k[700:880, 1300:1480] = cv2.resize(a, (180, 180))
    twelve = np.full((3024, 4032, 3), 60, np.uint8)
    twelve[400:550, 300:450] = cv2.resize(a, (150, 150))
    twelve[1200:1700, 2000:2500] = cv2.resize(b, (500, 500))
    large = np.full((3024, 4032, 3), 60, np.uint8)
    large[400:550, 300:450] = cv2.resize(a, (150, 150))
    large[1000:2600, 2000:3600] = cv2.resize(b, (1600, 1600))
    cv2.imwrite(str(tmp_path / "group.jpg"), twelve)
    with Analyzer(backend="onnxruntime") as an:
        assert len(an.analyze_image(four_k).faces) == 1
        faces = an.analyze_image(twelve).faces
        assert len(faces) == 2 and sorted(round(float(f.box[2] - f.box[0]), -2) for f in faces)[0] < 200, faces
        assert [len(p.faces) for p in an.process_video(tmp_path / "group.jpg")] == [2]
        assert len(an.analyze_image(large).faces) == 1  # a face of a third of the picture: no look (documented)
    # an explicit detection size is kept for photos as for videos (Analyzer(adapt_detect_size=False), the CLI's
    # --detect-size): no look (a review's finding: photos took it regardless)
    with Analyzer(backend="onnxruntime", detect_size=320, adapt_detect_size=False) as an:
        assert len(an.analyze_image(four_k).faces) == 0


def test_small_faces_in_a_large_frame_are_found_and_max_faces_keeps_its_faces(tmp_path, capsys, caplog):
    """Faces of about 130 px in a 3840-px-wide frame: shrunk to the default detect size of 320 they were never
    found (0 faces, exit 0, not a word). A look at 1280 px early in the input now raises the detection size for it,
    with a warning and the sidecar's detect_size; an explicit --detect-size is kept. Four people of about one size
    with --max-faces 2: the two analysed changed at almost every detection (9 times in 60 frames); now the faces
    kept stay unless another is clearly larger."""
    import cv2

    from .conftest import write_video

    clips = _more_clips(("styletalk_style_clips_happyenglish_clip1.mp4", "styletalk_source_video_feifeili_clip1.mp4",
                         "styletalk_style_clips_sad_emotion_clip1.mp4",
                         "styletalk_style_clips_furious_talk1_clip1.mp4"), 40)
    wide = []
    for a, b in zip(clips[0][:20], clips[1][:20], strict=False):
        canvas = np.zeros((720, 3840, 3), np.uint8)
        canvas[232:488, 200:456] = cv2.resize(a, (256, 256))
        canvas[232:488, 3384:3640] = cv2.resize(b, (256, 256))
        wide.append(canvas)
    src = write_video(tmp_path / "wide.mp4", wide, rate=25)
    out = tmp_path / "o"
    with caplog.at_level("WARNING"):
        assert cli_main(["process", str(src), "--out-dir", str(out), "--no-video", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "missed at detect size 320" in caplog.text + err and ", 40 faces," in err, err
    assert json.loads((out / "wide.json").read_text())["detect_size"]["asked"] == 320
    # read twice (--neutralize's look-ahead): the second reading says it too (it replays the first's detections)
    assert cli_main(["process", str(src), "--out-dir", str(out), "--no-video", "--no-progress", "--overwrite",
                     "--neutralize", "--max-frames", "8"]) == 0
    assert json.loads((out / "wide.json").read_text())["detect_size"]["used"] > 320
    assert cli_main(["process", str(src), "--out-dir", str(out), "--no-video", "--no-progress", "--overwrite",
                     "--detect-size", "320"]) == 0
    assert ", 0 faces" in capsys.readouterr().err
    grid = [np.vstack([np.hstack([cv2.resize(c[i], (256, 256)) for c in clips[:2]]),
                       np.hstack([cv2.resize(c[i], (256, 256)) for c in clips[2:]])]) for i in range(40)]
    src = write_video(tmp_path / "grid.mp4", grid, rate=25)
    assert cli_main(["process", str(src), "--out-dir", str(out), "--no-video", "--no-progress",
                     "--max-faces", "2"]) == 0
    by_frame = collections.defaultdict(set)
    for r in csv.DictReader(open(out / "grid.csv")):
        if r["success"] == "1":
            by_frame[int(r["frame"])].add(r["face_id"])
    assert len(by_frame) == 40 and all(len(v) == 2 for v in by_frame.values())
    assert sum(by_frame[i] != by_frame[i - 1] for i in range(1, 40)) <= 2
    from realtime import Analyzer  # a single picture: the largest, as the detector used to cut them

    with Analyzer(max_faces=1) as an:
        assert len(an.analyze_image(grid[0]).faces) == 1


def test_small_faces_that_come_into_a_wide_shot_later_are_found(tmp_path, capsys):
    """The looks for small faces ended after 3 in the first 4 s: people of 130 px walking into an empty 3840-px
    shot after that were never found (0 faces, without a word). The run keeps looking, every 5 s, while frames
    may hide faces."""
    import cv2

    from .conftest import write_video

    clips = _more_clips(("styletalk_style_clips_happyenglish_clip1.mp4", "styletalk_source_video_feifeili_clip1.mp4"),
                        10)
    frames = []
    for i in range(24):  # 2 frames a second: an empty room for 7 s, then two people for 5 s
        canvas = np.full((720, 3840, 3), 90, np.uint8)
        if i >= 14:
            canvas[232:488, 200:456] = cv2.resize(clips[0][i - 14], (256, 256))
            canvas[232:488, 3384:3640] = cv2.resize(clips[1][i - 14], (256, 256))
        frames.append(canvas)
    src = write_video(tmp_path / "room.mp4", frames, rate=2)
    assert cli_main(["process", str(src), "--out-dir", str(tmp_path / "o"), "--no-video", "--no-progress"]) == 0
    err = capsys.readouterr().err
    faces = int(re.search(r", (\d+) faces?,", err).group(1))
    assert faces >= 8, err  # found at the look at 10 s (detections at 0, 2.5, 5, 7.5, 10 s)
    side = json.loads((tmp_path / "o" / "room.json").read_text())
    assert side["detect_size"]["asked"] == 320 and side["detect_size"]["used"] > 320


def test_thread_counts_change_speed_not_numbers(tmp_path):
    """`--threads 2` moved boxes and landmarks by up to 0.04 px (the detector's ONNX Runtime session split its sums
    across threads), while the docs promised speed, not numbers, and batch resume skips inputs done at another
    thread count. The detector runs on one thread now: the CSVs are byte-identical. The sidecar tells an explicit
    detection size from the default that may grow, and which detector file ran."""
    clip = shared_video("videoretalking_face_3.mp4")
    sides = {}
    for threads in (1, 2):
        out = tmp_path / str(threads)
        assert cli_main(["process", str(clip), "--out-dir", str(out), "--no-video", "--no-progress",
                         "--max-frames", "40", "--threads", str(threads)]) == 0
        sides[threads] = json.loads((out / f"{clip.stem}.json").read_text())
    assert (tmp_path / "1" / f"{clip.stem}.csv").read_bytes() == (tmp_path / "2" / f"{clip.stem}.csv").read_bytes()
    assert sides[2]["backend"]["intra_op_threads"] == 2  # the model's sessions did get two
    det = sides[1]["detector"]
    assert det["model"] == "centerface.onnx" and re.fullmatch(r"[0-9a-f]{64}", det["model_sha256"])
    assert sides[1]["adapt_detect_size"] is True
    out = tmp_path / "fixed"
    assert cli_main(["process", str(clip), "--out-dir", str(out), "--no-video", "--no-progress", "--max-frames", "2",
                     "--detect-size", "320"]) == 0
    assert json.loads((out / f"{clip.stem}.json").read_text())["adapt_detect_size"] is False
