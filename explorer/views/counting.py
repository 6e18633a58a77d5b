"""Counting beyond training (the paper's Figures 5 and 12): detected against true object count
on toy images more crowded than any training image, up to more objects than queries; or, on the
open dataset, its real validation images grouped by their ground-truth object count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)
from torch import nn

from detr_core.analysis.counting import MATCH_IOU, CountingResult, count_crowded, count_objects
from detr_core.analysis.label_map import label_map_for
from detr_core.config import ToyDataConfig
from detr_core.data.files import FileDataset

from ..stable_label import wrap_label
from ..state import AppState, DataSource, LoadedModel
from ..workers import WorkContext
from .base import AnalysisView, fill_sources
from .flow import Fill, Flow, side_by_side

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
        self.file_dataset: FileDataset | None = None  # the open dataset's validation split, resized
        self.file_dataset_name = ""
        self.dataset_train_max: int | None = None  # most objects in one of its training images

        self.source = QComboBox()
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.source.setToolTip("Toy images drawn with exactly 1..N objects, or the open dataset's validation "
                               "images grouped by how many objects they hold")
        self.dataset_images = QSpinBox()
        self.dataset_images.setRange(1, 100_000)
        self.dataset_images.setValue(500)
        self.dataset_images.setPrefix("first ")
        self.dataset_images.setSuffix(" images")
        self.dataset_images.setToolTip("How many of the split's images to run the model on")

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
        self.counts_label = QLabel("Counts")
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(22)  # a long dataset name must not widen the dock
        self.toy_controls = side_by_side(self.counts_label, self.max_count, self.images_per_count)
        controls = Flow()  # wraps in a narrow dock
        for w in (self.source, self.toy_controls, self.dataset_images, side_by_side(self.threshold, self.run_button)):
            controls.addWidget(w)
        self.body.addWidget(controls)

        self.plot_widget = pg.PlotWidget(background=BACKGROUND)
        plot = self.plot = self.plot_widget.getPlotItem()
        plot.setMenuEnabled(False)
        plot.showGrid(x=True, y=True, alpha=0.15)
        plot.setLabel("bottom", "true number of objects")
        plot.setLabel("left", "detected (score ≥ threshold)")
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
                                       label="", labelOpts={"position": 0.55, "color": "#ff8a80"})
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
        self.body.addWidget(Fill(self.plot_widget, 220), 1)
        # the legend under the plot, clear of the data: a model of few queries detects as many
        # whatever the count, and its flat curve (and "at most N detections") would run under a
        # legend in any corner of the plot
        self.legend = Flow()
        for mark, color, name in (("●", "#8ab4f8", self.points.name()), ("━●━", "#fbbc04", self.mean_curve.name()),
                                  ("╌╌╌", "#34a853", self.correct_curve.name())):
            self.legend.addWidget(QLabel(f"<span style='color:{color}'>{mark}</span> {name}"))
        self.body.addWidget(self.legend)
        self.summary = wrap_label(QLabel("Load a model and press Run."))
        self.body.addWidget(self.summary)
        self._show_markers(None, None)
        self._preview_range()
        self.max_count.valueChanged.connect(self._preview_range)
        self._update_sources()
        self.source.currentIndexChanged.connect(self._on_source_changed)
        self._on_source_changed()
        state.modelChanged.connect(self._on_model)
        state.dataSourceChanged.connect(self._on_data_source)

    # --- inputs ----------------------------------------------------------------------------
    @property
    def data_config(self) -> ToyDataConfig | None:
        """The model's training data config, when known."""
        return self.state.data_source.data_config

    @property
    def on_open_dataset(self) -> bool:
        return self.source.currentIndex() == 1 and self.file_dataset is not None

    def set_dataset(self, dataset: FileDataset | None, name: str = "", train_max: int | None = None) -> None:
        """Offer a dataset's validation split (resized as the model infers) next to the drawn toy
        images, and choose it; ``train_max``: most objects in one of its training images."""
        self.file_dataset = dataset
        self.file_dataset_name = name or "open dataset"
        self.dataset_train_max = train_max
        self._update_sources()
        self.source.setCurrentIndex(1 if dataset is not None else 0)
        self._on_source_changed()
        if self.result is not None and self.result.grouped:  # of the previous dataset
            self.cancel_job()
            self._generation += 1
            self.result = None
            for item in (self.points, self.mean_curve, self.correct_curve):
                item.setData([], [])
            self.summary.setText("New data: press Run.")

    def _update_sources(self) -> None:
        fill_sources(self.source, "toy images with 1..N objects", f"{self.file_dataset_name}, by count" if self.file_dataset is not None else None)

    def _on_source_changed(self, *_: object) -> None:
        grouped = self.on_open_dataset
        for w in (self.toy_controls, self.counts_label, self.max_count, self.images_per_count):
            w.setVisible(not grouped)
        self.dataset_images.setVisible(grouped)
        self.plot.setLabel("bottom", "ground-truth objects in the image" if grouped else "true number of objects")

    def describe_data(self) -> str:
        """What the counts are of, in words (the view's "Data: …" note)."""
        if self.on_open_dataset and self.file_dataset is not None:
            return (f"Data: {self.file_dataset_name}'s real images, grouped by their ground-truth object count "
                    "(a dataset cannot draw images with exactly N objects). Source: or toy images with 1..N.")
        return "Data: toy shapes drawn with exactly 1..N objects." + (
            " (Source: or the open dataset, its images grouped by count.)" if self.file_dataset is not None else "")

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
        self._preview_range()
        self.summary.setText("Press Run." if model is not None else "No model.")

    # --- collection ------------------------------------------------------------------------
    def run(self) -> bool:
        """Count off the GUI thread; False if there is no model or a job runs."""
        if self.model is None:
            self.show_error("No model to analyse.")
            return False
        generation = self._generation
        if self.on_open_dataset and self.file_dataset is not None:
            return self.run_job(
                _count_dataset, self.model, self.file_dataset, self.dataset_images.value(), self.threshold.value(),
                self.dataset_train_max, self.class_names, self.file_dataset_name, on_done=lambda r: self._on_counted(r, generation),
                button=self.run_button)
        counts = list(range(1, self.max_count.value() + 1))
        train_max = self.data_config.max_objects if self.data_config is not None else None
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
        left = -0.6 if true.min(initial=1) == 0 else 0  # a dataset's images without objects
        self.plot.setRange(xRange=(left, right + 1), yRange=(0, top + 1), padding=0.02)
        self.summary.setText(self.describe())

    def describe(self) -> str:
        """A one-paragraph reading of the result."""
        r = self.result
        if r is None:
            return ""
        parts = []
        if r.grouped:
            images = len(r.rows)
            parts.append(f"{images} real images of {r.data_name}, grouped by their ground-truth object count "
                         f"({len(r.means())} different counts).")
        if r.train_max_objects is not None:
            parts.append(f"Training images held at most {r.train_max_objects} objects.")
        q = r.num_queries
        parts.append(f"The model has {q} queries: it can never detect more than {q} objects.")
        last = r.means()[-1]
        plural = "s" if last.images != 1 else ""
        parts.append(f"With {last.true_count} objects it detects {last.mean_detected:.1f} on average "
                     f"({last.mean_correct:.1f} correct, {last.images} image{plural}).")
        if r.grouped:
            errors = ", ".join(f"{m.true_count}: {m.mean_error:+.1f}" for m in r.means()[:12])
            parts.append(f"Mean count error (detected − true) by count: {errors}"
                         + (" …" if len(r.means()) > 12 else "") + ".")
        if last.true_count > q:
            parts.append(f"At least {last.true_count - q} of those {last.true_count} must be missed.")
        return " ".join(parts)

    def _preview_range(self, *_: object) -> None:
        """Before a run, the axes the run will have (counts 0 to the largest asked for), not the
        auto-range of lines that reach to 1000."""
        if self.result is None:
            n = self.max_count.value()
            self.plot.setRange(xRange=(0, n + 1), yRange=(0, n + 1), padding=0.02)

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
        data = r.data_name or "toy shapes"
        return [{**row.to_row(), "num_queries": r.num_queries, "threshold": r.threshold, "data": data}
                for row in r.rows]


def _count(ctx: WorkContext, model: nn.Module, counts: list[int], images_per_count: int, threshold: float,
           data_config: ToyDataConfig | None, train_max: int | None) -> CountingResult:
    """Worker-thread job."""
    return count_crowded(
        model, counts, images_per_count, threshold, data_config, train_max, batch_size=25,
        progress=lambda done, total: ctx.progress(done, total, f"{done} / {total} images"))



def _count_dataset(ctx: WorkContext, model: nn.Module, dataset: FileDataset, num_images: int, threshold: float,
                   train_max: int | None, class_names: list[str], name: str) -> CountingResult:
    """Worker-thread job: the split's images grouped by their ground-truth count."""
    label_map = label_map_for(class_names, dataset.class_names)  # ValueError: said in the view
    return count_objects(
        model, dataset, num_images, threshold, train_max, label_map, batch_size=8,
        progress=lambda done, total: ctx.progress(done, total, f"{done} / {total} images"), data_name=name)
