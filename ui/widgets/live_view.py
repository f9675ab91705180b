"""The live view: paints the latest frame scaled to fit, keeping its aspect ratio; accepts dropped files."""
from __future__ import annotations

import time
from collections import deque
from typing import Deque, Optional

from PyQt6.QtCore import QRect, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QDragEnterEvent, QDropEvent, QImage, QPainter, QPaintEvent, QPalette, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

__all__ = ["LiveView", "fit_rect"]


def fit_rect(img_w: int, img_h: int, area: QRect) -> QRect:
    """The largest rectangle of aspect ``img_w:img_h`` centred in ``area``."""
    if img_w <= 0 or img_h <= 0 or area.width() <= 0 or area.height() <= 0:
        return QRect(area)
    s = min(area.width() / img_w, area.height() / img_h)
    w, h = max(1, int(img_w * s)), max(1, int(img_h * s))
    return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)


class LiveView(QWidget):
    """Shows one QImage at a time (:meth:`set_image`), letterboxed.

    Counts the **new** frames actually painted (``painted``) and keeps their
    paint times, from which :meth:`fps` computes the displayed frame rate. With the focus, a frame in the
    palette's highlight colour runs along its edges.

    Signals:
        fileDropped(str): a local file was dropped on the view.
        framePainted(int): a new frame was painted (the running count).
    """

    fileDropped = pyqtSignal(str)
    framePainted = pyqtSignal(int)
    focus_width = 2  # px of the focus mark, in the palette's highlight colour, along the view's edges

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self._image: Optional[QImage] = None
        self._new = False
        self._placeholder = "Open a video file, drop one here, or start a camera"
        self.painted = 0
        self.first_paint: Optional[float] = None
        self.last_paint: Optional[float] = None
        self._times: Deque[float] = deque(maxlen=120)
        self.target_size = (800, 450, 1.0)  # (w, h) device pixels + pixel ratio; the worker pre-scales to it

    def sizeHint(self) -> QSize:
        return QSize(800, 450)

    def resizeEvent(self, event) -> None:
        dpr = self.devicePixelRatioF()
        self.target_size = (int(self.width() * dpr), int(self.height() * dpr), dpr)
        super().resizeEvent(event)

    def set_image(self, image: Optional[QImage]) -> None:
        """Show ``image`` at the next paint (None clears the view)."""
        self._image = image
        self._new = image is not None
        self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def image(self) -> Optional[QImage]:
        return self._image

    def reset_counters(self) -> None:
        self.painted = 0
        self.first_paint = self.last_paint = None
        self._times.clear()

    def restart_rate(self) -> None:
        """Measure :meth:`fps` afresh from the next paint (after a pause, which is no time the display took)."""
        self._times.clear()

    def fps(self) -> float:
        """Displayed frames per second over the last ~120 painted frames (0 if unknown)."""
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        area = self.rect()
        p.fillRect(area, QColor(16, 16, 16))
        if self._image is None or self._image.isNull():
            p.setPen(QColor(170, 170, 170))
            p.drawText(area, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
        else:
            img = self._image
            dpr = img.devicePixelRatio() or 1.0
            iw, ih = round(img.width() / dpr), round(img.height() / dpr)  # logical size
            r = fit_rect(iw, ih, area)
            if abs(r.width() - iw) <= 1 and abs(r.height() - ih) <= 1:
                p.drawImage(r.topLeft(), img)  # pre-scaled by the worker: a plain copy
            else:  # the view was resized since the worker scaled this frame
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
                p.drawImage(r, img)
            if self._new:
                self._new = False
                now = time.perf_counter()
                self.painted += 1
                if self.first_paint is None:
                    self.first_paint = now
                self.last_paint = now
                self._times.append(now)
                self.framePainted.emit(self.painted)
        if self.hasFocus():
            # the view has the focus at start (Space / Esc act on it): without a mark, nothing said where it was.
            # Qt repaints the widget when it gains or loses the focus
            p.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), self.focus_width))
            half = self.focus_width / 2
            p.drawRect(QRectF(area).adjusted(half, half, -half, -half))
        p.end()

    # ---- drag and drop -----------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        md = event.mimeData()
        if md.hasUrls() and any(u.isLocalFile() for u in md.urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        for u in event.mimeData().urls():
            if u.isLocalFile():
                self.fileDropped.emit(u.toLocalFile())
                event.acceptProposedAction()
                return
        event.ignore()
