"""Layer by layer: the selected query's box at every decoder layer, drawn on the image to show
the refinement, and the AP / AP50 of every layer's predictions with and without NMS (the DETR
paper's Figure 4: NMS helps the early layers and stops helping at the last), on the toy
held-out split or on the open dataset's validation split (Source).

For D-FINE and DEIMv2 (fine-grained distribution refinement) the query's edge distributions at a
chosen layer are drawn on its box: across each edge, a bar per bin at the place that bin puts
the edge, as long as its probability (left and right edges: a profile over x on the box's middle
row; top and bottom: over y on its middle column), so choosing layer after layer shows them sharpen."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from torch import nn
from torchvision.ops import box_iou

from detr_core.analysis.capture import InferenceResult, run_inference
from detr_core.analysis.edge_distributions import EDGE_NAMES
from detr_core.analysis.label_map import label_map_for
from detr_core.analysis.layerwise import NMS_IOU, LayerAP, layerwise_ap
from detr_core.config import ToyDataConfig
from detr_core.data.files import FileDataset
from detr_core.data.toy import heldout_split

from ..canvas import ImageCanvas
from ..state import AppState, LoadedModel
from ..workers import WorkContext
from .base import AnalysisView, fill_sources

LAYER_COLORMAP = "plasma"
# Edge distributions: a bin of probability 1 is drawn as long as this fraction of the box's other
# side (at least EDGE_MIN_HEIGHT of the image's longer side), from the box's middle row (left and
# right edges) or column (top and bottom), each edge's bars turned its own way (-1: up or left,
# +1: down or right) so the four profiles take one quarter of the box each, like a pinwheel
EDGE_HEIGHT = 0.5
EDGE_MIN_HEIGHT = 0.04
EDGE_DIRECTIONS = (-1.0, 1.0, 1.0, -1.0)  # left: up, top: right, right: down, bottom: left


def layer_colors(num_layers: int) -> list[QColor]:
    """One colour per decoder layer, dark violet (first) to yellow (last)."""
    cmap = pg.colormap.get(LAYER_COLORMAP)
    ts = np.linspace(0.3, 0.95, num_layers) if num_layers > 1 else np.array([0.95])
    return [cmap.map(float(t), mode="qcolor") for t in ts]


def _ap_job(ctx: WorkContext, model: nn.Module, data_config: ToyDataConfig, num_images: int,
            nms_iou: float, dataset: FileDataset | None = None, class_names: list[str] | None = None,
            ) -> list[LayerAP]:
    """AP by layer on the toy held-out split, or on ``dataset`` (a split resized as the model
    infers) whose classes the model's ``class_names`` must include."""
    if dataset is not None:
        label_map = label_map_for(class_names or [], dataset.class_names)  # ValueError: said in the view
        num_images = min(num_images, len(dataset))
    else:
        model_classes = int(model.config.num_classes)  # type: ignore[attr-defined]
        if model_classes != len(data_config.classes):
            raise ValueError(f"AP by layer is measured on the toy held-out split ({len(data_config.classes)} "
                             f"classes); this model has {model_classes} classes.")

    def progress(done: int, total: int) -> None:
        if done <= num_images:
            text = f"Running the model: {done} / {num_images} images"
        else:
            text = f"Evaluating layer {done - num_images} / {total - num_images}"
        ctx.progress(done, total, text)

    ctx.progress(0, num_images + int(model.config.num_decoder_layers), "Running the model…")  # type: ignore[attr-defined]
    if dataset is not None:
        return layerwise_ap(model, dataset, num_images, nms_iou, batch_size=8, progress=progress,
                            label_map=label_map)
    return layerwise_ap(model, heldout_split(data_config, num_images), num_images, nms_iou, batch_size=25,
                        progress=progress)


def _inference_job(ctx: WorkContext, model: nn.Module, image: np.ndarray, class_names: list[str]) -> InferenceResult:
    ctx.progress(0, 1, "Running the model…")
    return run_inference(model, image, class_names, capture=False)


