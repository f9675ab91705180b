"""What the command line and the batch driver share about the process's signals and terminal.

:func:`note`: a line for the person at the terminal (an input's end line, a batch's summary), on standard error,
left out under ``--quiet`` (:func:`set_quiet`). Errors are not notes and are always said; warnings go through
``logging``, whose level ``--quiet`` sets to ERROR.

:data:`TERMINATING`: the signals that end a run as SIGTERM does (outputs closed, exit 128 + the signal's number),
those this platform has: SIGTERM; SIGHUP (the terminal or ssh session closed), SIGXCPU (a CPU-time limit), POSIX;
SIGBREAK (Ctrl-Break), Windows. :data:`REPEATING`: those the kernel sends again while the cause lasts (SIGXCPU,
once per CPU-second past the soft limit), whose repeats must not interrupt the clean-up the first one started.
"""
from __future__ import annotations

import signal
import sys
from typing import List, Tuple

__all__ = ["TERMINATING", "REPEATING", "stderr_is_terminal", "stopping_signals", "set_quiet", "quiet", "note"]

TERMINATING: Tuple[int, ...] = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGXCPU", "SIGBREAK")
                                     if hasattr(signal, n))
REPEATING: Tuple[int, ...] = tuple(getattr(signal, n) for n in ("SIGXCPU",) if hasattr(signal, n))
_QUIET = False  # --quiet (set_quiet)


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (False when it is closed, a file or a pipe, and under ``--quiet``): where
    a progress bar, which redraws its line with carriage returns, may be drawn."""
    if _QUIET:
        return False
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError, AttributeError):
        return False


def stopping_signals() -> List[int]:
    """SIGINT and the :data:`TERMINATING` signals a run should catch now: SIGTERM always, SIGHUP and SIGXCPU unless
    ignored (``nohup``: the run must go on when the terminal closes)."""
    out = [signal.SIGINT, signal.SIGTERM]
    for s in TERMINATING:
        if s != signal.SIGTERM and signal.getsignal(s) != signal.SIG_IGN:
            out.append(s)
    return out



def set_quiet(on: bool) -> None:
    """``--quiet``: :func:`note` says nothing from now on."""
    global _QUIET
    _QUIET = bool(on)


def quiet() -> bool:
    return _QUIET


def note(message: str) -> None:
    """``message`` on standard error as one line, unless quiet; a stderr that is closed or gone costs nothing."""
    if _QUIET:
        return
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass
