"""The image with every query's box and an attention heatmap laid over it (pyqtgraph)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)  # antialiased curves cost the GUI thread


class ImageCanvas(pg.GraphicsLayoutWidget):
    """Shows an RGB image in pixel coordinates (y down), boxes, a heatmap and a point marker.

    Clicking a box emits ``querySelected(query)``; clicking elsewhere on the image emits
    ``pointClicked(y, x)`` in image pixels.
    """

    querySelected = Signal(int)
    pointClicked = Signal(float, float)

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.setBackground("#202124")
        self.view: pg.ViewBox = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem()
        self.view.addItem(self.image_item)
        self.heat_item = pg.ImageItem()
        self.heat_item.setZValue(5)
        self.heat_item.setOpacity(0.5)
        self.view.addItem(self.heat_item)
        self.marker = pg.ScatterPlotItem(size=14, symbol="+", pen=pg.mkPen("w", width=2), brush=None)
        self.marker.setZValue(20)
        self.view.addItem(self.marker)
        self.rects: list[QGraphicsRectItem] = []
        self.labels: list[pg.TextItem] = []
        self.links: list[pg.PlotCurveItem] = []
        self.image_shape: tuple[int, int] = (0, 0)
        self._boxes = np.zeros((0, 4))
        self._shown = np.zeros(0, bool)
        self.scene().sigMouseClicked.connect(self._on_click)

    # --- content -------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray) -> None:
        """rgb: [H, W, 3] uint8."""
        changed = rgb.shape[:2] != self.image_shape
        self.image_item.setImage(rgb, levels=(0, 255))
        self.image_item.setRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))
        self.image_shape = rgb.shape[:2]
        if changed:
            self.view.autoRange(padding=0.02)

    def set_boxes(self, boxes_xyxy: np.ndarray, texts: list[str], colors: list[QColor]) -> None:
        """One rectangle and label per query; call :meth:`style_boxes` to show them."""
        n = len(boxes_xyxy)
        while len(self.rects) < n:
            rect = QGraphicsRectItem()
            rect.setZValue(10)
            self.view.addItem(rect)
            label = pg.TextItem(anchor=(0, 1))
            label.setZValue(11)
            self.view.addItem(label)
            self.rects.append(rect)
            self.labels.append(label)
        for i, (rect, label) in enumerate(zip(self.rects, self.labels)):
            if i >= n:
                rect.setVisible(False)
                label.setVisible(False)
                continue
            x0, y0, x1, y1 = (float(v) for v in boxes_xyxy[i])
            rect.setRect(QRectF(x0, y0, max(x1 - x0, 0.5), max(y1 - y0, 0.5)))
            label.setText(texts[i], color=pg.mkColor("w"))
            label.fill = pg.mkBrush(colors[i].darker(160))
            label.setPos(x0, y0)
            rect.setData(0, colors[i])
        self._boxes = np.asarray(boxes_xyxy, dtype=float)

    def style_boxes(self, shown: np.ndarray, dimmed: np.ndarray, selected: int | None) -> None:
        """shown / dimmed: [Q] bool. Dimmed boxes are drawn dashed and faint."""
        self._shown = shown.copy()
        for i, (rect, label) in enumerate(zip(self.rects, self.labels)):
            if i >= len(shown):
                break
            visible = bool(shown[i])
            rect.setVisible(visible)
            label.setVisible(visible and (not dimmed[i] or i == selected))
            if not visible:
                continue
            color = QColor(rect.data(0))
            width = 4 if i == selected else 2
            if dimmed[i] and i != selected:
                color.setAlpha(110)
            pen = QPen(color, width)
            pen.setCosmetic(True)
            if dimmed[i]:
                pen.setStyle(Qt.PenStyle.DashLine)
            rect.setPen(pen)
            rect.setZValue(12 if i == selected else 10)

    def set_heatmap(
        self, heat: np.ndarray | None, extent_hw: tuple[float, float] = (0, 0), colormap: str = "inferno",
        opacity: float = 0.5,
    ) -> None:
        """heat: [h, w] non-negative map drawn over ``extent_hw`` (height, width) image pixels
        from the top-left corner; normalized to its maximum."""
        if heat is None:
            self.heat_item.setVisible(False)
            return
        peak = float(heat.max()) if heat.size else 0.0
        norm = heat / peak if peak > 0 else heat
        self.heat_item.setImage(norm.astype(np.float32), levels=(0.0, 1.0))
        self.heat_item.setColorMap(pg.colormap.get(colormap))
        self.heat_item.setRect(QRectF(0, 0, extent_hw[1], extent_hw[0]))
        self.heat_item.setOpacity(opacity)
        self.heat_item.setVisible(True)

    def set_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(opacity)

    def set_marker(self, point_yx: tuple[float, float] | None) -> None:
        if point_yx is None:
            self.marker.setData([])
        else:
            self.marker.setData([point_yx[1]], [point_yx[0]])

    def set_links(self, segments: list[tuple[tuple[float, float], tuple[float, float], QColor]]) -> None:
        """Lines between points ((x0, y0), (x1, y1), colour), e.g. ground truth to matched query."""
        for item in self.links:
            self.view.removeItem(item)
        self.links = []
        for (xa, ya), (xb, yb), color in segments:
            item = pg.PlotCurveItem([xa, xb], [ya, yb], pen=pg.mkPen(color, width=2, style=Qt.PenStyle.DotLine))
            item.setZValue(15)
            self.view.addItem(item)
            self.links.append(item)

    # --- interaction ---------------------------------------------------------------------
    def box_at(self, x: float, y: float) -> int | None:
        """The smallest shown box containing (x, y), if any."""
        best, best_area = None, np.inf
        for i, (x0, y0, x1, y1) in enumerate(self._boxes):
            if i < len(self._shown) and self._shown[i] and x0 <= x <= x1 and y0 <= y <= y1:
                area = (x1 - x0) * (y1 - y0)
                if area < best_area:
                    best, best_area = i, area
        return best

    def _on_click(self, event) -> None:  # noqa: ANN001
        if event.button() != Qt.MouseButton.LeftButton or self.image_shape == (0, 0):
            return
        pos: QPointF = self.view.mapSceneToView(event.scenePos())
        x, y = pos.x(), pos.y()
        h, w = self.image_shape
        if not (0 <= x < w and 0 <= y < h):
            return
        query = self.box_at(x, y)
        if query is not None and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.querySelected.emit(query)
        else:
            self.pointClicked.emit(y, x)

    def click_image(self, y: float, x: float, shift: bool = False) -> None:
        """Programmatic click (what a mouse click at image pixel (y, x) does)."""
        query = None if shift else self.box_at(x, y)
        if query is not None:
            self.querySelected.emit(query)
        else:
            self.pointClicked.emit(y, x)
