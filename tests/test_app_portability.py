"""The desktop app on Windows and macOS, tested on Linux (review findings F6 and F13).

F6: the ``facecycle-app`` launcher on Windows has no console (``sys.stderr`` and ``sys.stdout`` are None): a startup
error (a bad option, a missing model, PyQt6 missing) ended with no window and no message. It is now shown in a
message box.

F13: macOS has no mnemonics (``QKeySequence.mnemonic`` gives ""), so tooltips ended in "()" or "(Ctrl+O, )"; texts
said "Ctrl+O" where a Mac says ⌘O; the "● REC" red was 1.5:1 on a dark palette.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

import sys  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PyQt6.QtWidgets")
pytest.importorskip("pytestqt")

from PyQt6.QtGui import QColor, QKeySequence, QPalette  # noqa: E402
from PyQt6.QtWidgets import QMessageBox, QWidget  # noqa: E402

from facecycle_cli import app_cmd  # noqa: E402
from ui import main_window as mw  # noqa: E402
from ui.main_window import MainWindow  # noqa: E402


@pytest.fixture
def boxes(monkeypatch):
    """QMessageBox.critical recorded, never shown (a modal box would block the test)."""
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda parent, title, text, *a, **k: shown.append(
        (parent, title, text))))
    return shown


def no_console(monkeypatch):
    """As under the Windows GUI launcher (facecycle-app.exe): no stdout, no stderr. (Called in the test itself:
    pytest's output capture puts its own streams back at the start of the test, after the fixtures.)"""
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)


# F6 --------------------------------------------------------------------------------------------------------------

def test_gui_launcher_without_stderr_shows_the_startup_error_in_a_box(boxes, monkeypatch, tmp_path):
    no_console(monkeypatch)
    missing = str(tmp_path / "nonexistent")
    code = app_cmd.main(["--model", missing])
    assert code != 0
    assert len(boxes) == 1, boxes
    parent, title, text = boxes[0]
    assert parent is None and title == "FaceCycle RT"
    assert text.startswith("facecycle: error: ") and missing in text and "\n" not in text, text
    assert sys.stderr is None and sys.stdout is None  # the launcher's streams as they were


def test_gui_launcher_without_stderr_shows_a_usage_error(boxes, monkeypatch):
    no_console(monkeypatch)
    with pytest.raises(SystemExit) as e:  # argparse's usage error: exit 2, its message in the box
        app_cmd.main(["--no-such-option"])
    assert e.value.code == 2
    assert len(boxes) == 1 and "--no-such-option" in boxes[0][2], boxes
    assert sys.stderr is None


def test_with_a_console_the_error_goes_to_stderr_and_no_box(boxes, capsys, tmp_path):
    missing = str(tmp_path / "nonexistent")
    code = app_cmd.main(["--model", missing])
    assert code != 0 and boxes == []
    assert f"facecycle: error: {missing}" in capsys.readouterr().err


def test_show_error_never_raises(monkeypatch):
    """A Qt box that cannot be shown (no display) falls back on the system's box, and one that fails too is
    dropped: nothing raised."""
    import ctypes
    import types

    tried = []

    def broken(*a, **k):
        tried.append("qt")
        raise RuntimeError("no display")

    def user32_box(hwnd, text, title, flags):
        tried.append(("windows", text))
        raise OSError("no user32")

    monkeypatch.setattr(QMessageBox, "critical", staticmethod(broken))
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(user32=types.SimpleNamespace(MessageBoxW=user32_box)),
                        raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    app_cmd.show_error("facecycle: error: x")  # nothing raised
    assert tried == ["qt", ("windows", "facecycle: error: x")], tried


def _exits(monkeypatch, code, message=None):
    """The CLI replaced by one that ends with ``code`` after printing ``facecycle: error: message``."""
    import facecycle_cli

    def fake_main(args):
        if message:
            print(f"facecycle: error: {message}", file=sys.stderr)
        return code

    monkeypatch.setattr(facecycle_cli, "main", fake_main)


