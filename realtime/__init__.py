"""Real-time pipeline: capture → detect → track → infer → render, with video and CSV outputs.

Main entry points: :class:`realtime.analyzer.Analyzer` (``from realtime import Analyzer``),
:func:`realtime.sources.open_source`, :func:`realtime.detectors.create_detector`,
:class:`realtime.pipeline.LatestFrame` (GUI bridge), the sinks in :mod:`realtime.sinks`
and the annotators in :mod:`realtime.annotators`. Submodules are imported lazily.

The errors the API raises (one-line messages; the command line's exit codes) are here too:
``realtime.UsageError``, ``InputError``, ``OutputError``, ``ModelError``, ``BackendUnavailable``,
``PipelineError``, ``OutOfMemory``, all subclasses of ``realtime.FaceCycleError`` (defined in
:mod:`facecycle.errors`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import facecycle  # noqa: F401 - first: it turns ONNX Runtime's telemetry off before anything imports it

if TYPE_CHECKING:  # type checkers see the real names (at run time they are imported lazily, below)
    from facecycle.errors import (
        BackendUnavailable,
        FaceCycleError,
        InputError,
        ModelError,
        OutOfMemory,
        OutputError,
        PipelineError,
        UsageError,
    )

    from .analyzer import Analyzer, Run, RunStats
    from .detectors import create_detector
    from .pipeline import LatestFrame
    from .sources import open_source
    from .types import EMOTIONS, Face, FramePacket, as_bgr_image

#: the error classes of :mod:`facecycle.errors` the API raises, exported here
_ERRORS = ("FaceCycleError", "UsageError", "InputError", "OutputError", "ModelError", "BackendUnavailable",
           "PipelineError", "OutOfMemory")

__all__ = ["Analyzer", "Run", "RunStats", "FramePacket", "Face", "EMOTIONS", "as_bgr_image", "LatestFrame",
           "open_source", "create_detector", "FaceCycleError", "UsageError", "InputError", "OutputError", "ModelError",
           "BackendUnavailable", "PipelineError", "OutOfMemory"]


def __dir__() -> list[str]:  # the public names (tab completion, dir()): the lazy ones too, and the submodules
    import types  # imported so far (realtime.sources, ...), no helpers

    return sorted(set(__all__) | {k for k, v in globals().items() if isinstance(v, types.ModuleType)
                                  and getattr(v, "__name__", "").startswith(__name__ + ".")})


def _lazy(name: str) -> object:
    if name in ("Analyzer", "Run", "RunStats"):
        from . import analyzer
        return getattr(analyzer, name)
    if name in ("FramePacket", "Face", "EMOTIONS", "as_bgr_image"):
        from . import types
        return getattr(types, name)
    if name == "LatestFrame":
        from .pipeline import LatestFrame
        return LatestFrame
    if name == "open_source":
        from .sources import open_source
        return open_source
    if name == "create_detector":
        from .detectors import create_detector
        return create_detector
    if name in _ERRORS:
        from facecycle import errors
        return getattr(errors, name)
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")


if not TYPE_CHECKING:  # (hidden from type checkers: a module __getattr__ typed Any let any name, a typo too, pass)
    __getattr__ = _lazy

# the names this module only uses itself are not left in its namespace (``realtime.List``, ``realtime.annotations``
# came up in tab completion)
del TYPE_CHECKING, annotations, _lazy
