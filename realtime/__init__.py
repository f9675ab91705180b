"""Real-time pipeline: capture → detect → track → infer → render, with video and CSV outputs.

Main entry points: :class:`realtime.analyzer.Analyzer` (``from realtime import Analyzer``),
:func:`realtime.sources.open_source`, :func:`realtime.detectors.create_detector`,
:class:`realtime.pipeline.LatestFrame` (GUI bridge), the sinks in :mod:`realtime.sinks`
and the annotators in :mod:`realtime.annotators`. Submodules are imported lazily.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type checkers see the real names (at run time they are imported lazily, below)
    from .analyzer import Analyzer
    from .detectors import create_detector
    from .pipeline import LatestFrame
    from .sources import open_source
    from .types import Face, FramePacket

__all__ = ["Analyzer", "FramePacket", "Face", "LatestFrame", "open_source", "create_detector"]


def __dir__() -> list:  # the lazy names too (tab completion, dir())
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    if name == "Analyzer":
        from .analyzer import Analyzer
        return Analyzer
    if name in ("FramePacket", "Face"):
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
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
