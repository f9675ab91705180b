"""Overlay toggles -> the pipeline's annotator stack.

The session hands the result to the run (``run.outputs.set_annotator``), which
draws it on every frame on the run's own path, so the recorded video and the
window show exactly what ``facecycle process`` would draw with the same overlay.
"""
from __future__ import annotations

from functools import lru_cache

from realtime.annotators import Compose, default_annotator

from .settings import Overlays

__all__ = ["annotator_for"]


@lru_cache(maxsize=64)
def annotator_for(overlays: Overlays) -> Compose:
    """The annotator stack for a set of toggles (boxes include the landmarks; emotions the intensity meter).
    Every toggle off gives an empty stack: nothing is drawn and ``packet.annotated`` stays None."""
    return default_annotator(boxes=overlays.boxes, landmarks=overlays.boxes, pose=overlays.pose,
                             emotions=overlays.emotions, intensity=overlays.emotions,
                             thumbnail=overlays.neutral_thumb, neutralized=overlays.neutralized)
