"""A row of controls that wraps onto further lines where the window is too narrow for it in one."""
from __future__ import annotations

from typing import List, Optional

from PyQt6.QtCore import QPoint, QRect, QSize, Qt
from PyQt6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QStyle, QWidget

__all__ = ["WrapLayout", "WrapRow"]


class WrapLayout(QLayout):
    """Lays its items out left to right at their size hints, starting a new line where the next one would not fit.

    Its size hint is every item on one line (what the window shows when it has the room), its minimum width the
    widest item: a row of check boxes no longer sets the window's smallest width (with a 1.5x desktop font the
    toolbar rows made the window 955 px wide at least, more than a 911-px screen). The height follows the width
    (``heightForWidth``).
    """

    def __init__(self, parent: Optional[QWidget] = None, spacing: int = -1) -> None:
        super().__init__(parent)
        self._items: List[QLayoutItem] = []
        self._spacing = spacing
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt's name
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> Optional[QLayoutItem]:  # noqa: N802 - Qt's name
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> Optional[QLayoutItem]:  # noqa: N802 - Qt's name
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def spacing(self) -> int:
        """The gap between items: as given, else the style's horizontal layout spacing (as a QHBoxLayout's), else
        what it spaces two check boxes by, else 6 px: never below 0."""
        if self._spacing >= 0:
            return self._spacing
        parent = self.parentWidget()
        style = parent.style() if parent is not None else None
        if style is None:
            return 6
        gap = style.pixelMetric(QStyle.PixelMetric.PM_LayoutHorizontalSpacing)
        if gap < 0:  # macOS's style answers -1 here and its spacing per pair of controls instead (as QHBoxLayout asks)
            gap = style.layoutSpacing(QSizePolicy.ControlType.CheckBox, QSizePolicy.ControlType.CheckBox,
                                      Qt.Orientation.Horizontal)
        return gap if gap >= 0 else 6

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt's name
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return self._lay_out(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt's name
        super().setGeometry(rect)
        self._lay_out(rect, apply=True)

    def _visible(self) -> List[QLayoutItem]:
        return [it for it in self._items if not it.isEmpty()]

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        items = self._visible()
        m = self.contentsMargins()
        w = sum(it.sizeHint().width() for it in items) + self.spacing() * max(0, len(items) - 1)
        h = max((it.sizeHint().height() for it in items), default=0)
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt's name
        # items are never shrunk below their hints (a check box's text would be cut): the widest one is the least
        items = self._visible()
        m = self.contentsMargins()
        w = max((it.sizeHint().width() for it in items), default=0)
        h = max((it.sizeHint().height() for it in items), default=0)
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def _lay_out(self, rect: QRect, apply: bool) -> int:
        """Place the items in ``rect`` (``apply``) or only measure; returns the height the lines take."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        gap = self.spacing()
        lines: List[List[QLayoutItem]] = [[]]
        x = area.x()
        for it in self._visible():
            w = it.sizeHint().width()
            if lines[-1] and x + w > area.right() + 1:  # no room left on this line: the next one
                lines.append([])
                x = area.x()
            lines[-1].append(it)
            x += w + gap
        y = area.y()
        for line in lines:
            line_h = max((it.sizeHint().height() for it in line), default=0)
            x = area.x()
            for it in line:
                hint = it.sizeHint()
                if apply:  # centred in its line, as a QHBoxLayout centres a check box beside a combo box
                    it.setGeometry(QRect(QPoint(x, y + (line_h - hint.height()) // 2), hint))
                x += hint.width() + gap
            y += line_h + gap
        return max(0, y - gap - area.y()) + m.top() + m.bottom()


class WrapRow(QWidget):
    """A widget holding a :class:`WrapLayout`: a group of controls that wraps as one item of a toolbar row."""

    def __init__(self, widgets: List[QWidget], parent: Optional[QWidget] = None, spacing: int = -1) -> None:
        super().__init__(parent)
        self.wrap = WrapLayout(self, spacing)
        for w in widgets:
            self.wrap.addWidget(w)
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def lines(self) -> int:
        """How many lines the controls take now."""
        return len({w.geometry().y() for w in self.findChildren(QWidget) if w.parent() is self and w.isVisible()})
