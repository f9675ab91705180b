"""What the command line and the batch driver share about the process's signals and terminal.

:data:`TERMINATING`: the signals that end a run as SIGTERM does (outputs closed, exit 128 + the signal's number),
those this platform has: SIGTERM; SIGHUP (the terminal or ssh session closed), SIGXCPU (a CPU-time limit), POSIX;
SIGBREAK (Ctrl-Break), Windows. :data:`REPEATING`: those the kernel sends again while the cause lasts (SIGXCPU,
once per CPU-second past the soft limit), whose repeats must not interrupt the clean-up the first one started.
"""
from __future__ import annotations

import signal
import sys
from typing import List, Tuple

__all__ = ["TERMINATING", "REPEATING", "stderr_is_terminal", "stopping_signals"]

TERMINATING: Tuple[int, ...] = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGXCPU", "SIGBREAK")
                                     if hasattr(signal, n))
REPEATING: Tuple[int, ...] = tuple(getattr(signal, n) for n in ("SIGXCPU",) if hasattr(signal, n))


def stderr_is_terminal() -> bool:
    """Whether standard error is a terminal (False when it is closed, a file or a pipe): where a progress bar, which
    redraws its line with carriage returns, may be drawn."""
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
