"""``facecycle app``: the desktop app (PyQt6) — see docs/app.md."""
from __future__ import annotations

import argparse
import io
import os
import sys
from typing import List, Optional


def register(sub: argparse._SubParsersAction) -> None:
    from ui.app import add_arguments  # imports no Qt: PyQt6 is only needed when the command runs

    p = sub.add_parser("app", help="open the desktop app (webcam or video file; live view, recording, CSV)",
                       description="Open the FaceCycle RT window. With --exit-after/--screenshot/--stats-json it "
                                   "runs unattended (tests, docs, benchmarks) and exits 0 when done; 4 where a "
                                   "--record or --csv cannot be written, and the other codes of the README's table on "
                                   "errors.")
    add_arguments(p)
    p.set_defaults(func=_app)


def _app(args: argparse.Namespace) -> int:
    from ui.app import run_app

    from .sigterm import describe

    code = run_app(args)
    if code >= 129 and code != 130:  # stopped by SIGTERM, SIGHUP, SIGXCPU, SIGBREAK: say which, as process does
        print(f"facecycle: {describe(code)}; outputs flushed and closed", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    """The ``facecycle-app`` GUI script: same options as ``facecycle app``.

    Its Windows launcher has no console: ``sys.stderr`` is None, and the one-line error of a bad option, a missing
    model or a missing PyQt6 went nowhere (no window, no message). There the messages are kept, and on a non-zero
    exit they are shown in a message box (:func:`show_error`); not for an exit the user or the system asked for
    (130 interrupted, 143 terminated: a second, modal box after the window closed at a logoff), nor for an error
    the window already showed in its banner (:func:`_shown_in_window`)."""
    from . import main as cli_main

    args = ["app", *(sys.argv[1:] if argv is None else list(argv))]
    if sys.stderr is not None:
        return cli_main(args)
    captured = _Tail()
    sys.stderr = captured  # type: ignore[assignment]
    code: object = 1
    try:
        code = cli_main(args)
        return code  # type: ignore[return-value]
    except SystemExit as e:  # argparse's usage errors (2), --help (0)
        code = e.code
        raise
    finally:
        if sys.stderr is captured:
            sys.stderr = None  # type: ignore[assignment]
        if code not in (0, None, *_NO_BOX_CODES):
            text = captured.getvalue().strip() or f"facecycle-app ended with exit code {code}"
            if not _shown_in_window(text):
                show_error(text)


#: exit codes :func:`main` shows no box for: 130 (interrupted: Ctrl-C, SIGINT) and 143 (terminated: SIGTERM, a
#: logoff or shutdown), which the user or the system asked for
_NO_BOX_CODES = (130, 143)


def _shown_in_window(text: str) -> bool:
    """Whether every error line of ``text`` (``facecycle: error: MESSAGE``) names a message the app's window showed
    itself (:func:`ui.app.window_errors`): an output that could not be written, said in the banner, then exit 4.
    False where the window never opened, or where ``text`` holds no error line."""
    from ui.app import window_errors

    shown = window_errors()
    errors = [line.split("error: ", 1)[1] for line in text.splitlines() if line.startswith("facecycle: error: ")]
    return bool(shown and errors) and all(any(m and (e in m or m in e) for m in shown) for e in errors)


#: how much of the messages :func:`main` keeps where stderr is None (the last characters written)
_TAIL_CHARS = 8000

#: the most lines of messages a message box shows (the last ones, the error among them)
_BOX_LINES = 20


class _Tail(io.StringIO):
    """A ``StringIO`` that keeps the last :data:`_TAIL_CHARS` characters written: the messages of a long session
    (warnings) do not pile up in memory, the last ones (the error) are kept."""

    def write(self, s: str) -> int:  # type: ignore[override]
        n = super().write(s)
        if self.tell() > 2 * _TAIL_CHARS:
            keep = self.getvalue()[-_TAIL_CHARS:]
            self.seek(0)
            self.truncate()
            super().write(keep)
        return n


def show_error(text: str) -> None:
    """Show ``text`` (the messages of a failed start) in a message box: Qt's where PyQt6 imports, else, on Windows,
    the system's (``MessageBoxW``). Never raises: a message that cannot be shown is dropped."""
    lines = text.splitlines()
    if len(lines) > _BOX_LINES:
        text = "\n".join(["…", *lines[-_BOX_LINES:]])
    try:
        from PyQt6.QtWidgets import QApplication, QMessageBox
    except Exception:  # noqa: BLE001 - PyQt6 missing or broken: the system's box
        _windows_box(text)
        return
    try:
        if QApplication.instance() is None and not _has_display():
            return  # (Qt would abort the process, not raise)
        _qapp = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "facecycle-app"])  # kept alive
        QMessageBox.critical(None, "FaceCycle RT", text)
    except Exception:  # noqa: BLE001 - a box that cannot be shown (no display): the system's, else nothing
        _windows_box(text)


def _has_display() -> bool:
    """Whether a QApplication can start: always on Windows and macOS; on Linux with an X11 or Wayland display, or a
    platform chosen with QT_QPA_PLATFORM."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def _windows_box(text: str) -> None:
    if sys.platform != "win32":
        return
    try:
        import ctypes

        ctypes.windll.user32.MessageBoxW(None, text, "FaceCycle RT", 0x10)  # type: ignore[attr-defined]  # MB_ICONERROR
    except Exception:  # noqa: BLE001 - nothing more to try
        pass


if __name__ == "__main__":
    sys.exit(main())
