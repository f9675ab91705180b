"""An inline, non-modal error banner (a message box would block tests and automation)."""
from __future__ import annotations

from typing import Optional

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

__all__ = ["ErrorBanner"]


class ErrorBanner(QFrame):
    """A red strip with a message and a close button; hidden until :meth:`show_error`."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorBanner")
        self.setStyleSheet("#errorBanner { background: #7a1f1f; border-radius: 4px; }"
                           "#errorBanner QLabel { color: white; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # a path can be copied
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setAccessibleName("Dismiss error")
        self.close_button.setToolTip("hide this message")
        self.close_button.clicked.connect(self.hide)
        lay.addWidget(self.label, 1)
        lay.addWidget(self.close_button)
        self.hide()

    def show_error(self, message: str) -> None:
        self.label.setText(message)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""
