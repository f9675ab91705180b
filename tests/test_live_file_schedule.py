"""`live --input FILE` and `process --realtime` against `process` (probe h78 F4, F6).

A file played at its own pace dropped its first frames (the detector's and the model's first calls, on frame 0, were
slower than real time), and the detection schedule counted the frames processed: after one dropped frame every later
detection fell on another frame than `process`'s (face_x up to 15.5 px, pose_Rx 0.095 rad on the 123 frames both
runs kept: as much as --detect-every 5 -> 1). Scheduled detections now fall on the frame index's grid (``index %
detect_every == 0``, or the first frame after a dropped one of those), a detection the tracker asks for in between
does not move that grid (cameras and live streams still count the frames processed), and a live run warms the
detector and the model up before its clock starts. `live`'s sidecar records its command, as `process`'s does.
"""
from __future__ import annotations

import json
import threading
from fractions import Fraction
from typing import Dict, Iterable, List, Optional

import numpy as np
import pytest

from realtime.sources import Source
from realtime.types import FramePacket

from .conftest import read_csv, real_frames, shared_video, write_video

FPS = 25


class _Played(Source):
    """A clip's frames with the ones in ``skip`` left out (as a file played at its own pace drops them): the others
    keep their own index and timestamp. ``live`` (and ``realtime``, a file played at its pace) makes it a live source
    whose next frame is read only once the run handed the last one out (``gate``), so that the pipeline itself drops
    nothing and the frames left out are exactly ``skip``."""

    def __init__(self, frames: List[np.ndarray], skip: Iterable[int] = (), live: bool = False,
                 realtime: bool = False) -> None:
        super().__init__()
        self.frames, self.skip = frames, set(skip)
        self.name, self.fps, self.time_base = "played", float(FPS), Fraction(1, FPS)
        self.live = bool(live)
        if realtime:
            self.realtime = True  # (as VideoSource(realtime=True) says it)
        self.height, self.width = frames[0].shape[:2]
        self.frame_count = len(frames)
        self.gate = threading.Semaphore(1)
        #: what the run had done with the engines when the first frame was read: analyze calls, detections
        self.at_first_frame: Optional[Dict[str, int]] = None
        self.count = {"analyze": 0, "detect": 0}

    def __iter__(self):
        for i, img in enumerate(self.frames):
            if i in self.skip:
                continue
            if self.live:
                assert self.gate.acquire(timeout=60), "the run never took the last frame"
            if self.at_first_frame is None:
                self.at_first_frame = dict(self.count)
            yield FramePacket(index=i, pts=i, time_base=self.time_base, timestamp=i / FPS, image=img.copy(),
                              source=self.name)


def _run(an, src, detected: List[int], csv=None) -> Dict[int, np.ndarray]:
    """Run ``src`` through ``an``; ``detected`` collects the frames the pipeline detected (in order). Returns each
    frame's face boxes."""
    boxes = {}
    run = an.process_video(src, csv=csv, annotate=False)
    for p in run:
        boxes[p.index] = np.array([f.box for f in p.faces], np.float32).reshape(-1, 4)
        if src.live:
            src.gate.release()
    return boxes


@pytest.fixture
def detections(monkeypatch):
    """The frames (indices at FPS) on which the pipeline's detection step runs."""
    import realtime.analyzer as analyzer_mod

    seen: List[int] = []
    real = analyzer_mod.detect_faces

    def detect(detector, tracker, image, ts, still=False):
        seen.append(int(round(ts * FPS)))
        return real(detector, tracker, image, ts, still=still)

    monkeypatch.setattr(analyzer_mod, "detect_faces", detect)
    return seen


@pytest.fixture(scope="module")
def face_frames() -> List[np.ndarray]:
    shared_video("pyfeat_single_face.mp4")  # real_frames' clip: skipped cleanly where ../shared is absent
    return real_frames(40, size=(320, 180))