@pytest.mark.parametrize("code", [130, 143])
def test_gui_launcher_shows_no_box_for_an_interrupted_or_terminated_app(boxes, monkeypatch, code):
    """Closed by Ctrl-C or by a logoff's SIGTERM: the user or the system asked for it, and a modal box after the
    window closed said only "ended with exit code 143"."""
    _exits(monkeypatch, code)
    no_console(monkeypatch)
    assert app_cmd.main([]) == code
    assert boxes == []
    _exits(monkeypatch, 1)  # any other failure still gets its box
    assert app_cmd.main([]) == 1 and len(boxes) == 1 and "exit code 1" in boxes[0][2]


def test_gui_launcher_shows_no_second_box_for_an_error_the_window_showed(boxes, monkeypatch):
    """A --csv that cannot be written: the window shows it in its banner and the app exits 4; the launcher's box
    said it a second time. An error the window did not show (a timeout, a screenshot not saved) still gets one."""
    from ui import app as ui_app

    shown = "CSV failed: /x/a.csv: disk full"
    monkeypatch.setattr(ui_app, "_window_errors", [shown])
    _exits(monkeypatch, 4, shown)
    no_console(monkeypatch)
    assert app_cmd.main([]) == 4 and boxes == []
    _exits(monkeypatch, 5, "automation timed out after 600 s (0 frames painted)")
    assert app_cmd.main([]) == 5 and len(boxes) == 1 and "timed out" in boxes[0][2]
    monkeypatch.setattr(ui_app, "_window_errors", None)  # the window never opened: the box says it
    _exits(monkeypatch, 4, shown)
    assert app_cmd.main([]) == 4 and len(boxes) == 2


def test_show_error_without_pyqt6_uses_the_windows_box(monkeypatch):
    """PyQt6 missing (its import fails): on Windows the system's MessageBoxW."""
    import ctypes
    import types

    calls = []
    user32 = types.SimpleNamespace(MessageBoxW=lambda hwnd, text, title, flags: calls.append((hwnd, text, title)))
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(user32=user32), raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "PyQt6.QtWidgets", None)  # import fails
    app_cmd.show_error("facecycle: error: `facecycle app` needs PyQt6, which is not installed")
    assert calls == [(None, "facecycle: error: `facecycle app` needs PyQt6, which is not installed", "FaceCycle RT")]

    def broken(*a):
        raise OSError("no user32")

    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(user32=types.SimpleNamespace(MessageBoxW=broken)))
    app_cmd.show_error("x")  # nothing raised


def test_a_long_session_keeps_only_the_last_messages():
    t = app_cmd._Tail()
    for i in range(5000):
        t.write(f"WARNING line {i}\n")
    t.write("facecycle: error: the last one\n")
    text = t.getvalue()
    assert len(text) <= 2 * app_cmd._TAIL_CHARS and text.endswith("facecycle: error: the last one\n")


# F13 -------------------------------------------------------------------------------------------------------------

@pytest.fixture
def no_mnemonics(qapp):
    """As on macOS, where Qt turns mnemonics off: QKeySequence.mnemonic gives an empty sequence."""
    from PyQt6 import QtGui

    if not hasattr(QtGui, "qt_set_sequence_auto_mnemonic"):
        pytest.skip("qt_set_sequence_auto_mnemonic not exposed")
    QtGui.qt_set_sequence_auto_mnemonic(False)
    try:
        assert QKeySequence.mnemonic("&Open").isEmpty()
        yield
    finally:
        QtGui.qt_set_sequence_auto_mnemonic(True)


def _tooltips(w: MainWindow):
    return {c.objectName() or type(c).__name__ + c.accessibleName(): c.toolTip()
            for c in w.findChildren(QWidget) if c.toolTip()}


def test_key_hint_leaves_out_empty_keys():
    assert mw.key_hint("Ctrl+O", "Alt+O") == " (Ctrl+O, Alt+O)"
    assert mw.key_hint("Ctrl+O", "") == " (Ctrl+O)"
    assert mw.key_hint("") == "" and mw.key_hint() == ""


