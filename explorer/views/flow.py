"""Rows of controls that wrap, and pictures that take the room the controls leave: how a view
fits a narrow dock and a wide one without scrolling sideways (issue 29).

    row = Flow()                              # left to right; a control that does not fit the
    row.addWidget(labelled("Sample", spin))   #   line starts the next one
    self.body.addWidget(row)
    self.body.addWidget(Fill(splitter), 1)    # asks only for its minimum height

A dock shows a view in a resizable scroll area. As soon as one of the view's labels wraps, the
scroll area gives the view the height its layout *prefers* at the dock's width, and the preferred
height of a plot (a QGraphicsView: up to 3/4 of the screen) would make every view scroll.
:class:`Fill` prefers its minimum height: the plots inside grow into whatever height is left.
"""

from __future__ import annotations

from PySide6.QtCore import QChildEvent, QCoreApplication, QEvent, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
    QWidgetItem,
)


class Flow(QWidget):
    """Its widgets left to right at their preferred width, wrapping to a new line when the width
    runs out. A line's spare width goes to its horizontally expanding widgets (line edits,
    sliders), as in a QHBoxLayout. Its height follows its width (heightForWidth).

    A widget, not a QLayout subclass: a Python QLayout must keep the QLayoutItems Qt hands it,
    and shiboken invalidated those wrappers at times (a crash in the next layout pass). This
    keeps only its own child widgets, made in Python."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6, line_spacing: int = 4) -> None:
        super().__init__(parent)
        self._widgets: list[QWidget] = []
        self._spacing = spacing
        self._line_spacing = line_spacing
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def addWidget(self, widget: QWidget) -> None:  # noqa: N802 - as a QLayout's
        """Add ``widget`` at the end (shown, unless it was hidden on purpose)."""
        explicitly_hidden = (widget.isHidden()
                             and widget.testAttribute(Qt.WidgetAttribute.WA_WState_ExplicitShowHide))
        widget.setParent(self)
        self._widgets.append(widget)
        # forgotten the moment it is destroyed: by the id of the wrapper held here, never by
        # touching the widget, which is half destroyed by then (see childEvent)
        widget.destroyed.connect(lambda _=None, key=id(widget): self._forget(key))
        widget.setVisible(not explicitly_hidden)
        self._changed()

    def removeWidget(self, widget: QWidget) -> None:  # noqa: N802 - as a QLayout's
        """Take ``widget`` out (hidden, without a parent: the caller deletes it, e.g. with
        ``deleteLater``); a widget deleted while in the flow leaves it too (``destroyed``)."""
        self._widgets = [w for w in self._widgets if w is not widget]
        widget.hide()
        widget.setParent(None)
        self._changed()

    def widgets(self) -> list[QWidget]:
        return list(self._widgets)

    # --- what the parent layout asks -------------------------------------------------------
    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(width, apply=False)

    def sizeHint(self) -> QSize:  # noqa: N802
        """Everything on one line."""
        items = self._items()
        width = sum(i.sizeHint().width() for i in items) + self._spacing * max(len(items) - 1, 0)
        return QSize(width, max((i.sizeHint().height() for i in items), default=0))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        """As narrow as the widest widget (one a line)."""
        size = QSize(0, 0)
        for item in self._items():
            size = size.expandedTo(item.minimumSize())
        return size

    # --- keeping the lines up to date ------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:  # a widget was shown, hidden or changed its hint
            self._changed()
        return super().event(event)

    def childEvent(self, event: QChildEvent) -> None:  # noqa: N802
        if event.type() == QEvent.Type.ChildRemoved:
            # A child deleted while in the flow is half destroyed when this arrives: touching its
            # wrapper (even asking its address) crashed the app (opening an LW-DETR after a DEIMv2,
            # whose deformable views have other head counts). ``destroyed`` has already taken it
            # off the list; lay the rest out from the event loop, not from inside this event.
            QCoreApplication.postEvent(self, QEvent(QEvent.Type.LayoutRequest))
        super().childEvent(event)

    def _forget(self, key: int) -> None:
        self._widgets = [w for w in self._widgets if id(w) != key]

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._arrange(self.width(), apply=True)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)  # widgets shown or hidden while this was hidden
        self._changed()

    def _changed(self) -> None:
        self.updateGeometry()
        self._arrange(self.width(), apply=True)

    # --- placing the widgets ---------------------------------------------------------------
    def _items(self) -> list[QWidgetItem]:
        """Layout items for the shown widgets (made afresh: they answer with the widgets' size
        policies, minimums and maximums as a QBoxLayout would)."""
        return [QWidgetItem(w) for w in self._widgets if not w.isHidden()]

    def _arrange(self, available: int, apply: bool) -> int:
        """Place the widgets in lines ``available`` pixels wide (when ``apply``); the height they take."""
        available = max(available, 0)
        lines: list[list[tuple[QWidgetItem, int]]] = [[]]
        used = 0
        for item in self._items():
            width = max(min(item.sizeHint().width(), available), item.minimumSize().width())
            if lines[-1] and used + self._spacing + width > available:
                lines.append([])
                used = 0
            used += (self._spacing if lines[-1] else 0) + width
            lines[-1].append((item, width))
        y = 0
        for line in (line for line in lines if line):
            widths = self._share_spare(line, available)
            heights = [item.heightForWidth(w) if item.hasHeightForWidth() else item.sizeHint().height()
                       for (item, _), w in zip(line, widths)]
            line_height = max(heights)
            if apply:
                x = 0
                for (item, _), w, h in zip(line, widths, heights):
                    item.setGeometry(QRect(QPoint(x, y + (line_height - h) // 2), QSize(w, h)))
                    x += w + self._spacing
            y += line_height + self._line_spacing
        return max(y - self._line_spacing, 0)

    def _share_spare(self, line: list[tuple[QWidgetItem, int]], available: int) -> list[int]:
        """The line's widths with its spare width shared by its expanding widgets."""
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
