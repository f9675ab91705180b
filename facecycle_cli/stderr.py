"""Standard error that cannot stop a run: the outputs matter more than the messages.

A command whose stderr is closed (``2>&-``), full (``2>/dev/full``) or a pipe whose reader went away
(``2>&1 | head -c 50``, a closed ssh session) stopped at its first message: the progress bar's first draw raised
``AttributeError`` (``sys.stderr`` is None when descriptor 2 is closed) or ``BrokenPipeError``, and the run ended
with an internal error, no video and a header-only CSV; with ``--no-progress`` every output was written but the
last line raised, and the command exited 1.

:func:`guard` puts a :class:`SafeStream` in ``sys.stderr``: a write that fails (``OSError``, ``BrokenPipeError``
among them, or ``ValueError`` on a closed file) is dropped, with every later one, and descriptor 2 is pointed at
``/dev/null`` so that what libraries write there (FFmpeg's log) and what the stream had buffered go nowhere. A
write that would block (a non-blocking terminal or pipe, full for now) loses that message only.
:func:`reserve_std_fds` opens ``/dev/null`` on a closed descriptor 0, 1 or 2 before any file is made: the CSV
would otherwise get descriptor 2 (the lowest free one), and every message a library writes to its stderr
(FFmpeg's, ONNX Runtime's) would go into the CSV.
"""
from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, Optional, TextIO

__all__ = ["SafeStream", "guard", "unguard", "reserve_std_fds"]

log = logging.getLogger(__name__)


def reserve_std_fds() -> None:
    """Open ``/dev/null`` on each of the descriptors 0, 1, 2 that is closed (nothing else changes)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


class SafeStream(io.TextIOBase):
    """A text stream in front of ``stream`` (maybe None) whose writes never raise: after the first that fails,
    every write is dropped (``failed`` is True); one that would block is dropped alone."""

    def __init__(self, stream: Optional[TextIO]) -> None:
        super().__init__()
        self._stream = stream
        self.failed = stream is None

    @property
    def wrapped(self) -> Optional[TextIO]:
        return self._stream

    def _fail(self) -> None:
        self.failed = True
        try:  # what the stream still buffers, and what C libraries write to the descriptor, go to /dev/null
            fd = self._stream.fileno() if self._stream is not None else -1
            if fd >= 0:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def write(self, s: str) -> int:  # type: ignore[override]
        if not self.failed:
            try:
                self._stream.write(s)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):  # for now (a non-blocking terminal or pipe that is full):
                pass  # this write is lost, later ones are tried (the last line, the one-line error, may get through)
            except (OSError, ValueError):
                self._fail()
        return len(s)

    def flush(self) -> None:
        if not self.failed:
            try:
                self._stream.flush()  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                pass
            except (OSError, ValueError):
                self._fail()

    def isatty(self) -> bool:
        if self.failed:
            return False
        try:
            return bool(self._stream.isatty())  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        if self._stream is None:
            raise io.UnsupportedOperation("standard error is closed")
        return self._stream.fileno()

    def close(self) -> None:  # sys.stderr is not ours to close
        self.flush()

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    @property
    def errors(self) -> Optional[str]:  # type: ignore[override]
        return getattr(self._stream, "errors", None) or "backslashreplace"

    def __getattr__(self, name: str) -> Any:  # anything else a caller asks of stderr (``buffer``, ``mode``)
        if name.startswith("__") or self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


def guard() -> Optional[SafeStream]:
    """Put a :class:`SafeStream` in ``sys.stderr`` (and in the logging handlers that write to the stream it
    replaces); returns it, or None where ``sys.stderr`` is one already (nothing to undo)."""
    if isinstance(sys.stderr, SafeStream):
        return None
    raw = sys.stderr
    safe = SafeStream(raw)
    sys.stderr = safe  # type: ignore[assignment]
    if raw is not None:
        for h in logging.getLogger().handlers:  # a handler made before (basicConfig in an embedding program)
            if isinstance(h, logging.StreamHandler) and h.stream is raw:
                h.setStream(safe)  # type: ignore[arg-type]
    return safe


def unguard(safe: Optional[SafeStream]) -> None:
    """Undo :func:`guard` (``safe`` its return value) for ``sys.stderr``; logging handlers keep the stream, which
    writes through to the same stream."""
    if safe is not None and sys.stderr is safe:
        sys.stderr = safe.wrapped  # type: ignore[assignment]
