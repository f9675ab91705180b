"""Starting the app: command-line options, the QApplication, automation (screenshot, exit after N frames).

``facecycle app [--input FILE | --camera N] [--model DIR] [--backend B] [--detector D] [--rotate DEG]
[--screenshot PNG] [--exit-after N] [--stats-json PATH] ...``; ``facecycle-app`` is
the same as ``facecycle app`` (its launcher is :func:`facecycle_cli.app_cmd.main`).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

from facecycle.errors import FaceCycleError, OutputError, PipelineError, UsageError
from facecycle.files import json_text
from facecycle.terminal import TERMINATING, stopping_signals

__all__ = ["add_arguments", "run_app", "Automation", "qt_application", "c_numbers"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``facecycle app`` options (shared by the CLI sub-command and the GUI script)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", "-i", metavar="FILE", help="video file, stream URL or image folder to open at start")
    src.add_argument("--camera", type=int, metavar="N", help="open camera N at start")
    p.add_argument("--model", metavar="DIR", default=None,
                   help="exported model directory (default: the shipped model in facecycle/assets/default)")
    from engines.select import BACKEND_NAMES
    from realtime.detectors import DETECTOR_CHOICES

    # the defaults are None: an option not given leaves the window's remembered choice (docs/app.md, Settings)
    p.add_argument("--backend", default=None, metavar="NAME",
                   help=f"inference backend: {', '.join(BACKEND_NAMES)} (default: the last one chosen in the "
                        "window, else auto)")
    p.add_argument("--detector", default=None, metavar="NAME",
                   help=f"face detector: {', '.join(DETECTOR_CHOICES)} (default: the last one chosen in the window, "
                        "else centerface; the others need --detector-model)")
    p.add_argument("--detector-model", default=None, metavar="PATH",
                   help="model for yunet (.onnx) or insightface (.onnx, model-pack folder or pack name)")
    from .settings import ROTATIONS

    p.add_argument("--rotate", type=int, default=None, choices=ROTATIONS, metavar="DEG",
                   help="turn every frame DEG degrees clockwise (0, 90, 180, 270) before it is read, as facecycle "
                        "process --rotate: a video that lost its rotation tag, a camera mounted upside down "
                        "(default: the last one chosen in the window, else 0)")
    p.add_argument("--realtime", action="store_true", help="play files at their own pace, like a camera")
    p.add_argument("--record", metavar="VIDEO", help="record the annotated view to this file from the start")
    p.add_argument("--csv", metavar="CSV", help="write the per-frame CSV to this file from the start")
    p.add_argument("--neutralized", action="store_true", help="start with the neutralized view on")
    p.add_argument("--neutral-thumbnail", action="store_true", help="start with the neutral-face thumbnail on")
    p.add_argument("--no-overlays", action="store_true", help="start with every overlay off")
    p.add_argument("--no-neutral-reference", dest="neutral_reference", action="store_false",
                   help="neutral faces: every face keeps its own frame's (default: a strongly expressive face gets "
                        "its track's neutral face from a less expressive earlier frame, as facecycle process)")
    auto = p.add_argument_group("automation (tests, docs, benchmarks)")
    auto.add_argument("--exit-after", type=int, metavar="N",
                      help="quit after N frames have been painted (or at the end of the input)")
    auto.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the whole window before quitting")
    auto.add_argument("--stats-json", metavar="PATH",
                      help="write displayed fps, pipeline fps, drops and latency as JSON before quitting")
    auto.add_argument("--timeout", type=float, default=None, metavar="S",
                      help="automation: give up (exit 7) after S seconds (default: 600 with --exit-after, "
                           "else no limit)")
    auto.add_argument("--size", default=None, metavar="WxH",
                      help="window size (default: the last one, else 1180x640 or, on a smaller screen, 95%% x 90%% "
                           "of it; always 1180x640 in automation)")


def _parse_size(s: str):
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        if w < 200 or h < 150:
            raise ValueError
        return w, h
    except ValueError:
        raise UsageError(f"--size {s!r}: expected WxH, at least 200x150") from None


class Automation:
    """Drives a window for scripted runs: after ``exit_after`` painted frames (or the end of the
    input, or an error) it saves the screenshot and the stats, then closes the window
    (which stops the pipeline and finishes every file first).

    A recording or CSV that cannot be opened, written or finished (asked for on the command line: ``--record``,
    ``--csv``) fails the run at once with :class:`~facecycle.errors.OutputError` (exit 4): the window only shows
    it in its banner, and a script would otherwise see exit 0 with the file missing.

    ``exit_code`` is 0 on success; ``error`` holds the FaceCycleError to report otherwise.
    """

    def __init__(self, window, exit_after: Optional[int], screenshot: Optional[str], stats_json: Optional[str],
                 timeout: Optional[float] = 600.0) -> None:
        from PyQt6.QtCore import QTimer

        self.window = window
        self.exit_after = exit_after
        self.screenshot = screenshot
        self.stats_json = stats_json
        self.error: Optional[FaceCycleError] = None
        self.done = False
        self.stats: dict = {}
        self.t_start = time.perf_counter()
        window.live_view.framePainted.connect(self._on_painted)
        window.runFinished.connect(self._on_finished)
        window.outputFailed.connect(self._on_output_failed)
        self._timer = QTimer(window)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timeout)
        if timeout is not None:
            self._timer.start(int(timeout * 1000))

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    def _on_painted(self, n: int) -> None:
        if self.exit_after is not None and n >= self.exit_after and not self.done:
            self.done = True
            from PyQt6.QtCore import QTimer

            QTimer.singleShot(0, self.finish)  # not from inside paintEvent

    def _on_output_failed(self, message: str) -> None:
        """An output asked for could not be written: the run has failed (exit 4), whatever else goes well."""
        if self.error is None:
            self.error = OutputError(message)
        if not self.done:
            self.done = True
            from PyQt6.QtCore import QTimer

            QTimer.singleShot(0, self.finish)  # not from inside the signal's emitter

    def _on_finished(self, reason: str) -> None:
        if self.done:
            return
        self.done = True
        s = self.window.session
        if reason == "error":
            last = self.window.errors[-1] if self.window.errors else "the pipeline failed"
            from .session import FILES_NOT_FINISHED

            err = s.error if s is not None and s.error is not None else (
                OutputError(last) if last.startswith(FILES_NOT_FINISHED) else PipelineError(last))
            self.error = self.error or err
        elif self.exit_after is not None:
            self.window.live_view.repaint()  # the last frame, which may have come with the end, painted first
            if self.window.live_view.painted < self.exit_after:
                log.warning("the input ended after %d painted frames (asked for %d)", self.window.live_view.painted,
                            self.exit_after)
        self.finish()

    def _on_timeout(self) -> None:
        if not self.done:
            self.done = True
            self.error = PipelineError(f"automation timed out after {time.perf_counter() - self.t_start:.0f} s "
                                       f"({self.window.live_view.painted} frames painted)")
            self.finish()

    def finish(self) -> None:
        """Save the screenshot and stats, then close the window (files are finished before it closes)."""
        w = self.window
        self.stats = w.stats()
        self.stats.update(wall_s=round(time.perf_counter() - self.t_start, 2),
                          loadavg=[round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
                          cpu_count=os.cpu_count(),
                          source=str(w.source), qt_platform=_platform_name(), window=[w.width(), w.height()])
        if w.session is not None:
            self.stats["pipeline"] = w.session.info.get("backend")
        try:
            if self.screenshot:
                p = Path(self.screenshot)
                p.parent.mkdir(parents=True, exist_ok=True)
                w.refresh_panel()  # the side panel's numbers of the frame shown, not of one up to 1/15 s before
                if not w.grab().save(str(p)):
                    raise OutputError(f"{p}: cannot save the screenshot")
            if self.stats_json:
                p = Path(self.stats_json)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(json_text(self.stats) + "\n", encoding="utf-8")
        except OSError as e:
            self.error = self.error or OutputError(f"{e.filename or ''}: {e.strerror or e}")
        except FaceCycleError as e:
            self.error = self.error or e
        w.close()


def _check_choices(args: argparse.Namespace) -> None:
    """Unknown --detector / --backend names are usage errors before any window opens."""
    from engines.select import canonical
    from realtime.detectors import DETECTORS

    if args.detector is not None and args.detector.lower() not in DETECTORS:
        raise UsageError(f"unknown detector {args.detector!r}; choose from {', '.join(DETECTORS)}")
    if args.backend is not None:
        canonical(args.backend)  # raises UsageError for an unknown name


def _qt_message_handler(mode, context, message: str) -> None:
    """Qt's own messages go to logging (the offscreen plugin's size-hint notice only at debug level)."""
    from PyQt6.QtCore import QtMsgType

    qlog = logging.getLogger("qt")
    if "propagateSizeHints" in message:
        qlog.debug("%s", message)
    elif mode in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
        qlog.error("%s", message)
    elif mode == QtMsgType.QtWarningMsg:
        qlog.warning("%s", message)
    else:
        qlog.debug("%s", message)


def _platform_name() -> str:
    try:
        from PyQt6.QtGui import QGuiApplication

        return QGuiApplication.platformName()
    except Exception:  # noqa: BLE001
        return "?"


def _ensure_platform(automated: bool) -> None:
    """Without a display, run an automated session (``--exit-after``, ``--screenshot``, ``--stats-json``) offscreen
    instead of failing to connect to X11/Wayland; refuse an interactive one (BackendUnavailable): it opened an
    invisible window and waited for ever, with a notice only at ``-v``."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        if not automated:
            from facecycle.errors import BackendUnavailable

            raise BackendUnavailable("no display (DISPLAY and WAYLAND_DISPLAY are unset): the app needs one; without "
                                     "a screen, use `facecycle process` (or the app's --exit-after/--screenshot "
                                     "automation, which runs offscreen)")
        log.info("no display: using the offscreen Qt platform")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


