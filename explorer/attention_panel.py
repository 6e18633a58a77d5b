"""Controls for the attention heatmap: what to show, which layer and head, how. They read and
change the application state; the info line says what the heatmap shows."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from detr_core.analysis.capture import CROSS_CONTENT, CROSS_FULL, CROSS_PARTS, CROSS_SPATIAL

from .help import help_button
from .state import MODE_CROSS, MODE_ENCODER, MODE_NONE, AppState, HeatmapStyle

# a Deformable DETR attends to a few sampling points, not to every cell: no dense map to draw
DEFORMABLE_NOTE = ("This model uses deformable attention: each query reads a few sampling points per level, "
                   "not every pixel, so there is no dense heatmap. See the Deformable attention tab.")
# RT-DETR and its kin: the encoder's attention is dense, but within its coarsest level only (AIFI)
ENCODER_SELF_NOTE = (" Its encoder's self-attention (within the coarsest level) at a clicked point is there too: "
                     "choose \"Clicked pixel (encoder)\".")
COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "CET-L3")
# Conditional DETR and DAB-DETR: which part of the cross-attention to draw, and one sentence on each
CROSS_PART_NAMES = {CROSS_FULL: "full", CROSS_CONTENT: "content", CROSS_SPATIAL: "spatial query"}
CROSS_PART_CAPTIONS = {
    CROSS_FULL: "The full map is the content map times the spatial-query map, renormalised over the image "
                "(each head adds their logits).",
    CROSS_CONTENT: "The content map: the query's content half against the image's features (in the first "
                   "layer both also carry their positions), the spatial query left out.",
    CROSS_SPATIAL: "The spatial query's map: its reference point (sine-embedded, scaled per layer) against "
                   "each cell's position, the map the content map is multiplied by.",
}


class AttentionPanel(QWidget):
    def __init__(self, state: AppState, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.state = state
        self.mode_cross = QRadioButton("Decoder cross-attention of the selected query")
        self.mode_encoder = QRadioButton("Encoder self-attention of a clicked point")
        self.mode_none = QRadioButton("No heatmap")
        self._mode_buttons = {MODE_CROSS: self.mode_cross, MODE_ENCODER: self.mode_encoder, MODE_NONE: self.mode_none}
        self._mode_buttons[state.attention_mode].setChecked(True)
        self.modes = QButtonGroup(self)
        for mode, b in self._mode_buttons.items():
            self.modes.addButton(b)
            b.toggled.connect(lambda checked, m=mode: checked and state.set_attention_mode(m))
        self.layer = QComboBox()
        self.layer.setToolTip("Which layer's attention to show")
        self.head = QComboBox()
        self.head.setToolTip("One attention head, or the mean over all heads")
        self.layer.currentIndexChanged.connect(lambda i: i >= 0 and state.set_layer(i))
        self.head.currentIndexChanged.connect(lambda i: i >= 0 and state.set_head(None if i == 0 else i - 1))
        style = state.heatmap_style
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(style.opacity * 100))
        self.opacity.valueChanged.connect(lambda v: state.set_heatmap_style(opacity=v / 100))
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.colormap.setCurrentText(style.colormap)
        self.colormap.currentTextChanged.connect(lambda name: state.set_heatmap_style(colormap=name))
        self.smooth = QCheckBox("Smooth")
        self.smooth.setToolTip("Bilinear upsampling of the attention grid (off: one flat square per cell)")
        self.smooth.setChecked(style.smooth)
        self.smooth.toggled.connect(lambda on: state.set_heatmap_style(smooth=on))
        self.part = QComboBox()  # shown only for models whose cross-attention splits so
        self.part.addItems([CROSS_PART_NAMES[p] for p in CROSS_PARTS])
        self.part.setToolTip("The whole decoder cross-attention map, or the map of its content or spatial query alone")
        self.part.currentIndexChanged.connect(lambda i: i >= 0 and state.set_cross_part(CROSS_PARTS[i]))
        self.part_label = QLabel("Map")
        self.part_caption = QLabel("")
        self.part_caption.setWordWrap(True)
        self.opacity.setToolTip("Opacity of the heatmap over the image")
        self.colormap.setToolTip("Colour map of the heatmap")
        for combo in (self.layer, self.head, self.colormap):  # they share a row: may shrink, eliding
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
        self.info = QLabel("")  # what the heatmap shows, in words: always whole (the panel fits a laptop's column)
        self.info.setWordWrap(True)

        # compact: the panel shares a laptop's right column with the query table
        last = QHBoxLayout()  # the "?" beside the shortest choice: the longest keeps the width
        last.addWidget(self.mode_none, 1)
        last.addWidget(help_button("Attention"))
        controls = QGridLayout()
        controls.addWidget(QLabel("Layer"), 0, 0)
        controls.addWidget(self.layer, 0, 1)
        controls.addWidget(QLabel("Head"), 0, 2)
        controls.addWidget(self.head, 0, 3)
        controls.addWidget(QLabel("Opacity"), 1, 0)
        controls.addWidget(self.opacity, 1, 1)
        controls.addWidget(QLabel("Colours"), 1, 2)
        controls.addWidget(self.colormap, 1, 3)
        controls.addWidget(self.part_label, 2, 0)
        controls.addWidget(self.part, 2, 1, 1, 3)
        controls.setColumnStretch(1, 1)
        controls.setColumnStretch(3, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.mode_cross)
        layout.addWidget(self.mode_encoder)
        layout.addLayout(last)
        layout.addLayout(controls)
        layout.addWidget(self.smooth)
        layout.addWidget(self.part_caption)
        layout.addWidget(self.info)
        layout.addStretch(1)

        state.attentionModeChanged.connect(self._on_mode)
        state.resultChanged.connect(self._on_structure)
        state.layerChanged.connect(self._on_structure)
        state.headChanged.connect(self._on_structure)
        state.crossPartChanged.connect(self._on_structure)
        state.heatmapStyleChanged.connect(self._on_style)
        state.selectedQueryChanged.connect(self._update_info)
        state.encoderPointChanged.connect(self._update_info)
        self._show_part()  # hidden until a result with the split comes

    # --- following the state ---------------------------------------------------------------
    def _on_mode(self, mode: str) -> None:
        button = self._mode_buttons[mode]
        if not button.isChecked():
            button.blockSignals(True)  # the group unchecks the others silently too
            button.setChecked(True)
            button.blockSignals(False)
        self._on_structure()

    def _on_structure(self, *_: object) -> None:
        """Fill the layer and head choices for the result and mode; show the state's choice."""
        s, r = self.state, self.state.result
        if r is not None:
            kind = "encoder" if s.attention_mode == MODE_ENCODER else "decoder"
            self._fill(self.layer, [f"{kind} {i + 1}" for i in range(s.layer_count)], s.layer)
            self._fill(self.head, ["mean of all"] + [f"{i + 1}" for i in range(r.num_heads)],
                       0 if s.head is None else s.head + 1)
        # no map of this kind here (a deformable model's dense encoder map): nothing to choose, greyed
        self.layer.setEnabled(r is not None and s.layer_count > 0)
        self.head.setEnabled(r is not None and s.layer_count > 0 and r.num_heads > 0)
        self._show_part()
        self._update_info()

    def _show_part(self) -> None:
        """The map choice and its caption: only for a result whose cross-attention splits."""
        r, part = self.state.result, self.state.cross_part
        split = r is not None and r.has_cross_parts and self.state.attention_mode != MODE_ENCODER
        for widget in (self.part_label, self.part, self.part_caption):
            widget.setVisible(split)
        self.part.blockSignals(True)
        self.part.setCurrentIndex(CROSS_PARTS.index(part))
        self.part.blockSignals(False)
        self.part_caption.setText(CROSS_PART_CAPTIONS[part] if split else "")

    @staticmethod
    def _fill(combo: QComboBox, items: list[str], current: int) -> None:
        combo.blockSignals(True)
        if [combo.itemText(i) for i in range(combo.count())] != items:
            combo.clear()
            combo.addItems(items)
        if 0 <= current < combo.count():
            combo.setCurrentIndex(current)
        combo.blockSignals(False)

    def _on_style(self, style: HeatmapStyle) -> None:
        for widget, set_value in ((self.opacity, lambda: self.opacity.setValue(round(style.opacity * 100))),
                                  (self.colormap, lambda: self.colormap.setCurrentText(style.colormap)),
                                  (self.smooth, lambda: self.smooth.setChecked(style.smooth))):
            widget.blockSignals(True)
            set_value()
            widget.blockSignals(False)

    def _update_info(self, *_: object) -> None:
        s, r = self.state, self.state.result
        if r is not None and r.deformable is not None:
            self.info.setText(DEFORMABLE_NOTE + (ENCODER_SELF_NOTE if r.encoder_self is not None else ""))
            return
        if r is None or r.cross_attention is None:
            return
        layer = max(s.layer, 0)
        if s.attention_mode == MODE_CROSS and s.selected_query is not None:
            q = s.selected_query
            label = r.class_names[int(r.labels[q])]
            self.info.setText(f"Query {q} ({label}, {float(r.scores[q]):.2f}): where it "
                              f"reads the image in decoder layer {layer + 1}.")
        elif s.attention_mode == MODE_ENCODER and s.encoder_point is not None:
            y, x = s.encoder_point
            self.info.setText(f"Where the encoder token at ({x:.0f}, {y:.0f}) attends in encoder layer "
                              f"{layer + 1}. Click elsewhere to move it.")
        elif s.attention_mode == MODE_ENCODER:
            self.info.setText("Click a point on the image (Shift+click on a box).")

    # --- reading the choices ---------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.state.attention_mode

    def set_mode(self, mode: str) -> None:
        self.state.set_attention_mode(mode)

    @property
    def layer_index(self) -> int:
        return max(self.state.layer, 0)

    @property
    def head_index(self) -> int | None:
        """None = mean over heads."""
        return self.state.head
