"""The desktop app (ui/): real clips from ../shared, a tiny exported model, Qt offscreen.

Covers the bridge (latest frame only, drops counted, one pending signal), a
full run of a clip with recording + CSV export (files decoded / parsed
completely), the side panel following the video, pause, run-time overlay
toggles, errors shown in the window while the app stays usable, closing
mid-run (threads joined, files finished) and the automation command line.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PyQt6.QtGui import QDropEvent, QImage  # noqa: E402

from tests.conftest import ROOT, narrow_window, shared_video  # noqa: E402
from ui.bridge import FrameBridge  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402
from ui.settings import Overlays  # noqa: E402
from ui.widgets.live_view import fit_rect  # noqa: E402

CLIP = "pyfeat_single_face.mp4"  # 72 frames, 640x360, one face
LONG_CLIP = "pyfeat_WolfgangLanger_Pexels.mp4"  # 472 frames, 640x360


@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory):
    """The tiny export plus a random expression head, so emotion bars and plots have values."""
    import shutil

    from realtime.heads import HEAD_FILE, save_expression_head

    shared_video(CLIP)  # skip before exporting anything when ../shared is absent
    d = tmp_path_factory.mktemp("tiny_with_head") / "model"
    shutil.copytree(request.getfixturevalue("tiny_export")[1], d)
    man = json.loads((d / "manifest.json").read_text())
    dim = next(o["shape"][1] for o in man["graphs"]["analyze"]["outputs"] if o["name"] == "feature")
    rng = np.random.default_rng(0)
    save_expression_head(d / HEAD_FILE, rng.normal(0, 3.0, (7, dim)), rng.normal(0, 0.5, 7), source="random:test")
    return str(d)


@pytest.fixture(autouse=True)
def _private_settings(tmp_path, monkeypatch):
    """Qt's settings in a temporary folder, never the user's ~/.config: in this process (QSettings.setPath) and in
    the app's subprocesses (XDG_CONFIG_HOME; automated runs do not touch the settings anyway)."""
    from PyQt6.QtCore import QSettings

    cfg = tmp_path / "qt_config"
    cfg.mkdir(exist_ok=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(cfg))
    return cfg


@pytest.fixture
def window(qtbot, model_dir):
    w = MainWindow(model_dir=model_dir)
    qtbot.addWidget(w)
    w.resize(900, 520)
    w.show()
    yield w
    if w.session is not None:
        w.session.stop()
        w.session.join(20)


def _worker_threads():
    return [t for t in threading.enumerate() if t.name.startswith(("fc-", "facecycle-ui"))]


def _wait_finished(qtbot, w, timeout=60_000):
    """Until the run has ended and the window has handled its end (queued signals delivered)."""
    qtbot.waitUntil(lambda: w.session is not None and w.idle, timeout=timeout)
    assert w.session.end_reason is not None


def _read_csv(path: Path):
    """Parse the whole CSV; every row has the header's width."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[:5] == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert all(len(r) == len(header) for r in body), "a CSV row is incomplete"
    return header, body


def _decode(path: Path):
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    return frames


# --------------------------------------------------------------------- units
def test_bridge_hands_over_only_the_latest_frame(qtbot):
    bridge = FrameBridge()
    signals = []
    bridge.frameReady.connect(lambda: signals.append(1))

    def worker():
        for i in range(50):
            bridge.offer(i)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    qtbot.wait(50)  # deliver queued signals
    assert len(signals) == 1, "more than one frameReady pending: Qt's event queue would pile up"
    assert bridge.take() == 49
    assert bridge.take() is None
    assert bridge.counts() == (50, 1, 49)
    bridge.offer("next")
    qtbot.waitUntil(lambda: len(signals) == 2, timeout=2000)
    assert bridge.take() == "next"

    # files: the worker may wait (bounded) for the GUI to take the previous frame -> no drop
    got = []
    bridge.frameReady.connect(lambda: got.append(bridge.take()))
    t = threading.Thread(target=lambda: [bridge.offer(i, wait=5.0) for i in range(20)])
    t.start()
    qtbot.waitUntil(lambda: not t.is_alive(), timeout=10_000)
    qtbot.waitUntil(lambda: len(got) >= 20, timeout=2000)
    assert [g for g in got if g is not None] == list(range(20)) and bridge.drops == 49


def test_fit_rect_keeps_aspect():
    from PyQt6.QtCore import QRect

    r = fit_rect(640, 360, QRect(0, 0, 800, 800))
    assert (r.width(), r.height()) == (800, 450) and r.y() == 175
    r = fit_rect(360, 640, QRect(10, 0, 800, 400))
    assert r.height() == 400 and abs(r.width() - 225) <= 1 and r.x() == 10 + (800 - r.width()) // 2


def test_face_panel_shows_the_current_pictures_faces_and_makes_room_for_new_ones(qtbot):
    """An image folder read as stills in the app: every picture's face is a new track, 30 a second of source time,
    so the cards of the first 8 pictures filled the panel for 2 s and the picture shown had no card at all."""
    from ui.bridge import FaceSample
    from ui.widgets import FacePanel

    em = np.array([0.1, 0.0, 0.0, 0.6, 0.2, 0.05, 0.05], np.float32)
    stills = FacePanel(window=10.0, forget_after=2.0, max_cards=8)
    qtbot.addWidget(stills)
    stills.stills = True
    stills.add_samples([FaceSample(i / 30, i, 0.5, em, None) for i in range(12)]  # one face per picture
                       + [FaceSample(12 / 30, 12, 0.5, em, None), FaceSample(12 / 30, 13, 0.5, em, None)])
    stills.advance()
    assert set(stills.cards) == {12, 13}  # the last picture's two faces, and only those
    stills.advance(13 / 30)  # the next picture has no face: no card (the last picture's stayed)
    assert not stills.cards
    video = FacePanel(window=10.0, forget_after=2.0, max_cards=2)
    qtbot.addWidget(video)
    video.add_samples([FaceSample(0.0, 0, 0.5, em, None), FaceSample(0.0, 1, 0.5, em, None),
                       FaceSample(0.5, 1, 0.5, em, None), FaceSample(0.5, 2, 0.5, em, None)])
    assert set(video.cards) == {1, 2}  # full: the face seen longest ago (not in this frame) gave its card up
    video.add_samples([FaceSample(0.6, 1, 0.5, em, None), FaceSample(0.6, 2, 0.5, em, None),
                       FaceSample(0.6, 3, 0.5, em, None)])
    assert set(video.cards) == {1, 2}  # both in this frame: the third waits


def test_face_panel_shows_the_new_card_at_once(qtbot):
    """The app's screenshot (``--screenshot``) is grabbed in the same event-loop turn as the panel's last update:
    it showed the previous picture's card (removed from the layout but still visible until deleted) and not the
    new one (shown by a queued event). A card squashed below its own height clipped its readout's last line."""
    from ui.bridge import FaceSample
    from ui.widgets import FacePanel

    em = np.array([0.1, 0.0, 0.0, 0.6, 0.2, 0.05, 0.05], np.float32)
    panel = FacePanel(window=10.0, forget_after=2.0)
    qtbot.addWidget(panel)
    panel.resize(300, 500)
    panel.show()
    panel.stills = True
    panel.add_samples([FaceSample(0.0, 0, 0.5, em, np.zeros(3, np.float32))])
    panel.advance()
    qtbot.wait(50)  # the first picture's card is on screen
    panel.add_samples([FaceSample(1 / 30, 1, 0.5, em, np.zeros(3, np.float32))])
    panel.advance()  # no event-loop turn between this and a grab
    inner = panel.widget()
    shown = [c.track_id for c in inner.findChildren(type(panel.cards[1])) if c.isVisible()]
    assert shown == [1]
    card = panel.cards[1]
    assert card.geometry().height() == card.sizeHint().height() and card.bars.isVisible()  # laid out, not squashed


def test_face_panel_cards_and_plot_window(qtbot):
    from ui.bridge import FaceSample
    from ui.widgets import FacePanel

    panel = FacePanel(window=10.0, forget_after=2.0)
    qtbot.addWidget(panel)
    em = np.array([0.1, 0.0, 0.0, 0.6, 0.2, 0.05, 0.05], np.float32)
    # two faces for 12 s at 10 Hz, then only face 1 for 3 s
    samples = [FaceSample(t / 10, tid, 0.01 * t, em, np.zeros(3, np.float32)) for t in range(120) for tid in (1, 2)]
    samples += [FaceSample(12 + t / 10, 1, 0.5, em, None) for t in range(30)]
    panel.add_samples(samples)
    panel.advance()
    assert set(panel.cards) == {1}, "a face gone for more than 2 s keeps its card"
    plot = panel.cards[1].plot
    ts = [t for t, _ in plot.samples()]
    assert ts[-1] - ts[0] <= 10.0 + 1e-6 and len(ts) == 101  # the plot keeps the last 10 s only
    assert plot.top_emotions() == ["happy", "neutral", "angry"]
    assert panel.cards[1].values()["intensity"] == 0.5
    panel.add_samples([FaceSample(0.0, 1, 0.1, None, None)])  # the source restarted: start over
    assert len(panel.cards[1].plot) == 1
    # the neutral thumbnail says which frame its face came from (realtime.neutral_reference)
    from realtime.types import Face

    f = Face(box=np.zeros(4, np.float32), score=1.0, landmarks=np.zeros((5, 2), np.float32), track_id=1,
             neutral=np.zeros((32, 32, 3), np.uint8), neutral_from=17)
    panel.set_neutral_faces([f])
    assert not panel.cards[1].thumb.pixmap().isNull() and "from frame 17" in panel.cards[1].thumb.toolTip()
    f.neutral_from = -1
    panel.set_neutral_faces([f])
    assert panel.cards[1].thumb.toolTip() == "neutral face of this frame"


def test_the_app_passes_the_neutral_reference_choice_to_the_pipeline(qtbot, model_dir):
    import argparse

    from ui.app import add_arguments
    from ui.pipeline_adapter import open_stream

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).neutral_reference and not p.parse_args(["--no-neutral-reference"]).neutral_reference
    for on in (True, False):
        w = MainWindow(model_dir=model_dir, neutral_reference=on)
        qtbot.addWidget(w)
        w.source = str(shared_video(CLIP))
        cfg = w.run_config()
        assert cfg.neutral_reference is on
        stream = open_stream(cfg, neutralize=True)
        try:
            assert (stream.analyzer.neutral_reference_settings is not None) is on
            assert (stream.run.neutral_ref is not None) is on
        finally:
            stream.close()


