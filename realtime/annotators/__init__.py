"""Annotators sharing one interface: ``annotate(image_bgr, packet) -> image_bgr``."""
from __future__ import annotations

from typing import List

from .base import Annotator, Compose, color_for
from .draw import (
    BoxAnnotator,
    FacePanelAnnotator,
    InfoAnnotator,
    LandmarkAnnotator,
    NeutralizedFaceAnnotator,
    Placement,
    PoseAxesAnnotator,
)

__all__ = ["Annotator", "Compose", "color_for", "BoxAnnotator", "LandmarkAnnotator", "PoseAxesAnnotator",
           "FacePanelAnnotator", "Placement", "NeutralizedFaceAnnotator", "InfoAnnotator", "default_annotator"]


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
    if emotions or intensity or thumbnail:  # one panel (in a crowd: a compact label) per face, laid out to
        # stay readable: off the other faces and panels, next to its own face (layout.py)
        a.append(FacePanelAnnotator(emotions=emotions, intensity=intensity, thumbnail=thumbnail))
    return Compose(a)
