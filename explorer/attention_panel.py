"""Controls for the attention heatmap: what to show, which decoder layer and head, how."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

COLORMAPS = ("inferno", "viridis", "magma", "plasma", "turbo", "CET-L3")
MODE_NONE, MODE_CROSS, MODE_ENCODER = "none", "cross", "encoder"


class AttentionPanel(QWidget):
    changed = Signal()  # anything that needs a redraw (mode, layer, head)
    opacityChanged = Signal(float)

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.mode_cross = QRadioButton("Decoder cross-attention of the selected query")
        self.mode_encoder = QRadioButton("Encoder self-attention of a clicked point")
        self.mode_none = QRadioButton("No heatmap")
        self.mode_cross.setChecked(True)
        self.modes = QButtonGroup(self)
        for b in (self.mode_cross, self.mode_encoder, self.mode_none):
            self.modes.addButton(b)
            b.toggled.connect(self._emit_if_checked)
        self.layer = QComboBox()
        self.layer.setToolTip("Which layer's attention to show")
        self.head = QComboBox()
        self.head.setToolTip("One attention head, or the mean over all heads")
        self.layer.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.head.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        self.opacity.valueChanged.connect(lambda v: self.opacityChanged.emit(v / 100))
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.colormap.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.smooth = QCheckBox("Smooth (bilinear upsampling)")
        self.smooth.setChecked(True)
        self.smooth.toggled.connect(lambda _: self.changed.emit())
        self.info = QLabel("")
        self.info.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Layer", self.layer)
        form.addRow("Head", self.head)
        row = QHBoxLayout()
        row.addWidget(self.opacity)
        form.addRow("Opacity", row)
        form.addRow("Colour map", self.colormap)
        layout = QVBoxLayout(self)
        layout.addWidget(self.mode_cross)
        layout.addWidget(self.mode_encoder)
        layout.addWidget(self.mode_none)
        layout.addLayout(form)
        layout.addWidget(self.smooth)
        layout.addWidget(self.info)
        layout.addStretch(1)

    def _emit_if_checked(self, checked: bool) -> None:
        if checked:
            self.changed.emit()

    @property
    def mode(self) -> str:
        if self.mode_cross.isChecked():
            return MODE_CROSS
        if self.mode_encoder.isChecked():
            return MODE_ENCODER
        return MODE_NONE

    def set_mode(self, mode: str) -> None:
        {MODE_CROSS: self.mode_cross, MODE_ENCODER: self.mode_encoder, MODE_NONE: self.mode_none}[mode].setChecked(True)

    def set_structure(self, decoder_layers: int, encoder_layers: int, heads: int) -> None:
        """Fill the layer and head choices (keeps the current choice when it still exists)."""
        n_layers = encoder_layers if self.mode == MODE_ENCODER else decoder_layers
        kind = "encoder" if self.mode == MODE_ENCODER else "decoder"
        self._fill(self.layer, [f"{kind} layer {i + 1}" for i in range(n_layers)], default_last=True)
        self._fill(self.head, ["mean over heads"] + [f"head {i + 1}" for i in range(heads)], default_last=False)
        self._counts = (decoder_layers, encoder_layers, heads)

    def _fill(self, combo: QComboBox, items: list[str], default_last: bool) -> None:
        current = combo.currentIndex()
        if [combo.itemText(i) for i in range(combo.count())] == items:
            return
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(items)
        if 0 <= current < len(items) and combo.count():
            combo.setCurrentIndex(current if not default_last or current < len(items) else len(items) - 1)
        if default_last and (current < 0 or current >= len(items)):
            combo.setCurrentIndex(len(items) - 1)
        combo.blockSignals(False)

    @property
    def layer_index(self) -> int:
        return max(self.layer.currentIndex(), 0)

    @property
    def head_index(self) -> int | None:
        """None = mean over heads."""
        i = self.head.currentIndex()
        return None if i <= 0 else i - 1
