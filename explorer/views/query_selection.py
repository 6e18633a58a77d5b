"""Query selection, seen on the image: which encoder tokens became the decoder's queries.

Two-stage Deformable DETR, DINO-style anchors (the ``fast`` preset), RT-DETR, D-FINE, LW-DETR
and RF-DETR score every encoder token and start one decoder query from each of the best. Left:
the image with every selected token at its cell's centre (one symbol per feature level, coloured
by its selection score or by its level), and for each kept prediction the box it started from
(dashed) and the box it ended as (solid), joined by the path of its centre; the selected query
drawn thick in yellow. Click a token to select its query. Right: the choices, what the selected
query did, and a table of where each kept prediction started (select a row to select it).

Everything comes from the forward pass's own capture (``InferenceResult.query_selection``).
For a model whose queries are learned embeddings the view says so, and which families select.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QLabel,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from detr_core.analysis.capture import InferenceResult
from detr_core.analysis.query_selection import (
    QUERY_SELECTING_FAMILIES,
    QuerySelection,
    selection_starts,
)

from ..colors import query_color
from ..help import VIEW_HELP
from ..state import AppState, LoadedModel
from .base import AnalysisView
from .deformable import BACKGROUND, LEVEL_SYMBOLS, OUTLINE, SYMBOL_GLYPHS
from .flow import Fill, Flow, text_pane

LEVEL_COLORS = ("#4fc3f7", "#ffb74d", "#81c784", "#f06292", "#ba68c8", "#fff176", "#a1887f", "#90a4ae")
HIGHLIGHT = "#ffd54f"
COLOUR_SCORE, COLOUR_LEVEL = "score", "level"
COLUMNS = (  # (header, tooltip): short headers, so that the table fits a narrow pane
    ("query", "The query (its colour in the image view)"),
    ("class", "The class it predicts"),
    ("score", "The prediction's score"),
    ("level", "The feature level of the token it started from (1 = the finest)"),
    ("cell", "(row, column) of that token in its level's map"),
    ("selected", "The score the encoder ranked that token by"),
    ("rank", "The token's place among the selected ones by that score (1 = the best)"),
    ("IoU", "IoU of the box the query started from and the box it ended as"),
    ("moved", "Pixels between the centres of the start and final boxes"),
)
VIEW_HELP.setdefault("Query selection", (
    "Some DETRs do not start the decoder from learned query embeddings, the same for every image: the "
    "encoder scores every token (a cell of one feature level) and the best ones become the queries, each "
    "starting from its token's proposal box (two-stage Deformable DETR, DINO, RT-DETR, D-FINE, LW-DETR, "
    "RF-DETR, and the fast preset here).\n\n"
    "Left: every selected token at its cell's centre, one symbol per level, coloured by the score the "
    "selection ranked it by (bright = high) or by its level. For each kept prediction: dashed, the box its "
    "query started from; solid, the box it ended as; the line, how its centre moved. The selected query is "
    "drawn thick in yellow; click a token to select its query.\n\n"
    "Right: what the selected query did, and a table of where every kept prediction started: its level and "
    "cell, its selection score and rank, and how far its box moved (IoU of the start and final boxes)."))


def how_queries_start(loaded: LoadedModel | None) -> str:
    """In words, where the open model's decoder queries come from, when its result shows no query selection."""
    if loaded is None:
        return "No model is open."
    cfg = loaded.config
    if cfg.two_stage or cfg.query_select:  # it selects: the result is missing (or its capture was not kept)
        return "Run the model on an image (with capture) to see which tokens it selects."
    if cfg.attention == "deformable":
        return ("The open model is a one-stage Deformable DETR: its queries are learned embeddings with learned "
                "reference points, the same for every image (a two-stage one selects them from the encoder).")
    if cfg.attention == "dense":
        if cfg.query_type == "anchor":
            return ("The open model is a DETR with learned anchor boxes (DAB-DETR style): every image starts "
                    "from the same anchors (the fast preset selects them from the encoder instead).")
        return "The open model is a DETR: its queries are learned embeddings, the same for every image."
    return (f"The open model ({cfg.attention}) does not report a query selection: its queries are not "
            "chosen from the encoder's tokens.")


