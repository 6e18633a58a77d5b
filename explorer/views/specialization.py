"""Query specialization (the paper's Figure 7): one small square per query slot with the centre
of every box it predicted over a set of images, coloured by box size; a summary table; and one
overview square with every slot's mean centre."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGraphicsRectItem,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QWidget,
)
from torch import nn

from detr_core.analysis.specialization import (
    LARGE_SIDE,
    BoxSize,
    ImageBatches,
    SlotPredictions,
    SlotSummary,
    collect_slot_predictions,
    slot_summaries,
)
from detr_core.config import ToyDataConfig
from detr_core.data.toy import heldout_split

from ..colors import query_color
from ..stable_label import wrap_label
from ..state import AppState, LoadedModel
from ..workers import WorkContext
from .base import AnalysisView
from .flow import Fill, Flow, side_by_side

# Figure 7's colours
SIZE_COLORS = {
    BoxSize.SMALL: QColor(44, 160, 44),
    BoxSize.LARGE_WIDE: QColor(214, 39, 40),
    BoxSize.LARGE_TALL: QColor(31, 119, 180),
}
SIZE_NAMES = {BoxSize.SMALL: "small", BoxSize.LARGE_WIDE: "large, wide", BoxSize.LARGE_TALL: "large, tall"}
BACKGROUND = "#202124"
FLAG_COLOR = QColor("#ff8a80")
TABLE_COLUMNS = ("query", "class", "share", "objects", "centre (x, y)", "spread", "shown", "note")
HELDOUT_IMAGES = 5000  # size of the toy held-out split offered (the spin box picks how many to run)
PAGE_LABEL_WIDEST = "slots 000–000 of 000 (page 00/00)"  # the pager's longest text, up to 999 queries


def _short(name: str, most: int = 9) -> str:
    """A class name short enough for a slot's title."""
    return name if len(name) <= most else name[:most - 1] + "…"


