"""The training panel: a preset and its main settings, Start / Pause / Resume / Step / Stop,
live loss and AP plots, a progress bar. The settings are bound to the configs by one table,
``SETTINGS`` (and ``DERIVED`` for the fields the panel computes), which loading a preset and
reading the configs back both use. Training runs in a child process, read by a
``TrainingWorker``."""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from detr_core.config import DETRConfig, TrainConfig
from detr_core.model.losses import LOSS_PARTS, LossTerm, loss_terms
from detr_core.precision import precision_note
from detr_core.presets import PRESETS, apply_overrides, preset, preset_papers
from detr_core.train.finetune import finetune_train_config
from detr_core.train.trainer import EvalEvent, History, StepEvent

from .dataset_session import OpenedDataset
from .dataset_training import dataset_configs, describe
from .help import help_button
from .stable_label import StableLabel, wrap_label
from .state import LoadedModel
from .training_worker import TrainedModel, TrainingWorker

PART_COLORS = {"loss": "#ffffff", "loss_ce": "#ff6b6b", "loss_bbox": "#51cf66", "loss_giou": "#4dabf7"}
LAYER_SHADES = ["#ffd43b", "#cc5de8", "#20c997", "#ff922b", "#748ffc", "#f06595"]


AP_TITLE = "held-out AP"
TITLE_SIZE = "10pt"  # pyqtgraph's own titles (11 pt in a 30 px row) take a fifth of a short dock's plots


def set_title(plot: pg.PlotItem, title: str) -> None:
    """``plot``'s title, in a row just tall enough for it."""
    plot.setTitle(title, size=TITLE_SIZE)
    height = QFontMetrics(plot.titleLabel.item.font()).height() + 4
    plot.titleLabel.setMaximumHeight(height)
    plot.layout.setRowFixedHeight(0, height)


