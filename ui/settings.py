"""What the user chose: the run configuration and the overlay toggles."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

__all__ = ["Overlays", "RunConfig", "ROTATIONS"]

#: the turns a run may give its frames, in degrees clockwise (``realtime.Analyzer``'s ``rotate``)
ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class Overlays:
    """Overlay toggles. Frozen: the GUI swaps in a new object and the worker reads it once per frame.

    Attributes:
        boxes: face boxes with track ids.
        pose: head-pose axes.
        emotions: emotion bars (and the intensity meter) next to each face.
        neutral_thumb: the neutral face as a thumbnail next to each face.
        neutralized: show the neutralized frame (neutral faces pasted back).
    """

    boxes: bool = True
    pose: bool = True
    emotions: bool = True
    neutral_thumb: bool = False
    neutralized: bool = False

    @property
    def needs_neutral(self) -> bool:
        """Whether the model must compute neutral faces (an extra graph per frame)."""
        return self.neutral_thumb or self.neutralized

    def with_(self, **kw) -> "Overlays":
        return replace(self, **kw)


@dataclass(frozen=True)
class RunConfig:
    """One run of the pipeline.

    Attributes:
        source: a video file / stream / image folder path, or a camera index.
        model_dir: exported model directory (None: the shipped default).
        backend: inference backend name (``engines`` names; ``auto`` picks).
        detector: face detector name (``realtime.detectors`` names).
        detector_model: model for ``yunet`` / ``insightface`` (None for ``centerface``).
        realtime: play files at their own pace (like a camera; late frames dropped).
        max_faces: analyse at most this many faces per frame (None = all).
        neutral_reference: neutral faces from the track's least expressive earlier frame for strongly
            expressive faces (``realtime.neutral_reference``; the pipeline's default).
        rotate: turn every frame this many degrees clockwise (:data:`ROTATIONS`) before it is read: a video without
            its rotation tag, a camera mounted upside down, a person lying down.
    """

    source: Union[str, int]
    model_dir: Optional[str] = None
    backend: str = "auto"
    detector: str = "centerface"
    detector_model: Optional[str] = None
    realtime: bool = False
    max_faces: Optional[int] = None
    neutral_reference: bool = True
    rotate: int = 0

    @property
    def is_camera(self) -> bool:
        return isinstance(self.source, int) or str(self.source).startswith(("camera:", "/dev/video"))

    @property
    def source_label(self) -> str:
        return f"camera {self.source}" if isinstance(self.source, int) else str(self.source)