# --------------------------------------------------------------------- app runs
def test_clip_renders_panel_follows_and_outputs_are_valid(qtbot, window, tmp_path):
    clip = shared_video(CLIP)
    video, table = tmp_path / "rec.mp4", tmp_path / "out.csv"
    window.set_record_path(video)
    window.set_csv_path(table)
    window.open_source(clip, start=True)
    assert window.running
    seen, seen_em = [], []

    def sample():
        for c in window.panel.cards.values():
            seen.append(c.values()["intensity"])
            if c.values()["emotions"] is not None:
                seen_em.append(c.values()["emotions"])

    window.live_view.framePainted.connect(lambda n: sample())
    qtbot.waitUntil(lambda: window.live_view.painted >= 10, timeout=60_000)
    img = window.live_view.image()  # pre-scaled by the worker to the view's size, aspect kept
    assert img is not None and abs(img.width() / img.height() - 640 / 360) < 0.01
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input"
    assert window.session.error is None and not window.errors

    # the side panel followed the video: one card for the one face, values changing over time
    assert window.panel.cards, "no face card in the side panel"
    card = next(iter(window.panel.cards.values()))
    vals = [v for v in seen if math.isfinite(v)]
    assert len(vals) >= 5 and np.std(vals) > 0, "panel intensity did not change with the video"
    assert len(card.plot) >= 10 and card.values()["pose"] is not None
    em = np.stack(seen_em)
    assert em.shape[1] == 7 and np.allclose(em.sum(1), 1, atol=1e-3) and em.std(0).max() > 0, \
        "panel emotion bars did not follow the video"
    assert card.bars.values is not None and len(card.plot.top_emotions()) == 3
    # the display never got more frames than the pipeline produced; drops are counted
    offered, taken, drops = window.bridge.counts()
    assert offered == window.session.frames == 72 and taken + drops == offered
    assert window.live_view.painted <= taken

    # CSV: every decoded frame once, in order, complete rows, numbers where expected
    header, body = _read_csv(table)
    frames = [int(r[0]) for r in body]
    assert sorted(set(frames)) == list(range(72)) and frames == sorted(frames)
    with_face = [r for r in body if r[4] == "1"]
    assert len(with_face) >= 0.9 * 72
    i_int = header.index("expr_intensity")
    assert all(math.isfinite(float(r[i_int])) for r in with_face)
    exp = [i for i, h in enumerate(header) if h.startswith("exp_")]
    assert exp and all(r[exp[0]] != "" for r in with_face)
    i_em = header.index("emotion_happy")
    assert all(0 <= float(r[i_em]) <= 1 for r in with_face)
    assert (table.with_suffix(".json")).is_file()
    side = json.loads(table.with_suffix(".json").read_text())
    assert side["frames"] == 72

    # the recorded video: decodes, every frame, the annotated view (boxes drawn => differs from the source)
    rec = _decode(video)
    src = _decode(clip)
    assert len(rec) == len(src) == 72
    assert rec[0].shape == src[0].shape
    diff = np.abs(rec[30].astype(int) - src[30].astype(int)).mean()
    assert diff > 0.5, "recorded frames carry no overlay"

    # closing is clean: the window closes, no pipeline thread is left
    window.close()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    qtbot.waitUntil(lambda: not _worker_threads(), timeout=10_000)


