"""A scrolling time plot drawn with QPainter: expression intensity and the top emotions over the last ~10 s."""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Deque, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
from PyQt6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, QTimer
from PyQt6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPaintEvent, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from .style import (
    EMOTION_COLORS,
    EMOTION_DASHES,
    EMOTIONS,
    INTENSITY_COLOR,
    INTENSITY_DASH,
    LEGEND_TEXT,
    scaled_font,
)

__all__ = ["TimePlot", "ThrottledText"]


class ThrottledText(QObject):
    """Hands a text that changes many times a second (an accessible description or name) to ``apply`` at most once
    per ``interval`` seconds: Qt tells assistive tools about every change, and the panel's numbers at 15 Hz and the
    status bar's at 4 Hz flooded a screen reader with events it could not speak. A change of ``key`` (what the text
    says, not its numbers: no head / a head, a rate / none) is handed on at once; a change held back is handed on
    when the interval ends (a single-shot timer), so the last text is always the one shown, also once the updates
    stop (a run ended or paused); :meth:`flush` hands it on now."""

    def __init__(self, apply: Callable[[str], None], parent: QObject, interval: float = 1.0) -> None:
        super().__init__(parent)
        self._apply = apply
        self.interval = float(interval)
        self._shown: Optional[str] = None
        self._key: Hashable = None
        self._at = -math.inf  # time.monotonic() of the last text handed on
        self._pending: Optional[Tuple[str, Hashable]] = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)

    @property
    def text(self) -> Optional[str]:
        """The last text handed on (None: none yet)."""
        return self._shown

    def set(self, text: str, key: Hashable = None) -> None:
        """Hand ``text`` on now (the first, a new ``key``, or ``interval`` since the last), else when it ends."""
        if text == self._shown:  # back to what is shown: nothing to say (a change held back is dropped)
            self._pending = None
            self._timer.stop()
            return
        wait = self.interval - (time.monotonic() - self._at)
        if self._shown is None or key != self._key or wait <= 0:
            self._hand_on(text, key)
            return
        self._pending = (text, key)
        if not self._timer.isActive():
            self._timer.start(max(1, math.ceil(wait * 1000)))

    def flush(self) -> None:
        """Hand on the text held back, if any, now."""
        self._timer.stop()
        if self._pending is not None:
            self._hand_on(*self._pending)

    def _hand_on(self, text: str, key: Hashable) -> None:
        self._timer.stop()
        self._pending = None
        self._shown, self._key, self._at = text, key, time.monotonic()
        self._apply(text)


