"""The Python API (`realtime.Analyzer`) on real frames with the tiny exported model: per-frame results,
expression head, neutral faces, identity re-id, stop/pause, the GUI bridge, and `bench soak`."""
from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time

import numpy as np
import pytest

from facecycle_cli import main as cli_main

from .conftest import decode_count, real_frames, shared_video, write_video

CLIP = "pyfeat_WolfgangLanger_Pexels.mp4"


@pytest.fixture(scope="module")
def model_with_head(tiny_export, tmp_path_factory):
    """The tiny export plus a random expression head in the documented format."""
    from realtime.heads import save_expression_head

    _, src = tiny_export
    d = tmp_path_factory.mktemp("with_head") / "model"
    shutil.copytree(src, d)
    man = json.loads((d / "manifest.json").read_text())
    fdim = [o for o in man["graphs"]["analyze"]["outputs"] if o["name"] == "feature"][0]["shape"][1]
    rng = np.random.default_rng(0)
    save_expression_head(d / "expression_head.safetensors", rng.normal(size=(7, fdim)) * 0.1, np.zeros(7),
                         source="test")
    return d


def test_facecycle_analyzer_yields_complete_packets(model_with_head):
    from realtime import Analyzer

    clip = shared_video(CLIP)
    with Analyzer(model=model_with_head, neutralize=True, detect_every=4) as an:
        assert an.code_dim == 16  # tiny config: everything follows the manifest
        packets = []
        for p in an.process_video(clip, max_frames=25):
            packets.append(p)
        assert [p.index for p in packets] == list(range(25))
        assert all(len(p.faces) == 1 for p in packets)
        f = packets[10].faces[0]
        assert f.code.shape == (16,) and np.isfinite(f.code).all()
        assert f.emotions.shape == (7,) and f.emotions.sum() == pytest.approx(1, abs=1e-4)
        assert f.emotion in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
        # sharp neutral faces: the crop's resolution (up to 192 px), never below the model's 32
        side_px = f.neutral.shape[0]
        assert f.neutral.shape == (side_px, side_px, 3) and 32 <= side_px <= 192 and f.neutral.dtype == np.uint8
        assert 0 <= f.intensity <= 1 and f.intensity == pytest.approx(1 - f.emotions[4], abs=0.2)  # smoothed
        assert math.isfinite(f.flow_intensity) and f.flow_intensity >= 0
        assert np.isfinite(f.pose).all() and abs(f.pose[1]) < 0.6  # a roughly frontal face
        assert f.intensity >= 0
        x0, y0, side = f.crop_box
        assert side == pytest.approx(1.7 * max(f.box[2] - f.box[0], f.box[3] - f.box[1]), abs=2)
        assert packets[0].faces[0].detected and not packets[1].faces[0].detected  # detection every 4 frames
        img = packets[0].image
        single = an.analyze_image(img)
        assert len(single.faces) == 1
        assert np.allclose(single.faces[0].box, packets[0].faces[0].box, atol=1)


def test_smoothing_changes_codes_but_not_the_first_frame(model_with_head):
    from realtime import Analyzer

    clip = shared_video(CLIP)
    out = {}
    for smooth in (False, True):
        with Analyzer(model=model_with_head, smooth=smooth, detect_every=1) as an:
            out[smooth] = [p.faces[0].code.copy() for p in an.process_video(clip, max_frames=15)]
    assert np.allclose(out[False][0], out[True][0], atol=1e-5)  # filters start at the track's first frame
    raw_jitter = np.mean([np.abs(a - b).mean() for a, b in zip(out[False], out[False][1:], strict=False)])
    sm_jitter = np.mean([np.abs(a - b).mean() for a, b in zip(out[True], out[True][1:], strict=False)])
    assert sm_jitter < raw_jitter


def test_stop_and_pause_from_another_thread(tiny_export, tmp_path):
    from realtime.analyzer import Analyzer

    _, model = tiny_export
    clip = shared_video(CLIP)
    with Analyzer(model=model) as an:
        run = an.process_video(clip, csv=tmp_path / "a.csv")
        seen = []
        for p in run:
            seen.append(p.index)
            if p.index == 5:
                run.pause()
                time.sleep(0.3)
                assert run.paused
                run.resume()
            if p.index == 12:
                threading.Thread(target=run.stop).start()
        assert 13 <= len(seen) < 30 and seen == list(range(len(seen)))
    meta = json.loads((tmp_path / "a.json").read_text())
    assert meta["status"] == "interrupted" and meta["stats"]["frames"] == len(seen)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert len(lines) == 1 + len(seen)


def test_a_stop_then_closing_the_iteration_is_an_interrupt_not_a_consumer_stop(tiny_export, tmp_path):
    """The app stops a run (its Stop button, SIGINT) with run.stop() and then closes the generator: the sidecar said
    `stopped`, which csv.md keeps for a consumer that stopped iterating on its own, where `live` said `interrupted`
    for the same signal. A consumer that only breaks off keeps `stopped`."""
    from realtime.analyzer import Analyzer

    _, model = tiny_export
    frames = real_frames(20)
    with Analyzer(model=model) as an:
        for name, stop_first in (("app", True), ("consumer", False)):
            run = an.process_video(iter(frames), csv=tmp_path / f"{name}.csv")
            gen = iter(run)
            for _ in range(3):
                next(gen)
            if stop_first:
                run.stop()
            gen.close()
            meta = json.loads((tmp_path / f"{name}.json").read_text())
            assert meta["status"] == ("interrupted" if stop_first else "stopped"), name


def test_ctrl_c_in_the_loops_body_is_an_interrupt(tiny_export, tmp_path):
    """Ctrl-C while the caller's own loop body runs (not while the run waits for a frame) ended the run `stopped`,
    as if the caller had broken off. ``run.run``'s callback, and a ``with`` block of the run or of the Analyzer
    where the caller holds the iterator, record `interrupted` now; another exception in the body keeps `stopped`,
    and a `break` inside ``with run:`` still ends the run at once (the review found a version that held the
    iteration until the block's end: `running`, and the Analyzer busy)."""
    from realtime.analyzer import Analyzer

    _, model = tiny_export
    frames = real_frames(12)

    def body(n: int, exc: BaseException):
        def f(packet):
            if packet.index == n:
                raise exc
        return f

    def status(name: str) -> str:
        return json.loads((tmp_path / f"{name}.json").read_text())["status"]

    with pytest.raises(KeyboardInterrupt):
        with Analyzer(model=model) as an:
            it = iter(an.process_video(iter(frames), csv=tmp_path / "analyzer.csv"))
            for packet in it:
                body(3, KeyboardInterrupt())(packet)
    assert status("analyzer") == "interrupted"
    with Analyzer(model=model) as an:
        with pytest.raises(KeyboardInterrupt):
            with an.process_video(iter(frames), csv=tmp_path / "run.csv") as run:
                it = iter(run)
                for packet in it:
                    body(3, KeyboardInterrupt())(packet)
        assert status("run") == "interrupted"
        with an.process_video(iter(frames), csv=tmp_path / "break.csv") as run:
            for _ in run:
                break
            assert status("break") == "stopped"
            assert len(list(an.process_video(frames[:2]))) == 2  # free at once, inside the block
        with pytest.raises(KeyboardInterrupt):
            an.process_video(iter(frames), csv=tmp_path / "callback.csv").run(body(3, KeyboardInterrupt()))
        assert status("callback") == "interrupted"
        assert len((tmp_path / "callback.csv").read_text().splitlines()) == 1 + 4  # frames 0-3, the last finished
        with pytest.raises(ValueError):
            with an.process_video(iter(frames), csv=tmp_path / "error.csv") as run:
                for packet in run:
                    body(3, ValueError("the caller's own bug"))(packet)
        assert status("error") == "stopped"
        assert len(list(an.process_video(frames[:3]))) == 3  # free again