def test_tooltips_without_mnemonics_have_no_empty_brackets(qtbot, no_mnemonics):
    w = MainWindow(settings=None)
    qtbot.addWidget(w)
    w.record_button.setChecked(True)  # the on-texts too
    w._update_output_buttons()
    tips = _tooltips(w)
    for name, tip in tips.items():
        assert "()" not in tip and ", )" not in tip and "(, " not in tip, (name, tip)
    assert w.camera_button.toolTip() == "start the camera chosen on the left"
    assert w.open_button.toolTip().endswith(f"({w._keys(w.open_action)})")
    assert w.realtime_check.toolTip().endswith("applies at the next start")
    assert w.pause_button.toolTip().endswith("(Space in the view)")
    assert w.start_button.toolTip().endswith("(Space in the view)")


def test_tooltips_with_mnemonics_still_name_them(qtbot, qapp):
    w = MainWindow(settings=None)
    qtbot.addWidget(w)
    assert w.open_button.toolTip().endswith("(Ctrl+O, Alt+O)"), w.open_button.toolTip()
    assert w.camera_button.toolTip().endswith("(Alt+A)"), w.camera_button.toolTip()


def test_open_key_texts_follow_the_platform(qtbot, qapp, monkeypatch):
    """Every text naming the Open shortcut uses the platform's writing of it (⌘O on macOS), never "Ctrl+O" as is."""
    native = QKeySequence(mw.OPEN_SHORTCUT).toString(QKeySequence.SequenceFormat.NativeText)
    assert mw.open_keys() == native
    w = MainWindow(settings=None)
    qtbot.addWidget(w)
    assert w._keys(w.open_action) == native

    # as on a Mac: the native text is "⌘O"
    monkeypatch.setattr(mw, "open_keys", lambda: "⌘O")
    monkeypatch.setattr(MainWindow, "_keys", staticmethod(lambda action: "⌘O"))
    mac = MainWindow(settings=None)
    qtbot.addWidget(mac)
    assert "(⌘O)" in mac.live_view._placeholder and "Ctrl+O" not in mac.live_view._placeholder
    assert "⌘O" in mac.open_button.toolTip() and "Ctrl+O" not in mac.open_button.toolTip()
    mac.start()  # no source: the error names the key
    assert "(⌘O)" in mac.errors[-1] and "Ctrl+O" not in mac.errors[-1], mac.errors
    advice = mw.gui_message("x: 2 video files; give them as inputs (x/*), or the folder to `facecycle batch`, "
                            "which searches it")
    assert "Open file… (⌘O)" in advice and "Ctrl+O" not in advice, advice


def test_contrast_ratio():
    assert mw.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert mw.contrast_ratio("#777777", "#777777") == pytest.approx(1.0)
    assert mw.contrast_ratio(QColor("#ffffff"), "#000000") == pytest.approx(21.0)
    # the red the label had: fine on white, 1.5:1 on the dark palettes of macOS and Windows 11
    assert mw.contrast_ratio("#a1001a", "#ffffff") >= 4.5 > mw.contrast_ratio("#a1001a", "#323232")


def _palette(window: str, text: str) -> QPalette:
    p = QPalette()
    p.setColor(QPalette.ColorRole.Window, QColor(window))
    p.setColor(QPalette.ColorRole.WindowText, QColor(text))
    return p


@pytest.mark.parametrize("window, text", [
    ("#ffffff", "#000000"), ("#f0f0f0", "#000000"), ("#ececec", "#000000"),  # light: Windows, macOS
    ("#323232", "#ffffff"), ("#2d2d2d", "#ffffff"), ("#202020", "#ffffff"), ("#1e1e1e", "#ffffff"),  # dark
    ("#808080", "#000000"),  # a mid-grey theme: no red reaches 4.5:1, the palette's text colour does
])
def test_rec_color_is_readable_on_light_and_dark_palettes(window, text):
    color = mw.rec_color(_palette(window, text))
    assert mw.contrast_ratio(color, window) >= 4.5, (color, window)


def test_rec_label_follows_the_palette(qtbot, qapp):
    w = MainWindow(settings=None)
    qtbot.addWidget(w)
    for window, text in (("#323232", "#ffffff"), ("#ffffff", "#000000"), ("#1e1e1e", "#ffffff")):
        w.setPalette(_palette(window, text))  # dark mode switched on / off while the window is open
        sheet = w.rec_label.styleSheet()
        color = sheet.split("color:")[1].split(";")[0].strip()
        assert mw.contrast_ratio(color, window) >= 4.5, (window, sheet)
