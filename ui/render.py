"""Overlay drawing for the GUI: the pipeline's annotators, chosen by the current :class:`~ui.settings.Overlays`.

Runs in the session's worker thread, once per frame, so the recorded video
shows exactly what the window shows. Sets ``packet.annotated`` (BGR uint8,
a copy of ``packet.image``) or leaves it None when every overlay is off.
"""
from __future__ import annotations

import time
from functools import lru_cache

from realtime.annotators import Compose, default_annotator

from .settings import Overlays

__all__ = ["annotator_for", "render"]


@lru_cache(maxsize=64)
def annotator_for(overlays: Overlays) -> Compose:
    """The annotator stack for a set of toggles (boxes include the landmarks; emotions the intensity meter)."""
    return default_annotator(boxes=overlays.boxes, landmarks=overlays.boxes, pose=overlays.pose,
                             emotions=overlays.emotions, intensity=overlays.emotions,
                             thumbnail=overlays.neutral_thumb, neutralized=overlays.neutralized)


def render(packet, overlays: Overlays) -> None:
    """Draw ``overlays`` on a copy of ``packet.image`` into ``packet.annotated`` (timed as stats['render'])."""
    ann = annotator_for(overlays)
    if not ann.annotators:
        packet.annotated = None
        return
    t = time.perf_counter()
    ann.annotate(packet.image, packet)
    packet.stats["render"] = time.perf_counter() - t