def test_app_csv_is_the_same_as_facecycle_process(qtbot, window, model_dir, tmp_path):
    """The app's CSV export and `facecycle process` end each frame with the same code (realtime.outputs):
    the same clip and settings give the same rows, byte for byte."""
    from facecycle_cli import main as cli_main

    clip = shared_video(CLIP)
    app_csv = tmp_path / "app.csv"
    window.set_csv_path(app_csv)
    window.open_source(clip, start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input" and not window.errors
    assert cli_main(["process", str(clip), "--out-dir", str(tmp_path / "cli"), "--no-video", "--no-progress",
                     "--model", model_dir]) == 0
    cli_csv = tmp_path / "cli" / (clip.stem + ".csv")
    app_rows, cli_rows = app_csv.read_text().splitlines(), cli_csv.read_text().splitlines()
    assert len(app_rows) > 72 // 2 and app_rows == cli_rows
    app_side, cli_side = (json.loads(p.with_suffix(".json").read_text()) for p in (app_csv, cli_csv))
    assert app_side["status"] == cli_side["status"] == "complete" and app_side["app"] == "facecycle app"
    for k in ("detector", "detect_every", "smoothing", "columns", "rows", "frames", "summary"):
        assert app_side[k] == cli_side[k], k
    # the window's last word on the run names the file and its reading, as process's end line does
    want = cli_side["summary"]["faces"]
    assert f"app.csv read as {want['emotion']} (mean p {want['mean_emotions'][want['emotion']]:.2f})" in \
        window.state_label.text(), window.state_label.text()


def test_pause_overlays_and_close_mid_run(qtbot, window, tmp_path):
    clip = shared_video(LONG_CLIP)
    table = tmp_path / "partial.csv"
    video = tmp_path / "partial.mp4"
    window.open_source(clip, start=True)
    qtbot.waitUntil(lambda: window.live_view.painted >= 3, timeout=60_000)

    # pause: no new frames while paused, they come back after resume
    window.pause(True)
    qtbot.wait(400)
    n = window.session.frames
    qtbot.wait(600)
    assert window.session.frames == n, "frames kept coming while paused"
    # paused, the side panel shows the numbers of the frame on screen (it repaints ~15 times a second while running,
    # so it used to stay on a frame up to 1/15 s older than the picture)
    shown = {f.track_id: f for f in window.last_packet.faces if f.emotions is not None}
    assert shown and set(shown) <= set(window.panel.cards)
    for tid, f in shown.items():
        assert np.allclose(window.panel.cards[tid].bars.values, f.emotions, atol=1e-6), tid
    window.pause(False)
    qtbot.waitUntil(lambda: window.session.frames > n + 3, timeout=30_000)

    # overlays at run time: everything off -> the raw frame is shown; neutralized view -> neutral faces
    window.set_overlays(Overlays(boxes=False, pose=False, emotions=False))
    qtbot.waitUntil(lambda: window.last_packet is not None and window.last_packet.annotated is None
                    and window.last_packet.index > n + 3, timeout=30_000)
    window.set_overlays(Overlays(neutralized=True))
    qtbot.waitUntil(lambda: window.last_packet.annotated is not None and any(
        f.neutral is not None for f in window.last_packet.faces), timeout=30_000)
    qtbot.waitUntil(lambda: any(not c.thumb.pixmap().isNull() for c in window.panel.cards.values()),
                    timeout=10_000)  # the side panel shows the neutral face, and says where it came from
    assert all(c.thumb.toolTip().startswith("neutral face ") for c in window.panel.cards.values()
               if not c.thumb.pixmap().isNull())

    # start recording + CSV mid-run, then close the window while it runs
    window.set_csv_path(table)
    window.set_record_path(video)
    start = window.session.frames
    # the switch applies before the consumer's next frame; frames already past it are not in the CSV
    qtbot.waitUntil(lambda: window.session.frames >= start + 10, timeout=30_000)
    window.close()
    assert window.isVisible(), "the window must wait for the pipeline to finish its files"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert window.session.end_reason == "stopped"
    qtbot.waitUntil(lambda: not _worker_threads(), timeout=10_000)

    header, body = _read_csv(table)
    frames = [int(r[0]) for r in body]
    assert len(frames) >= 8 and frames == sorted(frames)
    assert len(set(frames)) == frames[-1] - frames[0] + 1  # consecutive: no frame lost in between
    rec = _decode(video)
    assert abs(len(rec) - len(set(frames))) <= 1


def test_errors_show_in_the_window_and_app_stays_usable(qtbot, window, tmp_path):
    # unreadable file
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    window.open_source(bad, start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "error"
    assert window.banner.isVisible() and "broken.mp4" in window.banner.text()

    # missing file, dropped on the view
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(tmp_path / "missing.mp4"))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, md, Qt.MouseButton.NoButton,
                    Qt.KeyboardModifier.NoModifier)
    window.live_view.dropEvent(ev)
    assert window.source == str(tmp_path / "missing.mp4")
    _wait_finished(qtbot, window)
    assert "no such file" in window.banner.text()

    # a backend that is not available here
    window.backend_combo.setCurrentText("tensorrt")
    window.open_source(shared_video(CLIP), start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "error" and window.banner.isVisible()
    assert "tensorrt" in window.banner.text().lower() or "backend" in window.banner.text().lower()

    # a camera that does not exist
    window.backend_combo.setCurrentText("auto")
    window.open_source(63, start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "error" and "camera" in window.banner.text()

    # still usable: a good clip plays; a recording that cannot be written is reported, the run goes on
    window.open_source(shared_video(LONG_CLIP), start=True)
    qtbot.waitUntil(lambda: window.live_view.painted >= 5, timeout=60_000)
    assert not window.banner.isVisible()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    window.set_record_path(blocker / "rec.mp4")  # its folder is a file
    qtbot.waitUntil(lambda: "recording not started" in window.banner.text(), timeout=30_000)
    n = window.live_view.painted
    qtbot.waitUntil(lambda: window.live_view.painted > n + 3, timeout=30_000)
    window.stop()
    _wait_finished(qtbot, window)
    assert window.session.end_reason in ("stopped", "end of input")


def test_outputs_that_fail_or_would_replace_the_input_are_off_and_the_window_keeps_its_size(qtbot, window,
                                                                                             tmp_path):
    """Recording onto the video being read replaced it; a Record or Export CSV whose file would not open stayed
    checked with nothing written, and after a failed run the choice was lost for the next file; the status bar
    kept "● REC" after the run; a long file name widened the window for good (1180 -> 2227 px)."""
    import shutil

    src = tmp_path / ("a_long_name_" * 8 + ".mp4")
    shutil.copy(shared_video(CLIP), src)
    before = src.read_bytes()
    width = window.width()
    window.set_record_path(src)
    window.open_source(src, start=True)
    _wait_finished(qtbot, window)
    assert src.read_bytes() == before and "would be written over the input" in window.banner.text()
    assert not window.record_button.isChecked() and window.record_path is None
    assert window.width() == width and "REC" not in window.rec_label.text()
    # a CSV asked for, then a file that fails to open: the CSV is still asked for on the next file
    window.set_csv_path(tmp_path / "out.csv")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video" * 50)
    window.open_source(bad, start=True)
    _wait_finished(qtbot, window)
    assert window.csv_button.isChecked() and window.csv_path == str(tmp_path / "out.csv")
    window.open_source(shared_video(CLIP), start=True)
    _wait_finished(qtbot, window)
    assert (tmp_path / "out.csv").is_file() and not window.csv_button.isChecked()
    assert window.width() == width


def test_a_paced_file_resumes_where_it_was_paused(qtbot, window):
    """With "file at its own pace", the file's clock ran on while paused: 0.6 s after a 3 s pause the view was
    at frame 112, not 36, and the frames between were dropped, never analysed."""
    window.realtime_check.setChecked(True)
    window.open_source(shared_video(LONG_CLIP), start=True)
    qtbot.waitUntil(lambda: window.live_view.painted >= 10, timeout=60_000)
    window.pause(True)
    qtbot.wait(300)
    at = window.last_packet.timestamp
    qtbot.wait(2500)
    window.pause(False)
    qtbot.wait(600)
    # 0.6 s of the file after the pause (a slow machine shows less), not the 2.5 s of the pause as well
    assert window.last_packet.timestamp - at < 1.5, (at, window.last_packet.timestamp)
    window.stop()
    _wait_finished(qtbot, window)
    window.realtime_check.setChecked(False)


def test_the_detector_box_offers_only_detectors_that_can_run(qtbot, model_dir):
    """yunet and insightface need a model file, which the window has no chooser for: offered without one they could
    only fail; and a model given for yunet went with every other detector chosen (CenterFace then failed)."""
    from ui.main_window import detector_choices

    assert detector_choices() == ["centerface"]
    w = MainWindow(model_dir=model_dir, detector="yunet", detector_model="/some/yunet.onnx")
    qtbot.addWidget(w)
    w.open_source(shared_video(CLIP))
    items = [w.detector_combo.itemText(i) for i in range(w.detector_combo.count())]
    assert items == ["centerface", "yunet"] and w.run_config().detector_model == "/some/yunet.onnx"
    w.detector_combo.setCurrentText("centerface")
    assert w.run_config().detector_model is None


def test_status_bar_says_no_rate_rather_than_zero(window):
    """A single picture is one frame: no frame rate can be measured, and the status bar said "pipeline 0.0 fps"
    as if the pipeline had stalled."""
    window._update_status()
    assert window.pipe_label.text() == "pipeline – fps" and window.fps_label.text() == "display – fps"
    assert "0.0" not in window.pipe_label.text()


# --------------------------------------------------------------------- command line
def _run_cli(args, timeout=120):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "facecycle", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_screenshot_exit_after_and_stats(model_dir, tmp_path):
    clip = shared_video(LONG_CLIP)
    shot, stats = tmp_path / "shot.png", tmp_path / "stats.json"
    r = _run_cli(["--input", str(clip), "--model", model_dir, "--screenshot", str(shot), "--exit-after", "12",
                  "--stats-json", str(stats), "--size", "960x540"])
    assert r.returncode == 0, r.stderr
    img = QImage(str(shot))
    st = json.loads(stats.read_text())
    assert [img.width(), img.height()] == st["window"] and img.width() >= 960 and img.height() >= 540
    assert st["frames_painted"] >= 12 and st["displayed_fps"] > 0 and st["pipeline_fps"] > 0
    assert st["frames_analyzed"] >= st["frames_painted"]
    assert st["display_drops"] >= 0 and st["source_drops"] == 0 and not st["errors"]


def test_cli_bad_input_is_one_line_error(model_dir, tmp_path):
    r = _run_cli(["--input", str(tmp_path / "nope.mp4"), "--model", model_dir, "--exit-after", "5",
                  "--screenshot", str(tmp_path / "s.png")])
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("facecycle: error:") and "no such file" in lines[0], r.stderr
    r = _run_cli(["--input", "x.mp4", "--exit-after", "0"])
    assert r.returncode == 2
    r = _run_cli(["--input", "x.mp4", "--detector", "nope", "--exit-after", "3"])
    assert r.returncode == 2 and "unknown detector" in r.stderr
    # the facecycle-app GUI script (facecycle_cli.app_cmd:main) takes the same options and exits the same way
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-c", "import sys; from facecycle_cli.app_cmd import main; sys.exit(main())",
                        "--input", str(tmp_path / "nope.mp4"), "--model", model_dir, "--exit-after", "3"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and "no such file" in r.stderr


def test_cli_without_a_display_refuses_an_interactive_session_and_runs_an_automated_one_offscreen(model_dir,
                                                                                                    tmp_path):
    """Probe finding: with no display, `facecycle app` opened an invisible offscreen window and waited for ever (a
    notice only at -v). Interactive: one line, exit 6. Automated: offscreen, as before."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "facecycle", "app", "--model", model_dir], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 6 and len(lines) == 1 and "no display" in lines[0], r.stderr
    from tests.conftest import real_frames, write_video

    clip = write_video(tmp_path / "clip.mp4", real_frames(8), rate=25)
    r = subprocess.run([sys.executable, "-m", "facecycle", "app", "--input", str(clip), "--model", model_dir,
                        "--exit-after", "3", "--stats-json", str(tmp_path / "s.json")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["qt_platform"] == "offscreen"


@pytest.mark.parametrize("signame,code,word", [("SIGINT", 130, "interrupted"), ("SIGHUP", 129, "SIGHUP")])
def test_cli_sigint_finishes_the_files(model_dir, tmp_path, signame, code, word):
    """A signal finishes the recording and the CSV. SIGHUP (the terminal closed) killed the app with its recording
    open (a review's finding); it now stops it as SIGTERM does, exit 129."""
    import signal

    clip = shared_video(LONG_CLIP)
    video, table = tmp_path / "int.mp4", tmp_path / "int.csv"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.Popen([sys.executable, "-m", "facecycle", "app", "--input", str(clip), "--model", model_dir,
                          "--record", str(video), "--csv", str(table), "--exit-after", "100000"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and p.poll() is None:
            if table.is_file() and table.read_text().count("\n") > 15:
                break
            time.sleep(0.2)
        assert p.poll() is None, p.stderr.read()
        p.send_signal(getattr(signal, signame))
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    assert word in err and "Traceback" not in err
    header, body = _read_csv(table)
    frames = [int(r[0]) for r in body]
    assert len(frames) >= 15 and sorted(set(frames)) == list(range(frames[-1] + 1))
    assert abs(len(_decode(video)) - len(set(frames))) <= 1


def test_cli_under_xvfb(model_dir, tmp_path):
    import shutil

    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (apt-get install xvfb)")
    clip = shared_video(CLIP)
    shot, stats = tmp_path / "x.png", tmp_path / "x.json"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    r = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, "-m", "facecycle", "app",
                        "--input", str(clip), "--model", model_dir, "--exit-after", "8", "--screenshot", str(shot),
                        "--stats-json", str(stats)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    st = json.loads(stats.read_text())
    assert st["qt_platform"] == "xcb" and st["frames_painted"] >= 8
    assert not QImage(str(shot)).isNull()


def test_a_record_or_csv_name_typed_without_a_suffix_gets_one(qtbot, window, tmp_path, monkeypatch):
    """Qt's own save dialog adds no suffix: a recording named `rec` reached the video writer, which could not
    tell its format (an internal error before, a refusal now). The app adds .mp4 / .csv."""
    from PyQt6.QtWidgets import QFileDialog

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "rec"), ""))
    window._on_record_clicked(True)
    assert window.record_path == str(tmp_path / "rec.mp4")
    window._on_record_clicked(False)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "rows"), ""))
    window._on_csv_clicked(True)
    assert window.csv_path == str(tmp_path / "rows.csv")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "take.mkv"), ""))
    window._on_record_clicked(True)
    assert window.record_path == str(tmp_path / "take.mkv")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))  # cancelled
    window._on_record_clicked(True)
    assert window.record_path is None


def test_cli_a_single_picture_is_painted_before_the_app_quits(model_dir, tmp_path):
    """A single picture ends the run with its only frame: the end could reach the app before the frame was
    painted, and `--exit-after 1` warned "the input ended after 0 painted frames". The last frame is shown and
    painted first."""
    import cv2

    from .conftest import real_frames

    pic = tmp_path / "pic.png"
    cv2.imwrite(str(pic), real_frames(1, size=(640, 360))[0])  # a face where ../shared is there
    stats = tmp_path / "stats.json"
    for _ in range(3):  # the race went either way
        r = _run_cli(["--input", str(pic), "--model", model_dir, "--screenshot", str(tmp_path / "s.png"),
                      "--exit-after", "1", "--stats-json", str(stats)])
        assert r.returncode == 0, r.stderr
        assert "painted frames" not in r.stderr
        assert json.loads(stats.read_text())["frames_painted"] == 1



# --------------------------------------------------------------------- usability probe (statusbar, keyboard, ...)
def _no_overlap(widgets):
    """The widgets, left to right, each wholly left of the next (none painted over another)."""
    geo = sorted((w.geometry() for w in widgets), key=lambda g: g.x())
    return all(a.right() < b.left() for a, b in zip(geo[:-1], geo[1:], strict=True))


