"""SIGTERM for the command line: raise ``SystemExit(143)`` where the signal lands, and remember that it came.

Raising from the handler stops a command at once, with its ``finally`` blocks and context managers run. But
an exception raised at an arbitrary point can be swallowed by library code: a SIGTERM that lands while
onnxruntime's extension module loads (during the model's start-up) disappeared that way, and the run went on to
the end and exited 0. So the handler also records the signal, and the command line checks the record where a
run starts (:func:`raise_if_received`) and when a command returns (:func:`received`).
"""
from __future__ import annotations

import signal

__all__ = ["install", "received", "raise_if_received", "EXIT_CODE"]

EXIT_CODE = 143  # 128 + SIGTERM
_received = False


def _on_sigterm(signum, frame) -> None:
    global _received
    _received = True
    raise SystemExit(EXIT_CODE)


def install() -> None:
    """Handle SIGTERM as above (in the main thread; elsewhere, e.g. in tests, nothing changes)."""
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not in the main thread
        pass


def received() -> bool:
    """Whether a SIGTERM came since :func:`install`, including one whose exception something swallowed."""
    return _received


def raise_if_received() -> None:
    """``SystemExit(143)`` if a SIGTERM came: for the point where a run is about to start."""
    if _received:
        raise SystemExit(EXIT_CODE)
