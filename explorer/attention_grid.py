"""All kept queries' cross-attention side by side, each titled with query, class and score:
the reference notebook's figure, live. It follows the application state: the kept queries, the
layer and head, the heatmap style; clicking a cell selects its query."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QPen, QShowEvent
from PySide6.QtWidgets import QGraphicsRectItem, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from detr_core.analysis.capture import InferenceResult
from detr_core.analysis.heatmaps import cross_attention_map

from .canvas import attention_colorbar
from .colors import query_color
from .help import help_button
from .state import MODE_ENCODER, AppState


class AttentionGrid(QWidget):
    MAX_CELLS = 24

    def __init__(self, state: AppState, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state = state
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#202124")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.colorbar: pg.ColorBarItem | None = None  # one scale for every cell
        top = QHBoxLayout()
        top.addWidget(self.note, 1)
        top.addWidget(help_button("Attention grid"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.graphics, 1)
        self.cells: list[GridCell] = []
        self._key: tuple | None = None
        self._image_id: int | None = None
        self.graphics.scene().sigMouseClicked.connect(self._on_click)
        for signal in (state.resultChanged, state.visibleQueriesChanged, state.thresholdChanged,
                       state.attentionModeChanged, state.layerChanged, state.headChanged,
                       state.heatmapStyleChanged):
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
                         smooth=style.smooth)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.redraw()

    def update_grid(
        self, result: InferenceResult | None, image: np.ndarray | None, queries: list[int],
        layer: int, head: int | None, colormap: str, opacity: float, smooth: bool = True,
    ) -> None:
        if result is None or image is None or result.cross_attention is None:
            self.graphics.clear()
            self.cells = []
            self.colorbar = None
            self._key = None
            if result is not None and result.deformable is not None:
                from .attention_panel import DEFORMABLE_NOTE

                self.note.setText(DEFORMABLE_NOTE)
            else:
                self.note.setText("No attention to show yet.")
            return
        queries = queries[: self.MAX_CELLS]
        key = (tuple(queries), image.shape)
        if key != self._key:  # new set of cells; otherwise update the existing ones in place
            self._build(image, queries)
            self._key = key
            self._image_id = id(image)
        elif id(image) != self._image_id:
            self._image_id = id(image)
            small = self._small(image)
            for cell in self.cells:
                cell.image.setImage(small, levels=(0, 255))
        extent = result.grid_extent()
        cmap = pg.colormap.get(colormap)
        heats = [cross_attention_map(result, cell.query, layer, head, smooth=smooth) for cell in self.cells]
        peak = max((float(h.max()) for h in heats), default=0.0) or 1.0  # one scale: cells compare
        if self.colorbar is not None:
            self.colorbar.setColorMap(cmap)
            self.colorbar.setLevels((0.0, peak), update_items=False)
        for cell, heat in zip(self.cells, heats):
            q = cell.query
            cell.heat.setImage(heat.astype(np.float32), levels=(0.0, peak))
            cell.heat.setColorMap(cmap)
            cell.heat.setRect(QRectF(0, 0, extent[1], extent[0]))
            cell.heat.setOpacity(opacity)
            x0, y0, x1, y1 = (float(v) for v in result.boxes_xyxy[q])
            cell.box.setRect(x0, y0, x1 - x0, y1 - y0)
            label = result.class_names[int(result.labels[q])]
            cell.title.setText(f"q{q} {label} {float(result.scores[q]):.2f}")
        what = f"layer {layer + 1}, " + ("mean over heads" if head is None else f"head {head + 1}")
        self.note.setText(f"{len(queries)} queries above the threshold — decoder cross-attention, {what}"
                          + (f" (first {self.MAX_CELLS})" if len(queries) == self.MAX_CELLS else ""))

    @staticmethod
    def _small(image: np.ndarray) -> np.ndarray:
        step = max(1, int(max(image.shape[:2]) // 256))
        return image[::step, ::step] if step > 1 else image

    def _build(self, image: np.ndarray, queries: list[int]) -> None:
        self.graphics.clear()
        self.cells = []
        cols = max(1, min(6, int(np.ceil(np.sqrt(max(len(queries), 1)) * 1.3))))
        small = self._small(image)
        frame = QRectF(0, 0, image.shape[1], image.shape[0])
        for n, q in enumerate(queries):
            if n and n % cols == 0:
                self.graphics.nextRow()
            vb = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False, enableMouse=False)
            title = pg.TextItem("", color="w", fill=pg.mkBrush(query_color(q).darker(170)), anchor=(0, 0))
            img = pg.ImageItem(small, levels=(0, 255))
            img.setRect(frame)
            heat = pg.ImageItem()
            heat.setZValue(5)
            rect = QGraphicsRectItem()
            pen = QPen(query_color(q), 2)
            pen.setCosmetic(True)
            rect.setPen(pen)
            rect.setZValue(6)
            for item in (img, heat, rect, title):
                vb.addItem(item)
            title.setZValue(7)
            vb.setRange(frame, padding=0)
            self.cells.append(GridCell(q, vb, img, heat, rect, title))
        rows = max(1, -(-len(queries) // cols))
        self.colorbar = attention_colorbar()
        self.graphics.addItem(self.colorbar, row=0, col=cols, rowspan=rows)


@dataclass
class GridCell:
    query: int
    view: pg.ViewBox
    image: pg.ImageItem
    heat: pg.ImageItem
    box: QGraphicsRectItem
    title: pg.TextItem
