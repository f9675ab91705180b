"""The CPUs this process may use, thread counts capped to them, and freed memory handed back to the OS.

A thread count far above the CPUs only costs: ``--threads 5000`` made ONNX Runtime start 5,000 threads per session
and five frames took over two minutes. Every ``--threads``-like option goes through :func:`cap_threads`.
"""
from __future__ import annotations

import logging
import os

__all__ = ["usable_cpus", "cap_threads", "release_free_memory"]

log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, e.g. under ``taskset`` or a batch
    scheduler's CPU set; else ``os.cpu_count()``); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def cap_threads(n: int, option: str) -> int:
    """``n`` threads, or the usable CPUs where ``n`` is more (with one warning naming ``option``, e.g.
    ``"--threads"``). Values < 1 are returned as they are: callers give them their own meaning or error."""
    cpus = usable_cpus()
    if n > cpus:
        log.warning("%s %d: more threads than the %d CPU(s) this process may use; using %d", option, n, cpus,
                    cpus)
        return cpus
    return n


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc's ``malloc_trim(0)``; elsewhere nothing): True where it
    ran. Called when a model closes: the app makes a new :class:`~realtime.analyzer.Analyzer` at every Start, and
    the freed model and session buffers stayed in the heap, fragmented, so the app grew by about 10 MB a restart
    (270 MB after 8 restarts of a 40-frame run, 366 MB without it)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only (musl has none)
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
