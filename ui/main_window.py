"""The main window: controls, live view, per-face side panel, status bar."""
from __future__ import annotations

import logging
import os
import re
import statistics
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Collection, Deque, List, Optional, Sequence, Tuple, Union

from PyQt6.QtCore import QByteArray, QEvent, QLocale, QSettings, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import (
    QAction,
    QCloseEvent,
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QPaintEvent,
    QPalette,
    QScreen,
)
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStatusBar,
    QStyle,
    QStyleOptionButton,
    QStylePainter,
    QVBoxLayout,
    QWidget,
)

from engines.select import BACKEND_NAMES
from facecycle.files import VIDEO_SUFFIXES
from realtime.detectors import DETECTOR_CHOICES
from realtime.outputs import CSV_FAILED, OUTPUT_FAILED, VIDEO_FAILED
from realtime.sinks import read_sidecar
from realtime.summary import clip_reading

from .bridge import FrameBridge
from .session import FILES_NOT_FINISHED, AnalysisSession
from .settings import ROTATIONS, Overlays, RunConfig
from .widgets import ElidedLabel, ErrorBanner, FacePanel, LiveView, NoticeBanner, WrapRow
from .widgets.plot import ThrottledText

__all__ = ["MainWindow", "backend_choices", "detector_choices", "rotation_text", "app_settings", "gui_message",
           "saved_text", "LeftToRightButton",
           "first_run_size", "open_keys", "key_hint", "contrast_ratio", "rec_color", "REC_COLORS",
           "APP_TITLE", "OUTPUT_ERRORS", "REMEMBERED", "DEFAULT_SIZE", "VIEW_HELP"]

log = logging.getLogger(__name__)

#: the open dialog's filter: every suffix the pipeline reads (facecycle.files.VIDEO_SUFFIXES, the one list)
VIDEO_FILTER = "Videos (" + " ".join(f"*{x}" for x in VIDEO_SUFFIXES) + ");;All files (*)"


APP_TITLE = "FaceCycle RT"

#: where the window remembers the user's choices: ``QSettings("FaceCycleRT", "app")``, on Linux
#: ``~/.config/FaceCycleRT/app.conf`` (``$XDG_CONFIG_HOME`` if set), on macOS
#: ``~/Library/Preferences/com.facecyclert.app.plist``, on Windows the registry key
#: ``HKEY_CURRENT_USER\Software\FaceCycleRT\app``; docs/app.md says how to reset them
SETTINGS_ORGANIZATION, SETTINGS_APPLICATION = "FaceCycleRT", "app"

#: what :meth:`MainWindow.restore_settings` can restore besides the folders (the names its ``skip`` takes)
REMEMBERED = ("overlays", "backend", "detector", "rotate", "realtime", "geometry")

#: how the run's outputs (realtime.outputs) word an output that could not be opened, written or finished, and the
#: session an end whose files could not be finished (ui.session)
OUTPUT_ERRORS = OUTPUT_FAILED + (FILES_NOT_FINISHED,)

#: the Open file… shortcut, in Qt's portable form: Ctrl is the Command key (⌘) on macOS, and the texts shown to the
#: user write it as the platform does (:func:`open_keys`)
OPEN_SHORTCUT = "Ctrl+O"

#: the "● REC" label's colour: the red for light backgrounds (8.3:1 on white), the one for dark ones (5.6:1 on the
#: #323232 of macOS's and Windows 11's dark mode); no one red reaches WCAG's 4.5:1 on both (:func:`rec_color`)
REC_COLORS = ("#a1001a", "#ff8a80")

#: the window's size where nothing else says one (automation always; an interactive first run: at most, see
#: :func:`first_run_size`)
DEFAULT_SIZE = (1180, 640)

#: the live view's accessible description after the run's state and any error (:meth:`MainWindow._describe_view`)
VIEW_HELP = "the analysed video; Space starts or pauses, Esc stops, F1 lists the keys"

#: the button texts of the two outputs, off and on (on: what a click does then)
RECORD_TEXT = ("● &Record…", "■ Stop &REC")
CSV_TEXT = ("Export &CSV…", "■ Stop &CSV")


def rotation_text(degrees: int) -> str:
    """The Rotate box's text of a turn: "0°", "180°"."""
    return f"{degrees}°"


def note_message(name: str, value: Any) -> Optional[str]:
    """The notice banner's plain words for a run's note (``ui.pipeline_adapter.NOTES``) that only says, without an
    action: ``dark_faces`` and ``baseline_cap``; None for any other note, or one without its numbers (the orientation
    hint, which has an action, is the window's own)."""
    if not isinstance(value, dict):
        return None
    if name == "dark_faces":
        first = value.get("first_frame")
        when = f" (from frame {first})" if isinstance(first, int) and not isinstance(first, bool) and first > 0 else ""
        try:  # the faces as the panel names them (the run lists the first ones as they go: dark_faces.tracks)
            faces = [int(t["face_id"]) for t in value.get("tracks") or []]
        except (KeyError, TypeError, ValueError):
            faces = []
        if faces:
            ids = [f"#{f}" for f in faces[:4]]
            who = (f"face {ids[0]} is" if len(faces) == 1
                   else f"faces {', '.join(ids[:-1])} and {ids[-1]} are" if len(faces) <= 4
                   else f"faces {', '.join(ids)} and {len(faces) - 4} more are")
            return (f"The picture is very dark{when}: {who} brightened before {'its' if len(faces) == 1 else 'their'} "
                    "expression is read. More light gives better readings.")
        return (f"The picture is very dark{when}: faces are brightened before their expression is read. "
                "More light gives better readings.")
    if name == "baseline_cap":
        try:
            count = int(value["tracks_at_cap"])
            faces = [int(f) for f in value.get("faces") or []]
        except (KeyError, TypeError, ValueError):
            log.info("a baseline note without its numbers: %r", value)
            return None
        if count < 1:
            return None
        if faces:  # named as the panel names them
            ids = [f"#{f}" for f in faces]
            who = (f"Face {ids[0]}" if len(ids) == 1
                   else f"Faces {', '.join(ids[:-1])} and {ids[-1]}")
        else:  # gone before the note was read: the count alone
            who = "A face" if count == 1 else f"{count} faces"
        one = len(faces) == 1 or (not faces and count == 1)
        its, face = ("its", "a face") if one else ("their", "faces")
        return (f"{who} never looked neutral: {its} values relative to {'itself' if one else 'themselves'} (the CSV's "
                f"rel_* columns) are measured against a fixed rest. Expected for {face} expressive throughout; for "
                f"{face} at rest, glasses, a hand, a shadow or dim light may be the cause.")
    return None