class TimePlot(QWidget):
    """Plots the last ``window`` seconds of one face.

    Intensity is drawn on its own auto-ranged scale (its maximum is printed in
    the corner), a thick solid cyan line; emotions on 0..1. Only the ``top_k``
    emotions with the highest mean probability inside the window are drawn, each
    in its colour and, by rank, dashed, dotted or dash-dotted (told apart without
    colour too; the legend under the plot draws each one's line, the names in a light grey).

    Its text is ``text_scale`` times the widget's font (7.5 pt at the usual 9 pt), and so is the strip under the
    plot. For screen readers, its accessible description says what it shows in words (:meth:`summary`), kept
    current by :meth:`refresh` at most once a second (:attr:`description`).
    """

    legend_sample = 12  # px of line drawn before each emotion's name in the legend
    text_scale = 7.5 / 9  # the plot's small print, relative to the widget's font

    def __init__(self, window: float = 10.0, top_k: int = 3, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.window = float(window)
        self.top_k = int(top_k)
        cap = 4000  # hard cap (~130 s at 30 fps) in case timestamps stall
        self._t: Deque[float] = deque(maxlen=cap)
        self._intensity: Deque[float] = deque(maxlen=cap)
        self._emotions: Deque[Optional[np.ndarray]] = deque(maxlen=cap)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Intensity and emotions plot")
        self.description = ThrottledText(self.setAccessibleDescription, self)
        self._apply_font()
        self.refresh()

    def _text_metrics(self) -> QFontMetrics:
        return QFontMetrics(scaled_font(self.font(), self.text_scale))

    def _strip(self) -> int:
        """The height of the strip under the plot ("-10 s", the legend, "now"): 14 px at the usual font."""
        return self._text_metrics().height() + 3

    def _apply_font(self) -> None:
        # the plot area keeps its height; the strip under it grows with the text
        self.setMinimumHeight(76 + self._strip())
        self.updateGeometry()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:  # the user's font size: the strip and the text follow it
            self._apply_font()
            self.update()
        super().changeEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(260, 96 + self._strip())

    def add(self, t: float, intensity: float, emotions: Optional[np.ndarray]) -> None:
        """Append one sample (timestamps must not go backwards; a jump back clears the plot)."""
        if self._t and t < self._t[-1]:
            self.clear()
        self._t.append(float(t))
        self._intensity.append(float(intensity))
        self._emotions.append(None if emotions is None else np.asarray(emotions, np.float32))
        while self._t and self._t[-1] - self._t[0] > self.window:
            self._t.popleft()
            self._intensity.popleft()
            self._emotions.popleft()

    def clear(self) -> None:
        self._t.clear()
        self._intensity.clear()
        self._emotions.clear()
        self.refresh()

    def refresh(self) -> None:
        """Repaint, and say in the accessible description what the plot now shows (a screen reader gets no pixels).
        Called once per GUI tick, not per sample: the description is worked out from the whole window. It changes
        at most once a second (:class:`ThrottledText`), at once where what it says changes (samples or none, an
        intensity or none, emotions or none)."""
        text = self.summary()
        self.description.set(text, ("no samples" in text, "intensity –" in text, "top emotions" in text))
        self.update()

    def summary(self) -> str:
        """The plot in words: ``"last 10 s: intensity max 0.123; top emotions happy 0.62, neutral 0.20, angry
        0.10 (mean probability)"``."""
        if not self._t:
            return f"last {self.window:g} s: no samples yet"
        hi = self.intensity_max()
        parts = [f"intensity max {hi:.3g}" if hi is not None else "intensity –"]
        mean = self._mean_emotions()
        if mean is not None:
            parts.append("top emotions " + ", ".join(f"{EMOTIONS[i]} {mean[i]:.2f}"
                                                     for i in np.argsort(-mean)[: self.top_k])
                         + " (mean probability)")
        return f"last {self.window:g} s: " + "; ".join(parts)

    def intensity_max(self) -> Optional[float]:
        """The largest finite intensity in the window (printed in the plot's corner); None without one."""
        vals = [v for v in self._intensity if math.isfinite(v)]
        return max(vals) if vals else None

    def _mean_emotions(self) -> Optional[np.ndarray]:
        em = [e for e in self._emotions if e is not None]
        return np.mean(np.stack(em), axis=0) if em else None

    def __len__(self) -> int:
        return len(self._t)

    def top_emotions(self) -> List[str]:
        """Names of the emotions drawn (the ``top_k`` highest mean probabilities in the window)."""
        mean = self._mean_emotions()
        if mean is None:
            return []
        return [EMOTIONS[i] for i in np.argsort(-mean)[: self.top_k]]

    def line_styles(self) -> Dict[str, Qt.PenStyle]:
        """The pen style of each line drawn: ``"intensity"`` and the :meth:`top_emotions` (no two alike)."""
        styles = {"intensity": INTENSITY_DASH}
        for rank, name in enumerate(self.top_emotions()):
            styles[name] = EMOTION_DASHES[rank % len(EMOTION_DASHES)]
        return styles

    def _path(self, rect: QRectF, ts: Sequence[float], ys: Sequence[float], lo: float, hi: float) -> QPainterPath:
        path = QPainterPath()
        t_end = ts[-1]
        span = hi - lo if hi > lo else 1.0
        started = False
        for t, y in zip(ts, ys, strict=True):
            if not math.isfinite(y):
                started = False
                continue
            px = rect.right() - (t_end - t) / self.window * rect.width()
            py = rect.bottom() - (min(max(y, lo), hi) - lo) / span * rect.height()
            if started:
                path.lineTo(QPointF(px, py))
            else:
                path.moveTo(QPointF(px, py))
                started = True
        return path

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(scaled_font(self.font(), self.text_scale))
        fm = p.fontMetrics()
        strip = self._strip()
        text_h = fm.height() + 1  # one line of the small print (12 px at the usual font)
        r = QRectF(self.rect()).adjusted(2, 2, -2, -strip)
        p.fillRect(QRectF(self.rect()), QColor(28, 28, 30))
        p.setPen(QPen(QColor(70, 70, 75), 1))
        for k in range(5):  # vertical grid every 2 s, horizontal at 0.5
            x = r.right() - k * (2.0 / self.window) * r.width()
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
        p.drawLine(QPointF(r.left(), r.center().y()), QPointF(r.right(), r.center().y()))
        names = self.top_emotions() if len(self._t) >= 2 else []
        sample = self.legend_sample + 3
        widths = [fm.horizontalAdvance(n) for n in names]
        legend_w = sum(widths) + sample * len(names) + 6 * (len(names) - 1)
        ends = [f"-{self.window:g} s", "now"]
        # with a large font in a narrow card the legend ran over "-10 s" and "now": the legend (which line is which)
        # stays, the span's ends give way (the grid is every 2 s; the accessible description says the span)
        if not names or legend_w + sum(fm.horizontalAdvance(t) for t in ends) + 12 <= r.width():
            p.setPen(QColor(140, 140, 140))
            p.drawText(QRectF(r.left(), r.bottom() + 1, r.width(), text_h), Qt.AlignmentFlag.AlignLeft, ends[0])
            p.drawText(QRectF(r.left(), r.bottom() + 1, r.width(), text_h), Qt.AlignmentFlag.AlignRight, ends[1])
        if len(self._t) >= 2:
            ts = list(self._t)
            styles = self.line_styles()
            # the legend in the strip under the plot, between "-10 s" and "now": drawn inside the plot it lay on
            # the newest samples, at the right edge. Each name follows a short stretch of its line
            legend_x = r.center().x() - legend_w / 2
            for name, w in zip(names, widths, strict=True):
                i = EMOTIONS.index(name)
                ys = [e[i] if e is not None else float("nan") for e in self._emotions]
                pen = QPen(EMOTION_COLORS[name], 1.5, styles[name])
                p.setPen(pen)
                p.drawPath(self._path(r, ts, ys, 0.0, 1.0))
                y = r.bottom() + 1 + text_h / 2
                p.drawLine(QPointF(legend_x, y), QPointF(legend_x + self.legend_sample, y))
                p.setPen(LEGEND_TEXT)  # the colour is the line sample's; the name must be readable
                p.drawText(QRectF(legend_x + sample, r.bottom() + 1, w + 1, text_h), Qt.AlignmentFlag.AlignLeft,
                           name)
                legend_x += sample + w + 6
            hi = self.intensity_max()
            if hi is not None:
                hi = max(hi, 1e-6)
                p.setPen(QPen(INTENSITY_COLOR, 2.0, styles["intensity"]))
                p.drawPath(self._path(r, ts, list(self._intensity), 0.0, hi * 1.1))
                p.setPen(INTENSITY_COLOR)
                p.drawText(QRectF(r.left() + 3, r.top() + 1, r.width(), text_h), Qt.AlignmentFlag.AlignLeft,
                           f"intensity (max {hi:.3g})")
        p.end()

    def samples(self) -> List[Tuple[float, float]]:
        """(timestamp, intensity) pairs in the window (for tests and export)."""
        return list(zip(self._t, self._intensity, strict=True))
