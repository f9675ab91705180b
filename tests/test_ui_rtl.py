"""The desktop app in a right-to-left layout and under other locales: findings F7 and F8 of probe h79 (Qt offscreen;
no model, no clip).

F7: with the application's layout right to left (an Arabic or Hebrew desktop) the time plot mirrored its labels but
not its data ("now" at the left over the oldest samples, "-10 s" read "s 10-"), the emotion bars put their names
right-aligned on the left of bars that grew to the right, and "Open file…" read "…Open file". F8: under an Arabic
QLocale the camera spin box said "camera ٠" beside Western digits everywhere else, and creating the QApplication set
the C library's number format for the whole process (a decimal comma under de_DE for OpenCV, PyAV, ONNX Runtime).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtCore import QLocale, Qt  # noqa: E402
from PyQt6.QtGui import QImage  # noqa: E402
from PyQt6.QtWidgets import QApplication, QSpinBox  # noqa: E402

from tests.conftest import ROOT, shown_window  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402
from ui.widgets import TimePlot  # noqa: E402
from ui.widgets.face_panel import EmotionBars  # noqa: E402
from ui.widgets.style import EMOTION_COLORS, EMOTIONS  # noqa: E402

RTL, LTR = Qt.LayoutDirection.RightToLeft, Qt.LayoutDirection.LeftToRight


@pytest.fixture
def rtl(qapp):
    """The whole application right to left, as on an Arabic or Hebrew desktop (back to left to right after)."""
    before = QApplication.layoutDirection()
    QApplication.setLayoutDirection(RTL)
    yield
    QApplication.setLayoutDirection(before)


def _plot(qtbot) -> TimePlot:
    """A plot 10 s long: intensity rising to its maximum at the newest sample, three emotions (a legend)."""
    plot = TimePlot()
    qtbot.addWidget(plot)
    plot.resize(420, plot.sizeHint().height())
    em = np.zeros(len(EMOTIONS), np.float32)
    em[EMOTIONS.index("happy")], em[EMOTIONS.index("neutral")], em[EMOTIONS.index("sad")] = 0.6, 0.3, 0.1
    for k in range(101):
        plot.add(k * 0.1, 0.01 * k, em)
    return plot


def _image(widget) -> QImage:
    return widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)


def _rgb(img: QImage) -> np.ndarray:
    """The image's pixels as an (h, w, 3) uint8 array."""
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    a = np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine() // 4, 4)[:, :w]
    return a[:, :, [2, 1, 0]].copy()  # BGRA in memory (little-endian ARGB32)


# --------------------------------------------------------------------- F7: the time plot
def test_plot_is_left_to_right_in_a_right_to_left_layout(qtbot, qapp):
    """In a right-to-left layout the plot is drawn exactly as in a left-to-right one: the newest samples and "now"
    at the right, "−10 s" (not "s 10-") at the left, the legend left to right between them. (A painter takes the
    application's direction, not the widget's: the reference is painted with the application left to right.)"""
    before = QApplication.layoutDirection()
    QApplication.setLayoutDirection(LTR)
    try:
        ref = _plot(qtbot)
        want = _image(ref)
        QApplication.setLayoutDirection(RTL)
        plot = _plot(qtbot)
        assert plot.layoutDirection() == RTL  # it follows the application's direction
        img = _image(plot)
    finally:
        QApplication.setLayoutDirection(before)
    assert img.size() == want.size()
    a, b = _rgb(img), _rgb(want)
    strip = plot.height() - plot._strip()
    diff = np.argwhere((a != b).any(axis=2))
    assert len(diff) == 0, (f"{len(diff)} pixels differ from the left-to-right plot, "
                            f"{int((diff[:, 0] >= strip).sum())} of them in the strip under it (the labels)")
    # the intensity (cyan, rising to its maximum at the newest sample) is highest at the right
    bg = a[2:strip, 2:-2].astype(int)
    ink = np.abs(bg - np.array([28, 28, 30])).sum(axis=2) > 60
    cols = np.flatnonzero(ink.any(axis=0))
    assert cols.size and cols.max() > bg.shape[1] - 8