@pytest.mark.parametrize("live", [False, True], ids=["file-with-gaps", "file-played-at-its-pace"])
def test_after_dropped_frames_the_detections_and_rows_fall_back_on_the_full_readings(tiny_export, face_frames,
                                                                                     detections, live):
    """Frames 5 and 6 (5 a scheduled detection) and 13 (a tracked one) dropped: the detection comes on 7, the first
    frame after the grid's 5, and from 10 on every detection is on the frames the full reading detects, every box
    the full reading's from the next scheduled detection (15) on. Counting frames processed, they came on 7, 12, 17,
    ... and every box after the drop was another."""
    from realtime.analyzer import Analyzer

    with Analyzer(model=tiny_export[1], detect_every=5, infer_workers=1) as an:
        full_boxes = _run(an, _Played(face_frames), detections)
        full = list(detections)
        detections.clear()
        boxes = _run(an, _Played(face_frames, skip=(5, 6, 13), live=live, realtime=live), detections)
    assert full[:8] == [0, 5, 10, 15, 20, 25, 30, 35], full  # (the real face is tracked throughout)
    assert any(len(b) for b in full_boxes.values())
    assert 7 in detections and 10 in detections, detections
    assert [i for i in detections if i >= 10] == [i for i in full if i >= 10], (detections, full)
    assert sorted(boxes) == [i for i in range(40) if i not in (5, 6, 13)]
    for i in range(15, 40):
        np.testing.assert_allclose(boxes[i], full_boxes[i], atol=1e-3, err_msg=f"frame {i}")


def test_a_detection_the_tracker_asks_for_does_not_move_the_grid(tiny_export, detections, monkeypatch):
    """The flow fails on frame 3 (a detection there): a file's next scheduled detections stay on 5, 10, 15 (they
    moved to 8, 13, 18: a run that asked for one extra detection read every later detection frame differently). A
    camera (a live source not played from a file) still counts the frames processed: 8, 13, 18."""
    from realtime.analyzer import Analyzer
    from realtime.tracking import Tracker

    real = Tracker.propagate

    def propagate(self, image, ts):
        faces, ok = real(self, image, ts)
        return faces, ok and int(round(ts * FPS)) != 3

    monkeypatch.setattr(Tracker, "propagate", propagate)
    frames = [np.full((120, 160, 3), 90, np.uint8) for _ in range(20)]
    with Analyzer(model=tiny_export[1], detect_every=5, infer_workers=1) as an:
        _run(an, _Played(frames), detections)
        file_read = list(detections)
        detections.clear()
        _run(an, _Played(frames, live=True, realtime=True), detections)
        played = list(detections)
        detections.clear()
        _run(an, _Played(frames, live=True), detections)
        camera = list(detections)
    assert file_read == played == [0, 3, 5, 10, 15], (file_read, played)
    assert camera == [0, 3, 8, 13, 18], camera


def test_a_live_run_warms_the_engines_before_its_clock_starts_and_keeps_process_rows(tiny_export, face_frames,
                                                                                   tmp_path):
    """Before the first frame of a live source is read (a file played at its pace starts its clock there), the
    detector and the model have run once on a blank frame; a file read at full speed is not warmed (nothing waits
    for it). The warm-up changes no number: the live run's rows, none dropped, are the full reading's byte for
    byte."""
    from realtime.analyzer import Analyzer

    with Analyzer(model=tiny_export[1], detect_every=5, infer_workers=1) as an:
        def counting(src):
            run_graph, detect = an.backend.run, an.detector.detect

            def run(graph, *a, **kw):
                src.count["analyze"] += graph == "analyze"
                return run_graph(graph, *a, **kw)

            def det(*a, **kw):
                src.count["detect"] += 1
                return detect(*a, **kw)

            an.backend.run, an.detector.detect = run, det
            return src

        full = counting(_Played(face_frames))
        _run(an, full, [], csv=tmp_path / "full.csv")
        del an.backend.run, an.detector.detect
        played = counting(_Played(face_frames, live=True, realtime=True))
        _run(an, played, [], csv=tmp_path / "played.csv")
        del an.backend.run, an.detector.detect
        code_dim = an.code_dim
    assert full.at_first_frame == {"analyze": 0, "detect": 0}
    assert played.at_first_frame["analyze"] >= 1 and played.at_first_frame["detect"] >= 1, played.at_first_frame
    a, b = read_csv(tmp_path / "full.csv", code_dim), read_csv(tmp_path / "played.csv", code_dim)
    assert len(a) == len(b) == 40 and a == b


def test_live_sidecar_records_its_command(tiny_export, tmp_path, capfd):
    """`live`'s sidecar says how it was made, as `process`'s does (it had no ``command``)."""
    from facecycle_cli import main

    clip = write_video(tmp_path / "clip.mp4", real_frames(10), rate=FPS)
    csv_path = tmp_path / "live.csv"
    argv = ["live", "--input", str(clip), "--no-window", "--model", str(tiny_export[1]), "--csv", str(csv_path)]
    rc = main(argv)
    assert rc == 0, capfd.readouterr().err
    side = json.loads(csv_path.with_suffix(".json").read_text())
    assert side["command"] == ["facecycle", *argv]