def test_the_recording_indicator_is_readable_and_the_buttons_say_they_are_on(qtbot, window, tmp_path):
    """Probe finding: while recording, the status bar's "● REC clip.mp4  CSV clip.csv" was painted over "display NN
    fps" (its size rule gave it no width), and Record / Export CSV on looked nearly like off (a faint shade). Both
    readable at the default size and at the window's smallest (699 px); the paused state keeps the backend; the
    run's end names the folder of the files saved."""
    video = tmp_path / "a_rather_long_recording_name_for_the_status_bar.mp4"
    window.resize(1180, 640)
    window.set_record_path(video)
    window.set_csv_path(tmp_path / "rows.csv")
    window.open_source(shared_video(LONG_CLIP), start=True)
    qtbot.waitUntil(lambda: window.live_view.painted >= 3, timeout=60_000)
    window.pause(True)
    qtbot.waitUntil(lambda: window.rec_label.isVisible() and "CSV" in window.rec_label.text(), timeout=5000)
    rec, state = window.rec_label, window.state_label
    numbers = [window.fps_label, window.pipe_label, window.latency_label, window.drops_label]
    for width in (1180, 699):
        window.resize(width, 640)
        qtbot.waitUntil(lambda w=width: window.width() == w and rec.width() > 0, timeout=5000)
        qtbot.wait(50)
        assert _no_overlap([state, rec, *numbers]), [(w.text(), w.geometry()) for w in (state, rec, *numbers)]
        for lbl in numbers:  # the rates are shown whole
            assert lbl.width() >= lbl.sizeHint().width(), lbl.text()
        shown = rec.shown_text()
        assert shown.startswith("● REC ") and "  CSV " in shown, shown  # the names shortened, not the indicator
        assert rec.fontMetrics().horizontalAdvance(shown) <= rec.contentsRect().width()
        if width == 1180:
            assert shown == rec.text() == f"● REC {video.name}  CSV rows.csv"
        else:
            assert "…" in shown
        assert state.shown_text().startswith("paused")
    assert "[" in state.text() and window.session.info["backend"]["backend"] in state.text(), state.text()
    # on, the buttons say what a click does, in white on red
    assert "Stop" in window.record_button.text() and "Stop" in window.csv_button.text()
    assert window.record_button.accessibleName() == "Stop recording"
    img = window.record_button.grab().toImage()
    r, g, b = (np.mean([getattr(img.pixelColor(x, y), c)() for x in range(4, img.width() - 4, 3)
                        for y in range(4, img.height() - 4, 3)]) for c in ("red", "green", "blue"))
    assert r > g + 50 and r > b + 50, (r, g, b)
    window.stop()
    _wait_finished(qtbot, window)
    assert f"in {tmp_path}" in state.text() and not rec.isVisible(), state.text()  # where the files are
    assert window.record_button.text() == "● &Record…" and window.record_button.accessibleName() == "Record video"


def test_cli_an_output_that_cannot_be_written_fails_the_run(model_dir, tmp_path, _private_settings):
    """Probe finding: `facecycle app --csv /proc/nope/x.csv --record /proc/nope/x.mp4 --exit-after 5` printed nothing
    and exited 0 (the error only in the stats JSON), and so did `--record` over the input (refused). Outputs asked
    for on the command line fail the run: one line on stderr, exit 4 (OutputError)."""
    import shutil

    clip = shared_video(CLIP)
    stats = tmp_path / "stats.json"
    r = _run_cli(["--input", str(clip), "--model", model_dir, "--csv", "/proc/nope/x.csv", "--record",
                  "/proc/nope/x.mp4", "--exit-after", "5", "--stats-json", str(stats)])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and len(lines) == 1 and lines[0].startswith("facecycle: error:"), r.stderr
    assert "/proc/nope" in lines[0]
    assert json.loads(stats.read_text())["errors"]  # the stats are still written
    src = tmp_path / "in.mp4"
    shutil.copy(clip, src)
    before = src.read_bytes()
    r = _run_cli(["--input", str(src), "--model", model_dir, "--record", str(src), "--exit-after", "5"])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and len(lines) == 1 and "over the input" in lines[0], r.stderr
    assert src.read_bytes() == before
    assert not (_private_settings / "FaceCycleRT").exists()  # automated runs leave the settings alone


def test_export_csv_asks_before_replacing_an_existing_sidecar(qtbot, window, tmp_path, monkeypatch):
    """Probe finding: the CSV's sidecar is the CSV's name with .json; the save dialog asked only about the .csv and
    the app replaced any rows.json without a word. It asks now, and declined, exports nothing."""
    from PyQt6.QtWidgets import QFileDialog, QMessageBox

    side = tmp_path / "rows.json"
    side.write_text('{"mine": true}')
    asked = []
    answer = [QMessageBox.StandardButton.No]

    def question(parent, title, text, *a, **k):
        asked.append(text)
        return answer[0]

    monkeypatch.setattr(QMessageBox, "question", question)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "rows.csv"), ""))
    window.csv_button.click()
    assert len(asked) == 1 and "rows.json" in asked[0] and str(tmp_path) in asked[0]
    assert window.csv_path is None and not window.csv_button.isChecked()
    assert side.read_text() == '{"mine": true}'
    answer[0] = QMessageBox.StandardButton.Yes
    window.csv_button.click()
    assert len(asked) == 2 and window.csv_path == str(tmp_path / "rows.csv") and window.csv_button.isChecked()
    window.csv_button.click()  # off
    assert window.csv_path is None
    # no sidecar there: no question; a name typed without .csv: the dialog never asked about name.csv, the window does
    side.unlink()
    window.csv_button.click()
    assert len(asked) == 2 and window.csv_path == str(tmp_path / "rows.csv")
    window.csv_button.click()
    (tmp_path / "typed.csv").write_text("x")
    answer[0] = QMessageBox.StandardButton.No
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "typed"), ""))
    window.csv_button.click()
    assert len(asked) == 3 and "typed.csv" in asked[2] and window.csv_path is None


def test_keyboard_shortcuts_tab_order_and_accessible_names(qtbot, window, monkeypatch):
    """Probe finding: no shortcut at all (Ctrl+O, Space, Ctrl+Q did nothing), the tab order jumped (Model… after the
    check box of row 2, Record / Export CSV after the overlays), no accessible names ("▶ Start" read as symbols),
    the backend / detector labels not linked to their boxes, no tooltip naming a key."""
    import re

    from PyQt6.QtGui import QAction
    from PyQt6.QtTest import QTest
    from PyQt6.QtWidgets import QAbstractButton, QApplication, QComboBox, QFileDialog, QSpinBox

    keys = {k.toString(): a for a in window.findChildren(QAction) for k in a.shortcuts()}
    assert {"Ctrl+O", "Space", "Esc", "Ctrl+R", "Ctrl+E", "Ctrl+Q", "Ctrl+W"} <= set(keys), sorted(keys)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)

    opened = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (opened.append(a[2]), ("", ""))[1])
    QTest.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert len(opened) == 1

    # Space in the view starts, pauses and resumes; Esc stops
    window.open_source(shared_video(LONG_CLIP))
    window.live_view.setFocus()
    QTest.keyClick(window.live_view, Qt.Key.Key_Space)
    assert window.running
    qtbot.waitUntil(lambda: window.live_view.painted >= 2, timeout=60_000)
    QTest.keyClick(window.live_view, Qt.Key.Key_Space)
    assert window.pause_button.isChecked() and window.session.paused
    QTest.keyClick(window.live_view, Qt.Key.Key_Space)
    assert not window.pause_button.isChecked()
    QTest.keyClick(window.live_view, Qt.Key.Key_Escape)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "stopped"
    # a focused check box keeps Space for itself
    pose = window.overlay_checks["pose"]
    pose.setFocus()
    was = pose.isChecked()
    QTest.keyClick(pose, Qt.Key.Key_Space)
    assert pose.isChecked() is not was and window.idle and window.sessions_run == 1

    # the tab order is the visual one
    want = [window.camera_spin, window.camera_button, window.open_button, window.model_button, window.start_button,
            window.pause_button, window.stop_button, window.backend_combo, window.detector_combo, window.rotate_combo,
            window.realtime_check, window.record_button, window.csv_button, *window.overlay_checks.values(),
            window.banner.close_button, window.notice_banner.action_button, window.notice_banner.close_button,
            window.live_view, window.panel]
    chain, w = [], window.camera_spin
    for _ in range(200):
        if w in want and w not in chain:
            chain.append(w)
        w = w.nextInFocusChain()
    assert chain == want, [c.accessibleName() for c in chain]

    # plain accessible names, tooltips naming the keys, labels linked to their boxes
    controls = [c for cls in (QAbstractButton, QComboBox, QSpinBox) for c in window.findChildren(cls)
                if c.focusPolicy() != Qt.FocusPolicy.NoFocus]
    for c in controls:
        name = c.accessibleName()
        assert name and name[0].isalpha() and not re.search(r"&\w", name), (type(c).__name__, name)  # no mnemonic
        if c not in (window.camera_spin, window.banner.close_button, window.notice_banner.close_button):
            assert any(k in c.toolTip() for k in ("Ctrl+", "Alt+", "Space", "Esc")), (name, c.toolTip())
    assert window.backend_label.buddy() is window.backend_combo
    assert window.detector_label.buddy() is window.detector_combo
    assert window.rotate_label.buddy() is window.rotate_combo
    assert window.live_view.accessibleName() and window.panel.accessibleName()

    QTest.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=10_000)


def test_a_new_run_clears_an_old_error_from_the_status_bar(qtbot, window, tmp_path):
    """Probe finding: a missing file, then a good one within 10 s: "…: no such file" stayed in the status bar for
    10 s, hiding the new run's state."""
    window.open_source(tmp_path / "missing.mp4", start=True)
    _wait_finished(qtbot, window)
    assert "no such file" in window.statusBar().currentMessage()
    window.open_source(shared_video(CLIP), start=True)
    assert window.statusBar().currentMessage() == "" and window.state_label.isVisible()
    assert window.state_label.text().startswith("starting")
    window.stop()
    _wait_finished(qtbot, window)


def test_title_model_save_folders_and_elided_names(qtbot, window, model_dir, tmp_path, monkeypatch):
    """Probe finding: the title never named the file, the model in use was nowhere, save dialogs started in the
    current folder, a long file name was cut rather than elided."""
    import shutil

    from PyQt6.QtWidgets import QFileDialog

    src_dir, out_dir = tmp_path / "in", tmp_path / "out"
    src_dir.mkdir()
    out_dir.mkdir()
    clip = src_dir / ("a_very_long_name_" * 6 + "end.mp4")
    shutil.copy(shared_video(CLIP), clip)
    window.open_source(clip)
    assert window.windowTitle() == f"{clip.name} — FaceCycle RT"
    window.resize(699, 520)
    qtbot.waitUntil(lambda: window.width() == 699, timeout=5000)
    shown = window.source_label.shown_text()
    assert "…" in shown and shown.startswith("a_") and shown.endswith(".mp4"), shown  # the suffix kept
    assert window.model_label.isVisible() and window.model_label.text() == f"model: {Path(model_dir).name}"
    assert model_dir in window.model_label.toolTip()
    default = MainWindow()
    qtbot.addWidget(default)
    assert default.model_label.text() == "model: default"

    defaults = []

    def save(parent, title, name, *a, **k):
        defaults.append(Path(name))
        return str(out_dir / "take.mp4"), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save)
    window.record_button.click()  # first: the input's folder
    window.record_button.click()  # off
    window.csv_button.click()  # then: the folder last saved to
    assert defaults[0].parent == src_dir and defaults[1].parent == out_dir, defaults
    window.set_csv_path(None)