#: the messages the window of the last :func:`run_app` showed in its banner (its ``errors``, kept as they grow); None
#: while no window opened. ``facecycle-app`` shows no second box for them (:func:`window_errors`)
_window_errors: Optional[List[str]] = None


def window_errors() -> Optional[List[str]]:
    """The messages the last window :func:`run_app` opened showed itself (None where none opened)."""
    return _window_errors


def c_numbers() -> None:
    """Set the C library's number format (``LC_NUMERIC``) back to "C": creating a QApplication sets the whole
    process's locale from the environment (``setlocale(LC_ALL, "")``), and under a locale with a decimal comma
    (de_DE) the C libraries loaded in the app (OpenCV, PyAV/FFmpeg, ONNX Runtime) then printed and parsed numbers
    with commas (``locale.format_string('%.2f', 1.5)`` gave ``1,50``). The rest of the locale (the character set,
    the messages) stays the user's; Qt's own number formatting (QLocale) does not depend on it."""
    import locale

    try:
        locale.setlocale(locale.LC_NUMERIC, "C")
    except locale.Error:  # (every C library has "C")
        log.debug("could not reset LC_NUMERIC to C", exc_info=True)


def qt_application():
    """The QApplication: the one there is, else a new one (named after the command), then :func:`c_numbers`."""
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "facecycle-app"])
    c_numbers()
    return app


