"""Counting beyond training (the paper's Figures 5 and 12): detected against true object count
on toy images more crowded than any training image, up to more objects than queries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget
from torch import nn

from detr_core.analysis.counting import MATCH_IOU, CountingResult, count_objects
from detr_core.config import ToyDataConfig

from ..state import AppState, DataSource, LoadedModel
from ..workers import WorkContext
from .base import AnalysisView

BACKGROUND = "#202124"
JITTER = 0.18  # horizontal spread of the per-image points, in counts


class CountingView(AnalysisView):
    """Run the model on images with 1..N objects and plot how many it detects.

    It counts with the state's model; the data source's training data (when known) draws the
    images and its largest object count is marked on the plot.
    """

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Counting beyond training", parent)
        self.state = state
        self.result: CountingResult | None = None
        self._generation = 0

        self.max_count = QSpinBox()
        self.max_count.setRange(1, 100)
        self.max_count.setValue(25)
        self.max_count.setPrefix("1 to ")
        self.max_count.setSuffix(" objects")
        self.images_per_count = QSpinBox()
        self.images_per_count.setRange(1, 500)
        self.images_per_count.setValue(10)
        self.images_per_count.setSuffix(" images each")
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.threshold.setPrefix("score ≥ ")
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        controls = QHBoxLayout()
        for w in (QLabel("Counts"), self.max_count, self.images_per_count, self.threshold, self.run_button):
            controls.addWidget(w)
        controls.addStretch(1)
        self.body.addLayout(controls)

        self.plot_widget = pg.PlotWidget(background=BACKGROUND)
        plot = self.plot = self.plot_widget.getPlotItem()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setLabel("bottom", "true number of objects")
        plot.setLabel("left", "detected (score ≥ threshold)")
        self.legend = plot.addLegend(offset=(10, 10))
        self.beyond_training = pg.LinearRegionItem(orientation="vertical", movable=False,
                                                   brush=pg.mkBrush(255, 255, 255, 14), pen=pg.mkPen(None))
        self.beyond_queries = pg.LinearRegionItem(orientation="vertical", movable=False,
                                                  brush=pg.mkBrush(255, 138, 128, 30), pen=pg.mkPen(None))
        for region in (self.beyond_training, self.beyond_queries):
            region.setZValue(-10)
            plot.addItem(region)
        dash, dot = Qt.PenStyle.DashLine, Qt.PenStyle.DotLine
        self.diagonal = pg.InfiniteLine(pos=(0, 0), angle=45, pen=pg.mkPen("#9aa0a6", width=1, style=dash),
                                        label="detected = true", labelOpts={"position": 0.92, "color": "#9aa0a6"})
        self.train_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#e8eaed", width=1, style=dot),
                                          label="", labelOpts={"position": 0.95, "color": "#e8eaed"})
        self.query_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ff8a80", width=2),
                                          label="", labelOpts={"position": 0.85, "color": "#ff8a80"})
        self.ceiling = pg.InfiniteLine(angle=0, pen=pg.mkPen("#ff8a80", width=1, style=dash),
                                       label="", labelOpts={"position": 0.55, "color": "#ff8a80"})  # clear of the legend
        for line in (self.diagonal, self.train_line, self.query_line, self.ceiling):
            plot.addItem(line)
        self.points = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(138, 180, 248, 110),
                                         name="one image")
        self.mean_curve = pg.PlotDataItem(pen=pg.mkPen("#fbbc04", width=2), symbol="o", symbolSize=6,
                                          symbolBrush="#fbbc04", symbolPen=None, name="mean detected")
        self.correct_curve = pg.PlotDataItem(pen=pg.mkPen("#34a853", width=2, style=dash),
                                             name=f"mean correct (IoU ≥ {MATCH_IOU:g}, right class)")
        for item in (self.points, self.mean_curve, self.correct_curve):
            plot.addItem(item)
        self.body.addWidget(self.plot_widget, 1)
        self.summary = QLabel("Load a model and press Run.")
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)
        self._show_markers(None, None)
        state.modelChanged.connect(self._on_model)
        state.dataSourceChanged.connect(self._on_data_source)

    # --- inputs ----------------------------------------------------------------------------
    @property
    def data_config(self) -> ToyDataConfig | None:
        """The model's training data config, when known."""
        return self.state.data_source.data_config

    def _on_data_source(self, source: DataSource) -> None:
        if self.result is None:  # a plot shows the markers of its own run
            self._show_markers(None, source.data_config.max_objects if source.data_config else None)

    def _on_model(self, loaded: LoadedModel | None) -> None:
        """A new model: old results are cleared."""
        self.cancel_job()
        self._generation += 1
        model = loaded.model if loaded is not None else None
        data_config = self.data_config
        self.result = None
        if model is not None:
            q = int(model.config.num_queries)  # type: ignore[attr-defined]
            # past the number of queries when that fits in a toy image, else the 20
            self.max_count.setValue(q + 5 if q + 5 <= 40 else 20)
        for item in (self.points, self.mean_curve, self.correct_curve):
            item.setData([], [])
        self._show_markers(None, data_config.max_objects if data_config else None)
        self.summary.setText("Press Run." if model is not None else "No model.")

    # --- collection ------------------------------------------------------------------------
    def run(self) -> bool:
        """Count off the GUI thread; False if there is no model or a job runs."""
        if self.model is None:
            self.show_error("No model to analyse.")
            return False
        counts = list(range(1, self.max_count.value() + 1))
        train_max = self.data_config.max_objects if self.data_config is not None else None
        generation = self._generation
        return self.run_job(
            _count, self.model, counts, self.images_per_count.value(), self.threshold.value(), self.data_config,
            train_max, on_done=lambda r: self._on_counted(r, generation), button=self.run_button,
        )

    def _on_counted(self, result: CountingResult, generation: int) -> None:
        if generation == self._generation:
            self.set_result(result)

    # --- display ---------------------------------------------------------------------------
    def set_result(self, result: CountingResult) -> None:
        """Plot a finished counting run."""
        self.result = result
        rows = result.rows
        true = np.array([r.true_count for r in rows], dtype=float)
        detected = np.array([r.detected for r in rows], dtype=float)
        jitter = np.random.default_rng(0).uniform(-JITTER, JITTER, len(rows))
        self.points.setData(true + jitter, detected)
        means = result.means()
        xs = np.array([m.true_count for m in means], dtype=float)
        self.mean_curve.setData(xs, np.array([m.mean_detected for m in means]))
        self.correct_curve.setData(xs, np.array([m.mean_correct for m in means]))
        self._show_markers(result.num_queries, result.train_max_objects)
        most = float(true.max(initial=1))
        # show the queries line when it is near the data; a 100-query model on 20 objects would squash it
        right = max(most, result.num_queries) if result.num_queries <= 2 * most else most
        top = max(right, detected.max(initial=1))
        self.plot.setRange(xRange=(0, right + 1), yRange=(0, top + 1), padding=0.02)
        self.summary.setText(self.describe())

    def describe(self) -> str:
        """A one-paragraph reading of the result."""
        r = self.result
        if r is None:
            return ""
        parts = []
        if r.train_max_objects is not None:
            parts.append(f"Training images held at most {r.train_max_objects} objects.")
        q = r.num_queries
        parts.append(f"The model has {q} queries: it can never detect more than {q} objects.")
        last = r.means()[-1]
        plural = "s" if last.images != 1 else ""
        parts.append(f"With {last.true_count} objects it detects {last.mean_detected:.1f} on average "
                     f"({last.mean_correct:.1f} correct, {last.images} image{plural}).")
        if last.true_count > q:
            parts.append(f"At least {last.true_count - q} of those {last.true_count} must be missed.")
        return " ".join(parts)

    def _show_markers(self, num_queries: int | None, train_max: int | None) -> None:
        far = 1000.0
        for item in (self.query_line, self.beyond_queries, self.ceiling):
            item.setVisible(num_queries is not None)
        if num_queries is not None:
            self.query_line.setValue(num_queries + 0.5)
            self.query_line.label.setFormat(f"{num_queries} queries")
            self.ceiling.setValue(num_queries)
            self.ceiling.label.setFormat(f"at most {num_queries} detections")
            self.beyond_queries.setRegion((num_queries + 0.5, far))
        self.train_line.setVisible(train_max is not None)
        self.beyond_training.setVisible(train_max is not None)
        if train_max is not None:
            self.train_line.setValue(train_max + 0.5)
            self.train_line.label.setFormat(f"training ≤ {train_max}")
            self.beyond_training.setRegion((train_max + 0.5, far))

    # --- export ----------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """One row per image: asked and true count, detected, correct, plus the run's settings."""
        r = self.result
        if r is None:
            return None
        return [{**row.to_row(), "num_queries": r.num_queries, "threshold": r.threshold} for row in r.rows]


def _count(ctx: WorkContext, model: nn.Module, counts: list[int], images_per_count: int, threshold: float,
           data_config: ToyDataConfig | None, train_max: int | None) -> CountingResult:
    """Worker-thread job."""
    return count_objects(
        model, counts, images_per_count, threshold, data_config, train_max, batch_size=25,
        progress=lambda done, total: ctx.progress(done, total, f"{done} / {total} images"))