def test_settings_are_remembered_and_stale_ones_ignored(qtbot, model_dir, tmp_path, monkeypatch):
    """Probe finding: only the last folder was remembered, and a deleted one was put in the dialog's file-name box.
    Overlays, backend, detector, "file at its own pace", geometry and the last save folder are remembered; a stale
    value is ignored."""
    from PyQt6.QtCore import QSettings
    from PyQt6.QtWidgets import QFileDialog

    ini = tmp_path / "settings.ini"

    def settings():
        return QSettings(str(ini), QSettings.Format.IniFormat)

    a = MainWindow(model_dir=model_dir, settings=settings())
    qtbot.addWidget(a)
    a.set_overlays(Overlays(boxes=False, pose=True, emotions=False, neutral_thumb=True))
    a.backend_combo.setCurrentText("onnxruntime")
    a.realtime_check.setChecked(True)
    a.resize(720, 480)  # inside the offscreen platform's 800x600 screen (restoreGeometry keeps a window on screen)
    a.show()
    qtbot.waitUntil(lambda: a.width() == 720, timeout=5000)
    opened, saved = tmp_path / "opened", tmp_path / "saved"
    opened.mkdir()
    saved.mkdir()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *x, **k: (str(opened / "missing.mp4"), ""))
    a._choose_file()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *x, **k: (str(saved / "r.mp4"), ""))
    a.record_button.click()
    a.set_record_path(None)
    _wait_finished(qtbot, a)
    a.close()  # saves
    qtbot.waitUntil(lambda: not a.isVisible(), timeout=10_000)

    b = MainWindow(model_dir=model_dir, settings=settings())
    qtbot.addWidget(b)
    assert b.restore_settings() is True
    assert b.overlays == Overlays(boxes=False, pose=True, emotions=False, neutral_thumb=True)
    assert b.overlay_checks["neutral_thumb"].isChecked() and not b.overlay_checks["boxes"].isChecked()
    assert b.backend_combo.currentText() == "onnxruntime" and b.realtime_check.isChecked()
    assert (b.width(), b.height()) == (720, 480)
    assert b._open_dir() == str(opened) and Path(b._default_name(".mp4")).parent == saved
    c = MainWindow(model_dir=model_dir, settings=settings())
    qtbot.addWidget(c)
    c.restore_settings(skip=["backend", "overlays"])  # given on the command line
    assert c.backend_combo.currentText() == "auto" and c.overlays == Overlays()

    # stale or foreign values: ignored, nothing added to the boxes, no deleted folder offered
    s = settings()
    gone = tmp_path / "deleted_folder"
    for k, v in (("backend", "no-such-backend"), ("detector", "yunet"), ("overlays/pose", "maybe"),
                 ("realtime", "perhaps"), ("geometry", "garbage"), ("last_dir", str(gone)),
                 ("last_save_dir", str(gone))):
        s.setValue(k, v)
    s.sync()
    d = MainWindow(model_dir=model_dir, settings=settings())
    qtbot.addWidget(d)
    assert d.restore_settings() is False
    assert d.backend_combo.currentText() == "auto" and d.backend_combo.findText("no-such-backend") < 0
    assert d.detector_combo.currentText() == "centerface" and d.detector_combo.findText("yunet") < 0
    assert d.overlays.pose and not d.realtime_check.isChecked()
    dirs = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *x, **k: (dirs.append(x[2]), ("", ""))[1])
    d._choose_file()
    assert dirs and str(gone) not in dirs[0] and os.path.isdir(dirs[0])
    assert str(gone) not in d._default_name(".csv")


