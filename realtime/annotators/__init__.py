"""Annotators sharing one interface: ``annotate(image_bgr, packet) -> image_bgr``."""
from __future__ import annotations

from typing import List

from .base import Annotator, Compose, color_for
from .draw import (BoxAnnotator, EmotionBarAnnotator, InfoAnnotator, IntensityAnnotator, LandmarkAnnotator,
                   NeutralizedFaceAnnotator, NeutralThumbnailAnnotator, PoseAxesAnnotator)

__all__ = ["Annotator", "Compose", "color_for", "BoxAnnotator", "LandmarkAnnotator", "PoseAxesAnnotator",
           "EmotionBarAnnotator", "IntensityAnnotator", "NeutralThumbnailAnnotator", "NeutralizedFaceAnnotator",
           "InfoAnnotator", "default_annotator"]


def default_annotator(boxes: bool = True, landmarks: bool = True, pose: bool = True, emotions: bool = True,
                      intensity: bool = True, thumbnail: bool = True, neutralized: bool = False) -> Compose:
    """The standard overlay (each part can be switched off; ``neutralized`` pastes the neutral face back)."""
    a: List[Annotator] = []
    if neutralized:
        a.append(NeutralizedFaceAnnotator())
    if boxes:
        a.append(BoxAnnotator())
    if landmarks:
        a.append(LandmarkAnnotator())
    if pose:
        a.append(PoseAxesAnnotator())
    if intensity:
        a.append(IntensityAnnotator())
    if emotions:
        a.append(EmotionBarAnnotator())
    if thumbnail:
        a.append(NeutralThumbnailAnnotator())
    return Compose(a)
