"""Denoising, visible (DN-DETR, DINO): for one training sample, the ground-truth boxes (white),
the noised copies of them fed to the decoder as denoising queries (a colour per group; positive
queries solid, DINO's negatives dashed), the box each became after every decoder layer (the
Layer slider), and which of them the decoder repaired (IoU with its object up from the noised
box: the table and the summary), with the mean IoU per layer and over training beside it.

Two sources, from the application state, as the Matching view has them:
  * the explorer's model (``state.model``) on sample ``i`` of its toy training stream: computed
    off the GUI thread on a copy of the model (a denoising forward switches modules' modes);
  * the training session (``state.training``): a probe computes the snapshot with the live model
    in the training process every few steps; its CPU copy comes back through ``state.probed``.
A model without denoising queries (dn_groups = 0) is said so, with how to turn them on.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from torch import nn

from detr_core.analysis.denoising import (
    DenoisingProbe,
    DenoisingSnapshot,
    denoising_sample,
    no_denoising_reason,
)
from detr_core.analysis.matching import training_stream
from detr_core.config import TrainConfig
from detr_core.data.toy import ToyShapes

from ..canvas import ImageCanvas
from ..colors import group_color
from ..stable_label import StableLabel, wrap_label
from ..state import AppState, TrainingSession
from ..workers import WorkContext
from .base import AnalysisView, row_table
from .flow import Fill, Flow, labelled, side_by_side
from .following import FollowsTraining

DENOISING_PROBE = "denoising"
GT_COLOR = QColor("#ffffff")
INPUT_COLOR, OUTPUT_COLOR = "#9aa0a6", "#f58231"  # the over-training plot's two curves


def _snapshot_job(ctx: WorkContext, model: nn.Module, stream: ToyShapes, index: int) -> DenoisingSnapshot:
    ctx.progress(0, 1, f"Denoising sample {index}…")
    # a copy: the denoising forward switches the modules' modes, and other views read the model
    snapshot = denoising_sample(copy.deepcopy(model), stream, index)
    ctx.progress(1, 1, "")
    return snapshot


class DenoisingView(FollowsTraining, AnalysisView):
    """Follows the state's model, data source and training session."""

    snapshotShown = Signal(object)  # DenoisingSnapshot, each time one arrives (static or training)
    PROBE = DENOISING_PROBE
    NEXT_RESULT = "the next probe"

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Denoising", parent)
        self.state = state
        self.stream: ToyShapes | None = None
        self.snapshot: DenoisingSnapshot | None = None
        self.history: list[tuple[int, float, float]] = []  # (step, mean IoU in, mean IoU after the last layer)
        self.probe_every = 5  # steps between the training probe's snapshots
        self._canvas_sample: int | None = None  # the sample whose image the canvas shows
        self.selected: int | None = None  # the denoising query highlighted (index into the snapshot's P)
        self.init_following()

        # --- controls
        self.sample_spin = QSpinBox()
        self.sample_spin.setRange(0, 10_000_000)
        self.sample_spin.setToolTip("Index of the sample in the model's toy training stream")
        self.group_combo = QComboBox()
        self.group_combo.addItem("all groups", None)
        self.group_combo.setToolTip("Which denoising group's queries to show (each group is one noised copy of "
                                    "every object)")
        self.layer_slider = QSlider(Qt.Orientation.Horizontal)
        self.layer_slider.setRange(0, 0)
        self.layer_slider.setMinimumWidth(90)
        self.layer_slider.setToolTip("0: the noised boxes fed in; l: the boxes after decoder layer l")
        self.layer_label = QLabel("noised input")
        self.layer_label.setMinimumWidth(self.layer_label.fontMetrics().horizontalAdvance("after layer 12/12") + 4)
        self.compute_button = QPushButton("Capture")
        self.compute_button.setToolTip("Run the explorer's model on this sample with its denoising queries")
        self.status = StableLabel("No model yet.")
        self.status.setMinimumWidth(160)
        row = Flow()
        row.addWidget(labelled("Sample", self.sample_spin))
        row.addWidget(labelled("Group", self.group_combo))
        row.addWidget(side_by_side(QLabel("Layer"), self.layer_slider, self.layer_label))
        row.addWidget(self.compute_button)
        row.addWidget(self.status)
        self.body.addWidget(row)
        self.notice = wrap_label(QLabel(""))  # why there is nothing to show, and how to turn it on
        self.notice.setStyleSheet("color: #f5a623")
        self.notice.setVisible(False)
        self.body.addWidget(self.notice)

        # --- the image: ground truth, the noised boxes or what each became
        self.canvas = ImageCanvas(colorbar=False)  # boxes only: no attention colour bar
        self.canvas.setMinimumSize(180, 180)

        # --- one row per denoising query
        self.table = QTableWidget(0, 8)
        self.table.setHorizontalHeaderLabels(["g", "object", "±", "fed as", "IoU in", "IoU", "Δ", "repaired"])
        tips = ["the denoising group", "the object the query copies", "", "the label fed in (✗: flipped)",
                "IoU of the noised box fed in with its object", "IoU of the box after the chosen layer",
                "IoU change from the box fed in", "✓: a positive query whose IoU went up"]
        tips[2] = "+ a positive query (to reconstruct its object), − a negative (DINO: to be rejected as no object)"
        for col, tip in enumerate(tips):
            self.table.horizontalHeaderItem(col).setToolTip(tip)
        row_table(self.table)

        # --- mean IoU with the object, per stage (input, layer 1, ...), one line per group
        self.layer_plot = pg.PlotWidget(background="#202124")
        self.layer_plot.setMenuEnabled(False)
        self.layer_plot.setMinimumHeight(150)
        self.layer_plot.setLabel("bottom", "stage (0 = noised input)")
        self.layer_plot.setLabel("left", "mean IoU with its object")
        self.layer_plot.setYRange(0, 1, padding=0.05)
        self.layer_plot.setTitle("Repair layer by layer (positives)", size="9pt")
        self.layer_curves: list[pg.PlotDataItem] = []

        # --- over training: the mean IoU fed in against the last layer's
        self.train_plot = pg.PlotWidget(background="#202124")
        self.train_plot.setMenuEnabled(False)
        self.train_plot.setMinimumHeight(150)
        self.train_plot.setLabel("bottom", "training step")
        self.train_plot.setLabel("left", "mean IoU")
        self.train_plot.setYRange(0, 1, padding=0.05)
        self.train_plot.setTitle("Over training: fed in (grey), last layer (orange)", size="9pt")
        self.in_curve = self.train_plot.plot([], [], pen=pg.mkPen(INPUT_COLOR, width=2))
        self.out_curve = self.train_plot.plot([], [], pen=pg.mkPen(OUTPUT_COLOR, width=2), symbol="o",
                                              symbolSize=5, symbolBrush=OUTPUT_COLOR)
        self.train_label = wrap_label(QLabel("Follows training: start a run with denoising groups to fill this plot."))
        train_box = QWidget()
        train_layout = QVBoxLayout(train_box)
        train_layout.setContentsMargins(0, 0, 0, 0)
        train_layout.addWidget(self.train_plot, 1)
        train_layout.addWidget(self.train_label)

        side = QTabWidget()
        side.addTab(self.table, "Queries")
        side.addTab(self.layer_plot, "By layer")
        side.addTab(train_box, "Over training")
        self.side_tabs = side
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.canvas)
        self.splitter.addWidget(side)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.summary = wrap_label(QLabel(" "))
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.legend = wrap_label(QLabel("White: ground truth. Coloured: the denoising queries, a colour per group "
                                        "(solid positive, dashed negative); dotted lines: from the box fed in to "
                                        "the box after the layer."))
        self.body.addWidget(Fill(self.splitter), 1)
        self.body.addWidget(self.summary)
        self.body.addWidget(self.legend)

        self.group_combo.currentIndexChanged.connect(lambda _: self._draw())
        self.layer_slider.valueChanged.connect(lambda _: self._draw())
        self.compute_button.clicked.connect(self.compute)
        self.table.cellClicked.connect(lambda row, _col: self.select(self._rows[row] if row < len(self._rows) else None))
        self.canvas.querySelected.connect(self._on_canvas_box)
        self._rows: list[int] = []  # the query of each table row
        self._boxes: list[int] = []  # the query of each canvas box after the objects' (-1: an object)
        self.follow(state)

    # --- state ---------------------------------------------------------------------------------
    @property
    def group(self) -> int | None:
        """The group shown (None: all)."""
        return self.group_combo.currentData()

    def set_group(self, group: int | None) -> None:
        self.group_combo.setCurrentIndex(0 if group is None else group + 1)

    @property
    def stage(self) -> int:
        """0: the noised boxes fed in; l >= 1: the boxes after decoder layer l."""
        return self.layer_slider.value()

    def set_stage(self, stage: int) -> None:
        self.layer_slider.setValue(stage)

    # --- the explorer's model ------------------------------------------------------------------
    def _on_inputs(self, *_: object) -> None:
        source = self.state.data_source
        self.stream = source.training_stream if source.training_stream is not None \
            else training_stream(TrainConfig())
        self._compute_timer.start(0)

    def compute(self) -> bool:
        """The chosen sample's denoising snapshot with the explorer's model, off the GUI thread (a
        model without denoising is said so at once)."""
        model = self.model
        if model is None or self.stream is None:
            self.status.setText("No model yet.")
            return False
        reason = no_denoising_reason(model)
        if reason is not None:
            self.show_unavailable(reason)
            return False
        if self.busy:
            self._pending_compute = True
            return False
        self._pending_compute = False
        self.status.setText(f"Capturing sample {self.sample_index}…")
        return self.run_job(_snapshot_job, model, self.stream, self.sample_index, on_done=self._on_static_snapshot,
                            button=self.compute_button)

    def show_unavailable(self, reason: str) -> None:
        """Nothing to show: say why (and how to turn denoising on)."""
        self.snapshot = None
        self.notice.setText(reason)
        self.notice.setVisible(True)
        self.status.setText("No denoising queries.")
        self.summary.setText(" ")
        self.table.setRowCount(0)
        self.canvas.set_boxes(np.zeros((0, 4)), [], [])
        self.canvas.set_links([])
        for curve in self.layer_curves:
            curve.setData([], [])

    # --- following training ------------------------------------------------------------------
    def _on_training(self, session: TrainingSession | None) -> None:
        """A training session, before its run starts: every ``probe_every`` steps the chosen
        sample's denoising snapshot is taken with the live model, in the training process."""
        if session is None:
            return
        session.add_probe(DENOISING_PROBE, DenoisingProbe(self.sample_index), self.probe_every)
        self.history = []
        self.in_curve.setData([], [])
        self.out_curve.setData([], [])
        self.train_label.setText("Waiting for the first steps…")
        self.status.setText("Following training.")

    def _on_probed(self, name: str, result: object) -> None:
        if name == DENOISING_PROBE and isinstance(result, DenoisingSnapshot):
            self.show_snapshot(result)

    def _add_history(self, s: DenoisingSnapshot) -> None:
        if s.step is None or not s.available or s.num_layers == 0:
            return
        whole = s.summary()
        if math.isnan(whole.iou_in):
            return
        if self.history and self.history[-1][0] == s.step:
            self.history.pop()
        self.history.append((s.step, whole.iou_in, whole.iou_out))
        steps = np.array([h[0] for h in self.history], float)
        self.in_curve.setData(steps, np.array([h[1] for h in self.history]))
        self.out_curve.setData(steps, np.array([h[2] for h in self.history]))
        self.train_label.setText(f"Step {s.step}: the positives' mean IoU with their objects goes from "
                                 f"{whole.iou_in:.2f} fed in to {whole.iou_out:.2f} after the last layer "
                                 f"({whole.repaired} of {whole.positives} repaired).")

    # --- showing a snapshot --------------------------------------------------------------------
    def show_snapshot(self, snapshot: DenoisingSnapshot) -> None:
        """Show a snapshot (redraws are throttled to about 10 per second)."""
        if not snapshot.available:
            self.show_unavailable(snapshot.reason)
            return
        self.snapshot = snapshot
        self.notice.setVisible(False)
        self._update_controls(snapshot)
        self._add_history(snapshot)
        step = f" at step {snapshot.step}" if snapshot.step is not None else ""
        self.status.setText(f"Sample {snapshot.sample_index}{step}: {len(snapshot.target_labels)} objects, "
                            f"{snapshot.num_groups} groups, {snapshot.num_queries} denoising queries")
        self.redraw_soon()
        self.snapshotShown.emit(snapshot)

    def _update_controls(self, s: DenoisingSnapshot) -> None:
        if self.group_combo.count() != s.num_groups + 1:
            chosen = self.group
            self.group_combo.blockSignals(True)
            self.group_combo.clear()
            self.group_combo.addItem("all groups", None)
            for g in range(s.num_groups):
                self.group_combo.addItem(f"group {g + 1}", g)
            self.group_combo.setCurrentIndex(0 if chosen is None or chosen >= s.num_groups else chosen + 1)
            self.group_combo.blockSignals(False)
        if self.layer_slider.maximum() != s.num_layers:
            at_end = self.layer_slider.value() == self.layer_slider.maximum()
            self.layer_slider.blockSignals(True)
            self.layer_slider.setRange(0, s.num_layers)
            if at_end or self.layer_slider.value() > s.num_layers:
                self.layer_slider.setValue(s.num_layers)  # the last layer: what the decoder made of them
            self.layer_slider.blockSignals(False)

    def chosen(self) -> np.ndarray:
        """[P] bool: the queries of the chosen group (all of them for "all groups")."""
        s = self.snapshot
        if s is None:
            return np.zeros(0, bool)
        return np.ones(s.num_queries, bool) if self.group is None else s.group == self.group

    def _draw(self) -> None:
        self.drawing()
        s = self.snapshot
        if s is None:
            return
        stage = min(self.stage, s.num_layers)
        self.layer_label.setText("noised input" if stage == 0 else f"after layer {stage}/{s.num_layers}")
        self._draw_canvas(s, stage)
        self._fill_table(s, stage)
        self._draw_layer_plot(s)
        self._write_summary(s, stage)

    def _draw_canvas(self, s: DenoisingSnapshot, stage: int) -> None:
        if self._canvas_sample != s.sample_index or self.canvas.image_shape != s.image_size:
            self.canvas.set_image(s.image)  # (it fits the view: only for a new sample)
            self._canvas_sample = s.sample_index
        gt = s.target_boxes_xyxy()
        shown_queries = np.flatnonzero(self.chosen())
        now, fed = s.boxes_xyxy(stage), s.boxes_xyxy(0)
        m = len(gt)
        boxes = np.concatenate([gt, now[shown_queries]]) if len(shown_queries) else gt
        texts = [f"GT{j} {s.class_name(int(s.target_labels[j]))}" for j in range(m)]
        texts += [f"g{int(s.group[p]) + 1}·{int(s.target_index[p])}" for p in shown_queries]
        colors = [GT_COLOR] * m + [group_color(int(s.group[p])) for p in shown_queries]
        priority = np.concatenate([np.full(m, 1.0), np.zeros(len(shown_queries))])  # the objects' labels first
        self.canvas.set_boxes(boxes, texts, colors, priority)
        dashed = np.concatenate([np.zeros(m, bool), ~s.positive[shown_queries]])
        self._boxes = [-1] * m + shown_queries.tolist()
        selected = self._boxes.index(self.selected) if self.selected in self._boxes else None
        self.canvas.style_boxes(np.ones(len(boxes), bool), dashed, selected)
        links = []
        if stage > 0:
            for p in shown_queries:
                (a0, b0, a1, b1), (c0, d0, c1, d1) = fed[p], now[p]
                links.append((((a0 + a1) / 2, (b0 + b1) / 2), ((c0 + c1) / 2, (d0 + d1) / 2),
                              group_color(int(s.group[p]))))
        self.canvas.set_links(links)

    def _fill_table(self, s: DenoisingSnapshot, stage: int) -> None:
        rows = np.flatnonzero(self.chosen())
        self._rows = rows.tolist()
        repaired = s.repaired(stage - 1) if stage > 0 else np.zeros(s.num_queries, bool)
        flipped = s.label_flipped()
        self.table.setRowCount(len(rows))
        for r, p in enumerate(rows):
            obj = int(s.target_index[p])
            iou_in, iou_now = float(s.iou[0, p]), float(s.iou[stage, p])
            label = s.class_name(int(s.input_labels[p])) + (" ✗" if flipped[p] else "")
            cells = [str(int(s.group[p]) + 1), f"{obj} {s.class_name(int(s.target_labels[obj]))}",
                     "+" if s.positive[p] else "−", label, f"{iou_in:.2f}", f"{iou_now:.2f}",
                     f"{round(iou_now - iou_in, 2) + 0.0:+.2f}", ("✓" if repaired[p] else "·") if s.positive[p] else "—"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    tint = group_color(int(s.group[p]))
                    tint.setAlpha(120)
                    item.setBackground(tint)
                self.table.setItem(r, col, item)
        self.table.resizeColumnsToContents()

    def _draw_layer_plot(self, s: DenoisingSnapshot) -> None:
        groups = range(s.num_groups) if self.group is None else [self.group]
        while len(self.layer_curves) < s.num_groups:
            g = len(self.layer_curves)
            self.layer_curves.append(self.layer_plot.plot([], [], pen=pg.mkPen(group_color(g), width=2), symbol="o",
                                                          symbolSize=6, symbolBrush=group_color(g)))
        stages = np.arange(s.num_layers + 1, dtype=float)
        for g, curve in enumerate(self.layer_curves):
            pos = (s.group == g) & s.positive
            if g in groups and g < s.num_groups and pos.any():
                curve.setData(stages, s.iou[:, pos].mean(axis=1))
            else:
                curve.setData([], [])
        self.layer_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(s.num_layers + 1)]])
        self.layer_plot.setXRange(-0.2, s.num_layers + 0.2, padding=0)

    def _write_summary(self, s: DenoisingSnapshot, stage: int) -> None:
        if stage == 0:
            whole = s.summary(0, self.group)
            self.summary.setText(f"Fed in: {whole.positives} positive and {whole.negatives} negative queries; mean IoU "
                                 f"of the noised boxes with their objects {whole.iou_in:.2f}; {whole.flipped} labels "
                                 "flipped. Move the Layer slider to see what the decoder made of them.")
            return
        r = s.summary(stage - 1, self.group)
        text = (f"After layer {stage}: <b>{r.repaired} of {r.positives}</b> positive queries repaired (IoU with their "
                f"object up from the noised box); mean IoU {r.iou_in:.2f} → <b>{r.iou_out:.2f}</b>.")
        if r.flipped:
            text += f" Flipped labels: {r.flips_fixed} of {r.flipped} predicted as their object's class again."
        if r.negatives:
            text += (f" Negatives (to be rejected as no object): mean score {r.negative_score:.2f} against the "
                     f"positives' {r.positive_score:.2f}.")
        self.summary.setText(text)

    # --- selection ---------------------------------------------------------------------------
    def select(self, query: int | None) -> None:
        """Highlight denoising query ``query`` (its box drawn thick, its table row selected)."""
        self.selected = query
        if self.snapshot is not None:
            self._draw_canvas(self.snapshot, min(self.stage, self.snapshot.num_layers))
        if query in self._rows:
            self.table.selectRow(self._rows.index(query))

    def _on_canvas_box(self, index: int) -> None:
        if 0 <= index < len(self._boxes) and self._boxes[index] >= 0:
            self.select(self._boxes[index])

    # --- export ------------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """Rows: every denoising query of the shown snapshot ("section" = "queries"), then the
        mean IoU over training ("section" = "training")."""
        if self.snapshot is None and not self.history:
            return None
        rows: list[dict[str, Any]] = []
        if self.snapshot is not None:
            rows += [{"section": "queries", **r} for r in self.snapshot.rows()]
        rows += [{"section": "training", "step": step, "iou_input": a, "iou_last_layer": b}
                 for step, a, b in self.history]
        return rows

    def shutdown(self) -> None:
        """Turn this view's training probe off and wait for a running job (call before closing)."""
        self._compute_timer.stop()
        self.state.update_probe(DENOISING_PROBE, active=False)
        self.cancel_job()
        self.wait_job(30000)
