"""Hungarian matching, visible: the cost matrix of one training sample as a heatmap (total or
one part), the optimal assignment marked on it, each ground-truth box linked on the image to the
box of its query, and a stability plot over training.

Two sources of snapshots, both from the application state:
  * the explorer's model (``state.model``, matched on samples of ``state.data_source``'s training
    stream, or of the open dataset's training split when Source says so): matched off the GUI
    thread with ``run_job``;
  * the training session (``state.training``): when one starts, the view adds probes to it that
    compute the matching and the stability with the live model in the training process, between
    steps; only their CPU results come back, through ``state.probed``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from detr_core.analysis.matching import (
    COST_PART_NAMES,
    COST_PARTS,
    MatchingProbe,
    MatchingSnapshot,
    StabilityPoint,
    StabilityProbe,
    match_sample,
    matcher_for,
    training_stream,
)
from detr_core.config import TrainConfig
from detr_core.data.dataset import DetectionDataset
from detr_core.data.files import FileDataset
from detr_core.data.toy import ToyShapes
from detr_core.model.matcher import HungarianMatcher

from ..canvas import ImageCanvas
from ..colors import query_color
from ..stable_label import StableLabel, wrap_label
from ..state import AppState, TrainingSession
from ..workers import WorkContext
from .base import AnalysisView, fill_sources, row_table
from .flow import Fill, Flow, labelled, side_by_side
from .following import FollowsTraining

MATCHING_PROBE = "matching"
STABILITY_PROBE = "matching_stability"
GT_COLOR = QColor("#ffffff")


def _match_job(ctx: WorkContext, model: nn.Module, matcher: HungarianMatcher, dataset: DetectionDataset,
               index: int, model_labels: list[int] | None, class_names: list[str] | None) -> MatchingSnapshot:
    ctx.progress(0, 1, f"Matching sample {index}…")
    snapshot = match_sample(model, matcher, dataset, index, model_labels=model_labels, class_names=class_names,
                            at_model_size=True)
    ctx.progress(1, 1, "")
    return snapshot


class MatchingView(FollowsTraining, AnalysisView):
    """Follows the state's model, data source, training session and selected query; a query
    clicked on the image, in the heatmap or in the table becomes the state's selection."""

    snapshotShown = Signal(object)  # MatchingSnapshot, each time one arrives (static or training)
    stabilityUpdated = Signal(object)  # StabilityPoint, each time the probe set was re-matched
    PROBE = MATCHING_PROBE

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Hungarian matching", parent)
        self.state = state
        self.matcher: HungarianMatcher | None = None
        self.toy_stream: ToyShapes | None = None  # the model's toy training stream
        self.file_dataset: FileDataset | None = None  # the open dataset's training split, resized
        self.file_dataset_name = ""
        self.snapshot: MatchingSnapshot | None = None
        self.stability: list[StabilityPoint] = []
        self.selected_query: int | None = state.selected_query
        # how often the probes of a training session run (steps) and the probe set's size
        self.matching_every = 5
        self.stability_every = 25
        self.probe_images = 16
        self.init_following()

        # --- controls
        self.sample_spin = QSpinBox()
        self.sample_spin.setRange(0, 10_000_000)
        self.sample_spin.setToolTip("Index of the sample in the training stream (or of the image in the open "
                                    "dataset's training split)")
        self.source = QComboBox()
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.source.setToolTip("Which samples are matched: the toy training stream or the open dataset's "
                               "training split (resized as evaluation does)")
        self.part_combo = QComboBox()
        for part in COST_PARTS:
            self.part_combo.addItem(COST_PART_NAMES[part], part)
        self.part_combo.setToolTip("Total = w_class·class + w_L1·L1 + w_GIoU·(−GIoU); parts are unweighted")
        self.all_queries = QCheckBox("Unmatched queries")
        self.all_queries.setToolTip("Also draw the boxes of queries matched to nothing (dashed)")
        self.compute_button = QPushButton("Match")
        self.compute_button.setToolTip("Match this sample with the explorer's model")
        self.status = StableLabel("No model yet.")  # elided: a file name must not widen the view
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(20)  # a long dataset name must not widen the dock
        row = Flow()  # wraps in a narrow dock
        row.addWidget(self.source)
        row.addWidget(labelled("Sample", self.sample_spin))
        row.addWidget(labelled("Cost", self.part_combo))
        row.addWidget(side_by_side(self.all_queries, self.compute_button))
        self.status.setMinimumWidth(160)
        row.addWidget(self.status)  # expanding: the rest of its line
        self.body.addWidget(row)

        # --- the image with ground truth linked to matched queries
        self.canvas = ImageCanvas(colorbar=False)  # boxes only: no attention colour bar
        self.canvas.setMinimumSize(180, 180)

        # --- the cost heatmap: queries along x, objects along y (object 0 on top)
        self.heat_widget = pg.GraphicsLayoutWidget()
        self.heat_widget.setBackground("#202124")
        self.heat_widget.setMinimumHeight(170)  # below that the axis texts overlap
        self.heat_plot: pg.PlotItem = self.heat_widget.addPlot()
        self.heat_plot.setMenuEnabled(False)
        self.heat_plot.invertY(True)
        self.heat_plot.setLabel("bottom", "query")
        self.heat_plot.setLabel("left", "ground-truth object")
        self.heat_image = pg.ImageItem()
        self.heat_plot.addItem(self.heat_image)
        self.colormap = pg.colormap.get("viridis")
        self.heat_image.setColorMap(self.colormap)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=self.colormap, interactive=False, width=14,
                                        label="cost (low = cheap)")
        self.colorbar_axis = self.colorbar.getAxis("left")  # where ColorBarItem puts its label
        self.colorbar.setImageItem(self.heat_image, insert_in=self.heat_plot)
        self.assigned_marks = pg.ScatterPlotItem(pxMode=False, size=0.92, symbol="s", brush=None,
                                                 pen=pg.mkPen("#ff4040", width=3))
        self.assigned_marks.setZValue(10)
        self.heat_plot.addItem(self.assigned_marks)
        self.cheapest_marks = pg.ScatterPlotItem(size=7, symbol="o", brush=pg.mkBrush("w"), pen=pg.mkPen("k"))
        self.cheapest_marks.setZValue(11)
        self.heat_plot.addItem(self.cheapest_marks)
        self.selected_column = pg.LinearRegionItem(orientation="vertical", movable=False,
                                                   brush=pg.mkBrush(255, 255, 255, 40), pen=pg.mkPen(None))
        self.selected_column.setZValue(9)
        self.selected_column.setVisible(False)
        self.heat_plot.addItem(self.selected_column)
        self.heat_plot.scene().sigMouseMoved.connect(self._on_heat_hover)
        self.heat_plot.scene().sigMouseClicked.connect(self._on_heat_click)
        self.heat_legend = wrap_label(QLabel(  # wraps: it must not widen a narrow dock
            "<span style='color:#ff4040'>□</span> Hungarian assignment &nbsp; ● cheapest query per object"))
        self.cell_label = QLabel(" ")
        self.cell_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        # --- one row per object: its query and the cost parts of that pair
        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["object", "class", "query", "total", "class cost", "L1", "−GIoU"])
        row_table(self.table)

        # --- stability over training
        self.stability_plot = pg.PlotWidget(background="#202124")
        self.stability_plot.setMenuEnabled(False)
        self.stability_plot.setLabel("bottom", "training step")
        self.stability_plot.setLabel("left", "objects re-matched")
        self.stability_plot.setYRange(0, 1, padding=0.05)
        self.stability_plot.setTitle("Instability on a fixed probe set", size="9pt")  # fits half a 600 px dock
        self.stability_curve = self.stability_plot.plot([], [], pen=pg.mkPen("#f58231", width=2),
                                                        symbol="o", symbolSize=5, symbolBrush="#f58231")
        self.stability_label = wrap_label(QLabel("Follows training: start a run to fill this plot."))

        heat_box = QWidget()
        heat_layout = QVBoxLayout(heat_box)
        heat_layout.setContentsMargins(0, 0, 0, 0)
        heat_layout.addWidget(self.heat_widget, 1)
        heat_layout.addWidget(self.heat_legend)
        heat_layout.addWidget(self.cell_label)
        stab_box = QWidget()
        stab_layout = QVBoxLayout(stab_box)
        stab_layout.setContentsMargins(0, 0, 0, 0)
        stab_layout.addWidget(self.stability_plot, 1)
        stab_layout.addWidget(self.stability_label)
        # the image beside the assignment table (or the stability plot), the cost matrix (queries
        # along x: wide and short) across the whole width below
        side = QTabWidget()
        side.addTab(self.table, "Assignment")
        side.addTab(stab_box, "Stability over training")
        self.side_tabs = side
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.canvas)
        top.addWidget(side)
        top.setStretchFactor(0, 1)
        top.setStretchFactor(1, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(top)
        self.splitter.addWidget(heat_box)
        self.splitter.setStretchFactor(0, 5)
        self.splitter.setStretchFactor(1, 4)
        self.body.addWidget(Fill(self.splitter), 1)

        self._update_sources()
        self.source.currentIndexChanged.connect(self._on_source_changed)
        self.part_combo.currentIndexChanged.connect(lambda _: self._draw())
        self.all_queries.toggled.connect(lambda _: self._draw())
        self.compute_button.clicked.connect(self.compute)
        self.canvas.querySelected.connect(self._on_canvas_box)
        self.table.cellClicked.connect(self._on_table_click)
        self.follow(state)
        state.selectedQueryChanged.connect(self.set_selected_query)

    # --- state ---------------------------------------------------------------------------------
    @property
    def part(self) -> str:
        """The cost part shown: one of COST_PARTS."""
        return str(self.part_combo.currentData())

    def set_part(self, part: str) -> None:
        self.part_combo.setCurrentIndex(COST_PARTS.index(part))

    @property
    def dataset(self) -> DetectionDataset | None:
        """The samples the explorer's model is matched on: the Source chosen."""
        if self.source.currentIndex() == 1 and self.file_dataset is not None:
            return self.file_dataset
        return self.toy_stream

    @property
    def on_open_dataset(self) -> bool:
        return self.dataset is not None and self.dataset is self.file_dataset

    def set_dataset(self, dataset: FileDataset | None, name: str = "") -> None:
        """Offer a dataset's training split (resized as the model infers) next to the toy stream,
        and choose it; None takes it away."""
        self.file_dataset = dataset
        self.file_dataset_name = name or "open dataset"
        self._update_sources()
        self.source.setCurrentIndex(1 if dataset is not None else 0)
        self._on_source_changed()

    def _update_sources(self) -> None:
        fill_sources(self.source, "toy training stream", f"{self.file_dataset_name} ({len(self.file_dataset)} images)" if self.file_dataset is not None else None)

    def _on_source_changed(self, *_: object) -> None:
        """The sample picker walks the chosen data: an endless stream or the split's images."""
        last = len(self.file_dataset) - 1 if self.on_open_dataset and self.file_dataset is not None else 10_000_000
        self.sample_spin.blockSignals(True)
        self.sample_spin.setRange(0, last)
        self.sample_spin.blockSignals(False)
        if self.model is not None and not self.following:
            self._compute_timer.start(0)

    def describe_data(self) -> str:
        """What the explorer's model is matched on, in words (the view's "Data: …" note)."""
        if self.on_open_dataset and self.file_dataset is not None:
            return (f"Data: {self.file_dataset_name}, {len(self.file_dataset)} images resized as evaluation does, "
                    "matched with the model's training costs (Source: or the toy training stream).")
        cfg = getattr(self.model, "config", None)
        toy_size = getattr(getattr(self.toy_stream, "config", None), "image_size", None)
        size = f", resized to the model's {cfg.image_min_size} px" if cfg is not None and toy_size \
            and cfg.image_min_size != toy_size else ""
        return f"Data: toy shapes, the model's training stream{size}." + (
            " (Source: or the open dataset.)" if self.file_dataset is not None else "")

    # --- static model ------------------------------------------------------------------------
    def _on_inputs(self, *_: object) -> None:
        """A new model or data source: the matcher with its costs, the training stream whose
        samples are matched (default: the stream of a default ``TrainConfig``)."""
        source = self.state.data_source
        model = self.model
        self.matcher = matcher_for(model, source.loss_config) if model is not None else None
        self.toy_stream = source.training_stream if source.training_stream is not None \
            else training_stream(TrainConfig())
        self._compute_timer.start(0)

    def compute(self) -> bool:
        """Match the chosen sample with the static model, off the GUI thread."""
        if self.model is None or self.matcher is None or self.dataset is None:
            self.show_error("Load or train a model first.")
            return False
        if self.busy:
            self._pending_compute = True
            return False
        model_classes = int(self.model.config.num_classes)  # type: ignore[attr-defined]
        model_labels, names = None, None
        if self.on_open_dataset:
            # the dataset's labels in the model's, by class name (a model of more classes is fine)
            known = self.class_names
            missing = [c for c in self.dataset.class_names if c not in known]
            if missing:
                self.show_error(f"The model does not know the dataset's class(es) {', '.join(missing[:5])}: "
                                "cannot match. Train on the dataset first (the Train workspace).")
                return False
            if list(known) != list(self.dataset.class_names):
                model_labels, names = [known.index(c) for c in self.dataset.class_names], list(known)
        elif model_classes < len(self.dataset.class_names):
            self.show_error(f"The model knows {model_classes} classes; the toy data has "
                            f"{len(self.dataset.class_names)}: cannot match.")
            return False
        self._pending_compute = False
        self.status.setText(f"Matching sample {self.sample_index}…")
        return self.run_job(_match_job, self.model, self.matcher, self.dataset, self.sample_index, model_labels,
                            names, on_done=self._on_static_snapshot)

    # --- following training -----------------------------------------------------------------
    def _on_training(self, session: TrainingSession | None) -> None:
        """A training session, before its run starts: every ``matching_every`` steps (and after
        each single Step) the chosen sample is matched with the live model; every
        ``stability_every`` steps the probe set (the first ``probe_images`` images of the
        training stream) is re-matched. Both run in the training process."""
        if session is None:
            return
        session.add_probe(MATCHING_PROBE, MatchingProbe(self.sample_index), self.matching_every)
        session.add_probe(STABILITY_PROBE, StabilityProbe(self.probe_images), self.stability_every)
        self.stability = []
        self.stability_curve.setData([], [])
        self.stability_label.setText("Waiting for the first steps…")
        self.status.setText("Following training.")

    def _on_probed(self, name: str, result: object) -> None:
        if name == MATCHING_PROBE and isinstance(result, MatchingSnapshot):
            self.show_snapshot(result)
        elif name == STABILITY_PROBE and isinstance(result, StabilityPoint):
            self.add_stability(result)

    def add_stability(self, point: StabilityPoint) -> None:
        self.stability.append(point)
        pts = [(p.step, p.changed_fraction) for p in self.stability
               if p.step is not None and not math.isnan(p.changed_fraction)]
        xs = np.array([p[0] for p in pts], dtype=float)
        ys = np.array([p[1] for p in pts], dtype=float)
        self.stability_curve.setData(xs, ys)
        if math.isnan(point.changed_fraction):
            self.stability_label.setText(f"Step {point.step}: first check of {point.objects} objects "
                                         "(the next check compares with it).")
        else:
            self.stability_label.setText(
                f"Step {point.step}: {point.changed} of {point.objects} objects "
                f"({100 * point.changed_fraction:.0f}%) changed query since the previous check.")
        self.stabilityUpdated.emit(point)

    # --- showing a snapshot --------------------------------------------------------------------
    def show_snapshot(self, snapshot: MatchingSnapshot) -> None:
        """Show a snapshot (redraws are throttled to about 10 per second)."""
        self.snapshot = snapshot
        step = f" at step {snapshot.step}" if snapshot.step is not None else ""
        which = f"Sample {snapshot.sample_index}"
        if snapshot.image_name:
            which = f"Image {snapshot.sample_index} ({snapshot.image_name}, id {snapshot.image_id})"
        self.status.setText(f"{which}{step}: {snapshot.num_targets} objects, "
                            f"{snapshot.num_queries} queries, matched cost {snapshot.matched_cost():.3f}")
        self.redraw_soon()
        self.snapshotShown.emit(snapshot)

    def _draw(self) -> None:
        self.drawing()
        s = self.snapshot
        if s is None:
            return
        self._draw_heatmap(s)
        self._draw_canvas(s)
        self._fill_table(s)
        self._draw_selection()

    def _draw_heatmap(self, s: MatchingSnapshot) -> None:
        q, m = s.num_queries, s.num_targets
        heat = s.cost[self.part].T.astype(np.float32)  # [M, Q]
        if m == 0:
            self.heat_image.clear()
            self.assigned_marks.setData([], [])
            self.cheapest_marks.setData([], [])
            self.cell_label.setText("This sample has no objects: nothing to match.")
            return
        lo, hi = float(heat.min()), float(heat.max())
        if hi <= lo:
            hi = lo + 1e-6
        self.heat_image.setImage(heat, levels=(lo, hi))
        self.heat_image.setRect(QRectF(-0.5, -0.5, q, m))
        self.colorbar.setLevels((lo, hi))
        self.colorbar_axis.setLabel(f"{COST_PART_NAMES[self.part]} cost (low = cheap)")
        self.assigned_marks.setData(s.query_indices.astype(float), s.target_indices.astype(float))
        cheapest = s.cost[self.part].argmin(axis=0)  # [M] the cheapest query of each object
        self.cheapest_marks.setData(cheapest.astype(float), np.arange(m, dtype=float))
        left = [(j, f"{j} {s.class_name(int(s.target_labels[j]))}") for j in range(m)]
        axis = self.heat_plot.getAxis("left")
        axis.setTicks([left])
        # room for the longest tick text and the axis label: pyqtgraph does not widen it itself
        widest = max((axis.fontMetrics().horizontalAdvance(t) if hasattr(axis, "fontMetrics") else 7 * len(t)
                      for _, t in left), default=20)
        axis.setWidth(int(widest + 34))
        step = max(1, q // 20)
        self.heat_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(0, q, step)]])
        self.heat_plot.setLimits(xMin=-0.5, xMax=q - 0.5, yMin=-0.5, yMax=m - 0.5)
        self.heat_plot.setRange(xRange=(-0.5, q - 0.5), yRange=(-0.5, m - 0.5), padding=0)
        self.heat_plot.setTitle(f"{COST_PART_NAMES[self.part]} cost, sample {s.sample_index}"
                                + (f", step {s.step}" if s.step is not None else ""), size="9pt")

    def _draw_canvas(self, s: MatchingSnapshot) -> None:
        m, q = s.num_targets, s.num_queries
        self.canvas.set_image(s.image)
        gt_xyxy, pred_xyxy = s.target_boxes_xyxy(), s.pred_boxes_xyxy()
        boxes = np.concatenate([gt_xyxy, pred_xyxy]) if m else pred_xyxy
        texts = [f"GT{j} {s.class_name(int(s.target_labels[j]))}" for j in range(m)]
        texts += [f"q{i} {s.class_name(int(s.pred_labels[i]))} {float(s.pred_scores[i]):.2f}" for i in range(q)]
        colors = [GT_COLOR] * m + [query_color(i) for i in range(q)]
        self.canvas.set_boxes(boxes, texts, colors)
        matched = np.zeros(q, dtype=bool)
        matched[s.query_indices] = True
        shown = np.concatenate([np.ones(m, bool), matched | self.all_queries.isChecked()])
        dimmed = np.concatenate([np.zeros(m, bool), ~matched])
        selected = None if self.selected_query is None or self.selected_query >= q else m + self.selected_query
        self.canvas.style_boxes(shown, dimmed, selected)
        segments = []
        for query, obj in zip(s.query_indices.tolist(), s.target_indices.tolist()):
            gx, gy = (gt_xyxy[obj, :2] + gt_xyxy[obj, 2:]) / 2
            px, py = (pred_xyxy[query, :2] + pred_xyxy[query, 2:]) / 2
            segments.append(((float(gx), float(gy)), (float(px), float(py)), query_color(query)))
        self.canvas.set_links(segments)

    def _fill_table(self, s: MatchingSnapshot) -> None:
        self.table.setRowCount(s.num_targets)
        per_object = s.matched_queries()
        for obj in range(s.num_targets):
            query = int(per_object[obj])
            cells: list[str] = [str(obj), s.class_name(int(s.target_labels[obj]))]
            if query < 0:
                cells += ["—", "", "", "", ""]
            else:
                cells += [str(query)] + [f"{float(s.cost[p][query, obj]):.3f}" for p in COST_PARTS]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 2 and query >= 0:  # a tint of the query's colour (text stays readable)
                    tint = query_color(query)
                    tint.setAlpha(120)
                    item.setBackground(tint)
                self.table.setItem(obj, col, item)
        self.table.resizeColumnsToContents()

    # --- selection ---------------------------------------------------------------------------
    def set_selected_query(self, query: int | None) -> None:
        """Highlight a query (its column in the heatmap, its box on the image): the state's
        selection, which this view follows."""
        self.selected_query = query

        def draw() -> None:
            self._draw_selection()
            if self.snapshot is not None:
                self._draw_canvas(self.snapshot)

        self.when_visible("selection", draw)

    def _draw_selection(self) -> None:
        s, q = self.snapshot, self.selected_query
        if s is None or q is None or not 0 <= q < s.num_queries or s.num_targets == 0:
            self.selected_column.setVisible(False)
            return
        self.selected_column.setRegion((q - 0.5, q + 0.5))
        self.selected_column.setVisible(True)

    def _select(self, query: int) -> None:
        self.set_selected_query(query)
        self.state.set_selected_query(query)

    def _on_canvas_box(self, index: int) -> None:
        s = self.snapshot
        if s is None:
            return
        if index >= s.num_targets:
            self._select(index - s.num_targets)
        else:
            query = s.matched_query(index)
            if query is not None:
                self._select(query)

    def _on_table_click(self, row: int, _column: int) -> None:
        if self.snapshot is not None:
            query = self.snapshot.matched_query(row)
            if query is not None:
                self._select(query)

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(query, object) under a scene position of the heatmap, or None."""
        s = self.snapshot
        if s is None or s.num_targets == 0:
            return None
        vb = self.heat_plot.getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        q, m = round(p.x()), round(p.y())
        if 0 <= q < s.num_queries and 0 <= m < s.num_targets:
            return q, m
        return None

    def describe_cell(self, query: int, obj: int) -> str:
        """The cost of pairing ``query`` with object ``obj``, its parts and weights spelled out."""
        s = self.snapshot
        if s is None:
            return ""
        c = {p: float(s.cost[p][query, obj]) for p in COST_PARTS}
        w = s.weights
        mark = " (assigned)" if s.matched_query(obj) == query else ""
        return (f"query {query} × object {obj} ({s.class_name(int(s.target_labels[obj]))}){mark}: "
                f"total {c['total']:.3f} = {w['class']:g}·class {c['class']:.3f} + {w['bbox']:g}·L1 "
                f"{c['bbox']:.3f} + {w['giou']:g}·(−GIoU) {c['giou']:.3f}")

    def _on_heat_hover(self, scene_pos: QPointF) -> None:
        cell = self.cell_at(scene_pos)
        if cell is not None:
            self.cell_label.setText(self.describe_cell(*cell))

    def _on_heat_click(self, event: Any) -> None:
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.cell_label.setText(self.describe_cell(*cell))
            self._select(cell[0])

    # --- export ------------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """Rows: every (query, object) cell of the shown snapshot ("section" = "cost"), then the
        stability history ("section" = "stability")."""
        if self.snapshot is None and not self.stability:
            return None
        rows: list[dict[str, Any]] = []
        if self.snapshot is not None:
            rows += [{"section": "cost", **r} for r in self.snapshot.rows()]
        for p in self.stability:
            rows.append({"section": "stability", "step": p.step if p.step is not None else "",
                         "changed_fraction": None if math.isnan(p.changed_fraction) else p.changed_fraction,
                         "changed": p.changed, "objects": p.objects})
        return rows

    def shutdown(self) -> None:
        """Turn this view's training probes off and wait for a running job (call before closing)."""
        self._compute_timer.stop()
        self.state.update_probe(MATCHING_PROBE, active=False)
        self.state.update_probe(STABILITY_PROBE, active=False)
        self.cancel_job()
        self.wait_job(30000)
