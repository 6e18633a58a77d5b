"""Deformable attention, seen working: where a Deformable DETR query (or encoder pixel) samples
the image, beside where a dense DETR looks for the same image and query slot.

Left: the image with the selected query's reference point and its sampling points in the chosen
decoder layer: one symbol per feature level, sized and coloured by attention weight, toggled per
level and per head, with the box that layer predicts and the path of the reference point through
the layers before it. Click the image: the encoder's sampling points for that pixel, per level;
for RT-DETR and its kin, whose encoder attends densely within its top level only (AIFI), where the
token under the click attends on that level, per head or their mean, the clicked cell outlined.
Right: a dense model's cross-attention heatmap for the same image and query slot (the model the
user had open before, else the bundled checkpoint).

Everything drawn comes from the forward pass's own sampling locations (``InferenceResult.deformable``)
and encoder attention weights (``InferenceResult.encoder_self``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from detr_core.analysis.capture import InferenceResult, run_inference
from detr_core.analysis.deformable_capture import DeformableSampling
from detr_core.analysis.encoder_self_attention import EncoderSelfMaps
from detr_core.analysis.heatmaps import cross_attention_map
from detr_core.model.registry import attention_kind

from ..help import VIEW_HELP
from ..state import AppState, LoadedModel
from ..workers import WorkContext
from .base import AnalysisView
from .flow import Fill, Flow, labelled, side_by_side, text_pane

BACKGROUND = "#202124"
LEVEL_SYMBOLS = ("o", "s", "t", "d", "h", "star", "p", "x")
OUTLINE = pg.mkPen(0, 0, 0, 140, width=1)
SYMBOL_GLYPHS = {"o": "●", "s": "■", "t": "▼", "d": "◆", "h": "⬢", "star": "★", "p": "⬟", "x": "✕"}
MODE_QUERY, MODE_PIXEL = "query", "pixel"
NO_ENCODER_ATTENTION = ("This model's encoder has no attention to show at a pixel: no sampling points, and no "
                        "self-attention captured (its encoder is convolutional only, or it has none).")
VIEW_HELP.setdefault("Deformable attention", (
    "Deformable DETR (Zhu et al., 2021) replaces attention over every pixel with a few learned sampling "
    "points per head and feature level, placed around a reference point.\n\n"
    "Left: for the selected query and decoder layer, its reference point (+), its sampling points (one "
    "symbol per level; larger and brighter = more attention weight) and the box that layer predicts; the "
    "dotted path shows how the reference moved through earlier layers. Step the layer slider to watch it "
    "refine. Tick levels and heads on and off. Click the image to see the encoder's sampling points for "
    "that pixel.\n\nRT-DETR (and RT-DETRv2, D-FINE, DEIMv2, the rt_detr preset) has no sampling points in "
    "its encoder: its hybrid encoder runs plain self-attention (AIFI) within the coarsest level only, then "
    "fuses the levels with convolutions. For these models a click shows where the token under it attends "
    "among that level's cells (one head, or the mean of all), the clicked cell outlined.\n\nRight: a "
    "dense DETR's cross-attention heatmap for the same image and query slot (the plain model you had open "
    "before, else the bundled one)."))


def _dense_inference(ctx: WorkContext, source: LoadedModel | Path, image: np.ndarray
                     ) -> tuple[LoadedModel, InferenceResult]:
    """The dense comparison model (opened here when it is a file) and its result on ``image``."""
    if isinstance(source, Path):
        from detr_core.checkpoint import load_checkpoint

        ckpt = load_checkpoint(source)
        if attention_kind(ckpt.model_config) != "dense":
            raise ValueError(f"{source.name} is not a dense DETR")
        source = LoadedModel(ckpt.build_model().eval(), ckpt.class_names, "bundled checkpoint", source, ckpt)
    return source, run_inference(source.model, image, source.class_names, capture=True)


class DeformableView(AnalysisView):
    """Sampling points of the state's deformable model, and a dense model's heatmap beside them."""

    openRequested = Signal()  # "Open a model…" on the page shown for a dense model
    trainRequested = Signal()  # "Train one" there: the training panel with the deformable preset

    def __init__(self, state: AppState, bundled_dense: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Deformable attention", parent)
        self.state = state
        self.bundled_dense = bundled_dense
        self.dense_model: LoadedModel | None = None  # the comparison model (dense attention)
        self.dense_result: InferenceResult | None = None
        self._dense_key: tuple[int, int] | None = None  # (id of its model, id of the image)
        self.mode = MODE_QUERY
        self.pixel: tuple[float, float] | None = None  # (y, x) image pixels, in pixel mode

        self.pages = QStackedWidget()
        self.body.addWidget(Fill(self.pages), 1)
        # page 0: the open model is dense
        self.dense_page = QWidget()
        dp = QVBoxLayout(self.dense_page)
        self.dense_note = QLabel(
            "This view shows a Deformable DETR at work: each query samples a few learned points around "
            "a reference point on every feature level, instead of attending to every pixel.\n\n"
            "The open model uses dense attention: open or train a deformable model.")
        self.dense_note.setWordWrap(True)
        self.open_button = QPushButton("Open a model…")
        self.train_button = QPushButton("Train a deformable model")
        self.open_button.clicked.connect(self.openRequested)
        self.train_button.clicked.connect(self.trainRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.train_button)
        buttons.addStretch(1)
        dp.addWidget(self.dense_note)
        dp.addLayout(buttons)
        dp.addStretch(1)
        self.pages.addWidget(self.dense_page)

        # page 1: the sampling points. The dock is wide and short: the two pictures on the left,
        # the controls and the words beside them (the words scroll in their pane when long)
        self.mode_box = QComboBox()
        self.mode_box.addItems(["Selected query (decoder)", "Clicked pixel (encoder)"])
        self.mode_box.setToolTip("Show the sampling points of the selected query (decoder) or of a pixel you "
                                 "click (encoder)")
        self.mode_box.currentIndexChanged.connect(lambda i: self.set_mode(MODE_QUERY if i == 0 else MODE_PIXEL))
        self.layer_slider = QSlider(Qt.Orientation.Horizontal)
        self.layer_slider.setMinimum(0)
        self.layer_slider.setPageStep(1)
        self.layer_slider.setMinimumWidth(60)
        self.layer_slider.valueChanged.connect(self._on_layer)
        self.layer_label = QLabel("")
        self.pixel_level = QComboBox()
        self.pixel_level.setToolTip("The feature level whose pixel (token) under the click is shown")
        self.pixel_level.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.dense_pairing = QComboBox()
        self.dense_pairing.addItems(["dense: same query slot", "dense: query with the most overlapping box"])
        self.dense_pairing.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.dense_pairing.setMinimumContentsLength(20)
        self.dense_pairing.setToolTip("Which of the dense model's queries to show beside: the same slot number, "
                                      "or the one whose final box overlaps this query's box most (slots of two "
                                      "different models need not find the same object)")
        self.dense_pairing.currentIndexChanged.connect(lambda _: self.redraw())
        self.pixel_level.currentIndexChanged.connect(lambda _: self.redraw())
        self.encoder_head = QComboBox()  # the encoder self-attention's head (AIFI), or their mean
        self.encoder_head.setToolTip("One head of the encoder's self-attention, or the mean over all heads")
        self.encoder_head.currentIndexChanged.connect(lambda _: self.redraw())
        controls = Flow()
        controls.addWidget(self.mode_box)
        controls.addWidget(side_by_side(self.layer_label, self.layer_slider))
        self.pixel_level_choice = labelled("clicked pixel on", self.pixel_level)
        self.encoder_head_choice = labelled("head", self.encoder_head)
        controls.addWidget(self.pixel_level_choice)
        controls.addWidget(self.encoder_head_choice)
        controls.addWidget(self.dense_pairing)
        self.level_row = Flow()  # "Levels", then a box per level
        self.head_row = Flow()  # "Heads", then a box per head
        self.levels_label = QLabel("Levels")
        self.heads_label = QLabel("Heads")
        self.level_row.addWidget(self.levels_label)
        self.head_row.addWidget(self.heads_label)
        self.level_boxes: list[QCheckBox] = []
        self.head_boxes: list[QCheckBox] = []

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(BACKGROUND)
        self.graphics.setMinimumSize(200, 120)
        self.graphics.ci.layout.setSpacing(4)
        self.graphics.ci.setContentsMargins(2, 2, 2, 2)
        self.left = self.graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True, enableMenu=False)
        self.right = self.graphics.addViewBox(row=0, col=1, lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.dense_image_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item = pg.ImageItem(axisOrder="row-major")
        self.heat_item.setOpacity(0.65)
        self.left.addItem(self.image_item)
        self.right.addItem(self.dense_image_item)
        self.right.addItem(self.heat_item)
        self.path_item = pg.PlotDataItem(pen=pg.mkPen("#e8eaed", width=1, style=Qt.PenStyle.DotLine),
                                         symbol="o", symbolSize=5, symbolBrush="#e8eaed", symbolPen=None)
        self.box_item = pg.PlotCurveItem(pen=pg.mkPen("#ffd54f", width=2))
        self.lines_item = pg.PlotCurveItem(pen=pg.mkPen(255, 255, 255, 60, width=1), connect="pairs")
        self.points_item = pg.ScatterPlotItem(pxMode=True)
        self.reference_item = pg.ScatterPlotItem(pxMode=True, symbol="+", size=22,
                                                 pen=pg.mkPen("#ffffff", width=3), brush=None)
        self.dense_box_item = pg.PlotCurveItem(pen=pg.mkPen("#ffd54f", width=2))
        # the encoder self-attention (AIFI) from the clicked cell, and that cell's outline
        self.encoder_heat_item = pg.ImageItem(axisOrder="row-major")
        self.encoder_heat_item.setOpacity(0.65)
        self.cell_item = pg.PlotCurveItem(pen=pg.mkPen("#00e5ff", width=3))
        for item in (self.encoder_heat_item, self.cell_item, self.path_item, self.box_item, self.lines_item,
                     self.points_item, self.reference_item):
            self.left.addItem(item)
        self.right.addItem(self.dense_box_item)
        self.left.scene().sigMouseClicked.connect(self._on_click)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.dense_caption = QLabel("")
        self.dense_caption.setWordWrap(True)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        words_area = text_pane(self.caption, self.dense_caption, self.legend)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(controls)
        side_layout.addWidget(self.level_row)
        side_layout.addWidget(self.head_row)
        side_layout.addWidget(words_area, 1)
        page = QSplitter(Qt.Orientation.Horizontal)
        page.setChildrenCollapsible(False)
        page.addWidget(self.graphics)
        page.addWidget(side)
        page.setSizes([600, 400])  # two square pictures need about twice the dock's height
        self.pages.addWidget(page)
        self.colormap = pg.colormap.get("plasma")

        self.jobFailed.connect(self._dense_failed)
        state.modelChanged.connect(self._on_model)
        state.resultChanged.connect(self._on_result)
        state.imageChanged.connect(lambda _: self._refresh_dense())
        state.selectedQueryChanged.connect(lambda _: self._draw_later())
        state.layerChanged.connect(self._on_state_layer)
        state.encoderPointChanged.connect(self._on_state_point)
        self._on_model(state.model)

    # --- following the state ---------------------------------------------------------------
    @property
    def sampling(self) -> DeformableSampling | None:
        r = self.state.result
        return r.deformable if r is not None else None

    @property
    def encoder_self(self) -> EncoderSelfMaps | None:
        """The result's encoder self-attention on its top level (RT-DETR's AIFI), if it has one."""
        r = self.state.result
        return r.encoder_self if r is not None else None

    @property
    def shows_encoder_self(self) -> bool:
        """A clicked pixel shows the encoder's self-attention (a hybrid encoder has no sampling points)."""
        return self.mode == MODE_PIXEL and self.encoder_self is not None

    @property
    def is_deformable(self) -> bool:
        """The open model captures sampling points, or the result shown has them (a live preview of
        one in training)."""
        m = self.state.model
        return self.sampling is not None or (m is not None and attention_kind(m.config) == "sampling")

    def _on_model(self, loaded: LoadedModel | None) -> None:
        if loaded is not None and attention_kind(loaded.config) == "dense" and loaded.trained is None:
            self.dense_model = loaded  # the dense model to compare with, once a deformable one is open
            self._dense_key = None
        self.pages.setCurrentIndex(1 if self.is_deformable else 0)
        self._on_result(self.state.result)

    def _on_result(self, result: InferenceResult | None) -> None:
        self.pages.setCurrentIndex(1 if self.is_deformable else 0)
        self._build_toggles()
        self._refresh_dense()
        self._draw_later()

    def _on_state_point(self, point: tuple[float, float] | None) -> None:
        """A point clicked on the image elsewhere (the main picture) is this view's pixel too."""
        if point is not None and point != self.pixel:
            self.pixel = point
            if self.mode == MODE_PIXEL:
                self._draw_later()

    def _on_state_layer(self, layer: int) -> None:
        s = self.sampling
        if s is not None and self.mode == MODE_QUERY and 0 <= layer < self.state.layer_count:
            self.layer_slider.setValue(layer)

    def _draw_later(self) -> None:
        self.when_visible("draw", self.redraw)

    def _build_toggles(self) -> None:
        s = self.sampling
        levels = s.num_levels if s is not None else 0
        heads = s.num_heads if s is not None else 0
        if len(self.level_boxes) != levels:
            for box in self.level_boxes:
                self.level_row.removeWidget(box)
                box.deleteLater()
            self.level_boxes = []
            self.pixel_level.blockSignals(True)
            self.pixel_level.clear()
            for i in range(levels):
                h, w = s.shapes[i]  # type: ignore[union-attr]
                box = QCheckBox(f"{SYMBOL_GLYPHS[LEVEL_SYMBOLS[i % len(LEVEL_SYMBOLS)]]} {i + 1}")
                box.setToolTip(f"Level {i + 1}: {w}×{h} cells")  # short: the toggles share a narrow pane
                box.setChecked(True)
                box.toggled.connect(lambda _: self.redraw())
                self.level_row.addWidget(box)
                self.level_boxes.append(box)
                self.pixel_level.addItem(f"level {i + 1} ({w}×{h})")
            self.pixel_level.blockSignals(False)
        if len(self.head_boxes) != heads:
            for box in self.head_boxes:
                self.head_row.removeWidget(box)
                box.deleteLater()
            self.head_boxes = []
            for i in range(heads):
                box = QCheckBox(str(i + 1))
                box.setChecked(True)
                box.toggled.connect(lambda _: self.redraw())
                self.head_row.addWidget(box)
                self.head_boxes.append(box)
        self.levels_label.setVisible(bool(self.level_boxes))
        self.heads_label.setVisible(bool(self.head_boxes))
        enc = self.encoder_self
        names = [] if enc is None else ["mean of heads"] + [f"{i + 1}" for i in range(enc.num_heads)]
        if [self.encoder_head.itemText(i) for i in range(self.encoder_head.count())] != names:
            self.encoder_head.blockSignals(True)
            self.encoder_head.clear()
            self.encoder_head.addItems(names)
            self.encoder_head.blockSignals(False)
        self._update_slider()

    def _update_slider(self) -> None:
        s, enc = self.sampling, self.encoder_self
        n = 0
        if self.shows_encoder_self and enc is not None:
            n = enc.num_layers
        elif s is not None:
            n = s.decoder_points.shape[0] if self.mode == MODE_QUERY else s.num_encoder_layers
        self.layer_slider.blockSignals(True)
        self.layer_slider.setMaximum(max(n - 1, 0))
        if self.mode == MODE_QUERY and 0 <= self.state.layer < n:
            self.layer_slider.setValue(self.state.layer)
        elif self.layer_slider.value() >= n:
            self.layer_slider.setValue(max(n - 1, 0))
        self.layer_slider.blockSignals(False)
        kind = "decoder" if self.mode == MODE_QUERY else "encoder"
        self.layer_label.setText(f"{kind} layer {self.layer_slider.value() + 1} of {n}")
        # the encoder self-attention lives on one level, and its heads are chosen in one list
        dense_encoder = self.shows_encoder_self
        self.pixel_level_choice.setVisible(self.mode == MODE_PIXEL and not dense_encoder)
        self.encoder_head_choice.setVisible(dense_encoder)
        self.level_row.setVisible(not dense_encoder)
        self.head_row.setVisible(not dense_encoder)

    # --- choices ---------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.mode_box.blockSignals(True)
        self.mode_box.setCurrentIndex(0 if mode == MODE_QUERY else 1)
        self.mode_box.blockSignals(False)
        self._update_slider()
        self.redraw()

    def set_layer(self, layer: int) -> None:
        self.layer_slider.setValue(layer)

    def set_level_visible(self, level: int, on: bool) -> None:
        self.level_boxes[level].setChecked(on)

    def set_head_visible(self, head: int, on: bool) -> None:
        self.head_boxes[head].setChecked(on)

    def show_pixel(self, y: float, x: float) -> None:
        """The encoder's sampling (or self-attention) for the pixel at (y, x) of the image; the
        state's clicked point follows (the main picture marks it)."""
        self.pixel = (float(y), float(x))
        self.set_mode(MODE_PIXEL)
        self.state.set_encoder_point(self.pixel)

    def set_encoder_head(self, head: int | None) -> None:
        """The encoder self-attention's head shown (None: the mean over heads)."""
        self.encoder_head.setCurrentIndex(0 if head is None else head + 1)

    @property
    def encoder_head_index(self) -> int | None:
        """The encoder self-attention's head shown, None for the mean over heads."""
        i = self.encoder_head.currentIndex()
        return None if i <= 0 else i - 1

    def encoder_map(self) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The encoder self-attention drawn now: the [h, w] map from the clicked cell (one head or
        the mean over heads, in the chosen layer) and that cell (row, column); None when none is."""
        enc = self.encoder_self
        if not self.shows_encoder_self or enc is None or self.pixel is None:
            return None
        maps = enc.at(*self.pixel)  # [L, heads, h, w]
        layer = min(self.layer_slider.value(), enc.num_layers - 1)
        head = self.encoder_head_index
        heat = maps[layer].mean(0) if head is None else maps[layer, min(head, enc.num_heads - 1)]
        return heat.numpy(), enc.cell_at(*self.pixel)

    def _on_layer(self, value: int) -> None:
        if self.mode == MODE_QUERY and self.state.result is not None:
            self.state.set_layer(value)  # the attention panel and canvas follow the same layer
        self._update_slider()
        self.redraw()

    def _on_click(self, event: Any) -> None:
        if self.state.image is None or self.sampling is None:
            return
        p = self.left.mapSceneToView(event.scenePos())
        h, w = self.state.image.shape[:2]
        if 0 <= p.x() < w and 0 <= p.y() < h:
            self.show_pixel(p.y(), p.x())

    @property
    def query(self) -> int | None:
        r = self.state.result
        if r is None:
            return None
        q = self.state.selected_query
        return q if q is not None else int(torch.argmax(r.scores))

    # --- drawing ---------------------------------------------------------------------------
    def shown_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(points [N, 2] (x, y), weights [N], level [N], head [N]) drawn now, or None."""
        s = self.sampling
        if s is None:
            return None
        layer = self.layer_slider.value()
        if self.mode == MODE_QUERY:
            q = self.query
            if q is None:
                return None
            pts, wts = s.decoder_points[layer, q], s.decoder_weights[layer, q]  # [H, L, P, 2], [H, L, P]
        else:
            if self.pixel is None or s.num_encoder_layers == 0:
                return None
            points, weights, _ = s.encoder_at(*self.pixel, level=max(self.pixel_level.currentIndex(), 0))
            pts, wts = points[layer], weights[layer]
        heads, levels, n_points = wts.shape
        hh, ll, _ = np.meshgrid(np.arange(heads), np.arange(levels), np.arange(n_points), indexing="ij")
        keep = np.zeros(wts.shape, dtype=bool)
        for h in range(heads):
            for lv in range(levels):
                keep[h, lv] = self.head_boxes[h].isChecked() and self.level_boxes[lv].isChecked()
        return pts.numpy()[keep], wts.numpy()[keep], ll[keep], hh[keep]

    def redraw(self) -> None:
        s, image = self.sampling, self.state.image
        if s is None or image is None or not self.is_deformable:
            for item in (self.points_item, self.reference_item):
                item.setData([])
            for item in (self.path_item, self.box_item, self.lines_item, self.cell_item):
                item.setData([], [])
            self.encoder_heat_item.clear()
            return
        if id(image) != getattr(self, "_image_id", None):
            self._image_id = id(image)
            self.image_item.setImage(image, levels=(0, 255))
            self.dense_image_item.setImage(image, levels=(0, 255))
            for box in (self.left, self.right):
                box.setRange(QRectF(0, 0, image.shape[1], image.shape[0]), padding=0.02)
        shown = self.shown_points()
        layer = self.layer_slider.value()
        r = self.state.result
        assert r is not None
        if self.shows_encoder_self:
            self._draw_encoder_self()
            self._draw_dense()
            return
        self.encoder_heat_item.clear()
        self.cell_item.setData([], [])
        if shown is None and self.mode == MODE_PIXEL and s.num_encoder_layers == 0:
            self.points_item.setData([])
            self.reference_item.setData([])
            self.lines_item.setData([], [])
            self.caption.setText(NO_ENCODER_ATTENTION)
        elif shown is None:
            self.points_item.setData([])
            self.reference_item.setData([])
            self.lines_item.setData([], [])
            self.caption.setText("Click a pixel of the image." if self.mode == MODE_PIXEL else "")
        else:
            pts, wts, lvl, _ = shown
            peak = float(wts.max()) if len(wts) else 1.0
            rel = wts / max(peak, 1e-9)
            colors = self.colormap.map(rel, mode="qcolor")
            sizes = 4 + 12 * np.sqrt(rel)
            spots = [{"pos": (float(p[0]), float(p[1])), "size": float(sz), "brush": c, "pen": OUTLINE,
                      "symbol": LEVEL_SYMBOLS[int(lv) % len(LEVEL_SYMBOLS)]}
                     for p, sz, c, lv in zip(pts, sizes, colors, lvl)]
            self.points_item.setData(spots)
            if self.mode == MODE_QUERY:
                q = self.query
                ref = s.decoder_references[layer, q].numpy()
            else:
                level = max(self.pixel_level.currentIndex(), 0)
                _, cy, cx = s.cell_centre(s.token_at(*self.pixel, level=level))  # type: ignore[misc]
                ref = np.array([cx, cy])
            self.reference_item.setData([{"pos": (float(ref[0]), float(ref[1]))}])
            lines = np.repeat(ref[None], len(pts), 0)
            xy = np.stack([lines, pts], 1).reshape(-1, 2)
            self.lines_item.setData(xy[:, 0], xy[:, 1])
        if self.mode == MODE_QUERY and self.query is not None:
            q = self.query
            refs = s.decoder_references[: layer + 1, q].numpy()
            self.path_item.setData(refs[:, 0], refs[:, 1])
            self._draw_box(self.box_item, r.layer_boxes_xyxy[layer, q].numpy())
            label = r.class_names[int(r.layer_probs[layer, q, :-1].argmax())]
            score = float(r.layer_probs[layer, q, :-1].max())
            self.caption.setText(
                f"Deformable: query {q} in decoder layer {layer + 1} ({label}, {score:.2f}) reads "
                f"{shown[0].shape[0] if shown else 0} points: + its reference point, the dotted path where it "
                f"was in earlier layers, yellow the box this layer predicts.")
        else:
            self.path_item.setData([], [])
            self.box_item.setData([], [])
            if shown is not None and self.pixel is not None:
                y, x = self.pixel
                self.caption.setText(f"Deformable encoder layer {layer + 1}: the pixel at ({x:.0f}, {y:.0f}) on "
                                     f"level {self.pixel_level.currentIndex() + 1} reads {len(shown[0])} points.")
        self.legend.setText(
            "Points: one symbol per level (" + ", ".join(
                f"{SYMBOL_GLYPHS[LEVEL_SYMBOLS[i % len(LEVEL_SYMBOLS)]]} level {i + 1}" for i in range(s.num_levels))
            + "), size and colour by attention weight (bright and large = more weight), relative to the "
            "heaviest point shown.")
        self._draw_dense()

    def _draw_encoder_self(self) -> None:
        """The clicked cell's encoder self-attention over the top level, the cell outlined."""
        for item in (self.points_item, self.reference_item):
            item.setData([])
        for item in (self.path_item, self.box_item, self.lines_item):
            item.setData([], [])
        enc, drawn = self.encoder_self, self.encoder_map()
        assert enc is not None
        h, w = enc.shape
        where = (f"level {enc.level + 1} of {enc.num_levels}, the coarsest: {w}×{h} cells of {enc.stride} px "
                 "of the model's input")
        self.legend.setText(
            f"Colour: the attention weight from the outlined cell to every cell of {where}; brighter = more, "
            "relative to the heaviest cell. The encoder attends only within this level (AIFI); convolutions "
            "then carry it to the finer levels the decoder samples."
            + (" Padding cells are attended to as black pixels (this model passes no padding mask)."
               if enc.padded is not None else ""))
        if drawn is None:
            self.encoder_heat_item.clear()
            self.cell_item.setData([], [])
            self.caption.setText("Click a pixel of the image: where the encoder token under it attends.")
            return
        heat, (i, j) = drawn
        self.encoder_heat_item.setImage(heat, levels=(0.0, max(float(heat.max()), 1e-9)),
                                        lut=self.colormap.getLookupTable(nPts=256))
        self.encoder_heat_item.setRect(0, 0, enc.extent[1], enc.extent[0])
        x0, y0, x1, y1 = enc.cell_box(i, j)
        self.cell_item.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
        layer = min(self.layer_slider.value(), enc.num_layers - 1)
        head = self.encoder_head_index
        pi, pj = divmod(int(np.argmax(heat)), w)
        peak = float(heat.max())
        y, x = self.pixel  # type: ignore[misc]
        heads = f"mean of its {enc.num_heads} heads" if head is None else f"head {head + 1} of {enc.num_heads}"
        self.caption.setText(
            f"Encoder self-attention (AIFI), layer {layer + 1} of {enc.num_layers}, {heads}"
            f": where the token at ({x:.0f}, {y:.0f}), cell (row {i + 1}, column {j + 1}), attends among the "
            f"{h * w} cells of its level. Heaviest: cell (row {pi + 1}, column {pj + 1}), {peak:.3g}, "
            f"{peak * h * w:.1f}× an even spread (1/{h * w}); on itself {float(heat[i, j]):.3g}.")

    @staticmethod
    def _draw_box(item: pg.PlotCurveItem, xyxy: np.ndarray) -> None:
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        item.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])

    # --- the dense model beside it -------------------------------------------------------------
    def _refresh_dense(self) -> None:
        """Run the dense model on the current image (off the GUI thread) when either changed; the
        bundled checkpoint is opened there too when no dense model was open before."""
        if not self.is_deformable or self.state.image is None:
            return
        source: LoadedModel | Path | None = self.dense_model
        if source is None and self.bundled_dense is not None and self.bundled_dense.is_file():
            source = self.bundled_dense
        if source is None:
            self.dense_result = None
            self.dense_caption.setText("No dense model to compare with: open a plain DETR checkpoint once and "
                                       "it is kept here.")
            return
        key = (id(source.model) if isinstance(source, LoadedModel) else id(source), self.state.image_id)
        if key == self._dense_key:
            return
        if self.busy:
            self.cancel_job()
            self.wait_job()
        self._dense_key = key
        if not self.run_job(_dense_inference, source, self.state.image, on_done=self._dense_done):
            self._dense_key = None

    def _dense_done(self, done: tuple[LoadedModel, InferenceResult]) -> None:
        loaded, self.dense_result = done
        if self.dense_model is None:
            self.dense_model = loaded
            self._dense_key = (id(loaded.model), self._dense_key[1] if self._dense_key else None)
        self.redraw()

    def _dense_failed(self, message: str) -> None:
        if self.dense_model is None:  # the bundled file: do not try it again
            self.bundled_dense = None
            self.dense_caption.setText(f"The bundled dense model could not be opened: {message}")

    def _draw_dense(self) -> None:
        r, dense = self.dense_result, self.dense_model
        q = self.query if self.mode == MODE_QUERY else None
        paired = "slot"
        if r is not None and q is not None and self.dense_pairing.currentIndex() == 1 and self.state.result is not None:
            from torchvision.ops import box_iou

            mine = self.state.result.layer_boxes_xyxy[self.layer_slider.value(), q][None]
            # the best overlap among confident queries (a low-score slot may sit on the same object)
            q, paired = int((box_iou(mine, r.boxes_xyxy)[0] * r.scores).argmax()), "box"
        if r is None or r.cross_attention is None or dense is None:
            self.heat_item.clear()
            self.dense_box_item.setData([], [])
            return
        if self.mode == MODE_PIXEL:
            self._draw_dense_encoder(r, dense)
            return
        if q is None or q >= r.num_queries:
            self.heat_item.clear()
            self.dense_box_item.setData([], [])
            self.dense_caption.setText(
                f"Dense ({dense.source}): " + ("pick a query to compare." if q is None else
                                               f"it has {r.num_queries} query slots, no slot {q}."))
            return
        layer = min(self.layer_slider.value(), r.num_layers - 1)
        self._set_heat(cross_attention_map(r, q, layer, None, smooth=True), r)
        self._draw_box(self.dense_box_item, r.boxes_xyxy[q].numpy())
        label = r.class_names[int(r.labels[q])]
        how = "query slot" if paired == "slot" else "its query with the most overlapping box,"
        self.dense_caption.setText(
            f"Dense DETR ({dense.source}): {how} {q} ({label}, {float(r.scores[q]):.2f}), decoder layer "
            f"{layer + 1}: attention over all {r.feature_size[0] * r.feature_size[1]} cells of one level, mean "
            f"over heads.")

    def _draw_dense_encoder(self, r: InferenceResult, dense: LoadedModel) -> None:
        """The dense model's encoder self-attention from the clicked pixel (its last layer)."""
        self.dense_box_item.setData([], [])
        if self.pixel is None or r.encoder_queries is None:
            self.heat_item.clear()
            self.dense_caption.setText(f"Dense ({dense.source}): " + (
                "click a pixel." if self.pixel is None else "it has no encoder layers."))
            return
        from detr_core.analysis.heatmaps import encoder_attention_map

        maps = r.encoder_attention_at(*self.pixel)  # [L_enc, heads, h, w]
        layer = min(self.layer_slider.value(), maps.shape[0] - 1)
        heat = encoder_attention_map(maps, r, layer, None, smooth=True)
        self._set_heat(heat, r)
        y, x = self.pixel
        self.dense_caption.setText(
            f"Dense DETR ({dense.source}): encoder layer {layer + 1}, where the token at ({x:.0f}, {y:.0f}) "
            f"attends, over all {r.feature_size[0] * r.feature_size[1]} cells, mean over heads.")

    def _set_heat(self, heat: np.ndarray, r: InferenceResult) -> None:
        self.heat_item.setImage(heat, levels=(0.0, max(float(heat.max()), 1e-9)),
                                lut=self.colormap.getLookupTable(nPts=256))
        eh, ew = r.grid_extent()
        self.heat_item.setRect(0, 0, ew, eh)

    # --- export ----------------------------------------------------------------------------
    def export_data(self) -> list[dict[str, Any]] | None:
        drawn = self.encoder_map()
        if drawn is not None and self.pixel is not None:  # the encoder self-attention: one row per cell
            heat, (i, j) = drawn
            head = self.encoder_head_index
            where = {"mode": "encoder self-attention", "pixel_y": self.pixel[0], "pixel_x": self.pixel[1],
                     "from_row": i + 1, "from_column": j + 1, "layer": self.layer_slider.value() + 1,
                     "head": "mean" if head is None else head + 1}
            return [{**where, "row": r + 1, "column": c + 1, "weight": float(heat[r, c])}
                    for r in range(heat.shape[0]) for c in range(heat.shape[1])]
        shown = self.shown_points()
        if shown is None:
            return None
        pts, wts, lvl, head = shown
        layer = self.layer_slider.value()
        where = {"query": self.query} if self.mode == MODE_QUERY else {"pixel_y": self.pixel[0], "pixel_x": self.pixel[1]}  # type: ignore[index]
        return [{"mode": self.mode, **where, "layer": layer + 1, "head": int(h) + 1, "level": int(lv) + 1,
                 "x": float(p[0]), "y": float(p[1]), "weight": float(w)}
                for p, w, lv, h in zip(pts, wts, lvl, head)]
