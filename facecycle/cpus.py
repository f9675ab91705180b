"""The CPUs this process may use, and thread counts capped to them.

A thread count far above the CPUs only costs: ``--threads 5000`` made ONNX Runtime start 5,000 threads per session
and five frames took over two minutes. Every ``--threads``-like option goes through :func:`cap_threads`.
"""
from __future__ import annotations

import logging
import os

__all__ = ["usable_cpus", "cap_threads"]

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
