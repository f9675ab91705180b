"""The CPUs this process may use, thread counts capped to them, and freed memory handed back to the OS.

A thread count far above the CPUs only costs: ``--threads 5000`` made ONNX Runtime start 5,000 threads per session
and five frames took over two minutes. Every ``--threads``-like option goes through :func:`cap_threads`.

The CPUs a process may use are its affinity mask (``taskset``, a scheduler's CPU set) and its CPU quota: a container's
``docker run --cpus=2`` or Kubernetes limit, a systemd ``CPUQuota`` (the cgroup's ``cpu.max`` or
``cpu.cfs_quota_us``) and Slurm's ``SLURM_CPUS_PER_TASK``. A quota leaves the affinity mask as it is, the whole host:
on a 64-CPU host under a 2-CPU quota, sizing by the mask started 64 Ray workers and about 265 threads for one
``process`` run.
"""
from __future__ import annotations

import functools
import logging
import math
import os
from typing import Dict, List, Optional, Tuple

__all__ = ["usable_cpus", "cpu_quota", "reset_cpu_cache", "codec_threads", "cli_thread_env", "cap_threads",
           "release_free_memory"]

log = logging.getLogger(__name__)

#: where the process's cgroups are read (tests point them at a tree of their own)
_PROC_CGROUP = "/proc/self/cgroup"
_MOUNTINFO = "/proc/self/mountinfo"
_CGROUP_ROOT = "/sys/fs/cgroup"

#: the most threads :func:`codec_threads` gives FFmpeg (its own automatic count stops at 16 too)
CODEC_THREADS_MAX = 16


def _affinity_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _cgroup_mounts() -> List[Tuple[str, str, str, str]]:
    """(fstype, super options, mount root, mount point) of the cgroup file systems in ``/proc/self/mountinfo``."""
    out = []
    try:
        text = _read(_MOUNTINFO)
    except OSError:
        return out
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        out.append((tail[0], tail[2], fields[3], fields[4]))
    return out


def _dirs(mount: str, root: str, path: str) -> List[str]:
    """The cgroup folder of ``path`` (the process's cgroup, as ``/proc/self/cgroup`` names it) under a file system
    mounted at ``mount`` from ``root``, then its parents up to the mount point (a parent's quota limits its children
    too). Inside a cgroup namespace the path is ``/`` and the mount point is the container's own cgroup."""
    rel = path
    if root not in ("", "/") and (path == root or path.startswith(root.rstrip("/") + "/")):
        rel = path[len(root.rstrip("/")):]
    parts = [p for p in rel.split("/") if p and p not in (".", "..")]
    dirs = [os.path.join(mount, *parts[:i]) for i in range(len(parts), -1, -1)]
    return dirs


def _limit_v2(folder: str) -> Optional[float]:
    try:
        quota, period = (_read(os.path.join(folder, "cpu.max")).split() + ["100000"])[:2]
    except OSError:
        return None
    if quota == "max" or float(period) <= 0:
        return None
    return float(quota) / float(period)


def _limit_v1(folder: str) -> Optional[float]:
    try:
        quota = float(_read(os.path.join(folder, "cpu.cfs_quota_us")).strip())
        period = float(_read(os.path.join(folder, "cpu.cfs_period_us")).strip())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: none
        return None
    return quota / period


