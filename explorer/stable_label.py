"""A one-line text widget whose geometry never follows its text.

``QLabel.setText`` calls ``updateGeometry``: in a dock or the status bar that climbs to
QMainWindow's layout, which re-lays out (and animates) every dock and repaints the whole window.
At a few updates a second during training that kept the GUI thread busy and halved the
training speed. Text that changes that often (training progress, status) is drawn by this widget
instead: ``setText`` only repaints it. Text too long for the width is elided.

Messages that must be read whole (an error) go in a :func:`wrap_label` instead: it wraps, and its
width never follows its text either.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

WRAPPED_MIN_WIDTH = 80  # pixels: what a wrapping label asks of its dock, however long its text


class StableLabel(QWidget):
    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = text
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self.fontMetrics().height() + 6)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming, a drop-in for QLabel
        if text != self._text:
            self._text = text
            self.setToolTip(text)
            self.update()

    def sizeHint(self) -> QSize:
        return QSize(160, self.fontMetrics().height() + 6)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, self.fontMetrics().height() + 6)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002
        p = QPainter(self)
        rect = self.rect().adjusted(2, 0, -2, 0)
        text = self.fontMetrics().elidedText(self._text, Qt.TextElideMode.ElideRight, rect.width())
        p.setPen(self.palette().windowText().color())
        p.drawText(rect, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), text)
        p.end()


def wrap_label(label: QLabel) -> QLabel:
    """``label`` wrapping its text at word boundaries, with a minimum width of its own: a long
    message (an error of 2000 characters, a long path) makes it taller, never its dock wider (a
    word-wrapped QLabel's minimum width is otherwise its longest word)."""
    label.setWordWrap(True)
    label.setMinimumWidth(WRAPPED_MIN_WIDTH)
    return label