def test_contrast_and_plot_lines_told_apart_without_colour(qtbot):
    """Probe finding: "neutral face off" was #777 on #222 (3.6:1, under WCAG AA's 4.5:1); the plot's lines differed
    by colour only."""
    import re

    from ui.widgets import FaceCard, TimePlot

    def luminance(hexcolor):
        rgb = [int(hexcolor.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def full(c):
        c = c.lstrip("#")
        return "#" + ("".join(ch * 2 for ch in c) if len(c) == 3 else c)

    card = FaceCard(1)
    qtbot.addWidget(card)
    sheet = card.thumb.styleSheet()
    fg = full(re.search(r"(?<![-\w])color:\s*(#[0-9a-fA-F]+)", sheet).group(1))
    bg = full(re.search(r"background:\s*(#[0-9a-fA-F]+)", sheet).group(1))
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5, (fg, bg)

    plot = TimePlot()
    qtbot.addWidget(plot)
    rng = np.random.default_rng(1)
    for t in range(40):
        plot.add(t / 10, 0.5, rng.dirichlet(np.ones(7)).astype(np.float32))
    styles = plot.line_styles()
    assert set(styles) == {"intensity", *plot.top_emotions()} and len(styles) == 4
    assert len(set(styles.values())) == 4  # no two lines drawn alike


def test_a_folder_of_videos_gets_advice_for_the_window(qtbot, window, tmp_path):
    """Probe finding: a folder of videos opened in the window was refused with command-line advice ("give them as
    inputs (bad/*), or the folder to `facecycle batch`")."""
    folder = tmp_path / "clips (1)"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"")
    (folder / "b.mp4").write_bytes(b"")
    window.open_source(folder, start=True)
    _wait_finished(qtbot, window)
    text = window.banner.text()
    assert "2 video files" in text and "Open file…" in text and "give them as inputs" not in text, text
    from ui.main_window import gui_message

    assert gui_message("x: no such file") == "x: no such file"


def test_a_finished_run_is_freed_without_the_cycle_collector(qtbot, window):
    """Probe finding: the outputs' error callback closed over the session, a cycle (session -> stream -> outputs ->
    callback -> session) that kept each finished run's model, ONNX Runtime sessions and threads until Python's
    cycle collector ran: playing clips in turn rose to 997 MB and 71 threads. A run the window has let go of is
    freed by reference counting alone."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        window.open_source(shared_video(CLIP), start=True)
        qtbot.waitUntil(lambda: window.live_view.painted >= 3, timeout=60_000)
        window.stop()
        _wait_finished(qtbot, window)
        gone = weakref.ref(window.session)
        window.open_source(shared_video(CLIP), start=True)  # the window lets the first run go
        qtbot.waitUntil(lambda: gone() is None, timeout=5_000)
        window.stop()
        _wait_finished(qtbot, window)
    finally:
        gc.enable()


def test_the_rates_leave_a_pause_out(qtbot, window):
    """Probe finding: through a pause the status bar kept the last rates, after it showed 7.9 fps for a 24-fps
    file (the window of recent frames spanned the pause), and a run paused for a while ended at 8.0 fps."""
    window.open_source(shared_video(CLIP), start=True)
    qtbot.waitUntil(lambda: window.live_view.painted >= 15, timeout=60_000)
    s = window.session
    window.pause(True)
    qtbot.waitUntil(lambda: s.paused, timeout=5_000)
    window._update_status()
    assert "–" in window.pipe_label.text() and "–" in window.fps_label.text()
    window.pause(False)
    assert s._t_pause is None and s._paused_s > 0  # the pause is booked, to be left out of the rates
    window.stop()
    _wait_finished(qtbot, window)


def test_pipeline_fps_leaves_the_time_paused_out(monkeypatch):
    """The rate arithmetic on its own, with a clock the test sets: 31 frames over 3 s, 2 of them paused, is
    30 frames a second (it read 10)."""
    from ui import session as session_mod
    from ui.session import AnalysisSession

    now = [100.0]
    monkeypatch.setattr(session_mod.time, "perf_counter", lambda: now[0])
    from ui.settings import RunConfig

    s = AnalysisSession(RunConfig(source="x.mp4"), bridge=FrameBridge())  # the arithmetic only: never started
    s.t_first, s.frames = 100.0, 1
    now[0] = 100.5
    s.pause()
    now[0] = 102.5
    s.resume()
    s.t_last, s.frames = 103.0, 31
    assert s.pipeline_fps() == pytest.approx(30.0)


def test_a_failing_last_note_does_not_keep_the_end_of_a_run_from_being_reported(monkeypatch, caplog):
    """The notes found on a run's last frames are passed on in the worker's innermost `finally`, just before the
    end is reported: an error there skipped the report, and the window said "stopping …" for ever. It is logged,
    and the end reported."""
    from ui import session as session_mod
    from ui.session import AnalysisSession
    from ui.settings import RunConfig

    class Outputs:
        finished: list = []
        on_error = None

        def set_annotator(self, annotator) -> None:
            pass

    class Stream:  # a run of no frames whose notes cannot be read
        outputs, live = Outputs(), False

        def describe(self) -> dict:
            return {}

        def __iter__(self):
            return iter(())

        def notes(self) -> dict:
            raise RuntimeError("notes gone")

        def close(self) -> None:
            pass

    monkeypatch.setattr(session_mod, "open_stream", lambda config, neutralize=False: Stream())
    bridge = FrameBridge()
    reported = []
    monkeypatch.setattr(bridge, "report_finished", lambda generation, reason: reported.append(reason))
    monkeypatch.setattr(bridge, "report_started", lambda generation, info: None)
    s = AnalysisSession(RunConfig(source="x.mp4"), bridge=bridge)
    with caplog.at_level("ERROR", logger="ui.session"):
        s.start()
        assert s.join(10)
    assert reported == ["end of input"] and s.end_reason == "end of input"
    assert "notes could not be passed on" in caplog.text


# --------------------------------------------------------------------- accessibility, high-DPI screens, large fonts
def _contrast(a, b) -> float:
    """WCAG contrast ratio of two QColors."""
    def lum(c):
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in (c.redF(), c.greenF(), c.blueF())]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def _activate(qtbot, w):
    from PyQt6.QtWidgets import QApplication

    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)


def _big_font(widget, factor=1.5):
    from PyQt6.QtGui import QFont

    f = QFont(widget.font())
    f.setPointSizeF(f.pointSizeF() * factor)
    return f


def test_the_first_run_window_fits_a_small_screen(qtbot, tmp_path):
    """Probe finding: the first-run window was 1180x640 whatever the screen: larger than a 1366x768 laptop screen
    at 150 % (911x512 logical pixels). It is at most 95 % x 90 % of the screen's available area; a remembered
    geometry larger than the screen is fitted to it too (by Qt's restoreGeometry)."""
    from PyQt6.QtCore import QRect, QSettings

    from ui.main_window import DEFAULT_SIZE, first_run_size

    class Screen:
        def __init__(self, w, h):
            self.rect = QRect(0, 0, w, h)

        def availableGeometry(self):  # noqa: N802 - Qt's name
            return self.rect

    assert first_run_size(Screen(911, 512)) == (865, 460)
    assert first_run_size(Screen(1920, 1080)) == DEFAULT_SIZE
    w = MainWindow()
    qtbot.addWidget(w)
    avail = w.screen().availableGeometry()  # the offscreen platform's screen, 800 px wide
    assert w.width() <= 0.95 * avail.width() and w.height() <= 0.90 * avail.height(), (w.size(), avail)
    # a remembered geometry from a larger screen
    ini = tmp_path / "big.ini"
    w.resize(avail.width() + 700, avail.height() + 400)
    s = QSettings(str(ini), QSettings.Format.IniFormat)
    s.setValue("geometry", w.saveGeometry())
    s.sync()
    r = MainWindow(settings=QSettings(str(ini), QSettings.Format.IniFormat))
    qtbot.addWidget(r)
    assert r.restore_settings() is True
    assert r.width() <= avail.width() and r.height() <= avail.height(), (r.size(), avail)


def test_screen_readers_get_the_status_numbers_the_bars_and_the_plot(qtbot, window):
    """Probe finding: the status bar's labels were named "Display rate", "Latency" … (a QLabel exposes its name
    only: no number reached a screen reader), the dropped frames' split only in the tooltip; the emotion bars and
    the plot were pixels only."""
    from ui.bridge import FaceSample
    from ui.widgets import FaceCard

    window._update_status()
    for lbl in (window.fps_label, window.pipe_label, window.latency_label):
        assert lbl.accessibleName() == lbl.text() and "–" in lbl.text(), lbl.accessibleName()
    assert window.drops_label.accessibleName() == "dropped 0 frames: 0 by the display, 0 by the source"
    window._latencies.append(0.042)
    window._update_status()
    assert window.latency_label.accessibleName() == "latency 42 ms"

    card = FaceCard(1)
    qtbot.addWidget(card)
    assert card.bars.accessibleName() and card.plot.accessibleName()
    assert "no samples" in card.plot.accessibleDescription()
    em = np.array([0.1, 0.0, 0.05, 0.6, 0.2, 0.05, 0.0], np.float32)
    for t in range(20):
        card.add_sample(FaceSample(t / 10, 1, 0.01 * t, em, None))
    card.refresh()
    want = "happy 0.60, neutral 0.20, angry 0.10, fear 0.05, sad 0.05, disgust 0.00, surprise 0.00"
    assert card.bars.accessibleDescription() == want and card.bars.toolTip() == want
    plot = card.plot.accessibleDescription()
    assert plot.startswith("last 10 s:") and "intensity max 0.19" in plot, plot
    assert "top emotions happy 0.60, neutral 0.20, angry 0.10" in plot, plot
    card.bars.set_values(None)
    assert "no expression head" in card.bars.accessibleDescription()


def test_the_view_and_the_side_panel_show_the_focus(qtbot, window):
    """Probe finding: the view has the focus at start and the side panel gets it by Tab, but neither showed it (the
    same pixels focused or not). The view draws a frame in the palette's highlight colour, the panel's border
    takes that colour."""
    from PyQt6.QtGui import QPalette

    _activate(qtbot, window)
    hl = window.palette().color(QPalette.ColorRole.Highlight).rgb()
    view, panel = window.live_view, window.panel
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=5000)
    img = view.grab().toImage()
    assert img.pixelColor(0, img.height() // 2).rgb() == hl and img.pixelColor(img.width() // 2, 1).rgb() == hl
    unfocused_panel = panel.grab().toImage()
    assert unfocused_panel.pixelColor(0, unfocused_panel.height() // 2).rgb() != hl
    panel.setFocus()
    qtbot.waitUntil(panel.hasFocus, timeout=5000)
    img = view.grab().toImage()
    assert img.pixelColor(0, img.height() // 2).rgb() != hl  # the mark goes with the focus
    img = panel.grab().toImage()
    assert img.pixelColor(0, img.height() // 2).rgb() == hl and img.pixelColor(img.width() // 2, 1).rgb() == hl


def test_the_panels_text_follows_the_font_size(qtbot):
    """Probe finding: the bars' names and values were a fixed 8 pt in 14-px rows with a 58-px name column, the
    plot's text 7.5 pt, the thumbnail's note 8 pt (in a style sheet): a large desktop font left them small. They
    follow the widget's font now (the same sizes at the usual 9 pt), rows and columns measured in it."""
    from PyQt6.QtGui import QFontMetrics

    from ui.widgets import FaceCard
    from ui.widgets.style import EMOTIONS, scaled_font

    card = FaceCard(1)
    qtbot.addWidget(card)
    bars, plot = card.bars, card.plot
    if abs(bars.font().pointSizeF() - 9.0) < 1e-6:  # the usual font: the look it had
        assert bars.geometry_px() == {"row": 14, "label": 58, "value": 38}
        assert bars.height() == 7 * 14 + 4 and plot.sizeHint().height() == 110
    small = (bars.height(), plot.minimumHeight(), card.thumb.font().pointSizeF())
    card.setFont(_big_font(card))  # FontChange reaches the children
    fm = QFontMetrics(scaled_font(bars.font(), bars.text_scale))
    g = bars.geometry_px()
    assert g["row"] > fm.height() and g["label"] > max(fm.horizontalAdvance(n) for n in EMOTIONS)
    assert bars.height() == 7 * g["row"] + 4 > small[0] and plot.minimumHeight() > small[1]
    assert card.thumb.font().pointSizeF() == pytest.approx(1.5 * small[2])
    assert "font-size" not in card.thumb.styleSheet()


def test_the_window_fits_a_911_px_screen_with_a_large_font(qtbot, window):
    """Probe finding: with a 1.5x desktop font, the window could not be made narrower than 955 px, more than the
    911 logical pixels of a 1366-px screen at 150 %: the toolbar's second and third rows (backend, detector, "file
    at its own pace", Record, Export CSV; the overlay check boxes) set that width. Their controls wrap onto another
    line instead; at the usual font the rows are as before (one line each, the window's smallest 699 px)."""
    assert window.choices_row.wrap.count() == 4 and window.overlay_row.wrap.count() == 5
    assert window.minimumSizeHint().width() <= 699
    narrow_window(window, qtbot, _big_font(window), 911,
                  (*window.overlay_checks.values(), window.realtime_check, window.record_button, window.csv_button,
                   window.backend_combo, window.detector_combo, window.rotate_combo))
    assert window.overlay_row.lines() > 1
    checks = list(window.overlay_checks.values())
    view_top = window.live_view.mapTo(window, window.live_view.rect().topLeft()).y()
    assert all(c.mapTo(window, c.rect().bottomLeft()).y() < view_top for c in checks)  # above the view, not on it


def test_enter_clicks_a_focused_button_and_nothing_else(qtbot, window, monkeypatch):
    """Probe finding: Enter on a focused button did nothing (Qt gives it to dialogs' buttons only). It clicks the
    focused button now; no button becomes a default one that Enter elsewhere (the view, a combo box) would click."""
    from PyQt6.QtTest import QTest
    from PyQt6.QtWidgets import QFileDialog, QPushButton

    opened = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (opened.append(1), ("", ""))[1])
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: (opened.append(2), "")[1])
    _activate(qtbot, window)
    buttons = window.findChildren(QPushButton)
    assert all(b.autoDefault() and not b.isDefault() for b in buttons), [b.text() for b in buttons]
    for widget in (window.live_view, window.backend_combo, window.panel):
        widget.setFocus()
        QTest.keyClick(widget, Qt.Key.Key_Return)
    assert not opened and window.session is None and not window.errors
    window.open_button.setFocus()
    QTest.keyClick(window.open_button, Qt.Key.Key_Return)
    window.model_button.setFocus()
    QTest.keyClick(window.model_button, Qt.Key.Key_Enter)
    assert opened == [1, 2]


def test_the_wrapping_rows_gap_is_never_negative_where_the_style_gives_no_layout_spacing(qtbot):
    """macOS's style answers -1 for PM_LayoutHorizontalSpacing (it spaces each pair of controls by layoutSpacing
    instead), and the root layout's spacing is -1 there too: the rows' controls were laid 1 px over each other.
    The gap is the style's spacing of two check boxes now, else 6 px."""
    from PyQt6.QtWidgets import QCheckBox, QProxyStyle, QSizePolicy, QStyle

    from ui.widgets import WrapRow

    class MacLike(QProxyStyle):
        def __init__(self, pair: int) -> None:
            super().__init__("Fusion")
            self.pair = pair

        def pixelMetric(self, metric, option=None, widget=None):  # noqa: N802 - Qt's name
            if metric in (QStyle.PixelMetric.PM_LayoutHorizontalSpacing, QStyle.PixelMetric.PM_LayoutVerticalSpacing):
                return -1
            return super().pixelMetric(metric, option, widget)

        def layoutSpacing(self, control1, control2, orientation, option=None, widget=None):  # noqa: N802
            both = control1 == control2 == QSizePolicy.ControlType.CheckBox
            return self.pair if both and orientation == Qt.Orientation.Horizontal else -1

    for pair, want in ((9, 9), (-1, 6)):
        style = MacLike(pair)
        boxes = [QCheckBox(name) for name in ("alpha", "beta", "gamma")]
        row = WrapRow(boxes, spacing=-1)
        qtbot.addWidget(row)
        row.setStyle(style)
        assert row.wrap.spacing() == want
        row.resize(600, 60)
        row.show()
        row.wrap.setGeometry(row.rect())
        gaps = [b.geometry().x() - a.geometry().right() - 1 for a, b in zip(boxes, boxes[1:], strict=False)]
        assert gaps == [want, want], gaps


def test_enter_clicks_a_banners_close_button(qtbot):
    """docs/app.md: Enter clicks a focused button. The banners' ✕ are tool buttons, which took Space only."""
    from PyQt6.QtTest import QTest

    from ui.widgets import ErrorBanner, NoticeBanner

    for banner, show in ((ErrorBanner(), lambda b: b.show_error("boom")),
                         (NoticeBanner(), lambda b: b.show_notice("turned?", "Rotate", lambda: None, "Rotate", "t"))):
        qtbot.addWidget(banner)
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            show(banner)
            assert banner.isVisible()
            banner.close_button.setFocus()
            QTest.keyClick(banner.close_button, key)
            assert not banner.isVisible(), key


def test_the_panels_descriptions_change_at_most_once_a_second(qtbot, monkeypatch):
    """Probe finding: the bars' and the plot's descriptions (and the bars' tooltip) were set on every refresh, 15
    times a second (the status labels' names 4 times, through the same ThrottledText now): a screen reader was told
    of each. A change of numbers is handed on once a second now, the last one when the second ends (also once the
    updates stop); a change of what the text says (a head or none) at once."""
    from ui.bridge import FaceSample
    from ui.widgets import FaceCard
    from ui.widgets import plot as plot_mod

    now = [1000.0]
    monkeypatch.setattr(plot_mod.time, "monotonic", lambda: now[0])
    card = FaceCard(1)
    qtbot.addWidget(card)
    told = []
    card.bars.description._apply = lambda text, apply=card.bars.description._apply: (told.append(text), apply(text))
    rng = np.random.default_rng(0)
    for i in range(30):  # 2 s of refreshes at 15 Hz, each with other numbers
        em = rng.dirichlet(np.ones(7)).astype(np.float32)
        card.add_sample(FaceSample(i / 15, 1, 0.01 * i, em, None))
        card.refresh()
        now[0] += 1 / 15
    assert 2 <= len(told) <= 3, told  # the first at once, then once a second (15 Hz gave 30)
    last = card.bars.text()
    assert card.bars.accessibleDescription() != last  # held back ...
    qtbot.waitUntil(lambda: card.bars.accessibleDescription() == last, timeout=3000)  # ... until the second ends
    assert card.bars.toolTip() == last and card.plot.accessibleDescription() == card.plot.summary()
    card.bars.set_values(None)  # what it says changes: at once
    assert card.bars.accessibleDescription() == card.bars.NO_HEAD
    card.emotions = rng.dirichlet(np.ones(7)).astype(np.float32)
    card.refresh()
    card.emotions = rng.dirichlet(np.ones(7)).astype(np.float32)
    card.refresh()
    card.flush_descriptions()  # a run paused or ended: the last numbers now
    assert card.bars.accessibleDescription() == card.bars.text()


def test_the_plot_legend_names_are_readable(qtbot, monkeypatch):
    """Probe finding: the legend drew each emotion's name in its line's colour, small, on the plot's (28, 28, 30):
    "fear" 3.88:1, "angry" 4.11:1, under WCAG AA's 4.5:1. The names are light grey; the line sample before each
    keeps the colour."""
    from PyQt6.QtGui import QColor, QPainter

    from ui.widgets import TimePlot

    drawn = []
    original = QPainter.drawText

    def draw_text(self, *args):
        drawn.append((args[-1], self.pen().color()))
        return original(self, *args)

    monkeypatch.setattr(QPainter, "drawText", draw_text)
    plot = TimePlot()
    qtbot.addWidget(plot)
    plot.resize(280, 110)
    em = np.array([0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.2], np.float32)  # angry, fear, surprise: the darkest colours
    for t in range(30):
        plot.add(t / 10, 0.1, em)
    plot.grab()
    names = plot.top_emotions()
    assert set(names) == {"angry", "fear", "surprise"}
    colours = {text: c for text, c in drawn if text in names}
    assert set(colours) == set(names)
    for name, c in colours.items():
        assert _contrast(c, QColor(28, 28, 30)) >= 4.5, (name, c.name())


def test_the_neutral_thumbnail_uses_the_screens_pixels(qtbot, monkeypatch):
    """Probe finding: the neutral face was scaled to 64x64 pixels whatever the screen: at 200 % the display stretched
    it to 128 and blurred it. It is scaled to 64 logical pixels in the screen's pixels."""
    from ui.widgets import FaceCard

    card = FaceCard(1)
    qtbot.addWidget(card)
    shown = []
    set_pixmap = card.thumb.setPixmap
    monkeypatch.setattr(card.thumb, "devicePixelRatioF", lambda: 2.0)  # a 200 % screen
    # what the card hands the label (QLabel.pixmap() gives it back at the label's own ratio, 1 here)
    monkeypatch.setattr(card.thumb, "setPixmap", lambda pm: (shown.append(pm), set_pixmap(pm))[1])
    card.set_neutral(np.full((112, 112, 3), 90, np.uint8))
    pm = shown[-1]
    assert (pm.width(), pm.height(), pm.devicePixelRatio()) == (128, 128, 2.0)
    assert pm.deviceIndependentSize().width() == 64


def test_errors_and_run_ends_are_announced_in_the_views_description(qtbot, window, tmp_path):
    """Probe finding: an error or a run's end reached a screen reader nowhere (PyQt6 has no
    QAccessible.updateAccessibility): the state line and the banner are mirrored into the accessible description
    of the view, which has the focus."""
    from ui.main_window import VIEW_HELP

    view = window.live_view
    assert view.accessibleDescription() == f"idle; {VIEW_HELP}"
    window.open_source(tmp_path / "missing.mp4", start=True)
    _wait_finished(qtbot, window)
    d = view.accessibleDescription()
    assert d.startswith(window.state_label.text()) and "error: " in d and "no such file" in d, d
    window.banner.close_button.click()
    assert "no such file" not in view.accessibleDescription()
    window.show_error("boom")
    assert "error: boom" in view.accessibleDescription()


# --------------------------------------------------------------------- rotate
#: a neutral talker (tests/test_rotate.py): every frame's face found, upright or turned
TALKER = "videoretalking_face_2.mp4"


def _upside_down_clip(tmp_path: Path, n: int = 45) -> Path:
    """The talker's first ``n`` frames turned upside down (a video that lost its rotation tag)."""
    import av
    import cv2

    from tests.conftest import write_video

    frames = []
    with av.open(str(shared_video(TALKER))) as c:
        for f in c.decode(video=0):
            frames.append(cv2.rotate(f.to_ndarray(format="bgr24"), cv2.ROTATE_180))
            if len(frames) >= n:
                break
    return write_video(tmp_path / "upside.mp4", frames)


def test_the_rotate_box_is_offered_remembered_and_given_on_the_command_line(qtbot, model_dir, tmp_path):
    """The Analyzer's rotate (facecycle process --rotate) in the window: a box beside the backend and detector, with
    a name, a key and a tooltip; remembered in the settings (a stale value ignored); ``--rotate`` takes 0, 90, 180,
    270 only and, given, is not overridden by the remembered one."""
    import argparse

    from PyQt6.QtCore import QSettings

    from ui.app import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args([]).rotate is None and p.parse_args(["--rotate", "180"]).rotate == 180
    with pytest.raises(SystemExit):
        p.parse_args(["--rotate", "45"])

    ini = tmp_path / "settings.ini"
    a = MainWindow(model_dir=model_dir, settings=QSettings(str(ini), QSettings.Format.IniFormat))
    qtbot.addWidget(a)
    combo = a.rotate_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["0°", "90°", "180°", "270°"] and a.rotate == 0
    assert a.rotate_label.buddy() is combo and combo.accessibleName() == "Rotate clockwise"
    assert "Alt+W" in combo.toolTip() and "next start" in combo.toolTip()
    row = [a.choices_row.wrap.itemAt(i).widget() for i in range(a.choices_row.wrap.count())]
    assert row.index(combo.parentWidget()) == row.index(a.detector_combo.parentWidget()) + 1  # beside the detector
    a.source = "clip.mp4"
    combo.setCurrentText("90°")
    assert a.rotate == 90 and a.run_config().rotate == 90
    a.save_settings()

    b = MainWindow(model_dir=model_dir, settings=QSettings(str(ini), QSettings.Format.IniFormat))
    qtbot.addWidget(b)
    b.restore_settings()
    assert b.rotate == 90
    c = MainWindow(model_dir=model_dir, settings=QSettings(str(ini), QSettings.Format.IniFormat), rotate=180)
    qtbot.addWidget(c)
    c.restore_settings(skip=["rotate"])  # given on the command line (ui.app: --rotate)
    assert c.rotate == 180
    s = QSettings(str(ini), QSettings.Format.IniFormat)
    s.setValue("rotate", "45")
    s.sync()
    d = MainWindow(model_dir=model_dir, settings=QSettings(str(ini), QSettings.Format.IniFormat))
    qtbot.addWidget(d)
    d.restore_settings()
    assert d.rotate == 0 and d.rotate_combo.count() == 4


def test_an_upside_down_clip_is_noticed_once_and_one_click_reads_it_upright(qtbot, window, tmp_path, monkeypatch):
    """A run whose first faces are upside down (realtime.analyzer's orientation hint) says so in the window, once,
    naming the Rotate that reads them upright (180°); its button sets Rotate and starts the clip again, which is
    read upright (the Analyzer turns every frame) and says nothing."""
    from ui.main_window import VIEW_HELP

    # the test model's random head reads every face expressive: without its cap the person baseline has nothing to
    # say, and this run's only notice is the orientation's (the two together: test_notes_queue_behind_...)
    monkeypatch.setattr("realtime.baseline.MAX_NEUTRAL", None)
    clip = _upside_down_clip(tmp_path)
    window.open_source(clip, start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input" and not window.errors
    notice = window.notice_banner
    assert notice.isVisible() and "upside down" in notice.text() and "180°" in notice.text(), notice.text()
    assert len(window.notices) == 1 and window.session.info["orientation"]["rotate_upright"] == 180
    assert f"notice: {notice.text()}" in window.live_view.accessibleDescription()
    assert notice.action_button.accessibleName() == "Rotate 180 degrees and restart"
    assert not window.banner.isVisible()  # advice, not an error
    assert window.stats()["notices"] == window.notices

    notice.action_button.click()
    assert window.rotate == 180 and not notice.isVisible()
    assert window.sessions_run == 2 and window.session.config.rotate == 180
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input" and window.session.info.get("rotate") == 180
    assert "orientation" not in window.session.info and not notice.isVisible() and len(window.notices) == 1
    assert window.session.config.rotate == 180 and window.notice_banner.isHidden()
    assert window.live_view.accessibleDescription().endswith(VIEW_HELP)


def test_cli_rotate_reaches_the_analyzer(model_dir, tmp_path):
    """``facecycle app --rotate 180`` turns the frames of the run it starts: the CSV's sidecar (the run's
    describe()) says rotate 180, and the upside-down clip, read upright, gets no orientation notice."""
    clip = _upside_down_clip(tmp_path)
    out, stats = tmp_path / "rows.csv", tmp_path / "stats.json"
    r = _run_cli(["--input", str(clip), "--model", model_dir, "--rotate", "180", "--csv", str(out),
                  "--exit-after", "45", "--stats-json", str(stats)])
    assert r.returncode == 0, r.stderr
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["rotate"] == 180 and "orientation" not in side
    st = json.loads(stats.read_text())
    # no orientation notice (the random head's faces, expressive throughout, may get the baseline's)
    assert not [n for n in st["notices"] if "upright" in n] and not st["errors"]
    assert "upright" not in r.stderr


# --------------------------------------------------------------------- notices: dark faces, the baseline's cap
DARK = "The picture is very dark"  # how the dark-faces notice begins (ui.main_window.note_message)


def _dark_clip(tmp_path: Path, n: int = 30, scale: float = 0.1, name: str = "dark.mp4") -> Path:
    """The talker's first ``n`` frames at ``scale`` of their light, with a little noise (a dark room's webcam);
    ``scale`` 1: the clip as it is."""
    import av

    from tests.conftest import write_video

    rng = np.random.default_rng(1)
    frames = []
    with av.open(str(shared_video(TALKER))) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="bgr24").astype(np.float32) * scale
            if scale < 1:
                img += rng.normal(0, 2.0, img.shape)
            frames.append(np.clip(img, 0, 255).astype(np.uint8))
            if len(frames) >= n:
                break
    return write_video(tmp_path / name, frames)


def test_the_notice_banner_holds_one_notice_and_queues_the_others(qtbot):
    """One notice at a time: a notice that only says has no button; one queued waits behind the one shown (the text
    says how many wait) and ✕ shows it; one shown at once (the orientation's, with its action) puts the one shown
    back first in the queue; the action shows the next before it acts; clear() forgets them all."""
    from ui.widgets import NoticeBanner

    b = NoticeBanner()
    qtbot.addWidget(b)
    b.queue_notice("dark")
    assert b.isVisible() and b.text() == "dark" and b.action_button.isHidden()
    b.queue_notice("cap")
    assert b.text().startswith("dark (1 more notice") and [n.message for n in b.waiting] == ["cap"]
    acted = []
    b.show_notice("turned", "Rotate", lambda: acted.append(len(b.waiting)), "Rotate 180", "Rotate, Space")
    assert b.text().startswith("turned (2 more notices") and not b.action_button.isHidden()
    assert b.action_button.accessibleName() == "Rotate 180" and [n.message for n in b.waiting] == ["dark", "cap"]
    b.action_button.click()
    assert acted == [1] and b.text().startswith("dark (1 more") and b.action_button.isHidden()
    b.close_button.click()
    assert b.text() == "cap" and b.isVisible()
    b.close_button.click()
    assert b.isHidden() and b.current is None
    b.queue_notice("a")
    b.queue_notice("b")
    b.clear()
    assert b.isHidden() and not b.waiting
    b.queue_notice("c")
    assert b.text() == "c"  # nothing of the cleared queue comes back


def test_a_dark_clip_is_noticed_once_and_the_clip_as_it_is_is_not(qtbot, window, tmp_path):
    """A run whose faces are too dark to read as they are (realtime.analyzer's ``dark_faces``: they are brightened
    before they are read) says so once in the notice banner, in plain words, without an action; it is in the view's
    accessible description and the --stats-json notices. The same clip lit says nothing of the light."""
    window.open_source(_dark_clip(tmp_path), start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input" and not window.errors
    assert window.session.info["dark_faces"]["rows"] > 0
    dark = [n for n in window.notices if n.startswith(DARK)]
    assert len(dark) == 1 and "More light gives better readings." in dark[0], window.notices
    notice = window.notice_banner
    assert notice.isVisible() and notice.text().startswith(dark[0]) and notice.action_button.isHidden()
    assert f"notice: {notice.text()}" in window.live_view.accessibleDescription()
    assert window.stats()["notices"] == window.notices and not window.banner.isVisible()

    window.open_source(_dark_clip(tmp_path, scale=1.0, name="lit.mp4"), start=True)
    qtbot.waitUntil(lambda: window.sessions_run == 2, timeout=10_000)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input" and "dark_faces" not in window.session.info
    assert len([n for n in window.notices if n.startswith(DARK)]) == 1  # the first run's only
    assert not notice.text().startswith(DARK)


def _expressive_baseline(track_id: int = 3, frames: int = 40):
    """A person baseline fed ``frames`` frames of one face that reads strongly happy throughout (its most neutral
    frames above the cap, 0.4)."""
    from fractions import Fraction

    from realtime.baseline import NeutralBaseline
    from realtime.types import EMOTIONS, Face, FramePacket

    nb = NeutralBaseline()
    e = np.zeros(len(EMOTIONS), np.float32)
    e[EMOTIONS.index("happy")], e[EMOTIONS.index("neutral")] = 0.9, 0.1
    for i in range(frames):
        face = Face(box=np.array([0, 0, 4, 4], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                    track_id=track_id, intensity=0.9, emotions=e, code=np.zeros(4, np.float32))
        nb(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                       image=np.zeros((8, 8, 3), np.uint8), faces=[face]))
    return nb


def test_faces_at_the_baseline_cap_become_a_notice():
    """A face whose most neutral frames still read expressive (realtime.baseline's ``tracks_at_cap``) is a note of
    the run (ui.pipeline_adapter.run_notes, which the session passes on) that names it as the panel does, and its
    notice says what that means for its rel_* values and what may cause it; before the cap, no note."""
    from types import SimpleNamespace

    from ui.main_window import note_message
    from ui.pipeline_adapter import run_notes

    assert run_notes(SimpleNamespace(info={}, baseline=_expressive_baseline(frames=5))) == {}  # still warming up
    nb = _expressive_baseline(track_id=3)
    assert nb.describe()["tracks_at_cap"] == 1
    notes = run_notes(SimpleNamespace(info={"dark_faces": {"rows": 2, "first_frame": 0, "gain_max": 9.0}},
                                      baseline=nb))
    assert notes["baseline_cap"] == {"tracks_at_cap": 1, "faces": [3]} and notes["dark_faces"]["rows"] == 2
    said = note_message("baseline_cap", notes["baseline_cap"])
    assert said is not None and said.startswith("Face #3 never looked neutral: its values relative to itself")
    assert "fixed rest" in said and "glasses, a hand, a shadow or dim light" in said
    # a face gone before the note is read: counted, not named
    assert note_message("baseline_cap", {"tracks_at_cap": 2, "faces": []}).startswith("2 faces never looked neutral")
    assert note_message("baseline_cap", {"tracks_at_cap": 2, "faces": [1, 4]}).startswith("Faces #1 and #4 never")
    assert note_message("baseline_cap", {"faces": [1]}) is None and note_message("orientation", {}) is None
    assert note_message("dark_faces", {"rows": 3, "first_frame": 12}).startswith(f"{DARK} (from frame 12): faces ")
    one = {"rows": 3, "first_frame": 0, "tracks": [{"face_id": 7, "rows": 3}]}
    assert note_message("dark_faces", one).startswith(f"{DARK}: face #7 is brightened before its expression")
    two = {"rows": 3, "first_frame": 0, "tracks": [{"face_id": 7}, {"face_id": 2}]}
    assert note_message("dark_faces", two).startswith(f"{DARK}: faces #7 and #2 are brightened before their")
    many = {"tracks": [{"face_id": i} for i in range(1, 7)]}
    assert "faces #1, #2, #3, #4 and 2 more are" in note_message("dark_faces", many)
    assert note_message("dark_faces", {"tracks": [{"id": 1}]}).startswith(f"{DARK}: faces are")  # not its numbers


def test_notes_wait_behind_the_orientation_notice_and_are_looked_for_a_few_times_a_second(qtbot, window,
                                                                                           monkeypatch):
    """The run's notes reach the window through the session (each once per run) and queue in the notice banner in
    the order found, the orientation's first whenever it comes: its action stays with it, the others wait (the
    view's description names how many) and ✕ shows the next. The worker looks for notes a few times a second, not
    on every frame."""
    from types import SimpleNamespace

    from realtime.types import FramePacket
    from ui import session as session_mod
    from ui.pipeline_adapter import run_notes

    nb = _expressive_baseline(track_id=2)
    run = SimpleNamespace(info={"dark_faces": {"rows": 1, "first_frame": 0, "gain_max": 8.0}}, baseline=nb)
    looks = []

    class Outputs:
        finished: list = []
        on_error = video = csv = None

        def set_annotator(self, annotator) -> None:
            pass

    class Stream:  # a run of 60 frames whose notes are run's: dark and cap at once, turned faces found later
        outputs, live, drops = Outputs(), False, 0

        def describe(self) -> dict:
            return {}

        def __iter__(self):
            from fractions import Fraction

            for i in range(60):
                if i == 30:
                    run.info["orientation"] = {"faces_turned_deg": 180, "rotate_upright": 180, "share": 1.0,
                                               "faces": 30}
                time.sleep(0.01)
                yield FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                                  image=np.zeros((48, 64, 3), np.uint8))

        def notes(self) -> dict:
            looks.append(time.monotonic())
            return run_notes(run)

        def set_neutralize(self, on: bool) -> None:
            pass

        def request_stop(self) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(session_mod, "open_stream", lambda config, neutralize=False: Stream())
    window.open_source("clip.mp4", start=True)
    _wait_finished(qtbot, window)
    assert window.session.end_reason == "end of input" and not window.errors
    assert 2 <= len(looks) <= 2 + (looks[-1] - looks[0]) / window.session.notes_every + 1 < 60, len(looks)
    dark, cap, turned = window.notices
    assert dark.startswith(DARK) and cap.startswith("Face #2 never looked neutral") and "upside down" in turned
    notice = window.notice_banner
    assert notice.text().startswith(f"{turned} (2 more notices") and not notice.action_button.isHidden()
    assert f"notice: {notice.text()}" in window.live_view.accessibleDescription()
    assert window.session.info["baseline_cap"]["tracks_at_cap"] == 1
    notice.close_button.click()
    assert notice.text().startswith(f"{dark} (1 more notice") and notice.action_button.isHidden()
    assert f"notice: {notice.text()}" in window.live_view.accessibleDescription()
    notice.close_button.click()
    assert notice.text() == cap and f"notice: {cap}" in window.live_view.accessibleDescription()
    notice.close_button.click()
    assert notice.isHidden() and "notice:" not in window.live_view.accessibleDescription()