class LossPlots(pg.GraphicsLayoutWidget):
    """Total loss, its parts (class, L1, GIoU) and AP, against the training step."""

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.setBackground("#202124")
        self.per_layer = False
        self.plots: dict[str, pg.PlotItem] = {}
        titles = {"loss": "total loss (weighted)", "loss_ce": "class", "loss_bbox": "L1", "loss_giou": "GIoU"}
        for i, (key, title) in enumerate(titles.items()):
            if i == 3:
                self.nextRow()
            p = self.addPlot()
            set_title(p, title)
            # No grid here: pyqtgraph draws it with the axes, so every new point would repaint
            # both axes' text too; without it the window spends half the time on these plots.
            p.setClipToView(True)
            p.setDownsampling(auto=True, mode="peak")
            p.addLegend(offset=(-5, 5), labelTextSize="7pt")
            self.plots[key] = p
        self.ap_plot = self.addPlot(colspan=2)
        set_title(self.ap_plot, AP_TITLE)
        # AP is a fraction: the axis always spans 0 to 1, with room for the labels at both ends
        self.ap_plot.setYRange(0, 1, padding=0.1)
        self.ap_plot.setMouseEnabled(x=True, y=False)
        left = self.ap_plot.getAxis("left")
        left.setTicks([[(v, f"{v:g}") for v in (0.0, 0.5, 1.0)], [(v, "") for v in (0.25, 0.75)]])
        left.setStyle(autoExpandTextSpace=False, tickTextWidth=self.fontMetrics().horizontalAdvance("0.50"))
        # faint guides rather than a grid: with a grid pyqtgraph drops the labels at 0 and 1 of a short plot
        for y in (0.25, 0.5, 0.75, 1.0):
            self.ap_plot.addItem(pg.InfiniteLine(y, angle=0, pen=pg.mkPen(255, 255, 255, 40)))
        self.ap_plot.addLegend(offset=(-5, 5), labelTextSize="7pt")
        # the curves join the legend with their first point: an empty plot has no markers that look like data
        self.ap50_curve = self.ap_plot.plot([], [], pen=pg.mkPen("#ffd43b", width=2), symbol="o", symbolSize=6,
                                            symbolBrush="#ffd43b")
        self.ap_curve = self.ap_plot.plot([], [], pen=pg.mkPen("#4dabf7", width=2), symbol="s", symbolSize=6,
                                          symbolBrush="#4dabf7")
        # why the plot is empty (no evaluation yet, or none in the file), in the middle of the plot
        self.ap_note = pg.TextItem("", color="#adb5bd", anchor=(0.5, 0.5))
        self.ap_note.setParentItem(self.ap_plot.getViewBox())  # in the box's pixels, not in steps and AP
        self.ap_plot.getViewBox().sigResized.connect(self._place_ap_note)
        self.ap_plot.setXLink(self.plots["loss"])
        for key in ("loss_ce", "loss_bbox", "loss_giou"):
            self.plots[key].setXLink(self.plots["loss"])
        self.curves: dict[str, pg.PlotDataItem] = {}
        # The x axis (steps) is set by hand and grows in round steps (see _extend_x): with it
        # auto-ranged, every new step would re-lay out all five plots' axes at every redraw.
        self.plots["loss"].enableAutoRange(x=False)
        # One plot is redrawn per tick, in turn, so no single repaint holds up the event loop;
        # each plot is refreshed about four times a second.
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(60)
        self._redraw_timer.timeout.connect(self._redraw_next)
        self._dirty: set[str] = set()
        self._turn = 0
        self.reset()

    def reset(self, terms: dict[str, LossTerm] | None = None, no_evals: str = "No held-out evaluation yet.") -> None:
        """Clear the plots for a run whose criterion has these :func:`loss_terms`; ``no_evals``
        says on the AP plot why it is empty until the first evaluation."""
        self.terms = terms or {}
        for p in self.plots.values():
            for c in list(p.listDataItems()):
                p.removeItem(c)
            if p.legend is not None:
                p.legend.clear()
        self.curves = {}
        self.history = History()  # "step" and every loss part, padded with NaN where missing
        self.ap_steps: list[float] = []
        self.ap: list[float] = []
        self.ap50: list[float] = []
        self.ap_curve.setData([], [])
        self.ap50_curve.setData([], [])
        self.ap_plot.legend.clear()
        set_title(self.ap_plot, AP_TITLE)
        self.set_ap_note(no_evals)
        self._dirty = set()
        self._redraw_timer.stop()
        self.x_max = 0.0
        self._extend_x(0)

    def _extend_x(self, step: float) -> None:
        """Show steps 0 to the next round number above ``step`` with some room to grow."""
        if step < self.x_max and self.x_max > 0:
            return
        target = max(10.0, step * 1.2)
        magnitude = 10 ** math.floor(math.log10(target))
        self.x_max = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= target)
        self.plots["loss"].setXRange(0, self.x_max, padding=0.02)

    @property
    def data(self) -> dict[str, list[float]]:
        return self.history.steps

    @property
    def steps(self) -> list[float]:
        return self.history.steps.get("step", [])

    def add_steps(self, events: list[StepEvent]) -> None:
        """Record steps; the curves follow a few times a second (see redraw_later)."""
        for e in events:
            self.history.add_step({"step": e.step, **e.losses})
        self.redraw_later()

    def redraw_later(self) -> None:
        self._dirty.update(self.plots)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _redraw_next(self) -> None:
        keys = list(self.plots)
        for _ in keys:
            key = keys[self._turn % len(keys)]
            self._turn += 1
            if key in self._dirty:
                self._dirty.discard(key)
                self.redraw(only=key)
                return
        self._redraw_timer.stop()  # nothing new: idle until the next steps arrive

    def set_ap_note(self, text: str) -> None:
        """Say on the AP plot why it has no points (shown until the first evaluation)."""
        self.ap_note.setHtml(f'<div style="text-align: center">{html.escape(text)}</div>')
        self.ap_note.setVisible(bool(text) and not self.ap_steps)
        self._place_ap_note()

    def _place_ap_note(self) -> None:
        """In the middle of the plot, wrapped to its width."""
        box = self.ap_plot.getViewBox().rect()
        self.ap_note.setTextWidth(max(80.0, box.width() - 16))
        self.ap_note.setPos(box.center())

    def add_eval(self, event: EvalEvent) -> None:
        if not self.ap_steps:
            self.ap_note.setVisible(False)
            self.ap_plot.legend.addItem(self.ap50_curve, "AP50")
            self.ap_plot.legend.addItem(self.ap_curve, "AP")
        self.ap_steps.append(event.step)
        self.ap.append(event.metrics["AP"])
        self.ap50.append(event.metrics["AP50"])
        self.ap_curve.setData(self.ap_steps, self.ap)
        self.ap50_curve.setData(self.ap_steps, self.ap50)
        # the latest figures in words: the curve alone cannot be read to two decimals
        set_title(self.ap_plot, f"{AP_TITLE}: AP {self.ap[-1]:.2f}, AP50 {self.ap50[-1]:.2f} at step {event.step}")

    def set_per_layer(self, on: bool) -> None:
        self.per_layer = on
        self.redraw()

    def _series(self) -> dict[str, tuple[str, str, str, Qt.PenStyle]]:
        """curve key -> (plot, name, colour, style) for what should be visible now."""
        out = {"loss": ("loss", "total", PART_COLORS["loss"], Qt.PenStyle.SolidLine)}
        for part in LOSS_PARTS:
            for key, t in self.terms.items():
                if t.part != part or key not in self.data:
                    continue
                if t.source == "decoder" and t.layer is None:
                    out[key] = (part, "last layer", PART_COLORS[part], Qt.PenStyle.SolidLine)
                elif t.source == "denoising" and t.layer is None:
                    out[key] = (part, "denoising", "#adb5bd", Qt.PenStyle.DashLine)
                elif t.source == "dense":
                    out[key] = (part, "dense aux", "#868e96", Qt.PenStyle.DotLine)
                elif t.source == "decoder" and self.per_layer:
                    out[key] = (part, f"layer {t.layer + 1}", LAYER_SHADES[t.layer % len(LAYER_SHADES)],
                                Qt.PenStyle.SolidLine)
        return out

    def redraw(self, only: str | None = None) -> None:
        """Bring the curves up to date: all plots, or only the plot ``only``."""
        wanted = self._series()
        for key in list(self.curves):
            if key not in wanted:
                plot_key = self.terms[key].part if key in self.terms else "loss"
                self.plots[plot_key].removeItem(self.curves.pop(key))
        if self.steps:
            self._extend_x(self.steps[-1])
        x = np.asarray(self.steps, dtype=float)
        for key, (plot_key, name, color, style) in wanted.items():
            if key not in self.data or (only is not None and plot_key != only):
                continue
            if key not in self.curves:
                self.curves[key] = self.plots[plot_key].plot(pen=pg.mkPen(color, width=1.5, style=style), name=name)
            self.curves[key].setData(x, np.asarray(self.data[key], dtype=float))
        if only is None:
            self._dirty.clear()


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    return s


