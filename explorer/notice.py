"""A notification where the eye is: a banner over the bottom of the image view that stays a few
seconds (longer when it offers an action), with an optional action button ("Back to previous
model") and a close button. Confirmations in the status bar were never seen."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget


class Notice(QFrame):
    """Floats over ``host`` (bottom centre) and follows its size."""

    def __init__(self, host: QWidget) -> None:
        super().__init__(host)
        self.host = host
        self.setObjectName("notice")
        self.setStyleSheet("#notice { background: #303134; border: 1px solid #8ab4f8; border-radius: 6px; }"
                           "#notice QLabel { color: #f1f3f4; }")
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton("")
        self.action_button.setVisible(False)
        self.action_button.clicked.connect(self._on_action)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(self.close_button)
        self._action: Callable[[], None] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        host.installEventFilter(self)
        self.hide()

    def show_message(self, text: str, action_text: str = "", action: Callable[[], None] | None = None,
                     msecs: int | None = None) -> None:
        """Show ``text`` for ``msecs`` (6 s, 15 s with an action); the action hides the notice."""
        self.label.setText(text)
        self._action = action
        self.action_button.setText(action_text)
        self.action_button.setVisible(action is not None)
        self._place()
        self.show()
        self.raise_()
        self._timer.start(msecs if msecs is not None else (15000 if action is not None else 6000))

    @property
    def text(self) -> str:
        return self.label.text()

    def _on_action(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()

    def _place(self) -> None:
        width = min(self.host.width() - 24, 640)
        width = max(width, 200)
        self.setFixedSize(width, self.layout().totalHeightForWidth(width))
        x = (self.host.width() - self.width()) // 2
        self.move(max(x, 0), max(self.host.height() - self.height() - 12, 0))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.host and event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False
