"""The query table: every object query's prediction, a tick that draws its box, a threshold.
It shows the application state's result, ticks, threshold and selection, and changes them. A
row is ticked exactly when its box is drawn: the threshold ticks the rows, the user's own ticks
override it (see AppState's ticks)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from detr_core.analysis.capture import InferenceResult

from .colors import query_color
from .help import help_button
from .model_info import knowledge_brief, knowledge_text
from .state import AppState, LoadedModel

COLUMNS = ("query", "class", "score", "box x0,y0,x1,y1 px")


class QueryTableModel(QAbstractTableModel):
    checkToggled = Signal(int, bool)  # a row's box ticked or unticked by the user

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.labels: list[str] = []
        self.scores = np.zeros(0)
        self.boxes = np.zeros((0, 4))
        self.checked = np.zeros(0, bool)
        self.threshold = 0.5
        self._swatches: dict[int, QPixmap] = {}

    def set_predictions(self, labels: list[str], scores: np.ndarray, boxes: np.ndarray, checked: np.ndarray) -> None:
        self.beginResetModel()
        self.labels, self.scores, self.boxes = labels, scores, boxes
        self.checked = checked.astype(bool).copy() if len(checked) == len(labels) else np.ones(len(labels), bool)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: ANN001, B008, N802
        return 0 if parent.isValid() else len(self.labels)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: ANN001, B008, N802
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: ANN001, N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def _swatch(self, row: int) -> QPixmap:
        if row not in self._swatches:
            pm = QPixmap(12, 12)
            pm.fill(query_color(row))
            self._swatches[row] = pm
        return self._swatches[row]

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return str(row)
            if col == 1:
                return self.labels[row]
            if col == 2:
                return f"{self.scores[row]:.3f}"
            x0, y0, x1, y1 = self.boxes[row]
            return f"{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}"
        if role == Qt.ItemDataRole.CheckStateRole and col == 0:
            return Qt.CheckState.Checked if self.checked[row] else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return self._swatch(row)
        if role == Qt.ItemDataRole.ForegroundRole and self.scores[row] < self.threshold:
            return QBrush(QColor("#8a8a8a"))
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"query {row}: {self.labels[row]} ({self.scores[row]:.3f})"
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return base | Qt.ItemFlag.ItemIsUserCheckable if index.column() == 0 else base

    def setData(self, index: QModelIndex, value, role=Qt.ItemDataRole.EditRole) -> bool:  # noqa: ANN001, N802
        if role == Qt.ItemDataRole.CheckStateRole and index.column() == 0:
            state = value if isinstance(value, Qt.CheckState) else Qt.CheckState(value)
            self.checkToggled.emit(index.row(), state == Qt.CheckState.Checked)
            return True
        return False

    def set_checked(self, mask: np.ndarray) -> None:
        if len(mask) != len(self.labels):
            return  # ticks for another result: its predictions follow
        self.checked = mask.astype(bool).copy()
        if len(self.checked):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.checked) - 1, 0))

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        if len(self.labels):
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.labels) - 1, len(COLUMNS) - 1))


class _QueryTable(QTableView):
    """The query table asks for little height: the panel's word-wrapped line makes a dock's
    scroll area give the panel its preferred height, which would otherwise be a table's worth
    of rows more than a laptop's right column has. It takes whatever room is left."""

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(super().sizeHint().width(), 120)