def test_plot_span_ends_use_a_true_minus(qtbot, rtl):
    plot = _plot(qtbot)
    assert plot.span_ends() == ("\u221210 s", "now")


def _bar_columns(img: np.ndarray, y: int, color) -> np.ndarray:
    c = np.array([color.red(), color.green(), color.blue()])
    return np.flatnonzero((np.abs(img[y].astype(int) - c).sum(axis=1) <= 3))


def _text_columns(img: np.ndarray, y0: int, y1: int) -> np.ndarray:
    """Columns with the bars' light-grey text (names and values) in rows y0..y1."""
    rows = img[y0:y1].astype(int)
    bg = img[0, 0].astype(int)  # the widget's background (the palette's window colour): no bar, no text there
    grey = (rows.max(axis=2) - rows.min(axis=2) <= 12) & (rows.min(axis=2) >= 110)
    return np.flatnonzero((grey & (np.abs(rows - bg).sum(axis=2) > 45)).any(axis=0))


def _bars_image(qtbot, direction) -> tuple:
    """EmotionBars 300 px wide painted with the application's layout in ``direction``, "happy" at 0.5, the others 0:
    (the widget, its pixels)."""
    before = QApplication.layoutDirection()
    QApplication.setLayoutDirection(direction)
    try:
        bars = EmotionBars()
        qtbot.addWidget(bars)
        assert bars.layoutDirection() == direction
        bars.resize(300, bars.sizeHint().height())
        v = np.zeros(len(EMOTIONS), np.float32)
        v[EMOTIONS.index("happy")] = 0.5
        bars.set_values(v)
        return bars, _rgb(_image(bars))
    finally:
        QApplication.setLayoutDirection(before)


