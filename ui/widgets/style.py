"""Colours shared by the panel, the plot and the legend."""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QFont

from realtime.types import EMOTIONS

__all__ = ["EMOTION_COLORS", "INTENSITY_COLOR", "EMOTIONS", "EMOTION_DASHES", "INTENSITY_DASH", "LEGEND_TEXT",
           "scaled_font"]

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

#: the plot legend's names: a light neutral grey, 12.9:1 on the plot's (28, 28, 30); in their own colours "fear" was
#: 3.9:1 and "angry" 4.1:1, under WCAG AA's 4.5:1 for text this small (the line sample before each keeps the colour)
LEGEND_TEXT = QColor("#e0e0e0")


def scaled_font(font: QFont, factor: float) -> QFont:
    """``font`` at ``factor`` times its size: the panel's small print follows the user's font size (a fixed 8 pt
    stayed 8 pt under a 1.5x desktop font). A font sized in pixels (no point size) is scaled in pixels."""
    f = QFont(font)
    if f.pointSizeF() > 0:
        f.setPointSizeF(f.pointSizeF() * factor)
    elif f.pixelSize() > 0:
        f.setPixelSize(max(1, round(f.pixelSize() * factor)))
    return f