def test_latest_frame_bridge_with_a_slow_consumer(tiny_export):
    """The GUI pattern: a worker iterates the run and puts packets in a LatestFrame; a slow reader gets the
    newest ones, nothing piles up, and the numbers add up."""
    from realtime.analyzer import Analyzer
    from realtime.pipeline import LatestFrame

    _, model = tiny_export
    box = LatestFrame()
    with Analyzer(model=model) as an:
        run = an.process_video(shared_video(CLIP), max_frames=60)

        def work():
            for p in run:
                box.put(p)
            box.close()

        t = threading.Thread(target=work)
        t.start()
        got = []
        while True:
            p = box.get(timeout=5)
            if p is None:
                break
            got.append(p.index)
            time.sleep(0.05)  # a slow GUI
        t.join()
    assert got == sorted(got) and got[-1] == 59
    assert box.delivered == len(got) and box.delivered + box.dropped == 60


def test_reid_restores_an_id_after_an_occlusion():
    """The shipped rule (threshold 0.97, a 10 s window) on made-up identity codes."""
    from fractions import Fraction

    from realtime.reid import IdentityReID
    from realtime.types import Face, FramePacket

    rng = np.random.default_rng(0)
    me, other = rng.normal(size=16), rng.normal(size=16)
    r = IdentityReID()
    assert r.threshold == 0.97 and r.window == 10.0

    def pkt(t, faces):
        return FramePacket(0, None, Fraction(1, 25), t, np.zeros((2, 2, 3), np.uint8), faces=faces)

    def face(tid, ident):
        return Face(box=np.zeros(4, np.float32), score=1, landmarks=np.zeros((5, 2), np.float32), track_id=tid,
                    identity=ident + rng.normal(size=16) * 0.05)

    p = pkt(0.0, [face(0, me)])
    r(p)
    assert p.faces[0].track_id == 0
    p = pkt(1.0, [face(1, other)])  # a different person while 0 is gone: new id
    r(p)
    assert p.faces[0].track_id != 0
    p = pkt(2.0, [face(2, me)])     # the same person back under a new tracker id: old id restored
    r(p)
    assert p.faces[0].track_id == 0
    p = pkt(20.0, [face(3, me)])    # too late: a fresh id
    r(p)
    assert p.faces[0].track_id not in (0,)
    # people unseen for longer than the window are forgotten (the gallery grew with every person of a run, and
    # each new track was compared with all of them); ids are never given twice
    ids = {p.faces[0].track_id}
    for k in range(40):
        q = pkt(30.0 + 12 * k, [face(10 + k, rng.normal(size=16))])
        r(q)
        assert q.faces[0].track_id not in ids
        ids.add(q.faces[0].track_id)
    assert len(r._codes) <= 2