class LayerView(AnalysisView):
    """Follows the state's model, result and selected query; its query spin box selects.

    Everything it shows is of the explorer's model: live previews from a training run's weights
    are not drawn here (its AP is measured on the explorer's model, and the two must match), and
    a new model or data source cancels a running job and drops its result when it comes back."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__("Layer by layer", parent)
        self.state = state
        self.result: InferenceResult | None = None
        self.image: np.ndarray | None = None
        self.selected_query = state.selected_query or 0
        self.ap_rows: list[LayerAP] = []
        self.ap_data = ""  # what the AP shown was measured on
        self.file_dataset: FileDataset | None = None  # the open dataset's validation split, resized
        self.file_dataset_name = ""
        self._pending_image: np.ndarray | None = None
        self._generation = 0  # bumped when the model or its data change: older results are dropped

        # --- controls
        self.query_spin = QSpinBox()
        self.query_spin.setRange(0, 0)
        self.query_spin.setToolTip("The query whose box is followed through the decoder")
        self.edge_layer = QComboBox()  # "none", then one entry per decoder layer
        self.edge_layer.setToolTip("D-FINE: the decoder layer whose edge distributions are drawn on the query's "
                                   "box (a bar per bin, as tall as its probability)")
        self.edge_label = QLabel("Edge distributions")
        self.images_spin = QSpinBox()
        self.images_spin.setRange(5, 5000)
        self.images_spin.setValue(100)
        self.images_spin.setSingleStep(50)
        self.images_spin.setToolTip("Images of the chosen data to evaluate")
        self.source = QComboBox()
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.source.setToolTip("Where AP is measured: the toy held-out split or the open dataset's validation split")
        self.iou_spin = QDoubleSpinBox()
        self.iou_spin.setRange(0.05, 0.95)
        self.iou_spin.setSingleStep(0.05)
        self.iou_spin.setValue(NMS_IOU)
        self.iou_spin.setToolTip("NMS IoU threshold (class-wise, torchvision.ops.batched_nms)")
        self.run_button = QPushButton("Compute AP by layer")

        # --- the query's box at every layer (left), AP per layer (right), the query's table below:
        # each side has its own controls, so the view fits beside the image (600 px wide)
        self.canvas = ImageCanvas(colorbar=False)  # boxes only: no attention colour bar
        self.canvas.setMinimumSize(200, 180)
        self.canvas.labels_in_a_row = True  # the boxes of one query: its labels side by side
        self.legend = QLabel(" ")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        query_row = QHBoxLayout()
        query_row.addWidget(QLabel("Query"))
        query_row.addWidget(self.query_spin)
        query_row.addSpacing(12)
        query_row.addWidget(self.edge_label)
        query_row.addWidget(self.edge_layer)
        query_row.addStretch(1)
        self.edge_label.setVisible(False)  # shown for a model with edge distributions
        self.edge_layer.setVisible(False)
        # per edge (left, top, right, bottom): a bar per bin (pairs of points) on an axis spanning the bins
        self.edge_bars = [pg.PlotCurveItem(connect="pairs") for _ in EDGE_NAMES]
        self.edge_axes = [pg.PlotCurveItem() for _ in EDGE_NAMES]
        for item in self.edge_bars + self.edge_axes:
            item.setZValue(14)  # over the boxes, under their labels
            self.canvas.view.addItem(item)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(query_row)
        left_layout.addWidget(self.canvas, 1)
        left_layout.addWidget(self.legend)

        # --- AP per layer, with and without NMS
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(12)  # a long dataset name is elided (its tooltip says it)
        ap_controls = QGridLayout()
        ap_controls.addWidget(QLabel("Data"), 0, 0)
        ap_controls.addWidget(self.source, 0, 1, 1, 3)
        ap_controls.addWidget(QLabel("Images"), 1, 0)
        ap_controls.addWidget(self.images_spin, 1, 1)
        ap_controls.addWidget(QLabel("NMS IoU"), 1, 2)
        ap_controls.addWidget(self.iou_spin, 1, 3)
        ap_controls.addWidget(self.run_button, 2, 0, 1, 4)
        ap_controls.setColumnStretch(1, 1)
        ap_controls.setColumnStretch(3, 1)
        self.ap_plot = pg.PlotWidget(background="#202124")
        self.ap_plot.setMenuEnabled(False)
        self.ap_plot.setTitle("AP by decoder layer")
        self.ap_plot.setLabel("bottom", "decoder layer")
        self.ap_plot.setLabel("left", "AP (0 to 1)")
        self.ap_plot.getAxis("left").enableAutoSIPrefix(False)
        self.ap_plot.setYRange(0, 1, padding=0.05)
        self.ap_plot.setMinimumSize(200, 160)
        self.ap_plot.addLegend(offset=(-4, -4), colCount=2)  # bottom right: AP rises to the top
        blue, orange = "#4f8fe6", "#f58231"
        self.curves = {
            "AP": self.ap_plot.plot([], [], name="AP", pen=pg.mkPen(blue, width=2), symbol="o",
                                    symbolBrush=blue, symbolPen=None),
            "AP_nms": self.ap_plot.plot([], [], name="AP with NMS",
                                        pen=pg.mkPen(blue, width=2, style=Qt.PenStyle.DashLine),
                                        symbol="s", symbolBrush=None, symbolPen=blue),
            "AP50": self.ap_plot.plot([], [], name="AP50", pen=pg.mkPen(orange, width=2), symbol="o",
                                      symbolBrush=orange, symbolPen=None),
            "AP50_nms": self.ap_plot.plot([], [], name="AP50 with NMS",
                                          pen=pg.mkPen(orange, width=2, style=Qt.PenStyle.DashLine),
                                          symbol="s", symbolBrush=None, symbolPen=orange),
        }
        self.ap_summary = QLabel("Press “Compute AP by layer” to evaluate every decoder layer on the held-out split.")
        self.ap_summary.setWordWrap(True)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addLayout(ap_controls)
        right_layout.addWidget(self.ap_plot, 1)
        right_layout.addWidget(self.ap_summary)

        self.table = QTableWidget(0, 6)
        self.table.setHorizontalHeaderLabels(["layer", "class", "score", "box x0, y0, x1, y1 (px)", "IoU with last",
                                              "moved (px)"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(90)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setSizes([500, 500])
        self.splitter.setChildrenCollapsible(False)
        self.rows_splitter = QSplitter(Qt.Orientation.Vertical)  # the pictures above, the table below
        self.rows_splitter.addWidget(self.splitter)
        self.rows_splitter.addWidget(self.table)
        self.rows_splitter.setStretchFactor(0, 3)
        self.rows_splitter.setStretchFactor(1, 1)
        self.rows_splitter.setChildrenCollapsible(False)
        self.body.addWidget(self.rows_splitter, 1)

        self.query_spin.valueChanged.connect(self._on_query_spin)
        self.edge_layer.currentIndexChanged.connect(lambda _: self._draw_query())
        self._update_sources()
        self.source.currentIndexChanged.connect(lambda _: self._invalidate("New data: press “Compute AP by layer”."))
        self.run_button.clicked.connect(self.run_ap)
        for signal in (self.jobFinished, self.jobFailed, self.jobCancelled):
            signal.connect(self._after_job)
        state.modelChanged.connect(self._on_model)
        state.dataSourceChanged.connect(self._on_data_source)
        state.resultChanged.connect(self._on_result)
        state.selectedQueryChanged.connect(self._on_selected_query)

    # --- inputs --------------------------------------------------------------------------------
    @property
    def data_config(self) -> ToyDataConfig:
        """The toy data whose held-out split the AP is measured on: the model's training data."""
        return self.state.data_source.data_config or ToyDataConfig()

    @property
    def on_open_dataset(self) -> bool:
        return self.source.currentIndex() == 1 and self.file_dataset is not None

    def set_dataset(self, dataset: FileDataset | None, name: str = "") -> None:
        """Offer a dataset's validation split (resized as the model infers) next to the toy split,
        and choose it; None takes it away."""
        if dataset is self.file_dataset:
            return
        self.file_dataset = dataset
        self.file_dataset_name = name or "open dataset"
        self._update_sources()
        self.source.setCurrentIndex(1 if dataset is not None else 0)
        self._invalidate("New data: press “Compute AP by layer”.")

    def _update_sources(self) -> None:
        fill_sources(self.source, "toy held-out split", f"{self.file_dataset_name} ({len(self.file_dataset)} images)" if self.file_dataset is not None else None)

    def describe_data(self) -> str:
        """What AP by layer is measured on, in words (the view's "Data: …" note)."""
        if self.on_open_dataset and self.file_dataset is not None:
            return (f"Data: AP by layer on {self.file_dataset_name} ({len(self.file_dataset)} images, resized as "
                    "the model infers; pycocotools against its own annotations). Source: or the toy split.")
        return "Data: AP by layer on the toy held-out split." + (
            " (Source: or the open dataset.)" if self.file_dataset is not None else "")

    def _on_model(self, _loaded: LoadedModel | None) -> None:
        self._invalidate("New model: press “Compute AP by layer”.")

    def _on_data_source(self, _source: object) -> None:
        self._invalidate("New data: press “Compute AP by layer”.")

    def _invalidate(self, message: str) -> None:
        """The model or its data changed: a running job's result would be of the old one."""
        self.cancel_job()
        self._generation += 1
        self._pending_image = None
        self.ap_rows = []
        for curve in self.curves.values():
            curve.setData([], [])
        self.ap_summary.setText(message)

    def _on_result(self, result: InferenceResult | None) -> None:
        if self.state.result_is_preview:
            return  # of the training weights, not of the model whose AP this view measures
        if result is not None and self.state.image is not None:
            self.set_result(result, self.state.image, self.state.selected_query)

    def _on_selected_query(self, query: int | None) -> None:
        if query is not None:
            self.set_selected_query(query)

    def set_result(self, result: InferenceResult, image: np.ndarray, query: int | None = None) -> None:
        """An inference result (with every layer's boxes) and the [H, W, 3] uint8 image it is of;
        ``query`` is followed (default: the one followed so far on the same image, else the best
        scoring: a slot number of another image is another object)."""
        new_image = image is not self.image
        self.result = result
        self.image = image
        if query is None and (new_image or self.selected_query >= result.num_queries):
            query = int(result.scores.argmax())
        if query is not None:
            self.selected_query = int(query)
        self.query_spin.blockSignals(True)
        self.query_spin.setRange(0, max(result.num_queries - 1, 0))
        self.query_spin.setValue(self.selected_query)
        self.query_spin.blockSignals(False)
        self._fill_edge_layers(result)
        if new_image:
            self.canvas.set_image(image)
        self._draw_query()

    def set_image(self, image: np.ndarray) -> bool:
        """Run the model set with :meth:`set_model` on ``image`` (off the GUI thread), then show it."""
        if self.model is None:
            self.show_error("Load or train a model first.")
            return False
        if self.busy:
            self._pending_image = image
            return False
        self._pending_image = None
        generation = self._generation
        return self.run_job(_inference_job, self.model, image, self.class_names,
                            on_done=lambda result: self._on_inferred(result, image, generation))

    def _on_inferred(self, result: InferenceResult, image: np.ndarray, generation: int) -> None:
        if generation == self._generation:  # else the model changed while it ran
            self.set_result(result, image)

    def set_selected_query(self, query: int) -> None:
        self.selected_query = int(query)
        self.query_spin.blockSignals(True)
        self.query_spin.setValue(self.selected_query)
        self.query_spin.blockSignals(False)
        self.when_visible("query", self._draw_query)

    def _on_query_spin(self, query: int) -> None:
        self.selected_query = query
        self._draw_query()
        self.state.set_selected_query(query)

    # --- the query through the layers ----------------------------------------------------------
    def layer_boxes(self) -> np.ndarray | None:
        """[L, 4] xyxy pixels: the selected query's box at every decoder layer, or None."""
        r = self.result
        if r is None or not 0 <= self.selected_query < r.num_queries:
            return None
        return r.layer_boxes_xyxy[:, self.selected_query].numpy()

    def _fill_edge_layers(self, result: InferenceResult) -> None:
        """One entry per decoder layer (and "none") when the result has edge distributions; the
        layer chosen so far is kept, the last one chosen for a new model."""
        edges = result.edge_distributions
        self.edge_label.setVisible(edges is not None)
        self.edge_layer.setVisible(edges is not None)
        if edges is None:
            return
        wanted = ["none"] + [f"L{i + 1}" for i in range(edges.num_layers)]
        if [self.edge_layer.itemText(i) for i in range(self.edge_layer.count())] == wanted:
            return
        self.edge_layer.blockSignals(True)
        self.edge_layer.clear()
        self.edge_layer.addItems(wanted)
        self.edge_layer.setCurrentIndex(len(wanted) - 1)
        self.edge_layer.blockSignals(False)

    def edge_layer_shown(self) -> int | None:
        """The decoder layer (0-based) whose edge distributions are drawn, or None."""
        r = self.result
        if r is None or r.edge_distributions is None or self.edge_layer.currentIndex() <= 0:
            return None
        return min(self.edge_layer.currentIndex() - 1, r.edge_distributions.num_layers - 1)

    def _draw_edges(self, colors: list[QColor]) -> str:
        """Draw the selected query's edge distributions at the chosen layer on the canvas (nothing
        without them); returns the legend's words for them."""
        layer, r, q = self.edge_layer_shown(), self.result, self.selected_query
        if layer is None or r is None or r.edge_distributions is None or not 0 <= q < r.num_queries:
            for item in self.edge_bars + self.edge_axes:
                item.setData([], [])
            return ""
        edges = r.edge_distributions
        positions, probabilities = (t.numpy() for t in edges.profile(layer, q))  # [4, N] pixels, [4, N]
        x0, y0, x1, y1 = (float(v) for v in edges.expected_edges(layer)[q])
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        floor = EDGE_MIN_HEIGHT * max(r.image_size)  # a tiny box's bars still show
        color = colors[layer]
        for e, (bars, axis) in enumerate(zip(self.edge_bars, self.edge_axes)):
            along, p = positions[e], probabilities[e]
            if e in (0, 2):  # left, right: bins along x on the box's middle row
                length = p * max(EDGE_HEIGHT * (y1 - y0), floor) * EDGE_DIRECTIONS[e]
                xs, ys = np.repeat(along, 2), np.stack([np.full_like(along, cy), cy + length], 1).ravel()
                axis.setData([along.min(), along.max()], [cy, cy])
            else:  # top, bottom: bins along y on the box's middle column
                length = p * max(EDGE_HEIGHT * (x1 - x0), floor) * EDGE_DIRECTIONS[e]
                xs, ys = np.stack([np.full_like(along, cx), cx + length], 1).ravel(), np.repeat(along, 2)
                axis.setData([cx, cx], [along.min(), along.max()])
            bars.setData(xs, ys, pen=pg.mkPen(color, width=2))
            axis.setPen(pg.mkPen(QColor(color).lighter(130), width=1, style=Qt.PenStyle.DotLine))
        peaks = edges.peaks(layer)[q]
        return (f"<br>Edge distributions at L{layer + 1} (bars: each bin's probability; peak "
                + ", ".join(f"{name} {float(v):.2f}" for name, v in zip(EDGE_NAMES, peaks)) + ")")

    def _draw_query(self) -> None:
        r, q = self.result, self.selected_query
        boxes = self.layer_boxes()
        if r is None or boxes is None:
            self.canvas.set_boxes(np.zeros((0, 4)), [], [])
            self.canvas.set_links([])
            self._draw_edges([])
            self.table.setRowCount(0)
            return
        layers = r.num_layers
        colors = layer_colors(layers)
        texts = [f"L{i + 1}" for i in range(layers)]
        # the last layer's label first; converged boxes put the others in a row beside it
        self.canvas.set_boxes(boxes, texts, colors, priority=np.arange(layers))
        shown = np.ones(layers, dtype=bool)
        edge_layer = self.edge_layer_shown()
        self.canvas.style_boxes(shown, np.zeros(layers, dtype=bool), layers - 1 if edge_layer is None else edge_layer)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # [L, 2] (x, y) pixels
        self.canvas.set_links([((float(a[0]), float(a[1])), (float(b[0]), float(b[1])), colors[i + 1])
                               for i, (a, b) in enumerate(itertools.pairwise(centres))])
        edge_words = self._draw_edges(colors)
        self.legend.setText(f"Query {q}: " + " ".join(
            f"<span style='color:{c.name()}'>■</span> L{i + 1}" for i, c in enumerate(colors))
            + " &nbsp; (dotted: path of the box centre)" + edge_words)
        probs = r.layer_probs[:, q]  # [L, K + 1]
        scores, labels = probs[:, :-1].max(-1)
        iou_last = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes[-1:]))[:, 0].numpy()  # [L]
        moved = np.r_[0.0, np.linalg.norm(np.diff(centres, axis=0), axis=1)]  # [L] centre shift
        self.table.setRowCount(layers)
        for i in range(layers):
            cells = [f"L{i + 1}", r.class_names[int(labels[i])] if int(labels[i]) < len(r.class_names) else "?",
                     f"{float(scores[i]):.3f}", ", ".join(f"{v:.0f}" for v in boxes[i]), f"{iou_last[i]:.3f}",
                     "" if i == 0 else f"{moved[i]:.1f}"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:  # a tint of the layer's colour (text stays readable)
                    tint = QColor(colors[i])
                    tint.setAlpha(120)
                    item.setBackground(tint)
                self.table.setItem(i, col, item)
        self.table.resizeColumnsToContents()
        # every layer's row in sight (up to 6): the pictures above give way
        shown = min(layers, 6)
        self.table.setMinimumHeight(self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
                                    + sum(self.table.rowHeight(i) for i in range(shown)))

    def query_rows(self) -> list[dict[str, Any]]:
        """The selected query's prediction at every layer, as flat rows."""
        r, boxes = self.result, self.layer_boxes()
        if r is None or boxes is None:
            return []
        probs = r.layer_probs[:, self.selected_query]
        scores, labels = probs[:, :-1].max(-1)
        rows = []
        for i in range(r.num_layers):
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            rows.append({"query": self.selected_query, "layer": i + 1, "class": r.class_names[int(labels[i])]
                         if int(labels[i]) < len(r.class_names) else str(int(labels[i])),
                         "score": float(scores[i]), "x0": x0, "y0": y0, "x1": x1, "y1": y1})
        return rows

    # --- AP per layer ---------------------------------------------------------------------------
    def run_ap(self) -> bool:
        """Evaluate every decoder layer on ``images_spin`` held-out images, off the GUI thread."""
        if self.model is None:
            self.show_error("Load or train a model first.")
            return False
        generation = self._generation
        dataset = self.file_dataset if self.on_open_dataset else None
        count = self.images_spin.value() if dataset is None else min(self.images_spin.value(), len(dataset))
        data = f"{count} images of {self.file_dataset_name}" if dataset is not None \
            else f"{count} toy held-out images"
        return self.run_job(_ap_job, self.model, self.data_config, self.images_spin.value(),
                            self.iou_spin.value(), dataset, self.class_names,
                            on_done=lambda rows: self._on_ap(rows, generation, data), button=self.run_button)

    def _on_ap(self, rows: list[LayerAP], generation: int, data: str = "") -> None:
        if generation == self._generation:  # else the model or the data changed while it ran
            self.show_ap(rows, data)

    def show_ap(self, rows: list[LayerAP], data: str = "") -> None:
        """Plot AP per layer; ``data`` says what it was measured on."""
        self.ap_rows = list(rows)
        self.ap_data = data
        xs = np.array([r.layer for r in rows], dtype=float)
        for key, curve in self.curves.items():
            curve.setData(xs, np.array([r.as_dict()[key] for r in rows], dtype=float))
        self.ap_plot.getAxis("bottom").setTicks([[(r.layer, f"L{r.layer}") for r in rows]])
        if len(rows):
            self.ap_plot.setXRange(0.7, len(rows) + 0.3, padding=0)
            self.ap_plot.setYRange(0, 1, padding=0.05)  # AP spans 0 to 1: small differences stay small
        gains = ", ".join(f"L{r.layer} {round(r.ap_nms - r.ap, 3) + 0.0:+.3f}" for r in rows)
        on = f"On {data}: " if data else ""
        duplicates = ", ".join(f"L{r.layer} {r.duplicates:.2f}" for r in rows if math.isfinite(r.duplicates))
        duplicates = (f" Duplicates (kept at score 0.3 and repeating a better box of the class, IoU 0.5): "
                      f"{duplicates}." if duplicates else "")
        self.ap_summary.setText(f"{on}AP change from NMS (IoU {self.iou_spin.value():.2f}): {gains}.{duplicates} "
                                "(In the paper, NMS helps the early layers and stops helping at the last: "
                                "the decoder's self-attention learns to suppress duplicates.)")

    def _after_job(self, *_: Any) -> None:
        if self._pending_image is not None:
            self.set_image(self._pending_image)

    # --- export ---------------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        """Rows: the selected query's box per layer ("section" = "query"), then AP per layer
        ("section" = "ap")."""
        rows = [{"section": "query", **r} for r in self.query_rows()]
        rows += [{"section": "ap", **r.as_dict(), "data": self.ap_data} for r in self.ap_rows]
        return rows or None

    def shutdown(self) -> None:
        """Cancel and wait for a running job (call before closing)."""
        self.cancel_job()
        self.wait_job(30000)
