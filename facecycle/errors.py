"""Error types with documented exit codes (see README, "Exit codes")."""
from __future__ import annotations

__all__ = [
    "FaceCycleError", "UsageError", "InputError", "OutputError", "ModelError", "BackendUnavailable",
    "PipelineError", "EXIT_CODES",
]


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


EXIT_CODES = {
    0: "success",
    1: "unexpected internal error",
    2: "usage error (bad options)",
    3: "input error (missing, unreadable or undecodable input)",
    4: "output error (cannot write, exists without --overwrite, disk full)",
    5: "model error (corrupt or incompatible model file)",
    6: "backend or detector unavailable",
    7: "pipeline error (a stage failed, e.g. a camera stopped delivering frames)",
    130: "interrupted by SIGINT (outputs were flushed and closed)",
    143: "terminated by SIGTERM (outputs were flushed and closed)",
}
