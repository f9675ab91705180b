"""SIGTERM, SIGHUP, SIGXCPU and SIGINT for the command line: raise where the signal lands, and remember that it came.

SIGTERM raises ``SystemExit(143)``; SIGINT ``KeyboardInterrupt`` (exit 130), as Python's own handler does. SIGHUP
(the terminal or ssh session closed) and SIGXCPU (a CPU-time limit, ``ulimit -t``) end a run as SIGTERM does, with
their own exit codes (129, 152: 128 + the signal's number); their default action killed the process with the outputs
open (the sidecar said ``running``, the annotated video had no index). Where they are ignored when the command starts
(``nohup`` ignores SIGHUP), they stay ignored.

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
from typing import Any, Callable, Dict, Optional

from facecycle.terminal import REPEATING, TERMINATING, stopping_signals

__all__ = ["install", "received", "received_code", "raise_if_received", "record", "describe", "exit_code_of",
           "stopping_signals", "take_stopping_signals", "give_back_signals", "ignore_stopping_signals",
           "as_command_line", "EXIT_CODE", "INTERRUPT_CODE", "TERMINATING"]

EXIT_CODE = 143  # 128 + SIGTERM
INTERRUPT_CODE = 130  # 128 + SIGINT
_received: Optional[int] = None  # the exit code of the first signal received, None before one
#: whether this process is the command line (:func:`facecycle_cli.run`, set by :func:`as_command_line`): after a
#: signal it is on its way out, and a scope's end leaves the stopping signals ignored (:func:`give_back_signals`)
_command_line = False
_hooked = False


def exit_code_of(signum: int) -> int:
    """The exit code of a command stopped by ``signum``: 128 + its number, as a shell reports a signal's death."""
    return 128 + int(signum)


def describe(code: Optional[int]) -> str:
    """The word of the last line for a command stopped with exit ``code``: ``interrupted`` (SIGINT), ``terminated``
    (SIGTERM), ``terminated by SIGHUP (the terminal closed)``, ``terminated by SIGXCPU (the CPU time limit)``."""
    if code == INTERRUPT_CODE:
        return "interrupted"
    if code is None or code == EXIT_CODE:
        return "terminated"
    why = {"SIGHUP": "the terminal closed", "SIGXCPU": "the CPU time limit was reached"}
    try:
        name = signal.Signals(int(code) - 128).name
    except ValueError:
        return "terminated"
    return f"terminated by {name}" + (f" ({why[name]})" if name in why else "")


def _on_sigterm(signum: int, frame: Any) -> None:
    global _received
    if _received is not None and signum in REPEATING:  # SIGXCPU again, a CPU-second later: the clean-up goes on
        return
    code = exit_code_of(signum)
    _received = _received or code
    raise SystemExit(code)


def _on_sigint(signum: int, frame: Any) -> None:
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
    """Handle SIGTERM, SIGHUP, SIGXCPU and SIGINT as above (in the main thread; elsewhere, e.g. in tests, nothing
    changes). SIGINT only where Python's default handler is in place (an embedding application's own stays); SIGHUP
    and SIGXCPU only where their default action is (``nohup`` ignores SIGHUP: that stays). A signal recorded
    before (an earlier command line in this process: a notebook, a test session) is forgotten: it stopped that one,
    and every later ``main()`` ended "terminated", exit 143, before doing anything."""
    global _hooked, _received
    _received = None
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        for s in TERMINATING:
            if s != signal.SIGTERM and signal.getsignal(s) in (signal.SIG_DFL, _on_sigterm):
                signal.signal(s, _on_sigterm)
        if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _on_sigint):
            signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not in the main thread
        return
    if not _hooked:
        sys.unraisablehook = _quiet_recorded(sys.unraisablehook)
        _hooked = True


def record(signum: int) -> int:
    """Remember that ``signum`` came (a command's own handler that stops its run instead of raising, as ``process``
    does); returns its exit code. The first signal's code is kept."""
    global _received
    code = INTERRUPT_CODE if signum == signal.SIGINT else exit_code_of(signum)
    _received = _received or code
    return code


def received() -> bool:
    """Whether a SIGTERM, SIGHUP, SIGXCPU or SIGINT came since :func:`install`, including one whose exception was
    swallowed."""
    return _received is not None


def received_code() -> Optional[int]:
    """The exit code of the signal that came (143 for SIGTERM, 129 SIGHUP, 152 SIGXCPU, 130 SIGINT), None where none
    did."""
    return _received


def raise_if_received() -> None:
    """For the point where a run is about to start: ``SystemExit(128 + signum)`` after a SIGTERM, SIGHUP or
    SIGXCPU, ``KeyboardInterrupt`` after a SIGINT."""
    if _received == INTERRUPT_CODE:
        raise KeyboardInterrupt
    if _received is not None:
        raise SystemExit(_received)


def take_stopping_signals(handler: Callable[[int, Any], None]) -> Dict[int, Any]:
    """For a run's scope: a signal that came during start-up stops it now (:func:`raise_if_received`); then
    ``handler`` handles every stopping signal (:func:`facecycle.terminal.stopping_signals`). Returns the handlers it
    replaced, to put back at the scope's end (outside the main thread nothing is replaced: an empty dict)."""
    import signal

    raise_if_received()
    old: Dict[int, Any] = {}
    for s in stopping_signals():
        try:
            old[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread
            pass
    return old


def as_command_line() -> None:
    """Mark this process as the command line (:func:`facecycle_cli.run`; not a notebook's or a test's ``main()``)."""
    global _command_line
    _command_line = True


def give_back_signals(old: Dict[int, Any]) -> None:
    """The end of a :func:`take_stopping_signals` scope: the handlers it replaced, back, also after a signal stopped
    the run, where the process goes on (a notebook's or a test session's next ``main()``; a Jupyter kernel whose
    interrupt is a SIGINT could no longer be interrupted with it left ignored). On the command line after a signal
    (:func:`as_command_line`) they stay ignored instead: the process is on its way out, and a repeated Ctrl-C or
    SIGTERM must not cut short the clean-up after the scope (the analyzer's close, the Parquet dataset) nor kill
    the interpreter's shutdown (exit -2, not 130). A handler not set from Python (None) is put back as the default."""
    import signal

    for s, h in old.items():
        signal.signal(s, signal.SIG_IGN if (_command_line and _received is not None)
                      else (signal.SIG_DFL if h is None else h))


def ignore_stopping_signals() -> None:
    """For the command line's way out after a signal stopped it (:func:`facecycle_cli.run`): its outputs are closed,
    and a repeated Ctrl-C or SIGTERM during the interpreter's shutdown would kill it with the signal's default action
    (exit -2, not 130) or print a traceback. Outside the main thread nothing changes."""
    import signal

    for s in stopping_signals():
        try:
            signal.signal(s, signal.SIG_IGN)
        except ValueError:  # not the main thread
            return
