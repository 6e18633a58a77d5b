"""All kept queries' cross-attention side by side, each titled with query, class and score:
the reference notebook's figure, live. It follows the application state: the kept queries, the
layer and head, the heatmap style; clicking a cell selects its query.

The cells' plot items are made once and reused: a new image or another set of queries only
updates them (making pyqtgraph view boxes costs tens of milliseconds per image). Cells are laid
out in the number of columns that makes them largest in the panel's shape (a wide, short dock:
one row)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QPen, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QGraphicsRectItem, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from detr_core.analysis.capture import CROSS_CONTENT, CROSS_FULL, CROSS_SPATIAL, InferenceResult
from detr_core.analysis.heatmaps import cross_attention_map

from .canvas import attention_colorbar
from .colors import query_color
from .help import help_button
from .state import MODE_ENCODER, AppState

COLORBAR_WIDTH = 100  # pixels the colour bar and its axis take beside the cells


class _Graphics(pg.GraphicsLayoutWidget):
    """The cells' view. It asks for little room (a graphics view's own size hint follows its
    last size, and the panel's word-wrapped note makes a dock's scroll area give the panel its
    preferred height): it takes what the dock has."""

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(400, 150)


def best_columns(count: int, width: float, height: float, aspect: float, title_width: float = 0) -> int:
    """The number of columns that shows ``count`` cells of ``aspect`` (width / height) largest
    in ``width`` x ``height``; a layout whose cells are narrower than their ``title_width``
    counts as a fifth smaller (a cut title: another layout almost as large is better)."""
    if count <= 1 or width <= 0 or height <= 0:
        return 1

    def size(cols: int) -> float:  # the height of a cell's picture
        rows = -(-count // cols)
        side = min(width / cols / aspect, height / rows)
        return side if width / cols >= title_width else 0.8 * side

    return max(range(1, count + 1), key=lambda cols: (size(cols), -cols))


class AttentionGrid(QWidget):
    MAX_CELLS = 24

    def __init__(self, state: AppState, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state = state
        self.graphics = _Graphics()
        self.graphics.setBackground("#202124")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.colorbar = attention_colorbar()  # one scale for every cell
        top = QHBoxLayout()
        top.addWidget(self.note, 1)
        top.addWidget(help_button("Attention grid"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.graphics, 1)
        self.cells: list[GridCell] = []  # the cells shown, one per query
        self._pool: list[GridCell] = []  # every cell made so far, shown or not
        self._arrangement: tuple[int, int] | None = None  # (cells, columns) laid out
        self._aspect = 1.0  # the image's width / height
        self._title_width = 0.0  # pixels of the widest cell title
        self._image_id: int | None = None
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        for signal in (state.resultChanged, state.visibleQueriesChanged, state.thresholdChanged,
                       state.attentionModeChanged, state.layerChanged, state.headChanged,
                       state.heatmapStyleChanged, state.crossPartChanged):
            signal.connect(self.redraw)

    def _on_click(self, event) -> None:  # noqa: ANN001
        for cell in self.cells:
            if cell.view.sceneBoundingRect().contains(event.scenePos()):
                self.state.set_selected_query(cell.query)
                return

    def redraw(self, *_: object) -> None:
        """Draw the state's kept queries (only while on screen; again when shown)."""
        s, r = self.state, self.state.result
        if not self.isVisible() or r is None:
            return
        # in encoder mode the layer choice is an encoder layer: show the last decoder layer
        layer = min(max(s.layer, 0), r.num_layers - 1) if s.attention_mode != MODE_ENCODER else r.num_layers - 1
        style = s.heatmap_style
        self.update_grid(r, s.image, s.kept_queries(), layer, s.head, style.colormap, style.opacity,
                         smooth=style.smooth, part=s.cross_part)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.redraw()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._arrange(len(self.cells))  # another shape may want other columns

    def update_grid(
        self, result: InferenceResult | None, image: np.ndarray | None, queries: list[int],
        layer: int, head: int | None, colormap: str, opacity: float, smooth: bool = True,
        part: str = CROSS_FULL,
    ) -> None:
        if result is None or image is None or result.cross_attention is None:
            self._show_cells([], None)
            if result is not None and result.deformable is not None:
                from .attention_panel import DEFORMABLE_NOTE

                self.note.setText(DEFORMABLE_NOTE)
            else:
                self.note.setText("No attention to show yet.")
            return
        queries = queries[: self.MAX_CELLS]
        titles = [f"q{q} {result.class_names[int(result.labels[q])]} {float(result.scores[q]):.2f}" for q in queries]
        self._title_width = max((self.fontMetrics().horizontalAdvance(t) + 8 for t in titles), default=0)
        self._show_cells(queries, image)
        extent = result.grid_extent()
        cmap = pg.colormap.get(colormap)
        heats = [cross_attention_map(result, cell.query, layer, head, smooth=smooth, part=part) for cell in self.cells]
        peak = max((float(h.max()) for h in heats), default=0.0) or 1.0  # one scale: cells compare
        self.colorbar.setColorMap(cmap)
        self.colorbar.setLevels((0.0, peak), update_items=False)
        for cell, heat, title in zip(self.cells, heats, titles):
            q = cell.query
            cell.heat.setImage(heat.astype(np.float32), levels=(0.0, peak))
            cell.heat.setColorMap(cmap)
            cell.heat.setRect(QRectF(0, 0, extent[1], extent[0]))
            cell.heat.setOpacity(opacity)
            x0, y0, x1, y1 = (float(v) for v in result.boxes_xyxy[q])
            cell.box.setRect(x0, y0, x1 - x0, y1 - y0)
            cell.title.setText(title)
        what = f"layer {layer + 1}, " + ("mean over heads" if head is None else f"head {head + 1}")
        kind = {CROSS_CONTENT: " (content alone)", CROSS_SPATIAL: " (spatial query alone)"}.get(
            part if result.has_cross_parts else CROSS_FULL, "")
        self.note.setText(f"{len(queries)} queries drawn — decoder cross-attention{kind}, {what}"
                          + (f" (first {self.MAX_CELLS})" if len(queries) == self.MAX_CELLS else ""))

    # --- the cells -------------------------------------------------------------------------------
    @staticmethod
    def _small(image: np.ndarray) -> np.ndarray:
        step = max(1, int(max(image.shape[:2]) // 256))
        return image[::step, ::step] if step > 1 else image

    def _show_cells(self, queries: list[int], image: np.ndarray | None) -> None:
        """One cell per query, reusing the cells made before; the image in each when it changed."""
        while len(self._pool) < len(queries):
            self._pool.append(GridCell.make())
        self.cells = self._pool[: len(queries)]
        for cell, q in zip(self.cells, queries):
            cell.show_query(q)
        if image is not None:
            self._aspect = image.shape[1] / max(image.shape[0], 1)
            if id(image) != self._image_id:
                self._image_id = id(image)
                small, frame = self._small(image), QRectF(0, 0, image.shape[1], image.shape[0])
                for cell in self._pool:  # the hidden ones too: they may come back for this image
                    cell.show_image(small, frame)
        self._arrange(len(self.cells))

    def _arrange(self, count: int) -> None:
        """Lay ``count`` cells out in the columns that make them largest (nothing when unchanged)."""
        width = self.graphics.width() - COLORBAR_WIDTH
        cols = best_columns(count, width, self.graphics.height(), self._aspect, self._title_width)
        if self._arrangement == (count, cols):
            return
        self._arrangement = (count, cols)
        ci = self.graphics.ci
        ci.clear()  # out of the layout (and the scene), not deleted: the pool keeps them
        for n, cell in enumerate(self._pool[:count]):
            ci.addItem(cell.view, row=n // cols, col=n % cols)
        rows = max(1, -(-count // cols))
        ci.addItem(self.colorbar, row=0, col=cols, rowspan=rows)
        self.colorbar.setVisible(count > 0)
        # emptying the layout shrank it to its new size hint: it fills the view again (as the
        # view's resizeEvent does)
        ci.setGeometry(self.graphics.range)


@dataclass
class GridCell:
    query: int
    view: pg.ViewBox
    image: pg.ImageItem
    heat: pg.ImageItem
    box: QGraphicsRectItem
    title: pg.TextItem

    @classmethod
    def make(cls) -> GridCell:
        vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False, enableMouse=False)
        title = pg.TextItem("", color="w", anchor=(0, 0))
        img = pg.ImageItem()
        heat = pg.ImageItem()
        heat.setZValue(5)
        rect = QGraphicsRectItem()
        rect.setZValue(6)
        for item in (img, heat, rect, title):
            vb.addItem(item)
        title.setZValue(7)
        return cls(-1, vb, img, heat, rect, title)

    def show_query(self, query: int) -> None:
        """This cell is now ``query``'s: its colours."""
        if query == self.query:
            return
        self.query = query
        self.title.fill = pg.mkBrush(query_color(query).darker(170))
        self.title.update()
        pen = QPen(query_color(query), 2)
        pen.setCosmetic(True)
        self.box.setPen(pen)

    def show_image(self, small: np.ndarray, frame: QRectF) -> None:
        self.image.setImage(small, levels=(0, 255))
        self.image.setRect(frame)
        self.view.setRange(frame, padding=0)
