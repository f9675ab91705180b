"""The main window: controls, live view, per-face side panel, status bar."""
from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Deque, List, Optional, Union

from PyQt6.QtCore import QSettings, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStatusBar,
    QVBoxLayout,
    QWidget,
)

from engines.select import BACKEND_NAMES
from facecycle.files import VIDEO_SUFFIXES
from realtime.detectors import DETECTOR_CHOICES
from realtime.sinks import read_sidecar
from realtime.summary import clip_reading

from .bridge import FrameBridge
from .session import AnalysisSession
from .settings import Overlays, RunConfig
from .widgets import ErrorBanner, FacePanel, LiveView

__all__ = ["MainWindow", "backend_choices", "detector_choices"]

log = logging.getLogger(__name__)

#: the open dialog's filter: every suffix the pipeline reads (facecycle.files.VIDEO_SUFFIXES, the one list)
VIDEO_FILTER = "Videos (" + " ".join(f"*{x}" for x in VIDEO_SUFFIXES) + ");;All files (*)"


def backend_choices() -> List[str]:
    """Backend names for the combo box (``engines`` names; ``auto`` first)."""
    return list(BACKEND_NAMES)


#: detectors that need the user's model file (``--detector-model``), which the window has no chooser for
_NEED_MODEL = ("yunet", "insightface", "scrfd")


def detector_choices(with_model: Optional[str] = None) -> List[str]:
    """Detector names for the combo box (``realtime.detectors``; the default first; ``scrfd`` is an alias): the
    built-in one, and ``with_model``, the detector whose model file the app was started with. Those that need a
    model file of their own are offered only so (chosen without one, they could only fail)."""
    return [d for d in DETECTOR_CHOICES if d != "scrfd" and (d not in _NEED_MODEL or d == with_model)]


def _rate(fps: float) -> str:
    """A frame rate for the status bar: "–" where none can be measured yet (a single picture: one frame)."""
    return f"{fps:.1f}" if fps > 0 else "–"


def csv_reading(csv_file: Union[str, Path]) -> str:
    """``"out.csv read as happy (mean p 0.62)"`` from a finished CSV's sidecar summary; "" when it has none."""
    info = read_sidecar(Path(csv_file).with_suffix(".json"))
    r = clip_reading((info or {}).get("summary"))
    return f"{Path(csv_file).name} read as {r['emotion']} (mean p {r['p']:.2f})" if r else ""


