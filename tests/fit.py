"""Does a panel fit a dock of a given size? The question the workspace tests ask of every
panel at laptop and projector sizes (issue 29): a panel is shown in a resizable scroll area
(as a dock shows it) of ``width`` x ``height`` logical pixels, and the scroll area says
whether it needs to scroll sideways or down."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PySide6.QtCore import QPoint, QRect
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


@contextmanager
def shown_in_area(widget: QWidget, width: int, height: int) -> Iterator[QScrollArea]:
    """``widget`` shown in a width x height resizable scroll area, laid out; taken back out
    afterwards (it stays alive, unparented)."""
    area = QScrollArea()
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidgetResizable(True)
    area.setWidget(widget)
    area.resize(width, height)
    area.show()
    for _ in range(3):
        QApplication.processEvents()
    try:
        yield area
    finally:
        area.takeWidget()
        area.hide()
        area.deleteLater()


def fit_in(widget: QWidget, width: int, height: int) -> Fit:
    """Show ``widget`` in a width x height resizable scroll area; how far it would scroll."""
    with shown_in_area(widget, width, height) as area:
        return Fit(width, height, *scroll_needed(area))


def scroll_needed(area: QScrollArea) -> tuple[int, int]:
    """(sideways, down) pixels a shown scroll area would scroll."""
    return area.horizontalScrollBar().maximum(), area.verticalScrollBar().maximum()


# --- the window's workspaces ----------------------------------------------------------------------
def rect_in_window(window, widget) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def survey(window, settle) -> list[dict]:
    """Every workspace, every one of its docks brought to the front: how it fits."""
    rows = []
    from explorer.workspaces import WORKSPACES

    for workspace in WORKSPACES:
        window.workspaces.show(workspace.key)
        window.workspaces.reset()
        settle()
        image = window.canvas.height() / window.height() if window.canvas.isVisible() else None
        for key in workspace.docks:
            dock = window.docks[key]
            dock.raise_()
            settle()
            area = dock.widget()
            sideways = down = 0
            if isinstance(area, QScrollArea):
                sideways, down = area.horizontalScrollBar().maximum(), area.verticalScrollBar().maximum()
            rect = rect_in_window(window, dock)
            rows.append({"workspace": workspace.key, "dock": key, "sideways": sideways, "down": down,
                         "clipped": clipped_titles(dock),
                         "inside": window.rect().contains(rect) and not dock.visibleRegion().isEmpty(),
                         "image": image, "size": [rect.width(), rect.height()]})
    return rows


def problems(rows: list[dict], strict_height: bool) -> list[str]:
    from explorer.workspaces import IMAGE_SHARE

    found = []
    for r in rows:
        where = f"{r['workspace']}/{r['dock']} {r['size']}"
        if r["sideways"]:
            found.append(f"{where} scrolls sideways by {r['sideways']} px")
        if strict_height and r["down"]:
            found.append(f"{where} scrolls down by {r['down']} px")
        for title in r.get("clipped", []):
            found.append(f"{where}: the chart title {title!r} is cut")
        if not r["inside"]:
            found.append(f"{where} is not on the window")
        if r["image"] is not None and r["image"] < IMAGE_SHARE:
            found.append(f"{r['workspace']}: the image has {r['image']:.0%} of the height")
    return sorted(set(found))


def clipped_titles(panel: QWidget) -> list[str]:
    """The titles of the charts (pyqtgraph plots) shown in ``panel`` that their view cuts: a
    title wider than its chart runs past the view's edge."""
    import pyqtgraph as pg

    cut = []
    for view in panel.findChildren(pg.GraphicsView):
        if not view.isVisible():
            continue
        shown = view.mapToScene(view.viewport().rect()).boundingRect()
        for item in view.scene().items():
            if isinstance(item, pg.PlotItem) and item.isVisible() and item.titleLabel.isVisible():
                label = item.titleLabel
                text = label.text
                if not text or not label.item.isVisible():
                    continue
                box = label.item.sceneBoundingRect()
                if box.left() < shown.left() - 1 or box.right() > shown.right() + 1:
                    cut.append(text)
    return cut