def test_bench_soak_reports_memory_and_windows(tiny_export, tmp_path):
    _, model = tiny_export
    out = tmp_path / "soak.json"
    clips = [str(shared_video("pyfeat_single_face.mp4")), str(shared_video("liveportrait_driving_d1.mp4"))]
    assert cli_main(["bench", "soak", *clips, "--model", str(model), "--frames", "200", "--window", "50",
                     "--json", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["frames_processed"] == 200 and rec["loops"] >= 2  # 72 + 16 frames per loop
    assert len(rec["windows"]) == 4 and all(w["fps"] > 0 for w in rec["windows"])
    assert rec["rss_mb_start"] > 0 and rec["rss_mb_end"] > 0 and "rss_growth_mb" in rec


def _run_into(an, clip, result: dict) -> None:
    """A run from another thread; its UsageError lands in ``result["thread"]``."""
    from facecycle.errors import UsageError

    try:
        list(an.process_video(clip, max_frames=3))
    except UsageError as e:
        result["thread"] = str(e)


def test_a_second_run_on_one_analyzer_fails_at_once_and_never_hangs(tiny_export, tmp_path):
    """Overlapping runs on one Analyzer (nested in one thread, or from another thread) give an immediate,
    clear UsageError; the first run is unharmed and the Analyzer is free again afterwards. The whole scenario
    runs in a thread with a timeout of seconds, so a regression to a hang fails instead of blocking the suite."""
    from facecycle.errors import UsageError
    from realtime import Analyzer

    _, model = tiny_export
    clip = shared_video(CLIP)
    result: dict = {}

    def scenario():
        with Analyzer(model=model) as an:
            first = []
            for p in an.process_video(clip, max_frames=12):
                first.append(p.index)
                if p.index == 3:
                    t = time.perf_counter()
                    try:
                        next(iter(an.process_video(clip, max_frames=3, csv=tmp_path / "nested.csv")))
                    except UsageError as e:
                        result["nested"] = (str(e), time.perf_counter() - t)
                    th = threading.Thread(target=_run_into, args=(an, clip, result))
                    th.start()
                    th.join(10)
                    try:
                        an.analyze_image(p.image)
                    except UsageError as e:
                        result["image"] = str(e)
            result["first"] = first
            result["after"] = [p.index for p in an.process_video(clip, max_frames=3)]
            result["image_after"] = len(an.analyze_image(p.image).faces)
        result["nested_outputs"] = sorted(q.name for q in tmp_path.glob("nested*"))

    th = threading.Thread(target=scenario, daemon=True)
    th.start()
    th.join(60)
    assert not th.is_alive(), "overlapping runs on one Analyzer hang"
    msg, waited = result["nested"]
    assert "already running a video" in msg and waited < 1.0
    assert "already running a video" in result.get("thread", "")
    assert result["image"] and "already running a video" in result["image"]
    assert result["first"] == list(range(12))  # the first run was not disturbed
    assert result["after"] == [0, 1, 2] and result["image_after"] >= 0  # free again once the first ended
    assert result["nested_outputs"] == []  # refused before any output was made (no CSV, no failed sidecar)


def test_largest_face_is_the_one_with_the_biggest_box():
    from fractions import Fraction

    from realtime.types import Face, FramePacket

    def face(tid, box):
        return Face(box=np.array(box, np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32), track_id=tid)

    p = FramePacket(index=0, pts=0, time_base=Fraction(1, 25), timestamp=0.0, image=np.zeros((8, 8, 3), np.uint8))
    assert p.largest_face is None
    p.faces = [face(0, [0, 0, 10, 10]), face(1, [5, 5, 30, 25]), face(2, [0, 0, 20, 25])]
    assert p.largest_face.track_id == 1 and p.faces[1].area == 500.0
    p.faces.append(face(3, [100, 100, 125, 120]))  # equal area: the first stays
    assert p.largest_face.track_id == 1


def test_packets_and_faces_print_short_and_name_their_emotions():
    """Printing a packet in a loop showed every pixel of the frame and every value of the code (tens of kB)."""
    from fractions import Fraction

    from realtime.types import EMOTIONS, Face, FramePacket

    probs = np.array([0.05, 0.05, 0.05, 0.6, 0.15, 0.05, 0.05], np.float32)
    f = Face(box=np.array([1, 2, 30, 40], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32), track_id=3,
             code=np.ones(256, np.float32), emotions=probs, intensity=0.85, neutral=np.zeros((64, 64, 3), np.uint8))
    p = FramePacket(index=7, pts=700, time_base=Fraction(1, 25), timestamp=0.28,
                    image=np.zeros((720, 1280, 3), np.uint8), faces=[f], source="clip.mp4")
    text = repr(p)
    assert len(text) < 600, text
    assert "image=array(720x1280x3, uint8)" in text and "code=array(256, float32)" in text
    assert "neutral=array(64x64x3, uint8)" in text and "emotion='happy'" in text and "track_id=3" in text
    assert "index=7" in text and "source='clip.mp4'" in text
    assert list(f.emotion_probs) == list(EMOTIONS) and f.emotion_probs["happy"] == pytest.approx(0.6)
    f.emotions = None
    assert f.emotion_probs == {} and "emotion=None" in repr(f)
    f.pose = np.array([0.0095, -2.5e-5, -0.0385], np.float32)  # a tiny negative angle printed as "-0.    "
    assert "pose=[ 0.0095,  0.    , -0.0385]" in repr(f), repr(f)


def test_the_tracks_neutral_reference_is_on_by_default_and_can_be_turned_off(model_with_head, tmp_path):
    """``--no-neutral-reference`` / ``Analyzer(neutral_reference=False)``: the switch, the sidecar and the settings.
    (This tiny model's head reads every face alike, so no reference fires here; that it fires, and leaves the CSV
    as it is, is tested with the shipped model on a real smile in ``tests/test_expression_quality.py``.)"""
    clip = shared_video(CLIP)
    base = ["process", str(clip), "--model", str(model_with_head), "--no-video", "--no-progress", "--neutralize",
            "--max-frames", "6"]
    assert cli_main([*base, "--out-dir", str(tmp_path / "on")]) == 0
    assert cli_main([*base, "--out-dir", str(tmp_path / "off"), "--no-neutral-reference"]) == 0
    on = json.loads((tmp_path / "on" / f"{clip.stem}.json").read_text())
    off = json.loads((tmp_path / "off" / f"{clip.stem}.json").read_text())
    assert on["neutral_reference"]["gap"] == 0.2 and on["neutral_reference"]["max_pose_deg"] == 15.0
    assert off["neutral_reference"] is False
    # the identity check acts where the model has an identity graph (this export has one)
    assert on["neutral_reference"]["identity_check"] is True and on["neutral_reference"]["min_identity"] == 0.9
    # settings as a dict (checked when the Analyzer opens: one clear UsageError)
    from facecycle.errors import UsageError
    from realtime import Analyzer

    with Analyzer(model=model_with_head, neutralize=True, neutral_reference={"hysteresis": 0.0, "gap": 0.3}) as an:
        run = an.process_video(clip, max_frames=3)
        assert len(list(run)) == 3
        assert run.describe()["neutral_reference"]["gap"] == 0.3
        assert run.describe()["neutral_reference"]["hysteresis"] == 0.0
    for bad in ({"bogus": 1}, {"gap": 2.0}):
        with pytest.raises(UsageError, match="neutral_reference settings"):
            Analyzer(model=model_with_head, neutralize=True, neutral_reference=bad)


def _made_clip(path, frames: int = 8) -> None:
    """A small H.264 clip of moving grey noise (no face needed: this checks the run's plumbing)."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as o:
        s = o.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                o.mux(pk)
        for pk in s.encode():
            o.mux(pk)


def test_the_neutral_look_ahead_reads_a_file_twice_and_says_so(model_with_head, tmp_path, caplog):
    """The look-ahead (on by default with ``--neutralize`` over files; ``--no-neutral-lookahead`` /
    ``Analyzer(neutral_lookahead=False)`` turns it off): the same rows, the sidecar says it. Where there is no file
    to read twice (an image folder) the reference stays causal, silently by default and with a warning when the
    look-ahead was asked for. That it gives early faces a later resting face is tested with the shipped model on a
    real smile in ``tests/test_expression_quality.py``."""
    import logging

    import cv2

    from realtime import Analyzer

    clip = tmp_path / "noise.mp4"
    _made_clip(clip)
    base = ["process", str(clip), "--model", str(model_with_head), "--no-video", "--no-progress", "--neutralize"]
    assert cli_main([*base, "--out-dir", str(tmp_path / "ahead")]) == 0
    assert cli_main([*base, "--out-dir", str(tmp_path / "causal"), "--no-neutral-lookahead"]) == 0
    ahead = json.loads((tmp_path / "ahead" / "noise.json").read_text())
    causal = json.loads((tmp_path / "causal" / "noise.json").read_text())
    assert ahead["neutral_reference"]["lookahead"] is True and causal["neutral_reference"]["lookahead"] is False
    assert ahead["neutral_lookahead"] == "auto" and causal["neutral_lookahead"] is False
    assert ahead["status"] == "complete" and ahead["stats"]["frames"] == 8
    assert (tmp_path / "ahead" / "noise.csv").read_bytes() == (tmp_path / "causal" / "noise.csv").read_bytes()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((64, 64, 3), 100 + i, np.uint8))
    with Analyzer(model=model_with_head, neutralize=True) as an:
        with caplog.at_level(logging.WARNING):
            run = an.process_video(folder)
            assert len(list(run)) == 3 and run.lookahead is False
        assert not [r for r in caplog.records if "look-ahead" in r.getMessage()]  # the default: silent
        with caplog.at_level(logging.WARNING):
            run = an.process_video(folder, neutral_lookahead=True)
            assert len(list(run)) == 3 and run.lookahead is False
        assert any("look-ahead needs a video file" in r.getMessage() for r in caplog.records)
        # one run at a time still holds: the first pass shares the run's claim on the Analyzer
        again = an.process_video(clip)
        assert again.lookahead is True and len(list(again)) == 8
    with Analyzer(model=model_with_head, neutralize=False) as an:  # no neutral faces: nothing to look ahead for
        assert an.process_video(clip).lookahead is False


def test_the_baseline_look_ahead_reads_a_file_twice_only_when_asked(model_with_head, tmp_path, caplog):
    """``--baseline-lookahead`` / ``Analyzer(baseline_lookahead=True)``: a file is read twice (without neutral
    faces too) and the sidecar says so; off by default; an image folder is read once, with a warning. That it
    measures an early grin against the later rest is tested on a real clip in
    ``tests/test_expression_quality.py``."""
    import logging

    import cv2

    from realtime import Analyzer

    clip = tmp_path / "noise.mp4"
    _made_clip(clip)
    base = ["process", str(clip), "--model", str(model_with_head), "--no-video", "--no-progress"]
    assert cli_main([*base, "--out-dir", str(tmp_path / "ahead"), "--baseline-lookahead"]) == 0
    assert cli_main([*base, "--out-dir", str(tmp_path / "causal")]) == 0
    ahead = json.loads((tmp_path / "ahead" / "noise.json").read_text())
    causal = json.loads((tmp_path / "causal" / "noise.json").read_text())
    assert ahead["person_baseline"]["lookahead"] is True and ahead["baseline_lookahead"] is True
    assert causal["person_baseline"]["lookahead"] is False and causal["baseline_lookahead"] is False
    assert ahead["status"] == "complete" and ahead["stats"]["frames"] == 8
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((64, 64, 3), 100 + i, np.uint8))
    read = []
    with Analyzer(model=model_with_head, baseline_lookahead=True) as an:
        run = an.process_video(clip)
        run.on_ahead = read.append
        assert run.baseline_ahead is True and run.lookahead is False and len(list(run)) == 8
        assert len(read) == 8  # the first reading
        with caplog.at_level(logging.WARNING):
            run = an.process_video(folder)
            assert len(list(run)) == 3 and run.baseline_ahead is False
        assert any("baseline look-ahead needs a video file" in r.getMessage() for r in caplog.records)
        assert an.process_video(clip, baseline_lookahead=False).baseline_ahead is False


@pytest.mark.parametrize("neutralize", [False, True])
def test_the_second_reading_replays_the_first_and_gives_the_same_rows(model_with_head, tmp_path, monkeypatch,
                                                                        neutralize):
    """A look-ahead's second reading takes each frame's faces, tracks and scene cut from the first instead of
    detecting (and, without neutral faces, analysing) again. Over ``REPLAY_MAX_FACES`` it detects and analyses
    again: both give the same CSV, neutral faces and detector count."""
    import hashlib

    import realtime.analyzer as analyzer_mod
    from realtime import Analyzer

    clip = shared_video(CLIP)
    out = {}
    for cap in (analyzer_mod.REPLAY_MAX_FACES, 0):
        monkeypatch.setattr(analyzer_mod, "REPLAY_MAX_FACES", cap)
        h = hashlib.sha256()
        with Analyzer(model=model_with_head, neutralize=neutralize, baseline_lookahead=True) as an:
            run = an.process_video(clip, csv=tmp_path / f"{cap}.csv", max_frames=40)
            for p in run:
                for f in p.faces:
                    h.update(f.neutral.tobytes() if f.neutral is not None else b"-")
            replayed = run._replay is not None
        side = json.loads((tmp_path / f"{cap}.json").read_text())
        out[cap] = ((tmp_path / f"{cap}.csv").read_bytes(), h.hexdigest(), side["stats"]["detector_runs"],
                    side["stats"]["faces"], replayed)
    (a_csv, a_h, a_det, a_faces, a_rep), (b_csv, b_h, b_det, b_faces, b_rep) = out.values()
    assert a_rep and not b_rep and a_faces >= 30
    assert a_csv == b_csv and a_h == b_h and a_det == b_det >= 8


def test_a_look_ahead_that_fails_leaves_the_run_reading_once(model_with_head, tmp_path, monkeypatch, caplog):
    """Where the look-ahead's own reading fails (a file that turns undecodable midway), the run goes on reading
    the file once, as without it: every row, a warning, no seeded bank."""
    import logging

    import realtime.analyzer as analyzer_mod
    from facecycle.errors import InputError
    from realtime import Analyzer
    from realtime.sources import VideoSource

    class Failing(VideoSource):
        def __iter__(self):
            for i, p in enumerate(super().__iter__()):
                if i == 3:
                    raise InputError(f"{self.name}: undecodable (made up)")
                yield p

    clip = tmp_path / "noise.mp4"
    _made_clip(clip)
    opened = []
    real = analyzer_mod.open_source

    def open_source(spec, **kw):
        src = real(spec, **kw)
        opened.append(src)
        if len(opened) == 2:  # the look-ahead's reading (the run's own source is opened first)
            src.__class__ = Failing
        return src

    monkeypatch.setattr(analyzer_mod, "open_source", open_source)
    with caplog.at_level(logging.WARNING), Analyzer(model=model_with_head, neutralize=True) as an:
        run = an.process_video(str(clip), csv=tmp_path / "out.csv")
        assert run.lookahead is True and len(list(run)) == 8
        assert run.describe()["neutral_reference"]["lookahead_tracks_seeded"] == 0
    assert len(opened) == 2 and any("look-ahead stopped" in r.getMessage() for r in caplog.records)
    side = json.loads((tmp_path / "out.json").read_text())
    assert side["status"] == "complete" and side["stats"]["frames"] == 8


def test_as_bgr_image_takes_grey_bgra_and_paths_and_refuses_the_rest_with_the_reason(tmp_path):
    import cv2

    from realtime.types import as_bgr_image

    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    grey = bgr[:, :, 1].copy()
    assert as_bgr_image(grey).shape == (12, 16, 3) and (as_bgr_image(grey) == grey[:, :, None]).all()
    assert (as_bgr_image(grey[:, :, None]) == as_bgr_image(grey)).all()
    bgra = np.dstack([bgr, np.full((12, 16), 7, np.uint8)])
    assert (as_bgr_image(bgra) == bgr).all() and as_bgr_image(bgra).flags.c_contiguous
    flipped = as_bgr_image(bgr[:, ::-1])
    assert flipped.flags.c_contiguous and (flipped == bgr[:, ::-1]).all()
    cv2.imwrite(str(tmp_path / "x.png"), bgr)
    assert (as_bgr_image(tmp_path / "x.png") == bgr).all() and (as_bgr_image(str(tmp_path / "x.png")) == bgr).all()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    for bad, err, words in [(bgr.astype(np.float32) / 255, TypeError, "* 255"),
                            (bgr.astype(np.uint16) * 256, TypeError, ">> 8"),
                            (bgr.tolist(), TypeError, "got list"),
                            (bgr[None], ValueError, "(1, 12, 16, 3)"),
                            (np.zeros((0, 5, 3), np.uint8), ValueError, "empty image"),
                            (tmp_path / "none.png", ValueError, "no such file"),
                            (tmp_path / "bad.png", ValueError, "not a readable image")]:
        with pytest.raises(err, match=None) as e:
            as_bgr_image(bad)
        assert words in str(e.value)


def test_analyze_image_reads_grey_bgra_and_a_path_and_refuses_a_float_image(tmp_path):
    import cv2

    from realtime import Analyzer

    img = real_frames(1, size=(640, 360))[0]
    cv2.imwrite(str(tmp_path / "face.png"), img)
    with Analyzer(neutralize=False) as an:
        ref = an.analyze_image(img)
        if not ref.faces:
            pytest.skip("no face in the frame (synthetic frames without ../shared)")
        for other in (cv2.cvtColor(img, cv2.COLOR_BGR2BGRA), tmp_path / "face.png"):
            got = an.analyze_image(other)
            assert len(got.faces) == 1 and np.allclose(got.faces[0].box, ref.faces[0].box, atol=0.5)
            assert np.allclose(got.faces[0].emotions, ref.faces[0].emotions, atol=1e-4)
        grey = an.analyze_image(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        assert len(grey.faces) == 1 and np.allclose(grey.faces[0].box, ref.faces[0].box, atol=12)
        with pytest.raises(TypeError, match="uint8"):  # before: no face and no word why
            an.analyze_image(img.astype(np.float32) / 255)
        with pytest.raises(ValueError, match="empty image"):  # before: an ONNX Runtime error about a missing input
            an.analyze_image(np.zeros((0, 0, 3), np.uint8))


def _texture_frames(n: int, seed: int, drift: float = 1.0) -> list:
    """``n`` frames of one smooth random texture drifting ``drift`` px per frame (a video's neighbours)."""
    import cv2

    base = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 256, (200, 260), dtype=np.uint8), (0, 0), 6)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    return [cv2.cvtColor(np.ascontiguousarray(base[20:180, int(i * drift) % 40: int(i * drift) % 40 + 200]),
                         cv2.COLOR_GRAY2BGR) for i in range(n)]


def test_a_folder_is_a_sequence_only_where_names_count_up_and_neighbours_look_alike(tmp_path):
    import cv2

    from realtime.sources.images import ImageFolderSource, sequence_evidence

    def folder(name, frames, names) -> list:
        d = tmp_path / name
        d.mkdir()
        for f, n in zip(frames, names, strict=True):
            cv2.imwrite(str(d / n), f)
        return ImageFolderSource(d).files

    video = _texture_frames(12, 0)
    photos = [_texture_frames(1, s)[0] for s in range(12)]  # other pictures, numbered in order
    seq = [f"frame_{i:05d}.png" for i in range(12)]
    assert sequence_evidence(folder("video", video, seq))[0]
    assert sequence_evidence(folder("gaps", video, [f"f{i}.png" for i in [*range(11), 12]]))[0]  # a frame missing
    assert sequence_evidence(folder("every5", video, [f"x_{5 * i:03d}.png" for i in range(12)]))[0]
    ok, why = sequence_evidence(folder("photos", photos, [f"IMG_{1000 + i}.png" for i in range(12)]))
    assert not ok and "differ" in why
    ok, why = sequence_evidence(folder("named", video, [f"{c}.png" for c in "abcdefghijkl"]))
    assert not ok and "without a frame number" in why
    ok, why = sequence_evidence(folder("ids", video, [f"Training_{n}.png" for n in
                                                      sorted(np.random.default_rng(1).integers(1e6, 1e8, 12))]))
    assert not ok and "equal steps" in why
    two = [f"a_{i}.png" for i in range(6)] + [f"b_{i}.png" for i in range(6)]
    ok, why = sequence_evidence(folder("two", video, two))
    assert not ok and "more than one pattern" in why
    assert not sequence_evidence(folder("one", video[:1], ["frame_1.png"]))[0]
    src = ImageFolderSource(tmp_path / "video", reading="stills")
    assert src.stills and src.reading == "stills" and src.describe()["reading_why"] == "asked for"
    with pytest.raises(ValueError, match="reading must be one of"):
        ImageFolderSource(tmp_path / "video", reading="photos")


def _with_capture_time(jpeg: bytes, order: str = "big", tag: int = 0x9003) -> bytes:
    """``jpeg`` with an EXIF block as a camera writes it: IFD0 -> Exif sub-IFD -> ``tag`` (DateTimeOriginal)."""
    import struct

    e = ">" if order == "big" else "<"
    when = b"2026:12:06 10:00:00\x00"  # 20 bytes, stored after the two IFDs
    ifd0 = struct.pack(e + "H", 1) + struct.pack(e + "HHII", 0x8769, 4, 1, 26) + struct.pack(e + "I", 0)
    exif = struct.pack(e + "H", 1) + struct.pack(e + "HHII", tag, 2, len(when), 44) + struct.pack(e + "I", 0)
    tiff = (b"MM" if order == "big" else b"II") + struct.pack(e + "HI", 42, 8) + ifd0 + exif + when
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_a_cameras_numbered_photos_of_one_scene_are_stills(tmp_path):
    """A burst of a camera's photos of one person (IMG_0001.jpg, ...) has numbered names and neighbours that look
    alike, so it was read as a video's frames: smoothed from one photo into the next. Their EXIF capture time says
    they are photos."""
    import cv2

    from realtime.sources.images import ImageFolderSource, has_capture_time, sequence_evidence

    frames = _texture_frames(8, 0)
    for name, order, tag in (("plain", None, None), ("camera", "big", 0x9003), ("phone", "little", 0x9004),
                             ("software", "little", 0x9999)):
        d = tmp_path / name
        d.mkdir()
        for i, f in enumerate(frames):
            data = cv2.imencode(".jpg", f)[1].tobytes()
            (d / f"IMG_{100 + i:04d}.jpg").write_bytes(data if order is None else _with_capture_time(data, order, tag))
        files = ImageFolderSource(d).files
        assert all(cv2.imread(str(f)) is not None for f in files)  # the EXIF block leaves the picture readable
        seq, why = sequence_evidence(files)
        if name in ("camera", "phone"):
            assert has_capture_time(files[0]) and not seq and "capture time" in why, why
            src = ImageFolderSource(d)
            assert src.stills and src.reading == "stills"
        else:  # no EXIF, or EXIF without a capture time: the frames of a video
            assert not has_capture_time(files[0]) and seq, why
    assert not has_capture_time(tmp_path / "missing.jpg")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00\xff\xff")  # cut short
    assert not has_capture_time(tmp_path / "cut.jpg")


def test_photos_read_as_stills_each_as_alone_and_the_csv_names_each_image(tmp_path):
    """Separate photos in one folder were read as a video: one face id for all, emotions smoothed from photo to
    photo (2 of 12 frames of one clip read as another emotion than alone, image_folders.json). As stills each
    row is what ``analyze_image`` reads for its image, each face a new id, nothing carried over; the ``file``
    column names the image, no-face images included."""
    import csv

    import cv2

    from realtime import Analyzer
    from realtime.batch.job import analyze_file

    clip = shared_video("liveportrait_driving_d0.mp4")
    import av

    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    d = tmp_path / "photos"
    d.mkdir()
    picks = np.linspace(0, len(frames) - 1, 6).astype(int)
    for k, i in enumerate(picks):
        cv2.imwrite(str(d / f"photo, {k}.png"), frames[i])  # a comma in the name: quoted in the CSV
    cv2.imwrite(str(d / "photo, 6.png"), np.full((120, 160, 3), 90, np.uint8))  # no face
    out = {}
    with Analyzer() as an:
        for reading in ("stills", "sequence"):
            run = analyze_file(an, d, csv=tmp_path / f"{reading}.csv", video=None, images=reading)
            for _ in run:
                pass
            out[reading] = list(csv.DictReader(open(tmp_path / f"{reading}.csv", newline="")))
        alone = {f"photo, {k}.png": an.analyze_image(d / f"photo, {k}.png") for k in range(7)}
    side = json.loads((tmp_path / "stills.json").read_text())
    assert side["input"]["reading"] == "stills" and side["columns"]["file"] is True
    rows = out["stills"]
    assert [r["file"] for r in rows] == [f"photo, {k}.png" for k in range(7)]
    assert rows[-1]["success"] == "0" and not alone["photo, 6.png"].faces
    faces = [r for r in rows if r["success"] == "1"]
    assert [int(r["face_id"]) for r in faces] == list(range(6))
    for r in faces:
        f = alone[r["file"]].faces[0]
        got = np.array([float(r[f"emotion_{e}"]) for e in ("angry", "disgust", "fear", "happy", "neutral", "sad",
                                                              "surprise")])
        assert np.abs(got - f.emotions).max() < 2e-3, r["file"]
        assert r["baseline_ready"] == "0"
    assert len({r["face_id"] for r in out["sequence"] if r["success"] == "1"}) == 1  # asked for: one track
    # --reid gives one person's photos one id back; their readings stay each photo's own (nothing is smoothed
    # across photos, as it was when the id came back)
    with Analyzer(reid=True) as an:
        for _ in analyze_file(an, d, csv=tmp_path / "reid.csv", video=None, images="stills"):
            pass
    rows = [r for r in csv.DictReader(open(tmp_path / "reid.csv", newline="")) if r["success"] == "1"]
    assert len({r["face_id"] for r in rows}) < len(rows)  # ids given back
    for r in rows:
        got = np.array([float(r[f"emotion_{e}"]) for e in ("angry", "disgust", "fear", "happy", "neutral", "sad",
                                                              "surprise")])
        assert np.abs(got - alone[r["file"]].faces[0].emotions).max() < 2e-3, r["file"]
    # nor does a person baseline form across photos: 32 of one person with --reid (their made-up times, 1/30 s
    # apart, passed the baseline's warm-up, and rel_* were filled from photo 30 on, against the photos before)
    many = tmp_path / "many"
    many.mkdir()
    for k, i in enumerate(np.linspace(0, len(frames) - 1, 32).astype(int)):
        cv2.imwrite(str(many / f"photo_{k:02d}.jpg"), frames[i])
    with Analyzer(reid=True) as an:
        for _ in analyze_file(an, many, csv=tmp_path / "many.csv", video=None, images="stills"):
            pass
    rows = [r for r in csv.DictReader(open(tmp_path / "many.csv", newline="")) if r["success"] == "1"]
    assert len(rows) >= 30 and len({r["face_id"] for r in rows}) < len(rows)
    assert all(r["baseline_ready"] == "0" and r["rel_intensity"] == "" for r in rows)


def test_a_data_set_tree_is_read_through_its_class_folders_and_named_by_relative_path(tiny_export, tmp_path,
                                                                                      caplog):
    """A face data set is `<class>/*.jpg`: a folder with no images of its own is read through its subfolders
    (hidden ones skipped), as stills, and `file` holds each image's path relative to the folder, so rows join to
    their labels. It used to be refused as "no images"."""
    import csv

    import cv2

    root = tmp_path / "test"
    for c, names in {"happy": ["im10.png", "im9.png"], "sad": ["a.png"], ".cache": ["x.png"],
                     "test.annotated": ["old.png"]}.items():  # hidden, and an earlier run's annotated pictures
        (root / c).mkdir(parents=True)
        for k, n in enumerate(names):
            cv2.imwrite(str(root / c / n), np.full((40, 60, 3), (40 * k + 30 * len(c)) % 256, np.uint8))
    (root / "sad" / "broken.jpg").write_bytes(b"not a picture")
    (root / "clip.mp4").write_bytes(b"")  # a video beside the pictures is not read with them: said once
    _, model_dir = tiny_export
    with caplog.at_level("WARNING"):
        assert cli_main(["process", str(root), "--model", str(model_dir), "--no-video", "--no-progress",
                         "--out-dir", str(tmp_path / "out")]) == 0
    assert caplog.text.count("also holds 1 video file (clip.mp4), not read with the pictures") == 1
    rows = list(csv.DictReader(open(tmp_path / "out" / "test.csv", newline="")))
    assert [r["file"] for r in rows] == ["happy/im9.png", "happy/im10.png", "sad/a.png"]
    side = json.loads((tmp_path / "out" / "test.json").read_text())
    assert side["input"]["reading"] == "stills" and side["input"]["frame_count"] == 4
    assert side["input"]["errors"] == 1 and side["input"]["unreadable"] == ["sad/broken.jpg"]  # named, not lost


def test_aligned_face_crops_are_found_with_a_border_around_them(tmp_path):
    """A face that fills its picture (FER-2013, RAF-DB, AffectNet crops) has too little context for the detector: the
    detector found 192 of 280 FER-2013 faces (266 with the border, image_folders.json). A still with no face found
    is tried again inside a grey border: the faces come back in the picture's pixels. A picture without a face stays
    without one."""
    import cv2

    from realtime import Analyzer
    from tests.conftest import FER

    if not (FER / "train").is_dir():
        pytest.skip(f"{FER} is absent")
    files = [p for c in ("angry", "happy", "neutral", "sad", "surprise")
             for p in sorted((FER / "train" / c).glob("*.jpg"))[-8:]]
    with Analyzer() as an:
        det = an.detector
        plain = sum(len(det.detect(cv2.imread(str(f)))) > 0 for f in files)
        found = [det.detect_still(cv2.imread(str(f))) for f in files]
        assert sum(len(d) > 0 for d in found) >= 0.9 * len(files) > plain
        for d in found:
            assert (d.boxes >= 0).all() and (d.boxes <= 48).all() and d.landmarks.shape == (len(d), 5, 2)
        assert not len(det.detect_still(np.full((48, 48, 3), 128, np.uint8)))
        cv2.imwrite(str(tmp_path / "face.png"), cv2.imread(str(files[0])))
        assert len(an.analyze_image(tmp_path / "face.png").faces) == len(found[0])
        # a face that fills its (square) picture is read from the whole picture, as the probes read FER-2013;
        # a face in a wider frame keeps the detector's square
        whole = [an.analyze_image(cv2.imread(str(f))) for f in files]
        assert sum(len(p.faces) == 1 and p.faces[0].crop_box == (0, 0, 48) for p in whole) >= 0.8 * len(files)
        frame = real_frames(1, size=(640, 360))[0]
        wide = an.analyze_image(frame)
        if wide.faces:
            from realtime.crops import loose_square_box

            assert wide.faces[0].crop_box == loose_square_box(wide.faces[0].box, an.inference.crop_scale)


def test_stills_get_annotated_pictures_not_a_video(tiny_export, tmp_path, capsys):
    """A single picture's annotated output is a picture of its size and kind (it was a one-frame H.264 video); an
    image folder read as stills gets a folder of annotated pictures under the same relative paths (it was a
    30 fps video of unrelated pictures); a frame sequence still gets a video. An existing output folder is
    refused up front without --overwrite."""
    import cv2

    _, model_dir = tiny_export
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "photo.jpg"), rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "scan.pgm"), rng.integers(0, 256, (30, 40), dtype=np.uint8))
    shots = tmp_path / "shots"
    for rel, size in (("a/x.png", (40, 60)), ("b/y.jpg", (64, 64))):
        (shots / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(shots / rel), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    seq = tmp_path / "seq"
    seq.mkdir()
    for i, f in enumerate(_texture_frames(6, 0)):
        cv2.imwrite(str(seq / f"frame_{i:03d}.png"), f)
    out = tmp_path / "out"
    base = ["--model", str(model_dir), "--no-progress", "--out-dir", str(out)]
    assert cli_main(["process", str(tmp_path / "photo.jpg"), str(tmp_path / "scan.pgm"), str(shots), str(seq),
                     *base]) == 0
    # pictures under 320 px are annotated enlarged by a whole factor (realtime.annotators.MIN_ANNOTATED_SIDE)
    assert cv2.imread(str(out / "photo.annotated.jpg")).shape == (250, 350, 3)  # 5 x 50x70
    assert cv2.imread(str(out / "scan.annotated.png")).shape == (240, 320, 3)  # 8 x 30x40
    assert cv2.imread(str(out / "shots.annotated" / "a" / "x.png")).shape == (240, 360, 3)
    assert cv2.imread(str(out / "shots.annotated" / "b" / "y.jpg")).shape == (320, 320, 3)
    assert not list((out / "shots.annotated").rglob(".*"))  # no partial files left
    assert decode_count(out / "seq.annotated.mp4") == 6
    assert json.loads((out / "shots.json").read_text())["video"] == str(out / "shots.annotated")
    err = capsys.readouterr().err
    assert f"{out / 'shots.annotated'}{os.sep}" in err
    assert "shots: 2 frames (read as separate pictures: names without a frame number" in err  # the end line says
    assert "seq: 6 frames (read as a frame sequence: numbered names and neighbours alike" in err
    assert cli_main(["process", str(shots), *base, "--no-csv"]) == 4  # the folder exists
    assert "exists (use --overwrite" in capsys.readouterr().err
    (out / "shots.annotated" / "old.png").write_bytes(b"from an earlier run")
    assert cli_main(["process", str(shots), *base, "--overwrite"]) == 0
    assert sorted(p.relative_to(out / "shots.annotated").as_posix() for p in (out / "shots.annotated").rglob("*")
                  if p.is_file()) == ["a/x.png", "b/y.jpg"]  # replaced whole: no picture of the earlier run
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_whole_picture_square_only_for_a_face_that_fills_a_near_square_picture():
    from realtime.crops import WHOLE_ABOVE, whole_picture_square

    assert whole_picture_square((48, 48, 3), (-2, 0, 50)) == (0, 0, 48)
    assert whole_picture_square((100, 104), (0, 0, int(WHOLE_ABOVE * 100))) == (2, 0, 100)
    assert whole_picture_square((100, 100), (10, 10, int(WHOLE_ABOVE * 100) - 1)) is None  # a smaller face
    assert whole_picture_square((360, 640), (100, 0, 360)) is None  # a wide frame: its whole would be squashed


def test_a_single_picture_is_read_once_even_with_neutral_faces(tiny_export, tmp_path):
    """The neutral look-ahead (and the baseline's) reads a video file twice; a single picture was read twice too,
    for nothing (one frame: nothing later to take a neutral face or a baseline from)."""
    import cv2

    _, model_dir = tiny_export
    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), real_frames(1, size=(320, 180))[0])
    out = tmp_path / "out"
    assert cli_main(["process", str(pic), "--neutralize", "--baseline-lookahead", "--model", str(model_dir),
                     "--no-video", "--no-progress", "--out-dir", str(out)]) == 0
    side = json.loads((out / "pic.json").read_text())
    assert side["neutral_reference"]["lookahead"] is False and side["person_baseline"]["lookahead"] is False
    assert side["frames"] == 1