def _dspin(lo: float, hi: float, value: float, decimals: int, step: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setValue(value)
    return s


def no_evals_note(eval_every: int) -> str:
    """What the AP plot says before a run's first held-out evaluation."""
    if eval_every:
        return f"No evaluation yet: the first at step {eval_every}"
    return "No evaluations in this run (Evaluate every: 0)"


def _same(value: Any) -> Any:
    return value


Values = Mapping[str, Any]  # config field (as in SETTINGS) -> the value the panel's widgets give it


@dataclass(frozen=True)
class Setting:
    """A config field the panel edits with one of its widgets, and the conversions both ways.

    ``field`` is the name :func:`~detr_core.presets.apply_overrides` knows (``loss.`` for the loss
    config's); ``widget`` the panel's attribute (a spin box, a check box or a combo box).
    ``to_widget`` turns the config's value into the widget's (None: a preset does not set it, the
    panel keeps its own value); ``from_widget`` the widget's into the config's. ``when``: the
    field is only on when the other fields allow it (else ``off``: by default 0 or False), and its
    widget is greyed out meanwhile. ``applies``: the field is kept as it is but does nothing unless
    the other fields allow it (its widget is greyed out meanwhile). ``optimisation``: fine-tuning
    takes it from the fine-tuning recipe instead of the preset."""

    field: str
    widget: str
    to_widget: Callable[[Any], Any] | None = _same
    from_widget: Callable[[Any], Any] = _same
    when: Callable[[Values], bool] | None = None
    optimisation: bool = False
    off: Any = None
    applies: Callable[[Values], bool] | None = None

    def off_value(self, current: Any) -> Any:
        return self.off if self.off is not None else type(current)()


@dataclass(frozen=True)
class Derived:
    """A config field the panel sets from its other fields (``value(fields, preset's model)``),
    with no widget of its own."""

    field: str
    value: Callable[[Values, DETRConfig], Any]


def _anchors(v: Values) -> bool:
    return v["query_type"] == "anchor"


def _deformable(v: Values) -> bool:
    return v["attention"] == "deformable"


def _denoises(v: Values) -> bool:
    return _anchors(v) and v["dn_groups"] > 0


def _selects(v: Values) -> bool:
    """Query selection can be on: anchor queries (whose boxes it picks) and something that scores
    the encoder's tokens: the dense head (DETR), or the deformable family's own proposal heads."""
    return _anchors(v) and (v["dense_aux"] or _deformable(v))


# Every field the panel edits, in one place: loading a preset shows each field's value in its
# widget, and configs() reads the widgets back through the same rows.
SETTINGS: tuple[Setting, ...] = (
    Setting("num_queries", "queries"),
    Setting("num_encoder_layers", "enc_layers"),
    Setting("num_decoder_layers", "dec_layers"),
    Setting("d_model", "d_model", str, int),
    Setting("lr", "lr", optimisation=True),
    Setting("lr_backbone", "lr_backbone", optimisation=True),
    Setting("batch_size", "batch", optimisation=True),
    Setting("loss.no_object_weight", "no_object", optimisation=True),
    Setting("decoder_self_attention", "self_attention"),
    Setting("aux_loss", "aux_loss"),
    Setting("seed", "seed"),
    # the panel trains for a time (minutes); a preset without one gets two minutes
    Setting("max_seconds", "minutes", lambda s: (s or 120) / 60, lambda m: m * 60),
    # the panel's own: it evaluates every 200 steps unless told otherwise (the presets never do)
    Setting("eval_every", "eval_every", None),
    Setting("query_type", "anchor", lambda t: t == "anchor", lambda on: "anchor" if on else "learned"),
    Setting("dn_groups", "dn_groups", when=_anchors),  # denoising needs anchor queries
    Setting("dn_contrastive", "dn_contrastive", when=_denoises),
    # the noise scales stay as the preset has them when denoising is off (they then do nothing)
    Setting("dn_box_noise", "dn_box_noise", applies=_denoises),
    Setting("dn_label_noise", "dn_label_noise", applies=_denoises),
    Setting("num_query_groups", "query_groups"),
    Setting("classifier", "focal", lambda c: c == "focal", lambda on: "focal" if on else "softmax"),
    Setting("loss.varifocal", "varifocal", when=lambda v: v["classifier"] == "focal"),
    # the deformable family's proposals come from its own heads (query_select), not the dense head
    Setting("dense_aux", "dense", when=lambda v: not _deformable(v)),
    Setting("query_select", "query_select", when=_selects),
    Setting("query_content", "query_content", lambda c: c == "encoder", lambda on: "encoder" if on else "learned",
            when=lambda v: _selects(v) and v["query_select"] and _deformable(v), off="learned"),
    # (on in every preset, as in DETRConfig; it acts on anchor boxes refined per layer only)
    Setting("look_forward_twice", "look_forward_twice", applies=_anchors),
    Setting("num_feature_levels", "feature_levels", applies=_deformable),  # (the dense family reads one level)
    Setting("hybrid_encoder", "hybrid_encoder", when=_deformable),
    Setting("bf16", "bf16"),
)
DERIVED: tuple[Derived, ...] = (
    Derived("dim_feedforward", lambda v, model: 4 * v["d_model"]),
    # the preset's heads when they divide d_model, else 4 (which divides every d_model offered)
    Derived("nheads", lambda v, model: model.nheads if v["d_model"] % model.nheads == 0 else 4),
    Derived("steps", lambda v, model: 0),  # a run of the panel ends after its minutes, not a step count
)


def config_value(model: DETRConfig, train: TrainConfig, name: str) -> Any:
    """The value of the setting ``name`` (as :func:`~detr_core.presets.apply_overrides` names it)
    in these configs. Raises LookupError for a name they do not have."""
    sections = {"model": model, "train": train, "loss": train.loss, "data": train.data, "dataset": train.dataset}
    if "." in name:
        section, key = name.split(".", 1)
        owners = [section] if section in sections else []
    else:
        key = name
        owners = [s for s in sections if s != "train" or key not in ("loss", "data", "dataset")]
    found = [s for s in owners if key in {f.name for f in dataclasses.fields(sections[s])}]
    if len(found) != 1:
        raise LookupError(f"no setting {name!r} in the configs" if not found else f"ambiguous setting {name!r}")
    return getattr(sections[found[0]], key)


def widget_value(widget: QWidget) -> Any:
    """What a setting's widget holds: a check box's state, a combo box's text, a spin box's value."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    raise TypeError(f"a setting cannot be read from a {type(widget).__name__}")


def set_widget_value(widget: QWidget, value: Any) -> None:
    """Show ``value`` in a setting's widget; a value a combo box does not offer raises ValueError."""
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QComboBox):
        if widget.findText(str(value)) < 0:
            raise ValueError(f"{value!r} is not one of the choices {[widget.itemText(i) for i in range(widget.count())]}")
        widget.setCurrentText(str(value))
    elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        widget.setValue(value)
    else:
        raise TypeError(f"a setting cannot be shown in a {type(widget).__name__}")


