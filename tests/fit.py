"""Does a panel fit a dock of a given size? The question the workspace tests ask of every
panel at laptop and projector sizes (issue 29): a panel is shown in a resizable scroll area
(as a dock shows it) of ``width`` x ``height`` logical pixels, and the scroll area says
whether it needs to scroll sideways or down."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QApplication, QFrame, QScrollArea, QWidget


@dataclass
class Fit:
    width: int
    height: int
    sideways: int  # pixels of sideways scrolling needed (0: fits)
    down: int  # pixels of vertical scrolling needed (0: fits)

    @property
    def fits(self) -> bool:
        return self.sideways == 0 and self.down == 0


def fit_in(widget: QWidget, width: int, height: int) -> Fit:
    """Show ``widget`` in a width x height resizable scroll area; how far it would scroll.
    The widget is taken back out afterwards (it stays alive, unparented)."""
    area = QScrollArea()
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setWidget(widget)
    area.resize(width, height)
    area.show()
    for _ in range(3):
        QApplication.processEvents()
    fit = Fit(width, height, area.horizontalScrollBar().maximum(), area.verticalScrollBar().maximum())
    area.takeWidget()
    area.hide()
    area.deleteLater()
    return fit


def scroll_needed(area: QScrollArea) -> tuple[int, int]:
    """(sideways, down) pixels a shown scroll area would scroll."""
    return area.horizontalScrollBar().maximum(), area.verticalScrollBar().maximum()
