"""Colours shared by the panel, the plot and the legend."""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor

from realtime.types import EMOTIONS

__all__ = ["EMOTION_COLORS", "INTENSITY_COLOR", "EMOTIONS", "EMOTION_DASHES", "INTENSITY_DASH"]

#: one colour per emotion, in EMOTIONS order
EMOTION_COLORS = {
    "angry": QColor(230, 60, 60), "disgust": QColor(120, 180, 60), "fear": QColor(160, 90, 200),
    "happy": QColor(250, 200, 40), "neutral": QColor(170, 170, 170), "sad": QColor(70, 130, 230),
    "surprise": QColor(250, 130, 40),
}
INTENSITY_COLOR = QColor(60, 220, 220)  # cyan
#: the plot's lines also differ without colour: intensity solid (and thicker), the drawn emotions dashed, dotted
#: and dash-dotted, by rank (the legend draws each name's line)
INTENSITY_DASH = Qt.PenStyle.SolidLine
EMOTION_DASHES = (Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine)
assert set(EMOTION_COLORS) == set(EMOTIONS)
