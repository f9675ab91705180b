"""Inline, non-modal banners: errors, and notices with an action (a message box would block tests and automation)."""
from __future__ import annotations

from typing import Callable, Optional

from PyQt6.QtCore import Qt
from PyQt6.QtGui import QKeyEvent
from PyQt6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

__all__ = ["ErrorBanner", "NoticeBanner"]


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


class NoticeBanner(_Banner):
    """A dark amber strip (white on it: 7.7:1) with advice, a button that follows it and a close button; hidden
    until :meth:`show_notice`. Not an error: the run goes on, and an error shown meanwhile has its own banner."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("noticeBanner", "#6b4e00", "Dismiss notice", parent)
        self.action_button = QPushButton(self)
        self.action_button.setAutoDefault(True)  # Enter clicks it when focused, as the window's other buttons
        self.action_button.clicked.connect(self._on_action)
        # named before any notice fills it in: a screen reader never meets a nameless button
        self.action_button.setAccessibleName("Follow the notice's advice")
        self.action_button.setToolTip("do what the notice advises (Tab to it, then Enter or Space)")
        self._layout.insertWidget(1, self.action_button)  # between the text and the close button
        self._action: Optional[Callable[[], None]] = None

    def show_notice(self, message: str, action_text: str, action: Callable[[], None], accessible_name: str,
                    tooltip: str) -> None:
        """Show ``message`` with a button ``action_text`` that calls ``action`` (and hides the banner)."""
        self.label.setText(message)
        self.action_button.setText(action_text)
        self.action_button.setAccessibleName(accessible_name)
        self.action_button.setToolTip(tooltip)
        self._action = action
        self.show()

    def _on_action(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()
