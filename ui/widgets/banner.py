"""Inline, non-modal banners: errors, and notices with an action (a message box would block tests and automation)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QKeyEvent
from PyQt6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

__all__ = ["ErrorBanner", "NoticeBanner", "Notice"]


class _CloseButton(QToolButton):
    """The banners' ✕: a tool button (flat, small) that Enter clicks when focused too, as it does the window's
    push buttons (docs/app.md says so; a QToolButton answers Space only)."""

    def keyPressEvent(self, e: Optional[QKeyEvent]) -> None:  # noqa: N802 - Qt's name
        if e is not None and e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not e.isAutoRepeat():
            self.click()
            e.accept()
            return
        super().keyPressEvent(e)


class _Banner(QFrame):
    """A coloured strip with a message and a close button; hidden until shown."""

    def __init__(self, name: str, background: str, dismiss: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setStyleSheet(f"#{name} {{ background: {background}; border-radius: 4px; }}"
                           f"#{name} QLabel {{ color: white; }}")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # a path can be copied
        self.close_button = _CloseButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setAccessibleName(dismiss)
        self.close_button.setToolTip("hide this message")
        self.close_button.clicked.connect(self.hide)
        self._layout.addWidget(self.label, 1)
        self._layout.addWidget(self.close_button)
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class ErrorBanner(_Banner):
    """A red strip with a message and a close button; hidden until :meth:`show_error`."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("errorBanner", "#7a1f1f", "Dismiss error", parent)

    def show_error(self, message: str) -> None:
        self.label.setText(message)
        self.show()


@dataclass(frozen=True)
class Notice:
    """One piece of advice: its text and, where it has one, a button that follows it (``action_text`` and
    ``action``; the button's ``accessible_name`` and ``tooltip``). Without an action the notice only says."""

    message: str
    action_text: Optional[str] = None
    action: Optional[Callable[[], None]] = None
    accessible_name: str = ""
    tooltip: str = ""


class NoticeBanner(_Banner):
    """A dark amber strip (white on it: 7.7:1) with advice, a button that follows it and a close button; hidden
    until :meth:`show_notice`. Not an error: the run goes on, and an error shown meanwhile has its own banner.

    It holds one notice at a time; more wait in a queue (:meth:`queue_notice`), and ✕ or the button shows the next:
    a later notice never hides an earlier one's action, and the strip never grows to several notices' height on a
    small screen. The text says how many wait, so that a screen reader (the window mirrors it) knows of them."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("noticeBanner", "#6b4e00", "Dismiss notice", parent)
        # ✕ shows the next notice waiting, not only hides: disconnected before the window connects its own slot,
        # so that the window describes the notice shown after it (Qt calls slots in the order connected)
        self.close_button.clicked.disconnect(self.hide)
        self.close_button.clicked.connect(self._next)
        self.action_button = QPushButton(self)
        self.action_button.setAutoDefault(True)  # Enter clicks it when focused, as the window's other buttons
        self.action_button.clicked.connect(self._on_action)
        # named before any notice fills it in: a screen reader never meets a nameless button
        self.action_button.setAccessibleName("Follow the notice's advice")
        self.action_button.setToolTip("do what the notice advises (Tab to it, then Enter or Space)")
        self._layout.insertWidget(1, self.action_button)  # between the text and the close button
        self._action: Optional[Callable[[], None]] = None
        self.current: Optional[Notice] = None  # the notice shown (None when hidden)
        self._queue: List[Notice] = []  # the notices waiting, in the order they are shown

    @property
    def waiting(self) -> List[Notice]:
        """The notices queued behind the one shown."""
        return list(self._queue)

    def show_notice(self, message: str, action_text: Optional[str] = None,
                    action: Optional[Callable[[], None]] = None, accessible_name: str = "", tooltip: str = "") -> None:
        """Show ``message`` now, with a button ``action_text`` that calls ``action`` (and shows the next notice);
        without ``action`` no button. A notice already shown waits first in the queue (it is not lost)."""
        if self.current is not None and not self.isHidden():
            self._queue.insert(0, self.current)
        self._display(Notice(message, action_text, action, accessible_name, tooltip))

    def queue_notice(self, message: str, action_text: Optional[str] = None,
                     action: Optional[Callable[[], None]] = None, accessible_name: str = "", tooltip: str = "") -> None:
        """Show ``message`` (as :meth:`show_notice`) when no notice is shown, else after those already waiting."""
        notice = Notice(message, action_text, action, accessible_name, tooltip)
        if self.current is None or self.isHidden():
            self._display(notice)
        else:
            self._queue.append(notice)
            self._label()

    def clear(self) -> None:
        """Hide the notice and forget those waiting (a new run says its own)."""
        self._queue.clear()
        self.current = None
        self._action = None
        self.hide()

    def _display(self, notice: Notice) -> None:
        self.current = notice
        self._action = notice.action
        has_action = notice.action is not None and bool(notice.action_text)
        if has_action:
            self.action_button.setText(str(notice.action_text))
            self.action_button.setAccessibleName(notice.accessible_name or str(notice.action_text))
            self.action_button.setToolTip(notice.tooltip)
        self.action_button.setVisible(has_action)  # a notice that only says has nothing to click
        self._label()
        self.show()

    def _label(self) -> None:
        if self.current is None:
            return
        n = len(self._queue)
        more = f" ({n} more notice{'s' if n > 1 else ''}: ✕ shows the next)" if n else ""
        self.label.setText(self.current.message + more)

    def _next(self) -> None:
        """Show the first notice waiting, or hide the banner when none waits."""
        if self._queue:
            self._display(self._queue.pop(0))
        else:
            self.clear()

    def _on_action(self) -> None:
        action, self._action = self._action, None
        self._next()  # before the action: one that restarts the run clears the banner for the new run's notices
        if action is not None:
            action()
