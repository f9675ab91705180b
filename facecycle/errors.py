"""Error types with documented exit codes (see README, "Exit codes")."""
from __future__ import annotations

import errno

__all__ = [
    "FaceCycleError", "UsageError", "InputError", "OutputError", "ModelError", "BackendUnavailable",
    "PipelineError", "OutOfMemory", "EXIT_CODES", "is_out_of_memory", "address_space_limited", "suggest_no_video",
]

#: what allocation failures say in libraries that raise them as text (FFmpeg, ONNX Runtime, C++, OpenCV: its
#: "(-4:Insufficient memory) Failed to allocate 6220800 bytes", e.g. the detect stage's resize under ``ulimit -v``)
_OOM_TEXT = ("Cannot allocate memory", "Failed to allocate memory", "std::bad_alloc", "out of memory",
             "Insufficient memory")
#: what Python says when a thread cannot start (``pthread_create`` failed): where the address space is limited,
#: memory (each thread maps its stack: under ``ulimit -v 1050000`` a run ended "internal error: RuntimeError: can't
#: start new thread", exit 1); else a limit on processes (``ulimit -u``), not memory
_THREAD_TEXT = "can't start new thread"
#: what the dynamic loader says when it cannot map a library: under a limit on the address space, memory; else
#: (a library on a ``noexec`` mount) not
_MAP_TEXT = "failed to map segment from shared object"


class FaceCycleError(Exception):
    """Base class: ``str(err)`` is the one-line message shown to the user."""

    exit_code = 1


class UsageError(FaceCycleError):
    """Bad option values or combinations."""

    exit_code = 2


class InputError(FaceCycleError):
    """A missing, unreadable or undecodable input (video, image, camera, dataset)."""

    exit_code = 3


class OutputError(FaceCycleError):
    """An output that cannot be written (permissions, existing file, disk full)."""

    exit_code = 4


class ModelError(FaceCycleError):
    """A corrupt, truncated or incompatible model file (weights, ONNX, engine, head)."""

    exit_code = 5


class BackendUnavailable(FaceCycleError):
    """A requested inference backend or detector that is not installed or has no device."""

    exit_code = 6


class PipelineError(FaceCycleError):
    """A stage of the real-time pipeline failed (camera stopped delivering frames, say)."""

    exit_code = 7


class OutOfMemory(PipelineError):
    """The process could not allocate memory (:func:`is_out_of_memory`): under a limit on its address space
    (``ulimit -v``, a scheduler's ``h_vmem``) a good file was reported as damaged or undecodable."""

    @classmethod
    def while_(cls, what: str, e: BaseException) -> "OutOfMemory":
        """The error for ``e`` raised while doing ``what`` (e.g. "decoding clip.mp4"), naming the limit if any, and
        ``--no-video`` where this run writes an annotated video (:func:`suggest_no_video`)."""
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        limit = _address_space_limit()
        if limit:
            where = f"; this process may use {limit / 2**30:.1f} GB of address space (ulimit -v): raise the limit"
            where += " or try --no-video" if _no_video_hint else ""
        elif _no_video_hint:
            where = "; free memory, process smaller inputs or try --no-video"
        else:
            where = "; free memory or process smaller inputs"
        return cls(f"out of memory while {what} ({detail}){where}")


#: whether this process's out-of-memory errors offer ``--no-video`` (:func:`suggest_no_video`)
_no_video_hint = False


def suggest_no_video(on: bool = True) -> None:
    """Whether :meth:`OutOfMemory.while_`'s hint offers ``--no-video``: a CLI run that writes the annotated video
    (its encoder's threads and frame buffers are memory the run can do without) says ``on``."""
    global _no_video_hint
    _no_video_hint = bool(on)


def _address_space_limit() -> "int | None":
    """The soft limit on this process's address space in bytes (``ulimit -v``), or None where there is none."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def is_out_of_memory(e: BaseException, eagain: bool = False) -> bool:
    """Whether ``e`` says memory could not be allocated: a MemoryError, an OSError with ENOMEM, or the words
    libraries use. With ``eagain``, EAGAIN too where the address space is limited (FFmpeg's threads that cannot
    start under ``ulimit -v`` fail with it); a library the loader could not map, and a thread Python could not
    start, only where it is limited."""
    if isinstance(e, MemoryError):
        return True
    code = getattr(e, "errno", None)
    if code == errno.ENOMEM or (eagain and code == errno.EAGAIN and _address_space_limit()):
        return True
    text = str(e)
    if any(t in text for t in _OOM_TEXT):
        return True
    return (_MAP_TEXT in text or _THREAD_TEXT in text) and bool(_address_space_limit())


def address_space_limited() -> bool:
    """Whether this process's address space is limited (``ulimit -v``, a scheduler's ``h_vmem``)."""
    return bool(_address_space_limit())


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error",
    2: "usage error (bad options)",
    3: "input error (missing, unreadable or undecodable input)",
    4: "output error (cannot write, exists without --overwrite, disk full)",
    5: "model error (corrupt or incompatible model file)",
    6: "backend or detector unavailable",
    7: "pipeline error (a stage failed, e.g. a camera stopped delivering frames; out of memory)",
    129: "terminated by SIGHUP, the terminal closed (outputs were flushed and closed)",
    130: "interrupted by SIGINT (outputs were flushed and closed)",
    143: "terminated by SIGTERM (outputs were flushed and closed)",
    149: "terminated by SIGBREAK, Ctrl-Break on Windows (outputs were flushed and closed)",
    152: "terminated by SIGXCPU, a CPU-time limit (outputs were flushed and closed)",
}
