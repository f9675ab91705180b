"""SIGTERM and SIGINT for the command line: raise where the signal lands, and remember that it came.

SIGTERM raises ``SystemExit(143)``; SIGINT ``KeyboardInterrupt`` (exit 130), as Python's own handler does.
Raising from the handler stops a command at once, with its ``finally`` blocks and context managers run. But an
exception raised at an arbitrary point can be swallowed: a SIGTERM that lands while onnxruntime's extension
module loads (during the model's start-up) disappeared that way, and a Ctrl-C that landed in a callback of
Python's import machinery was printed as "Exception ignored ... Traceback ... KeyboardInterrupt" and the run went
on to the end, exiting 0. So the handlers also record the signal, such a swallowed exception is not printed (it
is acted on), and the command line checks the record where a run starts (:func:`raise_if_received`) and when a
command returns (:func:`received`).
"""
from __future__ import annotations

import signal
import sys
from typing import Any, Optional

__all__ = ["install", "received", "received_code", "raise_if_received", "EXIT_CODE", "INTERRUPT_CODE"]

EXIT_CODE = 143  # 128 + SIGTERM
INTERRUPT_CODE = 130  # 128 + SIGINT
_received: Optional[int] = None  # the exit code of the first signal received, None before one
_hooked = False


def _on_sigterm(signum, frame) -> None:
    global _received
    _received = _received or EXIT_CODE
    raise SystemExit(EXIT_CODE)


def _on_sigint(signum, frame) -> None:
    global _received
    _received = _received or INTERRUPT_CODE
    raise KeyboardInterrupt


def _quiet_recorded(previous: Any):
    """An unraisable hook that drops the exception of a recorded signal (acted on later), else ``previous``."""
    def hook(unraisable: Any) -> None:
        if _received is not None and isinstance(unraisable.exc_value, (KeyboardInterrupt, SystemExit)):
            return
        previous(unraisable)
    return hook


def install() -> None:
    """Handle SIGTERM and SIGINT as above (in the main thread; elsewhere, e.g. in tests, nothing changes). SIGINT
    only where Python's default handler is in place (an embedding application's own stays)."""
    global _hooked
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _on_sigint):
            signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not in the main thread
        return
    if not _hooked:
        sys.unraisablehook = _quiet_recorded(sys.unraisablehook)
        _hooked = True


def received() -> bool:
    """Whether a SIGTERM or SIGINT came since :func:`install`, including one whose exception was swallowed."""
    return _received is not None


def received_code() -> Optional[int]:
    """The exit code of the signal that came (143 for SIGTERM, 130 for SIGINT), None where none did."""
    return _received


def raise_if_received() -> None:
    """For the point where a run is about to start: ``SystemExit(143)`` after a SIGTERM, ``KeyboardInterrupt``
    after a SIGINT."""
    if _received == EXIT_CODE:
        raise SystemExit(EXIT_CODE)
    if _received == INTERRUPT_CODE:
        raise KeyboardInterrupt