def app_settings() -> QSettings:
    """The app's settings store (``QSettings("FaceCycleRT", "app")``; see :data:`SETTINGS_ORGANIZATION`)."""
    return QSettings(SETTINGS_ORGANIZATION, SETTINGS_APPLICATION)


#: an image folder's advice for the command line (realtime.sources.images), which a window user cannot follow
_CLI_FOLDER_ADVICE = re.compile(r"give them as inputs \(.*\), or the folder to `facecycle batch`, which searches it")


def first_run_size(screen: Optional[QScreen] = None) -> Tuple[int, int]:
    """The window's size on a first run (no size remembered): :data:`DEFAULT_SIZE`, at most 95 % of the width and
    90 % of the height of the screen's available area (``screen``, else the primary one). A fixed 1180x640 was
    larger than a 1366x768 laptop screen at 150 % (911x512 logical pixels)."""
    screen = screen or QGuiApplication.primaryScreen()
    w, h = DEFAULT_SIZE
    if screen is None:
        return w, h
    avail = screen.availableGeometry()
    return min(w, int(avail.width() * 0.95)), min(h, int(avail.height() * 0.90))


def open_keys() -> str:
    """The Open file… shortcut as the platform writes it: "Ctrl+O", "⌘O" on macOS."""
    return QKeySequence(OPEN_SHORTCUT).toString(QKeySequence.SequenceFormat.NativeText)


def key_hint(*keys: str) -> str:
    """A tooltip's keys in brackets, " (Ctrl+O, Alt+O)", leaving out the empty ones: a mnemonic is "" where the
    platform has none (macOS), and with no key left the hint is "" (not " ()")."""
    keys = tuple(k for k in keys if k)
    return f" ({', '.join(keys)})" if keys else ""


def _luminance(color: QColor) -> float:
    """WCAG 2 relative luminance of an sRGB colour."""
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast_ratio(a: Union[QColor, str], b: Union[QColor, str]) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21)."""
    la, lb = sorted((_luminance(QColor(a)), _luminance(QColor(b))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def rec_color(palette: QPalette) -> str:
    """The "● REC" label's colour on ``palette``'s window background: the red of :data:`REC_COLORS` with the more
    contrast, or the palette's own text colour where neither red reaches 4.5:1 (a mid-grey theme)."""
    background = palette.color(QPalette.ColorRole.Window)
    best = max(REC_COLORS, key=lambda c: contrast_ratio(c, background))
    if contrast_ratio(best, background) >= 4.5:
        return best
    return palette.color(QPalette.ColorRole.WindowText).name()


def gui_message(message: str) -> str:
    """``message`` with command-line advice replaced by what the window's user can do (a folder of videos:
    open one of them, rather than "give them as inputs (dir/*)")."""
    return _CLI_FOLDER_ADVICE.sub(f"open one of them with Open file… ({open_keys()}) or drop it on the window; "
                                  "`facecycle batch` on the command line analyses a whole folder", message)


def saved_text(files: Sequence[str]) -> str:
    """The files a run saved, for the state line: ``"a.csv, a.mp4 in /out"`` (one folder) or their full paths."""
    paths = [Path(os.path.abspath(f)) for f in files]
    folders = {str(p.parent) for p in paths}
    if len(folders) == 1:
        return f"{', '.join(p.name for p in paths)} in {folders.pop()}"
    return ", ".join(str(p) for p in paths)


def _existing_dir(value: Any) -> Optional[str]:
    """``value`` where it names a folder that exists (a stored folder may have been deleted since), else None."""
    return value if isinstance(value, str) and value and os.path.isdir(value) else None


def _stored_bool(value: Any) -> Optional[bool]:
    """A stored true/false (a bool, or the text an INI file holds); None for anything else (ignored)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
        return value.strip().lower() in ("true", "1")
    return None


def _cwd() -> Path:
    """The current folder, or the home folder where it no longer exists."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        return Path.home()


def _model_name(model_dir: Optional[str]) -> str:
    return "default" if model_dir is None else (Path(model_dir).name or str(model_dir))


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


class LeftToRightButton(QPushButton):
    """A push button whose (English) label is laid out left to right in a right-to-left layout too: there "Open
    file…" read "…Open file" and "● Record…" "…Record ●" (the Unicode bidi algorithm puts a trailing "…" at a
    right-to-left line's start; a painter lays text out in the application's direction, whatever the widget's).
    The button itself, and its place in the row, still follow the layout."""

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt's name. QPushButton's own, but for the text
        p = QStylePainter(self)
        p.setLayoutDirection(Qt.LayoutDirection.LeftToRight)
        option = QStyleOptionButton()
        self.initStyleOption(option)
        p.drawControl(QStyle.ControlElement.CE_PushButton, option)
        p.end()


