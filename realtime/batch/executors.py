"""Where batch tasks run: in this process, one after another (no Ray needed), or as Ray tasks.

Both run :func:`realtime.batch.job.run_task`. A Ray worker process loads the model once (its first video)
and reuses it for every later video it gets (``job._cached_analyzer``). A worker process that dies mid-video
(killed, out of memory) makes Ray run the task again, up to ``retries`` times, on another worker process;
a bad input is not retried (``run_task`` returns it as a result instead of raising).

A worker's annotated video is encoded with as many threads as the worker reserved CPUs (``threads``,
``--threads-per-worker``): FFmpeg's own choice counts every core of the node (a Ray reservation is not an
affinity mask), and each of 64 one-CPU workers on a 64-core node started tens of encoder threads.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from facecycle.cpus import usable_cpus
from facecycle.errors import BackendUnavailable, UsageError, suggest_no_video
from facecycle.terminal import note

from .job import BatchSettings, clear_cache, run_task

__all__ = ["LocalExecutor", "RayExecutor", "ray_available", "RAY_MISSING"]

log = logging.getLogger(__name__)

RAY_MISSING = 'ray is not installed; pip install "facecycle-rt[cluster]"'

#: the one-line hint of a local Ray that did not start
RAY_START_HINT = "set RAY_TMPDIR to a short writable path, or use --cluster none"
#: the object store of a local Ray (a file of this size in /dev/shm, or Ray's temp folder)
OBJECT_STORE_BYTES = 128 * 1024 * 1024

#: the longest path a Unix socket may have (Linux: 108 bytes with the terminating NUL; macOS: 104)
_SOCKET_PATH_MAX = 107
#: what Ray adds to its temp folder for its longest socket: /session_<date>_<time>_<us>_<pid>/sockets/plasma_store
_RAY_SOCKET_TAIL = len("/session_2000-01-01_00-00-00_000000_/sockets/plasma_store")


def _ray_temp_dir() -> Optional[str]:
    """A short temp folder for a local Ray where the default's sockets would not fit a Unix socket path (a long
    ``TMPDIR``: Ray failed with "AF_UNIX path length cannot exceed 107 bytes" past about 41 characters), else None
    (Ray's own choice). ``RAY_TMPDIR``, where set, is the user's: kept as it is."""
    import sys
    import tempfile

    if os.environ.get("RAY_TMPDIR") or sys.platform == "win32":
        return None
    base = os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None  # as Ray picks its folder
    default = os.path.join(base or "/tmp", "ray")
    if len(default.encode("utf-8")) + _RAY_SOCKET_TAIL + len(str(os.getpid())) <= _SOCKET_PATH_MAX:
        return None
    short = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(short, f"ray-{uid}")


def _file_size_limit() -> Optional[int]:
    """The soft limit on the size of a file this process (and its children) may write, in bytes (``ulimit -f``),
    or None where there is none."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_object_store_fits() -> None:
    """Raise BackendUnavailable (exit 6, as a Ray that did not start) where ``ulimit -f`` is below a local Ray's
    object store: its store process, killed by SIGXFSZ as it sized its file, left ``ray.init`` waiting ~35 s for
    "Ray did not start (... timed out ...); set RAY_TMPDIR", which named neither the limit nor its remedy."""
    limit = _file_size_limit()
    if limit is None or limit >= OBJECT_STORE_BYTES:
        return
    raise BackendUnavailable(
        f"--cluster local: Ray's object store ({OBJECT_STORE_BYTES // 2**20} MiB, one file) is larger than a file "
        f"may be here (ulimit -f: {limit / 1024:g} KiB); use --cluster none, or raise the limit (ulimit -f unlimited)")


def ray_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


class LocalExecutor:
    """Runs tasks in this process, one at a time (``capacity`` 1), with one cached Analyzer. ``threads``: the CPUs
    the worker reserves (``--threads-per-worker``), its video encoder's thread count; 0 = FFmpeg's choice."""

    name = "in-process"

    def __init__(self, settings: BatchSettings, threads: int = 0) -> None:
        self.settings = settings
        self.threads = max(0, int(threads))
        self.capacity = 1
        self.workers = 1
        self._queue: List[Tuple[int, Dict[str, Any]]] = []
        self._frames: Dict[str, int] = {}
        self._next = 0
        self.on_progress = None

    def start(self) -> Dict[str, Any]:
        return {"mode": self.name, "workers": 1, "cpus": usable_cpus()}  # (its affinity mask and CPU quota)

    def submit(self, task: Dict[str, Any]) -> int:
        self._next += 1
        self._queue.append((self._next, task))
        return self._next

    def wait(self, handles: List[int], timeout: float) -> List[Tuple[int, Dict[str, Any]]]:
        if not self._queue:
            return []
        h, task = self._queue.pop(0)

        def progress(n: int) -> None:
            self._frames[task["rel"]] = n
            if self.on_progress is not None:
                self.on_progress()

        try:
            return [(h, run_task(task, self.settings, progress=progress, video_threads=self.threads))]
        finally:
            self._frames.pop(task["rel"], None)  # the inputs in flight, not the corpus (as the Ray board)

    def frames(self) -> Dict[str, int]:
        return dict(self._frames)

    def cancel(self) -> None:
        self._queue.clear()

    def shutdown(self) -> None:
        clear_cache()


class _ProgressBoard:
    """Ray actor: frames done per input of the attempts in flight (absolute counts, so a retry starts at 0)."""

    def __init__(self) -> None:
        self.frames: Dict[str, int] = {}

    def report(self, key: str, n: int) -> None:
        self.frames[key] = n

    def get(self) -> Dict[str, int]:
        return dict(self.frames)

    def forget(self, key: str) -> None:
        """An input whose attempt ended (the board holds the inputs in flight, not the corpus: it grew by one
        entry per input, and each progress poll copied all of them)."""
        self.frames.pop(key, None)


def _ray_entry(task: Dict[str, Any], settings: Dict[str, Any], board, threads: int = 0) -> Dict[str, Any]:
    """The Ray task: one video on whichever worker process Ray picked, which reserved ``threads`` CPUs for it."""
    # this worker's out-of-memory errors offer --no-video where the video is written, as the driver's do
    suggest_no_video(bool(settings.get("video") if isinstance(settings, dict) else getattr(settings, "video", False)))
    cb = None
    if board is not None:
        key = task["rel"]

        def cb(n: int) -> None:
            board.report.remote(key, n)
    return run_task(task, settings, progress=cb, video_threads=threads)


class RayExecutor:
    """Runs tasks on Ray: ``local`` starts a private Ray with ``workers × threads`` CPUs; ``auto`` or
    ``ray://HOST:PORT`` joins an existing cluster. At most ``workers`` videos are in flight; each reserves
    ``threads`` CPUs (and ``gpus`` GPUs)."""

    name = "ray"

    def __init__(self, settings: BatchSettings, cluster: str = "local", workers: Optional[int] = None,
                 threads: int = 1, gpus: float = 0.0, retries: int = 2) -> None:
        if not ray_available():
            raise BackendUnavailable(RAY_MISSING)  # a missing optional dependency: exit 6, as pyarrow
        self.settings = settings
        self.cluster = cluster
        self.workers = workers
        self.threads = max(1, int(threads))
        self.gpus = float(gpus or 0)
        self.retries = int(retries)
        self.capacity = 1
        self._refs: Dict[int, Any] = {}
        self._tasks: Dict[int, Dict[str, Any]] = {}
        self._next = 0
        self._started = False
        self._board = None
        self._frames_cache: Dict[str, int] = {}
        self.on_progress = None

    def start(self) -> Dict[str, Any]:
        if self.cluster == "local":
            check_object_store_fits()  # before Ray starts anything
        import ray

        cpus = usable_cpus()  # this process's CPU set (taskset, Slurm), not the machine's
        if self.cluster == "local":
            workers = self.workers or max(1, cpus // self.threads)
            need = workers * self.threads
            if need > cpus:
                log.warning("%d workers x %d threads = %d CPUs > the %d this process may use: they will contend",
                            workers, self.threads, need, cpus)
            # worker processes must import this very facecycle (a source checkout too): pass our sys.path on
            pkg_root = str(Path(__file__).resolve().parents[2])
            pp = os.environ.get("PYTHONPATH", "")
            if pkg_root not in pp.split(os.pathsep):
                os.environ["PYTHONPATH"] = pkg_root + (os.pathsep + pp if pp else "")
            extra: Dict[str, Any] = {}
            temp_dir = _ray_temp_dir()
            if temp_dir is not None:
                log.info("TMPDIR is too long for Ray's sockets (%d characters): Ray's files go to %s (RAY_TMPDIR "
                         "chooses another folder)", len(os.environ.get("TMPDIR", "")), temp_dir)
                extra["_temp_dir"] = temp_dir
            try:
                ray.init(num_cpus=max(need, 1), num_gpus=None, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, object_store_memory=OBJECT_STORE_BYTES,
                         configure_logging=True, **extra)
            except Exception as e:  # noqa: BLE001 - its temp folder, its sockets, its processes: exit 6, one line
                first = (str(e).strip().splitlines() or [""])[0][:300]
                try:
                    ray.shutdown()  # what did start (its GCS) goes
                except Exception:  # noqa: BLE001 - best effort
                    pass
                raise BackendUnavailable(f"--cluster local: Ray did not start ({type(e).__name__}: {first}); "
                                         f"{RAY_START_HINT}") from None
        else:
            address = self.cluster
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except ConnectionError as e:
                raise UsageError(f"--cluster {address}: cannot connect to a Ray cluster ({e}); "
                                 "start one with `ray start --head` or use --cluster local") from None
            res = ray.cluster_resources()
            total = int(res.get("CPU", 1))
            workers = self.workers or max(1, total // self.threads)
            if self.gpus:
                workers = min(workers, int(res.get("GPU", 0) / self.gpus)) or 1
        self._started = True
        self.workers = workers
        self.capacity = workers
        self._remote = ray.remote(num_cpus=self.threads, num_gpus=self.gpus, max_retries=self.retries,
                                  retry_exceptions=False)(_ray_entry)
        self._board = ray.remote(num_cpus=0)(_ProgressBoard).remote()
        self._settings_ref = ray.put(self.settings.to_dict())
        res = ray.cluster_resources()
        return {"mode": "ray", "cluster": self.cluster, "workers": workers, "threads_per_worker": self.threads,
                "gpus_per_worker": self.gpus, "retries": self.retries,
                "cluster_cpus": res.get("CPU"), "cluster_gpus": res.get("GPU", 0),
                "nodes": len([n for n in ray.nodes() if n.get("Alive")]), "ray": ray.__version__}

    def submit(self, task: Dict[str, Any]) -> int:
        self._next += 1
        self._refs[self._next] = self._remote.remote(task, self._settings_ref, self._board, self.threads)
        self._tasks[self._next] = task
        return self._next

    def wait(self, handles: List[int], timeout: float) -> List[Tuple[int, Dict[str, Any]]]:
        import ray

        refs = [self._refs[h] for h in handles if h in self._refs]
        if not refs:
            return []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        by_ref = {r: h for h, r in self._refs.items()}
        out = []
        for r in ready:
            h = by_ref[r]
            task = self._tasks.pop(h)
            del self._refs[h]
            if self._board is not None:
                self._board.forget.remote(task["rel"])
            try:
                res = ray.get(r)
            except ray.exceptions.RayError as e:  # the worker died on every attempt (or the cluster went away)
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                res = {"input": task["input"], "rel": task["rel"], "status": "failed", "exit_code": 3,
                       "error": f"worker lost {self.retries + 1} times ({type(e).__name__}: {first[:200]})",
                       "error_type": type(e).__name__, "retries": self.retries, "frames": 0}
            out.append((h, res))
        return out

    def frames(self) -> Dict[str, int]:
        import ray

        if self._board is None:
            return {}
        try:
            self._frames_cache = ray.get(self._board.get.remote(), timeout=2)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
        return dict(self._frames_cache)

    def cancel(self) -> None:
        import ray

        for r in self._refs.values():
            try:
                ray.cancel(r, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._refs.clear()

    def shutdown(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def make_executor(settings: BatchSettings, cluster: Optional[str], workers: Optional[int], threads: int,
                  gpus: float, retries: int, local_threads: int = 0):
    """``cluster`` None: Ray local when ray is installed, else in this process (``workers`` must be 1);
    ``none``: in this process; ``local`` / ``auto`` / ``ray://HOST:PORT``: Ray. ``threads``: the CPUs each Ray
    worker reserves (its video encoder's threads); ``local_threads``: the in-process worker's encoder threads (0:
    FFmpeg's choice, which sees this process's CPU set: one video at a time needs no cap unless asked)."""
    if cluster is None:
        if ray_available():
            cluster = "local"
        elif workers not in (None, 1):
            raise BackendUnavailable(f"--workers {workers} needs {RAY_MISSING}")
        else:
            note("facecycle batch: ray is not installed: processing in this process, one video at a time "
                 '(pip install "facecycle-rt[cluster]" for parallel workers)')
            cluster = "none"
    if cluster == "none":
        if workers not in (None, 1):
            raise UsageError("--cluster none runs one video at a time; drop --workers or use --cluster local")
        return LocalExecutor(settings, threads=local_threads)
    if cluster not in ("local", "auto") and not cluster.startswith("ray://"):
        raise UsageError(f"--cluster {cluster!r}: expected local, auto, ray://HOST:PORT or none")
    return RayExecutor(settings, cluster=cluster, workers=workers, threads=threads, gpus=gpus, retries=retries)

