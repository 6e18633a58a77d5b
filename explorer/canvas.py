"""The image with every query's box and an attention heatmap laid over it (pyqtgraph):
:class:`ImageCanvas` draws what it is given; :class:`ImageView` is the explorer's main image,
drawn from the application state."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QLabel

from detr_core.analysis.heatmaps import cross_attention_map, encoder_attention_map

from .colors import query_color
from .state import MODE_CROSS, MODE_ENCODER, AppState, HeatmapStyle

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)  # antialiased curves cost the GUI thread


def attention_colorbar(label: str = "attention weight") -> pg.ColorBarItem:
    """A read-only colour bar for attention maps (values from 0 to the map's peak)."""
    bar = pg.ColorBarItem(values=(0.0, 1.0), width=12, colorMap=pg.colormap.get("inferno"), label=label,
                          interactive=False, rounding=1e-6, colorMapMenu=False)
    bar.axis.enableAutoSIPrefix(False)
    bar.axis.setWidth(72)  # room for the tick values and the label (it is not widened as they change)
    return bar


def label_spot(box: np.ndarray, width: float, height: float, image_hw: tuple[int, int],
               placed: list[QRectF], slide_past_box: bool = False, gap: float = 0.0) -> QRectF:
    """Where a ``width`` x ``height`` label of ``box`` (x0, y0, x1, y1) goes, in image pixels:
    the first free spot inside the image of: above the box's top edge, under it (inside the box),
    under the bottom edge, above it; each also slid right past the labels in the way while it
    stays over the box (or, ``slide_past_box``, in the image). Else the nearest free spot in the
    column, else above the box anyway. Labels keep ``gap`` apart where there is room for it."""
    h, w = image_hw
    x0, y0, x1, y1 = (float(v) for v in box)

    def inside(x: float, y: float) -> QRectF:
        return QRectF(min(max(x, 0.0), max(w - width, 0.0)), min(max(y, 0.0), max(h - height, 0.0)), width, height)

    def blocking(r: QRectF, gap: float = gap) -> list[QRectF]:
        r = r.adjusted(-gap, -gap, gap, gap)
        return [o for o in placed if (c := r.intersected(o)).width() > 1e-6 and c.height() > 1e-6]

    candidates = [inside(x0, y0 - height), inside(x0, y0), inside(x0, y1), inside(x0, y1 - height)]
    for spot in candidates:
        while (ahead := blocking(spot)):
            x = max(o.right() for o in ahead) + gap
            if (not slide_past_box and x >= x1) or x + width > w:
                break
            spot = QRectF(x, spot.y(), width, height)
        else:
            return spot
    first = candidates[0]
    ys = np.arange(0.0, max(h - height, 0.0) + 1e-9, max(height / 4, 0.5))
    for room in (gap, 0.0):
        for y in sorted(ys, key=lambda y: abs(y - first.y())):
            spot = QRectF(first.x(), float(y), width, height)
            if not blocking(spot, room):
                return spot
    return first


LIMIT_SPAN = 24  # how far the view may zoom out: this many times the image's longer side


class ImageCanvas(pg.GraphicsLayoutWidget):
    """Shows an RGB image in pixel coordinates (y down), boxes, a heatmap and a point marker.

    Clicking a box emits ``querySelected(query)``; clicking elsewhere on the image emits
    ``pointClicked(y, x)`` in image pixels. ``colorbar=False``: a canvas of boxes only, which
    never shows a heatmap, has no attention colour bar either (``colorbar`` is then None).
    """

    querySelected = Signal(int)
    pointClicked = Signal(float, float)

    def __init__(self, parent=None, colorbar: bool = True) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.setBackground("#202124")
        self.view: pg.ViewBox = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem()
        self.view.addItem(self.image_item)
        self.heat_item = pg.ImageItem()
        self.heat_item.setZValue(5)
        self.heat_item.setOpacity(0.5)
        self.view.addItem(self.heat_item)
        # the heatmap's colour scale, in attention weight (shown with the heatmap)
        self.colorbar: pg.ColorBarItem | None = attention_colorbar() if colorbar else None
        if self.colorbar is not None:
            self.addItem(self.colorbar, row=0, col=1)  # hidden by set_heatmap(None), after its first layout
        self.marker = pg.ScatterPlotItem(size=14, symbol="+", pen=pg.mkPen("w", width=2), brush=None)
        self.marker.setZValue(20)
        self.view.addItem(self.marker)
        self.rects: list[QGraphicsRectItem] = []
        self.labels: list[pg.TextItem] = []
        self.links: list[pg.PlotCurveItem] = []
        self.image_shape: tuple[int, int] = (0, 0)
        self._boxes = np.zeros((0, 4))
        self._shown = np.zeros(0, bool)
        self._priority = np.zeros(0)  # which labels keep their natural place first (higher first)
        self._selected: int | None = None
        self.labels_in_a_row = False  # True: a label may slide past its box's right edge (boxes of one object)
        # a label's size in image pixels depends on the zoom: placed again whenever it changes
        self.view.sigTransformChanged.connect(self.place_labels)
        self.scene().sigMouseClicked.connect(self._on_click)
        self._fitted = False  # the image is fitted and the user has not zoomed or panned since
        self.view.sigRangeChangedManually.connect(self._on_manual_range)
        # a line over the image's top-left corner saying what is drawn when that is not obvious
        self.caption = QLabel(self)
        self.caption.setObjectName("canvas_caption")
        self.caption.setStyleSheet("#canvas_caption { background: rgba(32, 33, 36, 210); color: #e8eaed; "
                                   "padding: 3px 6px; border-radius: 3px; }")
        self.caption.setWordWrap(True)
        self.caption.setVisible(False)
        self.view.sigResized.connect(lambda *_: self._place_caption())  # (the colour bar shown or hidden)

    # --- content -------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray) -> None:
        """rgb: [H, W, 3] uint8. A new image always fits the view."""
        h, w = rgb.shape[:2]
        self.image_item.setImage(rgb, levels=(0, 255))
        self.image_item.setRect(QRectF(0, 0, w, h))
        self.image_shape = (h, w)
        # zoom in to a few pixels, out far enough that the whole image still fits a flat strip
        # of a view (a small screen with a tall dock below: 16:1 and more), never farther away
        s = LIMIT_SPAN * max(w, h)
        self.view.setLimits(xMin=(w - s) / 2, xMax=(w + s) / 2, yMin=(h - s) / 2, yMax=(h + s) / 2,
                            minXRange=4, minYRange=4, maxXRange=s, maxYRange=s)
        self.fit()

    def fit(self) -> None:
        """Show the whole image (double-click or Ctrl+0); it stays fitted as the view resizes,
        until the user zooms or pans."""
        h, w = self.image_shape
        if h and w:
            self.view.setRange(QRectF(0, 0, w, h), padding=0.02)
            self._fitted = True

    def _on_manual_range(self, *_: object) -> None:
        self._fitted = False

    def resizeEvent(self, event) -> None:  # noqa: ANN001, N802
        super().resizeEvent(event)
        if getattr(self, "_fitted", False):  # (also called while the base class is built)
            self.fit()
        if hasattr(self, "caption"):  # (also called while the base class is built)
            self._place_caption()

    def set_caption(self, text: str) -> None:
        """A short line over the image's top-left corner ("": none)."""
        if text == self.caption.text() and self.caption.isVisibleTo(self) == bool(text):
            return  # (every redraw asks: a training preview's many times a second)
        self.caption.setText(text)
        self.caption.setVisible(bool(text))
        self._place_caption()

    def _place_caption(self) -> None:
        """In the image's view (clear of the colour bar), wrapped only where that is narrow."""
        if self.caption.isVisibleTo(self):
            margin = 6
            area = self.mapFromScene(self.view.sceneBoundingRect()).boundingRect()
            one_line = self.caption.fontMetrics().horizontalAdvance(self.caption.text()) + 16  # + its padding
            width = min(one_line, max(area.width() - 2 * margin, 40))
            self.caption.resize(width, self.caption.heightForWidth(width))
            self.caption.move(area.left() + margin, area.top() + margin)

    def set_boxes(self, boxes_xyxy: np.ndarray, texts: list[str], colors: list[QColor],
                  priority: np.ndarray | None = None) -> None:
        """One rectangle and label per query; call :meth:`style_boxes` to show them. Labels are
        placed by ``priority`` (higher first, after the selected one; default: in order)."""
        n = len(boxes_xyxy)
        while len(self.rects) < n:
            rect = QGraphicsRectItem()
            rect.setZValue(10)
            self.view.addItem(rect)
            label = pg.TextItem(anchor=(0, 0))  # placed by its top-left corner (see place_labels)
            label.setZValue(16)  # over every box (the selected one's thick edge too) and link line
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
        self._boxes = np.asarray(boxes_xyxy, dtype=float).reshape(-1, 4)
        self._priority = -np.arange(n, dtype=float) if priority is None else np.asarray(priority, dtype=float)

    def style_boxes(self, shown: np.ndarray, dimmed: np.ndarray, selected: int | None) -> None:
        """shown / dimmed: [Q] bool. Dimmed boxes are drawn dashed and faint."""
        self._shown = shown.copy()
        self._selected = selected
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
            label.setZValue(17 if i == selected else 16)
        self.place_labels()

    def place_labels(self, *_: object) -> None:
        """Put each shown label at its box's top-left corner, above the box, or inside it when
        above would leave the image, always inside the image and clear of the labels placed
        before it (the selected query's first, then by priority): a label that would overlap
        one moves along beside it, to the box's other edges, or up or down its column. A label's
        size is fixed in screen pixels, so the layout follows the zoom."""
        h, w = self.image_shape
        order = [i for i in range(min(len(self.labels), len(self._boxes))) if self.labels[i].isVisible()]
        if not (h and w and order):
            return
        try:
            px, py = (abs(float(v)) for v in self.view.viewPixelSize())  # image pixels per screen pixel
        except (ZeroDivisionError, np.linalg.LinAlgError):
            return
        if not (np.isfinite(px) and np.isfinite(py) and px > 0 and py > 0):
            return
        order.sort(key=lambda i: (i != self._selected, -self._priority[i] if i < len(self._priority) else 0))
        placed: list[QRectF] = []
        for i in order:
            size = self.labels[i].textItem.boundingRect()
            spot = label_spot(self._boxes[i], size.width() * px, size.height() * py, (h, w), placed,
                              slide_past_box=self.labels_in_a_row, gap=2 * px)
            self.labels[i].setPos(spot.x(), spot.y())
            placed.append(spot)

    def set_heatmap(
        self, heat: np.ndarray | None, extent_hw: tuple[float, float] = (0, 0), colormap: str = "inferno",
        opacity: float = 0.5,
    ) -> None:
        """heat: [h, w] non-negative attention weights drawn over ``extent_hw`` (height, width)
        image pixels from the top-left corner, from 0 to their peak, with the colour bar."""
        if heat is None:
            self.heat_item.setVisible(False)
            if self.colorbar is not None:
                self.colorbar.setVisible(False)
            return
        peak = float(heat.max()) if heat.size else 0.0
        peak = peak if peak > 0 else 1.0
        cmap = pg.colormap.get(colormap)
        self.heat_item.setImage(heat.astype(np.float32), levels=(0.0, peak))
        self.heat_item.setColorMap(cmap)
        if self.colorbar is not None:
            self.colorbar.setColorMap(cmap)
            self.colorbar.setLevels((0.0, peak), update_items=False)
            if not self.colorbar.isVisible():
                self.colorbar.setVisible(True)
                self.colorbar.axis.resizeEvent(None)  # place its label again, now that it is laid out
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
        if event.double():
            self.fit()
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


class ImageView(ImageCanvas):
    """The state's image with every query's box (ticked, above the threshold or dimmed), the
    selected query drawn thick, and the heatmap the state asks for: the selected query's decoder
    cross-attention or the encoder self-attention at the clicked point, in the chosen layer and
    head. Clicking a box selects its query; clicking elsewhere (or Shift+click) picks the point."""

    def __init__(self, state: AppState, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state = state
        self._encoder_cache: dict[tuple[float, float], torch.Tensor] = {}
        self._style = state.heatmap_style
        self.querySelected.connect(state.set_selected_query)
        self.pointClicked.connect(lambda y, x: state.set_encoder_point((y, x)))
        state.imageChanged.connect(self._on_image)
        state.resultChanged.connect(self._on_result)
        for signal in (state.selectedQueryChanged, state.visibleQueriesChanged, state.thresholdChanged,
                       state.showDimmedChanged, state.layerChanged, state.headChanged, state.crossPartChanged):
            signal.connect(self.redraw)
        state.attentionModeChanged.connect(self._on_point_or_mode)
        state.encoderPointChanged.connect(self._on_point_or_mode)
        state.heatmapStyleChanged.connect(self._on_style)

    def _on_image(self, rgb: np.ndarray | None) -> None:
        self._encoder_cache.clear()
        if rgb is not None:
            self.set_image(rgb)

    def _on_result(self, result) -> None:  # noqa: ANN001
        self._encoder_cache.clear()
        if result is not None:
            labels = [result.class_names[int(i)] for i in result.labels]
            texts = [f"{q}: {labels[q]} {float(result.scores[q]):.2f}" for q in range(result.num_queries)]
            self.set_boxes(result.boxes_xyxy.numpy(), texts, [query_color(q) for q in range(result.num_queries)],
                           priority=result.scores.numpy())
        self.redraw()

    def _on_point_or_mode(self, *_: object) -> None:
        s = self.state
        self.set_marker(s.encoder_point if s.attention_mode == MODE_ENCODER else None)
        self.redraw()

    def _on_style(self, style: HeatmapStyle) -> None:
        only_opacity = (style.colormap, style.smooth) == (self._style.colormap, self._style.smooth)
        self._style = style
        if only_opacity:
            self.set_opacity(style.opacity)  # no need to recompute the map
        else:
            self.redraw()

    def redraw(self, *_: object) -> None:
        """Boxes and heatmap from the state's cached result (never runs the model)."""
        s, r = self.state, self.state.result
        if r is None:
            return
        shown, dimmed = s.shown_and_dimmed()
        q = self.stand_in_query()
        if q is not None:  # the heatmap's query, drawn dashed, so its heatmap is not a box-less glow
            shown, dimmed = shown.copy(), dimmed.copy()
            shown[q] = dimmed[q] = True
            self.set_caption(f"Nothing reaches {s.threshold:.2f}: showing query {q} "
                             f"({r.class_names[int(r.labels[q])]} {float(r.scores[q]):.2f}), dashed")
        else:
            self.set_caption("")
        self.style_boxes(shown, dimmed, s.selected_query)
        self._draw_heatmap()

    def stand_in_query(self) -> int | None:
        """The selected query when its cross-attention is shown while no box is drawn because no
        query reaches the threshold (a new image's best query then): its box is drawn dashed and
        the caption says so. None otherwise (boxes the user unticked stay hidden)."""
        s, r = self.state, self.state.result
        q = s.selected_query
        if r is None or q is None or q >= r.num_queries or s.attention_mode != MODE_CROSS:
            return None
        shown, _ = s.shown_and_dimmed()
        nothing_reaches = not bool((r.scores >= s.threshold).any())
        return q if nothing_reaches and not shown.any() else None

    def _draw_heatmap(self) -> None:
        s, r = self.state, self.state.result
        if r is None or r.cross_attention is None:
            self.set_heatmap(None)
            return
        style = s.heatmap_style
        layer = max(s.layer, 0)
        if s.attention_mode == MODE_CROSS and s.selected_query is not None:
            heat = cross_attention_map(r, s.selected_query, layer, s.head, style.smooth, s.cross_part)
            self.set_heatmap(heat, r.grid_extent(), style.colormap, style.opacity)
        elif s.attention_mode == MODE_ENCODER and s.encoder_point is not None:
            heat = encoder_attention_map(self._encoder_maps(s.encoder_point), r, layer, s.head, style.smooth)
            self.set_heatmap(heat, r.grid_extent(), style.colormap, style.opacity)
        else:
            self.set_heatmap(None)

    def _encoder_maps(self, point: tuple[float, float]) -> torch.Tensor:
        r = self.state.result
        assert r is not None
        if point not in self._encoder_cache:
            self._encoder_cache[point] = r.encoder_attention_at(*point)
        return self._encoder_cache[point]
