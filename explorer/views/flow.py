"""Rows of controls that wrap, and pictures that take the room the controls leave: how a view
fits a narrow dock and a wide one without scrolling sideways (issue 29).

    row = FlowLayout()                        # left to right; a control that does not fit the
    row.addWidget(labelled("Sample", spin))   #   line starts the next one
    self.body.addLayout(row)
    self.body.addWidget(Fill(splitter), 1)    # asks only for its minimum height

A dock shows a view in a resizable scroll area. As soon as one of the view's labels wraps, the
scroll area gives the view the height its layout *prefers* at the dock's width, and the preferred
height of a plot (a QGraphicsView: up to 3/4 of the screen) would make every view scroll.
:class:`Fill` prefers its minimum height: the plots inside grow into whatever height is left.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)


class FlowLayout(QLayout):
    """Items left to right at their preferred width, wrapping to a new line when the width runs
    out. A line's spare width goes to its horizontally expanding items (line edits, sliders,
    progress bars), as in a QHBoxLayout. Its height follows its width (heightForWidth)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6, line_spacing: int = 4) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self._line_spacing = line_spacing
        self.setContentsMargins(0, 0, 0, 0)

    # --- QLayout's interface ---------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        """Everything on one line."""
        shown = self._shown()
        width = sum(i.sizeHint().width() for i in shown) + self._spacing * max(len(shown) - 1, 0)
        height = max((i.sizeHint().height() for i in shown), default=0)
        m = self.contentsMargins()
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802
        """As narrow as the widest item (one item a line)."""
        size = QSize(0, 0)
        for item in self._shown():
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    # --- placing the items -----------------------------------------------------------------
    def _shown(self) -> list[QLayoutItem]:
        return [item for item in self._items if not item.isEmpty()]

    def _arrange(self, rect: QRect, apply: bool) -> int:
        """Place the items in ``rect`` (when ``apply``); the height they take."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        available = max(area.width(), 0)
        lines: list[list[tuple[QLayoutItem, int]]] = [[]]
        used = 0
        for item in self._shown():
            width = max(min(item.sizeHint().width(), available), item.minimumSize().width())
            if lines[-1] and used + self._spacing + width > available:
                lines.append([])
                used = 0
            used += (self._spacing if lines[-1] else 0) + width
            lines[-1].append((item, width))
        y = area.top()
        for n, line in enumerate(lines):
            if not line:
                continue
            widths = self._share_spare(line, available)
            heights = [item.heightForWidth(w) if item.hasHeightForWidth() else item.sizeHint().height()
                       for (item, _), w in zip(line, widths)]
            line_height = max(heights)
            if apply:
                x = area.left()
                for (item, _), w, h in zip(line, widths, heights):
                    item.setGeometry(QRect(QPoint(x, y + (line_height - h) // 2), QSize(w, h)))
                    x += w + self._spacing
            y += line_height + (self._line_spacing if n < len(lines) - 1 else 0)
        return y - area.top() + m.top() + m.bottom()

    def _share_spare(self, line: list[tuple[QLayoutItem, int]], available: int) -> list[int]:
        """The line's widths with its spare width shared by its expanding items."""
        widths = [w for _, w in line]
        spare = available - sum(widths) - self._spacing * (len(line) - 1)
        growing = [i for i, (item, _) in enumerate(line) if item.expandingDirections() & Qt.Orientation.Horizontal]
        for k, i in enumerate(growing):
            share = spare // (len(growing) - k)
            grown = min(widths[i] + max(share, 0), line[i][0].maximumSize().width())
            spare -= grown - widths[i]
            widths[i] = grown
        return widths


def labelled(text: str, widget: QWidget, tip: str = "") -> QWidget:
    """``widget`` with its label in front, as one item: a flow never separates them. ``tip`` (if
    any) goes on both, e.g. the long name of a short label."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(4)
    label = QLabel(text)
    row.addWidget(label)
    row.addWidget(widget)  # no stretch: only a widget that expands (a line edit) widens the pair
    if tip:
        label.setToolTip(tip)
        widget.setToolTip(tip)
    return box


def side_by_side(*widgets: QWidget, spacing: int = 6) -> QWidget:
    """``widgets`` side by side as one item of a flow (they wrap together)."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.setSpacing(spacing)
    for w in widgets:
        row.addWidget(w)
    return box


def text_pane(*widgets: QWidget, min_height: int = 40) -> QScrollArea:
    """``widgets`` (explanations, diagnoses: text of any length) one under the other in a pane
    that scrolls its text when it is longer than the room the pane gets; the controls stay in
    view around it."""
    inner = QWidget()
    layout = QVBoxLayout(inner)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    layout.addStretch(1)
    pane = QScrollArea()
    pane.setWidget(inner)
    pane.setWidgetResizable(True)
    pane.setFrameShape(QFrame.Shape.NoFrame)
    pane.setMinimumHeight(min_height)
    return pane


class Fill(QWidget):
    """Holds ``child`` (plots, pictures, a splitter of them) and prefers only its minimum height
    (at least ``min_height``): it takes the height the view's controls leave, instead of making
    the dock scroll for the height a plot would like (see the module's docstring)."""

    def __init__(self, child: QWidget, min_height: int = 0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(child)
        self.child = child
        if min_height:
            self.setMinimumHeight(min_height)

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(super().sizeHint().width(), self.minimumSizeHint().height())

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return False  # a wrapped label inside (in a splitter) must not bring back the preferred height