class MainWindow(QMainWindow):
    """The FaceCycle RT window.

    Everything the user can do is also a method (``open_source``, ``start``,
    ``pause``, ``stop``, ``set_record_path``, ``set_csv_path``, ``set_overlays``),
    so tests and automation never need a dialog. Keyboard: Ctrl+O open, Space
    start / pause (in the view or the side panel), Esc stop, Ctrl+R record,
    Ctrl+E export CSV, Ctrl+Q / Ctrl+W quit; Ctrl is ⌘ on macOS, and the texts
    shown name the keys as the platform writes them (docs/app.md).

    Args:
        settings: where the window remembers the user's choices (:func:`app_settings`); None remembers nothing
            beyond the window's life (tests, automation). :meth:`restore_settings` applies them.

    Signals:
        runFinished(str): the pipeline ended ("end of input", "stopped", "error").
        outputFailed(str): a recording or CSV could not be opened, written or finished (the message).
    """

    runFinished = pyqtSignal(str)
    outputFailed = pyqtSignal(str)
    panel_interval = 1 / 15  # seconds between side-panel repaints

    def __init__(self, model_dir: Optional[str] = None, backend: str = "auto", detector: str = "centerface",
                 realtime: bool = False, overlays: Overlays = Overlays(), parent: Optional[QWidget] = None,
                 detector_model: Optional[str] = None, neutral_reference: bool = True,
                 settings: Optional[QSettings] = None, rotate: int = 0) -> None:
        super().__init__(parent)
        self.detector_model = detector_model
        self._model_detector = detector  # the detector that detector_model is for (not the others in the list)
        self._run_desc = ""  # "clip.mp4  [backend, detector]" of the run going on
        self.neutral_reference = neutral_reference
        self.settings = settings
        self._last_dir = _existing_dir(settings.value("last_dir")) if settings is not None else None
        self._last_save_dir = _existing_dir(settings.value("last_save_dir")) if settings is not None else None
        self.setWindowTitle(APP_TITLE)
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
        self.notices: List[str] = []  # the notices given (shown or queued), as errors lists the errors

        self._build_ui(backend, detector, realtime)
        self.set_rotate(rotate)
        self._build_actions()
        self.bridge.frameReady.connect(self._on_frame)
        self.bridge.errorRaised.connect(self._on_error)
        self.bridge.started.connect(self._on_started)
        self.bridge.finished.connect(self._on_finished)
        self.bridge.noted.connect(self._on_note)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(250)
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start()
        self._update_buttons()
        self._update_status()  # the status bar's accessible names, with their numbers, from the start

    # ------------------------------------------------------------------ layout
    def _build_ui(self, backend: str, detector: str, realtime: bool) -> None:
        central = QWidget(self)
        root = QVBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 2)
        root.setSpacing(4)

        # row 1: source, model, transport
        row1 = QHBoxLayout()
        self.camera_spin = QSpinBox(self)
        self.camera_spin.setRange(0, 63)
        self.camera_spin.setPrefix("camera ")
        # Western digits whatever the locale, as every other number of the window (f-strings): under an Arabic
        # QLocale it read "camera ٠" beside "display 30 fps"
        self.camera_spin.setLocale(QLocale.c())
        # the buttons' labels left to right in a right-to-left layout too (LeftToRightButton: "…Open file" there)
        self.camera_button = LeftToRightButton("Use c&amera", self)
        self.camera_button.clicked.connect(lambda: self.open_source(self.camera_spin.value(), start=True))
        self.open_button = LeftToRightButton("&Open file…", self)
        self.open_button.clicked.connect(self._choose_file)
        self.model_button = LeftToRightButton("&Model…", self)
        self.model_button.clicked.connect(self._choose_model)
        # a long name is elided in the middle ("a_long…name.mp4"): it never widens the window, its tooltip is whole
        self.source_label = ElidedLabel("no source", self, mode=Qt.TextElideMode.ElideMiddle)
        self.source_label.setMinimumWidth(80)
        self.start_button = LeftToRightButton("▶ &Start", self)
        self.start_button.clicked.connect(self.start)
        self.pause_button = LeftToRightButton("❚❚ &Pause", self)
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._on_pause_toggled)
        self.stop_button = LeftToRightButton("■ S&top", self)
        self.stop_button.clicked.connect(self.stop)
        # Enter clicks a focused button, as Space does (Qt gives that to dialogs' buttons only). Outside a QDialog
        # an auto-default button never becomes a default one: Enter elsewhere (the view, a combo) clicks nothing
        for b in (self.camera_button, self.open_button, self.model_button, self.start_button, self.pause_button,
                  self.stop_button):
            b.setAutoDefault(True)
        # the source's controls and the transport's wrap as rows 2 and 3 do: at a 2x desktop font the row in one
        # line made the window 1038 px wide at least, more than a 911-px screen (1366 px at 150 %)
        self.source_row = WrapRow([self.camera_spin, self.camera_button, self.open_button, self.model_button], self,
                                  spacing=root.spacing())  # the rows' gap
        self.transport_row = WrapRow([self.start_button, self.pause_button, self.stop_button], self,
                                     spacing=root.spacing())
        row1.addWidget(self.source_row)
        row1.addWidget(self.source_label, 1)
        row1.addWidget(self.transport_row)
        root.addLayout(row1)

        # row 2: engine choices, recording, CSV
        row2 = QHBoxLayout()
        self.backend_combo = QComboBox(self)
        self.backend_combo.addItems(backend_choices())
        self._select(self.backend_combo, backend)
        self.detector_combo = QComboBox(self)
        self.detector_combo.addItems(detector_choices(detector if self.detector_model else None))
        self._select(self.detector_combo, detector)
        self.backend_label = QLabel("&backend", self)
        self.backend_label.setBuddy(self.backend_combo)  # Alt+B focuses the combo; a screen reader names it
        self.detector_label = QLabel("&detector", self)
        self.detector_label.setBuddy(self.detector_combo)
        # how far every frame is turned clockwise before it is read (the Analyzer's rotate, `facecycle process
        # --rotate`); no letter of "rotate" is free (Record, Open, Stop, camera, Pose): Alt+W, of "clockwise"
        self.rotate_combo = QComboBox(self)
        for deg in ROTATIONS:
            self.rotate_combo.addItem(rotation_text(deg), deg)
        self.rotate_label = QLabel("rotate clock&wise", self)
        self.rotate_label.setBuddy(self.rotate_combo)
        self.realtime_check = QCheckBox("&file at its own pace", self)
        self.realtime_check.setChecked(realtime)
        self.record_button = LeftToRightButton(RECORD_TEXT[0], self)
        self.record_button.setCheckable(True)
        self.record_button.clicked.connect(self._on_record_clicked)
        self.csv_button = LeftToRightButton(CSV_TEXT[0], self)
        self.csv_button.setCheckable(True)
        self.csv_button.clicked.connect(self._on_csv_clicked)
        # on, they say what a click does ("■ Stop REC", like the status bar's "● REC") in white on red, not in a
        # faint shade of grey
        for b, texts in ((self.record_button, RECORD_TEXT), (self.csv_button, CSV_TEXT)):
            b.setAutoDefault(True)  # before the width is measured: the style may reserve room for it
            b.setObjectName("outputButton")
            b.setStyleSheet("QPushButton#outputButton:checked { background-color: #b3261e; color: white; }")
            b.toggled.connect(lambda _on: self._update_output_buttons())
            b.ensurePolished()
            width = 0
            for t in texts:  # room for both texts: the row does not jump when the button is switched
                b.setText(t)
                width = max(width, b.sizeHint().width())
            b.setText(texts[0])
            b.setMinimumWidth(width)
        pairs = []
        for label, combo in ((self.backend_label, self.backend_combo), (self.detector_label, self.detector_combo),
                             (self.rotate_label, self.rotate_combo)):
            pair = QWidget(self)  # a label sits close to its combo, and wraps with it
            pair_layout = QHBoxLayout(pair)
            pair_layout.setContentsMargins(0, 0, 0, 0)
            pair_layout.setSpacing(3)
            pair_layout.addWidget(label)
            pair_layout.addWidget(combo)
            pairs.append(pair)
        # the choices wrap onto a second line where the window is narrow (a 1.5x desktop font on a 911-px screen);
        # Record / Export CSV stay at the right
        self.choices_row = WrapRow([*pairs, self.realtime_check], self, spacing=root.spacing())  # the rows' gap
        row2.addWidget(self.choices_row)
        row2.addStretch(1)
        row2.addWidget(self.record_button)
        row2.addWidget(self.csv_button)
        root.addLayout(row2)

        # row 3: overlays
        row3 = QHBoxLayout()
        self.overlay_checks = {}
        for key, text, tip in (("boxes", "Bo&xes && IDs", "face boxes, landmarks and track IDs"),
                               ("pose", "Pos&e axes", "head-pose axes"),
                               ("emotions", "Emot&ion bars", "emotion bars and the intensity meter next to each face"),
                               ("neutral_thumb", "&Neutral thumbnail", "the neutral face next to each face"),
                               ("neutralized", "Ne&utralized view", "show the neutralized frame (neutral faces "
                                                                    "pasted back)")):
            cb = QCheckBox(text, self)
            cb.setChecked(bool(getattr(self.overlays, key)))
            cb.toggled.connect(self._on_overlay_toggled)
            cb.setToolTip(f"{tip}; applies from the next frame{key_hint(self._mnemonic(text))}")
            cb.setAccessibleName(text.replace("&&", "\0").replace("&", "").replace("\0", "&"))
            self.overlay_checks[key] = cb
        self.overlay_row = WrapRow(list(self.overlay_checks.values()), self, spacing=root.spacing())  # as above
        row3.addWidget(self.overlay_row)
        row3.addStretch(1)
        # the model in use, always in sight (the status bar has no room for it at the window's smallest width)
        self.model_label = ElidedLabel("", self, mode=Qt.TextElideMode.ElideMiddle, min_text="model: defa…")
        row3.addWidget(self.model_label)
        root.addLayout(row3)

        self.banner = ErrorBanner(self)
        self.banner.close_button.clicked.connect(self._describe_view)
        root.addWidget(self.banner)
        # advice about the run (the orientation hint), apart from the errors: neither hides the other
        self.notice_banner = NoticeBanner(self)
        self.notice_banner.close_button.clicked.connect(self._describe_view)
        self.notice_banner.action_button.clicked.connect(self._describe_view)  # the next notice, if one waits
        root.addWidget(self.notice_banner)

        self.live_view = LiveView(self)
        self.live_view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # initial focus: the view, not an input field
        self.live_view.set_placeholder(f"Open a video file ({open_keys()}), drop one here, or start a camera\n"
                                       "F1 lists the keyboard shortcuts")
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
        # long texts never widen the window (it grew to 2,227 px and could not be made smaller again) nor paint
        # over their neighbours ("● REC" lay on "display NN fps"): the labels that hold names are elided with "…"
        # down to a minimum the layout keeps for them, their whole text is their tooltip
        self.state_label = ElidedLabel("idle", self)
        self.state_label.setMinimumWidth(110)
        self.rec_label = ElidedLabel("", self, min_text="● REC …")
        self.rec_label.setObjectName("recLabel")
        self._rec_color = ""
        self._update_rec_color()  # and again when the palette changes (dark mode switched on or off)
        self.rec_label.hide()  # shown while a file is being written
        self.fps_label = QLabel("display – fps", self)
        self.pipe_label = QLabel("pipeline – fps", self)
        self.latency_label = QLabel("latency – ms", self)
        self.drops_label = QLabel("dropped 0", self)
        # their accessible names follow their numbers at most once a second (4 updates a second flooded a screen
        # reader), at once where a number comes or goes ("–"); a key of the text without its digits says that
        self._status_names = {w: ThrottledText(w.setAccessibleName, w)
                              for w in (self.fps_label, self.pipe_label, self.latency_label, self.drops_label)}
        sb.addWidget(self.state_label, 1)
        for w in (self.rec_label, self.fps_label, self.pipe_label, self.latency_label, self.drops_label):
            sb.addPermanentWidget(w)
        self.setStatusBar(sb)
        self._update_model_label()
        self.resize(*first_run_size(self.screen()))

    def _build_actions(self) -> None:
        """Keyboard shortcuts (QActions of the window), the controls' tooltips naming them, accessible names,
        and the tab order (the visual one: row by row, left to right, then the view and the side panel)."""
        def action(text: str, keys: Sequence[str], slot: Callable[[], None],
                   context: Qt.ShortcutContext = Qt.ShortcutContext.WindowShortcut,
                   widgets: Sequence[QWidget] = ()) -> QAction:
            a = QAction(text, self)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setShortcutContext(context)
            a.triggered.connect(lambda _checked=False: slot())
            for w in widgets or (self,):
                w.addAction(a)
            return a

        self.open_action = action("Open file…", [OPEN_SHORTCUT], self._choose_file)
        # Space in the view or the side panel: a focused button or check box keeps Space for itself
        self.play_action = action("Start / pause", ["Space"], self.toggle_play,
                                  Qt.ShortcutContext.WidgetWithChildrenShortcut, (self.live_view, self.panel))
        self.stop_action = action("Stop", ["Esc"], self.stop)
        self.record_action = action("Record…", ["Ctrl+R"], self.record_button.click)
        self.csv_action = action("Export CSV…", ["Ctrl+E"], self.csv_button.click)
        self.quit_action = action("Quit", ["Ctrl+Q", "Ctrl+W"], self.close)
        # the window has no menu bar: F1 lists the actions and their keys (they were in the tooltips only)
        self.shortcuts_action = action("Keyboard shortcuts", ["F1"], self.show_shortcuts)
        self.shortcuts_box: Optional[QMessageBox] = None

        keys, mn = self._keys, self._mnemonic  # a mnemonic is "" on macOS: key_hint leaves it out
        self.camera_spin.setToolTip("the camera to use (OpenCV device number)")
        self.camera_button.setToolTip(f"start the camera chosen on the left{key_hint(mn(self.camera_button))}")
        self.open_button.setToolTip("open a video file, stream or image folder and start it"
                                    + key_hint(keys(self.open_action), mn(self.open_button)))
        self.model_button.setToolTip("choose an exported model directory; applies at the next start"
                                     + key_hint(mn(self.model_button)))
        self.pause_button.setToolTip("pause / resume" + key_hint(f"{keys(self.play_action)} in the view",
                                                                 mn(self.pause_button)))
        self.stop_button.setToolTip("stop the run; its files are finished"
                                    + key_hint(keys(self.stop_action), mn(self.stop_button)))
        self.backend_combo.setToolTip(f"inference backend; applies at the next start{key_hint(mn('&b'))}")
        self.detector_combo.setToolTip(f"face detector; applies at the next start{key_hint(mn('&d'))}")
        self.rotate_combo.setToolTip("turn every frame this far clockwise before it is read (a video without its "
                                     "rotation tag, a camera mounted upside down, a person lying down); applies at "
                                     f"the next start{key_hint(mn(self.rotate_label))}")
        self.realtime_check.setToolTip("play files like a camera (late frames dropped) instead of as fast as "
                                       f"possible; applies at the next start{key_hint(mn(self.realtime_check))}")
        names = ((self.camera_spin, "Camera number"), (self.camera_button, "Use camera"),
                 (self.open_button, "Open file"), (self.model_button, "Choose model"), (self.pause_button, "Pause"),
                 (self.stop_button, "Stop"), (self.backend_combo, "Backend"), (self.detector_combo, "Detector"),
                 (self.rotate_combo, "Rotate clockwise"), (self.realtime_check, "File at its own pace"),
                 (self.live_view, "Live view"), (self.panel, "Face panel"))
        for w, name in names:
            w.setAccessibleName(name)
        self._describe_view()

        order = [self.camera_spin, self.camera_button, self.open_button, self.model_button, self.start_button,
                 self.pause_button, self.stop_button, self.backend_combo, self.detector_combo, self.rotate_combo,
                 self.realtime_check, self.record_button, self.csv_button, *self.overlay_checks.values(),
                 self.banner.close_button, self.notice_banner.action_button, self.notice_banner.close_button,
                 self.live_view, self.panel]
        for a, b in zip(order[:-1], order[1:], strict=True):
            QWidget.setTabOrder(a, b)
        self._update_output_buttons()

    def _update_rec_color(self) -> None:
        """The "● REC" label's red, readable on the window's background (:func:`rec_color`)."""
        color = rec_color(self.palette())
        if color != self._rec_color:  # (a style sheet set again would be a style change for nothing)
            self._rec_color = color
            self.rec_label.setStyleSheet(f"#recLabel {{ color: {color}; font-weight: bold; }}")

    def changeEvent(self, event: QEvent) -> None:
        if (event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)
                and hasattr(self, "_rec_color")):  # (not before the status bar is built)
            self._update_rec_color()  # dark mode switched on or off while the window is open
        super().changeEvent(event)

    def shortcut_actions(self) -> List[QAction]:
        """The window's actions with keys, in the order they were made: the window's own and Space's (an action of
        the view and the side panel)."""
        acts = [a for a in self.actions() if a.shortcuts()]
        return acts[:1] + [self.play_action] + acts[1:] if self.play_action not in acts else acts

    def shortcuts_text(self) -> str:
        """What F1 shows: one line per action, its keys as the platform writes them and its text."""
        lines = []
        for a in self.shortcut_actions():
            where = " (in the view or the side panel)" if a is self.play_action else ""
            lines.append(f"{self._keys(a)}: {a.text()}{where}")
        if self._mnemonic("&x"):  # (none on macOS)
            lines.append(f"{self._mnemonic('&x').replace('X', 'letter')}: the control whose letter is underlined")
        lines.append("Tab / Shift+Tab: the next / previous control; Enter or Space clicks a focused button")
        return "\n".join(lines)

    def show_shortcuts(self) -> None:
        """Show the keyboard shortcuts (F1) in a small message box; F1 again while it is open brings it up."""
        box = self.shortcuts_box
        if box is None:
            box = self.shortcuts_box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", "",
                                                   QMessageBox.StandardButton.Close, self)
            box.setTextFormat(Qt.TextFormat.PlainText)
            box.setAccessibleName("Keyboard shortcuts")
        box.setText(self.shortcuts_text())
        box.show()
        box.raise_()
        box.activateWindow()

    @staticmethod
    def _keys(action: QAction) -> str:
        """An action's shortcuts as the platform writes them ("Ctrl+O", "⌘O" on macOS)."""
        return ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())

    @staticmethod
    def _mnemonic(widget_or_text: Union[QWidget, str]) -> str:
        """The Alt+letter of a text's mnemonic ("&Open" -> "Alt+O"); "" where the platform has none (macOS, where
        Qt turns mnemonics off): :func:`key_hint` leaves it out of the tooltips."""
        text = widget_or_text if isinstance(widget_or_text, str) else widget_or_text.text()
        return QKeySequence.mnemonic(text).toString(QKeySequence.SequenceFormat.NativeText)

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
                         realtime=self.realtime_check.isChecked(), neutral_reference=self.neutral_reference,
                         rotate=self.rotate)

    @property
    def rotate(self) -> int:
        """The Rotate box's turn, in degrees clockwise (:data:`ui.settings.ROTATIONS`)."""
        return int(self.rotate_combo.currentData())

    def set_rotate(self, degrees: int) -> None:
        """Set the Rotate box (applies at the next start, as the backend and detector do: the run's frames are
        turned from its first one, and its tracks, files and sidecar are of one orientation).

        Raises:
            ValueError: ``degrees`` is not one of :data:`ui.settings.ROTATIONS`."""
        i = self.rotate_combo.findData(int(degrees))
        if isinstance(degrees, bool) or i < 0:
            raise ValueError(f"rotate must be one of {', '.join(map(str, ROTATIONS))}, not {degrees!r}")
        self.rotate_combo.setCurrentIndex(i)

    def open_source(self, source: Union[str, int, Path], start: bool = False) -> None:
        """Select a video file / folder / stream (str) or a camera index (int); optionally start it."""
        self.source = source if isinstance(source, int) else str(source)
        label = f"camera {source}" if isinstance(source, int) else (Path(str(source)).name or str(source))
        self.source_label.setText(label)
        self.source_label.setToolTip(str(source))
        self.setWindowTitle(f"{label} — {APP_TITLE}")
        if start:
            self.start()
        self._update_buttons()

    def start(self) -> None:
        """Start (or restart) the pipeline on the current source. Never blocks: a running
        session is asked to stop and the new one starts when it has finished."""
        if self.source is None:
            self.show_error(f"no source: open a video file ({self._keys(self.open_action)}), drop one on the window, "
                            "or use a camera")
            return
        if self.running:
            self._pending_start = True
            self.session.stop()
            return
        cfg = self.run_config()
        self.banner.hide()
        self.notice_banner.clear()  # an earlier run's advice, shown or waiting: this run says its own
        self.statusBar().clearMessage()  # an earlier run's message would hide this one's state for seconds
        self.live_view.reset_counters()
        self.panel.clear()
        self._latencies.clear()
        self.pause_button.setChecked(False)
        self.session = AnalysisSession(cfg, self.bridge, self.overlays,
                                       video_path=self.record_path if self.record_button.isChecked() else None,
                                       csv_path=self.csv_path if self.csv_button.isChecked() else None,
                                       view_size=lambda: self.live_view.target_size)
        self.sessions_run += 1
        self._run_desc = ""
        self._set_state(f"starting {cfg.source_label} …")
        self.state_label.setToolTip(f"starting {cfg.source_label}")
        self.session.start()
        self._update_buttons()

    def toggle_play(self) -> None:
        """Space: start the open source when nothing runs, else pause or resume the run."""
        if self._closing:
            return
        if self.running:
            self.pause(not self.pause_button.isChecked())
        else:
            self.start()

    def pause(self, paused: bool = True) -> None:
        self.pause_button.setChecked(paused)

    def stop(self) -> None:
        """Ask the pipeline to stop; files are finished by the worker, ``runFinished`` follows."""
        self._pending_start = False
        if self.session is not None and self.session.is_alive():
            self.session.stop()
            self._set_state("stopping …")

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
        self._describe_view()

    def _set_state(self, text: str) -> None:
        """The state line (left of the status bar), mirrored into the view's accessible description."""
        self.state_label.setText(text)
        self._describe_view()

    def _describe_view(self) -> None:
        """The live view's accessible description: the run's state and the error shown, then its keys. The view
        has the focus most of the time, and a screen reader is told when its description changes: an error or
        the end of a run was otherwise only pixels (PyQt6 has no ``QAccessible.updateAccessibility`` to announce
        them)."""
        parts = [self.state_label.text()]
        if not self.banner.isHidden():
            parts.append(f"error: {self.banner.label.text()}")
        if not self.notice_banner.isHidden():
            parts.append(f"notice: {self.notice_banner.label.text()}")
        text = "; ".join([p for p in parts if p] + [VIEW_HELP])
        if text != self.live_view.accessibleDescription():  # each change is announced: only real ones
            self.live_view.setAccessibleDescription(text)

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
            "notices": list(self.notices),
        }

    # ------------------------------------------------------------------ settings
    def restore_settings(self, skip: Collection[str] = ()) -> bool:
        """Apply the choices :attr:`settings` remembers: overlays, backend, detector, rotate, "file at its own pace" and
        the window's geometry, except those named in ``skip`` (the ones given on the command line, from
        :data:`REMEMBERED`). A stored value that no longer fits (a backend or detector this window does not offer,
        anything but true/false for a check box, a geometry Qt cannot read) is ignored. Returns whether a
        geometry was restored."""
        s = self.settings
        if s is None:
            return False
        if "overlays" not in skip:
            stored = {k: _stored_bool(s.value(f"overlays/{k}")) for k in self.overlay_checks}
            self.set_overlays(Overlays(**{k: getattr(self.overlays, k) if v is None else v
                                          for k, v in stored.items()}))
        for name, combo in (("backend", self.backend_combo), ("detector", self.detector_combo)):
            value = s.value(name)
            if name not in skip and isinstance(value, str) and combo.findText(value) >= 0:
                combo.setCurrentIndex(combo.findText(value))
            elif value is not None and name not in skip:
                log.info("settings: %s %r is not offered here; ignored", name, value)
        rotate = s.value("rotate")
        if "rotate" not in skip and rotate is not None:
            # an INI file holds it as text; anything but a turn of ROTATIONS is ignored
            turn = int(rotate) if isinstance(rotate, int) or (isinstance(rotate, str) and rotate.isdigit()) else None
            if turn in ROTATIONS and not isinstance(rotate, bool):
                self.set_rotate(turn)
            else:
                log.info("settings: rotate %r is not a turn offered here; ignored", rotate)
        realtime = _stored_bool(s.value("realtime"))
        if "realtime" not in skip and realtime is not None:
            self.realtime_check.setChecked(realtime)
        geometry = s.value("geometry")
        if "geometry" not in skip and isinstance(geometry, QByteArray) and not geometry.isEmpty():
            return bool(self.restoreGeometry(geometry))
        return False

    def save_settings(self) -> None:
        """Remember the overlays, backend, detector, rotate, "file at its own pace", the window's geometry and the last
        folders in :attr:`settings` (done when the window closes; the folders when they are chosen)."""
        s = self.settings
        if s is None:
            return
        for k, cb in self.overlay_checks.items():
            s.setValue(f"overlays/{k}", cb.isChecked())
        s.setValue("backend", self.backend_combo.currentText())
        s.setValue("detector", self.detector_combo.currentText())
        s.setValue("rotate", self.rotate)
        s.setValue("realtime", self.realtime_check.isChecked())
        s.setValue("geometry", self.saveGeometry())
        for key, value in (("last_dir", self._last_dir), ("last_save_dir", self._last_save_dir)):
            if value:
                s.setValue(key, value)
        s.sync()

    def _remember(self, key: str, value: str) -> None:
        if self.settings is not None:
            self.settings.setValue(key, value)
            self.settings.sync()

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
            message = gui_message(message)
            self.show_error(message)
            # an output that could not be opened or went wrong is off: its button says so
            if message.startswith(VIDEO_FAILED):
                self.record_path = None
                self.record_button.setChecked(False)
            elif message.startswith(CSV_FAILED):
                self.csv_path = None
                self.csv_button.setChecked(False)
            if message.startswith(OUTPUT_ERRORS):
                self.outputFailed.emit(message)

    def _on_started(self, generation: int, info: dict) -> None:
        if not self._current(generation):
            return
        src = self.session.config.source_label if self.session else ""
        b = info.get("backend")
        backend = b.get("backend", "") if isinstance(b, dict) else str(b or "")
        d = info.get("detector")
        det = d.get("detector", "") if isinstance(d, dict) else str(d or "")
        # a turned run says so: its faces and files are of the turned frames
        turn = f", rotated {rotation_text(int(info['rotate']))}" if info.get("rotate") else ""
        self._run_desc = f"{Path(str(src)).name if src != '' else ''}  [{backend}, {det}{turn}]"
        self._set_state(f"running: {self._run_desc}")
        self.state_label.setToolTip(f"running: {src}  [{backend}, {det}{turn}]")
        self.panel.stills = (info.get("input") or {}).get("reading") == "stills"
        self.live_view.set_placeholder("waiting for the first frame …")
        self._update_buttons()

    def _on_note(self, generation: int, name: str, value: dict) -> None:
        """A note the run found out about its input (the session reports each once per run;
        ``ui.pipeline_adapter.NOTES``), shown in the notice banner: the orientation hint first (it has an action, and
        a turned face's other notes are of misread faces), the others queued behind what is shown."""
        if not self._current(generation):
            return
        if name == "orientation":
            self._note_orientation(value)
            return
        message = note_message(name, value)
        if message is None:
            return
        self.notices.append(message)
        log.info("shown in the window: %s", message)
        self.notice_banner.queue_notice(message)  # says only: ✕ dismisses it (and shows the next)
        self._describe_view()

    def _note_orientation(self, value: dict) -> None:
        """Most of the first faces are turned by a right angle: the notice offers the Rotate that reads them
        upright."""
        try:
            fix, turned = int(value["rotate_upright"]), int(value["faces_turned_deg"])
        except (KeyError, TypeError, ValueError):
            log.info("an orientation note without its numbers: %r", value)
            return
        if fix not in ROTATIONS:
            return
        turns = {90: "turned 90° clockwise", 180: "upside down", 270: "turned 90° anti-clockwise"}
        share, faces = value.get("share"), value.get("faces")
        most = (f"{round(float(share) * int(faces))} of the first {int(faces)} faces"
                if isinstance(share, (int, float)) and isinstance(faces, int) else "Most faces")
        message = (f"{most} are {turns.get(turned, 'turned')} (the model reads turned faces wrongly, and their head "
                   "pose with them): "
                   f"Rotate clockwise {rotation_text(fix)} reads them upright.")
        self.notices.append(message)
        log.info("shown in the window: %s", message)
        self.notice_banner.show_notice(  # shown at once: a notice already shown waits behind it
            message, f"Rotate {rotation_text(fix)} and restart", lambda: self._apply_rotate(fix),
            f"Rotate {fix} degrees and restart",
            f"set Rotate clockwise to {rotation_text(fix)} and start the open source again with it (its files are "
            "finished first, as Restart does); Tab to this button, then Enter or Space")
        self._describe_view()

    def _apply_rotate(self, degrees: int) -> None:
        """The orientation notice's button: Rotate set, the source (re)started with it."""
        self.set_rotate(degrees)
        self._describe_view()
        if self.source is not None and not self._closing:
            self.start()

    def _on_finished(self, generation: int, reason: str) -> None:
        if not self._current(generation):
            return
        self.finished_generation = generation
        self._on_frame()  # a last frame still in the slot (a single picture's only one) is shown, not dropped
        self.panel.add_samples(self.bridge.take_samples())
        self.panel.advance()
        s = self.session
        previous = ""
        if s is not None:
            s.join(5.0)  # the worker has already reported its last line: this returns at once
            readings = [r for r in (csv_reading(f) for f in s.finished_files if f.endswith(".csv")) if r]
            text = (f"{reason}" + (f" — saved {saved_text(s.finished_files)}" if s.finished_files else "")
                    + "".join(f"; {r}" for r in readings))
            self._set_state(text)
            self.state_label.setToolTip("\n".join([reason, *(os.path.abspath(f) for f in s.finished_files)]))
            if s.finished_files and self._pending_start:  # the next file starts at once: said for a while
                previous = f"previous run: {text}"
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
        self._flush_descriptions()  # the run's last numbers, not those of up to a second before
        self._update_buttons()
        self.runFinished.emit(reason)
        if self._closing:
            self.close()
        elif self._pending_start:
            self._pending_start = False
            self.start()  # clears the status bar's message: the previous run's is shown after it
            if previous:
                self.statusBar().showMessage(previous, 8000)

    def _flush_descriptions(self) -> None:
        """Hand the status labels' names and the panel's descriptions, held back for up to a second
        (:class:`~ui.widgets.plot.ThrottledText`), on now: a run paused or ended."""
        for names in self._status_names.values():
            names.flush()
        self.panel.flush_descriptions()

    def _update_status(self) -> None:
        st = self.stats()
        alive = self.session is not None and self.session.is_alive()
        # paused: no frame rate to show ("–"); the rates leave a pause out (24 fps read 7.9 after one, 8.0 at the
        # end of a run paused for a while); ended: the run's own average
        paused = alive and self.session.paused
        self.fps_label.setText(f"display {_rate(0.0 if paused else self.live_view.fps())} fps")
        rate = 0.0 if paused else self.session.recent_fps() if alive else st["pipeline_fps"]
        self.pipe_label.setText(f"pipeline {_rate(rate)} fps")
        lat = st["latency_ms_p50"]
        self.latency_label.setText(f"latency {lat:.0f} ms" if lat is not None else "latency – ms")
        display, source = st["display_drops"], st["source_drops"]
        # the split only where there is one to tell: "dropped 0 (display 0, source 0)" took 190 px of a status bar
        # that has 700 at the window's smallest
        self.drops_label.setText(f"dropped {display + source}"
                                 + (f" (display {display}, source {source})" if display + source else ""))
        self.drops_label.setToolTip(f"frames not shown: {display} by the display (the window behind the pipeline), "
                                    f"{source} by the source (a live source ahead of the pipeline)")
        # a screen reader reads a QLabel's accessible name only: a fixed "Display rate" gave it no number. The
        # names are the texts (the drops with their split, which the text leaves out at 0)
        for label, name in ((self.fps_label, self.fps_label.text()), (self.pipe_label, self.pipe_label.text()),
                            (self.latency_label, self.latency_label.text()),
                            (self.drops_label, f"dropped {display + source} frames: {display} by the display, "
                                               f"{source} by the source")):
            self._status_names[label].set(name, re.sub(r"[\d.]", "", name))  # each change is announced: few
        s = self.session
        parts, tips = [], []
        out = s.outputs if s is not None and s.is_alive() else None
        if out is not None:
            video, csv = out.video, out.csv  # read once: the worker may switch them meanwhile
            for prefix, sink, doing in (("● REC", video, "recording to"), ("CSV", csv, "writing the CSV to")):
                if sink is not None:
                    parts.append((prefix, Path(str(sink.path)).name))
                    tips.append(f"{doing} {os.path.abspath(str(sink.path))}")
        self.rec_label.set_parts(parts)  # the names elided ("sb_a_r…me.mp4") where the status bar is short of room
        self.rec_label.setToolTip("\n".join(tips))
        self.rec_label.setVisible(bool(parts))

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.setEnabled(self.source is not None)
        self.start_button.setText("↻ Re&start" if running else "▶ &Start")
        self.start_button.setAccessibleName("Restart" if running else "Start")
        keys = [self._mnemonic(self.start_button)]
        if not running:
            keys.insert(0, f"{self._keys(self.play_action)} in the view")
        self.start_button.setToolTip(f"{'restart' if running else 'start'} the open source{key_hint(*keys)}")
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self._update_output_buttons()
        self._update_model_label()

    def _update_output_buttons(self) -> None:
        """Record / Export CSV: their text, accessible name and tooltip say whether they are on, and where to."""
        if not hasattr(self, "record_action"):
            return
        for b, texts, action, off_name, on_name, off_tip, path in (
                (self.record_button, RECORD_TEXT, self.record_action, "Record video", "Stop recording",
                 "record the annotated view to a video file", self.record_path),
                (self.csv_button, CSV_TEXT, self.csv_action, "Export CSV", "Stop CSV export",
                 "write the per-frame CSV (one row per face per frame) and its .json summary", self.csv_path)):
            on = b.isChecked()
            b.setText(texts[on])
            b.setAccessibleName(on_name if on else off_name)
            where = f" to {path}" if on and path else ""
            b.setToolTip((f"on{where}: click to stop and finish the file" if on else off_tip)
                         + key_hint(self._keys(action), self._mnemonic(b)))

    def _update_model_label(self) -> None:
        """The status bar names the model in use (the shipped default or the chosen directory's name)."""
        s = self.session
        used = s.config.model_dir if s is not None and s.is_alive() else self.model_dir
        text = f"model: {_model_name(used)}"
        tip = f"model in use: {used or 'the shipped default (facecycle/assets/default)'}"
        if used != self.model_dir:
            text += f" (next: {_model_name(self.model_dir)})"
            tip += f"\nat the next start: {self.model_dir or 'the shipped default'}"
        self.model_label.setText(text)
        self.model_label.setToolTip(tip)

    # ------------------------------------------------------------------ controls
    def _on_pause_toggled(self, paused: bool) -> None:
        s = self.session
        if s is None or not s.is_alive():
            return
        if paused:
            s.pause()
            self._set_state(f"paused: {self._run_desc}" if self._run_desc else "paused")
            self.refresh_panel()
            self._update_status()
            self._flush_descriptions()  # what a screen reader finds while paused: the numbers on screen
        else:
            s.resume()
            self.live_view.restart_rate()
            self._set_state(f"running: {self._run_desc}" if self._run_desc else "running")

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
            self.set_record_path(self._ask_save_path("Record annotated video", ".mp4",
                                                     "MP4 video (*.mp4);;Matroska (*.mkv)", "Recording"))
        else:
            self.set_record_path(None)

    def _on_csv_clicked(self, checked: bool) -> None:
        if checked:
            self.set_csv_path(self._ask_save_path("Export per-frame CSV", ".csv", "CSV (*.csv)", "CSV export",
                                                  sidecar=True))
        else:
            self.set_csv_path(None)

    def _ask_save_path(self, title: str, suffix: str, filters: str, what: str,
                       sidecar: bool = False) -> Optional[str]:
        """A file to write, from the save dialog (None: cancelled). A name typed without a suffix gets ``suffix``
        (Qt's own dialog adds none); an existing file the dialog did not ask about (that name with the suffix
        added, a CSV's ``.json`` sidecar) is replaced only if the user says so."""
        path, _ = QFileDialog.getSaveFileName(self, title, self._default_name(suffix), filters)
        if not path:
            return None
        unasked: List[Path] = []
        if not Path(path).suffix:
            path += suffix
            unasked.append(Path(path))
        self._last_save_dir = str(Path(path).parent)
        self._remember("last_save_dir", self._last_save_dir)
        if sidecar:  # the CSV's summary (docs/csv.md), which the dialog knows nothing of
            unasked.append(Path(path).with_suffix(".json"))
        existing = [p for p in unasked if p.exists()]
        if existing and not self._confirm_replace(existing, what):
            self.statusBar().showMessage(f"{what} not started: {', '.join(p.name for p in existing)} kept", 8000)
            return None
        return path

    def _confirm_replace(self, paths: Sequence[Path], what: str) -> bool:
        """Ask whether the existing ``paths`` may be replaced (No is the default)."""
        many = len(paths) > 1
        names = "\n".join(f"    {p.name}" + ("  (the CSV's summary, written beside it)" if p.suffix == ".json" else "")
                          for p in paths)
        text = (f"{'These files already exist' if many else 'This file already exists'} in {paths[0].parent}:\n"
                f"{names}\n\n{what} would replace {'them' if many else 'it'}. Replace {'them' if many else 'it'}?")
        answer = QMessageBox.question(self, "Replace existing file?", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _source_dir(self) -> Optional[str]:
        """The folder of the file being read (None for a camera, a stream or nothing)."""
        if not isinstance(self.source, str) or "://" in self.source:
            return None
        return _existing_dir(str(Path(os.path.abspath(self.source)).parent))

    def _save_dir(self) -> Path:
        """Where the save dialogs start: the last folder saved to, else the input's folder where it can be
        written, else the current folder."""
        d = self._last_save_dir if _existing_dir(self._last_save_dir) else None
        if d is None:
            src = self._source_dir()
            d = src if src is not None and os.access(src, os.W_OK) else None
        return Path(d) if d is not None else _cwd()

    def _default_name(self, suffix: str) -> str:
        stem = "camera" if isinstance(self.source, int) or self.source is None else Path(str(self.source)).stem
        return str(self._save_dir() / f"{stem}_facecycle_{time.strftime('%Y%m%d_%H%M%S')}{suffix}")

    def _open_dir(self) -> str:
        """Where the open dialog starts: the last folder opened from (while it exists: a deleted one would be put
        in the dialog's file-name box), else the current input's folder, else the current folder."""
        return _existing_dir(self._last_dir) or self._source_dir() or str(_cwd())

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video", self._open_dir(), VIDEO_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self._remember("last_dir", self._last_dir)
            self.open_source(path, start=True)

    def _choose_model(self) -> None:
        here = self.model_dir
        start = _existing_dir(here) or (_existing_dir(str(Path(here).parent)) if here else None) or str(_cwd())
        d = QFileDialog.getExistingDirectory(self, "Exported model directory (with manifest.json)", start)
        if d:
            if not (Path(d) / "manifest.json").is_file():
                self.show_error(f"{d}: not an exported model (no manifest.json)")
                return
            self.model_dir = d
            self._update_model_label()
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
            self._set_state(f"finishing files … ({waited:.0f} s)")
            QTimer.singleShot(5000, self._still_closing)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing stops the pipeline first: the window closes once the worker has finished every file."""
        if self.session is not None and self.session.is_alive():
            self._closing = True
            self._pending_start = False
            self.session.stop()
            self._set_state("finishing files …")
            self._close_started = time.perf_counter()
            QTimer.singleShot(int(self.close_timeout * 1000), self._still_closing)
            event.ignore()
            return
        self._status_timer.stop()
        self.save_settings()
        event.accept()