class QueryPanel(QWidget):
    """The state's predictions, one row per query: tick a row to draw its box, select a row to
    select the query."""

    def __init__(self, state: AppState, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state = state
        self.model = QueryTableModel(self)  # Qt owns it with the panel (not the cyclic collector)
        self.model.threshold = state.threshold
        self.table = _QueryTable()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)  # one line per query; a narrow column elides
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 8)
        self.table.setMinimumHeight(90)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        # a Ctrl+click that deselects the row: the selected query's row stays highlighted
        self.table.selectionModel().selectionChanged.connect(lambda *_: self.select(self.state.selected_query))

        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, 100)
        self.threshold_slider.setValue(round(state.threshold * 100))
        self.threshold_slider.setToolTip("Confidence threshold: boxes below it are hidden (or dimmed)")
        self.threshold_label = QLabel(f"{state.threshold:.2f}")
        self.threshold_label.setMinimumWidth(34)
        self.threshold_slider.valueChanged.connect(lambda v: state.set_threshold(v / 100))

        self.show_all_slots = QCheckBox('Show "no object" slots (dimmed)')
        self.show_all_slots.setToolTip("Also tick and draw (dimmed) the queries whose score is below the threshold")
        self.show_all_slots.setChecked(state.show_dimmed)
        self.show_all_slots.toggled.connect(state.set_show_dimmed)

        self.btn_all = QPushButton("All")
        self.btn_none = QPushButton("None")
        self.btn_above = QPushButton("Above threshold")
        self.btn_all.clicked.connect(lambda: state.set_visible_queries(np.ones(len(self.model.labels), bool)))
        self.btn_none.clicked.connect(lambda: state.set_visible_queries(np.zeros(len(self.model.labels), bool)))
        self.btn_all.setToolTip("Tick every query: its box is drawn whatever the threshold")
        self.btn_none.setToolTip("Untick every query: no box is drawn whatever the threshold")
        self.btn_above.setToolTip("Tick the queries at or above the threshold, and let the threshold tick them "
                                  "again as it moves (a row you tick or untick keeps your choice until then)")
        self.btn_above.clicked.connect(state.tick_by_threshold)
        self.model.checkToggled.connect(state.set_query_visible)

        self.summary = QLabel("")
        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.threshold_slider, 1)
        row.addWidget(self.threshold_label)
        row.addWidget(help_button("Queries"))
        buttons = QHBoxLayout()
        for b in (self.btn_all, self.btn_none, self.btn_above):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        self.knowledge = QLabel("")  # above the results, always in sight (in full: its tooltip, the Model tab)
        self.knowledge.setWordWrap(True)
        self.knowledge.setStyleSheet("QLabel { color: #9aa0a6; }")
        layout.addWidget(self.knowledge)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.show_all_slots)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        state.modelChanged.connect(self._on_model)

        state.resultChanged.connect(self._on_result)
        state.visibleQueriesChanged.connect(self.model.set_checked)
        state.visibleQueriesChanged.connect(self._update_summary)
        state.thresholdChanged.connect(self._on_threshold)
        state.showDimmedChanged.connect(self._on_show_dimmed)
        state.selectedQueryChanged.connect(self.select)

    @property
    def threshold(self) -> float:
        return self.state.threshold

    def set_threshold(self, value: float) -> None:
        self.threshold_slider.setValue(round(value * 100))

    # --- following the state ---------------------------------------------------------------
    def _on_threshold(self, value: float) -> None:
        self.threshold_slider.blockSignals(True)
        self.threshold_slider.setValue(round(value * 100))
        self.threshold_slider.blockSignals(False)
        self.threshold_label.setText(f"{value:.2f}")
        self.model.set_threshold(value)
        self._update_summary()

    def _on_model(self, loaded: LoadedModel | None) -> None:
        self.knowledge.setText(knowledge_brief(loaded))
        self.knowledge.setToolTip("What the model knows, from the checkpoint: " + knowledge_text(loaded))

    def _on_show_dimmed(self, on: bool) -> None:
        self.show_all_slots.blockSignals(True)
        self.show_all_slots.setChecked(on)
        self.show_all_slots.blockSignals(False)

    def _on_result(self, result: InferenceResult | None) -> None:
        if result is None:
            return
        labels = [result.class_names[int(i)] for i in result.labels]
        self.model.set_predictions(labels, result.scores.numpy(), result.boxes_xyxy.numpy(),
                                   self.state.visible_queries)
        self._update_summary()
        self.select(self.state.selected_query)  # a reset table has lost its selection

    def _on_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.state.set_selected_query(current.row())

    def _update_summary(self, *_: object) -> None:
        n = len(self.model.labels)
        above = int((self.model.scores >= self.threshold).sum()) if n else 0
        ticked = int(self.state.visible_queries.sum()) if n else 0
        self.summary.setText(f"{ticked} of {n} drawn · {above} at or above {self.threshold:.2f}")

    def select(self, query: int | None) -> None:
        sel = self.table.selectionModel()
        if query is None or query >= self.model.rowCount():
            sel.clear()  # the current row too, so no row looks selected
            return
        index = self.model.index(query, 0)
        # the highlighted row is the selected query's, whatever was current or selected before
        # (a cleared selection keeps its current row; a reset table has neither)
        if sel.currentIndex().row() != query or sel.selectedRows() != [index]:
            sel.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(index)
