"""The per-face side panel: one card per tracked face with emotion bars, pose, neutral face and a time plot."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
from PyQt6.QtCore import QEvent, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPixmap
from PyQt6.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

from ..bridge import FaceSample
from ..imaging import rgb_to_qimage
from .plot import ThrottledText, TimePlot
from .style import EMOTION_COLORS, EMOTIONS, scaled_font

__all__ = ["EmotionBars", "FaceCard", "FacePanel", "THUMB_TEXT", "THUMB_BACKGROUND", "PANEL_BORDER"]

#: the neutral-face thumbnail's "neutral face off" text and background
THUMB_TEXT, THUMB_BACKGROUND = "#aaaaaa", "#222222"

#: the side panel's border without the focus (with it: the palette's highlight)
PANEL_BORDER = "#2a2a2e"


class EmotionBars(QWidget):
    """Seven horizontal bars (probabilities in ``EMOTIONS`` order), or a note when there is no expression head.

    Its text is ``text_scale`` times the widget's font (8 pt at the usual 9 pt); the rows, the name column (the
    widest emotion name) and the value column are measured in that font, so a large desktop font enlarges them
    instead of clipping the names. The values are also its tooltip and accessible description, in words
    (``"happy 0.62, neutral 0.20, …"``, most probable first): a screen reader gets no pixels. Those change at most
    once a second (:attr:`description`).
    """

    text_scale = 0.9  # the bars' labels and values, relative to the widget's font
    NO_HEAD = "emotions: this model has no expression head"

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.values: Optional[np.ndarray] = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Emotion probabilities")
        self.description = ThrottledText(self._set_description, self)
        self._apply_font()
        self._describe()

    def _metrics(self) -> QFontMetrics:
        return QFontMetrics(scaled_font(self.font(), self.text_scale))

    def geometry_px(self) -> Dict[str, int]:
        """The layout in px for the current font: ``row`` height, ``label`` (name) and ``value`` column widths.
        At the usual 9 pt font: 14, 58 and 38, the sizes it had when they were fixed."""
        fm = self._metrics()
        pad = 2 * fm.averageCharWidth() + 2
        return {"row": fm.height() + 1, "label": max(fm.horizontalAdvance(n) for n in EMOTIONS) + pad,
                "value": fm.horizontalAdvance("0.00") + pad}

    def _apply_font(self) -> None:
        self.setFixedHeight(7 * self.geometry_px()["row"] + 4)
        self.updateGeometry()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:  # the user's font size: rows and columns follow it
            self._apply_font()
            self.update()
        super().changeEvent(event)

    def sizeHint(self) -> QSize:
        g = self.geometry_px()
        return QSize(max(240, g["label"] + g["value"] + 144), 7 * g["row"] + 4)

    def set_values(self, values: Optional[np.ndarray]) -> None:
        self.values = None if values is None else np.asarray(values, np.float32)
        self._describe()
        self.update()

    def text(self) -> str:
        """The values in words, most probable first: ``"happy 0.62, neutral 0.20, …"``."""
        if self.values is None:
            return self.NO_HEAD
        v = np.clip(self.values, 0, 1)
        return ", ".join(f"{EMOTIONS[i]} {float(v[i]):.2f}" for i in np.argsort(-v, kind="stable"))

    def _describe(self) -> None:
        # at most once a second (the values change at 15 Hz: a screen reader was told of each), at once where the
        # head comes or goes
        self.description.set(self.text(), self.values is None)

    def _set_description(self, text: str) -> None:
        self.setAccessibleDescription(text)
        self.setToolTip(text)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setFont(scaled_font(self.font(), self.text_scale))
        # the names and numbers are English and Western digits: laid out left to right in a right-to-left layout
        # too. The rows follow the layout as a progress bar does: there the names are on the right, the bars grow
        # from them to the left and the values are on the left (the painter mirrored the text's alignment only:
        # the names stood right-aligned on the left of bars that grew to the right)
        rtl = self.layoutDirection() == Qt.LayoutDirection.RightToLeft
        p.setLayoutDirection(Qt.LayoutDirection.LeftToRight)
        g = self.geometry_px()
        row, label_w, value_w = g["row"], g["label"], g["value"]
        w = self.width()
        if self.values is None:
            p.setPen(QColor(150, 150, 150))
            p.drawText(QRectF(0, 0, w, self.height()), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.NO_HEAD)
            p.end()
            return

        def visual(r: QRectF) -> QRectF:  # a rect laid out left to right, where the layout's direction puts it
            return QRectF(w - r.right(), r.top(), r.width(), r.height()) if rtl else r

        lead, trail = ((Qt.AlignmentFlag.AlignRight, Qt.AlignmentFlag.AlignLeft) if rtl
                       else (Qt.AlignmentFlag.AlignLeft, Qt.AlignmentFlag.AlignRight))
        for i, name in enumerate(EMOTIONS):
            y = 2 + i * row
            p.setPen(QColor(200, 200, 200))
            p.drawText(visual(QRectF(0, y, label_w, row - 1)), lead | Qt.AlignmentFlag.AlignVCenter, name)
            bar = QRectF(label_w, y + 2, max(0, w - label_w - value_w - 2), row - 4)
            p.fillRect(visual(bar), QColor(50, 50, 55))
            v = float(np.clip(self.values[i], 0, 1))
            p.fillRect(visual(QRectF(bar.left(), bar.top(), bar.width() * v, bar.height())), EMOTION_COLORS[name])
            p.drawText(visual(QRectF(w - value_w, y, value_w, row - 1)), trail | Qt.AlignmentFlag.AlignVCenter,
                       f"{v:.2f}")
        p.end()


class FaceCard(QFrame):
    """Everything the panel shows about one track."""

    def __init__(self, track_id: int, window: float = 10.0, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.track_id = int(track_id)
        self.setObjectName("faceCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        # its own height always: a full panel scrolls instead of squashing the cards (which clipped the readout)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.last_seen = -math.inf
        self.intensity = float("nan")
        self.emotions: Optional[np.ndarray] = None
        self.emotion: Optional[str] = None  # the label the pipeline holds (hysteresis), as the CSV and overlay show
        self.pose: Optional[np.ndarray] = None
        lay = QGridLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setVerticalSpacing(3)
        self.title = QLabel(f"<b>Face #{track_id}</b>", self)
        self.thumb = QLabel(self)
        self.thumb.setFixedSize(self.thumb_size, self.thumb_size)  # and larger with a large font: _apply_font
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # #aaa on #222: 6.9:1 (WCAG AA wants 4.5:1 for text this small; #777 was 3.6:1). Its size is not in the
        # style sheet (a fixed 8 pt there ignored the user's font): see _apply_font
        self.thumb.setStyleSheet(f"background: {THUMB_BACKGROUND}; color: {THUMB_TEXT};")
        self._apply_font()
        self.clear_neutral()
        self.thumb.setToolTip("neutral face (enable 'Neutral thumbnail' or 'Neutralized view')")
        self.readout = QLabel(self)
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        # a fixed name: a QLabel without one is named by its text, and each new text (about 9 a second, the
        # intensity to 3 decimals) told a screen reader of a new name. The numbers are its description, handed on
        # at most once a second (as the bars' and the plot's), at once where what it says changes
        self.readout.setAccessibleName(f"Face #{track_id} readout")
        self.readout_description = ThrottledText(self.readout.setAccessibleDescription, self.readout)
        self.bars = EmotionBars(self)
        self.plot = TimePlot(window=window, parent=self)
        lay.addWidget(self.title, 0, 0, 1, 2)
        lay.addWidget(self.thumb, 1, 0)
        lay.addWidget(self.readout, 1, 1)
        lay.addWidget(self.bars, 2, 0, 1, 2)
        lay.addWidget(self.plot, 3, 0, 1, 2)
        self._refresh_readout()

    thumb_text_scale = 0.9  # the "neutral face off" note, relative to the card's font (8 pt at the usual 9 pt)
    thumb_size = 64  # the neutral thumbnail's side in logical px at the usual font; more where its note needs it
    THUMB_NOTE = "neutral\nface off"

    def _apply_font(self) -> None:
        """The thumbnail's note in the card's font, and the thumbnail (a square) as large as the note needs: at a
        200 % font "face off" is 79 px wide, and the fixed 64 px cut it."""
        font = scaled_font(self.font(), self.thumb_text_scale)
        self.thumb.setFont(font)
        fm = QFontMetrics(font)
        lines = self.THUMB_NOTE.split("\n")
        pad = fm.averageCharWidth()  # half a character's room either side
        side = max(self.thumb_size, max(fm.horizontalAdvance(t) for t in lines) + pad,
                   len(lines) * fm.lineSpacing() + pad)
        self.thumb.setFixedSize(side, side)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:  # the thumbnail's note has a font of its own: it follows
            self._apply_font()
        super().changeEvent(event)

    def add_sample(self, s: FaceSample) -> None:
        self.last_seen = s.timestamp
        self.intensity = s.intensity
        self.emotions = s.emotions
        self.emotion = s.emotion
        self.pose = s.pose
        self.plot.add(s.timestamp, s.intensity, s.emotions)

    def refresh(self) -> None:
        """Repaint the bars/readout/plot from the latest sample (called once per GUI tick)."""
        self.bars.set_values(self.emotions)
        self._refresh_readout()
        self.plot.refresh()

    def flush_descriptions(self) -> None:
        """Give the bars, the plot and the readout their latest accessible descriptions now (:class:`ThrottledText`
        holds a change back for up to a second): what a screen reader finds once a run pauses or ends."""
        self.bars.description.flush()
        self.plot.description.flush()
        self.readout_description.flush()

    def clear_neutral(self) -> None:
        self.thumb.setPixmap(QPixmap())
        self.thumb.setText(self.THUMB_NOTE)

    def set_neutral(self, neutral_rgb: Optional[np.ndarray], neutral_from: int = -1) -> None:
        """Show a neutral face (S, S, 3) uint8 RGB; ``neutral_from``: the frame it came from (``Face.neutral_from``,
        -1 = this frame's own), said in the tooltip."""
        if neutral_rgb is None:
            return
        # scaled to the screen's pixels (64 logical px are 128 at 200 %) and marked so: a 64-px pixmap was
        # stretched by the display, blurred. As large as the thumbnail (64 px, more with a large font)
        dpr = self.thumb.devicePixelRatioF() or 1.0
        size = round(self.thumb.width() * dpr)
        pm = QPixmap.fromImage(rgb_to_qimage(neutral_rgb)).scaled(
            size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        pm.setDevicePixelRatio(dpr)
        self.thumb.setPixmap(pm)
        self.thumb.setToolTip("neutral face of this frame" if neutral_from < 0 else
                              f"neutral face from frame {neutral_from}: this person's least expressive frame "
                              "so far in a similar pose, aligned to this one")

    def _readout_parts(self) -> Tuple[str, Optional[Tuple[str, float]], Optional[Tuple[float, float, float]]]:
        """The readout's numbers: the intensity's text ("–" without one), the emotion shown and its probability
        (the label the pipeline holds, else the most probable; None without emotions), and yaw, pitch, roll in
        degrees (None without a pose)."""
        it = f"{self.intensity:.3f}" if math.isfinite(self.intensity) else "–"
        top = None
        if self.emotions is not None:
            i = EMOTIONS.index(self.emotion) if self.emotion in EMOTIONS else int(np.argmax(self.emotions))
            top = (EMOTIONS[i], float(self.emotions[i]))
        pose = None
        if self.pose is not None:
            rx, ry, rz = (math.degrees(float(v)) for v in self.pose[:3])
            pose = (ry, rx, rz)
        return it, top, pose

    def readout_text(self) -> str:
        """The readout in words, its accessible description: ``"intensity 0.123, happy 0.62, yaw +3°, pitch -2°,
        roll +0°"``."""
        it, top, pose = self._readout_parts()
        emotion = f"{top[0]} {top[1]:.2f}" if top is not None else "emotion –"
        angles = ("yaw {:+.0f}°, pitch {:+.0f}°, roll {:+.0f}°".format(*pose) if pose is not None
                  else "yaw –, pitch –, roll –")
        return f"intensity {it}, {emotion}, {angles}"

    def _refresh_readout(self) -> None:
        it, top, pose = self._readout_parts()
        angles = ("yaw {:+.0f}°<br>pitch {:+.0f}°<br>roll {:+.0f}°".format(*pose) if pose is not None
                  else "yaw –<br>pitch –<br>roll –")
        # always five lines: the card keeps its height when the first numbers come
        emotion = f"<br><b>{top[0]}</b> {top[1]:.2f}" if top is not None else "<br>emotion –"
        self.readout.setText(f"intensity <b>{it}</b>{emotion}<br>{angles}")
        # its description at most once a second, at once where a number comes or goes
        self.readout_description.set(self.readout_text(), (it == "–", top is None, pose is None))

    def values(self) -> dict:
        """The card's current numbers (intensity, emotions, pose) — what the user sees."""
        return {"intensity": self.intensity,
                "emotions": None if self.emotions is None else self.emotions.copy(),
                "pose": None if self.pose is None else self.pose.copy()}


class FacePanel(QScrollArea):
    """A scrolling column of :class:`FaceCard` s, one per face currently tracked.

    A card disappears when its track has not been seen for ``forget_after`` seconds
    (source time). With ``stills`` (separate pictures: every face of a picture is a new track) the cards are the
    current picture's faces only. When all ``max_cards`` are taken, a new face takes the card of the face seen
    longest ago, if that one is not in the current frame.
    """

    def __init__(self, window: float = 10.0, forget_after: float = 2.0, max_cards: int = 8,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.window = window
        self.forget_after = forget_after
        self.max_cards = max_cards
        self.setWidgetResizable(True)
        self.setMinimumWidth(290)
        # a visible focus mark (Tab reaches the panel, and Space there starts / pauses): the style drew none. The
        # frame is 2 px either way, so that focus does not move the cards. Unfocused it is #2a2a2e: the usual
        # highlight (#308cc6) is 3.9:1 against it, WCAG's 3:1 for a focus mark (against #3c3c40 it was 3.0:1)
        self.setObjectName("facePanel")
        self.setStyleSheet(f"QScrollArea#facePanel {{ border: 2px solid {PANEL_BORDER}; }}"
                           " QScrollArea#facePanel:focus { border: 2px solid palette(highlight); }")
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget(self)
        inner.setObjectName("facePanelInner")
        inner.setStyleSheet("#facePanelInner { background: #1c1c1e; } #facePanelInner QLabel { color: #e0e0e0; }"
                            " QFrame#faceCard { background: #252528; border: 1px solid #3c3c40;"
                            " border-radius: 4px; }")
        self._layout = QVBoxLayout(inner)
        self._layout.setContentsMargins(4, 4, 4, 4)
        self._empty = QLabel("No face yet", inner)
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setStyleSheet("color: #888;")
        self._layout.addWidget(self._empty)
        self._layout.addStretch(1)
        self.setWidget(inner)
        self.cards: Dict[int, FaceCard] = {}
        self._now = -math.inf
        #: separate pictures (an image folder read as stills): each picture's faces replace the last one's
        self.stills = False

    def add_samples(self, samples: List[FaceSample]) -> None:
        """Feed every analysed face sample (in time order) to its card, creating cards as needed."""
        for s in samples:
            if s.timestamp < self._now - 1.0:  # the source restarted: start over
                self.clear()
            if self.stills and s.timestamp > self._now:  # the next picture: its faces are all new
                self._drop([t for t in self.cards if t != s.track_id])
            self._now = max(self._now, s.timestamp)
            card = self.cards.get(s.track_id)
            if card is None:
                if len(self.cards) >= self.max_cards:
                    oldest = min(self.cards, key=lambda t: self.cards[t].last_seen)
                    if self.cards[oldest].last_seen >= s.timestamp:  # all in this frame: no room
                        continue
                    self._drop([oldest])
                card = FaceCard(s.track_id, window=self.window, parent=self.widget())
                self._layout.insertWidget(len(self.cards), card)
                card.show()  # now, not by the layout's queued event: a grab in this event-loop turn shows it
                self.cards[s.track_id] = card
            card.add_sample(s)

    def set_neutral_faces(self, faces) -> None:
        """Show neutral faces from a frame packet's faces (those with ``neutral`` set)."""
        for f in faces:
            card = self.cards.get(int(f.track_id))
            if card is not None and getattr(f, "neutral", None) is not None:
                card.set_neutral(f.neutral, int(getattr(f, "neutral_from", -1)))

    def clear_neutral_faces(self) -> None:
        for c in self.cards.values():
            c.clear_neutral()

    def advance(self, now: Optional[float] = None) -> None:
        """Drop stale cards and repaint the others (once per GUI tick)."""
        if now is not None:
            self._now = max(self._now, now)
        # stills: a card is its picture's only (a later picture without a face shows none: it showed the last one's)
        stale = (lambda c: c.last_seen < self._now) if self.stills else (
            lambda c: self._now - c.last_seen > self.forget_after)
        self._drop([t for t, c in self.cards.items() if stale(c)])
        for c in self.cards.values():
            c.refresh()
        self._empty.setVisible(not self.cards)
        self._layout.activate()  # the cards' geometry now, so that a grab before the next event-loop turn is right

    def flush_descriptions(self) -> None:
        """:meth:`FaceCard.flush_descriptions` for every card (a run paused or ended)."""
        for c in self.cards.values():
            c.flush_descriptions()

    def _drop(self, track_ids: List[int]) -> None:
        for tid in track_ids:
            card = self.cards.pop(tid)
            self._layout.removeWidget(card)
            card.hide()  # deleteLater waits for the event loop; until then it would still paint
            card.deleteLater()

    def clear(self) -> None:
        for card in self.cards.values():
            self._layout.removeWidget(card)
            card.hide()
            card.deleteLater()
        self.cards.clear()
        self._now = -math.inf
        self._empty.setVisible(True)