class SlotCell:
    """One slot's square in the grid: a plot with an outline of the image square and a scatter."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        self.query = -1
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(False, False)
        plot.hideButtons()
        plot.invertY(True)  # image coordinates: y grows downwards
        plot.setAspectLocked(True)
        plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.03)
        self.frame = QGraphicsRectItem(0, 0, 1, 1)
        self.frame.setBrush(QBrush(QColor("#2b2c2f")))
        self.frame.setZValue(-1)
        plot.addItem(self.frame)
        self.scatter = pg.ScatterPlotItem(size=3, pen=None)
        plot.addItem(self.scatter)
        self.set_selected(False)

    def set_query(self, query: int) -> None:
        """Show slot ``query``, or nothing at all for -1."""
        self.query = query
        self.frame.setVisible(query >= 0)

    def set_selected(self, selected: bool) -> None:
        color = query_color(self.query) if selected and self.query >= 0 else QColor("#5f6368")
        pen = QPen(color, 3 if selected else 1)
        pen.setCosmetic(True)
        self.frame.setPen(pen)


class SpecializationView(AnalysisView):
    """Where each query slot puts its boxes.

    It analyses the state's model (on the toy data of its data source); Run collects predictions
    off the GUI thread. Clicking a slot's square, its table row or its overview point selects
    that query in the state; the state's selection is shown.
    """

    PAGE_SIZE = 20
    COLUMNS = 5

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Query specialization", parent)
        self.state = state
        self.dataset: ImageBatches | None = None  # a loaded dataset, offered next to the toy split
        self.dataset_name = ""
        self.predictions: SlotPredictions | None = None
        self.summaries: list[SlotSummary] = []
        self.page = 0
        self.selected: int | None = None
        self._generation = 0  # bumped when the model or data change: older results are dropped
        self._swatches: dict[int, QPixmap] = {}
        self._brushes = {k: pg.mkBrush(c.red(), c.green(), c.blue(), 150) for k, c in SIZE_COLORS.items()}

        # controls
        self.source = QComboBox()
        self.num_images = QSpinBox()
        self.num_images.setRange(1, HELDOUT_IMAGES)
        self.num_images.setValue(200)
        self.num_images.setSuffix(" images")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.confident_only = QCheckBox("Confident only, score ≥")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(2)
        self.threshold.setValue(0.7)
        self.confident_only.toggled.connect(self._refilter)
        self.threshold.valueChanged.connect(self._on_threshold)
        self.prev_button = QPushButton("◀ Prev")
        self.next_button = QPushButton("Next ▶")
        self.prev_button.clicked.connect(lambda: self.set_page(self.page - 1))
        self.next_button.clicked.connect(lambda: self.set_page(self.page + 1))
        self.page_label = QLabel("")
        # as wide as its longest text from the start: the pager keeps its place as the text changes
        # (a longer text gets its room only a pass or two of the event loop later, as in any nested
        # Qt layout: a picture taken right after a run showed it cut, "slots 0–19 o")
        self.page_label.setMinimumWidth(self.page_label.fontMetrics().horizontalAdvance(PAGE_LABEL_WIDEST))
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(24)  # a long dataset name must not widen the dock (its tooltip has it)
        controls = Flow()  # wraps in a narrow dock
        controls.addWidget(side_by_side(self.source, self.num_images, self.run_button))
        controls.addWidget(side_by_side(self.confident_only, self.threshold, spacing=2))
        controls.addWidget(side_by_side(self.prev_button, self.page_label, self.next_button))
        self.body.addWidget(controls)

        # the grid of slots (left), the overview square and the table (right)
        self.grid = pg.GraphicsLayoutWidget()
        self.grid.setBackground(BACKGROUND)
        self.grid.scene().sigMouseClicked.connect(self._on_grid_click)
        self.cells: list[SlotCell] = []
        self.overview_widget = pg.PlotWidget(background=BACKGROUND)
        self.overview = self.overview_widget.getPlotItem()
        self.overview.setTitle("mean centre of every slot", size="9pt")
        self.overview.setMenuEnabled(False)
        self.overview.hideButtons()
        self.overview.invertY(True)
        self.overview.setAspectLocked(True)
        self.overview.setRange(xRange=(0, 1), yRange=(0, 1), padding=0.04)
        self.overview.setMouseEnabled(False, False)
        outline = QGraphicsRectItem(0, 0, 1, 1)
        outline.setPen(pg.mkPen("#5f6368", width=1, cosmetic=True))
        outline.setBrush(QBrush(QColor("#2b2c2f")))
        outline.setZValue(-1)
        self.overview.addItem(outline)
        self.overview_points = pg.ScatterPlotItem(size=11, hoverable=True, tip=None)
        self.overview_points.sigClicked.connect(self._on_overview_click)
        self.overview.addItem(self.overview_points)
        self.overview_labels: list[pg.TextItem] = []
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.currentCellChanged.connect(self._on_table_row)
        # the slots, the overview square and the table as tabs: each gets the whole panel (side by
        # side, the grid's fifth column did not fit a 600 px dock)
        tabs = QTabWidget()
        tabs.addTab(self.grid, "Slots")
        tabs.addTab(self.overview_widget, "Mean centres")
        tabs.addTab(self.table, "Per-slot summary")
        self.tabs = tabs
        self.body.addWidget(Fill(tabs, 220), 1)

        legend = Flow()
        for kind, color in SIZE_COLORS.items():
            legend.addWidget(QLabel(f"<span style='color:{color.name()}'>●</span> {SIZE_NAMES[kind]}"))
        size_note = QLabel(f"(large: √(w·h) ≥ {LARGE_SIDE:g} of the side)")
        size_note.setToolTip(f"A box is large when √(w·h) ≥ {LARGE_SIDE:g} of the image side; centres are drawn in "
                             "the normalized image square, y down")
        legend.addWidget(size_note)
        self.body.addWidget(legend)
        self.status = wrap_label(QLabel("Load a model and press Run."))  # or why it cannot run
        self.body.addWidget(self.status)
        self._update_sources()
        self._update_page_controls()
        state.modelChanged.connect(self._on_model)
        state.selectedQueryChanged.connect(lambda q: q is not None and self.select_query(q))

    # --- inputs ----------------------------------------------------------------------------
    @property
    def data_config(self) -> ToyDataConfig | None:
        """The model's training data, when known: the toy split is then drawn like it."""
        return self.state.data_source.data_config

    def _on_model(self, loaded: LoadedModel | None) -> None:
        """A new model: old results are cleared."""
        self.cancel_job()
        self._clear("Press Run to collect every slot's predictions." if loaded is not None else "No model.")

    def set_dataset(self, dataset: ImageBatches | None, name: str = "") -> None:
        """Offer a loaded dataset (anything with ``len`` and ``batch(indices)``) next to the toy split."""
        self.dataset = dataset
        self.dataset_name = name or "loaded dataset"
        self._update_sources()
        if dataset is not None:
            self.source.setCurrentIndex(1)

    def _update_sources(self) -> None:
        self.source.blockSignals(True)
        self.source.clear()
        self.source.addItem("toy held-out split")
        if self.dataset is not None:
            self.source.addItem(f"{self.dataset_name} ({len(self.dataset)} images)")
        for i in range(self.source.count()):
            self.source.setItemData(i, self.source.itemText(i), Qt.ItemDataRole.ToolTipRole)
        self.source.blockSignals(False)

    def _chosen_dataset(self) -> ImageBatches:
        if self.source.currentIndex() == 1 and self.dataset is not None:
            return self.dataset
        return heldout_split(self.data_config, HELDOUT_IMAGES)

    # --- collection ------------------------------------------------------------------------
    def run(self) -> bool:
        """Collect predictions off the GUI thread; False if there is no model or a job runs."""
        if self.model is None:
            self.show_error("No model to analyse.")
            return False
        dataset = self._chosen_dataset()
        count = min(self.num_images.value(), len(dataset))
        generation = self._generation
        return self.run_job(_collect, self.model, dataset, count,
                            on_done=lambda p: self._on_collected(p, generation), button=self.run_button)

    def _on_collected(self, predictions: SlotPredictions, generation: int) -> None:
        if generation != self._generation:
            return  # the model changed while collecting
        self.set_predictions(predictions)

    def set_predictions(self, predictions: SlotPredictions) -> None:
        """Show already collected predictions (what a finished Run calls)."""
        self.predictions = predictions
        self.page = min(self.page, self.num_pages - 1)
        selected = self.state.selected_query
        self.selected = selected if selected is not None and selected < predictions.num_queries else None
        self._build_cells()
        self._refilter()

    def _clear(self, message: str) -> None:
        self._generation += 1
        self.predictions = None
        self.summaries = []
        self.page = 0
        self.selected = None
        self.grid.clear()
        self.cells = []
        self.overview_points.clear()
        for label in self.overview_labels:
            self.overview.removeItem(label)
        self.overview_labels = []
        self.table.setRowCount(0)
        self.status.setText(message)
        self._update_page_controls()

    # --- display ---------------------------------------------------------------------------
    @property
    def num_queries(self) -> int:
        return 0 if self.predictions is None else self.predictions.num_queries

    @property
    def num_pages(self) -> int:
        return max(1, math.ceil(self.num_queries / self.PAGE_SIZE))

    def page_queries(self) -> list[int]:
        """The slots shown on the current page."""
        start = self.page * self.PAGE_SIZE
        return list(range(start, min(start + self.PAGE_SIZE, self.num_queries)))

    def set_page(self, page: int) -> None:
        page = max(0, min(page, self.num_pages - 1))
        if page != self.page:
            self.page = page
            self._draw_page()
        self._update_page_controls()

    def _on_threshold(self) -> None:
        if self.confident_only.isChecked():
            self._refilter()

    def _refilter(self) -> None:
        """Recompute the summaries for the current filter and redraw everything."""
        if self.predictions is None:
            return
        confident, threshold = self.confident_only.isChecked(), self.threshold.value()
        self.summaries = slot_summaries(self.predictions, self.class_names, confident, threshold)
        self._draw_page()
        self._draw_overview()
        self._fill_table()
        never = [s.query for s in self.summaries if s.never_predicts]
        text = f"{self.predictions.num_images} images · {self.num_queries} slots"
        if never:
            text += f" · {len(never)} never predict an object"
        if confident:
            shown = sum(s.shown for s in self.summaries)
            text += f" · showing {shown} predictions with score ≥ {threshold:.2f}"
        config = getattr(self.model, "config", None)
        ranked = getattr(config, "query_select", False)
        if ranked:  # the paper's figure assumes learned, fixed slots; here a slot is a rank
            text += " · slots are ranks (query selection)"
        self.status.setToolTip("With query selection, slot i starts from each image's i-th best-scoring encoder box: "
                               "slots specialise by rank, not by place in the image." if ranked else "")
        self.status.setText(text)

    def _build_cells(self) -> None:
        """One square per slot of a page; kept when the page size stays the same (Qt items are costly)."""
        if len(self.cells) == min(self.PAGE_SIZE, self.num_queries):
            return
        self.grid.clear()
        self.cells = []
        for n in range(min(self.PAGE_SIZE, self.num_queries)):
            if n and n % self.COLUMNS == 0:
                self.grid.nextRow()
            self.cells.append(SlotCell(self.grid.addPlot()))

    def _draw_page(self) -> None:
        preds = self.predictions
        if preds is None:
            return
        shown = preds.shown(self.confident_only.isChecked(), self.threshold.value()).numpy()  # [N, Q]
        sizes = preds.size_categories().numpy()  # [N, Q]
        centres = preds.boxes_cxcywh[..., :2].numpy()  # [N, Q, 2] in [0, 1]
        queries = self.page_queries()
        for n, cell in enumerate(self.cells):
            if n >= len(queries):  # past the last slot: an empty square keeps the grid's layout
                cell.set_query(-1)
                cell.scatter.clear()
                cell.plot.setTitle("", size="8pt")
                continue
            q = queries[n]
            cell.set_query(q)
            keep = shown[:, q]
            xy = centres[keep, q]
            brushes = [self._brushes[BoxSize(k)] for k in sizes[keep, q]]
            cell.scatter.setData(x=xy[:, 0], y=xy[:, 1], brush=brushes)
            s = self.summaries[q]
            # short: a title sets its cell's minimum width, and five cells share a 600 px dock
            if s.never_predicts:
                cell.plot.setTitle(f"q{q} (never)", size="8pt", color=FLAG_COLOR.name())  # predicts no object
            else:
                cell.plot.setTitle(f"q{q} {_short(s.dominant_class or '–')} {100 * s.object_frequency:.0f}%",
                                   size="8pt", color="#e8eaed")
            cell.set_selected(q == self.selected)
        self._lay_out_grid()
        self._update_page_controls()

    def _lay_out_grid(self) -> None:
        """Lay the squares out now. Qt lays out a title's row and then the grid over the next
        event-loop passes, a pass each: the first frame painted (or a picture taken) right after
        a run showed new squares laid out before their titles, a last row of bigger squares out
        of line with the others. Each slot's layout first (its title row), then the grid's."""
        for cell in self.cells:
            cell.plot.layout.activate()
        self.grid.ci.layout.activate()

    def _draw_overview(self) -> None:
        for label in self.overview_labels:
            self.overview.removeItem(label)
        self.overview_labels = []
        spots = []
        for s in self.summaries:
            if math.isnan(s.mean_cx):
                continue
            color = query_color(s.query)
            selected = s.query == self.selected
            spot: dict[str, Any] = {"pos": (s.mean_cx, s.mean_cy), "data": s.query,
                                    "size": 15 if selected else 11}
            if s.never_predicts:  # a cross: the slot never says "object"
                spot.update(symbol="x", brush=pg.mkBrush(FLAG_COLOR), pen=pg.mkPen(FLAG_COLOR))
            else:
                spot.update(symbol="o", brush=pg.mkBrush(color),
                            pen=pg.mkPen("w", width=2) if selected else pg.mkPen(color.darker(150)))
            spots.append(spot)
            label = pg.TextItem(str(s.query), color=FLAG_COLOR if s.never_predicts else "w",
                                anchor=(-0.15, 0.5))
            label.setPos(s.mean_cx, s.mean_cy)
            self.overview.addItem(label)
            self.overview_labels.append(label)
        self.overview_points.setData(spots)

    def _fill_table(self) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.summaries))
        for row, s in enumerate(self.summaries):
            centre = "–" if math.isnan(s.mean_cx) else f"({s.mean_cx:.2f}, {s.mean_cy:.2f})"
            spread = "–" if math.isnan(s.spread) else f"{s.spread:.3f}"
            values = (
                str(s.query), s.dominant_class or "–",
                f"{100 * s.dominant_share:.0f}%" if s.dominant_class else "–",
                f"{100 * s.object_frequency:.0f}%", centre, spread, str(s.shown),
                "never predicts" if s.never_predicts else "",
            )
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, s.query)
                if col == 0:
                    item.setData(Qt.ItemDataRole.DecorationRole, self._swatch(s.query))
                if s.never_predicts:
                    item.setBackground(QBrush(QColor(120, 40, 40, 90)))
                self.table.setItem(row, col, item)
        if self.selected is not None and self.selected < len(self.summaries):
            self.table.selectRow(self.selected)
        self.table.blockSignals(False)

    def _swatch(self, query: int) -> QPixmap:
        if query not in self._swatches:
            pixmap = QPixmap(10, 10)
            pixmap.fill(query_color(query))
            self._swatches[query] = pixmap
        return self._swatches[query]

    def _update_page_controls(self) -> None:
        queries = self.page_queries()
        if queries:
            self.page_label.setText(f"slots {queries[0]}–{queries[-1]} of {self.num_queries} "
                                    f"(page {self.page + 1}/{self.num_pages})")
        else:
            self.page_label.setText("no slots yet")
        self.prev_button.setEnabled(self.page > 0)
        self.next_button.setEnabled(self.page < self.num_pages - 1)

    # --- selection -------------------------------------------------------------------------
    def select_query(self, query: int) -> None:
        """Show ``query`` as selected (its page, its row, its point) without emitting."""
        if not 0 <= query < self.num_queries:
            return
        self.selected = query
        self.set_page(query // self.PAGE_SIZE)
        for cell in self.cells:
            cell.set_selected(cell.query == query)
        self.table.blockSignals(True)
        self.table.selectRow(query)
        self.table.blockSignals(False)
        self._draw_overview()

    def _choose(self, query: int) -> None:
        self.select_query(query)
        self.state.set_selected_query(query)

    def cell_of(self, query: int) -> SlotCell | None:
        """The grid square showing ``query`` on the current page, if any."""
        return next((c for c in self.cells if c.query == query), None)

    def _on_grid_click(self, event) -> None:
        for cell in self.cells:
            if cell.query >= 0 and cell.plot.sceneBoundingRect().contains(event.scenePos()):
                self._choose(cell.query)
                return

    def _on_overview_click(self, _item, points, _event=None) -> None:
        if len(points):
            self._choose(int(points[0].data()))

    def _on_table_row(self, row: int, *_: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self._choose(int(item.data(Qt.ItemDataRole.UserRole)))

    # --- export ----------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """One row per slot: the summary table under the current filter."""
        if not self.summaries:
            return None
        return [s.to_row() for s in self.summaries]

    def export_data_to(self, path: Path) -> bool:
        """CSV: the per-slot summaries. JSON: the settings, the summaries and every prediction."""
        path = Path(path)
        if path.suffix.lower() != ".json" or self.predictions is None:
            return super().export_data_to(path)
        p = self.predictions
        data = {
            "settings": {
                "confident_only": self.confident_only.isChecked(), "threshold": self.threshold.value(),
                "large_side": LARGE_SIDE, "class_names": self.class_names,
            },
            "slots": self.export_data(),
            "predictions": {  # indexed [image][query]
                "boxes_cxcywh": p.boxes_cxcywh.tolist(), "scores": p.scores.tolist(),
                "labels": p.labels.tolist(), "is_object": p.is_object.tolist(),
            },
        }
        text = json.dumps(data)
        return self.write_file(path, text)


def _collect(ctx: WorkContext, model: nn.Module, dataset: ImageBatches, count: int) -> SlotPredictions:
    """Worker-thread job: every slot's predictions on ``count`` images."""
    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, f"{done} / {total} images")

    return collect_slot_predictions(model, dataset, count, batch_size=25, progress=progress)
