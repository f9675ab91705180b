"""A one-line label that shortens its text with "…" to the width it is given, and never widens the window."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from PyQt6.QtCore import QSize, Qt
from PyQt6.QtGui import QResizeEvent
from PyQt6.QtWidgets import QLabel, QSizePolicy, QWidget

__all__ = ["ElidedLabel"]


class ElidedLabel(QLabel):
    """A plain-text label whose text is elided ("…", ``mode``) where the layout gives it less than it needs.

    Its size hint is its whole text, its minimum the width of ``min_text``: a layout short of room shrinks it down
    to that (the text elided) instead of letting it paint over its neighbours or widen the window. :meth:`text`
    is the whole text, :meth:`shown_text` what is painted. With :meth:`set_parts` ("● REC" + a file name, "CSV" +
    another), only the names are elided (in the middle, keeping their suffixes), each as little as the room allows.
    """

    def __init__(self, text: str = "", parent: Optional[QWidget] = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight, min_text: str = "…") -> None:
        super().__init__(parent)
        self._full = ""
        self._parts: Sequence[Tuple[str, str]] = ()
        self._sep = "  "
        self._mode = mode
        self._min_text = self._base_min_text = min_text
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: Optional[str]) -> None:  # noqa: N802 - Qt's name
        """Show ``text`` (elided to the label's width)."""
        self._parts = ()
        self._min_text = self._base_min_text
        self._set_full(text or "")

    def set_parts(self, parts: Sequence[Tuple[str, str]], sep: str = "  ") -> None:
        """Show ``prefix name`` pairs joined by ``sep``; the names are elided (in the middle) before the prefixes:
        the label keeps room for every prefix and "…"."""
        self._parts = tuple(parts)
        self._sep = sep
        self._min_text = sep.join(f"{prefix} …" for prefix, _ in self._parts) or self._base_min_text
        self._set_full(sep.join(f"{prefix} {name}" for prefix, name in self._parts))

    def _set_full(self, text: str) -> None:
        changed = text != self._full
        self._full = text
        self._elide()
        if changed:
            self.setAccessibleName(text)  # a screen reader gets the whole text, not the elided one
            self.updateGeometry()

    def text(self) -> str:
        """The whole text (not the elided one painted)."""
        return self._full

    def shown_text(self) -> str:
        """The text as painted: elided with "…" where the label is too narrow."""
        return super().text()

    def set_min_text(self, text: str) -> None:
        """The shortest text the label keeps room for (its minimum width)."""
        self._min_text = self._base_min_text = text
        self.updateGeometry()

    def _extra(self) -> int:
        m = self.contentsMargins()
        return m.left() + m.right() + 2 * self.margin() + 4

    def sizeHint(self) -> QSize:
        h = super().sizeHint().height()
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + self._extra(), h)

    def minimumSizeHint(self) -> QSize:
        h = super().minimumSizeHint().height()
        w = self.fontMetrics().horizontalAdvance(self._min_text) + self._extra()
        return QSize(min(w, self.sizeHint().width()), h)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = self.contentsRect().width() - 2 * self.margin()
        fm = self.fontMetrics()
        shown = fm.elidedText(self._full, self._mode, max(0, width))
        if self._parts and shown != self._full:  # the names give way, evenly, the prefixes stay
            def joined(budget: int) -> str:
                return self._sep.join(f"{p} {fm.elidedText(n, Qt.TextElideMode.ElideMiddle, budget)}"
                                      for p, n in self._parts)

            lo, hi = 0, max(fm.horizontalAdvance(n) for _, n in self._parts)
            while lo < hi:  # the largest budget per name that fits
                mid = (lo + hi + 1) // 2
                if fm.horizontalAdvance(joined(mid)) <= width:
                    lo = mid
                else:
                    hi = mid - 1
            shown = joined(lo)
            if fm.horizontalAdvance(shown) > width:
                shown = fm.elidedText(shown, Qt.TextElideMode.ElideRight, max(0, width))
        if not shown and self._full:
            shown = "…"
        if shown != super().text():
            super().setText(shown)