def test_emotion_bars_follow_the_layout_direction(qtbot, qapp):
    """The bars mirror as a progress bar does: in a right-to-left layout the names are on the right, each bar grows
    from them to the left, the values are on the left. (They grew to the right from names right-aligned on the
    left.) Left to right, as they were: names, a bar growing to the right, values."""
    for direction in (LTR, RTL):
        bars, img = _bars_image(qtbot, direction)
        g = bars.geometry_px()
        w, row, label_w, value_w = bars.width(), g["row"], g["label"], g["value"]
        i = EMOTIONS.index("happy")
        bar_w = w - label_w - value_w - 2
        cols = _bar_columns(img, 2 + i * row + row // 2, EMOTION_COLORS["happy"])
        assert cols.size >= bar_w * 0.5 - 2, (direction, cols)
        text = _text_columns(img, 2 + i * row, 2 + (i + 1) * row - 1)
        if direction == LTR:
            assert label_w - 1 <= cols.min() and cols.max() <= label_w + bar_w * 0.5 + 1, (cols.min(), cols.max())
            names, values = text[text < label_w], text[text >= w - value_w]
        else:
            right = w - label_w  # the bar starts at the names' column, on the right
            assert right - bar_w * 0.5 - 1 <= cols.min() and cols.max() <= right + 1, (cols.min(), cols.max(), right)
            names, values = text[text >= w - label_w], text[text < value_w]
        assert names.size and values.size, (direction, text)
        assert text.size == names.size + values.size, (direction, text)  # no text anywhere else (over the bar)


@pytest.fixture
def rtl_window(qtbot, rtl):
    return shown_window(qtbot)


def test_button_labels_read_left_to_right(qtbot, rtl_window):
    """"Open file…" stays "Open file…" (not "…Open file") in a right-to-left window: each button of the window's
    rows is painted in a right-to-left layout exactly as in a left-to-right one (the same widget, the application's
    direction switched); their texts are unchanged."""
    w = rtl_window
    assert w.layoutDirection() == RTL and w.open_button.layoutDirection() == RTL
    buttons = {w.open_button: "&Open file…", w.model_button: "&Model…", w.record_button: "● &Record…",
               w.csv_button: "Export &CSV…", w.start_button: "▶ &Start", w.pause_button: "❚❚ &Pause",
               w.stop_button: "■ S&top", w.camera_button: "Use c&amera"}
    shown = {b: _rgb(_image(b)) for b in buttons}
    QApplication.setLayoutDirection(LTR)  # (the fixture sets it back)
    qtbot.waitUntil(lambda: w.open_button.layoutDirection() == LTR)
    differ = []
    for b, text in buttons.items():
        assert b.text() == text
        want = _rgb(_image(b))
        if want.shape != shown[b].shape or (want != shown[b]).any():
            differ.append(text)
    assert not differ, f"painted otherwise right to left: {differ}"


# --------------------------------------------------------------------- F8: digits and the C library's locale
@pytest.fixture
def arabic_locale(qapp):
    before = QLocale()
    QLocale.setDefault(QLocale("ar_SA"))
    yield
    QLocale.setDefault(before)


def test_camera_spin_has_western_digits_under_an_arabic_locale(qtbot, arabic_locale):
    probe = QSpinBox()
    qtbot.addWidget(probe)
    probe.setPrefix("camera ")
    if probe.text() == "camera 0":
        pytest.skip("this Qt has no Arabic-Indic digits for ar_SA")
    assert probe.text() == "camera \u0660"  # a spin box's default: Arabic-Indic
    w = MainWindow(model_dir=None)
    qtbot.addWidget(w)
    assert w.camera_spin.text() == "camera 0"
    w.camera_spin.setValue(12)
    assert w.camera_spin.text() == "camera 12"


_PROBE = """
import locale, sys
from PyQt6.QtWidgets import QApplication
if sys.argv[1] == "ours":
    from ui.app import qt_application
    app = qt_application()
else:
    app = QApplication(["probe"])
print(locale.localeconv()["decimal_point"], locale.format_string("%.2f", 1.5), locale.setlocale(locale.LC_CTYPE))
"""


@pytest.fixture(scope="module")
def comma_locale(tmp_path_factory):
    """The environment of a locale with a decimal comma (de_DE.UTF-8): an installed one, else one compiled into a
    folder (``localedef``, ``LOCPATH``); skips where neither works."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    env.pop("LC_NUMERIC", None)
    check = "import locale; locale.setlocale(locale.LC_ALL, ''); print(locale.localeconv()['decimal_point'])"
    for name in ("de_DE.UTF-8", "de_DE.utf8"):
        e = dict(env, LC_ALL=name, LANG=name)
        r = subprocess.run([sys.executable, "-c", check], env=e, capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and r.stdout.strip() == ",":
            return e
    if shutil.which("localedef") is None:
        pytest.skip("no locale with a decimal comma, and no localedef to make one")
    folder = tmp_path_factory.mktemp("locale")
    try:
        subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(folder / "de_DE.UTF-8")],
                       capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"localedef failed: {exc}")
    e = dict(env, LOCPATH=str(folder), LC_ALL="de_DE.UTF-8", LANG="de_DE.UTF-8")
    r = subprocess.run([sys.executable, "-c", check], env=e, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or r.stdout.strip() != ",":
        pytest.skip(f"could not make a de_DE locale: {r.stdout.strip()} {r.stderr.strip()[-200:]}")
    return e


def _probe(env, which: str) -> list:
    r = subprocess.run([sys.executable, "-c", _PROBE, which], env=env, cwd=str(ROOT), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


def test_qt_application_keeps_c_numbers(comma_locale):
    """A bare QApplication sets the C library's numbers from the environment (a decimal comma under de_DE); the
    app's :func:`ui.app.qt_application` sets them back to "C", and leaves the character set the user's."""
    bare = _probe(comma_locale, "bare")
    if bare[0] != ",":
        pytest.skip(f"this Qt does not set LC_NUMERIC from the environment: {bare}")
    assert bare[1] == "1,50"
    ours = _probe(comma_locale, "ours")
    assert ours[:2] == [".", "1.50"], ours
    assert "UTF-8" in ours[2].upper().replace("UTF8", "UTF-8"), ours  # LC_CTYPE stays the user's