def test_the_current_folder_as_input_names_its_outputs_after_itself(tiny_export, tmp_path, monkeypatch):
    """`facecycle process .` inside a folder of pictures wrote `stream.csv`; the outputs now take the folder's
    name."""
    import cv2

    _, model_dir = tiny_export
    shots = tmp_path / "holiday"
    shots.mkdir()
    cv2.imwrite(str(shots / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    monkeypatch.chdir(shots)
    assert cli_main(["process", ".", "--model", str(model_dir), "--no-video", "--no-progress",
                     "--out-dir", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["holiday.csv", "holiday.json"]


def test_frames_held_in_memory_are_read_as_their_video_is(tmp_path):
    """Frames from a caller's own capture or decoder: before, a caller had to write a Source class, or lose the
    tracking and smoothing with one analyze_image per frame. The same frames as a list give the file's CSV, byte
    for byte; (image, timestamp) pairs keep their spacing, counted from the first pair's time (a wall clock's
    1.7e9 s reached the CSV and the annotated video's first frame as is); a generator is read lazily; bad items say
    why."""
    import av

    from facecycle.errors import InputError, UsageError
    from realtime import Analyzer
    from realtime.sources import FrameSource

    clip = write_video(tmp_path / "clip.mp4", real_frames(30), rate=25)
    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    with Analyzer(detect_every=3) as an:  # the shipped default model
        an.process_video(clip, csv=tmp_path / "file.csv").run()
        an.process_video(FrameSource(frames, fps=25), csv=tmp_path / "list.csv").run()
        assert (tmp_path / "list.csv").read_bytes() == (tmp_path / "file.csv").read_bytes()
        side = json.loads((tmp_path / "list.json").read_text())
        assert side["input"]["kind"] == "FrameSource" and side["status"] == "complete"

        pulled = []

        def camera():  # a generator: each frame is asked for when the pipeline is ready for it
            for i, f in enumerate(frames[:6]):
                pulled.append(i)
                yield f[:, :, 0] if i == 2 else (f, 100.0 + 0.5 * i)  # grey frames are taken too
        with pytest.raises(InputError, match="frame 2: timestamps must increase"):
            list(an.process_video(camera()))  # frame 2 has no time of its own (2 / 30 s) after 100.5 s
        got = [(p.index, p.timestamp, p.image.shape) for p in an.process_video(
            iter([(f, 100.0 + 0.5 * i) for i, f in enumerate(frames[:4])]))]
        assert [g[1] for g in got] == [0.0, 0.5, 1.0, 1.5] and got[0][2] == frames[0].shape
        assert pulled == [0, 1, 2]
        with pytest.raises(UsageError, match="one image"):
            an.process_video(frames[0])
        with pytest.raises(UsageError, match=r"one \(image, seconds\) pair"):  # it was read as two frames
            an.process_video((frames[0], 0.0))
        with pytest.raises(InputError, match="frame 0: expected a uint8 image"):
            list(an.process_video([frames[0].astype(np.float32) / 255]))
        with pytest.raises(InputError, match="frame 1: the timestamp is nan"):
            list(an.process_video([(frames[0], 0.0), (frames[1], float("nan"))]))

    def paced():  # a live source without timestamps: each frame is timed when it arrives, as a camera's
        for f in frames[:3]:
            time.sleep(0.05)
            yield f
    ts = [p.timestamp for p in FrameSource(paced(), live=True)]
    assert ts[0] == 0.0 and ts[1] >= 0.045 and ts[2] - ts[1] >= 0.045, ts

    class Place:  # any os.PathLike names a file, as str and Path do (not frames)
        def __fspath__(self) -> str:
            return str(clip)

    from realtime.sources import VideoSource, open_source
    with open_source(Place()) as src:
        assert isinstance(src, VideoSource)


def test_a_caller_that_refills_one_array_for_every_frame_gets_every_frame_read(tmp_path):
    """cv2's ``cap.read(buf)`` and camera SDKs refill one array for every frame. The pipeline reads ahead, so
    before, frames waiting in its queues were read with a later frame's pixels (all rows of a fast generator held
    the last frame's). Each frame is now copied where it is the caller's own array, and ``analyze_image``'s packet
    keeps its own pixels too. A (N, H, W) stack is N grey frames."""
    from realtime import Analyzer
    from realtime.sources import FrameSource

    frames = real_frames(12, size=(320, 240))

    def refill():
        buf = np.empty_like(frames[0])
        for f in frames:
            buf[...] = f
            yield buf
    got = [p.image for p in FrameSource(refill())]
    assert all((g == f).all() for g, f in zip(got, frames, strict=True))
    grey = np.stack([f[:, :, 1] for f in frames[:3]])  # (3, 240, 320)
    seen = [p.image for p in FrameSource(grey)]
    assert len(seen) == 3 and all((s == g[:, :, None]).all() for s, g in zip(seen, grey, strict=True))
    with Analyzer() as an:  # the shipped default model
        an.process_video(FrameSource(frames, fps=25), csv=tmp_path / "list.csv").run()
        an.process_video(FrameSource(refill(), fps=25), csv=tmp_path / "refilled.csv").run()
        assert (tmp_path / "refilled.csv").read_bytes() == (tmp_path / "list.csv").read_bytes()
        img = frames[0].copy()
        p = an.analyze_image(img)
        img[...] = 0
        assert (p.image == frames[0]).all()


def test_as_bgr_images_errors_say_the_conversion_that_fits_the_values(tmp_path):
    from realtime.types import as_bgr_image

    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3))
    for arr, words in [(img, "already in 0-255"), (img.astype(float), "already in 0-255"),
                       (img / 255.0, "in 0-1"), (img.astype(np.int16) - 300, "-300 to"),
                       (img.astype(np.uint16) * 256, ">> 8")]:
        with pytest.raises(TypeError, match="uint8") as e:
            as_bgr_image(arr)
        assert words in str(e.value), str(e.value)
    with pytest.raises(ValueError, match="a folder, not an image file"):
        as_bgr_image(tmp_path)


def test_closing_a_partly_read_run_or_its_analyzer_joins_the_threads_and_frees_it(tiny_export, tmp_path):
    """`Run.close()` after a few frames left the pipeline's threads waiting and the Analyzer claimed ("already
    running a video" after the run was closed; at exit the interpreter aborted). A closed Analyzer reloaded its
    model silently; now it says it is closed."""
    from facecycle.errors import UsageError
    from realtime import Analyzer

    _, model = tiny_export
    frames = real_frames(30)

    def ours():
        return [t for t in threading.enumerate() if t.name.startswith("fc-")]

    an = Analyzer(model=model)
    with an.process_video(frames, csv=tmp_path / "a.csv") as run:
        it = iter(run)
        next(it)
        next(it)
    assert not ours(), ours()
    assert json.loads((tmp_path / "a.json").read_text())["status"] == "stopped"  # the consumer stopped, no stop()
    for _ in an.process_video(frames, csv=tmp_path / "b.csv"):  # a plain break ends the run at once, as before
        break
    assert not ours(), ours()
    assert json.loads((tmp_path / "b.json").read_text())["status"] == "stopped"
    assert len(list(an.process_video(frames[:3]))) == 3  # free again
    run = an.process_video(frames)
    next(iter(run))
    an.close()  # closes the run it is in the middle of
    assert not ours(), ours()
    with pytest.raises(UsageError, match="closed"):
        an.analyze_image(frames[0])
    with pytest.raises(UsageError, match="closed"):
        an.process_video(frames)


def test_outputs_that_are_one_file_or_the_input_and_max_frames_below_one_are_refused(tiny_export, tmp_path):
    """A CSV named x.json was overwritten by its own sidecar, csv= and video= one path lost the CSV, and video= the
    input replaced the input, all without a word; max_frames=0 read nothing and called it complete (the CLI
    refuses it). Each is a UsageError before anything is written."""
    from facecycle.errors import UsageError
    from realtime import Analyzer
    from realtime.sources import VideoSource

    _, model = tiny_export
    clip = write_video(tmp_path / "clip.mp4", real_frames(4))
    before = clip.read_bytes()
    with Analyzer(model=model) as an:
        for kw, says in ((dict(csv=tmp_path / "x.json"), "sidecar would be written over the csv"),
                         (dict(csv=tmp_path / "s.mp4", video=tmp_path / "s.mp4"), "video would be written over"),
                         (dict(video=clip, overwrite=True), "over the input"),
                         (dict(csv=clip, overwrite=True), "over the input"),
                         (dict(video=clip, overwrite=True, source=VideoSource(clip)), "over the input"),
                         (dict(max_frames=0), "max_frames must be >= 1")):
            src = kw.pop("source", clip)
            with pytest.raises(UsageError, match=says):
                an.process_video(src, **kw)
            if src is not clip:
                src.close()
    assert clip.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_a_source_that_fails_keeps_the_frames_it_had_read(tiny_export, tmp_path):
    """pipeline.md: frames finished before a failure are still written. A source that failed (a camera SDK's
    generator raising at frame 10) lost the frames already queued: 2 of 10 rows."""
    from facecycle.errors import PipelineError
    from realtime import Analyzer

    _, model = tiny_export
    frames = real_frames(20)

    def camera():
        for i, f in enumerate(frames):
            if i == 10:
                raise RuntimeError("unplugged")
            yield f

    with Analyzer(model=model) as an:
        seen = []
        with pytest.raises(PipelineError, match="unplugged"):
            for p in an.process_video(camera(), csv=tmp_path / "cam.csv"):
                seen.append(p.index)
    assert seen == list(range(10))
    assert len((tmp_path / "cam.csv").read_text().splitlines()) == 1 + 10


@pytest.mark.parametrize("scale", [0, -1, float("nan")])
def test_a_crop_scale_of_zero_or_less_is_refused(tiny_export, tmp_path, scale, capsys):
    """crop_scale=0 read every face from a 1-pixel crop, and `data prepare --scale 0` wrote 1-pixel crops scaled
    up, with exit 0."""
    from facecycle.errors import UsageError
    from realtime import Analyzer

    _, model = tiny_export
    with pytest.raises(UsageError, match="crop_scale must be > 0"):
        Analyzer(model=model, crop_scale=scale)
    clip = write_video(tmp_path / "c.mp4", real_frames(3))
    assert cli_main(["data", "prepare", str(clip), "--out", str(tmp_path / "ds"), f"--scale={scale}"]) == 2
    assert "--scale must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_closing_the_analyzer_while_another_thread_iterates_waits_for_that_run(tiny_export, tmp_path):
    """Analyzer.close() while a thread was inside a run closed the detector and the model under the pipeline's
    threads; it now stops that run and waits for it to end before releasing them."""
    from realtime import Analyzer

    _, model = tiny_export
    frames = real_frames(10)

    def slow():
        for f in frames * 30:
            time.sleep(0.01)
            yield f

    an = Analyzer(model=model)
    run = an.process_video(slow(), csv=tmp_path / "t.csv")
    seen: list = []
    errors: list = []

    def consume():
        try:
            for p in run:
                seen.append(p.index)
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    th = threading.Thread(target=consume)
    th.start()
    while len(seen) < 3:
        time.sleep(0.01)
    an.close()
    th.join(10)
    assert not th.is_alive() and not errors, errors
    assert not [t for t in threading.enumerate() if t.name.startswith("fc-")]
    assert 3 <= len(seen) < 300
    assert json.loads((tmp_path / "t.json").read_text())["status"] == "interrupted"



def test_closing_the_analyzer_while_another_thread_holds_its_run_unread_ends_it_at_once(tiny_export, tmp_path):
    """A thread that took frames from a run and then held its iterator without reading on (a paused reader, a UI
    waiting for the user) made Analyzer.close() wait 10 s, with the CSV still open and its sidecar "running"; the
    run is now closed from the closing thread, and the reader's next next() gets the end."""
    from realtime import Analyzer

    _, model = tiny_export
    clip = write_video(tmp_path / "c.mp4", real_frames(40), rate=25)
    an = Analyzer(model=model)
    run = an.process_video(clip, csv=tmp_path / "t.csv")
    frames = iter(run)
    took, go_on, after = threading.Event(), threading.Event(), []

    def reader():
        for _ in range(3):
            next(frames)
        took.set()
        go_on.wait(20)
        try:
            after.append(next(frames, "end"))
        except Exception as e:  # noqa: BLE001 - the test reports it
            after.append(e)

    th = threading.Thread(target=reader)
    th.start()
    assert took.wait(20)
    t = time.monotonic()
    an.close()
    assert time.monotonic() - t < 5.0
    side = json.loads((tmp_path / "t.json").read_text())
    assert side["status"] == "interrupted" and side["frames"] == 3
    go_on.set()
    th.join(10)
    assert after == ["end"]
    assert not [t.name for t in threading.enumerate() if t.name.startswith("fc")]

def test_a_run_dropped_unread_finishes_its_files_and_close_from_another_thread_ends_the_loop(tmp_path):
    """A run made and dropped without being read kept its CSV's descriptor open for the process's life, its sidecar
    "running", and (with overwrite) the earlier outputs hidden. close() from another thread between two frames
    raised "generator already executing" in the reading thread's loop."""
    import gc

    from realtime import Analyzer

    clip = write_video(tmp_path / "c.mp4", real_frames(60), rate=25)
    csv_path = tmp_path / "r.csv"
    with Analyzer() as an:
        for _ in an.process_video(clip, csv=csv_path, max_frames=8, overwrite=True):
            pass
        before = csv_path.read_bytes()
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        run = an.process_video(clip, csv=csv_path, overwrite=True)
        del run
        gc.collect()
        assert csv_path.read_bytes() == before  # the earlier result, put back
        assert json.loads(csv_path.with_suffix(".json").read_text())["status"] == "complete"
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        if fds is not None:  # none left open by the dropped run (one an earlier test left may close meanwhile: <=)
            assert len(os.listdir("/proc/self/fd")) <= fds
        run = an.process_video(clip, csv=tmp_path / "t.csv")
        n = 0
        for _ in run:  # ends, without an error
            n += 1
            if n == 3:  # between two frames, from another thread (joined: it only stops the run)
                closer = threading.Thread(target=run.close)
                closer.start()
                closer.join(10)
                assert not closer.is_alive()
        assert 3 <= n < 60
        assert json.loads((tmp_path / "t.json").read_text())["status"] == "interrupted"
        assert not [t.name for t in threading.enumerate() if t.name.startswith("fc")]


def test_a_finished_run_is_freed_without_waiting_for_the_garbage_collector(tmp_path):
    """The pipeline's stages were the run's own methods: each finished run (source, video writer, per-track state)
    waited for a full collection, and an in-process batch grew by about 80 MB every 40 videos."""
    import gc
    import weakref

    from realtime import Analyzer

    clip = write_video(tmp_path / "c.mp4", real_frames(20), rate=25)
    gc.disable()
    try:
        refs = []
        with Analyzer() as an:
            for _ in range(2):
                run = an.process_video(clip, video=tmp_path / "a.mp4", overwrite=True)
                for _ in run:
                    pass
                refs.append(weakref.ref(run))
                del run
            assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()


def test_neutralize_without_the_annotated_video_says_it_makes_faces_for_nothing(model_with_head, tmp_path, caplog):
    """Probe finding (acted clips): ``process --csv --no-video --neutralize`` ran at a third of the speed and wrote a
    CSV byte for byte the same as without ``--neutralize``, without a word: the neutral faces go only into the
    annotated video. It now says so (``live`` without its window or ``--record`` alike); with the video, nothing."""
    import logging

    clip = tmp_path / "noise.mp4"
    _made_clip(clip, frames=4)
    base = ["process", str(clip), "--model", str(model_with_head), "--no-progress", "--neutralize"]
    with caplog.at_level(logging.WARNING):
        assert cli_main([*base, "--no-video", "--out-dir", str(tmp_path / "a")]) == 0
    said = [r.getMessage() for r in caplog.records if "appear only in the annotated video" in r.getMessage()]
    assert len(said) == 1 and "without --no-video" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cli_main([*base, "--out-dir", str(tmp_path / "b")]) == 0
        assert cli_main(["live", "--input", str(clip), "--model", str(model_with_head), "--neutralize",
                         "--record", str(tmp_path / "rec.mp4"), "--no-window", "--max-frames", "2"]) == 0
    assert not [r for r in caplog.records if "appear only in the annotated video" in r.getMessage()]
    with caplog.at_level(logging.WARNING):
        assert cli_main(["live", "--input", str(clip), "--model", str(model_with_head), "--neutralize",
                         "--csv", str(tmp_path / "live.csv"), "--no-window", "--max-frames", "2"]) == 0
    said = [r.getMessage() for r in caplog.records if "appear only in the annotated video" in r.getMessage()]
    assert len(said) == 1 and "--record VIDEO or the window" in said[0], said