class QuerySelectionView(AnalysisView):
    """The open model's selected encoder tokens on the image, and where each kept prediction started."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Query selection", parent)
        self.state = state
        self.colour_by = COLOUR_SCORE
        self._image_id: int | None = None
        self._box_items: list[tuple[pg.PlotCurveItem, pg.PlotCurveItem, pg.PlotCurveItem]] = []

        self.pages = QStackedWidget()
        self.body.addWidget(Fill(self.pages), 1)
        # page 0: nothing to show, and why
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        note_page = QWidget()
        note_layout = QVBoxLayout(note_page)
        note_layout.addWidget(self.note)
        note_layout.addStretch(1)
        self.pages.addWidget(note_page)

        # page 1: the picture on the left, the choices and the words beside it (a wide, short dock)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.setMinimumSize(200, 120)
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.box = self.graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setOpacity(0.8)
        self.box.addItem(self.image_item)
        self.tokens_item = pg.ScatterPlotItem(pxMode=True, hoverable=True)
        self.tokens_item.sigClicked.connect(self._on_token_clicked)
        self.ring_item = pg.ScatterPlotItem(pxMode=True, symbol="o", size=22, pen=pg.mkPen(HIGHLIGHT, width=3),
                                            brush=None)
        self.start_item = pg.PlotCurveItem(pen=pg.mkPen(HIGHLIGHT, width=3, style=Qt.PenStyle.DashLine))
        self.final_item = pg.PlotCurveItem(pen=pg.mkPen(HIGHLIGHT, width=3))
        self.path_item = pg.PlotCurveItem(pen=pg.mkPen(HIGHLIGHT, width=2, style=Qt.PenStyle.DotLine))
        self.box.addItem(self.tokens_item)
        for item in (self.start_item, self.final_item, self.path_item, self.ring_item):
            item.setZValue(10)  # the selected query over the others
            self.box.addItem(item)

        self.colour_box = QComboBox()
        self.colour_box.addItems(["colour: selection score", "colour: feature level"])
        self.colour_box.setToolTip("Colour the selected tokens by the score the encoder ranked them by, or by "
                                   "their feature level (the symbol always gives the level)")
        self.colour_box.currentIndexChanged.connect(
            lambda i: self.set_colour_by(COLOUR_SCORE if i == 0 else COLOUR_LEVEL))
        self.boxes_check = QCheckBox("kept predictions: start → end")
        self.boxes_check.setChecked(True)
        self.boxes_check.setToolTip("For every kept prediction (the query table's ticked rows above the "
                                    "threshold): the box its query started from, dashed, and its final box")
        self.boxes_check.toggled.connect(lambda _: self.redraw())
        controls = Flow()
        controls.addWidget(self.colour_box)
        controls.addWidget(self.boxes_check)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        words = text_pane(self.caption, self.legend)
        self.table = QTableWidget(0, len(COLUMNS))
        for col, (header, tip) in enumerate(COLUMNS):
            item = QTableWidgetItem(header)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(col, item)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)  # compact rows
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(60)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(controls)
        side_layout.addWidget(words, 1)
        side_layout.addWidget(self.table, 1)
        page = QSplitter(Qt.Orientation.Horizontal)
        page.setChildrenCollapsible(False)
        page.addWidget(self.graphics)
        page.addWidget(side)
        page.setSizes([500, 500])
        self.pages.addWidget(page)
        self.colormap = pg.colormap.get("plasma")

        state.modelChanged.connect(lambda _: self._on_result(state.result))
        state.resultChanged.connect(self._on_result)
        for signal in (state.selectedQueryChanged, state.thresholdChanged, state.visibleQueriesChanged,
                       state.showDimmedChanged):
            signal.connect(lambda *_: self._draw_later())
        self._on_result(state.result)

    # --- following the state -----------------------------------------------------------------
    @property
    def selection(self) -> QuerySelection | None:
        r = self.state.result
        return r.query_selection if r is not None else None

    @property
    def kept(self) -> list[int]:
        """The queries whose predictions are kept (drawn in full in the image view), best first."""
        return self.state.kept_queries() if self.selection is not None else []

    def _on_result(self, result: InferenceResult | None) -> None:
        if self.selection is not None:
            self.pages.setCurrentIndex(1)
        else:
            self.pages.setCurrentIndex(0)
            self.note.setText(self._absent_text())
        self._draw_later()

    def _absent_text(self) -> str:
        families = ", ".join(QUERY_SELECTING_FAMILIES)
        why = how_queries_start(self.state.model)
        return (f"No query selection to show. {why}\n\n"
                "Query selection: the encoder scores every token (a cell of one feature level) and the decoder's "
                "queries start from the best ones, different for every image. The families that do it: "
                f"{families}.")

    def _draw_later(self) -> None:
        self.when_visible("draw", self.redraw)

    def set_colour_by(self, how: str) -> None:
        self.colour_by = how
        self.colour_box.blockSignals(True)
        self.colour_box.setCurrentIndex(0 if how == COLOUR_SCORE else 1)
        self.colour_box.blockSignals(False)
        self.redraw()

    def _on_token_clicked(self, _item: Any, points: Any, *_: Any) -> None:
        if len(points):
            self.state.set_selected_query(int(points[0].data()))

    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            item = self.table.item(rows[0].row(), 0)
            if item is not None:
                self.state.set_selected_query(int(item.text()))

    # --- drawing -------------------------------------------------------------------------------
    def token_brushes(self, sel: QuerySelection) -> list[QColor]:
        """The colour of each selected token: its selection score (relative to the range shown) or level."""
        if self.colour_by == COLOUR_LEVEL or sel.scores is None:
            return [QColor(LEVEL_COLORS[int(lv) % len(LEVEL_COLORS)]) for lv in sel.levels]
        s = sel.scores.numpy()
        lo, hi = float(s.min()), float(s.max())
        rel = (s - lo) / max(hi - lo, 1e-9)
        return list(self.colormap.map(0.15 + 0.85 * rel, mode="qcolor"))

    def redraw(self) -> None:
        sel, r, image = self.selection, self.state.result, self.state.image
        if sel is None or r is None or image is None:
            self.tokens_item.setData([])
            self.ring_item.setData([])
            for item in (self.start_item, self.final_item, self.path_item):
                item.setData([], [])
            self._show_boxes([])
            self.table.setRowCount(0)
            return
        if id(image) != self._image_id:
            self._image_id = id(image)
            self.image_item.setImage(image, levels=(0, 255))
            self.box.setRange(QRectF(0, 0, image.shape[1], image.shape[0]), padding=0.02)
        brushes = self.token_brushes(sel)
        kept = self.kept
        chosen = set(kept)
        spots = [{"pos": (float(x), float(y)), "size": 12.0 if q in chosen else 8.0, "brush": b, "data": q,
                  "pen": pg.mkPen("#ffffff", width=1.5) if q in chosen else OUTLINE,
                  "symbol": LEVEL_SYMBOLS[int(lv) % len(LEVEL_SYMBOLS)]}
                 for q, ((x, y), b, lv) in enumerate(zip(sel.centres_xy.numpy(), brushes, sel.levels))]
        self.tokens_item.setData(spots)
        self._show_boxes(kept if self.boxes_check.isChecked() else [])
        self._draw_selected(sel, r)
        self._fill_table(r, kept)
        self._write_legend(sel, kept)

    def _show_boxes(self, queries: list[int]) -> None:
        """Start (dashed) and final (solid) boxes and the centre's path for ``queries``, in their colours."""
        sel = self.selection
        while len(self._box_items) < len(queries):
            colour = QColor("white")
            trio = (pg.PlotCurveItem(pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine)),
                    pg.PlotCurveItem(pen=pg.mkPen(colour, width=2)),
                    pg.PlotCurveItem(pen=pg.mkPen(colour, width=1)))
            for item in trio:
                self.box.addItem(item)
            self._box_items.append(trio)
        for i, (start_item, final_item, path_item) in enumerate(self._box_items):
            if i >= len(queries) or sel is None:
                for item in (start_item, final_item, path_item):
                    item.setData([], [])
                continue
            q = queries[i]
            colour = query_color(q)
            start_item.setPen(pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine))
            final_item.setPen(pg.mkPen(colour, width=2))
            path_item.setPen(pg.mkPen(colour, width=1))
            final = sel.final_boxes_xyxy[q].numpy()
            _box(final_item, final)
            start = sel.start_boxes_xyxy[q].numpy() if sel.start_boxes_xyxy is not None else None
            origin = sel.centres_xy[q].numpy() if start is None else (start[:2] + start[2:]) / 2
            if start is not None:
                _box(start_item, start)
            else:
                start_item.setData([], [])
            end = (final[:2] + final[2:]) / 2
            path_item.setData([float(origin[0]), float(end[0])], [float(origin[1]), float(end[1])])

    @property
    def query(self) -> int | None:
        """The selected query, if any."""
        q = self.state.selected_query
        sel = self.selection
        return q if q is not None and sel is not None and 0 <= q < sel.num_queries else None

    def _draw_selected(self, sel: QuerySelection, r: InferenceResult) -> None:
        q = self.query
        if q is None:
            self.ring_item.setData([])
            for item in (self.start_item, self.final_item, self.path_item):
                item.setData([], [])
            self.caption.setText(f"{sel.num_queries} queries, each started from one encoder token. Select a "
                                 "query (a box, a row, or a token here) to see where it started.")
            return
        x, y = (float(v) for v in sel.centres_xy[q])
        self.ring_item.setData([{"pos": (x, y)}])
        final = sel.final_boxes_xyxy[q].numpy()
        _box(self.final_item, final)
        end = (final[:2] + final[2:]) / 2
        row = selection_starts(r, [q])[0]
        if sel.start_boxes_xyxy is not None:
            start = sel.start_boxes_xyxy[q].numpy()
            _box(self.start_item, start)
            origin = (start[:2] + start[2:]) / 2
        else:
            self.start_item.setData([], [])
            origin = np.array([x, y])
        self.path_item.setData([float(origin[0]), float(end[0])], [float(origin[1]), float(end[1])])
        h, w = sel.shapes[row.level - 1]
        score = f" with score {row.selection_score:.3f}" if row.selection_score is not None else ""
        moved = (f" Its box moved {row.moved:.0f} px from the proposal (IoU of start and end {row.start_iou:.2f})"
                 if row.moved is not None else " Its box")
        self.caption.setText(
            f"Query {q} started from token {row.token}: level {row.level} ({w}×{h} cells), cell (row {row.row}, "
            f"col {row.col}) centred at ({row.x:.0f}, {row.y:.0f}) px, selected{score}, rank {row.selection_rank} "
            f"of {sel.num_queries}.{moved} and ended as {row.label} {row.score:.2f}.")

    def _write_legend(self, sel: QuerySelection, kept: list[int]) -> None:
        counts = sel.level_counts()
        levels = " ".join(
            f"<span style='color:{LEVEL_COLORS[i % len(LEVEL_COLORS)]}'>"
            f"{SYMBOL_GLYPHS[LEVEL_SYMBOLS[i % len(LEVEL_SYMBOLS)]]}</span> level {i + 1} ({w}×{h}): {counts[i]}"
            for i, (h, w) in enumerate(sel.shapes))
        if self.colour_by == COLOUR_SCORE and sel.scores is not None:
            colour = (f"Colour: selection score, from {float(sel.scores.min()):.3f} (dark) to "
                      f"{float(sel.scores.max()):.3f} (bright).")
        else:
            colour = "Colour: feature level."
        boxes = (f" Kept predictions ({len(kept)}, their tokens larger, outlined in white): dashed the box the "
                 "query started from, solid where it ended, the line how its centre moved."
                 if self.boxes_check.isChecked() else "")
        self.legend.setText(f"Queries per level: {levels}. {colour}{boxes}")

    def _fill_table(self, r: InferenceResult, kept: list[int]) -> None:
        rows = selection_starts(r, kept)
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            cells = [str(row.query), row.label, f"{row.score:.2f}", str(row.level), f"{row.row}, {row.col}",
                     "" if row.selection_score is None else f"{row.selection_score:.3f}", str(row.selection_rank),
                     "" if row.start_iou is None else f"{row.start_iou:.2f}",
                     "" if row.moved is None else f"{row.moved:.0f}"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    tint = QColor(query_color(row.query))
                    tint.setAlpha(120)
                    item.setBackground(tint)
                self.table.setItem(i, col, item)
            if row.query == self.state.selected_query:
                self.table.selectRow(i)
        if self.state.selected_query not in kept:
            self.table.clearSelection()
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()

    # --- export --------------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """Every query's start (kept or not), with whether its prediction is kept."""
        r = self.state.result
        if self.selection is None or r is None:
            return None
        kept = set(self.kept)
        return [{**row.as_dict(), "kept": row.query in kept}
                for row in selection_starts(r, list(range(r.num_queries)))]


def _box(item: pg.PlotCurveItem, xyxy: np.ndarray) -> None:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    item.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