class TrainingPanel(QWidget):
    """Emits ``trained`` when a run ends (with the model), ``preview`` with live results,
    ``running`` when training starts or stops, ``failed`` with a readable message."""

    trained = Signal(object)  # TrainedModel
    preview = Signal(object, object)  # (InferenceResult, the id of the image it is of)
    workerCreated = Signal(object)  # TrainingWorker, before it starts: views may add probes
    running = Signal(bool)
    failed = Signal(str)
    status = Signal(str)

    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        self.worker: TrainingWorker | None = None
        self.preview_image: np.ndarray | None = None
        self.preview_image_id: object = None
        self._last_step: StepEvent | None = None
        self._threads = ""  # the run's CPU threads and why, for the progress text
        self.dataset = None  # the open OpenedDataset (None: toy shapes)
        self.open_model = None  # the LoadedModel shown, which "fine-tune" starts from
        self._optimisation_for_fine_tuning = False  # whose learning rates the fields hold
        self._plotted: object = None  # whose curves the plots show: a Checkpoint, a TrainedModel, None (a run's)
        # asked before a run starts (its model will replace the one shown): False keeps it idle
        self.confirm_start: Callable[[], bool] | None = None
        self._attention = "dense"  # the family of the preset shown

        self.preset = QComboBox()
        self.preset.addItems(["fast", "vanilla", "deformable", "dino", "rt_detr"])  # (r18: a benchmark's)
        self.preset.setToolTip("The recipe the settings start from (--preset). fast: the levers that learn toy "
                               "shapes in minutes; vanilla: the paper's recipe")
        self.queries = _spin(1, 300, 20)
        self.enc_layers = _spin(0, 12, 3)
        self.dec_layers = _spin(1, 12, 3)
        self.d_model = QComboBox()
        self.d_model.addItems(["32", "64", "128", "256"])
        self.lr = _dspin(1e-6, 1e-1, 1e-3, 6, 1e-4)
        self.lr_backbone = _dspin(0.0, 1e-1, 1e-5, 6, 1e-5)
        self.lr_backbone.setToolTip("Learning rate of the backbone (lr_backbone; 0 keeps it fixed). Fine-tuning "
                                    "starts at the reference's 1e-5, so a pretrained backbone is kept, not wrecked")
        self.batch = _spin(1, 256, 32)
        self.no_object = _dspin(0.0, 1.0, 0.1, 3, 0.05)
        self.self_attention = QCheckBox("Decoder self-attention")
        self.aux_loss = QCheckBox("Auxiliary losses (every decoder layer)")
        self.seed = _spin(0, 2**31 - 1, TrainConfig().seed)
        self.seed.setToolTip("Random seed of the model's initial weights and the data order (--seed)")
        self.minutes = _dspin(0.1, 600, 2.0, 1, 0.5)
        self.minutes.setToolTip("Training time (--minutes)")
        self.anchor = QCheckBox("Anchor-box queries, refined per layer")
        self.anchor.setToolTip("DAB-DETR (Liu et al. 2022): each query is a learned content vector and a 4-D "
                               "anchor box, its position the box's sine embedding, the box refined layer by "
                               "layer (on the deformable family too, as DINO and RT-DETR do)")
        self.dn_groups = _spin(0, 20, 0)
        self.dn_groups.setToolTip("DN-DETR (Li et al. 2022): groups of noised copies of the ground-truth "
                                  "boxes and labels, fed as extra queries during training only, each learning "
                                  "to repair its object (needs anchor queries)")
        self.dn_contrastive = QCheckBox("Contrastive denoising (negatives)")
        self.dn_contrastive.setToolTip("DINO (Zhang et al. 2023): each denoising group also holds a negative "
                                       "copy of every object, noised between one and two box noise scales and "
                                       "trained as \"no object\" (needs denoising groups)")
        self.dn_box_noise = _dspin(0.0, 2.0, 0.4, 2, 0.05)
        self.dn_box_noise.setToolTip("DN-DETR (Li et al. 2022): how far a denoising box is moved and resized, "
                                     "as a fraction of the box's size")
        self.dn_label_noise = _dspin(0.0, 1.0, 0.2, 2, 0.05)
        self.dn_label_noise.setToolTip("DN-DETR (Li et al. 2022): the fraction of denoising queries whose "
                                       "label is flipped to another class")
        self.query_groups = _spin(1, 20, 1)
        self.query_groups.setToolTip("Group DETR (Chen et al. 2023): extra one-to-one query groups during "
                                     "training only")
        self.focal = QCheckBox("Focal (sigmoid) classification")
        self.focal.setToolTip("Focal loss (Lin et al. 2017): one sigmoid per class instead of a softmax with "
                              "a no-object class (the deformable family needs it)")
        self.varifocal = QCheckBox("Varifocal loss (IoU as target)")
        self.varifocal.setToolTip("Varifocal loss (Zhang et al. 2021) as RT-DETR (Zhao et al. 2024) trains: a "
                                  "matched query's class target is its box's IoU, so the scores, and the "
                                  "encoder's query selection, learn how good a box is (IoU-aware selection; "
                                  "needs focal classification)")
        self.dense = QCheckBox("Dense auxiliary head (training only)")
        self.dense.setToolTip("Co-DETR (Zong et al. 2023): a dense one-to-many head on the encoder (dense "
                              "family)")
        self.query_select = QCheckBox("Anchors from the encoder's best boxes")
        self.query_select.setToolTip("DINO (Zhang et al. 2023), query selection: each image's anchor boxes are "
                                     "the encoder's best-scoring proposals: the dense head's on the dense family "
                                     "(needs it; it then also runs at inference), one per encoder token on the "
                                     "deformable family (DINO's mixed query selection; with varifocal loss, "
                                     "RT-DETR's IoU-aware selection). Needs anchor queries")
        self.query_content = QCheckBox("Query content from the encoder")
        self.query_content.setToolTip("RT-DETR (Zhao et al. 2024): each selected query's content is its encoder "
                                      "token's features (detached), not a learned vector; DINO (Zhang et al. "
                                      "2023) keeps it learned (mixed query selection). Needs query selection on "
                                      "the deformable family")
        self.look_forward_twice = QCheckBox("Look forward twice")
        self.look_forward_twice.setToolTip("DINO (Zhang et al. 2023): a layer's box loss also trains the layer "
                                           "before it (the box it refines keeps its gradient); acts on anchor "
                                           "boxes refined per layer")
        self.feature_levels = _spin(1, 6, 4)
        self.feature_levels.setToolTip("Deformable DETR (Zhu et al. 2021): the feature maps the deformable family "
                                       "reads, the backbone's last three stages then strided extra levels "
                                       "(the dense family reads one)")
        self.hybrid_encoder = QCheckBox("Hybrid encoder (AIFI + CCFM)")
        self.hybrid_encoder.setToolTip("RT-DETR (Zhao et al. 2024): attention within the top level only (AIFI), "
                                       "then convolutional fusion across the levels (CCFM), instead of "
                                       "deformable attention over every level (deformable family)")
        self.bf16 = QCheckBox("bfloat16 autocast")
        self.precision_label = QLabel()  # which precision runs and why (from the CPU's flags)
        self.precision_label.setWordWrap(True)
        self.bf16.toggled.connect(lambda on: self.precision_label.setText(precision_note(on)))
        self.eval_every = _spin(0, 100000, 200)
        self.eval_every.setToolTip("Steps between held-out evaluations (0 = never)")
        self.start_from = QComboBox()
        self.start_from.addItems(["a new model", "the open model (fine-tune)"])
        self.start_from.setToolTip("Fine-tuning keeps the open model's architecture and every weight that fits "
                                   "(the class head starts fresh if the dataset has other classes)")
        self.data_label = wrap_label(QLabel(describe(None, None)))
        self.start_from.currentIndexChanged.connect(lambda _: self._update_data_label())

        form = QFormLayout()
        form.addRow(self.data_label)
        form.addRow("Start from", self.start_from)
        form.addRow("Preset", self.preset)
        form.addRow("Object queries", self.queries)
        form.addRow("Encoder layers", self.enc_layers)
        form.addRow("Decoder layers", self.dec_layers)
        form.addRow("d_model", self.d_model)
        form.addRow("Learning rate", self.lr)
        form.addRow("Backbone learning rate", self.lr_backbone)
        form.addRow("Batch size", self.batch)
        form.addRow("No-object weight", self.no_object)
        form.addRow("Seed", self.seed)
        form.addRow("Minutes", self.minutes)
        form.addRow("Evaluate every", self.eval_every)
        form.addRow(self.self_attention)
        form.addRow(self.aux_loss)
        levers = QGroupBox("Fast-convergence levers")
        lf = QFormLayout(levers)
        lf.addRow(self.anchor)
        lf.addRow("Denoising groups", self.dn_groups)
        lf.addRow(self.dn_contrastive)
        lf.addRow("Denoising box noise", self.dn_box_noise)
        lf.addRow("Denoising label noise", self.dn_label_noise)
        lf.addRow("Query groups", self.query_groups)
        lf.addRow(self.focal)
        lf.addRow(self.varifocal)
        lf.addRow(self.dense)
        lf.addRow(self.query_select)
        lf.addRow(self.query_content)
        lf.addRow(self.look_forward_twice)
        lf.addRow("Feature levels", self.feature_levels)
        lf.addRow(self.hybrid_encoder)
        lf.addRow(self.bf16)
        lf.addRow(self.precision_label)

        self.btn_start = QPushButton("Start")
        self.btn_pause = QPushButton("Pause")
        self.btn_step = QPushButton("Step")
        self.btn_stop = QPushButton("Stop")
        self.btn_start.setToolTip("Train a new model with these settings")
        self.btn_step.setToolTip("One training step, then pause (for teaching)")
        self.btn_start.clicked.connect(self.start)
        self.btn_pause.clicked.connect(self.toggle_pause)
        self.btn_step.clicked.connect(self.step_once)
        self.btn_stop.clicked.connect(self.stop)
        self.follow = QCheckBox("Show live predictions")
        self.follow.setChecked(True)
        self.per_layer = QCheckBox("Per decoder layer")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_label = StableLabel("Not training.")
        self.error_label = wrap_label(QLabel(""))  # why the last run stopped or could not start
        self.error_label.setObjectName("training_error")
        self.error_label.setStyleSheet("#training_error { color: #ff8787; }")
        self.error_label.setVisible(False)
        self.failed.connect(self._show_failure)

        settings = QWidget()
        sl = QVBoxLayout(settings)
        sl.addLayout(form)
        sl.addWidget(levers)
        sl.addStretch(1)
        self.settings_scroll = scroll = QScrollArea()
        scroll.setWidget(settings)
        scroll.setWidgetResizable(True)
        # the form scrolls down only: it is as wide as its widest row, with room for the scroll bar
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(settings.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
                               + 2 * scroll.frameWidth())

        # left: the controls above the settings; right: how the run goes, above its curves (which
        # get the panel's whole height: a dock along the bottom of a laptop screen is short)
        buttons = QHBoxLayout()
        for b in (self.btn_start, self.btn_pause, self.btn_step, self.btn_stop):
            buttons.addWidget(b)
        buttons.addWidget(help_button("Training"))
        checks = QHBoxLayout()
        checks.addWidget(self.follow)
        checks.addWidget(self.per_layer)
        checks.addStretch(1)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addLayout(buttons)
        side_layout.addLayout(checks)
        side_layout.addWidget(scroll, 1)

        self.plots = LossPlots()
        self.per_layer.toggled.connect(self.plots.set_per_layer)
        self.progress_bar.setFixedWidth(self.fontMetrics().horizontalAdvance("0") * 18)
        status = QHBoxLayout()
        status.addWidget(self.progress_bar)
        status.addWidget(self.progress_label, 1)
        run = QWidget()
        run_layout = QVBoxLayout(run)
        run_layout.setContentsMargins(0, 0, 0, 0)
        run_layout.addLayout(status)
        run_layout.addWidget(self.error_label)
        run_layout.addWidget(self.plots, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(side)
        split.addWidget(run)
        split.setCollapsible(0, False)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(split)

        self._check_settings()
        self.preset.currentTextChanged.connect(self.load_preset)
        for row in SETTINGS:
            widget = self._widget(row)
            changed = widget.toggled if isinstance(widget, QCheckBox) else (
                widget.currentTextChanged if isinstance(widget, QComboBox) else widget.valueChanged)
            changed.connect(self._grey_out_what_is_off)
        self.load_preset("fast")
        self._update_buttons()

    # --- settings --------------------------------------------------------------------------
    def _check_settings(self) -> None:
        """Every row of SETTINGS names a widget of this panel and a field of the configs: a row
        that does not fails here, when the panel is made, not when a run starts."""
        model, train = preset("fast")
        for row in SETTINGS:
            widget = getattr(self, row.widget, None)
            if not isinstance(widget, (QCheckBox, QComboBox, QSpinBox, QDoubleSpinBox)):
                raise LookupError(f"setting {row.field!r}: the training panel has no widget {row.widget!r} "
                                  f"(a spin box, check box or combo box)")
            config_value(model, train, row.field)
        for derived in DERIVED:
            config_value(model, train, derived.field)

    def _widget(self, row: Setting) -> QWidget:
        return getattr(self, row.widget)

    def load_preset(self, name: str) -> None:
        """Show the preset ``name`` in the widgets (the optimisation fields: the fine-tuning
        recipe's when fine-tuning)."""
        model, train = preset(name)
        self._attention = model.attention
        for row in SETTINGS:
            if row.to_widget is not None and not row.optimisation:
                set_widget_value(self._widget(row), row.to_widget(config_value(model, train, row.field)))
        self._load_optimisation(finetune_train_config() if self.fine_tuning else train)
        self.precision_label.setText(precision_note(train.bf16))
        self.preset.setToolTip(f"The recipe the settings start from (--preset). {name}: {preset_papers(name)}")
        self._grey_out_what_is_off()  # (the preset's family decides some)

    def _load_optimisation(self, train: TrainConfig) -> None:
        """The learning rates, batch size and no-object weight of ``train`` (the preset's, or when
        fine-tuning the reference's fine-tuning recipe, as ``main.py train --init`` uses)."""
        self._optimisation_for_fine_tuning = self.fine_tuning
        model = DETRConfig()  # (the optimisation fields are all the train config's)
        for row in SETTINGS:
            if row.optimisation and row.to_widget is not None:
                set_widget_value(self._widget(row), row.to_widget(config_value(model, train, row.field)))

    def setting_values(self) -> dict[str, Any]:
        """The fields of SETTINGS as the widgets give them (a field whose ``when`` does not
        hold is off)."""
        values = {row.field: row.from_widget(widget_value(self._widget(row))) for row in SETTINGS}
        family = {**values, "attention": preset(self.preset.currentText())[0].attention}  # the preset's family
        for row in SETTINGS:
            if row.when is not None and not row.when(family):
                values[row.field] = row.off_value(values[row.field])  # 0, False
        return values

    def _grey_out_what_is_off(self) -> None:
        """A lever the others do not allow (see ``Setting.when``) is greyed out; all are while a run goes."""
        family = {row.field: row.from_widget(widget_value(self._widget(row))) for row in SETTINGS}
        family["attention"] = self._attention  # the preset's family
        running = self.is_running
        for row in SETTINGS:
            on = all(allows is None or allows(family) for allows in (row.when, row.applies))
            self._widget(row).setEnabled(not running and on)

    def configs(self) -> tuple[DETRConfig, TrainConfig]:
        """The preset with this panel's settings applied (raises ValueError on a bad combination);
        when fine-tuning, the training settings start from the fine-tuning recipe instead."""
        model, train = preset(self.preset.currentText())
        if self.fine_tuning:
            train = finetune_train_config()
        values = self.setting_values()
        overrides = {**values, **{d.field: d.value(values, model) for d in DERIVED}}
        return apply_overrides(model, train, overrides)

    def show_preset(self, name: str) -> None:
        """Choose the preset ``name`` and bring it in sight (the settings form scrolled to it), for
        "Train a deformable model": the user then presses Start. A finished run's progress is
        cleared (a running run's stays, and so does what the curves of an opened file are).
        Raises ValueError for a preset the panel does not offer."""
        if self.preset.findText(name) < 0:
            raise ValueError(f"the training panel has no preset {name!r}")
        self.preset.setCurrentText(name)
        self._scroll_to_preset()
        QTimer.singleShot(0, self, self._scroll_to_preset)  # again once a dock shown with it is laid out
        if not self.is_running and self.progress_bar.value() >= self.progress_bar.minimum():  # a run's, ended
            self.progress_bar.reset()
            self.progress_label.setText("Not training.")

    def _scroll_to_preset(self) -> None:
        self.settings_scroll.ensureWidgetVisible(self.preset)

    def set_dataset(self, opened: OpenedDataset | None) -> None:
        """The next run trains on ``opened`` (None: toy shapes)."""
        self.dataset = opened
        self._update_data_label()

    def set_open_model(self, loaded: LoadedModel | None) -> None:
        self.open_model = loaded
        self._update_data_label()
        self.show_history(loaded)

    def show_history(self, loaded: LoadedModel | None) -> bool:
        """Plot the loss and AP curves of the model shown: those stored in its file (a run of the
        CLI, of several processes, or of this window) or of its run in this session, unless a run
        is training. A model with none clears the plots and says so. True if it had curves."""
        if self.is_running or loaded is None:
            return False
        ckpt, trained = loaded.checkpoint, loaded.trained
        source: object = ckpt if ckpt is not None else trained
        if source is None:
            return False
        if source is self._plotted:
            return True  # (the run that just ended: its curves are up already)
        if ckpt is not None:
            history, tc, model_config = History.from_dict(ckpt.history), ckpt.train_config, ckpt.model_config
            name = loaded.path.name if loaded.path is not None else loaded.source
            kind = "checkpoint"
        else:
            assert trained is not None
            history, tc, model_config = trained.history, trained.train_config, trained.model_config
            name, kind = "the model trained in this session", "run"
        evaluated = any("AP" in point and "AP50" in point for point in history.evals)
        never = tc is not None and not tc.eval_every
        no_evals = f"No evaluations in this {kind}" + (" (it was trained without any)" if never else "")
        self.plots.reset(loss_terms(model_config, tc.loss if tc is not None else None), no_evals=no_evals)
        self._plotted = source
        self.progress_bar.reset()  # the bar was the last run's
        if not len(history):
            self.progress_label.setText(f"{name} keeps no training curves.")
            return False
        self.plots.history = history
        if evaluated:
            for point in history.evals:
                if "AP" in point and "AP50" in point:
                    self.plots.add_eval(EvalEvent(int(point["step"]), float(point.get("elapsed", 0.0)),
                                                  {"AP": point["AP"], "AP50": point["AP50"]}, 0.0))
        self.plots.redraw()
        steps = int(history.steps["step"][-1])
        self.progress_label.setText(f"The curves of {name}: its training, {steps} steps (from the file)." if ckpt
                                    else f"The curves of {name}: {steps} steps.")
        return True

    @property
    def fine_tuning(self) -> bool:
        return self.start_from.currentIndex() == 1 and self.open_model is not None

    def _update_data_label(self) -> None:
        self.data_label.setText(describe(self.dataset, self.open_model if self.fine_tuning else None))
        if self.fine_tuning != self._optimisation_for_fine_tuning:  # fine-tuning has its own defaults
            self._load_optimisation(finetune_train_config() if self.fine_tuning else preset(self.preset.currentText())[1])

    def run_configs(self) -> tuple[DETRConfig, TrainConfig]:
        """:meth:`configs` on the open dataset (and from the open model when fine-tuning)."""
        return self._run_configs()[:2]

    def _run_configs(self) -> tuple[DETRConfig, TrainConfig, dict | None]:
        model_cfg, train_cfg = self.configs()
        start_from = self.open_model if self.fine_tuning else None
        if self.dataset is not None:
            return dataset_configs(model_cfg, train_cfg, self.dataset, start_from)
        if start_from is not None:
            if start_from.class_names != list(train_cfg.data.classes):
                raise ValueError("the open model's classes are not the toy shapes': open its dataset to fine-tune")
            weights = {k: v.detach().cpu().clone() for k, v in start_from.model.state_dict().items()}
            return start_from.config, train_cfg, weights
        return model_cfg, train_cfg, None

    # --- running ---------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def set_preview_image(self, image: np.ndarray | None, image_id: object = None) -> None:
        """The image live predictions are made on; they come back tagged with ``image_id``."""
        self.preview_image, self.preview_image_id = image, image_id
        if self.worker is not None:
            self.worker.set_preview_image(image, image_id)

    def start(self, paused: bool = False) -> bool:
        if self.is_running:
            return False
        if self.confirm_start is not None and not self.confirm_start():
            return False
        self.error_label.setVisible(False)
        try:
            model_cfg, train_cfg, weights = self._run_configs()
        except ValueError as e:
            self.failed.emit(f"Cannot start training: {e}")
            return False
        self.plots.reset(loss_terms(model_cfg, train_cfg.loss), no_evals=no_evals_note(train_cfg.eval_every))
        self._plotted = None  # the plots follow this run now
        self._last_step = None
        self._threads = ""
        worker = TrainingWorker(model_cfg, train_cfg, self.preview_image, start_paused=paused, parent=self,
                                initial_weights=weights, preview_image_id=self.preview_image_id)
        worker.trainingStarted.connect(self._on_training_started)
        worker.threadsChanged.connect(self._on_threads)
        worker.progress.connect(self._on_progress)
        worker.evaluated.connect(self.plots.add_eval)
        worker.preview.connect(self._on_preview)
        worker.failed.connect(self.failed.emit)
        worker.trained.connect(self._on_trained)
        worker.finished.connect(self._on_thread_finished)
        self.worker = worker
        self.workerCreated.emit(worker)  # the state replaces (and deletes) the previous run's session
        self._let_go_of_ended_runs()
        worker.start()
        self.progress_label.setText("Starting the training process…")
        self.running.emit(True)
        self._update_buttons()
        return True

    def toggle_pause(self) -> None:
        if not self.is_running:
            return
        assert self.worker is not None
        if self.worker.paused:
            self.worker.resume()
        else:
            self.worker.pause()
        self._update_buttons()

    def step_once(self) -> None:
        if not self.is_running and not self.start(paused=True):
            return  # it could not start (the reason was emitted as ``failed``)
        assert self.worker is not None
        self.worker.step_once()
        self._update_buttons()

    def stop(self, wait_ms: int = 0) -> bool:
        """Ask the run to stop; with ``wait_ms`` block until its thread has ended."""
        if self.worker is None:
            return True
        self.worker.stop()
        if wait_ms and not self.worker.wait(wait_ms):
            self.worker.kill()  # it did not stop in time: end the process, lose its last steps
            return self.worker.wait(5000)
        return True

    def _show_failure(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(True)

    def _on_threads(self, threads: int, reason: str) -> None:
        self._threads = f" · {reason}"

    def _on_training_started(self, info: dict) -> None:
        if self._last_step is None:
            self.progress_label.setText(
                f"Training a model of {info['parameters'] / 1e6:.2f} M parameters on {info['device']}…")

    def _on_progress(self, events: list[StepEvent]) -> None:
        self.plots.add_steps(events)
        e = events[-1]
        self._last_step = e
        self.progress_bar.setValue(int(e.progress * 1000))
        left = ""
        if 0 < e.progress < 1:
            remaining = e.elapsed / e.progress * (1 - e.progress)
            left = f" · {int(remaining // 60)}:{int(remaining % 60):02d} left"
        paused = " · paused" if self.worker is not None and self.worker.paused else ""
        text = (f"step {e.step} · loss {e.losses['loss']:.3f} · {e.images_per_sec:.0f} img/s{left}"
                f"{self._threads}{paused}")
        self.progress_label.setText(text)
        self.status.emit(f"Training: {text}")

    def _on_preview(self, result, image_id) -> None:  # noqa: ANN001
        if self.follow.isChecked():
            self.preview.emit(result, image_id)

    def _on_trained(self, trained: TrainedModel) -> None:
        self._plotted = trained  # the plots show its curves: the window opening its model keeps them
        self.trained.emit(trained)

    def _on_thread_finished(self) -> None:
        self.running.emit(False)
        e = self._last_step
        self.progress_label.setText(
            f"Finished at step {e.step} ({e.elapsed:.0f} s of training)." if e else "Not training.")
        self.status.emit("Ready")
        self._update_buttons()
        self._let_go_of_ended_runs()

    def _let_go_of_ended_runs(self) -> None:
        """A run that has ended has handed its model over (``trained`` comes before ``finished``;
        the state holds it, to show and save): its worker lets go of it, and the workers of
        runs before the panel's latest are deleted (with their reader, session and pipes)."""
        for worker in self.findChildren(TrainingWorker, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if worker.ended:
                worker.release()
                if worker is not self.worker:
                    worker.deleteLater()

    def _update_buttons(self) -> None:
        running = self.is_running
        paused = running and self.worker is not None and self.worker.paused
        self.btn_start.setEnabled(not running)
        self.btn_pause.setEnabled(running)
        self.btn_pause.setText("Resume" if paused else "Pause")
        self.btn_stop.setEnabled(running)
        for w in (self.preset, self.start_from):
            w.setEnabled(not running)
        self._grey_out_what_is_off()


__all__ = ["TrainingPanel", "LossPlots", "PRESETS"]