def run_app(args: argparse.Namespace) -> int:
    """Open the main window (the ``facecycle app`` command). Returns the exit code; in automation,
    a pipeline error is raised as its FaceCycleError (one line, its exit code)."""
    global _window_errors
    _window_errors = None
    if args.exit_after is not None and args.exit_after < 1:
        raise UsageError("--exit-after must be >= 1")
    automated = args.exit_after is not None or args.screenshot or args.stats_json
    if automated and args.input is None and args.camera is None:
        raise UsageError("--exit-after/--screenshot/--stats-json need --input or --camera")
    if args.model is not None and not (Path(args.model) / "manifest.json").is_file():
        from facecycle.errors import ModelError

        raise ModelError(f"{args.model}: not an exported model directory (no manifest.json)")
    size = _parse_size(args.size) if args.size is not None else None
    _check_choices(args)
    try:  # a missing PyQt6 first: no display would not help without it
        from PyQt6.QtWidgets import QApplication  # noqa: F401 - made by qt_application
    except ImportError as e:
        from facecycle.errors import BackendUnavailable

        raise BackendUnavailable(f"the app needs PyQt6 (pip install \"facecycle-rt[ui]\"): {e}") from None
    _ensure_platform(bool(automated))

    from PyQt6.QtCore import qInstallMessageHandler

    from .main_window import DEFAULT_SIZE, MainWindow, app_settings, first_run_size
    from .settings import Overlays

    qInstallMessageHandler(_qt_message_handler)
    app = qt_application()  # with the C library's numbers in "C" (c_numbers)
    app.setApplicationName("FaceCycle RT")
    overlays = Overlays(boxes=not args.no_overlays, pose=not args.no_overlays, emotions=not args.no_overlays,
                        neutral_thumb=bool(args.neutral_thumbnail), neutralized=bool(args.neutralized))
    # an interactive window remembers the user's choices (QSettings); an automated run neither reads nor writes
    # them: its result depends on its command line only
    win = MainWindow(model_dir=args.model, backend=args.backend or "auto", detector=args.detector or "centerface",
                     realtime=args.realtime, overlays=overlays, detector_model=args.detector_model,
                     neutral_reference=args.neutral_reference, settings=None if automated else app_settings(),
                     rotate=args.rotate or 0)
    given = {"backend": args.backend is not None, "detector": args.detector is not None,
             "rotate": args.rotate is not None, "realtime": args.realtime,
             "overlays": bool(args.no_overlays or args.neutralized or args.neutral_thumbnail),
             "geometry": size is not None}
    restored = win.restore_settings(skip=[k for k, v in given.items() if v])  # Qt keeps a restored one on screen
    if size is not None:
        win.resize(*size)
    elif automated:
        win.resize(*DEFAULT_SIZE)  # a scripted run's screenshot is the same on every screen
    elif not restored:
        win.resize(*first_run_size(win.screen()))  # 1180x640 was larger than a 1366x768 screen at 150 %
    timeout = args.timeout if args.timeout is not None else (600.0 if args.exit_after is not None else None)
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be > 0")
    auto = Automation(win, args.exit_after, args.screenshot, args.stats_json, timeout) if automated else None
    if args.record:
        win.set_record_path(args.record)
    if args.csv:
        win.set_csv_path(args.csv)
    win.show()
    _window_errors = win.errors
    if args.input is not None:
        win.open_source(args.input, start=True)
    elif args.camera is not None:
        win.open_source(int(args.camera), start=True)
    caught = _install_signal_handlers(win)
    old_hook = sys.excepthook

    def excepthook(exc_type, exc, tb):  # PyQt aborts on an unhandled exception in a slot: report it instead
        log.error("unexpected error in the GUI", exc_info=(exc_type, exc, tb))
        try:
            win.show_error(f"internal error: {exc_type.__name__}: {exc}")
        except Exception:  # noqa: BLE001
            pass

    sys.excepthook = excepthook
    try:
        rc = app.exec()
    finally:
        sys.excepthook = old_hook
        _restore_signal_handlers(caught)
    if caught.get("signum") == signal.SIGINT:
        raise KeyboardInterrupt  # the files are finished already; the CLI says "interrupted", exit 130
    if caught.get("signum") in TERMINATING:  # SIGTERM 143; SIGHUP 129, SIGXCPU 152, SIGBREAK 149
        return 128 + int(caught["signum"])
    if auto is not None:
        if auto.error is not None:
            raise auto.error
        return 0
    return int(rc)


def _install_signal_handlers(window) -> dict:
    """SIGINT / SIGTERM close the window the normal way (pipeline stopped, files finished).

    Python runs signal handlers between bytecodes; the window's 4 Hz status timer
    makes sure that happens while Qt's event loop is waiting.
    """
    from PyQt6.QtCore import QTimer

    state: dict = {"old": {}}

    def handler(signum, frame):
        if state.get("signum") is None:
            state["signum"] = signum
            log.warning("signal %d: stopping the pipeline and finishing the files", signum)
            QTimer.singleShot(0, window.close)

    # SIGHUP (the terminal closed) and SIGXCPU too: they killed the app with its recording open; those ignored
    # (nohup) stay ignored
    for sig in stopping_signals():
        try:
            state["old"][sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread
            pass
    return state


def _restore_signal_handlers(state: dict) -> None:
    for sig, old in state.get("old", {}).items():
        try:
            signal.signal(sig, old)
        except (ValueError, OSError, TypeError):
            pass