class MainWindow(QMainWindow):
    """The FaceCycle RT window.

    Everything the user can do is also a method (``open_source``, ``start``,
    ``pause``, ``stop``, ``set_record_path``, ``set_csv_path``, ``set_overlays``),
    so tests and automation never need a dialog.

    Signals:
        runFinished(str): the pipeline ended ("end of input", "stopped", "error").
    """

    runFinished = pyqtSignal(str)
    panel_interval = 1 / 15  # seconds between side-panel repaints

    def __init__(self, model_dir: Optional[str] = None, backend: str = "auto", detector: str = "centerface",
                 realtime: bool = False, overlays: Overlays = Overlays(), parent: Optional[QWidget] = None,
                 detector_model: Optional[str] = None, neutral_reference: bool = True) -> None:
        super().__init__(parent)
        self.detector_model = detector_model
        self._model_detector = detector  # the detector that detector_model is for (not the others in the list)
        self._running_text = "running"
        self.neutral_reference = neutral_reference
        self.setWindowTitle("FaceCycle RT")
        self.setAcceptDrops(True)
        self.model_dir = model_dir
        self.source: Optional[Union[str, int]] = None
        self.session: Optional[AnalysisSession] = None
        self.sessions_run = 0
        self.bridge = FrameBridge(parent=self)
        self.overlays = overlays
        self.record_path: Optional[str] = None
        self.csv_path: Optional[str] = None
        self.errors: List[str] = []
        self._pending_start = False
        self._closing = False
        self._close_started = 0.0
        self._latencies: Deque[float] = deque(maxlen=240)
        self.last_packet = None
        self._panel_refreshed = 0.0
        self.finished_generation = 0

        self._build_ui(backend, detector, realtime)
        self.bridge.frameReady.connect(self._on_frame)
        self.bridge.errorRaised.connect(self._on_error)
        self.bridge.started.connect(self._on_started)
        self.bridge.finished.connect(self._on_finished)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(250)
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start()
        self._update_buttons()

    # ------------------------------------------------------------------ layout
    def _build_ui(self, backend: str, detector: str, realtime: bool) -> None:
        central = QWidget(self)
        root = QVBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 2)
        root.setSpacing(4)

        # row 1: source, transport, engine choices
        row1 = QHBoxLayout()
        self.camera_spin = QSpinBox(self)
        self.camera_spin.setRange(0, 63)
        self.camera_spin.setPrefix("camera ")
        self.camera_button = QPushButton("Use camera", self)
        self.camera_button.clicked.connect(lambda: self.open_source(self.camera_spin.value(), start=True))
        self.open_button = QPushButton("Open file…", self)
        self.open_button.clicked.connect(self._choose_file)
        self.source_label = QLabel("no source", self)
        self.source_label.setMinimumWidth(80)
        self.source_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.start_button = QPushButton("▶ Start", self)
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("❚❚ Pause", self)
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause_toggled)
        self.stop_button = QPushButton("■ Stop", self)
        self.stop_button.clicked.connect(self.stop)
        self.backend_combo = QComboBox(self)
        self.backend_combo.addItems(backend_choices())
        self._select(self.backend_combo, backend)
        self.backend_combo.setToolTip("inference backend (applies at the next start)")
        self.detector_combo = QComboBox(self)
        self.detector_combo.addItems(detector_choices(detector if self.detector_model else None))
        self._select(self.detector_combo, detector)
        self.detector_combo.setToolTip("face detector (applies at the next start)")
        self.realtime_check = QCheckBox("file at its own pace", self)
        self.realtime_check.setChecked(realtime)
        self.realtime_check.setToolTip("play files like a camera (late frames dropped) instead of as fast as possible "
                                       "(applies at the next start)")
        self.model_button = QPushButton("Model…", self)
        self.model_button.setToolTip("choose an exported model directory")
        self.model_button.clicked.connect(self._choose_model)
        for w in (self.camera_spin, self.camera_button, self.open_button, self.model_button):
            row1.addWidget(w)
        row1.addWidget(self.source_label, 1)
        for w in (self.start_button, self.pause_button, self.stop_button):
            row1.addWidget(w)
        root.addLayout(row1)

        # row 2: engine choices, recording, CSV
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("backend", self))
        row2.addWidget(self.backend_combo)
        row2.addWidget(QLabel("detector", self))
        row2.addWidget(self.detector_combo)
        row2.addWidget(self.realtime_check)
        row2.addStretch(1)
        root.addLayout(row2)

        # row 3: overlays
        row3 = QHBoxLayout()
        self.overlay_checks = {}
        for key, text in (("boxes", "Boxes && IDs"), ("pose", "Pose axes"), ("emotions", "Emotion bars"),
                          ("neutral_thumb", "Neutral thumbnail"), ("neutralized", "Neutralized view")):
            cb = QCheckBox(text, self)
            cb.setChecked(bool(getattr(self.overlays, key)))
            cb.toggled.connect(self._on_overlay_toggled)
            self.overlay_checks[key] = cb
            row3.addWidget(cb)
        row3.addStretch(1)
        self.record_button = QPushButton("● Record…", self)
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("record the annotated view to a video file")
        self.record_button.clicked.connect(self._on_record_clicked)
        self.csv_button = QPushButton("Export CSV…", self)
        self.csv_button.setCheckable(True)
        self.csv_button.setToolTip("write the per-frame CSV (one row per face per frame) to a file")
        self.csv_button.clicked.connect(self._on_csv_clicked)
        row2.addWidget(self.record_button)
        row2.addWidget(self.csv_button)
        root.addLayout(row3)

        self.banner = ErrorBanner(self)
        root.addWidget(self.banner)

        self.live_view = LiveView(self)
        self.live_view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # initial focus: the view, not an input field
        self.live_view.fileDropped.connect(lambda p: self.open_source(p, start=True))
        self.panel = FacePanel(parent=self)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.live_view)
        split.addWidget(self.panel)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        root.addWidget(split, 1)
        self.setCentralWidget(central)
        self.live_view.setFocus()

        sb = QStatusBar(self)
        self.state_label = QLabel("idle", self)
        self.fps_label = QLabel("display – fps", self)
        self.pipe_label = QLabel("pipeline – fps", self)
        self.latency_label = QLabel("latency – ms", self)
        self.drops_label = QLabel("dropped 0", self)
        self.rec_label = QLabel("", self)
        # long file names must not widen the window (it grew to 2,227 px and could not be made smaller again):
        # the labels take the width they are given, their whole text is their tooltip
        for lbl in (self.state_label, self.rec_label):
            lbl.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            lbl.setMinimumWidth(60)
        self.rec_label.setMaximumWidth(360)
        sb.addWidget(self.state_label, 1)
        for w in (self.rec_label, self.fps_label, self.pipe_label, self.latency_label, self.drops_label):
            sb.addPermanentWidget(w)
        self.setStatusBar(sb)
        self.resize(1180, 640)

    @staticmethod
    def _select(combo: QComboBox, name: str) -> None:
        i = combo.findText(name)
        if i < 0:
            combo.addItem(name)
            i = combo.findText(name)
        combo.setCurrentIndex(i)

    # ------------------------------------------------------------------ public API
    @property
    def running(self) -> bool:
        return self.session is not None and self.session.is_alive()

    @property
    def idle(self) -> bool:
        """No run, or the last run has ended and the window has handled its end."""
        return self.session is None or (not self.session.is_alive()
                                        and self.finished_generation == self.session.generation)

    def run_config(self) -> Optional[RunConfig]:
        if self.source is None:
            return None
        return RunConfig(source=self.source, model_dir=self.model_dir, backend=self.backend_combo.currentText(),
                         detector=self.detector_combo.currentText(),
                         detector_model=(self.detector_model if self.detector_combo.currentText()
                                         == self._model_detector else None),
                         realtime=self.realtime_check.isChecked(), neutral_reference=self.neutral_reference)

    def open_source(self, source: Union[str, int, Path], start: bool = False) -> None:
        """Select a video file / folder / stream (str) or a camera index (int); optionally start it."""
        self.source = source if isinstance(source, int) else str(source)
        label = f"camera {source}" if isinstance(source, int) else Path(str(source)).name
        self.source_label.setText(label)
        self.source_label.setToolTip(str(source))
        if start:
            self.start()
        self._update_buttons()

    def start(self) -> None:
        """Start (or restart) the pipeline on the current source. Never blocks: a running
        session is asked to stop and the new one starts when it has finished."""
        if self.source is None:
            self.show_error("no source: open a video file, drop one on the window, or use a camera")
            return
        if self.running:
            self._pending_start = True
            self.session.stop()
            return
        cfg = self.run_config()
        self.banner.hide()
        self.live_view.reset_counters()
        self.panel.clear()
        self._latencies.clear()
        self.pause_button.setChecked(False)
        self.session = AnalysisSession(cfg, self.bridge, self.overlays,
                                       video_path=self.record_path if self.record_button.isChecked() else None,
                                       csv_path=self.csv_path if self.csv_button.isChecked() else None,
                                       view_size=lambda: self.live_view.target_size)
        self.sessions_run += 1
        self.state_label.setText(f"starting {cfg.source_label} …")
        self.session.start()
        self._update_buttons()

    def pause(self, paused: bool = True) -> None:
        self.pause_button.setChecked(paused)

    def stop(self) -> None:
        """Ask the pipeline to stop; files are finished by the worker, ``runFinished`` follows."""
        self._pending_start = False
        if self.session is not None and self.session.is_alive():
            self.session.stop()
            self.state_label.setText("stopping …")

    def set_overlays(self, overlays: Overlays) -> None:
        for key, cb in self.overlay_checks.items():
            cb.blockSignals(True)
            cb.setChecked(bool(getattr(overlays, key)))
            cb.blockSignals(False)
        self._apply_overlays(overlays)

    def set_record_path(self, path: Optional[Union[str, Path]]) -> None:
        """Record the annotated view to ``path`` (None: stop recording). Applies at once when running."""
        self.record_path = None if path is None else str(path)
        self.record_button.setChecked(path is not None)
        if self.session is not None and self.session.is_alive():
            self.session.record_video(self.record_path)
        self._update_buttons()

    def set_csv_path(self, path: Optional[Union[str, Path]]) -> None:
        """Export the CSV to ``path`` (None: stop and finish it). Applies at once when running."""
        self.csv_path = None if path is None else str(path)
        self.csv_button.setChecked(path is not None)
        if self.session is not None and self.session.is_alive():
            self.session.export_csv(self.csv_path)
        self._update_buttons()

    def show_error(self, message: str) -> None:
        """Show ``message`` in the banner and the status bar; the app stays usable."""
        self.errors.append(message)
        log.info("shown in the window: %s", message)
        self.banner.show_error(message)
        self.statusBar().showMessage(message, 10000)

    def displayed_fps(self) -> float:
        lv = self.live_view
        if lv.painted < 2 or lv.first_paint is None or lv.last_paint is None or lv.last_paint <= lv.first_paint:
            return 0.0
        return (lv.painted - 1) / (lv.last_paint - lv.first_paint)

    def stats(self) -> dict:
        """Run statistics: displayed and pipeline fps, frames, drops, latency."""
        offered, taken, display_drops = self.bridge.counts()
        s = self.session
        lat = sorted(self._latencies)
        return {
            "displayed_fps": round(self.displayed_fps(), 2),
            "displayed_fps_recent": round(self.live_view.fps(), 2),
            "frames_painted": self.live_view.painted,
            "pipeline_fps": round(s.pipeline_fps(), 2) if s else 0.0,
            "frames_analyzed": s.frames if s else 0,
            "frames_handed_to_gui": taken,
            "display_drops": display_drops,
            "source_drops": s.source_drops() if s else 0,
            "latency_ms_p50": round(1000 * statistics.median(lat), 1) if lat else None,
            "latency_ms_p95": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
            "errors": list(self.errors),
        }

    # ------------------------------------------------------------------ frames
    def _on_frame(self) -> None:
        frame = self.bridge.take()
        if frame is None:
            return
        packet = self.last_packet = frame.packet
        self.live_view.set_image(frame.image)
        self.panel.add_samples(self.bridge.take_samples())
        now = time.perf_counter()
        # the panel repaints at most ~15 times a second, and on every frame while paused (the frames still in
        # flight when pause was pressed): what stays on screen is the frame shown and its numbers
        if self.pause_button.isChecked() or now - self._panel_refreshed >= self.panel_interval:
            self.refresh_panel()
        t0 = packet.stats.get("t0")  # perf_counter() when the frame arrived (the source's read returned it)
        if t0 is None:  # a pipeline without a capture stamp: stage times + time since the worker finished
            t0 = packet.stats.get("ui_ready", now) - sum(v for k, v in packet.stats.items()
                                                         if k in ("decode", "detect", "infer", "post", "annotate"))
        self._latencies.append(max(0.0, now - t0))

    def refresh_panel(self) -> None:
        """Repaint the side panel now, from the frame shown (its faces' latest samples and neutral faces)."""
        self._panel_refreshed = time.perf_counter()
        self.panel.add_samples(self.bridge.take_samples())
        packet = self.last_packet
        if packet is None:
            return
        if self.overlays.needs_neutral:
            self.panel.set_neutral_faces(packet.faces)
        self.panel.advance(packet.timestamp)

    def _current(self, generation: int) -> bool:
        """Whether a bridge signal comes from the current run (late signals of older runs are ignored)."""
        return self.session is not None and self.session.generation == generation

    def _on_error(self, generation: int, message: str) -> None:
        if self._current(generation):
            self.show_error(message)
            # an output that could not be opened or went wrong is off: its button says so
            if message.startswith(("recording not started", "recording stopped")):
                self.record_path = None
                self.record_button.setChecked(False)
            elif message.startswith(("CSV export not started", "CSV export stopped")):
                self.csv_path = None
                self.csv_button.setChecked(False)

    def _on_started(self, generation: int, info: dict) -> None:
        if not self._current(generation):
            return
        src = self.session.config.source_label if self.session else ""
        b = info.get("backend")
        backend = b.get("backend", "") if isinstance(b, dict) else str(b or "")
        d = info.get("detector")
        det = d.get("detector", "") if isinstance(d, dict) else str(d or "")
        self._running_text = f"running: {Path(str(src)).name if src != '' else ''}  [{backend}, {det}]"
        self.state_label.setText(self._running_text)
        self.state_label.setToolTip(f"running: {src}  [{backend}, {det}]")
        self.panel.stills = (info.get("input") or {}).get("reading") == "stills"
        self.live_view.set_placeholder("waiting for the first frame …")
        self._update_buttons()

    def _on_finished(self, generation: int, reason: str) -> None:
        if not self._current(generation):
            return
        self.finished_generation = generation
        self._on_frame()  # a last frame still in the slot (a single picture's only one) is shown, not dropped
        self.panel.add_samples(self.bridge.take_samples())
        self.panel.advance()
        s = self.session
        if s is not None:
            s.join(5.0)  # the worker has already reported its last line: this returns at once
            files = ", ".join(Path(f).name for f in s.finished_files)
            readings = [r for r in (csv_reading(f) for f in s.finished_files if f.endswith(".csv")) if r]
            text = f"{reason}" + (f" — saved {files}" if files else "") + "".join(f"; {r}" for r in readings)
            self.state_label.setText(text)
            self.state_label.setToolTip("\n".join([reason, *s.finished_files]))
            if files and self._pending_start:  # the next file starts at once and its state replaces this line
                self.statusBar().showMessage(f"previous run: {text}", 8000)
        self.pause_button.setChecked(False)
        # the files are finished: a new run asks for new ones instead of overwriting them. An output this run
        # never wrote (a file that would not open) stays asked for, for the next file
        written = {str(Path(f)) for f in s.finished_files} if s is not None else set()
        if self.record_path is None or str(Path(self.record_path)) in written:
            self.record_path = None
            self.record_button.setChecked(False)
        if self.csv_path is None or str(Path(self.csv_path)) in written:
            self.csv_path = None
            self.csv_button.setChecked(False)
        self._update_status()  # the status bar's "● REC … CSV …" ends with the run
        self._update_buttons()
        self.runFinished.emit(reason)
        if self._closing:
            self.close()
        elif self._pending_start:
            self._pending_start = False
            self.start()

    def _update_status(self) -> None:
        st = self.stats()
        self.fps_label.setText(f"display {_rate(self.live_view.fps())} fps")
        recent = self.session.recent_fps() if self.session is not None and self.session.is_alive() else None
        self.pipe_label.setText(f"pipeline {_rate(recent if recent is not None else st['pipeline_fps'])} fps")
        lat = st["latency_ms_p50"]
        self.latency_label.setText(f"latency {lat:.0f} ms" if lat is not None else "latency – ms")
        self.drops_label.setText(f"dropped {st['display_drops'] + st['source_drops']} "
                                 f"(display {st['display_drops']}, source {st['source_drops']})")
        s = self.session
        rec = []
        out = s.outputs if s is not None and s.is_alive() else None
        if out is not None:
            video, csv = out.video, out.csv  # read once: the worker may switch them meanwhile
            if video is not None:
                rec.append(f"● REC {Path(str(video.path)).name}")
            if csv is not None:
                rec.append(f"CSV {Path(str(csv.path)).name}")
        self.rec_label.setText("  ".join(rec))

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.setEnabled(self.source is not None)
        self.start_button.setText("↻ Restart" if running else "▶ Start")
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)

    # ------------------------------------------------------------------ controls
    def _on_pause_toggled(self, paused: bool) -> None:
        s = self.session
        if s is None or not s.is_alive():
            return
        if paused:
            s.pause()
            self.state_label.setText("paused")
            self.refresh_panel()
        else:
            s.resume()
            self.state_label.setText(self._running_text)

    def _on_overlay_toggled(self, _checked: bool) -> None:
        self._apply_overlays(Overlays(**{k: cb.isChecked() for k, cb in self.overlay_checks.items()}))

    def _apply_overlays(self, overlays: Overlays) -> None:
        if not overlays.needs_neutral:
            self.panel.clear_neutral_faces()
        self.overlays = overlays
        if self.session is not None:
            self.session.set_overlays(overlays)

    def _on_record_clicked(self, checked: bool) -> None:
        if checked:
            path, _ = QFileDialog.getSaveFileName(self, "Record annotated video", self._default_name(".mp4"),
                                                  "MP4 video (*.mp4);;Matroska (*.mkv)")
            if path and not Path(path).suffix:  # a name typed without one (Qt's own dialog adds none)
                path += ".mp4"
            self.set_record_path(path or None)
        else:
            self.set_record_path(None)

    def _on_csv_clicked(self, checked: bool) -> None:
        if checked:
            path, _ = QFileDialog.getSaveFileName(self, "Export per-frame CSV", self._default_name(".csv"),
                                                  "CSV (*.csv)")
            if path and not Path(path).suffix:
                path += ".csv"
            self.set_csv_path(path or None)
        else:
            self.set_csv_path(None)

    def _default_name(self, suffix: str) -> str:
        stem = "camera" if isinstance(self.source, int) or self.source is None else Path(str(self.source)).stem
        return str(Path.cwd() / f"{stem}_facecycle_{time.strftime('%Y%m%d_%H%M%S')}{suffix}")

    def _choose_file(self) -> None:
        settings = QSettings("FaceCycleRT", "app")
        start_dir = str(settings.value("last_dir", str(Path.cwd())))
        path, _ = QFileDialog.getOpenFileName(self, "Open video", start_dir, VIDEO_FILTER)
        if path:
            settings.setValue("last_dir", str(Path(path).parent))
            self.open_source(path, start=True)

    def _choose_model(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Exported model directory (with manifest.json)",
                                             self.model_dir or str(Path.cwd()))
        if d:
            if not (Path(d) / "manifest.json").is_file():
                self.show_error(f"{d}: not an exported model (no manifest.json)")
                return
            self.model_dir = d
            self.statusBar().showMessage(f"model: {d} (applies at the next start)", 5000)

    # ------------------------------------------------------------------ drag and drop, closing
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self.live_view.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.live_view.dropEvent(event)

    close_timeout = 20.0  # seconds after which a closing window says it is still finishing the files

    def _still_closing(self) -> None:
        """The worker is still finishing the files: keep waiting (never abandon a file half written) and say so."""
        if self._closing and self.isVisible() and self.session is not None and self.session.is_alive():
            waited = time.perf_counter() - self._close_started
            log.warning("still finishing the files after %.0f s", waited)
            self.state_label.setText(f"finishing files … ({waited:.0f} s)")
            QTimer.singleShot(5000, self._still_closing)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing stops the pipeline first: the window closes once the worker has finished every file."""
        if self.session is not None and self.session.is_alive():
            self._closing = True
            self._pending_start = False
            self.session.stop()
            self.state_label.setText("finishing files …")
            self._close_started = time.perf_counter()
            QTimer.singleShot(int(self.close_timeout * 1000), self._still_closing)
            event.ignore()
            return
        self._status_timer.stop()
        event.accept()
