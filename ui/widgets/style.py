"""Colours shared by the panel, the plot and the legend."""
from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor, QFont

from realtime.types import EMOTIONS

__all__ = ["EMOTION_COLORS", "INTENSITY_COLOR", "EMOTIONS", "EMOTION_DASHES", "INTENSITY_DASH", "LEGEND_TEXT",
           "scaled_font"]

#: one colour per emotion, in EMOTIONS order: Okabe and Ito's colour-blind-safe set (vermillion, bluish green,
#: reddish purple, yellow, sky blue, orange) and a light grey. Each pair of them and the intensity's cyan is at least
#: 10 apart (CAM02-UCS) as people with full deuteranopia, protanopia or tritanopia see them (simulated, Machado et
#: al. 2009); the earlier set had fear and sad 5.7 apart for deuteranopes (tests/test_ui_a11y.py)
EMOTION_COLORS = {
    "angry": QColor("#D55E00"), "disgust": QColor("#009E73"), "fear": QColor("#CC79A7"),
    "happy": QColor("#F0E442"), "neutral": QColor(180, 180, 180), "sad": QColor("#56B4E9"),
    "surprise": QColor("#E69F00"),
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