def _cgroup_quota() -> Optional[float]:
    """The CPU quota (CPUs, may be fractional) of the process's cgroup and its parents, or None where there is none
    or it cannot be read."""
    try:
        lines = _read(_PROC_CGROUP).splitlines()
    except OSError:
        return None
    mounts = _cgroup_mounts()
    limits: List[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2 (unified)
            where = [(m, r) for fs, _, r, m in mounts if fs == "cgroup2"] or [(_CGROUP_ROOT, "/")]
            read = _limit_v2
        elif "cpu" in controllers.split(","):  # v1
            where = [(m, r) for fs, opts, r, m in mounts if fs == "cgroup" and "cpu" in opts.split(",")]
            where = where or [(os.path.join(_CGROUP_ROOT, d), "/") for d in ("cpu", "cpu,cpuacct")]
            read = _limit_v1
        else:
            continue
        for mount, root in where:
            for folder in _dirs(mount, root, path):
                got = read(folder)
                if got is not None and got > 0:
                    limits.append(got)
    return min(limits) if limits else None


def _slurm_cpus() -> Optional[int]:
    try:
        n = int(os.environ.get("SLURM_CPUS_PER_TASK", "").strip())
    except ValueError:
        return None
    return n if n > 0 else None


@functools.lru_cache(maxsize=None)
def cpu_quota() -> Optional[int]:
    """The CPUs this process's quota allows (a whole number, rounded up), or None where it has none: the cgroup's
    (``cpu.max``, or ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, of its cgroup and the cgroups above it) and
    ``SLURM_CPUS_PER_TASK``. Read once a process (``cpu_quota.cache_clear()`` reads it again)."""
    found: List[int] = []
    try:
        q = _cgroup_quota()
    except Exception:  # noqa: BLE001 - an odd cgroup file system is no quota, never an error
        log.debug("could not read the cgroup CPU quota", exc_info=True)
        q = None
    if q is not None:
        found.append(max(1, math.ceil(q - 1e-9)))
    slurm = _slurm_cpus()
    if slurm is not None:
        found.append(slurm)
    return min(found) if found else None


@functools.lru_cache(maxsize=None)
def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (``taskset``, a batch scheduler's CPU
    set; else ``os.cpu_count()``), fewer where a CPU quota allows fewer (:func:`cpu_quota`: a container's
    ``--cpus``, a Kubernetes limit, ``SLURM_CPUS_PER_TASK``); at least 1. Read once a process (tests:
    :func:`reset_cpu_cache`)."""
    cpus = _affinity_cpus()
    quota = cpu_quota()
    if quota is not None and quota < cpus:
        log.debug("CPU quota: %d of the %d CPU(s) in this process's affinity mask", quota, cpus)
        cpus = quota
    return max(1, cpus)


def reset_cpu_cache() -> None:
    """Forget the CPUs read (tests that change the affinity, the cgroup files or ``SLURM_CPUS_PER_TASK``)."""
    cpu_quota.cache_clear()
    usable_cpus.cache_clear()


def codec_threads(n: int) -> int:
    """A thread count for FFmpeg (a decoder, the encoder): ``n`` where given (> 0). For 0 (FFmpeg's own choice)
    0 again where that choice is right, and the usable CPUs (at most :data:`CODEC_THREADS_MAX`) where a quota allows
    fewer CPUs than the affinity mask FFmpeg and libx264 count: under a 2-CPU container quota on a 64-CPU host the
    decoder started 16 threads and libx264 about 37."""
    if n:
        return n
    cpus = usable_cpus()
    if cpus < _affinity_cpus():
        return min(cpus, CODEC_THREADS_MAX)
    return 0


def cli_thread_env() -> Dict[str, str]:
    """The thread-count variables the ``facecycle`` command sets where the environment has none, before anything
    imports numpy (the library sets none: a notebook's numpy is its own).

    ``OPENBLAS_NUM_THREADS=1``: OpenBLAS (numpy's, OpenCV's and SciPy's copies each) starts a thread per CPU as it is
    imported, and the pipeline does no heavy linear algebra: on a 64-CPU view ``import realtime.analyzer`` started
    190 threads and 14.1 GB of address space, so a ``ulimit -v`` (SGE's ``h_vmem``) of 1-8 GB failed at import
    ("OpenBLAS error: Memory allocation still failed", or a segfault). ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``:
    the usable CPUs where a CPU quota allows fewer than the affinity mask OpenMP and MKL count; else unset (torch's
    own default: ``facecycle train --threads 0``; 1 would make training single-threaded)."""
    env = {"OPENBLAS_NUM_THREADS": "1"}
    cpus = usable_cpus()
    if cpus < _affinity_cpus():
        env.update(OMP_NUM_THREADS=str(cpus), MKL_NUM_THREADS=str(cpus))
    return env


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
