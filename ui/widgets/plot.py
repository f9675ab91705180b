"""A scrolling time plot drawn with QPainter: expression intensity and the top emotions over the last ~10 s."""
from __future__ import annotations

import math
import time
from collections import deque
from typing import Callable, Deque, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
from PyQt6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, QTimer
from PyQt6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPaintEvent, QPen, QPolygonF
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


def _qreal_is_double() -> bool:
    probe = QPolygonF([QPointF(1.5, -2.25), QPointF(3.5, 4.5)])  # 16 bytes whatever qreal is: safe to read
    ptr = probe.data()
    ptr.setsize(16)
    return np.frombuffer(ptr, np.float64).tolist() == [1.5, -2.25]


_QREAL_DOUBLE = _qreal_is_double()


def _polygon(xs: np.ndarray, ys: np.ndarray) -> QPolygonF:
    """A QPolygonF of the points (xs, ys), written straight into its memory (a QPointF is two doubles): 520 points
    in ~0.01 ms, ~0.35 ms one QPointF at a time."""
    n = int(xs.size)
    if not _QREAL_DOUBLE:  # a Qt built with float coordinates (-qreal float): one point at a time
        return QPolygonF([QPointF(x, y) for x, y in zip(xs.tolist(), ys.tolist(), strict=True)])
    poly = QPolygonF()
    poly.resize(n)
    if n:
        ptr = poly.data()
        ptr.setsize(16 * n)
        pts = np.frombuffer(ptr, np.float64).reshape(n, 2)
        pts[:, 0] = xs
        pts[:, 1] = ys
    return poly


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

    It repaints at most once per ``repaint_interval`` (5 times a second; :meth:`refresh` coalesces the refreshes in
    between, and the last one is always painted), draws at most two points per pixel column, the lowest and the
    highest of that column's samples (:meth:`_path`: a peak one sample long stays), and draws each line in strokes
    of a 1-device-pixel pen (:meth:`_stroke`), the only ones antialiased. Drawn from every sample with wide
    antialiased pens, 15 times a second, it took about half of the GUI thread's time in a probe (53 ms a paint on
    average, up to 600 ms) and stalled the event loop.
    """

    legend_sample = 12  # px of line drawn before each emotion's name in the legend
    text_scale = 7.5 / 9  # the plot's small print, relative to the widget's font
    line_antialiasing = True  # the 1-device-px strokes of the lines (:meth:`_stroke`): cheap at that width
    repaint_interval = 0.2  # seconds: the plot repaints at most 5 times a second (refresh() coalesces)

    def __init__(self, window: float = 10.0, top_k: int = 3, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.window = float(window)
        self.top_k = int(top_k)
        cap = 4000  # hard cap (~130 s at 30 fps) in case timestamps stall
        self._t: Deque[float] = deque(maxlen=cap)
        self._intensity: Deque[float] = deque(maxlen=cap)
        self._emotions: Deque[Optional[np.ndarray]] = deque(maxlen=cap)
        self._arrays: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None  # (t, intensity, emotions) cache
        self._updated = -math.inf  # time.monotonic() of the last repaint asked for
        self._repaint_timer = QTimer(self)  # a refresh held back: repaints when the interval ends
        self._repaint_timer.setSingleShot(True)
        self._repaint_timer.timeout.connect(self._repaint)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Intensity and emotions plot")
        self.description = ThrottledText(self.setAccessibleDescription, self)
        self._apply_font()
        self.refresh()

    def _text_metrics(self) -> QFontMetrics:
        return QFontMetrics(scaled_font(self.font(), self.text_scale))

    def _strip(self) -> int:
        """The height of the strip under the plot ("−10 s", the legend, "now"): 14 px at the usual font."""
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
        self._arrays = None
        while self._t and self._t[-1] - self._t[0] > self.window:
            self._t.popleft()
            self._intensity.popleft()
            self._emotions.popleft()

    def clear(self) -> None:
        self._t.clear()
        self._intensity.clear()
        self._emotions.clear()
        self._arrays = None
        self.refresh()

    def refresh(self) -> None:
        """Repaint, and say in the accessible description what the plot now shows (a screen reader gets no pixels).
        Called once per GUI tick, not per sample: the description is worked out from the whole window. It changes
        at most once a second (:class:`ThrottledText`), at once where what it says changes (samples or none, an
        intensity or none, emotions or none)."""
        text = self.summary()
        self.description.set(text, ("no samples" in text, "intensity –" in text, "top emotions" in text))
        # at most once per repaint_interval: a refresh within it is painted when it ends (the timer), with
        # the samples there are then; one already due shows these too
        if self._repaint_timer.isActive():
            return
        wait = self.repaint_interval - (time.monotonic() - self._updated)
        if wait <= 0:
            self._repaint()
        else:
            self._repaint_timer.start(max(1, math.ceil(wait * 1000)))

    def _repaint(self) -> None:
        self._repaint_timer.stop()
        self._updated = time.monotonic()
        self.update()

    def _as_arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The window's samples as arrays (cached until the next sample): timestamps (n,), intensities (n,) and
        emotions (n, 7), NaN where a sample has none."""
        if self._arrays is None:
            n = len(self._t)
            em = np.full((n, len(EMOTIONS)), np.nan, np.float32)
            for k, e in enumerate(self._emotions):
                if e is not None:
                    em[k] = e
            self._arrays = (np.fromiter(self._t, np.float64, n), np.fromiter(self._intensity, np.float64, n), em)
        return self._arrays

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
        vals = self._as_arrays()[1]
        vals = vals[np.isfinite(vals)]
        return float(vals.max()) if vals.size else None

    def _mean_emotions(self) -> Optional[np.ndarray]:
        em = self._as_arrays()[2]
        em = em[~np.isnan(em).all(axis=1)]  # the samples with emotions
        return em.mean(axis=0, dtype=np.float64).astype(np.float32) if len(em) else None

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
        """The line through (ts, ys) in ``rect`` (ys from ``lo`` at the bottom to ``hi`` at the top; a non-finite y
        breaks it), with at most two points per pixel column: the lowest and the highest of the samples in it, in
        their order (a peak one sample long stays; 600 samples in 260 px were 600 Python-made vertices)."""
        path = QPainterPath()
        t = np.asarray(ts, np.float64)
        y = np.asarray(ys, np.float64)
        if t.size == 0:
            return path
        span = hi - lo if hi > lo else 1.0
        px = rect.right() - (t[-1] - t) / self.window * rect.width()
        py = rect.bottom() - (np.clip(y, lo, hi) - lo) / span * rect.height()
        finite = np.isfinite(y)
        run = np.cumsum(~finite)[finite]  # the stretch between gaps each finite sample is in
        px, py = px[finite], py[finite]
        if px.size == 0:
            return path
        # the rect's pixel columns (the newest sample, at its right edge, in the last one)
        col = np.clip(np.floor(px - rect.left()), 0, max(0, math.ceil(rect.width()) - 1)).astype(np.int64)
        new = np.ones(px.size, bool)  # a sample that starts a (stretch, column) group
        new[1:] = (run[1:] != run[:-1]) | (col[1:] != col[:-1])
        group = np.cumsum(new) - 1
        order = np.lexsort((py, group))  # by group, then by y: each group's first and last are its extremes
        first = np.ones(order.size, bool)
        first[1:] = group[order[1:]] != group[order[:-1]]
        last = np.ones(order.size, bool)
        last[:-1] = first[1:]
        keep = np.unique(np.concatenate([order[first], order[last]]))  # in time order
        px, py, run = px[keep], py[keep], run[keep]
        cuts = np.flatnonzero(run[1:] != run[:-1]) + 1  # where a gap broke the line: a new subpath
        for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, px.size].tolist(), strict=True):
            path.addPolygon(_polygon(px[a:b], py[a:b]))  # an open polyline: a subpath of its own
        return path

    def _stroke(self, p: QPainter, path: QPainterPath, color: QColor, width: float, style: Qt.PenStyle) -> None:
        """Draw ``path`` as a line ``width`` logical px wide, in strokes of a 1-device-pixel (cosmetic) pen side by
        side, each offset by a device pixel across or down: a wider pen is stroked as an outline (a jagged 600-sample
        line 1.5 px wide took ~2.5 ms, ~7 ms antialiased, ~18 ms at 200 %), a 1-px one by Qt's line drawer (~0.1 ms,
        antialiased too). The dashes are as long as a pen ``width`` wide draws them."""
        scale = abs(p.deviceTransform().m11()) or 1.0  # device px per logical px (the screen's, a grab's)
        k = max(1, math.floor(width * scale + 0.5))  # device px across: 1.5 -> 2, 2 -> 2 (3 and 4 at 200 %)
        pen = QPen(color, 1.0, style)
        pen.setCosmetic(True)  # its width and its dashes in device pixels
        if style not in (Qt.PenStyle.SolidLine, Qt.PenStyle.NoPen):
            pen.setDashPattern([d * width * scale for d in QPen(color, 1.0, style).dashPattern()])
        p.setPen(pen)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, self.line_antialiasing)
        offsets = {(0.0, 0.0)}
        for j in range(k):
            d = (j - k // 2) / scale
            offsets |= {(d, 0.0), (0.0, d)}
        for dx, dy in sorted(offsets):
            p.translate(dx, dy)
            p.drawPath(path)
            p.translate(-dx, -dy)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def span_ends(self) -> Tuple[str, str]:
        """The texts at the ends of the time axis, under the plot: ``("−10 s", "now")``, with a true minus sign
        (U+2212; the hyphen-minus "-10 s" was a hyphen)."""
        return f"\u2212{self.window:g} s", "now"

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        # left to right in a right-to-left layout too (an Arabic or Hebrew desktop): a time axis runs left to right
        # there as well, and the samples are drawn so (the newest at the right). The painter took the widget's
        # direction, which mirrored the text only: "now" at the left, over the oldest samples, and "-10 s" read
        # "s 10-" (its text laid out right to left)
        p.setLayoutDirection(Qt.LayoutDirection.LeftToRight)
        # no antialiasing but for the lines' 1-px strokes (_stroke): an antialiased dashed line 1.5 px wide cost ~3 ms
        # a path, ~4 times one without (the text keeps its own, TextAntialiasing)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
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
        ends = self.span_ends()
        # with a large font in a narrow card the legend ran over "−10 s" and "now": the legend (which line is which)
        # stays, the span's ends give way (the grid is every 2 s; the accessible description says the span)
        if not names or legend_w + sum(fm.horizontalAdvance(t) for t in ends) + 12 <= r.width():
            p.setPen(QColor(140, 140, 140))
            p.drawText(QRectF(r.left(), r.bottom() + 1, r.width(), text_h), Qt.AlignmentFlag.AlignLeft, ends[0])
            p.drawText(QRectF(r.left(), r.bottom() + 1, r.width(), text_h), Qt.AlignmentFlag.AlignRight, ends[1])
        if len(self._t) >= 2:
            ts, intensity, emotions = self._as_arrays()
            styles = self.line_styles()
            # the legend in the strip under the plot, between "−10 s" and "now": drawn inside the plot it lay on
            # the newest samples, at the right edge. Each name follows a short stretch of its line
            legend_x = r.center().x() - legend_w / 2
            for name, w in zip(names, widths, strict=True):
                i = EMOTIONS.index(name)
                self._stroke(p, self._path(r, ts, emotions[:, i], 0.0, 1.0), EMOTION_COLORS[name], 1.5, styles[name])
                y = round(r.bottom() + 1 + text_h / 2)
                sample_line = QPainterPath(QPointF(legend_x, y))
                sample_line.lineTo(legend_x + self.legend_sample, y)
                self._stroke(p, sample_line, EMOTION_COLORS[name], 1.5, styles[name])
                p.setPen(LEGEND_TEXT)  # the colour is the line sample's; the name must be readable
                p.drawText(QRectF(legend_x + sample, r.bottom() + 1, w + 1, text_h), Qt.AlignmentFlag.AlignLeft,
                           name)
                legend_x += sample + w + 6
            hi = self.intensity_max()
            if hi is not None:
                hi = max(hi, 1e-6)
                self._stroke(p, self._path(r, ts, intensity, 0.0, hi * 1.1), INTENSITY_COLOR, 2.0, styles["intensity"])
                p.setPen(INTENSITY_COLOR)
                p.drawText(QRectF(r.left() + 3, r.top() + 1, r.width(), text_h), Qt.AlignmentFlag.AlignLeft,
                           f"intensity (max {hi:.3g})")
        p.end()

    def samples(self) -> List[Tuple[float, float]]:
        """(timestamp, intensity) pairs in the window (for tests and export)."""
        return list(zip(self._t, self._intensity, strict=True))
